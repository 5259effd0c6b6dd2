//! Snapshots of the prerequisite screen and the manifest editor at 80×24 and 120×40, from
//! fake probes and fixed paths (`app::fixtures`, `prereq::tests::FakeHost`).

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::style::Color;

use super::tests::{draw, snapshot, text, with_log};
use crate::app::fixtures::{self, answer, ctrl, key, keys};
use crate::app::{App, AppEvent};
use crate::prereq::host::Space;
use crate::prereq::oci::OciProbe;
use crate::prereq::tests::FakeHost;
use crate::sandbox::check::FuseProblem;
use crate::ui::theme::Theme;

/// This kind of host: root, hybrid cgroups, crun refusing them, little room, no
/// fuse-overlayfs; and oci not built in.
fn troubled_host() -> FakeHost {
    let mut host = FakeHost::new("debian").root_user().hybrid();
    host.space = Space {
        available: 1536 << 20,
        total: 100 << 30,
    };
    host.fuse = Err(FuseProblem::NotInstalled);
    host.programs.insert("crun".into(), "/usr/bin/crun".into());
    host.oci.insert(
        "crun".into(),
        OciProbe {
            version: Ok("1.8.1".into()),
            start: Err(
                "`run` exited with exit status: 1: cgroups in hybrid mode not \
                        supported, drop all controllers from cgroupv2"
                    .into(),
            ),
        },
    );
    host
}

fn prereq_screen(w: u16, h: u16) -> App {
    let mut app = with_log(w, h);
    let report = troubled_host().run();
    app.backends = Some(report.backends());
    app.prereq.report = Some(report);
    key(&mut app, KeyCode::Char('p'));
    app
}

#[test]
fn the_prerequisite_screen_shows_every_check_with_its_fix() {
    snapshot("prereq", prereq_screen);
}

#[test]
fn the_prerequisite_screen_scrolls_to_its_last_line() {
    snapshot("prereq_end", |w, h| {
        let mut app = prereq_screen(w, h);
        key(&mut app, KeyCode::Char('G'));
        app
    });
}

#[test]
fn the_prerequisite_screen_while_the_first_run_is_under_way() {
    snapshot("prereq_running", |w, h| {
        let mut app = fixtures::app(w, h);
        key(&mut app, KeyCode::Char('p'));
        app
    });
}

#[test]
fn statuses_are_coloured_and_also_readable_without_colour() {
    let app = prereq_screen(120, 40);
    let buffer = draw(&app);
    let screen = text(&buffer);
    for word in ["✓ ok", "! warn", "✗ FAIL"] {
        assert!(screen.contains(word), "{word}\n{screen}");
    }
    let (y, line) = screen
        .lines()
        .enumerate()
        .find(|(_, l)| l.contains("✗ FAIL"))
        .expect("a failure");
    let x = line.find('✗').expect("symbol");
    let x = u16::try_from(line[..x].chars().count()).expect("column");
    assert_eq!(buffer[(x, y as u16)].fg, Color::Red);

    let mut plain = prereq_screen(120, 40);
    plain.theme = Theme::new(false);
    let buffer = draw(&plain);
    assert_eq!(text(&buffer), screen, "the same text without colour");
    assert!(buffer.content().iter().all(|c| c.fg == Color::Reset));
}

/// The editor on the minimal template for `~/src/demo`, with `typed` typed at its end.
fn editor(w: u16, h: u16, typed: &str) -> App {
    let mut app = fixtures::app(w, h);
    answer(&mut app, &fixtures::envs());
    key(&mut app, KeyCode::Char('E'));
    ctrl(&mut app, 'u');
    keys(&mut app, "~/src/demo");
    key(&mut app, KeyCode::Enter);
    app.handle(AppEvent::Input(crossterm::event::Event::Key(
        KeyEvent::new(KeyCode::End, KeyModifiers::CONTROL),
    )));
    for c in typed.chars() {
        let code = if c == '\n' {
            KeyCode::Enter
        } else {
            KeyCode::Char(c)
        };
        key(&mut app, code);
    }
    app
}

#[test]
fn the_editor_with_a_valid_template() {
    snapshot("editor", |w, h| editor(w, h, ""));
}

#[test]
fn the_editor_shows_the_problem_with_its_line_and_column() {
    snapshot("editor_error", |w, h| {
        editor(w, h, "\n[hardware]\ngpu = \"ja, bitte\" # ü")
    });
}

#[test]
fn leaving_the_editor_with_unsaved_changes_asks_first() {
    snapshot("editor_leave", |w, h| {
        let mut app = editor(w, h, "\n# mine");
        key(&mut app, KeyCode::Esc);
        app
    });
}

/// Tiny and odd sizes draw both screens without a panic, and their scrolling math holds.
#[test]
fn any_size_draws_the_screens_without_panicking() {
    for (w, h) in [
        (1, 1),
        (2, 3),
        (10, 4),
        (20, 6),
        (33, 9),
        (79, 23),
        (250, 80),
    ] {
        let mut app = prereq_screen(w, h);
        draw(&app);
        key(&mut app, KeyCode::Char('G'));
        draw(&app);
        crate::ui::prereq::max_scroll(&app);
        let mut app = editor(w, h, "\nbad line ü");
        draw(&app);
        key(&mut app, KeyCode::Esc);
        draw(&app);
    }
}

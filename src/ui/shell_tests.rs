//! Screen tests of the shells: the details pane's preview of a detached shell and the list of
//! shells, at 80×24 and 120×40 (snapshots in `src/ui/snapshots/`). The shells' screens are
//! fed fixed bytes, so nothing volatile is drawn.

use crossterm::event::KeyCode;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::style::{Color, Modifier};
use ratatui::Terminal;

use crate::app::fixtures::{self, answer, key, loaded};
use crate::app::shells::{Ending, SessionId, ShellRequest};
use crate::app::{App, AppEvent};

const SIZES: [(u16, u16); 2] = [(80, 24), (120, 40)];

fn draw(app: &App) -> Buffer {
    let backend = TestBackend::new(app.area.width, app.area.height);
    let mut terminal = Terminal::new(backend).expect("test terminal");
    terminal
        .draw(|frame| super::draw(app, frame))
        .expect("draw");
    terminal.backend().buffer().clone()
}

fn text(buffer: &Buffer) -> String {
    let area = buffer.area;
    let mut out = String::new();
    for y in area.top()..area.bottom() {
        let line: String = (area.left()..area.right())
            .map(|x| buffer[(x, y)].symbol())
            .collect();
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn snapshot(name: &str, make: impl Fn(u16, u16) -> App) {
    for (w, h) in SIZES {
        let app = make(w, h);
        insta::assert_snapshot!(format!("{name}_{w}x{h}"), text(&draw(&app)));
    }
}

/// Open a shell in the selection, let it print `bytes`, detach.
fn detached_shell(app: &mut App, bytes: &[u8]) -> SessionId {
    key(app, KeyCode::Enter);
    let id = match app.take_shell_requests().first() {
        Some(ShellRequest::Start { session, .. }) => *session,
        other => panic!("expected a start: {other:?}"),
    };
    assert!(app.begin_attach(id));
    app.take_host_output();
    app.handle(AppEvent::ShellOutput {
        session: id,
        bytes: bytes.to_vec(),
    });
    app.handle(AppEvent::ShellDetach { session: id });
    // The list and the details reload (session counts): answered as before.
    let left = answer(app, &fixtures::envs());
    assert!(left.is_empty(), "{left:?}");
    id
}

const SESSION: &[u8] = b"\x1b[1;32muser@api\x1b[0m:~$ cargo build\r\n   \
    \x1b[1;32mCompiling\x1b[0m api v0.1.0 (/src/api)\r\n    \
    \x1b[1;32mFinished\x1b[0m dev [unoptimized] target(s) in 2.31s\r\n\
    \x1b[1;32muser@api\x1b[0m:~$ ";

/// The dashboard with a detached shell in the selected environment (`api`).
fn with_shell(w: u16, h: u16) -> App {
    let mut app = loaded(w, h);
    detached_shell(&mut app, SESSION);
    app.notice = None;
    app
}

#[test]
fn details_preview_of_a_detached_shell() {
    snapshot("shell_preview", with_shell);
}

#[test]
fn the_list_of_shells() {
    snapshot("shells_list", |w, h| {
        let mut app = with_shell(w, h);
        let ended = detached_shell(&mut app, b"$ exit 3\r\n");
        app.handle(AppEvent::ShellExited {
            session: ended,
            ending: Ending::Exited(3),
        });
        app.popups.clear();
        app.notice = None;
        key(&mut app, KeyCode::Char('S'));
        key(&mut app, KeyCode::Char('g'));
        app
    });
}

#[test]
fn the_list_of_shells_when_there_are_none() {
    snapshot("shells_list_empty", |w, h| {
        let mut app = loaded(w, h);
        key(&mut app, KeyCode::Char('S'));
        app
    });
}

#[test]
fn previews_keep_the_programs_colours_and_attributes_and_show_the_cursor() {
    let app = with_shell(120, 40);
    let buffer = draw(&app);
    let (x, y) = find(&buffer, "Compiling").expect("the preview's Compiling");
    assert_eq!(buffer[(x, y)].fg, Color::Green);
    assert!(buffer[(x, y)].modifier.contains(Modifier::BOLD));
    // The cursor sits after the last prompt, in reverse video.
    let (px, py) = last(&buffer, "user@api").expect("the last prompt");
    let cursor = buffer[(px + "user@api:~$ ".len() as u16, py)].modifier;
    assert!(cursor.contains(Modifier::REVERSED), "{cursor:?}");

    // Without colour, only the attributes.
    let mut plain = with_shell(120, 40);
    plain.theme = crate::ui::theme::Theme::new(false);
    let buffer = draw(&plain);
    let (x, y) = find(&buffer, "Compiling").expect("Compiling");
    assert_eq!(buffer[(x, y)].fg, Color::Reset);
    assert!(buffer[(x, y)].modifier.contains(Modifier::BOLD));
}

#[test]
fn shells_draw_at_any_size_without_panicking() {
    for (w, h) in [
        (1, 1),
        (2, 3),
        (10, 4),
        (20, 6),
        (33, 9),
        (79, 23),
        (250, 80),
    ] {
        let mut app = with_shell(w, h);
        draw(&app);
        key(&mut app, KeyCode::Char('S'));
        draw(&app);
    }
}

fn find(buffer: &Buffer, needle: &str) -> Option<(u16, u16)> {
    positions(buffer, needle).next()
}

fn last(buffer: &Buffer, needle: &str) -> Option<(u16, u16)> {
    positions(buffer, needle).last()
}

/// Where `needle` starts, row by row (ASCII rows: one cell per byte).
fn positions<'a>(buffer: &'a Buffer, needle: &'a str) -> impl Iterator<Item = (u16, u16)> + 'a {
    let area = buffer.area;
    (area.top()..area.bottom()).filter_map(move |y| {
        let row: String = (area.left()..area.right())
            .map(|x| buffer[(x, y)].symbol())
            .collect();
        row.find(needle).map(|x| (x as u16, y))
    })
}

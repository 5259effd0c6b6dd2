//! Screen tests: every screen and popup drawn into ratatui's `TestBackend` at 80×24 and
//! 120×40 and compared with the snapshot files in `src/ui/snapshots/` (`cargo insta review`
//! after an intended change). The fixtures (`app::fixtures`) use fixed ids, paths and
//! backends, so nothing volatile needs filtering.

use crossterm::event::KeyCode;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::style::{Color, Modifier};
use ratatui::Terminal;

use crate::app::fixtures::{self, answer, key, keys, loaded};
use crate::app::{App, AppEvent, Job, JobOutput};
use crate::events::{Event, Level};
use crate::store::{GcItem, GcItemKind, GcReport};
use crate::ui::theme::Theme;

const SIZES: [(u16, u16); 2] = [(80, 24), (120, 40)];

pub(super) fn draw(app: &App) -> Buffer {
    let backend = TestBackend::new(app.area.width, app.area.height);
    let mut terminal = Terminal::new(backend).expect("test terminal");
    terminal
        .draw(|frame| super::draw(app, frame))
        .expect("draw");
    terminal.backend().buffer().clone()
}

/// The buffer's text, one line per row, trailing spaces removed.
pub(super) fn text(buffer: &Buffer) -> String {
    let area = buffer.area;
    let mut out = String::new();
    for y in area.top()..area.bottom() {
        let mut line = String::new();
        for x in area.left()..area.right() {
            line.push_str(buffer[(x, y)].symbol());
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Snapshot the screen that `make` sets up, at both sizes.
pub(super) fn snapshot(name: &str, make: impl Fn(u16, u16) -> App) {
    for (w, h) in SIZES {
        let app = make(w, h);
        insta::assert_snapshot!(format!("{name}_{w}x{h}"), text(&draw(&app)));
    }
}

/// A loaded dashboard with some build output in the log.
pub(super) fn with_log(w: u16, h: u16) -> App {
    let mut app = loaded(w, h);
    for line in [
        "started: build /home/user/src/web",
        "mock: resolving base image alias:debian/12",
        "mock: unpacking base image alias:debian/12",
        "mock: installing git 2.43.0-1",
        "mock: installing ripgrep 14.1.0-2",
        "mock: installed 2 package(s)",
        "built: 0404040404 web (lock /home/user/src/web/karapace.lock)",
    ] {
        app.log.push(Level::Info, Some("build web".into()), line);
    }
    app.log.push(
        Level::Warn,
        Some("exec api".into()),
        "mock backend: no isolation",
    );
    app
}

/// Answer the newest queued job with an error.
fn fail_last(app: &mut App, error: &str) {
    let (id, _) = app.take_jobs().pop().expect("a queued job");
    app.handle(AppEvent::JobDone {
        job: id,
        result: Err(error.into()),
    });
}

#[test]
fn loading() {
    snapshot("loading", fixtures::app);
}

#[test]
fn first_run() {
    snapshot("first_run", |w, h| {
        let mut app = fixtures::app(w, h);
        answer(&mut app, &[]);
        app
    });
}

#[test]
fn first_run_without_the_default_backend() {
    snapshot("first_run_no_namespace", |w, h| {
        let mut app = fixtures::app(w, h);
        answer(&mut app, &[]);
        if let Some(b) = app.backends.as_mut().and_then(|b| b.first_mut()) {
            b.available = false;
            b.detail = "unprivileged user namespaces are disabled \
                        (kernel.unprivileged_userns_clone = 0)"
                .into();
        }
        app
    });
}

#[test]
fn dashboard() {
    snapshot("dashboard", |w, h| {
        let mut app = with_log(w, h);
        key(&mut app, KeyCode::Char('j'));
        answer(&mut app, &fixtures::envs());
        app
    });
}

#[test]
fn dashboard_filtering() {
    snapshot("dashboard_filter", |w, h| {
        let mut app = with_log(w, h);
        keys(&mut app, "/ap");
        app
    });
}

#[test]
fn dashboard_filter_matching_nothing() {
    snapshot("dashboard_filter_empty", |w, h| {
        let mut app = with_log(w, h);
        keys(&mut app, "/zzz");
        key(&mut app, KeyCode::Enter);
        app
    });
}

#[test]
fn dashboard_while_a_build_runs() {
    snapshot("dashboard_job", |w, h| {
        let mut app = with_log(w, h);
        let id = app.start(Job::Build {
            manifest: "/home/user/src/web/karapace.toml".into(),
            name: None,
        });
        app.handle(AppEvent::Engine {
            job: id,
            event: Event::Progress {
                task: "installing packages".into(),
                done: 3,
                total: Some(4),
            },
        });
        app.tick();
        app
    });
}

#[test]
fn log_full_screen_with_a_search() {
    snapshot("log_search", |w, h| {
        let mut app = with_log(w, h);
        key(&mut app, KeyCode::Char('z'));
        keys(&mut app, "/ripgrep");
        key(&mut app, KeyCode::Enter);
        app
    });
}

#[test]
fn help() {
    snapshot("help", |w, h| {
        let mut app = loaded(w, h);
        key(&mut app, KeyCode::Char('?'));
        app
    });
}

#[test]
fn confirm_destroy() {
    snapshot("confirm_destroy", |w, h| {
        let mut app = with_log(w, h);
        key(&mut app, KeyCode::Char('d'));
        app
    });
}

#[test]
fn confirm_quit() {
    snapshot("confirm_quit", |w, h| {
        let mut app = with_log(w, h);
        app.start(Job::Gc { dry_run: false });
        key(&mut app, KeyCode::Char('q'));
        app
    });
}

#[test]
fn prompt_build() {
    snapshot("prompt_build", |w, h| {
        let mut app = with_log(w, h);
        key(&mut app, KeyCode::Char('b'));
        app
    });
}

#[test]
fn prompt_build_refused() {
    snapshot("prompt_build_error", |w, h| {
        let mut app = with_log(w, h);
        key(&mut app, KeyCode::Char('b'));
        fixtures::ctrl(&mut app, 'u');
        keys(&mut app, "/nonexistent/project");
        key(&mut app, KeyCode::Enter);
        app
    });
}

#[test]
fn prompt_new() {
    snapshot("prompt_new", |w, h| {
        let mut app = fixtures::app(w, h);
        answer(&mut app, &[]);
        key(&mut app, KeyCode::Char('n'));
        key(&mut app, KeyCode::Down);
        app
    });
}

#[test]
fn prompt_rename() {
    snapshot("prompt_rename", |w, h| {
        let mut app = with_log(w, h);
        key(&mut app, KeyCode::Char('R'));
        app
    });
}

#[test]
fn palette() {
    snapshot("palette", |w, h| {
        let mut app = with_log(w, h);
        keys(&mut app, ":re");
        app
    });
}

#[test]
fn error_popup() {
    snapshot("error", |w, h| {
        let mut app = with_log(w, h);
        key(&mut app, KeyCode::Char('f'));
        fail_last(
            &mut app,
            "cannot freeze environment api: 2 session(s) are running in it; \
             run `karapace-tui stop 010101010101` first",
        );
        app
    });
}

#[test]
fn gc_report() {
    snapshot("gc_report", |w, h| {
        let mut app = with_log(w, h);
        let id = app.start(Job::Gc { dry_run: true });
        let items = (0..30)
            .map(|i| GcItem {
                path: format!("/home/user/.local/share/karapace/objects/{i:064x}").into(),
                kind: GcItemKind::Object,
                bytes: 4096,
            })
            .collect();
        app.handle(AppEvent::JobDone {
            job: id,
            result: Ok(JobOutput::Gc(GcReport {
                dry_run: true,
                items,
                bytes: 30 * 4096,
                ..GcReport::default()
            })),
        });
        app
    });
}

#[test]
fn doctor_report() {
    snapshot("doctor", |w, h| {
        let mut app = with_log(w, h);
        keys(&mut app, ":doctor");
        key(&mut app, KeyCode::Enter);
        app
    });
}

#[test]
fn no_color_draws_without_any_colour_and_selects_by_reverse_video() {
    let mut app = with_log(80, 24);
    app.theme = Theme::new(false);
    let buffer = draw(&app);
    for cell in buffer.content() {
        assert_eq!(cell.fg, Color::Reset, "{cell:?}");
        assert_eq!(cell.bg, Color::Reset, "{cell:?}");
    }
    let selected_row = (0..buffer.area.height)
        .find(|&y| text_of_row(&buffer, y).starts_with("api "))
        .expect("the selected row");
    assert!(buffer[(0, selected_row)]
        .modifier
        .contains(Modifier::REVERSED));
}

#[test]
fn colours_are_the_terminals_sixteen() {
    let buffer = draw(&with_log(120, 40));
    for cell in buffer.content() {
        for color in [cell.fg, cell.bg] {
            assert!(
                !matches!(color, Color::Rgb(..) | Color::Indexed(_)),
                "{cell:?}"
            );
        }
        assert_eq!(cell.bg, Color::Reset, "no background colours: {cell:?}");
    }
    let running = (0..buffer.area.height)
        .find(|&y| text_of_row(&buffer, y).starts_with("api "))
        .expect("the api row");
    let state_x = text_of_row(&buffer, running)
        .find("running")
        .expect("state") as u16;
    assert_eq!(buffer[(state_x, running)].fg, Color::Green);
}

#[test]
fn the_filter_and_prompt_cursors_sit_after_the_typed_text() {
    let mut app = with_log(80, 24);
    keys(&mut app, "/ap");
    let backend = TestBackend::new(80, 24);
    let mut terminal = Terminal::new(backend).expect("test terminal");
    terminal.draw(|f| super::draw(&app, f)).expect("draw");
    let row = text(terminal.backend().buffer())
        .lines()
        .position(|l| l.contains("/ap"))
        .expect("the filter in the title") as u16;
    let col = text_of_row(terminal.backend().buffer(), row)
        .find("/ap")
        .expect("filter") as u16
        + 3;
    terminal.backend_mut().assert_cursor_position((col, row));
}

fn text_of_row(buffer: &Buffer, y: u16) -> String {
    (0..buffer.area.width)
        .map(|x| buffer[(x, y)].symbol())
        .collect()
}

/// Tiny and odd terminal sizes draw without a panic, whatever is open.
#[test]
fn any_size_draws_without_panicking() {
    let setups: [&dyn Fn(&mut App); 7] = [
        &|_| {},
        &|app| key(app, KeyCode::Char('?')),
        &|app| key(app, KeyCode::Char('d')),
        &|app| key(app, KeyCode::Char('b')),
        &|app| keys(app, ":re"),
        &|app| keys(app, "/ap"),
        &|app| {
            key(app, KeyCode::Char('f'));
            fail_last(app, &"a long error message ".repeat(20));
        },
    ];
    for (w, h) in [
        (1, 1),
        (2, 3),
        (10, 4),
        (20, 6),
        (33, 9),
        (79, 23),
        (250, 80),
    ] {
        for setup in &setups {
            let mut app = with_log(w, h);
            setup(&mut app);
            draw(&app);
            key(&mut app, KeyCode::Char('z'));
            draw(&app);
        }
    }
}

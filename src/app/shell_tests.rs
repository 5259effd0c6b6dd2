//! The shells' state machine without a terminal or a pty: keys and events in; requests for
//! the loop, bytes for the terminal, the list and the notices out.

use crossterm::event::{Event as TermEvent, KeyCode, KeyEvent, KeyModifiers};

use super::fixtures::{ctrl, key, keys, loaded};
use super::popup::{Pending, Popup};
use super::shells::{Ending, SessionId, ShellRequest, Status};
use super::{App, AppEvent, Mode};
use crate::types::EnvId;

fn requests(app: &mut App) -> Vec<ShellRequest> {
    app.take_shell_requests()
}

fn output(app: &mut App, session: SessionId, bytes: &[u8]) {
    app.handle(AppEvent::ShellOutput {
        session,
        bytes: bytes.to_vec(),
    });
}

/// What an attach tells the host terminal first (`crate::markers`).
fn push_marker(env: &str) -> String {
    let uid = nix::unistd::getuid().as_raw();
    String::from_utf8(crate::markers::push(env, uid, crate::markers::in_tmux())).expect("ascii")
}

fn host_text(app: &mut App) -> String {
    String::from_utf8_lossy(&app.take_host_output()).into_owned()
}

/// Enter on the selection (`api`), carried out as the loop would: started and attached.
fn open_attached(app: &mut App) -> (SessionId, EnvId) {
    key(app, KeyCode::Enter);
    let reqs = requests(app);
    let (id, env) = match reqs.as_slice() {
        [ShellRequest::Start {
            session,
            env,
            rows,
            cols,
        }, ShellRequest::Attach(attach)] => {
            assert_eq!((*rows, *cols), (app.area.height, app.area.width));
            assert_eq!(session, attach);
            (*session, env.clone())
        }
        other => panic!("expected start then attach: {other:?}"),
    };
    assert!(app.begin_attach(id));
    (id, env)
}

fn ctrl_bracket(app: &mut App) {
    // crossterm reads Ctrl-] (GS) as Ctrl-5.
    app.handle(AppEvent::Input(TermEvent::Key(KeyEvent::new(
        KeyCode::Char('5'),
        KeyModifiers::CONTROL,
    ))));
}

#[test]
fn enter_opens_an_attached_shell_that_says_how_to_detach() {
    let mut app = loaded(80, 24);
    let (id, env) = open_attached(&mut app);
    assert_eq!(env, app.envs.selected_id().cloned().expect("a selection"));
    assert_eq!(app.attached_shell(), Some(id));
    let replay = host_text(&mut app);
    assert!(replay.contains("Ctrl-] detaches"), "{replay:?}");
    // The host terminal is told which environment it shows (OSC 777, `crate::markers`).
    assert!(replay.starts_with(&push_marker("api")), "{replay:?}");
    // The banner is on the session's own screen too, so a re-attach shows the same.
    let screen = app
        .shells
        .get(id)
        .expect("session")
        .screen
        .screen()
        .contents();
    assert!(
        screen.starts_with(" karapace-tui  shell in api"),
        "{screen}"
    );
    // Attaching again while attached does nothing.
    assert!(!app.begin_attach(id));
}

#[test]
fn output_reaches_the_terminal_only_while_attached_and_the_screen_always() {
    let mut app = loaded(80, 24);
    let (id, _) = open_attached(&mut app);
    host_text(&mut app);
    output(&mut app, id, b"$ echo hello\r\nhello\r\n$ ");
    assert_eq!(host_text(&mut app), "$ echo hello\r\nhello\r\n$ ");

    app.handle(AppEvent::ShellDetach { session: id });
    assert_eq!(app.attached_shell(), None);
    assert!(app
        .notice
        .as_deref()
        .is_some_and(|n| n.contains("detached from shell #1 in api")));
    output(&mut app, id, b"background\r\n");
    assert_eq!(host_text(&mut app), "", "nothing is written while detached");
    let screen = app
        .shells
        .get(id)
        .expect("session")
        .screen
        .screen()
        .contents();
    assert!(screen.contains("hello\n$ background"), "{screen}");
}

#[test]
fn a_detached_shell_is_reattached_with_its_screen_replayed() {
    let mut app = loaded(80, 24);
    let (id, _) = open_attached(&mut app);
    output(&mut app, id, b"$ echo hello\r\nhello\r\n$ ");
    app.handle(AppEvent::ShellDetach { session: id });
    host_text(&mut app);
    requests(&mut app);

    // Ctrl-] on its environment re-attaches (no new shell).
    ctrl_bracket(&mut app);
    assert_eq!(requests(&mut app), [ShellRequest::Attach(id)]);
    assert!(app.begin_attach(id));
    let replay = host_text(&mut app);
    // A full repaint (clear, then the rows), not the raw history.
    assert!(replay.contains("\x1b[H\x1b[J"), "{replay:?}");
    assert!(replay.contains("hello"), "{replay:?}");
    assert!(
        replay.contains("Ctrl-] detaches"),
        "the banner stays: {replay:?}"
    );
    // No second banner.
    assert_eq!(replay.matches("detaches").count(), 1, "{replay:?}");
}

#[test]
fn ctrl_bracket_without_a_shell_in_the_environment_says_so() {
    let mut app = loaded(80, 24);
    ctrl_bracket(&mut app);
    assert!(requests(&mut app).is_empty());
    assert!(app
        .notice
        .as_deref()
        .is_some_and(|n| n.contains("Enter opens one")));
}

#[test]
fn an_exit_while_attached_brings_the_dashboard_back_with_its_status() {
    let mut app = loaded(80, 24);
    let (id, _) = open_attached(&mut app);
    output(&mut app, id, b"$ exit 3\r\n");
    app.handle(AppEvent::ShellExited {
        session: id,
        ending: Ending::Exited(3),
    });
    assert_eq!(app.attached_shell(), None);
    let session = app.shells.get(id).expect("kept until dismissed");
    assert_eq!(session.status, Status::Ended(Ending::Exited(3)));
    match app.popups.last() {
        Some(Popup::Message(m)) => {
            assert!(m.error && m.title == "shell #1 in api ended", "{m:?}");
            assert!(m.body.contains("exit status 3"), "{m:?}");
            assert!(m.body.contains("$ exit 3"), "its last lines: {m:?}");
        }
        other => panic!("expected the exit popup: {other:?}"),
    }
    let log: Vec<String> = app.log.visible().map(|(_, l)| l.text.clone()).collect();
    assert!(log.iter().any(|l| l == "ended: exit status 3"), "{log:?}");
    // Output that comes late goes to its screen only.
    output(&mut app, id, b"late");
    assert_eq!(host_text(&mut app).matches("late").count(), 0);
}

#[test]
fn a_clean_exit_while_detached_is_a_notice() {
    let mut app = loaded(80, 24);
    let (id, _) = open_attached(&mut app);
    app.handle(AppEvent::ShellDetach { session: id });
    app.handle(AppEvent::ShellExited {
        session: id,
        ending: Ending::Exited(0),
    });
    assert!(app.popups.is_empty());
    assert_eq!(
        app.notice.as_deref(),
        Some("shell #1 in api ended: exit status 0")
    );
    // An ended shell cannot be attached.
    assert!(!app.begin_attach(id));
}

#[test]
fn the_sessions_list_attaches_ends_and_dismisses() {
    let mut app = loaded(80, 24);
    let (first, _) = open_attached(&mut app);
    app.handle(AppEvent::ShellDetach { session: first });
    let (second, _) = open_attached(&mut app);
    app.handle(AppEvent::ShellDetach { session: second });
    app.handle(AppEvent::ShellExited {
        session: first,
        ending: Ending::Signal("Hangup".into()),
    });
    app.popups.clear();
    requests(&mut app);

    keys(&mut app, "S");
    assert_eq!(app.mode(), Mode::Sessions);
    // It opens on the selected environment's running shell: the second.
    assert!(matches!(
        app.popups.last(),
        Some(Popup::Sessions { selected: 1 })
    ));
    key(&mut app, KeyCode::Char('k'));
    assert!(matches!(
        app.popups.last(),
        Some(Popup::Sessions { selected: 0 })
    ));
    // The first has ended: Enter says so, x dismisses it.
    key(&mut app, KeyCode::Enter);
    assert!(requests(&mut app).is_empty());
    assert!(app
        .notice
        .as_deref()
        .is_some_and(|n| n.contains("has ended")));
    key(&mut app, KeyCode::Char('x'));
    assert_eq!(requests(&mut app), [ShellRequest::Release(first)]);
    assert_eq!(app.shells.all().len(), 1);
    // x on a running one asks first; yes hangs it up.
    key(&mut app, KeyCode::Char('x'));
    match app.popups.last() {
        Some(Popup::Confirm(c)) => assert_eq!(c.then, Pending::EndShell(second)),
        other => panic!("expected a question: {other:?}"),
    }
    key(&mut app, KeyCode::Char('y'));
    assert_eq!(requests(&mut app), [ShellRequest::Hangup(second)]);
    // Enter attaches to a running one and closes the list.
    key(&mut app, KeyCode::Enter);
    assert_eq!(requests(&mut app), [ShellRequest::Attach(second)]);
    assert!(app.popups.is_empty());
}

#[test]
fn quitting_with_running_shells_asks_first_and_then_hangs_them_up() {
    let mut app = loaded(80, 24);
    let (id, _) = open_attached(&mut app);
    app.handle(AppEvent::ShellDetach { session: id });
    requests(&mut app);
    key(&mut app, KeyCode::Char('q'));
    assert!(!app.should_quit());
    match app.popups.last() {
        Some(Popup::Confirm(c)) => {
            assert_eq!(c.then, Pending::Quit);
            assert!(c.body.contains("Open: shell #1 in api"), "{}", c.body);
        }
        other => panic!("expected the quit question: {other:?}"),
    }
    key(&mut app, KeyCode::Char('y'));
    assert!(app.should_quit());
    app.hang_up_all();
    assert_eq!(requests(&mut app), [ShellRequest::Hangup(id)]);
    // Ctrl-C twice means it too.
    let mut app = loaded(80, 24);
    let (id, _) = open_attached(&mut app);
    app.handle(AppEvent::ShellDetach { session: id });
    ctrl(&mut app, 'c');
    assert!(!app.should_quit());
    ctrl(&mut app, 'c');
    assert!(app.should_quit());
}

#[test]
fn every_running_shell_follows_the_terminal_size() {
    let mut app = loaded(80, 24);
    let (first, _) = open_attached(&mut app);
    app.handle(AppEvent::ShellDetach { session: first });
    let (second, _) = open_attached(&mut app);
    app.handle(AppEvent::ShellExited {
        session: second,
        ending: Ending::Exited(0),
    });
    requests(&mut app);
    app.handle(AppEvent::Input(TermEvent::Resize(100, 30)));
    assert_eq!(
        requests(&mut app),
        [ShellRequest::Resize {
            session: first,
            rows: 30,
            cols: 100
        }]
    );
    let size = app.shells.get(first).expect("first").screen.screen().size();
    assert_eq!(size, (30, 100));
    // The same size again changes nothing.
    app.handle(AppEvent::Input(TermEvent::Resize(100, 30)));
    assert!(requests(&mut app).is_empty());
}

#[test]
fn a_program_on_the_alternate_screen_gets_its_main_screen_back_when_it_leaves() {
    let mut app = loaded(80, 24);
    let (id, _) = open_attached(&mut app);
    output(&mut app, id, b"$ vim\r\n\x1b[?1049h\x1b[HVIM SCREEN");
    app.handle(AppEvent::ShellDetach { session: id });
    host_text(&mut app);
    // Attached while on the alternate screen: the terminal goes there too.
    assert!(app.begin_attach(id));
    let replay = host_text(&mut app);
    let replay = replay
        .strip_prefix(&push_marker("api"))
        .expect("the marker first");
    assert!(replay.starts_with("\x1b[?1049h"), "{replay:?}");
    assert!(replay.contains("VIM SCREEN"), "{replay:?}");
    // Leaving it: the raw bytes, then the shell's main screen, which the terminal's main
    // screen does not hold.
    output(&mut app, id, b"\x1b[?1049l");
    let back = host_text(&mut app);
    assert!(back.starts_with("\x1b[?1049l"), "{back:?}");
    assert!(back.contains("$ vim"), "{back:?}");
    // Only once.
    output(&mut app, id, b"$ ");
    assert_eq!(host_text(&mut app), "$ ");
}

#[test]
fn a_shell_that_cannot_start_is_an_error_not_a_session() {
    let mut app = loaded(80, 24);
    key(&mut app, KeyCode::Enter);
    let id = match requests(&mut app).first() {
        Some(ShellRequest::Start { session, .. }) => *session,
        other => panic!("{other:?}"),
    };
    app.shell_not_started(id, "cannot open a pseudo-terminal: out of ptys");
    assert!(app.shells.all().is_empty());
    assert!(!app.begin_attach(id), "the queued attach is dropped");
    match app.popups.last() {
        Some(Popup::Message(m)) => assert_eq!(m.title, "Cannot open a shell in api"),
        other => panic!("{other:?}"),
    }
}

//! The event loop: block on the channel, apply every pending event, start queued jobs, draw
//! once. While idle it sleeps in `recv`; while a spinner turns it wakes every [`TICK`].

use std::io;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ratatui::layout::Rect;

use super::event::{AppEvent, CrosstermSource, InputControl};
use super::jobs::Workers;
use super::pty::ShellHost;
use super::{App, Context};
use crate::engine::{Engine, EngineError};
use crate::events::NullSink;
use crate::manifest::ParseEnv;
use crate::tui::Tui;
use crate::ui::theme::Theme;

/// Spinner frame interval (only while a job runs).
pub const TICK: Duration = Duration::from_millis(120);

/// At most this many events are applied between two frames, so a flood of log lines cannot
/// keep the screen from updating.
const MAX_BATCH: usize = 20_000;

/// Run the terminal UI on the store at `store` until the user quits; returns the exit code.
pub fn run(store: PathBuf, parse_env: ParseEnv) -> Result<u8, EngineError> {
    // Opened once here so that an unusable store is reported on the plain terminal, before
    // the screen changes. Workers open their own engine per job.
    Engine::open(&store, parse_env.clone(), Arc::new(NullSink))?;
    // Like the store: a bad setting is reported on the plain terminal.
    let settings = super::settings::load(&parse_env.home).map_err(|e| EngineError::Settings {
        path: e.path,
        problem: e.problem,
    })?;
    let cwd = std::env::current_dir().map_err(io_at("read the current directory", "."))?;
    let context = Context {
        store: store.clone(),
        home: parse_env.home.clone(),
        cwd,
    };
    // Shells run this binary's `enter` (pty.rs).
    let exe = std::env::current_exe().map_err(io_at("find this program", "/proc/self/exe"))?;
    let (tx, rx) = mpsc::channel();
    let mut shells = ShellHost::new(exe, store.clone(), context.cwd.clone(), tx.clone());
    let workers = Workers::new(store, parse_env, tx.clone());
    let mut app = App::new(context, Theme::from_env());

    let mut tui = Tui::enter(settings.mouse).map_err(io_at("set up the terminal", "/dev/tty"))?;
    let input =
        InputControl::spawn(CrosstermSource, tx).map_err(io_at("start the input thread", "-"))?;
    let result = event_loop(&mut app, &mut tui, &rx, &workers, &mut shells, &input);
    // Quitting ends the shells (the question said so); on an error the terminal's end hangs
    // them up as well, when this process exits.
    shells.end_all(&mut app, &rx);
    input.stop();
    // Restore first, whatever happened, then report: the message must land on a sane screen.
    let restored = tui
        .exit()
        .map_err(io_at("restore the terminal", "/dev/tty"));
    result?;
    restored?;
    Ok(0)
}

fn event_loop(
    app: &mut App,
    tui: &mut Tui,
    rx: &Receiver<AppEvent>,
    workers: &Workers,
    shells: &mut ShellHost,
    input: &InputControl,
) -> Result<(), EngineError> {
    let size = tui
        .terminal()
        .size()
        .map_err(io_at("read the terminal size", "/dev/tty"))?;
    app.resize(Rect::new(0, 0, size.width, size.height));
    let mut next_tick = Instant::now() + TICK;
    loop {
        for (id, job) in app.take_jobs() {
            if let Err(e) = workers.spawn(id, job, app.cancel_token(id)) {
                app.job_not_started(id, &e);
            }
        }
        shells.serve(app, tui, input)?;
        if let Some(fatal) = app.fatal() {
            return Err(io_at("read the terminal", "/dev/tty")(io::Error::other(
                fatal.to_string(),
            )));
        }
        if app.should_quit() {
            return Ok(());
        }
        // An attached shell has the screen: its bytes pass through, nothing is drawn.
        if app.attached_shell().is_none() {
            tui.terminal()
                .draw(|frame| crate::ui::draw(app, frame))
                .map_err(io_at("draw on the terminal", "/dev/tty"))?;
        }

        let first = if app.animating() {
            match rx.recv_timeout(next_tick.saturating_duration_since(Instant::now())) {
                Ok(event) => Some(event),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return Err(channel_closed()),
            }
        } else {
            let event = rx.recv().map_err(|_| channel_closed())?;
            next_tick = Instant::now() + TICK;
            Some(event)
        };
        if let Some(event) = first {
            shells.taken(&event);
            app.handle(event);
        }
        for event in rx.try_iter().take(MAX_BATCH) {
            shells.taken(&event);
            app.handle(event);
        }
        // The spinner advances on time, also while events keep arriving.
        if app.animating() && Instant::now() >= next_tick {
            app.tick();
            next_tick = Instant::now() + TICK;
        }
    }
}

/// Every sender (the input thread and the workers hold them) is gone: cannot happen while the
/// loop holds `workers`, but it is reported rather than assumed.
fn channel_closed() -> EngineError {
    io_at("receive events", "-")(io::Error::other("the event channel closed"))
}

fn io_at(op: &'static str, path: &'static str) -> impl Fn(io::Error) -> EngineError {
    move |source| EngineError::Io {
        op,
        path: PathBuf::from(path),
        source,
    }
}

//! Everything that wakes the event loop, and the threads that produce it.
//!
//! One `std::sync::mpsc` channel carries every [`AppEvent`]: terminal input from the input
//! thread, engine events and results from workers (`jobs.rs`), shell output and exits from
//! the pseudo-terminals' threads (`pty.rs`). Producers only send; the loop
//! is the only reader and the only writer of UI state.
//!
//! The input thread polls the terminal with a timeout instead of blocking in `read`, so that
//! it can be paused: before a program takes over the tty (a shell, `$EDITOR`) it must stop
//! reading, or it would steal that program's keystrokes. [`InputControl::pause`] returns once
//! the thread has confirmed, which takes at most one poll interval.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use crossterm::event::Event as TermEvent;

use super::jobs::{JobId, JobOutput};
use super::shells::{Ending, SessionId};
use crate::events::{Event, EventSink};

/// How long the input thread waits for a key before it checks whether it should pause. Only
/// that thread wakes up this often (to look at a flag); the event loop itself sleeps.
pub const INPUT_POLL: Duration = Duration::from_millis(200);

#[derive(Debug)]
pub enum AppEvent {
    /// A key, a resize (or another terminal event).
    Input(TermEvent),
    /// The terminal could not be read any more; the loop ends with this error.
    InputFailed(String),
    /// A log line or progress update that the engine emitted while running a job.
    Engine { job: JobId, event: Event },
    /// A job ended; the error is the engine's message.
    JobDone {
        job: JobId,
        result: Result<JobOutput, String>,
    },
    /// What a shell wrote on its pseudo-terminal (`pty.rs`).
    ShellOutput { session: SessionId, bytes: Vec<u8> },
    /// The detach key, typed while the shell was attached.
    ShellDetach { session: SessionId },
    /// The shell's `karapace-tui enter` ended.
    ShellExited { session: SessionId, ending: Ending },
}

/// Forwards the engine's events into the loop's channel, tagged with the job that caused them.
pub struct ChannelSink {
    job: JobId,
    tx: Sender<AppEvent>,
    /// Set by the loop when the user cancels the job.
    cancel: Arc<AtomicBool>,
}

impl ChannelSink {
    pub fn new(job: JobId, tx: Sender<AppEvent>, cancel: Arc<AtomicBool>) -> ChannelSink {
        ChannelSink { job, tx, cancel }
    }
}

impl EventSink for ChannelSink {
    fn emit(&self, event: Event) {
        // Fails only when the loop has ended (the UI is closing): nobody is left to show the
        // event to, and the job's own result still reports success or failure.
        let _ui_gone = self.tx.send(AppEvent::Engine {
            job: self.job,
            event,
        });
    }

    fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }
}

/// Where terminal events come from: crossterm in the program, a script in tests.
pub trait EventSource: Send + 'static {
    /// Wait up to `timeout` for an event; `None` when none came.
    fn next(&mut self, timeout: Duration) -> io::Result<Option<TermEvent>>;
}

/// The real terminal.
pub struct CrosstermSource;

impl EventSource for CrosstermSource {
    fn next(&mut self, timeout: Duration) -> io::Result<Option<TermEvent>> {
        if crossterm::event::poll(timeout)? {
            crossterm::event::read().map(Some)
        } else {
            Ok(None)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InputState {
    Running,
    PauseRequested,
    Paused,
    Stopped,
}

/// The handle that pauses, resumes and stops the input thread.
#[derive(Clone)]
pub struct InputControl {
    shared: Arc<(Mutex<InputState>, Condvar)>,
}

impl InputControl {
    /// Start the input thread, sending into `tx` until the receiver is gone or [`stop`] is
    /// called.
    ///
    /// [`stop`]: InputControl::stop
    pub fn spawn(source: impl EventSource, tx: Sender<AppEvent>) -> io::Result<InputControl> {
        let control = InputControl {
            shared: Arc::new((Mutex::new(InputState::Running), Condvar::new())),
        };
        let thread_control = control.clone();
        thread::Builder::new()
            .name("tui-input".into())
            .spawn(move || thread_control.run(source, tx))?;
        Ok(control)
    }

    /// Stop reading the terminal; returns once the thread has stopped (at most one poll
    /// interval). Returns immediately if the thread has already ended.
    pub fn pause(&self) {
        let (state, changed) = &*self.shared;
        let mut s = lock(state);
        if *s == InputState::Running {
            *s = InputState::PauseRequested;
        }
        while *s == InputState::PauseRequested {
            s = wait(changed, s);
        }
    }

    pub fn resume(&self) {
        self.set(InputState::Running, |s| s != InputState::Stopped);
    }

    /// Ask the thread to end (at its next poll).
    pub fn stop(&self) {
        self.set(InputState::Stopped, |_| true);
    }

    pub fn is_paused(&self) -> bool {
        *lock(&self.shared.0) == InputState::Paused
    }

    fn set(&self, to: InputState, when: impl Fn(InputState) -> bool) {
        let (state, changed) = &*self.shared;
        let mut s = lock(state);
        if when(*s) {
            *s = to;
            changed.notify_all();
        }
    }

    fn run(&self, mut source: impl EventSource, tx: Sender<AppEvent>) {
        loop {
            if !self.wait_until_running() {
                return;
            }
            let sent = match source.next(INPUT_POLL) {
                Ok(Some(event)) => tx.send(AppEvent::Input(event)),
                Ok(None) => Ok(()),
                Err(e) => {
                    // The loop ends on this event; if it is gone already, so is everyone.
                    let _ui_gone = tx.send(AppEvent::InputFailed(e.to_string()));
                    self.stop();
                    return;
                }
            };
            if sent.is_err() {
                self.stop();
                return; // the event loop has ended
            }
        }
    }

    /// Block while paused; false when the thread should end.
    fn wait_until_running(&self) -> bool {
        let (state, changed) = &*self.shared;
        let mut s = lock(state);
        loop {
            match *s {
                InputState::Running => return true,
                InputState::Stopped => {
                    changed.notify_all();
                    return false;
                }
                InputState::PauseRequested => {
                    *s = InputState::Paused;
                    changed.notify_all();
                }
                InputState::Paused => s = wait(changed, s),
            }
        }
    }
}

/// A poisoned lock only means another thread panicked while holding it; the state it guards
/// (a flag, a sender) is still consistent, so carry on with it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn wait<'a, T>(c: &Condvar, g: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    c.wait(g).unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Instant;

    use crossterm::event::{KeyCode, KeyEvent};

    use super::*;

    /// Sends one key per call, forever, counting the calls.
    struct Keys(Arc<Mutex<usize>>);

    impl EventSource for Keys {
        fn next(&mut self, timeout: Duration) -> io::Result<Option<TermEvent>> {
            *lock(&self.0) += 1;
            thread::sleep(timeout.min(Duration::from_millis(2)));
            Ok(Some(TermEvent::Key(KeyEvent::from(KeyCode::Char('x')))))
        }
    }

    #[test]
    fn paused_input_thread_reads_nothing_until_resumed() {
        let (tx, rx) = mpsc::channel();
        let calls = Arc::new(Mutex::new(0));
        let control = InputControl::spawn(Keys(Arc::clone(&calls)), tx).expect("spawn");
        rx.recv().expect("a key while running");
        control.pause();
        assert!(control.is_paused());
        // Whatever was read before the pause took effect is drained; after it nothing comes.
        while rx.try_recv().is_ok() {}
        let before = *lock(&calls);
        let deadline = Instant::now() + Duration::from_millis(50);
        while Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(*lock(&calls), before, "the source was polled while paused");
        assert!(rx.try_recv().is_err(), "an event arrived while paused");
        control.resume();
        rx.recv().expect("keys again after resume");
        control.stop();
    }

    struct Failing;

    impl EventSource for Failing {
        fn next(&mut self, _timeout: Duration) -> io::Result<Option<TermEvent>> {
            Err(io::Error::other("tty gone"))
        }
    }

    #[test]
    fn a_read_error_is_reported_and_ends_the_thread() {
        let (tx, rx) = mpsc::channel();
        let control = InputControl::spawn(Failing, tx).expect("spawn");
        match rx.recv().expect("an event") {
            AppEvent::InputFailed(msg) => assert!(msg.contains("tty gone"), "{msg}"),
            other => panic!("unexpected {other:?}"),
        }
        // Pausing a stopped thread must not hang.
        control.pause();
        assert!(
            rx.recv().is_err(),
            "the thread ended and dropped its sender"
        );
    }
}

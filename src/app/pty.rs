//! The shells' pseudo-terminals and threads, owned by the event loop; the state they feed is in
//! `shells.rs`, and they reach it only through events.
//!
//! A shell is this very binary run as `karapace-tui --store STORE enter ENV_ID` on a new
//! pseudo-terminal (portable-pty) of the terminal's size, with our environment (`TERM` among
//! it): the CLI's path does everything as it does for a person typing that command — joining a
//! running environment or refusing to, subordinate id maps, the terminal bound as the sandbox's
//! `/dev/console`, the session marker that makes the environment `running`.
//!
//! Per session, two threads: the reader sends everything the shell writes as
//! [`AppEvent::ShellOutput`] (so the pty never fills up and blocks the shell, attached or not),
//! and the waiter reaps `enter` and sends [`AppEvent::ShellExited`] after the reader has passed
//! on the last output. While a shell is attached, an [`Attachment`] thread reads the terminal's
//! bytes (the input thread is paused) and writes them to the shell, except the detach key,
//! which it reports as [`AppEvent::ShellDetach`]; it also reports SIGWINCH as a resize (nobody
//! else reads the terminal's events then).

use std::collections::HashMap;
use std::io::{self, ErrorKind, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossterm::event::Event as TermEvent;
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;
use portable_pty::{native_pty_system, CommandBuilder, MasterPty, PtySize};
use signal_hook::consts::SIGWINCH;
use signal_hook::SigId;

use super::event::{AppEvent, InputControl};
use super::shells::{split_detach, Ending, SessionId, ShellRequest};
use super::App;
use crate::engine::EngineError;
use crate::tui::Tui;
use crate::types::EnvId;

/// How long the waiter lets the reader pass on the shell's last output before it reports the
/// exit. A program left in the background can keep the terminal open for good, so not longer.
const DRAIN: Duration = Duration::from_millis(500);

/// How long quitting waits for hung-up shells to end before it kills them.
const HANGUP_GRACE: Duration = Duration::from_secs(3);

/// Output of one shell read but not yet taken in by the loop, at most: the reader waits above
/// it, so a shell that writes faster than the loop parses (or than the terminal shows) fills
/// its pty and is slowed down, as on a terminal of its own, instead of filling memory.
const BACKLOG: usize = 1 << 20;

/// The bytes of one shell in the channel, shared by its reader and the loop.
#[derive(Default)]
struct Backlog {
    /// (bytes sent and not yet taken in, the pty was released: stop waiting)
    state: Mutex<(usize, bool)>,
    changed: Condvar,
}

impl Backlog {
    /// The reader is about to send `n` bytes: wait until the loop has room for them.
    fn add(&self, n: usize) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        while state.0 > BACKLOG && !state.1 {
            state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        state.0 += n;
    }

    /// The loop took `n` bytes in.
    fn take(&self, n: usize) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.0 = state.0.saturating_sub(n);
        self.changed.notify_all();
    }

    /// Nobody takes anything in any more.
    fn close(&self) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).1 = true;
        self.changed.notify_all();
    }
}

/// One session's pseudo-terminal, as the loop keeps it.
struct Pty {
    master: Box<dyn MasterPty + Send>,
    /// Shared with the attachment thread of the moment (there is one writer per pty).
    writer: Arc<Mutex<Box<dyn Write + Send>>>,
    /// `karapace-tui enter`.
    pid: Pid,
    backlog: Arc<Backlog>,
}

impl Drop for Pty {
    fn drop(&mut self) {
        // Its reader may wait for room that the loop will no longer make.
        self.backlog.close();
    }
}

/// The shells' side of the loop: their pseudo-terminals and the attachment, if any.
pub struct ShellHost {
    exe: PathBuf,
    store: PathBuf,
    cwd: PathBuf,
    tx: Sender<AppEvent>,
    ptys: HashMap<SessionId, Pty>,
    attachment: Option<Attachment>,
    /// Output bytes per session applied since the last [`ShellHost::serve`].
    taken: HashMap<SessionId, usize>,
}

impl ShellHost {
    /// Shells will run `exe` (this binary) on `store`, starting in `cwd`.
    pub fn new(exe: PathBuf, store: PathBuf, cwd: PathBuf, tx: Sender<AppEvent>) -> ShellHost {
        ShellHost {
            exe,
            store,
            cwd,
            tx,
            ptys: HashMap::new(),
            attachment: None,
            taken: HashMap::new(),
        }
    }

    /// Call for every event the state applies: output taken in makes room for more once it
    /// is on the terminal, at the next [`ShellHost::serve`] (see [`BACKLOG`]). Not sooner, or
    /// a shell that writes as fast as the loop parses would keep one batch going for ever.
    pub fn taken(&mut self, event: &AppEvent) {
        if let AppEvent::ShellOutput { session, bytes } = event {
            *self.taken.entry(*session).or_default() += bytes.len();
        }
    }

    /// Carry out what the state asks for (start, attach, resize, hang up, release), write the
    /// attached shell's bytes to the terminal, and give the terminal back to the dashboard
    /// when the state says no shell has it any more. Called once per turn of the loop.
    pub fn serve(
        &mut self,
        app: &mut App,
        tui: &mut Tui,
        input: &InputControl,
    ) -> Result<(), EngineError> {
        for request in app.take_shell_requests() {
            self.carry_out(app, tui, input, request)?;
        }
        let out = app.take_host_output();
        if !out.is_empty() {
            let backend = tui.terminal().backend_mut();
            backend
                .write_all(&out)
                .and_then(|()| backend.flush())
                .map_err(io_at("write the shell's output to the terminal"))?;
        }
        for (session, bytes) in self.taken.drain() {
            if let Some(pty) = self.ptys.get(&session) {
                pty.backlog.take(bytes);
            }
        }
        let gone = self
            .attachment
            .as_ref()
            .is_some_and(|a| app.attached_shell() != Some(a.session));
        if gone {
            self.detach(tui, input)?;
        }
        Ok(())
    }

    fn carry_out(
        &mut self,
        app: &mut App,
        tui: &mut Tui,
        input: &InputControl,
        request: ShellRequest,
    ) -> Result<(), EngineError> {
        match request {
            ShellRequest::Start {
                session,
                env,
                rows,
                cols,
            } => {
                if let Err(e) = self.start(session, &env, rows, cols) {
                    app.shell_not_started(session, &e);
                }
            }
            ShellRequest::Attach(session) => self.attach(app, tui, input, session)?,
            ShellRequest::Resize {
                session,
                rows,
                cols,
            } => {
                if let Some(pty) = self.ptys.get(&session) {
                    if let Err(e) = pty.master.resize(size(rows, cols)) {
                        app.shell_trouble(session, &format!("resize its terminal: {e:#}"));
                    }
                }
            }
            ShellRequest::Hangup(session) => {
                if let Err(e) = self.signal(session, Signal::SIGHUP) {
                    app.shell_trouble(session, &e);
                }
            }
            ShellRequest::Release(session) => {
                self.ptys.remove(&session);
            }
        }
        Ok(())
    }

    /// Give the terminal to `session` if the state agrees (it still runs).
    fn attach(
        &mut self,
        app: &mut App,
        tui: &mut Tui,
        input: &InputControl,
        session: SessionId,
    ) -> Result<(), EngineError> {
        let Some(writer) = self.ptys.get(&session).map(|p| Arc::clone(&p.writer)) else {
            return Ok(());
        };
        if self.attachment.is_some() || !app.begin_attach(session) {
            return Ok(());
        }
        // The input thread stops reading first, or it would take the shell's keys.
        input.pause();
        tui.pass_through()
            .map_err(io_at("hand the terminal to the shell"))?;
        match Attachment::spawn(session, writer, self.tx.clone()) {
            Ok(attachment) => self.attachment = Some(attachment),
            Err(e) => {
                app.attach_failed(session, &e.to_string());
                tui.take_back()
                    .map_err(io_at("take the terminal back from the shell"))?;
                input.resume();
            }
        }
        Ok(())
    }

    /// Stop forwarding keys and give the terminal back to the dashboard.
    fn detach(&mut self, tui: &mut Tui, input: &InputControl) -> Result<(), EngineError> {
        if let Some(attachment) = self.attachment.take() {
            attachment.finish();
            // Back on the dashboard, which is in no environment (`crate::markers`).
            let uid = nix::unistd::getuid().as_raw();
            let pop = crate::markers::pop(uid, crate::markers::in_tmux());
            let backend = tui.terminal().backend_mut();
            backend
                .write_all(&pop)
                .and_then(|()| backend.flush())
                .map_err(io_at("write the terminal's container marker"))?;
            tui.take_back()
                .map_err(io_at("take the terminal back from the shell"))?;
            input.resume();
        }
        Ok(())
    }

    /// Open a pseudo-terminal and start `karapace-tui enter ENV` on it, with its threads.
    fn start(
        &mut self,
        session: SessionId,
        env: &EnvId,
        rows: u16,
        cols: u16,
    ) -> Result<(), String> {
        let pair = native_pty_system()
            .openpty(size(rows, cols))
            .map_err(|e| format!("cannot open a pseudo-terminal: {e:#}"))?;
        let mut cmd = CommandBuilder::new(&self.exe);
        cmd.arg("--store");
        cmd.arg(&self.store);
        cmd.arg("enter");
        cmd.arg(env.to_string());
        cmd.cwd(&self.cwd);
        // `enter` starts $SHELL (inside, when the environment has it). portable-pty replaces
        // SHELL with the password database's login shell unless it is set on the command, so
        // ours is passed on; without one, the password database's is what a login would set.
        if let Some(shell) = std::env::var_os("SHELL") {
            cmd.env("SHELL", shell);
        }
        let shown = format!(
            "{} --store {} enter {env}",
            self.exe.display(),
            self.store.display()
        );
        let child = pair
            .slave
            .spawn_command(cmd)
            .map_err(|e| format!("cannot start `{shown}`: {e:#}"))?;
        // Only the shell may hold the terminal's other side, so that its end ends our reads.
        drop(pair.slave);
        let pid = child
            .process_id()
            .and_then(|p| i32::try_from(p).ok())
            .map(Pid::from_raw)
            .ok_or_else(|| format!("`{shown}` started without a process id"))?;
        // The waiter reaps it by pid (waitpid(2) says how it ended, signal included); the
        // handle has nothing more to do.
        drop(child);
        let reader = pair
            .master
            .try_clone_reader()
            .map_err(|e| format!("cannot read the pseudo-terminal: {e:#}"))?;
        let writer = pair
            .master
            .take_writer()
            .map_err(|e| format!("cannot write to the pseudo-terminal: {e:#}"))?;
        let (drained_tx, drained) = mpsc::channel::<()>();
        let backlog = Arc::new(Backlog::default());
        let tx = self.tx.clone();
        let reader_backlog = Arc::clone(&backlog);
        thread::Builder::new()
            .name(format!("shell-{session}-read"))
            .spawn(move || read_output(session, reader, &tx, &reader_backlog, drained_tx))
            .map_err(|e| format!("cannot start the shell's reader thread: {e}"))?;
        let tx = self.tx.clone();
        thread::Builder::new()
            .name(format!("shell-{session}-wait"))
            .spawn(move || wait_for_exit(session, pid, &drained, &tx))
            .map_err(|e| format!("cannot start the shell's waiter thread: {e}"))?;
        self.ptys.insert(
            session,
            Pty {
                master: pair.master,
                writer: Arc::new(Mutex::new(writer)),
                pid,
                backlog,
            },
        );
        Ok(())
    }

    fn signal(&self, session: SessionId, signal: Signal) -> Result<(), String> {
        let Some(pty) = self.ptys.get(&session) else {
            return Ok(());
        };
        // The waiter reaps the process only when it has ended, and the state asks only for
        // running ones; ESRCH means it ended in between, which its exit event reports.
        match kill(pty.pid, signal) {
            Ok(()) | Err(Errno::ESRCH) => Ok(()),
            Err(e) => Err(format!("cannot send {signal} to process {}: {e}", pty.pid)),
        }
    }

    /// Quitting: hang up every running shell, give them [`HANGUP_GRACE`] to end, then kill
    /// what is left. Their exit events are applied meanwhile, so the state stays true.
    pub fn end_all(&mut self, app: &mut App, rx: &Receiver<AppEvent>) {
        if let Some(attachment) = self.attachment.take() {
            attachment.finish();
        }
        app.hang_up_all();
        for request in app.take_shell_requests() {
            if let ShellRequest::Hangup(session) = request {
                if let Err(e) = self.signal(session, Signal::SIGHUP) {
                    app.shell_trouble(session, &e);
                }
            }
        }
        let deadline = Instant::now() + HANGUP_GRACE;
        while app.running_shells() > 0 {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(event) => {
                    // Output still makes room: nothing writes it to the terminal any more.
                    if let AppEvent::ShellOutput { session, bytes } = &event {
                        if let Some(pty) = self.ptys.get(session) {
                            pty.backlog.take(bytes.len());
                        }
                    }
                    app.handle(event);
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
            }
        }
        let left: Vec<SessionId> = app.shells.running().map(|s| s.id).collect();
        for session in left {
            if let Err(e) = self.signal(session, Signal::SIGKILL) {
                // Nobody is left to show it to but the terminal after the UI has gone.
                eprintln!("karapace-tui: shell #{session}: {e}");
            }
        }
    }
}

/// The reader thread: everything the shell writes, as events, until the terminal closes.
fn read_output(
    session: SessionId,
    mut reader: Box<dyn Read + Send>,
    tx: &Sender<AppEvent>,
    backlog: &Backlog,
    drained: Sender<()>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let bytes = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => buf[..n].to_vec(),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            // EIO: every holder of the terminal's other side has closed it — how Linux says
            // end of file on a pseudo-terminal master (pty(7)).
            Err(e) if e.raw_os_error() == Some(libc::EIO) => break,
            Err(e) => format!("\r\n[karapace-tui: reading this shell's terminal failed: {e}]\r\n")
                .into_bytes(),
        };
        backlog.add(bytes.len());
        if tx.send(AppEvent::ShellOutput { session, bytes }).is_err() {
            break; // the loop has ended
        }
    }
    drop(drained);
}

/// The waiter thread: how `enter` ended, sent after its last output.
fn wait_for_exit(session: SessionId, pid: Pid, drained: &Receiver<()>, tx: &Sender<AppEvent>) {
    let ending = loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, code)) => break Ending::Exited(code as u32),
            Ok(WaitStatus::Signaled(_, signal, _)) => break Ending::Signal(signal.to_string()),
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(e) => break Ending::Unknown(format!("waitpid({pid}): {e}")),
        }
    };
    // Disconnected when the reader is done; a timeout when something still holds the
    // terminal. Either way the exit is reported now.
    let _drained_or_timed_out = drained.recv_timeout(DRAIN);
    // Fails only when the loop has ended, and then nobody waits for the news.
    let _ui_gone = tx.send(AppEvent::ShellExited { session, ending });
}

/// Forwarding the terminal's bytes to the attached shell, on a thread of its own.
pub struct Attachment {
    pub session: SessionId,
    /// Closing it wakes the thread and ends it.
    stop: UnixStream,
    winch: SigId,
    thread: JoinHandle<()>,
}

impl Attachment {
    fn spawn(
        session: SessionId,
        writer: Arc<Mutex<Box<dyn Write + Send>>>,
        tx: Sender<AppEvent>,
    ) -> io::Result<Attachment> {
        let (stop, stopped) = UnixStream::pair()?;
        let (winch_tx, winch) = UnixStream::pair()?;
        winch.set_nonblocking(true)?;
        // Safe registration: signal-hook writes one byte to the socket from the handler.
        let winch_id = signal_hook::low_level::pipe::register(SIGWINCH, winch_tx)?;
        let spawned = thread::Builder::new()
            .name(format!("shell-{session}-keys"))
            .spawn(move || forward_keys(session, &writer, &winch, &stopped, &tx));
        match spawned {
            Ok(thread) => Ok(Attachment {
                session,
                stop,
                winch: winch_id,
                thread,
            }),
            Err(e) => {
                signal_hook::low_level::unregister(winch_id);
                Err(e)
            }
        }
    }

    /// Stop forwarding; returns once the thread no longer reads the terminal, so that the
    /// input thread can take over.
    fn finish(self) {
        signal_hook::low_level::unregister(self.winch);
        drop(self.stop);
        if self.thread.join().is_err() {
            // Its panic message went to stderr; the keys are no longer read either way.
            eprintln!("karapace-tui: the shell's key thread panicked");
        }
    }
}

/// The attachment thread: the terminal's bytes to the shell until the detach key, a stop, or
/// a failure to read the terminal (which ends the UI, as for the input thread).
fn forward_keys(
    session: SessionId,
    writer: &Mutex<Box<dyn Write + Send>>,
    winch: &UnixStream,
    stop: &UnixStream,
    tx: &Sender<AppEvent>,
) {
    let stdin = io::stdin();
    let mut buf = [0u8; 4096];
    let fail = |what: String| {
        // The loop ends on this event; if it is gone already, so is everyone.
        let _ui_gone = tx.send(AppEvent::InputFailed(what));
    };
    loop {
        let mut fds = [
            PollFd::new(stdin.as_fd(), PollFlags::POLLIN),
            PollFd::new(winch.as_fd(), PollFlags::POLLIN),
            PollFd::new(stop.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(Errno::EINTR) => continue, // SIGWINCH itself interrupts poll
            Err(e) => return fail(format!("poll(2) on the terminal: {e}")),
        }
        let ready = |fd: &PollFd| {
            fd.revents().is_some_and(|r| {
                r.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR)
            })
        };
        let (keys, resized, stopped) = (ready(&fds[0]), ready(&fds[1]), ready(&fds[2]));
        if stopped {
            return;
        }
        if resized {
            drain(winch);
            match crossterm::terminal::size() {
                Ok((cols, rows)) => {
                    if tx
                        .send(AppEvent::Input(TermEvent::Resize(cols, rows)))
                        .is_err()
                    {
                        return;
                    }
                }
                Err(e) => return fail(format!("reading the terminal size failed: {e}")),
            }
        }
        if !keys {
            continue;
        }
        let n = match nix::unistd::read(libc::STDIN_FILENO, &mut buf) {
            Ok(0) => return fail("the terminal closed (end of input)".into()),
            Ok(n) => n,
            Err(Errno::EINTR | Errno::EAGAIN) => continue,
            Err(e) => return fail(format!("read(2) from the terminal: {e}")),
        };
        let (forward, detach) = split_detach(&buf[..n]);
        if !forward.is_empty() {
            let mut w = writer.lock().unwrap_or_else(|p| p.into_inner());
            if let Err(e) = w.write_all(forward).and_then(|()| w.flush()) {
                // The shell's side is closing (it ended; its exit event is on the way). Say so
                // on its screen rather than drop the keys silently.
                let bytes = format!("\r\n[karapace-tui: the shell no longer takes input: {e}]\r\n");
                let event = AppEvent::ShellOutput {
                    session,
                    bytes: bytes.into_bytes(),
                };
                if tx.send(event).is_err() {
                    return;
                }
            }
        }
        if detach {
            // Fails only when the loop has ended.
            let _ui_gone = tx.send(AppEvent::ShellDetach { session });
            return;
        }
    }
}

/// Empty the SIGWINCH socket (non-blocking): several signals make one resize. It ends on
/// WouldBlock (empty); the write end stays registered with signal-hook until `finish`, so
/// no other error is expected, and if one came the next poll would only wake again.
fn drain(mut socket: &UnixStream) {
    let mut buf = [0u8; 64];
    while matches!(socket.read(&mut buf), Ok(n) if n > 0) {}
}

fn size(rows: u16, cols: u16) -> PtySize {
    PtySize {
        rows,
        cols,
        pixel_width: 0,
        pixel_height: 0,
    }
}

fn io_at(op: &'static str) -> impl Fn(io::Error) -> EngineError {
    move |source| EngineError::Io {
        op,
        path: PathBuf::from("/dev/tty"),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_waits_for_room_in_the_backlog_until_the_loop_takes_output_in() {
        let backlog = Arc::new(Backlog::default());
        backlog.add(BACKLOG + 1);
        let (done_tx, done) = mpsc::channel();
        let reader = Arc::clone(&backlog);
        let thread = thread::spawn(move || {
            reader.add(10);
            done_tx.send(()).expect("send");
        });
        // Over the limit: the reader does not go on (checked for a while, not for ever).
        assert!(done.recv_timeout(Duration::from_millis(50)).is_err());
        backlog.take(BACKLOG + 1);
        done.recv().expect("the reader goes on once there is room");
        thread.join().expect("join");

        // A released pty lets a waiting reader go on as well.
        backlog.add(BACKLOG);
        let (done_tx, done) = mpsc::channel();
        let reader = Arc::clone(&backlog);
        let thread = thread::spawn(move || {
            reader.add(1);
            done_tx.send(()).expect("send");
        });
        assert!(done.recv_timeout(Duration::from_millis(50)).is_err());
        backlog.close();
        done.recv()
            .expect("the reader goes on once the pty is released");
        thread.join().expect("join");
    }
}

//! The waiting half of the helper: spawn the program, forward signals, reap, report the code.
//!
//! No signal handlers (and so no unsafe): the forwarded signals and SIGCHLD are blocked before
//! any child is spawned and taken synchronously with `sigwait` ([`SigSet::wait`]). Blocked
//! signals stay pending, so none is lost between spawn and wait; and blocked signals are never
//! discarded as "ignored" — which matters for PID 1 of a PID namespace, to which the kernel
//! otherwise delivers only signals it has a handler for (pid_namespaces(7)). The mask is
//! inherited across fork and exec, so the program's forked child clears it just before it
//! execs (`program.rs`).
//!
//! Where a wait must also watch a pipe or a clock, the same blocked set is read through a
//! signalfd (signalfd(2)) and `poll`ed: stage 1 watches PID 1's report pipe (see
//! [`Report`]), and an init whose program has ended lingers for joined sessions
//! ([`after_program`]): it polls its own `/proc` every [`LINGER_POLL`], the only periodic
//! wake-up, and only while it lingers.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::error::{Result, SandboxError};
use super::join::{joined_sessions, InitRecord, RecordFile, RecordLock};

/// How often a lingering init looks for joined sessions that are left.
pub const LINGER_POLL: Duration = Duration::from_millis(100);

/// Signals passed on to the child, as a terminal or a service manager would send them.
pub const FORWARDED: [Signal; 6] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// Blocks the forwarded signals and SIGCHLD in this (single-threaded) process.
pub fn block_forwarded_signals() -> Result<SigSet> {
    let mut set = SigSet::empty();
    for sig in FORWARDED {
        set.add(sig);
    }
    set.add(Signal::SIGCHLD);
    set.thread_block()
        .map_err(SandboxError::helper("block signals"))?;
    Ok(set)
}

/// Waits for the child `pid`, forwarding `signals` (minus SIGCHLD) to it. With `reap_all` (PID 1) every
/// exited descendant is reaped, not only `child`. Returns the child's exit code, 128+N for a
/// death by signal N.
pub fn supervise(pid: Pid, signals: &SigSet, reap_all: bool) -> Result<u8> {
    loop {
        if let Some(code) = reap(pid, reap_all)? {
            return Ok(code);
        }
        let sig = signals.wait().map_err(SandboxError::helper("sigwait"))?;
        if sig == Signal::SIGCHLD {
            continue;
        }
        match kill(pid, sig) {
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(errno) => return Err(SandboxError::helper("forward a signal")(errno)),
        }
    }
}

/// Reaps what has exited without blocking; `Some(code)` once `main` has.
fn reap(main: Pid, reap_all: bool) -> Result<Option<u8>> {
    let which = if reap_all { None } else { Some(main) };
    loop {
        match waitpid(which, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => return Ok(None),
            Ok(WaitStatus::Exited(pid, code)) if pid == main => {
                return Ok(Some(u8::try_from(code).unwrap_or(1)));
            }
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == main => {
                return Ok(Some(128u8.saturating_add(sig as u8)));
            }
            Ok(_) | Err(Errno::EINTR) => {}
            Err(errno) => return Err(SandboxError::helper("waitpid")(errno)),
        }
    }
}

/// What PID 1 tells stage 1 over the report pipe, one line each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    /// The root is built and the program started: the environment can be joined. PID 1's
    /// start time (field 22 of its `/proc/PID/stat`), which PID 1 reads before `pivot_root`:
    /// afterwards stage 1, in the same mount namespace, sees the new PID namespace's `/proc`,
    /// where PID 1's host pid means nothing.
    Ready { start_time: u64 },
    /// The program exited with this code while joined sessions run: PID 1 stays as their
    /// init, no longer tied to stage 1, which exits with the code.
    Exited(u8),
    /// The program exited with this code and no session is left: every other process of the
    /// environment is ended and reaped, the record says `exiting`, and PID 1 exits next (the
    /// kernel unmounts the root on its way). Stage 1 returns the code without waiting for that.
    Ending(u8),
}

impl Report {
    pub fn line(&self) -> String {
        match self {
            Report::Ready { start_time } => format!("ready {start_time}\n"),
            Report::Exited(code) => format!("exit {code}\n"),
            Report::Ending(code) => format!("end {code}\n"),
        }
    }

    /// Writes the line to stage 1; a closed pipe (stage 1 is gone) is no error.
    pub fn send(&self, pipe: &mut File) -> Result<()> {
        match pipe.write_all(self.line().as_bytes()) {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
            other => other.map_err(SandboxError::io("report to stage 1 over", "a pipe")),
        }
    }

    pub fn parse(line: &str) -> Option<Report> {
        match line.trim_end().split_once(' ') {
            Some(("ready", start)) => start
                .parse()
                .ok()
                .map(|start_time| Report::Ready { start_time }),
            Some(("exit", code)) => code.parse().ok().map(Report::Exited),
            Some(("end", code)) => code.parse().ok().map(Report::Ending),
            _ => None,
        }
    }
}

fn signal_fd(signals: &SigSet) -> Result<SignalFd> {
    SignalFd::with_flags(signals, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(SandboxError::helper("signalfd"))
}

/// Stage 1's wait: like [`supervise`] (PID 1 is `pid`), and reading PID 1's `report` pipe.
/// On [`Report::Ready`] PID 1 (its host pid is the second half of `record`) is written into
/// the locked record and the lock released; on [`Report::Exited`] this returns at once,
/// leaving PID 1 to its joined sessions, and on [`Report::Ending`] too, leaving PID 1 to its
/// exit, unless `await_init` (the session's cgroups can only be removed once PID 1 has left
/// them): then PID 1 is reaped first. EOF on the pipe means PID 1 is exiting: its status gives
/// the code.
///
/// Why not always wait for PID 1: its exit tears down the sandbox's mount namespace, whose
/// unmounts wait for an expedited RCU grace period (umount(2) of the detached old root and of
/// the overlay), about 0.2 ms in which nothing of the session runs any more. bubblewrap's
/// parent returns without it too. A later start, `destroy` or `archive` of the environment
/// waits for an init recorded as exiting ([`super::join::await_exiting_init`]).
pub fn supervise_stage2(
    pid: Pid,
    signals: &SigSet,
    report: File,
    mut record: Option<(RecordLock, i32)>,
    await_init: bool,
) -> Result<u8> {
    let sigfd = signal_fd(signals)?;
    let mut report = Some(Reports {
        pipe: report,
        pending: Vec::new(),
        closed: false,
    });
    loop {
        if let Some(code) = reap(pid, false)? {
            // It may have reported its program's code, then lingered and ended before we read
            // the report: the program's code is the session's.
            let rest = match report.as_mut() {
                Some(reports) => reports.rest()?,
                None => Vec::new(),
            };
            return Ok(exited(&rest).unwrap_or(code));
        }
        let (signalled, readable) =
            wait_readable(&sigfd, report.as_ref().map(|r| &r.pipe), PollTimeout::NONE)?;
        if signalled {
            while let Some(sig) = read_signal(&sigfd)? {
                if sig != Signal::SIGCHLD {
                    match kill(pid, sig) {
                        Ok(()) | Err(Errno::ESRCH) => {}
                        Err(errno) => return Err(SandboxError::helper("forward a signal")(errno)),
                    }
                }
            }
        }
        let Some(reports) = report.as_mut().filter(|_| readable) else {
            continue;
        };
        let received = reports.read()?;
        if let Some(code) = exited(&received) {
            if await_init && received.iter().any(|r| matches!(r, Report::Ending(_))) {
                reap_blocking(pid)?;
            }
            return Ok(code);
        }
        let ready = received.iter().find_map(|r| match r {
            Report::Ready { start_time } => Some(*start_time),
            Report::Exited(_) | Report::Ending(_) => None,
        });
        if let Some(start_time) = ready {
            if let Some((lock, init)) = record.take() {
                lock.write(&InitRecord {
                    pid: init,
                    start_time,
                    exiting: false,
                })?;
            }
        }
        if reports.closed {
            // PID 1 is exiting (ready or not); the lock goes with the record.
            report = None;
            record = None;
        }
    }
}

/// The program's code, if PID 1 has reported it (lingering or ending).
fn exited(reports: &[Report]) -> Option<u8> {
    reports.iter().find_map(|r| match r {
        Report::Exited(code) | Report::Ending(code) => Some(*code),
        Report::Ready { .. } => None,
    })
}

/// Waits until `pid`, a child, has exited; its status is the program's business, already
/// reported.
fn reap_blocking(pid: Pid) -> Result<()> {
    loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) | Err(Errno::ECHILD) => {
                return Ok(())
            }
            Ok(_) | Err(Errno::EINTR) => {}
            Err(errno) => return Err(SandboxError::helper("waitpid for PID 1")(errno)),
        }
    }
}

/// Stage 1's end of the report pipe.
struct Reports {
    pipe: File,
    /// A line not complete yet.
    pending: Vec<u8>,
    /// EOF seen: PID 1 is exiting.
    closed: bool,
}

impl Reports {
    /// One read (the pipe polled readable); every whole line received so far.
    fn read(&mut self) -> Result<Vec<Report>> {
        let mut chunk = [0u8; 256];
        match self.pipe.read(&mut chunk) {
            Ok(0) => self.closed = true,
            Ok(n) => self.pending.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(SandboxError::io("read the report of PID 1 from", "a pipe")(
                    e,
                ))
            }
        }
        self.lines()
    }

    /// After PID 1 has exited (no writer is left): everything it reported and we did not read.
    fn rest(&mut self) -> Result<Vec<Report>> {
        if !self.closed {
            self.pipe
                .read_to_end(&mut self.pending)
                .map_err(SandboxError::io("read the report of PID 1 from", "a pipe"))?;
            self.closed = true;
        }
        self.lines()
    }

    fn lines(&mut self) -> Result<Vec<Report>> {
        let mut reports = Vec::new();
        while let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            let text = String::from_utf8_lossy(&line);
            let report = Report::parse(&text)
                .ok_or_else(|| SandboxError::InvalidPlan(format!("PID 1 reported {text:?}")))?;
            reports.push(report);
        }
        Ok(reports)
    }
}

/// Polls the signalfd and, if given, `pipe`; returns which of them are readable (or hung up).
fn wait_readable(
    sigfd: &SignalFd,
    pipe: Option<&File>,
    timeout: PollTimeout,
) -> Result<(bool, bool)> {
    let mut fds = vec![PollFd::new(sigfd.as_fd(), PollFlags::POLLIN)];
    if let Some(pipe) = pipe {
        fds.push(PollFd::new(pipe.as_fd(), PollFlags::POLLIN));
    }
    match poll(&mut fds, timeout) {
        Ok(_) => {}
        Err(Errno::EINTR) => return Ok((false, false)),
        Err(errno) => return Err(SandboxError::helper("poll")(errno)),
    }
    let ready = |fd: Option<&PollFd>| fd.and_then(|f| f.revents()).is_some_and(|r| !r.is_empty());
    Ok((ready(fds.first()), ready(fds.get(1))))
}

/// The next pending signal from a non-blocking signalfd.
fn read_signal(sigfd: &SignalFd) -> Result<Option<Signal>> {
    loop {
        match sigfd.read_signal() {
            Ok(Some(info)) => match Signal::try_from(info.ssi_signo as i32) {
                Ok(sig) => return Ok(Some(sig)),
                // Only blocked signals reach the signalfd, and all of them are known.
                Err(_) => continue,
            },
            Ok(None) => return Ok(None),
            Err(errno) => return Err(SandboxError::helper("read the signalfd")(errno)),
        }
    }
}

/// PID 1 of a session (`--session`), once its program has exited with `code`. Under the
/// record's lock: with no joined session left, the record is marked `exiting`, whatever else
/// runs in the environment is ended ([`end_other_processes`]), stage 1 is told the code
/// ([`Report::Ending`]) and the init exits. Otherwise the init detaches
/// (see [`detach`]), tells stage 1 the code over `report` (so the first session's command
/// returns) and lingers, reaping, until no joined session is left; TERM, INT, HUP and QUIT
/// end it at once, and with it the environment.
pub fn after_program(
    code: u8,
    record: RecordFile,
    mut report: File,
    signals: &SigSet,
) -> Result<u8> {
    let lock = record.lock()?;
    if count_joined()? == 0 {
        lock.mark_exiting()?;
        end_other_processes()?;
        Report::Ending(code).send(&mut report)?;
        return Ok(code);
    }
    detach()?;
    Report::Exited(code).send(&mut report)?;
    drop(report);
    linger(lock.unlock()?, signals)
}

/// Ends every other process of the environment (a program's background children) and reaps
/// them, before stage 1 is told the code: when the session's command returns, nothing of the
/// environment runs but its exiting init. The kernel would end them too once PID 1 exits
/// (pid_namespaces(7)), but stage 1 no longer waits for that. kill(2) with pid -1 reaches every
/// process of the caller's PID namespace (and those below it) but the caller; orphans are
/// reparented to PID 1 before their parent can be reaped, so ECHILD means all are gone.
fn end_other_processes() -> Result<()> {
    // Only as PID 1 of a PID namespace: anywhere else, -1 would reach every process of the
    // user on the host.
    if nix::unistd::getpid().as_raw() != 1 {
        return Ok(());
    }
    match kill(Pid::from_raw(-1), Signal::SIGKILL) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(errno) => {
            return Err(SandboxError::helper(
                "kill(-1, SIGKILL) the environment's other processes",
            )(errno))
        }
    }
    loop {
        match waitpid(None, None) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(Errno::ECHILD) => return Ok(()),
            Err(errno) => return Err(SandboxError::helper("waitpid")(errno)),
        }
    }
}

fn count_joined() -> Result<usize> {
    joined_sessions().map_err(SandboxError::io(
        "list the environment's processes in",
        "/proc",
    ))
}

/// No longer tied to stage 1 and its caller: no PR_SET_PDEATHSIG, a session of its own (no
/// terminal signals of the first session's terminal reach it), and the standard streams on
/// /dev/null, so the first session's pipes and terminal are released (a caller reading its
/// output to EOF must not wait for the joined sessions).
fn detach() -> Result<()> {
    nix::sys::prctl::set_pdeathsig(None)
        .map_err(SandboxError::helper("prctl(PR_SET_PDEATHSIG, 0)"))?;
    nix::unistd::setsid().map_err(SandboxError::helper("setsid"))?;
    let null = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(SandboxError::io("open", "/dev/null"))?;
    for fd in 0..=2 {
        nix::unistd::dup2(null.as_raw_fd(), fd).map_err(SandboxError::helper("dup2 /dev/null"))?;
    }
    Ok(())
}

fn linger(mut record: RecordFile, signals: &SigSet) -> Result<u8> {
    let sigfd = signal_fd(signals)?;
    let mut next_check = Instant::now() + LINGER_POLL;
    loop {
        reap_orphans()?;
        let now = Instant::now();
        if now >= next_check {
            let lock = record.lock()?;
            if count_joined()? == 0 {
                lock.mark_exiting()?;
                return Ok(0);
            }
            record = lock.unlock()?;
            next_check = now + LINGER_POLL;
            continue;
        }
        let timeout = PollTimeout::try_from(next_check - now).unwrap_or(PollTimeout::MAX);
        let (signalled, _) = wait_readable(&sigfd, None, timeout)?;
        if !signalled {
            continue;
        }
        while let Some(sig) = read_signal(&sigfd)? {
            if !matches!(sig, Signal::SIGCHLD | Signal::SIGUSR1 | Signal::SIGUSR2) {
                return Ok(128u8.saturating_add(sig as u8));
            }
        }
    }
}

/// Reaps every exited child (orphans of the environment) without blocking.
fn reap_orphans() -> Result<()> {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return Ok(()),
            Ok(_) | Err(Errno::EINTR) => {}
            Err(errno) => return Err(SandboxError::helper("waitpid")(errno)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::io::Write;

    use super::{exited, Report, Reports};

    fn pipe() -> (Reports, File) {
        let (read, write) = nix::unistd::pipe().expect("pipe");
        let reports = Reports {
            pipe: File::from(read),
            pending: Vec::new(),
            closed: false,
        };
        (reports, File::from(write))
    }

    #[test]
    fn reports_are_read_whole_lines_at_a_time() {
        let (mut reports, mut writer) = pipe();
        writer.write_all(b"ready 42\nex").expect("write");
        assert_eq!(
            reports.read().expect("read"),
            vec![Report::Ready { start_time: 42 }]
        );
        writer.write_all(b"it 3\n").expect("write");
        assert_eq!(reports.read().expect("read"), vec![Report::Exited(3)]);
        drop(writer);
        assert_eq!(reports.read().expect("read"), vec![]);
        assert!(reports.closed);
        let (mut reports, mut writer) = pipe();
        writer.write_all(b"bogus\n").expect("write");
        assert!(reports.read().is_err(), "an unknown line is an error");
    }

    #[test]
    fn a_code_reported_before_stage_2_ended_wins() {
        let (mut reports, mut writer) = pipe();
        writer.write_all(b"ready 1\nexit 7\n").expect("write");
        drop(writer);
        let rest = reports.rest().expect("rest");
        assert_eq!(exited(&rest), Some(7));
        let (mut reports, writer) = pipe();
        drop(writer);
        assert_eq!(exited(&reports.rest().expect("rest")), None);
        // An init that ends the session reports the program's code as well.
        let (mut reports, mut writer) = pipe();
        writer.write_all(b"ready 1\nend 9\n").expect("write");
        drop(writer);
        assert_eq!(exited(&reports.rest().expect("rest")), Some(9));
    }

    #[test]
    fn reports_round_trip_and_nothing_else_parses() {
        for r in [
            Report::Ready { start_time: 987654 },
            Report::Exited(0),
            Report::Exited(137),
            Report::Ending(0),
            Report::Ending(3),
        ] {
            assert_eq!(Report::parse(&r.line()), Some(r));
        }
        for bad in [
            "",
            "ready",
            "ready now",
            "exit",
            "exit 256",
            "exit -1",
            "end",
            "end 300",
            "done 0",
        ] {
            assert_eq!(Report::parse(bad), None, "{bad}");
        }
    }
}

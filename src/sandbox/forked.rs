//! Starting a session by forking this process instead of executing the helper binary.
//!
//! `karapace-tui exec` and `enter` run one thread when they start a sandbox. Executing
//! `karapace-tui __sandbox-init` from there costs a second start of this binary (loading,
//! relocation, the runtime's set-up: about a millisecond) plus a plan file written, read and
//! deleted on the store's file system. A fork of a single-threaded process is an ordinary copy
//! that may run any code, so the child calls stage 1 directly with the plan in memory
//! ([`helper::forked_stage1`]); everything after that point is the same code as in the
//! executed helper. A threaded caller (the TUI) cannot fork safely: [`start_session`] then
//! falls back to [`spawn_session`], as it does when `KARAPACE_SANDBOX_EXEC_HELPER=1` asks for
//! the executed helper (tests use it to cover both paths).
//!
//! What the child must undo, because fork keeps what exec would have dropped:
//! - descriptors: every one above stderr is closed except the two it needs (the id-map channel
//!   and the "ran nothing" pipe). Close-on-exec is not enough: PID 1 of the sandbox is a fork
//!   of stage 1 that never executes anything, and a copy of, say, the environment's lock
//!   descriptor would keep that flock(2) held for as long as the environment runs.
//! - the environment: cleared but for the trace switch, as for the executed helper (the
//!   program's environment comes from the plan).
//!
//! A session that joins an environment which ends meanwhile runs nothing and exits 125; the
//! executed helper says so by leaving its plan file in place, the forked one by writing a byte
//! into a pipe ([`ForkedSession::ran_nothing`]).

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::ExitStatus;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::error::{Result, SandboxError, EXIT_SETUP_FAILED};
use super::fork::{fork, ForkError, Forked, ThreadCount};
use super::helper;
use super::join::{running_init, RecordLock};
use super::plan::SandboxPlan;
use super::premap::Premapped;
use super::spawn::{
    abandon, id_map_tools, release, spawn_session, write_id_maps, HelperProcess, SandboxStdio,
    Session,
};
use super::sys::IdMapSync;

/// Asks for the executed helper even where forking would work.
pub const EXEC_HELPER_VAR: &str = "KARAPACE_SANDBOX_EXEC_HELPER";

/// A session started by [`start_session`], one of three ways.
#[derive(Debug)]
pub enum RunningSession {
    Executed(Session),
    Forked(ForkedSession),
    /// Started cold by this process itself, in place of stage 1, and over: its exit status.
    Inline(ExitStatus),
}

impl RunningSession {
    /// The pid of stage 1 (the process to wait for): this process for an inline one.
    pub fn id(&self) -> u32 {
        match self {
            RunningSession::Executed(s) => s.child.id(),
            RunningSession::Forked(s) => s.process.id(),
            RunningSession::Inline(_) => std::process::id(),
        }
    }

    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        match self {
            RunningSession::Executed(s) => s.child.wait(),
            RunningSession::Forked(s) => s.process.wait(),
            RunningSession::Inline(status) => Ok(*status),
        }
    }

    /// See [`Session::ran_nothing`]. An inline session always ran (it started cold).
    pub fn ran_nothing(&self, status: ExitStatus) -> io::Result<bool> {
        match self {
            RunningSession::Executed(s) => s.ran_nothing(status),
            RunningSession::Forked(s) => s.ran_nothing(status),
            RunningSession::Inline(_) => Ok(false),
        }
    }
}

/// A forked stage 1.
#[derive(Debug)]
pub struct ForkedSession {
    process: ForkedProcess,
    /// The read end of the "ran nothing" pipe (non-blocking).
    ran_nothing: File,
}

impl ForkedSession {
    /// Exit 125 and a byte in the pipe: the environment ended while this session was joining
    /// it, and nothing ran.
    fn ran_nothing(&self, status: ExitStatus) -> io::Result<bool> {
        if status.code() != Some(i32::from(EXIT_SETUP_FAILED)) {
            return Ok(false);
        }
        let mut byte = [0u8; 1];
        match (&self.ran_nothing).read(&mut byte) {
            Ok(n) => Ok(n == 1),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// A child of this process, waited for with waitpid(2); its status is kept once reaped.
#[derive(Debug)]
pub struct ForkedProcess {
    pid: Pid,
    status: Option<ExitStatus>,
}

impl ForkedProcess {
    /// The child `pid` made by [`super::fork::fork`].
    pub(crate) fn new(pid: Pid) -> ForkedProcess {
        ForkedProcess { pid, status: None }
    }

    pub fn id(&self) -> u32 {
        self.pid.as_raw().unsigned_abs()
    }

    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        self.wait_with(None)
            .map(|status| status.expect("a blocking wait returns a status"))
    }

    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        self.wait_with(Some(WaitPidFlag::WNOHANG))
    }

    pub fn kill(&mut self) -> io::Result<()> {
        if self.status.is_some() {
            return Ok(());
        }
        kill(self.pid, Signal::SIGKILL).map_err(io::Error::from)
    }

    fn wait_with(&mut self, flags: Option<WaitPidFlag>) -> io::Result<Option<ExitStatus>> {
        if let Some(status) = self.status {
            return Ok(Some(status));
        }
        loop {
            // The raw wait status std's ExitStatus wraps (wait(2)): the code in bits 8-15, or
            // the signal in bits 0-6 with 0x80 for a core dump.
            let raw = match waitpid(self.pid, flags) {
                Ok(WaitStatus::Exited(_, code)) => (code & 0xff) << 8,
                Ok(WaitStatus::Signaled(_, signal, core)) => {
                    signal as i32 | if core { 0x80 } else { 0 }
                }
                Ok(WaitStatus::StillAlive) => return Ok(None),
                // Stopped or continued (only reported when asked for): keep waiting.
                Ok(_) => continue,
                Err(Errno::EINTR) => continue,
                Err(errno) => return Err(errno.into()),
            };
            let status = ExitStatus::from_raw(raw);
            self.status = Some(status);
            return Ok(Some(status));
        }
    }
}

/// Starts `plan` as a session of the environment whose init record is `record`: forked when
/// this process runs one thread, else through the helper binary (see the module doc). The
/// program's stdin, stdout and stderr are ours, stdout replaced by stderr when
/// `stdout_to_stderr`.
///
/// `premapped`: the user namespace made ahead for this start ([`Premapped::start`]), used by a
/// forked stage 1 when the plan maps a subordinate range.
pub fn start_session(
    plan: &SandboxPlan,
    record: &Path,
    helper_exe: &Path,
    plan_dir: &Path,
    stdout_to_stderr: bool,
    premapped: Option<Premapped>,
) -> Result<RunningSession> {
    let wants_exec = std::env::var_os(EXEC_HELPER_VAR).is_some_and(|v| v == "1");
    if !wants_exec {
        plan.validate()?;
        let threads = ThreadCount::open().map_err(SandboxError::io(
            "open (to count this process's threads)",
            "/proc/self/status",
        ))?;
        let premapped = match try_inline(plan, record, stdout_to_stderr, &threads, premapped)? {
            Inline::Ran(status) => return Ok(RunningSession::Inline(status)),
            Inline::NotHere(premapped) => premapped,
        };
        match fork_session(plan, record, stdout_to_stderr, &threads, premapped) {
            Err(Refused::Threaded) => {}
            Err(Refused::Failed(e)) => return Err(e),
            Ok(session) => return Ok(RunningSession::Forked(session)),
        }
    }
    let stdio = executed_stdio(stdout_to_stderr)?;
    spawn_session(plan, record, helper_exe, plan_dir, stdio).map(RunningSession::Executed)
}

fn executed_stdio(stdout_to_stderr: bool) -> Result<SandboxStdio> {
    let mut stdio = SandboxStdio::inherit();
    if stdout_to_stderr {
        let stderr = io::stderr()
            .as_fd()
            .try_clone_to_owned()
            .map_err(SandboxError::io("duplicate", "stderr"))?;
        stdio.stdout = std::process::Stdio::from(stderr);
    }
    Ok(stdio)
}

/// What [`try_inline`] did.
enum Inline {
    /// The session ran to its end: its exit status.
    Ran(ExitStatus),
    /// Not here: stage 1 is forked (or executed) instead; the namespace made ahead is handed
    /// back for it.
    NotHere(Option<Premapped>),
}

/// A cold start in this process, in place of a forked stage 1: one fork (PID 1's) instead of
/// two, and one process less to start and end. Stage 1's work runs here as it would there
/// (`helper::inline_cold_start`), and this process waits for PID 1 as stage 1 would.
///
/// Only when this process runs one thread; when the environment does not run (checked under
/// the init record's lock: a joining session needs a stage 1, which enters the environment's
/// namespaces, which this process must not); when the program's stdout is ours (`--json`
/// keeps stdout for its own document, so a stage 1 redirects the program's); and, with a
/// subordinate range, when its namespace was made ahead (the tools cannot write the maps of
/// their own caller's namespace: they would run inside it, where their setuid bit is void).
/// PID 1 gets its own mount namespace (`Stage`), so pivot_root never moves our root.
fn try_inline(
    plan: &SandboxPlan,
    record: &Path,
    stdout_to_stderr: bool,
    threads: &ThreadCount,
    premapped: Option<Premapped>,
) -> Result<Inline> {
    let maps_outside = plan.outside_id_maps().is_some();
    let single = threads.single().map_err(SandboxError::io(
        "count this process's threads in",
        "/proc/self/status",
    ))?;
    if stdout_to_stderr || !single || (maps_outside && premapped.is_none()) {
        return Ok(Inline::NotHere(premapped));
    }
    let lock = RecordLock::acquire(record)?;
    if running_init(&lock)?.is_some() {
        return Ok(Inline::NotHere(premapped));
    }
    let premapped = premapped.filter(|_| maps_outside);
    // Flushed before PID 1's fork, as before stage 1's.
    io::stdout()
        .flush()
        .map_err(SandboxError::io("flush", "stdout"))?;
    // As a stage 1 would end: its setup error said on stderr, exit status 125.
    let code =
        helper::inline_cold_start(plan.clone(), lock, premapped, threads).unwrap_or_else(|e| {
            eprintln!("karapace-tui: {e}");
            EXIT_SETUP_FAILED
        });
    Ok(Inline::Ran(ExitStatus::from_raw(i32::from(code) << 8)))
}

enum Refused {
    /// More than one thread: use the executed helper.
    Threaded,
    Failed(SandboxError),
}

fn fork_session(
    plan: &SandboxPlan,
    record: &Path,
    stdout_to_stderr: bool,
    threads: &ThreadCount,
    premapped: Option<Premapped>,
) -> std::result::Result<ForkedSession, Refused> {
    let failed =
        |op: &'static str| move |errno: Errno| Refused::Failed(SandboxError::helper(op)(errno));
    let (nothing_read, nothing_write) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).map_err(failed("pipe2"))?;
    let outside_maps = plan.outside_id_maps();
    // Only a plan that awaits its maps uses a namespace made ahead (dropping it ends its seed).
    let premapped = premapped.filter(|_| outside_maps.is_some());
    // Before anything starts: without the tools stage 1 would only wait in vain.
    let (tools, channel) = match outside_maps {
        Some(_) => {
            let tools = match premapped {
                // They run already.
                Some(_) => None,
                None => Some(id_map_tools().map_err(Refused::Failed)?),
            };
            let pair = UnixStream::pair().map_err(|e| {
                Refused::Failed(SandboxError::io("create the id-map channel", "socketpair")(
                    e,
                ))
            })?;
            (tools, Some(pair))
        }
        None => (None, None),
    };
    let parent = nix::unistd::getpid().as_raw();
    // Whatever sits in our stdout buffer would otherwise be in the child's copy too (which
    // ends with `_exit` and never writes it, but a panic's exit would).
    io::stdout()
        .flush()
        .map_err(|e| Refused::Failed(SandboxError::io("flush", "stdout")(e)))?;
    let forked = match fork(threads) {
        Ok(forked) => forked,
        Err(ForkError::Threaded(_)) => return Err(Refused::Threaded),
        Err(ForkError::Count(e)) => {
            return Err(Refused::Failed(SandboxError::io(
                "count this process's threads in",
                "/proc/self/status",
            )(e)))
        }
        Err(ForkError::Fork(errno)) => return Err(failed("fork the sandbox's stage 1")(errno)),
    };
    match forked {
        Forked::Child => {
            drop(nothing_read);
            let (ours, theirs) = channel.map_or((None, None), |(o, t)| (Some(o), Some(t)));
            drop(ours);
            let theirs = theirs.map(OwnedFd::from);
            // Only the number: the seed and the tools are the parent's (`premapped` is never
            // dropped here, as `finish_child` runs no destructor of ours).
            let ns = premapped.as_ref().map(Premapped::ns_fd);
            super::fork::finish_child(EXIT_SETUP_FAILED, || {
                child(
                    plan.clone(),
                    parent,
                    record,
                    stdout_to_stderr,
                    theirs,
                    ns,
                    nothing_write,
                )
            })
        }
        Forked::Parent(pid) => {
            drop(nothing_write);
            let process = ForkedProcess { pid, status: None };
            let process = match (outside_maps, tools, channel, premapped) {
                (Some(_), None, Some((ours, theirs)), Some(premapped)) => {
                    drop(theirs);
                    let helper = HelperProcess::Forked(process);
                    // Our descriptor of the namespace goes; stage 1 holds its own.
                    let released = match premapped.finish() {
                        Ok(_ns) => release(helper, ours),
                        Err(e) => Err(abandon(helper, e)),
                    };
                    match released {
                        Ok(HelperProcess::Forked(process)) => process,
                        Ok(HelperProcess::Spawned(_)) => {
                            unreachable!("release returns the process it got")
                        }
                        Err(e) => return Err(Refused::Failed(e)),
                    }
                }
                (Some((uid_map, gid_map)), Some(tools), Some((ours, theirs)), None) => {
                    drop(theirs);
                    let helper = HelperProcess::Forked(process);
                    match write_id_maps(helper, ours, &tools, uid_map, gid_map) {
                        Ok(HelperProcess::Forked(process)) => process,
                        Ok(HelperProcess::Spawned(_)) => {
                            unreachable!("write_id_maps returns the process it got")
                        }
                        Err(e) => return Err(Refused::Failed(e)),
                    }
                }
                _ => process,
            };
            Ok(ForkedSession {
                process,
                ran_nothing: File::from(nothing_read),
            })
        }
    }
}

/// The forked child, up to stage 1: returns the exit code.
fn child(
    plan: SandboxPlan,
    parent: i32,
    record: &Path,
    stdout_to_stderr: bool,
    id_maps: Option<OwnedFd>,
    premapped: Option<RawFd>,
    ran_nothing: OwnedFd,
) -> u8 {
    let keep: Vec<RawFd> = [
        Some(ran_nothing.as_raw_fd()),
        id_maps.as_ref().map(AsRawFd::as_raw_fd),
        premapped,
    ]
    .into_iter()
    .flatten()
    .collect();
    if let Err(e) = prepare(stdout_to_stderr, &keep) {
        eprintln!("karapace-tui: {e}");
        return EXIT_SETUP_FAILED;
    }
    // The channel stays open in this process (stage 1 uses its raw number).
    let id_maps = id_maps.map(|fd| IdMapSync {
        fd: fd.into_raw_fd(),
        premapped,
        announce: premapped.is_none(),
    });
    helper::forked_stage1(plan, parent, record, id_maps, ran_nothing)
}

fn prepare(stdout_to_stderr: bool, keep: &[RawFd]) -> Result<()> {
    if stdout_to_stderr {
        nix::unistd::dup2(2, 1).map_err(SandboxError::helper("dup2(stderr, stdout)"))?;
    }
    close_inherited_fds(keep)?;
    helper::keeping_trace(|| {
        for (key, value) in std::env::vars_os() {
            // PID 1, a fork of this process, must not find the values in freed memory
            // (`integration::process_env_where`).
            crate::integration::wipe(std::os::unix::ffi::OsStringExt::into_vec(value));
            std::env::remove_var(key);
        }
        // The block itself too, here already: a joining session's program is forked from
        // this process inside the environment, where its `/proc/PID/environ` is readable until
        // it has executed the program (`environ.rs`). PID 1 also renames its command line;
        // stage 1, which only the host sees, keeps the runtime's.
        super::environ::wipe_environment_block().map_err(SandboxError::io(
            "overwrite the inherited environment block of stage 1 through",
            "/proc/self/mem",
        ))
    })
}

/// Closes every descriptor above stderr but `keep` (see the module doc for why).
pub(crate) fn close_inherited_fds(keep: &[RawFd]) -> Result<()> {
    let dir =
        std::fs::read_dir("/proc/self/fd").map_err(SandboxError::io("list", "/proc/self/fd"))?;
    let fds: Vec<RawFd> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2 && !keep.contains(fd))
        .collect();
    for fd in fds {
        match nix::unistd::close(fd) {
            // The read_dir descriptor itself, closed by now.
            Ok(()) | Err(Errno::EBADF) => {}
            Err(errno) => return Err(SandboxError::helper("close an inherited descriptor")(errno)),
        }
    }
    Ok(())
}

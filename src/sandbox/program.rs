//! Starting a sandbox's processes: forks tied to their parent, and the program's exec.
//!
//! The helper forks (`fork.rs`) rather than executing its own binary again: stage 1 forks PID 1
//! of the new PID namespace, PID 1 forks the program once the root is built, and a joining
//! helper forks the program after it has entered the running environment's namespaces. A
//! forked child inherits the plan in memory, and the parent's blocked signal mask
//! (`supervise.rs`), which the program's child clears just before it execs.
//!
//! Every forked child dies with its parent (`PR_SET_PDEATHSIG`). The parent could die before
//! the child has set that, so [`fork_tied`] hands the parent the write end of a pipe: the child
//! sets the signal, then reads its end without blocking; EOF means the parent is gone already
//! (EAGAIN: the parent still holds its end, and from now on its death kills us). `getppid`
//! cannot tell: across a PID namespace it reads 0 both before and after a reparenting.
//!
//! The program's child execs with exactly the plan's environment, looking `argv[0]` up in the
//! plan's `PATH` (not the helper's, which is empty), as execvp(3) would: a name with a `/` is
//! run as it is; otherwise each directory is tried in order, and the first one whose file
//! exists decides. The exit code when nothing can run is 127 (not found) or 126 (found but not
//! executable), as in a shell.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, Signal};
use nix::unistd::Pid;

use super::error::{Result, SandboxError, EXIT_CANNOT_EXECUTE, EXIT_NOT_FOUND};
use super::fork::{fork, ForkError, Forked, ThreadCount};
use super::limits::{apply_rlimits, Rlimit};
use super::plan::{SandboxPlan, SetupStep};

/// What the program's process applies to itself just before exec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecAttrs {
    pub cwd: String,
    pub no_new_privs: bool,
    /// The plan's rlimits (none: no setrlimit call at all).
    pub rlimits: Vec<Rlimit>,
    /// The caller's terminal is the sandbox's console: the program takes it as the
    /// foreground process group of its own (see [`take_terminal`]).
    pub console: bool,
}

impl ExecAttrs {
    pub fn of(plan: &SandboxPlan) -> ExecAttrs {
        ExecAttrs {
            cwd: plan.cwd.clone(),
            no_new_privs: plan.steps.contains(&SetupStep::NoNewPrivs),
            rlimits: plan.limits.rlimits.clone(),
            console: plan.steps.iter().any(|s| {
                matches!(
                    s,
                    SetupStep::MinimalDev {
                        console: Some(_),
                        ..
                    }
                )
            }),
        }
    }
}

/// The parent's end of a [`fork_tied`] child's liveness pipe: keep it as long as the child may
/// still be checking (in practice, as long as the child lives).
pub struct Tie(#[allow(dead_code)] OwnedFd);

/// Which side of [`fork_tied`] this is.
pub enum Started {
    Parent(Pid, Tie),
    /// The child, tied to its parent.
    Child,
}

/// Forks a child that dies with this process (see the module documentation). `what` names the
/// child in errors. An ENOMEM from fork(2) comes back as `SandboxError::Helper` with that
/// errno (a PID namespace whose init has exited refuses new processes, pid_namespaces(7)).
pub fn fork_tied(threads: &ThreadCount, what: &'static str) -> Result<Started> {
    let (read, write) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(SandboxError::helper("pipe2"))?;
    match fork(threads) {
        Ok(Forked::Parent(pid)) => Ok(Started::Parent(pid, Tie(write))),
        Ok(Forked::Child) => {
            drop(write);
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)
                .map_err(SandboxError::helper("prctl(PR_SET_PDEATHSIG)"))?;
            fcntl(read.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK))
                .map_err(SandboxError::helper("fcntl(O_NONBLOCK)"))?;
            let alive = SandboxError::helper("check that the parent is alive");
            match nix::unistd::read(read.as_raw_fd(), &mut [0u8; 1]) {
                Err(Errno::EAGAIN) => Ok(Started::Child),
                Ok(_) => Err(alive(Errno::ESRCH)),
                Err(errno) => Err(alive(errno)),
            }
        }
        Err(ForkError::Fork(errno)) => Err(SandboxError::helper(what)(errno)),
        Err(ForkError::Threaded(n)) => Err(SandboxError::InvalidPlan(format!(
            "{what}: the helper runs {n} threads and must not fork; it must be started \
             before anything starts a thread (a bug in karapace-tui)"
        ))),
        Err(ForkError::Count(e)) => Err(SandboxError::io(
            "count the helper's threads (before fork) in",
            "/proc/self/status",
        )(e)),
    }
}

/// In the program's forked child: enters `mount_ns` if given (a joining session; setns(2)
/// also moves the root and working directory to the namespace's root), changes directory,
/// sets `PR_SET_NO_NEW_PRIVS` and the plan's rlimits, clears the signal mask and execs `plan.argv` with exactly
/// `plan.env`. Returns only on failure, with the exit code, after saying why on stderr.
pub fn exec_program(plan: &SandboxPlan, attrs: &ExecAttrs, mount_ns: Option<&File>) -> u8 {
    if let Err(e) = prepare_exec(attrs, mount_ns) {
        eprintln!("karapace-tui: {e}");
        return EXIT_CANNOT_EXECUTE;
    }
    let program = plan.argv.first().map(String::as_str).unwrap_or_default();
    let errno = match exec_in_path(plan) {
        Ok(errno) => errno,
        Err(why) => {
            eprintln!("karapace-tui: cannot run `{program}` in the sandbox: {why}");
            return EXIT_CANNOT_EXECUTE;
        }
    };
    eprintln!(
        "karapace-tui: cannot run `{program}` in the sandbox: {}",
        std::io::Error::from(errno)
    );
    if errno == Errno::ENOENT {
        EXIT_NOT_FOUND
    } else {
        EXIT_CANNOT_EXECUTE
    }
}

/// Makes the program the leader of a new process group and that group the terminal's
/// foreground one. The group it would otherwise have is the caller's, outside the sandbox's PID
/// namespace, where it reads as 0: a job-control shell that saves the foreground group at start
/// and gives the terminal back to it at exit could not (dash then exits 2, "Cannot set tty
/// process group"). SIGTTOU is blocked meanwhile: a background group may change the foreground
/// group only then, instead of being stopped (tcsetpgrp(3)). The caller takes the terminal
/// back when the session ends (`reclaim_terminal`).
fn take_terminal() -> Result<()> {
    let failed = |op: &'static str| {
        move |errno: Errno| SandboxError::Step {
            step: "take_terminal",
            op: op.into(),
            path: "stdin".into(),
            errno,
            hint: "The console must be the caller's controlling terminal".into(),
        }
    };
    nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0)).map_err(failed("setpgid(0, 0)"))?;
    let mut ttou = SigSet::empty();
    ttou.add(Signal::SIGTTOU);
    ttou.thread_block()
        .map_err(SandboxError::helper("block SIGTTOU"))?;
    nix::unistd::tcsetpgrp(std::io::stdin(), nix::unistd::getpgrp())
        .map_err(failed("tcsetpgrp(stdin, own group)"))
}

/// After a session on the caller's terminal: make the caller's process group the terminal's
/// foreground group again (the program took it, see `take_terminal`). Not a terminal, or ours
/// already: nothing to do.
pub fn reclaim_terminal() -> std::io::Result<()> {
    use std::io::IsTerminal;
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Ok(());
    }
    let ours = nix::unistd::getpgrp();
    if nix::unistd::tcgetpgrp(&stdin).is_ok_and(|pgrp| pgrp == ours) {
        return Ok(());
    }
    let mut ttou = SigSet::empty();
    ttou.add(Signal::SIGTTOU);
    let mut old = SigSet::empty();
    nix::sys::signal::pthread_sigmask(
        nix::sys::signal::SigmaskHow::SIG_BLOCK,
        Some(&ttou),
        Some(&mut old),
    )?;
    let result = nix::unistd::tcsetpgrp(&stdin, ours);
    nix::sys::signal::pthread_sigmask(nix::sys::signal::SigmaskHow::SIG_SETMASK, Some(&old), None)?;
    result.map_err(std::io::Error::from)
}

fn prepare_exec(attrs: &ExecAttrs, mount_ns: Option<&File>) -> Result<()> {
    if let Some(ns) = mount_ns {
        nix::sched::setns(ns, CloneFlags::CLONE_NEWNS).map_err(|errno| SandboxError::Step {
            step: "join_namespaces",
            op: "setns(CLONE_NEWNS)".into(),
            path: "the environment's mount namespace".into(),
            errno,
            hint: "Entering a mount namespace needs CAP_SYS_ADMIN and CAP_SYS_CHROOT in the \
                   environment's user namespace, which the joining helper entered first"
                .into(),
        })?;
    }
    nix::unistd::chdir(attrs.cwd.as_str()).map_err(|errno| SandboxError::Step {
        step: "chdir",
        op: "chdir".into(),
        path: attrs.cwd.clone(),
        errno,
        hint: "The working directory must exist inside the sandbox".into(),
    })?;
    if attrs.no_new_privs {
        nix::sys::prctl::set_no_new_privs()
            .map_err(SandboxError::helper("prctl(PR_SET_NO_NEW_PRIVS)"))?;
    }
    if attrs.console {
        take_terminal()?;
    }
    super::fork::default_sigpipe()
        .map_err(SandboxError::helper("reset SIGPIPE to its default action"))?;
    // Last before exec: the limits bind the program, not the setup above.
    apply_rlimits(&attrs.rlimits)?;
    SigSet::empty()
        .thread_set_mask()
        .map_err(SandboxError::helper("clear the signal mask"))
}

/// Tries execve(2) along the plan's `PATH` (see the module documentation); returns the errno
/// that decides the failure, or why the arguments cannot be passed at all.
fn exec_in_path(plan: &SandboxPlan) -> std::result::Result<Errno, String> {
    let cstr = |s: &str| CString::new(s).map_err(|_| format!("{s:?} contains a NUL byte"));
    let argv = plan
        .argv
        .iter()
        .map(|a| cstr(a))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let env = plan
        .env
        .iter()
        .map(|(k, v)| cstr(&format!("{k}={v}")))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let Some(program) = plan.argv.first().filter(|p| !p.is_empty()) else {
        return Err("the plan has no program".into());
    };
    if program.contains('/') {
        return Ok(execve_errno(&cstr(program)?, &argv, &env));
    }
    let path = plan
        .env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map_or("/bin:/usr/bin", |(_, v)| v.as_str());
    // execvp(3): EACCES from one directory does not stop the search, but is reported if
    // nothing else is found; any other error but "not there" ends it.
    let mut decided = Errno::ENOENT;
    for dir in path.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let errno = execve_errno(&cstr(&format!("{dir}/{program}"))?, &argv, &env);
        match errno {
            Errno::ENOENT | Errno::ENOTDIR | Errno::ESTALE | Errno::ENODEV | Errno::ETIMEDOUT => {}
            Errno::EACCES => decided = Errno::EACCES,
            other => return Ok(other),
        }
    }
    Ok(decided)
}

fn execve_errno(path: &CString, argv: &[CString], env: &[CString]) -> Errno {
    match nix::unistd::execve(path, argv, env) {
        Err(errno) => errno,
        Ok(never) => match never {},
    }
}

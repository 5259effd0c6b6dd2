//! Starting the program: the exec shim.
//!
//! The helper keeps its forwarded signals blocked (see `supervise.rs`), and a child inherits
//! the mask across fork and exec; std's `Command` does not reset it, and doing so in the child
//! would need `pre_exec` (unsafe). So stage 2 starts `/proc/self/exe __sandbox-init --exec GO
//! READY -- ARGV` — the shim — *before* it builds the root, while our binary and its libraries
//! are still reachable, with the program's exact environment, and waits until the shim closes
//! READY (its loader is done). The shim then waits on the pipe GO. `pivot_root`
//! moves every process of the mount namespace whose root is the old root (pivot_root(2)), the
//! shim included. When the root is ready, stage 2 sends one JSON line ([`ExecAttrs`]); the shim
//! takes on the per-process attributes it could not inherit (cwd, `PR_SET_NO_NEW_PRIVS`),
//! clears its signal mask and execs ARGV in place, so the program keeps the shim's pid. If
//! setup fails, stage 2 exits: the pipe reaches EOF and the shim exits without running anything
//! (and, as PID 1 of the namespace, stage 2 takes it down anyway).
//!
//! A session that joins a running environment (`join.rs`) starts the same shim from outside
//! the environment's mount namespace and passes that namespace's descriptor in the go line: the
//! shim enters it (setns(2) also moves its root and working directory to the namespace's root)
//! before it changes directory. The shim sets `PR_SET_PDEATHSIG` before it reports ready, so
//! once its starter has seen "ready" the shim cannot outlive it: a joined program's starter is
//! not the PID namespace's init, whose death would take it down anyway.

use std::ffi::OsString;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, Signal};
use serde::{Deserialize, Serialize};

use super::error::{Result, SandboxError, EXIT_CANNOT_EXECUTE, EXIT_NOT_FOUND};
use super::plan::{SandboxPlan, SetupStep};
use super::HELPER_VERB;

/// What the shim applies to itself just before exec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecAttrs {
    pub cwd: String,
    pub no_new_privs: bool,
    /// An inherited descriptor of the mount namespace to enter first (a joining session).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount_ns_fd: Option<RawFd>,
}

impl ExecAttrs {
    pub fn of(plan: &SandboxPlan) -> ExecAttrs {
        ExecAttrs {
            cwd: plan.cwd.clone(),
            no_new_privs: plan.steps.contains(&SetupStep::NoNewPrivs),
            mount_ns_fd: None,
        }
    }
}

/// Which end of a pipe the child inherits; the other end is close-on-exec.
pub(crate) enum ChildEnd {
    Read,
    Write,
}

/// A pipe whose child end survives exec (same fd number in the child); returns (read, write).
pub(crate) fn pipe_to_child(child_end: ChildEnd) -> Result<(OwnedFd, OwnedFd)> {
    let (read, write) = nix::unistd::pipe().map_err(SandboxError::helper("pipe"))?;
    let ours = match child_end {
        ChildEnd::Read => &write,
        ChildEnd::Write => &read,
    };
    fcntl(ours.as_raw_fd(), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))
        .map_err(SandboxError::helper("fcntl(FD_CLOEXEC)"))?;
    Ok((read, write))
}

/// A started shim, waiting for [`PendingProgram::release`].
pub struct PendingProgram {
    pub child: Child,
    go: File,
}

impl PendingProgram {
    /// Starts the shim for `plan.argv` with exactly `plan.env`, and waits until it runs our
    /// code: `spawn` returns once execve has succeeded, but the dynamic loader of the shim
    /// still has to open our libraries from the host's root, before `pivot_root` hides them.
    pub fn start(plan: &SandboxPlan) -> Result<PendingProgram> {
        let (go_read, go_write) = pipe_to_child(ChildEnd::Read)?;
        let (ready_read, ready_write) = pipe_to_child(ChildEnd::Write)?;
        let child = Command::new("/proc/self/exe")
            .arg(HELPER_VERB)
            .arg("--exec")
            .arg(go_read.as_raw_fd().to_string())
            .arg(ready_write.as_raw_fd().to_string())
            .arg("--")
            .args(&plan.argv)
            .env_clear()
            .envs(plan.env.iter().map(|(k, v)| (k, v)))
            .spawn()
            .map_err(SandboxError::io("start the exec shim", "/proc/self/exe"))?;
        drop(go_read);
        drop(ready_write);
        // EOF once the shim has closed its end: it is running `main`.
        read_line(ready_read.as_raw_fd())?;
        Ok(PendingProgram {
            child,
            go: File::from(go_write),
        })
    }

    /// Lets the shim exec the program; returns the program's process.
    pub fn release(mut self, attrs: &ExecAttrs) -> Result<Child> {
        let mut line = serde_json::to_string(attrs).map_err(SandboxError::PlanJson)?;
        line.push('\n');
        match self.go.write_all(line.as_bytes()) {
            // The shim died already; its exit status says so.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            other => other.map_err(SandboxError::io("release the exec shim over", "a pipe"))?,
        }
        Ok(self.child)
    }
}

/// The shim (`__sandbox-init --exec GO_FD READY_FD -- ARGV`): dies with its parent from now on,
/// closes `ready` (we are running), waits for the go line on `go`, applies it, clears the
/// signal mask and execs. Returns only on failure, with the exit code.
pub fn exec_shim(go: RawFd, ready: RawFd, argv: &[OsString]) -> u8 {
    if let Err(errno) = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL) {
        eprintln!("karapace-tui: exec shim: prctl(PR_SET_PDEATHSIG) failed: {errno}");
        return EXIT_CANNOT_EXECUTE;
    }
    if let Err(errno) = nix::unistd::close(ready) {
        eprintln!("karapace-tui: exec shim: cannot close the ready pipe: {errno}");
        return EXIT_CANNOT_EXECUTE;
    }
    match prepare_exec(go) {
        Ok(true) => {}
        // Setup failed: stage 2 exited without releasing us.
        Ok(false) => return super::error::EXIT_SETUP_FAILED,
        Err(e) => {
            eprintln!("karapace-tui: {e}");
            return EXIT_CANNOT_EXECUTE;
        }
    }
    let Some((program, args)) = argv.split_first() else {
        eprintln!("karapace-tui: the exec shim got no program");
        return EXIT_CANNOT_EXECUTE;
    };
    let err = Command::new(program).args(args).exec();
    eprintln!(
        "karapace-tui: cannot run `{}` in the sandbox: {err}",
        program.to_string_lossy()
    );
    if err.kind() == std::io::ErrorKind::NotFound {
        EXIT_NOT_FOUND
    } else {
        EXIT_CANNOT_EXECUTE
    }
}

/// `Ok(false)` when stage 2 closed the pipe without a go line.
fn prepare_exec(fd: RawFd) -> Result<bool> {
    let line = read_line(fd)?;
    nix::unistd::close(fd).map_err(SandboxError::helper("close the go pipe"))?;
    let Some(line) = line else {
        return Ok(false);
    };
    let attrs: ExecAttrs = serde_json::from_str(line.trim_end()).map_err(SandboxError::PlanJson)?;
    if let Some(fd) = attrs.mount_ns_fd {
        enter_mount_ns(fd)?;
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
    SigSet::empty()
        .thread_set_mask()
        .map_err(SandboxError::helper("clear the signal mask"))?;
    Ok(true)
}

/// Enters the mount namespace open on the inherited `fd`, then closes it. The descriptor is
/// reopened through `/proc/self/fd` to get an owned file without unsafe code.
fn enter_mount_ns(fd: RawFd) -> Result<()> {
    let path = format!("/proc/self/fd/{fd}");
    let ns = File::open(&path).map_err(SandboxError::io("open the mount namespace", &path))?;
    nix::unistd::close(fd).map_err(SandboxError::helper("close the mount namespace"))?;
    nix::sched::setns(&ns, CloneFlags::CLONE_NEWNS).map_err(|errno| SandboxError::Step {
        step: "join_namespaces",
        op: "setns(CLONE_NEWNS)".into(),
        path,
        errno,
        hint: "Entering a mount namespace needs CAP_SYS_ADMIN and CAP_SYS_CHROOT in the \
               environment's user namespace, which the joining helper entered first"
            .into(),
    })
}

/// One `\n`-terminated line from `fd` (left open); `None` at EOF before a whole line.
pub(crate) fn read_line(fd: RawFd) -> Result<Option<String>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    while !buf.ends_with(b"\n") {
        match nix::unistd::read(fd, &mut chunk) {
            Ok(0) => return Ok(None),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(Errno::EINTR) => {}
            Err(errno) => return Err(SandboxError::helper("read a pipe")(errno)),
        }
    }
    String::from_utf8(buf)
        .map(Some)
        .map_err(|_| SandboxError::InvalidPlan("a line on the helper pipe is not UTF-8".into()))
}

//! The waiting half of the helper: spawn the program, forward signals, reap, report the code.
//!
//! No signal handlers (and so no unsafe): the forwarded signals and SIGCHLD are blocked before
//! any child is spawned and taken synchronously with `sigwait` ([`SigSet::wait`]). Blocked
//! signals stay pending, so none is lost between spawn and wait; and blocked signals are never
//! discarded as "ignored" — which matters for PID 1 of a PID namespace, to which the kernel
//! otherwise delivers only signals it has a handler for (pid_namespaces(7)). The mask is
//! inherited across fork and exec, so the program is started through an exec shim that clears
//! it first (`program.rs`).

use std::process::Child;

use nix::errno::Errno;
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::error::{Result, SandboxError};

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

/// Waits for `child`, forwarding `signals` (minus SIGCHLD) to it. With `reap_all` (PID 1) every
/// exited descendant is reaped, not only `child`. Returns the child's exit code, 128+N for a
/// death by signal N.
pub fn supervise(child: Child, signals: &SigSet, reap_all: bool) -> Result<u8> {
    let raw = i32::try_from(child.id()).map_err(|_| SandboxError::helper("pid")(Errno::ERANGE))?;
    let pid = Pid::from_raw(raw);
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

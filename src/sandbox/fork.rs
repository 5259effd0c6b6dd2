//! fork(2) for the single-threaded helper, the reset of SIGPIPE before a program's exec, and
//! mount_setattr(2), which nix does not wrap: the crate's one module with unsafe code.
//!
//! The helper used to start each new process of a sandbox (PID 1, the program) by executing
//! its own 8 MB binary again, because std's `Command` cannot clear the blocked signal mask in
//! the child without `pre_exec`, and forking is unsafe in Rust. Every such exec cost about a
//! millisecond. A plain fork costs a few dozen microseconds, and the child keeps the plan in
//! memory. [`fork`] is the safe wrapper: it forks only after it has verified, from the
//! kernel's own count, that the calling process has exactly one thread.

#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use nix::errno::Errno;
use nix::unistd::{ForkResult, Pid};

/// `/proc/self/status` of the process that opened it, kept open so that the count can be
/// read again after `pivot_root` has replaced `/proc` (or when the plan mounts none).
pub struct ThreadCount {
    status: File,
    /// The process that opened it (a forked child must open its own).
    owner: Pid,
}

impl ThreadCount {
    pub fn open() -> io::Result<ThreadCount> {
        Ok(ThreadCount {
            status: File::open("/proc/self/status")?,
            owner: nix::unistd::getpid(),
        })
    }

    /// In a child forked from the process that opened it: closes the child's copy of the
    /// status file, which would otherwise stay open in a long-lived child (PID 1 of a sandbox,
    /// where a program could reopen the host's `/proc/<stage 1>/status` through
    /// `/proc/1/fd`). The child opens its own, and never drops this one: it ends with `exit`.
    pub fn close_in_child(&self) -> Result<(), Errno> {
        use std::os::fd::AsRawFd;
        nix::unistd::close(self.status.as_raw_fd())
    }

    /// Whether the process that opened it runs exactly one thread now.
    pub fn single(&self) -> io::Result<bool> {
        Ok(self.owner == nix::unistd::getpid() && self.threads()? == 1)
    }

    /// The `Threads:` line of proc(5)'s status file, read afresh (a read at offset 0
    /// regenerates a proc file's text).
    fn threads(&self) -> io::Result<u64> {
        let mut buf = vec![0u8; 4096];
        let mut len = 0;
        loop {
            if len == buf.len() {
                buf.resize(len * 2, 0);
            }
            let n = self.status.read_at(&mut buf[len..], len as u64)?;
            if n == 0 {
                break;
            }
            len += n;
        }
        String::from_utf8_lossy(&buf[..len])
            .lines()
            .find_map(|l| l.strip_prefix("Threads:"))
            .and_then(|n| n.trim().parse().ok())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no Threads: line"))
    }
}

/// Which side of the fork this is.
pub enum Forked {
    /// The new process's pid, as this process sees it.
    Parent(Pid),
    Child,
}

/// Why [`fork`] did not fork.
#[derive(Debug)]
pub enum ForkError {
    /// The status file could not be read, or belongs to another process.
    Count(io::Error),
    /// More than one thread: forking could leave the child with a lock held forever.
    Threaded(u64),
    /// fork(2) itself failed (ENOMEM: the PID namespace's init has exited).
    Fork(Errno),
}

/// fork(2), refused unless `threads` says this process runs exactly one thread.
///
/// The child returns from this call like the parent and may do anything a process may do; it
/// must end with `exec` or [`exit_now`], never by returning into code that assumes
/// it is the parent.
pub fn fork(threads: &ThreadCount) -> Result<Forked, ForkError> {
    if threads.owner != nix::unistd::getpid() {
        return Err(ForkError::Count(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the thread count was opened by another process",
        )));
    }
    match threads.threads().map_err(ForkError::Count)? {
        1 => {}
        n => return Err(ForkError::Threaded(n)),
    }
    // SAFETY: fork(2) in a multi-threaded process copies only the calling thread, so the
    // child could find a lock (malloc's, stdio's, std's environment lock) held forever by a
    // thread that does not exist in it; that is why nix marks fork unsafe and POSIX allows
    // only async-signal-safe calls in such a child. The kernel has just counted exactly one
    // thread in this process, and nothing here starts one between that count and the fork
    // (this is straight-line code; a thread can only be created by this very thread). With a
    // single thread, every lock is either free or held by the forking thread itself, which is
    // inside this function and holds none, so the child is an ordinary copy of the process
    // and may call any function, as after fork in a single-threaded C program.
    match unsafe { nix::unistd::fork() } {
        Ok(ForkResult::Parent { child }) => Ok(Forked::Parent(child)),
        Ok(ForkResult::Child) => Ok(Forked::Child),
        Err(errno) => Err(ForkError::Fork(errno)),
    }
}

/// Ends a process made by [`fork`] (stage 1, PID 1, a program that could not be executed)
/// with `_exit(2)`, skipping what `exit(3)` runs: the exit handlers and library destructors
/// belong to the process that was copied, and running them again in each copy cost tens of
/// microseconds per process on every sandbox start. Nothing is lost: diagnostics go to
/// stderr, which is unbuffered, and stdout is flushed before every fork.
pub fn exit_now(code: u8) -> ! {
    // SAFETY: _exit(2) ends the process at once and never returns; it touches no memory of
    // ours, so no Rust invariant can be observed broken afterwards (nix does not wrap it).
    unsafe { libc::_exit(i32::from(code)) }
}

/// Runs `child` in a process made by [`fork`], then ends that process ([`exit_now`]) with the
/// code `child` returns, or with `on_panic` if it panicked. A panic must not unwind out of the
/// child into the frames it shares with its parent: the copy would go on running the parent's
/// code after the fork, and run the parent's destructors (releasing its locks, deleting its
/// temporary files). The panic's message has been printed by then.
pub fn finish_child(on_panic: u8, child: impl FnOnce() -> u8) -> ! {
    let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(child)).unwrap_or(on_panic);
    exit_now(code)
}

/// Puts SIGPIPE back to its default action (terminate) in a process about to exec a program.
///
/// The Rust runtime ignores SIGPIPE at start-up, and an ignored signal stays ignored across
/// execve(2) (signal(7): "a child created via fork(2) inherits a copy of its parent's signal
/// dispositions. During an execve(2), the dispositions of handled signals are reset to the
/// default; the dispositions of ignored signals are left unchanged"). Without this, a program
/// in the sandbox would see EPIPE instead of dying quietly: `yes | head -1` printed "yes:
/// standard output: Broken pipe".
pub fn default_sigpipe() -> Result<(), Errno> {
    use nix::sys::signal::{signal, SigHandler, Signal};
    // SAFETY: nix marks signal(2) unsafe because a handler function runs asynchronously and
    // must be async-signal-safe. SIG_DFL installs no function, so nothing of ours can run in
    // signal context; the previous disposition (SIG_IGN, also no function) is dropped.
    unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) }.map(drop)
}

/// mount_setattr(2) on `path` (not following a final symlink, not triggering an automount):
/// adds the `MOUNT_ATTR_*` bits of `attr_set` and clears none; with `recursive`
/// (`AT_RECURSIVE`) every mount below `path` too, in one call that changes all of them or
/// none. `ENOSYS` before Linux 5.12.
///
/// It replaces bubblewrap's way of restricting a bind (read the flags with statvfs, remount
/// with them plus the new ones, once per submount found in mountinfo): attributes are added
/// rather than restated, so the flags the host locked need not be read first.
pub fn mount_setattr(path: &str, attr_set: u64, recursive: bool) -> Result<(), Errno> {
    let path = std::ffi::CString::new(path).map_err(|_| Errno::EINVAL)?;
    let mut attr = libc::mount_attr {
        attr_set,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let mut flags = libc::AT_SYMLINK_NOFOLLOW | libc::AT_NO_AUTOMOUNT;
    if recursive {
        flags |= libc::AT_RECURSIVE;
    }
    // SAFETY: a plain system call with no Rust-visible side effects: the kernel reads a
    // NUL-terminated path (`path` lives until the call returns) and `size` bytes of `attr`,
    // a `repr(C)` struct of the kernel's layout (`struct mount_attr`, MOUNT_ATTR_SIZE_VER0 =
    // 32 bytes) that outlives the call; it writes to neither, and returns 0 or -1 with errno.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path.as_ptr(),
            flags as libc::c_uint,
            &mut attr as *mut libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    Errno::result(rc).map(drop)
}

#[cfg(test)]
mod tests {
    use super::ThreadCount;

    #[test]
    fn the_thread_count_is_read_again_on_every_call() {
        // Other tests start and end threads meanwhile: only lower bounds are certain.
        let count = ThreadCount::open().expect("open /proc/self/status");
        assert!(count.threads().expect("count") >= 1);
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let extra = std::thread::spawn(move || rx.recv());
        assert!(
            count.threads().expect("count") >= 2,
            "the new thread is counted"
        );
        drop(tx);
        extra.join().expect("join").ok();
    }

    #[test]
    fn a_threaded_process_is_refused() {
        // The test harness runs tests on threads: there is more than one here.
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let extra = std::thread::spawn(move || rx.recv());
        let count = ThreadCount::open().expect("open");
        assert!(matches!(
            super::fork(&count),
            Err(super::ForkError::Threaded(n)) if n >= 2
        ));
        drop(tx);
        extra.join().expect("join").ok();
    }
}

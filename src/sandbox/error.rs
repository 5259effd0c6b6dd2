//! Errors of the sandbox: each names the step, the operation, the path and the errno, and says
//! how to fix it.

use std::io;

use nix::errno::Errno;

/// The helper's exit code when the sandbox could not be set up (as `docker run` and `podman run`
/// use 125 for their own failures).
pub const EXIT_SETUP_FAILED: u8 = 125;
/// The program exists but could not be executed.
pub const EXIT_CANNOT_EXECUTE: u8 = 126;
/// The program was not found.
pub const EXIT_NOT_FOUND: u8 = 127;

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// A syscall of a setup step failed.
    #[error("sandbox step `{step}` failed: {op} {path}: {errno}. {hint}")]
    Step {
        step: &'static str,
        op: String,
        path: String,
        errno: Errno,
        hint: String,
    },
    /// A program run by a setup step (fuse-overlayfs) failed.
    #[error("sandbox step `{step}` failed: {program} {status}: {stderr}. {hint}")]
    Program {
        step: &'static str,
        program: String,
        /// "exited with code N" or "was killed by a signal".
        status: String,
        stderr: String,
        hint: String,
    },
    /// A read-only mount that the kernel still reports writable after the remount.
    #[error(
        "sandbox step `{step}` failed: {path} is still writable after the read-only remount; \
         refusing to run with a writable mount that was meant to be read-only"
    )]
    NotReadOnly { step: &'static str, path: String },
    /// A mount point under the new root that is a symlink (it would be followed on the host).
    #[error(
        "sandbox step `{step}` failed: mount point component {path} is a symlink; mounting \
         there would follow it outside the new root. Remove the symlink from the image or \
         choose another target"
    )]
    SymlinkMountPoint { step: &'static str, path: String },
    /// Modelled but not implemented yet.
    #[error("sandbox step `{step}`: {what}")]
    Unsupported { step: &'static str, what: String },
    /// newuidmap or newgidmap, run by the spawner for a subordinate range, failed.
    #[error("cannot write the sandbox's id maps: `{command}` failed ({status}): {stderr}. {fix}")]
    IdMapTool {
        command: String,
        status: String,
        stderr: String,
        fix: String,
    },
    /// The spawner cannot write the maps a plan asks for (no usable newuidmap/newgidmap).
    #[error("cannot write the sandbox's id maps: {why}. {fix}")]
    IdMapUnavailable { why: String, fix: String },
    /// A helper run for a side task (deleting a tree) failed.
    #[error("the sandbox helper could not {what} ({status}): {stderr}")]
    HelperFailed {
        what: String,
        status: String,
        stderr: String,
    },
    /// The init record names a live process that is not PID 1 of a PID namespace below ours:
    /// the record was written by something else (a program inside the environment can reach
    /// it through its init's descriptors), and joining or signalling that process could run a
    /// program outside any sandbox, or stop a process of the host.
    #[error(
        "the init record {path} names process {pid}, which is not the init of a sandbox: \
         something other than karapace-tui wrote it (a program inside the environment can); \
         that process was neither joined nor signalled. End the environment's sessions \
         (`karapace-tui stop`), then remove the file"
    )]
    ForeignInit { path: String, pid: i32 },
    #[error("invalid sandbox plan: {0}")]
    InvalidPlan(String),
    #[error("cannot encode or decode the sandbox plan: {0}")]
    PlanJson(#[source] serde_json::Error),
    #[error("sandbox helper: cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: String,
        #[source]
        source: io::Error,
    },
    /// The helper's own process management (signals, pipes, waiting) failed.
    #[error("sandbox helper: {op} failed: {errno}")]
    Helper { op: &'static str, errno: Errno },
}

impl SandboxError {
    /// The setup step that failed, if a step did.
    pub fn step(&self) -> Option<&'static str> {
        match self {
            SandboxError::Step { step, .. }
            | SandboxError::Program { step, .. }
            | SandboxError::NotReadOnly { step, .. }
            | SandboxError::SymlinkMountPoint { step, .. }
            | SandboxError::Unsupported { step, .. } => Some(step),
            _ => None,
        }
    }

    pub fn io(op: &'static str, path: impl Into<String>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| SandboxError::Io { op, path, source }
    }

    pub fn helper(op: &'static str) -> impl FnOnce(Errno) -> Self {
        move |errno| SandboxError::Helper { op, errno }
    }
}

pub type Result<T, E = SandboxError> = std::result::Result<T, E>;

/// How to fix a failed step, from the step and the errno.
pub(crate) fn hint(step: &str, errno: Errno) -> String {
    let userns = "Unprivileged user namespaces may be disabled: check `sysctl \
                  user.max_user_namespaces` (must be > 0), `kernel.unprivileged_userns_clone` \
                  (Debian, must be 1) and `kernel.apparmor_restrict_unprivileged_userns` (Ubuntu, \
                  must be 0), or run as root";
    match (step, errno) {
        ("unshare_user_ns", Errno::EINVAL) => {
            "The helper must be single-threaded (unshare(2)); run it through `__sandbox-init`"
                .into()
        }
        ("unshare_user_ns", _) | ("unshare_other", Errno::EPERM | Errno::ENOSPC) => userns.into(),
        ("await_id_maps", Errno::EPIPE) => "The process that started the sandbox closed the \
             channel without writing the id maps: running newuidmap/newgidmap failed (its error \
             says why) or it exited"
            .into(),
        ("await_id_maps", _) => "The channel to the process that writes the id maps failed; \
             start the sandbox with `sandbox::spawn`"
            .into(),
        ("write_id_maps", _) => "Each map may name only the caller's own id when written \
             without newuidmap/newgidmap; check /proc/sys/user/max_user_namespaces and that \
             the maps were not written already"
            .into(),
        ("mount_overlay", Errno::EINVAL) => "The kernel refused the overlay options: inside \
             a user namespace overlayfs needs Linux >= 5.11 and `userxattr`; upper and work \
             must be empty-or-ours directories on the same file system, and the work \
             directory must not be used by another mount"
            .into(),
        ("mount_overlay", Errno::EPERM) => format!(
            "Overlayfs is not mountable here (kernel too old or disabled in user namespaces); \
             fuse-overlayfs is the fallback. {userns}"
        ),
        ("loopback_up", _) => "Bringing `lo` up needs CAP_NET_ADMIN in the user namespace \
             that owns the new network namespace (the helper's stage 1 has it); a seccomp or LSM \
             policy may refuse netlink sockets"
            .into(),
        ("mount_proc", Errno::EPERM) => "A fresh /proc needs a PID namespace created inside \
             the user namespace, and a host /proc with no paths mounted over (as inside some \
             containers)"
            .into(),
        ("mount_sys_read_only", _) => "/sys could not be bound read-only; inside a container \
             the host's /sys may be locked. Drop /sys from the policy to run without it"
            .into(),
        ("pivot_root", Errno::EINVAL) => "The new root must be a mount point that is not on \
             the same mount as the current root, and / must not be shared (make_root_private)"
            .into(),
        (_, Errno::ENOENT) => "A path does not exist: check the store and the bind sources".into(),
        (_, Errno::EACCES) => "Permission denied: the sandbox user cannot reach this path; \
             check the modes of its parent directories"
            .into(),
        (_, Errno::EPERM) => format!("Not permitted in this namespace. {userns}"),
        _ => "See the step's man page for this errno".into(),
    }
}

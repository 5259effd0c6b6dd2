//! The sandbox plan: plain data, built by the runtime and executed by the helper.
//!
//! A [`SandboxPlan`] is an ordered list of [`SetupStep`]s plus the program to run. The order is
//! bubblewrap's (`bubblewrap.c`, `main` and `setup_newroot`): namespaces first, then the file
//! system of the new root, then `pivot_root`, then the process attributes. [`SandboxPlan::validate`]
//! enforces the invariants the executor relies on, before any syscall:
//! - every namespace step comes before every file-system step, so the helper can run the first
//!   group in stage 1 and the rest in PID 1 of the new PID namespace (forked by stage 1);
//! - nothing is mounted unless a mount namespace was created first, and the hostname is only
//!   set inside a new UTS namespace (as real root either would change the host);
//! - all paths are absolute and free of NUL; overlay paths have no `,` `:` or `\` (the kernel
//!   and fuse-overlayfs parse them out of one option string);
//! - `lo` is only brought up in a new network namespace (never the host's), and a
//!   fuse-overlayfs root needs a new PID namespace: its daemon runs inside the sandbox and only
//!   the end of that namespace is sure to kill it (pid_namespaces(7));
//! - after `pivot_root` only process attributes follow (hostname, no_new_privs, chdir).

use serde::{Deserialize, Serialize};

use super::error::SandboxError;
use super::limits::Limits;

/// One line of `/proc/<pid>/uid_map` or `gid_map`: `inside outside count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdRange {
    pub inside: u32,
    pub outside: u32,
    pub count: u32,
}

impl IdRange {
    /// One id: `inside` in the namespace is `outside` on the host.
    pub fn single(inside: u32, outside: u32) -> IdRange {
        IdRange {
            inside,
            outside,
            count: 1,
        }
    }
}

/// How the root overlay is mounted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverlayDriver {
    /// Kernel overlayfs.
    Kernel,
    /// fuse-overlayfs (`program`, an absolute path), for kernels that refuse overlayfs in a
    /// user namespace (before Linux 5.11). Needs `/dev/fuse`.
    Fuse { program: String },
    /// Kernel overlayfs, and fuse-overlayfs if the kernel refuses the mount as unsupported
    /// (`EPERM`, `EINVAL` or `ENODEV`).
    KernelOrFuse { program: String },
}

impl OverlayDriver {
    /// The fuse-overlayfs program this driver may run.
    pub fn fuse_program(&self) -> Option<&str> {
        match self {
            OverlayDriver::Kernel => None,
            OverlayDriver::Fuse { program } | OverlayDriver::KernelOrFuse { program } => {
                Some(program)
            }
        }
    }
}

/// One setup step. Paths are host paths as seen by the helper before `pivot_root`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SetupStep {
    /// `unshare(CLONE_NEWUSER)`.
    UnshareUserNs,
    /// `uid_map`, `setgroups` = `deny`, `gid_map` (user_namespaces(7)), written by the helper
    /// itself: each map is one line naming only the caller's own id.
    WriteIdMaps {
        uid_map: Vec<IdRange>,
        gid_map: Vec<IdRange>,
    },
    /// Maps with subordinate ranges, which only newuidmap(1)/newgidmap(1) may write, from
    /// outside the namespace: the helper tells its spawner that the namespace exists and waits
    /// until the spawner has run them for its pid (`spawn.rs`). `setgroups` is left to
    /// newgidmap, which keeps it `allow` for such maps, so programs may drop groups.
    AwaitIdMaps {
        uid_map: Vec<IdRange>,
        gid_map: Vec<IdRange>,
    },
    /// `unshare(CLONE_NEWNS)`.
    UnshareMountNs,
    /// `/` becomes `MS_SLAVE|MS_REC`: host mounts still propagate in, nothing propagates out.
    MakeRootPrivate,
    /// The remaining namespaces, in one `unshare`. `net` isolates: only `lo` exists.
    UnshareOther {
        pid: bool,
        uts: bool,
        ipc: bool,
        net: bool,
    },
    /// Sets `lo` of the new network namespace up (it starts down, so 127.0.0.1 would not
    /// answer), with an rtnetlink request (`netlink.rs`). Runs in stage 1, which holds
    /// `CAP_NET_ADMIN` in the user namespace that owns the network namespace.
    LoopbackUp,
    /// The root overlay. `lower` is ordered top first. `userxattr` (kernel overlayfs only) is
    /// required inside a user namespace (see docs/architecture.md).
    MountOverlay {
        lower: Vec<String>,
        upper: String,
        work: String,
        target: String,
        userxattr: bool,
        driver: OverlayDriver,
    },
    /// A bind mount, always `nosuid,nodev`; read-only ones are verified with statvfs.
    BindMount {
        source: String,
        target: String,
        read_only: bool,
        recursive: bool,
    },
    /// One host device node bound onto a file in the new /dev (no `nodev`).
    BindDevice {
        source: String,
        target: String,
    },
    /// A fresh procfs (needs the PID namespace: runs in PID 1).
    MountProc {
        target: String,
    },
    /// A tmpfs with the given mode (e.g. `0o1777` for /tmp).
    MountTmpfs {
        target: String,
        mode: u32,
    },
    /// bubblewrap's `--dev`: tmpfs, host null/zero/full/random/urandom/tty bound as files, the
    /// stdio and fd symlinks, a private devpts instance with /dev/ptmx, and a tmpfs /dev/shm.
    /// `console` is the caller's terminal (a host path such as `/dev/pts/3`), bound onto
    /// `/dev/console`: the private devpts does not hold it, and glibc's ttyname(3) finds the
    /// terminal by scanning /dev for the same file, so `tty`, `ssh` and `sudo` work inside.
    MinimalDev {
        target: String,
        console: Option<String>,
    },
    /// A recursive bind of the host's /sys, made read-only (every submount too).
    MountSysReadOnly {
        target: String,
    },
    SetHostname(String),
    /// `pivot_root(new_root, new_root)` from inside `new_root`, then the old root (now stacked
    /// on top) is detached: the `pivot_root(".", ".")` idiom of pivot_root(2).
    PivotRoot {
        new_root: String,
    },
    /// `PR_SET_NO_NEW_PRIVS`, inherited by the program.
    NoNewPrivs,
    Chdir(String),
}

/// Which helper stage runs a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The user namespace and its maps, and the namespaces PID 1 is born into (PID, UTS, IPC,
    /// network), in the process that forks PID 1.
    Namespaces,
    /// Everything else, in PID 1 of the new PID namespace, from its own mount namespace on:
    /// PID 1 and its descendants are the only processes in it, so the mounts go when the last
    /// of them exits, and pivot_root(2), which moves the root of every process of the mount
    /// namespace, moves only theirs.
    Root,
}

impl SetupStep {
    /// The step's name in errors and traces.
    pub fn name(&self) -> &'static str {
        match self {
            SetupStep::UnshareUserNs => "unshare_user_ns",
            SetupStep::WriteIdMaps { .. } => "write_id_maps",
            SetupStep::AwaitIdMaps { .. } => "await_id_maps",
            SetupStep::UnshareMountNs => "unshare_mount_ns",
            SetupStep::MakeRootPrivate => "make_root_private",
            SetupStep::UnshareOther { .. } => "unshare_other",
            SetupStep::LoopbackUp => "loopback_up",
            SetupStep::MountOverlay { .. } => "mount_overlay",
            SetupStep::BindMount { .. } => "bind_mount",
            SetupStep::BindDevice { .. } => "bind_device",
            SetupStep::MountProc { .. } => "mount_proc",
            SetupStep::MountTmpfs { .. } => "mount_tmpfs",
            SetupStep::MinimalDev { .. } => "minimal_dev",
            SetupStep::MountSysReadOnly { .. } => "mount_sys_read_only",
            SetupStep::SetHostname(_) => "set_hostname",
            SetupStep::PivotRoot { .. } => "pivot_root",
            SetupStep::NoNewPrivs => "no_new_privs",
            SetupStep::Chdir(_) => "chdir",
        }
    }

    pub fn stage(&self) -> Stage {
        match self {
            SetupStep::UnshareUserNs
            | SetupStep::WriteIdMaps { .. }
            | SetupStep::AwaitIdMaps { .. }
            | SetupStep::UnshareOther { .. }
            | SetupStep::LoopbackUp => Stage::Namespaces,
            _ => Stage::Root,
        }
    }

    fn is_mount(&self) -> bool {
        matches!(
            self,
            SetupStep::MakeRootPrivate
                | SetupStep::MountOverlay { .. }
                | SetupStep::BindMount { .. }
                | SetupStep::BindDevice { .. }
                | SetupStep::MountProc { .. }
                | SetupStep::MountTmpfs { .. }
                | SetupStep::MinimalDev { .. }
                | SetupStep::MountSysReadOnly { .. }
                | SetupStep::PivotRoot { .. }
        )
    }

    /// Every path the step names, for validation.
    fn paths(&self) -> Vec<&str> {
        match self {
            SetupStep::MountOverlay {
                lower,
                upper,
                work,
                target,
                driver,
                ..
            } => {
                let mut v: Vec<&str> = lower.iter().map(String::as_str).collect();
                v.extend([upper.as_str(), work.as_str(), target.as_str()]);
                v.extend(driver.fuse_program());
                v
            }
            SetupStep::MinimalDev { target, console } => {
                let mut v = vec![target.as_str()];
                v.extend(console.as_deref());
                v
            }
            SetupStep::BindMount { source, target, .. }
            | SetupStep::BindDevice { source, target } => vec![source, target],
            SetupStep::MountProc { target }
            | SetupStep::MountTmpfs { target, .. }
            | SetupStep::MountSysReadOnly { target }
            | SetupStep::PivotRoot { new_root: target }
            | SetupStep::Chdir(target) => vec![target],
            _ => Vec::new(),
        }
    }
}

/// What the helper runs: the setup steps, then `argv` with exactly `env`, in `cwd`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxPlan {
    pub steps: Vec<SetupStep>,
    /// Executed directly (no shell); `argv[0]` is looked up in the plan's own `PATH`.
    pub argv: Vec<String>,
    /// The program's whole environment: nothing is inherited.
    pub env: Vec<(String, String)>,
    /// The program's working directory inside the sandbox.
    pub cwd: String,
    /// Resource limits (`limits.rs`); left out of the plan file when there are none.
    #[serde(default, skip_serializing_if = "Limits::is_empty")]
    pub limits: Limits,
}

impl SandboxPlan {
    pub fn to_json(&self) -> Result<String, SandboxError> {
        serde_json::to_string(self).map_err(SandboxError::PlanJson)
    }

    pub fn from_json(text: &str) -> Result<SandboxPlan, SandboxError> {
        serde_json::from_str(text).map_err(SandboxError::PlanJson)
    }

    /// The maps the spawner must write from outside (the `await_id_maps` step), if any.
    pub fn outside_id_maps(&self) -> Option<(&[IdRange], &[IdRange])> {
        self.steps.iter().find_map(|s| match s {
            SetupStep::AwaitIdMaps { uid_map, gid_map } => Some((&uid_map[..], &gid_map[..])),
            _ => None,
        })
    }

    /// Stage 1's and PID 1's steps when PID 1 waits for the id maps: a user namespace made
    /// ahead whose newuidmap and newgidmap may still run ([`super::premap`]). Stage 1 enters
    /// the namespace, makes the others and forks PID 1 without its maps: creating namespaces,
    /// forking and making `/` a slave mount need only the capabilities an owner has in its
    /// namespace (user_namespaces(7)). PID 1 waits right before the first step after that,
    /// since the overlay mount is refused (EACCES) while the caller's ids are unmapped, and
    /// files cannot be created on a file system mounted inside (EOVERFLOW). The tools thus
    /// run during that work too. Without an `await_id_maps` step, the two stages as they are.
    pub fn steps_awaiting_maps_in_pid1(&self) -> (Vec<SetupStep>, Vec<SetupStep>) {
        let mut stage1 = self.stage_steps(Stage::Namespaces);
        let mut pid1 = self.stage_steps(Stage::Root);
        let Some(at) = stage1
            .iter()
            .position(|s| matches!(s, SetupStep::AwaitIdMaps { .. }))
        else {
            return (stage1, pid1);
        };
        let wait = stage1.remove(at);
        let before = pid1
            .iter()
            .position(|s| !matches!(s, SetupStep::UnshareMountNs | SetupStep::MakeRootPrivate))
            .unwrap_or(pid1.len());
        pid1.insert(before, wait);
        (stage1, pid1)
    }

    /// The steps of one stage, in order.
    pub fn stage_steps(&self, stage: Stage) -> Vec<SetupStep> {
        self.steps
            .iter()
            .filter(|s| s.stage() == stage)
            .cloned()
            .collect()
    }

    /// Checks everything that can be checked without touching the system.
    pub fn validate(&self) -> Result<(), SandboxError> {
        self.validate_steps()?;
        if self.argv.is_empty() || self.argv[0].is_empty() {
            return invalid("argv is empty: there is no program to run");
        }
        for arg in &self.argv {
            no_nul("argument", arg)?;
        }
        for (key, value) in &self.env {
            if key.is_empty() || key.contains('=') {
                return invalid(format!(
                    "environment variable name `{key}` is empty or has `=`"
                ));
            }
            no_nul("environment variable", key)?;
            no_nul("environment value", value)?;
        }
        for cgroup in &self.limits.cgroups {
            absolute(&cgroup.hierarchy)?;
            absolute(&cgroup.dir)?;
            let under = format!("{}/", cgroup.hierarchy.trim_end_matches('/'));
            let lexical = cgroup.dir.split('/').all(|c| c != "." && c != "..");
            if !cgroup.dir.starts_with(&under) || !lexical {
                return invalid(format!(
                    "cgroup `{}` is not a plain path under the cgroup hierarchy `{}`",
                    cgroup.dir, cgroup.hierarchy
                ));
            }
        }
        absolute(&self.cwd)
    }

    /// The step rules alone (probes run steps without a program).
    pub fn validate_steps(&self) -> Result<(), SandboxError> {
        let mut state = Seen::default();
        for step in &self.steps {
            state.check(step)?;
            for path in step.paths() {
                absolute(path)?;
            }
            if let SetupStep::MountOverlay {
                lower,
                upper,
                work,
                target,
                ..
            } = step
            {
                let options = lower.iter().chain([upper, work, target]);
                for path in options {
                    if path.contains([',', ':', '\\']) {
                        return invalid(format!(
                            "overlay path `{path}` contains `,`, `:` or `\\`, which the overlay \
                             option string cannot carry; move the store to a plainer path"
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

/// What earlier steps established, for the ordering rules.
#[derive(Default)]
struct Seen {
    user_ns: bool,
    id_maps: bool,
    mount_ns: bool,
    uts_ns: bool,
    pid_ns: bool,
    net_ns: bool,
    root_stage: bool,
    pivoted: bool,
}

impl Seen {
    fn check(&mut self, step: &SetupStep) -> Result<(), SandboxError> {
        let name = step.name();
        if step.stage() == Stage::Namespaces && self.root_stage {
            return invalid(format!("`{name}` must come before every file-system step"));
        }
        if step.is_mount() && !self.mount_ns {
            return invalid(format!("`{name}` needs an earlier `unshare_mount_ns`"));
        }
        if self.pivoted
            && !matches!(
                step,
                SetupStep::SetHostname(_) | SetupStep::NoNewPrivs | SetupStep::Chdir(_)
            )
        {
            return invalid(format!("`{name}` cannot follow `pivot_root`"));
        }
        match step {
            SetupStep::UnshareUserNs => self.user_ns = true,
            SetupStep::UnshareMountNs => self.mount_ns = true,
            SetupStep::UnshareOther { uts, pid, net, .. } => {
                self.uts_ns |= uts;
                self.pid_ns |= pid;
                self.net_ns |= net;
            }
            SetupStep::LoopbackUp if !self.net_ns => {
                return invalid(
                    "`loopback_up` needs an earlier `unshare_other` with net (it would change \
                     the host's `lo`)",
                );
            }
            SetupStep::MountOverlay { driver, .. }
                if driver.fuse_program().is_some() && !self.pid_ns =>
            {
                return invalid(
                    "a fuse-overlayfs root needs an earlier `unshare_other` with pid: its daemon \
                     runs in the sandbox and only the end of the PID namespace is sure to stop it",
                );
            }
            SetupStep::WriteIdMaps { uid_map, gid_map }
            | SetupStep::AwaitIdMaps { uid_map, gid_map } => {
                self.check_id_maps(step, uid_map, gid_map)?;
            }
            SetupStep::SetHostname(name) if !self.uts_ns => {
                return invalid(format!(
                    "`set_hostname` ({name}) needs an earlier `unshare_other` with uts"
                ));
            }
            SetupStep::SetHostname(name) => no_nul("hostname", name)?,
            SetupStep::PivotRoot { .. } => self.pivoted = true,
            _ => {}
        }
        self.root_stage |= step.stage() == Stage::Root;
        Ok(())
    }
}

impl Seen {
    fn check_id_maps(
        &mut self,
        step: &SetupStep,
        uid_map: &[IdRange],
        gid_map: &[IdRange],
    ) -> Result<(), SandboxError> {
        let name = step.name();
        if !self.user_ns {
            return invalid(format!("`{name}` needs an earlier `unshare_user_ns`"));
        }
        if self.id_maps {
            return invalid(format!("`{name}`: the id maps are written only once"));
        }
        self.id_maps = true;
        if uid_map.is_empty() || gid_map.is_empty() {
            return invalid(format!("`{name}` has an empty map"));
        }
        let single = |map: &[IdRange]| map.len() == 1 && map[0].count == 1;
        if matches!(step, SetupStep::WriteIdMaps { .. }) && !(single(uid_map) && single(gid_map)) {
            return invalid(
                "`write_id_maps` can only map the caller's own uid and gid (one id each): \
                 ranges must be written from outside with newuidmap/newgidmap (`await_id_maps`, \
                 IdMapping::Subordinate)",
            );
        }
        Ok(())
    }
}

fn invalid<T>(why: impl Into<String>) -> Result<T, SandboxError> {
    Err(SandboxError::InvalidPlan(why.into()))
}

fn no_nul(what: &str, s: &str) -> Result<(), SandboxError> {
    if s.contains('\0') {
        return invalid(format!("{what} `{}` contains a NUL byte", s.escape_debug()));
    }
    Ok(())
}

fn absolute(path: &str) -> Result<(), SandboxError> {
    no_nul("path", path)?;
    if !path.starts_with('/') {
        return invalid(format!("path `{path}` is not absolute"));
    }
    Ok(())
}

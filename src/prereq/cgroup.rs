//! cgroup v2 delegation: resource limits (`[runtime.resource_limits]`) and rootless OCI
//! runtimes need a cgroup v2 directory this user may write, with the memory, cpu and pids
//! controllers enabled for it (cgroups(7), "Cgroups v2 delegation").
//!
//! The layout is read from the host: `/sys/fs/cgroup` is cgroup2 (unified), or a tmpfs of v1
//! hierarchies with cgroup2 at `/sys/fs/cgroup/unified` (hybrid, where every controller is on
//! v1), or v1 only; the process's own v2 cgroup is the `0::` line of `/proc/self/cgroup`.

use std::path::{Path, PathBuf};

use super::distro::Fixes;
use super::host::{FsKind, Host};
use super::{Check, Group, Status};

/// The controllers limits use.
const NEEDED: [&str; 3] = ["memory", "cpu", "pids"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hierarchy {
    Unified,
    Hybrid,
    Legacy,
    /// The type of /sys/fs/cgroup could not be read.
    Unknown(String),
}

/// What the checks need to know about cgroups here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub hierarchy: Hierarchy,
    /// This process's cgroup v2 directory, when there is a v2 hierarchy.
    pub own: Option<PathBuf>,
    /// The controllers available in it (`cgroup.controllers`).
    pub controllers: Vec<String>,
    /// Whether this user may create child cgroups there and move processes into them.
    pub writable: bool,
}

impl Layout {
    /// Every controller limits need is delegated to this user.
    pub fn delegated(&self) -> bool {
        self.hierarchy == Hierarchy::Unified
            && self.writable
            && NEEDED
                .iter()
                .all(|c| self.controllers.iter().any(|h| h == c))
    }
}

pub fn layout(host: &dyn Host) -> Layout {
    let root = Path::new("/sys/fs/cgroup");
    let unified = root.join("unified");
    let (hierarchy, mount) = match host.fs_kind(root) {
        Ok(FsKind::Cgroup2) => (Hierarchy::Unified, Some(root.to_path_buf())),
        Ok(FsKind::Tmpfs) if host.fs_kind(&unified).is_ok_and(|k| k == FsKind::Cgroup2) => {
            (Hierarchy::Hybrid, Some(unified))
        }
        Ok(_) => (Hierarchy::Legacy, None),
        Err(e) => (Hierarchy::Unknown(format!("{}: {e}", root.display())), None),
    };
    let own = mount.and_then(|mount| {
        let text = host.read(Path::new("/proc/self/cgroup")).ok()?;
        let path = text.lines().find_map(|l| l.strip_prefix("0::"))?;
        Some(mount.join(path.trim().trim_start_matches('/')))
    });
    let controllers = own
        .as_ref()
        .and_then(|dir| host.read(&dir.join("cgroup.controllers")).ok())
        .map(|t| t.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default();
    let writable = own.as_ref().is_some_and(|dir| {
        host.writable(dir)
            && host.writable(&dir.join("cgroup.procs"))
            && host.writable(&dir.join("cgroup.subtree_control"))
    });
    Layout {
        hierarchy,
        own,
        controllers,
        writable,
    }
}

pub fn check(host: &dyn Host, fixes: &Fixes, layout: &Layout) -> Check {
    let check = |status, meaning| {
        Check::new(
            Group::Namespace,
            "cgroup",
            "cgroup v2 delegation",
            status,
            meaning,
        )
    };
    let limits = "[runtime.resource_limits] need it";
    let own = layout
        .own
        .as_ref()
        .map_or_else(|| "?".to_string(), |p| p.display().to_string());
    match &layout.hierarchy {
        Hierarchy::Unknown(why) => {
            return check(
                Status::Warn,
                format!("cannot tell which cgroup hierarchy is mounted ({why}); {limits}"),
            )
        }
        Hierarchy::Hybrid | Hierarchy::Legacy => {
            let which = if layout.hierarchy == Hierarchy::Hybrid {
                "hybrid cgroups: every controller is on cgroup v1"
            } else {
                "cgroup v1 only"
            };
            return check(
                Status::Warn,
                format!("{which}, so limits cannot be enforced through cgroup v2; {limits}"),
            )
            .fix(fixes.unified_cgroups());
        }
        Hierarchy::Unified => {}
    }
    let who = host.ids().who();
    if layout.delegated() {
        return check(
            Status::Pass,
            format!(
                "cgroup v2; {own} is writable by {who} with the {} controllers: limits can be \
                 enforced",
                NEEDED.join(", ")
            ),
        );
    }
    let scope = "or run it in a delegated scope: systemd-run --user --scope -p Delegate=yes \
                 karapace-tui";
    if !layout.writable {
        return check(
            Status::Warn,
            format!("cgroup v2, but {own} is not delegated to {who}; {limits}"),
        )
        .fix(format!("{}, {scope}", fixes.delegate_cgroups()));
    }
    let missing: Vec<&str> = NEEDED
        .iter()
        .filter(|c| !layout.controllers.iter().any(|h| h == *c))
        .copied()
        .collect();
    check(
        Status::Warn,
        format!(
            "cgroup v2; {own} is writable by {who} but lacks the {} controller(s); {limits}",
            missing.join(", ")
        ),
    )
    .fix(fixes.delegate_cgroups())
}

//! Cgroups for resource limits: `[runtime.resource_limits]` and rootless OCI
//! runtimes need a cgroup v2 directory this user may write, with the memory, cpu and pids
//! controllers enabled for it (cgroups(7), "Cgroups v2 delegation"). As real root, a
//! controller on a cgroup v1 hierarchy (hybrid and v1-only hosts) serves as well: root may
//! create cgroups anywhere in it; a user never may (v1 has no safe delegation).
//!
//! The layout is read from the host: `/sys/fs/cgroup` is cgroup2 (unified), or a tmpfs of v1
//! hierarchies with cgroup2 at `/sys/fs/cgroup/unified` (hybrid, where every controller is on
//! v1), or v1 only; the process's own v2 cgroup is the `0::` line of `/proc/self/cgroup`, and
//! the v1 hierarchies are the `cgroup` mounts of `/proc/self/mountinfo`.

use std::path::{Path, PathBuf};

use super::distro::Fixes;
use super::host::{FsKind, Host};
use super::{Check, Group, Status};

/// The controllers limits use.
pub const NEEDED: [&str; 3] = ["memory", "cpu", "pids"];

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

/// The cgroup v2 hierarchy's kind and mount point, from the file system types under
/// /sys/fs/cgroup (statfs(2)).
fn mount(host: &dyn Host) -> (Hierarchy, Option<PathBuf>) {
    let root = Path::new("/sys/fs/cgroup");
    let unified = root.join("unified");
    match host.fs_kind(root) {
        Ok(FsKind::Cgroup2) => (Hierarchy::Unified, Some(root.to_path_buf())),
        Ok(FsKind::Tmpfs) if host.fs_kind(&unified).is_ok_and(|k| k == FsKind::Cgroup2) => {
            (Hierarchy::Hybrid, Some(unified))
        }
        Ok(_) => (Hierarchy::Legacy, None),
        Err(e) => (Hierarchy::Unknown(format!("{}: {e}", root.display())), None),
    }
}

/// This process's cgroup v2 directory: the `0::` line of `/proc/self/cgroup` under `mount`.
fn own_cgroup(host: &dyn Host, mount: &Path) -> Option<PathBuf> {
    let text = host.read(Path::new("/proc/self/cgroup")).ok()?;
    let path = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    Some(mount.join(path.trim().trim_start_matches('/')))
}

fn words(host: &dyn Host, path: &Path) -> Option<Vec<String>> {
    let text = host.read(path).ok()?;
    Some(text.split_whitespace().map(str::to_string).collect())
}

pub fn layout(host: &dyn Host) -> Layout {
    let (hierarchy, mount) = mount(host);
    let own = mount.and_then(|mount| own_cgroup(host, &mount));
    let controllers = own
        .as_ref()
        .and_then(|dir| words(host, &dir.join("cgroup.controllers")))
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

/// Where the namespace backend creates an environment's cgroup, or why it cannot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    Usable {
        /// The cgroup v2 mount point.
        hierarchy: PathBuf,
        /// The cgroup environments' cgroups are created in.
        parent: PathBuf,
        /// Controllers enabled for its children (`cgroup.subtree_control`).
        enabled: Vec<String>,
        /// Controllers available but not enabled yet, which we may enable (as root).
        can_enable: Vec<String>,
    },
    Unusable {
        /// Why, in one sentence (no fix).
        why: String,
        /// The cgroup v2 hierarchy is there (else the fix is to boot with it).
        unified: bool,
    },
}

impl Placement {
    /// Whether `controller` can limit an environment here.
    pub fn has(&self, controller: &str) -> bool {
        match self {
            Placement::Usable {
                enabled,
                can_enable,
                ..
            } => enabled.iter().chain(can_enable).any(|c| c == controller),
            Placement::Unusable { .. } => false,
        }
    }
}

/// Where an environment's cgroup goes for this caller (`uid`, or real root with `root`):
/// - as root, directly under the hierarchy's root, whose `cgroup.subtree_control` root may
///   change (the root cgroup is exempt from the no-internal-processes rule, cgroups(7));
/// - rootless, under the systemd user manager's cgroup (`user@UID.service`), which systemd
///   delegates to the user (systemd.resource-control(5) `Delegate=`), when this process sits in
///   it; the controllers are the ones systemd enabled there. Moving our processes between its
///   children needs write access to that common ancestor (cgroups(7), "Cgroups v2
///   delegation"), which is checked here.
pub fn placement(host: &dyn Host, uid: u32, root: bool) -> Placement {
    let unusable = |why: String, unified| Placement::Unusable { why, unified };
    let (hierarchy, mount) = mount(host);
    let mount = match (&hierarchy, mount) {
        (Hierarchy::Unified, Some(mount)) => mount,
        // Root may use whatever controllers a hybrid host left on v2 (usually none: each goes
        // where it lives, the rest to their v1 hierarchies, see `v1_hierarchy`).
        (Hierarchy::Hybrid, Some(mount)) if root => mount,
        (Hierarchy::Hybrid, _) => {
            return unusable(
                "the host uses hybrid cgroups, where the memory, cpu and pids controllers are \
                 on cgroup v1, which is never delegated to a user"
                    .into(),
                false,
            )
        }
        (Hierarchy::Unknown(why), _) => {
            return unusable(
                format!("the cgroup hierarchy cannot be read ({why})"),
                false,
            )
        }
        _ => return unusable("the host has no cgroup v2 hierarchy".into(), false),
    };
    let usable =
        |parent: PathBuf, enabled: Vec<String>, can_enable: Vec<String>| Placement::Usable {
            hierarchy: mount.clone(),
            parent,
            enabled,
            can_enable,
        };
    if root {
        let enabled = words(host, &mount.join("cgroup.subtree_control")).unwrap_or_default();
        let can_enable = words(host, &mount.join("cgroup.controllers"))
            .unwrap_or_default()
            .into_iter()
            .filter(|c| !enabled.contains(c))
            .collect();
        return usable(mount.clone(), enabled, can_enable);
    }
    let manager = format!("user@{uid}.service");
    let Some(own) = own_cgroup(host, &mount) else {
        return unusable(
            "/proc/self/cgroup names no cgroup v2 directory".into(),
            true,
        );
    };
    let Some(parent) = own
        .ancestors()
        .find(|dir| dir.file_name().is_some_and(|n| n == manager.as_str()))
    else {
        return unusable(
            format!(
                "this process runs in {}, outside the systemd user manager's cgroup \
                 ({manager}), the one systemd delegates to the user",
                own.display()
            ),
            true,
        );
    };
    let writable = [parent.to_path_buf(), parent.join("cgroup.procs")]
        .iter()
        .chain([&parent.join("cgroup.subtree_control")])
        .all(|p| host.writable(p));
    if !writable {
        return unusable(
            format!("{} is not delegated to this user", parent.display()),
            true,
        );
    }
    let enabled = words(host, &parent.join("cgroup.subtree_control")).unwrap_or_default();
    usable(parent.to_path_buf(), enabled, Vec::new())
}

/// A cgroup v1 hierarchy: where it is mounted and the controllers it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Hierarchy {
    pub mount: PathBuf,
    pub controllers: Vec<String>,
}

/// The cgroup v1 hierarchies mounted here, from `/proc/self/mountinfo` (proc(5): the mount
/// point is field 5; after the ` - ` separator come the type, `cgroup` for v1, the source and
/// the super options, which name the controllers), as runc finds them. Co-mounted controllers
/// (`cpu,cpuacct`) share one hierarchy.
pub fn v1_hierarchies(host: &dyn Host) -> Vec<V1Hierarchy> {
    let Ok(text) = host.read(Path::new("/proc/self/mountinfo")) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| {
            let (mount, fs) = line.split_once(" - ")?;
            let mut fs = fs.split(' ');
            let (kind, _source, options) = (fs.next()?, fs.next()?, fs.next()?);
            if kind != "cgroup" {
                return None;
            }
            // Besides `rw`/`ro` and `name=…`, the options are the controllers (and a few flags
            // such as `xattr`, which no controller is called).
            let controllers = options
                .split(',')
                .filter(|o| !["rw", "ro"].contains(o) && !o.contains('='))
                .map(str::to_string)
                .collect();
            let point = mount.split(' ').nth(4)?;
            Some(V1Hierarchy {
                mount: PathBuf::from(unescape_mount_point(point)),
                controllers,
            })
        })
        .collect()
}

/// mountinfo writes a space, tab, newline or backslash in a path as `\` and three octal
/// digits.
fn unescape_mount_point(point: &str) -> String {
    let mut out = Vec::with_capacity(point.len());
    let bytes = point.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match (bytes[i], octal) {
            (b'\\', Some(d)) => {
                out.push(d.iter().fold(0u8, |n, b| n.wrapping_mul(8) + (b - b'0')));
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Where `controller`'s cgroup v1 hierarchy is mounted, when this process (real root) may
/// create cgroups in it and move processes into them: an environment's cgroup goes directly
/// under it (`<mount>/karapace-<short id>`), as Docker's and Podman's cgroupfs managers
/// (`/docker/<id>`, `/libpod_parent/…`) place theirs at the hierarchy's root rather than under
/// the caller's own cgroup (what runc does for a relative path): one fixed path per
/// environment, whichever terminal or service starts a session, so a joining session finds
/// the cold start's cgroup, `stop` finds what is left, and it is the same choice as the v2
/// root's. A read-only /sys (a container) makes the hierarchy unwritable, and it is not used.
pub fn v1_hierarchy(
    host: &dyn Host,
    hierarchies: &[V1Hierarchy],
    controller: &str,
) -> Option<PathBuf> {
    let h = hierarchies
        .iter()
        .find(|h| h.controllers.iter().any(|c| c == controller))?;
    (host.writable(&h.mount) && host.writable(&h.mount.join("cgroup.procs")))
        .then(|| h.mount.clone())
}

pub fn check(host: &dyn Host, fixes: &Fixes, layout: &Layout) -> Check {
    let check = |status, meaning| {
        Check::new(
            Group::Namespace,
            "cgroup",
            "cgroups for resource limits",
            status,
            meaning,
        )
    };
    let limits = "memory_limit_mb, cpu_shares and pids_limit are not enforced";
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
            let ids = host.ids();
            if !ids.is_root() {
                return check(
                    Status::Warn,
                    format!(
                        "{which}, which is never delegated to a user, so {limits} for {} (as \
                         root they are, through cgroup v1)",
                        ids.who()
                    ),
                )
                .fix(fixes.unified_cgroups());
            }
            return v1_check(host, fixes, which, check);
        }
        Hierarchy::Unified => {}
    }
    let ids = host.ids();
    let who = ids.who();
    let scope = "or run it inside the user manager's cgroup: systemd-run --user --scope -p \
                 Delegate=yes karapace-tui …";
    let placement = placement(host, ids.uid, ids.is_root());
    let parent = match &placement {
        Placement::Unusable { why, .. } => {
            return check(Status::Warn, format!("cgroup v2, but {why}, so {limits}"))
                .fix(format!("{}, {scope}", fixes.delegate_cgroups()));
        }
        Placement::Usable { parent, .. } => parent,
    };
    let missing: Vec<&str> = NEEDED
        .iter()
        .filter(|c| !placement.has(c))
        .copied()
        .collect();
    if missing.is_empty() {
        return check(
            Status::Pass,
            format!(
                "cgroup v2; environments with limits get a cgroup under {}, writable by {who} \
                 with the {} controllers",
                parent.display(),
                NEEDED.join(", ")
            ),
        );
    }
    check(
        Status::Warn,
        format!(
            "cgroup v2; {} is writable by {who} but lacks the {} controller(s), so the limits \
             that need them are not enforced",
            parent.display(),
            missing.join(", ")
        ),
    )
    .fix(fixes.delegate_cgroups())
}

/// Root on a hybrid or v1-only host: each controller where it lives (v2, when a hybrid host
/// left it there, else its v1 hierarchy).
fn v1_check(
    host: &dyn Host,
    fixes: &Fixes,
    which: &str,
    check: impl Fn(Status, String) -> Check,
) -> Check {
    let v2 = placement(host, 0, true);
    let hierarchies = v1_hierarchies(host);
    let mut places = Vec::new();
    let mut missing = Vec::new();
    for controller in NEEDED {
        if v2.has(controller) {
            places.push(format!("{controller} on cgroup v2"));
        } else if let Some(mount) = v1_hierarchy(host, &hierarchies, controller) {
            places.push(format!("{controller} in {}", mount.display()));
        } else {
            missing.push(controller);
        }
    }
    if missing.is_empty() {
        return check(
            Status::Pass,
            format!(
                "{which}; as root, limits are enforced through cgroup v1: environments with \
                 limits get a cgroup karapace-<id> per hierarchy ({})",
                places.join(", ")
            ),
        );
    }
    check(
        Status::Warn,
        format!(
            "{which}; as root, no writable cgroup hierarchy holds the {} controller(s), so the \
             limits that need them are not enforced",
            missing.join(", ")
        ),
    )
    .fix(fixes.unified_cgroups())
}

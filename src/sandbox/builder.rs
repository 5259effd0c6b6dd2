//! The standard plan for an environment's root file system: an overlay of the image (lower)
//! and the environment's changes (upper), with /proc, a minimal /dev, read-only /sys, tmpfs
//! directories and bind mounts, in bubblewrap's order. The runtime fills a [`RootfsSpec`] from
//! the manifest and the security policy; tests fill it by hand.

use std::io::IsTerminal;

use super::plan::{IdRange, OverlayDriver, SandboxPlan, SetupStep};

/// How the sandbox's ids relate to the host's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdMapping {
    /// Already real root: no user namespace (the CI case).
    HostRoot,
    /// Rootless: the caller's uid and gid become 0 (bubblewrap's `--uid 0 --gid 0`), written
    /// by the helper itself.
    SingleId { uid: u32, gid: u32 },
    /// Rootless with `/etc/subuid` and `/etc/subgid`: 0 is the caller, `sub_uid`/`sub_gid`
    /// (inside from 1) the granted ranges. Only newuidmap/newgidmap may write such maps, from
    /// outside the namespace: the plan's `await_id_maps` step has the spawner do it.
    Subordinate {
        uid: u32,
        gid: u32,
        sub_uid: IdRange,
        sub_gid: IdRange,
    },
}

impl IdMapping {
    /// `HostRoot` for effective uid 0; else `Subordinate` when this user has a subordinate
    /// range and working newuidmap/newgidmap, `SingleId` otherwise (see [`super::idmap`],
    /// whose [`detect`](super::idmap::detect) also says why a full range is not used).
    pub fn for_current_user() -> IdMapping {
        super::idmap::detect().mapping
    }

    /// The uid and gid maps newuidmap/newgidmap must write from outside (`Subordinate` only):
    /// 0 is the caller, 1.. the range.
    pub fn outside_maps(&self) -> Option<(Vec<IdRange>, Vec<IdRange>)> {
        match self {
            IdMapping::Subordinate {
                uid,
                gid,
                sub_uid,
                sub_gid,
            } => Some((
                vec![IdRange::single(0, *uid), *sub_uid],
                vec![IdRange::single(0, *gid), *sub_gid],
            )),
            IdMapping::HostRoot | IdMapping::SingleId { .. } => None,
        }
    }

    /// The user-namespace steps: none as real root; unshare, then the maps.
    pub(crate) fn steps(&self) -> Vec<SetupStep> {
        let maps = match (self, self.outside_maps()) {
            (IdMapping::HostRoot, _) => return Vec::new(),
            (_, Some((uid_map, gid_map))) => SetupStep::AwaitIdMaps { uid_map, gid_map },
            (IdMapping::SingleId { uid, gid } | IdMapping::Subordinate { uid, gid, .. }, None) => {
                SetupStep::WriteIdMaps {
                    uid_map: vec![IdRange::single(0, *uid)],
                    gid_map: vec![IdRange::single(0, *gid)],
                }
            }
        };
        vec![SetupStep::UnshareUserNs, maps]
    }
}

/// A bind mount; `target` is the path inside the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub source: String,
    pub target: String,
    pub read_only: bool,
}

/// Everything the standard plan needs. Inside paths (`tmpfs`, `devices`, bind targets, `cwd`)
/// are absolute paths in the sandbox; the others are host paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootfsSpec {
    pub ids: IdMapping,
    /// Image layers, top first.
    pub lower: Vec<String>,
    pub upper: String,
    pub work: String,
    /// Where the overlay is mounted and what becomes `/`.
    pub root: String,
    /// Required inside a user namespace; harmless as real root.
    pub userxattr: bool,
    /// Kernel overlayfs, fuse-overlayfs, or the kernel's with fuse-overlayfs as the fallback.
    pub overlay: OverlayDriver,
    /// A network namespace with only `lo` (brought up).
    pub isolate_net: bool,
    pub hostname: Option<String>,
    /// Bind the host's /sys read-only.
    pub sys: bool,
    /// Extra tmpfs mounts: (inside path, mode).
    pub tmpfs: Vec<(String, u32)>,
    /// Host device nodes allowed by the policy, bound at the same path (e.g. `/dev/fuse`).
    pub devices: Vec<String>,
    /// The caller's terminal, bound as /dev/console (see [`terminal_of_stdin`]).
    pub console: Option<String>,
    pub binds: Vec<Bind>,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: String,
}

impl RootfsSpec {
    /// The ordered plan (see the module doc of [`super::plan`]).
    pub fn plan(&self) -> SandboxPlan {
        let root = self.root.trim_end_matches('/').to_string();
        let inside = |p: &str| format!("{root}/{}", p.trim_start_matches('/'));
        let mut steps = self.ids.steps();
        steps.push(SetupStep::UnshareOther {
            pid: true,
            uts: true,
            ipc: true,
            net: self.isolate_net,
        });
        if self.isolate_net {
            steps.push(SetupStep::LoopbackUp);
        }
        steps.extend([
            SetupStep::UnshareMountNs,
            SetupStep::MakeRootPrivate,
            SetupStep::MountOverlay {
                lower: self.lower.clone(),
                upper: self.upper.clone(),
                work: self.work.clone(),
                target: root.clone(),
                userxattr: self.userxattr,
                driver: self.overlay.clone(),
            },
            SetupStep::MountProc {
                target: inside("/proc"),
            },
            SetupStep::MinimalDev {
                target: inside("/dev"),
                console: self.console.clone(),
            },
        ]);
        steps.extend(self.devices.iter().map(|dev| SetupStep::BindDevice {
            source: dev.clone(),
            target: inside(dev),
        }));
        if self.sys {
            steps.push(SetupStep::MountSysReadOnly {
                target: inside("/sys"),
            });
        }
        steps.extend(self.tmpfs.iter().map(|(path, mode)| SetupStep::MountTmpfs {
            target: inside(path),
            mode: *mode,
        }));
        steps.extend(self.binds.iter().map(|b| SetupStep::BindMount {
            source: b.source.clone(),
            target: inside(&b.target),
            read_only: b.read_only,
            recursive: true,
        }));
        if let Some(name) = &self.hostname {
            steps.push(SetupStep::SetHostname(name.clone()));
        }
        steps.extend([
            SetupStep::PivotRoot { new_root: root },
            SetupStep::NoNewPrivs,
            SetupStep::Chdir(self.cwd.clone()),
        ]);
        SandboxPlan {
            steps,
            argv: self.argv.clone(),
            env: self.env.clone(),
            cwd: self.cwd.clone(),
            limits: Default::default(),
        }
    }
}

/// The terminal on our stdin as a host path (e.g. `/dev/pts/3`), for [`RootfsSpec::console`]:
/// `Ok(None)` when stdin is not a terminal. ttyname(3) reads the `/proc/self/fd/0` link and
/// checks that the path names the same device; it fails (e.g. `ENODEV`) when the terminal is
/// not reachable by name here, such as a pty of another devpts instance.
pub fn terminal_of_stdin() -> nix::Result<Option<String>> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Ok(None);
    }
    let path = nix::unistd::ttyname(&stdin)?;
    Ok(Some(path.to_string_lossy().into_owned()))
}

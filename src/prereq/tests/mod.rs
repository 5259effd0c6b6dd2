//! The checks against fixture trees (`fixtures/<distro>/`, a few files of each host's `/etc`,
//! `/proc` and `/sys`) with scripted probes: [`FakeHost`] reads files under the fixture root
//! and answers everything else from its fields, recording which probes ran.

mod checks;
mod distros;

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};

use super::host::{FsKind, Host, Ids, Space};
use super::oci::OciProbe;
use super::{Check, Context, Report};
use crate::runtime::backend::Availability;
use crate::sandbox::check::FuseProblem;
use crate::sandbox::idmap::IdMapTools;
use crate::types::BackendKind;

/// The store every fixture host has (the debian fixture holds its `version` file).
pub const STORE: &str = "/home/user/.local/share/karapace";

pub struct FakeHost {
    pub root: PathBuf,
    pub ids: Ids,
    pub fs_kinds: HashMap<PathBuf, FsKind>,
    /// Paths this user may not write (every other path is writable).
    pub readonly: HashSet<PathBuf>,
    pub space: Space,
    pub programs: HashMap<String, PathBuf>,
    pub env: HashMap<String, String>,
    pub no_new_privs: bool,
    pub userns: Result<(), String>,
    pub kernel_overlay: Result<(), String>,
    pub fuse: Result<String, FuseProblem>,
    pub tools: Result<IdMapTools, String>,
    pub subordinate: Result<(), String>,
    pub oci: HashMap<String, OciProbe>,
    /// The probes that ran, in order.
    pub probes: RefCell<Vec<&'static str>>,
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/prereq/tests/fixtures")
        .join(name)
}

impl FakeHost {
    /// A rootless user (uid 1000, `user`) on the fixture tree `name`, where every probe
    /// succeeds, cgroups are v2, runc works and there is plenty of room.
    pub fn new(name: &str) -> FakeHost {
        FakeHost::at_root(fixture(name))
    }

    pub fn at_root(root: PathBuf) -> FakeHost {
        FakeHost {
            root,
            ids: Ids {
                euid: 1000,
                uid: 1000,
                gid: 1000,
                user: Some("user".into()),
            },
            fs_kinds: HashMap::from([("/sys/fs/cgroup".into(), FsKind::Cgroup2)]),
            readonly: HashSet::new(),
            space: Space {
                available: 50 << 30,
                total: 100 << 30,
            },
            programs: HashMap::from([("runc".into(), "/usr/bin/runc".into())]),
            env: HashMap::new(),
            no_new_privs: false,
            userns: Ok(()),
            kernel_overlay: Ok(()),
            fuse: Ok("/usr/bin/fuse-overlayfs".into()),
            tools: Ok(IdMapTools {
                newuidmap: "/usr/bin/newuidmap".into(),
                newgidmap: "/usr/bin/newgidmap".into(),
            }),
            subordinate: Ok(()),
            oci: HashMap::from([("runc".into(), started("1.1.12"))]),
            probes: RefCell::new(Vec::new()),
        }
    }

    pub fn root_user(mut self) -> FakeHost {
        self.ids = Ids {
            euid: 0,
            uid: 0,
            gid: 0,
            user: Some("root".into()),
        };
        self
    }

    /// Cgroup v1 controllers beside a v2 hierarchy with none (systemd's "hybrid").
    pub fn hybrid(mut self) -> FakeHost {
        self.fs_kinds.insert("/sys/fs/cgroup".into(), FsKind::Tmpfs);
        self.fs_kinds
            .insert("/sys/fs/cgroup/unified".into(), FsKind::Cgroup2);
        self
    }

    pub fn run(&self) -> Report {
        self.run_with(true)
    }

    /// With or without starting test containers.
    pub fn run_with(&self, try_containers: bool) -> Report {
        super::run(
            self,
            &Context {
                store: STORE.into(),
                default_backend: BackendKind::Namespace,
                try_containers,
            },
        )
    }

    fn probe(&self, name: &'static str) {
        self.probes.borrow_mut().push(name);
    }
}

/// A runtime that started its test container.
pub fn started(version: &str) -> OciProbe {
    OciProbe {
        version: Ok(version.into()),
        start: Ok(()),
    }
}

/// The check `id` of a report.
pub fn check<'a>(report: &'a Report, id: &str) -> &'a Check {
    report
        .checks
        .iter()
        .find(|c| c.id == id)
        .unwrap_or_else(|| panic!("no check {id} in {:#?}", report.checks))
}

impl Host for FakeHost {
    fn root(&self) -> &Path {
        &self.root
    }

    fn fs_kind(&self, path: &Path) -> io::Result<FsKind> {
        self.fs_kinds
            .get(path)
            .cloned()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }

    fn space(&self, _path: &Path) -> io::Result<Space> {
        Ok(self.space)
    }

    fn writable(&self, path: &Path) -> bool {
        !self.readonly.contains(path)
    }

    fn find_program(&self, name: &str) -> Option<PathBuf> {
        self.programs.get(name).cloned()
    }

    fn env(&self, name: &str) -> Option<String> {
        self.env.get(name).cloned()
    }

    fn ids(&self) -> Ids {
        self.ids.clone()
    }

    fn no_new_privs(&self) -> bool {
        self.no_new_privs
    }

    fn exe(&self) -> PathBuf {
        "/usr/bin/karapace-tui".into()
    }

    fn userns_probe(&self) -> Result<(), String> {
        self.probe("userns");
        self.userns.clone()
    }

    fn kernel_overlay_probe(&self) -> Result<(), String> {
        self.probe("overlay");
        self.kernel_overlay.clone()
    }

    fn fuse_overlayfs(&self) -> Result<String, FuseProblem> {
        self.fuse.clone()
    }

    fn idmap_tools(&self) -> Result<IdMapTools, String> {
        self.tools.clone()
    }

    fn subordinate_probe(&self) -> Result<(), String> {
        self.probe("subordinate");
        self.subordinate.clone()
    }

    fn backend_availability(&self, kind: BackendKind) -> Availability {
        match kind {
            BackendKind::Mock => Availability {
                backend: kind,
                available: true,
                detail: "always available (no isolation)".into(),
                fix: None,
            },
            other => Availability {
                backend: other,
                available: false,
                detail: format!("the {other} backend is not implemented yet"),
                fix: Some("use backend = \"namespace\"".into()),
            },
        }
    }

    fn oci_runtime(&self, program: &Path) -> OciProbe {
        self.probe("oci");
        let name = program
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.oci.get(&name).cloned().unwrap_or(OciProbe {
            version: Err("not scripted".into()),
            start: Err("not scripted".into()),
        })
    }
}

//! What the checks may ask of the host, and the real host.
//!
//! Files are named by their absolute path on the host (`/etc/os-release`); [`Host::root`]
//! says where that tree really is — `/` for [`SystemHost`], a fixture directory in tests — and
//! the provided methods read through it. Everything a fixture tree cannot stand for (file
//! system types, free space, write access, the calling user, and the probes that really create
//! namespaces, mount overlays or start containers) is a required method, so tests script it.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::oci::{self, OciProbe};
use crate::runtime::backend::{backend_for, Availability};
use crate::sandbox::check::{self, FuseProblem};
use crate::sandbox::idmap::{self, IdMapTools};
use crate::types::BackendKind;

/// The kind of file system a path is on (statfs(2) `f_type`), as far as the checks care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FsKind {
    Cgroup2,
    Cgroup1,
    Tmpfs,
    Other(String),
}

/// Space on a file system, in bytes (statvfs(3): available to unprivileged users).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    pub available: u64,
    pub total: u64,
}

/// Who runs the checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ids {
    pub euid: u32,
    pub uid: u32,
    pub gid: u32,
    /// The user's name, when the password database knows the uid.
    pub user: Option<String>,
}

impl Ids {
    pub fn is_root(&self) -> bool {
        self.euid == 0
    }

    /// How fix commands name the user.
    pub fn who(&self) -> String {
        self.user.clone().unwrap_or_else(|| self.uid.to_string())
    }
}

pub trait Host {
    /// Where the host's `/` is.
    fn root(&self) -> &Path;

    /// `path` (absolute on the host) as a path in this process.
    fn at(&self, path: &Path) -> PathBuf {
        self.root().join(path.strip_prefix("/").unwrap_or(path))
    }

    fn read(&self, path: &Path) -> io::Result<String> {
        fs::read_to_string(self.at(path))
    }

    fn exists(&self, path: &Path) -> bool {
        fs::symlink_metadata(self.at(path)).is_ok()
    }

    fn is_dir(&self, path: &Path) -> bool {
        self.at(path).is_dir()
    }

    /// The names in a directory.
    fn list(&self, path: &Path) -> io::Result<Vec<String>> {
        fs::read_dir(self.at(path))?
            .map(|entry| entry.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect()
    }

    // Paths below are host paths too; the real host reads them through `at`.

    fn fs_kind(&self, path: &Path) -> io::Result<FsKind>;
    fn space(&self, path: &Path) -> io::Result<Space>;
    /// Whether this user may write `path` (access(2) `W_OK`, which also says no on a
    /// read-only mount).
    fn writable(&self, path: &Path) -> bool;
    /// `name` on `PATH`, if found and executable.
    fn find_program(&self, name: &str) -> Option<PathBuf>;
    fn env(&self, name: &str) -> Option<String>;
    fn ids(&self) -> Ids;
    /// This process's `NoNewPrivs` (setuid helpers then gain nothing).
    fn no_new_privs(&self) -> bool;
    /// The karapace-tui binary (named in fix commands, run by the probes).
    fn exe(&self) -> PathBuf;

    // Probes that really do something; each answers `Err(why)` with the system's message.

    /// Creating user, mount, PID, UTS, IPC and network namespaces as this user.
    fn userns_probe(&self) -> Result<(), String>;
    /// Mounting kernel overlayfs the way the sandbox does. Its directories go to the
    /// temporary directory, not the store: a probe cut short (the TUI quit meanwhile) must
    /// not leave there what gc does not collect.
    fn kernel_overlay_probe(&self) -> Result<(), String>;
    /// fuse-overlayfs found and `/dev/fuse` opened for reading and writing.
    fn fuse_overlayfs(&self) -> Result<String, FuseProblem>;
    /// newuidmap and newgidmap found, and able to gain the privilege they need.
    fn idmap_tools(&self) -> Result<IdMapTools, String>;
    /// Writing this user's subordinate range into a new user namespace.
    fn subordinate_probe(&self) -> Result<(), String>;
    /// A backend's own verdict (cheap for the backends that have no checks here).
    fn backend_availability(&self, kind: BackendKind) -> Availability;
    /// An OCI runtime's version, and whether it starts a container here.
    fn oci_runtime(&self, program: &Path) -> OciProbe;
}

/// This machine, this process.
pub struct SystemHost {
    root: PathBuf,
    /// The karapace-tui binary, or why it cannot be found (then every probe says so).
    helper: Result<PathBuf, String>,
}

impl SystemHost {
    pub fn new() -> SystemHost {
        SystemHost {
            root: PathBuf::from("/"),
            helper: std::env::current_exe()
                .map_err(|e| format!("cannot find the karapace-tui binary (/proc/self/exe): {e}")),
        }
    }

    fn helper(&self) -> Result<&Path, String> {
        self.helper.as_deref().map_err(Clone::clone)
    }
}

impl Default for SystemHost {
    fn default() -> Self {
        SystemHost::new()
    }
}

impl Host for SystemHost {
    fn root(&self) -> &Path {
        &self.root
    }

    fn fs_kind(&self, path: &Path) -> io::Result<FsKind> {
        use nix::sys::statfs::{statfs, CGROUP2_SUPER_MAGIC, CGROUP_SUPER_MAGIC, TMPFS_MAGIC};
        let kind = statfs(&self.at(path))
            .map_err(io::Error::from)?
            .filesystem_type();
        Ok(if kind == CGROUP2_SUPER_MAGIC {
            FsKind::Cgroup2
        } else if kind == CGROUP_SUPER_MAGIC {
            FsKind::Cgroup1
        } else if kind == TMPFS_MAGIC {
            FsKind::Tmpfs
        } else {
            FsKind::Other(format!("{kind:?}"))
        })
    }

    fn space(&self, path: &Path) -> io::Result<Space> {
        let stat = nix::sys::statvfs::statvfs(&self.at(path)).map_err(io::Error::from)?;
        let unit = stat.fragment_size();
        Ok(Space {
            available: stat.blocks_available().saturating_mul(unit),
            total: stat.blocks().saturating_mul(unit),
        })
    }

    fn writable(&self, path: &Path) -> bool {
        nix::unistd::access(&self.at(path), nix::unistd::AccessFlags::W_OK).is_ok()
    }

    fn find_program(&self, name: &str) -> Option<PathBuf> {
        check::find_program(name).map(PathBuf::from)
    }

    fn env(&self, name: &str) -> Option<String> {
        std::env::var_os(name).map(|v| v.to_string_lossy().into_owned())
    }

    fn ids(&self) -> Ids {
        let uid = nix::unistd::getuid();
        Ids {
            euid: nix::unistd::geteuid().as_raw(),
            uid: uid.as_raw(),
            gid: nix::unistd::getgid().as_raw(),
            user: nix::unistd::User::from_uid(uid)
                .ok()
                .flatten()
                .map(|u| u.name),
        }
    }

    fn no_new_privs(&self) -> bool {
        idmap::no_new_privs()
    }

    fn exe(&self) -> PathBuf {
        self.helper
            .clone()
            .unwrap_or_else(|_| PathBuf::from("/usr/local/bin/karapace-tui"))
    }

    fn userns_probe(&self) -> Result<(), String> {
        check::unprivileged_userns(self.helper()?)
    }

    fn kernel_overlay_probe(&self) -> Result<(), String> {
        let helper = self.helper()?;
        let dir =
            tempfile::tempdir().map_err(|e| format!("cannot create a temporary directory: {e}"))?;
        check::kernel_overlay(helper, dir.path())
    }

    fn fuse_overlayfs(&self) -> Result<String, FuseProblem> {
        check::fuse_overlayfs_status()
    }

    fn idmap_tools(&self) -> Result<IdMapTools, String> {
        idmap::tools()
    }

    fn subordinate_probe(&self) -> Result<(), String> {
        check::subordinate_ids(self.helper()?).map(|_mapping| ())
    }

    fn backend_availability(&self, kind: BackendKind) -> Availability {
        backend_for(kind).availability()
    }

    fn oci_runtime(&self, program: &Path) -> OciProbe {
        oci::probe(program, &self.ids())
    }
}

//! Prerequisite checks: what each backend needs from this host, whether it has it, what that
//! means, and the exact fix for the detected distribution. `doctor` prints them (text or
//! JSON), the TUI's prerequisite screen shows them, and each backend's availability is
//! derived from them.
//!
//! Every check reads the host through [`Host`]: files by their absolute host path under an
//! injectable root (unit tests run against the fixture trees in `tests/fixtures/`), and the
//! probes that must really run something — creating a user namespace, mounting an overlay,
//! writing a subordinate id map, starting an OCI container — through methods that
//! [`SystemHost`] implements with the sandbox's own probes (`crate::sandbox::check`,
//! `crate::sandbox::idmap`) and that tests script.
//!
//! Layout: `host` (the trait and the real host), `distro` (os-release → package manager and
//! fix commands), `store` (writable, format, free space), `namespace` (user namespaces, the
//! overlay, fuse-overlayfs, id mapping), `cgroup` (v2 delegation), `oci` (runtimes found and
//! tried).

pub mod cgroup;
pub mod distro;
pub mod host;
mod namespace;
pub mod oci;
mod store;

#[cfg(test)]
pub(crate) mod tests;

use std::path::PathBuf;

use serde::Serialize;

use self::distro::Fixes;
pub use self::distro::{Distro, Family};
pub use self::host::{FsKind, Host, Ids, Space, SystemHost};
use crate::runtime::backend::Availability;
use crate::types::BackendKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Warn,
    Fail,
}

impl Status {
    /// As text output and the TUI write it (readable without colour).
    pub fn label(self) -> &'static str {
        match self {
            Status::Pass => "ok",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
        }
    }

    pub fn symbol(self) -> &'static str {
        match self {
            Status::Pass => "✓",
            Status::Warn => "!",
            Status::Fail => "✗",
        }
    }
}

/// Which list a check belongs to: the store (every backend needs it) or one backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Group {
    Store,
    Namespace,
    Oci,
    Mock,
}

impl Group {
    pub const ALL: [Group; 4] = [Group::Store, Group::Namespace, Group::Oci, Group::Mock];

    pub fn of(backend: BackendKind) -> Group {
        match backend {
            BackendKind::Namespace => Group::Namespace,
            BackendKind::Oci => Group::Oci,
            BackendKind::Mock => Group::Mock,
        }
    }

    pub fn backend(self) -> Option<BackendKind> {
        match self {
            Group::Store => None,
            Group::Namespace => Some(BackendKind::Namespace),
            Group::Oci => Some(BackendKind::Oci),
            Group::Mock => Some(BackendKind::Mock),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Group::Store => "store",
            Group::Namespace => "namespace",
            Group::Oci => "oci",
            Group::Mock => "mock",
        }
    }
}

/// One check's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub group: Group,
    /// Stable, for scripts: `namespace.userns`.
    pub id: String,
    /// What is checked, in a few words.
    pub title: String,
    pub status: Status,
    /// One line: what was found and what it means for the backend.
    pub meaning: String,
    /// The exact command or setting that fixes it, for this distribution and user.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// A failure makes the backend unusable (false for alternatives, such as one of several
    /// OCI runtimes, whose summary check is the required one).
    pub required: bool,
}

impl Check {
    fn new(group: Group, id: &str, title: &str, status: Status, meaning: String) -> Check {
        Check {
            group,
            id: format!("{}.{id}", group.as_str()),
            title: title.to_string(),
            status,
            meaning,
            fix: None,
            required: true,
        }
    }

    fn fix(mut self, fix: impl Into<String>) -> Check {
        self.fix = Some(fix.into());
        self
    }

    fn optional(mut self) -> Check {
        self.required = false;
        self
    }

    /// Makes the backend unusable.
    pub fn blocks(&self) -> bool {
        self.required && self.status == Status::Fail
    }
}

/// What the checks need to know besides the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    /// The store (it may not exist yet).
    pub store: PathBuf,
    /// The backend manifests get when they name none.
    pub default_backend: BackendKind,
    /// Whether each OCI runtime found may start a test container (tens of milliseconds of
    /// CPU each, and a container on the host): `doctor` and the prerequisite screen do, the
    /// TUI's start-up, which only needs the header's verdicts, does not.
    pub try_containers: bool,
}

/// Every check, grouped in [`Group::ALL`] order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub distro: Distro,
    pub default_backend: BackendKind,
    pub checks: Vec<Check>,
}

impl Report {
    pub fn group(&self, group: Group) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(move |c| c.group == group)
    }

    /// A backend can run when neither the store nor it has a blocking failure.
    pub fn availability(&self, backend: BackendKind) -> Availability {
        let relevant: Vec<&Check> = self
            .checks
            .iter()
            .filter(|c| c.group == Group::Store || c.group == Group::of(backend))
            .collect();
        let blocking: Vec<&&Check> = relevant.iter().filter(|c| c.blocks()).collect();
        if blocking.is_empty() {
            let detail = relevant
                .iter()
                .filter(|c| c.group != Group::Store)
                .map(|c| c.meaning.as_str())
                .collect::<Vec<_>>()
                .join("; ");
            return Availability {
                backend,
                available: true,
                detail,
                fix: None,
            };
        }
        let fixes: Vec<&str> = blocking.iter().filter_map(|c| c.fix.as_deref()).collect();
        Availability {
            backend,
            available: false,
            detail: blocking
                .iter()
                .map(|c| c.meaning.as_str())
                .collect::<Vec<_>>()
                .join("; "),
            fix: (!fixes.is_empty()).then(|| fixes.join("; ")),
        }
    }

    /// [`Report::availability`] of every backend (what `doctor --json` calls `backends`).
    pub fn backends(&self) -> Vec<Availability> {
        BackendKind::ALL
            .iter()
            .map(|b| self.availability(*b))
            .collect()
    }

    /// Whether the default backend can run here (`doctor` exits 4 when not).
    pub fn default_can_run(&self) -> bool {
        self.availability(self.default_backend).available
    }

    /// The worst status of a group.
    pub fn worst(&self, group: Group) -> Status {
        self.group(group)
            .map(|c| c.status)
            .max()
            .unwrap_or(Status::Pass)
    }
}

/// Run every check.
pub fn run(host: &dyn Host, context: &Context) -> Report {
    let distro = Distro::detect(host);
    let ids = host.ids();
    let fixes = Fixes {
        distro: &distro,
        as_root: ids.is_root(),
    };
    let mut checks = store::checks(host, &context.store);
    let cgroups = cgroup::layout(host);
    checks.extend(namespace::checks(host, &fixes));
    checks.push(cgroup::check(host, &fixes, &cgroups));
    checks.extend(oci::checks(host, &fixes, &cgroups, context.try_containers));
    checks.push(backend_check(host, BackendKind::Mock));
    Report {
        distro,
        default_backend: context.default_backend,
        checks,
    }
}

/// Only the checks of one backend (no store), for that backend's own availability. (The OCI
/// group asks the OCI backend for its own verdict, so that backend must not call this.)
pub fn backend_availability(host: &dyn Host, backend: BackendKind) -> Availability {
    let distro = Distro::detect(host);
    let fixes = Fixes {
        distro: &distro,
        as_root: host.ids().is_root(),
    };
    let checks = match backend {
        BackendKind::Namespace => {
            let cgroups = cgroup::layout(host);
            let mut checks = namespace::checks(host, &fixes);
            checks.push(cgroup::check(host, &fixes, &cgroups));
            checks
        }
        BackendKind::Oci => oci::checks(host, &fixes, &cgroup::layout(host), true),
        BackendKind::Mock => vec![backend_check(host, BackendKind::Mock)],
    };
    Report {
        distro,
        default_backend: BackendKind::default(),
        checks,
    }
    .availability(backend)
}

/// A backend's own verdict as a check (the mock backend's, and whether the OCI backend is
/// built in).
pub(crate) fn backend_check(host: &dyn Host, backend: BackendKind) -> Check {
    let verdict = host.backend_availability(backend);
    let status = if verdict.available {
        Status::Pass
    } else {
        Status::Fail
    };
    let check = Check::new(
        Group::of(backend),
        "backend",
        "backend",
        status,
        verdict.detail,
    );
    match verdict.fix {
        Some(fix) => check.fix(fix),
        None => check,
    }
}

//! The runtime backend interface and backend selection.
//!
//! A backend turns a resolved lock into files in a staging directory (`build`), runs programs
//! in a built environment (`run`, used by both `exec` and `enter`), ends an environment's
//! processes (`stop`), and cleans up what it made outside the environment directory
//! (`teardown`, before `destroy`). Resolution (`resolve`) turns a manifest into exact inputs:
//! the base image build and digests, each listed package's version and every dependency the
//! install adds; it must honour `offline`.
//! The engine owns everything else: locks, the journal, metadata, the lock file.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::events::EventSink;
use crate::image::Images;
use crate::lock::{LockFile, LockedBase, Resolution};
use crate::manifest::Manifest;
use crate::store::{EnvMeta, RunMarker, Store};
use crate::types::{BackendKind, Digest, EnvId};

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("the {backend} backend is not available here: {reason}\n  fix: {fix}")]
    Unavailable {
        backend: BackendKind,
        reason: String,
        fix: String,
    },
    #[error("{backend} backend: cannot {action} in offline mode: {detail}")]
    Offline {
        backend: BackendKind,
        action: &'static str,
        detail: String,
    },
    #[error("base image `{image}` has sha256 {actual}, but the manifest pins {expected}")]
    ImageHashMismatch {
        image: String,
        expected: String,
        actual: String,
    },
    #[error("{backend} backend: {step} failed for {path}: {source}")]
    Io {
        backend: BackendKind,
        step: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{backend} backend: {step}: {detail}")]
    Failed {
        backend: BackendKind,
        step: &'static str,
        detail: String,
    },
    #[error("cannot start `{program}`: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
}

impl BackendError {
    /// For `map_err`: an I/O failure of `backend` at `step` on `path`.
    pub fn io_at(
        backend: BackendKind,
        step: &'static str,
        path: &std::path::Path,
    ) -> impl FnOnce(std::io::Error) -> BackendError {
        let path = path.to_path_buf();
        move |source| BackendError::Io {
            backend,
            step,
            path,
            source,
        }
    }

    /// Whether the failure means "this host lacks something" (exit code 4) rather than "the
    /// operation failed" (exit code 1).
    pub fn is_missing_prerequisite(&self) -> bool {
        matches!(self, BackendError::Unavailable { .. })
    }
}

/// How a backend judges itself on this host (`doctor`, the TUI header).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Availability {
    pub backend: BackendKind,
    pub available: bool,
    /// What was found (a runtime's version) or why it cannot run.
    pub detail: String,
    /// The command or setting that fixes it, when unavailable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

pub struct ResolveRequest<'a> {
    pub manifest: &'a Manifest,
    /// The base image an earlier lock pinned, while the manifest still names it: packages
    /// are resolved on that image (the lock keeps it), so the dependencies are those the
    /// environment's own image needs.
    pub locked_base: Option<&'a LockedBase>,
    /// Versions an earlier lock pinned for listed packages, kept (where the repositories
    /// still have them) unless the manifest pins another, so adding a package does not
    /// upgrade the others.
    pub pins: &'a BTreeMap<String, String>,
    pub offline: bool,
    /// The image cache and server, to resolve and fetch the base image.
    pub images: &'a Images<'a>,
    /// For scratch directories (package resolution runs the image's package manager).
    pub store: &'a Store,
    pub events: &'a dyn EventSink,
}

pub struct BuildRequest<'a> {
    pub manifest: &'a Manifest,
    /// What to build, exactly: the base image and package versions to install.
    pub lock: &'a LockFile,
    pub offline: bool,
    pub images: &'a Images<'a>,
    /// An empty directory owned by the build; it becomes the environment directory.
    pub staging: &'a Path,
    pub store: &'a Store,
    pub events: &'a dyn EventSink,
}

pub struct BuildOutput {
    /// Store objects that make up the environment, bottom first.
    pub layers: Vec<Digest>,
}

pub struct RunRequest<'a> {
    pub store: &'a Store,
    pub env_dir: &'a Path,
    pub meta: &'a EnvMeta,
    pub lock: &'a LockFile,
    /// The program and its arguments; empty means an interactive login shell.
    pub argv: &'a [OsString],
    /// The session's run marker; the backend records the started process in it.
    pub marker: &'a RunMarker,
    /// Send the program's stdout to our stderr (for `--json`).
    pub stdout_to_stderr: bool,
    pub events: &'a dyn EventSink,
    /// The user's environment policy (what of the caller's environment may pass).
    pub env_policy: &'a crate::envpolicy::EnvPolicy,
    /// The caller's home directory (`~` of the manifest).
    pub home: &'a Path,
}

pub trait RuntimeBackend: Send + Sync {
    fn kind(&self) -> BackendKind;

    /// Whether this backend can run on this host, and why not.
    fn availability(&self) -> Availability;

    /// Resolve a manifest into exact inputs without building.
    fn resolve(&self, req: &ResolveRequest) -> Result<Resolution, BackendError>;

    /// Materialise the environment described by `req.lock` into `req.staging`.
    fn build(&self, req: &BuildRequest) -> Result<BuildOutput, BackendError>;

    /// Called by the engine as soon as it knows a session of the environment at `env_dir` is
    /// about to start, before its checks (the lock, the policies, the session marker): a
    /// backend may begin slow work here that the session's [`RuntimeBackend::run`] then uses
    /// (the namespace backend makes a rootless cold start's user namespace). What is begun must
    /// be harmless if no `run` follows (a check failed), and ends with the backend.
    fn prepare_run(&self, _env_dir: &Path, _events: &dyn EventSink) -> Result<(), BackendError> {
        Ok(())
    }

    /// Run a program (or an interactive shell) in a built environment; returns its exit code,
    /// 128+N when it was killed by signal N.
    fn run(&self, req: &RunRequest) -> Result<i32, BackendError>;

    /// How many sessions (programs started by `run`) are alive in the environment now.
    fn status(&self, store: &Store, id: &EnvId) -> Result<usize, BackendError>;

    /// End every process of the environment; returns how many sessions were signalled.
    fn stop(&self, store: &Store, id: &EnvId) -> Result<usize, BackendError>;

    /// Release what the backend holds for an environment outside its directory (mounts …).
    fn teardown(&self, env_dir: &Path) -> Result<(), BackendError>;

    /// Whether `run` can guarantee that the environment is not modified (frozen use).
    fn supports_read_only(&self) -> bool;

    /// The directory of an environment that the default [`RuntimeBackend::pack_archive`]
    /// packs (relative to the environment directory), or `None` when it has none.
    fn archive_dir(&self) -> Option<&'static str> {
        None
    }

    /// Whether `archive` can pack this backend's environments.
    fn can_archive(&self) -> bool {
        self.archive_dir().is_some()
    }

    /// Packs what `archive` keeps of the stopped environment in `env_dir` into the new tar
    /// file `out`. The default packs [`RuntimeBackend::archive_dir`] keeping owners and mtimes.
    fn pack_archive(&self, _store: &Store, env_dir: &Path, out: &Path) -> Result<(), BackendError> {
        let dir = self
            .archive_dir()
            .ok_or_else(|| cannot_archive(self.kind()))?;
        let content = env_dir.join(dir);
        let io_err = |step| BackendError::io_at(self.kind(), step, out);
        let mut file = std::fs::File::create(out).map_err(io_err("create"))?;
        crate::layer::pack_dir(&content, &mut file, crate::layer::PackMode::Preserve)
            .map_err(BackendError::io_at(self.kind(), "pack", &content))?;
        file.sync_all().map_err(io_err("sync"))
    }

    /// Unpacks the tar file `archive` (written by [`RuntimeBackend::pack_archive`], verified)
    /// into `into`, the environment's new, empty directory.
    fn unpack_archive(
        &self,
        _store: &Store,
        archive: &Path,
        into: &Path,
    ) -> Result<(), BackendError> {
        let dir = self
            .archive_dir()
            .ok_or_else(|| cannot_archive(self.kind()))?;
        let content = into.join(dir);
        let io_err = |step, path: &Path| BackendError::io_at(self.kind(), step, path);
        std::fs::create_dir(&content).map_err(io_err("create", &content))?;
        let mut file = std::fs::File::open(archive).map_err(io_err("open", archive))?;
        crate::layer::unpack_into(&mut file, &content, crate::layer::PackMode::Preserve)
            .map_err(io_err("unpack the archive into", &content))
    }

    /// The directories whose merge is the environment's root, top first, for reading its files
    /// from the host without running it (`crate::export::view`); `None` when this backend
    /// cannot say.
    fn file_layers(
        &self,
        _store: &Store,
        _env_dir: &Path,
        _lock: &LockFile,
    ) -> Option<Vec<PathBuf>> {
        None
    }
}

fn cannot_archive(backend: BackendKind) -> BackendError {
    BackendError::Failed {
        backend,
        step: "archive",
        detail: "this backend cannot archive environments".to_string(),
    }
}

/// The backend implementation for a kind. Backends that are not built yet say so through
/// `availability` and refuse every operation with `Unavailable`.
pub fn backend_for(kind: BackendKind) -> Box<dyn RuntimeBackend> {
    match kind {
        BackendKind::Mock => Box::new(super::mock::MockBackend::new()),
        BackendKind::Namespace => Box::new(super::namespace::NamespaceBackend::new()),
        BackendKind::Oci => Box::new(super::pending::PendingBackend::new(kind)),
    }
}

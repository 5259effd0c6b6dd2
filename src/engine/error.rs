//! The engine's error type and its mapping to exit codes.

use crate::image::ImageError;
use crate::lock::LockError;
use crate::manifest::ManifestError;
use crate::runtime::backend::BackendError;
use crate::store::StoreError;
use crate::types::EnvId;

/// Exit codes of the CLI, by kind of failure (documented in README.md).
pub mod exit {
    pub const FAILED: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const INTEGRITY: u8 = 3;
    pub const PREREQUISITE: u8 = 4;
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Policy(#[from] crate::policy::PolicyError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Export(#[from] crate::export::ExportError),
    #[error("environment {env} is built, but exporting its [gui] apps failed:\n  {}\nfix the cause and run `karapace-tui build` again (it exports what is missing), or `karapace-tui export {env} APP`", .failures.join("\n  "))]
    GuiExport { env: String, failures: Vec<String> },
    #[error("invalid image `{name}`: {problem} (allowed: {allowed})")]
    InvalidImage {
        name: String,
        problem: String,
        allowed: String,
    },
    #[error("invalid setting in {}: {problem}", .path.display())]
    Settings {
        path: std::path::PathBuf,
        problem: String,
    },
    #[error("{what} cancelled: everything it had done was rolled back (the store is as before)")]
    Cancelled { what: &'static str },
    #[error("image {sha256} is used by {users}; destroy those environments first")]
    ImageInUse { sha256: String, users: String },
    #[error("no environment matches `{query}`; `karapace-tui list` shows the ids and names")]
    NotFound { query: String },
    #[error("`{query}` matches several environments; use more of the id:\n{}", .candidates.join("\n"))]
    Ambiguous {
        query: String,
        candidates: Vec<String>,
    },
    #[error("`{query}` is too short to be an id prefix (at least 4 characters) and is not a name")]
    PrefixTooShort { query: String },
    #[error("invalid environment name `{name}`: it {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("the name `{name}` is already used by environment {owner}; pick another or rename that one first")]
    NameTaken { name: String, owner: String },
    #[error("cannot {action} environment {env}: it is {state}. {hint}")]
    InvalidTransition {
        env: String,
        action: &'static str,
        state: String,
        hint: &'static str,
    },
    #[error("cannot {action} environment {env}: {sessions} session(s) are running in it; run `karapace-tui stop {short_id}` first{force}")]
    Running {
        env: String,
        short_id: String,
        action: &'static str,
        sessions: usize,
        force: &'static str,
    },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} already exists; pass --force to overwrite it")]
    Exists { path: std::path::PathBuf },
    #[error("unknown template `{name}`; available: {available}")]
    UnknownTemplate { name: String, available: String },
    #[error("the {backend} backend cannot {action} environments yet (see docs/roadmap.md)")]
    Unsupported {
        action: &'static str,
        backend: crate::types::BackendKind,
    },
    #[error("environment {id} is recorded with no readable lock: {detail}")]
    MissingLock { id: EnvId, detail: String },
}

impl EngineError {
    /// The process exit code for this error (0 is success, never returned here).
    pub fn exit_code(&self) -> u8 {
        match self {
            EngineError::Manifest(_)
            | EngineError::NotFound { .. }
            | EngineError::Ambiguous { .. }
            | EngineError::PrefixTooShort { .. }
            | EngineError::InvalidName { .. }
            | EngineError::UnknownTemplate { .. }
            | EngineError::InvalidImage { .. }
            | EngineError::Policy(_) => exit::USAGE,
            EngineError::Export(e) if e.is_usage() => exit::USAGE,
            EngineError::Image(e) | EngineError::Backend(BackendError::Image(e))
                if image_integrity(e) =>
            {
                exit::INTEGRITY
            }
            EngineError::Lock(LockError::Read { .. } | LockError::Write { .. }) => exit::FAILED,
            EngineError::Lock(_) => exit::USAGE,
            EngineError::Store(e) if e.is_integrity() => exit::INTEGRITY,
            EngineError::Backend(BackendError::Store(e)) if e.is_integrity() => exit::INTEGRITY,
            EngineError::MissingLock { .. } => exit::INTEGRITY,
            EngineError::Backend(e) if e.is_missing_prerequisite() => exit::PREREQUISITE,
            _ => exit::FAILED,
        }
    }
}

/// Image failures that mean the store's copy is damaged (not that a download failed).
fn image_integrity(e: &ImageError) -> bool {
    match e {
        ImageError::Tampered { .. } => true,
        ImageError::Store(e) => e.is_integrity(),
        _ => false,
    }
}

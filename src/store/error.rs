//! The store's error type. Every variant carries the data a caller needs to act on it, and its
//! message says what failed, where, and what to do about it.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::types::{Digest, EnvId};

/// `Result` with [`StoreError`] as the default error.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file-system call failed. `op` says what the store was doing ("read", "create the
    /// directory", …) and `path` where.
    #[error("could not {op} `{}`: {source}", path.display())]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },

    /// A rename between two paths failed.
    #[error("could not rename `{}` to `{}`: {source}", from.display(), to.display())]
    Rename {
        from: PathBuf,
        to: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The store was written by a newer karapace-tui whose format this build does not know.
    #[error(
        "the store at `{}` uses format {found}, but this karapace-tui only understands formats up \
         to {supported}; upgrade karapace-tui or choose another store directory",
        path.display()
    )]
    FormatTooNew {
        path: PathBuf,
        found: u32,
        supported: u32,
    },

    /// The directory holds something else than a karapace-tui store.
    #[error(
        "`{}` is not a karapace-tui store ({detail}); point the store option at an empty or new \
         directory",
        path.display()
    )]
    NotAStore { path: PathBuf, detail: String },

    /// Stored data is damaged or malformed; never skipped silently.
    #[error(
        "corrupt store data at `{}`: {detail}; run `karapace-tui verify-store` for a full report",
        path.display()
    )]
    Corrupt { path: PathBuf, detail: String },

    /// An object's content does not hash to its name.
    #[error(
        "object `{}` is damaged: its name says blake3 {digest} but its content hashes to {actual}; \
         run `karapace-tui verify-store` to see what uses it, then rebuild those environments",
        path.display()
    )]
    ObjectMismatch {
        digest: Digest,
        actual: Digest,
        path: PathBuf,
    },

    /// A needed object is not in `objects/`.
    #[error(
        "object {digest} is missing from the store (objects/{digest}); rebuild the environments \
         that use it"
    )]
    MissingObject { digest: Digest },

    /// No environment with this id exists in the store.
    #[error("no environment {id} in the store")]
    NotFound { id: EnvId },

    /// gc found metadata it cannot read, so it cannot know which objects are still in use.
    #[error(
        "gc deleted nothing: {} environment metadata file(s) are corrupt ({}), so their objects \
         could still be in use. Run `karapace-tui verify-store`, then repair or destroy those \
         environments",
        corrupt.len(),
        join_paths(corrupt)
    )]
    GcRefused { corrupt: Vec<PathBuf> },

    /// Some interrupted operations could not be rolled back or completed. The ones that could
    /// were; `failures` says which were left and why.
    #[error(
        "could not finish recovering {} interrupted store operation(s): {}",
        failures.len(),
        join_failures(failures)
    )]
    RecoveryIncomplete { failures: Vec<RecoveryFailure> },
}

/// One journal entry that recovery could not settle.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RecoveryFailure {
    /// The journal entry, left in place so that the next recovery tries again.
    pub journal: PathBuf,
    /// What went wrong, with paths.
    pub error: String,
}

impl fmt::Display for RecoveryFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}`: {} (fix the cause and run any store command again; the entry is retried)",
            self.journal.display(),
            self.error
        )
    }
}

fn join_paths(paths: &[PathBuf]) -> String {
    let names: Vec<String> = paths.iter().map(|p| format!("`{}`", p.display())).collect();
    names.join(", ")
}

fn join_failures(failures: &[RecoveryFailure]) -> String {
    let parts: Vec<String> = failures.iter().map(ToString::to_string).collect();
    parts.join("; ")
}

impl StoreError {
    /// Whether this error means stored data is damaged or inconsistent (exit code 3), as
    /// opposed to an I/O failure, a missing environment or a store this build cannot use.
    pub fn is_integrity(&self) -> bool {
        matches!(
            self,
            StoreError::Corrupt { .. }
                | StoreError::FormatTooNew { .. }
                | StoreError::NotAStore { .. }
                | StoreError::ObjectMismatch { .. }
                | StoreError::MissingObject { .. }
                | StoreError::GcRefused { .. }
                | StoreError::RecoveryIncomplete { .. }
        )
    }

    /// Wrap an `io::Error` with the path and the operation that failed.
    pub fn io(path: impl Into<PathBuf>, op: &'static str, source: io::Error) -> StoreError {
        StoreError::Io {
            path: path.into(),
            op,
            source,
        }
    }

    /// Get back a `StoreError` that was carried inside an `io::Error` (as [`VerifiedReader`]
    /// does for a hash mismatch), or wrap the `io::Error` with `path` and `op`.
    ///
    /// [`VerifiedReader`]: super::VerifiedReader
    pub fn from_io_at(err: io::Error, path: impl Into<PathBuf>, op: &'static str) -> StoreError {
        if err.get_ref().is_some_and(|inner| inner.is::<StoreError>()) {
            if let Some(inner) = err.into_inner() {
                match inner.downcast::<StoreError>() {
                    Ok(store_err) => return *store_err,
                    Err(other) => return StoreError::io(path, op, io::Error::other(other)),
                }
            }
            // Unreachable in practice: get_ref() returned Some, so into_inner() does too.
            return StoreError::io(path, op, io::Error::from(io::ErrorKind::InvalidData));
        }
        StoreError::io(path, op, err)
    }
}

/// Attach a path and an operation name to an `io::Result`.
pub(crate) trait IoContext<T> {
    fn at(self, path: &std::path::Path, op: &'static str) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: &std::path::Path, op: &'static str) -> Result<T> {
        self.map_err(|source| StoreError::io(path, op, source))
    }
}

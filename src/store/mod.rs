//! The on-disk store: content-addressed objects, per-environment metadata, a write-ahead journal
//! for multi-step changes, flock-based locks and live-session markers. `docs/storage.md` describes
//! the layout and every protocol below in full.
//!
//! Invariants (each one is a defect of the original that must not come back):
//! - Nothing that matters is written in place: temp file, fsync, rename, fsync of the directory.
//! - Objects are named by the blake3 of their content and re-hashed on every read.
//! - Metadata carries a checksum of its exact bytes; anything unreadable is reported as corrupt,
//!   never skipped, and gc refuses to run while any metadata is corrupt.
//! - An environment directory is only ever replaced or removed by directory renames recorded in
//!   the journal first, so a crash at any point leaves the old environment or the new one, never
//!   a mix and never neither (unless the operation was a removal).
//! - Locks are flocks: they vanish with the process that held them, so a crash never leaves a
//!   stale lock behind.
//! - [`Store::open`] is cheap (one read and a few `mkdir`s, no scans): the CLI opens the store on
//!   every command.

use std::fmt;
use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

mod error;
mod fsutil;
mod gc;
mod journal;
mod lock;
mod meta;
mod object;
mod recover;
mod scratch;
mod verify;

#[cfg(test)]
mod tests;

pub use error::{RecoveryFailure, Result, StoreError};
pub use fsutil::{now_secs, remove_tree};
pub use gc::{GcItem, GcItemKind, GcReport};
pub use journal::{OpKind, Operation};
pub use lock::{EnvLock, RunMarker, StoreLock};
pub use meta::{decode_checksummed, encode_checksummed, EnvMeta};
pub use object::VerifiedReader;
pub use recover::{RecoveredOp, RecoveryReport};
pub use scratch::ScratchDir;
pub use verify::{Problem, ProblemKind, VerifyReport};

use crate::types::{Digest, EnvId};
use error::IoContext;

/// The store format this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// The `version` file holds this prefix followed by the format number and a newline.
const VERSION_PREFIX: &str = "karapace-tui store format ";

pub const VERSION_FILE: &str = "version";
const OBJECTS: &str = "objects";
const ENVS: &str = "envs";
const JOURNAL: &str = "journal";
const LOCKS: &str = "locks";
const RUN: &str = "run";
const TMP: &str = "tmp";

/// The directories every store has, created by [`Store::open`].
const LAYOUT_DIRS: [&str; 6] = [OBJECTS, ENVS, JOURNAL, LOCKS, RUN, TMP];

/// Top-level names owned by other modules (the image cache, the export records), which verify
/// does not flag.
const OTHER_KNOWN_TOP: [&str; 2] = ["images", crate::export::RECORDS_DIR];

/// Deletes a directory tree. Backends whose trees the host user cannot delete (files owned by
/// subordinate ids) install their own with [`Store::with_tree_remover`].
pub type TreeRemover = Arc<dyn Fn(&Path) -> io::Result<()> + Send + Sync>;

/// An open store. Cheap to clone; holds no file descriptors.
#[derive(Clone)]
pub struct Store {
    root: PathBuf,
    remover: TreeRemover,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Open the store at `root`, creating the directory and its layout if needed, and check the
    /// format version. A non-empty directory without a `version` file is refused, so a mistyped
    /// path never gets store directories sprinkled into it.
    pub fn open(root: &Path) -> Result<Store> {
        let root = std::path::absolute(root).at(root, "resolve the store path")?;
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&root)
            .at(&root, "create the store directory")?;
        let store = Store {
            root,
            remover: Arc::new(fsutil::remove_tree),
        };
        store.check_or_init_version()?;
        let mut created = false;
        for dir in LAYOUT_DIRS {
            created |= fsutil::ensure_dir(&store.root.join(dir))?;
        }
        if created {
            fsutil::fsync_dir(&store.root)?;
        }
        Ok(store)
    }

    /// Use `remover` instead of [`remove_tree`] to delete environment trees (staging, replaced
    /// and destroyed directories).
    pub fn with_tree_remover(mut self, remover: TreeRemover) -> Store {
        self.remover = remover;
        self
    }

    /// The store directory (absolute).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where an environment lives: `envs/<id>`.
    pub fn images_dir(&self) -> PathBuf {
        self.root.join("images")
    }

    pub fn env_dir(&self, id: &EnvId) -> PathBuf {
        self.envs_dir().join(id.as_str())
    }

    pub(crate) fn version_path(&self) -> PathBuf {
        self.root.join(VERSION_FILE)
    }

    pub(crate) fn objects_dir(&self) -> PathBuf {
        self.root.join(OBJECTS)
    }

    /// Where object `d` lives: `objects/<d>` (for messages; read it with
    /// [`Store::open_object`], which verifies).
    pub fn object_path(&self, d: &Digest) -> PathBuf {
        self.objects_dir().join(d.as_str())
    }

    pub(crate) fn envs_dir(&self) -> PathBuf {
        self.root.join(ENVS)
    }

    pub(crate) fn journal_dir(&self) -> PathBuf {
        self.root.join(JOURNAL)
    }

    pub(crate) fn locks_dir(&self) -> PathBuf {
        self.root.join(LOCKS)
    }

    pub(crate) fn run_dir(&self) -> PathBuf {
        self.root.join(RUN)
    }

    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.root.join(TMP)
    }

    /// Delete a directory tree with the configured remover; a missing tree is fine.
    pub(crate) fn remove_tree(&self, path: &Path) -> Result<()> {
        (self.remover)(path).at(path, "remove the directory tree")
    }

    fn check_or_init_version(&self) -> Result<()> {
        let path = self.version_path();
        // Two rounds: another process may be creating the same new store right now.
        for _ in 0..2 {
            match fs::read(&path) {
                Ok(bytes) => return parse_version(&path, &bytes).map(|_format| ()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    if self.init_version()? {
                        return Ok(());
                    }
                }
                Err(e) => return Err(StoreError::io(&path, "read", e)),
            }
        }
        Err(StoreError::Corrupt {
            path,
            detail: "the version file keeps appearing and disappearing".to_string(),
        })
    }

    /// Write the version file into a new store. Returns `false` if one appeared meanwhile.
    fn init_version(&self) -> Result<bool> {
        let mut names = Vec::new();
        for entry in fs::read_dir(&self.root).at(&self.root, "list")? {
            names.push(
                entry
                    .at(&self.root, "list")?
                    .file_name()
                    .to_string_lossy()
                    .into_owned(),
            );
        }
        // Another process created this store meanwhile (it writes `version` first).
        if names.iter().any(|n| n == VERSION_FILE) {
            return Ok(false);
        }
        // A crash while writing the version file leaves `.version.tmp-*`: still a new store.
        let foreign = names
            .iter()
            .find(|n| !(n.starts_with(".version") && fsutil::is_temp_name(n)));
        if let Some(name) = foreign {
            return Err(StoreError::NotAStore {
                path: self.root.clone(),
                detail: format!("it contains `{name}` but no `{VERSION_FILE}` file"),
            });
        }
        let text = format!("{VERSION_PREFIX}{FORMAT_VERSION}\n");
        fsutil::atomic_write(
            &self.version_path(),
            text.as_bytes(),
            0o644,
            "init store version",
        )?;
        if let Some(parent) = self.root.parent() {
            // The store directory itself may be new: make its name durable too.
            fsutil::fsync_dir(parent)?;
        }
        Ok(true)
    }
}

/// Check the content of a `version` file; returns the format number it names (at most
/// [`FORMAT_VERSION`]). `doctor` uses it without opening the store.
pub fn parse_version(path: &Path, bytes: &[u8]) -> Result<u32> {
    let corrupt = |detail: String| StoreError::Corrupt {
        path: path.to_path_buf(),
        detail,
    };
    let shown: String = String::from_utf8_lossy(bytes).chars().take(60).collect();
    let expected = format!("expected `{VERSION_PREFIX}<number>`, found {shown:?}");
    let text = std::str::from_utf8(bytes).map_err(|_| corrupt(expected.clone()))?;
    let number = text
        .trim_end()
        .strip_prefix(VERSION_PREFIX)
        .ok_or_else(|| corrupt(expected.clone()))?;
    let found: u32 = number.parse().map_err(|_| corrupt(expected.clone()))?;
    if found == 0 {
        return Err(corrupt(expected));
    }
    if found > FORMAT_VERSION {
        return Err(StoreError::FormatTooNew {
            path: path.to_path_buf(),
            found,
            supported: FORMAT_VERSION,
        });
    }
    Ok(found)
}

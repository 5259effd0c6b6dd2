//! Scratch directories: private working trees under `tmp/` for work that happens before an
//! operation has a journalled staging directory (the namespace backend resolves package
//! versions in one, and hands its refreshed package indexes on to the build).
//!
//! A scratch directory is flocked for its whole life, like a temp file, so `gc` removes one
//! only when the process that made it is gone; it is removed (with the store's tree remover,
//! which copes with files owned by subordinate ids) when dropped.

use std::fs::{DirBuilder, File};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use nix::fcntl::Flock;

use super::error::IoContext;
use super::{fsutil, Result, Store, TreeRemover};

/// Names of scratch directories in `tmp/` start with this.
pub(crate) const SCRATCH_PREFIX: &str = "scratch-";

/// A private directory in the store's `tmp/`, removed on drop.
pub struct ScratchDir {
    path: PathBuf,
    remover: TreeRemover,
    _lock: Flock<File>,
}

impl std::fmt::Debug for ScratchDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScratchDir")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl ScratchDir {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if let Err(e) = (self.remover)(&self.path) {
            // Reported, not fatal: `gc` removes it once this process is gone.
            eprintln!(
                "karapace-tui: warning: could not remove the scratch directory {}: {e} \
                 (`karapace-tui gc` removes it later)",
                self.path.display()
            );
        }
    }
}

impl Store {
    /// A new, empty, private (`0700`) directory `tmp/scratch-<purpose>-<unique>`.
    pub fn scratch_dir(&self, purpose: &str) -> Result<ScratchDir> {
        let path = self.tmp_dir().join(format!(
            "{SCRATCH_PREFIX}{purpose}-{}",
            fsutil::unique_suffix()
        ));
        DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .at(&path, "create the scratch directory")?;
        let file = File::open(&path).at(&path, "open the scratch directory")?;
        let lock = fsutil::try_flock(file, true, &path)?.ok_or_else(|| {
            super::StoreError::io(
                &path,
                "lock the new scratch directory",
                std::io::Error::from(std::io::ErrorKind::WouldBlock),
            )
        })?;
        Ok(ScratchDir {
            path,
            remover: self.remover.clone(),
            _lock: lock,
        })
    }

    /// Removes `path` (a scratch directory in `tmp/`) if no process holds it; returns the
    /// bytes it held, or `None` when it is in use. With `dry_run`, only measures.
    pub(crate) fn remove_scratch_if_unlocked(
        &self,
        path: &Path,
        dry_run: bool,
    ) -> Result<Option<u64>> {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(super::StoreError::io(path, "open", e)),
        };
        let Some(_lock) = fsutil::try_flock(file, true, path)? else {
            return Ok(None);
        };
        // The size is only reported; a subtree the user cannot read (owned by a subordinate
        // id) is still removed by the tree remover, so it must not stop the removal.
        let bytes = crate::fsutil::tree_size(path).unwrap_or(0);
        if !dry_run {
            self.remove_tree(path)?;
        }
        Ok(Some(bytes))
    }
}

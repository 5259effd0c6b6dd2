//! File-system building blocks with the durability rules the store relies on.
//!
//! Invariants:
//! - A file that matters is written as a temp file in the same directory (flocked while being
//!   written, so gc can tell a live temp from a leftover), fsynced, renamed into place, and then the
//!   directory is fsynced. A reader sees the old file or the new one, never a torn one.
//! - Nothing here treats an error as "absent": [`exists`] returns an error unless the answer is a
//!   clear yes or no.
//! - Moves into an environment's place use `RENAME_NOREPLACE`, so a rename can never silently
//!   replace a directory that someone else put there.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use super::error::{IoContext, Result, StoreError};
use crate::crashpoint;

/// Marker in the names of temp files written next to their destination (`.<name>.tmp-<unique>`).
pub(crate) const TEMP_MARK: &str = ".tmp-";

pub(crate) use crate::fsutil::unique_suffix;

/// Seconds since the Unix epoch (0 if the clock is before 1970).
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Whether `name` is one of our next-to-destination temp files.
pub(crate) fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.contains(TEMP_MARK)
}

/// Flush a directory's entries (new, renamed or removed names) to disk.
pub(crate) fn fsync_dir(dir: &Path) -> Result<()> {
    crate::fsutil::fsync_dir(dir).at(dir, "fsync the directory")
}

/// `Ok(true)` if something (file, directory or symlink) is at `path`, `Ok(false)` if nothing is,
/// and an error for anything else (permission denied, I/O error): never guessed.
pub(crate) fn exists(path: &Path) -> Result<bool> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(StoreError::io(path, "look at", e)),
    }
}

/// The type of what is at `path` (symlinks not followed), or `None` if nothing is there any
/// more (a concurrent session or write may remove entries between a listing and a look).
pub(crate) fn file_type(path: &Path) -> Result<Option<fs::FileType>> {
    match fs::symlink_metadata(path) {
        Ok(m) => Ok(Some(m.file_type())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StoreError::io(path, "look at", e)),
    }
}

/// Whether `path` is a directory (not a symlink to one); `false` if it vanished.
pub(crate) fn is_dir(path: &Path) -> Result<bool> {
    Ok(file_type(path)?.is_some_and(|t| t.is_dir()))
}

/// Whether `path` is a regular file; `false` if it vanished.
pub(crate) fn is_file(path: &Path) -> Result<bool> {
    Ok(file_type(path)?.is_some_and(|t| t.is_file()))
}

/// Create a directory; an existing one is fine. Returns whether it was created.
pub(crate) fn ensure_dir(path: &Path) -> Result<bool> {
    match fs::create_dir(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => Ok(false),
        Err(e) => Err(StoreError::io(path, "create the directory", e)),
    }
}

/// Remove a file; a missing one is fine.
pub(crate) fn remove_file_if_exists(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StoreError::io(path, "remove the file", e)),
    }
}

/// Rename `from` to `to`, failing with `AlreadyExists` instead of replacing anything at `to`.
pub(crate) fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use nix::fcntl::{renameat2, RenameFlags};
        match renameat2(None, from, None, to, RenameFlags::RENAME_NOREPLACE) {
            Ok(()) => return Ok(()),
            // Some file systems do not implement the flag; fall back to check-then-rename below.
            Err(Errno::EINVAL) | Err(Errno::ENOSYS) => {}
            Err(e) => return Err(e.into()),
        }
    }
    if fs::symlink_metadata(to).is_ok() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "destination exists",
        ));
    }
    fs::rename(from, to)
}

/// Rename with both paths in the error.
pub(crate) fn rename(from: &Path, to: &Path) -> Result<()> {
    fs::rename(from, to).map_err(|source| StoreError::Rename {
        from: from.to_path_buf(),
        to: to.to_path_buf(),
        source,
    })
}

/// The default way to delete a directory tree. A missing tree is fine. If permission is denied
/// (read-only directories, such as a Go module cache, are common in build trees), directories we
/// own are made writable and the removal is tried once more.
pub fn remove_tree(path: &Path) -> io::Result<()> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            make_dirs_writable(path)?;
            match fs::remove_dir_all(path) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                other => other,
            }
        }
        Err(e) => Err(e),
    }
}

/// Give the owner rwx on every directory under `root` (symlinks are not followed).
fn make_dirs_writable(root: &Path) -> io::Result<()> {
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let meta = fs::symlink_metadata(&dir)?;
        if !meta.is_dir() {
            continue;
        }
        let mode = meta.permissions().mode();
        if mode & 0o700 != 0o700 {
            fs::set_permissions(&dir, fs::Permissions::from_mode(mode | 0o700))?;
        }
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    Ok(())
}

/// Take a flock without blocking: `Ok(None)` if another open file holds a conflicting one.
pub(crate) fn try_flock(file: File, exclusive: bool, path: &Path) -> Result<Option<Flock<File>>> {
    let arg = if exclusive {
        FlockArg::LockExclusiveNonblock
    } else {
        FlockArg::LockSharedNonblock
    };
    match Flock::lock(file, arg) {
        Ok(lock) => Ok(Some(lock)),
        Err((_, Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, errno)) => Err(StoreError::io(path, "flock", errno.into())),
    }
}

/// Take a flock, waiting as long as it takes (retrying after signals).
pub(crate) fn flock_blocking(file: File, exclusive: bool, path: &Path) -> Result<Flock<File>> {
    let arg = if exclusive {
        FlockArg::LockExclusive
    } else {
        FlockArg::LockShared
    };
    let mut file = file;
    loop {
        match Flock::lock(file, arg) {
            Ok(lock) => return Ok(lock),
            Err((f, Errno::EINTR)) => file = f,
            Err((_, errno)) => {
                return Err(StoreError::io(path, "wait for the lock on", errno.into()))
            }
        }
    }
}

/// Whether `path` still names the open `file`: false once someone unlinked it or renamed it
/// away (a temp file persisted into place) after we opened it.
pub(crate) fn still_linked(file: &File, path: &Path) -> Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let open = file.metadata().at(path, "stat")?;
    match fs::symlink_metadata(path) {
        Ok(named) => Ok(open.nlink() > 0 && named.dev() == open.dev() && named.ino() == open.ino()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(StoreError::io(path, "look at", e)),
    }
}

/// If the file at `path` is not flocked by anyone, remove it and return its size; if it is
/// (a live temp file or session marker), return `None`. `dry_run` only reports.
pub(crate) fn remove_if_unlocked(path: &Path, dry_run: bool) -> Result<Option<u64>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::io(path, "open", e)),
    };
    let Some(lock) = try_flock(file, true, path)? else {
        return Ok(None);
    };
    if !still_linked(&lock, path)? {
        return Ok(None);
    }
    let size = lock.metadata().at(path, "stat")?.len();
    if !dry_run {
        // Unlinked while we hold the lock, so nobody can have taken it over in between.
        remove_file_if_exists(path)?;
    }
    Ok(Some(size))
}

/// A new temp file, flocked exclusively while it is written, and removed again if it is dropped
/// without being persisted.
pub(crate) struct LockedTemp {
    guard: TempGuard,
    file: Flock<File>,
}

/// Removes the temp file on drop unless disarmed.
struct TempGuard {
    path: PathBuf,
    armed: bool,
}

impl Drop for TempGuard {
    fn drop(&mut self) {
        if self.armed {
            if let Err(e) = remove_file_if_exists(&self.path) {
                eprintln!("karapace-tui: warning: could not clean up a temp file: {e}");
            }
        }
    }
}

impl LockedTemp {
    /// Create `dir/<name>` (which must not exist) with permission bits `mode`.
    pub(crate) fn create(dir: &Path, name: &str, mode: u32) -> Result<LockedTemp> {
        let path = dir.join(name);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)
            .at(&path, "create the temp file")?;
        let guard = TempGuard { path, armed: true };
        match try_flock(file, true, &guard.path)? {
            Some(file) => Ok(LockedTemp { guard, file }),
            // A brand-new file cannot be locked by anyone else; if it is, something is very wrong.
            None => Err(StoreError::io(
                &guard.path,
                "lock the new temp file",
                Errno::EWOULDBLOCK.into(),
            )),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.guard.path
    }

    pub(crate) fn file(&mut self) -> &mut File {
        &mut self.file
    }

    /// fsync the content.
    pub(crate) fn sync(&mut self) -> Result<()> {
        self.file
            .sync_all()
            .at(&self.guard.path, "fsync the temp file")
    }

    /// Rename to `dest` (replacing it) and hand back the still-locked file. The caller fsyncs the
    /// destination directory.
    pub(crate) fn persist(self, dest: &Path) -> Result<Flock<File>> {
        let LockedTemp { mut guard, file } = self;
        rename(&guard.path, dest)?;
        guard.armed = false;
        Ok(file)
    }

    /// Like [`LockedTemp::persist`], but fails with an `AlreadyExists` error instead of replacing
    /// an existing `dest`; the temp file is then removed.
    pub(crate) fn persist_noreplace(self, dest: &Path) -> io::Result<Flock<File>> {
        let LockedTemp { mut guard, file } = self;
        rename_noreplace(&guard.path, dest)?;
        guard.armed = false;
        Ok(file)
    }
}

/// Atomically replace `dest` with `bytes`: temp file beside it, write, fsync, rename, fsync the
/// directory. `label` names the step for crash points.
pub(crate) fn atomic_write(dest: &Path, bytes: &[u8], mode: u32, label: &str) -> Result<()> {
    let dir = parent_of(dest)?;
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut temp =
        LockedTemp::create(dir, &format!(".{name}{TEMP_MARK}{}", unique_suffix()), mode)?;
    let temp_path = temp.path().to_path_buf();
    temp.file()
        .write_all(bytes)
        .at(&temp_path, "write the temp file")?;
    temp.sync()?;
    crashpoint::hit(&format!("{label}: temp file written and synced"));
    let lock = temp.persist(dest)?;
    drop(lock);
    crashpoint::hit(&format!("{label}: renamed into place"));
    fsync_dir(dir)
}

/// The directory that holds `path`.
pub(crate) fn parent_of(path: &Path) -> Result<&Path> {
    path.parent().ok_or_else(|| {
        StoreError::io(
            path,
            "find the parent directory of",
            io::ErrorKind::InvalidInput.into(),
        )
    })
}

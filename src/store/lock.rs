//! Locks and live-session markers, all built on flock(2): the kernel drops a flock when the
//! process holding it dies, so a crash never leaves a stale lock, and "is this marker live?" is
//! answered by trying its lock rather than by guessing from a pid (pids are reused).
//!
//! - `locks/store.lock`: shared by anything that adds objects and then references them (builds);
//!   exclusive for gc, so gc never deletes an object that a build has written but not yet
//!   recorded in metadata.
//! - `locks/env-<id>.lock`: exclusive, for any change to one environment.
//! - `locks/names.lock`: exclusive, while a name is checked for uniqueness and assigned.
//! - `run/<id>/<pid>-<n>`: one file per live session, flocked exclusively by its process for the
//!   session's lifetime. It is created under a temp name, locked, then renamed, so it is never
//!   visible unlocked while its process lives.
//!
//! Lock files are never deleted: deleting a flocked file lets a second process lock a new file
//! of the same name while the first still holds the old one. flocks belong to open files, so
//! taking the same lock twice in one process (through two calls) blocks just like two processes.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use super::error::{IoContext, Result, StoreError};
use super::fsutil::{self, LockedTemp, TEMP_MARK};
use super::Store;
use crate::types::EnvId;

/// Lock file of environment names.
pub(crate) const NAMES_LOCK: &str = "names.lock";
/// Lock file of the whole store.
pub(crate) const STORE_LOCK: &str = "store.lock";

/// A store-wide lock (the store lock, shared or exclusive, or the names lock); released on drop
/// (or process death).
#[derive(Debug)]
pub struct StoreLock {
    _lock: Flock<File>,
    path: PathBuf,
    exclusive: bool,
}

impl StoreLock {
    pub fn is_exclusive(&self) -> bool {
        self.exclusive
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The exclusive lock of one environment; released on drop (or process death).
#[derive(Debug)]
pub struct EnvLock {
    _lock: Flock<File>,
    id: EnvId,
}

impl EnvLock {
    pub fn id(&self) -> &EnvId {
        &self.id
    }
}

/// A live-session marker `run/<id>/<pid>-<n>`; dropping it removes the file.
#[derive(Debug)]
pub struct RunMarker {
    path: PathBuf,
    id: EnvId,
    /// The marker file, flocked exclusively for the session's lifetime.
    file: Flock<File>,
}

impl RunMarker {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Replace the marker's content with `text` (the runtime records the session's process
    /// there, so that `stop` can find it; see [`Store::session_records`]).
    pub fn record(&self, text: &str) -> Result<()> {
        let file: &File = &self.file;
        crate::fsutil::rewrite_in_place(file, text).at(&self.path, "write the session marker")
    }

    pub fn id(&self) -> &EnvId {
        &self.id
    }
}

impl Drop for RunMarker {
    fn drop(&mut self) {
        // Removed while still locked, so nobody can mistake it for stale in between.
        if let Err(e) = fsutil::remove_file_if_exists(&self.path) {
            eprintln!("karapace-tui: warning: could not remove the session marker: {e}");
        }
    }
}

fn open_lock_file(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .at(path, "open the lock file")
}

/// Take a lock, first without blocking so that, if someone holds it, the user is told why we
/// wait.
fn acquire(path: &Path, exclusive: bool, what: &str) -> Result<Flock<File>> {
    let file = open_lock_file(path)?;
    let arg = if exclusive {
        FlockArg::LockExclusiveNonblock
    } else {
        FlockArg::LockSharedNonblock
    };
    match Flock::lock(file, arg) {
        Ok(lock) => Ok(lock),
        Err((file, Errno::EWOULDBLOCK)) => {
            eprintln!("waiting for {what} held by another karapace-tui process");
            fsutil::flock_blocking(file, exclusive, path)
        }
        Err((_, errno)) => Err(StoreError::io(path, "flock", errno.into())),
    }
}

impl Store {
    fn store_lock_path(&self) -> PathBuf {
        self.locks_dir().join(STORE_LOCK)
    }

    fn env_lock_path(&self, id: &EnvId) -> PathBuf {
        self.locks_dir().join(format!("env-{id}.lock"))
    }

    /// Shared store lock: held while adding objects that metadata will reference (builds).
    pub fn lock_store_shared(&self) -> Result<StoreLock> {
        let path = self.store_lock_path();
        let lock = acquire(
            &path,
            false,
            &format!("the store lock `{}`", path.display()),
        )?;
        Ok(StoreLock {
            _lock: lock,
            path,
            exclusive: false,
        })
    }

    /// Exclusive store lock: held by gc.
    pub fn lock_store_exclusive(&self) -> Result<StoreLock> {
        let path = self.store_lock_path();
        let lock = acquire(&path, true, &format!("the store lock `{}`", path.display()))?;
        Ok(StoreLock {
            _lock: lock,
            path,
            exclusive: true,
        })
    }

    /// Exclusive lock on environment names (`locks/names.lock`): held while checking that a
    /// name is free and assigning it, so two environments never get the same name.
    pub fn lock_names(&self) -> Result<StoreLock> {
        let path = self.locks_dir().join(NAMES_LOCK);
        let lock = acquire(&path, true, &format!("the names lock `{}`", path.display()))?;
        Ok(StoreLock {
            _lock: lock,
            path,
            exclusive: true,
        })
    }

    /// Exclusive lock for fetching one base image (`key` is its sha256, or a hash of its URL
    /// when the sha256 is not known yet): concurrent builds that need the same image download
    /// it once, the others wait and then find it cached.
    pub fn lock_image(&self, key: &str) -> Result<StoreLock> {
        let path = self.locks_dir().join(format!("image-{key}.lock"));
        let lock = acquire(&path, true, &format!("the image lock `{}`", path.display()))?;
        Ok(StoreLock {
            _lock: lock,
            path,
            exclusive: true,
        })
    }

    /// Exclusive lock of one environment, waiting if another process holds it.
    pub fn lock_env(&self, id: &EnvId) -> Result<EnvLock> {
        let path = self.env_lock_path(id);
        let what = format!("the lock of environment {}", id.short());
        let lock = acquire(&path, true, &what)?;
        Ok(EnvLock {
            _lock: lock,
            id: id.clone(),
        })
    }

    /// Exclusive lock of one environment, or `None` at once if someone holds it.
    pub fn try_lock_env(&self, id: &EnvId) -> Result<Option<EnvLock>> {
        let path = self.env_lock_path(id);
        let file = open_lock_file(&path)?;
        Ok(fsutil::try_flock(file, true, &path)?.map(|lock| EnvLock {
            _lock: lock,
            id: id.clone(),
        }))
    }

    /// Record a live session of `id` until the marker is dropped (or the process dies).
    pub fn mark_running(&self, id: &EnvId) -> Result<RunMarker> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let dir = self.run_dir().join(id.as_str());
        let mut last_err = None;
        // Retries cover gc removing an empty run/<id> between our mkdir and create, and a stale
        // marker of a dead process that had our pid.
        for _ in 0..16 {
            fsutil::ensure_dir(&dir)?;
            let name = format!(
                "{}-{}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            );
            let temp_name = format!(".{name}{TEMP_MARK}{}", fsutil::unique_suffix());
            let temp = match LockedTemp::create(&dir, &temp_name, 0o644) {
                Ok(t) => t,
                Err(StoreError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                    continue
                }
                Err(e) => return Err(e),
            };
            let path = dir.join(&name);
            match temp.persist_noreplace(&path) {
                Ok(lock) => {
                    return Ok(RunMarker {
                        path,
                        id: id.clone(),
                        file: lock,
                    })
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::AlreadyExists | io::ErrorKind::NotFound
                    ) =>
                {
                    last_err = Some(e);
                }
                Err(e) => return Err(StoreError::io(&path, "create the session marker", e)),
            }
        }
        let source = last_err.unwrap_or_else(|| io::ErrorKind::NotFound.into());
        Err(StoreError::io(dir, "create a session marker in", source))
    }

    /// How many live sessions `id` has (markers whose flock is held).
    pub fn running_sessions(&self, id: &EnvId) -> Result<usize> {
        let dir = self.run_dir().join(id.as_str());
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(StoreError::io(&dir, "list", e)),
        };
        let mut live = 0;
        for entry in entries {
            let entry = entry.at(&dir, "list")?;
            // Dot names are markers being created; they count once renamed.
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            if marker_is_live(&entry.path())? {
                live += 1;
            }
        }
        Ok(live)
    }

    /// The content of every session marker of `id` (see [`RunMarker::record`]), stale ones
    /// included: a program can outlive the karapace-tui process that started it, and a stale
    /// marker is then the only record of it. Check each record against the process table (pid
    /// and start time) before acting on it.
    pub fn session_records(&self, id: &EnvId) -> Result<Vec<String>> {
        let dir = self.run_dir().join(id.as_str());
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(StoreError::io(&dir, "list", e)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let name = entry
                .at(&dir, "list")?
                .file_name()
                .to_string_lossy()
                .into_owned();
            if !name.starts_with('.') {
                names.push(name);
            }
        }
        names.sort();
        let mut records = Vec::new();
        for name in names {
            let path = dir.join(name);
            match fs::read_to_string(&path) {
                Ok(text) => records.push(text),
                // Its session ended while we listed.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::io(&path, "read the session marker", e)),
            }
        }
        Ok(records)
    }

    /// Live session counts of every environment that has any. Reads `run/` only; never writes.
    pub fn running_envs(&self) -> Result<HashMap<EnvId, usize>> {
        let dir = self.run_dir();
        let mut running = HashMap::new();
        for entry in fs::read_dir(&dir).at(&dir, "list")? {
            let entry = entry.at(&dir, "list")?;
            let Ok(id) = entry.file_name().to_string_lossy().parse::<EnvId>() else {
                continue;
            };
            let count = self.running_sessions(&id)?;
            if count > 0 {
                running.insert(id, count);
            }
        }
        Ok(running)
    }
}

/// A marker is live while someone holds its flock. A shared probe is enough (a live marker is
/// held exclusively) and two probes never disturb each other.
pub(crate) fn marker_is_live(path: &Path) -> Result<bool> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(StoreError::io(path, "open the session marker", e)),
    };
    Ok(fsutil::try_flock(file, false, path)?.is_none())
}

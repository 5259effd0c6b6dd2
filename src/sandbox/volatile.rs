//! Reusing an overlay work directory that a `volatile` mount used.
//!
//! The root overlay is mounted with `volatile` (see `exec.rs`), after which the kernel leaves
//! `WORK/work/incompat/volatile` behind and refuses the next mount of that work directory
//! until it is removed, because after a crash the upper layer may miss writes that were never
//! synced (overlayfs.rst, "Volatile mount"). [`clear_marker`] removes it. It must never run
//! while a sandbox has the overlay mounted: the runtime calls it before a build step, and a
//! session's helper calls it under the environment's init record lock, only when it starts the
//! environment cold (`helper.rs`; a session that joins mounts nothing).
//!
//! A session's cold start does not delete anything on its way, though: [`set_aside`] renames
//! the last mount's `WORK/work` (with the marker in it) into `WORK/trash/`, the mount makes a
//! new one, and [`sweep`] empties the trash in a process of its own while the sandbox starts.
//! Deleting a directory frees its block, and on ext4 mounted with `discard` and without a
//! journal (the test machine's root file system) every freed block waits for the disk to
//! discard it (`ext4_free_blocks` → `blkdev_issue_discard`, synchronous without a journal,
//! seen in `perf` off-CPU stacks). The last mount leaves four such directories: `work`, and
//! `incompat`, `volatile` and `dirty` in it; overlayfs itself removes `work` on mount when it
//! is there (`ovl_workdir_create`). Renaming frees nothing.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What [`clear_marker`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Marker {
    /// No marker: the last mount was not volatile, or was cleared already.
    Absent,
    /// Removed. `from_earlier_boot`: it is older than this boot, so the machine went down
    /// while the overlay was mounted and its last writes may be lost.
    Cleared { from_earlier_boot: bool },
}

/// Why [`clear_marker`] failed: the path and the error.
#[derive(Debug)]
pub struct ClearError {
    pub path: PathBuf,
    pub source: io::Error,
}

/// The warning to show when the marker was older than this boot.
pub fn crash_warning(work: &Path) -> String {
    format!(
        "the machine went down while this environment was in use: files written inside it \
         (outside mounted host directories) in its last seconds may be lost; `karapace-tui \
         rebuild` gives a clean environment ({})",
        work.display()
    )
}

/// Removes the volatile marker of the overlay work directory `work`, if there is one.
pub fn clear_marker(work: &Path) -> Result<Marker, ClearError> {
    let inner = work.join("work");
    let incompat = inner.join("incompat");
    let marker = incompat.join("volatile");
    // overlayfs leaves work/work, work/work/incompat and the marker with mode 000, which only
    // root may search, list or empty as they are: an owner who is not root gives itself access
    // again, one level at a time, before it can even see whether the marker is there.
    super::check::open_overlay_work_dir(work);
    let Some(_) = accessible(&incompat)? else {
        return Ok(Marker::Absent);
    };
    let Some(meta) = accessible(&marker)? else {
        return Ok(Marker::Absent);
    };
    let from_earlier_boot = older_than_boot(&meta);
    // The kernel keeps a `dirty` entry in it.
    fs::remove_dir_all(&marker).map_err(|source| ClearError {
        path: marker.clone(),
        source,
    })?;
    match fs::remove_dir(&incompat) {
        Ok(()) => {}
        // Something else the kernel keeps there: leave it.
        Err(e) if e.raw_os_error() == Some(nix::libc::ENOTEMPTY) => {}
        Err(source) => {
            return Err(ClearError {
                path: incompat,
                source,
            })
        }
    }
    Ok(Marker::Cleared { from_earlier_boot })
}

/// What [`set_aside`] found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetAside {
    /// The marker, as [`clear_marker`] reports it (`Cleared` when it was moved away).
    pub marker: Marker,
    /// Whether there was a work directory to move into the trash for [`sweep`].
    pub moved: bool,
}

/// The trash of the overlay work directory `work`: what [`set_aside`] moved and [`sweep`] has
/// not removed yet. overlayfs manages only `work` (and `index`, which we do not use) in a work
/// directory, so the trash may live next to them, on the same file system as the rename needs.
pub fn trash(work: &Path) -> PathBuf {
    work.join("trash")
}

/// Moves the kernel's `WORK/work` of the last mount, with the volatile marker in it, into
/// [`trash`] under a name of its own, so that the next mount starts with none and nothing is
/// deleted on the way (see the module doc). The same conditions as for [`clear_marker`] apply.
pub fn set_aside(work: &Path) -> Result<SetAside, ClearError> {
    let inner = work.join("work");
    let incompat = inner.join("incompat");
    // Renaming a directory to another parent rewrites its `..` entry, which needs write
    // permission on it (rename(2), EACCES), and the marker's age needs search permission on
    // both levels above it: overlayfs leaves them with mode 000.
    let Some(_) = accessible(&inner)? else {
        return Ok(SetAside {
            marker: Marker::Absent,
            moved: false,
        });
    };
    let marker = match accessible(&incompat)? {
        None => Marker::Absent,
        Some(_) => match fs::symlink_metadata(incompat.join("volatile")) {
            Ok(meta) => Marker::Cleared {
                from_earlier_boot: older_than_boot(&meta),
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => Marker::Absent,
            Err(source) => {
                return Err(ClearError {
                    path: incompat.join("volatile"),
                    source,
                })
            }
        },
    };
    let trash = trash(work);
    match fs::create_dir(&trash) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(source) => {
            return Err(ClearError {
                path: trash,
                source,
            })
        }
    }
    // Unique among the sessions of this environment: one cold start at a time holds the
    // init record's lock, and a pid is not reused within the same nanosecond.
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let to = trash.join(format!("work-{}-{stamp}", std::process::id()));
    fs::rename(&inner, &to).map_err(|source| ClearError {
        path: inner.clone(),
        source,
    })?;
    Ok(SetAside {
        marker,
        moved: true,
    })
}

/// Removes everything in [`trash`]`(work)`. Two sweeps may run at once (a session that
/// started cold right after another one ended), so whatever disappears during the walk is
/// taken as removed by the other.
pub fn sweep(work: &Path) -> Result<(), ClearError> {
    let trash = trash(work);
    let entries = match fs::read_dir(&trash) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(ClearError {
                path: trash,
                source,
            })
        }
    };
    for entry in entries {
        let entry = entry.map_err(|source| ClearError {
            path: trash.clone(),
            source,
        })?;
        remove_all(&entry.path())?;
    }
    Ok(())
}

/// The warning when [`sweep`] fails: the session goes on, and the next cold start tries again.
pub fn sweep_warning(e: &ClearError) -> String {
    format!(
        "could not remove {} (an overlay work directory of an earlier session): {}; the next \
         start of the environment tries again, or remove it by hand",
        e.path.display(),
        e.source
    )
}

/// Removes `path` and everything under it; directories the owner may not enter or empty (mode
/// 000, as overlayfs leaves them) are opened to the owner first. What is gone already is fine.
fn remove_all(path: &Path) -> Result<(), ClearError> {
    let failed = |source| ClearError {
        path: path.to_path_buf(),
        source,
    };
    let gone = |e: &io::Error| e.kind() == io::ErrorKind::NotFound;
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if gone(&e) => return Ok(()),
        Err(e) => return Err(failed(e)),
    };
    if !meta.is_dir() {
        return match fs::remove_file(path) {
            Err(e) if !gone(&e) => Err(failed(e)),
            _ => Ok(()),
        };
    }
    let mode = meta.permissions().mode();
    if mode & 0o700 != 0o700 {
        match fs::set_permissions(path, fs::Permissions::from_mode(mode | 0o700)) {
            Err(e) if gone(&e) => return Ok(()),
            Err(e) => return Err(failed(e)),
            Ok(()) => {}
        }
    }
    let entries = match fs::read_dir(path) {
        Ok(entries) => entries,
        Err(e) if gone(&e) => return Ok(()),
        Err(e) => return Err(failed(e)),
    };
    for entry in entries {
        match entry {
            Ok(entry) => remove_all(&entry.path())?,
            Err(e) if gone(&e) => {}
            Err(e) => return Err(failed(e)),
        }
    }
    match fs::remove_dir(path) {
        Err(e) if !gone(&e) => Err(failed(e)),
        _ => Ok(()),
    }
}

/// The directory `dir` made searchable and writable by its owner (mode 0700), with its
/// metadata from before; `None` if there is nothing there.
fn accessible(dir: &Path) -> Result<Option<fs::Metadata>, ClearError> {
    let failed = |source| ClearError {
        path: dir.to_path_buf(),
        source,
    };
    let meta = match fs::symlink_metadata(dir) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(failed(e)),
    };
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(failed)?;
    Ok(Some(meta))
}

/// Whether `meta` was last modified before this boot began (false when either is unknown).
fn older_than_boot(meta: &fs::Metadata) -> bool {
    match (meta.modified(), boot_time()) {
        (Ok(modified), Some(boot)) => modified < boot,
        _ => false,
    }
}

/// When this boot began (`btime` in /proc/stat, proc(5)).
fn boot_time() -> Option<SystemTime> {
    let stat = fs::read_to_string("/proc/stat").ok()?;
    let secs: u64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_is_removed_with_its_incompat_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let work = dir.path().join("work");
        assert_eq!(clear_marker(&work).expect("clear"), Marker::Absent);
        let marker = work.join("work/incompat/volatile");
        fs::create_dir_all(marker.join("dirty")).expect("mkdir");
        // As overlayfs leaves them.
        for dir in ["work/incompat/volatile", "work/incompat", "work"] {
            fs::set_permissions(work.join(dir), fs::Permissions::from_mode(0o000)).expect("chmod");
        }
        assert_eq!(
            clear_marker(&work).expect("clear"),
            Marker::Cleared {
                from_earlier_boot: false
            }
        );
        assert!(!work.join("work/incompat").exists());
        assert!(work.join("work").is_dir(), "the work directory stays");
    }

    /// `WORK/work` with the marker in it, every level with mode 000, as overlayfs leaves them.
    fn as_a_volatile_mount_leaves(work: &Path) {
        fs::create_dir_all(work.join("work/incompat/volatile/dirty")).expect("mkdir");
        for dir in [
            "work/incompat/volatile/dirty",
            "work/incompat/volatile",
            "work/incompat",
            "work",
        ] {
            fs::set_permissions(work.join(dir), fs::Permissions::from_mode(0o000)).expect("chmod");
        }
    }

    fn trash_entries(work: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(trash(work))
            .expect("the trash")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn the_last_mounts_work_directory_is_set_aside_whole_and_swept_later() {
        let dir = tempfile::tempdir().expect("tempdir");
        let work = dir.path().join("work");
        fs::create_dir(&work).expect("mkdir");
        as_a_volatile_mount_leaves(&work);

        let set = set_aside(&work).expect("set aside");
        assert_eq!(
            set,
            SetAside {
                marker: Marker::Cleared {
                    from_earlier_boot: false
                },
                moved: true
            }
        );
        assert!(
            !work.join("work").exists(),
            "the next mount starts without one"
        );
        let entries = trash_entries(&work);
        assert_eq!(entries.len(), 1, "{entries:?}");
        let moved = trash(&work).join(&entries[0]);
        assert!(
            moved.join("incompat/volatile/dirty").is_dir(),
            "moved whole"
        );

        // A leftover of an earlier sweep that did not finish, and a plain file.
        let leftover = trash(&work).join("work-1-2");
        fs::create_dir_all(leftover.join("a/b")).expect("mkdir");
        fs::write(leftover.join("a/b/file"), "x").expect("write");
        fs::set_permissions(leftover.join("a"), fs::Permissions::from_mode(0o000)).expect("chmod");
        sweep(&work).expect("sweep");
        assert!(
            trash_entries(&work).is_empty(),
            "{:?}",
            trash_entries(&work)
        );
        sweep(&work).expect("an empty trash");
    }

    #[test]
    fn a_failed_sweep_names_the_path_and_what_happens_next() {
        let e = ClearError {
            path: PathBuf::from("/store/envs/x/work/trash/work-1-2"),
            source: io::Error::from(io::ErrorKind::PermissionDenied),
        };
        let text = sweep_warning(&e);
        assert!(text.contains("/store/envs/x/work/trash/work-1-2"), "{text}");
        assert!(
            text.contains("next start of the environment tries again"),
            "{text}"
        );
        assert!(!text.contains("  "), "a broken line continuation: {text}");
    }

    #[test]
    fn nothing_is_set_aside_before_the_first_mount_and_an_old_marker_is_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let work = dir.path().join("work");
        fs::create_dir(&work).expect("mkdir");
        assert_eq!(
            set_aside(&work).expect("set aside"),
            SetAside {
                marker: Marker::Absent,
                moved: false
            }
        );
        assert!(!trash(&work).exists(), "no trash without a work directory");
        sweep(&work).expect("no trash at all");

        // A marker from before this boot: the machine went down during the last mount.
        fs::create_dir_all(work.join("work/incompat/volatile")).expect("mkdir");
        let marker = fs::File::open(work.join("work/incompat/volatile")).expect("open");
        marker
            .set_modified(UNIX_EPOCH + Duration::from_secs(1))
            .expect("set the marker's time");
        for dir in ["work/incompat/volatile", "work/incompat", "work"] {
            fs::set_permissions(work.join(dir), fs::Permissions::from_mode(0o000)).expect("chmod");
        }
        assert_eq!(
            set_aside(&work).expect("set aside").marker,
            Marker::Cleared {
                from_earlier_boot: true
            }
        );
    }
}

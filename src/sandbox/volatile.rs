//! Reusing an overlay work directory that a `volatile` mount used.
//!
//! The root overlay is mounted with `volatile` (see `exec.rs`), after which the kernel leaves
//! `WORK/work/incompat/volatile` behind and refuses the next mount of that work directory
//! until it is removed, because after a crash the upper layer may miss writes that were never
//! synced (overlayfs.rst, "Volatile mount"). [`clear_marker`] removes it. It must never run
//! while a sandbox has the overlay mounted: the runtime calls it before a build step, and a
//! session's helper calls it under the environment's init record lock, only when it starts the
//! environment cold (`helper.rs`; a session that joins mounts nothing).

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
    let from_earlier_boot = match (meta.modified(), boot_time()) {
        (Ok(modified), Some(boot)) => modified < boot,
        _ => false,
    };
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
}

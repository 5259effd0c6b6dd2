//! Safe, streaming unpacking of a base image's (already decompressed) tar stream into an empty
//! directory, computing the tree digest ([`super::tree`]) on the way.
//!
//! Invariants, each with a test that tries to break it (`unpack_tests.rs`):
//! - Nothing is written outside `dest`. Entry names and hard link targets must be relative with
//!   no `..` component, NUL or empty name (`./` prefixes are fine); every existing parent
//!   component is checked with `lstat` and must be a real directory, never a symlink; the last
//!   component is always created fresh (`O_CREAT|O_EXCL|O_NOFOLLOW`, `mkdir`, `symlink`, `link`,
//!   `mknod`), after unlinking whatever a previous entry left there, so nothing is written
//!   through a symlink. Symlinks are created with their target as written and never followed.
//!   This relies on nobody else changing `dest` while we unpack (it lives in the user's store).
//! - Hard links must name an entry this stream already unpacked that is neither a directory nor
//!   a symlink.
//! - Memory does not grow with file sizes: content is copied through one 64 KiB buffer. It grows
//!   with the number of entries (the digest records and the directory list).
//! - Modes are exact, set-id and sticky bits included: a file's mode is set after its content,
//!   owner and xattrs (chown clears set-id bits and file capabilities); directories are created
//!   `0700` and get their final mode and mtime at the end, deepest first, so a read-only
//!   directory does not block its own children.
//! - Device nodes are never created (the sandbox mounts its own /dev) and are listed in
//!   [`UnpackReport::skipped`], so root and rootless unpacks give the same tree.
//! - Rootless ([`UnpackOptions::rootless`]): owners are left as the current user. Refused
//!   xattrs are listed in [`UnpackReport::skipped`].
//! - Names longer than Linux allows (`NAME_MAX` per component, `PATH_MAX` in all) are refused
//!   with [`UnpackError::NameTooLong`].
//!
//! A path named twice: the later entry wins (a directory replaced by a non-directory is removed
//! with its contents). The root entry (`./`) is accepted and leaves `dest`'s own mode and owner
//! alone. On error `dest` is left partly filled, with directories still `0700`, for the caller
//! to remove.

use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use nix::errno::Errno;

use crate::types::Digest;

#[path = "unpack_entry.rs"]
mod entry;
#[path = "unpack_write.rs"]
mod write;
use write::Unpacker;

/// Linux limits for one path component and a whole path (including its NUL).
const NAME_MAX: usize = 255;
const PATH_MAX: usize = 4096;
const COPY_BUF: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnpackOptions {
    /// Running without real root: do not chown.
    pub rootless: bool,
    /// Apply xattrs from PAX `SCHILY.xattr.*` records where the file system allows. Failures
    /// with `EPERM`, `EACCES` or `EOPNOTSUPP` (a rootless `trusted.*`/`security.*` xattr, a
    /// `user.*` xattr on a symlink, a file system without xattrs) are recorded, not fatal.
    pub xattrs: bool,
}

impl UnpackOptions {
    /// Rootless unless the effective uid is 0; xattrs on.
    pub fn for_current_user() -> UnpackOptions {
        UnpackOptions {
            rootless: !nix::unistd::geteuid().is_root(),
            xattrs: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpackReport {
    /// Tar members that name a file-system entry (PAX and GNU metadata members not counted),
    /// including the root entry and skipped ones.
    pub entries: u64,
    /// Regular files written (hard links not counted).
    pub files: u64,
    /// Content bytes written to regular files.
    pub bytes: u64,
    pub skipped: Vec<Skipped>,
    /// Equals [`super::tree::tree_digest`] of `dest` right after unpacking.
    pub tree_digest: Digest,
    /// Per-entry record hashes, to name what changed if the tree is later tampered with.
    pub index: super::tree::EntryIndex,
}

/// Something in the stream that was not (fully) applied, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Relative to `dest`.
    pub path: PathBuf,
    pub why: SkipReason,
}

/// `dev/null: device node not created: the sandbox makes its own /dev`.
impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.why)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SkipReason {
    #[error("device node not created: the sandbox makes its own /dev")]
    DeviceNode,
    #[error("hard link to `{}`, which was skipped", .target.display())]
    LinkToSkipped { target: PathBuf },
    #[error("extended attribute `{name}` not set: {error}")]
    Xattr { name: String, error: String },
}

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("cannot unpack into {}: {reason}", .path.display())]
    Destination { path: PathBuf, reason: &'static str },
    /// The entry would escape `dest`, write through a link, or cannot be placed safely.
    #[error("refusing tar entry `{entry}`: {reason}")]
    Hostile { entry: String, reason: String },
    #[error(
        "tar entry `{entry}` has a name of {len} bytes, too long for this file system \
         ({NAME_MAX} bytes per component, {PATH_MAX} for the whole path)"
    )]
    NameTooLong { entry: String, len: usize },
    #[error("tar entry `{entry}` is a {what}, which is not supported")]
    Unsupported { entry: String, what: String },
    #[error("cannot {op} {}", .path.display())]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("cannot read the tar stream{}", at_entry(.entry))]
    Archive {
        entry: Option<String>,
        #[source]
        source: io::Error,
    },
}

fn at_entry(entry: &Option<String>) -> String {
    entry
        .as_ref()
        .map(|e| format!(" at entry `{e}`"))
        .unwrap_or_default()
}

pub type Result<T, E = UnpackError> = std::result::Result<T, E>;

fn io_err<'p>(path: &'p Path, op: &'static str) -> impl FnOnce(io::Error) -> UnpackError + 'p {
    move |source| UnpackError::Io {
        path: path.to_path_buf(),
        op,
        source,
    }
}

fn nix_err<'p>(path: &'p Path, op: &'static str) -> impl FnOnce(Errno) -> UnpackError + 'p {
    move |errno| io_err(path, op)(io::Error::from(errno))
}

fn hostile(entry: &str, reason: impl Into<String>) -> UnpackError {
    UnpackError::Hostile {
        entry: entry.to_string(),
        reason: reason.into(),
    }
}

/// Unpack a plain (already decompressed) tar stream into `dest`, which must be an existing
/// empty directory. Streams: memory does not grow with file sizes (only with the number of
/// entries, for the digest). After the end-of-archive marker the rest of `reader` is read and
/// discarded, so a decompressor underneath gets to check its trailer.
pub fn unpack(reader: &mut dyn Read, dest: &Path, opts: &UnpackOptions) -> Result<UnpackReport> {
    check_destination(dest)?;
    let mut archive = tar::Archive::new(super::pax_fix::PaxRecordFix::new(reader));
    let mut un = Unpacker::new(dest, opts);
    let entries = archive.entries().map_err(|source| UnpackError::Archive {
        entry: None,
        source,
    })?;
    for entry in entries {
        let mut entry = entry.map_err(|source| UnpackError::Archive {
            entry: None,
            source,
        })?;
        un.unpack_entry(&mut entry)?;
    }
    un.finish_dirs()?;
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(|source| UnpackError::Archive {
        entry: None,
        source,
    })?;
    Ok(un.into_report())
}

fn check_destination(dest: &Path) -> Result<()> {
    let bad = |reason| UnpackError::Destination {
        path: dest.to_path_buf(),
        reason,
    };
    let meta = fs::symlink_metadata(dest).map_err(io_err(dest, "inspect"))?;
    if !meta.is_dir() {
        return Err(bad("not a directory"));
    }
    let mut listing = fs::read_dir(dest).map_err(io_err(dest, "read directory"))?;
    if listing.next().is_some() {
        return Err(bad("the directory is not empty"));
    }
    Ok(())
}

#[cfg(test)]
#[path = "unpack_tests.rs"]
mod tests;

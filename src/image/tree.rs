//! The tree digest of an unpacked root file system: one blake3 hash that changes whenever an
//! entry's path, file type, permission bits, content, symlink target or device numbers change,
//! and does not change with owners, timestamps or extended attributes (a rootless unpack cannot
//! keep owners, and mtimes say nothing about what the tree does).
//!
//! Hard links are not visible in the digest: two names for one inode hash like two files with
//! the same content and mode. The root directory itself (its mode and owner) is excluded.
//!
//! # Encoding (version 1)
//!
//! Another tool can recompute the digest from this description alone. All integers are
//! little-endian.
//!
//! ```text
//! digest  = BLAKE3( "karapace-tree-v1\n" || record_1 || ... || record_n )
//! record  = u64(len(path)) || path || tag || u32(mode) || payload
//! ```
//!
//! - `path`: the entry's path relative to the root, as raw bytes, components joined by a single
//!   `/`, with no leading `./` or `/` and no trailing `/` (`etc/passwd`, `usr/bin`).
//! - Records are sorted by `path` bytes (unsigned byte-wise comparison; a path sorts before any
//!   longer path it is a prefix of), one record per path.
//! - `mode`: `st_mode & 0o7777` (permission bits plus set-uid, set-gid and sticky); always 0 for
//!   symbolic links, whose permission bits mean nothing on Linux.
//! - `tag` (one byte) and `payload`:
//!
//! | tag   | type              | payload                                          |
//! |-------|-------------------|--------------------------------------------------|
//! | `f`   | regular file      | 32 bytes: BLAKE3 of the file's content           |
//! | `d`   | directory         | none                                             |
//! | `l`   | symbolic link     | `u64(len(target))`, then the target's raw bytes  |
//! | `c`   | character device  | `u64(major)`, then `u64(minor)`                  |
//! | `b`   | block device      | `u64(major)`, then `u64(minor)`                  |
//! | `p`   | FIFO              | none                                             |
//! | `s`   | socket            | none                                             |
//!
//! Every record is self-delimiting (lengths before variable fields, fixed-size payloads decided
//! by the tag), so no two different trees give the same byte stream.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::{self, File, Metadata};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use crate::types::Digest;

/// The first bytes hashed, naming the encoding and its version.
pub const TREE_DIGEST_DOMAIN: &[u8] = b"karapace-tree-v1\n";

/// What an entry is, with the type-specific part of its record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TreeKind {
    /// A regular file and the blake3 hash of its content.
    File {
        content: [u8; 32],
    },
    Dir,
    /// A symbolic link and its target, byte for byte.
    Symlink {
        target: Vec<u8>,
    },
    CharDevice {
        major: u64,
        minor: u64,
    },
    BlockDevice {
        major: u64,
        minor: u64,
    },
    Fifo,
    Socket,
}

impl TreeKind {
    fn tag(&self) -> u8 {
        match self {
            TreeKind::File { .. } => b'f',
            TreeKind::Dir => b'd',
            TreeKind::Symlink { .. } => b'l',
            TreeKind::CharDevice { .. } => b'c',
            TreeKind::BlockDevice { .. } => b'b',
            TreeKind::Fifo => b'p',
            TreeKind::Socket => b's',
        }
    }
}

/// One entry of a tree. `path` is relative to the root; only its normal components count
/// (`./a//b/` is the same entry as `a/b`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeRecord {
    pub path: PathBuf,
    pub kind: TreeKind,
    /// `st_mode` or a tar mode; only the low 12 bits are kept (and none for symlinks).
    pub mode: u32,
}

/// Collects records in any order and hashes them sorted. A later record for a path replaces an
/// earlier one, which is what a tar stream that names a path twice needs.
#[derive(Debug, Default)]
pub struct TreeHasher {
    records: BTreeMap<Vec<u8>, (TreeKind, u32)>,
}

impl TreeHasher {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, rec: TreeRecord) {
        let mode = match rec.kind {
            TreeKind::Symlink { .. } => 0,
            _ => rec.mode & 0o7777,
        };
        self.records.insert(path_key(&rec.path), (rec.kind, mode));
    }

    /// The record held for `path`, if any (used to copy a hard link target's record).
    pub fn get(&self, path: &Path) -> Option<TreeRecord> {
        self.records
            .get(&path_key(path))
            .map(|(kind, mode)| TreeRecord {
                path: path.to_path_buf(),
                kind: kind.clone(),
                mode: *mode,
            })
    }

    /// Forget `path` and every record below it (the entry was removed or replaced).
    pub fn remove(&mut self, path: &Path) {
        remove_subtree(&mut self.records, &path_key(path));
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub fn finish(self) -> Digest {
        let mut hasher = blake3::Hasher::new();
        hasher.update(TREE_DIGEST_DOMAIN);
        for (path, (kind, mode)) in &self.records {
            hash_record(&mut hasher, path, kind, *mode);
        }
        Digest::from_hash(hasher.finalize())
    }

    /// The tree digest and an index of every entry: its path and the blake3 of its record.
    /// The index is what lets `verify-store` name the entries that changed, not just say that
    /// the digest differs.
    pub fn finish_with_index(self) -> (Digest, EntryIndex) {
        let index = EntryIndex(
            self.records
                .iter()
                .map(|(path, (kind, mode))| {
                    let mut h = blake3::Hasher::new();
                    hash_record(&mut h, path, kind, *mode);
                    (path.clone(), *h.finalize().as_bytes())
                })
                .collect(),
        );
        (self.finish(), index)
    }
}

/// Feed one record, in the encoding described in the module doc.
fn hash_record(hasher: &mut blake3::Hasher, path: &[u8], kind: &TreeKind, mode: u32) {
    hasher.update(&(path.len() as u64).to_le_bytes());
    hasher.update(path);
    hasher.update(&[kind.tag()]);
    hasher.update(&mode.to_le_bytes());
    match kind {
        TreeKind::File { content } => {
            hasher.update(content);
        }
        TreeKind::Symlink { target } => {
            hasher.update(&(target.len() as u64).to_le_bytes());
            hasher.update(target);
        }
        TreeKind::CharDevice { major, minor } | TreeKind::BlockDevice { major, minor } => {
            hasher.update(&major.to_le_bytes());
            hasher.update(&minor.to_le_bytes());
        }
        TreeKind::Dir | TreeKind::Fifo | TreeKind::Socket => {}
    }
}

/// Every entry of a tree, sorted by path: (path bytes, blake3 of its record).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntryIndex(pub Vec<(Vec<u8>, [u8; 32])>);

impl EntryIndex {
    /// Binary form: per entry, u64le(path length) ‖ path ‖ 32-byte record hash.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (path, hash) in &self.0 {
            out.extend_from_slice(&(path.len() as u64).to_le_bytes());
            out.extend_from_slice(path);
            out.extend_from_slice(hash);
        }
        out
    }

    /// The inverse of [`EntryIndex::encode`]; `None` if the bytes are not such an index.
    pub fn decode(mut bytes: &[u8]) -> Option<EntryIndex> {
        let mut entries = Vec::new();
        while !bytes.is_empty() {
            let (len, rest) = bytes.split_first_chunk::<8>()?;
            let len = usize::try_from(u64::from_le_bytes(*len)).ok()?;
            if rest.len() < len.checked_add(32)? {
                return None;
            }
            let (path, rest) = rest.split_at(len);
            let (hash, rest) = rest.split_first_chunk::<32>()?;
            entries.push((path.to_vec(), *hash));
            bytes = rest;
        }
        Some(EntryIndex(entries))
    }

    /// Paths that differ between `self` (recorded) and `now` (on disk): changed, missing, or
    /// added, in path order.
    pub fn differences(&self, now: &EntryIndex) -> Vec<String> {
        let recorded: BTreeMap<&[u8], &[u8; 32]> =
            self.0.iter().map(|(p, h)| (p.as_slice(), h)).collect();
        let current: BTreeMap<&[u8], &[u8; 32]> =
            now.0.iter().map(|(p, h)| (p.as_slice(), h)).collect();
        let mut out = Vec::new();
        for (path, hash) in &recorded {
            let name = String::from_utf8_lossy(path);
            match current.get(path) {
                None => out.push(format!("{name} (missing)")),
                Some(h) if h != hash => out.push(format!("{name} (changed)")),
                Some(_) => {}
            }
        }
        for path in current.keys().filter(|p| !recorded.contains_key(*p)) {
            out.push(format!("{} (added)", String::from_utf8_lossy(path)));
        }
        out
    }
}

/// The record key of a path: its normal components joined by `/`.
pub(crate) fn path_key(path: &Path) -> Vec<u8> {
    let mut key = Vec::with_capacity(path.as_os_str().len());
    for comp in path.components() {
        if let Component::Normal(name) = comp {
            if !key.is_empty() {
                key.push(b'/');
            }
            key.extend_from_slice(name.as_bytes());
        }
    }
    key
}

/// Remove `key` and every key below it (`key/...`) from a map keyed by path bytes.
pub(crate) fn remove_subtree<V>(map: &mut BTreeMap<Vec<u8>, V>, key: &[u8]) {
    map.remove(key);
    // Keys below `key` are exactly those in [key + "/", key + "0"): '0' follows '/' in ASCII.
    let mut lo = key.to_vec();
    lo.push(b'/');
    let mut hi = key.to_vec();
    hi.push(b'0');
    let below: Vec<Vec<u8>> = map.range(lo..hi).map(|(k, _)| k.clone()).collect();
    for k in below {
        map.remove(&k);
    }
}

/// Digest of the tree under `root` (see the module doc for the encoding). Symbolic links are
/// read, never followed. Needs read access to every file and directory in the tree.
pub fn tree_digest(root: &Path) -> io::Result<Digest> {
    Ok(tree_hasher(root)?.finish())
}

/// The records of the tree under `root`, for [`TreeHasher::finish`] or
/// [`TreeHasher::finish_with_index`].
pub fn tree_hasher(root: &Path) -> io::Result<TreeHasher> {
    let mut hasher = TreeHasher::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        let entries = fs::read_dir(&dir).map_err(|e| annotate(e, "read directory", &dir))?;
        for entry in entries {
            let entry = entry.map_err(|e| annotate(e, "read directory", &dir))?;
            let child = rel.join(entry.file_name());
            let path = entry.path();
            // DirEntry::metadata does not follow symlinks.
            let meta = entry
                .metadata()
                .map_err(|e| annotate(e, "inspect", &path))?;
            let kind = kind_of(&path, &meta)?;
            if kind == TreeKind::Dir {
                stack.push(child.clone());
            }
            hasher.add(TreeRecord {
                path: child,
                kind,
                mode: meta.mode(),
            });
        }
    }
    Ok(hasher)
}

/// The [`TreeKind`] of an entry whose `symlink_metadata` is `meta`, hashing file content.
pub fn kind_of(path: &Path, meta: &Metadata) -> io::Result<TreeKind> {
    let ft = meta.file_type();
    let dev = || {
        let rdev = meta.rdev();
        (nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev))
    };
    Ok(if ft.is_dir() {
        TreeKind::Dir
    } else if ft.is_symlink() {
        let target = fs::read_link(path).map_err(|e| annotate(e, "read link", path))?;
        TreeKind::Symlink {
            target: target.into_os_string().into_encoded_bytes(),
        }
    } else if ft.is_file() {
        TreeKind::File {
            content: hash_file(path)?,
        }
    } else if ft.is_char_device() {
        let (major, minor) = dev();
        TreeKind::CharDevice { major, minor }
    } else if ft.is_block_device() {
        let (major, minor) = dev();
        TreeKind::BlockDevice { major, minor }
    } else if ft.is_fifo() {
        TreeKind::Fifo
    } else {
        TreeKind::Socket
    })
}

fn hash_file(path: &Path) -> io::Result<[u8; 32]> {
    // O_NOFOLLOW: the entry was a regular file when listed; never hash what a swapped-in
    // symlink points at.
    let file = File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| annotate(e, "open", path))?;
    let mut hasher = blake3::Hasher::new();
    hasher
        .update_reader(file)
        .map_err(|e| annotate(e, "read", path))?;
    Ok(*hasher.finalize().as_bytes())
}

fn annotate(e: io::Error, op: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("cannot {op} {}: {e}", path.display()))
}

/// A path from raw bytes (Unix paths are bytes).
pub(crate) fn bytes_path(bytes: &[u8]) -> &Path {
    Path::new(OsStr::from_bytes(bytes))
}

#[cfg(test)]
#[path = "tree_tests.rs"]
mod tests;

#[cfg(test)]
mod index_tests {
    use super::*;

    #[test]
    fn index_round_trips_and_names_changes() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir(dir.path().join("etc")).expect("mkdir");
        fs::write(dir.path().join("etc/a"), "one").expect("write");
        fs::write(dir.path().join("etc/b"), "two").expect("write");
        let (digest, before) = tree_hasher(dir.path()).expect("hash").finish_with_index();
        assert_eq!(digest, tree_digest(dir.path()).expect("digest"));
        assert_eq!(EntryIndex::decode(&before.encode()), Some(before.clone()));
        assert_eq!(EntryIndex::decode(&before.encode()[..5]), None);
        fs::write(dir.path().join("etc/a"), "uno").expect("write");
        fs::remove_file(dir.path().join("etc/b")).expect("rm");
        fs::write(dir.path().join("etc/c"), "three").expect("write");
        let (_, after) = tree_hasher(dir.path()).expect("hash").finish_with_index();
        assert_eq!(
            before.differences(&after),
            vec!["etc/a (changed)", "etc/b (missing)", "etc/c (added)"]
        );
    }
}

//! The image cache inside the store: `images/<sha256>/{rootfs/, image.json}`.
//!
//! An entry is keyed by the verified sha256 of the archive it was unpacked from. It is built in
//! `images/.tmp-<unique>/` and renamed into place only once the archive verified and the tree
//! is complete, so a directory named by a sha256 is always a whole image: a crash leaves at most
//! a `.tmp-` directory, which `gc` removes. `image.json` is a checksummed record (the store's
//! envelope) holding the tree digest, which `verify-store` recomputes to catch tampering.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ImageError;
use crate::store::{decode_checksummed, encode_checksummed, Store, StoreError};
use crate::types::Digest;

const RECORD: &str = "image.json";
/// Per-entry record hashes (`tree::EntryIndex`), used to name tampered files.
const INDEX: &str = "tree.idx";
const TMP_PREFIX: &str = ".tmp-";

/// What is known about a cached image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageRecord {
    /// sha256 of the archive (hex); also the cache key.
    pub sha256: String,
    /// Size of the archive in bytes.
    pub size: u64,
    /// blake3 of the archive bytes.
    pub blake3: Digest,
    /// Digest of the unpacked tree (see `image::tree`).
    pub tree_digest: Digest,
    /// `ImageRef::canonical()` of the reference it was fetched for.
    pub reference: String,
    /// The URL or file it came from.
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// The server's build serial, or `-` for custom images.
    pub build: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_path: Option<String>,
    pub fetched_at: u64,
    /// Entries that were not unpacked, and why (device nodes, refused xattrs …).
    #[serde(default)]
    pub skipped: Vec<String>,
}

/// One cache entry by sha256, with its record or why the record could not be read.
pub type CacheEntry = (String, Result<ImageRecord, ImageError>);

pub struct ImageCache {
    dir: PathBuf,
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ImageError {
    let path = path.to_path_buf();
    move |source| ImageError::Io { op, path, source }
}

/// A sha256 in lower-case hex: the only names of cache entries.
pub fn is_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl ImageCache {
    pub fn new(store: &Store) -> ImageCache {
        ImageCache {
            dir: store.images_dir(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn entry_dir(&self, sha256: &str) -> PathBuf {
        self.dir.join(sha256)
    }

    pub fn rootfs(&self, sha256: &str) -> PathBuf {
        self.entry_dir(sha256).join("rootfs")
    }

    /// The record of a cached image; `None` when it is not cached. A damaged record is an
    /// error, never a miss (a miss would silently re-download over evidence of tampering).
    pub fn get(&self, sha256: &str) -> Result<Option<ImageRecord>, ImageError> {
        if !is_sha256(sha256) {
            return Ok(None);
        }
        let path = self.entry_dir(sha256).join(RECORD);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(ImageError::Io {
                    op: "read the image record",
                    path,
                    source,
                })
            }
        };
        let record: ImageRecord = decode_checksummed(&path, &bytes)?;
        if record.sha256 != sha256 {
            return Err(ImageError::Store(StoreError::Corrupt {
                path,
                detail: format!("the record is for image {}", record.sha256),
            }));
        }
        Ok(Some(record))
    }

    /// The names and paths in `images/` (none when it does not exist yet).
    fn dir_entries(&self) -> Result<Vec<(String, PathBuf)>, ImageError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(ImageError::Io {
                    op: "list",
                    path: self.dir.clone(),
                    source,
                })
            }
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_err("list", &self.dir))?;
            out.push((
                entry.file_name().to_string_lossy().into_owned(),
                entry.path(),
            ));
        }
        Ok(out)
    }

    /// Every cache entry, including damaged ones (as errors), sorted by sha256.
    pub fn list(&self) -> Result<Vec<CacheEntry>, ImageError> {
        let mut out = Vec::new();
        for (name, path) in self.dir_entries()? {
            if is_sha256(&name) {
                let record = self.get(&name).and_then(|r| {
                    r.ok_or_else(|| {
                        ImageError::Store(StoreError::Corrupt {
                            path,
                            detail: "cache entry without an image.json record".to_string(),
                        })
                    })
                });
                out.push((name, record));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Leftover temp directories of fetches that died (for gc, which holds the store lock
    /// exclusively, so none of them can belong to a live fetch).
    pub fn temp_dirs(&self) -> Result<Vec<PathBuf>, ImageError> {
        Ok(self
            .dir_entries()?
            .into_iter()
            .filter(|(name, _)| name.starts_with(TMP_PREFIX))
            .map(|(_, path)| path)
            .collect())
    }

    /// The newest cached image fetched for `reference` (offline resolution of an alias).
    pub fn newest_for(&self, reference: &str) -> Result<Option<ImageRecord>, ImageError> {
        let mut best: Option<ImageRecord> = None;
        for (_, record) in self.list()? {
            let record = record?;
            if record.reference == reference
                && best
                    .as_ref()
                    .is_none_or(|b| (&record.build, record.fetched_at) > (&b.build, b.fetched_at))
            {
                best = Some(record);
            }
        }
        Ok(best)
    }

    /// A fresh temp directory for one fetch; removed on drop unless installed.
    pub fn temp_dir(&self) -> Result<TempEntry, ImageError> {
        fs::create_dir_all(&self.dir).map_err(io_err("create", &self.dir))?;
        let path = self
            .dir
            .join(format!("{TMP_PREFIX}{}", crate::fsutil::unique_suffix()));
        fs::create_dir(&path).map_err(io_err("create", &path))?;
        Ok(TempEntry { path, keep: false })
    }

    /// Write the record into the temp entry and rename it into place. If another fetch put the
    /// same image in place meanwhile, this copy is dropped and theirs is kept.
    pub fn install(
        &self,
        mut temp: TempEntry,
        record: &ImageRecord,
        index: &super::tree::EntryIndex,
    ) -> Result<(), ImageError> {
        let index_path = temp.path.join(INDEX);
        crate::fsutil::write_atomic(&index_path, &index.encode())
            .map_err(io_err("write the image index", &index_path))?;
        let record_path = temp.path.join(RECORD);
        let bytes = encode_checksummed(record, &record_path)?;
        crate::fsutil::write_atomic(&record_path, &bytes)
            .map_err(io_err("write the image record", &record_path))?;
        crate::crashpoint::hit("image: record written");
        let dest = self.entry_dir(&record.sha256);
        if dest.exists() {
            return Ok(()); // `temp` is removed on drop
        }
        fs::rename(&temp.path, &dest).map_err(io_err("move the image into place", &dest))?;
        temp.keep = true;
        crate::fsutil::fsync_dir(&self.dir).map_err(io_err("fsync", &self.dir))?;
        crate::crashpoint::hit("image: installed");
        Ok(())
    }

    /// The recorded entry index of a cached image, if it has a readable one.
    pub fn index(&self, sha256: &str) -> Option<super::tree::EntryIndex> {
        let bytes = fs::read(self.entry_dir(sha256).join(INDEX)).ok()?;
        super::tree::EntryIndex::decode(&bytes)
    }

    /// Remove a cached image; returns the bytes it used.
    pub fn remove(&self, sha256: &str) -> Result<u64, ImageError> {
        let dir = self.entry_dir(sha256);
        let bytes = crate::fsutil::tree_size(&dir).map_err(io_err("measure", &dir))?;
        // Rename first, so that the entry disappears atomically and a crash mid-removal leaves
        // a temp directory (which gc removes), never a half-deleted image under its sha256.
        let doomed = self
            .dir
            .join(format!("{TMP_PREFIX}rm-{}", crate::fsutil::unique_suffix()));
        fs::rename(&dir, &doomed).map_err(io_err("move aside", &dir))?;
        crate::store::remove_tree(&doomed).map_err(io_err("remove", &doomed))?;
        Ok(bytes)
    }
}

/// A fetch's temp directory under `images/`, removed when dropped unless it was installed.
pub struct TempEntry {
    path: PathBuf,
    keep: bool,
}

impl TempEntry {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempEntry {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        if let Err(e) = crate::store::remove_tree(&self.path) {
            // gc removes it later; say so rather than leave it unexplained.
            eprintln!(
                "warning: could not remove the temp image directory {}: {e}; `karapace-tui gc` \
                 removes it",
                self.path.display()
            );
        }
    }
}

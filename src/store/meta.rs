//! Per-environment metadata: `envs/<id>/meta.json`.
//!
//! The file is `{"checksum": "<blake3 hex>", "meta": {…}}` where the checksum covers the exact
//! bytes of the `meta` value as they appear in the file. Reading takes those bytes as a
//! `RawValue`, hashes them, compares, and only then deserialises, so the check never depends on
//! re-serialising. A missing file, bad JSON, a missing or wrong checksum, unknown fields or an id
//! that does not match the directory are all `Corrupt`: listing never skips a broken
//! environment, because gc would otherwise take it for unreferenced (the original's defect).

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::error::{IoContext, Result, StoreError};
use super::fsutil;
use super::Store;
use crate::types::{BackendKind, Digest, EnvId, EnvState};

/// Below this many environments `list_meta` reads on the calling thread.
const PARALLEL_LIST_MIN: usize = 64;

/// The metadata file's name inside an environment (or staging) directory.
pub(crate) const META_FILE: &str = "meta.json";

/// What the store knows about one environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvMeta {
    pub id: EnvId,
    pub name: Option<String>,
    pub state: EnvState,
    pub backend: BackendKind,
    pub base_image: String,
    pub manifest_path: Option<PathBuf>,
    pub manifest_object: Digest,
    pub lock_object: Digest,
    pub layers: Vec<Digest>,
    pub archive: Option<Digest>,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds.
    pub updated_at: u64,
}

impl EnvMeta {
    /// Every object this environment needs: manifest, lock, layers and archive.
    pub fn referenced_objects(&self) -> impl Iterator<Item = &Digest> {
        [&self.manifest_object, &self.lock_object]
            .into_iter()
            .chain(self.layers.iter())
            .chain(self.archive.iter())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope<'a> {
    checksum: String,
    #[serde(borrow)]
    meta: &'a RawValue,
}

/// The bytes of a meta.json file for `meta`.
pub(crate) fn encode_meta(meta: &EnvMeta, dest: &Path) -> Result<Vec<u8>> {
    encode_checksummed(meta, dest)
}

/// Parse and check the bytes of a meta.json file.
pub(crate) fn decode_meta(path: &Path, bytes: &[u8]) -> Result<EnvMeta> {
    decode_checksummed(path, bytes)
}

/// `{"checksum": <blake3 of the exact body bytes>, "meta": <body>}`: the format of every
/// checksummed record in the store (environment metadata, image records). The check hashes the
/// body's bytes as stored, so it never depends on re-serialising.
pub fn encode_checksummed<T: serde::Serialize>(value: &T, dest: &Path) -> Result<Vec<u8>> {
    let body = serde_json::to_string_pretty(value).map_err(|e| StoreError::Io {
        path: dest.to_path_buf(),
        op: "encode the record (a path in it is not valid UTF-8?) for",
        source: io::Error::new(io::ErrorKind::InvalidInput, e),
    })?;
    let checksum = blake3::hash(body.as_bytes()).to_hex();
    Ok(format!("{{\n\"checksum\": \"{checksum}\",\n\"meta\": {body}\n}}\n").into_bytes())
}

/// Parse and check the bytes written by [`encode_checksummed`].
pub fn decode_checksummed<T: serde::de::DeserializeOwned>(path: &Path, bytes: &[u8]) -> Result<T> {
    let corrupt = |detail: String| StoreError::Corrupt {
        path: path.to_path_buf(),
        detail,
    };
    let envelope: Envelope<'_> = serde_json::from_slice(bytes)
        .map_err(|e| corrupt(format!("not a checksummed record: {e}")))?;
    let actual = blake3::hash(envelope.meta.get().as_bytes()).to_hex();
    if actual.as_str() != envelope.checksum {
        return Err(corrupt(format!(
            "checksum mismatch: the file records {:?} but its content hashes to {actual}; it was \
             damaged or edited by hand",
            envelope.checksum
        )));
    }
    serde_json::from_str(envelope.meta.get()).map_err(|e| {
        corrupt(format!(
            "the checksum is right but the content is not valid: {e}"
        ))
    })
}

/// Read and check the meta.json at `path` (no id check); `Ok(None)` if there is none.
pub(crate) fn read_meta_file(path: &Path) -> Result<Option<EnvMeta>> {
    // Open + read into a buffer sized for typical metadata: one syscall fewer than `fs::read`,
    // which matters when `list` reads a thousand of these.
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::io(path, "open", e)),
    };
    let mut bytes = Vec::with_capacity(4096);
    file.read_to_end(&mut bytes).at(path, "read")?;
    decode_meta(path, &bytes).map(Some)
}

impl Store {
    /// The metadata file of an environment.
    pub fn meta_path(&self, id: &EnvId) -> PathBuf {
        self.env_dir(id).join(META_FILE)
    }

    /// Read an environment's metadata. `NotFound` if there is no `envs/<id>`; `Corrupt` if the
    /// directory is there but its metadata is missing or damaged.
    pub fn read_meta(&self, id: &EnvId) -> Result<EnvMeta> {
        let path = self.meta_path(id);
        let Some(meta) = read_meta_file(&path)? else {
            if !fsutil::exists(&self.env_dir(id))? {
                return Err(StoreError::NotFound { id: id.clone() });
            }
            return Err(StoreError::Corrupt {
                path,
                detail: "the environment directory has no meta.json".to_string(),
            });
        };
        if &meta.id != id {
            return Err(StoreError::Corrupt {
                path,
                detail: format!(
                    "the metadata names environment {} but lives under {id}",
                    meta.id
                ),
            });
        }
        Ok(meta)
    }

    /// Atomically write `dir/meta.json` (`dir` is an environment or staging directory).
    pub fn write_meta(&self, dir: &Path, meta: &EnvMeta) -> Result<()> {
        let dest = dir.join(META_FILE);
        let bytes = encode_meta(meta, &dest)?;
        fsutil::atomic_write(&dest, &bytes, 0o644, "write meta.json")
    }

    /// The ids of all environments: directories in `envs/` whose names are environment ids,
    /// sorted. Transient `.staging-`/`.old-`/`.trash-` directories are never listed.
    pub fn list_env_ids(&self) -> Result<Vec<EnvId>> {
        let dir = self.envs_dir();
        let mut ids = Vec::new();
        for entry in fs::read_dir(&dir).at(&dir, "list")? {
            let entry = entry.at(&dir, "list")?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with('.') {
                continue;
            }
            let is_dir = entry.file_type().at(&entry.path(), "stat")?.is_dir();
            if let (true, Ok(id)) = (is_dir, name.parse::<EnvId>()) {
                ids.push(id);
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Every environment with its metadata or the reason it cannot be read, sorted by id.
    /// Never skips one. Large stores are read on a few threads (the cost is one open and read
    /// per environment, and `list` has a budget of 10 ms for 1,000 environments).
    pub fn list_meta(&self) -> Result<Vec<(EnvId, Result<EnvMeta>)>> {
        let ids = self.list_env_ids()?;
        let sequential = |ids: Vec<EnvId>| ids.into_iter().map(|id| self.read_meta_pair(id));
        // Asked only for large stores: std reads the cgroup's CPU quota to answer, which costs
        // more than reading a few metadata files (and `exec NAME` lists them on every run).
        if ids.len() < PARALLEL_LIST_MIN {
            return Ok(sequential(ids).collect());
        }
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(4);
        if threads < 2 {
            return Ok(sequential(ids).collect());
        }
        let chunk = ids.len().div_ceil(threads);
        let mut chunks: Vec<Vec<EnvId>> = Vec::new();
        let mut rest = ids;
        while rest.len() > chunk {
            let tail = rest.split_off(chunk);
            chunks.push(rest);
            rest = tail;
        }
        chunks.push(rest);
        let listed = std::thread::scope(|scope| {
            let handles: Vec<_> = chunks
                .into_iter()
                .map(|part| {
                    scope.spawn(move || {
                        part.into_iter()
                            .map(|id| self.read_meta_pair(id))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join()).collect::<Vec<_>>()
        });
        let mut all = Vec::new();
        for part in listed {
            match part {
                Ok(part) => all.extend(part),
                // A panic in a reader thread is a bug; surface it where it happened.
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        Ok(all)
    }

    fn read_meta_pair(&self, id: EnvId) -> (EnvId, Result<EnvMeta>) {
        let meta = self.read_meta(&id);
        (id, meta)
    }
}

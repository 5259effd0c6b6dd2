//! Base images: resolve a manifest's `[base] image` to an exact archive, fetch it once, verify
//! it end to end, unpack it safely, and keep it in the store's image cache.
//!
//! - `config`: which image server (env, per-user config file, default).
//! - `http`: the HTTP client (timeouts, retries, loopback-only plain http, progress).
//! - `index`: the server's simplestreams index, with the CSV index + SHA256SUMS fallback.
//! - `pipeline`: download → hash → decompress → unpack in one streaming pass.
//! - `unpack`, `tree`: the safe tar unpacker and the tree digest.
//! - `cache`: `images/<sha256>/` entries, installed atomically.
//!
//! [`Images::ensure`] is the one entry point the backends use.

pub mod cache;
pub mod config;
pub mod http;
pub mod index;
pub mod pax_fix;
pub mod pipeline;
pub mod tree;
pub mod unpack;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Mutex;

pub use cache::{ImageCache, ImageRecord};
pub use config::{config_path, ImageConfig};
use http::{HttpClient, HttpConfig, HttpError};
use index::{ImageQuery, IndexError};
use pipeline::{Fetch, Source};

use crate::events::{Event, EventSink};
use crate::lock::LockedBase;
use crate::manifest::{BaseImage, ImageRef};
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(transparent)]
    Unpack(#[from] unpack::UnpackError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{source_desc}: sha256 is {actual}, expected {expected}; the download was damaged or the image changed upstream, and nothing was cached")]
    HashMismatch {
        source_desc: String,
        expected: String,
        actual: String,
    },
    #[error("{source_desc}: received {actual} bytes, expected {expected}; the transfer was cut short, and nothing was cached")]
    SizeMismatch {
        source_desc: String,
        expected: u64,
        actual: u64,
    },
    #[error("reading {source_desc}: {source}")]
    Stream {
        source_desc: String,
        #[source]
        source: std::io::Error,
    },
    #[error("offline: {detail}; run once without --offline to fetch it, or use a local tarball as the image")]
    Offline { detail: String },
    #[error("the locked build {build} of {reference} (sha256 {sha256}) is no longer on {server} and is not in the local cache; run `karapace-tui build --update` to move to a current build")]
    NotCached {
        reference: String,
        build: String,
        sha256: String,
        server: String,
    },
    #[error("cached image {sha256} ({reference}) has tree digest {actual}, but {expected} was recorded: its files were changed; remove it with `karapace-tui images rm {sha256}` and build again")]
    Tampered {
        sha256: String,
        reference: String,
        expected: String,
        actual: String,
    },
    #[error("this host's architecture `{0}` has no LXC image name; use a custom image URL or a local tarball")]
    UnsupportedArch(&'static str),
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("configuration file {path}: {detail}")]
    Config { path: PathBuf, detail: String },
    #[error("no cached image matches `{0}`; `karapace-tui images` lists them")]
    NoSuchImage(String),
}

/// The image service of one store.
pub struct Images<'a> {
    store: Store,
    cache: ImageCache,
    config: ImageConfig,
    client: HttpClient,
    events: &'a dyn EventSink,
    /// Images this instance has already checked (re-digested, or just unpacked and digested):
    /// one command checks each image once, not once per step (resolve, then build).
    checked: Mutex<HashSet<String>>,
}

impl<'a> Images<'a> {
    pub fn new(store: &Store, config: ImageConfig, events: &'a dyn EventSink) -> Images<'a> {
        Images {
            store: store.clone(),
            cache: ImageCache::new(store),
            config,
            client: HttpClient::new(HttpConfig::default()),
            events,
            checked: Mutex::new(HashSet::new()),
        }
    }

    pub fn cache(&self) -> &ImageCache {
        &self.cache
    }

    pub fn config(&self) -> &ImageConfig {
        &self.config
    }

    /// The cached, verified image for a manifest's base. With `locked`, exactly the locked
    /// archive (from the cache, else fetched again and checked against the lock); without,
    /// the newest build (aliases) or the given archive (URLs, local files). `offline` never
    /// touches the network.
    pub fn ensure(
        &self,
        base: &BaseImage,
        locked: Option<&LockedBase>,
        offline: bool,
    ) -> Result<ImageRecord, ImageError> {
        let reference = base.image.canonical();
        if let Some(locked) = locked.filter(|l| l.image == reference) {
            return self.ensure_locked(base, locked, offline);
        }
        if let Some(pin) = base.sha256.as_deref() {
            if let Some(record) = self.cache.get(pin)? {
                return self.verified(record);
            }
        }
        let fetch = match &base.image {
            ImageRef::Alias {
                distro, release, ..
            } => {
                if offline {
                    return self
                        .cache
                        .newest_for(&reference)?
                        .ok_or_else(|| ImageError::Offline {
                            detail: format!("no image for {reference} is cached"),
                        });
                }
                let resolved =
                    index::resolve(&self.client, &self.config.server, &query(distro, release)?)?;
                if let Some(pin) = base.sha256.as_ref().filter(|p| **p != resolved.sha256) {
                    return Err(ImageError::HashMismatch {
                        source_desc: resolved.url,
                        expected: pin.clone(),
                        actual: resolved.sha256,
                    });
                }
                if let Some(record) = self.cache.get(&resolved.sha256)? {
                    self.events.emit(Event::info(format!(
                        "image {reference} build {} is cached",
                        resolved.build
                    )));
                    return self.verified(record);
                }
                Fetch {
                    reference,
                    source: Source::Url(resolved.url),
                    expected_sha256: Some(resolved.sha256),
                    expected_size: resolved.size,
                    server: Some(resolved.server),
                    build: resolved.build,
                    item_path: Some(resolved.item_path),
                }
            }
            ImageRef::Url(url) => {
                if offline {
                    return Err(ImageError::Offline {
                        detail: format!("{url} would have to be downloaded"),
                    });
                }
                custom_fetch(reference, Source::Url(url.clone()), base.sha256.clone())
            }
            ImageRef::LocalPath(path) => {
                // Hashing the file is far cheaper than importing it again: without a pin,
                // its sha256 finds an import already in the cache.
                let sha256 = match &base.sha256 {
                    Some(pin) => pin.clone(),
                    None => sha256_of_file(path)?,
                };
                if let Some(record) = self.cache.get(&sha256)? {
                    self.events.emit(Event::info(format!(
                        "image {reference} (sha256 {sha256}) is cached"
                    )));
                    return self.verified(record);
                }
                custom_fetch(reference, Source::File(path.clone()), Some(sha256))
            }
        };
        self.fetch(&fetch)
    }

    fn ensure_locked(
        &self,
        base: &BaseImage,
        locked: &LockedBase,
        offline: bool,
    ) -> Result<ImageRecord, ImageError> {
        if let Some(record) = self.cache.get(&locked.archive_sha256)? {
            return self.verified(matches_lock(record, locked)?);
        }
        let source = match &base.image {
            ImageRef::Alias {
                distro, release, ..
            } => {
                let server = locked
                    .server
                    .clone()
                    .unwrap_or_else(|| self.config.server.clone());
                let not_cached = || ImageError::NotCached {
                    reference: locked.image.clone(),
                    build: locked.build.clone(),
                    sha256: locked.archive_sha256.clone(),
                    server: server.clone(),
                };
                if offline {
                    return Err(not_cached());
                }
                let q = query(distro, release)?;
                match index::resolve_build(&self.client, &server, &q, &locked.build) {
                    Ok(resolved) => Source::Url(resolved.url),
                    Err(IndexError::BuildGone { .. }) => return Err(not_cached()),
                    Err(e) => return Err(e.into()),
                }
            }
            ImageRef::Url(url) if offline => {
                return Err(ImageError::Offline {
                    detail: format!("the locked image {url} is not cached"),
                })
            }
            ImageRef::Url(url) => Source::Url(url.clone()),
            ImageRef::LocalPath(path) => Source::File(path.clone()),
        };
        let record = self.fetch(&Fetch {
            reference: locked.image.clone(),
            source,
            expected_sha256: Some(locked.archive_sha256.clone()),
            expected_size: Some(locked.archive_size),
            server: locked.server.clone(),
            build: locked.build.clone(),
            item_path: locked.item_path.clone(),
        })?;
        matches_lock(record, locked)
    }

    /// A cached image about to be built on: its files are re-digested, so that an image
    /// changed on disk since it was verified is refused rather than copied into a build.
    fn verified(&self, record: ImageRecord) -> Result<ImageRecord, ImageError> {
        if self.was_checked(&record.sha256) {
            return Ok(record);
        }
        let rootfs = self.cache.rootfs(&record.sha256);
        let actual = tree::tree_digest(&rootfs).map_err(|source| ImageError::Io {
            op: "re-verify the cached image",
            path: rootfs,
            source,
        })?;
        if actual != record.tree_digest {
            return Err(ImageError::Tampered {
                sha256: record.sha256,
                reference: record.reference,
                expected: record.tree_digest.to_string(),
                actual: actual.to_string(),
            });
        }
        self.mark_checked(&record.sha256);
        Ok(record)
    }

    fn was_checked(&self, sha256: &str) -> bool {
        self.checked
            .lock()
            .is_ok_and(|checked| checked.contains(sha256))
    }

    fn mark_checked(&self, sha256: &str) {
        // A poisoned set only means the next use checks again.
        if let Ok(mut checked) = self.checked.lock() {
            checked.insert(sha256.to_string());
        }
    }

    /// Fetch under the image's lock, so that concurrent builds download it once.
    fn fetch(&self, fetch: &Fetch) -> Result<ImageRecord, ImageError> {
        let source = fetch.source.describe();
        let key = match &fetch.expected_sha256 {
            Some(sha) => sha.clone(),
            None => blake3::hash(source.as_bytes()).to_hex().to_string(),
        };
        let asked_at = crate::store::now_secs();
        let _lock = self.store.lock_image(&key)?;
        // Another process may have fetched it while we waited for the lock.
        if let Some(sha) = &fetch.expected_sha256 {
            if let Some(record) = self.cache.get(sha)? {
                return Ok(record);
            }
        } else if let Some(record) = self.fetched_since(&source, asked_at)? {
            // Without a known sha256, only a fetch of the same source that finished after we
            // asked counts: it got the bytes we would have got.
            return Ok(record);
        }
        let record = pipeline::fetch_into(&self.cache, &self.client, fetch, self.events)?;
        // Digested while it was unpacked, a moment ago.
        self.mark_checked(&record.sha256);
        Ok(record)
    }

    fn fetched_since(&self, source: &str, since: u64) -> Result<Option<ImageRecord>, ImageError> {
        for (_, record) in self.cache.list()? {
            let record = record?;
            if record.source == source && record.fetched_at >= since {
                return Ok(Some(record));
            }
        }
        Ok(None)
    }

    /// Resolve `name` (an alias) to the newest build and fetch it unless cached.
    pub fn pull(&self, image: &ImageRef) -> Result<ImageRecord, ImageError> {
        let base = BaseImage {
            image: image.clone(),
            sha256: None,
        };
        self.ensure(&base, None, false)
    }
}

impl ImageRecord {
    /// The lock's view of this image.
    pub fn locked(&self) -> LockedBase {
        LockedBase {
            image: self.reference.clone(),
            source: self.source.clone(),
            build: self.build.clone(),
            archive_sha256: self.sha256.clone(),
            archive_size: self.size,
            tree_digest: self.tree_digest.to_string(),
            server: self.server.clone(),
            item_path: self.item_path.clone(),
        }
    }
}

/// The image must be the one the lock was made from: same tree digest.
fn matches_lock(record: ImageRecord, locked: &LockedBase) -> Result<ImageRecord, ImageError> {
    if record.tree_digest.as_str() == locked.tree_digest {
        return Ok(record);
    }
    Err(ImageError::Tampered {
        sha256: record.sha256,
        reference: record.reference,
        expected: locked.tree_digest.clone(),
        actual: record.tree_digest.to_string(),
    })
}

/// The sha256 of a local file, in lower-case hex.
fn sha256_of_file(path: &std::path::Path) -> Result<String, ImageError> {
    use sha2::{Digest as _, Sha256};
    let io_err = |source| ImageError::Io {
        op: "read the image file",
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io_err)?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(io_err)?;
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

fn custom_fetch(reference: String, source: Source, pin: Option<String>) -> Fetch {
    Fetch {
        reference,
        source,
        expected_sha256: pin,
        expected_size: None,
        server: None,
        build: "-".to_string(),
        item_path: None,
    }
}

fn query(distro: &str, release: &str) -> Result<ImageQuery, ImageError> {
    let arch = index::host_arch().ok_or(ImageError::UnsupportedArch(std::env::consts::ARCH))?;
    Ok(ImageQuery {
        distro: distro.to_string(),
        release: release.to_string(),
        arch: arch.to_string(),
        variant: "default".to_string(),
    })
}

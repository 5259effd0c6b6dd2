//! Base images from the engine's side: `images`, `images pull`, `images rm`, and the image
//! part of `gc` and `verify-store`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use super::{Engine, EngineError, Result};
use crate::image::{ImageConfig, ImageError, ImageRecord, Images};
use crate::manifest::parse_image;
use crate::store::{GcItem, GcItemKind, Problem, ProblemKind};

/// One cached image as `images` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct ImageInfo {
    #[serde(flatten)]
    pub record: ImageRecord,
    pub disk_usage_bytes: u64,
    /// Environments whose lock uses this image (short id, and name when there is one).
    pub used_by: Vec<String>,
}

impl Engine {
    /// The image service, with this user's image server setting.
    pub fn images(&self) -> Result<Images<'_>> {
        let config = ImageConfig::load(&self.parse_env.home)?;
        Ok(Images::new(&self.store, config, self.events.as_ref()))
    }

    /// sha256 → environments using it, from every environment's lock.
    fn image_users(&self) -> Result<BTreeMap<String, Vec<String>>> {
        let mut users: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (_, meta) in self.store.list_meta()? {
            let meta = meta?;
            let lock = self.lock_of(&meta)?;
            users
                .entry(lock.base.archive_sha256)
                .or_default()
                .push(super::lifecycle::display_env(&meta));
        }
        Ok(users)
    }

    pub fn image_list(&self) -> Result<Vec<ImageInfo>> {
        let images = self.images()?;
        let users = self.image_users()?;
        let mut out = Vec::new();
        for (sha, record) in images.cache().list()? {
            let record = record?;
            let dir = images.cache().entry_dir(&sha);
            let disk_usage_bytes =
                crate::fsutil::tree_size(&dir).map_err(|source| EngineError::Io {
                    op: "measure",
                    path: dir,
                    source,
                })?;
            out.push(ImageInfo {
                used_by: users.get(&sha).cloned().unwrap_or_default(),
                record,
                disk_usage_bytes,
            });
        }
        Ok(out)
    }

    /// Fetch the newest build of an alias (or a custom URL / local tarball) into the cache.
    pub fn image_pull(&self, name: &str) -> Result<ImageRecord> {
        let cwd = std::env::current_dir().map_err(|source| EngineError::Io {
            op: "find the working directory",
            path: PathBuf::from("."),
            source,
        })?;
        let image = parse_image(name, &cwd, &self.parse_env.home).map_err(|problem| {
            EngineError::InvalidImage {
                name: name.to_string(),
                problem: problem.to_string(),
                allowed: problem.allowed(),
            }
        })?;
        let _store_lock = self.store.lock_store_shared()?;
        Ok(self.images()?.pull(&image)?)
    }

    /// Remove a cached image that no environment uses. `query` is a sha256 or a unique prefix
    /// of at least 4 characters.
    pub fn image_remove(&self, query: &str) -> Result<(ImageRecord, u64)> {
        let _store_lock = self.store.lock_store_exclusive()?;
        let images = self.images()?;
        let matches: Vec<String> = images
            .cache()
            .list()?
            .into_iter()
            .map(|(sha, _)| sha)
            .filter(|sha| query.len() >= 4 && sha.starts_with(query))
            .collect();
        let sha = match matches.as_slice() {
            [one] => one.clone(),
            [] => return Err(ImageError::NoSuchImage(query.to_string()).into()),
            _ => {
                return Err(EngineError::Ambiguous {
                    query: query.to_string(),
                    candidates: matches.iter().map(|m| format!("  {m}")).collect(),
                })
            }
        };
        if let Some(users) = self.image_users()?.get(&sha) {
            return Err(EngineError::ImageInUse {
                sha256: sha,
                users: users.join(", "),
            });
        }
        let record = images
            .cache()
            .get(&sha)?
            .ok_or_else(|| ImageError::NoSuchImage(sha.clone()))?;
        let bytes = images.cache().remove(&sha)?;
        Ok((record, bytes))
    }

    /// Unused images and leftover fetch directories, removed unless `dry_run`. Runs under the
    /// exclusive store lock, so no fetch or build is in progress.
    pub(super) fn gc_images(&self, dry_run: bool) -> Result<Vec<GcItem>> {
        let _store_lock = self.store.lock_store_exclusive()?;
        let images = self.images()?;
        let users = self.image_users()?;
        let mut items = Vec::new();
        for path in images.cache().temp_dirs()? {
            let bytes = crate::fsutil::tree_size(&path).map_err(|source| EngineError::Io {
                op: "measure",
                path: path.clone(),
                source,
            })?;
            if !dry_run {
                crate::store::remove_tree(&path).map_err(|source| EngineError::Io {
                    op: "remove",
                    path: path.clone(),
                    source,
                })?;
            }
            items.push(GcItem {
                path,
                kind: GcItemKind::ImageTemp,
                bytes,
            });
        }
        for (sha, record) in images.cache().list()? {
            // A damaged record is not garbage: verify-store reports it, and removing it would
            // destroy the evidence. Only intact, unused images are collected.
            if record.is_err() || users.contains_key(&sha) {
                continue;
            }
            let path = images.cache().entry_dir(&sha);
            let bytes = if dry_run {
                crate::fsutil::tree_size(&path).map_err(|source| EngineError::Io {
                    op: "measure",
                    path: path.clone(),
                    source,
                })?
            } else {
                images.cache().remove(&sha)?
            };
            items.push(GcItem {
                path,
                kind: GcItemKind::Image,
                bytes,
            });
        }
        Ok(items)
    }

    /// Re-verify every cached image: its record's checksum and its tree digest.
    pub(super) fn verify_images(&self) -> Result<(usize, Vec<Problem>)> {
        let images = self.images()?;
        let mut problems = Vec::new();
        let list = images.cache().list()?;
        for (sha, record) in &list {
            let path = images.cache().entry_dir(sha);
            let record = match record {
                Ok(record) => record,
                Err(e) => {
                    problems.push(Problem {
                        path,
                        kind: ProblemKind::CorruptImage,
                        detail: e.to_string(),
                    });
                    continue;
                }
            };
            let rootfs = images.cache().rootfs(sha);
            match crate::image::tree::tree_hasher(&rootfs).map(|h| h.finish_with_index()) {
                Ok((actual, _)) if actual == record.tree_digest => {}
                Ok((actual, now)) => problems.push(Problem {
                    path: rootfs,
                    kind: ProblemKind::CorruptImage,
                    detail: tampered_detail(images.cache().index(sha), &now, &actual, record),
                }),
                Err(e) => problems.push(Problem {
                    path: rootfs,
                    kind: ProblemKind::Unreadable,
                    detail: e.to_string(),
                }),
            }
        }
        Ok((list.len(), problems))
    }
}

/// What changed in a tampered image: the entries that differ from the recorded index (the
/// first few), or the digests alone when no index was recorded.
fn tampered_detail(
    recorded: Option<crate::image::tree::EntryIndex>,
    now: &crate::image::tree::EntryIndex,
    actual: &crate::types::Digest,
    record: &ImageRecord,
) -> String {
    const SHOWN: usize = 10;
    let digests = format!("tree digest {actual}, recorded {}", record.tree_digest);
    let Some(recorded) = recorded else {
        return format!("files changed since the image was verified ({digests})");
    };
    let changed = recorded.differences(now);
    let mut names = changed
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if changed.len() > SHOWN {
        names.push_str(&format!(" and {} more", changed.len() - SHOWN));
    }
    format!("files changed since the image was verified: {names} ({digests})")
}

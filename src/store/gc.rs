//! Garbage collection.
//!
//! Under the exclusive store lock: settle interrupted operations, collect every digest referenced
//! by any metadata (installed environments, and staging/replaced/trash directories that still
//! hold one) plus the caller's extra live digests, and refuse outright, deleting nothing, if any
//! environment's metadata is unreadable (the original deleted the objects of environments whose
//! metadata it could not parse). Then remove unreferenced objects, leftover temp files and stale
//! session markers. The report lists each removed path and its size; a dry run lists exactly the
//! same paths and removes none of them (interrupted operations are still settled: that is
//! recovery, not collection).

use std::collections::HashSet;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::error::{IoContext, Result, StoreError};
use super::fsutil;
use super::meta::{self, META_FILE};
use super::recover::RecoveryReport;
use super::Store;
use crate::crashpoint;
use crate::types::{Digest, EnvId};

/// What kind of thing a gc item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GcItemKind {
    /// An object no metadata references.
    Object,
    /// A temp file left by a crashed write.
    TempFile,
    /// A session marker whose process is gone.
    RunMarker,
    /// An empty `run/<id>` directory.
    RunDir,
    /// A cached base image that no environment's lock uses.
    Image,
    /// The temp directory of an image fetch that did not finish.
    ImageTemp,
}

impl GcItemKind {
    /// The snake_case name, as in JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            GcItemKind::Object => "object",
            GcItemKind::TempFile => "temp_file",
            GcItemKind::RunMarker => "run_marker",
            GcItemKind::RunDir => "run_dir",
            GcItemKind::Image => "image",
            GcItemKind::ImageTemp => "image_temp",
        }
    }
}

impl fmt::Display for GcItemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One removed (or, in a dry run, removable) path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GcItem {
    pub path: PathBuf,
    pub kind: GcItemKind,
    pub bytes: u64,
}

/// What [`Store::gc`] removed, or in a dry run would remove.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GcReport {
    pub dry_run: bool,
    /// Each path removed (in a dry run: that would be removed), in the order handled.
    pub items: Vec<GcItem>,
    /// Sum of `items[].bytes`.
    pub bytes: u64,
    /// Distinct digests found referenced (including `extra_live`).
    pub live_objects: usize,
    /// Interrupted operations settled before collecting.
    pub recovery: RecoveryReport,
}

impl Store {
    /// Collect garbage; see the module docs. Takes the exclusive store lock itself, so the
    /// caller must not hold the store lock.
    pub fn gc(&self, dry_run: bool, extra_live: &[Digest]) -> Result<GcReport> {
        let _lock = self.lock_store_exclusive()?;
        let recovery = self.recover()?;
        let mut live = self.collect_live()?;
        live.extend(extra_live.iter().cloned());
        let mut report = GcReport {
            dry_run,
            live_objects: live.len(),
            recovery,
            ..Default::default()
        };
        self.gc_objects(&live, &mut report)?;
        self.gc_temp_files(&mut report)?;
        self.gc_run_markers(&mut report)?;
        report.bytes = report.items.iter().map(|i| i.bytes).sum();
        Ok(report)
    }

    /// Every digest referenced by a readable meta.json anywhere in `envs/`. An environment
    /// directory with missing or damaged metadata makes this fail with `GcRefused`.
    fn collect_live(&self) -> Result<HashSet<Digest>> {
        let mut live = HashSet::new();
        let mut corrupt = Vec::new();
        for (name, path) in sorted_entries(&self.envs_dir())? {
            if !fsutil::is_dir(&path)? {
                continue;
            }
            let meta_path = path.join(META_FILE);
            let is_env = !name.starts_with('.') && name.parse::<EnvId>().is_ok();
            match meta::read_meta_file(&meta_path) {
                Ok(Some(m)) => live.extend(m.referenced_objects().cloned()),
                // A staging directory may not have its metadata yet.
                Ok(None) if !is_env => {}
                Ok(None) | Err(StoreError::Corrupt { .. }) => corrupt.push(meta_path),
                Err(e) => return Err(e),
            }
        }
        if corrupt.is_empty() {
            Ok(live)
        } else {
            Err(StoreError::GcRefused { corrupt })
        }
    }

    fn gc_objects(&self, live: &HashSet<Digest>, report: &mut GcReport) -> Result<()> {
        let dir = self.objects_dir();
        let mut removed_any = false;
        for (name, path) in sorted_entries(&dir)? {
            // Names that are not digests are not ours to delete; verify reports them.
            let Ok(digest) = name.parse::<Digest>() else {
                continue;
            };
            if live.contains(&digest) {
                continue;
            }
            let meta = match fs::symlink_metadata(&path) {
                Ok(m) if m.is_file() => m,
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StoreError::io(&path, "look at", e)),
            };
            if !report.dry_run {
                fsutil::remove_file_if_exists(&path)?;
                removed_any = true;
                crashpoint::hit("gc: unreferenced object removed");
            }
            report.items.push(GcItem {
                path,
                kind: GcItemKind::Object,
                bytes: meta.len(),
            });
        }
        if removed_any {
            fsutil::fsync_dir(&dir)?;
        }
        Ok(())
    }

    /// Temp files and scratch directories nobody holds a lock on: `tmp/*`, `.version.tmp-*`,
    /// `journal/.*.tmp-*` and `envs/*/.meta.json.tmp-*`.
    fn gc_temp_files(&self, report: &mut GcReport) -> Result<()> {
        let mut candidates: Vec<PathBuf> = sorted_entries(&self.tmp_dir())?
            .into_iter()
            .map(|(_, p)| p)
            .collect();
        let mut dirs = vec![self.root.clone(), self.journal_dir()];
        for (_, path) in sorted_entries(&self.envs_dir())? {
            if fsutil::is_dir(&path)? {
                dirs.push(path);
            }
        }
        for dir in dirs {
            for (name, path) in sorted_entries(&dir)? {
                if fsutil::is_temp_name(&name) {
                    candidates.push(path);
                }
            }
        }
        for path in candidates {
            if fsutil::is_dir(&path)? {
                let scratch = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(super::scratch::SCRATCH_PREFIX));
                if scratch {
                    if let Some(bytes) = self.remove_scratch_if_unlocked(&path, report.dry_run)? {
                        report.items.push(GcItem {
                            path,
                            kind: GcItemKind::TempFile,
                            bytes,
                        });
                    }
                }
                continue;
            }
            if !fsutil::is_file(&path)? {
                continue;
            }
            if let Some(bytes) = fsutil::remove_if_unlocked(&path, report.dry_run)? {
                report.items.push(GcItem {
                    path,
                    kind: GcItemKind::TempFile,
                    bytes,
                });
            }
        }
        Ok(())
    }

    fn gc_run_markers(&self, report: &mut GcReport) -> Result<()> {
        for (_, dir) in sorted_entries(&self.run_dir())? {
            if !fsutil::is_dir(&dir)? {
                continue;
            }
            let markers = sorted_entries(&dir)?;
            let mut stale = 0;
            for (_, path) in &markers {
                if let Some(bytes) = fsutil::remove_if_unlocked(path, report.dry_run)? {
                    stale += 1;
                    let item = GcItem {
                        path: path.clone(),
                        kind: GcItemKind::RunMarker,
                        bytes,
                    };
                    report.items.push(item);
                }
            }
            if stale == markers.len() && remove_empty_dir(&dir, report.dry_run)? {
                report.items.push(GcItem {
                    path: dir,
                    kind: GcItemKind::RunDir,
                    bytes: 0,
                });
            }
        }
        Ok(())
    }
}

/// Remove `dir` if it is empty; `false` if a new entry appeared meanwhile (a session started).
fn remove_empty_dir(dir: &Path, dry_run: bool) -> Result<bool> {
    if dry_run {
        return Ok(true);
    }
    match fs::remove_dir(dir) {
        Ok(()) => Ok(true),
        // ErrorKind::DirectoryNotEmpty needs Rust 1.83; compare the errno instead.
        Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) => Ok(false),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(StoreError::io(dir, "remove the empty directory", e)),
    }
}

/// The entries of `dir` as (name, path), sorted by name; non-UTF-8 names are lossily converted.
pub(crate) fn sorted_entries(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut entries = Vec::new();
    for entry in fs::read_dir(dir).at(dir, "list")? {
        let entry = entry.at(dir, "list")?;
        entries.push((
            entry.file_name().to_string_lossy().into_owned(),
            entry.path(),
        ));
    }
    entries.sort();
    Ok(entries)
}

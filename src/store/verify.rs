//! Whole-store verification. Every object is re-hashed (streamed), every metadata file checked,
//! every referenced object looked up, every journal entry and transient directory accounted for,
//! and every unexpected file named. Problems are collected, never fatal: one damaged object does
//! not hide the next. Temp files left by crashed writes are listed apart: they are not damage,
//! and gc removes them.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::error::{Result, StoreError};
use super::fsutil;
use super::gc::sorted_entries;
use super::journal::transient_op_id;
use super::lock::{NAMES_LOCK, STORE_LOCK};
use super::meta::{EnvMeta, META_FILE};
use super::{Store, LAYOUT_DIRS, OTHER_KNOWN_TOP, VERSION_FILE};
use crate::types::{Digest, EnvId, EnvState};

/// What is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// An object whose content does not hash to its name.
    CorruptObject,
    /// An object that metadata references but `objects/` lacks.
    MissingObject,
    /// An environment whose meta.json is missing, unparsable or fails its checksum.
    CorruptMeta,
    /// A built or frozen environment whose directory holds nothing but its metadata.
    MissingEnvContent,
    /// An archived environment that records no archive object.
    MissingArchive,
    /// A journal entry of a dead process: the next mutating command's recovery settles it.
    UnfinishedOperation,
    /// A staging, replaced or trash directory that no journal entry accounts for.
    OrphanTransient,
    /// Something the store did not put there.
    UnknownFile,
    /// A file or directory that could not be read.
    Unreadable,
    /// A cached base image whose record is damaged or whose files no longer match its digest.
    CorruptImage,
}

impl ProblemKind {
    /// The snake_case name, as in JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::CorruptObject => "corrupt_object",
            ProblemKind::CorruptImage => "corrupt_image",
            ProblemKind::MissingObject => "missing_object",
            ProblemKind::CorruptMeta => "corrupt_meta",
            ProblemKind::MissingEnvContent => "missing_env_content",
            ProblemKind::MissingArchive => "missing_archive",
            ProblemKind::UnfinishedOperation => "unfinished_operation",
            ProblemKind::OrphanTransient => "orphan_transient",
            ProblemKind::UnknownFile => "unknown_file",
            ProblemKind::Unreadable => "unreadable",
        }
    }
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem found by [`Store::verify`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub path: PathBuf,
    pub kind: ProblemKind,
    pub detail: String,
}

/// What [`Store::verify`] checked and found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub objects_checked: usize,
    pub bytes_checked: u64,
    pub envs_checked: usize,
    /// Cached base images re-verified (filled in by the engine, which owns the image cache).
    pub images_checked: usize,
    pub problems: Vec<Problem>,
    /// Temp files of crashed writes (no process holds them); harmless, removed by gc.
    pub leftover_temp_files: Vec<PathBuf>,
}

impl VerifyReport {
    /// True when no problem was found.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }

    fn add(&mut self, path: impl Into<PathBuf>, kind: ProblemKind, detail: impl Into<String>) {
        self.problems.push(Problem {
            path: path.into(),
            kind,
            detail: detail.into(),
        });
    }
}

/// One pass of a verification.
type Pass = fn(&Store, &mut Scan) -> Result<()>;

/// State shared between the passes of one verification.
#[derive(Default)]
struct Scan {
    report: VerifyReport,
    present: HashSet<Digest>,
    /// Corrupt objects → index of their problem, so environments using them can be named.
    corrupt: HashMap<Digest, usize>,
    /// Op ids of every journal entry (live or dead).
    ops: HashSet<String>,
}

impl Store {
    /// Check the whole store; see the module docs. Takes the shared store lock itself (so gc
    /// cannot delete while it runs); the caller must not hold the exclusive one.
    pub fn verify(&self) -> Result<VerifyReport> {
        let _lock = self.lock_store_shared()?;
        let mut scan = Scan::default();
        let passes: [(PathBuf, Pass); 6] = [
            (self.root.clone(), Store::verify_root),
            (self.objects_dir(), Store::verify_objects),
            (self.journal_dir(), Store::verify_journal),
            (self.envs_dir(), Store::verify_envs),
            (self.locks_dir(), Store::verify_locks),
            (self.tmp_dir(), Store::verify_tmp),
        ];
        for (dir, pass) in passes {
            if let Err(e) = pass(self, &mut scan) {
                scan.report.add(dir, ProblemKind::Unreadable, e.to_string());
            }
        }
        Ok(scan.report)
    }

    fn verify_root(&self, scan: &mut Scan) -> Result<()> {
        for (name, path) in sorted_entries(&self.root)? {
            let known = name == VERSION_FILE
                || LAYOUT_DIRS.contains(&name.as_str())
                || OTHER_KNOWN_TOP.contains(&name.as_str());
            if known {
                continue;
            }
            if name.starts_with(".version") && fsutil::is_temp_name(&name) {
                note_temp(scan, path)?;
            } else {
                scan.report.add(
                    path,
                    ProblemKind::UnknownFile,
                    "not part of the store layout",
                );
            }
        }
        Ok(())
    }

    fn verify_objects(&self, scan: &mut Scan) -> Result<()> {
        for (name, path) in sorted_entries(&self.objects_dir())? {
            let Some(kind) = fsutil::file_type(&path)? else {
                continue;
            };
            let digest = match (kind.is_file(), name.parse::<Digest>()) {
                (true, Ok(d)) => d,
                _ => {
                    let detail = "not an object (objects are files named by their blake3 digest)";
                    scan.report.add(path, ProblemKind::UnknownFile, detail);
                    continue;
                }
            };
            scan.report.objects_checked += 1;
            scan.present.insert(digest.clone());
            match self.verify_object(&digest) {
                Ok(size) => scan.report.bytes_checked += size,
                Err(e @ StoreError::ObjectMismatch { .. }) => {
                    scan.corrupt.insert(digest, scan.report.problems.len());
                    scan.report
                        .add(path, ProblemKind::CorruptObject, e.to_string());
                }
                Err(e) => scan
                    .report
                    .add(path, ProblemKind::Unreadable, e.to_string()),
            }
        }
        Ok(())
    }

    fn verify_journal(&self, scan: &mut Scan) -> Result<()> {
        for (name, path) in sorted_entries(&self.journal_dir())? {
            if fsutil::is_temp_name(&name) {
                note_temp(scan, path)?;
                continue;
            }
            let Some(op) = name.strip_suffix(".json").filter(|op| !op.starts_with('.')) else {
                scan.report
                    .add(path, ProblemKind::UnknownFile, "not a journal entry");
                continue;
            };
            scan.ops.insert(op.to_string());
            if let Some(detail) = dead_entry_detail(&path)? {
                scan.report
                    .add(path, ProblemKind::UnfinishedOperation, detail);
            }
        }
        Ok(())
    }

    fn verify_envs(&self, scan: &mut Scan) -> Result<()> {
        for (name, path) in sorted_entries(&self.envs_dir())? {
            let Some(kind) = fsutil::file_type(&path)? else {
                continue;
            };
            if let Some(op) = transient_op_id(&name) {
                // An operation may have begun since the journal was listed: look again.
                let journalled = scan.ops.contains(op)
                    || fsutil::exists(&self.journal_dir().join(format!("{op}.json")))?;
                if !journalled {
                    let detail = "left by an operation that has no journal entry; delete it \
                                  by hand once you are sure nothing in it is needed";
                    scan.report.add(path, ProblemKind::OrphanTransient, detail);
                }
                continue;
            }
            match name.parse::<EnvId>() {
                Ok(id) if kind.is_dir() => {
                    // One unreadable environment must not hide the others.
                    if let Err(e) = self.verify_env(&id, &path, scan) {
                        scan.report
                            .add(path, ProblemKind::Unreadable, e.to_string());
                    }
                }
                _ => scan.report.add(
                    path,
                    ProblemKind::UnknownFile,
                    "not an environment directory",
                ),
            }
        }
        Ok(())
    }

    fn verify_env(&self, id: &EnvId, dir: &Path, scan: &mut Scan) -> Result<()> {
        scan.report.envs_checked += 1;
        let mut has_content = false;
        for (name, path) in sorted_entries(dir)? {
            if fsutil::is_temp_name(&name) {
                note_temp(scan, path)?;
            } else if name != META_FILE {
                has_content = true;
            }
        }
        let meta = match self.read_meta(id) {
            Ok(m) => m,
            Err(e @ StoreError::Corrupt { .. }) => {
                scan.report
                    .add(self.meta_path(id), ProblemKind::CorruptMeta, e.to_string());
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        self.check_references(&meta, scan);
        let needs_content = matches!(meta.state, EnvState::Built | EnvState::Frozen);
        if needs_content && !has_content {
            let detail = format!(
                "the environment is {} but its directory is empty",
                meta.state
            );
            scan.report.add(dir, ProblemKind::MissingEnvContent, detail);
        }
        if meta.state == EnvState::Archived && meta.archive.is_none() {
            let detail = "the environment is archived but records no archive object";
            scan.report
                .add(self.meta_path(id), ProblemKind::MissingArchive, detail);
        }
        Ok(())
    }

    fn check_references(&self, meta: &EnvMeta, scan: &mut Scan) {
        for digest in meta.referenced_objects() {
            if let Some(&index) = scan.corrupt.get(digest) {
                let detail = &mut scan.report.problems[index].detail;
                detail.push_str(&format!("; used by environment {}", meta.id.short()));
            } else if !scan.present.contains(digest) {
                let detail = format!(
                    "environment {} needs object {digest}, which is not in objects/",
                    meta.id.short()
                );
                scan.report
                    .add(self.meta_path(&meta.id), ProblemKind::MissingObject, detail);
            }
        }
    }

    fn verify_locks(&self, scan: &mut Scan) -> Result<()> {
        for (name, path) in sorted_entries(&self.locks_dir())? {
            let env_lock = name
                .strip_prefix("env-")
                .and_then(|rest| rest.strip_suffix(".lock"))
                .is_some_and(|id| id.parse::<EnvId>().is_ok());
            // Image fetch locks are keyed by a sha256 or a blake3 (both 64 hex characters).
            let image_lock = name
                .strip_prefix("image-")
                .and_then(|rest| rest.strip_suffix(".lock"))
                .is_some_and(|key| key.parse::<crate::types::Digest>().is_ok());
            if name != STORE_LOCK && name != NAMES_LOCK && !env_lock && !image_lock {
                scan.report
                    .add(path, ProblemKind::UnknownFile, "not a lock file");
            }
        }
        Ok(())
    }

    fn verify_tmp(&self, scan: &mut Scan) -> Result<()> {
        for (_, path) in sorted_entries(&self.tmp_dir())? {
            note_temp(scan, path)?;
        }
        Ok(())
    }
}

/// List a temp file if no process holds it (a held one is a write in progress).
fn note_temp(scan: &mut Scan, path: PathBuf) -> Result<()> {
    if fsutil::remove_if_unlocked(&path, true)?.is_some() {
        scan.report.leftover_temp_files.push(path);
    }
    Ok(())
}

/// `Some(description)` if the journal entry's process is gone (its flock is free).
fn dead_entry_detail(path: &Path) -> Result<Option<String>> {
    let file = match File::open(path) {
        Ok(f) => f,
        // The operation finished while we looked.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::io(path, "open the journal entry", e)),
    };
    let Some(lock) = fsutil::try_flock(file, true, path)? else {
        return Ok(None);
    };
    let mut text = String::new();
    let summary = match (&*lock).read_to_string(&mut text) {
        Ok(_) => serde_json::from_str::<serde_json::Value>(&text)
            .map(|v| {
                let field = |k: &str| v[k].as_str().unwrap_or("?").to_string();
                format!("a {} of environment {}", field("kind"), field("env"))
            })
            .unwrap_or_else(|e| format!("an unreadable operation ({e})")),
        Err(e) => format!("an unreadable operation ({e})"),
    };
    Ok(Some(format!(
        "{summary} was interrupted; the next mutating command (or gc) rolls it back or completes it"
    )))
}

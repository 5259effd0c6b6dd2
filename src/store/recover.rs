//! Recovery of interrupted journalled operations: see the protocol in `journal.rs` and the
//! crash table in docs/storage.md. An entry is settled only when its flock can be taken (its
//! process is gone); settling looks only at what is on disk, and every step is idempotent.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::Path;

use serde::Serialize;

use super::error::{IoContext, RecoveryFailure, Result, StoreError};
use super::fsutil;
use super::journal::{JournalRecord, OpKind, OpPaths, JOURNAL_FORMAT};
use super::Store;
use crate::crashpoint;
use crate::types::EnvId;

/// One interrupted operation that recovery settled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecoveredOp {
    pub op_id: String,
    pub kind: OpKind,
    pub env: EnvId,
    /// What was done, in order, in words (empty if nothing was left but the entry).
    pub actions: Vec<String>,
    /// Whether `envs/<id>` exists afterwards.
    pub env_present: bool,
}

/// What [`Store::recover`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RecoveryReport {
    /// Entries of dead processes, rolled back or completed.
    pub recovered: Vec<RecoveredOp>,
    /// Op ids of entries left alone because their process is alive (flock held).
    pub live: Vec<String>,
}

impl RecoveryReport {
    /// True when nothing needed recovering.
    pub fn is_empty(&self) -> bool {
        self.recovered.is_empty()
    }

    /// One line per settled operation, for warnings.
    pub fn describe(&self) -> Vec<String> {
        self.recovered.iter().map(RecoveredOp::describe).collect()
    }
}

impl RecoveredOp {
    /// A one-line account of what recovery did.
    pub fn describe(&self) -> String {
        let outcome = if self.env_present {
            "present"
        } else {
            "absent"
        };
        let actions = if self.actions.is_empty() {
            "only its journal entry was left".to_string()
        } else {
            self.actions.join("; ")
        };
        format!(
            "interrupted {} of environment {} (op {}): {actions}; the environment is now {outcome}",
            self.kind,
            self.env.short(),
            self.op_id
        )
    }
}

enum EntryOutcome {
    Live(String),
    Recovered(RecoveredOp),
    Gone,
}

impl Store {
    /// Settle every journal entry whose process has died, then delete it. Entries of live
    /// processes are left alone. Idempotent. If some entries cannot be settled, the others still
    /// are, and the error lists the ones left (they are retried next time).
    pub fn recover(&self) -> Result<RecoveryReport> {
        let dir = self.journal_dir();
        let mut names = Vec::new();
        for entry in fs::read_dir(&dir).at(&dir, "list")? {
            let name = entry
                .at(&dir, "list")?
                .file_name()
                .to_string_lossy()
                .into_owned();
            // Dot names are temp files of entries being written; gc removes stale ones.
            if !name.starts_with('.') && name.ends_with(".json") {
                names.push(name);
            }
        }
        names.sort();
        let mut report = RecoveryReport::default();
        let mut failures = Vec::new();
        for name in names {
            let path = dir.join(&name);
            match self.recover_entry(&path) {
                Ok(EntryOutcome::Live(op)) => report.live.push(op),
                Ok(EntryOutcome::Recovered(done)) => report.recovered.push(done),
                Ok(EntryOutcome::Gone) => {}
                Err(e) => failures.push(RecoveryFailure {
                    journal: path,
                    error: e.to_string(),
                }),
            }
        }
        if failures.is_empty() {
            Ok(report)
        } else {
            Err(StoreError::RecoveryIncomplete { failures })
        }
    }

    fn recover_entry(&self, path: &Path) -> Result<EntryOutcome> {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(EntryOutcome::Gone),
            Err(e) => return Err(StoreError::io(path, "open the journal entry", e)),
        };
        let Some(lock) = fsutil::try_flock(file, true, path)? else {
            let op = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            return Ok(EntryOutcome::Live(op));
        };
        // Its owner may have finished (and unlinked it) between our open and our flock.
        if !fsutil::still_linked(&lock, path)? {
            return Ok(EntryOutcome::Gone);
        }
        let mut bytes = Vec::new();
        (&*lock)
            .read_to_end(&mut bytes)
            .at(path, "read the journal entry")?;
        let record = parse_record(path, &bytes)?;
        let paths = OpPaths::new(self, &record.op, &record.env);
        let done = settle(self, &paths, &record)?;
        drop(lock);
        Ok(EntryOutcome::Recovered(done))
    }
}

fn parse_record(path: &Path, bytes: &[u8]) -> Result<JournalRecord> {
    let corrupt = |detail: String| StoreError::Corrupt {
        path: path.to_path_buf(),
        detail,
    };
    let record: JournalRecord = serde_json::from_slice(bytes).map_err(|e| {
        corrupt(format!(
            "unreadable journal entry ({e}); inspect the envs/.staging-, .old- and .trash- \
             directories named after it by hand"
        ))
    })?;
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    if record.format != JOURNAL_FORMAT || record.op != stem || record.op.contains('/') {
        return Err(corrupt(format!(
            "journal entry for op {:?} (format {}) does not match its file name",
            record.op, record.format
        )));
    }
    Ok(record)
}

/// Bring one operation's directories to a consistent end state and delete its journal entry.
/// Uses only what is on disk; every step is idempotent.
pub(super) fn settle(store: &Store, p: &OpPaths, record: &JournalRecord) -> Result<RecoveredOp> {
    let mut actions = Vec::new();
    if !fsutil::exists(&p.env)? && fsutil::exists(&p.old)? {
        match fsutil::rename_noreplace(&p.old, &p.env) {
            Ok(()) => {
                actions.push(format!(
                    "restored the previous environment from {}",
                    p.old.display()
                ));
                fsutil::fsync_dir(&p.envs_dir)?;
                crashpoint::hit("settle: previous environment restored");
            }
            // Someone else put an environment there meanwhile: keep theirs.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(source) => {
                return Err(StoreError::Rename {
                    from: p.old.clone(),
                    to: p.env.clone(),
                    source,
                })
            }
        }
    }
    if let Some(old) = &record.supersedes {
        if fsutil::exists(&p.env)? {
            if let Some(action) = retire_superseded(store, p, old)? {
                actions.push(action);
            }
        }
    }
    let leftovers = [
        (&p.staging, "removed the unfinished staging directory"),
        (&p.old, "removed the replaced previous environment"),
        (&p.trash, "finished removing the destroyed environment"),
    ];
    for (dir, what) in leftovers {
        if fsutil::exists(dir)? {
            store.remove_tree(dir)?;
            actions.push(format!("{what} {}", dir.display()));
            crashpoint::hit("settle: leftover directory removed");
        }
    }
    fsutil::fsync_dir(&p.envs_dir)?;
    remove_entry(p)?;
    Ok(RecoveredOp {
        op_id: record.op.clone(),
        kind: record.kind,
        env: record.env.clone(),
        actions,
        env_present: fsutil::exists(&p.env)?,
    })
}

/// Remove the environment that a finished operation's environment supersedes, unless programs
/// are running in it (then it is kept, and the returned note says so).
pub(super) fn retire_superseded(store: &Store, p: &OpPaths, old: &EnvId) -> Result<Option<String>> {
    let old_dir = store.env_dir(old);
    if !fsutil::exists(&old_dir)? {
        return Ok(None);
    }
    if store.running_sessions(old)? > 0 {
        return Ok(Some(format!(
            "kept superseded environment {} because programs are running in it; destroy it later",
            old.short()
        )));
    }
    fsutil::rename_noreplace(&old_dir, &p.trash).map_err(|source| StoreError::Rename {
        from: old_dir.clone(),
        to: p.trash.clone(),
        source,
    })?;
    crashpoint::hit("supersede: replaced environment moved to trash");
    fsutil::fsync_dir(&p.envs_dir)?;
    store.remove_tree(&p.trash)?;
    crashpoint::hit("supersede: replaced environment removed");
    Ok(Some(format!(
        "removed superseded environment {}",
        old.short()
    )))
}

/// Delete the journal entry (its owner still holds the flock) and make that durable.
pub(super) fn remove_entry(p: &OpPaths) -> Result<()> {
    fsutil::remove_file_if_exists(&p.journal)?;
    crashpoint::hit("journal entry removed");
    fsutil::fsync_dir(&p.journal_dir)
}

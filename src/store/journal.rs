//! Write-ahead journal for the multi-step changes of an environment directory.
//!
//! Protocol (see docs/storage.md for the full crash table):
//! 1. [`Store::begin`] writes `journal/<op>.json` atomically and keeps an exclusive flock on it
//!    (taken on the temp file before the rename, so the entry is never visible unlocked while its
//!    process lives), then creates the empty `envs/.staging-<op>`.
//! 2. [`Operation::install`]: `envs/<id>` → `envs/.old-<op>` (if present), then staging →
//!    `envs/<id>`, then delete `.old-<op>`, then delete the journal entry.
//!    [`Operation::remove_env`]: `envs/<id>` → `envs/.trash-<op>`, delete staging and trash,
//!    delete the entry.
//! 3. Settling an entry (on drop of an unfinished [`Operation`], or by [`Store::recover`] once
//!    its flock is free because its process died) looks only at what is on disk: if `envs/<id>`
//!    is missing and `.old-<op>` exists, the old one is renamed back; then staging, `.old-<op>`
//!    and `.trash-<op>` are deleted, then the entry. Every step is idempotent, so a crash during
//!    recovery is settled by the next one.
//!
//! Every move into `envs/<id>` uses `RENAME_NOREPLACE`. A `.old-<op>` is only deleted while
//! `envs/<id>` exists, and is never restored once its deletion may have started, so an environment
//! directory is always complete: the old one or the new one.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use nix::fcntl::Flock;
use serde::{Deserialize, Serialize};

use super::error::{IoContext, Result, StoreError};
use super::fsutil::{self, LockedTemp, TEMP_MARK};
use super::meta;
use super::recover::{remove_entry, settle};
use super::Store;
use crate::crashpoint;
use crate::types::EnvId;

pub(super) const JOURNAL_FORMAT: u32 = 1;
pub(crate) const STAGING_PREFIX: &str = ".staging-";
pub(crate) const OLD_PREFIX: &str = ".old-";
pub(crate) const TRASH_PREFIX: &str = ".trash-";

/// What an operation is for; recorded in the journal for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpKind {
    Build,
    Rebuild,
    Archive,
    Unarchive,
    Destroy,
    Update,
}

impl OpKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OpKind::Build => "build",
            OpKind::Rebuild => "rebuild",
            OpKind::Archive => "archive",
            OpKind::Unarchive => "unarchive",
            OpKind::Destroy => "destroy",
            OpKind::Update => "update",
        }
    }
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The content of `journal/<op>.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct JournalRecord {
    pub(super) format: u32,
    pub(super) op: String,
    pub(super) kind: OpKind,
    pub(super) env: EnvId,
    pub(super) pid: u32,
    pub(super) started_at: u64,
    /// An environment that the installed one replaces under a different id (a rebuild after
    /// the manifest changed). Once the new environment is in place, this one is removed, by
    /// `install` or, after a crash, by recovery: so a crash never leaves both behind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) supersedes: Option<EnvId>,
}

/// Every path one operation touches.
#[derive(Debug, Clone)]
pub(super) struct OpPaths {
    pub(super) journal: PathBuf,
    pub(super) staging: PathBuf,
    pub(super) old: PathBuf,
    pub(super) trash: PathBuf,
    pub(super) env: PathBuf,
    pub(super) envs_dir: PathBuf,
    pub(super) journal_dir: PathBuf,
}

impl OpPaths {
    pub(super) fn new(store: &Store, op: &str, env: &EnvId) -> OpPaths {
        let envs_dir = store.envs_dir();
        OpPaths {
            journal: store.journal_dir().join(format!("{op}.json")),
            staging: envs_dir.join(format!("{STAGING_PREFIX}{op}")),
            old: envs_dir.join(format!("{OLD_PREFIX}{op}")),
            trash: envs_dir.join(format!("{TRASH_PREFIX}{op}")),
            env: store.env_dir(env),
            journal_dir: store.journal_dir(),
            envs_dir,
        }
    }
}

/// If `name` is a transient directory of an operation (`.staging-`, `.old-`, `.trash-`), the
/// operation's id.
pub(crate) fn transient_op_id(name: &str) -> Option<&str> {
    [STAGING_PREFIX, OLD_PREFIX, TRASH_PREFIX]
        .iter()
        .find_map(|prefix| name.strip_prefix(prefix))
        .filter(|op| !op.is_empty())
}

/// A journalled change of one environment directory, in progress. Dropping it without calling
/// [`Operation::install`] or [`Operation::remove_env`] means the operation failed: it is rolled
/// back on the spot.
#[derive(Debug)]
pub struct Operation {
    store: Store,
    record: JournalRecord,
    paths: OpPaths,
    lock: Option<Flock<File>>,
    finished: bool,
}

impl Store {
    /// Start a journalled operation on `env`: record it, lock the record, create the staging
    /// directory.
    pub fn begin(&self, kind: OpKind, env: &EnvId) -> Result<Operation> {
        self.begin_with(kind, env, None)
    }

    /// Like [`Store::begin`], for an environment that replaces `old` (another id): `install`
    /// puts the new one in place and then removes `old`, and recovery finishes that removal
    /// if a crash comes in between.
    pub fn begin_superseding(&self, kind: OpKind, env: &EnvId, old: &EnvId) -> Result<Operation> {
        self.begin_with(kind, env, Some(old))
    }

    fn begin_with(
        &self,
        kind: OpKind,
        env: &EnvId,
        supersedes: Option<&EnvId>,
    ) -> Result<Operation> {
        let op = fsutil::unique_suffix();
        let record = JournalRecord {
            format: JOURNAL_FORMAT,
            op: op.clone(),
            kind,
            env: env.clone(),
            pid: std::process::id(),
            started_at: fsutil::now_secs(),
            supersedes: supersedes.cloned(),
        };
        let paths = OpPaths::new(self, &op, env);
        let bytes = serde_json::to_vec_pretty(&record)
            .map_err(|e| StoreError::io(&paths.journal, "encode", io::Error::other(e)))?;
        let temp_name = format!(".{op}.json{TEMP_MARK}{}", fsutil::unique_suffix());
        let mut temp = LockedTemp::create(&paths.journal_dir, &temp_name, 0o644)?;
        let temp_path = temp.path().to_path_buf();
        temp.file().write_all(&bytes).at(&temp_path, "write")?;
        temp.sync()?;
        crashpoint::hit("begin: journal temp file written and synced");
        let lock = temp.persist(&paths.journal)?;
        // From here on, dropping the operation settles (rolls back) the entry.
        let operation = Operation {
            store: self.clone(),
            record,
            paths,
            lock: Some(lock),
            finished: false,
        };
        crashpoint::hit("begin: journal entry renamed into place");
        fsutil::fsync_dir(&operation.paths.journal_dir)?;
        crashpoint::hit("begin: journal directory synced");
        let staging = &operation.paths.staging;
        fs::create_dir(staging).at(staging, "create the staging directory")?;
        crashpoint::hit("begin: staging directory created");
        fsutil::fsync_dir(&operation.paths.envs_dir)?;
        Ok(operation)
    }
}

impl Operation {
    /// The operation id (`<nanos hex>-<pid>-<counter>`).
    pub fn id(&self) -> &str {
        &self.record.op
    }

    pub fn kind(&self) -> OpKind {
        self.record.kind
    }

    pub fn env(&self) -> &EnvId {
        &self.record.env
    }

    /// `envs/.staging-<op>`: build the new environment directory here, including its meta.json
    /// (via [`Store::write_meta`]).
    pub fn staging_dir(&self) -> PathBuf {
        self.paths.staging.clone()
    }

    /// The journal entry's path.
    pub fn journal_path(&self) -> &Path {
        &self.paths.journal
    }

    /// Put the staging directory in place as `envs/<id>`, replacing the existing environment if
    /// there is one. The staging directory must hold a valid meta.json for this environment. On
    /// error the operation is rolled back (or, if the new directory is already in place,
    /// completed) before this returns.
    pub fn install(mut self) -> Result<()> {
        self.check_staging_meta()?;
        let p = self.paths.clone();
        fsutil::fsync_dir(&p.staging)?;
        if fsutil::exists(&p.env)? {
            move_noreplace(&p.env, &p.old)?;
            crashpoint::hit("install: previous environment moved aside");
        }
        move_noreplace(&p.staging, &p.env)?;
        crashpoint::hit("install: new environment renamed into place");
        fsutil::fsync_dir(&p.envs_dir)?;
        crashpoint::hit("install: environments directory synced");
        self.store.remove_tree(&p.old)?;
        crashpoint::hit("install: previous environment removed");
        if let Some(old) = &self.record.supersedes {
            super::recover::retire_superseded(&self.store, &p, old)?;
        }
        self.finish()
    }

    /// Remove `envs/<id>` (and the unused staging directory). `NotFound` if it does not exist.
    pub fn remove_env(mut self) -> Result<()> {
        let p = self.paths.clone();
        if !fsutil::exists(&p.env)? {
            return Err(StoreError::NotFound {
                id: self.record.env.clone(),
            });
        }
        move_noreplace(&p.env, &p.trash)?;
        crashpoint::hit("remove: environment moved to trash");
        fsutil::fsync_dir(&p.envs_dir)?;
        crashpoint::hit("remove: environments directory synced");
        self.store.remove_tree(&p.staging)?;
        crashpoint::hit("remove: staging directory removed");
        self.store.remove_tree(&p.trash)?;
        crashpoint::hit("remove: trash removed");
        fsutil::fsync_dir(&p.envs_dir)?;
        self.finish()
    }

    fn check_staging_meta(&self) -> Result<()> {
        let path = self.paths.staging.join(meta::META_FILE);
        match meta::read_meta_file(&path)? {
            Some(m) if m.id == self.record.env => Ok(()),
            Some(m) => Err(StoreError::Corrupt {
                path,
                detail: format!(
                    "staged metadata is for {} but the operation is for {}",
                    m.id, self.record.env
                ),
            }),
            None => Err(StoreError::Corrupt {
                path,
                detail: "nothing to install: write the metadata into the staging directory first"
                    .to_string(),
            }),
        }
    }

    fn finish(&mut self) -> Result<()> {
        remove_entry(&self.paths)?;
        self.finished = true;
        self.lock = None;
        Ok(())
    }

    /// Simulate a crash: release the journal lock without settling anything, as a killed process
    /// would.
    #[cfg(test)]
    pub(crate) fn abandon(mut self) {
        self.lock = None;
        std::mem::forget(self);
    }
}

fn move_noreplace(from: &Path, to: &Path) -> Result<()> {
    fsutil::rename_noreplace(from, to).map_err(|source| StoreError::Rename {
        from: from.to_path_buf(),
        to: to.to_path_buf(),
        source,
    })
}

impl Drop for Operation {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        if let Err(e) = settle(&self.store, &self.paths, &self.record) {
            eprintln!(
                "karapace-tui: error: could not roll back the unfinished {} of environment {}: {e}; \
                 the journal entry `{}` is kept and the next store command retries",
                self.record.kind,
                self.record.env.short(),
                self.paths.journal.display()
            );
        }
    }
}

//! Finding and describing environments: `ENV` resolution, `list`, `inspect`.
//!
//! These never take a lock and never write, so they cannot block behind a build or a running
//! program, and they report broken metadata instead of skipping it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{Engine, EngineError, Result};
use crate::lock::LockFile;
use crate::store::{EnvMeta, StoreError};
use crate::types::{BackendKind, Digest, EnvId, EnvState};

/// The state shown to users: the stored state, plus `running` derived from live sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StateView {
    Defined,
    Built,
    Running,
    Frozen,
    Archived,
}

impl StateView {
    pub fn of(state: EnvState, sessions: usize) -> StateView {
        match state {
            EnvState::Built if sessions > 0 => StateView::Running,
            EnvState::Built => StateView::Built,
            EnvState::Defined => StateView::Defined,
            EnvState::Frozen => StateView::Frozen,
            EnvState::Archived => StateView::Archived,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StateView::Defined => "defined",
            StateView::Built => "built",
            StateView::Running => "running",
            StateView::Frozen => "frozen",
            StateView::Archived => "archived",
        }
    }
}

/// One row of `list` (and the object `build --json` prints).
#[derive(Debug, Clone, Serialize)]
pub struct EnvSummary {
    pub id: EnvId,
    pub short_id: String,
    pub name: Option<String>,
    pub state: StateView,
    pub backend: BackendKind,
    pub image: String,
    pub sessions: usize,
    pub manifest: Option<PathBuf>,
    pub created_at: u64,
    pub updated_at: u64,
}

/// Everything `inspect` shows.
#[derive(Debug, Clone, Serialize)]
pub struct EnvDetails {
    #[serde(flatten)]
    pub summary: EnvSummary,
    pub path: PathBuf,
    pub disk_usage_bytes: u64,
    pub layers: Vec<Digest>,
    pub archive: Option<Digest>,
    pub lock: LockFile,
    /// Each host integration's state on this host (namespace environments; other backends
    /// apply none).
    pub integrations: Vec<crate::integration::Status>,
}

/// A listed environment whose metadata could not be read.
#[derive(Debug)]
pub struct BrokenEnv {
    pub id: EnvId,
    pub error: StoreError,
}

impl Engine {
    fn summary_with(&self, meta: &EnvMeta, sessions: usize) -> EnvSummary {
        EnvSummary {
            id: meta.id.clone(),
            short_id: meta.id.short().to_string(),
            name: meta.name.clone(),
            state: StateView::of(meta.state, sessions),
            backend: meta.backend,
            image: meta.base_image.clone(),
            sessions,
            manifest: meta.manifest_path.clone(),
            created_at: meta.created_at,
            updated_at: meta.updated_at,
        }
    }

    /// The summary of one environment, asking its backend for the live status.
    pub(super) fn summary(&self, meta: &EnvMeta) -> Result<EnvSummary> {
        let sessions = self.backend(meta.backend).status(&self.store, &meta.id)?;
        Ok(self.summary_with(meta, sessions))
    }

    /// Every environment, sorted by name then id; broken ones are returned, not skipped.
    pub fn list(&self) -> Result<(Vec<EnvSummary>, Vec<BrokenEnv>)> {
        let running: HashMap<EnvId, usize> = self.store.running_envs()?;
        let mut good = Vec::new();
        let mut broken = Vec::new();
        for (id, meta) in self.store.list_meta()? {
            match meta {
                Ok(meta) => {
                    let sessions = running.get(&id).copied().unwrap_or(0);
                    good.push(self.summary_with(&meta, sessions));
                }
                Err(error) => broken.push(BrokenEnv { id, error }),
            }
        }
        good.sort_by(|a, b| {
            (a.name.is_none(), &a.name, &a.id).cmp(&(b.name.is_none(), &b.name, &b.id))
        });
        Ok((good, broken))
    }

    /// Resolve `ENV`: a full id, a unique id prefix of at least 4 characters, or a name.
    pub fn find(&self, query: &str) -> Result<EnvMeta> {
        if let Ok(id) = query.parse::<EnvId>() {
            if self.store.env_dir(&id).exists() {
                return Ok(self.store.read_meta(&id)?);
            }
        }
        let mut matches: Vec<EnvMeta> = Vec::new();
        let prefix_ok = query.len() >= 4 && query.bytes().all(|b| b.is_ascii_hexdigit());
        for (id, meta) in self.store.list_meta()? {
            let by_prefix = prefix_ok && id.as_str().starts_with(query);
            match meta {
                Ok(meta) if by_prefix || meta.name.as_deref() == Some(query) => matches.push(meta),
                // A broken entry that the query names by id must not be passed over silently.
                Err(e) if by_prefix => return Err(e.into()),
                _ => {}
            }
        }
        match matches.len() {
            1 => Ok(matches.remove(0)),
            0 if query.len() < 4 && query.bytes().all(|b| b.is_ascii_hexdigit()) => {
                Err(EngineError::PrefixTooShort {
                    query: query.to_string(),
                })
            }
            0 => Err(EngineError::NotFound {
                query: query.to_string(),
            }),
            _ => Err(EngineError::Ambiguous {
                query: query.to_string(),
                candidates: matches
                    .iter()
                    .map(|m| format!("  {} {}", m.id, m.name.as_deref().unwrap_or("-")))
                    .collect(),
            }),
        }
    }

    /// Bytes an environment's directory takes (a walk of its tree; see `fsutil::tree_size`).
    pub fn disk_usage(&self, id: &EnvId) -> Result<u64> {
        let path = self.store.env_dir(id);
        crate::fsutil::tree_size(&path).map_err(|source| EngineError::Io {
            op: "measure",
            path,
            source,
        })
    }

    pub fn inspect(&self, query: &str) -> Result<EnvDetails> {
        let meta = self.find(query)?;
        let path = self.store.env_dir(&meta.id);
        let disk_usage_bytes =
            crate::fsutil::tree_size(&path).map_err(|source| EngineError::Io {
                op: "measure",
                path: path.clone(),
                source,
            })?;
        let lock = self.lock_of(&meta)?;
        let integrations = if meta.backend == BackendKind::Namespace {
            crate::integration::for_environment(&lock, &self.parse_env.home, &path).report
        } else {
            Vec::new()
        };
        Ok(EnvDetails {
            summary: self.summary(&meta)?,
            lock,
            integrations,
            layers: meta.layers.clone(),
            archive: meta.archive.clone(),
            disk_usage_bytes,
            path,
        })
    }

    /// The environment most recently built from the manifest at `path`, if any.
    pub(super) fn latest_from_manifest(&self, path: &Path) -> Result<Option<EnvMeta>> {
        let mut best: Option<EnvMeta> = None;
        for (_, meta) in self.store.list_meta()? {
            let meta = meta?;
            if meta.manifest_path.as_deref() == Some(path)
                && best
                    .as_ref()
                    .is_none_or(|b| meta.updated_at >= b.updated_at)
            {
                best = Some(meta);
            }
        }
        Ok(best)
    }
}

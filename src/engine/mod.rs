//! The lifecycle of environments, shared by the CLI and the TUI.
//!
//! Every operation follows the same discipline:
//! - input is validated before anything on disk changes (manifest, names, state transitions);
//! - a change to one environment holds that environment's lock, builds take the store lock
//!   shared and `gc` exclusive, and nothing holds a store-wide lock while a user's program
//!   runs (run markers record sessions instead), so `list` never blocks;
//! - multi-step changes go through a journalled store operation, so a crash at any point is
//!   rolled back or completed by the next mutating command, and a failed build leaves nothing.
//!
//! `build.rs` resolves and builds, `lifecycle.rs` holds the state transitions, `query.rs`
//! finds and describes environments.

mod build;
mod error;
mod exports;
mod images;
mod lifecycle;
mod maint;
mod query;

use std::path::Path;
use std::sync::Arc;

pub use build::{BuildOptions, BuildOutcome};
pub use error::{exit, EngineError};
pub use exports::{AppExported, ExportRow};
pub use images::ImageInfo;
pub use maint::write_template;
pub use query::{BrokenEnv, EnvDetails, EnvSummary, StateView};

use crate::events::EventSink;
use crate::manifest::ParseEnv;
use crate::runtime::backend::{backend_for, Availability, RuntimeBackend};
use crate::store::Store;
use crate::types::BackendKind;

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

pub struct Engine {
    store: Store,
    parse_env: ParseEnv,
    events: Arc<dyn EventSink>,
}

impl Engine {
    /// Open (creating if needed) the store at `store_root`. Cheap: no scan, no recovery.
    pub fn open(
        store_root: &Path,
        parse_env: ParseEnv,
        events: Arc<dyn EventSink>,
    ) -> Result<Engine> {
        let store = Store::open(store_root)?;
        let plan_dir = store.root().join("tmp");
        Ok(Engine {
            store: store.with_tree_remover(Arc::new(move |tree| remove_tree(tree, &plan_dir))),
            parse_env,
            events,
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn events(&self) -> &dyn EventSink {
        self.events.as_ref()
    }

    /// The user's mount allow list (`crate::policy`).
    fn mount_policy(&self) -> Result<crate::policy::MountPolicy> {
        Ok(crate::policy::MountPolicy::load(&self.parse_env.home)?)
    }

    fn env_policy(&self) -> Result<crate::envpolicy::EnvPolicy> {
        Ok(crate::policy::load_env_policy(&self.parse_env.home)?)
    }

    /// The security policy's checks of a manifest before a build: mount sources, and `[env]`
    /// names against the user's deny list.
    fn check_policy(&self, manifest: &crate::manifest::Manifest) -> Result<()> {
        self.mount_policy()?.check_manifest(&manifest.mounts)?;
        self.env_policy()?
            .check_manifest(&manifest.env)
            .map_err(crate::policy::PolicyError::from)?;
        Ok(())
    }

    fn backend(&self, kind: BackendKind) -> Box<dyn RuntimeBackend> {
        backend_for(kind)
    }

    /// Finish or roll back operations whose process died, reporting what was done.
    fn recover(&self) -> Result<()> {
        let report = self.store.recover()?;
        for line in report.describe() {
            self.events
                .emit(crate::events::Event::warn(format!("recovered: {line}")));
        }
        Ok(())
    }

    /// Every prerequisite check of every backend on this host, and of this store
    /// (`crate::prereq`; what `doctor` prints).
    pub fn doctor(&self) -> crate::prereq::Report {
        self.doctor_with(true)
    }

    /// [`Engine::doctor`] without starting test containers (`Context::try_containers`).
    pub fn doctor_quick(&self) -> crate::prereq::Report {
        self.doctor_with(false)
    }

    fn doctor_with(&self, try_containers: bool) -> crate::prereq::Report {
        let context = crate::prereq::Context {
            store: self.store.root().to_path_buf(),
            default_backend: BackendKind::default(),
            try_containers,
        };
        crate::prereq::run(&crate::prereq::SystemHost::new(), &context)
    }

    /// Availability of every backend on this host, derived from [`Engine::doctor`].
    pub fn backends(&self) -> Vec<Availability> {
        self.doctor().backends()
    }
}

use crate::store::now_secs as now;

/// How the engine deletes environment trees (staging, replaced, destroyed): plainly, and when
/// that is refused, from inside a user namespace with the user's subordinate ids, which a
/// rootless sandbox may have given files to (`sandbox::remove`).
fn remove_tree(tree: &Path, plan_dir: &Path) -> std::io::Result<()> {
    match crate::store::remove_tree(tree) {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            crate::sandbox::remove::remove_as_subordinate_root(tree, plan_dir, e)
        }
        other => other,
    }
}

/// Names: 1–64 characters from `[A-Za-z0-9._-]`, starting with a letter or digit, and not
/// 64 hex characters (that would read as an id). The character set keeps names safe in
/// terminal markers (OSC 777), file names and shell completions.
pub fn validate_name(name: &str) -> Result<()> {
    let problem = if name.is_empty() || name.len() > 64 {
        Some("must be 1 to 64 characters long")
    } else if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        Some("must start with a letter or digit")
    } else if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        Some("may contain only letters, digits, '.', '_' and '-'")
    } else if name.parse::<crate::types::EnvId>().is_ok() {
        Some("must not look like a 64-character environment id")
    } else {
        None
    };
    match problem {
        Some(reason) => Err(EngineError::InvalidName {
            name: name.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests;

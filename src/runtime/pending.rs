//! Backends that this version of karapace-tui does not implement yet (`namespace`, `oci`).
//!
//! They are selectable in a manifest, so that manifests written for the original keep parsing,
//! but every operation fails with `Unavailable` and `doctor` reports them as unavailable with
//! the reason. Nothing here pretends to succeed.

use std::path::Path;

use super::backend::{
    Availability, BackendError, BuildOutput, BuildRequest, ResolveRequest, RunRequest,
    RuntimeBackend,
};
use crate::lock::Resolution;
use crate::store::Store;
use crate::types::{BackendKind, EnvId};

pub struct PendingBackend {
    kind: BackendKind,
}

impl PendingBackend {
    pub fn new(kind: BackendKind) -> PendingBackend {
        PendingBackend { kind }
    }

    fn reason(&self) -> String {
        format!(
            "the {} backend is not implemented in karapace-tui {} yet (see docs/roadmap.md)",
            self.kind,
            env!("CARGO_PKG_VERSION")
        )
    }

    fn unavailable(&self) -> BackendError {
        BackendError::Unavailable {
            backend: self.kind,
            reason: self.reason(),
            fix: "set `backend = \"mock\"` under [runtime] in karapace.toml to try the lifecycle \
                  without isolation"
                .to_string(),
        }
    }
}

impl RuntimeBackend for PendingBackend {
    fn kind(&self) -> BackendKind {
        self.kind
    }

    fn availability(&self) -> Availability {
        Availability {
            backend: self.kind,
            available: false,
            detail: self.reason(),
            fix: Some("use the mock backend until this backend lands".to_string()),
        }
    }

    fn resolve(&self, _req: &ResolveRequest) -> Result<Resolution, BackendError> {
        Err(self.unavailable())
    }

    fn build(&self, _req: &BuildRequest) -> Result<BuildOutput, BackendError> {
        Err(self.unavailable())
    }

    fn run(&self, _req: &RunRequest) -> Result<i32, BackendError> {
        Err(self.unavailable())
    }

    fn status(&self, store: &Store, id: &EnvId) -> Result<usize, BackendError> {
        // Nothing can run under an unimplemented backend, but report what the store records
        // rather than assuming zero.
        Ok(store.running_sessions(id)?)
    }

    fn stop(&self, _store: &Store, _id: &EnvId) -> Result<usize, BackendError> {
        Err(self.unavailable())
    }

    fn teardown(&self, _env_dir: &Path) -> Result<(), BackendError> {
        // Nothing of an unimplemented backend can exist outside the environment directory, so
        // destroying an environment recorded with this backend needs no teardown.
        Ok(())
    }

    fn supports_read_only(&self) -> bool {
        false
    }
}

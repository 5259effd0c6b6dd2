//! `build` and `rebuild`: manifest → lock → environment.
//!
//! The lock beside the manifest is authoritative while it matches the manifest (as with
//! Cargo.lock): an unchanged manifest resolves to the same id without touching the network,
//! and when that environment exists the build is a no-op. When the manifest changed, only what
//! changed is re-resolved and the versions of untouched packages stay pinned. `--update`
//! re-resolves everything; `--locked` refuses any change and fails with the drift.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::{now, validate_name, Engine, EngineError, Result};
use crate::events::Event;
use crate::image::Images;
use crate::lock::{lock_path_for, LockError, LockFile};
use crate::manifest::Manifest;
use crate::runtime::backend::{BuildRequest, ResolveRequest, RuntimeBackend};
use crate::store::{EnvMeta, OpKind};
use crate::types::{EnvId, EnvState};

#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    pub manifest: PathBuf,
    pub name: Option<String>,
    /// Use the lock exactly; fail if it is missing or the manifest drifted from it.
    pub locked: bool,
    /// Never touch the network.
    pub offline: bool,
    /// Re-resolve everything, ignoring the versions in the existing lock.
    pub update: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct BuildOutcome {
    #[serde(flatten)]
    pub env: super::EnvSummary,
    /// False when the environment already existed and nothing was built.
    pub built: bool,
    /// The lock file that describes it.
    pub lock_path: PathBuf,
    /// Desktop files of `[gui] apps` written on the host by this build.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exported: Vec<PathBuf>,
}

impl Engine {
    pub fn build(&self, opts: &BuildOptions) -> Result<BuildOutcome> {
        self.cancellable("build", || self.build_now(opts))
    }

    /// Runs `op`; if it fails after the listener asked to cancel, the failure is the cancel
    /// (the download, unpack or install it interrupted failed because of it). A build that
    /// got to the end anyway is kept.
    fn cancellable<T>(&self, what: &'static str, op: impl FnOnce() -> Result<T>) -> Result<T> {
        match op() {
            Err(_) if self.events.cancelled() => Err(EngineError::Cancelled { what }),
            other => other,
        }
    }

    /// Fails if the listener asked to cancel (between the steps of a build).
    fn check_cancelled(&self, what: &'static str) -> Result<()> {
        if self.events.cancelled() {
            return Err(EngineError::Cancelled { what });
        }
        Ok(())
    }

    fn build_now(&self, opts: &BuildOptions) -> Result<BuildOutcome> {
        if let Some(name) = &opts.name {
            validate_name(name)?;
        }
        let manifest = Manifest::load(&opts.manifest, &self.parse_env)?;
        self.check_policy(&manifest)?;
        let backend = self.backend(manifest.runtime.backend);
        let lock_path = lock_path_for(&manifest.path);
        // Held from resolution on: resolving may fetch a base image into the store, which gc
        // (exclusive) must not collect half-way.
        let _store_lock = self.store.lock_store_shared()?;
        let images = self.images()?;
        let lock = self.lock_for(&manifest, backend.as_ref(), &images, opts)?;
        self.recover()?;
        let built = {
            let _env_lock = self.store.lock_env(&lock.env_id)?;
            if self.store.env_dir(&lock.env_id).exists() {
                self.report_up_to_date(&lock.env_id)?;
                false
            } else {
                let name = self.pick_name(opts.name.as_deref(), &manifest)?;
                let target = Target {
                    name,
                    ..Target::default()
                };
                self.build_new(
                    &manifest,
                    &lock,
                    backend.as_ref(),
                    &images,
                    opts.offline,
                    target,
                )?;
                true
            }
        };
        // Renaming takes the names lock and then the environment lock, in that order
        // everywhere, so it runs after the environment lock above is released.
        if let (false, Some(name)) = (built, &opts.name) {
            if self.store.read_meta(&lock.env_id)?.name.as_deref() != Some(name.as_str()) {
                self.set_name(&lock.env_id, Some(name.clone()))?;
            }
        }
        self.write_lock_if_changed(&lock, &lock_path)?;
        let exported = self.export_gui_apps(&lock.env_id, &lock, !built)?;
        let env = self.summary(&self.store.read_meta(&lock.env_id)?)?;
        Ok(BuildOutcome {
            env,
            built,
            lock_path,
            exported,
        })
    }

    /// Rebuild from a clean base: the environment last built from this manifest is replaced
    /// by a fresh one (same id if the inputs are unchanged), so changes made inside the old
    /// one do not leak into the new one. Its name moves to the new environment.
    pub fn rebuild(&self, opts: &BuildOptions) -> Result<BuildOutcome> {
        self.cancellable("rebuild", || self.rebuild_now(opts))
    }

    fn rebuild_now(&self, opts: &BuildOptions) -> Result<BuildOutcome> {
        if let Some(name) = &opts.name {
            validate_name(name)?;
        }
        let manifest = Manifest::load(&opts.manifest, &self.parse_env)?;
        self.check_policy(&manifest)?;
        let Some(old) = self.latest_from_manifest(&manifest.path)? else {
            self.events.emit(Event::info(
                "no environment was built from this manifest yet; building a new one",
            ));
            return self.build(opts);
        };
        self.ensure_state(&old, "rebuild", &[EnvState::Built, EnvState::Defined])?;
        self.ensure_not_running(&old, "rebuild", false)?;
        let backend = self.backend(manifest.runtime.backend);
        let lock_path = lock_path_for(&manifest.path);
        let _store_lock = self.store.lock_store_shared()?;
        let images = self.images()?;
        let lock = self.lock_for(&manifest, backend.as_ref(), &images, opts)?;
        self.recover()?;
        let name = opts.name.clone().or_else(|| old.name.clone());
        {
            let _old_lock = self.store.lock_env(&old.id)?;
            // Re-read under the lock: another process may have changed it meanwhile.
            let old = self.store.read_meta(&old.id)?;
            self.ensure_state(&old, "rebuild", &[EnvState::Built, EnvState::Defined])?;
            self.ensure_not_running(&old, "rebuild", false)?;
            if lock.env_id == old.id {
                // Same inputs: build a fresh tree and swap it in place in one journalled step.
                let target = Target {
                    name,
                    replacing: Some(&old),
                    supersedes: None,
                };
                self.build_new(
                    &manifest,
                    &lock,
                    backend.as_ref(),
                    &images,
                    opts.offline,
                    target,
                )?;
            } else {
                let _new_lock = self.store.lock_env(&lock.env_id)?;
                if self.store.env_dir(&lock.env_id).exists() {
                    self.report_up_to_date(&lock.env_id)?;
                    // The name goes to the new environment before the old one is removed: a
                    // crash in between leaves the name on both (reported as ambiguous, and
                    // settled by the next rebuild), never on neither.
                    if let Some(name) = name {
                        self.write_name(&lock.env_id, Some(name))?;
                    }
                    self.backend(old.backend)
                        .teardown(&self.store.env_dir(&old.id))?;
                    self.store.begin(OpKind::Destroy, &old.id)?.remove_env()?;
                } else {
                    // One journalled operation installs the new environment (already carrying
                    // the name) and then removes the old one; recovery completes it after a
                    // crash, so the pair is never left half-replaced.
                    self.backend(old.backend)
                        .teardown(&self.store.env_dir(&old.id))?;
                    let target = Target {
                        name,
                        replacing: None,
                        supersedes: Some(&old.id),
                    };
                    self.build_new(
                        &manifest,
                        &lock,
                        backend.as_ref(),
                        &images,
                        opts.offline,
                        target,
                    )?;
                }
            }
        }
        self.write_lock_if_changed(&lock, &lock_path)?;
        // A new id: the old environment's exports move to it (written again), and the apps
        // among them need not be written twice. The same id: its exports still apply, and the
        // apps are written again from the fresh tree.
        let moved = lock.env_id != old.id;
        if moved {
            self.carry_exports(&old.id, &lock.env_id)?;
        }
        let exported = self.export_gui_apps(&lock.env_id, &lock, moved)?;
        let env = self.summary(&self.store.read_meta(&lock.env_id)?)?;
        Ok(BuildOutcome {
            env,
            built: true,
            lock_path,
            exported,
        })
    }

    /// The lock to build from: the existing one if it still matches the manifest, else a
    /// fresh resolution that keeps what the old lock pinned for unchanged inputs.
    ///
    /// A lock written before dependencies were pinned (`LockFile::pins_dependencies`) is
    /// resolved again by a plain build, which records them (a new id: the inputs now say
    /// more). `--locked` and `--offline` use it as it is, with a warning: its listed packages
    /// stay pinned and their dependencies come from the mirror, as when it was written.
    fn lock_for(
        &self,
        manifest: &Manifest,
        backend: &dyn RuntimeBackend,
        images: &Images,
        opts: &BuildOptions,
    ) -> Result<LockFile> {
        let lock_path = lock_path_for(&manifest.path);
        let existing = LockFile::read(&lock_path)?;
        if opts.locked {
            let Some(lock) = existing else {
                return Err(LockError::Missing { path: lock_path }.into());
            };
            let drift = lock.drift_from(manifest);
            if !drift.is_empty() {
                return Err(LockError::Drift {
                    path: lock_path,
                    drift,
                }
                .into());
            }
            self.warn_unpinned_dependencies(&lock, &lock_path, "--locked");
            return Ok(lock);
        }
        if let Some(lock) = &existing {
            if !opts.update && lock.drift_from(manifest).is_empty() {
                if lock.pins_dependencies() {
                    return Ok(lock.clone());
                }
                if opts.offline {
                    self.warn_unpinned_dependencies(lock, &lock_path, "--offline");
                    return Ok(lock.clone());
                }
            }
        }
        self.events.emit(Event::info(format!(
            "resolving {}",
            manifest.path.display()
        )));
        let keep = existing.as_ref().filter(|_| !opts.update);
        let locked_base = keep
            .filter(|old| base_unchanged(manifest, old))
            .map(|old| &old.base);
        let pins: BTreeMap<String, String> = keep
            .map(|old| {
                old.packages
                    .iter()
                    .map(|p| (p.name.clone(), p.version.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let mut resolution = backend.resolve(&ResolveRequest {
            manifest,
            locked_base,
            pins: &pins,
            offline: opts.offline,
            images,
            store: &self.store,
            events: self.events.as_ref(),
        })?;
        if let Some(base) = locked_base {
            resolution.base = base.clone();
        }
        let lock = LockFile::new(manifest, resolution);
        if let Some(old) = keep {
            self.report_dependency_changes(old, &lock);
        }
        Ok(lock)
    }

    /// Says that `lock` leaves its dependencies unpinned, when it does.
    fn warn_unpinned_dependencies(&self, lock: &LockFile, path: &std::path::Path, how: &str) {
        if !lock.pins_dependencies() {
            self.events.emit(Event::warn(format!(
                "{} pins the listed packages but not their dependencies (an older karapace-tui \
                 wrote it): with {how}, the dependencies are the mirror's current ones; run \
                 `karapace-tui build` once without {how} to pin them",
                path.display()
            )));
        }
    }

    /// Says which dependencies a new resolution changed against the previous lock (the
    /// listed packages keep their pins; their dependencies are resolved again).
    fn report_dependency_changes(&self, old: &LockFile, new: &LockFile) {
        let (Some(before), Some(after)) = (&old.dependencies, &new.dependencies) else {
            return;
        };
        let before: BTreeMap<&str, &str> = before
            .iter()
            .map(|p| (p.name.as_str(), p.version.as_str()))
            .collect();
        for dep in after {
            match before.get(dep.name.as_str()) {
                Some(version) if *version != dep.version => {
                    self.events.emit(Event::info(format!(
                        "dependency {}: {version} -> {}",
                        dep.name, dep.version
                    )));
                }
                _ => {}
            }
        }
    }

    /// Build into a journalled staging directory and install it as the environment.
    fn build_new(
        &self,
        manifest: &Manifest,
        lock: &LockFile,
        backend: &dyn RuntimeBackend,
        images: &Images,
        offline: bool,
        target: Target,
    ) -> Result<()> {
        let Target {
            name,
            replacing,
            supersedes,
        } = target;
        let op = match (replacing, supersedes) {
            (Some(_), _) => self.store.begin(OpKind::Rebuild, &lock.env_id)?,
            (None, Some(old)) => {
                self.store
                    .begin_superseding(OpKind::Rebuild, &lock.env_id, old)?
            }
            (None, None) => self.store.begin(OpKind::Build, &lock.env_id)?,
        };
        let staging = op.staging_dir();
        self.check_cancelled("build")?;
        self.events.emit(Event::info(format!(
            "building {} with the {} backend",
            lock.env_id.short(),
            backend.kind()
        )));
        let output = backend.build(&BuildRequest {
            manifest,
            lock,
            offline,
            images,
            staging: &staging,
            store: &self.store,
            events: self.events.as_ref(),
        })?;
        crate::crashpoint::hit("build: backend finished");
        // The last moment to stop: after this the new environment is committed.
        self.check_cancelled("build")?;
        let manifest_object = self
            .store
            .put_object_bytes(manifest.canonical_json().as_bytes())?;
        let lock_object = self.store.put_object_bytes(lock.to_toml().as_bytes())?;
        crate::crashpoint::hit("build: objects stored");
        let time = now();
        let meta = EnvMeta {
            id: lock.env_id.clone(),
            name,
            state: EnvState::Built,
            backend: manifest.runtime.backend,
            base_image: manifest.base.image.display(),
            manifest_path: Some(manifest.path.clone()),
            manifest_object,
            lock_object,
            layers: output.layers,
            archive: None,
            created_at: replacing.map_or(time, |old| old.created_at),
            updated_at: time,
        };
        self.store.write_meta(&staging, &meta)?;
        crate::crashpoint::hit("build: metadata staged");
        op.install()?;
        self.events
            .emit(Event::info(format!("built {}", lock.env_id.short())));
        Ok(())
    }

    fn report_up_to_date(&self, id: &EnvId) -> Result<()> {
        let meta = self.store.read_meta(id)?;
        self.events.emit(Event::info(format!(
            "environment {} is up to date ({})",
            id.short(),
            meta.state
        )));
        Ok(())
    }

    /// The requested name (which must be free) or, by default, the manifest directory's name
    /// when it is valid and free.
    fn pick_name(&self, requested: Option<&str>, manifest: &Manifest) -> Result<Option<String>> {
        if let Some(name) = requested {
            self.ensure_name_free(name, None)?;
            return Ok(Some(name.to_string()));
        }
        let default = manifest
            .path
            .parent()
            .and_then(|d| d.file_name())
            .map(|n| n.to_string_lossy().into_owned());
        let Some(default) = default.filter(|n| validate_name(n).is_ok()) else {
            return Ok(None);
        };
        match self.ensure_name_free(&default, None) {
            Ok(()) => Ok(Some(default)),
            Err(EngineError::NameTaken { .. }) => {
                self.events.emit(Event::info(format!(
                    "the name `{default}` is taken; the new environment has no name \
                     (name it with `karapace-tui rename ID NAME`)"
                )));
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn write_lock_if_changed(&self, lock: &LockFile, path: &std::path::Path) -> Result<()> {
        let current = LockFile::read(path).ok().flatten();
        if current.as_ref() != Some(lock) {
            lock.write(path)?;
            self.events
                .emit(Event::info(format!("wrote {}", path.display())));
        }
        Ok(())
    }
}

/// Where a build's result goes.
#[derive(Default)]
struct Target<'a> {
    name: Option<String>,
    /// The environment with the same id whose tree the new one replaces (clean rebuild).
    replacing: Option<&'a EnvMeta>,
    /// An environment with another id that the new one replaces (rebuild after a change).
    supersedes: Option<&'a EnvId>,
}

/// Whether the manifest still names the base image `old` pinned (and, if it pins a digest,
/// that one), so the new lock keeps that image.
fn base_unchanged(manifest: &Manifest, old: &LockFile) -> bool {
    old.base.image == manifest.base.image.canonical()
        && manifest
            .base
            .sha256
            .as_ref()
            .is_none_or(|pin| *pin == old.base.archive_sha256)
}

//! State transitions after a build: run, stop, freeze, archive, rename, destroy.
//!
//! ```text
//!   build ──▶ built ◀──▶ frozen        (freeze / unfreeze)
//!              │  ▲
//!    archive   ▼  │ unarchive
//!            archived
//!   running = built + live sessions (derived, never stored)
//! ```
//! `destroy` works from built and archived; a frozen environment must be unfrozen first, and a
//! running one stopped (or `--force`).

use std::ffi::OsString;
use std::fs::{self, File};
use std::io;

use super::{now, validate_name, Engine, EngineError, Result};
use crate::events::Event;
use crate::lock::LockFile;
use crate::runtime::backend::RunRequest;
use crate::store::{EnvMeta, OpKind};
use crate::types::{EnvId, EnvState};

impl Engine {
    /// Run `argv` (or an interactive shell when empty) in an environment; returns the exit code.
    /// With `stdout_to_stderr` the program's standard output goes to our stderr, which keeps
    /// stdout free for the single `--json` result document.
    pub fn run(&self, query: &str, argv: &[OsString], stdout_to_stderr: bool) -> Result<i32> {
        let meta = self.find(query)?;
        let backend = self.backend(meta.backend);
        match meta.state {
            EnvState::Built => {}
            EnvState::Frozen if backend.supports_read_only() => {}
            EnvState::Frozen => return Err(self.transition_error(
                &meta,
                "run a program in",
                "Its backend cannot guarantee read-only use; run `karapace-tui unfreeze` first.",
            )),
            _ => {
                return Err(self.transition_error(&meta, "run a program in", hint_for(meta.state)))
            }
        }
        let env_dir = self.store.env_dir(&meta.id);
        // First, so that slow set-up the backend can begin now overlaps the checks below.
        backend.prepare_run(&env_dir, self.events.as_ref())?;
        // Mount sources are checked again and resolved now: a link may have changed.
        let lock = self.mount_policy()?.resolve_lock(&self.lock_of(&meta)?)?;
        // The user's deny list may have grown since the build: checked again, as mounts are.
        let env_policy = self.env_policy()?;
        env_policy
            .check_manifest(&lock.env)
            .map_err(crate::policy::PolicyError::from)?;
        // The session marker is taken under the environment lock, so that a concurrent
        // destroy either sees the session or finishes before it starts; the lock is released
        // before the program runs, so other commands are never blocked by a running program.
        let marker = {
            let _env_lock = self.store.lock_env(&meta.id)?;
            if !env_dir.exists() {
                return Err(EngineError::NotFound {
                    query: query.to_string(),
                });
            }
            self.store.mark_running(&meta.id)?
        };
        let code = backend.run(&RunRequest {
            store: &self.store,
            env_dir: &env_dir,
            meta: &meta,
            lock: &lock,
            argv,
            marker: &marker,
            stdout_to_stderr,
            events: self.events.as_ref(),
            env_policy: &env_policy,
            home: &self.parse_env.home,
        })?;
        drop(marker);
        Ok(code)
    }

    /// End every running program of an environment; returns how many sessions were stopped.
    pub fn stop(&self, query: &str) -> Result<usize> {
        let meta = self.find(query)?;
        let stopped = self.backend(meta.backend).stop(&self.store, &meta.id)?;
        self.events.emit(Event::info(format!(
            "stopped {stopped} session(s) of {}",
            meta.id.short()
        )));
        Ok(stopped)
    }

    pub fn freeze(&self, query: &str) -> Result<EnvMeta> {
        self.transition(query, "freeze", &[EnvState::Built], EnvState::Frozen)
    }

    pub fn unfreeze(&self, query: &str) -> Result<EnvMeta> {
        self.transition(query, "unfreeze", &[EnvState::Frozen], EnvState::Built)
    }

    fn transition(
        &self,
        query: &str,
        action: &'static str,
        from: &[EnvState],
        to: EnvState,
    ) -> Result<EnvMeta> {
        let found = self.find(query)?;
        let _lock = self.store.lock_env(&found.id)?;
        let mut meta = self.store.read_meta(&found.id)?;
        self.ensure_state(&meta, action, from)?;
        self.ensure_not_running(&meta, action, false)?;
        meta.state = to;
        meta.updated_at = now();
        self.store
            .write_meta(&self.store.env_dir(&meta.id), &meta)?;
        Ok(meta)
    }

    /// Pack the environment's files into one store object and remove the tree.
    pub fn archive(&self, query: &str) -> Result<EnvMeta> {
        let found = self.find(query)?;
        let _store_lock = self.store.lock_store_shared()?;
        self.recover()?;
        let _lock = self.store.lock_env(&found.id)?;
        let mut meta = self.store.read_meta(&found.id)?;
        self.ensure_state(&meta, "archive", &[EnvState::Built])?;
        self.ensure_not_running(&meta, "archive", false)?;
        let backend = self.backend(meta.backend);
        if !backend.can_archive() {
            return Err(EngineError::Unsupported {
                action: "archive",
                backend: meta.backend,
            });
        }
        let env_dir = self.store.env_dir(&meta.id);
        backend.teardown(&env_dir)?;
        let op = self.store.begin(OpKind::Archive, &meta.id)?;
        let staging = op.staging_dir();
        let tar_path = staging.join(".archive.tar");
        let io_err = |op: &'static str, path: &std::path::Path| {
            let path = path.to_path_buf();
            move |source| EngineError::Io { op, path, source }
        };
        // Pack the backend's content; the metadata is rewritten below.
        backend.pack_archive(&self.store, &env_dir, &tar_path)?;
        let mut reader = File::open(&tar_path).map_err(io_err("open", &tar_path))?;
        let (digest, size) = self.store.put_object(&mut reader)?;
        fs::remove_file(&tar_path).map_err(io_err("remove", &tar_path))?;
        crate::crashpoint::hit("archive: object stored");
        meta.state = EnvState::Archived;
        meta.archive = Some(digest);
        meta.updated_at = now();
        self.store.write_meta(&staging, &meta)?;
        op.install()?;
        self.events.emit(Event::info(format!(
            "archived {} into one object of {size} bytes",
            meta.id.short()
        )));
        Ok(meta)
    }

    /// Restore an archived environment's files from its (verified) archive object.
    pub fn unarchive(&self, query: &str) -> Result<EnvMeta> {
        let found = self.find(query)?;
        let _store_lock = self.store.lock_store_shared()?;
        self.recover()?;
        let _lock = self.store.lock_env(&found.id)?;
        let mut meta = self.store.read_meta(&found.id)?;
        self.ensure_state(&meta, "unarchive", &[EnvState::Archived])?;
        let Some(digest) = meta.archive.clone() else {
            return Err(EngineError::MissingLock {
                id: meta.id.clone(),
                detail: "it is archived but records no archive object".to_string(),
            });
        };
        let backend = self.backend(meta.backend);
        if !backend.can_archive() {
            return Err(EngineError::Unsupported {
                action: "unarchive",
                backend: meta.backend,
            });
        }
        let op = self.store.begin(OpKind::Unarchive, &meta.id)?;
        let staging = op.staging_dir();
        let tar_path = staging.join(".archive.tar");
        let io_err = |op: &'static str, path: &std::path::Path| {
            let path = path.to_path_buf();
            move |source| EngineError::Io { op, path, source }
        };
        // The object is copied out whole before anything is unpacked: its hash is only checked
        // once every byte was read, and a rootless backend unpacks in another process (in a
        // user namespace), which must get verified bytes.
        let mut reader = self.store.open_object(&digest)?;
        let mut file = File::create(&tar_path).map_err(io_err("create", &tar_path))?;
        io::copy(&mut reader, &mut file)
            .map_err(io_err("copy the archive object to", &tar_path))?;
        drop(file);
        backend.unpack_archive(&self.store, &tar_path, &staging)?;
        fs::remove_file(&tar_path).map_err(io_err("remove", &tar_path))?;
        crate::crashpoint::hit("unarchive: unpacked");
        meta.state = EnvState::Built;
        meta.archive = None;
        meta.updated_at = now();
        self.store.write_meta(&op.staging_dir(), &meta)?;
        op.install()?;
        Ok(meta)
    }

    pub fn rename(&self, query: &str, name: &str) -> Result<EnvMeta> {
        validate_name(name)?;
        let found = self.find(query)?;
        self.set_name(&found.id, Some(name.to_string()))
    }

    /// Set an environment's name, refusing a name that another environment holds.
    pub(super) fn set_name(&self, id: &EnvId, name: Option<String>) -> Result<EnvMeta> {
        let _names = self.store.lock_names()?;
        if let Some(name) = &name {
            self.ensure_name_free(name, Some(id))?;
        }
        let _lock = self.store.lock_env(id)?;
        self.write_name(id, name)
    }

    /// Write a name into an environment's metadata; the caller holds its lock and has decided
    /// that the name may be used.
    pub(super) fn write_name(&self, id: &EnvId, name: Option<String>) -> Result<EnvMeta> {
        let mut meta = self.store.read_meta(id)?;
        meta.name = name;
        meta.updated_at = now();
        self.store.write_meta(&self.store.env_dir(id), &meta)?;
        Ok(meta)
    }

    /// Remove an environment and everything it owns (its store objects become garbage).
    pub fn destroy(&self, query: &str, force: bool) -> Result<EnvMeta> {
        let found = self.find(query)?;
        let backend = self.backend(found.backend);
        if force {
            // Stopped programs' commands release their session markers as they exit, a moment
            // later; a session that was just starting records its process only after its
            // marker exists, so it is stopped on a later pass.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while self.store.running_sessions(&found.id)? > 0
                && std::time::Instant::now() < deadline
            {
                backend.stop(&self.store, &found.id)?;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
        let _store_lock = self.store.lock_store_shared()?;
        self.recover()?;
        let _lock = self.store.lock_env(&found.id)?;
        let meta = self.store.read_meta(&found.id)?;
        self.ensure_state(
            &meta,
            "destroy",
            &[EnvState::Built, EnvState::Archived, EnvState::Defined],
        )?;
        self.ensure_not_running(&meta, "destroy", true)?;
        // Exports first: a failure here leaves the environment, never host files that run a
        // destroyed one.
        self.remove_exports(&meta)?;
        backend.teardown(&self.store.env_dir(&meta.id))?;
        self.store.begin(OpKind::Destroy, &meta.id)?.remove_env()?;
        self.events
            .emit(Event::info(format!("destroyed {}", meta.id.short())));
        Ok(meta)
    }

    pub(super) fn ensure_state(
        &self,
        meta: &EnvMeta,
        action: &'static str,
        allowed: &[EnvState],
    ) -> Result<()> {
        if allowed.contains(&meta.state) {
            Ok(())
        } else {
            Err(self.transition_error(meta, action, hint_for(meta.state)))
        }
    }

    fn transition_error(
        &self,
        meta: &EnvMeta,
        action: &'static str,
        hint: &'static str,
    ) -> EngineError {
        EngineError::InvalidTransition {
            env: display_env(meta),
            action,
            state: meta.state.to_string(),
            hint,
        }
    }

    pub(super) fn ensure_not_running(
        &self,
        meta: &EnvMeta,
        action: &'static str,
        force_helps: bool,
    ) -> Result<()> {
        let sessions = self.store.running_sessions(&meta.id)?;
        if sessions == 0 {
            return Ok(());
        }
        Err(EngineError::Running {
            env: display_env(meta),
            short_id: meta.id.short().to_string(),
            action,
            sessions,
            force: if force_helps { " or pass --force" } else { "" },
        })
    }

    pub(super) fn ensure_name_free(&self, name: &str, except: Option<&EnvId>) -> Result<()> {
        for (id, meta) in self.store.list_meta()? {
            // A corrupt entry's name is unknown; verify-store reports it separately.
            let Ok(meta) = meta else { continue };
            if meta.name.as_deref() == Some(name) && Some(&id) != except {
                return Err(EngineError::NameTaken {
                    name: name.to_string(),
                    owner: id.short().to_string(),
                });
            }
        }
        Ok(())
    }

    /// The lock an environment was built from, read back (verified) from the store.
    pub(super) fn lock_of(&self, meta: &EnvMeta) -> Result<LockFile> {
        let bytes = self.store.read_object(&meta.lock_object)?;
        let text = String::from_utf8(bytes).map_err(|e| EngineError::MissingLock {
            id: meta.id.clone(),
            detail: e.to_string(),
        })?;
        let source = self
            .store
            .root()
            .join("objects")
            .join(meta.lock_object.as_str());
        LockFile::parse(&text, &source).map_err(|e| EngineError::MissingLock {
            id: meta.id.clone(),
            detail: e.to_string(),
        })
    }
}

/// What to do about an environment in a state that does not allow an action.
fn hint_for(state: EnvState) -> &'static str {
    match state {
        EnvState::Frozen => "Run `karapace-tui unfreeze` first.",
        EnvState::Archived => "Run `karapace-tui unarchive` first.",
        EnvState::Defined => "Its build has not finished; run `karapace-tui build` again.",
        EnvState::Built => "That action needs a frozen or archived environment.",
    }
}

/// `short-id (name)` for messages.
pub(super) fn display_env(meta: &EnvMeta) -> String {
    match &meta.name {
        Some(name) => format!("{} ({name})", meta.id.short()),
        None => meta.id.short().to_string(),
    }
}

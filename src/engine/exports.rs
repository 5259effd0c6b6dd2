//! `export`, `export --bin`, `unexport`, `exports`, and the exports part of `destroy`: the
//! engine finds the environment, checks its state, holds its lock while the record changes,
//! and hands the work to `crate::export`.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{Engine, EngineError, Result};
use crate::events::Event;
use crate::export::{self, AppExport, BinExport, EnvView, Exporter, HostDirs, Records, Removal};
use crate::lock::LockFile;
use crate::store::EnvMeta;
use crate::types::{EnvId, EnvState};

/// One line of `exports`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExportRow {
    pub env: String,
    pub env_name: Option<String>,
    /// `app` or `bin`.
    pub kind: &'static str,
    /// The application's desktop file id, or the command's name.
    pub name: String,
    /// The host file.
    pub path: PathBuf,
    /// Whether the host file is still there.
    pub present: bool,
}

/// The result of exporting one application.
#[derive(Debug, Clone, Serialize)]
pub struct AppExported {
    pub env: String,
    #[serde(flatten)]
    pub export: AppExport,
    /// What the user should know (icons not found or kept …); also emitted as warnings.
    pub notes: Vec<String>,
}

impl Engine {
    fn host_dirs(&self) -> HostDirs {
        HostDirs::from_env(&self.parse_env.home)
    }

    fn records(&self) -> Records {
        Records::new(self.store.root())
    }

    /// The environment's files as the host sees them, for an export.
    fn env_view(&self, meta: &EnvMeta, action: &'static str) -> Result<EnvView> {
        self.ensure_state(meta, action, &[EnvState::Built, EnvState::Frozen])?;
        let backend = self.backend(meta.backend);
        let lock = self.lock_of(meta)?;
        let layers = backend
            .file_layers(&self.store, &self.store.env_dir(&meta.id), &lock)
            .ok_or(EngineError::Unsupported {
                action,
                backend: meta.backend,
            })?;
        if let Some(missing) = layers.iter().find(|l| !l.is_dir()) {
            return Err(export::ExportError::LayerMissing {
                path: missing.clone(),
            }
            .into());
        }
        Ok(EnvView::new(layers))
    }

    fn with_exporter<T>(
        &self,
        meta: &EnvMeta,
        action: &'static str,
        work: impl FnOnce(&Exporter) -> Result<T, export::ExportError>,
    ) -> Result<T> {
        let view = self.env_view(meta, action)?;
        let dirs = self.host_dirs();
        let records = self.records();
        let binary = std::env::current_exe().map_err(|source| EngineError::Io {
            op: "find the karapace-tui binary",
            path: PathBuf::from("/proc/self/exe"),
            source,
        })?;
        let store = self.store.clone();
        let exists = move |id: &str| {
            id.parse::<EnvId>()
                .is_ok_and(|id| store.env_dir(&id).exists())
        };
        let id = meta.id.to_string();
        let label = meta
            .name
            .clone()
            .unwrap_or_else(|| meta.id.short().to_string());
        let exporter = Exporter {
            env_id: &id,
            env_label: &label,
            view,
            dirs: &dirs,
            records: &records,
            store: self.store.root(),
            binary: &binary,
            env_exists: &exists,
        };
        let _lock = self.store.lock_env(&meta.id)?;
        Ok(work(&exporter)?)
    }

    /// Export an application of an environment to the host's desktop.
    pub fn export_app(&self, query: &str, app: &str) -> Result<AppExported> {
        export::validate_name("application name", app)?;
        let meta = self.find(query)?;
        let (entry, notes) = self.with_exporter(&meta, "export from", |x| x.export_app(app))?;
        for note in &notes {
            self.events
                .emit(Event::warn(format!("export {}: {note}", entry.app)));
        }
        self.events.emit(Event::info(format!(
            "exported {} to {}",
            entry.app,
            entry.desktop_file.display()
        )));
        Ok(AppExported {
            env: meta.id.to_string(),
            export: entry,
            notes,
        })
    }

    /// Export a program of an environment as a host command.
    pub fn export_bin(&self, query: &str, program: &str, name: Option<&str>) -> Result<BinExport> {
        let meta = self.find(query)?;
        let entry = self.with_exporter(&meta, "export from", |x| x.export_bin(program, name))?;
        if !path_has(&entry.path) {
            self.events.emit(Event::warn(format!(
                "{} is not on PATH; add it to run `{}` by name",
                entry.path.parent().unwrap_or(Path::new("/")).display(),
                entry.name
            )));
        }
        Ok(entry)
    }

    /// Remove one export of an environment.
    pub fn unexport(&self, query: &str, name: &str, bin: bool) -> Result<Removal> {
        let meta = self.find(query)?;
        let _lock = self.store.lock_env(&meta.id)?;
        let removal = export::unexport(&self.records(), meta.id.as_str(), name, bin)?;
        self.report_kept(&removal);
        Ok(removal)
    }

    /// Every export, of one environment or of all.
    pub fn exports(&self, query: Option<&str>) -> Result<Vec<ExportRow>> {
        let records = self.records();
        let wanted = match query {
            Some(q) => Some(self.find(q)?.id.to_string()),
            None => None,
        };
        let mut rows = Vec::new();
        for (env, record) in records.all()? {
            if wanted.as_ref().is_some_and(|w| *w != env) {
                continue;
            }
            let env_name = env
                .parse::<EnvId>()
                .ok()
                .and_then(|id| self.store.read_meta(&id).ok())
                .and_then(|m| m.name);
            for app in record.apps {
                rows.push(ExportRow {
                    env: env.clone(),
                    env_name: env_name.clone(),
                    kind: "app",
                    name: app.app,
                    present: app.desktop_file.exists(),
                    path: app.desktop_file,
                });
            }
            for bin in record.bins {
                rows.push(ExportRow {
                    env: env.clone(),
                    env_name: env_name.clone(),
                    kind: "bin",
                    name: bin.name,
                    present: bin.path.exists(),
                    path: bin.path,
                });
            }
        }
        Ok(rows)
    }

    /// Export the desktop entries of an environment's `[gui] apps` after a build. With
    /// `only_missing` (an up-to-date build), only those not exported yet, so running `build`
    /// again completes an export that failed. A package without a desktop entry is a
    /// warning; a failed export is an error naming every failure, after the others were done
    /// (the environment itself is built either way).
    pub(super) fn export_gui_apps(
        &self,
        id: &EnvId,
        lock: &LockFile,
        only_missing: bool,
    ) -> Result<Vec<PathBuf>> {
        if lock.gui_apps.is_empty() {
            return Ok(Vec::new());
        }
        let meta = self.store.read_meta(id)?;
        let env_dir = self.store.env_dir(id);
        let Some(entries) = export::read_app_entries(&env_dir)? else {
            self.events.emit(Event::warn(format!(
                "{}: built before [gui] apps were exported; run `karapace-tui rebuild` to \
                 export them",
                id.short()
            )));
            return Ok(Vec::new());
        };
        let record = self.records().read(id.as_str())?;
        let mut written = Vec::new();
        let mut failures = Vec::new();
        for app in &lock.gui_apps {
            let files = entries.get(app).map(Vec::as_slice).unwrap_or_default();
            if files.is_empty() {
                self.events.emit(Event::warn(format!(
                    "[gui] app `{app}`: the package installed no desktop entry, so there is \
                     nothing to put on the desktop (run it with `karapace-tui exec`)"
                )));
            }
            for file in files {
                let done = record
                    .apps
                    .iter()
                    .any(|a| a.source == *file && a.desktop_file.exists());
                if only_missing && done {
                    continue;
                }
                match self.with_exporter(&meta, "export from", |x| x.export_path(file)) {
                    Ok((entry, notes)) => {
                        for note in notes {
                            self.events
                                .emit(Event::warn(format!("export {}: {note}", entry.app)));
                        }
                        self.events.emit(Event::info(format!(
                            "exported [gui] app {app}: {}",
                            entry.desktop_file.display()
                        )));
                        written.push(entry.desktop_file);
                    }
                    Err(e) => failures.push(format!("{app} ({file}): {e}")),
                }
            }
        }
        if failures.is_empty() {
            Ok(written)
        } else {
            Err(EngineError::GuiExport {
                env: id.short().to_string(),
                failures,
            })
        }
    }

    /// After a rebuild gave the environment a new id: move the old one's exports to it (each
    /// written again for the new id; one that no longer applies is a warning).
    pub(super) fn carry_exports(&self, old: &EnvId, new: &EnvId) -> Result<()> {
        let records = self.records();
        let record = records.read(old.as_str())?;
        if record.is_empty() {
            return Ok(());
        }
        let removal = export::remove_all(&records, old.as_str())?;
        self.report_kept(&removal);
        let meta = self.store.read_meta(new)?;
        for app in &record.apps {
            if let Err(e) = self.with_exporter(&meta, "export from", |x| x.export_app(&app.app)) {
                self.events.emit(Event::warn(format!(
                    "the export of {} was removed with the old environment and could not be \
                     made again: {e}",
                    app.app
                )));
            }
        }
        for bin in &record.bins {
            let again = |x: &Exporter| x.export_bin(&bin.program, Some(&bin.name));
            if let Err(e) = self.with_exporter(&meta, "export from", again) {
                self.events.emit(Event::warn(format!(
                    "the command {} was removed with the old environment and could not be \
                     exported again: {e}",
                    bin.name
                )));
            }
        }
        Ok(())
    }

    /// Remove every export of an environment (`destroy`, under its lock).
    pub(super) fn remove_exports(&self, meta: &EnvMeta) -> Result<()> {
        let removal = export::remove_all(&self.records(), meta.id.as_str())?;
        for path in &removal.removed {
            self.events
                .emit(Event::info(format!("removed export {}", path.display())));
        }
        self.report_kept(&removal);
        Ok(())
    }

    fn report_kept(&self, removal: &Removal) {
        for path in &removal.kept {
            self.events.emit(Event::warn(format!(
                "{} was exported but has been changed since (it no longer carries the \
                 export marker); left in place",
                path.display()
            )));
        }
    }
}

/// Whether `path`'s directory is on `PATH`.
fn path_has(path: &Path) -> bool {
    let Some(dir) = path.parent() else {
        return false;
    };
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d == dir))
}

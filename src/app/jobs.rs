//! Work that may be slow runs on worker threads: every engine call the UI makes.
//!
//! A worker opens its own [`Engine`] (cheap: no scan) whose event sink forwards every
//! [`Event`](crate::events::Event) into the loop's channel tagged with the job, calls the same
//! engine function as the CLI, and sends one [`AppEvent::JobDone`]. Workers never touch UI
//! state. Jobs of different environments run in parallel; the engine's flock locks serialise
//! what must be (two jobs on one environment, `gc` against builds) exactly as between two CLI
//! processes.
//!
//! A running job cannot be cancelled: the engine has no cancellation point and a thread cannot
//! be killed. Quitting while one runs ends the process, which the store's journal treats like a
//! crash: the next command rolls the half-done operation back (tests/crash.rs).

use std::fmt;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::thread;

use super::event::{AppEvent, ChannelSink};
use super::list::BrokenRow;
use crate::engine::{BuildOptions, BuildOutcome, Engine, EngineError, EnvDetails, EnvSummary};
use crate::manifest::ParseEnv;
use crate::store::{GcReport, VerifyReport};
use crate::types::EnvId;

pub type JobId = u64;

/// One engine call. Environments are named as the CLI names them (a name, an id or a unique
/// id prefix), so palette commands pass through unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Job {
    List,
    /// The prerequisite checks without starting OCI test containers (the header's verdicts
    /// at start-up); [`Job::Backends`] runs them all.
    QuickBackends,
    /// The disk usage of these environments, for the list's SIZE column (a tree walk each).
    Sizes(Vec<EnvId>),
    Backends,
    Inspect(EnvId),
    Build {
        manifest: PathBuf,
        name: Option<String>,
    },
    Rebuild {
        manifest: PathBuf,
    },
    /// Write a template into `dir`, then build it.
    New {
        dir: PathBuf,
        template: String,
    },
    Stop(String),
    Destroy {
        env: String,
        force: bool,
    },
    Freeze(String),
    Unfreeze(String),
    Archive(String),
    Unarchive(String),
    Rename {
        env: String,
        name: String,
    },
    /// An application to the desktop, or (`bin`) a program as a host command.
    Export {
        env: String,
        app: String,
        bin: bool,
    },
    Unexport {
        env: String,
        app: String,
        bin: bool,
    },
    Gc {
        dry_run: bool,
    },
    Verify,
}

impl Job {
    /// Queries only read; they get no spinner and never hold up quitting.
    pub fn is_query(&self) -> bool {
        matches!(
            self,
            Job::List | Job::Sizes(_) | Job::QuickBackends | Job::Backends | Job::Inspect(_)
        )
    }

    /// The tag of its log lines: as [`Display`](fmt::Display), with paths cut to their last
    /// component (`build proj`), since every line carries it.
    pub fn label(&self) -> String {
        let last = |p: &Path| {
            let dir = if p.file_name().is_some_and(|f| f == "karapace.toml") {
                p.parent().unwrap_or(p)
            } else {
                p
            };
            dir.file_name().map_or_else(
                || dir.display().to_string(),
                |f| f.to_string_lossy().into_owned(),
            )
        };
        match self {
            Job::Build { manifest, .. } => format!("build {}", last(manifest)),
            Job::Rebuild { manifest } => format!("rebuild {}", last(manifest)),
            Job::New { dir, template } => format!("new {template} {}", last(dir)),
            other => other.to_string(),
        }
    }

    /// Whether the list must be reloaded afterwards.
    /// Builds, which the user may cancel (everything they did is rolled back).
    pub fn cancellable(&self) -> bool {
        matches!(
            self,
            Job::Build { .. } | Job::Rebuild { .. } | Job::New { .. }
        )
    }

    pub fn changes_envs(&self) -> bool {
        !self.is_query() && !matches!(self, Job::Verify | Job::Gc { dry_run: true })
    }
}

impl fmt::Display for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Job::List => f.write_str("list"),
            Job::Sizes(ids) => write!(f, "measure {} environment(s)", ids.len()),
            Job::Backends => f.write_str("doctor"),
            Job::QuickBackends => f.write_str("doctor (no test containers)"),
            Job::Inspect(id) => write!(f, "inspect {}", id.short()),
            Job::Build { manifest, .. } => write!(f, "build {}", shown(manifest)),
            Job::Rebuild { manifest } => write!(f, "rebuild {}", shown(manifest)),
            Job::New { dir, template } => write!(f, "new {template} {}", dir.display()),
            Job::Stop(env) => write!(f, "stop {}", env_label(env)),
            Job::Destroy { env, force } => {
                let force = if *force { "--force " } else { "" };
                write!(f, "destroy {force}{}", env_label(env))
            }
            Job::Freeze(env) => write!(f, "freeze {}", env_label(env)),
            Job::Unfreeze(env) => write!(f, "unfreeze {}", env_label(env)),
            Job::Archive(env) => write!(f, "archive {}", env_label(env)),
            Job::Unarchive(env) => write!(f, "unarchive {}", env_label(env)),
            Job::Rename { env, name } => write!(f, "rename {} {name}", env_label(env)),
            Job::Export { env, app, bin } => {
                let bin = if *bin { "--bin " } else { "" };
                write!(f, "export {bin}{} {app}", env_label(env))
            }
            Job::Unexport { env, app, bin } => {
                let bin = if *bin { "--bin " } else { "" };
                write!(f, "unexport {bin}{} {app}", env_label(env))
            }
            Job::Gc { dry_run: true } => f.write_str("gc --dry-run"),
            Job::Gc { dry_run: false } => f.write_str("gc"),
            Job::Verify => f.write_str("verify-store"),
        }
    }
}

/// An environment as labels show it: a full 64-character id is cut to its short form.
fn env_label(env: &str) -> &str {
    if env.len() == 64 && env.bytes().all(|b| b.is_ascii_hexdigit()) {
        &env[..12]
    } else {
        env
    }
}

/// A manifest path as people typed it: the directory when the file is `karapace.toml`.
fn shown(manifest: &Path) -> String {
    match (manifest.file_name(), manifest.parent()) {
        (Some(file), Some(dir)) if file == "karapace.toml" && !dir.as_os_str().is_empty() => {
            dir.display().to_string()
        }
        _ => manifest.display().to_string(),
    }
}

/// What a job produced.
#[derive(Debug)]
pub enum JobOutput {
    List {
        envs: Vec<EnvSummary>,
        broken: Vec<BrokenRow>,
    },
    /// Bytes per environment; one that vanished meanwhile is left out.
    Sizes(Vec<(EnvId, u64)>),
    /// Every prerequisite check (each backend's availability derives from them).
    Backends(Box<crate::prereq::Report>),
    Details(Box<EnvDetails>),
    Built {
        outcome: Box<BuildOutcome>,
        /// The manifest `new` wrote first.
        template: Option<PathBuf>,
    },
    /// A state change, described in one line for the log.
    Changed(String),
    Gc(GcReport),
    Verify(VerifyReport),
}

/// Starts workers. Holds what each needs to open its own engine.
pub struct Workers {
    store: PathBuf,
    parse_env: ParseEnv,
    tx: Sender<AppEvent>,
}

impl Workers {
    pub fn new(store: PathBuf, parse_env: ParseEnv, tx: Sender<AppEvent>) -> Workers {
        Workers {
            store,
            parse_env,
            tx,
        }
    }

    /// Run `job` on a new thread; its events and its result arrive on the channel.
    pub fn spawn(&self, id: JobId, job: Job, cancel: Arc<AtomicBool>) -> io::Result<()> {
        let store = self.store.clone();
        let parse_env = self.parse_env.clone();
        let tx = self.tx.clone();
        thread::Builder::new()
            .name(format!("tui-job-{id}"))
            .spawn(move || {
                let sink = Arc::new(ChannelSink::new(id, tx.clone(), cancel));
                let result = catch_unwind(AssertUnwindSafe(|| {
                    Engine::open(&store, parse_env, sink).and_then(|engine| run(&engine, job))
                }));
                let result = match result {
                    Ok(Ok(output)) => Ok(output),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(panic) => Err(format!("internal error: {}", panic_message(&*panic))),
                };
                // Fails only when the UI has ended; the job's effects are in the store anyway.
                let _ui_gone = tx.send(AppEvent::JobDone { job: id, result });
            })?;
        Ok(())
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a worker thread panicked".to_string())
}

/// Run one job on `engine` (the worker's body; also what tests call directly).
pub fn run(engine: &Engine, job: Job) -> Result<JobOutput, EngineError> {
    let changed = |verb: &str, meta: crate::store::EnvMeta| {
        JobOutput::Changed(format!(
            "{verb}: {} {} ({})",
            meta.id.short(),
            meta.name.as_deref().unwrap_or("-"),
            meta.state
        ))
    };
    Ok(match job {
        Job::List => {
            let (envs, broken) = engine.list()?;
            let broken = broken
                .into_iter()
                .map(|b| BrokenRow {
                    id: b.id,
                    error: b.error.to_string(),
                })
                .collect();
            JobOutput::List { envs, broken }
        }
        Job::Sizes(ids) => {
            let mut sizes = Vec::with_capacity(ids.len());
            for id in ids {
                match engine.disk_usage(&id) {
                    Ok(bytes) => sizes.push((id, bytes)),
                    // Destroyed since the list was read: the next list drops its row.
                    Err(EngineError::Io { source, .. })
                        if source.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
            JobOutput::Sizes(sizes)
        }
        Job::Backends => JobOutput::Backends(Box::new(engine.doctor())),
        Job::QuickBackends => JobOutput::Backends(Box::new(engine.doctor_quick())),
        Job::Inspect(id) => JobOutput::Details(Box::new(engine.inspect(id.as_str())?)),
        Job::Build { manifest, name } => JobOutput::Built {
            outcome: Box::new(engine.build(&build_options(manifest, name))?),
            template: None,
        },
        Job::Rebuild { manifest } => JobOutput::Built {
            outcome: Box::new(engine.rebuild(&build_options(manifest, None))?),
            template: None,
        },
        Job::New { dir, template } => {
            let path = crate::engine::write_template(&dir, &template, false)?;
            engine.events().emit(crate::events::Event::info(format!(
                "wrote {} (template {template})",
                path.display()
            )));
            JobOutput::Built {
                outcome: Box::new(engine.build(&build_options(path.clone(), None))?),
                template: Some(path),
            }
        }
        Job::Stop(env) => {
            let stopped = engine.stop(&env)?;
            JobOutput::Changed(format!("stopped {stopped} session(s) of {env}"))
        }
        Job::Destroy { env, force } => {
            let meta = engine.destroy(&env, force)?;
            let name = meta.name.as_deref().unwrap_or("-");
            JobOutput::Changed(format!("destroyed: {} {name}", meta.id.short()))
        }
        Job::Freeze(env) => changed("frozen", engine.freeze(&env)?),
        Job::Unfreeze(env) => changed("unfrozen", engine.unfreeze(&env)?),
        Job::Archive(env) => changed("archived", engine.archive(&env)?),
        Job::Unarchive(env) => changed("unarchived", engine.unarchive(&env)?),
        Job::Rename { env, name } => changed("renamed", engine.rename(&env, &name)?),
        Job::Export {
            env,
            app,
            bin: false,
        } => {
            let done = engine.export_app(&env, &app)?;
            JobOutput::Changed(format!(
                "exported {} to {}",
                done.export.app,
                done.export.desktop_file.display()
            ))
        }
        Job::Export {
            env,
            app,
            bin: true,
        } => {
            let done = engine.export_bin(&env, &app, None)?;
            JobOutput::Changed(format!(
                "exported {} as {}",
                done.program,
                done.path.display()
            ))
        }
        Job::Unexport { env, app, bin } => {
            let removal = engine.unexport(&env, &app, bin)?;
            JobOutput::Changed(format!(
                "unexported {app}: removed {} file(s)",
                removal.removed.len()
            ))
        }
        Job::Gc { dry_run } => JobOutput::Gc(engine.gc(dry_run)?),
        Job::Verify => JobOutput::Verify(engine.verify()?),
    })
}

/// As the CLI's `build`: a directory means its `karapace.toml`.
fn build_options(manifest: PathBuf, name: Option<String>) -> BuildOptions {
    let manifest = if manifest.is_dir() {
        manifest.join("karapace.toml")
    } else {
        manifest
    };
    BuildOptions {
        manifest,
        name,
        ..BuildOptions::default()
    }
}

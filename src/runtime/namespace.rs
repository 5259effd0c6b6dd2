//! The `namespace` backend: environments as an overlay of the verified base image, run in
//! Linux namespaces by the sandbox helper (`crate::sandbox`).
//!
//! An environment directory holds `upper/` (its changes), `work/` (overlayfs's scratch) and
//! `root/` (the mount point, only ever mounted inside the sandbox's own mount namespace, so
//! nothing is left mounted on the host whatever happens). The base image stays in the image
//! cache and is the overlay's lower layer. `archive` packs `upper/` (and an own `home/`) with
//! its whiteouts, overlay xattrs and owners (`sandbox::archive`); `unarchive` makes `work/`
//! and `root/` again, empty.
//!
//! Sessions: several at once; a session started while the environment runs joins its
//! namespaces (`sandbox::join`), whose init is recorded in `init` beside `upper/` (see
//! `session.rs`).
//!
//! Packages: `resolve` refreshes the image's package indexes in a scratch overlay, reads the
//! candidate versions (`crate::packages`) and learns every dependency the install adds or
//! upgrades: apt installs the listed packages there for real and compares dpkg's database
//! before and after, the other managers run their dry run of the install. `build` then
//! continues from that scratch overlay when the same process just resolved: apt's becomes the
//! environment's upper layer as it is (it holds exactly what the lock pins, checked before the
//! lock was written), the others' lends its fresh indexes and the locked versions of the whole
//! set are installed. Otherwise (`--locked`, or a lock that matched the manifest) `build`
//! refreshes the indexes and installs exactly the locked set itself. Either way it checks each
//! installed version against the lock, so apt's solver runs once per build and the indexes are
//! refreshed once.

use std::fs;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::backend::{
    Availability, BackendError, BuildOutput, BuildRequest, ResolveRequest, RunRequest,
    RuntimeBackend,
};
use super::install::{BuildSandbox, Output};
use super::session::{init_record, stop_init, stop_sessions, SessionProcess};
use crate::events::Event;
use crate::image::ImageCache;
use crate::integration;
use crate::lock::{LockFile, LockedPackage, Resolution};
use crate::packages::{self, Manager};
use crate::sandbox::{self, Bind, IdMapping, RootfsSpec};
use crate::store::{ScratchDir, Store};
use crate::types::{BackendKind, EnvId};

const KIND: BackendKind = BackendKind::Namespace;
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn io_err(step: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BackendError {
    BackendError::io_at(KIND, step, path)
}

fn helper_exe() -> Result<PathBuf, BackendError> {
    std::env::current_exe().map_err(io_err(
        "find the karapace-tui binary",
        Path::new("/proc/self/exe"),
    ))
}

/// A scratch overlay whose package indexes `resolve` just refreshed, for `build` to continue
/// from (keyed by the image it was made on, and by what was installed in it).
struct Prepared {
    image_sha256: String,
    scratch: ScratchDir,
    /// What `resolve` installed in it (apt, see `packages::Probe::Install`), sorted: the
    /// closure of the lock written from it, each package checked at its version. `None`:
    /// only the indexes were refreshed.
    installed: Option<Vec<LockedPackage>>,
}

impl Prepared {
    /// Whether a build of `lock` on image `sha256` may continue from it: the same image and,
    /// if it holds installed packages, exactly the lock's whole set.
    fn fits(&self, sha256: &str, lock: &LockFile) -> bool {
        self.image_sha256 == sha256
            && self
                .installed
                .as_ref()
                .is_none_or(|installed| *installed == sorted(lock.closure()))
    }
}

fn sorted(mut packages: Vec<LockedPackage>) -> Vec<LockedPackage> {
    packages.sort();
    packages.dedup();
    packages
}

pub struct NamespaceBackend {
    prepared: Mutex<Option<Prepared>>,
    /// What [`RuntimeBackend::prepare_run`] began for the session about to start.
    session: Mutex<Option<SessionStart>>,
}

/// The ids of a session, chosen (and warned about) once, and its user namespace if one was
/// made ahead (`sandbox::premap`), for the environment at `env_dir`.
struct SessionStart {
    env_dir: PathBuf,
    ids: IdMapping,
    premapped: Option<sandbox::premap::Premapped>,
}

impl NamespaceBackend {
    pub fn new() -> NamespaceBackend {
        NamespaceBackend {
            prepared: Mutex::new(None),
            session: Mutex::new(None),
        }
    }

    /// The ids and the namespace [`RuntimeBackend::prepare_run`] made for `env_dir`, or
    /// chosen now (a caller that did not prepare).
    fn session_start(
        &self,
        env_dir: &Path,
        events: &dyn crate::events::EventSink,
    ) -> Result<SessionStart, BackendError> {
        let prepared = self.session.lock().map_err(|_| poisoned())?.take();
        match prepared {
            Some(start) if start.env_dir == env_dir => Ok(start),
            _ => SessionStart::begin(env_dir, events),
        }
    }
}

impl SessionStart {
    fn begin(
        env_dir: &Path,
        events: &dyn crate::events::EventSink,
    ) -> Result<SessionStart, BackendError> {
        // When only a single id can be mapped, the one-line reason and fix, on every run.
        let choice = sandbox::idmap::detect();
        if let Some(warning) = choice.warning() {
            events.emit(Event::warn(warning));
        }
        let premapped = premap(&choice, &init_record(env_dir))?;
        let ids = choice.mapping;
        Ok(SessionStart {
            env_dir: env_dir.to_path_buf(),
            ids,
            premapped,
        })
    }
}

impl Default for NamespaceBackend {
    fn default() -> Self {
        NamespaceBackend::new()
    }
}

/// The package manager of the image at `lower`, or an error saying that there is none.
fn manager_of(lower: &Path, reference: &str) -> Result<Manager, BackendError> {
    packages::detect(&[lower]).ok_or_else(|| BackendError::Failed {
        backend: KIND,
        step: "detect the package manager",
        detail: format!(
            "image {reference} has none of apt-get, dnf, zypper, pacman or apk, so it cannot \
             install [system] packages; remove them or choose another base image"
        ),
    })
}

fn offline_packages(count: usize) -> BackendError {
    BackendError::Offline {
        backend: KIND,
        action: "install packages",
        detail: format!(
            "the manifest lists {count} package(s), which come from the distribution's \
             mirrors; build once without --offline"
        ),
    }
}

fn package_error(step: &'static str) -> impl FnOnce(packages::PackageError) -> BackendError {
    move |e| BackendError::Failed {
        backend: KIND,
        step,
        detail: e.to_string(),
    }
}

impl RuntimeBackend for NamespaceBackend {
    fn kind(&self) -> BackendKind {
        KIND
    }

    fn availability(&self) -> Availability {
        // The same checks as `doctor` (user namespaces, the root overlay, the id mapping).
        crate::prereq::backend_availability(&crate::prereq::SystemHost::new(), KIND)
    }

    fn resolve(&self, req: &ResolveRequest) -> Result<Resolution, BackendError> {
        let record = req
            .images
            .ensure(&req.manifest.base, req.locked_base, req.offline)?;
        let specs = &req.manifest.install_list();
        if specs.is_empty() {
            return Ok(Resolution {
                base: record.locked(),
                packages: Vec::new(),
                dependencies: None,
            });
        }
        if req.offline {
            return Err(offline_packages(specs.len()));
        }
        let lower = ImageCache::new(req.store).rootfs(&record.sha256);
        let manager = manager_of(&lower, &record.reference)?;
        req.events.emit(Event::info(format!(
            "namespace: resolving {} package(s) with {manager} on {}",
            specs.len(),
            record.reference
        )));
        let scratch = req.store.scratch_dir("resolve")?;
        let sandbox = BuildSandbox {
            store: req.store,
            lower,
            dir: scratch.path().to_path_buf(),
            ids: build_ids(),
            manager,
            events: req.events,
        };
        sandbox.prepare_dirs()?;
        sandbox.run(
            "refresh the package indexes",
            manager.refresh(sandbox.apt_sandbox_root()),
            Output::Stream,
        )?;
        let names: Vec<&str> = specs.iter().map(|p| p.name.as_str()).collect();
        let answer = sandbox.run(
            "resolve package versions",
            manager.resolve(&names),
            Output::Capture,
        )?;
        let resolved = manager
            .parse_resolve(specs, req.pins, &answer)
            .map_err(package_error("resolve package versions"))?;
        for (name, old) in &resolved.stale_pins {
            req.events.emit(Event::warn(format!(
                "the lock pinned {name} {old}, which the image's {manager} repositories no \
                 longer offer; taking the current version"
            )));
        }
        let found = resolve_dependencies(&sandbox, &resolved.packages)?;
        let installed = found.installed.then(|| {
            let mut all = resolved.packages.clone();
            all.extend(found.dependencies.iter().cloned());
            sorted(all)
        });
        *self.prepared.lock().map_err(|_| poisoned())? = Some(Prepared {
            image_sha256: record.sha256.clone(),
            scratch,
            installed,
        });
        Ok(Resolution {
            base: record.locked(),
            packages: resolved.packages,
            dependencies: Some(found.dependencies),
        })
    }

    fn build(&self, req: &BuildRequest) -> Result<BuildOutput, BackendError> {
        // Verified again from the cache (or fetched exactly as locked).
        let record = req
            .images
            .ensure(&req.manifest.base, Some(&req.lock.base), req.offline)?;
        let lower = ImageCache::new(req.store).rootfs(&record.sha256);
        let packages = &req.lock.packages;
        if packages.is_empty() {
            for dir in ["upper", "work", "root"] {
                let path = req.staging.join(dir);
                fs::create_dir(&path).map_err(io_err("create", &path))?;
            }
        } else {
            if req.offline {
                return Err(offline_packages(packages.len()));
            }
            let manager = manager_of(&lower, &record.reference)?;
            let prepared = self
                .prepared
                .lock()
                .map_err(|_| poisoned())?
                .take()
                .filter(|p| p.fits(&record.sha256, req.lock));
            let sandbox = BuildSandbox {
                store: req.store,
                lower: lower.clone(),
                dir: req.staging.to_path_buf(),
                ids: build_ids(),
                manager,
                events: req.events,
            };
            install_packages(&sandbox, req.lock, prepared)?;
            if !req.lock.gui_apps.is_empty() {
                record_app_entries(&sandbox, &req.lock.gui_apps, req.staging)?;
            }
        }
        req.events.emit(Event::info(format!(
            "namespace: environment on image {} ({}), changes in upper/",
            record.reference, record.sha256
        )));
        // Said at build time too, so a limit this host cannot enforce is known before the
        // first session.
        if req.lock.runtime.has_limits() {
            limits_here(req.lock, req.events);
        }
        Ok(BuildOutput { layers: Vec::new() })
    }

    fn prepare_run(
        &self,
        env_dir: &Path,
        events: &dyn crate::events::EventSink,
    ) -> Result<(), BackendError> {
        let start = SessionStart::begin(env_dir, events)?;
        *self.session.lock().map_err(|_| poisoned())? = Some(start);
        Ok(())
    }

    fn run(&self, req: &RunRequest) -> Result<i32, BackendError> {
        let lower = ImageCache::new(req.store).rootfs(&req.lock.base.archive_sha256);
        if !lower.is_dir() {
            return Err(BackendError::Failed {
                backend: KIND,
                step: "find the base image",
                detail: format!(
                    "image {} is not in the cache; run `karapace-tui rebuild` to fetch it",
                    req.lock.base.archive_sha256
                ),
            });
        }
        // Usually begun by `prepare_run`: the id-map tools have been running meanwhile.
        let SessionStart {
            ids, mut premapped, ..
        } = self.session_start(req.env_dir, req.events)?;
        let record = init_record(req.env_dir);
        let spec = self.spec(req, &lower, ids)?;
        let mut plan = spec.plan();
        // Nothing is probed or read when the manifest sets no limit.
        if req.lock.runtime.has_limits() {
            plan.limits = limits_here(req.lock, req.events);
            if !plan.limits.cgroups.is_empty() {
                super::limits::record(req.env_dir, &plan.limits.cgroups)?;
            }
        }
        // The helper joins the environment if it runs (overlayfs must not mount one upper
        // directory twice), else starts it and records its init there. The overlay's last work
        // directory (with its volatile marker) is set aside by the helper too, under the
        // record's lock, and only when it starts cold: here another session may have the
        // overlay mounted.
        let helper = helper_exe()?;
        let plan_dir = req.store.root().join("tmp");
        let mut started_again = false;
        // The marker names the process to signal for `stop` and to watch for `status`: this
        // one while the session starts (and for good when this process starts the
        // environment itself: `sandbox::start_session`), else the helper that runs it.
        let own = SessionProcess::of_pid(std::process::id() as i32, 0)
            .map_err(io_err("read process start time", Path::new("/proc/self")))?;
        req.marker.record(&own.encode())?;
        loop {
            let mut session = sandbox::start_session(
                &plan,
                &record,
                &helper,
                &plan_dir,
                req.stdout_to_stderr,
                premapped.take(),
            )
            .map_err(start_failed)?;
            let pid = session.id() as i32;
            if pid != own.pid {
                let process = SessionProcess::of_pid(pid, 0)
                    .map_err(io_err("read process start time", Path::new("/proc")))?;
                req.marker.record(&process.encode())?;
            }
            let status = session
                .wait()
                .map_err(io_err("wait for the sandbox", req.env_dir))?;
            // The program made its process group the terminal's foreground one (a shell's
            // job control needs that); ours it is again.
            if let Err(e) = sandbox::program::reclaim_terminal() {
                req.events.emit(Event::warn(format!(
                    "could not take the terminal back from the environment's program ({e}); \
                     if the shell misbehaves, run `reset`"
                )));
            }
            // Once only: the second start finds no init and starts cold.
            let ran_nothing = session
                .ran_nothing(status)
                .map_err(io_err("remove the plan file in", &plan_dir))?;
            if !ran_nothing || started_again {
                return Ok(super::exit_code(status));
            }
            started_again = true;
            req.events.emit(Event::info(format!(
                "{} ended while this session was joining it; starting it again",
                req.meta.id.short()
            )));
        }
    }

    fn status(&self, store: &Store, id: &EnvId) -> Result<usize, BackendError> {
        Ok(store.running_sessions(id)?)
    }

    fn stop(&self, store: &Store, id: &EnvId) -> Result<usize, BackendError> {
        // Each session's helper forwards SIGTERM to its program; then the environment's init
        // (which may outlive the session that started it) is killed, and with it whatever is
        // left in the environment.
        let stopped = stop_sessions(store, id, KIND)?;
        stop_init(&init_record(&store.env_dir(id)), KIND)?;
        // Its cgroup, when the last session could not remove it (the init outlived it).
        super::limits::remove_leftover(&store.env_dir(id))?;
        Ok(stopped)
    }

    fn teardown(&self, env_dir: &Path) -> Result<(), BackendError> {
        // The last session may have returned while its init still unmounts the sandbox.
        await_exiting_init(env_dir)?;
        // Nothing is mounted on the host. overlayfs leaves work/work with mode 000, which
        // would stop a rootless removal of the directory.
        let work = env_dir.join("work");
        if work.exists() {
            sandbox::check::open_overlay_work_dir(&work);
        }
        super::limits::remove_leftover(env_dir)
    }

    fn supports_read_only(&self) -> bool {
        false
    }

    fn can_archive(&self) -> bool {
        true
    }

    /// Packs `upper/` (the environment's changes, with whiteouts, overlay xattrs and owners)
    /// and the own home `home/` if there is one; `work/` and `root/` are empty scratch and
    /// mount point, made again by `unpack_archive`.
    fn pack_archive(&self, store: &Store, env_dir: &Path, out: &Path) -> Result<(), BackendError> {
        await_exiting_init(env_dir)?;
        let mut trees = vec![env_dir.join("upper")];
        let home = env_dir.join(integration::OWN_HOME_DIR);
        if home.is_dir() {
            trees.push(home);
        }
        sandbox::archive::pack(&trees, out, &store.root().join("tmp")).map_err(|e| {
            BackendError::Failed {
                backend: KIND,
                step: "pack the environment's files",
                detail: e.to_string(),
            }
        })
    }

    fn unpack_archive(
        &self,
        store: &Store,
        archive: &Path,
        into: &Path,
    ) -> Result<(), BackendError> {
        for dir in ["work", "root"] {
            let path = into.join(dir);
            fs::create_dir(&path).map_err(io_err("create", &path))?;
        }
        sandbox::archive::unpack(archive, into, &store.root().join("tmp")).map_err(|e| {
            BackendError::Failed {
                backend: KIND,
                step: "unpack the environment's files",
                detail: e.to_string(),
            }
        })?;
        let upper = into.join("upper");
        if !upper.is_dir() {
            return Err(BackendError::Failed {
                backend: KIND,
                step: "unpack the environment's files",
                detail: format!(
                    "the archive {} holds no upper/ directory; it was not made by this backend",
                    archive.display()
                ),
            });
        }
        Ok(())
    }

    fn file_layers(&self, store: &Store, env_dir: &Path, lock: &LockFile) -> Option<Vec<PathBuf>> {
        let lower = ImageCache::new(store).rootfs(&lock.base.archive_sha256);
        Some(vec![env_dir.join("upper"), lower])
    }
}

fn poisoned() -> BackendError {
    BackendError::Failed {
        backend: KIND,
        step: "resolve package versions",
        detail: "an earlier resolution panicked".to_string(),
    }
}

/// The id mapping of build steps: the same as the environment's sessions get.
fn build_ids() -> IdMapping {
    IdMapping::for_current_user()
}

/// What [`resolve_dependencies`] found.
struct Found {
    /// Every package the install adds or upgrades besides the listed ones, sorted by name.
    dependencies: Vec<LockedPackage>,
    /// Whether the listed packages and these are installed in the sandbox now, each checked
    /// at its version.
    installed: bool,
}

/// The dependencies of installing `listed` (at their resolved versions), in the sandbox whose
/// indexes were just refreshed, as the manager's probe says (`packages::Probe`): apt installs
/// them there and compares dpkg's database before and after (then checks every version, so
/// the sandbox holds exactly what the lock will pin), the others run their dry run. Every
/// package the install adds or upgrades besides the listed ones is one; removals are named in
/// a warning (the lock cannot pin an absence; they follow from the image and the rest).
fn resolve_dependencies(
    sandbox: &BuildSandbox,
    listed: &[LockedPackage],
) -> Result<Found, BackendError> {
    const STEP: &str = "compute the install's dependencies";
    let manager = sandbox.manager;
    let (transaction, after) = match manager.probe(listed) {
        packages::Probe::DryRun { argv, parse } => {
            let output = sandbox
                .run_accepting(STEP, argv, Output::Capture, |code| {
                    manager.simulate_succeeded(code)
                })
                .map_err(|e| with_update_hint(e, STEP, manager, listed))?;
            (parse(&output).map_err(package_error(STEP))?, None)
        }
        packages::Probe::Install { list, compare } => {
            let query = |step, argv| {
                sandbox.run_accepting(step, argv, Output::Capture, |code| {
                    manager.query_succeeded(code)
                })
            };
            let before = query("list the image's packages", list.clone())?;
            install(sandbox, listed, listed)?;
            let after = query("list the installed packages", list)?;
            let transaction = compare(&before, &after).map_err(package_error(STEP))?;
            (transaction, Some(after))
        }
    };
    if !transaction.removes.is_empty() {
        sandbox.events.emit(Event::warn(format!(
            "installing the packages removes {} from the image",
            transaction.removes.join(", ")
        )));
    }
    let upgrades: Vec<String> = transaction
        .installs
        .iter()
        .filter_map(|c| {
            let old = c.replaces.as_ref()?;
            Some(format!("{} {old} -> {}", c.name, c.version))
        })
        .collect();
    if !upgrades.is_empty() {
        sandbox.events.emit(Event::info(format!(
            "{manager}: the install changes packages of the image (locked too): {}",
            upgrades.join(", ")
        )));
    }
    let dependencies = manager
        .dependencies(listed, &transaction)
        .map_err(package_error(STEP))?;
    if let Some(after) = &after {
        manager
            .check_installed(listed, &dependencies, after)
            .map_err(package_error("check installed versions"))?;
        if let Some(argv) = manager
            .mark_manual(&dependencies)
            .filter(|_| !dependencies.is_empty())
        {
            sandbox.run(
                "mark the dependencies as installed on request",
                argv,
                Output::Stream,
            )?;
        }
    }
    Ok(Found {
        dependencies,
        installed: after.is_some(),
    })
}

/// A failed package step whose cause may be a pinned version the mirror does not have (it
/// moved on, or the lock was edited): the manager's output names it where it can be read
/// (`Manager::missing_versions`), and the error then says which package of the lock it is
/// and what to do; otherwise it adds what to do if that is the cause.
fn with_update_hint(
    error: BackendError,
    step: &'static str,
    manager: Manager,
    listed: &[LockedPackage],
) -> BackendError {
    let BackendError::Failed {
        backend, detail, ..
    } = error
    else {
        return error;
    };
    let missing: Vec<String> = manager
        .missing_versions(&detail)
        .into_iter()
        .map(|(name, version)| {
            let role = if listed.iter().any(|p| p.name == name) {
                ""
            } else {
                " (a dependency)"
            };
            format!("{name} {version}{role}")
        })
        .collect();
    let detail = if missing.is_empty() {
        format!(
            "{detail}\nif a pinned version is named above as not found, the mirror no longer \
             has it: run `karapace-tui build --update` to resolve the packages again"
        )
    } else {
        format!(
            "the image's {manager} repositories do not have the pinned {}; run \
             `karapace-tui build --update` to resolve the packages again (or restore \
             karapace.lock if it was edited)\n{detail}",
            missing.join(", ")
        )
    };
    BackendError::Failed {
        backend,
        step,
        detail,
    }
}

/// Installs `packages` (pinned where the manager can) in the sandbox; `listed` are those the
/// manifest lists (an error names the others as dependencies).
fn install(
    sandbox: &BuildSandbox,
    packages: &[LockedPackage],
    listed: &[LockedPackage],
) -> Result<(), BackendError> {
    const STEP: &str = "install packages";
    let manager = sandbox.manager;
    if !manager.can_pin() {
        sandbox.events.emit(Event::warn(format!(
            "{manager} cannot install a specific version: installing the repository's \
             current ones and checking them against the lock"
        )));
    }
    if manager == Manager::Apt && sandbox.apt_sandbox_root() {
        sandbox.events.emit(Event::warn(
            "no subordinate id range for this user: apt downloads as root inside the \
             sandbox, and packages whose files belong to other users cannot be installed \
             (add a range to /etc/subuid and /etc/subgid and install newuidmap)",
        ));
    }
    sandbox
        .run(
            STEP,
            manager.install(packages, sandbox.apt_sandbox_root()),
            Output::Stream,
        )
        .map(drop)
        .map_err(|e| with_update_hint(e, STEP, manager, listed))
}

/// Makes the sandbox's upper layer hold exactly what `lock` pins — the listed packages and
/// every dependency, each at its locked version — and cleans the downloaded package files.
///
/// With `prepared`, the resolve's scratch overlay becomes the start of the layer (a rename, on
/// the same file system): if packages were installed there (`Prepared::installed`, the
/// lock's whole set, already checked), that is the layer; else its refreshed indexes are
/// reused. Without, the indexes are refreshed first. Anything installed here is checked with
/// the manager's query: every package at exactly its locked version.
fn install_packages(
    sandbox: &BuildSandbox,
    lock: &LockFile,
    prepared: Option<Prepared>,
) -> Result<(), BackendError> {
    let manager = sandbox.manager;
    let (reused, installed) = match &prepared {
        Some(p) => {
            let from = p.scratch.path().join("upper");
            let to = sandbox.upper();
            fs::rename(&from, &to).map_err(io_err("move the resolve's overlay layer to", &to))?;
            (true, p.installed.is_some())
        }
        None => (false, false),
    };
    drop(prepared);
    sandbox.prepare_dirs()?;
    if !reused {
        sandbox.run(
            "refresh the package indexes",
            manager.refresh(sandbox.apt_sandbox_root()),
            Output::Stream,
        )?;
    }
    let dependencies = lock.dependencies.as_deref().unwrap_or_default();
    if !installed {
        // A manager that cannot pin is given the listed names only: it resolves their
        // dependencies itself, and the check below compares them with the lock.
        let targets = if manager.can_pin() {
            lock.closure()
        } else {
            lock.packages.clone()
        };
        install(sandbox, &targets, &lock.packages)?;
        let all = lock.closure();
        let names: Vec<&str> = all.iter().map(|p| p.name.as_str()).collect();
        let output = sandbox.run_accepting(
            "query installed versions",
            manager.query(&names),
            Output::Capture,
            |code| manager.query_succeeded(code),
        )?;
        manager
            .check_installed(&lock.packages, dependencies, &output)
            .map_err(package_error("check installed versions"))?;
    }
    sandbox.remove_caches()?;
    super::install::sync_file_system(&sandbox.upper())?;
    sandbox.events.emit(Event::info(format!(
        "{manager}: installed {}{}",
        lock.packages
            .iter()
            .map(|p| format!("{} {}", p.name, p.version))
            .collect::<Vec<_>>()
            .join(", "),
        match dependencies.len() {
            0 => String::new(),
            n => format!(" and {n} dependencies, each at its locked version"),
        }
    )));
    Ok(())
}

/// Find each `[gui] apps` package's desktop entries in its file list (the package manager
/// knows which files it installed) and record them for export (`crate::export`).
fn record_app_entries(
    sandbox: &BuildSandbox,
    apps: &[String],
    staging: &Path,
) -> Result<(), BackendError> {
    let mut entries = crate::export::AppEntries::new();
    for app in apps {
        let files = sandbox.run(
            "list the files of a [gui] apps package",
            sandbox.manager.list_files(app),
            Output::Capture,
        )?;
        entries.insert(app.clone(), packages::desktop_files(&files));
    }
    crate::export::write_app_entries(staging, &entries)
        .map_err(io_err("record the [gui] apps' desktop entries in", staging))
}

impl NamespaceBackend {
    fn spec(
        &self,
        req: &RunRequest,
        lower: &Path,
        ids: IdMapping,
    ) -> Result<RootfsSpec, BackendError> {
        let root = req.env_dir.join("root");
        let refuse = |detail: String| BackendError::Failed {
            backend: KIND,
            step: "choose the overlay driver",
            detail,
        };
        let setting = sandbox::check::OverlaySetting::from_env().map_err(refuse)?;
        let overlay = sandbox::check::overlay_driver(setting, sandbox::check::fuse_overlayfs())
            .map_err(refuse)?;
        // An interactive terminal becomes the sandbox's /dev/console, so that `tty` and
        // everything using ttyname(3) inside finds it.
        let console = sandbox::builder::terminal_of_stdin().unwrap_or_else(|errno| {
            req.events.emit(Event::warn(format!(
                "namespace backend: stdin is a terminal, but its device cannot be found \
                 ({errno}); inside, `tty` will say \"not a tty\""
            )));
            None
        });
        let hostname = req
            .meta
            .name
            .clone()
            .unwrap_or_else(|| req.meta.id.short().to_string());
        // The host's integrations first (the home, then sockets and shares that may lie in
        // it), then the manifest's mounts, which may land inside the home.
        let host = integration::for_environment(req.lock, req.home, req.env_dir);
        for warning in host.warnings() {
            req.events
                .emit(Event::warn(format!("namespace backend: {warning}")));
        }
        if let Some(dir) = &host.own_home {
            create_own_home(dir)?;
        }
        let mut binds = host.binds.clone();
        binds.extend(req.lock.mounts.iter().map(|m| Bind {
            source: m.host_path.display().to_string(),
            target: m.container_path.display().to_string(),
            read_only: m.read_only,
        }));
        let mut tmpfs = vec![("/tmp".to_string(), 0o1777)];
        tmpfs.extend(host.tmpfs.iter().cloned());
        let argv = if req.argv.is_empty() {
            login_shell(lower, &req.env_dir.join("upper"))
        } else {
            req.argv
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect()
        };
        Ok(RootfsSpec {
            ids,
            lower: vec![lower.display().to_string()],
            upper: req.env_dir.join("upper").display().to_string(),
            work: req.env_dir.join("work").display().to_string(),
            root: root.display().to_string(),
            userxattr: !nix::unistd::geteuid().is_root(),
            overlay,
            isolate_net: req.lock.runtime.network_isolation,
            hostname: Some(hostname),
            sys: true,
            tmpfs,
            devices: host.devices.clone(),
            console,
            binds,
            argv,
            env: environment(req, &host),
            cwd: host.cwd.clone(),
        })
    }
}

/// Waits for the environment's init if it is exiting (`sandbox::join::await_exiting_init`):
/// a session returns before its init has unmounted the sandbox.
fn await_exiting_init(env_dir: &Path) -> Result<(), BackendError> {
    sandbox::join::await_exiting_init(&init_record(env_dir)).map_err(|e| BackendError::Failed {
        backend: KIND,
        step: "wait for the environment's last init to end",
        detail: e.to_string(),
    })
}

fn start_failed(e: sandbox::SandboxError) -> BackendError {
    BackendError::Failed {
        backend: KIND,
        step: "start the sandbox",
        detail: e.to_string(),
    }
}

/// The user namespace of a rootless cold start with a subordinate range, made ahead so that
/// newuidmap and newgidmap run while the session is prepared (`sandbox::premap`). `None`
/// without such a range, with the executed helper (it cannot take one), and when the
/// environment runs: the session will join it and needs no namespace. The record is read
/// without its lock, so the guess may be wrong either way, and both are fine: stage 1
/// decides under the lock, closes a namespace it does not need, and makes its own when it
/// got none. A record that cannot be read is left to stage 1 too, which reports it.
fn premap(
    ids: &sandbox::idmap::IdMapChoice,
    record: &Path,
) -> Result<Option<sandbox::premap::Premapped>, BackendError> {
    let (Some((uid_map, gid_map)), Some(tools)) = (ids.mapping.outside_maps(), &ids.tools) else {
        return Ok(None);
    };
    if std::env::var_os(sandbox::EXEC_HELPER_VAR).is_some_and(|v| v == "1") {
        return Ok(None);
    }
    if let Ok(Some(init)) = sandbox::join::InitRecord::read(record) {
        if !init.exiting && init.is_alive() {
            return Ok(None);
        }
    }
    sandbox::premap::Premapped::start(tools, &uid_map, &gid_map).map_err(start_failed)
}

/// The lock's resource limits as this host can enforce them (`super::limits`); a warning
/// for each one it cannot.
fn limits_here(
    lock: &crate::lock::LockFile,
    events: &dyn crate::events::EventSink,
) -> sandbox::limits::Limits {
    let host = super::limits::HostFacts::here(&lock.runtime);
    let enforcement = super::limits::enforcement(&lock.runtime, &lock.short_id, &host);
    for warning in enforcement.warnings {
        events.emit(Event::warn(warning));
    }
    enforcement.limits
}

/// The interactive shell: the user's own (`$SHELL`) when the environment has it, else bash,
/// else sh, as a login shell.
fn login_shell(lower: &Path, upper: &Path) -> Vec<String> {
    // Looked up as the sandbox will see it (links, whiteouts), without mounting anything.
    let view = crate::export::view::EnvView::new(vec![upper.to_path_buf(), lower.to_path_buf()]);
    let user_shell = std::env::var("SHELL").ok().filter(|s| s.starts_with('/'));
    let shell = user_shell
        .into_iter()
        .chain(["/bin/bash".to_string(), "/bin/sh".to_string()])
        .find(|s| view.resolve(s).is_some())
        .unwrap_or_else(|| "/bin/sh".to_string());
    vec![shell, "-l".to_string()]
}

/// The program's whole environment, built here and never inherited: karapace's own
/// variables, the integrations', the manifest's `[env]` and the host variables the user's
/// policy lets through (`crate::envpolicy`).
fn environment(req: &RunRequest, host: &integration::Setup) -> Vec<(String, String)> {
    let mut own = vec![
        ("PATH".to_string(), PATH.to_string()),
        ("HOME".to_string(), host.home.clone()),
        ("USER".to_string(), "root".to_string()),
        ("container".to_string(), "karapace".to_string()),
        ("KARAPACE_ENV_ID".to_string(), req.meta.id.to_string()),
        ("KARAPACE_BACKEND".to_string(), KIND.as_str().to_string()),
    ];
    if let Some(name) = &req.meta.name {
        own.push(("KARAPACE_ENV_NAME".to_string(), name.clone()));
    }
    // The manifest may set PATH and HOME: its values replace karapace's defaults.
    own.retain(|(k, _)| !req.lock.env.contains_key(k));
    // Only what may pass is copied (see `process_env_where`).
    let caller = integration::process_env_where(|name| req.env_policy.passes(name));
    let mut env = req.env_policy.environment(
        caller.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        &own,
        &host.env,
        &req.lock.env,
    );
    if !env.iter().any(|(k, _)| k == "TERM") && std::io::stdin().is_terminal() {
        env.push(("TERM".to_string(), "xterm-256color".to_string()));
    }
    env
}

/// The environment's own home (`home = "own"`), made on first use: private to the user, as
/// a home directory is.
fn create_own_home(dir: &Path) -> Result<(), BackendError> {
    use std::os::unix::fs::DirBuilderExt;
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(io_err("create the environment's own home", dir)(e)),
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::symlink;

    /// The lookup `login_shell` uses.
    fn exists_inside(layers: &[&std::path::Path], path: &str) -> bool {
        let layers = layers.iter().map(|l| l.to_path_buf()).collect();
        crate::export::view::EnvView::new(layers)
            .resolve(path)
            .is_some()
    }

    #[test]
    fn paths_are_looked_up_inside_the_environment_not_on_the_host() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let lower = tmp.path().join("lower");
        let upper = tmp.path().join("upper");
        fs::create_dir_all(lower.join("usr/bin")).expect("mkdir");
        fs::create_dir_all(&upper).expect("mkdir");
        fs::write(lower.join("usr/bin/bash"), "").expect("write");
        symlink("usr/bin", lower.join("bin")).expect("symlink");
        let layers = [upper.as_path(), lower.as_path()];
        assert!(exists_inside(&layers, "/bin/bash"), "merged /usr link");
        assert!(exists_inside(&layers, "/usr/bin/bash"));
        assert!(!exists_inside(&layers, "/bin/zsh"));
        // An absolute link resolves inside the environment: /usr/bin/sh -> /bin/dash is
        // missing there even if the host has /bin/dash.
        symlink("/bin/dash", lower.join("usr/bin/sh")).expect("symlink");
        assert!(!exists_inside(&layers, "/bin/sh"));
        fs::write(upper.join("dash-in-upper"), "").expect("write");
        symlink("/dash-in-upper", upper.join("zsh")).expect("symlink");
        assert!(exists_inside(&layers, "/zsh"), "the upper layer counts");
        symlink("loop", lower.join("loop")).expect("symlink");
        assert!(!exists_inside(&layers, "/loop"), "a link loop ends");
    }
}

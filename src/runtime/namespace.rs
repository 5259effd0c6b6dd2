//! The `namespace` backend: environments as an overlay of the verified base image, run in
//! Linux namespaces by the sandbox helper (`crate::sandbox`).
//!
//! An environment directory holds `upper/` (its changes), `work/` (overlayfs's scratch) and
//! `root/` (the mount point, only ever mounted inside the sandbox's own mount namespace, so
//! nothing is left mounted on the host whatever happens). The base image stays in the image
//! cache and is the overlay's lower layer.
//!
//! Built today: base images and running programs (exec, enter, stop), several at once: a
//! session started while the environment runs joins its namespaces (`sandbox::join`), whose
//! init is recorded in `init` beside `upper/` (see `session.rs`). Not yet: installing
//! distribution packages (a manifest with packages is refused with a clear error, never
//! silently built without them), archive.

use std::fs;
use std::io::IsTerminal;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use super::backend::{
    Availability, BackendError, BuildOutput, BuildRequest, ResolveRequest, RunRequest,
    RuntimeBackend,
};
use super::session::{init_record, stop_init, stop_sessions, SessionProcess};
use crate::events::Event;
use crate::image::ImageCache;
use crate::lock::Resolution;
use crate::sandbox::{self, Bind, IdMapping, RootfsSpec, SandboxStdio};
use crate::store::Store;
use crate::types::{BackendKind, EnvId};

const KIND: BackendKind = BackendKind::Namespace;
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

pub struct NamespaceBackend;

fn io_err(step: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BackendError {
    BackendError::io_at(KIND, step, path)
}

fn helper_exe() -> Result<PathBuf, BackendError> {
    std::env::current_exe().map_err(io_err(
        "find the karapace-tui binary",
        Path::new("/proc/self/exe"),
    ))
}

/// Packages need the package-manager integration that has not landed yet: say so instead of
/// building an environment that silently lacks them.
fn refuse_packages(count: usize) -> Result<(), BackendError> {
    if count == 0 {
        return Ok(());
    }
    Err(BackendError::Failed {
        backend: KIND,
        step: "install packages",
        detail: format!(
            "the manifest lists {count} package(s), and installing distribution packages with \
             the namespace backend is not implemented yet (see docs/roadmap.md); remove \
             [system] packages, or use backend = \"mock\" to try the lifecycle"
        ),
    })
}

impl RuntimeBackend for NamespaceBackend {
    fn kind(&self) -> BackendKind {
        KIND
    }

    fn availability(&self) -> Availability {
        let probe = || -> Result<String, String> {
            let helper = helper_exe().map_err(|e| e.to_string())?;
            if nix::unistd::geteuid().is_root() {
                return Ok(
                    "running as root: mount, pid, uts and ipc namespaces without a user \
                           namespace"
                        .to_string(),
                );
            }
            sandbox::check::unprivileged_userns(&helper)?;
            let scratch = tempfile::tempdir().map_err(|e| format!("temp directory: {e}"))?;
            sandbox::check::overlay_in_userns(&helper, scratch.path())?;
            Ok("user namespaces and overlayfs (userxattr) work for this user".to_string())
        };
        match probe() {
            Ok(detail) => Availability {
                backend: KIND,
                available: true,
                detail,
                fix: None,
            },
            Err(reason) => Availability {
                backend: KIND,
                available: false,
                detail: reason,
                fix: Some(
                    "allow unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1 \
                     and user.max_user_namespaces > 0), or use backend = \"mock\""
                        .to_string(),
                ),
            },
        }
    }

    fn resolve(&self, req: &ResolveRequest) -> Result<Resolution, BackendError> {
        refuse_packages(req.manifest.packages.len())?;
        let record = req.images.ensure(&req.manifest.base, None, req.offline)?;
        Ok(Resolution {
            base: record.locked(),
            packages: Vec::new(),
        })
    }

    fn build(&self, req: &BuildRequest) -> Result<BuildOutput, BackendError> {
        refuse_packages(req.lock.packages.len())?;
        // Verified again from the cache (or fetched exactly as locked).
        let record = req
            .images
            .ensure(&req.manifest.base, Some(&req.lock.base), req.offline)?;
        for dir in ["upper", "work", "root"] {
            let path = req.staging.join(dir);
            fs::create_dir(&path).map_err(io_err("create", &path))?;
        }
        req.events.emit(Event::info(format!(
            "namespace: environment on image {} ({}), changes in upper/",
            record.reference, record.sha256
        )));
        Ok(BuildOutput { layers: Vec::new() })
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
        for warning in unenforced(req.lock) {
            req.events.emit(Event::warn(warning));
        }
        let spec = self.spec(req, &lower);
        let plan = spec.plan();
        // The helper joins the environment if it runs (overlayfs must not mount one upper
        // directory twice), else starts it and records its init there.
        let record = init_record(req.env_dir);
        let helper = helper_exe()?;
        let plan_dir = req.store.root().join("tmp");
        let mut started_again = false;
        loop {
            let stdio = stdio(req.stdout_to_stderr)?;
            let mut session = sandbox::spawn_session(&plan, &record, &helper, &plan_dir, stdio)
                .map_err(|e| BackendError::Failed {
                    backend: KIND,
                    step: "start the sandbox",
                    detail: e.to_string(),
                })?;
            let pid = session.child.id() as i32;
            let process = SessionProcess::of_pid(pid, 0)
                .map_err(io_err("read process start time", Path::new("/proc")))?;
            req.marker.record(&process.encode())?;
            let status = session
                .child
                .wait()
                .map_err(io_err("wait for the sandbox", req.env_dir))?;
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
        Ok(stopped)
    }

    fn teardown(&self, env_dir: &Path) -> Result<(), BackendError> {
        // Nothing is mounted on the host. overlayfs leaves work/work with mode 000, which
        // would stop a rootless removal of the directory.
        let work = env_dir.join("work");
        if work.exists() {
            sandbox::check::open_overlay_work_dir(&work);
        }
        Ok(())
    }

    fn supports_read_only(&self) -> bool {
        false
    }
}

impl NamespaceBackend {
    fn spec(&self, req: &RunRequest, lower: &Path) -> RootfsSpec {
        let root = req.env_dir.join("root");
        let hostname = req
            .meta
            .name
            .clone()
            .unwrap_or_else(|| req.meta.id.short().to_string());
        let binds = req
            .lock
            .mounts
            .iter()
            .map(|m| Bind {
                source: m.host_path.display().to_string(),
                target: m.container_path.display().to_string(),
                read_only: m.read_only,
            })
            .collect();
        let argv = if req.argv.is_empty() {
            login_shell(lower, &req.env_dir.join("upper"))
        } else {
            req.argv
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect()
        };
        RootfsSpec {
            ids: IdMapping::for_current_user(),
            lower: vec![lower.display().to_string()],
            upper: req.env_dir.join("upper").display().to_string(),
            work: req.env_dir.join("work").display().to_string(),
            root: root.display().to_string(),
            userxattr: !nix::unistd::geteuid().is_root(),
            isolate_net: req.lock.runtime.network_isolation,
            hostname: Some(hostname),
            sys: true,
            tmpfs: vec![("/tmp".to_string(), 0o1777)],
            devices: Vec::new(),
            binds,
            argv,
            env: environment(req),
            cwd: "/root".to_string(),
        }
    }
}

/// What the manifest asks for that this backend does not apply yet: said every time, never
/// silently dropped.
fn unenforced(lock: &crate::lock::LockFile) -> Vec<String> {
    let mut out = Vec::new();
    let limits = [
        ("cpu_shares", lock.runtime.cpu_shares),
        ("memory_limit_mb", lock.runtime.memory_limit_mb),
    ];
    for (name, value) in limits {
        if let Some(value) = value {
            out.push(format!(
                "namespace backend: resource limit {name} = {value} is NOT applied yet \
                 (cgroup limits are not implemented; see docs/roadmap.md)"
            ));
        }
    }
    if lock.gpu || lock.audio {
        out.push(
            "namespace backend: [hardware] gpu/audio devices are NOT passed through yet \
             (see docs/roadmap.md)"
                .to_string(),
        );
    }
    if !lock.gui_apps.is_empty() {
        out.push(
            "namespace backend: [gui] apps are recorded in the lock but not installed or exported \
             yet"
            .to_string(),
        );
    }
    out
}

/// bash as a login shell when the image has it, else sh.
fn login_shell(lower: &Path, upper: &Path) -> Vec<String> {
    let has = |p: &str| lower.join(p).exists() || upper.join(p).exists();
    let shell = if has("bin/bash") {
        "/bin/bash"
    } else {
        "/bin/sh"
    };
    vec![shell.to_string(), "-l".to_string()]
}

/// The program's whole environment: built here, never inherited (only the terminal and locale
/// settings are taken from the host).
fn environment(req: &RunRequest) -> Vec<(String, String)> {
    let mut env = vec![
        ("PATH".to_string(), PATH.to_string()),
        ("HOME".to_string(), "/root".to_string()),
        ("USER".to_string(), "root".to_string()),
        ("container".to_string(), "karapace".to_string()),
        ("KARAPACE_ENV_ID".to_string(), req.meta.id.to_string()),
        ("KARAPACE_BACKEND".to_string(), KIND.as_str().to_string()),
    ];
    if let Some(name) = &req.meta.name {
        env.push(("KARAPACE_ENV_NAME".to_string(), name.clone()));
    }
    for key in ["TERM", "COLORTERM", "LANG", "TZ"] {
        if let Ok(value) = std::env::var(key) {
            env.push((key.to_string(), value));
        }
    }
    if !env.iter().any(|(k, _)| k == "TERM") && std::io::stdin().is_terminal() {
        env.push(("TERM".to_string(), "xterm-256color".to_string()));
    }
    env
}

fn stdio(stdout_to_stderr: bool) -> Result<SandboxStdio, BackendError> {
    let mut stdio = SandboxStdio::inherit();
    if stdout_to_stderr {
        let stderr = std::io::stderr()
            .as_fd()
            .try_clone_to_owned()
            .map_err(io_err("duplicate stderr", Path::new("/dev/stderr")))?;
        stdio.stdout = std::process::Stdio::from(stderr);
    }
    Ok(stdio)
}

//! OCI runtimes: which of runc, crun and youki are on `PATH`, their versions, and whether each
//! really starts a container here.
//!
//! Finding a runtime is not enough: crun refuses hybrid cgroup hierarchies outright, and a
//! rootless runtime may lack a delegated cgroup. So [`probe`] runs `RUNTIME --version`, then
//! one tiny container: a bundle in a temporary directory whose root is empty except for the
//! host's `/usr` (and `/bin`, `/lib`… when they are not symlinks into it) bound read-only, running
//! `true` in new pid, mount, ipc and uts namespaces (plus a user namespace mapping only the
//! caller's ids when rootless). The runtime's state goes to `--root` inside the same
//! temporary directory, and `run` deletes the container when it exits, so nothing is left
//! behind; a runtime that hangs is killed after [`RUN_TIMEOUT`] and its container deleted.
//! On this kind of host the whole probe takes tens of milliseconds per runtime.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use serde_json::json;

use super::cgroup::{Hierarchy, Layout};
use super::distro::{Fixes, Package};
use super::host::{Host, Ids};
use super::{backend_check, Check, Group, Status};
use crate::types::BackendKind;

/// The runtimes looked for, in the order they are preferred.
pub const RUNTIMES: [&str; 3] = ["runc", "crun", "youki"];

pub const VERSION_TIMEOUT: Duration = Duration::from_secs(5);
pub const RUN_TIMEOUT: Duration = Duration::from_secs(15);

/// What trying a runtime found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciProbe {
    /// The version it reports (`1.1.5+ds1`), or why it could not be read.
    pub version: Result<String, String>,
    /// Whether a test container ran, or the runtime's error.
    pub start: Result<(), String>,
}

const G: Group = Group::Oci;

pub fn checks(
    host: &dyn Host,
    fixes: &Fixes,
    cgroups: &Layout,
    try_containers: bool,
) -> Vec<Check> {
    let mut checks = vec![backend_check(host, BackendKind::Oci)];
    let rootless = !host.ids().is_root();
    let found: Vec<(&str, PathBuf)> = RUNTIMES
        .iter()
        .filter_map(|name| host.find_program(name).map(|path| (*name, path)))
        .collect();
    if !try_containers && !found.is_empty() {
        // Found, not tried: say so, and where the real check is.
        let names: Vec<&str> = found.iter().map(|(n, _)| *n).collect();
        checks.push(Check::new(
            G,
            "runtime",
            "OCI runtime",
            Status::Warn,
            format!(
                "found {}; not tried yet (the prerequisite screen, `p`, and `karapace-tui \
                 doctor` start a test container with each)",
                names.join(", ")
            ),
        ));
        return checks;
    }
    let mut tried = Vec::new();
    for (name, path) in &found {
        let probe = host.oci_runtime(path);
        tried.push((*name, probe.start.is_ok()));
        checks.push(runtime_check(name, path, probe, rootless, cgroups));
    }
    let working: Vec<&str> = tried
        .iter()
        .filter(|(_, ok)| *ok)
        .map(|(n, _)| *n)
        .collect();
    let summary = |status, meaning| Check::new(G, "runtime", "OCI runtime", status, meaning);
    let summary = if found.is_empty() {
        summary(
            Status::Fail,
            format!("no OCI runtime ({}) on PATH", RUNTIMES.join(", ")),
        )
        .fix(fixes.install(&[Package::Runc]))
    } else if let Some(first) = working.first() {
        summary(Status::Pass, format!("{first} starts containers here"))
    } else {
        let names: Vec<&str> = found.iter().map(|(n, _)| *n).collect();
        let fix = if names.contains(&"runc") {
            fixes.unified_cgroups()
        } else {
            fixes.install(&[Package::Runc])
        };
        summary(
            Status::Fail,
            format!(
                "none of the runtimes found ({}) can start a container here",
                names.join(", ")
            ),
        )
        .fix(fix)
    };
    // The summary first: it is what decides, the runtimes below it say why.
    checks.insert(1, summary);
    // Per-runtime failures do not decide on their own; fixes point to one that works.
    for check in checks.iter_mut().skip(2) {
        if check.status == Status::Fail {
            if let Some(good) = working.first() {
                let fix = check.fix.take().unwrap_or_default();
                check.fix = Some(format!("{good} works here and is used; or {fix}"));
            }
        }
    }
    checks
}

fn runtime_check(
    name: &str,
    path: &Path,
    probe: OciProbe,
    rootless: bool,
    cgroups: &Layout,
) -> Check {
    let version = match &probe.version {
        Ok(v) => format!("{name} {v}"),
        Err(why) => format!("{name} (no version: {why})"),
    };
    let shown = format!("{version} ({})", path.display());
    let undelegated = rootless && !cgroups.delegated();
    let check = |status, meaning| Check::new(G, name, name, status, meaning).optional();
    match probe.start {
        Ok(()) if undelegated => check(
            Status::Pass,
            format!(
                "{shown} starts a test container here (rootless without a delegated cgroup: \
                 containers get no resource limits)"
            ),
        ),
        Ok(()) => check(
            Status::Pass,
            format!("{shown} starts a test container here"),
        ),
        Err(why) => {
            let fix = if cgroups.hierarchy != Hierarchy::Unified {
                format!("{name} may need the unified cgroup v2 hierarchy (see the cgroup check)")
            } else if undelegated {
                format!(
                    "rootless {name} needs a cgroup delegated to this user (see the cgroup \
                     check)"
                )
            } else {
                format!("update {name}, or try another runtime")
            };
            let rootless_note = if undelegated {
                " (rootless, without a delegated cgroup)"
            } else {
                ""
            };
            check(
                Status::Fail,
                format!("{shown} cannot start a container here{rootless_note}: {why}"),
            )
            .fix(fix)
        }
    }
}

/// `RUNTIME --version`, then a test container (see the module doc).
pub fn probe(program: &Path, ids: &Ids) -> OciProbe {
    OciProbe {
        version: version(program),
        start: try_container(program, ids),
    }
}

fn version(program: &Path) -> Result<String, String> {
    let mut cmd = Command::new(program);
    cmd.arg("--version");
    let out = run_bounded(cmd, VERSION_TIMEOUT)?;
    if !out.status.success() {
        return Err(format!("`--version` exited with {}", out.status));
    }
    let first = out.stdout.lines().next().unwrap_or("").trim();
    // "runc version 1.1.5+ds1", "crun version 1.8.1", "youki version 0.3.3".
    Ok(first
        .split_once(" version ")
        .map_or(first, |(_, v)| v)
        .to_string())
}

/// Names of probe directories in the temporary directory start with this.
const PROBE_PREFIX: &str = ".karapace-oci-probe-";

/// A probe directory is only judged a leftover after this long (it is locked microseconds
/// after it is made, but another probe could look in between).
const STALE_AFTER: Duration = Duration::from_secs(60);

/// A private temporary directory, flocked while in use. A probe whose process ends first (the
/// TUI quit while its checks ran: other threads' destructors never run) leaves its directory
/// behind, unlocked; the next probe removes such leftovers.
fn probe_dir() -> Result<(tempfile::TempDir, Flock<std::fs::File>), String> {
    remove_leftovers(&std::env::temp_dir());
    let dir = tempfile::Builder::new()
        .prefix(PROBE_PREFIX)
        .tempdir()
        .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
    let handle = std::fs::File::open(dir.path())
        .map_err(|e| format!("cannot open {}: {e}", dir.path().display()))?;
    let lock = Flock::lock(handle, FlockArg::LockExclusiveNonblock)
        .map_err(|(_, e)| format!("cannot lock {}: {e}", dir.path().display()))?;
    Ok((dir, lock))
}

/// Remove this user's unlocked probe directories older than [`STALE_AFTER`] from `tmp`.
/// Best effort: what cannot be removed now is tried again by the next probe, and it is no
/// concern of the check being run.
fn remove_leftovers(tmp: &Path) {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return;
    };
    let me = nix::unistd::geteuid().as_raw();
    for entry in entries.flatten() {
        if !entry
            .file_name()
            .to_string_lossy()
            .starts_with(PROBE_PREFIX)
        {
            continue;
        }
        let path = entry.path();
        let old = std::fs::symlink_metadata(&path).is_ok_and(|m| {
            m.is_dir()
                && m.uid() == me
                && m.modified()
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > STALE_AFTER)
        });
        let Some(handle) = old.then(|| std::fs::File::open(&path).ok()).flatten() else {
            continue;
        };
        if let Ok(_unused) = Flock::lock(handle, FlockArg::LockExclusiveNonblock) {
            drop(std::fs::remove_dir_all(&path));
        }
    }
}

fn try_container(program: &Path, ids: &Ids) -> Result<(), String> {
    let (dir, _lock) = probe_dir()?;
    let bundle = dir.path().join("bundle");
    let state = dir.path().join("state");
    let config = bundle_config(&bundle, ids)?;
    std::fs::create_dir(&state).map_err(|e| format!("cannot create {}: {e}", state.display()))?;
    let config_path = bundle.join("config.json");
    std::fs::write(&config_path, config.to_string())
        .map_err(|e| format!("cannot write {}: {e}", config_path.display()))?;
    let id = format!("karapace-probe-{}", crate::fsutil::unique_suffix());
    let mut cmd = Command::new(program);
    cmd.arg("--root")
        .arg(&state)
        .arg("run")
        .arg("--bundle")
        .arg(&bundle)
        .arg(&id);
    let result = run_bounded(cmd, RUN_TIMEOUT);
    let out = match result {
        Ok(out) => out,
        Err(why) => {
            // Killed on the timeout: the container may still be recorded; delete it.
            let mut delete = Command::new(program);
            delete
                .arg("--root")
                .arg(&state)
                .args(["delete", "--force", &id]);
            return Err(match run_bounded(delete, VERSION_TIMEOUT) {
                Ok(d) if d.status.success() => why,
                Ok(d) => format!(
                    "{why}; deleting the test container failed: {}",
                    d.stderr.trim()
                ),
                Err(e) => format!("{why}; deleting the test container failed: {e}"),
            });
        }
    };
    if out.status.success() {
        return Ok(());
    }
    let said = out
        .stderr
        .lines()
        .chain(out.stdout.lines())
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("no message")
        .to_string();
    Err(format!("`run` exited with {}: {said}", out.status))
}

/// Writes the bundle's root file system and returns its `config.json`.
fn bundle_config(bundle: &Path, ids: &Ids) -> Result<serde_json::Value, String> {
    let rootfs = bundle.join("rootfs");
    let mkdir = |p: &Path| {
        std::fs::create_dir_all(p).map_err(|e| format!("cannot create {}: {e}", p.display()))
    };
    mkdir(&rootfs)?;
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc"}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
    ];
    for name in ["usr", "bin", "lib", "lib64", "sbin"] {
        let host = Path::new("/").join(name);
        let inside = rootfs.join(name);
        let Ok(meta) = std::fs::symlink_metadata(&host) else {
            continue;
        };
        if meta.file_type().is_symlink() {
            // Merged /usr: keep the same link, so paths resolve as on the host.
            let target = std::fs::read_link(&host)
                .map_err(|e| format!("cannot read the link {}: {e}", host.display()))?;
            std::os::unix::fs::symlink(&target, &inside)
                .map_err(|e| format!("cannot create {}: {e}", inside.display()))?;
        } else if meta.is_dir() {
            mkdir(&inside)?;
            mounts.push(json!({"destination": host, "type": "bind", "source": host,
                               "options": ["rbind", "ro"]}));
        }
    }
    mkdir(&rootfs.join("proc"))?;
    mkdir(&rootfs.join("dev"))?;
    let program = ["/usr/bin/true", "/bin/true"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .ok_or("no `true` program (/usr/bin/true or /bin/true) to run in the test container")?;
    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "mount"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
    ];
    let mut linux = json!({});
    if !ids.is_root() {
        namespaces.push(json!({"type": "user"}));
        linux["uidMappings"] = json!([{"containerID": 0, "hostID": ids.uid, "size": 1}]);
        linux["gidMappings"] = json!([{"containerID": 0, "hostID": ids.gid, "size": 1}]);
    }
    linux["namespaces"] = json!(namespaces);
    Ok(json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": [program],
            "env": ["PATH=/usr/bin:/bin"],
            "cwd": "/",
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "karapace-probe",
        "mounts": mounts,
        "linux": linux
    }))
}

struct Output {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Run `cmd` with no input, collecting its output; kill it after `limit`. The output goes to
/// anonymous temporary files rather than pipes, so nothing can block on a full pipe, and a
/// process left holding them (a runtime's daemon) cannot keep us waiting for end of file.
fn run_bounded(mut cmd: Command, limit: Duration) -> Result<Output, String> {
    let shown = format!("{cmd:?}");
    let file = || tempfile::tempfile().map_err(|e| format!("cannot create a temporary file: {e}"));
    let (mut out, mut err) = (file()?, file()?);
    let stdio = |f: &std::fs::File| {
        f.try_clone()
            .map(Stdio::from)
            .map_err(|e| format!("cannot duplicate a temporary file: {e}"))
    };
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(stdio(&out)?)
        .stderr(stdio(&err)?)
        .spawn()
        .map_err(|e| format!("cannot start {shown}: {e}"))?;
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let killed = child.kill().and_then(|()| child.wait());
                return Err(match killed {
                    Ok(_) => format!("{shown} did not finish within {} s", limit.as_secs()),
                    Err(e) => format!("{shown} hung and could not be killed: {e}"),
                });
            }
            Err(e) => return Err(format!("cannot wait for {shown}: {e}")),
        }
    };
    let read = |f: &mut std::fs::File| -> Result<String, String> {
        let mut bytes = Vec::new();
        f.seek(SeekFrom::Start(0))
            .and_then(|_| f.read_to_end(&mut bytes))
            .map_err(|e| format!("cannot read the output of {shown}: {e}"))?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    Ok(Output {
        status,
        stdout: read(&mut out)?,
        stderr: read(&mut err)?,
    })
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;

    fn aged(path: &Path) {
        let old = SystemTime::now() - Duration::from_secs(3600);
        std::fs::File::open(path)
            .and_then(|f| f.set_modified(old))
            .expect("set mtime");
    }

    #[test]
    fn leftovers_are_removed_but_not_directories_in_use_or_new_or_foreign() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = |name: &str| {
            let path = tmp.path().join(name);
            std::fs::create_dir_all(path.join("bundle/rootfs")).expect("mkdir");
            path
        };
        let leftover = dir(&format!("{PROBE_PREFIX}old"));
        let in_use = dir(&format!("{PROBE_PREFIX}busy"));
        let fresh = dir(&format!("{PROBE_PREFIX}new"));
        let other = dir("someone-elses");
        for path in [&leftover, &in_use, &other] {
            aged(path);
        }
        let handle = std::fs::File::open(&in_use).expect("open");
        let _held = Flock::lock(handle, FlockArg::LockExclusiveNonblock).expect("lock");
        remove_leftovers(tmp.path());
        assert!(!leftover.exists());
        assert!(in_use.exists() && fresh.exists() && other.exists());
    }
}

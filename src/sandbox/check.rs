//! Run-time probes of what the kernel allows, for tests (skip or, with
//! `KARAPACE_REQUIRE_SANDBOX=1`, fail) and for `doctor`. Each returns `Err(why not)`.
//!
//! The probes do not guess: after reading the sysctls that can rule a feature out, they run
//! the helper with a small plan (`__sandbox-init --probe`) that performs the real steps.

use std::fs;
use std::path::Path;

use super::builder::IdMapping;
use super::idmap;
use super::plan::{IdRange, SandboxPlan, SetupStep};
use super::spawn::{self, PlanFile, SandboxStdio};
use super::HELPER_VERB;

/// Whether this user can create user, mount, PID, UTS, IPC and network namespaces with its own
/// uid and gid mapped to root. `helper` is the karapace-tui binary.
pub fn unprivileged_userns(helper: &Path) -> Result<(), String> {
    for (path, bad, why) in [
        (
            "/proc/sys/kernel/unprivileged_userns_clone",
            "0",
            "kernel.unprivileged_userns_clone is 0",
        ),
        (
            "/proc/sys/user/max_user_namespaces",
            "0",
            "user.max_user_namespaces is 0",
        ),
        (
            "/proc/sys/kernel/apparmor_restrict_unprivileged_userns",
            "1",
            "kernel.apparmor_restrict_unprivileged_userns is 1",
        ),
    ] {
        if let Ok(text) = fs::read_to_string(path) {
            if text.trim() == bad && !nix::unistd::geteuid().is_root() {
                return Err(format!("{why} ({path})"));
            }
        }
    }
    let mut steps = namespace_steps();
    steps.push(SetupStep::UnshareOther {
        pid: true,
        uts: true,
        ipc: true,
        net: true,
    });
    run_probe(helper, steps, &std::env::temp_dir())
}

/// Whether kernel overlayfs mounts with `userxattr` inside a user namespace, with upper and
/// work directories in `scratch` (use a directory on the store's file system).
pub fn overlay_in_userns(helper: &Path, scratch: &Path) -> Result<(), String> {
    let dir = tempfile::Builder::new()
        .prefix(".karapace-overlay-probe-")
        .tempdir_in(scratch)
        .map_err(|e| {
            format!(
                "cannot create a probe directory in {}: {e}",
                scratch.display()
            )
        })?;
    let sub = |name: &str| dir.path().join(name).display().to_string();
    for name in ["lower", "upper", "work", "merged"] {
        fs::create_dir(sub(name)).map_err(|e| format!("cannot create {}: {e}", sub(name)))?;
    }
    let mut steps = namespace_steps();
    steps.push(SetupStep::MountOverlay {
        lower: vec![sub("lower")],
        upper: sub("upper"),
        work: sub("work"),
        target: sub("merged"),
        userxattr: true,
    });
    let result = run_probe(helper, steps, dir.path());
    open_overlay_work_dir(&dir.path().join("work"));
    result
}

/// Whether this user's sandboxes get a full subordinate id range: [`idmap::detect`] finds it
/// configured, and a probe in which newuidmap/newgidmap really write it succeeds. `Ok`: the
/// mapping; `Err`: why not, with the fix.
pub fn subordinate_ids(helper: &Path) -> Result<IdMapping, String> {
    let choice = idmap::detect();
    if !matches!(choice.mapping, IdMapping::Subordinate { .. }) {
        return Err(choice.describe());
    }
    run_probe(helper, choice.mapping.steps(), &std::env::temp_dir()).map_err(|e| {
        format!(
            "a full subordinate id range is configured ({}), but writing it failed, so rootless \
             sandboxes cannot start: {e}",
            choice.describe()
        )
    })?;
    Ok(choice.mapping)
}

/// `doctor`'s line on ids: which mapping sandboxes get, and why not a full range. `Err` only
/// when a configured full range does not work (sandboxes would fail to start).
pub fn id_mapping(helper: &Path) -> Result<String, String> {
    let choice = idmap::detect();
    match choice.mapping {
        IdMapping::Subordinate { .. } => subordinate_ids(helper).map(|_| choice.describe()),
        _ => Ok(choice.describe()),
    }
}

/// Overlayfs leaves `WORK/work` with mode 0; without read access a non-root owner cannot
/// list it, so `remove_dir_all` of the scratch fails. Call before removing a work directory.
pub fn open_overlay_work_dir(work: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let inner = work.join("work");
    if inner.is_dir() {
        // Best effort: if this fails, the removal that follows reports the problem.
        drop(fs::set_permissions(
            &inner,
            fs::Permissions::from_mode(0o700),
        ));
    }
}

/// User namespace (the caller's ids as root), mount namespace, `/` slave.
fn namespace_steps() -> Vec<SetupStep> {
    let uid = nix::unistd::getuid().as_raw();
    let gid = nix::unistd::getgid().as_raw();
    vec![
        SetupStep::UnshareUserNs,
        SetupStep::WriteIdMaps {
            uid_map: vec![IdRange::single(0, uid)],
            gid_map: vec![IdRange::single(0, gid)],
        },
        SetupStep::UnshareMountNs,
        SetupStep::MakeRootPrivate,
    ]
}

fn run_probe(helper: &Path, steps: Vec<SetupStep>, plan_dir: &Path) -> Result<(), String> {
    let plan = SandboxPlan {
        steps,
        argv: Vec::new(),
        env: Vec::new(),
        cwd: "/".into(),
    };
    let file = PlanFile::write_unchecked(&plan, plan_dir).map_err(|e| e.to_string())?;
    let child = spawn::start(
        helper,
        &["--probe".into()],
        &plan,
        file,
        &[],
        SandboxStdio::captured(),
    )
    .map_err(|e| e.to_string())?;
    let out = child
        .wait_with_output()
        .map_err(|e| format!("cannot wait for {}: {e}", helper.display()))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    Err(format!(
        "`{} {HELPER_VERB} --probe` failed ({}): {}",
        helper.display(),
        out.status,
        stderr.trim()
    ))
}

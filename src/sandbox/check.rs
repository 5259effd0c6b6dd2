//! Run-time probes of what the kernel allows, for tests (skip or, with
//! `KARAPACE_REQUIRE_SANDBOX=1`, fail) and for `doctor`. Each returns `Err(why not)`.
//!
//! The probes do not guess: after reading the sysctls that can rule a feature out, they run
//! the helper with a small plan (`__sandbox-init --probe`) that performs the real steps. The
//! fuse-overlayfs probe looks for the program and opens `/dev/fuse`, which is all it needs
//! beyond what the kernel overlay probe already checks; [`OverlaySetting`] and
//! [`overlay_driver`] turn both into the driver a sandbox uses.

use std::fs;
use std::path::Path;

use super::builder::IdMapping;
use super::idmap;
use super::plan::{IdRange, OverlayDriver, SandboxPlan, SetupStep};
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
    // The order of the sandbox's plan: the others before the mount namespace (`Stage`).
    steps.insert(
        2,
        SetupStep::UnshareOther {
            pid: true,
            uts: true,
            ipc: true,
            net: true,
        },
    );
    run_probe(helper, steps, &std::env::temp_dir())
}

/// Whether kernel overlayfs mounts with `userxattr` inside a user namespace, with upper and
/// work directories in `scratch` (use a directory on the store's file system).
pub fn overlay_in_userns(helper: &Path, scratch: &Path) -> Result<(), String> {
    overlay_probe(helper, scratch, namespace_steps(), true)
}

/// Mounts a kernel overlay of empty directories in `scratch` after `namespaces`.
fn overlay_probe(
    helper: &Path,
    scratch: &Path,
    namespaces: Vec<SetupStep>,
    userxattr: bool,
) -> Result<(), String> {
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
    let mut steps = namespaces;
    steps.push(SetupStep::MountOverlay {
        lower: vec![sub("lower")],
        upper: sub("upper"),
        work: sub("work"),
        target: sub("merged"),
        userxattr,
        driver: OverlayDriver::Kernel,
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

/// The environment variable that chooses how the root overlay is mounted.
pub const OVERLAY_VAR: &str = "KARAPACE_OVERLAY";

/// `KARAPACE_OVERLAY`: `auto` (unset or empty too), `kernel` or `fuse`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverlaySetting {
    /// Kernel overlayfs, with fuse-overlayfs as the fallback when it can be used.
    Auto,
    Kernel,
    Fuse,
}

impl OverlaySetting {
    pub fn parse(value: Option<&str>) -> Result<OverlaySetting, String> {
        match value {
            None | Some("" | "auto") => Ok(OverlaySetting::Auto),
            Some("kernel") => Ok(OverlaySetting::Kernel),
            Some("fuse") => Ok(OverlaySetting::Fuse),
            Some(other) => Err(format!(
                "{OVERLAY_VAR}={other} is not one of `auto`, `kernel` or `fuse`"
            )),
        }
    }

    pub fn from_env() -> Result<OverlaySetting, String> {
        let value = std::env::var_os(OVERLAY_VAR);
        let text = value.as_ref().map(|v| v.to_string_lossy());
        OverlaySetting::parse(text.as_deref())
    }
}

/// The overlay driver for `setting`, given the answer of [`fuse_overlayfs`].
pub fn overlay_driver(
    setting: OverlaySetting,
    fuse: Result<String, String>,
) -> Result<OverlayDriver, String> {
    match (setting, fuse) {
        (OverlaySetting::Kernel, _) | (OverlaySetting::Auto, Err(_)) => Ok(OverlayDriver::Kernel),
        (OverlaySetting::Auto, Ok(program)) => Ok(OverlayDriver::KernelOrFuse { program }),
        (OverlaySetting::Fuse, Ok(program)) => Ok(OverlayDriver::Fuse { program }),
        (OverlaySetting::Fuse, Err(why)) => Err(format!("{OVERLAY_VAR}=fuse, but {why}")),
    }
}

/// The fuse-overlayfs program (an absolute path found on `PATH`), if `/dev/fuse` can be
/// opened for reading and writing by this user; else why not and how to fix it.
pub fn fuse_overlayfs() -> Result<String, String> {
    fuse_overlayfs_status().map_err(|problem| problem.to_string())
}

/// The device fuse-overlayfs needs.
pub const FUSE_DEVICE: &str = "/dev/fuse";

/// Why fuse-overlayfs cannot be used, as data (`doctor` words the fix per distribution).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FuseProblem {
    NotInstalled,
    /// The program is there, but the device cannot be opened for reading and writing.
    Device {
        program: String,
        error: String,
    },
}

impl std::fmt::Display for FuseProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FuseProblem::NotInstalled => f.write_str(
                "fuse-overlayfs is not installed (not found on PATH); install it (Debian and \
                 Ubuntu: `apt-get install fuse-overlayfs`)",
            ),
            FuseProblem::Device { program, error } => write!(
                f,
                "{program} is installed, but {FUSE_DEVICE} cannot be opened for reading and \
                 writing by this user ({error}); load the module (`modprobe fuse`) and make the \
                 device usable by everyone (`chmod 0666 {FUSE_DEVICE}`, as the fuse packages' \
                 udev rule does)"
            ),
        }
    }
}

/// [`fuse_overlayfs`] with the reason as data.
pub fn fuse_overlayfs_status() -> Result<String, FuseProblem> {
    let program = find_program("fuse-overlayfs").ok_or(FuseProblem::NotInstalled)?;
    match fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(FUSE_DEVICE)
    {
        Ok(_) => Ok(program),
        Err(e) => Err(FuseProblem::Device {
            program,
            error: e.to_string(),
        }),
    }
}

/// `name` in the absolute directories of `PATH` (or the standard ones), if executable.
pub fn find_program(name: &str) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(name))
        .find(|p| fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
        .map(|p| p.display().to_string())
}

/// Whether kernel overlayfs mounts the way the sandbox mounts it: in a user namespace with
/// `userxattr`, or as real root in a mount namespace alone.
pub fn kernel_overlay(helper: &Path, scratch: &Path) -> Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return overlay_in_userns(helper, scratch);
    }
    let namespaces = vec![SetupStep::UnshareMountNs, SetupStep::MakeRootPrivate];
    overlay_probe(helper, scratch, namespaces, false)
}

fn run_probe(helper: &Path, steps: Vec<SetupStep>, plan_dir: &Path) -> Result<(), String> {
    let plan = SandboxPlan {
        steps,
        argv: Vec::new(),
        env: Vec::new(),
        cwd: "/".into(),
        limits: Default::default(),
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

#[cfg(test)]
mod tests {
    use super::{overlay_driver, OverlaySetting};
    use crate::sandbox::plan::OverlayDriver;

    #[test]
    fn the_overlay_setting_is_auto_kernel_or_fuse() {
        for (value, setting) in [
            (None, OverlaySetting::Auto),
            (Some(""), OverlaySetting::Auto),
            (Some("auto"), OverlaySetting::Auto),
            (Some("kernel"), OverlaySetting::Kernel),
            (Some("fuse"), OverlaySetting::Fuse),
        ] {
            assert_eq!(OverlaySetting::parse(value), Ok(setting), "{value:?}");
        }
        let err = OverlaySetting::parse(Some("Fuse")).unwrap_err();
        assert!(
            err.contains("KARAPACE_OVERLAY=Fuse") && err.contains("`fuse`"),
            "{err}"
        );
    }

    #[test]
    fn auto_falls_back_to_fuse_only_when_fuse_can_be_used() {
        let found = || Ok("/usr/bin/fuse-overlayfs".to_string());
        let missing = || Err("fuse-overlayfs is not installed".to_string());
        let program = "/usr/bin/fuse-overlayfs".to_string();
        assert_eq!(
            overlay_driver(OverlaySetting::Auto, found()),
            Ok(OverlayDriver::KernelOrFuse {
                program: program.clone()
            })
        );
        assert_eq!(
            overlay_driver(OverlaySetting::Auto, missing()),
            Ok(OverlayDriver::Kernel)
        );
        assert_eq!(
            overlay_driver(OverlaySetting::Kernel, found()),
            Ok(OverlayDriver::Kernel)
        );
        assert_eq!(
            overlay_driver(OverlaySetting::Fuse, found()),
            Ok(OverlayDriver::Fuse { program })
        );
        let err = overlay_driver(OverlaySetting::Fuse, missing()).unwrap_err();
        assert_eq!(
            err,
            "KARAPACE_OVERLAY=fuse, but fuse-overlayfs is not installed"
        );
    }
}

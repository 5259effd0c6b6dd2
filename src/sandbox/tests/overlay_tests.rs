//! The root overlay's drivers: kernel overlayfs, fuse-overlayfs, and the kernel's with
//! fuse-overlayfs as the fallback.

use nix::errno::Errno;

use super::fixtures::{changes, rootless_spec, typical_sys};
use crate::sandbox::exec::apply_steps;
use crate::sandbox::plan::{OverlayDriver, SetupStep};
use crate::sandbox::sys::{Call, ProgramExit};
use crate::sandbox::SandboxError;

const FUSE: &str = "/usr/bin/fuse-overlayfs";

fn fuse_run() -> String {
    format!("run {FUSE} -o lowerdir=/img,upperdir=/env/upper,workdir=/env/work,nosuid,nodev /r")
}

fn steps_with(driver: OverlayDriver) -> Vec<SetupStep> {
    let mut spec = rootless_spec();
    spec.overlay = driver;
    let plan = spec.plan();
    plan.validate().unwrap();
    plan.steps
}

/// The index of the kernel overlay mount among the recorded calls (queries included).
fn kernel_mount_call(steps: &[SetupStep]) -> usize {
    let mut probe = typical_sys();
    apply_steps(&mut probe, steps).unwrap();
    probe
        .calls
        .iter()
        .position(|c| matches!(c, Call::Mount { fstype: Some(t), .. } if t == "overlay"))
        .unwrap()
}

#[test]
fn fuse_runs_fuse_overlayfs_instead_of_the_kernel_mount() {
    let steps = steps_with(OverlayDriver::Fuse {
        program: FUSE.into(),
    });
    let mut sys = typical_sys();
    apply_steps(&mut sys, &steps).unwrap();
    let got = changes(&sys);
    assert!(
        !got.iter().any(|c| c.starts_with("mount overlay")),
        "{got:#?}"
    );
    let at = got.iter().position(|c| *c == fuse_run()).unwrap();
    // The sandbox goes on in a new mount namespace, leaving the daemon out of pivot_root.
    assert_eq!(got[at + 1], "unshare CloneFlags(CLONE_NEWNS)");
    assert_eq!(got[at + 2], "mount proc /r/proc nosuid,nodev,noexec");
    // /dev/fuse is checked first, so a missing permission gets its own error.
    let open = sys
        .calls
        .iter()
        .position(|c| *c == Call::OpenReadWrite("/dev/fuse".into()))
        .unwrap();
    let run = sys
        .calls
        .iter()
        .position(|c| matches!(c, Call::RunProgram(_)))
        .unwrap();
    assert!(open < run);
}

#[test]
fn an_unusable_dev_fuse_is_named_with_the_fix() {
    let steps = steps_with(OverlayDriver::Fuse {
        program: FUSE.into(),
    });
    let mut probe = typical_sys();
    apply_steps(&mut probe, &steps).unwrap();
    let open = probe
        .calls
        .iter()
        .position(|c| matches!(c, Call::OpenReadWrite(_)))
        .unwrap();
    let mut sys = typical_sys().fail_at(open, Errno::EACCES);
    let err = apply_steps(&mut sys, &steps).unwrap_err();
    assert_eq!(err.step(), Some("mount_overlay"));
    let text = err.to_string();
    for part in [
        "/dev/fuse",
        "EACCES",
        "chmod 0666 /dev/fuse",
        "KARAPACE_OVERLAY=kernel",
    ] {
        assert!(text.contains(part), "`{part}` missing from: {text}");
    }
    assert!(!sys.calls.iter().any(|c| matches!(c, Call::RunProgram(_))));
}

#[test]
fn a_failing_fuse_overlayfs_is_reported_with_its_stderr() {
    let steps = steps_with(OverlayDriver::Fuse {
        program: FUSE.into(),
    });
    let mut sys = typical_sys();
    sys.program_exit = Some(ProgramExit {
        code: Some(1),
        stderr: "fuse: device not found".into(),
    });
    let err = apply_steps(&mut sys, &steps).unwrap_err();
    assert!(matches!(err, SandboxError::Program { .. }), "{err}");
    let text = err.to_string();
    for part in [
        "mount_overlay",
        FUSE,
        "exited with code 1",
        "fuse: device not found",
    ] {
        assert!(text.contains(part), "`{part}` missing from: {text}");
    }
    assert!(!changes(&sys).iter().any(|c| c.starts_with("mount proc")));
}

#[test]
fn the_fallback_runs_only_when_the_kernel_says_unsupported() {
    let steps = steps_with(OverlayDriver::KernelOrFuse {
        program: FUSE.into(),
    });
    let mount = kernel_mount_call(&steps);
    // The kernel mounts it: no fuse-overlayfs.
    let mut sys = typical_sys();
    apply_steps(&mut sys, &steps).unwrap();
    assert!(!changes(&sys).iter().any(|c| c.starts_with("run ")));
    // The kernel refuses it as unsupported: fuse-overlayfs takes over.
    for errno in [Errno::EPERM, Errno::EINVAL, Errno::ENODEV] {
        let mut sys = typical_sys().fail_at(mount, errno);
        if errno == Errno::EINVAL {
            // Retried once without `volatile` first.
            sys = sys.fail_at(mount + 1, errno);
        }
        apply_steps(&mut sys, &steps).unwrap_or_else(|e| panic!("{errno}: {e}"));
        let got = changes(&sys);
        assert!(got.contains(&fuse_run()), "{errno}: {got:#?}");
        assert!(got.contains(&"pivot_root . .".to_string()));
    }
    // Any other failure is a real problem with the directories: reported, no fallback.
    let mut sys = typical_sys().fail_at(mount, Errno::ENOENT);
    let err = apply_steps(&mut sys, &steps).unwrap_err();
    assert!(
        matches!(
            err,
            SandboxError::Step {
                errno: Errno::ENOENT,
                ..
            }
        ),
        "{err}"
    );
    assert!(!changes(&sys).iter().any(|c| c.starts_with("run ")));
}

#[test]
fn a_failed_fallback_says_the_kernel_refused_first() {
    let steps = steps_with(OverlayDriver::KernelOrFuse {
        program: FUSE.into(),
    });
    let mount = kernel_mount_call(&steps);
    let mut sys = typical_sys().fail_at(mount, Errno::EPERM);
    sys.program_exit = Some(ProgramExit {
        code: None,
        stderr: String::new(),
    });
    let err = apply_steps(&mut sys, &steps).unwrap_err();
    let text = err.to_string();
    for part in [
        "killed by a signal",
        "Kernel overlayfs refused the mount first (EPERM",
    ] {
        assert!(text.contains(part), "`{part}` missing from: {text}");
    }
}

#[test]
fn a_fuse_root_needs_a_pid_namespace_and_an_absolute_program() {
    let mut steps = steps_with(OverlayDriver::Fuse {
        program: FUSE.into(),
    });
    for step in &mut steps {
        if let SetupStep::UnshareOther { pid, .. } = step {
            *pid = false;
        }
    }
    let plan = crate::sandbox::SandboxPlan {
        steps,
        ..rootless_spec().plan()
    };
    match plan.validate() {
        Err(SandboxError::InvalidPlan(why)) => assert!(why.contains("with pid"), "{why}"),
        other => panic!("{other:?}"),
    }
    let mut spec = rootless_spec();
    spec.overlay = OverlayDriver::Fuse {
        program: "fuse-overlayfs".into(),
    };
    match spec.plan().validate() {
        Err(SandboxError::InvalidPlan(why)) => assert!(why.contains("not absolute"), "{why}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_driver_travels_in_the_plan() {
    let mut spec = rootless_spec();
    spec.overlay = OverlayDriver::KernelOrFuse {
        program: FUSE.into(),
    };
    let json = spec.plan().to_json().unwrap();
    assert!(
        json.contains(r#""driver":{"kernel_or_fuse":{"program":"/usr/bin/fuse-overlayfs"}}"#),
        "{json}"
    );
}

use nix::errno::Errno;
use nix::mount::MsFlags;

use super::fixtures::{changes, rootless_spec, subordinate_spec, typical_sys};
use crate::sandbox::builder::RootfsSpec;
use crate::sandbox::exec::{apply_steps, apply_steps_in, apply_steps_with};
use crate::sandbox::plan::{IdRange, SetupStep, Stage};
use crate::sandbox::sys::{Call, FileKind, IdMapSync, RecordingSys};
use crate::sandbox::SandboxError;

/// How a bind is restricted after it is made: mount_setattr(2) (Linux 5.12+), or the remounts
/// of older kernels.
#[derive(Clone, Copy, PartialEq)]
enum Restrict {
    Setattr,
    Remount,
}

/// The call(s) restricting the bind at `target` to `flags` (`rec`: the bind is recursive).
fn restricted(how: Restrict, target: &str, flags: &str, rec: bool) -> Vec<String> {
    match how {
        Restrict::Setattr if rec => vec![format!("setattr {target} {flags} recursive")],
        Restrict::Setattr => vec![format!("setattr {target} {flags}")],
        Restrict::Remount => vec![format!("remount {target} {flags}")],
    }
}

/// Every device node: an empty file, the bind, and a restriction that adds only `nosuid`.
fn dev_node(how: Restrict, node: &str) -> Vec<String> {
    let mut calls = vec![
        format!("create /r/dev/{node} 444"),
        format!("bind /dev/{node} /r/dev/{node} "),
    ];
    calls.extend(restricted(how, &format!("/r/dev/{node}"), "nosuid", false));
    calls
}

/// The calls of the typical rootless plan, restricting binds `how`.
fn typical_calls(how: Restrict) -> Vec<String> {
    let mut expected: Vec<String> = [
        "unshare CloneFlags(CLONE_NEWUSER)",
        "write /proc/self/uid_map 0 1000 1",
        "write /proc/self/setgroups deny",
        "write /proc/self/gid_map 0 1000 1",
        "unshare CloneFlags(CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWPID)",
        "unshare CloneFlags(CLONE_NEWNS)",
        "propagation / rec,slave",
        "mount overlay /r nosuid,nodev lowerdir=/img,upperdir=/env/upper,workdir=/env/work,userxattr,volatile",
        "mount proc /r/proc nosuid,nodev,noexec",
    ]
    .map(String::from)
    .to_vec();
    // The host-wide knobs of the fresh /proc, read-only (not recursive: it has no submounts).
    for sub in ["sys", "sysrq-trigger", "irq", "bus"] {
        let target = format!("/r/proc/{sub}");
        expected.push(format!("bind {target} {target} "));
        expected.extend(restricted(how, &target, "ro,nosuid,nodev", false));
    }
    expected.push("mount tmpfs /r/dev nosuid,nodev mode=0755".to_string());
    for node in ["null", "zero", "full", "random", "urandom", "tty"] {
        expected.extend(dev_node(how, node));
    }
    expected.extend(
        [
            "symlink /r/dev/stdin -> /proc/self/fd/0",
            "symlink /r/dev/stdout -> /proc/self/fd/1",
            "symlink /r/dev/stderr -> /proc/self/fd/2",
            "symlink /r/dev/fd -> /proc/self/fd",
            "symlink /r/dev/core -> /proc/kcore",
            "mkdir /r/dev/shm 755",
            "mount tmpfs /r/dev/shm nosuid,nodev mode=1777",
            "mkdir /r/dev/pts 755",
            "mount devpts /r/dev/pts nosuid,noexec newinstance,ptmxmode=0666,mode=620",
            "symlink /r/dev/ptmx -> pts/ptmx",
            // /sys: a recursive bind, then read-only for it and every submount.
            "bind /sys /r/sys rec",
        ]
        .map(String::from),
    );
    match how {
        Restrict::Setattr => expected.extend(restricted(how, "/r/sys", "ro,nosuid,nodev", true)),
        Restrict::Remount => expected
            .extend(["/r/sys", "/r/sys/fs/cgroup"].map(|t| format!("remount {t} ro,nosuid,nodev"))),
    }
    expected.extend(
        [
            "mount tmpfs /r/tmp nosuid,nodev mode=1777",
            // A missing directory mount point is created in the new root.
            "mkdir /r/src 755",
            "bind /home/u/src /r/src rec",
        ]
        .map(String::from),
    );
    expected.extend(restricted(how, "/r/src", "nosuid,nodev", true));
    // A file source gets a file mount point.
    expected.extend(
        [
            "create /r/etc/resolv.conf 644",
            "bind /etc/resolv.conf /r/etc/resolv.conf rec",
        ]
        .map(String::from),
    );
    expected.extend(restricted(
        how,
        "/r/etc/resolv.conf",
        "ro,nosuid,nodev",
        true,
    ));
    expected.extend(
        [
            "sethostname box",
            "chdir /r",
            "pivot_root . .",
            "umount2 . MntFlags(MNT_DETACH)",
            "chdir /",
            "no_new_privs",
            "chdir /src",
        ]
        .map(String::from),
    );
    expected
}

#[test]
fn typical_rootless_plan_makes_exactly_these_calls_in_order() {
    let mut sys = typical_sys();
    apply_steps(&mut sys, &rootless_spec().plan().steps).unwrap();
    assert_eq!(changes(&sys), typical_calls(Restrict::Setattr));
    // One call restricts /sys and all its submounts: the host's mountinfo is not read.
    assert!(!sys.calls.contains(&Call::Mountinfo));
}

#[test]
fn without_mount_setattr_binds_are_restricted_by_remounting_each_mount() {
    let mut sys = typical_sys();
    sys.no_mount_setattr = true;
    apply_steps(&mut sys, &rootless_spec().plan().steps).unwrap();
    // The first bind learns that the kernel has no mount_setattr (ENOSYS); no other tries it.
    let mut expected = typical_calls(Restrict::Remount);
    let first = expected
        .iter()
        .position(|c| c == "remount /r/proc/sys ro,nosuid,nodev")
        .unwrap();
    expected.insert(first, "setattr /r/proc/sys ro,nosuid,nodev".into());
    assert_eq!(changes(&sys), expected);
    assert!(sys.calls.contains(&Call::Mountinfo), "submounts of /sys");
}

#[test]
fn a_failing_mount_setattr_names_the_step_the_call_and_the_path() {
    let steps = vec![SetupStep::BindMount {
        source: "/data".into(),
        target: "/r/data".into(),
        read_only: true,
        recursive: true,
    }];
    let mut probe = RecordingSys::new();
    apply_steps_in(&mut probe, &steps, Some("/r")).unwrap();
    let at = probe
        .calls
        .iter()
        .position(|c| {
            matches!(
                c,
                Call::MountSetattr {
                    recursive: true,
                    ..
                }
            )
        })
        .unwrap();
    let mut sys = RecordingSys::new().fail_at(at, Errno::EPERM);
    let err = apply_steps_in(&mut sys, &steps, Some("/r")).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(&err, SandboxError::Step { step: "bind_mount", errno: Errno::EPERM, path, .. }
            if path == "/r/data"),
        "{text}"
    );
    assert!(
        text.contains("mount_setattr") && text.contains("AT_RECURSIVE"),
        "{text}"
    );
}

#[test]
fn read_only_mounts_are_verified_with_statvfs() {
    for no_setattr in [false, true] {
        let mut sys = typical_sys();
        sys.no_mount_setattr = no_setattr;
        apply_steps(&mut sys, &rootless_spec().plan().steps).unwrap();
        let pos = |c: &Call| sys.calls.iter().position(|x| x == c).unwrap();
        let restrict = sys
            .calls
            .iter()
            .position(|c| match c {
                Call::Mount { target, flags, .. } => {
                    target == "/r/etc/resolv.conf" && flags.contains(MsFlags::MS_REMOUNT)
                }
                Call::MountSetattr { target, .. } => target == "/r/etc/resolv.conf",
                _ => false,
            })
            .unwrap();
        let check = Call::MountFlags("/r/etc/resolv.conf".into());
        assert!(
            sys.calls[restrict + 1..].contains(&check),
            "no statvfs after the restriction"
        );
        if no_setattr {
            assert!(
                pos(&check) < restrict,
                "flags were not read before the remount"
            );
        } else {
            assert_eq!(
                pos(&check),
                restrict + 1,
                "mount_setattr needs no flags first"
            );
        }
    }
}

#[test]
fn failure_at_any_call_aborts_with_that_step_and_runs_nothing_after() {
    let steps = rootless_spec().plan().steps;
    // Which step owns which calls: run the steps one by one on one fake.
    let mut owner: Vec<&'static str> = Vec::new();
    let mut sys = typical_sys();
    for step in &steps {
        apply_steps_in(&mut sys, std::slice::from_ref(step), Some("/r")).unwrap();
        owner.resize(sys.calls.len(), step.name());
    }
    assert!(owner.len() > 60, "{} calls", owner.len());
    for (i, step) in owner.iter().enumerate() {
        let mut sys = typical_sys().fail_at(i, Errno::EPERM);
        let err = apply_steps(&mut sys, &steps).unwrap_err();
        assert_eq!(err.step(), Some(*step), "call {i}: {err}");
        assert_eq!(
            sys.calls.len(),
            i + 1,
            "calls after the failure at {i}: {err}"
        );
        let text = err.to_string();
        assert!(text.contains(step) && text.contains("EPERM"), "{text}");
    }
}

#[test]
fn the_error_names_step_operation_path_errno_and_a_fix() {
    let steps = rootless_spec().plan().steps;
    let mut probe = typical_sys();
    apply_steps(&mut probe, &steps).unwrap();
    let overlay = probe
        .calls
        .iter()
        .position(|c| matches!(c, Call::Mount { fstype: Some(t), .. } if t == "overlay"))
        .unwrap();
    // EINVAL is retried once without `volatile` (kernels before 5.10): fail both.
    let mut sys = typical_sys()
        .fail_at(overlay, Errno::EINVAL)
        .fail_at(overlay + 1, Errno::EINVAL);
    let err = apply_steps(&mut sys, &steps).unwrap_err();
    let text = err.to_string();
    for part in [
        "mount_overlay",
        "/r",
        "EINVAL",
        "userxattr",
        "lowerdir=/img",
    ] {
        assert!(text.contains(part), "`{part}` missing from: {text}");
    }
    assert!(matches!(
        err,
        SandboxError::Step {
            errno: Errno::EINVAL,
            ..
        }
    ));
}

#[test]
fn a_read_only_bind_that_stays_writable_is_an_error() {
    let steps = vec![SetupStep::BindMount {
        source: "/data".into(),
        target: "/r/data".into(),
        read_only: true,
        recursive: false,
    }];
    let mut sys = RecordingSys::new();
    sys.ignore_read_only = true;
    let err = apply_steps_in(&mut sys, &steps, Some("/r")).unwrap_err();
    assert!(
        matches!(&err, SandboxError::NotReadOnly { step: "bind_mount", path } if path == "/r/data"),
        "{err}"
    );
    // The typical plan stops at its first read-only mount, /proc/sys.
    let mut sys = typical_sys();
    sys.ignore_read_only = true;
    let err = apply_steps(&mut sys, &rootless_spec().plan().steps).unwrap_err();
    assert_eq!(err.step(), Some("mount_proc"));
    assert!(!sys
        .calls
        .iter()
        .any(|c| matches!(c, Call::PivotRoot { .. })));
}

#[test]
fn a_subordinate_range_is_left_to_the_spawner_and_setgroups_to_newgidmap() {
    let plan = subordinate_spec().plan();
    let stage1 = plan.stage_steps(Stage::Namespaces);
    let mut sys = typical_sys();
    apply_steps_with(&mut sys, &stage1, Some(IdMapSync::new(9))).unwrap();
    assert_eq!(
        changes(&sys),
        [
            "unshare CloneFlags(CLONE_NEWUSER)",
            "await_id_maps fd 9",
            "unshare CloneFlags(CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWPID)",
        ]
    );
    // The rest of the plan is the single-id plan's, call for call.
    let rest = |spec: RootfsSpec| {
        let mut sys = typical_sys();
        apply_steps(&mut sys, &spec.plan().stage_steps(Stage::Root)).unwrap();
        changes(&sys)
    };
    assert_eq!(rest(subordinate_spec()), rest(rootless_spec()));
}

#[test]
fn a_namespace_made_ahead_is_entered_instead_of_unsharing_one() {
    let stage1 = subordinate_spec().plan().stage_steps(Stage::Namespaces);
    let mut sys = typical_sys();
    let sync = IdMapSync {
        fd: 9,
        premapped: Some(7),
        announce: false,
    };
    apply_steps_with(&mut sys, &stage1, Some(sync)).unwrap();
    assert_eq!(
        changes(&sys),
        [
            "setns user fd 7",
            "await_id_maps fd 9",
            "unshare CloneFlags(CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWPID)",
        ]
    );
    assert!(sys.calls.contains(&Call::AwaitIdMaps(sync)));
    // Entering it fails like unsharing would: the step is named, nothing runs after it.
    let mut sys = typical_sys().fail_at(0, Errno::EPERM);
    let err = apply_steps_with(&mut sys, &stage1, Some(sync)).unwrap_err();
    assert_eq!(err.step(), Some("unshare_user_ns"));
    assert!(err.to_string().contains("made ahead"), "{err}");
    assert_eq!(sys.calls.len(), 1);
}

#[test]
fn with_a_namespace_made_ahead_pid1_awaits_the_maps_right_before_the_overlay() {
    let plan = subordinate_spec().plan();
    let (stage1, pid1) = plan.steps_awaiting_maps_in_pid1();
    let names = |steps: &[SetupStep]| steps.iter().map(SetupStep::name).collect::<Vec<_>>();
    assert_eq!(names(&stage1), ["unshare_user_ns", "unshare_other"]);
    assert_eq!(
        names(&pid1)[..4],
        [
            "unshare_mount_ns",
            "make_root_private",
            "await_id_maps",
            "mount_overlay"
        ]
    );
    // Every other step of the plan is where it was.
    let without = |steps: Vec<SetupStep>| {
        steps
            .into_iter()
            .filter(|s| !matches!(s, SetupStep::AwaitIdMaps { .. }))
            .collect::<Vec<_>>()
    };
    assert_eq!(stage1, without(plan.stage_steps(Stage::Namespaces)));
    assert_eq!(without(pid1.clone()), plan.stage_steps(Stage::Root));

    // PID 1 only waits: it neither announces the namespace nor unshares anything for it.
    let mut sys = typical_sys();
    apply_steps_with(&mut sys, &pid1, Some(IdMapSync::awaiting(9))).unwrap();
    let calls = changes(&sys);
    let wait = calls
        .iter()
        .position(|c| c == "await_id_maps fd 9")
        .expect("awaited");
    assert_eq!(wait, 2, "{calls:?}");
    assert!(calls[wait + 1].contains("overlay"), "{calls:?}");
    assert!(sys
        .calls
        .contains(&Call::AwaitIdMaps(IdMapSync::awaiting(9))));
    assert!(!IdMapSync::awaiting(9).announce && IdMapSync::new(9).announce);

    // A plan that maps nothing from outside is split as before.
    let single = rootless_spec().plan();
    let (stage1, pid1) = single.steps_awaiting_maps_in_pid1();
    assert_eq!(stage1, single.stage_steps(Stage::Namespaces));
    assert_eq!(pid1, single.stage_steps(Stage::Root));
}

#[test]
fn a_subordinate_range_without_the_spawner_channel_fails_instead_of_waiting() {
    let mut sys = typical_sys();
    let err = apply_steps(&mut sys, &subordinate_spec().plan().steps).unwrap_err();
    assert!(
        matches!(
            err,
            SandboxError::Unsupported {
                step: "await_id_maps",
                ..
            }
        ),
        "{err}"
    );
    let text = err.to_string();
    for part in ["newuidmap", "--id-maps", "sandbox::spawn", "helper_args"] {
        assert!(text.contains(part), "`{part}` missing from: {text}");
    }
    assert_eq!(changes(&sys), ["unshare CloneFlags(CLONE_NEWUSER)"]);
}

#[test]
fn a_spawner_that_gives_up_on_the_maps_stops_the_helper() {
    let mut sys = typical_sys().fail_at(1, Errno::EPIPE);
    let steps = subordinate_spec().plan().steps;
    let err = apply_steps_with(&mut sys, &steps, Some(IdMapSync::new(9))).unwrap_err();
    assert_eq!(err.step(), Some("await_id_maps"));
    let text = err.to_string();
    assert!(
        text.contains("EPIPE") && text.contains("fd 9") && text.contains("newuidmap/newgidmap"),
        "{text}"
    );
    assert_eq!(sys.calls.len(), 2, "nothing runs after the failed step");
}

#[test]
fn the_executor_refuses_to_write_a_range_itself() {
    let range = IdRange {
        inside: 0,
        outside: 100_000,
        count: 65536,
    };
    let steps = [
        SetupStep::UnshareUserNs,
        SetupStep::WriteIdMaps {
            uid_map: vec![range],
            gid_map: vec![range],
        },
    ];
    let mut sys = RecordingSys::new();
    let err = apply_steps(&mut sys, &steps).unwrap_err();
    assert!(err.to_string().contains("await_id_maps"), "{err}");
    assert_eq!(changes(&sys), ["unshare CloneFlags(CLONE_NEWUSER)"]);
}

#[test]
fn a_symlink_in_a_mount_point_path_is_refused() {
    let mut sys = typical_sys().with_kind("/r/etc", Some(FileKind::Symlink));
    let err = apply_steps(&mut sys, &rootless_spec().plan().steps).unwrap_err();
    assert!(
        matches!(&err, SandboxError::SymlinkMountPoint { step: "bind_mount", path } if path == "/r/etc"),
        "{err}"
    );
    assert!(!sys
        .calls
        .iter()
        .any(|c| matches!(c, Call::Mount { target, .. } if target.starts_with("/r/etc"))));
}

#[test]
fn a_missing_bind_source_names_the_source() {
    let mut sys = typical_sys().with_kind("/home/u/src", None);
    let err = apply_steps(&mut sys, &rootless_spec().plan().steps).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("bind_mount") && text.contains("/home/u/src"),
        "{text}"
    );
    assert!(matches!(
        err,
        SandboxError::Step {
            errno: Errno::ENOENT,
            ..
        }
    ));
}

#[test]
fn a_file_source_over_a_directory_mount_point_is_refused() {
    let steps = vec![SetupStep::BindMount {
        source: "/etc/hosts".into(),
        target: "/r/etc/hosts".into(),
        read_only: true,
        recursive: false,
    }];
    let mut sys = RecordingSys::new().with_kind("/etc/hosts", Some(FileKind::File));
    let err = apply_steps_in(&mut sys, &steps, Some("/r")).unwrap_err();
    assert!(
        matches!(
            err,
            SandboxError::Step {
                errno: Errno::EISDIR,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn targets_outside_the_new_root_must_exist_and_are_never_created() {
    let steps = vec![SetupStep::MountTmpfs {
        target: "/elsewhere/tmp".into(),
        mode: 0o755,
    }];
    let mut sys = RecordingSys::new().with_kind("/elsewhere/tmp", None);
    let err = apply_steps_in(&mut sys, &steps, Some("/r")).unwrap_err();
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
    assert!(sys.changes().is_empty());
}

#[test]
fn allowed_devices_keep_dev_and_get_a_file_mount_point() {
    let mut spec = rootless_spec();
    spec.devices = vec!["/dev/fuse".into()];
    let mut sys = typical_sys()
        .with_kind("/dev/fuse", Some(FileKind::Other))
        .with_kind("/r/dev/fuse", None);
    apply_steps(&mut sys, &spec.plan().steps).unwrap();
    let got = changes(&sys);
    let at = got
        .iter()
        .position(|c| c == "create /r/dev/fuse 644")
        .unwrap();
    assert_eq!(got[at + 1], "bind /dev/fuse /r/dev/fuse ");
    assert_eq!(got[at + 2], "setattr /r/dev/fuse nosuid");
}

#[test]
fn mountinfo_escapes_are_decoded() {
    use crate::sandbox::exec::unescape_mountinfo;
    assert_eq!(unescape_mountinfo(r"/a\040b\134c"), r"/a b\c");
    assert_eq!(unescape_mountinfo(r"/plain\09"), r"/plain\09");
}

#[test]
fn a_kernel_without_volatile_gets_the_plain_overlay() {
    let steps = rootless_spec().plan().steps;
    let mut probe = typical_sys();
    apply_steps(&mut probe, &steps).unwrap();
    let overlay = probe
        .calls
        .iter()
        .position(|c| matches!(c, Call::Mount { fstype: Some(t), .. } if t == "overlay"))
        .unwrap();
    let mut sys = typical_sys().fail_at(overlay, Errno::EINVAL);
    apply_steps(&mut sys, &steps).unwrap();
    let mounts: Vec<String> = changes(&sys)
        .into_iter()
        .filter(|c| c.starts_with("mount overlay"))
        .collect();
    assert_eq!(
        mounts,
        [
            "mount overlay /r nosuid,nodev lowerdir=/img,upperdir=/env/upper,workdir=/env/work,userxattr,volatile",
            "mount overlay /r nosuid,nodev lowerdir=/img,upperdir=/env/upper,workdir=/env/work,userxattr",
        ]
    );
}

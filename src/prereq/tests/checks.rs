//! Each check's pass, warn and fail, and how they decide a backend's availability.

use std::path::PathBuf;

use super::{check, FakeHost, STORE};
use crate::prereq::host::{FsKind, Space};
use crate::prereq::oci::OciProbe;
use crate::prereq::{Group, Status};
use crate::sandbox::check::FuseProblem;
use crate::types::BackendKind;

const CGROUP: &str =
    "/sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service/app.slice/term.scope";

fn status(host: &FakeHost, id: &str) -> Status {
    check(&host.run(), id).status
}

#[test]
fn a_host_with_everything_passes_and_every_backend_but_oci_can_run() {
    let host = FakeHost::new("debian");
    let report = host.run();
    for c in &report.checks {
        let expected = if c.group == Group::Oci && c.id == "oci.backend" {
            Status::Fail
        } else {
            Status::Pass
        };
        assert_eq!(c.status, expected, "{c:#?}");
    }
    assert!(report.default_can_run());
    let backends = report.backends();
    let available: Vec<(BackendKind, bool)> =
        backends.iter().map(|b| (b.backend, b.available)).collect();
    assert_eq!(
        available,
        [
            (BackendKind::Namespace, true),
            (BackendKind::Oci, false),
            (BackendKind::Mock, true)
        ]
    );
    assert_eq!(
        backends[1].detail, "the oci backend is not implemented yet",
        "the reason of the blocking check"
    );
    assert_eq!(
        backends[1].fix.as_deref(),
        Some("use backend = \"namespace\"")
    );
    // Every real probe ran, once each.
    assert_eq!(
        *host.probes.borrow(),
        ["userns", "overlay", "subordinate", "oci"]
    );
}

#[test]
fn as_root_namespaces_and_ids_need_nothing() {
    let host = FakeHost::new("ubuntu").root_user();
    let report = host.run();
    let userns = check(&report, "namespace.userns");
    assert_eq!(
        userns.status,
        Status::Pass,
        "AppArmor's restriction does not apply to root"
    );
    assert!(userns.meaning.contains("running as root"));
    assert_eq!(check(&report, "namespace.idmap").status, Status::Pass);
    assert!(!host.probes.borrow().contains(&"userns"));
    assert!(!host.probes.borrow().contains(&"subordinate"));
}

#[test]
fn a_failing_user_namespace_probe_fails_the_namespace_backend() {
    let mut host = FakeHost::new("debian");
    host.userns = Err("unshare: Operation not permitted".into());
    let report = host.run();
    let userns = check(&report, "namespace.userns");
    assert_eq!(userns.status, Status::Fail);
    assert!(userns.meaning.contains("unshare: Operation not permitted"));
    assert!(!report.default_can_run());
    let namespace = report.availability(BackendKind::Namespace);
    assert!(!namespace.available);
    assert!(namespace
        .detail
        .starts_with("creating a user namespace failed"));
    assert!(report.availability(BackendKind::Mock).available);
}

#[test]
fn the_overlay_passes_warns_when_fuse_stands_in_and_fails_without_either() {
    let mut host = FakeHost::new("debian");
    assert_eq!(status(&host, "namespace.overlay"), Status::Pass);

    host.kernel_overlay = Err("mount overlay: EPERM".into());
    let report = host.run();
    assert_eq!(check(&report, "namespace.overlay").status, Status::Warn);
    assert!(check(&report, "namespace.overlay")
        .meaning
        .contains("fuse-overlayfs is used instead"));
    assert_eq!(check(&report, "namespace.fuse").status, Status::Pass);
    assert!(report.default_can_run(), "a warning does not block");

    host.fuse = Err(FuseProblem::NotInstalled);
    let report = host.run();
    assert_eq!(check(&report, "namespace.overlay").status, Status::Fail);
    assert_eq!(check(&report, "namespace.fuse").status, Status::Fail);
    assert!(!report.default_can_run());

    // KARAPACE_OVERLAY=kernel rules the fallback out; a bad value is a failure by itself.
    let mut host = FakeHost::new("debian");
    host.kernel_overlay = Err("mount overlay: EPERM".into());
    host.env.insert("KARAPACE_OVERLAY".into(), "kernel".into());
    let overlay = check(&host.run(), "namespace.overlay").clone();
    assert_eq!(overlay.status, Status::Fail);
    assert!(overlay
        .fix
        .unwrap_or_default()
        .starts_with("unset KARAPACE_OVERLAY"));
    host.env.insert("KARAPACE_OVERLAY".into(), "Fuse".into());
    let overlay = check(&host.run(), "namespace.overlay").clone();
    assert_eq!(overlay.status, Status::Fail);
    assert!(
        overlay.meaning.contains("KARAPACE_OVERLAY=Fuse"),
        "{}",
        overlay.meaning
    );
}

#[test]
fn fuse_overlayfs_matters_only_when_it_is_used() {
    let mut host = FakeHost::new("debian");
    host.fuse = Err(FuseProblem::NotInstalled);
    let fuse = check(&host.run(), "namespace.fuse").clone();
    assert_eq!(fuse.status, Status::Pass);
    assert!(fuse.meaning.contains("not needed"), "{}", fuse.meaning);
    assert!(!fuse.required);

    // Chosen explicitly, a device that cannot be opened fails it, with the device fix.
    host.env.insert("KARAPACE_OVERLAY".into(), "fuse".into());
    host.fuse = Err(FuseProblem::Device {
        program: "/usr/bin/fuse-overlayfs".into(),
        error: "Permission denied (os error 13)".into(),
    });
    let report = host.run();
    let fuse = check(&report, "namespace.fuse");
    assert_eq!(fuse.status, Status::Fail);
    assert!(fuse.required, "the chosen driver decides");
    assert!(!report.default_can_run());
    assert!(
        fuse.meaning.contains("/dev/fuse cannot be opened"),
        "{}",
        fuse.meaning
    );
    assert_eq!(
        fuse.fix.as_deref(),
        Some("sudo modprobe fuse && sudo chmod 0666 /dev/fuse")
    );
    let overlay = check(&report, "namespace.overlay");
    assert_eq!(overlay.status, Status::Pass);
    assert!(overlay
        .meaning
        .contains("KARAPACE_OVERLAY=fuse chooses fuse-overlayfs"));
}

#[test]
fn the_id_mapping_passes_with_a_range_warns_without_and_fails_when_writing_it_fails() {
    let host = FakeHost::new("debian");
    let idmap = check(&host.run(), "namespace.idmap").clone();
    assert_eq!(idmap.status, Status::Pass);
    assert_eq!(
        idmap.meaning,
        "full range (uids 100000-165535, gids 100000-165535, written by newuidmap/newgidmap)"
    );

    let mut host = FakeHost::new("debian");
    host.subordinate = Err("newuidmap: write to uid_map failed: Operation not permitted".into());
    let report = host.run();
    assert_eq!(check(&report, "namespace.idmap").status, Status::Fail);
    assert!(!report.default_can_run(), "sandboxes would fail to start");

    // Fedora's fixture grants this user no range: a warning naming the file, and usermod.
    let host = FakeHost::new("fedora");
    let idmap = check(&host.run(), "namespace.idmap").clone();
    assert_eq!(idmap.status, Status::Warn);
    assert!(
        idmap
            .meaning
            .contains("/etc/subuid grants this user no range"),
        "{}",
        idmap.meaning
    );
    assert_eq!(
        idmap.fix.as_deref(),
        Some("sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 user")
    );
    assert!(!host.probes.borrow().contains(&"subordinate"));

    let mut host = FakeHost::new("debian");
    host.no_new_privs = true;
    let idmap = check(&host.run(), "namespace.idmap").clone();
    assert_eq!(idmap.status, Status::Warn);
    assert!(idmap.fix.unwrap_or_default().contains("no_new_privs"));
}

#[test]
fn cgroups_pass_when_delegated_and_warn_otherwise() {
    let manager = "/sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service";
    let host = FakeHost::new("debian");
    let cgroup = check(&host.run(), "namespace.cgroup").clone();
    assert_eq!(cgroup.status, Status::Pass);
    assert!(
        cgroup
            .meaning
            .contains(&format!("a cgroup under {manager}, writable by user")),
        "{}",
        cgroup.meaning
    );

    let mut host = FakeHost::new("debian");
    host.readonly
        .insert(PathBuf::from(manager).join("cgroup.procs"));
    let cgroup = check(&host.run(), "namespace.cgroup").clone();
    assert_eq!(cgroup.status, Status::Warn);
    assert!(
        cgroup.meaning.contains("is not delegated to this user"),
        "{}",
        cgroup.meaning
    );
    assert!(cgroup.meaning.contains("memory_limit_mb"));
    let fix = cgroup.fix.unwrap_or_default();
    assert!(
        fix.contains("Delegate=cpu cpuset io memory pids")
            && fix.contains("systemd-run --user --scope"),
        "{fix}"
    );

    // A login over ssh sits in session-N.scope, outside the user manager.
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("proc/self")).expect("mkdir");
    std::fs::write(
        dir.path().join("proc/self/cgroup"),
        "0::/user.slice/user-1000.slice/session-4.scope\n",
    )
    .expect("write");
    let cgroup = check(
        &FakeHost::at_root(dir.path().into()).run(),
        "namespace.cgroup",
    )
    .clone();
    assert_eq!(cgroup.status, Status::Warn);
    assert!(
        cgroup
            .meaning
            .contains("outside the systemd user manager's cgroup (user@1000.service)"),
        "{}",
        cgroup.meaning
    );

    // Fedora's fixture delegates memory and pids only.
    let cgroup = check(&FakeHost::new("fedora").run(), "namespace.cgroup").clone();
    assert_eq!(cgroup.status, Status::Warn);
    assert!(
        cgroup.meaning.contains("lacks the cpu controller"),
        "{}",
        cgroup.meaning
    );

    let mut host = FakeHost::new("debian");
    host.fs_kinds
        .insert("/sys/fs/cgroup".into(), FsKind::Cgroup1);
    let cgroup = check(&host.run(), "namespace.cgroup").clone();
    assert_eq!(cgroup.status, Status::Warn);
    assert!(cgroup.meaning.starts_with("cgroup v1 only"));
    assert!(
        host.run().default_can_run(),
        "limits are not a prerequisite"
    );
}

#[test]
fn as_root_cgroups_go_under_the_hierarchy_root() {
    let host = FakeHost::new("debian").root_user();
    let placement = crate::prereq::cgroup::placement(&host, 0, true);
    match &placement {
        crate::prereq::cgroup::Placement::Usable { parent, .. } => {
            assert_eq!(parent, &PathBuf::from("/sys/fs/cgroup"))
        }
        other => panic!("{other:?}"),
    }
    // The fixture has no root cgroup.controllers: nothing to enable, so a warning.
    assert!(!placement.has("memory"));
    let cgroup = check(&host.run(), "namespace.cgroup").clone();
    assert_eq!(cgroup.status, Status::Warn, "{}", cgroup.meaning);
}

#[test]
fn the_store_is_checked_without_opening_it() {
    let host = FakeHost::new("debian");
    let report = host.run();
    assert_eq!(
        check(&report, "store.writable").meaning,
        format!("{STORE} is writable by user")
    );
    assert_eq!(
        check(&report, "store.format").meaning,
        "format 1, the one this build reads and writes"
    );
    assert_eq!(
        check(&report, "store.space").meaning,
        format!("50.0 GiB free of 100.0 GiB on the file system of {STORE}")
    );

    let mut host = FakeHost::new("debian");
    host.readonly.insert(STORE.into());
    let report = host.run();
    assert_eq!(check(&report, "store.writable").status, Status::Fail);
    assert!(
        BackendKind::ALL
            .iter()
            .all(|b| !report.availability(*b).available),
        "no backend runs without a writable store"
    );
}

#[test]
fn a_missing_store_is_created_where_its_parent_is_writable() {
    // Fedora's fixture has no store: it would be created in the home directory's nearest
    // existing ancestor (the fixture root here).
    let mut host = FakeHost::new("fedora");
    let report = host.run();
    let writable = check(&report, "store.writable");
    assert_eq!(writable.status, Status::Pass);
    assert!(writable
        .meaning
        .contains("does not exist yet; it is created in / at first use"));
    assert_eq!(check(&report, "store.format").status, Status::Pass);
    host.readonly.insert("/".into());
    let writable = check(&host.run(), "store.writable").clone();
    assert_eq!(writable.status, Status::Fail);
    assert!(writable
        .fix
        .unwrap_or_default()
        .starts_with(&format!("sudo mkdir -p {STORE} && sudo chown user {STORE}")));
}

/// A host whose store directory holds `files` (name, content).
fn store_with(files: &[(&str, &str)]) -> (tempfile::TempDir, FakeHost) {
    let root = tempfile::tempdir().expect("tempdir");
    let store = root.path().join(STORE.trim_start_matches('/'));
    std::fs::create_dir_all(&store).expect("mkdir");
    for (name, text) in files {
        std::fs::write(store.join(name), text).expect("write");
    }
    let host = FakeHost::at_root(root.path().to_path_buf());
    (root, host)
}

#[test]
fn the_store_format_passes_current_fails_newer_corrupt_or_foreign() {
    let (_root, host) = store_with(&[]);
    let format = check(&host.run(), "store.format").clone();
    assert_eq!(
        (format.status, format.meaning.as_str()),
        (
            Status::Pass,
            "empty: it becomes a store of format 1 at first use"
        )
    );

    let (_root, host) = store_with(&[("version", "karapace-tui store format 7\n")]);
    let format = check(&host.run(), "store.format").clone();
    assert_eq!(format.status, Status::Fail);
    assert!(
        format
            .meaning
            .contains("format 7, written by a newer karapace-tui"),
        "{}",
        format.meaning
    );
    assert!(format
        .fix
        .unwrap_or_default()
        .starts_with("upgrade karapace-tui"));

    let (_root, host) = store_with(&[("version", "hello\n")]);
    let format = check(&host.run(), "store.format").clone();
    assert_eq!(format.status, Status::Fail);
    assert!(
        format
            .meaning
            .contains("expected `karapace-tui store format <number>`"),
        "{}",
        format.meaning
    );

    let (_root, host) = store_with(&[("notes.txt", "mine")]);
    let format = check(&host.run(), "store.format").clone();
    assert_eq!(format.status, Status::Fail);
    assert!(format
        .meaning
        .contains("holds `notes.txt` but no `version` file"));
}

#[test]
fn free_space_warns_below_two_gib_and_fails_below_256_mib() {
    let mut host = FakeHost::new("debian");
    host.space = Space {
        available: 1 << 30,
        total: 10 << 30,
    };
    assert_eq!(status(&host, "store.space"), Status::Warn);
    assert!(host.run().default_can_run());
    host.space.available = 100 << 20;
    let report = host.run();
    let space = check(&report, "store.space");
    assert_eq!(space.status, Status::Fail);
    assert!(
        space.meaning.starts_with("100.0 MiB free of 10.0 GiB"),
        "{}",
        space.meaning
    );
    assert!(!report.default_can_run());
}

#[test]
fn oci_runtimes_are_tried_each_and_one_that_works_is_enough() {
    let mut host = FakeHost::new("debian").root_user().hybrid();
    host.programs.insert("crun".into(), "/usr/bin/crun".into());
    host.oci.insert(
        "crun".into(),
        OciProbe {
            version: Ok("1.8.1".into()),
            start: Err(
                "`run` exited with exit status: 1: cgroups in hybrid mode not supported, \
                        drop all controllers from cgroupv2"
                    .into(),
            ),
        },
    );
    let report = host.run();
    let ids: Vec<&str> = report.group(Group::Oci).map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["oci.backend", "oci.runtime", "oci.runc", "oci.crun"]);
    let runtime = check(&report, "oci.runtime");
    assert_eq!(
        (runtime.status, runtime.meaning.as_str()),
        (Status::Pass, "runc starts containers here")
    );
    assert_eq!(
        check(&report, "oci.runc").meaning,
        "runc 1.1.12 (/usr/bin/runc) starts a test container here"
    );
    let crun = check(&report, "oci.crun");
    assert_eq!(crun.status, Status::Fail);
    assert!(!crun.required, "another runtime works");
    assert!(crun
        .meaning
        .contains("crun 1.8.1 (/usr/bin/crun) cannot start a container here"));
    assert!(crun
        .meaning
        .contains("cgroups in hybrid mode not supported"));
    let fix = crun.fix.as_deref().unwrap_or_default();
    assert!(
        fix.starts_with(
            "runc works here and is used; or crun may need the unified cgroup v2 hierarchy"
        ),
        "{fix}"
    );

    // Without a working one, the summary fails.
    host.oci.insert(
        "runc".into(),
        OciProbe {
            version: Err("`--version` exited with exit status: 2".into()),
            start: Err("`run` exited with exit status: 1: permission denied".into()),
        },
    );
    let report = host.run();
    let runtime = check(&report, "oci.runtime");
    assert_eq!(runtime.status, Status::Fail);
    assert!(runtime
        .meaning
        .contains("none of the runtimes found (runc, crun)"));
    assert!(check(&report, "oci.runc")
        .meaning
        .starts_with("runc (no version: "));
}

#[test]
fn rootless_runtimes_without_a_delegated_cgroup_say_so() {
    let mut host = FakeHost::new("debian");
    host.readonly.insert(CGROUP.into());
    let runc = check(&host.run(), "oci.runc").clone();
    assert_eq!(runc.status, Status::Pass);
    assert!(
        runc.meaning.contains("rootless without a delegated cgroup"),
        "{}",
        runc.meaning
    );
}

#[test]
fn the_report_serialises_with_stable_fields() {
    let report = FakeHost::new("debian").run();
    let json = serde_json::to_value(&report).expect("json");
    assert_eq!(json["distro"]["id"], "debian");
    assert_eq!(json["distro"]["package_manager"], "apt");
    assert_eq!(json["default_backend"], "namespace");
    let first = &json["checks"][0];
    assert_eq!(first["group"], "store");
    assert_eq!(first["id"], "store.writable");
    assert_eq!(first["status"], "pass");
    assert_eq!(first["required"], true);
    assert!(first.get("fix").is_none(), "no fix on a pass");
}

#[test]
fn as_root_on_hybrid_cgroups_limits_go_to_each_controllers_v1_hierarchy() {
    let host = FakeHost::new("debian10-hybrid").root_user().hybrid();
    let cgroup = check(&host.run(), "namespace.cgroup").clone();
    assert_eq!(cgroup.status, Status::Pass, "{}", cgroup.meaning);
    assert!(
        cgroup.meaning.starts_with(
            "hybrid cgroups: every controller is on cgroup v1; as root, limits are enforced \
             through cgroup v1"
        ) && cgroup.meaning.contains(
            "(memory in /sys/fs/cgroup/memory, cpu in /sys/fs/cgroup/cpu,cpuacct, pids in \
             /sys/fs/cgroup/pids)"
        ),
        "{}",
        cgroup.meaning
    );

    // A v1 hierarchy root cannot write (a read-only /sys in a container) is not used.
    let mut host = FakeHost::new("debian10-hybrid").root_user().hybrid();
    host.readonly.insert("/sys/fs/cgroup/pids".into());
    let cgroup = check(&host.run(), "namespace.cgroup").clone();
    assert_eq!(cgroup.status, Status::Warn);
    assert!(
        cgroup
            .meaning
            .contains("no writable cgroup hierarchy holds the pids controller(s)"),
        "{}",
        cgroup.meaning
    );
    assert!(cgroup
        .fix
        .unwrap_or_default()
        .contains("systemd.unified_cgroup_hierarchy=1"));
}

#[test]
fn rootless_on_hybrid_cgroups_limits_are_not_enforced_and_doctor_says_why() {
    let host = FakeHost::new("debian10-hybrid").hybrid();
    let cgroup = check(&host.run(), "namespace.cgroup").clone();
    assert_eq!(cgroup.status, Status::Warn);
    assert_eq!(
        cgroup.meaning,
        "hybrid cgroups: every controller is on cgroup v1, which is never delegated to a \
         user, so memory_limit_mb, cpu_shares and pids_limit are not enforced for user (as \
         root they are, through cgroup v1)"
    );
    assert!(cgroup
        .fix
        .unwrap_or_default()
        .contains("`sudo update-grub`"));
    let placement = crate::prereq::cgroup::placement(&host, 1000, false);
    assert!(matches!(
        placement,
        crate::prereq::cgroup::Placement::Unusable { .. }
    ));
}

#[test]
fn v1_hierarchies_come_from_mountinfo() {
    use crate::prereq::cgroup::{v1_hierarchies, v1_hierarchy, V1Hierarchy};
    let host = FakeHost::new("debian10-hybrid").root_user().hybrid();
    let found = v1_hierarchies(&host);
    let names: Vec<(&str, Vec<&str>)> = found
        .iter()
        .map(|h| {
            (
                h.mount.to_str().expect("utf-8"),
                h.controllers.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            ("/sys/fs/cgroup/systemd", vec!["xattr"]),
            ("/sys/fs/cgroup/cpu,cpuacct", vec!["cpu", "cpuacct"]),
            ("/sys/fs/cgroup/cpuset", vec!["cpuset"]),
            (
                "/sys/fs/cgroup/net_cls,net_prio",
                vec!["net_cls", "net_prio"]
            ),
            ("/sys/fs/cgroup/memory", vec!["memory"]),
            ("/sys/fs/cgroup/devices", vec!["devices"]),
            ("/sys/fs/cgroup/pids", vec!["pids"]),
        ]
    );
    assert_eq!(
        v1_hierarchy(&host, &found, "cpu"),
        Some(PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"))
    );
    // A mount point with a space is escaped in mountinfo (proc(5)).
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("proc/self")).expect("mkdir");
    std::fs::write(
        dir.path().join("proc/self/mountinfo"),
        "40 27 0:36 / /cg\\040v1/pids rw,relatime - cgroup cgroup rw,pids\n",
    )
    .expect("write");
    let host = FakeHost::at_root(dir.path().into());
    assert_eq!(
        v1_hierarchies(&host),
        [V1Hierarchy {
            mount: "/cg v1/pids".into(),
            controllers: vec!["pids".into()],
        }]
    );
    // The unified fixtures have no v1 hierarchy.
    assert!(v1_hierarchies(&FakeHost::new("debian")).is_empty());
}

#[test]
fn without_test_containers_the_runtimes_are_found_but_not_started() {
    let mut host = FakeHost::new("debian").root_user().hybrid();
    host.programs.insert("crun".into(), "/usr/bin/crun".into());
    let report = host.run_with(false);
    assert!(
        !host.probes.borrow().contains(&"oci"),
        "no runtime was run: {:?}",
        host.probes.borrow()
    );
    let ids: Vec<&str> = report.group(Group::Oci).map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["oci.backend", "oci.runtime"]);
    let runtime = check(&report, "oci.runtime");
    assert_eq!(runtime.status, Status::Warn);
    assert!(
        runtime.meaning.contains("found runc, crun; not tried yet"),
        "{}",
        runtime.meaning
    );
    // The whole run tries them.
    let host = FakeHost::new("debian").root_user().hybrid();
    host.run();
    assert!(host.probes.borrow().contains(&"oci"));
}

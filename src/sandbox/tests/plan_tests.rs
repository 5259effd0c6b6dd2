use super::fixtures::{rootless_spec, subordinate_spec};
use crate::sandbox::builder::IdMapping;
use crate::sandbox::plan::{IdRange, SandboxPlan, SetupStep, Stage};
use crate::sandbox::SandboxError;

fn invalid_reason(plan: &SandboxPlan) -> String {
    match plan.validate() {
        Err(SandboxError::InvalidPlan(why)) => why,
        other => panic!("expected an invalid plan, got {other:?}"),
    }
}

#[test]
fn plan_round_trips_through_json() {
    let plan = rootless_spec().plan();
    let json = plan.to_json().unwrap();
    assert_eq!(SandboxPlan::from_json(&json).unwrap(), plan);
    // The encoding is plain and readable: unit steps are strings, others objects.
    assert!(json.contains(r#""unshare_user_ns""#), "{json}");
    assert!(json.contains(r#"{"set_hostname":"box"}"#), "{json}");
    assert!(json.contains(r#""userxattr":true"#), "{json}");
}

#[test]
fn typical_rootless_plan_is_valid_and_in_bubblewrap_order() {
    let plan = rootless_spec().plan();
    plan.validate().unwrap();
    let names: Vec<&str> = plan.steps.iter().map(SetupStep::name).collect();
    assert_eq!(
        names,
        [
            "unshare_user_ns",
            "write_id_maps",
            "unshare_other",
            "unshare_mount_ns",
            "make_root_private",
            "mount_overlay",
            "mount_proc",
            "minimal_dev",
            "mount_sys_read_only",
            "mount_tmpfs",
            "bind_mount",
            "bind_mount",
            "set_hostname",
            "pivot_root",
            "no_new_privs",
            "chdir",
        ]
    );
    // PID 1 makes its own mount namespace: stage 1 never shares it (see `Stage`).
    let stage1 = plan.stage_steps(Stage::Namespaces);
    assert_eq!(stage1.len(), 3);
    assert_eq!(plan.stage_steps(Stage::Root)[0], SetupStep::UnshareMountNs);
    assert_eq!(plan.stage_steps(Stage::Root).len(), plan.steps.len() - 3);
}

#[test]
fn real_root_needs_no_user_namespace() {
    let mut spec = rootless_spec();
    spec.ids = IdMapping::HostRoot;
    let plan = spec.plan();
    plan.validate().unwrap();
    assert!(matches!(plan.steps[0], SetupStep::UnshareOther { .. }));
    assert_eq!(plan.steps[1], SetupStep::UnshareMountNs);
    assert!(!plan
        .steps
        .iter()
        .any(|s| matches!(s, SetupStep::UnshareUserNs | SetupStep::WriteIdMaps { .. })));
}

#[test]
fn isolated_network_adds_a_net_namespace() {
    let mut spec = rootless_spec();
    spec.isolate_net = true;
    let plan = spec.plan();
    assert!(plan.steps.contains(&SetupStep::UnshareOther {
        pid: true,
        uts: true,
        ipc: true,
        net: true
    }));
}

#[test]
fn mounting_without_a_mount_namespace_is_refused() {
    let mut plan = rootless_spec().plan();
    plan.steps.retain(|s| *s != SetupStep::UnshareMountNs);
    assert!(invalid_reason(&plan).contains("unshare_mount_ns"));
}

#[test]
fn hostname_without_a_uts_namespace_is_refused() {
    let mut plan = rootless_spec().plan();
    for step in &mut plan.steps {
        if let SetupStep::UnshareOther { uts, .. } = step {
            *uts = false;
        }
    }
    assert!(invalid_reason(&plan).contains("uts"));
}

#[test]
fn namespace_steps_after_file_system_steps_are_refused() {
    let mut plan = rootless_spec().plan();
    // unshare_other after the mount namespace and the overlay.
    let other = plan.steps.remove(2);
    assert!(matches!(other, SetupStep::UnshareOther { .. }));
    plan.steps.insert(4, other);
    assert!(invalid_reason(&plan).contains("before every file-system step"));
}

#[test]
fn id_maps_need_a_user_namespace() {
    let mut plan = rootless_spec().plan();
    plan.steps.remove(0);
    assert!(invalid_reason(&plan).contains("unshare_user_ns"));
}

#[test]
fn each_mapping_has_its_user_namespace_steps() {
    let user_steps = |ids: IdMapping| {
        let mut spec = rootless_spec();
        spec.ids = ids;
        let plan = spec.plan();
        plan.validate().unwrap();
        let steps: Vec<SetupStep> = plan
            .steps
            .into_iter()
            .take_while(|s| !matches!(s, SetupStep::UnshareOther { .. }))
            .collect();
        steps
    };
    assert_eq!(user_steps(IdMapping::HostRoot), []);
    assert_eq!(
        user_steps(IdMapping::SingleId {
            uid: 1000,
            gid: 1001
        }),
        [
            SetupStep::UnshareUserNs,
            SetupStep::WriteIdMaps {
                uid_map: vec![IdRange::single(0, 1000)],
                gid_map: vec![IdRange::single(0, 1001)],
            }
        ]
    );
    let range = |outside| IdRange {
        inside: 1,
        outside,
        count: 65536,
    };
    let subordinate = IdMapping::Subordinate {
        uid: 1000,
        gid: 1001,
        sub_uid: range(100_000),
        sub_gid: range(200_000),
    };
    assert_eq!(
        user_steps(subordinate),
        [
            SetupStep::UnshareUserNs,
            SetupStep::AwaitIdMaps {
                uid_map: vec![IdRange::single(0, 1000), range(100_000)],
                gid_map: vec![IdRange::single(0, 1001), range(200_000)],
            }
        ]
    );
}

#[test]
fn the_spawner_sees_which_maps_it_must_write() {
    assert_eq!(rootless_spec().plan().outside_id_maps(), None);
    let plan = subordinate_spec().plan();
    let (uid_map, gid_map) = plan.outside_id_maps().unwrap();
    assert_eq!(uid_map.len(), 2);
    assert_eq!(uid_map, gid_map);
    assert_eq!(
        plan.stage_steps(Stage::Namespaces)[1].name(),
        "await_id_maps"
    );
    let json = plan.to_json().unwrap();
    assert!(
        json.contains(r#"{"await_id_maps":{"uid_map":[{"inside":0,"#),
        "{json}"
    );
    assert_eq!(SandboxPlan::from_json(&json).unwrap(), plan);
}

#[test]
fn id_maps_are_checked_before_anything_runs() {
    // A range cannot be written from inside.
    let mut plan = subordinate_spec().plan();
    let (uid_map, gid_map) = match &plan.steps[1] {
        SetupStep::AwaitIdMaps { uid_map, gid_map } => (uid_map.clone(), gid_map.clone()),
        other => panic!("{other:?}"),
    };
    plan.steps[1] = SetupStep::WriteIdMaps { uid_map, gid_map };
    assert!(invalid_reason(&plan).contains("newuidmap/newgidmap"));
    // Maps need a user namespace, are written once, and are not empty.
    let mut plan = subordinate_spec().plan();
    plan.steps.remove(0);
    assert!(invalid_reason(&plan).contains("unshare_user_ns"));
    let mut plan = subordinate_spec().plan();
    let again = rootless_spec().plan().steps[1].clone();
    plan.steps.insert(2, again);
    assert!(invalid_reason(&plan).contains("only once"));
    let mut plan = subordinate_spec().plan();
    plan.steps[1] = SetupStep::AwaitIdMaps {
        uid_map: Vec::new(),
        gid_map: vec![IdRange::single(0, 1000)],
    };
    assert!(invalid_reason(&plan).contains("empty map"));
}

#[test]
fn mounts_after_pivot_root_are_refused() {
    let mut plan = rootless_spec().plan();
    plan.steps.push(SetupStep::MountProc {
        target: "/proc".into(),
    });
    assert!(invalid_reason(&plan).contains("cannot follow `pivot_root`"));
}

#[test]
fn bad_paths_programs_and_environments_are_refused() {
    let mut plan = rootless_spec().plan();
    plan.cwd = "src".into();
    assert!(invalid_reason(&plan).contains("not absolute"));

    let mut plan = rootless_spec().plan();
    plan.argv.clear();
    assert!(invalid_reason(&plan).contains("argv is empty"));

    let mut plan = rootless_spec().plan();
    plan.env.push(("A=B".into(), "c".into()));
    assert!(invalid_reason(&plan).contains("A=B"));

    let mut plan = rootless_spec().plan();
    plan.argv.push("a\0b".into());
    assert!(invalid_reason(&plan).contains("NUL"));

    let mut spec = rootless_spec();
    spec.upper = "/env/up,per".into();
    assert!(invalid_reason(&spec.plan()).contains("overlay path"));

    let mut spec = rootless_spec();
    spec.binds[0].source = "relative/src".into();
    assert!(invalid_reason(&spec.plan()).contains("not absolute"));
}

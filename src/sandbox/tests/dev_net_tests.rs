//! The caller's terminal as /dev/console, and `lo` brought up in an isolated network.

use nix::errno::Errno;

use super::fixtures::{changes, rootless_spec, typical_sys};
use crate::sandbox::exec::apply_steps;
use crate::sandbox::plan::{SetupStep, Stage};
use crate::sandbox::SandboxError;

#[test]
fn an_isolated_network_brings_lo_up_right_after_the_net_namespace() {
    let mut spec = rootless_spec();
    spec.isolate_net = true;
    let plan = spec.plan();
    plan.validate().unwrap();
    let other = plan
        .steps
        .iter()
        .position(|s| matches!(s, SetupStep::UnshareOther { net: true, .. }))
        .unwrap();
    assert_eq!(plan.steps[other + 1], SetupStep::LoopbackUp);
    // Stage 1 runs it: it holds CAP_NET_ADMIN in the namespace's owning user namespace.
    assert_eq!(SetupStep::LoopbackUp.stage(), Stage::Namespaces);
    assert!(plan
        .stage_steps(Stage::Namespaces)
        .contains(&SetupStep::LoopbackUp));

    let mut sys = typical_sys();
    apply_steps(&mut sys, &plan.steps).unwrap();
    let got = changes(&sys);
    let at = got.iter().position(|c| c == "link_up 1").unwrap();
    assert_eq!(
        got[at - 1],
        "unshare CloneFlags(CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWPID | CLONE_NEWNET)"
    );
}

#[test]
fn a_shared_network_leaves_lo_alone() {
    let plan = rootless_spec().plan();
    assert!(!plan.steps.contains(&SetupStep::LoopbackUp));
    let mut sys = typical_sys();
    apply_steps(&mut sys, &plan.steps).unwrap();
    assert!(!changes(&sys).iter().any(|c| c.starts_with("link_up")));
}

#[test]
fn loopback_up_without_a_net_namespace_is_refused() {
    let mut plan = rootless_spec().plan();
    let other = plan
        .steps
        .iter()
        .position(|s| matches!(s, SetupStep::UnshareOther { .. }))
        .unwrap();
    plan.steps.insert(other + 1, SetupStep::LoopbackUp);
    match plan.validate() {
        Err(SandboxError::InvalidPlan(why)) => assert!(why.contains("host's `lo`"), "{why}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_refused_loopback_names_the_step_and_the_capability() {
    let mut spec = rootless_spec();
    spec.isolate_net = true;
    let steps = spec.plan().steps;
    let mut probe = typical_sys();
    apply_steps(&mut probe, &steps).unwrap();
    let at = probe
        .calls
        .iter()
        .position(|c| *c == crate::sandbox::Call::SetLinkUp(1))
        .unwrap();
    let mut sys = typical_sys().fail_at(at, Errno::EPERM);
    let err = apply_steps(&mut sys, &steps).unwrap_err();
    assert_eq!(err.step(), Some("loopback_up"));
    let text = err.to_string();
    for part in ["RTM_NEWLINK", "lo", "EPERM", "CAP_NET_ADMIN"] {
        assert!(text.contains(part), "`{part}` missing from: {text}");
    }
    assert_eq!(sys.calls.len(), at + 1, "nothing runs after the failure");
}

#[test]
fn the_callers_terminal_is_bound_as_dev_console_keeping_dev() {
    let mut spec = rootless_spec();
    spec.console = Some("/dev/pts/3".into());
    let plan = spec.plan();
    plan.validate().unwrap();
    assert!(plan.steps.contains(&SetupStep::MinimalDev {
        target: "/r/dev".into(),
        console: Some("/dev/pts/3".into()),
    }));
    let mut sys = typical_sys();
    apply_steps(&mut sys, &plan.steps).unwrap();
    let got = changes(&sys);
    let at = got
        .iter()
        .position(|c| c == "create /r/dev/console 444")
        .unwrap();
    assert_eq!(
        got[at - 1],
        "setattr /r/dev/tty nosuid",
        "after the basic nodes"
    );
    // A device bind: no `nodev`, or the terminal could not be opened.
    assert_eq!(got[at + 1], "bind /dev/pts/3 /r/dev/console ");
    assert_eq!(got[at + 2], "setattr /r/dev/console nosuid");
}

#[test]
fn without_a_terminal_there_is_no_dev_console() {
    let mut sys = typical_sys();
    apply_steps(&mut sys, &rootless_spec().plan().steps).unwrap();
    assert!(!changes(&sys).iter().any(|c| c.contains("console")));
}

#[test]
fn a_relative_console_path_is_refused() {
    let mut spec = rootless_spec();
    spec.console = Some("pts/3".into());
    match spec.plan().validate() {
        Err(SandboxError::InvalidPlan(why)) => assert!(why.contains("not absolute"), "{why}"),
        other => panic!("{other:?}"),
    }
}

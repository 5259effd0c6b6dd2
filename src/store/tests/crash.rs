//! Real crash tests: this test binary re-runs itself as a child that performs one store
//! operation with `KARAPACE_CRASH_AT=N`, so it is SIGKILLed at the N-th crash point. After each
//! crash the parent recovers and checks that the environment is exactly the old one or exactly
//! the new one, that nothing transient is left and that the store verifies clean. N grows until
//! the child finishes without crashing.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;

use super::{env_id, env_label, install_env, names, stage, temp_store, transient_dirs};
use crate::store::{OpKind, Store};

const CHILD_VAR: &str = "KARAPACE_STORE_CRASH_CHILD";

/// The operations the child can perform.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Scenario {
    Build,
    Rebuild,
    Destroy,
    /// Recovery of a rebuild that crashed with the old environment moved aside.
    Recover,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Build => "build",
            Scenario::Rebuild => "rebuild",
            Scenario::Destroy => "destroy",
            Scenario::Recover => "recover",
        }
    }

    fn parse(s: &str) -> Scenario {
        [
            Scenario::Build,
            Scenario::Rebuild,
            Scenario::Destroy,
            Scenario::Recover,
        ]
        .into_iter()
        .find(|sc| sc.name() == s)
        .unwrap()
    }
}

/// The child's side: does nothing unless started by `run_child`.
#[test]
fn crash_child() {
    let Ok(spec) = std::env::var(CHILD_VAR) else {
        return;
    };
    let (scenario, root) = spec.split_once(':').unwrap();
    let store = Store::open(Path::new(root)).unwrap();
    let id = env_id(1);
    match Scenario::parse(scenario) {
        Scenario::Build | Scenario::Rebuild => {
            let kind = if scenario == "build" {
                OpKind::Build
            } else {
                OpKind::Rebuild
            };
            let op = store.begin(kind, &id).unwrap();
            stage(&store, &op.staging_dir(), &id, "new");
            op.install().unwrap();
        }
        Scenario::Destroy => store
            .begin(OpKind::Destroy, &id)
            .unwrap()
            .remove_env()
            .unwrap(),
        Scenario::Recover => {
            store.recover().unwrap();
        }
    }
}

/// Run the child with a crash at hit `n`; `true` if it was killed there.
fn run_child(scenario: Scenario, root: &Path, n: usize) -> bool {
    let module = module_path!();
    let test = format!(
        "{}::crash_child",
        module.split_once("::").map_or(module, |(_, rest)| rest)
    );
    let status = Command::new(std::env::current_exe().unwrap())
        .args([test.as_str(), "--exact", "--test-threads=1", "--quiet"])
        .env(CHILD_VAR, format!("{}:{}", scenario.name(), root.display()))
        .env("KARAPACE_CRASH_AT", n.to_string())
        .env_remove("KARAPACE_CRASH_TRACE")
        .output()
        .unwrap();
    if status.status.signal() == Some(libc::SIGKILL) {
        return true;
    }
    assert!(
        status.status.success(),
        "child {scenario:?} at {n} failed: {}\n{}",
        String::from_utf8_lossy(&status.stdout),
        String::from_utf8_lossy(&status.stderr)
    );
    false
}

/// Prepare the store the scenario starts from.
fn prepare(scenario: Scenario, store: &Store) {
    let id = env_id(1);
    match scenario {
        Scenario::Build => {}
        Scenario::Rebuild | Scenario::Destroy => {
            install_env(store, &id, "old");
        }
        Scenario::Recover => {
            install_env(store, &id, "old");
            let op = store.begin(OpKind::Rebuild, &id).unwrap();
            stage(store, &op.staging_dir(), &id, "new");
            let old = store.envs_dir().join(format!(".old-{}", op.id()));
            std::fs::rename(store.env_dir(&id), old).unwrap();
            op.abandon();
        }
    }
}

/// Crash the scenario at every point in turn; returns the labels seen after recovery, in order.
fn crash_everywhere(scenario: Scenario) -> Vec<Option<String>> {
    let mut seen = Vec::new();
    for n in 1..500 {
        let (_dir, store) = temp_store();
        prepare(scenario, &store);
        let crashed = run_child(scenario, store.root(), n);
        store.recover().unwrap();
        let label = env_label(&store, &env_id(1));
        let at = format!("{scenario:?} crashed at point {n}");
        assert!(
            transient_dirs(&store).is_empty(),
            "{at}: {:?}",
            transient_dirs(&store)
        );
        // Temp files of a journal entry never renamed into place are gc's business.
        let entries: Vec<String> = names(&store.journal_dir())
            .into_iter()
            .filter(|n| !n.contains(".tmp-"))
            .collect();
        assert!(entries.is_empty(), "{at}: journal not empty: {entries:?}");
        let report = store.verify().unwrap();
        assert!(report.is_clean(), "{at}: {report:#?}");
        seen.push(label);
        if !crashed {
            return seen;
        }
    }
    panic!("{scenario:?} never finished");
}

fn labels(seen: &[Option<String>]) -> Vec<Option<&str>> {
    seen.iter().map(|l| l.as_deref()).collect()
}

/// Before some point the result is `before`, from then on `after`, with no other value.
fn assert_switches_once(seen: &[Option<String>], before: Option<&str>, after: Option<&str>) {
    let seen = labels(seen);
    assert!(seen.len() > 3, "too few crash points: {seen:?}");
    let switch = seen
        .iter()
        .position(|l| *l == after)
        .expect("the new state is reached");
    assert!(
        switch > 0,
        "the first crash point already gave the new state: {seen:?}"
    );
    assert!(seen[..switch].iter().all(|l| *l == before), "{seen:?}");
    assert!(seen[switch..].iter().all(|l| *l == after), "{seen:?}");
}

#[test]
fn crash_during_build_gives_nothing_or_the_new_environment() {
    let seen = crash_everywhere(Scenario::Build);
    assert_switches_once(&seen, None, Some("new"));
}

#[test]
fn crash_during_rebuild_gives_the_old_or_the_new_environment() {
    let seen = crash_everywhere(Scenario::Rebuild);
    assert_switches_once(&seen, Some("old"), Some("new"));
}

#[test]
fn crash_during_destroy_gives_the_old_environment_or_none() {
    let seen = crash_everywhere(Scenario::Destroy);
    assert_switches_once(&seen, Some("old"), None);
}

#[test]
fn crash_during_recovery_is_recovered_by_the_next_one() {
    let seen = crash_everywhere(Scenario::Recover);
    assert!(labels(&seen).iter().all(|l| *l == Some("old")), "{seen:?}");
}

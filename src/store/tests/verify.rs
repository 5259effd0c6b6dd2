use std::fs;
use std::os::unix::fs::PermissionsExt;

use super::{env_id, install_env, sample_meta, temp_store};
use crate::store::{OpKind, ProblemKind, Store};
use crate::types::EnvState;

#[test]
fn a_healthy_store_verifies_clean() {
    let (_dir, store) = temp_store();
    install_env(&store, &env_id(1), "one");
    install_env(&store, &env_id(2), "two");
    let report = store.verify().unwrap();
    assert!(report.is_clean(), "{report:#?}");
    assert_eq!(report.envs_checked, 2);
    assert_eq!(report.objects_checked, 8);
    assert!(report.bytes_checked > 0);
}

/// Break the store in every way verify knows, all at once.
fn break_everything(store: &Store) {
    let (a, b, c, d, e) = (env_id(1), env_id(2), env_id(3), env_id(4), env_id(5));
    let meta_a = install_env(store, &a, "a");
    // A damaged object used by `a`.
    let layer = store.object_path(&meta_a.layers[0]);
    fs::set_permissions(&layer, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(&layer, "not what it was").unwrap();
    // A missing object used by `b`.
    let meta_b = install_env(store, &b, "b");
    fs::remove_file(store.object_path(&meta_b.lock_object)).unwrap();
    // Corrupt metadata of `c`.
    install_env(store, &c, "c");
    fs::write(store.meta_path(&c), "{}").unwrap();
    // A built environment with nothing but its metadata, and an archived one without archive.
    for (id, state) in [(&d, EnvState::Built), (&e, EnvState::Archived)] {
        fs::create_dir(store.env_dir(id)).unwrap();
        let mut meta = sample_meta(store, id, "bare");
        meta.state = state;
        store.write_meta(&store.env_dir(id), &meta).unwrap();
    }
    // An interrupted operation, an orphaned transient directory, stray files.
    store.begin(OpKind::Build, &env_id(6)).unwrap().abandon();
    fs::create_dir(store.envs_dir().join(".old-12-34-56")).unwrap();
    fs::write(store.root().join("stray"), "").unwrap();
    fs::write(store.objects_dir().join("README"), "").unwrap();
    fs::write(store.locks_dir().join("mine.lock"), "").unwrap();
    fs::write(store.tmp_dir().join("obj-dead"), "").unwrap();
}

#[test]
fn verify_reports_every_problem_without_stopping() {
    let (_dir, store) = temp_store();
    break_everything(&store);
    let report = store.verify().unwrap();
    let count = |k: ProblemKind| report.problems.iter().filter(|p| p.kind == k).count();
    assert_eq!(count(ProblemKind::CorruptObject), 1, "{report:#?}");
    assert_eq!(count(ProblemKind::MissingObject), 1, "{report:#?}");
    assert_eq!(count(ProblemKind::CorruptMeta), 1, "{report:#?}");
    assert_eq!(count(ProblemKind::MissingEnvContent), 1, "{report:#?}");
    assert_eq!(count(ProblemKind::MissingArchive), 1, "{report:#?}");
    assert_eq!(count(ProblemKind::UnfinishedOperation), 1, "{report:#?}");
    assert_eq!(count(ProblemKind::OrphanTransient), 1, "{report:#?}");
    assert_eq!(count(ProblemKind::UnknownFile), 3, "{report:#?}");
    assert_eq!(count(ProblemKind::Unreadable), 0, "{report:#?}");
    assert_eq!(report.problems.len(), 10);
    assert_eq!(
        report.leftover_temp_files,
        [store.tmp_dir().join("obj-dead")]
    );

    let corrupt = report
        .problems
        .iter()
        .find(|p| p.kind == ProblemKind::CorruptObject)
        .unwrap();
    assert!(corrupt
        .detail
        .contains(&format!("used by environment {}", env_id(1).short())));
    let missing = report
        .problems
        .iter()
        .find(|p| p.kind == ProblemKind::MissingObject)
        .unwrap();
    assert_eq!(missing.path, store.meta_path(&env_id(2)));
    let unfinished = report
        .problems
        .iter()
        .find(|p| p.kind == ProblemKind::UnfinishedOperation)
        .unwrap();
    assert!(
        unfinished.detail.contains("a build of environment"),
        "{}",
        unfinished.detail
    );
}

#[test]
fn a_live_operation_is_not_a_problem() {
    let (_dir, store) = temp_store();
    let op = store.begin(OpKind::Build, &env_id(1)).unwrap();
    let report = store.verify().unwrap();
    assert!(report.is_clean(), "{report:#?}");
    drop(op);
}

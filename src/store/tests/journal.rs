use std::collections::HashSet;
use std::fs;

use super::{env_id, env_label, install_env, names, stage, temp_store, transient_dirs};
use crate::store::{OpKind, Operation, Store, StoreError};
use crate::types::EnvId;

fn assert_settled(store: &Store) {
    assert!(
        transient_dirs(store).is_empty(),
        "transient dirs left: {:?}",
        transient_dirs(store)
    );
    assert!(
        names(&store.journal_dir()).is_empty(),
        "journal left: {:?}",
        names(&store.journal_dir())
    );
}

#[test]
fn build_rebuild_destroy_through_the_journal() {
    let (_dir, store) = temp_store();
    let id = env_id(1);
    install_env(&store, &id, "old");
    fs::write(store.env_dir(&id).join("old-only"), "x").unwrap();
    assert_eq!(env_label(&store, &id).as_deref(), Some("old"));
    install_env(&store, &id, "new");
    assert_eq!(env_label(&store, &id).as_deref(), Some("new"));
    assert!(
        !store.env_dir(&id).join("old-only").exists(),
        "rebuild replaces the whole directory"
    );
    assert_settled(&store);

    store
        .begin(OpKind::Destroy, &id)
        .unwrap()
        .remove_env()
        .unwrap();
    assert_eq!(env_label(&store, &id), None);
    assert_settled(&store);
}

#[test]
fn removing_a_missing_environment_is_not_found_and_leaves_nothing() {
    let (_dir, store) = temp_store();
    let result = store
        .begin(OpKind::Destroy, &env_id(2))
        .unwrap()
        .remove_env();
    assert!(
        matches!(result, Err(StoreError::NotFound { .. })),
        "{result:?}"
    );
    assert_settled(&store);
}

#[test]
fn a_failed_rebuild_keeps_the_old_environment() {
    // The original deleted the existing environment (user data included) when a build failed.
    let (_dir, store) = temp_store();
    let id = env_id(3);
    install_env(&store, &id, "old");
    let op = store.begin(OpKind::Rebuild, &id).unwrap();
    stage(&store, &op.staging_dir(), &id, "new");
    drop(op);
    assert_eq!(env_label(&store, &id).as_deref(), Some("old"));
    assert_settled(&store);
}

#[test]
fn a_failed_build_leaves_nothing() {
    let (_dir, store) = temp_store();
    let id = env_id(4);
    let op = store.begin(OpKind::Build, &id).unwrap();
    fs::write(op.staging_dir().join("half"), "x").unwrap();
    drop(op);
    assert_eq!(env_label(&store, &id), None);
    assert_settled(&store);
}

#[test]
fn install_refuses_a_staging_dir_without_valid_metadata() {
    let (_dir, store) = temp_store();
    let (id, other) = (env_id(5), env_id(6));
    install_env(&store, &id, "old");
    let op = store.begin(OpKind::Rebuild, &id).unwrap();
    fs::write(op.staging_dir().join("content"), "new").unwrap();
    assert!(matches!(op.install(), Err(StoreError::Corrupt { .. })));
    assert_eq!(env_label(&store, &id).as_deref(), Some("old"));

    let op = store.begin(OpKind::Rebuild, &id).unwrap();
    stage(&store, &op.staging_dir(), &other, "wrong id");
    let err = op.install().unwrap_err();
    assert!(err.to_string().contains("staged metadata is for"), "{err}");
    assert_eq!(env_label(&store, &id).as_deref(), Some("old"));
    assert_settled(&store);
}

/// Where a simulated crash leaves an operation, crafted by hand from an abandoned operation.
#[derive(Debug, Clone, Copy)]
enum CrashState {
    /// Journal written, staging created (maybe half filled).
    Staging,
    /// Old environment moved aside, new one not yet in place.
    OldMovedAside,
    /// New one in place, old one not yet deleted.
    NewInPlace,
    /// New one in place, old one half deleted.
    OldHalfDeleted,
    /// Destroy: environment moved to trash.
    Trashed,
    /// Destroy: trash half deleted.
    TrashHalfDeleted,
}

/// Start an operation, bring the disk to `state` and "crash" (release the journal lock without
/// settling anything).
fn crash_at(store: &Store, id: &EnvId, kind: OpKind, state: CrashState) {
    let op: Operation = store.begin(kind, id).unwrap();
    let staging = op.staging_dir();
    let op_id = op.id().to_string();
    let old = store.envs_dir().join(format!(".old-{op_id}"));
    let trash = store.envs_dir().join(format!(".trash-{op_id}"));
    let env = store.env_dir(id);
    if kind != OpKind::Destroy {
        stage(store, &staging, id, "new");
    }
    match state {
        CrashState::Staging => {}
        CrashState::OldMovedAside => fs::rename(&env, &old).unwrap(),
        CrashState::NewInPlace | CrashState::OldHalfDeleted => {
            fs::rename(&env, &old).unwrap();
            fs::rename(&staging, &env).unwrap();
            if matches!(state, CrashState::OldHalfDeleted) {
                fs::remove_dir_all(old.join("upper")).unwrap();
                fs::remove_file(old.join("content")).unwrap();
            }
        }
        CrashState::Trashed | CrashState::TrashHalfDeleted => {
            fs::rename(&env, &trash).unwrap();
            if matches!(state, CrashState::TrashHalfDeleted) {
                fs::remove_dir_all(trash.join("upper")).unwrap();
            }
        }
    }
    op.abandon();
}

#[test]
fn recover_yields_old_or_new_at_every_crafted_crash_state() {
    use CrashState::*;
    let cases = [
        (OpKind::Rebuild, Staging, Some("old")),
        (OpKind::Rebuild, OldMovedAside, Some("old")),
        (OpKind::Rebuild, NewInPlace, Some("new")),
        (OpKind::Rebuild, OldHalfDeleted, Some("new")),
        (OpKind::Destroy, Staging, Some("old")),
        (OpKind::Destroy, Trashed, None),
        (OpKind::Destroy, TrashHalfDeleted, None),
    ];
    for (kind, state, expected) in cases {
        let (_dir, store) = temp_store();
        let id = env_id(7);
        install_env(&store, &id, "old");
        crash_at(&store, &id, kind, state);
        assert!(!transient_dirs(&store).is_empty() || matches!(state, Staging));
        let report = store.recover().unwrap();
        assert_eq!(report.recovered.len(), 1, "{kind:?} {state:?}: {report:?}");
        let line = &report.describe()[0];
        assert!(
            line.contains(kind.as_str()) && line.contains(id.short()),
            "{line}"
        );
        assert_eq!(report.recovered[0].env_present, expected.is_some());
        assert_eq!(
            env_label(&store, &id).as_deref(),
            expected,
            "{kind:?} at {state:?}"
        );
        assert_settled(&store);
        assert!(store.verify().unwrap().is_clean(), "{kind:?} {state:?}");
        assert!(store.recover().unwrap().is_empty(), "recover is idempotent");
    }
}

#[test]
fn recover_after_a_crashed_first_build_leaves_nothing() {
    let (_dir, store) = temp_store();
    let id = env_id(8);
    crash_at(&store, &id, OpKind::Build, CrashState::Staging);
    store.recover().unwrap();
    assert_eq!(env_label(&store, &id), None);
    assert_settled(&store);
}

#[test]
fn recover_completes_a_first_build_already_in_place() {
    let (_dir, store) = temp_store();
    let id = env_id(8);
    let op = store.begin(OpKind::Build, &id).unwrap();
    stage(&store, &op.staging_dir(), &id, "new");
    fs::rename(op.staging_dir(), store.env_dir(&id)).unwrap();
    op.abandon();
    store.recover().unwrap();
    assert_eq!(env_label(&store, &id).as_deref(), Some("new"));
    assert_settled(&store);
}

#[test]
fn recover_leaves_a_live_operation_alone() {
    let (_dir, store) = temp_store();
    let id = env_id(9);
    install_env(&store, &id, "old");
    let op = store.begin(OpKind::Rebuild, &id).unwrap();
    stage(&store, &op.staging_dir(), &id, "new");
    let report = store.recover().unwrap();
    assert!(report.recovered.is_empty());
    assert_eq!(report.live, [op.id().to_string()]);
    assert!(op.staging_dir().join("content").exists());
    assert!(op.journal_path().exists());
    // gc does the same: it must not disturb the build.
    op.install().unwrap();
    assert_eq!(env_label(&store, &id).as_deref(), Some("new"));
    assert_settled(&store);
}

#[test]
fn an_unreadable_entry_is_reported_and_the_others_still_recovered() {
    let (_dir, store) = temp_store();
    let id = env_id(10);
    install_env(&store, &id, "old");
    crash_at(&store, &id, OpKind::Rebuild, CrashState::OldMovedAside);
    let garbage = store.journal_dir().join("0-0-0.json");
    fs::write(&garbage, "{ torn").unwrap();
    match store.recover() {
        Err(StoreError::RecoveryIncomplete { failures }) => {
            assert_eq!(failures.len(), 1);
            assert_eq!(failures[0].journal, garbage);
        }
        other => panic!("expected RecoveryIncomplete, got {other:?}"),
    }
    assert_eq!(env_label(&store, &id).as_deref(), Some("old"));
    assert!(transient_dirs(&store).is_empty());
    assert!(garbage.exists(), "an entry that cannot be settled is kept");
}

#[test]
fn operation_ids_are_unique_across_threads() {
    let (_dir, store) = temp_store();
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                (0..50)
                    .map(|_| {
                        let op = store.begin(OpKind::Build, &env_id(t)).unwrap();
                        op.id().to_string()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut seen = HashSet::new();
    for h in handles {
        for id in h.join().unwrap() {
            assert!(seen.insert(id.clone()), "duplicate op id {id}");
        }
    }
    assert_eq!(seen.len(), 200);
    assert_settled(&store);
}

#[test]
fn a_custom_tree_remover_is_used_for_environment_trees() {
    use std::path::PathBuf;
    use std::sync::{Arc, Mutex};
    let (_dir, store) = temp_store();
    let removed: Arc<Mutex<Vec<PathBuf>>> = Arc::default();
    let seen = Arc::clone(&removed);
    let store = store.with_tree_remover(Arc::new(move |path: &std::path::Path| {
        seen.lock().unwrap().push(path.to_path_buf());
        crate::store::remove_tree(path)
    }));
    let id = env_id(11);
    install_env(&store, &id, "old");
    install_env(&store, &id, "new");
    let removed = removed.lock().unwrap().clone();
    assert!(removed.iter().any(|p| p
        .file_name()
        .unwrap()
        .to_string_lossy()
        .starts_with(".old-")));
    assert_settled(&store);
}

#[test]
fn remove_tree_copes_with_read_only_directories() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    fs::create_dir_all(tree.join("go/pkg/mod")).unwrap();
    fs::write(tree.join("go/pkg/mod/file"), "x").unwrap();
    for d in ["go/pkg/mod", "go/pkg", "go"] {
        fs::set_permissions(tree.join(d), fs::Permissions::from_mode(0o555)).unwrap();
    }
    crate::store::remove_tree(&tree).unwrap();
    assert!(!tree.exists());
    crate::store::remove_tree(&tree).unwrap();
}

use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;

use super::{env_id, env_label, install_env, names, stage, temp_store};
use crate::store::fsutil::LockedTemp;
use crate::store::{GcItemKind, OpKind, Store, StoreError};
use crate::types::Digest;

/// Two environments plus three unreferenced objects; returns the orphans' digests.
fn populated(store: &Store) -> Vec<Digest> {
    install_env(store, &env_id(1), "one");
    install_env(store, &env_id(2), "two");
    ["orphan a", "orphan bb", "orphan ccc"]
        .iter()
        .map(|s| store.put_object_bytes(s.as_bytes()).unwrap())
        .collect()
}

fn object_paths(store: &Store, digests: &[Digest]) -> BTreeSet<PathBuf> {
    digests.iter().map(|d| store.object_path(d)).collect()
}

#[test]
fn gc_removes_exactly_the_unreferenced_objects() {
    let (_dir, store) = temp_store();
    let orphans = populated(&store);
    let kept_by_caller = store.put_object_bytes(b"pinned by the caller").unwrap();
    let before = names(&store.objects_dir()).len();

    let report = store
        .gc(false, std::slice::from_ref(&kept_by_caller))
        .unwrap();
    assert!(!report.dry_run);
    let removed: BTreeSet<PathBuf> = report.items.iter().map(|i| i.path.clone()).collect();
    assert_eq!(removed, object_paths(&store, &orphans));
    assert!(report.items.iter().all(|i| i.kind == GcItemKind::Object));
    let sizes: Vec<u64> = report.items.iter().map(|i| i.bytes).collect();
    let mut sorted = sizes.clone();
    sorted.sort();
    assert_eq!(sorted, [8, 9, 10]);
    assert_eq!(report.bytes, 27);
    assert_eq!(names(&store.objects_dir()).len(), before - 3);
    assert!(store.has_object(&kept_by_caller));
    assert!(orphans.iter().all(|d| !store.has_object(d)));
    assert!(
        store.verify().unwrap().is_clean(),
        "every referenced object survives"
    );
    assert!(
        store.gc(false, &[kept_by_caller]).unwrap().items.is_empty(),
        "nothing left to do"
    );
}

#[test]
fn dry_run_removes_nothing_and_lists_the_same_items() {
    let (_dir, store) = temp_store();
    populated(&store);
    fs::write(store.tmp_dir().join("obj-stale"), "partial").unwrap();
    let objects_before = names(&store.objects_dir());

    let dry = store.gc(true, &[]).unwrap();
    assert!(dry.dry_run);
    assert_eq!(dry.items.len(), 4, "{dry:#?}");
    assert_eq!(names(&store.objects_dir()), objects_before);
    assert!(store.tmp_dir().join("obj-stale").exists());

    let real = store.gc(false, &[]).unwrap();
    assert_eq!(real.items, dry.items);
    assert_eq!(real.bytes, dry.bytes);
    assert!(
        dry.bytes > 0,
        "a dry run reports what it would free, not zero"
    );
}

#[test]
fn gc_refuses_while_any_metadata_is_corrupt() {
    let (_dir, store) = temp_store();
    let orphans = populated(&store);
    let bad = store.meta_path(&env_id(2));
    fs::write(&bad, "{\"checksum\": \"00\", \"meta\": {}}").unwrap();
    fs::create_dir(store.env_dir(&env_id(3))).unwrap(); // no meta.json at all
    let objects_before = names(&store.objects_dir());

    for dry_run in [true, false] {
        match store.gc(dry_run, &[]) {
            Err(e @ StoreError::GcRefused { .. }) => {
                let StoreError::GcRefused { corrupt } = &e else {
                    unreachable!()
                };
                assert_eq!(corrupt, &[bad.clone(), store.meta_path(&env_id(3))]);
                assert!(e.to_string().contains("nothing"), "{e}");
            }
            other => panic!("expected GcRefused, got {other:?}"),
        }
    }
    assert_eq!(
        names(&store.objects_dir()),
        objects_before,
        "nothing may be deleted"
    );
    assert!(orphans.iter().all(|d| store.has_object(d)));
}

#[test]
fn objects_of_a_build_in_progress_are_kept() {
    let (_dir, store) = temp_store();
    let id = env_id(4);
    install_env(&store, &id, "old");
    let op = store.begin(OpKind::Rebuild, &id).unwrap();
    let staged = stage(&store, &op.staging_dir(), &id, "new");
    let report = store.gc(false, &[]).unwrap();
    assert_eq!(report.recovery.live, [op.id().to_string()]);
    assert!(
        staged.referenced_objects().all(|d| store.has_object(d)),
        "{report:#?}"
    );
    op.install().unwrap();
    assert_eq!(env_label(&store, &id).as_deref(), Some("new"));
    // The old version's objects are garbage now.
    assert_eq!(store.gc(false, &[]).unwrap().items.len(), 4);
    assert!(store.verify().unwrap().is_clean());
}

#[test]
fn gc_settles_interrupted_operations_first() {
    let (_dir, store) = temp_store();
    let id = env_id(5);
    install_env(&store, &id, "old");
    let op = store.begin(OpKind::Rebuild, &id).unwrap();
    stage(&store, &op.staging_dir(), &id, "new");
    op.abandon();
    let report = store.gc(false, &[]).unwrap();
    assert_eq!(report.recovery.recovered.len(), 1);
    assert_eq!(env_label(&store, &id).as_deref(), Some("old"));
    // The abandoned build's objects were unreferenced once its staging dir was gone.
    assert_eq!(report.items.len(), 4, "{report:#?}");
}

#[test]
fn gc_removes_stale_temp_files_and_markers_but_not_live_ones() {
    let (_dir, store) = temp_store();
    let id = env_id(6);
    install_env(&store, &id, "six");
    let stale = [
        store.tmp_dir().join("obj-dead"),
        store.journal_dir().join(".x.json.tmp-1-2-3"),
        store.env_dir(&id).join(".meta.json.tmp-1-2-3"),
        store.root().join(".version.tmp-9"),
    ];
    for path in &stale {
        fs::write(path, "leftover").unwrap();
    }
    let live_temp = LockedTemp::create(&store.tmp_dir(), "obj-live", 0o600).unwrap();
    let live_marker = store.mark_running(&id).unwrap();
    let run_dir = store.run_dir().join(id.as_str());
    fs::write(run_dir.join("4242-0"), "").unwrap();
    let dead_env_run = store.run_dir().join(env_id(7).as_str());
    fs::create_dir(&dead_env_run).unwrap();
    fs::write(dead_env_run.join("4243-0"), "").unwrap();

    let report = store.gc(false, &[]).unwrap();
    let kinds = |k: GcItemKind| -> BTreeSet<PathBuf> {
        report
            .items
            .iter()
            .filter(|i| i.kind == k)
            .map(|i| i.path.clone())
            .collect()
    };
    assert_eq!(kinds(GcItemKind::TempFile), stale.iter().cloned().collect());
    assert_eq!(
        kinds(GcItemKind::RunMarker),
        [run_dir.join("4242-0"), dead_env_run.join("4243-0")]
            .into_iter()
            .collect()
    );
    assert_eq!(
        kinds(GcItemKind::RunDir),
        [dead_env_run.clone()].into_iter().collect()
    );
    assert!(stale.iter().all(|p| !p.exists()));
    assert!(
        live_temp.path().exists(),
        "a temp file being written is not garbage"
    );
    assert!(live_marker.path().exists());
    assert_eq!(store.running_sessions(&id).unwrap(), 1);
    assert!(!dead_env_run.exists());
}

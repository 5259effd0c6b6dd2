use std::fs;

use super::{env_id, names, temp_store};
use crate::store::{Store, StoreError, FORMAT_VERSION};

#[test]
fn open_creates_the_layout_and_version() {
    let (_dir, store) = temp_store();
    assert_eq!(
        names(store.root()),
        ["envs", "journal", "locks", "objects", "run", "tmp", "version"]
    );
    let version = fs::read_to_string(store.root().join("version")).unwrap();
    assert_eq!(
        version,
        format!("karapace-tui store format {FORMAT_VERSION}\n")
    );
    // Reopening changes nothing.
    let again = Store::open(store.root()).unwrap();
    assert_eq!(again.root(), store.root());
    assert!(store.root().is_absolute());
}

#[test]
fn open_recreates_a_missing_layout_directory() {
    let (_dir, store) = temp_store();
    fs::remove_dir(store.root().join("tmp")).unwrap();
    Store::open(store.root()).unwrap();
    assert!(store.root().join("tmp").is_dir());
}

#[test]
fn newer_format_is_refused_with_both_numbers() {
    let (_dir, store) = temp_store();
    fs::write(
        store.root().join("version"),
        "karapace-tui store format 7\n",
    )
    .unwrap();
    match Store::open(store.root()) {
        Err(
            e @ StoreError::FormatTooNew {
                found: 7,
                supported: FORMAT_VERSION,
                ..
            },
        ) => {
            let msg = e.to_string();
            assert!(msg.contains("format 7") && msg.contains("upgrade"), "{msg}");
        }
        other => panic!("expected FormatTooNew, got {other:?}"),
    }
}

#[test]
fn garbage_or_empty_version_is_corrupt() {
    for text in [
        "hello\n",
        "",
        "karapace-tui store format x\n",
        "karapace-tui store format 0\n",
    ] {
        let (_dir, store) = temp_store();
        fs::write(store.root().join("version"), text).unwrap();
        match Store::open(store.root()) {
            Err(StoreError::Corrupt { path, .. }) => assert!(path.ends_with("version")),
            other => panic!("{text:?}: expected Corrupt, got {other:?}"),
        }
    }
}

#[test]
fn a_non_empty_foreign_directory_is_not_turned_into_a_store() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("notes.txt"), "mine").unwrap();
    match Store::open(dir.path()) {
        Err(StoreError::NotAStore { detail, .. }) => assert!(detail.contains("notes.txt")),
        other => panic!("expected NotAStore, got {other:?}"),
    }
    assert_eq!(
        names(dir.path()),
        ["notes.txt"],
        "nothing may be created in it"
    );
}

#[test]
fn a_crash_while_writing_the_first_version_still_opens() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join(".version.tmp-123-4-5"), "karapace").unwrap();
    Store::open(dir.path()).unwrap();
    assert!(dir.path().join("version").is_file());
}

#[test]
fn integrity_errors_are_told_apart() {
    let d = crate::types::Digest::of_bytes(b"x");
    assert!(StoreError::MissingObject { digest: d.clone() }.is_integrity());
    let corrupt = StoreError::Corrupt {
        path: "p".into(),
        detail: "d".into(),
    };
    assert!(corrupt.is_integrity());
    assert!(!StoreError::NotFound { id: env_id(1) }.is_integrity());
    let io = StoreError::io("p", "read", std::io::ErrorKind::PermissionDenied.into());
    assert!(!io.is_integrity());
    assert!(io.to_string().contains("could not read `p`"), "{io}");
}

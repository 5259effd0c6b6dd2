//! Unit tests of the store, one file per concern, sharing the helpers below. Crash tests re-run
//! this test binary as a child with `KARAPACE_CRASH_AT=N` (see `journal.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::path::{Path, PathBuf};

use super::{EnvMeta, OpKind, Store};
use crate::types::{BackendKind, EnvId, EnvState};

mod crash;
mod gc;
mod journal;
mod layout;
mod locks;
mod meta;
mod object;
mod verify;

/// A fresh store in a temp dir (the dir is removed when the guard drops).
pub(super) fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    (dir, store)
}

/// A valid id made of one repeated byte.
pub(super) fn env_id(n: u8) -> EnvId {
    format!("{n:02x}").repeat(32).parse().unwrap()
}

/// Metadata whose objects are all in the store; `label` makes the objects distinct.
pub(super) fn sample_meta(store: &Store, id: &EnvId, label: &str) -> EnvMeta {
    let put = |what: &str| {
        store
            .put_object_bytes(format!("{what} of {label}").as_bytes())
            .unwrap()
    };
    EnvMeta {
        id: id.clone(),
        name: Some(label.to_string()),
        state: EnvState::Built,
        backend: BackendKind::Mock,
        base_image: "debian/bookworm".to_string(),
        manifest_path: Some(PathBuf::from("/home/me/project/karapace.toml")),
        manifest_object: put("manifest"),
        lock_object: put("lock"),
        layers: vec![put("layer 1"), put("layer 2")],
        archive: None,
        created_at: 1_700_000_000,
        updated_at: 1_700_000_001,
    }
}

/// Build (or rebuild) `id` through the journal with a `content` file holding `label`.
pub(super) fn install_env(store: &Store, id: &EnvId, label: &str) -> EnvMeta {
    let kind = if store.env_dir(id).exists() {
        OpKind::Rebuild
    } else {
        OpKind::Build
    };
    let op = store.begin(kind, id).unwrap();
    let meta = stage(store, &op.staging_dir(), id, label);
    op.install().unwrap();
    meta
}

/// Fill a staging directory as a build would.
pub(super) fn stage(store: &Store, staging: &Path, id: &EnvId, label: &str) -> EnvMeta {
    fs::create_dir_all(staging.join("upper/etc")).unwrap();
    fs::write(staging.join("content"), label).unwrap();
    fs::write(staging.join("upper/etc/marker"), label).unwrap();
    let meta = sample_meta(store, id, label);
    store.write_meta(staging, &meta).unwrap();
    meta
}

/// The label of an installed environment, checking that its files and metadata agree (a mix of
/// two versions fails here). `None` if the environment does not exist.
pub(super) fn env_label(store: &Store, id: &EnvId) -> Option<String> {
    let dir = store.env_dir(id);
    if !dir.exists() {
        return None;
    }
    let content = fs::read_to_string(dir.join("content")).unwrap();
    let marker = fs::read_to_string(dir.join("upper/etc/marker")).unwrap();
    let meta = store.read_meta(id).unwrap();
    assert_eq!(
        content,
        marker,
        "files of two versions mixed in {}",
        dir.display()
    );
    assert_eq!(
        meta.name.as_deref(),
        Some(content.as_str()),
        "metadata and files disagree"
    );
    Some(content)
}

/// Names in `envs/` starting with a dot (transient directories).
pub(super) fn transient_dirs(store: &Store) -> Vec<String> {
    names(&store.envs_dir())
        .into_iter()
        .filter(|n| n.starts_with('.'))
        .collect()
}

/// Sorted names in a directory.
pub(super) fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

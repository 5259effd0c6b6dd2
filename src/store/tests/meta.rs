use std::fs;

use super::{env_id, install_env, sample_meta, temp_store};
use crate::store::{EnvMeta, StoreError};

fn assert_corrupt(result: Result<EnvMeta, StoreError>, needle: &str) {
    match result {
        Err(StoreError::Corrupt { detail, path }) => {
            assert!(path.ends_with("meta.json"), "{}", path.display());
            assert!(
                detail.contains(needle),
                "detail {detail:?} should mention {needle:?}"
            );
        }
        other => panic!("expected Corrupt ({needle}), got {other:?}"),
    }
}

#[test]
fn meta_round_trips_and_lists_referenced_objects() {
    let (_dir, store) = temp_store();
    let id = env_id(1);
    let meta = install_env(&store, &id, "one");
    assert_eq!(store.read_meta(&id).unwrap(), meta);
    let refs: Vec<_> = meta.referenced_objects().cloned().collect();
    assert_eq!(refs.len(), 4);
    assert_eq!(refs[0], meta.manifest_object);
    assert_eq!(refs[1], meta.lock_object);
    let text = fs::read_to_string(store.meta_path(&id)).unwrap();
    assert!(text.starts_with("{\n\"checksum\": \""), "{text}");
}

#[test]
fn archive_digest_is_referenced_too() {
    let (_dir, store) = temp_store();
    let mut meta = sample_meta(&store, &env_id(1), "a");
    let archive = store.put_object_bytes(b"archive").unwrap();
    meta.archive = Some(archive.clone());
    assert!(meta.referenced_objects().any(|d| *d == archive));
}

#[test]
fn checksum_covers_the_raw_bytes_not_a_reserialisation() {
    // Hand-written metadata with unusual spacing and key order, checksummed over its exact bytes,
    // is accepted; re-serialising would produce other bytes.
    let (_dir, store) = temp_store();
    let id = env_id(2);
    let meta = install_env(&store, &id, "two");
    let mut value = serde_json::to_value(&meta).unwrap();
    let obj = value.as_object_mut().unwrap();
    let name = obj.remove("name").unwrap();
    obj.insert("name".to_string(), name);
    let body = format!(
        "  {}",
        serde_json::to_string(&value).unwrap().replace(",", " ,  ")
    );
    let body = body.trim_start();
    let checksum = blake3::hash(body.as_bytes()).to_hex();
    let file = format!("{{ \"meta\" :{body} , \"checksum\":\"{checksum}\"}}");
    fs::write(store.meta_path(&id), file).unwrap();
    assert_eq!(store.read_meta(&id).unwrap(), meta);
}

#[test]
fn tampered_value_or_checksum_is_corrupt() {
    let (_dir, store) = temp_store();
    let id = env_id(3);
    install_env(&store, &id, "three");
    let path = store.meta_path(&id);
    let good = fs::read_to_string(&path).unwrap();

    fs::write(&path, good.replace("\"three\"", "\"thrée\"")).unwrap();
    assert_corrupt(store.read_meta(&id), "checksum mismatch");

    let checksum_at = good.find("\"checksum\": \"").unwrap() + 13;
    let mut flipped = good.clone();
    let c = if &good[checksum_at..checksum_at + 1] == "0" {
        "1"
    } else {
        "0"
    };
    flipped.replace_range(checksum_at..checksum_at + 1, c);
    fs::write(&path, flipped).unwrap();
    assert_corrupt(store.read_meta(&id), "checksum mismatch");
}

#[test]
fn truncated_missing_checksum_unknown_field_and_missing_file_are_corrupt() {
    let (_dir, store) = temp_store();
    let id = env_id(4);
    let meta = install_env(&store, &id, "four");
    let path = store.meta_path(&id);
    let good = fs::read(&path).unwrap();

    fs::write(&path, &good[..good.len() / 2]).unwrap();
    assert_corrupt(store.read_meta(&id), "not a checksummed record");

    let plain = format!("{{\"meta\": {}}}", serde_json::to_string(&meta).unwrap());
    fs::write(&path, plain).unwrap();
    assert_corrupt(store.read_meta(&id), "checksum");

    let mut value = serde_json::to_value(&meta).unwrap();
    value["colour"] = serde_json::json!("blue");
    let body = serde_json::to_string(&value).unwrap();
    let checksum = blake3::hash(body.as_bytes()).to_hex();
    fs::write(
        &path,
        format!("{{\"checksum\":\"{checksum}\",\"meta\":{body}}}"),
    )
    .unwrap();
    assert_corrupt(store.read_meta(&id), "colour");

    fs::remove_file(&path).unwrap();
    assert_corrupt(store.read_meta(&id), "no meta.json");
}

#[test]
fn metadata_under_the_wrong_id_is_corrupt() {
    let (_dir, store) = temp_store();
    let (a, b) = (env_id(5), env_id(6));
    install_env(&store, &a, "a");
    fs::create_dir(store.env_dir(&b)).unwrap();
    fs::copy(store.meta_path(&a), store.meta_path(&b)).unwrap();
    assert_corrupt(store.read_meta(&b), "lives under");
}

#[test]
fn unknown_environment_is_not_found() {
    let (_dir, store) = temp_store();
    assert!(matches!(
        store.read_meta(&env_id(7)),
        Err(StoreError::NotFound { .. })
    ));
}

#[test]
fn list_meta_never_skips_a_broken_environment() {
    let (_dir, store) = temp_store();
    let ids = [env_id(1), env_id(2), env_id(3)];
    for (n, id) in ids.iter().enumerate() {
        install_env(&store, id, &format!("env{n}"));
    }
    fs::write(store.meta_path(&ids[1]), "{ not json").unwrap();
    // Not environments: transient dirs, other names, a file with an id name.
    fs::create_dir(store.envs_dir().join(".staging-123")).unwrap();
    fs::create_dir(store.envs_dir().join("notes")).unwrap();
    fs::write(store.envs_dir().join(env_id(9).as_str()), "").unwrap();

    assert_eq!(store.list_env_ids().unwrap(), ids);
    let listed = store.list_meta().unwrap();
    assert_eq!(listed.len(), 3);
    assert!(listed[0].1.is_ok());
    assert!(matches!(listed[1].1, Err(StoreError::Corrupt { .. })));
    assert_eq!(listed[2].1.as_ref().unwrap().name.as_deref(), Some("env2"));
}

#[test]
fn write_meta_replaces_atomically_and_leaves_no_temp() {
    let (_dir, store) = temp_store();
    let id = env_id(8);
    let mut meta = install_env(&store, &id, "eight");
    meta.name = Some("renamed".to_string());
    store.write_meta(&store.env_dir(&id), &meta).unwrap();
    assert_eq!(
        store.read_meta(&id).unwrap().name.as_deref(),
        Some("renamed")
    );
    let leftovers: Vec<_> = super::names(&store.env_dir(&id))
        .into_iter()
        .filter(|n| n.contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn list_meta_on_many_environments_keeps_order_and_broken_ones() {
    let (_dir, store) = temp_store();
    let template = sample_meta(&store, &env_id(0), "t");
    let ids: Vec<crate::types::EnvId> = (0..150u32)
        .map(|n| format!("{n:064x}").parse().unwrap())
        .collect();
    for id in &ids {
        fs::create_dir(store.env_dir(id)).unwrap();
        let meta = EnvMeta {
            id: id.clone(),
            ..template.clone()
        };
        store.write_meta(&store.env_dir(id), &meta).unwrap();
    }
    fs::write(store.meta_path(&ids[97]), "").unwrap();
    let listed = store.list_meta().unwrap();
    let listed_ids: Vec<_> = listed.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(listed_ids, ids);
    for (n, (id, meta)) in listed.iter().enumerate() {
        match meta {
            Ok(m) => assert_eq!(&m.id, id),
            Err(StoreError::Corrupt { .. }) => assert_eq!(n, 97),
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(listed.iter().filter(|(_, m)| m.is_err()).count(), 1);
}

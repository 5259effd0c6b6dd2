use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::*;
use crate::events::MemorySink;
use crate::types::EnvState;

struct Fixture {
    dir: tempfile::TempDir,
    engine: Engine,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let env = ParseEnv {
        home: dir.path().join("home"),
    };
    let engine = Engine::open(
        &dir.path().join("store"),
        env,
        Arc::new(MemorySink::default()),
    )
    .expect("open engine");
    Fixture { dir, engine }
}

impl Fixture {
    fn manifest(&self, project: &str, packages: &[&str]) -> PathBuf {
        let dir = self.dir.path().join(project);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let list: Vec<String> = packages.iter().map(|p| format!("{p:?}")).collect();
        let text = format!(
            "manifest_version = 1\n[base]\nimage = \"debian\"\n[system]\npackages = [{}]\n\
             [runtime]\nbackend = \"mock\"\n",
            list.join(", ")
        );
        let path = dir.join("karapace.toml");
        std::fs::write(&path, text).expect("write manifest");
        path
    }

    fn build(&self, manifest: &Path) -> BuildOutcome {
        self.engine
            .build(&BuildOptions {
                manifest: manifest.to_path_buf(),
                ..BuildOptions::default()
            })
            .expect("build")
    }
}

#[test]
fn build_is_idempotent_and_named_after_the_project() {
    let f = fixture();
    let m = f.manifest("proj", &["git"]);
    let first = f.build(&m);
    assert!(first.built);
    assert_eq!(first.env.name.as_deref(), Some("proj"));
    let second = f.build(&m);
    assert!(!second.built);
    assert_eq!(first.env.id, second.env.id);
    let (envs, broken) = f.engine.list().expect("list");
    assert_eq!(envs.len(), 1);
    assert!(broken.is_empty());
}

#[test]
fn find_by_name_prefix_and_id() {
    let f = fixture();
    let out = f.build(&f.manifest("proj", &[]));
    let id = out.env.id.to_string();
    assert_eq!(f.engine.find("proj").expect("by name").id, out.env.id);
    assert_eq!(f.engine.find(&id[..6]).expect("by prefix").id, out.env.id);
    assert_eq!(f.engine.find(&id).expect("by id").id, out.env.id);
    assert!(matches!(
        f.engine.find(&id[..3]),
        Err(EngineError::PrefixTooShort { .. })
    ));
    assert!(matches!(
        f.engine.find("nope"),
        Err(EngineError::NotFound { .. })
    ));
}

#[test]
fn a_name_equal_to_another_ids_prefix_is_ambiguous() {
    let f = fixture();
    let a = f.build(&f.manifest("one", &["a"]));
    let b = f.build(&f.manifest("two", &["b"]));
    let prefix = a.env.id.as_str()[..8].to_string();
    f.engine
        .rename(&b.env.id.to_string(), &prefix)
        .expect("rename");
    match f.engine.find(&prefix) {
        Err(EngineError::Ambiguous { candidates, .. }) => assert_eq!(candidates.len(), 2),
        other => panic!("expected ambiguity, got {other:?}"),
    }
}

#[test]
fn transitions_are_checked() {
    let f = fixture();
    let out = f.build(&f.manifest("proj", &[]));
    let id = out.env.id.to_string();
    assert!(matches!(
        f.engine.unfreeze(&id),
        Err(EngineError::InvalidTransition { .. })
    ));
    assert_eq!(
        f.engine.freeze(&id).expect("freeze").state,
        EnvState::Frozen
    );
    assert!(matches!(
        f.engine.destroy(&id, false),
        Err(EngineError::InvalidTransition { .. })
    ));
    assert!(matches!(
        f.engine.archive(&id),
        Err(EngineError::InvalidTransition { .. })
    ));
    assert!(matches!(
        f.engine.run(&id, &["true".into()], false),
        Err(EngineError::InvalidTransition { .. })
    ));
    f.engine.unfreeze(&id).expect("unfreeze");
    f.engine.destroy(&id, false).expect("destroy");
    assert!(matches!(
        f.engine.find(&id),
        Err(EngineError::NotFound { .. })
    ));
}

#[test]
fn archive_round_trip_restores_files() {
    let f = fixture();
    let out = f.build(&f.manifest("proj", &["git"]));
    let id = out.env.id.to_string();
    let rootfs = f.engine.store().env_dir(&out.env.id).join("rootfs");
    std::fs::write(rootfs.join("home/note"), "kept").expect("write note");
    let archived = f.engine.archive(&id).expect("archive");
    assert_eq!(archived.state, EnvState::Archived);
    assert!(!rootfs.exists(), "archive must free the tree");
    f.engine.unarchive(&id).expect("unarchive");
    assert_eq!(
        std::fs::read_to_string(rootfs.join("home/note")).expect("note"),
        "kept"
    );
    assert!(f.engine.verify().expect("verify").problems.is_empty());
}

#[test]
fn rebuild_discards_changes_and_keeps_the_name() {
    let f = fixture();
    let m = f.manifest("proj", &["git"]);
    let out = f.build(&m);
    let rootfs = f.engine.store().env_dir(&out.env.id).join("rootfs");
    std::fs::write(rootfs.join("home/junk"), "x").expect("write junk");
    let opts = BuildOptions {
        manifest: m.clone(),
        ..BuildOptions::default()
    };
    let same = f.engine.rebuild(&opts).expect("rebuild");
    assert_eq!(same.env.id, out.env.id);
    assert!(
        !rootfs.join("home/junk").exists(),
        "user changes leaked into the rebuild"
    );
    f.manifest("proj", &["git", "curl"]);
    let changed = f.engine.rebuild(&opts).expect("rebuild changed");
    assert_ne!(changed.env.id, out.env.id);
    assert_eq!(changed.env.name.as_deref(), Some("proj"));
    assert!(matches!(
        f.engine.find(&out.env.id.to_string()),
        Err(EngineError::NotFound { .. })
    ));
}

#[test]
fn names_are_validated() {
    for good in ["dev", "a", "rust-1.80", "my_env.2"] {
        assert!(validate_name(good).is_ok(), "{good}");
    }
    let long = "a".repeat(65);
    let id_like = "a".repeat(64);
    for bad in [
        "",
        "-x",
        ".x",
        "a b",
        "a/b",
        "é",
        long.as_str(),
        id_like.as_str(),
    ] {
        assert!(validate_name(bad).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn exit_codes_follow_the_error_kind() {
    assert_eq!(
        EngineError::NotFound { query: "x".into() }.exit_code(),
        exit::USAGE
    );
    let store = EngineError::Store(crate::store::StoreError::MissingObject {
        digest: crate::types::Digest::of_bytes(b"x"),
    });
    assert_eq!(store.exit_code(), exit::INTEGRITY);
    let backend = EngineError::Backend(crate::runtime::backend::BackendError::Unavailable {
        backend: crate::types::BackendKind::Namespace,
        reason: "r".into(),
        fix: "f".into(),
    });
    assert_eq!(backend.exit_code(), exit::PREREQUISITE);
}

/// Cancels once the mock has installed its first package, as the TUI's cancel key does.
#[derive(Default)]
struct CancelAfterFirstPackage {
    seen: std::sync::atomic::AtomicBool,
}

impl crate::events::EventSink for CancelAfterFirstPackage {
    fn emit(&self, event: crate::events::Event) {
        if let crate::events::Event::Log { message, .. } = event {
            if message.starts_with("mock: installing") {
                self.seen.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }

    fn cancelled(&self) -> bool {
        self.seen.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[test]
fn a_cancelled_build_fails_as_cancelled_and_leaves_the_store_as_it_was() {
    let f = fixture();
    let kept = f.build(&f.manifest("kept", &["git"]));
    let manifest = f.manifest("proj", &["curl", "git", "vim"]);
    let engine = Engine::open(
        &f.dir.path().join("store"),
        ParseEnv {
            home: f.dir.path().join("home"),
        },
        Arc::new(CancelAfterFirstPackage::default()),
    )
    .expect("open engine");
    let err = engine
        .build(&BuildOptions {
            manifest: manifest.clone(),
            ..BuildOptions::default()
        })
        .expect_err("cancelled");
    assert!(
        matches!(err, EngineError::Cancelled { what: "build" }),
        "{err}"
    );
    assert!(err.to_string().contains("rolled back"), "{err}");
    // Only the earlier environment is there; the cancelled one left no directory behind.
    let (envs, broken) = f.engine.list().expect("list");
    assert!(broken.is_empty());
    let ids: Vec<String> = envs.iter().map(|e| e.id.to_string()).collect();
    assert_eq!(ids, [kept.env.id.to_string()]);
    let dirs = std::fs::read_dir(f.dir.path().join("store/envs"))
        .expect("ls envs")
        .count();
    assert_eq!(dirs, 1);
    // Nothing stops the same build from running to the end afterwards.
    assert!(f.build(&manifest).built);
}

//! The lifecycle through the CLI: lock pinning, exec, stop, freeze, archive, rename, rebuild,
//! destroy, gc and verify-store.

mod util;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Child;
use std::thread;
use std::time::{Duration, Instant};

use karapace_tui::lock::LockFile;
use serde_json::Value;
use util::{s, Fixture, TestCommand};

/// Package name → version, from a karapace.lock.
fn locked_versions(lock: &Path) -> BTreeMap<String, String> {
    let text = fs::read_to_string(lock).expect("read lock");
    let value: toml::Value = toml::from_str(&text).expect("lock is TOML");
    let packages = value.get("packages").and_then(|p| p.as_array());
    packages
        .map(|list| {
            list.iter()
                .map(|p| {
                    (
                        p["name"].as_str().expect("name").into(),
                        p["version"].as_str().expect("version").into(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn lock_id(lock: &Path) -> String {
    let value: toml::Value =
        toml::from_str(&fs::read_to_string(lock).expect("lock")).expect("toml");
    value["env_id"].as_str().expect("env_id").to_string()
}

/// Wait (at most 10 s) until `env`'s listed state is `state`.
fn wait_for_state(fx: &Fixture, name: &str, state: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if fx.row(name)["state"] == state {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} never became {state}: {:?}",
            fx.list()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// Wait (at most `secs`) for a background child; its exit code or a panic.
fn wait_child(child: &mut Child, secs: u64) -> Option<i32> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status.code();
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the background exec did not end within {secs} s");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn built(fx: &Fixture, dir: &str, packages: &[&str]) -> String {
    fx.write_manifest(dir, "rolling", packages);
    s(&fx.build(dir), "id")
}

#[test]
fn locked_needs_the_lock_and_refuses_drift() {
    let fx = Fixture::new();
    fx.write_manifest("proj", "rolling", &["git"]);
    let out = fx.run(&["build", "--locked", "proj"]);
    out.expect_code(2);
    assert!(out.stderr.contains("karapace.lock"), "{out:?}");
    assert!(fx.list().is_empty());
    fx.build("proj");
    let lock = fs::read(fx.path("proj/karapace.lock")).expect("lock");
    fx.run(&["build", "--locked", "proj"]).ok();
    fx.write_manifest("proj", "rolling", &["git", "vim"]);
    let out = fx.run(&["build", "--locked", "proj"]);
    out.expect_code(2);
    assert!(out.stderr.contains("+ package vim"), "{out:?}");
    assert!(fs::read(fx.path("proj/karapace.lock")).expect("lock") == lock);
    assert_eq!(fx.list().len(), 1);
}

#[test]
fn locked_reproduces_the_pinned_versions_under_a_new_epoch() {
    let fx = Fixture::new();
    fx.write_manifest("proj", "rolling", &["git", "curl"]);
    let lock_path = fx.path("proj/karapace.lock");
    let v1 = fx
        .cmd(["--json", "build", "proj"])
        .env("KARAPACE_MOCK_EPOCH", "1")
        .run();
    v1.ok();
    let id1 = s(&v1.json(), "id");
    let lock1 = fs::read(&lock_path).expect("lock");
    let pins = locked_versions(&lock_path);
    assert_eq!(pins.len(), 2);
    // A fresh store, the repository moved on: --locked builds exactly the lock.
    let store2 = fx.path("store2");
    let locked = TestCommand::new(&store2, &fx.home())
        .args(["--json", "build", "--locked"])
        .arg(fx.path("proj"))
        .env("KARAPACE_MOCK_EPOCH", "2")
        .run();
    locked.ok();
    assert_eq!(s(&locked.json(), "id"), id1);
    assert!(
        fs::read(&lock_path).expect("lock") == lock1,
        "--locked rewrote the lock"
    );
    let db = store2
        .join("envs")
        .join(&id1)
        .join("rootfs/var/lib/karapace-mock/packages");
    for (name, version) in &pins {
        let installed = fs::read_to_string(db.join(name)).expect("installed package");
        assert_eq!(installed, format!("{name} {version}\n"));
    }
    // --update re-resolves everything: new versions, new id.
    let up = fx
        .cmd(["--json", "build", "--update", "proj"])
        .env("KARAPACE_MOCK_EPOCH", "2")
        .run();
    up.ok();
    let id2 = s(&up.json(), "id");
    assert_ne!(id2, id1);
    assert_eq!(lock_id(&lock_path), id2);
    let updated = locked_versions(&lock_path);
    assert_eq!(updated.len(), 2);
    for (name, version) in &pins {
        assert_ne!(
            &updated[name], version,
            "{name} kept its old version under --update"
        );
    }
}

#[test]
fn adding_a_package_keeps_the_other_pins() {
    let fx = Fixture::new();
    fx.write_manifest("proj", "rolling", &["git", "curl"]);
    fx.cmd(["build", "proj"])
        .env("KARAPACE_MOCK_EPOCH", "1")
        .run()
        .ok();
    let pins = locked_versions(&fx.path("proj/karapace.lock"));
    // What the epoch-2 repository offers for vim, from an unrelated project.
    fx.write_manifest("fresh", "rolling", &["vim"]);
    fx.cmd(["build", "fresh"])
        .env("KARAPACE_MOCK_EPOCH", "2")
        .run()
        .ok();
    let vim2 = locked_versions(&fx.path("fresh/karapace.lock"))["vim"].clone();
    fx.write_manifest("proj", "rolling", &["git", "curl", "vim"]);
    let out = fx
        .cmd(["--json", "build", "proj"])
        .env("KARAPACE_MOCK_EPOCH", "2")
        .run();
    out.ok();
    let now = locked_versions(&fx.path("proj/karapace.lock"));
    assert_eq!(now["git"], pins["git"]);
    assert_eq!(now["curl"], pins["curl"]);
    assert_eq!(now["vim"], vim2);
    assert_eq!(
        lock_id(&fx.path("proj/karapace.lock")),
        s(&out.json(), "id")
    );
}

/// A lock written before dependencies were pinned (no `dependencies` key) still loads:
/// `--locked` builds it as it is, with a warning, and a plain build resolves again and records
/// them (the mock's packages have none: `dependencies = []`), keeping the listed pins.
#[test]
fn a_lock_without_dependencies_is_used_by_locked_and_completed_by_build() {
    let fx = Fixture::new();
    fx.write_manifest("proj", "rolling", &["git"]);
    let lock_path = fx.path("proj/karapace.lock");
    let id = s(&fx.build("proj"), "id");
    let current = fs::read_to_string(&lock_path).expect("lock");
    assert!(current.contains("dependencies = []"), "{current}");
    let pins = locked_versions(&lock_path);

    // The same lock as an older karapace-tui wrote it.
    let mut old = LockFile::read(&lock_path)
        .expect("read lock")
        .expect("a lock");
    old.dependencies = None;
    old.env_id = old.compute_identity();
    old.short_id = old.env_id.short().to_string();
    old.write(&lock_path).expect("write the old lock");
    let old_text = fs::read_to_string(&lock_path).expect("lock");
    assert!(!old_text.contains("dependencies"));

    let locked = fx.cmd(["--json", "build", "--locked", "proj"]).run();
    locked.ok();
    assert_eq!(s(&locked.json(), "id"), old.env_id.as_str());
    assert!(
        locked.stderr.contains("not their dependencies"),
        "{locked:?}"
    );
    assert_eq!(fs::read_to_string(&lock_path).expect("lock"), old_text);

    let plain = fx.cmd(["--json", "build", "proj"]).run();
    plain.ok();
    assert_eq!(
        s(&plain.json(), "id"),
        id,
        "the same inputs as the first build"
    );
    assert_eq!(fs::read_to_string(&lock_path).expect("lock"), current);
    assert_eq!(locked_versions(&lock_path), pins);
}

#[test]
fn exec_returns_the_programs_exit_code() {
    let fx = Fixture::new();
    built(&fx, "proj", &[]);
    fx.run(&["exec", "proj", "--", "true"]).ok();
    fx.run(&["exec", "proj", "--", "sh", "-c", "exit 7"])
        .expect_code(7);
    fx.run(&["exec", "proj", "--", "sh", "-c", "kill -TERM $$"])
        .expect_code(143);
    fx.run(&["exec", "proj", "--", "sh", "-c", "kill -KILL $$"])
        .expect_code(137);
    fx.run(&["exec", "nosuchenv", "--", "true"]).expect_code(2);
}

#[test]
fn exec_streams_stdout_and_stdin() {
    let fx = Fixture::new();
    built(&fx, "proj", &[]);
    let big = fx
        .cmd(["exec", "proj", "--", "head", "-c", "50000000", "/dev/zero"])
        .count_stdout()
        .run();
    big.ok();
    assert_eq!(big.stdout_len, 50_000_000);
    let input = "line one\nline two\n".repeat(1000);
    let cat = fx
        .cmd(["exec", "proj", "--", "cat"])
        .stdin(input.clone())
        .run();
    cat.ok();
    assert!(
        cat.stdout() == input,
        "stdin did not pass through: {} bytes",
        cat.stdout.len()
    );
}

#[test]
fn exec_runs_in_the_rootfs_with_a_clean_environment() {
    let fx = Fixture::new();
    let id = built(&fx, "proj", &[]);
    let pwd = fx.run(&["exec", "proj", "--", "pwd", "-P"]);
    pwd.ok();
    let rootfs = fx.rootfs(&id).canonicalize().expect("rootfs exists");
    assert_eq!(pwd.stdout().trim_end(), rootfs.to_string_lossy());
    let env = fx
        .cmd(["exec", "proj", "--", "env"])
        .env("AWS_SECRET_ACCESS_KEY", "hunter2-secret")
        .env("SSH_AUTH_SOCK", "/tmp/agent.sock")
        .run();
    env.ok();
    let text = env.stdout();
    assert!(text.contains("PATH="), "{env:?}");
    for leaked in [
        "AWS_SECRET_ACCESS_KEY",
        "SSH_AUTH_SOCK",
        "hunter2-secret",
        "KARAPACE_STORE",
    ] {
        assert!(
            !text.contains(leaked),
            "{leaked} leaked into the environment: {env:?}"
        );
    }
}

#[test]
fn exec_json_keeps_stdout_for_the_document() {
    let fx = Fixture::new();
    built(&fx, "proj", &[]);
    let out = fx.run(&[
        "--json",
        "exec",
        "proj",
        "--",
        "sh",
        "-c",
        "echo program-output; exit 3",
    ]);
    out.expect_code(3);
    let doc = out.json();
    assert_eq!(doc["env"], "proj");
    assert_eq!(doc["exit_code"], 3);
    assert!(!out.stdout().contains("program-output"), "{out:?}");
    assert!(out.stderr.contains("program-output"), "{out:?}");
}

#[test]
fn stop_ends_a_running_program_and_destroy_needs_force() {
    let fx = Fixture::new();
    built(&fx, "proj", &[]);
    let mut bg = fx
        .cmd(["exec", "proj", "--", "sleep", "30"])
        .spawn_background();
    wait_for_state(&fx, "proj", "running");
    // Other environments and commands are not blocked by the running program.
    built(&fx, "other", &["git"]);
    fx.run(&["exec", "other", "--", "true"]).ok();
    // No store-wide lock is held while the program runs: gc (exclusive) gets through.
    fx.cmd(["gc"]).timeout(Duration::from_secs(5)).run().ok();
    let out = fx.run(&["destroy", "proj"]);
    out.expect_code(1);
    assert!(out.stderr.contains("--force"), "{out:?}");
    fx.run(&["freeze", "proj"]).expect_code(1);
    fx.run(&["archive", "proj"]).expect_code(1);
    let started = Instant::now();
    let stop = fx.run(&["--json", "stop", "proj"]);
    stop.ok();
    assert_eq!(stop.json()["stopped_sessions"], 1);
    assert_eq!(wait_child(&mut bg, 5), Some(143));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(fx.row("proj")["state"], "built");
    // destroy --force stops the program first.
    let mut bg = fx
        .cmd(["exec", "proj", "--", "sleep", "30"])
        .spawn_background();
    wait_for_state(&fx, "proj", "running");
    fx.run(&["destroy", "--force", "proj"]).ok();
    assert!(wait_child(&mut bg, 5).is_some());
    assert!(fx.list().iter().all(|r| r["name"] != "proj"));
}

#[test]
fn list_does_not_block_and_hides_an_unfinished_build() {
    let fx = Fixture::new();
    fx.write_manifest("slow", "rolling", &["a1", "a2", "a3"]);
    let mut bg = fx
        .cmd(["build", "slow"])
        .env("KARAPACE_MOCK_DELAY_MS", "700")
        .spawn_background();
    let journal = fx.store().join("journal");
    let deadline = Instant::now() + Duration::from_secs(10);
    while util::dir_names(&journal).iter().all(|n| n.starts_with('.')) {
        assert!(Instant::now() < deadline, "the build never started");
        thread::sleep(Duration::from_millis(10));
    }
    let list = fx
        .cmd(["--json", "list"])
        .timeout(Duration::from_secs(2))
        .run();
    list.ok();
    assert_eq!(
        list.json(),
        Value::Array(vec![]),
        "an unfinished build is listed"
    );
    fx.cmd(["verify-store"])
        .timeout(Duration::from_secs(5))
        .run()
        .ok();
    assert_eq!(wait_child(&mut bg, 20), Some(0));
    assert_eq!(fx.row("slow")["state"], "built");
}

#[test]
fn freeze_blocks_changes_until_unfrozen() {
    let fx = Fixture::new();
    let id = built(&fx, "proj", &["git"]);
    let frozen = fx.json(&["freeze", "proj"]);
    assert_eq!(frozen["state"], "frozen");
    assert_eq!(fx.row("proj")["state"], "frozen");
    for args in [
        &["exec", "proj", "--", "true"][..],
        &["destroy", "proj"],
        &["rebuild", "proj"],
        &["archive", "proj"],
        &["freeze", "proj"],
    ] {
        fx.run(args).expect_code(1);
    }
    assert!(fx.rootfs(&id).is_dir());
    fx.run(&["unfreeze", "proj"]).ok();
    assert_eq!(fx.row("proj")["state"], "built");
    fx.run(&["unfreeze", "proj"]).expect_code(1);
    fx.run(&["exec", "proj", "--", "true"]).ok();
}

#[test]
fn archive_and_unarchive_restore_the_files() {
    let fx = Fixture::new();
    let id = built(&fx, "proj", &["git"]);
    fx.run(&[
        "exec",
        "proj",
        "--",
        "sh",
        "-c",
        "printf 'keep\\000me' > notes.bin; mkdir -p d/e; echo x > d/e/f",
    ])
    .ok();
    let notes = fs::read(fx.rootfs(&id).join("notes.bin")).expect("written via exec");
    assert_eq!(notes, b"keep\0me");
    let archived = fx.json(&["archive", "proj"]);
    assert_eq!(archived["state"], "archived");
    assert!(!fx.rootfs(&id).exists(), "archive left the tree");
    assert_eq!(fx.row("proj")["state"], "archived");
    fx.run(&["exec", "proj", "--", "true"]).expect_code(1);
    fx.run(&["archive", "proj"]).expect_code(1);
    fx.run(&["verify-store"]).ok();
    let restored = fx.json(&["unarchive", "proj"]);
    assert_eq!(restored["state"], "built");
    assert_eq!(
        fs::read(fx.rootfs(&id).join("notes.bin")).expect("restored"),
        notes
    );
    assert_eq!(
        fs::read_to_string(fx.rootfs(&id).join("d/e/f")).expect("restored"),
        "x\n"
    );
    fx.run(&["exec", "proj", "--", "true"]).ok();
    fx.run(&["unarchive", "proj"]).expect_code(1);
    fx.run(&["verify-store"]).ok();
}

#[test]
fn rename_refuses_a_taken_name() {
    let fx = Fixture::new();
    let a = built(&fx, "alpha", &["git"]);
    fx.write_manifest("beta", "ubuntu", &[]);
    fx.build("beta");
    fx.run(&["rename", "alpha", "beta"]).expect_code(1);
    assert_eq!(s(&fx.row("alpha"), "id"), a);
    fx.run(&["rename", "alpha", "-bad"]).expect_code(2);
    fx.run(&["rename", "alpha", "gamma"]).ok();
    assert_eq!(s(&fx.json(&["inspect", "gamma"]), "id"), a);
    fx.run(&["inspect", "alpha"]).expect_code(2);
}

#[test]
fn rebuild_with_an_unchanged_manifest_starts_clean() {
    let fx = Fixture::new();
    let id = built(&fx, "proj", &["git"]);
    fx.run(&["exec", "proj", "--", "sh", "-c", "echo junk > junk.txt"])
        .ok();
    assert!(fx.rootfs(&id).join("junk.txt").exists());
    let out = fx.run(&["--json", "rebuild", "proj"]);
    out.ok();
    let doc = out.json();
    assert_eq!(s(&doc, "id"), id);
    assert_eq!(doc["name"], "proj");
    assert!(
        !fx.rootfs(&id).join("junk.txt").exists(),
        "rebuild kept a file made inside"
    );
    assert_eq!(fx.list().len(), 1);
    fx.run(&["verify-store"]).ok();
}

// Regression: this used to hang forever when the old environment had a name (rebuild held
// the new environment's lock and set_name took it again), hence the short timeout.
#[test]
fn rebuild_after_a_manifest_change_moves_the_name() {
    let fx = Fixture::new();
    let old = built(&fx, "proj", &["git"]);
    fx.write_manifest("proj", "rolling", &["git", "vim"]);
    let out = fx
        .cmd(["--json", "rebuild", "proj"])
        .timeout(Duration::from_secs(5))
        .run();
    out.ok();
    let new = s(&out.json(), "id");
    assert_ne!(new, old);
    let rows = fx.list();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(s(&rows[0], "id"), new);
    assert_eq!(rows[0]["name"], "proj");
    assert!(!fx.env_dir(&old).exists());
    assert_eq!(lock_id(&fx.path("proj/karapace.lock")), new);
}

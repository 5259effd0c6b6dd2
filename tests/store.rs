//! Store maintenance through the CLI: gc, verify-store, damaged data and the format version.

mod util;

use std::fs;

use serde_json::Value;
use util::{dir_names, flip_byte, s, Fixture, TestCommand};

fn built(fx: &Fixture, dir: &str, packages: &[&str]) -> String {
    fx.write_manifest(dir, "rolling", packages);
    s(&fx.build(dir), "id")
}

/// The `problems` array of `--json verify-store`, which must exit 3.
fn problems(fx: &Fixture) -> Vec<Value> {
    let out = fx.run(&["--json", "verify-store"]);
    out.expect_code(3);
    out.json()["problems"]
        .as_array()
        .cloned()
        .expect("problems array")
}

#[test]
fn gc_removes_exactly_the_unreferenced_objects() {
    let fx = Fixture::new();
    let keep = built(&fx, "keep", &["git"]);
    let doomed = built(&fx, "doomed", &["git", "vim"]);
    let before = fx.objects();
    let live = fx.referenced_objects(&keep);
    let garbage: Vec<String> = before.difference(&live).cloned().collect();
    assert!(garbage.len() >= 3, "expected unshared objects: {garbage:?}");
    // The shared base layer must survive.
    assert!(fx.referenced_objects(&doomed).intersection(&live).count() > 0);
    fx.run(&["destroy", "doomed"]).ok();
    let object_items = |report: &Value| -> Vec<String> {
        report["items"]
            .as_array()
            .expect("items")
            .iter()
            .filter(|i| i["kind"] == "object")
            .map(|i| {
                let p = s(i, "path");
                p.rsplit('/').next().expect("name").to_string()
            })
            .collect()
    };
    let dry = fx.json(&["gc", "--dry-run"]);
    assert_eq!(dry["dry_run"], true);
    assert_eq!(object_items(&dry), garbage);
    assert_eq!(fx.objects(), before, "a dry run removed something");
    let real = fx.json(&["gc"]);
    assert_eq!(object_items(&real), garbage);
    assert_eq!(
        dry["items"], real["items"],
        "the dry run reported a different list"
    );
    assert_eq!(fx.objects(), live);
    fx.run(&["verify-store"]).ok();
    fx.run(&["exec", "keep", "--", "true"]).ok();
    assert!(object_items(&fx.json(&["gc"])).is_empty());
}

#[test]
fn verify_store_reports_a_damaged_object() {
    let fx = Fixture::new();
    let id = built(&fx, "proj", &["git"]);
    let ok = fx.json(&["verify-store"]);
    assert_eq!(ok["problems"], Value::Array(vec![]));
    let victim = s(&fx.meta(&id), "lock_object");
    flip_byte(&fx.store().join("objects").join(&victim), 40);
    let out = fx.run(&["--json", "verify-store"]);
    out.expect_code(3);
    let problems = out.json()["problems"].clone();
    let list = problems.as_array().expect("problems");
    assert_eq!(list.len(), 1, "{problems}");
    assert_eq!(list[0]["kind"], "corrupt_object");
    assert!(s(&list[0], "path").ends_with(&victim), "{problems}");
    let text = fx.run(&["verify-store"]);
    text.expect_code(3);
    assert!(text.stdout().contains(&victim), "{text:?}");
    // Using the damaged lock object is refused as an integrity error.
    fx.run(&["inspect", "proj"]).expect_code(3);
}

#[test]
fn a_corrupt_meta_is_listed_flagged_and_stops_gc() {
    let fx = Fixture::new();
    let good = built(&fx, "good", &["git"]);
    let bad = built(&fx, "bad", &["vim"]);
    built(&fx, "gone", &["curl"]);
    fx.run(&["destroy", "gone"]).ok(); // garbage for gc to want
    let meta = fx.env_dir(&bad).join("meta.json");
    let text = fs::read_to_string(&meta).expect("meta");
    fs::write(&meta, text.replace("\"bad\"", "\"bax\"")).expect("tamper");
    let out = fx.run(&["--json", "verify-store"]);
    out.expect_code(3);
    let problems = out.json()["problems"].clone();
    assert!(
        problems
            .as_array()
            .expect("array")
            .iter()
            .any(|p| p["kind"] == "corrupt_meta" && s(p, "path").contains(&bad)),
        "{problems}"
    );
    let rows = fx.list();
    assert_eq!(rows.len(), 2, "{rows:?}");
    let good_row = rows
        .iter()
        .find(|r| r["id"] == good.as_str())
        .expect("good listed");
    assert_eq!(good_row["state"], "built");
    let bad_row = rows
        .iter()
        .find(|r| r["id"] == bad.as_str())
        .expect("bad listed");
    assert!(!["built", "frozen", "archived"].contains(&bad_row["state"].as_str().unwrap_or("")));
    let text = fx.run(&["list"]);
    text.ok();
    assert!(text.stdout().contains(&bad[..12]), "{text:?}");
    let objects = fx.objects();
    let gc = fx.run(&["gc"]);
    assert_ne!(gc.code(), Some(0), "{gc:?}");
    assert!(gc.stderr.contains(&bad), "{gc:?}");
    assert_eq!(fx.objects(), objects, "gc deleted while a meta is corrupt");
    fx.run(&["exec", "good", "--", "true"]).ok();
}

#[test]
fn newer_store_format_exits_3_with_a_clear_message() {
    let fx = Fixture::new();
    fx.write_manifest("proj", "rolling", &["git"]);
    fx.build("proj");
    let version = fx.store().join("version");
    assert_eq!(
        fs::read_to_string(&version).expect("version file"),
        "karapace-tui store format 1\n"
    );
    fs::write(&version, "karapace-tui store format 2\n").expect("write version");
    let objects = fx.objects();
    for args in [
        &["list"][..],
        &["inspect", "proj"],
        &["build", "proj"],
        &["verify-store"],
        &["gc"],
        &["destroy", "proj"],
    ] {
        let out = fx.run(args);
        assert!(out.stderr.contains("format 2"), "{out:?}");
        out.expect_code(3);
    }
    assert_eq!(fx.objects(), objects, "a refused store was modified");
}

#[test]
fn verify_store_lists_every_problem() {
    let fx = Fixture::new();
    let a = built(&fx, "alpha", &["git"]);
    fx.write_manifest("beta", "ubuntu", &["vim"]);
    let b = s(&fx.build("beta"), "id");
    let a_layer = fx.meta(&a)["layers"][1]
        .as_str()
        .expect("a package layer")
        .to_string();
    let b_manifest = s(&fx.meta(&b), "manifest_object");
    let objects = fx.store().join("objects");
    flip_byte(&objects.join(&a_layer), 0);
    fs::remove_file(objects.join(&b_manifest)).expect("remove object");
    fs::write(objects.join("not-an-object"), "x").expect("write stray file");
    let found = problems(&fx);
    let kinds: Vec<(String, String)> = found.iter().map(|p| (s(p, "kind"), s(p, "path"))).collect();
    assert_eq!(found.len(), 3, "{kinds:?}");
    assert!(kinds
        .iter()
        .any(|(k, p)| k == "corrupt_object" && p.ends_with(&a_layer)));
    assert!(kinds
        .iter()
        .any(|(k, p)| k == "missing_object" && p.contains(&b)));
    assert!(kinds
        .iter()
        .any(|(k, p)| k == "unknown_file" && p.ends_with("not-an-object")));
    let detail = found
        .iter()
        .find(|p| p["kind"] == "missing_object")
        .map(|p| s(p, "detail"))
        .expect("missing_object");
    assert!(detail.contains(&b_manifest), "{detail}");
}

#[test]
fn error_messages_suggest_commands_that_exist() {
    let fx = Fixture::new();
    let good = built(&fx, "good", &["git"]);
    let bad = built(&fx, "bad", &["vim"]);
    let meta = fx.env_dir(&bad).join("meta.json");
    let text = fs::read_to_string(&meta).expect("meta");
    fs::write(&meta, text.replace("\"bad\"", "\"bax\"")).expect("tamper");
    let lock = s(&fx.meta(&good), "lock_object");
    flip_byte(&fx.store().join("objects").join(&lock), 30);
    for args in [
        &["list"][..],
        &["gc"],
        &["inspect", "good"],
        &["verify-store"],
    ] {
        let out = fx.run(args);
        let all = format!("{}{}", out.stdout(), out.stderr);
        assert!(!all.contains("`karapace-tui verify`"), "{out:?}");
        assert!(!all.contains("`karapace-tui verify "), "{out:?}");
    }
    let fx = Fixture::new();
    built(&fx, "proj", &[]);
    let mut bg = fx
        .cmd(["exec", "proj", "--", "sleep", "30"])
        .spawn_background();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while fx.row("proj")["state"] != "running" {
        assert!(std::time::Instant::now() < deadline, "never running");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = fx.run(&["destroy", "proj"]);
    fx.run(&["stop", "proj"]).ok();
    let _ = bg.wait();
    out.expect_code(1);
    let hint = out
        .stderr
        .split("`karapace-tui stop ")
        .nth(1)
        .and_then(|rest| rest.split('`').next())
        .expect("a stop hint");
    let words: Vec<&str> = hint.split_whitespace().collect();
    assert_eq!(words.len(), 1, "not a single ENV argument: {hint:?}");
    fx.run(&["inspect", words[0]]).ok();
}

#[test]
fn store_is_taken_from_the_environment_and_the_flag() {
    let fx = Fixture::new();
    fx.write_manifest("proj", "rolling", &["git"]);
    let other = fx.path("other-store");
    let out = fx
        .cmd(["--json", "--store"])
        .arg(&other)
        .arg("build")
        .arg(fx.path("proj"))
        .run();
    out.ok();
    assert!(dir_names(&fx.store().join("envs")).is_empty());
    assert_eq!(dir_names(&other.join("envs")).len(), 1);
    // KARAPACE_STORE alone, with no HOME-derived default in the way.
    let list = TestCommand::new(&other, &fx.home())
        .args(["--json", "list"])
        .run();
    list.ok();
    assert_eq!(list.json().as_array().map(Vec::len), Some(1));
}

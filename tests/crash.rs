//! Crash consistency through the real binary: each mutating command is killed with SIGKILL at
//! its 1st, 2nd, 3rd … crash point (`KARAPACE_CRASH_AT`, src/crashpoint.rs) on an identically
//! prepared store, until it runs to the end. After every crash: nothing half-built is listed,
//! `verify-store` is clean, the store shows the old state or the new one, and running the
//! command again gives exactly what an uncrashed run gives.

mod util;

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fmt::Debug;
use std::fs;
use std::time::Duration;

use serde_json::Value;
use util::{copy_tree, os, remove_tree, s, Fixture};

/// (id, name, state) of every listed environment.
type Envs = BTreeSet<(String, Option<String>, String)>;

const MAX_POINTS: usize = 200;

fn envs_of(rows: &[Value]) -> Envs {
    rows.iter()
        .map(|r| {
            (
                s(r, "id"),
                r["name"].as_str().map(str::to_string),
                s(r, "state"),
            )
        })
        .collect()
}

/// One crash scenario: the prepared directories (under the fixture root) and the command.
struct Scenario<'a> {
    fx: &'a Fixture,
    /// Directories that make up the prepared state; snapshotted once, restored per run.
    dirs: &'a [&'a str],
    args: Vec<OsString>,
    /// Whether running the command again is expected to succeed when the crashed run had
    /// already reached the new state (false for destroy, archive, unarchive).
    rerun_when_done: bool,
    /// States allowed after a crash besides the old and the new one.
    also_allowed: Vec<Envs>,
    timeout: Duration,
}

impl Scenario<'_> {
    fn save(&self) {
        remove_tree(&self.fx.path("snapshot"));
        for dir in self.dirs {
            let from = self.fx.path(dir);
            if from.exists() {
                copy_tree(&from, &self.fx.path(&format!("snapshot/{dir}")));
            }
        }
    }

    fn restore(&self) {
        for dir in self.dirs {
            let to = self.fx.path(dir);
            remove_tree(&to);
            let from = self.fx.path(&format!("snapshot/{dir}"));
            if from.exists() {
                copy_tree(&from, &to);
            }
        }
    }

    fn run(&self, crash_at: Option<usize>) -> util::Output {
        let mut cmd = self.fx.cmd(&self.args).timeout(self.timeout);
        if let Some(n) = crash_at {
            cmd = cmd
                .env("KARAPACE_CRASH_AT", n.to_string())
                .env("KARAPACE_CRASH_TRACE", "1");
        }
        cmd.run()
    }

    /// Every listed environment is complete: a final state, `inspect` works, and a built one
    /// runs `true`. Returns the listed set.
    fn check_listed(&self, when: &str) -> Envs {
        let out = self.fx.cmd(["--json", "list"]).timeout(self.timeout).run();
        assert_eq!(out.code(), Some(0), "{when}: list failed: {out:?}");
        let rows = out.json().as_array().cloned().expect("list is an array");
        for row in &rows {
            let id = s(row, "id");
            let state = s(row, "state");
            assert!(
                ["built", "frozen", "archived"].contains(&state.as_str()),
                "{when}: a half-made environment is listed: {row}"
            );
            let inspect = self.fx.cmd(["inspect", &id]).timeout(self.timeout).run();
            assert_eq!(inspect.code(), Some(0), "{when}: {inspect:?}");
            if state == "built" {
                let exec = self
                    .fx
                    .cmd(["exec", &id, "--", "true"])
                    .timeout(self.timeout)
                    .run();
                assert_eq!(exec.code(), Some(0), "{when}: {exec:?}");
            }
        }
        envs_of(&rows)
    }

    /// Run the whole scenario; returns the number of crash points exercised.
    /// `observe` captures what must be identical to an uncrashed run at the end;
    /// `after_crash` checks scenario-specific invariants once the store has recovered.
    fn exercise<T: PartialEq + Debug>(
        &self,
        observe: impl Fn(&Fixture) -> T,
        after_crash: impl Fn(&Fixture, &Envs, &str),
    ) -> usize {
        self.save();
        self.restore();
        let old = envs_of(&self.fx.list());
        self.restore();
        let reference = self.run(None);
        assert_eq!(reference.code(), Some(0), "uncrashed run: {reference:?}");
        let new = envs_of(&self.fx.list());
        let expected = observe(self.fx);
        let mut allowed = vec![old.clone(), new.clone()];
        allowed.extend(self.also_allowed.iter().cloned());
        for n in 1..=MAX_POINTS {
            // Points 1 … n-1 all crashed.
            let crashes = n - 1;
            self.restore();
            let out = self.run(Some(n));
            if !out.killed() {
                assert_eq!(
                    out.code(),
                    Some(0),
                    "run with KARAPACE_CRASH_AT={n}: {out:?}"
                );
                assert_eq!(
                    observe(self.fx),
                    expected,
                    "after the run that did not crash"
                );
                assert!(crashes >= 3, "only {crashes} crash point(s) were exercised");
                return crashes;
            }
            let point = out
                .stderr
                .lines()
                .find(|l| l.contains("killing the process"))
                .unwrap_or("(no crash point line)")
                .to_string();
            let when = format!("after crash at {point}");
            self.check_listed(&format!("{when}, before recovery"));
            let verify = self
                .fx
                .cmd(["--json", "verify-store"])
                .timeout(self.timeout)
                .run();
            assert_eq!(verify.code(), Some(0), "{when}: verify-store: {verify:?}");
            assert_eq!(verify.json()["problems"], Value::Array(vec![]), "{when}");
            let envs = self.check_listed(&format!("{when}, after verify-store"));
            assert!(
                allowed.contains(&envs),
                "{when}: neither the old nor the new state:\n got {envs:?}\n old {old:?}\n new {new:?}"
            );
            after_crash(self.fx, &envs, &when);
            if envs != new || self.rerun_when_done {
                let again = self.run(None);
                assert_eq!(again.code(), Some(0), "{when}: running it again: {again:?}");
            }
            assert_eq!(observe(self.fx), expected, "{when}: after running it again");
            let verify = self.fx.cmd(["verify-store"]).timeout(self.timeout).run();
            assert_eq!(
                verify.code(),
                Some(0),
                "{when}: final verify-store: {verify:?}"
            );
        }
        panic!("the command still crashed at point {MAX_POINTS}");
    }
}

fn scenario<'a>(fx: &'a Fixture, dirs: &'a [&'a str], args: &[&str]) -> Scenario<'a> {
    Scenario {
        fx,
        dirs,
        args: args.iter().map(os).collect(),
        rerun_when_done: true,
        also_allowed: Vec::new(),
        timeout: Duration::from_secs(20),
    }
}

/// Write `precious.bin` into the environment through `exec`.
fn write_precious(fx: &Fixture, env: &str) {
    fx.run(&[
        "exec",
        env,
        "--",
        "sh",
        "-c",
        "printf 'precious\\001' > precious.bin",
    ])
    .ok();
}

fn precious_of(fx: &Fixture, id: &str) -> Option<Vec<u8>> {
    fs::read(fx.rootfs(id).join("precious.bin")).ok()
}

fn lock_text(fx: &Fixture, dir: &str) -> Option<String> {
    fs::read_to_string(fx.path(&format!("{dir}/karapace.lock"))).ok()
}

#[test]
fn crash_during_first_build() {
    let fx = Fixture::new();
    fx.write_manifest("proj", "rolling", &["git", "curl"]);
    let sc = scenario(&fx, &["store", "proj"], &["build", "proj"]);
    let crashes = sc.exercise(
        |fx| (envs_of(&fx.list()), lock_text(fx, "proj")),
        |fx, envs, when| {
            for (id, name, _) in envs {
                assert_eq!(name.as_deref(), Some("proj"), "{when}");
                assert!(fx.rootfs(id).join("etc/os-release").is_file(), "{when}");
            }
        },
    );
    assert!(crashes >= 10, "{crashes}");
}

#[test]
fn crash_during_rebuild_with_an_unchanged_manifest() {
    let fx = Fixture::new();
    fx.write_manifest("proj", "rolling", &["git"]);
    let id = s(&fx.build("proj"), "id");
    fx.run(&["exec", "proj", "--", "sh", "-c", "echo junk > junk.txt"])
        .ok();
    let sc = scenario(&fx, &["store", "proj"], &["rebuild", "proj"]);
    sc.exercise(
        |fx| {
            (
                envs_of(&fx.list()),
                fx.rootfs(&id).join("junk.txt").exists(),
            )
        },
        |fx, envs, when| {
            assert_eq!(envs.len(), 1, "{when}");
            assert!(fx.rootfs(&id).join("etc/os-release").is_file(), "{when}");
        },
    );
    assert!(!fx.rootfs(&id).join("junk.txt").exists());
}

/// A rebuild after adding a package; `dir` decides whether the environment has a name.
/// `strict`: running the command again must end exactly like an uncrashed run (old
/// environment gone, name moved); otherwise only the new environment and lock are required.
fn rebuild_changed(dir: &str, timeout: Duration, strict: bool) {
    let fx = Fixture::new();
    fx.write_manifest(dir, "rolling", &["git"]);
    let old = s(&fx.build(dir), "id");
    fx.write_manifest(dir, "rolling", &["git", "vim"]);
    let dirs = ["store", dir];
    let mut sc = scenario(&fx, &dirs, &["rebuild", dir]);
    sc.timeout = timeout;
    // Between installing the new environment and removing the old one, both exist, complete
    // (the new one not yet named). Find the new id with a plain build, then forget it.
    sc.save();
    let old_envs = envs_of(&fx.list());
    let probe = fx.cmd(["--json", "build", dir]).timeout(timeout).run();
    probe.ok();
    let new_id = s(&probe.json(), "id");
    sc.restore();
    let mut both = old_envs.clone();
    both.insert((new_id.clone(), None, "built".to_string()));
    sc.also_allowed.push(both);
    let crashes = sc.exercise(
        |fx| {
            let envs = envs_of(&fx.list());
            let lock = lock_text(fx, dir);
            if strict {
                (envs, lock)
            } else {
                let new: Envs = envs.into_iter().filter(|e| e.0 == new_id).collect();
                (new, lock)
            }
        },
        |_, _, _| {},
    );
    assert!(crashes >= 10, "{crashes}");
    assert!(fx.list().iter().any(|r| r["id"] == new_id.as_str()));
    if strict {
        assert_eq!(fx.list().len(), 1);
        assert!(!fx.env_dir(&old).exists());
    }
}

#[test]
fn crash_during_rebuild_with_a_changed_manifest() {
    // `_proj` is not a valid name, so the environment is unnamed.
    rebuild_changed("_proj", Duration::from_secs(20), false);
}

#[test]
fn crash_during_rebuild_with_a_changed_manifest_moves_the_name() {
    rebuild_changed("proj", Duration::from_secs(5), true);
}

#[test]
fn crash_during_destroy() {
    let fx = Fixture::new();
    fx.write_manifest("proj", "rolling", &["git"]);
    fx.write_manifest("bystander", "ubuntu", &["vim"]);
    let id = s(&fx.build("proj"), "id");
    fx.build("bystander");
    write_precious(&fx, "proj");
    let mut sc = scenario(&fx, &["store", "proj", "bystander"], &["destroy", "proj"]);
    sc.rerun_when_done = false;
    sc.exercise(
        |fx| envs_of(&fx.list()),
        |fx, envs, when| {
            if envs.iter().any(|e| e.0 == id) {
                assert_eq!(
                    precious_of(fx, &id).as_deref(),
                    Some(&b"precious\x01"[..]),
                    "{when}"
                );
            } else {
                assert!(!fx.env_dir(&id).exists(), "{when}");
            }
        },
    );
    assert_eq!(fx.list().len(), 1);
}

#[test]
fn crash_during_archive() {
    let fx = Fixture::new();
    fx.write_manifest("proj", "rolling", &["git"]);
    let id = s(&fx.build("proj"), "id");
    write_precious(&fx, "proj");
    let mut sc = scenario(&fx, &["store", "proj"], &["archive", "proj"]);
    sc.rerun_when_done = false;
    sc.exercise(
        |fx| envs_of(&fx.list()),
        |fx, envs, when| {
            let state = envs.iter().next().map(|e| e.2.clone());
            match state.as_deref() {
                Some("built") => assert!(precious_of(fx, &id).is_some(), "{when}"),
                Some("archived") => assert!(!fx.rootfs(&id).exists(), "{when}"),
                other => panic!("{when}: state {other:?}"),
            }
        },
    );
    // The archive made by the last run restores the files.
    fx.run(&["unarchive", "proj"]).ok();
    assert_eq!(precious_of(&fx, &id).as_deref(), Some(&b"precious\x01"[..]));
}

#[test]
fn crash_during_unarchive() {
    let fx = Fixture::new();
    fx.write_manifest("proj", "rolling", &["git"]);
    let id = s(&fx.build("proj"), "id");
    write_precious(&fx, "proj");
    fx.run(&["archive", "proj"]).ok();
    let mut sc = scenario(&fx, &["store", "proj"], &["unarchive", "proj"]);
    sc.rerun_when_done = false;
    sc.exercise(
        |fx| (envs_of(&fx.list()), precious_of(fx, &id)),
        |fx, envs, when| {
            let state = envs.iter().next().map(|e| e.2.clone());
            match state.as_deref() {
                Some("built") => assert_eq!(
                    precious_of(fx, &id).as_deref(),
                    Some(&b"precious\x01"[..]),
                    "{when}"
                ),
                Some("archived") => assert!(!fx.rootfs(&id).exists(), "{when}"),
                other => panic!("{when}: state {other:?}"),
            }
        },
    );
}

#[test]
fn crash_during_gc() {
    let fx = Fixture::new();
    fx.write_manifest("keep", "rolling", &["git"]);
    fx.write_manifest("doomed", "ubuntu", &["vim", "curl"]);
    let keep = s(&fx.build("keep"), "id");
    fx.build("doomed");
    fx.run(&["destroy", "doomed"]).ok();
    let before = fx.objects();
    let live = fx.referenced_objects(&keep);
    assert!(before.difference(&live).count() >= 3);
    let sc = scenario(&fx, &["store", "keep", "doomed"], &["gc"]);
    let crashes = sc.exercise(
        |fx| (envs_of(&fx.list()), fx.objects()),
        |fx, _, when| {
            let now = fx.objects();
            assert!(now.is_subset(&before), "{when}: objects appeared");
            assert!(live.is_subset(&now), "{when}: a live object was removed");
        },
    );
    assert!(crashes >= 3);
    assert_eq!(fx.objects(), live);
}

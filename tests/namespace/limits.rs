//! `[runtime.resource_limits]` through the CLI, as root and as `karapace-test`: `open_files`
//! is what `ulimit -n` says inside; where `doctor` finds the cgroups for them (a delegated
//! cgroup v2; as root, also the cgroup v1 hierarchies of a hybrid host such as this
//! repository's CI machine), a program touching 200 MB under `memory_limit_mb = 32` is killed
//! and the session says why, a fork loop under `pids_limit = 20` fails, `cpu.weight` (v2) or
//! `cpu.shares` (v1) holds `cpu_shares`, and the cgroups are gone once the environment stops.
//! Where there are none (rootless on hybrid cgroups), each of those limits must be named in a
//! warning instead, and rootless `pids_limit` falls back to `RLIMIT_NPROC`, which the fork loop
//! must still hit. As root under `KARAPACE_REQUIRE_SANDBOX=1` (and for anyone under
//! `KARAPACE_REQUIRE_CGROUPS=1`) the cgroups must be there. Without limits, no cgroup is made
//! in any hierarchy.

use std::fs;
use std::path::PathBuf;

use karapace_tui::sandbox::limits::cpu_weight;
use serde_json::Value;

use super::sessions::{built_with, wait_until, Cli, Run};
use super::util::visible;

const USER: &str = "karapace-test";
const LIMITS: &str = "[runtime.resource_limits]\nmemory_limit_mb = 32\ncpu_shares = 512\n\
                      pids_limit = 20\nopen_files = 64\n";
/// Forks 40 sleepers in the background; `Cannot fork` (dash) once the limit is reached.
const FORK_LOOP: &str = "i=0; while [ $i -lt 40 ]; do sleep 5 & i=$((i+1)); done; echo forked $i";

/// `doctor`'s cgroup check for this user: (status, meaning).
fn cgroup_check(cli: &Cli) -> (String, String) {
    let out = cli.run(&["--json", "doctor"]);
    let report: Value = serde_json::from_str(&out.stdout).expect("doctor --json");
    let check = report["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["id"] == "namespace.cgroup"))
        .cloned()
        .unwrap_or_default();
    (
        check["status"].as_str().unwrap_or_default().to_string(),
        check["meaning"].as_str().unwrap_or_default().to_string(),
    )
}

fn env_dir(cli: &Cli, id: &str) -> PathBuf {
    cli.store().join("envs").join(id)
}

#[track_caller]
fn says(run: &Run, text: &str) {
    assert!(run.stderr.contains(text), "expected {text:?} in: {run:?}");
}

fn limits_bind_programs(test: &str, user: Option<&'static str>) {
    let Some((cli, id)) = built_with(test, user, LIMITS) else {
        return;
    };
    let files = cli.sh("ulimit -n");
    files.expect_code(0);
    assert_eq!(files.stdout.trim(), "64", "{files:?}");

    let (status, meaning) = cgroup_check(&cli);
    if status == "pass" {
        with_a_cgroup(&cli, &id);
    } else {
        let root = user.is_none();
        let required = std::env::var("KARAPACE_REQUIRE_CGROUPS").as_deref() == Ok("1")
            || (root && std::env::var("KARAPACE_REQUIRE_SANDBOX").as_deref() == Ok("1"));
        assert!(!required, "the cgroup limits are required but: {meaning}");
        without_a_cgroup(&cli, &id, root);
        // What was checked, not a skip: the host cannot enforce them for this user, and every
        // run said so.
        visible(&format!(
            "namespace::{test}: checked that memory_limit_mb, cpu_shares and pids_limit are \
             each warned about as not enforced here ({meaning})"
        ));
    }
}

/// The host delegates memory, cpu and pids: they are enforced.
fn with_a_cgroup(cli: &Cli, id: &str) {
    // GNU tail keeps every byte of a line it has not seen the end of: 200 MB here.
    let oom = cli.sh("head -c 200000000 /dev/zero | tail > /dev/null");
    assert_eq!(oom.code, Some(128 + 9), "killed by SIGKILL: {oom:?}");
    says(
        &oom,
        "the environment reached its memory limit (memory_limit_mb = 32)",
    );

    let forks = cli.sh(FORK_LOOP);
    says(&forks, "Cannot fork");
    assert_ne!(forks.code, Some(0), "{forks:?}");

    let mut running = cli.spawn(&["exec", "deb", "--", "sleep", "60"]);
    let record = env_dir(cli, id).join("cgroup");
    let mut dirs: Vec<PathBuf> = Vec::new();
    wait_until("the environment's cgroups", || {
        dirs = fs::read_to_string(&record)
            .unwrap_or_default()
            .lines()
            .map(PathBuf::from)
            .collect();
        !dirs.is_empty() && dirs.iter().all(|d| d.join("cgroup.procs").exists())
    });
    // Each limit in whichever of the cgroups (v2, or a v1 hierarchy's) has its file.
    let read = |names: &[&str]| -> (String, String) {
        for dir in &dirs {
            for name in names {
                let path = dir.join(name);
                if let Ok(text) = fs::read_to_string(&path) {
                    return (name.to_string(), text.trim().to_string());
                }
            }
        }
        panic!("none of {names:?} in {dirs:?}")
    };
    let cpu = read(&["cpu.weight", "cpu.shares"]);
    let expected_cpu = match cpu.0.as_str() {
        "cpu.weight" => cpu_weight(512).to_string(),
        _ => "512".to_string(),
    };
    assert_eq!(cpu.1, expected_cpu, "{}", cpu.0);
    let memory = read(&["memory.max", "memory.limit_in_bytes"]);
    assert_eq!(memory.1, (32u64 << 20).to_string(), "{}", memory.0);
    let swap = read(&[
        "memory.swap.max",
        "memory.memsw.limit_in_bytes",
        "memory.max",
        "memory.limit_in_bytes",
    ]);
    match swap.0.as_str() {
        "memory.swap.max" => assert_eq!(swap.1, "0"),
        "memory.memsw.limit_in_bytes" => assert_eq!(swap.1, (32u64 << 20).to_string()),
        // Without swap accounting the session warned (unit-tested in sandbox::limits).
        _ => visible("no swap accounting here: the swap limit is not checked"),
    }
    assert_eq!(read(&["pids.max"]).1, "20");
    // The session's processes are inside every one of them.
    for dir in &dirs {
        let procs = fs::read_to_string(dir.join("cgroup.procs")).expect("cgroup.procs");
        assert!(!procs.trim().is_empty(), "{} is empty", dir.display());
    }
    cli.run(&["stop", "deb"]).expect_code(0);
    running.wait().expect("wait for the stopped session");
    for dir in &dirs {
        assert!(!dir.exists(), "{} is left after stop", dir.display());
    }
}

/// No delegated cgroup: every cgroup limit is named in a warning; rootless, pids_limit is
/// RLIMIT_NPROC.
fn without_a_cgroup(cli: &Cli, id: &str, root: bool) {
    let run = cli.sh("true");
    run.expect_code(0);
    says(&run, "memory_limit_mb = 32 is NOT enforced");
    says(&run, "cpu_shares = 512 is NOT enforced");
    let forks = cli.sh(FORK_LOOP);
    if root {
        says(&forks, "pids_limit = 20 is NOT enforced");
        says(&forks, "RLIMIT_NPROC does not bind root");
        forks.expect_code(0);
    } else {
        says(&forks, "pids_limit = 20 is only approximated");
        says(&forks, "Cannot fork");
        assert_ne!(forks.code, Some(0), "{forks:?}");
    }
    assert!(
        !env_dir(cli, id).join("cgroup").exists(),
        "no cgroup is recorded where none can be made"
    );
}

#[test]
fn limits_bind_programs_as_root() {
    limits_bind_programs("limits_bind_programs_as_root", None);
}

#[test]
fn limits_bind_programs_unprivileged() {
    limits_bind_programs("limits_bind_programs_unprivileged", Some(USER));
}

#[test]
fn without_limits_no_cgroup_is_made() {
    let Some((cli, id)) = built_with("without_limits_no_cgroup_is_made", None, "") else {
        return;
    };
    let run = cli.sh("ulimit -n");
    run.expect_code(0);
    assert!(!run.stderr.contains("resource limit"), "{run:?}");
    assert!(!env_dir(&cli, &id).join("cgroup").exists());
    let ours = format!("karapace-{}", &id[..12]);
    // In any hierarchy: the v2 one at /sys/fs/cgroup or /sys/fs/cgroup/unified, and each v1
    // one (/sys/fs/cgroup/memory, …).
    let mut parents = vec![PathBuf::from("/sys/fs/cgroup")];
    if let Ok(entries) = fs::read_dir("/sys/fs/cgroup") {
        parents.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
    }
    for parent in parents {
        let dir = parent.join(&ours);
        assert!(!dir.exists(), "{} exists", dir.display());
    }
}

//! The environment's cgroup and the rlimits, for real (`sandbox::limits`): a plan with a
//! cgroup runs its program inside it, a joined session lands in the same one, and the cgroup
//! is removed when the last of them has ended; the rlimits bind the program.
//!
//! The cgroup part needs a cgroup v2 hierarchy this process may write: as root, the host's
//! (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on a hybrid host). The plan asks for no
//! limit there, because a hybrid host has no controller on cgroup v2 (the limits themselves
//! are tested through the CLI in tests/namespace/limits.rs where the host delegates them);
//! what is tested is the placement: create, move in before the namespaces, inherit, join,
//! leave, remove. Without such a hierarchy (rootless here) it prints `SKIPPED:`, or fails
//! under `KARAPACE_REQUIRE_CGROUPS=1`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use karapace_tui::sandbox::limits::{CgroupLimits, Rlimit, RlimitResource};
use karapace_tui::sandbox::{self, SandboxStdio};

use super::{helper, ready, text, visible, wait_output, Scratch};

/// A cgroup v2 hierarchy this process may create cgroups in and move itself around.
fn writable_hierarchy(test: &str) -> Option<PathBuf> {
    use nix::sys::statfs::{statfs, CGROUP2_SUPER_MAGIC};
    let found = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| statfs(p).is_ok_and(|s| s.filesystem_type() == CGROUP2_SUPER_MAGIC));
    let why = match &found {
        None => "no cgroup v2 hierarchy is mounted".to_string(),
        Some(_) if !nix::unistd::geteuid().is_root() => {
            "not root: the host's cgroup v2 hierarchy is not ours to write (the CLI tests \
             cover delegated cgroups)"
                .to_string()
        }
        Some(dir) => return Some(dir.clone()),
    };
    let required = std::env::var("KARAPACE_REQUIRE_CGROUPS").as_deref() == Ok("1");
    assert!(!required, "{test}: KARAPACE_REQUIRE_CGROUPS=1 but {why}");
    visible(&format!("SKIPPED: {test}: {why}"));
    None
}

fn cgroup_in(hierarchy: &Path, name: &str) -> CgroupLimits {
    CgroupLimits {
        hierarchy: hierarchy.display().to_string(),
        dir: hierarchy
            .join(format!("karapace-test-{name}-{}", std::process::id()))
            .display()
            .to_string(),
        enable: Vec::new(),
        memory_max: None,
        cpu_weight: None,
        pids_max: None,
    }
}

/// The `0::` line of `/proc/self/cgroup` as the program printed it.
fn v2_line(out: &str) -> String {
    out.lines()
        .find(|l| l.starts_with("0::"))
        .unwrap_or_default()
        .to_string()
}

#[test]
fn the_program_runs_in_the_plans_cgroup_which_is_removed_after() {
    let test = "the_program_runs_in_the_plans_cgroup";
    if !ready(test) {
        return;
    }
    let Some(hierarchy) = writable_hierarchy(test) else {
        return;
    };
    let cgroup = cgroup_in(&hierarchy, "cold");
    let dir = PathBuf::from(&cgroup.dir);
    let scratch = Scratch::new();
    let mut plan = scratch.spec(&["cat", "/proc/self/cgroup"]).plan();
    plan.limits.cgroup = Some(Box::new(cgroup));
    let out =
        wait_output(sandbox::spawn(&plan, &helper(), scratch.dir.path(), piped()).expect("spawn"));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let name = dir.file_name().expect("name").to_string_lossy();
    assert_eq!(v2_line(&text(&out.stdout)), format!("0::/{name}"));
    assert!(
        !dir.exists(),
        "{} is left behind: {}",
        dir.display(),
        text(&out.stderr)
    );
}

fn piped() -> SandboxStdio {
    SandboxStdio {
        stdin: Stdio::null(),
        stdout: Stdio::piped(),
        stderr: Stdio::piped(),
    }
}

#[test]
fn a_joined_session_lands_in_the_same_cgroup_and_the_last_one_out_removes_it() {
    let test = "a_joined_session_lands_in_the_same_cgroup";
    if !ready(test) {
        return;
    }
    let Some(hierarchy) = writable_hierarchy(test) else {
        return;
    };
    let cgroup = cgroup_in(&hierarchy, "joined");
    let dir = PathBuf::from(&cgroup.dir);
    let scratch = Scratch::new();
    let record = scratch.path("init");
    // The first session prints its cgroup, then waits until the second one has run (it
    // makes a file in the /tmp they share).
    let first_script = "cat /proc/self/cgroup; \
                        while [ ! -e /tmp/second-ran ]; do sleep 0.05; done";
    let mut first_plan = scratch.spec(&["sh", "-c", first_script]).plan();
    first_plan.limits.cgroup = Some(Box::new(cgroup.clone()));
    let mut first =
        sandbox::spawn_session(&first_plan, &record, &helper(), scratch.dir.path(), piped())
            .expect("spawn the first session");
    let stdout = first.child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let first_line = loop {
        let line = lines.next().expect("a line").expect("read");
        if line.starts_with("0::") {
            break line;
        }
    };
    let name = dir.file_name().expect("name").to_string_lossy();
    assert_eq!(first_line, format!("0::/{name}"));

    let second_script = "cat /proc/self/cgroup; touch /tmp/second-ran";
    let mut second_plan = scratch.spec(&["sh", "-c", second_script]).plan();
    second_plan.limits.cgroup = Some(Box::new(cgroup));
    let second = sandbox::spawn_session(
        &second_plan,
        &record,
        &helper(),
        scratch.dir.path(),
        piped(),
    )
    .expect("spawn the second session");
    let out = wait_output(second.child);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(v2_line(&text(&out.stdout)), format!("0::/{name}"), "joined");
    let status = first.child.wait().expect("wait for the first session");
    assert_eq!(status.code(), Some(0));
    assert!(!dir.exists(), "{} is left behind", dir.display());
}

#[test]
fn rlimits_bind_the_program() {
    let test = "rlimits_bind_the_program";
    if !ready(test) {
        return;
    }
    let scratch = Scratch::new();
    let mut plan = scratch.spec(&["sh", "-c", "ulimit -n; ulimit -Hn"]).plan();
    plan.limits.rlimits = vec![Rlimit {
        resource: RlimitResource::Nofile,
        limit: 64,
    }];
    let out =
        wait_output(sandbox::spawn(&plan, &helper(), scratch.dir.path(), piped()).expect("spawn"));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "64\n64\n", "soft and hard");
}

//! The environment's cgroup and the rlimits, for real (`sandbox::limits`): a plan with a
//! cgroup runs its program inside it, a joined session lands in the same one, and the cgroup
//! is removed when the last of them has ended; the rlimits bind the program.
//!
//! The cgroup part needs a cgroup v2 hierarchy this process may write: as root, the host's
//! (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on a hybrid host). The v2 cgroup asks for no
//! limit there, because a hybrid host has no controller on cgroup v2; what is tested is the
//! placement: create, move in before the namespaces, inherit, join, leave, remove. On a hybrid
//! host the plans also carry one cgroup per v1 hierarchy of memory, cpu and pids, with limits
//! (written, inherited, joined, removed, as the runtime does as root); the limits themselves
//! are tested through the CLI in tests/namespace/limits.rs. Rootless (the re-run as
//! `karapace-test`), the host's hierarchy is root's: the check is that a plan's cgroup there
//! is refused, by name. Without any cgroup v2 hierarchy it prints `SKIPPED:`, or fails under
//! `KARAPACE_REQUIRE_CGROUPS=1` and, as root, under `KARAPACE_REQUIRE_SANDBOX=1`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use karapace_tui::prereq::cgroup::{v1_hierarchies, v1_hierarchy};
use karapace_tui::prereq::SystemHost;
use karapace_tui::sandbox::limits::{CgroupLimits, Rlimit, RlimitResource};
use karapace_tui::sandbox::{self, SandboxStdio};

use super::{helper, ready, text, visible, wait_output, Scratch};

/// The cgroup v2 hierarchy, and whether this process may create cgroups in it and move itself
/// around (as root).
enum Hierarchy {
    Ours(PathBuf),
    /// Rootless: the host's hierarchy belongs to root. What is checked then is that a plan
    /// naming a cgroup there is refused, with an error that names the file, the errno and the
    /// fix (the runtime itself never plans one there: `doctor` finds no delegation).
    NotOurs(PathBuf),
}

fn hierarchy(test: &str) -> Option<Hierarchy> {
    use nix::sys::statfs::{statfs, CGROUP2_SUPER_MAGIC};
    let found = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| statfs(p).is_ok_and(|s| s.filesystem_type() == CGROUP2_SUPER_MAGIC));
    let root = nix::unistd::geteuid().is_root();
    match found {
        Some(dir) if root => Some(Hierarchy::Ours(dir)),
        Some(dir) => Some(Hierarchy::NotOurs(dir)),
        None => {
            let required = std::env::var("KARAPACE_REQUIRE_CGROUPS").as_deref() == Ok("1")
                || (root && std::env::var("KARAPACE_REQUIRE_SANDBOX").as_deref() == Ok("1"));
            let why = "no cgroup v2 hierarchy is mounted";
            assert!(!required, "{test}: cgroups are required but {why}");
            visible(&format!("SKIPPED: {test}: {why}"));
            None
        }
    }
}

/// Rootless: a plan's cgroup in the host's hierarchy fails the session before anything runs,
/// naming what failed.
fn refused_rootless(test: &str, hierarchy: &Path) {
    let cgroup = cgroup_in(hierarchy, "rootless");
    let scratch = Scratch::new();
    let mut plan = scratch.spec(&["true"]).plan();
    plan.limits.cgroups = vec![cgroup.clone()];
    let out =
        wait_output(sandbox::spawn(&plan, &helper(), scratch.dir.path(), piped()).expect("spawn"));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{stderr}");
    assert!(
        stderr.contains("cgroup.procs") && stderr.contains("EACCES") && stderr.contains("doctor"),
        "{stderr}"
    );
    assert!(!Path::new(&cgroup.dir).exists(), "{} was made", cgroup.dir);
    visible(&format!(
        "{test}: rootless, checked that a cgroup in the host's hierarchy is refused by name"
    ));
}

fn cgroup_in(hierarchy: &Path, name: &str) -> CgroupLimits {
    CgroupLimits {
        v1: None,
        hierarchy: hierarchy.display().to_string(),
        dir: hierarchy
            .join(format!("karapace-test-{name}-{}", std::process::id()))
            .display()
            .to_string(),
        enable: Vec::new(),
        memory_max: None,
        cpu_weight: None,
        cpu_shares: None,
        pids_max: None,
    }
}

/// The v2 cgroup and, where memory, cpu and pids are on cgroup v1 (a hybrid host, as root),
/// one cgroup with a limit in each of their hierarchies, as the runtime plans them.
fn cgroups_in(hierarchy: &Path, name: &str) -> Vec<CgroupLimits> {
    let host = SystemHost::new();
    let hierarchies = v1_hierarchies(&host);
    let mut out = vec![cgroup_in(hierarchy, name)];
    for controller in ["memory", "cpu", "pids"] {
        let Some(mount) = v1_hierarchy(&host, &hierarchies, controller) else {
            continue;
        };
        let mut c = cgroup_in(&mount, name);
        c.v1 = Some(controller.to_string());
        match controller {
            "memory" => c.memory_max = Some(256 << 20),
            "cpu" => c.cpu_shares = Some(512),
            _ => c.pids_max = Some(64),
        }
        out.push(c);
    }
    out
}

/// The lines `/proc/self/cgroup` should read inside: `0::/NAME` and, per v1 cgroup, its
/// hierarchy's line (`N:memory:/NAME`) with the hierarchy id left out.
fn expected_lines(cgroups: &[CgroupLimits]) -> Vec<String> {
    cgroups
        .iter()
        .map(|c| {
            let name = Path::new(&c.dir)
                .file_name()
                .expect("name")
                .to_string_lossy();
            match &c.v1 {
                None => format!("0::/{name}"),
                Some(controller) => format!("{controller}:/{name}"),
            }
        })
        .collect()
}

/// What the program printed, in the form of [`expected_lines`] for each expected line.
fn found_lines(out: &str, cgroups: &[CgroupLimits]) -> Vec<String> {
    cgroups
        .iter()
        .map(|c| {
            let line = out.lines().find(|l| match &c.v1 {
                None => l.starts_with("0::"),
                Some(controller) => l
                    .split(':')
                    .nth(1)
                    .is_some_and(|cs| cs.split(',').any(|x| x == controller)),
            });
            let line = line.unwrap_or_default();
            match &c.v1 {
                None => line.to_string(),
                Some(controller) => {
                    format!("{controller}:{}", line.splitn(3, ':').nth(2).unwrap_or(""))
                }
            }
        })
        .collect()
}

#[track_caller]
fn all_removed(cgroups: &[CgroupLimits], stderr: &str) {
    for c in cgroups {
        assert!(
            !Path::new(&c.dir).exists(),
            "{} is left behind: {stderr}",
            c.dir
        );
    }
}

#[test]
fn the_program_runs_in_the_plans_cgroup_which_is_removed_after() {
    let test = "the_program_runs_in_the_plans_cgroup";
    if !ready(test) {
        return;
    }
    let hierarchy = match hierarchy(test) {
        Some(Hierarchy::Ours(dir)) => dir,
        Some(Hierarchy::NotOurs(dir)) => return refused_rootless(test, &dir),
        None => return,
    };
    let cgroups = cgroups_in(&hierarchy, "cold");
    let scratch = Scratch::new();
    let mut plan = scratch.spec(&["cat", "/proc/self/cgroup"]).plan();
    plan.limits.cgroups = cgroups.clone();
    let out =
        wait_output(sandbox::spawn(&plan, &helper(), scratch.dir.path(), piped()).expect("spawn"));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        found_lines(&text(&out.stdout), &cgroups),
        expected_lines(&cgroups)
    );
    all_removed(&cgroups, &text(&out.stderr));
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
    let hierarchy = match hierarchy(test) {
        Some(Hierarchy::Ours(dir)) => dir,
        Some(Hierarchy::NotOurs(dir)) => return refused_rootless(test, &dir),
        None => return,
    };
    let cgroups = cgroups_in(&hierarchy, "joined");
    let scratch = Scratch::new();
    let record = scratch.path("init");
    // The first session prints its cgroup, then waits until the second one has run (it
    // makes a file in the /tmp they share).
    let first_script = "cat /proc/self/cgroup; \
                        while [ ! -e /tmp/second-ran ]; do sleep 0.05; done";
    let mut first_plan = scratch.spec(&["sh", "-c", first_script]).plan();
    first_plan.limits.cgroups = cgroups.clone();
    let mut first =
        sandbox::spawn_session(&first_plan, &record, &helper(), scratch.dir.path(), piped())
            .expect("spawn the first session");
    let stdout = first.child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    // `cat` prints the v2 line last.
    let mut first_out = String::new();
    while !first_out.lines().any(|l| l.starts_with("0::")) {
        let line = lines.next().expect("a line").expect("read");
        first_out.push_str(&line);
        first_out.push('\n');
    }
    assert_eq!(found_lines(&first_out, &cgroups), expected_lines(&cgroups));

    let second_script = "cat /proc/self/cgroup; touch /tmp/second-ran";
    let mut second_plan = scratch.spec(&["sh", "-c", second_script]).plan();
    second_plan.limits.cgroups = cgroups.clone();
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
    assert_eq!(
        found_lines(&text(&out.stdout), &cgroups),
        expected_lines(&cgroups),
        "joined"
    );
    let status = first.child.wait().expect("wait for the first session");
    assert_eq!(status.code(), Some(0));
    all_removed(&cgroups, "");
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

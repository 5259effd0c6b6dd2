//! Run as root, the kernel tests run a second time as an ordinary user: the main use of the
//! sandbox is rootless, and CI runs as root.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use super::util::ensure_test_user;
use super::{helper, lower, ready, required, skip, visible, TEST_USER};

/// Whether every directory above `path` lets others through, and `path` itself others read.
fn reachable_by_others(path: &Path) -> bool {
    path.ancestors().all(|p| {
        fs::metadata(p).is_ok_and(|m| m.permissions().mode() & 0o005 == 0o005 || p == path)
    })
}

const TEST: &str = "kernel_tests_also_pass_unprivileged";

#[test]
fn kernel_tests_also_pass_unprivileged() {
    if !nix::unistd::geteuid().is_root() {
        // Not a skip: this run already is the unprivileged one.
        return;
    }
    if !ready(TEST) {
        return;
    }
    if let Err(why) = ensure_test_user() {
        skip(TEST, &why);
        return;
    }
    // The binaries go to a directory the user can reach (the build dir may be private).
    let dir = tempfile::Builder::new()
        .prefix("karapace-unprivileged-")
        .tempdir()
        .unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let tests_bin = dir.path().join("sandbox-tests");
    let helper_bin = dir.path().join("karapace-tui");
    fs::copy(std::env::current_exe().unwrap(), &tests_bin).unwrap();
    fs::copy(helper(), &helper_bin).unwrap();
    let mut lower_dir = lower().to_string();
    if !reachable_by_others(Path::new(&lower_dir)) {
        let copy = dir.path().join("lower");
        let status = Command::new("cp")
            .arg("-a")
            .arg(&lower_dir)
            .arg(&copy)
            .status()
            .unwrap();
        assert!(status.success(), "cannot copy the lower directory");
        lower_dir = copy.display().to_string();
    }
    let out = run_as_test_user(dir.path(), &tests_bin, &helper_bin, &lower_dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("test result:"))
        .unwrap_or("");
    visible(&format!("as {TEST_USER}: {summary}"));
    for line in stderr.lines().filter(|l| l.starts_with("SKIPPED")) {
        visible(&format!("as {TEST_USER}: {line}"));
    }
    assert!(out.status.success(), "as {TEST_USER}:\n{stdout}\n{stderr}");
    let passed: usize = summary
        .split(". ")
        .nth(1)
        .and_then(|p| p.split(' ').next()?.parse().ok())
        .unwrap_or(0);
    assert!(
        passed >= 10,
        "only {passed} tests ran as {TEST_USER}: {summary}"
    );
}

/// This test binary again, as the test user, with a clean environment.
fn run_as_test_user(dir: &Path, tests_bin: &Path, helper_bin: &Path, lower_dir: &str) -> Output {
    let mut cmd = Command::new("runuser");
    cmd.args(["-u", TEST_USER, "--", "env", "-i"])
        .arg(format!(
            "PATH={}",
            std::env::var("PATH").unwrap_or_default()
        ))
        .arg(format!("KARAPACE_TEST_SANDBOX_LOWER={lower_dir}"))
        .arg(format!("KARAPACE_TEST_HELPER_BIN={}", helper_bin.display()))
        .arg(format!(
            "KARAPACE_REQUIRE_SANDBOX={}",
            if required() { "1" } else { "0" }
        ))
        .arg("TMPDIR=/tmp")
        .arg(tests_bin)
        .args(["--test-threads=2", "--skip", TEST, "--skip", "measure"])
        .current_dir(dir);
    cmd.output().unwrap()
}

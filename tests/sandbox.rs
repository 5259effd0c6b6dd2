//! Real-kernel tests of the sandbox, through the binary's hidden `__sandbox-init` verb.
//!
//! Gated at run time with `sandbox::check`: a machine without user namespaces or overlayfs in
//! them prints `SKIPPED: …` (on stderr, which the harness does not capture), unless
//! `KARAPACE_REQUIRE_SANDBOX=1` (CI), where it fails. Run as root, the plans need no user
//! namespace; `kernel_tests_also_pass_unprivileged` then runs this same test binary again as
//! the user `karapace-test` (created with `useradd -m` if missing) through `runuser`, so CI
//! (root) covers both.
//!
//! The root file system: `KARAPACE_TEST_ROOTFS_TARBALL` (a debootstrap tar.xz, unpacked once
//! into the target's tmp dir), else a tiny one made of host binaries and their libraries
//! (from `ldd`). Every run checks that the host's mount table is unchanged afterwards.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{mpsc, OnceLock};
use std::time::Duration;

use karapace_tui::sandbox::{
    self, check, Bind, IdMapping, OverlayDriver, RootfsSpec, SandboxStdio,
};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tempfile::TempDir;

use util::TEST_USER;
const HOSTNAME: &str = "karapace-box";

fn helper() -> PathBuf {
    std::env::var_os("KARAPACE_TEST_HELPER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_karapace-tui")))
}

fn required() -> bool {
    std::env::var("KARAPACE_REQUIRE_SANDBOX").is_ok_and(|v| v == "1")
}

/// A line on the real stderr, which the test harness does not capture.
fn visible(line: &str) {
    let mut err = std::io::stderr();
    writeln!(err, "{line}").unwrap();
}

fn skip(test: &str, why: &str) {
    assert!(!required(), "{test}: KARAPACE_REQUIRE_SANDBOX=1 but: {why}");
    visible(&format!("SKIPPED: {test}: {why}"));
}

/// Whether the kernel lets us build a sandbox here; prints SKIPPED (or fails) if not.
fn ready(test: &str) -> bool {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    let result = READY.get_or_init(|| {
        check::unprivileged_userns(&helper())?;
        check::overlay_in_userns(&helper(), &std::env::temp_dir())
    });
    match result {
        Ok(()) => true,
        Err(why) => {
            skip(test, why);
            false
        }
    }
}

/// The shared, read-only lower directory (built once per process, cached across runs).
fn lower() -> &'static str {
    static LOWER: OnceLock<String> = OnceLock::new();
    LOWER.get_or_init(|| {
        if let Ok(dir) = std::env::var("KARAPACE_TEST_SANDBOX_LOWER") {
            return dir;
        }
        let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("sandbox-rootfs");
        fs::create_dir_all(&cache).unwrap();
        let tarball = std::env::var_os("KARAPACE_TEST_ROOTFS_TARBALL").filter(|t| !t.is_empty());
        let dir = match tarball {
            Some(tarball) => cached(&cache, &tarball_key(Path::new(&tarball)), |dest| {
                unpack_tarball(Path::new(&tarball), dest)
            }),
            None => cached(&cache, "host-binaries-2", host_rootfs),
        };
        dir.display().to_string()
    })
}

fn tarball_key(tarball: &Path) -> String {
    let meta = fs::metadata(tarball).unwrap();
    format!("tarball-{}-{:?}", meta.len(), meta.modified().unwrap())
        .replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "_")
}

/// `cache/key`, made by `make` into a temporary name and renamed, so it is whole or absent.
fn cached(cache: &Path, key: &str, make: impl FnOnce(&Path)) -> PathBuf {
    let dir = cache.join(key);
    if !dir.exists() {
        let partial = cache.join(format!("{key}.partial-{}", std::process::id()));
        fs::create_dir(&partial).unwrap();
        fs::set_permissions(&partial, fs::Permissions::from_mode(0o755)).unwrap();
        make(&partial);
        if fs::rename(&partial, &dir).is_err() {
            // Another process won the race.
            Command::new("rm")
                .arg("-rf")
                .arg(&partial)
                .status()
                .unwrap();
        }
    }
    dir
}

fn unpack_tarball(tarball: &Path, dest: &Path) {
    let file = fs::File::open(tarball).unwrap();
    let mut xz = xz2::read::XzDecoder::new_multi_decoder(std::io::BufReader::new(file));
    let opts = karapace_tui::image::unpack::UnpackOptions::for_current_user();
    karapace_tui::image::unpack::unpack(&mut xz, dest, &opts).unwrap();
}

/// A minimal root: a few host binaries and the libraries `ldd` names.
fn host_rootfs(dest: &Path) {
    let bins = [
        "sh", "cat", "ls", "grep", "env", "true", "sleep", "chown", "stat", "setpriv", "id",
        "touch", "mkdir", "chmod", "tty", "stty",
    ];
    copy_host_binaries(dest, &bins);
}

/// The usual top-level directories, `bins` from the host with their libraries, and
/// /usr/bin -> ../bin.
fn copy_host_binaries(dest: &Path, bins: &[&str]) {
    for dir in [
        "bin", "proc", "dev", "sys", "tmp", "etc", "mnt", "srv", "root",
    ] {
        fs::create_dir_all(dest.join(dir)).unwrap();
    }
    for bin in bins {
        let src = ["/usr/bin", "/bin"]
            .iter()
            .map(|d| Path::new(d).join(bin))
            .find(|p| p.exists())
            .unwrap_or_else(|| panic!("no {bin} on the host"));
        fs::copy(&src, dest.join("bin").join(bin)).unwrap();
        let ldd = Command::new("ldd").arg(&src).output().unwrap();
        for lib in String::from_utf8_lossy(&ldd.stdout)
            .split_whitespace()
            .filter(|w| w.starts_with('/'))
        {
            let to = dest.join(lib.trim_start_matches('/'));
            fs::create_dir_all(to.parent().unwrap()).unwrap();
            fs::copy(lib, &to).unwrap();
        }
    }
    fs::create_dir_all(dest.join("usr")).unwrap();
    std::os::unix::fs::symlink("../bin", dest.join("usr/bin")).unwrap();
}

/// A fresh upper/work/root for one test, plus the standard spec running `argv`.
struct Scratch {
    dir: TempDir,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // So that the TempDir can be removed by a non-root owner too.
        check::open_overlay_work_dir(&self.path("work"));
    }
}

impl Scratch {
    fn new() -> Scratch {
        let dir = tempfile::Builder::new()
            .prefix("karapace-sandbox-test-")
            .tempdir()
            .unwrap();
        for sub in ["upper", "work", "root"] {
            fs::create_dir(dir.path().join(sub)).unwrap();
        }
        Scratch { dir }
    }

    fn path(&self, sub: &str) -> PathBuf {
        self.dir.path().join(sub)
    }

    fn spec(&self, argv: &[&str]) -> RootfsSpec {
        let p = |s: &str| self.path(s).display().to_string();
        RootfsSpec {
            ids: IdMapping::for_current_user(),
            lower: vec![lower().to_string()],
            upper: p("upper"),
            work: p("work"),
            root: p("root"),
            userxattr: true,
            overlay: OverlayDriver::Kernel,
            isolate_net: false,
            hostname: Some(HOSTNAME.into()),
            sys: true,
            tmpfs: vec![("/tmp".into(), 0o1777)],
            devices: Vec::new(),
            console: None,
            binds: Vec::new(),
            argv: argv.iter().map(|s| s.to_string()).collect(),
            env: vec![
                ("PATH".into(), "/usr/bin:/bin".into()),
                ("HOME".into(), "/root".into()),
                ("KARAPACE_TEST".into(), "1".into()),
            ],
            cwd: "/".into(),
        }
    }

    fn start(&self, spec: &RootfsSpec) -> Child {
        let stdio = SandboxStdio {
            stdin: Stdio::null(),
            stdout: Stdio::piped(),
            stderr: Stdio::piped(),
        };
        sandbox::spawn(&spec.plan(), &helper(), self.dir.path(), stdio)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Runs to the end (2 min at most) and checks the host's mounts did not change.
    fn run(&self, spec: &RootfsSpec) -> Output {
        let before = fs::read_to_string("/proc/self/mountinfo").unwrap();
        let out = wait_output(self.start(spec));
        let after = fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert_eq!(before, after, "the host's mount table changed");
        out
    }
}

fn wait_output(child: Child) -> Output {
    let pid = Pid::from_raw(child.id() as i32);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    match rx.recv_timeout(Duration::from_secs(120)) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            kill(pid, Signal::SIGKILL).unwrap();
            panic!("the sandbox did not finish in 2 minutes");
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `argv` in the standard sandbox; returns (exit code, stdout), showing stderr on failure.
fn run_argv(test: &str, argv: &[&str]) -> Option<(i32, String)> {
    if !ready(test) {
        return None;
    }
    let scratch = Scratch::new();
    let out = scratch.run(&scratch.spec(argv));
    let code = out
        .status
        .code()
        .expect("the helper exits, it is not killed");
    assert_ne!(code, 125, "setup failed: {}", text(&out.stderr));
    Some((code, text(&out.stdout)))
}

#[test]
fn exit_codes_are_the_programs() {
    let Some((code, _)) = run_argv("exit_codes_are_the_programs", &["true"]) else {
        return;
    };
    assert_eq!(code, 0);
    let (code, _) = run_argv("exit_7", &["sh", "-c", "exit 7"]).unwrap();
    assert_eq!(code, 7);
    let (code, _) = run_argv("kill_term", &["sh", "-c", "kill -TERM $$"]).unwrap();
    assert_eq!(code, 128 + 15);
    let (code, _) = run_argv("not_found", &["no-such-program-here"]).unwrap();
    assert_eq!(code, 127);
}

#[test]
fn dev_null_is_writable_and_no_new_privs_is_set() {
    let cmd = "echo x > /dev/null && cat /proc/self/status | grep NoNewPrivs";
    let Some((code, out)) = run_argv("dev_null_no_new_privs", &["sh", "-c", cmd]) else {
        return;
    };
    assert_eq!(
        (code, out.split_whitespace().collect::<Vec<_>>()),
        (0, vec!["NoNewPrivs:", "1"])
    );
}

#[test]
fn dev_has_only_the_minimal_set() {
    let Some((code, out)) = run_argv("dev_minimal", &["ls", "/dev"]) else {
        return;
    };
    let names: Vec<&str> = out.split_whitespace().collect();
    let expected = [
        "core", "fd", "full", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin", "stdout",
        "tty", "urandom", "zero",
    ];
    assert_eq!((code, names), (0, expected.to_vec()));
}

/// The mount points under /sys in a mountinfo text, with their per-mount options.
fn sys_mounts(mountinfo: &str) -> Vec<(String, String)> {
    mountinfo
        .lines()
        .filter_map(|l| {
            let fields: Vec<&str> = l.split(' ').collect();
            Some((fields.get(4)?.to_string(), fields.get(5)?.to_string()))
        })
        .filter(|(point, _)| point == "/sys" || point.starts_with("/sys/"))
        .collect()
}

#[test]
fn every_mount_under_sys_is_read_only_nosuid_and_nodev() {
    let Some((code, out)) = run_argv("sys_read_only", &["cat", "/proc/self/mountinfo"]) else {
        return;
    };
    assert_eq!(code, 0);
    let inside = sys_mounts(&out);
    let host = sys_mounts(&fs::read_to_string("/proc/self/mountinfo").unwrap());
    // The whole tree is bound (cgroup hierarchies, tracing, ... as the host has them), and
    // each of its mounts is restricted, not only the top one.
    assert_eq!(
        inside.len(),
        host.len(),
        "inside: {inside:?}\nhost: {host:?}"
    );
    for (point, opts) in &inside {
        let opts: Vec<&str> = opts.split(',').collect();
        for want in ["ro", "nosuid", "nodev"] {
            assert!(opts.contains(&want), "{point} is not {want}: {opts:?}");
        }
    }
}

#[test]
fn pid_1_holds_no_file_of_the_hosts_proc() {
    let cmd = "for f in /proc/1/fd/*; do readlink \"$f\"; done";
    let Some((code, out)) = run_argv("pid_1_fds", &["sh", "-c", cmd]) else {
        return;
    };
    assert_eq!(code, 0, "{out}");
    // PID 1 counts its threads (before each fork) in the sandbox's own /proc; a file of the
    // host's procfs would show as `/<host pid>/status`, out of any path the sandbox has.
    let status: Vec<&str> = out.lines().filter(|l| l.ends_with("/status")).collect();
    assert_eq!(status, ["/proc/1/status"], "PID 1's descriptors:\n{out}");
}

#[test]
fn pid_hostname_and_environment_are_the_sandboxes() {
    let Some((_, out)) = run_argv("pid_ns", &["sh", "-c", "echo $$"]) else {
        return;
    };
    assert!(["1", "2"].contains(&out.trim()), "pid {out}");
    let (_, out) = run_argv("hostname", &["cat", "/proc/sys/kernel/hostname"]).unwrap();
    assert_eq!(out.trim(), HOSTNAME);
    let (_, out) = run_argv("env", &["env"]).unwrap();
    let mut vars: Vec<&str> = out.lines().collect();
    vars.sort_unstable();
    assert_eq!(
        vars,
        ["HOME=/root", "KARAPACE_TEST=1", "PATH=/usr/bin:/bin"]
    );
}

#[test]
fn writes_land_in_the_upper_directory_only() {
    if !ready("writes_land_in_upper") {
        return;
    }
    let scratch = Scratch::new();
    let out = scratch.run(&scratch.spec(&["sh", "-c", "echo hi > /newfile"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        fs::read_to_string(scratch.path("upper/newfile")).unwrap(),
        "hi\n"
    );
    assert!(!Path::new(lower()).join("newfile").exists());
}

#[test]
fn read_only_binds_refuse_writes_and_rw_binds_reach_the_host() {
    if !ready("read_only_binds") {
        return;
    }
    let scratch = Scratch::new();
    for dir in ["ro-src", "rw-src"] {
        fs::create_dir(scratch.path(dir)).unwrap();
    }
    fs::write(scratch.path("ro-src/inside"), "visible\n").unwrap();
    // As root the mount points are created in the new root. Rootless, directories of the
    // shared lower belong to an unmapped owner, so only existing ones can be used.
    let (ro, rw) = if nix::unistd::geteuid().is_root() {
        ("/mnt/ro", "/mnt/rw")
    } else {
        ("/mnt", "/srv")
    };
    let cmd = format!(
        "cat {ro}/inside && echo y > {rw}/new && (echo x > {ro}/new) 2>/dev/null; \
         echo ro-write=$?"
    );
    let mut spec = scratch.spec(&["sh", "-c", &cmd]);
    for (src, target, read_only) in [("ro-src", ro, true), ("rw-src", rw, false)] {
        spec.binds.push(Bind {
            source: scratch.path(src).display().to_string(),
            target: target.into(),
            read_only,
        });
    }
    let out = scratch.run(&spec);
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with("visible\nro-write="),
        "{stdout}{}",
        text(&out.stderr)
    );
    assert!(!stdout.contains("ro-write=0"), "{stdout}");
    assert_eq!(
        fs::read_to_string(scratch.path("rw-src/new")).unwrap(),
        "y\n"
    );
    assert!(!scratch.path("ro-src/new").exists());
}

#[test]
fn an_isolated_network_has_only_lo() {
    if !ready("isolated_network") {
        return;
    }
    let scratch = Scratch::new();
    let mut spec = scratch.spec(&["cat", "/proc/net/dev"]);
    spec.isolate_net = true;
    let out = scratch.run(&spec);
    let names: Vec<String> = text(&out.stdout)
        .lines()
        .skip(2)
        .filter_map(|l| Some(l.split(':').next()?.trim().to_string()))
        .collect();
    assert_eq!(names, ["lo"]);
}

#[test]
fn a_failed_step_names_itself_and_leaves_nothing_behind() {
    if !ready("failed_step") {
        return;
    }
    let scratch = Scratch::new();
    let mut spec = scratch.spec(&["true"]);
    let missing = scratch.path("no-such-source").display().to_string();
    spec.binds.push(Bind {
        source: missing.clone(),
        target: "/mnt/x".into(),
        read_only: true,
    });
    let out = scratch.run(&spec);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{stderr}");
    for part in ["bind_mount", missing.as_str(), "ENOENT"] {
        assert!(stderr.contains(part), "`{part}` not in: {stderr}");
    }
}

mod util;

#[path = "sandbox/cgroup.rs"]
mod cgroup;
#[path = "sandbox/fuse.rs"]
mod fuse;
#[path = "sandbox/network.rs"]
mod network;
#[path = "sandbox/processes.rs"]
mod processes;
#[path = "sandbox/subordinate.rs"]
mod subordinate;
#[path = "sandbox/terminal.rs"]
mod terminal;
#[path = "sandbox/unprivileged.rs"]
mod unprivileged;

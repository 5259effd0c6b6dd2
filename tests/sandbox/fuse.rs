//! The fuse-overlayfs root: it mounts, writes land in upper/, and its daemon and mount never
//! outlive the sandbox — when the program ends, and when the sandbox's parent is killed.
//! Without access to /dev/fuse (rootless here: the device is root-only) the sandbox refuses
//! to start with an error that names the device and the fix.

use std::fs;
use std::io::BufReader;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use karapace_tui::sandbox::{self, check, Bind, OverlayDriver, RootfsSpec};

use super::processes::{alive_descendants, ppid_of, read_line};
use super::{helper, ready, skip, text, Scratch};

const TEST: &str = "fuse_overlayfs_root";

/// A child killed on drop, so that a failed assertion leaves no sandbox running.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // Already dead on the normal path; the error then is expected.
        drop(self.0.kill());
        drop(self.0.wait());
    }
}

/// Live fuse-overlayfs processes whose arguments mention `needle` (the scratch directory).
fn fuse_daemons(needle: &str) -> Vec<String> {
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_string_lossy().into_owned();
            let cmdline = fs::read(e.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline);
            let program = cmdline.split('\0').next()?;
            let ours = program.ends_with("fuse-overlayfs") && cmdline.contains(needle);
            (ours && ppid_of(&pid).is_some()).then_some(pid)
        })
        .collect()
}

fn host_mounts_mentioning(needle: &str) -> Vec<String> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(needle))
        .map(String::from)
        .collect()
}

#[test]
fn fuse_overlayfs_roots_work_or_are_refused_naming_dev_fuse() {
    if !ready(TEST) {
        return;
    }
    match check::fuse_overlayfs() {
        Ok(program) => {
            runs_and_leaves_nothing_behind(&program);
            a_failed_setup_leaves_nothing_behind(&program);
            killing_the_parent_leaves_nothing_behind(&program);
        }
        Err(why) if why.contains("not installed") => skip(TEST, &why),
        // Installed, but this user cannot open /dev/fuse.
        Err(_) => refused_naming_the_device(),
    }
}

fn fuse_spec(scratch: &Scratch, program: &str, argv: &[&str]) -> RootfsSpec {
    let mut spec = scratch.spec(argv);
    spec.overlay = OverlayDriver::Fuse {
        program: program.to_string(),
    };
    spec
}

fn runs_and_leaves_nothing_behind(program: &str) {
    let scratch = Scratch::new();
    let cmd = "echo hi > /newfile && grep ' / / ' /proc/self/mountinfo";
    let out = scratch.run(&fuse_spec(&scratch, program, &["sh", "-c", cmd]));
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("fuse.fuse-overlayfs"),
        "the root is not fuse: {stdout}"
    );
    assert_eq!(
        fs::read_to_string(scratch.path("upper/newfile")).unwrap(),
        "hi\n"
    );
    // The daemon died with the sandbox's PID namespace, before the helper returned.
    let dir = scratch.dir.path().display().to_string();
    assert_eq!(fuse_daemons(&dir), Vec::<String>::new());
    assert_eq!(host_mounts_mentioning(&dir), Vec::<String>::new());
}

/// A step after the fuse mount fails: the helper exits 125 and takes the daemon with it.
fn a_failed_setup_leaves_nothing_behind(program: &str) {
    let scratch = Scratch::new();
    let mut spec = fuse_spec(&scratch, program, &["true"]);
    spec.binds.push(Bind {
        source: scratch.path("no-such-source").display().to_string(),
        target: "/mnt".into(),
        read_only: true,
    });
    let out = scratch.run(&spec);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{stderr}");
    assert!(stderr.contains("bind_mount"), "{stderr}");
    let dir = scratch.dir.path().display().to_string();
    assert_eq!(fuse_daemons(&dir), Vec::<String>::new());
    assert_eq!(host_mounts_mentioning(&dir), Vec::<String>::new());
}

fn killing_the_parent_leaves_nothing_behind(program: &str) {
    let scratch = Scratch::new();
    let spec = fuse_spec(
        &scratch,
        program,
        &["sh", "-c", "echo ready; exec sleep 1000"],
    );
    let plan_file = sandbox::PlanFile::write(&spec.plan(), scratch.dir.path()).unwrap();
    // The parent stands for the CLI: the helper runs as its child, then it is SIGKILLed.
    let mut parent = KillOnDrop(
        Command::new("sh")
            .args(["-c", r#""$0" __sandbox-init "$1" & echo $!; wait"#])
            .arg(helper())
            .arg(plan_file.hand_over())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut stdout = BufReader::new(parent.0.stdout.take().unwrap());
    let helper_pid = read_line(&mut stdout);
    assert_eq!(read_line(&mut stdout), "ready");
    let dir = scratch.dir.path().display().to_string();
    let daemons = fuse_daemons(&dir);
    assert_eq!(daemons.len(), 1, "one fuse-overlayfs daemon: {daemons:?}");
    let tree = alive_descendants(&helper_pid);
    assert!(tree.contains(&daemons[0]), "{daemons:?} not in {tree:?}");
    parent.0.kill().unwrap();
    parent.0.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !fuse_daemons(&dir).is_empty() || tree.iter().any(|p| ppid_of(p).is_some()) {
        assert!(
            Instant::now() < deadline,
            "still alive after the parent's SIGKILL: {:?}",
            fuse_daemons(&dir)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(host_mounts_mentioning(&dir), Vec::<String>::new());
}

fn refused_naming_the_device() {
    let scratch = Scratch::new();
    let program = "/usr/bin/fuse-overlayfs";
    let out = scratch.run(&fuse_spec(&scratch, program, &["true"]));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{stderr}");
    for part in ["mount_overlay", "/dev/fuse", "chmod 0666 /dev/fuse"] {
        assert!(stderr.contains(part), "`{part}` not in: {stderr}");
    }
    let dir = scratch.dir.path().display().to_string();
    assert_eq!(fuse_daemons(&dir), Vec::<String>::new());
}

//! Full subordinate id ranges (newuidmap/newgidmap): what a rootless sandbox can do with them,
//! and that the store can still delete what it chowned.
//!
//! These need a user that is not root and has a range in /etc/subuid and /etc/subgid: as root
//! they return at once (the run as `karapace-test`, see `unprivileged.rs`, covers them); as an
//! ordinary user without a working range they print SKIPPED, or fail under
//! `KARAPACE_REQUIRE_SANDBOX=1` (CI installs uidmap; `useradd` grants the range).

use std::fs;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use karapace_tui::sandbox::join::InitRecord;
use karapace_tui::sandbox::plan::IdRange;
use karapace_tui::sandbox::{self, check, IdMapping, PlanFile};
use nix::fcntl::{fcntl, FcntlArg, FdFlag};

use super::{copy_host_binaries, helper, ready, skip, text, wait_output, Scratch};

/// The working full range for this user, or `None` (as root, or skipped).
fn subordinate(test: &str) -> Option<(IdRange, IdRange)> {
    if nix::unistd::geteuid().is_root() || !ready(test) {
        return None;
    }
    match check::subordinate_ids(&helper()) {
        Ok(IdMapping::Subordinate {
            sub_uid, sub_gid, ..
        }) => Some((sub_uid, sub_gid)),
        Ok(other) => panic!("subordinate_ids returned {other:?}"),
        Err(why) => {
            skip(test, &why);
            None
        }
    }
}

/// Runs `script` with `sh -c` in a fresh sandbox with `ids`; returns the scratch and output.
fn run_script(ids: IdMapping, script: &str) -> (Scratch, Output) {
    let scratch = Scratch::new();
    let mut spec = scratch.spec(&["sh", "-c", script]);
    spec.ids = ids;
    let out = scratch.run(&spec);
    (scratch, out)
}

#[test]
fn both_map_lines_are_written_and_setgroups_stays_allowed() {
    let Some((sub_uid, sub_gid)) = subordinate("both_map_lines") else {
        return;
    };
    let script = "cat /proc/self/uid_map /proc/self/gid_map /proc/self/setgroups";
    let (_scratch, out) = run_script(IdMapping::for_current_user(), script);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let words: Vec<Vec<String>> = text(&out.stdout)
        .lines()
        .map(|l| l.split_whitespace().map(String::from).collect())
        .collect();
    let line = |a: u32, b: u32, c: u32| vec![a.to_string(), b.to_string(), c.to_string()];
    let uid = nix::unistd::getuid().as_raw();
    let gid = nix::unistd::getgid().as_raw();
    assert_eq!(
        words,
        [
            line(0, uid, 1),
            line(1, sub_uid.outside, sub_uid.count),
            line(0, gid, 1),
            line(1, sub_gid.outside, sub_gid.count),
            vec!["allow".to_string()],
        ]
    );
}

#[test]
fn files_can_be_given_to_other_ids_and_programs_can_switch_users() {
    let Some((sub_uid, sub_gid)) = subordinate("chown_and_setpriv") else {
        return;
    };
    let script = "touch /owned && chown 1000:1000 /owned && stat -c %u:%g /owned && \
                  setpriv --reuid=100 --regid=100 --clear-groups id -u";
    let (scratch, out) = run_script(IdMapping::for_current_user(), script);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "1000:1000\n100\n");
    // On the host the file belongs to the subordinate ids that inside 1000 maps to.
    let meta = fs::metadata(scratch.path("upper/owned")).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid()),
        (sub_uid.outside + 999, sub_gid.outside + 999)
    );
}

#[test]
fn a_range_that_is_not_granted_fails_naming_the_command_and_the_fix() {
    let Some((sub_uid, sub_gid)) = subordinate("range_not_granted") else {
        return;
    };
    let beyond = IdRange {
        outside: sub_uid.outside + sub_uid.count,
        ..sub_uid
    };
    let scratch = Scratch::new();
    let mut spec = scratch.spec(&["true"]);
    spec.ids = IdMapping::Subordinate {
        uid: nix::unistd::getuid().as_raw(),
        gid: nix::unistd::getgid().as_raw(),
        sub_uid: beyond,
        sub_gid,
    };
    let stdio = sandbox::SandboxStdio {
        stdin: Stdio::null(),
        stdout: Stdio::piped(),
        stderr: Stdio::piped(),
    };
    let err = sandbox::spawn(&spec.plan(), &helper(), scratch.dir.path(), stdio).unwrap_err();
    let text = err.to_string();
    let range = format!("1 {} {}", beyond.outside, beyond.count);
    for part in [
        "newuidmap",
        range.as_str(),
        "not allowed",
        "/etc/subuid",
        "uidmap package",
    ] {
        assert!(text.contains(part), "`{part}` missing from: {text}");
    }
}

#[test]
fn a_single_id_map_stays_as_it_was() {
    // Kept for hosts without a range: only the caller, setgroups denied, chown refused.
    if nix::unistd::geteuid().is_root() || !ready("single_id_map") {
        return;
    }
    let single = IdMapping::SingleId {
        uid: nix::unistd::getuid().as_raw(),
        gid: nix::unistd::getgid().as_raw(),
    };
    let script =
        "cat /proc/self/uid_map /proc/self/setgroups; touch /f; chown 1000 /f 2>/dev/null \
                  && echo chown-ok || echo chown-refused";
    let (_scratch, out) = run_script(single, script);
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().map(str::trim).collect();
    assert_eq!(lines.len(), 3, "{stdout}{}", text(&out.stderr));
    assert!(lines[0].starts_with("0 "), "{stdout}");
    assert_eq!(&lines[1..], ["deny", "chown-refused"]);
}

#[test]
fn a_subordinate_plan_started_without_the_channel_fails_instead_of_hanging() {
    if !ready("subordinate_without_channel") {
        return;
    }
    // Any range: the helper must stop at the step before anything is written.
    let range = IdRange {
        inside: 1,
        outside: 100_000,
        count: 65536,
    };
    let scratch = Scratch::new();
    let mut spec = scratch.spec(&["true"]);
    spec.ids = IdMapping::Subordinate {
        uid: nix::unistd::getuid().as_raw(),
        gid: nix::unistd::getgid().as_raw(),
        sub_uid: range,
        sub_gid: range,
    };
    let plan_file = PlanFile::write(&spec.plan(), scratch.dir.path()).unwrap();
    let child = sandbox::command(&helper(), &plan_file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    plan_file.hand_over();
    let out = wait_output(child);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{stderr}");
    assert!(
        stderr.contains("await_id_maps") && stderr.contains("sandbox::spawn"),
        "{stderr}"
    );
}

#[test]
fn stage_1_gives_up_when_its_spawner_goes_away_while_it_waits() {
    if !ready("spawner_goes_away") {
        return;
    }
    let range = IdRange {
        inside: 1,
        outside: 100_000,
        count: 65536,
    };
    let scratch = Scratch::new();
    let mut spec = scratch.spec(&["true"]);
    spec.ids = IdMapping::Subordinate {
        uid: nix::unistd::getuid().as_raw(),
        gid: nix::unistd::getgid().as_raw(),
        sub_uid: range,
        sub_gid: range,
    };
    let plan_file = PlanFile::write(&spec.plan(), scratch.dir.path()).unwrap();
    // Play the spawner by hand: hand over one end of the channel, then vanish without
    // writing the maps. Closing our end is what the helper sees when the spawner dies.
    let (mut ours, theirs) = UnixStream::pair().unwrap();
    let theirs = OwnedFd::from(theirs);
    fcntl(theirs.as_raw_fd(), FcntlArg::F_SETFD(FdFlag::empty())).unwrap();
    let child = Command::new(helper())
        .arg(sandbox::HELPER_VERB)
        .arg("--id-maps")
        .arg(theirs.as_raw_fd().to_string())
        .arg(plan_file.hand_over())
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(theirs);
    let mut byte = [0u8; 1];
    ours.read_exact(&mut byte).unwrap();
    assert_eq!(&byte, b"n", "the helper reports its user namespace first");
    drop(ours);
    let out = wait_output(child);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{stderr}");
    assert!(
        stderr.contains("await_id_maps") && stderr.contains("EPIPE"),
        "{stderr}"
    );
}

#[test]
fn a_session_that_joins_tells_its_spawner_that_no_maps_are_needed() {
    let Some((sub_uid, _)) = subordinate("join_needs_no_maps") else {
        return;
    };
    let scratch = Scratch::new();
    let record = scratch.path("init");
    // The cold start, as the runtime starts a session: we write its full range.
    let waiting = "while [ ! -e /tmp/end ]; do sleep 0.05; done; echo first-done";
    let first = sandbox::spawn_session(
        &scratch.spec(&["sh", "-c", waiting]).plan(),
        &record,
        &helper(),
        scratch.dir.path(),
        sandbox::SandboxStdio {
            stdin: Stdio::null(),
            stdout: Stdio::piped(),
            stderr: Stdio::piped(),
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !InitRecord::read(&record)
        .unwrap()
        .is_some_and(|init| init.is_alive())
    {
        assert!(Instant::now() < deadline, "the first session never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The joiner, with the same plan's ids, started by hand so that we see what it says on
    // the channel: "no maps needed", never "namespace ready".
    let plan = scratch.spec(&["sh", "-c", "cat /proc/self/uid_map; touch /tmp/end"]);
    let plan_file = PlanFile::write(&plan.plan(), scratch.dir.path()).unwrap();
    let (mut ours, theirs) = UnixStream::pair().unwrap();
    let theirs = OwnedFd::from(theirs);
    fcntl(theirs.as_raw_fd(), FcntlArg::F_SETFD(FdFlag::empty())).unwrap();
    let joiner = Command::new(helper())
        .arg(sandbox::HELPER_VERB)
        .arg("--session")
        .arg(&record)
        .arg("--id-maps")
        .arg(theirs.as_raw_fd().to_string())
        .arg(plan_file.hand_over())
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(theirs);
    let mut said = Vec::new();
    ours.read_to_end(&mut said).unwrap();
    assert_eq!(
        said, b"j",
        "the joiner says that it needs no maps, then closes"
    );
    let out = wait_output(joiner);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // It is in the cold start's user namespace, with the range we wrote for that one.
    let range = format!("1 {} {}", sub_uid.outside, sub_uid.count);
    let maps: Vec<String> = text(&out.stdout)
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert!(maps.contains(&range), "{maps:?}");
    let first = wait_output(first.child);
    assert!(first.status.success(), "{}", text(&first.stderr));
    assert_eq!(text(&first.stdout), "first-done\n");
}

/// A tiny image (a .tar of host binaries) for the CLI test.
fn tiny_image(dir: &Path) -> std::path::PathBuf {
    let root = dir.join("rootfs");
    copy_host_binaries(&root, &["sh", "mkdir", "touch", "chmod", "chown"]);
    let tarball = dir.join("tiny.tar");
    let mut tar = tar::Builder::new(fs::File::create(&tarball).unwrap());
    tar.follow_symlinks(false);
    tar.append_dir_all(".", &root).unwrap();
    tar.finish().unwrap();
    tarball
}

#[test]
fn destroy_removes_files_owned_by_subordinate_ids() {
    let Some((sub_uid, _)) = subordinate("destroy_subordinate_files") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let image = tiny_image(dir.path());
    let project = dir.path().join("project");
    fs::create_dir(&project).unwrap();
    fs::write(
        project.join("karapace.toml"),
        format!(
            "manifest_version = 1\n[base]\nimage = \"{}\"\n[runtime]\nbackend = \"namespace\"\n",
            image.display()
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let mut cmd = Command::new(helper());
        cmd.args(args)
            .env("KARAPACE_STORE", dir.path().join("store"))
            .env("HOME", dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        wait_output(cmd.spawn().unwrap())
    };
    let cli = |args: &[&str]| {
        let out = run(args);
        assert!(
            out.status.success(),
            "karapace-tui {args:?}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    };
    // doctor says which ids sandboxes get (its id mapping check).
    let doctor = text(&run(&["doctor"]).stdout);
    let range = format!("full range (uids {}-", sub_uid.outside);
    assert!(
        doctor
            .lines()
            .any(|l| l.contains("id mapping") && l.contains(&range)),
        "{doctor}"
    );
    let built: serde_json::Value =
        serde_json::from_str(&cli(&["--json", "build", &project.display().to_string()])).unwrap();
    let id = built["id"].as_str().unwrap().to_string();
    // A directory the user cannot even list on the host, holding a mode-0000 file.
    cli(&[
        "exec",
        &id,
        "--",
        "sh",
        "-c",
        "mkdir /apt && touch /apt/f && chmod 000 /apt/f && chmod 700 /apt && chown -R 5:5 /apt",
    ]);
    let env_dir = dir.path().join("store/envs").join(&id);
    let owned = env_dir.join("upper/apt");
    assert_eq!(fs::metadata(&owned).unwrap().uid(), sub_uid.outside + 4);
    assert!(
        fs::read_dir(&owned).is_err(),
        "the host user could list {}",
        owned.display()
    );
    cli(&["destroy", &id]);
    assert!(!env_dir.exists(), "{} is still there", env_dir.display());
}

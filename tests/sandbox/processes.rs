//! Process lifetimes: nothing of the sandbox outlives the program, the helper or its parent.

use std::fs;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use karapace_tui::sandbox::{self, IdMapping};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::{helper, ready, text, wait_output, Scratch};

/// The pid namespace inode of the sandbox, as the program printed it (`pid:[N]`).
fn ns_processes(ns: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let link = entry.path().join("ns/pid");
        if fs::read_link(&link).is_ok_and(|l| l.to_string_lossy() == ns) {
            found.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    found
}

#[test]
fn background_processes_die_with_the_program() {
    if !ready("background_processes") {
        return;
    }
    let scratch = Scratch::new();
    let cmd = "ls -l /proc/self/ns/pid; sleep 1000 & sleep 1000 & echo started";
    let out = scratch.run(&scratch.spec(&["sh", "-c", cmd]));
    let stdout = text(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("started"),
        "{stdout}{}",
        text(&out.stderr)
    );
    let ns = stdout
        .split("-> ")
        .nth(1)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .trim();
    assert!(ns.starts_with("pid:["), "{ns}");
    assert_eq!(
        ns_processes(ns),
        Vec::<String>::new(),
        "processes survived in {ns}"
    );
}

/// Reads one line from a child's stdout.
pub(super) fn read_line(reader: &mut impl BufRead) -> String {
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    line.trim().to_string()
}

#[test]
fn sigterm_to_the_helper_reaches_the_program() {
    if !ready("sigterm_forwarded") {
        return;
    }
    let scratch = Scratch::new();
    let mut child = scratch.start(&scratch.spec(&["sh", "-c", "echo ready; exec sleep 1000"]));
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    assert_eq!(read_line(&mut stdout), "ready");
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let out = wait_output(child);
    assert_eq!(out.status.code(), Some(128 + 15), "{}", text(&out.stderr));
}

pub(super) fn ppid_of(pid: &str) -> Option<String> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let mut fields = after.split_whitespace();
    let state = fields.next()?;
    (state != "Z").then(|| fields.next().map(String::from))?
}

pub(super) fn alive_descendants(root: &str) -> Vec<String> {
    let all: Vec<(String, String)> = fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_string_lossy().into_owned();
            Some((ppid_of(&pid)?, pid))
        })
        .collect();
    let mut found = vec![root.to_string()];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i].clone();
        found.extend(
            all.iter()
                .filter(|(pp, _)| *pp == parent)
                .map(|(_, p)| p.clone()),
        );
        i += 1;
    }
    found.retain(|p| ppid_of(p).is_some());
    found
}

#[test]
fn killing_the_parent_kills_the_helper_and_the_program() {
    if !ready("parent_killed") {
        return;
    }
    let scratch = Scratch::new();
    let mut spec = scratch.spec(&["sh", "-c", "echo ready; exec sleep 1000"]);
    // The shell cannot write a subordinate range's maps: map only our own ids
    // (subordinate.rs covers a spawner that dies while the helper waits for its maps).
    if let IdMapping::Subordinate { uid, gid, .. } = spec.ids {
        spec.ids = IdMapping::SingleId { uid, gid };
    }
    let plan_file = sandbox::PlanFile::write(&spec.plan(), scratch.dir.path()).unwrap();
    let mut parent = Command::new("sh")
        .args(["-c", r#""$0" __sandbox-init "$1" & echo $!; wait"#])
        .arg(helper())
        .arg(plan_file.hand_over())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(parent.stdout.take().unwrap());
    let helper_pid = read_line(&mut stdout);
    assert_eq!(read_line(&mut stdout), "ready");
    let tree = alive_descendants(&helper_pid);
    assert!(tree.len() >= 3, "helper, stage 2 and the program: {tree:?}");
    parent.kill().unwrap();
    parent.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while tree.iter().any(|p| ppid_of(p).is_some()) {
        assert!(
            Instant::now() < deadline,
            "still alive after the parent's SIGKILL: {tree:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

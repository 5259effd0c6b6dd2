//! A sandbox whose stdin is a terminal: the terminal is bound as /dev/console, so ttyname(3)
//! finds it (`tty`), its size is the caller's (`stty size`), and a resize of the outer
//! terminal reaches the program as SIGWINCH (it is the same terminal, not a copy).

use std::io::Read;
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

use karapace_tui::sandbox::{self, IdMapping, PlanFile};
use portable_pty::{native_pty_system, CommandBuilder, MasterPty, PtySize};

use super::{helper, ready, Scratch};

fn size(rows: u16, cols: u16) -> PtySize {
    PtySize {
        rows,
        cols,
        pixel_width: 0,
        pixel_height: 0,
    }
}

/// Lines written to the terminal, without the `\r` of its output processing.
fn lines_of(master: &dyn MasterPty) -> Receiver<String> {
    let mut reader = master.try_clone_reader().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut pending = Vec::new();
        let mut buf = [0u8; 4096];
        // EOF or EIO once every process holding the terminal has exited.
        while let Ok(n @ 1..) = reader.read(&mut buf) {
            pending.extend_from_slice(&buf[..n]);
            while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                let line = String::from_utf8_lossy(&line).trim_end().to_string();
                if tx.send(line).is_err() {
                    return;
                }
            }
        }
    });
    rx
}

/// The next line, failing (not hanging) if the sandbox stops talking.
fn next(lines: &Receiver<String>, what: &str) -> String {
    lines
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("no line from the terminal while waiting for {what}: {e}"))
}

const PROGRAM: &str = "tty; stty size; trap 'stty size; exit 0' WINCH; echo ready; \
                       while :; do sleep 1; done";

#[test]
fn the_terminal_is_dev_console_and_resizes_reach_the_program() {
    if !ready("terminal_console") {
        return;
    }
    let pair = native_pty_system().openpty(size(31, 97)).unwrap();
    let lines = lines_of(pair.master.as_ref());
    // The pty's name as the spawner sees it, from `tty` run on it.
    let mut tty = CommandBuilder::new("tty");
    tty.cwd("/");
    let mut first = pair.slave.spawn_command(tty).unwrap();
    assert!(first.wait().unwrap().success());
    let pts = next(&lines, "the pty's name");
    assert!(pts.starts_with("/dev/pts/"), "{pts}");

    let scratch = Scratch::new();
    let mut spec = scratch.spec(&["sh", "-c", PROGRAM]);
    spec.console = Some(pts.clone());
    // Started through `helper_args`, nobody writes a subordinate range's maps (that needs the
    // spawner's channel): this test is about the terminal, so map the caller's ids only.
    if matches!(spec.ids, IdMapping::Subordinate { .. }) {
        spec.ids = IdMapping::SingleId {
            uid: nix::unistd::getuid().as_raw(),
            gid: nix::unistd::getgid().as_raw(),
        };
    }
    let before = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let plan_file = PlanFile::write(&spec.plan(), scratch.dir.path()).unwrap();
    let mut cmd = CommandBuilder::new(helper());
    cmd.args(sandbox::helper_args(&plan_file));
    cmd.env_clear();
    cmd.cwd("/");
    // portable-pty makes the pty the helper's controlling terminal (setsid, TIOCSCTTY), as
    // the caller's shell does for `karapace-tui enter`.
    let mut child = pair.slave.spawn_command(cmd).unwrap();
    plan_file.hand_over();
    drop(pair.slave);

    assert_eq!(next(&lines, "tty"), "/dev/console", "ttyname(3) inside");
    assert_eq!(next(&lines, "stty size"), "31 97");
    assert_eq!(next(&lines, "ready"), "ready");
    pair.master.resize(size(40, 120)).unwrap();
    assert_eq!(next(&lines, "the size after SIGWINCH"), "40 120");
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let after = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert_eq!(before, after, "the host's mount table changed");
}

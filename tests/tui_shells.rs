//! Shells in the terminal UI, end to end: the real binary on a pseudo-terminal opens a login
//! shell inside an environment (Enter), the shell has the whole screen, Ctrl-] detaches back
//! to the dashboard while it keeps running, the list of shells re-attaches, and its exit
//! status is shown. On the mock backend (a host shell: `SHELL=/bin/sh`) everywhere; on the
//! namespace backend with the debootstrap image where the kernel allows it (else a visible
//! `SKIPPED:` line, or a failure under `KARAPACE_REQUIRE_SANDBOX=1`).

mod util;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use util::pty::{Key, Pty, PtyCommand};
use util::{Fixture, TEST_USER};

/// The detach key.
const DETACH: Key = Key::Ctrl(']');

/// The TUI with a mock environment `alpha` selected; shells are `/bin/sh`.
fn open_with_alpha(fx: &Fixture) -> Pty {
    fx.write_manifest("alpha", "rolling", &[]);
    fx.build("alpha");
    let mut tui = PtyCommand::new(&fx.store(), &fx.home(), fx.root())
        .env("SHELL", "/bin/sh")
        .spawn();
    tui.wait_for("Details: alpha");
    tui
}

/// The text of the row the cursor is on.
fn cursor_row(screen: &vt100::Screen) -> String {
    let (row, _) = screen.cursor_position();
    let (_, cols) = screen.size();
    screen.contents_between(row, 0, row, cols)
}

/// Wait for a shell prompt (`$ ` or `# `) with the cursor after it.
#[track_caller]
fn wait_prompt(tui: &mut Pty) {
    tui.wait_until("a shell prompt at the cursor", |s| {
        let row = cursor_row(s);
        row.ends_with("$ ") || row.ends_with("# ")
    });
}

/// Wait for a row that is exactly `text` (not the command line that printed it).
#[track_caller]
fn wait_line(tui: &mut Pty, text: &str) {
    tui.wait_until(&format!("a line `{text}`"), |s| {
        s.contents().lines().any(|l| l.trim_end() == text)
    });
}

/// Type a command line into the shell.
fn run(tui: &mut Pty, line: &str) {
    tui.send(line);
    tui.key(Key::Enter);
}

#[test]
fn a_mock_shell_opens_detaches_reattaches_and_reports_its_exit_status() {
    let fx = Fixture::new();
    let mut tui = open_with_alpha(&fx);

    // Enter opens a login shell in the selection; it has the whole screen and says how to
    // come back.
    tui.key(Key::Enter);
    tui.wait_for("Ctrl-] detaches");
    wait_prompt(&mut tui);
    run(&mut tui, "echo hello");
    wait_line(&mut tui, "hello");
    assert!(
        !tui.screen().contains("Environments ("),
        "the dashboard is still drawn under the shell\n{}",
        tui.dump()
    );

    // Ctrl-] detaches: the dashboard is back, the shell still runs, its screen in the
    // details pane and its session counted in the list.
    tui.key(DETACH);
    tui.wait_for("detached from shell #1 in alpha");
    tui.wait_for("shell #1 running");
    tui.wait_until("alpha counted as running with one session", |s| {
        s.contents().lines().any(|l| {
            l.starts_with("alpha ") && l.contains("running") && l.trim_end().ends_with(" 1")
        })
    });
    // The detach key itself never reached the shell: typing goes on where it was.
    // `S` lists the shells; Enter re-attaches and the shell's screen comes back as it was.
    tui.send("S");
    tui.wait_for(" Shells ");
    tui.wait_for("#1   alpha  running");
    tui.key(Key::Enter);
    tui.wait_gone(" Shells ");
    wait_line(&mut tui, "hello");
    tui.wait_gone("Environments (");
    wait_prompt(&mut tui);

    // Keys reach the shell unchanged: Ctrl-C interrupts a program in it, not the UI. (Only
    // once the program runs: the terminal discards what was typed ahead of a Ctrl-C.)
    run(&mut tui, "echo started; sleep 30; echo slept");
    wait_line(&mut tui, "started");
    tui.key(Key::Ctrl('c'));
    wait_prompt(&mut tui);
    assert!(!tui.screen().contains("\nslept"), "{}", tui.dump());

    // Its exit status, when it ends, is shown on the dashboard (and the session is kept to
    // be dismissed).
    run(&mut tui, "exit 3");
    tui.wait_for("shell #1 in alpha ended");
    tui.wait_for("exit status 3");
    tui.key(Key::Esc);
    tui.wait_for("[shell #1 alpha] ended: exit status 3");
    tui.send("S");
    tui.wait_for("#1   alpha  exit status 3");
    tui.send("x");
    tui.wait_for("No shells yet");
    tui.key(Key::Esc);
    tui.wait_gone(" Shells ");

    // Nothing runs any more: `q` quits at once, the terminal restored.
    tui.send("q");
    let status = tui.wait_exit();
    assert!(status.success(), "{status:?}\n{}", tui.dump());
    assert!(tui.raw().ends_with(b"\x1b[?1049l"), "{}", tui.dump());
}

#[test]
fn a_full_screen_program_keeps_its_screen_across_detach_and_reattach() {
    let fx = Fixture::new();
    let mut tui = open_with_alpha(&fx);
    tui.key(Key::Enter);
    wait_prompt(&mut tui);
    run(&mut tui, "echo before");
    wait_line(&mut tui, "before");
    // A program on the alternate screen (as vim or htop), waiting for a line; mouse
    // reporting on, as such programs switch it on. (Its texts are spelt so that the command
    // line does not show them.)
    run(
        &mut tui,
        "printf '\\033[?1049h\\033[?1000h\\033[H\\033[2JFULL\\040SCREEN'; read x; \
         printf '\\033[?1000l\\033[?1049l'; echo af\\ter",
    );
    tui.wait_for("FULL SCREEN");
    tui.wait_gone("before");
    tui.key(DETACH);
    tui.wait_for("detached from shell #1");
    // The dashboard is back on the UI's own screen, the program's modes switched off.
    tui.wait_for("Details: alpha");
    let raw = tui.raw();
    let back = raw
        .windows(b"\x1b[?1000l".len())
        .rposition(|w| w == b"\x1b[?1000l");
    assert!(back.is_some(), "mouse reporting left on\n{}", tui.dump());
    tui.key(DETACH);
    // Re-attached: the program's screen as it was, then its own way back to the shell's.
    tui.wait_for("FULL SCREEN");
    tui.wait_gone("Details: alpha");
    tui.key(Key::Enter);
    wait_line(&mut tui, "after");
    tui.wait_for("before");
    tui.wait_gone("FULL SCREEN");
    run(&mut tui, "exit");
    tui.wait_for("shell #1 in alpha ended: exit status 0");
    tui.send("q");
    assert!(tui.wait_exit().success(), "{}", tui.dump());
}

#[test]
fn quitting_with_a_running_shell_asks_and_ends_it() {
    let fx = Fixture::new();
    let mut tui = open_with_alpha(&fx);
    tui.key(Key::Enter);
    wait_prompt(&mut tui);
    let pid_file = fx.path("shell.pid");
    run(&mut tui, &format!("echo $$ > {}", pid_file.display()));
    wait_prompt(&mut tui);
    tui.key(DETACH);
    tui.wait_for("detached from shell #1");
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .expect("the shell wrote its pid")
        .trim()
        .parse()
        .expect("a pid");

    tui.send("q");
    tui.wait_for("Quit?");
    tui.wait_for("Open: shell #1 in alpha");
    tui.send("n");
    tui.wait_gone("Quit?");
    tui.send("q");
    tui.wait_for("Quit?");
    tui.send("y");
    let status = tui.wait_exit();
    assert!(status.success(), "{status:?}\n{}", tui.dump());
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s.contains(") Z ")),
        "the shell (pid {pid}) outlived the UI"
    );
    assert_eq!(fx.row("alpha")["state"], "built", "its session ended");
}

#[test]
fn several_shells_run_at_once_and_a_resize_reaches_them() {
    let fx = Fixture::new();
    fx.write_manifest("beta", "rolling", &["git"]);
    fx.build("beta");
    let mut tui = open_with_alpha(&fx);
    tui.key(Key::Enter);
    wait_prompt(&mut tui);
    run(&mut tui, "echo first");
    wait_line(&mut tui, "first");
    tui.key(DETACH);
    tui.wait_for("detached from shell #1");
    // A second one in the same environment, and a third in another.
    tui.key(Key::Enter);
    wait_prompt(&mut tui);
    tui.key(DETACH);
    tui.wait_for("detached from shell #2");
    tui.send("j");
    tui.wait_for("Details: beta");
    tui.key(Key::Enter);
    wait_prompt(&mut tui);
    // The shell sees the terminal's size, and a resize while attached reaches it (the shell
    // waits for it: the resize travels as a signal and an event while keys go straight).
    run(&mut tui, "stty size");
    wait_line(&mut tui, "24 80");
    run(
        &mut tui,
        "while [ \"$(stty size)\" = '24 80' ]; do sleep 0.05; done; stty size",
    );
    tui.resize(30, 100);
    wait_line(&mut tui, "30 100");
    wait_prompt(&mut tui);
    tui.key(DETACH);
    tui.wait_for("detached from shell #3 in beta");
    tui.send("S");
    tui.wait_for("#1   alpha  running");
    tui.wait_for("#2   alpha  running");
    tui.wait_for("#3   beta   running");
    // Re-attach to the first: its screen is as it left it.
    tui.send("g");
    tui.key(Key::Enter);
    wait_line(&mut tui, "first");
    run(&mut tui, "stty size");
    wait_line(&mut tui, "30 100");
    tui.key(DETACH);
    tui.wait_for("detached from shell #1");
    tui.send("q");
    tui.wait_for("Quit?");
    tui.send("y");
    assert!(tui.wait_exit().success(), "{}", tui.dump());
}

/// A namespace manifest on the test image.
fn namespace_manifest(tarball: &Path) -> String {
    format!(
        "manifest_version = 1\n[base]\nimage = \"{}\"\n[runtime]\nbackend = \"namespace\"\n",
        tarball.display()
    )
}

/// In a TUI showing the namespace environment `deb`: a shell inside it, on its console,
/// detached and re-attached, ending with status 3; then quit.
fn namespace_shell(tui: &mut Pty) {
    tui.wait_for("Details: deb");
    tui.key(Key::Enter);
    tui.wait_for("Ctrl-] detaches");
    wait_prompt(tui);
    run(tui, "echo hello");
    wait_line(tui, "hello");
    // The UI's pseudo-terminal is the sandbox's console.
    run(tui, "tty");
    wait_line(tui, "/dev/console");
    // Inside the image, not on the host.
    run(tui, "cat /etc/debian_version");
    tui.wait_until("the image's Debian version", |s| {
        s.contents().lines().any(|l| l.starts_with("12."))
    });
    tui.key(DETACH);
    tui.wait_for("detached from shell #1 in deb");
    tui.wait_for("shell #1 running");
    tui.send("S");
    tui.wait_for("#1   deb  running");
    tui.key(Key::Enter);
    tui.wait_gone(" Shells ");
    wait_line(tui, "/dev/console");
    wait_prompt(tui);
    run(tui, "exit 3");
    tui.wait_for("shell #1 in deb ended");
    tui.wait_for("exit status 3");
    tui.key(Key::Esc);
    tui.wait_gone("shell #1 in deb ended");
    tui.send("q");
    assert!(tui.wait_exit().success(), "{}", tui.dump());
}

#[test]
fn a_namespace_shell_runs_inside_the_environment_on_its_console() {
    let Some((fx, tarball)) = util::namespace_fixture("tui_shells", "a_namespace_shell") else {
        return;
    };
    let dir = fx.path("deb");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("karapace.toml"), namespace_manifest(&tarball)).expect("write");
    fx.build("deb");
    let mut tui = PtyCommand::new(&fx.store(), &fx.home(), fx.root()).spawn();
    namespace_shell(&mut tui);
    assert_eq!(fx.row("deb")["state"], "built", "its session ended");
}

/// The ordinary user of the rootless runs, created if missing.
fn test_user() -> Result<nix::unistd::User, String> {
    util::ensure_test_user()?;
    nix::unistd::User::from_name(TEST_USER)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("useradd made no user {TEST_USER}"))
}

/// Run as root, the namespace shell again as an ordinary user (the sandbox's main use is
/// rootless; CI runs as root): the UI, its shells and their sandbox all as that user.
#[test]
fn a_namespace_shell_runs_rootless_too() {
    let test = "a_namespace_shell_rootless";
    if !nix::unistd::geteuid().is_root() {
        // Not a skip: the test above is the rootless one in this run.
        return;
    }
    let Some((_fx, tarball)) = util::namespace_fixture("tui_shells", test) else {
        return;
    };
    let user = match test_user() {
        Ok(user) => user,
        Err(why) => {
            if std::env::var("KARAPACE_REQUIRE_SANDBOX").as_deref() == Ok("1") {
                panic!("KARAPACE_REQUIRE_SANDBOX=1 but {why}");
            }
            util::visible(&format!("SKIPPED: tui_shells::{test}: {why}"));
            return;
        }
    };
    // Everything in a directory the user can reach; the store, home and project are the user's.
    let root = tempfile::Builder::new()
        .prefix("karapace-tui-shells-")
        .tempdir()
        .expect("tempdir");
    let dir = root.path();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let bin = dir.join("karapace-tui");
    std::fs::copy(util::BIN, &bin).expect("copy the binary");
    let (store, home, project) = (dir.join("store"), dir.join("home"), dir.join("deb"));
    for d in [&store, &home, &project] {
        std::fs::create_dir(d).expect("mkdir");
    }
    for d in [&store, &home, &project] {
        std::os::unix::fs::chown(d, Some(user.uid.as_raw()), Some(user.gid.as_raw()))
            .expect("chown to the test user");
    }
    std::fs::write(project.join("karapace.toml"), namespace_manifest(&tarball)).expect("write");
    // SHELL as a login sets it (the test user's passwd entry says /bin/sh, and dash inside
    // the sandbox cannot give the terminal back to its initial process group on exit, which
    // turns `exit 3` into status 2: a sandbox matter, not the UI's).
    let vars: [(&str, &Path); 4] = [
        ("KARAPACE_STORE", &store),
        ("HOME", &home),
        ("TMPDIR", Path::new("/tmp")),
        ("SHELL", Path::new("/bin/bash")),
    ];
    let build = Command::new("runuser")
        .args(["-u", TEST_USER, "--", "env", "-i"])
        .arg(format!(
            "PATH={}",
            std::env::var("PATH").unwrap_or_default()
        ))
        .args(vars.iter().map(|(k, v)| format!("{k}={}", v.display())))
        .arg(&bin)
        .arg("build")
        .arg(&project)
        .current_dir(dir)
        .output()
        .expect("runuser");
    assert!(
        build.status.success(),
        "build as {TEST_USER}: {}",
        String::from_utf8_lossy(&build.stderr)
    );
    let mut tui = PtyCommand::as_user(TEST_USER, &bin, &vars, dir).spawn();
    namespace_shell(&mut tui);
}

//! The namespace backend's run-time choices through the CLI, on the debootstrap'd Debian
//! image: `enter` on a terminal (the terminal is the sandbox's /dev/console), `lo` up with
//! `network_isolation`, and the root overlay driver (`KARAPACE_OVERLAY`, reported by
//! `doctor`). Prerequisites as in tests/namespace.rs: a missing one prints `SKIPPED:`, or
//! fails under `KARAPACE_REQUIRE_SANDBOX=1`.

mod util;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use karapace_tui::sandbox::check;
use portable_pty::{native_pty_system, CommandBuilder, PtySize};
use util::{Fixture, BIN};

fn visible(line: &str) {
    let mut err = std::io::stderr();
    writeln!(err, "{line}").expect("write to stderr");
}

fn skip(test: &str, why: &str) {
    let required = std::env::var("KARAPACE_REQUIRE_SANDBOX").as_deref() == Ok("1");
    assert!(!required, "{test}: KARAPACE_REQUIRE_SANDBOX=1 but {why}");
    visible(&format!("SKIPPED: namespace_runtime::{test}: {why}"));
}

/// The namespace backend's `doctor` row (as JSON), with extra environment variables.
fn doctor_row(fx: &Fixture, env: &[(&str, &str)]) -> serde_json::Value {
    let mut cmd = fx.cmd(["--json", "doctor"]);
    for (key, value) in env {
        cmd = cmd.env(key, value);
    }
    // `doctor`'s exit code says whether the default backend runs; the row is what counts.
    let doctor = cmd.run().json();
    doctor["backends"]
        .as_array()
        .and_then(|b| b.iter().find(|b| b["backend"] == "namespace"))
        .cloned()
        .unwrap_or_default()
}

/// A fixture with an environment `deb` built from the tarball, if the backend works here.
fn built(test: &str, extra: &str) -> Option<(Fixture, String)> {
    let Some(tarball) = std::env::var_os("KARAPACE_TEST_ROOTFS_TARBALL").map(PathBuf::from) else {
        skip(
            test,
            "KARAPACE_TEST_ROOTFS_TARBALL is not set (.ci/run makes it)",
        );
        return None;
    };
    let fx = Fixture::new();
    let row = doctor_row(&fx, &[]);
    if row["available"] != true {
        skip(
            test,
            &format!("the namespace backend is unavailable: {}", row["detail"]),
        );
        return None;
    }
    let manifest = format!(
        "manifest_version = 1\n[base]\nimage = \"{}\"\n[runtime]\nbackend = \"namespace\"\n{extra}",
        tarball.display()
    );
    std::fs::create_dir_all(fx.path("deb")).expect("mkdir");
    std::fs::write(fx.path("deb/karapace.toml"), manifest).expect("write manifest");
    let id = fx.build("deb")["id"].as_str().expect("id").to_string();
    Some((fx, id))
}

/// `enter deb` on a new terminal of 33×101 with `SHELL` set, typing `input`; the exit code
/// and what the terminal showed.
fn enter_typing(fx: &Fixture, shell: &str, input: &[u8]) -> (u32, String) {
    let size = PtySize {
        rows: 33,
        cols: 101,
        pixel_width: 0,
        pixel_height: 0,
    };
    let pair = native_pty_system().openpty(size).expect("openpty");
    let mut cmd = CommandBuilder::new(BIN);
    cmd.args(["enter", "deb"]);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("KARAPACE_") {
            cmd.env_remove(&key);
        }
    }
    cmd.env("KARAPACE_STORE", fx.store());
    cmd.env("HOME", fx.home());
    cmd.env("TERM", "dumb");
    cmd.env("SHELL", shell);
    cmd.cwd(fx.root());
    let mut child = pair.slave.spawn_command(cmd).expect("spawn enter");
    drop(pair.slave);
    let mut reader = pair.master.try_clone_reader().expect("reader");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut all = Vec::new();
        // Ends with EOF or EIO once nothing holds the terminal any more.
        drop(reader.read_to_end(&mut all));
        drop(tx.send(all));
    });
    let mut writer = pair.master.take_writer().expect("writer");
    writer.write_all(input).expect("type into the shell");
    let status = child.wait().expect("wait for enter");
    drop(writer);
    drop(pair.master);
    let output = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the terminal's output");
    let output = String::from_utf8_lossy(&output);
    (status.exit_code(), output.into_owned())
}

#[test]
fn enter_on_a_terminal_finds_it_as_dev_console() {
    let Some((fx, _)) = built("enter_on_a_terminal", "") else {
        return;
    };
    let (code, output) = enter_typing(&fx, "/bin/bash", b"tty; stty size; exit 3\n");
    let lines: Vec<&str> = output.lines().map(|l| l.trim_end_matches('\r')).collect();
    assert_eq!(code, 3, "{output}");
    assert!(lines.contains(&"/dev/console"), "{output}");
    assert!(lines.contains(&"33 101"), "{output}");
    // dash (Debian's /bin/sh) as the login shell: its job control gives the terminal back to
    // the group it found at start, which must be one it can see from inside.
    let (code, output) = enter_typing(&fx, "/bin/sh", b"exit 3\n");
    assert!(!output.contains("Cannot set tty process group"), "{output}");
    assert_eq!(code, 3, "{output}");
}

/// A listener on 127.0.0.1 and a client talking to it (perl-base is in every Debian image).
const TCP_ROUND_TRIP: &str = r#"use IO::Socket::INET;
my $l = IO::Socket::INET->new(Listen => 1, LocalAddr => "127.0.0.1", LocalPort => 0) or die "listen: $@\n";
my $c = IO::Socket::INET->new(PeerAddr => "127.0.0.1", PeerPort => $l->sockport) or die "connect: $@\n";
my $s = $l->accept or die "accept: $!\n";
print $c "ping\n"; $c->flush; print "got " . <$s>;"#;

#[test]
fn an_isolated_network_reaches_itself_over_loopback() {
    let Some((fx, _)) = built("isolated_loopback", "network_isolation = true\n") else {
        return;
    };
    let out = fx.run(&["exec", "deb", "--", "perl", "-e", TCP_ROUND_TRIP]);
    assert_eq!(out.ok().stdout(), "got ping\n");
}

/// The SigIgn mask of /proc/self/status, as printed by `grep SigIgn`.
fn ignored_signals(line: &str) -> u64 {
    let hex = line
        .trim()
        .strip_prefix("SigIgn:")
        .expect("a SigIgn line")
        .trim();
    u64::from_str_radix(hex, 16).expect("a hex mask")
}

#[test]
fn programs_start_with_sigpipe_at_its_default_action_forked_or_executed() {
    let Some((fx, _)) = built("sigpipe_default", "") else {
        return;
    };
    // `yes` must die of SIGPIPE quietly once `head` has gone, as on the host. The CLI starts
    // the sandbox by forking itself when it runs one thread, and by executing its helper
    // otherwise (KARAPACE_SANDBOX_EXEC_HELPER=1 forces that): both paths are checked.
    let script = "yes | head -n 1; grep SigIgn /proc/self/status";
    for exec_helper in ["0", "1"] {
        let out = fx
            .cmd(["exec", "deb", "--", "sh", "-c", script])
            .env("KARAPACE_SANDBOX_EXEC_HELPER", exec_helper)
            .run();
        out.ok();
        let stdout = out.stdout();
        let mut lines = stdout.lines();
        assert_eq!(lines.next(), Some("y"), "{out:?}");
        let mask = ignored_signals(lines.next().expect("SigIgn line"));
        assert_eq!(
            mask & (1 << (13 - 1)),
            0,
            "SIGPIPE is ignored inside: {out:?}"
        );
        assert!(!out.stderr.contains("Broken pipe"), "{out:?}");
    }
}

/// Connects to 127.0.0.1:PORT and prints what the other side says, or why it could not.
fn tcp_probe(port: u16) -> String {
    format!(
        r#"use IO::Socket::INET;
my $c = IO::Socket::INET->new(PeerAddr => "127.0.0.1", PeerPort => {port}, Timeout => 10);
if ($c) {{ print "reached " . <$c>; }} else {{ print "not reached: $@\n"; }}"#
    )
}

#[test]
fn an_isolated_environment_cannot_reach_a_service_on_the_hosts_loopback() {
    let Some((fx, _)) = built("host_loopback", "network_isolation = true\n") else {
        return;
    };
    // A service on the host's 127.0.0.1, answering every connection.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen on the host");
    let port = listener.local_addr().expect("address").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            drop(stream.write_all(b"the host\n"));
        }
    });
    // The control: the same image without isolation shares the host's network and reaches it
    // (so the probe can tell the difference).
    let manifest = std::fs::read_to_string(fx.path("deb/karapace.toml")).expect("manifest");
    std::fs::create_dir_all(fx.path("open")).expect("mkdir");
    std::fs::write(
        fx.path("open/karapace.toml"),
        manifest.replace("network_isolation = true\n", ""),
    )
    .expect("write manifest");
    fx.build("open");
    let open = fx.run(&["exec", "open", "--", "perl", "-e", &tcp_probe(port)]);
    assert_eq!(open.ok().stdout(), "reached the host\n");
    // Isolated: its 127.0.0.1 is its own `lo`, where nothing listens on that port.
    let isolated = fx.run(&["exec", "deb", "--", "perl", "-e", &tcp_probe(port)]);
    let said = isolated.ok().stdout();
    assert!(said.starts_with("not reached"), "{isolated:?}");
    assert!(said.contains("refused"), "{isolated:?}");
}

#[test]
fn a_host_file_outside_the_mounts_cannot_be_reached_from_inside() {
    let Some((fx, _)) = built("host_path_outside_mounts", "") else {
        return;
    };
    // On the host, beside the store (under the host's /tmp, which the sandbox replaces with
    // its own tmpfs), in no mount of the manifest.
    let secret = fx.path("secret.txt");
    std::fs::write(&secret, "the host's secret\n").expect("write the secret");
    let secret = secret.display().to_string();
    // The direct path, through the roots /proc shows, and climbing above the root.
    let script = format!(
        "for p in '{secret}' '/proc/self/root{secret}' '/proc/1/root{secret}' \
         '/../../..{secret}' '/proc/1/cwd/../../../..{secret}'; do \
           if cat \"$p\" 2>/dev/null; then echo \"LEAK via $p\"; fi; \
         done; echo checked"
    );
    let out = fx.run(&["exec", "deb", "--", "sh", "-c", &script]);
    assert_eq!(out.ok().stdout(), "checked\n", "{out:?}");
    // The control: the same file is readable once the manifest mounts its directory.
    let dir = fx.root().display().to_string();
    let manifest = std::fs::read_to_string(fx.path("deb/karapace.toml")).expect("manifest");
    std::fs::create_dir_all(fx.path("mounted")).expect("mkdir");
    std::fs::write(
        fx.path("mounted/karapace.toml"),
        format!("{manifest}[mounts]\nhost = \"{dir}:/host:ro\"\n"),
    )
    .expect("write manifest");
    fx.build("mounted");
    let out = fx.run(&["exec", "mounted", "--", "cat", "/host/secret.txt"]);
    assert_eq!(out.ok().stdout(), "the host's secret\n");
}

fn fuse_daemons_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline);
        let program = cmdline.split('\0').next().unwrap_or("");
        if program.ends_with("fuse-overlayfs") && cmdline.contains(needle) {
            found.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    found
}

#[test]
fn karapace_overlay_fuse_mounts_the_root_with_fuse_overlayfs() {
    let test = "karapace_overlay_fuse";
    let usable = match check::fuse_overlayfs() {
        Ok(_) => true,
        Err(why) if why.contains("not installed") => {
            skip(test, &why);
            return;
        }
        Err(_) => false,
    };
    let Some((fx, id)) = built(test, "") else {
        return;
    };
    if !usable {
        // Installed, but /dev/fuse is not ours: refused before anything starts.
        let out = fx
            .cmd(["exec", "deb", "--", "true"])
            .env("KARAPACE_OVERLAY", "fuse")
            .run();
        assert_ne!(out.code(), Some(0), "{out:?}");
        assert!(out.stderr.contains("/dev/fuse"), "{out:?}");
        assert!(out.stderr.contains("chmod 0666 /dev/fuse"), "{out:?}");
        return;
    }
    let row = doctor_row(&fx, &[("KARAPACE_OVERLAY", "fuse")]);
    let detail = row["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("usable (chosen by KARAPACE_OVERLAY=fuse)"),
        "{row}"
    );
    let script = "echo kept > /etc/fuse-test && grep ' / / ' /proc/self/mountinfo";
    let out = fx
        .cmd(["exec", "deb", "--", "sh", "-c", script])
        .env("KARAPACE_OVERLAY", "fuse")
        .run();
    assert!(out.ok().stdout().contains("fuse.fuse-overlayfs"), "{out:?}");
    let env_dir = fx.env_dir(&id);
    let upper = env_dir.join("upper/etc/fuse-test");
    assert_eq!(
        std::fs::read_to_string(&upper).expect("upper file"),
        "kept\n"
    );
    // Nothing of the session is left: no daemon, no mount on the host.
    let needle = env_dir.display().to_string();
    assert_eq!(fuse_daemons_mentioning(&needle), Vec::<String>::new());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(!mounts.contains(&needle), "{mounts}");
    // The kernel overlay reads what fuse-overlayfs wrote (plain files in upper/).
    let out = fx.run(&["exec", "deb", "--", "cat", "/etc/fuse-test"]);
    assert_eq!(out.ok().stdout(), "kept\n");
    sigkill_of_the_cli_leaves_nothing_behind(&fx, &needle);
    fx.run(&["destroy", "deb"]).ok();
    assert!(!env_dir.exists());
}

/// `exec` with a fuse-overlayfs root, killed with SIGKILL (the CLI alone, not its group):
/// the helper dies with it, the sandbox with the helper, and the daemon with the sandbox.
fn sigkill_of_the_cli_leaves_nothing_behind(fx: &Fixture, env_dir: &str) {
    let mut cli = fx
        .cmd(["exec", "deb", "--", "sleep", "1000"])
        .env("KARAPACE_OVERLAY", "fuse")
        .spawn_background();
    let deadline = Instant::now() + Duration::from_secs(30);
    // Until the program runs: then the root is mounted and every process is there.
    let sleeping = |pid: &String| {
        std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == b"sleep\x001000\x00")
    };
    while !descendants(cli.id()).iter().any(sleeping) {
        if let Some(status) = cli.try_wait().expect("try_wait") {
            panic!("exec ended before its program started: {status:?}");
        }
        assert!(Instant::now() < deadline, "the program never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let tree = descendants(cli.id());
    let daemons = fuse_daemons_mentioning(env_dir);
    assert_eq!(daemons.len(), 1, "{daemons:?}");
    assert!(tree.contains(&daemons[0]), "{daemons:?} not in {tree:?}");
    cli.kill().expect("SIGKILL the CLI");
    cli.wait().expect("reap the CLI");
    let deadline = Instant::now() + Duration::from_secs(10);
    while tree.iter().any(|pid| alive(pid)) {
        assert!(
            Instant::now() < deadline,
            "left behind after SIGKILL of the CLI: {:?}",
            tree.iter().filter(|pid| alive(pid)).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(fuse_daemons_mentioning(env_dir), Vec::<String>::new());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(!mounts.contains(env_dir), "{mounts}");
}

/// The parent pid of a live (not zombie) process.
fn parent_of(pid: &str) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    let state = fields.next()?;
    (state != "Z").then(|| fields.next().map(String::from))?
}

fn alive(pid: &str) -> bool {
    parent_of(pid).is_some()
}

/// Every live process below `root` (the daemon is reparented to the sandbox's PID 1).
fn descendants(root: u32) -> Vec<String> {
    let all: Vec<(String, String)> = std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_string_lossy().into_owned();
            Some((parent_of(&pid)?, pid))
        })
        .collect();
    let mut found = vec![root.to_string()];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i].clone();
        found.extend(
            all.iter()
                .filter(|(p, _)| *p == parent)
                .map(|(_, c)| c.clone()),
        );
        i += 1;
    }
    found.remove(0);
    found
}

#[test]
fn doctor_reports_both_overlay_drivers_and_a_refused_fuse_for_an_ordinary_user() {
    let fx = Fixture::new();
    let row = doctor_row(&fx, &[]);
    let detail = row["detail"].as_str().unwrap_or_default().to_string();
    if row["available"] != true {
        skip(
            "doctor_overlay_drivers",
            &format!("the backend is unavailable: {detail}"),
        );
        return;
    }
    // Both drivers are probed, each a check of its own (`crate::prereq`).
    let doctor = fx.cmd(["--json", "doctor"]).run().json();
    let checks = doctor["checks"].as_array().cloned().unwrap_or_default();
    for id in ["namespace.overlay", "namespace.fuse"] {
        assert!(checks.iter().any(|c| c["id"] == id), "{id}: {doctor}");
    }
    assert!(detail.contains("mounts ("), "{detail}");
    assert!(detail.contains("fuse-overlayfs"), "{detail}");
    let bad = doctor_row(&fx, &[("KARAPACE_OVERLAY", "sometimes")]);
    assert_eq!(bad["available"], false, "{bad}");
    assert!(bad["detail"]
        .as_str()
        .unwrap_or_default()
        .contains("KARAPACE_OVERLAY=sometimes"));
    if nix::unistd::geteuid().is_root() {
        as_ordinary_user_fuse_is_refused_naming_dev_fuse();
    }
}

/// `doctor` as the test user with `KARAPACE_OVERLAY=fuse`: where /dev/fuse is root-only (as
/// here) the backend is unavailable, naming the device and the fix.
fn as_ordinary_user_fuse_is_refused_naming_dev_fuse() {
    let test = "doctor_fuse_as_user";
    let user = "karapace-test";
    if !Command::new("id")
        .arg(user)
        .output()
        .is_ok_and(|o| o.status.success())
    {
        skip(
            test,
            &format!("no user {user} (tests/sandbox.rs creates it)"),
        );
        return;
    }
    if check::fuse_overlayfs().is_err() {
        skip(test, "fuse-overlayfs is not installed");
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("karapace-doctor-")
        .tempdir()
        .expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let bin = dir.path().join("karapace-tui");
    std::fs::copy(BIN, &bin).expect("copy the binary");
    let out = run_as(user, dir.path(), &bin);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let doc: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{e}: {stdout}{}", String::from_utf8_lossy(&out.stderr)));
    let row = doc["backends"]
        .as_array()
        .and_then(|b| b.iter().find(|b| b["backend"] == "namespace"))
        .cloned()
        .unwrap_or_default();
    if std::fs::metadata("/dev/fuse").is_ok_and(|m| m.permissions().mode() & 0o006 == 0o006) {
        // /dev/fuse is open to everyone here: fuse is usable rootless too.
        assert_eq!(row["available"], true, "{row}");
        return;
    }
    assert_eq!(row["available"], false, "{row}");
    let detail = row["detail"].as_str().unwrap_or_default();
    let fix = row["fix"].as_str().unwrap_or_default();
    assert!(detail.contains("/dev/fuse"), "{row}");
    assert!(fix.contains("chmod 0666 /dev/fuse"), "{row}");
}

fn run_as(user: &str, dir: &Path, bin: &Path) -> std::process::Output {
    Command::new("runuser")
        .args(["-u", user, "--", "env", "-i"])
        .arg(format!(
            "PATH={}",
            std::env::var("PATH").unwrap_or_default()
        ))
        .arg(format!("KARAPACE_STORE={}", dir.join("store").display()))
        .arg(format!("HOME={}", dir.display()))
        .arg("KARAPACE_OVERLAY=fuse")
        .arg("TMPDIR=/tmp")
        .arg(bin)
        .args(["--json", "doctor"])
        .current_dir(dir)
        .output()
        .expect("runuser")
}

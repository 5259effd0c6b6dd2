//! Several sessions in one running environment: the second joins the first's namespaces, the
//! first ending leaves the second running (and its command returns at once), `stop` ends them
//! all, and afterwards a session starts the environment afresh. Run as root and again as the
//! unprivileged user `karapace-test` (through `runuser`, with a store of its own).
//!
//! The environment's `/tmp` is a tmpfs of its running instance: a file written there by one
//! session and seen by another proves they share the instance, and its absence proves a cold
//! start.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use serde_json::Value;

use super::util::visible;
use super::{manifest, setup};

const TEST_USER: &str = "karapace-test";
/// Longer than any step takes on a loaded machine; only a hang reaches it.
const HUNG: Duration = Duration::from_secs(60);

/// Runs the binary with one store, as root or as [`TEST_USER`].
pub(super) struct Cli {
    bin: PathBuf,
    /// Holds the store, the home and the projects; removed on drop.
    dir: tempfile::TempDir,
    user: Option<&'static str>,
}

/// A finished run.
#[derive(Debug)]
pub(super) struct Run {
    pub(super) code: Option<i32>,
    pub(super) stdout: String,
    pub(super) stderr: String,
}

impl Cli {
    fn new(user: Option<&'static str>) -> Cli {
        let dir = tempfile::Builder::new()
            .prefix("karapace-sessions-")
            .tempdir()
            .expect("tempdir");
        fs::create_dir(dir.path().join("home")).expect("home");
        let mut bin = PathBuf::from(env!("CARGO_BIN_EXE_karapace-tui"));
        if let Some(user) = user {
            fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
            // The build directory may be private: the user gets its own copy of the binary.
            if !open_to_others(&bin, 0o005) {
                let copy = dir.path().join("karapace-tui");
                fs::copy(&bin, &copy).expect("copy the binary");
                bin = copy;
            }
            let status = Command::new("chown")
                .args(["-R", user])
                .arg(dir.path().join("home"))
                .status()
                .expect("chown");
            assert!(status.success());
        }
        Cli { bin, dir, user }
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    pub(super) fn store(&self) -> PathBuf {
        self.home().join("store")
    }

    fn command(&self, args: &[&str]) -> Command {
        self.command_with(&[], args)
    }

    /// [`Cli::command`] with extra environment variables.
    fn command_with(&self, vars: &[(&str, &str)], args: &[&str]) -> Command {
        let path = std::env::var("PATH").unwrap_or_default();
        let mut cmd = match self.user {
            None => {
                let mut cmd = Command::new(&self.bin);
                cmd.env_clear()
                    .env("PATH", path)
                    .env("HOME", self.home())
                    .env("KARAPACE_STORE", self.store())
                    .envs(vars.iter().copied());
                cmd
            }
            Some(user) => {
                // runuser keeps the caller's environment; `env -i` starts from nothing.
                let mut cmd = Command::new("runuser");
                cmd.args(["-u", user, "--", "env", "-i"])
                    .arg(format!("PATH={path}"))
                    .arg(format!("HOME={}", self.home().display()))
                    .arg(format!("KARAPACE_STORE={}", self.store().display()))
                    .args(vars.iter().map(|(k, v)| format!("{k}={v}")))
                    .arg(&self.bin);
                cmd
            }
        };
        cmd.args(args).current_dir(self.home()).process_group(0);
        cmd
    }

    /// Runs to the end, reading stdout and stderr to EOF: a process that keeps them open
    /// (a lingering sandbox that did not let go of them) is a hang, reported as such.
    pub(super) fn run(&self, args: &[&str]) -> Run {
        self.run_with(&[], args)
    }

    /// [`Cli::run`] with extra environment variables.
    fn run_with(&self, vars: &[(&str, &str)], args: &[&str]) -> Run {
        let child = self
            .command_with(vars, args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let group = Pid::from_raw(child.id() as i32);
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let sent = tx.send(child.wait_with_output());
            drop(sent);
        });
        match rx.recv_timeout(HUNG) {
            Ok(output) => Run::from(output.expect("wait")),
            Err(_) => {
                let killed = killpg(group, Signal::SIGKILL);
                panic!("`{}` hung (killed: {killed:?})", args.join(" "));
            }
        }
    }

    /// [`Cli::run`] on a thread, for a session that runs while the test does other things.
    fn start(&self, args: &[&str]) -> thread::JoinHandle<Run> {
        let cmd = self.command(args);
        let shown = args.join(" ");
        thread::spawn(move || run_command(cmd, &shown))
    }

    /// A background run whose three streams are /dev/null (to be killed by the test).
    pub(super) fn spawn(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn")
    }

    /// `exec deb -- sh -c SCRIPT`.
    pub(super) fn sh(&self, script: &str) -> Run {
        self.run(&["exec", "deb", "--", "sh", "-c", script])
    }

    /// The `list --json` row of `deb`.
    fn row(&self) -> Value {
        let out = self.run(&["--json", "list"]);
        out.expect_code(0);
        let rows: Value = serde_json::from_str(&out.stdout).expect("list --json");
        rows.as_array()
            .and_then(|r| r.iter().find(|r| r["name"] == "deb"))
            .cloned()
            .unwrap_or_else(|| panic!("no `deb` in {rows}"))
    }

    /// The environment's init record: (pid, start time), if one was written.
    fn init(&self, id: &str) -> Option<(i32, u64)> {
        let path = self.store().join("envs").join(id).join("init");
        let text = fs::read_to_string(path).ok()?;
        let mut fields = text.split_whitespace();
        Some((fields.next()?.parse().ok()?, fields.next()?.parse().ok()?))
    }
}

impl Drop for Cli {
    /// A test that fails while sessions of `deb` run (a waiting session, a background
    /// program) stops them, so that nothing of it runs on into the other tests.
    fn drop(&mut self) {
        if !thread::panicking() {
            return;
        }
        let stopped = self
            .command(&["stop", "deb"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        match stopped {
            Ok(status) if status.success() => {}
            other => eprintln!("cleanup after the failure: `stop deb` gave {other:?}"),
        }
    }
}

fn run_command(mut cmd: Command, shown: &str) -> Run {
    let output = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap_or_else(|e| panic!("`{shown}`: {e}"));
    Run::from(output)
}

impl Run {
    #[track_caller]
    pub(super) fn expect_code(&self, code: i32) -> &Run {
        assert_eq!(
            self.code,
            Some(code),
            "stdout: {}\nstderr: {}",
            self.stdout,
            self.stderr
        );
        self
    }
}

impl From<Output> for Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// Whether others have the `mode` bits on `path` and can search every directory above it.
fn open_to_others(path: &Path, mode: u32) -> bool {
    fs::metadata(path).is_ok_and(|m| m.mode() & mode == mode)
        && path
            .ancestors()
            .skip(1)
            .all(|p| fs::metadata(p).is_ok_and(|m| m.mode() & 0o001 != 0))
}

/// Whether the process with this pid and start time still runs (not a zombie).
fn alive(pid: i32, start_time: u64) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return false;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    fields.first().is_some_and(|s| *s != "Z" && *s != "X")
        && fields.get(19).and_then(|t| t.parse().ok()) == Some(start_time)
}

#[track_caller]
pub(super) fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + HUNG;
    while !done() {
        assert!(Instant::now() < deadline, "waited {HUNG:?} for {what}");
        thread::sleep(Duration::from_millis(50));
    }
}

/// A fresh `Cli` with a built `deb`, or `None` (after a visible SKIPPED) where the namespace
/// backend cannot run; returns the environment's id.
fn built(test: &str, user: Option<&'static str>) -> Option<(Cli, String)> {
    built_with(test, user, "")
}

/// [`built`] with `extra` manifest lines.
pub(super) fn built_with(
    test: &str,
    user: Option<&'static str>,
    extra: &str,
) -> Option<(Cli, String)> {
    let (_fx, tarball) = setup(test)?;
    let cli = Cli::new(user);
    if user.is_some() {
        if let Err(why) = user_can_run(&cli, &tarball) {
            let required = std::env::var("KARAPACE_REQUIRE_SANDBOX").as_deref() == Ok("1");
            assert!(!required, "KARAPACE_REQUIRE_SANDBOX=1 but {why}");
            visible(&format!("SKIPPED: namespace::{test}: {why}"));
            return None;
        }
    }
    let project = cli.home().join("deb");
    fs::create_dir(&project).expect("mkdir");
    fs::write(project.join("karapace.toml"), manifest(&tarball, extra)).expect("manifest");
    if let Some(user) = user {
        let status = Command::new("chown")
            .args(["-R", user])
            .arg(&project)
            .status()
            .expect("chown");
        assert!(status.success());
    }
    let out = cli.run(&["--json", "build", "deb"]);
    out.expect_code(0);
    let built: Value = serde_json::from_str(&out.stdout).expect("build --json");
    Some((cli, built["id"].as_str().expect("id").to_string()))
}

/// As the test user: it exists, can read the tarball, and its `doctor` finds the namespace
/// backend available.
fn user_can_run(cli: &Cli, tarball: &Path) -> Result<(), String> {
    let exists = Command::new("id").args(["-u", TEST_USER]).output();
    if !exists.is_ok_and(|o| o.status.success()) {
        return Err(format!(
            "the user {TEST_USER} does not exist (tests/sandbox.rs creates it)"
        ));
    }
    if !open_to_others(tarball, 0o004) {
        return Err(format!("{} is not readable by others", tarball.display()));
    }
    let doctor = cli.run(&["--json", "doctor"]);
    let report: Value = serde_json::from_str(&doctor.stdout).map_err(|e| format!("{e}"))?;
    let namespace = report["backends"]
        .as_array()
        .and_then(|b| b.iter().find(|b| b["backend"] == "namespace"))
        .cloned()
        .unwrap_or_default();
    if namespace["available"] != true {
        return Err(format!(
            "the namespace backend is unavailable for {TEST_USER}: {}",
            namespace["detail"]
        ));
    }
    Ok(())
}

/// A session that writes `/tmp/NAME-up`, then waits for `/tmp/end-NAME` and says `NAME-done`.
fn waiting_session(name: &str) -> String {
    format!(
        "echo {name} > /tmp/{name}-up; while [ ! -e /tmp/end-{name} ]; do sleep 0.05; done; \
         echo {name}-done"
    )
}

/// Starts the waiting session `name` and returns once it runs; a session that ends instead
/// fails the test with its output.
fn start_waiting(cli: &Cli, id: &str, name: &str) -> thread::JoinHandle<Run> {
    let script = waiting_session(name);
    let session = cli.start(&["exec", "deb", "--", "sh", "-c", &script]);
    wait_running_unless(cli, id, name, &|| session.is_finished());
    if session.is_finished() {
        let out = session.join().expect("session");
        panic!("session {name} ended instead of running: {out:?}");
    }
    session
}

/// Waits until the waiting session `name` runs, which sessions that join see by its file.
/// While the environment is not running, no such session may start: it would start the
/// environment itself, and `name` would join it instead of being its first session. So a
/// running init is awaited first (only `name` can start one then).
fn wait_running(cli: &Cli, id: &str, name: &str) {
    wait_running_unless(cli, id, name, &|| false);
}

/// [`wait_running`], given up early once `ended` says the session has ended.
fn wait_running_unless(cli: &Cli, id: &str, name: &str, ended: &dyn Fn() -> bool) {
    wait_until("the environment's init to run", || {
        ended() || cli.init(id).is_some_and(|(pid, start)| alive(pid, start))
    });
    wait_until(&format!("session {name} to run"), || {
        ended() || cli.sh(&format!("test -e /tmp/{name}-up")).code == Some(0)
    });
}

/// A and B share the instance; A ends (its command returns while B runs); B ends; the init
/// then goes by itself, and the next session starts cold.
fn sessions_share_and_outlive_each_other(test: &str, user: Option<&'static str>) {
    let Some((cli, id)) = built(test, user) else {
        return;
    };
    let a = start_waiting(&cli, &id, "a");
    let b = start_waiting(&cli, &id, "b");
    // B sees A's file and A's process; both are counted.
    assert_eq!(cli.sh("cat /tmp/a-up").stdout, "a\n");
    let ps = cli.sh("cat /proc/[0-9]*/cmdline | tr '\\0' ' '");
    assert!(
        ps.stdout.contains("/tmp/end-a") && ps.stdout.contains("/tmp/end-b"),
        "{ps:?}"
    );
    let row = cli.row();
    assert_eq!(
        (row["state"].as_str(), row["sessions"].as_u64()),
        (Some("running"), Some(2))
    );
    if let Some(user) = user {
        joined_sessions_have_the_cold_starts_ids(&cli, user);
    }

    // A ends: its command returns (stdout read to EOF), B runs on in the same instance.
    cli.sh("touch /tmp/end-a").expect_code(0);
    let a = a.join().expect("session a");
    assert_eq!((a.code, a.stdout.as_str()), (Some(0), "a-done\n"), "{a:?}");
    assert_eq!(
        cli.sh("cat /tmp/b-up").stdout,
        "b\n",
        "B's instance is gone"
    );
    assert_eq!(cli.row()["sessions"], 1);
    let (pid, start) = cli.init(&id).expect("an init record");
    assert!(alive(pid, start), "the init went while B runs");

    // B ends: the init has no session left and goes by itself.
    cli.sh("touch /tmp/end-b").expect_code(0);
    let b = b.join().expect("session b");
    assert_eq!((b.code, b.stdout.as_str()), (Some(0), "b-done\n"), "{b:?}");
    wait_until("the init to end by itself", || !alive(pid, start));
    assert_eq!(cli.row()["state"], "built");
    let cold = cli.sh("test -e /tmp/b-up");
    assert_eq!(cold.code, Some(1), "not a cold start: {cold:?}");
}

/// Rootless, with the user's subordinate range (a line in /etc/subuid and /etc/subgid, and
/// newuidmap/newgidmap on PATH): the cold start got the full range from its spawner, and a
/// joined session is in that same user namespace (it wrote no maps of its own). Without the
/// range, only the user's own ids, in both.
fn joined_sessions_have_the_cold_starts_ids(cli: &Cli, user: &str) {
    let id = |flag: &str| -> String {
        let out = Command::new("id").args([flag, user]).output().expect("id");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let range = |file: &str| -> Option<String> {
        let text = fs::read_to_string(file).ok()?;
        text.lines().find_map(|line| {
            let mut fields = line.split(':');
            (fields.next() == Some(user)).then(|| {
                let start = fields.next().unwrap_or_default();
                let count = fields.next().unwrap_or_default();
                format!("1 {start} {count}")
            })
        })
    };
    let on_path = |tool: &str| {
        std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(tool).is_file()))
    };
    let tools = on_path("newuidmap") && on_path("newgidmap");
    let expected = |own: String, range: Option<String>| -> Vec<String> {
        let mut lines = vec![format!("0 {own} 1")];
        lines.extend(range.filter(|_| tools));
        lines
    };
    let maps = cli.sh("cat /proc/self/uid_map; echo --; cat /proc/self/gid_map");
    maps.expect_code(0);
    let normalized: Vec<String> = maps
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    let mut want = expected(id("-u"), range("/etc/subuid"));
    want.push("--".to_string());
    want.extend(expected(id("-g"), range("/etc/subgid")));
    assert_eq!(normalized, want, "the id maps a joined session sees");
}

/// `stop` ends every session and the init; the next session starts cold.
fn stop_ends_every_session(test: &str, user: Option<&'static str>) {
    let Some((cli, id)) = built(test, user) else {
        return;
    };
    let a = start_waiting(&cli, &id, "a");
    let b = start_waiting(&cli, &id, "b");
    // A background process of a session lives as long as the environment.
    cli.sh("sleep 600 > /dev/null 2>&1 & echo started")
        .expect_code(0);
    let (pid, start) = cli.init(&id).expect("an init record");
    cli.run(&["stop", "deb"]).expect_code(0);
    for (name, session) in [("a", a), ("b", b)] {
        let out = session.join().expect("session");
        assert_ne!(out.code, Some(0), "{name} was not stopped: {out:?}");
        assert!(!out.stdout.contains("done"), "{out:?}");
    }
    assert!(!alive(pid, start), "stop left the init running");
    let row = cli.row();
    assert_eq!(
        (row["state"].as_str(), row["sessions"].as_u64()),
        (Some("built"), Some(0))
    );
    let cold = cli.sh("test -e /tmp/a-up");
    assert_eq!(cold.code, Some(1), "not a cold start: {cold:?}");
    cli.run(&["destroy", "deb"]).expect_code(0);
}

#[test]
fn sessions_join_a_running_environment() {
    sessions_share_and_outlive_each_other("sessions_join_a_running_environment", None);
}

#[test]
fn stop_ends_every_session_of_an_environment() {
    stop_ends_every_session("stop_ends_every_session_of_an_environment", None);
}

#[test]
fn sessions_join_a_running_environment_unprivileged() {
    if !nix::unistd::geteuid().is_root() {
        // This run already is unprivileged: the test above covers it.
        return;
    }
    let test = "sessions_join_a_running_environment_unprivileged";
    sessions_share_and_outlive_each_other(test, Some(TEST_USER));
}

#[test]
fn stop_ends_every_session_of_an_environment_unprivileged() {
    if !nix::unistd::geteuid().is_root() {
        return;
    }
    let test = "stop_ends_every_session_of_an_environment_unprivileged";
    stop_ends_every_session(test, Some(TEST_USER));
}

/// SIGKILL of a joined session's command ends its program and nothing else; when that was the
/// last session of a lingering init, the init goes by itself; SIGKILL of the first session's
/// command, while its program runs, ends the environment (its init dies with it) and every
/// session. The status counts what runs after each.
#[test]
fn killed_commands_leave_an_accurate_status() {
    let Some((cli, id)) = built("killed_commands_leave_an_accurate_status", None) else {
        return;
    };
    let running = |name: &str| {
        cli.sh("cat /proc/[0-9]*/cmdline | tr '\\0' ' '")
            .stdout
            .contains(&format!("/tmp/end-{name}"))
    };
    // Commands run with /dev/null streams, so that they can be killed.
    let spawn = |name: &str| {
        let child = cli.spawn(&["exec", "deb", "--", "sh", "-c", &waiting_session(name)]);
        wait_running(&cli, &id, name);
        child
    };
    let kill_command = |mut child: Child| {
        kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL).expect("kill");
        child.wait().expect("wait");
    };

    // A, then B joined and killed: B's program goes, A and the instance stay.
    let a = cli.start(&["exec", "deb", "--", "sh", "-c", &waiting_session("a")]);
    wait_running(&cli, &id, "a");
    let (pid, start) = cli.init(&id).expect("an init record");
    kill_command(spawn("b"));
    wait_until("b's program to end", || !running("b"));
    assert_eq!(cli.row()["sessions"], 1);
    assert!(alive(pid, start));

    // C joins; A ends and its init lingers for C; C's command killed: the init goes by itself.
    let c = spawn("c");
    cli.sh("touch /tmp/end-a").expect_code(0);
    assert_eq!(a.join().expect("session a").code, Some(0));
    assert!(alive(pid, start), "the init went while C runs");
    kill_command(c);
    wait_until("the lingering init to end by itself", || !alive(pid, start));
    let row = cli.row();
    assert_eq!(
        (row["state"].as_str(), row["sessions"].as_u64()),
        (Some("built"), Some(0))
    );

    // D starts afresh, E joins; D's command killed: the environment ends, E with it.
    let d = spawn("d");
    assert_eq!(
        cli.sh("test -e /tmp/c-up").code,
        Some(1),
        "not a cold start"
    );
    let (pid, start) = cli.init(&id).expect("an init record");
    let e = cli.start(&["exec", "deb", "--", "sh", "-c", &waiting_session("e")]);
    wait_running(&cli, &id, "e");
    kill_command(d);
    let e = e.join().expect("session e");
    assert_ne!(e.code, Some(0), "e outlived the environment: {e:?}");
    wait_until("the init to end", || !alive(pid, start));
    let row = cli.row();
    assert_eq!(
        (row["state"].as_str(), row["sessions"].as_u64()),
        (Some("built"), Some(0))
    );
    assert_eq!(
        cli.sh("test -e /tmp/d-up").code,
        Some(1),
        "not a cold start"
    );
}

/// A program inside an environment can reach the init record through its init's descriptors
/// (`/proc/1/fd`). Forged there to name a process of the host (pid and start time), the record
/// must be neither joined (the next session would run on the host, in its namespaces) nor
/// signalled by `stop` (which would kill that process).
fn a_forged_init_record_is_neither_joined_nor_signalled(test: &str, user: Option<&'static str>) {
    let Some((cli, id)) = built(test, user) else {
        return;
    };
    let a = start_waiting(&cli, &id, "a");
    // The victim: a process of the environment's user on the host.
    let mut victim = match user {
        None => Command::new("sleep"),
        Some(user) => {
            let mut cmd = Command::new("setpriv");
            cmd.args(["--reuid", user, "--regid", user, "--clear-groups", "sleep"]);
            cmd
        }
    };
    let mut victim = victim
        .arg("300")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the victim");
    let vpid = victim.id() as i32;
    wait_until("the victim to be sleep", || {
        fs::read_to_string(format!("/proc/{vpid}/comm")).is_ok_and(|c| c.trim() == "sleep")
    });
    let stat = fs::read_to_string(format!("/proc/{vpid}/stat")).expect("victim stat");
    let vstart: u64 = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(19)?.parse().ok())
        .expect("start time");

    let forge = format!(
        "for f in /proc/1/fd/*; do case $(readlink \"$f\") in */init) \
         printf '{vpid} {vstart} running\\n' > \"$f\" && echo forged;; esac; done"
    );
    let forged = cli.sh(&forge);
    forged.expect_code(0);
    assert_eq!(forged.stdout.trim(), "forged", "{forged:?}");
    assert_eq!(
        cli.init(&id),
        Some((vpid, vstart)),
        "the record names the victim"
    );

    let joined = cli.sh("head -n 1 /proc/self/mountinfo");
    assert_ne!(joined.code, Some(0), "joined the victim: {joined:?}");
    assert!(joined.stdout.is_empty(), "ran something: {joined:?}");
    assert!(
        joined.stderr.contains("not the init of a sandbox"),
        "{joined:?}"
    );

    let stop = cli.run(&["stop", "deb"]);
    assert_ne!(stop.code, Some(0), "{stop:?}");
    assert!(
        stop.stderr.contains("neither joined nor signalled"),
        "{stop:?}"
    );
    assert!(alive(vpid, vstart), "stop killed the victim");
    // `stop` ended the sessions before it read the record: A is over.
    let a = a.join().expect("session a");
    assert!(!a.stdout.contains("a-done"), "{a:?}");
    victim.kill().expect("kill the victim");
    victim.wait().expect("reap the victim");
}

#[test]
fn a_forged_init_record_is_neither_joined_nor_signalled_as_root() {
    let test = "a_forged_init_record_is_neither_joined_nor_signalled_as_root";
    a_forged_init_record_is_neither_joined_nor_signalled(test, None);
}

#[test]
fn a_forged_init_record_is_neither_joined_nor_signalled_unprivileged() {
    if !nix::unistd::geteuid().is_root() {
        return;
    }
    let test = "a_forged_init_record_is_neither_joined_nor_signalled_unprivileged";
    a_forged_init_record_is_neither_joined_nor_signalled(test, Some(TEST_USER));
}

/// Rootless with a subordinate range, a cold start's user namespace is made ahead by a
/// throwaway child of the CLI while newuidmap and newgidmap write its maps
/// (`sandbox::premap`): stage 1 enters it instead of unsharing one, the program sees the full
/// range, and nothing of that child is left once the command has returned. A session that
/// joins the running environment makes none.
#[test]
fn a_cold_start_enters_a_user_namespace_made_ahead_unprivileged() {
    // As root through TEST_USER; an unprivileged run is rootless itself.
    let user = nix::unistd::geteuid().is_root().then_some(TEST_USER);
    let test = "a_cold_start_enters_a_user_namespace_made_ahead_unprivileged";
    let Some((cli, id)) = built(test, user) else {
        return;
    };
    let trace = [("KARAPACE_SANDBOX_TRACE", "1")];
    // In the CLI's command line, so in its forked children's too.
    let token = format!("premap-token-{}", std::process::id());
    let script = format!("echo {token}; cat /proc/self/uid_map");
    let cold = cli.run_with(&trace, &["exec", "deb", "--", "sh", "-c", &script]);
    cold.expect_code(0);
    let maps = cold.stdout.lines().skip(1).count();
    if maps < 2 {
        let who = user.map_or_else(|| "this user".to_string(), str::to_string);
        let why = format!("{who} has no subordinate range mapped: {cold:?}");
        let required = std::env::var("KARAPACE_REQUIRE_SANDBOX").as_deref() == Ok("1");
        assert!(!required, "KARAPACE_REQUIRE_SANDBOX=1 but {why}");
        visible(&format!("SKIPPED: namespace::sessions::{test}: {why}"));
        return;
    }
    assert!(
        cold.stderr
            .contains("entering the user namespace made ahead"),
        "the cold start unshared its own user namespace: {cold:?}"
    );
    let left = processes_with(&token);
    assert!(left.is_empty(), "left running after the command: {left:?}");

    let a = start_waiting(&cli, &id, "a");
    let joined = cli.run_with(&trace, &["exec", "deb", "--", "true"]);
    joined.expect_code(0);
    assert!(
        !joined.stderr.contains("made ahead") && !joined.stderr.contains("UnshareUserNs"),
        "a joining session made a namespace: {joined:?}"
    );

    // A joining session forks its program inside the environment, where the child's
    // /proc/PID/environ is readable until it executes the program: stage 1, which it is a
    // copy of, has wiped the runtime's environment block. Stage 1 is the process the
    // session's run marker names.
    let waiting = "sleep 0.2; while [ ! -e /tmp/end-s ]; do sleep 0.05; done";
    let mut session = cli
        .command_with(
            &[("SECRET_MARKER", "leak-stage1")],
            &["exec", "deb", "--", "sh", "-c", waiting],
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn a session");
    let stage1 = marked_process(&cli, &id, "end-s");
    let environ = fs::read(format!("/proc/{stage1}/environ")).expect("stage 1's environ");
    let text = String::from_utf8_lossy(&environ);
    cli.sh("touch /tmp/end-s").expect_code(0);
    let status = session.wait().expect("session");
    assert!(status.success(), "{status:?}");
    assert!(
        !text.contains("leak-stage1"),
        "stage 1's environment block: {text:?}"
    );
    cli.sh("touch /tmp/end-a").expect_code(0);
    let a = a.join().expect("session a");
    assert_eq!(a.code, Some(0), "{a:?}");

    // The namespace is made before the session's checks; one that fails leaves nothing
    // either. A damaged lock object fails the check that verifies it.
    let meta = cli.store().join("envs").join(&id).join("meta.json");
    let meta: Value = serde_json::from_str(&fs::read_to_string(meta).expect("meta")).expect("json");
    let lock = meta["meta"]["lock_object"].as_str().expect("lock_object");
    let object = cli.store().join("objects").join(lock);
    let mut bytes = fs::read(&object).expect("lock object");
    bytes[0] ^= 0x20;
    fs::write(&object, bytes).expect("damage the lock object");
    let failed = cli.run(&["exec", "deb", "--", "sh", "-c", &script]);
    assert_ne!(failed.code, Some(0), "{failed:?}");
    assert!(failed.stderr.contains(lock), "{failed:?}");
    let left = processes_with(&token);
    assert!(
        left.is_empty(),
        "left running after a failed check: {left:?}"
    );
}

/// The pid a run marker of environment `id` names, once a session whose command line contains
/// `token` runs.
fn marked_process(cli: &Cli, id: &str, token: &str) -> i32 {
    let run_dir = cli.store().join("run").join(id);
    let mut found = None;
    wait_until("the session's run marker", || {
        found = fs::read_dir(&run_dir).ok().and_then(|dir| {
            dir.filter_map(|e| fs::read_to_string(e.ok()?.path()).ok())
                .filter_map(|text| text.split_whitespace().next()?.parse::<i32>().ok())
                .find(|pid| {
                    fs::read(format!("/proc/{pid}/cmdline"))
                        .is_ok_and(|c| String::from_utf8_lossy(&c).contains(token))
                })
        });
        found.is_some()
    });
    found.expect("a marked session")
}

/// Every process whose command line contains `token`, as `PID: CMDLINE`.
fn processes_with(token: &str) -> Vec<String> {
    fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| {
            let pid = e.ok()?.file_name().to_str()?.parse::<i32>().ok()?;
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            String::from_utf8_lossy(&cmdline)
                .contains(token)
                .then(|| format!("{pid}: {}", String::from_utf8_lossy(&cmdline)))
        })
        .collect()
}

/// A cold start from the CLI runs stage 1 in the CLI itself: the session's run marker names
/// the CLI, and the environment's PID 1 is its child. With `--json` (whose stdout is the
/// CLI's own) and for a session that joins, a stage 1 is forked as before.
#[test]
fn the_cli_is_stage_1_of_a_cold_start() {
    let test = "the_cli_is_stage_1_of_a_cold_start";
    let Some((cli, id)) = built(test, None) else {
        return;
    };
    let marked = |end: &str| marked_process(&cli, &id, end);
    let parent_of = |pid: i32| -> Option<i32> {
        let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("PPid:")?.trim().parse().ok())
    };
    let waiting = |end: &str| format!("while [ ! -e /tmp/{end} ]; do sleep 0.05; done");

    let script = waiting("end-cold");
    let mut cold = cli.spawn(&["exec", "deb", "--", "sh", "-c", &script]);
    let cli_pid = cold.id() as i32;
    assert_eq!(
        marked("end-cold"),
        cli_pid,
        "the marker names another process"
    );
    wait_until("the environment's init to run", || cli.init(&id).is_some());
    let (init, _) = cli.init(&id).expect("an init record");
    assert_eq!(
        parent_of(init),
        Some(cli_pid),
        "PID 1 is not the CLI's child"
    );

    // A joining session forks its stage 1.
    let script = waiting("end-joined");
    let mut joined = cli.spawn(&["exec", "deb", "--", "sh", "-c", &script]);
    let stage1 = marked("end-joined");
    assert_ne!(
        stage1,
        joined.id() as i32,
        "a joining session ran in the CLI"
    );
    assert_eq!(parent_of(stage1), Some(joined.id() as i32));
    cli.sh("touch /tmp/end-cold /tmp/end-joined").expect_code(0);
    assert!(cold.wait().expect("cold").success());
    assert!(joined.wait().expect("joined").success());
    wait_until("the init to end", || {
        cli.init(&id).is_none_or(|(pid, start)| !alive(pid, start))
    });

    // --json: stdout is the CLI's document, the program's goes to stderr through a stage 1.
    let script = waiting("end-json");
    let mut json = cli.spawn(&["--json", "exec", "deb", "--", "sh", "-c", &script]);
    let stage1 = marked("end-json");
    assert_ne!(
        stage1,
        json.id() as i32,
        "--json ran the session in the CLI"
    );
    cli.sh("touch /tmp/end-json").expect_code(0);
    assert!(json.wait().expect("json").success());
}

/// A cold start moves the last mount's overlay work directory into `work/trash` instead of
/// deleting it on its way (each deleted directory can wait for the disk), and empties the trash
/// while PID 1 builds the root: after each session nothing is left there, leftovers of an
/// earlier sweep included, and a volatile marker from before this boot is still reported.
fn the_overlay_work_directory_is_set_aside_and_swept(test: &str, user: Option<&'static str>) {
    let Some((cli, id)) = built(test, user) else {
        return;
    };
    let work = cli.store().join("envs").join(&id).join("work");
    let trash = work.join("trash");
    let entries = |dir: &Path| -> Vec<String> {
        match fs::read_dir(dir) {
            Ok(list) => list
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect(),
            Err(e) => panic!("{}: {e}", dir.display()),
        }
    };
    cli.run(&["exec", "deb", "--", "true"]).expect_code(0);
    cli.run(&["exec", "deb", "--", "true"]).expect_code(0);
    assert!(
        work.join("work").is_dir(),
        "the mount made no work directory"
    );
    assert_eq!(entries(&trash), Vec::<String>::new(), "left in the trash");

    // What a sweep killed halfway leaves, with overlayfs's modes, and a marker as a crash
    // before this boot leaves it.
    let leftover = trash.join("work-1-2");
    fs::create_dir_all(leftover.join("incompat/volatile/dirty")).expect("mkdir");
    let mut shell = format!(
        "chmod 000 {0}/incompat/volatile/dirty {0}/incompat/volatile {0}/incompat {0} && \
         touch -d @1 {1}",
        leftover.display(),
        work.join("work/incompat/volatile").display()
    );
    if let Some(user) = user {
        shell = format!("chown -R {user}: {} && {shell}", leftover.display());
    }
    let prepared = Command::new("sh").args(["-c", &shell]).status();
    assert!(prepared.is_ok_and(|s| s.success()), "{shell}");

    let after_crash = cli.run(&["exec", "deb", "--", "true"]);
    after_crash.expect_code(0);
    assert!(
        after_crash
            .stderr
            .contains("the machine went down while this environment was in use"),
        "no warning for a marker from an earlier boot: {after_crash:?}"
    );
    assert_eq!(entries(&trash), Vec::<String>::new(), "left in the trash");
    let again = cli.run(&["exec", "deb", "--", "true"]);
    again.expect_code(0);
    assert!(!again.stderr.contains("went down"), "{again:?}");
}

#[test]
fn the_overlay_work_directory_is_set_aside_and_swept_as_root() {
    let test = "the_overlay_work_directory_is_set_aside_and_swept_as_root";
    the_overlay_work_directory_is_set_aside_and_swept(test, None);
}

#[test]
fn the_overlay_work_directory_is_set_aside_and_swept_unprivileged() {
    if !nix::unistd::geteuid().is_root() {
        return;
    }
    let test = "the_overlay_work_directory_is_set_aside_and_swept_unprivileged";
    the_overlay_work_directory_is_set_aside_and_swept(test, Some(TEST_USER));
}

/// The id maps of a namespace made ahead are awaited by PID 1, which the CLI has forked by the
/// time newgidmap fails: the session fails with the tool's own message, and neither PID 1 nor
/// anything else of it is left running. The failing tool is a stand-in that detection accepts
/// (setuid root, so made as root) and that exits 1; the real newuidmap runs beside it.
#[test]
fn a_failing_id_map_tool_fails_the_start_and_leaves_nothing_unprivileged() {
    let test = "a_failing_id_map_tool_fails_the_start_and_leaves_nothing_unprivileged";
    if !nix::unistd::geteuid().is_root() {
        let why = "a setuid-root stand-in for newgidmap can only be made as root";
        let required = std::env::var("KARAPACE_REQUIRE_SANDBOX").as_deref() == Ok("1");
        assert!(!required, "KARAPACE_REQUIRE_SANDBOX=1 but {why}");
        visible(&format!("SKIPPED: namespace::sessions::{test}: {why}"));
        return;
    }
    let Some((cli, id)) = built(test, Some(TEST_USER)) else {
        return;
    };
    let tools = cli.dir.path().join("tools");
    fs::create_dir(&tools).expect("mkdir");
    fs::set_permissions(&tools, fs::Permissions::from_mode(0o755)).expect("chmod");
    let real = Command::new("sh")
        .args(["-c", "command -v newuidmap"])
        .output()
        .expect("find newuidmap");
    let real = String::from_utf8_lossy(&real.stdout).trim().to_string();
    assert!(
        real.starts_with('/'),
        "newuidmap is not installed: {real:?}"
    );
    std::os::unix::fs::symlink(&real, tools.join("newuidmap")).expect("symlink");
    let fake = tools.join("newgidmap");
    fs::write(
        &fake,
        "#!/bin/sh\necho 'newgidmap: stand-in refuses' >&2\nexit 1\n",
    )
    .expect("write");
    fs::set_permissions(&fake, fs::Permissions::from_mode(0o4755)).expect("chmod");

    let token = format!("failing-tool-{}", std::process::id());
    let path = format!(
        "{}:{}",
        tools.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let failed = cli.run_with(
        &[("PATH", &path)],
        &["exec", "deb", "--", "sh", "-c", &format!("echo {token}")],
    );
    assert_ne!(failed.code, Some(0), "{failed:?}");
    assert!(
        failed.stderr.contains("stand-in refuses") && failed.stderr.contains("newgidmap"),
        "the tool's failure is not what the user sees: {failed:?}"
    );
    assert!(
        !failed.stdout.contains(&token),
        "the program ran: {failed:?}"
    );
    let left = processes_with(&token);
    assert!(left.is_empty(), "left running: {left:?}");
    assert!(
        cli.init(&id).is_none_or(|(pid, start)| !alive(pid, start)),
        "an init is recorded as running"
    );
    // Nothing stays in the way of the next start.
    let next = cli.run(&["exec", "deb", "--", "sh", "-c", "echo next"]);
    next.expect_code(0);
    assert_eq!(next.stdout.trim(), "next");
}

/// A session returns as soon as its program has exited and everything else it started in the
/// environment has been ended: its init's own exit (the unmounts) is not waited for. Nothing of
/// the environment runs when the command returns, but possibly that exiting init, which every
/// later start, `archive` and `destroy` waits for: each of them, right after a session, works.
fn a_session_returns_with_nothing_left_but_its_exiting_init(
    test: &str,
    user: Option<&'static str>,
) {
    let Some((cli, id)) = built(test, user) else {
        return;
    };
    let token = format!("bg-{}", std::process::id());
    // A background child that would run for ten minutes, and a code of the program's own.
    let script = format!("sh -c 'sleep 600; : {token}' > /dev/null 2>&1 & exit 5");
    let out = cli.sh(&script);
    assert_eq!(out.code, Some(5), "{out:?}");
    let left = processes_with(&token);
    assert!(
        left.is_empty(),
        "still running when the session returned: {left:?}"
    );
    wait_until("the init to end", || {
        cli.init(&id).is_none_or(|(pid, start)| !alive(pid, start))
    });

    // Back to back: each start waits for the last init, if it is still exiting.
    for round in 0..5 {
        cli.sh(&format!("echo {round} > /round")).expect_code(0);
        assert_eq!(cli.sh("cat /round").stdout, format!("{round}\n"));
    }
    cli.run(&["archive", "deb"]).expect_code(0);
    cli.run(&["unarchive", "deb"]).expect_code(0);
    assert_eq!(cli.sh("cat /round").stdout, "4\n");
    cli.run(&["destroy", "deb"]).expect_code(0);
    assert!(
        !cli.store().join("envs").join(&id).exists(),
        "destroy left the environment's directory"
    );
}

#[test]
fn a_session_returns_with_nothing_left_but_its_exiting_init_as_root() {
    let test = "a_session_returns_with_nothing_left_but_its_exiting_init_as_root";
    a_session_returns_with_nothing_left_but_its_exiting_init(test, None);
}

#[test]
fn a_session_returns_with_nothing_left_but_its_exiting_init_unprivileged() {
    if !nix::unistd::geteuid().is_root() {
        return;
    }
    let test = "a_session_returns_with_nothing_left_but_its_exiting_init_unprivileged";
    a_session_returns_with_nothing_left_but_its_exiting_init(test, Some(TEST_USER));
}

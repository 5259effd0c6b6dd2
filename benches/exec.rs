//! Cold `exec` with the `namespace` backend, side by side with bubblewrap on the same rootfs.
//!
//! Run with `cargo bench --bench exec`; benches/README.md explains every number. In short: one
//! `namespace` environment is built from a local Debian tarball (`KARAPACE_TEST_ROOTFS_TARBALL`,
//! else the one `.ci/run` caches) in a scratch store, and the image tree it unpacked
//! (`<store>/images/<sha256>/rootfs`) is handed to bwrap as well. Then, round by round, with the
//! order rotating:
//!
//! - A: `karapace-tui --store S exec exec-bench -- true` (overlay mount included),
//! - B: `bwrap --unshare-all --ro-bind ROOTFS / --proc /proc --dev /dev true`,
//! - C: `/bin/true` (the cost of starting any process),
//! - W: B again, timed until bwrap's PID 1 has exited too (bwrap itself exits as soon as it
//!   has its program's status),
//! - V: A again, timed until its PID 1 has exited too (`karapace-tui` returns once its program
//!   has ended and PID 1 has ended every other process of the environment, before PID 1's own
//!   exit, whose unmounts wait for an RCU grace period: the same point as bwrap's).
//!
//! The bench is a child subreaper: whatever a command leaves behind (either's PID 1) is reaped
//! before the next command starts, so no teardown runs into another case's time, and the CPU
//! column counts it.
//! and, when /dev/shm is a tmpfs, T: A again with a copy of the store on that tmpfs. The goal
//! is A/B ≤ 1.5 on the medians; T/B is reported against it too, because the store's file
//! system weighs on a cold start (overlayfs creates several inodes in the work directory at
//! every mount, and ext4 without a journal makes each slow after many deletions). Then the second goal of the issue, an exec that joins
//! a running environment: a background `exec ENV -- sh -c 'echo joined > /tmp/…; exec sleep
//! 600'` keeps the environment running (a second exec must read that file, which only the
//! running instance's /tmp holds), and, in the same run, round by round again:
//!
//! - J: `karapace-tui --store S exec exec-bench -- true`, which now joins,
//! - K: the sandbox helper alone as the CLI starts it for that session (`--session`), joining,
//! - B and C as above,
//!
//! with the goal J/B ≤ 1.0; afterwards `stop` must end the environment and a cold exec must not
//! see the file. A "stages" section then times, for information, the sandbox helper alone with
//! the plan the CLI would make, the same with its upper layer on a tmpfs, and `karapace-tui
//! --version`, to show where A's extra time goes. Goals are reported PASS/FAIL but never fail
//! the run: only a failing command or a wrong result does. Without the tarball or bwrap, or
//! where the namespace backend is unavailable, it prints `SKIPPED: …` and exits 0.
//!
//! Knobs (environment variables): `KARAPACE_BENCH_ROUNDS` (measured rounds, default 200),
//! `KARAPACE_BENCH_BIN` (another binary to measure), `KARAPACE_BENCH_STAGES=0` (skip the
//! stages), `KARAPACE_BENCH_KEEP=1` (keep the scratch directory), and
//! `KARAPACE_TEST_ROOTFS_TARBALL` (the image).

use std::ffi::OsString;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use karapace_tui::sandbox::{
    self, IdMapping, OverlayDriver, RootfsSpec, SandboxPlan, SandboxStdio,
};

const WARMUPS: usize = 3;
const DEFAULT_ROUNDS: usize = 200;
/// Cold exec time ÷ bwrap time, on the medians.
const GOAL_COLD: f64 = 1.5;
/// An exec that joins a running environment ÷ bwrap time.
const GOAL_JOIN: f64 = 1.0;
/// Written into the running instance's /tmp (a tmpfs) by the session that keeps it running.
const JOIN_MARK: &str = "/tmp/karapace-bench-join";
/// Where `.ci/run` caches the debootstrap'd bookworm tarball.
/// The environment's name (its manifest directory's name).
const ENV_NAME: &str = "exec-bench";
/// The unprivileged user CI creates; as root, the bench says how to take rootless numbers.
const ROOTLESS_USER: &str = "karapace-test";
/// The `PATH` the namespace backend gives programs (src/runtime/namespace.rs).
const SANDBOX_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

mod common;
use common::{
    bench_rounds, binary, children_cpu, env_flag, exit_code, find_on_path, json, make_writable,
    overlay_safe, percentile, ratio, sha256_file, tarball, target_dir, Res,
};

fn main() -> ExitCode {
    exit_code(run())
}

// ---------------------------------------------------------------------------------------------
// Commands and statistics

/// One command line to time.
#[derive(Clone)]
struct Cmd {
    program: PathBuf,
    args: Vec<String>,
}

impl Cmd {
    fn new(program: impl Into<PathBuf>, args: &[&str]) -> Cmd {
        Cmd {
            program: program.into(),
            args: args.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn describe(&self) -> String {
        let mut s = self.program.display().to_string();
        for a in &self.args {
            s.push(' ');
            s.push_str(a);
        }
        s
    }

    /// The command with every `KARAPACE_*` variable removed (a developer's trace or store
    /// settings must not change what is measured) and stdin on /dev/null.
    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args).stdin(Stdio::null());
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("KARAPACE_") {
                cmd.env_remove(&key);
            }
        }
        match &library_path().kept {
            None => {}
            Some(None) => {
                cmd.env_remove(LD_LIBRARY_PATH);
            }
            Some(Some(kept)) => {
                cmd.env(LD_LIBRARY_PATH, kept);
            }
        }
        cmd
    }

    /// Run once and return (exit code, stdout, stderr), whatever the exit status.
    fn output_any(&self) -> Res<(Option<i32>, String, String)> {
        let out = self
            .command()
            .output()
            .map_err(|e| format!("cannot run `{}`: {e}", self.describe()))?;
        Ok((
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }

    /// Run once and return stdout; an error (with stderr) if it fails.
    fn output(&self) -> Res<String> {
        let (code, stdout, stderr) = self.output_any()?;
        if code != Some(0) {
            return Err(format!(
                "`{}` exited with {code:?}; stderr:\n{}",
                self.describe(),
                stderr.trim_end()
            ));
        }
        Ok(stdout)
    }
}

const LD_LIBRARY_PATH: &str = "LD_LIBRARY_PATH";

/// `LD_LIBRARY_PATH` for the commands this bench runs.
struct LibraryPath {
    /// `None`: leave it as it is; `Some(None)`: remove it; `Some(Some(v))`: set it to `v`.
    kept: Option<Option<OsString>>,
    /// How many directories were taken out.
    dropped: usize,
}

/// `cargo bench` prepends its build-output directories (under the target directory) and the
/// toolchain's library directories to `LD_LIBRARY_PATH`. The dynamic loader then searches them
/// for every library of every process: here that made each start of `/bin/true` about 0.2 ms
/// slower, and B pays it twice (bwrap and the `true` it runs, which inherits the variable)
/// while A pays it once (the helper clears its environment). Those directories are taken out
/// for every command this bench runs; anything else in the variable is kept.
fn library_path() -> &'static LibraryPath {
    static CELL: OnceLock<LibraryPath> = OnceLock::new();
    CELL.get_or_init(|| {
        let Some(value) = std::env::var_os(LD_LIBRARY_PATH) else {
            return LibraryPath {
                kept: None,
                dropped: 0,
            };
        };
        let mut added: Vec<PathBuf> = vec![target_dir()];
        // $CARGO is `<toolchain>/bin/cargo`.
        if let Some(toolchain) = std::env::var_os("CARGO")
            .map(PathBuf::from)
            .and_then(|c| c.ancestors().nth(2).map(Path::to_path_buf))
        {
            added.push(toolchain);
        }
        let all: Vec<PathBuf> = std::env::split_paths(&value).collect();
        let kept: Vec<&PathBuf> = all
            .iter()
            .filter(|p| !added.iter().any(|a| p.starts_with(a)))
            .collect();
        let dropped = all.len() - kept.len();
        LibraryPath {
            kept: match (dropped, kept.is_empty()) {
                (0, _) => None,
                (_, true) => Some(None),
                (_, false) => std::env::join_paths(kept).ok().map(Some),
            },
            dropped,
        }
    })
}

/// What a timed run starts.
enum Way {
    /// A plain command line, timed until it exits.
    Plain(Cmd),
    /// A plain command line, timed until it and every process it left behind have exited
    /// (bwrap's PID 1, and ours, finish their namespaces' teardown after the command has
    /// exited; see [`reap_leftovers`]).
    WholeTree(Cmd),
    /// `karapace-tui __sandbox-init --parent-pid OUR_PID --session RECORD PLAN_FILE`, started
    /// exactly as the runtime starts a session (`sandbox::spawn_session`: empty environment;
    /// on a cold start, the overlay's last work directory set aside and, with a full subordinate id
    /// range, newuidmap and newgidmap). The timing includes writing the plan file (the helper
    /// reads and deletes it), which the runtime pays too.
    Helper {
        bin: PathBuf,
        plan: SandboxPlan,
        plan_dir: PathBuf,
        /// The environment's init record: the helper joins the environment if it runs.
        session: PathBuf,
    },
}

/// A timed case: a short label for the round lines and a description for the tables.
struct Case {
    label: &'static str,
    what: String,
    way: Way,
}

/// Wall time and CPU time (user + sys of the child and every descendant it reaped).
#[derive(Clone, Copy)]
struct Sample {
    wall: Duration,
    cpu: Duration,
}

impl Case {
    fn plain(label: &'static str, what: impl Into<String>, cmd: Cmd) -> Case {
        Case {
            label,
            what: what.into(),
            way: Way::Plain(cmd),
        }
    }

    /// Run once with stdout discarded and stderr kept in `stderr_file` (shown if it fails).
    /// The wall time runs from spawn to reaped exit.
    fn time_once(&self, stderr_file: &Path) -> Res<Sample> {
        let err = File::create(stderr_file)
            .map_err(|e| format!("create {}: {e}", stderr_file.display()))?;
        let cpu_before = children_cpu()?;
        let start = Instant::now();
        let (status, shown) = match &self.way {
            Way::Plain(c) | Way::WholeTree(c) => {
                let shown = c.describe();
                let status = c
                    .command()
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(err)
                    .status()
                    .map_err(|e| format!("cannot run `{shown}`: {e}"))?;
                if matches!(self.way, Way::WholeTree(_)) {
                    reap_leftovers()?;
                }
                (status, shown)
            }
            Way::Helper {
                bin,
                plan,
                plan_dir,
                session,
            } => {
                let shown = format!(
                    "{} {} --parent-pid {} --session {} PLAN_FILE",
                    bin.display(),
                    sandbox::HELPER_VERB,
                    std::process::id(),
                    session.display(),
                );
                let stdio = SandboxStdio {
                    stdin: Stdio::null(),
                    stdout: Stdio::null(),
                    stderr: err.into(),
                };
                let mut child = sandbox::spawn_session(plan, session, bin, plan_dir, stdio)
                    .map(|session| session.child)
                    .map_err(|e| format!("cannot run `{shown}`: {e}"))?;
                let status = child
                    .wait()
                    .map_err(|e| format!("cannot wait for `{shown}`: {e}"))?;
                (status, shown)
            }
        };
        let wall = start.elapsed();
        // Untimed for the other ways: what a command leaves behind must not run into the
        // next command's time.
        reap_leftovers()?;
        let cpu = children_cpu()?.saturating_sub(cpu_before);
        if !status.success() {
            let text = fs::read_to_string(stderr_file).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(20).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            return Err(format!(
                "{} `{shown}` exited with {status}; stderr:\n{}",
                self.label,
                tail.join("\n")
            ));
        }
        Ok(Sample { wall, cpu })
    }
}

/// The session that keeps the environment running during the joined rounds (a child of ours
/// that [`reap_leftovers`] must leave alone), 0 when there is none.
static KEEPER: AtomicI32 = AtomicI32::new(0);

/// Waits until every child of ours but the keeper has exited, and reaps it. The bench is a
/// child subreaper (prctl(2), `PR_SET_CHILD_SUBREAPER`, set in `run`), so a process a timed
/// command leaves behind comes to us rather than to init: bwrap reads its program's exit
/// status from its PID 1 and exits at once, and that PID 1 then tears the namespaces down.
fn reap_leftovers() -> Res<()> {
    use nix::sys::wait::{waitpid, WaitPidFlag};
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let keeper = KEEPER.load(Ordering::Relaxed);
        let left: Vec<i32> = children()?.into_iter().filter(|p| *p != keeper).collect();
        if left.is_empty() {
            return Ok(());
        }
        for pid in &left {
            match waitpid(nix::unistd::Pid::from_raw(*pid), Some(WaitPidFlag::WNOHANG)) {
                Ok(_) | Err(nix::errno::Errno::ECHILD) => {}
                Err(e) => return Err(format!("waitpid({pid}): {e}")),
            }
        }
        if Instant::now() > deadline {
            return Err(format!(
                "processes {left:?}, left behind by a timed command, still run after 10 s"
            ));
        }
        std::thread::sleep(Duration::from_micros(50));
    }
}

/// Our children, zombies included, from every thread's `children` file (proc(5)).
fn children() -> Res<Vec<i32>> {
    let tasks =
        fs::read_dir("/proc/self/task").map_err(|e| format!("list /proc/self/task: {e}"))?;
    let mut pids = Vec::new();
    for task in tasks {
        let task = task.map_err(|e| format!("list /proc/self/task: {e}"))?;
        let path = task.path().join("children");
        let text =
            fs::read_to_string(&path).map_err(|e| format!("read {}: {e}", path.display()))?;
        pids.extend(
            text.split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok()),
        );
    }
    Ok(pids)
}

#[derive(Clone, Copy)]
struct Stats {
    median: Duration,
    p90: Duration,
    cpu: Duration,
}

fn stats(samples: &[Sample]) -> Stats {
    let mut wall: Vec<Duration> = samples.iter().map(|s| s.wall).collect();
    let mut cpu: Vec<Duration> = samples.iter().map(|s| s.cpu).collect();
    wall.sort();
    cpu.sort();
    Stats {
        median: percentile(&wall, 0.5),
        p90: percentile(&wall, 0.9),
        cpu: percentile(&cpu, 0.5),
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// A signed difference of two medians, in ms.
fn diff_ms(a: Duration, b: Duration) -> String {
    format!("{:+.2} ms", (a.as_secs_f64() - b.as_secs_f64()) * 1e3)
}

/// Time the cases round by round (the order rotates every round, so none of them always goes
/// first), after `WARMUPS` unrecorded rounds.
fn interleave(cases: &[Case], rounds: usize, stderr_file: &Path) -> Res<Vec<Stats>> {
    let mut samples: Vec<Vec<Sample>> = vec![Vec::with_capacity(rounds); cases.len()];
    for round in 0..WARMUPS + rounds {
        for k in 0..cases.len() {
            let i = (round + k) % cases.len();
            let s = cases[i].time_once(stderr_file)?;
            if round >= WARMUPS {
                samples[i].push(s);
            }
        }
    }
    Ok(samples.iter().map(|s| stats(s)).collect())
}

fn print_table(cases: &[Case], st: &[Stats], reference: Option<usize>) {
    let ref_head = reference.map_or(String::new(), |r| {
        format!(" {:>8}", format!("/ {}", cases[r].label))
    });
    println!(
        "{:<72} {:>9} {:>9} {:>9}{ref_head}",
        "case", "median", "p90", "cpu"
    );
    println!(
        "{}",
        "-".repeat(102 + if reference.is_some() { 9 } else { 0 })
    );
    for (c, s) in cases.iter().zip(st) {
        let mut line = format!(
            "{:<72} {:>9} {:>9} {:>9}",
            format!("{:<3}{}", c.label, c.what),
            ms(s.median),
            ms(s.p90),
            ms(s.cpu)
        );
        if let Some(r) = reference {
            line.push_str(&format!(" {:>7.2}x", ratio(s.median, st[r].median)));
        }
        println!("{line}");
    }
}

// ---------------------------------------------------------------------------------------------
// Set-up

/// The `list --json` row of our environment.
fn env_row(bin: &Path, store: &str) -> Res<serde_json::Value> {
    let rows = json(
        &Cmd::new(bin, &["--store", store, "--json", "list"]).output()?,
        "list --json",
    )?;
    rows.as_array()
        .and_then(|r| r.iter().find(|r| r["name"] == ENV_NAME))
        .cloned()
        .ok_or_else(|| format!("`list --json` has no environment named {ENV_NAME}: {rows}"))
}

/// The plan `karapace-tui exec` makes for `true` in this environment: the same spec as
/// `NamespaceBackend::spec` in src/runtime/namespace.rs (no binds, no network isolation: the
/// manifest has neither).
fn helper_plan(lower: &Path, env_dir: &Path, id: &str, upper_parent: &Path) -> SandboxPlan {
    let mut env = vec![
        ("PATH".to_string(), SANDBOX_PATH.to_string()),
        ("HOME".to_string(), "/root".to_string()),
        ("USER".to_string(), "root".to_string()),
        ("container".to_string(), "karapace".to_string()),
        ("KARAPACE_ENV_ID".to_string(), id.to_string()),
        ("KARAPACE_BACKEND".to_string(), "namespace".to_string()),
        ("KARAPACE_ENV_NAME".to_string(), ENV_NAME.to_string()),
    ];
    // Taken from the host, as the backend does (stdin is /dev/null, so no default TERM).
    for key in ["TERM", "COLORTERM", "LANG", "TZ"] {
        if let Ok(value) = std::env::var(key) {
            env.push((key.to_string(), value));
        }
    }
    RootfsSpec {
        ids: IdMapping::for_current_user(),
        lower: vec![lower.display().to_string()],
        upper: upper_parent.join("upper").display().to_string(),
        work: upper_parent.join("work").display().to_string(),
        root: env_dir.join("root").display().to_string(),
        userxattr: !nix::unistd::geteuid().is_root(),
        // The backend's `auto` adds fuse-overlayfs only as a fallback, never run here.
        overlay: OverlayDriver::Kernel,
        isolate_net: false,
        hostname: Some(ENV_NAME.to_string()),
        sys: true,
        tmpfs: vec![("/tmp".to_string(), 0o1777)],
        devices: Vec::new(),
        // stdin is /dev/null: no terminal to bind as /dev/console.
        console: None,
        binds: Vec::new(),
        argv: vec!["true".to_string()],
        env,
        cwd: "/root".to_string(),
    }
    .plan()
}

// ---------------------------------------------------------------------------------------------
// Joining a running environment

/// Starts the session that keeps the environment running (it writes [`JOIN_MARK`], then
/// sleeps) and waits until the environment reports `running` and a second exec reads the mark,
/// which only an exec that joined can.
fn start_keeper(bin: &Path, store: &str) -> Res<Child> {
    let script = format!("echo joined > {JOIN_MARK}; exec sleep 600");
    let mut child: Child = Cmd::new(
        bin,
        &[
            "--store", store, "exec", ENV_NAME, "--", "sh", "-c", &script,
        ],
    )
    .command()
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .map_err(|e| format!("spawn exec … sleep 600: {e}"))?;
    KEEPER.store(child.id() as i32, Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "the session keeping {ENV_NAME} running ended: {status}"
            ));
        }
        if env_row(bin, store)?["state"] == "running" && joined_mark(bin, store)? {
            return Ok(child);
        }
        if Instant::now() > deadline {
            stop_keeper(bin, store, child)?;
            return Err(format!(
                "{ENV_NAME} never ran with {JOIN_MARK} visible to a second exec within 20 s"
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether an exec now sees [`JOIN_MARK`] (it joined the running instance).
fn joined_mark(bin: &Path, store: &str) -> Res<bool> {
    let (code, stdout, _) = Cmd::new(
        bin,
        &["--store", store, "exec", ENV_NAME, "--", "cat", JOIN_MARK],
    )
    .output_any()?;
    Ok(code == Some(0) && stdout == "joined\n")
}

/// `stop` the environment and wait for the keeper's exec to end.
fn stop_keeper(bin: &Path, store: &str, mut child: Child) -> Res<()> {
    let stopped = Cmd::new(bin, &["--store", store, "stop", ENV_NAME]).output();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                // Our own child; the sandbox dies with it (PR_SET_PDEATHSIG).
                let _ = child.kill();
                let _ = child.wait();
                return Err("`stop` did not end the running session within 10 s".to_string());
            }
        }
    }
    stopped.map(drop)
}

// ---------------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------------

fn run() -> Res<()> {
    let total = Instant::now();
    println!(
        "karapace-tui exec bench: cold and joined `exec ENV -- true` vs bwrap on the same rootfs"
    );
    let tarball = match tarball() {
        Ok(p) => p,
        Err(why) => {
            println!("SKIPPED: {why}");
            return Ok(());
        }
    };
    let Some(bwrap) = find_on_path("bwrap") else {
        println!("SKIPPED: bwrap is not on PATH (nothing is installed by this bench)");
        return Ok(());
    };
    let rounds = bench_rounds(DEFAULT_ROUNDS)?;
    // Processes a timed command leaves behind come to us (see `reap_leftovers`).
    nix::sys::prctl::set_child_subreaper(true)
        .map_err(|e| format!("prctl(PR_SET_CHILD_SUBREAPER): {e}"))?;
    let bin = binary()?;
    let true_bin = ["/bin/true", "/usr/bin/true"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or("neither /bin/true nor /usr/bin/true exists")?;
    let root = nix::unistd::geteuid().is_root();
    let user = nix::unistd::User::from_uid(nix::unistd::geteuid())
        .ok()
        .flatten()
        .map_or_else(|| nix::unistd::geteuid().to_string(), |u| u.name);

    let mut tmp = Scratch::open()?;
    let scratch = tmp
        .path()
        .canonicalize()
        .map_err(|e| format!("canonicalize {}: {e}", tmp.path().display()))?;
    overlay_safe(&scratch)?;
    let store_path = scratch.join("store");
    let store = store_path.display().to_string();
    let stderr_file = scratch.join("stderr.txt");
    println!("  binary:  {}", bin.display());
    println!("  bwrap:   {}", bwrap.display());
    println!("  image:   {}", tarball.display());
    println!(
        "  scratch: {}{}",
        scratch.display(),
        if tmp.is_kept() {
            "  (kept between runs; KARAPACE_BENCH_FRESH=1 starts afresh)"
        } else {
            "  (removed at the end)"
        }
    );
    println!(
        "  user:    {user} ({})",
        if root {
            "root: no user namespace, as in CI"
        } else {
            "rootless: user namespaces, overlayfs with userxattr"
        }
    );
    if root && matches!(nix::unistd::User::from_name(ROOTLESS_USER), Ok(Some(_))) {
        if let Ok(exe) = std::env::current_exe() {
            println!(
                "  (rootless numbers: `runuser -u {ROOTLESS_USER} -- {}`)",
                exe.display()
            );
        }
    }
    if library_path().dropped > 0 {
        println!(
            "  LD_LIBRARY_PATH: the {} directories cargo added (build outputs, toolchain) are \
             taken out for the timed commands; they slow every process start",
            library_path().dropped
        );
    }
    println!(
        "  rounds:  {WARMUPS} warm-up + {rounds} measured, interleaved, the order rotating{}",
        if rounds < 30 {
            "  (fewer than 30: noisy)"
        } else {
            ""
        }
    );
    println!();

    // The namespace backend must work here (its row in doctor's report is what counts).
    let (_, doctor, doctor_err) =
        Cmd::new(&bin, &["--store", &store, "--json", "doctor"]).output_any()?;
    let doctor = json(&doctor, &format!("doctor --json (stderr: {doctor_err})"))?;
    let namespace = doctor["backends"]
        .as_array()
        .and_then(|b| b.iter().find(|b| b["backend"] == "namespace"))
        .cloned()
        .unwrap_or_default();
    if namespace["available"] != true {
        println!(
            "SKIPPED: the namespace backend is unavailable here: {}",
            namespace["detail"]
        );
        return Ok(());
    }

    // 1. The environment. The host shares (fonts, icons, themes) are switched off: bwrap binds
    // none either, and their mount points would appear in the upper layer, which the bench
    // checks stays empty. The host home (root's) stays bound, as users get it.
    let project = scratch.join(ENV_NAME);
    fs::create_dir_all(&project).map_err(|e| format!("mkdir {}: {e}", project.display()))?;
    let manifest = project.join("karapace.toml");
    let image = tarball.display().to_string();
    if image.contains(['"', '\\']) || image.chars().any(char::is_control) {
        return Err(format!(
            "the tarball path {image} cannot go into a TOML string as is"
        ));
    }
    fs::write(
        &manifest,
        format!(
            "manifest_version = 1\n\n[base]\nimage = \"{image}\"\n\n[runtime]\nbackend = \"namespace\"\n\n\
             [integration]\nfonts = false\nicons = false\nthemes = false\n"
        ),
    )
    .map_err(|e| format!("write {}: {e}", manifest.display()))?;
    let started = Instant::now();
    let built = json(
        &Cmd::new(
            &bin,
            &[
                "--store",
                &store,
                "--json",
                "build",
                &project.display().to_string(),
            ],
        )
        .output()?,
        "build --json",
    )?;
    let build_secs = started.elapsed().as_secs_f64();
    // Built now, or (in a kept scratch directory) up to date from an earlier run.
    let fresh = built["built"] == true;
    if built["backend"] != "namespace" || built["name"] != ENV_NAME || (!fresh && !tmp.is_kept()) {
        return Err(format!("unexpected build result: {built}"));
    }
    let id = built["id"]
        .as_str()
        .ok_or_else(|| format!("build --json has no id: {built}"))?
        .to_string();
    let env_dir = store_path.join("envs").join(&id);
    if !fresh {
        // Kept from an earlier run, which may have been interrupted: nothing of it may still
        // run, and the environment starts clean (a rebuild only if something was left in it).
        Cmd::new(&bin, &["--store", &store, "stop", ENV_NAME]).output()?;
        if files_under(&env_dir.join("upper"))? > 0 {
            let project = project.display().to_string();
            Cmd::new(&bin, &["--store", &store, "rebuild", &project]).output()?;
        }
    }
    let started = Instant::now();
    let sha = sha256_file(&tarball)?;
    let sha_secs = started.elapsed().as_secs_f64();
    let rootfs = store_path.join("images").join(&sha).join("rootfs");
    if !rootfs.join("etc").is_dir() {
        return Err(format!(
            "the unpacked image is not at {} (sha256 of the tarball)",
            rootfs.display()
        ));
    }
    let lock = fs::read_to_string(project.join("karapace.lock"))
        .map_err(|e| format!("read karapace.lock: {e}"))?;
    let lock: toml::Value = lock
        .parse()
        .map_err(|e| format!("karapace.lock is not TOML: {e}"))?;
    let pinned = lock
        .get("base")
        .and_then(|b| b.get("archive_sha256"))
        .and_then(|s| s.as_str());
    if pinned != Some(sha.as_str()) {
        return Err(format!(
            "karapace.lock pins {pinned:?}, the tarball's sha256 is {sha}"
        ));
    }
    println!(
        "{} {ENV_NAME} ({}) in {build_secs:.1} s; sha256 of the tarball {:.1} s",
        if fresh { "built" } else { "kept" },
        &id[..12],
        sha_secs
    );
    println!("rootfs:  {}", rootfs.display());

    let rootfs_s = rootfs.display().to_string();
    let bwrap_args = |program: &[&str]| -> Cmd {
        let mut args = vec![
            "--unshare-all",
            "--ro-bind",
            &rootfs_s,
            "/",
            "--proc",
            "/proc",
            "--dev",
            "/dev",
        ];
        args.extend_from_slice(program);
        Cmd::new(&bwrap, &args)
    };

    // Both see the same tree: the environment's upper layer is empty, so its overlay shows
    // exactly the image. Checked by reading one file through each.
    let upper = env_dir.join("upper");
    // Empty directories are mount points the sandbox made (the caller's home where the
    // image has none, rootless): they change nothing A sees.
    let upper_empty = |when: &str| -> Res<()> {
        let n = files_under(&upper)?;
        if n == 0 {
            Ok(())
        } else {
            Err(format!(
                "{} holds {n} entries other than empty directories {when}; A would not see \
                 the plain image",
                upper.display()
            ))
        }
    };
    upper_empty("after the build")?;
    let ours = Cmd::new(
        &bin,
        &[
            "--store",
            &store,
            "exec",
            ENV_NAME,
            "--",
            "cat",
            "/etc/debian_version",
        ],
    )
    .output()?;
    let (code, theirs, why) = bwrap_args(&["cat", "/etc/debian_version"]).output_any()?;
    if code != Some(0) {
        println!(
            "SKIPPED: bwrap cannot run here (exit {code:?}): {}",
            why.trim_end()
        );
        return Ok(());
    }
    if ours.trim().is_empty() || ours != theirs {
        return Err(format!(
            "/etc/debian_version differs: karapace-tui exec gave {ours:?}, bwrap gave {theirs:?}"
        ));
    }
    println!("/etc/debian_version: {} (same through both)", ours.trim());
    println!();

    // 2. The comparison. `exec_true(store)` is A's command line, on either store.
    let exec_true =
        |store: &str| Cmd::new(&bin, &["--store", store, "exec", ENV_NAME, "--", "true"]);
    let case_a = || {
        Case::plain(
            "A",
            format!("karapace-tui exec {ENV_NAME} -- true"),
            exec_true(&store),
        )
    };
    let case_b = || {
        Case::plain(
            "B",
            "bwrap --unshare-all --ro-bind ROOTFS / --proc /proc --dev /dev true",
            bwrap_args(&["true"]),
        )
    };
    let case_c = || {
        Case::plain(
            "C",
            true_bin.display().to_string(),
            Cmd::new(&true_bin, &[]),
        )
    };
    // The same environment in a store on a tmpfs (T), when /dev/shm is one: the store's own
    // file system weighs on every cold start (overlayfs recreates its work directory and its
    // volatile marker, each a new inode), and some file systems make that slow (see the note
    // printed under the table).
    let shm = tmpfs_store(&store_path)?;
    let mut cases = vec![case_a(), case_b(), case_c()];
    if let Ok((_, shm_store)) = &shm {
        cases.push(Case::plain(
            "T",
            format!("karapace-tui exec {ENV_NAME} -- true  (the store on a tmpfs)"),
            exec_true(shm_store),
        ));
    }
    // B and A again, each timed until its PID 1 is gone too.
    cases.push(Case {
        label: "W",
        what: "bwrap …  (until its PID 1 has exited too)".to_string(),
        way: Way::WholeTree(bwrap_args(&["true"])),
    });
    cases.push(Case {
        label: "V",
        what: format!("karapace-tui exec {ENV_NAME} -- true  (until its PID 1 has exited too)"),
        way: Way::WholeTree(exec_true(&store)),
    });
    let started = Instant::now();
    let st = interleave(&cases, rounds, &stderr_file)?;
    let main_secs = started.elapsed().as_secs_f64();
    upper_empty("after the timed runs")?;
    let row = env_row(&bin, &store)?;
    if row["state"] != "built" {
        return Err(format!(
            "after the timed runs {ENV_NAME} is {}, not built",
            row["state"]
        ));
    }
    let (sa, sb, sc) = (st[0], st[1], st[2]);
    let by_label = |label: &str| cases.iter().position(|c| c.label == label).map(|i| st[i]);
    let st_t = by_label("T");
    let st_w = by_label("W").ok_or("no case W")?;
    let st_v = by_label("V").ok_or("no case V")?;
    println!(
        "cold exec, {rounds} rounds in {main_secs:.1} s; wall time from spawn to reaped exit; \
         cpu = median user+sys of the process tree"
    );
    print_table(&cases, &st, Some(1));
    let r = ratio(sa.median, sb.median);
    println!(
        "ratio A/B: {r:.2} (median), {:.2} (p90); A/C {:.1}, B/C {:.1}",
        ratio(sa.p90, sb.p90),
        ratio(sa.median, sc.median),
        ratio(sb.median, sc.median)
    );
    println!(
        "  (Neither A's nor B's wall time includes its PID 1's own exit, which tears the \
         namespaces down: bwrap reads the exit status from an eventfd and exits, karapace-tui \
         returns once its PID 1 has ended every other process of the environment. W and V are \
         B and A timed until their PID 1 has exited too: ratio V/W {:.2} (median), W - B = {}, \
         V - A = {}. Every case starts after what the previous one left behind has exited, and \
         its cpu counts that too.)",
        ratio(st_v.median, st_w.median),
        diff_ms(st_w.median, sb.median),
        diff_ms(st_v.median, sa.median)
    );
    match (&shm, st_t) {
        (Ok(_), Some(st_t)) => {
            println!(
                "ratio T/B: {:.2} (median), {:.2} (p90): the store on a tmpfs; the store here is on \
                 {}. On ext4 without a journal every new inode skips the inodes freed in the last \
                 seconds (ext4's recently_deleted check), which a loop of cold starts, each \
                 recreating overlayfs's work directory and volatile marker, makes slow; journaled \
                 file systems do not do that.",
                ratio(st_t.median, sb.median),
                ratio(st_t.p90, sb.p90),
                fs_name(&store_path)
            );
        }
        (Err(why), _) => println!("  (no tmpfs case: {why})"),
        (Ok(_), None) => {}
    }
    println!();

    // 3. Joining a running environment, with B and C again in the same rounds.
    let keeper = start_keeper(&bin, &store)?;
    let plan_dir = scratch.join("plans");
    fs::create_dir_all(&plan_dir).map_err(|e| format!("mkdir {}: {e}", plan_dir.display()))?;
    fs::set_permissions(&plan_dir, fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("chmod {}: {e}", plan_dir.display()))?;
    let join_cases = [
        Case::plain(
            "J",
            format!("karapace-tui exec {ENV_NAME} -- true  (joins)"),
            exec_true(&store),
        ),
        Case {
            label: "K",
            what: "karapace-tui __sandbox-init --session RECORD PLAN  (helper alone, joins)"
                .to_string(),
            way: Way::Helper {
                bin: bin.clone(),
                plan: helper_plan(&rootfs, &env_dir, &id, &env_dir),
                plan_dir,
                session: env_dir.join("init"),
            },
        },
        case_b(),
        case_c(),
    ];
    let started = Instant::now();
    let timed = interleave(&join_cases, rounds, &stderr_file);
    let join_secs = started.elapsed().as_secs_f64();
    let still_joined = joined_mark(&bin, &store);
    stop_keeper(&bin, &store, keeper)?;
    let st_join = timed?;
    if !still_joined? {
        return Err(format!(
            "after the joined rounds an exec no longer saw {JOIN_MARK}: the environment was \
             started afresh during the rounds"
        ));
    }
    if joined_mark(&bin, &store)? {
        return Err(format!(
            "after `stop` an exec still saw {JOIN_MARK}: the environment kept running"
        ));
    }
    upper_empty("after the joined rounds")?;
    let (sj, sk, sb2) = (st_join[0], st_join[1], st_join[2]);
    println!(
        "joined exec, {rounds} rounds in {join_secs:.1} s, while `exec {ENV_NAME} -- sleep 600` \
         keeps the environment running (J and K read {JOIN_MARK}, which that session wrote)"
    );
    print_table(&join_cases, &st_join, Some(2));
    let rj = ratio(sj.median, sb2.median);
    println!(
        "ratio J/B: {rj:.2} (median), {:.2} (p90); J - K = {} (the CLI around the helper)",
        ratio(sj.p90, sb2.p90),
        diff_ms(sj.median, sk.median)
    );
    println!();

    // 4. Where A's time goes (information only).
    if env_flag("KARAPACE_BENCH_STAGES", true) {
        stages(StageInput {
            bin: &bin,
            rootfs: &rootfs,
            env_dir: &env_dir,
            id: &id,
            scratch: &scratch,
            rounds,
            stderr_file: &stderr_file,
            base: [case_a(), case_b(), case_c()],
        })?;
    }

    // 5. Goals (reported, never enforced: the machine is shared and noisy).
    let pass = |ok: bool| if ok { "PASS" } else { "FAIL" };
    println!(
        "goal cold exec ratio <= {GOAL_COLD}: {} (ratio {r:.2}; A {} vs B {})",
        pass(r <= GOAL_COLD),
        ms(sa.median),
        ms(sb.median)
    );
    if let Some(st_t) = st_t {
        let rt = ratio(st_t.median, sb.median);
        println!(
            "goal cold exec ratio <= {GOAL_COLD}, the store on a tmpfs: {} (ratio {rt:.2}; T {} vs B {})",
            pass(rt <= GOAL_COLD),
            ms(st_t.median),
            ms(sb.median)
        );
    }
    println!(
        "goal joined exec ratio <= {GOAL_JOIN:.1}: {} (ratio {rj:.2}; J {} vs B {})",
        pass(rj <= GOAL_JOIN),
        ms(sj.median),
        ms(sb2.median)
    );
    println!();
    println!("total bench time {:.1} s", total.elapsed().as_secs_f64());

    if env_flag("KARAPACE_BENCH_KEEP", false) {
        if let Scratch::Temporary(dir) = &mut tmp {
            if let Some(dir) = dir.take() {
                println!("kept {}", dir.keep().display());
            }
        }
    }
    Ok(())
}

/// The scratch directory (the store with the image tree and the environment).
///
/// Kept between runs in cargo's target directory where that is ours to write: removing it
/// deletes the image's thousands of files, and on ext4 without a journal (this project's CI
/// machine) every inode created in the same block groups for the next half minute then skips
/// each of them (ext4's `recently_deleted` check), so a run started right after another
/// measured its cold starts 1.4 times slower than the first (7.87 vs 5.73 ms); a store made
/// afresh reads slow for the same reason for about a minute (the builds that made it deleted
/// their scratch trees). A rootless run, which cannot write there, keeps it in the user's cache
/// directory instead (`~/.cache/karapace-bench-exec`). With `KARAPACE_BENCH_FRESH=1`, or where
/// neither is ours, a temporary directory, removed when dropped (on every path, SKIPPED ones
/// included) after every directory in it is made writable.
enum Scratch {
    Kept(PathBuf),
    Temporary(Option<tempfile::TempDir>),
}

impl Scratch {
    fn open() -> Res<Scratch> {
        let fresh = env_flag("KARAPACE_BENCH_FRESH", false);
        let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("karapace-bench-exec");
        let cache = nix::unistd::User::from_uid(nix::unistd::geteuid())
            .ok()
            .flatten()
            .map(|user| user.dir.join(".cache").join("karapace-bench-exec"));
        for kept in std::iter::once(target).chain(cache) {
            if fresh {
                // Only our own (a rootless run finds root's in the target directory).
                let owned = fs::symlink_metadata(&kept).is_ok_and(|m| {
                    use std::os::unix::fs::MetadataExt;
                    m.uid() == nix::unistd::geteuid().as_raw()
                });
                if owned {
                    make_writable(&kept);
                    fs::remove_dir_all(&kept)
                        .map_err(|e| format!("remove {}: {e}", kept.display()))?;
                }
            } else if Self::ours(&kept) {
                return Ok(Scratch::Kept(kept));
            }
        }
        let dir = tempfile::Builder::new()
            .prefix("karapace-bench-exec-")
            .tempdir()
            .map_err(|e| format!("create temp dir: {e}"))?;
        Ok(Scratch::Temporary(Some(dir)))
    }

    /// `dir` exists (or can be made) as a directory of this user's, private.
    fn ours(dir: &Path) -> bool {
        use std::os::unix::fs::MetadataExt;
        if !dir.exists() && fs::create_dir_all(dir).is_err() {
            return false;
        }
        let private = fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).is_ok();
        private
            && fs::symlink_metadata(dir)
                .is_ok_and(|m| m.is_dir() && m.uid() == nix::unistd::geteuid().as_raw())
    }

    fn path(&self) -> &Path {
        match self {
            Scratch::Kept(dir) => dir,
            Scratch::Temporary(dir) => dir.as_ref().map_or(Path::new(""), |d| d.path()),
        }
    }

    fn is_kept(&self) -> bool {
        matches!(self, Scratch::Kept(_))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let Scratch::Temporary(dir) = self else {
            return;
        };
        if let Some(dir) = dir.take() {
            let path = dir.path().to_path_buf();
            make_writable(&path);
            if let Err(e) = dir.close() {
                eprintln!("warning: could not remove {}: {e}", path.display());
            }
        }
    }
}

struct StageInput<'a> {
    bin: &'a Path,
    rootfs: &'a Path,
    env_dir: &'a Path,
    id: &'a str,
    scratch: &'a Path,
    rounds: usize,
    stderr_file: &'a Path,
    /// A, B and C again, so that every stage is measured in the same rounds.
    base: [Case; 3],
}

/// The sandbox helper alone (no CLI, no store), the same with the overlay's upper layer on a
/// tmpfs, and the start-up of the binary, interleaved with A, B and C.
fn stages(input: StageInput) -> Res<()> {
    let StageInput {
        bin,
        rootfs,
        env_dir,
        id,
        scratch,
        rounds,
        stderr_file,
        base,
    } = input;
    let plan_dir = scratch.join("stage-plans");
    fs::create_dir_all(&plan_dir).map_err(|e| format!("mkdir {}: {e}", plan_dir.display()))?;
    fs::set_permissions(&plan_dir, fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("chmod {}: {e}", plan_dir.display()))?;
    let helper = |label, what: &str, upper_parent: &Path| Case {
        label,
        what: what.to_string(),
        way: Way::Helper {
            bin: bin.to_path_buf(),
            plan: helper_plan(rootfs, env_dir, id, upper_parent),
            plan_dir: plan_dir.clone(),
            // The environment's own record for E (as the CLI), the tmpfs's for F.
            session: upper_parent.join("init"),
        },
    };
    let [a, b, c] = base;
    let e = helper(
        "E",
        "karapace-tui __sandbox-init --session RECORD PLAN  (helper alone)",
        env_dir,
    );
    // One untimed run: a failure here is a bench problem, reported as such.
    e.time_once(stderr_file)?;
    let mut cases = vec![a, e];

    // The same plan with upper/ and work/ on a tmpfs: syncing the upper file system when the
    // overlay goes away then costs nothing. Skipped where /dev/shm is no tmpfs or overlayfs
    // refuses it (a tmpfs upper in a user namespace needs user xattrs on tmpfs, Linux 6.6).
    // Kept (and removed, on every path) until the stages are done.
    let mut _shm_dir: Option<Scratch> = None;
    let shm_note = match tmpfs_dir() {
        Err(why) => Some(why),
        Ok(dir) => {
            for d in ["upper", "work"] {
                fs::create_dir(dir.path().join(d))
                    .map_err(|e| format!("mkdir {}: {e}", dir.path().join(d).display()))?;
            }
            let case = helper(
                "F",
                "karapace-tui __sandbox-init --session RECORD PLAN  (upper on tmpfs)",
                dir.path(),
            );
            let probe = case.time_once(stderr_file);
            _shm_dir = Some(dir);
            match probe {
                Ok(_) => {
                    cases.push(case);
                    None
                }
                Err(e) => Some(format!("the helper cannot use a tmpfs upper here: {e}")),
            }
        }
    };
    cases.push(b);
    cases.push(Case::plain(
        "D",
        "karapace-tui --version  (start-up of the binary)",
        Cmd::new(bin, &["--version"]),
    ));
    cases.push(c);

    println!(
        "stages, for information ({rounds} rounds, interleaved; E and F get the plan the CLI \
         would make, and write its file in the timing, as the CLI does):"
    );
    let started = Instant::now();
    let st = interleave(&cases, rounds, stderr_file)?;
    let secs = started.elapsed().as_secs_f64();
    print_table(&cases, &st, None);
    if let Some(note) = shm_note {
        println!("F: skipped: {note}");
    }
    let get = |label: &str| {
        cases
            .iter()
            .position(|c| c.label == label)
            .map(|i| st[i])
            .ok_or_else(|| format!("no stage {label}"))
    };
    let (sa, se, sb, sd, sc) = (get("A")?, get("E")?, get("B")?, get("D")?, get("C")?);
    println!("  ({secs:.1} s) differences of medians:");
    println!(
        "  A - E = {:>9}  the CLI around the sandbox: its own start-up and exit, finding the \
         environment, reading the lock, the session marker (less E's start-up and plan file)",
        diff_ms(sa.median, se.median)
    );
    println!(
        "  E - B = {:>9}  the helper over bwrap: the overlay, /sys, /tmp, the record and the \
         session's lock (PID 1 and the program are forks, not execs; neither's teardown of \
         its namespaces is timed)",
        diff_ms(se.median, sb.median)
    );
    if let Ok(sf) = get("F") {
        println!(
            "  E - F = {:>9}  the upper layer on the store's file system rather than a tmpfs \
             (overlayfs makes its work directory anew at every mount: see the note on ext4 above)",
            diff_ms(se.median, sf.median)
        );
    }
    println!(
        "  D - C = {:>9}  start-up of karapace-tui over /bin/true; A and B each start their \
         binary once (A's sandbox processes are forks of the CLI), E starts the helper once",
        diff_ms(sd.median, sc.median)
    );
    println!();
    Ok(())
}

/// A fresh directory on a tmpfs (`/dev/shm`), or why there is none.
/// Entries under `dir` other than directories (recursively): files, links, devices.
fn files_under(dir: &Path) -> Res<usize> {
    let mut n = 0;
    for entry in fs::read_dir(dir).map_err(|e| format!("read {}: {e}", dir.display()))? {
        let entry = entry.map_err(|e| format!("read {}: {e}", dir.display()))?;
        let kind = entry
            .file_type()
            .map_err(|e| format!("stat {}: {e}", entry.path().display()))?;
        n += if kind.is_dir() {
            files_under(&entry.path())?
        } else {
            1
        };
    }
    Ok(n)
}

/// A copy of the store at `store` in a fresh directory on /dev/shm, with its path (the
/// directory goes when the `Scratch` is dropped), or why there is none.
fn tmpfs_store(store: &Path) -> Res<Result<(Scratch, String), String>> {
    let dir = match tmpfs_dir() {
        Ok(dir) => dir,
        Err(why) => return Ok(Err(why)),
    };
    let copy = dir.path().join("store");
    let out = std::process::Command::new("cp")
        .arg("-a")
        .arg(store)
        .arg(&copy)
        .output()
        .map_err(|e| format!("run cp: {e}"))?;
    if !out.status.success() {
        // Rootless, the store holds files the user cannot copy (overlayfs leaves work/work
        // mode 000, files of subordinate ids): the case is left out, saying why.
        return Ok(Err(format!(
            "cp -a of the store to /dev/shm failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .next()
                .unwrap_or("")
        )));
    }
    let shown = copy.display().to_string();
    Ok(Ok((dir, shown)))
}

/// The file system `path` is on, by name where we know its magic number.
fn fs_name(path: &Path) -> String {
    use nix::sys::statfs::{
        statfs, BTRFS_SUPER_MAGIC, EXT4_SUPER_MAGIC, TMPFS_MAGIC, XFS_SUPER_MAGIC,
    };
    match statfs(path) {
        Ok(st) => match st.filesystem_type() {
            t if t == EXT4_SUPER_MAGIC => "ext2/3/4".to_string(),
            t if t == TMPFS_MAGIC => "tmpfs".to_string(),
            t if t == BTRFS_SUPER_MAGIC => "btrfs".to_string(),
            t if t == XFS_SUPER_MAGIC => "xfs".to_string(),
            other => format!("a file system with magic {:#x}", other.0),
        },
        Err(e) => format!("an unknown file system ({e})"),
    }
}

fn tmpfs_dir() -> Result<Scratch, String> {
    let shm = Path::new("/dev/shm");
    let st = nix::sys::statfs::statfs(shm).map_err(|e| format!("statfs /dev/shm: {e}"))?;
    if st.filesystem_type() != nix::sys::statfs::TMPFS_MAGIC {
        return Err("/dev/shm is not a tmpfs".to_string());
    }
    tempfile::Builder::new()
        .prefix("karapace-bench-exec-")
        .tempdir_in(shm)
        .map(|d| Scratch::Temporary(Some(d)))
        .map_err(|e: io::Error| format!("create a directory in /dev/shm: {e}"))
}

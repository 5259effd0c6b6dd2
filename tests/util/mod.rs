//! Shared fixture for the integration tests: a temp directory with its own store and home,
//! and [`TestCommand`], which runs the real `karapace-tui` binary with a controlled
//! environment, a timeout, and captured stdout, stderr and exit status; [`pty::Pty`] runs it
//! on a pseudo-terminal for the terminal UI's tests.
//!
//! Every test file uses a different subset of these helpers.
#![allow(dead_code)]

pub mod pty;

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use serde_json::Value;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_karapace-tui");

/// How long a command may run before it is killed and reported as hung.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// For builds and rebuilds (see [`Fixture::build`]).
pub const BUILD_TIMEOUT: Duration = Duration::from_secs(300);

/// A run of the binary, not started yet.
pub struct TestCommand {
    cmd: Command,
    shown: Vec<String>,
    stdin: Option<Vec<u8>>,
    timeout: Duration,
    count_stdout: bool,
}

impl TestCommand {
    /// The binary with `KARAPACE_STORE=store`, `HOME=home`, every other `KARAPACE_*` variable
    /// (and `XDG_DATA_HOME`, `XDG_CONFIG_HOME`) removed, stdin empty (not a terminal).
    pub fn new(store: &Path, home: &Path) -> TestCommand {
        let mut cmd = Command::new(BIN);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("KARAPACE_") {
                cmd.env_remove(&key);
            }
        }
        // The developer's own settings (image server, data and config dirs) must not leak in.
        cmd.env_remove("XDG_DATA_HOME");
        cmd.env_remove("XDG_CONFIG_HOME");
        cmd.env("KARAPACE_STORE", store).env("HOME", home);
        TestCommand {
            cmd,
            shown: Vec::new(),
            stdin: None,
            timeout: DEFAULT_TIMEOUT,
            count_stdout: false,
        }
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> TestCommand {
        self.shown.push(arg.as_ref().to_string_lossy().into_owned());
        self.cmd.arg(arg);
        self
    }

    pub fn args<I, S>(mut self, args: I) -> TestCommand
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        for a in args {
            self = self.arg(a);
        }
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> TestCommand {
        self.cmd.env(key, value);
        self
    }

    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> TestCommand {
        self.cmd.env_remove(key);
        self
    }

    pub fn cwd(mut self, dir: impl AsRef<Path>) -> TestCommand {
        self.cmd.current_dir(dir);
        self
    }

    /// Feed these bytes on stdin (then close it).
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> TestCommand {
        self.stdin = Some(bytes.into());
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> TestCommand {
        self.timeout = timeout;
        self
    }

    /// Count stdout's bytes instead of keeping them (for large outputs).
    pub fn count_stdout(mut self) -> TestCommand {
        self.count_stdout = true;
        self
    }

    /// Start it in the background with all three standard streams on /dev/null.
    pub fn spawn_background(mut self) -> Child {
        self.cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("spawn karapace-tui")
    }

    /// Start it with stdout connected to `stdout` (for broken-pipe tests) and run it to the end.
    pub fn run_with_stdout(mut self, stdout: Stdio) -> Output {
        self.cmd.stdout(stdout);
        self.run_inner(false)
    }

    /// Run it to the end (or until the timeout, when its process group is killed).
    pub fn run(mut self) -> Output {
        self.cmd.stdout(Stdio::piped());
        self.run_inner(true)
    }

    fn run_inner(mut self, capture_stdout: bool) -> Output {
        let shown = self.shown.join(" ");
        self.cmd.stderr(Stdio::piped()).process_group(0);
        self.cmd.stdin(if self.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let mut child = self
            .cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn karapace-tui {shown}: {e}"));
        let pid = child.id() as i32;
        if let (Some(bytes), Some(mut input)) = (self.stdin.take(), child.stdin.take()) {
            // A program that does not read its input closes the pipe: that is not an error here.
            thread::spawn(move || {
                let _ignored = input.write_all(&bytes);
            });
        }
        let count = self.count_stdout;
        let stdout_rx = child
            .stdout
            .take()
            .filter(|_| capture_stdout)
            .map(|out| reader(out, count));
        let stderr_rx = child.stderr.take().map(|err| reader(err, false));
        let (status_tx, status_rx) = mpsc::channel();
        thread::spawn(move || {
            let _receiver_gone = status_tx.send(child.wait());
        });
        let (status, timed_out) = match status_rx.recv_timeout(self.timeout) {
            Ok(status) => (status.expect("wait for karapace-tui"), false),
            Err(_) => {
                // Hung: kill its whole process group, then collect what it wrote.
                let _already_gone = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
                let status = status_rx.recv().expect("waiter thread");
                (status.expect("wait for karapace-tui"), true)
            }
        };
        let collect = |rx: Option<mpsc::Receiver<(Vec<u8>, u64)>>, what: &str| match rx {
            None => (Vec::new(), 0),
            Some(rx) => rx
                .recv_timeout(Duration::from_secs(15))
                .unwrap_or_else(|_| {
                    panic!("`karapace-tui {shown}`: {what} stayed open 15 s after it exited")
                }),
        };
        let (stdout, stdout_len) = collect(stdout_rx, "stdout");
        let (stderr, _) = collect(stderr_rx, "stderr");
        Output {
            args: shown,
            stdout,
            stdout_len,
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
            status,
            timed_out,
        }
    }
}

/// Read a stream to its end on a thread; the result is (bytes kept, bytes seen).
fn reader(
    mut stream: impl Read + Send + 'static,
    count_only: bool,
) -> mpsc::Receiver<(Vec<u8>, u64)> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut kept = Vec::new();
        let mut seen = 0u64;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    seen += n as u64;
                    if !count_only {
                        kept.extend_from_slice(&buf[..n]);
                    }
                }
            }
        }
        let _receiver_gone = tx.send((kept, seen));
    });
    rx
}

/// What a finished run produced.
pub struct Output {
    pub args: String,
    pub stdout: Vec<u8>,
    /// Bytes seen on stdout (also when they were only counted).
    pub stdout_len: u64,
    pub stderr: String,
    pub status: ExitStatus,
    /// The run exceeded its timeout and was killed.
    pub timed_out: bool,
}

impl fmt::Debug for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let out = String::from_utf8_lossy(&self.stdout);
        let cut = |s: &str| -> String {
            if s.len() > 6000 {
                let mut end = 6000;
                while !s.is_char_boundary(end) {
                    end -= 1;
                }
                format!("{}… ({} bytes)", &s[..end], s.len())
            } else {
                s.to_string()
            }
        };
        write!(
            f,
            "`karapace-tui {}`: exit code {:?}, signal {:?}{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.args,
            self.status.code(),
            self.status.signal(),
            if self.timed_out { ", TIMED OUT (killed)" } else { "" },
            cut(&out),
            cut(&self.stderr)
        )
    }
}

impl Output {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Killed by SIGKILL (what a crash point does).
    pub fn killed(&self) -> bool {
        !self.timed_out && self.status.signal() == Some(libc::SIGKILL)
    }

    /// Assert the exit code (and that it did not hang); returns self for chaining.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Output {
        assert!(!self.timed_out, "command hung: {self:?}");
        assert_eq!(self.code(), Some(code), "unexpected exit status: {self:?}");
        self
    }

    #[track_caller]
    pub fn ok(&self) -> &Output {
        self.expect_code(0)
    }

    /// stdout as exactly one JSON document (whitespace around it allowed, nothing else).
    #[track_caller]
    pub fn json(&self) -> Value {
        let docs: Vec<Value> = serde_json::Deserializer::from_slice(&self.stdout)
            .into_iter::<Value>()
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"));
        assert_eq!(
            docs.len(),
            1,
            "expected exactly one JSON document: {self:?}"
        );
        docs.into_iter().next().expect("one document")
    }
}

/// A temp directory holding a store (`store/`), a home (`home/`) and project directories.
pub struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
}

impl Default for Fixture {
    fn default() -> Self {
        Self::new()
    }
}

impl Fixture {
    pub fn new() -> Fixture {
        let tmp = tempfile::Builder::new()
            .prefix("karapace-it-")
            .tempdir()
            .expect("create temp dir");
        let root = tmp.path().canonicalize().expect("canonicalize temp dir");
        fs::create_dir(root.join("home")).expect("create home");
        Fixture { _tmp: tmp, root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn store(&self) -> PathBuf {
        self.root.join("store")
    }

    pub fn home(&self) -> PathBuf {
        self.root.join("home")
    }

    /// A path under the fixture's root.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// The binary with this fixture's store and home, run from the fixture root.
    pub fn cmd<I, S>(&self, args: I) -> TestCommand
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        TestCommand::new(&self.store(), &self.home())
            .cwd(&self.root)
            .args(args)
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).run()
    }

    /// Run with `--json`, expect exit 0, return the document.
    #[track_caller]
    pub fn json(&self, args: &[&str]) -> Value {
        let out = self.cmd(["--json"]).args(args).run();
        out.ok();
        out.json()
    }

    /// Write `<root>/<dir>/karapace.toml` for the mock backend; returns the directory.
    pub fn write_manifest(&self, dir: &str, image: &str, packages: &[&str]) -> PathBuf {
        let path = self.path(dir);
        fs::create_dir_all(&path).expect("create project dir");
        fs::write(path.join("karapace.toml"), mock_manifest(image, packages))
            .expect("write manifest");
        path
    }

    /// `--json build <root>/<dir>`, expecting success. Its timeout is [`BUILD_TIMEOUT`]: a
    /// real image (a Debian rootfs unpacked by a debug build, apt reaching the mirror) takes
    /// minutes on a busy machine.
    #[track_caller]
    pub fn build(&self, dir: &str) -> Value {
        let manifest_dir = self.path(dir);
        let out = self
            .cmd(["--json", "build"])
            .arg(&manifest_dir)
            .timeout(BUILD_TIMEOUT)
            .run();
        out.ok();
        out.json()
    }

    /// `--json list` as an array.
    #[track_caller]
    pub fn list(&self) -> Vec<Value> {
        match self.json(&["list"]) {
            Value::Array(rows) => rows,
            other => panic!("list --json is not an array: {other}"),
        }
    }

    /// The `list --json` row with this name.
    #[track_caller]
    pub fn row(&self, name: &str) -> Value {
        self.list()
            .into_iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("no environment named {name} in list"))
    }

    /// Names of the files in `<store>/objects`.
    pub fn objects(&self) -> BTreeSet<String> {
        dir_names(&self.store().join("objects"))
    }

    pub fn env_dir(&self, id: &str) -> PathBuf {
        self.store().join("envs").join(id)
    }

    pub fn rootfs(&self, id: &str) -> PathBuf {
        self.env_dir(id).join("rootfs")
    }

    /// The `meta` object of `<store>/envs/<id>/meta.json` (read directly, not checked).
    pub fn meta(&self, id: &str) -> Value {
        let text = fs::read_to_string(self.env_dir(id).join("meta.json")).expect("read meta");
        let v: Value = serde_json::from_str(&text).expect("meta.json is JSON");
        v["meta"].clone()
    }

    /// Every object digest a meta.json references (manifest, lock, layers, archive).
    pub fn referenced_objects(&self, id: &str) -> BTreeSet<String> {
        let meta = self.meta(id);
        let mut set = BTreeSet::new();
        for key in ["manifest_object", "lock_object", "archive"] {
            if let Some(s) = meta[key].as_str() {
                set.insert(s.to_string());
            }
        }
        for layer in meta["layers"].as_array().expect("layers array") {
            set.insert(layer.as_str().expect("layer digest").to_string());
        }
        set
    }
}

/// A mock-backend manifest.
pub fn mock_manifest(image: &str, packages: &[&str]) -> String {
    let list: Vec<String> = packages.iter().map(|p| format!("{p:?}")).collect();
    format!(
        "manifest_version = 1\n\n[base]\nimage = {image:?}\n\n[system]\npackages = [{}]\n\n\
         [runtime]\nbackend = \"mock\"\n",
        list.join(", ")
    )
}

/// Sorted names of a directory's entries (empty if it does not exist).
pub fn dir_names(dir: &Path) -> BTreeSet<String> {
    match fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| {
                e.expect("read dir entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect(),
        Err(_) => BTreeSet::new(),
    }
}

/// Flip one bit of a file in place (making it writable first).
pub fn flip_byte(path: &Path, offset: usize) {
    let mut perms = fs::metadata(path).expect("stat").permissions();
    let mode = perms.mode();
    perms.set_mode(mode | 0o200);
    fs::set_permissions(path, perms).expect("chmod u+w");
    let mut bytes = fs::read(path).expect("read");
    let at = offset.min(bytes.len() - 1);
    bytes[at] ^= 0x01;
    fs::write(path, bytes).expect("write");
}

/// Copy a directory tree (files, directories, symlinks; permissions kept).
pub fn copy_tree(src: &Path, dst: &Path) {
    fs::create_dir_all(dst).expect("create copy destination");
    for entry in fs::read_dir(src).expect("read source dir") {
        let entry = entry.expect("dir entry");
        let from = entry.path();
        let to = dst.join(entry.file_name());
        let kind = entry.file_type().expect("file type");
        if kind.is_dir() {
            copy_tree(&from, &to);
            let perms = fs::metadata(&from).expect("stat").permissions();
            fs::set_permissions(&to, perms).expect("chmod dir");
        } else if kind.is_symlink() {
            let target = fs::read_link(&from).expect("read link");
            std::os::unix::fs::symlink(target, &to).expect("symlink");
        } else {
            fs::copy(&from, &to).expect("copy file");
        }
    }
}

/// Remove a tree if it exists, making directories writable first.
pub fn remove_tree(path: &Path) {
    if fs::symlink_metadata(path).is_err() {
        return;
    }
    make_writable(path);
    fs::remove_dir_all(path).expect("remove tree");
}

fn make_writable(path: &Path) {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return;
    };
    if meta.is_dir() {
        let mut perms = meta.permissions();
        perms.set_mode(perms.mode() | 0o700);
        let _best_effort = fs::set_permissions(path, perms);
        if let Ok(entries) = fs::read_dir(path) {
            for e in entries.flatten() {
                make_writable(&e.path());
            }
        }
    }
}

/// A JSON string field, or a panic naming the field.
#[track_caller]
pub fn s(v: &Value, key: &str) -> String {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("field {key} is not a string in {v}"))
        .to_string()
}

/// `OsString` arguments from strings and paths.
pub fn os<T: AsRef<OsStr>>(x: T) -> OsString {
    x.as_ref().to_os_string()
}

/// A line on the test's stderr that `cargo test` shows even for passing tests.
pub fn visible(line: &str) {
    use std::io::Write;
    let mut err = std::io::stderr();
    writeln!(err, "{line}").expect("write to stderr");
}

/// Whether a missing kernel feature or image fails the test instead of skipping it (CI).
pub fn sandbox_required() -> bool {
    std::env::var("KARAPACE_REQUIRE_SANDBOX").as_deref() == Ok("1")
}

/// Reports a missing prerequisite: a visible `SKIPPED: SUITE::TEST: why` line, or a failure
/// under `KARAPACE_REQUIRE_SANDBOX=1`.
pub fn skip(suite: &str, test: &str, why: &str) {
    if sandbox_required() {
        panic!("KARAPACE_REQUIRE_SANDBOX=1 but {why}");
    }
    visible(&format!("SKIPPED: {suite}::{test}: {why}"));
}

/// The debootstrap'd Debian tarball (`KARAPACE_TEST_ROOTFS_TARBALL`, which `.ci/run` sets)
/// and a fixture whose `doctor` says the namespace backend works here; `None` (after a
/// [`skip`]) when either is missing.
pub fn namespace_fixture(suite: &str, test: &str) -> Option<(Fixture, PathBuf)> {
    let Some(tarball) = std::env::var_os("KARAPACE_TEST_ROOTFS_TARBALL").map(PathBuf::from) else {
        skip(
            suite,
            test,
            "KARAPACE_TEST_ROOTFS_TARBALL is not set (.ci/run makes it)",
        );
        return None;
    };
    let fx = Fixture::new();
    // `doctor`'s exit code says whether the default backend runs; the namespace row is what
    // counts here.
    let doctor = fx.cmd(["--json", "doctor"]).run().json();
    let namespace = doctor["backends"]
        .as_array()
        .and_then(|b| b.iter().find(|b| b["backend"] == "namespace"))
        .cloned()
        .unwrap_or_default();
    if namespace["available"] != true {
        skip(
            suite,
            test,
            &format!(
                "the namespace backend is unavailable: {}",
                namespace["detail"]
            ),
        );
        return None;
    }
    Some((fx, tarball))
}

/// The ordinary user the rootless re-runs use (`.ci/run` gives it a subordinate range).
pub const TEST_USER: &str = "karapace-test";

/// Creates [`TEST_USER`] (with a home) when it does not exist.
pub fn ensure_test_user() -> Result<(), String> {
    let exists = Command::new("id").args(["-u", TEST_USER]).output();
    if exists.is_ok_and(|o| o.status.success()) {
        return Ok(());
    }
    let out = Command::new("useradd")
        .args(["-m", TEST_USER])
        .output()
        .map_err(|e| format!("cannot run useradd: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "useradd {TEST_USER} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

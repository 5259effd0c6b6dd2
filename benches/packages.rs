//! A package build with the `namespace` backend, side by side with a single `apt-get install`
//! of the same package in the same root file system.
//!
//! Run with `cargo bench --bench packages`; benches/README.md explains every number. In short:
//! a scratch store imports the image (`KARAPACE_TEST_ROOTFS_TARBALL`, else the tarball `.ci/run`
//! caches) by building a manifest without packages, so the import is not measured, and the
//! unpacked tree (`<store>/images/<sha256>/rootfs`) serves as the reference's lower layer too.
//! Then, round by round, with the order rotating:
//!
//! - A: `karapace-tui --store S --json build DIR`, where `DIR/karapace.toml` is fresh every round
//!   (no lock), pins the image's sha256 (else every resolve would import the tarball again)
//!   and lists `packages = ["hello"]`: it resolves in a scratch overlay (`apt-get update`,
//!   `apt-cache policy`, and `apt-get install hello=VERSION` between two `dpkg-query` listings
//!   of the installed packages, which give the dependencies to lock), then that overlay's
//!   layer becomes the environment's, and it cleans apt's cache. Untimed afterwards: `exec
//!   NAME -- hello` must print `Hello, world!`, then `destroy NAME`.
//! - B: a fresh kernel overlay over the same tree (with `/proc`, the host's `/dev`, `/dev/pts`
//!   and `/etc/resolv.conf` mounted in), and `chroot MERGED sh -c 'apt-get update && apt-get
//!   install -y --no-install-recommends hello'`. Untimed afterwards: `hello` must greet, and
//!   `dpkg-query` must report the version A locked; then everything is unmounted and removed.
//! - B′: B without `apt-get update` (install from the image's own indexes), for information.
//!
//! The goal is A/B ≤ 1.2 on the medians: B includes the index refresh because A needs it too
//! (the image's indexes are as old as the image). A's stderr is read line by line as it comes,
//! so the bench also shows where A's time goes, from the moments its steps are announced. Goals
//! are reported PASS/FAIL but never fail the run: only a failing command or a wrong result does.
//! It prints `SKIPPED: …` and exits 0 without the tarball, without root (the reference mounts
//! and chroots), without `chroot`, without network access to deb.debian.org, or where the
//! namespace backend is unavailable.
//!
//! Knobs (environment variables): `KARAPACE_BENCH_ROUNDS` (measured rounds, default 5; each
//! round takes a few seconds and downloads from the Debian mirror), `KARAPACE_BENCH_BIN`
//! (another binary to measure), `KARAPACE_BENCH_KEEP=1` (keep the scratch directory), and
//! `KARAPACE_TEST_ROOTFS_TARBALL` (the image, which must use apt).

use std::fs::{self};
use std::io::{BufRead, BufReader, Read};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

const WARMUPS: usize = 1;
const DEFAULT_ROUNDS: usize = 5;
/// Package build time ÷ `apt-get update && apt-get install` time, on the medians.
const GOAL: f64 = 1.2;
/// Where `.ci/run` caches the debootstrap'd bookworm tarball.
/// The package installed, and what its program must print.
const PACKAGE: &str = "hello";
const GREETING: &str = "Hello, world!";
/// The environment that imports the image (no packages), and the one built every round.
const BASE_NAME: &str = "packages-base";
const ENV_NAME: &str = "packages-bench";
/// The mirror the CI image's sources.list names; probed before anything is measured.
const MIRROR: &str = "deb.debian.org:80";
/// The `PATH` the namespace backend gives package managers (src/runtime/install.rs).
const SANDBOX_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Host variables both sides pass to apt, as the namespace backend does for build steps.
const PROXY_VARS: [&str; 6] = [
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
];
/// How many of a failed command's last output lines its error repeats.
const TAIL_LINES: usize = 20;

mod common;
use common::{
    bench_rounds, binary, children_cpu, env_flag, exit_code, find_on_path, json, make_writable,
    overlay_safe, percentile, ratio, sha256_file, tarball, Res,
};

fn main() -> ExitCode {
    exit_code(run())
}

// ---------------------------------------------------------------------------------------------
// Timed runs and statistics

/// One timed run: wall time from spawn to reaped exit, CPU time (user + sys of the child and
/// every descendant it reaped), stdout, and every output line with the moment it arrived.
struct Run {
    wall: Duration,
    cpu: Duration,
    stdout: String,
    lines: Vec<(Duration, String)>,
}

impl Run {
    /// When the first line starting with `prefix` arrived.
    fn seen(&self, prefix: &str) -> Option<Duration> {
        let mut from = 0;
        self.seen_from(prefix, &mut from)
    }

    /// When the first line starting with `prefix` at or after line `from` arrived; `from`
    /// moves past it.
    fn seen_from(&self, prefix: &str, from: &mut usize) -> Option<Duration> {
        let found = self
            .lines
            .iter()
            .enumerate()
            .skip(*from)
            .find(|(_, (_, l))| l.starts_with(prefix))?;
        *from = found.0 + 1;
        Some(found.1 .0)
    }
}

/// Reads `stream` line by line, noting when each line arrived; also keeps the text.
fn pump(stream: impl Read, start: Instant) -> std::io::Result<(String, Vec<(Duration, String)>)> {
    let mut reader = BufReader::new(stream);
    let (mut text, mut lines) = (String::new(), Vec::new());
    let mut raw = Vec::new();
    loop {
        raw.clear();
        if reader.read_until(b'\n', &mut raw)? == 0 {
            return Ok((text, lines));
        }
        let line = String::from_utf8_lossy(&raw);
        text.push_str(&line);
        lines.push((start.elapsed(), line.trim_end().to_string()));
    }
}

/// Runs `cmd` (stdin on /dev/null, stdout and stderr read as they come) and times it. A
/// non-zero exit is an error that repeats the last lines of output.
fn time_command(mut cmd: Command, shown: &str) -> Res<Run> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let cpu_before = children_cpu()?;
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run `{shown}`: {e}"))?;
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let (out, err) = std::thread::scope(|scope| {
        let err = scope.spawn(|| stderr.map(|s| pump(s, start)));
        let out = stdout.map(|s| pump(s, start));
        (out, err.join())
    });
    let status = child
        .wait()
        .map_err(|e| format!("wait for `{shown}`: {e}"))?;
    let wall = start.elapsed();
    let cpu = children_cpu()?.saturating_sub(cpu_before);
    let read = |r: Option<std::io::Result<_>>, which: &str| match r {
        Some(Ok(v)) => Ok(v),
        Some(Err(e)) => Err(format!("read the {which} of `{shown}`: {e}")),
        None => Err(format!("`{shown}` has no {which} pipe")),
    };
    let (stdout, mut lines) = read(out, "stdout")?;
    let err = err.map_err(|_| format!("the thread reading the stderr of `{shown}` panicked"))?;
    let (_, err_lines) = read(err, "stderr")?;
    lines.extend(err_lines);
    lines.sort_by_key(|(t, _)| *t);
    if !status.success() {
        let skip = lines.len().saturating_sub(TAIL_LINES);
        let tail: Vec<&str> = lines[skip..].iter().map(|(_, l)| l.as_str()).collect();
        return Err(format!(
            "`{shown}` exited with {status}; its last lines:\n  {}",
            tail.join("\n  ")
        ));
    }
    Ok(Run {
        wall,
        cpu,
        stdout,
        lines,
    })
}

/// Runs `cmd` untimed and returns its stdout; an error (with stderr) if it fails.
fn output(mut cmd: Command, shown: &str) -> Res<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run `{shown}`: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`{shown}` exited with {}; stderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[derive(Clone, Copy)]
struct Sample {
    wall: Duration,
    cpu: Duration,
}

#[derive(Clone, Copy)]
struct Stats {
    median: Duration,
    min: Duration,
    max: Duration,
    cpu: Duration,
}

fn stats(samples: &[Sample]) -> Stats {
    let mut wall: Vec<Duration> = samples.iter().map(|s| s.wall).collect();
    let mut cpu: Vec<Duration> = samples.iter().map(|s| s.cpu).collect();
    wall.sort();
    cpu.sort();
    Stats {
        median: percentile(&wall, 0.5),
        min: wall[0],
        max: wall[wall.len() - 1],
        cpu: percentile(&cpu, 0.5),
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    percentile(&v, 0.5)
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

// ---------------------------------------------------------------------------------------------
// A: karapace-tui build

/// The moments A's steps show on stderr: src/runtime/namespace.rs and install.rs print
/// `apt: COMMAND` before each sandboxed command and `apt: installed …` at the end, the engine
/// `building …` once the lock is made, and apt's own lines follow as `apt | LINE`. `apt-get
/// update` ends with its (first) `Reading package lists...` line, complete once it has
/// rebuilt its caches. Each marker is the first such line after the previous marker (the
/// listing of dpkg's database runs twice), and each phase runs from its marker to the next
/// one (the last to A's exit).
const A_PHASES: [(&str, &str); 9] = [
    (
        "",
        "start-up, manifest, cached image re-verified (tree digest), scratch overlay",
    ),
    (
        "apt: apt-get update",
        "apt-get update in a scratch overlay, from the sandbox's start",
    ),
    (
        "apt | Reading package lists...",
        "end of apt-get update: its exit, the sandbox's exit and unmount",
    ),
    (
        "apt: apt-cache policy",
        "apt-cache policy, then dpkg-query lists the image's packages",
    ),
    (
        "apt: apt-get install",
        "apt-get install hello=VERSION in the scratch overlay",
    ),
    (
        "apt: dpkg-query",
        "dpkg-query lists the installed packages, checked, lock made",
    ),
    (
        "building ",
        "image re-verified again, staging, the scratch layer moved in",
    ),
    (
        "apt: apt-get clean",
        "apt-get clean, the layer synced to disk",
    ),
    (
        "apt: installed",
        "commit of the environment, karapace.lock, exit",
    ),
];

struct Ours<'a> {
    bin: &'a Path,
    store: &'a str,
    manifest: String,
    rounds_dir: PathBuf,
}

/// What one round of A gives besides its timing.
struct OursRound {
    sample: Sample,
    /// The version the lock pins.
    version: String,
    /// The phases of [`A_PHASES`], if every marker was seen.
    phases: Option<Vec<Duration>>,
}

impl Ours<'_> {
    /// `karapace-tui` with every `KARAPACE_*` variable removed (a developer's trace or store
    /// settings must not change what is measured).
    fn command(&self, args: &[&str]) -> (Command, String) {
        let mut cmd = Command::new(self.bin);
        cmd.arg("--store").arg(self.store).args(args);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("KARAPACE_") {
                cmd.env_remove(&key);
            }
        }
        (cmd, format!("karapace-tui --store S {}", args.join(" ")))
    }

    fn round(&self, n: usize) -> Res<OursRound> {
        let project = self.rounds_dir.join(format!("a{n}")).join(ENV_NAME);
        fs::create_dir_all(&project).map_err(|e| format!("mkdir {}: {e}", project.display()))?;
        let manifest = project.join("karapace.toml");
        fs::write(&manifest, &self.manifest)
            .map_err(|e| format!("write {}: {e}", manifest.display()))?;
        let dir = project.display().to_string();
        let (cmd, shown) = self.command(&["--json", "build", &dir]);
        let run = time_command(cmd, &shown)?;
        if let Some((_, line)) = run.lines.iter().find(|(_, l)| l.starts_with("fetching ")) {
            return Err(format!(
                "A imported the image again ({line:?}) although the manifest pins its sha256; \
                 the measurement would include an import"
            ));
        }

        // A real build happened: no environment with this id was left from an earlier round.
        let built = json(&run.stdout, "build --json")?;
        if built["built"] != true || built["name"] != ENV_NAME || built["backend"] != "namespace" {
            return Err(format!("unexpected build result: {built}"));
        }
        let version = locked_version(&project.join("karapace.lock"))?;
        let (cmd, shown) = self.command(&["exec", ENV_NAME, "--", PACKAGE]);
        let greeting = output(cmd, &shown)?;
        if greeting.trim_end() != GREETING {
            return Err(format!("`{shown}` printed {greeting:?}, not {GREETING:?}"));
        }
        let (cmd, shown) = self.command(&["destroy", ENV_NAME]);
        output(cmd, &shown)?;
        fs::remove_dir_all(&project).map_err(|e| format!("remove {}: {e}", project.display()))?;

        let mut marks = Vec::with_capacity(A_PHASES.len() + 1);
        let mut from = 0;
        for (marker, _) in A_PHASES {
            marks.push(if marker.is_empty() {
                Some(Duration::ZERO)
            } else {
                run.seen_from(marker, &mut from)
            });
        }
        marks.push(Some(run.wall));
        let phases = marks
            .into_iter()
            .collect::<Option<Vec<Duration>>>()
            .filter(|m| m.windows(2).all(|w| w[0] <= w[1]))
            .map(|m| m.windows(2).map(|w| w[1] - w[0]).collect());
        Ok(OursRound {
            sample: Sample {
                wall: run.wall,
                cpu: run.cpu,
            },
            version,
            phases,
        })
    }
}

/// The version `karapace.lock` pins for [`PACKAGE`].
fn locked_version(lock_path: &Path) -> Res<String> {
    let text =
        fs::read_to_string(lock_path).map_err(|e| format!("read {}: {e}", lock_path.display()))?;
    let lock: toml::Value = text
        .parse()
        .map_err(|e| format!("{} is not TOML: {e}", lock_path.display()))?;
    lock.get("packages")
        .and_then(|p| p.as_array())
        .and_then(|p| p.iter().find(|p| p["name"].as_str() == Some(PACKAGE)))
        .and_then(|p| p.get("version"))
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .ok_or_else(|| format!("{} pins no version of {PACKAGE}", lock_path.display()))
}

// ---------------------------------------------------------------------------------------------
// B: apt-get in a chroot over a kernel overlay

/// Mounts made by the reference, unmounted in reverse order. Whatever is still mounted when
/// this is dropped (an error path) is detached, so no scratch directory is ever removed while
/// it has something mounted below it (see [`Scratch`]).
struct Mounts(Vec<PathBuf>);

impl Mounts {
    fn mount(
        &mut self,
        source: &str,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Res<()> {
        mount(Some(source), target, fstype, flags, data)
            .map_err(|e| format!("mount {source} on {}: {e}", target.display()))?;
        self.0.push(target.to_path_buf());
        Ok(())
    }

    /// Unmounts everything; the time it took (unmounting the overlay syncs its upper file
    /// system).
    fn unmount(&mut self) -> Res<Duration> {
        let start = Instant::now();
        while let Some(target) = self.0.last() {
            umount2(target, MntFlags::empty())
                .map_err(|e| format!("umount {}: {e}", target.display()))?;
            self.0.pop();
        }
        Ok(start.elapsed())
    }
}

impl Drop for Mounts {
    fn drop(&mut self) {
        while let Some(target) = self.0.pop() {
            if let Err(e) = umount2(&target, MntFlags::MNT_DETACH) {
                eprintln!(
                    "warning: could not detach {}: {e}; unmount it by hand",
                    target.display()
                );
            }
        }
    }
}

struct Reference<'a> {
    chroot: &'a Path,
    rootfs: &'a Path,
    rounds_dir: PathBuf,
    /// Whether the image's /etc/resolv.conf is a regular file, which the host's is bound over.
    bind_resolv: bool,
}

/// What one round of B gives besides its timing.
struct ReferenceRound {
    sample: Sample,
    version: String,
    unmount: Duration,
    /// With `apt-get update`: when its `Reading package lists...` line was complete (see
    /// [`A_PHASES`]); the install runs from about then to the end.
    update_end: Option<Duration>,
}

impl Reference<'_> {
    /// `chroot MERGED ARGV` with the environment the namespace backend gives apt (a clean one:
    /// `PATH`, `HOME`, `TERM=dumb`, `LC_ALL=C`, `DEBIAN_FRONTEND=noninteractive`, proxies).
    fn command(&self, merged: &Path, argv: &[&str]) -> (Command, String) {
        let mut cmd = Command::new(self.chroot);
        cmd.arg(merged).args(argv).env_clear().envs([
            ("PATH", SANDBOX_PATH),
            ("HOME", "/root"),
            ("TERM", "dumb"),
            ("LC_ALL", "C"),
            ("DEBIAN_FRONTEND", "noninteractive"),
        ]);
        for key in PROXY_VARS {
            if let Some(value) = std::env::var_os(key) {
                cmd.env(key, value);
            }
        }
        let shown: Vec<String> = argv
            .iter()
            .map(|a| {
                if a.contains(' ') {
                    format!("'{a}'")
                } else {
                    a.to_string()
                }
            })
            .collect();
        (cmd, format!("chroot MERGED {}", shown.join(" ")))
    }

    fn round(&self, n: usize, update: bool) -> Res<ReferenceRound> {
        let dir = self
            .rounds_dir
            .join(format!("{}{n}", if update { "b" } else { "b1-" }));
        let (upper, work, merged) = (dir.join("upper"), dir.join("work"), dir.join("merged"));
        for d in [&upper, &work, &merged] {
            fs::create_dir_all(d).map_err(|e| format!("mkdir {}: {e}", d.display()))?;
        }
        let mut mounts = Mounts(Vec::new());
        // overlayfs(5); the scratch path was checked to hold no `,` `:` or `\`.
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            self.rootfs.display(),
            upper.display(),
            work.display()
        );
        mounts.mount(
            "overlay",
            &merged,
            Some("overlay"),
            MsFlags::empty(),
            Some(&options),
        )?;
        mounts.mount(
            "proc",
            &merged.join("proc"),
            Some("proc"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            None,
        )?;
        // The image was unpacked without device nodes (the sandbox makes its own /dev); apt
        // needs at least /dev/null, and dpkg's log a pseudo-terminal from /dev/pts, which the
        // sandbox has too.
        mounts.mount("/dev", &merged.join("dev"), None, MsFlags::MS_BIND, None)?;
        mounts.mount(
            "/dev/pts",
            &merged.join("dev/pts"),
            None,
            MsFlags::MS_BIND,
            None,
        )?;
        if self.bind_resolv {
            // As the namespace backend does for build steps: the host's resolver, read-only
            // (a bind mount takes its flags from a second, remounting call: mount(2)).
            let target = merged.join("etc/resolv.conf");
            mounts.mount("/etc/resolv.conf", &target, None, MsFlags::MS_BIND, None)?;
            mount(
                None::<&str>,
                &target,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                None::<&str>,
            )
            .map_err(|e| format!("remount {} read-only: {e}", target.display()))?;
        }

        let script = if update {
            format!("apt-get update && apt-get install -y --no-install-recommends {PACKAGE}")
        } else {
            format!("apt-get install -y --no-install-recommends {PACKAGE}")
        };
        let (cmd, shown) = self.command(&merged, &["sh", "-c", &script]);
        let run = time_command(cmd, &shown)?;

        let (cmd, shown) = self.command(&merged, &[PACKAGE]);
        let greeting = output(cmd, &shown)?;
        if greeting.trim_end() != GREETING {
            return Err(format!("`{shown}` printed {greeting:?}, not {GREETING:?}"));
        }
        let (cmd, shown) =
            self.command(&merged, &["dpkg-query", "-W", "-f", "${Version}", PACKAGE]);
        let version = output(cmd, &shown)?.trim().to_string();
        let unmount = mounts.unmount()?;
        fs::remove_dir_all(&dir).map_err(|e| format!("remove {}: {e}", dir.display()))?;
        Ok(ReferenceRound {
            sample: Sample {
                wall: run.wall,
                cpu: run.cpu,
            },
            version,
            unmount,
            update_end: if update {
                run.seen("Reading package lists...")
            } else {
                None
            },
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Set-up

/// Why the mirror cannot be reached, if it cannot (a SKIPPED reason). With a proxy set, apt
/// goes through it, and the direct probe would prove nothing.
fn mirror_unreachable() -> Option<String> {
    if let Some(proxy) = ["http_proxy", "HTTP_PROXY"]
        .into_iter()
        .find(|k| std::env::var_os(k).is_some())
    {
        println!("  network: {proxy} is set; apt goes through it (no direct probe)");
        return None;
    }
    let addrs = match MIRROR.to_socket_addrs() {
        Ok(a) => a.collect::<Vec<_>>(),
        Err(e) => return Some(format!("cannot resolve {MIRROR}: {e}")),
    };
    let mut last = format!("{MIRROR} resolves to no address");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
            Ok(_) => return None,
            Err(e) => last = format!("cannot connect to {MIRROR} ({addr}): {e}"),
        }
    }
    Some(last)
}

/// A manifest for the namespace backend on `image` (pinned to `sha256` if given), with
/// `packages`.
fn manifest(image: &str, sha256: Option<&str>, packages: &[&str]) -> String {
    let mut text = format!("manifest_version = 1\n\n[base]\nimage = \"{image}\"\n");
    if let Some(sha) = sha256 {
        text.push_str(&format!("sha256 = \"{sha}\"\n"));
    }
    text.push('\n');
    if !packages.is_empty() {
        let list: Vec<String> = packages.iter().map(|p| format!("\"{p}\"")).collect();
        text.push_str(&format!("[system]\npackages = [{}]\n\n", list.join(", ")));
    }
    text.push_str("[runtime]\nbackend = \"namespace\"\n");
    text
}

/// The mount points at or below `dir`, from /proc/self/mountinfo (proc(5): the fifth field,
/// with space, tab, newline and backslash written as octal escapes).
fn mounts_below(dir: &Path) -> Res<Vec<PathBuf>> {
    let text = fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("read /proc/self/mountinfo: {e}"))?;
    let mut found = Vec::new();
    for line in text.lines() {
        let Some(field) = line.split(' ').nth(4) else {
            continue;
        };
        let mut bytes = Vec::with_capacity(field.len());
        let raw = field.as_bytes();
        let mut i = 0;
        while i < raw.len() {
            let octal = raw
                .get(i + 1..i + 4)
                .filter(|o| o.iter().all(u8::is_ascii_digit));
            match (raw[i], octal) {
                (b'\\', Some(o)) => {
                    bytes.push((o[0] - b'0') * 64 + (o[1] - b'0') * 8 + (o[2] - b'0'));
                    i += 4;
                }
                (b, _) => {
                    bytes.push(b);
                    i += 1;
                }
            }
        }
        let point = PathBuf::from(String::from_utf8_lossy(&bytes).into_owned());
        if point.starts_with(dir) {
            found.push(point);
        }
    }
    Ok(found)
}

/// The scratch directory, removed when dropped (on every path, SKIPPED ones included), but
/// only when nothing is mounted below it: a recursive removal would descend into a bind mount
/// of the host's /dev.
struct Scratch(Option<tempfile::TempDir>);

impl Scratch {
    fn path(&self) -> &Path {
        self.0.as_ref().map_or(Path::new(""), |d| d.path())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let Some(dir) = self.0.take() else {
            return;
        };
        let path = dir.path().to_path_buf();
        match mounts_below(&path) {
            Ok(points) if points.is_empty() => {
                make_writable(&path);
                if let Err(e) = dir.close() {
                    eprintln!("warning: could not remove {}: {e}", path.display());
                }
            }
            Ok(points) => {
                let kept = dir.keep();
                eprintln!(
                    "warning: kept {} because something is still mounted below it ({}); \
                     unmount those and remove it by hand",
                    kept.display(),
                    points
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            Err(e) => {
                let kept = dir.keep();
                eprintln!(
                    "warning: kept {} because its mounts could not be checked: {e}",
                    kept.display()
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------

/// The cases, in the order of the tables.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Case {
    Ours,
    Reference,
    InstallOnly,
}

impl Case {
    const ALL: [Case; 3] = [Case::Ours, Case::Reference, Case::InstallOnly];

    fn label(self) -> &'static str {
        match self {
            Case::Ours => "A",
            Case::Reference => "B",
            Case::InstallOnly => "B'",
        }
    }

    fn what(self) -> String {
        match self {
            Case::Ours => format!("karapace-tui build DIR  (packages = [\"{PACKAGE}\"], no lock)"),
            Case::Reference => format!(
                "chroot OVERLAY sh -c 'apt-get update && apt-get install -y \
                 --no-install-recommends {PACKAGE}'"
            ),
            Case::InstallOnly => format!(
                "chroot OVERLAY apt-get install -y --no-install-recommends {PACKAGE}  \
                 (no update)"
            ),
        }
    }
}

fn run() -> Res<()> {
    let total = Instant::now();
    println!(
        "karapace-tui packages bench: `build` with packages = [\"{PACKAGE}\"] vs apt-get in a \
         chroot over the same rootfs"
    );
    let tarball = match tarball() {
        Ok(p) => p,
        Err(why) => {
            println!("SKIPPED: {why}");
            return Ok(());
        }
    };
    if !nix::unistd::geteuid().is_root() {
        println!(
            "SKIPPED: the reference needs root (it mounts an overlay and chroots into it); \
             run the bench as root"
        );
        return Ok(());
    }
    let Some(chroot) = find_on_path("chroot") else {
        println!("SKIPPED: chroot is not on PATH (nothing is installed by this bench)");
        return Ok(());
    };
    let rounds = bench_rounds(DEFAULT_ROUNDS)?;
    let bin = binary()?;

    let mut tmp = Scratch(Some(
        tempfile::Builder::new()
            .prefix("karapace-bench-packages-")
            .tempdir()
            .map_err(|e| format!("create temp dir: {e}"))?,
    ));
    let scratch = tmp
        .path()
        .canonicalize()
        .map_err(|e| format!("canonicalize {}: {e}", tmp.path().display()))?;
    overlay_safe(&scratch)?;
    let store_path = scratch.join("store");
    let store = store_path.display().to_string();
    println!("  binary:  {}", bin.display());
    println!("  chroot:  {}", chroot.display());
    println!("  image:   {}", tarball.display());
    println!("  scratch: {}", scratch.display());
    println!(
        "  rounds:  {WARMUPS} warm-up + {rounds} measured, interleaved, the order rotating \
         (each round downloads from the mirror)"
    );
    if let Some(why) = mirror_unreachable() {
        println!("SKIPPED: no network to the Debian mirror: {why}");
        return Ok(());
    }

    // The namespace backend must work here (doctor exits non-zero while any backend is
    // unavailable, so its report is what counts).
    let mut doctor_cmd = Command::new(&bin);
    doctor_cmd.args(["--store", &store, "--json", "doctor"]);
    let doctor = doctor_cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run karapace-tui doctor: {e}"))?;
    let doctor = json(
        &String::from_utf8_lossy(&doctor.stdout),
        &format!(
            "doctor --json (stderr: {})",
            String::from_utf8_lossy(&doctor.stderr).trim_end()
        ),
    )?;
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

    // 1. The image, imported once by an environment without packages.
    let image = tarball.display().to_string();
    if image.contains(['"', '\\']) || image.chars().any(char::is_control) {
        return Err(format!(
            "the tarball path {image} cannot go into a TOML string as is"
        ));
    }
    let sha = sha256_file(&tarball)?;
    let rounds_dir = scratch.join("rounds");
    fs::create_dir(&rounds_dir).map_err(|e| format!("mkdir {}: {e}", rounds_dir.display()))?;
    // A's manifest pins the image's sha256: without a pin (and without a lock, as every round
    // starts), a local tarball is read, unpacked and hashed again by every resolve, and A
    // would measure an image import. With it, the cached image is found by its sha256 (and
    // its tree digest checked, which A does count).
    let ours = Ours {
        bin: &bin,
        store: &store,
        manifest: manifest(&image, Some(&sha), &[PACKAGE]),
        rounds_dir: rounds_dir.clone(),
    };
    let base = scratch.join(BASE_NAME);
    fs::create_dir(&base).map_err(|e| format!("mkdir {}: {e}", base.display()))?;
    fs::write(base.join("karapace.toml"), manifest(&image, None, &[]))
        .map_err(|e| format!("write {}: {e}", base.join("karapace.toml").display()))?;
    let started = Instant::now();
    let (cmd, shown) = ours.command(&["--json", "build", &base.display().to_string()]);
    let built = json(&output(cmd, &shown)?, "build --json")?;
    if built["built"] != true || built["name"] != BASE_NAME {
        return Err(format!("unexpected build result: {built}"));
    }
    let import_secs = started.elapsed().as_secs_f64();
    let rootfs = store_path.join("images").join(&sha).join("rootfs");
    if !rootfs.join("etc").is_dir() {
        return Err(format!(
            "the unpacked image is not at {} (sha256 of the tarball)",
            rootfs.display()
        ));
    }
    if !rootfs.join("usr/bin/apt-get").is_file() {
        println!(
            "SKIPPED: the image {} has no /usr/bin/apt-get; this bench compares with apt",
            tarball.display()
        );
        return Ok(());
    }
    let resolv = fs::symlink_metadata(rootfs.join("etc/resolv.conf"));
    let bind_resolv = resolv.as_ref().is_ok_and(|m| m.is_file());
    println!("imported the image in {import_secs:.1} s (building {BASE_NAME}, not measured)");
    println!("rootfs:  {}", rootfs.display());
    if !bind_resolv {
        // The namespace backend leaves such a file alone too (src/runtime/install.rs).
        println!("  note: the image's /etc/resolv.conf is no regular file; B uses it as it is");
    }
    let reference = Reference {
        chroot: &chroot,
        rootfs: &rootfs,
        rounds_dir,
        bind_resolv,
    };
    println!();

    // 2. The comparison.
    let mut cases: Vec<Case> = Case::ALL.to_vec();
    let mut samples: Vec<Vec<Sample>> = vec![Vec::with_capacity(rounds); Case::ALL.len()];
    let mut phases: Vec<Vec<Duration>> = Vec::with_capacity(rounds);
    let mut unmounts: Vec<Duration> = Vec::with_capacity(rounds);
    let mut b_updates: Vec<(Duration, Duration)> = Vec::with_capacity(rounds);
    let mut versions: Vec<(Case, String)> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    let mut n = 0;
    for round in 0..WARMUPS + rounds {
        let warm = round < WARMUPS;
        let mut line = format!(
            "{} {:>2}:",
            if warm { "warm-up" } else { "round  " },
            if warm { round + 1 } else { round - WARMUPS + 1 }
        );
        let order: Vec<Case> = (0..cases.len())
            .map(|i| cases[(i + round) % cases.len()])
            .collect();
        for case in order {
            n += 1;
            let sample = match case {
                Case::Ours => {
                    let r = ours.round(n)?;
                    if !warm {
                        if let Some(p) = r.phases {
                            phases.push(p);
                        }
                    }
                    versions.push((case, r.version));
                    r.sample
                }
                Case::Reference | Case::InstallOnly => {
                    match reference.round(n, case == Case::Reference) {
                        Ok(r) => {
                            if !warm && case == Case::Reference {
                                unmounts.push(r.unmount);
                                if let Some(t) = r.update_end {
                                    b_updates.push((t, r.sample.wall.saturating_sub(t)));
                                }
                            }
                            versions.push((case, r.version));
                            r.sample
                        }
                        // The install from the image's own indexes is information only; it
                        // fails once the mirror no longer has the version they name.
                        Err(e) if warm && case == Case::InstallOnly => {
                            notes.push(format!("B' left out: it failed in the warm-up: {e}"));
                            cases.retain(|c| *c != Case::InstallOnly);
                            continue;
                        }
                        Err(e) => return Err(e),
                    }
                }
            };
            line.push_str(&format!(
                " {} {:.2} s",
                case.label(),
                sample.wall.as_secs_f64()
            ));
            if !warm {
                samples[case as usize].push(sample);
            }
        }
        println!("{line}");
    }
    println!();

    // A and B must have installed the same version; B' takes whatever the image's indexes
    // offer, which may be older.
    let locked = versions
        .iter()
        .find(|(c, _)| *c == Case::Ours)
        .map(|(_, v)| v.clone())
        .ok_or("no round of A ran")?;
    for (case, version) in &versions {
        if *version != locked && *case != Case::InstallOnly {
            return Err(format!(
                "{} installed {PACKAGE} {version}, another round {locked}: the mirror changed \
                 during the run, or the two do not resolve alike",
                case.label()
            ));
        }
    }
    let install_only_version = versions
        .iter()
        .find(|(c, _)| *c == Case::InstallOnly)
        .map(|(_, v)| v.as_str());

    let st: Vec<Option<Stats>> = samples
        .iter()
        .map(|s| (!s.is_empty()).then(|| stats(s)))
        .collect();
    let (sa, sb) = match (st[Case::Ours as usize], st[Case::Reference as usize]) {
        (Some(a), Some(b)) => (a, b),
        _ => return Err("a case has no measured round".to_string()),
    };
    println!(
        "{rounds} rounds; wall time from spawn to reaped exit; cpu = median user+sys of the \
         process tree; {PACKAGE} {locked} in A and B{}",
        match install_only_version {
            Some(v) => format!(", {v} in B'"),
            None => String::new(),
        }
    );
    println!(
        "{:<96} {:>8} {:>8} {:>8} {:>8} {:>7}",
        "case", "median", "min", "max", "cpu", "/ B"
    );
    println!("{}", "-".repeat(141));
    for case in Case::ALL {
        let Some(s) = st[case as usize] else {
            continue;
        };
        println!(
            "{:<96} {:>8} {:>8} {:>8} {:>8} {:>6.2}x",
            format!("{:<4}{}", case.label(), case.what()),
            secs(s.median),
            secs(s.min),
            secs(s.max),
            secs(s.cpu),
            ratio(s.median, sb.median)
        );
    }
    for note in &notes {
        println!("{note}");
    }
    let r = ratio(sa.median, sb.median);
    // The mirror's speed changes from minute to minute; A and B of one round ran within
    // seconds of each other, so the ratio within each round is steadier than the medians.
    let mut paired: Vec<f64> = samples[Case::Ours as usize]
        .iter()
        .zip(&samples[Case::Reference as usize])
        .map(|(a, b)| ratio(a.wall, b.wall))
        .collect();
    paired.sort_by(f64::total_cmp);
    println!(
        "ratio A/B: {r:.2} (of the medians; the goal figure); A - B = {:+.2} s; \
         median of the per-round ratios {:.2} (min {:.2}, max {:.2})",
        sa.median.as_secs_f64() - sb.median.as_secs_f64(),
        paired[(paired.len() - 1) / 2],
        paired[0],
        paired[paired.len() - 1]
    );
    if !unmounts.is_empty() {
        println!(
            "  (not counted in B: unmounting its overlay afterwards, which syncs the upper file \
             system, median {}; A's sandboxes unmount theirs within A's time)",
            secs(median(unmounts))
        );
    }
    println!();

    // 3. Where the time goes (information only), from the moments output lines arrived.
    println!("where the time goes (medians of the measured rounds; phases from output lines):");
    if phases.is_empty() {
        println!("  A: not shown (its stderr never announced every step)");
    } else {
        for (i, (marker, what)) in A_PHASES.iter().enumerate() {
            let d = median(phases.iter().map(|p| p[i]).collect());
            let from = if marker.is_empty() {
                "spawn".to_string()
            } else {
                format!("`{marker}`")
            };
            println!("  A {:>8}  {what}  (from {from})", secs(d));
        }
        if phases.len() < rounds {
            println!(
                "  (A: {} of {rounds} rounds did not announce every step)",
                rounds - phases.len()
            );
        }
    }
    if b_updates.is_empty() {
        println!("  B: not shown (apt-get update never printed `Reading package lists...`)");
    } else {
        println!(
            "  B {:>8}  apt-get update, until its `Reading package lists...` line",
            secs(median(b_updates.iter().map(|b| b.0).collect()))
        );
        println!(
            "  B {:>8}  apt-get install, from then on",
            secs(median(b_updates.iter().map(|b| b.1).collect()))
        );
    }
    println!();

    // 4. The goal (reported, never enforced: the network and the machine are shared).
    println!(
        "goal package build ratio <= {GOAL}: {} (ratio {r:.2}; A {} vs B {})",
        if r <= GOAL { "PASS" } else { "FAIL" },
        secs(sa.median),
        secs(sb.median)
    );
    println!();
    println!("total bench time {:.1} s", total.elapsed().as_secs_f64());

    if env_flag("KARAPACE_BENCH_KEEP", false) {
        if let Some(dir) = tmp.0.take() {
            println!("kept {}", dir.keep().display());
        }
    }
    Ok(())
}

//! Cold import of a base image, side by side with the plain shell pipeline that does the same
//! download and unpack without verifying anything.
//!
//! Run with `cargo bench --bench image`; benches/README.md explains every number. In short:
//! two rootfs-like tarballs are made once from `/usr` (about 256 MiB and 32 MiB of file content,
//! every top-level directory contributing, `tar | xz -T0 -3`) and cached under the target
//! directory, keyed by a fingerprint of their content. A tiny HTTP server on 127.0.0.1 serves them. Then, round by
//! round and alternating which goes first, the large one is imported
//!
//! - A: `karapace-tui --store FRESH images pull http://127.0.0.1:PORT/large.tar.xz`, and
//! - B: `sh -c 'curl -s URL | xz -dc | tar -x -C FRESH'`,
//!
//! each into a fresh directory that is checked outside the timing (same directories, files,
//! symlinks and bytes as the source) and kept until the end of the run (see [`Runner::run`]). The goal is A/B ≤ 1.1 on the
//! medians. Memory: the peak RSS of A (GNU time `%M`) for the small and the large tarball; the
//! goal is large/small ≤ 1.5. Then, for information, the stages alone (download, `xz -dc`,
//! `tar -x`, our import of an uncompressed tar, our import from a local file), to show where
//! the time goes. Goals are reported PASS/FAIL but never fail the run: only a failing command
//! or a wrong result does.
//!
//! Knobs (environment variables): `KARAPACE_BENCH_ROUNDS` (measured rounds, default 6),
//! `KARAPACE_BENCH_BIN` (another binary to measure), `KARAPACE_BENCH_KEEP=1` (keep the scratch
//! directory), `KARAPACE_BENCH_PHASES=0` (skip the per-stage section),
//! `KARAPACE_BENCH_IMAGE_SOURCE` (the tree the tarballs are cut from, default `/usr`).

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

/// Uncompressed file content of the two tarballs.
const LARGE_MIB: u64 = 256;
const SMALL_MIB: u64 = 32;
const WARMUPS: usize = 1;
const DEFAULT_ROUNDS: usize = 6;
const MEMORY_RUNS: usize = 3;
const PHASE_RUNS: usize = 3;
/// Import time ÷ pipeline time, on the medians.
const GOAL_RATIO: f64 = 1.1;
/// "Flat" memory: the large import's peak RSS within this factor of the small one's.
const FLAT_FACTOR: f64 = 1.5;
/// Bump when the way the tarballs are made changes, so cached ones are rebuilt.
const RECIPE: &str = "karapace-bench-image v2: shared prefixes, tar --null -T | xz -T0 -3";

mod common;
use common::{
    bench_rounds, binary, children_cpu, exit_code, median_u64, percentile, ratio, target_dir, Res,
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

/// Wall time and CPU time (user + sys of the child and every descendant it reaped).
#[derive(Clone, Copy)]
struct Sample {
    wall: Duration,
    cpu: Duration,
}

impl Cmd {
    fn new(program: impl Into<PathBuf>, args: &[&str]) -> Cmd {
        Cmd {
            program: program.into(),
            args: args.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn sh(script: &str) -> Cmd {
        Cmd::new("sh", &["-c", script])
    }

    fn describe(&self) -> String {
        let mut s = self.program.display().to_string();
        for a in &self.args {
            s.push(' ');
            if a.contains(' ') {
                s.push_str(&format!("'{a}'"));
            } else {
                s.push_str(a);
            }
        }
        s
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .env_remove("KARAPACE_STORE")
            .env_remove("KARAPACE_IMAGE_SERVER")
            .env_remove("KARAPACE_CRASH_AT")
            .env_remove("KARAPACE_CRASH_TRACE")
            .stdin(Stdio::null());
        cmd
    }

    /// Run once, stdout discarded and stderr kept in `stderr_file` (shown if it fails).
    fn time_once(&self, stderr_file: &Path) -> Res<Sample> {
        let err = File::create(stderr_file)
            .map_err(|e| format!("create {}: {e}", stderr_file.display()))?;
        let mut cmd = self.command();
        cmd.stdout(Stdio::null()).stderr(err);
        let cpu_before = children_cpu()?;
        let start = Instant::now();
        let status = cmd
            .status()
            .map_err(|e| format!("cannot run `{}`: {e}", self.describe()))?;
        let wall = start.elapsed();
        let cpu = children_cpu()?.saturating_sub(cpu_before);
        if !status.success() {
            let text = fs::read_to_string(stderr_file).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(20).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            return Err(format!(
                "`{}` exited with {status}; stderr:\n{}",
                self.describe(),
                tail.join("\n")
            ));
        }
        Ok(Sample { wall, cpu })
    }
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

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn env_flag(name: &str, default: bool) -> bool {
    match std::env::var(name) {
        Ok(v) => !matches!(v.trim(), "" | "0" | "no" | "false"),
        Err(_) => default,
    }
}

// ---------------------------------------------------------------------------------------------
// Test tarballs

/// What a tree holds; the source selection and every unpacked copy must agree.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Content {
    dirs: u64,
    files: u64,
    symlinks: u64,
    /// Sum of regular file sizes, each path counted (hard links too).
    bytes: u64,
}

impl Content {
    fn describe(&self) -> String {
        format!(
            "{} dirs, {} files, {} symlinks, {} of file content",
            self.dirs,
            self.files,
            self.symlinks,
            mib(self.bytes)
        )
    }
}

/// A selection from a source tree: the entries to archive, relative to the source's parent.
struct Selection {
    names: Vec<Vec<u8>>,
    content: Content,
    fingerprint: blake3::Hasher,
}

/// Choose about `budget` bytes of file content from `source`, the way a rootfs mixes
/// binaries, libraries, headers and data: every top-level subdirectory (in name order) gets an
/// equal share of what is left, and within it entries are taken depth-first in byte order of
/// names (directories, regular files, symlinks) until its share is used. Unreadable entries,
/// sockets, FIFOs and device nodes are left out.
fn select(source: &Path, budget: u64) -> Res<Selection> {
    let base = source
        .file_name()
        .ok_or_else(|| format!("{} has no final component", source.display()))?;
    let mut sel = Selection {
        names: Vec::new(),
        content: Content::default(),
        fingerprint: blake3::Hasher::new(),
    };
    sel.fingerprint.update(RECIPE.as_bytes());
    sel.fingerprint.update(&budget.to_le_bytes());
    walk(source, base.as_bytes().to_vec(), budget, &mut sel, true)?;
    if sel.content.files == 0 {
        return Err(format!("no readable files under {}", source.display()));
    }
    Ok(sel)
}

/// Add the directory `path` and its entries until the file content reaches `limit` bytes;
/// with `split`, its subdirectories share what is left equally instead.
fn walk(path: &Path, rel: Vec<u8>, limit: u64, sel: &mut Selection, split: bool) -> Res<()> {
    let Ok(listing) = fs::read_dir(path) else {
        return Ok(()); // unreadable: left out
    };
    let mut children: Vec<(Vec<u8>, PathBuf)> = listing
        .filter_map(|e| e.ok())
        .map(|e| (e.file_name().as_bytes().to_vec(), e.path()))
        .collect();
    children.sort();
    let meta = fs::symlink_metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    add(sel, &rel, &meta);
    sel.content.dirs += 1;
    let mut subdirs = Vec::new();
    for (name, child) in children {
        if sel.content.bytes >= limit {
            break;
        }
        let Ok(meta) = fs::symlink_metadata(&child) else {
            continue;
        };
        let mut child_rel = rel.clone();
        child_rel.push(b'/');
        child_rel.extend_from_slice(&name);
        let ft = meta.file_type();
        if ft.is_dir() {
            if split {
                subdirs.push((child, child_rel));
            } else {
                walk(&child, child_rel, limit, sel, false)?;
            }
        } else if ft.is_file() {
            if File::open(&child).is_err() {
                continue;
            }
            add(sel, &child_rel, &meta);
            sel.content.files += 1;
            sel.content.bytes += meta.len();
        } else if ft.is_symlink() {
            add(sel, &child_rel, &meta);
            sel.content.symlinks += 1;
        }
    }
    let n = subdirs.len();
    for (i, (child, child_rel)) in subdirs.into_iter().enumerate() {
        let share = limit.saturating_sub(sel.content.bytes) / (n - i) as u64;
        walk(&child, child_rel, sel.content.bytes + share, sel, false)?;
    }
    Ok(())
}

fn add(sel: &mut Selection, rel: &[u8], meta: &fs::Metadata) {
    let fp = &mut sel.fingerprint;
    fp.update(&(rel.len() as u64).to_le_bytes());
    fp.update(rel);
    for n in [
        meta.mode() as u64,
        meta.len(),
        meta.mtime() as u64,
        meta.mtime_nsec() as u64,
        meta.uid() as u64,
        meta.gid() as u64,
    ] {
        fp.update(&n.to_le_bytes());
    }
    sel.names.push(rel.to_vec());
}

/// Count what is under `root` (not `root` itself).
fn count_tree(root: &Path) -> Res<Content> {
    let mut c = Content::default();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).map_err(|e| format!("list {}: {e}", dir.display()))? {
            let entry = entry.map_err(|e| format!("list {}: {e}", dir.display()))?;
            let meta = fs::symlink_metadata(entry.path())
                .map_err(|e| format!("stat {}: {e}", entry.path().display()))?;
            let ft = meta.file_type();
            if ft.is_dir() {
                c.dirs += 1;
                stack.push(entry.path());
            } else if ft.is_file() {
                c.files += 1;
                c.bytes += meta.len();
            } else if ft.is_symlink() {
                c.symlinks += 1;
            }
        }
    }
    Ok(c)
}

/// One test tarball, cached under the target directory.
struct Tarball {
    path: PathBuf,
    sha256: String,
    compressed: u64,
    content: Content,
}

fn first_line(program: &str, arg: &str) -> Res<String> {
    let out = Command::new(program)
        .arg(arg)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{program} {arg}: {e}"))?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .to_string())
}

/// Make (or reuse) `<cache>/<label>-<fingerprint>.tar.xz` from a `budget`-byte prefix of
/// `source`.
fn tarball(
    cache: &Path,
    source: &Path,
    label: &'static str,
    budget: u64,
    tools: &str,
) -> Res<Tarball> {
    let started = Instant::now();
    let mut sel = select(source, budget)?;
    sel.fingerprint.update(tools.as_bytes());
    sel.fingerprint.update(source.as_os_str().as_bytes());
    let key = sel.fingerprint.finalize().to_hex();
    let path = cache.join(format!("{label}-{}.tar.xz", &key[..16]));
    let made = if path.is_file() {
        false
    } else {
        fs::create_dir_all(cache).map_err(|e| format!("mkdir {}: {e}", cache.display()))?;
        // Older tarballs of this label describe other content: drop them.
        if let Ok(listing) = fs::read_dir(cache) {
            for e in listing.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with(&format!("{label}-")) {
                    drop(fs::remove_file(e.path()));
                }
            }
        }
        let list = cache.join(format!("{label}.list"));
        let mut text = Vec::new();
        for n in &sel.names {
            text.extend_from_slice(n);
            text.push(0);
        }
        fs::write(&list, &text).map_err(|e| format!("write {}: {e}", list.display()))?;
        let parent = source.parent().unwrap_or(Path::new("/"));
        let tmp = cache.join(format!("{label}.tar.xz.part"));
        let out = File::create(&tmp).map_err(|e| format!("create {}: {e}", tmp.display()))?;
        let mut tar = Command::new("tar")
            .arg("-C")
            .arg(parent)
            .args(["--no-recursion", "--null", "-T"])
            .arg(&list)
            .args(["-cf", "-"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run tar: {e}"))?;
        let tar_out = tar.stdout.take().ok_or("tar has no stdout")?;
        let xz = Command::new("xz")
            .args(["-T0", "-3", "-c"])
            .stdin(tar_out)
            .stdout(out)
            .status()
            .map_err(|e| format!("cannot run xz: {e}"))?;
        let tar_status = tar.wait().map_err(|e| format!("tar: {e}"))?;
        if !tar_status.success() || !xz.success() {
            drop(fs::remove_file(&tmp));
            return Err(format!(
                "making {}: tar exited with {tar_status}, xz with {xz}",
                path.display()
            ));
        }
        fs::rename(&tmp, &path).map_err(|e| format!("rename to {}: {e}", path.display()))?;
        drop(fs::remove_file(&list));
        true
    };
    let (sha256, compressed) = sha256_file(&path)?;
    println!(
        "{label:<5} tarball: {} ({}; {} compressed), {} in {:.1} s",
        path.display(),
        sel.content.describe(),
        mib(compressed),
        if made { "made" } else { "cached, checked" },
        started.elapsed().as_secs_f64()
    );
    Ok(Tarball {
        path,
        sha256,
        compressed,
        content: sel.content,
    })
}

/// sha256 (hex) and size of a file.
fn sha256_file(path: &Path) -> Res<(String, u64)> {
    let mut file = File::open(path).map_err(|e| format!("open {}: {e}", path.display()))?;
    let mut sha = Sha256::new();
    let n = io::copy(&mut file, &mut sha).map_err(|e| format!("read {}: {e}", path.display()))?;
    Ok((
        sha.finalize().iter().map(|b| format!("{b:02x}")).collect(),
        n,
    ))
}

/// Average time to create one empty file in a fresh directory under `scratch`: a check that
/// the file system is in its normal state (see the note in [`Runner::run`]).
fn create_probe(scratch: &Path) -> Res<Duration> {
    const N: u32 = 300;
    let dir = scratch.join("create-probe");
    fs::create_dir(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
    let start = Instant::now();
    for i in 0..N {
        let f = dir.join(format!("f{i}"));
        File::create(&f).map_err(|e| format!("create {}: {e}", f.display()))?;
    }
    Ok(start.elapsed() / N)
}

// ---------------------------------------------------------------------------------------------
// A static file server on loopback

struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl Server {
    /// Serve `files` (URL path → file) over HTTP/1.1 on 127.0.0.1, one thread per connection,
    /// `Connection: close`. The body is sent straight from the file (sendfile).
    fn start(files: HashMap<String, PathBuf>) -> Res<Server> {
        let listener =
            TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind 127.0.0.1:0: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let stop = Arc::new(AtomicBool::new(false));
        let files = Arc::new(files);
        let accept_stop = Arc::clone(&stop);
        let accept = thread::spawn(move || {
            for conn in listener.incoming() {
                if accept_stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = conn else { continue };
                let files = Arc::clone(&files);
                // A client that goes away mid-body is its own problem: it fails its command.
                thread::spawn(move || drop(serve(stream, &files)));
            }
        });
        Ok(Server {
            addr,
            stop,
            accept: Some(accept),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}/{path}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        drop(TcpStream::connect(self.addr)); // wake the blocking accept
        if let Some(accept) = self.accept.take() {
            drop(accept.join());
        }
    }
}

fn serve(stream: TcpStream, files: &HashMap<String, PathBuf>) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
    }
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("");
    let path = parts.next().unwrap_or("").trim_start_matches('/');
    let mut out = stream;
    let Some(file) = files
        .get(path)
        .filter(|_| method == "GET" || method == "HEAD")
    else {
        let body = "not found\n";
        write!(
            out,
            "HTTP/1.1 404 Not Found\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        return out.shutdown(std::net::Shutdown::Write);
    };
    let mut file = File::open(file)?;
    let len = file.metadata()?.len();
    write!(
        out,
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {len}\r\n\
         Connection: close\r\n\r\n"
    )?;
    if method == "GET" {
        io::copy(&mut file, &mut out)?;
    }
    out.flush()?;
    out.shutdown(std::net::Shutdown::Write)
}

// ---------------------------------------------------------------------------------------------
// The two ways of importing, with their checks

/// How one case imports a tarball into a fresh directory, and where the tree ends up.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Way {
    /// `karapace-tui --store S images pull SOURCE` (a URL or a local path).
    Import,
    /// A shell pipeline that unpacks into the directory (`{dir}` in the script).
    Shell,
}

struct Case {
    label: String,
    way: Way,
    /// For `Import`: what to pull. For `Shell`: the script, with `{dir}` for the destination.
    what: String,
    /// The tree it must produce, and for `Import` the sha256 it is cached under.
    expect: Option<(Content, Option<String>)>,
}

struct Runner {
    bin: PathBuf,
    scratch: PathBuf,
    serial: usize,
}

impl Runner {
    /// A fresh, not yet existing path in the scratch directory.
    fn fresh(&mut self, prefix: &str) -> PathBuf {
        self.serial += 1;
        self.scratch.join(format!("{prefix}-{}", self.serial))
    }

    /// Set up, time and check one run of `case`. Only the command itself is timed.
    fn run(&mut self, case: &Case) -> Res<Sample> {
        let dest = self.fresh(if case.way == Way::Import {
            "store"
        } else {
            "dir"
        });
        let cmd = match case.way {
            Way::Import => {
                let s = dest.display().to_string();
                Cmd::new(&self.bin, &["--store", &s, "images", "pull", &case.what])
            }
            Way::Shell => {
                fs::create_dir(&dest).map_err(|e| format!("mkdir {}: {e}", dest.display()))?;
                Cmd::sh(&case.what.replace("{dir}", &dest.display().to_string()))
            }
        };
        // Start every run with no dirty pages from the previous one.
        nix::unistd::sync();
        let sample = cmd.time_once(&self.scratch.join("stderr.txt"))?;
        if let Some((content, sha)) = &case.expect {
            let tree = match (case.way, sha) {
                (Way::Import, Some(sha)) => {
                    let rootfs = dest.join("images").join(sha).join("rootfs");
                    if !rootfs.is_dir() {
                        return Err(format!(
                            "{}: {} was not created; the import did not cache the image \
                             under its sha256",
                            case.label,
                            rootfs.display()
                        ));
                    }
                    rootfs
                }
                _ => dest.clone(),
            };
            let got = count_tree(&tree)?;
            if got != *content {
                return Err(format!(
                    "{}: {} holds {}, expected {}",
                    case.label,
                    tree.display(),
                    got.describe(),
                    content.describe()
                ));
            }
        }
        // Nothing is removed before the end of the run: on ext4 without a journal, inodes
        // freed in the last 1 to 6 minutes are skipped one by one when new ones are allocated
        // (`recently_deleted()` in the kernel), which made every create in the next round cost
        // about 1 ms here. The scratch directory goes as a whole at the end.
        Ok(sample)
    }

    /// Interleave the cases round by round (the order rotates every round), after `warmups`
    /// unrecorded rounds. Prints one line per round.
    fn interleave(&mut self, cases: &[Case], warmups: usize, rounds: usize) -> Res<Vec<Stats>> {
        let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); cases.len()];
        for round in 0..warmups + rounds {
            let mut line = if round < warmups {
                format!("  warm-up {:>2}:", round + 1)
            } else {
                format!("  round   {:>2}:", round + 1 - warmups)
            };
            for k in 0..cases.len() {
                let i = (round + k) % cases.len();
                let s = self.run(&cases[i])?;
                line.push_str(&format!("  {} {}", cases[i].label, secs(s.wall)));
                if round >= warmups {
                    samples[i].push(s);
                }
            }
            println!("{line}");
        }
        Ok(samples.iter().map(|s| stats(s)).collect())
    }
}

/// GNU time, if installed.
fn gnu_time() -> Option<PathBuf> {
    let t = Path::new("/usr/bin/time");
    let ok = t.is_file()
        && Command::new(t)
            .arg("--version")
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout).contains("GNU")
                    || String::from_utf8_lossy(&o.stderr).contains("GNU")
            })
            .unwrap_or(false);
    ok.then(|| t.to_path_buf())
}

/// Peak RSS (KiB, GNU time `%M`) of one run of `case`; with a shell pipeline that is the
/// largest single process of the pipeline.
fn peak_rss_kib(runner: &mut Runner, time: &Path, case: &Case) -> Res<u64> {
    let out = runner.scratch.join("time.out");
    let wrapped = Case {
        label: case.label.clone(),
        way: Way::Shell,
        what: match case.way {
            Way::Import => format!(
                "{} -f %M -o {} {} --store {{dir}}/store images pull {}",
                time.display(),
                out.display(),
                runner.bin.display(),
                case.what
            ),
            Way::Shell => format!(
                "{} -f %M -o {} sh -c '{}'",
                time.display(),
                out.display(),
                case.what
            ),
        },
        expect: None,
    };
    runner.run(&wrapped)?;
    let text = fs::read_to_string(&out).map_err(|e| format!("read {}: {e}", out.display()))?;
    text.trim()
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| format!("GNU time wrote {text:?}, not a number of KiB"))
}

// ---------------------------------------------------------------------------------------------

fn run() -> Res<()> {
    let total = Instant::now();
    println!("karapace-tui image bench: cold import vs `curl | xz -dc | tar -x`");
    for tool in ["xz", "curl", "tar", "sh"] {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
            .unwrap_or(false);
        if !found {
            println!("SKIPPED: `{tool}` is not installed (nothing is installed by this bench)");
            return Ok(());
        }
    }
    let rounds = bench_rounds(DEFAULT_ROUNDS)?;
    let source = PathBuf::from(
        std::env::var_os("KARAPACE_BENCH_IMAGE_SOURCE").unwrap_or_else(|| "/usr".into()),
    );
    if !source.is_dir() {
        println!("SKIPPED: {} is not a directory", source.display());
        return Ok(());
    }
    let bin = binary()?;
    let tmp = tempfile::Builder::new()
        .prefix("karapace-bench-image-")
        .tempdir()
        .map_err(|e| format!("create temp dir: {e}"))?;
    let scratch = tmp.path().to_path_buf();
    // Paths go into `sh -c` scripts unquoted.
    if scratch
        .to_string_lossy()
        .chars()
        .any(|c| c.is_whitespace() || "'\"\\$`;&|<>(){}*?[]#~".contains(c))
    {
        return Err(format!(
            "the scratch directory {} contains a character the shell would interpret; set \
             TMPDIR to a plain path",
            scratch.display()
        ));
    }
    let cache = target_dir().join("bench-image");
    println!("  binary:  {}", bin.display());
    println!("  scratch: {}", scratch.display());
    println!("  cache:   {}", cache.display());
    println!(
        "  rounds:  {WARMUPS} warm-up + {rounds} measured, the two cases alternating which goes first"
    );
    println!();

    // 1. Tarballs.
    let tools = format!(
        "{} / {}",
        first_line("tar", "--version")?,
        first_line("xz", "--version")?
    );
    let large = tarball(&cache, &source, "large", LARGE_MIB << 20, &tools)?;
    let small = tarball(&cache, &source, "small", SMALL_MIB << 20, &tools)?;

    // 2. Server. The plain tar is for the per-stage section only.
    let phases = env_flag("KARAPACE_BENCH_PHASES", true);
    let plain = scratch.join("large.tar");
    if phases {
        let out = File::create(&plain).map_err(|e| format!("create {}: {e}", plain.display()))?;
        let st = Command::new("xz")
            .arg("-dc")
            .arg(&large.path)
            .stdout(out)
            .status()
            .map_err(|e| format!("xz -dc: {e}"))?;
        if !st.success() {
            return Err(format!("xz -dc {} exited with {st}", large.path.display()));
        }
    }
    let plain_sha = if phases {
        sha256_file(&plain)?.0
    } else {
        String::new()
    };
    let mut files = HashMap::new();
    files.insert("large.tar.xz".to_string(), large.path.clone());
    files.insert("small.tar.xz".to_string(), small.path.clone());
    files.insert("large.tar".to_string(), plain.clone());
    let server = Server::start(files)?;
    let large_url = server.url("large.tar.xz");
    let small_url = server.url("small.tar.xz");
    println!("serving on {}", server.url(""));
    println!();

    let probe = create_probe(&scratch)?;
    println!(
        "file creation in the scratch directory: {:.0} us per empty file{}",
        probe.as_secs_f64() * 1e6,
        if probe > Duration::from_micros(200) {
            "  WARNING: slow; many files were deleted near it in the last minutes \
             (ext4 without a journal skips recently freed inodes), so every unpack is slowed \
             the same way. Wait a few minutes, or set TMPDIR to another directory."
        } else {
            ""
        }
    );
    println!();

    let mut runner = Runner {
        bin: bin.clone(),
        scratch: scratch.clone(),
        serial: 0,
    };
    let import = |t: &Tarball, what: String, label: &str| Case {
        label: label.to_string(),
        way: Way::Import,
        what,
        expect: Some((t.content, Some(t.sha256.clone()))),
    };
    let shell = |t: &Tarball, script: String, label: &str| Case {
        label: label.to_string(),
        way: Way::Shell,
        what: script,
        expect: Some((t.content, None)),
    };

    // 3. The comparison.
    let a = import(&large, large_url.clone(), "A");
    let b = shell(
        &large,
        format!("curl -s {large_url} | xz -dc | tar -x -C {{dir}}"),
        "B",
    );
    println!("timing the large tarball: A = import, B = curl | xz -dc | tar -x");
    let measured = runner.interleave(&[a, b], WARMUPS, rounds)?;
    let (sa, sb) = (measured[0], measured[1]);
    println!();
    println!(
        "cold import of {} ({} compressed), {rounds} rounds; cpu = median user+sys of the whole process tree",
        mib(large.content.bytes),
        mib(large.compressed)
    );
    println!("{:<44} {:>9} {:>9} {:>9}", "case", "median", "p90", "cpu");
    println!("{}", "-".repeat(74));
    for (label, s) in [
        ("A  karapace-tui images pull URL", sa),
        ("B  sh -c 'curl -s URL | xz -dc | tar -x'", sb),
    ] {
        println!(
            "{label:<44} {:>9} {:>9} {:>9}",
            secs(s.median),
            secs(s.p90),
            secs(s.cpu)
        );
    }
    let r = ratio(sa.median, sb.median);
    println!(
        "ratio A/B: {r:.3} (median), {:.3} (p90), {:.3} (cpu)",
        ratio(sa.p90, sb.p90),
        ratio(sa.cpu, sb.cpu)
    );
    println!();

    // 4. Memory.
    let time = gnu_time();
    let mut rss: Option<(u64, u64)> = None;
    if let Some(time) = &time {
        println!("memory: peak RSS (GNU time %M), median of {MEMORY_RUNS} runs");
        let mut small_kib = Vec::new();
        let mut large_kib = Vec::new();
        let small_case = import(&small, small_url.clone(), "small");
        let large_case = import(&large, large_url.clone(), "large");
        for _ in 0..MEMORY_RUNS {
            small_kib.push(peak_rss_kib(&mut runner, time, &small_case)?);
            large_kib.push(peak_rss_kib(&mut runner, time, &large_case)?);
        }
        let (sk, lk) = (median_u64(small_kib), median_u64(large_kib));
        let pipe_small = peak_rss_kib(
            &mut runner,
            time,
            &shell(
                &small,
                format!("curl -s {small_url} | xz -dc | tar -x -C {{dir}}"),
                "B",
            ),
        )?;
        let pipe_large = peak_rss_kib(
            &mut runner,
            time,
            &shell(
                &large,
                format!("curl -s {large_url} | xz -dc | tar -x -C {{dir}}"),
                "B",
            ),
        )?;
        println!(
            "  A import small ({}, {} entries)  {sk:>8} KiB",
            mib(small.content.bytes),
            small.content.dirs + small.content.files + small.content.symlinks
        );
        println!(
            "  A import large ({}, {} entries) {lk:>8} KiB",
            mib(large.content.bytes),
            large.content.dirs + large.content.files + large.content.symlinks
        );
        println!(
            "  B pipeline, largest process: small {pipe_small} KiB, large {pipe_large} KiB (one run each)"
        );
        println!("  ratio large / small = {:.2}", lk as f64 / sk as f64);
        rss = Some((sk, lk));
    } else {
        println!("memory: SKIPPED: /usr/bin/time not found (GNU time is needed for the peak RSS)");
    }
    println!();

    // 5. Where the time goes (information only).
    if phases {
        let plain_url = server.url("large.tar");
        let xz_path = large.path.display().to_string();
        let plain_path = plain.display().to_string();
        let stage = |script: String, label: &str| Case {
            label: label.to_string(),
            way: Way::Shell,
            what: script,
            expect: None,
        };
        let cases = vec![
            stage(format!("curl -s {large_url} -o /dev/null"), "download"),
            stage(format!("xz -dc {xz_path} > /dev/null"), "xz -dc"),
            shell(
                &large,
                format!("tar -x -C {{dir}} -f {plain_path}"),
                "tar -x",
            ),
            shell(
                &large,
                format!("curl -s {plain_url} | tar -x -C {{dir}}"),
                "curl|tar",
            ),
            Case {
                label: "import .tar".to_string(),
                way: Way::Import,
                what: plain_url.clone(),
                expect: Some((large.content, Some(plain_sha.clone()))),
            },
            import(&large, xz_path.clone(), "import file"),
        ];
        println!(
            "stages, for information ({PHASE_RUNS} rounds, interleaved; the .tar is the large tarball decompressed):"
        );
        let st = runner.interleave(&cases, 0, PHASE_RUNS)?;
        let descriptions = [
            "curl -s URL -o /dev/null                (download alone)",
            "xz -dc large.tar.xz > /dev/null         (decompress alone)",
            "tar -x -f large.tar                     (unpack alone)",
            "curl -s URL.tar | tar -x                (no compression)",
            "karapace-tui images pull URL.tar        (import, no xz)",
            "karapace-tui images pull /path.tar.xz   (import, no HTTP)",
        ];
        println!("{:<58} {:>9} {:>9}", "stage", "median", "cpu");
        println!("{}", "-".repeat(78));
        for (d, s) in descriptions.iter().zip(&st) {
            println!("{d:<58} {:>9} {:>9}", secs(s.median), secs(s.cpu));
        }
        println!(
            "  import .tar / curl|tar = {:.3}; import / (xz -dc alone) = {:.3}; pipeline / (xz -dc alone) = {:.3}",
            ratio(st[4].median, st[3].median),
            ratio(sa.median, st[1].median),
            ratio(sb.median, st[1].median)
        );
        println!();
    }

    // 6. Goals (reported, never enforced).
    let pass = |ok: bool| if ok { "PASS" } else { "FAIL" };
    println!(
        "goal cold import ratio <= {GOAL_RATIO}: {} (ratio {r:.3}; A {} vs B {})",
        pass(r <= GOAL_RATIO),
        secs(sa.median),
        secs(sb.median)
    );
    match rss {
        Some((sk, lk)) => {
            let m = lk as f64 / sk as f64;
            println!(
                "goal memory flat: {} (ratio {m:.2}; {lk} KiB vs {sk} KiB; flat = within {FLAT_FACTOR}x)",
                pass(m <= FLAT_FACTOR)
            );
        }
        None => println!("goal memory flat: SKIPPED: /usr/bin/time not found"),
    }
    println!();
    println!("total bench time {:.1} s", total.elapsed().as_secs_f64());
    drop(server);
    if env_flag("KARAPACE_BENCH_KEEP", false) {
        let kept = tmp.keep();
        println!("kept {}", kept.display());
    } else {
        let started = Instant::now();
        tmp.close()
            .map_err(|e| format!("remove {}: {e}", scratch.display()))?;
        // Clean inode-table buffers shorten the kernel's "recently deleted" window from about
        // 6 minutes to 1 for the next run.
        nix::unistd::sync();
        println!(
            "removed the scratch directory in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

//! Side-by-side timing of the `karapace-tui` CLI against reference commands.
//!
//! Run with `cargo bench --bench core`; benches/README.md explains every number. In short:
//! stores with 1, 100 and 1,000 `mock` environments are made in a temp directory through the
//! library, then `list` and a warm `build` of an unchanged manifest are timed as child
//! processes, interleaved round by round with `/bin/true` and `ls -f STORE/envs`, and reported
//! as median, p90 and ratios to those references. The peak RSS of `list` is taken with GNU
//! time. Goals are reported PASS/FAIL but never fail the run: only a failing command does.
//!
//! Knobs (environment variables): `KARAPACE_BENCH_ROUNDS` (measured rounds per case, default
//! 100, at least 30 recommended), `KARAPACE_BENCH_BIN` (another binary to measure),
//! `KARAPACE_BENCH_KEEP=1` (keep the temp directory and print its path).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use karapace_tui::engine::{BuildOptions, Engine};
use karapace_tui::events::NullSink;
use karapace_tui::manifest::ParseEnv;

const SIZES: [usize; 3] = [1, 100, 1000];
const WARMUPS: usize = 3;
const DEFAULT_ROUNDS: usize = 100;
const MEMORY_RUNS: usize = 5;
/// Both time goals: 10 ms.
const GOAL: Duration = Duration::from_millis(10);
/// "Flat" memory: the 1,000-environment peak RSS within this factor of the 1-environment one.
const FLAT_FACTOR: f64 = 1.5;

mod common;
use common::{bench_rounds, binary, exit_code, median_u64, ratio, Res};

fn main() -> ExitCode {
    exit_code(run())
}

/// One command line to time: a program, its arguments, and a label for the table.
#[derive(Clone)]
struct Cmd {
    label: String,
    program: PathBuf,
    args: Vec<String>,
}

impl Cmd {
    fn new(label: impl Into<String>, program: impl Into<PathBuf>, args: &[&str]) -> Cmd {
        Cmd {
            label: label.into(),
            program: program.into(),
            args: args.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .env_remove("KARAPACE_STORE")
            .env_remove("KARAPACE_MOCK_DELAY_MS")
            .env_remove("KARAPACE_CRASH_TRACE")
            .stdin(Stdio::null());
        cmd
    }

    fn describe(&self) -> String {
        let mut s = self.program.display().to_string();
        for a in &self.args {
            s.push(' ');
            s.push_str(a);
        }
        s
    }

    /// Run once with all output discarded and return the wall time from spawn to reaped exit.
    fn time_once(&self) -> Res<Duration> {
        let mut cmd = self.command();
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        let start = Instant::now();
        let status = cmd
            .status()
            .map_err(|e| format!("cannot run `{}`: {e}", self.describe()))?;
        let elapsed = start.elapsed();
        if !status.success() {
            // Run it again with its output captured, so the failure explains itself.
            let detail = self
                .output()
                .err()
                .unwrap_or_else(|| "(it succeeded when run again)".to_string());
            return Err(format!(
                "`{}` exited with {status}: {detail}",
                self.describe()
            ));
        }
        Ok(elapsed)
    }

    /// Run once and return stdout; an error (with stderr) if it fails.
    fn output(&self) -> Res<String> {
        let out = self
            .command()
            .output()
            .map_err(|e| format!("cannot run `{}`: {e}", self.describe()))?;
        if !out.status.success() {
            return Err(format!(
                "`{}` exited with {}; stderr:\n{}",
                self.describe(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        String::from_utf8(out.stdout).map_err(|e| format!("`{}`: {e}", self.describe()))
    }
}

/// Median and p90 of a set of samples.
#[derive(Clone, Copy)]
struct Stats {
    median: Duration,
    p90: Duration,
}

fn stats(samples: &[Duration]) -> Stats {
    let mut s = samples.to_vec();
    s.sort();
    // Nearest rank: the smallest sample with at least p of the samples at or below it.
    let rank = |p: f64| {
        let idx = ((p * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1;
        s[idx]
    };
    Stats {
        median: rank(0.5),
        p90: rank(0.9),
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// A timed case and its references, measured interleaved in one run.
struct Measured {
    case: Stats,
    refs: Vec<(String, Stats)>,
}

/// Time `case` and each reference in turn, round by round (the order rotates every round, so
/// none of them always runs first after the others), after `WARMUPS` unrecorded rounds.
fn interleave(case: &Cmd, refs: &[Cmd], rounds: usize) -> Res<Measured> {
    let all: Vec<&Cmd> = std::iter::once(case).chain(refs.iter()).collect();
    let mut samples: Vec<Vec<Duration>> = vec![Vec::with_capacity(rounds); all.len()];
    for round in 0..WARMUPS + rounds {
        for k in 0..all.len() {
            let i = (round + k) % all.len();
            let t = all[i].time_once()?;
            if round >= WARMUPS {
                samples[i].push(t);
            }
        }
    }
    Ok(Measured {
        case: stats(&samples[0]),
        refs: refs
            .iter()
            .zip(&samples[1..])
            .map(|(r, s)| (r.label.clone(), stats(s)))
            .collect(),
    })
}

fn manifest_text(i: usize) -> String {
    // A distinct package per environment gives each one its own id; the base image and the
    // common package are shared, as in a real store.
    format!(
        "manifest_version = 1\n\n[base]\nimage = \"rolling\"\n\n[system]\n\
         packages = [\"git\", \"bench-pkg-{i:04}\"]\n\n[runtime]\nbackend = \"mock\"\n"
    )
}

/// Build `n` environments into `store` through the library, one manifest directory each
/// (`env-0000`, …, which also become their names). Returns the manifest paths.
fn populate(store: &Path, manifests: &Path, n: usize) -> Res<Vec<PathBuf>> {
    let paths: Vec<PathBuf> = (0..n)
        .map(|i| {
            let dir = manifests.join(format!("env-{i:04}"));
            fs::create_dir_all(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
            let path = dir.join("karapace.toml");
            fs::write(&path, manifest_text(i))
                .map_err(|e| format!("write {}: {e}", path.display()))?;
            Ok(path)
        })
        .collect::<Res<_>>()?;
    // Builds of different environments only share the store lock (shared), so two threads
    // halve the set-up time on two cores. Each thread opens its own engine.
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 4);
    let chunk = paths.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = paths
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || -> Res<()> {
                    let parse_env = ParseEnv::from_process().map_err(|e| e.to_string())?;
                    let engine = Engine::open(store, parse_env, Arc::new(NullSink))
                        .map_err(|e| format!("open {}: {e}", store.display()))?;
                    for path in part {
                        let outcome = engine
                            .build(&BuildOptions {
                                manifest: path.clone(),
                                ..BuildOptions::default()
                            })
                            .map_err(|e| format!("build {}: {e}", path.display()))?;
                        if !outcome.built {
                            return Err(format!("{} was already built", path.display()));
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join()
                .map_err(|_| "a builder thread panicked".to_string())??;
        }
        Ok::<(), String>(())
    })?;
    Ok(paths)
}

/// Peak RSS (KiB) of one run of `cmd` as GNU time reports it (`%M`).
fn peak_rss_kib(gnu_time: &Path, cmd: &Cmd, out_file: &Path) -> Res<u64> {
    let mut args = vec![
        "-f".to_string(),
        "%M".to_string(),
        "-o".to_string(),
        out_file.display().to_string(),
        cmd.program.display().to_string(),
    ];
    args.extend(cmd.args.iter().cloned());
    let wrapped = Cmd {
        label: cmd.label.clone(),
        program: gnu_time.to_path_buf(),
        args,
    };
    wrapped.time_once()?;
    let text =
        fs::read_to_string(out_file).map_err(|e| format!("read {}: {e}", out_file.display()))?;
    text.trim()
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| format!("GNU time wrote {text:?}, not a number of KiB"))
}

fn run() -> Res<()> {
    let total = Instant::now();
    let rounds = bench_rounds(DEFAULT_ROUNDS)?;
    let bin = binary()?;
    let true_bin = ["/bin/true", "/usr/bin/true"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or("neither /bin/true nor /usr/bin/true exists")?;

    let tmp = tempfile::Builder::new()
        .prefix("karapace-bench-")
        .tempdir()
        .map_err(|e| format!("create temp dir: {e}"))?;
    let root = tmp.path().to_path_buf();
    println!("karapace-tui core bench");
    println!("  binary:  {}", bin.display());
    println!("  scratch: {}", root.display());
    println!(
        "  rounds:  {WARMUPS} warm-up + {rounds} measured per case, interleaved with the references"
    );
    println!();

    // 1. Stores.
    let mut stores: BTreeMap<usize, (PathBuf, Vec<PathBuf>)> = BTreeMap::new();
    for n in SIZES {
        let store = root.join(format!("store-{n}"));
        let started = Instant::now();
        let manifests = populate(&store, &root.join(format!("manifests-{n}")), n)?;
        let listed = Cmd::new(
            "list",
            &bin,
            &["--store", &store.display().to_string(), "--json", "list"],
        )
        .output()?;
        let rows: serde_json::Value =
            serde_json::from_str(&listed).map_err(|e| format!("list --json: {e}"))?;
        let count = rows.as_array().map(Vec::len);
        if count != Some(n) {
            return Err(format!(
                "store {} should list {n} environments, `list --json` gave {count:?}",
                store.display()
            ));
        }
        println!(
            "prepared store with {n:>4} environment(s) in {:.1} s (list --json: {n} rows)",
            started.elapsed().as_secs_f64()
        );
        stores.insert(n, (store, manifests));
    }
    println!();

    // 2. Warm builds must really be no-ops: `built: false`, lock file untouched.
    for n in [1, 1000] {
        let (store, manifests) = &stores[&n];
        let manifest = &manifests[0];
        let lock = manifest.with_file_name("karapace.lock");
        let before = fs::metadata(&lock).and_then(|m| m.modified()).ok();
        let out = Cmd::new(
            "build",
            &bin,
            &[
                "--store",
                &store.display().to_string(),
                "--json",
                "build",
                &manifest.display().to_string(),
            ],
        )
        .output()?;
        let v: serde_json::Value =
            serde_json::from_str(&out).map_err(|e| format!("build --json: {e}: {out}"))?;
        if v.get("built") != Some(&serde_json::Value::Bool(false)) {
            return Err(format!(
                "the warm build in store-{n} was not a no-op: {out}"
            ));
        }
        let after = fs::metadata(&lock).and_then(|m| m.modified()).ok();
        if before.is_none() || before != after {
            return Err(format!("the warm build rewrote {}", lock.display()));
        }
    }

    // 3. Timing.
    let mut rows: Vec<(String, Measured)> = Vec::new();
    let refs_for = |store: &Path| {
        vec![
            Cmd::new("/bin/true", &true_bin, &[]),
            Cmd::new(
                "ls -f envs",
                "ls",
                &["-f", &store.join("envs").display().to_string()],
            ),
        ]
    };
    for n in SIZES {
        let (store, _) = &stores[&n];
        let s = store.display().to_string();
        let case = Cmd::new(format!("list ({n} env)"), &bin, &["--store", &s, "list"]);
        let m = interleave(&case, &refs_for(store), rounds)?;
        rows.push((case.label, m));
    }
    {
        // Not a goal: the JSON listing, which scripts and the TUI's neighbours use.
        let (store, _) = &stores[&1000];
        let s = store.display().to_string();
        let case = Cmd::new(
            "list --json (1000 env)",
            &bin,
            &["--store", &s, "--json", "list"],
        );
        let m = interleave(&case, &refs_for(store), rounds)?;
        rows.push((case.label, m));
    }
    for n in [1, 1000] {
        let (store, manifests) = &stores[&n];
        let s = store.display().to_string();
        let mf = manifests[0].display().to_string();
        let case = Cmd::new(
            format!("warm build ({n} env)"),
            &bin,
            &["--store", &s, "build", &mf],
        );
        let m = interleave(&case, &refs_for(store), rounds)?;
        rows.push((case.label, m));
    }

    println!("timing: wall time from spawn to exit, {rounds} rounds; ratio = case median / reference median");
    println!(
        "{:<22} {:>9} {:>9} | {:>11} {:>7} | {:>11} {:>7}",
        "case", "median", "p90", "/bin/true", "ratio", "ls -f envs", "ratio"
    );
    println!("{}", "-".repeat(87));
    for (label, m) in &rows {
        let mut line = format!(
            "{:<22} {:>9} {:>9}",
            label,
            ms(m.case.median),
            ms(m.case.p90)
        );
        for (_, r) in &m.refs {
            line.push_str(&format!(
                " | {:>11} {:>6.1}x",
                ms(r.median),
                ratio(m.case.median, r.median)
            ));
        }
        println!("{line}");
    }
    println!();

    // 4. In-process cost of the same work, to tell process start-up from the work itself.
    let parse_env = ParseEnv::from_process().map_err(|e| e.to_string())?;
    println!("in process (library calls, {rounds} runs after {WARMUPS} warm-ups):");
    for n in SIZES {
        let (store, _) = &stores[&n];
        let engine = Engine::open(store, parse_env.clone(), Arc::new(NullSink))
            .map_err(|e| e.to_string())?;
        let mut samples = Vec::new();
        for i in 0..WARMUPS + rounds {
            let t = Instant::now();
            let (good, broken) = engine.list().map_err(|e| e.to_string())?;
            let d = t.elapsed();
            if good.len() != n || !broken.is_empty() {
                return Err(format!(
                    "Engine::list gave {} + {} broken",
                    good.len(),
                    broken.len()
                ));
            }
            if i >= WARMUPS {
                samples.push(d);
            }
        }
        let s = stats(&samples);
        println!(
            "  Engine::list ({n:>4} env)        median {:>9}  p90 {:>9}",
            ms(s.median),
            ms(s.p90)
        );
    }
    for n in [1, 1000] {
        let (store, manifests) = &stores[&n];
        let engine = Engine::open(store, parse_env.clone(), Arc::new(NullSink))
            .map_err(|e| e.to_string())?;
        let opts = BuildOptions {
            manifest: manifests[0].clone(),
            ..BuildOptions::default()
        };
        let mut samples = Vec::new();
        for i in 0..WARMUPS + rounds {
            let t = Instant::now();
            let outcome = engine.build(&opts).map_err(|e| e.to_string())?;
            let d = t.elapsed();
            if outcome.built {
                return Err("a warm in-process build built something".to_string());
            }
            if i >= WARMUPS {
                samples.push(d);
            }
        }
        let s = stats(&samples);
        println!(
            "  Engine::build warm ({n:>4} env)  median {:>9}  p90 {:>9}",
            ms(s.median),
            ms(s.p90)
        );
    }
    println!();

    // 5. Memory.
    let gnu_time = Path::new("/usr/bin/time");
    let mut rss: BTreeMap<usize, u64> = BTreeMap::new();
    let gnu_ok = gnu_time.is_file()
        && Command::new(gnu_time)
            .arg("--version")
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout).contains("GNU")
                    || String::from_utf8_lossy(&o.stderr).contains("GNU")
            })
            .unwrap_or(false);
    if gnu_ok {
        println!("memory: peak RSS (GNU time %M) of `list`, median of {MEMORY_RUNS} runs");
        let out_file = root.join("time.out");
        let reference = Cmd::new("/bin/true", &true_bin, &[]);
        let base = median_u64(
            (0..MEMORY_RUNS)
                .map(|_| peak_rss_kib(gnu_time, &reference, &out_file))
                .collect::<Res<_>>()?,
        );
        println!("  {:<22} {:>8} KiB", "/bin/true", base);
        for n in SIZES {
            let (store, _) = &stores[&n];
            let case = Cmd::new(
                "list",
                &bin,
                &["--store", &store.display().to_string(), "list"],
            );
            let kib = median_u64(
                (0..MEMORY_RUNS)
                    .map(|_| peak_rss_kib(gnu_time, &case, &out_file))
                    .collect::<Res<_>>()?,
            );
            println!("  {:<22} {:>8} KiB", format!("list ({n} env)"), kib);
            rss.insert(n, kib);
        }
        let (store, _) = &stores[&1000];
        let case = Cmd::new(
            "list",
            &bin,
            &["--store", &store.display().to_string(), "--json", "list"],
        );
        let kib = median_u64(
            (0..MEMORY_RUNS)
                .map(|_| peak_rss_kib(gnu_time, &case, &out_file))
                .collect::<Res<_>>()?,
        );
        println!(
            "  {:<22} {:>8} KiB  (not a goal)",
            "list --json (1000 env)", kib
        );
        println!(
            "  ratio list(1000) / list(1) = {:.2}",
            rss[&1000] as f64 / rss[&1] as f64
        );
    } else {
        println!("memory: SKIPPED: /usr/bin/time not found (GNU time is needed for the peak RSS)");
    }
    println!();

    // 6. Goals (reported, never enforced: the machine is shared and noisy).
    let pass = |ok: bool| if ok { "PASS" } else { "FAIL" };
    let median_of = |label: &str| {
        rows.iter()
            .find(|(l, _)| l == label)
            .map(|(_, m)| m.case.median)
            .ok_or_else(|| format!("no row {label}"))
    };
    let list1000 = median_of("list (1000 env)")?;
    println!(
        "goal list(1000) < 10 ms: {} (median {})",
        pass(list1000 < GOAL),
        ms(list1000)
    );
    // The warm build is judged in the larger store (its cost must not grow with the store).
    let build1000 = median_of("warm build (1000 env)")?;
    let build1 = median_of("warm build (1 env)")?;
    println!(
        "goal warm build < 10 ms: {} (median {} in the 1000-env store, {} in the 1-env store)",
        pass(build1000 < GOAL && build1 < GOAL),
        ms(build1000),
        ms(build1)
    );
    if gnu_ok {
        let r = rss[&1000] as f64 / rss[&1] as f64;
        println!(
            "goal memory flat: {} (ratio {r:.2}; {} KiB vs {} KiB; flat = within {FLAT_FACTOR}x)",
            pass(r <= FLAT_FACTOR),
            rss[&1000],
            rss[&1]
        );
    } else {
        println!("goal memory flat: SKIPPED: /usr/bin/time not found");
    }
    println!();
    println!("total bench time {:.1} s", total.elapsed().as_secs_f64());

    if std::env::var_os("KARAPACE_BENCH_KEEP").is_some() {
        let kept = tmp.keep();
        println!("kept {}", kept.display());
    }
    Ok(())
}

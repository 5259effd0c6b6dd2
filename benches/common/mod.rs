//! Pieces the benchmarks share: the binary under test, the harness's exit, statistics.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use nix::sys::resource::{getrusage, UsageWho};

/// The binary under test: the one cargo built for this bench (same profile), unless
/// `KARAPACE_BENCH_BIN` names another.
pub fn binary() -> Res<PathBuf> {
    if let Some(bin) = std::env::var_os("KARAPACE_BENCH_BIN") {
        let bin = PathBuf::from(bin);
        return if bin.is_file() {
            Ok(bin)
        } else {
            Err(format!(
                "KARAPACE_BENCH_BIN={} is not a file",
                bin.display()
            ))
        };
    }
    // Cargo builds every binary target of the package before it runs a bench, with the bench
    // profile (which inherits `release`), and tells the bench where it put it.
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_karapace-tui"));
    if bin.is_file() {
        return Ok(bin);
    }
    // Only reachable if the bench executable was run by hand after the binary was removed.
    eprintln!("{} is missing; building it", bin.display());
    let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["build", "--release", "--quiet", "--bin", "karapace-tui"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .map_err(|e| format!("cannot run cargo build: {e}"))?;
    if !status.success() || !bin.is_file() {
        return Err(format!(
            "cargo build failed ({status}); {} missing",
            bin.display()
        ));
    }
    Ok(bin)
}

/// What every step of a benchmark returns: a message on failure.
pub type Res<T> = Result<T, String>;

/// The benchmark's `main`: `cargo bench` passes `--bench` (and any filter), which the harness
/// ignores; a failing command is the only thing that makes the run fail (goals never do).
pub fn exit_code(result: Res<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench failed: {e}");
            ExitCode::FAILURE
        }
    }
}

pub fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}

/// The lower median of a non-empty list.
#[allow(dead_code)] // not every benchmark measures memory
pub fn median_u64(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v[(v.len() - 1) / 2]
}

/// The `p`-th quantile (0..=1) of a sorted, non-empty list.
#[allow(dead_code)] // each benchmark uses a subset of these helpers
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[idx]
}

/// User + system CPU time of every waited-for child so far.
#[allow(dead_code)]
pub fn children_cpu() -> Res<Duration> {
    let usage = getrusage(UsageWho::RUSAGE_CHILDREN).map_err(|e| format!("getrusage: {e}"))?;
    let tv = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(t.tv_sec() as u64) + Duration::from_micros(t.tv_usec() as u64)
    };
    Ok(tv(usage.user_time()) + tv(usage.system_time()))
}

/// The cargo target directory this benchmark runs from.
#[allow(dead_code)]
pub fn target_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(Path::to_path_buf))
        .filter(|p| p.is_dir())
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

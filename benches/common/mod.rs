//! Pieces the benchmarks share: the binary under test, the harness's exit, statistics.

use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use sha2::{Digest as _, Sha256};

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

// ---------------------------------------------------------------------------------------------
// Set-up shared by the benchmarks that run the namespace backend on the Debian image.

/// Where `.ci/run` caches the debootstrap'd bookworm tarball.
#[allow(dead_code)]
pub const CI_TARBALL: &str = "/var/cache/karapace-ci/bookworm-minbase.tar.xz";

#[allow(dead_code)]
pub fn env_flag(name: &str, default: bool) -> bool {
    match std::env::var(name) {
        Ok(v) => !matches!(v.trim(), "" | "0" | "no" | "false"),
        Err(_) => default,
    }
}

/// The image tarball, or why there is none (a SKIPPED reason).
#[allow(dead_code)]
pub fn tarball() -> Result<PathBuf, String> {
    match std::env::var_os("KARAPACE_TEST_ROOTFS_TARBALL") {
        Some(p) if !p.is_empty() => {
            let p = PathBuf::from(p);
            if p.is_file() {
                // The manifest would resolve a relative path against its own directory.
                p.canonicalize()
                    .map_err(|e| format!("canonicalize {}: {e}", p.display()))
            } else {
                Err(format!(
                    "KARAPACE_TEST_ROOTFS_TARBALL={} is not a file",
                    p.display()
                ))
            }
        }
        _ => {
            let p = PathBuf::from(CI_TARBALL);
            if p.is_file() {
                Ok(p)
            } else {
                Err(format!(
                    "KARAPACE_TEST_ROOTFS_TARBALL is not set and {CI_TARBALL} does not exist \
                     (`.ci/run` makes it; nothing is downloaded by this bench)"
                ))
            }
        }
    }
}

#[allow(dead_code)]
pub fn find_on_path(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(tool))
            .find(|c| c.is_file())
    })
}

#[allow(dead_code)]
pub fn sha256_file(path: &Path) -> Res<String> {
    let mut f = File::open(path).map_err(|e| format!("open {}: {e}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| format!("read {}: {e}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>())
}

/// Every directory under `path` gets u+rwx, so the tree can be removed (overlayfs leaves
/// `work/work` with mode 000).
#[allow(dead_code)]
pub fn make_writable(path: &Path) {
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

#[allow(dead_code)]
pub fn json(text: &str, what: &str) -> Res<serde_json::Value> {
    serde_json::from_str(text).map_err(|e| format!("{what}: not JSON ({e}): {text}"))
}

/// `KARAPACE_BENCH_ROUNDS` (a positive number), else `default`.
#[allow(dead_code)]
pub fn bench_rounds(default: usize) -> Res<usize> {
    match std::env::var("KARAPACE_BENCH_ROUNDS") {
        Ok(v) => v
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| format!("KARAPACE_BENCH_ROUNDS={v:?} is not a positive number")),
        Err(_) => Ok(default),
    }
}

/// Refuses a scratch path the overlay's option string cannot carry (the sandbox plan's
/// validation refuses it too).
#[allow(dead_code)]
pub fn overlay_safe(scratch: &Path) -> Res<()> {
    if scratch.to_string_lossy().contains([',', ':', '\\']) {
        return Err(format!(
            "the scratch directory {} contains `,` `:` or `\\`; set TMPDIR to a plainer path",
            scratch.display()
        ));
    }
    Ok(())
}

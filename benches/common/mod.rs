//! Pieces every benchmark needs: finding the binary under test.

use std::path::PathBuf;
use std::process::Command;

/// The binary under test: the one cargo built for this bench (same profile), unless
/// `KARAPACE_BENCH_BIN` names another.
pub fn binary() -> Result<PathBuf, String> {
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

//! Deliberate crash points for the crash-consistency tests.
//!
//! Every multi-step store operation calls [`hit`] between its steps. When the environment
//! variable `KARAPACE_CRASH_AT=N` is set, the N-th hit in the process kills the process with
//! SIGKILL (no destructors, no flushing: the same as a power cut for our files, minus the page
//! cache). The tests run a command with N = 1, 2, 3 … until it finishes without crashing, and after
//! each crash check that the store verifies clean and shows nothing half-made.
//! `KARAPACE_CRASH_TRACE=1` prints each crash point's name to stderr, which the tests use to
//! report where a failing crash happened. Without the variables a hit costs one atomic increment.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

static HITS: AtomicUsize = AtomicUsize::new(0);

fn target() -> Option<usize> {
    static TARGET: OnceLock<Option<usize>> = OnceLock::new();
    *TARGET.get_or_init(|| std::env::var("KARAPACE_CRASH_AT").ok()?.trim().parse().ok())
}

/// Mark a point where a crash must leave the store recoverable.
pub fn hit(name: &str) {
    let n = HITS.fetch_add(1, Ordering::SeqCst) + 1;
    if std::env::var_os("KARAPACE_CRASH_TRACE").is_some() {
        eprintln!("crashpoint {n}: {name}");
    }
    if target() == Some(n) {
        eprintln!("crashpoint {n}: {name}: killing the process (KARAPACE_CRASH_AT={n})");
        // SIGKILL cannot be caught: nothing after this line runs, exactly like a kill -9.
        let kill = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
        // raise() only returns on failure; abort is the closest remaining equivalent.
        eprintln!("crashpoint: raise(SIGKILL) failed: {kill:?}");
        std::process::abort();
    }
}

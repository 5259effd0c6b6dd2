//! Runtime backends: how environments are built and run.

pub mod backend;
pub mod install;
pub mod limits;
pub mod mock;
pub mod namespace;
pub mod pending;
pub mod session;

/// A finished program's exit code as a shell reports it: its own code, or 128+N when it was
/// killed by signal N.
pub fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

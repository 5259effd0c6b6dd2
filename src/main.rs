//! The `karapace-tui` binary: parse the command line, run it, exit with its code.

#![deny(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use karapace_tui::cli::{self, Cli};

fn main() -> ExitCode {
    // The sandbox helper must run before anything can start a thread (unshare(2) refuses
    // CLONE_NEWUSER to a threaded process), so it is dispatched ahead of the CLI.
    if std::env::args_os().nth(1) == Some(karapace_tui::sandbox::HELPER_VERB.into()) {
        return karapace_tui::sandbox::helper::main();
    }
    // clap exits with code 2 on usage errors and 0 for --help/--version, as documented.
    let args = Cli::parse();
    ExitCode::from(cli::run(args))
}

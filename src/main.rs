//! The `karapace-tui` binary: parse the command line, run it, exit with its code.

#![deny(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use karapace_tui::cli::{self, Cli};

fn main() -> ExitCode {
    // clap exits with code 2 on usage errors and 0 for --help/--version, as documented.
    let args = Cli::parse();
    ExitCode::from(cli::run(args))
}

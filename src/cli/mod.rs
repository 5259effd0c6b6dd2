//! The command-line face: argument definitions (clap) and dispatch to the engine.
//!
//! Contract (relied on by scripts and tests): results go to stdout — one JSON document with
//! `--json` — and logs and progress go to stderr, always. Exit codes come from typed errors:
//! 0 success, 1 operation failed, 2 usage or manifest error, 3 store integrity error,
//! 4 missing prerequisites; `exec`/`enter` return the program's own code (128+N for signal N).

mod output;
pub(crate) mod output_text;

use std::ffi::OsString;
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{CommandFactory, Parser, Subcommand};
use serde_json::json;

use crate::engine::{self, Engine, EngineError};
use crate::events::{Event, EventSink, Level};
use crate::manifest::ParseEnv;

pub use output::Printer;

#[derive(Debug, Parser)]
#[command(
    name = "karapace-tui",
    version,
    about = "Deterministic, rootless Linux development environments",
    long_about = "Builds isolated development environments from a declarative karapace.toml, \
                  pins them in karapace.lock, keeps them in a content-addressed store and runs \
                  them in a sandbox. Run without a command for the terminal UI.",
    after_help = "Exit codes: 0 ok, 1 failed, 2 usage or manifest error, 3 store integrity error, \
                  4 missing prerequisites; exec and enter return the program's own code."
)]
pub struct Cli {
    /// Store directory [default: $XDG_DATA_HOME/karapace, else ~/.local/share/karapace]
    #[arg(long, global = true, env = "KARAPACE_STORE", value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// Print exactly one JSON document on stdout (logs stay on stderr)
    #[arg(long, global = true)]
    pub json: bool,
    /// More detail on stderr (repeat for more)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// The manifest, or a directory holding karapace.toml
    #[arg(default_value = "karapace.toml")]
    pub manifest: PathBuf,
    /// Name the environment (default: the manifest directory's name, when free)
    #[arg(long)]
    pub name: Option<String>,
    /// Build exactly what karapace.lock records; fail if the manifest changed
    #[arg(long, conflicts_with = "update")]
    pub locked: bool,
    /// Never use the network
    #[arg(long)]
    pub offline: bool,
    /// Re-resolve every version instead of keeping the lock's
    #[arg(long)]
    pub update: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a karapace.toml from a template (comments kept)
    New {
        /// minimal, dev, gui-dev, rust-dev or ubuntu-dev
        #[arg(long, short, default_value = "minimal")]
        template: String,
        /// Overwrite an existing karapace.toml
        #[arg(long)]
        force: bool,
        /// Directory to write into
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Resolve, lock and build an environment (a no-op when it is up to date)
    Build(BuildArgs),
    /// Replace the environment built from a manifest with a clean build
    Rebuild(BuildArgs),
    /// List environments
    #[command(visible_alias = "ls")]
    List,
    /// Show everything about one environment
    Inspect { env: String },
    /// Open an interactive shell in an environment, or run CMD
    Enter {
        env: String,
        #[arg(last = true)]
        cmd: Vec<OsString>,
    },
    /// Run a program in an environment and return its exit code
    Exec {
        env: String,
        #[arg(last = true, required = true)]
        cmd: Vec<OsString>,
    },
    /// End every program running in an environment
    Stop { env: String },
    /// Remove an environment
    #[command(visible_alias = "rm")]
    Destroy {
        env: String,
        /// Stop running programs first
        #[arg(long)]
        force: bool,
    },
    /// Protect an environment against any change until unfrozen
    Freeze { env: String },
    /// Make a frozen environment usable again
    Unfreeze { env: String },
    /// Pack an environment into one store object and free its tree
    Archive { env: String },
    /// Restore an archived environment
    Unarchive { env: String },
    /// Give an environment a new name
    Rename { env: String, name: String },
    /// Put an application of an environment on the host's desktop, or (--bin) a program on
    /// the host's PATH; both run it through `karapace-tui exec`
    Export {
        env: String,
        /// The application (desktop file id such as org.gnome.gedit, or its last part), or
        /// with --bin the program's absolute path inside the environment
        app: String,
        /// Write a wrapper command in ~/.local/bin instead of a desktop entry
        #[arg(long)]
        bin: bool,
        /// The wrapper's name (default: the program's file name); only with --bin
        #[arg(long, requires = "bin")]
        name: Option<String>,
    },
    /// Remove an export (its desktop entry and icons, or with --bin its wrapper)
    Unexport {
        env: String,
        /// The application, or with --bin the wrapper's name
        app: String,
        #[arg(long)]
        bin: bool,
    },
    /// List exported applications and commands
    Exports { env: Option<String> },
    /// List, fetch or remove cached base images
    Images {
        #[command(subcommand)]
        action: Option<ImagesCommand>,
    },
    /// Remove store objects and images that no environment uses
    Gc {
        /// Only report what would be removed
        #[arg(long)]
        dry_run: bool,
    },
    /// Check every object, layer and metadata file; non-zero exit on any problem
    VerifyStore,
    /// Check what each backend needs on this host
    Doctor,
    /// Print a shell completion script
    Completions { shell: clap_complete::Shell },
    /// Print the manual page (roff)
    Man,
}

#[derive(Debug, Subcommand)]
pub enum ImagesCommand {
    /// List cached images with their size and the environments that use them (the default)
    #[command(visible_alias = "ls")]
    List,
    /// Fetch the newest build of an image (alias, URL or local tarball) into the cache
    Pull { name: String },
    /// Remove a cached image that no environment uses (sha256 or a unique prefix)
    Rm { image: String },
}

/// The default store: `$XDG_DATA_HOME/karapace`, else `~/.local/share/karapace`.
pub fn default_store(parse_env: &ParseEnv) -> PathBuf {
    match std::env::var_os("XDG_DATA_HOME").filter(|v| Path::new(v).is_absolute()) {
        Some(data) => PathBuf::from(data).join("karapace"),
        None => parse_env.home.join(".local/share/karapace"),
    }
}

/// Run a parsed command line; returns the process exit code.
pub fn run(cli: Cli) -> u8 {
    let printer = Printer::new(cli.json);
    match dispatch(&cli, &printer) {
        Ok(code) => code,
        // The reader of our output went away (`karapace-tui list | head`): that is not a
        // failure of the command, so exit quietly and successfully, as ripgrep and coreutils do.
        Err(EngineError::Io { source, .. }) if source.kind() == io::ErrorKind::BrokenPipe => 0,
        Err(e) => {
            printer.error(&e);
            e.exit_code()
        }
    }
}

fn dispatch(cli: &Cli, out: &Printer) -> Result<u8, EngineError> {
    let Some(command) = &cli.command else {
        // The terminal UI needs a terminal on both ends; piped or redirected (or asked for
        // JSON), show what the CLI can do instead.
        if io::stdin().is_terminal() && io::stdout().is_terminal() && !cli.json {
            let parse_env = ParseEnv::from_process()?;
            let store = cli
                .store
                .clone()
                .unwrap_or_else(|| default_store(&parse_env));
            return crate::app::run(store, parse_env);
        }
        let mut cmd = Cli::command();
        out.text(&cmd.render_help().to_string())?;
        return Ok(0);
    };
    match command {
        Command::Completions { shell } => {
            let mut buf = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "karapace-tui", &mut buf);
            out.raw(&buf)?;
            return Ok(0);
        }
        Command::Man => {
            let mut buf = Vec::new();
            clap_mangen::Man::new(Cli::command())
                .render(&mut buf)
                .map_err(|source| io_error("render manual page", source))?;
            out.raw(&buf)?;
            return Ok(0);
        }
        Command::Doctor => {
            let parse_env = ParseEnv::from_process()?;
            let store = cli
                .store
                .clone()
                .unwrap_or_else(|| default_store(&parse_env));
            let store = std::path::absolute(&store)
                .map_err(|source| io_error("resolve the store path", source))?;
            return output::doctor(&store, out);
        }
        Command::New {
            template,
            force,
            dir,
        } => {
            let path = engine::write_template(dir, template, *force)?;
            out.result(
                &json!({"status": "written", "path": path, "template": template}),
                &format!("wrote {} (template {template})", path.display()),
            )?;
            return Ok(0);
        }
        _ => {}
    }
    let parse_env = ParseEnv::from_process()?;
    let store = cli
        .store
        .clone()
        .unwrap_or_else(|| default_store(&parse_env));
    let sink = Arc::new(StderrSink::new(cli.verbose));
    let engine = Engine::open(&store, parse_env, sink)?;
    output::run_command(&engine, command, out)
}

fn io_error(op: &'static str, source: io::Error) -> EngineError {
    EngineError::Io {
        op,
        path: PathBuf::from("-"),
        source,
    }
}

/// Prints events to stderr: info and warnings always, debug with -v. On a terminal, progress
/// is one line rewritten in place.
struct StderrSink {
    verbose: u8,
    tty: bool,
}

impl StderrSink {
    fn new(verbose: u8) -> StderrSink {
        StderrSink {
            verbose,
            tty: io::stderr().is_terminal(),
        }
    }
}

impl EventSink for StderrSink {
    fn emit(&self, event: Event) {
        let mut err = io::stderr().lock();
        // stderr is the last channel we have; if writing to it fails there is nowhere left to
        // report that, so the write result is deliberately not acted on.
        let _written = match event {
            Event::Log {
                level: Level::Debug,
                ..
            } if self.verbose == 0 => Ok(()),
            Event::Log {
                level: Level::Warn,
                message,
            } => writeln!(err, "warning: {message}"),
            Event::Log { message, .. } => writeln!(err, "{message}"),
            Event::Progress { task, done, total } if self.tty => {
                let end = if Some(done) == total { "\n" } else { "" };
                let line = crate::events::progress_line(&task, done, total, 30);
                write!(err, "\r\x1b[2K{line}{end}")
            }
            Event::Progress { .. } => Ok(()),
        };
    }
}

//! Running one command and printing its result as text or as one JSON document.

use std::io::{self, Write};

use serde::Serialize;
use serde_json::json;

use super::Command;
use crate::engine::{exit, BuildOptions, BuildOutcome, Engine, EngineError, EnvSummary};
use crate::prereq;
use crate::store::VerifyReport;
use crate::types::BackendKind;

/// Writes results to stdout, as text or JSON, and errors to stderr (and, with `--json`, as a
/// JSON document on stdout too, so a script always gets exactly one document).
pub struct Printer {
    json: bool,
}

impl Printer {
    pub fn new(json: bool) -> Printer {
        Printer { json }
    }

    pub fn is_json(&self) -> bool {
        self.json
    }

    pub fn raw(&self, bytes: &[u8]) -> Result<(), EngineError> {
        let mut out = io::stdout().lock();
        out.write_all(bytes)
            .and_then(|()| out.flush())
            .map_err(|source| EngineError::Io {
                op: "write to",
                path: "stdout".into(),
                source,
            })
    }

    pub fn text(&self, text: &str) -> Result<(), EngineError> {
        let mut s = text.to_string();
        if !s.ends_with('\n') {
            s.push('\n');
        }
        self.raw(s.as_bytes())
    }

    /// Print `value` as JSON with `--json`, else `text`.
    pub fn result(&self, value: &impl Serialize, text: &str) -> Result<(), EngineError> {
        if self.json {
            let doc = serde_json::to_string_pretty(value).map_err(|e| EngineError::Io {
                op: "encode JSON for",
                path: "stdout".into(),
                source: io::Error::other(e),
            })?;
            self.text(&doc)
        } else if text.is_empty() {
            Ok(())
        } else {
            self.text(text)
        }
    }

    pub fn error(&self, e: &EngineError) {
        if let EngineError::Io { source, .. } = e {
            if source.kind() == io::ErrorKind::BrokenPipe {
                return; // the reader went away: exit quietly, as `head` users expect
            }
        }
        eprintln!("error: {e}");
        if self.json {
            let doc = json!({"error": {"message": e.to_string(), "exit_code": e.exit_code()}});
            // The error itself was already reported on stderr; a failing stdout has no better
            // place to be reported, so this result is not acted on.
            let _printed = self.text(&doc.to_string());
        }
    }
}

fn build_options(args: &super::BuildArgs) -> BuildOptions {
    let manifest = if args.manifest.is_dir() {
        args.manifest.join("karapace.toml")
    } else {
        args.manifest.clone()
    };
    BuildOptions {
        manifest,
        name: args.name.clone(),
        locked: args.locked,
        offline: args.offline,
        update: args.update,
    }
}

fn build_text(outcome: &BuildOutcome) -> String {
    let verb = if outcome.built { "built" } else { "up to date" };
    let mut text = format!(
        "{verb}: {} {} ({})\nlock: {}",
        outcome.env.short_id,
        outcome.env.name.as_deref().unwrap_or("-"),
        outcome.env.id,
        outcome.lock_path.display()
    );
    for path in &outcome.exported {
        text.push_str(&format!("\nexported: {}", path.display()));
    }
    text
}

/// Run an engine command and print its result; returns the exit code.
pub(super) fn run_command(
    engine: &Engine,
    command: &Command,
    out: &Printer,
) -> Result<u8, EngineError> {
    match command {
        Command::Build(args) => {
            let outcome = engine.build(&build_options(args))?;
            out.result(&outcome, &build_text(&outcome))?;
        }
        Command::Rebuild(args) => {
            let outcome = engine.rebuild(&build_options(args))?;
            out.result(&outcome, &build_text(&outcome))?;
        }
        Command::List => return list(engine, out),
        Command::Inspect { env } => {
            let details = engine.inspect(env)?;
            out.result(&details, &super::output_text::inspect(&details))?;
        }
        Command::Enter { env, cmd } => return enter(engine, env, cmd, out),
        Command::Exec { env, cmd } => return run_program(engine, env, cmd, out),
        Command::Stop { env } => {
            let stopped = engine.stop(env)?;
            out.result(
                &json!({"env": env, "stopped_sessions": stopped}),
                &format!("stopped {stopped} session(s)"),
            )?;
        }
        Command::Destroy { env, force } => {
            let meta = engine.destroy(env, *force)?;
            out.result(
                &json!({"status": "destroyed", "id": meta.id}),
                &format!("destroyed {}", meta.id.short()),
            )?;
        }
        Command::Freeze { env } => state_change(out, "frozen", engine.freeze(env)?)?,
        Command::Unfreeze { env } => state_change(out, "unfrozen", engine.unfreeze(env)?)?,
        Command::Archive { env } => state_change(out, "archived", engine.archive(env)?)?,
        Command::Unarchive { env } => state_change(out, "unarchived", engine.unarchive(env)?)?,
        Command::Rename { env, name } => state_change(out, "renamed", engine.rename(env, name)?)?,
        Command::Export {
            env,
            app,
            bin: false,
            ..
        } => {
            let done = engine.export_app(env, app)?;
            out.result(
                &json!({"status": "exported", "env": done.env, "app": done.export.app,
                        "desktop_file": done.export.desktop_file, "icons": done.export.icons,
                        "notes": done.notes}),
                &format!(
                    "exported {} to {}",
                    done.export.app,
                    done.export.desktop_file.display()
                ),
            )?;
        }
        Command::Export {
            env,
            app,
            bin: true,
            name,
        } => {
            let done = engine.export_bin(env, app, name.as_deref())?;
            out.result(
                &json!({"status": "exported", "name": done.name, "program": done.program,
                        "path": done.path}),
                &format!("exported {} as {}", done.program, done.path.display()),
            )?;
        }
        Command::Unexport { env, app, bin } => {
            let removal = engine.unexport(env, app, *bin)?;
            let text = removal
                .removed
                .iter()
                .map(|p| format!("removed {}", p.display()))
                .collect::<Vec<_>>()
                .join("\n");
            out.result(
                &json!({"status": "unexported", "removed": removal.removed,
                               "kept": removal.kept}),
                &text,
            )?;
        }
        Command::Exports { env } => {
            let rows = engine.exports(env.as_deref())?;
            out.result(&rows, &super::output_text::exports(&rows))?;
        }
        Command::Gc { dry_run } => {
            let report = engine.gc(*dry_run)?;
            out.result(&report, &super::output_text::gc(&report, *dry_run))?;
        }
        Command::VerifyStore => return verify(engine, out),
        Command::Images { action } => images(engine, action.as_ref(), out)?,
        Command::Doctor | Command::New { .. } | Command::Completions { .. } | Command::Man => {
            unreachable_command()?;
        }
    }
    Ok(0)
}

/// `doctor`: every prerequisite check, without opening the store (it diagnoses a store that
/// cannot be opened too). Exit code 4 when the default backend cannot run here.
pub(super) fn doctor(store: &std::path::Path, out: &Printer) -> Result<u8, EngineError> {
    let context = prereq::Context {
        store: store.to_path_buf(),
        default_backend: BackendKind::default(),
        try_containers: true,
    };
    let report = prereq::run(&prereq::SystemHost::new(), &context);
    let text = super::output_text::doctor(&report);
    let doc = json!({
        "distro": report.distro,
        "default_backend": report.default_backend,
        "backends": report.backends(),
        "checks": report.checks,
    });
    out.result(&doc, &text)?;
    Ok(if report.default_can_run() {
        0
    } else {
        exit::PREREQUISITE
    })
}

/// The store-free commands are handled before the engine is opened; reaching here is a bug
/// in dispatch, reported as an error rather than a panic.
fn unreachable_command() -> Result<(), EngineError> {
    Err(EngineError::Io {
        op: "dispatch",
        path: "command".into(),
        source: io::Error::other("internal error: command routed to the engine by mistake"),
    })
}

fn state_change(out: &Printer, what: &str, meta: crate::store::EnvMeta) -> Result<(), EngineError> {
    out.result(
        &json!({"status": what, "id": meta.id, "name": meta.name, "state": meta.state}),
        &format!("{what}: {} ({})", meta.id.short(), meta.state),
    )
}

fn list(engine: &Engine, out: &Printer) -> Result<u8, EngineError> {
    let (envs, broken) = engine.list()?;
    for b in &broken {
        eprintln!("warning: environment {}: {}", b.id, b.error);
    }
    if out.is_json() {
        // Rows are serialised straight from the summaries, without an intermediate JSON
        // tree, so `list --json` stays as cheap as the text form.
        let rows: Vec<ListRow> = envs
            .iter()
            .map(ListRow::Env)
            .chain(broken.iter().map(|b| {
                ListRow::Broken(BrokenRow {
                    id: b.id.to_string(),
                    short_id: b.id.short(),
                    state: "corrupt",
                    error: b.error.to_string(),
                })
            }))
            .collect();
        out.result(&rows, "")?;
    } else {
        out.text(&super::output_text::list(&envs, &broken))?;
    }
    Ok(0)
}

#[derive(Serialize)]
#[serde(untagged)]
enum ListRow<'a> {
    Env(&'a EnvSummary),
    Broken(BrokenRow<'a>),
}

/// A listed environment whose metadata is damaged: what is known, and why the rest is not.
#[derive(Serialize)]
struct BrokenRow<'a> {
    id: String,
    short_id: &'a str,
    state: &'static str,
    error: String,
}

/// `enter`: the program (a login shell by default) between the terminal markers and the
/// banners of `crate::markers`, which go only to a terminal (never with `--json`).
fn enter(
    engine: &Engine,
    env: &str,
    cmd: &[std::ffi::OsString],
    out: &Printer,
) -> Result<u8, EngineError> {
    if out.is_json() {
        return run_program(engine, env, cmd, out);
    }
    let meta = engine.find(env)?;
    let short = meta.id.short();
    let name = crate::markers::marker_name(meta.name.as_deref(), short);
    let label = match &meta.name {
        Some(n) => format!("{n} ({short})"),
        None => short.to_string(),
    };
    let terminal_err = |source| EngineError::Io {
        op: "write the terminal markers",
        path: std::path::PathBuf::from("/dev/stdout"),
        source,
    };
    let session = crate::markers::Session::begin(&name, label).map_err(terminal_err)?;
    let result = run_program(engine, env, cmd, out);
    let ended = session.end(result.as_ref().ok().map(|c| i32::from(*c)));
    let code = result?;
    ended.map_err(terminal_err)?;
    Ok(code)
}

fn run_program(
    engine: &Engine,
    env: &str,
    cmd: &[std::ffi::OsString],
    out: &Printer,
) -> Result<u8, EngineError> {
    let code = engine.run(env, cmd, out.is_json())?;
    if out.is_json() {
        out.result(&json!({"env": env, "exit_code": code}), "")?;
    }
    // Exit codes are 8 bits wide (wait(2)); 128+N for signals already fits.
    Ok(u8::try_from(code & 0xff).unwrap_or(exit::FAILED))
}

fn images(
    engine: &Engine,
    action: Option<&super::ImagesCommand>,
    out: &Printer,
) -> Result<(), EngineError> {
    use super::ImagesCommand;
    match action.unwrap_or(&ImagesCommand::List) {
        ImagesCommand::List => {
            let list = engine.image_list()?;
            out.result(&list, &super::output_text::images(&list))
        }
        ImagesCommand::Pull { name } => {
            let record = engine.image_pull(name)?;
            out.result(
                &record,
                &format!(
                    "{} build {}: sha256 {} ({} bytes)",
                    record.reference, record.build, record.sha256, record.size
                ),
            )
        }
        ImagesCommand::Rm { image } => {
            let (record, bytes) = engine.image_remove(image)?;
            out.result(
                &json!({"status": "removed", "sha256": record.sha256, "bytes": bytes}),
                &format!("removed image {} ({} bytes)", record.sha256, bytes),
            )
        }
    }
}

fn verify(engine: &Engine, out: &Printer) -> Result<u8, EngineError> {
    let report: VerifyReport = engine.verify()?;
    out.result(&report, &super::output_text::verify(&report))?;
    Ok(if report.problems.is_empty() {
        0
    } else {
        exit::INTEGRITY
    })
}

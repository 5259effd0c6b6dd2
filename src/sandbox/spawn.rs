//! How the runtime starts a sandbox: write the plan to a private file, then run
//! `<karapace-tui> __sandbox-init --parent-pid <our pid> <file>`.
//!
//! The helper reads and deletes the file; [`PlanFile`] deletes it if no helper took it over.
//! `PR_SET_PDEATHSIG` fires when the parent *thread* exits (prctl(2)): spawn and wait from a
//! thread that lives as long as the sandbox should.
//!
//! A session of an environment ([`spawn_session`]) adds `--session RECORD`: the helper then
//! joins the environment when it already runs (see `join.rs`). Such a helper may exit 125
//! without consuming its plan file when the environment ended while it was joining:
//! [`Session::ran_nothing`] tells, and the session can be started again.

use std::ffi::OsString;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};

use super::error::{Result, SandboxError, EXIT_SETUP_FAILED};
use super::helper::TRACE_VAR;
use super::plan::SandboxPlan;
use super::HELPER_VERB;

/// A validated plan written to a `0600` file; removed on drop if still there.
#[derive(Debug)]
pub struct PlanFile {
    path: PathBuf,
}

impl PlanFile {
    /// Validates `plan` and writes it into `dir` (which must be private to the user, e.g. the
    /// store's runtime directory or `$XDG_RUNTIME_DIR`).
    pub fn write(plan: &SandboxPlan, dir: &Path) -> Result<PlanFile> {
        plan.validate()?;
        PlanFile::write_unchecked(plan, dir)
    }

    /// Writes without validation (probes have no program).
    pub(crate) fn write_unchecked(plan: &SandboxPlan, dir: &Path) -> Result<PlanFile> {
        let shown = dir.display().to_string();
        let mut file = tempfile::Builder::new()
            .prefix(".karapace-plan-")
            .suffix(".json")
            .tempfile_in(dir)
            .map_err(SandboxError::io("create a plan file in", &shown))?;
        file.write_all(plan.to_json()?.as_bytes())
            .map_err(SandboxError::io("write a plan file in", &shown))?;
        let (_, path) = file
            .keep()
            .map_err(|e| SandboxError::io("keep the plan file in", &shown)(e.error))?;
        Ok(PlanFile { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Hands the file over to a helper that has started (it deletes the file itself).
    pub fn hand_over(mut self) -> PathBuf {
        std::mem::take(&mut self.path)
    }
}

impl Drop for PlanFile {
    fn drop(&mut self) {
        // Only a plan no helper took over; a failure leaves a stale file in a private dir.
        if !self.path.as_os_str().is_empty() {
            drop(std::fs::remove_file(&self.path));
        }
    }
}

/// The helper's arguments (after the program), for runners that build their own command, such
/// as portable-pty's `CommandBuilder`.
pub fn helper_args(plan_file: &PlanFile) -> Vec<OsString> {
    args(plan_file, None)
}

/// [`helper_args`] for a session of the environment whose init record is `record`.
pub fn session_args(plan_file: &PlanFile, record: &Path) -> Vec<OsString> {
    args(plan_file, Some(record))
}

fn args(plan_file: &PlanFile, record: Option<&Path>) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec![
        HELPER_VERB.into(),
        "--parent-pid".into(),
        std::process::id().to_string().into(),
    ];
    if let Some(record) = record {
        args.push("--session".into());
        args.push(record.as_os_str().to_owned());
    }
    args.push(plan_file.path().as_os_str().to_owned());
    args
}

/// The helper command with an empty environment (the plan carries the program's).
pub fn command(helper_exe: &Path, plan_file: &PlanFile) -> Command {
    command_with(helper_exe, helper_args(plan_file))
}

fn command_with(helper_exe: &Path, args: Vec<OsString>) -> Command {
    let mut cmd = Command::new(helper_exe);
    cmd.args(args).env_clear();
    if let Some(trace) = std::env::var_os(TRACE_VAR) {
        cmd.env(TRACE_VAR, trace);
    }
    cmd
}

/// The three standard streams the program gets.
pub struct SandboxStdio {
    pub stdin: Stdio,
    pub stdout: Stdio,
    pub stderr: Stdio,
}

impl SandboxStdio {
    pub fn inherit() -> SandboxStdio {
        SandboxStdio {
            stdin: Stdio::inherit(),
            stdout: Stdio::inherit(),
            stderr: Stdio::inherit(),
        }
    }
}

/// Starts `plan` through the helper binary `helper_exe` (normally `std::env::current_exe()`),
/// writing the plan file into `plan_dir`. The child's exit code is the program's (125/126/127
/// for setup failures, see [`super::error`]). The helper deletes the plan file once read; if it
/// cannot start, the file is deleted here.
pub fn spawn(
    plan: &SandboxPlan,
    helper_exe: &Path,
    plan_dir: &Path,
    stdio: SandboxStdio,
) -> Result<Child> {
    let plan_file = PlanFile::write(plan, plan_dir)?;
    let child = start(command(helper_exe, &plan_file), helper_exe, stdio)?;
    plan_file.hand_over();
    Ok(child)
}

/// A session started by [`spawn_session`].
#[derive(Debug)]
pub struct Session {
    pub child: Child,
    plan_file: PathBuf,
}

impl Session {
    /// After the helper exited with `status`: whether it ran nothing because the environment
    /// it was joining ended meanwhile (exit 125 with its plan file left in place). The plan
    /// file is removed then, and the session may be started again (it will start cold).
    pub fn ran_nothing(&self, status: ExitStatus) -> io::Result<bool> {
        if status.code() != Some(i32::from(EXIT_SETUP_FAILED)) {
            return Ok(false);
        }
        match std::fs::remove_file(&self.plan_file) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// Like [`spawn`], as a session of the environment whose init record is `record` (a file
/// beside the environment; created if missing): the program joins the environment if it runs.
pub fn spawn_session(
    plan: &SandboxPlan,
    record: &Path,
    helper_exe: &Path,
    plan_dir: &Path,
    stdio: SandboxStdio,
) -> Result<Session> {
    let plan_file = PlanFile::write(plan, plan_dir)?;
    let cmd = command_with(helper_exe, session_args(&plan_file, record));
    let child = start(cmd, helper_exe, stdio)?;
    Ok(Session {
        child,
        plan_file: plan_file.hand_over(),
    })
}

fn start(mut cmd: Command, helper_exe: &Path, stdio: SandboxStdio) -> Result<Child> {
    cmd.stdin(stdio.stdin)
        .stdout(stdio.stdout)
        .stderr(stdio.stderr)
        .spawn()
        .map_err(SandboxError::io(
            "start the sandbox helper",
            helper_exe.display().to_string(),
        ))
}

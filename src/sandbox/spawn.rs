//! How the runtime starts a sandbox: write the plan to a private file, then run
//! `<karapace-tui> __sandbox-init --parent-pid <our pid> [--session RECORD] [--id-maps FD]
//! <file>`.
//!
//! The helper reads and deletes the file; [`PlanFile`] deletes it if no helper took it over.
//! `PR_SET_PDEATHSIG` fires when the parent *thread* exits (prctl(2)): spawn and wait from a
//! thread that lives as long as the sandbox should.
//!
//! A plan with an `await_id_maps` step (a full subordinate range, [`super::IdMapping`]) needs
//! this process's help, because only newuidmap(1)/newgidmap(1), run from outside the new user
//! namespace, may write such maps. [`spawn`] gives the helper one end of a socketpair
//! (`--id-maps FD`, see [`IdMapSync`](super::sys::IdMapSync)); when the helper reports that its user namespace
//! exists, we run `newuidmap PID 0 UID 1 1 START COUNT` and `newgidmap PID 0 GID 1 1 START
//! COUNT` for it, check both, and release it. [`helper_args`] and [`command`] carry no channel:
//! a helper started that way stops at that step with an error saying so, instead of waiting.
//!
//! A session of an environment ([`spawn_session`]) adds `--session RECORD`: the helper then
//! joins the environment when it already runs (see `join.rs`). It gets the id-map channel too:
//! a cold start creates the environment's user namespace and waits for its maps as above; a
//! join enters the running environment's user namespace, which has its maps already, and says
//! so on the channel ([`ID_MAPS_NOT_NEEDED`]), so we write nothing and return at once. Such a
//! helper may exit 125 without consuming its plan file when the environment ended while it was
//! joining: [`Session::ran_nothing`] tells, and the session can be started again.

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use nix::fcntl::{fcntl, FcntlArg, FdFlag};

use super::error::{Result, SandboxError, EXIT_SETUP_FAILED};
use super::forked::ForkedProcess;
use super::helper::TRACE_VAR;
use super::idmap::{self, IdMapTools};
use super::plan::{IdRange, SandboxPlan};
use super::sys::{ID_MAPS_NOT_NEEDED, ID_MAPS_NS_READY, ID_MAPS_WRITTEN};
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
/// as portable-pty's `CommandBuilder`. They carry no id-map channel: a plan with subordinate
/// ranges fails at its `await_id_maps` step when started this way; use [`spawn`] for those.
pub fn helper_args(plan_file: &PlanFile) -> Vec<OsString> {
    let mut args = vec![HELPER_VERB.into()];
    args.extend(parent_args());
    args.push(plan_file.path().as_os_str().to_owned());
    args
}

/// [`helper_args`] for a session of the environment whose init record is `record` (no id-map
/// channel either: such a session can join, but not start cold with a subordinate range).
pub fn session_args(plan_file: &PlanFile, record: &Path) -> Vec<OsString> {
    let mut args = vec![HELPER_VERB.into()];
    args.extend(parent_args());
    args.extend(session_option(record));
    args.push(plan_file.path().as_os_str().to_owned());
    args
}

/// `--parent-pid OUR_PID`.
fn parent_args() -> [OsString; 2] {
    ["--parent-pid".into(), std::process::id().to_string().into()]
}

/// `--session RECORD`.
fn session_option(record: &Path) -> [OsString; 2] {
    ["--session".into(), record.as_os_str().to_owned()]
}

/// The helper command with an empty environment (the plan carries the program's). Like
/// [`helper_args`], without an id-map channel.
pub fn command(helper_exe: &Path, plan_file: &PlanFile) -> Command {
    let mut cmd = Command::new(helper_exe);
    cmd.args(helper_args(plan_file));
    with_helper_env(&mut cmd);
    cmd
}

/// Nothing of our environment but the trace switch.
fn with_helper_env(cmd: &mut Command) {
    cmd.env_clear();
    if let Some(trace) = std::env::var_os(TRACE_VAR) {
        cmd.env(TRACE_VAR, trace);
    }
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

    /// stdin empty, stdout and stderr captured (probes and tree removal).
    pub(crate) fn captured() -> SandboxStdio {
        SandboxStdio {
            stdin: Stdio::null(),
            stdout: Stdio::piped(),
            stderr: Stdio::piped(),
        }
    }
}

/// Starts `plan` through the helper binary `helper_exe` (normally `std::env::current_exe()`),
/// writing the plan file into `plan_dir`. The child's exit code is the program's (125/126/127
/// for setup failures, see [`super::error`]). The helper deletes the plan file once read; if it
/// cannot start, the file is deleted here. For a subordinate range this also writes the id
/// maps (see the module doc); if newuidmap or newgidmap fails, the helper is killed and the
/// error names the command, its output and the fix.
pub fn spawn(
    plan: &SandboxPlan,
    helper_exe: &Path,
    plan_dir: &Path,
    stdio: SandboxStdio,
) -> Result<Child> {
    let plan_file = PlanFile::write(plan, plan_dir)?;
    start(helper_exe, &parent_args(), plan, plan_file, &[], stdio)
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
/// For a subordinate range, the id maps are written on a cold start only (see the module doc).
pub fn spawn_session(
    plan: &SandboxPlan,
    record: &Path,
    helper_exe: &Path,
    plan_dir: &Path,
    stdio: SandboxStdio,
) -> Result<Session> {
    let plan_file = PlanFile::write(plan, plan_dir)?;
    let path = plan_file.path().to_path_buf();
    let mut leading = parent_args().to_vec();
    leading.extend(session_option(record));
    let child = start(helper_exe, &leading, plan, plan_file, &[], stdio)?;
    Ok(Session {
        child,
        plan_file: path,
    })
}

/// Runs `helper_exe __sandbox-init LEADING… [--id-maps FD] PLAN_FILE TRAILING…`, and writes
/// the id maps from outside if `plan` has an `await_id_maps` step.
pub(crate) fn start(
    helper_exe: &Path,
    leading: &[OsString],
    plan: &SandboxPlan,
    plan_file: PlanFile,
    trailing: &[OsString],
    stdio: SandboxStdio,
) -> Result<Child> {
    let mut cmd = Command::new(helper_exe);
    cmd.arg(HELPER_VERB)
        .args(leading)
        .stdin(stdio.stdin)
        .stdout(stdio.stdout)
        .stderr(stdio.stderr);
    with_helper_env(&mut cmd);
    let spawn_failed =
        SandboxError::io("start the sandbox helper", helper_exe.display().to_string());
    let Some((uid_map, gid_map)) = plan.outside_id_maps() else {
        let child = cmd
            .arg(plan_file.path())
            .args(trailing)
            .spawn()
            .map_err(spawn_failed)?;
        plan_file.hand_over();
        return Ok(child);
    };
    // Before anything starts: without the tools the helper would only wait in vain.
    let tools = id_map_tools()?;
    let channel_err = SandboxError::io("create the id-map channel", "socketpair");
    let (ours, theirs) = UnixStream::pair().map_err(channel_err)?;
    // std creates both ends close-on-exec; only the helper's end must survive its exec.
    let theirs = OwnedFd::from(theirs);
    fcntl(theirs.as_raw_fd(), FcntlArg::F_SETFD(FdFlag::empty()))
        .map_err(SandboxError::helper("fcntl(clear FD_CLOEXEC)"))?;
    let child = cmd
        .arg("--id-maps")
        .arg(theirs.as_raw_fd().to_string())
        .arg(plan_file.path())
        .args(trailing)
        .spawn()
        .map_err(spawn_failed)?;
    plan_file.hand_over();
    drop(theirs);
    match write_id_maps(
        HelperProcess::Spawned(child),
        ours,
        &tools,
        uid_map,
        gid_map,
    )? {
        HelperProcess::Spawned(child) => Ok(child),
        HelperProcess::Forked(_) => unreachable!("write_id_maps returns the process it got"),
    }
}

/// newuidmap and newgidmap, or why they cannot be used.
pub(crate) fn id_map_tools() -> Result<IdMapTools> {
    idmap::tools().map_err(|why| SandboxError::IdMapUnavailable {
        why,
        fix: "install the uidmap package (Debian/Ubuntu; shadow-utils on Fedora), whose \
              newuidmap and newgidmap are setuid root"
            .into(),
    })
}

/// The process running a sandbox's stage 1: the executed helper, or a fork of this process
/// (`forked.rs`).
#[derive(Debug)]
pub enum HelperProcess {
    Spawned(Child),
    Forked(ForkedProcess),
}

impl HelperProcess {
    fn id(&self) -> u32 {
        match self {
            HelperProcess::Spawned(c) => c.id(),
            HelperProcess::Forked(p) => p.id(),
        }
    }

    fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        match self {
            HelperProcess::Spawned(c) => c.try_wait(),
            HelperProcess::Forked(p) => p.try_wait(),
        }
    }

    fn kill(&mut self) -> io::Result<()> {
        match self {
            HelperProcess::Spawned(c) => c.kill(),
            HelperProcess::Forked(p) => p.kill(),
        }
    }

    fn wait(&mut self) -> io::Result<ExitStatus> {
        match self {
            HelperProcess::Spawned(c) => c.wait(),
            HelperProcess::Forked(p) => p.wait(),
        }
    }
}

/// Our half of [`IdMapSync`](super::sys::IdMapSync): wait for the helper's namespace, write its maps, release it.
pub(crate) fn write_id_maps(
    mut child: HelperProcess,
    mut channel: UnixStream,
    tools: &IdMapTools,
    uid_map: &[IdRange],
    gid_map: &[IdRange],
) -> Result<HelperProcess> {
    match wait_for_namespace(&mut child, &mut channel) {
        // The helper exited first: its exit status and stderr say why, as for any setup error.
        Ok(Announced::Exited) => return Ok(child),
        // It joined a running environment: its user namespace has its maps.
        Ok(Announced::Joined) => return Ok(child),
        Ok(Announced::NamespaceReady) => {}
        Err(e) => return Err(abandon(child, e)),
    }
    let pid = child.id();
    // Both at once (they write different files); every started one is waited for.
    let results: Vec<Result<()>> = [
        MapTool::start(&tools.newuidmap, pid, uid_map, idmap::SUBUID),
        MapTool::start(&tools.newgidmap, pid, gid_map, idmap::SUBGID),
    ]
    .into_iter()
    .map(|started| started.and_then(MapTool::finish))
    .collect();
    if let Some(err) = results.into_iter().find_map(Result::err) {
        return Err(abandon(child, err));
    }
    release(child, channel)
}

/// Tells the helper that its maps are written (`ID_MAPS_WRITTEN`), which lets it go on.
pub(crate) fn release(child: HelperProcess, mut channel: UnixStream) -> Result<HelperProcess> {
    match channel.write_all(&[ID_MAPS_WRITTEN]) {
        // The helper died meanwhile; its exit status says so.
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            ) =>
        {
            Ok(child)
        }
        Err(e) => Err(abandon(
            child,
            SandboxError::io("release the sandbox helper over", "the id-map channel")(e),
        )),
        Ok(()) => Ok(child),
    }
}

/// What the helper said on the id-map channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Announced {
    /// Its user namespace exists: write the maps.
    NamespaceReady,
    /// It joined a running environment (a session): no maps to write.
    Joined,
    /// Nothing: it exited (or closed the channel).
    Exited,
}

/// Waits for the helper's "namespace ready" or "joined". The read timeout only makes us look
/// at the helper now and then: if another thread started a process while the helper's end was
/// inheritable, that process holds a copy and EOF would never come.
fn wait_for_namespace(child: &mut HelperProcess, channel: &mut UnixStream) -> Result<Announced> {
    let io_err = |op| SandboxError::io(op, "the id-map channel");
    channel
        .set_read_timeout(Some(Duration::from_millis(200)))
        .map_err(io_err("set a read timeout on"))?;
    let mut byte = [0u8; 1];
    loop {
        match channel.read(&mut byte) {
            Ok(0) => return Ok(Announced::Exited),
            Ok(_) if byte[0] == ID_MAPS_NS_READY => return Ok(Announced::NamespaceReady),
            Ok(_) if byte[0] == ID_MAPS_NOT_NEEDED => return Ok(Announced::Joined),
            Ok(_) => {
                return Err(SandboxError::InvalidPlan(format!(
                    "unexpected byte {:#04x} from the sandbox helper on the id-map channel",
                    byte[0]
                )))
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                let status = child
                    .try_wait()
                    .map_err(SandboxError::io("check on", "the sandbox helper"))?;
                if status.is_some() {
                    return Ok(Announced::Exited);
                }
            }
            Err(e) => return Err(io_err("read")(e)),
        }
    }
}

/// A running `TOOL PID inside outside count…`, which must succeed.
#[derive(Debug)]
pub(crate) struct MapTool {
    command: String,
    fix: String,
    child: Child,
}

impl MapTool {
    pub(crate) fn start(tool: &Path, pid: u32, map: &[IdRange], grants: &str) -> Result<MapTool> {
        let mut args = vec![pid.to_string()];
        for r in map {
            args.extend([r.inside, r.outside, r.count].map(|n| n.to_string()));
        }
        let command = format!("{} {}", tool.display(), args.join(" "));
        let name = tool
            .file_name()
            .unwrap_or(tool.as_os_str())
            .to_string_lossy();
        let fix = format!(
            "{name} maps only the caller's own id and the ranges {grants} grants to the \
             caller: check the user's line there, and that {name} is setuid root (reinstall \
             the uidmap package)"
        );
        let started = Command::new(tool)
            .args(&args)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        match started {
            Ok(child) => Ok(MapTool {
                command,
                fix,
                child,
            }),
            Err(e) => Err(SandboxError::IdMapTool {
                command,
                status: "not started".into(),
                stderr: e.to_string(),
                fix,
            }),
        }
    }

    pub(crate) fn finish(self) -> Result<()> {
        let failed = |status: String, stderr: String| SandboxError::IdMapTool {
            command: self.command.clone(),
            status,
            stderr,
            fix: self.fix.clone(),
        };
        let out = self
            .child
            .wait_with_output()
            .map_err(|e| failed("not waited for".into(), e.to_string()))?;
        if out.status.success() {
            return Ok(());
        }
        let output = [out.stderr, out.stdout].concat();
        Err(failed(
            out.status.to_string(),
            String::from_utf8_lossy(&output).trim().to_string(),
        ))
    }
}

/// Gives up on a helper that waits for its maps, returning `err`. SIGKILL keeps it from adding
/// its own message about the closed channel; were the kill to fail, it would still exit at EOF
/// on the channel, which our caller drops.
pub(crate) fn abandon(mut child: HelperProcess, err: SandboxError) -> SandboxError {
    if child.kill().is_ok() {
        // Reaped so that no zombie stays behind; the status is of no interest.
        drop(child.wait());
    }
    err
}

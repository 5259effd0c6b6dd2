//! The hidden helper: `karapace-tui __sandbox-init …`, dispatched by `main` before any thread
//! starts, because `unshare(CLONE_NEWUSER)` is refused to a threaded process (unshare(2)).
//!
//! Forms:
//! - `__sandbox-init [--parent-pid PID] [--session RECORD] [--id-maps FD] PLAN_FILE` — stage 1.
//!   Reads the JSON plan from the file and deletes it (a file, not the environment: the
//!   program's environment must be exactly the plan's; not stdin: the program owns stdin).
//!   Runs the namespace steps (with `--id-maps`, the spawner writes a subordinate range's maps
//!   while we wait: `spawn.rs`), then re-executes `/proc/self/exe __sandbox-init --stage2 FD
//!   REPORT_FD [RECORD]`, which becomes PID 1 of the new PID namespace, and waits for it,
//!   forwarding signals. `--parent-pid` closes the race in which the spawner dies before
//!   `PR_SET_PDEATHSIG` is set.
//!   `--session RECORD` makes the run a session of an environment that other sessions may
//!   join (see `join.rs`): under the init record's lock, stage 1 joins the running init if the
//!   record names one, instead of building a second root (and tells the spawner over
//!   `--id-maps` that no maps are needed: the user namespace it enters has them); otherwise it
//!   clears the overlay's volatile marker (`volatile.rs`: nothing has the overlay mounted
//!   now, and nothing can mount it before we do), starts cold and records its stage 2 once
//!   stage 2 reports the root ready. A join that finds the init gone after it entered the
//!   namespaces exits 125 and leaves the plan file in place: nothing ran, and the runtime
//!   starts the session again.
//! - `--stage2 FD REPORT_FD [RECORD]` — stage 2 (internal). Reads the rest of the plan from an
//!   inherited pipe (one JSON line; stage 1 keeps its end open for its whole life, so EOF after
//!   the line means stage 1 is already gone), mounts the root overlay, starts the exec shim,
//!   runs the other file-system steps, `pivot_root` and the process attributes, then releases
//!   the shim, which execs the program with exactly the plan's environment, and reports
//!   `ready` on REPORT_FD. It forwards SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 to
//!   the program, reaps every zombie (it is init) and exits with the program's code (128+N for
//!   signal N). When PID 1 exits the kernel kills everything left in the namespace, and the
//!   last process leaving the mount namespace takes every mount with it. With RECORD, if
//!   joined sessions still run when the program ends, it reports `exit CODE` instead (stage 1
//!   exits with it) and stays as their init until none is left (`supervise::after_program`).
//! - `--exec GO READY -- ARGV…` — the exec shim (internal, see `program.rs`): started by stage 2
//!   before the root is built (or by a joining stage 1), released once it is; clears the signal
//!   mask and execs ARGV.
//! - `--probe [--id-maps FD] PLAN_FILE` — runs every step of the plan in this process and exits
//!   0; used by [`super::check`] to find out what the kernel allows.
//! - `--remove-tree [--id-maps FD] PLAN_FILE TREE` — runs the plan's user-namespace steps, then
//!   deletes TREE as root of that namespace: files a sandbox gave to subordinate ids, which the
//!   user cannot delete on the host ([`super::remove`]).
//!
//! Every stage sets `PR_SET_PDEATHSIG` to SIGKILL, so the sandbox dies with whoever started
//! it; only an init that stays for joined sessions clears it (after its own session ended).
//! Exit codes: the program's, or 125 (setup failed), 126 (cannot execute), 127 (not found).

use std::ffi::OsString;
use std::fs;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::sys::signal::{SigSet, Signal};

use super::error::{Result, SandboxError, EXIT_SETUP_FAILED};
use super::exec::{apply_steps_in, apply_steps_with};
use super::join::{try_join, InitRecord, Join, RecordFile, RecordLock};
use super::plan::{SandboxPlan, SetupStep, Stage};
use super::program::{exec_shim, pipe_to_child, read_line, ChildEnd, ExecAttrs, PendingProgram};
use super::supervise::{
    after_program, block_forwarded_signals, supervise, supervise_stage2, Report,
};
use super::sys::{IdMapSync, LinuxSys};
use super::volatile;
use super::HELPER_VERB;

/// The environment variable that turns on a trace line per step (passed through to stage 2).
pub const TRACE_VAR: &str = "KARAPACE_SANDBOX_TRACE";

enum Mode {
    Run {
        plan_file: PathBuf,
        parent: Option<i32>,
        session: Option<PathBuf>,
        id_maps: Option<IdMapSync>,
    },
    Stage2 {
        fd: RawFd,
        report: RawFd,
        session: Option<PathBuf>,
    },
    Probe {
        plan_file: PathBuf,
        id_maps: Option<IdMapSync>,
    },
    RemoveTree {
        plan_file: PathBuf,
        tree: PathBuf,
        id_maps: Option<IdMapSync>,
    },
    Exec {
        go: RawFd,
        ready: RawFd,
        argv: Vec<OsString>,
    },
}

/// Entry point of `karapace-tui __sandbox-init …`.
pub fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(2).collect();
    let result = parse_args(&args).and_then(|mode| match mode {
        Mode::Run {
            plan_file,
            parent,
            session,
            id_maps,
        } => stage1(&plan_file, parent, session.as_deref(), id_maps),
        Mode::Stage2 {
            fd,
            report,
            session,
        } => stage2(fd, report, session.as_deref()),
        Mode::Probe { plan_file, id_maps } => probe(&plan_file, id_maps),
        Mode::RemoveTree {
            plan_file,
            tree,
            id_maps,
        } => remove_tree(&plan_file, &tree, id_maps),
        Mode::Exec { go, ready, argv } => Ok(exec_shim(go, ready, &argv)),
    });
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("karapace-tui: {e}");
            ExitCode::from(EXIT_SETUP_FAILED)
        }
    }
}

fn parse_args(args: &[OsString]) -> Result<Mode> {
    let usage = || {
        SandboxError::InvalidPlan(format!(
            "usage: {HELPER_VERB} [--parent-pid PID] [--session RECORD] [--id-maps FD] \
             PLAN_FILE | {HELPER_VERB} --probe [--id-maps FD] PLAN_FILE | {HELPER_VERB} \
             --remove-tree [--id-maps FD] PLAN_FILE TREE (internal: --stage2 FD REPORT_FD \
             [RECORD])"
        ))
    };
    if args.len() >= 4 && args[0] == "--exec" && args[3] == "--" {
        let fd = |a: &OsString| a.to_str().and_then(|s| s.parse().ok()).ok_or_else(usage);
        return Ok(Mode::Exec {
            go: fd(&args[1])?,
            ready: fd(&args[2])?,
            argv: args[4..].to_vec(),
        });
    }
    // `--id-maps FD` may stand before the plan file of every form but `--stage2`.
    let mut args: Vec<&OsString> = args.iter().collect();
    let id_maps = match args.iter().position(|a| *a == "--id-maps") {
        Some(i) if i + 1 < args.len() => {
            let fd = args[i + 1].to_str().and_then(|s| s.parse().ok());
            args.drain(i..i + 2);
            Some(IdMapSync {
                fd: fd.ok_or_else(usage)?,
            })
        }
        Some(_) => return Err(usage()),
        None => None,
    };
    let path = |i: usize| PathBuf::from(args[i]);
    let text: Vec<&str> = args.iter().map(|a| a.to_str().unwrap_or("")).collect();
    let fd = |s: &str| s.parse::<RawFd>().map_err(|_| usage());
    match text.as_slice() {
        ["--stage2", plan, report, rest @ ..] if rest.len() <= 1 && id_maps.is_none() => {
            Ok(Mode::Stage2 {
                fd: fd(plan)?,
                report: fd(report)?,
                session: args.get(3).map(PathBuf::from),
            })
        }
        ["--stage2", ..] => Err(usage()),
        ["--probe", _] => Ok(Mode::Probe {
            plan_file: path(1),
            id_maps,
        }),
        ["--remove-tree", _, _] => Ok(Mode::RemoveTree {
            plan_file: path(1),
            tree: path(2),
            id_maps,
        }),
        _ => parse_run(&args, &text, id_maps).ok_or_else(usage),
    }
}

/// `[--parent-pid PID] [--session RECORD] PLAN_FILE`, each option at most once (`--id-maps`
/// is taken out already).
fn parse_run(args: &[&OsString], text: &[&str], id_maps: Option<IdMapSync>) -> Option<Mode> {
    let (mut parent, mut session) = (None, None);
    let mut i = 0;
    while i + 1 < args.len() {
        match text[i] {
            "--parent-pid" if parent.is_none() => parent = Some(text[i + 1].parse().ok()?),
            "--session" if session.is_none() => session = Some(PathBuf::from(args[i + 1])),
            _ => return None,
        }
        i += 2;
    }
    let plan_file = args.get(i).filter(|_| !text[i].starts_with("--"))?;
    Some(Mode::Run {
        plan_file: PathBuf::from(plan_file),
        parent,
        session,
        id_maps,
    })
}

/// PR_SET_PDEATHSIG: SIGKILL when the parent dies (prctl(2)).
fn die_with_parent() -> Result<()> {
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)
        .map_err(SandboxError::helper("prctl(PR_SET_PDEATHSIG)"))
}

fn stage1(
    plan_file: &Path,
    parent: Option<i32>,
    session: Option<&Path>,
    id_maps: Option<IdMapSync>,
) -> Result<u8> {
    die_with_parent()?;
    let mut file = PlanFileGuard {
        path: plan_file,
        keep: false,
    };
    let plan = file.read()?;
    if session.is_none() {
        // Read and delete the plan first, so no plan file outlives us on any path.
        file.consume()?;
    }
    if let Some(expected) = parent {
        if nix::unistd::getppid().as_raw() != expected {
            // The spawner died before PR_SET_PDEATHSIG took effect.
            return Err(SandboxError::helper("check that the parent is alive")(
                Errno::ESRCH,
            ));
        }
    }
    plan.validate()?;
    cloexec_inherited_fds()?;
    let signals = block_forwarded_signals()?;
    let record = match session {
        None => None,
        Some(path) => {
            let lock = RecordLock::acquire(path)?;
            match try_join(&lock, &plan)? {
                Join::Started(program, attrs) => {
                    file.consume()?;
                    if let Some(sync) = id_maps {
                        sync.not_needed().map_err(SandboxError::helper(
                            "tell the spawner over the id-map channel that no maps are needed",
                        ))?;
                    }
                    // The shim is inside the PID namespace now: the init will count it.
                    drop(lock);
                    let child = program.release(&attrs)?;
                    return supervise(child, &signals, false);
                }
                Join::Vanished => {
                    // Silent: the runtime says that it starts the session again.
                    file.keep = true;
                    return Ok(EXIT_SETUP_FAILED);
                }
                Join::NotRunning => Some(lock),
            }
        }
    };
    file.consume()?;
    if record.is_some() {
        reuse_overlay_work(&plan)?;
    }
    cold_start(plan, &signals, record, id_maps)
}

/// Creates the namespaces and starts stage 2 in them; with a session, `record` is locked and
/// stays locked until stage 2 is ready and recorded as the environment's init.
fn cold_start(
    plan: SandboxPlan,
    signals: &SigSet,
    record: Option<RecordLock>,
    id_maps: Option<IdMapSync>,
) -> Result<u8> {
    apply_steps_with(&mut LinuxSys, &plan.stage_steps(Stage::Namespaces), id_maps)?;
    let rest = SandboxPlan {
        steps: plan.stage_steps(Stage::Root),
        ..plan
    };
    let session = record.as_ref().map(|r| PathBuf::from(r.path()));
    let Stage2 {
        child,
        plan_pipe: _plan_pipe,
        report,
        init,
    } = spawn_stage2(&rest, session.as_deref())?;
    // `_plan_pipe` stays open until we exit: stage 2 uses it to see that we are alive.
    supervise_stage2(child, signals, report, record.zip(init))
}

fn stage2(fd: RawFd, report: RawFd, session: Option<&Path>) -> Result<u8> {
    die_with_parent()?;
    // Stage 1 validated the whole plan; these are its file-system steps.
    let plan = read_plan_pipe(fd)?;
    let mut report = reopen_fd(report, "the report pipe")?;
    let signals = block_forwarded_signals()?;
    // Opened before pivot_root hides the host's file system.
    let record = session.map(RecordFile::open).transpose()?;
    // The root overlay comes first: a fuse-overlayfs root moves us into a new mount namespace
    // (see `exec.rs`), and the program must start in that one.
    let root = plan.steps.iter().find_map(|s| match s {
        SetupStep::PivotRoot { new_root } => Some(new_root.as_str()),
        _ => None,
    });
    let split = plan
        .steps
        .iter()
        .position(|s| matches!(s, SetupStep::MountOverlay { .. }))
        .map_or(0, |i| i + 1);
    apply_steps_in(&mut LinuxSys, &plan.steps[..split], root)?;
    let program = PendingProgram::start(&plan)?;
    apply_steps_in(&mut LinuxSys, &plan.steps[split..], root)?;
    let child = program.release(&ExecAttrs::of(&plan))?;
    Report::Ready.send(&mut report)?;
    let code = supervise(child, &signals, true)?;
    match record {
        Some(record) => after_program(code, record, report, &signals),
        None => Ok(code),
    }
}

/// A session's cold start, under the init record's lock: no sandbox of the environment has
/// its overlay mounted (no init runs; one that was exiting is gone), and none can mount it
/// before our stage 2 does, so the volatile marker of its last mount can go (`volatile.rs`).
fn reuse_overlay_work(plan: &SandboxPlan) -> Result<()> {
    let Some(work) = plan.steps.iter().find_map(|s| match s {
        SetupStep::MountOverlay { work, .. } => Some(Path::new(work)),
        _ => None,
    }) else {
        return Ok(());
    };
    match volatile::clear_marker(work) {
        Ok(volatile::Marker::Cleared {
            from_earlier_boot: true,
        }) => {
            // The program's stderr is the session's terminal or log: the user sees it there.
            eprintln!("karapace-tui: warning: {}", volatile::crash_warning(work));
            Ok(())
        }
        Ok(_) => Ok(()),
        Err(e) => Err(SandboxError::io(
            "remove the overlay's volatile marker",
            e.path.display().to_string(),
        )(e.source)),
    }
}

fn probe(plan_file: &Path, id_maps: Option<IdMapSync>) -> Result<u8> {
    die_with_parent()?;
    let plan = read_plan_file(plan_file)?;
    plan.validate_steps()?;
    apply_steps_with(&mut LinuxSys, &plan.steps, id_maps)?;
    Ok(0)
}

/// Deletes `tree` as root of a user namespace built by the plan, which may hold only
/// user-namespace steps (nothing is mounted, nothing else is unshared).
fn remove_tree(plan_file: &Path, tree: &Path, id_maps: Option<IdMapSync>) -> Result<u8> {
    die_with_parent()?;
    let plan = read_plan_file(plan_file)?;
    plan.validate_steps()?;
    let user_ns_only = plan.steps.iter().all(|s| {
        matches!(
            s,
            SetupStep::UnshareUserNs
                | SetupStep::WriteIdMaps { .. }
                | SetupStep::AwaitIdMaps { .. }
        )
    });
    if !user_ns_only || !tree.is_absolute() {
        return Err(SandboxError::InvalidPlan(format!(
            "--remove-tree takes only user-namespace steps and an absolute path (got {})",
            tree.display()
        )));
    }
    apply_steps_with(&mut LinuxSys, &plan.steps, id_maps)?;
    match fs::remove_dir_all(tree) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(SandboxError::io("remove", tree.display().to_string())(e))
        }
        _ => Ok(0),
    }
}

/// Reads the plan and deletes the file, so nothing of it is left behind.
fn read_plan_file(path: &Path) -> Result<SandboxPlan> {
    let mut file = PlanFileGuard { path, keep: false };
    let plan = file.read()?;
    file.consume()?;
    Ok(plan)
}

/// The plan file until the helper commits to its plan: [`PlanFileGuard::consume`] deletes it
/// (once), and so does the drop on an error path, unless `keep` is set (a join that ran
/// nothing).
struct PlanFileGuard<'a> {
    path: &'a Path,
    /// Deleted already, or to be left in place.
    keep: bool,
}

impl PlanFileGuard<'_> {
    fn read(&self) -> Result<SandboxPlan> {
        let text = fs::read_to_string(self.path).map_err(SandboxError::io(
            "read plan file",
            self.path.display().to_string(),
        ))?;
        SandboxPlan::from_json(&text)
    }

    fn consume(&mut self) -> Result<()> {
        if self.keep {
            return Ok(());
        }
        self.keep = true;
        fs::remove_file(self.path).map_err(SandboxError::io(
            "remove plan file",
            self.path.display().to_string(),
        ))
    }
}

impl Drop for PlanFileGuard<'_> {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        match fs::remove_file(self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => eprintln!(
                "karapace-tui: warning: cannot remove the plan file {}: {e}",
                self.path.display()
            ),
        }
    }
}

/// An inherited descriptor as an owned, close-on-exec file: reopened through `/proc/self/fd`
/// (no unsafe code), then the inherited one is closed.
fn reopen_fd(fd: RawFd, what: &'static str) -> Result<fs::File> {
    let path = format!("/proc/self/fd/{fd}");
    let file = fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(SandboxError::io("reopen", format!("{what} ({path})")))?;
    nix::unistd::close(fd).map_err(SandboxError::helper("close an inherited pipe"))?;
    Ok(file)
}

/// Descriptors the spawner leaked to us must not reach the program: mark them close-on-exec.
fn cloexec_inherited_fds() -> Result<()> {
    let dir = fs::read_dir("/proc/self/fd").map_err(SandboxError::io("list", "/proc/self/fd"))?;
    let fds: Vec<RawFd> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2)
        .collect();
    for fd in fds {
        match fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)) {
            // The read_dir descriptor itself, closed by now.
            Ok(_) | Err(Errno::EBADF) => {}
            Err(errno) => return Err(SandboxError::helper("fcntl(FD_CLOEXEC)")(errno)),
        }
    }
    Ok(())
}

/// Stage 2 and stage 1's ends of its pipes.
struct Stage2 {
    child: Child,
    /// Open until stage 1 exits (stage 2 checks that stage 1 lives through it).
    plan_pipe: fs::File,
    /// What stage 2 reports (see [`Report`]).
    report: fs::File,
    /// With a session, stage 2 as the environment's init. Read before stage 2 gets its plan:
    /// its `pivot_root` moves us too (pivot_root(2): every process of the mount namespace whose
    /// root is the old root), and our `/proc` then is the new PID namespace's.
    init: Option<InitRecord>,
}

/// Starts stage 2 with the plan on an inherited pipe and a second pipe for its reports.
fn spawn_stage2(rest: &SandboxPlan, session: Option<&Path>) -> Result<Stage2> {
    let (read_end, write_end) = pipe_to_child(ChildEnd::Read)?;
    let (report_read, report_write) = pipe_to_child(ChildEnd::Write)?;
    let mut cmd = Command::new("/proc/self/exe");
    cmd.arg(HELPER_VERB)
        .arg("--stage2")
        .arg(read_end.as_raw_fd().to_string())
        .arg(report_write.as_raw_fd().to_string())
        .args(session)
        .env_clear();
    if let Some(trace) = std::env::var_os(TRACE_VAR) {
        cmd.env(TRACE_VAR, trace);
    }
    let child = cmd
        .spawn()
        .map_err(SandboxError::io("start stage 2 of", "/proc/self/exe"))?;
    drop(read_end);
    drop(report_write);
    let init = match session {
        Some(_) => Some(InitRecord::running_init(child.id() as i32)?),
        None => None,
    };
    let mut pipe = fs::File::from(write_end);
    let mut line = rest.to_json()?;
    line.push('\n');
    match pipe.write_all(line.as_bytes()) {
        // Stage 2 died before reading; its exit status tells why.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
        other => other.map_err(SandboxError::io("send the plan to stage 2 over", "a pipe"))?,
    }
    Ok(Stage2 {
        child,
        plan_pipe: pipe,
        report: fs::File::from(report_read),
        init,
    })
}

/// Reads one JSON line from `fd`, checks that stage 1 still holds the other end, closes `fd`.
fn read_plan_pipe(fd: RawFd) -> Result<SandboxPlan> {
    let text = read_line(fd)?
        .ok_or_else(|| SandboxError::helper("read the plan from stage 1")(Errno::EPIPE))?;
    // PR_SET_PDEATHSIG is set by now; if stage 1 died before that, its end is closed and a
    // non-blocking read sees EOF instead of EAGAIN.
    fcntl(fd, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))
        .map_err(SandboxError::helper("fcntl(O_NONBLOCK)"))?;
    let alive = SandboxError::helper("check that stage 1 is alive");
    match nix::unistd::read(fd, &mut [0u8; 1]) {
        Err(Errno::EAGAIN) => {}
        Ok(_) => return Err(alive(Errno::ESRCH)),
        Err(errno) => return Err(alive(errno)),
    }
    nix::unistd::close(fd).map_err(SandboxError::helper("close the plan pipe"))?;
    SandboxPlan::from_json(text.trim_end())
}

#[cfg(test)]
mod tests {
    use super::{parse_args, Mode};

    fn parse(args: &[&str]) -> Option<Mode> {
        let args: Vec<std::ffi::OsString> = args.iter().map(Into::into).collect();
        parse_args(&args).ok()
    }

    #[test]
    fn helper_arguments_are_parsed_strictly() {
        assert!(matches!(
            parse(&["/p.json"]),
            Some(Mode::Run {
                parent: None,
                session: None,
                ..
            })
        ));
        assert!(matches!(
            parse(&["--parent-pid", "42", "/p.json"]),
            Some(Mode::Run {
                parent: Some(42),
                session: None,
                ..
            })
        ));
        let session = parse(&["--parent-pid", "42", "--session", "/env/init", "/p.json"]);
        assert!(matches!(&session, Some(Mode::Run {
                    parent: Some(42), session: Some(s), plan_file, id_maps: None
                }) if s.to_str() == Some("/env/init") && plan_file.to_str() == Some("/p.json")),);
        assert!(matches!(
            parse(&["--stage2", "5", "6"]),
            Some(Mode::Stage2 {
                fd: 5,
                report: 6,
                session: None
            })
        ));
        assert!(matches!(
            parse(&["--stage2", "5", "6", "/env/init"]),
            Some(Mode::Stage2 {
                session: Some(_),
                ..
            })
        ));
        assert!(matches!(
            parse(&["--probe", "/p.json"]),
            Some(Mode::Probe { id_maps: None, .. })
        ));
        let fd = |fd| Some(super::IdMapSync { fd });
        assert!(matches!(
            parse(&["--parent-pid", "42", "--id-maps", "7", "/p.json"]),
            Some(Mode::Run { parent: Some(42), id_maps, plan_file, session: None })
                if id_maps == fd(7) && plan_file.as_os_str() == "/p.json"
        ));
        assert!(matches!(
            parse(&["--id-maps", "7", "/p.json"]),
            Some(Mode::Run { parent: None, id_maps, .. }) if id_maps == fd(7)
        ));
        let session = parse(&[
            "--parent-pid",
            "42",
            "--session",
            "/env/init",
            "--id-maps",
            "7",
            "/p.json",
        ]);
        assert!(matches!(
            &session,
            Some(Mode::Run { parent: Some(42), session: Some(s), id_maps, plan_file })
                if s.as_os_str() == "/env/init" && *id_maps == fd(7)
                    && plan_file.as_os_str() == "/p.json"
        ));
        assert!(matches!(
            parse(&["--probe", "--id-maps", "8", "/p.json"]),
            Some(Mode::Probe { id_maps, .. }) if id_maps == fd(8)
        ));
        assert!(matches!(
            parse(&["--remove-tree", "--id-maps", "8", "/p.json", "/tree"]),
            Some(Mode::RemoveTree { id_maps, tree, .. }) if id_maps == fd(8)
                && tree.as_os_str() == "/tree"
        ));
        let exec = parse(&["--exec", "3", "4", "--", "sh", "-c", "--stage2"]);
        assert!(
            matches!(&exec, Some(Mode::Exec { go: 3, ready: 4, argv }) if argv.len() == 3),
            "the program's own arguments are not parsed"
        );
        for bad in [
            &[][..],
            &["--stage2", "5"],
            &["--stage2", "x", "6"],
            &["--stage2", "5", "6", "/a", "/b"],
            &["--parent-pid", "x", "/p"],
            &["--parent-pid", "1", "--parent-pid", "2", "/p"],
            &["--session", "/a", "--session", "/b", "/p"],
            &["--session", "/a"],
            &["--bogus", "/p"],
            &["/a", "/b"],
            &["--exec", "3", "--"],
            &["--id-maps", "x", "/p"],
            &["/p", "--id-maps"],
            &["--id-maps", "7", "--id-maps", "8", "/p"],
            &["--stage2", "--id-maps", "3", "5", "6"],
            &["--remove-tree", "/p"],
        ] {
            assert!(parse(bad).is_none(), "{bad:?}");
        }
    }
}

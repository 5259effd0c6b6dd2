//! The hidden helper: `karapace-tui __sandbox-init …`, dispatched by `main` before any thread
//! starts, because `unshare(CLONE_NEWUSER)` is refused to a threaded process (unshare(2)).
//!
//! Forms:
//! - `__sandbox-init [--parent-pid PID] [--session RECORD] [--id-maps FD] PLAN_FILE` — stage 1.
//!   Reads the JSON plan from the file and deletes it (a file, not the environment: the
//!   program's environment must be exactly the plan's; not stdin: the program owns stdin).
//!   Runs the namespace steps (with `--id-maps`, the spawner writes a subordinate range's maps
//!   while we wait: `spawn.rs`), then forks PID 1 of the new PID namespace (`program.rs`,
//!   `fork.rs`: a fork, not a second exec of this binary, so the plan stays in memory) and
//!   waits for it, forwarding signals. `--parent-pid` closes the race in which the spawner dies
//!   before `PR_SET_PDEATHSIG` is set.
//!   `--session RECORD` makes the run a session of an environment that other sessions may
//!   join (see `join.rs`): under the init record's lock, stage 1 joins the running init if the
//!   record names one, instead of building a second root (and tells the spawner over
//!   `--id-maps` that no maps are needed: the user namespace it enters has them), and forks
//!   the program there; otherwise it sets the overlay's last work directory aside, with its
//!   volatile marker (`volatile.rs`: nothing has the overlay mounted now, and nothing can
//!   mount it before we do), starts cold
//!   and records its PID 1 once PID 1 reports the root ready. A join that finds the init gone
//!   after it entered the namespaces exits 125 and leaves the plan file in place: nothing ran,
//!   and the runtime starts the session again.
//!
//!   PID 1 ([`init`]) runs the file-system steps (its own mount namespace, the root overlay, then `pivot_root` and
//!   the process attributes), forks the program, whose process execs it with exactly the plan's
//!   environment, and reports `ready START_TIME` to stage 1 over a pipe. It forwards SIGTERM,
//!   SIGINT, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 to the program, reaps every zombie (it is
//!   init) and exits with the program's code (128+N for signal N). When PID 1 exits the kernel
//!   kills everything left in the namespace, and the last process leaving the mount namespace
//!   takes every mount with it. With RECORD (`supervise::after_program`): if no joined session
//!   runs when the program ends, PID 1 marks the record `exiting`, kills and reaps everything
//!   else in the namespace, reports `end CODE` (stage 1 returns with it, not waiting for PID 1's
//!   own exit and its unmounts) and exits; if joined sessions still run, it reports `exit CODE`
//!   instead (stage 1 exits with it) and stays as their init until none is left.
//! - `--probe [--id-maps FD] PLAN_FILE` — runs every step of the plan in this process and exits
//!   0; used by [`super::check`] to find out what the kernel allows.
//! - `--remove-tree [--id-maps FD] PLAN_FILE TREE` — runs the plan's user-namespace steps, then
//!   deletes TREE as root of that namespace: files a sandbox gave to subordinate ids, which the
//!   user cannot delete on the host ([`super::remove`]).
//! - `--pack-tree [--id-maps FD] PLAN_FILE OUT TREE…` and `--unpack-tree [--id-maps FD]
//!   PLAN_FILE IN DEST` — the same user namespace, then pack the TREEs into the tar file OUT,
//!   or unpack IN into DEST, keeping subordinate owners, whiteouts and overlay xattrs
//!   ([`super::archive`]).
//!
//! With resource limits (`limits.rs`), stage 1 moves itself into the environment's cgroups (v2,
//! and as root one per cgroup v1 hierarchy) before it creates any namespace (a cold start
//! creates them first; a join moves in before `setns`), and moves back and removes them when its
//! program has ended.
//!
//! Every process of the helper sets `PR_SET_PDEATHSIG` to SIGKILL, so the sandbox dies with
//! whoever started it; only an init that stays for joined sessions clears it (after its own session ended).
//! Exit codes: the program's, or 125 (setup failed), 126 (cannot execute), 127 (not found).
//!
//! The runtime's CLI, which runs one thread, does not execute this verb for a session: it forks
//! and calls [`forked_stage1`] with the plan in memory (`forked.rs`), which spares a second
//! start of this binary and the plan file, or, starting an environment cold, runs stage 1's
//! cold start itself ([`inline_cold_start`]), which spares the fork too. Stage 1 is the same
//! code every way.

use std::ffi::OsString;
use std::fs;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::sys::signal::{SigSet, Signal};

use super::error::{Result, SandboxError, EXIT_SETUP_FAILED};
use super::exec::apply_steps_with;
use super::fork::ThreadCount;
use super::join::{try_join, Join, ProcStat, RecordFile, RecordLock};
use super::limits::{enter_plan_cgroups, leave_plan_cgroups};
use super::plan::{SandboxPlan, SetupStep, Stage};
use super::premap::Premapped;
use super::program::{exec_program, fork_tied, ExecAttrs, Started};
use super::spawn::{abandon, release, HelperProcess};
use super::supervise::{
    after_program, block_forwarded_signals, supervise, supervise_stage2, Report,
};
use super::sys::{IdMapSync, LinuxSys};
use super::volatile;
use super::HELPER_VERB;

/// The environment variable that turns on a trace line per step (PID 1 inherits it).
pub const TRACE_VAR: &str = "KARAPACE_SANDBOX_TRACE";

/// Runs `wipe`, which clears this process's environment, and sets [`TRACE_VAR`] again if it
/// was set: the trace switch is the one variable the sandbox's own processes read, and it is
/// kept on the heap, outside the wiped block.
pub(crate) fn keeping_trace(wipe: impl FnOnce() -> Result<()>) -> Result<()> {
    let trace = std::env::var_os(TRACE_VAR);
    wipe()?;
    if let Some(trace) = trace {
        std::env::set_var(TRACE_VAR, trace);
    }
    Ok(())
}

enum Mode {
    Run {
        plan_file: PathBuf,
        parent: Option<i32>,
        session: Option<PathBuf>,
        id_maps: Option<IdMapSync>,
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
    PackTree {
        plan_file: PathBuf,
        out: PathBuf,
        trees: Vec<PathBuf>,
        id_maps: Option<IdMapSync>,
    },
    UnpackTree {
        plan_file: PathBuf,
        input: PathBuf,
        dest: PathBuf,
        id_maps: Option<IdMapSync>,
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
        Mode::Probe { plan_file, id_maps } => probe(&plan_file, id_maps),
        Mode::RemoveTree {
            plan_file,
            tree,
            id_maps,
        } => remove_tree(&plan_file, &tree, id_maps),
        Mode::PackTree {
            plan_file,
            out,
            trees,
            id_maps,
        } => pack_tree(&plan_file, &out, &trees, id_maps),
        Mode::UnpackTree {
            plan_file,
            input,
            dest,
            id_maps,
        } => unpack_tree(&plan_file, &input, &dest, id_maps),
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
             --remove-tree [--id-maps FD] PLAN_FILE TREE | {HELPER_VERB} --pack-tree \
             [--id-maps FD] PLAN_FILE OUT TREE... | {HELPER_VERB} --unpack-tree [--id-maps FD] \
             PLAN_FILE IN DEST"
        ))
    };
    // `--id-maps FD` may stand before the plan file of every form.
    let mut args: Vec<&OsString> = args.iter().collect();
    let id_maps = match args.iter().position(|a| *a == "--id-maps") {
        Some(i) if i + 1 < args.len() => {
            let fd = args[i + 1].to_str().and_then(|s| s.parse().ok());
            args.drain(i..i + 2);
            Some(IdMapSync::new(fd.ok_or_else(usage)?))
        }
        Some(_) => return Err(usage()),
        None => None,
    };
    let path = |i: usize| PathBuf::from(args[i]);
    let text: Vec<&str> = args.iter().map(|a| a.to_str().unwrap_or("")).collect();
    match text.as_slice() {
        ["--probe", _] => Ok(Mode::Probe {
            plan_file: path(1),
            id_maps,
        }),
        ["--remove-tree", _, _] => Ok(Mode::RemoveTree {
            plan_file: path(1),
            tree: path(2),
            id_maps,
        }),
        ["--pack-tree", _, _, _, ..] => Ok(Mode::PackTree {
            plan_file: path(1),
            out: path(2),
            trees: (3..args.len()).map(path).collect(),
            id_maps,
        }),
        ["--unpack-tree", _, _, _] => Ok(Mode::UnpackTree {
            plan_file: path(1),
            input: path(2),
            dest: path(3),
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
    check_parent(parent)?;
    run_stage1(plan, PlanOrigin::File(file), session, id_maps)
}

/// Stage 1 in a process the runtime forked instead of executing the helper (`spawn.rs`): the
/// plan is in memory, and `ran_nothing` is the write end of a pipe to the runtime. Returns the
/// exit code; the caller ends the process with it.
pub(crate) fn forked_stage1(
    plan: SandboxPlan,
    parent: i32,
    session: &Path,
    id_maps: Option<IdMapSync>,
    ran_nothing: OwnedFd,
) -> u8 {
    let origin = PlanOrigin::Forked(Some(ran_nothing));
    let result = die_with_parent()
        .and_then(|()| check_parent(Some(parent)))
        .and_then(|()| run_stage1(plan, origin, Some(session), id_maps));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("karapace-tui: {e}");
            EXIT_SETUP_FAILED
        }
    }
}

/// After PR_SET_PDEATHSIG: the starter may have died just before it took effect.
fn check_parent(parent: Option<i32>) -> Result<()> {
    match parent {
        Some(expected) if nix::unistd::getppid().as_raw() != expected => {
            Err(SandboxError::helper("check that the parent is alive")(
                Errno::ESRCH,
            ))
        }
        _ => Ok(()),
    }
}

/// Where stage 1's plan came from, which is also how it tells its starter that a session ran
/// nothing (the environment it was joining ended meanwhile; the starter then starts it again).
enum PlanOrigin<'a> {
    /// A plan file: deleted once committed to, left in place when nothing ran.
    File(PlanFileGuard<'a>),
    /// A forked stage 1: the pipe to the starter gets one byte when nothing ran, and is closed
    /// once committed to (so that PID 1 and the program never hold it).
    Forked(Option<OwnedFd>),
}

impl PlanOrigin<'_> {
    fn commit(&mut self) -> Result<()> {
        match self {
            PlanOrigin::File(file) => file.consume(),
            PlanOrigin::Forked(pipe) => {
                drop(pipe.take());
                Ok(())
            }
        }
    }

    fn ran_nothing(&mut self) -> Result<()> {
        match self {
            PlanOrigin::File(file) => {
                file.keep = true;
                Ok(())
            }
            PlanOrigin::Forked(pipe) => match pipe.take() {
                Some(fd) => fs::File::from(fd).write_all(b"0").map_err(SandboxError::io(
                    "tell the runtime that nothing ran",
                    "a pipe",
                )),
                None => Ok(()),
            },
        }
    }
}

fn run_stage1(
    plan: SandboxPlan,
    mut origin: PlanOrigin<'_>,
    session: Option<&Path>,
    id_maps: Option<IdMapSync>,
) -> Result<u8> {
    plan.validate()?;
    cloexec_inherited_fds()?;
    let signals = block_forwarded_signals()?;
    let threads = ThreadCount::open().map_err(SandboxError::io(
        "open (to count the helper's threads)",
        "/proc/self/status",
    ))?;
    let record = match session {
        None => None,
        Some(path) => {
            let lock = RecordLock::acquire(path)?;
            match try_join(&lock, &plan, &threads)? {
                Join::Started(program, _tie, membership) => {
                    origin.commit()?;
                    if let Some(sync) = id_maps {
                        sync.not_needed().map_err(SandboxError::helper(
                            "tell the spawner over the id-map channel that no maps are needed",
                        ))?;
                    }
                    // The program is inside the PID namespace now: the init will count it.
                    drop(lock);
                    let code = supervise(program, &signals, false);
                    leave_plan_cgroups(membership);
                    return code;
                }
                Join::Vanished(membership) => {
                    // Silent: the runtime says that it starts the session again.
                    leave_plan_cgroups(membership);
                    origin.ran_nothing()?;
                    return Ok(EXIT_SETUP_FAILED);
                }
                Join::NotRunning => Some(lock),
            }
        }
    };
    origin.commit()?;
    start_cold(plan, &signals, record, Maps::InStage1(id_maps), &threads)
}

/// A session's cold start run by the single-threaded runtime itself, in place of a forked
/// stage 1 (`forked.rs`: `record` is locked, and no init runs): the same steps as stage 1's
/// from there on, and this process is PID 1's parent. Returns the session's exit code.
pub(crate) fn inline_cold_start(
    plan: SandboxPlan,
    record: RecordLock,
    premapped: Option<Premapped>,
    threads: &ThreadCount,
) -> Result<u8> {
    let signals = block_forwarded_signals()?;
    // The tools are waited for as late as can be: they run during the steps before.
    let maps = match premapped {
        Some(premapped) => Maps::InPid1(premapped),
        None => Maps::InStage1(None),
    };
    start_cold(plan, &signals, Some(record), maps, threads)
}

/// How a cold start gets its user namespace's maps.
enum Maps {
    /// In stage 1's namespace steps, over this channel to the spawner (`None`: the plan maps
    /// nothing from outside).
    InStage1(Option<IdMapSync>),
    /// A namespace made ahead whose newuidmap and newgidmap may still run: stage 1 enters it,
    /// and PID 1 waits for the tools right before its overlay mount
    /// ([`SandboxPlan::steps_awaiting_maps_in_pid1`]).
    InPid1(Premapped),
}

/// Stage 1's cold start, once it is decided: the overlay's work directory set aside, the
/// cgroups, then [`cold_start`].
fn start_cold(
    plan: SandboxPlan,
    signals: &SigSet,
    record: Option<RecordLock>,
    maps: Maps,
    threads: &ThreadCount,
) -> Result<u8> {
    let trash = match record {
        Some(_) => reuse_overlay_work(&plan)?,
        None => None,
    };
    // Before any namespace, with our own credentials: PID 1 and the program inherit the
    // cgroups (`limits.rs`). Left (and removed if empty) once PID 1 has ended or lingers on.
    let membership = enter_plan_cgroups(&plan.limits, true)?;
    let start = ColdStart {
        record,
        trash,
        threads,
    };
    let code = cold_start(plan, signals, start, maps);
    leave_plan_cgroups(membership);
    code
}

/// What [`cold_start`] needs besides the plan: with a session, `record` is locked and `trash`
/// names the work directory whose trash to sweep.
struct ColdStart<'a> {
    record: Option<RecordLock>,
    trash: Option<PathBuf>,
    threads: &'a ThreadCount,
}

/// Creates the namespaces and forks PID 1 of the new PID namespace ([`init`]); with a session,
/// `record` is locked and stays locked until PID 1 reports the root ready and is recorded as
/// the environment's init, and the overlay's trash is swept while PID 1 works.
fn cold_start(plan: SandboxPlan, signals: &SigSet, start: ColdStart, maps: Maps) -> Result<u8> {
    let ColdStart {
        record,
        trash,
        threads,
    } = start;
    // PID 1 must have left the session's cgroups before they can be removed.
    let await_init = !plan.limits.cgroups.is_empty();
    let (stage1_steps, pid1_steps, stage1_maps, deferred) = match maps {
        Maps::InStage1(id_maps) => (
            plan.stage_steps(Stage::Namespaces),
            plan.stage_steps(Stage::Root),
            id_maps,
            None,
        ),
        Maps::InPid1(premapped) => {
            let (ours, theirs) = std::os::unix::net::UnixStream::pair().map_err(
                SandboxError::io("create the id-map channel to PID 1", "socketpair"),
            )?;
            let ns = premapped.ns_clone()?;
            let (stage1, pid1) = plan.steps_awaiting_maps_in_pid1();
            // Stage 1 only enters the namespace (closing `ns`); the channel is PID 1's.
            let sync = IdMapSync {
                fd: theirs.as_raw_fd(),
                premapped: Some(ns.into_raw_fd()),
                announce: false,
            };
            (stage1, pid1, Some(sync), Some((premapped, ours, theirs)))
        }
    };
    apply_steps_with(&mut LinuxSys, &stage1_steps, stage1_maps)?;
    let rest = SandboxPlan {
        steps: pid1_steps,
        ..plan
    };
    let session = record.as_ref().map(|r| PathBuf::from(r.path()));
    let (report_read, report_write) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(SandboxError::helper("pipe2"))?;
    let pid1_maps = deferred.as_ref().map(|(_, _, theirs)| theirs.as_raw_fd());
    match fork_tied(threads, "fork PID 1 of the sandbox")? {
        Started::Child => {
            drop(report_read);
            // `deferred` is the parent's (its tools, its seed, its end of the channel): never
            // dropped here, since this process ends in `finish_child`, and its descriptors
            // but PID 1's end of the channel are closed below.
            super::fork::finish_child(EXIT_SETUP_FAILED, || {
                let pid1 = || {
                    if let Some(lock) = record {
                        // Stage 1's lock: closing our copy leaves it held by stage 1.
                        lock.close_in_child()?;
                    }
                    threads
                        .close_in_child()
                        .map_err(SandboxError::helper("close stage 1's status file"))?;
                    // Whatever else the parent had open (the runtime's own files, when it is
                    // the parent: `inline_cold_start`) stays out of the sandbox.
                    let keep: Vec<RawFd> = [Some(report_write.as_raw_fd()), pid1_maps]
                        .into_iter()
                        .flatten()
                        .collect();
                    super::forked::close_inherited_fds(&keep)?;
                    let maps = pid1_maps.map(IdMapSync::awaiting);
                    init(rest, fs::File::from(report_write), session.as_deref(), maps)
                };
                pid1().unwrap_or_else(|e| {
                    eprintln!("karapace-tui: {e}");
                    EXIT_SETUP_FAILED
                })
            })
        }
        Started::Parent(pid, _tie) => {
            drop(report_write);
            if let Some((premapped, ours, theirs)) = deferred {
                drop(theirs);
                // As for a forked stage 1 (`forked.rs`): PID 1 goes on once the tools are done,
                // and is killed and reaped if one failed, whose error is the session's.
                let pid1 = HelperProcess::Forked(super::forked::ForkedProcess::new(pid));
                match premapped.finish() {
                    Ok(_ns) => drop(release(pid1, ours)?),
                    Err(e) => return Err(abandon(pid1, e)),
                }
            }
            if let Some(work) = trash {
                sweep_overlay_trash(&work);
            }
            let record = record.map(|lock| (lock, pid.as_raw()));
            supervise_stage2(
                pid,
                signals,
                fs::File::from(report_read),
                record,
                await_init,
            )
        }
    }
}

/// PID 1 of the sandbox, forked by stage 1 with the root's steps: builds the root, forks the
/// program, reports `ready`, reaps, and (with a session) stays for joined sessions.
fn init(
    plan: SandboxPlan,
    mut report: fs::File,
    session: Option<&Path>,
    maps: Option<IdMapSync>,
) -> Result<u8> {
    // First: the program can read /proc/1/environ (`environ.rs`).
    keeping_trace(|| {
        super::environ::wipe_and_rename().map_err(SandboxError::io(
            "overwrite the inherited environment and command line of PID 1 through",
            "/proc/self/mem",
        ))
    })?;
    // The name `ps` shows beside the command line (prctl(2), 15 bytes at most).
    nix::sys::prctl::set_name(super::environ::INIT_COMM)
        .map_err(SandboxError::helper("prctl(PR_SET_NAME) of PID 1"))?;
    // Blocked already (fork keeps the mask); this returns the set.
    let signals = block_forwarded_signals()?;
    // Opened before pivot_root hides the host's file system (and its /proc).
    let threads = ThreadCount::open().map_err(SandboxError::io(
        "open (to count PID 1's threads)",
        "/proc/self/status",
    ))?;
    let start_time = ProcStat::of_self()
        .map_err(SandboxError::io(
            "read the start time of PID 1 from",
            "/proc/self/stat",
        ))?
        .start_time;
    let record = session.map(RecordFile::open).transpose()?;
    // A fuse-overlayfs root moves us into a new mount namespace after the overlay (see
    // `exec.rs`); the program is forked after every step, so it starts in that one. With
    // `maps`, the steps wait for the id maps before the overlay.
    apply_steps_with(&mut LinuxSys, &plan.steps, maps)?;
    // The status file opened above is the host's /proc/<our host pid>/status: left open, a
    // program could find our host pid (and the host's procfs) through /proc/1/fd. With the
    // sandbox's own /proc mounted, our threads are counted there from now on.
    let threads = if plan
        .steps
        .iter()
        .any(|s| matches!(s, SetupStep::MountProc { .. }))
    {
        drop(threads);
        ThreadCount::open().map_err(SandboxError::io(
            "open (to count PID 1's threads)",
            "/proc/self/status in the sandbox",
        ))?
    } else {
        threads
    };
    let attrs = ExecAttrs::of(&plan);
    let (program, _tie) = match fork_tied(&threads, "fork the program")? {
        Started::Child => {
            super::fork::finish_child(EXIT_SETUP_FAILED, || exec_program(&plan, &attrs, None))
        }
        Started::Parent(pid, tie) => (pid, tie),
    };
    Report::Ready { start_time }.send(&mut report)?;
    let code = supervise(program, &signals, true)?;
    match record {
        Some(record) => after_program(code, record, report, &signals),
        None => Ok(code),
    }
}

/// A session's cold start, under the init record's lock: no sandbox of the environment has
/// its overlay mounted (no init runs; one that was exiting is gone), and none can mount it
/// before our stage 2 does, so the work directory of its last mount, with the volatile marker,
/// can go (`volatile.rs`). It is set aside; returns the work directory whose trash
/// [`sweep_overlay_trash`] empties later, if anything was moved.
fn reuse_overlay_work(plan: &SandboxPlan) -> Result<Option<PathBuf>> {
    let Some(work) = plan.steps.iter().find_map(|s| match s {
        SetupStep::MountOverlay { work, .. } => Some(Path::new(work)),
        _ => None,
    }) else {
        return Ok(None);
    };
    let set_aside = volatile::set_aside(work).map_err(|e| {
        SandboxError::io(
            "move the overlay's last work directory aside",
            e.path.display().to_string(),
        )(e.source)
    })?;
    if set_aside.marker
        == (volatile::Marker::Cleared {
            from_earlier_boot: true,
        })
    {
        // The program's stderr is the session's terminal or log: the user sees it there.
        eprintln!("karapace-tui: warning: {}", volatile::crash_warning(work));
    }
    Ok(set_aside.moved.then(|| work.to_path_buf()))
}

/// Empties the overlay's trash (`volatile::sweep`) in stage 1, right after it has forked PID
/// 1: the deletions wait for the disk, not for a CPU, while PID 1 builds the root on the other
/// one. What cannot be removed is said on stderr; the session goes on, and the next cold start
/// tries again.
fn sweep_overlay_trash(work: &Path) {
    if let Err(e) = volatile::sweep(work) {
        eprintln!("karapace-tui: warning: {}", volatile::sweep_warning(&e));
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
    enter_user_ns_only(plan_file, "--remove-tree", &[tree], id_maps)?;
    match fs::remove_dir_all(tree) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(SandboxError::io("remove", tree.display().to_string())(e))
        }
        _ => Ok(0),
    }
}

/// Packs `trees` into the tar file `out` as root of the plan's user namespace.
fn pack_tree(
    plan_file: &Path,
    out: &Path,
    trees: &[PathBuf],
    id_maps: Option<IdMapSync>,
) -> Result<u8> {
    let mut paths: Vec<&Path> = trees.iter().map(PathBuf::as_path).collect();
    paths.push(out);
    enter_user_ns_only(plan_file, "--pack-tree", &paths, id_maps)?;
    super::archive::pack_here(trees, out)?;
    Ok(0)
}

/// Unpacks the tar file `input` into `dest` as root of the plan's user namespace.
fn unpack_tree(
    plan_file: &Path,
    input: &Path,
    dest: &Path,
    id_maps: Option<IdMapSync>,
) -> Result<u8> {
    enter_user_ns_only(plan_file, "--unpack-tree", &[input, dest], id_maps)?;
    super::archive::unpack_here(input, dest)?;
    Ok(0)
}

/// Reads the plan, which may hold only user-namespace steps (nothing is mounted, nothing else
/// is unshared), checks that `paths` are absolute and applies the steps.
fn enter_user_ns_only(
    plan_file: &Path,
    verb: &str,
    paths: &[&Path],
    id_maps: Option<IdMapSync>,
) -> Result<()> {
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
    if let Some(relative) = paths.iter().find(|p| !p.is_absolute()) {
        return Err(SandboxError::InvalidPlan(format!(
            "{verb} takes only absolute paths (got {})",
            relative.display()
        )));
    }
    if !user_ns_only {
        return Err(SandboxError::InvalidPlan(format!(
            "{verb} takes only user-namespace steps"
        )));
    }
    apply_steps_with(&mut LinuxSys, &plan.steps, id_maps)
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
            parse(&["--probe", "/p.json"]),
            Some(Mode::Probe { id_maps: None, .. })
        ));
        let fd = |fd| Some(super::IdMapSync::new(fd));
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
        assert!(matches!(
            parse(&["--pack-tree", "/p.json", "/out.tar", "/a", "/b"]),
            Some(Mode::PackTree { out, trees, .. }) if out.as_os_str() == "/out.tar"
                && trees == [std::path::PathBuf::from("/a"), std::path::PathBuf::from("/b")]
        ));
        assert!(matches!(
            parse(&["--unpack-tree", "--id-maps", "8", "/p.json", "/in.tar", "/d"]),
            Some(Mode::UnpackTree { id_maps, input, dest, .. }) if id_maps == fd(8)
                && input.as_os_str() == "/in.tar" && dest.as_os_str() == "/d"
        ));
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
            &["--exec", "3", "4", "--", "true"],
            &["--id-maps", "x", "/p"],
            &["/p", "--id-maps"],
            &["--id-maps", "7", "--id-maps", "8", "/p"],
            &["--stage2", "5", "6"],
            &["--remove-tree", "/p"],
            &["--pack-tree", "/p", "/out"],
            &["--unpack-tree", "/p", "/in"],
            &["--unpack-tree", "/p", "/in", "/d", "/e"],
        ] {
            assert!(parse(bad).is_none(), "{bad:?}");
        }
    }
}

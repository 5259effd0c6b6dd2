//! The hidden helper: `karapace-tui __sandbox-init …`, dispatched by `main` before any thread
//! starts, because `unshare(CLONE_NEWUSER)` is refused to a threaded process (unshare(2)).
//!
//! Forms:
//! - `__sandbox-init [--parent-pid PID] [--id-maps FD] PLAN_FILE` — stage 1. Reads the JSON plan
//!   from the file and deletes it (a file, not the environment: the program's environment must
//!   be exactly the plan's; not stdin: the program owns stdin). Runs the namespace steps (with
//!   `--id-maps`, the spawner writes a subordinate range's maps while we wait: `spawn.rs`), then
//!   re-executes `/proc/self/exe __sandbox-init --stage2 FD`, which becomes PID 1 of the new
//!   PID namespace, and waits for it, forwarding signals. `--parent-pid` closes the race in
//!   which the spawner dies before `PR_SET_PDEATHSIG` is set.
//! - `--stage2 FD` — stage 2 (internal). Reads the rest of the plan from an inherited pipe
//!   (one JSON line; stage 1 keeps its end open for its whole life, so EOF after the line means
//!   stage 1 is already gone), mounts the root overlay, starts the exec shim, runs the other
//!   file-system steps, `pivot_root` and the process attributes, then releases the shim,
//!   which execs the program with exactly the plan's environment. It forwards SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2
//!   to the program, reaps every zombie (it is init) and exits with the program's code (128+N
//!   for signal N). When PID 1 exits the kernel kills everything left in the namespace, and
//!   the last process leaving the mount namespace takes every mount with it.
//! - `--exec GO READY -- ARGV…` — the exec shim (internal, see `program.rs`): started by stage 2
//!   before the root is built, released once it is; clears the signal mask and execs ARGV.
//! - `--probe [--id-maps FD] PLAN_FILE` — runs every step of the plan in this process and exits
//!   0; used by [`super::check`] to find out what the kernel allows.
//! - `--remove-tree [--id-maps FD] PLAN_FILE TREE` — runs the plan's user-namespace steps, then
//!   deletes TREE as root of that namespace: files a sandbox gave to subordinate ids, which the
//!   user cannot delete on the host ([`super::remove`]).
//!
//! Both stages set `PR_SET_PDEATHSIG` to SIGKILL, so the sandbox dies with whoever started
//! it. Exit codes: the program's, or 125 (setup failed), 126 (cannot execute), 127 (not found).

use std::ffi::OsString;
use std::fs;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::sys::signal::Signal;

use super::error::{Result, SandboxError, EXIT_SETUP_FAILED};
use super::exec::{apply_steps_in, apply_steps_with};
use super::plan::{SandboxPlan, SetupStep, Stage};
use super::program::{exec_shim, pipe_to_child, read_line, ChildEnd, ExecAttrs, PendingProgram};
use super::supervise::{block_forwarded_signals, supervise};
use super::sys::{IdMapSync, LinuxSys};
use super::HELPER_VERB;

/// The environment variable that turns on a trace line per step (passed through to stage 2).
pub const TRACE_VAR: &str = "KARAPACE_SANDBOX_TRACE";

enum Mode {
    Run {
        plan_file: PathBuf,
        parent: Option<i32>,
        id_maps: Option<IdMapSync>,
    },
    Stage2 {
        fd: RawFd,
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
            id_maps,
        } => stage1(&plan_file, parent, id_maps),
        Mode::Stage2 { fd } => stage2(fd),
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
            "usage: {HELPER_VERB} [--parent-pid PID] [--id-maps FD] PLAN_FILE | {HELPER_VERB} \
             --probe [--id-maps FD] PLAN_FILE | {HELPER_VERB} --remove-tree [--id-maps FD] \
             PLAN_FILE TREE (internal: --stage2 FD)"
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
    match text.as_slice() {
        ["--stage2", fd] if id_maps.is_none() => fd
            .parse()
            .map(|fd| Mode::Stage2 { fd })
            .map_err(|_| usage()),
        ["--probe", _] => Ok(Mode::Probe {
            plan_file: path(1),
            id_maps,
        }),
        ["--remove-tree", _, _] => Ok(Mode::RemoveTree {
            plan_file: path(1),
            tree: path(2),
            id_maps,
        }),
        ["--parent-pid", pid, _] => Ok(Mode::Run {
            plan_file: path(2),
            parent: Some(pid.parse().map_err(|_| usage())?),
            id_maps,
        }),
        [first, ..] if first.starts_with("--") => Err(usage()),
        [_] => Ok(Mode::Run {
            plan_file: path(0),
            parent: None,
            id_maps,
        }),
        _ => Err(usage()),
    }
}

/// PR_SET_PDEATHSIG: SIGKILL when the parent dies (prctl(2)).
fn die_with_parent() -> Result<()> {
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)
        .map_err(SandboxError::helper("prctl(PR_SET_PDEATHSIG)"))
}

fn stage1(plan_file: &Path, parent: Option<i32>, id_maps: Option<IdMapSync>) -> Result<u8> {
    die_with_parent()?;
    // Read (and so delete) the plan first, so no plan file outlives us on any path.
    let plan = read_plan_file(plan_file)?;
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
    let namespace_steps = plan.stage_steps(Stage::Namespaces);
    apply_steps_with(&mut LinuxSys, &namespace_steps, id_maps)?;
    let rest = SandboxPlan {
        steps: plan.stage_steps(Stage::Root),
        ..plan
    };
    let (child, _plan_pipe) = spawn_stage2(&rest)?;
    // `_plan_pipe` stays open until we exit: stage 2 uses it to see that we are alive.
    supervise(child, &signals, false)
}

fn stage2(fd: RawFd) -> Result<u8> {
    die_with_parent()?;
    // Stage 1 validated the whole plan; these are its file-system steps.
    let plan = read_plan_pipe(fd)?;
    let signals = block_forwarded_signals()?;
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
    supervise(child, &signals, true)
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
    let shown = path.display().to_string();
    let text = fs::read_to_string(path).map_err(SandboxError::io("read plan file", &shown))?;
    fs::remove_file(path).map_err(SandboxError::io("remove plan file", &shown))?;
    SandboxPlan::from_json(&text)
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

/// Starts stage 2 with the plan on an inherited pipe; returns the child and our end of it.
fn spawn_stage2(rest: &SandboxPlan) -> Result<(Child, fs::File)> {
    let (read_end, write_end) = pipe_to_child(ChildEnd::Read)?;
    let mut cmd = Command::new("/proc/self/exe");
    cmd.arg(HELPER_VERB)
        .arg("--stage2")
        .arg(read_end.as_raw_fd().to_string())
        .env_clear();
    if let Some(trace) = std::env::var_os(TRACE_VAR) {
        cmd.env(TRACE_VAR, trace);
    }
    let child = cmd
        .spawn()
        .map_err(SandboxError::io("start stage 2 of", "/proc/self/exe"))?;
    drop(read_end);
    let mut pipe = fs::File::from(write_end);
    let mut line = rest.to_json()?;
    line.push('\n');
    match pipe.write_all(line.as_bytes()) {
        // Stage 2 died before reading; its exit status tells why.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
        other => other.map_err(SandboxError::io("send the plan to stage 2 over", "a pipe"))?,
    }
    Ok((child, pipe))
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
            Some(Mode::Run { parent: None, .. })
        ));
        assert!(matches!(
            parse(&["--parent-pid", "42", "/p.json"]),
            Some(Mode::Run {
                parent: Some(42),
                ..
            })
        ));
        assert!(matches!(
            parse(&["--stage2", "5"]),
            Some(Mode::Stage2 { fd: 5 })
        ));
        assert!(matches!(
            parse(&["--probe", "/p.json"]),
            Some(Mode::Probe { id_maps: None, .. })
        ));
        let fd = |fd| Some(super::IdMapSync { fd });
        assert!(matches!(
            parse(&["--parent-pid", "42", "--id-maps", "7", "/p.json"]),
            Some(Mode::Run { parent: Some(42), id_maps, plan_file }) if id_maps == fd(7)
                && plan_file.as_os_str() == "/p.json"
        ));
        assert!(matches!(
            parse(&["--id-maps", "7", "/p.json"]),
            Some(Mode::Run { parent: None, id_maps, .. }) if id_maps == fd(7)
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
            &["--stage2", "x"],
            &["--parent-pid", "x", "/p"],
            &["--bogus", "/p"],
            &["/a", "/b"],
            &["--exec", "3", "--"],
            &["--id-maps", "x", "/p"],
            &["/p", "--id-maps"],
            &["--stage2", "--id-maps", "3", "5"],
            &["--remove-tree", "/p"],
        ] {
            assert!(parse(bad).is_none(), "{bad:?}");
        }
    }
}

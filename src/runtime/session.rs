//! Records of running programs, so that `stop` can end them after the process that started
//! them is gone, without ever signalling a recycled pid.
//!
//! A session is a run marker in the store (a file that its owner keeps flocked while it lives)
//! holding one line: `pid starttime pgid`. Before signalling, `stop` reads the process's start
//! time from `/proc/<pid>/stat` (field 22, proc(5)) and compares: a different value means the
//! pid now belongs to someone else, and nothing is sent.
//!
//! The namespace backend also keeps an *init record* beside the environment
//! ([`init_record`], written by the sandbox helper, see `sandbox::join`): the environment's
//! PID 1, which can outlive the session that started it while joined sessions run. `stop`
//! kills it after the sessions ([`stop_init`]), with the same start-time check; killing a PID
//! namespace's init kills every process left in it (pid_namespaces(7)).

use std::io;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

use super::backend::BackendError;
use crate::sandbox::join::{InitRecord, ProcStat};
use crate::types::BackendKind;

/// How long `stop` gives sessions to end after SIGTERM before it sends SIGKILL.
const GRACE: Duration = Duration::from_secs(3);
/// How long `stop` waits for the commands of stopped sessions to release their run markers.
const MARKERS_RELEASED: Duration = Duration::from_secs(2);
/// How long `stop` waits for a killed init (and so the whole environment) to be gone.
const INIT_GONE: Duration = Duration::from_secs(10);

/// A process recorded in a run marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionProcess {
    pub pid: i32,
    pub start_time: u64,
    /// The process group to signal, or 0 when the process shares its parent's group (an
    /// interactive program attached to the terminal) and only the pid is signalled.
    pub pgid: i32,
}

impl SessionProcess {
    pub fn encode(&self) -> String {
        format!("{} {} {}\n", self.pid, self.start_time, self.pgid)
    }

    pub fn decode(text: &str) -> Option<SessionProcess> {
        let mut parts = text.split_whitespace();
        let pid = parts.next()?.parse().ok()?;
        let start_time = parts.next()?.parse().ok()?;
        let pgid = parts.next()?.parse().ok()?;
        Some(SessionProcess {
            pid,
            start_time,
            pgid,
        })
    }

    /// Describe the process `pid` as it is now.
    pub fn of_pid(pid: i32, pgid: i32) -> io::Result<SessionProcess> {
        Ok(SessionProcess {
            pid,
            start_time: start_time(pid)?,
            pgid,
        })
    }

    /// Whether this record still names the same live process. A zombie (exited, not yet
    /// reaped by its parent) counts as gone: it runs nothing any more. So does a record whose
    /// group is neither 0 nor the process's own pid: karapace-tui writes no such record (the
    /// group it signals is one the recorded process leads), and run markers live in the store,
    /// which a program inside an environment can reach through the host home.
    pub fn is_alive(&self) -> bool {
        (self.pgid == 0 || self.pgid == self.pid)
            && ProcStat::of(self.pid)
                .is_ok_and(|st| st.start_time == self.start_time && !st.has_exited())
    }

    fn signal(&self, sig: Signal) -> nix::Result<()> {
        let pid = Pid::from_raw(self.pid);
        // The group only while the recorded process still leads it.
        let leads = self.pgid > 0 && nix::unistd::getpgid(Some(pid)) == Ok(pid);
        let sent = if leads {
            killpg(pid, sig)
        } else {
            kill(pid, sig)
        };
        match sent {
            // It exited between the check and the signal: that is the goal reached.
            Err(Errno::ESRCH) => Ok(()),
            other => other,
        }
    }

    /// SIGTERM, then SIGKILL after `grace` if the process is still alive. Returns false if the
    /// record was stale (nothing was signalled).
    pub fn terminate(&self, grace: Duration) -> nix::Result<bool> {
        terminate_all(std::slice::from_ref(self), grace).map(|n| n == 1)
    }
}

/// SIGTERM to every live process of `processes` at once, then SIGKILL to those still alive
/// after `grace`. Returns how many were live (signalled).
pub fn terminate_all(processes: &[SessionProcess], grace: Duration) -> nix::Result<usize> {
    let live: Vec<&SessionProcess> = processes.iter().filter(|p| p.is_alive()).collect();
    for process in &live {
        process.signal(Signal::SIGTERM)?;
    }
    let deadline = Instant::now() + grace;
    while live.iter().any(|p| p.is_alive()) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    for process in live.iter().filter(|p| p.is_alive()) {
        process.signal(Signal::SIGKILL)?;
    }
    Ok(live.len())
}

/// Field 22 of /proc/PID/stat: the time the process started, in clock ticks after boot.
pub fn start_time(pid: i32) -> io::Result<u64> {
    ProcStat::of(pid).map(|st| st.start_time)
}

/// Terminate every live session recorded for an environment; returns how many were signalled.
/// Then waits (briefly) until their commands have let go of their run markers, so that the
/// status is accurate once this returns; a session started meanwhile only shortens the wait.
pub fn stop_sessions(
    store: &crate::store::Store,
    id: &crate::types::EnvId,
    backend: BackendKind,
) -> Result<usize, BackendError> {
    let processes: Vec<SessionProcess> = store
        .session_records(id)?
        .iter()
        .filter_map(|record| SessionProcess::decode(record))
        .collect();
    let stopped = terminate_all(&processes, GRACE).map_err(|e| BackendError::Failed {
        backend,
        step: "signal sessions",
        detail: format!(
            "pids {:?}: {e}",
            processes.iter().map(|p| p.pid).collect::<Vec<_>>()
        ),
    })?;
    let deadline = Instant::now() + MARKERS_RELEASED;
    while stopped > 0 && store.running_sessions(id)? > 0 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    Ok(stopped)
}

/// Where the namespace backend keeps an environment's init record.
pub fn init_record(env_dir: &Path) -> PathBuf {
    env_dir.join("init")
}

/// Kills the init recorded at `record` if it still runs (pid and start time match), and waits
/// until it is gone, with everything in its PID namespace and the mounts of its mount namespace.
/// Returns whether it was running.
pub fn stop_init(record: &Path, backend: BackendKind) -> Result<bool, BackendError> {
    let failed = |detail: String| BackendError::Failed {
        backend,
        step: "stop the environment's init",
        detail,
    };
    let Some(init) = InitRecord::read(record).map_err(|e| failed(e.to_string()))? else {
        return Ok(false);
    };
    let process = SessionProcess {
        pid: init.pid,
        start_time: init.start_time,
        pgid: 0,
    };
    if !process.is_alive() {
        return Ok(false);
    }
    // A record naming anything but a sandbox's init was forged: never signal that process.
    init.check_not_foreign(&record.display().to_string())
        .map_err(|e| failed(e.to_string()))?;
    process
        .signal(Signal::SIGKILL)
        .map_err(|errno| failed(format!("kill(pid {}, SIGKILL): {errno}", init.pid)))?;
    init.wait_gone(INIT_GONE).map_err(|e| {
        failed(format!(
            "{e} (recorded in {}); it may be stuck in an uninterruptible wait",
            record.display()
        ))
    })?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_naming_another_process_group_is_never_signalled() {
        let me = std::process::id() as i32;
        let start = start_time(me).expect("own start time");
        let own_group = SessionProcess {
            pid: me,
            start_time: start,
            pgid: me,
        };
        assert!(own_group.is_alive());
        let attached = SessionProcess {
            pgid: 0,
            ..own_group
        };
        assert!(attached.is_alive());
        // A forged group (the init's, say) with a real pid and start time.
        let forged = SessionProcess {
            pgid: 1,
            ..own_group
        };
        assert!(!forged.is_alive());
        assert_eq!(terminate_all(&[forged], Duration::ZERO), Ok(0));
    }

    #[test]
    fn encode_decode_round_trip() {
        let s = SessionProcess {
            pid: 42,
            start_time: 123456,
            pgid: 42,
        };
        assert_eq!(SessionProcess::decode(&s.encode()), Some(s));
        assert_eq!(SessionProcess::decode("42 x 1"), None);
    }

    #[test]
    fn own_process_is_alive_and_a_wrong_start_time_is_not() {
        let me = std::process::id() as i32;
        let s = SessionProcess::of_pid(me, 0).expect("own stat");
        assert!(s.is_alive());
        let stale = SessionProcess {
            start_time: s.start_time + 1,
            ..s
        };
        assert!(!stale.is_alive());
    }

    #[test]
    fn terminate_ends_a_child_group() {
        use std::os::unix::process::CommandExt;
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .expect("spawn sleep");
        let pid = child.id() as i32;
        let s = SessionProcess::of_pid(pid, pid).expect("stat child");
        assert!(s.terminate(Duration::from_secs(2)).expect("terminate"));
        let status = child.wait().expect("wait");
        assert!(!status.success());
    }
}

//! Records of running programs, so that `stop` can end them after the process that started
//! them is gone, without ever signalling a recycled pid.
//!
//! A session is a run marker in the store (a file that its owner keeps flocked while it lives)
//! holding one line: `pid starttime pgid`. Before signalling, `stop` reads the process's start
//! time from `/proc/<pid>/stat` (field 22, proc(5)) and compares: a different value means the
//! pid now belongs to someone else, and nothing is sent.

use std::fs;
use std::io;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

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
    /// reaped by its parent) counts as gone: it runs nothing any more.
    pub fn is_alive(&self) -> bool {
        matches!(proc_stat(self.pid), Ok((state, t)) if t == self.start_time && state != 'Z' && state != 'X')
    }

    fn signal(&self, sig: Signal) -> nix::Result<()> {
        if self.pgid > 0 {
            killpg(Pid::from_raw(self.pgid), sig)
        } else {
            kill(Pid::from_raw(self.pid), sig)
        }
    }

    /// SIGTERM, then SIGKILL after `grace` if the process is still alive. Returns false if the
    /// record was stale (nothing was signalled).
    pub fn terminate(&self, grace: Duration) -> nix::Result<bool> {
        if !self.is_alive() {
            return Ok(false);
        }
        self.signal(Signal::SIGTERM)?;
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if !self.is_alive() {
                return Ok(true);
            }
            thread::sleep(Duration::from_millis(20));
        }
        if self.is_alive() {
            match self.signal(Signal::SIGKILL) {
                // It exited between the check and the signal: that is the goal reached.
                Err(nix::errno::Errno::ESRCH) => {}
                other => other?,
            }
        }
        Ok(true)
    }
}

/// Field 22 of /proc/PID/stat: the time the process started, in clock ticks after boot.
pub fn start_time(pid: i32) -> io::Result<u64> {
    proc_stat(pid).map(|(_, t)| t)
}

/// Fields 3 (state) and 22 (start time) of /proc/PID/stat.
fn proc_stat(pid: i32) -> io::Result<(char, u64)> {
    let stat = fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("stat"))?;
    // The command name (field 2) is in parentheses and may contain spaces or ')', so split
    // after the last ')'. Field 3 is then the first token; field 22 is the 20th.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "malformed /proc stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first().and_then(|f| f.chars().next());
    let start = fields.get(19).and_then(|f| f.parse().ok());
    match (state, start) {
        (Some(state), Some(start)) => Ok((state, start)),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "malformed /proc stat",
        )),
    }
}

/// Terminate every live session recorded for an environment; returns how many were signalled.
pub fn stop_sessions(
    store: &crate::store::Store,
    id: &crate::types::EnvId,
    backend: crate::types::BackendKind,
) -> Result<usize, super::backend::BackendError> {
    let mut stopped = 0;
    for record in store.session_records(id)? {
        let Some(process) = SessionProcess::decode(&record) else {
            continue;
        };
        let signalled = process.terminate(Duration::from_secs(3)).map_err(|e| {
            super::backend::BackendError::Failed {
                backend,
                step: "signal session",
                detail: format!("pid {}: {e}", process.pid),
            }
        })?;
        if signalled {
            stopped += 1;
        }
    }
    Ok(stopped)
}

#[cfg(test)]
mod tests {
    use super::*;

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

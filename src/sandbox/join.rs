//! Several sessions in one running environment: the init record, and joining with `setns`.
//!
//! overlayfs must not mount one upper directory twice (the kernel only warns when `index` is
//! off, and then "accessing files from both mounts will result in undefined behavior"), so a
//! second session does not build a second root: it enters the namespaces of the running one.
//!
//! **The init record** is a small file beside the environment (its path is given to the helper
//! with `--session`), holding `PID STARTTIME STATE`: the host pid of the environment's init
//! (PID 1 of its PID namespace, forked by stage 1), its start time (field 22 of `/proc/PID/stat`, so a
//! recycled pid is never taken for it), and `running` or `exiting`. Its flock serialises the
//! decisions that must not interleave:
//! - a starting session (stage 1) holds it while it decides to join or to start cold, and, when
//!   it starts cold, until its PID 1 has built the root and the record names it; so two cold
//!   starts of one environment never race to mount the same upper directory;
//! - a joining session holds it until its process exists inside the PID namespace;
//! - the init holds it while it decides to exit (its program ended and no joined session is
//!   left) and marks the record `exiting` before it lets go; so a joiner never enters a PID
//!   namespace whose init has decided to go (a fork there fails with ENOMEM,
//!   pid_namespaces(7)). A starter that finds `exiting` waits until that init is gone, then
//!   starts cold.
//!
//! An init that died without deciding (killed by `stop`, or with its first session's CLI) leaves
//! a record naming a dead process: the start-time check treats it as absent. If it dies while a
//! joiner is entering, the joiner's fork fails with ENOMEM after it has entered the user
//! namespace, which cannot be undone; it then exits with 125 *without consuming its plan file*,
//! which tells the runtime that nothing ran and the session can be started again, cold.
//!
//! **Joining** ([`try_join`]): open `/proc/PID/ns/{user,ipc,uts,net,pid,mnt}` first, then check
//! the start time of PID, so the descriptors are known to belong to the recorded init. Enter
//! the user namespace first (setns(2): the others are owned by it, and entering them needs
//! CAP_SYS_ADMIN there; as real root there is none to enter), then ipc, uts, net and pid — any
//! that is already ours is skipped (the host's network when it is not isolated). A PID namespace
//! join only affects children, so the helper forks the program's process, which enters the
//! mount namespace itself — setns(CLONE_NEWNS) sets its root and working directory to the
//! namespace's root, the pivoted overlay — and execs the program there (`program.rs`).
//!
//! A joined program's parent (the joining helper) lives outside the PID namespace, so inside it
//! the program's parent pid reads 0: that is how the init counts joined sessions
//! ([`joined_sessions`]).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::sched::CloneFlags;
use nix::unistd::Pid;

use super::error::{Result, SandboxError};
use super::fork::ThreadCount;
use super::limits::{enter_plan_cgroups, Membership};
use super::plan::SandboxPlan;
use super::program::{exec_program, fork_tied, ExecAttrs, Started, Tie};

/// How long a starter waits for an init that is exiting (or was killed) to be gone.
const GONE_TIMEOUT: Duration = Duration::from_secs(10);

/// The fields of `/proc/PID/stat` (proc(5)) that sessions need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// Field 3: `R`, `S`, `D`, `Z` (zombie), `X` (dead) …
    pub state: char,
    /// Field 4: 0 when the parent is outside the reader's PID namespace.
    pub ppid: i32,
    /// Field 22: clock ticks after boot.
    pub start_time: u64,
}

impl ProcStat {
    /// Parses one `/proc/PID/stat` line. The command name (field 2) is in parentheses and may
    /// itself contain spaces and `)`, so the fields are counted after the last `)`.
    pub fn parse(text: &str) -> Option<ProcStat> {
        let (_, rest) = text.rsplit_once(')')?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        Some(ProcStat {
            state: fields.first()?.chars().next()?,
            ppid: fields.get(1)?.parse().ok()?,
            start_time: fields.get(19)?.parse().ok()?,
        })
    }

    /// This process, from `/proc/self/stat`.
    pub fn of_self() -> io::Result<ProcStat> {
        Self::read("/proc/self/stat")
    }

    fn read(path: &str) -> io::Result<ProcStat> {
        let text = fs::read_to_string(path)?;
        ProcStat::parse(&text)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "malformed /proc stat"))
    }

    /// The process `pid` as this process's `/proc` shows it now.
    pub fn of(pid: i32) -> io::Result<ProcStat> {
        Self::read(&format!("/proc/{pid}/stat"))
    }

    /// Exited (a zombie not reaped yet, or dead): it runs nothing any more.
    pub fn has_exited(&self) -> bool {
        matches!(self.state, 'Z' | 'X')
    }
}

/// The content of the init record (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitRecord {
    pub pid: i32,
    pub start_time: u64,
    /// The init has decided to exit: do not join it.
    pub exiting: bool,
}

impl InitRecord {
    pub fn encode(&self) -> String {
        let state = if self.exiting { "exiting" } else { "running" };
        format!("{} {} {state}\n", self.pid, self.start_time)
    }

    /// `Ok(None)` for an empty record (no init was ever recorded); `Err` for anything that is
    /// not exactly `PID STARTTIME running|exiting`.
    pub fn decode(text: &str) -> std::result::Result<Option<InitRecord>, String> {
        let fields: Vec<&str> = text.split_whitespace().collect();
        let record = match fields.as_slice() {
            [] => return Ok(None),
            [pid, start, state] => {
                let exiting = match *state {
                    "running" => false,
                    "exiting" => true,
                    _ => return Err(format!("unknown state `{state}`")),
                };
                pid.parse()
                    .ok()
                    .filter(|p: &i32| *p > 0)
                    .zip(start.parse().ok())
                    .map(|(pid, start_time)| InitRecord {
                        pid,
                        start_time,
                        exiting,
                    })
            }
            _ => None,
        };
        record
            .map(Some)
            .ok_or_else(|| format!("expected `PID STARTTIME running|exiting`, found {text:?}"))
    }

    /// The record of `pid` (a host pid) as a running init, read from this process's `/proc`.
    pub fn running_init(pid: i32) -> Result<InitRecord> {
        let stat = ProcStat::of(pid).map_err(SandboxError::io(
            "read the start time of the init from",
            format!("/proc/{pid}/stat"),
        ))?;
        Ok(InitRecord {
            pid,
            start_time: stat.start_time,
            exiting: false,
        })
    }

    /// Reads the record at `path` without locking (for `stop` and `status`): `Ok(None)` when
    /// there is none.
    pub fn read(path: &Path) -> Result<Option<InitRecord>> {
        let shown = path.display().to_string();
        match fs::read_to_string(path) {
            Ok(text) => InitRecord::decode(&text).map_err(|why| malformed(&shown, &why)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(SandboxError::io("read the init record", shown)(e)),
        }
    }

    /// Whether the recorded process is still there and still the same one (its start time
    /// matches) and has not exited.
    pub fn is_alive(&self) -> bool {
        ProcStat::of(self.pid).is_ok_and(|st| st.start_time == self.start_time && !st.has_exited())
    }

    /// Whether the recorded process runs (it [`is_alive`](Self::is_alive)) but is not PID 1 of
    /// a PID namespace below ours, as every init of a sandbox is: its `NSpid:` line (proc(5))
    /// must list more levels than ours and end in 1. Such a record was not written by one of
    /// our inits. Unknown (the line cannot be read: the process has just gone) is not foreign.
    pub fn is_foreign(&self) -> bool {
        let levels = |path: String| -> Option<Vec<i32>> {
            let text = fs::read_to_string(path).ok()?;
            let line = text.lines().find_map(|l| l.strip_prefix("NSpid:"))?;
            line.split_whitespace().map(|n| n.parse().ok()).collect()
        };
        let (Some(ours), Some(theirs)) = (
            levels("/proc/self/status".into()),
            levels(format!("/proc/{}/status", self.pid)),
        ) else {
            return false;
        };
        let nested_init = theirs.len() > ours.len() && theirs.last() == Some(&1);
        !nested_init && self.is_alive()
    }

    /// [`is_foreign`](Self::is_foreign) as an error naming the record at `path`.
    pub fn check_not_foreign(&self, path: &str) -> Result<()> {
        if self.is_foreign() {
            return Err(SandboxError::ForeignInit {
                path: path.to_string(),
                pid: self.pid,
            });
        }
        Ok(())
    }

    /// Waits until the recorded init is gone (its namespaces and mounts with it: the kernel
    /// releases them before the process turns zombie, which counts as gone). An init that
    /// ends a session (`supervise::Report::Ending`) is usually gone within a millisecond of
    /// its session's return, so the checks start 0.1 ms apart and back off to 5 ms.
    pub fn wait_gone(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_micros(100);
        while self.is_alive() {
            if Instant::now() >= deadline {
                return Err(SandboxError::Io {
                    op: "wait for the end of the environment's previous init",
                    path: format!("pid {}", self.pid),
                    source: io::Error::from(io::ErrorKind::TimedOut),
                });
            }
            thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(5));
        }
        Ok(())
    }
}

fn malformed(path: &str, why: &str) -> SandboxError {
    SandboxError::InvalidPlan(format!(
        "the init record {path} is malformed ({why}); run `karapace-tui stop` on the \
         environment, then remove the file"
    ))
}

/// The init record, open but not locked (the init keeps it open from before `pivot_root`).
#[derive(Debug)]
pub struct RecordFile {
    file: File,
    path: String,
}

impl RecordFile {
    /// Opens (creating it empty if needed, mode 0600) the record at `path`.
    pub fn open(path: &Path) -> Result<RecordFile> {
        let shown = path.display().to_string();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(SandboxError::io("open the init record", &shown))?;
        Ok(RecordFile { file, path: shown })
    }

    /// Takes the record's exclusive flock, waiting as long as it takes: every holder keeps it
    /// for a few milliseconds at most.
    pub fn lock(self) -> Result<RecordLock> {
        let RecordFile { mut file, path } = self;
        loop {
            match Flock::lock(file, FlockArg::LockExclusive) {
                Ok(lock) => return Ok(RecordLock { lock, path }),
                Err((f, Errno::EINTR)) => file = f,
                Err((_, errno)) => {
                    return Err(SandboxError::io("lock the init record", path)(errno.into()))
                }
            }
        }
    }
}

/// The init record, flocked exclusively; released on drop (or by the process's death).
#[derive(Debug)]
pub struct RecordLock {
    lock: Flock<File>,
    path: String,
}

impl RecordLock {
    /// Opens and locks the record at `path`.
    pub fn acquire(path: &Path) -> Result<RecordLock> {
        RecordFile::open(path)?.lock()
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn read(&self) -> Result<Option<InitRecord>> {
        let mut file: &File = &self.lock;
        let mut text = String::new();
        file.rewind()
            .and_then(|()| file.read_to_string(&mut text))
            .map_err(SandboxError::io("read the init record", &self.path))?;
        InitRecord::decode(&text).map_err(|why| malformed(&self.path, &why))
    }

    pub fn write(&self, record: &InitRecord) -> Result<()> {
        let file: &File = &self.lock;
        crate::fsutil::rewrite_in_place(file, &record.encode())
            .map_err(SandboxError::io("write the init record", &self.path))
    }

    /// Marks the recorded init as exiting (the init itself calls this before it exits).
    pub fn mark_exiting(&self) -> Result<()> {
        match self.read()? {
            Some(record) => self.write(&InitRecord {
                exiting: true,
                ..record
            }),
            None => Ok(()),
        }
    }

    /// In a process forked while this lock was held: closes this process's copy of the
    /// descriptor without `LOCK_UN`, which would release the parent's lock (flock(2): the lock
    /// belongs to the open file description, which both processes share).
    pub fn close_in_child(self) -> Result<()> {
        let fd = self.lock.as_raw_fd();
        std::mem::forget(self);
        nix::unistd::close(fd).map_err(SandboxError::helper("close the init record's copy"))
    }

    /// Lets go of the lock, keeping the file open.
    pub fn unlock(self) -> Result<RecordFile> {
        let RecordLock { lock, path } = self;
        match lock.unlock() {
            Ok(file) => Ok(RecordFile { file, path }),
            Err((_, errno)) => Err(SandboxError::io("unlock the init record", path)(
                errno.into(),
            )),
        }
    }
}

/// What [`try_join`] found.
pub enum Join {
    /// The program runs inside the environment; the parent end of its tie must stay open
    /// while we wait for it. With the plan's cgroups, this process is in them (and must leave
    /// them when the program has ended: `limits::leave_plan_cgroups`).
    Started(Pid, Tie, Vec<Membership<File>>),
    /// No running init: start the environment cold (the lock is still held).
    NotRunning,
    /// The init died while we were entering its namespaces: nothing ran, and this process can
    /// no longer start a cold sandbox (it is inside the dead environment's user namespace).
    Vanished(Vec<Membership<File>>),
}

/// The init the record under `lock` names, if it runs; one that is exiting is waited for
/// first, and does not run then.
pub fn running_init(lock: &RecordLock) -> Result<Option<InitRecord>> {
    let Some(record) = lock.read()? else {
        return Ok(None);
    };
    // Before anything is opened or awaited: a forged record could name a host process. Once
    // only: the start time checked after the namespaces are opened proves them this same
    // process's, whose NSpid cannot change.
    record.check_not_foreign(lock.path())?;
    if record.exiting {
        record.wait_gone(GONE_TIMEOUT)?;
        return Ok(None);
    }
    Ok(Some(record).filter(InitRecord::is_alive))
}

/// Waits for the init the record at `path` names, if it is exiting (its session has returned
/// and it tears the sandbox down: `supervise::Report::Ending`), so that what comes next finds
/// the environment's files no longer mounted. A record naming a process that is not an init of
/// a sandbox is an error, as when joining.
pub fn await_exiting_init(path: &Path) -> Result<()> {
    match InitRecord::read(path)? {
        Some(record) if record.exiting => {
            record.check_not_foreign(&path.display().to_string())?;
            record.wait_gone(GONE_TIMEOUT)
        }
        _ => Ok(()),
    }
}

/// Joins the init named by the record under `lock`, if it runs (see the module documentation).
pub fn try_join(lock: &RecordLock, plan: &SandboxPlan, threads: &ThreadCount) -> Result<Join> {
    let Some(record) = running_init(lock)? else {
        return Ok(Join::NotRunning);
    };
    let namespaces = match Namespaces::open(record.pid)? {
        Some(ns) if record.is_alive() => ns,
        // Gone, or the pid now belongs to someone else: whatever we opened is not the init's.
        _ => return Ok(Join::NotRunning),
    };
    // Into the environment's cgroups first, with our own credentials (`limits.rs`): the
    // program forked below starts there.
    let membership = enter_plan_cgroups(&plan.limits, false)?;
    namespaces.enter_all_but_mount()?;
    match fork_tied(threads, "fork the program into the environment") {
        Ok(Started::Child) => super::fork::finish_child(super::error::EXIT_SETUP_FAILED, || {
            exec_program(plan, &ExecAttrs::of(plan), Some(&namespaces.mnt))
        }),
        Ok(Started::Parent(pid, tie)) => Ok(Join::Started(pid, tie, membership)),
        Err(e) if is_enomem(&e) => {
            // A fork into a PID namespace whose init has exited fails with ENOMEM
            // (pid_namespaces(7)); a real shortage of memory leaves the init alive.
            record.wait_gone(GONE_TIMEOUT)?;
            Ok(Join::Vanished(membership))
        }
        Err(e) => Err(e),
    }
}

fn is_enomem(e: &SandboxError) -> bool {
    matches!(
        e,
        SandboxError::Helper {
            errno: Errno::ENOMEM,
            ..
        }
    )
}

/// The namespaces of one process, opened by path; `mnt` is entered by the program's child.
struct Namespaces {
    pid: i32,
    /// In the order they are entered.
    others: Vec<(&'static str, CloneFlags, File)>,
    mnt: File,
}

/// setns(2): the user namespace first; the mount namespace last (by the program's child).
const ORDER: [(&str, CloneFlags); 5] = [
    ("user", CloneFlags::CLONE_NEWUSER),
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("net", CloneFlags::CLONE_NEWNET),
    ("pid", CloneFlags::CLONE_NEWPID),
];

impl Namespaces {
    /// `Ok(None)` if the process is gone.
    fn open(pid: i32) -> Result<Option<Namespaces>> {
        let open = |name: &str| -> Result<Option<File>> {
            let path = format!("/proc/{pid}/ns/{name}");
            match File::open(&path) {
                Ok(f) => Ok(Some(f)),
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ESRCH)) => Ok(None),
                Err(e) => Err(SandboxError::io("open the namespace", path)(e)),
            }
        };
        let mut others = Vec::new();
        for (name, flag) in ORDER {
            let Some(file) = open(name)? else {
                return Ok(None);
            };
            others.push((name, flag, file));
        }
        let Some(mnt) = open("mnt")? else {
            return Ok(None);
        };
        Ok(Some(Namespaces { pid, others, mnt }))
    }

    /// Enters every namespace but the mount namespace, skipping those we are in already
    /// (entering one's own user namespace is EINVAL; the host's network namespace would need
    /// privileges over the host).
    fn enter_all_but_mount(&self) -> Result<()> {
        for (name, flag, file) in &self.others {
            let path = format!("/proc/{}/ns/{name}", self.pid);
            let own = format!("/proc/self/ns/{name}");
            let theirs = file.metadata().map_err(SandboxError::io("stat", &path))?;
            let ours = fs::metadata(&own).map_err(SandboxError::io("stat", &own))?;
            if (theirs.dev(), theirs.ino()) == (ours.dev(), ours.ino()) {
                continue;
            }
            nix::sched::setns(file, *flag).map_err(|errno| SandboxError::Step {
                step: "join_namespaces",
                op: format!("setns({flag:?})"),
                path,
                errno,
                hint: "Joining needs the same user as the environment's first session, and \
                       a single-threaded helper (setns(2)); `karapace-tui stop` the \
                       environment to start it afresh"
                    .into(),
            })?;
        }
        Ok(())
    }
}

/// Processes of this PID namespace, other than its init, whose parent lives outside it: the
/// programs of joined sessions (their helpers are their parents). Reads this process's `/proc`,
/// which in the init is the namespace's own.
pub fn joined_sessions() -> io::Result<usize> {
    let mut count = 0;
    for entry in fs::read_dir("/proc")? {
        let name = entry?.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        if pid == 1 {
            continue;
        }
        match ProcStat::of(pid) {
            Ok(st) if st.ppid == 0 && !st.has_exited() => count += 1,
            Ok(_) => {}
            // It exited while we listed.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ESRCH)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_last_parenthesis() {
        let line = "42 (a) b) (c) S 0 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 987654 1 2 3";
        let st = ProcStat::parse(line).expect("parse");
        assert_eq!(
            st,
            ProcStat {
                state: 'S',
                ppid: 0,
                start_time: 987654
            }
        );
        assert!(!st.has_exited());
        assert!(ProcStat::parse("42 (x) Z 1").is_none(), "too short");
        assert!(ProcStat::parse("no parenthesis").is_none());
    }

    #[test]
    fn own_stat_is_readable_and_alive() {
        let me = ProcStat::of(std::process::id() as i32).expect("own stat");
        assert!(!me.has_exited());
        let record = InitRecord {
            pid: std::process::id() as i32,
            start_time: me.start_time,
            exiting: false,
        };
        assert!(record.is_alive());
        let recycled = InitRecord {
            start_time: me.start_time + 1,
            ..record
        };
        assert!(
            !recycled.is_alive(),
            "another start time is another process"
        );
    }

    #[test]
    fn a_record_naming_a_process_of_our_own_pid_namespace_is_foreign() {
        let me = ProcStat::of(std::process::id() as i32).expect("own stat");
        // This test process: alive, but PID 1 of no namespace below ours.
        let forged = InitRecord {
            pid: std::process::id() as i32,
            start_time: me.start_time,
            exiting: false,
        };
        assert!(forged.is_foreign());
        let err = forged.check_not_foreign("/store/envs/x/init").unwrap_err();
        assert!(
            matches!(&err, SandboxError::ForeignInit { pid, .. } if *pid == forged.pid),
            "{err}"
        );
        assert!(err.to_string().contains("/store/envs/x/init"), "{err}");
        assert!(
            !err.to_string().contains("  "),
            "a broken line continuation: {err}"
        );
        // A process that is gone (another start time) is absent, not foreign.
        let gone = InitRecord {
            start_time: me.start_time + 1,
            ..forged
        };
        assert!(!gone.is_foreign());
        assert!(gone.check_not_foreign("/r").is_ok());
    }

    /// What `destroy`, `archive` and a new start do with the record a session left behind:
    /// wait only for an init marked exiting, and never for a process that is no init.
    #[test]
    fn only_an_exiting_init_is_awaited_and_a_foreign_one_is_refused() {
        let dir = std::env::temp_dir().join(format!("karapace-await-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("mkdir");
        let path = dir.join("init");
        assert!(
            await_exiting_init(&path).is_ok(),
            "no record: nothing to wait for"
        );
        let me = ProcStat::of(std::process::id() as i32).expect("own stat");
        let record = |start_time: u64, exiting: bool| InitRecord {
            pid: std::process::id() as i32,
            start_time,
            exiting,
        };
        // Running (a live session's init): not awaited here; this would wait forever else.
        fs::write(&path, record(me.start_time, false).encode()).expect("write");
        assert!(await_exiting_init(&path).is_ok());
        // Exiting, and gone (another start time: the pid now names another process).
        fs::write(&path, record(me.start_time + 1, true).encode()).expect("write");
        assert!(await_exiting_init(&path).is_ok());
        // Exiting, but naming a live process that is no sandbox's init: refused at once.
        fs::write(&path, record(me.start_time, true).encode()).expect("write");
        let err = await_exiting_init(&path).unwrap_err();
        assert!(
            matches!(&err, SandboxError::ForeignInit { pid, .. } if *pid == std::process::id() as i32),
            "{err}"
        );
        fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn records_round_trip_and_bad_ones_are_refused() {
        for exiting in [false, true] {
            let r = InitRecord {
                pid: 7,
                start_time: 123,
                exiting,
            };
            assert_eq!(InitRecord::decode(&r.encode()), Ok(Some(r)));
        }
        assert_eq!(InitRecord::decode(""), Ok(None));
        assert_eq!(InitRecord::decode("\n"), Ok(None));
        for bad in [
            "7 123",
            "7 123 sleeping",
            "x 123 running",
            "0 1 running",
            "7 1 running x",
        ] {
            assert!(InitRecord::decode(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_record_file_is_written_under_its_lock() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("init");
        let lock = RecordLock::acquire(&path).expect("lock");
        assert_eq!(lock.read().expect("read"), None, "a new record is empty");
        let me = std::process::id() as i32;
        lock.write(&InitRecord::running_init(me).expect("stat"))
            .expect("write");
        let published = InitRecord::read(&path).expect("read").expect("record");
        assert_eq!(published.pid, me);
        assert!(published.is_alive() && !published.exiting);
        lock.mark_exiting().expect("mark");
        assert!(lock.read().expect("read").expect("record").exiting);
        // The flock excludes a second open file description, even in this process.
        let other = RecordFile::open(&path).expect("open");
        let busy = Flock::lock(other.file, FlockArg::LockExclusiveNonblock);
        assert!(matches!(busy, Err((_, Errno::EWOULDBLOCK))));
        let reopened = lock.unlock().expect("unlock").lock().expect("lock again");
        assert!(reopened.read().expect("read").expect("record").exiting);
    }
}

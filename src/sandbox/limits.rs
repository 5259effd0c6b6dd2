//! Resource limits of a sandbox: a cgroup directory per environment and hierarchy (memory,
//! CPU weight or shares, processes) and rlimits set on the program just before it execs (open
//! files; processes where no cgroup can be had).
//!
//! Each controller's limit goes where the controller lives: into one cgroup of the cgroup v2
//! hierarchy, or (as real root on a hybrid or v1-only host) into one cgroup per cgroup v1
//! hierarchy, `<mount>/karapace-<short id>` (`memory.limit_in_bytes`, `cpu.shares`,
//! `pids.max`). Every step below is done for each of the plan's cgroups in turn.
//!
//! The runtime decides what can be enforced on this host (`runtime::limits`, with the cgroup
//! detection of `prereq::cgroup`) and puts the result in the plan as [`Limits`]; the helper
//! only carries it out, before it creates any namespace:
//! - a cold start (stage 1, under the init record's lock) creates the cgroup (or reuses one an
//!   earlier run left), writes the limits, and moves itself in, so PID 1 and the program,
//!   forked later, start inside it (cgroups(7): a child starts in its parent's cgroup);
//! - a joining session's helper moves itself in before it enters the namespaces, so its
//!   program lands in the same cgroup;
//! - each of them, when its program has ended, moves itself back to the cgroup it came from
//!   and removes the environment's cgroup. The last one out succeeds; the others get EBUSY
//!   (processes still inside), which is the expected answer, not a failure. An init that
//!   lingers for joined sessions ends after the last of them has tried, so its empty cgroup is
//!   left behind: `stop` removes it, and the next cold start reuses it.
//!
//! All of it happens outside the new user namespace, with the caller's own credentials: a
//! rootless caller may move processes only between cgroups under a common ancestor it can
//! write (cgroups(7), "Cgroups v2 delegation"), which the runtime checked.
//!
//! File-system access goes through [`CgroupFs`] ([`LinuxCgroupFs`], [`RecordingCgroupFs`]), so
//! the order of writes is unit-tested without a delegated cgroup.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;

use nix::errno::Errno;
use serde::{Deserialize, Serialize};

use super::error::{Result, SandboxError};

/// The step name in errors and traces.
const STEP: &str = "cgroup";

/// What the helper enforces; empty (the default) when the manifest sets no limit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// The environment's cgroups: at most one in the cgroup v2 hierarchy and one per cgroup v1
    /// hierarchy; empty in most plans.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cgroups: Vec<CgroupLimits>,
    /// Set by the program's process just before exec, soft and hard alike.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rlimits: Vec<Rlimit>,
}

impl Limits {
    pub fn is_empty(&self) -> bool {
        self.cgroups.is_empty() && self.rlimits.is_empty()
    }
}

/// The environment's cgroup in one hierarchy and the values written into it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupLimits {
    /// `None`: the cgroup v2 hierarchy. Else a cgroup v1 hierarchy, named by one of the
    /// controllers mounted on it (`memory`, `cpu` or `pids`), which is how its line of
    /// `/proc/self/cgroup` is found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub v1: Option<String>,
    /// Where the hierarchy is mounted (v2: `/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on a
    /// hybrid host; v1: `/sys/fs/cgroup/memory`, …): `/proc/self/cgroup` paths are relative
    /// to it.
    pub hierarchy: String,
    /// The environment's cgroup, a child of a delegated (or, as root, any) cgroup.
    pub dir: String,
    /// v2: controllers to enable in the parent's `cgroup.subtree_control` first (as root; a
    /// delegated parent has them enabled already).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub enable: Vec<String>,
    /// In bytes. v2: `memory.max`, and `memory.swap.max` is 0; v1: `memory.limit_in_bytes`,
    /// and `memory.memsw.limit_in_bytes` (memory plus swap) the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_max: Option<u64>,
    /// v2 `cpu.weight`, 1 to 10000 (see [`cpu_weight`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_weight: Option<u64>,
    /// v1 `cpu.shares`, the manifest's `cpu_shares` as it is: v1's own unit (relative weight
    /// against sibling cgroups, default 1024; Documentation/scheduler/sched-design-CFS.rst,
    /// "Group scheduler extensions to CFS").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_shares: Option<u64>,
    /// `pids.max`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids_max: Option<u64>,
}

/// Which rlimit (getrlimit(2)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RlimitResource {
    /// `RLIMIT_NOFILE`: one more than the highest descriptor number a process may open.
    Nofile,
    /// `RLIMIT_NPROC`: processes of the real user id, counted per user namespace since Linux
    /// 5.14 (the runtime uses it only then, and only in a user namespace of its own).
    Nproc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rlimit {
    pub resource: RlimitResource,
    pub limit: u64,
}

/// cgroup v1 `cpu.shares` (2..262144, default 1024) to cgroup v2 `cpu.weight` (1..10000,
/// default 100), as runc 1.3 (opencontainers/runc#4785, `ConvertCPUSharesToCgroupV2Value` in
/// opencontainers/cgroups) and crun 1.23 (containers/crun#1721) do: a quadratic in log2 of the
/// shares fitted through the minimum, the maximum and the default (1024 → 100). Their earlier
/// linear formula, `1 + (shares - 2) * 9999 / 262142`, mapped the default 1024 to 39, below
/// every sibling left at the default weight (kubernetes/kubernetes#131216). The kernel raises
/// shares of 1 to 2, so 1 gives 1.
pub fn cpu_weight(shares: u64) -> u64 {
    if shares <= 2 {
        return 1;
    }
    if shares >= 262_144 {
        return 10_000;
    }
    let l = (shares as f64).log2();
    let exponent = (l * l + 125.0 * l) / 612.0 - 7.0 / 34.0;
    // In 1..=10000 for shares in 3..262143: the exponent grows from 0.06 to 3.99.
    10f64.powf(exponent).ceil() as u64
}

impl CgroupLimits {
    /// The parent whose `cgroup.subtree_control` must list the controllers.
    fn parent(&self) -> &str {
        self.dir.rsplit_once('/').map_or("/", |(parent, _)| parent)
    }

    fn file(&self, name: &str) -> String {
        format!("{}/{name}", self.dir)
    }

    /// The writes that set the limits, in order: (v2) controllers first (a limit file exists
    /// only once its controller is enabled for the cgroup), then one file per limit.
    pub fn writes(&self) -> Vec<(String, String)> {
        if self.v1.is_some() {
            return self.writes_v1();
        }
        let mut out = Vec::new();
        if !self.enable.is_empty() {
            let enable: Vec<String> = self.enable.iter().map(|c| format!("+{c}")).collect();
            out.push((
                format!("{}/cgroup.subtree_control", self.parent()),
                enable.join(" "),
            ));
        }
        if let Some(bytes) = self.memory_max {
            out.push((self.file("memory.max"), bytes.to_string()));
            // Without this, a cgroup at memory.max has its pages swapped out instead of a
            // process killed, and runs on (slowly) with far more than its limit in use
            // (Documentation/admin-guide/cgroup-v2.rst, "memory.swap.max"). Written after
            // memory.max; a host without swap accounting has no such file (see `enter`).
            out.push((self.file("memory.swap.max"), "0".to_string()));
        }
        if let Some(weight) = self.cpu_weight {
            out.push((self.file("cpu.weight"), weight.to_string()));
        }
        if let Some(pids) = self.pids_max {
            out.push((self.file("pids.max"), pids.to_string()));
        }
        out
    }

    /// cgroup v1 (Documentation/admin-guide/cgroup-v1/memory.rst, cpu via CFS shares,
    /// pids.rst): no controller to enable, one file per limit.
    fn writes_v1(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Some(bytes) = self.memory_max {
            out.push((self.file("memory.limit_in_bytes"), bytes.to_string()));
            // memory.limit_in_bytes alone lets the cgroup swap out without bound (memory.rst
            // 2.4 "Swap Extension"): the memory+swap limit equal to it leaves swap nothing.
            // After the memory limit, which it may never be below (memory.rst 5.4); absent
            // without swap accounting (see `setup`).
            out.push((self.file("memory.memsw.limit_in_bytes"), bytes.to_string()));
        }
        if let Some(shares) = self.cpu_shares {
            out.push((self.file("cpu.shares"), shares.to_string()));
        }
        if let Some(pids) = self.pids_max {
            out.push((self.file("pids.max"), pids.to_string()));
        }
        out
    }

    /// The file whose count grows when the kernel's OOM killer kills a process in the cgroup:
    /// v2 `memory.events` (`oom_kill N`), v1 `memory.oom_control` (`oom_kill N`, Linux 4.13
    /// and later).
    fn oom_file(&self) -> String {
        match self.v1 {
            None => self.file("memory.events"),
            Some(_) => self.file("memory.oom_control"),
        }
    }
}

/// The file-system calls the cgroup steps make. What a session needs when it leaves is
/// opened when it enters ([`CgroupFs::open`]): by then a cold start's stage 1 shares the
/// sandbox's mount namespace, where `pivot_root` has made the sandbox's read-only /sys its
/// root's too (pivot_root(2) moves every process of the namespace), so the host's cgroup
/// files are reachable only through descriptors opened before. Writes through such a
/// descriptor are checked with the credentials it was opened with (Linux 5.16, the fix of
/// CVE-2021-4197), the caller's own, not those of the user namespace created after.
pub trait CgroupFs {
    /// An open cgroup file or directory.
    type File;
    fn mkdir(&mut self, path: &str) -> nix::Result<()>;
    /// One write(2) of `contents` to an existing file (cgroup files take one value per write).
    fn write(&mut self, path: &str, contents: &str) -> nix::Result<()>;
    fn read(&mut self, path: &str) -> nix::Result<String>;
    /// Opens a file for reading and writing, or (`dir`) a directory.
    fn open(&mut self, path: &str, dir: bool) -> nix::Result<Self::File>;
    fn write_to(&mut self, file: &Self::File, contents: &str) -> nix::Result<()>;
    /// The whole file again, from its start.
    fn read_from(&mut self, file: &Self::File) -> nix::Result<String>;
    /// Removes the (cgroup) directory `name` in the open directory `parent`.
    fn rmdir_in(&mut self, parent: &Self::File, name: &str) -> nix::Result<()>;
}

fn errno_of(e: io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

fn write_once(mut file: &fs::File, contents: &str) -> nix::Result<()> {
    let written = file.write(contents.as_bytes()).map_err(errno_of)?;
    if written != contents.len() {
        return Err(Errno::EIO);
    }
    Ok(())
}

/// The real cgroup file system.
#[derive(Debug, Default)]
pub struct LinuxCgroupFs;

impl CgroupFs for LinuxCgroupFs {
    type File = fs::File;

    fn mkdir(&mut self, path: &str) -> nix::Result<()> {
        nix::unistd::mkdir(path, nix::sys::stat::Mode::from_bits_truncate(0o755))
    }

    fn write(&mut self, path: &str, contents: &str) -> nix::Result<()> {
        let file = fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(errno_of)?;
        write_once(&file, contents)
    }

    fn read(&mut self, path: &str) -> nix::Result<String> {
        fs::read_to_string(path).map_err(errno_of)
    }

    fn open(&mut self, path: &str, dir: bool) -> nix::Result<fs::File> {
        // Close-on-exec (std's default): the program must not inherit them.
        let mut options = fs::OpenOptions::new();
        if dir {
            options.read(true).custom_flags(libc::O_DIRECTORY);
        } else {
            options.read(true).write(true);
        }
        options.open(path).map_err(errno_of)
    }

    fn write_to(&mut self, file: &fs::File, contents: &str) -> nix::Result<()> {
        write_once(file, contents)
    }

    fn read_from(&mut self, mut file: &fs::File) -> nix::Result<String> {
        let mut text = String::new();
        file.seek(io::SeekFrom::Start(0))
            .and_then(|_| file.read_to_string(&mut text))
            .map_err(errno_of)?;
        Ok(text)
    }

    fn rmdir_in(&mut self, parent: &fs::File, name: &str) -> nix::Result<()> {
        nix::unistd::unlinkat(
            Some(parent.as_raw_fd()),
            name,
            nix::unistd::UnlinkatFlags::RemoveDir,
        )
    }
}

/// One recorded call of [`RecordingCgroupFs`] (calls through an open file name its path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupCall {
    Mkdir(String),
    Write(String, String),
    Read(String),
    Open(String),
    Rmdir(String),
}

/// A fake [`CgroupFs`]: records calls, answers reads from `files` (ENOENT otherwise) and fails
/// the paths in `fail` with their errno. Its open files are their paths.
#[derive(Debug, Default)]
pub struct RecordingCgroupFs {
    pub calls: Vec<CgroupCall>,
    pub files: BTreeMap<String, String>,
    pub fail: BTreeMap<String, Errno>,
}

impl RecordingCgroupFs {
    fn answer(&mut self, call: CgroupCall, path: &str) -> nix::Result<()> {
        self.calls.push(call);
        match self.fail.get(path) {
            Some(errno) => Err(*errno),
            None => Ok(()),
        }
    }
}

impl CgroupFs for RecordingCgroupFs {
    type File = String;

    fn mkdir(&mut self, path: &str) -> nix::Result<()> {
        self.answer(CgroupCall::Mkdir(path.into()), path)
    }

    fn write(&mut self, path: &str, contents: &str) -> nix::Result<()> {
        self.answer(CgroupCall::Write(path.into(), contents.into()), path)
    }

    fn read(&mut self, path: &str) -> nix::Result<String> {
        self.answer(CgroupCall::Read(path.into()), path)?;
        self.files.get(path).cloned().ok_or(Errno::ENOENT)
    }

    fn open(&mut self, path: &str, _dir: bool) -> nix::Result<String> {
        self.answer(CgroupCall::Open(path.into()), &format!("open {path}"))?;
        Ok(path.to_string())
    }

    fn write_to(&mut self, file: &String, contents: &str) -> nix::Result<()> {
        self.write(file, contents)
    }

    fn read_from(&mut self, file: &String) -> nix::Result<String> {
        self.read(file)
    }

    fn rmdir_in(&mut self, parent: &String, name: &str) -> nix::Result<()> {
        let path = format!("{parent}/{name}");
        self.answer(CgroupCall::Rmdir(path.clone()), &path)
    }
}

fn step_error(op: &str, path: &str, errno: Errno) -> SandboxError {
    SandboxError::Step {
        step: STEP,
        op: op.to_string(),
        path: path.to_string(),
        errno,
        hint: "The environment's resource limits need a cgroup this user may write: a \
               delegated cgroup v2 directory with the memory, cpu and pids controllers enabled \
               for it, or (as root) the cgroup v1 hierarchies of those controllers; \
               `karapace-tui doctor` says what is missing here and how to fix it"
            .into(),
    }
}

/// A process's membership of the environment's cgroup, until it leaves, with what leaving
/// needs already open.
#[derive(Debug)]
pub struct Membership<F> {
    dir: String,
    /// `cgroup.procs` of the cgroup the process came from, to go back to (a cgroup with a
    /// process in it cannot be removed).
    home_procs: (String, F),
    /// The environment cgroup's parent directory, to remove it from.
    parent: F,
    /// With a memory limit: the OOM count, as it was when the process joined.
    events: Option<OomWatch<F>>,
    memory_max: Option<u64>,
}

/// This process's cgroup in the hierarchy of `limits`, under its mount point: the line of
/// `/proc/self/cgroup` (`ID:CONTROLLERS:PATH`, cgroups(7)) that is `0::` for cgroup v2, or
/// whose controller list names the v1 hierarchy's controller.
fn own_cgroup<F: CgroupFs>(fs: &mut F, limits: &CgroupLimits) -> Result<String> {
    let text = fs
        .read("/proc/self/cgroup")
        .map_err(|e| step_error("read", "/proc/self/cgroup", e))?;
    let found = text.lines().find_map(|line| {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        let ours = match &limits.v1 {
            None => line.starts_with("0::"),
            Some(c) => controllers.split(',').any(|name| name == c),
        };
        ours.then_some(path)
    });
    let what = match &limits.v1 {
        None => "the `0::` line".to_string(),
        Some(c) => format!("the line of the `{c}` controller"),
    };
    let path = found.ok_or_else(|| {
        step_error(
            &format!("find {what} in"),
            "/proc/self/cgroup",
            Errno::ENOENT,
        )
    })?;
    let path = path.trim().trim_end_matches('/');
    Ok(format!("{}{path}", limits.hierarchy.trim_end_matches('/')))
}

/// The file a session's memory report reads when the session ends, open since it began.
#[derive(Debug)]
struct OomWatch<F> {
    path: String,
    file: F,
    counter: OomCounter,
    before: u64,
}

/// What a session's memory report counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OomCounter {
    /// Processes the kernel's OOM killer killed in the cgroup: the `oom_kill N` line of v2
    /// `memory.events` or of v1 `memory.oom_control` (Linux 4.13 and later).
    Kills,
    /// Older v1 kernels count no kills: `memory.failcnt`, the times usage hit the limit.
    LimitHits,
}

impl OomCounter {
    fn count(self, text: &str) -> u64 {
        match self {
            OomCounter::Kills => oom_kills(text).unwrap_or(0),
            OomCounter::LimitHits => text.trim().parse().unwrap_or(0),
        }
    }
}

fn oom_kills(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse().ok())
}

fn open<F: CgroupFs>(fs: &mut F, path: &str, dir: bool) -> Result<F::File> {
    fs.open(path, dir).map_err(|e| step_error("open", path, e))
}

fn open_and_read<F: CgroupFs>(fs: &mut F, path: &str) -> Result<(F::File, String)> {
    let file = open(fs, path, false)?;
    let text = fs
        .read_from(&file)
        .map_err(|e| step_error("read", path, e))?;
    Ok((file, text))
}

/// The OOM count's file, open, and its count now.
fn watch_oom<F: CgroupFs>(fs: &mut F, limits: &CgroupLimits) -> Result<OomWatch<F::File>> {
    let path = limits.oom_file();
    let (file, text) = open_and_read(fs, &path)?;
    if let Some(before) = oom_kills(&text) {
        let counter = OomCounter::Kills;
        return Ok(OomWatch {
            path,
            file,
            counter,
            before,
        });
    }
    if limits.v1.is_none() {
        return Err(step_error("find `oom_kill` in", &path, Errno::ENOENT));
    }
    let path = limits.file("memory.failcnt");
    let (file, text) = open_and_read(fs, &path)?;
    let counter = OomCounter::LimitHits;
    let before = counter.count(&text);
    Ok(OomWatch {
        path,
        file,
        counter,
        before,
    })
}

/// Moves process `pid` (this one) into the environment's cgroup. `create`: a cold start,
/// which creates the cgroup (reusing one an earlier run left) and writes the limits first; a
/// joining session only moves in (and creates it too if it is missing). `warn` gets what the
/// user should know but that does not stop the run.
pub fn enter<F: CgroupFs>(
    fs: &mut F,
    limits: &CgroupLimits,
    create: bool,
    pid: u32,
    warn: &mut dyn FnMut(String),
) -> Result<Membership<F::File>> {
    let home = own_cgroup(fs, limits)?;
    let home_procs = format!("{home}/cgroup.procs");
    let home_file = open(fs, &home_procs, false)?;
    let parent = open(fs, limits.parent(), true)?;
    let procs = limits.file("cgroup.procs");
    let moved = if create {
        Err(Errno::ENOENT)
    } else {
        fs.write(&procs, &pid.to_string())
    };
    match moved {
        Ok(()) => {}
        Err(Errno::ENOENT) => {
            setup(fs, limits, warn)?;
            fs.write(&procs, &pid.to_string())
                .map_err(|e| step_error("move the sandbox into", &procs, e))?;
        }
        Err(e) => return Err(step_error("move the sandbox into", &procs, e)),
    }
    let events = match limits.memory_max {
        Some(_) => Some(watch_oom(fs, limits)?),
        None => None,
    };
    Ok(Membership {
        dir: limits.dir.clone(),
        home_procs: (home_procs, home_file),
        parent,
        events,
        memory_max: limits.memory_max,
    })
}

/// Creates the cgroup (EEXIST: an earlier run left it, empty or with processes on their way
/// out; its limits are written again) and writes the limits.
fn setup<F: CgroupFs>(
    fs: &mut F,
    limits: &CgroupLimits,
    warn: &mut dyn FnMut(String),
) -> Result<()> {
    let writes = limits.writes();
    let (enable, files): (Vec<_>, Vec<_>) = writes
        .iter()
        .partition(|(path, _)| path.ends_with("/cgroup.subtree_control"));
    for (path, value) in enable {
        fs.write(path, value)
            .map_err(|e| step_error(&format!("enable `{value}` in"), path, e))?;
    }
    match fs.mkdir(&limits.dir) {
        Ok(()) | Err(Errno::EEXIST) => {}
        Err(e) => {
            return Err(step_error(
                "create the environment's cgroup",
                &limits.dir,
                e,
            ))
        }
    }
    for (path, value) in files {
        match fs.write(path, value) {
            Ok(()) => {}
            Err(Errno::ENOENT)
                if path.ends_with("/memory.swap.max")
                    || path.ends_with("/memory.memsw.limit_in_bytes") =>
            {
                warn(format!(
                    "{path} does not exist (the kernel does not account swap here; \
                     swapaccount=1 on its command line turns it on): the environment may use \
                     swap beyond its memory limit"
                ))
            }
            Err(e) => return Err(step_error(&format!("write `{value}` to"), path, e)),
        }
    }
    Ok(())
}

/// Moves process `pid` back where it came from and removes the environment's cgroup if it is
/// empty now. Returns what the user should be told: an OOM kill during the session, or why the
/// cgroup could not be left.
pub fn leave<F: CgroupFs>(fs: &mut F, membership: &Membership<F::File>, pid: u32) -> Vec<String> {
    let mut notes = Vec::new();
    if let (Some(watch), Some(bytes)) = (&membership.events, membership.memory_max) {
        let mb = bytes >> 20;
        match fs.read_from(&watch.file) {
            Ok(text) if watch.counter.count(&text) > watch.before => {
                let more = watch.counter.count(&text) - watch.before;
                notes.push(match watch.counter {
                    OomCounter::Kills => format!(
                        "the environment reached its memory limit (memory_limit_mb = {mb}): \
                         the kernel's OOM killer killed {more} process(es) in it"
                    ),
                    OomCounter::LimitHits => format!(
                        "the environment reached its memory limit (memory_limit_mb = {mb}) \
                         {more} time(s); this kernel does not count OOM kills, so a program \
                         that ended with SIGKILL was most likely killed for it"
                    ),
                })
            }
            Ok(_) => {}
            Err(e) => notes.push(step_error("read", &watch.path, e).to_string()),
        }
    }
    let (home_procs, home_file) = &membership.home_procs;
    if let Err(e) = fs.write_to(home_file, &pid.to_string()) {
        notes.push(format!(
            "{}; the environment's cgroup {} stays until `karapace-tui stop`",
            step_error("move the helper back to", home_procs, e),
            membership.dir
        ));
        return notes;
    }
    let name = membership.dir.rsplit('/').next().unwrap_or_default();
    match fs.rmdir_in(&membership.parent, name) {
        // EBUSY: other sessions (or the environment's init) are still inside; the last one
        // out removes it, or `stop` does.
        Ok(()) | Err(Errno::EBUSY | Errno::ENOENT) => {}
        Err(e) => notes
            .push(step_error("remove the environment's cgroup", &membership.dir, e).to_string()),
    }
    notes
}

/// [`enter`] for this process, into each of the plan's cgroups in turn; warnings go to stderr
/// (the session's). If one fails, the ones entered before are left again.
pub fn enter_plan_cgroups(limits: &Limits, create: bool) -> Result<Vec<Membership<fs::File>>> {
    let mut warn = |w: String| eprintln!("karapace-tui: warning: {w}");
    let mut entered = Vec::with_capacity(limits.cgroups.len());
    for cgroup in &limits.cgroups {
        let pid = std::process::id();
        match enter(&mut LinuxCgroupFs, cgroup, create, pid, &mut warn) {
            Ok(m) => entered.push(m),
            Err(e) => {
                leave_plan_cgroups(entered);
                return Err(e);
            }
        }
    }
    Ok(entered)
}

/// [`leave`] for this process, each cgroup in the reverse order; what the user should know
/// goes to stderr.
pub fn leave_plan_cgroups(memberships: Vec<Membership<fs::File>>) {
    for m in memberships.iter().rev() {
        for note in leave(&mut LinuxCgroupFs, m, std::process::id()) {
            eprintln!("karapace-tui: {note}");
        }
    }
}

/// Sets the plan's rlimits on this process (the program's, just before exec), soft and hard
/// limit alike, so the program cannot raise them again.
pub fn apply_rlimits(rlimits: &[Rlimit]) -> Result<()> {
    use nix::sys::resource::{setrlimit, Resource};
    for r in rlimits {
        let (resource, name) = match r.resource {
            RlimitResource::Nofile => (Resource::RLIMIT_NOFILE, "RLIMIT_NOFILE"),
            RlimitResource::Nproc => (Resource::RLIMIT_NPROC, "RLIMIT_NPROC"),
        };
        setrlimit(resource, r.limit, r.limit).map_err(|errno| SandboxError::Step {
            step: "rlimit",
            op: format!("setrlimit({name}, {})", r.limit),
            path: "the program's process".into(),
            errno,
            hint: "Only root may raise a hard limit (setrlimit(2)); lower the manifest's limit \
                   or raise the hard limit of the user (ulimit -H, limits.conf)"
                .into(),
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_weight_follows_runc_and_crun() {
        // The three points the formula is fitted through, and the kernel's raise of 1 to 2.
        assert_eq!(cpu_weight(1), 1);
        assert_eq!(cpu_weight(2), 1);
        assert_eq!(cpu_weight(1024), 100);
        assert_eq!(cpu_weight(262_144), 10_000);
        // The rest of opencontainers/cgroups' table (utils_test.go, v0.0.5): just inside
        // both ends.
        assert_eq!(cpu_weight(3), 2);
        assert_eq!(cpu_weight(262_143), 10_000);
        let mut last = 0;
        for shares in 1..=262_144 {
            let w = cpu_weight(shares);
            assert!((1..=10_000).contains(&w), "{shares} -> {w}");
            assert!(w >= last, "not monotonic at {shares}");
            last = w;
        }
    }

    fn limits() -> CgroupLimits {
        CgroupLimits {
            v1: None,
            hierarchy: "/sys/fs/cgroup".into(),
            dir: "/sys/fs/cgroup/karapace-abc".into(),
            enable: vec!["memory".into(), "pids".into()],
            memory_max: Some(32 << 20),
            cpu_weight: None,
            cpu_shares: None,
            pids_max: Some(20),
        }
    }

    fn fake() -> RecordingCgroupFs {
        let mut fs = RecordingCgroupFs::default();
        fs.files.insert(
            "/proc/self/cgroup".into(),
            "0::/user.slice/session-1.scope\n".into(),
        );
        fs.files.insert(
            "/sys/fs/cgroup/karapace-abc/memory.events".into(),
            "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n".into(),
        );
        fs
    }

    #[test]
    fn a_cold_start_sets_the_limits_before_it_moves_in() {
        let mut fs = fake();
        let mut warnings = Vec::new();
        let m = enter(&mut fs, &limits(), true, 42, &mut |w| warnings.push(w)).expect("enter");
        let w = |p: &str, v: &str| CgroupCall::Write(p.into(), v.into());
        assert_eq!(
            fs.calls,
            vec![
                CgroupCall::Read("/proc/self/cgroup".into()),
                CgroupCall::Open("/sys/fs/cgroup/user.slice/session-1.scope/cgroup.procs".into()),
                CgroupCall::Open("/sys/fs/cgroup".into()),
                w("/sys/fs/cgroup/cgroup.subtree_control", "+memory +pids"),
                CgroupCall::Mkdir("/sys/fs/cgroup/karapace-abc".into()),
                w("/sys/fs/cgroup/karapace-abc/memory.max", "33554432"),
                w("/sys/fs/cgroup/karapace-abc/memory.swap.max", "0"),
                w("/sys/fs/cgroup/karapace-abc/pids.max", "20"),
                w("/sys/fs/cgroup/karapace-abc/cgroup.procs", "42"),
                CgroupCall::Open("/sys/fs/cgroup/karapace-abc/memory.events".into()),
                CgroupCall::Read("/sys/fs/cgroup/karapace-abc/memory.events".into()),
            ]
        );
        assert!(warnings.is_empty());
        assert_eq!(
            m.home_procs.0,
            "/sys/fs/cgroup/user.slice/session-1.scope/cgroup.procs"
        );
        assert_eq!(m.events.as_ref().map(|e| e.before), Some(1));

        // Leaving: an OOM kill since is reported, the helper goes home, the cgroup goes.
        fs.calls.clear();
        fs.files.insert(
            "/sys/fs/cgroup/karapace-abc/memory.events".into(),
            "oom_kill 2\n".into(),
        );
        let notes = leave(&mut fs, &m, 42);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].contains("memory_limit_mb = 32"), "{notes:?}");
        assert!(notes[0].contains("killed 1 process"), "{notes:?}");
        assert_eq!(
            fs.calls[1..],
            [
                w(
                    "/sys/fs/cgroup/user.slice/session-1.scope/cgroup.procs",
                    "42"
                ),
                CgroupCall::Rmdir("/sys/fs/cgroup/karapace-abc".into()),
            ]
        );
    }

    #[test]
    fn a_leftover_cgroup_is_reused_and_a_busy_one_is_left_to_the_last_session() {
        let mut fs = fake();
        fs.fail
            .insert("/sys/fs/cgroup/karapace-abc".into(), Errno::EEXIST);
        let m = enter(&mut fs, &limits(), true, 42, &mut |_| {}).expect("enter");
        assert!(fs.calls.contains(&CgroupCall::Write(
            "/sys/fs/cgroup/karapace-abc/cgroup.procs".into(),
            "42".into()
        )));
        fs.fail
            .insert("/sys/fs/cgroup/karapace-abc".into(), Errno::EBUSY);
        fs.files.remove("/sys/fs/cgroup/karapace-abc/memory.events");
        fs.files.insert(
            "/sys/fs/cgroup/karapace-abc/memory.events".into(),
            "oom_kill 1\n".into(),
        );
        assert_eq!(leave(&mut fs, &m, 42), Vec::<String>::new());
    }

    #[test]
    fn a_joining_session_only_moves_in_unless_the_cgroup_is_gone() {
        let mut fs = fake();
        let mut c = limits();
        c.memory_max = None;
        enter(&mut fs, &c, false, 7, &mut |_| {}).expect("join");
        assert_eq!(
            fs.calls,
            vec![
                CgroupCall::Read("/proc/self/cgroup".into()),
                CgroupCall::Open("/sys/fs/cgroup/user.slice/session-1.scope/cgroup.procs".into()),
                CgroupCall::Open("/sys/fs/cgroup".into()),
                CgroupCall::Write(
                    "/sys/fs/cgroup/karapace-abc/cgroup.procs".into(),
                    "7".into()
                ),
            ]
        );
        // Missing: created as by a cold start. The first move fails, the second works.
        let mut fs = fake();
        fs.fail.insert(
            "/sys/fs/cgroup/karapace-abc/cgroup.procs".into(),
            Errno::ENOENT,
        );
        let err = enter(&mut fs, &c, false, 7, &mut |_| {}).expect_err("still missing");
        assert!(err.to_string().contains("cgroup.procs"), "{err}");
        assert!(fs
            .calls
            .contains(&CgroupCall::Mkdir("/sys/fs/cgroup/karapace-abc".into())));
    }

    #[test]
    fn failures_name_the_file_and_the_errno_and_missing_swap_accounting_warns() {
        let mut fs = fake();
        fs.fail.insert(
            "/sys/fs/cgroup/karapace-abc/memory.swap.max".into(),
            Errno::ENOENT,
        );
        let mut warnings = Vec::new();
        enter(&mut fs, &limits(), true, 1, &mut |w| warnings.push(w)).expect("enter");
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("may use swap"), "{warnings:?}");

        let mut fs = fake();
        fs.fail
            .insert("/sys/fs/cgroup/karapace-abc/pids.max".into(), Errno::EACCES);
        let err = enter(&mut fs, &limits(), true, 1, &mut |_| {}).expect_err("EACCES");
        let text = err.to_string();
        assert!(
            text.contains("pids.max") && text.contains("EACCES"),
            "{text}"
        );
        assert!(text.contains("doctor"), "{text}");
        assert!(
            !fs.calls
                .iter()
                .any(|c| matches!(c, CgroupCall::Write(p, _) if p.ends_with("cgroup.procs"))),
            "never moved into a cgroup whose limits are not all set"
        );
    }

    fn v1_memory() -> CgroupLimits {
        CgroupLimits {
            v1: Some("memory".into()),
            hierarchy: "/sys/fs/cgroup/memory".into(),
            dir: "/sys/fs/cgroup/memory/karapace-abc".into(),
            enable: Vec::new(),
            memory_max: Some(32 << 20),
            cpu_weight: None,
            cpu_shares: None,
            pids_max: None,
        }
    }

    /// A hybrid host's `/proc/self/cgroup`: `cpu,cpuacct` co-mounted, as systemd does.
    fn hybrid_fake() -> RecordingCgroupFs {
        let mut fs = RecordingCgroupFs::default();
        fs.files.insert(
            "/proc/self/cgroup".into(),
            "12:pids:/user.slice/user-0.slice/session-1.scope\n\
             4:cpu,cpuacct:/user.slice\n\
             3:memory:/user.slice/user-0.slice/session-1.scope\n\
             1:name=systemd:/user.slice/user-0.slice/session-1.scope\n\
             0::/user.slice/user-0.slice/session-1.scope\n"
                .into(),
        );
        fs.files.insert(
            "/sys/fs/cgroup/memory/karapace-abc/memory.oom_control".into(),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n".into(),
        );
        fs
    }

    #[test]
    fn a_v1_memory_cgroup_limits_memory_and_swap_and_counts_oom_kills() {
        let mut fs = hybrid_fake();
        let mut warnings = Vec::new();
        let m = enter(&mut fs, &v1_memory(), true, 42, &mut |w| warnings.push(w)).expect("enter");
        let w = |p: &str, v: &str| CgroupCall::Write(p.into(), v.into());
        let session = "/sys/fs/cgroup/memory/user.slice/user-0.slice/session-1.scope";
        assert_eq!(
            fs.calls,
            vec![
                CgroupCall::Read("/proc/self/cgroup".into()),
                CgroupCall::Open(format!("{session}/cgroup.procs")),
                CgroupCall::Open("/sys/fs/cgroup/memory".into()),
                CgroupCall::Mkdir("/sys/fs/cgroup/memory/karapace-abc".into()),
                w(
                    "/sys/fs/cgroup/memory/karapace-abc/memory.limit_in_bytes",
                    "33554432"
                ),
                w(
                    "/sys/fs/cgroup/memory/karapace-abc/memory.memsw.limit_in_bytes",
                    "33554432"
                ),
                w("/sys/fs/cgroup/memory/karapace-abc/cgroup.procs", "42"),
                CgroupCall::Open("/sys/fs/cgroup/memory/karapace-abc/memory.oom_control".into()),
                CgroupCall::Read("/sys/fs/cgroup/memory/karapace-abc/memory.oom_control".into()),
            ]
        );
        assert!(warnings.is_empty(), "{warnings:?}");

        fs.calls.clear();
        fs.files.insert(
            "/sys/fs/cgroup/memory/karapace-abc/memory.oom_control".into(),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n".into(),
        );
        let notes = leave(&mut fs, &m, 42);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(
            notes[0].contains(
                "reached its memory limit (memory_limit_mb = 32): the kernel's OOM killer \
                 killed 1 process"
            ),
            "{notes:?}"
        );
        assert_eq!(
            fs.calls[1..],
            [
                w(&format!("{session}/cgroup.procs"), "42"),
                CgroupCall::Rmdir("/sys/fs/cgroup/memory/karapace-abc".into()),
            ]
        );
    }

    #[test]
    fn v1_without_swap_accounting_warns_and_before_4_13_counts_limit_hits() {
        let mut fs = hybrid_fake();
        fs.fail.insert(
            "/sys/fs/cgroup/memory/karapace-abc/memory.memsw.limit_in_bytes".into(),
            Errno::ENOENT,
        );
        // Linux < 4.13: no `oom_kill` line, so memory.failcnt is watched instead.
        fs.files.insert(
            "/sys/fs/cgroup/memory/karapace-abc/memory.oom_control".into(),
            "oom_kill_disable 0\nunder_oom 0\n".into(),
        );
        fs.files.insert(
            "/sys/fs/cgroup/memory/karapace-abc/memory.failcnt".into(),
            "0\n".into(),
        );
        let mut warnings = Vec::new();
        let m = enter(&mut fs, &v1_memory(), true, 42, &mut |w| warnings.push(w)).expect("enter");
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("memory.memsw.limit_in_bytes does not exist")
                && warnings[0].contains("may use swap beyond its memory limit"),
            "{warnings:?}"
        );
        fs.files.insert(
            "/sys/fs/cgroup/memory/karapace-abc/memory.failcnt".into(),
            "7\n".into(),
        );
        let notes = leave(&mut fs, &m, 42);
        assert!(
            notes[0].contains("memory_limit_mb = 32) 7 time(s)")
                && notes[0].contains("does not count OOM kills"),
            "{notes:?}"
        );
    }

    #[test]
    fn v1_cpu_and_pids_find_their_own_hierarchys_line_and_write_the_native_values() {
        let cpu = CgroupLimits {
            v1: Some("cpu".into()),
            hierarchy: "/sys/fs/cgroup/cpu,cpuacct".into(),
            dir: "/sys/fs/cgroup/cpu,cpuacct/karapace-abc".into(),
            memory_max: None,
            cpu_shares: Some(512),
            pids_max: None,
            ..v1_memory()
        };
        assert_eq!(
            cpu.writes(),
            [(
                "/sys/fs/cgroup/cpu,cpuacct/karapace-abc/cpu.shares".to_string(),
                "512".to_string()
            )]
        );
        let mut fs = hybrid_fake();
        let m = enter(&mut fs, &cpu, false, 7, &mut |_| {}).expect("join");
        assert_eq!(
            m.home_procs.0,
            "/sys/fs/cgroup/cpu,cpuacct/user.slice/cgroup.procs"
        );
        assert!(m.events.is_none());

        let pids = CgroupLimits {
            v1: Some("pids".into()),
            hierarchy: "/sys/fs/cgroup/pids".into(),
            dir: "/sys/fs/cgroup/pids/karapace-abc".into(),
            memory_max: None,
            pids_max: Some(20),
            ..v1_memory()
        };
        assert_eq!(
            pids.writes(),
            [(
                "/sys/fs/cgroup/pids/karapace-abc/pids.max".to_string(),
                "20".to_string()
            )]
        );
        // A v1 hierarchy this process has no line for (not mounted when it started).
        let mut fs = hybrid_fake();
        fs.files.insert("/proc/self/cgroup".into(), "0::/\n".into());
        let err = enter(&mut fs, &pids, true, 7, &mut |_| {}).expect_err("no pids line");
        assert!(
            err.to_string()
                .contains("find the line of the `pids` controller in"),
            "{err}"
        );
    }

    #[test]
    fn limits_are_left_out_of_the_plan_when_there_are_none() {
        let json = serde_json::to_string(&Limits::default()).expect("json");
        assert_eq!(json, "{}");
        assert!(Limits::default().is_empty());
    }

    #[test]
    fn a_plan_refuses_a_cgroup_outside_its_hierarchy() {
        use crate::sandbox::tests::fixtures::rootless_spec;
        let mut plan = rootless_spec().plan();
        plan.limits.cgroups = vec![limits(), v1_memory()];
        plan.validate().expect("valid");
        for dir in ["/sys/fs/cgroup/../../etc", "/tmp/karapace-abc", "relative"] {
            plan.limits.cgroups = vec![
                limits(),
                CgroupLimits {
                    dir: dir.into(),
                    ..v1_memory()
                },
            ];
            assert!(plan.validate().is_err(), "{dir}");
        }
    }
}

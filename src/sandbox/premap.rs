//! A rootless cold start's user namespace, made ahead of stage 1 so that its maps are written
//! while the runtime and stage 1 do the rest of their work.
//!
//! A full subordinate range can only be mapped by newuidmap and newgidmap (user_namespaces(7):
//! writing a range needs CAP_SETUID in the parent namespace), two setuid programs that take
//! 0.9 ms each from exec to exit on the test machine (the dynamic loader in secure mode, four
//! libraries), and they can only write the maps of a process that is already in the new
//! namespace. Stage 1 used to create its namespace and then wait for them: 1.75 ms (median of
//! 30 in a perf timeline) of every rootless cold start in which nothing else happened.
//!
//! Here a throwaway child of the runtime, the *seed*, creates the namespace as soon as the
//! runtime knows it will most likely start the environment cold, and the runtime starts both
//! tools for the seed at once and goes on: the plan, the init record's lock, the overlay's work
//! directory, the cgroups. Stage 1 then enters the seed's namespace with setns(2) instead of
//! unsharing one (its `unshare_user_ns` step: a new namespace all the same, made for this
//! sandbox only). A forked stage 1 waits for "maps written" over the id-map channel there, as
//! before ([`super::sys::IdMapSync`]); when the runtime is stage 1 itself (`helper.rs`,
//! `inline_cold_start`), it goes on without the maps, forks PID 1, and PID 1 waits right before
//! its overlay mount (`SandboxPlan::steps_awaiting_maps_in_pid1`).
//!
//! setns(2) into a user namespace needs CAP_SYS_ADMIN in it, which its owner has from the
//! parent namespace (user_namespaces(7), "Capabilities"): stage 1 runs as the same user as
//! the seed, in the namespace the seed left. A descriptor of the namespace, opened by the
//! runtime before it forks stage 1, keeps it alive once the seed is gone.
//!
//! The seed does nothing else; the runtime kills it once the tools have finished, and it dies
//! with the runtime (`PR_SET_PDEATHSIG`). It is never a process left behind: unlike a
//! long-lived "pause" process that keeps a user namespace for later runs, nothing outlives the
//! session. Should the environment turn out to be running (another session started it in
//! between), stage 1 joins it as usual and closes the namespace made ahead unused.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use nix::errno::Errno;
use nix::sched::CloneFlags;
use nix::sys::signal::Signal;

use super::error::{Result, SandboxError};
use super::fork::{finish_child, fork, ForkError, Forked, ThreadCount};
use super::forked::ForkedProcess;
use super::idmap::{self, IdMapTools};
use super::plan::IdRange;
use super::spawn::MapTool;

/// The seed's "my namespace exists".
const READY: u8 = b'n';

/// A user namespace made ahead, its maps being written.
#[derive(Debug)]
pub struct Premapped {
    seed: ForkedProcess,
    /// `/proc/SEED/ns/user`: stage 1 enters the namespace through its copy of it.
    ns: OwnedFd,
    tools: Vec<MapTool>,
}

impl Premapped {
    /// Forks the seed and starts newuidmap and newgidmap for it with `uid_map` and `gid_map`.
    ///
    /// `Ok(None)`: nothing was made ahead, and stage 1 makes its namespace itself, as without
    /// this module. That is the case when this process runs more than one thread (it may not
    /// fork), and when the seed could not create the namespace: stage 1 then fails at the same
    /// step with the full explanation and fix (user namespaces disabled, and so on).
    pub fn start(
        tools: &IdMapTools,
        uid_map: &[IdRange],
        gid_map: &[IdRange],
    ) -> Result<Option<Premapped>> {
        let threads = ThreadCount::open().map_err(SandboxError::io(
            "open (to count this process's threads)",
            "/proc/self/status",
        ))?;
        let (ours, theirs) = UnixStream::pair().map_err(SandboxError::io(
            "create the channel to the user namespace's seed",
            "socketpair",
        ))?;
        let parent = nix::unistd::getpid().as_raw();
        let pid = match fork(&threads) {
            Ok(Forked::Child) => {
                drop(ours);
                finish_child(1, || seed(parent, &theirs))
            }
            Ok(Forked::Parent(pid)) => pid,
            Err(ForkError::Threaded(_)) => return Ok(None),
            Err(ForkError::Count(e)) => {
                return Err(SandboxError::io(
                    "count this process's threads in",
                    "/proc/self/status",
                )(e))
            }
            Err(ForkError::Fork(errno)) => {
                return Err(SandboxError::helper("fork the user namespace's seed")(
                    errno,
                ))
            }
        };
        drop(theirs);
        let mut seed = ForkedProcess::new(pid);
        let ready = read_byte(&ours);
        if !matches!(ready, Ok(Some(READY))) {
            // Reaped at once: it has exited or is about to (EOF), or is killed.
            let killed = seed.kill();
            let waited = seed.wait();
            return match (ready, killed.and(waited.map(drop))) {
                (Err(e), _) | (_, Err(e)) => Err(SandboxError::io(
                    "hear from the user namespace's seed over",
                    "a socket",
                )(e)),
                (Ok(_), Ok(())) => Ok(None),
            };
        }
        match Premapped::open(seed.id(), tools, uid_map, gid_map) {
            Ok((ns, tools)) => Ok(Some(Premapped { seed, ns, tools })),
            Err(e) => {
                // The error says what failed; the seed has no more use.
                drop(seed.kill());
                drop(seed.wait());
                Err(e)
            }
        }
    }

    /// The seed's namespace descriptor, then the two tools.
    fn open(
        pid: u32,
        tools: &IdMapTools,
        uid_map: &[IdRange],
        gid_map: &[IdRange],
    ) -> Result<(OwnedFd, Vec<MapTool>)> {
        let path = format!("/proc/{pid}/ns/user");
        let ns = OwnedFd::from(
            File::open(&path).map_err(SandboxError::io("open the namespace made ahead", &path))?,
        );
        let uids = MapTool::start(&tools.newuidmap, pid, uid_map, idmap::SUBUID)?;
        match MapTool::start(&tools.newgidmap, pid, gid_map, idmap::SUBGID) {
            Ok(gids) => Ok((ns, vec![uids, gids])),
            Err(e) => {
                // Waited for, so that no zombie stays; the start failure is the news.
                drop(uids.finish());
                Err(e)
            }
        }
    }

    /// The namespace's descriptor, for stage 1 to keep across its fork.
    pub fn ns_fd(&self) -> RawFd {
        self.ns.as_raw_fd()
    }

    /// A descriptor of its own to the namespace, for a process that enters it while the
    /// tools may still run.
    pub fn ns_clone(&self) -> Result<OwnedFd> {
        self.ns
            .try_clone()
            .map_err(SandboxError::io("keep", "the namespace made ahead"))
    }

    /// Waits for both tools (an error names the one that failed and how to fix it), then ends
    /// the seed. Returns the namespace's descriptor, which keeps it alive (as does stage 1's
    /// copy, when stage 1 was forked with it).
    pub fn finish(mut self) -> Result<OwnedFd> {
        let results: Vec<Result<()>> = self.tools.drain(..).map(MapTool::finish).collect();
        results.into_iter().collect::<Result<()>>()?;
        self.ns
            .try_clone()
            .map_err(SandboxError::io("keep", "the namespace made ahead"))
    }
}

impl Drop for Premapped {
    /// The seed only waits: SIGKILL is its normal end. Tools not waited for by
    /// [`Premapped::finish`] (an error came first) are reaped here.
    fn drop(&mut self) {
        for tool in self.tools.drain(..) {
            drop(tool.finish());
        }
        // Neither can fail in a way worth a message: the seed is our child, and the kill of
        // one that has gone already is skipped by `ForkedProcess`.
        drop(self.seed.kill());
        drop(self.seed.wait());
    }
}

/// One byte, or `None` at EOF; retried on EINTR.
fn read_byte(mut stream: &UnixStream) -> io::Result<Option<u8>> {
    let mut byte = [0u8; 1];
    loop {
        match stream.read(&mut byte) {
            Ok(0) => return Ok(None),
            Ok(_) => return Ok(Some(byte[0])),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// The seed: creates the namespace, says so, and waits to be killed. Its exit code is never
/// read; the runtime learns of a failure from the closed channel.
fn seed(parent: i32, channel: &UnixStream) -> u8 {
    // Dies with the runtime, which may be killed before it ends us (prctl(2)); the check
    // closes the race with a runtime that died before the call took effect.
    let tied = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).and_then(|()| {
        match nix::unistd::getppid().as_raw() == parent {
            true => Ok(()),
            false => Err(Errno::ESRCH),
        }
    });
    if tied.is_err() || nix::sched::unshare(CloneFlags::CLONE_NEWUSER).is_err() {
        return 1;
    }
    let mut stream = channel;
    if stream.write_all(&[READY]).is_err() {
        return 1;
    }
    // The runtime never writes: this returns when it has gone (or at EOF), if not killed first.
    match read_byte(channel) {
        Ok(_) => 0,
        Err(_) => 1,
    }
}

//! The native rootless sandbox: user, mount, PID, UTS, IPC (and network) namespaces with an
//! overlayfs root, set up by a small single-threaded helper process.
//!
//! - [`plan`]: [`SandboxPlan`], the ordered [`SetupStep`]s (data, serde/JSON), and its rules;
//!   [`builder`]: the standard plan for an environment ([`RootfsSpec`]); [`idmap`]: which ids
//!   a rootless sandbox maps (a full subordinate range, or only the caller's own ids, and why).
//! - [`sys`]: the only place syscalls happen — the [`Sys`] trait, [`LinuxSys`] (nix) and
//!   [`RecordingSys`] (records calls, fails on demand).
//! - [`exec`]: runs steps with a `Sys`, in order, aborting at the first failure with an error
//!   naming the step, the path and the errno ([`SandboxError`]).
//! - [`helper`]: `karapace-tui __sandbox-init`, dispatched by `main` before any thread starts
//!   (stage 1 creates the namespaces and forks PID 1, which makes its own mount namespace,
//!   builds the root, then forks the program and reaps; the single-threaded CLI is stage 1
//!   itself for a cold start, `forked.rs`); [`program`]: those forks and the program's exec; [`fork`]: the one
//!   module with unsafe code, fork(2) for a verified single-threaded process; [`supervise`]:
//!   signal forwarding and reaping.
//! - [`join`]: several sessions in one running environment — the init record and its lock,
//!   and joining the running init's namespaces with `setns`.
//! - [`premap`]: a rootless cold start's user namespace made ahead by a throwaway child, so
//!   that newuidmap/newgidmap run while the rest of the start-up does.
//! - [`spawn`]: how the runtime starts a plan ([`spawn()`], or [`PlanFile`] + [`command`]) or
//!   a session of an environment ([`spawn_session`]), and writes a subordinate range's id maps
//!   from outside with newuidmap/newgidmap.
//! - [`check`]: run-time probes of what the kernel allows (and whether fuse-overlayfs can be
//!   used); [`netlink`]: the rtnetlink request that brings `lo` up.
//! - [`limits`]: resource limits — the environment's cgroup v2 directory (created, joined and
//!   removed by the helpers outside the namespaces) and the rlimits set just before exec.
//! - [`remove`]: deleting trees that hold files of subordinate ids; [`archive`]: packing and
//!   unpacking such trees (an environment's overlay upper) with their owners and whiteouts.
//! - [`environ`]: PID 1 wipes the environment block it inherited from the runtime, which
//!   the program could otherwise read in `/proc/1/environ`.
//! - [`volatile`]: clearing a `volatile` overlay's marker before the work directory's next
//!   mount.
//!
//! Invariants: no unsafe code outside [`fork`]; the process that unshares is always the fresh helper, never the
//! (threaded) TUI; nothing propagates to the host's mounts (`/` is made a slave first); the
//! helper dies with its parent (`PR_SET_PDEATHSIG`), and the sandbox with the helper (its PID 1)
//! — except an init that outlives its own session for joined ones, which ends when the last
//! of them does (or when `stop` kills it).

pub mod archive;
pub mod builder;
pub mod check;
pub mod environ;
pub mod error;
pub mod exec;
pub mod fork;
pub mod forked;
pub mod helper;
pub mod idmap;
pub mod join;
pub mod limits;
pub mod netlink;
pub mod plan;
pub mod premap;
pub mod program;
pub mod remove;
pub mod spawn;
pub mod supervise;
pub mod sys;
pub mod volatile;

#[cfg(test)]
mod tests;

pub use builder::{Bind, IdMapping, RootfsSpec};
pub use error::{SandboxError, EXIT_CANNOT_EXECUTE, EXIT_NOT_FOUND, EXIT_SETUP_FAILED};
pub use exec::apply_steps;
pub use forked::{start_session, RunningSession, EXEC_HELPER_VAR};
pub use plan::{IdRange, OverlayDriver, SandboxPlan, SetupStep, Stage};
pub use spawn::{command, helper_args, spawn, spawn_session, PlanFile, SandboxStdio, Session};
pub use sys::{Call, FileKind, IdMapSync, LinuxSys, ProgramExit, RecordingSys, Sys};

/// The hidden first argument that makes `karapace-tui` run as the sandbox helper.
pub const HELPER_VERB: &str = "__sandbox-init";

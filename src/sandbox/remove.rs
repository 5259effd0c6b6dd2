//! Deleting trees that hold files of subordinate ids.
//!
//! A sandbox with a full subordinate range can give files to other ids (apt's `_apt`
//! directories, files dpkg chowns to system users). In the environment's `upper/` those belong
//! to host ids such as 100041, which the user can neither delete nor, in a mode 0700
//! directory, even list. Inside a user namespace with the same mapping they are mapped, and the
//! namespace's root — the user — may delete them: CAP_DAC_OVERRIDE and CAP_FOWNER apply to
//! inodes whose owner and group are mapped (capabilities(7), user_namespaces(7)).

use std::ffi::OsString;
use std::io;
use std::path::Path;

use super::builder::IdMapping;
use super::error::{Result, SandboxError};
use super::idmap;
use super::plan::SandboxPlan;
use super::spawn::{self, PlanFile, SandboxStdio};

/// Called after a plain removal of `tree` failed with `denied` (EACCES or EPERM): removes it as
/// root of a user namespace with this user's subordinate mapping, through the running binary's
/// `__sandbox-init --remove-tree` (plan file in `plan_dir`). Without a full range the error
/// says why and how to remove the tree instead; every error names the tree.
pub fn remove_as_subordinate_root(
    tree: &Path,
    plan_dir: &Path,
    denied: io::Error,
) -> io::Result<()> {
    let shown = tree.display();
    let as_root = format!("or remove it as root: `sudo rm -rf {shown}`");
    let choice = idmap::detect();
    match (&choice.mapping, &choice.fallback) {
        (IdMapping::Subordinate { .. }, _) => {}
        (IdMapping::SingleId { .. }, Some(f)) => {
            return Err(io::Error::new(
                denied.kind(),
                format!(
                    "{denied}; {shown} may hold files that a sandbox gave to subordinate ids, \
                     and removing those needs a full subordinate id range, which is not \
                     available ({}); fix: {}, {as_root}",
                    f.why, f.fix
                ),
            ));
        }
        _ => return Err(denied),
    }
    let failed = |e: String| {
        io::Error::new(
            denied.kind(),
            format!(
                "{denied}; removing {shown} inside a user namespace with the subordinate ids \
                 failed too: {e}; check `karapace-tui doctor`, {as_root}"
            ),
        )
    };
    let helper = std::env::current_exe()
        .map_err(|e| failed(format!("cannot find the karapace-tui binary: {e}")))?;
    remove_in_userns(&helper, plan_dir, tree, &choice.mapping).map_err(|e| failed(e.to_string()))
}

/// Runs `helper __sandbox-init --remove-tree` for `tree` in a user namespace with `mapping`.
pub fn remove_in_userns(
    helper: &Path,
    plan_dir: &Path,
    tree: &Path,
    mapping: &IdMapping,
) -> Result<()> {
    run_in_userns(
        helper,
        plan_dir,
        "--remove-tree",
        &[tree.as_os_str().to_owned()],
        mapping,
        &format!("remove {}", tree.display()),
    )
}

/// Runs `helper __sandbox-init VERB PLAN_FILE ARGS…` with a plan of only `mapping`'s user
/// namespace steps and waits for it; `what` names the work in the error.
pub(crate) fn run_in_userns(
    helper: &Path,
    plan_dir: &Path,
    verb: &str,
    args: &[OsString],
    mapping: &IdMapping,
    what: &str,
) -> Result<()> {
    let plan = SandboxPlan {
        steps: mapping.steps(),
        argv: Vec::new(),
        env: Vec::new(),
        cwd: "/".into(),
        limits: Default::default(),
    };
    let file = PlanFile::write_unchecked(&plan, plan_dir)?;
    let child = spawn::start(
        helper,
        &[verb.into()],
        &plan,
        file,
        args,
        SandboxStdio::captured(),
    )?;
    let out = child
        .wait_with_output()
        .map_err(SandboxError::io("wait for", helper.display().to_string()))?;
    if out.status.success() {
        return Ok(());
    }
    Err(SandboxError::HelperFailed {
        what: what.to_string(),
        status: out.status.to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    })
}

//! Packing an environment's overlay upper directory into a tar file and back, for `archive`
//! and `unarchive` of namespace environments.
//!
//! What overlayfs reads from an upper directory must survive: whiteouts (0/0 character
//! devices), opaque and redirect markers (`trusted.overlay.*` xattrs as real root,
//! `user.overlay.*` for a rootless overlay mounted with `userxattr`), owners and modes
//! ([`crate::layer`]'s `PackMode::Overlay`). A rootless upper holds files owned by the user's
//! subordinate ids, which the user can neither read nor recreate on the host: the work then
//! runs in the helper (`__sandbox-init --pack-tree` / `--unpack-tree`) as root of a user
//! namespace with the same mapping as the environment's sessions, where those ids are mapped
//! and CAP_DAC_READ_SEARCH, CAP_CHOWN and CAP_FOWNER apply to them (user_namespaces(7)). Real
//! root needs no namespace and does it in process.

use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};

use super::builder::IdMapping;
use super::error::{Result, SandboxError};
use super::idmap;
use super::remove::run_in_userns;
use crate::layer::{self, PackMode};

/// Packs `trees` (absolute directories, each stored under its file name) into the new tar file
/// `out`, in a user namespace with this user's mapping unless real root. `plan_dir` holds the
/// helper's plan file.
pub fn pack(trees: &[PathBuf], out: &Path, plan_dir: &Path) -> Result<()> {
    match idmap::detect().mapping {
        IdMapping::HostRoot => pack_here(trees, out),
        mapping => {
            let mut args: Vec<OsString> = vec![out.as_os_str().to_owned()];
            args.extend(trees.iter().map(|t| t.as_os_str().to_owned()));
            let what = format!("pack {} into {}", shown(trees), out.display());
            run_in_userns(&helper()?, plan_dir, "--pack-tree", &args, &mapping, &what)
        }
    }
}

/// Unpacks the tar file `input` (written by [`pack`]) into the existing directory `dest`, in
/// a user namespace with this user's mapping unless real root.
pub fn unpack(input: &Path, dest: &Path, plan_dir: &Path) -> Result<()> {
    match idmap::detect().mapping {
        IdMapping::HostRoot => unpack_here(input, dest),
        mapping => {
            let args = [input.as_os_str().to_owned(), dest.as_os_str().to_owned()];
            let what = format!("unpack {} into {}", input.display(), dest.display());
            run_in_userns(
                &helper()?,
                plan_dir,
                "--unpack-tree",
                &args,
                &mapping,
                &what,
            )
        }
    }
}

/// [`pack`] in this process, with whatever ids it has.
pub(crate) fn pack_here(trees: &[PathBuf], out: &Path) -> Result<()> {
    let shown_out = out.display().to_string();
    let mut file = File::create(out).map_err(SandboxError::io("create", shown_out.clone()))?;
    layer::pack_trees(trees, &mut file, PackMode::Overlay)
        .map_err(SandboxError::io("pack into", shown_out.clone()))?;
    // The caller stores the file as an object and deletes the tree: it must be on disk first.
    file.sync_all().map_err(SandboxError::io("sync", shown_out))
}

/// [`unpack`] in this process, with whatever ids it has.
pub(crate) fn unpack_here(input: &Path, dest: &Path) -> Result<()> {
    let mut file =
        File::open(input).map_err(SandboxError::io("open", input.display().to_string()))?;
    layer::unpack_into(&mut file, dest, PackMode::Overlay)
        .map_err(SandboxError::io("unpack into", dest.display().to_string()))
}

fn helper() -> Result<PathBuf> {
    std::env::current_exe().map_err(SandboxError::io(
        "find the karapace-tui binary",
        "/proc/self/exe",
    ))
}

fn shown(trees: &[PathBuf]) -> String {
    let names: Vec<String> = trees.iter().map(|t| t.display().to_string()).collect();
    names.join(", ")
}

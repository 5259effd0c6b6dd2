//! Bind mounts and mount points, for the executor in `exec.rs`.
//!
//! A bind is made in two steps: the bind itself, then mount_setattr(2) adding `nosuid` (and
//! `nodev`, and `ro` when asked) to it and, for a recursive bind, to every mount below it, in
//! one call. Attributes are added, never restated, so the flags the host locked on a mount (a
//! user namespace may not clear them, mount(2) "EPERM") need not be read first. On kernels
//! before 5.12 (`ENOSYS`) we fall back to bubblewrap's `bind_mount` way: read the flags with
//! statvfs, `MS_BIND|MS_REMOUNT` with them plus ours, once per submount listed in mountinfo.
//! A read-only bind is checked afterwards with statvfs either way: asking is not enough, the
//! kernel must report `ST_RDONLY`.

use nix::errno::Errno;
use nix::mount::MsFlags;

use super::{fail, BindOpts, Executor};
use crate::sandbox::error::{Result, SandboxError};
use crate::sandbox::sys::{FileKind, MountAttrs};

impl Executor<'_> {
    /// Binds `source` on `target`, creating the mount point (a directory or an empty file,
    /// following what `source` is) under the new root if needed.
    pub(super) fn bind(
        &mut self,
        step: &'static str,
        source: &str,
        target: &str,
        opts: BindOpts,
    ) -> Result<()> {
        let kind = self
            .sys
            .file_kind(source, true)
            .map_err(fail(step, "stat", source))?
            .ok_or_else(|| fail(step, "stat bind source", source)(Errno::ENOENT))?;
        let want = if kind == FileKind::Dir {
            FileKind::Dir
        } else {
            FileKind::File
        };
        self.ensure_mount_point(step, target, want)?;
        self.bind_at(step, source, target, opts)
    }

    /// Binds onto an existing mount point, then restricts it (every submount too when the
    /// bind is recursive).
    pub(super) fn bind_at(
        &mut self,
        step: &'static str,
        source: &str,
        target: &str,
        opts: BindOpts,
    ) -> Result<()> {
        let mut flags = MsFlags::MS_BIND | MsFlags::MS_SILENT;
        let mut op = format!("mount({source}, MS_BIND)");
        if opts.recursive {
            flags |= MsFlags::MS_REC;
            op = format!("mount({source}, MS_BIND|MS_REC)");
        }
        self.sys
            .mount(Some(source), target, None, flags, None)
            .map_err(fail(step, &op, target))?;
        if !self.no_mount_setattr {
            let attrs = MountAttrs {
                read_only: opts.read_only,
                nosuid: true,
                nodev: !opts.devices,
            };
            match self.sys.mount_setattr(target, attrs, opts.recursive) {
                Ok(()) => return self.verify_read_only(step, target, opts),
                Err(Errno::ENOSYS) => self.no_mount_setattr = true,
                Err(errno) => {
                    let rec = if opts.recursive { ", AT_RECURSIVE" } else { "" };
                    let op = format!("mount_setattr({:?}{rec})", attrs.ms_flags());
                    return Err(fail(step, &op, target)(errno));
                }
            }
        }
        self.restrict(step, target, opts, false)?;
        if opts.recursive && opts.read_only {
            for sub in self.submounts(step, target)? {
                self.restrict(step, &sub, opts, true)?;
            }
        }
        Ok(())
    }

    /// A read-only bind must be reported read-only by the kernel (statvfs `ST_RDONLY`).
    fn verify_read_only(&mut self, step: &'static str, target: &str, opts: BindOpts) -> Result<()> {
        if !opts.read_only {
            return Ok(());
        }
        let now = self
            .sys
            .mount_flags(target)
            .map_err(fail(step, "statvfs", target))?;
        if now.contains(MsFlags::MS_RDONLY) {
            Ok(())
        } else {
            Err(SandboxError::NotReadOnly {
                step,
                path: target.to_string(),
            })
        }
    }

    /// Without mount_setattr: remounts `target` with `nosuid` (+`nodev` unless devices, +`ro`
    /// if read-only) on top of its current flags, then verifies read-only. A submount we may not even look at
    /// (`EACCES`) is skipped, as bubblewrap does: the sandbox cannot reach it either.
    fn restrict(
        &mut self,
        step: &'static str,
        target: &str,
        opts: BindOpts,
        submount: bool,
    ) -> Result<()> {
        let current = match self.sys.mount_flags(target) {
            Err(Errno::EACCES) if submount => return Ok(()),
            other => other.map_err(fail(step, "statvfs", target))?,
        };
        let mut wanted = current | MsFlags::MS_NOSUID;
        if !opts.devices {
            wanted |= MsFlags::MS_NODEV;
        }
        if opts.read_only {
            wanted |= MsFlags::MS_RDONLY;
        }
        if wanted != current {
            let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_SILENT | wanted;
            let op = format!("mount(MS_BIND|MS_REMOUNT, {wanted:?})");
            match self.sys.mount(None, target, None, flags, None) {
                Err(Errno::EACCES) if submount => return Ok(()),
                other => other.map_err(fail(step, &op, target))?,
            }
        }
        self.verify_read_only(step, target, opts)
    }

    /// Mount points strictly below `target`, from `/proc/self/mountinfo`, parents first.
    fn submounts(&mut self, step: &'static str, target: &str) -> Result<Vec<String>> {
        let text = self
            .sys
            .mountinfo()
            .map_err(fail(step, "read", "/proc/self/mountinfo"))?;
        let prefix = format!("{}/", target.trim_end_matches('/'));
        let mut subs: Vec<String> = Vec::new();
        for line in text.lines() {
            let Some(point) = line.split(' ').nth(4) else {
                continue;
            };
            let point = unescape_mountinfo(point);
            if point.starts_with(&prefix) && !subs.contains(&point) {
                subs.push(point);
            }
        }
        Ok(subs)
    }

    /// Makes sure `target` exists as `want` (a directory, or a non-directory for a file bind).
    /// Below the new root every component is checked with lstat, symlinks refused, and missing
    /// ones created; elsewhere the target must already exist.
    pub(super) fn ensure_mount_point(
        &mut self,
        step: &'static str,
        target: &str,
        want: FileKind,
    ) -> Result<()> {
        let target = target.trim_end_matches('/');
        let target = if target.is_empty() { "/" } else { target };
        let root = self
            .root
            .clone()
            .filter(|r| target == r || target.starts_with(&format!("{r}/")));
        let Some(root) = root else {
            let kind = self.kind(step, target)?;
            return self.check_kind(step, target, kind, want, true);
        };
        let comps: Vec<&str> = target[root.len()..]
            .split('/')
            .filter(|c| !c.is_empty())
            .collect();
        if comps.is_empty() {
            let kind = self.kind(step, &root)?;
            return self.check_kind(step, &root, kind, FileKind::Dir, true);
        }
        let mut path = root;
        for (i, comp) in comps.iter().enumerate() {
            path.push('/');
            path.push_str(comp);
            let last = i + 1 == comps.len();
            let kind = self.kind(step, &path)?;
            match kind {
                None if last && want != FileKind::Dir => self
                    .sys
                    .create_file(&path, 0o644)
                    .map_err(fail(step, "create mount point", &path))?,
                None => {
                    self.sys
                        .mkdir(&path, 0o755)
                        .map_err(fail(step, "mkdir mount point", &path))?
                }
                Some(_) => {
                    let want_here = if last { want } else { FileKind::Dir };
                    self.check_kind(step, &path, kind, want_here, last)?;
                }
            }
        }
        Ok(())
    }

    fn kind(&mut self, step: &'static str, path: &str) -> Result<Option<FileKind>> {
        self.sys
            .file_kind(path, false)
            .map_err(fail(step, "lstat", path))
    }

    fn check_kind(
        &mut self,
        step: &'static str,
        path: &str,
        kind: Option<FileKind>,
        want: FileKind,
        last: bool,
    ) -> Result<()> {
        match (kind, want) {
            (None, _) => Err(fail(step, "find mount point", path)(Errno::ENOENT)),
            (Some(FileKind::Symlink), _) => Err(SandboxError::SymlinkMountPoint {
                step,
                path: path.to_string(),
            }),
            (Some(FileKind::Dir), FileKind::Dir) => Ok(()),
            (Some(FileKind::Dir), _) if last => {
                Err(fail(step, "use as a file mount point", path)(Errno::EISDIR))
            }
            (Some(FileKind::File | FileKind::Other), w) if w != FileKind::Dir && last => Ok(()),
            _ => Err(fail(step, "use as a directory mount point", path)(
                Errno::ENOTDIR,
            )),
        }
    }
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo` (proc(5)).
pub fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let oct = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match oct {
            Some(d) => {
                let v = d.iter().fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
                out.push(u8::try_from(v).unwrap_or(b'?'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

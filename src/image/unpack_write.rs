//! The half of unpacking that touches the disk: creating each entry safely in `dest`, and the
//! final pass over directories. See the invariants in the parent module's doc.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::{self, DirBuilder, File};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use nix::errno::Errno;
use nix::sys::stat::{Mode, UtimensatFlags};
use nix::sys::time::TimeSpec;
use tar::EntryType;

use super::entry::{check_length, display_name, is_supported, safe_components, Member};
use super::{
    hostile, io_err, nix_err, Result, SkipReason, Skipped, UnpackError, UnpackOptions,
    UnpackReport, COPY_BUF,
};
use crate::image::tree::{self, bytes_path, remove_subtree, TreeHasher, TreeKind, TreeRecord};

/// Final metadata of a directory, applied at the end.
struct DirMeta {
    mode: u32,
    mtime: Option<u64>,
}

pub(super) struct Unpacker<'a> {
    dest: &'a Path,
    opts: &'a UnpackOptions,
    hasher: TreeHasher,
    /// Every directory created, by relative path bytes; iterated in reverse (deepest first).
    dirs: BTreeMap<Vec<u8>, DirMeta>,
    /// Paths of device nodes skipped, so that hard links to them are skipped too.
    skipped_nodes: BTreeMap<Vec<u8>, ()>,
    skipped: Vec<Skipped>,
    entries: u64,
    files: u64,
    bytes: u64,
    buf: Vec<u8>,
}

/// An entry's destination: its name for messages, path relative to `dest`, and full path.
struct Target {
    name: String,
    rel: Vec<u8>,
    path: PathBuf,
}

impl Target {
    fn rel_path(&self) -> PathBuf {
        bytes_path(&self.rel).to_path_buf()
    }
}

impl<'a> Unpacker<'a> {
    pub(super) fn new(dest: &'a Path, opts: &'a UnpackOptions) -> Self {
        Unpacker {
            dest,
            opts,
            hasher: TreeHasher::new(),
            dirs: BTreeMap::new(),
            skipped_nodes: BTreeMap::new(),
            skipped: Vec::new(),
            entries: 0,
            files: 0,
            bytes: 0,
            buf: vec![0; COPY_BUF],
        }
    }

    pub(super) fn unpack_entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<()> {
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            return Ok(());
        }
        let member = Member::read(entry)?;
        let name = &member.name;
        let comps = safe_components(&member.raw_path).map_err(|reason| hostile(name, reason))?;
        check_length(self.dest, name, member.raw_path.len(), &comps)?;
        self.entries += 1;
        let is_dir = kind.is_dir() || (kind.is_file() && member.raw_path.ends_with(b"/"));
        let unsupported = || UnpackError::Unsupported {
            entry: name.clone(),
            what: format!("tar entry of type {:?}", kind.as_byte() as char),
        };
        // Refuse unknown types (volume labels, multi-volume continuations …) before any write.
        if !is_supported(kind) {
            return Err(unsupported());
        }
        let Some((_, parents)) = comps.split_last() else {
            return if is_dir {
                Ok(())
            } else {
                Err(hostile(
                    name,
                    "the entry names the destination directory itself",
                ))
            };
        };
        self.prepare_parents(name, parents)?;
        let rel = comps.join(&b'/');
        let target = Target {
            name: name.clone(),
            path: self.dest.join(bytes_path(&rel)),
            rel,
        };
        remove_subtree(&mut self.skipped_nodes, &target.rel);
        match kind {
            _ if is_dir => self.make_dir(&target, &member),
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                self.write_file(&target, &member, entry)
            }
            EntryType::Symlink => self.make_symlink(&target, &member),
            EntryType::Link => self.make_hardlink(&target, &member),
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                self.make_node(&target, &member, kind)
            }
            _ => Err(unsupported()),
        }
    }

    /// Check that every existing parent of an entry is a real directory (never a symlink) and
    /// create missing ones (`0755` at the end, like tar does for implied directories).
    fn prepare_parents(&mut self, name: &str, parents: &[&[u8]]) -> Result<()> {
        let mut path = self.dest.to_path_buf();
        let mut rel: Vec<u8> = Vec::new();
        for comp in parents {
            path.push(OsStr::from_bytes(comp));
            if !rel.is_empty() {
                rel.push(b'/');
            }
            rel.extend_from_slice(comp);
            match fs::symlink_metadata(&path) {
                Ok(meta) if meta.is_dir() => {}
                Ok(meta) if meta.file_type().is_symlink() => {
                    return Err(hostile(
                        name,
                        format!("its parent `{}` is a symbolic link", display_name(&rel)),
                    ));
                }
                Ok(_) => {
                    return Err(hostile(
                        name,
                        format!("its parent `{}` is not a directory", display_name(&rel)),
                    ));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    mkdir_private(&path)?;
                    let meta = DirMeta {
                        mode: 0o755,
                        mtime: None,
                    };
                    self.dirs.insert(rel.clone(), meta);
                }
                Err(e) => return Err(io_err(&path, "inspect")(e)),
            }
        }
        Ok(())
    }

    /// Remove whatever a previous entry left at `t` so the new one is created fresh; returns
    /// true when a directory is there and `keep_dir` asks to reuse it.
    fn make_room(&mut self, t: &Target, keep_dir: bool) -> Result<bool> {
        let meta = match fs::symlink_metadata(&t.path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io_err(&t.path, "inspect")(e)),
        };
        if meta.is_dir() {
            if keep_dir {
                return Ok(true);
            }
            // std's remove_dir_all does not follow symlinks (CVE-2022-21658 fixed in 1.58.1).
            fs::remove_dir_all(&t.path).map_err(io_err(&t.path, "remove directory"))?;
        } else {
            // Unlinks a symlink itself, never what it points to.
            fs::remove_file(&t.path).map_err(io_err(&t.path, "remove"))?;
        }
        self.hasher.remove(&t.rel_path());
        remove_subtree(&mut self.dirs, &t.rel);
        remove_subtree(&mut self.skipped_nodes, &t.rel);
        Ok(false)
    }

    fn make_dir(&mut self, t: &Target, m: &Member) -> Result<()> {
        if !self.make_room(t, true)? {
            mkdir_private(&t.path)?;
        }
        self.apply_owner(&t.path, m)?;
        self.apply_xattrs(t, m)?;
        let meta = DirMeta {
            mode: m.mode,
            mtime: Some(m.mtime),
        };
        self.dirs.insert(t.rel.clone(), meta);
        Ok(())
    }

    fn write_file(&mut self, t: &Target, m: &Member, content: &mut dyn Read) -> Result<()> {
        self.make_room(t, false)?;
        let mut file = File::options()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&t.path)
            .map_err(io_err(&t.path, "create"))?;
        let mut hasher = blake3::Hasher::new();
        let mut written = 0u64;
        loop {
            let n = match content.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    let entry = Some(t.name.clone());
                    return Err(UnpackError::Archive { entry, source });
                }
            };
            hasher.update(&self.buf[..n]);
            file.write_all(&self.buf[..n])
                .map_err(io_err(&t.path, "write"))?;
            written += n as u64;
        }
        if written != m.size {
            // The tar crate's entry reader stops quietly at the end of the stream.
            let source = io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("truncated: {written} of {} bytes", m.size),
            );
            let entry = Some(t.name.clone());
            return Err(UnpackError::Archive { entry, source });
        }
        if !self.opts.rootless {
            std::os::unix::fs::fchown(&file, Some(m.uid), Some(m.gid))
                .map_err(io_err(&t.path, "change the owner of"))?;
        }
        self.apply_xattrs(t, m)?;
        file.set_permissions(fs::Permissions::from_mode(m.mode))
            .map_err(io_err(&t.path, "set the mode of"))?;
        file.set_times(file_times(m.mtime))
            .map_err(io_err(&t.path, "set the times of"))?;
        let mode = file.metadata().map_err(io_err(&t.path, "inspect"))?.mode();
        let kind = TreeKind::File {
            content: *hasher.finalize().as_bytes(),
        };
        self.record(t, kind, mode);
        self.files += 1;
        self.bytes += written;
        Ok(())
    }

    fn make_symlink(&mut self, t: &Target, m: &Member) -> Result<()> {
        let target = match &m.link {
            Some(link) if !link.is_empty() => link,
            _ => return Err(hostile(&t.name, "a symbolic link without a target")),
        };
        if target.contains(&0) {
            return Err(hostile(&t.name, "a NUL byte in the link target"));
        }
        self.make_room(t, false)?;
        std::os::unix::fs::symlink(OsStr::from_bytes(target), &t.path)
            .map_err(io_err(&t.path, "create symlink"))?;
        self.apply_owner(&t.path, m)?;
        self.apply_xattrs(t, m)?;
        set_times_nofollow(&t.path, m.mtime)?;
        let kind = TreeKind::Symlink {
            target: target.clone(),
        };
        self.record(t, kind, 0);
        Ok(())
    }

    fn make_hardlink(&mut self, t: &Target, m: &Member) -> Result<()> {
        let raw = m.link.as_deref().unwrap_or_default();
        let shown = display_name(raw);
        let refuse = |why: &str| hostile(&t.name, format!("hard link to `{shown}`: {why}"));
        let comps = safe_components(raw).map_err(refuse)?;
        check_length(self.dest, &t.name, raw.len(), &comps)?;
        let Some((_, parents)) = comps.split_last() else {
            return Err(refuse("that is the destination directory itself"));
        };
        let trel = comps.join(&b'/');
        if trel == t.rel {
            return Err(refuse("an entry cannot be a link to itself"));
        }
        if self.skipped_nodes.contains_key(&trel) {
            self.make_room(t, false)?;
            self.skipped_nodes.insert(t.rel.clone(), ());
            let target = bytes_path(&trel).to_path_buf();
            self.skip(t, SkipReason::LinkToSkipped { target });
            return Ok(());
        }
        if self.dirs.contains_key(&trel) {
            // Directory records reach the hasher only in `finish_dirs`; `dirs` knows them now.
            return Err(refuse("it is a directory"));
        }
        let rec = match self.hasher.get(bytes_path(&trel)) {
            None => return Err(refuse("no such entry has been unpacked before it")),
            Some(rec) if rec.kind == TreeKind::Dir => return Err(refuse("it is a directory")),
            Some(TreeRecord {
                kind: TreeKind::Symlink { .. },
                ..
            }) => return Err(refuse("it is a symbolic link")),
            Some(rec) => rec,
        };
        // Defence in depth: the record says what we made; check the disk agrees.
        self.check_parents(&t.name, parents)?;
        let tpath = self.dest.join(bytes_path(&trel));
        let tmeta = fs::symlink_metadata(&tpath).map_err(io_err(&tpath, "inspect"))?;
        if tmeta.is_dir() || tmeta.file_type().is_symlink() {
            return Err(refuse("it is a directory or a symbolic link"));
        }
        self.make_room(t, false)?;
        // link(2) without AT_SYMLINK_FOLLOW does not follow a symlink at the target.
        fs::hard_link(&tpath, &t.path).map_err(io_err(&t.path, "create hard link"))?;
        self.record(t, rec.kind, rec.mode);
        Ok(())
    }

    /// Like [`Self::prepare_parents`] for a path that must already exist: no creating.
    fn check_parents(&self, name: &str, parents: &[&[u8]]) -> Result<()> {
        let mut path = self.dest.to_path_buf();
        for comp in parents {
            path.push(OsStr::from_bytes(comp));
            let meta = fs::symlink_metadata(&path).map_err(io_err(&path, "inspect"))?;
            if !meta.is_dir() {
                let reason = format!(
                    "a parent of its link target, {}, is not a directory",
                    path.display()
                );
                return Err(hostile(name, reason));
            }
        }
        Ok(())
    }

    fn make_node(&mut self, t: &Target, m: &Member, kind: EntryType) -> Result<()> {
        self.make_room(t, false)?;
        let perm = Mode::from_bits_truncate(0o600);
        // Device nodes are never created, as root or not: the sandbox mounts its own /dev
        // over the image's, so a node would only be a way to reach host hardware from a
        // sandbox run as root, and skipping them everywhere gives root and rootless unpacks
        // of one image the same tree digest (and so the same environment ids).
        if kind != EntryType::Fifo {
            self.skipped_nodes.insert(t.rel.clone(), ());
            self.skip(t, SkipReason::DeviceNode);
            return Ok(());
        }
        nix::unistd::mkfifo(&t.path, perm).map_err(nix_err(&t.path, "create node"))?;
        self.apply_owner(&t.path, m)?;
        self.apply_xattrs(t, m)?;
        // The node was just created at this path by us, so following is harmless.
        fs::set_permissions(&t.path, fs::Permissions::from_mode(m.mode))
            .map_err(io_err(&t.path, "set the mode of"))?;
        set_times_nofollow(&t.path, m.mtime)?;
        let meta = fs::symlink_metadata(&t.path).map_err(io_err(&t.path, "inspect"))?;
        let rec_kind = tree::kind_of(&t.path, &meta).map_err(io_err(&t.path, "inspect"))?;
        self.record(t, rec_kind, meta.mode());
        Ok(())
    }

    fn apply_owner(&self, path: &Path, m: &Member) -> Result<()> {
        if self.opts.rootless {
            return Ok(());
        }
        std::os::unix::fs::lchown(path, Some(m.uid), Some(m.gid))
            .map_err(io_err(path, "change the owner of"))
    }

    fn apply_xattrs(&mut self, t: &Target, m: &Member) -> Result<()> {
        if !self.opts.xattrs {
            return Ok(());
        }
        for (name, value) in &m.xattrs {
            // xattr::set uses lsetxattr(2): a symlink gets the attribute, not its target.
            let Err(e) = xattr::set(&t.path, name, value) else {
                continue;
            };
            let tolerated = [Errno::EPERM, Errno::EACCES, Errno::EOPNOTSUPP]
                .map(|errno| errno as i32)
                .contains(&e.raw_os_error().unwrap_or(0));
            if !tolerated {
                return Err(io_err(&t.path, "set an extended attribute on")(e));
            }
            let why = SkipReason::Xattr {
                name: name.to_string_lossy().into_owned(),
                error: e.to_string(),
            };
            self.skip(t, why);
        }
        Ok(())
    }

    fn record(&mut self, t: &Target, kind: TreeKind, mode: u32) {
        let path = t.rel_path();
        self.hasher.add(TreeRecord { path, kind, mode });
    }

    fn skip(&mut self, t: &Target, why: SkipReason) {
        let path = t.rel_path();
        self.skipped.push(Skipped { path, why });
    }

    /// Give every directory its final mode and mtime, children before parents (reverse byte
    /// order puts `a/b` before `a`), and record it for the digest.
    pub(super) fn finish_dirs(&mut self) -> Result<()> {
        let dirs = std::mem::take(&mut self.dirs);
        for (rel, meta) in dirs.iter().rev() {
            let path = self.dest.join(bytes_path(rel));
            // O_NOFOLLOW|O_DIRECTORY: only ever change the directory we made, never a link.
            let dir = File::options()
                .read(true)
                .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&path)
                .map_err(io_err(&path, "open directory"))?;
            dir.set_permissions(fs::Permissions::from_mode(meta.mode & 0o7777))
                .map_err(io_err(&path, "set the mode of"))?;
            if let Some(mtime) = meta.mtime {
                dir.set_times(file_times(mtime))
                    .map_err(io_err(&path, "set the times of"))?;
            }
            let mode = dir.metadata().map_err(io_err(&path, "inspect"))?.mode();
            let path = bytes_path(rel).to_path_buf();
            self.hasher.add(TreeRecord {
                path,
                kind: TreeKind::Dir,
                mode,
            });
        }
        Ok(())
    }

    pub(super) fn into_report(self) -> UnpackReport {
        let (tree_digest, index) = self.hasher.finish_with_index();
        UnpackReport {
            entries: self.entries,
            files: self.files,
            bytes: self.bytes,
            skipped: self.skipped,
            tree_digest,
            index,
        }
    }
}

/// Directories are made owner-only while we fill them; [`Unpacker::finish_dirs`] sets the mode.
fn mkdir_private(path: &Path) -> Result<()> {
    DirBuilder::new()
        .mode(0o700)
        .create(path)
        .map_err(io_err(path, "create directory"))
}

fn file_times(secs: u64) -> fs::FileTimes {
    // checked: a hostile header's mtime must not overflow SystemTime (that would panic).
    let when = SystemTime::UNIX_EPOCH
        .checked_add(Duration::from_secs(secs))
        .unwrap_or(SystemTime::UNIX_EPOCH);
    fs::FileTimes::new().set_accessed(when).set_modified(when)
}

fn timespec(secs: u64) -> TimeSpec {
    TimeSpec::new(i64::try_from(secs).unwrap_or(i64::MAX), 0)
}

fn set_times_nofollow(path: &Path, mtime: u64) -> Result<()> {
    let ts = timespec(mtime);
    nix::sys::stat::utimensat(None, path, &ts, &ts, UtimensatFlags::NoFollowSymlink)
        .map_err(nix_err(path, "set the times of"))
}

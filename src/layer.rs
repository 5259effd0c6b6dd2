//! Packing a directory tree into a tar stream and back.
//!
//! Layers are stored as tar objects. In [`PackMode::Deterministic`] (build layers) every
//! entry's owner is 0:0, its mtime 0 and the entries are sorted by path bytes, so the same tree
//! always gives the same bytes and therefore the same digest whoever builds it and when.
//! [`PackMode::Preserve`] (archives of a user's environment) keeps owners and mtimes.
//! Device nodes are kept (overlayfs whiteouts are 0:0 character devices; the original dropped
//! them, which lost deletions), as are fifos, symlinks and permissions including set-id bits.
//! [`PackMode::Overlay`] (archives of an overlay's upper directory) is `Preserve` that also
//! carries extended attributes as PAX `SCHILY.xattr.NAME` records, and its unpacking restores
//! owners, device nodes, fifos and those attributes: what overlayfs reads from an upper
//! directory (overlayfs docs, "whiteouts and opaque directories").

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use tar::{Builder, EntryType, Header};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackMode {
    Deterministic,
    Preserve,
    Overlay,
}

/// The extended attributes an [`PackMode::Overlay`] archive keeps: overlayfs's own markers
/// (`trusted.overlay.*` as real root, `user.overlay.*` when mounted with `userxattr` in a user
/// namespace: opaque, redirect, origin …), the rest of `user.*` (set by programs in the
/// environment), and file capabilities (`security.capability`, set by packages such as
/// iputils-ping). Others — SELinux labels, ACLs (`system.posix_acl_*`), other `trusted.*` —
/// describe the host rather than the environment or cannot be restored by a user, so packing
/// refuses them instead of dropping them silently.
pub fn keeps_xattr(name: &str) -> bool {
    name.starts_with("trusted.overlay.")
        || name.starts_with("user.")
        || name == "security.capability"
}

/// How archives store an extended attribute: libarchive's PAX keyword, `LIBARCHIVE.xattr.`
/// followed by the name percent-encoded, with the value in base64 (bsdtar reads and writes the
/// same). The raw `SCHILY.xattr.NAME` keyword of GNU tar, which archives used to hold, is still
/// read, but no longer written: the tar crate reads PAX records line by line, so a binary value
/// holding a newline byte (overlayfs's `origin` file handles do, now and then) could not be
/// read back ("malformed pax extension"), and a name holding `=` would be cut short.
const PAX_XATTR_B64: &str = "LIBARCHIVE.xattr.";
const PAX_XATTR_RAW: &str = "SCHILY.xattr.";

/// libarchive's encoding of an xattr name in a PAX keyword: `%XX` for `%`, `=` and every byte
/// outside the printable ASCII range.
fn encode_xattr_name(name: &[u8]) -> String {
    let mut out = String::with_capacity(name.len());
    for &b in name {
        if !(33..=126).contains(&b) || b == b'%' || b == b'=' {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push(char::from(b));
        }
    }
    out
}

/// The inverse of [`encode_xattr_name`]; `None` for a malformed escape.
fn decode_xattr_name(encoded: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(encoded.len());
    let mut bytes = encoded.iter();
    while let Some(&b) = bytes.next() {
        if b == b'%' {
            let hex = [*bytes.next()?, *bytes.next()?];
            out.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
        } else {
            out.push(b);
        }
    }
    Some(out)
}

/// The PAX record (key, value) that stores the extended attribute `name` = `value` in an
/// archive: `LIBARCHIVE.xattr.<percent-encoded name>` and the value in base64.
pub(crate) fn xattr_record(name: &[u8], value: &[u8]) -> (String, String) {
    use base64::Engine as _;
    (
        format!("{PAX_XATTR_B64}{}", encode_xattr_name(name)),
        base64::engine::general_purpose::STANDARD.encode(value),
    )
}

/// An extended attribute's name and value, as bytes.
pub(crate) type Xattr = (Vec<u8>, Vec<u8>);

/// The extended attribute a PAX record stores, in either form (`LIBARCHIVE.xattr.*`, decoded,
/// or GNU tar's raw `SCHILY.xattr.*`): `None` for a record of something else, `Some(Err)`
/// naming what is malformed.
pub(crate) fn xattr_of_record(key: &[u8], value: &[u8]) -> Option<Result<Xattr, &'static str>> {
    if let Some(encoded) = key.strip_prefix(PAX_XATTR_B64.as_bytes()) {
        use base64::Engine as _;
        let Some(name) = decode_xattr_name(encoded) else {
            return Some(Err("its name"));
        };
        Some(
            base64::engine::general_purpose::STANDARD
                .decode(value)
                .map(|value| (name, value))
                .map_err(|_| "its base64 value"),
        )
    } else {
        let raw = key.strip_prefix(PAX_XATTR_RAW.as_bytes())?;
        Some(Ok((raw.to_vec(), value.to_vec())))
    }
}

/// Write `root`'s contents (not `root` itself) as a tar stream into `out`. Paths are relative.
pub fn pack_dir(root: &Path, out: &mut dyn Write, mode: PackMode) -> io::Result<()> {
    let mut builder = Builder::new(out);
    builder.follow_symlinks(false);
    walk(&mut builder, root, PathBuf::new(), mode)?;
    builder.finish()
}

/// Write each of `trees` (absolute paths of directories), itself and its contents, as a tar
/// stream into `out`, each under its file name: `/a/env/upper/x` becomes `upper/x`.
pub fn pack_trees(trees: &[PathBuf], out: &mut dyn Write, mode: PackMode) -> io::Result<()> {
    let mut builder = Builder::new(out);
    builder.follow_symlinks(false);
    for tree in trees {
        let (Some(parent), Some(name)) = (tree.parent(), tree.file_name()) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cannot pack {}: not a named directory", tree.display()),
            ));
        };
        if !append_entry(&mut builder, parent, Path::new(name), mode)? {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cannot pack {}: not a directory", tree.display()),
            ));
        }
        walk(&mut builder, parent, PathBuf::from(name), mode)?;
    }
    builder.finish()
}

/// Append everything below `root/start`, depth first in sorted order.
fn walk(
    builder: &mut Builder<&mut dyn Write>,
    root: &Path,
    start: PathBuf,
    mode: PackMode,
) -> io::Result<()> {
    let mut stack = vec![start];
    while let Some(rel) = stack.pop() {
        let mut children: Vec<_> = fs::read_dir(root.join(&rel))
            .map_err(|e| annotate(e, "read directory", &root.join(&rel)))?
            .map(|entry| entry.map(|e| e.file_name()))
            .collect::<io::Result<_>>()?;
        // Sorting by bytes, then walking depth-first in that order, gives one fixed order.
        children.sort();
        let mut subdirs = Vec::new();
        for name in children {
            let child_rel = rel.join(&name);
            let is_dir = append_entry(builder, root, &child_rel, mode)?;
            if is_dir {
                subdirs.push(child_rel);
            }
        }
        // Reverse so that popping from the stack visits subdirectories in sorted order.
        stack.extend(subdirs.into_iter().rev());
    }
    Ok(())
}

/// Append one entry; returns whether it is a directory to descend into.
fn append_entry(
    builder: &mut Builder<&mut dyn Write>,
    root: &Path,
    rel: &Path,
    mode: PackMode,
) -> io::Result<bool> {
    let path = root.join(rel);
    let meta = fs::symlink_metadata(&path).map_err(|e| annotate(e, "stat", &path))?;
    let ft = meta.file_type();
    let mut header = Header::new_gnu();
    header.set_mode(meta.mode() & 0o7777);
    match mode {
        PackMode::Deterministic => {
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(0);
        }
        PackMode::Preserve | PackMode::Overlay => {
            header.set_uid(u64::from(meta.uid()));
            header.set_gid(u64::from(meta.gid()));
            header.set_mtime(u64::try_from(meta.mtime()).unwrap_or(0));
        }
    }
    header.set_size(0);
    if mode == PackMode::Overlay && !ft.is_socket() {
        append_xattrs(builder, &path)?;
    }
    if ft.is_dir() {
        header.set_entry_type(EntryType::Directory);
        builder.append_data(&mut header, rel, io::empty())?;
        return Ok(true);
    }
    if ft.is_file() {
        header.set_entry_type(EntryType::Regular);
        header.set_size(meta.len());
        let file = File::open(&path).map_err(|e| annotate(e, "open", &path))?;
        builder.append_data(&mut header, rel, file)?;
    } else if ft.is_symlink() {
        header.set_entry_type(EntryType::Symlink);
        let target = fs::read_link(&path).map_err(|e| annotate(e, "read link", &path))?;
        builder.append_link(&mut header, rel, target)?;
    } else if ft.is_char_device() || ft.is_block_device() {
        let kind = if ft.is_char_device() {
            EntryType::Char
        } else {
            EntryType::Block
        };
        header.set_entry_type(kind);
        let rdev = meta.rdev();
        header.set_device_major(nix::sys::stat::major(rdev) as u32)?;
        header.set_device_minor(nix::sys::stat::minor(rdev) as u32)?;
        builder.append_data(&mut header, rel, io::empty())?;
    } else if ft.is_fifo() {
        header.set_entry_type(EntryType::Fifo);
        builder.append_data(&mut header, rel, io::empty())?;
    } else {
        // Sockets are runtime artefacts (a live agent's socket), not content.
        return Ok(false);
    }
    Ok(false)
}

/// Precede the next entry with a PAX header holding `path`'s extended attributes (not
/// following a symlink), if it has any; refuses those [`keeps_xattr`] does not keep.
fn append_xattrs(builder: &mut Builder<&mut dyn Write>, path: &Path) -> io::Result<()> {
    let mut records = Vec::new();
    for name in xattr::list(path).map_err(|e| annotate(e, "list the xattrs of", path))? {
        let text = name.to_str().filter(|n| keeps_xattr(n)).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "cannot archive {}: it has the extended attribute {name:?}, which an \
                     archive does not keep (only overlay markers, user.* and file \
                     capabilities); remove it (`setfattr -x NAME FILE` inside the \
                     environment) and archive again",
                    path.display()
                ),
            )
        })?;
        // Listed a moment ago: a value gone since (None) means the attribute was removed.
        if let Some(value) =
            xattr::get(path, &name).map_err(|e| annotate(e, "read the xattrs of", path))?
        {
            let (key, value) = xattr_record(text.as_bytes(), &value);
            records.push((key, value.into_bytes()));
        }
    }
    if records.is_empty() {
        return Ok(());
    }
    builder.append_pax_extensions(records.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
}

/// Unpack a tar stream produced by [`pack_dir`] into `dest`, which must exist and be empty.
/// Entries with absolute paths or `..` components are refused before anything is written, and
/// the tar crate's `unpack_in` refuses to write through symlinks that lead outside `dest`.
pub fn unpack_into(reader: &mut dyn Read, dest: &Path, mode: PackMode) -> io::Result<()> {
    let overlay = mode == PackMode::Overlay;
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(mode != PackMode::Deterministic);
    archive.set_preserve_ownerships(overlay);
    // The tar crate sets xattrs on regular files only; they are restored below for every kind.
    archive.set_unpack_xattrs(false);
    archive.set_overwrite(false);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        if !is_safe_relative(&path) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "archive entry `{}` escapes the target directory",
                    path.display()
                ),
            ));
        }
        let xattrs = if overlay {
            entry_xattrs(&mut entry, &path)?
        } else {
            Vec::new()
        };
        let kind = entry.header().entry_type();
        let special = kind.is_character_special() || kind.is_block_special() || kind.is_fifo();
        if overlay && special {
            make_node(dest, &path, entry.header())?;
        } else if !entry.unpack_in(dest)? {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "archive entry `{}` was refused by the unpacker",
                    path.display()
                ),
            ));
        }
        let target = dest.join(&path);
        for (name, value) in xattrs {
            xattr::set(&target, &name, &value).map_err(|e| {
                annotate(e, &format!("set the extended attribute {name} of"), &target)
            })?;
        }
    }
    Ok(())
}

/// The extended attributes an entry's PAX header carries; refuses a name that
/// [`keeps_xattr`] does not keep (an archive written by [`pack_dir`] holds none).
fn entry_xattrs<R: Read>(
    entry: &mut tar::Entry<R>,
    path: &Path,
) -> io::Result<Vec<(String, Vec<u8>)>> {
    let mut found = Vec::new();
    let Some(extensions) = entry.pax_extensions()? else {
        return Ok(found);
    };
    let malformed = |what: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "archive entry `{}` has a malformed extended attribute record ({what})",
                path.display()
            ),
        )
    };
    for extension in extensions {
        let extension = extension?;
        let Some(found_xattr) = xattr_of_record(extension.key_bytes(), extension.value_bytes())
        else {
            continue;
        };
        let (name, value) = found_xattr.map_err(malformed)?;
        let name = String::from_utf8(name).map_err(|_| malformed("its name"))?;
        if !keeps_xattr(&name) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "archive entry `{}` carries the extended attribute {name:?}, which \
                     archives do not hold",
                    path.display(),
                ),
            ));
        }
        found.push((name, value));
    }
    Ok(found)
}

/// Create a device node or fifo (the tar crate would write a regular file): with the
/// header's type, device numbers, owner, mode and mtime. Its parent, made by an earlier entry,
/// must resolve inside `dest` (no symlink leads out).
fn make_node(dest: &Path, rel: &Path, header: &Header) -> io::Result<()> {
    use nix::sys::stat::{makedev, mknod, utimensat, Mode, SFlag, UtimensatFlags};
    use nix::sys::time::TimeSpec;
    let target = dest.join(rel);
    let parent = target.parent().unwrap_or(dest);
    let inside = fs::canonicalize(parent)
        .and_then(|p| Ok(p.starts_with(fs::canonicalize(dest)?)))
        .map_err(|e| annotate(e, "resolve", parent))?;
    if !inside {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "archive entry `{}` leads outside {}",
                rel.display(),
                dest.display()
            ),
        ));
    }
    let kind = header.entry_type();
    let (flag, dev) = if kind.is_fifo() {
        (SFlag::S_IFIFO, 0)
    } else {
        let major = header.device_major()?.unwrap_or(0);
        let minor = header.device_minor()?.unwrap_or(0);
        let flag = if kind.is_block_special() {
            SFlag::S_IFBLK
        } else {
            SFlag::S_IFCHR
        };
        (flag, makedev(u64::from(major), u64::from(minor)))
    };
    let mode = header.mode()? & 0o7777;
    // mknod(2): a 0/0 character device (a whiteout) needs no CAP_MKNOD since Linux 5.8, so a
    // user namespace's root may make one; other devices need real root.
    mknod(&target, flag, Mode::empty(), dev)
        .map_err(|e| annotate(io::Error::from(e), "create the node", &target))?;
    // Owner first: chown(2) clears set-id bits, which the mode then sets again.
    let (uid, gid) = (header.uid()?, header.gid()?);
    let id = |n: u64| {
        u32::try_from(n).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("owner id {n} out of range"),
            )
        })
    };
    std::os::unix::fs::lchown(&target, Some(id(uid)?), Some(id(gid)?))
        .map_err(|e| annotate(e, "set the owner of", &target))?;
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&target, fs::Permissions::from_mode(mode))
        .map_err(|e| annotate(e, "set the mode of", &target))?;
    let secs = i64::try_from(header.mtime()?).unwrap_or(0);
    let time = TimeSpec::new(secs, 0);
    utimensat(None, &target, &time, &time, UtimensatFlags::NoFollowSymlink)
        .map_err(|e| annotate(io::Error::from(e), "set the mtime of", &target))?;
    Ok(())
}

/// True for a path made only of normal components (and `.`), i.e. one that stays inside.
pub fn is_safe_relative(path: &Path) -> bool {
    path.components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

fn annotate(e: io::Error, op: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("cannot {op} {}: {e}", path.display()))
}

/// Copy a tree (files with their permission bits, directories, symlinks as links). Hard links
/// become separate files; device nodes, fifos and sockets are skipped and returned, so the
/// caller can report them. Directory modes are applied after their contents, so read-only
/// directories copy too.
pub fn copy_tree(src: &Path, dst: &Path) -> io::Result<Vec<PathBuf>> {
    use std::os::unix::fs::PermissionsExt;
    let mut skipped = Vec::new();
    let mut dirs = Vec::new();
    let mut stack = vec![PathBuf::new()];
    fs::create_dir_all(dst).map_err(|e| annotate(e, "create", dst))?;
    dirs.push((
        PathBuf::new(),
        fs::symlink_metadata(src)?.permissions().mode(),
    ));
    while let Some(rel) = stack.pop() {
        let from_dir = src.join(&rel);
        for entry in
            fs::read_dir(&from_dir).map_err(|e| annotate(e, "read directory", &from_dir))?
        {
            let entry = entry?;
            let child = rel.join(entry.file_name());
            let (from, to) = (src.join(&child), dst.join(&child));
            let meta = fs::symlink_metadata(&from).map_err(|e| annotate(e, "stat", &from))?;
            let ft = meta.file_type();
            if ft.is_dir() {
                fs::create_dir(&to).map_err(|e| annotate(e, "create", &to))?;
                dirs.push((child.clone(), meta.permissions().mode()));
                stack.push(child);
            } else if ft.is_file() {
                fs::copy(&from, &to).map_err(|e| annotate(e, "copy", &from))?;
            } else if ft.is_symlink() {
                let target = fs::read_link(&from).map_err(|e| annotate(e, "read link", &from))?;
                std::os::unix::fs::symlink(&target, &to).map_err(|e| annotate(e, "link", &to))?;
            } else {
                skipped.push(child);
            }
        }
    }
    // Deepest first, so that making a directory read-only never blocks a child's mode change.
    dirs.sort_by_key(|(rel, _)| std::cmp::Reverse(rel.components().count()));
    for (rel, mode) in dirs {
        let path = dst.join(&rel);
        fs::set_permissions(&path, fs::Permissions::from_mode(mode & 0o7777))
            .map_err(|e| annotate(e, "set the mode of", &path))?;
    }
    Ok(skipped)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{symlink, PermissionsExt};

    use super::*;

    /// blake3 of a tree's deterministic tar stream.
    fn tree_digest(root: &Path) -> io::Result<blake3::Hash> {
        let mut hasher = blake3::Hasher::new();
        pack_dir(root, &mut hasher, PackMode::Deterministic)?;
        Ok(hasher.finalize())
    }

    fn sample(root: &Path) {
        fs::create_dir_all(root.join("etc/sub")).expect("mkdir");
        fs::write(root.join("etc/os-release"), "ID=mock\n").expect("write");
        fs::write(root.join("etc/sub/b"), "bbb").expect("write");
        fs::write(root.join("run.sh"), "#!/bin/sh\n").expect("write");
        fs::set_permissions(root.join("run.sh"), fs::Permissions::from_mode(0o755)).expect("chmod");
        symlink("etc/os-release", root.join("link")).expect("symlink");
    }

    #[test]
    fn deterministic_pack_is_stable_and_content_sensitive() {
        let a = tempfile::tempdir().expect("tempdir");
        let b = tempfile::tempdir().expect("tempdir");
        sample(a.path());
        sample(b.path());
        let da = tree_digest(a.path()).expect("digest a");
        assert_eq!(da, tree_digest(b.path()).expect("digest b"));
        fs::write(b.path().join("etc/sub/b"), "bbc").expect("write");
        assert_ne!(da, tree_digest(b.path()).expect("digest b2"));
        fs::write(b.path().join("etc/sub/b"), "bbb").expect("write");
        fs::set_permissions(b.path().join("run.sh"), fs::Permissions::from_mode(0o700))
            .expect("chmod");
        assert_ne!(
            da,
            tree_digest(b.path()).expect("digest b3"),
            "mode change missed"
        );
    }

    #[test]
    fn round_trip_keeps_content_modes_and_links() {
        let src = tempfile::tempdir().expect("tempdir");
        sample(src.path());
        let mut bytes = Vec::new();
        pack_dir(src.path(), &mut bytes, PackMode::Deterministic).expect("pack");
        let dst = tempfile::tempdir().expect("tempdir");
        unpack_into(&mut bytes.as_slice(), dst.path(), PackMode::Deterministic).expect("unpack");
        assert_eq!(
            fs::read_to_string(dst.path().join("etc/sub/b")).expect("read"),
            "bbb"
        );
        let mode = fs::metadata(dst.path().join("run.sh"))
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        assert_eq!(
            fs::read_link(dst.path().join("link")).expect("readlink"),
            Path::new("etc/os-release")
        );
        assert_eq!(
            tree_digest(src.path()).expect("digest"),
            tree_digest(dst.path()).expect("digest")
        );
    }

    /// A tree as overlayfs leaves an upper directory: a whiteout (a 0/0 character device,
    /// which mknod(2) allows without CAP_MKNOD since Linux 5.8), an opaque directory
    /// (`user.overlay.opaque`, as a rootless overlay with `userxattr` writes it), a fifo and,
    /// as root, a file of another owner. `None` when this file system has no user xattrs.
    fn overlay_sample(root: &Path) -> Option<()> {
        use nix::sys::stat::{makedev, mknod, Mode, SFlag};
        fs::create_dir_all(root.join("etc")).expect("mkdir");
        fs::create_dir_all(root.join("usr/share/doc")).expect("mkdir");
        mknod(
            &root.join("etc/debian_version"),
            SFlag::S_IFCHR,
            Mode::empty(),
            makedev(0, 0),
        )
        .expect("mknod a whiteout");
        nix::unistd::mkfifo(&root.join("fifo"), Mode::from_bits_truncate(0o640)).expect("fifo");
        fs::write(root.join("made"), "made").expect("write");
        if nix::unistd::geteuid().is_root() {
            std::os::unix::fs::chown(root.join("made"), Some(1234), Some(1235)).expect("chown");
        }
        match xattr::set(root.join("usr/share/doc"), "user.overlay.opaque", b"y") {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => return None,
            Err(e) => panic!("set user.overlay.opaque: {e}"),
        }
        xattr::set(root.join("made"), "user.note", b"kept").expect("set user.note");
        Some(())
    }

    #[test]
    fn overlay_round_trip_keeps_whiteouts_xattrs_and_owners() {
        let src = tempfile::tempdir().expect("tempdir");
        if overlay_sample(src.path()).is_none() {
            let required = std::env::var("KARAPACE_REQUIRE_SANDBOX").as_deref() == Ok("1");
            assert!(
                !required,
                "KARAPACE_REQUIRE_SANDBOX=1 but the temp dir has no user xattrs"
            );
            eprintln!("SKIPPED: layer overlay round trip: the temp dir has no user xattrs");
            return;
        }
        let mut bytes = Vec::new();
        pack_dir(src.path(), &mut bytes, PackMode::Overlay).expect("pack");
        let dst = tempfile::tempdir().expect("tempdir");
        unpack_into(&mut bytes.as_slice(), dst.path(), PackMode::Overlay).expect("unpack");

        let whiteout = fs::symlink_metadata(dst.path().join("etc/debian_version")).expect("stat");
        assert!(whiteout.file_type().is_char_device(), "{whiteout:?}");
        assert_eq!(whiteout.rdev(), 0, "a whiteout is device 0/0");
        let fifo = fs::symlink_metadata(dst.path().join("fifo")).expect("stat");
        assert!(fifo.file_type().is_fifo());
        assert_eq!(fifo.mode() & 0o777, 0o640);
        let opaque = xattr::get(dst.path().join("usr/share/doc"), "user.overlay.opaque");
        assert_eq!(opaque.expect("get").as_deref(), Some(&b"y"[..]));
        let note = xattr::get(dst.path().join("made"), "user.note").expect("get");
        assert_eq!(note.as_deref(), Some(&b"kept"[..]));
        if nix::unistd::geteuid().is_root() {
            let made = fs::metadata(dst.path().join("made")).expect("stat");
            assert_eq!((made.uid(), made.gid()), (1234, 1235));
        }
    }

    #[test]
    fn preserve_mode_writes_no_xattrs() {
        let src = tempfile::tempdir().expect("tempdir");
        if overlay_sample(src.path()).is_none() {
            eprintln!("SKIPPED: layer preserve mode: the temp dir has no user xattrs");
            return;
        }
        let mut bytes = Vec::new();
        pack_dir(src.path(), &mut bytes, PackMode::Preserve).expect("pack");
        for needle in [PAX_XATTR_B64, PAX_XATTR_RAW] {
            let needle = needle.as_bytes();
            assert!(!bytes.windows(needle.len()).any(|w| w == needle));
        }
    }

    #[test]
    fn xattr_values_with_newlines_and_names_with_equals_signs_survive() {
        let src = tempfile::tempdir().expect("tempdir");
        fs::write(src.path().join("f"), "f").expect("write");
        // Like an overlayfs origin file handle: binary, with newline and `=` bytes.
        let value: &[u8] = b"\x00\xfb\n=\x21\n\n\xff";
        let name = "user.a=b%c d";
        match xattr::set(src.path().join("f"), name, value) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                eprintln!("SKIPPED: layer xattr encoding: the temp dir has no user xattrs");
                return;
            }
            Err(e) => panic!("set {name}: {e}"),
        }
        let mut bytes = Vec::new();
        pack_dir(src.path(), &mut bytes, PackMode::Overlay).expect("pack");
        let dst = tempfile::tempdir().expect("tempdir");
        unpack_into(&mut bytes.as_slice(), dst.path(), PackMode::Overlay).expect("unpack");
        let back = xattr::get(dst.path().join("f"), name).expect("get");
        assert_eq!(back.as_deref(), Some(value));
        assert_eq!(encode_xattr_name(name.as_bytes()), "user.a%3Db%25c%20d");
        assert_eq!(
            decode_xattr_name(b"user.a%3Db%25c%20d").as_deref(),
            Some(name.as_bytes())
        );
        assert_eq!(decode_xattr_name(b"user.%4"), None, "a cut escape");
    }

    /// A tar stream of one empty file `file`, owned by us, preceded by one PAX record.
    fn one_empty_file_with_pax(record: (&str, &[u8])) -> Vec<u8> {
        let mut builder = Builder::new(Vec::new());
        builder.append_pax_extensions([record]).expect("pax");
        let mut header = Header::new_gnu();
        header.set_entry_type(EntryType::Regular);
        header.set_mode(0o644);
        header.set_size(0);
        header.set_uid(nix::unistd::getuid().as_raw().into());
        header.set_gid(nix::unistd::getgid().as_raw().into());
        header.set_mtime(0);
        builder
            .append_data(&mut header, "file", io::empty())
            .expect("append");
        builder.into_inner().expect("finish")
    }

    #[test]
    fn archives_with_raw_gnu_xattr_records_still_unpack() {
        let bytes = one_empty_file_with_pax(("SCHILY.xattr.user.note", b"kept"));
        let dst = tempfile::tempdir().expect("tempdir");
        match unpack_into(&mut bytes.as_slice(), dst.path(), PackMode::Overlay) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                eprintln!("SKIPPED: layer raw xattr records: the temp dir has no user xattrs");
                return;
            }
            Err(e) => panic!("unpack: {e} ({:?})", std::error::Error::source(&e)),
        }
        let note = xattr::get(dst.path().join("file"), "user.note").expect("get");
        assert_eq!(note.as_deref(), Some(&b"kept"[..]));
    }

    #[test]
    fn unpacking_refuses_xattrs_archives_do_not_keep() {
        assert!(keeps_xattr("trusted.overlay.opaque"));
        assert!(keeps_xattr("user.overlay.redirect"));
        assert!(keeps_xattr("security.capability"));
        assert!(!keeps_xattr("security.selinux"));
        assert!(!keeps_xattr("system.posix_acl_access"));
        assert!(!keeps_xattr("trusted.other"));
        let bytes = one_empty_file_with_pax(("SCHILY.xattr.security.selinux", b"label"));
        let dst = tempfile::tempdir().expect("tempdir");
        let err = unpack_into(&mut bytes.as_slice(), dst.path(), PackMode::Overlay)
            .expect_err("security.selinux must be refused");
        assert!(err.to_string().contains("security.selinux"), "{err}");
    }

    #[test]
    fn unsafe_paths_are_detected() {
        assert!(is_safe_relative(Path::new("a/b")));
        assert!(!is_safe_relative(Path::new("../x")));
        assert!(!is_safe_relative(Path::new("a/../../x")));
        assert!(!is_safe_relative(Path::new("/etc/passwd")));
    }
}

//! Packing a directory tree into a tar stream and back.
//!
//! Layers are stored as tar objects. In [`PackMode::Deterministic`] (build layers) every
//! entry's owner is 0:0, its mtime 0 and the entries are sorted by path bytes, so the same tree
//! always gives the same bytes and therefore the same digest whoever builds it and when.
//! [`PackMode::Preserve`] (archives of a user's environment) keeps owners and mtimes.
//! Device nodes are kept (overlayfs whiteouts are 0:0 character devices; the original dropped
//! them, which lost deletions), as are fifos, symlinks and permissions including set-id bits.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use tar::{Builder, EntryType, Header};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackMode {
    Deterministic,
    Preserve,
}

/// Write `root`'s contents (not `root` itself) as a tar stream into `out`. Paths are relative.
pub fn pack_dir(root: &Path, out: &mut dyn Write, mode: PackMode) -> io::Result<()> {
    let mut builder = Builder::new(out);
    builder.follow_symlinks(false);
    let mut stack = vec![PathBuf::new()];
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
            let is_dir = append_entry(&mut builder, root, &child_rel, mode)?;
            if is_dir {
                subdirs.push(child_rel);
            }
        }
        // Reverse so that popping from the stack visits subdirectories in sorted order.
        stack.extend(subdirs.into_iter().rev());
    }
    builder.finish()
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
        PackMode::Preserve => {
            header.set_uid(u64::from(meta.uid()));
            header.set_gid(u64::from(meta.gid()));
            header.set_mtime(u64::try_from(meta.mtime()).unwrap_or(0));
        }
    }
    header.set_size(0);
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

/// Unpack a tar stream produced by [`pack_dir`] into `dest`, which must exist and be empty.
/// Entries with absolute paths or `..` components are refused before anything is written, and
/// the tar crate's `unpack_in` refuses to write through symlinks that lead outside `dest`.
pub fn unpack_into(reader: &mut dyn Read, dest: &Path, mode: PackMode) -> io::Result<()> {
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(mode == PackMode::Preserve);
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
        if !entry.unpack_in(dest)? {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "archive entry `{}` was refused by the unpacker",
                    path.display()
                ),
            ));
        }
    }
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

    #[test]
    fn unsafe_paths_are_detected() {
        assert!(is_safe_relative(Path::new("a/b")));
        assert!(!is_safe_relative(Path::new("../x")));
        assert!(!is_safe_relative(Path::new("a/../../x")));
        assert!(!is_safe_relative(Path::new("/etc/passwd")));
    }
}

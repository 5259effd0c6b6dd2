use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::time::{Duration, SystemTime};

use super::*;

fn sample(root: &Path) {
    fs::create_dir_all(root.join("etc/sub")).expect("mkdir");
    fs::write(root.join("etc/os-release"), "ID=test\n").expect("write");
    fs::write(root.join("etc/sub/b"), "bbb").expect("write");
    fs::write(root.join("run.sh"), "#!/bin/sh\n").expect("write");
    fs::set_permissions(root.join("run.sh"), fs::Permissions::from_mode(0o755)).expect("chmod");
    symlink("etc/os-release", root.join("link")).expect("symlink");
}

fn digest_after(change: impl FnOnce(&Path)) -> Digest {
    let dir = tempfile::tempdir().expect("tempdir");
    sample(dir.path());
    change(dir.path());
    tree_digest(dir.path()).expect("digest")
}

#[test]
fn the_digest_is_stable() {
    assert_eq!(digest_after(|_| {}), digest_after(|_| {}));
}

/// One way to alter a sample tree.
type Change = Box<dyn FnOnce(&Path)>;

#[test]
fn content_mode_target_and_type_changes_change_the_digest() {
    let base = digest_after(|_| {});
    let changes: [(&str, Change); 7] = [
        (
            "content",
            Box::new(|r| fs::write(r.join("etc/sub/b"), "bbc").expect("write")),
        ),
        (
            "mode",
            Box::new(|r| {
                let p = fs::Permissions::from_mode(0o4755);
                fs::set_permissions(r.join("run.sh"), p).expect("chmod");
            }),
        ),
        (
            "symlink target",
            Box::new(|r| {
                fs::remove_file(r.join("link")).expect("rm");
                symlink("etc/os-releasf", r.join("link")).expect("symlink");
            }),
        ),
        (
            "file to directory",
            Box::new(|r| {
                fs::remove_file(r.join("etc/sub/b")).expect("rm");
                fs::create_dir(r.join("etc/sub/b")).expect("mkdir");
            }),
        ),
        (
            "file to fifo",
            Box::new(|r| {
                fs::remove_file(r.join("etc/sub/b")).expect("rm");
                nix::unistd::mkfifo(
                    &r.join("etc/sub/b"),
                    nix::sys::stat::Mode::from_bits_truncate(0o644),
                )
                .expect("mkfifo");
            }),
        ),
        (
            "symlink to file",
            Box::new(|r| {
                fs::remove_file(r.join("link")).expect("rm");
                fs::write(r.join("link"), "etc/os-release").expect("write");
                let p = fs::Permissions::from_mode(0o777);
                fs::set_permissions(r.join("link"), p).expect("chmod");
            }),
        ),
        (
            "rename",
            Box::new(|r| fs::rename(r.join("run.sh"), r.join("run.sh2")).expect("mv")),
        ),
    ];
    for (what, change) in changes {
        assert_ne!(base, digest_after(change), "{what} change not seen");
    }
}

#[test]
fn mtime_and_owner_changes_do_not_change_the_digest() {
    let base = digest_after(|_| {});
    let touched = digest_after(|r| {
        let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let f = fs::File::options()
            .write(true)
            .open(r.join("etc/sub/b"))
            .expect("open");
        f.set_modified(old).expect("set mtime");
    });
    assert_eq!(base, touched);
    if nix::unistd::geteuid().is_root() {
        let chowned = digest_after(|r| {
            std::os::unix::fs::lchown(r.join("etc/sub/b"), Some(1234), Some(1234)).expect("chown");
            std::os::unix::fs::lchown(r.join("link"), Some(1234), Some(1234)).expect("chown");
        });
        assert_eq!(base, chowned);
    }
}

/// Pins the encoding in the module doc: a hand-built byte stream must hash the same.
#[test]
fn the_encoding_matches_the_documentation() {
    let content = blake3::hash(b"hello");
    let mut h = TreeHasher::new();
    // Added out of order, with a duplicate that replaces the first record for `b`.
    h.add(TreeRecord {
        path: "b".into(),
        kind: TreeKind::Fifo,
        mode: 0o644,
    });
    h.add(TreeRecord {
        path: "./b/".into(),
        kind: TreeKind::Symlink {
            target: b"a".to_vec(),
        },
        mode: 0o777,
    });
    h.add(TreeRecord {
        path: "a/f".into(),
        kind: TreeKind::File {
            content: *content.as_bytes(),
        },
        mode: 0o104755,
    });
    h.add(TreeRecord {
        path: "a".into(),
        kind: TreeKind::Dir,
        mode: 0o40755,
    });
    h.add(TreeRecord {
        path: "a/c".into(),
        kind: TreeKind::CharDevice { major: 1, minor: 3 },
        mode: 0o666,
    });
    let mut bytes = b"karapace-tree-v1\n".to_vec();
    let rec = |bytes: &mut Vec<u8>, path: &[u8], tag: u8, mode: u32, payload: &[u8]| {
        bytes.extend_from_slice(&(path.len() as u64).to_le_bytes());
        bytes.extend_from_slice(path);
        bytes.push(tag);
        bytes.extend_from_slice(&mode.to_le_bytes());
        bytes.extend_from_slice(payload);
    };
    rec(&mut bytes, b"a", b'd', 0o755, b"");
    let mut dev = 1u64.to_le_bytes().to_vec();
    dev.extend_from_slice(&3u64.to_le_bytes());
    rec(&mut bytes, b"a/c", b'c', 0o666, &dev);
    rec(&mut bytes, b"a/f", b'f', 0o4755, content.as_bytes());
    let mut target = 1u64.to_le_bytes().to_vec();
    target.push(b'a');
    rec(&mut bytes, b"b", b'l', 0, &target);
    assert_eq!(h.len(), 4);
    assert_eq!(h.finish(), Digest::of_bytes(&bytes));
}

#[test]
fn removing_a_directory_removes_its_records_only() {
    let mut h = TreeHasher::new();
    for p in ["a", "a/x", "a/y/z", "a.b", "a0", "ab"] {
        h.add(TreeRecord {
            path: p.into(),
            kind: TreeKind::Dir,
            mode: 0o755,
        });
    }
    h.remove(Path::new("a"));
    let left: Vec<_> = ["a.b", "a0", "ab", "a", "a/x"]
        .iter()
        .map(|p| h.get(Path::new(p)).is_some())
        .collect();
    assert_eq!(left, [true, true, true, false, false]);
}

#[test]
fn an_empty_tree_has_a_fixed_digest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let expected = Digest::of_bytes(TREE_DIGEST_DOMAIN);
    assert_eq!(tree_digest(dir.path()).expect("digest"), expected);
}

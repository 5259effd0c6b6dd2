//! Well-formed trees: everything round-trips, the report's digest matches a fresh walk, and a
//! large file streams.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use super::rawtar::{Hdr, RawTar};
use super::*;

fn mode_of(path: &Path) -> u32 {
    fs::symlink_metadata(path).expect("stat").mode() & 0o7777
}

/// A small root file system with every kind of entry an unprivileged user can make.
fn sample_tar() -> Vec<u8> {
    RawTar::new()
        .dir("./", 0o755)
        .dir("./etc/", 0o755)
        .member(
            Hdr::new("./etc/passwd", b'0').owner(1000, 1000),
            b"root:x:0:0::/root:/bin/sh\n",
        )
        .file("./etc/shadow", 0o640, b"root:*:1::::::\n")
        .symlink("./etc/abs", "/usr/bin/su")
        .file("./usr/bin/su", 0o4755, b"\x7fELF setuid")
        .file("./usr/bin/wall", 0o2755, b"\x7fELF setgid")
        .hardlink("./usr/bin/su-again", "./usr/bin/su")
        .symlink("./bin", "usr/bin")
        .dir("./tmp/", 0o1777)
        .dir("./run/", 0o755)
        .member(Hdr::new("./run/initctl", b'6').mode(0o600), b"")
        .dir("./ro/", 0o555)
        .dir("./ro/sub/", 0o500)
        .file("./ro/sub/inside", 0o444, b"read only")
        .dir("./shared/", 0o2775)
        .file("./empty", 0o600, b"")
        .finish()
}

#[test]
fn a_well_formed_tree_round_trips() {
    let fx = Fixture::new();
    let report = fx.unpack(&sample_tar()).expect("unpack");
    fx.assert_contained();
    let d = &fx.dest;
    assert_eq!(
        fs::read(d.join("etc/passwd")).expect("read"),
        b"root:x:0:0::/root:/bin/sh\n"
    );
    for (path, mode) in [
        ("etc", 0o755),
        ("etc/passwd", 0o644),
        ("etc/shadow", 0o640),
        ("usr", 0o755),
        ("usr/bin", 0o755),
        ("usr/bin/su", 0o4755),
        ("usr/bin/wall", 0o2755),
        ("tmp", 0o1777),
        ("run/initctl", 0o600),
        ("ro", 0o555),
        ("ro/sub", 0o500),
        ("ro/sub/inside", 0o444),
        ("shared", 0o2775),
    ] {
        assert_eq!(mode_of(&d.join(path)), mode, "mode of {path}");
    }
    assert_eq!(
        fs::read_link(d.join("etc/abs")).expect("readlink"),
        Path::new("/usr/bin/su")
    );
    assert_eq!(
        fs::read_link(d.join("bin")).expect("readlink"),
        Path::new("usr/bin")
    );
    let su = fs::symlink_metadata(d.join("usr/bin/su")).expect("stat");
    let again = fs::symlink_metadata(d.join("usr/bin/su-again")).expect("stat");
    assert_eq!(
        (su.ino(), su.nlink()),
        (again.ino(), 2),
        "hard link shares the inode"
    );
    assert!(fs::symlink_metadata(d.join("run/initctl"))
        .expect("stat")
        .file_type()
        .is_fifo());
    assert_eq!(
        fs::read(d.join("ro/sub/inside")).expect("read"),
        b"read only"
    );
    let passwd = fs::symlink_metadata(d.join("etc/passwd")).expect("stat");
    assert_eq!(passwd.mtime(), 1_600_000_000);
    let me = nix::unistd::geteuid().as_raw();
    let expected_owner = if me == 0 { 1000 } else { me };
    assert_eq!(passwd.uid(), expected_owner);
    assert_eq!(report.entries, 17);
    assert_eq!(report.files, 6);
    assert_eq!(report.skipped, []);
    assert_eq!(report.tree_digest, tree::tree_digest(d).expect("digest"));
}

#[test]
fn the_digest_does_not_depend_on_ownership_handling() {
    let a = Fixture::new();
    let b = Fixture::new();
    let rootless = UnpackOptions {
        rootless: true,
        xattrs: false,
    };
    let ra = unpack(&mut sample_tar().as_slice(), &a.dest, &rootless).expect("rootless");
    let current = UnpackOptions::for_current_user();
    let rb = unpack(&mut sample_tar().as_slice(), &b.dest, &current).expect("current");
    assert_eq!(ra.tree_digest, rb.tree_digest);
    if nix::unistd::geteuid().is_root() {
        let meta = fs::symlink_metadata(a.dest.join("etc/passwd")).expect("stat");
        assert_eq!(meta.uid(), 0, "rootless leaves the owner as the user");
    }
}

#[test]
fn later_entries_win() {
    let fx = Fixture::new();
    let tar = RawTar::new()
        .file("a", 0o644, b"first")
        .file("a", 0o600, b"second")
        .dir("d/", 0o755)
        .file("d/inner", 0o644, b"gone")
        .dir("d/sub/", 0o755)
        .file("d", 0o644, b"d is a file now")
        .file("f", 0o644, b"becomes a dir")
        .dir("f/", 0o700)
        .file("f/x", 0o644, b"x")
        .dir("e/", 0o755)
        .dir("e/", 0o711)
        .file("keep", 0o644, b"old inode")
        .hardlink("link", "keep")
        .file("keep", 0o644, b"new inode")
        .finish();
    let report = fx.unpack(&tar).expect("unpack");
    let d = &fx.dest;
    assert_eq!(fs::read(d.join("a")).expect("read"), b"second");
    assert_eq!(mode_of(&d.join("a")), 0o600);
    assert_eq!(fs::read(d.join("d")).expect("read"), b"d is a file now");
    assert_eq!(fs::read(d.join("f/x")).expect("read"), b"x");
    assert_eq!(mode_of(&d.join("f")), 0o700);
    assert_eq!(mode_of(&d.join("e")), 0o711);
    assert_eq!(fs::read(d.join("link")).expect("read"), b"old inode");
    assert_eq!(fs::read(d.join("keep")).expect("read"), b"new inode");
    assert_eq!(report.tree_digest, tree::tree_digest(d).expect("digest"));
}

#[test]
fn lxc_style_names_and_tar_crate_archives_unpack() {
    let src = tempfile::tempdir().expect("tempdir");
    fs::create_dir_all(src.path().join("etc/apt")).expect("mkdir");
    fs::write(src.path().join("etc/apt/sources.list"), "deb x\n").expect("write");
    std::os::unix::fs::symlink("../etc", src.path().join("etc/apt/up")).expect("symlink");
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    builder.append_dir_all(".", src.path()).expect("append");
    let bytes = builder.into_inner().expect("finish");
    let fx = Fixture::new();
    let report = fx.unpack(&bytes).expect("unpack");
    assert_eq!(
        fs::read(fx.dest.join("etc/apt/sources.list")).expect("read"),
        b"deb x\n"
    );
    assert_eq!(
        report.tree_digest,
        tree::tree_digest(src.path()).expect("digest src")
    );
    assert_eq!(
        report.tree_digest,
        tree::tree_digest(&fx.dest).expect("digest dest")
    );
}

#[test]
fn xattrs_are_applied_or_recorded() {
    let fx = Fixture::new();
    let tar = RawTar::new()
        .pax(&[("SCHILY.xattr.user.karapace", b"yes\0bin")])
        .file("x", 0o644, b"x")
        .pax(&[("SCHILY.xattr.trusted.karapace", b"t")])
        .file("t", 0o644, b"t")
        .finish();
    let report = fx.unpack(&tar).expect("unpack");
    let skipped_names: Vec<_> = report
        .skipped
        .iter()
        .map(|s| (s.path.display().to_string(), s.why.to_string()))
        .collect();
    match xattr::get(fx.dest.join("x"), "user.karapace").expect("getxattr") {
        Some(value) => assert_eq!(value, b"yes\0bin"),
        None => assert!(
            skipped_names.iter().any(|(p, _)| p == "x"),
            "{skipped_names:?}"
        ),
    }
    let trusted = xattr::get(fx.dest.join("t"), "trusted.karapace").expect("getxattr");
    if nix::unistd::geteuid().is_root() {
        assert_eq!(trusted.as_deref(), Some(&b"t"[..]));
    } else {
        assert!(
            skipped_names.iter().any(|(p, _)| p == "t"),
            "{skipped_names:?}"
        );
    }
    let opts = UnpackOptions {
        rootless: true,
        xattrs: false,
    };
    let off = Fixture::new();
    unpack(&mut tar.as_slice(), &off.dest, &opts).expect("unpack");
    assert_eq!(
        xattr::get(off.dest.join("x"), "user.karapace").expect("get"),
        None
    );
}

#[test]
fn xattr_values_with_newlines_import() {
    // composefs/tar-rs#428: the tar crate alone fails such a tarball ("malformed pax
    // extension"); image::pax_fix rewrites the record before it gets there.
    let fx = Fixture::new();
    let cap_like: &[u8] = b"\x01\x00\x00\x02\x02\x00\x0a\x00";
    let tar = RawTar::new()
        .pax(&[("SCHILY.xattr.user.karapace", cap_like)])
        .file("bin/tool", 0o755, b"tool")
        .file("after", 0o644, b"after")
        .finish();
    let report = fx.unpack(&tar).expect("unpack");
    assert_eq!(report.files, 2);
    assert_eq!(fs::read(fx.dest.join("after")).expect("read"), b"after");
    match xattr::get(fx.dest.join("bin/tool"), "user.karapace").expect("getxattr") {
        Some(value) => assert_eq!(value, cap_like),
        None => assert!(
            report
                .skipped
                .iter()
                .any(|s| s.path == Path::new("bin/tool")),
            "neither applied nor recorded as skipped"
        ),
    }
}

#[test]
fn hostile_mtimes_and_owners_do_not_panic() {
    let fx = Fixture::new();
    let mut h = Hdr::new("old", b'0');
    h.mtime = 0o77_777_777_777; // the largest 11-digit octal value
    let tar = RawTar::new().member(h, b"x").finish();
    let report = fx.unpack(&tar).expect("unpack");
    assert_eq!(report.files, 1);
}

/// A tar stream of one zero-filled file of `size` bytes, generated as it is read.
fn generated_tar(size: u64) -> impl Read {
    let header = Hdr::new("big/zeros", b'0').block(size);
    let pad = ((512 - size % 512) % 512) as usize;
    io::Cursor::new(header.to_vec())
        .chain(io::repeat(0).take(size))
        .chain(io::Cursor::new(vec![0u8; pad + 1024]))
}

fn max_rss_kib() -> i64 {
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF)
        .expect("getrusage");
    usage.max_rss()
}

#[test]
fn a_200_mb_file_streams() {
    const SIZE: u64 = 200 * 1024 * 1024;
    let fx = Fixture::new();
    let before = max_rss_kib();
    let mut reader = generated_tar(SIZE);
    let report = unpack(&mut reader, &fx.dest, &UnpackOptions::for_current_user()).expect("unpack");
    let grown_mib = (max_rss_kib() - before) / 1024;
    // Other tests run in this process too, so allow slack; buffering the file would add 200.
    assert!(grown_mib < 100, "peak memory grew by {grown_mib} MiB");
    assert_eq!(report.bytes, SIZE);
    let path = fx.dest.join("big/zeros");
    assert_eq!(fs::metadata(&path).expect("stat").len(), SIZE);
    let mut zeros = blake3::Hasher::new();
    zeros.update_reader(io::repeat(0).take(SIZE)).expect("hash");
    let mut expected = tree::TreeHasher::new();
    expected.add(tree::TreeRecord {
        path: "big".into(),
        kind: tree::TreeKind::Dir,
        mode: 0o755,
    });
    expected.add(tree::TreeRecord {
        path: "big/zeros".into(),
        kind: tree::TreeKind::File {
            content: *zeros.finalize().as_bytes(),
        },
        mode: 0o644,
    });
    assert_eq!(report.tree_digest, expected.finish());
}

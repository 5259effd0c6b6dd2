//! Hostile tarballs: each must fail with `Hostile` (or a clean error) naming the entry, and
//! leave everything outside `dest` untouched. Well-formed trees are in `tests/unpack_tree.rs`.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::*;
use crate::image::tree;

#[path = "tests/rawtar.rs"]
mod rawtar;
#[path = "tests/unpack_tree.rs"]
mod tree_cases;

use rawtar::{Hdr, RawTar};

/// `root/dest` (the target) next to `root/sentinel` (must stay empty) and `root/victim`
/// (a host file whose content must not change).
struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    dest: PathBuf,
    sentinel: PathBuf,
}

const VICTIM: &str = "original victim content\n";

impl Fixture {
    fn new() -> Fixture {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().to_path_buf();
        let dest = root.join("dest");
        let sentinel = root.join("sentinel");
        fs::create_dir(&dest).expect("mkdir dest");
        fs::create_dir(&sentinel).expect("mkdir sentinel");
        fs::write(root.join("victim"), VICTIM).expect("write victim");
        Fixture {
            _tmp: tmp,
            root,
            dest,
            sentinel,
        }
    }

    /// `root` without its leading `/`, to build names that lead there through `link -> /`.
    fn root_rel(&self) -> String {
        self.root
            .to_string_lossy()
            .trim_start_matches('/')
            .to_string()
    }

    fn unpack(&self, tar: &[u8]) -> Result<UnpackReport> {
        let mut reader = tar;
        unpack(&mut reader, &self.dest, &UnpackOptions::for_current_user())
    }

    fn assert_contained(&self) {
        let sentinel: Vec<_> = fs::read_dir(&self.sentinel).expect("ls").collect();
        assert!(
            sentinel.is_empty(),
            "written into the sentinel: {sentinel:?}"
        );
        let mut names: Vec<_> = fs::read_dir(&self.root)
            .expect("ls root")
            .map(|e| e.expect("entry").file_name().into_string().expect("utf8"))
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["dest", "sentinel", "victim"],
            "new entries next to dest"
        );
        let victim = fs::read_to_string(self.root.join("victim")).expect("read victim");
        assert_eq!(victim, VICTIM, "victim changed");
        let meta = fs::symlink_metadata(self.root.join("victim")).expect("stat victim");
        assert_eq!(meta.nlink(), 1, "victim gained a hard link");
    }

    /// Unpack `tar`, expect `Hostile` for an entry whose name contains `entry`, and check that
    /// nothing outside `dest` changed.
    fn expect_hostile(&self, tar: &[u8], entry: &str) -> String {
        match self.unpack(tar) {
            Err(UnpackError::Hostile { entry: e, reason }) => {
                assert!(e.contains(entry), "error names `{e}`, expected `{entry}`");
                self.assert_contained();
                reason
            }
            other => panic!("expected Hostile for `{entry}`, got {other:?}"),
        }
    }
}

#[test]
fn dotdot_names_are_refused() {
    for name in [
        "../sentinel/x",
        "./../sentinel/x",
        "a/../../sentinel/x",
        "a/b/../../../x",
    ] {
        let fx = Fixture::new();
        let tar = RawTar::new().file(name, 0o644, b"escaped").finish();
        let reason = fx.expect_hostile(&tar, name);
        assert!(reason.contains(".."), "{reason}");
    }
}

#[test]
fn dotdot_is_refused_even_after_good_entries() {
    let fx = Fixture::new();
    let tar = RawTar::new()
        .dir("./", 0o755)
        .file("./ok", 0o644, b"fine")
        .file("./ok/../../victim", 0o644, b"overwritten")
        .finish();
    fx.expect_hostile(&tar, "../../victim");
}

#[test]
fn absolute_names_are_refused() {
    let fx = Fixture::new();
    let name = format!("{}/x", fx.sentinel.display());
    let tar = RawTar::new().file(&name, 0o644, b"escaped").finish();
    let reason = fx.expect_hostile(&tar, &name);
    assert!(reason.contains("absolute"), "{reason}");
    let victim = fx.root.join("victim").display().to_string();
    let tar = RawTar::new().file(&victim, 0o644, b"overwritten").finish();
    fx.expect_hostile(&tar, &victim);
}

#[test]
fn empty_and_nul_names_are_refused() {
    let fx = Fixture::new();
    let tar = RawTar::new().file("", 0o644, b"x").finish();
    fx.expect_hostile(&tar, "");
    let tar = RawTar::new()
        .pax(&[("path", b"ok\0../../victim")])
        .file("placeholder", 0o644, b"x")
        .finish();
    let reason = fx.expect_hostile(&tar, "ok");
    assert!(reason.contains("NUL"), "{reason}");
}

#[test]
fn writing_through_a_symlink_to_root_is_refused() {
    let fx = Fixture::new();
    let through = format!("link/{}/sentinel/x", fx.root_rel());
    let tar = RawTar::new()
        .symlink("link", "/")
        .file(&through, 0o644, b"escaped")
        .finish();
    let reason = fx.expect_hostile(&tar, &through);
    assert!(reason.contains("symbolic link"), "{reason}");
    // The symlink itself is fine and was created as written.
    assert_eq!(
        fs::read_link(fx.dest.join("link")).expect("readlink"),
        Path::new("/")
    );
}

#[test]
fn writing_through_a_symlink_to_dotdot_is_refused() {
    for (target, through) in [("..", "up/sentinel/x"), ("../sentinel", "./up/x")] {
        let fx = Fixture::new();
        let tar = RawTar::new()
            .symlink("up", target)
            .file(through, 0o644, b"escaped")
            .finish();
        fx.expect_hostile(&tar, through);
    }
}

#[test]
fn directories_through_a_symlink_are_refused() {
    let fx = Fixture::new();
    let tar = RawTar::new()
        .symlink("up", "..")
        .dir("up/sentinel/newdir/", 0o755)
        .finish();
    fx.expect_hostile(&tar, "up/sentinel/newdir");
    // Also when the symlink comes from a second entry replacing a directory.
    let fx = Fixture::new();
    let tar = RawTar::new()
        .dir("d/", 0o755)
        .symlink("d", "../sentinel")
        .file("d/x", 0o644, b"escaped")
        .finish();
    fx.expect_hostile(&tar, "d/x");
}

#[test]
fn a_symlink_replaced_by_a_file_is_unlinked_not_written_through() {
    let fx = Fixture::new();
    let tar = RawTar::new()
        .symlink("s", "../victim")
        .file("s", 0o600, b"new content")
        .symlink("t", "../sentinel/created")
        .dir("t", 0o755)
        .symlink("f", "../sentinel/fifo")
        .member(Hdr::new("f", b'6'), b"")
        .finish();
    let report = fx.unpack(&tar).expect("unpack");
    fx.assert_contained();
    let meta = fs::symlink_metadata(fx.dest.join("s")).expect("stat");
    assert!(meta.is_file());
    assert_eq!(fs::read(fx.dest.join("s")).expect("read"), b"new content");
    assert!(fs::symlink_metadata(fx.dest.join("t"))
        .expect("stat")
        .is_dir());
    let fifo = fs::symlink_metadata(fx.dest.join("f")).expect("stat");
    assert!(fifo.file_type().is_fifo());
    assert_eq!(
        report.tree_digest,
        tree::tree_digest(&fx.dest).expect("digest")
    );
}

#[test]
fn hardlinks_to_host_files_are_refused() {
    for target in [
        "/etc/passwd",
        "../victim",
        "../../x",
        "./../victim",
        "a/../../victim",
    ] {
        let fx = Fixture::new();
        let tar = RawTar::new()
            .file("a", 0o644, b"a")
            .hardlink("h", target)
            .finish();
        let reason = fx.expect_hostile(&tar, "h");
        assert!(reason.contains(target), "{reason}");
        assert!(
            fs::symlink_metadata(fx.dest.join("h")).is_err(),
            "link made"
        );
    }
    // An absolute path to the victim, and the victim reached through a symlink to `..`.
    let fx = Fixture::new();
    let victim = fx.root.join("victim").display().to_string();
    let tar = RawTar::new().hardlink("h", &victim).finish();
    fx.expect_hostile(&tar, "h");
    let tar = RawTar::new()
        .symlink("up", "..")
        .hardlink("h", "up/victim")
        .finish();
    let fx = Fixture::new();
    fx.expect_hostile(&tar, "h");
}

#[test]
fn hardlinks_to_symlinks_directories_and_missing_entries_are_refused() {
    let cases = [
        ("sym", "symbolic link"),
        ("dir", "directory"),
        ("implied", "directory"),
        ("missing", "no such entry"),
    ];
    for (target, why) in cases {
        let fx = Fixture::new();
        let tar = RawTar::new()
            .symlink("sym", "../victim")
            .dir("dir", 0o755)
            .file("implied/x", 0o644, b"x")
            .hardlink("h", target)
            .finish();
        let reason = fx.expect_hostile(&tar, "h");
        assert!(reason.contains(why), "{target}: {reason}");
    }
    let fx = Fixture::new();
    let tar = RawTar::new()
        .file("a", 0o644, b"a")
        .hardlink("a", "a")
        .finish();
    fx.expect_hostile(&tar, "a");
}

#[test]
fn device_nodes_are_never_created_and_both_modes_give_one_digest() {
    let tar = RawTar::new()
        .device("dev/null", b'3', 1, 3)
        .device("dev/loop0", b'4', 7, 0)
        .hardlink("dev/null-again", "dev/null")
        .file("dev/ok", 0o644, b"ok")
        .finish();
    let mut digests = Vec::new();
    for rootless in [true, false] {
        let fx = Fixture::new();
        let opts = UnpackOptions {
            rootless,
            xattrs: true,
        };
        let report = unpack(&mut tar.as_slice(), &fx.dest, &opts).expect("unpack");
        fx.assert_contained();
        let skipped: Vec<_> = report
            .skipped
            .iter()
            .map(|s| (s.path.clone(), s.why.clone()))
            .collect();
        assert_eq!(
            skipped,
            [
                (PathBuf::from("dev/null"), SkipReason::DeviceNode),
                (PathBuf::from("dev/loop0"), SkipReason::DeviceNode),
                (
                    PathBuf::from("dev/null-again"),
                    SkipReason::LinkToSkipped {
                        target: PathBuf::from("dev/null")
                    }
                ),
            ],
            "rootless: {rootless}"
        );
        assert!(fs::symlink_metadata(fx.dest.join("dev/null")).is_err());
        assert!(fs::symlink_metadata(fx.dest.join("dev/loop0")).is_err());
        assert_eq!(report.entries, 4);
        assert_eq!(
            report.tree_digest,
            tree::tree_digest(&fx.dest).expect("digest")
        );
        digests.push(report.tree_digest);
    }
    assert_eq!(
        digests[0], digests[1],
        "root and rootless unpacks of one image must give one tree digest"
    );
}

#[test]
fn huge_names_are_refused_cleanly_or_unpacked() {
    // 5,000 bytes in short components: over PATH_MAX, refused before any syscall.
    let fx = Fixture::new();
    let huge = "abcdefghi/".repeat(500) + "file";
    let tar = RawTar::new()
        .pax(&[("path", huge.as_bytes())])
        .file("placeholder", 0o644, b"x")
        .finish();
    match fx.unpack(&tar) {
        Err(UnpackError::NameTooLong { entry, len }) => {
            assert_eq!(len, huge.len());
            assert!(
                entry.len() < 400,
                "message not shortened: {} bytes",
                entry.len()
            );
        }
        other => panic!("expected NameTooLong, got {other:?}"),
    }
    fx.assert_contained();
    assert_eq!(fs::read_dir(&fx.dest).expect("ls").count(), 0);
    // One component over NAME_MAX, as a GNU long name.
    let fx = Fixture::new();
    let long = "x".repeat(300);
    let tar = RawTar::new()
        .gnu_long_name(long.as_bytes())
        .file("placeholder", 0o644, b"x")
        .finish();
    assert!(matches!(
        fx.unpack(&tar),
        Err(UnpackError::NameTooLong { .. })
    ));
    fx.assert_contained();
    // 1,000 bytes in legal components: unpacked.
    let fx = Fixture::new();
    let deep = "d".repeat(99) + "/";
    let name = deep.repeat(10) + "end";
    let tar = RawTar::new()
        .gnu_long_name(name.as_bytes())
        .file("placeholder", 0o644, b"deep")
        .finish();
    let report = fx.unpack(&tar).expect("unpack deep");
    assert_eq!(fs::read(fx.dest.join(&name)).expect("read"), b"deep");
    assert_eq!(
        report.tree_digest,
        tree::tree_digest(&fx.dest).expect("digest")
    );
}

#[test]
fn truncated_streams_are_archive_errors() {
    let fx = Fixture::new();
    let mut full = RawTar::new().file("big", 0o644, &[7u8; 4096]).finish();
    full.truncate(512 + 1000);
    match fx.unpack(&full) {
        Err(e @ UnpackError::Archive { .. }) => {
            assert!(e.to_string().contains("big"), "{e}");
        }
        other => panic!("expected Archive, got {other:?}"),
    }
    let fx = Fixture::new();
    let mut tar = RawTar::new().file("a", 0o644, b"a").unfinished();
    tar.extend_from_slice(&[1u8; 100]);
    assert!(matches!(fx.unpack(&tar), Err(UnpackError::Archive { .. })));
}

#[test]
fn destination_must_be_an_empty_directory() {
    let fx = Fixture::new();
    fs::write(fx.dest.join("already"), b"x").expect("write");
    let tar = RawTar::new().file("a", 0o644, b"a").finish();
    assert!(matches!(
        fx.unpack(&tar),
        Err(UnpackError::Destination { .. })
    ));
    let link = fx.root.join("dest-link");
    std::os::unix::fs::symlink(&fx.sentinel, &link).expect("symlink");
    let opts = UnpackOptions::for_current_user();
    let res = unpack(&mut tar.as_slice(), &link, &opts);
    assert!(
        matches!(res, Err(UnpackError::Destination { .. })),
        "{res:?}"
    );
    fs::remove_file(&link).expect("rm");
    fx.assert_contained();
}

#[test]
fn unsupported_members_fail_cleanly() {
    let fx = Fixture::new();
    let tar = RawTar::new()
        .pax(&[("GNU.sparse.major", b"1"), ("GNU.sparse.minor", b"0")])
        .file("GNUSparseFile.0/sparse", 0o644, b"map")
        .finish();
    assert!(matches!(
        fx.unpack(&tar),
        Err(UnpackError::Unsupported { .. })
    ));
    let fx = Fixture::new();
    let tar = RawTar::new().member(Hdr::new("label", b'V'), b"").finish();
    assert!(matches!(
        fx.unpack(&tar),
        Err(UnpackError::Unsupported { .. })
    ));
    fx.assert_contained();
}

#[test]
fn the_root_entry_cannot_be_a_file() {
    let fx = Fixture::new();
    let tar = RawTar::new().file("./", 0o644, b"x").finish();
    // `./` with type 0 and a trailing slash is a directory (old tar convention): accepted.
    fx.unpack(&tar).expect("unpack");
    let fx = Fixture::new();
    let tar = RawTar::new().symlink(".", "/etc").finish();
    fx.expect_hostile(&tar, ".");
}

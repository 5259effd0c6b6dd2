//! Locked alias images through the library: a lock pins a server build; it is served from
//! the cache, re-fetched by its build serial when the cache lost it, and refused with a precise
//! error when the build was pruned upstream and is not cached.

#[path = "util/image_server.rs"]
mod image_server;

use std::path::Path;

use image_server::{rootfs_tar_xz, sha256_hex, ImageServer};
use karapace_tui::events::MemorySink;
use karapace_tui::image::{ImageConfig, ImageError, Images};
use karapace_tui::manifest::{BaseImage, ImageRef};
use karapace_tui::store::Store;

const OLD: &str = "20260101_05:24";
const NEW: &str = "20260102_05:24";

fn debian() -> BaseImage {
    BaseImage {
        image: ImageRef::Alias {
            written: "debian".into(),
            distro: "debian".into(),
            release: "bookworm".into(),
        },
        sha256: None,
    }
}

fn images<'a>(store: &Store, server: &ImageServer, sink: &'a MemorySink) -> Images<'a> {
    let config = ImageConfig {
        server: server.url(),
        origin: "test".into(),
    };
    Images::new(store, config, sink)
}

fn arch() -> &'static str {
    karapace_tui::image::index::host_arch().expect("an LXC architecture name for this host")
}

#[test]
fn locked_build_comes_from_cache_then_server_then_fails_precisely() {
    let old = rootfs_tar_xz("old");
    let new = rootfs_tar_xz("new");
    let server = ImageServer::builder()
        .image("debian", "bookworm", arch(), "default", OLD, &old)
        .image("debian", "bookworm", arch(), "default", NEW, &new)
        .start();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store");
    let sink = MemorySink::default();
    let imgs = images(&store, &server, &sink);

    // Unlocked: the newest build.
    let newest = imgs.ensure(&debian(), None, false).expect("resolve newest");
    assert_eq!(newest.build, NEW);
    assert_eq!(newest.sha256, sha256_hex(&new));

    // A lock that pins the older build: fetched by its build serial, checked against the lock.
    let mut locked = newest.locked();
    locked.build = OLD.into();
    locked.archive_sha256 = sha256_hex(&old);
    locked.archive_size = old.len() as u64;
    let err = imgs
        .ensure(&debian(), Some(&locked), false)
        .expect_err("the tree digest in this lock is the new build's");
    assert!(matches!(err, ImageError::Tampered { .. }), "{err}");
    // Learn the old build's real tree digest, then lock it properly.
    imgs.cache()
        .remove(&sha256_hex(&old))
        .expect("drop the old image");
    let old_record = fetch_old_tree_digest(&server, &sink, &old);
    locked.tree_digest = old_record;
    let record = imgs
        .ensure(&debian(), Some(&locked), false)
        .expect("locked fetch");
    assert_eq!(record.build, OLD);

    // Offline with the locked image cached: no network needed.
    let requests = server.requests().len();
    imgs.ensure(&debian(), Some(&locked), true)
        .expect("offline from cache");
    assert_eq!(
        server.requests().len(),
        requests,
        "offline must not touch the server"
    );

    // Pruned upstream but still cached: fine. Pruned and not cached: a precise error.
    server.prune(&format!("debian/bookworm/{}/default", arch()), OLD);
    imgs.ensure(&debian(), Some(&locked), false)
        .expect("served from the cache");
    imgs.cache()
        .remove(&locked.archive_sha256)
        .expect("drop it");
    match imgs.ensure(&debian(), Some(&locked), false) {
        Err(ImageError::NotCached { build, sha256, .. }) => {
            assert_eq!(build, OLD);
            assert_eq!(sha256, sha256_hex(&old));
        }
        other => panic!("expected NotCached, got {other:?}"),
    }
    // Offline and not cached: says so without trying the server.
    let requests = server.requests().len();
    assert!(matches!(
        imgs.ensure(&debian(), Some(&locked), true),
        Err(ImageError::NotCached { .. })
    ));
    assert_eq!(server.requests().len(), requests);
}

/// The tree digest of the old build, by importing its archive as a local tarball into a
/// scratch store.
fn fetch_old_tree_digest(server: &ImageServer, sink: &MemorySink, old: &[u8]) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let tarball = dir.path().join("old.tar.xz");
    std::fs::write(&tarball, old).expect("write tarball");
    let scratch = Store::open(&dir.path().join("store")).expect("scratch store");
    let base = BaseImage {
        image: ImageRef::LocalPath(tarball),
        sha256: None,
    };
    let record = images(&scratch, server, sink)
        .ensure(&base, None, true)
        .expect("local import");
    assert!(Path::new(&record.source).ends_with("old.tar.xz"));
    record.tree_digest.to_string()
}

#[test]
fn offline_alias_uses_the_newest_cached_image_or_says_why_not() {
    let server = ImageServer::builder()
        .image(
            "debian",
            "bookworm",
            arch(),
            "default",
            OLD,
            &rootfs_tar_xz("x"),
        )
        .start();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store");
    let sink = MemorySink::default();
    let imgs = images(&store, &server, &sink);
    match imgs.ensure(&debian(), None, true) {
        Err(ImageError::Offline { detail }) => {
            assert!(detail.contains("debian/bookworm"), "{detail}")
        }
        other => panic!("expected Offline, got {other:?}"),
    }
    assert!(server.requests().is_empty(), "offline touched the server");
    let online = imgs.ensure(&debian(), None, false).expect("online");
    let offline = imgs
        .ensure(&debian(), None, true)
        .expect("offline from cache");
    assert_eq!(online.sha256, offline.sha256);
}

//! A real-size base image end to end: a `debootstrap --variant=minbase bookworm` root file
//! system, packed as tar.xz, served by the loopback image server, pulled through the
//! simplestreams index and built into an environment.
//!
//! The tarball takes a minute to make, so the test does not make it: `.ci/run` does, and
//! passes its path in `KARAPACE_TEST_ROOTFS_TARBALL`. Without it the test prints a visible
//! `SKIPPED:` line, unless `KARAPACE_REQUIRE_SANDBOX=1` (CI), where a missing prerequisite is
//! a failure.

#[path = "util/image_server.rs"]
mod image_server;
mod util;

use std::io::Write;
use std::path::PathBuf;

use image_server::ImageServer;
use util::Fixture;

/// Print a line that the test harness does not capture (it only captures the print macros).
fn visible(line: &str) {
    let mut err = std::io::stderr();
    writeln!(err, "{line}").expect("write to stderr");
}

fn tarball() -> Option<PathBuf> {
    match std::env::var_os("KARAPACE_TEST_ROOTFS_TARBALL") {
        Some(path) => Some(PathBuf::from(path)),
        None if std::env::var("KARAPACE_REQUIRE_SANDBOX").as_deref() == Ok("1") => panic!(
            "KARAPACE_REQUIRE_SANDBOX=1 but KARAPACE_TEST_ROOTFS_TARBALL is not set: \
             .ci/run makes it with debootstrap"
        ),
        None => {
            visible(
                "SKIPPED: real_image: set KARAPACE_TEST_ROOTFS_TARBALL to a debootstrap'd \
                 bookworm tar.xz (.ci/run makes one)",
            );
            None
        }
    }
}

#[test]
fn debootstrap_bookworm_pulls_builds_and_verifies() {
    let Some(path) = tarball() else { return };
    let bytes = std::fs::read(&path).expect("read the rootfs tarball");
    let arch = karapace_tui::image::index::host_arch().expect("LXC name of this architecture");
    let build = "20260101_05:24";
    let server = ImageServer::builder()
        .image("debian", "bookworm", arch, "default", build, &bytes)
        .start();
    let fx = Fixture::new();
    let with_server = |args: &[&str]| {
        fx.cmd(args.iter().copied())
            .env("KARAPACE_IMAGE_SERVER", server.url())
            .run()
    };

    // Through the index, as an alias would be resolved.
    let pulled = with_server(&["--json", "images", "pull", "debian/bookworm"]);
    let record = pulled.ok().json();
    assert_eq!(record["build"], build, "{pulled:?}");
    assert_eq!(record["size"], bytes.len() as u64);

    // Built into an environment from the archive's URL (the mock builds on real images).
    let item = format!(
        "{}/images/debian/bookworm/{arch}/default/{}/rootfs.tar.xz",
        server.url(),
        build.replace(':', "%3A")
    );
    fx.write_manifest("deb", &item, &["hello"]);
    let built = fx.build("deb");
    let id = built["id"].as_str().expect("id").to_string();
    let version = fx.run(&["exec", &id, "--", "cat", "etc/debian_version"]);
    assert!(version.ok().stdout().starts_with("12."), "{version:?}");
    let rootfs = fx.rootfs(&id);
    for path in [
        "usr/bin/apt-get",
        "usr/bin/dpkg",
        "etc/os-release",
        "var/lib/dpkg/status",
    ] {
        assert!(
            rootfs.join(path).exists(),
            "{path} missing from the environment"
        );
    }
    // The URL build fetched the archive again (a URL's sha256 is not known in advance) and
    // found the same image already cached: one copy is kept, used by the environment.
    let images = fx.json(&["images"]);
    let images = images.as_array().expect("images array");
    assert_eq!(images.len(), 1, "{images:?}");
    assert_eq!(images[0]["sha256"], record["sha256"]);
    assert_eq!(images[0]["used_by"].as_array().map(Vec::len), Some(1));

    let verified = fx.run(&["--json", "verify-store"]);
    let report = verified.ok().json();
    assert_eq!(
        report["problems"].as_array().map(Vec::len),
        Some(0),
        "{report}"
    );
    assert!(report["images_checked"].as_u64() >= Some(1), "{report}");
}

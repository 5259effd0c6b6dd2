//! The `namespace` backend through the CLI, on a real Debian base image (the debootstrap
//! tarball that `.ci/run` makes; see tests/real_image.rs). Needs user namespaces (or root) and
//! overlayfs: without them, or without the tarball, the tests print a visible `SKIPPED:` line,
//! unless `KARAPACE_REQUIRE_SANDBOX=1` (CI), where that is a failure.

mod util;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use util::Fixture;

/// The tarball and a fixture where the namespace backend works (see `util`).
fn setup(test: &str) -> Option<(Fixture, PathBuf)> {
    util::namespace_fixture("namespace", test)
}

fn manifest(tarball: &std::path::Path, extra: &str) -> String {
    format!(
        "manifest_version = 1\n[base]\nimage = \"{}\"\n[runtime]\nbackend = \"namespace\"\n{extra}",
        tarball.display()
    )
}

fn write(fx: &Fixture, dir: &str, text: &str) {
    let path = fx.path(dir);
    std::fs::create_dir_all(&path).expect("mkdir");
    std::fs::write(path.join("karapace.toml"), text).expect("write manifest");
}

fn overlay_mounts() -> usize {
    std::fs::read_to_string("/proc/self/mountinfo")
        .expect("mountinfo")
        .lines()
        .filter(|l| l.contains(" overlay "))
        .count()
}

#[test]
fn programs_run_isolated_on_the_image_and_write_only_to_the_environment() {
    let Some((fx, tarball)) = setup("programs_run_isolated") else {
        return;
    };
    let mounts_before = overlay_mounts();
    write(
        &fx,
        "deb",
        &manifest(&tarball, "network_isolation = true\n"),
    );
    let built = fx.build("deb");
    let id = built["id"].as_str().expect("id").to_string();
    assert_eq!(built["backend"], "namespace");

    let version = fx.run(&["exec", "deb", "--", "cat", "/etc/debian_version"]);
    assert!(version.ok().stdout().starts_with("12."), "{version:?}");
    fx.run(&["exec", "deb", "--", "sh", "-c", "exit 7"])
        .expect_code(7);

    // Writes land in the environment's upper layer, never in the shared image.
    fx.run(&[
        "exec",
        "deb",
        "--",
        "sh",
        "-c",
        "echo kept > /etc/karapace-test",
    ])
    .ok();
    let env_dir = fx.env_dir(&id);
    let upper = env_dir.join("upper/etc/karapace-test");
    assert_eq!(
        std::fs::read_to_string(&upper).expect("upper file"),
        "kept\n"
    );
    let images = fx.store().join("images");
    for entry in std::fs::read_dir(&images).expect("images dir") {
        let root = entry
            .expect("entry")
            .path()
            .join("rootfs/etc/karapace-test");
        assert!(
            !root.exists(),
            "the write reached the image: {}",
            root.display()
        );
    }

    // Isolated network: only lo. A clean environment: no host secrets.
    let net = fx.run(&["exec", "deb", "--", "cat", "/proc/net/dev"]);
    let ifaces: Vec<String> = net
        .ok()
        .stdout()
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next().map(|s| s.trim().to_string()))
        .collect();
    assert_eq!(ifaces, vec!["lo".to_string()], "{net:?}");
    let env = fx
        .cmd(["exec", "deb", "--", "env"])
        .env("AWS_SECRET_ACCESS_KEY", "leak")
        .env("SSH_AUTH_SOCK", "/tmp/leak")
        .run();
    let env = env.ok().stdout();
    assert!(!env.contains("leak"), "{env}");
    assert!(env.contains("KARAPACE_BACKEND=namespace"), "{env}");

    // Nothing stays mounted on the host, and destroy removes everything.
    assert_eq!(overlay_mounts(), mounts_before);
    fx.run(&["destroy", "deb"]).ok();
    assert!(!env_dir.exists());
}

#[test]
fn stop_ends_a_running_session() {
    let Some((fx, tarball)) = setup("stop_ends_a_running_session") else {
        return;
    };
    write(&fx, "deb", &manifest(&tarball, ""));
    fx.build("deb");
    let mut child = fx
        .cmd(["exec", "deb", "--", "sleep", "60"])
        .spawn_background();
    let deadline = Instant::now() + Duration::from_secs(20);
    while fx.row("deb")["state"] != "running" {
        assert!(Instant::now() < deadline, "never reported running");
        std::thread::sleep(Duration::from_millis(50));
    }
    // A second session joins the running one (tests/namespace/sessions.rs has the details).
    fx.run(&["exec", "deb", "--", "true"]).ok();
    fx.run(&["destroy", "deb"]).expect_code(1);
    fx.run(&["stop", "deb"]).ok();
    let status = child.wait().expect("wait");
    assert!(!status.success(), "sleep was not stopped: {status:?}");
    assert_eq!(fx.row("deb")["state"], "built");
}

#[test]
fn what_is_not_enforced_yet_is_said_on_every_run() {
    let Some((fx, tarball)) = setup("what_is_not_enforced_yet") else {
        return;
    };
    // Resource limits: tests/namespace/limits.rs.
    write(
        &fx,
        "deb",
        &manifest(&tarball, "").replace("[runtime]", "[hardware]\ngpu = true\n[runtime]"),
    );
    fx.build("deb");
    let out = fx.run(&["exec", "deb", "--", "true"]);
    out.ok();
    // This machine has no GPU: asked for, it is missing, which is said, never fatal.
    assert!(
        out.stderr
            .contains("integration gpu is not available here: the host has no /dev/dri"),
        "{out:?}"
    );
}

#[path = "namespace/archive.rs"]
mod archive;
#[path = "namespace/limits.rs"]
mod limits;
#[path = "namespace/sessions.rs"]
mod sessions;

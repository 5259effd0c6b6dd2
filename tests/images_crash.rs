//! Crashes while a base image is fetched, through the real binary against the loopback image
//! server: a SIGKILL in the middle of a (throttled) download, and `KARAPACE_CRASH_AT=N` at
//! every crash point of a first build from a URL image. After each crash the store verifies
//! clean, and building again gives exactly what an uncrashed build gives. Also two fetches of
//! one image at the same time, which must download it once.

mod util;

#[path = "util/image_server.rs"]
mod image_server;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use image_server::{rootfs_tar_xz, sha256_hex, ImageServer, Override};
use serde_json::Value;
use util::{dir_names, s, Fixture, Output, TestCommand};

const BUILD: &str = "20260902_08:05";
const PROJECT: &str = "proj";

fn product() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => panic!("no LXC architecture name known for {other} in this test"),
    };
    format!("debian/bookworm/{arch}/default")
}

fn rootfs_req() -> String {
    format!("/{}", ImageServer::rootfs_path(&product(), BUILD))
}

fn server(rootfs: &[u8]) -> ImageServer {
    let arch = product()
        .split('/')
        .nth(2)
        .map(str::to_string)
        .expect("arch");
    ImageServer::builder()
        .image("debian", "bookworm", &arch, "default", BUILD, rootfs)
        .start()
}

/// The binary with the fixture's store and home, the fixture server and a private config dir.
fn cmd(fx: &Fixture, server: &ImageServer, args: &[&str]) -> TestCommand {
    fx.cmd(args)
        .env("KARAPACE_IMAGE_SERVER", server.url())
        .env("XDG_CONFIG_HOME", fx.path("config"))
        .timeout(Duration::from_secs(20))
}

/// A fixture whose `proj/karapace.toml` uses the server's rootfs URL.
fn project(server: &ImageServer) -> Fixture {
    let fx = Fixture::new();
    let url = format!("{}{}", server.url(), rootfs_req());
    fx.write_manifest(PROJECT, &url, &["git", "make"]);
    fx
}

fn build(fx: &Fixture, server: &ImageServer) -> Output {
    let dir = fx.path(PROJECT);
    cmd(fx, server, &["--json", "build"]).arg(dir).run()
}

/// The id an uncrashed first build gives, from a fresh store.
fn reference_id(server: &ImageServer) -> String {
    let fx = project(server);
    let out = build(&fx, server);
    s(&out.ok().json(), "id")
}

fn temp_dirs(fx: &Fixture) -> BTreeSet<String> {
    dir_names(&fx.store().join("images"))
        .into_iter()
        .filter(|n| n.starts_with(".tmp-"))
        .collect()
}

/// `verify-store --json` exits 0 with no problem.
#[track_caller]
fn assert_verifies(fx: &Fixture, server: &ImageServer, when: &str) {
    let out = cmd(fx, server, &["--json", "verify-store"]).run();
    assert!(
        !out.timed_out && out.code() == Some(0),
        "verify-store {when}: {out:?}"
    );
    assert_eq!(out.json()["problems"], Value::Array(vec![]), "{when}");
}

/// The environment holds the whole tiny rootfs, and the cache the one verified image.
#[track_caller]
fn assert_complete(fx: &Fixture, id: &str, sha: &str, when: &str) {
    let root = fx.rootfs(id);
    let read = |rel: &str| {
        fs::read_to_string(root.join(rel)).unwrap_or_else(|e| panic!("{when}: {rel}: {e}"))
    };
    assert!(
        read("etc/os-release").contains("VERSION_ID=\"m\""),
        "{when}"
    );
    assert_eq!(read("etc/hostname"), "tiny\n", "{when}");
    let hello = "#!/bin/sh\necho \"hello from m\"\n";
    assert_eq!(read("usr/bin/hello"), hello, "{when}");
    assert_eq!(read("usr/bin/hello-again"), hello, "{when}");
    let link = fs::read_link(root.join("bin")).unwrap_or_else(|e| panic!("{when}: bin: {e}"));
    assert_eq!(link, Path::new("usr/bin"), "{when}");
    for pkg in ["git", "make"] {
        let db = root.join("var/lib/karapace-mock/packages").join(pkg);
        assert!(db.is_file(), "{when}: package {pkg} not installed");
    }
    let cached: BTreeSet<String> = dir_names(&fx.store().join("images"))
        .into_iter()
        .filter(|n| !n.starts_with('.'))
        .collect();
    assert_eq!(cached, BTreeSet::from([sha.to_string()]), "{when}");
}

#[test]
fn sigkill_mid_download_then_build_succeeds_and_gc_removes_the_temp_dir() {
    let rootfs = rootfs_tar_xz("m");
    let sha = sha256_hex(&rootfs);
    let server = server(&rootfs);
    let expected_id = reference_id(&server);
    let fx = project(&server);

    // About 3 s for the whole archive: plenty of time to kill the download half-way.
    let chunk = (rootfs.len() / 60).max(1);
    server.set_override(
        &rootfs_req(),
        Override::throttle(chunk, Duration::from_millis(50)),
    );
    let before = server.count(&rootfs_req());
    let mut child = cmd(&fx, &server, &["build"])
        .arg(fx.path(PROJECT))
        .spawn_background();
    let deadline = Instant::now() + Duration::from_secs(10);
    while temp_dirs(&fx).is_empty() || server.count(&rootfs_req()) == before {
        if Instant::now() > deadline {
            drop(child.kill());
            panic!("the download never started: {:?}", server.requests());
        }
        thread::sleep(Duration::from_millis(10));
    }
    thread::sleep(Duration::from_millis(200)); // some bytes in, far from all of them
    child.kill().expect("SIGKILL the build");
    let status = child.wait().expect("wait for the killed build");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL),
        "the build finished before it was killed: {status:?}"
    );
    let leftovers = temp_dirs(&fx);
    assert_eq!(leftovers.len(), 1, "one half-made fetch directory");
    assert!(fx.list().is_empty(), "nothing half-built is listed");
    assert!(!fx.path("proj/karapace.lock").exists());

    server.clear_override(&rootfs_req());
    let out = build(&fx, &server);
    assert_eq!(s(&out.ok().json(), "id"), expected_id);
    assert_complete(&fx, &expected_id, &sha, "after the killed download");
    // The next fetch uses a new temp directory and leaves the dead one alone: gc removes it.
    assert_eq!(
        temp_dirs(&fx),
        leftovers,
        "the next fetch does not remove it"
    );
    assert_verifies(&fx, &server, "with a leftover temp directory");

    let out = cmd(&fx, &server, &["--json", "gc"]).run();
    let gc = out.ok().json();
    let temps: Vec<PathBuf> = gc["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|i| i["kind"] == "image_temp")
        .map(|i| PathBuf::from(s(i, "path")))
        .collect();
    let leftover = fx
        .store()
        .join("images")
        .join(leftovers.first().expect("one"));
    assert_eq!(temps, vec![leftover], "{gc}");
    assert!(temp_dirs(&fx).is_empty());
    assert_complete(&fx, &expected_id, &sha, "after gc");
    assert_verifies(&fx, &server, "after gc");
}

/// `crashpoint N: NAME` lines of a traced run, as (N, NAME).
fn crash_points(stderr: &str) -> Vec<(usize, String)> {
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix("crashpoint "))
        .filter(|l| !l.contains("killing the process"))
        .filter_map(|l| {
            let (n, name) = l.split_once(": ")?;
            Some((n.parse().ok()?, name.to_string()))
        })
        .collect()
}

#[test]
fn a_crash_at_every_point_of_a_first_url_image_build_recovers() {
    let rootfs = rootfs_tar_xz("m");
    let sha = sha256_hex(&rootfs);
    let server = server(&rootfs);

    // An uncrashed, traced run: the id to reach and the crash points to go through.
    let fx = project(&server);
    let dir = fx.path(PROJECT);
    let out = cmd(&fx, &server, &["--json", "build"])
        .arg(&dir)
        .env("KARAPACE_CRASH_TRACE", "1")
        .run();
    let expected_id = s(&out.ok().json(), "id");
    let points = crash_points(&out.stderr);
    let names: BTreeSet<&str> = points.iter().map(|(_, n)| n.as_str()).collect();
    for wanted in [
        "image: archive streamed",
        "image: record written",
        "image: installed",
    ] {
        assert!(
            names.contains(wanted),
            "no crash point {wanted:?}: {points:?}"
        );
    }
    let numbers: Vec<usize> = points.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        numbers,
        (1..=points.len()).collect::<Vec<_>>(),
        "{points:?}"
    );

    for (n, name) in &points {
        let when = format!("after a crash at point {n} ({name})");
        let fx = project(&server);
        let dir = fx.path(PROJECT);
        let out = cmd(&fx, &server, &["--json", "build"])
            .arg(&dir)
            .env("KARAPACE_CRASH_AT", n.to_string())
            .env("KARAPACE_CRASH_TRACE", "1")
            .run();
        assert!(out.killed(), "{when}: the build was not killed: {out:?}");
        assert_verifies(&fx, &server, &when);
        let listed: Vec<(String, String)> = fx
            .list()
            .iter()
            .map(|r| (s(r, "id"), s(r, "state")))
            .collect();
        let whole = listed.is_empty() || listed == [(expected_id.clone(), "built".to_string())];
        assert!(whole, "{when}: listed {listed:?}");

        let out = build(&fx, &server);
        assert_eq!(s(&out.ok().json(), "id"), expected_id, "{when}");
        assert_complete(&fx, &expected_id, &sha, &when);
        assert_verifies(&fx, &server, &format!("{when}, rebuilt"));
    }
}

// ---------------------------------------------------------------------------------------------
// Concurrent fetches

/// Slows the rootfs download to about a second, so that two fetches overlap.
fn throttled(rootfs: &[u8]) -> ImageServer {
    let server = server(rootfs);
    let chunk = (rootfs.len() / 10).max(1);
    server.set_override(
        &rootfs_req(),
        Override::throttle(chunk, Duration::from_millis(100)),
    );
    server
}

/// Runs two commands at the same time, each from its own thread.
fn both_at_once(a: TestCommand, b: TestCommand) -> [Output; 2] {
    thread::scope(|scope| {
        let a = scope.spawn(|| a.run());
        let b = scope.spawn(|| b.run());
        [a.join().expect("thread a"), b.join().expect("thread b")]
    })
}

fn cached(fx: &Fixture) -> BTreeSet<String> {
    dir_names(&fx.store().join("images"))
}

#[test]
fn two_concurrent_pulls_download_the_image_once() {
    let rootfs = rootfs_tar_xz("m");
    let sha = sha256_hex(&rootfs);
    let server = throttled(&rootfs);
    let fx = Fixture::new();
    let pull = || {
        cmd(
            &fx,
            &server,
            &["--json", "images", "pull", "debian/bookworm"],
        )
    };
    for out in both_at_once(pull(), pull()) {
        assert_eq!(out.ok().json()["sha256"], sha.as_str());
    }
    let requests = server.requests();
    assert_eq!(server.count(&rootfs_req()), 1, "{requests:?}");
    assert_eq!(cached(&fx), BTreeSet::from([sha]));
}

#[test]
fn two_concurrent_builds_with_one_url_image_download_it_once() {
    let rootfs = rootfs_tar_xz("m");
    let sha = sha256_hex(&rootfs);
    let server = throttled(&rootfs);
    let fx = Fixture::new();
    let url = format!("{}{}", server.url(), rootfs_req());
    fx.write_manifest("a", &url, &["git", "make"]);
    fx.write_manifest("b", &url, &["git", "make", "vim"]);
    let build = |dir: &str| cmd(&fx, &server, &["--json", "build"]).arg(fx.path(dir));
    let ids: BTreeSet<String> = both_at_once(build("a"), build("b"))
        .iter()
        .map(|out| s(&out.ok().json(), "id"))
        .collect();
    assert_eq!(ids.len(), 2, "two environments: {ids:?}");
    for id in &ids {
        assert_complete(&fx, id, &sha, "after two concurrent builds");
    }
    let requests = server.requests();
    assert_eq!(server.count(&rootfs_req()), 1, "{requests:?}");
}

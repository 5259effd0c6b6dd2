//! Base images through the real binary, against the loopback image server
//! (`tests/util/image_server.rs`): `images pull` (simplestreams and CSV), failure knobs, URL and
//! local-tarball images on the mock backend, offline builds, pruned upstream builds,
//! and tampering. Crashes and concurrent fetches are in `images_crash.rs`.
//!
//! Not tested here: a server slower than the read timeout. The CLI's HTTP timeouts are fixed
//! (30 s read) and not configurable, so that case is covered by the library test
//! `image_fixture.rs::a_slow_server_times_out` only.

mod util;

#[path = "util/image_server.rs"]
mod image_server;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use image_server::ImageServerBuilder as ServerBuilder;
use image_server::{rootfs_tar_gz, rootfs_tar_xz, sha256_hex, ImageServer, Override};
use serde_json::Value;
use util::{dir_names, flip_byte, mock_manifest, s, Fixture, Output, TestCommand};

const OLD: &str = "20260901_20:34";
const NEW: &str = "20260902_08:05";

/// The LXC architecture name of this host, as the binary queries it.
fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => panic!("no LXC architecture name known for {other} in this test"),
    }
}

fn product() -> String {
    format!("debian/bookworm/{}/default", arch())
}

/// The request path of a build's rootfs, as the server logs it (decoded).
fn rootfs_req(build: &str) -> String {
    format!("/{}", ImageServer::rootfs_path(&product(), build))
}

/// A fixture store and home plus a loopback image server with two debian/bookworm builds.
struct Setup {
    fx: Fixture,
    server: ImageServer,
    old: Vec<u8>,
    new: Vec<u8>,
}

impl Setup {
    fn new() -> Setup {
        Setup::with(|b| b)
    }

    fn with(f: impl FnOnce(ServerBuilder) -> ServerBuilder) -> Setup {
        let old = rootfs_tar_xz("old");
        let new = rootfs_tar_xz("new");
        let builder = ImageServer::builder()
            .image("debian", "bookworm", arch(), "default", OLD, &old)
            .image("debian", "bookworm", arch(), "default", NEW, &new)
            .image("alpine", "3.20", arch(), "default", NEW, &old);
        Setup {
            fx: Fixture::new(),
            server: f(builder).start(),
            old,
            new,
        }
    }

    fn cmd<I: IntoIterator<Item = S>, S: AsRef<std::ffi::OsStr>>(&self, args: I) -> TestCommand {
        self.fx
            .cmd(args)
            .env("KARAPACE_IMAGE_SERVER", self.server.url())
            .env("XDG_CONFIG_HOME", self.fx.path("config"))
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).run()
    }

    #[track_caller]
    fn json(&self, args: &[&str]) -> Value {
        let out = self.cmd(["--json"]).args(args).run();
        out.ok();
        out.json()
    }

    #[track_caller]
    fn images(&self) -> Vec<Value> {
        match self.json(&["images"]) {
            Value::Array(rows) => rows,
            other => panic!("images --json is not an array: {other}"),
        }
    }

    /// The URL of a build's rootfs on the fixture server.
    fn url(&self, build: &str) -> String {
        format!("{}{}", self.server.url(), rootfs_req(build))
    }

    /// `--json build <root>/<dir>` with extra flags.
    fn build(&self, dir: &str, flags: &[&str]) -> Output {
        self.cmd(["--json", "build"])
            .args(flags)
            .arg(self.fx.path(dir))
            .run()
    }

    #[track_caller]
    fn build_ok(&self, dir: &str) -> String {
        let out = self.build(dir, &[]);
        out.ok();
        s(&out.json(), "id")
    }

    fn images_dir(&self) -> PathBuf {
        self.fx.store().join("images")
    }

    /// The lock of a project directory, parsed.
    fn lock(&self, dir: &str) -> toml::Value {
        let text = fs::read_to_string(self.fx.path(dir).join("karapace.lock")).expect("read lock");
        toml::from_str(&text).expect("lock is TOML")
    }

    /// `cat <file>` inside the environment (cwd = its rootfs).
    fn cat(&self, env: &str, file: &str) -> String {
        let out = self.run(&["exec", env, "--", "cat", file]);
        out.ok();
        out.stdout()
    }

    /// Nothing was cached: no record, no temp directory, no entry directory.
    #[track_caller]
    fn assert_nothing_cached(&self) {
        assert_eq!(self.images(), Vec::<Value>::new(), "images --json");
        let names = dir_names(&self.images_dir());
        assert!(names.is_empty(), "leftovers under images/: {names:?}");
    }
}

/// A mock manifest with an optional `[base] sha256` pin.
fn write_manifest(fx: &Fixture, dir: &str, image: &str, pin: Option<&str>, pkgs: &[&str]) {
    let path = fx.path(dir);
    fs::create_dir_all(&path).expect("create project dir");
    let mut text = mock_manifest(image, pkgs);
    if let Some(pin) = pin {
        text = text.replacen("[base]\n", &format!("[base]\nsha256 = {pin:?}\n"), 1);
    }
    fs::write(path.join("karapace.toml"), text).expect("write manifest");
}

/// Exited non-zero by itself (not hung, not killed).
#[track_caller]
fn assert_failed(out: &Output) {
    let failed = !out.timed_out && out.code().is_some_and(|c| c != 0);
    assert!(failed, "expected a failure: {out:?}");
}

fn kinds_and_paths(gc: &Value) -> Vec<(String, String)> {
    gc["items"]
        .as_array()
        .expect("gc items")
        .iter()
        .map(|i| (s(i, "kind"), s(i, "path")))
        .collect()
}

fn check_pull(t: &Setup, csv: bool) {
    let sha = sha256_hex(&t.new);
    let record = t.json(&["images", "pull", "debian/bookworm"]);
    assert_eq!(record["sha256"], sha.as_str(), "{record}");
    assert_eq!(record["build"], NEW, "the newest of two builds: {record}");
    assert_ne!(record["sha256"], sha256_hex(&t.old).as_str());
    assert_eq!(record["size"], t.new.len(), "{record}");
    let item_path = format!("images/{}/{NEW}/rootfs.tar.xz", product());
    assert_eq!(record["item_path"], item_path.as_str(), "{record}");
    assert_eq!(record["server"], t.server.url().as_str(), "{record}");
    assert_eq!(record["reference"], "alias:debian/bookworm", "{record}");
    assert_eq!(t.server.count(&rootfs_req(NEW)), 1);
    assert_eq!(t.server.count(&rootfs_req(OLD)), 0);
    let used_simplestreams = t.server.count("/streams/v1/images.json") > 0;
    assert_eq!(used_simplestreams, !csv, "{:?}", t.server.requests());

    let list = t.images();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["sha256"], sha.as_str());
    assert_eq!(list[0]["used_by"], Value::Array(vec![]), "{list:?}");
    let os_release = t.images_dir().join(&sha).join("rootfs/etc/os-release");
    let text = fs::read_to_string(&os_release).expect("unpacked os-release");
    assert!(text.contains("VERSION_ID=\"new\""), "{text}");

    // Pulled again: resolved, found in the cache, not downloaded.
    let again = t.json(&["images", "pull", "debian/bookworm"]);
    assert_eq!(again["sha256"], sha.as_str());
    assert_eq!(t.server.count(&rootfs_req(NEW)), 1, "downloaded once");
    assert_eq!(t.images().len(), 1);
}

#[test]
fn pull_resolves_the_newest_build_via_simplestreams_and_caches_it_once() {
    check_pull(&Setup::new(), false);
}

#[test]
fn pull_via_the_csv_index_when_simplestreams_is_missing() {
    check_pull(&Setup::with(|b| b.without_simplestreams()), true);
}

#[test]
fn a_sha256_mismatch_fails_and_caches_nothing() {
    let t = Setup::with(|b| b.corrupt_sha(&product(), NEW));
    let out = t.run(&["images", "pull", "debian/bookworm"]);
    assert_failed(&out);
    let expected = sha256_hex(b"not the rootfs");
    let actual = sha256_hex(&t.new);
    assert!(
        out.stderr.contains(&expected),
        "names the expected sha: {out:?}"
    );
    assert!(
        out.stderr.contains(&actual),
        "names the actual sha: {out:?}"
    );
    t.assert_nothing_cached();
}

#[test]
fn a_truncated_download_fails_and_caches_nothing() {
    let t = Setup::new();
    t.server
        .set_override(&rootfs_req(NEW), Override::truncate_after(t.new.len() / 2));
    let out = t.run(&["images", "pull", "debian/bookworm"]);
    assert_failed(&out);
    t.assert_nothing_cached();
}

#[test]
fn an_unknown_product_lists_the_available_ones() {
    let t = Setup::new();
    let out = t.run(&["images", "pull", "debian/trixie"]);
    out.expect_code(1);
    let wanted = format!("debian/trixie/{}/default", arch());
    assert!(out.stderr.contains(&wanted), "{out:?}");
    assert!(
        out.stderr.contains(&product()),
        "lists debian/bookworm: {out:?}"
    );
    assert!(
        !out.stderr.contains("alpine"),
        "only similar products: {out:?}"
    );
    t.assert_nothing_cached();
}

#[test]
fn server_errors_are_retried_until_the_download_succeeds() {
    let t = Setup::new();
    t.server
        .set_override(&rootfs_req(NEW), Override::fail(500, 2));
    let record = t.json(&["images", "pull", "debian/bookworm"]);
    assert_eq!(record["sha256"], sha256_hex(&t.new).as_str());
    assert_eq!(
        t.server.count(&rootfs_req(NEW)),
        3,
        "two 500s, then the body"
    );
    assert_eq!(t.images().len(), 1);
}

/// Plain http off loopback is refused before any connection. The host is `0.0.0.0` (not a
/// loopback address, so it must be refused) with the fixture's port: on Linux a connection to
/// it would reach the fixture, so "no request in the fixture's log" proves no connection was
/// made, and a regression cannot send traffic off this machine.
#[test]
fn plain_http_off_loopback_is_refused_before_connecting() {
    let t = Setup::new();
    let url = format!("http://0.0.0.0:{}{}", t.server.port(), rootfs_req(NEW));
    write_manifest(&t.fx, "proj", &url, None, &[]);
    let started = Instant::now();
    for out in [t.build("proj", &[]), t.run(&["images", "pull", &url])] {
        assert_failed(&out);
        let msg = out.stderr.to_lowercase();
        assert!(msg.contains("https") && msg.contains("loopback"), "{out:?}");
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(t.server.requests(), vec![], "no connection was made");
    t.assert_nothing_cached();
}

#[test]
fn a_url_image_is_built_locked_listed_protected_and_collected() {
    let t = Setup::new();
    let (url, sha) = (t.url(NEW), sha256_hex(&t.new));
    t.fx.write_manifest("proj", &url, &["git"]);
    let id = t.build_ok("proj");
    assert!(t
        .cat("proj", "etc/os-release")
        .contains("VERSION_ID=\"new\""));
    assert_eq!(
        t.cat("proj", "usr/bin/hello-again"),
        "#!/bin/sh\necho \"hello from new\"\n"
    );
    let link = fs::read_link(t.fx.rootfs(&id).join("bin")).expect("bin symlink");
    assert_eq!(link, Path::new("usr/bin"));

    let list = t.images();
    assert_eq!(list.len(), 1, "{list:?}");
    let base = &t.lock("proj")["base"];
    assert_eq!(base["image"].as_str(), Some(format!("url:{url}").as_str()));
    assert_eq!(base["archive_sha256"].as_str(), Some(sha.as_str()));
    assert_eq!(base["archive_size"].as_integer(), Some(t.new.len() as i64));
    assert_eq!(
        base["tree_digest"].as_str(),
        list[0]["tree_digest"].as_str()
    );
    assert_eq!(list[0]["sha256"], sha.as_str());
    let used_by = list[0]["used_by"].as_array().expect("used_by").clone();
    assert_eq!(used_by.len(), 1, "{list:?}");
    let user = used_by[0].as_str().expect("string");
    assert!(user.contains("proj") && user.contains(&id[..8]), "{user}");

    let out = t.run(&["images", "rm", &sha[..12]]);
    out.expect_code(1);
    assert!(out.stderr.contains("used by"), "{out:?}");
    assert!(t.images_dir().join(&sha).is_dir());

    t.run(&["destroy", "proj"]).ok();
    let gc = t.json(&["gc"]);
    let image_items: Vec<_> = kinds_and_paths(&gc)
        .into_iter()
        .filter(|(kind, _)| kind == "image")
        .collect();
    let path = t.images_dir().join(&sha).display().to_string();
    assert_eq!(image_items, vec![("image".to_string(), path)], "{gc}");
    t.assert_nothing_cached();
    assert_eq!(t.server.count(&rootfs_req(NEW)), 1);
}

#[test]
fn a_local_tarball_works_offline_and_a_wrong_pin_caches_nothing() {
    let t = Setup::new();
    let tarball = rootfs_tar_gz("local");
    let sha = sha256_hex(&tarball);
    for dir in ["pinned", "proj"] {
        fs::create_dir_all(t.fx.path(dir)).expect("mkdir");
        fs::write(t.fx.path(dir).join("rootfs.tar.gz"), &tarball).expect("write tarball");
    }
    let wrong = "0".repeat(64);
    write_manifest(&t.fx, "pinned", "./rootfs.tar.gz", Some(&wrong), &[]);
    let out = t.build("pinned", &["--offline"]);
    assert_failed(&out);
    assert!(
        out.stderr.contains(&wrong) && out.stderr.contains(&sha),
        "{out:?}"
    );
    assert!(!t.fx.path("pinned/karapace.lock").exists());
    t.assert_nothing_cached();

    write_manifest(&t.fx, "proj", "./rootfs.tar.gz", None, &["git"]);
    let id = s(&t.build("proj", &[]).ok().json(), "id");
    assert!(t
        .cat("proj", "etc/os-release")
        .contains("VERSION_ID=\"local\""));
    let base = &t.lock("proj")["base"];
    assert_eq!(base["archive_sha256"].as_str(), Some(sha.as_str()));
    assert_eq!(
        base["archive_size"].as_integer(),
        Some(tarball.len() as i64)
    );
    let want = format!("path:{}", t.fx.path("proj/rootfs.tar.gz").display());
    assert_eq!(base["image"].as_str(), Some(want.as_str()));
    // Built again offline after destroy, with the lock, then with neither lock nor cache.
    t.run(&["destroy", "proj"]).ok();
    assert_eq!(s(&t.build("proj", &["--offline"]).ok().json(), "id"), id);
    t.run(&["destroy", "proj"]).ok();
    t.run(&["gc"]).ok();
    t.assert_nothing_cached();
    fs::remove_file(t.fx.path("proj/karapace.lock")).expect("remove lock");
    assert_eq!(s(&t.build("proj", &["--offline"]).ok().json(), "id"), id);
    assert_eq!(t.images().len(), 1);
    assert_eq!(
        t.server.requests(),
        vec![],
        "a local tarball needs no server"
    );
}

#[test]
fn offline_with_a_url_image_and_an_empty_cache_fails() {
    let t = Setup::new();
    t.fx.write_manifest("proj", &t.url(NEW), &[]);
    let out = t.build("proj", &["--offline"]);
    assert_failed(&out);
    assert!(out.stderr.to_lowercase().contains("offline"), "{out:?}");
    assert_eq!(t.server.requests(), vec![]);
    t.assert_nothing_cached();
    assert!(!t.fx.path("proj/karapace.lock").exists());
}

#[test]
fn offline_rebuild_after_destroy_uses_the_cached_image() {
    let t = Setup::new();
    t.fx.write_manifest("proj", &t.url(NEW), &["git"]);
    let id = t.build_ok("proj");
    t.run(&["destroy", "proj"]).ok();
    t.server.clear_log();
    assert_eq!(s(&t.build("proj", &["--offline"]).ok().json(), "id"), id);
    assert_eq!(t.server.requests(), vec![], "no request to the server");
    assert!(t
        .cat("proj", "etc/os-release")
        .contains("VERSION_ID=\"new\""));
}

#[test]
fn a_locked_url_image_pruned_upstream_builds_from_the_cache_only() {
    let t = Setup::new();
    t.fx.write_manifest("proj", &t.url(NEW), &[]);
    let id = t.build_ok("proj");
    let served = t
        .server
        .root()
        .join(ImageServer::rootfs_path(&product(), NEW));
    fs::remove_file(served).expect("remove the served rootfs");
    t.run(&["destroy", "proj"]).ok();

    // Still cached: rebuilt without asking the server.
    t.server.clear_log();
    assert_eq!(t.build_ok("proj"), id);
    assert_eq!(t.server.requests(), vec![]);

    t.run(&["destroy", "proj"]).ok();
    let gc = t.json(&["gc"]);
    assert!(
        kinds_and_paths(&gc).iter().any(|(k, _)| k == "image"),
        "{gc}"
    );
    let out = t.build("proj", &[]);
    out.expect_code(1);
    let fetch_failed = out.stderr.contains("was not found (HTTP 404)");
    assert!(fetch_failed, "says the image could not be fetched: {out:?}");
    assert!(out.stderr.contains(&product()), "names the URL: {out:?}");
    assert_eq!(t.server.count(&rootfs_req(NEW)), 1, "a 404 is not retried");
    t.assert_nothing_cached();
    assert!(t.fx.list().is_empty());
}

/// Builds `a` and `b` from the same URL image, destroys `b` (its lock stays), then changes one
/// byte of the cached image's os-release. Returns the image's sha256.
fn tampered_setup(t: &Setup) -> String {
    let url = t.url(NEW);
    t.fx.write_manifest("a", &url, &["git"]);
    t.fx.write_manifest("b", &url, &["vim"]);
    t.build_ok("a");
    t.build_ok("b");
    t.run(&["destroy", "b"]).ok();
    t.run(&["verify-store"]).ok();
    let sha = sha256_hex(&t.new);
    flip_byte(&t.images_dir().join(&sha).join("rootfs/etc/os-release"), 0);
    sha
}

#[test]
fn verify_store_reports_a_tampered_image() {
    let t = Setup::new();
    let sha = tampered_setup(&t);
    let out = t.cmd(["--json", "verify-store"]).run();
    out.expect_code(3);
    let report = out.json();
    let problems = report["problems"].as_array().expect("problems");
    let hits: Vec<&Value> = problems
        .iter()
        .filter(|p| p["kind"] == "corrupt_image" && s(p, "path").contains(&sha))
        .collect();
    assert_eq!(hits.len(), 1, "{report}");
    assert_eq!(problems.len(), 1, "only the image is damaged: {report}");
}

#[test]
fn building_from_a_tampered_cached_image_fails_as_an_integrity_error() {
    let t = Setup::new();
    let sha = tampered_setup(&t);
    let out = t.build("b", &[]);
    out.expect_code(3);
    assert!(out.stderr.contains(&sha), "{out:?}");
    let names: Vec<Value> = t.fx.list().iter().map(|r| r["name"].clone()).collect();
    assert_eq!(names, vec![Value::from("a")], "b was not built");
}

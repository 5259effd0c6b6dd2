//! The image-server client and index resolution against the loopback fixture server
//! (`tests/util/image_server.rs`): no internet, a tiny rootfs made here.

#[path = "util/image_server.rs"]
mod image_server;

use std::io::{self, Read};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use image_server::{rootfs_tar_gz, rootfs_tar_xz, sha256_hex, ImageServer, Override};
use karapace_tui::events::{Event, MemorySink};
use karapace_tui::image::http::{split_rate, HttpClient, HttpConfig, HttpError, ProgressReader};
use karapace_tui::image::index::{
    resolve, resolve_build, ImageQuery, IndexError, IndexKind, ResolvedImage,
};

const OLD: &str = "20260901_20:34";
const NEW: &str = "20260902_08:05";
const PRODUCT: &str = "debian/bookworm/amd64/default";

fn query() -> ImageQuery {
    ImageQuery {
        distro: "debian".into(),
        release: "bookworm".into(),
        arch: "amd64".into(),
        variant: "default".into(),
    }
}

/// Short timeouts and backoff so failure cases stay fast.
fn client_with(retries: u32, read_timeout: Duration) -> HttpClient {
    HttpClient::new(HttpConfig {
        connect_timeout: Duration::from_secs(2),
        read_timeout,
        retries,
        backoff: Duration::from_millis(20),
    })
}

fn client() -> HttpClient {
    client_with(2, Duration::from_secs(5))
}

/// Two builds of debian/bookworm/amd64 plus one arm64 and one alpine product.
fn two_builds() -> (image_server::ImageServerBuilder, Vec<u8>, Vec<u8>) {
    let old = rootfs_tar_xz("old");
    let new = rootfs_tar_xz("new");
    let builder = ImageServer::builder()
        .image("debian", "bookworm", "amd64", "default", OLD, &old)
        .image("debian", "bookworm", "amd64", "default", NEW, &new)
        .image("debian", "bookworm", "arm64", "default", NEW, &new)
        .image("alpine", "3.20", "amd64", "default", NEW, &old);
    (builder, old, new)
}

fn download(client: &HttpClient, url: &str) -> io::Result<Vec<u8>> {
    let (mut body, _) = client.get_stream(url).map_err(io::Error::other)?;
    let mut bytes = Vec::new();
    body.read_to_end(&mut bytes)?;
    Ok(bytes)
}

fn rootfs_request_path(build: &str) -> String {
    format!("/{}", ImageServer::rootfs_path(PRODUCT, build))
}

const INDEX: &str = "/streams/v1/index.json";
const IMAGES: &str = "/streams/v1/images.json";

fn started() -> (ImageServer, Vec<u8>, Vec<u8>) {
    let (builder, old, new) = two_builds();
    (builder.start(), old, new)
}

fn text_err(client: &HttpClient, url: &str, limit: u64) -> HttpError {
    client.get_text(url, limit).unwrap_err()
}

#[test]
fn simplestreams_resolves_the_newest_build() {
    let (server, _, new) = started();
    let (client, base) = (client(), server.url());
    let image = resolve(&client, &format!("{base}/"), &query()).unwrap();
    let expected = ResolvedImage {
        server: base.clone(),
        product: PRODUCT.into(),
        build: NEW.into(),
        url: format!("{base}/images/{PRODUCT}/20260902_08%3A05/rootfs.tar.xz"),
        item_path: format!("images/{PRODUCT}/{NEW}/rootfs.tar.xz"),
        sha256: sha256_hex(&new),
        size: Some(new.len() as u64),
        via: IndexKind::Simplestreams,
    };
    assert_eq!(image, expected);
    assert_eq!(server.count("/meta/1.0/index-system"), 0);
    let bytes = download(&client, &image.url).unwrap();
    assert_eq!(sha256_hex(&bytes), image.sha256);
    let downloads = server.count(&rootfs_request_path(NEW));
    assert_eq!(downloads, 1, "downloaded once");
}

#[test]
fn csv_index_and_sha256sums_when_simplestreams_is_missing() {
    let (builder, old, new) = two_builds();
    let server = builder.without_simplestreams().start();
    let (client, base) = (client(), server.url());
    let image = resolve(&client, &base, &query()).unwrap();
    let summary = (image.via, image.build.as_str(), image.size);
    assert_eq!(summary, (IndexKind::Csv, NEW, None));
    assert_eq!(image.sha256, sha256_hex(&new));
    let item_path = format!("images/{PRODUCT}/{NEW}/rootfs.tar.xz");
    assert_eq!(image.item_path, item_path);
    assert!(
        image.url.ends_with("/20260902_08%3A05/rootfs.tar.xz"),
        "{}",
        image.url
    );
    assert_eq!(server.count(INDEX), 1, "a 404 is not retried");
    let sums = format!("/images/{PRODUCT}/{NEW}/SHA256SUMS");
    assert_eq!(server.count(&sums), 1);
    let bytes = download(&client, &image.url).unwrap();
    assert_eq!(sha256_hex(&bytes), image.sha256);

    // An older build that the CSV index no longer lists is still found in its directory.
    let pinned = resolve_build(&client, &base, &query(), OLD).unwrap();
    assert_eq!((pinned.build.as_str(), pinned.via), (OLD, IndexKind::Csv));
    assert_eq!(pinned.sha256, sha256_hex(&old));
}

#[test]
fn csv_fallback_when_simplestreams_always_fails() {
    let (server, _, new) = started();
    server.set_override(INDEX, Override::always(500));
    let client = client_with(1, Duration::from_secs(5));
    let image = resolve(&client, &server.url(), &query()).unwrap();
    assert_eq!(
        (image.via, image.sha256),
        (IndexKind::Csv, sha256_hex(&new))
    );
    assert_eq!(server.count(INDEX), 2);
}

#[test]
fn csv_without_rootfs_in_sha256sums_is_no_checksum() {
    let (builder, _, _) = two_builds();
    let builder = builder.without_simplestreams();
    let server = builder.unlisted_in_sha256sums(PRODUCT, NEW).start();
    match resolve(&client(), &server.url(), &query()) {
        Err(IndexError::NoChecksum { url, file }) => {
            assert_eq!(file, "rootfs.tar.xz");
            assert!(url.ends_with("/20260902_08%3A05/SHA256SUMS"), "{url}");
        }
        other => panic!("expected NoChecksum, got {other:?}"),
    }
}

#[test]
fn unknown_product_lists_similar_ones() {
    for csv_only in [false, true] {
        let (mut builder, _, _) = two_builds();
        if csv_only {
            builder = builder.without_simplestreams();
        }
        let server = builder.start();
        let mut q = query();
        q.arch = "riscv64".into();
        let err = resolve(&client(), &server.url(), &q).unwrap_err();
        let IndexError::NoProduct { available, .. } = &err else {
            panic!("expected NoProduct, got {err:?}");
        };
        let similar = [
            "debian/bookworm/amd64/default",
            "debian/bookworm/arm64/default",
        ];
        assert_eq!(available, &similar, "csv_only={csv_only}");
        let msg = err.to_string();
        assert!(msg.contains("debian/bookworm/riscv64/default"), "{msg}");
    }
}

#[test]
fn sha_corrupted_on_the_server_does_not_match_the_download() {
    let (builder, _, _) = two_builds();
    let server = builder.corrupt_sha(PRODUCT, NEW).start();
    let client = client();
    let image = resolve(&client, &server.url(), &query()).unwrap();
    let bytes = download(&client, &image.url).unwrap();
    assert_ne!(sha256_hex(&bytes), image.sha256);
}

#[test]
fn server_errors_are_retried_then_succeed() {
    let (server, _, new) = started();
    server.set_override(INDEX, Override::fail(500, 2));
    let client = client_with(3, Duration::from_secs(5));
    let image = resolve(&client, &server.url(), &query()).unwrap();
    let expected = (IndexKind::Simplestreams, sha256_hex(&new));
    assert_eq!((image.via, image.sha256), expected);
    assert_eq!(server.count(INDEX), 3);
}

#[test]
fn persistent_server_error_is_a_status_error_after_all_attempts() {
    let (server, _, _) = started();
    let path = rootfs_request_path(NEW);
    server.set_override(&path, Override::always(500));
    let url = format!("{}{path}", server.url());
    let Err(err) = client_with(2, Duration::from_secs(5)).get_stream(&url) else {
        panic!("expected Status 500, got a body");
    };
    assert!(
        matches!(err, HttpError::Status { status: 500, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains(&url), "{err}");
    assert_eq!(server.count(&path), 3, "retries + 1 attempts");
}

#[test]
fn a_404_is_not_found_and_not_retried() {
    let server = ImageServer::builder().start();
    let err = text_err(
        &client(),
        &format!("{}/images/gone/SHA256SUMS", server.url()),
        1024,
    );
    assert!(matches!(err, HttpError::NotFound { .. }), "{err:?}");
    assert!(err.to_string().contains("pruned upstream"), "{err}");
    assert_eq!(server.count("/images/gone/SHA256SUMS"), 1);
}

#[test]
fn a_slow_server_times_out() {
    let (server, _, _) = started();
    server.set_override(INDEX, Override::delay(Duration::from_secs(2)));
    let started = Instant::now();
    let client = client_with(1, Duration::from_millis(300));
    match resolve(&client, &server.url(), &query()) {
        Err(IndexError::Http(HttpError::Timeout { url, .. })) => {
            assert!(url.ends_with(INDEX), "{url}");
        }
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert_eq!(server.count(INDEX), 2, "timeouts are retried");
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
}

#[test]
fn a_truncated_body_is_an_error_not_a_short_success() {
    let (server, _, new) = started();
    let path = rootfs_request_path(NEW);
    server.set_override(&path, Override::truncate_after(new.len() / 2));
    let url = format!("{}{path}", server.url());
    let (mut body, len) = client().get_stream(&url).unwrap();
    assert_eq!(len, Some(new.len() as u64));
    let mut bytes = Vec::new();
    let err = body.read_to_end(&mut bytes).unwrap_err();
    assert!(bytes.len() < new.len());
    let inner = HttpError::from_io(&err);
    assert!(matches!(inner, Some(HttpError::Body { .. })), "{err:?}");
}

#[test]
fn truncated_index_is_retried() {
    let (server, _, _) = started();
    server.set_override(IMAGES, Override::truncate_after(100));
    let client = client_with(1, Duration::from_secs(5));
    let err = text_err(&client, &format!("{}{IMAGES}", server.url()), 1 << 20);
    assert!(matches!(err, HttpError::Body { .. }), "{err:?}");
    assert_eq!(server.count(IMAGES), 2);
}

#[test]
fn text_over_the_limit_is_too_large() {
    let (server, _, _) = started();
    let err = text_err(&client(), &format!("{}{IMAGES}", server.url()), 64);
    assert!(
        matches!(err, HttpError::TooLarge { limit: 64, .. }),
        "{err:?}"
    );
    assert_eq!(server.count(IMAGES), 1);
}

#[test]
fn plain_http_is_refused_off_loopback_before_connecting() {
    let started = Instant::now();
    let client = client();
    for url in [
        "http://192.0.2.1/streams/v1/index.json",
        "http://example.com/x",
    ] {
        let err = text_err(&client, url, 1024);
        assert!(matches!(err, HttpError::Refused { .. }), "{err:?}");
        assert!(err.to_string().contains("use https"), "{err}");
    }
    let err = resolve(&client, "http://192.0.2.1", &query()).unwrap_err();
    assert!(
        matches!(err, IndexError::Http(HttpError::Refused { .. })),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_millis(500));
    for ok in [
        "http://localhost:1/",
        "http://127.0.0.2/",
        "http://[::1]:8080/x",
    ] {
        assert!(HttpClient::check_allowed(ok).is_ok(), "{ok}");
    }
}

#[test]
fn localhost_is_served() {
    let (server, _, _) = started();
    let url = format!("http://localhost:{}{INDEX}", server.port());
    let text = client().get_text(&url, 1 << 20).unwrap();
    assert!(text.contains("image-downloads"));
}

#[test]
fn redirects_are_followed_but_checked() {
    let (server, _, _) = started();
    server.set_override("/moved", Override::redirect(302, INDEX));
    let away = Override::redirect(301, "http://192.0.2.1/index.json");
    server.set_override("/away", away);
    let client = client();
    let text = client.get_text(&format!("{}/moved", server.url()), 1 << 20);
    assert!(text.unwrap().contains("image-downloads"));
    let err = text_err(&client, &format!("{}/away", server.url()), 1 << 20);
    let refused = matches!(&err, HttpError::Refused { url, .. } if url.contains("192.0.2.1"));
    assert!(refused, "{err:?}");
}

#[test]
fn a_pruned_build_is_gone() {
    for csv_only in [false, true] {
        let (mut builder, old, _) = two_builds();
        if csv_only {
            builder = builder.without_simplestreams();
        }
        let server = builder.start();
        let (client, base) = (client(), server.url());
        let pinned = resolve_build(&client, &base, &query(), OLD).unwrap();
        assert_eq!(pinned.sha256, sha256_hex(&old));
        server.prune(PRODUCT, OLD);
        let err = resolve_build(&client, &base, &query(), OLD).unwrap_err();
        assert!(
            matches!(err, IndexError::BuildGone { .. }),
            "{csv_only}: {err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains(OLD) && msg.contains(PRODUCT), "{msg}");
        // The newest build is unaffected.
        assert_eq!(resolve(&client, &base, &query()).unwrap().build, NEW);
    }
}

#[test]
fn connection_refused_is_a_connect_error() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let client = client_with(0, Duration::from_secs(2));
    let err = text_err(&client, &format!("http://127.0.0.1:{port}/x"), 1024);
    assert!(matches!(err, HttpError::Connect { .. }), "{err:?}");
}

#[test]
fn an_unresolvable_host_is_a_dns_error() {
    let client = client_with(0, Duration::from_secs(2));
    let err = text_err(&client, "https://karapace-test.invalid/x", 1024);
    let dns = matches!(&err, HttpError::Dns { host, .. } if host == "karapace-test.invalid");
    assert!(dns, "{err:?}");
}

#[test]
fn progress_is_reported_while_streaming() {
    let payload: Vec<u8> = (0..64 * 1024u32).map(|i| (i * 7 % 251) as u8).collect();
    let server = ImageServer::builder().file("big.bin", &payload).start();
    let throttle = Override::throttle(8 * 1024, Duration::from_millis(40));
    server.set_override("/big.bin", throttle);
    let url = format!("{}/big.bin", server.url());
    let (body, len) = client().get_stream(&url).unwrap();
    let sink = MemorySink::default();
    let mut reader = ProgressReader::new(body, "download big.bin".into(), len, &sink);
    let mut bytes = Vec::new();
    reader.read_to_end(&mut bytes).unwrap();
    assert_eq!(bytes, payload);
    let progress: Vec<(String, u64, Option<u64>)> = sink
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Progress { task, done, total } => Some((task, done, total)),
            _ => None,
        })
        .collect();
    assert!(progress.len() >= 3, "{progress:?}");
    let monotonic = progress.windows(2).all(|w| w[0].1 <= w[1].1);
    assert!(monotonic, "{progress:?}");
    let (task, done, total) = progress.last().unwrap();
    let size = payload.len() as u64;
    assert_eq!((*done, *total), (size, Some(size)));
    let (name, rate) = split_rate(task);
    assert_eq!(name, "download big.bin");
    assert!(rate.is_some_and(|r| r.ends_with("/s")), "{task}");
}

/// `(path, type, mode, link target)` of every entry.
fn entries(tar_bytes: &[u8]) -> Vec<(String, tar::EntryType, u32, String)> {
    let mut archive = tar::Archive::new(tar_bytes);
    let entries = archive.entries().unwrap().map(Result::unwrap);
    entries
        .map(|e| {
            let h = e.header();
            let link = h.link_name().unwrap().unwrap_or_default();
            let path = e.path().unwrap().display().to_string();
            (
                path,
                h.entry_type(),
                h.mode().unwrap(),
                link.display().to_string(),
            )
        })
        .collect()
}

#[test]
fn the_tiny_rootfs_has_dirs_files_links_and_a_script() {
    let (mut from_xz, mut from_gz) = (Vec::new(), Vec::new());
    let xz = rootfs_tar_xz("m1");
    xz2::read::XzDecoder::new(&xz[..])
        .read_to_end(&mut from_xz)
        .unwrap();
    let gz = rootfs_tar_gz("m1");
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut from_gz)
        .unwrap();
    assert_eq!(from_xz, from_gz);
    assert_eq!(xz, rootfs_tar_xz("m1"), "deterministic");
    assert_ne!(xz, rootfs_tar_xz("m2"));

    use tar::EntryType::{Directory as D, Link as H, Regular as F, Symlink as S};
    let expected = [
        ("etc/", D, 0o755, ""),
        ("root/", D, 0o700, ""),
        ("tmp/", D, 0o1777, ""),
        ("usr/", D, 0o755, ""),
        ("usr/bin/", D, 0o755, ""),
        ("var/", D, 0o755, ""),
        ("var/lib/", D, 0o755, ""),
        ("etc/os-release", F, 0o644, ""),
        ("etc/hostname", F, 0o644, ""),
        ("usr/bin/hello", F, 0o755, ""),
        ("bin", S, 0o777, "usr/bin"),
        ("usr/bin/hello-again", H, 0o755, "usr/bin/hello"),
    ];
    let expected: Vec<_> = expected
        .iter()
        .map(|(p, t, m, l)| (p.to_string(), *t, *m, l.to_string()))
        .collect();
    assert_eq!(entries(&from_xz), expected);
}

#[test]
fn the_fixture_tree_looks_like_the_real_server() {
    let (server, _, new) = started();
    let read = |rel: &str| std::fs::read_to_string(server.root().join(rel)).unwrap();
    let csv = read("meta/1.0/index-system");
    let line = format!("debian;bookworm;amd64;default;{NEW};/images/{PRODUCT}/{NEW}/\n");
    assert!(csv.contains(&line), "{csv}");
    assert!(
        !csv.contains(OLD),
        "the CSV index lists only the newest build"
    );
    let sums = read(&format!("images/{PRODUCT}/{NEW}/SHA256SUMS"));
    assert!(sums.contains(&format!("{}  rootfs.tar.xz\n", sha256_hex(&new))));
    let images: serde_json::Value = serde_json::from_str(&read("streams/v1/images.json")).unwrap();
    let product = &images["products"]["debian:bookworm:amd64:default"];
    let aliases = "debian/bookworm/default,debian/bookworm/default/amd64";
    assert_eq!(product["aliases"], aliases);
    let items = &product["versions"][NEW]["items"];
    assert_eq!(items["root.tar.xz"]["ftype"], "root.tar.xz");
    assert_eq!(items["root.tar.xz"]["size"], new.len());
    assert_eq!(items["lxd.tar.xz"]["ftype"], "lxd.tar.xz");
    // Served with the `:` percent-encoded, as real clients request it.
    let url = format!(
        "{}/images/{PRODUCT}/20260902_08%3A05/SHA256SUMS",
        server.url()
    );
    assert_eq!(client().get_text(&url, 4096).unwrap(), sums);
}

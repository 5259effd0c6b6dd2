use super::*;
use crate::image::http::HttpConfig;

const SHA_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const SHA_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

fn query() -> ImageQuery {
    ImageQuery {
        distro: "debian".into(),
        release: "bookworm".into(),
        arch: "amd64".into(),
        variant: "default".into(),
    }
}

#[test]
fn csv_index_lines_with_and_without_trailing_slash() {
    let text = "debian;bookworm;amd64;default;20240101_05:24;/images/debian/bookworm/amd64/default/20240101_05:24/\n\
                alpine;3.20;arm64;cloud;20240102_13:00;/images/alpine/3.20/arm64/cloud/20240102_13:00\r\n\
                \n\
                broken;line\n\
                nopath;x;amd64;default;20240101_05:24;\n";
    let entries = parse_csv_index(text);
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert_eq!(
        entries[0],
        CsvEntry {
            dist: "debian".into(),
            release: "bookworm".into(),
            arch: "amd64".into(),
            variant: "default".into(),
            build: "20240101_05:24".into(),
            path: "/images/debian/bookworm/amd64/default/20240101_05:24/".into(),
        }
    );
    assert_eq!(
        entries[1].path,
        "/images/alpine/3.20/arm64/cloud/20240102_13:00"
    );
    assert!(entries[0].matches(&query()));
    assert!(!entries[1].matches(&query()));
}

#[test]
fn sha256sums_text_and_binary_modes() {
    let text = format!(
        "{SHA_A}  rootfs.tar.xz\n{}  *meta.tar.xz\n{SHA_B}\t./incus.tar.xz\nnot-hex  x\n{SHA_A}\n",
        SHA_B.to_ascii_uppercase()
    );
    assert_eq!(
        parse_sha256sums(&text),
        vec![
            ("rootfs.tar.xz".to_string(), SHA_A.to_string()),
            ("meta.tar.xz".to_string(), SHA_B.to_string()),
            ("incus.tar.xz".to_string(), SHA_B.to_string()),
        ]
    );
    assert_eq!(lookup_sum(&text, "rootfs.tar.xz").as_deref(), Some(SHA_A));
    assert_eq!(lookup_sum(&text, "disk.qcow2"), None);
}

#[test]
fn paths_encode_the_build_colon() {
    assert_eq!(
        join_url(
            "https://images.linuxcontainers.org",
            "/images/archlinux/current/amd64/default/20260901_20:34/rootfs.tar.xz"
        ),
        "https://images.linuxcontainers.org/images/archlinux/current/amd64/default/20260901_20%3A34/rootfs.tar.xz"
    );
    assert_eq!(encode_path("a b%/~x"), "a%20b%25/~x");
}

#[test]
fn lxc_arch_names() {
    assert_eq!(lxc_arch("x86_64", true), Some("amd64"));
    assert_eq!(lxc_arch("aarch64", true), Some("arm64"));
    assert_eq!(lxc_arch("arm", true), Some("armhf"));
    assert_eq!(lxc_arch("riscv64", true), Some("riscv64"));
    assert_eq!(lxc_arch("powerpc64", true), Some("ppc64el"));
    assert_eq!(lxc_arch("powerpc64", false), None);
    assert_eq!(lxc_arch("s390x", false), Some("s390x"));
    assert_eq!(lxc_arch("x86", true), Some("i386"));
    assert_eq!(lxc_arch("mips", true), None);
    if std::env::consts::ARCH == "x86_64" {
        assert_eq!(host_arch(), Some("amd64"));
    }
}

fn products_json(items_newest: &str) -> Products {
    let json = format!(
        r#"{{"content_id":"images","datatype":"image-downloads","format":"products:1.0",
        "products":{{"debian:bookworm:amd64:default":{{"aliases":"debian/bookworm","arch":"amd64",
        "os":"Debian","release":"bookworm","variant":"default","versions":{{
          "20240101_05:24":{{"items":{{"anything":{{"ftype":"root.tar.xz",
             "path":"images/debian/bookworm/amd64/default/20240101_05:24/rootfs.tar.xz",
             "sha256":"{SHA_A}","size":10}}}}}},
          "20240102_05:24":{{"items":{items_newest}}}}}}},
        "debian:bookworm:arm64:default":{{"versions":{{}}}},
        "debian:trixie:amd64:default":{{"versions":{{}}}},
        "alpine:3.20:amd64:default":{{"versions":{{}}}}}}}}"#
    );
    serde_json::from_str(&json).unwrap()
}

fn client() -> HttpClient {
    HttpClient::new(HttpConfig::default())
}

#[test]
fn products_dispatch_on_ftype_not_item_key() {
    let items = format!(
        r#"{{"root.tar.xz":{{"ftype":"squashfs","path":"wrong","sha256":"{SHA_A}","size":1}},
            "x":{{"ftype":"lxd.tar.xz","path":"meta","sha256":"{SHA_A}","size":2,
                  "combined_sha256":"{SHA_A}"}},
            "rootfs.tar.xz":{{"ftype":"root.tar.xz",
                  "path":"images/debian/bookworm/amd64/default/20240102_05:24/rootfs.tar.xz",
                  "sha256":"{SHA_B}","size":42}}}}"#
    );
    let products = products_json(&items);
    let base = "https://example.org";
    let image = from_products(&client(), base, "u", &products, &query(), Pick::Newest).unwrap();
    assert_eq!(image.build, "20240102_05:24");
    assert_eq!(image.sha256, SHA_B);
    assert_eq!(image.size, Some(42));
    assert_eq!(image.product, "debian/bookworm/amd64/default");
    assert_eq!(
        image.url,
        "https://example.org/images/debian/bookworm/amd64/default/20240102_05%3A24/rootfs.tar.xz"
    );
    assert_eq!(image.via, IndexKind::Simplestreams);

    let pinned = from_products(
        &client(),
        base,
        "u",
        &products,
        &query(),
        Pick::Build("20240101_05:24"),
    )
    .unwrap();
    assert_eq!(pinned.sha256, SHA_A);
    let gone_err = from_products(
        &client(),
        base,
        "u",
        &products,
        &query(),
        Pick::Build("1999"),
    )
    .unwrap_err();
    assert!(
        matches!(gone_err, IndexError::BuildGone { .. }),
        "{gone_err}"
    );
}

#[test]
fn newest_build_without_rootfs_is_skipped() {
    let items = format!(r#"{{"disk":{{"ftype":"disk-kvm.img","path":"d","sha256":"{SHA_B}"}}}}"#);
    let products = products_json(&items);
    let image = from_products(
        &client(),
        "https://e",
        "u",
        &products,
        &query(),
        Pick::Newest,
    )
    .unwrap();
    assert_eq!(image.build, "20240101_05:24");
    let err = from_products(
        &client(),
        "https://e",
        "u",
        &products,
        &query(),
        Pick::Build("20240102_05:24"),
    )
    .unwrap_err();
    assert!(matches!(err, IndexError::NoRootfs { .. }), "{err}");
}

#[test]
fn malformed_sha_is_a_parse_error() {
    let items = r#"{"r":{"ftype":"root.tar.xz","path":"p/rootfs.tar.xz","sha256":"zz"}}"#;
    let products = products_json(items);
    let err = from_products(
        &client(),
        "https://e",
        "u",
        &products,
        &query(),
        Pick::Newest,
    )
    .unwrap_err();
    assert!(matches!(err, IndexError::Parse { .. }), "{err}");
}

#[test]
fn similar_products_prefer_the_same_release_then_distro() {
    let ids: Vec<[String; 4]> = [
        "debian:bookworm:arm64:default",
        "debian:bookworm:amd64:cloud",
        "debian:trixie:amd64:default",
        "alpine:3.20:amd64:default",
    ]
    .iter()
    .filter_map(|k| split4(k, ':'))
    .collect();
    assert_eq!(
        similar_products(&query(), &ids),
        vec![
            "debian/bookworm/amd64/cloud",
            "debian/bookworm/arm64/default"
        ]
    );
    let mut other = query();
    other.release = "sid".into();
    assert_eq!(similar_products(&other, &ids).len(), 3);
    other.distro = "fedora".into();
    assert_eq!(similar_products(&other, &ids), vec!["alpine", "debian"]);
}

#[test]
fn no_product_message_lists_similar_images() {
    let err = IndexError::NoProduct {
        query: "debian/sid/amd64/default".into(),
        server: "https://e".into(),
        available: vec!["debian/bookworm/amd64/default".into()],
    };
    let msg = err.to_string();
    assert!(
        msg.contains("debian/sid/amd64/default") && msg.contains("debian/bookworm"),
        "{msg}"
    );
}

//! Resolving an image `(distro, release, arch, variant)` to one build's rootfs on an LXC image
//! server (layout: shared design note "image-server", D.1–D.3).
//!
//! Order: the simplestreams index first (`streams/v1/index.json` → the `image-downloads`
//! entry's products file, usually `streams/v1/images.json`), which carries a sha256 and size
//! per item. When that index is missing (404) or unusable (another HTTP status, malformed),
//! the CSV index `meta/1.0/index-system` is used instead; it has no checksums, so the build
//! directory's `SHA256SUMS` must then list `rootfs.tar.xz`. Unreachable servers (DNS, connect,
//! TLS, timeouts) fail at once: the CSV index lives on the same host.
//!
//! Items are chosen by `ftype` (`root.tar.xz`), never by item key, as Incus does
//! (`shared/simplestreams/products.go`). Build ids (`YYYYMMDD_HH:MM`) sort as strings.
//! The CSV path lives in `index_csv.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use super::http::{HttpClient, HttpError};
use csv::{from_csv, lookup_sum};
pub use csv::{parse_csv_index, parse_sha256sums, CsvEntry};

/// The simplestreams `ftype` of a container rootfs tarball, and its file name in a build
/// directory.
const ROOT_FTYPE: &str = "root.tar.xz";
const ROOT_FILE: &str = "rootfs.tar.xz";
const STREAM_INDEX: &str = "streams/v1/index.json";
const CSV_INDEX: &str = "meta/1.0/index-system";
const SMALL_LIMIT: u64 = 4 << 20;
/// images.linuxcontainers.org's products file is a few MiB; leave ample room.
const PRODUCTS_LIMIT: u64 = 128 << 20;

/// Which image to look for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageQuery {
    pub distro: String,
    pub release: String,
    /// An LXC (Debian-style) arch name: `amd64`, `arm64`, … (see [`host_arch`]).
    pub arch: String,
    /// Usually `default`; also `cloud` and others.
    pub variant: String,
}

impl ImageQuery {
    /// The `default` variant for this machine's arch; `None` on an arch LXC does not build for.
    pub fn for_host(distro: &str, release: &str) -> Option<ImageQuery> {
        Some(ImageQuery {
            distro: distro.to_string(),
            release: release.to_string(),
            arch: host_arch()?.to_string(),
            variant: "default".to_string(),
        })
    }

    /// The product id `distro/release/arch/variant`.
    pub fn product_id(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.distro, self.release, self.arch, self.variant
        )
    }

    /// The simplestreams product key `distro:release:arch:variant`.
    pub fn product_key(&self) -> String {
        format!(
            "{}:{}:{}:{}",
            self.distro, self.release, self.arch, self.variant
        )
    }
}

impl fmt::Display for ImageQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.product_id())
    }
}

/// This machine's arch in LXC's naming, from Rust's `std::env::consts::ARCH`.
pub fn host_arch() -> Option<&'static str> {
    lxc_arch(std::env::consts::ARCH, cfg!(target_endian = "little"))
}

fn lxc_arch(rust_arch: &str, little_endian: bool) -> Option<&'static str> {
    match rust_arch {
        "x86_64" => Some("amd64"),
        "aarch64" => Some("arm64"),
        "arm" => Some("armhf"),
        "riscv64" => Some("riscv64"),
        "powerpc64" if little_endian => Some("ppc64el"),
        "s390x" => Some("s390x"),
        "x86" => Some("i386"),
        _ => None,
    }
}

/// Which index a [`ResolvedImage`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IndexKind {
    Simplestreams,
    Csv,
}

/// One build's rootfs: where it is and what it must hash to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedImage {
    /// The server base URL, without a trailing `/`.
    pub server: String,
    /// `distro/release/arch/variant`.
    pub product: String,
    /// The build id, e.g. `20260901_20:34`.
    pub build: String,
    /// Relative to the server, unencoded, e.g.
    /// `images/debian/bookworm/amd64/default/20260901_20:34/rootfs.tar.xz`.
    pub item_path: String,
    /// `server/item_path` with `:` (and anything else outside a URL path) percent-encoded.
    pub url: String,
    /// Lower-case hex sha256 of the rootfs tarball.
    pub sha256: String,
    /// The size in bytes, when the index states it (the CSV index does not).
    pub size: Option<u64>,
    pub via: IndexKind,
}

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("the image index {url} is malformed: {detail}")]
    Parse { url: String, detail: String },
    #[error("no image `{query}` on {server}{}", available_hint(.available))]
    NoProduct {
        query: String,
        server: String,
        available: Vec<String>,
    },
    #[error(
        "build {build} of `{product}` has no container rootfs (no `root.tar.xz` item); pick \
         another image"
    )]
    NoRootfs { product: String, build: String },
    #[error(
        "{url} does not list `{file}`: the CSV index has no checksums of its own, so the image \
         cannot be verified"
    )]
    NoChecksum { url: String, file: String },
    #[error(
        "build {build} of `{product}` is no longer on the image server: old builds are pruned \
         upstream, so a lock that pins it can only be rebuilt from the local cache"
    )]
    BuildGone { product: String, build: String },
}

fn available_hint(available: &[String]) -> String {
    if available.is_empty() {
        "; the server lists no images".to_string()
    } else {
        format!("; similar images there: {}", available.join(", "))
    }
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Percent-encodes everything in a URL path but unreserved characters and `/`; the build's
/// `:` becomes `%3A`.
pub fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len() + 8);
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn join_url(base: &str, rel: &str) -> String {
    format!("{base}/{}", encode_path(rel.trim_start_matches('/')))
}

/// Which build to pick.
#[derive(Clone, Copy)]
enum Pick<'a> {
    Newest,
    Build(&'a str),
}

/// Resolves the newest build of `query` on `server` (see the module docs for the order).
pub fn resolve(
    client: &HttpClient,
    server: &str,
    query: &ImageQuery,
) -> Result<ResolvedImage, IndexError> {
    resolve_with(client, server, query, Pick::Newest)
}

/// Looks up one specific build (a locked one that must be reproduced); a build, or a whole
/// product, that is no longer listed is [`IndexError::BuildGone`].
pub fn resolve_build(
    client: &HttpClient,
    server: &str,
    query: &ImageQuery,
    build: &str,
) -> Result<ResolvedImage, IndexError> {
    resolve_with(client, server, query, Pick::Build(build))
}

fn resolve_with(
    client: &HttpClient,
    server: &str,
    query: &ImageQuery,
    pick: Pick<'_>,
) -> Result<ResolvedImage, IndexError> {
    let base = server.trim_end_matches('/');
    HttpClient::check_allowed(base)?;
    match load_products(client, base)? {
        Some((url, products)) => from_products(client, base, &url, &products, query, pick),
        None => from_csv(client, base, query, pick),
    }
}

#[derive(Deserialize)]
struct StreamIndex {
    index: BTreeMap<String, StreamEntry>,
}

#[derive(Deserialize)]
struct StreamEntry {
    #[serde(default)]
    datatype: String,
    #[serde(default)]
    path: String,
}

#[derive(Deserialize)]
struct Products {
    products: BTreeMap<String, Product>,
}

#[derive(Deserialize)]
struct Product {
    #[serde(default)]
    versions: BTreeMap<String, Version>,
}

#[derive(Deserialize)]
struct Version {
    #[serde(default)]
    items: BTreeMap<String, Item>,
}

#[derive(Deserialize)]
struct Item {
    #[serde(default)]
    ftype: String,
    #[serde(default)]
    path: String,
    #[serde(default)]
    sha256: Option<String>,
    #[serde(default)]
    size: Option<u64>,
}

/// Whether a failure to read a simplestreams file means "use the CSV index instead".
fn falls_back(err: &HttpError) -> bool {
    matches!(
        err,
        HttpError::NotFound { .. } | HttpError::Status { .. } | HttpError::TooLarge { .. }
    )
}

/// The products file and its URL, or `None` when simplestreams is missing or unusable.
fn load_products(
    client: &HttpClient,
    base: &str,
) -> Result<Option<(String, Products)>, IndexError> {
    let index_url = join_url(base, STREAM_INDEX);
    let text = match client.get_text(&index_url, SMALL_LIMIT) {
        Ok(text) => text,
        Err(err) if falls_back(&err) => return Ok(None),
        Err(err) => return Err(err.into()),
    };
    let Ok(index) = serde_json::from_str::<StreamIndex>(&text) else {
        return Ok(None);
    };
    let Some(entry) = index
        .index
        .values()
        .find(|e| e.datatype == "image-downloads" && !e.path.is_empty())
    else {
        return Ok(None);
    };
    let products_url = join_url(base, &entry.path);
    let text = match client.get_text(&products_url, PRODUCTS_LIMIT) {
        Ok(text) => text,
        Err(err) if falls_back(&err) => return Ok(None),
        Err(err) => return Err(err.into()),
    };
    Ok(serde_json::from_str::<Products>(&text)
        .ok()
        .map(|products| (products_url, products)))
}

/// The container rootfs item of a version, by `ftype`.
fn root_of(version: &Version) -> Option<&Item> {
    version.items.values().find(|i| i.ftype == ROOT_FTYPE)
}

/// The build `pick` names and its rootfs item.
fn pick_version<'p>(
    product: &'p Product,
    query: &ImageQuery,
    pick: Pick<'_>,
) -> Result<(String, &'p Item), IndexError> {
    match pick {
        Pick::Build(build) => {
            let version = product
                .versions
                .get(build)
                .ok_or_else(|| gone(query, build))?;
            let item = root_of(version).ok_or_else(|| no_rootfs(query, build))?;
            Ok((build.to_string(), item))
        }
        Pick::Newest => {
            let newest = product
                .versions
                .iter()
                .rev()
                .find_map(|(b, v)| Some((b, root_of(v)?)));
            match newest {
                Some((build, item)) => Ok((build.clone(), item)),
                None => {
                    let build = product
                        .versions
                        .keys()
                        .next_back()
                        .cloned()
                        .unwrap_or_default();
                    Err(no_rootfs(query, &build))
                }
            }
        }
    }
}

fn from_products(
    client: &HttpClient,
    base: &str,
    products_url: &str,
    products: &Products,
    query: &ImageQuery,
    pick: Pick<'_>,
) -> Result<ResolvedImage, IndexError> {
    let Some(product) = products.products.get(&query.product_key()) else {
        let ids = products
            .products
            .keys()
            .filter_map(|key| split4(key, ':'))
            .collect::<Vec<_>>();
        return Err(missing_product(base, query, pick, &ids));
    };
    let (build, item) = pick_version(product, query, pick)?;
    if item.path.is_empty() {
        return Err(IndexError::Parse {
            url: products_url.to_string(),
            detail: format!(
                "the {ROOT_FTYPE} item of {} {build} has no path",
                query.product_key()
            ),
        });
    }
    let item_path = item.path.trim_start_matches('/').to_string();
    let sha256 = match &item.sha256 {
        Some(hex) if is_sha256_hex(hex) => hex.to_ascii_lowercase(),
        Some(hex) => {
            return Err(IndexError::Parse {
                url: products_url.to_string(),
                detail: format!("`{hex}` is not a sha256 (item {item_path})"),
            })
        }
        None => sha_from_sums(client, base, &item_path)?,
    };
    Ok(ResolvedImage {
        server: base.to_string(),
        product: query.product_id(),
        build,
        url: join_url(base, &item_path),
        item_path,
        sha256,
        size: item.size,
        via: IndexKind::Simplestreams,
    })
}

/// The sha256 of `item_path` from the `SHA256SUMS` in the same directory.
fn sha_from_sums(client: &HttpClient, base: &str, item_path: &str) -> Result<String, IndexError> {
    let (dir, file) = item_path.rsplit_once('/').unwrap_or(("", item_path));
    let url = join_url(base, &format!("{dir}/SHA256SUMS"));
    let text = client.get_text(&url, SMALL_LIMIT)?;
    lookup_sum(&text, file).ok_or_else(|| IndexError::NoChecksum {
        url,
        file: file.to_string(),
    })
}

fn split4(key: &str, sep: char) -> Option<[String; 4]> {
    let mut parts = key.splitn(4, sep).map(str::to_string);
    Some([parts.next()?, parts.next()?, parts.next()?, parts.next()?])
}

fn gone(query: &ImageQuery, build: &str) -> IndexError {
    IndexError::BuildGone {
        product: query.product_id(),
        build: build.to_string(),
    }
}

fn no_rootfs(query: &ImageQuery, build: &str) -> IndexError {
    IndexError::NoRootfs {
        product: query.product_id(),
        build: build.to_string(),
    }
}

/// The error for a product the index does not list: for a pinned build the build is gone;
/// otherwise name the images that look closest to what was asked for.
fn missing_product(
    base: &str,
    query: &ImageQuery,
    pick: Pick<'_>,
    ids: &[[String; 4]],
) -> IndexError {
    if let Pick::Build(build) = pick {
        return gone(query, build);
    }
    IndexError::NoProduct {
        query: query.product_id(),
        server: base.to_string(),
        available: similar_products(query, ids),
    }
}

/// Products of the same distro and release; failing that, of the same distro; failing that,
/// the distros the server has. Sorted, at most [`MAX_SIMILAR`].
fn similar_products(query: &ImageQuery, ids: &[[String; 4]]) -> Vec<String> {
    let same_release: BTreeSet<String> = ids
        .iter()
        .filter(|[d, r, _, _]| *d == query.distro && *r == query.release)
        .map(|id| id.join("/"))
        .collect();
    let same_distro: BTreeSet<String> = ids
        .iter()
        .filter(|[d, _, _, _]| *d == query.distro)
        .map(|id| id.join("/"))
        .collect();
    let chosen = if !same_release.is_empty() {
        same_release
    } else if !same_distro.is_empty() {
        same_distro
    } else {
        ids.iter().map(|[d, _, _, _]| d.clone()).collect()
    };
    chosen.into_iter().take(MAX_SIMILAR).collect()
}

const MAX_SIMILAR: usize = 30;

#[path = "index_csv.rs"]
mod csv;

#[cfg(test)]
#[path = "index_tests.rs"]
mod tests;

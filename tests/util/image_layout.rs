//! The tree behind the loopback image server (`image_server.rs`): tiny rootfs tarballs made
//! in memory, and the layout of images.linuxcontainers.org written from them (build
//! directories with `SHA256SUMS`, `streams/v1/{index,images}.json`, `meta/1.0/index-system`).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Write};
use std::path::Path;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::ImageServer;

/// Lower-case hex sha256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Tiny rootfs tarballs

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h
}

/// An uncompressed tar of a tiny rootfs: a few directories, `/etc/os-release` (with `marker`
/// as `VERSION_ID`, so two builds differ), an executable `/usr/bin/hello` shell script, a
/// hardlink `/usr/bin/hello-again` to it, and the merged-usr symlink `/bin -> usr/bin`.
pub fn rootfs_tar(marker: &str) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let dirs = [
        ("etc/", 0o755),
        ("root/", 0o700),
        ("tmp/", 0o1777),
        ("usr/", 0o755),
        ("usr/bin/", 0o755),
        ("var/", 0o755),
        ("var/lib/", 0o755),
    ];
    for (path, mode) in dirs {
        let mut h = header(tar::EntryType::Directory, mode, 0);
        b.append_data(&mut h, path, io::empty()).unwrap();
    }
    let os_release = format!("ID=tiny\nNAME=\"Tiny Linux\"\nVERSION_ID=\"{marker}\"\n");
    let hello = format!("#!/bin/sh\necho \"hello from {marker}\"\n");
    let files = [
        ("etc/os-release", 0o644, os_release),
        ("etc/hostname", 0o644, "tiny\n".to_string()),
        ("usr/bin/hello", 0o755, hello),
    ];
    for (path, mode, text) in files {
        let mut h = header(tar::EntryType::Regular, mode, text.len() as u64);
        b.append_data(&mut h, path, text.as_bytes()).unwrap();
    }
    let mut h = header(tar::EntryType::Symlink, 0o777, 0);
    b.append_link(&mut h, "bin", "usr/bin").unwrap();
    let mut h = header(tar::EntryType::Link, 0o755, 0);
    b.append_link(&mut h, "usr/bin/hello-again", "usr/bin/hello")
        .unwrap();
    b.into_inner().unwrap()
}

pub fn xz(bytes: &[u8]) -> Vec<u8> {
    let mut enc = xz2::write::XzEncoder::new(Vec::new(), 6);
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

pub fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// [`rootfs_tar`], xz-compressed (what `rootfs.tar.xz` holds).
pub fn rootfs_tar_xz(marker: &str) -> Vec<u8> {
    xz(&rootfs_tar(marker))
}

/// [`rootfs_tar`], gzip-compressed.
pub fn rootfs_tar_gz(marker: &str) -> Vec<u8> {
    gz(&rootfs_tar(marker))
}

/// A tar.xz holding one `name` file with `text` (the metadata tarballs).
fn meta_tar_xz(name: &str, text: &str) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = header(tar::EntryType::Regular, 0o644, text.len() as u64);
    b.append_data(&mut h, name, text.as_bytes()).unwrap();
    xz(&b.into_inner().unwrap())
}

// ---------------------------------------------------------------------------------------------
// Layout

#[derive(Clone)]
pub(super) struct ImageSpec {
    distro: String,
    release: String,
    arch: String,
    variant: String,
    pub(super) build: String,
    rootfs: Vec<u8>,
}

impl ImageSpec {
    pub(super) fn product_id(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.distro, self.release, self.arch, self.variant
        )
    }
    fn product_key(&self) -> String {
        format!(
            "{}:{}:{}:{}",
            self.distro, self.release, self.arch, self.variant
        )
    }
    fn dir(&self) -> String {
        format!("images/{}/{}", self.product_id(), self.build)
    }
}

#[derive(Clone, Default)]
pub(super) struct Layout {
    pub(super) images: Vec<ImageSpec>,
    no_simplestreams: bool,
    no_csv: bool,
    /// `(product id, build)` whose rootfs sha256 is wrong in images.json and SHA256SUMS.
    corrupt: BTreeSet<(String, String)>,
    /// `(product id, build)` whose SHA256SUMS does not list rootfs.tar.xz.
    unlisted: BTreeSet<(String, String)>,
    files: BTreeMap<String, Vec<u8>>,
}

fn write_file(root: &Path, rel: &str, bytes: &[u8]) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, bytes).unwrap();
}

fn item(ftype: &str, path: &str, bytes: &[u8]) -> Value {
    json!({ "ftype": ftype, "path": path, "sha256": sha256_hex(bytes), "size": bytes.len() })
}

impl Layout {
    fn key(&self, img: &ImageSpec) -> (String, String) {
        (img.product_id(), img.build.clone())
    }

    fn rootfs_sha(&self, img: &ImageSpec) -> String {
        if self.corrupt.contains(&self.key(img)) {
            sha256_hex(b"not the rootfs")
        } else {
            sha256_hex(&img.rootfs)
        }
    }

    /// Writes every file of the tree (build directories and indexes) under `root`.
    pub(super) fn write(&self, root: &Path) -> BTreeMap<String, Value> {
        let mut products: BTreeMap<String, Value> = BTreeMap::new();
        for img in &self.images {
            let versions = self.write_build(root, img);
            let product = products.entry(img.product_key()).or_insert_with(|| {
                json!({
                    "aliases": format!("{0}/{1}/{2},{0}/{1}/{2}/{3}",
                        img.distro, img.release, img.variant, img.arch),
                    "arch": img.arch, "os": img.distro, "release": img.release,
                    "release_title": img.release, "variant": img.variant,
                    "requirements": {}, "versions": {},
                })
            });
            product["versions"][&img.build] = versions;
        }
        if !self.no_simplestreams {
            self.write_streams(root, &products);
        }
        if !self.no_csv {
            write_file(root, "meta/1.0/index-system", self.csv().as_bytes());
        }
        for (rel, bytes) in &self.files {
            write_file(root, rel, bytes);
        }
        products
    }

    /// One build directory; returns its simplestreams `versions` entry.
    fn write_build(&self, root: &Path, img: &ImageSpec) -> Value {
        let dir = img.dir();
        let meta = meta_tar_xz("config", &format!("lxc.arch = {}\n", img.arch));
        let lxd = meta_tar_xz(
            "metadata.yaml",
            &format!("architecture: {}\ncreation_date: 1700000000\n", img.arch),
        );
        let files: [(&str, &[u8]); 3] = [
            ("rootfs.tar.xz", &img.rootfs),
            ("meta.tar.xz", &meta),
            ("lxd.tar.xz", &lxd),
        ];
        let mut sums = String::new();
        for (name, bytes) in files {
            write_file(root, &format!("{dir}/{name}"), bytes);
            let sha = if name == "rootfs.tar.xz" {
                if self.unlisted.contains(&self.key(img)) {
                    continue;
                }
                self.rootfs_sha(img)
            } else {
                sha256_hex(bytes)
            };
            sums.push_str(&format!("{sha}  {name}\n"));
        }
        write_file(root, &format!("{dir}/SHA256SUMS"), sums.as_bytes());
        let mut root_item = item("root.tar.xz", &format!("{dir}/rootfs.tar.xz"), &img.rootfs);
        root_item["sha256"] = json!(self.rootfs_sha(img));
        let mut lxd_item = item("lxd.tar.xz", &format!("{dir}/lxd.tar.xz"), &lxd);
        let combined = sha256_hex(&[lxd.as_slice(), img.rootfs.as_slice()].concat());
        lxd_item["combined_sha256"] = json!(combined);
        lxd_item["combined_rootxz_sha256"] = json!(combined);
        json!({ "items": { "root.tar.xz": root_item, "lxd.tar.xz": lxd_item } })
    }

    fn write_streams(&self, root: &Path, products: &BTreeMap<String, Value>) {
        let images = json!({
            "content_id": "images", "datatype": "image-downloads", "format": "products:1.0",
            "products": products,
        });
        let index = json!({
            "format": "index:1.0",
            "index": { "images": {
                "datatype": "image-downloads", "path": "streams/v1/images.json",
                "format": "products:1.0", "products": products.keys().collect::<Vec<_>>(),
                "updated": "Mon, 01 Sep 2026 20:34:00 +0000",
            }},
        });
        let pretty = |v: &Value| serde_json::to_vec_pretty(v).unwrap();
        write_file(root, "streams/v1/images.json", &pretty(&images));
        write_file(root, "streams/v1/index.json", &pretty(&index));
    }

    /// `dist;release;arch;variant;build;path`, the newest build of each product.
    fn csv(&self) -> String {
        let mut newest: BTreeMap<String, &ImageSpec> = BTreeMap::new();
        for img in &self.images {
            let slot = newest.entry(img.product_id()).or_insert(img);
            if img.build > slot.build {
                *slot = img;
            }
        }
        newest
            .values()
            .map(|i| {
                let (d, r, a, v, b) = (&i.distro, &i.release, &i.arch, &i.variant, &i.build);
                format!("{d};{r};{a};{v};{b};/images/{d}/{r}/{a}/{v}/{b}/\n")
            })
            .collect()
    }
}

/// Makes an [`ImageServer`]'s tree.
#[derive(Default)]
pub struct ImageServerBuilder {
    layout: Layout,
}

impl ImageServerBuilder {
    /// Adds a build of `distro/release/arch/variant` whose `rootfs.tar.xz` is `rootfs`.
    pub fn image(
        mut self,
        distro: &str,
        release: &str,
        arch: &str,
        variant: &str,
        build: &str,
        rootfs: &[u8],
    ) -> Self {
        self.layout.images.push(ImageSpec {
            distro: distro.into(),
            release: release.into(),
            arch: arch.into(),
            variant: variant.into(),
            build: build.into(),
            rootfs: rootfs.to_vec(),
        });
        self
    }

    /// No `streams/`: a CSV-only server.
    pub fn without_simplestreams(mut self) -> Self {
        self.layout.no_simplestreams = true;
        self
    }

    /// No `meta/1.0/index-system`.
    pub fn without_csv(mut self) -> Self {
        self.layout.no_csv = true;
        self
    }

    /// A wrong rootfs sha256 for `product` (`d/r/a/v`) `build`, in images.json and SHA256SUMS.
    pub fn corrupt_sha(mut self, product: &str, build: &str) -> Self {
        self.layout.corrupt.insert((product.into(), build.into()));
        self
    }

    /// SHA256SUMS of `product` `build` leaves out rootfs.tar.xz.
    pub fn unlisted_in_sha256sums(mut self, product: &str, build: &str) -> Self {
        self.layout.unlisted.insert((product.into(), build.into()));
        self
    }

    /// Any extra file, at `rel` (no leading `/`).
    pub fn file(mut self, rel: &str, bytes: &[u8]) -> Self {
        self.layout.files.insert(rel.into(), bytes.to_vec());
        self
    }

    pub fn start(self) -> ImageServer {
        ImageServer::start(self.layout)
    }
}

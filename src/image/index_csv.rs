//! The CSV index path (LXC's `lxc-download` template, D.2 of the image-server design note):
//! `meta/1.0/index-system` lines `dist;release;arch;variant;build;path`, which carry no
//! checksums, so the build directory's `SHA256SUMS` must list `rootfs.tar.xz`.

use super::{
    gone, is_sha256_hex, join_url, missing_product, HttpClient, HttpError, ImageQuery, IndexError,
    IndexKind, Pick, ResolvedImage, CSV_INDEX, ROOT_FILE, SMALL_LIMIT,
};

/// One line of the CSV index: `dist;release;arch;variant;build;path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvEntry {
    pub dist: String,
    pub release: String,
    pub arch: String,
    pub variant: String,
    pub build: String,
    /// As written, e.g. `/images/debian/bookworm/amd64/default/20240101_05:24/`.
    pub path: String,
}

impl CsvEntry {
    pub(super) fn matches(&self, q: &ImageQuery) -> bool {
        self.dist == q.distro
            && self.release == q.release
            && self.arch == q.arch
            && self.variant == q.variant
    }
}

/// The lines of an `index-system` file that have six fields and a non-empty path (what LXC's
/// download template accepts); others are skipped.
pub fn parse_csv_index(text: &str) -> Vec<CsvEntry> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.trim_end_matches('\r').splitn(6, ';').collect();
            let [dist, release, arch, variant, build, path] = fields.as_slice() else {
                return None;
            };
            let path = path.trim();
            if dist.is_empty() || build.is_empty() || path.is_empty() {
                return None;
            }
            Some(CsvEntry {
                dist: dist.to_string(),
                release: release.to_string(),
                arch: arch.to_string(),
                variant: variant.to_string(),
                build: build.to_string(),
                path: path.to_string(),
            })
        })
        .collect()
}

/// `(file, hex)` pairs of a `sha256sum` listing (`<hex>  <file>` or `<hex> *<file>`); the hex
/// is lower-cased and a leading `./` of the file dropped. Malformed lines are skipped.
pub fn parse_sha256sums(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim_end_matches('\r');
            let (hex, rest) = line.split_once([' ', '\t'])?;
            if !is_sha256_hex(hex) {
                return None;
            }
            let file = rest.trim_start_matches([' ', '\t']);
            let file = file.strip_prefix('*').unwrap_or(file);
            let file = file.strip_prefix("./").unwrap_or(file);
            if file.is_empty() {
                return None;
            }
            Some((file.to_string(), hex.to_ascii_lowercase()))
        })
        .collect()
}

pub(super) fn lookup_sum(text: &str, file: &str) -> Option<String> {
    parse_sha256sums(text)
        .into_iter()
        .find(|(name, _)| name == file)
        .map(|(_, hex)| hex)
}

/// Resolves `query` from the CSV index and the build's `SHA256SUMS`.
pub(super) fn from_csv(
    client: &HttpClient,
    base: &str,
    query: &ImageQuery,
    pick: Pick<'_>,
) -> Result<ResolvedImage, IndexError> {
    let csv_url = join_url(base, CSV_INDEX);
    let text = client.get_text(&csv_url, SMALL_LIMIT)?;
    let entries = parse_csv_index(&text);
    let newest = entries
        .iter()
        .filter(|e| e.matches(query))
        .max_by(|a, b| a.build.cmp(&b.build));
    let Some(newest) = newest else {
        let ids = entries
            .iter()
            .map(|e| [&e.dist, &e.release, &e.arch, &e.variant].map(|s| s.to_string()))
            .collect::<Vec<_>>();
        return Err(missing_product(base, query, pick, &ids));
    };
    // The CSV index lists only the newest build of each product; an older one may still be on
    // the server, in the standard place.
    let (build, dir) = match pick {
        Pick::Build(build) if build != newest.build => (
            build.to_string(),
            format!(
                "images/{}/{}/{}/{}/{build}",
                query.distro, query.release, query.arch, query.variant
            ),
        ),
        _ => (newest.build.clone(), newest.path.clone()),
    };
    let dir = dir.trim_matches('/');
    let sums_url = join_url(base, &format!("{dir}/SHA256SUMS"));
    let sums = match client.get_text(&sums_url, SMALL_LIMIT) {
        Ok(text) => text,
        Err(HttpError::NotFound { .. }) if matches!(pick, Pick::Build(_)) => {
            return Err(gone(query, &build))
        }
        Err(HttpError::NotFound { url }) => {
            return Err(IndexError::NoChecksum {
                url,
                file: ROOT_FILE.to_string(),
            })
        }
        Err(err) => return Err(err.into()),
    };
    let sha256 = lookup_sum(&sums, ROOT_FILE).ok_or_else(|| IndexError::NoChecksum {
        url: sums_url.clone(),
        file: ROOT_FILE.to_string(),
    })?;
    let item_path = format!("{dir}/{ROOT_FILE}");
    Ok(ResolvedImage {
        server: base.to_string(),
        product: query.product_id(),
        build,
        url: join_url(base, &item_path),
        item_path,
        sha256,
        size: None,
        via: IndexKind::Csv,
    })
}

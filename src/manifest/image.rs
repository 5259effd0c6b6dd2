//! `[base] image`: which root filesystem an environment starts from.
//!
//! Three forms are accepted: a distribution alias (the original's table, so old manifests keep
//! their meaning), an `http(s)://` URL of a rootfs tarball, and — new here — a local rootfs
//! tarball. The original lower-cased the whole value, URLs included, which broke case-sensitive
//! URLs; here only aliases are compared case-insensitively and URLs are kept byte for byte.
//! Whether plain `http://` may be downloaded is the image layer's decision (loopback only), not
//! the parser's.

use std::path::{Path, PathBuf};

use super::error::{MountProblem, Problem};
use super::paths;

/// Every accepted alias as `(alias, distro, release)`, in the order shown to users. Matching is
/// case-insensitive after trimming.
pub const IMAGE_ALIASES: &[(&str, &str, &str)] = &[
    ("rolling", "opensuse", "tumbleweed"),
    ("opensuse", "opensuse", "tumbleweed"),
    ("opensuse/tumbleweed", "opensuse", "tumbleweed"),
    ("tumbleweed", "opensuse", "tumbleweed"),
    ("opensuse/leap", "opensuse", "15.6"),
    ("leap", "opensuse", "15.6"),
    ("ubuntu", "ubuntu", "noble"),
    ("ubuntu/24.04", "ubuntu", "noble"),
    ("ubuntu/noble", "ubuntu", "noble"),
    ("ubuntu/22.04", "ubuntu", "jammy"),
    ("ubuntu/jammy", "ubuntu", "jammy"),
    ("ubuntu/20.04", "ubuntu", "focal"),
    ("ubuntu/focal", "ubuntu", "focal"),
    ("ubuntu/24.10", "ubuntu", "oracular"),
    ("ubuntu/oracular", "ubuntu", "oracular"),
    ("debian", "debian", "bookworm"),
    ("debian/bookworm", "debian", "bookworm"),
    ("debian/trixie", "debian", "trixie"),
    ("debian/sid", "debian", "sid"),
    ("fedora", "fedora", "41"),
    ("fedora/41", "fedora", "41"),
    ("fedora/40", "fedora", "40"),
    ("fedora/42", "fedora", "42"),
    ("arch", "archlinux", "current"),
    ("archlinux", "archlinux", "current"),
];

/// File name endings of the local tarballs we know how to unpack.
pub const TARBALL_SUFFIXES: &[&str] = &[".tar", ".tar.gz", ".tar.xz", ".tar.zst"];

/// The validated `[base]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseImage {
    pub image: ImageRef,
    /// Optional pin of the artefact's SHA-256 (64 lower-case hex). An addition beyond the
    /// original; absent from the canonical form when not set.
    pub sha256: Option<String>,
}

/// Where the base image comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageRef {
    /// A name from [`IMAGE_ALIASES`]; `written` is the trimmed text as the user typed it.
    Alias {
        written: String,
        distro: String,
        release: String,
    },
    /// An `http://` or `https://` URL, exactly as written (trimmed).
    Url(String),
    /// A local rootfs tarball, absolute and lexically normalised.
    LocalPath(PathBuf),
}

impl ImageRef {
    /// What the user wrote, for listings (a local path is shown resolved).
    pub fn display(&self) -> String {
        match self {
            ImageRef::Alias { written, .. } => written.clone(),
            ImageRef::Url(url) => url.clone(),
            ImageRef::LocalPath(path) => path.display().to_string(),
        }
    }

    /// A stable, unambiguous form for hashing: `alias:<distro>/<release>`, `url:<url>` or
    /// `path:<absolute path>`. Two aliases for the same image give the same string.
    pub fn canonical(&self) -> String {
        match self {
            ImageRef::Alias {
                distro, release, ..
            } => format!("alias:{distro}/{release}"),
            ImageRef::Url(url) => format!("url:{url}"),
            ImageRef::LocalPath(path) => format!("path:{}", path.display()),
        }
    }
}

/// The aliases as one comma-separated list, for error messages.
pub(crate) fn alias_list() -> String {
    let names: Vec<&str> = IMAGE_ALIASES.iter().map(|(alias, _, _)| *alias).collect();
    names.join(", ")
}

/// Looks an alias up, ignoring case and surrounding blanks.
pub fn lookup_alias(written: &str) -> Option<(&'static str, &'static str)> {
    let key = written.trim().to_ascii_lowercase();
    IMAGE_ALIASES
        .iter()
        .find(|(alias, _, _)| *alias == key)
        .map(|(_, distro, release)| (*distro, *release))
}

/// Parses `[base] image`. `manifest_dir` and `home` resolve local paths.
pub fn parse_image(written: &str, manifest_dir: &Path, home: &Path) -> Result<ImageRef, Problem> {
    let text = written.trim();
    if text.is_empty() {
        return Err(Problem::EmptyImage);
    }
    if let Some((distro, release)) = lookup_alias(text) {
        return Ok(ImageRef::Alias {
            written: text.to_string(),
            distro: distro.to_string(),
            release: release.to_string(),
        });
    }
    if has_prefix_ignore_case(text, "http://") || has_prefix_ignore_case(text, "https://") {
        return parse_url(text);
    }
    if looks_like_path(text) {
        return parse_local_path(text, manifest_dir, home);
    }
    Err(Problem::UnknownImage {
        written: text.to_string(),
    })
}

fn has_prefix_ignore_case(text: &str, prefix: &str) -> bool {
    text.get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
}

fn looks_like_path(text: &str) -> bool {
    text.starts_with('/')
        || text.starts_with('~')
        || text.starts_with("./")
        || text.starts_with("../")
}

fn parse_url(text: &str) -> Result<ImageRef, Problem> {
    let bad = |reason| Problem::BadImageUrl {
        written: text.to_string(),
        reason,
    };
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("contains whitespace or a control character"));
    }
    let after_scheme = text.split_once("://").map_or("", |(_, rest)| rest);
    let host = after_scheme.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() {
        return Err(bad("has no host"));
    }
    Ok(ImageRef::Url(text.to_string()))
}

fn parse_local_path(text: &str, manifest_dir: &Path, home: &Path) -> Result<ImageRef, Problem> {
    let bad = |reason| Problem::BadImagePath {
        written: text.to_string(),
        reason,
    };
    if !TARBALL_SUFFIXES.iter().any(|suffix| text.ends_with(suffix)) {
        return Err(bad(
            "is not a rootfs tarball (.tar, .tar.gz, .tar.xz or .tar.zst)",
        ));
    }
    match paths::resolve_host_path(text, manifest_dir, home) {
        Ok(path) => Ok(ImageRef::LocalPath(path)),
        Err(MountProblem::TildeUser) => {
            Err(bad("uses `~user`; only `~/…` (your own home) is expanded"))
        }
        Err(MountProblem::HostNotUtf8) => Err(bad("does not resolve to UTF-8")),
        Err(_) => Err(bad("contains a control character")),
    }
}

/// `[base] sha256`: exactly what `sha256sum` prints.
pub(crate) fn parse_sha256(written: &str) -> Result<String, Problem> {
    let ok = written.len() == 64
        && written
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if ok {
        Ok(written.to_string())
    } else {
        Err(Problem::BadSha256 {
            written: written.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ImageRef, Problem> {
        parse_image(text, Path::new("/proj"), Path::new("/home/u"))
    }

    #[test]
    fn every_alias_resolves_and_matching_ignores_case_and_blanks() {
        for (alias, distro, release) in IMAGE_ALIASES {
            let image = parse(&format!("  {}  ", alias.to_uppercase()));
            assert_eq!(
                image.map(|i| i.canonical()),
                Ok(format!("alias:{distro}/{release}"))
            );
        }
        let rolling = parse(" Rolling ");
        assert_eq!(
            rolling,
            Ok(ImageRef::Alias {
                written: "Rolling".into(),
                distro: "opensuse".into(),
                release: "tumbleweed".into()
            })
        );
        assert_eq!(
            parse("leap").map(|i| i.canonical()),
            Ok("alias:opensuse/15.6".into())
        );
        assert_eq!(
            parse("arch").map(|i| i.canonical()),
            Ok("alias:archlinux/current".into())
        );
    }

    #[test]
    fn urls_keep_their_case_and_plain_http_is_allowed_here() {
        let url = "HTTPS://Example.org/Images/RootFS.tar.xz";
        assert_eq!(parse(url), Ok(ImageRef::Url(url.to_string())));
        assert_eq!(parse(url).map(|i| i.display()), Ok(url.to_string()));
        assert_eq!(
            parse("http://127.0.0.1:8080/r.tar").map(|i| i.canonical()),
            Ok("url:http://127.0.0.1:8080/r.tar".into())
        );
    }

    #[test]
    fn broken_urls_are_refused() {
        for url in [
            "https://",
            "https:///path",
            "https://a b/x.tar",
            "http://x/a\nb",
            "https://host/a\tb",
        ] {
            assert!(
                matches!(parse(url), Err(Problem::BadImageUrl { .. })),
                "{url:?}"
            );
        }
    }

    #[test]
    fn local_tarballs_resolve_against_the_manifest_dir_and_home() {
        assert_eq!(
            parse("./img/root.tar.zst"),
            Ok(ImageRef::LocalPath("/proj/img/root.tar.zst".into()))
        );
        assert_eq!(
            parse("../root.tar"),
            Ok(ImageRef::LocalPath("/root.tar".into()))
        );
        assert_eq!(
            parse("~/r.tar.gz"),
            Ok(ImageRef::LocalPath("/home/u/r.tar.gz".into()))
        );
        assert_eq!(
            parse("/srv//x/../r.tar.xz").map(|i| i.canonical()),
            Ok("path:/srv/r.tar.xz".into())
        );
    }

    #[test]
    fn bad_local_paths_and_unknown_names_are_refused() {
        assert!(matches!(
            parse("./root.zip"),
            Err(Problem::BadImagePath { .. })
        ));
        assert!(matches!(
            parse("~bob/r.tar"),
            Err(Problem::BadImagePath { .. })
        ));
        assert!(matches!(
            parse("root.tar"),
            Err(Problem::UnknownImage { .. })
        ));
        assert!(matches!(
            parse("ubuntu/26.04"),
            Err(Problem::UnknownImage { .. })
        ));
        assert!(matches!(parse("gentoo"), Err(Problem::UnknownImage { .. })));
        assert_eq!(parse("   "), Err(Problem::EmptyImage));
    }

    #[test]
    fn unknown_image_error_lists_the_aliases() {
        let allowed = Problem::UnknownImage {
            written: "x".into(),
        }
        .allowed();
        for (alias, _, _) in IMAGE_ALIASES {
            assert!(allowed.contains(alias), "{alias} missing from {allowed}");
        }
    }

    #[test]
    fn sha256_must_be_64_lower_hex() {
        let good = "0123456789abcdef".repeat(4);
        assert_eq!(parse_sha256(&good), Ok(good.clone()));
        assert!(parse_sha256(&good.to_uppercase()).is_err());
        assert!(parse_sha256(&good[..63]).is_err());
        assert!(parse_sha256(&format!("{}g", &good[..63])).is_err());
    }
}

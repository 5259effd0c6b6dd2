//! Where base images come from: the image server, configurable per user.
//!
//! Precedence: `KARAPACE_IMAGE_SERVER`, then `[images] server` in
//! `$XDG_CONFIG_HOME/karapace/config.toml` (`~/.config/karapace/config.toml`), then the public
//! LXC image server. The URL rules (https, or http only on loopback) are enforced when it is
//! used, by the HTTP client.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ImageError;

pub const DEFAULT_SERVER: &str = "https://images.linuxcontainers.org";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageConfig {
    /// Base URL of the image server, without a trailing slash.
    pub server: String,
    /// Where the server setting came from, for messages (`KARAPACE_IMAGE_SERVER`, a file, or
    /// `default`).
    pub origin: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    images: Option<RawImages>,
    /// Read by `crate::policy`.
    #[allow(dead_code)]
    policy: Option<toml::Table>,
    /// Read by `crate::app::settings`.
    #[allow(dead_code)]
    tui: Option<toml::Table>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawImages {
    server: Option<String>,
}

/// `$XDG_CONFIG_HOME/karapace/config.toml`, else `~/.config/karapace/config.toml`.
pub fn config_path(home: &Path) -> PathBuf {
    match std::env::var_os("XDG_CONFIG_HOME").filter(|v| Path::new(v).is_absolute()) {
        Some(dir) => PathBuf::from(dir).join("karapace/config.toml"),
        None => home.join(".config/karapace/config.toml"),
    }
}

impl ImageConfig {
    /// Read the settings of this process: environment, then the user's config file.
    pub fn load(home: &Path) -> Result<ImageConfig, ImageError> {
        if let Some(server) = std::env::var("KARAPACE_IMAGE_SERVER")
            .ok()
            .filter(|s| !s.trim().is_empty())
        {
            return Ok(ImageConfig::with_server(&server, "KARAPACE_IMAGE_SERVER"));
        }
        let path = config_path(home);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(ImageConfig::with_server(DEFAULT_SERVER, "default"))
            }
            Err(source) => {
                return Err(ImageError::Io {
                    op: "read the configuration file",
                    path,
                    source,
                })
            }
        };
        ImageConfig::parse(&text, &path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<ImageConfig, ImageError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ImageError::Config {
            path: path.to_path_buf(),
            detail: e.to_string().trim_end().to_string(),
        })?;
        match raw.images.and_then(|i| i.server) {
            Some(server) if !server.trim().is_empty() => Ok(ImageConfig::with_server(
                &server,
                &path.display().to_string(),
            )),
            _ => Ok(ImageConfig::with_server(DEFAULT_SERVER, "default")),
        }
    }

    fn with_server(server: &str, origin: &str) -> ImageConfig {
        ImageConfig {
            server: server.trim().trim_end_matches('/').to_string(),
            origin: origin.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_setting_is_read_and_trailing_slash_dropped() {
        let c = ImageConfig::parse(
            "[images]\nserver = \"https://mirror.example/\"\n",
            Path::new("c"),
        )
        .expect("parse");
        assert_eq!(c.server, "https://mirror.example");
        assert_eq!(c.origin, "c");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = ImageConfig::parse("[images]\nsrever = \"x\"\n", Path::new("c"));
        assert!(matches!(e, Err(ImageError::Config { .. })), "{e:?}");
    }

    #[test]
    fn empty_file_means_default() {
        let c = ImageConfig::parse("", Path::new("c")).expect("parse");
        assert_eq!(c.server, DEFAULT_SERVER);
    }
}

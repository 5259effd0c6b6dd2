//! `[mounts]`: `label = "HOST:CONTAINER[:ro|:rw]"`.
//!
//! The value is split at the *first* `:`, as the original did, so a host path can never contain
//! one and old manifests split the same way. New here: an optional trailing `:ro` (or `:rw`,
//! the default) after the container path. In the original, `"/src:/data:ro"` meant a container
//! path literally named `/data:ro`; nobody wants that, so it now means `/data`, read-only.

use std::path::{Path, PathBuf};

use super::error::MountProblem;
use super::paths::{parse_container_path, resolve_host_path};

/// One validated bind mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    /// The key, trimmed.
    pub label: String,
    /// The value as written, trimmed (shown in listings).
    pub written: String,
    /// Absolute and lexically normalised; symlinks are not resolved here.
    pub host_path: PathBuf,
    /// Absolute, normalised, never `/`, no `..`.
    pub container_path: PathBuf,
    pub read_only: bool,
}

/// The paths and mode of one mount value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParsedMount {
    pub host_path: PathBuf,
    pub container_path: PathBuf,
    pub read_only: bool,
}

/// Parses a mount value (already trimmed).
pub(crate) fn parse_mount_value(
    written: &str,
    manifest_dir: &Path,
    home: &Path,
) -> Result<ParsedMount, MountProblem> {
    let (host, rest) = written.split_once(':').ok_or(MountProblem::NoSeparator)?;
    let host = host.trim();
    if host.is_empty() {
        return Err(MountProblem::EmptyHost);
    }
    let (container, read_only) = match rest.rsplit_once(':') {
        Some((container, option)) => match option.trim() {
            "ro" => (container, true),
            "rw" => (container, false),
            other => return Err(MountProblem::UnknownOption(other.to_string())),
        },
        None => (rest, false),
    };
    let container = container.trim();
    if container.is_empty() {
        return Err(MountProblem::EmptyContainer);
    }
    let container_path = parse_container_path(container)?;
    let host_path = resolve_host_path(host, manifest_dir, home)?;
    Ok(ParsedMount {
        host_path,
        container_path,
        read_only,
    })
}

/// How a label is shown in a field path: bare when TOML would allow it bare, quoted otherwise.
pub(crate) fn label_field(label: &str) -> String {
    let bare = !label.is_empty()
        && label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        format!("mounts.{label}")
    } else {
        format!("mounts.{label:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(written: &str) -> Result<ParsedMount, MountProblem> {
        parse_mount_value(written, Path::new("/proj"), Path::new("/home/u"))
    }

    fn mount(host: &str, container: &str, read_only: bool) -> Result<ParsedMount, MountProblem> {
        Ok(ParsedMount {
            host_path: host.into(),
            container_path: container.into(),
            read_only,
        })
    }

    #[test]
    fn values_split_at_the_first_colon_with_an_optional_mode() {
        assert_eq!(
            parse("~/projects:/workspace"),
            mount("/home/u/projects", "/workspace", false)
        );
        assert_eq!(parse(" src : /src "), mount("/proj/src", "/src", false));
        assert_eq!(parse("/data:/data:ro"), mount("/data", "/data", true));
        assert_eq!(parse("/data:/data : ro"), mount("/data", "/data", true));
        assert_eq!(parse("/data:/data:rw"), mount("/data", "/data", false));
        assert_eq!(parse("../x:/x/./y/"), mount("/x", "/x/y", false));
    }

    #[test]
    fn malformed_values_are_refused() {
        let cases = [
            ("/data", MountProblem::NoSeparator),
            (":/data", MountProblem::EmptyHost),
            ("/data:", MountProblem::EmptyContainer),
            ("/data: :ro", MountProblem::EmptyContainer),
            ("/data:/data:RO", MountProblem::UnknownOption("RO".into())),
            (
                "/data:/data:exec",
                MountProblem::UnknownOption("exec".into()),
            ),
            ("/data:/a:b:ro", MountProblem::ContainerColon),
            ("/data:data", MountProblem::ContainerNotAbsolute),
            ("/data:/a/../../etc", MountProblem::ContainerParentDir),
            ("/data:/", MountProblem::ContainerIsRoot),
            ("~root/x:/x", MountProblem::TildeUser),
            ("/da\nta:/x", MountProblem::ControlChar('\n')),
        ];
        for (input, expected) in cases {
            assert_eq!(parse(input), Err(expected), "{input:?}");
        }
    }

    #[test]
    fn odd_labels_are_quoted_in_field_paths() {
        assert_eq!(label_field("workspace"), "mounts.workspace");
        assert_eq!(label_field("my data"), "mounts.\"my data\"");
        assert_eq!(label_field("a.b"), "mounts.\"a.b\"");
    }
}

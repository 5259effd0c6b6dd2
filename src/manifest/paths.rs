//! Lexical path handling for mounts and local images: `~` expansion, resolution against the
//! manifest's directory, and normalisation.
//!
//! Everything here is purely textual on purpose. Symlinks are not followed and nothing touches
//! the file system: the manifest must mean the same thing whether or not the paths exist yet,
//! and the security policy canonicalises (and checks) the real paths later, at build time.

use std::path::{Component, Path, PathBuf};

use super::error::MountProblem;

/// Drops `.`, collapses repeated `/`, and resolves `..` against the preceding component. At the
/// root `..` stays at the root, as the kernel does (`/..` is `/`).
pub(crate) fn normalize_lexically(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Prefix(prefix) => out.push(prefix.as_os_str()),
            Component::RootDir => out.push(Component::RootDir.as_os_str()),
            Component::CurDir => {}
            Component::ParentDir => match out.components().next_back() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                Some(Component::RootDir | Component::Prefix(_)) => {}
                _ => out.push(".."),
            },
            Component::Normal(name) => out.push(name),
        }
    }
    out
}

/// Turns a host path as written into an absolute, normalised path: `~` and `~/…` use `home`,
/// other relative paths are taken relative to `manifest_dir` (never the working directory, so a
/// manifest means the same thing wherever the command is run from).
pub(crate) fn resolve_host_path(
    written: &str,
    manifest_dir: &Path,
    home: &Path,
) -> Result<PathBuf, MountProblem> {
    if let Some(c) = written.chars().find(|c| c.is_control()) {
        return Err(MountProblem::ControlChar(c));
    }
    let joined = if written == "~" {
        home.to_path_buf()
    } else if let Some(rest) = written.strip_prefix("~/") {
        // `~//etc` must stay under home: joining an absolute path would replace it.
        home.join(rest.trim_start_matches('/'))
    } else if written.starts_with('~') {
        return Err(MountProblem::TildeUser);
    } else {
        // `join` keeps an absolute `written` as it is.
        manifest_dir.join(written)
    };
    let path = normalize_lexically(&joined);
    if path.to_str().is_none() {
        return Err(MountProblem::HostNotUtf8);
    }
    Ok(path)
}

/// Checks and normalises a container path: absolute, no `..` (it could point outside whatever
/// root the runtime builds), not `/` itself (that would hide the whole image).
pub(crate) fn parse_container_path(written: &str) -> Result<PathBuf, MountProblem> {
    if let Some(c) = written.chars().find(|c| c.is_control()) {
        return Err(MountProblem::ControlChar(c));
    }
    if written.contains(':') {
        return Err(MountProblem::ContainerColon);
    }
    let path = Path::new(written);
    if !path.has_root() {
        return Err(MountProblem::ContainerNotAbsolute);
    }
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(MountProblem::ContainerParentDir);
    }
    let path = normalize_lexically(path);
    if path.parent().is_none() {
        return Err(MountProblem::ContainerIsRoot);
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_is_lexical() {
        let cases = [
            ("/a/./b//c/", "/a/b/c"),
            ("/a/b/../c", "/a/c"),
            ("/../../x", "/x"),
            ("/a/..", "/"),
            ("a/../../b", "../b"),
        ];
        for (input, expected) in cases {
            assert_eq!(
                normalize_lexically(Path::new(input)),
                PathBuf::from(expected),
                "{input}"
            );
        }
    }

    #[test]
    fn host_paths_expand_home_and_resolve_against_the_manifest_dir() {
        let dir = Path::new("/work/proj");
        let home = Path::new("/home/u");
        let ok = |w: &str| resolve_host_path(w, dir, home);
        assert_eq!(ok("~"), Ok(PathBuf::from("/home/u")));
        assert_eq!(ok("~/projects"), Ok(PathBuf::from("/home/u/projects")));
        assert_eq!(ok("~//etc"), Ok(PathBuf::from("/home/u/etc")));
        assert_eq!(ok("data"), Ok(PathBuf::from("/work/proj/data")));
        assert_eq!(ok("./data/"), Ok(PathBuf::from("/work/proj/data")));
        assert_eq!(ok("../shared"), Ok(PathBuf::from("/work/shared")));
        assert_eq!(ok("/srv/x/../y"), Ok(PathBuf::from("/srv/y")));
        assert_eq!(ok("~bob/x"), Err(MountProblem::TildeUser));
        assert_eq!(ok("a\nb"), Err(MountProblem::ControlChar('\n')));
    }

    #[test]
    fn container_paths_must_be_absolute_below_root_and_without_dotdot() {
        assert_eq!(
            parse_container_path("/workspace/./x//"),
            Ok(PathBuf::from("/workspace/x"))
        );
        assert_eq!(
            parse_container_path("workspace"),
            Err(MountProblem::ContainerNotAbsolute)
        );
        assert_eq!(
            parse_container_path("/a/../etc"),
            Err(MountProblem::ContainerParentDir)
        );
        assert_eq!(
            parse_container_path("/"),
            Err(MountProblem::ContainerIsRoot)
        );
        assert_eq!(
            parse_container_path("//./"),
            Err(MountProblem::ContainerIsRoot)
        );
        assert_eq!(
            parse_container_path("/a:b"),
            Err(MountProblem::ContainerColon)
        );
        assert_eq!(
            parse_container_path("/a\tb"),
            Err(MountProblem::ControlChar('\t'))
        );
    }
}

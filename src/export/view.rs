//! Reading files of an environment from the host, without mounting it: its layers (top first:
//! the namespace backend's `upper/` over the image, the mock backend's one `rootfs/`) are
//! looked up the way overlayfs merges them, and symbolic links are followed the way the
//! sandbox would see them — an absolute target starts again at the environment's root, never
//! the host's, and `..` never leaves it.
//!
//! overlayfs(5) semantics honoured here: a whiteout (a character device 0/0, or a `.wh.NAME`
//! file as fuse-overlayfs writes when it cannot create devices) hides NAME in lower layers; an
//! opaque directory (`trusted.overlay.opaque` or, rootless, `user.overlay.opaque` set to `y`,
//! fuse-overlayfs's `user.fuseoverlayfs.opaque`, or a `.wh..wh..opq` file) hides the lower
//! layers' directory of the same name.
//!
//! The environment may be running and changing its upper layer while this reads, so the final
//! open does not trust the lookup: the file opened must still be at the path that was looked
//! up (see [`EnvView::open`]), so a component swapped for a link in the meantime fails the
//! read instead of leading out of the environment.

use std::fs::{self, File, Metadata};
use std::io::{self, Read};
use std::os::fd::AsRawFd as _;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

/// Linux gives up after 40 symbolic links in one lookup (path_resolution(7)).
const MAX_LINKS: usize = 40;

/// An environment's file tree seen from the host.
#[derive(Debug, Clone)]
pub struct EnvView {
    /// Top layer first.
    layers: Vec<PathBuf>,
}

/// A file found in the view: the layer that holds it and its path there (no link in it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub layer: usize,
    /// Relative to the layer, components joined with `/`.
    pub rel: String,
}

impl EnvView {
    pub fn new(layers: Vec<PathBuf>) -> EnvView {
        EnvView { layers }
    }

    /// Resolve `path` (absolute inside the environment) to the entry it names, following
    /// links; `None` when nothing is there.
    pub fn resolve(&self, path: &str) -> Option<Found> {
        let mut pending: Vec<String> = components(path).rev().collect();
        let mut resolved: Vec<String> = Vec::new();
        let mut links = 0;
        while let Some(comp) = pending.pop() {
            match comp.as_str() {
                "." => continue,
                ".." => {
                    resolved.pop();
                    continue;
                }
                _ => {}
            }
            resolved.push(comp);
            let (found, meta) = self.lookup(&resolved)?;
            if meta.file_type().is_symlink() {
                links += 1;
                if links > MAX_LINKS {
                    return None;
                }
                let target = fs::read_link(self.layers[found.layer].join(&found.rel)).ok()?;
                let target = target.to_str()?.to_string();
                resolved.pop();
                if target.starts_with('/') {
                    resolved.clear();
                }
                pending.extend(components(&target).rev());
            } else if !pending.is_empty() && !meta.is_dir() {
                return None;
            }
        }
        if resolved.is_empty() {
            return None;
        }
        let (found, _) = self.lookup(&resolved)?;
        Some(found)
    }

    /// The entry `comps` (no links among its parents) in the merged view, without following
    /// a link at the end.
    fn lookup(&self, comps: &[String]) -> Option<(Found, Metadata)> {
        // Which layers can still contribute below the current directory: all at the root;
        // below a directory, those that have it as a directory too, down to an opaque one.
        let mut visible: Vec<usize> = (0..self.layers.len()).collect();
        let mut rel = String::new();
        for (depth, comp) in comps.iter().enumerate() {
            let parent = rel.clone();
            if !rel.is_empty() {
                rel.push('/');
            }
            rel.push_str(comp);
            let last = depth + 1 == comps.len();
            let mut next = Vec::new();
            let mut hit: Option<(usize, Metadata)> = None;
            for &layer in &visible {
                let base = &self.layers[layer];
                if whiteout_file(&base.join(&parent), comp) {
                    break;
                }
                let Ok(meta) = fs::symlink_metadata(base.join(&rel)) else {
                    continue;
                };
                if is_whiteout(&meta) {
                    break;
                }
                if hit.is_none() {
                    hit = Some((layer, meta.clone()));
                }
                if !meta.is_dir() {
                    break;
                }
                next.push(layer);
                if is_opaque(&base.join(&rel)) {
                    break;
                }
            }
            let (layer, meta) = hit?;
            if last {
                return Some((Found { layer, rel }, meta));
            }
            if !meta.is_dir() {
                return Some((Found { layer, rel }, meta));
            }
            visible = next;
        }
        None
    }

    /// The names in directory `path` of the merged view, sorted; empty when it is not there.
    pub fn list_dir(&self, path: &str) -> Vec<String> {
        let Some(dir) = self.resolve(path) else {
            return Vec::new();
        };
        let comps: Vec<String> = components(&dir.rel).collect();
        let mut names = std::collections::BTreeSet::new();
        let mut hidden = std::collections::BTreeSet::new();
        // The layers that show this directory: the one found and the lower ones that have it
        // as a directory, down to an opaque one (re-checked per layer).
        for layer in dir.layer..self.layers.len() {
            let base = self.layers[layer].join(&dir.rel);
            if layer > dir.layer && !self.visible_below(&comps, layer) {
                continue;
            }
            let Ok(entries) = fs::read_dir(&base) else {
                continue;
            };
            for entry in entries.flatten() {
                let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                    continue;
                };
                if let Some(gone) = name.strip_prefix(".wh.") {
                    hidden.insert(gone.to_string());
                    continue;
                }
                let whiteout = entry.metadata().map(|m| is_whiteout(&m)).unwrap_or(false);
                if whiteout {
                    hidden.insert(name);
                } else if !hidden.contains(&name) {
                    names.insert(name);
                }
            }
            if is_opaque(&base) {
                break;
            }
        }
        names.into_iter().collect()
    }

    /// Whether `layer` still contributes to directory `comps`.
    fn visible_below(&self, comps: &[String], layer: usize) -> bool {
        let mut rel = String::new();
        for comp in comps {
            if !rel.is_empty() {
                rel.push('/');
            }
            rel.push_str(comp);
            for upper in 0..layer {
                let path = self.layers[upper].join(&rel);
                match fs::symlink_metadata(&path) {
                    Ok(meta) if meta.is_dir() && is_opaque(&path) => return false,
                    Ok(meta) if !meta.is_dir() => return false,
                    _ => {}
                }
            }
        }
        true
    }

    /// Read a regular file of the view (following links inside it), at most `limit` bytes.
    pub fn read(&self, path: &str, limit: u64) -> Result<Vec<u8>, ViewError> {
        let found = self.resolve(path).ok_or_else(|| ViewError::Missing {
            path: path.to_string(),
        })?;
        let mut file = self.open(&found, path)?;
        let mut bytes = Vec::new();
        (&mut file)
            .take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(|source| ViewError::Io {
                path: path.to_string(),
                source,
            })?;
        if bytes.len() as u64 > limit {
            return Err(ViewError::TooLarge {
                path: path.to_string(),
                limit,
            });
        }
        Ok(bytes)
    }

    /// Open a found entry as a regular file, and only if it is still where the lookup found
    /// it: the descriptor's own path (`/proc/self/fd/N`, proc(5)), which the kernel reports
    /// for the file actually opened, must be the layer's path followed by the looked-up one.
    pub fn open(&self, found: &Found, shown: &str) -> Result<File, ViewError> {
        let io = |source| ViewError::Io {
            path: shown.to_string(),
            source,
        };
        let layer = fs::canonicalize(&self.layers[found.layer]).map_err(io)?;
        let expected = layer.join(&found.rel);
        // O_NOFOLLOW: the last component is not a link; O_NONBLOCK: a FIFO put there in the
        // meantime does not block the open (it fails the regular-file check below).
        let file = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&expected)
            .map_err(io)?;
        let actual = fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).map_err(io)?;
        if actual != expected {
            return Err(ViewError::Moved {
                path: shown.to_string(),
            });
        }
        let meta = file.metadata().map_err(io)?;
        if !meta.is_file() {
            return Err(ViewError::NotAFile {
                path: shown.to_string(),
            });
        }
        Ok(file)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    #[error("{path} does not exist in the environment")]
    Missing { path: String },
    #[error("{path} in the environment is not a regular file")]
    NotAFile { path: String },
    #[error("{path} in the environment changed while it was read (a link appeared); try again")]
    Moved { path: String },
    #[error("{path} in the environment is larger than {limit} bytes")]
    TooLarge { path: String, limit: u64 },
    #[error("cannot read {path} in the environment: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
}

fn components(path: &str) -> impl DoubleEndedIterator<Item = String> + '_ {
    path.split('/')
        .filter(|c| !c.is_empty())
        .map(str::to_string)
}

/// A kernel overlayfs whiteout: a character device with device number 0/0.
fn is_whiteout(meta: &Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    meta.file_type().is_char_device() && meta.rdev() == 0
}

/// fuse-overlayfs's whiteout file for `name` in `dir`.
fn whiteout_file(dir: &Path, name: &str) -> bool {
    fs::symlink_metadata(dir.join(format!(".wh.{name}"))).is_ok()
}

fn is_opaque(dir: &Path) -> bool {
    let set =
        |attr: &str| matches!(xattr::get(dir, attr), Ok(Some(value)) if value.as_slice() == b"y");
    set("trusted.overlay.opaque")
        || set("user.overlay.opaque")
        || set("user.fuseoverlayfs.opaque")
        || fs::symlink_metadata(dir.join(".wh..wh..opq")).is_ok()
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::symlink;

    use super::*;

    fn view(tmp: &Path) -> (EnvView, PathBuf, PathBuf) {
        let upper = tmp.join("upper");
        let lower = tmp.join("lower");
        fs::create_dir_all(&upper).expect("mkdir");
        fs::create_dir_all(&lower).expect("mkdir");
        (
            EnvView::new(vec![upper.clone(), lower.clone()]),
            upper,
            lower,
        )
    }

    #[test]
    fn upper_wins_and_links_stay_inside() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (v, upper, lower) = view(tmp.path());
        fs::create_dir_all(lower.join("usr/share/applications")).expect("mkdir");
        fs::write(lower.join("usr/share/applications/a.desktop"), "lower").expect("write");
        fs::create_dir_all(upper.join("usr/share/applications")).expect("mkdir");
        fs::write(upper.join("usr/share/applications/a.desktop"), "upper").expect("write");
        assert_eq!(
            v.read("/usr/share/applications/a.desktop", 100)
                .expect("read"),
            b"upper"
        );
        // An absolute link resolves inside the environment, not on the host.
        symlink(
            "/etc/hostname",
            upper.join("usr/share/applications/b.desktop"),
        )
        .expect("ln");
        assert!(v.read("/usr/share/applications/b.desktop", 100).is_err());
        fs::create_dir_all(lower.join("etc")).expect("mkdir");
        fs::write(lower.join("etc/hostname"), "inside").expect("write");
        assert_eq!(
            v.read("/usr/share/applications/b.desktop", 100)
                .expect("read"),
            b"inside"
        );
        // `..` stops at the environment's root.
        symlink("../../../../../../etc/hostname", upper.join("up")).expect("ln");
        assert_eq!(v.read("/up", 100).expect("read"), b"inside");
        assert_eq!(
            v.list_dir("/usr/share/applications"),
            ["a.desktop", "b.desktop"]
        );
        assert!(matches!(
            v.read("/usr/share/applications/a.desktop", 2),
            Err(ViewError::TooLarge { .. })
        ));
    }

    #[test]
    fn whiteouts_and_opaque_directories_hide_lower_files() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (v, upper, lower) = view(tmp.path());
        fs::create_dir_all(lower.join("apps")).expect("mkdir");
        fs::write(lower.join("apps/gone.desktop"), "x").expect("write");
        fs::write(lower.join("apps/kept.desktop"), "x").expect("write");
        fs::create_dir_all(upper.join("apps")).expect("mkdir");
        fs::write(upper.join("apps/.wh.gone.desktop"), "").expect("write");
        assert!(v.resolve("/apps/gone.desktop").is_none());
        assert_eq!(v.list_dir("/apps"), ["kept.desktop"]);
        fs::write(upper.join("apps/.wh..wh..opq"), "").expect("write");
        assert!(v.resolve("/apps/kept.desktop").is_none());
        assert!(v.list_dir("/apps").is_empty());
    }

    #[test]
    fn a_kernel_whiteout_device_hides_the_lower_file() {
        // mknod(2) of a character device needs CAP_MKNOD: root here, and in CI.
        if !nix::unistd::geteuid().is_root() {
            let mut err = std::io::stderr();
            std::io::Write::write_all(
                &mut err,
                b"SKIPPED: export::view::a_kernel_whiteout_device_hides_the_lower_file: not root\n",
            )
            .expect("stderr");
            return;
        }
        let tmp = tempfile::tempdir().expect("tempdir");
        let (v, upper, lower) = view(tmp.path());
        fs::create_dir_all(lower.join("apps")).expect("mkdir");
        fs::write(lower.join("apps/gone.desktop"), "x").expect("write");
        fs::write(lower.join("apps/kept.desktop"), "x").expect("write");
        fs::create_dir_all(upper.join("apps")).expect("mkdir");
        nix::sys::stat::mknod(
            &upper.join("apps/gone.desktop"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::empty(),
            0,
        )
        .expect("mknod a whiteout");
        assert!(v.resolve("/apps/gone.desktop").is_none());
        assert_eq!(v.list_dir("/apps"), ["kept.desktop"]);
        // An opaque directory by attribute (what rootless overlayfs writes with userxattr).
        match xattr::set(upper.join("apps"), "user.overlay.opaque", b"y") {
            Ok(()) => assert!(v.list_dir("/apps").is_empty()),
            // Some file systems (older tmpfs) refuse user attributes; the rest still counts.
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {}
            Err(e) => panic!("setxattr: {e}"),
        }
    }

    #[test]
    fn a_directory_is_not_a_file() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (v, upper, _) = view(tmp.path());
        fs::create_dir_all(upper.join("d")).expect("mkdir");
        assert!(matches!(v.read("/d", 10), Err(ViewError::NotAFile { .. })));
        assert!(matches!(
            v.read("/nope", 10),
            Err(ViewError::Missing { .. })
        ));
    }
}

//! The lock file (`karapace.lock`) and the environment identity.
//!
//! A lock records everything a build resolved: the exact base image (reference, build, archive
//! sha256 and size, tree digest), every listed package with its exact version, every package
//! the install adds or upgrades besides them (`dependencies`), and every other input that
//! shapes the environment. The environment id is the blake3 hash of an unambiguous encoding
//! of those inputs: canonical JSON (RFC 8785 style: sorted keys, no insignificant whitespace,
//! integers only) behind a domain-separation prefix. JSON's quoting makes the encoding
//! injective, unlike the original's plain token concatenation where `a`+`bc` hashed like
//! `ab`+`c`. `docs/identity.md` specifies it so another tool can recompute it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::fsutil;
use crate::integration::Integrations;
use crate::manifest::Manifest;
use crate::types::{BackendKind, EnvId};

/// The lock format this version writes and reads.
pub const LOCK_VERSION: u32 = 1;
/// Hashed in front of the canonical JSON, so an id can never be confused with the hash of some
/// other JSON document that happens to look alike.
pub const IDENTITY_DOMAIN: &str = "karapace-tui environment identity v1\n";
/// The file name of a lock, beside its manifest.
pub const LOCK_FILE_NAME: &str = "karapace.lock";

const LOCK_HEADER: &str = "# karapace.lock: written by karapace-tui build. It pins the exact base image and\n\
# package versions; commit it with karapace.toml. Do not edit by hand: run `karapace-tui build --update`.\n";

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("cannot read lock file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("lock file {path} is not valid: {message}; delete it and run `karapace-tui build` to write a new one")]
    Parse { path: PathBuf, message: String },
    #[error(
        "lock file {path} has lock_version {found}; this karapace-tui reads version {LOCK_VERSION}"
    )]
    Version { path: PathBuf, found: u32 },
    #[error("lock file {path} records env_id {recorded} but its contents hash to {computed}: it was edited or damaged; run `karapace-tui build --update` to re-resolve")]
    Tampered {
        path: PathBuf,
        recorded: EnvId,
        computed: EnvId,
    },
    #[error("cannot write lock file {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`--locked` needs {path}, which does not exist; run `karapace-tui build` once without --locked to create it")]
    Missing { path: PathBuf },
    #[error("the manifest no longer matches {path}:\n{drift}\nrun `karapace-tui build` (without --locked) to re-resolve and update the lock")]
    Drift { path: PathBuf, drift: Drift },
}

/// The resolved base image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedBase {
    /// `ImageRef::canonical()` of the manifest's `[base] image`.
    pub image: String,
    /// Where the archive came from (server URL and item path, a local path, or `mock`).
    pub source: String,
    /// The build serial on the image server (e.g. `20260901_20:34`).
    pub build: String,
    /// sha256 of the archive as downloaded (lower-case hex).
    pub archive_sha256: String,
    pub archive_size: u64,
    /// Digest of the unpacked root file system (contents, modes, link targets, file types).
    pub tree_digest: String,
    /// The image server the build came from (aliases only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// The archive's path on that server (aliases only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_path: Option<String>,
}

/// One package with the exact version that was installed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedPackage {
    pub name: String,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedMount {
    pub label: String,
    pub host_path: PathBuf,
    pub container_path: PathBuf,
    pub read_only: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedRuntime {
    pub backend: BackendKind,
    pub network_isolation: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_shares: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_limit_mb: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids_limit: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_files: Option<u64>,
}

impl LockedRuntime {
    /// Whether any resource limit is set (without one, running costs nothing extra).
    pub fn has_limits(&self) -> bool {
        self.cpu_shares.is_some()
            || self.memory_limit_mb.is_some()
            || self.pids_limit.is_some()
            || self.open_files.is_some()
    }

    /// The limits that are set, as `name = value` pairs in the manifest's spelling.
    pub fn limits(&self) -> Vec<(&'static str, u64)> {
        [
            ("cpu_shares", self.cpu_shares),
            ("memory_limit_mb", self.memory_limit_mb),
            ("pids_limit", self.pids_limit),
            ("open_files", self.open_files),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.map(|v| (name, v)))
        .collect()
    }
}

/// Everything that goes into the identity, in the shape it is stored in `karapace.lock`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockFile {
    pub lock_version: u32,
    pub env_id: EnvId,
    pub short_id: String,
    pub base: LockedBase,
    /// The packages the manifest lists (`[system] packages` and `[gui] apps`).
    #[serde(default)]
    pub packages: Vec<LockedPackage>,
    /// Every other package the install of `packages` adds to the base image or upgrades in
    /// it, each with its exact version (addition). `None`: a lock written before dependencies
    /// were pinned, which pins only `packages` (see `LockFile::pins_dependencies`); absent from
    /// locks without packages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dependencies: Option<Vec<LockedPackage>>,
    #[serde(default)]
    pub gui_apps: Vec<String>,
    pub gpu: bool,
    pub audio: bool,
    #[serde(default)]
    pub mounts: Vec<LockedMount>,
    pub runtime: LockedRuntime,
    /// The manifest's `[env]` (addition; absent from older locks and from the identity when
    /// empty).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// The manifest's written `[integration]` switches (addition, likewise).
    #[serde(default, skip_serializing_if = "Integrations::is_unset")]
    pub integration: Integrations,
}

/// What a backend resolved for a manifest; combined with the manifest into a [`LockFile`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    pub base: LockedBase,
    pub packages: Vec<LockedPackage>,
    /// The rest of the install's transaction (see [`LockFile::dependencies`]); `None` when
    /// they were not resolved (a lock from before they were pinned).
    pub dependencies: Option<Vec<LockedPackage>>,
}

impl LockFile {
    /// Combine a manifest and what was resolved for it into a lock with its identity.
    pub fn new(manifest: &Manifest, resolution: Resolution) -> LockFile {
        let mut packages = resolution.packages;
        packages.sort();
        packages.dedup();
        // Without packages nothing is installed, so there is nothing to pin either: such a
        // lock (and its id) is the same whichever backend resolved it.
        let dependencies = resolution
            .dependencies
            .filter(|_| !packages.is_empty())
            .map(|mut deps| {
                deps.retain(|d| !packages.iter().any(|p| p.name == d.name));
                deps.sort();
                deps.dedup();
                deps
            });
        let mounts = manifest
            .mounts
            .iter()
            .map(|m| LockedMount {
                label: m.label.clone(),
                host_path: m.host_path.clone(),
                container_path: m.container_path.clone(),
                read_only: m.read_only,
            })
            .collect();
        let limits = &manifest.runtime.limits;
        let mut lock = LockFile {
            lock_version: LOCK_VERSION,
            // Placeholder until the identity is computed just below; never observed.
            env_id: EnvId::from_digest(&crate::types::Digest::of_bytes(b"")),
            short_id: String::new(),
            base: resolution.base,
            packages,
            dependencies,
            gui_apps: manifest.gui_apps.clone(),
            gpu: manifest.hardware.gpu,
            audio: manifest.hardware.audio,
            mounts,
            runtime: LockedRuntime {
                backend: manifest.runtime.backend,
                network_isolation: manifest.runtime.network_isolation,
                cpu_shares: limits.cpu_shares,
                memory_limit_mb: limits.memory_limit_mb,
                pids_limit: limits.pids_limit,
                open_files: limits.open_files,
            },
            env: manifest.env.clone(),
            integration: manifest.integration,
        };
        lock.env_id = lock.compute_identity();
        lock.short_id = lock.env_id.short().to_string();
        lock
    }

    /// The canonical JSON of the identity inputs: the whole lock except `lock_version`,
    /// `env_id` and `short_id`. Absent optional values are left out, so adding an optional
    /// input later does not change the id of an environment that does not use it.
    pub fn identity_json(&self) -> String {
        let mut value = json!({
            "base": {
                "image": self.base.image,
                "archive_sha256": self.base.archive_sha256,
                "tree_digest": self.base.tree_digest,
            },
            "packages": self.packages.iter()
                .map(|p| json!({"name": p.name, "version": p.version}))
                .collect::<Vec<_>>(),
            "gui_apps": self.gui_apps,
            "hardware": {"gpu": self.gpu, "audio": self.audio},
            "mounts": self.mounts.iter().map(|m| json!({
                "label": m.label,
                "host_path": m.host_path.to_string_lossy(),
                "container_path": m.container_path.to_string_lossy(),
                "read_only": m.read_only,
            })).collect::<Vec<_>>(),
            "runtime": {
                "backend": self.runtime.backend.as_str(),
                "network_isolation": self.runtime.network_isolation,
            },
        });
        if let Some(runtime) = value.get_mut("runtime").and_then(Value::as_object_mut) {
            if let Some(cpu) = self.runtime.cpu_shares {
                runtime.insert("cpu_shares".into(), cpu.into());
            }
            if let Some(mem) = self.runtime.memory_limit_mb {
                runtime.insert("memory_limit_mb".into(), mem.into());
            }
            if let Some(pids) = self.runtime.pids_limit {
                runtime.insert("pids_limit".into(), pids.into());
            }
            if let Some(files) = self.runtime.open_files {
                runtime.insert("open_files".into(), files.into());
            }
        }
        if let Some(top) = value.as_object_mut() {
            // Present (even empty) once dependencies are pinned, so a lock that pins them and
            // an older one that does not are different environments.
            if let Some(deps) = &self.dependencies {
                top.insert(
                    "dependencies".into(),
                    deps.iter()
                        .map(|p| json!({"name": p.name, "version": p.version}))
                        .collect(),
                );
            }
            if !self.env.is_empty() {
                top.insert("env".into(), json!(self.env));
            }
            if !self.integration.is_unset() {
                top.insert(
                    "integration".into(),
                    Value::Object(self.integration.canonical()),
                );
            }
        }
        // serde_json's Map is a BTreeMap (the preserve_order feature is off), so keys come out
        // sorted, and to_string writes no whitespace.
        value.to_string()
    }

    /// blake3(IDENTITY_DOMAIN ‖ identity_json).
    pub fn compute_identity(&self) -> EnvId {
        let mut hasher = blake3::Hasher::new();
        hasher.update(IDENTITY_DOMAIN.as_bytes());
        hasher.update(self.identity_json().as_bytes());
        EnvId::from_digest(&crate::types::Digest::from_hash(hasher.finalize()))
    }

    /// Parse a lock and check its version and that its recorded id matches its contents.
    pub fn parse(text: &str, path: &Path) -> Result<LockFile, LockError> {
        let lock: LockFile = toml::from_str(text).map_err(|e| LockError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        if lock.lock_version != LOCK_VERSION {
            return Err(LockError::Version {
                path: path.to_path_buf(),
                found: lock.lock_version,
            });
        }
        // Locked names and versions go on package managers' command lines: the same rules as
        // for what a manager reports, whatever the file says.
        let entries = lock.packages.iter().map(|p| ("packages", p)).chain(
            lock.dependencies
                .iter()
                .flatten()
                .map(|p| ("dependencies", p)),
        );
        for (key, p) in entries {
            if let Some(problem) = crate::packages::package_problem(&p.name, &p.version) {
                return Err(LockError::Parse {
                    path: path.to_path_buf(),
                    message: format!("{key}: {problem}"),
                });
            }
        }
        let computed = lock.compute_identity();
        if computed != lock.env_id || lock.short_id != computed.short() {
            return Err(LockError::Tampered {
                path: path.to_path_buf(),
                recorded: lock.env_id,
                computed,
            });
        }
        Ok(lock)
    }

    /// Read the lock at `path`; `Ok(None)` when there is none.
    pub fn read(path: &Path) -> Result<Option<LockFile>, LockError> {
        match std::fs::read_to_string(path) {
            Ok(text) => LockFile::parse(&text, path).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(LockError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// The TOML text of the lock, with a header comment.
    pub fn to_toml(&self) -> String {
        // Serialising plain structs of strings, integers and bools cannot fail; if it ever
        // did, the lock would be written without its body and then fail to parse loudly.
        let body =
            toml::to_string(self).unwrap_or_else(|e| format!("# serialisation failed: {e}\n"));
        format!("{LOCK_HEADER}\n{body}")
    }

    /// Write the lock atomically (temp file, fsync, rename, directory fsync).
    pub fn write(&self, path: &Path) -> Result<(), LockError> {
        fsutil::write_atomic(path, self.to_toml().as_bytes()).map_err(|source| LockError::Write {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Whether this lock pins every package the install adds (false for a lock with packages
    /// written before dependencies were recorded).
    pub fn pins_dependencies(&self) -> bool {
        self.packages.is_empty() || self.dependencies.is_some()
    }

    /// The whole set of packages a build installs: the listed ones, then the dependencies.
    pub fn closure(&self) -> Vec<LockedPackage> {
        let mut all = self.packages.clone();
        all.extend(self.dependencies.iter().flatten().cloned());
        all
    }

    /// Versions pinned by this lock for the listed packages, by package name.
    pub fn pinned_versions(&self) -> BTreeMap<&str, &str> {
        self.packages
            .iter()
            .map(|p| (p.name.as_str(), p.version.as_str()))
            .collect()
    }

    /// What differs between what the manifest asks for and what this lock records. Empty when
    /// the lock can be used as is for the manifest.
    pub fn drift_from(&self, manifest: &Manifest) -> Drift {
        let mut items = Vec::new();
        let image = manifest.base.image.canonical();
        if image != self.base.image {
            items.push(format!("~ base image: {} -> {}", self.base.image, image));
        }
        if let Some(pin) = &manifest.base.sha256 {
            if *pin != self.base.archive_sha256 {
                items.push(format!(
                    "~ base image sha256 pin: locked archive is {}, manifest pins {}",
                    self.base.archive_sha256, pin
                ));
            }
        }
        package_drift(self, manifest, &mut items);
        let wanted: BTreeSet<&String> = manifest.gui_apps.iter().collect();
        let locked: BTreeSet<&String> = self.gui_apps.iter().collect();
        for app in wanted.difference(&locked) {
            items.push(format!("+ gui app {app}"));
        }
        for app in locked.difference(&wanted) {
            items.push(format!("- gui app {app}"));
        }
        let fresh = LockFile::new(manifest, self.resolution());
        flag_drift(&mut items, "hardware.gpu", self.gpu, fresh.gpu);
        flag_drift(&mut items, "hardware.audio", self.audio, fresh.audio);
        if self.mounts != fresh.mounts {
            items.push(format!(
                "~ mounts: {} -> {}",
                describe_mounts(&self.mounts),
                describe_mounts(&fresh.mounts)
            ));
        }
        if self.env != fresh.env {
            items.push(format!("~ env: {:?} -> {:?}", self.env, fresh.env));
        }
        if self.integration != fresh.integration {
            items.push(format!(
                "~ integration: {} -> {}",
                Value::Object(self.integration.canonical()),
                Value::Object(fresh.integration.canonical())
            ));
        }
        if self.runtime != fresh.runtime {
            items.push(format!(
                "~ runtime: {} -> {}",
                describe_runtime(&self.runtime),
                describe_runtime(&fresh.runtime)
            ));
        }
        Drift(items)
    }

    /// The resolved part of this lock, to rebuild exactly what it records.
    pub fn resolution(&self) -> Resolution {
        Resolution {
            base: self.base.clone(),
            packages: self.packages.clone(),
            dependencies: self.dependencies.clone(),
        }
    }
}

fn package_drift(lock: &LockFile, manifest: &Manifest, items: &mut Vec<String>) {
    let locked = lock.pinned_versions();
    let install = manifest.install_list();
    let wanted: BTreeMap<&str, Option<&str>> = install
        .iter()
        .map(|p| (p.name.as_str(), p.version.as_deref()))
        .collect();
    for (name, version) in &wanted {
        match (locked.get(name), version) {
            (None, _) => items.push(format!("+ package {name}")),
            (Some(have), Some(want)) if have != want => items.push(format!(
                "~ package {name}: locked {have}, manifest pins {want}"
            )),
            _ => {}
        }
    }
    for (name, version) in &locked {
        if !wanted.contains_key(name) {
            items.push(format!("- package {name} ({version})"));
        }
    }
}

fn flag_drift(items: &mut Vec<String>, field: &str, locked: bool, wanted: bool) {
    if locked != wanted {
        items.push(format!("~ {field}: {locked} -> {wanted}"));
    }
}

fn describe_mounts(mounts: &[LockedMount]) -> String {
    let parts: Vec<String> = mounts
        .iter()
        .map(|m| {
            format!(
                "{}={}:{}{}",
                m.label,
                m.host_path.display(),
                m.container_path.display(),
                if m.read_only { ":ro" } else { "" }
            )
        })
        .collect();
    format!("[{}]", parts.join(", "))
}

fn describe_runtime(r: &LockedRuntime) -> String {
    let mut s = format!(
        "backend={} network_isolation={}",
        r.backend, r.network_isolation
    );
    for (name, value) in r.limits() {
        s.push_str(&format!(" {name}={value}"));
    }
    s
}

/// A list of differences between a manifest and its lock, one line each, prefixed with
/// `+` (added in the manifest), `-` (removed) or `~` (changed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Drift(pub Vec<String>);

impl Drift {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Drift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, line) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "  {line}")?;
        }
        Ok(())
    }
}

/// `karapace.lock` beside the given manifest.
pub fn lock_path_for(manifest_path: &Path) -> PathBuf {
    manifest_path.with_file_name(LOCK_FILE_NAME)
}

#[cfg(test)]
mod tests;

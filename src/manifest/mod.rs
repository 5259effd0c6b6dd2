//! `karapace.toml`: parsing, validation and the canonical form.
//!
//! The manifest is read in two steps, so no other module ever handles unchecked input:
//! `raw` mirrors the TOML exactly (unknown keys refused, leaves kept with their byte spans),
//! then [`Manifest::parse`] checks every rule and builds typed values ([`ImageRef`],
//! [`PackageSpec`], [`MountSpec`], [`BackendKind`]) with defaults filled in. An error names the
//! file, line, column and field, what is wrong and what is allowed ([`ManifestError`]).
//!
//! Compatibility: every manifest the original Karapace accepted with a meaning we keep still
//! parses to that meaning. Validation is stricter (package names, mount paths, backend names,
//! duplicate container paths) and there are optional additions (`[base] sha256`, local tarball
//! images, `:ro` mounts); docs/manifest.md lists the differences.
//!
//! Layout: `raw` (serde shape), `error` (error data), `image` (`[base]`), `names` (packages and
//! apps), `paths` (lexical path handling), `mounts`, `canonical` (the canonical JSON),
//! `templates` (the files `new --template` writes), and the validation driver here.

mod canonical;
mod error;
mod image;
mod mounts;
mod names;
mod paths;
mod raw;
pub mod templates;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use toml::Spanned;

use self::error::Reporter;
pub use self::error::{ManifestError, MountProblem, NameKind, NameProblem, Problem};
pub use self::image::{
    lookup_alias, parse_image, BaseImage, ImageRef, IMAGE_ALIASES, TARBALL_SUFFIXES,
};
pub use self::mounts::MountSpec;
pub use self::names::{validate_package_name, PackageSpec, MAX_NAME_LEN};
pub use self::templates::{template, Template, TEMPLATES};
use crate::integration::{HomeMode, Integrations};
use crate::types::BackendKind;

/// The manifest format version this build writes and understands.
pub const MANIFEST_VERSION: i64 = 1;

/// Manifest format versions this build understands.
pub const SUPPORTED_VERSIONS: &[i64] = &[MANIFEST_VERSION];

/// The cgroup v1 `cpu.shares` range (the kernel's `MIN_SHARES` is 2 and it raises 1 to 2).
pub const CPU_SHARES_RANGE: (u64, u64) = (1, 262_144);

/// Largest `memory_limit_mb` whose byte count still fits in an `i64`, so later arithmetic
/// (`mb << 20`) cannot overflow.
pub const MAX_MEMORY_LIMIT_MB: u64 = (i64::MAX as u64) >> 20;

/// `pids_limit`: at least 8, because the sandbox's own helper processes count too (see
/// docs/manifest.md), and at most the kernel's `PID_MAX_LIMIT` on 64-bit (2^22).
pub const PIDS_LIMIT_RANGE: (u64, u64) = (8, 4_194_304);

/// `open_files`: at least 16 (a shell and its pipes), at most 1048576, the kernel's default
/// `fs.nr_open`, above which setrlimit(2) fails with EPERM even for root.
pub const OPEN_FILES_RANGE: (u64, u64) = (16, 1_048_576);

/// What parsing needs from the outside world, injected so tests do not depend on the real user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseEnv {
    /// The home directory `~` expands to; must be absolute.
    pub home: PathBuf,
}

impl ParseEnv {
    /// `$HOME` when set and absolute, else the home directory in the password database.
    pub fn from_process() -> Result<ParseEnv, ManifestError> {
        if let Some(home) = std::env::var_os("HOME").map(PathBuf::from) {
            if home.is_absolute() {
                return Ok(ParseEnv { home });
            }
        }
        let uid = nix::unistd::getuid();
        match nix::unistd::User::from_uid(uid) {
            Ok(Some(user)) if user.dir.is_absolute() => Ok(ParseEnv { home: user.dir }),
            Ok(Some(user)) => Err(ManifestError::NoHome {
                reason: format!(
                    "$HOME is unusable and the home of user {} is not absolute",
                    user.name
                ),
            }),
            Ok(None) => Err(ManifestError::NoHome {
                reason: format!("$HOME is unusable and uid {uid} has no password entry"),
            }),
            Err(err) => Err(ManifestError::NoHome {
                reason: format!("$HOME is unusable and looking up uid {uid} failed: {err}"),
            }),
        }
    }
}

/// `[hardware]`: host devices to pass through.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Hardware {
    pub gpu: bool,
    pub audio: bool,
}

/// `[runtime.resource_limits]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResourceLimits {
    pub cpu_shares: Option<u64>,
    pub memory_limit_mb: Option<u64>,
    /// Processes and threads at once (cgroup `pids.max`).
    pub pids_limit: Option<u64>,
    /// Open file descriptors per process (`RLIMIT_NOFILE`).
    pub open_files: Option<u64>,
}

impl ResourceLimits {
    pub fn is_empty(&self) -> bool {
        *self == ResourceLimits::default()
    }
}

/// `[runtime]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RuntimeConfig {
    pub backend: BackendKind,
    pub network_isolation: bool,
    pub limits: ResourceLimits,
}

/// A validated manifest. Lists are normalised (trimmed, sorted, de-duplicated) so that two
/// manifests that mean the same thing compare equal and have the same canonical form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Absolute (lexically normalised) path of the manifest file.
    pub path: PathBuf,
    pub base: BaseImage,
    /// Sorted by (name, version), each name once.
    pub packages: Vec<PackageSpec>,
    /// Trimmed, empties dropped, sorted by bytes, de-duplicated.
    pub gui_apps: Vec<String>,
    pub hardware: Hardware,
    /// Sorted by label.
    pub mounts: Vec<MountSpec>,
    pub runtime: RuntimeConfig,
    /// `[env]` (addition): variables for the sandbox, names checked against
    /// `crate::envpolicy`'s built-in deny list.
    pub env: BTreeMap<String, String>,
    /// `[integration]` (addition): the written switches; unwritten ones take defaults.
    pub integration: Integrations,
}

impl Manifest {
    /// What the environment installs: `[system] packages`, then each `[gui] apps` entry (a
    /// package name too) that the packages do not list already. Sorted by name, each once, so
    /// the lock pins a version for every app as for any package.
    pub fn install_list(&self) -> Vec<PackageSpec> {
        let mut list = self.packages.clone();
        for app in &self.gui_apps {
            if !list.iter().any(|p| p.name == *app) {
                list.push(PackageSpec {
                    name: app.clone(),
                    version: None,
                });
            }
        }
        list.sort();
        list
    }

    /// Reads and parses a manifest file.
    pub fn load(path: &Path, env: &ParseEnv) -> Result<Manifest, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Manifest::parse(&text, path, env)
    }

    /// Parses manifest text. `path` is where it came from: errors name it, and relative paths
    /// in the manifest are resolved against its directory.
    pub fn parse(text: &str, path: &Path, env: &ParseEnv) -> Result<Manifest, ManifestError> {
        let absolute = std::path::absolute(path).map_err(|source| ManifestError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let absolute = paths::normalize_lexically(&absolute);
        let dir = absolute.parent().unwrap_or(Path::new("/")).to_path_buf();
        let check = Validator {
            rep: Reporter { text, path },
            dir: &dir,
            home: &env.home,
        };
        let raw = raw::parse(text).map_err(|err| check.rep.syntax(&err))?;
        check.manifest(raw, absolute)
    }
}

/// Applies the rules to a raw manifest; one method per section.
struct Validator<'a> {
    rep: Reporter<'a>,
    dir: &'a Path,
    home: &'a Path,
}

type Checked<T> = Result<T, ManifestError>;

impl Validator<'_> {
    fn manifest(&self, raw: raw::RawManifest, path: PathBuf) -> Checked<Manifest> {
        self.version(raw.manifest_version)?;
        Ok(Manifest {
            path,
            base: self.base(raw.base)?,
            packages: self.packages(&raw.system.packages)?,
            gui_apps: self.apps(&raw.gui.apps)?,
            hardware: Hardware {
                gpu: raw.hardware.gpu,
                audio: raw.hardware.audio,
            },
            mounts: self.mounts(raw.mounts)?,
            runtime: self.runtime(raw.runtime)?,
            env: self.env(raw.env)?,
            integration: self.integration(raw.integration)?,
        })
    }

    fn env(
        &self,
        table: BTreeMap<Spanned<String>, Spanned<toml::Value>>,
    ) -> Checked<BTreeMap<String, String>> {
        let mut out = BTreeMap::new();
        for (key, value) in table {
            let name = key.get_ref().clone();
            let field = format!("env.{name}");
            let refuse = |reason: String| {
                self.rep.invalid(
                    key.span(),
                    field.clone(),
                    Problem::BadEnvName {
                        written: name.clone(),
                        reason,
                    },
                )
            };
            crate::envpolicy::check_name(&name).map_err(|p| refuse(p.to_string()))?;
            if let Some(reason) = crate::envpolicy::builtin_refusal(&name) {
                return Err(refuse(reason));
            }
            let text = match value.get_ref() {
                toml::Value::String(s) => s.clone(),
                other => {
                    let problem = Problem::EnvNotString {
                        found: raw::type_name(other),
                    };
                    return Err(self.rep.invalid(value.span(), field, problem));
                }
            };
            // execve(2) takes NUL-terminated strings: a NUL would silently cut the value.
            if text.contains('\0') {
                return Err(self.rep.invalid(value.span(), field, Problem::EnvValueNul));
            }
            out.insert(name, text);
        }
        Ok(out)
    }

    fn integration(&self, raw: raw::RawIntegration) -> Checked<Integrations> {
        let home = match raw.home {
            None => None,
            Some(h) => Some(HomeMode::parse(h.get_ref().trim()).ok_or_else(|| {
                let problem = Problem::UnknownHomeMode {
                    written: h.get_ref().clone(),
                };
                self.rep.invalid(h.span(), "integration.home", problem)
            })?),
        };
        Ok(Integrations {
            wayland: raw.wayland,
            x11: raw.x11,
            pipewire: raw.pipewire,
            pulseaudio: raw.pulseaudio,
            dbus: raw.dbus,
            ssh_agent: raw.ssh_agent,
            fonts: raw.fonts,
            icons: raw.icons,
            themes: raw.themes,
            home,
        })
    }

    /// An error for a key that is absent: at its table's header when there is one, else at the
    /// top of the file.
    fn missing(&self, table: Option<&str>, field: &str, allowed: &'static str) -> ManifestError {
        let start = table
            .and_then(|t| raw::table_start(self.rep.text, t))
            .unwrap_or(0);
        self.rep
            .invalid(start..start, field, Problem::Missing { allowed })
    }

    fn version(&self, version: Option<Spanned<i64>>) -> Checked<()> {
        let version = version.ok_or_else(|| {
            self.missing(
                None,
                "manifest_version",
                "manifest_version = 1 at the top of the file",
            )
        })?;
        let found = *version.get_ref();
        if SUPPORTED_VERSIONS.contains(&found) {
            Ok(())
        } else {
            Err(self.rep.invalid(
                version.span(),
                "manifest_version",
                Problem::UnsupportedVersion { found },
            ))
        }
    }

    fn base(&self, base: Option<raw::RawBase>) -> Checked<BaseImage> {
        const ALLOWED: &str =
            "[base] image = \"rolling\" (or another alias, an http(s):// URL or a \
                               local rootfs tarball)";
        let base = base.ok_or_else(|| self.missing(None, "base.image", ALLOWED))?;
        let image = base
            .image
            .ok_or_else(|| self.missing(Some("base"), "base.image", ALLOWED))?;
        let parsed = image::parse_image(image.get_ref(), self.dir, self.home)
            .map_err(|problem| self.rep.invalid(image.span(), "base.image", problem))?;
        let sha256 = match base.sha256 {
            None => None,
            Some(sha) => Some(
                image::parse_sha256(sha.get_ref())
                    .map_err(|problem| self.rep.invalid(sha.span(), "base.sha256", problem))?,
            ),
        };
        Ok(BaseImage {
            image: parsed,
            sha256,
        })
    }

    fn packages(&self, entries: &[Spanned<String>]) -> Checked<Vec<PackageSpec>> {
        // name -> (index, spec) of its first occurrence, to explain a conflict.
        let mut seen: HashMap<String, (usize, PackageSpec)> = HashMap::new();
        let mut out = Vec::new();
        for (index, entry) in entries.iter().enumerate() {
            let written = entry.get_ref().trim();
            if written.is_empty() {
                continue;
            }
            let field = format!("system.packages[{index}]");
            let spec = names::parse_name(NameKind::Package, written).map_err(|reason| {
                let problem = Problem::BadName {
                    kind: NameKind::Package,
                    written: written.into(),
                    reason,
                };
                self.rep.invalid(entry.span(), field.clone(), problem)
            })?;
            match seen.get(&spec.name) {
                Some((first_index, first)) if first.version != spec.version => {
                    let problem = Problem::ConflictingVersions {
                        first: first.to_string(),
                        first_field: format!("system.packages[{first_index}]"),
                        second: spec.to_string(),
                    };
                    return Err(self.rep.invalid(entry.span(), field, problem));
                }
                Some(_) => {}
                None => {
                    seen.insert(spec.name.clone(), (index, spec.clone()));
                    out.push(spec);
                }
            }
        }
        out.sort();
        Ok(out)
    }

    fn apps(&self, entries: &[Spanned<String>]) -> Checked<Vec<String>> {
        let mut out = BTreeSet::new();
        for (index, entry) in entries.iter().enumerate() {
            let written = entry.get_ref().trim();
            if written.is_empty() {
                continue;
            }
            let spec = names::parse_name(NameKind::App, written).map_err(|reason| {
                let problem = Problem::BadName {
                    kind: NameKind::App,
                    written: written.into(),
                    reason,
                };
                self.rep
                    .invalid(entry.span(), format!("gui.apps[{index}]"), problem)
            })?;
            out.insert(spec.name);
        }
        Ok(out.into_iter().collect())
    }

    fn mounts(
        &self,
        table: BTreeMap<Spanned<String>, Spanned<toml::Value>>,
    ) -> Checked<Vec<MountSpec>> {
        // Document order, so "first" and "second" in messages match what the user reads.
        let mut entries: Vec<_> = table.into_iter().collect();
        entries.sort_by_key(|(key, _)| key.span().start);
        let mut by_label: BTreeMap<String, MountSpec> = BTreeMap::new();
        let mut by_container: HashMap<PathBuf, String> = HashMap::new();
        for (key, value) in entries {
            let field = mounts::label_field(key.get_ref());
            let label = key.get_ref().trim().to_string();
            if label.is_empty() {
                return Err(self
                    .rep
                    .invalid(key.span(), field, Problem::EmptyMountLabel));
            }
            if by_label.contains_key(&label) {
                return Err(self.rep.invalid(
                    key.span(),
                    field,
                    Problem::DuplicateMountLabel { label },
                ));
            }
            let written = match value.get_ref() {
                toml::Value::String(s) => s.trim().to_string(),
                other => {
                    let problem = Problem::MountNotString {
                        found: raw::type_name(other),
                    };
                    return Err(self.rep.invalid(value.span(), field, problem));
                }
            };
            let parsed =
                mounts::parse_mount_value(&written, self.dir, self.home).map_err(|reason| {
                    let problem = Problem::BadMount {
                        written: written.clone(),
                        reason,
                    };
                    self.rep.invalid(value.span(), field.clone(), problem)
                })?;
            if let Some(first_label) = by_container.get(&parsed.container_path) {
                let problem = Problem::DuplicateContainerPath {
                    container_path: parsed.container_path.display().to_string(),
                    first_label: first_label.clone(),
                    second_label: label,
                };
                return Err(self.rep.invalid(value.span(), field, problem));
            }
            by_container.insert(parsed.container_path.clone(), label.clone());
            let spec = MountSpec {
                label: label.clone(),
                written,
                host_path: parsed.host_path,
                container_path: parsed.container_path,
                read_only: parsed.read_only,
            };
            by_label.insert(label, spec);
        }
        Ok(by_label.into_values().collect())
    }

    fn runtime(&self, runtime: raw::RawRuntime) -> Checked<RuntimeConfig> {
        let backend = match runtime.backend {
            None => BackendKind::default(),
            Some(b) => b.get_ref().parse::<BackendKind>().map_err(|_| {
                let problem = Problem::UnknownBackend {
                    written: b.get_ref().clone(),
                };
                self.rep.invalid(b.span(), "runtime.backend", problem)
            })?,
        };
        let raw_limits = runtime.resource_limits;
        let (cpu_min, cpu_max) = CPU_SHARES_RANGE;
        let limits = ResourceLimits {
            cpu_shares: self.in_range(
                raw_limits.cpu_shares,
                "runtime.resource_limits.cpu_shares",
                cpu_min,
                cpu_max,
            )?,
            memory_limit_mb: self.in_range(
                raw_limits.memory_limit_mb,
                "runtime.resource_limits.memory_limit_mb",
                1,
                MAX_MEMORY_LIMIT_MB,
            )?,
            pids_limit: self.in_range(
                raw_limits.pids_limit,
                "runtime.resource_limits.pids_limit",
                PIDS_LIMIT_RANGE.0,
                PIDS_LIMIT_RANGE.1,
            )?,
            open_files: self.in_range(
                raw_limits.open_files,
                "runtime.resource_limits.open_files",
                OPEN_FILES_RANGE.0,
                OPEN_FILES_RANGE.1,
            )?,
        };
        Ok(RuntimeConfig {
            backend,
            network_isolation: runtime.network_isolation,
            limits,
        })
    }

    fn in_range(
        &self,
        value: Option<Spanned<i64>>,
        field: &str,
        min: u64,
        max: u64,
    ) -> Checked<Option<u64>> {
        let Some(value) = value else { return Ok(None) };
        match u64::try_from(*value.get_ref()) {
            Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
            _ => {
                let problem = Problem::OutOfRange {
                    value: *value.get_ref(),
                    min,
                    max,
                };
                Err(self.rep.invalid(value.span(), field, problem))
            }
        }
    }
}

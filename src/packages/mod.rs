//! Distribution package managers, as data: which one an image has, the exact command lines
//! that refresh its indexes, resolve versions, install and query, and how to read their output.
//!
//! Nothing here runs a program: the namespace backend runs these argv vectors inside the build
//! sandbox (`runtime::install`), directly, never through a shell, so no name needs quoting.
//! Names and versions reach this module already validated by the manifest (`manifest::names`:
//! no leading `-`, no shell or option characters), and every argv puts them after the options.
//!
//! The five managers, and what each can do:
//!
//! | manager | refresh              | resolve (candidate version)        | pin a version | query installed     |
//! |---------|----------------------|------------------------------------|---------------|---------------------|
//! | apt     | `apt-get update`     | `apt-cache policy`                 | `name=version`| `dpkg-query -W`     |
//! | dnf     | `dnf makecache`      | `dnf repoquery --latest-limit=1`   | `name-version`| `rpm -q --qf`       |
//! | zypper  | `zypper refresh`     | `zypper info`                      | `name=version`| `rpm -q --qf`       |
//! | pacman  | `pacman -Sy`         | `pacman -Sp --print-format`        | cannot        | `pacman -Q`         |
//! | apk     | `apk update`         | `apk policy`                       | `name=version`| `apk list -I`       |
//!
//! `[gui] apps` are packages too; their desktop entries are found in what the package owns
//! (`dpkg-query -L`, `rpm -ql`, `pacman -Qlq`, `apk info -L`: [`Manager::list_files`]).
//!
//! pacman cannot install an older version from its sync repositories, so a `--locked` build
//! installs what the mirror has and then fails if it differs from the lock ([`Manager::can_pin`]).

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use crate::lock::LockedPackage;
use crate::manifest::PackageSpec;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Manager {
    Apt,
    Dnf,
    Zypper,
    Pacman,
    Apk,
}

impl fmt::Display for Manager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Manager::Apt => "apt",
            Manager::Dnf => "dnf",
            Manager::Zypper => "zypper",
            Manager::Pacman => "pacman",
            Manager::Apk => "apk",
        })
    }
}

/// What went wrong reading a manager's answer; the runtime turns it into a build error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PackageError {
    #[error(
        "package `{name}` was not found in the image's {manager} repositories (check the \
         spelling, or enable the repository that has it)"
    )]
    NotFound { manager: Manager, name: String },
    #[error(
        "version {version} of package `{name}` is not available from the image's {manager} \
         repositories (available: {available})"
    )]
    VersionUnavailable {
        manager: Manager,
        name: String,
        version: String,
        available: String,
    },
    #[error(
        "package `{name}`: the lock pins {locked}, but {manager} installed {installed}; \
         {manager} cannot install a specific version, so run `build --update` to take the \
         repository's version"
    )]
    Drifted {
        manager: Manager,
        name: String,
        locked: String,
        installed: String,
    },
    #[error("{manager} reported no installed version for package `{name}` after installing it")]
    NotInstalled { manager: Manager, name: String },
}

/// The desktop entries among a package's files (the output of [`Manager::list_files`]): the
/// `.desktop` files directly in an `applications` data directory. apk lists paths without the
/// leading `/` under a `NAME-VERSION contains:` header; the others list absolute paths.
pub fn desktop_files(stdout: &str) -> Vec<String> {
    const DIRS: [&str; 2] = ["/usr/share/applications/", "/usr/local/share/applications/"];
    let mut found: Vec<String> = stdout
        .lines()
        .map(str::trim_end)
        .filter(|line| !line.is_empty() && !line.ends_with(" contains:"))
        .map(|line| {
            if line.starts_with('/') {
                line.to_string()
            } else {
                format!("/{line}")
            }
        })
        .filter(|path| {
            DIRS.iter().any(|dir| {
                path.strip_prefix(dir).is_some_and(|name| {
                    name.ends_with(".desktop")
                        && name.len() > ".desktop".len()
                        && !name.contains('/')
                })
            })
        })
        .collect();
    found.sort();
    found.dedup();
    found
}

/// Where each manager's main program lives, relative to the root, checked in this order.
const PROGRAMS: [(Manager, &str); 5] = [
    (Manager::Apt, "apt-get"),
    (Manager::Dnf, "dnf"),
    (Manager::Zypper, "zypper"),
    (Manager::Pacman, "pacman"),
    (Manager::Apk, "apk"),
];

/// The manager of a root file system whose layers are `layers` (top first, e.g. an
/// environment's upper directory and then its image). Looks in `usr/bin`, `usr/sbin`, `bin`
/// and `sbin` without following any symbolic link out of the tree: a merged-/usr image's
/// `/bin` is a link to `usr/bin`, which is also checked directly.
pub fn detect(layers: &[&Path]) -> Option<Manager> {
    const DIRS: [&str; 4] = ["usr/bin", "usr/sbin", "bin", "sbin"];
    PROGRAMS.into_iter().find_map(|(manager, program)| {
        let found = layers.iter().any(|layer| {
            DIRS.iter().any(|dir| {
                // Every component must be a real directory: `usr -> /usr` would be the host's.
                let mut path = layer.to_path_buf();
                let real_dirs = dir.split('/').all(|comp| {
                    path.push(comp);
                    std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir())
                });
                real_dirs && std::fs::symlink_metadata(path.join(program)).is_ok()
            })
        });
        found.then_some(manager)
    })
}

fn argv(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| (*w).to_string()).collect()
}

impl Manager {
    /// Whether an exact version can be requested at install time.
    pub fn can_pin(self) -> bool {
        self != Manager::Pacman
    }

    /// Environment variables the manager's commands need to run unattended and to print
    /// output in the form the parsers expect.
    pub fn env(self) -> Vec<(String, String)> {
        let mut env = vec![("LC_ALL".to_string(), "C".to_string())];
        if self == Manager::Apt {
            // debconf would otherwise wait for answers on a terminal we do not give it.
            env.push(("DEBIAN_FRONTEND".to_string(), "noninteractive".to_string()));
        }
        env
    }

    /// Refreshes the package indexes. `apt_sandbox_root`: as for [`Manager::install`].
    pub fn refresh(self, apt_sandbox_root: bool) -> Vec<String> {
        match self {
            Manager::Apt if apt_sandbox_root => {
                argv(&["apt-get", "update", "-o", "APT::Sandbox::User=root"])
            }
            Manager::Apt => argv(&["apt-get", "update"]),
            Manager::Dnf => argv(&["dnf", "-y", "makecache"]),
            Manager::Zypper => argv(&["zypper", "--non-interactive", "refresh"]),
            Manager::Pacman => argv(&["pacman", "-Sy", "--noconfirm"]),
            Manager::Apk => argv(&["apk", "update"]),
        }
    }

    /// Prints what installing `names` would install, in the form [`Manager::parse_resolve`]
    /// reads. Needs fresh indexes.
    pub fn resolve(self, names: &[&str]) -> Vec<String> {
        let mut cmd = match self {
            Manager::Apt => argv(&["apt-cache", "policy", "--"]),
            Manager::Dnf => argv(&[
                "dnf",
                "-q",
                "repoquery",
                "--latest-limit=1",
                "--qf",
                "%{name} %{evr}\\n",
                "--",
            ]),
            Manager::Zypper => argv(&["zypper", "--non-interactive", "info", "--"]),
            Manager::Pacman => argv(&["pacman", "-Sp", "--print-format", "%n %v", "--"]),
            Manager::Apk => argv(&["apk", "policy", "--"]),
        };
        cmd.extend(names.iter().map(|n| (*n).to_string()));
        cmd
    }

    /// Installs exactly `packages` (pinned where the manager can), non-interactively, without
    /// weak dependencies (recommends), so what is installed follows from the lock alone.
    /// `apt_sandbox_root`: let apt fetch as root, for user namespaces without apt's `_apt`.
    pub fn install(self, packages: &[LockedPackage], apt_sandbox_root: bool) -> Vec<String> {
        let mut cmd = match self {
            Manager::Apt => {
                let mut cmd = argv(&["apt-get", "install", "-y", "--no-install-recommends"]);
                if apt_sandbox_root {
                    cmd.extend(argv(&["-o", "APT::Sandbox::User=root"]));
                }
                cmd.push("--".to_string());
                cmd
            }
            Manager::Dnf => argv(&[
                "dnf",
                "install",
                "-y",
                "--setopt=install_weak_deps=False",
                "--",
            ]),
            Manager::Zypper => argv(&[
                "zypper",
                "--non-interactive",
                "install",
                "--no-recommends",
                "--",
            ]),
            Manager::Pacman => argv(&["pacman", "-S", "--noconfirm", "--needed", "--"]),
            Manager::Apk => argv(&["apk", "add", "--no-cache", "--"]),
        };
        cmd.extend(packages.iter().map(|p| self.pinned(p)));
        cmd
    }

    /// One install argument: the name with its version in the manager's syntax.
    fn pinned(self, p: &LockedPackage) -> String {
        match self {
            Manager::Apt | Manager::Zypper | Manager::Apk => format!("{}={}", p.name, p.version),
            Manager::Dnf => format!("{}-{}", p.name, p.version),
            Manager::Pacman => p.name.clone(),
        }
    }

    /// Prints the installed version of each of `names`, read by [`Manager::parse_query`].
    pub fn query(self, names: &[&str]) -> Vec<String> {
        let mut cmd = match self {
            Manager::Apt => argv(&["dpkg-query", "-W", "-f", "${Package} ${Version}\\n", "--"]),
            Manager::Dnf | Manager::Zypper => argv(&[
                "rpm",
                "-q",
                "--qf",
                "%{NAME} %|EPOCH?{%{EPOCH}:}:{}|%{VERSION}-%{RELEASE}\\n",
                "--",
            ]),
            Manager::Pacman => argv(&["pacman", "-Q", "--"]),
            Manager::Apk => argv(&["apk", "list", "-I", "--"]),
        };
        cmd.extend(names.iter().map(|n| (*n).to_string()));
        cmd
    }

    /// Lists the files one installed package owns (`[gui] apps` export their desktop entries),
    /// read by [`desktop_files`].
    pub fn list_files(self, name: &str) -> Vec<String> {
        let mut cmd = match self {
            Manager::Apt => argv(&["dpkg-query", "-L", "--"]),
            Manager::Dnf | Manager::Zypper => argv(&["rpm", "-ql", "--"]),
            Manager::Pacman => argv(&["pacman", "-Qlq", "--"]),
            Manager::Apk => argv(&["apk", "info", "-L", "--"]),
        };
        cmd.push(name.to_string());
        cmd
    }

    /// Deletes the downloaded package files (they belong to no environment), run inside the
    /// sandbox because the cache may belong to the manager's own user (apt's `_apt`). Index
    /// lists are kept, so the manager works inside the environment without a refresh. apk
    /// needs nothing: it installs with `--no-cache`.
    pub fn clean(self) -> Option<Vec<String>> {
        match self {
            Manager::Apt => Some(argv(&["apt-get", "clean"])),
            Manager::Dnf => Some(argv(&["dnf", "clean", "packages"])),
            Manager::Zypper => Some(argv(&["zypper", "--non-interactive", "clean"])),
            Manager::Pacman => Some(argv(&["pacman", "-Scc", "--noconfirm"])),
            Manager::Apk => None,
        }
    }

    /// The version to lock for each requested package, from the output of
    /// [`Manager::resolve`]: the manager's candidate, or the manifest's own `=version` after
    /// checking that the repositories have it.
    pub fn parse_resolve(
        self,
        specs: &[PackageSpec],
        stdout: &str,
    ) -> Result<Vec<LockedPackage>, PackageError> {
        let offers = match self {
            Manager::Apt => parse_apt_policy(stdout),
            Manager::Zypper => parse_zypper_info(stdout),
            Manager::Apk => parse_apk_policy(stdout),
            Manager::Dnf | Manager::Pacman => parse_name_version_lines(stdout),
        };
        specs
            .iter()
            .map(|spec| {
                let offer = offers
                    .get(spec.name.as_str())
                    .filter(|o| o.candidate.is_some() || !o.versions.is_empty())
                    .ok_or_else(|| PackageError::NotFound {
                        manager: self,
                        name: spec.name.clone(),
                    })?;
                let version = match (&spec.version, &offer.candidate) {
                    (Some(wanted), _) => {
                        // Managers that list only the candidate cannot confirm an older
                        // version here; the pinned install will fail if it does not exist.
                        let listed = offer.versions.iter().any(|v| v == wanted)
                            || offer.candidate.as_deref() == Some(wanted.as_str());
                        if !listed && offer.lists_all {
                            return Err(PackageError::VersionUnavailable {
                                manager: self,
                                name: spec.name.clone(),
                                version: wanted.clone(),
                                available: offer.versions.join(", "),
                            });
                        }
                        wanted.clone()
                    }
                    (None, Some(candidate)) => candidate.clone(),
                    (None, None) => {
                        return Err(PackageError::NotFound {
                            manager: self,
                            name: spec.name.clone(),
                        })
                    }
                };
                Ok(LockedPackage {
                    name: spec.name.clone(),
                    version,
                })
            })
            .collect()
    }

    /// The installed versions of `wanted`, from the output of [`Manager::query`], checked
    /// against what was asked for.
    pub fn check_installed(
        self,
        wanted: &[LockedPackage],
        stdout: &str,
    ) -> Result<Vec<LockedPackage>, PackageError> {
        let installed: BTreeMap<String, String> = match self {
            Manager::Apk => parse_apk_list(stdout, wanted),
            _ => parse_name_version_lines(stdout)
                .into_iter()
                .filter_map(|(name, offer)| Some((name, offer.candidate?)))
                .collect(),
        };
        wanted
            .iter()
            .map(|p| {
                let base = p.name.split(':').next().unwrap_or(&p.name);
                let version = installed
                    .get(&p.name)
                    .or_else(|| installed.get(base))
                    .ok_or_else(|| PackageError::NotInstalled {
                        manager: self,
                        name: p.name.clone(),
                    })?;
                if *version != p.version {
                    return Err(PackageError::Drifted {
                        manager: self,
                        name: p.name.clone(),
                        locked: p.version.clone(),
                        installed: version.clone(),
                    });
                }
                Ok(p.clone())
            })
            .collect()
    }
}

/// What a repository offers for one name.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Offer {
    candidate: Option<String>,
    /// Every version the output listed.
    versions: Vec<String>,
    /// Whether `versions` is the complete list (so a version missing from it does not exist).
    lists_all: bool,
}

/// `apt-cache policy a b` — one block per known name:
/// ```text
/// hello:
///   Installed: (none)
///   Candidate: 2.10-3
///   Version table:
///  *** 2.10-3 500
///         500 http://deb.debian.org/debian bookworm/main amd64 Packages
/// ```
/// A name apt does not know has no block; a virtual package has `Candidate: (none)`.
fn parse_apt_policy(stdout: &str) -> BTreeMap<String, Offer> {
    let mut offers = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in stdout.lines() {
        if !line.starts_with(' ') {
            current = line.strip_suffix(':').map(str::to_string);
            if let Some(name) = &current {
                offers.insert(
                    name.clone(),
                    Offer {
                        lists_all: true,
                        ..Offer::default()
                    },
                );
            }
            continue;
        }
        let Some(offer) = current.as_ref().and_then(|n| offers.get_mut(n)) else {
            continue;
        };
        let text = line.trim();
        if let Some(candidate) = text.strip_prefix("Candidate:") {
            let candidate = candidate.trim();
            offer.candidate = (candidate != "(none)").then(|| candidate.to_string());
            continue;
        }
        // A version line is `[***] VERSION PRIORITY`; source lines are `PRIORITY URL …`.
        let words: Vec<&str> = text.trim_start_matches("***").split_whitespace().collect();
        if let [version, priority] = words.as_slice() {
            if priority.parse::<i32>().is_ok() && version.parse::<i32>().is_err() {
                offer.versions.push((*version).to_string());
            }
        }
    }
    offers
}

/// Lines of `NAME VERSION` (dnf repoquery, pacman -Sp, dpkg-query, rpm -q, pacman -Q). Lines
/// that are not two words (warnings, "package x is not installed") are skipped.
fn parse_name_version_lines(stdout: &str) -> BTreeMap<String, Offer> {
    let mut offers = BTreeMap::new();
    for line in stdout.lines() {
        if let [name, version] = line.split_whitespace().collect::<Vec<_>>().as_slice() {
            offers.insert(
                (*name).to_string(),
                Offer {
                    candidate: Some((*version).to_string()),
                    versions: vec![(*version).to_string()],
                    lists_all: false,
                },
            );
        }
    }
    offers
}

/// `zypper info a b`: blocks with `Name           : a` and `Version        : 1.2-3.4`.
fn parse_zypper_info(stdout: &str) -> BTreeMap<String, Offer> {
    let mut offers = BTreeMap::new();
    let mut name: Option<String> = None;
    for line in stdout.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        match key.trim() {
            "Name" => name = Some(value.trim().to_string()),
            "Version" => {
                if let Some(name) = name.take() {
                    let version = value.trim().to_string();
                    offers.insert(
                        name,
                        Offer {
                            candidate: Some(version.clone()),
                            versions: vec![version],
                            lists_all: false,
                        },
                    );
                }
            }
            _ => {}
        }
    }
    offers
}

/// `apk policy a`:
/// ```text
/// a policy:
///   1.2-r0:
///     https://dl-cdn.alpinelinux.org/alpine/v3.20/main
/// ```
/// The first version listed is the one `apk add` takes.
fn parse_apk_policy(stdout: &str) -> BTreeMap<String, Offer> {
    let mut offers: BTreeMap<String, Offer> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in stdout.lines() {
        if let Some(name) = line.strip_suffix(" policy:") {
            current = Some(name.trim().to_string());
            offers.insert(
                name.trim().to_string(),
                Offer {
                    lists_all: true,
                    ..Offer::default()
                },
            );
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let Some(version) = line.trim().strip_suffix(':') else {
            continue;
        };
        if indent == 2 {
            if let Some(offer) = current.as_ref().and_then(|n| offers.get_mut(n)) {
                offer.candidate.get_or_insert_with(|| version.to_string());
                offer.versions.push(version.to_string());
            }
        }
    }
    offers
}

/// `apk list -I a`: `a-1.2-r0 x86_64 {a} (MIT) [installed]`. The name is known, so the
/// version is what follows `name-`.
fn parse_apk_list(stdout: &str, wanted: &[LockedPackage]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in stdout.lines().filter(|l| l.contains("[installed]")) {
        let Some(first) = line.split_whitespace().next() else {
            continue;
        };
        for p in wanted {
            if let Some(version) = first.strip_prefix(&format!("{}-", p.name)) {
                // `a-1.2-r0` also starts with `a-` for a package `a-dev`: a version starts
                // with a digit.
                if version.starts_with(|c: char| c.is_ascii_digit()) {
                    out.insert(p.name.clone(), version.to_string());
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;

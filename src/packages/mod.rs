//! Distribution package managers, as data: which one an image has, the exact command lines
//! that refresh its indexes, resolve versions, compute an install's transaction, install and
//! query, and how to read their output.
//!
//! Nothing here runs a program: the namespace backend runs these argv vectors inside the build
//! sandbox (`runtime::install`), directly, never through a shell, so no name needs quoting.
//! Names and versions reach this module already validated by the manifest (`manifest::names`:
//! no leading `-`, no shell or option characters), and every argv puts them after the options.
//! Names and versions read back from a manager's output are checked against the same rules
//! before they reach a lock or a command line (`transaction`).
//!
//! The five managers, and what each can do:
//!
//! | manager | refresh          | resolve (candidate version)      | the install's transaction           | pin a version  | query installed  |
//! |---------|------------------|----------------------------------|-------------------------------------|----------------|------------------|
//! | apt     | `apt-get update` | `apt-cache policy`               | the install, `dpkg-query -W` around | `name=version` | `dpkg-query -W`  |
//! | dnf     | `dnf makecache`  | `dnf repoquery --latest-limit=1` | `dnf install --assumeno`            | `name-version` | `rpm -q --qf`    |
//! | zypper  | `zypper refresh` | `zypper info`                    | `zypper --xmlout install --dry-run` | `name=version` | `rpm -q --qf`    |
//! | pacman  | `pacman -Sy`     | `pacman -Sp --print-format`      | `pacman -S --print`                 | cannot         | `pacman -Q`      |
//! | apk     | `apk update`     | `apk policy`                     | `apk add --simulate`                | `name=version` | `apk list -I`    |
//!
//! The lock pins the whole transaction: the listed packages and every package their install
//! adds or upgrades (the dependencies), so a locked build installs exactly the same set. apt
//! learns it from the install itself, which dpkg's database then lists; the others from their
//! dry run of the install ([`Manager::probe`]).
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

mod transaction;

pub use transaction::{package_problem, Change, Transaction};

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
        "package `{name}`{}: the lock pins {locked}, but {manager} installed {installed}; \
         {manager} cannot install a specific version, so run `karapace-tui build --update` to \
         take the repository's version",
        role(.dependency)
    )]
    Drifted {
        manager: Manager,
        name: String,
        dependency: bool,
        locked: String,
        installed: String,
    },
    #[error(
        "package `{name}`{}: the lock pins {locked}, but {installed} is installed after \
         installing exactly the locked packages; the environment is not what the lock \
         describes (run `karapace-tui build --update` to resolve the packages again)",
        role(.dependency)
    )]
    Mismatch {
        manager: Manager,
        name: String,
        dependency: bool,
        locked: String,
        installed: String,
    },
    #[error(
        "{manager} reported no installed version for package `{name}`{} after installing it",
        role(.dependency)
    )]
    NotInstalled {
        manager: Manager,
        name: String,
        dependency: bool,
    },
    #[error(
        "cannot read what {manager} reported of the install's transaction: {problem} in the \
         line `{line}`"
    )]
    UnreadableTransaction {
        manager: Manager,
        problem: String,
        line: String,
    },
    #[error("cannot use what {manager} reported: {problem}")]
    Unreadable { manager: Manager, problem: String },
    #[error(
        "{manager}'s dry run of the install printed no transaction (neither packages to \
         install nor that there is nothing to do); its output is in the log above"
    )]
    NoTransaction { manager: Manager },
    #[error(
        "{manager} would install {transaction} of package `{name}`, not the resolved \
         {resolved}{}",
        if *.can_pin { "" } else { " (it cannot install a chosen version)" }
    )]
    TransactionDiffers {
        manager: Manager,
        name: String,
        resolved: String,
        transaction: String,
        can_pin: bool,
    },
}

/// How an error names a package that the manifest does not list.
fn role(dependency: &bool) -> &'static str {
    if *dependency {
        " (a dependency)"
    } else {
        ""
    }
}

/// The versions chosen for the listed packages ([`Manager::parse_resolve`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub packages: Vec<LockedPackage>,
    /// Versions an earlier lock pinned that cannot be kept: the repositories no longer list
    /// them (or the manager cannot install a chosen one). Each is `(name, old version)`; the
    /// package takes the candidate instead.
    pub stale_pins: Vec<(String, String)>,
}

/// Reads a dry run's output ([`Probe::DryRun`]).
pub type DryRunParser = fn(&str) -> Result<Transaction, PackageError>;

/// Reads what an install changed from the listings of the installed packages before and
/// after it ([`Probe::Install`]).
pub type ListingComparer = fn(&str, &str) -> Result<Transaction, PackageError>;

/// How a resolve learns an install's whole transaction ([`Manager::probe`]).
#[derive(Debug, Clone)]
pub enum Probe {
    /// Run `argv` (its exit code judged by [`Manager::simulate_succeeded`]), which changes
    /// nothing, and read the transaction it prints with `parse`.
    DryRun {
        argv: Vec<String>,
        parse: DryRunParser,
    },
    /// Install for real ([`Manager::install`]), with `list` run before and after (each
    /// judged by [`Manager::query_succeeded`]); `compare` reads what changed.
    Install {
        list: Vec<String>,
        compare: ListingComparer,
    },
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
        if self == Manager::Dnf {
            // dnf 5's table (libsmartcols) may cut its version column to the terminal's width,
            // which it takes from COLUMNS without a terminal: wide enough never to cut one.
            env.push(("COLUMNS".to_string(), "4096".to_string()));
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

    /// How a resolve learns the whole transaction of installing `packages` (at their resolved
    /// versions): every package the install adds, upgrades or removes, with versions.
    ///
    /// apt installs them for real, in the resolve's scratch overlay, and lists dpkg's database
    /// before and after: apt's dry run (`apt-get install -s`) runs the whole solver, which
    /// costs about as much as the install itself, and the install is needed anyway (the
    /// overlay becomes the environment's layer when the lock is written from it). The others
    /// run their dry run of the install, with the same options as [`Manager::install`], so
    /// the same dependencies follow (no recommends or weak dependencies). Needs fresh indexes.
    pub fn probe(self, packages: &[LockedPackage]) -> Probe {
        let (words, parse): (&[&str], DryRunParser) = match self {
            Manager::Apt => {
                return Probe::Install {
                    list: self.query(&[]),
                    compare: transaction::parse_dpkg_changes,
                }
            }
            // dnf(8) `--assumeno`: resolves and prints the transaction table, then answers
            // "no" (the exit code is then 1, see `simulate_succeeded`).
            Manager::Dnf => (
                &[
                    "dnf",
                    "install",
                    "--assumeno",
                    "--setopt=install_weak_deps=False",
                    "--",
                ],
                transaction::parse_dnf,
            ),
            // zypper(8) `--dry-run` with the global `--xmlout`: the install summary as XML,
            // which gives each package's edition (the plain summary lists names only).
            Manager::Zypper => (
                &[
                    "zypper",
                    "--xmlout",
                    "--non-interactive",
                    "install",
                    "--dry-run",
                    "--no-recommends",
                    "--",
                ],
                transaction::parse_zypper,
            ),
            // pacman(8) `--print`: the targets, dependencies included, instead of installing.
            Manager::Pacman => (
                &[
                    "pacman",
                    "-S",
                    "--needed",
                    "--noconfirm",
                    "--print",
                    "--print-format",
                    "%n %v",
                    "--",
                ],
                transaction::parse_pacman,
            ),
            // apk(8) `--simulate`: what `apk add` would do, one line per package.
            Manager::Apk => (
                &["apk", "add", "--simulate", "--no-cache", "--"],
                transaction::parse_apk,
            ),
        };
        let mut cmd = argv(words);
        cmd.extend(packages.iter().map(|p| self.pinned(p)));
        Probe::DryRun { argv: cmd, parse }
    }

    /// Whether a dry run ([`Probe::DryRun`]) exiting with `code` may have printed a transaction:
    /// dnf's `--assumeno` answers "no" and exits 1 ("Operation aborted"); the parser then
    /// requires the transaction in the output.
    pub fn simulate_succeeded(self, code: i32) -> bool {
        code == 0 || (self == Manager::Dnf && code == 1)
    }

    /// Whether [`Manager::query`] exiting with `code` still printed what is installed: the
    /// query exits non-zero when a name is not installed (dpkg-query and pacman 1, rpm the
    /// number of such names), which [`Manager::check_installed`] then reports by name.
    pub fn query_succeeded(self, code: i32) -> bool {
        match self {
            Manager::Apt | Manager::Pacman => code == 0 || code == 1,
            Manager::Dnf | Manager::Zypper => (0..=100).contains(&code),
            Manager::Apk => code == 0,
        }
    }

    /// The `(name, version)` pins a failed install or dry run says its repositories do not
    /// have, from the command's output: apt's `E: Version 'V' for 'N' was not found`. Other
    /// managers word it in ways too varied to read; their output is shown as it is.
    pub fn missing_versions(self, output: &str) -> Vec<(String, String)> {
        if self != Manager::Apt {
            return Vec::new();
        }
        output
            .lines()
            .filter_map(|line| {
                let rest = line.trim().strip_prefix("E: Version '")?;
                let (version, rest) = rest.split_once("' for '")?;
                let name = rest.strip_suffix("' was not found")?;
                Some((name.to_string(), version.to_string()))
            })
            .collect()
    }

    /// One install argument: the name with its version in the manager's syntax.
    fn pinned(self, p: &LockedPackage) -> String {
        match self {
            Manager::Apt | Manager::Zypper | Manager::Apk => format!("{}={}", p.name, p.version),
            Manager::Dnf => format!("{}-{}", p.name, p.version),
            Manager::Pacman => p.name.clone(),
        }
    }

    /// Prints the installed version of each of `names`, checked by [`Manager::check_installed`].
    /// apt's without names lists every package dpkg knows ([`Probe::Install`]).
    pub fn query(self, names: &[&str]) -> Vec<String> {
        let mut cmd = match self {
            // The status first: a removed package whose configuration files are left still has
            // a version in dpkg's database. The architecture tells a foreign package (multiarch)
            // from the native one of the same name.
            Manager::Apt => argv(&[
                "dpkg-query",
                "-W",
                "-f",
                "${db:Status-Status} ${Package} ${Architecture} ${Version}\\n",
                "--",
            ]),
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

    /// Marks `packages` as installed on request, where an install that did not name them
    /// (the one of [`Probe::Install`], which names the listed packages only) left them marked
    /// as installed for another's sake: a `--locked` build names every locked package, which
    /// marks them all, and both builds must leave the same environment. apt-mark(8) `manual`;
    /// `None` for the managers whose installs always name the whole set.
    pub fn mark_manual(self, packages: &[LockedPackage]) -> Option<Vec<String>> {
        let mut cmd = match self {
            Manager::Apt => argv(&["apt-mark", "manual", "--"]),
            Manager::Dnf | Manager::Zypper | Manager::Pacman | Manager::Apk => return None,
        };
        cmd.extend(packages.iter().map(|p| p.name.clone()));
        Some(cmd)
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
    /// [`Manager::resolve`]: the manifest's own `=version` after checking that the
    /// repositories have it, else the version `pins` (an earlier lock) holds while the
    /// repositories still have it, else the manager's candidate.
    pub fn parse_resolve(
        self,
        specs: &[PackageSpec],
        pins: &BTreeMap<String, String>,
        stdout: &str,
    ) -> Result<Resolved, PackageError> {
        let offers = match self {
            Manager::Apt => parse_apt_policy(stdout),
            Manager::Zypper => parse_zypper_info(stdout),
            Manager::Apk => parse_apk_policy(stdout),
            Manager::Dnf | Manager::Pacman => parse_name_version_lines(stdout),
        };
        let mut stale_pins = Vec::new();
        let mut packages = Vec::with_capacity(specs.len());
        for spec in specs {
            let offer = offers
                .get(spec.name.as_str())
                .filter(|o| o.candidate.is_some() || !o.versions.is_empty())
                .ok_or_else(|| PackageError::NotFound {
                    manager: self,
                    name: spec.name.clone(),
                })?;
            // Managers that list only the candidate cannot confirm an older version here;
            // the dry run of the install fails if it does not exist.
            let offered = |version: &str| {
                offer.versions.iter().any(|v| v == version)
                    || offer.candidate.as_deref() == Some(version)
                    || !offer.lists_all
            };
            let pin = pins.get(&spec.name);
            let version = match (&spec.version, pin, &offer.candidate) {
                (Some(wanted), _, _) => {
                    if !offered(wanted) {
                        return Err(PackageError::VersionUnavailable {
                            manager: self,
                            name: spec.name.clone(),
                            version: wanted.clone(),
                            available: offer.versions.join(", "),
                        });
                    }
                    wanted.clone()
                }
                (None, Some(pin), candidate)
                    if offered(pin) && (self.can_pin() || candidate.as_ref() == Some(pin)) =>
                {
                    pin.clone()
                }
                (None, pin, Some(candidate)) => {
                    if let Some(pin) = pin {
                        stale_pins.push((spec.name.clone(), pin.clone()));
                    }
                    candidate.clone()
                }
                (None, _, None) => {
                    return Err(PackageError::NotFound {
                        manager: self,
                        name: spec.name.clone(),
                    })
                }
            };
            if let Some(problem) = package_problem(&spec.name, &version) {
                return Err(PackageError::Unreadable {
                    manager: self,
                    problem,
                });
            }
            packages.push(LockedPackage {
                name: spec.name.clone(),
                version,
            });
        }
        Ok(Resolved {
            packages,
            stale_pins,
        })
    }

    /// The dependencies to lock: every package of `transaction` that is not one of `listed`,
    /// sorted by name. A listed package in the transaction must have its resolved version (it
    /// was asked for pinned; pacman, which cannot pin, may differ). A listed package missing
    /// from the transaction is already in the image at that version.
    pub fn dependencies(
        self,
        listed: &[LockedPackage],
        transaction: &Transaction,
    ) -> Result<Vec<LockedPackage>, PackageError> {
        let mut deps = Vec::new();
        for change in &transaction.installs {
            let wanted = listed
                .iter()
                .find(|p| p.name == change.name || base_name(&p.name) == change.name);
            match wanted {
                Some(p) if p.version != change.version => {
                    return Err(PackageError::TransactionDiffers {
                        manager: self,
                        name: p.name.clone(),
                        resolved: p.version.clone(),
                        transaction: change.version.clone(),
                        can_pin: self.can_pin(),
                    })
                }
                Some(_) => {}
                None => deps.push(LockedPackage {
                    name: change.name.clone(),
                    version: change.version.clone(),
                }),
            }
        }
        deps.sort();
        deps.dedup();
        Ok(deps)
    }

    /// The installed versions of `listed` and `dependencies`, from the output of
    /// [`Manager::query`], checked against the lock: every package must be installed at
    /// exactly its locked version.
    pub fn check_installed(
        self,
        listed: &[LockedPackage],
        dependencies: &[LockedPackage],
        stdout: &str,
    ) -> Result<(), PackageError> {
        let all: Vec<(&LockedPackage, bool)> = listed
            .iter()
            .map(|p| (p, false))
            .chain(dependencies.iter().map(|p| (p, true)))
            .collect();
        let installed: BTreeMap<String, String> = match self {
            Manager::Apk => {
                let names: Vec<&str> = all.iter().map(|(p, _)| p.name.as_str()).collect();
                parse_apk_list(stdout, &names)
            }
            Manager::Apt => parse_dpkg_query(stdout),
            _ => parse_name_version_lines(stdout)
                .into_iter()
                .filter_map(|(name, offer)| Some((name, offer.candidate?)))
                .collect(),
        };
        for (p, dependency) in all {
            let version = installed
                .get(&p.name)
                .ok_or_else(|| PackageError::NotInstalled {
                    manager: self,
                    name: p.name.clone(),
                    dependency,
                })?;
            if *version != p.version {
                let (name, locked, installed) =
                    (p.name.clone(), p.version.clone(), version.clone());
                return Err(if self.can_pin() {
                    PackageError::Mismatch {
                        manager: self,
                        name,
                        dependency,
                        locked,
                        installed,
                    }
                } else {
                    PackageError::Drifted {
                        manager: self,
                        name,
                        dependency,
                        locked,
                        installed,
                    }
                });
            }
        }
        Ok(())
    }
}

/// A name without apt's architecture qualifier (`libc6:amd64` → `libc6`): a transaction names
/// a package of the native architecture without it.
fn base_name(name: &str) -> &str {
    name.split(':').next().unwrap_or(name)
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
fn parse_apk_list(stdout: &str, wanted: &[&str]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in stdout.lines().filter(|l| l.contains("[installed]")) {
        let Some(first) = line.split_whitespace().next() else {
            continue;
        };
        for name in wanted {
            if let Some(version) = first.strip_prefix(&format!("{name}-")) {
                // `a-1.2-r0` also starts with `a-` for a package `a-dev`: a version starts
                // with a digit.
                if version.starts_with(|c: char| c.is_ascii_digit()) {
                    out.insert((*name).to_string(), version.to_string());
                }
            }
        }
    }
    out
}

/// `dpkg-query -W -f '${db:Status-Status} ${Package} ${Architecture} ${Version}\n'`:
/// `installed hello amd64 2.10-3`, each version under the name and under `NAME:ARCH`. Only
/// packages whose status is `installed` count (not `config-files`, `half-configured`, …);
/// "no packages found matching" lines on stderr never reach here. The same name for two
/// architectures is a `Multi-Arch: same` package, whose versions dpkg keeps equal.
fn parse_dpkg_query(stdout: &str) -> BTreeMap<String, String> {
    let mut installed = BTreeMap::new();
    for line in stdout.lines() {
        if let ["installed", name, arch, version] = line.split_whitespace().collect::<Vec<_>>()[..]
        {
            installed.insert(format!("{name}:{arch}"), version.to_string());
            installed.insert(name.to_string(), version.to_string());
        }
    }
    installed
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod transaction_tests;

//! Desktop and binary export: an environment's applications on the host's desktop, and its
//! programs as host commands, each run through `karapace-tui exec`.
//!
//! - [`desktop`]: Desktop Entry files — a strict parser, the Exec quoting rules in both
//!   directions, and the generated host copy (an allow list of keys, never copied text).
//! - [`shell`]: POSIX sh wrapper scripts with single-quoted words (`export --bin`).
//! - [`view`]: an environment's files read from the host through its layers, without
//!   mounting, links followed inside it.
//! - this file: finding an application and its icons, the host directories, writing and
//!   removing exports, and the record of what was exported.
//!
//! The record (`<store>/exports/<env id>.json`) lists every file an export wrote, so
//! `unexport` and `destroy` remove exactly those. Each host file also carries a marker (an
//! `X-Karapace-Env=` key, a comment line in a wrapper): a file is only ever replaced or
//! removed while it still says it is ours, so a file the user made, or replaced, is never
//! touched, and a file the user deleted by hand is simply gone.

pub mod desktop;
pub mod shell;
pub mod view;

use std::fs;
use std::io::{self, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use desktop::{DesktopFile, HostEntry};
pub use view::EnvView;

/// Where an environment's applications' desktop files are looked for (the spec's
/// `$XDG_DATA_DIRS/applications` for the usual data directories).
const APPLICATION_DIRS: &[&str] = &["/usr/local/share/applications", "/usr/share/applications"];
/// Icon file types the icon theme specification allows.
const ICON_EXTENSIONS: &[&str] = &["png", "svg", "xpm"];
/// Far above any real desktop file or icon; it only bounds what a hostile environment can make
/// the host read or write.
const MAX_DESKTOP_FILE: u64 = 1 << 20;
const MAX_ICON: u64 = 8 << 20;
/// Real applications ship an icon in a dozen sizes at most; a hostile environment with
/// thousands of size directories gets this many copied, and a note.
const MAX_ICON_FILES: usize = 64;
/// The directory in the store that holds the records.
pub const RECORDS_DIR: &str = "exports";
/// The file in an environment's directory that lists the desktop entries of its `[gui] apps`
/// (written by the backend's build from the package manager's file lists).
pub const APP_ENTRIES_FILE: &str = "gui-apps.json";

/// The desktop entries (paths inside the environment) of each `[gui] apps` package.
pub type AppEntries = std::collections::BTreeMap<String, Vec<String>>;

/// Write [`APP_ENTRIES_FILE`] into a (staging) environment directory.
pub fn write_app_entries(env_dir: &Path, entries: &AppEntries) -> io::Result<()> {
    let bytes = serde_json::to_vec_pretty(entries).map_err(io::Error::other)?;
    crate::fsutil::write_atomic(&env_dir.join(APP_ENTRIES_FILE), &bytes)
}

/// Read [`APP_ENTRIES_FILE`]; `None` for an environment built before it existed.
pub fn read_app_entries(env_dir: &Path) -> Result<Option<AppEntries>, ExportError> {
    let path = env_dir.join(APP_ENTRIES_FILE);
    match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| ExportError::BadRecord {
                path,
                detail: e.to_string(),
                hint: "run `karapace-tui rebuild` to write it again",
            }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ExportError::Io {
            op: "read",
            path,
            source,
        }),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("invalid {what} `{name}`: {reason}")]
    InvalidName {
        what: &'static str,
        name: String,
        reason: &'static str,
    },
    #[error("no application `{app}` in the environment (looked for .desktop files in {dirs}){}", available_list(.available))]
    AppNotFound {
        app: String,
        dirs: String,
        available: Vec<String>,
    },
    #[error("`{app}` matches several applications; name one exactly: {}", .candidates.join(", "))]
    AppAmbiguous {
        app: String,
        candidates: Vec<String>,
    },
    #[error("{path} in the environment is not a desktop entry that can be exported: {source}")]
    BadDesktopFile {
        path: String,
        #[source]
        source: desktop::DesktopError,
    },
    #[error(transparent)]
    View(#[from] view::ViewError),
    #[error("{path} exists and was not made by karapace-tui; move it away or pass another name")]
    NotOurs { path: PathBuf },
    #[error(
        "{path} is an export of environment {owner}; run `karapace-tui unexport {owner} …` first"
    )]
    OtherEnv { path: PathBuf, owner: String },
    #[error("{path} is missing, so the environment's files cannot be read (is its base image still cached? `karapace-tui rebuild` fetches it again)")]
    LayerMissing { path: PathBuf },
    #[error("nothing named `{name}` is exported from this environment; `karapace-tui exports` lists what is")]
    NotExported { name: String },
    #[error("{0}")]
    Shell(#[from] shell::NulByte),
    #[error("{path} cannot be written into an exported command: {reason}")]
    BinaryPath { path: PathBuf, reason: &'static str },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is damaged: {detail}; {hint}")]
    BadRecord {
        path: PathBuf,
        detail: String,
        hint: &'static str,
    },
}

fn available_list(available: &[String]) -> String {
    if available.is_empty() {
        "; it has no desktop entries at all".to_string()
    } else {
        format!("; it has: {}", available.join(", "))
    }
}

impl ExportError {
    /// Whether the caller asked for something wrong (exit code 2) rather than an operation
    /// failing (a host file in the way is the latter, as `new` without `--force` is).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            ExportError::InvalidName { .. }
                | ExportError::AppNotFound { .. }
                | ExportError::AppAmbiguous { .. }
                | ExportError::NotExported { .. }
                | ExportError::Shell(_)
        )
    }
}

fn io_at(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> ExportError {
    let path = path.to_path_buf();
    move |source| ExportError::Io { op, path, source }
}

/// Names that become file names on the host or are looked up inside the environment: no
/// `/`, no `..`, no control characters, not empty, not starting with `-` or `.`.
pub fn validate_name(what: &'static str, name: &str) -> Result<(), ExportError> {
    let reason = if name.is_empty() || name.len() > 255 {
        Some("must be 1 to 255 bytes long")
    } else if name.contains('/') {
        Some("must not contain `/`")
    } else if name.contains("..") {
        Some("must not contain `..`")
    } else if name.chars().any(char::is_control) {
        Some("must not contain control characters")
    } else if name.starts_with(['-', '.']) {
        Some("must not start with `-` or `.`")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(ExportError::InvalidName {
            what,
            name: name.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

/// An icon name as the icon theme specification uses them: letters, digits, `. _ - +`.
fn valid_icon_name(name: &str) -> bool {
    validate_name("icon", name).is_ok()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+'))
}

/// The host directories exports go to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostDirs {
    /// `$XDG_DATA_HOME/applications`
    pub applications: PathBuf,
    /// `$XDG_DATA_HOME/icons`
    pub icons: PathBuf,
    /// `~/.local/bin` (file-hierarchy(7): the user's executables)
    pub bin: PathBuf,
    /// The store `karapace-tui` uses when none is given (`$XDG_DATA_HOME/karapace`), so a
    /// launcher, which has no `KARAPACE_STORE`, is told the store only when it differs.
    pub default_store: PathBuf,
}

impl HostDirs {
    /// From `$XDG_DATA_HOME` (when absolute, as the base directory specification requires)
    /// or `~/.local/share`.
    pub fn from_env(home: &Path) -> HostDirs {
        let data = std::env::var_os("XDG_DATA_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .unwrap_or_else(|| home.join(".local/share"));
        HostDirs {
            applications: data.join("applications"),
            icons: data.join("icons"),
            bin: home.join(".local/bin"),
            default_store: data.join("karapace"),
        }
    }
}

/// One exported application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppExport {
    /// Its desktop file id without `.desktop` (`org.gnome.gedit`).
    pub app: String,
    /// The desktop file inside the environment.
    pub source: String,
    /// The host copy.
    pub desktop_file: PathBuf,
    /// Icons copied to the host.
    #[serde(default)]
    pub icons: Vec<PathBuf>,
}

/// One exported program.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BinExport {
    /// The wrapper's file name.
    pub name: String,
    /// The program inside the environment.
    pub program: String,
    /// The wrapper.
    pub path: PathBuf,
}

/// What was exported from one environment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    #[serde(default)]
    pub apps: Vec<AppExport>,
    #[serde(default)]
    pub bins: Vec<BinExport>,
}

impl Record {
    pub fn is_empty(&self) -> bool {
        self.apps.is_empty() && self.bins.is_empty()
    }
}

/// The records of one store.
pub struct Records {
    dir: PathBuf,
}

impl Records {
    pub fn new(store_root: &Path) -> Records {
        Records {
            dir: store_root.join(RECORDS_DIR),
        }
    }

    fn path(&self, env_id: &str) -> PathBuf {
        self.dir.join(format!("{env_id}.json"))
    }

    /// The record of an environment (empty when it exported nothing).
    pub fn read(&self, env_id: &str) -> Result<Record, ExportError> {
        let path = self.path(env_id);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| ExportError::BadRecord {
                path,
                detail: e.to_string(),
                hint: "remove it to start over (exported files stay on the host, marked as \
                       made by karapace-tui)",
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Record::default()),
            Err(source) => Err(ExportError::Io {
                op: "read",
                path,
                source,
            }),
        }
    }

    /// Replace an environment's record (removing it when empty).
    pub fn write(&self, env_id: &str, record: &Record) -> Result<(), ExportError> {
        let path = self.path(env_id);
        if record.is_empty() {
            return match fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(ExportError::Io {
                    op: "remove",
                    path,
                    source: e,
                }),
                _ => Ok(()),
            };
        }
        fs::create_dir_all(&self.dir).map_err(io_at("create", &self.dir))?;
        let bytes = serde_json::to_vec_pretty(record).map_err(|e| ExportError::Io {
            op: "encode",
            path: path.clone(),
            source: io::Error::other(e),
        })?;
        crate::fsutil::write_atomic(&path, &bytes).map_err(io_at("write", &path))
    }

    /// Every environment with a record, with it, by id.
    pub fn all(&self) -> Result<Vec<(String, Record)>, ExportError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(ExportError::Io {
                    op: "list",
                    path: self.dir.clone(),
                    source,
                })
            }
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_at("list", &self.dir))?;
            let name = entry.file_name();
            let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            if id.starts_with('.') {
                continue; // a temporary file of an atomic write
            }
            out.push((id.to_string(), self.read(id)?));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}

/// Everything an export needs to know about the environment and the host.
pub struct Exporter<'a> {
    pub env_id: &'a str,
    /// How the environment is called in the Name suffix: its name, else its short id.
    pub env_label: &'a str,
    pub view: EnvView,
    pub dirs: &'a HostDirs,
    pub records: &'a Records,
    /// The store, for `--store` in commands when it is not the default one.
    pub store: &'a Path,
    /// The karapace-tui binary that exports run.
    pub binary: &'a Path,
    /// Whether an environment with this id exists (an export of a destroyed one may be
    /// replaced).
    pub env_exists: &'a dyn Fn(&str) -> bool,
}

/// A desktop file found in the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundApp {
    /// The desktop file id without `.desktop`.
    pub id: String,
    /// Its path inside the environment.
    pub path: String,
}

impl Exporter<'_> {
    /// The command in front of the program: the binary, `--store DIR` when the store is not
    /// the default one, `exec ENV --`.
    pub fn exec_prefix(&self) -> Result<Vec<String>, ExportError> {
        let binary = self
            .binary
            .to_str()
            .ok_or_else(|| ExportError::BinaryPath {
                path: self.binary.to_path_buf(),
                reason: "the karapace-tui binary's path is not UTF-8",
            })?;
        let mut prefix = vec![binary.to_string()];
        let same = |a: &Path, b: &Path| {
            fs::canonicalize(a)
                .ok()
                .is_some_and(|a| Some(a) == fs::canonicalize(b).ok())
        };
        if !same(self.store, &self.dirs.default_store) {
            let store = self.store.to_str().ok_or_else(|| ExportError::BinaryPath {
                path: self.store.to_path_buf(),
                reason: "the store's path is not UTF-8",
            })?;
            prefix.extend(["--store".to_string(), store.to_string()]);
        }
        prefix.extend([
            "exec".to_string(),
            self.env_id.to_string(),
            "--".to_string(),
        ]);
        Ok(prefix)
    }

    /// Find `app` (a desktop file id, with or without `.desktop`, or the last part of one:
    /// `gedit` for `org.gnome.gedit`, case-insensitively) in the environment.
    pub fn find_app(&self, app: &str) -> Result<FoundApp, ExportError> {
        validate_name("application name", app)?;
        let wanted = app.strip_suffix(".desktop").unwrap_or(app);
        let mut all: Vec<FoundApp> = Vec::new();
        for dir in APPLICATION_DIRS {
            for name in self.view.list_dir(dir) {
                let Some(id) = name.strip_suffix(".desktop") else {
                    continue;
                };
                if validate_name("desktop file", &name).is_err() || all.iter().any(|a| a.id == id) {
                    continue; // the first data directory wins (XDG_DATA_DIRS order)
                }
                all.push(FoundApp {
                    id: id.to_string(),
                    path: format!("{dir}/{name}"),
                });
            }
        }
        if let Some(exact) = all.iter().find(|a| a.id == wanted) {
            return Ok(exact.clone());
        }
        let lower = wanted.to_lowercase();
        let matches: Vec<&FoundApp> = all
            .iter()
            .filter(|a| {
                let id = a.id.to_lowercase();
                id == lower || id.rsplit('.').next() == Some(lower.as_str())
            })
            .collect();
        match matches.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(ExportError::AppNotFound {
                app: app.to_string(),
                dirs: APPLICATION_DIRS.join(" and "),
                available: all.iter().map(|a| a.id.clone()).take(30).collect(),
            }),
            many => Err(ExportError::AppAmbiguous {
                app: app.to_string(),
                candidates: many.iter().map(|a| a.id.clone()).collect(),
            }),
        }
    }

    /// Export an application: its host desktop file (same base name as inside: the Wayland
    /// app_id a program reports is matched against desktop file names to find its window
    /// icon and group its windows, so a renamed copy would show a generic icon) and icons.
    /// Returns the record entry and notes for the user (icons not found …).
    pub fn export_app(&self, app: &str) -> Result<(AppExport, Vec<String>), ExportError> {
        let found = self.find_app(app)?;
        self.export_found(found)
    }

    /// Export the desktop file at `path` inside the environment (a `[gui] apps` package's).
    pub fn export_path(&self, path: &str) -> Result<(AppExport, Vec<String>), ExportError> {
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        validate_name("desktop file", name)?;
        let id = name.strip_suffix(".desktop").unwrap_or(name);
        if !APPLICATION_DIRS.contains(&dir) || id.len() == name.len() {
            return Err(ExportError::InvalidName {
                what: "desktop file",
                name: path.to_string(),
                reason: "must be a .desktop file in /usr/share/applications or \
                         /usr/local/share/applications",
            });
        }
        self.export_found(FoundApp {
            id: id.to_string(),
            path: path.to_string(),
        })
    }

    fn export_found(&self, found: FoundApp) -> Result<(AppExport, Vec<String>), ExportError> {
        let bytes = self.view.read(&found.path, MAX_DESKTOP_FILE)?;
        let bad = |source| ExportError::BadDesktopFile {
            path: found.path.clone(),
            source,
        };
        let parsed = DesktopFile::parse(&bytes).map_err(bad)?;
        let mut notes = Vec::new();
        let (icon_value, icons) = self.copy_icons(&parsed, &mut notes)?;
        let prefix = self.exec_prefix()?;
        if prefix[0].contains('=') {
            return Err(ExportError::BinaryPath {
                path: self.binary.to_path_buf(),
                reason: "the Desktop Entry specification forbids `=` in the program's path",
            });
        }
        let suffix = format!(" (on {})", self.env_label);
        let text = desktop::host_copy(
            &parsed,
            &HostEntry {
                prefix: &prefix,
                name_suffix: &suffix,
                env_id: self.env_id,
                icon: icon_value.as_deref(),
            },
        )
        .map_err(bad)?;
        let target = self.dirs.applications.join(format!("{}.desktop", found.id));
        self.check_replaceable(&target, desktop::marker_of)?;
        write_file(&target, text.as_bytes(), 0o644)?;
        let entry = AppExport {
            app: found.id.clone(),
            source: found.path,
            desktop_file: target,
            icons,
        };
        let mut record = self.records.read(self.env_id)?;
        record.apps.retain(|a| a.app != entry.app);
        record.apps.push(entry.clone());
        record.apps.sort_by(|a, b| a.app.cmp(&b.app));
        self.records.write(self.env_id, &record)?;
        Ok((entry, notes))
    }

    /// Whether `target` may be (re)written: absent, ours for this environment, or ours for an
    /// environment that no longer exists.
    fn check_replaceable(
        &self,
        target: &Path,
        marker_of: fn(&[u8]) -> Option<String>,
    ) -> Result<(), ExportError> {
        let bytes = match fs::read(target) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(source) => {
                return Err(ExportError::Io {
                    op: "read",
                    path: target.to_path_buf(),
                    source,
                })
            }
        };
        match marker_of(&bytes) {
            None => Err(ExportError::NotOurs {
                path: target.to_path_buf(),
            }),
            Some(owner) if owner == self.env_id || !(self.env_exists)(&owner) => Ok(()),
            Some(owner) => Err(ExportError::OtherEnv {
                path: target.to_path_buf(),
                owner,
            }),
        }
    }

    /// Copy the application's icon to the host: a themed name from the environment's hicolor
    /// theme (every size, scalable included) and pixmaps; an absolute path as that file.
    /// Returns the `Icon` value of the host copy and the files written.
    fn copy_icons(
        &self,
        parsed: &DesktopFile,
        notes: &mut Vec<String>,
    ) -> Result<(Option<String>, Vec<PathBuf>), ExportError> {
        let Some(entry) = parsed.main().get("Icon") else {
            return Ok((None, Vec::new()));
        };
        let icon = entry.raw.clone();
        let mut written = Vec::new();
        if icon.starts_with('/') {
            // An absolute path means a file inside the environment; the host gets a copy in
            // its icon directory and the path of that copy.
            let base = icon.rsplit('/').next().unwrap_or_default();
            let ext_ok = ICON_EXTENSIONS
                .iter()
                .any(|ext| base.ends_with(&format!(".{ext}")));
            if !valid_icon_name(base) || !ext_ok {
                notes.push(format!("icon {icon:?} is not a usable icon file; left out"));
                return Ok((None, written));
            }
            let target = self.dirs.icons.join(base);
            if self.copy_icon(&icon, &target, notes)? {
                written.push(target.clone());
            }
            let value = target.to_str().map(str::to_string);
            return Ok((value, written));
        }
        if !valid_icon_name(&icon) {
            notes.push(format!(
                "icon name {icon:?} is not a valid icon name; left out"
            ));
            return Ok((None, written));
        }
        let theme = "/usr/share/icons/hicolor";
        for size in self.view.list_dir(theme) {
            if !valid_icon_name(&size) {
                continue;
            }
            if written.len() >= MAX_ICON_FILES {
                notes.push(format!(
                    "more than {MAX_ICON_FILES} icon files for {icon}; the rest were not copied"
                ));
                break;
            }
            for ext in ICON_EXTENSIONS {
                let inside = format!("{theme}/{size}/apps/{icon}.{ext}");
                if self.view.resolve(&inside).is_none() {
                    continue;
                }
                let target = self
                    .dirs
                    .icons
                    .join("hicolor")
                    .join(&size)
                    .join("apps")
                    .join(format!("{icon}.{ext}"));
                if self.copy_icon(&inside, &target, notes)? {
                    written.push(target);
                }
            }
        }
        for ext in ICON_EXTENSIONS {
            let inside = format!("/usr/share/pixmaps/{icon}.{ext}");
            if self.view.resolve(&inside).is_none() {
                continue;
            }
            // Unthemed icons directly in an icon directory are the theme specification's
            // last fallback.
            let target = self.dirs.icons.join(format!("{icon}.{ext}"));
            if self.copy_icon(&inside, &target, notes)? {
                written.push(target);
            }
        }
        if written.is_empty() && !notes.iter().any(|n| n.contains("already exists")) {
            notes.push(format!(
                "no icon file named {icon} in the environment's hicolor theme or pixmaps; the \
                 host's icon theme may still have one"
            ));
        }
        Ok((Some(icon), written))
    }

    /// Copy one icon unless the host has a file there that no export made (the host's icon
    /// then stands). Returns whether the file is now one of ours.
    fn copy_icon(
        &self,
        inside: &str,
        target: &Path,
        notes: &mut Vec<String>,
    ) -> Result<bool, ExportError> {
        let ours = self
            .records
            .all()?
            .iter()
            .any(|(_, r)| r.apps.iter().any(|a| a.icons.iter().any(|i| i == target)));
        if target.exists() && !ours {
            notes.push(format!(
                "{} already exists and is not from an export; kept it",
                target.display()
            ));
            return Ok(false);
        }
        let bytes = self.view.read(inside, MAX_ICON)?;
        write_file(target, &bytes, 0o644)?;
        Ok(true)
    }

    /// Export a program as a host command: `dirs.bin/NAME`, a wrapper running `program` in the
    /// environment with the caller's arguments.
    pub fn export_bin(&self, program: &str, name: Option<&str>) -> Result<BinExport, ExportError> {
        if !program.starts_with('/') {
            return Err(ExportError::InvalidName {
                what: "program",
                name: program.to_string(),
                reason: "must be an absolute path inside the environment",
            });
        }
        if program.contains('\0') {
            return Err(ExportError::Shell(shell::NulByte {
                what: "the program's path".to_string(),
            }));
        }
        let base = program.rsplit('/').next().unwrap_or_default();
        let name = name.unwrap_or(base);
        validate_name("command name", name)?;
        if self.view.resolve(program).is_none() {
            return Err(ExportError::View(view::ViewError::Missing {
                path: program.to_string(),
            }));
        }
        let prefix = self.exec_prefix()?;
        let mut words: Vec<&str> = prefix.iter().map(String::as_str).collect();
        words.push(program);
        let text = shell::wrapper(self.env_id, &words)?;
        let target = self.dirs.bin.join(name);
        self.check_replaceable(&target, shell::marker_of)?;
        write_file(&target, text.as_bytes(), 0o755)?;
        let entry = BinExport {
            name: name.to_string(),
            program: program.to_string(),
            path: target,
        };
        let mut record = self.records.read(self.env_id)?;
        record.bins.retain(|b| b.name != entry.name);
        record.bins.push(entry.clone());
        record.bins.sort_by(|a, b| a.name.cmp(&b.name));
        self.records.write(self.env_id, &record)?;
        Ok(entry)
    }
}

/// What `unexport`/`destroy` removed, and what they left because it is no longer ours.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Removal {
    pub removed: Vec<PathBuf>,
    /// Files that were recorded but had been changed into something not ours: kept.
    pub kept: Vec<PathBuf>,
}

/// Remove one export (an application by id, base name or desktop file name; with `bin`, a
/// command by name) of `env_id`.
pub fn unexport(
    records: &Records,
    env_id: &str,
    name: &str,
    bin: bool,
) -> Result<Removal, ExportError> {
    validate_name(
        if bin {
            "command name"
        } else {
            "application name"
        },
        name,
    )?;
    let mut record = records.read(env_id)?;
    let mut removal = Removal::default();
    if bin {
        let Some(pos) = record.bins.iter().position(|b| b.name == name) else {
            return Err(ExportError::NotExported {
                name: name.to_string(),
            });
        };
        let entry = record.bins.remove(pos);
        remove_marked(&entry.path, env_id, shell::marker_of, &mut removal)?;
    } else {
        let wanted = name.strip_suffix(".desktop").unwrap_or(name).to_lowercase();
        let matches: Vec<usize> = (0..record.apps.len())
            .filter(|&i| {
                let id = record.apps[i].app.to_lowercase();
                id == wanted || id.rsplit('.').next() == Some(wanted.as_str())
            })
            .collect();
        let pos = match matches.as_slice() {
            [one] => *one,
            [] => {
                return Err(ExportError::NotExported {
                    name: name.to_string(),
                })
            }
            many => {
                return Err(ExportError::AppAmbiguous {
                    app: name.to_string(),
                    candidates: many.iter().map(|&i| record.apps[i].app.clone()).collect(),
                })
            }
        };
        let entry = record.apps.remove(pos);
        remove_app(records, env_id, &entry, &record, &mut removal)?;
    }
    records.write(env_id, &record)?;
    Ok(removal)
}

/// Remove every export of `env_id` and its record (`destroy`).
pub fn remove_all(records: &Records, env_id: &str) -> Result<Removal, ExportError> {
    let mut record = records.read(env_id)?;
    let mut removal = Removal::default();
    while let Some(entry) = record.apps.pop() {
        remove_app(records, env_id, &entry, &record, &mut removal)?;
        records.write(env_id, &record)?;
    }
    while let Some(entry) = record.bins.pop() {
        remove_marked(&entry.path, env_id, shell::marker_of, &mut removal)?;
        records.write(env_id, &record)?;
    }
    records.write(env_id, &Record::default())?;
    Ok(removal)
}

/// Remove an application's desktop file (if still ours) and those of its icons that no other
/// export (of any environment) still lists. `rest` is this environment's record without it.
fn remove_app(
    records: &Records,
    env_id: &str,
    entry: &AppExport,
    rest: &Record,
    removal: &mut Removal,
) -> Result<(), ExportError> {
    remove_marked(&entry.desktop_file, env_id, desktop::marker_of, removal)?;
    let others = records.all()?;
    for icon in &entry.icons {
        let shared = rest.apps.iter().any(|a| a.icons.contains(icon))
            || others
                .iter()
                .filter(|(id, _)| id != env_id)
                .any(|(_, r)| r.apps.iter().any(|a| a.icons.contains(icon)));
        if !shared {
            remove_file(icon, removal)?;
        }
    }
    Ok(())
}

/// Remove `path` if it still carries this environment's marker; a file already gone is fine.
fn remove_marked(
    path: &Path,
    env_id: &str,
    marker_of: fn(&[u8]) -> Option<String>,
    removal: &mut Removal,
) -> Result<(), ExportError> {
    match fs::read(path) {
        Ok(bytes) if marker_of(&bytes).as_deref() == Some(env_id) => remove_file(path, removal),
        Ok(_) => {
            removal.kept.push(path.to_path_buf());
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(ExportError::Io {
            op: "read",
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn remove_file(path: &Path, removal: &mut Removal) -> Result<(), ExportError> {
    match fs::remove_file(path) {
        Ok(()) => {
            removal.removed.push(path.to_path_buf());
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(ExportError::Io {
            op: "remove",
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Write a host file atomically with `mode` (a temp file beside it, fsync, rename), creating
/// its directory. Never follows a link at the temp name (created exclusively).
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), ExportError> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    fs::create_dir_all(dir).map_err(io_at("create", dir))?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(
        ".{name}.karapace-{}",
        crate::fsutil::unique_suffix()
    ));
    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(source) = result {
        if let Err(e) = fs::remove_file(&tmp) {
            if e.kind() != io::ErrorKind::NotFound {
                eprintln!("warning: could not remove temp file {}: {e}", tmp.display());
            }
        }
        return Err(ExportError::Io {
            op: "write",
            path: path.to_path_buf(),
            source,
        });
    }
    Ok(())
}

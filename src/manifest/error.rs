//! What can be wrong with a manifest, as data.
//!
//! Every variant carries the file and the 1-based line and column of the offending value, so the
//! CLI can print `file:line:col:` like a compiler and the TUI can jump to the spot. The reason is
//! a [`Problem`] value rather than a formatted string, so callers and tests can tell rules apart
//! without parsing messages; [`Problem::allowed`] says what would have been accepted.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;

/// Why a manifest could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file could not be read (or its path could not be made absolute).
    #[error("{}: cannot read the manifest: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The text is not TOML, a value has the wrong type, or a key is unknown; the message is
    /// toml's own.
    #[error("{}:{line}:{column}: {}{message}", path.display(), field_prefix(field.as_deref()))]
    Syntax {
        path: PathBuf,
        line: usize,
        column: usize,
        /// The key or value the error points at, when the text is valid enough to tell.
        field: Option<String>,
        message: String,
    },
    /// Well-formed TOML that breaks one of the manifest's rules.
    #[error(
        "{}:{line}:{column}: {field}: {problem} (allowed: {})",
        path.display(),
        problem.allowed()
    )]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        /// Where in the document, e.g. `system.packages[2]` (0-based) or `mounts.workspace`.
        field: String,
        /// Boxed to keep `ManifestError` small; it travels inside other modules' errors.
        problem: Box<Problem>,
    },
    /// Neither `$HOME` nor the password database gave a usable home directory, which `~` in
    /// paths needs.
    #[error("cannot find the home directory (needed to expand `~`): {reason}")]
    NoHome { reason: String },
}

impl ManifestError {
    /// The 1-based line and column the error points at, when it points at one.
    pub fn location(&self) -> Option<(usize, usize)> {
        match self {
            ManifestError::Syntax { line, column, .. }
            | ManifestError::Invalid { line, column, .. } => Some((*line, *column)),
            ManifestError::Io { .. } | ManifestError::NoHome { .. } => None,
        }
    }
}

/// Which list a name came from; the rules differ only in whether `=VERSION` is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    Package,
    App,
}

/// What is wrong with one package or app name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameProblem {
    Empty,
    /// A character that no supported distribution uses in names, or a shell metacharacter.
    BadChar(char),
    /// Allowed inside a name but not first (`-rf` would read as an option to the package
    /// manager).
    BadFirstChar(char),
    TooLong {
        len: usize,
        max: usize,
    },
    EmptyVersion,
    BadVersionChar(char),
    BadVersionFirstChar(char),
    /// `name=version` in `[gui] apps`.
    VersionNotAllowed,
}

/// What is wrong with one `[mounts]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountProblem {
    /// No `:` between host and container path.
    NoSeparator,
    EmptyHost,
    EmptyContainer,
    ContainerNotAbsolute,
    /// A `..` component could climb out of wherever the runtime puts the root.
    ContainerParentDir,
    ContainerIsRoot,
    /// A `:` left in the container path after the optional `:ro`/`:rw` was taken off.
    ContainerColon,
    /// The part after the last `:` is neither `ro` nor `rw`.
    UnknownOption(String),
    /// `~user/...`: only the current user's home is expanded.
    TildeUser,
    ControlChar(char),
    /// The resolved host path is not UTF-8 (the manifest directory or home is not), so it
    /// cannot be written into the canonical JSON faithfully.
    HostNotUtf8,
}

/// A broken manifest rule, with the data needed to explain it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A required key is absent; `allowed` tells what to write.
    Missing {
        allowed: &'static str,
    },
    UnsupportedVersion {
        found: i64,
    },
    EmptyImage,
    /// Not an alias, not `http(s)://`, not a local path.
    UnknownImage {
        written: String,
    },
    BadImageUrl {
        written: String,
        reason: &'static str,
    },
    BadImagePath {
        written: String,
        reason: &'static str,
    },
    BadSha256 {
        written: String,
    },
    BadName {
        kind: NameKind,
        written: String,
        reason: NameProblem,
    },
    /// The same package listed with two different version requirements (bare counts as one).
    ConflictingVersions {
        first: String,
        first_field: String,
        second: String,
    },
    EmptyMountLabel,
    /// Two labels that are equal once trimmed (`"a"` and `" a"`).
    DuplicateMountLabel {
        label: String,
    },
    MountNotString {
        found: &'static str,
    },
    BadMount {
        written: String,
        reason: MountProblem,
    },
    DuplicateContainerPath {
        container_path: String,
        first_label: String,
        second_label: String,
    },
    UnknownBackend {
        written: String,
    },
    OutOfRange {
        value: i64,
        min: u64,
        max: u64,
    },
    /// An `[env]` name that is malformed, reserved or matches the built-in deny list.
    BadEnvName {
        written: String,
        reason: String,
    },
    EnvNotString {
        found: &'static str,
    },
    EnvValueNul,
    UnknownHomeMode {
        written: String,
    },
}

/// The forms `[base] image` accepts, for error messages.
pub(crate) const IMAGE_FORMS: &str = "an alias (see docs/manifest.md), an http:// or https:// \
URL, or a local rootfs tarball path (/abs, ~/, ./ or ../) ending in .tar, .tar.gz, .tar.xz or \
.tar.zst";

const PACKAGE_ALLOWED: &str = "letters, digits and + - . _ @ :, starting with a letter or digit, \
optionally =VERSION (letters, digits and . + - ~ : _)";
const APP_ALLOWED: &str = "letters, digits and + - . _ @ :, starting with a letter or digit";
const MOUNT_ALLOWED: &str = "\"HOST:CONTAINER\" with an optional :ro or :rw; HOST absolute, ~/… \
or relative to the manifest's directory; CONTAINER absolute, not / and without ..";

impl Problem {
    /// A short statement of what would have been accepted.
    pub fn allowed(&self) -> String {
        match self {
            Problem::Missing { allowed } => (*allowed).to_string(),
            Problem::UnsupportedVersion { .. } => supported_versions(),
            Problem::EmptyImage | Problem::BadImageUrl { .. } | Problem::BadImagePath { .. } => {
                IMAGE_FORMS.to_string()
            }
            Problem::UnknownImage { .. } => format!(
                "an alias ({}), an http:// or https:// URL, or a local rootfs tarball path \
                 (/abs, ~/, ./ or ../) ending in .tar, .tar.gz, .tar.xz or .tar.zst",
                super::image::alias_list()
            ),
            Problem::BadSha256 { .. } => "64 lower-case hexadecimal characters".to_string(),
            Problem::BadName {
                kind: NameKind::Package,
                ..
            } => PACKAGE_ALLOWED.to_string(),
            Problem::BadName {
                kind: NameKind::App,
                ..
            } => APP_ALLOWED.to_string(),
            Problem::ConflictingVersions { .. } => {
                "each package once, bare or with one =VERSION".to_string()
            }
            Problem::EmptyMountLabel | Problem::DuplicateMountLabel { .. } => {
                "a unique, non-empty label, e.g. workspace = \"~/projects:/workspace\"".to_string()
            }
            Problem::MountNotString { .. } | Problem::BadMount { .. } => MOUNT_ALLOWED.to_string(),
            Problem::DuplicateContainerPath { .. } => {
                "each container path in at most one mount".to_string()
            }
            Problem::UnknownBackend { .. } => "namespace, oci, mock".to_string(),
            Problem::OutOfRange { min, max, .. } => format!("{min} to {max}"),
            Problem::BadEnvName { .. } | Problem::EnvNotString { .. } | Problem::EnvValueNul => {
                "NAME = \"value\", NAME of letters, digits and _ not starting with a digit, \
                 not KARAPACE_* or container, and outside the deny list of docs/security.md"
                    .to_string()
            }
            Problem::UnknownHomeMode { .. } => "\"host\" or \"own\"".to_string(),
        }
    }
}

fn supported_versions() -> String {
    let list: Vec<String> = super::SUPPORTED_VERSIONS
        .iter()
        .map(ToString::to_string)
        .collect();
    list.join(", ")
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Missing { .. } => f.write_str("is required"),
            Problem::UnsupportedVersion { found } => {
                write!(f, "manifest version {found} is not supported")
            }
            Problem::EmptyImage => f.write_str("the base image is empty"),
            Problem::UnknownImage { written } => write!(
                f,
                "{written:?} is not a known image alias, an http(s) URL or a local tarball path"
            ),
            Problem::BadImageUrl { written, reason } => write!(f, "URL {written:?} {reason}"),
            Problem::BadImagePath { written, reason } => write!(f, "path {written:?} {reason}"),
            Problem::BadSha256 { written } => write!(f, "{written:?} is not a SHA-256 digest"),
            Problem::BadName {
                kind,
                written,
                reason,
            } => {
                write!(f, "{written:?} ")?;
                fmt_name_problem(f, *kind, reason)
            }
            Problem::ConflictingVersions {
                first,
                first_field,
                second,
            } => write!(
                f,
                "`{second}` conflicts with `{first}` at {first_field}: a package can be listed \
                 with only one version"
            ),
            Problem::EmptyMountLabel => f.write_str("the mount label is empty"),
            Problem::DuplicateMountLabel { label } => {
                write!(f, "the label `{label}` is used twice (labels are trimmed)")
            }
            Problem::MountNotString { found } => write!(f, "must be a string, found {found}"),
            Problem::BadMount { written, reason } => {
                write!(f, "{written:?} ")?;
                fmt_mount_problem(f, reason)
            }
            Problem::DuplicateContainerPath {
                container_path,
                first_label,
                second_label,
            } => {
                write!(
                    f,
                    "mounts `{first_label}` and `{second_label}` both use the container path \
                     {container_path}"
                )
            }
            Problem::UnknownBackend { written } => write!(f, "unknown backend {written:?}"),
            Problem::OutOfRange { value, .. } => write!(f, "{value} is out of range"),
            Problem::BadEnvName { written, reason } => {
                write!(f, "the variable name {written:?} {reason}")
            }
            Problem::EnvNotString { found } => write!(f, "must be a string, found {found}"),
            Problem::EnvValueNul => f.write_str("the value contains a NUL character"),
            Problem::UnknownHomeMode { written } => write!(f, "unknown home mode {written:?}"),
        }
    }
}

fn fmt_name_problem(f: &mut fmt::Formatter<'_>, kind: NameKind, p: &NameProblem) -> fmt::Result {
    let what = match kind {
        NameKind::Package => "a package name",
        NameKind::App => "an app name",
    };
    match p {
        NameProblem::Empty => write!(f, "is empty"),
        NameProblem::BadChar(c) => {
            write!(
                f,
                "contains {}, which is not allowed in {what}",
                describe_char(*c)
            )
        }
        NameProblem::BadFirstChar(c) => {
            write!(
                f,
                "starts with {}; {what} must start with a letter or digit",
                describe_char(*c)
            )
        }
        NameProblem::TooLong { len, max } => write!(f, "is {len} bytes long, more than {max}"),
        NameProblem::EmptyVersion => write!(f, "has an empty version after `=`"),
        NameProblem::BadVersionChar(c) => {
            write!(
                f,
                "contains {}, which is not allowed in a version",
                describe_char(*c)
            )
        }
        NameProblem::BadVersionFirstChar(c) => {
            write!(
                f,
                "has a version starting with {}; it must start with a letter or digit",
                describe_char(*c)
            )
        }
        NameProblem::VersionNotAllowed => write!(f, "has a version, which [gui] apps cannot have"),
    }
}

fn fmt_mount_problem(f: &mut fmt::Formatter<'_>, p: &MountProblem) -> fmt::Result {
    match p {
        MountProblem::NoSeparator => f.write_str("has no `:` between host and container path"),
        MountProblem::EmptyHost => f.write_str("has an empty host path"),
        MountProblem::EmptyContainer => f.write_str("has an empty container path"),
        MountProblem::ContainerNotAbsolute => f.write_str("has a relative container path"),
        MountProblem::ContainerParentDir => f.write_str("has `..` in the container path"),
        MountProblem::ContainerIsRoot => f.write_str("mounts over the container's root `/`"),
        MountProblem::ContainerColon => {
            f.write_str("has a `:` in the container path; only a trailing :ro or :rw may follow it")
        }
        MountProblem::UnknownOption(o) => write!(f, "ends in the unknown option `:{o}`"),
        MountProblem::TildeUser => {
            f.write_str("uses `~user`; only `~` and `~/…` (your own home) are expanded")
        }
        MountProblem::ControlChar(c) => write!(f, "contains {}", describe_char(*c)),
        MountProblem::HostNotUtf8 => f.write_str("resolves to a host path that is not UTF-8"),
    }
}

fn field_prefix(field: Option<&str>) -> String {
    field.map(|f| format!("{f}: ")).unwrap_or_default()
}

/// Names a character so that invisible ones are still visible in a one-line message.
pub(crate) fn describe_char(c: char) -> String {
    match c {
        ' ' => "a space".to_string(),
        '\t' => "a tab".to_string(),
        '\n' | '\r' => "a line break".to_string(),
        c if c.is_control() || c.is_whitespace() => format!("the character U+{:04X}", c as u32),
        c => format!("`{c}`"),
    }
}

/// Turns a byte offset into a 1-based line and a 1-based column counted in characters, which is
/// what editors show.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// Builds errors for one document: it knows the text (for positions) and the path (for
/// messages), so validation code only says what and where.
pub(crate) struct Reporter<'a> {
    pub text: &'a str,
    pub path: &'a std::path::Path,
}

impl Reporter<'_> {
    pub fn invalid(
        &self,
        span: Range<usize>,
        field: impl Into<String>,
        problem: Problem,
    ) -> ManifestError {
        let (line, column) = line_col(self.text, span.start);
        ManifestError::Invalid {
            path: self.path.to_path_buf(),
            line,
            column,
            field: field.into(),
            problem: Box::new(problem),
        }
    }

    /// Converts a toml error (syntax, type or unknown key) keeping toml's span.
    pub fn syntax(&self, err: &toml::de::Error) -> ManifestError {
        let start = err.span().map_or(0, |s| s.start);
        let (line, column) = line_col(self.text, start);
        ManifestError::Syntax {
            path: self.path.to_path_buf(),
            line,
            column,
            field: super::raw::field_at(self.text, start),
            message: tidy_toml_message(err.message()),
        }
    }
}

/// toml's messages can span lines, and one of them is misleading: a dotted key where a string is
/// expected (`[mounts] a.b = "…"`) comes out as "expected a borrowed string", an artefact of how
/// `Spanned` values are read. Say what actually happened instead.
fn tidy_toml_message(message: &str) -> String {
    if message.contains("expected a borrowed string") {
        return "expected a string, found a table (a dotted key makes a sub-table)".to_string();
    }
    message.trim().replace('\n', "; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_lines_and_characters_from_one() {
        let text = "ab\ncdé\nxyz";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 1), (1, 2));
        assert_eq!(line_col(text, 3), (2, 1));
        // é is two bytes: the byte after it is the 4th character of line 2.
        assert_eq!(line_col(text, 7), (2, 4));
        assert_eq!(line_col(text, 8), (3, 1));
        assert_eq!(line_col(text, 999), (3, 4));
    }

    #[test]
    fn invisible_characters_are_named() {
        assert_eq!(describe_char('\n'), "a line break");
        assert_eq!(describe_char(' '), "a space");
        assert_eq!(describe_char('\u{7}'), "the character U+0007");
        assert_eq!(describe_char(';'), "`;`");
    }

    #[test]
    fn invalid_error_displays_file_line_column_field_problem_and_allowed() {
        let err = ManifestError::Invalid {
            path: PathBuf::from("path/karapace.toml"),
            line: 4,
            column: 13,
            field: "system.packages[2]".to_string(),
            problem: Box::new(Problem::BadName {
                kind: NameKind::Package,
                written: "gcc;rm".to_string(),
                reason: NameProblem::BadChar(';'),
            }),
        };
        assert_eq!(
            err.to_string(),
            "path/karapace.toml:4:13: system.packages[2]: \"gcc;rm\" contains `;`, which is not \
             allowed in a package name (allowed: letters, digits and + - . _ @ :, starting with a \
             letter or digit, optionally =VERSION (letters, digits and . + - ~ : _))"
        );
        assert_eq!(err.location(), Some((4, 13)));
    }
}

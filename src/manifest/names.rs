//! Package and app names: `[system] packages` and `[gui] apps`.
//!
//! Names end up as arguments of apt-get, dnf, zypper or pacman, so the rules are the union of
//! what those distributions allow in real package names, and nothing a shell or an option
//! parser could misread:
//!
//! - Debian/Ubuntu: lower-case letters, digits and `+ - .`, starting with a letter or digit
//!   (Debian Policy §5.6.1); apt also takes an architecture qualifier, `libc6:i386`.
//! - Fedora (RPM): letters of both cases, digits and `- . _ +` (`gcc-c++`, `python3.11`).
//! - openSUSE (RPM): the same, upper case included (`Mesa-dri-devel`, `MozillaFirefox`); zypper
//!   also takes kind-qualified names such as `pattern:devel_basis`.
//! - Arch: lower-case letters, digits and `@ . _ + -`, not starting with `-` or `.`
//!   (`lib32-glibc`).
//!
//! So a name is ASCII letters, digits and `+ - . _ @ :`, and must start with a letter or digit:
//! a leading `-` would be read as an option (`-rf`). An optional `=VERSION` (letters, digits and
//! `. + - ~ : _`, starting with a letter or digit) covers Debian epochs and tildes (`1:2.3~rc1`)
//! and RPM version-release strings. RPM's `^` and capability forms such as `pkgconfig(foo)` are
//! refused: `^`, `(` and `)` are shell metacharacters, and the lock records real package names.

use std::fmt;
use std::str::FromStr;

use super::error::{NameKind, NameProblem, Problem};

/// Longest accepted name or version, in bytes; far above any real one, it only stops absurd
/// input from reaching command lines and listings.
pub const MAX_NAME_LEN: usize = 255;

/// One `[system] packages` entry: `name` or `name=version`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PackageSpec {
    pub name: String,
    pub version: Option<String>,
}

impl fmt::Display for PackageSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.version {
            Some(version) => write!(f, "{}={version}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

impl FromStr for PackageSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        validate_package_name(s)
    }
}

/// Checks one package entry as the manifest does (surrounding blanks are trimmed first, as the
/// original trimmed entries) and returns it split into name and version. The error is a complete
/// sentence for the CLI: what is wrong, then what is allowed.
pub fn validate_package_name(s: &str) -> Result<PackageSpec, String> {
    let written = s.trim();
    parse_name(NameKind::Package, written).map_err(|reason| {
        let problem = Problem::BadName {
            kind: NameKind::Package,
            written: written.to_string(),
            reason,
        };
        format!("{problem} (allowed: {})", problem.allowed())
    })
}

/// Parses an already-trimmed entry. For [`NameKind::App`] a version is refused.
pub(crate) fn parse_name(kind: NameKind, written: &str) -> Result<PackageSpec, NameProblem> {
    if written.is_empty() {
        return Err(NameProblem::Empty);
    }
    let (name, version) = match written.split_once('=') {
        Some(_) if kind == NameKind::App => return Err(NameProblem::VersionNotAllowed),
        Some((name, version)) => (name, Some(version)),
        None => (written, None),
    };
    check_name(name)?;
    if let Some(version) = version {
        check_version(version)?;
    }
    Ok(PackageSpec {
        name: name.to_string(),
        version: version.map(str::to_string),
    })
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.' | '_' | '@' | ':')
}

fn is_version_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '-' | '~' | ':' | '_')
}

fn check_name(name: &str) -> Result<(), NameProblem> {
    // Report a forbidden character anywhere before the rule about the first one, so `-$(x)`
    // is called out for `$`, the more alarming part.
    if let Some(c) = name.chars().find(|c| !is_name_char(*c)) {
        return Err(NameProblem::BadChar(c));
    }
    match name.chars().next() {
        None => Err(NameProblem::BadFirstChar('=')),
        Some(c) if !c.is_ascii_alphanumeric() => Err(NameProblem::BadFirstChar(c)),
        Some(_) if name.len() > MAX_NAME_LEN => Err(NameProblem::TooLong {
            len: name.len(),
            max: MAX_NAME_LEN,
        }),
        Some(_) => Ok(()),
    }
}

fn check_version(version: &str) -> Result<(), NameProblem> {
    if let Some(c) = version.chars().find(|c| !is_version_char(*c)) {
        return Err(NameProblem::BadVersionChar(c));
    }
    match version.chars().next() {
        None => Err(NameProblem::EmptyVersion),
        Some(c) if !c.is_ascii_alphanumeric() => Err(NameProblem::BadVersionFirstChar(c)),
        Some(_) if version.len() > MAX_NAME_LEN => Err(NameProblem::TooLong {
            len: version.len(),
            max: MAX_NAME_LEN,
        }),
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(s: &str) -> Result<PackageSpec, NameProblem> {
        parse_name(NameKind::Package, s)
    }

    #[test]
    fn real_names_from_each_distribution_are_accepted() {
        for name in [
            "gcc",
            "gcc-c++",
            "python3.11",
            "lib32-glibc",
            "Mesa-dri-devel",
            "MozillaFirefox",
            "libstdc++6",
            "patterns-devel-base-devel_basis",
            "pattern:devel_basis",
            "libc6:i386",
            "r8168-dkms@git",
            "7zip",
        ] {
            assert_eq!(pkg(name).map(|p| p.to_string()), Ok(name.to_string()));
        }
    }

    #[test]
    fn versions_are_split_off_and_shown_again() {
        let spec = pkg("curl=1:8.5.0-2ubuntu10.6~rc1_x").unwrap();
        assert_eq!(spec.name, "curl");
        assert_eq!(spec.version.as_deref(), Some("1:8.5.0-2ubuntu10.6~rc1_x"));
        assert_eq!(spec.to_string(), "curl=1:8.5.0-2ubuntu10.6~rc1_x");
        assert_eq!(
            "git".parse::<PackageSpec>(),
            Ok(PackageSpec {
                name: "git".into(),
                version: None
            })
        );
    }

    #[test]
    fn hostile_and_malformed_names_are_refused() {
        let cases = [
            ("-rf", NameProblem::BadFirstChar('-')),
            (".hidden", NameProblem::BadFirstChar('.')),
            ("a;b", NameProblem::BadChar(';')),
            ("$(x)", NameProblem::BadChar('$')),
            ("`id`", NameProblem::BadChar('`')),
            ("a\nb", NameProblem::BadChar('\n')),
            ("a b", NameProblem::BadChar(' ')),
            ("a|b", NameProblem::BadChar('|')),
            ("a&b", NameProblem::BadChar('&')),
            ("a>b", NameProblem::BadChar('>')),
            ("pkgconfig(x)", NameProblem::BadChar('(')),
            ("a*", NameProblem::BadChar('*')),
            ("a/b", NameProblem::BadChar('/')),
            ("a'b", NameProblem::BadChar('\'')),
            ("a\\b", NameProblem::BadChar('\\')),
            ("café", NameProblem::BadChar('é')),
            ("=1.0", NameProblem::BadFirstChar('=')),
            ("gcc=", NameProblem::EmptyVersion),
            ("gcc==1", NameProblem::BadVersionChar('=')),
            ("gcc=1;rm", NameProblem::BadVersionChar(';')),
            ("gcc=-1", NameProblem::BadVersionFirstChar('-')),
            ("gcc=1^2", NameProblem::BadVersionChar('^')),
            ("", NameProblem::Empty),
        ];
        for (input, expected) in cases {
            assert_eq!(pkg(input), Err(expected), "{input:?}");
        }
        let long = "a".repeat(MAX_NAME_LEN + 1);
        assert_eq!(
            pkg(&long),
            Err(NameProblem::TooLong {
                len: 256,
                max: MAX_NAME_LEN
            })
        );
        assert!(pkg(&"a".repeat(MAX_NAME_LEN)).is_ok());
    }

    #[test]
    fn apps_follow_the_same_rules_without_versions() {
        assert!(parse_name(NameKind::App, "firefox").is_ok());
        assert_eq!(
            parse_name(NameKind::App, "firefox=1"),
            Err(NameProblem::VersionNotAllowed)
        );
        assert_eq!(
            parse_name(NameKind::App, "-x"),
            Err(NameProblem::BadFirstChar('-'))
        );
    }

    #[test]
    fn the_cli_helper_trims_and_explains() {
        assert_eq!(
            validate_package_name("  vim \n").map(|p| p.name),
            Ok("vim".to_string())
        );
        let err = validate_package_name("gcc;rm").unwrap_err();
        assert!(
            err.starts_with("\"gcc;rm\" contains `;`, which is not allowed in a package name"),
            "{err}"
        );
        assert!(err.contains("(allowed: letters, digits"), "{err}");
    }

    #[test]
    fn order_is_by_name_then_version() {
        let mut specs: Vec<PackageSpec> = ["b", "a=2", "a", "a=10"]
            .iter()
            .map(|s| pkg(s).unwrap())
            .collect();
        specs.sort();
        let shown: Vec<String> = specs.iter().map(|p| p.to_string()).collect();
        assert_eq!(shown, ["a", "a=10", "a=2", "b"]);
    }
}

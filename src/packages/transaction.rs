//! Reading an install's whole transaction (`Manager::probe`): every package the install adds,
//! upgrades, downgrades or removes, with the exact versions, so the lock can pin the whole set.
//! apt's is read from dpkg's database before and after the install itself; the other
//! managers' from their dry run of it.
//!
//! Each manager prints it its own way (examples in each parser and, recorded from real
//! runs, in `transaction_tests.rs`). Lines that are not part of the transaction (progress,
//! headers, notes) are skipped; a line that is part of it but cannot be read is an error
//! naming the line, never skipped, because a package missing from the lock would be installed
//! unpinned. Every name and version read is checked against the manifest's rules for names
//! (RPM's `^` allowed in versions) before it can reach a lock or a command line.

use std::collections::BTreeMap;

use super::{Manager, PackageError};
use crate::manifest::{validate_package_name, MAX_NAME_LEN};

/// One package the install adds or changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub name: String,
    /// The version it installs.
    pub version: String,
    /// The version in the image it replaces (an upgrade or downgrade), when the output says.
    pub replaces: Option<String>,
}

/// What an install would do.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Transaction {
    /// In the order the manager printed them, each name once.
    pub installs: Vec<Change>,
    /// Packages of the image the install removes (conflicts, obsoletes).
    pub removes: Vec<String>,
}

impl Transaction {
    fn install(
        &mut self,
        manager: Manager,
        change: Change,
        line: &str,
    ) -> Result<(), PackageError> {
        check_reported(manager, &change.name, &change.version, line)?;
        if let Some(old) = &change.replaces {
            check_reported(manager, &change.name, old, line)?;
        }
        match self.installs.iter().find(|c| c.name == change.name) {
            Some(seen) if seen.version != change.version => Err(unreadable(
                manager,
                &format!(
                    "package `{}` appears twice, with versions {} and {}",
                    change.name, seen.version, change.version
                ),
                line,
            )),
            Some(_) => Ok(()),
            None => {
                self.installs.push(change);
                Ok(())
            }
        }
    }

    fn remove(&mut self, manager: Manager, name: &str, line: &str) -> Result<(), PackageError> {
        check_name(manager, name, line)?;
        if !self.removes.iter().any(|n| n == name) {
            self.removes.push(name.to_string());
        }
        Ok(())
    }
}

fn unreadable(manager: Manager, problem: &str, line: &str) -> PackageError {
    PackageError::UnreadableTransaction {
        manager,
        problem: printable(problem),
        line: printable(line),
    }
}

/// A hostile line could be long or hold control characters (a terminal's escape sequences):
/// an error shows at most 200 characters of it, control characters escaped.
fn printable(text: &str) -> String {
    let mut shown = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == 200 {
            shown.push('…');
            break;
        }
        if c.is_control() {
            shown.extend(c.escape_debug());
        } else {
            shown.push(c);
        }
    }
    shown
}

fn check_name(manager: Manager, name: &str, line: &str) -> Result<(), PackageError> {
    match name_problem(name) {
        None => Ok(()),
        Some(problem) => Err(unreadable(manager, &problem, line)),
    }
}

/// A name and version a manager reported (see [`package_problem`]).
fn check_reported(
    manager: Manager,
    name: &str,
    version: &str,
    line: &str,
) -> Result<(), PackageError> {
    match package_problem(name, version) {
        None => Ok(()),
        Some(problem) => Err(unreadable(manager, &problem, line)),
    }
}

/// What is wrong with a package name, if anything: the manifest's rules.
fn name_problem(name: &str) -> Option<String> {
    match validate_package_name(name) {
        Ok(spec) if spec.version.is_none() && spec.name == name => None,
        Ok(_) => Some(format!("`{name}` is not a package name")),
        Err(reason) => Some(reason),
    }
}

/// What is wrong with a package name and version that a manager reported or a lock holds, if
/// anything: the manifest's rules for names, and for versions its rules plus `^` (RPM's
/// snapshot marker, which repositories do use). Such a pair can go on a command line as
/// `name=version` without any part of it read as something else.
pub fn package_problem(name: &str, version: &str) -> Option<String> {
    if let Some(problem) = name_problem(name) {
        return Some(problem);
    }
    let version_ok = version.len() <= MAX_NAME_LEN
        && version.starts_with(|c: char| c.is_ascii_alphanumeric())
        && version.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '-' | '~' | ':' | '_' | '^')
        });
    (!version_ok).then(|| format!("`{version}` is not a version of package `{name}`"))
}

/// What apt's install changed (`Probe::Install`): the output of `Manager::query` without
/// names before and after the install, each line `STATUS NAME ARCH VERSION`:
/// ```text
/// installed libc6 amd64 2.36-9+deb12u13
/// config-files tzdata all 2026b-0+deb12u1
/// ```
/// Every package installed after with a version it did not have before (new, upgraded or
/// downgraded) is an install, and every one installed before and gone after a removal. A
/// package is named as apt names it: with `:ARCH` only when its architecture is neither the
/// native one (dpkg's own, which is always native) nor `all`.
pub(super) fn parse_dpkg_changes(before: &str, after: &str) -> Result<Transaction, PackageError> {
    const M: Manager = Manager::Apt;
    let (before, after) = (dpkg_listing(before)?, dpkg_listing(after)?);
    let native = after
        .iter()
        .find(|((name, _), _)| name == "dpkg")
        .map(|((_, arch), _)| arch.clone())
        .ok_or_else(|| PackageError::Unreadable {
            manager: M,
            problem: "dpkg-query lists no installed `dpkg` package, so the native \
                      architecture is unknown"
                .to_string(),
        })?;
    let shown = |name: &str, arch: &str| {
        if arch == native || arch == "all" {
            name.to_string()
        } else {
            format!("{name}:{arch}")
        }
    };
    let mut tx = Transaction::default();
    for (key, listed) in &after {
        let old = before.get(key).map(|old| &old.version);
        if old == Some(&listed.version) {
            continue;
        }
        let change = Change {
            name: shown(&key.0, &key.1),
            version: listed.version.clone(),
            replaces: old.cloned(),
        };
        tx.install(M, change, &listed.line)?;
    }
    for (key, listed) in &before {
        if !after.contains_key(key) {
            tx.remove(M, &shown(&key.0, &key.1), &listed.line)?;
        }
    }
    Ok(tx)
}

/// One package of a dpkg-query listing: its version, and its line for errors.
struct Listed {
    version: String,
    line: String,
}

/// The statuses of a package that is there (dpkg-query(1), `db:Status-Status`): all but
/// `not-installed` and `config-files` (a removed package's configuration files). A package
/// half-way through an install or its triggers is there too, and then not `installed`,
/// which the check after the install reports.
const PRESENT: [&str; 6] = [
    "installed",
    "half-installed",
    "unpacked",
    "half-configured",
    "triggers-awaited",
    "triggers-pending",
];

/// The packages a dpkg-query listing shows as present, by `(name, architecture)`.
fn dpkg_listing(stdout: &str) -> Result<BTreeMap<(String, String), Listed>, PackageError> {
    const M: Manager = Manager::Apt;
    let mut present = BTreeMap::new();
    for line in stdout.lines().filter(|l| !l.trim().is_empty()) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words[..] {
            ["not-installed", ..] | ["config-files", ..] => {}
            [status, name, arch, version] if PRESENT.contains(&status) => {
                check_name(M, name, line)?;
                if !arch.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                    return Err(unreadable(M, "not an architecture", line));
                }
                let listed = Listed {
                    version: version.to_string(),
                    line: line.to_string(),
                };
                if present
                    .insert((name.to_string(), arch.to_string()), listed)
                    .is_some()
                {
                    return Err(unreadable(M, "a package listed twice", line));
                }
            }
            _ => return Err(unreadable(M, "expected STATUS NAME ARCH VERSION", line)),
        }
    }
    Ok(present)
}

/// What a section of dnf's transaction table does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DnfSection {
    Install,
    Remove,
    /// Groups, modules, environments: not packages.
    Other,
}

fn dnf_section(header: &str) -> DnfSection {
    match header {
        "Installing:"
        | "Installing dependencies:"
        | "Installing weak dependencies:"
        | "Installing group/module packages:"
        | "Upgrading:"
        | "Downgrading:"
        | "Reinstalling:" => DnfSection::Install,
        "Removing:"
        | "Removing dependent packages:"
        | "Removing unused dependencies:"
        | "Obsoleting:" => DnfSection::Remove,
        _ => DnfSection::Other,
    }
}

/// `dnf install --assumeno`: a table of sections, then the summary. dnf 4:
/// ```text
/// ================================================================================
///  Package          Architecture   Version                 Repository       Size
/// ================================================================================
/// Installing:
///  jq               x86_64         1.7.1-8.fc41            fedora          183 k
/// Upgrading:
///  glibc            x86_64         2.40-9.fc41             updates         2.2 M
///      replacing  glibc-langpack-en.x86_64 2.40-1.fc41
///
/// Transaction Summary
/// ```
/// A row starts with one space. dnf 4 continues a value too wide for its column on the next
/// line, indented further (its `fmtColumns`), so such lines belong to the row above. dnf 5
/// (libdnf5-cli's `transaction_table.cpp`) has no rules, sizes in KiB, and follows an
/// upgraded row with `   replacing  ARCH OLD-VERSION REPO SIZE` (`replacing NAME …` for an
/// obsoleted package). `Nothing to do.` is an empty transaction; output with neither it nor
/// the summary is an error.
pub(super) fn parse_dnf(stdout: &str) -> Result<Transaction, PackageError> {
    const M: Manager = Manager::Dnf;
    let mut tx = Transaction::default();
    let mut section: Option<DnfSection> = None;
    // The row being read: its words so far and its first line (for errors).
    let mut row: Option<(Vec<String>, String)> = None;
    let mut complete = false;
    for line in stdout.lines() {
        let text = line.trim();
        let continues = line.starts_with("  ") && !text.starts_with("replacing");
        if !continues {
            if let (Some(current), Some((words, first))) = (section, row.take()) {
                dnf_row(&mut tx, current, &words, &first)?;
            }
        }
        if text.starts_with("Transaction Summary") {
            complete = true;
            break;
        }
        if text == "Nothing to do." {
            complete = true;
            continue;
        }
        if !line.starts_with(' ') {
            // A section header, a rule, the column titles (dnf 5), or a message.
            section = text.ends_with(':').then(|| dnf_section(text));
            continue;
        }
        let Some(current) = section else {
            continue;
        };
        let words: Vec<&str> = text.split_whitespace().collect();
        if words.first() == Some(&"replacing") {
            dnf_replacing(&mut tx, current, &words, line)?;
        } else if continues {
            match &mut row {
                Some((row_words, _)) => row_words.extend(words.iter().map(|w| w.to_string())),
                None => return Err(unreadable(M, "a continued row without its start", line)),
            }
        } else {
            row = Some((
                words.iter().map(|w| w.to_string()).collect(),
                line.to_string(),
            ));
        }
    }
    if !complete {
        return Err(PackageError::NoTransaction { manager: M });
    }
    Ok(tx)
}

/// One row of dnf's table: `NAME ARCH VERSION REPOSITORY SIZE [UNIT]`.
fn dnf_row(
    tx: &mut Transaction,
    section: DnfSection,
    words: &[String],
    line: &str,
) -> Result<(), PackageError> {
    const M: Manager = Manager::Dnf;
    if section == DnfSection::Other {
        return Ok(());
    }
    let [name, _arch, version, _repo, ..] = words else {
        return Err(unreadable(
            M,
            "expected NAME ARCH VERSION REPOSITORY SIZE",
            line,
        ));
    };
    match section {
        DnfSection::Install => tx.install(
            M,
            Change {
                name: name.clone(),
                version: version.clone(),
                replaces: None,
            },
            line,
        ),
        DnfSection::Remove => tx.remove(M, name, line),
        DnfSection::Other => Ok(()),
    }
}

/// A `replacing` line under an upgraded or obsoleting row, by its number of words:
/// dnf 4 `replacing NAME.ARCH VERSION` (an obsoleted package); dnf 5 `replacing ARCH VERSION
/// REPO SIZE UNIT` (the row's own old version) or `replacing NAME ARCH VERSION REPO SIZE
/// UNIT` (an obsoleted package, or the row's old version in early dnf 5).
fn dnf_replacing(
    tx: &mut Transaction,
    section: DnfSection,
    words: &[&str],
    line: &str,
) -> Result<(), PackageError> {
    const M: Manager = Manager::Dnf;
    if section != DnfSection::Install {
        return Ok(());
    }
    let row = tx.installs.last_mut();
    match (words.len(), row) {
        (3, _) => {
            let name = words[1].rsplit_once('.').map_or(words[1], |(n, _)| n);
            tx.remove(M, name, line)
        }
        (6, Some(change)) => {
            check_reported(M, &change.name, words[2], line)?;
            change.replaces = Some(words[2].to_string());
            Ok(())
        }
        (7, Some(change)) if change.name == words[1] => {
            check_reported(M, &change.name, words[3], line)?;
            change.replaces = Some(words[3].to_string());
            Ok(())
        }
        (7, _) => tx.remove(M, words[1], line),
        _ => Err(unreadable(M, "an unexpected `replacing` line", line)),
    }
}

/// `zypper --xmlout install --dry-run`: among zypper's XML messages, the install summary
/// (written by zypper's `Summary::dumpAsXmlTo`):
/// ```text
/// <install-summary download-size="211516" space-usage-diff="620433">
/// <to-upgrade>
/// <solvable type="package" name="glibc" edition="2.40-2.1" arch="x86_64" edition-old="2.39-1.1" arch-old="x86_64" summary="…"/>
/// </to-upgrade>
/// <to-install>
/// <solvable type="package" name="jq" edition="1.7.1-3.2" arch="x86_64" summary="…">
/// <description>…</description></solvable>
/// </to-install>
/// </install-summary>
/// ```
/// Texts are XML-escaped, so a `<` always starts a tag. `to-change-arch` and
/// `to-change-vendor` repeat packages of the other lists and are skipped, as are patterns,
/// patches and products (not packages). No summary and zypper's "Nothing to do." message is
/// an empty transaction.
pub(super) fn parse_zypper(stdout: &str) -> Result<Transaction, PackageError> {
    const M: Manager = Manager::Zypper;
    let Some(start) = stdout.find("<install-summary") else {
        if stdout.contains("Nothing to do.") {
            return Ok(Transaction::default());
        }
        return Err(PackageError::NoTransaction { manager: M });
    };
    let summary = &stdout[start..];
    let end = summary
        .find("</install-summary>")
        .ok_or_else(|| unreadable(M, "the install summary does not end", "<install-summary"))?;
    let mut tx = Transaction::default();
    let mut section: Option<&str> = None;
    for tag in summary[..end].split('<').skip(1) {
        let tag = tag.split('>').next().unwrap_or("");
        if let Some(closing) = tag.strip_prefix('/') {
            if Some(closing) == section {
                section = None;
            }
            continue;
        }
        let element = tag.split_whitespace().next().unwrap_or("");
        if element.starts_with("to-") || element.starts_with('_') {
            section = Some(element);
            continue;
        }
        if element != "solvable" || attribute(tag, "type") != Some("package") {
            continue;
        }
        let line = format!("<{tag}>");
        let name = attribute(tag, "name")
            .ok_or_else(|| unreadable(M, "a solvable without a name", &line))?;
        match section {
            Some("to-install" | "to-upgrade" | "to-downgrade" | "to-reinstall") => {
                let version = attribute(tag, "edition")
                    .ok_or_else(|| unreadable(M, "a solvable without an edition", &line))?;
                tx.install(
                    M,
                    Change {
                        name: name.to_string(),
                        version: version.to_string(),
                        replaces: attribute(tag, "edition-old").map(str::to_string),
                    },
                    &line,
                )?;
            }
            Some("to-remove") => tx.remove(M, name, &line)?,
            _ => {}
        }
    }
    Ok(tx)
}

/// The value of ` KEY="…"` in an XML tag. zypper writes `type`, `name`, `edition`, `arch`,
/// `edition-old` and `arch-old` before the free-text `summary`, whose quotes are escaped, so
/// the first match is the attribute.
fn attribute<'a>(tag: &'a str, key: &str) -> Option<&'a str> {
    let marker = format!(" {key}=\"");
    let start = tag.find(&marker)? + marker.len();
    let value = &tag[start..];
    value.find('"').map(|end| &value[..end])
}

/// `pacman -S --print --print-format '%n %v'`: one `NAME VERSION` line per package of the
/// transaction, dependencies included. Lines that do not start with a letter or digit are
/// pacman's questions and notes (`:: There are 2 providers available for …`).
pub(super) fn parse_pacman(stdout: &str) -> Result<Transaction, PackageError> {
    const M: Manager = Manager::Pacman;
    let mut tx = Transaction::default();
    for line in stdout.lines() {
        if !line.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            continue;
        }
        match line.split_whitespace().collect::<Vec<_>>()[..] {
            [name, version] => tx.install(
                M,
                Change {
                    name: name.to_string(),
                    version: version.to_string(),
                    replaces: None,
                },
                line,
            )?,
            // `Enter a number (default=1):` and other prompts.
            _ if line.contains(':') => {}
            _ => return Err(unreadable(M, "expected NAME VERSION", line)),
        }
    }
    Ok(tx)
}

/// `apk add --simulate`: one numbered line per step; the counter is padded to the width of
/// the total (`( 1/12)`):
/// ```text
/// (1/3) Upgrading musl (1.2.5-r0 -> 1.2.5-r1)
/// (2/3) Installing oniguruma (6.9.9-r0)
/// (3/3) Installing jq (1.7.1-r0)
/// OK: 8 MiB in 16 packages
/// ```
/// `Purging` removes; other steps (`Executing …trigger`) are not packages.
pub(super) fn parse_apk(stdout: &str) -> Result<Transaction, PackageError> {
    const M: Manager = Manager::Apk;
    let mut tx = Transaction::default();
    for line in stdout.lines() {
        let Some(step) = line
            .trim_start()
            .strip_prefix('(')
            .and_then(|r| r.split_once(')'))
            .map(|(_, step)| step.trim_start())
        else {
            continue;
        };
        let (verb, rest) = step.split_once(' ').unwrap_or((step, ""));
        if !matches!(
            verb,
            "Installing" | "Upgrading" | "Downgrading" | "Replacing" | "Reinstalling" | "Purging"
        ) {
            continue;
        }
        let (name, versions) = rest
            .split_once(' ')
            .ok_or_else(|| unreadable(M, "no version after the name", line))?;
        let versions = versions
            .trim()
            .strip_prefix('(')
            .and_then(|v| v.strip_suffix(')'))
            .ok_or_else(|| unreadable(M, "no `(VERSION)`", line))?;
        if verb == "Purging" {
            tx.remove(M, name, line)?;
            continue;
        }
        let (replaces, version) = match versions.split_once(" -> ") {
            Some((old, new)) => (Some(old.to_string()), new),
            None => (None, versions),
        };
        tx.install(
            M,
            Change {
                name: name.to_string(),
                version: version.to_string(),
                replaces,
            },
            line,
        )?;
    }
    Ok(tx)
}

//! Desktop Entry files (the freedesktop.org Desktop Entry Specification, version 1.5): a
//! strict parser, the Exec command line in both directions, and the host copy that `export`
//! writes.
//!
//! The source file comes from inside an environment, so it is untrusted: whoever controls the
//! environment controls its bytes. Nothing of it is copied through as text. It is parsed into
//! groups, keys, locales and unescaped values; the host copy is then *generated* from an allow
//! list of keys, every value escaped again by [`escape_value`], and the Exec line built by
//! this program from the parsed argument vector. So a value with an escaped newline, a line
//! that looks like `[Section]`, a second `Exec`, `TryExec`, `DBusActivatable`,
//! `X-GNOME-Autostart-*` or any other key never reaches the host copy as such.

use std::fmt;

/// The keys of `[Desktop Entry]` (and of actions, where they apply) that the host copy keeps.
/// Everything else is dropped, notably `Exec` (regenerated), `TryExec` (it would be checked on
/// the host), `DBusActivatable` (activation would go through the host's session bus, outside
/// the environment), `Path` (a host directory), `Implements` and every `X-` key (autostart and
/// other desktop-specific behaviour).
const KEPT_KEYS: &[(&str, Kind)] = &[
    ("Name", Kind::Text),
    ("GenericName", Kind::Text),
    ("Comment", Kind::Text),
    ("Keywords", Kind::List),
    ("Icon", Kind::Text),
    ("Categories", Kind::List),
    ("MimeType", Kind::List),
    ("StartupWMClass", Kind::Text),
    ("StartupNotify", Kind::Bool),
    ("Terminal", Kind::Bool),
    ("NoDisplay", Kind::Bool),
    ("PrefersNonDefaultGPU", Kind::Bool),
    ("SingleMainWindow", Kind::Bool),
];

/// Keys whose localised variants (`Name[de]`) are kept: the spec's `localestring` keys.
const LOCALISED: &[&str] = &["Name", "GenericName", "Comment", "Keywords"];

/// Field codes passed through to the host launcher: the files or URLs it opens the
/// application with. `%i`, `%c` and `%k` would expand to values of the host copy (its icon,
/// name and location), which mean nothing to the program inside, and the deprecated `%d %D %n
/// %N %v %m` must be removed (spec, "The Exec key"); all of those are dropped.
const PASSED_FIELD_CODES: &[char] = &['f', 'F', 'u', 'U'];
const KNOWN_FIELD_CODES: &[char] = &[
    'f', 'F', 'u', 'U', 'i', 'c', 'k', 'd', 'D', 'n', 'N', 'v', 'm',
];

/// Characters that force an Exec argument to be quoted (spec, "The Exec key").
const RESERVED: &[char] = &[
    ' ', '\t', '\n', '"', '\'', '\\', '>', '<', '~', '|', '&', ';', '$', '*', '?', '#', '(', ')',
    '`',
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    List,
    Bool,
}

/// Why a Desktop Entry file or value was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesktopError {
    /// 1-based line of the source file, when the problem is at one.
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for DesktopError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for DesktopError {}

fn err_at(line: usize, message: impl Into<String>) -> DesktopError {
    DesktopError {
        line: Some(line),
        message: message.into(),
    }
}

fn err(message: impl Into<String>) -> DesktopError {
    DesktopError {
        line: None,
        message: message.into(),
    }
}

/// One `Key[locale]=value` line, with its value as written (escapes not yet undone: how a
/// value is unescaped depends on its type).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub locale: Option<String>,
    pub raw: String,
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub name: String,
    pub entries: Vec<Entry>,
}

impl Group {
    /// The unlocalised entry `key`.
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries
            .iter()
            .find(|e| e.key == key && e.locale.is_none())
    }
}

/// A parsed Desktop Entry file: its groups in order, the first being `[Desktop Entry]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesktopFile {
    pub groups: Vec<Group>,
}

impl DesktopFile {
    /// Parse the bytes of a `.desktop` file. Strict where leniency would let a hostile file
    /// mean two things: not UTF-8, a key before any group, a malformed line, a duplicate key
    /// or group, or a first group other than `[Desktop Entry]` are errors.
    pub fn parse(bytes: &[u8]) -> Result<DesktopFile, DesktopError> {
        let text = std::str::from_utf8(bytes)
            .map_err(|e| err(format!("not UTF-8 (at byte {})", e.valid_up_to())))?;
        let mut groups: Vec<Group> = Vec::new();
        for (index, line) in text.split('\n').enumerate() {
            let number = index + 1;
            // A CRLF file still parses; a lone CR anywhere else is a control character.
            let line = line.strip_suffix('\r').unwrap_or(line);
            let trimmed = line.trim_start_matches([' ', '\t']);
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            if let Some(rest) = line.strip_prefix('[') {
                let name = rest
                    .strip_suffix(']')
                    .ok_or_else(|| err_at(number, "a group header must end with `]`"))?;
                if name.is_empty() || name.chars().any(|c| c == '[' || c == ']' || c.is_control()) {
                    return Err(err_at(number, format!("invalid group name {name:?}")));
                }
                if groups.iter().any(|g| g.name == name) {
                    return Err(err_at(number, format!("group [{name}] appears twice")));
                }
                if groups.is_empty() && name != "Desktop Entry" {
                    return Err(err_at(
                        number,
                        format!("the first group must be [Desktop Entry], not [{name}]"),
                    ));
                }
                groups.push(Group {
                    name: name.to_string(),
                    entries: Vec::new(),
                });
                continue;
            }
            let Some(group) = groups.last_mut() else {
                return Err(err_at(number, "a key before the [Desktop Entry] group"));
            };
            let entry = parse_entry(line, number)?;
            if group
                .entries
                .iter()
                .any(|e| e.key == entry.key && e.locale == entry.locale)
            {
                return Err(err_at(
                    number,
                    format!("key {} appears twice in [{}]", entry.key, group.name),
                ));
            }
            group.entries.push(entry);
        }
        if groups.is_empty() {
            return Err(err("no [Desktop Entry] group"));
        }
        Ok(DesktopFile { groups })
    }

    /// The `[Desktop Entry]` group (always the first, see [`DesktopFile::parse`]).
    pub fn main(&self) -> &Group {
        &self.groups[0]
    }

    pub fn group(&self, name: &str) -> Option<&Group> {
        self.groups.iter().find(|g| g.name == name)
    }
}

/// `Key[locale]=value`: keys are `[A-Za-z0-9-]`, blanks around `=` are ignored (spec, "Basic
/// format of the file"), locales `lang_COUNTRY.ENCODING@MODIFIER`.
fn parse_entry(line: &str, number: usize) -> Result<Entry, DesktopError> {
    let (left, value) = line
        .split_once('=')
        .ok_or_else(|| err_at(number, "neither a group header, a comment nor Key=value"))?;
    let left = left.trim_end_matches([' ', '\t']);
    let (key, locale) = match left.split_once('[') {
        Some((key, rest)) => {
            let locale = rest
                .strip_suffix(']')
                .ok_or_else(|| err_at(number, format!("malformed locale in {left:?}")))?;
            if !valid_locale(locale) {
                return Err(err_at(number, format!("invalid locale {locale:?}")));
            }
            (key, Some(locale.to_string()))
        }
        None => (left, None),
    };
    if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(err_at(number, format!("invalid key {key:?}")));
    }
    let value = value.trim_start_matches([' ', '\t']);
    if value.chars().any(|c| c.is_control() && c != '\t') {
        return Err(err_at(
            number,
            format!("the value of {key} holds a control character"),
        ));
    }
    Ok(Entry {
        key: key.to_string(),
        locale,
        raw: value.to_string(),
        line: number,
    })
}

fn valid_locale(locale: &str) -> bool {
    !locale.is_empty()
        && locale
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '@' | '-'))
}

/// Undo the escapes of a `string`/`localestring` value: `\s \n \t \r \\` (spec, "Possible
/// value types"). With `list`, `\;` stays escaped for [`split_list`].
fn unescape(raw: &str, line: usize, list: bool) -> Result<String, DesktopError> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('s') => out.push(' '),
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('\\') if list => out.push_str("\\\\"),
            Some('\\') => out.push('\\'),
            Some(';') if list => out.push_str("\\;"),
            Some(other) => {
                return Err(err_at(line, format!("unknown escape \\{other}")));
            }
            None => return Err(err_at(line, "a value ends with a lone backslash")),
        }
    }
    Ok(out)
}

/// A list value (`a;b\;c;`), unescaped, into its items.
fn split_list(raw: &str, line: usize) -> Result<Vec<String>, DesktopError> {
    let text = unescape(raw, line, true)?;
    let mut items = Vec::new();
    let mut item = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(next) => item.push(next),
                None => return Err(err_at(line, "a list ends with a lone backslash")),
            },
            ';' => items.push(std::mem::take(&mut item)),
            c => item.push(c),
        }
    }
    if !item.is_empty() {
        items.push(item);
    }
    items.retain(|i| !i.is_empty());
    Ok(items)
}

/// Escape a value for writing: every character that could end or restructure the line is
/// written as an escape, so one value is always exactly one line.
pub fn escape_value(value: &str) -> Result<String, DesktopError> {
    let mut out = String::with_capacity(value.len());
    for (i, c) in value.chars().enumerate() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            // Leading blanks would be trimmed by a reader.
            ' ' if i == 0 => out.push_str("\\s"),
            c if c.is_control() => {
                return Err(err(format!(
                    "the value {value:?} holds the control character U+{:04X}, which a \
                     desktop entry cannot represent",
                    u32::from(c)
                )))
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

fn escape_list(items: &[String]) -> Result<String, DesktopError> {
    let mut out = String::new();
    for item in items {
        // escape_value doubles backslashes first, so the `\;` added after it stays one escape.
        out.push_str(&escape_value(item)?.replace(';', "\\;"));
        out.push(';');
    }
    Ok(out)
}

/// One piece of an Exec argument: literal text, or a field code such as `%f`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(String),
    Field(char),
}

/// One Exec argument: its pieces in order.
pub type Arg = Vec<Piece>;

/// Split an Exec value (already unescaped as a string) into arguments (spec, "The Exec key"):
/// arguments are separated by spaces; a double-quoted part may contain reserved characters
/// and escapes `\" \` \$ \\`; `%%` is a literal `%` and `%X` a field code. A backslash outside
/// quotes, an unknown escape or field code, or an unterminated quote is an error rather than
/// a guess.
pub fn split_exec(exec: &str) -> Result<Vec<Arg>, DesktopError> {
    let mut args: Vec<Arg> = Vec::new();
    let mut current: Option<Arg> = None;
    let mut chars = exec.chars().peekable();
    let mut quoted = false;
    let push_char = |arg: &mut Arg, c: char| match arg.last_mut() {
        Some(Piece::Text(text)) => text.push(c),
        _ => arg.push(Piece::Text(c.to_string())),
    };
    while let Some(c) = chars.next() {
        if !quoted && c == ' ' {
            if let Some(arg) = current.take() {
                args.push(arg);
            }
            continue;
        }
        let arg = current.get_or_insert_with(Vec::new);
        match c {
            '"' => {
                quoted = !quoted;
                // An empty quoted argument ("") is an argument.
                if arg.is_empty() {
                    arg.push(Piece::Text(String::new()));
                }
            }
            '\\' if quoted => match chars.next() {
                Some(e @ ('"' | '`' | '$' | '\\')) => push_char(arg, e),
                Some(other) => {
                    return Err(err(format!(
                        "Exec: \\{other} is not an escape the specification allows in quotes"
                    )))
                }
                None => return Err(err("Exec: unterminated quote")),
            },
            '\\' => {
                return Err(err(
                    "Exec: a backslash outside double quotes (the specification requires \
                     quoting it)",
                ))
            }
            '%' => match chars.next() {
                Some('%') => push_char(arg, '%'),
                Some(code) if KNOWN_FIELD_CODES.contains(&code) => {
                    arg.push(Piece::Field(code));
                }
                Some(code) => {
                    return Err(err(format!("Exec: unknown field code %{code}")));
                }
                None => return Err(err("Exec: a lone % at the end")),
            },
            c => push_char(arg, c),
        }
    }
    if quoted {
        return Err(err("Exec: unterminated quote"));
    }
    if let Some(arg) = current {
        args.push(arg);
    }
    Ok(args)
}

/// The Exec value (before [`escape_value`]) for `args`: each argument quoted when it holds a
/// reserved character, `"`, `` ` ``, `$` and `\` escaped inside quotes, `%` doubled. Field
/// codes are kept only as the spec allows them: `%F`/`%U` alone as an argument, `%f`/`%u`
/// alone or inside an unquoted argument, and one of them per command line; all others are
/// dropped. A control character other than tab or newline cannot be written and is an error.
pub fn join_exec(args: &[Arg]) -> Result<String, DesktopError> {
    let mut out = String::new();
    let mut file_code_used = false;
    for arg in args {
        let has_field = arg.iter().any(|p| matches!(p, Piece::Field(_)));
        let text: String = arg
            .iter()
            .filter_map(|p| match p {
                Piece::Text(t) => Some(t.as_str()),
                Piece::Field(_) => None,
            })
            .collect();
        // An empty argument must be written as "" to exist at all.
        let text_needs_quotes = text.contains(RESERVED) || (!has_field && text.is_empty());
        let alone = arg.len() == 1;
        let mut written = String::new();
        for piece in arg {
            match piece {
                Piece::Text(text) => {
                    for c in text.chars() {
                        if c.is_control() && c != '\t' && c != '\n' {
                            return Err(err(format!(
                                "an argument holds the control character U+{:04X}, which a \
                                 desktop entry cannot represent",
                                u32::from(c)
                            )));
                        }
                        if text_needs_quotes && matches!(c, '"' | '`' | '$' | '\\') {
                            written.push('\\');
                        }
                        if c == '%' {
                            written.push('%');
                        }
                        written.push(c);
                    }
                }
                Piece::Field(code) => {
                    let keep = PASSED_FIELD_CODES.contains(code)
                        && !file_code_used
                        && !text_needs_quotes
                        && (alone || matches!(code, 'f' | 'u'));
                    if keep {
                        file_code_used = true;
                        written.push('%');
                        written.push(*code);
                    }
                }
            }
        }
        if written.is_empty() && !text_needs_quotes {
            // Only dropped field codes: the argument disappears, as the spec says.
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        if text_needs_quotes {
            out.push('"');
            out.push_str(&written);
            out.push('"');
        } else {
            out.push_str(&written);
        }
    }
    Ok(out)
}

/// A plain argument (no field codes).
pub fn literal(text: impl Into<String>) -> Arg {
    vec![Piece::Text(text.into())]
}

/// What the host copy is made of, besides the source file.
pub struct HostEntry<'a> {
    /// The command in front of the application's own: `karapace-tui … exec ENV --`.
    pub prefix: &'a [String],
    /// Appended to `Name` (and its translations): ` (on NAME)`.
    pub name_suffix: &'a str,
    /// The marker value written as `X-Karapace-Env`.
    pub env_id: &'a str,
    /// The value of `Icon` in the host copy (the icon was validated and copied, or is an
    /// absolute path to the host copy of it); `None` drops the key.
    pub icon: Option<&'a str>,
}

/// Key of the marker that says a host file is ours, and for which environment.
pub const MARKER_KEY: &str = "X-Karapace-Env";

/// The environment a host `.desktop` file was exported from, when it is ours.
pub fn marker_of(bytes: &[u8]) -> Option<String> {
    let file = DesktopFile::parse(bytes).ok()?;
    let entry = file.main().get(MARKER_KEY)?;
    Some(entry.raw.clone())
}

/// Generate the host copy of `source`. `[Desktop Entry]` must be `Type=Application` with an
/// Exec line (a `DBusActivatable` application without one cannot be started from outside).
/// Actions listed in `Actions=` whose group exists are kept, their Exec rewritten the same
/// way; every other group is dropped.
pub fn host_copy(source: &DesktopFile, host: &HostEntry) -> Result<String, DesktopError> {
    let main = source.main();
    match main.get("Type") {
        Some(t) if t.raw == "Application" => {}
        Some(t) => {
            return Err(err_at(
                t.line,
                format!("Type={} is not an application", t.raw),
            ))
        }
        None => return Err(err("no Type key (exporting needs Type=Application)")),
    }
    if main.get("Name").is_none() {
        return Err(err("no Name key"));
    }
    // Hidden=true means "deleted" (spec, "Recognized desktop entry keys"): there is nothing to
    // export, and dropping the key would bring it back.
    if let Some(hidden) = main.get("Hidden").filter(|h| h.raw == "true") {
        return Err(err_at(
            hidden.line,
            "Hidden=true: the entry is marked as deleted",
        ));
    }
    let mut out = String::from("[Desktop Entry]\nType=Application\n");
    write_kept(&mut out, main, host)?;
    out.push_str(&format!("Exec={}\n", exec_line(main, host.prefix)?));
    let mut actions = Vec::new();
    if let Some(list) = main.get("Actions") {
        for action in split_list(&list.raw, list.line)? {
            let valid = !action.is_empty()
                && action
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-');
            let group = format!("Desktop Action {action}");
            match source.group(&group) {
                Some(g) if valid && g.get("Exec").is_some() && g.get("Name").is_some() => {
                    actions.push((action, g));
                }
                _ => {}
            }
        }
    }
    if !actions.is_empty() {
        let names: Vec<String> = actions.iter().map(|(a, _)| a.clone()).collect();
        out.push_str(&format!("Actions={}\n", escape_list(&names)?));
    }
    out.push_str(&format!("{MARKER_KEY}={}\n", escape_value(host.env_id)?));
    for (action, group) in actions {
        out.push_str(&format!("\n[Desktop Action {action}]\n"));
        for entry in &group.entries {
            if entry.key == "Name" {
                let value = unescape(&entry.raw, entry.line, false)?;
                out.push_str(&format!("{}={}\n", key_of(entry), escape_value(&value)?));
            } else if entry.key == "Icon" && entry.locale.is_none() {
                // An action's own icon is not copied; the application's stands in for it.
                if let Some(icon) = host.icon {
                    out.push_str(&format!("Icon={}\n", escape_value(icon)?));
                }
            }
        }
        out.push_str(&format!("Exec={}\n", exec_line(group, host.prefix)?));
    }
    Ok(out)
}

/// `Key` or `Key[locale]`, from parts that [`parse_entry`] validated.
fn key_of(entry: &Entry) -> String {
    match &entry.locale {
        Some(locale) => format!("{}[{locale}]", entry.key),
        None => entry.key.clone(),
    }
}

fn write_kept(out: &mut String, group: &Group, host: &HostEntry) -> Result<(), DesktopError> {
    for entry in &group.entries {
        let Some((_, kind)) = KEPT_KEYS.iter().find(|(k, _)| *k == entry.key) else {
            continue;
        };
        if entry.locale.is_some() && !LOCALISED.contains(&entry.key.as_str()) {
            continue;
        }
        if entry.key == "Icon" {
            if let Some(icon) = host.icon {
                out.push_str(&format!("Icon={}\n", escape_value(icon)?));
            }
            continue;
        }
        let value = match kind {
            Kind::Text => {
                let mut value = unescape(&entry.raw, entry.line, false)?;
                if entry.key == "Name" {
                    value.push_str(host.name_suffix);
                }
                escape_value(&value)?
            }
            Kind::List => escape_list(&split_list(&entry.raw, entry.line)?)?,
            Kind::Bool => match entry.raw.as_str() {
                "true" | "false" => entry.raw.clone(),
                other => {
                    return Err(err_at(
                        entry.line,
                        format!("{} must be true or false, not {other:?}", entry.key),
                    ))
                }
            },
        };
        out.push_str(&format!("{}={value}\n", key_of(entry)));
    }
    Ok(())
}

/// The host Exec value of a group: `prefix` followed by the group's own command.
fn exec_line(group: &Group, prefix: &[String]) -> Result<String, DesktopError> {
    let entry = group
        .get("Exec")
        .ok_or_else(|| err(format!("[{}] has no Exec key", group.name)))?;
    let exec = unescape(&entry.raw, entry.line, false)?;
    let inner = split_exec(&exec).map_err(|e| err_at(entry.line, e.message))?;
    let Some(program) = inner.first() else {
        return Err(err_at(entry.line, "Exec is empty"));
    };
    if program.iter().any(|p| matches!(p, Piece::Field(_))) {
        return Err(err_at(entry.line, "Exec: the program is a field code"));
    }
    let mut args: Vec<Arg> = prefix.iter().map(|p| literal(p.as_str())).collect();
    args.extend(inner);
    escape_value(&join_exec(&args)?)
}

#[cfg(test)]
#[path = "desktop_tests.rs"]
mod tests;

//! The manifest exactly as TOML spells it, before any rule is checked.
//!
//! These structs only decide the shape: which keys exist (unknown ones are refused, as the
//! original did, so a typo such as `pakages` is an error instead of being ignored) and their TOML
//! types. Every leaf that a later rule can reject is wrapped in [`Spanned`] so the error can point
//! at it. Tables themselves are deliberately *not* spanned: toml 0.8 cannot read a `Spanned`
//! table written with dotted keys (`base.image = "…"`), which is valid TOML that the original
//! accepted.
//!
//! Nothing outside `manifest` sees these types; they become a [`super::Manifest`] in `mod.rs`.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// The top level of `karapace.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawManifest {
    /// Optional here so that a missing version gets our own error with advice, not serde's.
    pub manifest_version: Option<Spanned<i64>>,
    pub base: Option<RawBase>,
    #[serde(default)]
    pub system: RawSystem,
    #[serde(default)]
    pub gui: RawGui,
    #[serde(default)]
    pub hardware: RawHardware,
    /// A free table: every key is a label. Values are read as any TOML value so that a
    /// non-string gets a manifest error naming the label rather than a bare type error.
    #[serde(default)]
    pub mounts: BTreeMap<Spanned<String>, Spanned<toml::Value>>,
    #[serde(default)]
    pub runtime: RawRuntime,
    /// Addition: `NAME = "value"` for the sandbox's environment. Values are read as any TOML
    /// value so that a non-string gets a manifest error naming the variable.
    #[serde(default)]
    pub env: BTreeMap<Spanned<String>, Spanned<toml::Value>>,
    /// Addition: host integrations on or off (see `crate::integration`).
    #[serde(default)]
    pub integration: RawIntegration,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIntegration {
    pub wayland: Option<bool>,
    pub x11: Option<bool>,
    pub pipewire: Option<bool>,
    pub pulseaudio: Option<bool>,
    pub dbus: Option<bool>,
    pub ssh_agent: Option<bool>,
    pub fonts: Option<bool>,
    pub icons: Option<bool>,
    pub themes: Option<bool>,
    pub home: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBase {
    pub image: Option<Spanned<String>>,
    /// Addition: an optional SHA-256 pin of the image artefact.
    pub sha256: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSystem {
    #[serde(default)]
    pub packages: Vec<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGui {
    #[serde(default)]
    pub apps: Vec<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHardware {
    #[serde(default)]
    pub gpu: bool,
    #[serde(default)]
    pub audio: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRuntime {
    pub backend: Option<Spanned<String>>,
    #[serde(default)]
    pub network_isolation: bool,
    #[serde(default)]
    pub resource_limits: RawResourceLimits,
}

/// Integers are read as `i64` (TOML's own integer type) so that a negative or zero value gets a
/// range error from us instead of a serde "expected u64".
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawResourceLimits {
    pub cpu_shares: Option<Spanned<i64>>,
    pub memory_limit_mb: Option<Spanned<i64>>,
    pub pids_limit: Option<Spanned<i64>>,
    pub open_files: Option<Spanned<i64>>,
}

/// Reads the text into the raw shape; the error keeps toml's span.
pub fn parse(text: &str) -> Result<RawManifest, toml::de::Error> {
    toml::from_str(text)
}

/// Where a top-level table starts, for errors about a key missing from it. `None` when the
/// table is absent or was written with dotted keys (`toml_edit` gives those no span).
pub fn table_start(text: &str, key: &str) -> Option<usize> {
    let doc = toml_edit::ImDocument::parse(text).ok()?;
    doc.as_table().get(key)?.span().map(|s| s.start)
}

/// The dotted path of the key or value at byte `offset` (e.g. `hardware.gpu`,
/// `system.packages[1]`), so toml's own errors (wrong type, unknown key) can name the field as
/// our errors do. `None` when the text is not valid TOML or nothing is there.
pub fn field_at(text: &str, offset: usize) -> Option<String> {
    let doc = toml_edit::ImDocument::parse(text).ok()?;
    field_in_table(doc.as_table(), "", offset)
}

fn contains(span: Option<std::ops::Range<usize>>, offset: usize) -> bool {
    span.is_some_and(|s| s.contains(&offset))
}

fn join(prefix: &str, key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    match (prefix.is_empty(), bare) {
        (true, true) => key.to_string(),
        (true, false) => format!("{key:?}"),
        (false, true) => format!("{prefix}.{key}"),
        (false, false) => format!("{prefix}.{key:?}"),
    }
}

fn field_in_table(table: &toml_edit::Table, prefix: &str, offset: usize) -> Option<String> {
    for (key, item) in table.iter() {
        let path = join(prefix, key);
        if contains(table.key(key).and_then(|k| k.span()), offset) {
            return Some(path);
        }
        let found = match item {
            // Dotted-key tables have no span, so always look inside tables.
            toml_edit::Item::Table(t) => field_in_table(t, &path, offset),
            toml_edit::Item::Value(v) if contains(v.span(), offset) => {
                Some(field_in_value(v, &path, offset))
            }
            toml_edit::Item::ArrayOfTables(tables) => tables
                .iter()
                .enumerate()
                .find_map(|(i, t)| field_in_table(t, &format!("{path}[{i}]"), offset)),
            _ => None,
        };
        if found.is_some() {
            return found;
        }
    }
    None
}

fn field_in_value(value: &toml_edit::Value, path: &str, offset: usize) -> String {
    let inner = match value {
        toml_edit::Value::Array(items) => items
            .iter()
            .enumerate()
            .find(|(_, v)| contains(v.span(), offset))
            .map(|(i, v)| field_in_value(v, &format!("{path}[{i}]"), offset)),
        toml_edit::Value::InlineTable(t) => t.iter().find_map(|(key, v)| {
            let child = join(path, key);
            let on_key = contains(t.key(key).and_then(|k| k.span()), offset);
            if on_key {
                Some(child)
            } else if contains(v.span(), offset) {
                Some(field_in_value(v, &child, offset))
            } else {
                None
            }
        }),
        _ => None,
    };
    inner.unwrap_or_else(|| path.to_string())
}

/// The TOML type name of a value, for "must be a string, found …".
pub fn type_name(value: &toml::Value) -> &'static str {
    match value {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "an integer",
        toml::Value::Float(_) => "a float",
        toml::Value::Boolean(_) => "a boolean",
        toml::Value::Datetime(_) => "a date-time",
        toml::Value::Array(_) => "an array",
        toml::Value::Table(_) => "a table",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_keys_and_inline_tables_are_read_like_sections() {
        let text =
            "manifest_version = 1\nbase.image = \"rolling\"\nruntime = { backend = \"oci\" }\n";
        let raw = parse(text).unwrap();
        assert_eq!(raw.base.unwrap().image.unwrap().into_inner(), "rolling");
        assert_eq!(raw.runtime.backend.unwrap().into_inner(), "oci");
    }

    #[test]
    fn unknown_keys_are_refused_at_every_level() {
        for text in [
            "manifest_version = 1\nfoo = 1\n",
            "[base]\nimage = \"rolling\"\nimgae = \"x\"\n",
            "[system]\npakages = []\n",
            "[gui]\napp = []\n",
            "[hardware]\nusb = true\n",
            "[runtime]\nbackends = \"oci\"\n",
            "[runtime.resource_limits]\ncpu = 1\n",
            "[integration]\nwaylnd = true\n",
        ] {
            let err = parse(text).err();
            let msg = err.map(|e| e.message().to_string()).unwrap_or_default();
            assert!(msg.contains("unknown field"), "{text:?} gave {msg:?}");
        }
    }

    #[test]
    fn mounts_accept_any_label() {
        let raw = parse("[mounts]\n\"my data\" = \"a:/b\"\nx-1 = \"c:/d\"\n").unwrap();
        let labels: Vec<_> = raw.mounts.keys().map(|k| k.get_ref().clone()).collect();
        assert_eq!(labels, ["my data", "x-1"]);
    }

    #[test]
    fn field_at_names_keys_values_and_array_items() {
        let text = "a = 1\n[hardware]\ngpu = \"yes\"\n[system]\npackages = [\"x\", 2]\n\
                    base.image = 3\nr = { b = { c = 1 } }\n[m]\n\"my key\" = 1\n[[t]]\nk = 1\n";
        let at = |needle: &str| text.find(needle).and_then(|o| field_at(text, o));
        assert_eq!(at("a = 1").as_deref(), Some("a"));
        assert_eq!(at("\"yes\"").as_deref(), Some("hardware.gpu"));
        assert_eq!(at("2]").as_deref(), Some("system.packages[1]"));
        assert_eq!(at("3\n").as_deref(), Some("system.base.image"));
        assert_eq!(at("c = 1").as_deref(), Some("system.r.b.c"));
        assert_eq!(at("\"my key\"").as_deref(), Some("m.\"my key\""));
        assert_eq!(at("k = 1").as_deref(), Some("t[0].k"));
        assert_eq!(field_at("[broken", 1), None);
    }

    #[test]
    fn table_start_finds_headers_only() {
        let text = "manifest_version = 1\n\n[base]\nsha256 = \"x\"\n";
        assert_eq!(table_start(text, "base"), Some(22));
        assert_eq!(table_start(text, "system"), None);
        assert_eq!(table_start("not toml [", "base"), None);
    }
}

//! The user's settings for the terminal UI: the `[tui]` table of
//! `$XDG_CONFIG_HOME/karapace/config.toml` (the file that also holds `[images]` and
//! `[policy]`), and `KARAPACE_TUI_MOUSE`, which wins over the file.
//!
//! ```toml
//! [tui]
//! mouse = true   # wheel scrolls the pane under the pointer, a click selects (default: off)
//! ```
//!
//! The mouse is off by default: a terminal that reports mouse events stops the user from
//! selecting and copying text with the mouse, which over SSH is how people copy.

use std::path::{Path, PathBuf};

/// What the UI takes from the settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TuiSettings {
    pub mouse: bool,
}

/// A setting that cannot be used, with where it is and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsError {
    pub path: PathBuf,
    pub problem: String,
}

impl std::fmt::Display for SettingsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.problem)
    }
}

/// Reads the environment, then the user's config file (a missing file means defaults).
pub fn load(home: &Path) -> Result<TuiSettings, SettingsError> {
    let path = crate::image::config::config_path(home);
    let from_file = match std::fs::read_to_string(&path) {
        Ok(text) => parse(&text).map_err(|problem| SettingsError {
            path: path.clone(),
            problem,
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => TuiSettings::default(),
        Err(e) => {
            return Err(SettingsError {
                path,
                problem: format!("cannot read it: {e}"),
            })
        }
    };
    match std::env::var("KARAPACE_TUI_MOUSE").as_deref() {
        Ok("1") => Ok(TuiSettings { mouse: true }),
        Ok("0") => Ok(TuiSettings { mouse: false }),
        Ok(other) => Err(SettingsError {
            path: PathBuf::from("KARAPACE_TUI_MOUSE"),
            problem: format!("must be 1 or 0, not `{other}`"),
        }),
        Err(_) => Ok(from_file),
    }
}

/// The `[tui]` table of the config file's text; other tables are other modules' business.
pub fn parse(text: &str) -> Result<TuiSettings, String> {
    let table: toml::Table = text.parse().map_err(|e| format!("not valid TOML: {e}"))?;
    let Some(tui) = table.get("tui") else {
        return Ok(TuiSettings::default());
    };
    let tui = tui
        .as_table()
        .ok_or_else(|| "`tui` must be a table ([tui])".to_string())?;
    let mut settings = TuiSettings::default();
    for (key, value) in tui {
        match key.as_str() {
            "mouse" => {
                settings.mouse = value
                    .as_bool()
                    .ok_or_else(|| format!("[tui] mouse must be true or false, not {value}"))?;
            }
            other => return Err(format!("[tui] has no setting `{other}` (known: mouse)")),
        }
    }
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mouse_is_off_unless_asked_for() {
        assert_eq!(parse("").unwrap(), TuiSettings { mouse: false });
        assert_eq!(
            parse("[images]\nserver = \"http://127.0.0.1:1\"\n").unwrap(),
            TuiSettings { mouse: false }
        );
        assert_eq!(
            parse("[tui]\nmouse = true\n").unwrap(),
            TuiSettings { mouse: true }
        );
        assert_eq!(
            parse("[tui]\nmouse = false\n").unwrap(),
            TuiSettings { mouse: false }
        );
    }

    #[test]
    fn bad_settings_say_what_is_wrong() {
        let err = parse("[tui]\nmouse = \"yes\"\n").unwrap_err();
        assert!(err.contains("mouse must be true or false"), "{err}");
        let err = parse("[tui]\nmose = true\n").unwrap_err();
        assert!(err.contains("no setting `mose`"), "{err}");
        let err = parse("tui = 3\n").unwrap_err();
        assert!(err.contains("must be a table"), "{err}");
    }
}

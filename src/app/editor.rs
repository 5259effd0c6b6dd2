//! The manifest editor: a `karapace.toml` in a [`TextArea`] (tui-textarea), validated on every
//! change with the same parser `build` uses, saved atomically, and built in one key.
//!
//! Validation runs on the UI thread: [`Manifest::parse`] is pure (no file system, no network)
//! and takes microseconds for a manifest, so every keystroke gets a fresh verdict with the
//! line and column of the first problem. Non-ASCII text is handled by tui-textarea, which
//! edits by characters (the original's editor panicked on the first non-ASCII key).

use std::path::{Path, PathBuf};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use tui_textarea::{CursorMove, TextArea};

use crate::manifest::{Manifest, ManifestError, ParseEnv};

/// What the parser says about the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Validation {
    /// It parses; a one-line summary of what it asks for.
    Valid(String),
    /// The first problem, at a 1-based line and column when it points at one.
    Invalid {
        at: Option<(usize, usize)>,
        message: String,
    },
}

/// Where the text came from (shown in the title; decides what "save and build" does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A template not saved yet.
    Template(&'static str),
    /// A manifest file.
    File,
}

#[derive(Debug)]
pub struct Editor {
    /// The `karapace.toml` it saves to.
    pub path: PathBuf,
    pub origin: Origin,
    pub textarea: TextArea<'static>,
    pub validation: Validation,
    /// The text on disk, as [`Editor::text`] would write it; `None` while nothing is saved.
    saved: Option<String>,
}

impl Editor {
    /// An editor on `text`, which is what `path` holds (`saved`) or a template for it.
    pub fn new(path: PathBuf, text: &str, origin: Origin, env: &ParseEnv) -> Editor {
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        let saved = match origin {
            Origin::File => Some(join(&lines)),
            Origin::Template(_) => None,
        };
        let mut editor = Editor {
            path,
            origin,
            textarea: TextArea::new(lines),
            validation: Validation::Valid(String::new()),
            saved,
        };
        editor.validate(env);
        editor
    }

    /// The manifest at `path`.
    pub fn open(path: &Path, env: &ParseEnv) -> Result<Editor, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Ok(Editor::new(path.to_path_buf(), &text, Origin::File, env))
    }

    /// The text as it would be saved: lines joined, ending in a newline.
    pub fn text(&self) -> String {
        join(self.textarea.lines())
    }

    /// Changed since it was opened or saved (a template is unsaved until saved).
    pub fn dirty(&self) -> bool {
        self.saved.as_deref() != Some(self.text().as_str())
    }

    pub fn is_valid(&self) -> bool {
        matches!(self.validation, Validation::Valid(_))
    }

    /// Apply a key; re-validates when the text changed. Returns whether it changed.
    pub fn key(&mut self, key: KeyEvent, env: &ParseEnv) -> bool {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        // Ctrl-Home / Ctrl-End jump to the ends of the file, as in most editors (tui-textarea
        // binds its own Alt-< / Alt->).
        match key.code {
            KeyCode::Home if ctrl => {
                self.textarea.move_cursor(CursorMove::Top);
                self.textarea.move_cursor(CursorMove::Head);
                return false;
            }
            KeyCode::End if ctrl => {
                self.textarea.move_cursor(CursorMove::Bottom);
                self.textarea.move_cursor(CursorMove::End);
                return false;
            }
            _ => {}
        }
        let changed = self.textarea.input(key);
        if changed {
            self.validate(env);
        }
        changed
    }

    pub fn validate(&mut self, env: &ParseEnv) {
        self.validation = match Manifest::parse(&self.text(), &self.path, env) {
            Ok(manifest) => Validation::Valid(summary(&manifest)),
            Err(e) => Validation::Invalid {
                at: e.location(),
                message: problem(&e),
            },
        };
    }

    /// Move the cursor to the problem, if it points somewhere.
    pub fn goto_problem(&mut self) -> bool {
        let Validation::Invalid {
            at: Some((line, column)),
            ..
        } = self.validation
        else {
            return false;
        };
        let row = u16::try_from(line.saturating_sub(1)).unwrap_or(u16::MAX);
        let col = u16::try_from(column.saturating_sub(1)).unwrap_or(u16::MAX);
        self.textarea.move_cursor(CursorMove::Jump(row, col));
        true
    }

    /// Write the text to [`Editor::path`] atomically (creating its directory), so a crash
    /// leaves the old manifest or the new one, never half of it.
    pub fn save(&mut self) -> Result<(), String> {
        let text = self.text();
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        crate::fsutil::write_atomic(&self.path, text.as_bytes())
            .map_err(|e| format!("cannot write {}: {e}", self.path.display()))?;
        self.saved = Some(text);
        self.origin = Origin::File;
        Ok(())
    }
}

fn join(lines: &[String]) -> String {
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

/// `backend mock · image rolling · 2 packages · 1 mount`.
fn summary(m: &Manifest) -> String {
    let plural = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    format!(
        "backend {} · image {} · {} · {}",
        m.runtime.backend,
        m.base.image.display(),
        plural(m.packages.len(), "package"),
        plural(m.mounts.len(), "mount")
    )
}

/// The problem without the `path:line:column:` prefix (the editor shows the position itself).
fn problem(e: &ManifestError) -> String {
    match e {
        ManifestError::Syntax { field, message, .. } => match field {
            Some(field) => format!("{field}: {message}"),
            None => message.clone(),
        },
        ManifestError::Invalid { field, problem, .. } => {
            format!("{field}: {problem} (allowed: {})", problem.allowed())
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

    use super::*;

    fn env() -> ParseEnv {
        ParseEnv {
            home: "/home/user".into(),
        }
    }

    fn minimal(path: &Path) -> Editor {
        let t = crate::manifest::template("minimal").expect("template");
        Editor::new(
            path.to_path_buf(),
            t.text,
            Origin::Template("minimal"),
            &env(),
        )
    }

    fn press(editor: &mut Editor, code: KeyCode) -> bool {
        editor.key(KeyEvent::new(code, KeyModifiers::NONE), &env())
    }

    fn type_text(editor: &mut Editor, text: &str) {
        for c in text.chars() {
            let code = if c == '\n' {
                KeyCode::Enter
            } else {
                KeyCode::Char(c)
            };
            press(editor, code);
        }
    }

    fn to_end(editor: &mut Editor) {
        editor.key(KeyEvent::new(KeyCode::End, KeyModifiers::CONTROL), &env());
    }

    #[test]
    fn a_template_is_valid_and_unsaved() {
        let editor = minimal(Path::new("/home/user/demo/karapace.toml"));
        assert_eq!(
            editor.validation,
            Validation::Valid(
                "backend namespace · image rolling · 0 packages · 0 mounts".to_string()
            )
        );
        assert!(editor.dirty(), "nothing is on disk yet");
        assert!(editor.text().ends_with("backend = \"namespace\"\n"));
    }

    #[test]
    fn every_change_is_validated_with_its_line_and_column() {
        let mut editor = minimal(Path::new("/home/user/demo/karapace.toml"));
        to_end(&mut editor);
        type_text(&mut editor, "\noops");
        let Validation::Invalid { at, message } = &editor.validation else {
            panic!("{:?}", editor.validation);
        };
        assert_eq!(*at, Some((13, 5)));
        assert_eq!(message, "expected `.`, `=`");
        // Fixing it makes it valid again; the position of a rule violation comes along too.
        for _ in 0.."oops".len() {
            press(&mut editor, KeyCode::Backspace);
        }
        type_text(&mut editor, "[system]\npackages = [\"gcc;rm\"]");
        let Validation::Invalid { at, message } = &editor.validation else {
            panic!("{:?}", editor.validation);
        };
        assert_eq!(*at, Some((14, 13)));
        assert!(
            message.starts_with("system.packages[0]: \"gcc;rm\" contains `;`"),
            "{message}"
        );
        assert!(message.contains("(allowed: "), "{message}");
        assert!(editor.goto_problem());
        assert_eq!(editor.textarea.cursor(), (13, 12));
        to_end(&mut editor);
        for _ in 0..r#"packages = ["gcc;rm"]"#.chars().count() + "[system]\n".len() {
            press(&mut editor, KeyCode::Backspace);
        }
        assert!(editor.is_valid(), "{:?}", editor.validation);
        assert!(!editor.goto_problem());
    }

    #[test]
    fn non_ascii_text_is_typed_deleted_and_saved_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("new/karapace.toml");
        let mut editor = minimal(&path);
        to_end(&mut editor);
        type_text(&mut editor, "\n# Grüße 漢字 🦀");
        press(&mut editor, KeyCode::Backspace);
        press(&mut editor, KeyCode::Left);
        press(&mut editor, KeyCode::Backspace);
        assert!(
            editor.text().ends_with("# Grüße 漢 \n"),
            "{:?}",
            editor.text()
        );
        assert!(editor.is_valid(), "a comment: {:?}", editor.validation);
        editor.save().expect("save");
        let saved = std::fs::read_to_string(&path).expect("read");
        assert_eq!(saved, editor.text());
        assert!(!editor.dirty());
        assert_eq!(editor.origin, Origin::File);
        assert!(press(&mut editor, KeyCode::Char('ü')));
        assert!(editor.dirty());
    }

    #[test]
    fn an_opened_file_is_clean_until_changed_and_saving_replaces_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("karapace.toml");
        // No newline at the end: saving adds one, but opening does not count as a change.
        std::fs::write(&path, "manifest_version = 1\n[base]\nimage = \"rolling\"").expect("write");
        let mut editor = Editor::open(&path, &env()).expect("open");
        assert!(!editor.dirty());
        assert!(editor.is_valid());
        to_end(&mut editor);
        type_text(&mut editor, "\n[runtime]\nbackend = \"mock\"");
        assert!(editor.dirty());
        editor.save().expect("save");
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "manifest_version = 1\n[base]\nimage = \"rolling\"\n[runtime]\nbackend = \"mock\"\n"
        );
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(leftovers, ["karapace.toml"], "no temp file left behind");
        let missing = Editor::open(&dir.path().join("nope.toml"), &env()).unwrap_err();
        assert!(missing.contains("nope.toml"), "{missing}");
    }

    #[test]
    fn a_save_that_fails_says_where_and_keeps_the_changes() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A file where the directory should be.
        std::fs::write(dir.path().join("blocker"), "").expect("write");
        let mut editor = minimal(&dir.path().join("blocker/karapace.toml"));
        let error = editor.save().unwrap_err();
        assert!(error.contains("blocker"), "{error}");
        assert!(editor.dirty());
    }
}

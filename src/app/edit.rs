//! What the manifest editor's keys do, and how it is opened: `e` (the selection's manifest),
//! `E` (a template, for a new directory), `:edit`. Saving writes atomically; "save and build"
//! starts the same build job as the dashboard's `b` (its log streams into the log pane under
//! the editor), or asks first when an environment was built from this manifest, since that is
//! a rebuild that replaces it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::action::Action;
use super::editor::{Editor, Origin, Validation};
use super::input::LineInput;
use super::jobs::Job;
use super::popup::{Choice, Confirm, Message, Pending, Popup, Prompt, PromptKind};
use super::update::display;
use super::{App, Screen};
use crate::engine::EnvSummary;
use crate::events::Level;
use crate::manifest::templates::{template, TEMPLATES};
use crate::manifest::ParseEnv;

const MANIFEST: &str = "karapace.toml";

impl App {
    fn parse_env(&self) -> ParseEnv {
        ParseEnv {
            home: self.context.home.clone(),
        }
    }

    fn show_editor(&mut self, mut editor: Editor) {
        editor.textarea.set_line_number_style(self.theme.dim());
        editor
            .textarea
            .set_cursor_line_style(ratatui::style::Style::new());
        self.editor = Some(editor);
        self.editing = None;
        self.screen = Screen::Editor;
    }

    /// Open the manifest at `path` (a file, or a directory holding one).
    fn open_manifest(&mut self, path: &Path) -> Result<(), String> {
        let path = if path.is_dir() {
            path.join(MANIFEST)
        } else {
            path.to_path_buf()
        };
        let editor = Editor::open(&path, &self.parse_env())?;
        self.show_editor(editor);
        Ok(())
    }

    /// `e`: the manifest the environment was built from.
    pub(super) fn edit_env(&mut self, env: &EnvSummary) {
        let result = match &env.manifest {
            Some(path) => self.open_manifest(path),
            None => Err(format!(
                "{} records no manifest path; open one with :edit PATH",
                display(env)
            )),
        };
        if let Err(e) = result {
            self.popups
                .push(Popup::Message(Message::error("Cannot edit", e)));
        }
    }

    /// `E`: which directory, and which template.
    pub(super) fn prompt_new_in_editor(&mut self) {
        let start = format!("{}/", self.context.cwd.display());
        self.popups.push(Popup::Prompt(Prompt {
            kind: PromptKind::NewInEditor,
            title: "New manifest in the editor".into(),
            label: format!("Directory for {MANIFEST} (written when you save)"),
            input: LineInput::with_text(self.shorten(&start)),
            choice: Some(Choice {
                label: "Template",
                options: TEMPLATES.iter().map(|t| (t.name, t.description)).collect(),
                index: 0,
            }),
            error: None,
            candidates: Vec::new(),
        }));
    }

    /// The editor on `template`, to be saved as `dir/karapace.toml` (which must not exist).
    pub(super) fn new_in_editor(&mut self, dir: &str, name: &str) -> Result<(), String> {
        if dir.trim().is_empty() {
            return Err(format!("type the directory to write {MANIFEST} into"));
        }
        let Some(t) = template(name) else {
            let names: Vec<&str> = TEMPLATES.iter().map(|t| t.name).collect();
            return Err(format!(
                "unknown template `{name}`; available: {}",
                names.join(", ")
            ));
        };
        let path = self.expand(dir).join(MANIFEST);
        if path.exists() {
            return Err(format!(
                "{} already exists; e or :edit opens it",
                path.display()
            ));
        }
        let editor = Editor::new(path, t.text, Origin::Template(t.name), &self.parse_env());
        self.show_editor(editor);
        Ok(())
    }

    /// `:edit [--template T] [PATH|ENV]`.
    pub(super) fn edit_command(
        &mut self,
        template: Option<String>,
        target: Option<String>,
    ) -> Result<(), String> {
        match (template, target) {
            (Some(t), Some(dir)) => self.new_in_editor(&dir, &t),
            (None, Some(target)) => {
                let path = self.expand(&target);
                if path.exists() {
                    return self.open_manifest(&path);
                }
                match self.envs.find(&target).and_then(|e| e.manifest.clone()) {
                    Some(manifest) => self.open_manifest(&manifest),
                    None => Err(format!(
                        "{} does not exist and names no environment with a manifest; \
                         :edit --template minimal DIR starts a new one",
                        path.display()
                    )),
                }
            }
            (None, None) => match self.envs.selected().cloned() {
                Some(env) => match env.manifest {
                    Some(path) => self.open_manifest(&path),
                    None => Err(format!("{} records no manifest path", display(&env))),
                },
                None => Err("no environment selected: edit PATH".into()),
            },
            (Some(_), None) => Err("usage: edit --template T DIR".into()),
        }
    }

    pub(super) fn apply_editor(&mut self, action: Action) {
        let env = self.parse_env();
        let shown = self
            .editor
            .as_ref()
            .map(|e| self.shorten(&e.path.display().to_string()));
        let (Some(editor), Some(shown)) = (self.editor.as_mut(), shown) else {
            self.screen = Screen::Dashboard;
            return;
        };
        match action {
            Action::EditorKey(key) => {
                editor.key(key, &env);
            }
            Action::GotoProblem => {
                let moved = editor.goto_problem();
                if !moved {
                    self.notice = Some("no problem to go to".into());
                }
            }
            Action::Save => self.save_editor(false),
            Action::SaveAndBuild => self.save_editor(true),
            Action::Help => self.popups.push(Popup::Help { scroll: 0 }),
            Action::Back if editor.dirty() => {
                let body =
                    format!("{shown} has unsaved changes; leaving drops them (Ctrl-s saves).");
                self.popups.push(Popup::Confirm(Confirm::new(
                    "Leave the editor?",
                    body,
                    "discard",
                    Pending::LeaveEditor,
                )));
            }
            Action::Back => self.close_editor(),
            Action::Quit if editor.dirty() => {
                let body = format!("{shown} has unsaved changes; quitting drops them.");
                self.popups.push(Popup::Confirm(Confirm::new(
                    "Quit without saving?",
                    body,
                    "quit",
                    Pending::Quit,
                )));
            }
            Action::Quit => self.quit_or_ask(),
            _ => {}
        }
    }

    pub(super) fn close_editor(&mut self) {
        self.editor = None;
        self.screen = Screen::Dashboard;
        self.request_details();
    }

    /// Save; then, for "save and build", build it — or, when an environment was built from
    /// this manifest, ask to rebuild it.
    fn save_editor(&mut self, build: bool) {
        let Some(path) = self.editor.as_ref().map(|e| e.path.clone()) else {
            return;
        };
        let shown = self.shorten(&path.display().to_string());
        let Some(editor) = self.editor.as_mut() else {
            return;
        };
        if let (true, Validation::Invalid { at, .. }) = (build, &editor.validation) {
            let place = at.map_or_else(String::new, |(line, _)| format!(" on line {line}"));
            self.notice = Some(format!(
                "not saved or built: fix the problem{place} first (Ctrl-g goes there)"
            ));
            return;
        }
        let source: Option<Arc<str>> = Some(Arc::from("edit"));
        if let Err(e) = editor.save() {
            self.log.push(Level::Warn, source, format!("error: {e}"));
            self.popups
                .push(Popup::Message(Message::error("Cannot save", e)));
            return;
        }
        let valid = editor.is_valid();
        self.log.push(Level::Info, source, format!("saved {shown}"));
        self.notice = Some(if valid {
            format!("saved {shown}")
        } else {
            format!("saved {shown} (it still has a problem)")
        });
        if build {
            self.build_saved(path);
        }
    }

    fn build_saved(&mut self, manifest: PathBuf) {
        let built_from = self
            .envs
            .rows()
            .iter()
            .find(|e| e.manifest.as_deref() == Some(manifest.as_path()))
            .map(display);
        match built_from {
            Some(name) => self.confirm_rebuild(Some(manifest), &name),
            None => {
                self.start(Job::Build {
                    manifest,
                    name: None,
                });
            }
        }
    }
}

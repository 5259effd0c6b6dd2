//! Questions, prompts and palette commands: what opens them, and what their answers do.

use std::path::{Path, PathBuf};

use super::action::Action;
use super::input::LineInput;
use super::jobs::Job;
use super::palette::Command;
use super::popup::{Choice, Confirm, Message, Pending, Popup, Prompt, PromptKind};
use super::update::{display, target};
use super::App;
use crate::engine::EnvSummary;
use crate::manifest::templates::TEMPLATES;

impl App {
    /// Act on a prompt's answer, or say why it cannot be used.
    pub(super) fn answer(&mut self, prompt: &Prompt) -> Result<(), String> {
        let text = prompt.input.text().trim();
        match &prompt.kind {
            PromptKind::Build => {
                let path = self.existing_path(text)?;
                self.start(Job::Build {
                    manifest: path,
                    name: None,
                });
            }
            PromptKind::New => {
                if text.is_empty() {
                    return Err("type the directory to write karapace.toml into".into());
                }
                let dir = self.expand(text);
                if dir.join("karapace.toml").exists() {
                    return Err(format!(
                        "{} already exists; build it with b instead",
                        dir.join("karapace.toml").display()
                    ));
                }
                let template = prompt.choice.as_ref().map_or("minimal", Choice::value);
                self.start(Job::New {
                    dir,
                    template: template.to_string(),
                });
            }
            PromptKind::NewInEditor => {
                let template = prompt.choice.as_ref().map_or("minimal", Choice::value);
                self.new_in_editor(text, template)?;
            }
            PromptKind::Rename { env } => {
                crate::engine::validate_name(text).map_err(|e| e.to_string())?;
                self.start(Job::Rename {
                    env: env.clone(),
                    name: text.to_string(),
                });
            }
        }
        Ok(())
    }

    /// Run a palette command; an error keeps the palette open with the message.
    pub(super) fn command(&mut self, command: Command) -> Result<(), String> {
        match command {
            Command::Build { path, name } => {
                let manifest = self.existing_path(&path)?;
                self.start(Job::Build { manifest, name });
            }
            Command::Rebuild { path: Some(path) } => {
                let manifest = self.existing_path(&path)?;
                let shown = path.clone();
                self.confirm_rebuild(Some(manifest), &shown);
            }
            Command::Rebuild { path: None } => {
                let env = self.selected_or("rebuild")?;
                self.confirm_rebuild(env.manifest.clone(), &display(&env));
            }
            Command::New { dir, template } => {
                if crate::manifest::templates::template(&template).is_none() {
                    let names: Vec<&str> = TEMPLATES.iter().map(|t| t.name).collect();
                    return Err(format!(
                        "unknown template `{template}`; available: {}",
                        names.join(", ")
                    ));
                }
                let dir = self.expand(&dir);
                self.start(Job::New { dir, template });
            }
            Command::Stop(env) => {
                let (target, shown, sessions) = self.env_arg(env, "stop")?;
                self.confirm_stop(target, &shown, sessions.max(1));
            }
            Command::Destroy { env, force } => {
                let (target, shown, sessions) = self.env_arg(env, "destroy")?;
                self.confirm_destroy(target, &shown, sessions, force);
            }
            Command::Freeze(env) => self.env_job(env, "freeze", Job::Freeze)?,
            Command::Unfreeze(env) => self.env_job(env, "unfreeze", Job::Unfreeze)?,
            Command::Archive(env) => self.env_job(env, "archive", Job::Archive)?,
            Command::Unarchive(env) => self.env_job(env, "unarchive", Job::Unarchive)?,
            Command::Rename { env, name } => {
                crate::engine::validate_name(&name).map_err(|e| e.to_string())?;
                let (target, _, _) = self.env_arg(env, "rename")?;
                self.start(Job::Rename { env: target, name });
            }
            Command::Export { env, app, bin } => {
                let (target, _, _) = self.env_arg(env, "export")?;
                self.start(Job::Export {
                    env: target,
                    app,
                    bin,
                });
            }
            Command::Unexport { env, app, bin } => {
                let (target, _, _) = self.env_arg(env, "unexport")?;
                self.start(Job::Unexport {
                    env: target,
                    app,
                    bin,
                });
            }
            Command::Gc { dry_run: true } => {
                self.start(Job::Gc { dry_run: true });
            }
            Command::Gc { dry_run: false } => self.confirm_gc(),
            Command::Verify => {
                self.start(Job::Verify);
            }
            Command::Doctor => self.open_prereq(),
            Command::Edit { template, target } => self.edit_command(template, target)?,
            Command::Refresh => self.apply_pane(Action::Refresh),
            Command::Help => self.popups.push(Popup::Help { scroll: 0 }),
            Command::Quit => self.quit_or_ask(),
        }
        Ok(())
    }

    fn env_job(
        &mut self,
        env: Option<String>,
        verb: &str,
        job: fn(String) -> Job,
    ) -> Result<(), String> {
        let (target, _, _) = self.env_arg(env, verb)?;
        self.start(job(target));
        Ok(())
    }

    /// The environment a command names, or the selected one: (engine target, name to show,
    /// running sessions as last listed).
    fn env_arg(&self, env: Option<String>, verb: &str) -> Result<(String, String, usize), String> {
        match env {
            Some(query) => {
                let sessions = self.envs.sessions_of(&query);
                Ok((query.clone(), query, sessions))
            }
            None => {
                let env = self.selected_or(verb)?;
                Ok((target(&env), display(&env), env.sessions))
            }
        }
    }

    fn selected_or(&self, verb: &str) -> Result<EnvSummary, String> {
        self.envs
            .selected()
            .cloned()
            .ok_or_else(|| format!("no environment selected: {verb} NAME"))
    }

    pub(super) fn quit_or_ask(&mut self) {
        let busy: Vec<String> = self.busy_jobs().map(|j| j.label.to_string()).collect();
        let shells = self.running_shell_titles();
        if busy.is_empty() && shells.is_empty() {
            self.quit = true;
            return;
        }
        if matches!(self.popups.last(), Some(Popup::Confirm(c)) if c.then == Pending::Quit) {
            // Asked already: a second Ctrl-C (or q) means it.
            self.quit = true;
            return;
        }
        let mut body = Vec::new();
        if !busy.is_empty() {
            body.push(format!(
                "Still running: {}.\nQuitting stops it now; the store rolls back what it \
                 did not finish the next time it is used.",
                busy.join(", ")
            ));
        }
        if !shells.is_empty() {
            body.push(format!(
                "Open: {}.\nQuitting ends them, as closing their terminal would.",
                shells.join(", ")
            ));
        }
        self.popups.push(Popup::Confirm(Confirm::new(
            "Quit?",
            body.join("\n"),
            "quit",
            Pending::Quit,
        )));
    }

    pub(super) fn prompt_build(&mut self) {
        let start = if self.context.cwd.join("karapace.toml").is_file() {
            self.context.cwd.display().to_string()
        } else {
            format!("{}/", self.context.cwd.display())
        };
        self.popups.push(Popup::Prompt(Prompt {
            kind: PromptKind::Build,
            title: "Build an environment".into(),
            label: "Manifest (a karapace.toml or its directory)".into(),
            input: LineInput::with_text(self.shorten(&start)),
            choice: None,
            error: None,
            candidates: Vec::new(),
        }));
    }

    pub(super) fn prompt_new(&mut self) {
        let start = format!("{}/", self.context.cwd.display());
        self.popups.push(Popup::Prompt(Prompt {
            kind: PromptKind::New,
            title: "New environment from a template".into(),
            label: "Directory for karapace.toml".into(),
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

    pub(super) fn confirm_rebuild(&mut self, manifest: Option<PathBuf>, shown: &str) {
        let Some(manifest) = manifest else {
            self.popups.push(Popup::Message(Message::error(
                "Cannot rebuild",
                format!("{shown} records no manifest path; build its manifest with b instead."),
            )));
            return;
        };
        self.popups.push(Popup::Confirm(Confirm::new(
            format!("Rebuild {shown}?"),
            format!(
                "A clean build from {} replaces it: changes made inside it are lost.",
                manifest.display()
            ),
            "rebuild",
            Pending::Job(Job::Rebuild { manifest }),
        )));
    }

    pub(super) fn confirm_stop(&mut self, target: String, shown: &str, sessions: usize) {
        if sessions == 0 {
            self.notice = Some(format!("nothing is running in {shown}"));
            return;
        }
        self.popups.push(Popup::Confirm(Confirm::new(
            format!("Stop {shown}?"),
            format!("Ends every program running in it ({sessions} session(s))."),
            "stop",
            Pending::Job(Job::Stop(target)),
        )));
    }

    pub(super) fn confirm_destroy(
        &mut self,
        target: String,
        shown: &str,
        sessions: usize,
        force: bool,
    ) {
        let force = force || sessions > 0;
        let mut body = format!("{shown} and everything changed inside it are removed for good.");
        if force {
            body.push_str(&format!(
                "\nIt has {sessions} running session(s): they are stopped first (--force)."
            ));
        }
        self.popups.push(Popup::Confirm(Confirm::new(
            format!("Destroy {shown}?"),
            body,
            "destroy",
            Pending::Job(Job::Destroy { env: target, force }),
        )));
    }

    pub(super) fn confirm_gc(&mut self) {
        self.popups.push(Popup::Confirm(Confirm::new(
            "Collect garbage?",
            "Removes store objects and cached images that no environment uses \
             (`:gc --dry-run` lists them first).",
            "collect",
            Pending::Job(Job::Gc { dry_run: false }),
        )));
    }

    /// `~/x` and relative paths, as typed in prompts, made absolute.
    pub(crate) fn expand(&self, text: &str) -> PathBuf {
        let text = text.trim();
        let path = match text.strip_prefix("~") {
            Some("") => self.context.home.clone(),
            Some(rest) if rest.starts_with('/') => self.context.home.join(&rest[1..]),
            _ => PathBuf::from(text),
        };
        if path.is_absolute() {
            path
        } else {
            self.context.cwd.join(path)
        }
    }

    /// A path under the home directory written with `~`, as people type it.
    pub(crate) fn shorten(&self, path: &str) -> String {
        match Path::new(path).strip_prefix(&self.context.home) {
            Ok(rest) if path.ends_with('/') => format!("~/{}/", rest.display()).replace("//", "/"),
            Ok(rest) => format!("~/{}", rest.display()),
            Err(_) => path.to_string(),
        }
    }

    fn existing_path(&self, text: &str) -> Result<PathBuf, String> {
        if text.trim().is_empty() {
            return Err("type the path of a karapace.toml or of its directory".into());
        }
        let path = self.expand(text);
        if !path.exists() {
            return Err(format!("{} does not exist", path.display()));
        }
        if path.is_dir() && !path.join("karapace.toml").is_file() {
            return Err(format!(
                "{} has no karapace.toml; n writes one from a template",
                path.display()
            ));
        }
        Ok(path)
    }
}

//! Applying actions and job results to the state. Nothing here draws or blocks: slow work is
//! queued as jobs for the loop to start.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::action::Action;
use super::input::LineInput;
use super::jobs::{Job, JobId, JobOutput};
use super::keymap::Mode;
use super::palette::{self, Command};
use super::popup::{Choice, Confirm, Message, Pending, Popup, Prompt, PromptKind};
use super::{App, Details, Editing, Focus, Screen};
use crate::engine::{EnvSummary, StateView};
use crate::events::Level;
use crate::manifest::templates::TEMPLATES;

impl App {
    pub(crate) fn apply(&mut self, action: Action) {
        match self.mode() {
            Mode::Filter | Mode::Search => self.apply_inline_input(action),
            Mode::Prompt | Mode::Palette => self.apply_popup_input(action),
            Mode::Confirm => self.apply_confirm(action),
            Mode::Help | Mode::Message => self.apply_reader(action),
            Mode::List | Mode::Log => self.apply_pane(action),
        }
    }

    fn apply_pane(&mut self, action: Action) {
        match action {
            Action::Quit => self.quit_or_ask(),
            Action::Back => self.back_in_pane(),
            Action::Help => self.popups.push(Popup::Help { scroll: 0 }),
            Action::Palette => self.popups.push(Popup::Palette {
                input: LineInput::default(),
                error: None,
            }),
            Action::Refresh => {
                self.details.clear();
                self.request_list();
                self.start(Job::Backends);
            }
            Action::FocusNext if self.screen == Screen::Dashboard => {
                self.focus = match self.focus {
                    Focus::List => Focus::Log,
                    Focus::Log => Focus::List,
                };
            }
            Action::ToggleLogScreen => {
                self.screen = match self.screen {
                    Screen::Dashboard => Screen::Log,
                    Screen::Log => Screen::Dashboard,
                };
                if self.screen == Screen::Log {
                    self.focus = Focus::Log;
                }
            }
            Action::Up
            | Action::Down
            | Action::Top
            | Action::Bottom
            | Action::HalfPageDown
            | Action::HalfPageUp
            | Action::PageDown
            | Action::PageUp => self.move_in_pane(action),
            _ if self.mode() == Mode::Log => self.apply_log(action),
            _ => self.apply_list(action),
        }
    }

    fn back_in_pane(&mut self) {
        if self.screen == Screen::Log {
            self.screen = Screen::Dashboard;
        } else if self.focus == Focus::Log {
            self.focus = Focus::List;
        } else if !self.envs.filter().is_empty() {
            self.envs.set_filter("");
            self.notice = Some("filter cleared".into());
            self.request_details();
        }
    }

    fn move_in_pane(&mut self, action: Action) {
        if self.mode() == Mode::Log {
            let page = self.log.height() as i64;
            match action {
                Action::Top => self.log.to_top(),
                Action::Bottom => self.log.to_bottom(),
                other => self.log.scroll(step(other, page)),
            }
            return;
        }
        let page = self.envs.height() as i64;
        match action {
            Action::Top => self.envs.to_first(),
            Action::Bottom => self.envs.to_last(),
            other => self.envs.move_by(step(other, page)),
        }
        self.request_details();
    }

    fn apply_log(&mut self, action: Action) {
        match action {
            Action::ToggleFollow => self.log.toggle_follow(),
            Action::Search => {
                let current = self.log.search().unwrap_or("").to_string();
                self.editing = Some(Editing::Search(LineInput::with_text(current)));
            }
            Action::SearchNext | Action::SearchPrev => {
                if self.log.search().is_none() {
                    self.notice = Some("no search yet: press / to search the log".into());
                } else if !self.log.find(action == Action::SearchNext) {
                    self.notice = Some("no match".into());
                }
            }
            _ => {}
        }
    }

    fn apply_list(&mut self, action: Action) {
        match action {
            Action::Filter => {
                let current = self.envs.filter().to_string();
                self.editing = Some(Editing::Filter(LineInput::with_text(current)));
            }
            Action::SortNext => self.envs.cycle_sort(),
            Action::SortReverse => self.envs.reverse_sort(),
            Action::Build => self.prompt_build(),
            Action::New => self.prompt_new(),
            Action::Gc => self.confirm_gc(),
            Action::Verify => {
                self.start(Job::Verify);
            }
            _ => {
                if let Some(env) = self.envs.selected().cloned() {
                    self.apply_env(action, &env);
                }
            }
        }
    }

    /// Actions on the selected environment.
    fn apply_env(&mut self, action: Action, env: &EnvSummary) {
        let target = target(env);
        match action {
            Action::Rebuild => self.confirm_rebuild(env.manifest.clone(), &display(env)),
            Action::Stop => self.confirm_stop(target, &display(env), env.sessions),
            Action::Destroy => self.confirm_destroy(target, &display(env), env.sessions, false),
            Action::ToggleFreeze => {
                self.start(if env.state == StateView::Frozen {
                    Job::Unfreeze(target)
                } else {
                    Job::Freeze(target)
                });
            }
            Action::ToggleArchive => {
                self.start(if env.state == StateView::Archived {
                    Job::Unarchive(target)
                } else {
                    Job::Archive(target)
                });
            }
            Action::Rename => {
                let current = env.name.clone().unwrap_or_default();
                self.popups.push(Popup::Prompt(Prompt {
                    kind: PromptKind::Rename { env: target },
                    title: format!("Rename {}", display(env)),
                    label: "New name".into(),
                    input: LineInput::with_text(current),
                    choice: None,
                    error: None,
                    candidates: Vec::new(),
                }));
            }
            _ => {}
        }
    }

    /// Scrolling in the help overlay and in reports.
    fn apply_reader(&mut self, action: Action) {
        if action == Action::Quit {
            return self.quit_or_ask();
        }
        if action == Action::Back {
            self.popups.pop();
            return;
        }
        let scroll = match self.popups.last_mut() {
            Some(Popup::Help { scroll }) => scroll,
            Some(Popup::Message(m)) => &mut m.scroll,
            _ => return,
        };
        let page = i64::from(self.area.height / 2).max(1);
        *scroll = match action {
            Action::Top => 0,
            // Clamped when drawn: the popup knows how long its text is.
            Action::Bottom => u16::MAX,
            other => (i64::from(*scroll) + step(other, page)).clamp(0, i64::from(u16::MAX)) as u16,
        };
    }

    fn apply_confirm(&mut self, action: Action) {
        let Some(Popup::Confirm(confirm)) = self.popups.last_mut() else {
            return;
        };
        match action {
            Action::SwitchButton => confirm.yes_selected = !confirm.yes_selected,
            Action::Submit if !confirm.yes_selected => {
                self.popups.pop();
            }
            Action::Yes | Action::Submit | Action::Quit
                if matches!(confirm.then, Pending::Quit) =>
            {
                self.popups.pop();
                self.quit = true;
            }
            Action::Yes | Action::Submit => {
                let then = confirm.then.clone();
                self.popups.pop();
                if let Pending::Job(job) = then {
                    self.start(job);
                }
            }
            Action::No | Action::Back => {
                self.popups.pop();
            }
            Action::Quit => self.quit_or_ask(),
            _ => {}
        }
    }

    /// Filter and search: edited in place, applied on every keystroke.
    fn apply_inline_input(&mut self, action: Action) {
        let Some(editing) = self.editing.as_mut() else {
            return;
        };
        match action {
            Action::Quit => self.quit_or_ask(),
            Action::Submit => {
                if let Editing::Search(input) = editing {
                    if !input.text().is_empty() && self.log.current_match().is_none() {
                        self.notice = Some(format!("no match for `{}`", input.text()));
                    }
                }
                self.editing = None;
            }
            Action::Back => {
                match editing {
                    Editing::Filter(_) => self.envs.set_filter(""),
                    Editing::Search(_) => self.log.set_search(""),
                }
                self.editing = None;
                self.request_details();
            }
            edit => match editing {
                Editing::Filter(input) => {
                    if input.edit(edit) {
                        let text = input.text().to_string();
                        self.envs.set_filter(&text);
                        self.request_details();
                    }
                }
                Editing::Search(input) => {
                    if input.edit(edit) {
                        let text = input.text().to_string();
                        self.log.set_search(&text);
                        self.log.find(true);
                    }
                }
            },
        }
    }

    /// Prompts and the palette.
    fn apply_popup_input(&mut self, action: Action) {
        match action {
            Action::Quit => self.quit_or_ask(),
            Action::Back => {
                self.popups.pop();
            }
            Action::Submit => self.submit_popup(),
            Action::Complete => self.complete(),
            Action::ChoiceNext | Action::ChoicePrev => {
                if let Some(Popup::Prompt(Prompt {
                    choice: Some(choice),
                    ..
                })) = self.popups.last_mut()
                {
                    choice.step(action == Action::ChoiceNext);
                }
            }
            edit => {
                if let Some(popup) = self.popups.last_mut() {
                    popup.edit(edit);
                }
            }
        }
    }

    fn submit_popup(&mut self) {
        match self.popups.pop() {
            Some(Popup::Prompt(prompt)) => {
                if let Err(error) = self.answer(&prompt) {
                    self.popups.push(Popup::Prompt(Prompt {
                        error: Some(error),
                        ..prompt
                    }));
                }
            }
            Some(Popup::Palette { input, .. }) => {
                let result = palette::parse(input.text()).and_then(|c| self.command(c));
                if let Err(error) = result {
                    self.popups.push(Popup::Palette {
                        input,
                        error: Some(error),
                    });
                }
            }
            Some(other) => self.popups.push(other),
            None => {}
        }
    }

    /// Act on a prompt's answer, or say why it cannot be used.
    fn answer(&mut self, prompt: &Prompt) -> Result<(), String> {
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
    fn command(&mut self, command: Command) -> Result<(), String> {
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
            Command::Gc { dry_run: true } => {
                self.start(Job::Gc { dry_run: true });
            }
            Command::Gc { dry_run: false } => self.confirm_gc(),
            Command::Verify => {
                self.start(Job::Verify);
            }
            Command::Doctor => match &self.backends {
                Some(backends) => {
                    let text = crate::cli::output_text::doctor(backends);
                    self.popups
                        .push(Popup::Message(Message::info("Backends", text)));
                }
                None => self.doctor_wanted = true,
            },
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

    fn quit_or_ask(&mut self) {
        let busy: Vec<String> = self.busy_jobs().map(|j| j.label.to_string()).collect();
        if busy.is_empty() {
            self.quit = true;
            return;
        }
        if matches!(self.popups.last(), Some(Popup::Confirm(c)) if c.then == Pending::Quit) {
            // Asked already: a second Ctrl-C (or q) means it.
            self.quit = true;
            return;
        }
        self.popups.push(Popup::Confirm(Confirm::new(
            "Quit?",
            format!(
                "Still running: {}.\nQuitting stops it now; the store rolls back what it \
                 did not finish the next time it is used.",
                busy.join(", ")
            ),
            "quit",
            Pending::Quit,
        )));
    }

    fn prompt_build(&mut self) {
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

    fn prompt_new(&mut self) {
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

    fn confirm_rebuild(&mut self, manifest: Option<PathBuf>, shown: &str) {
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

    fn confirm_stop(&mut self, target: String, shown: &str, sessions: usize) {
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

    fn confirm_destroy(&mut self, target: String, shown: &str, sessions: usize, force: bool) {
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

    fn confirm_gc(&mut self) {
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

    pub(crate) fn job_done(&mut self, id: JobId, result: Result<JobOutput, String>) {
        let Some(running) = self.jobs.remove(&id) else {
            return;
        };
        let label = running.label;
        match (&running.job, result) {
            (Job::List, result) => {
                self.list_running = false;
                match result {
                    Ok(JobOutput::List { envs, broken }) => {
                        for b in &broken {
                            self.log.push(
                                Level::Warn,
                                Some(Arc::clone(&label)),
                                format!("environment {} is unreadable: {}", b.id.short(), b.error),
                            );
                        }
                        self.envs.set_rows(envs, broken);
                    }
                    Ok(_) => {}
                    Err(e) => self.report_error(&label, e),
                }
                if std::mem::take(&mut self.list_again) {
                    self.request_list();
                }
            }
            (Job::Inspect(env), result) => {
                self.inspecting = None;
                let details = match result {
                    Ok(JobOutput::Details(d)) => Details::Ready(d),
                    Ok(_) => Details::Failed("unexpected answer".into()),
                    Err(e) => Details::Failed(e),
                };
                self.details.insert(env.clone(), details);
            }
            (job, Err(e)) => {
                let changes = job.changes_envs();
                self.report_error(&label, e);
                if changes {
                    self.details.clear();
                    self.request_list();
                }
            }
            (job, Ok(output)) => {
                let changes = job.changes_envs();
                self.job_output(&label, output);
                if changes {
                    self.details.clear();
                    self.request_list();
                }
            }
        }
        self.request_details();
    }

    fn job_output(&mut self, label: &Arc<str>, output: JobOutput) {
        let source = Some(Arc::clone(label));
        match output {
            JobOutput::Backends(backends) => {
                if std::mem::take(&mut self.doctor_wanted) {
                    let text = crate::cli::output_text::doctor(&backends);
                    self.popups
                        .push(Popup::Message(Message::info("Backends", text)));
                }
                self.backends = Some(backends);
            }
            JobOutput::Built { outcome, .. } => {
                let env = &outcome.env;
                let verb = if outcome.built { "built" } else { "up to date" };
                let name = env.name.as_deref().unwrap_or("-");
                self.log.push(
                    Level::Info,
                    source,
                    format!(
                        "{verb}: {} {name} (lock {})",
                        env.short_id,
                        outcome.lock_path.display()
                    ),
                );
                self.envs.want(env.id.clone());
            }
            JobOutput::Changed(text) => self.log.push(Level::Info, source, text),
            JobOutput::Gc(report) => {
                let text = crate::cli::output_text::gc(&report, report.dry_run);
                let last = text.lines().last().unwrap_or("").to_string();
                self.log.push(Level::Info, source, last);
                let title = if report.dry_run {
                    "gc --dry-run"
                } else {
                    "Garbage collected"
                };
                self.popups.push(Popup::Message(Message::info(title, text)));
            }
            JobOutput::Verify(report) => {
                let text = crate::cli::output_text::verify(&report);
                let last = text.lines().last().unwrap_or("").to_string();
                let ok = report.problems.is_empty();
                self.log
                    .push(if ok { Level::Info } else { Level::Warn }, source, last);
                let message = if ok {
                    Message::info("Store verified", text)
                } else {
                    Message::error("Store problems", text)
                };
                self.popups.push(Popup::Message(message));
            }
            JobOutput::List { .. } | JobOutput::Details(_) => {}
        }
    }

    /// A failed job: a line in the log and a popup, never a crash.
    fn report_error(&mut self, label: &Arc<str>, error: String) {
        for line in error.lines() {
            self.log.push(
                Level::Warn,
                Some(Arc::clone(label)),
                format!("error: {line}"),
            );
        }
        self.popups.push(Popup::Message(Message::error(
            format!("{label} failed"),
            error,
        )));
    }
}

/// Lines to move for a movement action, given a page of `page` lines.
fn step(action: Action, page: i64) -> i64 {
    match action {
        Action::Up => -1,
        Action::Down => 1,
        Action::HalfPageDown => (page / 2).max(1),
        Action::HalfPageUp => -(page / 2).max(1),
        Action::PageDown => page.max(1),
        Action::PageUp => -page.max(1),
        _ => 0,
    }
}

/// How jobs name an environment: its name (unique), else its full id.
fn target(env: &EnvSummary) -> String {
    env.name.clone().unwrap_or_else(|| env.id.to_string())
}

/// How messages name it.
fn display(env: &EnvSummary) -> String {
    env.name.clone().unwrap_or_else(|| env.short_id.clone())
}

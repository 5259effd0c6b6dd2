//! Applying keys' actions to the state: moving, editing inputs, opening popups. Nothing here
//! draws or blocks: slow work is queued as jobs for the loop to start (`dialogs.rs` holds the
//! questions and prompts and what their answers do, `results.rs` what job results do).

use super::action::Action;
use super::input::LineInput;
use super::jobs::Job;
use super::keymap::Mode;
use super::palette;
use super::popup::{Pending, Popup, Prompt, PromptKind};
use super::{App, Editing, Focus, Screen};
use crate::engine::{EnvSummary, StateView};

impl App {
    pub(crate) fn apply(&mut self, action: Action) {
        match self.mode() {
            Mode::Filter | Mode::Search => self.apply_inline_input(action),
            Mode::Prompt | Mode::Palette => self.apply_popup_input(action),
            Mode::Confirm => self.apply_confirm(action),
            Mode::Help | Mode::Message => self.apply_reader(action),
            Mode::List | Mode::Log => self.apply_pane(action),
            Mode::Sessions => self.apply_sessions(action),
            Mode::Prereq => self.apply_prereq(action),
            Mode::Editor => self.apply_editor(action),
        }
    }

    pub(super) fn apply_pane(&mut self, action: Action) {
        match action {
            Action::Quit => self.quit_or_ask(),
            Action::Back => self.back_in_pane(),
            Action::Help => self.popups.push(Popup::Help { scroll: 0 }),
            Action::Sessions => self.open_sessions(),
            Action::Palette => self.popups.push(Popup::Palette {
                input: LineInput::default(),
                error: None,
            }),
            Action::Refresh => {
                self.details.clear();
                self.sizes.clear();
                self.request_list();
                self.request_doctor();
            }
            Action::Prerequisites => self.open_prereq(),
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
                    other => other,
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
            Action::CancelBuilds => {
                if self.cancel_builds() == 0 {
                    self.notice = Some("no build is running".into());
                }
            }
            Action::NewInEditor => self.prompt_new_in_editor(),
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
            Action::Shell => self.open_shell(env),
            Action::Attach => self.attach_to_env(env),
            Action::Rebuild => self.confirm_rebuild(env.manifest.clone(), &display(env)),
            Action::EditManifest => self.edit_env(env),
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
            Action::Yes | Action::Submit if matches!(confirm.then, Pending::LeaveEditor) => {
                self.popups.pop();
                self.close_editor();
            }
            Action::Yes | Action::Submit => {
                let then = confirm.then.clone();
                self.popups.pop();
                match then {
                    Pending::Job(job) => {
                        self.start(job);
                    }
                    Pending::EndShell(id) => self.hang_up(id),
                    // Handled above.
                    Pending::Quit | Pending::LeaveEditor => {}
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
pub(super) fn target(env: &EnvSummary) -> String {
    env.name.clone().unwrap_or_else(|| env.id.to_string())
}

/// How messages name it.
pub(super) fn display(env: &EnvSummary) -> String {
    env.name.clone().unwrap_or_else(|| env.short_id.clone())
}

//! Popups: a stack drawn over the screen; the top one gets the keys and Esc pops it.

use super::action::Action;
use super::input::LineInput;
use super::jobs::Job;
use super::keymap::Mode;
use super::shells::SessionId;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Popup {
    /// The key help, scrolled by `scroll` lines.
    Help {
        scroll: u16,
    },
    Confirm(Confirm),
    Prompt(Prompt),
    /// The `:` palette; `error` is the last parse error.
    Palette {
        input: LineInput,
        error: Option<String>,
    },
    Message(Message),
    /// The shells, `selected` highlighted (an index into `App::shells`).
    Sessions {
        selected: usize,
    },
}

impl Popup {
    /// Apply a text edit to the popup's input, if it has one; a change clears the error and
    /// the completions shown for the old text.
    pub fn edit(&mut self, action: Action) {
        match self {
            Popup::Prompt(prompt) => {
                let changed = prompt.input.edit(action);
                if changed {
                    prompt.error = None;
                    prompt.candidates.clear();
                }
            }
            Popup::Palette { input, error } => {
                let changed = input.edit(action);
                if changed {
                    *error = None;
                }
            }
            _ => {}
        }
    }

    pub fn mode(&self) -> Mode {
        match self {
            Popup::Help { .. } => Mode::Help,
            Popup::Confirm(_) => Mode::Confirm,
            Popup::Prompt(_) => Mode::Prompt,
            Popup::Palette { .. } => Mode::Palette,
            Popup::Message(_) => Mode::Message,
            Popup::Sessions { .. } => Mode::Sessions,
        }
    }
}

/// What a confirmed question does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pending {
    Job(Job),
    Quit,
    /// Hang up a running shell.
    EndShell(SessionId),
    /// Close the manifest editor, dropping its unsaved changes.
    LeaveEditor,
}

/// A yes/no question about something that cannot be undone. The highlighted button starts on
/// "cancel", so a stray Enter does nothing harmful.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confirm {
    pub title: String,
    pub body: String,
    /// The label of the yes button: the verb ("destroy").
    pub yes: String,
    pub yes_selected: bool,
    pub then: Pending,
}

impl Confirm {
    pub fn new(
        title: impl Into<String>,
        body: impl Into<String>,
        yes: &str,
        then: Pending,
    ) -> Self {
        Confirm {
            title: title.into(),
            body: body.into(),
            yes: yes.to_string(),
            yes_selected: false,
            then,
        }
    }
}

/// What a prompt's answer is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromptKind {
    /// A manifest or a directory holding `karapace.toml`.
    Build,
    /// A directory to write a template into (the choice is the template).
    New,
    /// A directory for a new manifest opened in the editor from the chosen template.
    NewInEditor,
    /// The new name of an environment.
    Rename { env: String },
}

/// A one-line question with an optional list of values to pick from (↑/↓).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    pub kind: PromptKind,
    pub title: String,
    pub label: String,
    pub input: LineInput,
    pub choice: Option<Choice>,
    /// Why the last answer was refused (shown under the input).
    pub error: Option<String>,
    /// Completions the last Tab found when there was more than one.
    pub candidates: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub label: &'static str,
    pub options: Vec<(&'static str, &'static str)>,
    pub index: usize,
}

impl Choice {
    pub fn value(&self) -> &'static str {
        self.options.get(self.index).map_or("", |(name, _)| name)
    }

    pub fn step(&mut self, forward: bool) {
        let n = self.options.len().max(1);
        self.index = if forward {
            (self.index + 1) % n
        } else {
            (self.index + n - 1) % n
        };
    }
}

/// A report or an error, scrollable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub title: String,
    pub body: String,
    pub error: bool,
    pub scroll: u16,
}

impl Message {
    pub fn info(title: impl Into<String>, body: impl Into<String>) -> Message {
        Message {
            title: title.into(),
            body: body.into(),
            error: false,
            scroll: 0,
        }
    }

    pub fn error(title: impl Into<String>, body: impl Into<String>) -> Message {
        Message {
            error: true,
            ..Message::info(title, body)
        }
    }
}

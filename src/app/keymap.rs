//! The key map: a constant table of bindings, and a pure function (mode, key) → action.
//!
//! The `?` overlay and the status bar are generated from [`BINDINGS`], so what they show is
//! what the keys do. Screens add their own [`Mode`]s and rows here; the manifest editor binds
//! a few keys and hands every other one to its text area ([`Action::EditorKey`]).

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::action::Action;

/// Which key table applies: the top popup's, else the active input's, else the focused pane's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// The environment list has the focus.
    List,
    /// The log pane (or the full-screen log) has the focus.
    Log,
    /// Typing the list filter.
    Filter,
    /// Typing a log search.
    Search,
    /// A prompt popup (a path, a name).
    Prompt,
    /// The `:` command palette.
    Palette,
    /// A yes/no question.
    Confirm,
    /// A message or report popup.
    Message,
    /// The key help overlay.
    Help,
    /// The list of shells.
    Sessions,
    /// The prerequisite screen.
    Prereq,
    /// The manifest editor: unbound keys go to its text area.
    Editor,
}

impl Mode {
    /// Modes in which printable characters are typed into a text input.
    pub fn is_text_input(self) -> bool {
        matches!(
            self,
            Mode::Filter | Mode::Search | Mode::Prompt | Mode::Palette
        )
    }
}

/// A key as the table writes it: a code, and whether Ctrl is held. Shift is part of the
/// character (`G`), and Alt combinations are not bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    pub code: KeyCode,
    pub ctrl: bool,
}

const fn ch(c: char) -> Key {
    Key {
        code: KeyCode::Char(c),
        ctrl: false,
    }
}

const fn ctrl(c: char) -> Key {
    Key {
        code: KeyCode::Char(c),
        ctrl: true,
    }
}

const fn code(code: KeyCode) -> Key {
    Key { code, ctrl: false }
}

impl Key {
    /// How help and the status bar write the key.
    pub fn label(self) -> String {
        let base = match self.code {
            KeyCode::Char(' ') => "Space".to_string(),
            KeyCode::Char(c) => c.to_string(),
            KeyCode::Enter => "Enter".into(),
            KeyCode::Esc => "Esc".into(),
            KeyCode::Tab => "Tab".into(),
            KeyCode::Backspace => "Backspace".into(),
            KeyCode::Delete => "Del".into(),
            KeyCode::Up => "↑".into(),
            KeyCode::Down => "↓".into(),
            KeyCode::Left => "←".into(),
            KeyCode::Right => "→".into(),
            KeyCode::Home => "Home".into(),
            KeyCode::End => "End".into(),
            KeyCode::PageUp => "PgUp".into(),
            KeyCode::PageDown => "PgDn".into(),
            KeyCode::F(n) => format!("F{n}"),
            other => format!("{other:?}"),
        };
        if self.ctrl {
            format!("Ctrl-{base}")
        } else {
            base
        }
    }
}

/// Where a binding is listed in the help overlay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Global,
    Moving,
    Environments,
    Shells,
    Log,
    Input,
    Dialogs,
    Prereq,
    Editor,
}

impl Section {
    pub const ALL: [Section; 9] = [
        Section::Global,
        Section::Environments,
        Section::Shells,
        Section::Log,
        Section::Moving,
        Section::Input,
        Section::Dialogs,
        Section::Prereq,
        Section::Editor,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Section::Global => "Anywhere on the dashboard",
            Section::Moving => "Moving (list, log, help, reports)",
            Section::Environments => "Environment list",
            Section::Shells => "Shells (Ctrl-] in a shell: back here, it keeps running)",
            Section::Log => "Log pane",
            Section::Input => "Typing (filter, search, prompts, commands)",
            Section::Dialogs => "Questions and reports",
            Section::Prereq => "Prerequisite screen (p, :doctor)",
            Section::Editor => "Manifest editor (e, E, :edit)",
        }
    }
}

/// One row of the key map.
#[derive(Debug, Clone, Copy)]
pub struct Binding {
    pub keys: &'static [Key],
    pub modes: &'static [Mode],
    pub action: Action,
    pub section: Section,
    /// The help overlay's text.
    pub help: &'static str,
    /// The status bar's short label; `None` keeps the binding out of the status bar.
    pub hint: Option<&'static str>,
    /// Acts on the selected environment (hidden from the status bar when nothing is selected).
    pub needs_env: bool,
}

const PANES: &[Mode] = &[Mode::List, Mode::Log];
const MOVING: &[Mode] = &[
    Mode::List,
    Mode::Log,
    Mode::Help,
    Mode::Message,
    Mode::Prereq,
];
const INPUTS: &[Mode] = &[Mode::Filter, Mode::Search, Mode::Prompt, Mode::Palette];
const ALL: &[Mode] = &[
    Mode::List,
    Mode::Log,
    Mode::Filter,
    Mode::Search,
    Mode::Prompt,
    Mode::Palette,
    Mode::Confirm,
    Mode::Message,
    Mode::Help,
    Mode::Sessions,
    Mode::Prereq,
    Mode::Editor,
];

const fn bind(
    keys: &'static [Key],
    modes: &'static [Mode],
    action: Action,
    section: Section,
    help: &'static str,
) -> Binding {
    Binding {
        keys,
        modes,
        action,
        section,
        help,
        hint: None,
        needs_env: false,
    }
}

impl Binding {
    const fn hint(mut self, hint: &'static str) -> Binding {
        self.hint = Some(hint);
        self
    }

    const fn on_env(mut self) -> Binding {
        self.needs_env = true;
        self
    }
}

use Action as A;
use Mode as M;
use Section as S;

/// Every binding, first match wins. The order is also the order of the status bar.
#[rustfmt::skip]
pub const BINDINGS: &[Binding] = &[
    // Shells (`shells.rs`); in a shell only Ctrl-] is ours (`shells::split_detach`).
    bind(&[code(KeyCode::Enter)], &[M::List], A::Shell, S::Shells, "open a login shell in it; Ctrl-] detaches, it keeps running").hint("shell").on_env(),
    bind(&[ctrl(']')], &[M::List], A::Attach, S::Shells, "re-attach to its running shell").on_env(),
    bind(&[ch('S')], PANES, A::Sessions, S::Shells, "list the shells: re-attach, end, dismiss").hint("shells"),
    bind(&[code(KeyCode::Enter)], &[M::Sessions], A::Attach, S::Shells, "in the list: attach to the highlighted shell").hint("attach"),
    bind(&[ch('x')], &[M::Sessions], A::EndSession, S::Shells, "in the list: end it (asks first), or dismiss an ended one").hint("end/dismiss"),
    bind(&[code(KeyCode::Down), ch('j')], &[M::Sessions], A::Down, S::Shells, "in the list: next shell"),
    bind(&[code(KeyCode::Up), ch('k')], &[M::Sessions], A::Up, S::Shells, "in the list: previous shell"),
    bind(&[ch('g'), code(KeyCode::Home)], &[M::Sessions], A::Top, S::Shells, "in the list: first shell"),
    bind(&[ch('G'), code(KeyCode::End)], &[M::Sessions], A::Bottom, S::Shells, "in the list: last shell"),
    bind(&[code(KeyCode::Esc), ch('q'), ch('S')], &[M::Sessions], A::Back, S::Shells, "close the list of shells").hint("close"),
    // Environment list.
    bind(&[ch('b')], &[M::List], A::Build, S::Environments, "build a manifest (path prompt)").hint("build"),
    bind(&[ch('n')], &[M::List], A::New, S::Environments, "new: write a template into a directory and build it").hint("new"),
    bind(&[ch('B')], &[M::List], A::Rebuild, S::Environments, "rebuild the selected environment from its manifest").hint("rebuild").on_env(),
    bind(&[ch('s')], &[M::List], A::Stop, S::Environments, "stop every program running in it").hint("stop").on_env(),
    bind(&[ch('d')], &[M::List], A::Destroy, S::Environments, "destroy it (asks first)").hint("destroy").on_env(),
    bind(&[ch('f')], &[M::List], A::ToggleFreeze, S::Environments, "freeze / unfreeze it").hint("freeze").on_env(),
    bind(&[ch('a')], &[M::List], A::ToggleArchive, S::Environments, "archive / unarchive it").hint("archive").on_env(),
    bind(&[ch('R')], &[M::List], A::Rename, S::Environments, "rename it").hint("rename").on_env(),
    bind(&[ch('/')], &[M::List], A::Filter, S::Environments, "filter the list as you type (!text: without text)").hint("filter"),
    bind(&[ch('o')], &[M::List], A::SortNext, S::Environments, "sort by the next column").hint("sort"),
    bind(&[ch('O')], &[M::List], A::SortReverse, S::Environments, "reverse the sort order"),
    bind(&[ch('C')], &[M::List], A::Gc, S::Environments, "collect garbage in the store (asks first)"),
    bind(&[ch('V')], &[M::List], A::Verify, S::Environments, "verify the store"),
    bind(&[ch('e')], &[M::List], A::EditManifest, S::Environments, "edit its manifest (checked as you type)").hint("edit").on_env(),
    bind(&[ch('E')], &[M::List], A::NewInEditor, S::Environments, "new manifest from a template, in the editor"),
    // Log pane.
    bind(&[ch('f')], &[M::Log], A::ToggleFollow, S::Log, "follow new lines on / off").hint("follow"),
    bind(&[ch('/')], &[M::Log], A::Search, S::Log, "search the log").hint("search"),
    bind(&[ch('n')], &[M::Log], A::SearchNext, S::Log, "next match").hint("next"),
    bind(&[ch('N')], &[M::Log], A::SearchPrev, S::Log, "previous match"),
    bind(&[ch('z')], PANES, A::ToggleLogScreen, S::Log, "full-screen log on / off").hint("log"),
    // Anywhere on the dashboard.
    bind(&[ch(':')], PANES, A::Palette, S::Global, "command palette (:build PATH, :gc, :destroy NAME …)").hint("cmd"),
    bind(&[code(KeyCode::Tab)], PANES, A::FocusNext, S::Global, "focus the list / the log").hint("focus"),
    bind(&[ctrl('r')], PANES, A::Refresh, S::Global, "reload the list and the backends"),
    bind(&[ch('X')], PANES, A::CancelBuilds, S::Global, "cancel the running builds (what they did is rolled back)"),
    bind(&[ch('p')], PANES, A::Prerequisites, S::Global, "prerequisites: every check of doctor with its fix").hint("prereqs"),
    bind(&[ch('?')], PANES, A::Help, S::Global, "this help").hint("help"),
    bind(&[code(KeyCode::Esc)], PANES, A::Back, S::Global, "clear the filter / leave the full-screen log"),
    bind(&[ch('q')], PANES, A::Quit, S::Global, "quit (asks first while a job changes the store or a shell runs)").hint("quit"),
    bind(&[ctrl('c')], ALL, A::Quit, S::Global, "quit, from anywhere"),
    // Moving.
    bind(&[code(KeyCode::Down), ch('j')], MOVING, A::Down, S::Moving, "down one line"),
    bind(&[code(KeyCode::Up), ch('k')], MOVING, A::Up, S::Moving, "up one line"),
    bind(&[ch('g'), code(KeyCode::Home)], MOVING, A::Top, S::Moving, "first line"),
    bind(&[ch('G'), code(KeyCode::End)], MOVING, A::Bottom, S::Moving, "last line (the log follows again)"),
    bind(&[ctrl('d')], MOVING, A::HalfPageDown, S::Moving, "half a page down"),
    bind(&[ctrl('u')], MOVING, A::HalfPageUp, S::Moving, "half a page up"),
    bind(&[code(KeyCode::PageDown), ctrl('f')], MOVING, A::PageDown, S::Moving, "a page down"),
    bind(&[code(KeyCode::PageUp), ctrl('b')], MOVING, A::PageUp, S::Moving, "a page up"),
    // Typing.
    bind(&[code(KeyCode::Enter)], INPUTS, A::Submit, S::Input, "accept").hint("accept"),
    bind(&[code(KeyCode::Esc)], INPUTS, A::Back, S::Input, "cancel (clears a filter or search)").hint("cancel"),
    bind(&[code(KeyCode::Tab)], &[M::Prompt, M::Palette], A::Complete, S::Input, "complete the path or command").hint("complete"),
    bind(&[code(KeyCode::Down)], &[M::Prompt], A::ChoiceNext, S::Input, "next template (new)"),
    bind(&[code(KeyCode::Up)], &[M::Prompt], A::ChoicePrev, S::Input, "previous template (new)"),
    bind(&[code(KeyCode::Backspace)], INPUTS, A::Backspace, S::Input, "delete the character before the cursor"),
    bind(&[code(KeyCode::Delete)], INPUTS, A::Delete, S::Input, "delete the character under the cursor"),
    bind(&[code(KeyCode::Left)], INPUTS, A::Left, S::Input, "cursor left"),
    bind(&[code(KeyCode::Right)], INPUTS, A::Right, S::Input, "cursor right"),
    bind(&[code(KeyCode::Home), ctrl('a')], INPUTS, A::Home, S::Input, "start of the line"),
    bind(&[code(KeyCode::End), ctrl('e')], INPUTS, A::End, S::Input, "end of the line"),
    bind(&[ctrl('u')], INPUTS, A::ClearLine, S::Input, "clear the line"),
    bind(&[ctrl('w')], INPUTS, A::DeleteWord, S::Input, "delete the word before the cursor"),
    // Questions and reports.
    bind(&[ch('y')], &[M::Confirm], A::Yes, S::Dialogs, "yes, do it").hint("yes"),
    bind(&[ch('n'), code(KeyCode::Esc)], &[M::Confirm], A::No, S::Dialogs, "no, cancel").hint("no"),
    bind(&[code(KeyCode::Tab), code(KeyCode::Left), code(KeyCode::Right), ch('h'), ch('l')], &[M::Confirm], A::SwitchButton, S::Dialogs, "switch between the buttons"),
    bind(&[code(KeyCode::Enter)], &[M::Confirm], A::Submit, S::Dialogs, "press the highlighted button"),
    bind(&[code(KeyCode::Esc), code(KeyCode::Enter), ch('q')], &[M::Message], A::Back, S::Dialogs, "close the report").hint("close"),
    bind(&[code(KeyCode::Esc), ch('?'), ch('q')], &[M::Help], A::Back, S::Dialogs, "close this help").hint("close"),
    // The prerequisite screen.
    bind(&[ch('r')], &[M::Prereq], A::Recheck, S::Prereq, "run every check again").hint("re-run"),
    bind(&[code(KeyCode::Esc)], &[M::Prereq], A::Back, S::Prereq, "back to the dashboard").hint("back"),
    bind(&[ch(':')], &[M::Prereq], A::Palette, S::Prereq, "command palette").hint("cmd"),
    bind(&[ch('?')], &[M::Prereq], A::Help, S::Prereq, "this help").hint("help"),
    bind(&[ch('q')], &[M::Prereq], A::Quit, S::Prereq, "quit").hint("quit"),
    // The manifest editor; every other key edits the text.
    bind(&[ctrl('s')], &[M::Editor], A::Save, S::Editor, "save (atomically)").hint("save"),
    bind(&[ctrl('b')], &[M::Editor], A::SaveAndBuild, S::Editor, "save and build (a rebuild, asked first, if an environment was built from it)").hint("save+build"),
    bind(&[ctrl('g')], &[M::Editor], A::GotoProblem, S::Editor, "go to the problem's line and column").hint("go to error"),
    bind(&[code(KeyCode::Esc)], &[M::Editor], A::Back, S::Editor, "back to the dashboard (asks first with unsaved changes)").hint("back"),
    bind(&[code(KeyCode::F(1))], &[M::Editor], A::Help, S::Editor, "this help").hint("help"),
];

/// The action for a key in a mode, or `None` when the key does nothing there.
pub fn action_for(mode: Mode, key: KeyEvent) -> Option<Action> {
    if key.modifiers.contains(KeyModifiers::ALT) {
        // Alt combinations are not bound; the editor's text area has some (word moves).
        return (mode == Mode::Editor).then_some(Action::EditorKey(key));
    }
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    // Terminals send Ctrl-letters as lowercase letters with CONTROL; normalise Ctrl-D too.
    let code = match key.code {
        // crossterm reads GS (0x1d) as Ctrl-5; every keyboard sends it for Ctrl-].
        KeyCode::Char('5') if ctrl => KeyCode::Char(']'),
        KeyCode::Char(c) if ctrl => KeyCode::Char(c.to_ascii_lowercase()),
        // Shift-Tab arrives as BackTab; it switches like Tab.
        KeyCode::BackTab => KeyCode::Tab,
        other => other,
    };
    let pressed = Key { code, ctrl };
    let bound = BINDINGS
        .iter()
        .find(|b| b.modes.contains(&mode) && b.keys.contains(&pressed))
        .map(|b| b.action);
    if mode == Mode::Editor {
        // The text area takes every key the table leaves free, with its modifiers.
        return Some(bound.unwrap_or(Action::EditorKey(key)));
    }
    match (bound, code) {
        (Some(action), _) => Some(action),
        (None, KeyCode::Char(c)) if mode.is_text_input() && !ctrl => Some(Action::Insert(c)),
        _ => None,
    }
}

/// The bindings of one help section, in table order.
pub fn section(section: Section) -> impl Iterator<Item = &'static Binding> {
    BINDINGS.iter().filter(move |b| b.section == section)
}

/// The status bar's entries for a mode: (keys, label). Bindings on the selected environment
/// are left out when `has_env` is false.
pub fn hints(mode: Mode, has_env: bool) -> Vec<(String, &'static str)> {
    BINDINGS
        .iter()
        .filter(|b| b.modes.contains(&mode) && (has_env || !b.needs_env))
        .filter_map(|b| b.hint.map(|hint| (keys_label(b.keys), hint)))
        .collect()
}

/// `"↓/j"`: the keys of a binding, as help shows them.
pub fn keys_label(keys: &[Key]) -> String {
    keys.iter().map(|k| k.label()).collect::<Vec<_>>().join("/")
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    fn with(code: KeyCode, modifiers: KeyModifiers) -> KeyEvent {
        KeyEvent::new(code, modifiers)
    }

    #[test]
    fn vim_keys_and_arrows_move() {
        for mode in [Mode::List, Mode::Log, Mode::Help, Mode::Message] {
            assert_eq!(action_for(mode, key(KeyCode::Char('j'))), Some(A::Down));
            assert_eq!(action_for(mode, key(KeyCode::Down)), Some(A::Down));
            assert_eq!(action_for(mode, key(KeyCode::Char('k'))), Some(A::Up));
            assert_eq!(action_for(mode, key(KeyCode::Up)), Some(A::Up));
            assert_eq!(action_for(mode, key(KeyCode::Char('g'))), Some(A::Top));
            // Shift arrives as a modifier on the uppercase letter; it is part of the character.
            let shift_g = with(KeyCode::Char('G'), KeyModifiers::SHIFT);
            assert_eq!(action_for(mode, shift_g), Some(A::Bottom));
            let ctrl_d = with(KeyCode::Char('d'), KeyModifiers::CONTROL);
            assert_eq!(action_for(mode, ctrl_d), Some(A::HalfPageDown));
            let ctrl_u = with(KeyCode::Char('u'), KeyModifiers::CONTROL);
            assert_eq!(action_for(mode, ctrl_u), Some(A::HalfPageUp));
        }
    }

    #[test]
    fn the_same_key_means_what_its_mode_says() {
        let n = key(KeyCode::Char('n'));
        assert_eq!(action_for(Mode::List, n), Some(A::New));
        assert_eq!(action_for(Mode::Log, n), Some(A::SearchNext));
        assert_eq!(action_for(Mode::Confirm, n), Some(A::No));
        assert_eq!(action_for(Mode::Filter, n), Some(A::Insert('n')));
        let f = key(KeyCode::Char('f'));
        assert_eq!(action_for(Mode::List, f), Some(A::ToggleFreeze));
        assert_eq!(action_for(Mode::Log, f), Some(A::ToggleFollow));
        // `q` quits from the panes but only closes popups.
        let q = key(KeyCode::Char('q'));
        assert_eq!(action_for(Mode::List, q), Some(A::Quit));
        assert_eq!(action_for(Mode::Help, q), Some(A::Back));
        assert_eq!(action_for(Mode::Palette, q), Some(A::Insert('q')));
    }

    #[test]
    fn ctrl_c_quits_from_every_mode() {
        let ctrl_c = with(KeyCode::Char('c'), KeyModifiers::CONTROL);
        for mode in ALL {
            assert_eq!(action_for(*mode, ctrl_c), Some(A::Quit), "{mode:?}");
        }
    }

    #[test]
    fn text_inputs_take_any_printable_character_including_non_ascii() {
        for mode in INPUTS {
            for c in ['a', 'Z', '/', ':', 'é', '漢', '🦀', ' '] {
                let code = KeyCode::Char(c);
                assert_eq!(action_for(*mode, key(code)), Some(A::Insert(c)), "{mode:?}");
            }
            assert_eq!(action_for(*mode, key(KeyCode::Esc)), Some(A::Back));
            assert_eq!(action_for(*mode, key(KeyCode::Enter)), Some(A::Submit));
            let ctrl_w = with(KeyCode::Char('w'), KeyModifiers::CONTROL);
            assert_eq!(action_for(*mode, ctrl_w), Some(A::DeleteWord));
        }
        // Unbound Ctrl and Alt combinations are not typed.
        let ctrl_x = with(KeyCode::Char('x'), KeyModifiers::CONTROL);
        assert_eq!(action_for(Mode::Prompt, ctrl_x), None);
        let alt_x = with(KeyCode::Char('x'), KeyModifiers::ALT);
        assert_eq!(action_for(Mode::Prompt, alt_x), None);
    }

    #[test]
    fn esc_goes_back_everywhere() {
        for mode in ALL {
            let action = action_for(*mode, key(KeyCode::Esc));
            assert!(
                matches!(action, Some(A::Back | A::No)),
                "{mode:?}: {action:?}"
            );
        }
    }

    #[test]
    fn unbound_keys_do_nothing() {
        assert_eq!(action_for(Mode::List, key(KeyCode::Char('Q'))), None);
        assert_eq!(action_for(Mode::Confirm, key(KeyCode::Char('j'))), None);
        assert_eq!(action_for(Mode::List, key(KeyCode::F(12))), None);
    }

    #[test]
    fn no_key_is_bound_twice_in_one_mode() {
        for mode in ALL {
            let mut seen = HashSet::new();
            for b in BINDINGS.iter().filter(|b| b.modes.contains(mode)) {
                for k in b.keys {
                    assert!(
                        seen.insert(k.label()),
                        "{} is bound twice in {mode:?}",
                        k.label()
                    );
                }
            }
        }
    }

    #[test]
    fn every_binding_is_reachable_through_action_for() {
        for b in BINDINGS {
            for mode in b.modes {
                for k in b.keys {
                    let mods = if k.ctrl {
                        KeyModifiers::CONTROL
                    } else {
                        KeyModifiers::NONE
                    };
                    let got = action_for(*mode, KeyEvent::new(k.code, mods));
                    assert_eq!(got, Some(b.action), "{} in {mode:?}", k.label());
                }
            }
        }
    }

    #[test]
    fn the_editor_types_every_unbound_key_including_alt_and_non_ascii() {
        for c in ['a', 'é', '漢', '🦀', 'q', '?', ':'] {
            let k = key(KeyCode::Char(c));
            assert_eq!(action_for(Mode::Editor, k), Some(A::EditorKey(k)));
        }
        for k in [
            with(KeyCode::Char('f'), KeyModifiers::ALT),
            with(KeyCode::Char('k'), KeyModifiers::CONTROL),
            key(KeyCode::Enter),
            key(KeyCode::Tab),
            key(KeyCode::Backspace),
        ] {
            assert_eq!(action_for(Mode::Editor, k), Some(A::EditorKey(k)), "{k:?}");
        }
        let ctrl_s = with(KeyCode::Char('s'), KeyModifiers::CONTROL);
        assert_eq!(action_for(Mode::Editor, ctrl_s), Some(A::Save));
        let ctrl_b = with(KeyCode::Char('b'), KeyModifiers::CONTROL);
        assert_eq!(action_for(Mode::Editor, ctrl_b), Some(A::SaveAndBuild));
        assert_eq!(action_for(Mode::Editor, key(KeyCode::Esc)), Some(A::Back));
        let ctrl_c = with(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(action_for(Mode::Editor, ctrl_c), Some(A::Quit));
        // Elsewhere Alt stays unbound.
        assert_eq!(
            action_for(Mode::List, with(KeyCode::Char('f'), KeyModifiers::ALT)),
            None
        );
    }

    #[test]
    fn the_prerequisite_screen_reruns_scrolls_and_goes_back() {
        assert_eq!(
            action_for(Mode::List, key(KeyCode::Char('p'))),
            Some(A::Prerequisites)
        );
        assert_eq!(
            action_for(Mode::Log, key(KeyCode::Char('p'))),
            Some(A::Prerequisites)
        );
        assert_eq!(
            action_for(Mode::Prereq, key(KeyCode::Char('r'))),
            Some(A::Recheck)
        );
        assert_eq!(
            action_for(Mode::Prereq, key(KeyCode::Char('j'))),
            Some(A::Down)
        );
        assert_eq!(action_for(Mode::Prereq, key(KeyCode::Esc)), Some(A::Back));
        assert_eq!(
            action_for(Mode::List, key(KeyCode::Char('e'))),
            Some(A::EditManifest)
        );
        assert_eq!(
            action_for(Mode::List, key(KeyCode::Char('E'))),
            Some(A::NewInEditor)
        );
    }

    #[test]
    fn status_hints_follow_the_mode_and_the_selection() {
        let labels = |mode, has_env| -> Vec<&str> {
            hints(mode, has_env).into_iter().map(|(_, l)| l).collect()
        };
        let with_env = labels(Mode::List, true);
        assert!(with_env.contains(&"destroy") && with_env.contains(&"build"));
        let without = labels(Mode::List, false);
        assert!(!without.contains(&"destroy") && without.contains(&"build"));
        assert_eq!(labels(Mode::Confirm, false), ["yes", "no"]);
        assert!(labels(Mode::Log, false).contains(&"follow"));
    }
}

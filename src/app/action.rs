//! What a key asks for, separate from what happens: `keymap.rs` maps keys to an [`Action`]
//! (pure), `update.rs` applies it to the state and queues the jobs to start.

/// Everything a key can ask for. `Copy` and free of data except a typed character (or, in the
/// editor, the key itself), so the key map can be a constant table (and the help overlay
/// generated from it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    // Anywhere.
    /// Leave the program (asks first while a job changes the store).
    Quit,
    /// Close the top popup, leave an input, clear the filter, or leave the full-screen log.
    Back,
    Help,
    Palette,
    Refresh,
    /// Move the focus between the environment list and the log pane.
    FocusNext,
    /// Stop every running build; each rolls back what it did.
    CancelBuilds,

    // Moving in lists, logs and long popups.
    Up,
    Down,
    Top,
    Bottom,
    HalfPageDown,
    HalfPageUp,
    PageDown,
    PageUp,

    // The environment list.
    Filter,
    SortNext,
    SortReverse,
    Build,
    New,
    Rebuild,
    Stop,
    Destroy,
    ToggleFreeze,
    ToggleArchive,
    Rename,
    Gc,
    Verify,

    // Shells.
    /// Open a login shell in the selected environment and attach to it.
    Shell,
    /// The list of shells.
    Sessions,
    /// Re-attach: the selected environment's running shell, or the one highlighted in the list.
    Attach,
    /// End a running shell (asks first), or dismiss an ended one.
    EndSession,

    // The log pane.
    ToggleFollow,
    Search,
    SearchNext,
    SearchPrev,
    ToggleLogScreen,

    // Text inputs (filter, search, prompts, the palette).
    Insert(char),
    Backspace,
    Delete,
    Left,
    Right,
    Home,
    End,
    ClearLine,
    DeleteWord,
    Complete,
    Submit,
    /// Next / previous value of a prompt's choice (the template of `new`).
    ChoiceNext,
    ChoicePrev,

    // Confirmation dialogs.
    Yes,
    No,
    SwitchButton,

    // The prerequisite screen and the manifest editor (`prereq.rs`, `edit.rs`).
    /// Open the prerequisite screen.
    Prerequisites,
    /// Run the prerequisite checks again.
    Recheck,
    /// Edit the selected environment's manifest.
    EditManifest,
    /// A new manifest from a template, in the editor.
    NewInEditor,
    Save,
    SaveAndBuild,
    /// Move the editor's cursor to the manifest's problem.
    GotoProblem,
    /// A key for the editor's text area: every key its table does not bind.
    EditorKey(crossterm::event::KeyEvent),
}

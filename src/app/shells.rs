//! Shells: login shells inside environments, each on its own pseudo-terminal, that take over
//! the whole terminal while attached and keep running, detached, while the dashboard is back.
//!
//! This file is the state, free of I/O: the sessions, each one's screen (a vt100 parser fed
//! with everything its shell writes, attached or not, so nothing is lost while detached and the
//! pty is always read), which one has the terminal, the bytes due on the terminal while one
//! does, and requests for the loop (start, attach, resize, hang up, release). The pseudo-
//! terminals and their threads are in `pty.rs`, owned by the loop; they only send events.
//!
//! While a shell is attached its output passes to the terminal unchanged and the keys go to
//! it unchanged, except the detach key (Ctrl-], as in telnet), which never reaches the shell.
//! Attaching replays the shell's current screen from its parser first, so a re-attached
//! session looks as it would on a terminal that had stayed with it.

use std::fmt;
use std::sync::Arc;

use ratatui::layout::Rect;

use super::popup::{Confirm, Message, Pending, Popup};
use super::update::display;
use super::{Action, App};
use crate::engine::EnvSummary;
use crate::events::Level;
use crate::types::EnvId;

pub type SessionId = u64;

/// Ctrl-] as the terminal sends it: GS (0x1d), the byte telnet detaches on.
pub const DETACH_BYTE: u8 = 0x1d;

/// The detach key in every form a terminal sends it: the plain byte, and the CSI forms of
/// terminals a program switched to reporting modified keys (the kitty keyboard protocol's
/// `CSI 93;5u`, xterm's modifyOtherKeys `CSI 27;5;93~`; 93 is `]`, 5 is Ctrl).
const DETACH_KEYS: [&[u8]; 3] = [&[DETACH_BYTE], b"\x1b[93;5u", b"\x1b[27;5;93~"];

/// How the detach key is written for people.
pub const DETACH_KEY: &str = "Ctrl-]";

/// Split what the terminal sent while a shell is attached: the bytes for the shell (all of
/// them, or those before the detach key), and whether the detach key came. Bytes after the
/// detach key are dropped: they were typed for a shell that is no longer in front.
pub fn split_detach(input: &[u8]) -> (&[u8], bool) {
    let found = DETACH_KEYS
        .iter()
        .filter_map(|key| input.windows(key.len()).position(|w| w == *key))
        .min();
    match found {
        Some(at) => (&input[..at], true),
        None => (input, false),
    }
}

/// How a shell ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The exit status of `karapace-tui enter` (the shell's own, or 128+N for signal N).
    Exited(u32),
    /// `karapace-tui enter` itself was killed by this signal.
    Signal(String),
    /// Waiting for it failed.
    Unknown(String),
}

impl Ending {
    pub fn success(&self) -> bool {
        *self == Ending::Exited(0)
    }
}

impl fmt::Display for Ending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ending::Exited(code) => write!(f, "exit status {code}"),
            Ending::Signal(signal) => write!(f, "killed by signal {signal}"),
            Ending::Unknown(why) => write!(f, "status unknown ({why})"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Running,
    Ended(Ending),
}

/// One shell and the screen it has drawn so far.
pub struct Session {
    pub id: SessionId,
    pub env: EnvId,
    /// The environment as messages name it (its name, else its short id).
    pub name: String,
    pub status: Status,
    pub screen: vt100::Parser,
    /// Not attached yet: the first attach writes a line saying how to detach.
    banner_due: bool,
    /// Attached while its program was on the alternate screen: the terminal's main screen
    /// holds something else, to be redrawn when the program leaves the alternate screen.
    main_stale: bool,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // vt100's parser has no Debug; its size says enough.
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("env", &self.env)
            .field("name", &self.name)
            .field("status", &self.status)
            .field("size", &self.screen.screen().size())
            .finish()
    }
}

impl Session {
    pub fn running(&self) -> bool {
        self.status == Status::Running
    }

    /// `shell #2 in web`.
    pub fn title(&self) -> String {
        format!("shell #{} in {}", self.id, self.name)
    }

    /// `running` or how it ended.
    pub fn status_text(&self) -> String {
        match &self.status {
            Status::Running => "running".to_string(),
            Status::Ended(ending) => ending.to_string(),
        }
    }

    /// The tag of its log lines.
    fn label(&self) -> Arc<str> {
        Arc::from(format!("shell #{} {}", self.id, self.name))
    }

    /// The last non-blank rows of its screen (what an error left there), at most `n`.
    pub fn last_lines(&self, n: usize) -> Vec<String> {
        let screen = self.screen.screen();
        let (_, cols) = screen.size();
        let rows: Vec<String> = screen
            .rows(0, cols)
            .map(|r| r.trim_end().to_string())
            .collect();
        let end = rows
            .iter()
            .rposition(|r| !r.is_empty())
            .map_or(0, |i| i + 1);
        rows[end.saturating_sub(n)..end].to_vec()
    }
}

/// What the loop must do for the shells (it owns the pseudo-terminals).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShellRequest {
    /// Run `karapace-tui enter ENV` on a new pseudo-terminal of this size.
    Start {
        session: SessionId,
        env: EnvId,
        rows: u16,
        cols: u16,
    },
    /// Give it the terminal: call [`App::begin_attach`], pass the terminal through, forward
    /// the keys.
    Attach(SessionId),
    Resize {
        session: SessionId,
        rows: u16,
        cols: u16,
    },
    /// End it as closing its terminal would: SIGHUP.
    Hangup(SessionId),
    /// It ended and was dismissed: close its pseudo-terminal.
    Release(SessionId),
}

#[derive(Debug, Default)]
pub struct Shells {
    /// In the order they were started.
    sessions: Vec<Session>,
    last_id: SessionId,
    attached: Option<SessionId>,
    requests: Vec<ShellRequest>,
    /// Bytes for the terminal while a shell is attached, written by the loop after each batch.
    host_output: Vec<u8>,
}

impl Shells {
    pub fn all(&self) -> &[Session] {
        &self.sessions
    }

    pub fn get(&self, id: SessionId) -> Option<&Session> {
        self.sessions.iter().find(|s| s.id == id)
    }

    fn get_mut(&mut self, id: SessionId) -> Option<&mut Session> {
        self.sessions.iter_mut().find(|s| s.id == id)
    }

    pub fn attached(&self) -> Option<SessionId> {
        self.attached
    }

    pub fn running(&self) -> impl Iterator<Item = &Session> {
        self.sessions.iter().filter(|s| s.running())
    }

    /// The sessions of one environment, newest first.
    pub fn of_env<'a>(&'a self, env: &'a EnvId) -> impl Iterator<Item = &'a Session> {
        self.sessions.iter().rev().filter(move |s| &s.env == env)
    }

    /// The session the dashboard shows for an environment: its newest running one, else its
    /// newest ended one.
    pub fn shown_for<'a>(&'a self, env: &'a EnvId) -> Option<&'a Session> {
        self.of_env(env)
            .find(|s| s.running())
            .or_else(|| self.of_env(env).next())
    }
}

/// A shell's size for a terminal of `area`: the same, but at least 2×2. vt100 0.15 underflows
/// when text wraps on a one-row screen or a double-width character meets a one-column one.
fn shell_size(area: Rect) -> (u16, u16) {
    (area.height.max(2), area.width.max(2))
}

/// The line the first attach writes above the shell.
fn banner(name: &str) -> Vec<u8> {
    format!(
        "\x1b[7m karapace-tui \x1b[0m shell in {name} \u{b7} {DETACH_KEY} detaches (it keeps \
         running)\r\n"
    )
    .into_bytes()
}

impl App {
    /// The shell that has the terminal, if one has.
    pub fn attached_shell(&self) -> Option<SessionId> {
        self.shells.attached
    }

    /// Requests for the loop, in order.
    pub fn take_shell_requests(&mut self) -> Vec<ShellRequest> {
        std::mem::take(&mut self.shells.requests)
    }

    /// Bytes for the terminal (only while a shell is attached).
    pub fn take_host_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.shells.host_output)
    }

    /// Enter on an environment: a new login shell in it, attached at once.
    pub(super) fn open_shell(&mut self, env: &EnvSummary) {
        self.shells.last_id += 1;
        let id = self.shells.last_id;
        let (rows, cols) = shell_size(self.area);
        let session = Session {
            id,
            env: env.id.clone(),
            name: display(env),
            status: Status::Running,
            screen: vt100::Parser::new(rows, cols, 0),
            banner_due: true,
            main_stale: false,
        };
        self.log.push(
            Level::Info,
            Some(session.label()),
            format!("started: karapace-tui enter {}", env.id.short()),
        );
        self.shells.sessions.push(session);
        self.shells.requests.push(ShellRequest::Start {
            session: id,
            env: env.id.clone(),
            rows,
            cols,
        });
        self.shells.requests.push(ShellRequest::Attach(id));
    }

    /// The pseudo-terminal or the program could not be started.
    pub fn shell_not_started(&mut self, id: SessionId, error: &str) {
        let Some(at) = self.shells.sessions.iter().position(|s| s.id == id) else {
            return;
        };
        let session = self.shells.sessions.remove(at);
        let label = session.label();
        for line in error.lines() {
            self.log.push(
                Level::Warn,
                Some(Arc::clone(&label)),
                format!("error: {line}"),
            );
        }
        self.popups.push(Popup::Message(Message::error(
            format!("Cannot open a shell in {}", session.name),
            error,
        )));
    }

    /// Handing the terminal over failed after [`App::begin_attach`]: the dashboard stays.
    pub fn attach_failed(&mut self, id: SessionId, error: &str) {
        if self.shells.attached == Some(id) {
            self.shells.attached = None;
        }
        self.shells.host_output.clear();
        let title = self
            .shells
            .get(id)
            .map_or_else(|| format!("shell #{id}"), Session::title);
        self.popups.push(Popup::Message(Message::error(
            format!("Cannot attach to {title}"),
            format!("Forwarding the keys to it failed: {error}"),
        )));
    }

    /// Something about a running shell failed that does not end it (a resize, a signal).
    pub fn shell_trouble(&mut self, id: SessionId, error: &str) {
        let label = self.shells.get(id).map(Session::label);
        self.log.push(Level::Warn, label, format!("error: {error}"));
    }

    /// The loop is about to give the terminal to `id`: true if it still runs (it may have
    /// ended or failed to start meanwhile). Queues its current screen for the terminal.
    pub fn begin_attach(&mut self, id: SessionId) -> bool {
        if self.shells.attached.is_some() {
            return false;
        }
        let Some(session) = self.shells.get_mut(id).filter(|s| s.running()) else {
            return false;
        };
        if std::mem::take(&mut session.banner_due) {
            let banner = banner(&session.name);
            session.screen.process(&banner);
        }
        // The host terminal learns which environment it shows now (`crate::markers`); the
        // shell's own `enter` said so too, but that was while the dashboard had the screen.
        let name = crate::markers::marker_name(Some(&session.name), session.env.short());
        let mut out = Vec::new();
        if !name.is_empty() {
            let uid = nix::unistd::getuid().as_raw();
            out.extend(crate::markers::push(&name, uid, crate::markers::in_tmux()));
        }
        let screen = session.screen.screen();
        if screen.alternate_screen() {
            // The terminal is on its main screen now; the program's main screen is redrawn
            // when it leaves the alternate one (`shell_output`).
            out.extend_from_slice(b"\x1b[?1049h");
            session.main_stale = true;
        }
        out.extend(screen.state_formatted());
        self.shells.host_output.extend(out);
        self.shells.attached = Some(id);
        true
    }

    /// Re-attach to a running session (the sessions list, Ctrl-] on the dashboard).
    pub(super) fn attach(&mut self, id: SessionId) {
        match self.shells.get(id) {
            Some(s) if s.running() => self.shells.requests.push(ShellRequest::Attach(id)),
            Some(s) => {
                self.notice = Some(format!(
                    "{} has ended ({}); x dismisses it",
                    s.title(),
                    s.status_text()
                ));
            }
            None => {}
        }
    }

    /// Ctrl-] on an environment: its newest running shell.
    pub(super) fn attach_to_env(&mut self, env: &EnvSummary) {
        let running = self
            .shells
            .of_env(&env.id)
            .find(|s| s.running())
            .map(|s| s.id);
        match running {
            Some(id) => self.attach(id),
            None => {
                self.notice = Some(format!(
                    "no shell of this UI runs in {}: Enter opens one",
                    display(env)
                ));
            }
        }
    }

    /// Output of a session's shell: onto its screen always, onto the terminal while attached.
    pub(super) fn shell_output(&mut self, id: SessionId, bytes: &[u8]) {
        let shells = &mut self.shells;
        let attached = shells.attached == Some(id);
        let Some(session) = shells.sessions.iter_mut().find(|s| s.id == id) else {
            return;
        };
        session.screen.process(bytes);
        if !attached {
            return;
        }
        shells.host_output.extend_from_slice(bytes);
        let screen = session.screen.screen();
        if session.main_stale && !screen.alternate_screen() {
            // Back from the alternate screen to a main screen the terminal never had.
            session.main_stale = false;
            shells.host_output.extend(screen.contents_formatted());
        }
    }

    /// The detach key: the dashboard is back, the shell keeps running.
    pub(super) fn shell_detached(&mut self, id: SessionId) {
        if self.shells.attached != Some(id) {
            return;
        }
        self.shells.attached = None;
        if let Some(session) = self.shells.get(id) {
            self.notice = Some(format!(
                "detached from {} (it keeps running): {DETACH_KEY} re-attaches, S lists shells",
                session.title()
            ));
            let env = session.env.clone();
            self.env_changed(&env);
        }
    }

    /// A session's `karapace-tui enter` ended.
    pub(super) fn shell_exited(&mut self, id: SessionId, ending: Ending) {
        let was_attached = self.shells.attached == Some(id);
        if was_attached {
            self.shells.attached = None;
        }
        let Some(session) = self.shells.get_mut(id) else {
            return;
        };
        session.status = Status::Ended(ending.clone());
        let (title, label, env) = (session.title(), session.label(), session.env.clone());
        let level = if ending.success() {
            Level::Info
        } else {
            Level::Warn
        };
        self.log
            .push(level, Some(label), format!("ended: {ending}"));
        if !ending.success() {
            // What it printed last says why (`enter` reports its errors on the terminal).
            let mut body = format!("{title} ended: {ending}.");
            let last = session.last_lines(8);
            if !last.is_empty() {
                body.push_str("\nIts last lines:\n");
                body.push_str(&last.join("\n"));
            }
            body.push_str("\n\nS lists the shells; x there dismisses it.");
            self.popups.push(Popup::Message(Message::error(
                format!("{title} ended"),
                body,
            )));
        } else {
            self.notice = Some(format!("{title} ended: {ending}"));
        }
        self.env_changed(&env);
    }

    /// Its sessions changed: reload the list (session counts) and its details.
    fn env_changed(&mut self, env: &EnvId) {
        self.details.remove(env);
        self.request_list();
        self.request_details();
    }

    /// The terminal's new size: every running shell follows it, attached or not, so that a
    /// re-attach needs no resize and previews show the screen as it will be.
    pub(super) fn resize_shells(&mut self) {
        let (rows, cols) = shell_size(self.area);
        for session in self.shells.sessions.iter_mut().filter(|s| s.running()) {
            if session.screen.screen().size() == (rows, cols) {
                continue;
            }
            session.screen.set_size(rows, cols);
            self.shells.requests.push(ShellRequest::Resize {
                session: session.id,
                rows,
                cols,
            });
        }
    }

    /// Names of the running shells, for the quit question.
    pub(super) fn running_shell_titles(&self) -> Vec<String> {
        self.shells.running().map(Session::title).collect()
    }

    /// Ask the loop to hang up every running shell (quitting).
    pub fn hang_up_all(&mut self) {
        let ids: Vec<SessionId> = self.shells.running().map(|s| s.id).collect();
        for id in ids {
            self.shells.requests.push(ShellRequest::Hangup(id));
        }
    }

    pub fn running_shells(&self) -> usize {
        self.shells.running().count()
    }

    pub(super) fn open_sessions(&mut self) {
        // Start on the shell of the selected environment, if it has one.
        let selected = self
            .envs
            .selected_id()
            .and_then(|env| self.shells.shown_for(env))
            .and_then(|shown| self.shells.sessions.iter().position(|s| s.id == shown.id))
            .unwrap_or(0);
        self.popups.push(Popup::Sessions { selected });
    }

    /// Keys of the sessions list.
    pub(super) fn apply_sessions(&mut self, action: Action) {
        let Some(Popup::Sessions { selected }) = self.popups.last_mut() else {
            return;
        };
        let count = self.shells.sessions.len();
        let last = count.saturating_sub(1);
        *selected = (*selected).min(last);
        let current = self.shells.sessions.get(*selected).map(|s| s.id);
        match action {
            Action::Quit => self.quit_or_ask(),
            Action::Back => {
                self.popups.pop();
            }
            Action::Up => *selected = selected.saturating_sub(1),
            Action::Down => *selected = (*selected + 1).min(last),
            Action::Top => *selected = 0,
            Action::Bottom => *selected = last,
            Action::Attach => {
                if let Some(id) = current {
                    if self.shells.get(id).is_some_and(Session::running) {
                        self.popups.pop();
                    }
                    self.attach(id);
                }
            }
            Action::EndSession => {
                if let Some(id) = current {
                    self.end_or_dismiss(id);
                }
            }
            _ => {}
        }
    }

    /// `x`: a running shell is hung up (after a question), an ended one leaves the list.
    fn end_or_dismiss(&mut self, id: SessionId) {
        let Some(session) = self.shells.get(id) else {
            return;
        };
        if session.running() {
            let title = session.title();
            self.popups.push(Popup::Confirm(Confirm::new(
                format!("End {title}?"),
                "Hangs it up as closing its terminal would (SIGHUP): the shell and what runs \
                 in it end.",
                "end",
                Pending::EndShell(id),
            )));
        } else {
            self.shells.sessions.retain(|s| s.id != id);
            self.shells.requests.push(ShellRequest::Release(id));
        }
    }

    /// The confirmed end of a running shell.
    pub(super) fn hang_up(&mut self, id: SessionId) {
        if self.shells.get(id).is_some_and(Session::running) {
            self.shells.requests.push(ShellRequest::Hangup(id));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_detach_key_is_never_passed_on_and_everything_else_is() {
        assert_eq!(split_detach(b"echo hello\r"), (&b"echo hello\r"[..], false));
        assert_eq!(split_detach(b"ls\x1d"), (&b"ls"[..], true));
        assert_eq!(split_detach(b"\x1d"), (&b""[..], true));
        // What follows the key was typed for a shell no longer in front.
        assert_eq!(split_detach(b"ab\x1dcd"), (&b"ab"[..], true));
        // The kitty keyboard protocol and modifyOtherKeys forms of Ctrl-].
        assert_eq!(split_detach(b"x\x1b[93;5u"), (&b"x"[..], true));
        assert_eq!(split_detach(b"\x1b[27;5;93~y"), (&b""[..], true));
        // Every other control byte and sequence goes to the shell: Ctrl-C, Ctrl-D, Ctrl-\,
        // Esc, arrows, other CSI-u keys, and non-ASCII text.
        for bytes in [
            &b"\x03"[..],
            b"\x04",
            b"\x1c",
            b"\x1b",
            b"\x1b[A",
            b"\x1b[97;5u",
            b"\x1b[93;3u",
            "héllo 漢".as_bytes(),
        ] {
            assert_eq!(split_detach(bytes), (bytes, false), "{bytes:?}");
        }
    }

    #[test]
    fn endings_say_how() {
        assert_eq!(Ending::Exited(3).to_string(), "exit status 3");
        assert!(Ending::Exited(0).success());
        assert!(!Ending::Signal("Hangup".into()).success());
        assert_eq!(
            Ending::Signal("Hangup".into()).to_string(),
            "killed by signal Hangup"
        );
    }
}

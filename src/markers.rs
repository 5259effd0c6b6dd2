//! Terminal markers: tell a container-aware terminal (GNOME Terminal and Ptyxis through VTE,
//! Konsole, Prompt) which environment the shell in it runs in, so that it can show it and
//! open a new tab in the same one.
//!
//! The sequence is the one Toolbx emits around `toolbox enter` (OSC 777, from Enlightenment's
//! Terminology, terminal-wg/specifications#17):
//!
//! ```text
//! ESC ] 777 ; container ; push ; NAME ; karapace ; UID ESC \      entering
//! ESC ] 777 ; container ; pop ; ; ; UID ESC \                     leaving (exit or detach)
//! ```
//!
//! terminated by ST (`ESC \`), which every parser accepts. UID is the caller's real uid on the
//! host (terminals keep no container across a uid change). NAME is what the terminal later
//! passes to `karapace-tui enter NAME`: the environment's name, or its short id, and only ever
//! made of `[A-Za-z0-9._-]` (a terminal filters out anything else, and a name such as
//! `--root` would turn into an option). Inside tmux the sequence only reaches the outer
//! terminal wrapped in a DCS passthrough (`ESC P tmux; … ESC \`, every ESC of the payload
//! doubled; tmux needs `set -g allow-passthrough on`).
//!
//! Markers are written only to a terminal: piped output stays exactly the program's.

use std::io::{self, IsTerminal, Write};

/// The runtime field of the sequence.
const RUNTIME: &str = "karapace";

/// The name a terminal is given for an environment: its name when that is made of
/// `[A-Za-z0-9._-]` and starts with a letter or digit (the rules `validate_name` enforces for
/// new names), else its short id (hex digits).
pub fn marker_name(name: Option<&str>, short_id: &str) -> String {
    let usable = |s: &str| {
        s.starts_with(|c: char| c.is_ascii_alphanumeric())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    };
    match name {
        Some(name) if usable(name) => name.to_string(),
        _ if usable(short_id) => short_id.to_string(),
        // Ids are hex; anything else here is a corrupt record: a terminal gets no name at all.
        _ => String::new(),
    }
}

/// `container;push;NAME;karapace;UID`, as sent (wrapped for tmux when `tmux`).
pub fn push(name: &str, uid: u32, tmux: bool) -> Vec<u8> {
    osc(&format!("777;container;push;{name};{RUNTIME};{uid}"), tmux)
}

/// `container;pop;;;UID`, as sent.
pub fn pop(uid: u32, tmux: bool) -> Vec<u8> {
    osc(&format!("777;container;pop;;;{uid}"), tmux)
}

fn osc(body: &str, tmux: bool) -> Vec<u8> {
    let sequence = format!("\x1b]{body}\x1b\\").into_bytes();
    if !tmux {
        return sequence;
    }
    // tmux(1), "allow-passthrough": the payload of `ESC P tmux; … ESC \` goes to the outer
    // terminal, with each ESC in it doubled.
    let mut wrapped = b"\x1bPtmux;".to_vec();
    for &byte in &sequence {
        if byte == 0x1b {
            wrapped.push(0x1b);
        }
        wrapped.push(byte);
    }
    wrapped.extend_from_slice(b"\x1b\\");
    wrapped
}

/// Whether this process runs inside tmux (it sets `TMUX` for its panes).
pub fn in_tmux() -> bool {
    std::env::var_os("TMUX").is_some_and(|v| !v.is_empty())
}

/// An interactive session on this process's terminal: [`Session::begin`] writes the push
/// marker (stdout) and the banner (stderr), [`Session::end`] the pop marker and the closing
/// banner. Nothing is written to a stream that is not a terminal.
pub struct Session {
    label: String,
    uid: u32,
    tmux: bool,
    marked: bool,
}

impl Session {
    /// `name` as for [`marker_name`]; `label` is how the banner names the environment.
    pub fn begin(name: &str, label: String) -> io::Result<Session> {
        let session = Session {
            label,
            uid: nix::unistd::getuid().as_raw(),
            tmux: in_tmux(),
            marked: !name.is_empty() && io::stdout().is_terminal(),
        };
        if io::stderr().is_terminal() {
            writeln!(
                io::stderr(),
                "karapace-tui: entering {}; `exit` leaves it",
                session.label
            )?;
        }
        if session.marked {
            let mut out = io::stdout();
            out.write_all(&push(name, session.uid, session.tmux))?;
            out.flush()?;
        }
        Ok(session)
    }

    /// Says the session is over, with the exit code of its shell when there is one.
    pub fn end(self, code: Option<i32>) -> io::Result<()> {
        if self.marked {
            let mut out = io::stdout();
            out.write_all(&pop(self.uid, self.tmux))?;
            out.flush()?;
        }
        if io::stderr().is_terminal() {
            let how = code.map_or_else(String::new, |c| format!(" (exit code {c})"));
            writeln!(io::stderr(), "karapace-tui: left {}{how}", self.label)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_and_pop_are_toolbx_s_sequences_with_our_runtime() {
        assert_eq!(
            push("web-1.0_x", 1000, false),
            b"\x1b]777;container;push;web-1.0_x;karapace;1000\x1b\\"
        );
        assert_eq!(pop(1000, false), b"\x1b]777;container;pop;;;1000\x1b\\");
    }

    #[test]
    fn inside_tmux_the_sequence_is_wrapped_with_every_escape_doubled() {
        assert_eq!(
            pop(0, true),
            b"\x1bPtmux;\x1b\x1b]777;container;pop;;;0\x1b\x1b\\\x1b\\"
        );
    }

    #[test]
    fn only_safe_names_reach_the_terminal() {
        assert_eq!(marker_name(Some("web"), "0123456789ab"), "web");
        assert_eq!(marker_name(Some("--root"), "0123456789ab"), "0123456789ab");
        assert_eq!(marker_name(Some("a b"), "0123456789ab"), "0123456789ab");
        assert_eq!(marker_name(Some("x;push"), "0123456789ab"), "0123456789ab");
        assert_eq!(marker_name(Some("ü"), "0123456789ab"), "0123456789ab");
        assert_eq!(marker_name(None, "0123456789ab"), "0123456789ab");
        assert_eq!(marker_name(None, "\x1b]0;x"), "");
    }
}

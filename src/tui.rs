//! The host terminal, owned in one place: raw mode, the alternate screen, the cursor.
//!
//! Invariants:
//! - Nothing else in the crate switches raw mode or the alternate screen.
//! - The terminal is restored on every way out: [`Tui::exit`] on the normal path (errors
//!   reported), `Drop` when an error unwinds past it, and the panic hook installed by
//!   [`Tui::enter`] before the panic message is printed (so the message lands on a cooked
//!   screen and stays readable). Ctrl-C in raw mode is a key, not SIGINT (termios(3): `ISIG`
//!   is cleared), so the event loop handles it as a quit key and the same path restores.
//! - Mouse reporting is off unless the user turns it on (`[tui] mouse = true`, see
//!   `crate::app::settings`): it breaks selecting and copying text over SSH, and every action
//!   has a key. When on, only clicks and the wheel are reported (xterm modes 1000 and 1006,
//!   not motion), it is switched off while a shell has the screen, and before the alternate
//!   screen is left on every way out.
//! - Restoring writes `LeaveAlternateScreen` last, so the last bytes a session writes are
//!   `ESC [ ? 1049 l` (tests check this).
//! - While a shell has the screen ([`Tui::pass_through`]), whatever modes its programs switch
//!   on (mouse reporting, bracketed paste, application keys, a scroll region) are switched off
//!   again on every way back: [`Tui::take_back`], and the restore of a panic or a drop.

use std::io::{self, Stdout, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crossterm::cursor::{Hide, Show};
use crossterm::execute;
use crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen,
};
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;

pub type Backend = CrosstermBackend<Stdout>;

/// The terminal while the UI owns it.
pub struct Tui {
    terminal: Terminal<Backend>,
    /// True while raw mode and the alternate screen are on; shared with the panic hook so a
    /// panic after a normal exit (or while suspended) does not write escape codes again.
    active: Arc<AtomicBool>,
    /// True while a program's output passes straight to the terminal ([`Tui::pass_through`]):
    /// restoring then also resets the modes it may have set.
    passing: Arc<AtomicBool>,
    /// The user asked for mouse reporting.
    mouse: bool,
}

/// Report button presses, releases and the wheel (xterm's 1000) in SGR encoding (1006, which
/// has no column limit); no motion (1002/1003), which would wake the UI on every move.
const MOUSE_ON: &[u8] = b"\x1b[?1000h\x1b[?1006h";
const MOUSE_OFF: &[u8] = b"\x1b[?1006l\x1b[?1000l";

impl Tui {
    /// Switch the terminal to raw mode and the alternate screen, and install the panic hook.
    /// With `mouse`, clicks and the wheel are reported too.
    pub fn enter(mouse: bool) -> io::Result<Tui> {
        let active = Arc::new(AtomicBool::new(false));
        let passing = Arc::new(AtomicBool::new(false));
        install_panic_hook(Arc::clone(&active), Arc::clone(&passing), mouse);
        let terminal = Terminal::new(CrosstermBackend::new(io::stdout()))?;
        let mut tui = Tui {
            terminal,
            active,
            passing,
            mouse,
        };
        tui.resume()?;
        Ok(tui)
    }

    pub fn terminal(&mut self) -> &mut Terminal<Backend> {
        &mut self.terminal
    }

    /// Give the terminal back to the shell (cooked mode, main screen, cursor shown), for a
    /// program that needs the real tty (a full-screen shell, `$EDITOR`). The caller must have
    /// paused the input thread first, or it would steal the program's keystrokes.
    pub fn suspend(&mut self) -> io::Result<()> {
        if self.active.swap(false, Ordering::SeqCst) {
            restore_terminal(&mut self.terminal, self.mouse)?;
        }
        Ok(())
    }

    /// Take the terminal again after [`Tui::suspend`] (or for the first time) and clear it, so
    /// the next draw repaints every cell instead of diffing against a screen that is gone.
    pub fn resume(&mut self) -> io::Result<()> {
        if !self.active.load(Ordering::SeqCst) {
            enable_raw_mode()?;
            self.active.store(true, Ordering::SeqCst);
            execute!(self.terminal.backend_mut(), EnterAlternateScreen, Hide)?;
            self.mouse_on()?;
        }
        self.terminal.clear()
    }

    /// Give the screen to a shell whose bytes pass through unchanged (`crate::app` shells):
    /// the main screen, so that its programs can switch to their own alternate screen and
    /// back, and the cursor shown. Raw mode stays on: every key must reach the shell as the
    /// terminal sends it (Ctrl-C as a byte, no echo, no line editing by the tty). The caller
    /// must have paused the input thread.
    pub fn pass_through(&mut self) -> io::Result<()> {
        if self.active.load(Ordering::SeqCst) {
            if self.mouse {
                // The shell's programs ask for the mouse themselves if they want it.
                self.terminal.backend_mut().write_all(MOUSE_OFF)?;
            }
            self.passing.store(true, Ordering::SeqCst);
            execute!(self.terminal.backend_mut(), LeaveAlternateScreen, Show)?;
        }
        Ok(())
    }

    /// Take the screen back after [`Tui::pass_through`]: switch off what the shell's programs
    /// may have switched on, enter the alternate screen again and repaint everything.
    pub fn take_back(&mut self) -> io::Result<()> {
        if self.passing.swap(false, Ordering::SeqCst) {
            let out = self.terminal.backend_mut();
            out.write_all(PROGRAM_MODES_OFF)?;
            execute!(out, EnterAlternateScreen, Hide)?;
            self.mouse_on()?;
        }
        self.terminal.clear()
    }

    fn mouse_on(&mut self) -> io::Result<()> {
        if self.mouse {
            let out = self.terminal.backend_mut();
            out.write_all(MOUSE_ON)?;
            out.flush()?;
        }
        Ok(())
    }

    /// Restore the terminal, reporting failure (the normal way out; `Drop` is the fallback).
    pub fn exit(mut self) -> io::Result<()> {
        let modes = if self.passing.swap(false, Ordering::SeqCst) {
            self.terminal.backend_mut().write_all(PROGRAM_MODES_OFF)
        } else {
            Ok(())
        };
        let restored = self.suspend();
        modes.and(restored)
    }
}

/// What a full-screen program may leave switched on, switched off (xterm's ctlseqs): mouse
/// reporting in every mode and encoding (1000, 1002, 1003, 1005, 1006, 1015), focus events
/// (1004), bracketed paste (2004), application cursor keys (DECCKM, 1) and keypad (DECKPNM,
/// `ESC >`), origin mode (6) off and autowrap (7) on, the whole screen as scroll region
/// (DECSTBM), the default cursor shape (DECSCUSR 0), plain attributes.
const PROGRAM_MODES_OFF: &[u8] = b"\x1b[?1000l\x1b[?1002l\x1b[?1003l\x1b[?1005l\x1b[?1006l\
    \x1b[?1015l\x1b[?1004l\x1b[?2004l\x1b[?1l\x1b>\x1b[?6l\x1b[?7h\x1b[r\x1b[0 q\x1b[0m";

impl Drop for Tui {
    fn drop(&mut self) {
        if self.passing.swap(false, Ordering::SeqCst) {
            if let Err(e) = self.terminal.backend_mut().write_all(PROGRAM_MODES_OFF) {
                eprintln!("karapace-tui: could not reset the terminal's modes: {e}; run `reset`");
            }
        }
        if self.active.swap(false, Ordering::SeqCst) {
            if let Err(e) = restore_terminal(&mut self.terminal, self.mouse) {
                // Drop cannot return the error; stderr is the only place left to say it.
                eprintln!("karapace-tui: could not restore the terminal: {e}; run `reset`");
            }
        }
    }
}

/// As [`restore`], showing the cursor through ratatui so that it does not show it again (after
/// the alternate screen is left) when the `Terminal` is dropped.
fn restore_terminal(terminal: &mut Terminal<Backend>, mouse: bool) -> io::Result<()> {
    let raw = disable_raw_mode();
    let mouse = mouse_off(terminal.backend_mut(), mouse);
    let cursor = terminal.show_cursor();
    let screen = execute!(terminal.backend_mut(), LeaveAlternateScreen);
    raw.and(mouse).and(cursor).and(screen)
}

/// Cooked mode, mouse reporting off, cursor shown, main screen — in that order, so leaving
/// the alternate screen is the last thing written. Every step is attempted even if an earlier
/// one fails.
fn restore(out: &mut impl Write, mouse: bool) -> io::Result<()> {
    let raw = disable_raw_mode();
    let mouse = mouse_off(out, mouse);
    let screen = execute!(out, Show, LeaveAlternateScreen);
    raw.and(mouse).and(screen)
}

fn mouse_off(out: &mut impl Write, mouse: bool) -> io::Result<()> {
    if mouse {
        out.write_all(MOUSE_OFF)?;
    }
    Ok(())
}

/// Chain a hook in front of the current one that restores the terminal first. Installed once
/// per `Tui`; a later `Tui` chains another (cheap: the `active` flag makes stale ones no-ops).
///
/// Only a panic of the thread that owns the terminal ends the UI. Worker threads run their job
/// under `catch_unwind` and report a panic as the job's error, so while the UI is up their
/// panic message is not printed over the screen (the job's error popup carries it instead).
fn install_panic_hook(active: Arc<AtomicBool>, passing: Arc<AtomicBool>, mouse: bool) {
    let ui_thread = std::thread::current().id();
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().id() != ui_thread && active.load(Ordering::SeqCst) {
            return;
        }
        if passing.swap(false, Ordering::SeqCst) {
            if let Err(e) = io::stdout().write_all(PROGRAM_MODES_OFF) {
                eprintln!("karapace-tui: could not reset the terminal's modes: {e}; run `reset`");
            }
        }
        if active.swap(false, Ordering::SeqCst) {
            if let Err(e) = restore(&mut io::stdout(), mouse) {
                eprintln!("karapace-tui: could not restore the terminal: {e}; run `reset`");
            }
        }
        previous(info);
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restoring_shows_the_cursor_then_leaves_the_alternate_screen_last() {
        // Raw mode was never enabled in the test process, so only the escape codes are written.
        let mut out = Vec::new();
        restore(&mut out, false).expect("restore");
        assert_eq!(out, b"\x1b[?25h\x1b[?1049l");
    }

    #[test]
    fn with_the_mouse_on_restoring_switches_it_off_before_leaving_the_screen() {
        let mut out = Vec::new();
        restore(&mut out, true).expect("restore");
        assert_eq!(out, b"\x1b[?1006l\x1b[?1000l\x1b[?25h\x1b[?1049l");
    }
}

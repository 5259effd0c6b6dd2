//! [`Pty`]: the real binary on a pseudo-terminal, read through a vt100 parser, for tests that
//! assert what a person would see on the screen.
//!
//! The environment is the one [`TestCommand`](super::TestCommand) gives (`KARAPACE_STORE`,
//! `HOME`, every other `KARAPACE_*` and the XDG data/config variables removed) plus
//! `TERM=xterm-256color`. Waiting is by condition with a timeout (a hang fails the test with
//! the screen and the tail of the raw output), never by sleeping a fixed time.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use portable_pty::{native_pty_system, Child, CommandBuilder, ExitStatus, MasterPty, PtySize};

use super::{BIN, DEFAULT_TIMEOUT};

/// Everything the program wrote: parsed into a screen, and kept raw.
struct Output {
    parser: vt100::Parser,
    raw: Vec<u8>,
    /// The reader saw end of file (the program and every holder of the terminal are gone).
    eof: bool,
}

/// Special keys, as a terminal sends them.
#[derive(Debug, Clone, Copy)]
pub enum Key {
    Enter,
    Esc,
    Tab,
    Backspace,
    Up,
    Down,
    Left,
    Right,
    /// Ctrl and a letter.
    Ctrl(char),
}

impl Key {
    fn bytes(self) -> Vec<u8> {
        match self {
            Key::Enter => b"\r".to_vec(),
            Key::Esc => b"\x1b".to_vec(),
            Key::Tab => b"\t".to_vec(),
            Key::Backspace => b"\x7f".to_vec(),
            Key::Up => b"\x1b[A".to_vec(),
            Key::Down => b"\x1b[B".to_vec(),
            Key::Right => b"\x1b[C".to_vec(),
            Key::Left => b"\x1b[D".to_vec(),
            Key::Ctrl(c) => vec![(c.to_ascii_lowercase() as u8) & 0x1f],
        }
    }
}

pub struct Pty {
    child: Box<dyn Child + Send + Sync>,
    master: Box<dyn MasterPty + Send>,
    writer: Box<dyn Write + Send>,
    output: Arc<Mutex<Output>>,
    timeout: Duration,
    shown: String,
}

/// How to start the program.
pub struct PtyCommand {
    cmd: CommandBuilder,
    rows: u16,
    cols: u16,
    shown: String,
}

impl PtyCommand {
    /// The binary with this store and home, in `cwd`, on an 80×24 terminal.
    pub fn new(store: &Path, home: &Path, cwd: &Path) -> PtyCommand {
        let mut cmd = CommandBuilder::new(BIN);
        let inherited: Vec<String> = std::env::vars_os()
            .filter_map(|(k, _)| k.into_string().ok())
            .filter(|k| k.starts_with("KARAPACE_"))
            .collect();
        for key in inherited {
            cmd.env_remove(key);
        }
        for key in ["XDG_DATA_HOME", "XDG_CONFIG_HOME", "NO_COLOR"] {
            cmd.env_remove(key);
        }
        cmd.env("KARAPACE_STORE", store);
        cmd.env("HOME", home);
        cmd.env("TERM", "xterm-256color");
        cmd.cwd(cwd);
        PtyCommand {
            cmd,
            rows: 24,
            cols: 80,
            shown: String::from("karapace-tui"),
        }
    }

    /// `bin` run as `user` through runuser(1) with only `PATH`, `TERM=xterm-256color` and
    /// `vars` in its environment, in `cwd`, on an 80×24 terminal.
    pub fn as_user(user: &str, bin: &Path, vars: &[(&str, &Path)], cwd: &Path) -> PtyCommand {
        let mut cmd = CommandBuilder::new("runuser");
        cmd.args(["-u", user, "--", "env", "-i"]);
        cmd.arg(format!(
            "PATH={}",
            std::env::var("PATH").unwrap_or_default()
        ));
        cmd.arg("TERM=xterm-256color");
        for (key, value) in vars {
            cmd.arg(format!("{key}={}", value.display()));
        }
        cmd.arg(bin);
        cmd.cwd(cwd);
        PtyCommand {
            cmd,
            rows: 24,
            cols: 80,
            shown: format!("runuser -u {user} -- {}", bin.display()),
        }
    }

    pub fn arg(mut self, arg: &str) -> PtyCommand {
        self.cmd.arg(arg);
        self.shown.push(' ');
        self.shown.push_str(arg);
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> PtyCommand {
        self.cmd.env(key, value);
        self
    }

    pub fn size(mut self, rows: u16, cols: u16) -> PtyCommand {
        self.rows = rows;
        self.cols = cols;
        self
    }

    pub fn spawn(self) -> Pty {
        let size = PtySize {
            rows: self.rows,
            cols: self.cols,
            pixel_width: 0,
            pixel_height: 0,
        };
        let pair = native_pty_system().openpty(size).expect("open a pty");
        let child = pair
            .slave
            .spawn_command(self.cmd)
            .unwrap_or_else(|e| panic!("spawn `{}` on a pty: {e}", self.shown));
        // Only the child may hold the terminal's slave side, so that its exit ends our reads.
        drop(pair.slave);
        let mut reader = pair.master.try_clone_reader().expect("pty reader");
        let writer = pair.master.take_writer().expect("pty writer");
        let output = Arc::new(Mutex::new(Output {
            parser: vt100::Parser::new(self.rows, self.cols, 0),
            raw: Vec::new(),
            eof: false,
        }));
        let sink = Arc::clone(&output);
        thread::spawn(move || {
            let mut buf = [0u8; 8192];
            loop {
                // EIO once the child and its terminal are gone: the same as end of file.
                let n = reader.read(&mut buf).unwrap_or(0);
                let mut out = lock(&sink);
                if n == 0 {
                    out.eof = true;
                    return;
                }
                out.parser.process(&buf[..n]);
                out.raw.extend_from_slice(&buf[..n]);
            }
        });
        Pty {
            child,
            master: pair.master,
            writer,
            output,
            timeout: DEFAULT_TIMEOUT,
            shown: self.shown,
        }
    }
}

fn lock(m: &Mutex<Output>) -> MutexGuard<'_, Output> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Pty {
    /// Type text (each character as its UTF-8 bytes).
    pub fn send(&mut self, text: &str) {
        self.write(text.as_bytes());
    }

    pub fn key(&mut self, key: Key) {
        self.write(&key.bytes());
    }

    fn write(&mut self, bytes: &[u8]) {
        self.writer
            .write_all(bytes)
            .and_then(|()| self.writer.flush())
            .unwrap_or_else(|e| panic!("write to `{}`: {e}\n{}", self.shown, self.dump()));
    }

    /// The screen's text, row by row.
    pub fn screen(&self) -> String {
        lock(&self.output).parser.screen().contents()
    }

    /// Everything the program wrote, escape codes included.
    pub fn raw(&self) -> Vec<u8> {
        lock(&self.output).raw.clone()
    }

    pub fn resize(&mut self, rows: u16, cols: u16) {
        self.master
            .resize(PtySize {
                rows,
                cols,
                pixel_width: 0,
                pixel_height: 0,
            })
            .expect("resize the pty");
        lock(&self.output).parser.set_size(rows, cols);
    }

    /// Wait until `ok` holds for the screen; on timeout, fail with `what` and the screen.
    #[track_caller]
    pub fn wait_until(&mut self, what: &str, ok: impl Fn(&vt100::Screen) -> bool) {
        let deadline = Instant::now() + self.timeout;
        loop {
            {
                let out = lock(&self.output);
                if ok(out.parser.screen()) {
                    return;
                }
                if out.eof {
                    drop(out);
                    panic!(
                        "`{}` ended while waiting for {what}\n{}",
                        self.shown,
                        self.dump()
                    );
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "`{}`: no {what} after {:?}\n{}",
                    self.shown,
                    self.timeout,
                    self.dump()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Wait until the screen shows `text`.
    #[track_caller]
    pub fn wait_for(&mut self, text: &str) {
        self.wait_until(&format!("`{text}` on the screen"), |s| {
            s.contents().contains(text)
        });
    }

    /// Wait until the screen no longer shows `text`.
    #[track_caller]
    pub fn wait_gone(&mut self, text: &str) {
        self.wait_until(&format!("`{text}` gone from the screen"), |s| {
            !s.contents().contains(text)
        });
    }

    /// Wait for the program to exit and for its output to end; returns its status.
    #[track_caller]
    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + self.timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    self.wait_eof(deadline);
                    return status;
                }
                Ok(None) if Instant::now() > deadline => {
                    panic!("`{}` did not exit\n{}", self.shown, self.dump())
                }
                Ok(None) => thread::sleep(Duration::from_millis(20)),
                Err(e) => panic!("wait for `{}`: {e}", self.shown),
            }
        }
    }

    fn wait_eof(&self, deadline: Instant) {
        while !lock(&self.output).eof && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// The screen and the end of the raw output, for failure messages.
    pub fn dump(&self) -> String {
        let out = lock(&self.output);
        let mut s = String::from("--- screen ---\n");
        for (i, row) in out.parser.screen().rows(0, u16::MAX).enumerate() {
            let _infallible = writeln!(s, "{i:2}|{row}");
        }
        let tail = &out.raw[out.raw.len().saturating_sub(600)..];
        let _infallible = write!(
            s,
            "--- last raw bytes ---\n{:?}",
            String::from_utf8_lossy(tail)
        );
        s
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        // A test that failed half-way leaves the program running: end it.
        if let Ok(None) = self.child.try_wait() {
            let _already_gone = self.child.kill();
            let _reaped = self.child.wait();
        }
    }
}

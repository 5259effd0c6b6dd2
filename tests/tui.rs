//! The terminal UI end to end: the real binary on a pseudo-terminal, driven by keys and read
//! through a vt100 parser, as a person would see it.

mod util;

use std::path::Path;

use util::pty::{Key, Pty, PtyCommand};
use util::Fixture;

/// The TUI on an 80×24 terminal, once its header is up.
fn open(fx: &Fixture) -> Pty {
    let mut tui = PtyCommand::new(&fx.store(), &fx.home(), fx.root()).spawn();
    tui.wait_for("karapace-tui");
    tui
}

/// The rows of the environment table: between its title line and the details pane.
fn list_rows(screen: &str) -> Vec<String> {
    screen
        .lines()
        .skip_while(|l| !l.contains("Environments ("))
        .skip(2)
        .take_while(|l| !l.contains("Details") && !l.contains(" Log "))
        .map(str::to_string)
        .collect()
}

fn row_of<'a>(rows: &'a [String], name: &str) -> Option<&'a String> {
    rows.iter()
        .find(|r| r.split_whitespace().next() == Some(name))
}

/// Build `dir` through the `b` prompt and wait for its row.
fn build_with_prompt(tui: &mut Pty, dir: &Path, name: &str) {
    tui.send("b");
    tui.wait_for("Build an environment");
    tui.key(Key::Ctrl('u'));
    tui.send(&dir.display().to_string());
    tui.key(Key::Enter);
    tui.wait_until(&format!("a built row for {name}"), |s| {
        let rows = list_rows(&s.contents());
        row_of(&rows, name).is_some_and(|r| r.contains("built") && r.contains("mock"))
    });
}

#[test]
fn open_build_watch_filter_help_and_quit() {
    let fx = Fixture::new();
    let alpha = fx.write_manifest("alpha", "rolling", &["git"]);
    let beta = fx.write_manifest("beta", "rolling", &["curl"]);
    let mut tui = open(&fx);

    // First run: what the tool does and the next step; the backends probed on a worker.
    tui.wait_for("No environments yet");
    tui.wait_for("mock ok");

    // A build from a path prompt streams its log lines into the log pane.
    build_with_prompt(&mut tui, &alpha, "alpha");
    tui.wait_for("[build alpha] mock: installing git");
    // Its size is measured on a worker and fills the SIZE column.
    tui.wait_until("a size in alpha's row", |s| {
        let rows = list_rows(&s.contents());
        row_of(&rows, "alpha").is_some_and(|r| !r.contains('…') && r.contains('B'))
    });
    tui.wait_for("[build alpha] built: ");
    tui.wait_for("Details: alpha");

    // A second one from the command palette.
    tui.send(":");
    tui.wait_for("Command");
    tui.send(&format!("build {}", beta.display()));
    tui.key(Key::Enter);
    tui.wait_for("[build beta] mock: installing curl");
    tui.wait_for("Environments (2)");

    // `/` filters as you type; Enter keeps the filter, Esc clears it.
    tui.send("/bet");
    tui.wait_for("Environments (1/2)");
    let rows = list_rows(&tui.screen());
    assert!(row_of(&rows, "beta").is_some(), "{}", tui.dump());
    assert!(row_of(&rows, "alpha").is_none(), "{}", tui.dump());
    tui.key(Key::Enter);
    tui.wait_for("Details: beta");
    tui.key(Key::Esc);
    tui.wait_for("Environments (2)");

    // `?` shows the keys, generated from the key map; Esc closes it.
    tui.send("?");
    tui.wait_for(" Keys ");
    tui.wait_for("build a manifest (path prompt)");
    tui.key(Key::Esc);
    tui.wait_gone(" Keys ");

    // `q` quits, the terminal restored: the last thing written leaves the alternate screen.
    tui.send("q");
    let status = tui.wait_exit();
    assert!(status.success(), "exit status {status:?}\n{}", tui.dump());
    let raw = tui.raw();
    assert!(
        raw.ends_with(b"\x1b[?1049l"),
        "the output does not end by leaving the alternate screen\n{}",
        tui.dump()
    );
}

/// The last row of the screen (the status bar).
fn last_row(screen: &vt100::Screen) -> String {
    let (rows, cols) = screen.size();
    screen.contents_between(rows - 1, 0, rows - 1, cols)
}

#[test]
fn a_failed_build_shows_the_error_and_the_ui_carries_on() {
    let fx = Fixture::new();
    let bad = fx.path("bad");
    std::fs::create_dir(&bad).expect("mkdir");
    std::fs::write(bad.join("karapace.toml"), "manifest_version = 99\n").expect("write");
    let mut tui = open(&fx);
    tui.wait_for("No environments yet");
    tui.send(":");
    tui.wait_for("Command");
    tui.send(&format!("build {}", bad.display()));
    tui.key(Key::Enter);
    tui.wait_for("build bad failed");
    tui.wait_for("[build bad] error:");
    tui.key(Key::Esc);
    tui.wait_gone("build bad failed");
    // Still responsive, and Ctrl-C quits cleanly too.
    tui.send("?");
    tui.wait_for(" Keys ");
    tui.key(Key::Ctrl('c'));
    let status = tui.wait_exit();
    assert!(status.success(), "{status:?}\n{}", tui.dump());
    assert!(tui.raw().ends_with(b"\x1b[?1049l"), "{}", tui.dump());
}

#[test]
fn destroy_asks_first_and_the_screen_reflows_on_resize() {
    let fx = Fixture::new();
    fx.write_manifest("alpha", "rolling", &["git"]);
    fx.build("alpha");
    let mut tui = open(&fx);
    tui.wait_for("Details: alpha");
    tui.send("d");
    tui.wait_for("Destroy alpha?");
    tui.send("n");
    tui.wait_gone("Destroy alpha?");
    assert_eq!(fx.list().len(), 1, "cancelled: nothing destroyed");
    tui.send("d");
    tui.wait_for("Destroy alpha?");
    tui.send("y");
    tui.wait_for("[destroy alpha] destroyed:");
    tui.wait_for("No environments yet");
    assert!(fx.list().is_empty());

    // A bigger terminal: the same screen, laid out again to the new size.
    tui.resize(40, 120);
    tui.wait_until("the status bar on the last row of 40", |s| {
        last_row(s).contains("q quit") && s.size() == (40, 120)
    });
    tui.resize(24, 80);
    tui.wait_until("the status bar on the last row of 24", |s| {
        last_row(s).contains("q quit")
    });
    tui.send("q");
    assert!(tui.wait_exit().success(), "{}", tui.dump());
}

#[test]
fn no_color_writes_no_colour_codes() {
    let fx = Fixture::new();
    let mut tui = PtyCommand::new(&fx.store(), &fx.home(), fx.root())
        .env("NO_COLOR", "1")
        .spawn();
    tui.wait_for("No environments yet");
    tui.wait_for("mock ok");
    tui.send("q");
    assert!(tui.wait_exit().success(), "{}", tui.dump());
    let raw = String::from_utf8_lossy(&tui.raw()).into_owned();
    // Colours are SGR 30–37/90–97 or 38;… (and backgrounds 40–47/100–107 or 48;…).
    for code in ["[38;", "[48;", ";38;", ";48;"] {
        assert!(
            !raw.contains(code),
            "colour sequence {code:?} with NO_COLOR=1"
        );
    }
    assert!(raw.contains("\x1b[1m"), "bold still marks headings");
}

#[test]
fn the_ui_stays_responsive_while_a_slow_build_runs() {
    let fx = Fixture::new();
    let packages = ["git", "curl", "vim", "make", "tmux"];
    let slow = fx.write_manifest("slow", "rolling", &packages);
    // Each mock build step sleeps this long: after the first package, seconds remain for the
    // keys below.
    let mut tui = PtyCommand::new(&fx.store(), &fx.home(), fx.root())
        .env("KARAPACE_MOCK_DELAY_MS", "600")
        .spawn();
    tui.wait_for("No environments yet");
    tui.send(":");
    tui.wait_for("Command");
    tui.send(&format!("build {}", slow.display()));
    tui.key(Key::Enter);
    // The job line with its spinner, then the install gauge from the engine's progress events.
    tui.wait_until("the running build's job line", |s| {
        last_rows(s, 2).contains("build slow")
    });
    tui.wait_for("installing packages [");
    // Keys work meanwhile: help opens and closes, and quitting asks first.
    tui.send("?");
    tui.wait_for(" Keys ");
    tui.key(Key::Esc);
    tui.wait_gone(" Keys ");
    tui.send("q");
    tui.wait_for("Quit?");
    tui.wait_for("Still running: build slow");
    tui.send("n");
    tui.wait_gone("Quit?");
    tui.wait_for("[build slow] built: ");
    tui.send("q");
    assert!(tui.wait_exit().success(), "{}", tui.dump());
}

/// The last `n` rows of the screen, joined.
fn last_rows(screen: &vt100::Screen, n: u16) -> String {
    let (rows, cols) = screen.size();
    screen.contents_between(rows - n, 0, rows - 1, cols)
}

#[test]
fn the_prerequisite_screen_lists_every_check_and_runs_them_again() {
    let fx = Fixture::new();
    let mut tui = open(&fx);
    tui.wait_for("No environments yet");
    tui.send("p");
    tui.wait_for(" Prerequisites ");
    tui.wait_for("namespace (the default)");
    // The namespace backend's checks, each with a status word (readable without colour).
    for title in [
        "user namespaces",
        "kernel overlayfs",
        "fuse-overlayfs",
        "id mapping",
    ] {
        tui.wait_until(&format!("the {title} check with its status"), |s| {
            s.contents().lines().any(|l| {
                l.contains(title) && (l.contains("ok") || l.contains("warn") || l.contains("FAIL"))
            })
        });
    }
    tui.wait_for("store (every backend)");
    tui.send("r");
    tui.wait_for("namespace (the default)");
    tui.send("G");
    tui.wait_for("mock — can run here");
    tui.key(Key::Esc);
    tui.wait_for("No environments yet");
    // `:doctor` opens the same screen.
    tui.send(":");
    tui.wait_for("Command");
    tui.send("doctor");
    tui.key(Key::Enter);
    tui.wait_for(" Prerequisites ");
    tui.send("q");
    assert!(tui.wait_exit().success(), "{}", tui.dump());
}

#[test]
fn a_template_edited_fixed_saved_and_built_in_the_editor() {
    let fx = Fixture::new();
    let dir = fx.path("edited");
    let mut tui = open(&fx);
    tui.wait_for("No environments yet");
    tui.send("E");
    tui.wait_for("New manifest in the editor");
    tui.key(Key::Ctrl('u'));
    tui.send(&dir.display().to_string());
    tui.key(Key::Enter);
    tui.wait_for("template minimal");
    tui.wait_for("✓ valid");
    // Ctrl-End (CSI 1;5F): the end of the last line, `backend = "namespace"` (line 12).
    tui.send("\x1b[1;5F");
    tui.key(Key::Enter);
    tui.send("oops");
    tui.wait_for("✗ line 13, column 5:");
    for _ in 0.."oops".len() + 1 {
        tui.key(Key::Backspace);
    }
    tui.wait_for("✓ valid");
    // `namespace"` becomes `mock"`, then a comment in other scripts.
    for _ in 0.."namespace\"".len() {
        tui.key(Key::Backspace);
    }
    tui.send("mock\"");
    tui.key(Key::Enter);
    tui.send("# Grüße, 漢字 🦀");
    tui.wait_for("backend mock");
    assert!(!dir.join("karapace.toml").exists(), "written before saving");
    // Save and build in one key; the build's log streams under the editor.
    tui.key(Key::Ctrl('b'));
    tui.wait_for("[build edited] built: ");
    let saved = std::fs::read_to_string(dir.join("karapace.toml")).expect("saved manifest");
    assert!(
        saved.ends_with("backend = \"mock\"\n# Grüße, 漢字 🦀\n"),
        "{saved}"
    );
    tui.key(Key::Esc);
    tui.wait_until("a built row for edited", |s| {
        let rows = list_rows(&s.contents());
        row_of(&rows, "edited").is_some_and(|r| r.contains("built") && r.contains("mock"))
    });
    tui.send("q");
    assert!(tui.wait_exit().success(), "{}", tui.dump());
}

#[test]
fn a_running_build_is_cancelled_with_x_and_leaves_nothing() {
    let fx = Fixture::new();
    // Slow enough (each step waits) to be caught while it installs.
    let slow = fx.write_manifest("slow", "rolling", &["curl", "git", "vim", "zsh"]);
    let mut tui = PtyCommand::new(&fx.store(), &fx.home(), fx.root())
        .env("KARAPACE_MOCK_DELAY_MS", "700")
        .spawn();
    tui.wait_for("No environments yet");
    tui.send(":");
    tui.wait_for("Command");
    tui.send(&format!("build {}", slow.display()));
    tui.key(Key::Enter);
    tui.wait_for("[build slow] mock: installing");
    tui.wait_for("X cancel");
    tui.send("X");
    tui.wait_for("cancelling: what the build did so far is rolled back");
    tui.wait_for("build cancelled: everything it had done was rolled back");
    tui.wait_for("build slow failed");
    tui.key(Key::Esc);
    tui.wait_gone("build slow failed");
    tui.wait_for("No environments yet");
    tui.key(Key::Ctrl('c'));
    let status = tui.wait_exit();
    assert!(status.success(), "{status:?}\n{}", tui.dump());
    let envs = fx.store().join("envs");
    let left = std::fs::read_dir(&envs).map_or(0, |d| d.count());
    assert_eq!(left, 0, "an environment was left in {}", envs.display());
}

#[test]
fn the_mouse_is_reported_only_when_turned_on_and_switched_off_on_the_way_out() {
    let fx = Fixture::new();
    // Off by default: the terminal is never asked to report the mouse.
    let mut tui = open(&fx);
    tui.wait_for("No environments yet");
    tui.key(Key::Ctrl('c'));
    assert!(tui.wait_exit().success(), "{}", tui.dump());
    assert!(!contains(&tui.raw(), b"\x1b[?1000h"), "{}", tui.dump());

    // On, from the user's config file: clicks and the wheel (1000, SGR 1006), no motion.
    let config = fx.home().join(".config/karapace");
    std::fs::create_dir_all(&config).expect("mkdir");
    std::fs::write(config.join("config.toml"), "[tui]\nmouse = true\n").expect("write");
    let mut tui = open(&fx);
    tui.wait_for("No environments yet");
    // A wheel notch over the screen (SGR report) is taken as input, not shown as text.
    tui.send("\x1b[<65;10;20M");
    tui.send("?");
    tui.wait_for(" Keys ");
    tui.key(Key::Esc);
    tui.wait_gone(" Keys ");
    tui.key(Key::Ctrl('c'));
    assert!(tui.wait_exit().success(), "{}", tui.dump());
    let raw = tui.raw();
    assert!(contains(&raw, b"\x1b[?1000h\x1b[?1006h"), "{}", tui.dump());
    assert!(!contains(&raw, b"\x1b[?1003h"), "motion is not asked for");
    assert!(
        raw.ends_with(b"\x1b[?1006l\x1b[?1000l\x1b[?25h\x1b[?1049l"),
        "mouse off, then the cursor, then the main screen: {}",
        tui.dump()
    );

    // A bad setting is said on the plain terminal before the screen changes.
    std::fs::write(config.join("config.toml"), "[tui]\nmouse = \"yes\"\n").expect("write");
    let mut tui = PtyCommand::new(&fx.store(), &fx.home(), fx.root()).spawn();
    let status = tui.wait_exit();
    assert!(!status.success());
    assert!(
        tui.dump().contains("[tui] mouse must be true or false"),
        "{}",
        tui.dump()
    );
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

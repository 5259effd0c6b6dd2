//! Terminal markers around `enter` (src/markers.rs): the real binary on a pseudo-terminal with
//! the mock backend, its raw output checked byte for byte.

mod util;

use util::pty::PtyCommand;
use util::Fixture;

fn uid() -> u32 {
    nix::unistd::getuid().as_raw()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// `enter web -- sh -c 'echo inside'` on a terminal, with `extra` environment variables.
fn enter_on_a_terminal(fx: &Fixture, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut cmd = PtyCommand::new(&fx.store(), &fx.home(), fx.root())
        .arg("enter")
        .arg("web")
        .arg("--")
        .arg("sh")
        .arg("-c")
        .arg("echo inside; exit 3");
    for (key, value) in extra {
        cmd = cmd.env(key, value);
    }
    let mut pty = cmd.spawn();
    let status = pty.wait_exit();
    assert_eq!(status.exit_code(), 3, "{}", pty.dump());
    pty.raw()
}

#[test]
fn enter_pushes_the_environment_before_the_shell_and_pops_it_after() {
    let fx = Fixture::new();
    fx.write_manifest("web", "rolling", &[]);
    fx.build("web");
    let raw = enter_on_a_terminal(&fx, &[]);
    let push = format!("\x1b]777;container;push;web;karapace;{}\x1b\\", uid());
    let pop = format!("\x1b]777;container;pop;;;{}\x1b\\", uid());
    let at_push = find(&raw, push.as_bytes()).expect("the push marker");
    let at_inside = find(&raw, b"inside").expect("the program's output");
    let at_pop = find(&raw, pop.as_bytes()).expect("the pop marker");
    assert!(at_push < at_inside && at_inside < at_pop, "{raw:?}");
    // The banners name the environment on the way in and out.
    let text = String::from_utf8_lossy(&raw);
    assert!(text.contains("entering web ("), "{text}");
    assert!(
        text.contains("left web (") && text.contains("(exit code 3)"),
        "{text}"
    );
}

#[test]
fn inside_tmux_the_markers_are_wrapped_for_passthrough() {
    let fx = Fixture::new();
    fx.write_manifest("web", "rolling", &[]);
    fx.build("web");
    let raw = enter_on_a_terminal(&fx, &[("TMUX", "/tmp/tmux-0/default,1,0")]);
    let push = format!(
        "\x1bPtmux;\x1b\x1b]777;container;push;web;karapace;{}\x1b\x1b\\\x1b\\",
        uid()
    );
    assert!(find(&raw, push.as_bytes()).is_some(), "{raw:?}");
    // Every OSC 777 is inside a passthrough (its ESC doubled), none bare.
    let bare = raw
        .windows(6)
        .enumerate()
        .filter(|(i, w)| *w == b"\x1b]777;" && (*i == 0 || raw[i - 1] != 0x1b))
        .count();
    assert_eq!(bare, 0, "{raw:?}");
}

#[test]
fn piped_output_gets_no_markers_and_no_banner() {
    let fx = Fixture::new();
    fx.write_manifest("web", "rolling", &[]);
    fx.build("web");
    let out = fx.run(&["enter", "web", "--", "sh", "-c", "echo inside"]);
    out.ok();
    assert_eq!(out.stdout(), "inside\n");
    assert!(!out.stderr.contains("entering web"), "{out:?}");
}

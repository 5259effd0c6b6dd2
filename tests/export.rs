//! Desktop and binary export through the CLI on the mock backend: `export`, `export --bin`,
//! `unexport`, `exports`, and `destroy` removing them. The host copies are read back with an
//! independent Desktop Entry parser (`freedesktop_entry_parser`) and their Exec lines split by
//! the specification's rules here, so the result is checked as a launcher would see it. A
//! namespace-backend case runs a wrapper in a real sandbox (gated like tests/namespace.rs).

mod util;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use freedesktop_entry_parser::Entry;
use serde_json::Value;
use util::{s, Fixture, BIN};

/// A built mock environment `apps` with a text editor, an icon in two sizes, and a hostile
/// desktop file inside.
fn env_with_apps(fx: &Fixture) -> (String, PathBuf) {
    fx.write_manifest("apps", "rolling", &[]);
    let id = s(&fx.build("apps"), "id");
    let root = fx.rootfs(&id);
    let apps = root.join("usr/share/applications");
    fs::create_dir_all(&apps).expect("mkdir");
    fs::write(
        apps.join("org.gnome.gedit.desktop"),
        "[Desktop Entry]\nType=Application\nName=Text Editor\nName[de]=Texteditor\n\
         Comment=Edit text files\nExec=gedit --new-window %U\nIcon=org.gnome.gedit\n\
         Categories=GNOME;Utility;TextEditor;\nMimeType=text/plain;\nStartupNotify=true\n\
         Actions=new-window;\n\n[Desktop Action new-window]\nName=New Window\n\
         Exec=gedit --new-window\n",
    )
    .expect("write desktop file");
    fs::write(apps.join("evil.desktop"), HOSTILE).expect("write hostile desktop file");
    for (size, ext) in [("48x48", "png"), ("scalable", "svg")] {
        let dir = root.join(format!("usr/share/icons/hicolor/{size}/apps"));
        fs::create_dir_all(&dir).expect("mkdir");
        fs::write(
            dir.join(format!("org.gnome.gedit.{ext}")),
            format!("icon {size}"),
        )
        .expect("write icon");
    }
    (id, root)
}

const HOSTILE: &str = "[Desktop Entry]\n\
    Type=Application\n\
    Name=Evil\\nExec=sh -c 'rm -rf ~'\\n[Desktop Entry]\\nX-GNOME-Autostart-enabled=true\n\
    Exec=evil \"$(touch /tmp/pwned)\" \"`id`\" ; %F %k\n\
    TryExec=/bin/sh\n\
    DBusActivatable=true\n\
    X-GNOME-Autostart-enabled=true\n\
    Hidden=false\n\
    Icon=../../../../.bashrc\n\
    Actions=x;\n\
    [Desktop Action x]\n\
    Name=X\n\
    Exec=sh -c \"echo \\\\$HOME\"\n\
    [X-Other]\n\
    Exec=/bin/sh\n";

fn data_home(fx: &Fixture) -> PathBuf {
    fx.home().join(".local/share")
}

/// Split an Exec value as the Desktop Entry Specification says (the string escapes were
/// undone by the parser): words separated by spaces, double-quoted words with `\"`, `` \` ``,
/// `\$`, `\\` escaped inside, `%%` a literal percent sign.
fn exec_argv(value: &str) -> Vec<String> {
    // freedesktop_entry_parser returns values as written; undo the string escapes first.
    let mut text = String::new();
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            text.push(c);
            continue;
        }
        match chars.next() {
            Some('s') => text.push(' '),
            Some('n') => text.push('\n'),
            Some('t') => text.push('\t'),
            Some('r') => text.push('\r'),
            Some('\\') => text.push('\\'),
            other => panic!("invalid escape {other:?} in {value:?}"),
        }
    }
    let mut args = Vec::new();
    let mut word: Option<String> = None;
    let mut quoted = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' if !quoted => {
                if let Some(w) = word.take() {
                    args.push(w);
                }
            }
            '"' => {
                quoted = !quoted;
                word.get_or_insert_with(String::new);
            }
            '\\' => {
                assert!(quoted, "a backslash outside quotes in {text:?}");
                let next = chars.next().expect("escaped character");
                assert!(matches!(next, '"' | '`' | '$' | '\\'), "escape \\{next}");
                word.get_or_insert_with(String::new).push(next);
            }
            '%' => {
                let next = chars.next().expect("field code");
                let w = word.get_or_insert_with(String::new);
                w.push('%');
                if next != '%' {
                    w.push(next);
                }
            }
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    assert!(!quoted, "unterminated quote in {text:?}");
    args.extend(word);
    args
}

fn prefix(fx: &Fixture, id: &str) -> Vec<String> {
    vec![
        BIN.to_string(),
        "--store".to_string(),
        fx.store().display().to_string(),
        "exec".to_string(),
        id.to_string(),
        "--".to_string(),
    ]
}

fn strings(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

#[test]
fn export_and_unexport_round_trip() {
    let fx = Fixture::new();
    let (id, _) = env_with_apps(&fx);
    // A base name finds the desktop file id.
    let done = fx.json(&["export", "apps", "gedit"]);
    let desktop = data_home(&fx).join("applications/org.gnome.gedit.desktop");
    assert_eq!(s(&done, "desktop_file"), desktop.display().to_string());

    let entry = Entry::parse_file(&desktop).expect("the host copy parses");
    let main = entry.section("Desktop Entry");
    assert_eq!(main.attr("Type"), Some("Application"));
    assert_eq!(main.attr("Name"), Some("Text Editor (on apps)"));
    assert_eq!(
        main.attr_with_param("Name", "de"),
        Some("Texteditor (on apps)")
    );
    assert_eq!(main.attr("Icon"), Some("org.gnome.gedit"));
    assert_eq!(main.attr("Categories"), Some("GNOME;Utility;TextEditor;"));
    assert_eq!(main.attr("X-Karapace-Env"), Some(id.as_str()));
    let mut want = prefix(&fx, &id);
    want.extend(strings(&["gedit", "--new-window", "%U"]));
    assert_eq!(exec_argv(main.attr("Exec").expect("Exec")), want);
    let action = entry.section("Desktop Action new-window");
    let mut want = prefix(&fx, &id);
    want.extend(strings(&["gedit", "--new-window"]));
    assert_eq!(exec_argv(action.attr("Exec").expect("action Exec")), want);

    let icons = data_home(&fx).join("icons/hicolor");
    for (size, ext) in [("48x48", "png"), ("scalable", "svg")] {
        let icon = icons.join(format!("{size}/apps/org.gnome.gedit.{ext}"));
        assert_eq!(
            fs::read_to_string(&icon).expect("icon copied"),
            format!("icon {size}")
        );
    }

    let rows = fx.json(&["exports"]);
    assert_eq!(rows.as_array().map(Vec::len), Some(1), "{rows}");
    assert_eq!(rows[0]["name"], "org.gnome.gedit");
    assert_eq!(rows[0]["kind"], "app");
    assert_eq!(rows[0]["present"], true);

    fx.run(&["unexport", "apps", "org.gnome.gedit"]).ok();
    assert!(!desktop.exists());
    assert!(!icons.join("48x48/apps/org.gnome.gedit.png").exists());
    assert!(!icons.join("scalable/apps/org.gnome.gedit.svg").exists());
    assert_eq!(fx.json(&["exports", "apps"]), Value::Array(Vec::new()));
    // Unexporting again names the problem.
    let out = fx.run(&["unexport", "apps", "gedit"]);
    out.expect_code(2);
    assert!(
        out.stderr.contains("nothing named `gedit` is exported"),
        "{out:?}"
    );
}

#[test]
fn a_hostile_desktop_file_cannot_inject_keys_or_commands() {
    let fx = Fixture::new();
    let (id, _) = env_with_apps(&fx);
    let done = fx.json(&["export", "apps", "evil"]);
    assert!(
        done["notes"][0]
            .as_str()
            .is_some_and(|n| n.contains("not a valid icon name")),
        "{done}"
    );
    let path = data_home(&fx).join("applications/evil.desktop");
    let entry = Entry::parse_file(&path).expect("the host copy parses");
    let mut sections: Vec<String> = entry.sections().map(|s| s.name().to_string()).collect();
    sections.sort();
    assert_eq!(sections, ["Desktop Action x", "Desktop Entry"]);
    let main = entry.section("Desktop Entry");
    let keys: Vec<String> = main.attrs().map(|a| a.name.to_string()).collect();
    for key in &keys {
        assert!(
            ["Type", "Name", "Exec", "Actions", "X-Karapace-Env"].contains(&key.as_str()),
            "unexpected key {key} in:\n{}",
            fs::read_to_string(&path).expect("read")
        );
    }
    assert_eq!(
        main.attr("Name"),
        Some("Evil\\nExec=sh -c 'rm -rf ~'\\n[Desktop Entry]\\nX-GNOME-Autostart-enabled=true (on apps)")
    );
    let mut want = prefix(&fx, &id);
    want.extend(strings(&["evil", "$(touch /tmp/pwned)", "`id`", ";", "%F"]));
    assert_eq!(exec_argv(main.attr("Exec").expect("Exec")), want);
    let mut want = prefix(&fx, &id);
    want.extend(strings(&["sh", "-c", "echo $HOME"]));
    assert_eq!(
        exec_argv(
            entry
                .section("Desktop Action x")
                .attr("Exec")
                .expect("Exec")
        ),
        want
    );
    // The icon path was not followed out of the icon directory.
    assert!(!fx.home().join(".bashrc").exists());
}

#[test]
fn destroy_removes_every_export_but_not_files_changed_since() {
    let fx = Fixture::new();
    let (id, root) = env_with_apps(&fx);
    fs::create_dir_all(root.join("usr/bin")).expect("mkdir");
    fs::write(root.join("usr/bin/tool"), "").expect("write");
    fx.run(&["export", "apps", "org.gnome.gedit"]).ok();
    fx.run(&["export", "apps", "evil"]).ok();
    fx.run(&["export", "--bin", "apps", "/usr/bin/tool"]).ok();
    fx.run(&[
        "export",
        "--bin",
        "apps",
        "/usr/bin/tool",
        "--name",
        "tool2",
    ])
    .ok();
    let bin = fx.home().join(".local/bin");
    assert!(bin.join("tool").exists() && bin.join("tool2").exists());
    // The user takes one file over and deletes another by hand.
    fs::write(bin.join("tool2"), "#!/bin/sh\necho mine\n").expect("write");
    let evil = data_home(&fx).join("applications/evil.desktop");
    fs::remove_file(&evil).expect("rm");
    let rows = fx.json(&["exports"]);
    assert_eq!(rows.as_array().map(Vec::len), Some(4), "{rows}");
    let missing: Vec<&Value> = rows
        .as_array()
        .expect("rows")
        .iter()
        .filter(|r| r["present"] == false)
        .collect();
    assert_eq!(missing.len(), 1, "{rows}");

    let out = fx.run(&["destroy", &id]);
    out.ok();
    assert!(out.stderr.contains("left in place"), "{out:?}");
    assert!(!data_home(&fx)
        .join("applications/org.gnome.gedit.desktop")
        .exists());
    assert!(!bin.join("tool").exists());
    assert_eq!(
        fs::read_to_string(bin.join("tool2")).expect("kept"),
        "#!/bin/sh\necho mine\n"
    );
    assert!(!data_home(&fx)
        .join("icons/hicolor/48x48/apps/org.gnome.gedit.png")
        .exists());
    assert_eq!(fx.json(&["exports"]), Value::Array(Vec::new()));
    assert!(!fx
        .store()
        .join("exports")
        .join(format!("{id}.json"))
        .exists());
    // The store stays clean for verify.
    fx.run(&["verify-store"]).ok();
}

#[test]
fn names_and_foreign_files_are_refused() {
    let fx = Fixture::new();
    let (_, root) = env_with_apps(&fx);
    for bad in ["../gedit", "a/b", "..", "-x", "a\nb", ""] {
        let out = fx.run(&["export", "apps", "--", bad]);
        out.expect_code(2);
        assert!(out.stderr.contains("invalid application name"), "{out:?}");
    }
    let out = fx.run(&["export", "apps", "nope"]);
    out.expect_code(2);
    assert!(
        out.stderr.contains("org.gnome.gedit"),
        "lists what exists: {out:?}"
    );
    // A desktop file the user made is never replaced.
    let apps = data_home(&fx).join("applications");
    fs::create_dir_all(&apps).expect("mkdir");
    fs::write(
        apps.join("org.gnome.gedit.desktop"),
        "[Desktop Entry]\nName=mine\n",
    )
    .expect("w");
    let out = fx.run(&["export", "apps", "gedit"]);
    out.expect_code(1);
    assert!(out.stderr.contains("not made by karapace-tui"), "{out:?}");
    assert_eq!(
        fs::read_to_string(apps.join("org.gnome.gedit.desktop")).expect("read"),
        "[Desktop Entry]\nName=mine\n"
    );
    // Nor a command.
    fs::create_dir_all(root.join("usr/bin")).expect("mkdir");
    fs::write(root.join("usr/bin/ls"), "").expect("write");
    let bin = fx.home().join(".local/bin");
    fs::create_dir_all(&bin).expect("mkdir");
    fs::write(bin.join("ls"), "mine").expect("write");
    let out = fx.run(&["export", "--bin", "apps", "/usr/bin/ls"]);
    out.expect_code(1);
    assert!(out.stderr.contains("not made by karapace-tui"), "{out:?}");
    assert_eq!(fs::read_to_string(bin.join("ls")).expect("read"), "mine");
    let out = fx.run(&["export", "--bin", "apps", "/usr/bin/missing"]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("does not exist in the environment"),
        "{out:?}"
    );
    let out = fx.run(&["export", "--bin", "apps", "usr/bin/ls"]);
    out.expect_code(2);
    assert!(out.stderr.contains("absolute path"), "{out:?}");
}

#[test]
fn the_default_store_is_not_named_in_the_command() {
    let fx = Fixture::new();
    let data = fx.path("data");
    let store = data.join("karapace");
    let cmd = |args: &[&str]| {
        fx.cmd(args)
            .env("XDG_DATA_HOME", &data)
            .env("KARAPACE_STORE", &store)
            .run()
    };
    fx.write_manifest("p", "rolling", &[]);
    let built = cmd(&["--json", "build", &fx.path("p").display().to_string()]);
    built.ok();
    let id = s(&built.json(), "id");
    let root = store.join("envs").join(&id).join("rootfs");
    fs::create_dir_all(root.join("usr/share/applications")).expect("mkdir");
    fs::write(
        root.join("usr/share/applications/x.desktop"),
        "[Desktop Entry]\nType=Application\nName=X\nExec=x\n",
    )
    .expect("write");
    cmd(&["export", "p", "x"]).ok();
    let entry = Entry::parse_file(data.join("applications/x.desktop")).expect("parse");
    assert_eq!(
        exec_argv(entry.section("Desktop Entry").attr("Exec").expect("Exec")),
        strings(&[BIN, "exec", &id, "--", "x"])
    );
}

/// The wrapper's output for tricky arguments: every argument arrives unchanged.
const TRICKY: &[&str] = &[
    "a b",
    "it's",
    "$HOME",
    "`id`",
    "\\",
    "new\nline",
    "\"quoted\"",
    "*",
    "ünï",
    "",
];

fn check_wrapper_output(wrapper: &Path, env: &[(&str, &Path)]) {
    let mut cmd = Command::new(wrapper);
    cmd.arg("%s|").args(TRICKY);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run the wrapper");
    assert!(out.status.success(), "{out:?}");
    let want: String = TRICKY.iter().map(|t| format!("{t}|")).collect();
    assert_eq!(String::from_utf8_lossy(&out.stdout), want, "{out:?}");
}

#[test]
fn a_wrapper_passes_tricky_arguments_unchanged() {
    let fx = Fixture::new();
    let (_, root) = env_with_apps(&fx);
    // The mock backend runs programs on the host: /usr/bin/printf must be in the
    // environment's tree for the export and on the host for the run.
    fs::create_dir_all(root.join("usr/bin")).expect("mkdir");
    fs::write(root.join("usr/bin/printf"), "").expect("write");
    let done = fx.json(&[
        "export",
        "--bin",
        "apps",
        "/usr/bin/printf",
        "--name",
        "p r'f",
    ]);
    let wrapper = PathBuf::from(s(&done, "path"));
    assert_eq!(wrapper, fx.home().join(".local/bin/p r'f"));
    check_wrapper_output(&wrapper, &[("HOME", &fx.home())]);
    fx.run(&["unexport", "--bin", "apps", "p r'f"]).ok();
    assert!(!wrapper.exists());
}

#[test]
fn a_wrapper_runs_its_program_in_a_namespace_environment() {
    let Some((fx, tarball)) = util::namespace_fixture("export", "a_wrapper_runs_in_namespace")
    else {
        return;
    };
    fs::create_dir_all(fx.path("deb")).expect("mkdir");
    fs::write(
        fx.path("deb/karapace.toml"),
        format!(
            "manifest_version = 1\n[base]\nimage = \"{}\"\n[runtime]\nbackend = \"namespace\"\n",
            tarball.display()
        ),
    )
    .expect("write manifest");
    fx.build("deb");
    let done = fx.json(&[
        "export",
        "--bin",
        "deb",
        "/usr/bin/printf",
        "--name",
        "deb-printf",
    ]);
    let wrapper = PathBuf::from(s(&done, "path"));
    check_wrapper_output(&wrapper, &[("HOME", &fx.home())]);
    // A program that is not in the image cannot be exported, whatever the host has.
    let out = fx.run(&["export", "--bin", "deb", "/usr/bin/cargo"]);
    out.expect_code(1);
}

fn write_gui_manifest(fx: &Fixture, dir: &str, apps: &[&str]) {
    let list: Vec<String> = apps.iter().map(|a| format!("{a:?}")).collect();
    fs::create_dir_all(fx.path(dir)).expect("mkdir");
    fs::write(
        fx.path(dir).join("karapace.toml"),
        format!(
            "manifest_version = 1\n[base]\nimage = \"rolling\"\n[gui]\napps = [{}]\n\
             [runtime]\nbackend = \"mock\"\n",
            list.join(", ")
        ),
    )
    .expect("write manifest");
}

#[test]
fn gui_apps_are_installed_locked_and_exported_on_build() {
    let fx = Fixture::new();
    write_gui_manifest(&fx, "gui", &["xterm", "gedit"]);
    let built = fx.build("gui");
    let id = s(&built, "id");
    let apps = data_home(&fx).join("applications");
    assert_eq!(
        built["exported"],
        serde_json::json!([
            apps.join("gedit.desktop").display().to_string(),
            apps.join("xterm.desktop").display().to_string()
        ])
    );
    let lock = fs::read_to_string(fx.path("gui/karapace.lock")).expect("lock");
    assert!(
        lock.contains("name = \"xterm\""),
        "pinned like a package: {lock}"
    );
    let entry = Entry::parse_file(apps.join("xterm.desktop")).expect("parse");
    let mut want = prefix(&fx, &id);
    want.push("xterm".to_string());
    assert_eq!(
        exec_argv(entry.section("Desktop Entry").attr("Exec").expect("Exec")),
        want
    );

    // An up-to-date build exports what went missing, and only that.
    fs::remove_file(apps.join("xterm.desktop")).expect("rm");
    let again = fx.build("gui");
    assert_eq!(
        again["exported"],
        serde_json::json!([apps.join("xterm.desktop").display().to_string()])
    );

    // A rebuild with a new id moves the exports to the new environment.
    fx.run(&["export", "--bin", "gui", "/etc/hostname", "--name", "hn"])
        .ok();
    write_gui_manifest(&fx, "gui", &["xterm", "gedit", "zed"]);
    let rebuilt = fx.cmd(["--json", "rebuild"]).arg(fx.path("gui")).run();
    rebuilt.ok();
    let new_id = s(&rebuilt.json(), "id");
    assert_ne!(new_id, id);
    let rows = fx.json(&["exports"]);
    let rows = rows.as_array().expect("rows");
    assert_eq!(rows.len(), 4, "{rows:?}");
    assert!(rows.iter().all(|r| r["env"] == new_id.as_str()), "{rows:?}");
    let entry = Entry::parse_file(apps.join("gedit.desktop")).expect("parse");
    assert_eq!(
        entry.section("Desktop Entry").attr("X-Karapace-Env"),
        Some(new_id.as_str())
    );
    let wrapper = fs::read_to_string(fx.home().join(".local/bin/hn")).expect("wrapper");
    assert!(
        wrapper.contains(&new_id) && !wrapper.contains(&id),
        "{wrapper}"
    );
}

#[test]
fn a_failed_gui_export_fails_the_build_but_keeps_the_environment() {
    let fx = Fixture::new();
    write_gui_manifest(&fx, "gui", &["xterm"]);
    let apps = data_home(&fx).join("applications");
    fs::create_dir_all(&apps).expect("mkdir");
    fs::write(apps.join("xterm.desktop"), "[Desktop Entry]\nName=my own\n").expect("write");
    let out = fx.cmd(["build"]).arg(fx.path("gui")).run();
    out.expect_code(1);
    assert!(
        out.stderr
            .contains("is built, but exporting its [gui] apps failed")
            && out.stderr.contains("xterm")
            && out.stderr.contains("not made by karapace-tui"),
        "{out:?}"
    );
    assert_eq!(fx.list().len(), 1, "the environment is built");
    // Once the cause is gone, an up-to-date build completes the export.
    fs::remove_file(apps.join("xterm.desktop")).expect("rm");
    let built = fx.build("gui");
    assert_eq!(
        built["exported"],
        serde_json::json!([apps.join("xterm.desktop").display().to_string()])
    );
}

#[test]
fn gui_apps_of_a_namespace_environment_come_from_the_package() {
    let Some((fx, tarball)) = util::namespace_fixture("export", "gui_apps_of_a_namespace_env")
    else {
        return;
    };
    // htop ships a desktop entry with icons; hello has none (a warning, not a failure).
    fs::create_dir_all(fx.path("deb")).expect("mkdir");
    fs::write(
        fx.path("deb/karapace.toml"),
        format!(
            "manifest_version = 1\n[base]\nimage = \"{}\"\n[gui]\napps = [\"hello\", \"htop\"]\n\
             [runtime]\nbackend = \"namespace\"\n",
            tarball.display()
        ),
    )
    .expect("write manifest");
    // Unpacking the image and installing from the mirror in a debug build can take a while.
    let out = fx
        .cmd(["--json", "build"])
        .arg(fx.path("deb"))
        .timeout(std::time::Duration::from_secs(300))
        .run();
    out.ok();
    assert!(
        out.stderr
            .contains("[gui] app `hello`: the package installed no desktop entry"),
        "{out:?}"
    );
    let id = s(&out.json(), "id");
    let desktop = data_home(&fx).join("applications/htop.desktop");
    let entry = Entry::parse_file(&desktop).expect("parse");
    let main = entry.section("Desktop Entry");
    let argv = exec_argv(main.attr("Exec").expect("Exec"));
    assert_eq!(argv[..6], prefix(&fx, &id)[..], "{argv:?}");
    assert_eq!(argv[6], "htop");
    assert_eq!(main.attr("Icon"), Some("htop"));
    let icons = data_home(&fx).join("icons");
    assert!(
        icons.join("hicolor/scalable/apps/htop.svg").is_file() || icons.join("htop.png").is_file(),
        "htop's icon was copied"
    );
    // The program the entry runs is the environment's.
    let version = fx.run(&["exec", "deb", "--", "htop", "--version"]);
    assert!(version.ok().stdout().starts_with("htop "), "{version:?}");
}

/// As the unprivileged user `karapace-test` (created if needed, as tests/packages.rs does):
/// an application made inside a rootless namespace environment is exported, and the command
/// its host copy names, run as a launcher would, runs it inside; a wrapper passes tricky
/// arguments through.
#[test]
fn rootless_exports_run_inside_the_environment() {
    const TEST: &str = "rootless_exports_run_inside_the_environment";
    const USER: &str = "karapace-test";
    if !nix::unistd::geteuid().is_root() {
        util::visible(&format!(
            "{TEST}: already unprivileged; a_wrapper_runs_its_program_in_a_namespace_environment \
             covers this user"
        ));
        return;
    }
    let Some(tarball) = std::env::var_os("KARAPACE_TEST_ROOTFS_TARBALL").map(PathBuf::from) else {
        util::skip(
            "export",
            TEST,
            "KARAPACE_TEST_ROOTFS_TARBALL is not set (.ci/run makes it)",
        );
        return;
    };
    let exists = Command::new("id").args(["-u", USER]).output();
    if !exists.is_ok_and(|o| o.status.success()) {
        let made = Command::new("useradd").args(["-m", USER]).status();
        if !made.is_ok_and(|s| s.success()) {
            util::skip("export", TEST, &format!("cannot create the user {USER}"));
            return;
        }
    }
    let dir = tempfile::Builder::new()
        .prefix("karapace-export-rootless-")
        .tempdir()
        .expect("tempdir");
    let root = dir.path();
    let bin = root.join("karapace-tui");
    fs::copy(BIN, &bin).expect("copy binary");
    let project = root.join("deb");
    fs::create_dir_all(&project).expect("mkdir");
    fs::write(
        project.join("karapace.toml"),
        format!(
            "manifest_version = 1\n[base]\nimage = \"{}\"\n[runtime]\nbackend = \"namespace\"\n",
            tarball.display()
        ),
    )
    .expect("write manifest");
    let chown = Command::new("chown")
        .args(["-R", USER])
        .arg(root)
        .status()
        .expect("chown");
    assert!(chown.success());
    let as_user = |program: &Path, args: &[&str]| {
        let out = Command::new("runuser")
            .args(["-u", USER, "--", "env", "-i"])
            .arg(format!(
                "PATH={}",
                std::env::var("PATH").unwrap_or_default()
            ))
            .arg(format!("HOME={}", root.display()))
            .arg(format!("KARAPACE_STORE={}", root.join("store").display()))
            .arg(format!("XDG_CONFIG_HOME={}", root.join("config").display()))
            .arg(program)
            .args(args)
            .current_dir(root)
            .output()
            .expect("runuser");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let doctor = as_user(&bin, &["--json", "doctor"]);
    if doctor.1.contains("user namespaces are not") || !doctor.1.contains("\"namespace\"") {
        util::skip("export", TEST, &format!("doctor as {USER}: {}", doctor.1));
        return;
    }
    let build = as_user(&bin, &["build", "deb"]);
    assert_eq!(build.0, Some(0), "{build:?}");
    // An application installed inside (into the environment's upper layer, by the sandbox).
    let install = as_user(
        &bin,
        &[
            "exec",
            "deb",
            "--",
            "sh",
            "-c",
            "mkdir -p /usr/share/applications && printf '[Desktop Entry]\\nType=Application\\n\
             Name=T\\nExec=sh -c \"cat /etc/debian_version\"\\n' > \
             /usr/share/applications/t.desktop",
        ],
    );
    assert_eq!(install.0, Some(0), "{install:?}");
    let export = as_user(&bin, &["export", "deb", "t"]);
    assert_eq!(export.0, Some(0), "{export:?}");
    let desktop = root.join(".local/share/applications/t.desktop");
    let entry = Entry::parse_file(&desktop).expect("parse");
    let argv = exec_argv(entry.section("Desktop Entry").attr("Exec").expect("Exec"));
    assert_eq!(
        argv[1..3],
        ["--store", &root.join("store").display().to_string()]
    );
    let args: Vec<&str> = argv[1..].iter().map(String::as_str).collect();
    let launched = as_user(Path::new(&argv[0]), &args);
    assert_eq!(launched.0, Some(0), "{launched:?}");
    assert!(
        launched.1.trim_start().starts_with("12"),
        "the environment's /etc/debian_version (bookworm): {launched:?}"
    );

    let wrapper = as_user(&bin, &["export", "--bin", "deb", "/usr/bin/printf"]);
    assert_eq!(wrapper.0, Some(0), "{wrapper:?}");
    let mut args = vec!["%s|"];
    args.extend(TRICKY);
    let out = as_user(&root.join(".local/bin/printf"), &args);
    let want: String = TRICKY.iter().map(|t| format!("{t}|")).collect();
    assert_eq!(out.1, want, "{out:?}");
    let destroy = as_user(&bin, &["destroy", "deb"]);
    assert_eq!(destroy.0, Some(0), "{destroy:?}");
    assert!(!desktop.exists() && !root.join(".local/bin/printf").exists());
}

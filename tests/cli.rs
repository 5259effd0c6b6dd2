//! The CLI contract: `new`, `build` output and naming, `list`, ENV resolution, manifest
//! errors, store format, help/man/completions and broken pipes.

mod util;

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;

use serde_json::Value;
use util::{s, Fixture};

const TEMPLATES: [&str; 5] = ["minimal", "dev", "gui-dev", "rust-dev", "ubuntu-dev"];

fn template_text(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/assets/templates/{name}.toml",
        env!("CARGO_MANIFEST_DIR")
    );
    fs::read(&path).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

fn is_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[test]
fn new_writes_every_template_byte_for_byte() {
    let fx = Fixture::new();
    for name in TEMPLATES {
        let dir = fx.path(&format!("t-{name}"));
        fx.cmd(["new", "--template", name]).arg(&dir).run().ok();
        let written = fs::read(dir.join("karapace.toml")).expect("template written");
        assert!(written == template_text(name), "template {name} differs");
    }
    // The default template is `minimal`, written into the current directory.
    let cwd = fx.path("default");
    fs::create_dir(&cwd).expect("mkdir");
    fx.cmd(["new"]).cwd(&cwd).run().ok();
    assert!(fs::read(cwd.join("karapace.toml")).expect("written") == template_text("minimal"));
}

#[test]
fn new_refuses_to_overwrite_without_force() {
    let fx = Fixture::new();
    let dir = fx.path("p");
    fs::create_dir(&dir).expect("mkdir");
    let manifest = dir.join("karapace.toml");
    fs::write(&manifest, "# mine\n").expect("write");
    let out = fx.cmd(["new", "--template", "dev"]).arg(&dir).run();
    out.expect_code(1);
    assert!(out.stderr.contains("--force"), "{out:?}");
    assert_eq!(fs::read_to_string(&manifest).expect("read"), "# mine\n");
    fx.cmd(["new", "--template", "dev", "--force"])
        .arg(&dir)
        .run()
        .ok();
    assert!(fs::read(&manifest).expect("read") == template_text("dev"));
}

#[test]
fn new_with_unknown_template_is_a_usage_error() {
    let fx = Fixture::new();
    let dir = fx.path("p");
    let out = fx.cmd(["new", "--template", "nope"]).arg(&dir).run();
    out.expect_code(2);
    assert!(out.stderr.contains("nope"), "{out:?}");
    assert!(!dir.join("karapace.toml").exists());
}

#[test]
fn build_json_is_one_document_and_the_lock_goes_beside_the_manifest() {
    let fx = Fixture::new();
    fx.write_manifest("proj", "rolling", &["git", "curl"]);
    let elsewhere = fx.path("elsewhere");
    fs::create_dir(&elsewhere).expect("mkdir");
    let out = fx
        .cmd(["--json", "build"])
        .arg(fx.path("proj/karapace.toml"))
        .cwd(&elsewhere)
        .run();
    out.ok();
    let doc = out.json();
    let id = s(&doc, "id");
    assert_eq!(id.len(), 64, "{doc}");
    assert!(is_hex(&id), "{doc}");
    assert_eq!(s(&doc, "short_id"), id[..12]);
    assert_eq!(doc["name"], "proj");
    assert_eq!(doc["state"], "built");
    assert_eq!(doc["backend"], "mock");
    assert!(!s(&doc, "image").is_empty());
    assert_eq!(doc["built"], true);
    // Logs went to stderr.
    assert!(out.stderr.contains(&id[..12]), "{out:?}");
    let lock_path = fx.path("proj/karapace.lock");
    let lock = fs::read(&lock_path).expect("lock written beside the manifest");
    assert!(!elsewhere.join("karapace.lock").exists());
    assert!(String::from_utf8_lossy(&lock).contains(&id));

    // Second build: nothing to do, same id, the lock untouched.
    let out = fx
        .cmd(["--json", "build"])
        .arg(fx.path("proj"))
        .cwd(&elsewhere)
        .run();
    out.ok();
    let again = out.json();
    assert_eq!(again["built"], false);
    assert_eq!(s(&again, "id"), id);
    assert!(fs::read(&lock_path).expect("lock") == lock, "lock changed");

    // The list row agrees with the build document.
    let rows = fx.list();
    assert_eq!(rows.len(), 1);
    for key in ["id", "short_id", "name", "state", "backend", "image"] {
        assert_eq!(rows[0][key], doc[key], "field {key}");
    }
}

#[test]
fn build_text_output_goes_to_stdout_and_logs_to_stderr() {
    let fx = Fixture::new();
    fx.write_manifest("proj", "rolling", &["git"]);
    let out = fx.run(&["build", "proj"]);
    out.ok();
    assert!(!out.stdout().contains("mock: installing"), "{out:?}");
    assert!(out.stderr.contains("mock: installing git"), "{out:?}");
}

#[test]
fn default_name_is_the_directory_and_name_overrides() {
    let fx = Fixture::new();
    fx.write_manifest("webapp", "rolling", &["git"]);
    assert_eq!(fx.build("webapp")["name"], "webapp");
    fx.write_manifest("other", "ubuntu", &["git"]);
    let out = fx
        .cmd(["--json", "build", "--name", "custom"])
        .arg(fx.path("other"))
        .run();
    out.ok();
    assert_eq!(out.json()["name"], "custom");
    let names: Vec<Value> = fx.list().iter().map(|r| r["name"].clone()).collect();
    assert_eq!(names, vec![Value::from("custom"), Value::from("webapp")]);
}

#[test]
fn invalid_names_are_usage_errors_and_build_nothing() {
    let fx = Fixture::new();
    fx.write_manifest("proj", "rolling", &["git"]);
    let hex64 = "ab".repeat(32);
    for name in ["-x", "a b", hex64.as_str(), "", "é"] {
        let out = fx
            .cmd(["build"])
            .arg(format!("--name={name}"))
            .arg(fx.path("proj"))
            .run();
        out.expect_code(2);
        assert!(!out.stderr.contains("panicked"), "{out:?}");
    }
    assert!(
        fx.list().is_empty(),
        "an invalid name must be refused before building"
    );
    assert!(!fx.path("proj/karapace.lock").exists());
}

#[test]
fn list_on_an_empty_store() {
    let fx = Fixture::new();
    let out = fx.run(&["--json", "list"]);
    out.ok();
    assert_eq!(out.json(), Value::Array(vec![]));
    let out = fx.run(&["list"]);
    out.ok();
    assert!(out.stdout().contains("karapace-tui build"), "{out:?}");
    assert!(out.stdout().contains("karapace-tui new"), "{out:?}");
}

#[test]
fn list_json_rows_have_the_contract_fields() {
    let fx = Fixture::new();
    fx.write_manifest("a", "rolling", &["git"]);
    fx.write_manifest("b", "ubuntu", &[]);
    fx.build("a");
    fx.build("b");
    let rows = fx.list();
    assert_eq!(rows.len(), 2);
    for row in &rows {
        for key in ["id", "short_id", "name", "state", "backend", "image"] {
            assert!(row.get(key).is_some(), "row lacks {key}: {row}");
        }
        assert_eq!(s(row, "short_id"), s(row, "id")[..12]);
        assert_eq!(row["state"], "built");
        assert_eq!(row["backend"], "mock");
    }
    let text = fx.run(&["list"]);
    text.ok();
    for row in &rows {
        assert!(text.stdout().contains(&s(row, "short_id")), "{text:?}");
    }
}

#[test]
fn env_resolution_by_id_prefix_and_name() {
    let fx = Fixture::new();
    fx.write_manifest("alpha", "rolling", &["git"]);
    fx.write_manifest("beta", "ubuntu", &["git"]);
    let id = s(&fx.build("alpha"), "id");
    fx.build("beta");
    for query in [id.as_str(), &id[..4], &id[..12], "alpha"] {
        let doc = fx.json(&["inspect", query]);
        assert_eq!(s(&doc, "id"), id, "query {query}");
    }
    let out = fx.run(&["inspect", &id[..3]]);
    out.expect_code(2);
    assert!(out.stderr.contains("at least 4"), "{out:?}");
    for unknown in ["nosuchenv", "zzzz"] {
        let out = fx.run(&["inspect", unknown]);
        out.expect_code(2);
        assert!(out.stderr.contains(unknown), "{out:?}");
    }
    // A 4-hex prefix that matches no id.
    let beta = s(&fx.row("beta"), "id");
    let unused = (0..0x10000)
        .map(|n| format!("{n:04x}"))
        .find(|p| !id.starts_with(p.as_str()) && !beta.starts_with(p.as_str()))
        .expect("a free prefix");
    fx.run(&["inspect", &unused]).expect_code(2);
}

#[test]
fn a_name_equal_to_another_ids_prefix_is_ambiguous() {
    let fx = Fixture::new();
    fx.write_manifest("alpha", "rolling", &["git"]);
    fx.write_manifest("beta", "ubuntu", &["git"]);
    let alpha = s(&fx.build("alpha"), "id");
    let beta = s(&fx.build("beta"), "id");
    let prefix = &alpha[..6];
    fx.run(&["rename", "beta", prefix]).ok();
    let out = fx.run(&["inspect", prefix]);
    out.expect_code(2);
    assert!(out.stderr.contains(&alpha), "{out:?}");
    assert!(out.stderr.contains(&beta), "{out:?}");
    // Mutating commands refuse the ambiguous query too, changing nothing.
    fx.run(&["destroy", prefix]).expect_code(2);
    assert_eq!(fx.list().len(), 2);
    // More of the id resolves it.
    assert_eq!(s(&fx.json(&["inspect", &alpha[..8]]), "id"), alpha);
}

/// Build a manifest with `body` and return the failed run.
fn manifest_error(body: &str) -> util::Output {
    let fx = Fixture::new();
    fs::create_dir(fx.path("m")).expect("mkdir");
    fs::write(fx.path("m/karapace.toml"), body).expect("write");
    let out = fx.run(&["build", "m"]);
    out.expect_code(2);
    assert!(fx.list().is_empty(), "a bad manifest built something");
    out
}

#[test]
fn manifest_errors_name_file_line_column_and_field() {
    let head = "manifest_version = 1\n[base]\nimage = \"rolling\"\n";
    let cases = [
        (
            format!(
                "{head}[system]\npackages = [\"git\", \"a;b\"]\n[runtime]\nbackend = \"mock\"\n"
            ),
            "karapace.toml:5:20: system.packages[1]",
            "a;b",
        ),
        (
            format!("{head}pakages = [\"git\"]\n[runtime]\nbackend = \"mock\"\n"),
            "karapace.toml:4:1: base.pakages",
            "pakages",
        ),
        (
            format!("{head}[runtime]\nbackend = \"docker\"\n"),
            "karapace.toml:5:11: runtime.backend",
            "docker",
        ),
        (
            format!("{head}[mounts]\nwork = \"/tmp:work\"\n[runtime]\nbackend = \"mock\"\n"),
            "karapace.toml:5:8: mounts.work",
            "relative",
        ),
    ];
    for (body, location, detail) in cases {
        let out = manifest_error(&body);
        assert!(out.stderr.contains(location), "want {location}: {out:?}");
        assert!(out.stderr.contains(detail), "want {detail}: {out:?}");
    }
}

#[test]
fn manifest_error_with_json_is_one_document() {
    let fx = Fixture::new();
    fs::create_dir(fx.path("m")).expect("mkdir");
    fs::write(fx.path("m/karapace.toml"), "manifest_version = 1\n").expect("write");
    let out = fx.run(&["--json", "build", "m"]);
    out.expect_code(2);
    assert!(out.json().is_object(), "{out:?}");
    assert!(out.stderr.contains("karapace.toml"), "{out:?}");
}

#[test]
fn help_man_and_completions() {
    let fx = Fixture::new();
    let help = fx.run(&["--help"]);
    help.ok();
    assert!(help.stdout().contains("verify-store"), "{help:?}");
    let comp = fx.run(&["completions", "bash"]);
    comp.ok();
    assert!(comp.stdout().contains("verify-store"), "{comp:?}");
    for shell in ["zsh", "fish"] {
        let out = fx.run(&["completions", shell]);
        out.ok();
        assert!(!out.stdout.is_empty());
    }
    fx.run(&["completions", "cmd.exe"]).expect_code(2);
    let man = fx.run(&["man"]);
    man.ok();
    let text = man.stdout();
    let lines: Vec<&str> = text.lines().collect();
    let th = lines
        .iter()
        .position(|l| l.starts_with(".TH karapace-tui"))
        .expect("a .TH header");
    assert!(th < 5, "the .TH header comes first: {text}");
    assert!(
        lines[..th].iter().all(|l| l.starts_with('.')),
        "only roff requests before .TH: {text}"
    );
    // None of these touch the store.
    assert!(!fx.store().exists());
    // No command at all (stdin not a terminal): the help, exit 0.
    let bare = fx.run(&[]);
    bare.ok();
    assert!(bare.stdout().contains("Usage"), "{bare:?}");
    assert!(bare.stdout().contains("verify-store"), "{bare:?}");
}

#[test]
fn unknown_command_and_missing_exec_command_are_usage_errors() {
    let fx = Fixture::new();
    fx.run(&["frobnicate"]).expect_code(2);
    fx.run(&["exec", "x"]).expect_code(2);
    fx.run(&["inspect"]).expect_code(2);
}

/// stdout is a pipe whose read end is already closed.
fn closed_pipe() -> Stdio {
    let (read, write) = nix::unistd::pipe().expect("pipe");
    drop(read);
    Stdio::from(write)
}

fn many_envs() -> Fixture {
    let fx = Fixture::new();
    for (i, image) in ["rolling", "ubuntu", "debian", "fedora"].iter().enumerate() {
        fx.write_manifest(&format!("p{i}"), image, &["git"]);
        fx.build(&format!("p{i}"));
    }
    fx
}

#[test]
fn broken_pipe_is_quiet() {
    let fx = many_envs();
    for args in [
        &["completions", "bash"][..],
        &["man"],
        &["list"],
        &["--json", "list"],
        &["--help"],
    ] {
        let out = fx.cmd(args).run_with_stdout(closed_pipe());
        assert!(!out.timed_out, "{out:?}");
        assert!(!out.stderr.contains("panicked"), "{out:?}");
        assert!(
            out.stderr.is_empty(),
            "a broken pipe must exit quietly: {out:?}"
        );
    }
}

#[test]
fn broken_pipe_exit_code_is_0_or_141() {
    let fx = many_envs();
    for args in [&["completions", "bash"][..], &["man"], &["list"]] {
        let out = fx.cmd(args).run_with_stdout(closed_pipe());
        let ok =
            matches!(out.code(), Some(0) | Some(141)) || out.status.signal() == Some(libc::SIGPIPE);
        assert!(ok, "{out:?}");
    }
}

#[test]
fn json_errors_are_one_document_on_stdout() {
    let fx = Fixture::new();
    let out = fx.run(&["--json", "inspect", "nosuchenv"]);
    out.expect_code(2);
    let doc = out.json();
    assert!(doc.is_object(), "{out:?}");
    assert!(out.stderr.contains("nosuchenv"), "{out:?}");
}

#[test]
fn every_command_prints_one_json_document() {
    let fx = Fixture::new();
    let one = |args: &[&str], code: i32| -> Value {
        let out = fx.cmd(["--json"]).args(args).run();
        out.expect_code(code);
        out.json()
    };
    let dir = fx.path("proj");
    let dir_s = dir.to_string_lossy().into_owned();
    one(&["new", "--template", "dev", &dir_s], 0);
    fs::write(
        dir.join("karapace.toml"),
        util::mock_manifest("rolling", &["git"]),
    )
    .expect("write manifest");
    let built = one(&["build", &dir_s], 0);
    let id = s(&built, "id");
    one(&["build", &dir_s], 0);
    one(&["list"], 0);
    assert_eq!(s(&one(&["inspect", &id[..8]], 0), "id"), id);
    one(&["exec", "proj", "--", "echo", "hi"], 0);
    assert_eq!(one(&["rename", "proj", "renamed"], 0)["name"], "renamed");
    assert_eq!(one(&["freeze", "renamed"], 0)["state"], "frozen");
    assert_eq!(one(&["unfreeze", "renamed"], 0)["state"], "built");
    assert_eq!(one(&["archive", "renamed"], 0)["state"], "archived");
    assert_eq!(one(&["unarchive", "renamed"], 0)["state"], "built");
    assert_eq!(one(&["stop", "renamed"], 0)["stopped_sessions"], 0);
    one(&["rebuild", &dir_s], 0);
    one(&["gc", "--dry-run"], 0);
    one(&["gc"], 0);
    one(&["verify-store"], 0);
    one(&["destroy", "renamed"], 0);
    one(&["inspect", "renamed"], 2);
    one(&["freeze", &id], 2);
    let doctor = fx.run(&["--json", "doctor"]);
    assert!(!doctor.timed_out);
    assert!(doctor.json()["backends"].is_array(), "{doctor:?}");
}

#[test]
fn an_unavailable_backend_is_a_missing_prerequisite() {
    let fx = Fixture::new();
    let doctor = fx.run(&["--json", "doctor"]);
    let backends = doctor.json()["backends"]
        .as_array()
        .cloned()
        .expect("backends");
    let mock = backends
        .iter()
        .find(|b| b["backend"] == "mock")
        .expect("mock");
    assert_eq!(mock["available"], true);
    let missing: Vec<String> = backends
        .iter()
        .filter(|b| b["available"] == false)
        .map(|b| s(b, "backend"))
        .collect();
    // Exit code 4 means the default backend cannot run here; another one missing is reported
    // but does not fail the command.
    let default = s(&doctor.json(), "default_backend");
    assert_eq!(default, "namespace");
    if missing.contains(&default) {
        doctor.expect_code(4);
    } else {
        doctor.ok();
    }
    // Every check, each with its group, id, status, meaning and whether it decides.
    let checks = doctor.json()["checks"].as_array().cloned().expect("checks");
    for group in ["store", "namespace", "oci", "mock"] {
        assert!(
            checks.iter().any(|c| c["group"] == group),
            "{group}: {checks:?}"
        );
    }
    for c in &checks {
        assert!(
            ["pass", "warn", "fail"].contains(&c["status"].as_str().unwrap_or("")),
            "{c}"
        );
        assert!(s(c, "id").starts_with(&s(c, "group")), "{c}");
        assert!(
            !s(c, "meaning").is_empty() && c["required"].is_boolean(),
            "{c}"
        );
    }
    // A backend is available exactly when no required check of it or of the store fails.
    for b in &backends {
        let blocked = checks.iter().any(|c| {
            (c["group"] == b["backend"] || c["group"] == "store")
                && c["status"] == "fail"
                && c["required"] == true
        });
        assert_eq!(b["available"], !blocked, "{b}");
    }
    for backend in missing {
        let dir = fx.path(&format!("p-{backend}"));
        fs::create_dir(&dir).expect("mkdir");
        let body = format!(
            "manifest_version = 1\n[base]\nimage = \"rolling\"\n[runtime]\nbackend = \"{backend}\"\n"
        );
        fs::write(dir.join("karapace.toml"), body).expect("write");
        let out = fx.cmd(["build"]).arg(&dir).run();
        out.expect_code(4);
        assert!(out.stderr.contains(&backend), "{out:?}");
        assert!(fx.list().is_empty(), "{backend}: something was built");
    }
}

/// `doctor` reads the store without opening it: it diagnoses a store that every other command
/// refuses, and leaves a missing one uncreated.
#[test]
fn doctor_diagnoses_a_store_it_cannot_open_and_creates_nothing() {
    let fx = Fixture::new();
    let store = fx.store();
    assert!(!store.exists());
    let doctor = fx.run(&["doctor"]);
    assert!(!store.exists(), "doctor created the store: {doctor:?}");
    let text = doctor.stdout();
    for heading in [
        "store",
        "namespace (the default): ",
        "oci: ",
        "mock: can run here",
    ] {
        assert!(text.contains(&format!("\n{heading}")), "{heading}\n{text}");
    }
    assert!(
        text.contains("does not exist yet; it is created in"),
        "{text}"
    );

    fs::create_dir_all(&store).expect("mkdir");
    fs::write(store.join("version"), "karapace-tui store format 99\n").expect("write");
    fx.run(&["list"]).expect_code(3);
    let doctor = fx.run(&["--json", "doctor"]);
    doctor.expect_code(4);
    let json = doctor.json();
    let format = json["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["id"] == "store.format").cloned())
        .expect("store.format");
    assert_eq!(format["status"], "fail");
    assert!(s(&format, "meaning").contains("format 99"), "{format}");
    assert!(
        s(&format, "fix").starts_with("upgrade karapace-tui"),
        "{format}"
    );
    let backends = json["backends"].as_array().cloned().expect("backends");
    assert!(
        backends.iter().all(|b| b["available"] == false),
        "{backends:?}"
    );
}

//! Whole-manifest tests: the original's examples, every rule both ways through `Manifest::parse`,
//! error positions, and the canonical form.

use std::path::{Path, PathBuf};

use super::*;

const MANIFEST: &str = "/work/proj/karapace.toml";

fn env() -> ParseEnv {
    ParseEnv {
        home: PathBuf::from("/home/user"),
    }
}

fn parse(text: &str) -> Result<Manifest, ManifestError> {
    Manifest::parse(text, Path::new(MANIFEST), &env())
}

fn ok(text: &str) -> Manifest {
    match parse(text) {
        Ok(m) => m,
        Err(e) => panic!("expected {text:?} to parse, got: {e}"),
    }
}

/// A manifest with the two required keys, then `rest`.
fn with(rest: &str) -> String {
    format!("manifest_version = 1\n[base]\nimage = \"rolling\"\n{rest}")
}

/// (line, column, field, problem) of an `Invalid` error; panics on anything else.
fn invalid(text: &str) -> (usize, usize, String, Problem) {
    match parse(text) {
        Err(ManifestError::Invalid {
            line,
            column,
            field,
            problem,
            path,
        }) => {
            assert_eq!(path, PathBuf::from(MANIFEST));
            (line, column, field, *problem)
        }
        other => panic!("expected an Invalid error for {text:?}, got {other:?}"),
    }
}

fn syntax(text: &str) -> (usize, usize, Option<String>, String) {
    match parse(text) {
        Err(ManifestError::Syntax {
            line,
            column,
            field,
            message,
            ..
        }) => (line, column, field, message),
        other => panic!("expected a Syntax error for {text:?}, got {other:?}"),
    }
}

#[test]
fn the_originals_examples_parse_with_their_meaning() {
    let minimal = ok("manifest_version = 1\n\n[base]\n# openSUSE Tumbleweed\nimage = \"rolling\"\n\n[runtime]\nbackend = \"namespace\"\n");
    assert_eq!(minimal.base.image.canonical(), "alias:opensuse/tumbleweed");
    assert!(
        minimal.packages.is_empty() && minimal.mounts.is_empty() && minimal.gui_apps.is_empty()
    );

    let dev = ok(r#"manifest_version = 1
[base]
image = "rolling"
[system]
packages = ["git", "curl", "vim", "neovim", "tmux", "htop", "make", "cmake", "gcc", "clang"]
[mounts]
workspace = "~/projects:/workspace"
[runtime]
backend = "namespace"
"#);
    assert_eq!(dev.packages.len(), 10);
    assert_eq!(
        dev.mounts[0].host_path,
        PathBuf::from("/home/user/projects")
    );

    let gui = ok(r#"manifest_version = 1
[base]
image = "rolling"
[system]
packages = ["git", "curl", "cmake", "gcc", "clang", "gdb", "mesa-dri-devel"]
[gui]
apps = ["firefox"]
[hardware]
gpu = true
audio = true
[mounts]
workspace = "~/projects:/workspace"
[runtime]
backend = "namespace"
"#);
    assert_eq!(
        gui.hardware,
        Hardware {
            gpu: true,
            audio: true
        }
    );
    assert_eq!(gui.gui_apps, ["firefox"]);
    assert!(gui.packages.iter().any(|p| p.name == "mesa-dri-devel"));

    let rust = ok(r#"manifest_version = 1
[base]
image = "rolling"
[system]
packages = ["git", "curl", "gcc", "make", "cmake", "pkg-config", "openssl-devel", "gdb"]
[mounts]
workspace = "~/projects:/workspace"
[runtime]
backend = "namespace"
"#);
    assert_eq!(rust.packages.len(), 8);

    let ubuntu = ok(r#"manifest_version = 1
[base]
image = "ubuntu/24.04"
[system]
packages = ["git", "curl", "build-essential", "cmake", "python3", "python3-pip", "nodejs", "npm"]
[mounts]
workspace = "~/projects:/workspace"
[runtime]
backend = "namespace"
"#);
    assert_eq!(ubuntu.base.image.canonical(), "alias:ubuntu/noble");
    assert_eq!(ubuntu.base.image.display(), "ubuntu/24.04");
}

#[test]
fn defaults_fill_every_optional_section() {
    let m = ok("manifest_version = 1\n[base]\nimage = \"debian\"\n");
    assert_eq!(m.path, PathBuf::from(MANIFEST));
    assert_eq!(m.hardware, Hardware::default());
    assert_eq!(m.runtime, RuntimeConfig::default());
    assert_eq!(m.runtime.backend, BackendKind::Namespace);
    assert!(!m.runtime.network_isolation);
    assert_eq!(m.runtime.limits, ResourceLimits::default());
    assert!(m.runtime.limits.is_empty());
    assert_eq!(m.base.sha256, None);
}

#[test]
fn manifest_version_is_required_and_must_be_one() {
    let (line, column, field, problem) = invalid("[base]\nimage = \"rolling\"\n");
    assert_eq!((line, column, field.as_str()), (1, 1, "manifest_version"));
    assert!(matches!(problem, Problem::Missing { .. }));

    let (line, column, _, problem) =
        invalid("\nmanifest_version = 2\n[base]\nimage = \"rolling\"\n");
    assert_eq!((line, column), (2, 20));
    assert_eq!(problem, Problem::UnsupportedVersion { found: 2 });
    assert_eq!(problem.allowed(), "1");

    let (line, column, field, message) = syntax("manifest_version = \"1\"\n");
    assert_eq!(
        (line, column, field.as_deref()),
        (1, 20, Some("manifest_version"))
    );
    assert!(message.contains("expected i64"), "{message}");
}

#[test]
fn base_image_is_required_and_not_blank() {
    let (line, column, field, problem) = invalid("manifest_version = 1\n");
    assert_eq!((line, column, field.as_str()), (1, 1, "base.image"));
    assert!(matches!(problem, Problem::Missing { .. }));

    // Missing from a present table: point at its header.
    let (line, column, field, _) = invalid("manifest_version = 1\n\n[base]\nsha256 = \"\"\n");
    assert_eq!((line, column, field.as_str()), (3, 1, "base.image"));

    let (line, column, _, problem) = invalid("manifest_version = 1\n[base]\nimage = \"  \"\n");
    assert_eq!((line, column, problem), (3, 9, Problem::EmptyImage));

    let (_, _, _, problem) = invalid("manifest_version = 1\n[base]\nimage = \"gentoo\"\n");
    assert_eq!(
        problem,
        Problem::UnknownImage {
            written: "gentoo".into()
        }
    );
}

#[test]
fn sha256_pin_is_optional_and_checked() {
    let sha = "ab".repeat(32);
    let m = ok(&format!(
        "manifest_version = 1\n[base]\nimage = \"rolling\"\nsha256 = \"{sha}\"\n"
    ));
    assert_eq!(m.base.sha256.as_deref(), Some(sha.as_str()));
    assert!(m
        .canonical_json()
        .contains(&format!("\"sha256\":\"{sha}\"")));
    let (line, _, field, problem) =
        invalid("manifest_version = 1\n[base]\nimage = \"rolling\"\nsha256 = \"ABC\"\n");
    assert_eq!((line, field.as_str()), (4, "base.sha256"));
    assert!(matches!(problem, Problem::BadSha256 { .. }));
}

#[test]
fn packages_are_trimmed_sorted_and_deduplicated() {
    let m = ok(&with("[system]\npackages = [\" vim \", \"\", \"git\", \"   \", \"curl=8.5\", \"git\", \"curl=8.5\"]\n"));
    let shown: Vec<String> = m.packages.iter().map(|p| p.to_string()).collect();
    assert_eq!(shown, ["curl=8.5", "git", "vim"]);
}

#[test]
fn a_bad_package_name_is_reported_at_its_position() {
    let text = with("[system]\npackages = [\"git\", \"vim\", \"gcc;rm\"]\n");
    let (line, column, field, problem) = invalid(&text);
    assert_eq!(
        (line, column, field.as_str()),
        (5, 27, "system.packages[2]")
    );
    assert_eq!(
        problem,
        Problem::BadName {
            kind: NameKind::Package,
            written: "gcc;rm".into(),
            reason: NameProblem::BadChar(';')
        }
    );
    let shown = parse(&text).map(|_| ()).unwrap_err().to_string();
    assert!(
        shown.starts_with(
            "/work/proj/karapace.toml:5:27: system.packages[2]: \"gcc;rm\" contains `;`"
        ),
        "{shown}"
    );
}

#[test]
fn hostile_package_names_are_refused() {
    for name in ["-rf", "a;b", "$(x)", "`x`", "a\\nb", "a b", "x && y", "a|b"] {
        let text = with(&format!("[system]\npackages = [\"{name}\"]\n"));
        let (_, _, field, problem) = invalid(&text);
        assert_eq!(field, "system.packages[0]", "{name}");
        assert!(
            matches!(
                problem,
                Problem::BadName {
                    kind: NameKind::Package,
                    ..
                }
            ),
            "{name}: {problem:?}"
        );
    }
    // A multi-line literal string puts a real newline inside the entry.
    let (line, column, _, problem) = invalid(&with("[system]\npackages = ['''\nvim\ngit''']\n"));
    assert_eq!((line, column), (5, 13));
    assert!(matches!(
        problem,
        Problem::BadName {
            reason: NameProblem::BadChar('\n'),
            ..
        }
    ));
}

#[test]
fn one_package_with_two_versions_is_an_error() {
    let (line, _, field, problem) =
        invalid(&with("[system]\npackages = [\"gcc=13\",\n  \"gcc=14\"]\n"));
    assert_eq!((line, field.as_str()), (6, "system.packages[1]"));
    assert_eq!(
        problem,
        Problem::ConflictingVersions {
            first: "gcc=13".into(),
            first_field: "system.packages[0]".into(),
            second: "gcc=14".into()
        }
    );
    // Bare and versioned are two different requirements too.
    assert!(matches!(
        invalid(&with("[system]\npackages = [\"gcc\", \"gcc=14\"]\n")).3,
        Problem::ConflictingVersions { .. }
    ));
}

#[test]
fn gui_apps_are_trimmed_sorted_by_bytes_and_checked() {
    let m = ok(&with(
        "[gui]\napps = [\"xterm\", \" Zed \", \"\", \"xterm\", \"alpha\"]\n",
    ));
    assert_eq!(m.gui_apps, ["Zed", "alpha", "xterm"]);
    let (_, _, field, problem) = invalid(&with("[gui]\napps = [\"ok\", \"firefox=1\"]\n"));
    assert_eq!(field, "gui.apps[1]");
    assert!(matches!(
        problem,
        Problem::BadName {
            kind: NameKind::App,
            reason: NameProblem::VersionNotAllowed,
            ..
        }
    ));
    assert!(matches!(
        invalid(&with("[gui]\napps = [\"$(rm)\"]\n")).3,
        Problem::BadName { .. }
    ));
}

#[test]
fn relative_host_paths_resolve_against_the_manifest_dir_not_the_cwd() {
    let m = ok(&with(
        "[mounts]\ndata = \"data:/data\"\nup = \"../shared/./x:/x:ro\"\n",
    ));
    assert_eq!(m.mounts[0].label, "data");
    assert_eq!(m.mounts[0].host_path, PathBuf::from("/work/proj/data"));
    assert_eq!(m.mounts[1].host_path, PathBuf::from("/work/shared/x"));
    assert!(m.mounts[1].read_only);
    assert_eq!(m.mounts[1].written, "../shared/./x:/x:ro");
    // A relative manifest path is made absolute first (this is the only use of the cwd).
    let m = Manifest::parse(
        &with("[mounts]\nd = \"d:/d\"\n"),
        Path::new("sub/karapace.toml"),
        &env(),
    );
    let cwd = std::env::current_dir().unwrap();
    assert_eq!(
        m.map(|m| m.mounts[0].host_path.clone()).ok(),
        Some(cwd.join("sub/d"))
    );
}

#[test]
fn tilde_expands_to_the_injected_home() {
    let m = ok(&with(
        "[mounts]\nh = \"~:/h\"\np = \"~/projects:/workspace\"\n",
    ));
    assert_eq!(m.mounts[0].host_path, PathBuf::from("/home/user"));
    assert_eq!(m.mounts[1].host_path, PathBuf::from("/home/user/projects"));
    let (_, _, field, problem) = invalid(&with("[mounts]\nh = \"~root/x:/x\"\n"));
    assert_eq!(field, "mounts.h");
    assert!(matches!(
        problem,
        Problem::BadMount {
            reason: MountProblem::TildeUser,
            ..
        }
    ));
}

#[test]
fn mounts_are_sorted_by_label_and_checked() {
    let m = ok(&with(
        "[mounts]\nzeta = \"/z:/z\"\nalpha = \"/a:/a\"\n\" mid \" = \"/m:/m\"\n",
    ));
    let labels: Vec<&str> = m.mounts.iter().map(|m| m.label.as_str()).collect();
    assert_eq!(labels, ["alpha", "mid", "zeta"]);

    let (line, column, field, problem) = invalid(&with("[mounts]\nws = \"/a:relative\"\n"));
    assert_eq!((line, column, field.as_str()), (5, 6, "mounts.ws"));
    assert!(matches!(
        problem,
        Problem::BadMount {
            reason: MountProblem::ContainerNotAbsolute,
            ..
        }
    ));

    let (line, column, field, problem) = invalid(&with("[mounts]\n\" \" = \"/a:/a\"\n"));
    assert_eq!(
        (line, column, field.as_str(), problem),
        (5, 1, "mounts.\" \"", Problem::EmptyMountLabel)
    );

    let problem = invalid(&with("[mounts]\na = \"/a:/a\"\n\" a\" = \"/b:/b\"\n")).3;
    assert_eq!(problem, Problem::DuplicateMountLabel { label: "a".into() });

    let problem = invalid(&with("[mounts]\na = 3\n")).3;
    assert_eq!(
        problem,
        Problem::MountNotString {
            found: "an integer"
        }
    );

    for bad in ["/a", ":/a", "/a:", "/a:/", "/a:/../etc", "/a:/x:exec"] {
        let problem = invalid(&with(&format!("[mounts]\nm = \"{bad}\"\n"))).3;
        assert!(
            matches!(problem, Problem::BadMount { .. }),
            "{bad}: {problem:?}"
        );
    }
}

#[test]
fn two_mounts_on_one_container_path_name_both_labels() {
    let text = with("[mounts]\nsrc = \"/a:/workspace\"\nother = \"/b:/workspace/\"\n");
    let (line, _, field, problem) = invalid(&text);
    assert_eq!((line, field.as_str()), (6, "mounts.other"));
    assert_eq!(
        problem,
        Problem::DuplicateContainerPath {
            container_path: "/workspace".into(),
            first_label: "src".into(),
            second_label: "other".into()
        }
    );
    // Same host path twice is fine.
    assert_eq!(
        ok(&with("[mounts]\na = \"/a:/x\"\nb = \"/a:/y\"\n"))
            .mounts
            .len(),
        2
    );
}

#[test]
fn backend_is_checked_at_parse_time() {
    let m = ok(&with(
        "[runtime]\nbackend = \" OCI \"\nnetwork_isolation = true\n",
    ));
    assert_eq!(m.runtime.backend, BackendKind::Oci);
    assert!(m.runtime.network_isolation);
    assert_eq!(
        ok(&with("[runtime]\nbackend = \"mock\"\n")).runtime.backend,
        BackendKind::Mock
    );
    let (line, column, field, problem) = invalid(&with("[runtime]\nbackend = \"docker\"\n"));
    assert_eq!((line, column, field.as_str()), (5, 11, "runtime.backend"));
    assert_eq!(
        problem,
        Problem::UnknownBackend {
            written: "docker".into()
        }
    );
    assert_eq!(problem.allowed(), "namespace, oci, mock");
}

#[test]
fn resource_limits_are_range_checked() {
    let m = ok(&with(
        "[runtime.resource_limits]\ncpu_shares = 262144\nmemory_limit_mb = 1\npids_limit = 8\n\
         open_files = 1048576\n",
    ));
    assert_eq!(
        m.runtime.limits,
        ResourceLimits {
            cpu_shares: Some(262_144),
            memory_limit_mb: Some(1),
            pids_limit: Some(8),
            open_files: Some(1_048_576),
        }
    );
    assert_eq!(
        ok(&with("[runtime.resource_limits]\ncpu_shares = 1\n"))
            .runtime
            .limits
            .cpu_shares,
        Some(1)
    );
    for (key, value) in [
        ("cpu_shares", "0"),
        ("cpu_shares", "262145"),
        ("cpu_shares", "-5"),
        ("memory_limit_mb", "0"),
        ("pids_limit", "7"),
        ("pids_limit", "4194305"),
        ("open_files", "15"),
        ("open_files", "1048577"),
        ("open_files", "-1"),
    ] {
        let (_, _, field, problem) = invalid(&with(&format!(
            "[runtime.resource_limits]\n{key} = {value}\n"
        )));
        assert_eq!(field, format!("runtime.resource_limits.{key}"));
        assert!(
            matches!(problem, Problem::OutOfRange { .. }),
            "{key} = {value}"
        );
    }
    let too_big = MAX_MEMORY_LIMIT_MB + 1;
    let problem = invalid(&with(&format!(
        "[runtime.resource_limits]\nmemory_limit_mb = {too_big}\n"
    )))
    .3;
    assert!(matches!(problem, Problem::OutOfRange { .. }));
}

#[test]
fn unknown_keys_and_wrong_types_are_syntax_errors_naming_the_field() {
    let (line, column, field, message) = syntax("manifest_version = 1\nbase_image = \"rolling\"\n");
    assert_eq!((line, column, field.as_deref()), (2, 1, Some("base_image")));
    assert!(message.contains("unknown field `base_image`"), "{message}");
    let (line, column, field, message) = syntax(&with("[system]\n  pakages = [\"git\"]\n"));
    assert_eq!(
        (line, column, field.as_deref()),
        (5, 3, Some("system.pakages"))
    );
    assert!(message.contains("unknown field `pakages`"), "{message}");
    let (line, _, field, _) = syntax(&with("[runtime.resource_limits]\ncpu = 1\n"));
    assert_eq!(
        (line, field.as_deref()),
        (5, Some("runtime.resource_limits.cpu"))
    );
    let (_, _, field, _) = syntax(&with("bogus = 1\n"));
    assert_eq!(field.as_deref(), Some("base.bogus"));
    for section in ["system", "gui", "hardware", "runtime"] {
        let (_, _, field, message) = syntax(&with(&format!("[{section}]\nbogus = 1\n")));
        assert_eq!(field, Some(format!("{section}.bogus")), "{message}");
    }
    let (line, column, field, message) = syntax(&with("[hardware]\ngpu = \"yes\"\n"));
    assert_eq!(
        (line, column, field.as_deref()),
        (5, 7, Some("hardware.gpu"))
    );
    assert!(message.contains("expected a boolean"), "{message}");
    let (_, _, field, _) = syntax(&with("[system]\npackages = [\"git\", 3]\n"));
    assert_eq!(field.as_deref(), Some("system.packages[1]"));
    let (_, _, _, message) = syntax(&with("[mounts]\na.b = \"/x:/y\"\n"));
    assert!(message.contains("dotted key"), "{message}");
}

#[test]
fn toml_syntax_errors_carry_a_position_and_a_one_line_message() {
    let (line, column, field, message) = syntax("manifest_version = 1\n[base\n");
    assert_eq!((line, column, field), (2, 6, None));
    assert!(!message.contains('\n'), "{message}");
    let shown = parse("manifest_version = 1\n[base\n")
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(
        shown.starts_with("/work/proj/karapace.toml:2:6: invalid table header"),
        "{shown}"
    );
}

#[test]
fn load_reads_files_and_reports_io_errors_with_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("karapace.toml");
    std::fs::write(&path, with("[mounts]\nw = \"w:/w\"\n")).unwrap();
    let m = Manifest::load(&path, &env()).unwrap();
    assert_eq!(m.path, path);
    assert_eq!(m.mounts[0].host_path, dir.path().join("w"));

    let missing = dir.path().join("nope.toml");
    match Manifest::load(&missing, &env()) {
        Err(ManifestError::Io { path, source }) => {
            assert_eq!(path, missing);
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("expected Io, got {other:?}"),
    }
}

#[test]
fn parse_env_from_process_gives_an_absolute_home() {
    if let Ok(env) = ParseEnv::from_process() {
        assert!(env.home.is_absolute());
    }
}

#[test]
fn env_variables_are_named_checked_and_never_denied_ones() {
    let m = ok(&with(
        "[env]\nRUST_LOG = \"debug\"\nPATH = \"/opt/bin:/usr/bin\"\n",
    ));
    assert_eq!(m.env.get("RUST_LOG").map(String::as_str), Some("debug"));
    assert_eq!(m.env.len(), 2);
    for (text, needle) in [
        ("[env]\nAWS_SECRET_ACCESS_KEY = \"x\"\n", "`AWS_*`"),
        ("[env]\nFOO_TOKEN = \"x\"\n", "`*_TOKEN`"),
        ("[env]\nSSH_AUTH_SOCK = \"/tmp/a\"\n", "`SSH_AUTH_SOCK`"),
        ("[env]\nKARAPACE_ENV_ID = \"x\"\n", "set by karapace"),
        ("[env]\n\"A B\" = \"x\"\n", "contains ' '"),
        ("[env]\n1X = \"x\"\n", "starts with a digit"),
    ] {
        let (line, _, field, problem) = invalid(&with(text));
        assert_eq!(line, 5, "{text}");
        assert!(field.starts_with("env."), "{field}");
        assert!(problem.to_string().contains(needle), "{text}: {problem}");
    }
    let (_, _, field, problem) = invalid(&with("[env]\nN = 1\n"));
    assert_eq!(field, "env.N");
    assert_eq!(
        problem,
        Problem::EnvNotString {
            found: "an integer"
        }
    );
    let (_, _, _, problem) = invalid(&with("[env]\nN = \"a\\u0000b\"\n"));
    assert_eq!(problem, Problem::EnvValueNul);
}

#[test]
fn integration_switches_and_home_modes() {
    let m = ok(&with(
        "[integration]\nssh_agent = true\nwayland = false\nhome = \"own\"\n",
    ));
    assert_eq!(m.integration.ssh_agent, Some(true));
    assert_eq!(m.integration.wayland, Some(false));
    assert_eq!(m.integration.x11, None);
    assert_eq!(m.integration.home, Some(crate::integration::HomeMode::Own));
    assert!(ok(&with("")).integration.is_unset());
    let (_, _, field, problem) = invalid(&with("[integration]\nhome = \"shared\"\n"));
    assert_eq!(field, "integration.home");
    assert!(problem.allowed().contains("own"), "{problem}");
    let (_, _, field, _) = syntax(&with("[integration]\nwayland = \"yes\"\n"));
    assert_eq!(field.as_deref(), Some("integration.wayland"));
}

#[test]
fn env_and_integration_enter_the_canonical_form_only_when_written() {
    let plain = ok(&with("")).canonical_json();
    assert!(!plain.contains("\"env\"") && !plain.contains("integration"));
    let m = ok(&with(
        "[env]\nB = \"2\"\nA = \"1\"\n[integration]\nfonts = false\n",
    ));
    let json = m.canonical_json();
    assert!(
        json.contains(r#""env":{"A":"1","B":"2"},"gui_apps""#),
        "{json}"
    );
    assert!(
        json.contains(r#""integration":{"fonts":false},"manifest_version""#),
        "{json}"
    );
}

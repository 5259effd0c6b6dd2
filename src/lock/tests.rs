use std::path::Path;

use super::*;
use crate::manifest::ParseEnv;

fn manifest(text: &str) -> Manifest {
    let env = ParseEnv {
        home: "/home/alice".into(),
    };
    Manifest::parse(text, Path::new("/work/proj/karapace.toml"), &env).expect("manifest parses")
}

fn resolution() -> Resolution {
    Resolution {
        base: LockedBase {
            image: "alias:debian/bookworm".into(),
            source: "https://images.example/images/debian/bookworm/amd64/default/20260101_05:24/rootfs.tar.xz".into(),
            build: "20260101_05:24".into(),
            archive_sha256: "ab".repeat(32),
            archive_size: 1234,
            tree_digest: "cd".repeat(32),
            server: None,
            item_path: None,
        },
        packages: vec![
            LockedPackage {
                name: "git".into(),
                version: "1:2.39.5-0+deb12u1".into(),
            },
            LockedPackage {
                name: "curl".into(),
                version: "7.88.1-10+deb12u8".into(),
            },
        ],
        dependencies: None,
    }
}

const DEV: &str = r#"
manifest_version = 1
[base]
image = "debian"
[system]
packages = ["git", "curl"]
[mounts]
workspace = "~/projects:/workspace"
[runtime]
backend = "mock"
"#;

#[test]
fn identity_golden() {
    let lock = LockFile::new(&manifest(DEV), resolution());
    // The exact canonical encoding (docs/identity.md): sorted keys, no whitespace.
    let expected_json = concat!(
        r#"{"base":{"archive_sha256":"abababababababababababababababababababababababababababababababab","#,
        r#""image":"alias:debian/bookworm","#,
        r#""tree_digest":"cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd"},"#,
        r#""gui_apps":[],"hardware":{"audio":false,"gpu":false},"#,
        r#""mounts":[{"container_path":"/workspace","host_path":"/home/alice/projects","label":"workspace","read_only":false}],"#,
        r#""packages":[{"name":"curl","version":"7.88.1-10+deb12u8"},{"name":"git","version":"1:2.39.5-0+deb12u1"}],"#,
        r#""runtime":{"backend":"mock","network_isolation":false}}"#
    );
    assert_eq!(lock.identity_json(), expected_json);
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"karapace-tui environment identity v1\n");
    hasher.update(expected_json.as_bytes());
    assert_eq!(lock.env_id.as_str(), hasher.finalize().to_hex().as_str());
    // Pinned, so that an accidental change of the encoding is caught.
    assert_eq!(
        lock.env_id.as_str(),
        "bf120b8ec84dfb9b556f11abd065329fc3b4393a225bad5f38ed2fa7830f3998"
    );
    assert_eq!(lock.short_id, &lock.env_id.as_str()[..12]);
}

#[test]
fn every_input_changes_the_id() {
    let base = LockFile::new(&manifest(DEV), resolution()).env_id;
    let variants = [
        DEV.replace("~/projects", "~/other"),
        DEV.replace("/workspace", "/ws"),
        DEV.replace("/workspace\"", "/workspace:ro\""),
        DEV.replace(
            "backend = \"mock\"",
            "backend = \"mock\"\nnetwork_isolation = true",
        ),
        DEV.replace("[runtime]", "[hardware]\ngpu = true\n[runtime]"),
        DEV.replace("[runtime]", "[hardware]\naudio = true\n[runtime]"),
        DEV.replace("[runtime]", "[gui]\napps = [\"firefox\"]\n[runtime]"),
        format!("{DEV}[runtime.resource_limits]\nmemory_limit_mb = 512\n"),
        format!("{DEV}[runtime.resource_limits]\ncpu_shares = 512\n"),
        format!("{DEV}[env]\nRUST_LOG = \"debug\"\n"),
        format!("{DEV}[integration]\nssh_agent = true\n"),
        format!("{DEV}[integration]\nhome = \"own\"\n"),
        // Writing a default still says something: it is part of the identity.
        format!("{DEV}[integration]\nwayland = true\n"),
    ];
    for text in &variants {
        let id = LockFile::new(&manifest(text), resolution()).env_id;
        assert_ne!(id, base, "input change not reflected in the id:\n{text}");
    }
    let mut res = resolution();
    res.packages[0].version.push('1');
    assert_ne!(
        LockFile::new(&manifest(DEV), res).env_id,
        base,
        "version change missed"
    );
    let mut res = resolution();
    res.base.image = "alias:debian/trixie".into();
    assert_ne!(
        LockFile::new(&manifest(DEV), res).env_id,
        base,
        "image change missed"
    );
    let mut res = resolution();
    res.packages.pop();
    assert_ne!(
        LockFile::new(&manifest(DEV), res).env_id,
        base,
        "package removal missed"
    );
    let mut res = resolution();
    res.base.tree_digest = "ce".repeat(32);
    assert_ne!(
        LockFile::new(&manifest(DEV), res).env_id,
        base,
        "tree digest change missed"
    );
}

#[test]
fn provenance_does_not_change_the_id() {
    let base = LockFile::new(&manifest(DEV), resolution()).env_id;
    let mut res = resolution();
    res.base.source = "https://mirror.example/x".into();
    res.base.build = "other".into();
    assert_eq!(LockFile::new(&manifest(DEV), res).env_id, base);
}

#[test]
fn encoding_is_unambiguous() {
    // With plain concatenation, ("ab","c") and ("a","bc") would hash alike.
    let mut one = resolution();
    one.packages = vec![LockedPackage {
        name: "ab".into(),
        version: "c".into(),
    }];
    let mut two = resolution();
    two.packages = vec![LockedPackage {
        name: "a".into(),
        version: "bc".into(),
    }];
    let m = manifest(DEV);
    assert_ne!(LockFile::new(&m, one).env_id, LockFile::new(&m, two).env_id);
}

#[test]
fn lock_round_trips_and_detects_tampering() {
    let lock = LockFile::new(&manifest(DEV), resolution());
    let text = lock.to_toml();
    let path = Path::new("/work/proj/karapace.lock");
    assert_eq!(LockFile::parse(&text, path).expect("parse"), lock);
    let tampered = text.replace("7.88.1-10+deb12u8", "7.88.1-10+deb12u9");
    assert!(matches!(
        LockFile::parse(&tampered, path),
        Err(LockError::Tampered { .. })
    ));
    let unknown = format!("{text}\nextra = 1\n");
    assert!(matches!(
        LockFile::parse(&unknown, path),
        Err(LockError::Parse { .. })
    ));
}

#[test]
fn write_is_atomic_and_readable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(LOCK_FILE_NAME);
    assert_eq!(LockFile::read(&path).expect("read missing"), None);
    let lock = LockFile::new(&manifest(DEV), resolution());
    lock.write(&path).expect("write");
    assert_eq!(LockFile::read(&path).expect("read"), Some(lock));
}

#[test]
fn drift_lists_each_change() {
    let lock = LockFile::new(&manifest(DEV), resolution());
    assert!(lock.drift_from(&manifest(DEV)).is_empty());
    let changed = DEV
        .replace("\"git\", \"curl\"", "\"curl\", \"ripgrep\"")
        .replace("debian", "debian/trixie");
    let drift = lock.drift_from(&manifest(&changed));
    let text = drift.to_string();
    assert!(text.contains("+ package ripgrep"), "{text}");
    assert!(text.contains("- package git"), "{text}");
    assert!(text.contains("~ base image"), "{text}");
    assert_eq!(drift.0.len(), 3, "{text}");
    let pinned = DEV.replace("\"git\"", "\"git=9.9\"");
    let text = lock.drift_from(&manifest(&pinned)).to_string();
    assert!(
        text.contains("~ package git: locked 1:2.39.5-0+deb12u1, manifest pins 9.9"),
        "{text}"
    );
}

#[test]
fn env_and_integration_are_locked_and_left_out_when_absent() {
    let plain = LockFile::new(&manifest(DEV), resolution());
    assert!(!plain.identity_json().contains("\"env\""));
    assert!(!plain.identity_json().contains("integration"));
    assert!(!plain.to_toml().contains("[env]"));
    assert!(!plain.to_toml().contains("[integration]"));
    let text = format!("{DEV}[env]\nRUST_LOG = \"debug\"\n[integration]\nssh_agent = true\n");
    let lock = LockFile::new(&manifest(&text), resolution());
    assert!(lock
        .identity_json()
        .contains(r#""env":{"RUST_LOG":"debug"},"gui_apps""#));
    assert!(lock
        .identity_json()
        .contains(r#""integration":{"ssh_agent":true},"mounts""#));
    let back = LockFile::parse(&lock.to_toml(), Path::new("karapace.lock")).expect("parse");
    assert_eq!(back, lock);
    assert!(lock.drift_from(&manifest(&text)).is_empty());
    let drift = plain.drift_from(&manifest(&text));
    assert!(drift.to_string().contains("~ env"), "{drift}");
    assert!(drift.to_string().contains("~ integration"), "{drift}");
}

fn with_dependencies(deps: &[(&str, &str)]) -> Resolution {
    Resolution {
        dependencies: Some(
            deps.iter()
                .map(|(name, version)| LockedPackage {
                    name: (*name).into(),
                    version: (*version).into(),
                })
                .collect(),
        ),
        ..resolution()
    }
}

#[test]
fn dependencies_are_locked_and_part_of_the_identity() {
    let m = manifest(DEV);
    let lock = LockFile::new(
        &m,
        with_dependencies(&[("libonig5", "6.9.8-1"), ("libcurl4", "7.88.1-10+deb12u8")]),
    );
    assert!(lock.pins_dependencies());
    // Sorted, between `base` and `gui_apps` in the canonical JSON.
    assert!(
        lock.identity_json().contains(concat!(
            r#""dependencies":[{"name":"libcurl4","version":"7.88.1-10+deb12u8"},"#,
            r#"{"name":"libonig5","version":"6.9.8-1"}],"gui_apps""#
        )),
        "{}",
        lock.identity_json()
    );
    let other = LockFile::new(
        &m,
        with_dependencies(&[("libonig5", "6.9.9-1"), ("libcurl4", "7.88.1-10+deb12u8")]),
    );
    assert_ne!(other.env_id, lock.env_id, "a dependency's version");
    let fewer = LockFile::new(&m, with_dependencies(&[("libcurl4", "7.88.1-10+deb12u8")]));
    assert_ne!(fewer.env_id, lock.env_id, "a dependency less");
    // Pinned and none needed is not the same input as not pinned at all.
    let none_needed = LockFile::new(&m, with_dependencies(&[]));
    let unpinned = LockFile::new(&m, resolution());
    assert_ne!(none_needed.env_id, unpinned.env_id);
    assert!(none_needed.identity_json().contains(r#""dependencies":[]"#));
    assert!(!unpinned.identity_json().contains("dependencies"));

    // Both round-trip through the file, and an edited dependency version is caught.
    let path = Path::new("/work/proj/karapace.lock");
    for lock in [&lock, &none_needed] {
        let text = lock.to_toml();
        assert_eq!(
            &LockFile::parse(&text, path).expect("parse"),
            lock,
            "{text}"
        );
    }
    assert!(none_needed.to_toml().contains("dependencies = []"));
    let tampered = lock.to_toml().replace("6.9.8-1", "6.9.9-9");
    assert!(matches!(
        LockFile::parse(&tampered, path),
        Err(LockError::Tampered { .. })
    ));
    // The closure a build installs: the listed packages, then the dependencies.
    let names: Vec<String> = lock.closure().into_iter().map(|p| p.name).collect();
    assert_eq!(names, ["curl", "git", "libcurl4", "libonig5"]);
}

#[test]
fn a_lock_from_before_dependencies_were_pinned_still_loads_with_its_id() {
    // What earlier versions wrote: no `dependencies` key at all.
    let old = LockFile::new(&manifest(DEV), resolution());
    let text = old.to_toml();
    assert!(!text.contains("dependencies"), "{text}");
    let back = LockFile::parse(&text, Path::new("karapace.lock")).expect("an old lock loads");
    assert_eq!(back.env_id.as_str(), old.env_id.as_str());
    assert!(!back.pins_dependencies());
    assert_eq!(back.resolution().dependencies, None);
    // Without packages there is nothing to pin, whatever the backend said.
    let bare = manifest(&DEV.replace("packages = [\"git\", \"curl\"]", ""));
    let mut res = with_dependencies(&[("libonig5", "6.9.8-1")]);
    res.packages.clear();
    let lock = LockFile::new(&bare, res);
    assert_eq!(lock.dependencies, None);
    assert!(lock.pins_dependencies());
    // A dependency that is also listed is the listed one.
    let lock = LockFile::new(
        &manifest(DEV),
        with_dependencies(&[("git", "1:2.39.5-0+deb12u1"), ("zlib1g", "1:1.2.13")]),
    );
    assert_eq!(
        lock.dependencies.as_deref().map(|d| d.len()),
        Some(1),
        "{lock:?}"
    );
}

#[test]
fn locked_names_and_versions_follow_the_package_rules() {
    let lock = LockFile::new(
        &manifest(DEV),
        with_dependencies(&[("libonig5", "6.9.8-1")]),
    );
    let path = Path::new("karapace.lock");
    for (from, to) in [
        ("libonig5", "lib$(id)"),
        ("6.9.8-1", "6.9.8-1 x"),
        ("6.9.8-1", "-o"),
    ] {
        let mut bad = lock.clone();
        let dep = &mut bad.dependencies.as_mut().expect("deps")[0];
        dep.name = dep.name.replace(from, to);
        dep.version = dep.version.replace(from, to);
        // With its id recomputed, as a careful hand edit would.
        bad.env_id = bad.compute_identity();
        bad.short_id = bad.env_id.short().to_string();
        let err = LockFile::parse(&bad.to_toml(), path).expect_err(to);
        assert!(
            matches!(&err, LockError::Parse { message, .. } if message.starts_with("dependencies: ")),
            "{to}: {err}"
        );
    }
}

use std::collections::BTreeMap;
use std::fs;

use super::{desktop_files, detect, Manager, PackageError, Resolved};
use crate::lock::LockedPackage;
use crate::manifest::PackageSpec;

fn spec(text: &str) -> PackageSpec {
    text.parse().expect("valid package spec")
}

fn no_pins() -> BTreeMap<String, String> {
    BTreeMap::new()
}

/// The packages of a resolution that had no earlier pins to keep.
fn resolved(packages: Vec<LockedPackage>) -> Resolved {
    Resolved {
        packages,
        stale_pins: Vec::new(),
    }
}

fn locked(name: &str, version: &str) -> LockedPackage {
    LockedPackage {
        name: name.to_string(),
        version: version.to_string(),
    }
}

const APT_POLICY: &str = "\
hello:
  Installed: (none)
  Candidate: 2.10-3
  Version table:
     2.10-3 500
        500 http://deb.debian.org/debian bookworm/main amd64 Packages
     2.10-2 100
        100 http://deb.debian.org/debian bookworm-old/main amd64 Packages
bash:
  Installed: 5.2.15-2+b13
  Candidate: 5.2.15-2+b13
  Version table:
 *** 5.2.15-2+b13 500
        500 http://deb.debian.org/debian bookworm/main amd64 Packages
        100 /var/lib/dpkg/status
awk:
  Installed: (none)
  Candidate: (none)
  Version table:
";

#[test]
fn apt_policy_gives_candidates_and_checks_pins() {
    let got = Manager::Apt
        .parse_resolve(&[spec("bash"), spec("hello")], &no_pins(), APT_POLICY)
        .expect("resolves");
    assert_eq!(
        got,
        resolved(vec![
            locked("bash", "5.2.15-2+b13"),
            locked("hello", "2.10-3")
        ])
    );
    let pinned = Manager::Apt
        .parse_resolve(&[spec("hello=2.10-2")], &no_pins(), APT_POLICY)
        .expect("an older listed version can be pinned");
    assert_eq!(pinned, resolved(vec![locked("hello", "2.10-2")]));
    let err = Manager::Apt
        .parse_resolve(&[spec("hello=9.9")], &no_pins(), APT_POLICY)
        .expect_err("unlisted version");
    assert!(
        matches!(&err, PackageError::VersionUnavailable { available, .. } if available == "2.10-3, 2.10-2"),
        "{err:?}"
    );
}

#[test]
fn apt_unknown_and_virtual_packages_are_named() {
    for name in ["nosuchpkg", "awk"] {
        let err = Manager::Apt
            .parse_resolve(&[spec("hello"), spec(name)], &no_pins(), APT_POLICY)
            .expect_err(name);
        assert_eq!(
            err,
            PackageError::NotFound {
                manager: Manager::Apt,
                name: name.to_string()
            }
        );
        assert!(err.to_string().contains(&format!("`{name}`")), "{err}");
    }
}

#[test]
fn install_argv_pins_in_each_managers_syntax_after_the_options() {
    let pkgs = [locked("hello", "2.10-3"), locked("gcc-c++", "1:14.2-1")];
    let apt = Manager::Apt.install(&pkgs, false);
    assert_eq!(
        apt,
        [
            "apt-get",
            "install",
            "-y",
            "--no-install-recommends",
            "--",
            "hello=2.10-3",
            "gcc-c++=1:14.2-1"
        ]
    );
    let apt_rootless = Manager::Apt.install(&pkgs, true);
    let sep = apt_rootless.iter().position(|a| a == "--").expect("--");
    assert!(apt_rootless[..sep].contains(&"APT::Sandbox::User=root".to_string()));
    assert_eq!(
        Manager::Dnf
            .install(&pkgs, false)
            .last()
            .map(String::as_str),
        Some("gcc-c++-1:14.2-1")
    );
    assert_eq!(
        Manager::Zypper
            .install(&pkgs, false)
            .last()
            .map(String::as_str),
        Some("gcc-c++=1:14.2-1")
    );
    assert_eq!(
        Manager::Apk
            .install(&pkgs, false)
            .last()
            .map(String::as_str),
        Some("gcc-c++=1:14.2-1")
    );
    assert_eq!(
        Manager::Pacman
            .install(&pkgs, false)
            .last()
            .map(String::as_str),
        Some("gcc-c++"),
        "pacman cannot pin"
    );
    for manager in [
        Manager::Apt,
        Manager::Dnf,
        Manager::Zypper,
        Manager::Pacman,
        Manager::Apk,
    ] {
        for cmd in [
            manager.install(&pkgs, false),
            manager.resolve(&["hello"]),
            manager.query(&["hello"]),
        ] {
            let sep = cmd.iter().position(|a| a == "--");
            let first_name = cmd
                .iter()
                .position(|a| a.starts_with("hello") || a.starts_with("gcc"));
            assert!(
                sep.is_some() && sep < first_name,
                "{manager}: names come after `--` in {cmd:?}"
            );
        }
    }
    assert!(!Manager::Pacman.can_pin() && Manager::Apt.can_pin());
    // apt's install in the resolve names the listed packages only; the dependencies are
    // marked afterwards, by name, as a --locked build's install marks them.
    assert_eq!(
        Manager::Apt.mark_manual(&pkgs),
        Some(
            ["apt-mark", "manual", "--", "hello", "gcc-c++"]
                .map(String::from)
                .to_vec()
        )
    );
    assert_eq!(Manager::Dnf.mark_manual(&pkgs), None);
}

#[test]
fn installed_versions_are_checked_against_the_lock() {
    let wanted = [locked("hello", "2.10-3")];
    let deps = [locked("libonig5", "6.9.8-1")];
    Manager::Apt
        .check_installed(
            &wanted,
            &deps,
            "installed hello amd64 2.10-3\ninstalled libonig5 amd64 6.9.8-1\n",
        )
        .expect("matches");
    // apt pinned every package, so a difference means the environment is not the lock's.
    let wrong = Manager::Apt
        .check_installed(
            &wanted,
            &deps,
            "installed hello amd64 2.10-3\ninstalled libonig5 amd64 6.9.9-1\n",
        )
        .expect_err("a dependency at another version");
    assert_eq!(
        wrong,
        PackageError::Mismatch {
            manager: Manager::Apt,
            name: "libonig5".into(),
            dependency: true,
            locked: "6.9.8-1".into(),
            installed: "6.9.9-1".into(),
        }
    );
    let text = wrong.to_string();
    for part in [
        "`libonig5` (a dependency)",
        "6.9.8-1",
        "6.9.9-1",
        "build --update",
    ] {
        assert!(text.contains(part), "{part} missing from: {text}");
    }
    let drift = Manager::Pacman
        .check_installed(&wanted, &[], "hello 2.12-1\n")
        .expect_err("drift");
    assert!(matches!(drift, PackageError::Drifted { .. }), "{drift:?}");
    assert!(drift.to_string().contains("build --update"), "{drift}");
    // dpkg-query prints nothing on stdout for a name it does not know, and a removed
    // package whose configuration files are left is not installed; a line without the
    // status or the architecture is not read.
    for stdout in [
        "",
        "config-files hello amd64 2.10-3\n",
        "hello amd64 2.10-3\n",
        "installed hello 2.10-3\n",
    ] {
        let missing = Manager::Apt
            .check_installed(&wanted, &[], stdout)
            .expect_err("missing");
        assert!(
            matches!(
                missing,
                PackageError::NotInstalled {
                    dependency: false,
                    ..
                }
            ),
            "{stdout:?}: {missing:?}"
        );
    }
    let missing_dep = Manager::Apt
        .check_installed(&wanted, &deps, "installed hello amd64 2.10-3\n")
        .expect_err("a dependency is missing");
    assert!(
        missing_dep
            .to_string()
            .contains("`libonig5` (a dependency)"),
        "{missing_dep}"
    );
    // A qualified name is found with its architecture; a plain one under its name.
    Manager::Apt
        .check_installed(
            &[locked("libc6:i386", "2.36-9")],
            &[locked("libc6", "2.36-9")],
            "installed libc6 amd64 2.36-9\ninstalled libc6 i386 2.36-9\n",
        )
        .expect("qualified name");
    let other_arch = Manager::Apt
        .check_installed(
            &[locked("libc6:i386", "2.36-9")],
            &[],
            "installed libc6 amd64 2.36-9\n",
        )
        .expect_err("only the native one is installed");
    assert!(
        matches!(other_arch, PackageError::NotInstalled { .. }),
        "{other_arch:?}"
    );
    Manager::Dnf
        .check_installed(
            &[locked("gcc-c++", "1:14.2-1.fc41")],
            &[locked("libmpc", "1.3.1-6.fc41")],
            "gcc-c++ 1:14.2-1.fc41\nlibmpc 1.3.1-6.fc41\npackage nosuch is not installed\n",
        )
        .expect("rpm output");
    assert!(Manager::Apt.query_succeeded(1) && !Manager::Apt.query_succeeded(2));
    assert!(Manager::Dnf.query_succeeded(3) && !Manager::Apk.query_succeeded(1));
}

#[test]
fn earlier_pins_are_kept_while_the_repositories_have_them() {
    let pins: BTreeMap<String, String> = [
        ("hello".to_string(), "2.10-2".to_string()),
        ("bash".to_string(), "5.1-1".to_string()),
    ]
    .into();
    let got = Manager::Apt
        .parse_resolve(&[spec("bash"), spec("hello")], &pins, APT_POLICY)
        .expect("resolves");
    assert_eq!(
        got.packages,
        [locked("bash", "5.2.15-2+b13"), locked("hello", "2.10-2")],
        "hello keeps its listed pin; bash's is gone from the mirror"
    );
    assert_eq!(got.stale_pins, [("bash".to_string(), "5.1-1".to_string())]);
    // The manifest's own pin wins over the lock's.
    let own = Manager::Apt
        .parse_resolve(&[spec("hello=2.10-3")], &pins, APT_POLICY)
        .expect("resolves");
    assert_eq!(own.packages, [locked("hello", "2.10-3")]);
    // pacman can only install the repository's version: an older pin cannot be kept.
    let pacman = Manager::Pacman
        .parse_resolve(&[spec("hello")], &pins, "hello 2.12.1-2\n")
        .expect("resolves");
    assert_eq!(pacman.packages, [locked("hello", "2.12.1-2")]);
    assert_eq!(pacman.stale_pins.len(), 1);
    // dnf lists only the candidate: a pin it cannot confirm is kept (the dry run checks it).
    let dnf = Manager::Dnf
        .parse_resolve(&[spec("hello")], &pins, "hello 2.12.1-5.fc41\n")
        .expect("resolves");
    assert_eq!(dnf.packages, [locked("hello", "2.10-2")]);
}

#[test]
fn other_managers_outputs_are_read() {
    let zypper = "Information for package hello:\n--------------------------\nRepository     : Main\nName           : hello\nVersion        : 2.12.1-1.4\nArch           : x86_64\n";
    assert_eq!(
        Manager::Zypper
            .parse_resolve(&[spec("hello")], &no_pins(), zypper)
            .expect("zypper")
            .packages,
        vec![locked("hello", "2.12.1-1.4")]
    );
    let apk = "hello policy:\n  2.12-r1:\n    https://dl-cdn.alpinelinux.org/alpine/v3.20/main\n  2.12-r0:\n    lib/apk/db/installed\n";
    assert_eq!(
        Manager::Apk
            .parse_resolve(&[spec("hello")], &no_pins(), apk)
            .expect("apk")
            .packages,
        vec![locked("hello", "2.12-r1")]
    );
    Manager::Apk
        .check_installed(
            &[locked("hello", "2.12-r1")],
            &[],
            "hello-doc-2.12-r1 x86_64 {hello} (GPL) [installed]\nhello-2.12-r1 x86_64 {hello} (GPL-3.0) [installed]\n",
        )
        .expect("apk list");
    let pacman = "hello 2.12.1-2\nglibc 2.40-1\n";
    assert_eq!(
        Manager::Pacman
            .parse_resolve(&[spec("hello")], &no_pins(), pacman)
            .expect("pacman")
            .packages,
        vec![locked("hello", "2.12.1-2")]
    );
    let dnf = "hello 0:2.12.1-5.fc41\n\n";
    assert_eq!(
        Manager::Dnf
            .parse_resolve(&[spec("hello")], &no_pins(), dnf)
            .expect("dnf")
            .packages,
        vec![locked("hello", "0:2.12.1-5.fc41")]
    );
}

#[test]
fn detection_finds_the_manager_without_following_links_out_of_the_tree() {
    let root = tempfile::tempdir().expect("tempdir");
    let lower = root.path().join("lower");
    let upper = root.path().join("upper");
    fs::create_dir_all(lower.join("usr/bin")).expect("mkdir");
    fs::create_dir_all(&upper).expect("mkdir");
    assert_eq!(detect(&[&upper, &lower]), None);
    fs::write(lower.join("usr/bin/apt-get"), "").expect("write");
    assert_eq!(detect(&[&upper, &lower]), Some(Manager::Apt));

    // Alpine keeps apk in /sbin; a merged-/usr `sbin -> usr/sbin` link is not followed.
    let alpine = root.path().join("alpine");
    fs::create_dir_all(alpine.join("sbin")).expect("mkdir");
    fs::write(alpine.join("sbin/apk"), "").expect("write");
    assert_eq!(detect(&[&alpine]), Some(Manager::Apk));

    let hostile = root.path().join("hostile");
    fs::create_dir_all(&hostile).expect("mkdir");
    std::os::unix::fs::symlink("/usr", hostile.join("usr")).expect("symlink");
    assert_eq!(
        detect(&[&hostile]),
        None,
        "an absolute link to the host's /usr must not make the host's manager count"
    );
}

#[test]
fn desktop_entries_are_read_from_each_managers_file_list() {
    assert_eq!(
        Manager::Apt.list_files("gedit"),
        ["dpkg-query", "-L", "--", "gedit"]
    );
    assert_eq!(
        Manager::Zypper.list_files("MozillaFirefox"),
        ["rpm", "-ql", "--", "MozillaFirefox"]
    );
    // dpkg-query -L (also lists directories), rpm -ql and pacman -Qlq: absolute paths.
    let dpkg =
        "/.\n/usr\n/usr/share/applications\n/usr/share/applications/org.gnome.gedit.desktop\n\
                /usr/share/icons/hicolor/scalable/apps/org.gnome.gedit.svg\n\
                /usr/share/applications/screensavers/x.desktop\n/usr/share/doc/gedit.desktop\n";
    assert_eq!(
        desktop_files(dpkg),
        ["/usr/share/applications/org.gnome.gedit.desktop"]
    );
    let pacman = "/usr/\n/usr/share/applications/\n/usr/share/applications/firefox.desktop\n";
    assert_eq!(
        desktop_files(pacman),
        ["/usr/share/applications/firefox.desktop"]
    );
    // apk info -L: a header, then paths without the leading slash.
    let apk = "mousepad-0.6.1-r0 contains:\nusr/bin/mousepad\n\
               usr/share/applications/org.xfce.mousepad.desktop\n\n";
    assert_eq!(
        desktop_files(apk),
        ["/usr/share/applications/org.xfce.mousepad.desktop"]
    );
    assert!(desktop_files("package xterm is not installed\n").is_empty());
}

#[test]
fn versions_the_mirror_lacks_are_read_from_apts_errors() {
    // apt-get install of a lock with a version the mirror does not have, recorded.
    let output = "\
`apt-get install -y --no-install-recommends -- jq=1.6-2.1+deb12u2 libonig5=9.9.9-9` exited with code 100; its last lines:
  Package libonig5 is not available, but is referred to by another package.
  This may mean that the package is missing, has been obsoleted, or
  is only available from another source

  E: Version '9.9.9-9' for 'libonig5' was not found
  E: Version '1:0' for 'jq' was not found";
    assert_eq!(
        Manager::Apt.missing_versions(output),
        [
            ("libonig5".to_string(), "9.9.9-9".to_string()),
            ("jq".to_string(), "1:0".to_string())
        ]
    );
    assert!(Manager::Apt
        .missing_versions("E: Unable to locate package nosuch")
        .is_empty());
    assert!(Manager::Dnf.missing_versions(output).is_empty());
}

#[test]
fn a_hostile_candidate_never_reaches_the_lock() {
    let policy = "hello:\n  Installed: (none)\n  Candidate: 2.10$(id)\n  Version table:\n";
    let err = Manager::Apt
        .parse_resolve(&[spec("hello")], &no_pins(), policy)
        .expect_err("hostile version");
    assert!(matches!(err, PackageError::Unreadable { .. }), "{err:?}");
    assert!(err.to_string().contains("2.10$(id)"), "{err}");
}

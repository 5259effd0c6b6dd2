//! Reading an install's transaction. apt's: dpkg-query listings before and after the install,
//! cut from ones recorded on the debootstrap'd Debian 12 image the end-to-end tests use (with
//! bookworm-security enabled for the upgrades). The dry-run parsers of the other managers
//! follow the formats of each manager's source (dnf 4's `output.py`, libdnf5-cli's
//! `transaction_table.cpp`, zypper's `Summary::dumpAsXmlTo`, pacman's `--print-format`, apk's
//! `--simulate`), with real package names and versions of their distributions.

use super::{Change, Manager, PackageError, Probe, Transaction};
use crate::lock::LockedPackage;

fn locked(name: &str, version: &str) -> LockedPackage {
    LockedPackage {
        name: name.to_string(),
        version: version.to_string(),
    }
}

fn new(name: &str, version: &str) -> Change {
    Change {
        name: name.to_string(),
        version: version.to_string(),
        replaces: None,
    }
}

fn upgrade(name: &str, old: &str, version: &str) -> Change {
    Change {
        replaces: Some(old.to_string()),
        ..new(name, version)
    }
}

/// A manager's dry run of the install read by the parser its probe names.
fn dry_run(manager: Manager, stdout: &str) -> Result<Transaction, PackageError> {
    match manager.probe(&[]) {
        Probe::DryRun { parse, .. } => parse(stdout),
        Probe::Install { .. } => panic!("{manager} has no dry run"),
    }
}

/// What apt's install changed, from the two listings.
fn apt_changes(before: &str, after: &str) -> Result<Transaction, PackageError> {
    match Manager::Apt.probe(&[]) {
        Probe::Install { compare, .. } => compare(before, after),
        Probe::DryRun { .. } => panic!("apt installs to learn its transaction"),
    }
}

/// `dpkg-query -W -f '${db:Status-Status} ${Package} ${Architecture} ${Version}\n' --` on the
/// image, cut to the lines that matter here.
const DPKG_IMAGE: &str = "\
installed apt amd64 2.6.1
installed base-files amd64 12.4+deb12u15
installed bash amd64 5.2.15-2+b13
installed debconf all 1.5.82
installed dpkg amd64 1.21.22
installed libc6 amd64 2.36-9+deb12u13
installed liblzma5 amd64 5.4.1-1+deb12u1
installed tzdata all 2026b-0+deb12u1
";

/// The same after `apt-get install --no-install-recommends -- jq=1.6-2.1+deb12u2`.
const DPKG_JQ: &str = "\
installed apt amd64 2.6.1
installed base-files amd64 12.4+deb12u15
installed bash amd64 5.2.15-2+b13
installed debconf all 1.5.82
installed dpkg amd64 1.21.22
installed jq amd64 1.6-2.1+deb12u2
installed libc6 amd64 2.36-9+deb12u13
installed libjq1 amd64 1.6-2.1+deb12u2
installed liblzma5 amd64 5.4.1-1+deb12u1
installed libonig5 amd64 6.9.8-1
installed tzdata all 2026b-0+deb12u1
";

#[test]
fn apt_changes_are_read_from_dpkgs_database_before_and_after() {
    assert_eq!(
        apt_changes(DPKG_IMAGE, DPKG_JQ).expect("jq"),
        Transaction {
            installs: vec![
                new("jq", "1.6-2.1+deb12u2"),
                new("libjq1", "1.6-2.1+deb12u2"),
                new("libonig5", "6.9.8-1"),
            ],
            removes: Vec::new(),
        }
    );
    // Upgrades of the image's packages, a removal that leaves configuration files, a purge,
    // and a foreign-architecture package (named as apt names it, with its architecture).
    let after = DPKG_JQ
        .replace(
            "liblzma5 amd64 5.4.1-1+deb12u1",
            "liblzma5 amd64 5.4.1-1+deb12u2",
        )
        .replace("installed tzdata", "config-files tzdata")
        .replace("installed debconf all 1.5.82\n", "")
        + "installed libc6 i386 2.36-9+deb12u13\nnot-installed libfoo \n";
    let tx = apt_changes(DPKG_IMAGE, &after).expect("changes");
    assert_eq!(
        tx.installs,
        [
            new("jq", "1.6-2.1+deb12u2"),
            new("libc6:i386", "2.36-9+deb12u13"),
            new("libjq1", "1.6-2.1+deb12u2"),
            upgrade("liblzma5", "5.4.1-1+deb12u1", "5.4.1-1+deb12u2"),
            new("libonig5", "6.9.8-1"),
        ]
    );
    assert_eq!(tx.removes, ["debconf", "tzdata"]);
    // Nothing installed: nothing changed.
    assert_eq!(
        apt_changes(DPKG_IMAGE, DPKG_IMAGE).expect("empty"),
        Transaction::default()
    );
    // The native architecture is dpkg's: on arm64, an amd64 package is the foreign one.
    let arm = "installed dpkg arm64 1.21.22\n";
    let tx = apt_changes(arm, &format!("{arm}installed hello amd64 2.10-3\n")).expect("arm");
    assert_eq!(tx.installs, [new("hello:amd64", "2.10-3")]);
}

#[test]
fn apt_listings_with_odd_or_hostile_lines_are_refused_by_line() {
    let cases = [
        ("installed jq", "expected STATUS NAME ARCH VERSION"),
        ("installed jq amd64", "expected STATUS NAME ARCH VERSION"),
        (
            "installed jq amd64 1.6 extra",
            "expected STATUS NAME ARCH VERSION",
        ),
        (
            "unheard-of jq amd64 1.6",
            "expected STATUS NAME ARCH VERSION",
        ),
        ("installed ;rm amd64 1.0", "`;`"),
        ("installed -o amd64 1.0", "-o"),
        ("installed jq=2 amd64 1.0", "not a package name"),
        ("installed jq am;d64 1.0", "not an architecture"),
        ("installed jq amd64 1.0$(id)", "not a version"),
        ("installed jq amd64 -1.0", "not a version"),
    ];
    for (line, problem) in cases {
        let err = apt_changes(DPKG_IMAGE, &format!("{DPKG_IMAGE}{line}\n")).expect_err(line);
        let PackageError::UnreadableTransaction {
            problem: got,
            line: shown,
            ..
        } = &err
        else {
            panic!("{line}: {err:?}");
        };
        assert!(got.contains(problem), "{line}: {got}");
        assert_eq!(shown, line, "the error names the line");
        assert!(err.to_string().contains(line), "{err}");
    }
    // The same package twice is not one database.
    let twice = format!("{DPKG_IMAGE}installed bash amd64 5.2.15-2+b14\n");
    let err = apt_changes(DPKG_IMAGE, &twice).expect_err("twice");
    assert!(err.to_string().contains("listed twice"), "{err}");
    // A control character or a huge line is shown escaped and cut.
    let long = format!(
        "{DPKG_IMAGE}installed j\u{1b}[2Jq amd64 {}\n",
        "1".repeat(5000)
    );
    let text = apt_changes(DPKG_IMAGE, &long)
        .expect_err("control character")
        .to_string();
    assert!(
        !text.contains('\u{1b}') && text.contains("\\u{1b}"),
        "{text}"
    );
    assert!(text.len() < 600, "{} bytes", text.len());
    // Without dpkg itself the native architecture is unknown.
    let err = apt_changes("", "installed hello amd64 2.10-3\n").expect_err("no dpkg");
    assert!(err.to_string().contains("native architecture"), "{err}");
}

/// dnf 4 (`dnf install --assumeno --setopt=install_weak_deps=False jq
/// python3-dnf-plugin-versionlock` on Rocky Linux 9), with a name too wide for its column.
const DNF4: &str = "\
Last metadata expiration check: 0:01:12 ago on Mon 01 Dec 2026 10:00:00 AM UTC.
Dependencies resolved.
================================================================================
 Package                          Arch      Version            Repository  Size
================================================================================
Installing:
 jq                               x86_64    1.6-17.el9         appstream  186 k
 python3-dnf-plugin-versionlock-extra-long-name
                                  noarch    4.3.0-16.el9       baseos      65 k
Installing dependencies:
 oniguruma                        x86_64    6.9.6-1.el9.6      appstream  217 k
Upgrading:
 glibc                            x86_64    2.34-125.el9_5.8   baseos     2.0 M
 vim-minimal                      x86_64    2:8.2.2637-21.el9  baseos     665 k
     replacing  vim-tiny.x86_64 2:8.2.2637-20.el9
Removing dependent packages:
 glibc-langpack-en                x86_64    2.34-100.el9       @baseos    5.6 M

Transaction Summary
================================================================================
Install    3 Packages
Upgrade    2 Packages
Remove     1 Package

Total download size: 3.1 M
Operation aborted.
";

/// dnf 5 (Fedora 41) for `jq` with glibc upgraded and an obsoleted package.
const DNF5: &str = "\
Updating and loading repositories:
 Fedora 41 - x86_64 - Updates           100% |  12.3 KiB/s |   5.9 KiB |  00m00s
Repositories loaded.
Package                 Arch    Version                 Repository      Size
Installing:
 jq                     x86_64  1.7.1-8.fc41            fedora     414.3 KiB
Installing dependencies:
 oniguruma              x86_64  6.9.9-5.fc41            fedora     749.2 KiB
Upgrading:
 glibc                  x86_64  2.40-17.fc41            updates      6.7 MiB
   replacing            x86_64  2.40-9.fc41             updates      6.7 MiB
 vim-data               noarch  2:9.1.1202-1.fc41       updates     10.2 KiB
   replacing vim-common noarch  2:9.1.1000-1.fc41       <unknown>    0.0   B
Skipping packages with broken dependencies:
 python3-foo            noarch  1.0-1.fc41              updates     12.0 KiB

Transaction Summary:
 Installing:         2 packages
 Upgrading:          2 packages
 Replacing:          2 packages
 Skipping:           1 package

Total size of inbound packages is 3 MiB. Need to download 3 MiB.
After this operation, 1 MiB extra will be used (install 14 MiB, remove 13 MiB).
Operation aborted by the user.
";

#[test]
fn dnf_tables_of_both_versions_are_read() {
    let tx = dry_run(Manager::Dnf, DNF4).expect("dnf 4");
    assert_eq!(
        tx.installs,
        [
            new("jq", "1.6-17.el9"),
            new(
                "python3-dnf-plugin-versionlock-extra-long-name",
                "4.3.0-16.el9"
            ),
            new("oniguruma", "6.9.6-1.el9.6"),
            new("glibc", "2.34-125.el9_5.8"),
            new("vim-minimal", "2:8.2.2637-21.el9"),
        ]
    );
    assert_eq!(tx.removes, ["vim-tiny", "glibc-langpack-en"]);

    let tx = dry_run(Manager::Dnf, DNF5).expect("dnf 5");
    assert_eq!(
        tx.installs,
        [
            new("jq", "1.7.1-8.fc41"),
            new("oniguruma", "6.9.9-5.fc41"),
            upgrade("glibc", "2.40-9.fc41", "2.40-17.fc41"),
            new("vim-data", "2:9.1.1202-1.fc41"),
        ],
        "repository progress and skipped packages are not installed"
    );
    assert_eq!(tx.removes, ["vim-common"]);

    let nothing = "Package \"jq-1.7.1-8.fc41.x86_64\" is already installed.\n\nNothing to do.\n";
    assert_eq!(
        dry_run(Manager::Dnf, nothing).expect("nothing"),
        Transaction::default()
    );
    // dnf 4 fails with exit code 1 too (`Error: Unable to find a match`): without the summary
    // the output is not a transaction, whatever else it says.
    let failed = "Last metadata expiration check: 0:00:01 ago.\nNo match for argument: nosuch\n";
    assert_eq!(
        dry_run(Manager::Dnf, failed),
        Err(PackageError::NoTransaction {
            manager: Manager::Dnf
        })
    );
    assert!(Manager::Dnf.simulate_succeeded(1) && !Manager::Apt.simulate_succeeded(1));
}

#[test]
fn dnf_rows_that_cannot_be_read_are_refused() {
    for table in [
        "Installing:\n jq x86_64\n\nTransaction Summary\n",
        "Installing:\n                 x86_64 1.0 fedora 1 k\n\nTransaction Summary\n",
        "Installing:\n jq x86_64 1.0`id` fedora 1 k\n\nTransaction Summary\n",
        "Upgrading:\n glibc x86_64 2.40 updates 1 k\n   replacing x86_64\n\nTransaction Summary\n",
    ] {
        let err = dry_run(Manager::Dnf, table).expect_err(table);
        assert!(
            matches!(err, PackageError::UnreadableTransaction { .. }),
            "{table}: {err:?}"
        );
    }
}

/// `zypper --xmlout --non-interactive install --dry-run --no-recommends -- jq` on openSUSE
/// Tumbleweed, with an upgrade, a pattern and an escaped description.
const ZYPPER: &str = r#"<?xml version='1.0'?>
<stream>
<message type="info">Loading repository data...</message>
<message type="info">Reading installed packages...</message>
<message type="info">Resolving package dependencies...</message>
<install-summary download-size="349624" space-usage-diff="1101546">
<to-upgrade>
<solvable type="package" name="libgcc_s1" edition="14.2.1+git10750-1.1" arch="x86_64" edition-old="14.2.1+git10526-2.1" arch-old="x86_64" summary="C compiler runtime library"/>
</to-upgrade>
<to-install>
<solvable type="package" name="jq" edition="1.7.1-3.2" arch="x86_64" summary="A lightweight and flexible command-line JSON processor">
<description>jq is like sed for JSON data &lt;solvable type=&quot;package&quot; name=&quot;evil&quot; edition=&quot;6.6.6&quot;/&gt;</description></solvable>
<solvable type="package" name="libjq1" edition="1.7.1-3.2" arch="x86_64" summary="Library for jq"/>
<solvable type="package" name="libonig5" edition="6.9.10-1.3" arch="x86_64" summary="Regular expressions library"/>
<solvable type="pattern" name="devel_basis" edition="20170319-12.1" arch="x86_64" summary="Base Development"/>
</to-install>
<to-remove>
<solvable type="package" name="busybox-which" edition="1.37.0-1.1" arch="noarch" summary="Busybox applet for which"/>
</to-remove>
<to-change-vendor>
<solvable type="package" name="libgcc_s1" edition="14.2.1+git10750-1.1" arch="x86_64" edition-old="14.2.1+git10526-2.1" arch-old="x86_64"/>
</to-change-vendor>
</install-summary>
<message type="info">4 packages to upgrade, 3 new, 1 to remove.</message>
</stream>
"#;

#[test]
fn zypper_install_summary_is_read_from_its_xml() {
    let tx = dry_run(Manager::Zypper, ZYPPER).expect("zypper");
    assert_eq!(
        tx.installs,
        [
            upgrade("libgcc_s1", "14.2.1+git10526-2.1", "14.2.1+git10750-1.1"),
            new("jq", "1.7.1-3.2"),
            new("libjq1", "1.7.1-3.2"),
            new("libonig5", "6.9.10-1.3"),
        ],
        "the pattern, the escaped text and the repeated vendor change are not packages"
    );
    assert_eq!(tx.removes, ["busybox-which"]);
    let nothing = "<?xml version='1.0'?>\n<stream>\n<message type=\"info\">Nothing to do.</message>\n</stream>\n";
    assert_eq!(
        dry_run(Manager::Zypper, nothing).expect("nothing"),
        Transaction::default()
    );
    assert_eq!(
        dry_run(Manager::Zypper, "<stream>\n</stream>\n"),
        Err(PackageError::NoTransaction {
            manager: Manager::Zypper
        })
    );
    let hostile = "<install-summary>\n<to-install>\n<solvable type=\"package\" name=\"-rf\" edition=\"1\"/>\n</to-install>\n</install-summary>\n";
    assert!(matches!(
        dry_run(Manager::Zypper, hostile),
        Err(PackageError::UnreadableTransaction { .. })
    ));
    let cut = "<install-summary>\n<to-install>\n<solvable type=\"package\" name=\"jq\"";
    assert!(dry_run(Manager::Zypper, cut).is_err());
}

#[test]
fn pacman_prints_the_targets_with_their_dependencies() {
    // `pacman -S --needed --noconfirm --print --print-format '%n %v' jq java-runtime`.
    let out = "\
:: There are 2 providers available for java-runtime:
:: Repository extra
   1) jre-openjdk  2) jre21-openjdk

Enter a number (default=1):
oniguruma 6.9.10-1
jq 1.7.1-2
jre-openjdk 23.0.2.u7-1
";
    let tx = dry_run(Manager::Pacman, out).expect("pacman");
    assert_eq!(
        tx.installs,
        [
            new("oniguruma", "6.9.10-1"),
            new("jq", "1.7.1-2"),
            new("jre-openjdk", "23.0.2.u7-1")
        ]
    );
    for odd in ["jq 1.7 extra\n", "jq$(id) 1.0\n", "jq 1.0;x\n"] {
        assert!(
            matches!(
                dry_run(Manager::Pacman, odd),
                Err(PackageError::UnreadableTransaction { .. })
            ),
            "{odd}"
        );
    }
}

#[test]
fn apk_simulation_steps_are_read_with_padded_counters() {
    // `apk add --simulate --no-cache jq git` on Alpine 3.20 with musl upgraded.
    let out = "\
fetch https://dl-cdn.alpinelinux.org/alpine/v3.20/main/x86_64/APKINDEX.tar.gz
( 1/10) Upgrading musl (1.2.5-r0 -> 1.2.5-r1)
( 2/10) Installing ca-certificates-bundle (20240705-r0)
( 3/10) Installing brotli-libs (1.1.0-r2)
( 4/10) Installing c-ares (1.33.1-r0)
( 5/10) Installing libunistring (1.2-r0)
( 6/10) Installing libidn2 (2.3.7-r0)
( 7/10) Installing nghttp2-libs (1.62.1-r0)
( 8/10) Installing oniguruma (6.9.9-r0)
( 9/10) Installing jq (1.7.1-r0)
(10/10) Purging busybox-extras (1.36.1-r29)
Executing busybox-1.36.1-r29.trigger
OK: 12 MiB in 24 packages
";
    let tx = dry_run(Manager::Apk, out).expect("apk");
    assert_eq!(tx.installs.len(), 9);
    assert_eq!(tx.installs[0], upgrade("musl", "1.2.5-r0", "1.2.5-r1"));
    assert_eq!(tx.installs[8], new("jq", "1.7.1-r0"));
    assert_eq!(tx.removes, ["busybox-extras"]);
    for odd in [
        "(1/1) Installing jq\n",
        "(1/1) Installing jq 1.7.1-r0\n",
        "(1/1) Installing jq (1.7.1-r0 -> )\n",
    ] {
        assert!(
            matches!(
                dry_run(Manager::Apk, odd),
                Err(PackageError::UnreadableTransaction { .. })
            ),
            "{odd}"
        );
    }
}

#[test]
fn dependencies_are_the_transaction_minus_the_listed_packages() {
    let tx = apt_changes(DPKG_IMAGE, DPKG_JQ).expect("jq");
    let listed = [
        locked("jq", "1.6-2.1+deb12u2"),
        locked("bash", "5.2.15-2+b13"),
    ];
    assert_eq!(
        Manager::Apt.dependencies(&listed, &tx).expect("deps"),
        [
            locked("libjq1", "1.6-2.1+deb12u2"),
            locked("libonig5", "6.9.8-1")
        ],
        "sorted by name; bash is in the image already"
    );
    // The install was asked for exactly the resolved version: another one is an error.
    let err = Manager::Apt
        .dependencies(&[locked("jq", "1.6-2.1+deb12u3")], &tx)
        .expect_err("differs");
    assert!(
        matches!(&err, PackageError::TransactionDiffers { name, .. } if name == "jq"),
        "{err:?}"
    );
    // An upgraded package of the image is a dependency like any other, at its new version.
    let after = DPKG_JQ.replace(
        "liblzma5 amd64 5.4.1-1+deb12u1",
        "liblzma5 amd64 5.4.1-1+deb12u2",
    );
    let tx = apt_changes(DPKG_IMAGE, &after).expect("upgrades");
    let deps = Manager::Apt
        .dependencies(&[locked("jq", "1.6-2.1+deb12u2")], &tx)
        .expect("deps");
    assert!(
        deps.contains(&locked("liblzma5", "5.4.1-1+deb12u2")),
        "{deps:?}"
    );
    assert_eq!(deps.len(), 3);
    // A foreign-architecture package is named with its qualifier, as the manifest names it.
    let tx = apt_changes(
        DPKG_IMAGE,
        &format!("{DPKG_IMAGE}installed libc6 i386 2.36-9\n"),
    )
    .expect("multiarch");
    assert!(Manager::Apt
        .dependencies(&[locked("libc6:i386", "2.36-9")], &tx)
        .expect("deps")
        .is_empty());
    // So is a dry run's transaction (dnf's here).
    let tx = dry_run(Manager::Dnf, DNF4).expect("dnf");
    let deps = Manager::Dnf
        .dependencies(&[locked("jq", "1.6-17.el9")], &tx)
        .expect("deps");
    assert_eq!(deps.len(), 4, "{deps:?}");
}

#[test]
fn each_probe_matches_the_install_and_puts_names_last() {
    let pkgs = [locked("jq", "1.6-2.1"), locked("libonig5", "6.9.8-1")];
    // apt installs for real, between two listings of everything dpkg knows.
    let Probe::Install { list, .. } = Manager::Apt.probe(&pkgs) else {
        panic!("apt installs to learn its transaction");
    };
    assert_eq!(list, Manager::Apt.query(&[]));
    assert_eq!(list.last().map(String::as_str), Some("--"));
    // Every option of the install is in the others' dry runs too (the same dependencies
    // follow).
    for manager in [Manager::Dnf, Manager::Zypper, Manager::Pacman, Manager::Apk] {
        let install = manager.install(&pkgs, false);
        let Probe::DryRun { argv, .. } = manager.probe(&pkgs) else {
            panic!("{manager} has a dry run");
        };
        for option in install.iter().filter(|a| a.starts_with("--") && *a != "--") {
            assert!(
                argv.contains(option),
                "{manager}: {option} missing from {argv:?}"
            );
        }
        let sep = argv.iter().position(|a| a == "--").expect("--");
        assert_eq!(argv[sep + 1..], install[install.len() - 2..], "{manager}");
    }
}

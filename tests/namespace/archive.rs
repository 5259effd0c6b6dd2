//! `archive` and `unarchive` of a namespace environment, as root and as the unprivileged user
//! `karapace-test`: what overlayfs reads from the upper directory survives the round trip —
//! a created file, a whiteout (a deleted image file stays deleted), an opaque directory (a
//! directory replaced by an empty one stays empty), and files owned by another id (as
//! `karapace-test`, a subordinate id the user cannot read on the host).

use serde_json::Value;

use super::sessions::{built_with, Cli};

const TEST_USER: &str = "karapace-test";

/// `deb`'s state in `list --json`.
fn state(cli: &Cli) -> String {
    let out = cli.run(&["--json", "list"]);
    out.expect_code(0);
    let rows: Value = serde_json::from_str(&out.stdout).expect("list --json");
    rows.as_array()
        .and_then(|r| r.iter().find(|r| r["name"] == "deb"))
        .and_then(|r| r["state"].as_str())
        .unwrap_or_else(|| panic!("no state of `deb` in {rows}"))
        .to_string()
}

fn round_trip(test: &str, user: Option<&'static str>) {
    let Some((cli, id)) = built_with(test, user, "") else {
        return;
    };
    let changes = "set -e; echo made > /made-here; rm /etc/debian_version; \
                   rm -rf /usr/share/doc; mkdir /usr/share/doc; \
                   mkdir /owned; echo private > /owned/file; chmod 700 /owned; \
                   chown -R 1234:1234 /owned";
    cli.sh(changes).expect_code(0);
    // Before the archive: the same checks must pass, or the round trip proves nothing.
    let check = "cat /made-here; test -e /etc/debian_version && echo present || echo deleted; \
                 ls -A /usr/share/doc | wc -l; test -e /etc/os-release && echo lower; \
                 stat -c %u:%g /owned /owned/file; cat /owned/file";
    let expected = "made\ndeleted\n0\nlower\n1234:1234\n1234:1234\nprivate\n";
    assert_eq!(cli.sh(check).expect_code(0).stdout, expected);
    cli.run(&["stop", "deb"]).expect_code(0);

    cli.run(&["archive", "deb"]).expect_code(0);
    assert_eq!(state(&cli), "archived");
    let env_dir = cli.store().join("envs").join(&id);
    assert!(!env_dir.join("upper").exists(), "archive must free upper/");

    cli.run(&["unarchive", "deb"]).expect_code(0);
    assert_eq!(state(&cli), "built");
    assert_eq!(cli.sh(check).expect_code(0).stdout, expected);
}

#[test]
fn archive_round_trip_keeps_whiteouts_and_opaque_directories() {
    round_trip(
        "archive_round_trip_keeps_whiteouts_and_opaque_directories",
        None,
    );
}

#[test]
fn archive_round_trip_keeps_whiteouts_and_opaque_directories_unprivileged() {
    if !nix::unistd::geteuid().is_root() {
        // This run already is unprivileged: the test above covers it.
        return;
    }
    let test = "archive_round_trip_keeps_whiteouts_and_opaque_directories_unprivileged";
    round_trip(test, Some(TEST_USER));
}

//! The mount allow list through the CLI (mock backend, so no kernel features are needed):
//! hostile mounts are refused before anything is fetched, built or run, and a mount whose
//! link is re-pointed after the build is refused at the next session.
//!
//! The fixture lives under /tmp, which the default policy allows, so "outside" here means
//! outside both /tmp and the fixture's home: /etc and /.

mod util;

use std::fs;
use std::os::unix::fs::symlink;

use util::{mock_manifest, Fixture};

fn with_mount(value: &str) -> String {
    format!(
        "{}\n[mounts]\nwork = {value:?}\n",
        mock_manifest("debian/bookworm", &[])
    )
}

fn write(fx: &Fixture, dir: &str, text: &str) {
    let path = fx.path(dir);
    fs::create_dir_all(&path).expect("mkdir");
    fs::write(path.join("karapace.toml"), text).expect("write manifest");
}

#[test]
fn hostile_mounts_are_refused_before_anything_happens() {
    let fx = Fixture::new();
    symlink("/etc", fx.home().join("etc-link")).expect("symlink");
    let cases = [
        // Relative with `..`: resolved against the manifest's directory.
        ("../../../../../../etc:/data", "resolves to /etc"),
        ("~/../../../../../../etc:/data", "resolves to /etc"),
        ("~/etc-link:/data", "resolves to /etc"),
        ("/etc:/data:ro", "resolves to /etc"),
        ("/:/host", "resolves to /,"),
        // Container paths with `..` are refused by the manifest rules.
        ("~/:/data/../etc", "system"),
    ];
    for (i, (value, expected)) in cases.iter().enumerate() {
        let dir = format!("p{i}");
        write(&fx, &dir, &with_mount(value));
        let out = fx.cmd(["build", &dir]).cwd(fx.root()).run();
        assert_eq!(out.code(), Some(2), "{value}: {out:?}");
        if *expected == "system" {
            assert!(out.stderr.contains(".."), "{value}: {out:?}");
        } else {
            assert!(out.stderr.contains(expected), "{value}: {out:?}");
            assert!(
                out.stderr.contains("allow_mounts"),
                "the fix is named: {out:?}"
            );
        }
        assert!(!fx.path(&dir).join("karapace.lock").exists(), "{value}");
    }
    assert!(fx.list().is_empty(), "a refused manifest built something");
    let images = fx.store().join("images");
    assert!(
        !images.exists() || fs::read_dir(&images).expect("images").next().is_none(),
        "an image was fetched for a refused manifest"
    );
}

#[test]
fn a_link_repointed_after_the_build_is_refused_at_the_next_session() {
    let fx = Fixture::new();
    let real = fx.home().join("real");
    fs::create_dir_all(&real).expect("mkdir");
    let link = fx.home().join("data");
    symlink(&real, &link).expect("symlink");
    write(&fx, "p", &with_mount("~/data:/data"));
    fx.build("p");
    fx.run(&["exec", "p", "--", "true"]).ok();

    fs::remove_file(&link).expect("rm link");
    symlink("/etc", &link).expect("symlink");
    let out = fx.run(&["exec", "p", "--", "true"]);
    assert_eq!(out.code(), Some(2), "{out:?}");
    assert!(out.stderr.contains("resolves to /etc"), "{out:?}");
}

#[test]
fn the_users_config_widens_the_allow_list_and_the_manifest_cannot() {
    let fx = Fixture::new();
    // The manifest cannot carry a policy: unknown sections are refused.
    write(
        &fx,
        "p",
        &format!(
            "{}\n[policy]\nallow_mounts = [\"/etc\"]\n",
            with_mount("/etc:/data")
        ),
    );
    let out = fx.cmd(["build", "p"]).cwd(fx.root()).run();
    assert_eq!(out.code(), Some(2), "{out:?}");

    write(&fx, "p", &with_mount("/etc:/data:ro"));
    let config = fx.home().join(".config/karapace");
    fs::create_dir_all(&config).expect("mkdir");
    fs::write(
        config.join("config.toml"),
        "[policy]\nallow_mounts = [\"/etc\"]\n",
    )
    .expect("write config");
    fx.build("p");
}

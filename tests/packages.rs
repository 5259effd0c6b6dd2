//! Distribution packages with the `namespace` backend, end to end on the debootstrap'd Debian
//! image that `.ci/run` makes: apt reaches the Debian mirror during the build, the lock pins
//! the installed versions of the listed packages and of every dependency they add, `--locked`
//! reproduces them (and refuses a version the mirror does not have), and what runs inside is
//! isolated. Needs
//! the tarball, the network to the mirror, and user namespaces (or root); without them the
//! tests print a visible `SKIPPED:` line, unless `KARAPACE_REQUIRE_SANDBOX=1` (CI).

mod util;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use karapace_tui::lock::LockFile;
use util::Fixture;

const TEST_USER: &str = "karapace-test";

use util::{skip, visible};

fn tarball(test: &str) -> Option<PathBuf> {
    let Some(path) = std::env::var_os("KARAPACE_TEST_ROOTFS_TARBALL").map(PathBuf::from) else {
        skip(
            "packages",
            test,
            "KARAPACE_TEST_ROOTFS_TARBALL is not set (.ci/run makes it)",
        );
        return None;
    };
    Some(path)
}

/// The tarball and a fixture where the namespace backend works (see `util`).
fn setup(test: &str) -> Option<(Fixture, PathBuf)> {
    util::namespace_fixture("packages", test)
}

fn manifest(tarball: &Path, packages: &str, runtime: &str) -> String {
    format!(
        "manifest_version = 1\n[base]\nimage = \"{}\"\n[system]\npackages = [{packages}]\n\
         [runtime]\nbackend = \"namespace\"\n{runtime}",
        tarball.display()
    )
}

fn write(dir: &Path, text: &str) -> PathBuf {
    fs::create_dir_all(dir).expect("mkdir");
    let path = dir.join("karapace.toml");
    fs::write(&path, text).expect("write manifest");
    path
}

fn scratch_dirs(store: &Path) -> Vec<String> {
    fs::read_dir(store.join("tmp"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("scratch-"))
                .collect()
        })
        .unwrap_or_default()
}

/// `name → version` of one array of a lock (`packages` or `dependencies`).
fn locked(lock: &str, key: &str) -> BTreeMap<String, String> {
    let lock: toml::Value = lock.parse().expect("lock is TOML");
    lock.get(key)
        .and_then(|list| list.as_array())
        .map(|list| {
            list.iter()
                .map(|p| {
                    (
                        p["name"].as_str().expect("name").to_string(),
                        p["version"].as_str().expect("version").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `name → version` of `names` as dpkg-query reports them inside the environment `env`.
fn installed(fx: &Fixture, env: &str, names: &[&String]) -> BTreeMap<String, String> {
    let mut args = vec![
        "exec",
        env,
        "--",
        "dpkg-query",
        "-W",
        "-f",
        "${Package} ${Version}\n",
        "--",
    ];
    args.extend(names.iter().map(|n| n.as_str()));
    let out = fx.run(&args);
    out.ok()
        .stdout()
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

#[test]
fn apt_installs_pins_and_locked_rebuilds_reproduce() {
    let Some((fx, tarball)) = setup("apt_installs_pins_and_locked_rebuilds_reproduce") else {
        return;
    };
    // Isolated at run time; the build still reaches the mirror. hello needs nothing the image
    // lacks; jq needs libjq1 and libonig5, which minbase does not have.
    write(
        &fx.path("deb"),
        &manifest(&tarball, "\"hello\", \"jq\"", "network_isolation = true\n"),
    );
    let out = fx
        .cmd(["--json", "build", "deb"])
        .cwd(fx.root())
        .timeout(util::BUILD_TIMEOUT)
        .run();
    let built = out.ok().json();
    // apt's solver runs once: the install that tells the dependencies (in the resolve's
    // scratch overlay) is the environment's, and the indexes are refreshed once.
    for (step, times) in [
        ("apt: apt-get update", 1),
        ("apt: apt-get install", 1),
        ("apt: apt-get install -s", 0),
    ] {
        let count = out.stderr.lines().filter(|l| l.starts_with(step)).count();
        assert_eq!(count, times, "`{step}` ran {count} times: {}", out.stderr);
    }
    let id = built["id"].as_str().expect("id").to_string();
    let lock_path = fx.path("deb/karapace.lock");
    let lock = fs::read_to_string(&lock_path).expect("lock");
    let listed = locked(&lock, "packages");
    let deps = locked(&lock, "dependencies");
    assert_eq!(
        listed.keys().collect::<Vec<_>>(),
        ["hello", "jq"],
        "the listed packages stay apart from their dependencies: {lock}"
    );
    for dep in ["libjq1", "libonig5"] {
        assert!(deps.contains_key(dep), "{dep} is not locked: {lock}");
    }
    // Every locked package is installed at exactly its locked version.
    let all: BTreeMap<String, String> = listed.clone().into_iter().chain(deps.clone()).collect();
    let names: Vec<&String> = all.keys().collect();
    assert_eq!(
        installed(&fx, "deb", &names),
        all,
        "the lock names what is installed"
    );
    // Every locked package is marked as installed on request, as a `--locked` build (which
    // names them all) leaves them: the environment is the same whichever way it was built.
    let auto = fx.run(&["exec", "deb", "--", "apt-mark", "showauto"]);
    assert_eq!(
        auto.ok().stdout(),
        "",
        "packages marked automatic: {auto:?}"
    );
    // inspect shows what was asked for and, apart, what came with it.
    let inspect = fx.run(&["inspect", "deb"]);
    let shown = inspect.ok().stdout();
    let deps_shown = format!("dependencies:\n  libjq1 {}\n", deps["libjq1"]);
    assert!(shown.contains(&deps_shown), "{shown}");

    let hello = fx.run(&["exec", "deb", "--", "hello"]);
    assert_eq!(hello.ok().stdout(), "Hello, world!\n", "{hello:?}");
    // jq runs: its libraries came with it.
    let jq = fx.run(&["exec", "deb", "--", "jq", "-n", "1 + 1"]);
    assert_eq!(jq.ok().stdout(), "2\n", "{jq:?}");

    // Nothing host-specific or downloaded is left in the layer, and no scratch space.
    let upper = fx.env_dir(&id).join("upper");
    assert!(
        !upper.join("etc/resolv.conf").exists(),
        "the host's resolver configuration leaked into the layer"
    );
    let debs: Vec<_> = fs::read_dir(upper.join("var/cache/apt/archives"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                // The image's own .debs (debootstrap keeps them) are hidden by whiteouts, which
                // are character devices: only regular files are downloads of this build.
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .filter(|e| e.file_name().to_string_lossy().ends_with(".deb"))
                .collect()
        })
        .unwrap_or_default();
    assert!(debs.is_empty(), "downloaded packages kept: {debs:?}");
    assert!(scratch_dirs(&fx.store()).is_empty());

    // Isolation from the inside: no_new_privs, only lo, only the minimal devices, and no
    // writes outside the overlay.
    let status = fx.run(&[
        "exec",
        "deb",
        "--",
        "grep",
        "NoNewPrivs",
        "/proc/self/status",
    ]);
    assert!(status.ok().stdout().contains('1'), "{status:?}");
    let net = fx.run(&["exec", "deb", "--", "cat", "/proc/net/dev"]);
    let ifaces: Vec<String> = net
        .ok()
        .stdout()
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next().map(|s| s.trim().to_string()))
        .collect();
    assert_eq!(ifaces, ["lo"], "{net:?}");
    let devs = fx.run(&["exec", "deb", "--", "ls", "-A", "/dev"]);
    let mut devs: Vec<String> = devs.ok().stdout().lines().map(str::to_string).collect();
    devs.sort();
    let allowed = [
        "console", "core", "fd", "full", "mqueue", "null", "ptmx", "pts", "random", "shm",
        "stderr", "stdin", "stdout", "tty", "urandom", "zero",
    ];
    for dev in &devs {
        assert!(
            allowed.contains(&dev.as_str()),
            "unexpected /dev/{dev}: {devs:?}"
        );
    }
    // access(2) reports EROFS for a read-only mount, even to root: nothing is written.
    for path in [
        "/sys/kernel/mm",
        "/proc/sys/kernel/core_pattern",
        "/proc/sysrq-trigger",
    ] {
        let write = fx.run(&["exec", "deb", "--", "test", "-w", path]);
        assert_eq!(write.code(), Some(1), "{path} is writable: {write:?}");
    }

    // --locked: the same id, the same lock, the same installed versions.
    let rebuilt = fx
        .cmd(["--json", "rebuild", "--locked", "deb"])
        .cwd(fx.root())
        .timeout(util::BUILD_TIMEOUT)
        .run();
    let rebuilt = rebuilt.json();
    assert_eq!(rebuilt["id"].as_str(), Some(id.as_str()), "{rebuilt}");
    assert_eq!(fs::read_to_string(&lock_path).expect("lock"), lock);
    assert_eq!(installed(&fx, "deb", &names), all);
    let auto = fx.run(&["exec", "deb", "--", "apt-mark", "showauto"]);
    assert_eq!(
        auto.ok().stdout(),
        "",
        "packages marked automatic: {auto:?}"
    );

    // A lock pinning a dependency at a version the mirror does not have (its id recomputed,
    // as a hand edit that also fixed the id would): the locked build fails, naming the
    // dependency and the version, and says what to do; nothing is left behind.
    let mut tampered = LockFile::read(&lock_path).expect("read").expect("lock");
    let dep = tampered
        .dependencies
        .as_mut()
        .and_then(|deps| deps.iter_mut().find(|d| d.name == "libonig5"))
        .expect("libonig5 is a locked dependency");
    dep.version = "9.9.9-9".to_string();
    tampered.env_id = tampered.compute_identity();
    tampered.short_id = tampered.env_id.short().to_string();
    tampered.write(&lock_path).expect("write the tampered lock");
    let refused = fx
        .cmd(["build", "--locked", "deb"])
        .cwd(fx.root())
        .timeout(util::BUILD_TIMEOUT)
        .run();
    assert_eq!(refused.code(), Some(1), "{refused:?}");
    for part in ["libonig5 9.9.9-9 (a dependency)", "build --update"] {
        assert!(refused.stderr.contains(part), "{part}: {refused:?}");
    }
    assert_eq!(fx.list().len(), 1, "the failed build left an environment");
    assert!(scratch_dirs(&fx.store()).is_empty(), "scratch space left");
}

#[test]
fn a_missing_package_is_named_and_leaves_nothing_behind() {
    let Some((fx, tarball)) = setup("a_missing_package_is_named") else {
        return;
    };
    write(
        &fx.path("deb"),
        &manifest(&tarball, "\"karapace-no-such-package\"", ""),
    );
    let out = fx
        .cmd(["build", "deb"])
        .cwd(fx.root())
        .timeout(util::BUILD_TIMEOUT)
        .run();
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert!(
        out.stderr
            .contains("`karapace-no-such-package` was not found"),
        "{out:?}"
    );
    assert!(fx.list().is_empty(), "a failed build left an environment");
    assert!(scratch_dirs(&fx.store()).is_empty(), "scratch space left");
    assert!(!fx.path("deb/karapace.lock").exists());
}

#[test]
fn hostile_package_names_are_refused_before_anything_runs() {
    // No kernel or network needed: the manifest is refused first. The image path does not even
    // exist, so any attempt to fetch it would fail differently.
    let fx = Fixture::new();
    let marker = fx.path("pwned");
    let hostile = [
        "\"-rf\"".to_string(),
        "\"--allow-unauthenticated\"".to_string(),
        "\"hello;touch PWNED\"".replace("PWNED", &marker.display().to_string()),
        "\"$(touch PWNED)\"".replace("PWNED", &marker.display().to_string()),
        "\"`touch PWNED`\"".replace("PWNED", &marker.display().to_string()),
        "\"hello\\ntouch PWNED\"".replace("PWNED", &marker.display().to_string()),
        "\"hello world\"".to_string(),
    ];
    for (i, name) in hostile.iter().enumerate() {
        let dir = fx.path(&format!("p{i}"));
        write(
            &dir,
            &manifest(Path::new("/nonexistent/image.tar.xz"), name, ""),
        );
        let out = fx
            .cmd(["build", &format!("p{i}")])
            .cwd(fx.root())
            .timeout(util::BUILD_TIMEOUT)
            .run();
        assert_eq!(out.code(), Some(2), "{name}: {out:?}");
        assert!(out.stderr.contains("system.packages[0]"), "{name}: {out:?}");
        assert!(!dir.join("karapace.lock").exists());
    }
    assert!(!marker.exists(), "a package name ran a command");
    assert!(fx.list().is_empty());
    let images = fx.store().join("images");
    assert!(
        !images.exists() || fs::read_dir(&images).expect("images").next().is_none(),
        "something was fetched"
    );
}

/// The same build as an ordinary user: the main use of the namespace backend.
#[test]
fn apt_installs_packages_rootless() {
    const TEST: &str = "apt_installs_packages_rootless";
    if !nix::unistd::geteuid().is_root() {
        visible(&format!(
            "{TEST}: already unprivileged; apt_installs_pins_and_locked_rebuilds_reproduce \
             covers this user"
        ));
        return;
    }
    let Some(tarball) = tarball(TEST) else {
        return;
    };
    if Command::new("id")
        .args(["-u", TEST_USER])
        .output()
        .map_or(true, |o| !o.status.success())
    {
        let made = Command::new("useradd").args(["-m", TEST_USER]).status();
        if !made.is_ok_and(|s| s.success()) {
            skip(
                "packages",
                TEST,
                &format!("cannot create the user {TEST_USER}"),
            );
            return;
        }
    }
    let dir = tempfile::Builder::new()
        .prefix("karapace-pkg-rootless-")
        .tempdir()
        .expect("tempdir");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).expect("chmod");
    let bin = dir.path().join("karapace-tui");
    fs::copy(env!("CARGO_BIN_EXE_karapace-tui"), &bin).expect("copy binary");
    let project = dir.path().join("deb");
    write(&project, &manifest(&tarball, "\"hello\"", ""));
    let chown = Command::new("chown")
        .args(["-R", TEST_USER])
        .arg(&project)
        .status()
        .expect("chown");
    assert!(chown.success());
    let run = |args: &[&str]| {
        let out = Command::new("runuser")
            .args(["-u", TEST_USER, "--", "env", "-i"])
            .arg(format!(
                "PATH={}",
                std::env::var("PATH").unwrap_or_default()
            ))
            .arg(format!("HOME={}", dir.path().display()))
            .arg(format!(
                "KARAPACE_STORE={}",
                dir.path().join("store").display()
            ))
            .arg(format!(
                "XDG_CONFIG_HOME={}",
                dir.path().join("config").display()
            ))
            .arg(&bin)
            .args(args)
            .current_dir(dir.path())
            .output()
            .expect("runuser");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let doctor = run(&["--json", "doctor"]);
    if !doctor.1.contains("\"namespace\"") || doctor.1.contains("user namespaces are not") {
        skip(
            "packages",
            TEST,
            &format!("doctor as {TEST_USER}: {}", doctor.1),
        );
        return;
    }
    let build = run(&["build", "deb"]);
    assert_eq!(build.0, Some(0), "build as {TEST_USER}: {build:?}");
    let hello = run(&["exec", "deb", "--", "hello"]);
    assert_eq!(hello.1, "Hello, world!\n", "{hello:?}");
    let destroy = run(&["destroy", "deb"]);
    assert_eq!(destroy.0, Some(0), "destroy as {TEST_USER}: {destroy:?}");
    // Everything the user's sandbox wrote can be removed again (the store's cleanup).
    let leftover = fs::read_dir(dir.path().join("store/envs"))
        .expect("envs")
        .count();
    assert_eq!(leftover, 0);
}

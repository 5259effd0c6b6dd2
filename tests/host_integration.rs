//! The environment policy, host integrations, devices and homes of the namespace backend, from
//! inside a real sandbox on the debootstrap'd Debian image, as root and again as the
//! unprivileged user `karapace-test` (through `runuser`, with a store and home of its own).
//! Each check tries what the policy forbids: read a secret from the environment, find the SSH
//! agent when it is off, open a host device, find the host's home from an own home.
//! Prerequisites as in tests/namespace.rs: a missing one prints `SKIPPED:`, or fails under
//! `KARAPACE_REQUIRE_SANDBOX=1`.

mod util;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use serde_json::Value;
use util::{ensure_test_user, namespace_fixture, sandbox_required, visible, TEST_USER};

/// Longer than any step takes on a loaded machine; only a hang reaches it.
const HUNG: Duration = Duration::from_secs(180);

/// Variables set on the host for every session: secrets that must not pass, and what the
/// user's config allows or denies.
const HOST_ENV: [(&str, &str); 10] = [
    ("AWS_SECRET_ACCESS_KEY", "leak-aws"),
    ("GITHUB_TOKEN", "leak-github"),
    ("FOO_TOKEN", "leak-foo"),
    ("GPG_AGENT_INFO", "leak-gpg"),
    ("DOCKER_HOST", "leak-docker"),
    ("DB_PASSWORD", "leak-db"),
    ("LANG", "C.UTF-8"),
    ("MY_OK", "passes"),
    ("TERM", "dumb"),
    ("SHELL", "/bin/sh"),
];

/// Prints how many bytes of PID 1's readable mappings it read, and how many strings in them
/// contain `leak-` (every secret of [`HOST_ENV`]).
const SCAN_INIT_MEMORY: &str = r#"p=lea; p="${p}k-"
scan() {
    while read range perms rest; do
        case $perms in r*)
            s=$((0x${range%-*})); e=$((0x${range#*-}))
            dd if=/proc/1/mem bs=4096 skip=$((s / 4096)) count=$(((e - s) / 4096)) 2>/dev/null;;
        esac
    done < /proc/1/maps
}
echo $(scan | wc -c) $(scan | tr -c '[:print:]' '\n' | grep -c -- "$p")"#;

const CONFIG: &str = "[policy]\nenv_allow = [\"MY_OK\"]\nenv_deny = [\"LANG\"]\n";

/// The binary with a store and home of one test, run as root or as [`TEST_USER`].
struct Cli {
    bin: PathBuf,
    dir: tempfile::TempDir,
    user: Option<&'static str>,
    agent: PathBuf,
    _listener: UnixListener,
}

#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    #[track_caller]
    fn ok(&self) -> &Run {
        assert_eq!(self.code, Some(0), "{self:#?}");
        self
    }
}

impl Cli {
    fn new(user: Option<&'static str>) -> Cli {
        let dir = tempfile::Builder::new()
            .prefix("karapace-integ-")
            .tempdir()
            .expect("tempdir");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
        let home = dir.path().join("home");
        fs::create_dir_all(home.join(".config/karapace")).expect("mkdir");
        fs::write(home.join(".config/karapace/config.toml"), CONFIG).expect("config");
        fs::write(home.join("hello"), "from the host's home\n").expect("hello");
        // An SSH agent stand-in: a listening socket the sandbox can connect to when allowed.
        fs::create_dir(dir.path().join("agent")).expect("mkdir");
        let agent = dir.path().join("agent/sock");
        let listener = UnixListener::bind(&agent).expect("bind agent socket");
        fs::set_permissions(&agent, fs::Permissions::from_mode(0o777)).expect("chmod");
        let mut bin = PathBuf::from(env!("CARGO_BIN_EXE_karapace-tui"));
        if let Some(user) = user {
            // The build directory may be private: the user gets its own copy of the binary.
            let copy = dir.path().join("karapace-tui");
            fs::copy(&bin, &copy).expect("copy the binary");
            bin = copy;
            chown(user, &home);
        }
        Cli {
            bin,
            dir,
            user,
            agent,
            _listener: listener,
        }
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    fn store(&self) -> PathBuf {
        self.home().join("store")
    }

    fn command(&self, args: &[&str]) -> Command {
        let path = std::env::var("PATH").unwrap_or_default();
        let home = self.home().display().to_string();
        let store = self.store().display().to_string();
        let agent = self.agent.display().to_string();
        let mut vars: Vec<(&str, &str)> = vec![
            ("PATH", &path),
            ("HOME", &home),
            ("KARAPACE_STORE", &store),
            ("SSH_AUTH_SOCK", &agent),
        ];
        vars.extend(HOST_ENV);
        // runuser keeps the caller's environment; `env -i` starts from exactly these.
        let mut cmd = match self.user {
            None => Command::new("env"),
            Some(user) => {
                let mut cmd = Command::new("runuser");
                cmd.args(["-u", user, "--", "env"]);
                cmd
            }
        };
        cmd.arg("-i");
        for (k, v) in vars {
            cmd.arg(format!("{k}={v}"));
        }
        cmd.arg(&self.bin).args(args).current_dir(self.home());
        cmd
    }

    fn run(&self, args: &[&str]) -> Run {
        let mut cmd = self.command(args);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let shown = args.join(" ");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let sent = tx.send(cmd.output());
            drop(sent);
        });
        let out = rx
            .recv_timeout(HUNG)
            .unwrap_or_else(|_| panic!("`{shown}` hung"))
            .unwrap_or_else(|e| panic!("`{shown}`: {e}"));
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// `exec NAME -- sh -c SCRIPT`.
    fn sh(&self, name: &str, script: &str) -> Run {
        self.run(&["exec", name, "--", "sh", "-c", script])
    }

    /// Writes `home/NAME/karapace.toml` and builds it; returns the id.
    fn build(&self, name: &str, tarball: &Path, extra: &str) -> String {
        let project = self.home().join(name);
        fs::create_dir_all(&project).expect("mkdir");
        let text = format!(
            "manifest_version = 1\n[base]\nimage = \"{}\"\n[runtime]\nbackend = \"namespace\"\n\
             {extra}",
            tarball.display()
        );
        fs::write(project.join("karapace.toml"), text).expect("manifest");
        if let Some(user) = self.user {
            chown(user, &project);
        }
        let out = self.run(&["--json", "build", name]);
        out.ok();
        let built: Value = serde_json::from_str(&out.stdout).expect("build --json");
        built["id"].as_str().expect("id").to_string()
    }

    /// The uid files made by this caller get on the host.
    fn uid(&self) -> u32 {
        match self.user {
            None => 0,
            Some(user) => {
                let out = Command::new("id").args(["-u", user]).output().expect("id");
                String::from_utf8_lossy(&out.stdout)
                    .trim()
                    .parse()
                    .expect("uid")
            }
        }
    }
}

fn chown(user: &str, path: &Path) {
    let status = Command::new("chown")
        .args(["-R", user])
        .arg(path)
        .status()
        .expect("chown");
    assert!(status.success());
}

fn skip(test: &str, why: &str) {
    assert!(!sandbox_required(), "KARAPACE_REQUIRE_SANDBOX=1 but {why}");
    visible(&format!("SKIPPED: host_integration::{test}: {why}"));
}

/// The namespace backend's `doctor` row for this caller says it can run.
fn usable(cli: &Cli) -> Result<(), String> {
    let report: Value = serde_json::from_str(&cli.run(&["--json", "doctor"]).stdout)
        .map_err(|e| format!("doctor --json: {e}"))?;
    let row = report["backends"]
        .as_array()
        .and_then(|b| b.iter().find(|b| b["backend"] == "namespace"))
        .cloned()
        .unwrap_or_default();
    if row["available"] != true {
        return Err(format!(
            "the namespace backend is unavailable: {}",
            row["detail"]
        ));
    }
    Ok(())
}

/// What `/dev` holds without any device allowed: bubblewrap's minimal set.
const MINIMAL_DEV: &str = "core fd full null ptmx pts random shm stderr stdin stdout tty \
                           urandom zero";

/// Host devices the sandbox must not open (those that exist here, and the GPU and sound
/// directories the manifest asks for but this machine lacks).
const HOST_DEVICES: &str = "/dev/kmsg /dev/mem /dev/port /dev/sda /dev/vda /dev/nvme0n1 \
                            /dev/dri /dev/snd /dev/fuse /dev/loop0 /dev/tty0";

fn scenario(test: &str, user: Option<&'static str>) {
    let Some((_fx, tarball)) = namespace_fixture("host_integration", test) else {
        return;
    };
    if let Some(user) = user {
        if let Err(why) = ensure_test_user() {
            return skip(test, &why);
        }
        let readable = fs::metadata(&tarball).is_ok_and(|m| m.mode() & 0o004 != 0);
        if !readable {
            return skip(
                test,
                &format!("{} is not readable by {user}", tarball.display()),
            );
        }
    }
    let cli = Cli::new(user);
    if let Err(why) = usable(&cli) {
        return skip(test, &why);
    }
    let home = cli.home().display().to_string();
    let agent = cli.agent.display().to_string();

    // The host's home, the manifest's variable, devices asked for but absent here.
    cli.build(
        "hosthome",
        &tarball,
        "[env]\nRUST_LOG = \"debug\"\n[hardware]\ngpu = true\naudio = true\n",
    );
    let env = cli.run(&["exec", "hosthome", "--", "env"]);
    let env = &env.ok().stdout;
    assert!(!env.contains("leak"), "a secret passed:\n{env}");
    assert!(!env.contains("SSH_AUTH_SOCK"), "the agent is off:\n{env}");
    // PID 1 names itself (it is a fork of the runtime: its command line was ours).
    let ps = cli.run(&[
        "exec",
        "hosthome",
        "--",
        "sh",
        "-c",
        "tr -d '\\0' < /proc/1/cmdline; echo; cat /proc/1/comm",
    ]);
    assert_eq!(ps.ok().stdout, "karapace-init\nkarapace-init\n", "{ps:?}");
    // Nor through the sandbox's init, a fork of the runtime, which the program can read.
    let init = cli.run(&[
        "exec",
        "hosthome",
        "--",
        "sh",
        "-c",
        "tr '\\0' '\\n' < /proc/1/environ",
    ]);
    let init = &init.ok().stdout;
    assert!(
        !init.contains("leak") && !init.contains("SSH_AUTH_SOCK") && !init.contains("HOME="),
        "/proc/1/environ shows the host's environment:\n{init}"
    );
    // Nor anywhere in its memory, which the program can read through /proc/1/mem: every
    // readable mapping, searched for the secrets' values (the pattern is put together at run
    // time, so that the command line, which PID 1 holds too, does not contain it).
    let scan = cli.run(&["exec", "hosthome", "--", "sh", "-c", SCAN_INIT_MEMORY]);
    let found = scan
        .ok()
        .stdout
        .split_whitespace()
        .map(str::to_string)
        .collect::<Vec<_>>();
    let bytes: u64 = found.first().and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!(bytes > 1 << 20, "PID 1's memory was not read: {scan:?}");
    assert_eq!(
        found.get(1).map(String::as_str),
        Some("0"),
        "secrets in PID 1's memory: {scan:?}"
    );
    assert!(
        !env.contains("LANG="),
        "denied by the user's config:\n{env}"
    );
    for line in [
        "MY_OK=passes",
        "RUST_LOG=debug",
        "TERM=dumb",
        "container=karapace",
        &format!("HOME={home}"),
    ] {
        assert!(env.lines().any(|l| l == line), "no {line} in:\n{env}");
    }

    let script = format!(
        "cat \"$HOME/hello\"; pwd; echo made > \"$HOME/made-inside\"; \
         test -e {agent} && echo agent-visible; ls -A /dev | tr '\\n' ' '; echo; \
         for d in {HOST_DEVICES}; do test -e $d && echo \"exists: $d\"; \
         (exec 3<$d) 2>/dev/null && echo \"opened: $d\"; done; true"
    );
    let out = cli.sh("hosthome", &script);
    let mut lines = out.ok().stdout.lines();
    assert_eq!(lines.next(), Some("from the host's home"), "{out:#?}");
    assert_eq!(lines.next(), Some(home.as_str()), "starts in the home");
    assert_eq!(
        lines.next().map(str::trim_end),
        Some(MINIMAL_DEV),
        "{out:#?}"
    );
    assert_eq!(
        lines.next(),
        None,
        "agent or a host device reachable: {out:#?}"
    );
    assert!(
        out.stderr
            .contains("integration gpu is not available here: the host has no /dev/dri"),
        "{out:#?}"
    );
    assert!(out
        .stderr
        .contains("integration audio is not available here"));
    let text = cli.run(&["inspect", "hosthome"]);
    let text = &text.ok().stdout;
    assert!(text.contains("  RUST_LOG=\"debug\""), "{text}");
    assert!(text.contains("integrations (on this host):"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("  gpu") && l.contains("missing")),
        "{text}"
    );
    let made = cli.home().join("made-inside");
    let meta = fs::metadata(&made).expect("written through to the host's home");
    assert_eq!(meta.uid(), cli.uid(), "owned by the caller on the host");

    // The environment's own home, and the agent.
    let own_id = cli.build(
        "ownhome",
        &tarball,
        "[integration]\nhome = \"own\"\nssh_agent = true\n",
    );
    cli.sh(
        "ownhome",
        "echo kept > \"$HOME/f\"; test ! -e \"$HOME/hello\"",
    )
    .ok();
    let out = cli.sh("ownhome", "cat \"$HOME/f\"; pwd; echo \"$SSH_AUTH_SOCK\"");
    let expected = format!("kept\n{home}\n{agent}\n");
    assert_eq!(out.ok().stdout, expected, "{out:#?}");
    assert!(!cli.home().join("f").exists(), "written to the host's home");
    let own_home = cli.store().join("envs").join(&own_id).join("home");
    assert_eq!(
        fs::read_to_string(own_home.join("f")).expect("own home"),
        "kept\n"
    );
    // The agent is reachable (perl-base is in every Debian image).
    let connect = "use IO::Socket::UNIX; IO::Socket::UNIX->new(Peer => $ENV{SSH_AUTH_SOCK}) \
                   or die \"connect: $!\\n\"; print \"connected\\n\";";
    let out = cli.run(&["exec", "ownhome", "--", "perl", "-e", connect]);
    assert_eq!(out.ok().stdout, "connected\n", "{out:#?}");

    // inspect reports each integration's state here.
    let details: Value =
        serde_json::from_str(&cli.run(&["--json", "inspect", "ownhome"]).ok().stdout)
            .expect("inspect --json");
    let state = |name: &str| {
        details["integrations"]
            .as_array()
            .and_then(|rows| rows.iter().find(|r| r["name"] == name))
            .map(|r| r["state"].clone())
            .unwrap_or_else(|| panic!("no {name} in {details}"))
    };
    assert_eq!(state("ssh_agent"), "on");
    assert_eq!(state("home"), "on");
    assert_eq!(state("gpu"), "off");
    cli.run(&["destroy", "ownhome"]).ok();
    assert!(!own_home.exists(), "destroy removes the own home");
}

#[test]
fn the_policy_holds_inside_a_real_sandbox_as_root() {
    scenario("policy_as_root", None);
}

#[test]
fn the_policy_holds_inside_a_real_sandbox_rootless() {
    if !nix::unistd::geteuid().is_root() {
        // runuser needs root; an unprivileged run already is the rootless case above.
        return;
    }
    scenario("policy_rootless", Some(TEST_USER));
}

/// Manifest variables the deny lists cover are refused before anything runs, and a deny
/// pattern added to the user's config after the build stops the next session.
#[test]
fn denied_manifest_variables_are_refused() {
    let Some((fx, tarball)) = namespace_fixture("host_integration", "denied_manifest_vars") else {
        return;
    };
    let write = |dir: &str, extra: &str| {
        let path = fx.path(dir);
        fs::create_dir_all(&path).expect("mkdir");
        let text = format!(
            "manifest_version = 1\n[base]\nimage = \"{}\"\n[runtime]\nbackend = \"namespace\"\n\
             {extra}",
            tarball.display()
        );
        fs::write(path.join("karapace.toml"), text).expect("manifest");
    };
    write("builtin", "[env]\nAWS_ACCESS_KEY_ID = \"x\"\n");
    let out = fx.run(&["build", "builtin"]);
    assert_eq!(out.code(), Some(2), "{out:?}");
    assert!(out.stderr.contains("`AWS_*`"), "{out:?}");

    let config = fx.home().join(".config/karapace");
    fs::create_dir_all(&config).expect("mkdir");
    fs::write(
        config.join("config.toml"),
        "[policy]\nenv_deny = [\"CORP_*\"]\n",
    )
    .expect("config");
    write("user", "[env]\nCORP_URL = \"x\"\n");
    let out = fx.run(&["build", "user"]);
    assert_eq!(out.code(), Some(2), "{out:?}");
    assert!(out.stderr.contains("env_deny"), "{out:?}");
    assert!(fx.list().is_empty(), "a refused manifest built something");

    write("later", "[env]\nRUST_LOG = \"debug\"\n");
    // Unpacking the image takes a while on a loaded machine: more than the default timeout.
    fx.cmd(["build", "later"]).timeout(HUNG).run().ok();
    fx.run(&["exec", "later", "--", "true"]).ok();
    fs::write(
        config.join("config.toml"),
        "[policy]\nenv_deny = [\"RUST_*\"]\n",
    )
    .expect("config");
    let out = fx.run(&["exec", "later", "--", "true"]);
    assert_eq!(out.code(), Some(2), "{out:?}");
    assert!(out.stderr.contains("RUST_LOG"), "{out:?}");
}

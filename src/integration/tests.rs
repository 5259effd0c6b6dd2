//! [`setup`] against fixture trees: a desktop session, a headless SSH login, devices, homes.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use super::*;

/// A fake host root; sockets are real (bound listeners, kept open).
struct FakeHost {
    dir: tempfile::TempDir,
    env: BTreeMap<String, String>,
    sockets: Vec<UnixListener>,
}

impl FakeHost {
    fn new() -> FakeHost {
        let host = FakeHost {
            dir: tempfile::tempdir().expect("tempdir"),
            env: BTreeMap::new(),
            sockets: Vec::new(),
        };
        host.mkdir("/home/u");
        host
    }

    fn at(&self, path: &str) -> PathBuf {
        self.dir.path().join(path.trim_start_matches('/'))
    }

    fn mkdir(&self, path: &str) {
        fs::create_dir_all(self.at(path)).expect("mkdir");
    }

    fn file(&self, path: &str) {
        let p = self.at(path);
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::write(p, "").expect("write");
    }

    fn socket(&mut self, path: &str) {
        let p = self.at(path);
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        self.sockets
            .push(UnixListener::bind(p).expect("bind socket"));
    }

    fn var(&mut self, name: &str, value: &str) {
        self.env.insert(name.to_string(), value.to_string());
    }

    /// A Wayland + Xwayland + PipeWire + PulseAudio + D-Bus session with an SSH agent.
    fn desktop() -> FakeHost {
        let mut h = FakeHost::new();
        h.mkdir("/run/user/1000");
        h.var("XDG_RUNTIME_DIR", "/run/user/1000");
        h.var("WAYLAND_DISPLAY", "wayland-1");
        h.socket("/run/user/1000/wayland-1");
        h.var("DISPLAY", ":0");
        h.socket("/tmp/.X11-unix/X0");
        h.var("XAUTHORITY", "/run/user/1000/xauth_abc");
        h.file("/run/user/1000/xauth_abc");
        h.socket("/run/user/1000/pipewire-0");
        h.socket("/run/user/1000/pulse/native");
        h.var(
            "DBUS_SESSION_BUS_ADDRESS",
            "unix:path=/run/user/1000/bus,guid=42",
        );
        h.socket("/run/user/1000/bus");
        h.var("SSH_AUTH_SOCK", "/tmp/ssh-x/agent.7");
        h.socket("/tmp/ssh-x/agent.7");
        h.mkdir("/usr/share/fonts");
        h.mkdir("/usr/share/icons");
        h.mkdir("/usr/share/themes");
        h
    }

    fn setup(&self, settings: &Integrations, hardware: Hardware) -> Setup {
        self.setup_with(settings, hardware, false, Some(Path::new("/home/u/src")))
    }

    fn setup_with(
        &self,
        settings: &Integrations,
        hardware: Hardware,
        isolated: bool,
        cwd: Option<&Path>,
    ) -> Setup {
        let view = HostView {
            root: self.dir.path(),
            env: &self.env,
            home: Path::new("/home/u"),
            cwd,
        };
        setup(
            settings,
            hardware,
            &view,
            Path::new("/store/envs/x/home"),
            isolated,
        )
    }
}

fn state<'a>(s: &'a Setup, name: &str) -> (&'a State, &'a str) {
    let row = s
        .report
        .iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no row {name} in {:?}", s.report));
    (&row.state, &row.detail)
}

fn env<'a>(s: &'a Setup, name: &str) -> Option<&'a str> {
    s.env
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn bound(s: &Setup, target: &str) -> Option<(String, bool)> {
    s.binds
        .iter()
        .find(|b| b.target == target)
        .map(|b| (b.source.clone(), b.read_only))
}

#[test]
fn a_desktop_session_passes_its_sockets_at_the_same_paths() {
    let h = FakeHost::desktop();
    let s = h.setup(&Integrations::default(), Hardware::default());
    for name in [
        "wayland",
        "x11",
        "pipewire",
        "pulseaudio",
        "dbus",
        "fonts",
        "icons",
        "themes",
        "home",
    ] {
        assert_eq!(state(&s, name).0, &State::On, "{name}: {:?}", s.report);
    }
    assert_eq!(state(&s, "ssh_agent").0, &State::Off, "off by default");
    assert_eq!(state(&s, "gpu").0, &State::Off);
    for socket in [
        "/run/user/1000/wayland-1",
        "/run/user/1000/pipewire-0",
        "/run/user/1000/pulse/native",
        "/run/user/1000/bus",
    ] {
        assert_eq!(bound(&s, socket), Some((socket.to_string(), false)));
    }
    assert_eq!(bound(&s, "/tmp/ssh-x/agent.7"), None, "the agent is off");
    assert_eq!(
        bound(&s, "/tmp/.X11-unix"),
        Some(("/tmp/.X11-unix".to_string(), true))
    );
    assert_eq!(
        bound(&s, "/run/user/1000/xauth_abc"),
        Some(("/run/user/1000/xauth_abc".to_string(), true))
    );
    assert_eq!(
        bound(&s, HOST_FONTS),
        Some(("/usr/share/fonts".to_string(), true))
    );
    assert_eq!(env(&s, "WAYLAND_DISPLAY"), Some("wayland-1"));
    assert_eq!(env(&s, "DISPLAY"), Some(":0"));
    assert_eq!(env(&s, "XAUTHORITY"), Some("/run/user/1000/xauth_abc"));
    assert_eq!(
        env(&s, "PULSE_SERVER"),
        Some("unix:/run/user/1000/pulse/native")
    );
    assert_eq!(
        env(&s, "DBUS_SESSION_BUS_ADDRESS"),
        Some("unix:path=/run/user/1000/bus")
    );
    assert_eq!(env(&s, "XDG_RUNTIME_DIR"), Some("/run/user/1000"));
    assert_eq!(env(&s, "SSH_AUTH_SOCK"), None);
    assert!(env(&s, "XDG_DATA_DIRS").is_some_and(|d| d.ends_with(HOST_SHARE)));
    assert_eq!(s.tmpfs, vec![("/run/user/1000".to_string(), 0o700)]);
    assert!(s.devices.is_empty());
    assert!(s.warnings().is_empty());
    // The home is bound first, so everything else may land inside it.
    assert_eq!(s.binds[0].target, "/home/u");
    assert_eq!(s.home, "/home/u");
    assert_eq!(
        s.cwd, "/home/u/src",
        "the caller's directory inside the home"
    );
}

#[test]
fn wayland_follows_wayland_display_not_a_fixed_name() {
    let mut h = FakeHost::desktop();
    h.var("WAYLAND_DISPLAY", "wayland-0");
    let s = h.setup(&Integrations::default(), Hardware::default());
    let (st, detail) = state(&s, "wayland");
    assert_eq!(st, &State::Missing, "wayland-0 does not exist here");
    assert!(detail.contains("/run/user/1000/wayland-0"), "{detail}");
    h.var("WAYLAND_DISPLAY", "/run/user/1000/wayland-1");
    let s = h.setup(&Integrations::default(), Hardware::default());
    assert_eq!(state(&s, "wayland").0, &State::On, "an absolute name");
}

#[test]
fn a_headless_ssh_login_just_works_with_nothing_to_pass() {
    let mut h = FakeHost::new();
    h.var("SSH_CONNECTION", "1.2.3.4 5 6.7.8.9 22");
    h.var("TERM", "xterm");
    let s = h.setup(&Integrations::default(), Hardware::default());
    for name in ["wayland", "x11", "pipewire", "pulseaudio", "dbus"] {
        let (st, detail) = state(&s, name);
        assert_eq!(st, &State::Missing, "{name}");
        assert!(!detail.is_empty());
    }
    assert_eq!(state(&s, "home").0, &State::On);
    assert!(s.tmpfs.is_empty(), "no runtime directory");
    assert_eq!(env(&s, "XDG_RUNTIME_DIR"), None);
    assert!(
        s.warnings().is_empty(),
        "defaults that are missing do not warn on every run: {:?}",
        s.warnings()
    );
    // Asked for explicitly: a warning, still not an error.
    let mut asked = Integrations::default();
    asked.set("wayland", true);
    let warnings = h.setup(&asked, Hardware::default()).warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("WAYLAND_DISPLAY is not set"),
        "{warnings:?}"
    );
}

#[test]
fn the_ssh_agent_is_passed_only_when_enabled() {
    let h = FakeHost::desktop();
    let mut on = Integrations::default();
    on.set("ssh_agent", true);
    let s = h.setup(&on, Hardware::default());
    assert_eq!(state(&s, "ssh_agent").0, &State::On);
    assert_eq!(env(&s, "SSH_AUTH_SOCK"), Some("/tmp/ssh-x/agent.7"));
    assert_eq!(
        bound(&s, "/tmp/ssh-x/agent.7"),
        Some(("/tmp/ssh-x/agent.7".to_string(), false))
    );
    // A variable naming something that is not a socket passes nothing.
    let mut h = FakeHost::new();
    h.var("SSH_AUTH_SOCK", "/etc/passwd");
    h.file("/etc/passwd");
    let s = h.setup(&on, Hardware::default());
    assert_eq!(state(&s, "ssh_agent").0, &State::Missing);
    assert!(s.binds.iter().all(|b| b.source != "/etc/passwd"));
    assert_eq!(env(&s, "SSH_AUTH_SOCK"), None);
}

#[test]
fn paths_that_climb_are_refused() {
    let mut h = FakeHost::desktop();
    h.socket("/run/other.sock");
    h.var("WAYLAND_DISPLAY", "../../other.sock");
    h.var("SSH_AUTH_SOCK", "/tmp/ssh-x/../ssh-x/agent.7");
    h.var("XDG_RUNTIME_DIR", "/run/user/1000/");
    let mut on = Integrations::default();
    on.set("ssh_agent", true);
    let s = h.setup(&on, Hardware::default());
    assert_eq!(state(&s, "wayland").0, &State::Missing);
    assert_eq!(state(&s, "ssh_agent").0, &State::Missing);
    assert!(
        s.binds.iter().all(|b| !b.target.contains("..")),
        "{:?}",
        s.binds
    );
    assert_eq!(
        state(&s, "pipewire").0,
        &State::On,
        "a trailing / is trimmed"
    );
    assert!(is_clean("/a/b") && is_clean("/"));
    assert!(!is_clean("a/b") && !is_clean("/a//b") && !is_clean("/a/./b") && !is_clean("/a/"));
}

#[test]
fn switching_integrations_off_passes_nothing_of_them() {
    let h = FakeHost::desktop();
    let mut off = Integrations::default();
    for (name, _) in SWITCHES {
        off.set(name, false);
    }
    let s = h.setup(&off, Hardware::default());
    assert_eq!(s.binds.len(), 1, "only the home: {:?}", s.binds);
    assert!(s.env.is_empty(), "{:?}", s.env);
    assert!(s.tmpfs.is_empty());
    assert_eq!(state(&s, "wayland"), (&State::Off, "off in the manifest"));
    assert_eq!(state(&s, "ssh_agent"), (&State::Off, "off in the manifest"));
}

#[test]
fn odd_addresses_are_refused_not_guessed() {
    let mut h = FakeHost::desktop();
    h.var("DBUS_SESSION_BUS_ADDRESS", "tcp:host=localhost,port=1234");
    h.var("PULSE_SERVER", "tcp:localhost");
    h.var("DISPLAY", "localhost:10.0");
    let s = h.setup(&Integrations::default(), Hardware::default());
    assert_eq!(state(&s, "dbus").0, &State::Missing);
    assert_eq!(state(&s, "pulseaudio").0, &State::Missing);
    assert_eq!(env(&s, "DBUS_SESSION_BUS_ADDRESS"), None);
    // A TCP display works over the host network, not from an isolated one.
    assert_eq!(state(&s, "x11").0, &State::On);
    assert_eq!(env(&s, "DISPLAY"), Some("localhost:10.0"));
    let isolated = h.setup_with(&Integrations::default(), Hardware::default(), true, None);
    assert_eq!(state(&isolated, "x11").0, &State::Missing);
    assert_eq!(env(&isolated, "DISPLAY"), None);
    // Without DBUS_SESSION_BUS_ADDRESS, systemd's user bus in the runtime dir.
    let mut h = FakeHost::desktop();
    h.env.remove("DBUS_SESSION_BUS_ADDRESS");
    let s = h.setup(&Integrations::default(), Hardware::default());
    assert_eq!(
        env(&s, "DBUS_SESSION_BUS_ADDRESS"),
        Some("unix:path=/run/user/1000/bus")
    );
}

#[test]
fn devices_are_passed_only_when_asked_for_and_present() {
    let h = FakeHost::new();
    let hw = Hardware {
        gpu: true,
        audio: true,
    };
    let s = h.setup(&Integrations::default(), hw);
    assert!(s.devices.is_empty());
    assert_eq!(state(&s, "gpu").0, &State::Missing);
    assert_eq!(state(&s, "audio").0, &State::Missing);
    assert_eq!(s.warnings().len(), 2, "{:?}", s.warnings());
    h.mkdir("/dev/dri");
    h.file("/dev/nvidiactl");
    h.file("/dev/nvidia0");
    h.mkdir("/dev/snd");
    h.file("/dev/sda");
    h.file("/dev/kmsg");
    let s = h.setup(&Integrations::default(), hw);
    assert_eq!(
        s.devices,
        ["/dev/dri", "/dev/nvidia0", "/dev/nvidiactl", "/dev/snd"]
    );
    let none = h.setup(&Integrations::default(), Hardware::default());
    assert!(none.devices.is_empty(), "{:?}", none.devices);
}

#[test]
fn an_own_home_is_the_environments_directory_at_the_callers_path() {
    let mut h = FakeHost::desktop();
    h.mkdir("/home/u/.local/share/fonts");
    h.var("XAUTHORITY", "");
    h.file("/home/u/.Xauthority");
    let settings = Integrations {
        home: Some(HomeMode::Own),
        ..Integrations::default()
    };
    let s = h.setup(&settings, Hardware::default());
    assert_eq!(
        bound(&s, "/home/u"),
        Some(("/store/envs/x/home".to_string(), false))
    );
    assert_eq!(s.own_home, Some(PathBuf::from("/store/envs/x/home")));
    assert_eq!(s.home, "/home/u");
    assert_eq!(
        s.cwd, "/home/u",
        "the caller's directory is not in the own home"
    );
    // The user's fonts and X cookie are bound into it read-only.
    assert_eq!(
        bound(&s, "/home/u/.local/share/fonts"),
        Some(("/home/u/.local/share/fonts".to_string(), true))
    );
    assert_eq!(
        bound(&s, "/home/u/.Xauthority"),
        Some(("/home/u/.Xauthority".to_string(), true))
    );
    let position = |t: &str| s.binds.iter().position(|b| b.target == t);
    assert!(position("/home/u") < position("/home/u/.Xauthority"));
}

#[test]
fn a_system_directory_as_home_is_never_bound() {
    let h = FakeHost::new();
    for home in ["/", "/etc", "/usr/lib/x"] {
        let view = HostView {
            root: h.dir.path(),
            env: &h.env,
            home: Path::new(home),
            cwd: None,
        };
        let s = setup(
            &Integrations::default(),
            Hardware::default(),
            &view,
            Path::new("/own"),
            false,
        );
        assert!(s.binds.is_empty(), "{home}: {:?}", s.binds);
        assert_eq!(s.home, "/root");
        assert_eq!(state(&s, "home").0, &State::Missing);
    }
    let missing = HostView {
        root: h.dir.path(),
        env: &h.env,
        home: Path::new("/home/gone"),
        cwd: None,
    };
    let s = setup(
        &Integrations::default(),
        Hardware::default(),
        &missing,
        Path::new("/own"),
        false,
    );
    assert!(s.binds.is_empty());
    assert_eq!(s.cwd, "/root");
}

#[test]
fn only_written_keys_enter_the_canonical_form() {
    assert!(Integrations::default().canonical().is_empty());
    let mut i = Integrations::default();
    i.set("ssh_agent", true);
    i.home = Some(HomeMode::Own);
    assert_eq!(
        serde_json::Value::Object(i.canonical()).to_string(),
        r#"{"home":"own","ssh_agent":true}"#
    );
    assert!(!i.set("nonsense", true));
    assert!(i.enabled("wayland") && i.enabled("ssh_agent"));
}

#[test]
fn only_the_variables_asked_for_are_copied_from_the_process() {
    let path = std::env::var("PATH").expect("tests run with a PATH");
    let kept = process_env_where(|name| name == "PATH");
    assert_eq!(kept, BTreeMap::from([("PATH".to_string(), path)]));
    assert!(process_env_where(|_| false).is_empty());
}

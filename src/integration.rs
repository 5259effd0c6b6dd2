//! Host integrations: what of the host's desktop session, devices and home a sandbox sees.
//!
//! The manifest's optional `[integration]` section turns each one on or off ([`Integrations`]);
//! `[hardware]` asks for GPU and sound devices. [`setup`] looks at the host — through an
//! injectable root directory and environment map ([`HostView`]), so tests run it against
//! fixture trees — and says what to bind, which devices to pass, which variables to set, and
//! the state of each integration ([`Status`]: on, on but missing here, off). Something missing
//! on the host is never fatal: a session over SSH without `XDG_RUNTIME_DIR` or D-Bus simply
//! gets none of them.
//!
//! Where things go inside:
//! - sockets (Wayland, PipeWire, PulseAudio, D-Bus, the SSH agent, X11's `/tmp/.X11-unix`)
//!   at the same path as on the host, so the variables naming them keep their values; the
//!   runtime directory (`XDG_RUNTIME_DIR`) is a fresh tmpfs holding only what is bound into it;
//! - the host's fonts at `/usr/local/share/fonts` (read-only; fontconfig's default
//!   configuration reads that directory on Debian, Fedora, openSUSE and Arch, and the
//!   environment's own `/usr/share/fonts` stays visible), icons and themes at
//!   `/run/host/share/{icons,themes}` (read-only), found through `XDG_DATA_DIRS`;
//! - the home directory at the same path: the host's (`home = "host"`, the default) or the
//!   environment's own, `home/` in its store directory (`home = "own"`), which lives as long as
//!   the environment (removed by `destroy`, and by `rebuild`, which builds a clean one).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::manifest::Hardware;
use crate::sandbox::Bind;

/// Where the sandbox's home directory comes from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HomeMode {
    /// The caller's home, read-write: everything in it (keys, tokens, browser profiles) is
    /// reachable from inside.
    #[default]
    Host,
    /// A persistent directory of the environment, bound at the caller's home path.
    Own,
}

impl HomeMode {
    pub fn as_str(self) -> &'static str {
        match self {
            HomeMode::Host => "host",
            HomeMode::Own => "own",
        }
    }

    pub fn parse(text: &str) -> Option<HomeMode> {
        match text {
            "host" => Some(HomeMode::Host),
            "own" => Some(HomeMode::Own),
            _ => None,
        }
    }
}

/// The manifest's `[integration]` section: `None` is "not written" (the default applies and,
/// for the identity, nothing was said). Only written keys enter the canonical form.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Integrations {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wayland: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x11: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipewire: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pulseaudio: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dbus: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_agent: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fonts: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icons: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub themes: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home: Option<HomeMode>,
}

/// The on/off integrations in report order, with their defaults: everything a desktop
/// session offers is on, the SSH agent (which signs as you with every loaded key) is off.
pub const SWITCHES: [(&str, bool); 9] = [
    ("wayland", true),
    ("x11", true),
    ("pipewire", true),
    ("pulseaudio", true),
    ("dbus", true),
    ("ssh_agent", false),
    ("fonts", true),
    ("icons", true),
    ("themes", true),
];

impl Integrations {
    /// Nothing written: the section is absent from the canonical form and the identity.
    pub fn is_unset(&self) -> bool {
        *self == Integrations::default()
    }

    /// The written value of switch `name`.
    pub fn written(&self, name: &str) -> Option<bool> {
        match name {
            "wayland" => self.wayland,
            "x11" => self.x11,
            "pipewire" => self.pipewire,
            "pulseaudio" => self.pulseaudio,
            "dbus" => self.dbus,
            "ssh_agent" => self.ssh_agent,
            "fonts" => self.fonts,
            "icons" => self.icons,
            "themes" => self.themes,
            _ => None,
        }
    }

    /// Sets switch `name`; false for a name that is not one.
    pub fn set(&mut self, name: &str, value: bool) -> bool {
        let slot = match name {
            "wayland" => &mut self.wayland,
            "x11" => &mut self.x11,
            "pipewire" => &mut self.pipewire,
            "pulseaudio" => &mut self.pulseaudio,
            "dbus" => &mut self.dbus,
            "ssh_agent" => &mut self.ssh_agent,
            "fonts" => &mut self.fonts,
            "icons" => &mut self.icons,
            "themes" => &mut self.themes,
            _ => return false,
        };
        *slot = Some(value);
        true
    }

    /// Whether switch `name` is on (written, else its default).
    pub fn enabled(&self, name: &str) -> bool {
        let default = SWITCHES
            .iter()
            .find(|(n, _)| *n == name)
            .is_some_and(|(_, d)| *d);
        self.written(name).unwrap_or(default)
    }

    pub fn home_mode(&self) -> HomeMode {
        self.home.unwrap_or_default()
    }

    /// The written keys as a JSON object (sorted), for the canonical form and the identity.
    pub fn canonical(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut out = serde_json::Map::new();
        for (name, _) in SWITCHES {
            if let Some(v) = self.written(name) {
                out.insert(name.to_string(), v.into());
            }
        }
        if let Some(home) = self.home {
            out.insert("home".to_string(), home.as_str().into());
        }
        out
    }
}

/// The host as an integration sees it: files under `root` (`/` for real), the caller's
/// environment, home and working directory.
#[derive(Debug, Clone)]
pub struct HostView<'a> {
    pub root: &'a Path,
    pub env: &'a BTreeMap<String, String>,
    /// The caller's home (`$HOME`, as the manifest's `~` expands).
    pub home: &'a Path,
    /// The caller's working directory, if known.
    pub cwd: Option<&'a Path>,
}

/// The host variables the integrations read ([`HostView::env`] needs no others).
pub const HOST_VARS: [&str; 7] = [
    "DBUS_SESSION_BUS_ADDRESS",
    "DISPLAY",
    "PULSE_SERVER",
    "SSH_AUTH_SOCK",
    "WAYLAND_DISPLAY",
    "XAUTHORITY",
    "XDG_RUNTIME_DIR",
];

/// The variables of this process's environment that `keep` accepts by name, for
/// [`HostView::env`] and the environment policy; those whose name or value is not UTF-8 are
/// left out (none that is read or passed can be).
///
/// Every other value is overwritten with zero bytes before its copy is freed. A sandbox's
/// PID 1 is a fork of this process, its memory readable by the sandboxed program through
/// `/proc/1/mem` (same user), and a freed block keeps its bytes: a secret that was merely
/// looked at here (a cloud key, a token) would otherwise be there to find. std's `vars_os`
/// makes exactly one copy of each value, the one handed out here. See also
/// `sandbox::environ`, which wipes the environment block itself.
pub fn process_env_where(keep: impl Fn(&str) -> bool) -> BTreeMap<String, String> {
    use std::os::unix::ffi::OsStringExt;
    let mut kept = BTreeMap::new();
    for (name, value) in std::env::vars_os() {
        let mut bytes = value.into_vec();
        if let Some(name) = name.to_str().filter(|n| keep(n)) {
            match String::from_utf8(bytes) {
                Ok(value) => {
                    kept.insert(name.to_string(), value);
                    continue;
                }
                Err(e) => bytes = e.into_bytes(),
            }
        }
        wipe(bytes);
    }
    kept
}

/// Overwrites `bytes` with zeros, then frees them. `black_box` keeps the compiler from
/// dropping the writes as dead stores.
pub fn wipe(mut bytes: Vec<u8>) {
    bytes.fill(0);
    std::hint::black_box(&bytes);
}

/// Whether `path` is absolute and has no `.`, `..` or empty component: a path from the
/// caller's environment becomes a mount point inside the sandbox's root, where `..` could
/// climb out of it.
fn is_clean(path: &str) -> bool {
    path.starts_with('/')
        && (path == "/"
            || path[1..]
                .split('/')
                .all(|c| !c.is_empty() && c != "." && c != ".."))
}

impl HostView<'_> {
    fn at(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }

    /// The metadata of a clean path (see [`is_clean`]); `None` for anything else.
    fn meta(&self, path: &str) -> Option<fs::Metadata> {
        if !is_clean(path) {
            return None;
        }
        fs::metadata(self.at(path)).ok()
    }

    fn is_socket(&self, path: &str) -> bool {
        self.meta(path).is_some_and(|m| m.file_type().is_socket())
    }

    fn is_dir(&self, path: &str) -> bool {
        self.meta(path).is_some_and(|m| m.is_dir())
    }

    fn is_file(&self, path: &str) -> bool {
        self.meta(path).is_some_and(|m| m.is_file())
    }

    fn var(&self, name: &str) -> Option<&str> {
        debug_assert!(
            HOST_VARS.contains(&name),
            "{name} is read by an integration but missing from HOST_VARS"
        );
        self.env
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// `$XDG_RUNTIME_DIR` when set, absolute and a directory.
    fn runtime_dir(&self) -> Result<String, String> {
        let dir = self
            .var("XDG_RUNTIME_DIR")
            .ok_or("XDG_RUNTIME_DIR is not set (no desktop session here)")?;
        let trimmed = dir.trim_end_matches('/');
        if !self.is_dir(trimmed) {
            return Err(format!("XDG_RUNTIME_DIR={dir} is not a directory"));
        }
        Ok(trimmed.to_string())
    }
}

/// An integration's state on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// On, and the host has it: passed in.
    On,
    /// On, but the host lacks it: nothing passed.
    Missing,
    /// Off in the manifest (or by default).
    Off,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::On => "on",
            State::Missing => "missing",
            State::Off => "off",
        }
    }
}

/// One row of `inspect`'s integrations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    pub name: &'static str,
    pub state: State,
    /// What is passed (paths), why it is missing, or that it is off by default.
    pub detail: String,
    /// Asked for in the manifest (rather than on by default): missing is then a warning.
    #[serde(skip)]
    pub explicit: bool,
}

/// What the sandbox gets from the host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Setup {
    /// Host path → inside path, in mount order (the home first).
    pub binds: Vec<Bind>,
    /// Host device nodes and directories, bound at the same path in the sandbox's /dev.
    pub devices: Vec<String>,
    /// tmpfs mounts (inside path, mode): the runtime directory when something is bound there.
    pub tmpfs: Vec<(String, u32)>,
    /// The integrations' variables.
    pub env: Vec<(String, String)>,
    /// `HOME` inside.
    pub home: String,
    /// The program's working directory.
    pub cwd: String,
    /// The environment's own home directory on the host, to create before the session.
    pub own_home: Option<PathBuf>,
    pub report: Vec<Status>,
}

impl Setup {
    /// One warning per integration the manifest asked for that this host lacks.
    pub fn warnings(&self) -> Vec<String> {
        self.report
            .iter()
            .filter(|s| s.explicit && s.state == State::Missing)
            .map(|s| format!("integration {} is not available here: {}", s.name, s.detail))
            .collect()
    }
}

/// Where the host's share directories appear inside.
pub const HOST_FONTS: &str = "/usr/local/share/fonts";
pub const HOST_SHARE: &str = "/run/host/share";

/// Home paths that are never bound (a `$HOME` of `/` or a system directory would put the
/// host's system over the environment's).
const SYSTEM_DIRS: [&str; 10] = [
    "/", "/proc", "/sys", "/dev", "/usr", "/etc", "/bin", "/sbin", "/lib", "/boot",
];

struct Builder<'a> {
    host: &'a HostView<'a>,
    settings: &'a Integrations,
    out: Setup,
    /// Sockets to bind under the runtime directory (which then becomes a tmpfs).
    runtime_used: bool,
    isolated_net: bool,
}

impl Builder<'_> {
    fn status(&mut self, name: &'static str, explicit: bool, result: Result<String, String>) {
        let (state, detail) = match result {
            Ok(detail) => (State::On, detail),
            Err(why) => (State::Missing, why),
        };
        self.out.report.push(Status {
            name,
            state,
            detail,
            explicit,
        });
    }

    fn off(&mut self, name: &'static str, written: bool) {
        let detail = if written {
            "off in the manifest"
        } else {
            "off (the default)"
        };
        self.out.report.push(Status {
            name,
            state: State::Off,
            detail: detail.to_string(),
            explicit: false,
        });
    }

    fn bind(&mut self, source: &str, target: &str, read_only: bool) {
        self.out.binds.push(Bind {
            source: source.to_string(),
            target: target.to_string(),
            read_only,
        });
    }

    fn socket(&mut self, path: &str) {
        if let Ok(dir) = self.host.runtime_dir() {
            if path.starts_with(&format!("{dir}/")) {
                self.runtime_used = true;
            }
        }
        self.bind(path, path, false);
    }

    fn set(&mut self, name: &str, value: &str) {
        self.out.env.push((name.to_string(), value.to_string()));
    }

    /// Runs `probe` for switch `name` when it is on, and records the result.
    fn switch(&mut self, name: &'static str, probe: fn(&mut Self) -> Result<String, String>) {
        if !self.settings.enabled(name) {
            self.off(name, self.settings.written(name).is_some());
            return;
        }
        let result = probe(self);
        let explicit = self.settings.written(name) == Some(true);
        self.status(name, explicit, result);
    }

    fn wayland(&mut self) -> Result<String, String> {
        let display = self
            .host
            .var("WAYLAND_DISPLAY")
            .ok_or("WAYLAND_DISPLAY is not set")?
            .to_string();
        // libwayland: an absolute name is the socket itself, else relative to the runtime dir.
        let path = if display.starts_with('/') {
            display.clone()
        } else {
            format!("{}/{display}", self.host.runtime_dir()?)
        };
        if !self.host.is_socket(&path) {
            return Err(format!("no socket at {path}"));
        }
        self.socket(&path);
        self.set("WAYLAND_DISPLAY", &display);
        Ok(path)
    }

    fn x11(&mut self) -> Result<String, String> {
        let display = self
            .host
            .var("DISPLAY")
            .ok_or("DISPLAY is not set")?
            .to_string();
        let (host, rest) = display.split_once(':').ok_or(format!(
            "DISPLAY={display} is not of the form [host]:number"
        ))?;
        let number: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if number.is_empty() {
            return Err(format!("DISPLAY={display} has no display number"));
        }
        let mut detail = if host.is_empty() || host == "unix" {
            let socket = format!("/tmp/.X11-unix/X{number}");
            if !self.host.is_socket(&socket) {
                return Err(format!("no socket at {socket}"));
            }
            self.bind("/tmp/.X11-unix", "/tmp/.X11-unix", true);
            socket
        } else if self.isolated_net {
            return Err(format!(
                "DISPLAY={display} is a TCP display, which an isolated network cannot reach"
            ));
        } else {
            format!("{display} over the host network")
        };
        self.set("DISPLAY", &display);
        // The cookie: $XAUTHORITY, else ~/.Xauthority (what libXau reads).
        let home_cookie = format!("{}/.Xauthority", self.host.home.display());
        let cookie = self
            .host
            .var("XAUTHORITY")
            .map(str::to_string)
            .or_else(|| self.host.is_file(&home_cookie).then_some(home_cookie));
        if let Some(cookie) = cookie.filter(|c| c.starts_with('/')) {
            if self.host.is_file(&cookie) {
                self.bind(&cookie, &cookie, true);
                self.set("XAUTHORITY", &cookie);
                detail.push_str(&format!(", cookie {cookie}"));
            } else {
                detail.push_str(&format!(", no cookie at {cookie}"));
            }
        }
        Ok(detail)
    }

    fn pipewire(&mut self) -> Result<String, String> {
        let path = format!("{}/pipewire-0", self.host.runtime_dir()?);
        if !self.host.is_socket(&path) {
            return Err(format!("no socket at {path}"));
        }
        self.socket(&path);
        Ok(path)
    }

    fn pulseaudio(&mut self) -> Result<String, String> {
        let path = match self.host.var("PULSE_SERVER") {
            Some(server) => server
                .strip_prefix("unix:")
                .filter(|p| p.starts_with('/'))
                .ok_or(format!(
                    "PULSE_SERVER={server} is not a unix:/path socket (only those are passed)"
                ))?
                .to_string(),
            None => format!("{}/pulse/native", self.host.runtime_dir()?),
        };
        if !self.host.is_socket(&path) {
            return Err(format!("no socket at {path}"));
        }
        self.socket(&path);
        self.set("PULSE_SERVER", &format!("unix:{path}"));
        Ok(path)
    }

    fn dbus(&mut self) -> Result<String, String> {
        let path = match self.host.var("DBUS_SESSION_BUS_ADDRESS") {
            // dbus-specification "Server Addresses": `;`-separated, each `transport:k=v,…`.
            Some(address) => address
                .split(';')
                .filter_map(|a| a.strip_prefix("unix:"))
                .flat_map(|kv| kv.split(','))
                .find_map(|kv| kv.strip_prefix("path="))
                .ok_or(format!(
                    "DBUS_SESSION_BUS_ADDRESS={address} has no unix:path= socket (only those \
                     are passed)"
                ))?
                .to_string(),
            // sd-bus and GDBus fall back to the user bus of systemd.
            None => format!("{}/bus", self.host.runtime_dir()?),
        };
        if !self.host.is_socket(&path) {
            return Err(format!("no socket at {path}"));
        }
        self.socket(&path);
        self.set("DBUS_SESSION_BUS_ADDRESS", &format!("unix:path={path}"));
        Ok(path)
    }

    fn ssh_agent(&mut self) -> Result<String, String> {
        let path = self
            .host
            .var("SSH_AUTH_SOCK")
            .ok_or("SSH_AUTH_SOCK is not set")?
            .to_string();
        if !path.starts_with('/') || !self.host.is_socket(&path) {
            return Err(format!("SSH_AUTH_SOCK={path} is not a socket"));
        }
        self.socket(&path);
        self.set("SSH_AUTH_SOCK", &path);
        Ok(path)
    }

    /// A host share directory (read-only) plus, with an own home, the user's own copies.
    fn share(&mut self, system: &str, inside: &str, user: &[&str]) -> Result<String, String> {
        let mut found = Vec::new();
        if self.host.is_dir(system) {
            self.bind(system, inside, true);
            found.push(format!("{system} at {inside}"));
        }
        if self.settings.home_mode() == HomeMode::Own {
            for rel in user {
                let path = format!("{}/{rel}", self.host.home.display());
                if self.host.is_dir(&path) {
                    self.bind(&path, &path, true);
                    found.push(path);
                }
            }
        }
        if found.is_empty() {
            return Err(format!("the host has no {system}"));
        }
        Ok(found.join(", "))
    }

    fn fonts(&mut self) -> Result<String, String> {
        self.share(
            "/usr/share/fonts",
            HOST_FONTS,
            &[".fonts", ".local/share/fonts"],
        )
    }

    fn icons(&mut self) -> Result<String, String> {
        let inside = format!("{HOST_SHARE}/icons");
        self.share(
            "/usr/share/icons",
            &inside,
            &[".icons", ".local/share/icons"],
        )
    }

    fn themes(&mut self) -> Result<String, String> {
        let inside = format!("{HOST_SHARE}/themes");
        self.share(
            "/usr/share/themes",
            &inside,
            &[".themes", ".local/share/themes"],
        )
    }

    fn gpu(&mut self) -> Result<String, String> {
        let mut found = Vec::new();
        if self.host.is_dir("/dev/dri") {
            found.push("/dev/dri".to_string());
        }
        // NVIDIA's proprietary driver: nvidia0…, nvidiactl, nvidia-uvm, nvidia-modeset,
        // nvidia-caps/.
        if let Ok(entries) = fs::read_dir(self.host.at("/dev")) {
            let mut nvidia: Vec<String> = entries
                .flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.starts_with("nvidia"))
                .map(|n| format!("/dev/{n}"))
                .collect();
            nvidia.sort();
            found.extend(nvidia);
        }
        if found.is_empty() {
            return Err("the host has no /dev/dri and no /dev/nvidia*".to_string());
        }
        self.out.devices.extend(found.iter().cloned());
        Ok(found.join(", "))
    }

    fn audio(&mut self) -> Result<String, String> {
        if !self.host.is_dir("/dev/snd") {
            return Err("the host has no /dev/snd".to_string());
        }
        self.out.devices.push("/dev/snd".to_string());
        Ok("/dev/snd".to_string())
    }

    fn hardware(
        &mut self,
        name: &'static str,
        on: bool,
        probe: fn(&mut Self) -> Result<String, String>,
    ) {
        if !on {
            self.off(name, false);
            return;
        }
        let result = probe(self);
        self.status(name, true, result);
    }

    /// The home directory and working directory (first, so the rest may bind into it).
    fn home(&mut self, own_dir: &Path) {
        let mode = self.settings.home_mode();
        let explicit = self.settings.home.is_some();
        let written = self.host.home.display().to_string();
        let home = match written.trim_end_matches('/') {
            "" => "/".to_string(),
            trimmed => trimmed.to_string(),
        };
        let refused = SYSTEM_DIRS
            .iter()
            .any(|d| home == *d || (*d != "/" && home.starts_with(&format!("{d}/"))));
        let usable = if !is_clean(&home) {
            Err(format!(
                "the home directory {written} is not a clean absolute path"
            ))
        } else if refused {
            Err(format!(
                "the home directory {home} is not bound (a system directory)"
            ))
        } else if mode == HomeMode::Host && !self.host.is_dir(&home) {
            Err(format!("the home directory {home} does not exist"))
        } else {
            Ok(())
        };
        if let Err(why) = usable {
            self.out.home = "/root".to_string();
            self.out.cwd = "/root".to_string();
            self.out.report.push(Status {
                name: "home",
                state: State::Missing,
                detail: format!("{why}; HOME is /root inside"),
                explicit,
            });
            return;
        }
        self.out.home = home.clone();
        self.out.cwd = home.clone();
        let detail = match mode {
            HomeMode::Host => {
                self.bind(&home, &home, false);
                // Inside the home, the program starts where the caller is.
                if let Some(cwd) = self.host.cwd.filter(|c| c.starts_with(self.host.home)) {
                    self.out.cwd = cwd.display().to_string();
                }
                format!("host: {home} (read-write)")
            }
            HomeMode::Own => {
                let source = own_dir.display().to_string();
                self.bind(&source, &home, false);
                self.out.own_home = Some(own_dir.to_path_buf());
                format!("own: {source} at {home}")
            }
        };
        self.out.report.push(Status {
            name: "home",
            state: State::On,
            detail,
            explicit,
        });
    }
}

/// What a sandbox gets from this host. `own_home` is the environment's own home directory
/// (used when `home = "own"`); `isolated_net` whether the sandbox has only `lo` (TCP X11
/// displays are then out of reach).
pub fn setup(
    settings: &Integrations,
    hardware: Hardware,
    host: &HostView,
    own_home: &Path,
    isolated_net: bool,
) -> Setup {
    let mut b = Builder {
        host,
        settings,
        out: Setup::default(),
        runtime_used: false,
        isolated_net,
    };
    b.home(own_home);
    b.switch("wayland", Builder::wayland);
    b.switch("x11", Builder::x11);
    b.switch("pipewire", Builder::pipewire);
    b.switch("pulseaudio", Builder::pulseaudio);
    b.switch("dbus", Builder::dbus);
    b.switch("ssh_agent", Builder::ssh_agent);
    b.switch("fonts", Builder::fonts);
    b.switch("icons", Builder::icons);
    b.switch("themes", Builder::themes);
    b.hardware("gpu", hardware.gpu, Builder::gpu);
    b.hardware("audio", hardware.audio, Builder::audio);
    if b.runtime_used {
        if let Ok(dir) = host.runtime_dir() {
            b.out.tmpfs.push((dir.clone(), 0o700));
            b.out.env.push(("XDG_RUNTIME_DIR".to_string(), dir));
        }
    }
    if b.out.binds.iter().any(|m| m.target.starts_with(HOST_SHARE)) {
        b.out.env.push((
            "XDG_DATA_DIRS".to_string(),
            format!("/usr/local/share:/usr/share:{HOST_SHARE}"),
        ));
    }
    b.out
}

/// [`setup`] for an environment on this host: `/`, this process's environment and working
/// directory, the caller's `home`; the own home is `home/` in `env_dir`.
pub fn for_environment(lock: &crate::lock::LockFile, home: &Path, env_dir: &Path) -> Setup {
    let env = process_env_where(|name| HOST_VARS.contains(&name));
    let cwd = std::env::current_dir().ok();
    let view = HostView {
        root: Path::new("/"),
        env: &env,
        home,
        cwd: cwd.as_deref(),
    };
    let hardware = Hardware {
        gpu: lock.gpu,
        audio: lock.audio,
    };
    setup(
        &lock.integration,
        hardware,
        &view,
        &env_dir.join(OWN_HOME_DIR),
        lock.runtime.network_isolation,
    )
}

/// The own home's directory name in an environment's store directory.
pub const OWN_HOME_DIR: &str = "home";

#[cfg(test)]
mod tests;

//! The distribution, from os-release(5), and the exact commands that fix things on it.
//!
//! `ID` and then each word of `ID_LIKE` are matched against the families whose package manager
//! we know (apt, dnf, zypper, pacman, apk); a derivative (Linux Mint, Rocky, Manjaro) lands on
//! its parent through `ID_LIKE`. Commands are written for the user who runs `doctor`: with
//! `sudo` in front of what needs root unless that user is root already.

use std::path::Path;

use serde::Serialize;

use super::host::Host;

/// The families whose tools the fixes name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Debian,
    Fedora,
    Suse,
    Arch,
    Alpine,
    Unknown,
}

impl Family {
    /// The family a word of `ID` or `ID_LIKE` names.
    fn of(word: &str) -> Option<Family> {
        Some(match word {
            "debian" | "ubuntu" | "raspbian" => Family::Debian,
            "fedora" | "rhel" | "centos" | "rocky" | "almalinux" => Family::Fedora,
            "suse" | "sles" | "opensuse" => Family::Suse,
            w if w.starts_with("opensuse") => Family::Suse,
            "arch" | "archlinux" | "manjaro" | "endeavouros" => Family::Arch,
            "alpine" => Family::Alpine,
            _ => return None,
        })
    }

    pub fn package_manager(self) -> Option<&'static str> {
        Some(match self {
            Family::Debian => "apt",
            Family::Fedora => "dnf",
            Family::Suse => "zypper",
            Family::Arch => "pacman",
            Family::Alpine => "apk",
            Family::Unknown => return None,
        })
    }
}

/// The host's distribution as os-release names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Distro {
    /// `ID` (`linux` when os-release says nothing, as os-release(5) specifies).
    pub id: String,
    /// `ID_LIKE`, split.
    pub like: Vec<String>,
    /// `PRETTY_NAME`, else `NAME`, else the id.
    pub name: String,
    pub family: Family,
    pub package_manager: Option<&'static str>,
}

impl Distro {
    /// Ubuntu and its derivatives, where AppArmor may restrict user namespaces.
    pub fn is_ubuntu(&self) -> bool {
        self.id == "ubuntu" || self.like.iter().any(|w| w == "ubuntu")
    }

    pub fn from_os_release(text: &str) -> Distro {
        let mut id = None;
        let mut like = Vec::new();
        let mut pretty = None;
        let mut name = None;
        for line in text.lines() {
            let Some((key, value)) = line.trim().split_once('=') else {
                continue;
            };
            let value = unquote(value);
            match key {
                "ID" => id = Some(value.to_ascii_lowercase()),
                "ID_LIKE" => like = value.split_whitespace().map(str::to_string).collect(),
                "PRETTY_NAME" => pretty = Some(value),
                "NAME" => name = Some(value),
                _ => {}
            }
        }
        let id = id
            .filter(|i| !i.is_empty())
            .unwrap_or_else(|| "linux".into());
        let family = std::iter::once(id.as_str())
            .chain(like.iter().map(String::as_str))
            .find_map(Family::of)
            .unwrap_or(Family::Unknown);
        Distro {
            name: pretty.or(name).unwrap_or_else(|| id.clone()),
            id,
            like,
            family,
            package_manager: family.package_manager(),
        }
    }

    /// `/etc/os-release`, else `/usr/lib/os-release` (os-release(5)); an unknown distribution
    /// when neither can be read.
    pub fn detect(host: &dyn Host) -> Distro {
        ["/etc/os-release", "/usr/lib/os-release"]
            .iter()
            .find_map(|p| host.read(Path::new(p)).ok())
            .map_or_else(
                || Distro::from_os_release(""),
                |t| Distro::from_os_release(&t),
            )
    }
}

/// A value of os-release: shell-like quoting with `\` escapes (os-release(5)).
fn unquote(value: &str) -> String {
    let value = value.trim();
    let inner = match value.as_bytes() {
        [b'"', .., b'"'] | [b'\'', .., b'\''] if value.len() >= 2 => &value[1..value.len() - 1],
        _ => value,
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
}

/// What a fix may install.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Package {
    FuseOverlayfs,
    /// newuidmap and newgidmap.
    Uidmap,
    Runc,
    Crun,
}

/// Fix commands for one distribution and one user.
#[derive(Debug, Clone, Copy)]
pub struct Fixes<'a> {
    pub distro: &'a Distro,
    /// The user is root: no `sudo`.
    pub as_root: bool,
}

impl Fixes<'_> {
    fn sudo(&self) -> &'static str {
        if self.as_root {
            ""
        } else {
            "sudo "
        }
    }

    /// The package that holds `package` on this distribution.
    pub fn package_name(&self, package: Package) -> &'static str {
        use Family::*;
        match (package, self.distro.family) {
            (Package::FuseOverlayfs, _) => "fuse-overlayfs",
            (Package::Uidmap, Debian | Unknown) => "uidmap",
            (Package::Uidmap, Fedora) => "shadow-utils",
            (Package::Uidmap, Suse | Arch) => "shadow",
            (Package::Uidmap, Alpine) => "shadow-uidmap",
            (Package::Runc, _) => "runc",
            (Package::Crun, _) => "crun",
        }
    }

    /// The command that installs `packages`.
    pub fn install(&self, packages: &[Package]) -> String {
        let names: Vec<&str> = packages.iter().map(|p| self.package_name(*p)).collect();
        let names = names.join(" ");
        let sudo = self.sudo();
        match self.distro.family {
            Family::Debian => format!("{sudo}apt-get install -y {names}"),
            Family::Fedora => format!("{sudo}dnf install -y {names}"),
            Family::Suse => format!("{sudo}zypper install -y {names}"),
            Family::Arch => format!("{sudo}pacman -S --needed {names}"),
            Family::Alpine => format!("{sudo}apk add {names}"),
            Family::Unknown => {
                format!("install {names} with your distribution's package manager")
            }
        }
    }

    /// Set a kernel setting now and at every boot (sysctl(8), sysctl.d(5)).
    pub fn sysctl(&self, key: &str, value: &str) -> String {
        let sudo = self.sudo();
        format!(
            "{sudo}sysctl -w {key}={value} && echo '{key} = {value}' | {sudo}tee -a \
             /etc/sysctl.d/90-karapace.conf"
        )
    }

    /// Boot with the unified cgroup v2 hierarchy only.
    pub fn unified_cgroups(&self) -> String {
        let sudo = self.sudo();
        let grub = "add systemd.unified_cgroup_hierarchy=1 to GRUB_CMDLINE_LINUX in \
                    /etc/default/grub, run";
        match self.distro.family {
            Family::Debian => format!("{grub} `{sudo}update-grub` and reboot"),
            Family::Fedora => format!(
                "`{sudo}grubby --update-kernel=ALL --args=systemd.unified_cgroup_hierarchy=1` \
                 and reboot"
            ),
            Family::Suse => {
                format!("{grub} `{sudo}grub2-mkconfig -o /boot/grub2/grub.cfg` and reboot")
            }
            Family::Arch => {
                format!("{grub} `{sudo}grub-mkconfig -o /boot/grub/grub.cfg` and reboot")
            }
            Family::Alpine => {
                "set rc_cgroup_mode=\"unified\" in /etc/rc.conf (OpenRC) and reboot".to_string()
            }
            Family::Unknown => {
                "boot with systemd.unified_cgroup_hierarchy=1 on the kernel command line"
                    .to_string()
            }
        }
    }

    /// Have systemd delegate the cgroup controllers to users' sessions (systemd.resource-
    /// control(5) `Delegate=`).
    pub fn delegate_cgroups(&self) -> String {
        if self.distro.family == Family::Alpine {
            return "OpenRC does not delegate cgroups to users: create a cgroup under \
                    /sys/fs/cgroup owned by this user (e.g. from a local.d start script)"
                .to_string();
        }
        let sudo = self.sudo();
        format!(
            "{sudo}mkdir -p /etc/systemd/system/user@.service.d && printf \
             '[Service]\\nDelegate=cpu cpuset io memory pids\\n' | {sudo}tee \
             /etc/systemd/system/user@.service.d/delegate.conf && {sudo}systemctl daemon-reload, \
             then log in again"
        )
    }

    /// An AppArmor profile that lets `exe` create user namespaces (Ubuntu 23.10 and later
    /// restrict them to programs with such a profile), or the switch that lifts the
    /// restriction for every program.
    pub fn apparmor_userns(&self, exe: &Path) -> String {
        let sudo = self.sudo();
        let exe = exe.display();
        format!(
            "printf 'abi <abi/4.0>,\\ninclude <tunables/global>\\nprofile karapace-tui {exe} \
             flags=(unconfined) {{\\n  userns,\\n}}\\n' | {sudo}tee /etc/apparmor.d/karapace-tui \
             && {sudo}apparmor_parser -r /etc/apparmor.d/karapace-tui (or, for every program: {})",
            self.sysctl("kernel.apparmor_restrict_unprivileged_userns", "0")
        )
    }
}

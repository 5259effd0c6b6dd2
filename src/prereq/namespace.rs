//! The namespace backend's needs: user namespaces (kernel settings, then a real probe), a root
//! overlay (kernel overlayfs in a user namespace, or fuse-overlayfs as the fallback), and the
//! id mapping (newuidmap/newgidmap with a subordinate range, for package managers that switch
//! users). As real root no user namespace is used, so neither namespaces nor ids are limited.

use std::path::Path;

use super::distro::{Fixes, Package};
use super::host::Host;
use super::{Check, Group, Status};
use crate::sandbox::check::{FuseProblem, OverlaySetting, FUSE_DEVICE, OVERLAY_VAR};
use crate::sandbox::idmap::{self, IdMapChoice};
use crate::sandbox::IdMapping;

const G: Group = Group::Namespace;

pub fn checks(host: &dyn Host, fixes: &Fixes) -> Vec<Check> {
    let mut checks = vec![userns(host, fixes)];
    checks.extend(overlay(host, fixes));
    checks.push(ids(host, fixes));
    checks
}

/// A kernel setting that rules out unprivileged user namespaces: (file, bad value, key).
const USERNS_SETTINGS: [(&str, &str, &str); 3] = [
    (
        "/proc/sys/kernel/unprivileged_userns_clone",
        "0",
        "kernel.unprivileged_userns_clone",
    ),
    (
        "/proc/sys/user/max_user_namespaces",
        "0",
        "user.max_user_namespaces",
    ),
    (
        "/proc/sys/kernel/apparmor_restrict_unprivileged_userns",
        "1",
        "kernel.apparmor_restrict_unprivileged_userns",
    ),
];

fn userns(host: &dyn Host, fixes: &Fixes) -> Check {
    let check = |status, meaning| Check::new(G, "userns", "user namespaces", status, meaning);
    if host.ids().is_root() {
        return check(
            Status::Pass,
            "running as root: sandboxes use mount, pid, uts and ipc namespaces without a user \
             namespace (and are no security boundary)"
                .to_string(),
        );
    }
    let blocked: Vec<(&str, &str)> = USERNS_SETTINGS
        .iter()
        .filter(|(path, bad, _)| {
            host.read(Path::new(path))
                .is_ok_and(|text| text.trim() == *bad)
        })
        .map(|(_, bad, key)| (*key, *bad))
        .collect();
    if !blocked.is_empty() {
        let settings: Vec<String> = blocked.iter().map(|(k, v)| format!("{k} = {v}")).collect();
        let fix: Vec<String> = blocked
            .iter()
            .map(|(key, _)| match *key {
                "kernel.apparmor_restrict_unprivileged_userns" => {
                    fixes.apparmor_userns(&host.exe())
                }
                "user.max_user_namespaces" => fixes.sysctl(key, "65536"),
                other => fixes.sysctl(other, "1"),
            })
            .collect();
        return check(
            Status::Fail,
            format!(
                "the kernel forbids unprivileged user namespaces ({}), so rootless sandboxes \
                 cannot start",
                settings.join(", ")
            ),
        )
        .fix(fix.join("; then "));
    }
    match host.userns_probe() {
        Ok(()) => check(
            Status::Pass,
            "this user can create user, mount, pid, uts, ipc and network namespaces".to_string(),
        ),
        Err(why) => check(
            Status::Fail,
            format!("creating a user namespace failed: {why}"),
        )
        .fix(
            "use a kernel built with CONFIG_USER_NS=y that allows unprivileged user namespaces, \
             or backend = \"mock\" (no isolation)",
        ),
    }
}

/// The root overlay: the kernel's, and fuse-overlayfs (the fallback, or the choice of
/// `KARAPACE_OVERLAY=fuse`). Two checks, judged together.
fn overlay(host: &dyn Host, fixes: &Fixes) -> [Check; 2] {
    let setting = match OverlaySetting::parse(host.env(OVERLAY_VAR).as_deref()) {
        Ok(setting) => setting,
        Err(why) => {
            let bad = Check::new(G, "overlay", "kernel overlayfs", Status::Fail, why).fix(format!(
                "unset {OVERLAY_VAR}, or set it to auto, kernel or fuse"
            ));
            return [bad, fuse(host, fixes, OverlaySetting::Auto, true)];
        }
    };
    let kernel = host.kernel_overlay_probe();
    let fuse_usable = host.fuse_overlayfs().is_ok();
    let how = if host.ids().is_root() {
        "as root, in a mount namespace"
    } else {
        "in a user namespace, with userxattr"
    };
    let check = |status, meaning| Check::new(G, "overlay", "kernel overlayfs", status, meaning);
    let install_fuse = fixes.install(&[Package::FuseOverlayfs]);
    let kernel_check = match (&kernel, setting) {
        (Ok(()), OverlaySetting::Fuse) => check(
            Status::Pass,
            format!("mounts ({how}), but {OVERLAY_VAR}=fuse chooses fuse-overlayfs"),
        ),
        (Ok(()), _) => check(
            Status::Pass,
            format!("mounts ({how}): environments get the kernel's overlay"),
        ),
        (Err(why), OverlaySetting::Fuse) => check(
            Status::Warn,
            format!("refused ({why}); not used: {OVERLAY_VAR}=fuse"),
        ),
        (Err(why), OverlaySetting::Auto) if fuse_usable => check(
            Status::Warn,
            format!("refused ({why}); fuse-overlayfs is used instead, which is slower"),
        )
        .fix("Linux 5.11 or later mounts overlayfs in user namespaces"),
        (Err(why), OverlaySetting::Kernel) => check(
            Status::Fail,
            format!("refused ({why}), and {OVERLAY_VAR}=kernel rules out fuse-overlayfs"),
        )
        .fix(format!(
            "unset {OVERLAY_VAR} and {install_fuse}, or use Linux 5.11 or later"
        )),
        (Err(why), _) => check(
            Status::Fail,
            format!("refused ({why}), and fuse-overlayfs cannot be used either"),
        )
        .fix(format!(
            "{install_fuse} (the fallback), or use Linux 5.11 or later"
        )),
    };
    [kernel_check, fuse(host, fixes, setting, kernel.is_ok())]
}

fn fuse(host: &dyn Host, fixes: &Fixes, setting: OverlaySetting, kernel_works: bool) -> Check {
    let check = |status, meaning| Check::new(G, "fuse", "fuse-overlayfs", status, meaning);
    // Needed only when the kernel's overlay is refused, or when chosen explicitly.
    let needed =
        setting == OverlaySetting::Fuse || (!kernel_works && setting == OverlaySetting::Auto);
    let role = if setting == OverlaySetting::Fuse {
        format!("chosen by {OVERLAY_VAR}=fuse")
    } else if kernel_works {
        "the fallback if kernel overlayfs is refused".to_string()
    } else {
        "used for the root overlay".to_string()
    };
    let found = match host.fuse_overlayfs() {
        Ok(program) => {
            let usable = check(
                Status::Pass,
                format!("{program} and {FUSE_DEVICE} usable ({role})"),
            );
            // Required only when it is the driver.
            return if needed { usable } else { usable.optional() };
        }
        Err(problem) => problem,
    };
    let (meaning, fix) = match &found {
        FuseProblem::NotInstalled => (
            "not installed".to_string(),
            fixes.install(&[Package::FuseOverlayfs]),
        ),
        FuseProblem::Device { program, error } => (
            format!("{program} is installed, but {FUSE_DEVICE} cannot be opened ({error})"),
            format!(
                "{}modprobe fuse && {}chmod 0666 {FUSE_DEVICE}",
                sudo(fixes),
                sudo(fixes)
            ),
        ),
    };
    if needed {
        check(
            Status::Fail,
            format!("{meaning}: no root overlay without it"),
        )
        .fix(fix)
    } else {
        check(
            Status::Pass,
            format!("{meaning}; not needed: kernel overlayfs works"),
        )
        .optional()
    }
}

fn sudo(fixes: &Fixes) -> &'static str {
    if fixes.as_root {
        ""
    } else {
        "sudo "
    }
}

/// Which ids sandboxes map: the decision of [`idmap::choose`] on this host's files and tools,
/// and for a full range a real probe that newuidmap/newgidmap write it.
fn ids(host: &dyn Host, fixes: &Fixes) -> Check {
    let check = |status, meaning| Check::new(G, "idmap", "id mapping", status, meaning);
    let me = host.ids();
    if me.is_root() {
        return check(
            Status::Pass,
            "real root: every id exists, nothing is mapped".to_string(),
        );
    }
    let read = |path: &str| {
        host.read(Path::new(path))
            .map_err(|e| format!("{path}: {e}"))
    };
    let idmap_host = idmap::Host {
        euid: me.euid,
        uid: me.uid,
        gid: me.gid,
        user: me.user.clone(),
        subuid: read(idmap::SUBUID),
        subgid: read(idmap::SUBGID),
        tools: host.idmap_tools(),
        no_new_privs: host.no_new_privs(),
    };
    let choice: IdMapChoice = idmap::choose(&idmap_host);
    if matches!(choice.mapping, IdMapping::Subordinate { .. }) {
        return match host.subordinate_probe() {
            Ok(()) => check(Status::Pass, full_range(&choice)),
            Err(why) => check(
                Status::Fail,
                format!("a subordinate range is configured, but writing it failed: {why}"),
            )
            .fix(format!(
                "make newuidmap and newgidmap setuid root ({}), or remove this user's lines \
                 from /etc/subuid and /etc/subgid",
                fixes.install(&[Package::Uidmap])
            )),
        };
    }
    let why = choice
        .fallback
        .as_ref()
        .map_or_else(String::new, |f| f.why.clone());
    let mut fix = Vec::new();
    if idmap_host.tools.is_err() {
        fix.push(fixes.install(&[Package::Uidmap]));
    }
    let ranges_missing = [
        (&idmap_host.subuid, idmap::SUBUID),
        (&idmap_host.subgid, idmap::SUBGID),
    ]
    .iter()
    .any(|(text, file)| {
        text.as_ref().map_or(true, |t| {
            idmap::choose_range(file, &idmap::parse_subid(t, me.user.as_deref(), me.uid)).is_err()
        })
    });
    if ranges_missing {
        fix.push(format!(
            "{}usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {}",
            sudo(fixes),
            me.who()
        ));
    }
    if idmap_host.no_new_privs {
        fix.push("start karapace-tui outside a no_new_privs context".to_string());
    }
    check(
        Status::Warn,
        format!(
            "only your own uid and gid are mapped ({why}): package managers that switch users \
             (apt's _apt, package scripts) fail"
        ),
    )
    .fix(fix.join("; "))
}

fn full_range(choice: &IdMapChoice) -> String {
    let described = choice.describe();
    described
        .strip_prefix("ids: ")
        .unwrap_or(&described)
        .to_string()
}

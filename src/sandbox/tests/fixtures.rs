//! A typical rootless plan and a compact, readable rendering of recorded calls.

use nix::mount::MsFlags;

use crate::sandbox::builder::{Bind, IdMapping, RootfsSpec};
use crate::sandbox::plan::{IdRange, OverlayDriver};
use crate::sandbox::sys::{Call, FileKind, RecordingSys};

/// Rootless (uid/gid 1000), net shared, hostname, /sys, /tmp tmpfs, a rw directory bind and a
/// read-only file bind.
pub fn rootless_spec() -> RootfsSpec {
    RootfsSpec {
        ids: IdMapping::SingleId {
            uid: 1000,
            gid: 1000,
        },
        lower: vec!["/img".into()],
        upper: "/env/upper".into(),
        work: "/env/work".into(),
        root: "/r".into(),
        userxattr: true,
        overlay: OverlayDriver::Kernel,
        isolate_net: false,
        hostname: Some("box".into()),
        sys: true,
        tmpfs: vec![("/tmp".into(), 0o1777)],
        devices: Vec::new(),
        console: None,
        binds: vec![
            Bind {
                source: "/home/u/src".into(),
                target: "/src".into(),
                read_only: false,
            },
            Bind {
                source: "/etc/resolv.conf".into(),
                target: "/etc/resolv.conf".into(),
                read_only: true,
            },
        ],
        argv: vec!["bash".into(), "-l".into()],
        env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        cwd: "/src".into(),
    }
}

/// The typical spec with a full subordinate range: uid/gid 1000 as 0, 100000.. as 1...
pub fn subordinate_spec() -> RootfsSpec {
    let range = IdRange {
        inside: 1,
        outside: 100_000,
        count: 65536,
    };
    RootfsSpec {
        ids: IdMapping::Subordinate {
            uid: 1000,
            gid: 1000,
            sub_uid: range,
            sub_gid: range,
        },
        ..rootless_spec()
    }
}

/// The fake file system the typical plan expects: /src and /etc/resolv.conf missing in the
/// new root, resolv.conf a file on the host, one submount under /sys.
pub fn typical_sys() -> RecordingSys {
    let mut sys = RecordingSys::new()
        .with_kind("/r/src", None)
        .with_kind("/etc/resolv.conf", Some(FileKind::File))
        .with_kind("/r/etc/resolv.conf", None);
    sys.mountinfo_text = "22 27 0:21 / /proc rw - proc proc rw\n\
        90 80 0:22 / /r/sys rw,relatime - sysfs sysfs rw\n\
        91 90 0:28 / /r/sys/fs/cgroup rw,relatime - tmpfs tmpfs rw\n"
        .into();
    sys
}

fn flag_names(flags: MsFlags) -> String {
    let names = [
        (MsFlags::MS_RDONLY, "ro"),
        (MsFlags::MS_NOSUID, "nosuid"),
        (MsFlags::MS_NODEV, "nodev"),
        (MsFlags::MS_NOEXEC, "noexec"),
        (MsFlags::MS_REC, "rec"),
        (MsFlags::MS_SLAVE, "slave"),
    ];
    let on: Vec<&str> = names
        .iter()
        .filter(|(f, _)| flags.contains(*f))
        .map(|(_, n)| *n)
        .collect();
    on.join(",")
}

/// One line per call, e.g. `bind /dev/null /r/dev/null` or `remount /r/sys ro,nosuid,nodev`.
pub fn render(call: &Call) -> String {
    match call {
        Call::Unshare(flags) => format!("unshare {flags:?}"),
        Call::WriteFile { path, contents } => format!("write {path} {}", contents.trim()),
        Call::AwaitIdMaps(sync) => format!("await_id_maps fd {}", sync.fd),
        Call::EnterUserNs(ns) => format!("setns user fd {ns}"),
        Call::Mount {
            source,
            target,
            fstype,
            flags,
            data,
        } => {
            let data = data.as_deref().map(|d| format!(" {d}")).unwrap_or_default();
            if flags.contains(MsFlags::MS_REMOUNT) {
                format!("remount {target} {}", flag_names(*flags))
            } else if flags.contains(MsFlags::MS_BIND) {
                let src = source.as_deref().unwrap_or("?");
                format!("bind {src} {target} {}", flag_names(*flags))
            } else if let Some(fstype) = fstype {
                format!("mount {fstype} {target} {}{data}", flag_names(*flags))
            } else {
                format!("propagation {target} {}", flag_names(*flags))
            }
        }
        Call::MountSetattr {
            target,
            attrs,
            recursive,
        } => {
            let rec = if *recursive { " recursive" } else { "" };
            format!("setattr {target} {}{rec}", flag_names(attrs.ms_flags()))
        }
        Call::Umount2 { target, flags } => format!("umount2 {target} {flags:?}"),
        Call::PivotRoot { new_root, put_old } => format!("pivot_root {new_root} {put_old}"),
        Call::SetHostname(name) => format!("sethostname {name}"),
        Call::Chdir(path) => format!("chdir {path}"),
        Call::SetNoNewPrivs => "no_new_privs".into(),
        Call::Mkdir { path, mode } => format!("mkdir {path} {mode:o}"),
        Call::CreateFile { path, mode } => format!("create {path} {mode:o}"),
        Call::Symlink { target, link } => format!("symlink {link} -> {target}"),
        Call::FileKind { path, follow } => format!("kind {path} follow={follow}"),
        Call::MountFlags(path) => format!("statvfs {path}"),
        Call::Mountinfo => "mountinfo".into(),
        Call::SetLinkUp(index) => format!("link_up {index}"),
        Call::OpenReadWrite(path) => format!("open_rw {path}"),
        Call::RunProgram(argv) => format!("run {}", argv.join(" ")),
    }
}

/// The changing calls, rendered.
pub fn changes(sys: &RecordingSys) -> Vec<String> {
    sys.changes().into_iter().map(render).collect()
}

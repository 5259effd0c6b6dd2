//! Runs setup steps with a [`Sys`], in order, stopping at the first failure.
//!
//! One function per step. Every syscall error becomes [`SandboxError::Step`] naming the step,
//! the operation, the path and the errno, with a hint (`error::hint`); nothing after a failed
//! step runs. Mount points under the new root are walked component by component with `lstat`:
//! a symlink is refused (it would be resolved against the host's root, so a hostile image could
//! make us create or mount things outside the sandbox) and missing components are created.

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;

use super::error::{hint, Result, SandboxError};
use super::netlink::LOOPBACK_IFINDEX;
use super::plan::{IdRange, OverlayDriver, SetupStep};
use super::sys::{FileKind, IdMapSync, Sys};

/// The nodes bubblewrap's `--dev` binds from the host, in its order.
pub const DEV_NODES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// The kernel's answers to an overlay mount that mean "not supported here" (an old kernel in a
/// user namespace, `userxattr` unknown, no overlay module), after which fuse-overlayfs is tried.
const OVERLAY_UNSUPPORTED: [Errno; 3] = [Errno::EPERM, Errno::EINVAL, Errno::ENODEV];

/// How to fix a fuse-overlayfs root that cannot open the FUSE device.
const FUSE_DEVICE_HINT: &str = "fuse-overlayfs needs /dev/fuse, readable and writable by this \
     user: load the module (`modprobe fuse`) and make the device usable by everyone (`chmod \
     0666 /dev/fuse`, as the fuse packages' udev rule does), or let the kernel mount the \
     overlay (KARAPACE_OVERLAY=kernel)";

/// Applies `steps` in order. Mount points may be created below the plan's `pivot_root` target.
pub fn apply_steps(sys: &mut dyn Sys, steps: &[SetupStep]) -> Result<()> {
    apply_steps_with(sys, steps, None)
}

/// [`apply_steps`] with the channel to the spawner that writes the id maps of an
/// `await_id_maps` step (`None` when the helper was started without one: the step fails).
pub fn apply_steps_with(
    sys: &mut dyn Sys,
    steps: &[SetupStep],
    id_maps: Option<IdMapSync>,
) -> Result<()> {
    let root = steps.iter().find_map(|s| match s {
        SetupStep::PivotRoot { new_root } => Some(new_root.trim_end_matches('/').to_string()),
        _ => None,
    });
    run(
        Executor {
            sys,
            root,
            id_maps,
            no_mount_setattr: false,
        },
        steps,
    )
}

/// [`apply_steps`] with the future root given explicitly (for running a plan piecewise).
pub fn apply_steps_in(sys: &mut dyn Sys, steps: &[SetupStep], root: Option<&str>) -> Result<()> {
    run(
        Executor {
            sys,
            root: root.map(|r| r.trim_end_matches('/').to_string()),
            id_maps: None,
            no_mount_setattr: false,
        },
        steps,
    )
}

fn run(mut ex: Executor, steps: &[SetupStep]) -> Result<()> {
    let trace = std::env::var_os(super::helper::TRACE_VAR).is_some_and(|v| v == "1");
    for (i, step) in steps.iter().enumerate() {
        if trace {
            eprintln!("karapace sandbox: step {i}: {step:?}");
            if let (SetupStep::UnshareUserNs, Some(ns)) =
                (step, ex.id_maps.and_then(|sync| sync.premapped))
            {
                eprintln!("karapace sandbox: entering the user namespace made ahead (fd {ns})");
            }
        }
        ex.apply(step)?;
    }
    Ok(())
}

struct Executor<'s> {
    sys: &'s mut dyn Sys,
    /// The future root (from the plan's `pivot_root`): mount points below it may be created.
    root: Option<String>,
    /// The channel to the spawner, used (and closed) by `await_id_maps`.
    id_maps: Option<IdMapSync>,
    /// mount_setattr(2) answered `ENOSYS` (Linux before 5.12): binds are restricted by
    /// remounting from then on.
    no_mount_setattr: bool,
}

/// Maps an errno to the step error.
fn fail(step: &'static str, op: &str, path: &str) -> impl FnOnce(Errno) -> SandboxError {
    let (op, path) = (op.to_string(), path.to_string());
    move |errno| SandboxError::Step {
        step,
        hint: hint(step, errno),
        op,
        path,
        errno,
    }
}

const OVERLAY_STEP: &str = "mount_overlay";

/// The directories of an overlay mount.
struct Layers<'a> {
    /// Top first.
    lower: &'a [String],
    upper: &'a str,
    work: &'a str,
    target: &'a str,
}

impl Layers<'_> {
    /// The option string both overlayfs and fuse-overlayfs take.
    fn options(&self) -> String {
        format!(
            "lowerdir={},upperdir={},workdir={}",
            self.lower.join(":"),
            self.upper,
            self.work
        )
    }
}

/// What a bind should end up as.
#[derive(Clone, Copy)]
struct BindOpts {
    read_only: bool,
    recursive: bool,
    devices: bool,
}

/// A read-only tree (every submount read-only too).
const READ_ONLY_TREE: BindOpts = BindOpts {
    read_only: true,
    recursive: true,
    devices: false,
};

/// A path of the procfs this sandbox has just mounted: read-only, and not recursive, because a
/// fresh procfs instance has no submounts (the host's `binfmt_misc` automount, for one, lives
/// on the host's instance only). That spares reading the host's whole mountinfo for each of
/// them on every start.
const FRESH_PROC_READ_ONLY: BindOpts = BindOpts {
    read_only: true,
    recursive: false,
    devices: false,
};

/// A device node: writable, not recursive, `nodev` not added.
const DEVICE: BindOpts = BindOpts {
    read_only: false,
    recursive: false,
    devices: true,
};

impl Executor<'_> {
    fn apply(&mut self, step: &SetupStep) -> Result<()> {
        let name = step.name();
        match step {
            SetupStep::UnshareUserNs => match self.id_maps.and_then(|sync| sync.premapped) {
                // A new namespace all the same, made for this sandbox by the spawner's child.
                Some(ns) => self.sys.enter_user_ns(ns).map_err(fail(
                    name,
                    "setns(CLONE_NEWUSER) into the user namespace made ahead",
                    &format!("fd {ns}"),
                )),
                None => self.unshare(name, CloneFlags::CLONE_NEWUSER),
            },
            SetupStep::WriteIdMaps { uid_map, gid_map } => self.write_id_maps(uid_map, gid_map),
            SetupStep::AwaitIdMaps { .. } => self.await_id_maps(),
            SetupStep::UnshareMountNs => self.unshare(name, CloneFlags::CLONE_NEWNS),
            SetupStep::MakeRootPrivate => self.make_root_private(),
            SetupStep::UnshareOther { pid, uts, ipc, net } => {
                let flags = [
                    (*pid, CloneFlags::CLONE_NEWPID),
                    (*uts, CloneFlags::CLONE_NEWUTS),
                    (*ipc, CloneFlags::CLONE_NEWIPC),
                    (*net, CloneFlags::CLONE_NEWNET),
                ]
                .iter()
                .filter(|(on, _)| *on)
                .fold(CloneFlags::empty(), |acc, (_, f)| acc | *f);
                self.unshare(name, flags)
            }
            SetupStep::LoopbackUp => self.sys.set_link_up(LOOPBACK_IFINDEX).map_err(fail(
                name,
                "rtnetlink RTM_NEWLINK(IFF_UP)",
                "lo",
            )),
            SetupStep::MountOverlay {
                lower,
                upper,
                work,
                target,
                userxattr,
                driver,
            } => {
                let layers = Layers {
                    lower,
                    upper,
                    work,
                    target,
                };
                self.mount_overlay(&layers, *userxattr, driver)
            }
            SetupStep::BindMount {
                source,
                target,
                read_only,
                recursive,
            } => {
                let opts = BindOpts {
                    read_only: *read_only,
                    recursive: *recursive,
                    devices: false,
                };
                self.bind(name, source, target, opts)
            }
            SetupStep::BindDevice { source, target } => self.bind(name, source, target, DEVICE),
            SetupStep::MountProc { target } => self.mount_proc(target),
            SetupStep::MountTmpfs { target, mode } => self.mount_tmpfs(name, target, *mode),
            SetupStep::MinimalDev { target, console } => {
                self.minimal_dev(target, console.as_deref())
            }
            SetupStep::MountSysReadOnly { target } => self.mount_sys(target),
            SetupStep::SetHostname(host) => {
                self.sys
                    .sethostname(host)
                    .map_err(fail(name, "sethostname", host))
            }
            SetupStep::PivotRoot { new_root } => self.pivot_root(new_root),
            SetupStep::NoNewPrivs => {
                self.sys
                    .set_no_new_privs()
                    .map_err(fail(name, "prctl(PR_SET_NO_NEW_PRIVS)", ""))
            }
            SetupStep::Chdir(dir) => self.sys.chdir(dir).map_err(fail(name, "chdir", dir)),
        }
    }

    fn unshare(&mut self, step: &'static str, flags: CloneFlags) -> Result<()> {
        if flags.is_empty() {
            return Ok(());
        }
        let op = format!("unshare({flags:?})");
        self.sys.unshare(flags).map_err(fail(step, &op, ""))
    }

    /// user_namespaces(7): `uid_map`, then `setgroups` = `deny` (required before an
    /// unprivileged `gid_map` write, CVE-2014-8989), then `gid_map`.
    fn write_id_maps(&mut self, uid_map: &[IdRange], gid_map: &[IdRange]) -> Result<()> {
        const STEP: &str = "write_id_maps";
        let single = |map: &[IdRange]| map.len() == 1 && map[0].count == 1;
        if !single(uid_map) || !single(gid_map) {
            return Err(SandboxError::Unsupported {
                step: STEP,
                what: "a map of more than one id can only be written from outside the namespace \
                       by newuidmap/newgidmap: use an `await_id_maps` step \
                       (IdMapping::Subordinate) instead"
                    .into(),
            });
        }
        let line = |r: &IdRange| format!("{} {} {}\n", r.inside, r.outside, r.count);
        let uid_path = "/proc/self/uid_map";
        let uid_line = line(&uid_map[0]);
        self.sys
            .write_file(uid_path, &uid_line)
            .map_err(fail(STEP, "write", uid_path))?;
        let groups = "/proc/self/setgroups";
        self.sys
            .write_file(groups, "deny")
            .map_err(fail(STEP, "write", groups))?;
        let gid_path = "/proc/self/gid_map";
        let gid_line = line(&gid_map[0]);
        self.sys
            .write_file(gid_path, &gid_line)
            .map_err(fail(STEP, "write", gid_path))
    }

    /// The spawner writes the maps with newuidmap/newgidmap while we wait (see `IdMapSync`).
    fn await_id_maps(&mut self) -> Result<()> {
        const STEP: &str = "await_id_maps";
        let Some(sync) = self.id_maps.take() else {
            return Err(SandboxError::Unsupported {
                step: STEP,
                what: "this plan maps subordinate id ranges, which newuidmap/newgidmap must write \
                       from outside the namespace, but the helper was started without the \
                       channel to its spawner (`--id-maps`); start such plans with \
                       `sandbox::spawn` or `sandbox::spawn_session`, not with \
                       `helper_args`/`command`"
                    .into(),
            });
        };
        self.sys.await_id_maps(sync).map_err(fail(
            STEP,
            "wait for the spawner to write the id maps over",
            &format!("fd {}", sync.fd),
        ))
    }

    /// Nothing we mount may propagate back to the host (mount_namespaces(7)); host mounts still
    /// propagate in, as with bubblewrap.
    fn make_root_private(&mut self) -> Result<()> {
        let flags = MsFlags::MS_SLAVE | MsFlags::MS_REC | MsFlags::MS_SILENT;
        self.sys.mount(None, "/", None, flags, None).map_err(fail(
            "make_root_private",
            "mount(MS_SLAVE|MS_REC)",
            "/",
        ))
    }

    fn mount_overlay(
        &mut self,
        layers: &Layers,
        userxattr: bool,
        driver: &OverlayDriver,
    ) -> Result<()> {
        self.ensure_mount_point(OVERLAY_STEP, layers.target, FileKind::Dir)?;
        match driver {
            OverlayDriver::Kernel => self.kernel_overlay(layers, userxattr),
            OverlayDriver::Fuse { program } => self.fuse_overlay(program, layers, None),
            OverlayDriver::KernelOrFuse { program } => {
                match self.kernel_overlay(layers, userxattr) {
                    Err(SandboxError::Step { errno, .. })
                        if OVERLAY_UNSUPPORTED.contains(&errno) =>
                    {
                        self.fuse_overlay(program, layers, Some(errno))
                    }
                    other => other,
                }
            }
        }
    }

    /// Kernel overlayfs, `volatile` where the kernel has it (5.10+): without it, unmounting
    /// the overlay syncs the whole file system under the upper directory (every dirty page of
    /// the host's disk, not only the sandbox's), which made ending a session take as long as
    /// the host's pending writeback. The runtime syncs a finished build itself and clears the
    /// `work/incompat/volatile` marker before the next mount (overlayfs.rst, "Volatile mount").
    fn kernel_overlay(&mut self, layers: &Layers, userxattr: bool) -> Result<()> {
        let mut data = layers.options();
        if userxattr {
            data.push_str(",userxattr");
        }
        let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
        let target = layers.target;
        let volatile = format!("{data},volatile");
        match self.sys.mount(
            Some("overlay"),
            target,
            Some("overlay"),
            flags,
            Some(&volatile),
        ) {
            Ok(()) => return Ok(()),
            // An older kernel does not know the option; try without it.
            Err(Errno::EINVAL) => {}
            Err(errno) => {
                return Err(fail(
                    OVERLAY_STEP,
                    &format!("mount(overlay, {volatile})"),
                    target,
                )(errno))
            }
        }
        let op = format!("mount(overlay, {data})");
        self.sys
            .mount(Some("overlay"), target, Some("overlay"), flags, Some(&data))
            .map_err(fail(OVERLAY_STEP, &op, target))
    }

    /// `fuse-overlayfs -o OPTIONS TARGET` mounts, daemonises and returns. The daemon lives in
    /// the sandbox's PID namespace (the helper's PID 1 is its init and reaps it), so it is
    /// killed when the sandbox ends, whatever the exit path; the mount exists only in the sandbox's mount
    /// namespaces. `kernel_refused` is the kernel's answer when this is the fallback.
    fn fuse_overlay(
        &mut self,
        program: &str,
        layers: &Layers,
        kernel_refused: Option<Errno>,
    ) -> Result<()> {
        let after = kernel_refused
            .map(|errno| format!("Kernel overlayfs refused the mount first ({errno}). "))
            .unwrap_or_default();
        let device = "/dev/fuse";
        if let Err(errno) = self.sys.open_read_write(device) {
            return Err(SandboxError::Step {
                step: OVERLAY_STEP,
                op: "open (for fuse-overlayfs)".into(),
                path: device.into(),
                errno,
                hint: format!("{after}{FUSE_DEVICE_HINT}"),
            });
        }
        // As the kernel overlay: no set-user-id programs, no device nodes from the layers.
        let data = format!("{},nosuid,nodev", layers.options());
        let argv = [program, "-o", &data, layers.target].map(String::from);
        let exit = self
            .sys
            .run_program(&argv)
            .map_err(fail(OVERLAY_STEP, "run", program))?;
        if exit.success() {
            // pivot_root(2) re-roots every process of the mount namespace whose root is the old
            // root: the daemon too, which would then look up its own paths (/proc/self/fd/N)
            // through its own file system and wait for itself forever. So the sandbox goes on
            // in a copy of the namespace (holding a copy of the mount), and the daemon stays
            // behind in this one. Nothing in the copy propagates back: `/` is a slave already.
            return self.sys.unshare(CloneFlags::CLONE_NEWNS).map_err(fail(
                OVERLAY_STEP,
                "unshare(CLONE_NEWNS) after fuse-overlayfs",
                "",
            ));
        }
        Err(SandboxError::Program {
            step: OVERLAY_STEP,
            program: argv.join(" "),
            status: match exit.code {
                Some(code) => format!("exited with code {code}"),
                None => "was killed by a signal".into(),
            },
            stderr: exit.stderr,
            hint: format!(
                "{after}fuse-overlayfs needs Linux >= 4.18 inside a user namespace, /dev/fuse, \
                 and upper and work directories on the same file system"
            ),
        })
    }

    fn mount_proc(&mut self, target: &str) -> Result<()> {
        const STEP: &str = "mount_proc";
        self.ensure_mount_point(STEP, target, FileKind::Dir)?;
        let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        self.sys
            .mount(Some("proc"), target, Some("proc"), flags, None)
            .map_err(fail(STEP, "mount(proc)", target))?;
        // The kernel-wide knobs under a fresh procfs are still the host's: as real root (no
        // user namespace) /proc/sys/kernel/core_pattern or /proc/sysrq-trigger would reach
        // the host. Bind them read-only onto themselves, as bubblewrap does (proc(5)).
        for sub in ["sys", "sysrq-trigger", "irq", "bus"] {
            let path = format!("{}/{sub}", target.trim_end_matches('/'));
            let exists = self
                .sys
                .file_kind(&path, false)
                .map_err(fail(STEP, "lstat", &path))?
                .is_some();
            if exists {
                self.bind_at(STEP, &path, &path, FRESH_PROC_READ_ONLY)?;
            }
        }
        Ok(())
    }

    fn mount_tmpfs(&mut self, step: &'static str, target: &str, mode: u32) -> Result<()> {
        self.ensure_mount_point(step, target, FileKind::Dir)?;
        self.tmpfs(step, target, mode)
    }

    fn tmpfs(&mut self, step: &'static str, target: &str, mode: u32) -> Result<()> {
        let data = format!("mode={mode:04o}");
        let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
        self.sys
            .mount(Some("tmpfs"), target, Some("tmpfs"), flags, Some(&data))
            .map_err(fail(step, &format!("mount(tmpfs, {data})"), target))
    }

    /// bubblewrap's `SETUP_MOUNT_DEV`: a tmpfs, the host's basic nodes bound onto empty files,
    /// the stdio and fd symlinks, a private devpts instance with `ptmx` pointing into it, and
    /// a tmpfs /dev/shm.
    fn minimal_dev(&mut self, target: &str, console: Option<&str>) -> Result<()> {
        const STEP: &str = "minimal_dev";
        self.ensure_mount_point(STEP, target, FileKind::Dir)?;
        self.tmpfs(STEP, target, 0o755)?;
        let nodes = DEV_NODES.iter().map(|node| (format!("/dev/{node}"), *node));
        // The caller's terminal as /dev/console, as bubblewrap and container runtimes do.
        let console = console.map(|tty| (tty.to_string(), "console"));
        for (src, node) in nodes.chain(console) {
            let dest = format!("{target}/{node}");
            self.sys
                .create_file(&dest, 0o444)
                .map_err(fail(STEP, "create", &dest))?;
            self.bind_at(STEP, &src, &dest, DEVICE)?;
        }
        let links = [
            ("/proc/self/fd/0", "stdin"),
            ("/proc/self/fd/1", "stdout"),
            ("/proc/self/fd/2", "stderr"),
            ("/proc/self/fd", "fd"),
            ("/proc/kcore", "core"),
        ];
        for (to, name) in links {
            self.symlink(STEP, to, &format!("{target}/{name}"))?;
        }
        self.mkdir(STEP, &format!("{target}/shm"))?;
        self.tmpfs(STEP, &format!("{target}/shm"), 0o1777)?;
        let pts = format!("{target}/pts");
        self.mkdir(STEP, &pts)?;
        let opts = "newinstance,ptmxmode=0666,mode=620";
        self.sys
            .mount(
                Some("devpts"),
                &pts,
                Some("devpts"),
                MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
                Some(opts),
            )
            .map_err(fail(
                STEP,
                "mount(devpts, newinstance,ptmxmode=0666,mode=620)",
                &pts,
            ))?;
        self.symlink(STEP, "pts/ptmx", &format!("{target}/ptmx"))
    }

    fn mount_sys(&mut self, target: &str) -> Result<()> {
        self.bind("mount_sys_read_only", "/sys", target, READ_ONLY_TREE)
    }

    /// pivot_root(2), "pivot_root(".", ".")": the old root ends up stacked on `.`, and the
    /// lazy unmount detaches it (and everything under it) from the sandbox.
    fn pivot_root(&mut self, new_root: &str) -> Result<()> {
        const STEP: &str = "pivot_root";
        self.sys
            .chdir(new_root)
            .map_err(fail(STEP, "chdir", new_root))?;
        self.sys
            .pivot_root(".", ".")
            .map_err(fail(STEP, "pivot_root(\".\", \".\")", new_root))?;
        self.sys.umount2(".", MntFlags::MNT_DETACH).map_err(fail(
            STEP,
            "umount2(MNT_DETACH) of the old root",
            ".",
        ))?;
        self.sys.chdir("/").map_err(fail(STEP, "chdir", "/"))
    }

    fn mkdir(&mut self, step: &'static str, path: &str) -> Result<()> {
        self.sys
            .mkdir(path, 0o755)
            .map_err(fail(step, "mkdir", path))
    }

    fn symlink(&mut self, step: &'static str, to: &str, link: &str) -> Result<()> {
        let op = format!("symlink(-> {to})");
        self.sys.symlink(to, link).map_err(fail(step, &op, link))
    }
}

#[path = "exec_bind.rs"]
mod bind;

pub use bind::unescape_mountinfo;

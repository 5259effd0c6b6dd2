//! The only place the sandbox makes syscalls: the [`Sys`] trait, [`LinuxSys`] (nix) and
//! [`RecordingSys`] (a fake that records each call and can fail on demand).
//!
//! Every method returns `nix::Result`, so a failure always carries an errno; `std::io` errors
//! are converted with their raw OS error. Queries (`file_kind`, `mount_flags`, `mountinfo`,
//! `open_read_write`) go through the trait too, so the executor's decisions can be scripted in
//! unit tests.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::os::fd::RawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::process::{Command, Stdio};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::statvfs::FsFlags;

/// The helper's end of the id-map channel with its spawner: one end of a `SOCK_STREAM`
/// socketpair, inherited as `--id-maps FD`. The helper sends [`ID_MAPS_NS_READY`] once its user
/// namespace exists; the spawner runs newuidmap/newgidmap for the helper's pid and answers
/// [`ID_MAPS_WRITTEN`], or closes its end (EOF) if it failed. The spawner's end is
/// close-on-exec, so EOF also means the spawner has died. A session's helper that joins a
/// running environment creates no user namespace (it enters one that has its maps): it sends
/// [`ID_MAPS_NOT_NEEDED`] instead ([`IdMapSync::not_needed`]) and closes its end.
///
/// With `premapped`, the user namespace was made ahead by a child of the spawner (see
/// [`super::premap`]), whose maps are being written already: the helper enters it
/// ([`Sys::enter_user_ns`]) instead of unsharing its own, sends nothing, and only waits for
/// [`ID_MAPS_WRITTEN`]. PID 1, waiting in place of the stage 1 that entered such a namespace
/// ([`SandboxPlan::steps_awaiting_maps_in_pid1`](super::plan::SandboxPlan)), gets a channel
/// that only waits too ([`IdMapSync::awaiting`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMapSync {
    pub fd: RawFd,
    /// A descriptor of the user namespace made ahead (`/proc/PID/ns/user`).
    pub premapped: Option<RawFd>,
    /// Whether `await_id_maps` first tells the spawner that the namespace exists.
    pub announce: bool,
}

/// "The user namespace exists: write its maps."
pub const ID_MAPS_NS_READY: u8 = b'n';
/// "The maps are written."
pub const ID_MAPS_WRITTEN: u8 = b'w';
/// "Joined a running environment: no maps to write."
pub const ID_MAPS_NOT_NEEDED: u8 = b'j';

impl IdMapSync {
    /// The channel alone: the helper makes its user namespace itself.
    pub fn new(fd: RawFd) -> IdMapSync {
        IdMapSync {
            fd,
            premapped: None,
            announce: true,
        }
    }

    /// The channel of a namespace that exists and was entered already: `await_id_maps` only
    /// waits for [`ID_MAPS_WRITTEN`].
    pub fn awaiting(fd: RawFd) -> IdMapSync {
        IdMapSync {
            fd,
            premapped: None,
            announce: false,
        }
    }

    /// Tells the spawner that no maps are needed, and closes the channel (and the namespace
    /// made ahead, which nothing will use). With a namespace made ahead nothing is sent: that
    /// spawner never reads the channel (it runs the tools for the namespace's seed and only
    /// writes [`ID_MAPS_WRITTEN`]), and may have closed its end already, which made the send
    /// fail with EPIPE and the joining session with it.
    pub fn not_needed(self) -> nix::Result<()> {
        use nix::sys::socket::{send, MsgFlags};
        let sent = match self.premapped {
            Some(_) => Ok(0),
            None => loop {
                match send(self.fd, &[ID_MAPS_NOT_NEEDED], MsgFlags::MSG_NOSIGNAL) {
                    Err(Errno::EINTR) => {}
                    other => break other,
                }
            },
        };
        let closed = nix::unistd::close(self.fd);
        let ns_closed = self.premapped.map_or(Ok(()), nix::unistd::close);
        sent.and(closed).and(ns_closed)
    }
}

/// What is at a path, without following a final symlink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Dir,
    File,
    Symlink,
    /// Device, socket, fifo.
    Other,
}

/// How a program run during setup ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramExit {
    /// The exit code; `None` when a signal killed it.
    pub code: Option<i32>,
    /// What it wrote to stderr (the reason when it failed).
    pub stderr: String,
}

impl ProgramExit {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// The restrictions [`Sys::mount_setattr`] adds to a mount (`MOUNT_ATTR_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MountAttrs {
    pub read_only: bool,
    pub nosuid: bool,
    pub nodev: bool,
}

impl MountAttrs {
    /// Each restriction: asked for, its `MOUNT_ATTR_*` bit, its `MS_*` flag.
    fn table(self) -> [(bool, u64, MsFlags); 3] {
        [
            (self.read_only, libc::MOUNT_ATTR_RDONLY, MsFlags::MS_RDONLY),
            (self.nosuid, libc::MOUNT_ATTR_NOSUID, MsFlags::MS_NOSUID),
            (self.nodev, libc::MOUNT_ATTR_NODEV, MsFlags::MS_NODEV),
        ]
    }

    /// The `attr_set` bits of mount_setattr(2).
    pub fn bits(self) -> u64 {
        self.table()
            .iter()
            .filter(|(on, ..)| *on)
            .fold(0, |acc, (_, bit, _)| acc | bit)
    }

    /// The same as `MS_*` flags.
    pub fn ms_flags(self) -> MsFlags {
        self.table()
            .iter()
            .filter(|(on, ..)| *on)
            .fold(MsFlags::empty(), |acc, (.., flag)| acc | *flag)
    }
}

/// One method per syscall the sandbox uses.
pub trait Sys {
    fn unshare(&mut self, flags: CloneFlags) -> nix::Result<()>;
    /// One `write(2)` of `contents` to an existing file (id maps, setgroups).
    fn write_file(&mut self, path: &str, contents: &str) -> nix::Result<()>;
    /// Has the spawner write the id maps from outside (see [`IdMapSync`]), then closes the
    /// channel. `EPIPE`: the spawner closed it without writing them.
    fn await_id_maps(&mut self, sync: IdMapSync) -> nix::Result<()>;
    /// Enters the user namespace `ns` refers to (setns(2)) and closes `ns`.
    fn enter_user_ns(&mut self, ns: RawFd) -> nix::Result<()>;
    fn mount(
        &mut self,
        source: Option<&str>,
        target: &str,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> nix::Result<()>;
    /// Adds `attrs` to the mount at `target` (every mount below it too if `recursive`).
    /// `ENOSYS`: the kernel is older than 5.12; the caller remounts instead.
    fn mount_setattr(
        &mut self,
        target: &str,
        attrs: MountAttrs,
        recursive: bool,
    ) -> nix::Result<()>;
    fn umount2(&mut self, target: &str, flags: MntFlags) -> nix::Result<()>;
    fn pivot_root(&mut self, new_root: &str, put_old: &str) -> nix::Result<()>;
    fn sethostname(&mut self, name: &str) -> nix::Result<()>;
    fn chdir(&mut self, path: &str) -> nix::Result<()>;
    fn set_no_new_privs(&mut self) -> nix::Result<()>;
    fn mkdir(&mut self, path: &str, mode: u32) -> nix::Result<()>;
    /// Creates an empty file (a mount point for a file bind); fails if anything exists there.
    fn create_file(&mut self, path: &str, mode: u32) -> nix::Result<()>;
    fn symlink(&mut self, target: &str, link: &str) -> nix::Result<()>;
    /// What is at `path` (`None`: nothing), following a final symlink only if `follow`.
    fn file_kind(&mut self, path: &str, follow: bool) -> nix::Result<Option<FileKind>>;
    /// The mount flags of the mount holding `path` (statvfs), as `MS_*` flags.
    fn mount_flags(&mut self, path: &str) -> nix::Result<MsFlags>;
    /// `/proc/self/mountinfo`.
    fn mountinfo(&mut self) -> nix::Result<String>;
    /// Sets `IFF_UP` on link `ifindex` of the current network namespace (rtnetlink).
    fn set_link_up(&mut self, ifindex: i32) -> nix::Result<()>;
    /// Opens `path` for reading and writing and closes it again: can we use this device?
    fn open_read_write(&mut self, path: &str) -> nix::Result<()>;
    /// Runs `argv` to completion with stdin and stdout on /dev/null, capturing stderr.
    /// `Err` only when it could not be started.
    fn run_program(&mut self, argv: &[String]) -> nix::Result<ProgramExit>;
}

fn errno_of(e: io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

/// statvfs `ST_*` flags to the `MS_*` flags a remount must keep (mount(2): a bind remount in a
/// user namespace must not clear locked flags, so we start from the current ones, as bubblewrap's
/// `bind_mount` does).
pub fn ms_flags_of(st: FsFlags) -> MsFlags {
    let pairs = [
        (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_SYNCHRONOUS, MsFlags::MS_SYNCHRONOUS),
        (FsFlags::ST_MANDLOCK, MsFlags::MS_MANDLOCK),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ];
    pairs
        .iter()
        .filter(|(st_flag, _)| st.contains(*st_flag))
        .fold(MsFlags::empty(), |acc, (_, ms)| acc | *ms)
}

/// The real thing, through nix.
#[derive(Debug, Default)]
pub struct LinuxSys;

impl Sys for LinuxSys {
    fn unshare(&mut self, flags: CloneFlags) -> nix::Result<()> {
        nix::sched::unshare(flags)
    }

    fn write_file(&mut self, path: &str, contents: &str) -> nix::Result<()> {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(errno_of)?;
        // The id map files take the whole map in a single write(2) (user_namespaces(7)).
        let written = file.write(contents.as_bytes()).map_err(errno_of)?;
        if written != contents.len() {
            return Err(Errno::EIO);
        }
        Ok(())
    }

    fn await_id_maps(&mut self, sync: IdMapSync) -> nix::Result<()> {
        use nix::sys::socket::{recv, send, MsgFlags};
        let fd = sync.fd;
        let sent = match sync.announce {
            // The spawner started the tools when it made the namespace: nothing to announce.
            false => Ok(0),
            true => loop {
                match send(fd, &[ID_MAPS_NS_READY], MsgFlags::MSG_NOSIGNAL) {
                    Err(Errno::EINTR) => {}
                    other => break other,
                }
            },
        };
        let mut answer = [0u8; 1];
        let received = sent.and_then(|_| loop {
            match recv(fd, &mut answer, MsgFlags::empty()) {
                Err(Errno::EINTR) => {}
                other => break other,
            }
        });
        let closed = nix::unistd::close(fd);
        match received? {
            0 => Err(Errno::EPIPE),
            _ if answer[0] != ID_MAPS_WRITTEN => Err(Errno::EPROTO),
            _ => closed,
        }
    }

    fn enter_user_ns(&mut self, ns: RawFd) -> nix::Result<()> {
        // setns(2) takes a borrowed descriptor, which a raw number becomes only in unsafe
        // code: opening the number's /proc/self/fd link gives a second one to the same
        // namespace (nsfs files may be opened so), safely.
        let file = fs::File::open(format!("/proc/self/fd/{ns}")).map_err(errno_of);
        let closed = nix::unistd::close(ns);
        nix::sched::setns(file?, CloneFlags::CLONE_NEWUSER)?;
        closed
    }

    fn mount(
        &mut self,
        source: Option<&str>,
        target: &str,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> nix::Result<()> {
        nix::mount::mount(source, target, fstype, flags, data)
    }

    fn mount_setattr(
        &mut self,
        target: &str,
        attrs: MountAttrs,
        recursive: bool,
    ) -> nix::Result<()> {
        super::fork::mount_setattr(target, attrs.bits(), recursive)
    }

    fn umount2(&mut self, target: &str, flags: MntFlags) -> nix::Result<()> {
        nix::mount::umount2(target, flags)
    }

    fn pivot_root(&mut self, new_root: &str, put_old: &str) -> nix::Result<()> {
        nix::unistd::pivot_root(new_root, put_old)
    }

    fn sethostname(&mut self, name: &str) -> nix::Result<()> {
        nix::unistd::sethostname(name)
    }

    fn chdir(&mut self, path: &str) -> nix::Result<()> {
        nix::unistd::chdir(path)
    }

    fn set_no_new_privs(&mut self) -> nix::Result<()> {
        nix::sys::prctl::set_no_new_privs()
    }

    fn mkdir(&mut self, path: &str, mode: u32) -> nix::Result<()> {
        nix::unistd::mkdir(path, nix::sys::stat::Mode::from_bits_truncate(mode))
    }

    fn create_file(&mut self, path: &str, mode: u32) -> nix::Result<()> {
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map(drop)
            .map_err(errno_of)
    }

    fn symlink(&mut self, target: &str, link: &str) -> nix::Result<()> {
        std::os::unix::fs::symlink(target, link).map_err(errno_of)
    }

    fn file_kind(&mut self, path: &str, follow: bool) -> nix::Result<Option<FileKind>> {
        let meta = if follow {
            fs::metadata(path)
        } else {
            fs::symlink_metadata(path)
        };
        match meta {
            Ok(meta) => {
                let ft = meta.file_type();
                Ok(Some(if ft.is_dir() {
                    FileKind::Dir
                } else if ft.is_file() {
                    FileKind::File
                } else if ft.is_symlink() {
                    FileKind::Symlink
                } else {
                    FileKind::Other
                }))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(errno_of(e)),
        }
    }

    fn mount_flags(&mut self, path: &str) -> nix::Result<MsFlags> {
        nix::sys::statvfs::statvfs(path).map(|st| ms_flags_of(st.flags()))
    }

    fn mountinfo(&mut self) -> nix::Result<String> {
        fs::read_to_string("/proc/self/mountinfo").map_err(errno_of)
    }

    fn set_link_up(&mut self, ifindex: i32) -> nix::Result<()> {
        super::netlink::set_link_up(ifindex)
    }

    fn open_read_write(&mut self, path: &str) -> nix::Result<()> {
        fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .map(drop)
            .map_err(errno_of)
    }

    fn run_program(&mut self, argv: &[String]) -> nix::Result<ProgramExit> {
        let (program, args) = argv.split_first().ok_or(Errno::EINVAL)?;
        // `output` waits for the end of stderr as well as for the exit: a program that
        // daemonises must point its stderr elsewhere in the child (fuse-overlayfs does, to
        // /dev/null, in fuse_daemonize).
        let out = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(errno_of)?;
        Ok(ProgramExit {
            code: out.status.code(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// One recorded call, with its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Unshare(CloneFlags),
    WriteFile {
        path: String,
        contents: String,
    },
    AwaitIdMaps(IdMapSync),
    EnterUserNs(RawFd),
    Mount {
        source: Option<String>,
        target: String,
        fstype: Option<String>,
        flags: MsFlags,
        data: Option<String>,
    },
    MountSetattr {
        target: String,
        attrs: MountAttrs,
        recursive: bool,
    },
    Umount2 {
        target: String,
        flags: MntFlags,
    },
    PivotRoot {
        new_root: String,
        put_old: String,
    },
    SetHostname(String),
    Chdir(String),
    SetNoNewPrivs,
    Mkdir {
        path: String,
        mode: u32,
    },
    CreateFile {
        path: String,
        mode: u32,
    },
    Symlink {
        target: String,
        link: String,
    },
    FileKind {
        path: String,
        follow: bool,
    },
    MountFlags(String),
    Mountinfo,
    SetLinkUp(i32),
    OpenReadWrite(String),
    RunProgram(Vec<String>),
}

impl Call {
    /// Queries change nothing; order tests usually look at the other calls only.
    pub fn is_query(&self) -> bool {
        matches!(
            self,
            Call::FileKind { .. } | Call::MountFlags(_) | Call::Mountinfo | Call::OpenReadWrite(_)
        )
    }
}

/// A fake [`Sys`]: records every call; fails chosen calls (0-based, queries included) with a
/// chosen errno; answers `file_kind` from a small model of the file system (every path is a
/// directory unless scripted or created) and `mount_flags` from the remounts it has seen.
#[derive(Debug, Default)]
pub struct RecordingSys {
    pub calls: Vec<Call>,
    fail_at: Vec<(usize, Errno)>,
    kinds: BTreeMap<String, Option<FileKind>>,
    flags: BTreeMap<String, MsFlags>,
    /// Simulates a kernel that ignores `MS_RDONLY` on remount and `MOUNT_ATTR_RDONLY` (the
    /// read-only check must catch it).
    pub ignore_read_only: bool,
    /// Simulates a kernel without mount_setattr(2) (before 5.12): it answers `ENOSYS`.
    pub no_mount_setattr: bool,
    pub mountinfo_text: String,
    /// What `run_program` answers (default: exit code 0, nothing on stderr).
    pub program_exit: Option<ProgramExit>,
}

impl RecordingSys {
    pub fn new() -> RecordingSys {
        RecordingSys::default()
    }

    /// Fails call number `n` (0-based) with `errno` (may be given for several calls).
    pub fn fail_at(mut self, n: usize, errno: Errno) -> RecordingSys {
        self.fail_at.push((n, errno));
        self
    }

    /// Scripts what `file_kind(path)` answers (`None`: missing).
    pub fn with_kind(mut self, path: &str, kind: Option<FileKind>) -> RecordingSys {
        self.kinds.insert(path.to_string(), kind);
        self
    }

    /// The calls that change something, in order.
    pub fn changes(&self) -> Vec<&Call> {
        self.calls.iter().filter(|c| !c.is_query()).collect()
    }

    fn record(&mut self, call: Call) -> nix::Result<()> {
        let index = self.calls.len();
        self.calls.push(call);
        match self.fail_at.iter().find(|(n, _)| *n == index) {
            Some((_, errno)) => Err(*errno),
            None => Ok(()),
        }
    }
}

impl Sys for RecordingSys {
    fn unshare(&mut self, flags: CloneFlags) -> nix::Result<()> {
        self.record(Call::Unshare(flags))
    }

    fn write_file(&mut self, path: &str, contents: &str) -> nix::Result<()> {
        self.record(Call::WriteFile {
            path: path.into(),
            contents: contents.into(),
        })
    }

    fn await_id_maps(&mut self, sync: IdMapSync) -> nix::Result<()> {
        self.record(Call::AwaitIdMaps(sync))
    }

    fn enter_user_ns(&mut self, ns: RawFd) -> nix::Result<()> {
        self.record(Call::EnterUserNs(ns))
    }

    fn mount(
        &mut self,
        source: Option<&str>,
        target: &str,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> nix::Result<()> {
        self.record(Call::Mount {
            source: source.map(Into::into),
            target: target.into(),
            fstype: fstype.map(Into::into),
            flags,
            data: data.map(Into::into),
        })?;
        if flags.contains(MsFlags::MS_REMOUNT) {
            let mut kept = flags - MsFlags::MS_REMOUNT - MsFlags::MS_BIND - MsFlags::MS_SILENT;
            if self.ignore_read_only {
                kept -= MsFlags::MS_RDONLY;
            }
            self.flags.insert(target.into(), kept);
        }
        Ok(())
    }

    fn mount_setattr(
        &mut self,
        target: &str,
        attrs: MountAttrs,
        recursive: bool,
    ) -> nix::Result<()> {
        self.record(Call::MountSetattr {
            target: target.into(),
            attrs,
            recursive,
        })?;
        if self.no_mount_setattr {
            return Err(Errno::ENOSYS);
        }
        let mut added = attrs.ms_flags();
        if self.ignore_read_only {
            added -= MsFlags::MS_RDONLY;
        }
        let prefix = format!("{}/", target.trim_end_matches('/'));
        let below: Vec<String> = if recursive {
            self.flags
                .keys()
                .filter(|k| k.starts_with(&prefix))
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        for path in below.into_iter().chain([target.to_string()]) {
            *self.flags.entry(path).or_insert(MsFlags::empty()) |= added;
        }
        Ok(())
    }

    fn umount2(&mut self, target: &str, flags: MntFlags) -> nix::Result<()> {
        self.record(Call::Umount2 {
            target: target.into(),
            flags,
        })
    }

    fn pivot_root(&mut self, new_root: &str, put_old: &str) -> nix::Result<()> {
        self.record(Call::PivotRoot {
            new_root: new_root.into(),
            put_old: put_old.into(),
        })
    }

    fn sethostname(&mut self, name: &str) -> nix::Result<()> {
        self.record(Call::SetHostname(name.into()))
    }

    fn chdir(&mut self, path: &str) -> nix::Result<()> {
        self.record(Call::Chdir(path.into()))
    }

    fn set_no_new_privs(&mut self) -> nix::Result<()> {
        self.record(Call::SetNoNewPrivs)
    }

    fn mkdir(&mut self, path: &str, mode: u32) -> nix::Result<()> {
        self.record(Call::Mkdir {
            path: path.into(),
            mode,
        })?;
        self.kinds.insert(path.into(), Some(FileKind::Dir));
        Ok(())
    }

    fn create_file(&mut self, path: &str, mode: u32) -> nix::Result<()> {
        self.record(Call::CreateFile {
            path: path.into(),
            mode,
        })?;
        self.kinds.insert(path.into(), Some(FileKind::File));
        Ok(())
    }

    fn symlink(&mut self, target: &str, link: &str) -> nix::Result<()> {
        self.record(Call::Symlink {
            target: target.into(),
            link: link.into(),
        })?;
        self.kinds.insert(link.into(), Some(FileKind::Symlink));
        Ok(())
    }

    fn file_kind(&mut self, path: &str, follow: bool) -> nix::Result<Option<FileKind>> {
        self.record(Call::FileKind {
            path: path.into(),
            follow,
        })?;
        Ok(self.kinds.get(path).copied().unwrap_or(Some(FileKind::Dir)))
    }

    fn mount_flags(&mut self, path: &str) -> nix::Result<MsFlags> {
        self.record(Call::MountFlags(path.into()))?;
        Ok(self.flags.get(path).copied().unwrap_or(MsFlags::empty()))
    }

    fn mountinfo(&mut self) -> nix::Result<String> {
        self.record(Call::Mountinfo)?;
        Ok(self.mountinfo_text.clone())
    }

    fn set_link_up(&mut self, ifindex: i32) -> nix::Result<()> {
        self.record(Call::SetLinkUp(ifindex))
    }

    fn open_read_write(&mut self, path: &str) -> nix::Result<()> {
        self.record(Call::OpenReadWrite(path.into()))
    }

    fn run_program(&mut self, argv: &[String]) -> nix::Result<ProgramExit> {
        self.record(Call::RunProgram(argv.to_vec()))?;
        Ok(self.program_exit.clone().unwrap_or(ProgramExit {
            code: Some(0),
            stderr: String::new(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::os::fd::IntoRawFd;
    use std::os::unix::net::UnixStream;

    use super::{IdMapSync, ID_MAPS_NOT_NEEDED};

    /// A joining helper tells a spawner that listens (it made no namespace ahead) that no maps
    /// are needed; one that entered a namespace made ahead says nothing, so that a spawner which
    /// has already written the maps and closed its end does not fail the session (EPIPE).
    #[test]
    fn a_joiner_tells_only_a_spawner_that_listens() {
        let (mut spawner, helper) = UnixStream::pair().expect("socketpair");
        IdMapSync::new(helper.into_raw_fd())
            .not_needed()
            .expect("told");
        let mut said = Vec::new();
        spawner.read_to_end(&mut said).expect("read");
        assert_eq!(said, [ID_MAPS_NOT_NEEDED]);

        let (spawner, helper) = UnixStream::pair().expect("socketpair");
        drop(spawner);
        let ns = std::fs::File::open("/proc/self/ns/user").expect("a namespace descriptor");
        let sync = IdMapSync {
            fd: helper.into_raw_fd(),
            premapped: Some(ns.into_raw_fd()),
            announce: false,
        };
        assert_eq!(sync.not_needed(), Ok(()), "the spawner's end is closed");

        // Without a namespace made ahead, a closed spawner is an error (it died).
        let (spawner, helper) = UnixStream::pair().expect("socketpair");
        drop(spawner);
        let fd = helper.into_raw_fd();
        assert!(IdMapSync::new(fd).not_needed().is_err());
    }
}

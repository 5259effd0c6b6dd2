//! Which ids a rootless sandbox maps, and why not more (user_namespaces(7), subuid(5),
//! newuidmap(1)).
//!
//! On its own, an unprivileged process may map only its own uid and gid into a new user
//! namespace. Package managers need more: apt drops to its `_apt` user, dpkg chowns files to
//! system users. A full range needs two things from the host: a range granted to the user in
//! `/etc/subuid` and `/etc/subgid`, and the privileged helpers `newuidmap` and `newgidmap`
//! (package `uidmap`), which check the grant and write the maps from outside the namespace.
//!
//! [`detect`] chooses: real root keeps [`IdMapping::HostRoot`]; when everything is present the
//! mapping is [`IdMapping::Subordinate`] (0 is the caller, 1.. the granted range); otherwise
//! [`IdMapping::SingleId`], with every reason and its fix in [`IdMapChoice::fallback`] for
//! `doctor` and for the backend's warning. [`choose`] is the pure decision over what [`Host`]
//! gathered, so the rules are unit-tested against fixture files.
//!
//! The range: the first line naming the user (by name or numeric uid) whose range holds at
//! least [`MIN_RANGE`] ids, mapped whole from inside id 1. 65534 is the smallest range that
//! still maps `nobody`/`nogroup` (65534), the group of Debian's `_apt`; `useradd` grants 65536
//! (`SUB_UID_COUNT`). Ranges served by libsubid plugins (nsswitch `subid:`) are not read.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::builder::IdMapping;
use super::plan::IdRange;

/// The smallest subordinate range used (see the module doc).
pub const MIN_RANGE: u32 = 65534;

pub const SUBUID: &str = "/etc/subuid";
pub const SUBGID: &str = "/etc/subgid";

/// Where the helpers are looked for when `PATH` is unset.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// capability.h: the bits newuidmap and newgidmap need.
const CAP_SETGID: u32 = 6;
const CAP_SETUID: u32 = 7;

/// One `name:start:count` line of /etc/subuid or /etc/subgid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubidRange {
    pub start: u32,
    pub count: u32,
}

/// A line that names the user: its number (1-based) and the range, or why it is unusable.
pub type SubidLine = (usize, Result<SubidRange, &'static str>);

/// The lines of a subuid(5)/subgid(5) file that name `user` or the numeric `uid`, in file
/// order. Comments (`#`) and blank lines are skipped; lines for other users are not checked.
pub fn parse_subid(text: &str, user: Option<&str>, uid: u32) -> Vec<SubidLine> {
    let uid = uid.to_string();
    let mut out = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split(':');
        let name = fields.next().unwrap_or_default();
        if name != uid && Some(name) != user {
            continue;
        }
        out.push((index + 1, parse_range(fields.collect())));
    }
    out
}

fn parse_range(fields: Vec<&str>) -> Result<SubidRange, &'static str> {
    let [start, count] = fields[..] else {
        return Err("not `name:start:count`");
    };
    let start: u32 = start.parse().map_err(|_| "start is not a number")?;
    let count: u32 = count.parse().map_err(|_| "count is not a number")?;
    if count == 0 {
        return Err("count is 0");
    }
    if u64::from(start) + u64::from(count) > 1 << 32 {
        return Err("the range ends past the largest id");
    }
    Ok(SubidRange { start, count })
}

/// The first usable range of at least [`MIN_RANGE`] ids, as the map line `1 start count`; or
/// why there is none (`file` names the file in the message).
pub fn choose_range(file: &str, lines: &[SubidLine]) -> Result<IdRange, String> {
    if let Some(range) = lines.iter().find_map(|(_, r)| match r {
        Ok(r) if r.count >= MIN_RANGE => Some(*r),
        _ => None,
    }) {
        return Ok(IdRange {
            inside: 1,
            outside: range.start,
            count: range.count,
        });
    }
    if lines.is_empty() {
        return Err(format!("{file} grants this user no range"));
    }
    let found: Vec<String> = lines
        .iter()
        .map(|(n, r)| match r {
            Ok(r) => format!("line {n}: {} ids", r.count),
            Err(why) => format!("line {n}: {why}"),
        })
        .collect();
    Err(format!(
        "{file} grants this user no range of at least {MIN_RANGE} ids ({})",
        found.join(", ")
    ))
}

/// What decides whether a helper binary can write maps: found by [`find_tool`], judged by
/// [`tool_problem`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolFile {
    pub path: PathBuf,
    pub owner: u32,
    /// `st_mode`, permission and setuid bits included.
    pub mode: u32,
    /// The `security.capability` xattr (file capabilities), if any.
    pub capability: Option<Vec<u8>>,
    /// On a `nosuid` mount, where neither setuid nor file capabilities take effect.
    pub nosuid_mount: bool,
}

impl ToolFile {
    fn read(path: &Path) -> io::Result<ToolFile> {
        let meta = fs::metadata(path)?;
        let capability = xattr::get(path, "security.capability")?;
        let nosuid_mount = nix::sys::statvfs::statvfs(path)
            .map_err(io::Error::from)?
            .flags()
            .contains(nix::sys::statvfs::FsFlags::ST_NOSUID);
        Ok(ToolFile {
            path: path.to_path_buf(),
            owner: meta.uid(),
            mode: meta.mode(),
            capability,
            nosuid_mount,
        })
    }
}

/// Why `tool` cannot gain the privilege to write id maps (`None`: it can). It must be
/// executable and either setuid root or carry file capabilities with `cap` permitted and the
/// effective flag (capabilities(7), "File capabilities"); neither works on a nosuid mount.
pub fn tool_problem(tool: &ToolFile, cap: u32) -> Option<String> {
    let shown = tool.path.display();
    if tool.mode & 0o111 == 0 {
        return Some(format!("{shown} is not executable"));
    }
    let setuid_root = tool.owner == 0 && tool.mode & 0o4000 != 0;
    let capable = tool
        .capability
        .as_deref()
        .is_some_and(|raw| file_caps_grant(raw, cap));
    if !setuid_root && !capable {
        return Some(format!(
            "{shown} is neither setuid root nor has file capabilities, so it cannot write id \
             maps"
        ));
    }
    if tool.nosuid_mount {
        return Some(format!(
            "{shown} is on a nosuid mount, where setuid and file capabilities have no effect"
        ));
    }
    None
}

/// Whether a `security.capability` value (linux/capability.h `vfs_cap_data`, revisions 1–3)
/// has `cap` permitted with the effective flag set. Revision 3 capabilities count only for the
/// namespace whose root is `rootid`: on the host that must be 0.
fn file_caps_grant(raw: &[u8], cap: u32) -> bool {
    let word = |i: usize| {
        raw.get(i * 4..i * 4 + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let Some(magic) = word(0) else {
        return false;
    };
    let revision = magic & 0xff00_0000;
    let effective = magic & 0x1 != 0;
    let valid = match revision {
        0x0100_0000 => raw.len() == 12,
        0x0200_0000 => raw.len() == 20,
        0x0300_0000 => raw.len() == 24 && word(5) == Some(0),
        _ => false,
    };
    let permitted = word(1).unwrap_or(0);
    valid && effective && cap < 32 && permitted & (1 << cap) != 0
}

/// The first `name` on `path_var` (absolute entries only), judged by [`tool_problem`].
pub fn find_tool(name: &str, path_var: Option<&OsStr>, cap: u32) -> Result<PathBuf, String> {
    let path_var = path_var.unwrap_or(OsStr::new(DEFAULT_PATH));
    let candidate = std::env::split_paths(path_var)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(name))
        .find(|p| p.is_file());
    let Some(path) = candidate else {
        return Err(format!("{name} is not on PATH"));
    };
    let tool =
        ToolFile::read(&path).map_err(|e| format!("cannot inspect {}: {e}", path.display()))?;
    match tool_problem(&tool, cap) {
        None => Ok(path),
        Some(problem) => Err(problem),
    }
}

/// The two helpers, found and usable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdMapTools {
    pub newuidmap: PathBuf,
    pub newgidmap: PathBuf,
}

/// newuidmap and newgidmap from this process's `PATH`.
pub fn tools() -> Result<IdMapTools, String> {
    let path = std::env::var_os("PATH");
    let newuidmap = find_tool("newuidmap", path.as_deref(), CAP_SETUID);
    let newgidmap = find_tool("newgidmap", path.as_deref(), CAP_SETGID);
    match (newuidmap, newgidmap) {
        (Ok(newuidmap), Ok(newgidmap)) => Ok(IdMapTools {
            newuidmap,
            newgidmap,
        }),
        (Err(a), Err(b)) if a.ends_with("not on PATH") && b.ends_with("not on PATH") => {
            Err("newuidmap and newgidmap are not on PATH".to_string())
        }
        (Err(a), Err(b)) => Err(format!("{a}; {b}")),
        (Err(why), _) | (_, Err(why)) => Err(why),
    }
}

/// What [`choose`] decides from.
#[derive(Debug, Clone)]
pub struct Host {
    pub euid: u32,
    pub uid: u32,
    pub gid: u32,
    /// The user's name, if the passwd database knows the uid.
    pub user: Option<String>,
    /// The text of /etc/subuid, or why it could not be read.
    pub subuid: Result<String, String>,
    pub subgid: Result<String, String>,
    pub tools: Result<IdMapTools, String>,
    /// `NoNewPrivs` of this process: setuid helpers then gain nothing.
    pub no_new_privs: bool,
}

impl Host {
    /// This process's view. Reads two small files and looks at two binaries: cheap enough for
    /// every session start.
    pub fn current() -> Host {
        let uid = nix::unistd::getuid();
        let read = |path: &str| fs::read_to_string(path).map_err(|e| format!("{path}: {e}"));
        Host {
            euid: nix::unistd::geteuid().as_raw(),
            uid: uid.as_raw(),
            gid: nix::unistd::getgid().as_raw(),
            user: nix::unistd::User::from_uid(uid)
                .ok()
                .flatten()
                .map(|u| u.name),
            subuid: read(SUBUID),
            subgid: read(SUBGID),
            tools: tools(),
            no_new_privs: no_new_privs(),
        }
    }
}

/// `NoNewPrivs:` of /proc/self/status (proc(5)); unreadable counts as not set, and the
/// helpers' own failure then says what is wrong.
pub fn no_new_privs() -> bool {
    fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .any(|l| l.starts_with("NoNewPrivs:") && l.split_whitespace().nth(1) == Some("1"))
    })
}

/// Why a full range is not used, and what fixes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fallback {
    pub why: String,
    pub fix: String,
}

/// The mapping for a sandbox of this user, and why it is not a full range if it is not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdMapChoice {
    pub mapping: IdMapping,
    pub fallback: Option<Fallback>,
    /// The tools that write a `Subordinate` mapping's maps, as found.
    pub tools: Option<IdMapTools>,
}

impl IdMapChoice {
    /// The backend's one-line warning when it falls back to a single id.
    pub fn warning(&self) -> Option<String> {
        let f = self.fallback.as_ref()?;
        Some(format!(
            "namespace backend: only your own uid and gid are mapped in the sandbox ({}), so \
             programs that switch users (apt's _apt, package scripts) will fail; fix: {}",
            f.why, f.fix
        ))
    }

    /// One line for `doctor`.
    pub fn describe(&self) -> String {
        match (&self.mapping, &self.fallback) {
            (IdMapping::HostRoot, _) => "ids: real root, no user namespace".to_string(),
            (
                IdMapping::Subordinate {
                    sub_uid, sub_gid, ..
                },
                _,
            ) => format!(
                "ids: full range (uids {}, gids {}, written by newuidmap/newgidmap)",
                span(sub_uid),
                span(sub_gid)
            ),
            (_, Some(f)) => format!(
                "ids: only your own uid and gid ({}; programs that switch users will fail; fix: \
                 {})",
                f.why, f.fix
            ),
            (_, None) => "ids: only your own uid and gid".to_string(),
        }
    }
}

/// `start-end` of a map line's host ids.
fn span(r: &IdRange) -> String {
    let end = u64::from(r.outside) + u64::from(r.count) - 1;
    format!("{}-{end}", r.outside)
}

/// The decision (see the module doc). Every missing piece is reported, not only the first.
pub fn choose(host: &Host) -> IdMapChoice {
    if host.euid == 0 {
        return IdMapChoice {
            mapping: IdMapping::HostRoot,
            fallback: None,
            tools: None,
        };
    }
    let user = host.user.as_deref();
    let who = user.map_or_else(|| host.uid.to_string(), str::to_string);
    let grant = format!(
        "grant a range: `usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {who}` \
         as root"
    );
    let mut why = Vec::new();
    let mut fix = Vec::new();
    let mut range = |file: &str, text: &Result<String, String>| {
        let chosen = text
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|t| choose_range(file, &parse_subid(t, user, host.uid)));
        if let Err(e) = &chosen {
            why.push(e.clone());
            if !fix.contains(&grant) {
                fix.push(grant.clone());
            }
        }
        chosen.ok()
    };
    let sub_uid = range(SUBUID, &host.subuid);
    let sub_gid = range(SUBGID, &host.subgid);
    if let Err(e) = &host.tools {
        why.push(e.clone());
        fix.push(
            "install the uidmap package (Debian/Ubuntu; shadow-utils on Fedora), whose \
             newuidmap and newgidmap are setuid root"
                .to_string(),
        );
    }
    if host.no_new_privs {
        why.push("this process runs with no_new_privs, so setuid newuidmap gains nothing".into());
        fix.push("start karapace-tui outside a no_new_privs context".into());
    }
    let single = IdMapping::SingleId {
        uid: host.uid,
        gid: host.gid,
    };
    match (sub_uid, sub_gid) {
        (Some(sub_uid), Some(sub_gid)) if why.is_empty() => IdMapChoice {
            mapping: IdMapping::Subordinate {
                uid: host.uid,
                gid: host.gid,
                sub_uid,
                sub_gid,
            },
            fallback: None,
            tools: host.tools.clone().ok(),
        },
        _ => IdMapChoice {
            mapping: single,
            fallback: Some(Fallback {
                why: why.join("; "),
                fix: fix.join("; "),
            }),
            tools: None,
        },
    }
}

/// [`choose`] for this process.
pub fn detect() -> IdMapChoice {
    // As real root no user namespace is made: nothing of the host needs reading (passwd,
    // subuid, subgid, the map tools, /proc/self/status), which every `exec` would pay for.
    if nix::unistd::geteuid().is_root() {
        return IdMapChoice {
            mapping: IdMapping::HostRoot,
            fallback: None,
            tools: None,
        };
    }
    choose(&Host::current())
}

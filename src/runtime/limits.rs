//! `[runtime.resource_limits]` for the namespace backend: what this host can enforce, as the
//! plan's [`Limits`], and a plain warning for every limit it cannot (never a silent no-op).
//!
//! | limit | enforced by | where it cannot be |
//! |---|---|---|
//! | `memory_limit_mb` | cgroup v2 `memory.max` (+ `memory.swap.max` = 0); as root on v1, `memory.limit_in_bytes` (+ `memory.memsw.limit_in_bytes` the same) | no delegated cgroup v2 with `memory` (rootless), no writable hierarchy with it (root): warned. Never `RLIMIT_AS`, which limits each process's address space, not the memory the environment uses, and breaks programs that reserve large mappings (JVMs, Go, sanitizers) |
//! | `cpu_shares` | cgroup v2 `cpu.weight` ([`cpu_weight`]); as root on v1, `cpu.shares` as it is | no `cpu` controller: warned |
//! | `pids_limit` | cgroup v2 `pids.max`; as root on v1, `pids.max` | rootless on Linux ≥ 5.14: `RLIMIT_NPROC`, which counts the processes of one user id *in the environment's own user namespace* (ucounts), so it is approximate (per id inside, not per environment) and said so; as real root without a pids hierarchy it is not enforced at all (root is exempt from `RLIMIT_NPROC`, setrlimit(2)): warned |
//! | `open_files` | `RLIMIT_NOFILE` | everywhere; rootless above the user's hard limit it is lowered to that limit, with a warning |
//!
//! Each controller goes where it lives: the cgroup v2 hierarchy when it is there (and, rootless,
//! delegated), else, as real root, its cgroup v1 hierarchy. The cgroups (see `sandbox::limits`)
//! are `<parent>/karapace-<short id>`, where `<parent>` is what `prereq::cgroup::placement`
//! found for v2 and each v1 hierarchy's root (`prereq::cgroup::v1_hierarchy` says why);
//! their paths are recorded in the environment's directory (`cgroup`, one a line), so `stop`
//! and `destroy` can remove what an ended session left behind.
//!
//! Nothing here runs, and no file is read, when the lock sets no limit.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::backend::BackendError;
use crate::lock::LockedRuntime;
use crate::prereq::cgroup::{placement, v1_hierarchies, v1_hierarchy, Placement};
use crate::sandbox::limits::{cpu_weight, CgroupLimits, Limits, Rlimit, RlimitResource};
use crate::types::BackendKind;

/// The file in an environment's directory that names its cgroup.
const RECORD: &str = "cgroup";

/// What the host offers, found only as far as the set limits need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFacts {
    /// `None` when no limit needs a cgroup.
    pub placement: Option<Placement>,
    /// As real root, the cgroup v1 hierarchy (its mount point) of each controller a limit
    /// needs and the v2 placement lacks.
    pub v1: Vec<(String, PathBuf)>,
    /// Real root: no user namespace, no `RLIMIT_NPROC`.
    pub root: bool,
    /// The hard `RLIMIT_NOFILE` of this process (`u64::MAX`: unlimited).
    pub nofile_hard: u64,
    /// Linux ≥ 5.14, where `RLIMIT_NPROC` is counted per user namespace.
    pub nproc_per_userns: bool,
}

impl HostFacts {
    /// This host, for `runtime`'s limits: each probe only when a limit needs it.
    pub fn here(runtime: &LockedRuntime) -> HostFacts {
        let root = nix::unistd::geteuid().is_root();
        let needs_cgroup = runtime.memory_limit_mb.is_some()
            || runtime.cpu_shares.is_some()
            || runtime.pids_limit.is_some();
        let host = crate::prereq::SystemHost::new();
        let placement =
            needs_cgroup.then(|| placement(&host, nix::unistd::getuid().as_raw(), root));
        let mut v1 = Vec::new();
        if let (true, Some(v2)) = (root, &placement) {
            let wanted = [
                ("memory", runtime.memory_limit_mb),
                ("cpu", runtime.cpu_shares),
                ("pids", runtime.pids_limit),
            ];
            let missing: Vec<&str> = wanted
                .iter()
                .filter(|(c, limit)| limit.is_some() && !v2.has(c))
                .map(|(c, _)| *c)
                .collect();
            if !missing.is_empty() {
                let hierarchies = v1_hierarchies(&host);
                for controller in missing {
                    if let Some(mount) = v1_hierarchy(&host, &hierarchies, controller) {
                        v1.push((controller.to_string(), mount));
                    }
                }
            }
        }
        let nofile_hard = match runtime.open_files {
            Some(_) => nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
                .map_or(u64::MAX, |(_, hard)| hard),
            None => u64::MAX,
        };
        let nproc_per_userns = runtime.pids_limit.is_some()
            && fs::read_to_string("/proc/sys/kernel/osrelease")
                .is_ok_and(|release| kernel_at_least(&release, (5, 14)));
        HostFacts {
            placement,
            v1,
            root,
            nofile_hard,
            nproc_per_userns,
        }
    }
}

/// Whether a kernel release string (`6.1.0-18-amd64`) is at least `min`.
fn kernel_at_least(release: &str, min: (u32, u32)) -> bool {
    let mut parts = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) >= min,
        _ => false,
    }
}

/// The plan's limits and what to tell the user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Enforcement {
    pub limits: Limits,
    pub warnings: Vec<String>,
}

fn not_enforced(name: &str, value: u64, why: &str) -> String {
    format!(
        "namespace backend: resource limit {name} = {value} is NOT enforced: {why} \
         (`karapace-tui doctor` shows how to fix it)"
    )
}

fn empty_cgroup(v1: Option<&str>, hierarchy: &Path, parent: &Path, short_id: &str) -> CgroupLimits {
    CgroupLimits {
        v1: v1.map(str::to_string),
        hierarchy: hierarchy.display().to_string(),
        dir: parent
            .join(format!("karapace-{short_id}"))
            .display()
            .to_string(),
        enable: Vec::new(),
        memory_max: None,
        cpu_weight: None,
        cpu_shares: None,
        pids_max: None,
    }
}

/// Decides, for the lock's limits and this host's facts, what the sandbox enforces.
pub fn enforcement(runtime: &LockedRuntime, short_id: &str, host: &HostFacts) -> Enforcement {
    let mut out = Enforcement::default();
    let mut v2: Option<CgroupLimits> = None;
    let mut v1: Vec<CgroupLimits> = Vec::new();
    let wanted = [
        ("memory_limit_mb", runtime.memory_limit_mb, "memory"),
        ("cpu_shares", runtime.cpu_shares, "cpu"),
        ("pids_limit", runtime.pids_limit, "pids"),
    ];
    for (name, value, controller) in wanted {
        let Some(value) = value else { continue };
        if let Some(Placement::Usable {
            hierarchy,
            parent,
            enabled,
            ..
        }) = host.placement.as_ref().filter(|p| p.has(controller))
        {
            let c = v2.get_or_insert_with(|| empty_cgroup(None, hierarchy, parent, short_id));
            if !enabled.iter().any(|c| c == controller) {
                c.enable.push(controller.to_string());
            }
            match controller {
                "memory" => c.memory_max = Some(value << 20),
                "cpu" => c.cpu_weight = Some(cpu_weight(value)),
                _ => c.pids_max = Some(value),
            }
            continue;
        }
        if let Some((_, mount)) = host.v1.iter().find(|(c, _)| c == controller) {
            // Co-mounted controllers (`cpu,cpuacct`) share one hierarchy and one cgroup.
            let index = match v1.iter().position(|c| Path::new(&c.hierarchy) == mount) {
                Some(index) => index,
                None => {
                    v1.push(empty_cgroup(Some(controller), mount, mount, short_id));
                    v1.len() - 1
                }
            };
            let c = &mut v1[index];
            match controller {
                "memory" => c.memory_max = Some(value << 20),
                // v1's own unit: no mapping.
                "cpu" => c.cpu_shares = Some(value),
                _ => c.pids_max = Some(value),
            }
            continue;
        }
        let why = match &host.placement {
            Some(Placement::Usable { parent, .. }) if host.root => format!(
                "the {controller} controller is neither available in {} nor on a cgroup v1 \
                 hierarchy this process may write",
                parent.display()
            ),
            Some(Placement::Usable { parent, .. }) => format!(
                "the {controller} controller is not enabled for {}",
                parent.display()
            ),
            Some(Placement::Unusable { why, .. }) => why.clone(),
            None => "no cgroup was looked for".to_string(),
        };
        if controller == "pids" && !host.root && host.nproc_per_userns {
            out.limits.rlimits.push(Rlimit {
                resource: RlimitResource::Nproc,
                limit: value,
            });
            out.warnings.push(format!(
                "namespace backend: resource limit pids_limit = {value} is only approximated: \
                 without a cgroup ({why}) it is RLIMIT_NPROC, which counts the processes of \
                 each user id inside the environment separately"
            ));
            continue;
        }
        let why = if controller == "pids" && host.root {
            format!("{why}; RLIMIT_NPROC does not bind root")
        } else {
            why
        };
        out.warnings.push(not_enforced(name, value, &why));
    }
    out.limits.cgroups = v2.into_iter().chain(v1).collect();
    if let Some(files) = runtime.open_files {
        let limit = if !host.root && files > host.nofile_hard {
            out.warnings.push(format!(
                "namespace backend: resource limit open_files = {files} is above this user's \
                 hard limit ({}, `ulimit -Hn`), which only root may raise: the environment gets \
                 {}",
                host.nofile_hard, host.nofile_hard
            ));
            host.nofile_hard
        } else {
            files
        };
        out.limits.rlimits.push(Rlimit {
            resource: RlimitResource::Nofile,
            limit,
        });
    }
    out
}

/// Records the environment's cgroups in its directory, one path a line (written only when
/// they change), for [`remove_leftover`].
pub fn record(env_dir: &Path, cgroups: &[CgroupLimits]) -> Result<(), BackendError> {
    let path = env_dir.join(RECORD);
    let text: String = cgroups.iter().map(|c| format!("{}\n", c.dir)).collect();
    if fs::read_to_string(&path).is_ok_and(|old| old == text) {
        return Ok(());
    }
    fs::write(&path, &text).map_err(BackendError::io_at(
        BackendKind::Namespace,
        "record the environment's cgroups in",
        &path,
    ))
}

/// Removes the cgroups a session left (an init that lingered for joined sessions ends after
/// the last of them left them), once nothing of the environment runs. EBUSY: a session's
/// helper is still on its way out, and removes it itself.
pub fn remove_leftover(env_dir: &Path) -> Result<(), BackendError> {
    let record = env_dir.join(RECORD);
    let text = match fs::read_to_string(&record) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(BackendError::io_at(
                BackendKind::Namespace,
                "read the environment's cgroups from",
                &record,
            )(e))
        }
    };
    for dir in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        match fs::remove_dir(dir) {
            Ok(()) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::EBUSY)) => {}
            Err(e) => {
                return Err(BackendError::io_at(
                    BackendKind::Namespace,
                    "remove the environment's cgroup",
                    Path::new(dir),
                )(e))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime(
        memory: Option<u64>,
        cpu: Option<u64>,
        pids: Option<u64>,
        files: Option<u64>,
    ) -> LockedRuntime {
        LockedRuntime {
            backend: BackendKind::Namespace,
            network_isolation: false,
            cpu_shares: cpu,
            memory_limit_mb: memory,
            pids_limit: pids,
            open_files: files,
        }
    }

    fn delegated(enabled: &[&str], can_enable: &[&str]) -> HostFacts {
        HostFacts {
            placement: Some(Placement::Usable {
                hierarchy: "/sys/fs/cgroup".into(),
                parent: "/sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service".into(),
                enabled: enabled.iter().map(|s| s.to_string()).collect(),
                can_enable: can_enable.iter().map(|s| s.to_string()).collect(),
            }),
            v1: Vec::new(),
            root: false,
            nofile_hard: 524_288,
            nproc_per_userns: true,
        }
    }

    #[test]
    fn no_limits_need_nothing() {
        let e = enforcement(
            &runtime(None, None, None, None),
            "abc",
            &delegated(&[], &[]),
        );
        assert_eq!(e, Enforcement::default());
        assert!(e.limits.is_empty());
    }

    #[test]
    fn a_delegated_cgroup_takes_memory_cpu_and_pids() {
        let e = enforcement(
            &runtime(Some(32), Some(1024), Some(20), Some(64)),
            "abc",
            &delegated(&["cpu", "memory", "pids"], &[]),
        );
        assert!(e.warnings.is_empty(), "{:?}", e.warnings);
        assert_eq!(
            e.limits.cgroups,
            [CgroupLimits {
                v1: None,
                hierarchy: "/sys/fs/cgroup".into(),
                dir: "/sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service/karapace-abc"
                    .into(),
                enable: Vec::new(),
                memory_max: Some(32 << 20),
                cpu_weight: Some(100),
                cpu_shares: None,
                pids_max: Some(20),
            }]
        );
        assert_eq!(
            e.limits.rlimits,
            [Rlimit {
                resource: RlimitResource::Nofile,
                limit: 64
            }]
        );
    }

    #[test]
    fn as_root_controllers_are_enabled_and_pids_without_a_cgroup_is_not_enforced() {
        let mut host = delegated(&["memory"], &["pids"]);
        host.root = true;
        let e = enforcement(&runtime(Some(32), None, Some(20), None), "abc", &host);
        let c = &e.limits.cgroups[0];
        assert_eq!(c.enable, ["pids"]);
        assert_eq!(c.pids_max, Some(20));

        host.placement = Some(Placement::Unusable {
            why: "the host uses hybrid cgroups".into(),
            unified: false,
        });
        let e = enforcement(
            &runtime(Some(32), Some(2), Some(20), Some(2_000_000)),
            "abc",
            &host,
        );
        assert_eq!(e.limits.cgroups, []);
        assert_eq!(e.warnings.len(), 3, "{:?}", e.warnings);
        for (warning, name) in
            e.warnings
                .iter()
                .zip(["memory_limit_mb = 32", "cpu_shares = 2", "pids_limit = 20"])
        {
            assert!(
                warning.contains(&format!("{name} is NOT enforced: the host uses hybrid")),
                "{warning}"
            );
        }
        assert!(e.warnings[2].contains("RLIMIT_NPROC does not bind root"));
        // Root may raise its hard limit.
        assert_eq!(e.limits.rlimits[0].limit, 2_000_000);
    }

    #[test]
    fn rootless_without_a_cgroup_pids_becomes_rlimit_nproc_and_files_are_capped() {
        let mut host = delegated(&[], &[]);
        host.placement = Some(Placement::Unusable {
            why: "this process runs outside user@1000.service".into(),
            unified: true,
        });
        let e = enforcement(
            &runtime(None, None, Some(20), Some(1_048_576)),
            "abc",
            &host,
        );
        assert_eq!(
            e.limits.rlimits,
            [
                Rlimit {
                    resource: RlimitResource::Nproc,
                    limit: 20
                },
                Rlimit {
                    resource: RlimitResource::Nofile,
                    limit: 524_288
                }
            ]
        );
        assert!(e.warnings[0].contains("pids_limit = 20 is only approximated"));
        assert!(
            e.warnings[1].contains("open_files = 1048576 is above this user's hard limit (524288")
        );
        // Before Linux 5.14, RLIMIT_NPROC counted every process of the user on the host.
        host.nproc_per_userns = false;
        let e = enforcement(&runtime(None, None, Some(20), None), "abc", &host);
        assert!(e.limits.rlimits.is_empty());
        assert!(e.warnings[0].contains("pids_limit = 20 is NOT enforced"));
    }

    /// Root on a hybrid host: v2 holds no controller, each has its own v1 hierarchy (cpu
    /// co-mounted with cpuacct, as systemd does).
    fn hybrid_root() -> HostFacts {
        HostFacts {
            placement: Some(Placement::Usable {
                hierarchy: "/sys/fs/cgroup/unified".into(),
                parent: "/sys/fs/cgroup/unified".into(),
                enabled: Vec::new(),
                can_enable: Vec::new(),
            }),
            v1: vec![
                ("memory".into(), "/sys/fs/cgroup/memory".into()),
                ("cpu".into(), "/sys/fs/cgroup/cpu,cpuacct".into()),
                ("pids".into(), "/sys/fs/cgroup/pids".into()),
            ],
            root: true,
            nofile_hard: 524_288,
            nproc_per_userns: true,
        }
    }

    #[test]
    fn as_root_on_hybrid_cgroups_each_controller_gets_its_v1_hierarchy() {
        let e = enforcement(
            &runtime(Some(32), Some(512), Some(20), None),
            "abc",
            &hybrid_root(),
        );
        assert!(e.warnings.is_empty(), "{:?}", e.warnings);
        let v1 = |controller: &str, mount: &str| CgroupLimits {
            v1: Some(controller.into()),
            hierarchy: mount.into(),
            dir: format!("{mount}/karapace-abc"),
            enable: Vec::new(),
            memory_max: None,
            cpu_weight: None,
            cpu_shares: None,
            pids_max: None,
        };
        assert_eq!(
            e.limits.cgroups,
            [
                CgroupLimits {
                    memory_max: Some(32 << 20),
                    ..v1("memory", "/sys/fs/cgroup/memory")
                },
                CgroupLimits {
                    cpu_shares: Some(512),
                    ..v1("cpu", "/sys/fs/cgroup/cpu,cpuacct")
                },
                CgroupLimits {
                    pids_max: Some(20),
                    ..v1("pids", "/sys/fs/cgroup/pids")
                },
            ]
        );
    }

    #[test]
    fn mixed_hosts_put_each_controller_where_it_lives() {
        // memory on v2 (enabled there by root), pids on v1, cpu nowhere writable.
        let mut host = hybrid_root();
        host.placement = Some(Placement::Usable {
            hierarchy: "/sys/fs/cgroup/unified".into(),
            parent: "/sys/fs/cgroup/unified".into(),
            enabled: Vec::new(),
            can_enable: vec!["memory".into()],
        });
        host.v1 = vec![("pids".into(), "/sys/fs/cgroup/pids".into())];
        let e = enforcement(&runtime(Some(32), Some(512), Some(20), None), "abc", &host);
        let places: Vec<(Option<&str>, &str)> = e
            .limits
            .cgroups
            .iter()
            .map(|c| (c.v1.as_deref(), c.dir.as_str()))
            .collect();
        assert_eq!(
            places,
            [
                (None, "/sys/fs/cgroup/unified/karapace-abc"),
                (Some("pids"), "/sys/fs/cgroup/pids/karapace-abc"),
            ]
        );
        assert_eq!(e.limits.cgroups[0].enable, ["memory"]);
        assert_eq!(e.warnings.len(), 1, "{:?}", e.warnings);
        assert!(
            e.warnings[0].contains(
                "cpu_shares = 512 is NOT enforced: the cpu controller is neither available in \
                 /sys/fs/cgroup/unified nor on a cgroup v1 hierarchy"
            ),
            "{:?}",
            e.warnings
        );
    }

    #[test]
    fn kernel_releases_are_compared_by_major_and_minor() {
        assert!(kernel_at_least("6.18.44-fc-v657\n", (5, 14)));
        assert!(kernel_at_least("5.14.0-362.el9.x86_64", (5, 14)));
        assert!(!kernel_at_least("5.10.0-28-amd64", (5, 14)));
        assert!(!kernel_at_least("4.19.0", (5, 14)));
        assert!(!kernel_at_least("garbage", (5, 14)));
    }

    #[test]
    fn the_record_names_the_cgroup_and_a_missing_one_is_no_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        remove_leftover(dir.path()).expect("nothing recorded");
        let cgroups = [
            empty_cgroup(None, Path::new("/"), dir.path(), "gone"),
            empty_cgroup(Some("memory"), Path::new("/"), dir.path(), "also"),
        ];
        record(dir.path(), &cgroups).expect("record");
        assert_eq!(
            fs::read_to_string(dir.path().join(RECORD)).expect("read"),
            format!(
                "{}\n{}\n",
                dir.path().join("karapace-gone").display(),
                dir.path().join("karapace-also").display()
            )
        );
        remove_leftover(dir.path()).expect("ENOENT is fine");
        let gone = dir.path().join("karapace-gone");
        let also = dir.path().join("karapace-also");
        fs::create_dir(&gone).expect("mkdir");
        fs::create_dir(&also).expect("mkdir");
        remove_leftover(dir.path()).expect("removed");
        assert!(!gone.exists() && !also.exists());
    }
}

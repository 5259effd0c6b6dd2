//! Deterministic states for the unit and screen tests: fixed ids, paths and backends, so
//! snapshots need no filters.

use std::path::PathBuf;

use crossterm::event::{Event as TermEvent, KeyCode, KeyEvent, KeyModifiers};
use ratatui::layout::Rect;

use super::jobs::{Job, JobOutput};
use super::{App, AppEvent, Context};
use crate::engine::{EnvDetails, EnvSummary, StateView};
use crate::integration::{State, Status};
use crate::lock::{LockFile, LockedBase, LockedMount, LockedPackage, LockedRuntime};
use crate::types::{BackendKind, EnvId};
use crate::ui::theme::Theme;

/// An id made of one repeated byte: `0a0a0a…`.
pub fn id(n: u8) -> EnvId {
    format!("{n:02x}")
        .repeat(32)
        .parse()
        .expect("64 hex characters")
}

pub fn env(name: &str, n: u8, state: StateView, sessions: usize) -> EnvSummary {
    let id = id(n);
    EnvSummary {
        short_id: id.short().to_string(),
        id,
        name: Some(name.to_string()),
        state,
        backend: if n.is_multiple_of(3) {
            BackendKind::Namespace
        } else {
            BackendKind::Mock
        },
        image: [
            "alias:debian/12",
            "alias:opensuse/tumbleweed",
            "alias:ubuntu/24.04",
        ][usize::from(n) % 3]
            .to_string(),
        sessions,
        manifest: Some(PathBuf::from(format!(
            "/home/user/src/{name}/karapace.toml"
        ))),
        created_at: 1_700_000_000 + u64::from(n),
        updated_at: 1_700_000_000 + u64::from(n) * 10,
    }
}

/// Four environments in every state.
pub fn envs() -> Vec<EnvSummary> {
    vec![
        env("api", 1, StateView::Running, 2),
        env("docs", 2, StateView::Frozen, 0),
        env("legacy", 3, StateView::Archived, 0),
        env("web", 4, StateView::Built, 0),
    ]
}

pub fn details(env: &EnvSummary) -> EnvDetails {
    EnvDetails {
        summary: env.clone(),
        path: PathBuf::from(format!("/home/user/.local/share/karapace/envs/{}", env.id)),
        disk_usage_bytes: 3 * 1024 * 1024 + 512 * 1024,
        layers: Vec::new(),
        archive: None,
        lock: LockFile {
            lock_version: 1,
            env_id: env.id.clone(),
            short_id: env.short_id.clone(),
            base: LockedBase {
                image: env.image.clone(),
                source: "mock".into(),
                build: "mock-epoch-1".into(),
                archive_sha256: "ab".repeat(32),
                archive_size: 1024,
                tree_digest: "cd".repeat(32),
                server: None,
                item_path: None,
            },
            packages: vec![
                LockedPackage {
                    name: "git".into(),
                    version: "2.43.0-1".into(),
                },
                LockedPackage {
                    name: "ripgrep".into(),
                    version: "14.1.0-2".into(),
                },
            ],
            dependencies: None,
            gui_apps: Vec::new(),
            gpu: false,
            audio: true,
            mounts: vec![LockedMount {
                label: "src".into(),
                host_path: "/home/user/src".into(),
                container_path: "/src".into(),
                read_only: false,
            }],
            runtime: LockedRuntime {
                backend: env.backend,
                network_isolation: false,
                cpu_shares: None,
                memory_limit_mb: Some(2048),
                pids_limit: None,
                open_files: None,
            },
            env: Default::default(),
            integration: Default::default(),
        },
        integrations: integrations(),
    }
}

/// A laptop's integrations: a Wayland session without X11, the agent off, no sound device.
fn integrations() -> Vec<Status> {
    let row = |name, state, detail: &str| Status {
        name,
        state,
        detail: detail.to_string(),
        explicit: false,
    };
    vec![
        row("home", State::On, "host: /home/user (read-write)"),
        row("wayland", State::On, "/run/user/1000/wayland-0"),
        row("x11", State::Missing, "DISPLAY is not set"),
        row("pipewire", State::On, "/run/user/1000/pipewire-0"),
        row("pulseaudio", State::On, "/run/user/1000/pulse/native"),
        row("dbus", State::On, "/run/user/1000/bus"),
        row("ssh_agent", State::Off, "off (the default)"),
        row(
            "fonts",
            State::On,
            "/usr/share/fonts at /usr/local/share/fonts",
        ),
        row(
            "icons",
            State::On,
            "/usr/share/icons at /run/host/share/icons",
        ),
        row(
            "themes",
            State::Missing,
            "the host has no /usr/share/themes",
        ),
        row("gpu", State::Off, "off (the default)"),
        row("audio", State::Missing, "the host has no /dev/snd"),
    ]
}

/// A fixed disk usage per environment (from its id), for the SIZE column.
pub fn size(id: &EnvId) -> u64 {
    let n = u64::from(id.as_str().as_bytes()[1] % 16);
    (n + 1) * 37 * 1024 * 1024
}

/// The prerequisite checks of a rootless user on the Debian fixture host, where every probe
/// succeeds (`crate::prereq::tests::FakeHost`): namespace and mock can run, oci cannot.
pub fn report() -> crate::prereq::Report {
    crate::prereq::tests::FakeHost::new("debian").run()
}

/// A fresh app of this size, in a fixed home, with colours.
pub fn app(width: u16, height: u16) -> App {
    let mut app = App::new(
        Context {
            store: "/home/user/.local/share/karapace".into(),
            home: "/home/user".into(),
            cwd: "/home/user/src".into(),
        },
        Theme::new(true),
    );
    app.resize(Rect::new(0, 0, width, height));
    app
}

/// Answer every queued job: `list` with `rows`, the backend probes with [`backends`],
/// `inspect` with [`details`], the sizes with [`size`]; other jobs stay queued and are
/// returned.
pub fn answer(app: &mut App, rows: &[EnvSummary]) -> Vec<(super::JobId, Job)> {
    let mut left = Vec::new();
    for _ in 0..4 {
        for (id, job) in app.take_jobs() {
            let output = match &job {
                Job::List => JobOutput::List {
                    envs: rows.to_vec(),
                    broken: Vec::new(),
                },
                Job::Backends | Job::QuickBackends => JobOutput::Backends(Box::new(report())),
                Job::Sizes(ids) => {
                    JobOutput::Sizes(ids.iter().map(|id| (id.clone(), size(id))).collect())
                }
                Job::Inspect(env) => match rows.iter().find(|r| &r.id == env) {
                    Some(row) => JobOutput::Details(Box::new(details(row))),
                    None => {
                        app.handle(AppEvent::JobDone {
                            job: id,
                            result: Err("gone".into()),
                        });
                        continue;
                    }
                },
                _ => {
                    left.push((id, job));
                    continue;
                }
            };
            app.handle(AppEvent::JobDone {
                job: id,
                result: Ok(output),
            });
        }
    }
    left
}

/// A loaded app showing [`envs`].
pub fn loaded(width: u16, height: u16) -> App {
    let mut app = app(width, height);
    let left = answer(&mut app, &envs());
    assert!(left.is_empty(), "{left:?}");
    app
}

pub fn key(app: &mut App, code: KeyCode) {
    app.handle(AppEvent::Input(TermEvent::Key(KeyEvent::new(
        code,
        KeyModifiers::NONE,
    ))));
}

pub fn ctrl(app: &mut App, c: char) {
    app.handle(AppEvent::Input(TermEvent::Key(KeyEvent::new(
        KeyCode::Char(c),
        KeyModifiers::CONTROL,
    ))));
}

/// Type each character as a key.
pub fn keys(app: &mut App, text: &str) {
    for c in text.chars() {
        key(app, KeyCode::Char(c));
    }
}

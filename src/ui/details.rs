//! The details pane: what `inspect` says about the selected environment — the manifest and
//! its lock (base image, packages with versions), mounts, runtime policy, size on disk, and
//! which host integrations a session gets here.

use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Padding, Paragraph, Wrap};
use ratatui::Frame;

use super::pane;
use super::theme::Theme;
use crate::app::{App, Details};
use crate::engine::EnvDetails;
use crate::events::human_bytes;
use crate::integration::{State, Status};
use crate::lock::LockFile;

pub fn draw(app: &App, frame: &mut Frame, area: Rect) {
    if area.height == 0 {
        return;
    }
    let theme = &app.theme;
    let selected = app.envs.selected();
    let title = match selected {
        Some(env) => format!("Details: {}", env.name.as_deref().unwrap_or(&env.short_id)),
        None => "Details".to_string(),
    };
    let block = pane(theme, &title, Vec::new(), false).padding(Padding::horizontal(1));
    let mut inner = block.inner(area);
    frame.render_widget(block, area);
    // A shell of this UI in it: the lower half shows its screen.
    if let Some(session) = selected.and_then(|env| app.shells.shown_for(&env.id)) {
        let (details, preview) = super::shell::split(inner);
        super::shell::preview(app, frame, preview, session);
        inner = details;
    }
    let lines = match selected.map(|env| (env, app.details.get(&env.id))) {
        None => vec![Line::styled("nothing selected", theme.dim())],
        Some((_, None | Some(Details::Loading))) => vec![Line::styled("loading…", theme.dim())],
        Some((_, Some(Details::Failed(e)))) => vec![Line::styled(e.as_str(), theme.error())],
        Some((_, Some(Details::Ready(d)))) => lines(theme, d),
    };
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), inner);
}

fn field<'a>(theme: &Theme, key: &'a str, value: impl Into<String>) -> Vec<Span<'a>> {
    vec![
        Span::styled(format!("{key:<9}"), theme.dim()),
        Span::raw(value.into()),
    ]
}

fn lines<'a>(theme: &Theme, d: &'a EnvDetails) -> Vec<Line<'a>> {
    let mut out = summary(theme, d);
    out.extend(contents(theme, &d.lock));
    if !d.integrations.is_empty() {
        out.push(integrations(theme, &d.integrations));
    }
    if let Some(archive) = &d.archive {
        out.push(Line::from(field(theme, "archive", archive.to_string())));
    }
    out
}

/// Identity, state, size, image and manifest.
fn summary<'a>(theme: &Theme, d: &'a EnvDetails) -> Vec<Line<'a>> {
    let s = &d.summary;
    let base = &d.lock.base;
    let mut state = field(theme, "state", "");
    state.push(Span::styled(s.state.as_str(), theme.state(s.state)));
    if s.sessions > 0 {
        state.push(Span::raw(format!(" ({} session(s))", s.sessions)));
    }
    state.push(Span::styled("   size ", theme.dim()));
    state.push(Span::raw(human_bytes(d.disk_usage_bytes as f64)));
    let manifest = s
        .manifest
        .as_ref()
        .map_or("-".to_string(), |p| p.display().to_string());
    vec![
        Line::from(field(theme, "id", s.id.to_string())),
        Line::from(state),
        Line::from(field(theme, "backend", s.backend.as_str())),
        Line::from(field(
            theme,
            "image",
            format!("{} (build {}, {})", base.image, base.build, base.source),
        )),
        Line::from(field(theme, "manifest", manifest)),
    ]
}

/// What the lock pins besides the image: runtime policy, packages, mounts, GUI apps.
fn contents<'a>(theme: &Theme, lock: &'a LockFile) -> Vec<Line<'a>> {
    let network = if lock.runtime.network_isolation {
        "isolated (lo only)"
    } else {
        "host"
    };
    let mut limits = Vec::new();
    if let Some(c) = lock.runtime.cpu_shares {
        limits.push(format!("cpu_shares={c}"));
    }
    if let Some(m) = lock.runtime.memory_limit_mb {
        limits.push(format!("memory={m} MiB"));
    }
    if let Some(p) = lock.runtime.pids_limit {
        limits.push(format!("pids={p}"));
    }
    if let Some(f) = lock.runtime.open_files {
        limits.push(format!("files={f}"));
    }
    let limits = if limits.is_empty() {
        "none".to_string()
    } else {
        limits.join(" ")
    };
    let runtime = format!(
        "network {network}, limits {limits}, gpu {}, audio {}",
        yes_no(lock.gpu),
        yes_no(lock.audio)
    );
    let packages: Vec<String> = lock
        .packages
        .iter()
        .map(|p| format!("{} {}", p.name, p.version))
        .collect();
    let deps = lock.dependencies.as_ref().map_or(0, Vec::len);
    let packages = match (packages.is_empty(), deps) {
        (true, _) => "(none)".to_string(),
        (false, 0) => packages.join(", "),
        (false, n) => format!("{} (+{n} dependencies)", packages.join(", ")),
    };
    let mut out = vec![
        Line::from(field(theme, "runtime", runtime)),
        Line::from(field(
            theme,
            "packages",
            format!("{} {packages}", lock.packages.len()),
        )),
    ];
    if lock.mounts.is_empty() {
        out.push(Line::from(field(theme, "mounts", "(none)")));
    }
    for (i, m) in lock.mounts.iter().enumerate() {
        let ro = if m.read_only { " (read-only)" } else { "" };
        let value = format!(
            "{}: {} → {}{ro}",
            m.label,
            m.host_path.display(),
            m.container_path.display()
        );
        out.push(Line::from(field(
            theme,
            if i == 0 { "mounts" } else { "" },
            value,
        )));
    }
    if !lock.gui_apps.is_empty() {
        out.push(Line::from(field(
            theme,
            "gui apps",
            lock.gui_apps.join(", "),
        )));
    }
    out
}

/// The host integrations on one line: passed in, asked for but missing here, off.
fn integrations<'a>(theme: &Theme, rows: &[Status]) -> Line<'a> {
    let names = |state: State| -> Vec<&str> {
        rows.iter()
            .filter(|r| r.state == state)
            .map(|r| r.name)
            .collect()
    };
    let mut spans = field(theme, "host", "");
    let groups = [
        (State::On, "on", theme.ok()),
        (State::Missing, "missing", theme.warn()),
        (State::Off, "off", theme.dim()),
    ];
    let mut first = true;
    for (state, label, style) in groups {
        let list = names(state);
        if list.is_empty() {
            continue;
        }
        if !first {
            spans.push(Span::raw("; "));
        }
        first = false;
        spans.push(Span::styled(format!("{label}: "), theme.dim()));
        spans.push(Span::styled(list.join(" "), style));
    }
    Line::from(spans)
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::fixtures;
    use crate::lock::LockedPackage;

    fn text(lock: &LockFile) -> String {
        contents(&Theme::new(false), lock)
            .iter()
            .map(|line| line.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn dependencies_are_counted_beside_the_listed_packages() {
        let mut details = fixtures::details(&fixtures::envs()[0]);
        assert!(text(&details.lock).contains("2 git 2.43.0-1, ripgrep 14.1.0-2\n"));
        details.lock.dependencies = Some(vec![LockedPackage {
            name: "libpcre2-8-0".into(),
            version: "10.42-4".into(),
        }]);
        assert!(
            text(&details.lock).contains("2 git 2.43.0-1, ripgrep 14.1.0-2 (+1 dependencies)"),
            "{}",
            text(&details.lock)
        );
    }
}

//! Human-readable renderings of command results (the `--json` forms are the serde ones).

/// Append a formatted line to a String (formatting into a String cannot fail, so these avoid
/// the fmt::Result that `writeln!` would hand back).
macro_rules! outln {
    ($out:expr, $($arg:tt)*) => {{
        $out.push_str(&format!($($arg)*));
        $out.push('\n');
    }};
}

macro_rules! outw {
    ($out:expr, $($arg:tt)*) => {
        $out.push_str(&format!($($arg)*))
    };
}

use crate::engine::{BrokenEnv, EnvDetails, EnvSummary, ExportRow, ImageInfo};
use crate::prereq::{Group, Report};
use crate::store::{GcReport, VerifyReport};

/// Pad `s` to `width` characters (not bytes: names and images may be non-ASCII).
fn pad(s: &str, width: usize) -> String {
    let len = s.chars().count();
    format!("{s}{}", " ".repeat(width.saturating_sub(len)))
}

pub fn list(envs: &[EnvSummary], broken: &[BrokenEnv]) -> String {
    if envs.is_empty() && broken.is_empty() {
        return "no environments yet: `karapace-tui new` writes a manifest, \
                `karapace-tui build` builds it"
            .to_string();
    }
    let name_w = envs
        .iter()
        .map(|e| e.name.as_deref().unwrap_or("-").chars().count())
        .chain([4])
        .max()
        .unwrap_or(4);
    let mut out = format!(
        "{}  {}  {}  {}  {}\n",
        pad("ID", 12),
        pad("NAME", name_w),
        pad("STATE", 8),
        pad("BACKEND", 9),
        "IMAGE"
    );
    for e in envs {
        let state = if e.sessions > 0 {
            format!("{} ({})", e.state.as_str(), e.sessions)
        } else {
            e.state.as_str().to_string()
        };
        outln!(
            out,
            "{}  {}  {}  {}  {}",
            e.short_id,
            pad(e.name.as_deref().unwrap_or("-"), name_w),
            pad(&state, 8),
            pad(e.backend.as_str(), 9),
            e.image
        );
    }
    for b in broken {
        outln!(
            out,
            "{}  {}  {}  (run `karapace-tui verify-store`)",
            b.id.short(),
            pad("?", name_w),
            pad("corrupt", 8)
        );
    }
    out
}

pub fn inspect(d: &EnvDetails) -> String {
    let s = &d.summary;
    let mut out = String::new();
    let mut line = |k: &str, v: String| {
        outln!(out, "{}{v}", pad(&format!("{k}:"), 14));
    };
    line("id", s.id.to_string());
    line("name", s.name.clone().unwrap_or_else(|| "-".into()));
    line("state", s.state.as_str().to_string());
    line("sessions", s.sessions.to_string());
    line("backend", s.backend.to_string());
    line("image", s.image.clone());
    line(
        "base build",
        format!("{} ({})", d.lock.base.build, d.lock.base.source),
    );
    line(
        "archive",
        format!(
            "sha256:{} ({} bytes)",
            d.lock.base.archive_sha256, d.lock.base.archive_size
        ),
    );
    line("tree", d.lock.base.tree_digest.clone());
    line(
        "manifest",
        s.manifest
            .as_ref()
            .map_or("-".into(), |p| p.display().to_string()),
    );
    line("path", d.path.display().to_string());
    line("disk usage", format!("{} bytes", d.disk_usage_bytes));
    line(
        "network",
        if d.lock.runtime.network_isolation {
            "isolated (lo only)"
        } else {
            "host"
        }
        .into(),
    );
    let limits: Vec<String> = d
        .lock
        .runtime
        .limits()
        .into_iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    line(
        "limits",
        if limits.is_empty() {
            "none".into()
        } else {
            limits.join(" ")
        },
    );
    line(
        "hardware",
        format!("gpu={} audio={}", d.lock.gpu, d.lock.audio),
    );
    outln!(out, "packages:");
    if d.lock.packages.is_empty() {
        outln!(out, "  (none)");
    }
    for p in &d.lock.packages {
        outln!(out, "  {} {}", p.name, p.version);
    }
    // What the listed packages pulled in, pinned too (absent from locks that predate it).
    if let Some(deps) = d.lock.dependencies.as_ref().filter(|d| !d.is_empty()) {
        outln!(out, "dependencies:");
        for p in deps {
            outln!(out, "  {} {}", p.name, p.version);
        }
    }
    outln!(out, "mounts:");
    if d.lock.mounts.is_empty() {
        outln!(out, "  (none)");
    }
    for m in &d.lock.mounts {
        let ro = if m.read_only { " (read-only)" } else { "" };
        outln!(
            out,
            "  {}: {} -> {}{ro}",
            m.label,
            m.host_path.display(),
            m.container_path.display()
        );
    }
    if !d.lock.env.is_empty() {
        outln!(out, "env:");
    }
    for (name, value) in &d.lock.env {
        outln!(out, "  {name}={value:?}");
    }
    if !d.integrations.is_empty() {
        outln!(out, "integrations (on this host):");
    }
    for i in &d.integrations {
        outln!(out, "  {:<10} {:<7} {}", i.name, i.state.as_str(), i.detail);
    }
    outln!(out, "layers:");
    for l in &d.layers {
        outln!(out, "  {l}");
    }
    if let Some(a) = &d.archive {
        outln!(out, "archive object: {a}");
    }
    out
}

pub fn images(list: &[ImageInfo]) -> String {
    if list.is_empty() {
        return "no cached images: `karapace-tui images pull debian` fetches one".to_string();
    }
    let mut out = format!(
        "{}  {}  {}  {}  {}\n",
        pad("SHA256", 12),
        pad("IMAGE", 26),
        pad("BUILD", 16),
        pad("SIZE", 10),
        "USED BY"
    );
    for i in list {
        let r = &i.record;
        let used = if i.used_by.is_empty() {
            "-".to_string()
        } else {
            i.used_by.join(", ")
        };
        outln!(
            out,
            "{}  {}  {}  {}  {used}",
            &r.sha256[..12],
            pad(&r.reference, 26),
            pad(&r.build, 16),
            pad(&crate::events::human_bytes(i.disk_usage_bytes as f64), 10)
        );
    }
    out
}

pub fn gc(report: &GcReport, dry_run: bool) -> String {
    let verb = if dry_run { "would remove" } else { "removed" };
    let mut out = String::new();
    for item in &report.items {
        outln!(out, "{verb} {} ({} bytes)", item.path.display(), item.bytes);
    }
    outw!(
        out,
        "{verb} {} item(s), {} bytes in total",
        report.items.len(),
        report.bytes
    );
    out
}

pub fn verify(report: &VerifyReport) -> String {
    let mut out = String::new();
    for p in &report.problems {
        outln!(
            out,
            "PROBLEM {}: {} ({})",
            p.kind,
            p.path.display(),
            p.detail
        );
    }
    outw!(
        out,
        "checked {} object(s), {} environment(s) and {} image(s): {}",
        report.objects_checked,
        report.envs_checked,
        report.images_checked,
        if report.problems.is_empty() {
            "no problems".to_string()
        } else {
            format!("{} problem(s)", report.problems.len())
        }
    );
    out
}

/// `doctor`: the distribution, then every check grouped by backend, one line each with its
/// status and meaning, and the fix under it.
pub fn doctor(report: &Report) -> String {
    let mut out = String::new();
    let manager = report
        .distro
        .package_manager
        .map_or_else(String::new, |m| format!(", packages: {m}"));
    outln!(
        out,
        "{} ({}{manager})",
        report.distro.name,
        report.distro.id
    );
    // Checks that decide nothing alone (one of several OCI runtimes) say so.
    let title = |c: &crate::prereq::Check| {
        if c.required {
            c.title.clone()
        } else {
            format!("{} (optional)", c.title)
        }
    };
    let width = report
        .checks
        .iter()
        .map(|c| title(c).chars().count())
        .max()
        .unwrap_or(0);
    for group in Group::ALL {
        out.push('\n');
        match group.backend() {
            None => outln!(out, "store"),
            Some(backend) => {
                let default = if backend == report.default_backend {
                    " (the default)"
                } else {
                    ""
                };
                let verdict = if report.availability(backend).available {
                    "can run here"
                } else {
                    "cannot run here"
                };
                outln!(out, "{backend}{default}: {verdict}");
            }
        }
        for check in report.group(group) {
            outln!(
                out,
                "  [{}] {} {}",
                pad(check.status.label(), 4),
                pad(&title(check), width),
                check.meaning
            );
            if let Some(fix) = &check.fix {
                outln!(out, "         fix: {fix}");
            }
        }
    }
    out
}

pub fn exports(rows: &[ExportRow]) -> String {
    if rows.is_empty() {
        return "nothing exported: `karapace-tui export ENV APP` puts an application on the \
                desktop, `export --bin ENV PATH` a command on PATH"
            .to_string();
    }
    let env_w = rows
        .iter()
        .map(|r| r.env_name.as_deref().unwrap_or("-").chars().count())
        .chain([4])
        .max()
        .unwrap_or(4);
    let name_w = rows
        .iter()
        .map(|r| r.name.chars().count())
        .chain([4])
        .max()
        .unwrap_or(4);
    let mut out = format!(
        "{}  {}  {}  {}  PATH\n",
        pad("ID", 12),
        pad("ENV", env_w),
        pad("KIND", 4),
        pad("NAME", name_w)
    );
    for r in rows {
        let short: String = r.env.chars().take(12).collect();
        outln!(
            out,
            "{}  {}  {}  {}  {}{}",
            pad(&short, 12),
            pad(r.env_name.as_deref().unwrap_or("-"), env_w),
            pad(r.kind, 4),
            pad(&r.name, name_w),
            r.path.display(),
            if r.present { "" } else { " (missing)" }
        );
    }
    out
}

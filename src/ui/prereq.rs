//! The prerequisite screen: every check of every backend, grouped as `doctor` prints them,
//! each with a symbol and a word for its status (readable without colour), what it found and
//! means, and the fix. Long text wraps with a hanging indent; the screen scrolls.

use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;
use unicode_width::UnicodeWidthStr;

use super::theme::Theme;
use super::{layout, pane, spinner};
use crate::app::App;
use crate::prereq::{Check, Group, Report, Status};

/// From this width the title of a check gets its own column.
const COLUMNS: u16 = 100;

pub fn draw(app: &App, frame: &mut Frame, area: Rect) {
    if area.height == 0 {
        return;
    }
    let theme = &app.theme;
    let view = &app.prereq;
    let mut extra = Vec::new();
    if let Some(report) = &view.report {
        let manager = report
            .distro
            .package_manager
            .map_or_else(String::new, |m| format!(" · fixes for {m}"));
        extra.push(Span::styled(
            format!(" {}{manager} ", report.distro.name),
            theme.dim(),
        ));
    }
    if view.running {
        extra.push(Span::styled(
            format!(" {} checking… ", spinner(app)),
            theme.key(),
        ));
    }
    let block = pane(theme, "Prerequisites", extra, true);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let text = lines(app, inner.width);
    let scroll = view.scroll.min(max_of(text.len(), inner.height));
    frame.render_widget(Paragraph::new(text).scroll((scroll, 0)), inner);
}

/// Rows the screen shows at once.
pub fn page(app: &App) -> u16 {
    layout(app).main.height.saturating_sub(1)
}

/// The last useful scroll position.
pub fn max_scroll(app: &App) -> u16 {
    let area = layout(app).main;
    max_of(lines(app, area.width).len(), area.height.saturating_sub(1))
}

fn max_of(total: usize, height: u16) -> u16 {
    u16::try_from(total)
        .unwrap_or(u16::MAX)
        .saturating_sub(height)
}

fn lines(app: &App, width: u16) -> Vec<Line<'static>> {
    let theme = &app.theme;
    let view = &app.prereq;
    let Some(report) = &view.report else {
        let text = match &view.error {
            Some(e) => Line::styled(
                format!(" the checks failed: {e} (r runs them again)"),
                theme.error(),
            ),
            None => Line::styled(
                format!(" {} running the checks…", spinner(app)),
                theme.dim(),
            ),
        };
        return vec![text];
    };
    let title_width = report
        .checks
        .iter()
        .map(|c| c.title.width())
        .max()
        .unwrap_or(0);
    let mut out = Vec::new();
    if let Some(e) = &view.error {
        out.push(Line::styled(
            format!(" the last run failed: {e}"),
            theme.error(),
        ));
    }
    for group in Group::ALL {
        if !out.is_empty() {
            out.push(Line::default());
        }
        out.push(group_line(theme, report, group));
        for check in report.group(group) {
            check_lines(theme, check, title_width, usize::from(width), &mut out);
        }
    }
    out
}

fn group_line(theme: &Theme, report: &Report, group: Group) -> Line<'static> {
    let Some(backend) = group.backend() else {
        return Line::styled(" store (every backend)", theme.bold());
    };
    let mut spans = vec![Span::styled(format!(" {backend}"), theme.bold())];
    if backend == report.default_backend {
        spans.push(Span::styled(" (the default)", theme.dim()));
    }
    spans.push(Span::raw(" — "));
    spans.push(if report.availability(backend).available {
        Span::styled("can run here", theme.ok())
    } else {
        Span::styled("cannot run here", theme.error())
    });
    Line::from(spans)
}

fn status_style(theme: &Theme, status: Status) -> ratatui::style::Style {
    match status {
        Status::Pass => theme.ok(),
        Status::Warn => theme.warn(),
        Status::Fail => theme.error(),
    }
}

/// `  ✓ ok    title   meaning…`, then `fix: …`, wrapped with a hanging indent. Narrow
/// screens put the meaning under the title.
fn check_lines(
    theme: &Theme,
    check: &Check,
    title_width: usize,
    width: usize,
    out: &mut Vec<Line<'static>>,
) {
    let status = format!("  {} {:<4}  ", check.status.symbol(), check.status.label());
    let head = vec![Span::styled(
        status.clone(),
        status_style(theme, check.status),
    )];
    let indent = status.width();
    let optional = if check.required { "" } else { " (optional)" };
    let (mut first, text_indent) = if width >= usize::from(COLUMNS) {
        let mut spans = head;
        let title = format!("{}{optional}", check.title);
        let pad = (title_width + " (optional)".len()).saturating_sub(title.width());
        spans.push(Span::styled(title, theme.bold()));
        spans.push(Span::raw(" ".repeat(pad + 2)));
        (Some(spans), indent + title_width + " (optional)".len() + 2)
    } else {
        let mut spans = head;
        spans.push(Span::styled(check.title.clone(), theme.bold()));
        spans.push(Span::styled(optional, theme.dim()));
        out.push(Line::from(spans));
        (None, indent)
    };
    for (i, row) in wrap(&check.meaning, width.saturating_sub(text_indent))
        .into_iter()
        .enumerate()
    {
        match (i, first.take()) {
            (0, Some(mut spans)) => {
                spans.push(Span::raw(row));
                out.push(Line::from(spans));
            }
            _ => out.push(Line::raw(format!("{}{row}", " ".repeat(text_indent)))),
        }
    }
    if let Some(fix) = &check.fix {
        let label = "fix: ";
        for (i, row) in wrap(fix, width.saturating_sub(text_indent + label.len()))
            .into_iter()
            .enumerate()
        {
            let lead = if i == 0 { label } else { "     " };
            out.push(Line::from(vec![
                Span::raw(" ".repeat(text_indent)),
                Span::styled(lead, theme.key()),
                Span::raw(row),
            ]));
        }
    }
}

/// Split `text` into rows of at most `width` columns at spaces (a word longer than a row is
/// cut).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(8);
    let mut rows = Vec::new();
    let mut row = String::new();
    for word in text.split(' ') {
        let needed = if row.is_empty() {
            word.width()
        } else {
            row.width() + 1 + word.width()
        };
        if needed > width && !row.is_empty() {
            rows.push(std::mem::take(&mut row));
        }
        if !row.is_empty() {
            row.push(' ');
        }
        row.push_str(word);
        while row.width() > width {
            let cut: String = cut_to(&row, width);
            let rest = row[cut.len()..].to_string();
            rows.push(cut);
            row = rest;
        }
    }
    if !row.is_empty() || rows.is_empty() {
        rows.push(row);
    }
    rows
}

/// The longest prefix of `text` at most `width` columns wide (at least one character).
fn cut_to(text: &str, width: usize) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if out.width() + unicode_width::UnicodeWidthChar::width(c).unwrap_or(0) > width
            && !out.is_empty()
        {
            break;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::wrap;

    #[test]
    fn wrapping_keeps_words_and_cuts_only_overlong_ones() {
        assert_eq!(wrap("one two three", 9), ["one two", "three"]);
        assert_eq!(wrap("abcdefghijkl", 8), ["abcdefgh", "ijkl"]);
        assert_eq!(wrap("", 10), [""]);
        assert_eq!(wrap("ü ü ü ü ü", 8), ["ü ü ü ü", "ü"]);
    }
}

//! The bottom lines: running jobs with a spinner and progress, and the keys that work now
//! (generated from the key map for the current mode).

use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use super::spinner;
use crate::app::keymap;
use crate::app::App;
use crate::events::progress_line;

/// One line while jobs that change the store run: the oldest with its progress, and a count.
pub fn draw_jobs(app: &App, frame: &mut Frame, area: Rect) {
    if area.height == 0 {
        return;
    }
    let theme = &app.theme;
    let mut busy = app.busy_jobs();
    let Some(first) = busy.next() else {
        return;
    };
    let more = busy.count();
    let mut spans = vec![
        Span::styled(format!(" {} ", spinner(app)), theme.key()),
        Span::styled(first.label.to_string(), theme.bold()),
    ];
    if let Some(p) = &first.progress {
        spans.push(Span::raw(": "));
        spans.push(Span::raw(progress_line(&p.task, p.done, p.total, 20)));
    }
    if more > 0 {
        spans.push(Span::styled(format!("  (+{more} more)"), theme.dim()));
    }
    if app.cancellable_jobs() {
        spans.push(Span::styled("  X", theme.key()));
        spans.push(Span::raw(" cancel"));
    } else if busy_cancelling(app) {
        spans.push(Span::styled("  cancelling…", theme.warn()));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// Whether a build was asked to stop and has not ended yet.
fn busy_cancelling(app: &App) -> bool {
    app.busy_jobs()
        .any(|j| j.cancel.load(std::sync::atomic::Ordering::Relaxed))
}

/// The status bar: a notice if there is one, then `key label` pairs for the current mode —
/// as many as fit, always keeping help and quit (they come last, where people look for them).
pub fn draw(app: &App, frame: &mut Frame, area: Rect) {
    let theme = &app.theme;
    let mut spans = Vec::new();
    if let Some(notice) = &app.notice {
        spans.push(Span::styled(format!(" {notice} "), theme.warn()));
        spans.push(Span::styled("│", theme.dim()));
    }
    let hint = |(keys, label): &(String, &str)| {
        [
            Span::styled(format!(" {keys}"), theme.key()),
            Span::raw(format!(" {label}")),
        ]
    };
    let (kept, rest): (Vec<_>, Vec<_>) = keymap::hints(app.mode(), app.envs.selected().is_some())
        .into_iter()
        .partition(|(_, label)| matches!(*label, "help" | "quit"));
    let kept: Vec<Span> = kept.iter().flat_map(hint).collect();
    let mut room =
        usize::from(area.width).saturating_sub(spans.iter().chain(&kept).map(Span::width).sum());
    for pair in rest.iter().map(hint) {
        let width: usize = pair.iter().map(Span::width).sum();
        if width > room {
            break;
        }
        room -= width;
        spans.extend(pair);
    }
    spans.extend(kept);
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

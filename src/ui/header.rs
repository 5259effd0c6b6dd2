//! The header: what this is, which store, and which backends can run here (probed on a
//! worker at start, so the first frame says "checking" instead of waiting).

use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use super::truncate;
use crate::app::App;

pub fn draw(app: &App, frame: &mut Frame, area: Rect) {
    let theme = &app.theme;
    let store = app.shorten(&app.context.store.display().to_string());
    let count = if app.envs.loaded() {
        let n = app.envs.total();
        format!("{n} environment{}", if n == 1 { "" } else { "s" })
    } else {
        "loading…".to_string()
    };
    let title = Line::from(vec![
        Span::styled(" karapace-tui", theme.bold()),
        Span::styled("  store ", theme.dim()),
        Span::raw(store),
        Span::styled("  ·  ", theme.dim()),
        Span::raw(count),
    ]);
    let backends = Line::from(backend_spans(app, usize::from(area.width)));
    frame.render_widget(Paragraph::new(vec![title, backends]), area);
}

/// ` backends namespace ok · oci unavailable · mock ok`, then the reasons of the unavailable
/// ones as far as the width allows (the verdicts come first so none is cut off at 80 columns).
fn backend_spans(app: &App, width: usize) -> Vec<Span<'static>> {
    let theme = &app.theme;
    let mut spans = vec![Span::styled(" backends ", theme.dim())];
    let Some(list) = &app.backends else {
        spans.push(Span::styled("checking…", theme.dim()));
        return spans;
    };
    for (i, b) in list.iter().enumerate() {
        if i > 0 {
            spans.push(Span::styled(" · ", theme.dim()));
        }
        spans.push(Span::styled(b.backend.as_str(), theme.bold()));
        if b.available {
            spans.push(Span::styled(" ok", theme.ok()));
        } else {
            spans.push(Span::styled(" unavailable", theme.error()));
        }
    }
    let used: usize = spans.iter().map(Span::width).sum();
    let reasons: Vec<String> = list
        .iter()
        .filter(|b| !b.available)
        .map(|b| format!("{}: {}", b.backend, first_clause(&b.detail)))
        .collect();
    let room = width.saturating_sub(used + 3);
    if !reasons.is_empty() && room > 10 {
        spans.push(Span::styled(" — ", theme.dim()));
        spans.push(Span::styled(
            truncate(&reasons.join("; "), room),
            theme.dim(),
        ));
    }
    spans
}

/// The start of a reason, up to its first `;` or line break — the header has one line for all
/// backends; `:doctor` shows the whole text.
fn first_clause(detail: &str) -> &str {
    detail.split([';', '\n']).next().unwrap_or(detail).trim()
}

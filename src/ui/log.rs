//! The log pane: job output as it arrives, tagged with the job; follow, scroll and search.

use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use super::{pane, title_input};
use crate::app::{App, Editing, Focus, Mode, Screen};
use crate::events::Level;

pub fn draw(app: &App, frame: &mut Frame, area: Rect) {
    if area.height == 0 {
        return;
    }
    let theme = &app.theme;
    let log = &app.log;
    let focused = app.focus == Focus::Log || app.screen == Screen::Log;
    let mut extra = vec![];
    if log.following() {
        extra.push(Span::styled(" following ", theme.dim()));
    } else {
        extra.push(Span::styled(" paused ", theme.warn()));
        extra.push(Span::styled(
            format!("({} lines below; f follows) ", log.below()),
            theme.dim(),
        ));
    }
    let (query, cursor) = match &app.editing {
        Some(Editing::Search(input)) => (
            Some(input.text()),
            (app.mode() == Mode::Search).then(|| input.cursor()),
        ),
        _ => (log.search(), None),
    };
    if let Some(query) = query {
        title_input(frame, area, (theme, "Log"), &mut extra, query, cursor);
        extra.push(Span::styled("(n/N) ", theme.dim()));
    }
    let block = pane(theme, "Log", extra, focused);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if log.is_empty() {
        let hint = " Job output appears here: builds stream their log lines as they run.";
        frame.render_widget(Paragraph::new(Line::styled(hint, theme.dim())), inner);
        return;
    }
    frame.render_widget(Paragraph::new(lines(app)), inner);
}

/// The visible lines, tagged with their job; matches of the search marked.
fn lines(app: &App) -> Vec<Line<'_>> {
    let (theme, log) = (&app.theme, &app.log);
    let current = log.current_match();
    log.visible()
        .map(|(n, line)| {
            let style = match line.level {
                Level::Warn => theme.warn(),
                Level::Debug => theme.dim(),
                Level::Info => theme.text(),
            };
            let mut spans = Vec::with_capacity(2);
            if let Some(source) = &line.source {
                spans.push(Span::styled(format!("[{source}] "), theme.dim()));
            }
            spans.push(Span::styled(line.text.as_str(), style));
            let l = Line::from(spans);
            if current == Some(n) {
                l.style(theme.selected())
            } else if log.search().is_some() && log.matches(line) {
                l.style(theme.matched())
            } else {
                l
            }
        })
        .collect()
}

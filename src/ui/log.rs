//! The log pane: job output as it arrives, tagged with the job; follow, scroll and search.

use ratatui::layout::{Position, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use super::pane;
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
    let editing = match &app.editing {
        Some(Editing::Search(input)) => Some(input),
        _ => None,
    };
    let query = editing
        .map(|i| i.text().to_string())
        .or_else(|| log.search().map(str::to_string));
    let mut cursor_x = None;
    if let Some(q) = &query {
        // The title is " Log ", the spans so far, then " /" and the query.
        let before = " Log ".len() + extra.iter().map(Span::width).sum::<usize>() + " /".len();
        extra.push(Span::styled(" /", theme.key()));
        extra.push(Span::raw(q.clone()));
        extra.push(Span::styled(" (n/N) ", theme.dim()));
        if let (Some(input), Mode::Search) = (editing, app.mode()) {
            let typed: String = input.text().chars().take(input.cursor()).collect();
            cursor_x = Some(before + Span::raw(typed).width());
        }
    }
    let block = pane(theme, "Log", extra, focused);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if let Some(x) = cursor_x.and_then(|x| u16::try_from(x).ok()) {
        if area.x + x < area.right() {
            frame.set_cursor_position(Position::new(area.x + x, area.y));
        }
    }
    if log.is_empty() {
        let hint = " Job output appears here: builds stream their log lines as they run.";
        frame.render_widget(Paragraph::new(Line::styled(hint, theme.dim())), inner);
        return;
    }
    let current = log.current_match();
    let lines: Vec<Line> = log
        .visible()
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
        .collect();
    frame.render_widget(Paragraph::new(lines), inner);
}

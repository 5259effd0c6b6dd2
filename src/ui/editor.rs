//! The manifest editor: the text with line numbers, the parser's verdict under it (the first
//! problem with its line and column, or a summary of a valid manifest), and the log pane below
//! (`ui::layout` gives it the bottom quarter), where a build started here streams.

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};
use ratatui::Frame;

use super::pane;
use crate::app::editor::{Origin, Validation};
use crate::app::App;

/// Rows for the verdict under the text.
const VERDICT_ROWS: u16 = 2;

/// The editor's and the log's parts of the screen's body.
pub fn split(body: Rect) -> [Rect; 2] {
    // A quarter, at least a title and three lines, at most half.
    let log = (body.height / 4).max(4).min(body.height / 2);
    Layout::vertical([Constraint::Min(0), Constraint::Length(log)]).areas(body)
}

pub fn draw(app: &App, frame: &mut Frame, area: Rect) {
    let Some(editor) = &app.editor else {
        return;
    };
    if area.height == 0 {
        return;
    }
    let theme = &app.theme;
    let path = app.shorten(&editor.path.display().to_string());
    let (verb, mut extra) = match editor.origin {
        Origin::Template(name) => (
            "New",
            vec![Span::styled(format!(" template {name} "), theme.dim())],
        ),
        Origin::File => ("Edit", Vec::new()),
    };
    extra.push(if editor.dirty() {
        Span::styled(" ● unsaved ", theme.warn())
    } else {
        Span::styled(" saved ", theme.dim())
    });
    let block = pane(theme, &format!("{verb} {path}"), extra, true);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let rows = VERDICT_ROWS.min(inner.height.saturating_sub(1));
    let [text, verdict] =
        Layout::vertical([Constraint::Min(0), Constraint::Length(rows)]).areas(inner);
    frame.render_widget(&editor.textarea, text);
    if let Validation::Invalid {
        at: Some((line, _)),
        ..
    } = &editor.validation
    {
        mark_problem_line(frame.buffer_mut(), text, *line, theme.error());
    }
    let line = match &editor.validation {
        Validation::Valid(summary) => Line::from(vec![
            Span::styled(" ✓ valid", theme.ok()),
            Span::styled(format!("  {summary}"), theme.dim()),
        ]),
        Validation::Invalid { at, message } => {
            let place = at.map_or_else(String::new, |(line, column)| {
                format!(" line {line}, column {column}:")
            });
            Line::from(vec![
                Span::styled(format!(" ✗{place}"), theme.error()),
                Span::raw(format!(" {message}")),
                Span::styled("  (Ctrl-g goes there)", theme.dim()),
            ])
        }
    };
    frame.render_widget(Paragraph::new(line).wrap(Wrap { trim: false }), verdict);
}

/// Marks the problem's line in the text's gutter: a `▶` before its number, both in the error
/// style. tui-textarea styles no single line, and its scroll position is not public, so the
/// row is found by the line number it has just drawn (` 14 `: a space, the right-aligned
/// number, a space). Nothing is marked while that line is scrolled out of view.
fn mark_problem_line(buf: &mut Buffer, text: Rect, line: usize, style: Style) {
    for y in text.top()..text.bottom() {
        let mut digits = String::new();
        let mut end = text.left();
        for x in text.left()..text.right() {
            let symbol = buf[(x, y)].symbol();
            match symbol.chars().next() {
                Some(c) if c.is_ascii_digit() => digits.push(c),
                Some(' ') if digits.is_empty() => {}
                _ => break,
            }
            end = x + 1;
        }
        if digits.parse::<usize>().ok() != Some(line) {
            continue;
        }
        buf[(text.left(), y)].set_symbol("▶");
        for x in text.left()..end {
            buf[(x, y)].set_style(style);
        }
        return;
    }
}

//! Popups, drawn bottom to top over the screen: questions, prompts, the palette, reports.

use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Padding, Paragraph, Wrap};
use ratatui::Frame;

use super::theme::Theme;
use super::{centered, help, truncate};
use crate::app::input::LineInput;
use crate::app::palette;
use crate::app::popup::{Confirm, Message, Popup, Prompt};
use crate::app::App;

pub fn draw(app: &App, frame: &mut Frame, area: Rect) {
    let top = app.popups.len().saturating_sub(1);
    for (i, popup) in app.popups.iter().enumerate() {
        let active = i == top;
        match popup {
            Popup::Help { scroll } => help::draw(app, frame, area, *scroll),
            Popup::Confirm(c) => confirm(&app.theme, frame, area, c),
            Popup::Prompt(p) => prompt(&app.theme, frame, area, p, active),
            Popup::Palette { input, error } => {
                palette_popup(&app.theme, frame, area, input, error.as_deref(), active)
            }
            Popup::Message(m) => message(&app.theme, frame, area, m),
            Popup::Sessions { selected } => super::shell::sessions(app, frame, area, *selected),
        }
    }
}

/// A bordered box with a title, cleared underneath.
pub(super) fn boxed(
    theme: &Theme,
    frame: &mut Frame,
    rect: Rect,
    title: &str,
    error: bool,
) -> Rect {
    let style = if error {
        theme.error()
    } else {
        theme.title(false)
    };
    let block = Block::new()
        .borders(Borders::ALL)
        .padding(Padding::horizontal(1))
        .border_style(if error { theme.error() } else { theme.border() })
        .title(Span::styled(format!(" {title} "), style));
    let inner = block.inner(rect);
    frame.render_widget(Clear, rect);
    frame.render_widget(block, rect);
    inner
}

/// `text` as a wrapping paragraph, and the rows it takes at `width`.
fn wrapped(text: &str, width: u16) -> (Paragraph<'_>, u16) {
    let paragraph = Paragraph::new(text).wrap(Wrap { trim: false });
    let rows = paragraph.line_count(width.max(1));
    (paragraph, u16::try_from(rows).unwrap_or(u16::MAX).max(1))
}

/// Width of a box's inside: two borders and two columns of padding.
const CHROME: u16 = 4;

fn confirm(theme: &Theme, frame: &mut Frame, area: Rect, c: &Confirm) {
    let width = area.width.saturating_sub(4).min(64);
    let (body, body_rows) = wrapped(&c.body, width.saturating_sub(CHROME));
    let rect = centered(area, width, body_rows + 6);
    let inner = boxed(theme, frame, rect, &c.title, false);
    let [text, buttons, hints] = Layout::vertical([
        Constraint::Min(1),
        Constraint::Length(2),
        Constraint::Length(1),
    ])
    .areas(inner);
    frame.render_widget(body, text);
    let button = |label: &str, on: bool| {
        let style = if on { theme.selected() } else { theme.text() };
        Span::styled(format!("[ {label} ]"), style)
    };
    let line = Line::from(vec![
        button("cancel", !c.yes_selected),
        Span::raw("  "),
        button(&c.yes, c.yes_selected),
    ]);
    frame.render_widget(Paragraph::new(line), buttons);
    let line = Line::from(vec![
        Span::styled("y", theme.key()),
        Span::raw(format!(" {}  ", c.yes)),
        Span::styled("n/Esc", theme.key()),
        Span::raw(" cancel  "),
        Span::styled("Tab", theme.key()),
        Span::raw(" switch  "),
        Span::styled("Enter", theme.key()),
        Span::raw(" press"),
    ]);
    frame.render_widget(Paragraph::new(line), hints);
}

/// `> text` with the cursor placed in it (when active); long text shows its end.
fn input_line<'a>(
    theme: &Theme,
    frame: &mut Frame,
    at: Rect,
    input: &'a LineInput,
    active: bool,
) -> Line<'a> {
    let room = usize::from(at.width.saturating_sub(3));
    let chars: Vec<char> = input.text().chars().collect();
    // Keep the cursor visible: show the tail of the text when it is longer than the room.
    let mut start = 0;
    while Span::raw(chars[start..input.cursor()].iter().collect::<String>()).width() > room {
        start += 1;
    }
    let shown: String = chars[start..].iter().collect();
    if active {
        let before: String = chars[start..input.cursor()].iter().collect();
        let x = at.x + 2 + Span::raw(before).width() as u16;
        if x < at.right() {
            frame.set_cursor_position(Position::new(x, at.y));
        }
    }
    Line::from(vec![Span::styled("> ", theme.key()), Span::raw(shown)])
}

fn prompt(theme: &Theme, frame: &mut Frame, area: Rect, p: &Prompt, active: bool) {
    let width = area.width.saturating_sub(4).min(76);
    let extra = u16::from(p.choice.is_some()) * 2
        + u16::from(p.error.is_some())
        + u16::from(!p.candidates.is_empty());
    let rect = centered(area, width, 6 + extra);
    let inner = boxed(theme, frame, rect, &p.title, false);
    let mut lines = vec![Line::styled(p.label.as_str(), theme.bold())];
    let input_at = Rect::new(inner.x, inner.y + 1, inner.width, 1);
    lines.push(input_line(theme, frame, input_at, &p.input, active));
    if let Some(choice) = &p.choice {
        let (name, description) = choice
            .options
            .get(choice.index)
            .copied()
            .unwrap_or(("", ""));
        lines.push(Line::from(vec![
            Span::styled(format!("{}: ", choice.label), theme.bold()),
            Span::styled(format!("< {name} >"), theme.key()),
            Span::styled("  ↑/↓ change", theme.dim()),
        ]));
        lines.push(Line::styled(format!("  {description}"), theme.dim()));
    }
    if let Some(error) = &p.error {
        lines.push(Line::styled(error.as_str(), theme.error()));
    }
    if !p.candidates.is_empty() {
        let list = truncate(
            &p.candidates.join("  "),
            usize::from(inner.width.saturating_sub(2)),
        );
        lines.push(Line::styled(format!(" {list}"), theme.dim()));
    }
    lines.push(Line::default());
    lines.push(Line::from(vec![
        Span::styled("Enter", theme.key()),
        Span::raw(" accept  "),
        Span::styled("Esc", theme.key()),
        Span::raw(" cancel  "),
        Span::styled("Tab", theme.key()),
        Span::raw(" complete"),
    ]));
    frame.render_widget(Paragraph::new(lines), inner);
}

/// The palette: near the top, with the matching verbs (or the typed verb's usage) below.
fn palette_popup(
    theme: &Theme,
    frame: &mut Frame,
    area: Rect,
    input: &LineInput,
    error: Option<&str>,
    active: bool,
) {
    let verbs = palette::completions(input.text());
    let shown = verbs.len().min(8) as u16;
    let height = 3 + shown + u16::from(error.is_some());
    let width = area.width.saturating_sub(4).min(76);
    let rect = Rect::new(
        area.x + (area.width.saturating_sub(width)) / 2,
        area.y + 2.min(area.height.saturating_sub(height)),
        width,
        height.min(area.height),
    );
    let inner = boxed(theme, frame, rect, "Command", false);
    let at = Rect::new(inner.x, inner.y, inner.width, 1);
    let mut lines = vec![input_line(theme, frame, at, input, active)];
    if let Some(error) = error {
        lines.push(Line::styled(error, theme.error()));
    }
    for verb in verbs.iter().take(8) {
        lines.push(Line::from(vec![
            Span::styled(format!("  {:<10}", verb.name), theme.key()),
            Span::styled(verb.usage, theme.dim()),
        ]));
    }
    frame.render_widget(Paragraph::new(lines), inner);
}

fn message(theme: &Theme, frame: &mut Frame, area: Rect, m: &Message) {
    let width = area.width.saturating_sub(4).min(90);
    let (body, rows) = wrapped(&m.body, width.saturating_sub(CHROME));
    let rect = centered(area, width, (rows + 3).min(area.height.saturating_sub(2)));
    let inner = boxed(theme, frame, rect, &m.title, m.error);
    let [text, hint] = Layout::vertical([Constraint::Min(0), Constraint::Length(1)]).areas(inner);
    let scroll = m.scroll.min(rows.saturating_sub(text.height));
    frame.render_widget(body.scroll((scroll, 0)), text);
    let more = if rows > text.height {
        "  j/k scroll"
    } else {
        ""
    };
    let line = Line::from(vec![
        Span::styled("Esc", theme.key()),
        Span::raw(" close"),
        Span::styled(more, theme.dim()),
    ]);
    frame.render_widget(Paragraph::new(line), hint);
}

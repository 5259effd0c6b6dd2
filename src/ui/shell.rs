//! Shells on the dashboard: the preview of a shell's screen (from its vt100 parser) in the
//! details pane, and the list of shells to re-attach, end or dismiss.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};
use ratatui::Frame;

use super::popup::boxed;
use super::theme::Theme;
use super::{centered, truncate};
use crate::app::shells::{Session, DETACH_KEY};
use crate::app::App;

/// Split a details pane's inside between the details and the preview of `session`: the
/// preview gets the lower half, and at least its title and two rows.
pub fn split(area: Rect) -> (Rect, Rect) {
    let preview = (area.height.div_ceil(2)).max(3).min(area.height);
    let [details, preview] =
        Layout::vertical([Constraint::Min(0), Constraint::Length(preview)]).areas(area);
    (details, preview)
}

/// A title line, then as much of the shell's screen as fits.
pub fn preview(app: &App, frame: &mut Frame, area: Rect, session: &Session) {
    if area.height == 0 {
        return;
    }
    let theme = &app.theme;
    let [title, screen] = Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(area);
    let mut spans = vec![
        Span::styled(format!("shell #{} ", session.id), theme.bold()),
        status(theme, session),
    ];
    let hint = if session.running() {
        [(DETACH_KEY, " attach"), ("S", " shells")]
    } else {
        [("S", " shells"), ("x", " there dismisses")]
    };
    for (key, label) in hint {
        spans.push(Span::styled(format!("  {key}"), theme.key()));
        spans.push(Span::styled(label, theme.dim()));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), title);
    let lines = screen_lines(theme, session, screen.height, screen.width);
    frame.render_widget(Paragraph::new(lines), screen);
}

fn status(theme: &Theme, session: &Session) -> Span<'static> {
    let style = match &session.status {
        _ if session.running() => theme.ok(),
        crate::app::shells::Status::Ended(e) if e.success() => theme.dim(),
        _ => theme.warn(),
    };
    Span::styled(session.status_text(), style)
}

/// The rows of the shell's screen that fit `height`: those that end on the row it is at
/// (the cursor's, or the last written one below it), where the news is.
pub fn screen_lines(
    theme: &Theme,
    session: &Session,
    height: u16,
    width: u16,
) -> Vec<Line<'static>> {
    let screen = session.screen.screen();
    let (rows, cols) = screen.size();
    let (cursor_row, cursor_col) = screen.cursor_position();
    let last_written = (0..rows)
        .rev()
        .find(|&r| (0..cols).any(|c| screen.cell(r, c).is_some_and(|x| x.has_contents())))
        .unwrap_or(0);
    let end = last_written.max(cursor_row).saturating_add(1).min(rows);
    let start = end.saturating_sub(height);
    let cursor = (!screen.hide_cursor() && session.running()).then_some((cursor_row, cursor_col));
    (start..end)
        .map(|row| screen_line(theme, screen, row, width.min(cols), cursor))
        .collect()
}

/// One row of cells as spans of equal style; the cursor cell in reverse video.
fn screen_line(
    theme: &Theme,
    screen: &vt100::Screen,
    row: u16,
    width: u16,
    cursor: Option<(u16, u16)>,
) -> Line<'static> {
    let mut spans = Vec::new();
    let mut text = String::new();
    let mut current = Style::new();
    for col in 0..width {
        let Some(cell) = screen.cell(row, col) else {
            break;
        };
        if cell.is_wide_continuation() {
            continue;
        }
        let mut style = cell_style(theme, cell);
        if cursor == Some((row, col)) {
            style = style.add_modifier(Modifier::REVERSED);
        }
        if style != current && !text.is_empty() {
            spans.push(Span::styled(std::mem::take(&mut text), current));
        }
        current = style;
        if cell.has_contents() {
            text.push_str(&cell.contents());
        } else {
            text.push(' ');
        }
    }
    let text = if current == Style::new() {
        text.trim_end().to_string()
    } else {
        text
    };
    if !text.is_empty() {
        spans.push(Span::styled(text, current));
    }
    Line::from(spans)
}

/// The cell's colours as the program chose them (none with `NO_COLOR`) and its attributes.
fn cell_style(theme: &Theme, cell: &vt100::Cell) -> Style {
    let mut style = Style::new();
    if theme.color {
        if let Some(fg) = color(cell.fgcolor()) {
            style = style.fg(fg);
        }
        if let Some(bg) = color(cell.bgcolor()) {
            style = style.bg(bg);
        }
    }
    for (on, modifier) in [
        (cell.bold(), Modifier::BOLD),
        (cell.italic(), Modifier::ITALIC),
        (cell.underline(), Modifier::UNDERLINED),
        (cell.inverse(), Modifier::REVERSED),
    ] {
        if on {
            style = style.add_modifier(modifier);
        }
    }
    style
}

/// vt100's colours as ratatui's: the 16 by name (what the theme uses too), others as given.
fn color(color: vt100::Color) -> Option<Color> {
    const SIXTEEN: [Color; 16] = [
        Color::Black,
        Color::Red,
        Color::Green,
        Color::Yellow,
        Color::Blue,
        Color::Magenta,
        Color::Cyan,
        Color::Gray,
        Color::DarkGray,
        Color::LightRed,
        Color::LightGreen,
        Color::LightYellow,
        Color::LightBlue,
        Color::LightMagenta,
        Color::LightCyan,
        Color::White,
    ];
    match color {
        vt100::Color::Default => None,
        vt100::Color::Idx(i) => Some(
            SIXTEEN
                .get(usize::from(i))
                .copied()
                .unwrap_or(Color::Indexed(i)),
        ),
        vt100::Color::Rgb(r, g, b) => Some(Color::Rgb(r, g, b)),
    }
}

/// The list of shells (the `S` popup): one row each, the highlighted one's screen below.
pub fn sessions(app: &App, frame: &mut Frame, area: Rect, selected: usize) {
    let theme = &app.theme;
    let all = app.shells.all();
    let rect = centered(
        area,
        area.width.saturating_sub(4).min(120),
        area.height.saturating_sub(2),
    );
    let inner = boxed(theme, frame, rect, "Shells", false);
    if all.is_empty() {
        let text = vec![
            Line::from("No shells yet."),
            Line::default(),
            Line::from(vec![
                Span::styled("Enter", theme.key()),
                Span::raw(" on an environment opens a login shell in it; "),
                Span::styled(DETACH_KEY, theme.key()),
                Span::raw(" in the shell comes back here while it keeps running."),
            ]),
        ];
        frame.render_widget(Paragraph::new(text).wrap(Wrap { trim: false }), inner);
        return;
    }
    let selected = selected.min(all.len() - 1);
    let list_rows = (all.len() as u16)
        .min(inner.height.saturating_sub(3) / 3)
        .max(1);
    let [list, _gap, preview_area, hints] = Layout::vertical([
        Constraint::Length(list_rows),
        Constraint::Length(1),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(inner);
    let first = selected.saturating_sub(usize::from(list_rows) - 1);
    let name_width = all
        .iter()
        .map(|s| s.name.chars().count())
        .max()
        .unwrap_or(0);
    let rows: Vec<Line> = all
        .iter()
        .enumerate()
        .skip(first)
        .take(usize::from(list_rows))
        .map(|(i, s)| {
            let width = usize::from(list.width);
            let head = format!(" #{:<3} {:<name_width$}  ", s.id, s.name);
            if i == selected {
                let text = truncate(&format!("{head}{}", s.status_text()), width);
                Line::styled(format!("{text:<width$}"), theme.selected())
            } else {
                Line::from(vec![Span::raw(truncate(&head, width)), status(theme, s)])
            }
        })
        .collect();
    frame.render_widget(Paragraph::new(rows), list);
    preview(app, frame, preview_area, &all[selected]);
    let mut spans = Vec::new();
    for (key, label) in [
        ("Enter", " attach  "),
        ("x", " end / dismiss  "),
        ("j/k", " move  "),
        ("Esc", " close"),
    ] {
        spans.push(Span::styled(key, theme.key()));
        spans.push(Span::raw(label));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), hints);
}

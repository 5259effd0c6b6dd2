//! Drawing the UI: pure functions of `&App` into a ratatui frame, one file per pane or popup.
//!
//! [`layout`] is shared with the state machine (which needs the list's and the log's heights
//! to scroll), so what `update` computes and what is drawn cannot drift apart. Only the
//! visible rows of the list and the log are turned into widgets, whatever their length.

mod details;
mod editor;
mod envs;
mod header;
mod help;
mod log;
mod popup;
pub mod prereq;
mod shell;
mod status;
pub mod theme;

#[cfg(test)]
mod screen_tests;
#[cfg(test)]
mod shell_tests;
#[cfg(test)]
mod tests;

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders};
use ratatui::Frame;
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

use crate::app::{App, Screen};
use theme::Theme;

/// Where each part of the screen goes. Parts that are not shown have a zero height.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Areas {
    pub header: Rect,
    pub list: Rect,
    pub details: Rect,
    pub log: Rect,
    /// The body of the prerequisite screen or of the editor (above its log pane).
    pub main: Rect,
    pub jobs: Rect,
    pub status: Rect,
}

impl Areas {
    /// Table rows the list shows (its title line and column header take two).
    pub fn list_rows(&self) -> usize {
        usize::from(self.list.height.saturating_sub(2))
    }

    /// Lines the log shows (its title line takes one).
    pub fn log_rows(&self) -> usize {
        usize::from(self.log.height.saturating_sub(1))
    }
}

/// Width from which the list and the details pane sit side by side.
const WIDE: u16 = 110;

pub fn layout(app: &App) -> Areas {
    let area = app.area;
    let jobs_height = u16::from(app.busy_jobs().next().is_some());
    let [header, body, jobs, status] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Min(0),
        Constraint::Length(jobs_height),
        Constraint::Length(1),
    ])
    .areas(area);
    let none = Rect::new(body.x, body.y, 0, 0);
    let mut areas = Areas {
        header,
        list: none,
        details: none,
        log: none,
        main: none,
        jobs,
        status,
    };
    match app.screen {
        Screen::Log => {
            areas.log = body;
            return areas;
        }
        Screen::Prereq => {
            areas.main = body;
            return areas;
        }
        Screen::Editor => {
            [areas.main, areas.log] = editor::split(body);
            return areas;
        }
        Screen::Dashboard => {}
    }
    // The first-run text needs the room the details pane would take.
    let no_details = !app.envs.loaded() || app.envs.store_is_empty();
    if area.width >= WIDE {
        let [top, log] =
            Layout::vertical([Constraint::Percentage(58), Constraint::Min(3)]).areas(body);
        areas.log = log;
        if no_details {
            areas.list = top;
        } else {
            [areas.list, areas.details] =
                Layout::horizontal([Constraint::Percentage(58), Constraint::Percentage(42)])
                    .areas(top);
        }
    } else if no_details {
        [areas.list, areas.log] =
            Layout::vertical([Constraint::Percentage(62), Constraint::Min(3)]).areas(body);
    } else {
        [areas.list, areas.details, areas.log] = Layout::vertical([
            Constraint::Percentage(38),
            Constraint::Percentage(28),
            Constraint::Min(3),
        ])
        .areas(body);
    }
    areas
}

/// Draw the whole UI.
pub fn draw(app: &App, frame: &mut Frame) {
    let areas = layout(app);
    header::draw(app, frame, areas.header);
    match app.screen {
        Screen::Dashboard => {
            envs::draw(app, frame, areas.list);
            details::draw(app, frame, areas.details);
        }
        Screen::Prereq => prereq::draw(app, frame, areas.main),
        Screen::Editor => editor::draw(app, frame, areas.main),
        Screen::Log => {}
    }
    log::draw(app, frame, areas.log);
    status::draw_jobs(app, frame, areas.jobs);
    status::draw(app, frame, areas.status);
    popup::draw(app, frame, frame.area());
}

/// A pane: a title (and `extra` spans after it) on a rule across the top, nothing on the
/// sides, so every column holds content.
fn pane<'a>(theme: &Theme, title: &str, extra: Vec<Span<'a>>, focused: bool) -> Block<'a> {
    let mut spans = vec![Span::styled(format!(" {title} "), theme.title(focused))];
    spans.extend(extra);
    Block::new()
        .borders(Borders::TOP)
        .border_style(theme.border())
        .title(Line::from(spans))
}

/// Append an inline input (` /text `) to a pane title's `extra` spans. While it is being typed
/// (`cursor` is its position in characters), the terminal cursor goes after the typed part.
fn title_input<'a>(
    frame: &mut Frame,
    area: Rect,
    (theme, title): (&Theme, &str),
    extra: &mut Vec<Span<'a>>,
    text: &str,
    cursor: Option<usize>,
) {
    // The title line is " {title} ", the spans so far, then " /" and the text.
    let before = Span::raw(format!(" {title} ")).width()
        + extra.iter().map(Span::width).sum::<usize>()
        + " /".len();
    extra.push(Span::styled(" /", theme.key()));
    extra.push(Span::raw(text.to_string()));
    extra.push(Span::raw(" "));
    if let Some(cursor) = cursor {
        let typed: String = text.chars().take(cursor).collect();
        let x = before + typed.width();
        if let Some(x) = u16::try_from(x).ok().filter(|x| area.x + x < area.right()) {
            frame.set_cursor_position(ratatui::layout::Position::new(area.x + x, area.y));
        }
    }
}

const SPINNER: [&str; 10] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];

fn spinner(app: &App) -> &'static str {
    SPINNER[app.spinner % SPINNER.len()]
}

/// A `width` × `height` rectangle centred in `area` (shrunk to fit).
fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let width = width.min(area.width);
    let height = height.min(area.height);
    Rect::new(
        area.x + (area.width - width) / 2,
        area.y + (area.height - height) / 2,
        width,
        height,
    )
}

/// Cut `text` to at most `width` columns, marking the cut with `…`.
fn truncate(text: &str, width: usize) -> String {
    if text.width() <= width {
        return text.to_string();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in text.chars() {
        let w = c.width().unwrap_or(0);
        if used + w + 1 > width {
            break;
        }
        out.push(c);
        used += w;
    }
    out.push('…');
    out
}

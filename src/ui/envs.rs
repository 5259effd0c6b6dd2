//! The environment list, or on an empty store the first-run text: what the tool does and the
//! next step.

use ratatui::layout::{Constraint, Rect};

use crate::events::human_bytes;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Padding, Paragraph, Row, Table, Wrap};
use ratatui::Frame;

use super::{pane, spinner, title_input};
use crate::app::{App, Editing, Focus, Mode};
use crate::types::BackendKind;

pub fn draw(app: &App, frame: &mut Frame, area: Rect) {
    if area.height == 0 {
        return;
    }
    let theme = &app.theme;
    let focused = app.focus == Focus::List;
    let title = if app.envs.visible_len() == app.envs.total() {
        format!("Environments ({})", app.envs.total())
    } else {
        format!(
            "Environments ({}/{})",
            app.envs.visible_len(),
            app.envs.total()
        )
    };
    let (sort, reverse) = app.envs.sort();
    let mut extra = vec![Span::styled(
        format!(
            " sort: {}{} ",
            sort.label(),
            if reverse { " (reversed)" } else { "" }
        ),
        theme.dim(),
    )];
    let (filter, cursor) = match &app.editing {
        Some(Editing::Filter(input)) => (
            Some(input.text()),
            (app.mode() == Mode::Filter).then(|| input.cursor()),
        ),
        _ => (Some(app.envs.filter()).filter(|f| !f.is_empty()), None),
    };
    if let Some(filter) = filter {
        title_input(frame, area, (theme, &title), &mut extra, filter, cursor);
    }
    if !app.envs.broken().is_empty() {
        extra.push(Span::styled(
            format!(" {} unreadable (:verify) ", app.envs.broken().len()),
            theme.error(),
        ));
    }
    let block = pane(theme, &title, extra, focused);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if !app.envs.loaded() {
        let text = format!(" {} loading environments…", spinner(app));
        frame.render_widget(Paragraph::new(text), inner);
    } else if app.envs.store_is_empty() {
        frame.render_widget(welcome(app), inner);
    } else if app.envs.visible_len() == 0 {
        let text = Line::styled(
            " no environment matches the filter (Esc clears it)",
            theme.dim(),
        );
        frame.render_widget(Paragraph::new(text), inner);
    } else {
        frame.render_widget(table(app), inner);
    }
}

fn table(app: &App) -> Table<'_> {
    let theme = &app.theme;
    let header = Row::new(["NAME", "ID", "STATE", "BACKEND", "IMAGE", "SIZE", "SESS"])
        .style(theme.table_header());
    let cursor = app.envs.cursor();
    let rows = app.envs.window().map(|(pos, env)| {
        let state = Cell::from(env.state.as_str()).style(theme.state(env.state));
        let sessions = if env.sessions > 0 {
            env.sessions.to_string()
        } else {
            String::new()
        };
        // Measured on a worker after each list; `…` until then.
        let size = app
            .size_of(env)
            .map_or_else(|| "…".to_string(), |b| human_bytes(b as f64));
        let row = Row::new(vec![
            Cell::from(env.name.clone().unwrap_or_else(|| "-".into())),
            Cell::from(env.short_id.as_str()),
            state,
            Cell::from(env.backend.as_str()),
            Cell::from(env.image.as_str()),
            Cell::from(Line::from(size).right_aligned()),
            Cell::from(sessions),
        ]);
        if pos == cursor {
            row.style(theme.selected())
        } else {
            row
        }
    });
    Table::new(
        rows,
        [
            Constraint::Fill(2),
            Constraint::Length(12),
            Constraint::Length(8),
            Constraint::Length(9),
            Constraint::Fill(3),
            Constraint::Length(9),
            Constraint::Length(4),
        ],
    )
    .header(header)
}

fn welcome(app: &App) -> Paragraph<'_> {
    let theme = &app.theme;
    let key = |k: &'static str| Span::styled(format!(" {k:<3}"), theme.key());
    let mut lines = vec![
        Line::from(
            "karapace-tui builds reproducible development environments from a karapace.toml \
             manifest: versions pinned in karapace.lock, kept in a content-addressed store, \
             run in a rootless sandbox.",
        ),
        Line::default(),
    ];
    let namespace = app
        .backends
        .as_ref()
        .and_then(|list| list.iter().find(|b| b.backend == BackendKind::Namespace));
    // When the default backend cannot run, finding out why is the first step.
    if let Some(b) = namespace.filter(|b| !b.available) {
        lines.push(Line::from(vec![
            Span::styled(
                "No environments yet, and the default backend (namespace) cannot run here: ",
                theme.warn(),
            ),
            Span::raw(b.detail.clone()),
        ]));
        lines.push(Line::from(vec![
            key("p"),
            Span::raw("see every prerequisite check with its fix "),
            Span::styled("(the mock backend runs anywhere)", theme.dim()),
        ]));
    } else {
        lines.push(Line::styled(
            "No environments yet. Next step:",
            theme.bold(),
        ));
    }
    lines.extend([
        Line::from(vec![
            key("b"),
            Span::raw("build a manifest (a karapace.toml or its directory)"),
        ]),
        Line::from(vec![
            key("n"),
            Span::raw("write a template into a directory and build it"),
        ]),
        Line::from(vec![
            key("E"),
            Span::raw("start from a template in the editor, checked as you type"),
        ]),
        Line::from(vec![
            key(":"),
            Span::raw("commands (:build PATH, :edit PATH, :doctor)   "),
            Span::styled("?", theme.key()),
            Span::raw(" all keys"),
        ]),
    ]);
    Paragraph::new(lines)
        .wrap(Wrap { trim: false })
        .block(Block::new().padding(Padding::horizontal(1)))
}

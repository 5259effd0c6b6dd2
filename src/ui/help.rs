//! The `?` overlay, generated from the key map and the palette's verbs: what it lists is what
//! the keys do.

use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};
use ratatui::Frame;

use crate::app::keymap::{self, Section};
use crate::app::palette::VERBS;
use crate::app::App;

/// Every line of the help text.
pub fn lines(app: &App) -> Vec<Line<'static>> {
    let theme = &app.theme;
    let mut out = Vec::new();
    for section in Section::ALL {
        if !out.is_empty() {
            out.push(Line::default());
        }
        out.push(Line::styled(format!(" {}", section.title()), theme.bold()));
        for b in keymap::section(section) {
            out.push(Line::from(vec![
                Span::styled(
                    format!("   {:<16}", keymap::keys_label(b.keys)),
                    theme.key(),
                ),
                Span::raw(b.help),
            ]));
        }
        if section == Section::Editor {
            for (keys, what) in [
                ("any other key", "edits the text (any script)"),
                (
                    "arrows Home End",
                    "move; Ctrl-Home/Ctrl-End: first/last line",
                ),
                ("PgUp PgDn", "scroll a page"),
                ("Ctrl-u Ctrl-r", "undo, redo"),
                (
                    "Ctrl-k Ctrl-w",
                    "delete to the end of the line, the word before",
                ),
            ] {
                out.push(Line::from(vec![
                    Span::styled(format!("   {keys:<16}"), theme.key()),
                    Span::raw(what),
                ]));
            }
        }
        if section == Section::Input {
            out.push(Line::from(vec![
                Span::styled(format!("   {:<16}", "any character"), theme.key()),
                Span::raw("is typed (any script)"),
            ]));
        }
    }
    out.push(Line::default());
    out.push(Line::styled(
        " Commands (: then the verb; ENV defaults to the selection)",
        theme.bold(),
    ));
    for verb in VERBS {
        out.push(Line::from(vec![
            Span::styled("   :", theme.key()),
            Span::raw(verb.usage),
        ]));
    }
    out
}

pub fn draw(app: &App, frame: &mut Frame, area: Rect, scroll: u16) {
    let theme = &app.theme;
    let rect = Rect::new(
        area.x + 2.min(area.width / 10),
        area.y + 1.min(area.height / 10),
        area.width.saturating_sub(2 * 2.min(area.width / 10)),
        area.height.saturating_sub(2 * 1.min(area.height / 10)),
    );
    let text = lines(app);
    let view = rect.height.saturating_sub(2);
    let total = text.len() as u16;
    let scroll = scroll.min(total.saturating_sub(view));
    let position = format!(
        " {}–{} of {}  j/k scroll  Esc close ",
        scroll + 1,
        (scroll + view).min(total),
        total
    );
    let block = Block::new()
        .borders(Borders::ALL)
        .border_style(theme.border())
        .title(Span::styled(" Keys ", theme.title(false)))
        .title_bottom(Line::styled(position, theme.dim()).right_aligned());
    frame.render_widget(Clear, rect);
    frame.render_widget(Paragraph::new(text).block(block).scroll((scroll, 0)), rect);
}

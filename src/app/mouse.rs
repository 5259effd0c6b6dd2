//! The mouse, for those who turn it on (`[tui] mouse = true`, see `settings.rs`; the terminal
//! only reports it then, `crate::tui`). Every action stays on the keyboard; the mouse adds
//! pointing: the wheel scrolls the pane under the pointer, a click on a row of the list
//! selects it, a click on a pane gives it the focus.

use crossterm::event::{MouseButton, MouseEvent, MouseEventKind};
use ratatui::layout::Position;

use super::action::Action;
use super::keymap::Mode;
use super::{App, Focus};

/// Lines per wheel notch, as most terminals and pagers scroll.
const WHEEL_LINES: usize = 3;

impl App {
    pub(crate) fn mouse(&mut self, event: MouseEvent) {
        let wheel = match event.kind {
            MouseEventKind::ScrollDown => Some(Action::Down),
            MouseEventKind::ScrollUp => Some(Action::Up),
            _ => None,
        };
        match self.mode() {
            Mode::List | Mode::Log => {}
            // Help, reports, the prerequisite screen, the list of shells: the wheel moves as
            // the arrow keys do.
            Mode::Help | Mode::Message | Mode::Prereq | Mode::Sessions => {
                if let Some(action) = wheel {
                    (0..WHEEL_LINES).for_each(|_| self.apply(action));
                }
                return;
            }
            // Typing, a question, the editor: the keyboard has them.
            _ => return,
        }
        let areas = crate::ui::layout(self);
        let at = Position::new(event.column, event.row);
        let pane = if areas.list.contains(at) {
            Focus::List
        } else if areas.log.contains(at) {
            Focus::Log
        } else {
            return;
        };
        if let Some(action) = wheel {
            // The pane under the pointer scrolls; the focus stays where it was.
            let focus = std::mem::replace(&mut self.focus, pane);
            (0..WHEEL_LINES).for_each(|_| self.apply(action));
            self.focus = focus;
            return;
        }
        if event.kind != MouseEventKind::Down(MouseButton::Left) {
            return;
        }
        self.focus = pane;
        if pane == Focus::List {
            // The list's title and column header take its first two lines.
            let row = usize::from(at.y - areas.list.y);
            let Some(line) = row.checked_sub(2) else {
                return;
            };
            let index = self.envs.offset() + line;
            if index < self.envs.visible_len() {
                let delta = index as i64 - self.envs.cursor() as i64;
                self.envs.move_by(delta);
                self.request_details();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crossterm::event::{
        Event as TermEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind,
    };

    use crate::app::fixtures::{env, loaded};
    use crate::app::{AppEvent, Focus};
    use crate::engine::StateView;

    fn mouse(app: &mut crate::app::App, kind: MouseEventKind, column: u16, row: u16) {
        app.handle(AppEvent::Input(TermEvent::Mouse(MouseEvent {
            kind,
            column,
            row,
            modifiers: KeyModifiers::NONE,
        })));
    }

    #[test]
    fn a_click_selects_a_row_and_the_wheel_scrolls_the_pane_under_the_pointer() {
        let mut app = loaded(100, 40);
        let rows = (0..30u8)
            .map(|i| env(&format!("env{i:02}"), i, StateView::Built, 0))
            .collect();
        app.envs.set_rows(rows, Vec::new());
        app.envs.to_first();
        let areas = crate::ui::layout(&app);
        assert_eq!((app.envs.cursor(), app.envs.offset()), (0, 0));
        // The third row of the table (below the title and the column header).
        mouse(
            &mut app,
            MouseEventKind::Down(MouseButton::Left),
            areas.list.x + 3,
            areas.list.y + 2 + 2,
        );
        assert_eq!(app.envs.cursor(), 2);
        assert_eq!(app.focus, Focus::List);
        // The title line selects nothing.
        mouse(
            &mut app,
            MouseEventKind::Down(MouseButton::Left),
            areas.list.x + 3,
            areas.list.y,
        );
        assert_eq!(app.envs.cursor(), 2);
        // The wheel over the list moves it three rows.
        mouse(
            &mut app,
            MouseEventKind::ScrollDown,
            areas.list.x + 3,
            areas.list.y + 3,
        );
        assert_eq!(app.envs.cursor(), 5);
        mouse(
            &mut app,
            MouseEventKind::ScrollUp,
            areas.list.x + 3,
            areas.list.y + 3,
        );
        assert_eq!(app.envs.cursor(), 2);
        // A click on the log pane gives it the focus; the selection stays.
        mouse(
            &mut app,
            MouseEventKind::Down(MouseButton::Left),
            areas.log.x + 3,
            areas.log.y + 1,
        );
        assert_eq!(app.focus, Focus::Log);
        assert_eq!(app.envs.cursor(), 2);
        // The wheel over the list scrolls it without taking the focus from the log.
        mouse(
            &mut app,
            MouseEventKind::ScrollDown,
            areas.list.x + 3,
            areas.list.y + 3,
        );
        assert_eq!(app.envs.cursor(), 5);
        assert_eq!(app.focus, Focus::Log);
    }
}

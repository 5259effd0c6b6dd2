//! Colours: the terminal's own 16 (no RGB, no 256-colour indices), chosen to read on dark and
//! light backgrounds alike — foreground colours only, never a background colour, and dim text
//! through the DIM attribute rather than a grey that vanishes on some schemes. Selection is
//! reverse video, which every palette renders legibly.
//!
//! `NO_COLOR` (no-color.org: set and not empty) turns every colour off; bold, dim, underline
//! and reverse still mark what colour would.

use ratatui::style::{Color, Modifier, Style};

use crate::engine::StateView;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Theme {
    pub color: bool,
}

impl Theme {
    pub fn new(color: bool) -> Theme {
        Theme { color }
    }

    /// Colours unless `NO_COLOR` is set to a non-empty value.
    pub fn from_env() -> Theme {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Theme::new(!no_color)
    }

    fn fg(&self, color: Color) -> Style {
        if self.color {
            Style::new().fg(color)
        } else {
            Style::new()
        }
    }

    pub fn text(&self) -> Style {
        Style::new()
    }

    pub fn dim(&self) -> Style {
        Style::new().add_modifier(Modifier::DIM)
    }

    pub fn bold(&self) -> Style {
        Style::new().add_modifier(Modifier::BOLD)
    }

    /// Pane titles; the focused pane's is also reversed.
    pub fn title(&self, focused: bool) -> Style {
        let style = self.fg(Color::Cyan).add_modifier(Modifier::BOLD);
        if focused {
            style.add_modifier(Modifier::REVERSED)
        } else {
            style
        }
    }

    /// The rule under a pane title.
    pub fn border(&self) -> Style {
        self.fg(Color::Cyan)
    }

    pub fn table_header(&self) -> Style {
        Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED)
    }

    pub fn selected(&self) -> Style {
        Style::new().add_modifier(Modifier::REVERSED | Modifier::BOLD)
    }

    /// A key in hints and help.
    pub fn key(&self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }

    pub fn ok(&self) -> Style {
        self.fg(Color::Green)
    }

    pub fn warn(&self) -> Style {
        self.fg(Color::Yellow).add_modifier(Modifier::BOLD)
    }

    pub fn error(&self) -> Style {
        self.fg(Color::Red).add_modifier(Modifier::BOLD)
    }

    /// Log lines that match the search; the current match is `selected`.
    pub fn matched(&self) -> Style {
        self.fg(Color::Yellow).add_modifier(Modifier::UNDERLINED)
    }

    pub fn state(&self, state: StateView) -> Style {
        match state {
            StateView::Running => self.fg(Color::Green).add_modifier(Modifier::BOLD),
            StateView::Built => self.fg(Color::Green),
            StateView::Frozen => self.fg(Color::Cyan),
            StateView::Archived => self.fg(Color::Magenta),
            StateView::Defined => self.fg(Color::Yellow),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_color_leaves_only_attributes() {
        let plain = Theme::new(false);
        for style in [
            plain.ok(),
            plain.warn(),
            plain.error(),
            plain.key(),
            plain.title(true),
            plain.state(StateView::Running),
        ] {
            assert_eq!(style.fg, None, "{style:?}");
            assert_eq!(style.bg, None, "{style:?}");
        }
        assert!(plain.selected().add_modifier.contains(Modifier::REVERSED));
    }

    #[test]
    fn colours_are_from_the_sixteen_and_never_backgrounds() {
        let theme = Theme::new(true);
        for style in [
            theme.ok(),
            theme.warn(),
            theme.error(),
            theme.key(),
            theme.matched(),
        ] {
            assert!(
                !matches!(style.fg, Some(Color::Rgb(..) | Color::Indexed(_))),
                "{style:?}"
            );
            assert_eq!(style.bg, None);
        }
    }
}

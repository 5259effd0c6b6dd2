//! A one-line text input (filter, search, prompts, the palette).
//!
//! The cursor counts characters, never bytes, so editing names and paths in any script cannot
//! split a UTF-8 sequence (the original TUI panicked on the first non-ASCII key).

use super::action::Action;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LineInput {
    text: String,
    /// Position of the cursor, in characters from the start.
    cursor: usize,
}

impl LineInput {
    /// An input holding `text`, the cursor at its end.
    pub fn with_text(text: impl Into<String>) -> LineInput {
        let text = text.into();
        let cursor = text.chars().count();
        LineInput { text, cursor }
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn cursor(&self) -> usize {
        self.cursor
    }

    pub fn set(&mut self, text: impl Into<String>) {
        *self = LineInput::with_text(text);
    }

    /// Apply an editing action; returns whether the text changed. Other actions are ignored.
    pub fn edit(&mut self, action: Action) -> bool {
        let len = self.text.chars().count();
        match action {
            Action::Insert(c) => {
                let at = self.byte_at(self.cursor);
                self.text.insert(at, c);
                self.cursor += 1;
                true
            }
            Action::Backspace if self.cursor > 0 => {
                self.cursor -= 1;
                self.remove_at(self.cursor);
                true
            }
            Action::Delete if self.cursor < len => {
                self.remove_at(self.cursor);
                true
            }
            Action::Left => {
                self.cursor = self.cursor.saturating_sub(1);
                false
            }
            Action::Right => {
                self.cursor = (self.cursor + 1).min(len);
                false
            }
            Action::Home => {
                self.cursor = 0;
                false
            }
            Action::End => {
                self.cursor = len;
                false
            }
            Action::ClearLine => {
                let changed = !self.text.is_empty();
                self.set(String::new());
                changed
            }
            Action::DeleteWord => self.delete_word(),
            _ => false,
        }
    }

    /// Delete back to the start of the word before the cursor (spaces first, then the word, as
    /// readline's Ctrl-W does).
    fn delete_word(&mut self) -> bool {
        let chars: Vec<char> = self.text.chars().collect();
        let mut start = self.cursor;
        while start > 0 && chars[start - 1] == ' ' {
            start -= 1;
        }
        while start > 0 && chars[start - 1] != ' ' {
            start -= 1;
        }
        if start == self.cursor {
            return false;
        }
        let (from, to) = (self.byte_at(start), self.byte_at(self.cursor));
        self.text.replace_range(from..to, "");
        self.cursor = start;
        true
    }

    fn byte_at(&self, chars: usize) -> usize {
        self.text
            .char_indices()
            .nth(chars)
            .map_or(self.text.len(), |(i, _)| i)
    }

    fn remove_at(&mut self, chars: usize) {
        let at = self.byte_at(chars);
        if at < self.text.len() {
            self.text.remove(at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(s: &str) -> LineInput {
        let mut input = LineInput::default();
        for c in s.chars() {
            input.edit(Action::Insert(c));
        }
        input
    }

    #[test]
    fn editing_non_ascii_text_never_splits_a_character() {
        let mut input = typed("Grüße 漢字🦀");
        assert_eq!(input.cursor(), 9);
        input.edit(Action::Backspace);
        assert_eq!(input.text(), "Grüße 漢字");
        input.edit(Action::Left);
        input.edit(Action::Left);
        input.edit(Action::Insert('é'));
        assert_eq!(input.text(), "Grüße é漢字");
        input.edit(Action::Delete);
        assert_eq!(input.text(), "Grüße é字");
        input.edit(Action::Home);
        input.edit(Action::Delete);
        assert_eq!(input.text(), "rüße é字");
        input.edit(Action::End);
        input.edit(Action::Right);
        assert_eq!(input.cursor(), 7);
    }

    #[test]
    fn backspace_and_delete_at_the_ends_change_nothing() {
        let mut input = typed("ab");
        assert!(!input.edit(Action::Delete));
        input.edit(Action::Home);
        assert!(!input.edit(Action::Backspace));
        assert_eq!(input.text(), "ab");
    }

    #[test]
    fn ctrl_w_deletes_the_previous_word_and_ctrl_u_the_line() {
        let mut input = typed("build ~/my project  ");
        assert!(input.edit(Action::DeleteWord));
        assert_eq!(input.text(), "build ~/my ");
        input.edit(Action::DeleteWord);
        assert_eq!(input.text(), "build ");
        input.edit(Action::ClearLine);
        assert_eq!((input.text(), input.cursor()), ("", 0));
        assert!(!input.edit(Action::DeleteWord));
    }
}

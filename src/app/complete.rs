//! Tab completion: paths in the build and new prompts, verbs in the palette.

use super::palette;
use super::popup::{Popup, PromptKind};
use super::App;

impl App {
    pub(crate) fn complete(&mut self) {
        let Some(popup) = self.popups.last() else {
            return;
        };
        match popup {
            Popup::Palette { input, .. } => {
                let text = input.text().trim_start().to_string();
                if text.contains(' ') {
                    return; // past the verb: arguments are free text
                }
                let names: Vec<&str> = palette::completions(&text).iter().map(|v| v.name).collect();
                let completed = match names.as_slice() {
                    [one] => format!("{one} "),
                    many => common_prefix(many).unwrap_or(text),
                };
                if let Some(Popup::Palette { input, .. }) = self.popups.last_mut() {
                    input.set(completed);
                }
            }
            Popup::Prompt(prompt) if matches!(prompt.kind, PromptKind::Build | PromptKind::New) => {
                let text = prompt.input.text().to_string();
                let dir_only = prompt.kind == PromptKind::New;
                let (completed, candidates) = self.complete_path(&text, dir_only);
                if let Some(Popup::Prompt(prompt)) = self.popups.last_mut() {
                    prompt.input.set(completed);
                    prompt.candidates = candidates;
                }
            }
            _ => {}
        }
    }

    /// Complete the last component of `text` against its directory: one match completes (a
    /// directory gets its `/`), several complete their common prefix and are returned.
    fn complete_path(&self, text: &str, dir_only: bool) -> (String, Vec<String>) {
        let (dir_part, prefix) = match text.rfind('/') {
            Some(i) => text.split_at(i + 1),
            None => ("", text),
        };
        let dir = if dir_part.is_empty() {
            self.context.cwd.clone()
        } else {
            self.expand(dir_part)
        };
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return (text.to_string(), Vec::new());
        };
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().to_str()?.to_string();
                let hidden = name.starts_with('.') && !prefix.starts_with('.');
                // Following symlinks: a linked project directory completes like a directory.
                let is_dir = dir.join(&name).is_dir();
                (name.starts_with(prefix) && !hidden && (is_dir || !dir_only)).then(|| {
                    if is_dir {
                        format!("{name}/")
                    } else {
                        name
                    }
                })
            })
            .collect();
        names.sort();
        match names.as_slice() {
            [] => (text.to_string(), Vec::new()),
            [one] => (format!("{dir_part}{one}"), Vec::new()),
            many => {
                let refs: Vec<&str> = many.iter().map(String::as_str).collect();
                let common = common_prefix(&refs).unwrap_or_else(|| prefix.to_string());
                (format!("{dir_part}{common}"), names)
            }
        }
    }
}

/// The longest common prefix of several words (by characters), if they have one.
fn common_prefix(words: &[&str]) -> Option<String> {
    let first = words.first()?;
    let mut len = first.chars().count();
    for w in &words[1..] {
        len = len.min(
            first
                .chars()
                .zip(w.chars())
                .take_while(|(a, b)| a == b)
                .count(),
        );
    }
    (len > 0).then(|| first.chars().take(len).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_prefix_counts_characters() {
        assert_eq!(common_prefix(&["rebuild", "rename"]), Some("re".into()));
        assert_eq!(common_prefix(&["über1", "über2"]), Some("über".into()));
        assert_eq!(common_prefix(&["a", "b"]), None);
        assert_eq!(common_prefix(&[]), None);
    }
}

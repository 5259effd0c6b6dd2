//! The log pane's state: a bounded ring of lines, the scroll position, follow, and search.
//!
//! Lines are addressed by an absolute number that keeps counting when old lines fall off the
//! front, so a paused view and a search match stay on their line while new lines arrive.
//! Pushing is O(1) and drawing reads only the visible window, whatever the buffer holds.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::events::Level;

/// How many lines the pane keeps by default; older ones are dropped.
pub const DEFAULT_CAPACITY: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub level: Level,
    /// The job that wrote it (`build ./proj`), shared by all of its lines.
    pub source: Option<Arc<str>>,
    pub text: String,
}

#[derive(Debug, Clone)]
pub struct LogBuffer {
    lines: VecDeque<LogLine>,
    capacity: usize,
    /// Absolute number of `lines[0]`.
    first: u64,
    /// Show the newest lines as they arrive.
    follow: bool,
    /// Absolute number of the top visible line while not following.
    top: u64,
    /// Visible lines, from the last layout.
    height: usize,
    /// The search, lowercased, and the line it last landed on.
    search: Option<String>,
    current: Option<u64>,
}

impl Default for LogBuffer {
    fn default() -> Self {
        LogBuffer::new(DEFAULT_CAPACITY)
    }
}

impl LogBuffer {
    pub fn new(capacity: usize) -> LogBuffer {
        LogBuffer {
            lines: VecDeque::with_capacity(capacity.min(1024)),
            capacity: capacity.max(1),
            first: 0,
            follow: true,
            top: 0,
            height: 1,
            search: None,
            current: None,
        }
    }

    pub fn push(&mut self, level: Level, source: Option<Arc<str>>, text: impl Into<String>) {
        if self.lines.len() == self.capacity {
            self.lines.pop_front();
            self.first += 1;
            self.top = self.top.max(self.first);
            if self.current.is_some_and(|c| c < self.first) {
                self.current = None;
            }
        }
        self.lines.push_back(LogLine {
            level,
            source,
            text: text.into(),
        });
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// One past the absolute number of the newest line.
    fn end(&self) -> u64 {
        self.first + self.lines.len() as u64
    }

    pub fn following(&self) -> bool {
        self.follow
    }

    pub fn set_height(&mut self, height: usize) {
        self.height = height.max(1);
    }

    pub fn height(&self) -> usize {
        self.height
    }

    /// The top line of the bottom-most page.
    fn last_top(&self) -> u64 {
        self.end()
            .saturating_sub(self.height as u64)
            .max(self.first)
    }

    /// Absolute number of the top visible line.
    pub fn view_top(&self) -> u64 {
        if self.follow {
            self.last_top()
        } else {
            self.top.clamp(self.first, self.last_top())
        }
    }

    /// Lines after the view (0 while following).
    pub fn below(&self) -> u64 {
        self.end()
            .saturating_sub(self.view_top() + self.height as u64)
    }

    /// The visible lines with their absolute numbers.
    pub fn visible(&self) -> impl Iterator<Item = (u64, &LogLine)> {
        let top = self.view_top();
        let skip = (top - self.first) as usize;
        self.lines
            .iter()
            .skip(skip)
            .take(self.height)
            .enumerate()
            .map(move |(i, line)| (top + i as u64, line))
    }

    /// Scroll by `delta` lines (negative is up). Reaching the bottom turns follow back on.
    pub fn scroll(&mut self, delta: i64) {
        let top = self.view_top() as i64 + delta;
        let top = top.clamp(self.first as i64, self.last_top() as i64) as u64;
        self.top = top;
        self.follow = top >= self.last_top() && delta > 0;
    }

    pub fn to_top(&mut self) {
        self.top = self.first;
        self.follow = false;
    }

    pub fn to_bottom(&mut self) {
        self.follow = true;
    }

    pub fn toggle_follow(&mut self) {
        if self.follow {
            self.top = self.view_top();
            self.follow = false;
        } else {
            self.follow = true;
        }
    }

    /// Start a search for `query` (case-insensitive); an empty query ends the search.
    pub fn set_search(&mut self, query: &str) {
        self.current = None;
        self.search = (!query.is_empty()).then(|| query.to_lowercase());
    }

    pub fn search(&self) -> Option<&str> {
        self.search.as_deref()
    }

    /// The line the search last landed on.
    pub fn current_match(&self) -> Option<u64> {
        self.current
    }

    /// Whether `line` contains the search.
    pub fn matches(&self, line: &LogLine) -> bool {
        self.search
            .as_deref()
            .is_some_and(|q| line.text.to_lowercase().contains(q))
    }

    /// Jump to the next (or previous) matching line, wrapping around; false when none matches.
    pub fn find(&mut self, forward: bool) -> bool {
        if self.search.is_none() || self.lines.is_empty() {
            return false;
        }
        let n = self.lines.len() as u64;
        // From the last match, exclusive; a fresh search starts inside the view, inclusive:
        // forward from its top line, backward from its bottom line.
        let (start, first_step) = match self.current {
            Some(c) => (c - self.first, 1),
            None if forward => (self.view_top() - self.first, 0),
            None => {
                let bottom = (self.view_top() + self.height as u64).min(self.end()) - 1;
                (bottom - self.first, 0)
            }
        };
        for step in first_step..first_step + n {
            let i = if forward {
                (start + step) % n
            } else {
                (start + n - step % n) % n
            };
            if self.matches(&self.lines[i as usize]) {
                self.reveal(self.first + i);
                return true;
            }
        }
        false
    }

    /// Scroll so that `line` is visible (centred when the view has to move) and mark it.
    fn reveal(&mut self, line: u64) {
        self.current = Some(line);
        let top = self.view_top();
        if line < top || line >= top + self.height as u64 {
            self.top = line
                .saturating_sub(self.height as u64 / 2)
                .clamp(self.first, self.last_top());
        } else {
            self.top = top;
        }
        self.follow = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled(n: usize, capacity: usize, height: usize) -> LogBuffer {
        let mut log = LogBuffer::new(capacity);
        log.set_height(height);
        for i in 0..n {
            log.push(Level::Info, None, format!("line {i}"));
        }
        log
    }

    fn shown(log: &LogBuffer) -> Vec<String> {
        log.visible().map(|(_, l)| l.text.clone()).collect()
    }

    #[test]
    fn the_buffer_is_bounded_and_keeps_the_newest_lines() {
        let log = filled(25, 10, 3);
        assert_eq!(log.len(), 10);
        assert_eq!(shown(&log), ["line 22", "line 23", "line 24"]);
        assert_eq!(log.visible().next().map(|(n, _)| n), Some(22));
    }

    #[test]
    fn scrolling_up_pauses_and_reaching_the_bottom_follows_again() {
        let mut log = filled(10, 100, 3);
        log.scroll(-2);
        assert!(!log.following());
        assert_eq!(shown(&log), ["line 5", "line 6", "line 7"]);
        // New lines do not move a paused view.
        log.push(Level::Info, None, "line 10");
        assert_eq!(shown(&log), ["line 5", "line 6", "line 7"]);
        log.scroll(100);
        assert!(log.following());
        assert_eq!(shown(&log), ["line 8", "line 9", "line 10"]);
        log.to_top();
        assert_eq!(shown(&log)[0], "line 0");
        log.toggle_follow();
        assert!(log.following());
    }

    #[test]
    fn a_paused_view_stays_on_its_line_until_that_line_is_dropped() {
        let mut log = filled(10, 10, 3);
        log.scroll(-3); // top is line 4
        assert_eq!(shown(&log)[0], "line 4");
        for i in 10..13 {
            log.push(Level::Info, None, format!("line {i}"));
        }
        assert_eq!(shown(&log)[0], "line 4");
        for i in 13..20 {
            log.push(Level::Info, None, format!("line {i}"));
        }
        // Lines 0..=9 are gone; the view clamps to the oldest kept line.
        assert_eq!(shown(&log)[0], "line 10");
    }

    #[test]
    fn search_finds_forward_and_backward_with_wrap_around() {
        let mut log = LogBuffer::new(100);
        log.set_height(2);
        for text in [
            "alpha",
            "Needle one",
            "beta",
            "gamma",
            "needle two",
            "delta",
        ] {
            log.push(Level::Info, None, text);
        }
        log.to_top();
        log.set_search("NEEDLE");
        assert!(log.find(true));
        assert_eq!(log.current_match(), Some(1));
        assert!(log.find(true));
        assert_eq!(log.current_match(), Some(4));
        assert!(shown(&log).contains(&"needle two".to_string()));
        assert!(log.find(true), "wraps to the first match");
        assert_eq!(log.current_match(), Some(1));
        assert!(log.find(false), "wraps back to the last match");
        assert_eq!(log.current_match(), Some(4));
        log.set_search("absent");
        assert!(!log.find(true));
        log.set_search("");
        assert_eq!(log.search(), None);
    }

    #[test]
    fn a_fresh_search_matches_the_top_line_itself() {
        let mut log = LogBuffer::new(100);
        log.set_height(5);
        log.push(Level::Info, None, "needle first");
        log.push(Level::Info, None, "other");
        log.set_search("needle");
        assert!(log.find(true));
        assert_eq!(log.current_match(), Some(0));
    }
}

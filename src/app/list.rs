//! The environment list's state: rows from `Engine::list`, the filter, the sort, the
//! selection and the scroll offset.
//!
//! The selection follows an environment (by id), not a row number, so it stays on the same
//! environment when the list is reloaded, re-sorted or filtered. Filtering and sorting run
//! when their input changes, never while drawing: drawing reads `visible` only.

use std::cmp::Ordering;

use crate::engine::EnvSummary;
use crate::types::EnvId;

/// What the list is sorted by; `o` cycles through them in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortKey {
    #[default]
    Name,
    State,
    Backend,
    Image,
    /// Newest first.
    Updated,
}

impl SortKey {
    pub fn next(self) -> SortKey {
        match self {
            SortKey::Name => SortKey::State,
            SortKey::State => SortKey::Backend,
            SortKey::Backend => SortKey::Image,
            SortKey::Image => SortKey::Updated,
            SortKey::Updated => SortKey::Name,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            SortKey::Name => "name",
            SortKey::State => "state",
            SortKey::Backend => "backend",
            SortKey::Image => "image",
            SortKey::Updated => "updated",
        }
    }
}

/// An environment whose metadata could not be read (shown, never hidden).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenRow {
    pub id: EnvId,
    pub error: String,
}

#[derive(Debug, Default)]
pub struct EnvList {
    rows: Vec<EnvSummary>,
    broken: Vec<BrokenRow>,
    /// Indices into `rows`: filtered, in sort order.
    visible: Vec<usize>,
    /// Index into `visible`.
    cursor: usize,
    /// First visible row of the table.
    offset: usize,
    /// Rows the table shows, from the last layout.
    height: usize,
    filter: String,
    sort: SortKey,
    reverse: bool,
    /// Set once the first `list` has answered.
    loaded: bool,
    /// Select this environment when it shows up (a build's result, before the reload).
    wanted: Option<EnvId>,
}

impl EnvList {
    /// Replace the rows with a fresh `list`, keeping the selection on the same environment.
    pub fn set_rows(&mut self, rows: Vec<EnvSummary>, broken: Vec<BrokenRow>) {
        let keep = self.wanted.take().or_else(|| self.selected_id().cloned());
        self.rows = rows;
        self.broken = broken;
        self.loaded = true;
        self.refilter(keep.as_ref());
    }

    pub fn loaded(&self) -> bool {
        self.loaded
    }

    /// True when the store has no environment at all (not merely none matching the filter).
    pub fn store_is_empty(&self) -> bool {
        self.loaded && self.rows.is_empty() && self.broken.is_empty()
    }

    pub fn total(&self) -> usize {
        self.rows.len()
    }

    pub fn broken(&self) -> &[BrokenRow] {
        &self.broken
    }

    /// Running sessions of the environment a CLI-style query names (exact name, or an id
    /// prefix of at least 4 characters), as last listed; 0 when it is not in the list.
    pub fn sessions_of(&self, query: &str) -> usize {
        self.find(query).map_or(0, |e| e.sessions)
    }

    /// The environment a CLI-style query names, as last listed.
    pub fn find(&self, query: &str) -> Option<&EnvSummary> {
        self.rows.iter().find(|e| {
            e.name.as_deref() == Some(query)
                || (query.len() >= 4 && e.id.as_str().starts_with(query))
        })
    }

    /// Every environment, as last listed, whatever the filter.
    pub fn rows(&self) -> &[EnvSummary] {
        &self.rows
    }

    pub fn want(&mut self, id: EnvId) {
        if !self.select_id(&id) {
            self.wanted = Some(id);
        }
    }

    pub fn selected(&self) -> Option<&EnvSummary> {
        self.visible.get(self.cursor).map(|&i| &self.rows[i])
    }

    pub fn selected_id(&self) -> Option<&EnvId> {
        self.selected().map(|e| &e.id)
    }

    /// Index of the selection among the visible rows.
    pub fn cursor(&self) -> usize {
        self.cursor
    }

    pub fn offset(&self) -> usize {
        self.offset
    }

    pub fn visible_len(&self) -> usize {
        self.visible.len()
    }

    /// The rows the table shows now: from the offset, at most one screen.
    pub fn window(&self) -> impl Iterator<Item = (usize, &EnvSummary)> {
        self.visible
            .iter()
            .enumerate()
            .skip(self.offset)
            .take(self.height.max(1))
            .map(|(pos, &i)| (pos, &self.rows[i]))
    }

    pub fn filter(&self) -> &str {
        &self.filter
    }

    pub fn set_filter(&mut self, filter: &str) {
        if filter != self.filter {
            self.filter = filter.to_string();
            let keep = self.selected_id().cloned();
            self.refilter(keep.as_ref());
        }
    }

    pub fn sort(&self) -> (SortKey, bool) {
        (self.sort, self.reverse)
    }

    pub fn cycle_sort(&mut self) {
        self.sort = self.sort.next();
        self.reverse = false;
        self.resort();
    }

    pub fn reverse_sort(&mut self) {
        self.reverse = !self.reverse;
        self.resort();
    }

    pub fn set_height(&mut self, height: usize) {
        self.height = height.max(1);
        self.scroll_to_cursor();
    }

    pub fn height(&self) -> usize {
        self.height
    }

    /// Move the selection by `delta` rows, stopping at the ends.
    pub fn move_by(&mut self, delta: i64) {
        if self.visible.is_empty() {
            return;
        }
        let last = self.visible.len() as i64 - 1;
        self.cursor = (self.cursor as i64 + delta).clamp(0, last) as usize;
        self.scroll_to_cursor();
    }

    pub fn to_first(&mut self) {
        self.cursor = 0;
        self.scroll_to_cursor();
    }

    pub fn to_last(&mut self) {
        self.cursor = self.visible.len().saturating_sub(1);
        self.scroll_to_cursor();
    }

    fn resort(&mut self) {
        let keep = self.selected_id().cloned();
        self.refilter(keep.as_ref());
    }

    /// Recompute `visible` from the filter and the sort, then put the cursor back on `keep`.
    fn refilter(&mut self, keep: Option<&EnvId>) {
        let (query, inverse) = match self.filter.strip_prefix('!') {
            Some(rest) => (rest.to_lowercase(), true),
            None => (self.filter.to_lowercase(), false),
        };
        self.visible = (0..self.rows.len())
            .filter(|&i| query.is_empty() || matches(&self.rows[i], &query) != inverse)
            .collect();
        let (rows, key, reverse) = (&self.rows, self.sort, self.reverse);
        self.visible.sort_by(|&a, &b| {
            let order = compare(&rows[a], &rows[b], key);
            if reverse {
                order.reverse()
            } else {
                order
            }
        });
        let found = keep.is_some_and(|id| self.select_id(id));
        if !found {
            self.cursor = self.cursor.min(self.visible.len().saturating_sub(1));
        }
        self.scroll_to_cursor();
    }

    fn select_id(&mut self, id: &EnvId) -> bool {
        match self.visible.iter().position(|&i| self.rows[i].id == *id) {
            Some(pos) => {
                self.cursor = pos;
                self.scroll_to_cursor();
                true
            }
            None => false,
        }
    }

    /// Move the offset the least needed to show the cursor, and never past the last page.
    fn scroll_to_cursor(&mut self) {
        let height = self.height.max(1);
        if self.cursor < self.offset {
            self.offset = self.cursor;
        } else if self.cursor >= self.offset + height {
            self.offset = self.cursor + 1 - height;
        }
        self.offset = self.offset.min(self.visible.len().saturating_sub(height));
    }
}

/// Case-insensitive substring match on what the row shows (`query` is lowercase).
fn matches(env: &EnvSummary, query: &str) -> bool {
    let name = env.name.as_deref().unwrap_or("");
    [
        name,
        env.id.as_str(),
        env.state.as_str(),
        env.backend.as_str(),
        &env.image,
    ]
    .iter()
    .any(|field| field.to_lowercase().contains(query))
}

/// The order of two rows by `key`; ties fall back to name, then id, so the order is total.
fn compare(a: &EnvSummary, b: &EnvSummary, key: SortKey) -> Ordering {
    let primary = match key {
        SortKey::Name => Ordering::Equal,
        SortKey::State => a.state.as_str().cmp(b.state.as_str()),
        SortKey::Backend => a.backend.as_str().cmp(b.backend.as_str()),
        SortKey::Image => a.image.cmp(&b.image),
        SortKey::Updated => b.updated_at.cmp(&a.updated_at),
    };
    primary
        .then_with(|| (a.name.is_none(), &a.name, &a.id).cmp(&(b.name.is_none(), &b.name, &b.id)))
}

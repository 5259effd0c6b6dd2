//! Progress and log events from long operations (build, pull, gc …).
//!
//! The engine and the backends never print: they emit [`Event`]s into an [`EventSink`]. The CLI's
//! sink writes them to stderr (stdout is reserved for results, so `--json` stays parseable); the
//! TUI's sink forwards them into its event channel to stream into the log pane.

use std::sync::Mutex;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Debug,
    Info,
    Warn,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A line of build output or a step description.
    Log { level: Level, message: String },
    /// Progress of a measurable task (bytes downloaded, packages installed …).
    Progress {
        task: String,
        done: u64,
        total: Option<u64>,
    },
}

impl Event {
    pub fn info(message: impl Into<String>) -> Event {
        Event::Log {
            level: Level::Info,
            message: message.into(),
        }
    }

    pub fn warn(message: impl Into<String>) -> Event {
        Event::Log {
            level: Level::Warn,
            message: message.into(),
        }
    }

    pub fn debug(message: impl Into<String>) -> Event {
        Event::Log {
            level: Level::Debug,
            message: message.into(),
        }
    }
}

/// A byte count for people: `"812 B"`, `"1.5 KiB"`, `"12.3 MiB"`, `"1.0 GiB"`, `"2.0 TiB"`.
pub fn human_bytes(bytes: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Between a progress task's name and its rate: `"downloading debian @ 12.3 MiB/s"`.
pub const RATE_SEPARATOR: &str = " @ ";

/// Splits a progress `task` into its name and its rate text (`"12.5 MiB/s"`), if it has one.
pub fn split_rate(task: &str) -> (&str, Option<&str>) {
    match task.rsplit_once(RATE_SEPARATOR) {
        Some((name, rate)) => (name, Some(rate)),
        None => (task, None),
    }
}

/// A one-line progress bar: `name [#########-----------]  45%  34.0 MiB/76.4 MiB  12.0 MiB/s`.
/// Byte counts are shown humanised for download tasks (their names start with
/// "downloading"), plain counts otherwise.
pub fn progress_line(task: &str, done: u64, total: Option<u64>, width: usize) -> String {
    let (name, rate) = split_rate(task);
    let bytes = name.starts_with("downloading");
    let count = |n: u64| {
        if bytes {
            human_bytes(n as f64)
        } else {
            n.to_string()
        }
    };
    let mut line = name.to_string();
    match total.filter(|t| *t > 0) {
        Some(total) => {
            let fraction = (done as f64 / total as f64).clamp(0.0, 1.0);
            let filled = (fraction * width as f64).round() as usize;
            line.push_str(&format!(
                " [{}{}] {:>3}%  {}/{}",
                "#".repeat(filled),
                "-".repeat(width.saturating_sub(filled)),
                (fraction * 100.0).round() as u64,
                count(done),
                count(total)
            ));
        }
        None => line.push_str(&format!("  {}", count(done))),
    }
    if let Some(rate) = rate {
        line.push_str(&format!("  {rate}"));
    }
    line
}

/// Where events go. Implementations must be cheap and must not block for long: a build calls
/// this for every line of package-manager output.
pub trait EventSink: Send + Sync {
    fn emit(&self, event: Event);

    /// Whether whoever listens asked the operation to stop (the TUI's cancel key). Long
    /// operations look at it between steps and while they wait, and then fail with
    /// [`crate::engine::EngineError::Cancelled`]; what they did is rolled back like any
    /// failure. The CLI's sink never cancels (Ctrl-C ends the process, which the store's
    /// journal recovers from).
    fn cancelled(&self) -> bool {
        false
    }
}

/// Drops every event; for callers that only want the result.
pub struct NullSink;

impl EventSink for NullSink {
    fn emit(&self, _event: Event) {}
}

/// Keeps every event in memory; used by tests to assert what was reported.
#[derive(Default)]
pub struct MemorySink {
    events: Mutex<Vec<Event>>,
}

impl MemorySink {
    pub fn events(&self) -> Vec<Event> {
        match self.events.lock() {
            Ok(events) => events.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

impl EventSink for MemorySink {
    fn emit(&self, event: Event) {
        match self.events.lock() {
            Ok(mut events) => events.push(event),
            Err(poisoned) => poisoned.into_inner().push(event),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_humanised() {
        assert_eq!(human_bytes(812.0), "812 B");
        assert_eq!(human_bytes(1536.0), "1.5 KiB");
        assert_eq!(human_bytes(3.0 * 1024.0 * 1024.0 * 1024.0), "3.0 GiB");
    }

    #[test]
    fn progress_line_draws_a_bar() {
        assert_eq!(
            progress_line("downloading debian @ 2.0 MiB/s", 512, Some(1024), 10),
            "downloading debian [#####-----]  50%  512 B/1.0 KiB  2.0 MiB/s"
        );
        assert_eq!(
            progress_line("installing packages", 3, Some(4), 4),
            "installing packages [###-]  75%  3/4"
        );
        assert_eq!(
            progress_line("downloading x", 2048, None, 4),
            "downloading x  2.0 KiB"
        );
    }
}

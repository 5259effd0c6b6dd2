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

/// Where events go. Implementations must be cheap and must not block for long: a build calls
/// this for every line of package-manager output.
pub trait EventSink: Send + Sync {
    fn emit(&self, event: Event);
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

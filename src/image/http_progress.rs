//! Download progress: a `Read` adapter that turns bytes read into throttled
//! [`Event::Progress`] events, with the transfer rate carried in the task text.

use std::io::{self, Read};
use std::time::{Duration, Instant};

use crate::events::{Event, EventSink};

/// How often a [`ProgressReader`] reports.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);

/// What separates the task name from the transfer rate in a progress event's `task`.
pub use crate::events::{split_rate, RATE_SEPARATOR};

/// Bytes per second as `"812 B/s"`, `"1.5 KiB/s"`, `"12.3 MiB/s"`, `"1.0 GiB/s"`.
pub fn format_rate(bytes_per_sec: f64) -> String {
    format!("{}/s", crate::events::human_bytes(bytes_per_sec))
}

/// A `Read` adapter that reports `Event::Progress { task, done, total }` at most every ~100 ms,
/// and once more at end of file. The average rate so far is appended to `task` after
/// [`RATE_SEPARATOR`]; [`split_rate`] takes it apart again.
pub struct ProgressReader<'a, R> {
    inner: R,
    task: String,
    total: Option<u64>,
    sink: &'a dyn EventSink,
    done: u64,
    started: Instant,
    last_emit: Option<Instant>,
    finished: bool,
}

impl<'a, R: Read> ProgressReader<'a, R> {
    pub fn new(
        inner: R,
        task: String,
        total: Option<u64>,
        sink: &'a dyn EventSink,
    ) -> ProgressReader<'a, R> {
        ProgressReader {
            inner,
            task,
            total,
            sink,
            done: 0,
            started: Instant::now(),
            last_emit: None,
            finished: false,
        }
    }

    /// Bytes read so far.
    pub fn done(&self) -> u64 {
        self.done
    }

    pub fn into_inner(self) -> R {
        self.inner
    }

    fn emit(&mut self, now: Instant) {
        let elapsed = now.duration_since(self.started).as_secs_f64();
        let task = if elapsed >= 0.001 && self.done > 0 {
            let rate = format_rate(self.done as f64 / elapsed);
            format!("{}{RATE_SEPARATOR}{rate}", self.task)
        } else {
            self.task.clone()
        };
        self.sink.emit(Event::Progress {
            task,
            done: self.done,
            total: self.total,
        });
        self.last_emit = Some(now);
    }
}

impl<R: Read> Read for ProgressReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // Not `Interrupted`: read_exact and read_to_end would retry that.
        if self.sink.cancelled() {
            return Err(io::Error::other("cancelled by the user"));
        }
        let n = self.inner.read(buf)?;
        self.done += n as u64;
        let now = Instant::now();
        if n == 0 && !buf.is_empty() {
            if !self.finished {
                self.finished = true;
                self.emit(now);
            }
        } else if self
            .last_emit
            .is_none_or(|last| now.duration_since(last) >= PROGRESS_INTERVAL)
        {
            self.emit(now);
        }
        Ok(n)
    }
}

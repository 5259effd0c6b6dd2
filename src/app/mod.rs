//! The terminal UI's state machine and its event loop.
//!
//! One loop, one channel (`event.rs`): the input thread and the workers (`jobs.rs`) only send
//! [`AppEvent`]s; the loop (`run.rs`) blocks on the channel, applies every pending event to
//! [`App`] — keys become [`Action`]s through the pure key map (`keymap.rs`), actions change
//! state in `update.rs` and `dialogs.rs` and queue jobs, job results land in `results.rs` —
//! and then draws once (`crate::ui`, which reads `&App`).
//! Nothing wakes the loop while idle; a tick arrives only while a spinner turns.
//!
//! State is grouped by what it belongs to: the environment list (`list.rs`), the log
//! (`log.rs`), the popup stack (`popup.rs`), running jobs, the prerequisite screen
//! (`prereq.rs`) and the manifest editor (`editor.rs` holds its text and verdict, `edit.rs`
//! what its keys do). [`Screen`] says what fills the terminal; each screen has its own key
//! [`Mode`]s.

pub mod action;
mod complete;
mod dialogs;
mod edit;
pub mod editor;
pub mod event;
pub mod input;
pub mod jobs;
pub mod keymap;
pub mod list;
pub mod log;
mod mouse;
pub mod palette;
pub mod popup;
pub mod prereq;
pub mod pty;
mod results;
mod run;
pub mod settings;
pub mod shells;
mod update;

#[cfg(test)]
pub(crate) mod fixtures;
#[cfg(test)]
mod screen_tests;
#[cfg(test)]
mod shell_tests;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crossterm::event::{Event as TermEvent, KeyEventKind};
use ratatui::layout::Rect;

pub use action::Action;
pub use event::AppEvent;
pub use jobs::{Job, JobId, JobOutput};
pub use keymap::Mode;
pub use run::run;

use self::input::LineInput;
use self::list::EnvList;
use self::log::LogBuffer;
use self::popup::Popup;
use self::shells::Shells;
use crate::engine::EnvDetails;
use crate::events::{Event, Level};
use crate::runtime::backend::Availability;
use crate::types::EnvId;
use crate::ui::theme::Theme;

/// What fills the terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    /// Header, environment list, details, log and status bar.
    Dashboard,
    /// The log pane over the whole height (`z`).
    Log,
    /// Every prerequisite check with its fix (`p`, `:doctor`).
    Prereq,
    /// The manifest editor, with the log pane under it.
    Editor,
}

/// Which dashboard pane gets the movement keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Focus {
    List,
    Log,
}

/// A text input that edits in place rather than in a popup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Editing {
    Filter(LineInput),
    Search(LineInput),
}

/// The details pane's data for one environment (from `inspect`, on a worker).
#[derive(Debug)]
pub enum Details {
    Loading,
    Ready(Box<EnvDetails>),
    Failed(String),
}

/// The last progress report of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    pub task: String,
    pub done: u64,
    pub total: Option<u64>,
}

#[derive(Debug)]
pub struct RunningJob {
    pub job: Job,
    /// How its log lines are tagged.
    pub label: Arc<str>,
    pub progress: Option<Progress>,
    /// Shared with the job's event sink: set to cancel it.
    pub cancel: Arc<AtomicBool>,
}

/// Where the UI runs: paths that prompts complete against and show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    pub store: PathBuf,
    /// `~` in prompts expands to this.
    pub home: PathBuf,
    /// Relative paths in prompts start here.
    pub cwd: PathBuf,
}

/// The whole UI state. Only the event loop changes it; drawing reads it.
#[derive(Debug)]
pub struct App {
    pub(crate) context: Context,
    pub(crate) theme: Theme,
    pub(crate) screen: Screen,
    pub(crate) focus: Focus,
    pub(crate) popups: Vec<Popup>,
    pub(crate) editing: Option<Editing>,
    pub(crate) envs: EnvList,
    pub(crate) details: HashMap<EnvId, Details>,
    /// Disk usage for the list's SIZE column, with the `updated_at` it was measured for
    /// (a rebuild or an unarchive changes that, and the size is measured again).
    pub(crate) sizes: HashMap<EnvId, (u64, u64)>,
    /// A `Job::Sizes` runs.
    sizes_running: bool,
    pub(crate) log: LogBuffer,
    pub(crate) jobs: BTreeMap<JobId, RunningJob>,
    pub(crate) backends: Option<Vec<Availability>>,
    /// Shell sessions on pseudo-terminals (`shells.rs`).
    pub(crate) shells: Shells,
    /// The prerequisite checks (they also give `backends`).
    pub(crate) prereq: prereq::PrereqView,
    /// The manifest being edited (shown on [`Screen::Editor`]).
    pub(crate) editor: Option<editor::Editor>,
    /// The terminal's size.
    pub(crate) area: Rect,
    /// Frame of the spinner.
    pub(crate) spinner: usize,
    /// A one-line remark in the status bar until the next key ("no match").
    pub(crate) notice: Option<String>,
    next_job: JobId,
    queued: Vec<(JobId, Job)>,
    /// A `list` is running; another is due after it (something changed meanwhile).
    list_running: bool,
    list_again: bool,
    /// The environment an `inspect` is running for.
    inspecting: Option<EnvId>,
    quit: bool,
    fatal: Option<String>,
}

impl App {
    /// A new UI state; the first `list` and the backend probes are queued right away, so the
    /// first frame never waits for them.
    pub fn new(context: Context, theme: Theme) -> App {
        let mut app = App {
            context,
            theme,
            screen: Screen::Dashboard,
            focus: Focus::List,
            popups: Vec::new(),
            editing: None,
            envs: EnvList::default(),
            details: HashMap::new(),
            sizes: HashMap::new(),
            sizes_running: false,
            log: LogBuffer::default(),
            jobs: BTreeMap::new(),
            backends: None,
            shells: Shells::default(),
            prereq: prereq::PrereqView::default(),
            editor: None,
            area: Rect::new(0, 0, 80, 24),
            spinner: 0,
            notice: None,
            next_job: 1,
            queued: Vec::new(),
            list_running: false,
            list_again: false,
            inspecting: None,
            quit: false,
            fatal: None,
        };
        app.request_list();
        app.request_quick_doctor();
        app.relayout();
        app
    }

    /// The key table in force: the top popup's, else the active input's, else the pane's.
    pub fn mode(&self) -> Mode {
        if let Some(popup) = self.popups.last() {
            return popup.mode();
        }
        match (&self.editing, self.screen, self.focus) {
            (Some(Editing::Filter(_)), _, _) => Mode::Filter,
            (Some(Editing::Search(_)), _, _) => Mode::Search,
            (None, Screen::Prereq, _) => Mode::Prereq,
            (None, Screen::Editor, _) => Mode::Editor,
            (None, Screen::Log, _) | (None, _, Focus::Log) => Mode::Log,
            (None, Screen::Dashboard, Focus::List) => Mode::List,
        }
    }

    pub fn should_quit(&self) -> bool {
        self.quit
    }

    /// Why the loop must end (the terminal could not be read).
    pub fn fatal(&self) -> Option<&str> {
        self.fatal.as_deref()
    }

    /// Jobs to start, in order; the loop hands them to workers.
    pub fn take_jobs(&mut self) -> Vec<(JobId, Job)> {
        std::mem::take(&mut self.queued)
    }

    /// The cancel flag of a started job, for its worker's event sink (a fresh one, never set,
    /// for a job that is not running).
    pub fn cancel_token(&self, id: JobId) -> Arc<AtomicBool> {
        self.jobs.get(&id).map_or_else(
            || Arc::new(AtomicBool::new(false)),
            |j| Arc::clone(&j.cancel),
        )
    }

    /// Asks every running build to stop; returns how many were asked. Each one fails soon
    /// after with "cancelled", having rolled back what it did.
    pub(crate) fn cancel_builds(&mut self) -> usize {
        let mut asked = Vec::new();
        for running in self.jobs.values() {
            if running.job.cancellable() && !running.cancel.swap(true, Ordering::Relaxed) {
                asked.push(Arc::clone(&running.label));
            }
        }
        for label in &asked {
            self.log.push(
                Level::Warn,
                Some(Arc::clone(label)),
                "cancelling: what the build did so far is rolled back".to_string(),
            );
        }
        asked.len()
    }

    /// Whether a build runs that has not been cancelled yet.
    pub fn cancellable_jobs(&self) -> bool {
        self.jobs
            .values()
            .any(|j| j.job.cancellable() && !j.cancel.load(Ordering::Relaxed))
    }

    /// Whether something turns (a spinner), so the loop should tick.
    pub fn animating(&self) -> bool {
        !self.envs.loaded()
            || self.jobs.values().any(|j| !j.job.is_query())
            || (self.screen == Screen::Prereq && self.prereq.running)
    }

    /// Advance the spinner.
    pub fn tick(&mut self) {
        self.spinner = self.spinner.wrapping_add(1);
    }

    /// Jobs that change the store (those a quit would interrupt).
    pub fn busy_jobs(&self) -> impl Iterator<Item = &RunningJob> {
        self.jobs.values().filter(|j| !j.job.is_query())
    }

    pub fn handle(&mut self, event: AppEvent) {
        match event {
            AppEvent::Input(TermEvent::Key(key)) if key.kind != KeyEventKind::Release => {
                self.notice = None;
                if let Some(action) = keymap::action_for(self.mode(), key) {
                    self.apply(action);
                }
            }
            AppEvent::Input(TermEvent::Resize(w, h)) => {
                self.area = Rect::new(0, 0, w, h);
                self.resize_shells();
            }
            AppEvent::Input(TermEvent::Mouse(event)) => self.mouse(event),
            AppEvent::Input(_) => {}
            AppEvent::InputFailed(e) => {
                self.fatal = Some(format!("reading the terminal failed: {e}"));
                self.quit = true;
            }
            AppEvent::Engine { job, event } => self.engine_event(job, event),
            AppEvent::JobDone { job, result } => self.job_done(job, result),
            AppEvent::ShellOutput { session, bytes } => self.shell_output(session, &bytes),
            AppEvent::ShellDetach { session } => self.shell_detached(session),
            AppEvent::ShellExited { session, ending } => self.shell_exited(session, ending),
        }
        self.relayout();
        self.request_sizes();
    }

    /// Set the terminal size (at start; resizes arrive as events).
    pub fn resize(&mut self, area: Rect) {
        self.area = area;
        self.resize_shells();
        self.relayout();
    }

    /// Give the list and the log the heights the layout gives them now, so scrolling math in
    /// `update` matches what is drawn.
    fn relayout(&mut self) {
        let areas = crate::ui::layout(self);
        self.envs.set_height(areas.list_rows());
        self.log.set_height(areas.log_rows());
    }

    /// Queue a job and record it as running.
    pub(crate) fn start(&mut self, job: Job) -> JobId {
        let id = self.next_job;
        self.next_job += 1;
        let label: Arc<str> = Arc::from(job.label());
        if !job.is_query() {
            self.log.push(
                Level::Info,
                Some(Arc::clone(&label)),
                format!("started: {job}"),
            );
        }
        self.jobs.insert(
            id,
            RunningJob {
                job: job.clone(),
                label,
                progress: None,
                cancel: Arc::new(AtomicBool::new(false)),
            },
        );
        self.queued.push((id, job));
        id
    }

    /// The bytes of `env` when measured for its current state.
    pub fn size_of(&self, env: &crate::engine::EnvSummary) -> Option<u64> {
        self.sizes
            .get(&env.id)
            .filter(|(at, _)| *at == env.updated_at)
            .map(|(_, bytes)| *bytes)
    }

    /// Measures, on a worker, the rows on screen whose size is not known for their current
    /// state (one job at a time; called after every event, so scrolling measures what comes
    /// into view). Only the window: with a thousand environments, walking every tree at start
    /// would cost more CPU than the whole idle UI.
    pub(crate) fn request_sizes(&mut self) {
        if self.sizes_running || !self.envs.loaded() {
            return;
        }
        let wanted: Vec<EnvId> = self
            .envs
            .window()
            .map(|(_, env)| env)
            .filter(|env| self.size_of(env).is_none())
            .map(|env| env.id.clone())
            .collect();
        if !wanted.is_empty() {
            self.sizes_running = true;
            self.start(Job::Sizes(wanted));
        }
    }

    pub(crate) fn request_list(&mut self) {
        if self.list_running {
            self.list_again = true;
        } else {
            self.list_running = true;
            self.start(Job::List);
        }
    }

    /// Load the selected environment's details unless they are known or loading. One
    /// `inspect` at a time: moving fast through the list does not start a thread per row.
    pub(crate) fn request_details(&mut self) {
        let Some(id) = self.envs.selected_id().cloned() else {
            return;
        };
        if self.inspecting.is_some() || self.details.contains_key(&id) {
            return;
        }
        self.details.insert(id.clone(), Details::Loading);
        self.inspecting = Some(id.clone());
        self.start(Job::Inspect(id));
    }

    fn engine_event(&mut self, job: JobId, event: Event) {
        let source = self.jobs.get(&job).map(|j| Arc::clone(&j.label));
        match event {
            Event::Log { level, message } => {
                // Multi-line messages (package-manager output) keep one line per row.
                for line in message.lines() {
                    self.log.push(level, source.clone(), line);
                }
            }
            Event::Progress { task, done, total } => {
                if let Some(running) = self.jobs.get_mut(&job) {
                    running.progress = Some(Progress { task, done, total });
                }
            }
        }
    }

    /// A job could not even start (no thread): reported like a failure of the job.
    pub fn job_not_started(&mut self, job: JobId, error: &std::io::Error) {
        self.job_done(job, Err(format!("cannot start a worker thread: {error}")));
    }
}

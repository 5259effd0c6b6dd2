//! The prerequisite screen's state: the last report of every check (`crate::prereq`, run on a
//! worker as the `doctor` job), whether a run is under way, and the scroll position.
//!
//! The same job feeds the header's backend verdicts, so the screen and the header never
//! disagree; `r` runs it again (a run already under way is not doubled).

use std::sync::Arc;

use super::action::Action;
use super::input::LineInput;
use super::jobs::{Job, JobOutput};
use super::popup::Popup;
use super::{App, Screen};
use crate::prereq::Report;

#[derive(Debug, Default)]
pub struct PrereqView {
    pub report: Option<Report>,
    pub running: bool,
    /// The report came from a run that started no OCI test container (`Job::QuickBackends`):
    /// the prerequisite screen runs the whole set when it is opened.
    pub quick: bool,
    /// Why the last run failed (the store could not be opened), until one succeeds.
    pub error: Option<String>,
    /// The first line shown.
    pub scroll: u16,
}

impl App {
    /// Run every check on a worker, unless a run is under way.
    pub(crate) fn request_doctor(&mut self) {
        if !self.prereq.running {
            self.prereq.running = true;
            self.start(Job::Backends);
        }
    }

    /// The header's verdicts at start-up: every check but the OCI test containers, which
    /// cost tens of milliseconds of CPU each (the prerequisite screen runs them).
    pub(crate) fn request_quick_doctor(&mut self) {
        if !self.prereq.running {
            self.prereq.running = true;
            self.start(Job::QuickBackends);
        }
    }

    /// Show the prerequisite screen; the checks run if they never did, or only in part.
    pub(super) fn open_prereq(&mut self) {
        self.screen = Screen::Prereq;
        self.prereq.scroll = 0;
        if self.prereq.report.is_none() || self.prereq.quick {
            self.request_doctor();
        }
    }

    pub(super) fn doctor_done(
        &mut self,
        label: &Arc<str>,
        quick: bool,
        result: Result<JobOutput, String>,
    ) {
        self.prereq.running = false;
        match result {
            Ok(JobOutput::Backends(report)) => {
                self.backends = Some(report.backends());
                self.prereq.error = None;
                self.prereq.report = Some(*report);
                self.prereq.quick = quick;
                // Opened while the start-up run was under way: now the whole set.
                if quick && self.screen == Screen::Prereq {
                    self.request_doctor();
                }
                self.prereq.scroll = self.prereq.scroll.min(crate::ui::prereq::max_scroll(self));
            }
            Ok(_) => {}
            Err(e) => {
                self.prereq.error = Some(e.clone());
                self.report_error(label, e);
            }
        }
    }

    pub(super) fn apply_prereq(&mut self, action: Action) {
        let page = i64::from(crate::ui::prereq::page(self));
        let scroll = i64::from(self.prereq.scroll);
        let to = match action {
            Action::Recheck => {
                self.request_doctor();
                return;
            }
            Action::Back => {
                self.screen = super::Screen::Dashboard;
                return;
            }
            Action::Quit => return self.quit_or_ask(),
            Action::Help => return self.popups.push(Popup::Help { scroll: 0 }),
            Action::Palette => {
                return self.popups.push(Popup::Palette {
                    input: LineInput::default(),
                    error: None,
                })
            }
            Action::Up => scroll - 1,
            Action::Down => scroll + 1,
            Action::HalfPageUp => scroll - (page / 2).max(1),
            Action::HalfPageDown => scroll + (page / 2).max(1),
            Action::PageUp => scroll - page.max(1),
            Action::PageDown => scroll + page.max(1),
            Action::Top => 0,
            Action::Bottom => i64::MAX,
            _ => return,
        };
        let max = i64::from(crate::ui::prereq::max_scroll(self));
        self.prereq.scroll = u16::try_from(to.clamp(0, max)).unwrap_or(0);
    }
}

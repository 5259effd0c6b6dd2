//! What a finished job does to the state: new rows, details, log lines, reports, errors.

use std::sync::Arc;

use super::jobs::{Job, JobId, JobOutput};
use super::popup::{Message, Popup};
use super::{App, Details};
use crate::events::Level;

impl App {
    pub(crate) fn job_done(&mut self, id: JobId, result: Result<JobOutput, String>) {
        let Some(running) = self.jobs.remove(&id) else {
            return;
        };
        let label = running.label;
        match (&running.job, result) {
            (Job::List, result) => {
                self.list_running = false;
                match result {
                    Ok(JobOutput::List { envs, broken }) => {
                        for b in &broken {
                            self.log.push(
                                Level::Warn,
                                Some(Arc::clone(&label)),
                                format!("environment {} is unreadable: {}", b.id.short(), b.error),
                            );
                        }
                        self.envs.set_rows(envs, broken);
                        self.request_sizes();
                    }
                    Ok(_) => {}
                    Err(e) => self.report_error(&label, e),
                }
                if std::mem::take(&mut self.list_again) {
                    self.request_list();
                }
            }
            (Job::Sizes(_), result) => {
                self.sizes_running = false;
                match result {
                    Ok(JobOutput::Sizes(sizes)) => {
                        for (id, bytes) in sizes {
                            let at = self.envs.find(id.as_str()).map(|e| e.updated_at);
                            if let Some(at) = at {
                                self.sizes.insert(id, (at, bytes));
                            }
                        }
                    }
                    Ok(_) => {}
                    // Not worth a popup: the column shows `?` and the log says why.
                    Err(e) => self.log.push(Level::Warn, Some(Arc::clone(&label)), e),
                }
            }
            (Job::Backends, result) => self.doctor_done(&label, false, result),
            (Job::QuickBackends, result) => self.doctor_done(&label, true, result),
            (Job::Inspect(env), result) => {
                self.inspecting = None;
                let details = match result {
                    Ok(JobOutput::Details(d)) => Details::Ready(d),
                    Ok(_) => Details::Failed("unexpected answer".into()),
                    Err(e) => Details::Failed(e),
                };
                self.details.insert(env.clone(), details);
            }
            (job, Err(e)) => {
                let changes = job.changes_envs();
                self.report_error(&label, e);
                if changes {
                    self.details.clear();
                    self.request_list();
                }
            }
            (job, Ok(output)) => {
                let changes = job.changes_envs();
                self.job_output(&label, output);
                if changes {
                    self.details.clear();
                    self.request_list();
                }
            }
        }
        self.request_details();
    }

    fn job_output(&mut self, label: &Arc<str>, output: JobOutput) {
        let source = Some(Arc::clone(label));
        match output {
            JobOutput::Backends(_) => {}
            JobOutput::Built { outcome, .. } => {
                let env = &outcome.env;
                let verb = if outcome.built { "built" } else { "up to date" };
                let name = env.name.as_deref().unwrap_or("-");
                self.log.push(
                    Level::Info,
                    source,
                    format!(
                        "{verb}: {} {name} (lock {})",
                        env.short_id,
                        outcome.lock_path.display()
                    ),
                );
                self.envs.want(env.id.clone());
            }
            JobOutput::Changed(text) => self.log.push(Level::Info, source, text),
            JobOutput::Gc(report) => {
                let text = crate::cli::output_text::gc(&report, report.dry_run);
                let last = text.lines().last().unwrap_or("").to_string();
                self.log.push(Level::Info, source, last);
                let title = if report.dry_run {
                    "gc --dry-run"
                } else {
                    "Garbage collected"
                };
                self.popups.push(Popup::Message(Message::info(title, text)));
            }
            JobOutput::Verify(report) => {
                let text = crate::cli::output_text::verify(&report);
                let last = text.lines().last().unwrap_or("").to_string();
                let ok = report.problems.is_empty();
                self.log
                    .push(if ok { Level::Info } else { Level::Warn }, source, last);
                let message = if ok {
                    Message::info("Store verified", text)
                } else {
                    Message::error("Store problems", text)
                };
                self.popups.push(Popup::Message(message));
            }
            JobOutput::List { .. } | JobOutput::Sizes(_) | JobOutput::Details(_) => {}
        }
    }

    /// A failed job: a line in the log and a popup, never a crash.
    pub(super) fn report_error(&mut self, label: &Arc<str>, error: String) {
        for line in error.lines() {
            self.log.push(
                Level::Warn,
                Some(Arc::clone(label)),
                format!("error: {line}"),
            );
        }
        self.popups.push(Popup::Message(Message::error(
            format!("{label} failed"),
            error,
        )));
    }
}

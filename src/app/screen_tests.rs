//! The prerequisite screen and the manifest editor, driven by keys without a terminal.

use std::path::Path;

use crossterm::event::{Event as TermEvent, KeyCode, KeyEvent, KeyModifiers};

use super::editor::{Origin, Validation};
use super::fixtures::{self, answer, ctrl, env, key, keys, loaded};
use super::jobs::{Job, JobOutput};
use super::popup::{Pending, Popup};
use super::{App, AppEvent, Mode, Screen};
use crate::engine::StateView;

fn queued(app: &mut App) -> Vec<Job> {
    app.take_jobs().into_iter().map(|(_, job)| job).collect()
}

fn type_text(app: &mut App, text: &str) {
    for c in text.chars() {
        let code = if c == '\n' {
            KeyCode::Enter
        } else {
            KeyCode::Char(c)
        };
        key(app, code);
    }
}

fn ctrl_end(app: &mut App) {
    app.handle(AppEvent::Input(TermEvent::Key(KeyEvent::new(
        KeyCode::End,
        KeyModifiers::CONTROL,
    ))));
}

fn editor_text(app: &App) -> String {
    app.editor.as_ref().expect("an editor").text()
}

/// `E`, a directory, a template chosen with the arrows, Enter.
fn new_in_editor(app: &mut App, dir: &Path, downs: usize) {
    key(app, KeyCode::Char('E'));
    ctrl(app, 'u');
    keys(app, &dir.display().to_string());
    for _ in 0..downs {
        key(app, KeyCode::Down);
    }
    key(app, KeyCode::Enter);
}

#[test]
fn p_opens_the_checks_r_runs_them_again_once_and_esc_goes_back() {
    // At start only the quick checks run (no OCI test containers): the header needs no more.
    let mut app = fixtures::app(80, 24);
    let started = app.take_jobs();
    let kinds: Vec<&Job> = started.iter().map(|(_, j)| j).collect();
    assert_eq!(kinds, [&Job::List, &Job::QuickBackends]);
    // Opening the screen while it runs starts nothing more …
    key(&mut app, KeyCode::Char('p'));
    assert_eq!((app.screen, app.mode()), (Screen::Prereq, Mode::Prereq));
    assert!(app.prereq.running && app.animating());
    assert!(queued(&mut app).is_empty());
    key(&mut app, KeyCode::Char('r'));
    assert!(queued(&mut app).is_empty(), "a run is under way");
    // … and its answer, on the screen, starts the whole set.
    let (quick, _) = started
        .iter()
        .find(|(_, j)| *j == Job::QuickBackends)
        .expect("the quick run");
    app.handle(AppEvent::JobDone {
        job: *quick,
        result: Ok(JobOutput::Backends(Box::new(fixtures::report()))),
    });
    assert!(app.prereq.quick);
    assert_eq!(queued(&mut app), [Job::Backends]);

    let mut app = fixtures::app(80, 24);
    answer(&mut app, &[]);
    assert!(app.prereq.report.is_some() && !app.prereq.running);
    assert!(app.prereq.quick, "only the start-up's quick run so far");
    assert_eq!(app.backends, Some(fixtures::report().backends()));
    // The screen wants every check: the quick report is shown while the whole set runs.
    key(&mut app, KeyCode::Char('p'));
    let full = app.take_jobs();
    assert!(matches!(full.as_slice(), [(_, Job::Backends)]), "{full:?}");
    app.handle(AppEvent::JobDone {
        job: full[0].0,
        result: Ok(JobOutput::Backends(Box::new(fixtures::report()))),
    });
    assert!(!app.prereq.quick);
    key(&mut app, KeyCode::Esc);
    key(&mut app, KeyCode::Char('p'));
    assert!(
        queued(&mut app).is_empty(),
        "a whole report is there: shown, not re-run"
    );
    key(&mut app, KeyCode::Char('r'));
    key(&mut app, KeyCode::Char('r'));
    assert_eq!(queued(&mut app), [Job::Backends]);
    key(&mut app, KeyCode::Esc);
    assert_eq!((app.screen, app.mode()), (Screen::Dashboard, Mode::List));
    keys(&mut app, ":doctor");
    key(&mut app, KeyCode::Enter);
    assert_eq!(app.screen, Screen::Prereq);
}

#[test]
fn a_failed_run_is_shown_and_the_screen_carries_on() {
    let mut app = fixtures::app(80, 24);
    let jobs = app.take_jobs();
    let (id, _) = jobs
        .iter()
        .find(|(_, j)| *j == Job::QuickBackends)
        .expect("doctor");
    app.handle(AppEvent::JobDone {
        job: *id,
        result: Err("cannot open the store".into()),
    });
    assert!(!app.prereq.running);
    assert_eq!(app.prereq.error.as_deref(), Some("cannot open the store"));
    assert!(matches!(app.popups.last(), Some(Popup::Message(m)) if m.error));
}

#[test]
fn the_prerequisite_screen_scrolls_within_its_text() {
    let mut app = loaded(80, 24);
    key(&mut app, KeyCode::Char('p'));
    key(&mut app, KeyCode::Char('G'));
    let end = app.prereq.scroll;
    assert!(end > 0, "the report is longer than a screen");
    assert_eq!(end, crate::ui::prereq::max_scroll(&app));
    key(&mut app, KeyCode::Char('k'));
    assert_eq!(app.prereq.scroll, end - 1, "back up from the real end");
    key(&mut app, KeyCode::PageDown);
    assert_eq!(app.prereq.scroll, end);
    key(&mut app, KeyCode::Char('g'));
    assert_eq!(app.prereq.scroll, 0);
}

#[test]
fn a_new_manifest_is_checked_as_typed_saved_and_built() {
    let dir = tempfile::tempdir().expect("tempdir");
    let project = dir.path().join("proj");
    let manifest = project.join("karapace.toml");
    let mut app = loaded(80, 24);
    new_in_editor(&mut app, &project, 1);
    assert_eq!((app.screen, app.mode()), (Screen::Editor, Mode::Editor));
    let editor = app.editor.as_ref().expect("editor");
    assert_eq!(editor.origin, Origin::Template("dev"));
    assert_eq!(editor.path, manifest);
    assert!(!manifest.exists(), "nothing is written before saving");

    // A broken line: refused by save-and-build, with its line in the notice.
    ctrl_end(&mut app);
    type_text(&mut app, "\nbackend = mock");
    let lines = editor_text(&app).lines().count();
    assert!(matches!(
        app.editor.as_ref().map(|e| &e.validation),
        Some(Validation::Invalid { at: Some((line, _)), .. }) if *line == lines
    ));
    ctrl(&mut app, 'b');
    let notice = app.notice.clone().unwrap_or_default();
    assert!(notice.contains(&format!("line {lines}")), "{notice}");
    assert!(!manifest.exists() && queued(&mut app).is_empty());

    // Fixed: saved atomically and built on a worker.
    for _ in 0.."\nbackend = mock".len() {
        key(&mut app, KeyCode::Backspace);
    }
    type_text(&mut app, "\n# für alle");
    ctrl(&mut app, 'b');
    assert_eq!(
        std::fs::read_to_string(&manifest).expect("saved"),
        editor_text(&app)
    );
    assert!(editor_text(&app).ends_with("# für alle\n"));
    assert_eq!(
        queued(&mut app),
        [Job::Build {
            manifest: manifest.clone(),
            name: None
        }]
    );
    assert!(app.log.visible().any(|(_, l)| l.text.starts_with("saved ")));
    // Saved: Esc goes straight back.
    key(&mut app, KeyCode::Esc);
    assert_eq!(app.screen, Screen::Dashboard);
    assert!(app.editor.is_none());

    // The directory has a manifest now: E refuses to overwrite it.
    new_in_editor(&mut app, &project, 0);
    assert!(
        matches!(app.popups.last(), Some(Popup::Prompt(p)) if p.error.as_deref().is_some_and(|e| e.contains("already exists")))
    );
}

#[test]
fn editing_a_built_environment_asks_before_rebuilding_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = dir.path().join("karapace.toml");
    std::fs::write(
        &manifest,
        "manifest_version = 1\n[base]\nimage = \"rolling\"\n[runtime]\nbackend = \"mock\"\n",
    )
    .expect("write");
    let mut row = env("web", 4, StateView::Built, 0);
    row.manifest = Some(manifest.clone());
    let mut app = fixtures::app(80, 24);
    answer(&mut app, std::slice::from_ref(&row));
    key(&mut app, KeyCode::Char('e'));
    assert_eq!(app.screen, Screen::Editor);
    assert!(!app.editor.as_ref().expect("editor").dirty());
    ctrl_end(&mut app);
    type_text(&mut app, "\n[hardware]\naudio = true");
    ctrl(&mut app, 's');
    assert!(std::fs::read_to_string(&manifest)
        .expect("read")
        .ends_with("audio = true\n"));
    assert!(queued(&mut app).is_empty(), "save alone builds nothing");
    ctrl(&mut app, 'b');
    assert!(matches!(app.popups.last(), Some(Popup::Confirm(c)) if c.title == "Rebuild web?"));
    key(&mut app, KeyCode::Char('y'));
    assert_eq!(queued(&mut app), [Job::Rebuild { manifest }]);
}

#[test]
fn unsaved_changes_are_never_dropped_without_asking() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut app = loaded(80, 24);
    new_in_editor(&mut app, &dir.path().join("x"), 0);
    key(&mut app, KeyCode::Esc);
    assert!(matches!(app.popups.last(), Some(Popup::Confirm(c)) if c.then == Pending::LeaveEditor));
    key(&mut app, KeyCode::Char('n'));
    assert_eq!(app.screen, Screen::Editor, "cancelled: still editing");
    ctrl(&mut app, 'c');
    assert!(matches!(app.popups.last(), Some(Popup::Confirm(c)) if c.then == Pending::Quit));
    assert!(!app.should_quit());
    key(&mut app, KeyCode::Esc);
    key(&mut app, KeyCode::Esc);
    key(&mut app, KeyCode::Char('y'));
    assert_eq!(app.screen, Screen::Dashboard);
    assert!(app.editor.is_none() && !dir.path().join("x").exists());
    // A second Ctrl-C means it.
    new_in_editor(&mut app, &dir.path().join("y"), 0);
    ctrl(&mut app, 'c');
    ctrl(&mut app, 'c');
    assert!(app.should_quit());
}

#[test]
fn the_edit_command_opens_paths_environments_and_templates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = dir.path().join("karapace.toml");
    std::fs::write(&manifest, "manifest_version = 1\n").expect("write");
    let mut app = loaded(80, 24);
    keys(&mut app, &format!(":edit {}", dir.path().display()));
    key(&mut app, KeyCode::Enter);
    let editor = app.editor.as_ref().expect("editor");
    assert_eq!(editor.path, manifest);
    assert!(
        matches!(&editor.validation, Validation::Invalid { at: Some((1, 1)), message } if message.contains("base"))
    );
    key(&mut app, KeyCode::Esc);

    keys(
        &mut app,
        &format!(
            ":edit --template rust-dev {}",
            dir.path().join("r").display()
        ),
    );
    key(&mut app, KeyCode::Enter);
    assert_eq!(
        app.editor.as_ref().map(|e| e.origin.clone()),
        Some(Origin::Template("rust-dev"))
    );
    key(&mut app, KeyCode::Esc);
    key(&mut app, KeyCode::Char('y'));

    // An environment's name: its recorded manifest (absent here, so the error says so).
    keys(&mut app, ":edit api");
    key(&mut app, KeyCode::Enter);
    assert!(
        matches!(app.popups.last(), Some(Popup::Palette { error: Some(e), .. }) if e.contains("/home/user/src/api/karapace.toml"))
    );
    key(&mut app, KeyCode::Esc);
    keys(&mut app, ":edit --template nope /tmp/x");
    key(&mut app, KeyCode::Enter);
    assert!(
        matches!(app.popups.last(), Some(Popup::Palette { error: Some(e), .. }) if e.contains("unknown template `nope`"))
    );
}

#[test]
fn a_build_started_in_the_editor_streams_into_its_log_pane() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut app = loaded(80, 24);
    new_in_editor(&mut app, &dir.path().join("p"), 0);
    ctrl(&mut app, 'b');
    let (id, job) = app.take_jobs().remove(0);
    assert!(matches!(job, Job::Build { .. }));
    app.handle(AppEvent::Engine {
        job: id,
        event: crate::events::Event::info("mock: installing nothing"),
    });
    let areas = crate::ui::layout(&app);
    assert!(areas.log.height >= 4 && areas.main.height > areas.log.height);
    assert!(app
        .log
        .visible()
        .any(|(_, l)| l.text == "mock: installing nothing"));
    app.handle(AppEvent::JobDone {
        job: id,
        result: Err("boom".into()),
    });
    assert_eq!(
        app.screen,
        Screen::Editor,
        "a failed build keeps the editor"
    );
    assert!(matches!(app.popups.last(), Some(Popup::Message(m)) if m.error));
}

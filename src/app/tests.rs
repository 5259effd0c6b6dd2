//! State updates without a terminal: events in, state and queued jobs out.

use std::sync::mpsc;
use std::time::Duration;

use crossterm::event::{Event as TermEvent, KeyCode};

use super::fixtures::{self, answer, ctrl, env, key, keys, loaded};
use super::jobs::{Job, JobOutput, Workers};
use super::popup::{Pending, Popup, PromptKind};
use super::{AppEvent, Details, Editing, Focus, Mode, Screen};
use crate::engine::StateView;
use crate::events::{Event, Level};
use crate::manifest::ParseEnv;
use crate::store::{GcReport, VerifyReport};

/// A directory holding an (empty) karapace.toml, for prompts that check the path.
fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("karapace.toml"), "").expect("write manifest");
    dir
}

fn queued(app: &mut super::App) -> Vec<Job> {
    app.take_jobs().into_iter().map(|(_, job)| job).collect()
}

fn top(app: &super::App) -> &Popup {
    app.popups.last().expect("a popup")
}

#[test]
fn a_new_app_queues_the_list_and_the_backend_probes_and_animates_until_loaded() {
    let mut app = fixtures::app(80, 24);
    assert_eq!(app.take_jobs().len(), 2);
    assert!(app.animating(), "the loading spinner turns");
    assert_eq!(app.mode(), Mode::List);
    let mut app = fixtures::app(80, 24);
    answer(&mut app, &[]);
    assert!(app.envs.store_is_empty());
    assert!(!app.animating(), "idle: nothing wakes the loop");
    assert!(app.backends.is_some());
}

#[test]
fn the_selection_loads_its_details_one_inspect_at_a_time() {
    let mut app = fixtures::app(80, 24);
    let list = app.take_jobs();
    for (id, job) in list {
        let output = match job {
            Job::List => JobOutput::List {
                envs: fixtures::envs(),
                broken: Vec::new(),
            },
            _ => JobOutput::Backends(Box::new(fixtures::report())),
        };
        app.handle(AppEvent::JobDone {
            job: id,
            result: Ok(output),
        });
    }
    // The sizes are measured on their own worker; the details of the selection come next.
    let first: Vec<_> = app
        .take_jobs()
        .into_iter()
        .filter(|(_, job)| !matches!(job, Job::Sizes(_)))
        .collect();
    assert_eq!(first.len(), 1);
    assert!(matches!(&first[0].1, Job::Inspect(id) if *id == fixtures::id(1)));
    // Moving on while it runs starts nothing new …
    keys(&mut app, "jj");
    assert!(app.take_jobs().is_empty());
    // … and when it answers, the row now selected is loaded next.
    app.handle(AppEvent::JobDone {
        job: first[0].0,
        result: Ok(JobOutput::Details(Box::new(fixtures::details(
            &fixtures::envs()[0],
        )))),
    });
    let next = queued(&mut app);
    assert_eq!(next, [Job::Inspect(fixtures::id(3))]);
    assert!(matches!(
        app.details.get(&fixtures::id(1)),
        Some(Details::Ready(_))
    ));
}

#[test]
fn vim_keys_move_and_scroll_the_list() {
    let rows: Vec<_> = (0..50)
        .map(|n| env(&format!("env-{n:02}"), n, StateView::Built, 0))
        .collect();
    let mut app = fixtures::app(80, 24);
    answer(&mut app, &rows);
    let height = app.envs.height();
    assert!(height > 2 && height < 50, "{height}");
    key(&mut app, KeyCode::Char('G'));
    assert_eq!(app.envs.cursor(), 49);
    assert_eq!(
        app.envs.offset(),
        50 - height,
        "the last page, no empty rows"
    );
    key(&mut app, KeyCode::Char('g'));
    assert_eq!((app.envs.cursor(), app.envs.offset()), (0, 0));
    ctrl(&mut app, 'd');
    assert_eq!(app.envs.cursor(), height / 2);
    ctrl(&mut app, 'u');
    assert_eq!(app.envs.cursor(), 0);
    key(&mut app, KeyCode::Down);
    key(&mut app, KeyCode::Char('j'));
    key(&mut app, KeyCode::Char('k'));
    assert_eq!(app.envs.cursor(), 1);
    // A smaller terminal keeps the selection visible.
    key(&mut app, KeyCode::PageDown);
    key(&mut app, KeyCode::PageDown);
    let cursor = app.envs.cursor();
    app.handle(AppEvent::Input(TermEvent::Resize(80, 12)));
    assert!(app.envs.height() < height);
    let (offset, h) = (app.envs.offset(), app.envs.height());
    assert!(
        cursor >= offset && cursor < offset + h,
        "{cursor} {offset} {h}"
    );
}

#[test]
fn the_filter_applies_as_you_type_and_esc_clears_it() {
    let mut app = loaded(80, 24);
    key(&mut app, KeyCode::Char('/'));
    assert_eq!(app.mode(), Mode::Filter);
    keys(&mut app, "FROZ");
    assert_eq!(app.envs.visible_len(), 1);
    assert_eq!(
        app.envs.selected().and_then(|e| e.name.as_deref()),
        Some("docs")
    );
    key(&mut app, KeyCode::Enter);
    assert_eq!(app.mode(), Mode::List);
    assert_eq!(app.envs.filter(), "FROZ");
    key(&mut app, KeyCode::Esc);
    assert_eq!(app.envs.filter(), "");
    assert_eq!(app.envs.visible_len(), 4);
    // The selection stayed on the environment it was on.
    assert_eq!(
        app.envs.selected().and_then(|e| e.name.as_deref()),
        Some("docs")
    );
    // `!` inverts; Esc while typing cancels the filter.
    keys(&mut app, "/!mock");
    assert!(app
        .envs
        .window()
        .all(|(_, e)| e.backend == crate::types::BackendKind::Namespace));
    key(&mut app, KeyCode::Esc);
    assert_eq!((app.envs.filter(), app.mode()), ("", Mode::List));
}

#[test]
fn sort_keys_cycle_and_reverse() {
    let mut app = loaded(80, 24);
    let names = |app: &super::App| -> Vec<String> {
        app.envs
            .window()
            .map(|(_, e)| e.name.clone().unwrap_or_default())
            .collect()
    };
    assert_eq!(names(&app), ["api", "docs", "legacy", "web"]);
    key(&mut app, KeyCode::Char('o')); // state
    assert_eq!(names(&app), ["legacy", "web", "docs", "api"]);
    key(&mut app, KeyCode::Char('O'));
    assert_eq!(names(&app), ["api", "docs", "web", "legacy"]);
}

#[test]
fn destroy_asks_first_and_forces_when_programs_run() {
    let mut app = loaded(80, 24);
    // `api` (selected) has two running sessions.
    key(&mut app, KeyCode::Char('d'));
    let Popup::Confirm(c) = top(&app) else {
        panic!("no confirmation")
    };
    assert!(c.body.contains("2 running session(s)"), "{}", c.body);
    assert!(!c.yes_selected, "cancel is the default button");
    // Enter on the default button cancels.
    key(&mut app, KeyCode::Enter);
    assert!(app.popups.is_empty() && app.take_jobs().is_empty());
    key(&mut app, KeyCode::Char('d'));
    key(&mut app, KeyCode::Char('y'));
    assert_eq!(
        queued(&mut app),
        [Job::Destroy {
            env: "api".into(),
            force: true
        }]
    );
    // Tab then Enter presses the yes button; n cancels.
    key(&mut app, KeyCode::Char('j'));
    answer(&mut app, &fixtures::envs());
    key(&mut app, KeyCode::Char('d'));
    key(&mut app, KeyCode::Char('n'));
    assert!(app.popups.is_empty() && app.take_jobs().is_empty());
    key(&mut app, KeyCode::Char('d'));
    key(&mut app, KeyCode::Tab);
    key(&mut app, KeyCode::Enter);
    assert_eq!(
        queued(&mut app),
        [Job::Destroy {
            env: "docs".into(),
            force: false
        }]
    );
}

#[test]
fn lifecycle_keys_queue_the_matching_engine_calls() {
    let mut app = loaded(80, 24);
    key(&mut app, KeyCode::Char('j')); // docs: frozen
    answer(&mut app, &fixtures::envs());
    key(&mut app, KeyCode::Char('f'));
    key(&mut app, KeyCode::Char('a'));
    assert_eq!(
        queued(&mut app),
        [Job::Unfreeze("docs".into()), Job::Archive("docs".into())]
    );
    key(&mut app, KeyCode::Char('j')); // legacy: archived
    key(&mut app, KeyCode::Char('a'));
    key(&mut app, KeyCode::Char('s'));
    assert_eq!(app.notice.as_deref(), Some("nothing is running in legacy"));
    key(&mut app, KeyCode::Char('V'));
    let jobs = queued(&mut app);
    assert!(jobs.contains(&Job::Unarchive("legacy".into())), "{jobs:?}");
    assert!(jobs.contains(&Job::Verify), "{jobs:?}");
    // Rebuild asks, then rebuilds from the recorded manifest.
    key(&mut app, KeyCode::Char('B'));
    key(&mut app, KeyCode::Char('y'));
    assert_eq!(
        queued(&mut app),
        [Job::Rebuild {
            manifest: "/home/user/src/legacy/karapace.toml".into()
        }]
    );
}

#[test]
fn rename_validates_the_name_before_asking_the_engine() {
    let mut app = loaded(80, 24);
    key(&mut app, KeyCode::Char('R'));
    let Popup::Prompt(p) = top(&app) else {
        panic!("no prompt")
    };
    assert_eq!(p.input.text(), "api");
    ctrl(&mut app, 'u');
    keys(&mut app, "bad name");
    key(&mut app, KeyCode::Enter);
    let Popup::Prompt(p) = top(&app) else {
        panic!("the prompt closed on a bad name")
    };
    assert!(p
        .error
        .as_deref()
        .is_some_and(|e| e.contains("may contain only")));
    ctrl(&mut app, 'w');
    keys(&mut app, "-ünï");
    key(&mut app, KeyCode::Enter);
    assert!(
        matches!(top(&app), Popup::Prompt(_)),
        "non-ASCII names are refused"
    );
    ctrl(&mut app, 'u');
    keys(&mut app, "gateway");
    key(&mut app, KeyCode::Enter);
    assert!(app.popups.is_empty());
    assert_eq!(
        queued(&mut app),
        [Job::Rename {
            env: "api".into(),
            name: "gateway".into()
        }]
    );
}

#[test]
fn the_build_prompt_checks_the_path_and_expands_the_home() {
    let home = tempfile::tempdir().expect("tempdir");
    let project = home.path().join("proj");
    std::fs::create_dir(&project).expect("mkdir");
    let mut app = fixtures::app(80, 24);
    app.context.home = home.path().to_path_buf();
    answer(&mut app, &[]);
    key(&mut app, KeyCode::Char('b'));
    ctrl(&mut app, 'u');
    keys(&mut app, "~/proj");
    key(&mut app, KeyCode::Enter);
    let Popup::Prompt(p) = top(&app) else {
        panic!("no prompt")
    };
    assert!(
        p.error
            .as_deref()
            .is_some_and(|e| e.contains("has no karapace.toml")),
        "{p:?}"
    );
    std::fs::write(project.join("karapace.toml"), "").expect("write");
    key(&mut app, KeyCode::Enter);
    assert_eq!(
        queued(&mut app),
        [Job::Build {
            manifest: project,
            name: None
        }]
    );
}

#[test]
fn the_new_prompt_picks_a_template_with_the_arrows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut app = fixtures::app(80, 24);
    answer(&mut app, &[]);
    key(&mut app, KeyCode::Char('n'));
    assert!(matches!(top(&app), Popup::Prompt(p) if p.kind == PromptKind::New));
    ctrl(&mut app, 'u');
    keys(&mut app, &dir.path().join("x").display().to_string());
    key(&mut app, KeyCode::Down);
    key(&mut app, KeyCode::Down);
    key(&mut app, KeyCode::Up);
    key(&mut app, KeyCode::Enter);
    assert_eq!(
        queued(&mut app),
        [Job::New {
            dir: dir.path().join("x"),
            template: "dev".into()
        }]
    );
}

#[test]
fn the_palette_runs_cli_verbs_and_keeps_mistakes_on_screen() {
    let mut app = loaded(80, 24);
    keys(&mut app, ":frobnicate");
    key(&mut app, KeyCode::Enter);
    assert!(matches!(top(&app), Popup::Palette { error: Some(e), .. } if e.contains("unknown")));
    key(&mut app, KeyCode::Esc);
    keys(&mut app, ":gc --dry-run");
    key(&mut app, KeyCode::Enter);
    assert_eq!(queued(&mut app), [Job::Gc { dry_run: true }]);
    keys(&mut app, ":destroy web");
    key(&mut app, KeyCode::Enter);
    assert!(
        matches!(top(&app), Popup::Confirm(c) if c.then == Pending::Job(Job::Destroy {
            env: "web".into(),
            force: false
        }))
    );
    key(&mut app, KeyCode::Esc);
    // Tab completes the verb.
    keys(&mut app, ":verif");
    key(&mut app, KeyCode::Tab);
    assert!(matches!(top(&app), Popup::Palette { input, .. } if input.text() == "verify-store "));
    key(&mut app, KeyCode::Enter);
    assert_eq!(queued(&mut app), [Job::Verify]);
    // The verify-store still runs, so quitting asks first.
    keys(&mut app, ":q");
    key(&mut app, KeyCode::Enter);
    assert!(matches!(top(&app), Popup::Confirm(c) if c.then == Pending::Quit));
    key(&mut app, KeyCode::Char('y'));
    assert!(app.should_quit());
}

#[test]
fn quitting_asks_while_a_job_changes_the_store() {
    let mut app = loaded(80, 24);
    key(&mut app, KeyCode::Char('V'));
    app.take_jobs();
    key(&mut app, KeyCode::Char('q'));
    assert!(!app.should_quit());
    assert!(matches!(top(&app), Popup::Confirm(c) if c.then == Pending::Quit));
    key(&mut app, KeyCode::Esc);
    assert!(app.popups.is_empty() && !app.should_quit());
    // Ctrl-C twice means it, from any mode.
    key(&mut app, KeyCode::Char('/'));
    ctrl(&mut app, 'c');
    ctrl(&mut app, 'c');
    assert!(app.should_quit());
    let mut idle = loaded(80, 24);
    key(&mut idle, KeyCode::Char('q'));
    assert!(idle.should_quit(), "nothing running: quit at once");
}

#[test]
fn engine_events_stream_into_the_log_and_progress_into_the_job() {
    let mut app = loaded(80, 24);
    let dir = project();
    keys(&mut app, &format!(":build {}", dir.path().display()));
    key(&mut app, KeyCode::Enter);
    let (id, _) = app.take_jobs().remove(0);
    app.handle(AppEvent::Engine {
        job: id,
        event: Event::info("mock: installing git 2.43\nsecond line"),
    });
    app.handle(AppEvent::Engine {
        job: id,
        event: Event::Progress {
            task: "installing packages".into(),
            done: 1,
            total: Some(2),
        },
    });
    let texts: Vec<&str> = app.log.visible().map(|(_, l)| l.text.as_str()).collect();
    assert!(
        texts.ends_with(&["mock: installing git 2.43", "second line"]),
        "{texts:?}"
    );
    let last = app
        .log
        .visible()
        .last()
        .map(|(_, l)| l.clone())
        .expect("a line");
    let label = dir
        .path()
        .file_name()
        .map(|f| f.to_string_lossy().into_owned());
    assert_eq!(
        last.source.as_deref(),
        label.map(|l| format!("build {l}")).as_deref()
    );
    let running = app.busy_jobs().next().expect("running");
    assert_eq!(running.progress.as_ref().map(|p| p.done), Some(1));
    assert!(app.animating());
    for _ in 0..3 {
        app.tick();
    }
    assert_eq!(app.spinner, 3);
}

#[test]
fn a_failed_job_shows_a_popup_and_a_log_line_and_reloads_the_list() {
    let mut app = loaded(80, 24);
    key(&mut app, KeyCode::Char('f'));
    let (id, _) = app.take_jobs().remove(0);
    app.handle(AppEvent::JobDone {
        job: id,
        result: Err("cannot freeze environment api: 2 session(s) are running".into()),
    });
    let Popup::Message(m) = top(&app) else {
        panic!("no error popup")
    };
    assert!(m.error && m.title == "freeze api failed", "{m:?}");
    let last = app
        .log
        .visible()
        .last()
        .map(|(_, l)| l.clone())
        .expect("a line");
    assert_eq!(last.level, Level::Warn);
    assert!(last.text.starts_with("error: cannot freeze"));
    assert!(queued(&mut app).contains(&Job::List));
    key(&mut app, KeyCode::Esc);
    assert!(app.popups.is_empty());
}

#[test]
fn a_build_selects_its_environment_once_the_list_has_it() {
    let mut app = loaded(80, 24);
    let dir = project();
    keys(&mut app, &format!(":build {}", dir.path().display()));
    key(&mut app, KeyCode::Enter);
    let (id, _) = app.take_jobs().remove(0);
    let new = env("zeta", 9, StateView::Built, 0);
    app.handle(AppEvent::JobDone {
        job: id,
        result: Ok(JobOutput::Built {
            outcome: Box::new(crate::engine::BuildOutcome {
                env: new.clone(),
                built: true,
                lock_path: "/home/user/src/zeta/karapace.lock".into(),
                exported: Vec::new(),
            }),
            template: None,
        }),
    });
    let mut rows = fixtures::envs();
    rows.push(new);
    answer(&mut app, &rows);
    assert_eq!(
        app.envs.selected().and_then(|e| e.name.as_deref()),
        Some("zeta")
    );
}

#[test]
fn reports_open_as_popups() {
    let mut app = loaded(80, 24);
    keys(&mut app, ":gc --dry-run");
    key(&mut app, KeyCode::Enter);
    let (id, _) = app.take_jobs().remove(0);
    app.handle(AppEvent::JobDone {
        job: id,
        result: Ok(JobOutput::Gc(GcReport {
            dry_run: true,
            ..GcReport::default()
        })),
    });
    assert!(matches!(top(&app), Popup::Message(m) if m.body.contains("would remove 0 item(s)")));
    key(&mut app, KeyCode::Char('q'));
    assert!(
        app.popups.is_empty() && !app.should_quit(),
        "q closes a report"
    );
    key(&mut app, KeyCode::Char('V'));
    let (id, _) = app.take_jobs().remove(0);
    let report = VerifyReport {
        problems: vec![crate::store::Problem {
            path: "/store/objects/x".into(),
            kind: crate::store::ProblemKind::CorruptObject,
            detail: "hash mismatch".into(),
        }],
        ..VerifyReport::default()
    };
    app.handle(AppEvent::JobDone {
        job: id,
        result: Ok(JobOutput::Verify(report)),
    });
    assert!(matches!(top(&app), Popup::Message(m) if m.error && m.body.contains("hash mismatch")));
}

#[test]
fn the_log_pane_follows_scrolls_and_searches_by_key() {
    let mut app = loaded(80, 24);
    for i in 0..100 {
        app.log.push(Level::Info, None, format!("line {i}"));
    }
    app.log.push(Level::Info, None, "the needle");
    key(&mut app, KeyCode::Tab);
    assert_eq!((app.focus, app.mode()), (Focus::Log, Mode::Log));
    key(&mut app, KeyCode::Char('k'));
    assert!(!app.log.following());
    key(&mut app, KeyCode::Char('f'));
    assert!(app.log.following());
    key(&mut app, KeyCode::Char('g'));
    keys(&mut app, "/needle");
    assert!(matches!(app.editing, Some(Editing::Search(_))));
    key(&mut app, KeyCode::Enter);
    assert_eq!(app.log.current_match(), Some(app.log.len() as u64 - 1));
    key(&mut app, KeyCode::Char('n'));
    assert!(app.notice.is_none(), "wraps to the same match");
    keys(&mut app, "/absent");
    key(&mut app, KeyCode::Enter);
    assert!(app
        .notice
        .as_deref()
        .is_some_and(|n| n.contains("no match")));
    key(&mut app, KeyCode::Char('z'));
    assert_eq!(app.screen, Screen::Log);
    key(&mut app, KeyCode::Esc);
    assert_eq!((app.screen, app.mode()), (Screen::Dashboard, Mode::Log));
    key(&mut app, KeyCode::Esc);
    assert_eq!(app.mode(), Mode::List);
}

#[test]
fn key_releases_and_unbound_keys_change_nothing() {
    let mut app = loaded(80, 24);
    let mut release = crossterm::event::KeyEvent::from(KeyCode::Char('q'));
    release.kind = crossterm::event::KeyEventKind::Release;
    app.handle(AppEvent::Input(TermEvent::Key(release)));
    key(&mut app, KeyCode::F(9));
    assert!(!app.should_quit() && app.popups.is_empty() && app.take_jobs().is_empty());
}

/// The workers call the same engine functions as the CLI: a build on the mock backend streams
/// the engine's events, then its result, through the channel.
#[test]
fn workers_run_jobs_on_the_engine_and_send_only_events() {
    let dir = tempfile::tempdir().expect("tempdir");
    let project = dir.path().join("proj");
    std::fs::create_dir(&project).expect("mkdir");
    std::fs::write(
        project.join("karapace.toml"),
        "manifest_version = 1\n[base]\nimage = \"rolling\"\n[system]\npackages = [\"git\"]\n\
         [runtime]\nbackend = \"mock\"\n",
    )
    .expect("write manifest");
    let (tx, rx) = mpsc::channel();
    let parse_env = ParseEnv {
        home: dir.path().to_path_buf(),
    };
    let workers = Workers::new(dir.path().join("store"), parse_env, tx);
    let job = Job::Build {
        manifest: project.clone(),
        name: None,
    };
    let never = || std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    workers.spawn(7, job, never()).expect("spawn");
    let mut lines = Vec::new();
    let outcome = loop {
        match rx.recv_timeout(Duration::from_secs(60)).expect("an event") {
            AppEvent::Engine {
                job: 7,
                event: Event::Log { message, .. },
            } => lines.push(message),
            AppEvent::Engine { .. } => {}
            AppEvent::JobDone { job: 7, result } => break result.expect("the build succeeds"),
            other => panic!("unexpected {other:?}"),
        }
    };
    assert!(
        lines.iter().any(|l| l.contains("mock: installing git")),
        "{lines:?}"
    );
    let JobOutput::Built { outcome, .. } = outcome else {
        panic!("not a build result")
    };
    assert!(outcome.built);
    assert_eq!(outcome.env.name.as_deref(), Some("proj"));
    // An engine error comes back as the job's error text, never a panic.
    workers
        .spawn(
            8,
            Job::Destroy {
                env: "nothing-here".into(),
                force: false,
            },
            never(),
        )
        .expect("spawn");
    let error = loop {
        if let AppEvent::JobDone { job: 8, result } =
            rx.recv_timeout(Duration::from_secs(60)).expect("an event")
        {
            break result.expect_err("no such environment");
        }
    };
    assert!(
        error.contains("no environment matches `nothing-here`"),
        "{error}"
    );
}

#[test]
fn a_build_cancelled_from_the_ui_ends_as_cancelled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let project = dir.path().join("proj");
    std::fs::create_dir(&project).expect("mkdir");
    std::fs::write(
        project.join("karapace.toml"),
        "manifest_version = 1\n[base]\nimage = \"rolling\"\n[runtime]\nbackend = \"mock\"\n",
    )
    .expect("write manifest");
    let mut app = loaded(80, 24);
    let id = app.start(Job::Build {
        manifest: project.clone(),
        name: None,
    });
    assert!(app.cancellable_jobs());
    key(&mut app, KeyCode::Char('X'));
    assert!(!app.cancellable_jobs(), "asked once");
    assert!(
        app.log.visible().any(|(_, l)| l
            .text
            .contains("cancelling: what the build did so far is rolled back")),
        "the log says so"
    );
    // The worker gets the flag the key set: its build stops before anything is kept.
    let (tx, rx) = mpsc::channel();
    let parse_env = ParseEnv {
        home: dir.path().to_path_buf(),
    };
    let workers = Workers::new(dir.path().join("store"), parse_env, tx);
    let job = Job::Build {
        manifest: project,
        name: None,
    };
    workers.spawn(id, job, app.cancel_token(id)).expect("spawn");
    let error = loop {
        if let AppEvent::JobDone { job, result } =
            rx.recv_timeout(Duration::from_secs(60)).expect("an event")
        {
            assert_eq!(job, id);
            break result.expect_err("cancelled");
        }
    };
    assert!(error.contains("build cancelled"), "{error}");
    assert!(
        !dir.path().join("store/envs").exists()
            || std::fs::read_dir(dir.path().join("store/envs"))
                .expect("ls")
                .count()
                == 0
    );
}

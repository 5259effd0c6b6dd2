//! The terminal UI's costs: drawing the dashboard, taking in log lines, and staying asleep.
//!
//! Run with `cargo bench --bench tui`. Four measurements, reported (never enforced: the
//! machine is shared and noisy; only a failing step fails the run):
//!
//! 1. **Frame time.** The dashboard with 1,000 environments (as `Engine::list` returns them)
//!    and a full 10,000-line log, drawn into ratatui's `TestBackend` at 80×24, 120×40 and
//!    200×60 — the same `ui::draw` the program runs, including ratatui's diff of the frame
//!    against the previous one. Between two frames the selection moves one row and a log line
//!    arrives, as while a build streams, so no frame is a no-op. Median and p90 of
//!    `KARAPACE_BENCH_ROUNDS` frames (default 300), against the goal of 2 ms.
//! 2. **Log ingestion.** 100,000 engine log events applied through `App::handle`, the loop's
//!    own path (tag with the job, split lines, push into the bounded ring), in lines per
//!    second; then one frame of the resulting screen.
//! 3. **Idle CPU.** The real binary on a pseudo-terminal with 1,000 environments in its store,
//!    left alone for `KARAPACE_BENCH_IDLE_SECS` (default 10) and then quit with `q`: its user +
//!    system CPU time (from `getrusage(RUSAGE_CHILDREN)`, so start-up and exit are included)
//!    against the goal of 0.5 % of the idle time.
//! 4. **Resident memory.** The same process's peak resident set (`VmHWM` in
//!    /proc/PID/status, proc(5)) just before it quits, against the goal of 30 MB.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use karapace_tui::app::{App, AppEvent, Context, Job, JobOutput};
use karapace_tui::engine::{BuildOptions, Engine, EnvSummary, StateView};
use karapace_tui::events::{Event, NullSink};
use karapace_tui::manifest::ParseEnv;
use karapace_tui::types::{BackendKind, EnvId};
use karapace_tui::ui::theme::Theme;
use portable_pty::{native_pty_system, CommandBuilder, PtySize};
use ratatui::backend::TestBackend;
use ratatui::layout::Rect;
use ratatui::Terminal;

mod common;
use common::{binary, children_cpu, exit_code, percentile, ratio, Res};

const ENVS: usize = 1000;
const LOG_LINES: usize = 10_000;
const INGEST_LINES: usize = 100_000;
const FRAME_GOAL: Duration = Duration::from_millis(2);
const IDLE_GOAL_FRACTION: f64 = 0.005;

fn main() -> ExitCode {
    exit_code(run())
}

fn run() -> Res<()> {
    let rounds = env_num("KARAPACE_BENCH_ROUNDS", 300);
    println!("karapace-tui TUI benchmark: {ENVS} environments, {LOG_LINES}-line log");
    println!();
    let pass = |ok: bool| if ok { "PASS" } else { "FAIL" };

    println!("1. frame time (ui::draw into TestBackend, {rounds} frames each)");
    println!(
        "   {:<9} {:>10} {:>10} {:>14}",
        "size", "median", "p90", "median / goal"
    );
    let mut worst = Duration::ZERO;
    for (w, h) in [(80, 24), (120, 40), (200, 60)] {
        let (median, p90) = frame_times(w, h, rounds)?;
        worst = worst.max(median);
        println!(
            "   {:<9} {:>10} {:>10} {:>13.2}×",
            format!("{w}x{h}"),
            us(median),
            us(p90),
            ratio(median, FRAME_GOAL)
        );
    }
    println!(
        "   goal median < {} at every size: {}",
        us(FRAME_GOAL),
        pass(worst < FRAME_GOAL)
    );
    println!();

    println!("2. log ingestion ({INGEST_LINES} engine log events through App::handle)");
    let (rate, frame) = ingestion()?;
    println!(
        "   {rate:.0} lines/s; the next frame (120x40) took {}",
        us(frame)
    );
    println!(
        "   goal ≥ 100000 lines/s: {} ({:.1}× the goal)",
        pass(rate >= 100_000.0),
        rate / 100_000.0
    );
    println!();

    let idle_secs = env_num("KARAPACE_BENCH_IDLE_SECS", 10) as u64;
    println!("3. idle CPU of the real binary ({idle_secs} s on a pty, {ENVS} environments)");
    let (cpu, peak_rss) = idle_cpu(Duration::from_secs(idle_secs))?;
    let fraction = cpu.as_secs_f64() / idle_secs as f64;
    println!(
        "   {} of CPU in {idle_secs} s, start-up and exit included = {:.3} %",
        us(cpu),
        fraction * 100.0
    );
    println!(
        "   goal < {:.1} %: {} ({:.2}× the goal)",
        IDLE_GOAL_FRACTION * 100.0,
        pass(fraction < IDLE_GOAL_FRACTION),
        fraction / IDLE_GOAL_FRACTION
    );
    println!();
    println!("4. resident memory of the real binary with {ENVS} environments (peak, VmHWM)");
    let mib = peak_rss as f64 / (1024.0 * 1024.0);
    println!(
        "   {mib:.1} MiB; goal < {RSS_GOAL_MIB} MiB: {} ({:.2}× the goal)",
        pass(mib < RSS_GOAL_MIB as f64),
        mib / RSS_GOAL_MIB as f64
    );
    Ok(())
}

/// Resident memory goal of the issue: under 30 MB with 1,000 environments.
const RSS_GOAL_MIB: u64 = 30;

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn us(d: Duration) -> String {
    if d >= Duration::from_millis(10) {
        format!("{:.1} ms", d.as_secs_f64() * 1e3)
    } else {
        format!("{:.0} µs", d.as_secs_f64() * 1e6)
    }
}

/// `n` environments with distinct names and ids, in every state.
fn summaries(n: usize) -> Res<Vec<EnvSummary>> {
    let states = [
        StateView::Built,
        StateView::Running,
        StateView::Frozen,
        StateView::Archived,
    ];
    (0..n)
        .map(|i| {
            let id: EnvId = format!("{i:064x}")
                .parse()
                .map_err(|e| format!("fixture id: {e}"))?;
            Ok(EnvSummary {
                short_id: id.short().to_string(),
                id,
                name: Some(format!("env-{i:04}")),
                state: states[i % states.len()],
                backend: if i % 2 == 0 {
                    BackendKind::Namespace
                } else {
                    BackendKind::Mock
                },
                image: "alias:debian/12".into(),
                sessions: usize::from(i % 4 == 1),
                manifest: Some(PathBuf::from(format!(
                    "/home/user/src/env-{i:04}/karapace.toml"
                ))),
                created_at: 1_700_000_000,
                updated_at: 1_700_000_000 + i as u64,
            })
        })
        .collect()
}

/// An app showing `summaries(ENVS)` with a full log, at `w`×`h`.
fn loaded_app(w: u16, h: u16) -> Res<App> {
    let mut app = App::new(
        Context {
            store: "/home/user/.local/share/karapace".into(),
            home: "/home/user".into(),
            cwd: "/home/user/src".into(),
        },
        Theme::new(true),
    );
    app.resize(Rect::new(0, 0, w, h));
    let envs = summaries(ENVS)?;
    for (id, job) in app.take_jobs() {
        if job == Job::List {
            app.handle(AppEvent::JobDone {
                job: id,
                result: Ok(JobOutput::List {
                    envs: envs.clone(),
                    broken: Vec::new(),
                }),
            });
        }
    }
    for i in 0..LOG_LINES {
        app.handle(AppEvent::Engine {
            job: 0,
            event: Event::info(format!("mock: installing package-{i} 1.{i}-1")),
        });
    }
    Ok(app)
}

fn key(code: crossterm::event::KeyCode) -> AppEvent {
    AppEvent::Input(crossterm::event::Event::Key(code.into()))
}

fn frame_times(w: u16, h: u16, rounds: usize) -> Res<(Duration, Duration)> {
    let mut app = loaded_app(w, h)?;
    let mut terminal =
        Terminal::new(TestBackend::new(w, h)).map_err(|e| format!("test terminal: {e}"))?;
    let mut times = Vec::with_capacity(rounds);
    for i in 0..rounds + 5 {
        app.handle(key(crossterm::event::KeyCode::Char('j')));
        app.handle(AppEvent::Engine {
            job: 0,
            event: Event::info(format!("frame {i}")),
        });
        let start = Instant::now();
        terminal
            .draw(|frame| karapace_tui::ui::draw(&app, frame))
            .map_err(|e| format!("draw: {e}"))?;
        if i >= 5 {
            times.push(start.elapsed());
        }
    }
    times.sort_unstable();
    Ok((percentile(&times, 0.5), percentile(&times, 0.9)))
}

fn ingestion() -> Res<(f64, Duration)> {
    let mut app = loaded_app(120, 40)?;
    let events: Vec<AppEvent> = (0..INGEST_LINES)
        .map(|i| AppEvent::Engine {
            job: 0,
            event: Event::info(format!("unpacking usr/share/doc/package-{i}/copyright")),
        })
        .collect();
    let start = Instant::now();
    for event in events {
        app.handle(event);
    }
    let rate = INGEST_LINES as f64 / start.elapsed().as_secs_f64();
    let mut terminal =
        Terminal::new(TestBackend::new(120, 40)).map_err(|e| format!("test terminal: {e}"))?;
    let start = Instant::now();
    terminal
        .draw(|frame| karapace_tui::ui::draw(&app, frame))
        .map_err(|e| format!("draw: {e}"))?;
    Ok((rate, start.elapsed()))
}

/// Build `ENVS` mock environments into a scratch store (through the library, on 4 threads).
fn store_with_envs(root: &std::path::Path) -> Res<PathBuf> {
    let store = root.join("store");
    let home = root.join("home");
    std::fs::create_dir_all(&home).map_err(|e| format!("mkdir {}: {e}", home.display()))?;
    let workers: Vec<_> = (0..4)
        .map(|t| {
            let (store, home, root) = (store.clone(), home.clone(), root.to_path_buf());
            thread::spawn(move || -> Res<()> {
                let engine = Engine::open(&store, ParseEnv { home }, Arc::new(NullSink))
                    .map_err(|e| format!("open store: {e}"))?;
                for i in (t..ENVS).step_by(4) {
                    let dir = root.join(format!("manifests/env-{i:04}"));
                    std::fs::create_dir_all(&dir).map_err(|e| format!("mkdir: {e}"))?;
                    let manifest = dir.join("karapace.toml");
                    let text = format!(
                        "manifest_version = 1\n[base]\nimage = \"rolling\"\n[system]\n\
                         packages = [\"bench-pkg-{i:04}\"]\n[runtime]\nbackend = \"mock\"\n"
                    );
                    std::fs::write(&manifest, text).map_err(|e| format!("write: {e}"))?;
                    engine
                        .build(&BuildOptions {
                            manifest,
                            ..BuildOptions::default()
                        })
                        .map_err(|e| format!("build env-{i:04}: {e}"))?;
                }
                Ok(())
            })
        })
        .collect();
    for w in workers {
        w.join()
            .map_err(|_| "a build thread panicked".to_string())??;
    }
    Ok(store)
}

/// The TUI's CPU time over `idle` seconds on a pty (start-up and exit included) and its peak
/// resident memory (VmHWM, proc(5)) by then.
fn idle_cpu(idle: Duration) -> Res<(Duration, u64)> {
    let bin = binary()?;
    let tmp = tempfile::Builder::new()
        .prefix("karapace-bench-tui")
        .tempdir()
        .map_err(|e| format!("scratch directory: {e}"))?;
    let store = store_with_envs(tmp.path())?;
    let pair = native_pty_system()
        .openpty(PtySize {
            rows: 40,
            cols: 120,
            pixel_width: 0,
            pixel_height: 0,
        })
        .map_err(|e| format!("open a pty: {e}"))?;
    let mut cmd = CommandBuilder::new(&bin);
    cmd.env("KARAPACE_STORE", &store);
    cmd.env("HOME", tmp.path().join("home"));
    cmd.env("TERM", "xterm-256color");
    cmd.cwd(tmp.path());
    let before = children_cpu()?;
    let mut child = pair
        .slave
        .spawn_command(cmd)
        .map_err(|e| format!("spawn {}: {e}", bin.display()))?;
    drop(pair.slave);
    // Drain the screen output, or the program would block writing to a full pty.
    let mut reader = pair
        .master
        .try_clone_reader()
        .map_err(|e| format!("pty reader: {e}"))?;
    let screen = thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 8192];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
        }
        seen
    });
    thread::sleep(idle);
    let pid = child
        .process_id()
        .ok_or_else(|| "the TUI has no pid".to_string())?;
    let peak_rss = peak_rss_bytes(pid)?;
    let mut writer = pair
        .master
        .take_writer()
        .map_err(|e| format!("pty writer: {e}"))?;
    writer.write_all(b"q").map_err(|e| format!("send q: {e}"))?;
    let status = child.wait().map_err(|e| format!("wait: {e}"))?;
    drop(writer);
    drop(pair.master);
    let seen = screen
        .join()
        .map_err(|_| "the reader panicked".to_string())?;
    if !status.success() {
        return Err(format!("the TUI exited with {status:?}"));
    }
    let text = String::from_utf8_lossy(&seen);
    if !text.contains("1000") {
        return Err("the TUI never showed its 1000 environments".into());
    }
    Ok((children_cpu()?.saturating_sub(before), peak_rss))
}

/// VmHWM of a live process, in bytes.
fn peak_rss_bytes(pid: u32) -> Res<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("read /proc/{pid}/status: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .ok_or_else(|| format!("no VmHWM in /proc/{pid}/status"))
}

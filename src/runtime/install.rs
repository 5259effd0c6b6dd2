//! Installing distribution packages for the namespace backend: the image's own package
//! manager runs inside a build sandbox over the environment's overlay, with the host's network
//! (a build needs the mirrors even when the environment will be isolated at run time) and the
//! host's resolver configuration bound read-only, so nothing host-specific lands in the layer.
//!
//! Each step is one argv run directly (never a shell string, see `crate::packages`); its output
//! streams into the event sink line by line as it comes (the CLI prints it, the TUI shows it in
//! the log pane), and only the lines a parser needs are kept in memory.

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};

use super::backend::BackendError;
use crate::events::{Event, EventSink};
use crate::packages::Manager;
use crate::sandbox::{self, IdMapping, RootfsSpec, SandboxStdio};
use crate::store::Store;
use crate::types::BackendKind;

const KIND: BackendKind = BackendKind::Namespace;
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const RESOLV_CONF: &str = "etc/resolv.conf";
/// How many of a failed command's last output lines its error repeats.
const TAIL_LINES: usize = 12;

/// Host variables a package manager needs to reach its mirrors through a proxy; passed to
/// build steps only (never to `exec`/`enter`, where the security policy decides).
const PROXY_VARS: [&str; 6] = [
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
];

/// What to do with a step's standard output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Into the event sink, line by line.
    Stream,
    /// Returned to the caller (for parsing), and shown as debug events.
    Capture,
}

/// A root file system being built: `dir` holds `upper/`, `work/` and `root/`; `lower` is the
/// image. Package commands run in it one at a time.
pub struct BuildSandbox<'a> {
    pub store: &'a Store,
    pub lower: PathBuf,
    pub dir: PathBuf,
    pub ids: IdMapping,
    pub manager: Manager,
    pub events: &'a dyn EventSink,
}

impl BuildSandbox<'_> {
    pub fn upper(&self) -> PathBuf {
        self.dir.join("upper")
    }

    /// Creates `work/` and `root/` (and `upper/` unless it was moved in already).
    pub fn prepare_dirs(&self) -> Result<(), BackendError> {
        for name in ["upper", "work", "root"] {
            let path = self.dir.join(name);
            if !path.is_dir() {
                fs::create_dir(&path).map_err(BackendError::io_at(
                    KIND,
                    "create the build directory",
                    &path,
                ))?;
            }
        }
        Ok(())
    }

    /// Whether apt must fetch as root: in a one-id user namespace there is no `_apt` user to
    /// drop to (apt(8)'s `APT::Sandbox::User`).
    pub fn apt_sandbox_root(&self) -> bool {
        matches!(self.ids, IdMapping::SingleId { .. })
    }

    /// Runs `argv` in the sandbox; `step` names it in events and errors. A non-zero exit is an
    /// error that repeats the command's last lines of output.
    pub fn run(
        &self,
        step: &'static str,
        argv: Vec<String>,
        output: Output,
    ) -> Result<String, BackendError> {
        self.run_accepting(step, argv, output, |code| code == 0)
    }

    /// [`BuildSandbox::run`] for a command whose exit codes other than 0 may still mean its
    /// output is usable (a dry run answering "no", a query naming a package that is not
    /// installed): `succeeded` decides; the caller's parser then checks the output.
    pub fn run_accepting(
        &self,
        step: &'static str,
        argv: Vec<String>,
        output: Output,
        succeeded: impl Fn(i32) -> bool,
    ) -> Result<String, BackendError> {
        let shown = argv.join(" ");
        self.events
            .emit(Event::info(format!("{}: {shown}", self.manager)));
        reuse_overlay_work(&self.dir.join("work"), self.events)?;
        let resolv = ResolvConf::prepare(&self.lower, &self.upper(), self.events);
        let spec = self.spec(argv, resolv.bind(), step)?;
        let stdio = SandboxStdio {
            stdin: Stdio::null(),
            stdout: Stdio::piped(),
            stderr: Stdio::piped(),
        };
        let helper = std::env::current_exe().map_err(BackendError::io_at(
            KIND,
            "find the karapace-tui binary",
            Path::new("/proc/self/exe"),
        ))?;
        let mut child =
            sandbox::spawn(&spec.plan(), &helper, &self.store.root().join("tmp"), stdio).map_err(
                |e| BackendError::Failed {
                    backend: KIND,
                    step,
                    detail: e.to_string(),
                },
            )?;
        let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
        let prefix = self.manager.to_string();
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let ended = AtomicBool::new(false);
        let (captured, tail) = std::thread::scope(|scope| {
            let err_lines = scope.spawn(|| pump(stderr, &prefix, self.events, Output::Stream));
            // A cancel kills the sandbox (its PID 1 and everything in it die with it, see
            // PR_SET_PDEATHSIG in the helper); the pumps then see the end of the output.
            let watcher = scope.spawn(|| watch_for_cancel(self.events, pid, &ended));
            let out = pump(stdout, &prefix, self.events, output);
            let errs = err_lines.join();
            ended.store(true, Ordering::Relaxed);
            watcher.thread().unpark();
            (out, errs)
        });
        let status = child
            .wait()
            .map_err(BackendError::io_at(KIND, step, &self.dir))?;
        resolv.finish(self.events)?;
        let (captured, out_tail) = captured.map_err(BackendError::io_at(KIND, step, &self.dir))?;
        let (_, err_tail) = tail
            .map_err(|_| BackendError::Failed {
                backend: KIND,
                step,
                detail: "the thread reading the command's errors panicked".to_string(),
            })?
            .map_err(BackendError::io_at(KIND, step, &self.dir))?;
        let code = super::exit_code(status);
        // A signal is never success, whatever code it maps to.
        if status.code().is_none() || !succeeded(code) {
            let mut last: Vec<String> = out_tail;
            last.extend(err_tail);
            let skip = last.len().saturating_sub(TAIL_LINES);
            return Err(BackendError::Failed {
                backend: KIND,
                step,
                detail: format!(
                    "`{shown}` exited with code {code}{}{}",
                    if last.is_empty() {
                        ""
                    } else {
                        "; its last lines:\n  "
                    },
                    last[skip..].join("\n  ")
                ),
            });
        }
        Ok(captured)
    }

    fn spec(
        &self,
        argv: Vec<String>,
        resolv: Option<sandbox::Bind>,
        step: &'static str,
    ) -> Result<RootfsSpec, BackendError> {
        // The same overlay driver as the environment's sessions get.
        let overlay = sandbox::check::OverlaySetting::from_env()
            .and_then(|setting| {
                sandbox::check::overlay_driver(setting, sandbox::check::fuse_overlayfs())
            })
            .map_err(|detail| BackendError::Failed {
                backend: KIND,
                step,
                detail,
            })?;
        let mut env = vec![
            ("PATH".to_string(), PATH.to_string()),
            ("HOME".to_string(), "/root".to_string()),
            ("TERM".to_string(), "dumb".to_string()),
        ];
        env.extend(self.manager.env());
        for key in PROXY_VARS {
            if let Ok(value) = std::env::var(key) {
                env.push((key.to_string(), value));
            }
        }
        Ok(RootfsSpec {
            ids: self.ids.clone(),
            lower: vec![self.lower.display().to_string()],
            upper: self.upper().display().to_string(),
            work: self.dir.join("work").display().to_string(),
            root: self.dir.join("root").display().to_string(),
            userxattr: !nix::unistd::geteuid().is_root(),
            overlay,
            isolate_net: false,
            hostname: Some("karapace-build".to_string()),
            sys: true,
            tmpfs: vec![("/tmp".to_string(), 0o1777)],
            devices: Vec::new(),
            // Build steps get no terminal.
            console: None,
            binds: resolv.into_iter().collect(),
            argv,
            env,
            cwd: "/".to_string(),
        })
    }

    /// Deletes downloaded package files from the new layer (see `Manager::clean`).
    pub fn remove_caches(&self) -> Result<(), BackendError> {
        match self.manager.clean() {
            Some(argv) => self
                .run("clean the package cache", argv, Output::Stream)
                .map(drop),
            None => Ok(()),
        }
    }
}

/// Makes an overlay work directory that a `volatile` mount used before mountable again
/// (`sandbox::volatile`). If the marker is older than this boot, the machine went down while
/// the environment was in use: said as a warning, then removed all the same (the environment
/// stays usable; `rebuild` gives a clean one).
pub fn reuse_overlay_work(work: &Path, events: &dyn EventSink) -> Result<(), BackendError> {
    match sandbox::volatile::clear_marker(work) {
        Ok(sandbox::volatile::Marker::Cleared {
            from_earlier_boot: true,
        }) => {
            events.emit(Event::warn(sandbox::volatile::crash_warning(work)));
            Ok(())
        }
        Ok(_) => Ok(()),
        Err(e) => Err(BackendError::io_at(
            KIND,
            "remove the overlay's volatile marker",
            &e.path,
        )(e.source)),
    }
}

/// Writes the file system holding `dir` to disk: a build's files are written through a
/// `volatile` overlay, so nothing else syncs them before the environment is recorded as built.
pub fn sync_file_system(dir: &Path) -> Result<(), BackendError> {
    use std::os::fd::AsRawFd;
    let file = fs::File::open(dir).map_err(BackendError::io_at(KIND, "open", dir))?;
    nix::unistd::syncfs(file.as_raw_fd())
        .map_err(|errno| BackendError::io_at(KIND, "sync the file system of", dir)(errno.into()))
}

/// Reads `stream` line by line into events (or, with `Capture`, into the returned string);
/// also returns its last lines for an error message.
fn pump(
    stream: Option<impl Read>,
    prefix: &str,
    events: &dyn EventSink,
    output: Output,
) -> std::io::Result<(String, Vec<String>)> {
    let mut captured = String::new();
    let mut tail: Vec<String> = Vec::new();
    let Some(stream) = stream else {
        return Ok((captured, tail));
    };
    let mut reader = BufReader::new(stream);
    let mut raw = Vec::new();
    loop {
        raw.clear();
        if reader.read_until(b'\n', &mut raw)? == 0 {
            break;
        }
        let line = String::from_utf8_lossy(&raw);
        // apt redraws progress with carriage returns; the last state of the line is enough.
        let line = line
            .trim_end()
            .rsplit('\r')
            .next()
            .unwrap_or("")
            .to_string();
        match output {
            Output::Capture => {
                captured.push_str(&line);
                captured.push('\n');
                events.emit(Event::debug(format!("{prefix} | {line}")));
            }
            Output::Stream => events.emit(Event::info(format!("{prefix} | {line}"))),
        }
        if tail.len() == TAIL_LINES {
            tail.remove(0);
        }
        tail.push(line);
    }
    Ok((captured, tail))
}

/// The host's resolver configuration, bound read-only over the image's `/etc/resolv.conf` for
/// the length of one build step, so package managers can resolve their mirrors while the layer
/// keeps the image's own file. An image without the file gets an empty mount point in the
/// upper layer, removed again afterwards; an image whose file is a symbolic link (into
/// `/run`, as with systemd-resolved) is left alone, with a warning, because a bind mount onto a
/// link would follow it.
struct ResolvConf {
    bind: Option<sandbox::Bind>,
    /// The empty mount point made in the upper layer, to remove afterwards.
    created: Option<PathBuf>,
}

impl ResolvConf {
    fn prepare(lower: &Path, upper: &Path, events: &dyn EventSink) -> ResolvConf {
        let none = ResolvConf {
            bind: None,
            created: None,
        };
        let host = Path::new("/etc/resolv.conf");
        if !host.exists() {
            events.emit(Event::warn(
                "the host has no /etc/resolv.conf: the build can only reach mirrors by address",
            ));
            return none;
        }
        let kind = |root: &Path| fs::symlink_metadata(root.join(RESOLV_CONF)).ok();
        let image = kind(upper).or_else(|| kind(lower));
        if image.as_ref().is_some_and(|m| m.file_type().is_symlink()) {
            events.emit(Event::warn(
                "the image's /etc/resolv.conf is a symbolic link; the build uses it as it is \
                 (if name resolution fails, replace the link with a file in the image)",
            ));
            return none;
        }
        ResolvConf {
            bind: Some(sandbox::Bind {
                source: host.display().to_string(),
                target: "/etc/resolv.conf".to_string(),
                read_only: true,
            }),
            created: image.is_none().then(|| upper.join(RESOLV_CONF)),
        }
    }

    fn bind(&self) -> Option<sandbox::Bind> {
        self.bind.clone()
    }

    fn finish(self, events: &dyn EventSink) -> Result<(), BackendError> {
        let Some(path) = self.created else {
            return Ok(());
        };
        match fs::symlink_metadata(&path) {
            // Still the empty mount point we caused: not part of the environment.
            Ok(m) if m.is_file() && m.len() == 0 => fs::remove_file(&path).map_err(
                BackendError::io_at(KIND, "remove the resolv.conf mount point", &path),
            ),
            Ok(_) => {
                events.emit(Event::warn(format!(
                    "the build wrote {}; it stays in the environment",
                    path.display()
                )));
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(BackendError::io_at(KIND, "check", &path)(e)),
        }
    }
}

/// Until `ended` (we are unparked then): kills the sandbox `pid` once the listener asks to
/// cancel. Looks every 50 ms: the sink has no way to wake us, and a cancel a few dozen
/// milliseconds late is fine.
fn watch_for_cancel(events: &dyn EventSink, pid: nix::unistd::Pid, ended: &AtomicBool) {
    while !ended.load(Ordering::Relaxed) {
        if events.cancelled() {
            // ESRCH: it has exited meanwhile; its status says how.
            if let Err(errno) = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL) {
                if errno != nix::errno::Errno::ESRCH {
                    events.emit(Event::warn(format!(
                        "could not stop the build's sandbox (pid {pid}): {errno}"
                    )));
                }
            }
            return;
        }
        std::thread::park_timeout(std::time::Duration::from_millis(50));
    }
}

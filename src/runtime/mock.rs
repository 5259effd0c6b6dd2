//! The `mock` backend: deterministic, network-free, and honest about not isolating anything.
//!
//! It exists so the whole lifecycle (resolve, lock, build, store, list, exec, stop, archive,
//! destroy, gc, verify) can be exercised on any machine, in tests and demos.
//! - Resolution is a pure function of the manifest: the base image is a small generated tree
//!   (so its archive sha256 and tree digest are real digests of real bytes), and a package's
//!   version is derived from its name and the mock "repository epoch"
//!   (`KARAPACE_MOCK_EPOCH`, default 1). Bumping the epoch plays the part of a distribution
//!   publishing new versions, which is how the tests prove that `--locked` reproduces old ones.
//! - Build writes a real directory tree (`rootfs/`) and stores two real layers in the store; a
//!   `[gui] apps` package also gets a minimal desktop entry, so export-on-build is exercised.
//!   `KARAPACE_MOCK_DELAY_MS` slows each step down, for the TUI's live log and crash tests.
//! - Run executes the program **on the host**, with the environment's tree as its working
//!   directory and a cleaned environment. It says so on stderr every time: nothing pretends
//!   to be isolated.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, IsTerminal, Write};
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sha2::{Digest as _, Sha256};

use super::backend::{
    Availability, BackendError, BuildOutput, BuildRequest, ResolveRequest, RunRequest,
    RuntimeBackend,
};
use super::session::SessionProcess;
use crate::events::Event;
use crate::image::tree;
use crate::layer::{self, PackMode};
use crate::lock::{LockFile, LockedBase, LockedPackage, Resolution};
use crate::manifest::ImageRef;
use crate::store::Store;
use crate::types::{BackendKind, Digest, EnvId};

const KIND: BackendKind = BackendKind::Mock;
/// The `source` of generated base images in the lock.
const GENERATED: &str = "mock";
/// Where the mock package database lives inside the environment tree.
const PKG_DB: &str = "var/lib/karapace-mock/packages";

pub struct MockBackend {
    epoch: u64,
    delay: Duration,
}

impl Default for MockBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl MockBackend {
    /// Reads `KARAPACE_MOCK_EPOCH` and `KARAPACE_MOCK_DELAY_MS`; unset or unparsable values
    /// fall back to 1 and 0.
    pub fn new() -> MockBackend {
        let num = |name: &str| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        MockBackend {
            epoch: num("KARAPACE_MOCK_EPOCH").unwrap_or(1),
            delay: Duration::from_millis(num("KARAPACE_MOCK_DELAY_MS").unwrap_or(0)),
        }
    }

    /// The version the mock repository offers for `name` at this epoch.
    pub fn version_of(&self, name: &str) -> String {
        let h = blake3::hash(name.as_bytes());
        let b = h.as_bytes();
        format!(
            "{}.{}.{}-{}",
            self.epoch,
            b[0] % 10,
            b[1] % 30,
            1 + b[2] % 3
        )
    }

    fn pause(&self) {
        if !self.delay.is_zero() {
            std::thread::sleep(self.delay);
        }
    }

    /// The generated base image of an alias: its "archive" is the deterministic tar of the
    /// generated tree, so its sha256 and tree digest are real digests of real bytes.
    fn generated_base(&self, req: &ResolveRequest) -> Result<LockedBase, BackendError> {
        let image = req.manifest.base.image.canonical();
        req.events
            .emit(Event::info(format!("mock: resolving base image {image}")));
        let scratch = tempfile::Builder::new()
            .prefix("karapace-mock-resolve")
            .tempdir()
            .map_err(io_err("create scratch directory", &std::env::temp_dir()))?;
        write_base(scratch.path(), &image)?;
        let mut archive = ArchiveHash {
            sha: Sha256::new(),
            len: 0,
        };
        layer::pack_dir(scratch.path(), &mut archive, PackMode::Deterministic)
            .map_err(io_err("pack base image", scratch.path()))?;
        let archive_sha256 = hex(&archive.sha.finalize());
        // The same tree digest as real images get (`image::tree`), so a lock means one thing.
        let tree_digest = tree::tree_digest(scratch.path())
            .map_err(io_err("digest base image", scratch.path()))?;
        if let Some(pin) = &req.manifest.base.sha256 {
            if *pin != archive_sha256 {
                return Err(BackendError::ImageHashMismatch {
                    image,
                    expected: pin.clone(),
                    actual: archive_sha256,
                });
            }
        }
        Ok(LockedBase {
            image,
            source: GENERATED.to_string(),
            build: format!("mock-epoch-{}", self.epoch),
            archive_sha256,
            archive_size: archive.len,
            tree_digest: tree_digest.to_string(),
            server: None,
            item_path: None,
        })
    }

    /// Write the generated base tree and store it as a layer, checking it against the lock.
    fn build_generated_base(
        &self,
        req: &BuildRequest,
        rootfs: &Path,
    ) -> Result<Digest, BackendError> {
        let base = &req.lock.base;
        req.events.emit(Event::info(format!(
            "mock: unpacking base image {}",
            base.image
        )));
        self.pause();
        write_base(rootfs, &base.image)?;
        let digest = tree::tree_digest(rootfs).map_err(io_err("digest base image", rootfs))?;
        if digest.as_str() != base.tree_digest {
            return Err(BackendError::Failed {
                backend: KIND,
                step: "verify base image",
                detail: format!(
                    "the generated tree has digest {digest}, the lock records {}; \
                     run `karapace-tui build --update` to re-resolve",
                    base.tree_digest
                ),
            });
        }
        store_layer(req.store, rootfs, req.staging)
    }

    /// Copy the verified, cached image tree (fetched again if it is not cached). The image
    /// stays in the image cache, so it is not stored a second time as a layer.
    fn copy_real_base(&self, req: &BuildRequest, rootfs: &Path) -> Result<(), BackendError> {
        let record = req
            .images
            .ensure(&req.manifest.base, Some(&req.lock.base), req.offline)?;
        req.events.emit(Event::info(format!(
            "mock: copying image {} ({})",
            record.reference, record.sha256
        )));
        let image_root = req.images.cache().rootfs(&record.sha256);
        let skipped = layer::copy_tree(&image_root, rootfs)
            .map_err(io_err("copy the base image", &image_root))?;
        for path in skipped {
            req.events.emit(Event::warn(format!(
                "mock: not copied (special file): {}",
                path.display()
            )));
        }
        let db = rootfs.join(PKG_DB);
        fs::create_dir_all(&db).map_err(io_err("create package database", &db))
    }

    /// "Install" the locked packages into the mock package database and store it as a layer.
    fn install_packages(&self, req: &BuildRequest, rootfs: &Path) -> Result<Digest, BackendError> {
        let total = req.lock.packages.len() as u64;
        for (i, pkg) in req.lock.packages.iter().enumerate() {
            self.pause();
            if req.events.cancelled() {
                return Err(BackendError::Failed {
                    backend: KIND,
                    step: "install packages",
                    detail: format!("cancelled before {}", pkg.name),
                });
            }
            req.events.emit(Event::info(format!(
                "mock: installing {} {}",
                pkg.name, pkg.version
            )));
            let path = rootfs.join(PKG_DB).join(&pkg.name);
            fs::write(&path, format!("{} {}\n", pkg.name, pkg.version))
                .map_err(io_err("install package", &path))?;
            crate::crashpoint::hit("mock: package installed");
            req.events.emit(Event::Progress {
                task: "installing packages".to_string(),
                done: i as u64 + 1,
                total: Some(total),
            });
        }
        let layer = store_layer(req.store, &rootfs.join(PKG_DB), req.staging)?;
        req.events
            .emit(Event::info(format!("mock: installed {total} package(s)")));
        if !req.lock.gui_apps.is_empty() {
            install_app_entries(req, rootfs)?;
        }
        Ok(layer)
    }
}

/// A mock `[gui] apps` package brings a minimal desktop entry, as a real one would
/// (`/usr/share/applications/APP.desktop`, running `APP`), and the build records it for
/// export (`crate::export::APP_ENTRIES_FILE`).
fn install_app_entries(req: &BuildRequest, rootfs: &Path) -> Result<(), BackendError> {
    let dir = rootfs.join("usr/share/applications");
    fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
    let mut entries = crate::export::AppEntries::new();
    for app in &req.lock.gui_apps {
        let path = dir.join(format!("{app}.desktop"));
        fs::write(
            &path,
            format!("[Desktop Entry]\nType=Application\nName={app}\nExec={app}\n"),
        )
        .map_err(io_err("install desktop entry", &path))?;
        entries.insert(
            app.clone(),
            vec![format!("/usr/share/applications/{app}.desktop")],
        );
    }
    crate::export::write_app_entries(req.staging, &entries).map_err(io_err(
        "record the [gui] apps' desktop entries in",
        req.staging,
    ))
}

fn io_err(step: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BackendError {
    BackendError::io_at(KIND, step, path)
}

/// The files of the generated base image for an image reference.
fn base_files(image: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "etc/os-release",
            format!(
                "NAME=\"karapace mock\"\nID=karapace-mock\nPRETTY_NAME=\"karapace mock image ({image})\"\n"
            ),
        ),
        ("etc/hostname", "karapace\n".to_string()),
        ("etc/karapace-mock/image", format!("{image}\n")),
        (
            "usr/share/doc/karapace-mock/README",
            "This tree was made by the karapace-tui mock backend. Programs run in it execute on \
             the host, without isolation.\n"
                .to_string(),
        ),
    ]
}

/// Write the base image tree for `image` under `root`.
fn write_base(root: &Path, image: &str) -> Result<(), BackendError> {
    for dir in ["tmp", "home", "root", PKG_DB] {
        let path = root.join(dir);
        fs::create_dir_all(&path).map_err(io_err("create base directory", &path))?;
    }
    for (rel, content) in base_files(image) {
        let path = root.join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(io_err("create base directory", parent))?;
        }
        fs::write(&path, content).map_err(io_err("write base file", &path))?;
    }
    Ok(())
}

/// A writer that hashes and counts the generated image's deterministic tar: its "archive".
struct ArchiveHash {
    sha: Sha256,
    len: u64,
}

impl Write for ArchiveHash {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.sha.update(buf);
        self.len += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Pack `dir` into a store object, streaming through a temp file beside it.
fn store_layer(store: &Store, dir: &Path, scratch: &Path) -> Result<Digest, BackendError> {
    let tmp = scratch.join(".layer.tar");
    let mut file = File::create(&tmp).map_err(io_err("create layer file", &tmp))?;
    layer::pack_dir(dir, &mut file, PackMode::Deterministic).map_err(io_err("pack layer", dir))?;
    drop(file);
    let mut reader = File::open(&tmp).map_err(io_err("open layer file", &tmp))?;
    let (digest, _size) = store.put_object(&mut reader)?;
    fs::remove_file(&tmp).map_err(io_err("remove layer file", &tmp))?;
    Ok(digest)
}

impl RuntimeBackend for MockBackend {
    fn kind(&self) -> BackendKind {
        KIND
    }

    fn availability(&self) -> Availability {
        Availability {
            backend: KIND,
            available: true,
            detail: "always available; runs programs on the host without isolation".to_string(),
            fix: None,
        }
    }

    fn resolve(&self, req: &ResolveRequest) -> Result<Resolution, BackendError> {
        let base = match &req.manifest.base.image {
            // Aliases get a generated image: the mock never needs a network or a server.
            ImageRef::Alias { .. } => self.generated_base(req)?,
            // A custom URL or tarball is an explicit choice of real bytes: fetch and verify it
            // like every backend does, and build on its real tree.
            ImageRef::Url(_) | ImageRef::LocalPath(_) => req
                .images
                .ensure(&req.manifest.base, None, req.offline)?
                .locked(),
        };
        let packages = req
            .manifest
            .install_list()
            .iter()
            .map(|p| LockedPackage {
                name: p.name.clone(),
                version: p
                    .version
                    .clone()
                    .or_else(|| req.pins.get(&p.name).cloned())
                    .unwrap_or_else(|| self.version_of(&p.name)),
            })
            .collect();
        // The mock's packages have no dependencies: its closure is the listed packages.
        Ok(Resolution {
            base,
            packages,
            dependencies: Some(Vec::new()),
        })
    }

    fn build(&self, req: &BuildRequest) -> Result<BuildOutput, BackendError> {
        let rootfs = req.staging.join("rootfs");
        let mut layers = Vec::new();
        if req.lock.base.source == GENERATED {
            layers.push(self.build_generated_base(req, &rootfs)?);
        } else {
            self.copy_real_base(req, &rootfs)?;
        }
        layers.push(self.install_packages(req, &rootfs)?);
        Ok(BuildOutput { layers })
    }

    fn run(&self, req: &RunRequest) -> Result<i32, BackendError> {
        let rootfs = req.env_dir.join("rootfs");
        let (program, args) = program_and_args(req.argv);
        req.events.emit(Event::warn(format!(
            "mock backend: `{}` runs on the host without isolation or resource limits, in {}",
            program.to_string_lossy(),
            rootfs.display()
        )));
        let attached = io::stdin().is_terminal();
        let mut cmd = Command::new(&program);
        cmd.args(args).current_dir(&rootfs).env_clear();
        for (key, value) in run_environment(req, &rootfs) {
            cmd.env(key, value);
        }
        if req.stdout_to_stderr {
            let stderr = io::stderr()
                .as_fd()
                .try_clone_to_owned()
                .map_err(io_err("duplicate stderr", Path::new("/dev/stderr")))?;
            cmd.stdout(std::process::Stdio::from(stderr));
        }
        if !attached {
            // Its own process group, so that `stop` can end the program and its children.
            // An attached program keeps the terminal's foreground group, or it could not read
            // the terminal (it would get SIGTTIN).
            cmd.process_group(0);
        }
        let mut child = cmd.spawn().map_err(|source| BackendError::Spawn {
            program: program.to_string_lossy().into_owned(),
            source,
        })?;
        let pid = child.id() as i32;
        let record = SessionProcess::of_pid(pid, if attached { 0 } else { pid })
            .map_err(io_err("read process start time", Path::new("/proc")))?;
        req.marker.record(&record.encode())?;
        let status = child.wait().map_err(io_err("wait for program", &rootfs))?;
        Ok(super::exit_code(status))
    }

    fn status(&self, store: &Store, id: &EnvId) -> Result<usize, BackendError> {
        // A session is alive while its run marker is held by the karapace-tui process that
        // waits for the program; the marker is released when that process exits, crash or not.
        Ok(store.running_sessions(id)?)
    }

    fn stop(&self, store: &Store, id: &EnvId) -> Result<usize, BackendError> {
        super::session::stop_sessions(store, id, KIND)
    }

    fn teardown(&self, _env_dir: &Path) -> Result<(), BackendError> {
        // The mock backend keeps everything inside the environment directory.
        Ok(())
    }

    fn supports_read_only(&self) -> bool {
        false
    }

    fn archive_dir(&self) -> Option<&'static str> {
        Some("rootfs")
    }

    fn file_layers(
        &self,
        _store: &Store,
        env_dir: &Path,
        _lock: &LockFile,
    ) -> Option<Vec<PathBuf>> {
        Some(vec![rootfs_of(env_dir)])
    }
}

/// The program to run: the argv, or the user's shell for an interactive session.
fn program_and_args(argv: &[OsString]) -> (OsString, Vec<OsString>) {
    match argv.split_first() {
        Some((program, args)) => (program.clone(), args.to_vec()),
        None => {
            let shell = std::env::var_os("SHELL")
                .filter(|s| Path::new(s).is_absolute())
                .unwrap_or_else(|| OsString::from("/bin/sh"));
            (shell, vec![OsString::from("-i")])
        }
    }
}

/// A clean environment: a fixed PATH, the user's HOME and terminal/locale settings, and the
/// environment's own coordinates. Everything else from the host is left out.
fn run_environment(req: &RunRequest, rootfs: &Path) -> Vec<(OsString, OsString)> {
    let mut vars: Vec<(OsString, OsString)> = vec![
        (
            "PATH".into(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        ),
        ("KARAPACE_ENV_ID".into(), req.meta.id.to_string().into()),
        ("KARAPACE_ENV_ROOT".into(), rootfs.as_os_str().to_owned()),
        ("KARAPACE_BACKEND".into(), KIND.as_str().into()),
    ];
    if let Some(name) = &req.meta.name {
        vars.push(("KARAPACE_ENV_NAME".into(), name.into()));
    }
    for (key, value) in std::env::vars_os() {
        let k = key.to_string_lossy();
        let keep = matches!(
            k.as_ref(),
            "HOME" | "USER" | "LOGNAME" | "TERM" | "COLORTERM" | "LANG" | "TZ"
        ) || k.starts_with("LC_");
        if keep {
            vars.push((key, value));
        }
    }
    vars
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Where the environment's files are, for listings and tests.
pub fn rootfs_of(env_dir: &Path) -> PathBuf {
    env_dir.join("rootfs")
}

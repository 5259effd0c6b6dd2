//! A loopback LXC image server for the integration tests: a small HTTP/1.1 server on
//! 127.0.0.1 (std only, one thread per connection, at most [`MAX_CONNECTIONS`] at once) that
//! serves a temp directory laid out like images.linuxcontainers.org (shared design note
//! "image-server", D.1–D.3), built from rootfs tarballs the tests make themselves.
//!
//! Knobs: per-path [`Override`]s (fail N times with a status, delay the first byte, truncate
//! the body under a full `Content-Length`, throttle, redirect), a request log to assert
//! "downloaded once", and [`ImageServer::prune`] to drop a build as upstream does. The server
//! stops (and joins its threads) on drop.
//!
//! Include it with `#[path = "util/image_server.rs"] mod image_server;`.
#![allow(dead_code)]

#[path = "image_layout.rs"]
mod layout;

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use layout::Layout;
// Each test file uses a different subset.
#[allow(unused_imports)]
pub use layout::{
    gz, rootfs_tar, rootfs_tar_gz, rootfs_tar_xz, sha256_hex, xz, ImageServerBuilder,
};

/// Connections served at once; more are answered 503 at once.
pub const MAX_CONNECTIONS: usize = 64;
/// How long a connection may take to send its request line and headers.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

// ---------------------------------------------------------------------------------------------
// Server

/// How one path misbehaves. Fields combine: a failure (while it lasts) wins over the body
/// knobs; the delay applies to every response of the path.
#[derive(Clone, Debug, Default)]
pub struct Override {
    fail: Option<(u16, u32)>,
    delay: Option<Duration>,
    truncate_after: Option<usize>,
    throttle: Option<(usize, Duration)>,
    redirect: Option<(u16, String)>,
}

impl Override {
    /// Answer `status` to the next `times` requests, then serve normally.
    pub fn fail(status: u16, times: u32) -> Self {
        Override {
            fail: Some((status, times)),
            ..Self::default()
        }
    }

    /// Answer `status` to every request.
    pub fn always(status: u16) -> Self {
        Self::fail(status, u32::MAX)
    }

    /// Wait this long before sending the first byte of the response.
    pub fn delay(d: Duration) -> Self {
        Override {
            delay: Some(d),
            ..Self::default()
        }
    }

    /// Send the full `Content-Length` but only `n` bytes of the body, then close.
    pub fn truncate_after(n: usize) -> Self {
        Override {
            truncate_after: Some(n),
            ..Self::default()
        }
    }

    /// Send the body `chunk` bytes at a time, `pause` apart.
    pub fn throttle(chunk: usize, pause: Duration) -> Self {
        Override {
            throttle: Some((chunk.max(1), pause)),
            ..Self::default()
        }
    }

    /// Answer `status` (301, 302, 307 …) with `Location: location`.
    pub fn redirect(status: u16, location: &str) -> Self {
        Override {
            redirect: Some((status, location.into())),
            ..Self::default()
        }
    }
}

/// One request as the server saw it (the path percent-decoded, without the query).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
}

struct Shared {
    root: PathBuf,
    stop: AtomicBool,
    active: AtomicUsize,
    overrides: Mutex<HashMap<String, Override>>,
    log: Mutex<Vec<Request>>,
    layout: Mutex<Layout>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub struct ImageServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<Vec<JoinHandle<()>>>>,
    _dir: tempfile::TempDir,
}

impl ImageServer {
    pub fn builder() -> ImageServerBuilder {
        ImageServerBuilder::default()
    }

    fn start(layout: Layout) -> ImageServer {
        let dir = tempfile::tempdir().unwrap();
        layout.write(dir.path());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            root: dir.path().to_path_buf(),
            stop: AtomicBool::new(false),
            active: AtomicUsize::new(0),
            overrides: Mutex::new(HashMap::new()),
            log: Mutex::new(Vec::new()),
            layout: Mutex::new(layout),
        });
        let accept_shared = Arc::clone(&shared);
        let accept = thread::spawn(move || accept_loop(listener, accept_shared));
        ImageServer {
            addr,
            shared,
            accept: Some(accept),
            _dir: dir,
        }
    }

    /// `http://127.0.0.1:PORT`, without a trailing `/`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The served tree.
    pub fn root(&self) -> &Path {
        &self.shared.root
    }

    /// `images/d/r/a/v/build/rootfs.tar.xz` for `product` (`d/r/a/v`), unencoded.
    pub fn rootfs_path(product: &str, build: &str) -> String {
        format!("images/{product}/{build}/rootfs.tar.xz")
    }

    /// Makes `path` (as requested, e.g. `/streams/v1/index.json`) misbehave.
    pub fn set_override(&self, path: &str, o: Override) {
        lock(&self.shared.overrides).insert(path.into(), o);
    }

    pub fn clear_override(&self, path: &str) {
        lock(&self.shared.overrides).remove(path);
    }

    pub fn requests(&self) -> Vec<Request> {
        lock(&self.shared.log).clone()
    }

    /// How many requests (any method) asked for `path`.
    pub fn count(&self, path: &str) -> usize {
        lock(&self.shared.log)
            .iter()
            .filter(|r| r.path == path)
            .count()
    }

    pub fn clear_log(&self) {
        lock(&self.shared.log).clear();
    }

    /// Removes a build as upstream pruning does: its directory goes, and the indexes are
    /// rewritten without it.
    pub fn prune(&self, product: &str, build: &str) {
        let mut layout = lock(&self.shared.layout);
        let before = layout.images.len();
        layout
            .images
            .retain(|i| !(i.product_id() == product && i.build == build));
        assert!(
            layout.images.len() < before,
            "no build {product} {build} to prune"
        );
        fs::remove_dir_all(self.root().join(format!("images/{product}/{build}"))).unwrap();
        for stale in ["streams/v1/images.json", "meta/1.0/index-system"] {
            let path = self.root().join(stale);
            if path.exists() {
                fs::remove_file(path).unwrap();
            }
        }
        layout.write(self.root());
    }
}

impl Drop for ImageServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept(); it sees `stop` and returns.
        drop(TcpStream::connect_timeout(
            &self.addr,
            Duration::from_secs(1),
        ));
        if let Some(accept) = self.accept.take() {
            if let Ok(workers) = accept.join() {
                for w in workers {
                    // A worker that panicked already failed its test through the client.
                    drop(w.join());
                }
            }
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) -> Vec<JoinHandle<()>> {
    let mut workers: Vec<JoinHandle<()>> = Vec::new();
    for conn in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = conn else { continue };
        workers.retain(|w| !w.is_finished());
        if shared.active.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
            let mut stream = stream;
            drop(respond_simple(
                &mut stream,
                503,
                "Service Unavailable",
                false,
            ));
            continue;
        }
        shared.active.fetch_add(1, Ordering::SeqCst);
        let worker_shared = Arc::clone(&shared);
        workers.push(thread::spawn(move || {
            drop(serve(stream, &worker_shared));
            worker_shared.active.fetch_sub(1, Ordering::SeqCst);
        }));
    }
    workers
}

/// Reads the request head (up to 16 KiB): `(method, raw target)`.
fn read_head(stream: &mut TcpStream) -> io::Result<(String, String)> {
    stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf)?;
        if n == 0 || head.len() > 16 * 1024 {
            return Err(io::ErrorKind::InvalidData.into());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&head);
    let mut parts = text.lines().next().unwrap_or("").split_whitespace();
    match (parts.next(), parts.next()) {
        (Some(m), Some(t)) => Ok((m.to_string(), t.to_string())),
        _ => Err(io::ErrorKind::InvalidData.into()),
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        301 => "Moved Permanently",
        302 => "Found",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        404 => "Not Found",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

fn respond_simple(stream: &mut TcpStream, status: u16, body: &str, head: bool) -> io::Result<()> {
    let header = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        reason(status),
        body.len()
    );
    stream.write_all(header.as_bytes())?;
    if !head {
        stream.write_all(body.as_bytes())?;
    }
    Ok(())
}

/// Sleeps `d` in small steps, returning early once the server is stopping.
fn pause(shared: &Shared, d: Duration) {
    let step = Duration::from_millis(10);
    let mut left = d;
    while !left.is_zero() && !shared.stop.load(Ordering::SeqCst) {
        let now = left.min(step);
        thread::sleep(now);
        left -= now;
    }
}

/// The override for `path`, counting down a limited failure.
fn take_override(shared: &Shared, path: &str) -> Override {
    let mut overrides = lock(&shared.overrides);
    let Some(o) = overrides.get_mut(path) else {
        return Override::default();
    };
    let current = o.clone();
    if let Some((status, times)) = o.fail {
        o.fail = match times {
            0 | 1 => None,
            u32::MAX => Some((status, times)),
            n => Some((status, n - 1)),
        };
    }
    current
}

/// The file `path` names under the root, if it is a regular file and stays inside the root.
fn file_for(root: &Path, path: &str) -> Option<Vec<u8>> {
    let rel = Path::new(path.trim_start_matches('/'));
    if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return None;
    }
    let full = root.join(rel);
    full.is_file().then(|| fs::read(full).ok()).flatten()
}

fn serve(mut stream: TcpStream, shared: &Shared) -> io::Result<()> {
    let (method, target) = read_head(&mut stream)?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let path = percent_decode(target.split(['?', '#']).next().unwrap_or(""));
    lock(&shared.log).push(Request {
        method: method.clone(),
        path: path.clone(),
    });
    let head = method == "HEAD";
    let o = take_override(shared, &path);
    if let Some(d) = o.delay {
        pause(shared, d);
    }
    if let Some((status, _)) = o.fail {
        respond_simple(&mut stream, status, "injected failure\n", head)?;
    } else if let Some((status, location)) = &o.redirect {
        let header = format!(
            "HTTP/1.1 {status} {}\r\nLocation: {location}\r\nContent-Length: 0\r\n\
             Connection: close\r\n\r\n",
            reason(*status)
        );
        stream.write_all(header.as_bytes())?;
    } else if method != "GET" && !head {
        respond_simple(&mut stream, 405, "only GET and HEAD\n", false)?;
    } else if let Some(body) = file_for(&shared.root, &path) {
        send_body(&mut stream, shared, &o, &body, head)?;
    } else {
        respond_simple(&mut stream, 404, "not found\n", head)?;
    }
    stream.flush()?;
    stream.shutdown(Shutdown::Write)
}

fn send_body(
    stream: &mut TcpStream,
    shared: &Shared,
    o: &Override,
    body: &[u8],
    head: bool,
) -> io::Result<()> {
    let header = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(header.as_bytes())?;
    if head {
        return Ok(());
    }
    let body = match o.truncate_after {
        Some(n) => &body[..n.min(body.len())],
        None => body,
    };
    match o.throttle {
        Some((chunk, every)) => {
            for part in body.chunks(chunk) {
                if shared.stop.load(Ordering::SeqCst) {
                    break;
                }
                stream.write_all(part)?;
                stream.flush()?;
                pause(shared, every);
            }
            Ok(())
        }
        None => stream.write_all(body),
    }
}

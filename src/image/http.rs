//! The HTTP client for the image server: ureq with timeouts, bounded retries and clear errors.
//!
//! Invariants:
//! - Only `https://` URLs are fetched, except plain `http://` to a loopback host (127.0.0.0/8,
//!   `::1`, `localhost`), which the test fixture serves. [`HttpClient::check_allowed`] runs
//!   before every request, including each redirect hop: ureq's own redirect following is off,
//!   so a redirect can never downgrade to plain http on the network.
//! - Small documents (indexes, `SHA256SUMS`) are read whole, capped in size, and retried with
//!   doubling backoff on connection errors, timeouts, cut bodies and 5xx. A 404 is never
//!   retried: it is an answer, not a failure.
//! - Large bodies are streamed, never buffered. Retries happen only until the response headers
//!   arrive; a body that ends before its `Content-Length` is an error, never a short success.

use std::io::{self, Read};
use std::net::IpAddr;
use std::thread;
use std::time::Duration;

use ureq::http::{Response, Uri};
use ureq::Body;

pub use progress::{format_rate, split_rate, ProgressReader, RATE_SEPARATOR};

/// How many redirects one request may follow.
const MAX_REDIRECTS: u32 = 5;

/// What a fetch of the image server can fail with. Every message names the URL (or host) and
/// says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("refusing to fetch `{url}`: {reason}")]
    Refused { url: String, reason: String },
    #[error(
        "cannot resolve the host `{host}` ({detail}): check the network connection and the \
         image server name (KARAPACE_IMAGE_SERVER)"
    )]
    Dns { host: String, detail: String },
    #[error(
        "cannot connect to {url} ({detail}): check the network connection, any proxy or \
         firewall, and that the image server is up"
    )]
    Connect { url: String, detail: String },
    #[error(
        "TLS with {url} failed ({detail}): check the system clock and that the server's \
         certificate is valid for its name"
    )]
    Tls { url: String, detail: String },
    #[error("timed out {phase} {url}: the server or the network is slow or down; try again later")]
    Timeout { url: String, phase: &'static str },
    #[error(
        "{url} was not found (HTTP 404): check the image server (KARAPACE_IMAGE_SERVER) and the \
         image name; for a build, the build may have been pruned upstream"
    )]
    NotFound { url: String },
    #[error("{url} answered HTTP {status}: {}", status_hint(*.status))]
    Status { url: String, status: u16 },
    #[error("reading {url} failed ({detail}): the transfer was cut; try again")]
    Body { url: String, detail: String },
    #[error(
        "{url} is larger than the {limit}-byte limit: is the image server (KARAPACE_IMAGE_SERVER) \
         really an LXC image server?"
    )]
    TooLarge { url: String, limit: u64 },
}

fn status_hint(status: u16) -> &'static str {
    if status >= 500 {
        "the image server is failing; try again later"
    } else {
        "the image server refused the request; check the server URL (KARAPACE_IMAGE_SERVER)"
    }
}

impl HttpError {
    /// Whether a new attempt may succeed: connection trouble, timeouts, cut bodies and 5xx.
    /// 404, other 4xx, DNS, TLS, refusals and oversize bodies are answers, not accidents.
    pub fn is_retryable(&self) -> bool {
        match self {
            HttpError::Connect { .. } | HttpError::Timeout { .. } | HttpError::Body { .. } => true,
            HttpError::Status { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }

    /// The `HttpError` that a streamed body's [`io::Error`] carries, if any.
    pub fn from_io(err: &io::Error) -> Option<&HttpError> {
        err.get_ref()
            .and_then(|inner| inner.downcast_ref::<HttpError>())
    }
}

/// Timeouts and retry policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// DNS lookup plus TCP connect plus TLS handshake.
    pub connect_timeout: Duration,
    /// The longest wait for the response headers, and for any single read of the body (a
    /// stall detector, not a cap on the whole transfer).
    pub read_timeout: Duration,
    /// Extra attempts after the first one.
    pub retries: u32,
    /// The wait before the first retry; it doubles for each further one.
    pub backoff: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
            retries: 3,
            backoff: Duration::from_millis(500),
        }
    }
}

/// A blocking HTTP client for the image server (no async runtime: see the style guide).
pub struct HttpClient {
    agent: ureq::Agent,
    cfg: HttpConfig,
}

impl HttpClient {
    pub fn new(cfg: HttpConfig) -> HttpClient {
        let config = ureq::Agent::config_builder()
            // Statuses are mapped here, to NotFound / Status with the URL.
            .http_status_as_error(false)
            // Redirects are followed by `open`, which checks every hop.
            .max_redirects(0)
            .timeout_resolve(Some(cfg.connect_timeout))
            .timeout_connect(Some(cfg.connect_timeout))
            .timeout_send_request(Some(cfg.connect_timeout))
            .timeout_recv_response(Some(cfg.read_timeout))
            .timeout_per_read(Some(cfg.read_timeout))
            .user_agent(concat!("karapace-tui/", env!("CARGO_PKG_VERSION")))
            .build();
        HttpClient {
            agent: ureq::Agent::new_with_config(config),
            cfg,
        }
    }

    pub fn config(&self) -> &HttpConfig {
        &self.cfg
    }

    /// https always; plain http only to a loopback host (127.0.0.0/8, `::1`, `localhost`).
    /// Anything else (another scheme, no host, an unparsable URL) is refused.
    pub fn check_allowed(url: &str) -> Result<(), HttpError> {
        let refused = |reason: &str| HttpError::Refused {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let uri: Uri = url
            .parse()
            .map_err(|_| refused("not a valid URL (expected https://HOST/PATH)"))?;
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| refused("the URL has no host (expected https://HOST/PATH)"))?;
        match uri.scheme_str() {
            Some("https") => Ok(()),
            Some("http") if is_loopback_host(host) => Ok(()),
            Some("http") => Err(refused(
                "plain http is only allowed to loopback addresses; use https, or serve from \
                 127.0.0.1 for tests",
            )),
            _ => Err(refused(
                "only https URLs are supported (plain http only on loopback)",
            )),
        }
    }

    /// A small document (an index, `SHA256SUMS`), at most `limit` bytes, as UTF-8 text.
    /// Retried with backoff on connection errors, timeouts, cut bodies and 5xx; never on 404.
    pub fn get_text(&self, url: &str, limit: u64) -> Result<String, HttpError> {
        self.with_retries(|| {
            let (response, url) = self.open(url, false)?;
            if let Some(len) = response.body().content_length() {
                if len > limit {
                    return Err(HttpError::TooLarge { url, limit });
                }
            }
            let mut body = response.into_body();
            body.with_config()
                .limit(limit)
                .read_to_string()
                .map_err(|e| map_ureq_error(&url, e, true))
        })
    }

    /// A large body as a stream (not buffered) plus its `Content-Length` when known.
    /// Connection-level retries happen before the body starts; read errors of the stream are
    /// `io::Error`s that carry an [`HttpError`] (see [`HttpError::from_io`]).
    pub fn get_stream(&self, url: &str) -> Result<(Box<dyn Read + Send>, Option<u64>), HttpError> {
        self.with_retries(|| {
            let (response, url) = self.open(url, true)?;
            let expected = response.body().content_length();
            let reader = StreamBody {
                inner: response.into_body().into_reader(),
                url,
                expected,
                done: 0,
            };
            Ok((Box::new(reader) as Box<dyn Read + Send>, expected))
        })
    }

    fn with_retries<T>(
        &self,
        mut attempt: impl FnMut() -> Result<T, HttpError>,
    ) -> Result<T, HttpError> {
        let mut delay = self.cfg.backoff;
        let mut retried = 0;
        loop {
            match attempt() {
                Ok(value) => return Ok(value),
                Err(err) if retried < self.cfg.retries && err.is_retryable() => {
                    retried += 1;
                    thread::sleep(delay);
                    delay = delay.saturating_mul(2);
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// One GET up to a 2xx response, following redirects by hand so that every hop passes
    /// `check_allowed`. Returns the response and the URL that gave it.
    fn open(&self, url: &str, identity: bool) -> Result<(Response<Body>, String), HttpError> {
        let mut current = url.to_string();
        for _ in 0..=MAX_REDIRECTS {
            Self::check_allowed(&current)?;
            let mut request = self.agent.get(&current);
            if identity {
                // A transparently gunzipped body would not match its Content-Length, nor the
                // sha256 of the file on the server.
                request = request.header("accept-encoding", "identity");
            }
            let response = request
                .call()
                .map_err(|e| map_ureq_error(&current, e, false))?;
            let status = response.status().as_u16();
            match status {
                200..=299 => return Ok((response, current)),
                301 | 302 | 303 | 307 | 308 => {
                    let location = response
                        .headers()
                        .get("location")
                        .and_then(|v| v.to_str().ok())
                        .ok_or_else(|| HttpError::Status {
                            url: current.clone(),
                            status,
                        })?;
                    current = join_location(&current, location);
                }
                404 | 410 => return Err(HttpError::NotFound { url: current }),
                _ => {
                    return Err(HttpError::Status {
                        url: current,
                        status,
                    })
                }
            }
        }
        Err(HttpError::Refused {
            url: url.to_string(),
            reason: format!("more than {MAX_REDIRECTS} redirects"),
        })
    }
}

fn is_loopback_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare.eq_ignore_ascii_case("localhost") || bare.eq_ignore_ascii_case("localhost.") {
        return true;
    }
    bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The absolute URL a `Location` header points to, relative to `base`.
fn join_location(base: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        return location.to_string();
    }
    let (scheme, rest) = base.split_once("://").unwrap_or(("https", base));
    if let Some(stripped) = location.strip_prefix("//") {
        return format!("{scheme}://{stripped}");
    }
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    if location.starts_with('/') {
        return format!("{scheme}://{authority}{location}");
    }
    let path = rest[authority_end..].split(['?', '#']).next().unwrap_or("");
    let dir = path.rfind('/').map_or("/", |i| &path[..=i]);
    format!("{scheme}://{authority}{dir}{location}")
}

fn host_of(url: &str) -> String {
    url.parse::<Uri>()
        .ok()
        .and_then(|u| u.host().map(str::to_string))
        .unwrap_or_else(|| url.to_string())
}

/// Translates ureq's error into ours; `in_body` says whether the response headers had arrived.
fn map_ureq_error(url: &str, err: ureq::Error, in_body: bool) -> HttpError {
    let url_s = url.to_string();
    match err {
        ureq::Error::HostNotFound => HttpError::Dns {
            host: host_of(url),
            detail: "host not found".to_string(),
        },
        // A lookup that never answers is a DNS problem to the user, not a slow server.
        ureq::Error::Timeout(ureq::Timeout::Resolve) => HttpError::Dns {
            host: host_of(url),
            detail: "the lookup timed out".to_string(),
        },
        ureq::Error::Timeout(which) => HttpError::Timeout {
            url: url_s,
            phase: timeout_phase(which, in_body),
        },
        ureq::Error::Io(e) => map_io_error(url, e, in_body),
        ureq::Error::Tls(detail) => HttpError::Tls {
            url: url_s,
            detail: detail.to_string(),
        },
        ureq::Error::Rustls(e) => HttpError::Tls {
            url: url_s,
            detail: e.to_string(),
        },
        ureq::Error::BadUri(detail) => HttpError::Refused {
            url: url_s,
            reason: format!("not a valid URL ({detail})"),
        },
        ureq::Error::BodyExceedsLimit(limit) => HttpError::TooLarge { url: url_s, limit },
        ureq::Error::ConnectionFailed => HttpError::Connect {
            url: url_s,
            detail: "connection failed".to_string(),
        },
        other if in_body => HttpError::Body {
            url: url_s,
            detail: other.to_string(),
        },
        other => HttpError::Connect {
            url: url_s,
            detail: other.to_string(),
        },
    }
}

fn map_io_error(url: &str, err: io::Error, in_body: bool) -> HttpError {
    match err.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => HttpError::Timeout {
            url: url.to_string(),
            phase: if in_body {
                "reading the body of"
            } else {
                "waiting for a response from"
            },
        },
        _ if in_body => HttpError::Body {
            url: url.to_string(),
            detail: err.to_string(),
        },
        // std reports a getaddrinfo(3) failure as an uncategorized io::Error with this text;
        // ureq passes it on as `Error::Io`, not `HostNotFound`.
        _ if err.to_string().contains("failed to lookup address") => HttpError::Dns {
            host: host_of(url),
            detail: err.to_string(),
        },
        _ => HttpError::Connect {
            url: url.to_string(),
            detail: err.to_string(),
        },
    }
}

fn timeout_phase(which: ureq::Timeout, in_body: bool) -> &'static str {
    match which {
        ureq::Timeout::Connect => "connecting to",
        ureq::Timeout::SendRequest | ureq::Timeout::SendBody | ureq::Timeout::PerWrite => {
            "sending the request to"
        }
        ureq::Timeout::RecvResponse => "waiting for a response from",
        _ if in_body => "reading the body of",
        _ => "waiting for a response from",
    }
}

/// The streamed body of [`HttpClient::get_stream`]: maps read errors to [`HttpError`]s (inside
/// an `io::Error`) and turns an early end into an error even if the transport did not.
struct StreamBody<R> {
    inner: R,
    url: String,
    expected: Option<u64>,
    done: u64,
}

impl<R: Read> Read for StreamBody<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = match self.inner.read(buf) {
            Ok(n) => n,
            Err(err) => {
                let mapped = map_ureq_error(&self.url, ureq::Error::from(err), true);
                let kind = match mapped {
                    HttpError::Timeout { .. } => io::ErrorKind::TimedOut,
                    HttpError::Body { .. } => io::ErrorKind::UnexpectedEof,
                    _ => io::ErrorKind::Other,
                };
                return Err(io::Error::new(kind, mapped));
            }
        };
        self.done += n as u64;
        if n == 0 && !buf.is_empty() {
            if let Some(expected) = self.expected.filter(|&e| self.done < e) {
                let detail = format!("the body ended after {} of {expected} bytes", self.done);
                let err = HttpError::Body {
                    url: self.url.clone(),
                    detail,
                };
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, err));
            }
        }
        Ok(n)
    }
}

#[path = "http_progress.rs"]
mod progress;

#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;

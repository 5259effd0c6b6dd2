use super::*;
use crate::events::{Event, MemorySink};

#[test]
fn loopback_http_is_allowed_and_other_http_refused() {
    for ok in [
        "https://images.linuxcontainers.org/streams/v1/index.json",
        "http://127.0.0.1:8080/x",
        "http://127.0.0.2/x",
        "http://localhost:1/x",
        "http://LOCALHOST/x",
        "http://[::1]:9/x",
    ] {
        assert!(HttpClient::check_allowed(ok).is_ok(), "{ok}");
    }
    for bad in [
        "http://192.0.2.1/",
        "http://images.linuxcontainers.org/",
        "http://127.0.0.1.nip.io/",
        "http://localhost.example.com/",
        "http://[::2]/",
        "ftp://127.0.0.1/",
        "file:///etc/passwd",
        "not a url",
        "https://",
    ] {
        assert!(
            matches!(
                HttpClient::check_allowed(bad),
                Err(HttpError::Refused { .. })
            ),
            "{bad}"
        );
    }
}

#[test]
fn refused_message_says_how_to_fix() {
    let err = HttpClient::check_allowed("http://192.0.2.1/x").unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("http://192.0.2.1/x"), "{msg}");
    assert!(msg.contains("use https"), "{msg}");
}

#[test]
fn redirect_locations_resolve_against_the_base() {
    let base = "http://127.0.0.1:9/a/b/c.json?x=1";
    assert_eq!(join_location(base, "https://h/x"), "https://h/x");
    assert_eq!(join_location(base, "//h2/y"), "http://h2/y");
    assert_eq!(join_location(base, "/root"), "http://127.0.0.1:9/root");
    assert_eq!(
        join_location(base, "d.json"),
        "http://127.0.0.1:9/a/b/d.json"
    );
    assert_eq!(join_location("http://h", "x"), "http://h/x");
}

#[test]
fn retryable_errors() {
    let url = "u".to_string();
    assert!(HttpError::Status {
        url: url.clone(),
        status: 503
    }
    .is_retryable());
    assert!(!HttpError::Status {
        url: url.clone(),
        status: 403
    }
    .is_retryable());
    assert!(!HttpError::NotFound { url: url.clone() }.is_retryable());
    assert!(HttpError::Timeout {
        url,
        phase: "connecting to"
    }
    .is_retryable());
}

#[test]
fn rates_are_human_readable_and_split_back() {
    assert_eq!(format_rate(512.0), "512 B/s");
    assert_eq!(format_rate(1536.0), "1.5 KiB/s");
    assert_eq!(format_rate(3.0 * 1024.0 * 1024.0), "3.0 MiB/s");
    assert_eq!(
        split_rate("download x @ 3.0 MiB/s"),
        ("download x", Some("3.0 MiB/s"))
    );
    assert_eq!(split_rate("download x"), ("download x", None));
}

#[test]
fn progress_reader_reports_throttled_and_at_eof() {
    let sink = MemorySink::default();
    let data = vec![7u8; 10_000];
    let mut reader = ProgressReader::new(&data[..], "dl".to_string(), Some(10_000), &sink);
    let mut buf = [0u8; 100];
    let mut total = 0;
    loop {
        let n = reader.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        total += n;
    }
    assert_eq!(reader.read(&mut buf).unwrap(), 0);
    assert_eq!(total, 10_000);
    let events = sink.events();
    // The first read reports at once, the quick reads after it are throttled, and EOF
    // reports exactly once.
    assert!(events.len() >= 2 && events.len() < 10, "{events:?}");
    match events.last() {
        Some(Event::Progress { task, done, total }) => {
            assert_eq!(*done, 10_000);
            assert_eq!(*total, Some(10_000));
            assert_eq!(split_rate(task).0, "dl");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn stream_body_short_read_is_an_error() {
    let data = [1u8; 10];
    let mut body = StreamBody {
        inner: &data[..],
        url: "http://127.0.0.1/x".to_string(),
        expected: Some(20),
        done: 0,
    };
    let mut out = Vec::new();
    let err = body.read_to_end(&mut out).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    assert!(matches!(
        HttpError::from_io(&err),
        Some(HttpError::Body { .. })
    ));
}

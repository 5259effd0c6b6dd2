use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;

use super::{names, temp_store};
use crate::store::{ProblemKind, Store, StoreError};
use crate::types::Digest;

/// A reader producing `len` pseudo-random bytes in odd-sized pieces, never holding them all.
struct Generated {
    left: usize,
    state: u64,
}

impl Read for Generated {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.left).min(7919);
        for b in &mut buf[..n] {
            self.state = self
                .state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            *b = (self.state >> 33) as u8;
        }
        self.left -= n;
        Ok(n)
    }
}

fn generated(len: usize) -> Generated {
    Generated {
        left: len,
        state: 42,
    }
}

/// Make an object writable and overwrite one byte in the middle.
fn tamper(store: &Store, d: &Digest) {
    let path = store.object_path(d);
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    let mut bytes = fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    fs::write(&path, bytes).unwrap();
}

#[test]
fn bytes_round_trip_and_dedupe() {
    let (_dir, store) = temp_store();
    let d = store.put_object_bytes(b"hello").unwrap();
    assert_eq!(d, Digest::of_bytes(b"hello"));
    assert_eq!(store.put_object_bytes(b"hello").unwrap(), d);
    assert_eq!(store.read_object(&d).unwrap(), b"hello");
    assert!(store.has_object(&d));
    assert_eq!(store.verify_object(&d).unwrap(), 5);
    assert_eq!(names(&store.objects_dir()), [d.to_string()]);
    assert!(
        names(&store.tmp_dir()).is_empty(),
        "no temp file may be left"
    );
    let mode = fs::metadata(store.object_path(&d))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o222, 0, "objects are read-only");
}

#[test]
fn large_object_streams_in_and_out() {
    // 12 MiB pass through a 64 KiB buffer on the way in and are hashed piecewise on the way out.
    let (_dir, store) = temp_store();
    let len = 12 * 1024 * 1024 + 3;
    let (d, size) = store.put_object(&mut generated(len)).unwrap();
    assert_eq!(size, len as u64);
    let mut hasher = blake3::Hasher::new();
    io::copy(&mut generated(len), &mut hasher).unwrap();
    assert_eq!(d, Digest::from_hash(hasher.finalize()));

    let mut reader = store.open_object(&d).unwrap();
    let mut expected = generated(len);
    let (mut a, mut b) = (vec![0u8; 100_000], vec![0u8; 100_000]);
    loop {
        let n = reader.read(&mut a).unwrap();
        if n == 0 {
            break;
        }
        expected.read_exact(&mut b[..n]).unwrap();
        assert_eq!(a[..n], b[..n]);
    }
    assert_eq!(reader.bytes_read(), len as u64);
    assert_eq!(store.verify_object(&d).unwrap(), len as u64);
}

#[test]
fn tampered_object_fails_at_end_of_stream() {
    let (_dir, store) = temp_store();
    let (d, _) = store.put_object(&mut generated(300_000)).unwrap();
    tamper(&store, &d);

    let mut reader = store.open_object(&d).unwrap();
    let err = io::copy(&mut reader, &mut io::sink()).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    match StoreError::from_io_at(err, "x", "read") {
        StoreError::ObjectMismatch {
            digest,
            actual,
            path,
        } => {
            assert_eq!(digest, d);
            assert_ne!(actual, d);
            assert_eq!(path, store.object_path(&d));
        }
        other => panic!("expected ObjectMismatch, got {other:?}"),
    }
    assert!(matches!(
        store.read_object(&d),
        Err(StoreError::ObjectMismatch { .. })
    ));
    assert!(matches!(
        store.verify_object(&d),
        Err(StoreError::ObjectMismatch { .. })
    ));

    let report = store.verify().unwrap();
    let bad: Vec<_> = report
        .problems
        .iter()
        .filter(|p| p.kind == ProblemKind::CorruptObject)
        .collect();
    assert_eq!(bad.len(), 1, "{report:#?}");
    assert_eq!(bad[0].path, store.object_path(&d));
}

#[test]
fn truncated_object_is_a_mismatch_too() {
    let (_dir, store) = temp_store();
    let d = store.put_object_bytes(b"some content").unwrap();
    let path = store.object_path(&d);
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(&path, b"some").unwrap();
    assert!(matches!(
        store.verify_object(&d),
        Err(StoreError::ObjectMismatch { .. })
    ));
}

#[test]
fn writing_an_object_again_heals_a_damaged_copy() {
    let (_dir, store) = temp_store();
    let d = store.put_object_bytes(b"precious bytes").unwrap();
    tamper(&store, &d);
    assert!(store.verify_object(&d).is_err());
    assert_eq!(store.put_object_bytes(b"precious bytes").unwrap(), d);
    assert_eq!(store.read_object(&d).unwrap(), b"precious bytes");
}

#[test]
fn missing_object_is_reported_by_digest() {
    let (_dir, store) = temp_store();
    let d = Digest::of_bytes(b"never stored");
    assert!(!store.has_object(&d));
    match store.open_object(&d) {
        Err(StoreError::MissingObject { digest }) => assert_eq!(digest, d),
        other => panic!("expected MissingObject, got {other:?}"),
    }
}

#[test]
fn a_failing_reader_leaves_no_temp_file() {
    struct Failing;
    impl Read for Failing {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::other("network gone"))
        }
    }
    let (_dir, store) = temp_store();
    let err = store.put_object(&mut Failing).unwrap_err();
    assert!(err.to_string().contains("network gone"), "{err}");
    assert!(names(&store.tmp_dir()).is_empty());
    assert!(names(&store.objects_dir()).is_empty());
}

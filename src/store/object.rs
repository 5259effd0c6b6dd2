//! Content-addressed objects: `objects/<blake3 hex>`.
//!
//! Writes stream through a flocked temp file in `tmp/` while hashing, then fsync, rename into
//! `objects/` and fsync `objects/`. Memory use is one 64 KiB buffer whatever the object's size.
//! Reads are verified: [`VerifiedReader`] hashes as it goes and fails at end of file if the
//! content does not match its name. Objects are made read-only (0444) to guard against accidental
//! edits; a write of an object that already exists replaces it, which also heals a damaged copy.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use super::error::{IoContext, Result, StoreError};
use super::fsutil::{self, LockedTemp};
use super::Store;
use crate::crashpoint;
use crate::types::Digest;

const BUF_SIZE: usize = 64 * 1024;

impl Store {
    /// Store everything `reader` yields as one object; returns its digest and size.
    pub fn put_object(&self, reader: &mut dyn Read) -> Result<(Digest, u64)> {
        let name = format!("obj-{}", fsutil::unique_suffix());
        let mut temp = LockedTemp::create(&self.tmp_dir(), &name, 0o444)?;
        let temp_path = temp.path().to_path_buf();
        let mut hasher = blake3::Hasher::new();
        let mut buf = vec![0u8; BUF_SIZE];
        let mut size = 0u64;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(StoreError::io(&temp_path, "read the content for", e)),
            };
            hasher.update(&buf[..n]);
            temp.file().write_all(&buf[..n]).at(&temp_path, "write")?;
            size += n as u64;
        }
        temp.sync()?;
        let digest = Digest::from_hash(hasher.finalize());
        crashpoint::hit("put object: temp file written and synced");
        let lock = temp.persist(&self.object_path(&digest))?;
        drop(lock);
        crashpoint::hit("put object: renamed into objects/");
        fsutil::fsync_dir(&self.objects_dir())?;
        Ok((digest, size))
    }

    /// Store a byte slice as an object.
    pub fn put_object_bytes(&self, bytes: &[u8]) -> Result<Digest> {
        let mut reader = bytes;
        Ok(self.put_object(&mut reader)?.0)
    }

    /// Open an object for streaming, verified reading.
    pub fn open_object(&self, d: &Digest) -> Result<VerifiedReader> {
        let path = self.object_path(d);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::MissingObject { digest: d.clone() })
            }
            Err(e) => return Err(StoreError::io(&path, "open the object", e)),
        };
        Ok(VerifiedReader {
            file,
            path,
            expected: d.clone(),
            hasher: blake3::Hasher::new(),
            bytes_read: 0,
            state: State::Reading,
        })
    }

    /// Read a (small) object whole, verified.
    pub fn read_object(&self, d: &Digest) -> Result<Vec<u8>> {
        let mut reader = self.open_object(d)?;
        let mut bytes = Vec::new();
        reader
            .read_to_end(&mut bytes)
            .map_err(|e| StoreError::from_io_at(e, self.object_path(d), "read the object"))?;
        Ok(bytes)
    }

    /// Whether `objects/<d>` exists (its content is not checked).
    pub fn has_object(&self, d: &Digest) -> bool {
        fs::symlink_metadata(self.object_path(d)).is_ok_and(|m| m.is_file())
    }

    /// Re-hash an object, streamed; returns its size.
    pub fn verify_object(&self, d: &Digest) -> Result<u64> {
        self.open_object(d)?.finish()
    }
}

#[derive(Debug)]
enum State {
    Reading,
    Verified,
    Mismatch(Digest),
}

/// A reader over one object that hashes what it reads. At end of file it returns an
/// `io::ErrorKind::InvalidData` error carrying [`StoreError::ObjectMismatch`] if the content does
/// not hash to the object's name ([`StoreError::from_io_at`] gets the `StoreError` back).
///
/// The check happens at end of file only: a consumer that may stop early (a tar reader stops at
/// the end-of-archive block) must call [`VerifiedReader::finish`] before trusting what it read.
#[derive(Debug)]
pub struct VerifiedReader {
    file: File,
    path: PathBuf,
    expected: Digest,
    hasher: blake3::Hasher,
    bytes_read: u64,
    state: State,
}

impl VerifiedReader {
    /// The digest the content must hash to.
    pub fn digest(&self) -> &Digest {
        &self.expected
    }

    /// The object's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many bytes have been read so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    /// Read whatever is left and verify the whole object; returns its size.
    pub fn finish(mut self) -> Result<u64> {
        let mut buf = vec![0u8; BUF_SIZE];
        loop {
            match self.read(&mut buf) {
                Ok(0) => return Ok(self.bytes_read),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(StoreError::from_io_at(e, &self.path, "read the object")),
            }
        }
    }

    fn mismatch(&self, actual: &Digest) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            StoreError::ObjectMismatch {
                digest: self.expected.clone(),
                actual: actual.clone(),
                path: self.path.clone(),
            },
        )
    }
}

impl Read for VerifiedReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &self.state {
            State::Verified => return Ok(0),
            State::Mismatch(actual) => return Err(self.mismatch(actual)),
            State::Reading => {}
        }
        if buf.is_empty() {
            return Ok(0);
        }
        let n = self.file.read(buf)?;
        if n > 0 {
            self.hasher.update(&buf[..n]);
            self.bytes_read += n as u64;
            return Ok(n);
        }
        let actual = Digest::from_hash(self.hasher.finalize());
        if actual == self.expected {
            self.state = State::Verified;
            Ok(0)
        } else {
            let err = self.mismatch(&actual);
            self.state = State::Mismatch(actual);
            Err(err)
        }
    }
}

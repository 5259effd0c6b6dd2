//! One streaming pass from an archive source to a verified cache entry:
//!
//! ```text
//! HTTP body / file ─▶ progress ─▶ sha256 + blake3 + byte count ─▶ xz|gz|zstd|plain ─▶ safe tar unpack
//!                                                                                   (+ tree digest)
//! ```
//! The archive bytes are hashed as they flow into the decompressor, and the tree is digested
//! as it is written: nothing is read twice. The size and sha256 are compared at the end; on any
//! mismatch or error the temp directory is dropped and nothing reaches the cache.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::PathBuf;
use std::sync::mpsc;

use sha2::{Digest as _, Sha256};

use super::cache::{ImageCache, ImageRecord};
use super::http::{HttpClient, ProgressReader};
use super::unpack::{unpack, UnpackOptions};
use super::ImageError;
use crate::events::{Event, EventSink};
use crate::types::Digest;

/// Where the archive bytes come from.
#[derive(Debug, Clone)]
pub enum Source {
    Url(String),
    File(PathBuf),
}

impl Source {
    pub fn describe(&self) -> String {
        match self {
            Source::Url(url) => url.clone(),
            Source::File(path) => path.display().to_string(),
        }
    }
}

/// One archive to fetch, with what is known about it in advance.
#[derive(Debug, Clone)]
pub struct Fetch {
    pub reference: String,
    pub source: Source,
    pub expected_sha256: Option<String>,
    pub expected_size: Option<u64>,
    pub server: Option<String>,
    pub build: String,
    pub item_path: Option<String>,
}

/// Counts and hashes every byte read through it.
struct HashingReader<R> {
    inner: R,
    sha: Sha256,
    b3: blake3::Hasher,
    count: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sha.update(&buf[..n]);
        self.b3.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compression {
    Xz,
    Gzip,
    Zstd,
    None,
}

/// Recognise the compression by its magic bytes, not by the file name (URLs may not say).
fn detect(head: &[u8]) -> Compression {
    if head.starts_with(&[0xFD, b'7', b'z', b'X', b'Z', 0x00]) {
        Compression::Xz
    } else if head.starts_with(&[0x1F, 0x8B]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xB5, 0x2F, 0xFD]) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

fn open_source(
    client: &HttpClient,
    source: &Source,
) -> Result<(Box<dyn Read + Send>, Option<u64>), ImageError> {
    match source {
        Source::Url(url) => Ok(client.get_stream(url)?),
        Source::File(path) => {
            let file = File::open(path).map_err(|source| ImageError::Io {
                op: "open the image archive",
                path: path.clone(),
                source,
            })?;
            let len = file.metadata().map_err(|source| ImageError::Io {
                op: "stat the image archive",
                path: path.clone(),
                source,
            })?;
            Ok((Box::new(file), Some(len.len())))
        }
    }
}

/// Fetch, verify and unpack `fetch` into the cache; returns its record.
pub fn fetch_into(
    cache: &ImageCache,
    client: &HttpClient,
    fetch: &Fetch,
    events: &dyn EventSink,
) -> Result<ImageRecord, ImageError> {
    let temp = cache.temp_dir()?;
    let rootfs = temp.path().join("rootfs");
    std::fs::create_dir(&rootfs).map_err(|source| ImageError::Io {
        op: "create",
        path: rootfs.clone(),
        source,
    })?;
    let what = fetch.source.describe();
    events.emit(Event::info(format!("fetching {what}")));
    let (body, length) = open_source(client, &fetch.source)?;
    let total = fetch.expected_size.or(length);
    let task = format!("downloading {}", fetch.reference);
    // Two threads, like `curl | xz -d | tar -x` uses two cores: this one unpacks while the
    // producer downloads, hashes and decompresses the next chunks. The bounded channel keeps
    // memory flat (at most CHUNKS × CHUNK bytes in flight) whatever the image size.
    let (tx, rx) = mpsc::sync_channel::<io::Result<Vec<u8>>>(CHUNKS);
    let (report, produced) = std::thread::scope(|scope| {
        let producer = scope.spawn(|| produce(body, task, total, events, tx));
        let mut reader = ChannelReader {
            rx,
            chunk: Vec::new(),
            pos: 0,
        };
        let unpacked = unpack(&mut reader, &rootfs, &UnpackOptions::for_current_user());
        // The tar stream ends with padding the unpacker need not read: drain it so that the
        // producer reaches the end of the archive (and its decompressor checks its trailer).
        let drained = match &unpacked {
            Ok(_) => io::copy(&mut reader, &mut io::sink()).map(|_| ()),
            Err(_) => Ok(()),
        };
        // Dropping the reader closes the channel: a producer still sending stops.
        drop(reader);
        let produced = producer
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the download thread panicked")));
        (
            unpacked.and_then(|r| {
                drained
                    .map(|()| r)
                    .map_err(|e| stream_unpack_error(&what, e))
            }),
            produced,
        )
    });
    // A producer error explains a consumer error (a truncated download shows up as a broken
    // tar stream), so it is reported first.
    let hashes = produced.map_err(|source| ImageError::Stream {
        source_desc: what.clone(),
        source,
    })?;
    let report = report?;
    crate::crashpoint::hit("image: archive streamed");
    let sha256 = hashes.sha256;
    let size = hashes.count;
    if let Some(expected) = total.filter(|t| *t != size) {
        return Err(ImageError::SizeMismatch {
            source_desc: what,
            expected,
            actual: size,
        });
    }
    if let Some(expected) = fetch.expected_sha256.as_ref().filter(|e| **e != sha256) {
        return Err(ImageError::HashMismatch {
            source_desc: what,
            expected: expected.clone(),
            actual: sha256,
        });
    }
    let record = ImageRecord {
        sha256,
        size,
        blake3: hashes.blake3,
        tree_digest: report.tree_digest,
        reference: fetch.reference.clone(),
        source: what,
        server: fetch.server.clone(),
        build: fetch.build.clone(),
        item_path: fetch.item_path.clone(),
        fetched_at: crate::store::now_secs(),
        skipped: report.skipped.iter().map(|s| s.to_string()).collect(),
    };
    // Device nodes are skipped by design (one summary line); anything else is worth a warning.
    let devices = report
        .skipped
        .iter()
        .filter(|s| s.why == crate::image::unpack::SkipReason::DeviceNode)
        .count();
    if devices > 0 {
        events.emit(Event::info(format!(
            "image {}: {devices} device node(s) not unpacked (the sandbox makes its own /dev)",
            record.reference
        )));
    }
    for skipped in report
        .skipped
        .iter()
        .filter(|s| s.why != crate::image::unpack::SkipReason::DeviceNode)
    {
        events.emit(Event::warn(format!(
            "image {}: skipped {skipped}",
            record.reference
        )));
    }
    cache.install(temp, &record, &report.index)?;
    events.emit(Event::info(format!(
        "image {} verified: sha256 {} ({} bytes)",
        record.reference, record.sha256, record.size
    )));
    Ok(record)
}

const CHUNK: usize = 1 << 18;
const CHUNKS: usize = 4;

/// What the producer saw of the archive.
struct ArchiveHashes {
    sha256: String,
    blake3: Digest,
    count: u64,
}

/// Producer thread: read the archive, hash it, decompress it and send the plain tar stream in
/// chunks. Errors are sent into the channel too, so the consumer fails at the same point.
fn produce(
    body: Box<dyn Read + Send>,
    task: String,
    total: Option<u64>,
    events: &dyn EventSink,
    tx: mpsc::SyncSender<io::Result<Vec<u8>>>,
) -> io::Result<ArchiveHashes> {
    let mut hashing = HashingReader {
        inner: ProgressReader::new(body, task, total, events),
        sha: Sha256::new(),
        b3: blake3::Hasher::new(),
        count: 0,
    };
    let result = (|| -> io::Result<()> {
        let mut buffered = BufReader::with_capacity(CHUNK, &mut hashing);
        let kind = detect(buffered.fill_buf()?);
        let mut decoder: Box<dyn Read + '_> = match kind {
            Compression::Xz => Box::new(xz2::read::XzDecoder::new_multi_decoder(buffered)),
            Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
            Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(buffered)?),
            Compression::None => Box::new(buffered),
        };
        loop {
            let mut chunk = vec![0u8; CHUNK];
            let n = read_up_to(&mut decoder, &mut chunk)?;
            if n == 0 {
                return Ok(());
            }
            chunk.truncate(n);
            if tx.send(Ok(chunk)).is_err() {
                // The consumer stopped (it failed, and reports why): nothing left to do.
                return Ok(());
            }
        }
    })();
    if let Err(e) = result {
        let copy = io::Error::new(e.kind(), e.to_string());
        // Tell the consumer why the stream ends; if it has stopped already there is no one to
        // tell, and the error is returned to the caller either way.
        if tx.send(Err(copy)).is_err() {
            events.emit(Event::debug(
                "image: consumer stopped before the producer's error",
            ));
        }
        return Err(e);
    }
    // Bytes after the end of the compressed stream still belong to the archive's hash.
    io::copy(&mut hashing, &mut io::sink())?;
    Ok(ArchiveHashes {
        sha256: hex(&hashing.sha.finalize_reset()),
        blake3: Digest::from_hash(hashing.b3.finalize()),
        count: hashing.count,
    })
}

/// Fill `buf` as far as the reader allows; 0 only at the end.
pub(super) fn read_up_to(reader: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// The consumer's side of the channel, as a `Read`.
struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.chunk.len() {
            match self.rx.recv() {
                Ok(Ok(chunk)) => {
                    self.chunk = chunk;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(mpsc::RecvError) => return Ok(0), // producer finished
            }
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

fn stream_unpack_error(what: &str, source: io::Error) -> super::unpack::UnpackError {
    super::unpack::UnpackError::Archive {
        entry: Some(format!("(end of archive from {what})")),
        source,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_is_detected_by_magic() {
        assert_eq!(
            detect(&[0xFD, b'7', b'z', b'X', b'Z', 0, 1]),
            Compression::Xz
        );
        assert_eq!(detect(&[0x1F, 0x8B, 8]), Compression::Gzip);
        assert_eq!(detect(&[0x28, 0xB5, 0x2F, 0xFD]), Compression::Zstd);
        assert_eq!(detect(b"./etc/\0\0"), Compression::None);
    }
}

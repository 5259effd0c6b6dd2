//! A tar stream with its extended-attribute PAX records made readable by the tar crate.
//!
//! The tar crate finds the records of a PAX extended header by splitting its data at newlines
//! (composefs/tar-rs#428), so a `SCHILY.xattr.NAME=VALUE` record whose binary value holds a
//! newline byte (a file capability with bits 1 and 3 of one byte set, an IMA signature) makes
//! the whole import fail with "malformed pax extension", and a `size` record after it is lost.
//! [`PaxRecordFix`] sits between the decompressor and the tar crate. It walks the stream's
//! 512-byte blocks as the tar crate will (tar(5): a header, then the member's data rounded up
//! to a block; a PAX `size` record giving the next file member's size; an old GNU sparse
//! header's extension blocks), reads each PAX local header's records by their length prefix
//! (pax(1), "pax Extended Header": `LEN KEY=VALUE\n`, LEN counting itself), and rewrites each
//! xattr record whose value or name holds a newline as libarchive's
//! `LIBARCHIVE.xattr.<percent-encoded name>=<base64 value>` (`crate::layer::xattr_record`),
//! which the unpacker reads too; the header's size and checksum are updated. A stream without
//! such a record passes through byte for byte (tested); anything it cannot read (a bad size
//! field, a truncated member) passes through untouched, for the tar crate to report.

use std::io::{self, Read};

use tar::Header;

use super::pipeline::read_up_to;

const BLOCK: usize = 512;
/// PAX headers larger than this pass through as they are (the tar crate reads them whole too;
/// this only bounds what is rewritten).
const REWRITE_MAX: u64 = 16 << 20;

/// See the module documentation.
pub struct PaxRecordFix<R> {
    inner: R,
    /// Bytes ready to hand out: a header block, or a rewritten PAX member.
    out: Vec<u8>,
    out_pos: usize,
    /// Bytes of member data (padding included) still to pass through as they are.
    data_left: u64,
    /// After an old GNU sparse header: its extension blocks come next.
    sparse_extension: bool,
    /// The `size` record of the last PAX local header: the next file member's data size.
    next_size: Option<u64>,
    /// The end-of-archive block was seen: the rest passes through.
    ended: bool,
}

impl<R: Read> PaxRecordFix<R> {
    pub fn new(inner: R) -> PaxRecordFix<R> {
        PaxRecordFix {
            inner,
            out: Vec::new(),
            out_pos: 0,
            data_left: 0,
            sparse_extension: false,
            next_size: None,
            ended: false,
        }
    }

    /// Fills `out` with the next block (a header or a sparse extension), and what follows it
    /// when it is rewritten; `false` at the end of the stream.
    fn next_block(&mut self) -> io::Result<bool> {
        let mut block = [0u8; BLOCK];
        let got = read_up_to(&mut self.inner, &mut block)?;
        self.out.clear();
        self.out_pos = 0;
        if got < BLOCK {
            // A short last block: the tar crate reports what it makes of it.
            self.out.extend_from_slice(&block[..got]);
            self.ended = true;
            return Ok(got > 0);
        }
        if self.sparse_extension {
            // GnuExtSparseHeader: 21 sparse entries, then `isextended` at byte 504.
            self.sparse_extension = block[504] != 0;
            self.out.extend_from_slice(&block);
            return Ok(true);
        }
        if block.iter().all(|b| *b == 0) {
            self.out.extend_from_slice(&block);
            self.ended = true;
            return Ok(true);
        }
        self.header(block)?;
        Ok(true)
    }

    /// A member's header: passes it on and arranges for its data.
    fn header(&mut self, block: [u8; BLOCK]) -> io::Result<()> {
        let header = Header::from_byte_slice(&block);
        let kind = header.entry_type();
        let recognized = header.as_gnu().is_some() || header.as_ustar().is_some();
        let Ok(size) = header.entry_size() else {
            self.out.extend_from_slice(&block);
            self.ended = true;
            return Ok(());
        };
        if recognized && kind.is_pax_local_extensions() && size <= REWRITE_MAX {
            return self.pax_member(block, size);
        }
        let extension = kind.is_gnu_longname()
            || kind.is_gnu_longlink()
            || kind.is_pax_local_extensions()
            || kind.is_pax_global_extensions();
        // A PAX `size` applies to the next member that is not itself an extension header.
        let data = if extension {
            size
        } else {
            self.next_size.take().unwrap_or(size)
        };
        if kind.is_gnu_sparse() {
            self.sparse_extension = header.as_gnu().is_some_and(|gnu| gnu.is_extended());
        }
        self.out.extend_from_slice(&block);
        self.data_left = padded(data);
        Ok(())
    }

    /// A PAX local header of `size` bytes: read whole, its xattr records rewritten if needed.
    fn pax_member(&mut self, block: [u8; BLOCK], size: u64) -> io::Result<()> {
        let mut data = vec![0u8; padded(size) as usize];
        let got = read_up_to(&mut self.inner, &mut data)?;
        if got < data.len() {
            self.out.extend_from_slice(&block);
            self.out.extend_from_slice(&data[..got]);
            self.ended = true;
            return Ok(());
        }
        let records = &data[..size as usize];
        let Some(parsed) = parse_records(records) else {
            // Not readable by length either: as it is, for the tar crate to judge.
            self.out.extend_from_slice(&block);
            self.out.extend_from_slice(&data);
            return Ok(());
        };
        self.next_size = parsed
            .iter()
            .find(|(k, _)| *k == b"size")
            .and_then(|(_, v)| std::str::from_utf8(v).ok()?.parse().ok());
        // An xattr record the tar crate cannot read: a newline in it.
        let unreadable = |key: &[u8], value: &[u8]| {
            (key.contains(&b'\n') || value.contains(&b'\n'))
                && matches!(crate::layer::xattr_of_record(key, value), Some(Ok(_)))
        };
        if !parsed.iter().any(|(k, v)| unreadable(k, v)) {
            self.out.extend_from_slice(&block);
            self.out.extend_from_slice(&data);
            return Ok(());
        }
        let mut rewritten = Vec::with_capacity(records.len() * 2);
        for (key, value) in &parsed {
            match crate::layer::xattr_of_record(key, value) {
                Some(Ok((name, xattr))) if unreadable(key, value) => {
                    let (key, value) = crate::layer::xattr_record(&name, &xattr);
                    push_record(&mut rewritten, key.as_bytes(), value.as_bytes());
                }
                _ => push_record(&mut rewritten, key, value),
            }
        }
        let mut header = Header::new_old();
        header.as_mut_bytes().copy_from_slice(&block);
        header.set_size(rewritten.len() as u64);
        header.set_cksum();
        self.out.extend_from_slice(header.as_bytes());
        let padding = padded(rewritten.len() as u64) as usize - rewritten.len();
        self.out.extend_from_slice(&rewritten);
        self.out.resize(self.out.len() + padding, 0);
        Ok(())
    }
}

impl<R: Read> Read for PaxRecordFix<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.out_pos < self.out.len() {
                let n = buf.len().min(self.out.len() - self.out_pos);
                buf[..n].copy_from_slice(&self.out[self.out_pos..self.out_pos + n]);
                self.out_pos += n;
                return Ok(n);
            }
            if self.ended || self.data_left > 0 {
                let want = if self.ended {
                    buf.len()
                } else {
                    buf.len()
                        .min(usize::try_from(self.data_left).unwrap_or(usize::MAX))
                };
                let n = self.inner.read(&mut buf[..want])?;
                if !self.ended {
                    self.data_left -= n as u64;
                    if n == 0 {
                        // Truncated member: the tar crate says so.
                        self.ended = true;
                    }
                }
                return Ok(n);
            }
            if !self.next_block()? {
                return Ok(0);
            }
        }
    }
}

/// `size` rounded up to whole blocks.
fn padded(size: u64) -> u64 {
    size.div_ceil(BLOCK as u64) * BLOCK as u64
}

/// The records of a PAX header's data, each read by its length prefix; `None` if any is
/// malformed. A header may end in NUL padding some writers leave.
fn parse_records(mut data: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    let mut records = Vec::new();
    while !data.is_empty() && data[0] != 0 {
        let space = data.iter().position(|b| *b == b' ')?;
        let len: usize = std::str::from_utf8(&data[..space]).ok()?.parse().ok()?;
        if len <= space + 1 || len > data.len() || data[len - 1] != b'\n' {
            return None;
        }
        let body = &data[space + 1..len - 1];
        let equals = body.iter().position(|b| *b == b'=')?;
        records.push((&body[..equals], &body[equals + 1..]));
        data = &data[len..];
    }
    Some(records)
}

/// Appends `LEN KEY=VALUE\n`, LEN counting its own digits (pax(1)).
fn push_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let rest = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = rest + rest.to_string().len();
    if len.to_string().len() + rest != len {
        len = rest + len.to_string().len();
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

#[cfg(test)]
#[path = "pax_fix_tests.rs"]
mod tests;

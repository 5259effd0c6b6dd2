//! The pure half of unpacking one tar member: reading its metadata (PAX records included) and
//! checking its name, before anything touches the disk.

use std::ffi::{OsStr, OsString};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use tar::EntryType;

use super::{Result, UnpackError, NAME_MAX, PATH_MAX};

/// Longest entry name shown in messages, in characters.
const SHOWN_MAX: usize = 160;

/// What [`super::Unpacker`] needs of a tar member, read before its content.
pub(super) struct Member {
    /// The name for messages (lossy UTF-8, shortened).
    pub name: String,
    /// The name as stored (after GNU long-name and PAX `path` records).
    pub raw_path: Vec<u8>,
    /// Symlink or hard link target (after GNU long-link and PAX `linkpath` records).
    pub link: Option<Vec<u8>>,
    /// Permission bits, set-id and sticky included.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: u64,
    /// Content size (for GNU sparse members, the expanded size).
    pub size: u64,
    /// `SCHILY.xattr.<name>` and `LIBARCHIVE.xattr.<name>` records (the latter also made
    /// from the former by `pax_fix` when the tar crate could not read them).
    pub xattrs: Vec<(OsString, Vec<u8>)>,
}

impl Member {
    pub fn read<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<Member> {
        let raw_path = entry.path_bytes().into_owned();
        let name = display_name(&raw_path);
        let bad = |source: io::Error| UnpackError::Archive {
            entry: Some(name.clone()),
            source,
        };
        let header = entry.header();
        let mode = header.mode().map_err(bad)? & 0o7777;
        let uid = id32(header.uid().map_err(bad)?).map_err(bad)?;
        let gid = id32(header.gid().map_err(bad)?).map_err(bad)?;
        let mut mtime = header.mtime().map_err(bad)?;
        let link = entry.link_name_bytes().map(|l| l.into_owned());
        let size = entry.size();
        let mut xattrs = Vec::new();
        if let Some(exts) = entry.pax_extensions().map_err(bad)? {
            for ext in exts {
                let ext = ext.map_err(bad)?;
                let key = ext.key_bytes();
                if let Some(xattr) = crate::layer::xattr_of_record(key, ext.value_bytes()) {
                    let (xname, value) = xattr.map_err(|what| {
                        bad(invalid(&format!(
                            "malformed extended attribute record ({what})"
                        )))
                    })?;
                    xattrs.push((OsStr::from_bytes(&xname).to_owned(), value));
                } else if key.starts_with(b"GNU.sparse.") {
                    // PAX sparse formats keep a block map in the name or data; writing the
                    // member as a plain file would silently corrupt it.
                    return Err(UnpackError::Unsupported {
                        entry: name,
                        what: "sparse file in GNU PAX format".to_string(),
                    });
                } else if key == b"mtime" {
                    // "1700000000.5": keep whole seconds; ignore what does not parse (negative).
                    let secs = ext.value_bytes().split(|b| *b == b'.').next();
                    let parsed = secs.and_then(|s| std::str::from_utf8(s).ok()?.parse().ok());
                    mtime = parsed.unwrap_or(mtime);
                }
            }
        }
        Ok(Member {
            name,
            raw_path,
            link,
            mode,
            uid,
            gid,
            mtime,
            size,
            xattrs,
        })
    }
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

fn id32(id: u64) -> io::Result<u32> {
    u32::try_from(id).map_err(|_| invalid("owner id does not fit in 32 bits"))
}

/// Split an entry name into its components, refusing anything that could leave the
/// destination: absolute names, `..` components, NUL bytes, empty names. `.` components and
/// repeated or trailing slashes are dropped; an empty result names the destination itself.
pub(super) fn safe_components(raw: &[u8]) -> std::result::Result<Vec<&[u8]>, &'static str> {
    if raw.is_empty() {
        return Err("empty name");
    }
    if raw.contains(&0) {
        return Err("NUL byte in the name");
    }
    if raw.starts_with(b"/") {
        return Err("absolute path");
    }
    let mut comps = Vec::new();
    for comp in raw.split(|b| *b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => return Err("`..` component"),
            _ => comps.push(comp),
        }
    }
    Ok(comps)
}

/// Refuse names Linux cannot take, before any syscall sees them: a component over `NAME_MAX`
/// bytes or a full path (`dest` + `/` + name + NUL) over `PATH_MAX`.
pub(super) fn check_length(dest: &Path, name: &str, raw_len: usize, comps: &[&[u8]]) -> Result<()> {
    let joined: usize = comps.iter().map(|c| c.len() + 1).sum();
    let full = dest.as_os_str().len() + 1 + joined;
    if comps.iter().any(|c| c.len() > NAME_MAX) || full > PATH_MAX {
        return Err(UnpackError::NameTooLong {
            entry: name.to_string(),
            len: raw_len,
        });
    }
    Ok(())
}

/// A name fit for a message: lossy UTF-8, cut to [`SHOWN_MAX`] characters.
pub(super) fn display_name(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    if text.chars().count() <= SHOWN_MAX {
        return text.into_owned();
    }
    let head: String = text.chars().take(SHOWN_MAX).collect();
    format!("{head}… ({} bytes)", raw.len())
}

/// The member types [`super::unpack`] creates; anything else is refused.
pub(super) fn is_supported(kind: EntryType) -> bool {
    matches!(
        kind,
        EntryType::Regular
            | EntryType::Continuous
            | EntryType::GNUSparse
            | EntryType::Directory
            | EntryType::Symlink
            | EntryType::Link
            | EntryType::Char
            | EntryType::Block
            | EntryType::Fifo
    )
}

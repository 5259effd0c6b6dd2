use std::io::{self, Read};

use tar::{Builder, EntryType, Header};

use super::{parse_records, push_record, PaxRecordFix};

/// A regular file member with `content`, owned by 0, mtime 0.
fn file(builder: &mut Builder<Vec<u8>>, path: &str, content: &[u8]) {
    let mut header = Header::new_gnu();
    header.set_entry_type(EntryType::Regular);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_size(content.len() as u64);
    builder
        .append_data(&mut header, path, content)
        .expect("append");
}

fn through_fix(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    // Small reads, to cross every boundary the adapter keeps.
    let mut fix = PaxRecordFix::new(bytes);
    let mut buf = [0u8; 97];
    loop {
        let n = fix.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    out
}

/// A member's path, content and xattr records (decoded).
type Member = (String, Vec<u8>, Vec<crate::layer::Xattr>);

/// Each member as the tar crate reads it.
fn members(bytes: &[u8]) -> io::Result<Vec<Member>> {
    let mut archive = tar::Archive::new(bytes);
    let mut found = Vec::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.display().to_string();
        let mut xattrs = Vec::new();
        if let Some(extensions) = entry.pax_extensions()? {
            for extension in extensions {
                let extension = extension?;
                if let Some(x) =
                    crate::layer::xattr_of_record(extension.key_bytes(), extension.value_bytes())
                {
                    xattrs.push(x.expect("well-formed"));
                }
            }
        }
        let mut content = Vec::new();
        entry.read_to_end(&mut content)?;
        found.push((path, content, xattrs));
    }
    Ok(found)
}

#[test]
fn a_stream_without_newlines_in_xattr_records_passes_byte_for_byte() {
    let mut builder = Builder::new(Vec::new());
    builder
        .append_pax_extensions([
            (
                "SCHILY.xattr.security.capability",
                &b"\x01\x00\x00\x02\x00\x20"[..],
            ),
            ("SCHILY.xattr.user.note", b"plain"),
        ])
        .expect("pax");
    file(&mut builder, "etc/ping", b"ping");
    // A long name (a GNU `L` member before the header) and a member of several blocks.
    let long = format!("usr/share/{}/file", "d".repeat(150));
    file(&mut builder, &long, &vec![7u8; 1500]);
    file(&mut builder, "empty", b"");
    let bytes = builder.into_inner().expect("finish");
    assert_eq!(through_fix(&bytes), bytes);
}

#[test]
fn an_xattr_value_with_newlines_is_rewritten_and_reads_back() {
    // A file capability whose bytes hold 0x0a, as composefs/tar-rs#428 reports.
    let cap: &[u8] =
        b"\x01\x00\x00\x02\x02\x00\x0a\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00";
    let mut builder = Builder::new(Vec::new());
    builder
        .append_pax_extensions([
            ("SCHILY.xattr.security.capability", cap),
            ("SCHILY.xattr.user.two\nlines", &b"a\nb=c"[..]),
            ("comment", b"kept"),
        ])
        .expect("pax");
    file(&mut builder, "usr/bin/telegraf", b"binary");
    file(&mut builder, "next", &vec![1u8; 700]);
    let bytes = builder.into_inner().expect("finish");

    let err = members(&bytes).expect_err("the tar crate alone cannot read it");
    assert!(err.to_string().contains("malformed pax extension"), "{err}");

    let fixed = members(&through_fix(&bytes)).expect("read through the fix");
    let names: Vec<&str> = fixed.iter().map(|(p, ..)| p.as_str()).collect();
    assert_eq!(names, ["usr/bin/telegraf", "next"]);
    assert_eq!(fixed[0].1, b"binary");
    assert_eq!(fixed[1].1, vec![1u8; 700]);
    assert_eq!(
        fixed[0].2,
        [
            (b"security.capability".to_vec(), cap.to_vec()),
            (b"user.two\nlines".to_vec(), b"a\nb=c".to_vec()),
        ]
    );
    assert!(fixed[1].2.is_empty(), "records belong to one member");
}

#[test]
fn a_pax_size_after_an_unreadable_record_still_sizes_the_next_member() {
    // The header's own size field says 0; the PAX `size` record the real one. Without the
    // fix the tar crate gives up on the records before `size` and loses its place.
    let mut records = Vec::new();
    push_record(&mut records, b"SCHILY.xattr.user.x", b"\n");
    push_record(&mut records, b"size", b"600");
    let mut builder = Builder::new(Vec::new());
    let mut pax = Header::new_ustar();
    pax.set_entry_type(EntryType::XHeader);
    pax.set_size(records.len() as u64);
    pax.set_mode(0o644);
    pax.set_cksum();
    builder
        .append_data(&mut pax, "PaxHeaders/big", records.as_slice())
        .expect("pax member");
    let mut header = Header::new_ustar();
    header.set_entry_type(EntryType::Regular);
    header.set_mode(0o644);
    header.set_size(0);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header.set_path("big").expect("path");
    header.set_cksum();
    let mut bytes = builder.into_inner().expect("finish");
    bytes.truncate(bytes.len() - 1024); // the end-of-archive blocks come after our member
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(&[9u8; 600]);
    bytes.resize(bytes.len() + (1024 - 600), 0); // padding to 1024
    let mut tail = Builder::new(Vec::new());
    file(&mut tail, "after", b"after");
    bytes.extend_from_slice(&tail.into_inner().expect("finish"));

    let fixed = members(&through_fix(&bytes)).expect("read through the fix");
    let names: Vec<(&str, usize)> = fixed
        .iter()
        .map(|(p, c, _)| (p.as_str(), c.len()))
        .collect();
    assert_eq!(names, [("big", 600), ("after", 5)]);
}

#[test]
fn records_are_read_by_their_length() {
    let mut data = Vec::new();
    push_record(&mut data, b"path", b"a\nb");
    push_record(&mut data, b"k", &[b'v'; 95]); // the length crosses to three digits
    assert!(data.starts_with(b"12 path=a\nb\n"), "{data:?}");
    let records = parse_records(&data).expect("parse");
    assert_eq!(records[0], (&b"path"[..], &b"a\nb"[..]));
    assert_eq!(records[1].1.len(), 95);
    assert!(
        data[12..].starts_with(b"102 k="),
        "the length counts its own three digits"
    );
    assert_eq!(data.len(), 12 + 102);
    assert!(parse_records(b"5 a=b\n").is_none(), "a wrong length");
    assert!(parse_records(b"6 ab\n").is_none(), "no `=`");
    assert_eq!(parse_records(b"6 a=b\n\0\0\0").map(|r| r.len()), Some(1));
}

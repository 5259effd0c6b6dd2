//! A tar writer for tests that writes header bytes by hand, so it can make what `tar::Builder`
//! refuses (`..` names, absolute names, NUL bytes) and exactly the members a test needs.

/// One member's header fields; [`Hdr::new`] gives a plain `0644` regular file.
#[derive(Clone)]
pub struct Hdr {
    pub name: Vec<u8>,
    pub kind: u8,
    pub link: Vec<u8>,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: u64,
    pub dev: (u32, u32),
    /// Size written in the header, when it must differ from the data's length.
    pub size: Option<u64>,
}

impl Hdr {
    pub fn new(name: impl AsRef<[u8]>, kind: u8) -> Hdr {
        Hdr {
            name: name.as_ref().to_vec(),
            kind,
            link: Vec::new(),
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 1_600_000_000,
            dev: (0, 0),
            size: None,
        }
    }

    pub fn mode(mut self, mode: u32) -> Hdr {
        self.mode = mode;
        self
    }

    pub fn link(mut self, link: impl AsRef<[u8]>) -> Hdr {
        self.link = link.as_ref().to_vec();
        self
    }

    pub fn owner(mut self, uid: u32, gid: u32) -> Hdr {
        self.uid = uid;
        self.gid = gid;
        self
    }

    /// The 512-byte ustar header block, checksum included.
    pub fn block(&self, data_len: u64) -> [u8; 512] {
        let mut b = [0u8; 512];
        assert!(
            self.name.len() <= 100,
            "use a long-name record for long names"
        );
        assert!(
            self.link.len() <= 100,
            "use a long-link record for long targets"
        );
        b[..self.name.len()].copy_from_slice(&self.name);
        octal(&mut b[100..108], self.mode.into());
        octal(&mut b[108..116], self.uid.into());
        octal(&mut b[116..124], self.gid.into());
        octal(&mut b[124..136], self.size.unwrap_or(data_len));
        octal(&mut b[136..148], self.mtime);
        b[156] = self.kind;
        b[157..157 + self.link.len()].copy_from_slice(&self.link);
        b[257..263].copy_from_slice(b"ustar\0");
        b[263..265].copy_from_slice(b"00");
        b[265..269].copy_from_slice(b"root");
        b[297..301].copy_from_slice(b"root");
        octal(&mut b[329..337], self.dev.0.into());
        octal(&mut b[337..345], self.dev.1.into());
        // The checksum is computed with its own field read as eight spaces.
        b[148..156].copy_from_slice(b"        ");
        let sum: u32 = b.iter().map(|&x| u32::from(x)).sum();
        let text = format!("{sum:06o}\0 ");
        b[148..156].copy_from_slice(text.as_bytes());
        b
    }
}

/// Zero-padded octal digits followed by a NUL, filling `field`.
fn octal(field: &mut [u8], value: u64) {
    let width = field.len() - 1;
    let text = format!("{value:0width$o}");
    assert!(
        text.len() <= width,
        "{value} does not fit in {width} octal digits"
    );
    field[..width].copy_from_slice(text.as_bytes());
    field[width] = 0;
}

#[derive(Default)]
pub struct RawTar {
    buf: Vec<u8>,
}

impl RawTar {
    pub fn new() -> RawTar {
        RawTar::default()
    }

    /// A member with its data, padded to the next 512-byte block.
    pub fn member(&mut self, h: Hdr, data: &[u8]) -> &mut RawTar {
        self.buf.extend_from_slice(&h.block(data.len() as u64));
        self.buf.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.buf.extend(std::iter::repeat_n(0u8, pad));
        self
    }

    pub fn file(&mut self, name: &str, mode: u32, data: &[u8]) -> &mut RawTar {
        self.member(Hdr::new(name, b'0').mode(mode), data)
    }

    pub fn dir(&mut self, name: &str, mode: u32) -> &mut RawTar {
        self.member(Hdr::new(name, b'5').mode(mode), b"")
    }

    pub fn symlink(&mut self, name: &str, target: &str) -> &mut RawTar {
        self.member(Hdr::new(name, b'2').mode(0o777).link(target), b"")
    }

    pub fn hardlink(&mut self, name: &str, target: &str) -> &mut RawTar {
        self.member(Hdr::new(name, b'1').link(target), b"")
    }

    pub fn device(&mut self, name: &str, kind: u8, major: u32, minor: u32) -> &mut RawTar {
        let mut h = Hdr::new(name, kind).mode(0o666);
        h.dev = (major, minor);
        self.member(h, b"")
    }

    /// A PAX extended header (`x`) that applies to the next member.
    pub fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut RawTar {
        let mut data = Vec::new();
        for (key, value) in records {
            // "<len> <key>=<value>\n", where <len> counts the whole record, itself included.
            let body = key.len() + value.len() + 3;
            let mut len = body + body.to_string().len();
            if len.to_string().len() != body.to_string().len() {
                len += 1;
            }
            data.extend_from_slice(format!("{len} {key}=").as_bytes());
            data.extend_from_slice(value);
            data.push(b'\n');
        }
        self.member(Hdr::new("././@PaxHeader", b'x'), &data)
    }

    /// A GNU long-name record (`L`) that names the next member.
    pub fn gnu_long_name(&mut self, name: &[u8]) -> &mut RawTar {
        let mut data = name.to_vec();
        data.push(0);
        self.member(Hdr::new("././@LongLink", b'L'), &data)
    }

    /// The archive bytes with the two zero blocks that end it.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.buf);
        out.extend_from_slice(&[0u8; 1024]);
        out
    }

    /// The bytes so far, with no end-of-archive marker (for truncation tests).
    pub fn unfinished(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }
}

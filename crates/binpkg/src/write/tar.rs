//! A small, deterministic tar writer: USTAR headers, with a PAX extended
//! header only for what USTAR cannot hold (long names or link targets,
//! large numbers, long user/group names, xattrs as `SCHILY.xattr.*`).
//!
//! The output depends only on the entries given: no clock, no host user
//! database. Readers: GNU tar, Python's `tarfile` (Portage) and this
//! crate's own reader.

use std::io::{self, Read, Write};

use crate::image::EntryKind;

/// Tar block size.
pub(crate) const BLOCK: usize = 512;
/// Archives are padded to a multiple of this (GNU tar and Python's default).
pub(crate) const RECORD: u64 = 10240;

/// The largest value of an octal field of `width` bytes (one byte for NUL).
fn octal_max(width: usize) -> u64 {
    (1u64 << (3 * (width - 1))) - 1
}

fn put_octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let s = format!("{value:0digits$o}");
    field[..digits].copy_from_slice(s.as_bytes());
    field[digits] = 0;
}

/// Octal when it fits, else GNU base-256 (what GNU tar and Python's
/// `tarfile` write for sizes of 8 GiB and more, and every reader accepts).
fn put_numeric(field: &mut [u8], value: u64) {
    if value <= octal_max(field.len()) {
        put_octal(field, value);
    } else {
        field.fill(0);
        field[0] = 0x80;
        let be = value.to_be_bytes();
        let n = field.len();
        field[n - 8..].copy_from_slice(&be);
    }
}

fn put_bytes(field: &mut [u8], value: &[u8]) {
    field[..value.len()].copy_from_slice(value);
}

/// Split `name` into USTAR (prefix, name) if it fits.
fn split_ustar(name: &[u8]) -> Option<(&[u8], &[u8])> {
    if name.len() <= 100 {
        return Some((&[], name));
    }
    if name.len() > 256 {
        return None;
    }
    // The prefix ends at a '/', is at most 155 bytes; the rest is at most
    // 100 bytes and not empty.
    let last = name.len().min(156);
    (0..last)
        .rev()
        .filter(|&i| name[i] == b'/')
        .find(|&i| name.len() - i - 1 <= 100 && i > 0 && i + 1 < name.len())
        .map(|i| (&name[..i], &name[i + 1..]))
}

/// One PAX record: `"<len> <key>=<value>\n"`, where `len` counts the whole
/// record including its own digits.
fn pax_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// Everything a tar header says.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Header<'a> {
    pub name: &'a [u8],
    pub kind: EntryKind,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub uname: &'a [u8],
    pub gname: &'a [u8],
    pub mtime: i64,
    /// Sub-second part; when not zero, a PAX `mtime` record carries it.
    pub mtime_nsec: u32,
    pub size: u64,
    pub link: &'a [u8],
    pub device: (u32, u32),
    pub xattrs: &'a [(Vec<u8>, Vec<u8>)],
}

impl Header<'_> {
    /// A plain regular-file header (container and metadata members).
    pub(crate) fn file(name: &[u8], size: u64, mtime: i64) -> Header<'_> {
        Header {
            name,
            kind: EntryKind::File,
            mode: 0o644,
            uid: 0,
            gid: 0,
            uname: b"",
            gname: b"",
            mtime,
            mtime_nsec: 0,
            size,
            link: b"",
            device: (0, 0),
            xattrs: &[],
        }
    }
}

fn typeflag(kind: EntryKind) -> u8 {
    match kind {
        EntryKind::File => b'0',
        EntryKind::Hardlink => b'1',
        EntryKind::Symlink => b'2',
        EntryKind::CharDevice => b'3',
        EntryKind::BlockDevice => b'4',
        EntryKind::Dir => b'5',
        EntryKind::Fifo => b'6',
    }
}

fn ustar_block(
    name: &[u8],
    prefix: &[u8],
    flag: u8,
    h: &Header<'_>,
    fields: &UstarFields<'_>,
) -> [u8; BLOCK] {
    let mut b = [0u8; BLOCK];
    put_bytes(&mut b[0..100], name);
    put_octal(&mut b[100..108], u64::from(h.mode & 0o7777));
    put_octal(&mut b[108..116], fields.uid);
    put_octal(&mut b[116..124], fields.gid);
    put_numeric(&mut b[124..136], fields.size);
    put_octal(&mut b[136..148], fields.mtime);
    b[156] = flag;
    put_bytes(&mut b[157..257], fields.link);
    b[257..263].copy_from_slice(b"ustar\0");
    b[263..265].copy_from_slice(b"00");
    put_bytes(&mut b[265..297], fields.uname);
    put_bytes(&mut b[297..329], fields.gname);
    if matches!(h.kind, EntryKind::CharDevice | EntryKind::BlockDevice) {
        put_octal(&mut b[329..337], u64::from(h.device.0));
        put_octal(&mut b[337..345], u64::from(h.device.1));
    }
    put_bytes(&mut b[345..500], prefix);
    b[148..156].fill(b' ');
    let sum: u64 = b.iter().map(|&x| u64::from(x)).sum();
    let s = format!("{sum:06o}\0 ");
    b[148..156].copy_from_slice(s.as_bytes());
    b
}

/// The values that go into the USTAR fields (clamped where PAX holds the
/// real value).
struct UstarFields<'a> {
    uid: u64,
    gid: u64,
    size: u64,
    mtime: u64,
    link: &'a [u8],
    uname: &'a [u8],
    gname: &'a [u8],
}

/// The header block(s) for `h`: an optional PAX header with its records,
/// then the USTAR header.
pub(crate) fn encode_header(h: &Header<'_>, out: &mut Vec<u8>) {
    let mut pax = Vec::new();
    let (prefix, name) = match split_ustar(h.name) {
        Some(split) => split,
        None => {
            pax_record(&mut pax, b"path", h.name);
            // A truncated stand-in for readers without PAX support.
            (&b""[..], &h.name[h.name.len() - 100..])
        }
    };
    let link = if h.link.len() > 100 {
        pax_record(&mut pax, b"linkpath", h.link);
        &h.link[..100]
    } else {
        h.link
    };
    let mut num = |key: &[u8], v: u64, width: usize| -> u64 {
        if v > octal_max(width) {
            pax_record(&mut pax, key, v.to_string().as_bytes());
            0
        } else {
            v
        }
    };
    let uid = num(b"uid", h.uid, 8);
    let gid = num(b"gid", h.gid, 8);
    // Sizes of 8 GiB and more go into the header as base-256, not PAX.
    let size = h.size;
    let mtime = match u64::try_from(h.mtime) {
        Ok(m) if m <= octal_max(12) && h.mtime_nsec == 0 => m,
        Ok(m) if m <= octal_max(12) => {
            // As Python's tarfile writes a float mtime (what Portage's xpak
            // quickpkg stores): the shortest decimal of the double.
            let f = m as f64 + f64::from(h.mtime_nsec) * 1e-9;
            pax_record(&mut pax, b"mtime", format!("{f}").as_bytes());
            m
        }
        _ => {
            pax_record(&mut pax, b"mtime", h.mtime.to_string().as_bytes());
            0
        }
    };
    let uname = if h.uname.len() > 32 {
        pax_record(&mut pax, b"uname", h.uname);
        &b""[..]
    } else {
        h.uname
    };
    let gname = if h.gname.len() > 32 {
        pax_record(&mut pax, b"gname", h.gname);
        &b""[..]
    } else {
        h.gname
    };
    for (k, v) in h.xattrs {
        let mut key = b"SCHILY.xattr.".to_vec();
        key.extend_from_slice(k);
        pax_record(&mut pax, &key, v);
    }
    if !pax.is_empty() {
        let ph = Header::file(b"././@PaxHeader", pax.len() as u64, 0);
        let fields = UstarFields {
            uid: 0,
            gid: 0,
            size: pax.len() as u64,
            mtime: 0,
            link: b"",
            uname: b"",
            gname: b"",
        };
        out.extend_from_slice(&ustar_block(ph.name, b"", b'x', &ph, &fields));
        out.extend_from_slice(&pax);
        pad_to_block(out);
    }
    let fields = UstarFields {
        uid,
        gid,
        size,
        mtime,
        link,
        uname,
        gname,
    };
    out.extend_from_slice(&ustar_block(name, prefix, typeflag(h.kind), h, &fields));
}

fn pad_to_block(out: &mut Vec<u8>) {
    let rem = out.len() % BLOCK;
    if rem != 0 {
        out.resize(out.len() + BLOCK - rem, 0);
    }
}

/// The number of zero bytes that pad `len` to a multiple of `to`.
pub(crate) fn padding(len: u64, to: u64) -> u64 {
    (to - len % to) % to
}

/// Why appending a file's content failed.
#[derive(Debug)]
pub(crate) enum ContentError {
    /// Reading the source failed.
    Read(io::Error),
    /// Writing the archive failed.
    Write(io::Error),
    /// The source ended early.
    Short { expected: u64, got: u64 },
}

/// A tar stream being written.
pub(crate) struct TarStream<W: Write> {
    inner: W,
    written: u64,
    scratch: Vec<u8>,
    buf: Vec<u8>,
}

impl<W: Write> TarStream<W> {
    pub(crate) fn new(inner: W) -> TarStream<W> {
        TarStream {
            inner,
            written: 0,
            scratch: Vec::with_capacity(2 * BLOCK),
            buf: Vec::new(),
        }
    }

    /// Bytes written so far (uncompressed tar size).
    pub(crate) fn written(&self) -> u64 {
        self.written
    }

    fn put(&mut self, data: &[u8]) -> io::Result<()> {
        self.inner.write_all(data)?;
        self.written += data.len() as u64;
        Ok(())
    }

    /// Write the header(s) of an entry.
    pub(crate) fn header(&mut self, h: &Header<'_>) -> io::Result<()> {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        encode_header(h, &mut scratch);
        let r = self.put(&scratch);
        self.scratch = scratch;
        r
    }

    /// Write an entry with in-memory content.
    pub(crate) fn entry_bytes(&mut self, h: &Header<'_>, data: &[u8]) -> io::Result<()> {
        debug_assert_eq!(h.size, data.len() as u64);
        self.header(h)?;
        self.put(data)?;
        self.pad()
    }

    /// Write exactly `size` bytes of content from `src`, then the padding.
    /// A source that ends early is an error; extra bytes are not read.
    pub(crate) fn content(&mut self, src: &mut dyn Read, size: u64) -> Result<(), ContentError> {
        if self.buf.is_empty() {
            self.buf = vec![0u8; 256 * 1024];
        }
        let mut left = size;
        while left > 0 {
            let want = usize::try_from(left.min(self.buf.len() as u64)).unwrap_or(self.buf.len());
            let n = match src.read(&mut self.buf[..want]) {
                Ok(0) => {
                    return Err(ContentError::Short {
                        expected: size,
                        got: size - left,
                    })
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ContentError::Read(e)),
            };
            self.inner
                .write_all(&self.buf[..n])
                .map_err(ContentError::Write)?;
            self.written += n as u64;
            left -= n as u64;
        }
        self.pad().map_err(ContentError::Write)
    }

    fn pad(&mut self) -> io::Result<()> {
        let n = padding(self.written, BLOCK as u64) as usize;
        if n > 0 {
            self.put(&[0u8; BLOCK][..n])?;
        }
        Ok(())
    }

    /// Write the end-of-archive blocks and pad to a whole record; return the
    /// inner writer.
    pub(crate) fn finish(mut self) -> io::Result<W> {
        self.put(&[0u8; 2 * BLOCK])?;
        let n = padding(self.written, RECORD) as usize;
        self.put(&vec![0u8; n])?;
        Ok(self.inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr(name: &[u8]) -> Header<'_> {
        Header::file(name, 0, 1_700_000_000)
    }

    #[test]
    fn pax_record_lengths_count_themselves() {
        for n in [0usize, 1, 5, 90, 94, 95, 96, 200, 995, 996, 9990] {
            let mut v = Vec::new();
            let value = vec![b'a'; n];
            pax_record(&mut v, b"path", &value);
            let sp = v.iter().position(|&b| b == b' ').unwrap();
            let len: usize = std::str::from_utf8(&v[..sp]).unwrap().parse().unwrap();
            assert_eq!(len, v.len(), "value length {n}");
        }
    }

    #[test]
    fn ustar_split_prefers_plain_names() {
        assert_eq!(split_ustar(b"a/b"), Some((&b""[..], &b"a/b"[..])));
        let long = [vec![b'd'; 120], b"/".to_vec(), vec![b'f'; 90]].concat();
        let (p, n) = split_ustar(&long).unwrap();
        assert_eq!(p.len(), 120);
        assert_eq!(n.len(), 90);
        let too_long_name = [b"d/".to_vec(), vec![b'f'; 101]].concat();
        assert!(split_ustar(&too_long_name).is_none());
    }

    #[test]
    fn huge_sizes_are_base256_in_the_header() {
        let mut h = hdr(b"big");
        h.size = 9 << 30;
        let mut out = Vec::new();
        encode_header(&h, &mut out);
        assert_eq!(out.len(), BLOCK, "no PAX header for a large size");
        let th = ::tar::Header::from_byte_slice(&out);
        assert_eq!(th.size().unwrap(), 9 << 30);
    }

    #[test]
    fn headers_have_valid_checksums_and_pax_when_needed() {
        let mut out = Vec::new();
        encode_header(&hdr(b"usr/bin/foo"), &mut out);
        assert_eq!(out.len(), BLOCK);
        let long = vec![b'x'; 300];
        let mut out2 = Vec::new();
        encode_header(&hdr(&long), &mut out2);
        assert_eq!(&out2[156..157], b"x");
        assert!(out2.len() >= 3 * BLOCK);
        for block in [&out[..BLOCK], &out2[..BLOCK], &out2[out2.len() - BLOCK..]] {
            let stored =
                u64::from_str_radix(std::str::from_utf8(&block[148..154]).unwrap(), 8).unwrap();
            let mut copy = block.to_vec();
            copy[148..156].fill(b' ');
            assert_eq!(stored, copy.iter().map(|&b| u64::from(b)).sum::<u64>());
        }
    }
}

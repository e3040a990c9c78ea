//! Readers: positional sections of the package file, streaming hashes and
//! the counters that enforce the decompression limits.

use std::cell::{Cell, RefCell};
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::rc::Rc;

use blake2::Blake2b512;
use sha2::{Digest, Sha512};

use crate::error::LimitKind;

/// `file[pos..end]` as a reader, using positional reads (the file offset is
/// not touched, so several sections can be read through one `&File`).
pub(crate) struct FileSection<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl<'a> FileSection<'a> {
    pub(crate) fn new(file: &'a File, start: u64, len: u64) -> FileSection<'a> {
        FileSection {
            file,
            pos: start,
            end: start.saturating_add(len),
        }
    }
}

impl Read for FileSection<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.end.saturating_sub(self.pos);
        if left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Read exactly `buf.len()` bytes at `pos`.
pub(crate) fn read_exact_at(file: &File, buf: &mut [u8], pos: u64) -> io::Result<()> {
    file.read_exact_at(buf, pos)
}

/// Which hashes to compute while reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HashMode {
    /// SHA512 and BLAKE2B (checking against the Manifest).
    Both,
    /// BLAKE2B only (checking that bytes read again are the bytes verified:
    /// one 512-bit hash suffices, and BLAKE2b is the faster one).
    Blake2b,
    /// Nothing (a pass whose bytes are checked again later).
    None,
}

/// The two Manifest hashes of gpkg-1 (GLEP 74 names SHA512 and BLAKE2B).
#[derive(Clone)]
pub(crate) struct Digests {
    sha512: Option<Sha512>,
    blake2b: Option<Blake2b512>,
}

impl Default for Digests {
    fn default() -> Self {
        Digests::new(HashMode::Both)
    }
}

/// Finished digests, lowercase hex (empty when not computed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HexDigests {
    pub sha512: String,
    pub blake2b: String,
}

impl HexDigests {
    /// The first hash computed in both that differs, if any.
    pub(crate) fn differs(&self, other: &HexDigests) -> Option<&'static str> {
        let both = |a: &str, b: &str| !a.is_empty() && !b.is_empty() && a != b;
        if both(&self.sha512, &other.sha512) {
            Some("SHA512")
        } else if both(&self.blake2b, &other.blake2b) {
            Some("BLAKE2B")
        } else {
            None
        }
    }
}

impl Digests {
    pub(crate) fn new(mode: HashMode) -> Digests {
        Digests {
            sha512: (mode == HashMode::Both).then(Sha512::new),
            blake2b: (mode != HashMode::None).then(Blake2b512::new),
        }
    }

    pub(crate) fn update(&mut self, data: &[u8]) {
        if let Some(h) = self.sha512.as_mut() {
            h.update(data);
        }
        if let Some(h) = self.blake2b.as_mut() {
            h.update(data);
        }
    }

    pub(crate) fn finish(self) -> HexDigests {
        HexDigests {
            sha512: self.sha512.map(|h| hex(&h.finalize())).unwrap_or_default(),
            blake2b: self.blake2b.map(|h| hex(&h.finalize())).unwrap_or_default(),
        }
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

/// Hashes (and counts) everything read through it.
pub(crate) struct HashingReader<R> {
    inner: R,
    digests: Digests,
    count: u64,
}

impl<R: Read> HashingReader<R> {
    pub(crate) fn new(inner: R, mode: HashMode) -> HashingReader<R> {
        HashingReader {
            inner,
            digests: Digests::new(mode),
            count: 0,
        }
    }

    /// Read to the end (hashing), then return the digests and the byte count.
    pub(crate) fn finish(mut self) -> io::Result<(HexDigests, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok((self.digests.finish(), self.count))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.digests.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// Shared state between the compressed-side counter and the
/// uncompressed-side limiter of one archive member.
#[derive(Default)]
pub(crate) struct Meter {
    compressed: Cell<u64>,
    uncompressed: Cell<u64>,
    tripped: Cell<Option<LimitKindCell>>,
    /// The first error from below the limiter (the decoder or the file).
    failure: RefCell<Option<(io::ErrorKind, String)>>,
}

/// `LimitKind` is not `Copy`; keep a copy-able mirror in the cell.
#[derive(Clone, Copy)]
enum LimitKindCell {
    Total(u64),
    Ratio(u64),
}

impl Meter {
    /// The limit that stopped the stream, if any. Checked before mapping an
    /// I/O error, because decoders and the tar reader may rewrap the error.
    pub(crate) fn tripped(&self) -> Option<LimitKind> {
        self.tripped.get().map(|t| match t {
            LimitKindCell::Total(limit) => LimitKind::TotalSize { limit },
            LimitKindCell::Ratio(limit) => LimitKind::Ratio { limit },
        })
    }

    /// The error the decoder (or the file below it) returned, if any.
    pub(crate) fn failure(&self) -> Option<io::Error> {
        self.failure
            .borrow()
            .as_ref()
            .map(|(k, m)| io::Error::new(*k, m.clone()))
    }

    pub(crate) fn uncompressed(&self) -> u64 {
        self.uncompressed.get()
    }
}

/// Counts the compressed bytes the decoder consumed.
pub(crate) struct CountingReader<R> {
    inner: R,
    meter: Rc<Meter>,
}

impl<R> CountingReader<R> {
    pub(crate) fn new(inner: R, meter: Rc<Meter>) -> CountingReader<R> {
        CountingReader { inner, meter }
    }
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.meter
            .compressed
            .set(self.meter.compressed.get() + n as u64);
        Ok(n)
    }
}

/// Enforces the total-size and ratio limits on decompressed data.
pub(crate) struct LimitedReader<R> {
    inner: R,
    meter: Rc<Meter>,
    max_total: u64,
    max_ratio: u64,
    ratio_floor: u64,
}

impl<R> LimitedReader<R> {
    pub(crate) fn new(
        inner: R,
        meter: Rc<Meter>,
        max_total: u64,
        max_ratio: u64,
        ratio_floor: u64,
    ) -> LimitedReader<R> {
        LimitedReader {
            inner,
            meter,
            max_total,
            max_ratio,
            ratio_floor,
        }
    }
}

impl<R: Read> Read for LimitedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(t) = self.meter.tripped() {
            return Err(io::Error::other(t.to_string()));
        }
        let n = match self.inner.read(buf) {
            Ok(n) => n,
            Err(e) => {
                if e.kind() != io::ErrorKind::Interrupted {
                    let mut f = self.meter.failure.borrow_mut();
                    if f.is_none() {
                        *f = Some((e.kind(), e.to_string()));
                    }
                }
                return Err(e);
            }
        };
        let total = self.meter.uncompressed.get() + n as u64;
        self.meter.uncompressed.set(total);
        let trip = if total > self.max_total {
            Some(LimitKindCell::Total(self.max_total))
        } else if total > self.ratio_floor
            && total / self.meter.compressed.get().max(1) > self.max_ratio
        {
            Some(LimitKindCell::Ratio(self.max_ratio))
        } else {
            None
        };
        if let Some(t) = trip {
            self.meter.tripped.set(Some(t));
            let kind = self
                .meter
                .tripped()
                .map(|k| k.to_string())
                .unwrap_or_default();
            return Err(io::Error::other(kind));
        }
        Ok(n)
    }
}

/// Reads exactly `size` bytes from `inner`; a short stream is an
/// `UnexpectedEof` error instead of a silent short read.
pub(crate) struct ExactReader<'a> {
    inner: &'a mut dyn Read,
    left: u64,
}

impl<'a> ExactReader<'a> {
    pub(crate) fn new(inner: &'a mut dyn Read, size: u64) -> ExactReader<'a> {
        ExactReader { inner, left: size }
    }

    pub(crate) fn left(&self) -> u64 {
        self.left
    }
}

impl Read for ExactReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = usize::try_from(self.left)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{} bytes of entry data missing", self.left),
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

//! The md5 digests CONTENTS records (lowercase hex), of whole files.

use std::io::{self, Read};

use md5::{Digest, Md5};

/// The md5 of everything `r` yields, using `buf` for reading.
pub fn md5_reader(r: &mut impl Read, buf: &mut [u8]) -> io::Result<[u8; 16]> {
    let mut h = Md5::new();
    loop {
        let n = r.read(buf)?;
        if n == 0 {
            return Ok(h.finalize().into());
        }
        h.update(&buf[..n]);
    }
}

/// Lowercase hex of a digest.
pub fn hex(d: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(d.len() * 2);
    for b in d {
        s.push(HEX[usize::from(b >> 4)] as char);
        s.push(HEX[usize::from(b & 0xf)] as char);
    }
    s
}

/// The md5 of everything `r` yields, as CONTENTS writes it.
pub fn md5_hex_reader(r: &mut impl Read, buf: &mut [u8]) -> io::Result<String> {
    md5_reader(r, buf).map(|d| hex(&d))
}

/// Copy everything `r` yields to `w`, returning its md5 as CONTENTS
/// writes it and the number of bytes copied.
pub fn md5_copy<R: Read + ?Sized, W: io::Write + ?Sized>(
    r: &mut R,
    w: &mut W,
    buf: &mut [u8],
) -> io::Result<(String, u64)> {
    let mut h = Md5::new();
    let mut total = 0u64;
    loop {
        let n = match r.read(buf) {
            Ok(0) => return Ok((hex(&h.finalize()), total)),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        h.update(&buf[..n]);
        w.write_all(&buf[..n])?;
        total += n as u64;
    }
}

/// The md5 of a file, as CONTENTS writes it.
pub fn md5_hex_file(path: &std::path::Path) -> io::Result<String> {
    let mut buf = vec![0u8; 64 * 1024];
    md5_hex_reader(&mut std::fs::File::open(path)?, &mut buf)
}

#[cfg(test)]
mod tests {
    #[test]
    fn copy_hashes_what_it_writes() {
        let mut out = Vec::new();
        let mut buf = [0u8; 2];
        let (sum, n) = super::md5_copy(&mut &b"abc"[..], &mut out, &mut buf).unwrap();
        assert_eq!(out, b"abc");
        assert_eq!(n, 3);
        assert_eq!(sum, "900150983cd24fb0d6963f7d28e17f72");
    }

    #[test]
    fn known_digest() {
        let mut buf = [0u8; 3];
        assert_eq!(
            super::md5_hex_reader(&mut &b"hello\n"[..], &mut buf).unwrap(),
            "b1946ac92492d2347c6235b4d2611184"
        );
    }
}

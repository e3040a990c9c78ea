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

/// The md5 of a file, as CONTENTS writes it.
pub fn md5_hex_file(path: &std::path::Path) -> io::Result<String> {
    let mut buf = vec![0u8; 64 * 1024];
    md5_hex_reader(&mut std::fs::File::open(path)?, &mut buf)
}

#[cfg(test)]
mod tests {
    #[test]
    fn known_digest() {
        let mut buf = [0u8; 3];
        assert_eq!(
            super::md5_hex_reader(&mut &b"hello\n"[..], &mut buf).unwrap(),
            "b1946ac92492d2347c6235b4d2611184"
        );
    }
}

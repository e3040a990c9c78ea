//! Compressions Portage uses for binary packages (`BINPKG_COMPRESS`), their
//! gpkg member extensions, magic-byte detection (as Portage's
//! `compression_probe`) and streaming decoders.

use std::io::{self, BufRead, Read};

/// A `BINPKG_COMPRESS` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    /// Plain tar (`BINPKG_COMPRESS=none` or empty).
    None,
    /// gzip (`.gz`).
    Gzip,
    /// bzip2 (`.bz2`; the tbz2 default).
    Bzip2,
    /// xz (`.xz`).
    Xz,
    /// zstd (`.zst`; Portage's default).
    Zstd,
    /// lz4 frame format (`.lz4`).
    Lz4,
    /// lzip (`.lz`): recognised, not decodable here.
    Lzip,
    /// lzop (`.lzo`): recognised, not decodable here.
    Lzop,
}

impl Compression {
    /// Every value, in Portage's `ext_list` order plus `None`.
    pub const ALL: [Compression; 8] = [
        Compression::Gzip,
        Compression::Bzip2,
        Compression::Lz4,
        Compression::Lzip,
        Compression::Lzop,
        Compression::Xz,
        Compression::Zstd,
        Compression::None,
    ];

    /// Portage's name (`BINPKG_COMPRESS` value); `none` for [`Compression::None`].
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Bzip2 => "bzip2",
            Compression::Xz => "xz",
            Compression::Zstd => "zstd",
            Compression::Lz4 => "lz4",
            Compression::Lzip => "lzip",
            Compression::Lzop => "lzop",
        }
    }

    /// The suffix after `.tar` in gpkg member names (`""` for none).
    pub fn extension(self) -> &'static str {
        match self {
            Compression::None => "",
            Compression::Gzip => ".gz",
            Compression::Bzip2 => ".bz2",
            Compression::Xz => ".xz",
            Compression::Zstd => ".zst",
            Compression::Lz4 => ".lz4",
            Compression::Lzip => ".lz",
            Compression::Lzop => ".lzo",
        }
    }

    /// The compression whose extension is `ext` (`""` → none).
    pub fn from_extension(ext: &str) -> Option<Compression> {
        Compression::ALL.into_iter().find(|c| c.extension() == ext)
    }

    /// Can this crate decode it?
    pub fn is_supported(self) -> bool {
        !matches!(self, Compression::Lzip | Compression::Lzop)
    }

    /// Identify a compressed stream by its first bytes (at least 9 are
    /// needed for lzop). Like Portage's `compression_probe`, but bzip2 is
    /// accepted with any block size (`BZh1`..`BZh9`, Portage only knows
    /// `BZh9`) and zstd also when the stream starts with a skippable frame
    /// (as pzstd writes). Never returns [`Compression::None`]: see
    /// [`looks_like_tar`].
    pub fn probe(head: &[u8]) -> Option<Compression> {
        let starts = |m: &[u8]| head.len() >= m.len() && &head[..m.len()] == m;
        if head.len() >= 4 && &head[..3] == b"BZh" && (b'1'..=b'9').contains(&head[3]) {
            Some(Compression::Bzip2)
        } else if starts(b"\x1f\x8b") {
            Some(Compression::Gzip)
        } else if starts(b"\x04\x22\x4d\x18") || starts(b"\x02\x21\x4c\x18") {
            Some(Compression::Lz4)
        } else if starts(b"LZIP") {
            Some(Compression::Lzip)
        } else if starts(b"\x89LZO\x00\x0d\x0a\x1a\x0a") {
            Some(Compression::Lzop)
        } else if starts(b"\xfd7zXZ\x00") {
            Some(Compression::Xz)
        } else if head.len() >= 4
            && ((0x22..=0x28).contains(&head[0]) && &head[1..4] == b"\xb5\x2f\xfd"
                || head[0] & 0xf0 == 0x50 && &head[1..4] == b"\x2a\x4d\x18")
        {
            Some(Compression::Zstd)
        } else {
            None
        }
    }
}

/// Does `block` start with a tar header (valid checksum)? Used to recognise
/// uncompressed tar data, as Portage's `tarfile.is_tarfile` fallback does.
pub fn looks_like_tar(block: &[u8]) -> bool {
    if block.len() < 512 {
        return false;
    }
    let block = &block[..512];
    if block.iter().all(|&b| b == 0) {
        // An empty archive (end-of-archive marker only).
        return true;
    }
    let field = &block[148..156];
    let digits: Vec<u8> = field
        .iter()
        .copied()
        .skip_while(|b| *b == b' ')
        .take_while(|b| (b'0'..=b'7').contains(b))
        .collect();
    if digits.is_empty() {
        return false;
    }
    let mut stored: u64 = 0;
    for d in digits {
        stored = match stored.checked_mul(8) {
            Some(v) => v + u64::from(d - b'0'),
            None => return false,
        };
    }
    let sum: u64 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u64::from(b)
            }
        })
        .sum();
    sum == stored
}

/// A streaming decoder for `c` over `r`. `max_memory` bounds the xz
/// decoder's memory and the zstd window.
pub(crate) fn decoder<'a, R: BufRead + 'a>(
    c: Compression,
    r: R,
    max_memory: u64,
) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match c {
        Compression::None => Box::new(r),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(r)),
        Compression::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(r)),
        Compression::Xz => {
            let stream = liblzma::stream::Stream::new_stream_decoder(
                max_memory,
                liblzma::stream::CONCATENATED,
            )
            .map_err(io::Error::other)?;
            Box::new(liblzma::bufread::XzDecoder::new_stream(r, stream))
        }
        Compression::Zstd => {
            let mut d = zstd::stream::read::Decoder::with_buffer(r)?;
            // 2^31 is what Portage allows (`zstd -d --long=31`).
            let log = (63 - max_memory.max(1 << 10).leading_zeros()).min(31);
            d.window_log_max(log)?;
            Box::new(d)
        }
        Compression::Lz4 => Box::new(lz4_flex::frame::FrameDecoder::new(r)),
        Compression::Lzip | Compression::Lzop => {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("{} is not supported", c.name()),
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_magics() {
        assert_eq!(Compression::probe(b"BZh91AY&SY"), Some(Compression::Bzip2));
        assert_eq!(Compression::probe(b"BZh1"), Some(Compression::Bzip2));
        assert_eq!(Compression::probe(b"BZh0"), None);
        assert_eq!(Compression::probe(b"\x1f\x8b\x08"), Some(Compression::Gzip));
        assert_eq!(
            Compression::probe(b"\xfd7zXZ\x00\x00"),
            Some(Compression::Xz)
        );
        assert_eq!(
            Compression::probe(b"\x28\xb5\x2f\xfd"),
            Some(Compression::Zstd)
        );
        assert_eq!(
            Compression::probe(b"\x50\x2a\x4d\x18"),
            Some(Compression::Zstd)
        );
        assert_eq!(
            Compression::probe(b"\x04\x22\x4d\x18"),
            Some(Compression::Lz4)
        );
        assert_eq!(Compression::probe(b"LZIP\x01"), Some(Compression::Lzip));
        assert_eq!(
            Compression::probe(b"\x89LZO\x00\x0d\x0a\x1a\x0a"),
            Some(Compression::Lzop)
        );
        assert_eq!(Compression::probe(b"ustar"), None);
        assert_eq!(Compression::probe(b""), None);
    }

    #[test]
    fn extensions_round_trip() {
        for c in Compression::ALL {
            assert_eq!(Compression::from_extension(c.extension()), Some(c));
        }
        assert_eq!(Compression::from_extension(".7z"), None);
    }
}

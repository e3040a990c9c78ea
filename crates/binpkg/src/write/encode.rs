//! Streaming compressors for the archives this crate writes.

use std::io::{self, Write};

use crate::compress::Compression;
use crate::write::WriteError;

/// A compressing writer that must be finished explicitly.
pub(crate) trait Encoder: Write {
    /// Flush the compressor's trailer.
    fn finish_box(self: Box<Self>) -> io::Result<()>;
}

struct Plain<W: Write>(W);

impl<W: Write> Write for Plain<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl<W: Write> Encoder for Plain<W> {
    fn finish_box(mut self: Box<Self>) -> io::Result<()> {
        self.0.flush()
    }
}

macro_rules! encoder_via_finish {
    ($ty:ty) => {
        impl<W: Write> Encoder for $ty {
            fn finish_box(self: Box<Self>) -> io::Result<()> {
                let mut inner = (*self).finish()?;
                inner.flush()
            }
        }
    };
}

encoder_via_finish!(zstd::stream::write::Encoder<'static, W>);
encoder_via_finish!(flate2::write::GzEncoder<W>);
encoder_via_finish!(bzip2::write::BzEncoder<W>);
encoder_via_finish!(liblzma::write::XzEncoder<W>);

impl<W: Write> Encoder for lz4_flex::frame::FrameEncoder<W> {
    fn finish_box(self: Box<Self>) -> io::Result<()> {
        let mut inner = (*self).finish().map_err(io::Error::other)?;
        inner.flush()
    }
}

/// The default level of each compressor (what its command-line tool uses).
fn default_level(c: Compression) -> i32 {
    match c {
        Compression::Zstd => 3,
        Compression::Xz => 6,
        Compression::Gzip | Compression::Bzip2 => 9,
        _ => 0,
    }
}

/// A compressing writer around `w`. `threads` is used by zstd only; its
/// output does not depend on the number of workers.
pub(crate) fn encoder<'a, W: Write + 'a>(
    c: Compression,
    level: Option<i32>,
    threads: u32,
    w: W,
) -> Result<Box<dyn Encoder + 'a>, WriteError> {
    let level = level.unwrap_or_else(|| default_level(c));
    let io = |source| WriteError::Io {
        op: "set up the compressor",
        source,
    };
    Ok(match c {
        Compression::None => Box::new(Plain(w)),
        Compression::Zstd => {
            let mut e = zstd::stream::write::Encoder::new(w, level).map_err(io)?;
            e.multithread(threads.max(1)).map_err(io)?;
            Box::new(e)
        }
        Compression::Gzip => Box::new(flate2::write::GzEncoder::new(
            w,
            flate2::Compression::new(level.clamp(0, 9) as u32),
        )),
        Compression::Bzip2 => Box::new(bzip2::write::BzEncoder::new(
            w,
            bzip2::Compression::new(level.clamp(1, 9) as u32),
        )),
        Compression::Xz => Box::new(liblzma::write::XzEncoder::new(w, level.clamp(0, 9) as u32)),
        Compression::Lz4 => Box::new(lz4_flex::frame::FrameEncoder::new(w)),
        Compression::Lzip | Compression::Lzop => {
            return Err(WriteError::UnsupportedCompression(c.name()))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn every_supported_compression_round_trips() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        for c in Compression::ALL {
            if !c.is_supported() {
                assert!(encoder(c, None, 1, Vec::new()).is_err());
                continue;
            }
            let mut out = Vec::new();
            {
                let mut e = encoder(c, None, 2, &mut out).unwrap();
                e.write_all(&data).unwrap();
                e.finish_box().unwrap();
            }
            assert_eq!(
                Compression::probe(&out).unwrap_or(Compression::None),
                c,
                "{c:?}"
            );
            let mut back = Vec::new();
            crate::compress::decoder(c, std::io::BufReader::new(&out[..]), 1 << 30)
                .unwrap()
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, data, "{c:?}");
        }
    }

    #[test]
    fn zstd_output_does_not_depend_on_worker_count() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 253) as u8).collect();
        let run = |t| {
            let mut out = Vec::new();
            let mut e = encoder(Compression::Zstd, None, t, &mut out).unwrap();
            e.write_all(&data).unwrap();
            e.finish_box().unwrap();
            out
        };
        assert_eq!(run(1), run(2));
        assert_eq!(run(1), run(4));
    }
}

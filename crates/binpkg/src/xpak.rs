//! xpak / tbz2 reader.
//!
//! ```text
//! <compressed tar> "XPAKPACK" be32(index_len) be32(data_len) index data "XPAKSTOP" be32(xpak_len) "STOP"
//! index entry: be32(name_len) name be32(data_offset) be32(data_len)
//! ```
//!
//! `xpak_len` counts the block from `XPAKPACK` to `XPAKSTOP` inclusive.
//! The tar part's compression is detected from its magic bytes, as Portage
//! does (bzip2 by default; zstd, xz, gzip, lz4 and plain tar occur). xpak
//! packages carry no checksums and no signatures.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::compress::{looks_like_tar, Compression};
use crate::error::{show, Error, ErrorKind, LimitKind, Result};
use crate::image::{run_image, ImageEntry, ImageLayout, ImageSource, ImageSummary};
use crate::io::{hex, read_exact_at, HashMode, HexDigests};
use crate::metadata::{check_key, value_str, Metadata};
use crate::options::{SignaturePolicy, VerifyOptions};

/// Member name used in errors about the XPAK block.
const XPAK_MEMBER: &str = "XPAK block";
/// Member name used in errors about the tar part.
const TAR_MEMBER: &str = "image tar";

/// One index record of an xpak block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XpakIndexEntry {
    /// The key (file name in build-info).
    pub name: Vec<u8>,
    /// Offset of the value in the data segment.
    pub offset: u32,
    /// Length of the value.
    pub len: u32,
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// Parse an xpak index segment; every record's value must lie inside a data
/// segment of `data_len` bytes, and the records must fill the index exactly.
/// (Portage's parser stops at fewer than 9 leftover bytes and does not check
/// the ranges.)
pub fn parse_index(
    index: &[u8],
    data_len: u32,
) -> std::result::Result<Vec<XpakIndexEntry>, String> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos < index.len() {
        let name_len = be32(index, pos).ok_or("index record cut short (name length)")?;
        let name_len = usize::try_from(name_len).map_err(|_| "name length out of range")?;
        let name_start = pos + 4;
        let name_end = name_start
            .checked_add(name_len)
            .filter(|&e| e <= index.len())
            .ok_or("index record cut short (name)")?;
        if name_len == 0 {
            return Err(format!("empty name in the index record at byte {pos}"));
        }
        let offset = be32(index, name_end).ok_or("index record cut short (data offset)")?;
        let len = be32(index, name_end + 4).ok_or("index record cut short (data length)")?;
        if u64::from(offset) + u64::from(len) > u64::from(data_len) {
            return Err(format!(
                "value of \"{}\" ({len} bytes at {offset}) lies outside the {data_len}-byte data segment",
                show(&index[name_start..name_end])
            ));
        }
        out.push(XpakIndexEntry {
            name: index[name_start..name_end].to_vec(),
            offset,
            len,
        });
        pos = name_end + 8;
    }
    Ok(out)
}

/// A parsed xpak block (`XPAKPACK` ... `XPAKSTOP`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XpakBlock<'a> {
    /// Index records, in order.
    pub entries: Vec<XpakIndexEntry>,
    /// The data segment.
    pub data: &'a [u8],
}

impl<'a> XpakBlock<'a> {
    /// Parse a whole block. The index and data lengths must add up to the
    /// block's size.
    pub fn parse(block: &'a [u8]) -> std::result::Result<XpakBlock<'a>, String> {
        if block.len() < 24 || !block.starts_with(b"XPAKPACK") || !block.ends_with(b"XPAKSTOP") {
            return Err("not an XPAKPACK ... XPAKSTOP block".into());
        }
        let index_len = be32(block, 8).ok_or("short header")?;
        let data_len = be32(block, 12).ok_or("short header")?;
        let want = 16 + u64::from(index_len) + u64::from(data_len) + 8;
        if want != block.len() as u64 {
            return Err(format!(
                "index ({index_len} bytes) and data ({data_len} bytes) do not fill the {}-byte block",
                block.len()
            ));
        }
        let index_end = 16 + index_len as usize;
        let entries = parse_index(&block[16..index_end], data_len)?;
        Ok(XpakBlock {
            entries,
            data: &block[index_end..index_end + data_len as usize],
        })
    }

    /// The value of a record.
    pub fn value(&self, e: &XpakIndexEntry) -> &'a [u8] {
        let start = e.offset as usize;
        self.data
            .get(start..start + e.len as usize)
            .unwrap_or_default()
    }
}

/// Locate the xpak block from the last 16 bytes of a file of `file_len`
/// bytes: returns `(offset, length)` of `XPAKPACK..XPAKSTOP`.
pub fn locate_block(trailer: &[u8; 16], file_len: u64) -> std::result::Result<(u64, u64), String> {
    if &trailer[0..8] != b"XPAKSTOP" || &trailer[12..16] != b"STOP" {
        return Err("no XPAKSTOP<length>STOP trailer".into());
    }
    let info = u64::from(u32::from_be_bytes([
        trailer[8],
        trailer[9],
        trailer[10],
        trailer[11],
    ]));
    if info < 24 {
        return Err(format!("XPAK length {info} is too small"));
    }
    let total = info + 8;
    if total > file_len {
        return Err(format!(
            "XPAK length {info} exceeds the file size {file_len}"
        ));
    }
    Ok((file_len - total, info))
}

/// An xpak (tbz2) package with its metadata read and its image checked.
#[derive(Debug)]
pub struct XpakReader {
    path: PathBuf,
    file: File,
    tar_len: u64,
    compression: Compression,
    keys: Vec<String>,
    metadata: Metadata,
    size_key: Option<u64>,
    summary: Option<ImageSummary>,
    scanned: Option<HexDigests>,
    opts: VerifyOptions,
}

impl XpakReader {
    /// Open an xpak package: read and check the XPAK block, detect the tar
    /// part's compression and (unless [`VerifyOptions::skip_image_prescan`])
    /// check the whole image. Refused under [`SignaturePolicy::Required`],
    /// since xpak cannot be signed.
    pub fn open(path: impl AsRef<Path>, opts: &VerifyOptions) -> Result<XpakReader> {
        let path = path.as_ref();
        let e = |member: Option<&str>, kind: ErrorKind| Error::new(path, member, kind);
        let io = |op: &'static str| move |source| ErrorKind::Io { op, source };
        let file = File::open(path).map_err(|s| e(None, io("open the package")(s)))?;
        let file_len = file
            .metadata()
            .map_err(|s| e(None, io("stat the package")(s)))?
            .len();
        if opts.signature == SignaturePolicy::Required {
            return Err(e(
                None,
                ErrorKind::SignatureMissing {
                    what: "xpak packages cannot be signed (Portage ignores them under binpkg-request-signature)".into(),
                },
            ));
        }
        let xe = |reason: String| e(Some(XPAK_MEMBER), ErrorKind::Xpak { reason });
        if file_len < 16 {
            return Err(xe("file too short for an XPAK trailer".into()));
        }
        let mut trailer = [0u8; 16];
        read_exact_at(&file, &mut trailer, file_len - 16)
            .map_err(|s| e(Some(XPAK_MEMBER), io("read the package")(s)))?;
        let (start, len) = locate_block(&trailer, file_len).map_err(xe)?;
        if len > opts.limits.max_metadata_size {
            return Err(e(
                Some(XPAK_MEMBER),
                ErrorKind::Limit {
                    limit: LimitKind::Metadata {
                        limit: opts.limits.max_metadata_size,
                    },
                },
            ));
        }
        let mut block = vec![0u8; usize::try_from(len).unwrap_or(0)];
        read_exact_at(&file, &mut block, start)
            .map_err(|s| e(Some(XPAK_MEMBER), io("read the package")(s)))?;
        let parsed = XpakBlock::parse(&block).map_err(xe)?;
        let mut metadata = Metadata::new();
        let mut keys = Vec::new();
        for entry in &parsed.entries {
            let bad = |reason| {
                e(
                    Some(XPAK_MEMBER),
                    ErrorKind::BadMetadataEntry {
                        name: show(&entry.name),
                        reason,
                    },
                )
            };
            let key = check_key(&entry.name).map_err(bad)?;
            if metadata.contains_key(&key) {
                return Err(bad("duplicate key"));
            }
            metadata.insert(key.clone(), parsed.value(entry).to_vec());
            keys.push(key);
        }
        if start == 0 {
            return Err(e(
                Some(TAR_MEMBER),
                ErrorKind::Truncated {
                    reason: "no image archive before the XPAK block".into(),
                },
            ));
        }
        let mut head = vec![0u8; usize::try_from(start.min(512)).unwrap_or(512)];
        read_exact_at(&file, &mut head, 0)
            .map_err(|s| e(Some(TAR_MEMBER), io("read the package")(s)))?;
        let compression = match Compression::probe(&head) {
            Some(c) if !c.is_supported() => {
                return Err(e(
                    Some(TAR_MEMBER),
                    ErrorKind::UnsupportedCompression { name: c.name() },
                ))
            }
            Some(c) => c,
            None if looks_like_tar(&head) => Compression::None,
            None => {
                return Err(e(
                    Some(TAR_MEMBER),
                    ErrorKind::UnrecognisedCompression {
                        magic: hex(&head[..head.len().min(8)]),
                    },
                ))
            }
        };
        let size_key = value_str(&metadata, "SIZE").and_then(|s| s.parse::<u64>().ok());
        let mut reader = XpakReader {
            path: path.to_path_buf(),
            file,
            tar_len: start,
            compression,
            keys,
            metadata,
            size_key,
            summary: None,
            scanned: None,
            opts: opts.clone(),
        };
        if !opts.skip_image_prescan {
            // xpak has no Manifest: the pre-scan's hash is what the stream
            // that hands entries out is compared with.
            let (summary, digests) = run_image::<Error, fn(&mut ImageEntry<'_>) -> Result<()>>(
                &reader.image_source(),
                opts,
                None,
                HashMode::Blake2b,
            )?;
            reader.summary = Some(summary);
            reader.scanned = Some(digests);
        }
        Ok(reader)
    }

    fn image_source(&self) -> ImageSource<'_> {
        ImageSource {
            file: &self.file,
            path: &self.path,
            member: TAR_MEMBER,
            start: 0,
            len: self.tar_len,
            compression: self.compression,
            layout: ImageLayout::Xpak,
            size_key: self.size_key,
        }
    }

    /// Stream the image entries, in archive order, to `f` (see
    /// [`crate::gpkg::GpkgReader::for_each_image_entry`]). Ends with an error
    /// if the tar part changed since `open` scanned it.
    pub fn for_each_image_entry<E, F>(&self, f: F) -> std::result::Result<ImageSummary, E>
    where
        E: From<Error>,
        F: FnMut(&mut ImageEntry<'_>) -> std::result::Result<(), E>,
    {
        let (summary, digests) =
            run_image(&self.image_source(), &self.opts, Some(f), HashMode::Blake2b)?;
        if let Some(algo) = self.scanned.as_ref().and_then(|was| was.differs(&digests)) {
            return Err(E::from(Error::new(
                &self.path,
                Some(TAR_MEMBER),
                ErrorKind::ChangedSinceVerified { algo },
            )));
        }
        Ok(summary)
    }

    /// The package file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The metadata (xpak keys; Portage's xpak holds every build-info file
    /// but CONTENTS).
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// The keys in index order.
    pub fn keys(&self) -> &[String] {
        &self.keys
    }

    /// Compression of the tar part, from its magic bytes.
    pub fn image_compression(&self) -> Compression {
        self.compression
    }

    /// Size of the tar part (everything before the XPAK block).
    pub fn tar_len(&self) -> u64 {
        self.tar_len
    }

    /// Counts from the image pre-scan.
    pub fn image_summary(&self) -> Option<&ImageSummary> {
        self.summary.as_ref()
    }

    /// The package's `category/PF` from the CATEGORY and PF metadata.
    pub fn cpv(&self) -> Result<atom::Cpv> {
        crate::cpv_from_metadata(&self.path, &self.metadata)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(entries: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut index = Vec::new();
        let mut data = Vec::new();
        for (k, v) in entries {
            index.extend_from_slice(&(k.len() as u32).to_be_bytes());
            index.extend_from_slice(k);
            index.extend_from_slice(&(data.len() as u32).to_be_bytes());
            index.extend_from_slice(&(v.len() as u32).to_be_bytes());
            data.extend_from_slice(v);
        }
        let mut b = b"XPAKPACK".to_vec();
        b.extend_from_slice(&(index.len() as u32).to_be_bytes());
        b.extend_from_slice(&(data.len() as u32).to_be_bytes());
        b.extend(index);
        b.extend(data);
        b.extend_from_slice(b"XPAKSTOP");
        b
    }

    #[test]
    fn round_trip() {
        let b = block(&[(b"CATEGORY", b"app-misc\n"), (b"PF", b"foo-1\n")]);
        let p = XpakBlock::parse(&b).unwrap();
        assert_eq!(p.entries.len(), 2);
        assert_eq!(p.value(&p.entries[1]), b"foo-1\n");
    }

    #[test]
    fn refusals() {
        let mut b = block(&[(b"A", b"x")]);
        b[15] = 9; // data length
        assert!(XpakBlock::parse(&b).is_err());
        assert!(parse_index(&[0, 0, 0, 1, b'A', 0, 0, 0, 0, 0, 0, 0, 5], 4).is_err());
        assert!(parse_index(&[0, 0, 0, 9, b'A'], 4).is_err());
        assert!(parse_index(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], 4).is_err());
        assert!(parse_index(&[0xff, 0xff, 0xff, 0xff], 4).is_err());
    }
}

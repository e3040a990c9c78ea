//! Writers: gpkg-1 (`.gpkg.tar`) and xpak (`.tbz2`/`.xpak`) packages.
//!
//! The caller streams the image entries into an [`ImageWriter`]; content is
//! compressed and hashed on the way out, never buffered whole. Output is
//! deterministic: the same entries, metadata and options give the same
//! bytes (container and metadata member mtimes come from
//! [`WriteOptions::mtime`]; the image keeps each entry's own mtime).
//!
//! ```text
//! gpkg:  <basename>/gpkg-1, metadata.tar<ext> [.sig], image.tar<ext> [.sig], Manifest
//! xpak:  <compressed tar of the image> XPAKPACK … XPAKSTOP <len> STOP
//! ```
//!
//! Differences from Portage: xattrs travel in both formats as PAX
//! `SCHILY.xattr.*` records (Portage's gpkg drops them); metadata members are
//! sorted by key (Portage uses directory order); tar headers are USTAR with a
//! PAX header where USTAR falls short (Portage switches the whole archive to
//! GNU format instead).

mod encode;
mod sign;
pub(crate) mod tar;

use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::sync::Arc;

use crate::compress::Compression;
use crate::error::show;
use crate::image::EntryKind;
use crate::io::{Digests, HexDigests};
use crate::manifest::ManifestEntry;
use crate::metadata::Metadata;

pub use sign::Signer;
use tar::{ContentError, Header, TarStream, BLOCK};

/// Why writing a package failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// Writing the package file failed.
    #[error("cannot {op}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// Reading an image file's content failed.
    #[error("cannot read {} for the package: {source}", show(path))]
    ReadSource {
        /// The entry's image path.
        path: Vec<u8>,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A file shrank while it was being packed.
    #[error("{} changed while it was being packed ({got} of {expected} bytes); run again when nothing writes to it", show(path))]
    SourceChanged {
        /// The entry's image path.
        path: Vec<u8>,
        /// The size announced.
        expected: u64,
        /// The bytes actually read.
        got: u64,
    },
    /// An entry that cannot go into a package.
    #[error("cannot pack {}: {reason}", show(path))]
    InvalidEntry {
        /// The entry's image path.
        path: Vec<u8>,
        /// Why.
        reason: &'static str,
    },
    /// No encoder for this compression.
    #[error(
        "{0} compression is not supported for writing (use zstd, xz, bzip2, gzip, lz4 or none)"
    )]
    UnsupportedCompression(&'static str),
    /// Signing failed.
    #[error("cannot sign with key {fingerprint}: {reason} (check the key and its passphrase)")]
    Sign {
        /// The signing key.
        fingerprint: String,
        /// rPGP's message.
        reason: String,
    },
}

fn io_err(op: &'static str) -> impl FnOnce(io::Error) -> WriteError {
    move |source| WriteError::Io { op, source }
}

/// How to write a package.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    /// Compression of the archives (`BINPKG_COMPRESS`; Portage's default is zstd).
    pub compression: Compression,
    /// Compression level; `None` = the compressor's usual default.
    pub level: Option<i32>,
    /// zstd worker threads (the output does not depend on it); 0 = as many
    /// as there are CPUs.
    pub threads: u32,
    /// The mtime of container and metadata members. `None` = now, as
    /// Portage does; a fixed value makes the package reproducible.
    pub mtime: Option<i64>,
    /// Sign the package (gpkg only): detached signatures of the archives and
    /// a clear-signed Manifest.
    pub signer: Option<Arc<Signer>>,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            compression: Compression::Zstd,
            level: None,
            threads: 0,
            mtime: None,
            signer: None,
        }
    }
}

impl WriteOptions {
    fn member_mtime(&self) -> i64 {
        self.mtime.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0)
        })
    }

    fn threads(&self) -> u32 {
        if self.threads > 0 {
            self.threads
        } else {
            std::thread::available_parallelism()
                .map(|n| n.get() as u32)
                .unwrap_or(1)
        }
    }
}

/// One image entry to pack.
#[derive(Debug, Clone, Copy)]
pub struct SourceEntry<'a> {
    /// Path relative to the image root, `/`-separated, no leading `/`;
    /// empty for the image root directory itself.
    pub path: &'a [u8],
    /// Entry type.
    pub kind: EntryKind,
    /// Permission bits including set-id and sticky (`0o7777`).
    pub mode: u32,
    /// Owner.
    pub uid: u64,
    /// Group.
    pub gid: u64,
    /// Owner name (may be empty).
    pub uname: &'a [u8],
    /// Group name (may be empty).
    pub gname: &'a [u8],
    /// Modification time, seconds.
    pub mtime: i64,
    /// Sub-second part of the mtime; stored (PAX) only when not zero.
    pub mtime_nsec: u32,
    /// Content size (regular files only).
    pub size: u64,
    /// Symlink target (verbatim), or for a hard link the image path of the
    /// entry it links to (which must come earlier).
    pub link_target: &'a [u8],
    /// Device numbers (devices only).
    pub device: (u32, u32),
    /// Extended attributes, stored as PAX `SCHILY.xattr.<name>`.
    pub xattrs: &'a [(Vec<u8>, Vec<u8>)],
}

impl<'a> SourceEntry<'a> {
    /// An entry of `kind` at `path` with everything else zero or empty.
    pub fn new(path: &'a [u8], kind: EntryKind) -> SourceEntry<'a> {
        SourceEntry {
            path,
            kind,
            mode: if kind == EntryKind::Dir { 0o755 } else { 0o644 },
            uid: 0,
            gid: 0,
            uname: b"",
            gname: b"",
            mtime: 0,
            mtime_nsec: 0,
            size: 0,
            link_target: b"",
            device: (0, 0),
            xattrs: &[],
        }
    }
}

/// Is `p` a clean relative image path?
fn check_path(p: &[u8]) -> Result<(), &'static str> {
    if p.is_empty() {
        return Ok(());
    }
    if p[0] == b'/' {
        return Err("absolute path");
    }
    if p.iter().any(|&b| matches!(b, 0 | b'\n' | b'\r')) {
        return Err("NUL, CR or LF in the path (installers refuse such names)");
    }
    for c in p.split(|&b| b == b'/') {
        if c.is_empty() || c == b"." || c == b".." {
            return Err("empty, `.` or `..` path component");
        }
    }
    Ok(())
}

/// Counts of what went into an image.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteSummary {
    /// Image entries.
    pub entries: u64,
    /// Regular files among them.
    pub files: u64,
    /// Bytes of file content.
    pub content_bytes: u64,
    /// Size of the uncompressed image tar.
    pub image_tar_bytes: u64,
    /// Size of the compressed image archive.
    pub image_stored_bytes: u64,
    /// Size of the whole package file.
    pub package_bytes: u64,
}

/// Receives the image entries of a package being written.
pub struct ImageWriter<'w> {
    tar: TarStream<Box<dyn encode::Encoder + 'w>>,
    prefix: &'static [u8],
    name: Vec<u8>,
    link: Vec<u8>,
    summary: WriteSummary,
}

impl ImageWriter<'_> {
    /// Append one entry. For a regular file, `content` must yield at least
    /// `entry.size` bytes (exactly that many are stored).
    pub fn append(
        &mut self,
        entry: &SourceEntry<'_>,
        content: Option<&mut dyn Read>,
    ) -> Result<(), WriteError> {
        let invalid = |reason| WriteError::InvalidEntry {
            path: entry.path.to_vec(),
            reason,
        };
        check_path(entry.path).map_err(invalid)?;
        if entry.path.is_empty() && entry.kind != EntryKind::Dir {
            return Err(invalid("the image root must be a directory"));
        }
        self.name.clear();
        self.name.extend_from_slice(self.prefix);
        self.name.extend_from_slice(entry.path);
        if entry.kind == EntryKind::Dir && !entry.path.is_empty() {
            self.name.push(b'/');
        }
        self.link.clear();
        match entry.kind {
            EntryKind::Symlink => {
                if entry.link_target.is_empty() {
                    return Err(invalid("symlink with an empty target"));
                }
                self.link.extend_from_slice(entry.link_target);
            }
            EntryKind::Hardlink => {
                if entry.link_target.is_empty() {
                    return Err(invalid("hard link without a target"));
                }
                check_path(entry.link_target).map_err(invalid)?;
                self.link.extend_from_slice(self.prefix);
                self.link.extend_from_slice(entry.link_target);
            }
            _ => {}
        }
        let size = if entry.kind == EntryKind::File {
            entry.size
        } else {
            0
        };
        let h = Header {
            name: &self.name,
            kind: entry.kind,
            mode: entry.mode,
            uid: entry.uid,
            gid: entry.gid,
            uname: entry.uname,
            gname: entry.gname,
            mtime: entry.mtime,
            mtime_nsec: entry.mtime_nsec,
            size,
            link: &self.link,
            device: entry.device,
            xattrs: entry.xattrs,
        };
        self.tar
            .header(&h)
            .map_err(io_err("write the image archive"))?;
        if entry.kind == EntryKind::File {
            let Some(src) = content else {
                return Err(invalid("regular file without content"));
            };
            self.tar.content(src, size).map_err(|e| match e {
                ContentError::Read(source) => WriteError::ReadSource {
                    path: entry.path.to_vec(),
                    source,
                },
                ContentError::Write(source) => WriteError::Io {
                    op: "write the image archive",
                    source,
                },
                ContentError::Short { expected, got } => WriteError::SourceChanged {
                    path: entry.path.to_vec(),
                    expected,
                    got,
                },
            })?;
            self.summary.files += 1;
            self.summary.content_bytes += size;
        }
        self.summary.entries += 1;
        Ok(())
    }

    fn finish(self) -> Result<WriteSummary, WriteError> {
        let mut summary = self.summary;
        summary.image_tar_bytes = self.tar.written();
        let enc = self
            .tar
            .finish()
            .map_err(io_err("finish the image archive"))?;
        enc.finish_box()
            .map_err(io_err("finish the image compression"))?;
        Ok(summary)
    }
}

/// Hashes and counts what passes through.
struct HashSink<'a> {
    inner: &'a mut dyn Write,
    digests: Option<Digests>,
    len: u64,
}

impl Write for HashSink<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        if let Some(d) = self.digests.as_mut() {
            d.update(&buf[..n]);
        }
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A metadata tar (`metadata/<KEY>`, sorted, mode 0644, root-owned).
fn write_metadata_tar(
    w: &mut dyn Write,
    metadata: &Metadata,
    opts: &WriteOptions,
    mtime: i64,
) -> Result<(), WriteError> {
    let enc = encode::encoder(opts.compression, opts.level, opts.threads(), w)?;
    let mut tar = TarStream::new(enc);
    let mut name = Vec::new();
    for (key, value) in metadata {
        check_path(key.as_bytes())
            .ok()
            .filter(|_| !key.contains('/') && !key.is_empty())
            .ok_or(WriteError::InvalidEntry {
                path: key.as_bytes().to_vec(),
                reason: "a metadata key must be a plain file name",
            })?;
        name.clear();
        name.extend_from_slice(b"metadata/");
        name.extend_from_slice(key.as_bytes());
        tar.entry_bytes(&Header::file(&name, value.len() as u64, mtime), value)
            .map_err(io_err("write the metadata archive"))?;
    }
    tar.finish()
        .map_err(io_err("finish the metadata archive"))?
        .finish_box()
        .map_err(io_err("finish the metadata compression"))
}

/// Where a container member's data lies.
struct Member {
    name: String,
    offset: u64,
    size: u64,
    digests: HexDigests,
}

/// The outer (container) tar of a gpkg, written with headers patched in
/// after each member's size is known.
struct Container<'o, W: Read + Write + Seek> {
    out: &'o mut W,
    basename: String,
    mtime: i64,
    members: Vec<Member>,
}

impl<W: Read + Write + Seek> Container<'_, W> {
    fn member<E: From<WriteError>>(
        &mut self,
        name: &str,
        body: impl FnOnce(&mut dyn Write) -> Result<(), E>,
    ) -> Result<(), E> {
        let start = self
            .out
            .stream_position()
            .map_err(io_err("find the position in the package"))?;
        self.out
            .write_all(&[0u8; BLOCK])
            .map_err(io_err("write the package"))?;
        let (size, digests) = {
            let mut buf = BufWriter::with_capacity(1 << 18, &mut *self.out);
            let mut sink = HashSink {
                inner: &mut buf,
                digests: Some(Digests::default()),
                len: 0,
            };
            body(&mut sink)?;
            let len = sink.len;
            let d = sink.digests.take().map(Digests::finish);
            buf.flush().map_err(io_err("write the package"))?;
            (len, d)
        };
        let pad = tar::padding(size, BLOCK as u64);
        self.out
            .write_all(&vec![0u8; pad as usize])
            .map_err(io_err("write the package"))?;
        let full = format!("{}/{}", self.basename, name);
        let mut header = Vec::new();
        tar::encode_header(
            &Header::file(full.as_bytes(), size, self.mtime),
            &mut header,
        );
        if header.len() != BLOCK {
            // A PAX header would not fit the reserved block: the container
            // names are short (basename + a fixed member name), so this only
            // happens with an absurd basename.
            return Err(WriteError::InvalidEntry {
                path: full.into_bytes(),
                reason: "the package basename is too long for a tar header",
            }
            .into());
        }
        self.out
            .seek(SeekFrom::Start(start))
            .and_then(|_| self.out.write_all(&header))
            .and_then(|_| self.out.seek(SeekFrom::Start(start + 512 + size + pad)))
            .map_err(io_err("write a member header"))?;
        self.members.push(Member {
            name: name.to_owned(),
            offset: start + 512,
            size,
            digests: digests.unwrap_or(HexDigests {
                sha512: String::new(),
                blake2b: String::new(),
            }),
        });
        Ok(())
    }

    fn bytes(&mut self, name: &str, data: &[u8]) -> Result<(), WriteError> {
        self.member(name, |w| {
            w.write_all(data).map_err(io_err("write the package"))
        })
    }

    /// A detached signature of the last member, as member `<name>.sig`.
    fn sign_last(&mut self, signer: &Signer) -> Result<(), WriteError> {
        let (name, offset, size) = {
            let m = self.members.last().expect("a member was written");
            (format!("{}.sig", m.name), m.offset, m.size)
        };
        let end = self
            .out
            .stream_position()
            .map_err(io_err("find the position in the package"))?;
        self.out
            .seek(SeekFrom::Start(offset))
            .map_err(io_err("re-read a member for signing"))?;
        let sig = signer.detached(io::BufReader::new((&mut *self.out).take(size)))?;
        self.out
            .seek(SeekFrom::Start(end))
            .map_err(io_err("re-read a member for signing"))?;
        self.bytes(&name, &sig)
    }

    fn manifest(&self) -> String {
        let mut text = String::new();
        for m in &self.members {
            let e = ManifestEntry {
                name: m.name.clone(),
                size: m.size,
                sha512: m.digests.sha512.clone(),
                blake2b: m.digests.blake2b.clone(),
            };
            text.push_str(&e.to_string());
            text.push('\n');
        }
        text
    }
}

/// Write a gpkg-1 package to `out` (at its current position, normally an
/// empty file). `basename` is the top directory (`PF` or `PF-BUILD_ID`);
/// `fill` appends the image entries.
pub fn write_gpkg<W, E, F>(
    out: &mut W,
    basename: &str,
    metadata: &Metadata,
    opts: &WriteOptions,
    fill: F,
) -> Result<WriteSummary, E>
where
    W: Read + Write + Seek,
    E: From<WriteError>,
    F: FnOnce(&mut ImageWriter<'_>) -> Result<(), E>,
{
    if basename.is_empty() || basename.contains('/') || basename.contains('\n') {
        return Err(WriteError::InvalidEntry {
            path: basename.as_bytes().to_vec(),
            reason: "not a valid package basename",
        }
        .into());
    }
    let ext = opts.compression.extension();
    let mtime = opts.member_mtime();
    let start = out
        .stream_position()
        .map_err(io_err("find the position in the package"))?;
    let mut c = Container {
        out,
        basename: basename.to_owned(),
        mtime,
        members: Vec::new(),
    };
    c.bytes("gpkg-1", b"")?;
    let meta_name = format!("metadata.tar{ext}");
    c.member(&meta_name, |w| write_metadata_tar(w, metadata, opts, mtime))?;
    if let Some(s) = &opts.signer {
        c.sign_last(s)?;
    }
    let image_name = format!("image.tar{ext}");
    let mut summary = WriteSummary::default();
    c.member(&image_name, |w| -> Result<(), E> {
        let enc = encode::encoder(opts.compression, opts.level, opts.threads(), w)?;
        let mut iw = ImageWriter {
            tar: TarStream::new(enc),
            prefix: b"image/",
            name: Vec::new(),
            link: Vec::new(),
            summary: WriteSummary::default(),
        };
        fill(&mut iw)?;
        summary = iw.finish()?;
        Ok(())
    })?;
    summary.image_stored_bytes = c.members.last().map(|m| m.size).unwrap_or(0);
    if let Some(s) = &opts.signer {
        c.sign_last(s)?;
    }
    let mut manifest = c.manifest().into_bytes();
    if let Some(s) = &opts.signer {
        manifest = s.clearsign(&String::from_utf8_lossy(&manifest))?;
    }
    c.bytes("Manifest", &manifest)?;
    let out = c.out;
    let written = out_position(out)? - start;
    let pad = tar::padding(written + 2 * BLOCK as u64, tar::RECORD) as usize;
    out.write_all(&vec![0u8; 2 * BLOCK + pad])
        .and_then(|_| out.flush())
        .map_err(io_err("finish the package"))?;
    summary.package_bytes = out_position(out)? - start;
    Ok(summary)
}

fn out_position<W: Seek>(w: &mut W) -> Result<u64, WriteError> {
    w.stream_position()
        .map_err(io_err("find the position in the package"))
}

/// Counts bytes written.
struct Counting<W: Write> {
    inner: W,
    len: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The xpak block for `metadata` (keys sorted, as Portage's `xpak` does),
/// without the trailing length and `STOP`.
pub fn xpak_block(metadata: &Metadata) -> Vec<u8> {
    let mut index = Vec::new();
    let mut data = Vec::new();
    for (k, v) in metadata {
        index.extend_from_slice(&(k.len() as u32).to_be_bytes());
        index.extend_from_slice(k.as_bytes());
        index.extend_from_slice(&(data.len() as u32).to_be_bytes());
        index.extend_from_slice(&(v.len() as u32).to_be_bytes());
        data.extend_from_slice(v);
    }
    let mut block = Vec::with_capacity(24 + index.len() + data.len());
    block.extend_from_slice(b"XPAKPACK");
    block.extend_from_slice(&(index.len() as u32).to_be_bytes());
    block.extend_from_slice(&(data.len() as u32).to_be_bytes());
    block.extend_from_slice(&index);
    block.extend_from_slice(&data);
    block.extend_from_slice(b"XPAKSTOP");
    block
}

/// Write an xpak (tbz2) package: the compressed image tar, then the xpak
/// block of `metadata`. Portage leaves `CONTENTS` out of the xpak; pass
/// the metadata that should travel. Signing is not part of the format.
pub fn write_xpak<W, E, F>(
    out: &mut W,
    metadata: &Metadata,
    opts: &WriteOptions,
    fill: F,
) -> Result<WriteSummary, E>
where
    W: Write,
    E: From<WriteError>,
    F: FnOnce(&mut ImageWriter<'_>) -> Result<(), E>,
{
    for k in metadata.keys() {
        if k.is_empty() || k.contains('/') || u32::try_from(k.len()).is_err() {
            return Err(WriteError::InvalidEntry {
                path: k.as_bytes().to_vec(),
                reason: "a metadata key must be a plain file name",
            }
            .into());
        }
    }
    let mut counting = Counting {
        inner: BufWriter::with_capacity(1 << 18, &mut *out),
        len: 0,
    };
    let summary = {
        let enc = encode::encoder(opts.compression, opts.level, opts.threads(), &mut counting)?;
        let mut iw = ImageWriter {
            tar: TarStream::new(enc),
            prefix: b"./",
            name: Vec::new(),
            link: Vec::new(),
            summary: WriteSummary::default(),
        };
        fill(&mut iw)?;
        iw.finish()?
    };
    let stored = counting.len;
    let block = xpak_block(metadata);
    let block_len = u32::try_from(block.len()).map_err(|_| WriteError::InvalidEntry {
        path: b"metadata".to_vec(),
        reason: "the metadata is larger than 4 GiB",
    })?;
    counting
        .write_all(&block)
        .and_then(|_| counting.write_all(&block_len.to_be_bytes()))
        .and_then(|_| counting.write_all(b"STOP"))
        .and_then(|_| counting.flush())
        .map_err(io_err("write the xpak block"))?;
    Ok(WriteSummary {
        image_stored_bytes: stored,
        package_bytes: counting.len,
        ..summary
    })
}

#[cfg(test)]
mod tests;

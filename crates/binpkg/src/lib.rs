//! `binpkg`: Portage binary packages, read with verification first.
//!
//! * [`gpkg`]: gpkg-1 (GLEP 78) `.gpkg.tar` — container structure, Manifest
//!   (SHA512 + BLAKE2B, hashed while streaming), OpenPGP signatures
//!   ([`Keyring`], [`SignaturePolicy`]), metadata and image archives in
//!   zstd/xz/bzip2/gzip/lz4/none.
//! * [`xpak`]: the legacy tbz2/xpak format — XPAK trailer and index, tar part
//!   with its compression detected from magic bytes.
//! * [`open`]: either, chosen from the content as Portage's
//!   `get_binpkg_format` does, as a [`BinPkg`].
//!
//! Image entries come out as [`ImageEntry`] values (path relative to the
//! image root, type, mode, owner, mtime with nanoseconds, link target,
//! xattrs, and a `Read` of the content). Hostile archives — absolute names,
//! `..`, duplicate paths, writes through symlinks, forward or escaping hard
//! links, CR/LF/NUL in names, lying sizes, decompression bombs, device nodes
//! unless [`VerifyOptions::allow_devices`] — are refused when the package is
//! opened, before the caller extracts anything.
//!
//! ```no_run
//! use binpkg::{open, VerifyOptions};
//! let pkg = open("/var/cache/binpkgs/app-misc/foo/foo-1.0-1.gpkg.tar", &VerifyOptions::default())?;
//! println!("{}", pkg.cpv()?);
//! pkg.for_each_image_entry(|e| {
//!     println!("{:?} {}", e.kind, String::from_utf8_lossy(&e.path));
//!     Ok::<(), binpkg::Error>(())
//! })?;
//! # Ok::<(), binpkg::Error>(())
//! ```
//!
//! Differences from Portage 3.0.83 are listed in `crates/binpkg/README.md`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod compress;
mod error;
pub mod gpkg;
pub mod image;
mod io;
pub mod keyring;
pub mod manifest;
pub mod metadata;
mod options;
mod tarwalk;
pub mod write;
pub mod xpak;

use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::rc::Rc;

pub use compress::Compression;
pub use error::{Error, ErrorKind, ImageProblem, LimitKind, Result};
pub use gpkg::GpkgReader;
pub use image::{scan_image_tar, EntryKind, ImageEntry, ImageLayout, ImageSummary, Mtime};
pub use keyring::{Keyring, KeyringError};
pub use metadata::Metadata;
pub use options::{BasenameCheck, Limits, SignaturePolicy, VerifyOptions};
pub use write::{
    write_gpkg, write_xpak, ImageWriter, Signer, SourceEntry, WriteError, WriteOptions,
    WriteSummary,
};
pub use xpak::XpakReader;

/// The two binary package formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// gpkg-1 (`.gpkg.tar`).
    Gpkg,
    /// xpak (`.tbz2`, `.xpak`).
    Xpak,
}

/// Which format `path` holds, decided from its content like Portage's
/// `get_binpkg_format(check_file=True)`: `/gpkg-1\0` in the first 100 bytes
/// → gpkg; an `XPAKSTOP<len>STOP` trailer → xpak; otherwise a tar with a
/// `gpkg-1` member anywhere → gpkg (a damaged gpkg, which opening will then
/// refuse with a precise error). The file name is not consulted (Portage
/// only warns when the extension disagrees with the content).
pub fn detect_format(path: impl AsRef<Path>) -> Result<Format> {
    let path = path.as_ref();
    let e = |kind| Error::new(path, None, kind);
    let io = |op| move |source| e(ErrorKind::Io { op, source });
    let file = File::open(path).map_err(io("open the package"))?;
    let len = file.metadata().map_err(io("stat the package"))?.len();
    let mut head = vec![0u8; usize::try_from(len.min(100)).unwrap_or(100)];
    io::read_exact_at(&file, &mut head, 0).map_err(io("read the package"))?;
    if head.windows(8).any(|w| w == b"/gpkg-1\0") {
        return Ok(Format::Gpkg);
    }
    if len >= 16 {
        let mut tail = [0u8; 16];
        io::read_exact_at(&file, &mut tail, len - 16).map_err(io("read the package"))?;
        if &tail[0..8] == b"XPAKSTOP" && &tail[12..16] == b"STOP" {
            return Ok(Format::Xpak);
        }
    }
    // A gpkg whose gpkg-1 member is not first.
    let meter = Rc::new(io::Meter::default());
    let limited = io::LimitedReader::new(
        io::FileSection::new(&file, 0, len),
        meter,
        u64::MAX,
        u64::MAX,
        u64::MAX,
    );
    let mut stream = BufReader::new(limited);
    let mut found = false;
    let mut count = 0;
    let _ = tarwalk::walk(&mut stream, |te: &tarwalk::TarEntry, _| {
        count += 1;
        if te.name.rsplit(|&b| b == b'/').next() == Some(b"gpkg-1") {
            found = true;
        }
        if found || count > 64 {
            // Stop early: any error ends the walk.
            return Err(tarwalk::WalkError::DataAfterEnd);
        }
        Ok(())
    });
    if found {
        Ok(Format::Gpkg)
    } else {
        Err(e(ErrorKind::UnknownFormat))
    }
}

/// A verified binary package of either format.
#[derive(Debug)]
pub enum BinPkg {
    /// gpkg-1.
    Gpkg(GpkgReader),
    /// xpak/tbz2.
    Xpak(XpakReader),
}

/// Open and verify a binary package, choosing the format with
/// [`detect_format`]; when the content is not recognised, the name decides
/// (`.gpkg.tar` → gpkg, `.tbz2`/`.xpak` → xpak, as Portage's
/// `get_binpkg_format` does without `check_file`), so that a damaged package
/// gets the reader's precise error.
pub fn open(path: impl AsRef<Path>, opts: &VerifyOptions) -> Result<BinPkg> {
    let path = path.as_ref();
    let format = match detect_format(path) {
        Ok(f) => f,
        Err(e) if matches!(e.kind(), ErrorKind::UnknownFormat) => {
            let name = path
                .file_name()
                .map(|n| n.as_encoded_bytes())
                .unwrap_or_default();
            if name.ends_with(b".gpkg.tar") {
                Format::Gpkg
            } else if name.ends_with(b".tbz2") || name.ends_with(b".xpak") {
                Format::Xpak
            } else {
                return Err(e);
            }
        }
        Err(e) => return Err(e),
    };
    Ok(match format {
        Format::Gpkg => BinPkg::Gpkg(GpkgReader::open(path, opts)?),
        Format::Xpak => BinPkg::Xpak(XpakReader::open(path, opts)?),
    })
}

impl BinPkg {
    /// The format.
    pub fn format(&self) -> Format {
        match self {
            BinPkg::Gpkg(_) => Format::Gpkg,
            BinPkg::Xpak(_) => Format::Xpak,
        }
    }

    /// The package file.
    pub fn path(&self) -> &Path {
        match self {
            BinPkg::Gpkg(g) => g.path(),
            BinPkg::Xpak(x) => x.path(),
        }
    }

    /// The metadata: key → raw value (the build-info files that become VDB
    /// keys).
    pub fn metadata(&self) -> &Metadata {
        match self {
            BinPkg::Gpkg(g) => g.metadata(),
            BinPkg::Xpak(x) => x.metadata(),
        }
    }

    /// A metadata value as trimmed UTF-8 text.
    pub fn metadata_str(&self, key: &str) -> Option<&str> {
        metadata::value_str(self.metadata(), key)
    }

    /// `category/PF` from the CATEGORY and PF metadata.
    pub fn cpv(&self) -> Result<atom::Cpv> {
        cpv_from_metadata(self.path(), self.metadata())
    }

    /// Compression of the image archive.
    pub fn image_compression(&self) -> Compression {
        match self {
            BinPkg::Gpkg(g) => g.image_compression(),
            BinPkg::Xpak(x) => x.image_compression(),
        }
    }

    /// Does the package carry signatures (gpkg only)?
    pub fn is_signed(&self) -> bool {
        match self {
            BinPkg::Gpkg(g) => g.is_signed(),
            BinPkg::Xpak(_) => false,
        }
    }

    /// Fingerprints of the keys whose signatures were verified (empty when
    /// nothing was verified, and always for xpak).
    pub fn signers(&self) -> &[String] {
        match self {
            BinPkg::Gpkg(g) => g.signers(),
            BinPkg::Xpak(_) => &[],
        }
    }

    /// Counts from the image pre-scan (`None` when it was skipped).
    pub fn image_summary(&self) -> Option<&ImageSummary> {
        match self {
            BinPkg::Gpkg(g) => g.image_summary(),
            BinPkg::Xpak(x) => x.image_summary(),
        }
    }

    /// Stream the image entries to `f` (see
    /// [`GpkgReader::for_each_image_entry`]).
    pub fn for_each_image_entry<E, F>(&self, f: F) -> std::result::Result<ImageSummary, E>
    where
        E: From<Error>,
        F: FnMut(&mut ImageEntry<'_>) -> std::result::Result<(), E>,
    {
        match self {
            BinPkg::Gpkg(g) => g.for_each_image_entry(f),
            BinPkg::Xpak(x) => x.for_each_image_entry(f),
        }
    }
}

pub(crate) fn cpv_from_metadata(path: &Path, md: &Metadata) -> Result<atom::Cpv> {
    let e = |kind| Error::new(path, None, kind);
    let category = metadata::value_str(md, "CATEGORY")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| e(ErrorKind::MissingMetadataKey { key: "CATEGORY" }))?;
    let pf = metadata::value_str(md, "PF")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| e(ErrorKind::MissingMetadataKey { key: "PF" }))?;
    atom::Cpv::from_parts(category, pf).map_err(|err| {
        e(ErrorKind::BadCpv {
            cpv: format!("{category}/{pf}"),
            reason: err.to_string(),
        })
    })
}

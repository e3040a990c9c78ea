//! gpkg-1 (GLEP 78) reader.
//!
//! [`GpkgReader::open`] verifies everything before returning:
//!
//! 1. one streaming pass over the outer tar: member names, types, top
//!    directory, duplicates; SHA512 and BLAKE2B of every member while it
//!    streams (only the Manifest and `.sig` members, a few KiB, are kept);
//! 2. member order (`gpkg-1`, `metadata.tar[.ext]` (`.sig`),
//!    `image.tar[.ext]` (`.sig`), `Manifest`), presence of every part;
//! 3. the Manifest: signature (clear-signed) per [`SignaturePolicy`], then
//!    every member but itself listed with the right size and both hashes, and
//!    nothing listed that is absent;
//! 4. detached signatures of the metadata and image archives (a positional
//!    re-read of those members, streamed into the verifier);
//! 5. the metadata archive (compression checked against its magic bytes);
//! 6. the top directory against the file name (see [`BasenameCheck`]);
//! 7. unless [`VerifyOptions::skip_image_prescan`]: one decompression of the
//!    image with every entry checked and the bomb limits enforced.
//!
//! [`GpkgReader::for_each_image_entry`] then decompresses the image again
//! and streams the entries, hashing the stored bytes once more: if the file
//! changed since `open`, the call ends with
//! [`ErrorKind::ChangedSinceVerified`] (after the entries were handed out;
//! the caller must then discard what it extracted).

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::compress::{looks_like_tar, Compression};
use crate::error::{show, Error, ErrorKind, Result};
use crate::image::{run_image, ImageEntry, ImageLayout, ImageSource, ImageSummary};
use crate::io::{
    hex, read_exact_at, Digests, FileSection, HashMode, HashingReader, HexDigests, LimitedReader,
    Meter,
};
use crate::keyring::{cleartext_unverified, SigError};
use crate::manifest::{self, ManifestEntry};
use crate::metadata::{read_metadata_tar, value_str, Metadata};
use crate::options::{BasenameCheck, SignaturePolicy, VerifyOptions};
use crate::tarwalk::{self, TarEntry};

/// Largest Manifest accepted.
const MAX_MANIFEST: u64 = 1 << 20;
/// Largest `.sig` member accepted.
const MAX_SIGNATURE: u64 = 64 << 10;
/// More members than a gpkg-1 can have (6) is refused early.
const MAX_MEMBERS: usize = 16;

/// What a container member is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberRole {
    /// `gpkg-1`.
    Version,
    /// `metadata.tar[.ext]`.
    Metadata(Compression),
    /// `metadata.tar[.ext].sig`.
    MetadataSig,
    /// `image.tar[.ext]`.
    Image(Compression),
    /// `image.tar[.ext].sig`.
    ImageSig,
    /// `Manifest`.
    Manifest,
}

impl MemberRole {
    /// The compression of a metadata or image archive (`None` otherwise).
    pub fn compression(self) -> Compression {
        match self {
            MemberRole::Metadata(c) | MemberRole::Image(c) => c,
            _ => Compression::None,
        }
    }

    /// Classify a member file name (without the top directory).
    pub fn classify(file: &str) -> Option<MemberRole> {
        if file == "gpkg-1" {
            return Some(MemberRole::Version);
        }
        if file == "Manifest" {
            return Some(MemberRole::Manifest);
        }
        let (base, sig) = match file.strip_suffix(".sig") {
            Some(b) => (b, true),
            None => (file, false),
        };
        for (prefix, is_image) in [("metadata.tar", false), ("image.tar", true)] {
            if let Some(ext) = base.strip_prefix(prefix) {
                let c = Compression::from_extension(ext)?;
                return Some(match (is_image, sig) {
                    (false, false) => MemberRole::Metadata(c),
                    (false, true) => MemberRole::MetadataSig,
                    (true, false) => MemberRole::Image(c),
                    (true, true) => MemberRole::ImageSig,
                });
            }
        }
        None
    }
}

/// A member of the outer container.
#[derive(Clone)]
pub struct Member {
    /// File name without the top directory.
    pub name: String,
    /// What it is.
    pub role: MemberRole,
    /// Offset of its data in the package file.
    pub offset: u64,
    /// Size in bytes.
    pub size: u64,
    digests: HexDigests,
    content: Option<Vec<u8>>,
}

/// A verified gpkg-1 package.
#[derive(Debug)]
pub struct GpkgReader {
    path: PathBuf,
    file: File,
    basename: String,
    members: Vec<Member>,
    metadata_idx: usize,
    image_idx: usize,
    manifest: Vec<ManifestEntry>,
    metadata: Metadata,
    signers: Vec<String>,
    signed: bool,
    size_key: Option<u64>,
    summary: Option<ImageSummary>,
    opts: VerifyOptions,
}

impl std::fmt::Debug for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Member")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("offset", &self.offset)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

type Fail = (Option<String>, ErrorKind);

fn sig_error(e: SigError) -> ErrorKind {
    match e {
        SigError::Malformed(reason) | SigError::Bad(reason) => ErrorKind::SignatureBad { reason },
        SigError::Untrusted(reason) => ErrorKind::SignatureUntrusted { reason },
    }
}

fn is_build_id_of(s: &str, pf: &str) -> bool {
    s == pf
        || s.strip_prefix(pf)
            .and_then(|r| r.strip_prefix('-'))
            .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
}

fn strip_build_id(s: &str) -> Option<&str> {
    let (base, id) = s.rsplit_once('-')?;
    (!id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())).then_some(base)
}

/// Check the top directory against the file name (see [`BasenameCheck`]).
pub(crate) fn check_basename(
    path: &Path,
    top: &str,
    pf: Option<&str>,
    check: &BasenameCheck,
) -> std::result::Result<(), ErrorKind> {
    let mismatch = |expected: &str| ErrorKind::BasenameMismatch {
        found: top.to_owned(),
        expected: expected.to_owned(),
    };
    match check {
        BasenameCheck::Any => Ok(()),
        BasenameCheck::Expected(b) if b == top => Ok(()),
        BasenameCheck::Expected(b) => Err(mismatch(b)),
        BasenameCheck::FileName => {
            let Some(stem) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".gpkg.tar"))
            else {
                return Ok(());
            };
            let ok = top == stem
                || match pf {
                    Some(pf) => is_build_id_of(top, pf) && is_build_id_of(stem, pf),
                    None => strip_build_id(stem) == Some(top) || strip_build_id(top) == Some(stem),
                };
            if ok {
                Ok(())
            } else {
                Err(mismatch(stem))
            }
        }
    }
}

/// Check that the first bytes of a member agree with its extension.
pub(crate) fn check_compression(
    declared: Compression,
    head: &[u8],
) -> std::result::Result<(), ErrorKind> {
    if !declared.is_supported() {
        return Err(ErrorKind::UnsupportedCompression {
            name: declared.name(),
        });
    }
    let probed = Compression::probe(head);
    match (declared, probed) {
        (Compression::None, None) if looks_like_tar(head) => Ok(()),
        (Compression::None, None) => Err(ErrorKind::UnrecognisedCompression {
            magic: hex(&head[..head.len().min(8)]),
        }),
        (d, Some(p)) if d == p => Ok(()),
        (d, p) => Err(ErrorKind::CompressionMismatch {
            by_name: d.name(),
            by_magic: match p {
                Some(p) => p.name(),
                None if looks_like_tar(head) => "an uncompressed tar",
                None => "unrecognised",
            },
        }),
    }
}

/// Read up to 512 bytes at the start of a member.
fn head(file: &File, offset: u64, size: u64) -> std::io::Result<Vec<u8>> {
    let n = usize::try_from(size.min(512)).unwrap_or(512);
    let mut buf = vec![0u8; n];
    read_exact_at(file, &mut buf, offset)?;
    Ok(buf)
}

impl GpkgReader {
    /// Open and verify a `.gpkg.tar` (see the module documentation for what
    /// is checked).
    pub fn open(path: impl AsRef<Path>, opts: &VerifyOptions) -> Result<GpkgReader> {
        let path = path.as_ref();
        let e = |member: Option<&str>, kind: ErrorKind| Error::new(path, member, kind);
        let file = File::open(path).map_err(|source| {
            e(
                None,
                ErrorKind::Io {
                    op: "open the package",
                    source,
                },
            )
        })?;
        let file_len = file
            .metadata()
            .map_err(|source| {
                e(
                    None,
                    ErrorKind::Io {
                        op: "stat the package",
                        source,
                    },
                )
            })?
            .len();

        // 1. The outer tar, hashed while it streams.
        let (top, members) =
            scan_container(&file, file_len).map_err(|(m, k)| e(m.as_deref(), k))?;
        let Some(top) = top else {
            return Err(e(None, ErrorKind::MissingGpkgVersion));
        };

        // 2. Structure.
        let find = |pred: &dyn Fn(MemberRole) -> bool| members.iter().position(|m| pred(m.role));
        if find(&|r| r == MemberRole::Version).is_none() {
            return Err(e(None, ErrorKind::MissingGpkgVersion));
        }
        let Some(manifest_idx) = find(&|r| r == MemberRole::Manifest) else {
            return Err(e(None, ErrorKind::MissingManifest));
        };
        let metadata_idx = find(&|r| matches!(r, MemberRole::Metadata(_))).ok_or_else(|| {
            e(
                None,
                ErrorKind::MissingMember {
                    what: "metadata.tar[.ext]",
                },
            )
        })?;
        let image_idx = find(&|r| matches!(r, MemberRole::Image(_))).ok_or_else(|| {
            e(
                None,
                ErrorKind::MissingMember {
                    what: "image.tar[.ext]",
                },
            )
        })?;
        let mut expected: Vec<String> = vec!["gpkg-1".into()];
        for (idx, sig_role) in [
            (metadata_idx, MemberRole::MetadataSig),
            (image_idx, MemberRole::ImageSig),
        ] {
            let name = members[idx].name.clone();
            let sig_name = format!("{name}.sig");
            expected.push(name);
            if let Some(s) = members.iter().find(|m| m.role == sig_role) {
                if s.name != sig_name {
                    return Err(e(
                        Some(&s.name),
                        ErrorKind::OrphanSignature {
                            name: s.name.clone(),
                        },
                    ));
                }
                expected.push(sig_name);
            }
        }
        expected.push("Manifest".into());
        for (i, m) in members.iter().enumerate() {
            if expected.get(i) != Some(&m.name) {
                return Err(e(
                    Some(&m.name),
                    ErrorKind::MemberOrder {
                        name: m.name.clone(),
                        expected: match expected.get(i) {
                            Some(x) if i == 0 => format!("{x} first"),
                            Some(x) => format!("{x} at position {}", i + 1),
                            None => "no further member".into(),
                        },
                    },
                ));
            }
        }

        // 3. The Manifest and its signature.
        let mf = |kind| e(Some("Manifest"), kind);
        let manifest_bytes = members[manifest_idx].content.clone().unwrap_or_default();
        let text = String::from_utf8(manifest_bytes).map_err(|_| {
            mf(ErrorKind::ManifestSyntax {
                line: 0,
                reason: "not UTF-8".into(),
            })
        })?;
        let has_sig_members = members
            .iter()
            .any(|m| matches!(m.role, MemberRole::MetadataSig | MemberRole::ImageSig));
        let manifest_signed = text.contains("-----BEGIN PGP SIGNATURE-----");
        let signed = has_sig_members || manifest_signed;
        let verify = match opts.signature {
            SignaturePolicy::Required => true,
            SignaturePolicy::IfPresent => signed,
            SignaturePolicy::Ignore => false,
        };
        let mut signers = Vec::new();
        let payload = if verify {
            // A missing signature first: "no keyring" claims the package is signed.
            if !manifest_signed {
                return Err(mf(ErrorKind::SignatureMissing {
                    what: "the Manifest is not clear-signed".into(),
                }));
            }
            let keyring = opts
                .keyring
                .as_deref()
                .ok_or_else(|| mf(ErrorKind::NoKeyring))?;
            let (payload, who) = keyring
                .verify_cleartext(&text)
                .map_err(|err| mf(sig_error(err)))?;
            signers.extend(who);
            payload
        } else if manifest_signed {
            cleartext_unverified(&text).map_err(|err| {
                mf(ErrorKind::ManifestSyntax {
                    line: 0,
                    reason: match err {
                        SigError::Malformed(r) | SigError::Bad(r) | SigError::Untrusted(r) => r,
                    },
                })
            })?
        } else {
            text
        };
        let manifest = manifest::parse(&payload).map_err(mf)?;
        if manifest.iter().any(|m| m.name == "Manifest") {
            return Err(mf(ErrorKind::ManifestSyntax {
                line: 0,
                reason: "the Manifest lists itself".into(),
            }));
        }
        for m in members.iter().filter(|m| m.role != MemberRole::Manifest) {
            let me = |kind| e(Some(&m.name), kind);
            let Some(entry) = manifest.iter().find(|x| x.name == m.name) else {
                return Err(me(ErrorKind::NotInManifest {
                    name: m.name.clone(),
                }));
            };
            if entry.size != m.size {
                return Err(me(ErrorKind::SizeMismatch {
                    expected: entry.size,
                    actual: m.size,
                }));
            }
            for (algo, want, have) in [
                ("SHA512", &entry.sha512, &m.digests.sha512),
                ("BLAKE2B", &entry.blake2b, &m.digests.blake2b),
            ] {
                if want != have {
                    return Err(me(ErrorKind::HashMismatch {
                        algo,
                        expected: want.clone(),
                        actual: have.clone(),
                    }));
                }
            }
        }
        let missing: Vec<String> = manifest
            .iter()
            .filter(|x| !members.iter().any(|m| m.name == x.name))
            .map(|x| x.name.clone())
            .collect();
        if !missing.is_empty() {
            return Err(mf(ErrorKind::ManifestListsMissing { names: missing }));
        }

        // 4. Detached signatures of the data members.
        if verify {
            let keyring = opts
                .keyring
                .as_deref()
                .ok_or_else(|| mf(ErrorKind::NoKeyring))?;
            for (idx, sig_role) in [
                (metadata_idx, MemberRole::MetadataSig),
                (image_idx, MemberRole::ImageSig),
            ] {
                let m = &members[idx];
                let Some(sig) = members.iter().find(|s| s.role == sig_role) else {
                    return Err(e(
                        Some(&m.name),
                        ErrorKind::SignatureMissing {
                            what: format!("{} has no {}.sig", m.name, m.name),
                        },
                    ));
                };
                let who = keyring
                    .verify_detached(sig.content.as_deref().unwrap_or_default(), || {
                        Ok(BufReader::with_capacity(
                            256 * 1024,
                            FileSection::new(&file, m.offset, m.size),
                        ))
                    })
                    .map_err(|err| e(Some(&sig.name), sig_error(err)))?;
                signers.extend(who);
            }
            signers.sort();
            signers.dedup();
        }

        // 5. Metadata.
        let md_member = &members[metadata_idx];
        let md_comp = md_member.role.compression();
        let me = |kind| e(Some(&md_member.name), kind);
        let md_head = head(&file, md_member.offset, md_member.size).map_err(|source| {
            me(ErrorKind::Io {
                op: "read the package",
                source,
            })
        })?;
        check_compression(md_comp, &md_head).map_err(me)?;
        // Hashed again while read: the bytes parsed are the bytes verified.
        let mut hashing = HashingReader::new(
            FileSection::new(&file, md_member.offset, md_member.size),
            HashMode::Blake2b,
        );
        let metadata = read_metadata_tar(&mut hashing, md_comp, &opts.limits).map_err(me)?;
        let (again, _) = hashing.finish().map_err(|source| {
            me(ErrorKind::Io {
                op: "read the package",
                source,
            })
        })?;
        if let Some(algo) = again.differs(&md_member.digests) {
            return Err(me(ErrorKind::ChangedSinceVerified { algo }));
        }

        // 6. Top directory vs file name.
        check_basename(path, &top, value_str(&metadata, "PF"), &opts.basename)
            .map_err(|k| e(None, k))?;

        let size_key = value_str(&metadata, "SIZE").and_then(|s| s.parse::<u64>().ok());
        let mut reader = GpkgReader {
            path: path.to_path_buf(),
            file,
            basename: top,
            members,
            metadata_idx,
            image_idx,
            manifest,
            metadata,
            signers,
            signed,
            size_key,
            summary: None,
            opts: opts.clone(),
        };

        // 7. Image pre-scan.
        let im = &reader.members[reader.image_idx];
        let im_comp = im.role.compression();
        let im_head = head(&reader.file, im.offset, im.size).map_err(|source| {
            e(
                Some(&im.name),
                ErrorKind::Io {
                    op: "read the package",
                    source,
                },
            )
        })?;
        check_compression(im_comp, &im_head).map_err(|k| e(Some(&im.name), k))?;
        if !opts.skip_image_prescan {
            let summary = reader.run(None::<fn(&mut ImageEntry<'_>) -> Result<()>>)?;
            reader.summary = Some(summary);
        }
        Ok(reader)
    }

    fn image_source(&self) -> ImageSource<'_> {
        let im = &self.members[self.image_idx];
        let compression = im.role.compression();
        ImageSource {
            file: &self.file,
            path: &self.path,
            member: &im.name,
            start: im.offset,
            len: im.size,
            compression,
            layout: ImageLayout::Gpkg,
            size_key: self.size_key,
        }
    }

    fn run<E, F>(&self, visit: Option<F>) -> std::result::Result<ImageSummary, E>
    where
        E: From<Error>,
        F: FnMut(&mut ImageEntry<'_>) -> std::result::Result<(), E>,
    {
        let src = self.image_source();
        // The pre-scan is not hashed (every pass re-checks every entry, and
        // the stream that hands entries out re-hashes the stored bytes).
        let mode = if visit.is_some() {
            HashMode::Blake2b
        } else {
            HashMode::None
        };
        let (summary, digests) = run_image(&src, &self.opts, visit, mode)?;
        let im = &self.members[self.image_idx];
        if let Some(algo) = digests.differs(&im.digests) {
            return Err(E::from(Error::new(
                &self.path,
                Some(&im.name),
                ErrorKind::ChangedSinceVerified { algo },
            )));
        }
        Ok(summary)
    }

    /// Stream the image entries, in archive order, to `f`. Every entry is
    /// checked (again) before it is handed out; stop early by returning an
    /// error from `f`. Ends with an error if the file changed since `open`.
    pub fn for_each_image_entry<E, F>(&self, f: F) -> std::result::Result<ImageSummary, E>
    where
        E: From<Error>,
        F: FnMut(&mut ImageEntry<'_>) -> std::result::Result<(), E>,
    {
        self.run(Some(f))
    }

    /// The package file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The container's top directory (`PF` or `PF-BUILD_ID`).
    pub fn basename(&self) -> &str {
        &self.basename
    }

    /// The container members, in order.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// The verified Manifest entries.
    pub fn manifest(&self) -> &[ManifestEntry] {
        &self.manifest
    }

    /// The metadata (`metadata/<KEY>` files of the metadata archive).
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// Compression of the metadata archive.
    pub fn metadata_compression(&self) -> Compression {
        self.members[self.metadata_idx].role.compression()
    }

    /// Compression of the image archive.
    pub fn image_compression(&self) -> Compression {
        self.image_source().compression
    }

    /// Does the package carry signatures (a `.sig` member or a clear-signed
    /// Manifest)?
    pub fn is_signed(&self) -> bool {
        self.signed
    }

    /// Fingerprints of the primary keys whose signatures were verified
    /// (empty when nothing was verified).
    pub fn signers(&self) -> &[String] {
        &self.signers
    }

    /// Counts from the image pre-scan (`None` with
    /// [`VerifyOptions::skip_image_prescan`]).
    pub fn image_summary(&self) -> Option<&ImageSummary> {
        self.summary.as_ref()
    }

    /// The package's `category/PF` from the CATEGORY and PF metadata.
    pub fn cpv(&self) -> Result<atom::Cpv> {
        crate::cpv_from_metadata(&self.path, &self.metadata)
    }
}

/// Pass over the outer tar: names, types, top directory, duplicates, and
/// hashes of every member.
fn scan_container(
    file: &File,
    file_len: u64,
) -> std::result::Result<(Option<String>, Vec<Member>), Fail> {
    let meter = Rc::new(Meter::default());
    let limited = LimitedReader::new(
        FileSection::new(file, 0, file_len),
        meter.clone(),
        u64::MAX,
        u64::MAX,
        u64::MAX,
    );
    let mut stream = BufReader::with_capacity(256 * 1024, limited);
    let mut members: Vec<Member> = Vec::new();
    let mut top: Option<String> = None;
    let r = tarwalk::walk(
        &mut stream,
        |te: &TarEntry, data: &mut crate::io::ExactReader<'_>| {
            let fail = |member: Option<String>, kind| crate::image::Flow::Caller((member, kind));
            let Ok(name) = String::from_utf8(te.name.clone()) else {
                return Err(fail(
                    None,
                    ErrorKind::BadMemberName {
                        name: show(&te.name),
                    },
                ));
            };
            let Some((dir, file_name)) = name.split_once('/').filter(|(d, f)| {
                !d.is_empty() && !f.is_empty() && !f.contains('/') && *d != "." && *d != ".."
            }) else {
                return Err(fail(None, ErrorKind::BadMemberName { name }));
            };
            if !matches!(te.typeflag, b'0' | b'\0' | b'7') {
                return Err(fail(None, ErrorKind::BadMemberType { name }));
            }
            match &top {
                None => top = Some(dir.to_owned()),
                Some(t) if t == dir => {}
                Some(t) => {
                    return Err(fail(
                        None,
                        ErrorKind::MultipleTopDirs {
                            first: t.clone(),
                            other: dir.to_owned(),
                        },
                    ))
                }
            }
            if members.iter().any(|m| m.name == file_name) {
                return Err(fail(
                    Some(file_name.to_owned()),
                    ErrorKind::DuplicateMember {
                        name: file_name.to_owned(),
                    },
                ));
            }
            let Some(role) = MemberRole::classify(file_name) else {
                return Err(fail(
                    Some(file_name.to_owned()),
                    ErrorKind::UnknownMember {
                        name: file_name.to_owned(),
                    },
                ));
            };
            let same_role = members.iter().any(|m| {
                m.role == role
                    || matches!(
                        (m.role, role),
                        (MemberRole::Metadata(_), MemberRole::Metadata(_))
                    )
                    || matches!((m.role, role), (MemberRole::Image(_), MemberRole::Image(_)))
            });
            if same_role || members.len() >= MAX_MEMBERS {
                return Err(fail(
                    Some(file_name.to_owned()),
                    ErrorKind::DuplicateMember {
                        name: file_name.to_owned(),
                    },
                ));
            }
            let keep = match role {
                MemberRole::Manifest => Some(MAX_MANIFEST),
                MemberRole::MetadataSig | MemberRole::ImageSig => Some(MAX_SIGNATURE),
                _ => None,
            };
            if let Some(limit) = keep {
                if te.size > limit {
                    return Err(fail(
                        Some(file_name.to_owned()),
                        ErrorKind::MemberTooLarge { limit },
                    ));
                }
            }
            let mut digests = Digests::default();
            let mut content =
                keep.map(|_| Vec::with_capacity(usize::try_from(te.size).unwrap_or(0)));
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                let n = match data.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
                    // Name the member a truncated or unreadable file was cut in.
                    Err(err) => {
                        let kind = crate::image::walk_error_kind(
                            tarwalk::io_error(err),
                            &meter,
                            Compression::None,
                        );
                        return Err(fail(Some(file_name.to_owned()), kind));
                    }
                };
                digests.update(&buf[..n]);
                if let Some(c) = content.as_mut() {
                    c.extend_from_slice(&buf[..n]);
                }
            }
            members.push(Member {
                name: file_name.to_owned(),
                role,
                offset: te.data_pos,
                size: te.size,
                digests: digests.finish(),
                content,
            });
            Ok(())
        },
    );
    match r {
        Ok(()) => {}
        Err(crate::image::Flow::Walk(w)) => {
            let kind = crate::image::walk_error_kind(w, &meter, Compression::None);
            // Entry problems in the outer tar are container problems.
            let kind = match kind {
                ErrorKind::BadImageEntry { path, .. } => ErrorKind::BadMemberName { name: path },
                k => k,
            };
            return Err((None, kind));
        }
        Err(crate::image::Flow::Check(c)) => return Err((None, c.into())),
        Err(crate::image::Flow::Caller(f)) => return Err(f),
    }
    if members.is_empty() {
        return Err((None, ErrorKind::UnknownFormat));
    }
    Ok((top, members))
}

//! Errors. Every [`Error`] names the package file, the member of it involved
//! (when there is one) and, through [`ErrorKind::hint`], what the user can do.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// An error reading or verifying a binary package.
///
/// `Display` gives one line: `<file>: <member>: <what> (<what to do>)`.
#[derive(Debug)]
pub struct Error {
    path: PathBuf,
    member: Option<String>,
    kind: ErrorKind,
}

impl Error {
    pub(crate) fn new(path: &Path, member: Option<&str>, kind: ErrorKind) -> Error {
        Error {
            path: path.to_path_buf(),
            member: member.map(str::to_owned),
            kind,
        }
    }

    /// The package file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The member of the package the error is about: an outer gpkg member
    /// (`image.tar.zst`, `Manifest`, ...), `xpak` or the tar part of a tbz2.
    pub fn member(&self) -> Option<&str> {
        self.member.as_deref()
    }

    /// What went wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// Consume the error, keeping what went wrong.
    pub fn into_kind(self) -> ErrorKind {
        self.kind
    }

    /// What the user can do about it.
    pub fn hint(&self) -> &'static str {
        self.kind.hint()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(m) = &self.member {
            write!(f, ": {m}")?;
        }
        write!(f, ": {} ({})", self.kind, self.kind.hint())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.kind)
    }
}

/// Which bomb limit was hit (see [`crate::Limits`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LimitKind {
    /// More uncompressed bytes than [`crate::Limits::max_image_size`].
    TotalSize {
        /// The limit in bytes.
        limit: u64,
    },
    /// More file content than the metadata `SIZE` key (plus slack) allows.
    SizeKey {
        /// The `SIZE` value.
        size_key: u64,
        /// The limit derived from it.
        limit: u64,
    },
    /// Uncompressed/compressed ratio above [`crate::Limits::max_ratio`].
    Ratio {
        /// The limit.
        limit: u64,
    },
    /// More entries than [`crate::Limits::max_entries`].
    Entries {
        /// The limit.
        limit: u64,
    },
    /// More metadata than [`crate::Limits::max_metadata_size`].
    Metadata {
        /// The limit in bytes.
        limit: u64,
    },
    /// A tar extension header (long name, PAX record) above the internal cap.
    ExtensionHeader {
        /// The limit in bytes.
        limit: u64,
    },
}

impl fmt::Display for LimitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LimitKind::TotalSize { limit } => {
                write!(f, "more than {limit} bytes once uncompressed")
            }
            LimitKind::SizeKey { size_key, limit } => write!(
                f,
                "more file content than the package's SIZE ({size_key} bytes) allows ({limit} bytes)"
            ),
            LimitKind::Ratio { limit } => {
                write!(f, "expands more than {limit} times its compressed size")
            }
            LimitKind::Entries { limit } => write!(f, "more than {limit} entries"),
            LimitKind::Metadata { limit } => write!(f, "more than {limit} bytes of metadata"),
            LimitKind::ExtensionHeader { limit } => {
                write!(f, "a tar extension header larger than {limit} bytes")
            }
        }
    }
}

/// What went wrong. Paths inside archives are shown with control characters
/// escaped (once: the fields hold the escaped text, shown between quotes).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Reading the package file (or a caller's callback I/O) failed.
    #[error("cannot {op}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// Neither a gpkg nor an xpak package.
    #[error("not a Portage binary package (no gpkg-1 member, no XPAK trailer)")]
    UnknownFormat,
    /// The outer container (or an inner tar) is not a readable tar archive.
    #[error("malformed tar archive: {reason}")]
    Tar {
        /// Details.
        reason: String,
    },
    /// The file ends before the data its headers announce.
    #[error("truncated: {reason}")]
    Truncated {
        /// Details.
        reason: String,
    },
    /// Non-zero bytes after the end-of-archive marker (different tar
    /// readers would disagree about them).
    #[error("data after the end-of-archive marker")]
    DataAfterEnd,

    // ---- gpkg container ----
    /// No `gpkg-1` member.
    #[error("no gpkg-1 member: this is not a gpkg-1 package")]
    MissingGpkgVersion,
    /// A member name that is not `<basename>/<file>`.
    #[error("member name {name:?} is not <package-basename>/<file>")]
    BadMemberName {
        /// The name.
        name: String,
    },
    /// A container member that is not a regular file.
    #[error("member {name:?} is not a regular file")]
    BadMemberType {
        /// The name.
        name: String,
    },
    /// Members in more than one top directory.
    #[error("members in more than one top directory ({first:?} and {other:?})")]
    MultipleTopDirs {
        /// The first top directory seen.
        first: String,
        /// Another one.
        other: String,
    },
    /// The top directory does not match the file name (or the caller's
    /// expected basename).
    #[error("top directory {found:?} does not match the package basename {expected:?}")]
    BasenameMismatch {
        /// The top directory in the container.
        found: String,
        /// What the file name (or the caller) implies.
        expected: String,
    },
    /// A member whose name gpkg-1 does not allow.
    #[error("unexpected member {name:?} (allowed: gpkg-1, metadata.tar[.ext], image.tar[.ext], their .sig, Manifest)")]
    UnknownMember {
        /// The name.
        name: String,
    },
    /// The same member (or two metadata/image archives) twice.
    #[error("duplicate member {name:?}")]
    DuplicateMember {
        /// The name.
        name: String,
    },
    /// A required member is absent.
    #[error("no {what} member")]
    MissingMember {
        /// `metadata.tar[.ext]` or `image.tar[.ext]`.
        what: &'static str,
    },
    /// No `Manifest` member.
    #[error("no Manifest member")]
    MissingManifest,
    /// Members out of the order gpkg-1 requires.
    #[error("member {name:?} is out of order: expected {expected}")]
    MemberOrder {
        /// The member found at the position.
        name: String,
        /// What should be there.
        expected: String,
    },
    /// A Manifest or signature member too large to be plausible.
    #[error("member is larger than {limit} bytes")]
    MemberTooLarge {
        /// The limit.
        limit: u64,
    },
    /// A `.sig` member without the member it signs.
    #[error("signature {name:?} has no matching data member")]
    OrphanSignature {
        /// The name.
        name: String,
    },

    // ---- Manifest ----
    /// The Manifest cannot be parsed.
    #[error("malformed Manifest line {line}: {reason}")]
    ManifestSyntax {
        /// 1-based line number in the (signed) Manifest text; 0 for the whole file.
        line: usize,
        /// Details.
        reason: String,
    },
    /// A container member the Manifest does not list.
    #[error("member {name:?} is not listed in the Manifest")]
    NotInManifest {
        /// The member.
        name: String,
    },
    /// The Manifest lists members the container does not have.
    #[error("the Manifest lists members that are missing: {}", names.join(", "))]
    ManifestListsMissing {
        /// The missing members.
        names: Vec<String>,
    },
    /// Size differs from the Manifest.
    #[error("size {actual} differs from the Manifest's {expected}")]
    SizeMismatch {
        /// The Manifest's size.
        expected: u64,
        /// The member's size.
        actual: u64,
    },
    /// A hash differs from the Manifest.
    #[error("{algo} hash mismatch: Manifest says {expected}, data has {actual}")]
    HashMismatch {
        /// `SHA512` or `BLAKE2B`.
        algo: &'static str,
        /// The Manifest's value.
        expected: String,
        /// The computed value.
        actual: String,
    },
    /// The member changed between verification and extraction.
    #[error("the file changed after it was verified ({algo} of the data read now differs)")]
    ChangedSinceVerified {
        /// The hash that differs.
        algo: &'static str,
    },

    // ---- signatures ----
    /// A signature is required but absent.
    #[error("signature missing: {what}")]
    SignatureMissing {
        /// What is not signed.
        what: String,
    },
    /// A signature does not verify (tampered data, wrong signature).
    #[error("bad signature: {reason}")]
    SignatureBad {
        /// Details.
        reason: String,
    },
    /// Signed by a key that is not in the trusted keyring (or is revoked or
    /// expired there).
    #[error("signature not trusted: {reason}")]
    SignatureUntrusted {
        /// Details (the issuer key id or fingerprint).
        reason: String,
    },
    /// Signatures must be verified but no keyring was given.
    #[error("the package is signed but no trusted keyring was configured")]
    NoKeyring,

    // ---- compression ----
    /// A compression this crate cannot decode.
    #[error("unsupported compression {name}")]
    UnsupportedCompression {
        /// Portage's name (`lzip`, `lzop`, ...).
        name: &'static str,
    },
    /// The member's name and its first bytes disagree about its compression.
    #[error("named as {by_name} but its data is {by_magic}")]
    CompressionMismatch {
        /// From the extension.
        by_name: &'static str,
        /// From the magic bytes.
        by_magic: &'static str,
    },
    /// The data starts with no known compression magic and is not a tar.
    #[error("unrecognised compression (first bytes {magic})")]
    UnrecognisedCompression {
        /// The first bytes, hex.
        magic: String,
    },
    /// The decompressor refused the data.
    #[error("cannot decompress ({compression}): {source}")]
    Decompress {
        /// The compression.
        compression: &'static str,
        /// The decoder's error.
        #[source]
        source: io::Error,
    },
    /// A decompression-bomb limit was hit.
    #[error("refused: {limit}")]
    Limit {
        /// Which limit.
        limit: LimitKind,
    },

    // ---- metadata ----
    /// A metadata entry that is not a plain `metadata/<KEY>` regular file.
    #[error("bad metadata entry \"{name}\": {reason}")]
    BadMetadataEntry {
        /// The tar name (or xpak key).
        name: String,
        /// Details.
        reason: &'static str,
    },
    /// A metadata key needed for the requested information is absent.
    #[error("metadata key {key} is missing")]
    MissingMetadataKey {
        /// The key.
        key: &'static str,
    },
    /// CATEGORY/PF do not form a valid CPV.
    #[error("CATEGORY and PF do not form a valid CPV {cpv:?}: {reason}")]
    BadCpv {
        /// The CPV string.
        cpv: String,
        /// The parser's reason.
        reason: String,
    },

    // ---- image ----
    /// A hostile or unsupported image entry.
    #[error("image entry \"{path}\": {problem}")]
    BadImageEntry {
        /// The name in the tar, escaped.
        path: String,
        /// What is wrong.
        problem: ImageProblem,
    },

    // ---- xpak ----
    /// The XPAK trailer or block is malformed.
    #[error("malformed XPAK: {reason}")]
    Xpak {
        /// Details.
        reason: String,
    },
}

/// What is wrong with one image entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ImageProblem {
    /// Absolute name.
    #[error("absolute path")]
    Absolute,
    /// A `..` component.
    #[error("'..' path component")]
    DotDot,
    /// NUL, CR or LF in a name or link target (CONTENTS cannot record them).
    #[error("NUL, CR or LF in the name or link target")]
    BadCharacter,
    /// Empty name.
    #[error("empty name")]
    EmptyName,
    /// Not under the image prefix (`image/` in gpkg).
    #[error("outside the image/ directory")]
    OutsidePrefix,
    /// The same path twice (after collapsing `//` and `./`).
    #[error("duplicate path")]
    Duplicate,
    /// A non-directory entry at a path that earlier entries used as a directory.
    #[error("replaces a directory that earlier entries were placed in")]
    ReplacesDirectory,
    /// An ancestor is a symlink in this archive: the entry would be written through it.
    #[error("would be written through the symlink \"{via}\"")]
    ThroughSymlink {
        /// The symlink.
        via: String,
    },
    /// An ancestor is a non-directory in this archive.
    #[error("parent \"{parent}\" is not a directory")]
    ParentNotDirectory {
        /// The parent.
        parent: String,
    },
    /// The image root is not a directory.
    #[error("the image root is not a directory")]
    RootNotDirectory,
    /// Hard link to a path not seen earlier in the archive.
    #[error("hard link to \"{target}\", which is not an earlier entry")]
    HardlinkForward {
        /// The target.
        target: String,
    },
    /// Hard link whose target is outside the image.
    #[error("hard link to \"{target}\", outside the image")]
    HardlinkOutside {
        /// The target.
        target: String,
    },
    /// Hard link to a directory.
    #[error("hard link to the directory \"{target}\"")]
    HardlinkToDirectory {
        /// The target.
        target: String,
    },
    /// Empty symlink target.
    #[error("symlink with an empty target")]
    EmptySymlink,
    /// Character or block device while devices are not allowed.
    #[error("device node (allow_devices is off)")]
    Device,
    /// An entry type this reader does not accept.
    #[error("unsupported tar entry type {typeflag:?}")]
    UnsupportedType {
        /// The type flag byte, as a char.
        typeflag: char,
    },
    /// A non-regular entry that carries data (tar readers disagree on it).
    #[error("a {kind} entry with {size} bytes of data")]
    DataOnNonFile {
        /// The entry kind.
        kind: &'static str,
        /// The size field.
        size: u64,
    },
    /// A PAX header that would change the entry's data size (unsupported).
    #[error("PAX size {pax} differs from the header size {header}")]
    PaxSize {
        /// PAX value.
        pax: u64,
        /// Header value.
        header: u64,
    },
    /// Malformed PAX records.
    #[error("malformed PAX header: {reason}")]
    BadPax {
        /// Details.
        reason: String,
    },
}

impl ErrorKind {
    /// What the user can do.
    pub fn hint(&self) -> &'static str {
        use ErrorKind::*;
        match self {
            Io { .. } => "check that the file exists, is readable and that the disk is healthy",
            UnknownFormat => "only gpkg-1 (.gpkg.tar) and xpak (.tbz2/.xpak) packages can be read",
            Tar { .. } | Truncated { .. } | DataAfterEnd | Xpak { .. } => {
                "the package is damaged or incomplete: download or build it again"
            }
            MissingGpkgVersion | BadMemberName { .. } | BadMemberType { .. }
            | MultipleTopDirs { .. } | UnknownMember { .. } | DuplicateMember { .. }
            | MissingMember { .. } | MissingManifest | MemberOrder { .. }
            | OrphanSignature { .. } | MemberTooLarge { .. } | ManifestSyntax { .. } | NotInManifest { .. }
            | ManifestListsMissing { .. } => {
                "the container is not a valid gpkg-1 package (damaged or tampered with): download or build it again"
            }
            BasenameMismatch { .. } => {
                "the file was renamed or its contents replaced: rename it back to <PF>.gpkg.tar or <PF>-<BUILD_ID>.gpkg.tar, or rebuild it"
            }
            SizeMismatch { .. } | HashMismatch { .. } => {
                "the package is corrupt or was tampered with: download or build it again"
            }
            ChangedSinceVerified { .. } => {
                "something modified the package file while it was being read: discard what was extracted and retry"
            }
            SignatureMissing { .. } => {
                "signatures are required (binpkg-request-signature): use a signed package, or relax the signature policy"
            }
            SignatureBad { .. } => {
                "the package was modified after signing or the signature is damaged: do not install it; download it again from a trusted source"
            }
            SignatureUntrusted { .. } => {
                "import the signer's public key into the trusted keyring (e.g. with getuto) if you trust it, or use the ignore policy (binpkg-ignore-signature)"
            }
            NoKeyring => {
                "configure the trusted keyring (armoured public keys), or use the ignore policy (binpkg-ignore-signature)"
            }
            UnsupportedCompression { .. } => {
                "rebuild the package with BINPKG_COMPRESS=zstd (or xz, bzip2, gzip, lz4, none)"
            }
            CompressionMismatch { .. } | UnrecognisedCompression { .. } | Decompress { .. } => {
                "the package is damaged or was written by a broken tool: download or build it again"
            }
            Limit { .. } => {
                "the package may be a decompression bomb; do not install it (a library caller can raise binpkg::Limits for a legitimate package)"
            }
            BadMetadataEntry { .. } | MissingMetadataKey { .. } | BadCpv { .. } => {
                "the package metadata is damaged: rebuild the package"
            }
            BadImageEntry { problem, .. } => match problem {
                ImageProblem::Device => {
                    "the package installs device nodes; if that is intended, allow them (vartree install --allow-devices; VerifyOptions::allow_devices)"
                }
                ImageProblem::UnsupportedType { .. }
                | ImageProblem::PaxSize { .. } => {
                    "the image uses a tar feature this reader does not support: rebuild the package with Portage"
                }
                _ => "the image is malformed or hostile: do not install it",
            },
        }
    }
}

/// Show bytes from an archive for an error message: UTF-8 (lossy), with
/// control characters escaped.
pub(crate) fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(b)
        .chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

/// Shorthand used in this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

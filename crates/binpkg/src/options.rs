//! What to verify and which limits to enforce when opening a package.

use std::sync::Arc;

use crate::keyring::Keyring;

/// How OpenPGP signatures are treated (gpkg only; xpak cannot be signed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SignaturePolicy {
    /// `FEATURES=binpkg-request-signature` (and binrepos.conf
    /// `verify-signature = true`): the Manifest must be clear-signed and every
    /// data member must have a detached `.sig`, all made by a key of the
    /// keyring. Unsigned packages (and every xpak) are refused.
    Required,
    /// Portage's default: when the package carries any signature (a `.sig`
    /// member or a clear-signed Manifest), everything is verified as for
    /// [`Required`](Self::Required); unsigned packages are accepted.
    #[default]
    IfPresent,
    /// `FEATURES=binpkg-ignore-signature`: signatures are not checked (the
    /// Manifest's hashes still are).
    Ignore,
}

/// How the container's top directory is checked against the package's name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum BasenameCheck {
    /// From the file name: with `F` the file name less `.gpkg.tar`, the top
    /// directory must be `F`; otherwise both `F` and the top directory must be
    /// `PF` or `PF-<BUILD_ID>` (digits) with the metadata's `PF` (Portage's
    /// multi-instance naming: quickpkg writes `PF/` into `PF-N.gpkg.tar`, a
    /// re-numbered remote package keeps its old `PF-M/`). Files whose name does
    /// not end in `.gpkg.tar` (e.g. Portage's temporary files) are not checked.
    #[default]
    FileName,
    /// The top directory must be exactly this (`PF` or `PF-BUILD_ID`).
    Expected(String),
    /// Any single top directory (Portage itself only warns on a mismatch).
    Any,
}

/// Decompression-bomb and resource limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Maximum bytes of the uncompressed image tar stream (headers included).
    pub max_image_size: u64,
    /// Check the total file content of the image against the metadata `SIZE`
    /// key (Portage: the sum of regular-file sizes in `${D}`, hardlinks once).
    pub check_size_key: bool,
    /// Slack allowed above `SIZE` (bytes), for quickpkg'd packages whose
    /// files changed since they were built.
    pub size_key_slack: u64,
    /// Maximum ratio uncompressed/compressed of an archive member, enforced
    /// once more than [`ratio_floor`](Self::ratio_floor) bytes came out.
    pub max_ratio: u64,
    /// Uncompressed bytes below which the ratio is not enforced.
    pub ratio_floor: u64,
    /// Maximum number of image entries.
    pub max_entries: u64,
    /// Maximum bytes of metadata (the uncompressed metadata tar, or the xpak block).
    pub max_metadata_size: u64,
    /// Memory the xz decoder may use, and the largest zstd window accepted
    /// (rounded down to a power of two, at most 2 GiB as with Portage's
    /// `zstd -d --long=31`).
    pub max_decoder_memory: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_image_size: 64 << 30,
            check_size_key: true,
            size_key_slack: 64 << 20,
            max_ratio: 1000,
            ratio_floor: 256 << 20,
            max_entries: 5_000_000,
            max_metadata_size: 64 << 20,
            max_decoder_memory: 2 << 30,
        }
    }
}

/// Options for [`crate::open`], [`crate::gpkg::GpkgReader::open`] and
/// [`crate::xpak::XpakReader::open`].
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Signature policy (default [`SignaturePolicy::IfPresent`]).
    pub signature: SignaturePolicy,
    /// The trusted keys. Every key in it is trusted (Portage: the keys that
    /// are fully or ultimately trusted in `BINPKG_GPG_VERIFY_GPG_HOME`).
    pub keyring: Option<Arc<Keyring>>,
    /// Top-directory check (default [`BasenameCheck::FileName`]).
    pub basename: BasenameCheck,
    /// Accept character and block devices in the image (default: refuse them).
    /// FIFOs are always accepted.
    pub allow_devices: bool,
    /// Resource limits.
    pub limits: Limits,
    /// Do not scan the whole image when opening. By default `open` decompresses
    /// the image once, checks every entry and enforces the limits, so that a
    /// hostile image is refused before the caller extracts anything. With this
    /// set, the same checks run only while the caller streams the entries: a
    /// bad entry is never handed out, but the entries before it already were
    /// (saves one decompression of the image).
    pub skip_image_prescan: bool,
}

impl VerifyOptions {
    /// Options with the given policy and keyring, everything else default.
    pub fn with_keyring(signature: SignaturePolicy, keyring: Keyring) -> VerifyOptions {
        VerifyOptions {
            signature,
            keyring: Some(Arc::new(keyring)),
            ..VerifyOptions::default()
        }
    }
}

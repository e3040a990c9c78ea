//! Errors: every one names the path (or package) and what was being done,
//! and [`Error::hint`] says what to do about it.

use std::io;
use std::path::PathBuf;

/// A package whose metadata Portage would refuse (or later ignore).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{cpv}: metadata {key} {reason}")]
pub struct InvalidMetadata {
    /// The package.
    pub cpv: String,
    /// The offending metadata key.
    pub key: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A filesystem operation failed.
    #[error("cannot {op} {}: {source} ({})", path.display(), io_hint(source))]
    Io {
        /// What was being done, e.g. `"create a temporary file in"`.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// Taking or releasing `PKGDIR/.Packages.portage_lockfile` failed.
    #[error(
        "{0} (check that PKGDIR is writable; a stuck lock is held by a running emerge or vartree)"
    )]
    Lock(#[from] vdb::lock::LockError),
    /// The package's metadata would make an invalid binary package.
    #[error("{0} (fix the package metadata; nothing was published)")]
    InvalidMetadata(#[from] InvalidMetadata),
    /// `publish` was given metadata for another package than `create_temp`.
    #[error("the package was created for {expected}, but published with metadata of {got} (pass the same CPV to create_temp and publish)")]
    CpvMismatch {
        /// The CPV given to `create_temp`.
        expected: String,
        /// The CPV in the metadata.
        got: String,
    },
    /// No free build id below the limit (every name taken).
    #[error("no free BUILD_ID for {cpv} in {} (remove old instances of the package)", dir.display())]
    BuildIdsExhausted {
        /// The package.
        cpv: String,
        /// Its directory.
        dir: PathBuf,
    },
    /// The package was published (its file is in PKGDIR, whole) but the
    /// index could not be (completely) updated: `Packages` was not replaced
    /// (single-instance layout only; a new multi-instance file is removed
    /// again instead), or it was and `Packages.gz` or the final fsync failed.
    #[error("{path} was published, but the index was not (completely) updated: {source} (Portage re-indexes the package on its next run; fix the cause and publish again to refresh the index)", path = path.display())]
    IndexNotUpdated {
        /// The published package.
        path: PathBuf,
        /// Why the index write failed.
        #[source]
        source: Box<Error>,
    },
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// What to do about this error, in a few words.
    pub fn hint(&self) -> &'static str {
        match self {
            Error::Io { source, .. } => io_hint(source),
            Error::Lock(_) => "check that PKGDIR is writable",
            Error::InvalidMetadata(_) => "fix the package metadata",
            Error::CpvMismatch { .. } => "pass the same CPV to create_temp and publish",
            Error::BuildIdsExhausted { .. } => "remove old instances of the package",
            Error::IndexNotUpdated { .. } => "fix the cause and publish again",
        }
    }

    /// The underlying I/O error kind, if any.
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            Error::Io { source, .. } => Some(source.kind()),
            Error::Lock(e) => Some(e.kind()),
            Error::IndexNotUpdated { source, .. } => source.io_kind(),
            _ => None,
        }
    }
}

fn io_hint(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => "free some space on the PKGDIR filesystem",
        Some(libc::EACCES) | Some(libc::EPERM) => {
            "run as a user who may write PKGDIR, or fix its permissions"
        }
        Some(libc::EROFS) => "PKGDIR is on a read-only filesystem",
        Some(libc::ENOENT) => "a directory of PKGDIR vanished; check that nothing else removes it",
        _ => "check PKGDIR and the filesystem it is on",
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

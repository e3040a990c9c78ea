//! Errors of the merge engine. Each names the package or path involved and,
//! where there is one, what the user can do.

use std::io;
use std::path::PathBuf;

/// A path that collides with something already installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collision {
    /// The path (as CONTENTS records it).
    pub path: String,
    /// The installed packages owning it (empty: an orphan file).
    pub owners: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot {op} {path} (in ROOT): {source}")]
    Root {
        op: &'static str,
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("image entry {path}: cannot {op}: {source}")]
    ImageIo {
        op: &'static str,
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("image entry {path}: {reason}")]
    BadImage { path: String, reason: String },
    #[error("this package installs files whose names or symlink targets contain line breaks, which CONTENTS cannot record; nothing was merged: {}", paths.join(", "))]
    LineBreaks { paths: Vec<String> },
    #[error("build-info {}: {reason}", path.display())]
    BuildInfo { path: PathBuf, reason: String },
    #[error("{cpv}: file collisions with installed packages; nothing was merged.\n{}\nUninstall the owning package, or add the paths to COLLISION_IGNORE if this is intended.", format_collisions(.collisions))]
    Collisions {
        cpv: String,
        collisions: Vec<Collision>,
    },
    #[error("{cpv}: {path}: the package installs a symlink where ROOT has a directory, which PMS forbids; nothing was merged. Remove or move the directory first.")]
    SymlinkOverDirectory { cpv: String, path: String },
    #[error("{cpv}: two image paths reach the same live path {path} (through a symlinked directory) with different contents; nothing was merged.")]
    InternalCollision { cpv: String, path: String },
    #[error("{cpv} and the installed {blocked} block each other ({atom}); nothing was merged. Unmerge {blocked} first, or pass --replace {blocked} to hand its files over to {cpv} and unmerge it afterwards.")]
    Blocked {
        cpv: String,
        blocked: String,
        atom: String,
    },
    #[error("{cpv} and the installed {blocked} must not be installed together even for a moment (strong blocker {atom}); nothing was merged. Unmerge {blocked} first.")]
    StrongBlocker {
        cpv: String,
        blocked: String,
        atom: String,
    },
    #[error("{cpv}: --replace {atom}: {reason}")]
    BadReplace {
        cpv: String,
        atom: String,
        reason: String,
    },
    #[error("{cpv}: {what}; nothing was merged. Run the command again.")]
    Changed { cpv: String, what: String },
    #[error("EPREFIX {eprefix} does not exist in ROOT; nothing was merged. Check --eprefix, or create the prefix first.")]
    MissingEprefix { eprefix: String },
    #[error("{cpv}: the merge was committed but could not be completed: {source}. Fix the cause, then run `vartree recover` to finish it.")]
    Interrupted {
        cpv: String,
        #[source]
        source: Box<MergeError>,
    },
    #[error("{cpv}: interrupted by {name} before the commit point; everything staged was removed and nothing was merged", name = rootfs::signal::name(*sig))]
    Signal { cpv: String, sig: i32 },
    #[error("{cpv}: cannot write the binary package: {source}")]
    Pack {
        cpv: String,
        #[source]
        source: binpkg::WriteError,
    },
    #[error("cannot write the binary package: {0}")]
    Write(#[from] binpkg::WriteError),
    #[error("{cpv}: interrupted by {name}; no package was published", name = rootfs::signal::name(*sig))]
    PackSignal { cpv: String, sig: i32 },
    #[error("{reason}")]
    BinPkg { path: PathBuf, reason: String },
    #[error(transparent)]
    Vdb(#[from] vdb::db::VdbError),
    #[error("VDB lock: {0}")]
    Lock(#[from] vdb::lock::LockError),
}

fn format_collisions(c: &[Collision]) -> String {
    c.iter()
        .map(|c| {
            if c.owners.is_empty() {
                format!("  {} (not owned by any package)", c.path)
            } else {
                format!("  {} (owned by {})", c.path, c.owners.join(", "))
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

impl MergeError {
    pub fn image_io(op: &'static str, path: &[u8], source: io::Error) -> Self {
        MergeError::ImageIo {
            op,
            path: String::from_utf8_lossy(path).into_owned(),
            source,
        }
    }

    pub fn root_io(op: &'static str, path: &[u8], source: io::Error) -> Self {
        MergeError::Root {
            op,
            path: String::from_utf8_lossy(path).into_owned(),
            source,
        }
    }
}

impl From<binpkg::Error> for MergeError {
    fn from(e: binpkg::Error) -> Self {
        MergeError::BinPkg {
            path: e.path().to_owned(),
            reason: e.to_string(),
        }
    }
}

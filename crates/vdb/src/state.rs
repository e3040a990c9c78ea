//! The package manager's own state in ROOT, confined to ROOT.
//!
//! The VDB (`var/db/pkg`), its lock (`var/db/.pkg.portage_lockfile`),
//! vartree's journals and install staging (`var/db/.vartree`), the counter
//! (`var/cache/edb`) and the config memory (`var/lib/portage`) live under
//! EROOT. Like every path of a merge, they are resolved inside ROOT: a
//! symlink among their components is followed as if ROOT were `/`, as
//! under chroot (`ROOT/var -> /data/var` leads to `ROOT/data/var`, and
//! `ROOT/var/db -> ../../../elsewhere` to `ROOT/elsewhere`). So a hostile
//! symlink in ROOT can never make a state write, chmod, chown or unlink land
//! outside ROOT.
//!
//! Every writer gets its paths from [`StatePaths`], right before using them:
//!
//! * [`StatePaths::path`]: a path to read or to write into, every symlink
//!   followed (inside ROOT);
//! * [`StatePaths::entry`]: a path that is created, renamed, removed or
//!   locked: its last component is not followed (a symlink there is the
//!   entry itself, as `unlink`, `rename` and `rmdir` see it);
//! * [`StatePaths::create_dir`]: a directory, created inside ROOT where
//!   missing (by `mkdirat` in each parent), a symlink whose target is
//!   missing refused with an error naming it;
//! * [`StatePaths::check`]: what a mutating command runs before it touches
//!   anything: every state directory it needs exists inside ROOT or can be
//!   created there.
//!
//! The result is the host path of the canonical path inside ROOT (no
//! symlink, `.` or `..` below ROOT), checked against the host's own lookup
//! when it is made. The window that remains: a concurrent process that
//! replaces a directory of that path by a symlink between the resolution
//! and the `std::fs` call using it (see `docs/compat.md`, D37).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rootfs::root::{Resolve, Resolved, Root};

use crate::db::{join_root, normalize_eprefix, VdbError};

/// `var/db`, relative to EROOT: the VDB lock file's directory.
pub const VAR_DB: &str = "var/db";
/// `var/db/pkg`, relative to EROOT.
pub const VDB_DIR: &str = crate::db::VDB_PATH;
/// vartree's journals and install staging, relative to EROOT.
pub const VARTREE_DIR: &str = "var/db/.vartree";
/// The counter's directory, relative to EROOT.
pub const EDB_DIR: &str = "var/cache/edb";
/// The config memory's directory, relative to EROOT.
pub const PORTAGE_LIB_DIR: &str = "var/lib/portage";

/// Every state directory a command that changes the VDB may write to. As
/// Portage (which creates them all when it starts), such a command refuses
/// to start when one of them cannot be used inside ROOT.
pub const STATE_DIRS: [&str; 5] = [VAR_DB, VDB_DIR, VARTREE_DIR, EDB_DIR, PORTAGE_LIB_DIR];

/// ROOT, EPREFIX, and the resolution of paths under EROOT inside ROOT.
#[derive(Debug, Clone)]
pub struct StatePaths {
    root: PathBuf,
    eprefix: PathBuf,
    eroot: PathBuf,
    /// ROOT, opened once (`None` if it could not be: then every resolution
    /// fails with the reason).
    handle: Option<Arc<Root>>,
}

impl StatePaths {
    /// The state of `root` with `eprefix` (`""` for none).
    pub fn new(root: impl Into<PathBuf>, eprefix: impl AsRef<Path>) -> StatePaths {
        let root = root.into();
        let eprefix = normalize_eprefix(eprefix.as_ref());
        let eroot = join_root(&root, &eprefix);
        let handle = Root::open(&root).ok().map(Arc::new);
        StatePaths {
            root,
            eprefix,
            eroot,
            handle,
        }
    }

    /// ROOT.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `""` or `/prefix`.
    pub fn eprefix(&self) -> &Path {
        &self.eprefix
    }

    /// ROOT joined with EPREFIX, as given (for messages and for the values
    /// of configuration variables; not for file operations).
    pub fn eroot(&self) -> &Path {
        &self.eroot
    }

    /// `EROOT/rel` as written, symlinks unresolved: for messages.
    pub fn lexical(&self, rel: &str) -> PathBuf {
        let rel = rel.trim_start_matches('/');
        if rel.is_empty() {
            self.eroot.clone()
        } else {
            self.eroot.join(rel)
        }
    }

    fn inside(&self, rel: &str) -> Vec<u8> {
        let mut p = self.eprefix.as_os_str().as_encoded_bytes().to_vec();
        p.push(b'/');
        p.extend_from_slice(rel.trim_start_matches('/').as_bytes());
        p
    }

    /// Resolve `EROOT/rel` inside ROOT.
    pub fn resolve(&self, rel: &str, how: Resolve) -> Result<Resolved, VdbError> {
        let path = self.lexical(rel);
        let root = match &self.handle {
            Some(r) => r,
            None => {
                let e = Root::open(&self.root)
                    .err()
                    .unwrap_or_else(|| std::io::Error::other("ROOT could not be opened earlier"));
                return Err(VdbError::io("open ROOT", &self.root, e));
            }
        };
        root.resolve(&self.inside(rel), how)
            .map_err(|source| VdbError::State { path, source })
    }

    /// The host path `EROOT/rel` names inside ROOT, every symlink followed,
    /// for reading it or writing into it. It may not exist (nor, when a
    /// symlink on the way leads to something missing, anything on the way:
    /// inside ROOT there is nothing there).
    pub fn path(&self, rel: &str) -> Result<PathBuf, VdbError> {
        Ok(self.resolve(rel, Resolve::Follow)?.host_path().to_owned())
    }

    /// The host path of `EROOT/rel` for creating, renaming, removing or
    /// locking it: its directory resolved inside ROOT, its last component
    /// not followed.
    pub fn entry(&self, rel: &str) -> Result<PathBuf, VdbError> {
        Ok(self
            .resolve(rel, Resolve::NoFollowLast)?
            .host_path()
            .to_owned())
    }

    /// The directory `EROOT/rel` inside ROOT, created (with its missing
    /// parents, mode `0777` less the umask, as `mkdir -p`) if missing.
    pub fn create_dir(&self, rel: &str) -> Result<PathBuf, VdbError> {
        Ok(self
            .resolve(rel, Resolve::CreateDirs)?
            .host_path()
            .to_owned())
    }

    /// Fail unless every directory of `rels` exists inside ROOT or can be
    /// created there (`create_dir` would succeed). Creates nothing.
    pub fn check(&self, rels: &[&str]) -> Result<(), VdbError> {
        for rel in rels {
            self.resolve(rel, Resolve::CheckDirs)?;
        }
        Ok(())
    }

    /// [`StatePaths::check`] of every state directory ([`STATE_DIRS`]).
    pub fn check_all(&self) -> Result<(), VdbError> {
        self.check(&STATE_DIRS)
    }

    /// The directory of category `cat` of the VDB (may not exist).
    pub fn category_dir(&self, cat: &str) -> Result<PathBuf, VdbError> {
        self.path(&format!("{VDB_DIR}/{cat}"))
    }

    /// Why `EROOT/rel` cannot be used inside ROOT, if it cannot: a symlink
    /// on the way to it whose target does not exist inside ROOT, a loop, a
    /// file where a directory is needed. For warnings about state that is
    /// only read.
    pub fn problem(&self, rel: &str) -> Option<VdbError> {
        self.check(&[rel]).err()
    }
}

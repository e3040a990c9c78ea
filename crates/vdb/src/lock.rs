//! Portage's lock protocol for the VDB and related files.
//!
//! All locks here are exclusive whole-file OFD locks from [`rootfs::lock`],
//! which conflict with the POSIX `fcntl.lockf` locks Portage takes, so vartree
//! and a concurrently running `emerge` exclude each other.
//!
//! Two kinds of lock exist in Portage (`portage.locks.lockfile`):
//!
//! * **Sidecar locks** (`lockfile(TARGET, wantnewlockfile=True)`, and
//!   `lockdir(TARGET)`): the file locked is `DIR/.NAME.portage_lockfile` next to
//!   `TARGET = DIR/NAME`, and it is deleted again on unlock when that is safe.
//!   See [`SidecarLock`]; the VDB lock ([`VdbLock`]), the binary package index
//!   lock ([`lock_packages_index`]) and slot locks ([`slot_lock`]) are of this
//!   kind.
//! * **In-place locks** (`lockfile(PATH)`): the data file itself is locked and
//!   never deleted ([`FileLock`]): the "fs" lock on `var/lib/portage/config`
//!   ([`fs_lock`]) and the preserved-libs registry lock ([`plib_lock`]).
//!
//! # Sidecar lock protocol
//!
//! Acquire (loop):
//!
//! 1. open `DIR/.NAME.portage_lockfile` with `O_CREAT|O_RDWR`, mode `0660`
//!    (chgrp'd to the `portage` group when we created it and are privileged);
//! 2. try a non-blocking lock; if busy, call `on_wait(lock_path)` and block;
//! 3. once locked, check that the path still names the inode we locked
//!    (`fstat` of our descriptor against `stat` of the path). A previous holder
//!    may have unlinked it while we were blocked on it: then close and start
//!    over, which creates a fresh file.
//!
//! Release (same rule as Portage's `unlockfile`):
//!
//! 1. if the path no longer exists, just close;
//! 2. release the lock;
//! 3. immediately try to re-take it without blocking. If that fails, someone
//!    else got the lock in between: leave the file to them and close;
//! 4. otherwise, if our inode has exactly one link, unlink the path *while still
//!    holding the lock*, release, and close. With any other link count (e.g. a
//!    leftover Portage `.hardlock-HOST-PID` hard link) the file is kept.
//!
//! Everyone who was blocked on the unlinked inode gets the lock on it, sees in
//! step 3 of acquiring that it is gone and retries on a fresh file, so at any
//! time at most one process holds a lock on the inode the path names. In step
//! 4 we additionally check that the path still names our inode before
//! unlinking (Portage checks only the link count); under the protocol that is
//! always true, so this only guards against outside interference.
//!
//! # In-process use
//!
//! OFD locks taken on two different open files conflict even within one
//! process, unlike the POSIX locks Portage uses. Acquiring a lock this thread
//! already holds therefore blocks forever; acquiring it from another thread
//! waits for the holder. There is no reentrancy counting (Portage's `vardbapi`
//! has one): acquire once and pass the handle (or a reference) around.
//!
//! # The `portage` group
//!
//! Portage chgrp's lock files it creates to the `portage` group (name from
//! `PORTAGE_GRPNAME`, default `portage`) when it runs as root or as a member of
//! that group. [`portage_lock_options`] does the same. If the group does not
//! exist, that step is skipped (Portage would then use gid 0, which a root
//! process normally creates files with anyway).
//!
//! # Limits
//!
//! The removal check compares inode numbers through `stat`; Portage makes a
//! temporary hard link first to defeat NFS attribute caching and copes with
//! file systems without stable inode numbers (sshfs). Lock files on such file
//! systems are not supported here.

use std::fs;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

use rootfs::lock::{is_privileged_for_group, try_lock_fd, unlock_fd, LockedFile};
pub use rootfs::lock::{LockError, LockOp, LockOptions, Wait};

use crate::db::VdbError;
use crate::state::{StatePaths, PORTAGE_LIB_DIR, VAR_DB, VDB_DIR};

/// Suffix of sidecar lock files: `DIR/.NAME` + this.
pub const LOCK_FILE_SUFFIX: &str = ".portage_lockfile";

/// A state path that cannot be used inside ROOT, as a lock error.
fn state_err(op: LockOp, state: &StatePaths, rel: &str, e: VdbError) -> LockError {
    let source = match e {
        VdbError::Io { source, .. } => source,
        VdbError::State { source, .. } => io::Error::other(source),
        other => io::Error::other(other.to_string()),
    };
    LockError::new(op, state.lexical(rel), source)
}

/// `EROOT/var/db/.pkg.portage_lockfile`, the file behind Portage's VDB lock
/// (as written: the locks below resolve it inside ROOT).
pub fn vdb_lock_path(eroot: &Path) -> PathBuf {
    eroot.join("var/db/.pkg.portage_lockfile")
}

/// `EROOT/var/lib/portage/config`: the config-protect memory file, locked in
/// place as Portage's "fs" lock.
pub fn fs_lock_path(eroot: &Path) -> PathBuf {
    eroot.join("var/lib/portage/config")
}

/// `EROOT/var/lib/portage/preserved_libs_registry`, locked in place.
pub fn plib_lock_path(eroot: &Path) -> PathBuf {
    eroot.join("var/lib/portage/preserved_libs_registry")
}

/// `PKGDIR/.Packages.portage_lockfile`, the binary package index lock.
pub fn packages_lock_path(pkgdir: &Path) -> PathBuf {
    pkgdir.join(".Packages.portage_lockfile")
}

/// `EROOT/var/db/pkg/CAT/.PN:SLOT.portage_lockfile`, the slot lock Portage
/// uses with `FEATURES=parallel-install`. `slot` is the slot without sub-slot.
pub fn slot_lock_path(eroot: &Path, category: &str, package: &str, slot: &str) -> PathBuf {
    eroot
        .join("var/db/pkg")
        .join(category)
        .join(format!(".{package}:{slot}{LOCK_FILE_SUFFIX}"))
}

/// The sidecar lock file for `target`: `DIR/.NAME.portage_lockfile`.
///
/// Returns `None` if `target` has no final component (e.g. `/` or `a/..`).
/// A trailing slash on `target` is ignored, as in Portage.
pub fn sidecar_lock_path(target: &Path) -> Option<PathBuf> {
    let name = target.file_name()?;
    let mut file = std::ffi::OsString::from(".");
    file.push(name);
    file.push(LOCK_FILE_SUFFIX);
    Some(match target.parent() {
        Some(dir) => dir.join(file),
        None => PathBuf::from(file),
    })
}

/// The [`LockOptions`] Portage would use: the given waiting policy, and chgrp
/// of new lock files to the `portage` group (`$PORTAGE_GRPNAME`) if it exists
/// and this process is root or a member. The group lookup is done once.
pub fn portage_lock_options(wait: Wait) -> LockOptions {
    static GROUP: OnceLock<Option<u32>> = OnceLock::new();
    let new_file_group = *GROUP.get_or_init(|| {
        let name = std::env::var("PORTAGE_GRPNAME").unwrap_or_else(|_| "portage".to_owned());
        rootfs::lock::group_id_by_name(&name)
            .ok()
            .flatten()
            .filter(|&gid| is_privileged_for_group(gid))
    });
    LockOptions {
        wait,
        new_file_group,
    }
}

/// What [`SidecarLock::unlock`] did with the lock file. The lock is released
/// in every case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnlockOutcome {
    /// The lock file was deleted.
    Removed,
    /// Another locker took the lock the moment we released it; the file is
    /// now theirs and was kept.
    Contended,
    /// Our inode has a link count other than one (an extra hard link, or it was
    /// already unlinked); kept, like Portage.
    Linked,
    /// The lock file path did not exist any more.
    Missing,
    /// The path names a different file than the one we locked; left alone.
    Replaced,
}

/// A held sidecar lock (`DIR/.NAME.portage_lockfile`), Portage's
/// `lockfile(TARGET, wantnewlockfile=True)`.
///
/// Dropping it runs the release protocol (module docs) and ignores errors;
/// call [`SidecarLock::unlock`] to see the outcome.
#[derive(Debug)]
pub struct SidecarLock {
    // Always `Some` until `unlock` or `drop` takes it.
    locked: Option<LockedFile>,
}

impl SidecarLock {
    /// Locks the sidecar file of `target`, blocking. `on_wait(lock_path)` is
    /// called each time the lock is found busy, before blocking (normally once;
    /// again if the file was removed under us and we retry and find the new one
    /// busy). The directory of `target` must exist.
    pub fn acquire(target: &Path, mut on_wait: impl FnMut(&Path)) -> Result<Self, LockError> {
        let opts = portage_lock_options(Wait::Block);
        Self::acquire_with(target, &opts, &mut on_wait)?.ok_or_else(|| would_block(target))
    }

    /// Tries to lock the sidecar file of `target` without waiting; `Ok(None)`
    /// if it is held by someone else.
    pub fn try_acquire(target: &Path) -> Result<Option<Self>, LockError> {
        Self::acquire_with(target, &portage_lock_options(Wait::NonBlocking), |_| {})
    }

    /// The general form, see [`LockOptions`]. `Ok(None)` if the lock was busy
    /// and `opts.wait` did not allow waiting (long enough).
    pub fn acquire_with(
        target: &Path,
        opts: &LockOptions,
        on_wait: impl FnMut(&Path),
    ) -> Result<Option<Self>, LockError> {
        let lock_path = sidecar_lock_path(target).ok_or_else(|| {
            LockError::new(
                LockOp::Open,
                target,
                io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"),
            )
        })?;
        Self::acquire_path(&lock_path, opts, on_wait)
    }

    /// Like [`SidecarLock::acquire_with`], but given the lock file path itself.
    fn acquire_path(
        lock_path: &Path,
        opts: &LockOptions,
        mut on_wait: impl FnMut(&Path),
    ) -> Result<Option<Self>, LockError> {
        let deadline = match opts.wait {
            Wait::Timeout(t) => Some(Instant::now() + t),
            _ => None,
        };
        loop {
            let wait = match deadline {
                Some(d) => Wait::Timeout(d.saturating_duration_since(Instant::now())),
                None => opts.wait,
            };
            let this_opts = LockOptions { wait, ..*opts };
            let Some(locked) = LockedFile::lock_with(lock_path, &this_opts, &mut on_wait)? else {
                return Ok(None);
            };
            if still_linked(&locked)? {
                return Ok(Some(SidecarLock {
                    locked: Some(locked),
                }));
            }
            // The previous holder removed the file while we waited on it. Just
            // close (no removal protocol: the inode is already unlinked) and
            // retry on a fresh file.
            drop(locked);
        }
    }

    /// The lock file path (`DIR/.NAME.portage_lockfile`).
    pub fn path(&self) -> &Path {
        self.inner().path()
    }

    /// Releases the lock, deleting the lock file when the protocol allows it.
    /// The lock is released even if this returns an error (which then reports
    /// a failed clean-up step, e.g. a failed `unlink`).
    pub fn unlock(mut self) -> Result<UnlockOutcome, LockError> {
        match self.locked.take() {
            Some(locked) => release(locked),
            None => Ok(UnlockOutcome::Missing),
        }
    }

    fn inner(&self) -> &LockedFile {
        // The Option is only emptied by `unlock`/`drop`, which consume `self`.
        self.locked
            .as_ref()
            .expect("SidecarLock used after release")
    }
}

impl AsFd for SidecarLock {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner().as_fd()
    }
}

impl Drop for SidecarLock {
    fn drop(&mut self) {
        if let Some(locked) = self.locked.take() {
            let _ = release(locked);
        }
    }
}

fn would_block(path: &Path) -> LockError {
    LockError::new(LockOp::Lock, path, io::ErrorKind::WouldBlock.into())
}

/// Whether an `io::Error` from `stat` means "the path is gone" (`ENOENT`, or
/// `ESTALE` on NFS).
fn is_gone(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::StaleNetworkFileHandle
    )
}

fn same_file(a: &fs::Metadata, b: &fs::Metadata) -> bool {
    a.dev() == b.dev() && a.ino() == b.ino()
}

/// After locking: does the lock file path still name the inode we locked?
fn still_linked(locked: &LockedFile) -> Result<bool, LockError> {
    let path = locked.path();
    let ours = locked
        .file()
        .metadata()
        .map_err(|e| LockError::new(LockOp::Stat, path, e))?;
    if ours.nlink() == 0 {
        return Ok(false);
    }
    match fs::metadata(path) {
        Ok(now) => Ok(same_file(&now, &ours)),
        Err(e) if is_gone(&e) => Ok(false),
        Err(e) => Err(LockError::new(LockOp::Stat, path, e)),
    }
}

/// The release protocol (module docs). Consumes the lock; the descriptor is
/// closed when `locked` goes out of scope, on every path.
fn release(locked: LockedFile) -> Result<UnlockOutcome, LockError> {
    let path = locked.path();
    let fd = locked.as_fd();
    let err = |op, e| LockError::new(op, path, e);

    match fs::metadata(path) {
        Ok(_) => {}
        Err(e) if is_gone(&e) => return Ok(UnlockOutcome::Missing),
        Err(e) => return Err(err(LockOp::Stat, e)),
    }
    unlock_fd(fd).map_err(|e| err(LockOp::Unlock, e))?;
    if !try_lock_fd(fd).map_err(|e| err(LockOp::Lock, e))? {
        return Ok(UnlockOutcome::Contended);
    }
    // We hold the lock again, so nobody else is in the protocol right now.
    let ours = locked.file().metadata().map_err(|e| err(LockOp::Stat, e))?;
    if ours.nlink() != 1 {
        return Ok(UnlockOutcome::Linked);
    }
    match fs::metadata(path) {
        Ok(now) if same_file(&now, &ours) => {}
        Ok(_) => return Ok(UnlockOutcome::Replaced),
        Err(e) if is_gone(&e) => return Ok(UnlockOutcome::Missing),
        Err(e) => return Err(err(LockOp::Stat, e)),
    }
    fs::remove_file(path).map_err(|e| err(LockOp::Unlink, e))?;
    // Explicit release before close, as Portage does; closing would suffice.
    let _ = unlock_fd(fd);
    Ok(UnlockOutcome::Removed)
}

/// Portage's global VDB lock, `vardbapi.lock()`: a sidecar lock on
/// `EROOT/var/db/pkg`, i.e. on the file `EROOT/var/db/.pkg.portage_lockfile`,
/// which is removed on unlock when possible.
#[derive(Debug)]
pub struct VdbLock(SidecarLock);

impl VdbLock {
    /// Acquires the VDB lock, blocking. `on_wait(lock_path)` is called when the
    /// lock is busy, before blocking (e.g. to print
    /// `waiting for lock on EROOT/var/db/.pkg.portage_lockfile`).
    /// `EROOT/var/db` is created if missing (inside ROOT).
    pub fn acquire(state: &StatePaths, on_wait: impl FnMut(&Path)) -> Result<VdbLock, LockError> {
        Self::acquire_with(state, Wait::Block, on_wait)?
            .ok_or_else(|| would_block(&vdb_lock_path(state.eroot())))
    }

    /// Tries to acquire the VDB lock without waiting; `Ok(None)` if busy.
    pub fn try_acquire(state: &StatePaths) -> Result<Option<VdbLock>, LockError> {
        Self::acquire_with(state, Wait::NonBlocking, |_| {})
    }

    /// Acquires the VDB lock with the given waiting policy; `Ok(None)` if busy
    /// and the policy gave up.
    pub fn acquire_with(
        state: &StatePaths,
        wait: Wait,
        on_wait: impl FnMut(&Path),
    ) -> Result<Option<VdbLock>, LockError> {
        let dir = state
            .create_dir(VAR_DB)
            .map_err(|e| state_err(LockOp::CreateDir, state, VAR_DB, e))?;
        let lock_path = dir.join(format!(".pkg{LOCK_FILE_SUFFIX}"));
        let opts = portage_lock_options(wait);
        Ok(SidecarLock::acquire_path(&lock_path, &opts, on_wait)?.map(VdbLock))
    }

    /// `EROOT/var/db/.pkg.portage_lockfile`.
    pub fn path(&self) -> &Path {
        self.0.path()
    }

    /// Releases the lock; see [`SidecarLock::unlock`].
    pub fn unlock(self) -> Result<UnlockOutcome, LockError> {
        self.0.unlock()
    }
}

impl AsFd for VdbLock {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// Locks `PKGDIR/.Packages.portage_lockfile`, as Portage's `binarytree` does
/// around index updates (`lockfile(PKGDIR/Packages, wantnewlockfile=True)`).
/// `PKGDIR` must exist.
pub fn lock_packages_index(
    pkgdir: &Path,
    on_wait: impl FnMut(&Path),
) -> Result<SidecarLock, LockError> {
    SidecarLock::acquire(&pkgdir.join("Packages"), on_wait)
}

/// Locks `EROOT/var/db/pkg/CAT/.PN:SLOT.portage_lockfile` (Portage's slot lock
/// with `FEATURES=parallel-install`), creating `EROOT/var/db/pkg/CAT` if
/// missing (inside ROOT). Portage takes several slot locks sorted by atom
/// string to avoid deadlocks; callers must do the same.
pub fn slot_lock(
    state: &StatePaths,
    category: &str,
    package: &str,
    slot: &str,
    on_wait: impl FnMut(&Path),
) -> Result<SidecarLock, LockError> {
    let rel = format!("{VDB_DIR}/{category}");
    let dir = state
        .create_dir(&rel)
        .map_err(|e| state_err(LockOp::CreateDir, state, &rel, e))?;
    let lock_path = dir.join(format!(".{package}:{slot}{LOCK_FILE_SUFFIX}"));
    let opts = portage_lock_options(Wait::Block);
    SidecarLock::acquire_path(&lock_path, &opts, on_wait)?.ok_or_else(|| would_block(&lock_path))
}

/// An in-place lock on a data file, Portage's `lockfile(PATH)` without
/// `wantnewlockfile`: the file itself is locked (created empty, mode 0660, if
/// missing) and never deleted on unlock. Dropping it releases the lock.
///
/// Like in Portage, replacing the locked file (write to a temporary + rename)
/// while holding the lock means later lockers lock the new inode while waiters
/// blocked on the old one still get the old one; do such a replacement only
/// right before unlocking.
#[derive(Debug)]
pub struct FileLock(LockedFile);

impl FileLock {
    /// Locks `path` in place, blocking; `on_wait(path)` is called once if the
    /// lock is busy, before blocking. The directory must exist.
    pub fn acquire(path: &Path, on_wait: impl FnOnce(&Path)) -> Result<FileLock, LockError> {
        Self::acquire_with(path, Wait::Block, on_wait)?.ok_or_else(|| would_block(path))
    }

    /// Tries to lock `path` in place without waiting; `Ok(None)` if busy.
    pub fn try_acquire(path: &Path) -> Result<Option<FileLock>, LockError> {
        Self::acquire_with(path, Wait::NonBlocking, |_| {})
    }

    /// Locks `path` in place with the given waiting policy.
    pub fn acquire_with(
        path: &Path,
        wait: Wait,
        on_wait: impl FnOnce(&Path),
    ) -> Result<Option<FileLock>, LockError> {
        let opts = portage_lock_options(wait);
        Ok(LockedFile::lock_with(path, &opts, on_wait)?.map(FileLock))
    }

    /// The locked file's path.
    pub fn path(&self) -> &Path {
        self.0.path()
    }

    /// Whether acquiring created the (empty) file.
    pub fn created(&self) -> bool {
        self.0.created()
    }

    /// Releases the lock and closes the file; the file is kept.
    pub fn unlock(self) -> Result<(), LockError> {
        self.0.unlock()
    }
}

impl AsFd for FileLock {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// Locks an existing data file in place (Portage's `lockfile(path)`); see
/// [`FileLock`].
pub fn lock_file(path: &Path, on_wait: impl FnOnce(&Path)) -> Result<FileLock, LockError> {
    FileLock::acquire(path, on_wait)
}

/// Portage's "fs" lock, `vardbapi._fs_lock()`: `EROOT/var/lib/portage/config`
/// (resolved inside ROOT) locked in place. `EROOT/var/lib/portage` must exist
/// (Portage creates it with mode 02750, group `portage`, in
/// `config._init_dirs`; that is the caller's job, not the lock's).
pub fn fs_lock(state: &StatePaths, on_wait: impl FnOnce(&Path)) -> Result<FileLock, LockError> {
    FileLock::acquire(&lib_file(state, "config")?, on_wait)
}

/// The preserved-libs registry lock, `PreservedLibsRegistry.lock()`:
/// `EROOT/var/lib/portage/preserved_libs_registry` (resolved inside ROOT)
/// locked in place.
pub fn plib_lock(state: &StatePaths, on_wait: impl FnOnce(&Path)) -> Result<FileLock, LockError> {
    FileLock::acquire(&lib_file(state, "preserved_libs_registry")?, on_wait)
}

/// `EROOT/var/lib/portage/NAME`, resolved inside ROOT (NAME not followed).
fn lib_file(state: &StatePaths, name: &str) -> Result<PathBuf, LockError> {
    let rel = format!("{PORTAGE_LIB_DIR}/{name}");
    state
        .entry(&rel)
        .map_err(|e| state_err(LockOp::Open, state, &rel, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_paths() {
        let eroot = Path::new("/r");
        assert_eq!(
            vdb_lock_path(eroot),
            Path::new("/r/var/db/.pkg.portage_lockfile")
        );
        assert_eq!(
            sidecar_lock_path(Path::new("/r/var/db/pkg")).unwrap(),
            vdb_lock_path(eroot)
        );
        assert_eq!(
            sidecar_lock_path(Path::new("/r/var/db/pkg/")).unwrap(),
            vdb_lock_path(eroot)
        );
        assert_eq!(
            sidecar_lock_path(Path::new("/b/Packages")).unwrap(),
            packages_lock_path(Path::new("/b"))
        );
        assert_eq!(
            slot_lock_path(eroot, "dev-libs", "foo", "0"),
            Path::new("/r/var/db/pkg/dev-libs/.foo:0.portage_lockfile")
        );
        assert_eq!(
            sidecar_lock_path(Path::new("x")).unwrap(),
            Path::new(".x.portage_lockfile")
        );
        assert!(sidecar_lock_path(Path::new("/")).is_none());
    }
}

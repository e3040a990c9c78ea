//! Portage-compatible fcntl record locks (OFD).
//!
//! Portage serialises access to its databases with `fcntl.lockf`, i.e. classic
//! POSIX record locks (`F_SETLK`/`F_SETLKW`, exclusive, whole file). This module
//! provides the low-level primitive vartree uses to take part in that protocol:
//! it opens (creating if needed) a lock file and takes an exclusive whole-file
//! **open file description (OFD) lock** on it (`F_OFD_SETLK`/`F_OFD_SETLKW`).
//!
//! # Why OFD locks
//!
//! * OFD write locks and POSIX write locks on the same file conflict with each
//!   other, so a lock taken here excludes a concurrently running `emerge` and
//!   vice versa. `flock(2)` locks (what `std::fs::File::lock` and most lock
//!   crates use) do **not** conflict with POSIX locks on Linux and would not
//!   exclude Portage.
//! * Unlike POSIX locks, an OFD lock belongs to the open file description, not
//!   to the process: it is not dropped when the process happens to close some
//!   *other* descriptor of the same file, and it is released exactly when the
//!   last descriptor referring to that open file description is closed (here:
//!   when the [`LockedFile`] is dropped).
//!
//! # Semantics callers must know
//!
//! * **In-process conflicts.** Two OFD locks on *different* open file
//!   descriptions conflict even inside one process (POSIX locks would silently
//!   merge instead). Locking the same file twice from one thread therefore
//!   blocks forever; from two threads it serialises them. Hold one handle and
//!   pass it around instead of re-locking.
//! * **Descriptors.** Files are opened with `O_CLOEXEC`, so exec'd children do
//!   not inherit the lock. A child created by `fork` without `exec`, or a
//!   `try_clone` of [`LockedFile::file`], shares the open file description and
//!   keeps the lock alive until it too closes its descriptor.
//! * **Creation mode.** A newly created lock file gets mode `0660` regardless of
//!   the process umask (Portage creates them under `umask(0)`); we `fchmod` the
//!   new file instead of touching the process-wide umask. Optionally the new file
//!   is chgrp'd (see [`LockOptions::new_file_group`]). Failures of that chmod or
//!   chgrp are ignored, like Portage, which only warns: the lock itself works.
//! * **Waiting.** A non-blocking attempt is always made first; only if the lock
//!   is busy is the caller's `on_wait` callback invoked (e.g. to print
//!   `waiting for lock on PATH`), after which we wait as chosen by [`Wait`].
//! * **Platforms.** OFD locks need Linux ≥ 3.15. They are used on 64-bit Linux
//!   and on musl; on other targets every lock attempt fails with
//!   [`io::ErrorKind::Unsupported`] (32-bit glibc would need `fcntl64` with
//!   `struct flock64`, which is not wired up).
//! * Portage's fallbacks (flock when `lockf` is broken, the NFS hard-link scheme
//!   on `ENOSYS`) are not implemented; on Linux with local file systems and NFSv4
//!   they are never taken.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Permission bits of a newly created lock file (`rw-rw----`), as Portage.
pub const LOCK_FILE_MODE: u32 = 0o660;

/// The operation that failed, carried by [`LockError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LockOp {
    /// Opening or creating the lock file.
    Open,
    /// Taking (or waiting for) the lock.
    Lock,
    /// Releasing the lock.
    Unlock,
    /// `stat`/`fstat` of the lock file.
    Stat,
    /// Removing the lock file.
    Unlink,
    /// Creating a directory that must contain the lock file.
    CreateDir,
}

impl fmt::Display for LockOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LockOp::Open => "open lock file",
            LockOp::Lock => "lock",
            LockOp::Unlock => "unlock",
            LockOp::Stat => "stat lock file",
            LockOp::Unlink => "remove lock file",
            LockOp::CreateDir => "create directory",
        })
    }
}

/// A failed lock-related system call, with the path and the operation.
#[derive(Debug, thiserror::Error)]
#[error("failed to {op} {}: {source}", path.display())]
pub struct LockError {
    /// What was being done.
    pub op: LockOp,
    /// The file (or directory, for [`LockOp::CreateDir`]) concerned.
    pub path: PathBuf,
    /// The underlying OS error.
    #[source]
    pub source: io::Error,
}

impl LockError {
    /// Builds an error for `op` on `path`.
    pub fn new(op: LockOp, path: impl Into<PathBuf>, source: io::Error) -> Self {
        LockError {
            op,
            path: path.into(),
            source,
        }
    }

    /// The [`io::ErrorKind`] of the underlying error.
    pub fn kind(&self) -> io::ErrorKind {
        self.source.kind()
    }
}

/// How long to wait when the lock is held by someone else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Wait {
    /// Do not wait: report "busy" (`None`) at once. `on_wait` is not called.
    NonBlocking,
    /// Block in `F_OFD_SETLKW` until the lock is granted (Portage's behaviour).
    #[default]
    Block,
    /// Wait at most this long, by polling with a short back-off (a blocking
    /// `fcntl` cannot be given a timeout). Polling is not fair: a blocked
    /// waiter may overtake us.
    Timeout(Duration),
}

/// Options for [`LockedFile::lock_with`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LockOptions {
    /// Waiting policy when the lock is busy.
    pub wait: Wait,
    /// If set and *this call* creates the lock file, chgrp it to this group
    /// (Portage chgrp's new lock files to `portage` when privileged). Errors are
    /// ignored. Existing files are never touched.
    pub new_file_group: Option<u32>,
}

/// An open lock file on which this process holds an exclusive OFD lock.
///
/// Dropping it closes the descriptor, which releases the lock. The file itself
/// is never removed by this type; removal protocols live in higher layers.
#[derive(Debug)]
pub struct LockedFile {
    file: File,
    path: PathBuf,
    created: bool,
}

impl LockedFile {
    /// Opens (creating it if missing) and exclusively locks `path`, blocking
    /// until the lock is granted. If the lock is busy, `on_wait(path)` is called
    /// once before blocking.
    pub fn lock(path: &Path, on_wait: impl FnOnce(&Path)) -> Result<LockedFile, LockError> {
        let opts = LockOptions::default();
        match Self::lock_with(path, &opts, on_wait)? {
            Some(locked) => Ok(locked),
            // Unreachable with Wait::Block, but do not panic in library code.
            None => Err(LockError::new(
                LockOp::Lock,
                path,
                io::ErrorKind::WouldBlock.into(),
            )),
        }
    }

    /// Opens (creating it if missing) and tries to lock `path` without waiting.
    /// Returns `Ok(None)` if someone else holds the lock.
    pub fn try_lock(path: &Path) -> Result<Option<LockedFile>, LockError> {
        let opts = LockOptions {
            wait: Wait::NonBlocking,
            ..LockOptions::default()
        };
        Self::lock_with(path, &opts, |_| {})
    }

    /// The general form: opens `O_CREAT|O_RDWR|O_CLOEXEC`, mode `0660` for a new
    /// file, then locks according to `opts.wait`. `on_wait(path)` is called at
    /// most once, only when the lock is busy and we are about to wait.
    ///
    /// Returns `Ok(None)` if the lock was busy and [`Wait::NonBlocking`] was
    /// given or the [`Wait::Timeout`] expired. A lock file created by a call that
    /// ends up not locking is left in place (as Portage does).
    pub fn lock_with(
        path: &Path,
        opts: &LockOptions,
        on_wait: impl FnOnce(&Path),
    ) -> Result<Option<LockedFile>, LockError> {
        let (file, created) = open_lock_file(path, opts.new_file_group)?;
        let locked = acquire_fd(file.as_fd(), opts.wait, || on_wait(path))
            .map_err(|e| LockError::new(LockOp::Lock, path, e))?;
        Ok(locked.then(|| LockedFile {
            file,
            path: path.to_owned(),
            created,
        }))
    }

    /// The path the lock file was opened by.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether this call created the lock file (it did not exist before).
    pub fn created(&self) -> bool {
        self.created
    }

    /// The open lock file. Do not `try_clone` it unless you mean to extend the
    /// lifetime of the lock (a duplicated descriptor keeps it held).
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Releases the lock explicitly (`F_UNLCK`) and closes the file. The file is
    /// closed, and hence the lock released, even if this returns an error.
    pub fn unlock(self) -> Result<(), LockError> {
        unlock_fd(self.file.as_fd()).map_err(|e| LockError::new(LockOp::Unlock, &self.path, e))
    }
}

impl AsFd for LockedFile {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

/// How often we attempt `O_EXCL` create / plain open (the file may vanish
/// in between, each time a holder unlinks it on unlock).
const OPEN_ATTEMPTS: usize = 16;

/// Opens or creates the lock file; returns whether we created it.
///
/// `O_CREAT|O_EXCL` is tried first so that "created" is exact rather than the
/// result of a racy existence check. If the file exists we open it plainly; if
/// it vanished in between (a previous holder unlinked it on unlock) we retry.
/// A lock file that is a symlink is refused (`ELOOP`), never followed:
/// Portage opens through it, which with a hostile link in ROOT creates or
/// locks a file outside ROOT.
fn open_lock_file(path: &Path, group: Option<u32>) -> Result<(File, bool), LockError> {
    let open_err = |e| LockError::new(LockOp::Open, path, e);
    for _ in 0..OPEN_ATTEMPTS {
        match OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .mode(LOCK_FILE_MODE)
            .open(path)
        {
            Ok(file) => {
                fix_new_file(&file, group);
                return Ok((file, true));
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(open_err(e)),
        }
        match OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
        {
            Ok(file) => return Ok((file, false)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(open_err(e)),
        }
    }
    Err(open_err(io::Error::other(
        "the lock file kept disappearing while being opened",
    )))
}

/// Gives a lock file we just created mode 0660 despite the umask, and the
/// requested group. Failures are deliberately ignored (Portage only warns about
/// a failed chgrp, and its mode comes from `umask(0)`, which cannot fail): the
/// lock works either way, only other users' access to the file differs.
fn fix_new_file(file: &File, group: Option<u32>) {
    if let Ok(meta) = file.metadata() {
        if meta.mode() & 0o7777 != LOCK_FILE_MODE {
            let _ = file.set_permissions(std::fs::Permissions::from_mode(LOCK_FILE_MODE));
        }
        if let Some(gid) = group {
            if meta.gid() != gid {
                let _ = std::os::unix::fs::fchown(file, None, Some(gid));
            }
        }
    }
}

/// Try, then (if busy) call `on_wait` and wait per `wait`. `Ok(false)` = busy.
fn acquire_fd(fd: BorrowedFd<'_>, wait: Wait, on_wait: impl FnOnce()) -> io::Result<bool> {
    if try_lock_fd(fd)? {
        return Ok(true);
    }
    match wait {
        Wait::NonBlocking => Ok(false),
        Wait::Timeout(t) if t.is_zero() => Ok(false),
        Wait::Block => {
            on_wait();
            lock_fd(fd)?;
            Ok(true)
        }
        Wait::Timeout(t) => {
            on_wait();
            let deadline = Instant::now() + t;
            let mut delay = Duration::from_millis(1);
            loop {
                let now = Instant::now();
                if now >= deadline {
                    return Ok(false);
                }
                std::thread::sleep(delay.min(deadline - now));
                if try_lock_fd(fd)? {
                    return Ok(true);
                }
                delay = (delay * 2).min(Duration::from_millis(50));
            }
        }
    }
}

/// Whether an errno from a non-blocking lock attempt means "held by someone
/// else". Portage treats `EACCES`, `EAGAIN` and `ENOLCK` this way.
fn is_busy(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EAGAIN | libc::EACCES | libc::ENOLCK)
    )
}

/// Tries to take an exclusive whole-file OFD lock on `fd` without waiting.
/// Returns `Ok(false)` if another open file description holds a conflicting
/// lock (OFD or POSIX). Re-locking an open file description that already holds
/// the lock succeeds.
pub fn try_lock_fd(fd: BorrowedFd<'_>) -> io::Result<bool> {
    loop {
        match ofd_setlk(fd, sys::SETLK, libc::F_WRLCK) {
            Ok(()) => return Ok(true),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if is_busy(&e) => return Ok(false),
            Err(e) => return Err(e),
        }
    }
}

/// Takes an exclusive whole-file OFD lock on `fd`, blocking until it is
/// granted. `EINTR` is retried; `ENOLCK` (temporary lock-table exhaustion, seen
/// on NFS) is retried after a pause, as Portage does.
pub fn lock_fd(fd: BorrowedFd<'_>) -> io::Result<()> {
    loop {
        match ofd_setlk(fd, sys::SETLKW, libc::F_WRLCK) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.raw_os_error() == Some(libc::ENOLCK) => {
                std::thread::sleep(Duration::from_secs(1));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Releases the OFD lock held through `fd` (a no-op if none is held).
pub fn unlock_fd(fd: BorrowedFd<'_>) -> io::Result<()> {
    loop {
        match ofd_setlk(fd, sys::SETLK, libc::F_UNLCK) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

/// Looks a group up by name (`getgrnam_r`, so NSS is honoured). `Ok(None)` if
/// there is no such group.
pub fn group_id_by_name(name: &str) -> io::Result<Option<u32>> {
    let cname = std::ffi::CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "group name contains NUL"))?;
    let mut buf: Vec<libc::c_char> = vec![0; 1024];
    loop {
        let mut grp = std::mem::MaybeUninit::<libc::group>::uninit();
        let mut result: *mut libc::group = std::ptr::null_mut();
        // SAFETY: `cname` is a valid NUL-terminated string; `grp` points to
        // writable storage for one `struct group`; `buf`/`buf.len()` describe a
        // writable buffer the string fields may point into; `result` is a valid
        // out-pointer. All of them outlive the call. getgrnam_r is thread-safe.
        let rc = unsafe {
            libc::getgrnam_r(
                cname.as_ptr(),
                grp.as_mut_ptr(),
                buf.as_mut_ptr(),
                buf.len(),
                &mut result,
            )
        };
        match rc {
            0 if result.is_null() => return Ok(None),
            // SAFETY: on success with a non-null result, getgrnam_r has
            // initialised `*grp` and `result` points to it; we only read the
            // plain integer `gr_gid` field.
            0 => return Ok(Some(unsafe { (*result).gr_gid })),
            libc::ERANGE if buf.len() < (1 << 22) => {
                let len = buf.len() * 2;
                buf.resize(len, 0);
            }
            // Several libcs report "no such group" through these.
            libc::ENOENT | libc::ESRCH | libc::EBADF | libc::EPERM => return Ok(None),
            e => return Err(io::Error::from_raw_os_error(e)),
        }
    }
}

/// Whether this process counts as privileged for group `gid` in Portage's sense
/// (`secpass >= 1`): effective uid 0, or `gid` is the effective or a
/// supplementary group.
pub fn is_privileged_for_group(gid: u32) -> bool {
    use rustix::process::{getegid, geteuid, getgroups};
    if geteuid().is_root() || getegid().as_raw() == gid {
        return true;
    }
    getgroups()
        .map(|groups| groups.iter().any(|g| g.as_raw() == gid))
        .unwrap_or(false)
}

#[cfg(all(
    target_os = "linux",
    any(target_pointer_width = "64", target_env = "musl")
))]
mod sys {
    pub const SETLK: libc::c_int = libc::F_OFD_SETLK;
    pub const SETLKW: libc::c_int = libc::F_OFD_SETLKW;
    pub const SUPPORTED: bool = true;
}

#[cfg(not(all(
    target_os = "linux",
    any(target_pointer_width = "64", target_env = "musl")
)))]
mod sys {
    pub const SETLK: libc::c_int = -1;
    pub const SETLKW: libc::c_int = -1;
    pub const SUPPORTED: bool = false;
}

/// One `fcntl(fd, cmd, &flock)` call for a whole-file lock of type `l_type`.
fn ofd_setlk(fd: BorrowedFd<'_>, cmd: libc::c_int, l_type: libc::c_int) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    if !sys::SUPPORTED {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "OFD locks are not supported on this target",
        ));
    }
    // SAFETY: `struct flock` consists of integer fields (plus padding on some
    // architectures), for which all-zero bytes are a valid value. Zero also is
    // what the kernel requires for `l_pid` with OFD commands.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    // The casts only narrow small constants (F_WRLCK/F_UNLCK/SEEK_SET) to the
    // platform's field type (c_short); they cannot truncate.
    fl.l_type = l_type as _;
    fl.l_whence = libc::SEEK_SET as _;
    // Start 0, length 0: the whole file, including any future extension.
    fl.l_start = 0;
    fl.l_len = 0;
    // SAFETY: `fd` is a live descriptor for the duration of the borrow, and the
    // third argument points to a properly initialised `struct flock` that
    // outlives the call, which is what F_OFD_SETLK/F_OFD_SETLKW expect.
    let rc = unsafe { libc::fcntl(fd.as_raw_fd(), cmd, &mut fl as *mut libc::flock) };
    if rc == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn new_lock_file_is_0660_despite_umask() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lk");
        // Whatever the umask is (typically 022), the file must end up 0660.
        let l = LockedFile::lock(&path, |_| panic!("uncontended")).unwrap();
        assert!(l.created());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o660);
        drop(l);
        // Existing files keep their mode and are not "created".
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let l = LockedFile::lock(&path, |_| panic!("uncontended")).unwrap();
        assert!(!l.created());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn relock_same_description_succeeds() {
        let dir = tempfile::tempdir().unwrap();
        let l = LockedFile::lock(&dir.path().join("lk"), |_| {}).unwrap();
        assert!(try_lock_fd(l.as_fd()).unwrap());
    }

    #[test]
    fn missing_directory_is_an_open_error_with_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope/lk");
        let err = LockedFile::lock(&path, |_| {}).unwrap_err();
        assert_eq!(err.op, LockOp::Open);
        assert_eq!(err.path, path);
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(err.to_string().contains("nope/lk"), "{err}");
    }

    #[test]
    fn group_lookup_root_and_missing() {
        assert_eq!(group_id_by_name("root").unwrap(), Some(0));
        assert_eq!(group_id_by_name("vartree-no-such-group-xyz").unwrap(), None);
        assert!(group_id_by_name("a\0b").is_err());
    }
}

//! The filesystem side: directories with Portage's PKGDIR permissions,
//! unnamed (`O_TMPFILE`) or locked dot-named temporary files, publishing by
//! `linkat`/`renameat2`, and atomic index replacement.
//!
//! # Named temporary files and their clean-up
//!
//! When a temporary file needs a name (the fallback without `O_TMPFILE`, and
//! the moment between `linkat` and `rename` when replacing a file), it is
//! `.<base>.<random>.partial` in the target directory, and whoever created it
//! holds an exclusive OFD lock on it for as long as it exists. Portage ignores
//! such names (they do not end in `.tbz2`, `.xpak` or `.gpkg.tar`). A
//! process that dies leaves the name but not the lock, so
//! [`remove_stale_temps`] removes exactly the dot-`.partial` files nobody
//! holds a lock on. The race between creating a name and locking it is
//! closed the way Portage's lock files close it: the cleaner unlinks only
//! while holding the lock, and the creator, once it has the lock, checks that
//! the name still refers to its file (else it starts over with a new name).

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use md5::{Digest, Md5};
use rustix::fs::{AtFlags, Mode, OFlags, RenameFlags, Timespec, Timestamps, CWD};
use rustix::io::Errno;

use crate::error::{Error, Result};

/// Suffix of every temporary name this crate creates.
pub const TEMP_SUFFIX: &str = ".partial";

/// An open directory and its path (for messages).
#[derive(Debug)]
pub(crate) struct Dir {
    pub fd: OwnedFd,
    pub path: PathBuf,
}

impl Dir {
    pub fn open(path: &Path) -> Result<Dir> {
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::io("open the directory", path, e.into()))?;
        Ok(Dir {
            fd,
            path: path.to_owned(),
        })
    }

    pub fn join(&self, name: &OsStr) -> PathBuf {
        self.path.join(name)
    }

    pub fn fsync(&self) -> Result<()> {
        rustix::fs::fsync(&self.fd)
            .map_err(|e| Error::io("fsync the directory", &self.path, e.into()))
    }

    /// Whether `name` exists (without following a final symlink).
    pub fn exists(&self, name: &OsStr) -> Result<bool> {
        match rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(_) => Ok(true),
            Err(Errno::NOENT) => Ok(false),
            Err(e) => Err(Error::io("look at", self.join(name), e.into())),
        }
    }

    /// The names in this directory.
    pub fn names(&self) -> Result<Vec<OsString>> {
        let err = |e: io::Error| Error::io("list", &self.path, e);
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.path).map_err(err)? {
            out.push(entry.map_err(err)?.file_name());
        }
        Ok(out)
    }

    pub fn unlink(&self, name: &OsStr) -> io::Result<()> {
        rootfs::crash::point("pkgdir unlink");
        Ok(rustix::fs::unlinkat(&self.fd, name, AtFlags::empty())?)
    }
}

/// Group ownership and group permission bits of PKGDIR, which Portage copies
/// to everything it creates inside (`binarytree._ensure_dir`,
/// `_file_permissions`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PkgdirPerms {
    pub gid: u32,
    pub mode: u32,
}

impl PkgdirPerms {
    pub fn of(pkgdir: &Path) -> Result<PkgdirPerms> {
        let st =
            rustix::fs::stat(pkgdir).map_err(|e| Error::io("look at PKGDIR", pkgdir, e.into()))?;
        Ok(PkgdirPerms {
            gid: st.st_gid,
            mode: st.st_mode & 0o7777,
        })
    }

    /// Mode bits added to new directories: setgid and group rwx of PKGDIR.
    pub fn dir_bits(self) -> u32 {
        self.mode & 0o2070
    }

    /// Mode bits added to files: group rw of PKGDIR.
    pub fn file_bits(self) -> u32 {
        self.mode & 0o060
    }
}

/// `mkdir -p PKGDIR`, new directories with mode `0777 & !umask`.
pub(crate) fn create_pkgdir(pkgdir: &Path, umask: u32) -> Result<()> {
    if pkgdir.is_dir() {
        return Ok(());
    }
    let mut missing = Vec::new();
    let mut p = pkgdir;
    while !p.exists() {
        missing.push(p);
        match p.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => p = parent,
            _ => break,
        }
    }
    for dir in missing.into_iter().rev() {
        rootfs::crash::point("pkgdir mkdir");
        match rustix::fs::mkdir(dir, Mode::from_raw_mode(0o777 & !umask)) {
            Ok(()) => {
                let _ = rustix::fs::chmod(dir, Mode::from_raw_mode(0o777 & !umask));
            }
            Err(Errno::EXIST) if dir.is_dir() => {}
            Err(e) => return Err(Error::io("create the directory", dir, e.into())),
        }
    }
    Ok(())
}

/// Creates `PKGDIR/<components...>` like Portage's `_ensure_dir`: each new
/// directory gets `0777 & !umask` plus PKGDIR's setgid and group bits, and
/// PKGDIR's group; existing ones get those bits and group added where
/// possible (errors ignored, as Portage does).
pub(crate) fn ensure_subdirs(
    pkgdir: &Path,
    components: &[&str],
    umask: u32,
    perms: PkgdirPerms,
) -> Result<Dir> {
    let mut path = pkgdir.to_path_buf();
    for c in components {
        path.push(c);
        rootfs::crash::point("pkgdir mkdir");
        match rustix::fs::mkdir(&path, Mode::from_raw_mode(0o777 & !umask)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(Error::io("create the directory", &path, e.into())),
        }
        let st = rustix::fs::lstat(&path)
            .map_err(|e| Error::io("look at the directory", &path, e.into()))?;
        if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
            return Err(Error::io(
                "use as a directory",
                &path,
                io::Error::from_raw_os_error(libc::ENOTDIR),
            ));
        }
        if st.st_gid != perms.gid {
            let _ = rustix::fs::chown(&path, None, Some(rustix::fs::Gid::from_raw(perms.gid)));
        }
        let want = (st.st_mode & 0o7777) | perms.dir_bits();
        if want != st.st_mode & 0o7777 || st.st_gid != perms.gid {
            // chown may have cleared the setgid bit: set the mode last.
            let _ = rustix::fs::chmod(&path, Mode::from_raw_mode(want));
        }
    }
    Dir::open(&path)
}

static SEQ: AtomicU64 = AtomicU64::new(0);

/// `.<base>.<8 hex digits>.partial`.
pub(crate) fn temp_name(base: &str) -> OsString {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(SEQ.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    if let Ok(d) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(d.as_nanos());
    }
    OsString::from(format!(".{base}.{:08x}{TEMP_SUFFIX}", h.finish() as u32))
}

fn is_temp_name(name: &OsStr) -> bool {
    let b = name.as_bytes();
    b.len() > 1 + TEMP_SUFFIX.len() && b[0] == b'.' && b.ends_with(TEMP_SUFFIX.as_bytes())
}

/// Does `name` in `dir` still refer to the file open as `fd`?
fn names_file(dir: &Dir, name: &OsStr, fd: BorrowedFd<'_>) -> io::Result<bool> {
    let ours = rustix::fs::fstat(fd)?;
    match rustix::fs::statat(&dir.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(st.st_dev == ours.st_dev && st.st_ino == ours.st_ino),
        Err(Errno::NOENT) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// A temporary file: unnamed (`O_TMPFILE`), or named and locked.
#[derive(Debug)]
pub(crate) struct Temp {
    pub file: File,
    /// `Some` while the file has a temporary name in its directory.
    pub name: Option<OsString>,
}

/// Whether `O_TMPFILE` failed because the kernel or filesystem lacks it.
fn tmpfile_unsupported(e: Errno) -> bool {
    matches!(e, Errno::OPNOTSUPP | Errno::ISDIR | Errno::INVAL)
}

/// Creates a temporary file in `dir` with exactly `mode` (not subject to the
/// process umask) and, if given, group `gid`, and locks it.
pub(crate) fn create_temp(
    dir: &Dir,
    base: &str,
    mode: u32,
    gid: Option<u32>,
    allow_tmpfile: bool,
) -> Result<Temp> {
    let create_err = |e: io::Error| Error::io("create a temporary file in", &dir.path, e);
    let finish = |fd: OwnedFd, name: Option<OsString>| -> Result<Temp> {
        let file = File::from(fd);
        let path = name
            .as_ref()
            .map_or_else(|| dir.path.clone(), |n| dir.join(n));
        if let Some(gid) = gid {
            // Like Portage, a group we may not give is not an error.
            let _ = rustix::fs::fchown(&file, None, Some(rustix::fs::Gid::from_raw(gid)));
        }
        rustix::fs::fchmod(&file, Mode::from_raw_mode(mode))
            .map_err(|e| Error::io("set the mode of", &path, e.into()))?;
        Ok(Temp { file, name })
    };
    if allow_tmpfile {
        rootfs::crash::point("pkgdir create temp");
        match rustix::fs::openat(
            &dir.fd,
            ".",
            OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode & 0o777),
        ) {
            Ok(fd) => {
                // Locked too, for the moment it may get a temporary name.
                rootfs::lock::try_lock_fd(fd.as_fd()).map_err(create_err)?;
                return finish(fd, None);
            }
            Err(e) if tmpfile_unsupported(e) => {}
            Err(e) => return Err(create_err(e.into())),
        }
    }
    for _ in 0..1000 {
        let name = temp_name(base);
        rootfs::crash::point("pkgdir create temp");
        let fd = match rustix::fs::openat(
            &dir.fd,
            &name,
            OFlags::CREATE | OFlags::EXCL | OFlags::RDWR | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::from_raw_mode(mode & 0o777),
        ) {
            Ok(fd) => fd,
            Err(Errno::EXIST) => continue,
            Err(e) => return Err(create_err(e.into())),
        };
        // A cleaner holding the lock is about to unlink the name: leave it.
        if !rootfs::lock::try_lock_fd(fd.as_fd()).map_err(create_err)? {
            continue;
        }
        if !names_file(dir, &name, fd.as_fd()).map_err(create_err)? {
            continue;
        }
        let temp = finish(fd, Some(name.clone()));
        if temp.is_err() {
            let _ = dir.unlink(&name);
        }
        return temp;
    }
    Err(create_err(io::Error::from_raw_os_error(libc::EEXIST)))
}

/// Removes a temporary name that is ours (we hold the file's lock).
pub(crate) fn remove_temp_name(dir: &Dir, name: &OsStr, file: &File) {
    if names_file(dir, name, file.as_fd()).unwrap_or(false) {
        let _ = dir.unlink(name);
    }
}

/// Links the unnamed file `file` as `name` in `dir`; `EEXIST` if taken.
pub(crate) fn link_tmpfile(file: &File, dir: &Dir, name: &OsStr) -> io::Result<()> {
    rootfs::crash::point("pkgdir link");
    let proc_path = format!("/proc/self/fd/{}", file.as_raw_fd());
    match rustix::fs::linkat(
        CWD,
        proc_path.as_str(),
        &dir.fd,
        name,
        AtFlags::SYMLINK_FOLLOW,
    ) {
        Ok(()) => Ok(()),
        // No /proc: AT_EMPTY_PATH (needs CAP_DAC_READ_SEARCH).
        Err(Errno::NOENT) if !Path::new("/proc/self/fd").exists() => Ok(rustix::fs::linkat(
            file,
            "",
            &dir.fd,
            name,
            AtFlags::EMPTY_PATH,
        )?),
        Err(e) => Err(e.into()),
    }
}

/// Renames `from` to `to` in `dir`, failing with `EEXIST` if `to` exists.
/// Where `RENAME_NOREPLACE` is unsupported: `link` + `unlink`, which is just
/// as exclusive.
pub(crate) fn rename_noreplace(dir: &Dir, from: &OsStr, to: &OsStr) -> io::Result<()> {
    rootfs::crash::point("pkgdir rename");
    match rustix::fs::renameat_with(&dir.fd, from, &dir.fd, to, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(()),
        Err(Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) => {
            rustix::fs::linkat(&dir.fd, from, &dir.fd, to, AtFlags::empty())?;
            rootfs::crash::point("pkgdir unlink");
            rustix::fs::unlinkat(&dir.fd, from, AtFlags::empty())?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Renames `from` over `to` in `dir` (atomic replacement).
pub(crate) fn rename_over(dir: &Dir, from: &OsStr, to: &OsStr) -> io::Result<()> {
    rootfs::crash::point("pkgdir rename");
    Ok(rustix::fs::renameat(&dir.fd, from, &dir.fd, to)?)
}

/// Puts the temporary file `temp` in place as `name`, replacing any file of
/// that name: an unnamed file is first linked under a temporary name.
pub(crate) fn replace_with(dir: &Dir, temp: &mut Temp, name: &OsStr, base: &str) -> Result<()> {
    if temp.name.is_none() {
        temp.name = Some(link_under_temp_name(dir, &temp.file, base)?);
    }
    let from = temp.name.clone().expect("named above");
    match rename_over(dir, &from, name) {
        Ok(()) => {
            temp.name = None;
            Ok(())
        }
        Err(e) => {
            remove_temp_name(dir, &from, &temp.file);
            temp.name = None;
            Err(Error::io("rename a new file to", dir.join(name), e))
        }
    }
}

/// Removes the `.*.partial` files in `dir` that no live process holds a lock
/// on (left by a process that was killed). Returns how many were removed.
pub(crate) fn remove_stale_temps(dir: &Dir) -> Result<usize> {
    let mut removed = 0;
    for name in dir.names()? {
        if !is_temp_name(&name) {
            continue;
        }
        let Ok(fd) = rustix::fs::openat(
            &dir.fd,
            &name,
            OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
            Mode::empty(),
        ) else {
            continue;
        };
        let Ok(st) = rustix::fs::fstat(&fd) else {
            continue;
        };
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            continue;
        }
        if rootfs::lock::try_lock_fd(fd.as_fd()).unwrap_or(false)
            && names_file(dir, &name, fd.as_fd()).unwrap_or(false)
            && dir.unlink(&name).is_ok()
        {
            removed += 1;
        }
    }
    Ok(removed)
}

/// MD5, SHA-1 and length of everything in `file`, read from the start with
/// positional reads (the file position is left alone).
pub(crate) fn digest(file: &File) -> io::Result<(String, String, u64)> {
    let mut md5 = Md5::new();
    let mut sha1 = sha1::Sha1::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut off = 0u64;
    loop {
        let n = match file.read_at(&mut buf, off) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        md5.update(&buf[..n]);
        sha1.update(&buf[..n]);
        off += n as u64;
    }
    Ok((
        vdb::digest::hex(&md5.finalize()),
        vdb::digest::hex(&sha1.finalize()),
        off,
    ))
}

/// How a replaced index file gets its permissions.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IndexFileSpec {
    pub umask: u32,
    pub perms: PkgdirPerms,
    pub mtime: i64,
    pub sync: bool,
    pub allow_tmpfile: bool,
}

/// A replacement of a file, written and waiting under a temporary name for
/// [`StagedFile::commit`] to rename it over the file; dropped uncommitted,
/// it is removed.
///
/// Like Portage's `atomic_ofstream` plus `_file_permissions` and `utime`:
/// a symlink at the path is followed; the new file takes the mode, owner
/// and group of the file it replaces (or `0666 & !umask` when new), plus
/// PKGDIR's group and group rw bits; atime and mtime are `spec.mtime`.
#[derive(Debug)]
pub(crate) struct StagedFile {
    dir: Dir,
    temp: Temp,
    name: OsString,
    target: PathBuf,
}

impl StagedFile {
    pub fn new(path: &Path, data: &[u8], spec: IndexFileSpec) -> Result<StagedFile> {
        let target = match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_symlink() => {
                std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned())
            }
            _ => path.to_owned(),
        };
        let (Some(parent), Some(name)) = (target.parent(), target.file_name()) else {
            return Err(Error::io(
                "write",
                path,
                io::Error::from_raw_os_error(libc::EINVAL),
            ));
        };
        let dir = Dir::open(parent)?;
        let name = name.to_owned();
        let base = name.to_string_lossy().into_owned();
        let old = rustix::fs::statat(&dir.fd, &name, AtFlags::empty()).ok();
        let mode = old
            .as_ref()
            .map_or(0o666 & !spec.umask, |st| st.st_mode & 0o7777);
        let temp = create_temp(&dir, &base, mode & 0o777, None, spec.allow_tmpfile)?;
        let mut staged = StagedFile {
            dir,
            temp,
            name,
            target,
        };
        let err = |op: &'static str, target: &Path| {
            let target = target.to_owned();
            move |e: io::Error| Error::io(op, target, e)
        };
        let t = &staged.target;
        let file = &mut staged.temp.file;
        if let Some(st) = &old {
            let _ = rustix::fs::fchown(
                &*file,
                Some(rustix::fs::Uid::from_raw(st.st_uid)),
                Some(rustix::fs::Gid::from_raw(st.st_gid)),
            );
        }
        let _ = rustix::fs::fchown(
            &*file,
            None,
            Some(rustix::fs::Gid::from_raw(spec.perms.gid)),
        );
        rustix::fs::fchmod(&*file, Mode::from_raw_mode(mode | spec.perms.file_bits()))
            .map_err(|e| err("set the mode of a new", t)(e.into()))?;
        file.write_all(data).map_err(err("write a new", t))?;
        let ts = Timespec {
            tv_sec: spec.mtime,
            tv_nsec: 0,
        };
        rustix::fs::futimens(
            &*file,
            &Timestamps {
                last_access: ts,
                last_modification: ts,
            },
        )
        .map_err(|e| err("set the times of a new", t)(e.into()))?;
        if spec.sync {
            file.sync_all().map_err(err("fsync a new", t))?;
        }
        if staged.temp.name.is_none() {
            staged.temp.name = Some(link_under_temp_name(&staged.dir, &staged.temp.file, &base)?);
        }
        Ok(staged)
    }

    /// Renames the new file over the old one.
    pub fn commit(&mut self) -> Result<()> {
        let Some(from) = self.temp.name.clone() else {
            return Ok(());
        };
        rename_over(&self.dir, &from, &self.name)
            .map_err(|e| Error::io("rename a new file to", &self.target, e))?;
        self.temp.name = None;
        Ok(())
    }
}

impl Drop for StagedFile {
    fn drop(&mut self) {
        if let Some(n) = self.temp.name.take() {
            remove_temp_name(&self.dir, &n, &self.temp.file);
        }
    }
}

/// Links the unnamed file `file` under a new temporary name in `dir`.
fn link_under_temp_name(dir: &Dir, file: &File, base: &str) -> Result<OsString> {
    for _ in 0..1000 {
        let t = temp_name(base);
        match link_tmpfile(file, dir, &t) {
            Ok(()) => return Ok(t),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => continue,
            Err(e) => return Err(Error::io("link the new file into", &dir.path, e)),
        }
    }
    Err(Error::io(
        "link the new file into",
        &dir.path,
        io::Error::from_raw_os_error(libc::EEXIST),
    ))
}

/// Atomically replaces `path` with `data` (see [`StagedFile`]).
#[cfg(test)]
pub(crate) fn replace_file(path: &Path, data: &[u8], spec: IndexFileSpec) -> Result<()> {
    StagedFile::new(path, data, spec)?.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names() {
        let n = temp_name("foo-1.0");
        let s = n.to_str().unwrap();
        assert!(s.starts_with(".foo-1.0.") && s.ends_with(".partial"), "{s}");
        assert_eq!(s.len(), ".foo-1.0.".len() + 8 + ".partial".len());
        assert!(is_temp_name(&n));
        assert!(!is_temp_name(OsStr::new(".partial")));
        assert!(!is_temp_name(OsStr::new("foo.partial")));
        assert!(!is_temp_name(OsStr::new(".Packages.portage_lockfile")));
        assert_ne!(temp_name("x"), temp_name("x"));
    }

    #[test]
    fn stale_temps_are_removed_live_ones_kept() {
        let t = tempfile::tempdir().unwrap();
        let dir = Dir::open(t.path()).unwrap();
        // A leftover of a dead process: no lock.
        std::fs::write(t.path().join(".a.12345678.partial"), b"x").unwrap();
        // Not ours.
        std::fs::write(t.path().join("a.partial"), b"x").unwrap();
        // A live one (locked by `live`).
        let live = create_temp(&dir, "b", 0o644, None, false).unwrap();
        assert_eq!(remove_stale_temps(&dir).unwrap(), 1);
        let mut names: Vec<_> = std::fs::read_dir(t.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names.len(), 2);
        assert_eq!(names[1], "a.partial");
        assert_eq!(Some(&names[0]), live.name.as_ref());
    }

    #[test]
    fn replace_file_sets_mode_and_times() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("Packages");
        let perms = PkgdirPerms::of(t.path()).unwrap();
        for allow_tmpfile in [true, false] {
            let spec = IndexFileSpec {
                umask: 0o022,
                perms,
                mtime: 1_000_000_000,
                sync: false,
                allow_tmpfile,
            };
            replace_file(&p, b"one", spec).unwrap();
            assert_eq!(std::fs::read(&p).unwrap(), b"one");
            let st = rustix::fs::stat(&p).unwrap();
            assert_eq!(st.st_mtime, 1_000_000_000);
            std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .unwrap();
            replace_file(&p, b"two", spec).unwrap();
            let st = rustix::fs::stat(&p).unwrap();
            assert_eq!(st.st_mode & 0o7777, 0o600 | perms.file_bits());
            std::fs::remove_file(&p).unwrap();
        }
        assert_eq!(std::fs::read_dir(t.path()).unwrap().count(), 0);
    }
}

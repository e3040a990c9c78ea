//! An open directory and every operation the merge engine does relative to
//! it. Names are single path components: a name containing `/` is refused,
//! so an operation can never leave the directory it was given, and the
//! final component is never followed when it is a symlink.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use rustix::fs::{AtFlags, Mode, OFlags, RenameFlags, Timespec, Timestamps};

use crate::root::{entry_stat, EntryStat};

/// An open directory; lookups of single names relative to it never follow
/// the final symlink.
#[derive(Debug)]
pub struct DirHandle {
    fd: OwnedFd,
}

fn name_of(name: &[u8]) -> io::Result<&OsStr> {
    if name.is_empty() {
        return Ok(OsStr::new("."));
    }
    if name.contains(&b'/') || name.contains(&0) || name == b".." {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{:?} is not a single path component",
                String::from_utf8_lossy(name)
            ),
        ));
    }
    Ok(OsStr::from_bytes(name))
}

/// Timestamps with nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileTime {
    pub sec: i64,
    pub nsec: u32,
}

impl FileTime {
    fn timespec(self) -> Timespec {
        Timespec {
            tv_sec: self.sec,
            tv_nsec: i64::from(self.nsec) as _,
        }
    }
}

impl AsFd for DirHandle {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl DirHandle {
    pub(crate) fn from_fd(fd: OwnedFd) -> Self {
        DirHandle { fd }
    }

    /// Open a directory by plain path (for trees that are not a root, such
    /// as an image directory).
    pub fn open(path: &std::path::Path) -> io::Result<DirHandle> {
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(DirHandle { fd })
    }

    /// `lstat` of an entry.
    pub fn lstat(&self, name: &[u8]) -> io::Result<EntryStat> {
        let st = rustix::fs::statat(&self.fd, name_of(name)?, AtFlags::SYMLINK_NOFOLLOW)?;
        Ok(entry_stat(&st))
    }

    /// `stat` of an entry, following a final symlink (relative to this
    /// directory; absolute targets are *not* confined — use
    /// [`crate::root::Root`] for that).
    pub fn raw_stat(&self) -> io::Result<rustix::fs::Stat> {
        Ok(rustix::fs::fstat(&self.fd)?)
    }

    /// Open a regular file for reading, refusing to follow a symlink.
    pub fn open_file(&self, name: &[u8]) -> io::Result<File> {
        let fd = rustix::fs::openat(
            &self.fd,
            name_of(name)?,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(File::from(fd))
    }

    /// Open a subdirectory, refusing to follow a symlink.
    pub fn open_subdir(&self, name: &[u8]) -> io::Result<DirHandle> {
        let fd = rustix::fs::openat(
            &self.fd,
            name_of(name)?,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(DirHandle { fd })
    }

    /// Create a new file (never an existing one) for writing.
    pub fn create_file(&self, name: &[u8], mode: u32) -> io::Result<File> {
        crate::crash::point("create");
        let fd = rustix::fs::openat(
            &self.fd,
            name_of(name)?,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode & 0o777),
        )?;
        Ok(File::from(fd))
    }

    /// The target of a symlink.
    pub fn readlink(&self, name: &[u8]) -> io::Result<Vec<u8>> {
        let t = rustix::fs::readlinkat(&self.fd, name_of(name)?, Vec::new())?;
        Ok(t.into_bytes())
    }

    /// The names in this directory (without `.` and `..`), unsorted.
    pub fn list(&self) -> io::Result<Vec<Vec<u8>>> {
        let fd = rustix::fs::openat(
            &self.fd,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let mut dir = rustix::fs::Dir::read_from(fd)?;
        let mut out = Vec::new();
        while let Some(ent) = dir.read() {
            let ent = ent?;
            let n = ent.file_name().to_bytes();
            if n != b"." && n != b".." {
                out.push(n.to_vec());
            }
        }
        Ok(out)
    }

    /// `mkdir`.
    pub fn mkdir(&self, name: &[u8], mode: u32) -> io::Result<()> {
        crate::crash::point("mkdir");
        Ok(rustix::fs::mkdirat(
            &self.fd,
            name_of(name)?,
            Mode::from_raw_mode(mode & 0o7777),
        )?)
    }

    /// `symlink(target, name)`.
    pub fn symlink(&self, target: &[u8], name: &[u8]) -> io::Result<()> {
        crate::crash::point("symlink");
        Ok(rustix::fs::symlinkat(
            OsStr::from_bytes(target),
            &self.fd,
            name_of(name)?,
        )?)
    }

    /// `mknod` of a FIFO or device node (`mode` carries the file type).
    pub fn mknod(&self, name: &[u8], mode: u32, rdev: u64) -> io::Result<()> {
        crate::crash::point("mknod");
        let ft = rustix::fs::FileType::from_raw_mode(mode);
        Ok(rustix::fs::mknodat(
            &self.fd,
            name_of(name)?,
            ft,
            Mode::from_raw_mode(mode & 0o7777),
            rdev,
        )?)
    }

    /// Rename `name` here to `to_name` in `to`, atomically replacing a
    /// non-directory there.
    pub fn rename(&self, name: &[u8], to: &DirHandle, to_name: &[u8]) -> io::Result<()> {
        crate::crash::point("rename");
        Ok(rustix::fs::renameat(
            &self.fd,
            name_of(name)?,
            &to.fd,
            name_of(to_name)?,
        )?)
    }

    /// Rename, failing with `EEXIST` if `to_name` exists.
    pub fn rename_noreplace(&self, name: &[u8], to: &DirHandle, to_name: &[u8]) -> io::Result<()> {
        crate::crash::point("rename_noreplace");
        Ok(rustix::fs::renameat_with(
            &self.fd,
            name_of(name)?,
            &to.fd,
            name_of(to_name)?,
            RenameFlags::NOREPLACE,
        )?)
    }

    /// Swap two names atomically (`RENAME_EXCHANGE`).
    pub fn rename_exchange(&self, name: &[u8], to: &DirHandle, to_name: &[u8]) -> io::Result<()> {
        crate::crash::point("rename_exchange");
        Ok(rustix::fs::renameat_with(
            &self.fd,
            name_of(name)?,
            &to.fd,
            name_of(to_name)?,
            RenameFlags::EXCHANGE,
        )?)
    }

    /// Hard-link `name` here as `to_name` in `to`.
    pub fn link(&self, name: &[u8], to: &DirHandle, to_name: &[u8]) -> io::Result<()> {
        crate::crash::point("link");
        Ok(rustix::fs::linkat(
            &self.fd,
            name_of(name)?,
            &to.fd,
            name_of(to_name)?,
            AtFlags::empty(),
        )?)
    }

    /// Remove a non-directory.
    pub fn unlink(&self, name: &[u8]) -> io::Result<()> {
        crate::crash::point("unlink");
        Ok(rustix::fs::unlinkat(
            &self.fd,
            name_of(name)?,
            AtFlags::empty(),
        )?)
    }

    /// Remove an empty directory.
    pub fn rmdir(&self, name: &[u8]) -> io::Result<()> {
        crate::crash::point("rmdir");
        Ok(rustix::fs::unlinkat(
            &self.fd,
            name_of(name)?,
            AtFlags::REMOVEDIR,
        )?)
    }

    /// `lchown`.
    pub fn lchown(&self, name: &[u8], uid: u32, gid: u32) -> io::Result<()> {
        crate::crash::point("lchown");
        Ok(rustix::fs::chownat(
            &self.fd,
            name_of(name)?,
            Some(rustix::fs::Uid::from_raw(uid)),
            Some(rustix::fs::Gid::from_raw(gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )?)
    }

    /// `chmod` of a non-symlink (symlinks have no mode on Linux).
    pub fn chmod(&self, name: &[u8], mode: u32) -> io::Result<()> {
        crate::crash::point("chmod");
        Ok(rustix::fs::chmodat(
            &self.fd,
            name_of(name)?,
            Mode::from_raw_mode(mode & 0o7777),
            AtFlags::empty(),
        )?)
    }

    /// Set atime and mtime (nanoseconds), not following a final symlink.
    pub fn set_times(&self, name: &[u8], atime: FileTime, mtime: FileTime) -> io::Result<()> {
        crate::crash::point("set_times");
        Ok(rustix::fs::utimensat(
            &self.fd,
            name_of(name)?,
            &Timestamps {
                last_access: atime.timespec(),
                last_modification: mtime.timespec(),
            },
            AtFlags::SYMLINK_NOFOLLOW,
        )?)
    }

    /// `syncfs` on the filesystem holding this directory.
    pub fn syncfs(&self) -> io::Result<()> {
        Ok(rustix::fs::syncfs(&self.fd)?)
    }

    /// `fsync` this directory (makes renames in it durable).
    pub fn fsync(&self) -> io::Result<()> {
        Ok(rustix::fs::fsync(&self.fd)?)
    }
}

/// Set a file's owner, then its mode (in that order, so that a set-id bit
/// survives: `chown` clears it).
pub fn set_owner_mode(f: &File, uid: u32, gid: u32, mode: u32) -> io::Result<()> {
    rustix::fs::fchown(
        f,
        Some(rustix::fs::Uid::from_raw(uid)),
        Some(rustix::fs::Gid::from_raw(gid)),
    )?;
    rustix::fs::fchmod(f, Mode::from_raw_mode(mode & 0o7777))?;
    Ok(())
}

/// Set a file's times through its descriptor.
pub fn set_file_times(f: &File, atime: FileTime, mtime: FileTime) -> io::Result<()> {
    Ok(rustix::fs::futimens(
        f,
        &Timestamps {
            last_access: atime.timespec(),
            last_modification: mtime.timespec(),
        },
    )?)
}

/// The extended attributes of an open file, as (name, value) pairs.
pub fn read_xattrs(f: BorrowedFd<'_>) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let size = match rustix::fs::flistxattr_query(f) {
        Ok(n) => n,
        Err(rustix::io::Errno::NOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    if size == 0 {
        return Ok(Vec::new());
    }
    let mut names = Vec::with_capacity(size);
    rustix::fs::flistxattr(f, rustix::buffer::spare_capacity(&mut names))?;
    let mut out = Vec::new();
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let name_os = OsStr::from_bytes(name);
        let len = rustix::fs::fgetxattr_query(f, name_os)?;
        let mut value = Vec::with_capacity(len);
        if len > 0 {
            rustix::fs::fgetxattr(f, name_os, rustix::buffer::spare_capacity(&mut value))?;
        }
        out.push((name.to_vec(), value));
    }
    Ok(out)
}

/// Set extended attributes on an open file.
pub fn write_xattrs(f: BorrowedFd<'_>, attrs: &[(Vec<u8>, Vec<u8>)]) -> io::Result<()> {
    for (name, value) in attrs {
        rustix::fs::fsetxattr(
            f,
            OsStr::from_bytes(name),
            value,
            rustix::fs::XattrFlags::empty(),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_single_components() {
        let d = tempfile::tempdir().unwrap();
        let h = DirHandle::open(d.path()).unwrap();
        for bad in [&b"a/b"[..], b"..", b"/etc"] {
            assert_eq!(
                h.mkdir(bad, 0o755).unwrap_err().kind(),
                io::ErrorKind::InvalidInput
            );
        }
        h.mkdir(b"x", 0o755).unwrap();
        let sub = h.open_subdir(b"x").unwrap();
        sub.symlink(b"/etc/passwd", b"l").unwrap();
        assert_eq!(sub.readlink(b"l").unwrap(), b"/etc/passwd");
        assert!(
            sub.open_file(b"l").is_err(),
            "final symlinks are not followed"
        );
        let f = sub.create_file(b"f", 0o600).unwrap();
        write_xattrs(f.as_fd(), &[(b"user.test".to_vec(), b"v".to_vec())]).unwrap();
        assert_eq!(
            read_xattrs(f.as_fd()).unwrap(),
            vec![(b"user.test".to_vec(), b"v".to_vec())]
        );
        sub.rename(b"f", &h, b"g").unwrap();
        assert_eq!(h.lstat(b"g").unwrap().kind, crate::root::FileKind::Regular);
        let mut names = h.list().unwrap();
        names.sort();
        assert_eq!(names, vec![b"g".to_vec(), b"x".to_vec()]);
    }
}

//! A root filesystem opened once, with lookups confined to it.
//!
//! Paths inside the root are resolved with `openat2(RESOLVE_IN_ROOT)`, so an
//! absolute symlink such as `/lib -> /usr/lib` resolves inside the root, as
//! in a chroot, and `..` cannot climb out. When `openat2` is unavailable
//! (Linux < 5.6, some seccomp profiles) the path is walked one component at
//! a time with `O_NOFOLLOW`, resolving symlinks by hand and clamping at the
//! root.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

pub use crate::dir::DirHandle;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{Mode, OFlags, ResolveFlags};

/// Device and inode: the identity of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

/// How many symlinks a lookup may follow (as the kernel's MAXSYMLINKS).
const MAX_SYMLINKS: usize = 40;

static NO_OPENAT2: AtomicBool = AtomicBool::new(false);
static CHECKED_ENV: std::sync::Once = std::sync::Once::new();

/// Set `VARTREE_NO_OPENAT2=1` to force the component-walk fallback (tests
/// use it to run whole merges on the path taken by kernels without
/// `openat2`).
fn openat2_disabled() -> bool {
    CHECKED_ENV.call_once(|| {
        if std::env::var_os("VARTREE_NO_OPENAT2").is_some_and(|v| v == "1") {
            NO_OPENAT2.store(true, Ordering::Relaxed);
        }
    });
    NO_OPENAT2.load(Ordering::Relaxed)
}

/// An open root directory.
#[derive(Debug)]
pub struct Root {
    path: PathBuf,
    fd: OwnedFd,
}

impl Root {
    /// Open `path` as a root.
    pub fn open(path: impl Into<PathBuf>) -> io::Result<Root> {
        let path = path.into();
        let fd = rustix::fs::open(
            &path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Root { path, fd })
    }

    /// The root's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Open a path inside the root (absolute or relative, both taken
    /// relative to the root) as an `O_PATH` descriptor, following symlinks
    /// inside the root.
    pub fn open_path(&self, path: &[u8]) -> io::Result<OwnedFd> {
        let rel = strip_slashes(path);
        if !openat2_disabled() {
            match rustix::fs::openat2(
                &self.fd,
                if rel.is_empty() {
                    OsStr::new(".")
                } else {
                    OsStr::from_bytes(rel)
                },
                OFlags::PATH | OFlags::CLOEXEC,
                Mode::empty(),
                ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
            ) {
                Ok(fd) => return Ok(fd),
                Err(rustix::io::Errno::NOSYS) | Err(rustix::io::Errno::PERM) => {
                    NO_OPENAT2.store(true, Ordering::Relaxed);
                }
                Err(e) => return Err(e.into()),
            }
        }
        self.open_path_fallback(rel)
    }

    /// The component-by-component walk used when `openat2` is unavailable.
    /// Public so that tests can exercise it on kernels that have `openat2`.
    pub fn open_path_fallback(&self, path: &[u8]) -> io::Result<OwnedFd> {
        let mut stack: Vec<OwnedFd> = Vec::new();
        let mut pending: Vec<Vec<u8>> = components_rev(path);
        let mut links = 0;
        let dup_root = || rustix::io::fcntl_dupfd_cloexec(&self.fd, 0);
        let mut cur: OwnedFd = dup_root()?;
        while let Some(c) = pending.pop() {
            match c.as_slice() {
                b"" | b"." => continue,
                b".." => {
                    cur = match stack.pop() {
                        Some(parent) => parent,
                        None => dup_root()?,
                    };
                    continue;
                }
                _ => {}
            }
            let name = OsStr::from_bytes(&c);
            let next = rustix::fs::openat(
                &cur,
                name,
                OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            let st = rustix::fs::fstat(&next)?;
            if rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Symlink {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(rustix::io::Errno::LOOP.into());
                }
                let target = rustix::fs::readlinkat(&cur, name, Vec::new())?;
                let target = target.as_bytes();
                if target.starts_with(b"/") {
                    stack.clear();
                    cur = dup_root()?;
                }
                pending.extend(components_rev(target));
                continue;
            }
            stack.push(cur);
            cur = next;
        }
        Ok(cur)
    }

    /// `stat` a path inside the root, following symlinks inside the root.
    pub fn stat(&self, path: &[u8]) -> io::Result<rustix::fs::Stat> {
        let fd = self.open_path(path)?;
        Ok(rustix::fs::fstat(fd.as_fd())?)
    }

    /// Open a directory inside the root (following symlinks inside the root)
    /// for lookups relative to it.
    pub fn open_dir(&self, path: &[u8]) -> io::Result<DirHandle> {
        let fd = self.open_path(path)?;
        let fd = rustix::fs::openat(
            &fd,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(DirHandle::from_fd(fd))
    }

    /// The identity of a path inside the root, following symlinks.
    pub fn file_id(&self, path: &[u8]) -> io::Result<FileId> {
        let st = self.stat(path)?;
        Ok(FileId {
            dev: st.st_dev,
            ino: st.st_ino,
        })
    }
}

/// Live directories opened by path inside a root, each once (up to a
/// bound, so that a long walk does not exhaust file descriptors).
pub struct DirCache<'r> {
    root: &'r Root,
    cache: std::collections::HashMap<Vec<u8>, Option<std::rc::Rc<DirHandle>>>,
}

impl<'r> DirCache<'r> {
    pub fn new(root: &'r Root) -> Self {
        DirCache {
            root,
            cache: std::collections::HashMap::new(),
        }
    }

    /// The directory at `path` (resolved inside the root), or `None` when
    /// it cannot be opened.
    pub fn get(&mut self, path: &[u8]) -> Option<std::rc::Rc<DirHandle>> {
        if self.cache.len() > 256 && !self.cache.contains_key(path) {
            self.cache.clear();
        }
        self.cache
            .entry(path.to_vec())
            .or_insert_with(|| self.root.open_dir(path).ok().map(std::rc::Rc::new))
            .clone()
    }

    /// Forget every open directory.
    pub fn clear(&mut self) {
        self.cache.clear();
    }

    /// The root.
    pub fn root(&self) -> &'r Root {
        self.root
    }
}

/// What `lstat` says of a directory entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryStat {
    pub kind: FileKind,
    pub size: u64,
    /// Modification time, whole seconds.
    pub mtime: i64,
    pub mtime_nsec: u32,
    pub id: FileId,
    /// Full `st_mode` (type and permission bits).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u64,
    pub nlink: u64,
}

/// The type of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Regular,
    Directory,
    Symlink,
    Fifo,
    CharDevice,
    BlockDevice,
    Socket,
    Unknown,
}

impl FileKind {
    /// The kind encoded in an `st_mode`.
    pub fn from_raw_mode(mode: u32) -> FileKind {
        Self::from_mode(mode)
    }

    fn from_mode(mode: u32) -> FileKind {
        use rustix::fs::FileType as T;
        match T::from_raw_mode(mode) {
            T::RegularFile => FileKind::Regular,
            T::Directory => FileKind::Directory,
            T::Symlink => FileKind::Symlink,
            T::Fifo => FileKind::Fifo,
            T::CharacterDevice => FileKind::CharDevice,
            T::BlockDevice => FileKind::BlockDevice,
            T::Socket => FileKind::Socket,
            T::Unknown => FileKind::Unknown,
        }
    }
}

/// An [`EntryStat`] from a raw `stat` result.
pub fn entry_stat(st: &rustix::fs::Stat) -> EntryStat {
    EntryStat {
        kind: FileKind::from_mode(st.st_mode),
        size: u64::try_from(st.st_size).unwrap_or(0),
        mtime: st.st_mtime,
        mtime_nsec: u32::try_from(st.st_mtime_nsec).unwrap_or(0),
        id: FileId {
            dev: st.st_dev,
            ino: st.st_ino,
        },
        mode: st.st_mode,
        uid: st.st_uid,
        gid: st.st_gid,
        rdev: st.st_rdev,
        #[allow(clippy::useless_conversion)] // c_ushort on some targets
        nlink: u64::from(st.st_nlink),
    }
}

fn strip_slashes(p: &[u8]) -> &[u8] {
    let mut p = p;
    while let Some(r) = p.strip_prefix(b"/") {
        p = r;
    }
    p
}

/// Path components in reverse order (so that `pop` yields them in order).
fn components_rev(p: &[u8]) -> Vec<Vec<u8>> {
    p.split(|&b| b == b'/')
        .filter(|c| !c.is_empty())
        .rev()
        .map(<[u8]>::to_vec)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tree() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("usr/lib")).unwrap();
        std::fs::write(r.join("usr/lib/libx.so"), b"x").unwrap();
        symlink("usr/lib", r.join("lib")).unwrap();
        symlink("/usr/lib", r.join("abslib")).unwrap();
        symlink("../../../../../../..", r.join("up")).unwrap();
        d
    }

    #[test]
    fn resolves_inside_root_both_ways() {
        let d = tree();
        let root = Root::open(d.path()).unwrap();
        let want = root.file_id(b"/usr/lib").unwrap();
        for p in [&b"/lib"[..], b"abslib", b"/up/usr/lib", b"/usr/../../lib"] {
            assert_eq!(
                root.file_id(p).unwrap(),
                want,
                "{}",
                String::from_utf8_lossy(p)
            );
            let fd = root.open_path_fallback(p).unwrap();
            let st = rustix::fs::fstat(&fd).unwrap();
            assert_eq!((st.st_dev, st.st_ino), (want.dev, want.ino));
        }
        assert_eq!(root.file_id(b"/").unwrap(), root.file_id(b"/up").unwrap());
        assert!(root.file_id(b"/missing").is_err());
        assert!(root.open_path_fallback(b"/missing/x").is_err());
    }

    #[test]
    fn symlink_loops_fail() {
        let d = tempfile::tempdir().unwrap();
        symlink("b", d.path().join("a")).unwrap();
        symlink("a", d.path().join("b")).unwrap();
        let root = Root::open(d.path()).unwrap();
        assert!(root.stat(b"/a").is_err());
        assert!(root.open_path_fallback(b"/a").is_err());
    }
}

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

/// How [`Root::resolve`] treats a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolve {
    /// Follow every symlink, a final one too.
    Follow,
    /// Follow every symlink but a final one: the result names the last
    /// component itself (for a path that is removed, renamed or created).
    NoFollowLast,
    /// Follow every symlink and create the missing directories (`mkdir -p`,
    /// mode `0777` less the umask), each by `mkdirat` in its parent as it is
    /// found missing. A missing directory reached through a symlink (a
    /// symlink whose target does not exist inside the root) is refused
    /// rather than created, as `mkdir -p` (and Portage's `makedirs`) do.
    CreateDirs,
    /// As [`Resolve::CreateDirs`], but create nothing: succeeds when
    /// creating would (the path is a directory, or its missing part can be
    /// created).
    CheckDirs,
}

/// Where a path inside a root leads when every symlink is resolved inside
/// the root, as under chroot (see [`Root::resolve`]).
#[derive(Debug, Clone)]
pub struct Resolved {
    host: PathBuf,
    canonical: Vec<u8>,
    missing: usize,
    dangling: Option<(Vec<u8>, Vec<u8>)>,
    anchor: FileId,
    anchor_host: PathBuf,
    root: PathBuf,
}

impl Resolved {
    /// The host path: the root's path joined with [`Resolved::canonical`].
    /// Its components below the root were real directories (no symlink, no
    /// `.` or `..`) when it was resolved, and the missing ones did not exist.
    pub fn host_path(&self) -> &Path {
        &self.host
    }

    /// The path inside the root (`/` followed by its components).
    pub fn canonical(&self) -> &[u8] {
        &self.canonical
    }

    /// How many trailing components do not exist (0: the path exists).
    pub fn missing(&self) -> usize {
        self.missing
    }

    /// When a missing component was reached through a symlink: the link
    /// (its path inside the root) and its target.
    pub fn dangling(&self) -> Option<(&[u8], &[u8])> {
        self.dangling
            .as_ref()
            .map(|(l, t)| (l.as_slice(), t.as_slice()))
    }

    /// Check that the host path still leads to what the resolution found:
    /// the host's lookup of its existing part (from `/`, following
    /// symlinks, as every later path operation does) must reach the same
    /// file. Called by [`Root::resolve`] itself; call it again right before
    /// using a path kept for a while.
    pub fn verify(&self) -> Result<(), ResolveError> {
        let changed = || ResolveError::Changed {
            root: self.root.clone(),
            at: self.canonical.clone(),
        };
        match std::fs::symlink_metadata(&self.anchor_host) {
            Ok(m) => {
                use std::os::unix::fs::MetadataExt;
                if (m.dev(), m.ino()) == (self.anchor.dev, self.anchor.ino) {
                    Ok(())
                } else {
                    Err(changed())
                }
            }
            Err(_) => Err(changed()),
        }
    }
}

/// Why a path cannot be resolved inside a root. Paths are shown as host
/// paths (the root's path joined with the path inside it).
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error(
        "{} is a symlink to {}, which leads to {}: that does not exist inside ROOT (symlinks in ROOT are resolved inside ROOT, as under chroot); create it or correct the symlink",
        host(root, link),
        String::from_utf8_lossy(target),
        host(root, missing)
    )]
    Dangling {
        root: PathBuf,
        link: Vec<u8>,
        target: Vec<u8>,
        missing: Vec<u8>,
    },
    #[error(
        "{} is not a directory (resolved inside ROOT, as under chroot)",
        host(root, at)
    )]
    NotADirectory { root: PathBuf, at: Vec<u8> },
    #[error(
        "{}: too many levels of symbolic links (resolved inside ROOT, as under chroot); correct the symlink",
        host(root, at)
    )]
    Loop { root: PathBuf, at: Vec<u8> },
    #[error(
        "{} changed while it was being resolved inside ROOT (a concurrent rename or symlink); try again",
        host(root, at)
    )]
    Changed { root: PathBuf, at: Vec<u8> },
    #[error("cannot {op} {}: {source}", host(root, at))]
    Io {
        root: PathBuf,
        op: &'static str,
        at: Vec<u8>,
        #[source]
        source: io::Error,
    },
}

/// A path inside a root as a host path.
fn host(root: &Path, inside: &[u8]) -> String {
    join_host(root, inside).display().to_string()
}

fn join_host(root: &Path, inside: &[u8]) -> PathBuf {
    let rel = strip_slashes(inside);
    if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(OsStr::from_bytes(rel))
    }
}

fn in_root(names: &[Vec<u8>]) -> Vec<u8> {
    let mut p = Vec::new();
    for n in names {
        p.push(b'/');
        p.extend_from_slice(n);
    }
    if p.is_empty() {
        p.push(b'/');
    }
    p
}

impl Root {
    /// Resolve a path inside the root (absolute or relative, both taken
    /// relative to the root) to the host path of what it names, following
    /// each symlink inside the root as under chroot: an absolute target
    /// starts again at the root, `..` stops at it. The walk goes one
    /// component at a time (`openat(O_PATH|O_NOFOLLOW)` from the root's
    /// descriptor), so it needs no `openat2` and yields the canonical path;
    /// the result is then [verified](Resolved::verify) against the host's
    /// own lookup of that path.
    ///
    /// Missing trailing components are kept as they are (they do not
    /// exist, so no symlink can be among them); with
    /// [`Resolve::CreateDirs`] they are created. Errors: a component that is
    /// not a directory where one is needed, a symlink loop, a symlink
    /// leading to a missing directory with [`Resolve::CreateDirs`], an I/O
    /// error.
    ///
    /// This is for paths the caller then uses by host path (`std::fs`):
    /// between this call and that use, a concurrent change inside ROOT (a
    /// directory replaced by a symlink) is not detected. Operations that
    /// must be immune use the directory handles ([`Root::open_dir`]).
    pub fn resolve(&self, path: &[u8], how: Resolve) -> Result<Resolved, ResolveError> {
        // A concurrent process may remove a directory on the way (another
        // vartree removing its emptied journal directory) between the walk
        // and the check: resolve again (each try is checked in full) before
        // giving up.
        let mut tries = 0;
        loop {
            match self.resolve_once(path, how) {
                Err(ResolveError::Changed { .. }) if tries < 100 => {
                    tries += 1;
                    // Yield first; then back off a little, so that a try
                    // is not cut by the scheduler on a loaded machine.
                    if tries < 10 {
                        std::thread::yield_now();
                    } else {
                        std::thread::sleep(std::time::Duration::from_micros(10 * tries));
                    }
                }
                other => return other,
            }
        }
    }

    fn resolve_once(&self, path: &[u8], how: Resolve) -> Result<Resolved, ResolveError> {
        let root = &self.path;
        let io_err = |op: &'static str, at: Vec<u8>, e: io::Error| ResolveError::Io {
            root: root.clone(),
            op,
            at,
            source: e,
        };
        let dup_root = || {
            rustix::io::fcntl_dupfd_cloexec(&self.fd, 0)
                .map_err(|e| io_err("open", b"/".to_vec(), e.into()))
        };
        let at_name = |names: &[Vec<u8>], c: &[u8]| {
            let mut n = names.to_vec();
            n.push(c.to_vec());
            in_root(&n)
        };
        let mut names: Vec<Vec<u8>> = Vec::new();
        let mut dirs: Vec<OwnedFd> = vec![dup_root()?];
        let mut pending = components_rev(path);
        // Symlink expansions: the positions in `pending` their target's
        // components took, the link and its target.
        let mut expansions: Vec<(usize, usize, Vec<u8>, Vec<u8>)> = Vec::new();
        let mut links = 0;
        let mut last: Option<FileId> = None;
        let mut missing: Vec<Vec<u8>> = Vec::new();
        let mut dangling = None;
        while let Some(c) = pending.pop() {
            match c.as_slice() {
                b"." => continue,
                b".." => {
                    if names.pop().is_some() {
                        dirs.pop();
                    }
                    continue;
                }
                _ => {}
            }
            let Some(cur) = dirs.last() else {
                return Err(io_err(
                    "open",
                    b"/".to_vec(),
                    io::ErrorKind::NotFound.into(),
                ));
            };
            let name = OsStr::from_bytes(&c);
            let fd = match rustix::fs::openat(
                cur,
                name,
                OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            ) {
                Ok(fd) => fd,
                Err(rustix::io::Errno::NOENT) => {
                    let pos = pending.len();
                    let through = expansions
                        .iter()
                        .rev()
                        .find(|(first, end, _, _)| *first <= pos && pos < *end)
                        .map(|(_, _, link, target)| (link.clone(), target.clone()));
                    let create = how == Resolve::CreateDirs;
                    if create || how == Resolve::CheckDirs {
                        if let Some((link, target)) = through {
                            return Err(ResolveError::Dangling {
                                root: root.clone(),
                                link,
                                target,
                                missing: at_name(&names, &c),
                            });
                        }
                    }
                    if create {
                        match rustix::fs::mkdirat(cur, name, Mode::from_raw_mode(0o777)) {
                            // Created, or created meanwhile by someone
                            // else: looked up again (and followed if it
                            // is a symlink now).
                            Ok(()) | Err(rustix::io::Errno::EXIST) => {
                                pending.push(c);
                                continue;
                            }
                            Err(e) => {
                                return Err(io_err(
                                    "create directory",
                                    at_name(&names, &c),
                                    e.into(),
                                ))
                            }
                        }
                    }
                    dangling = through;
                    missing.push(c);
                    while let Some(r) = pending.pop() {
                        match r.as_slice() {
                            b"." => {}
                            b".." => {
                                // `missing/..`: the lookup fails at `missing`.
                                return Err(io_err(
                                    "look up",
                                    at_name(&names, &missing[0]),
                                    io::ErrorKind::NotFound.into(),
                                ));
                            }
                            _ => missing.push(r),
                        }
                    }
                    break;
                }
                Err(e) => return Err(io_err("look up", at_name(&names, &c), e.into())),
            };
            let st = rustix::fs::fstat(&fd)
                .map_err(|e| io_err("stat", at_name(&names, &c), e.into()))?;
            let id = FileId {
                dev: st.st_dev,
                ino: st.st_ino,
            };
            match rustix::fs::FileType::from_raw_mode(st.st_mode) {
                rustix::fs::FileType::Symlink
                    if !(pending.is_empty() && how == Resolve::NoFollowLast) =>
                {
                    links += 1;
                    if links > MAX_SYMLINKS {
                        return Err(ResolveError::Loop {
                            root: root.clone(),
                            at: at_name(&names, &c),
                        });
                    }
                    let target = rustix::fs::readlinkat(cur, name, Vec::new())
                        .map_err(|e| io_err("read symlink", at_name(&names, &c), e.into()))?
                        .into_bytes();
                    let link = at_name(&names, &c);
                    if target.starts_with(b"/") {
                        names.clear();
                        dirs.truncate(1);
                    }
                    let first = pending.len();
                    pending.extend(components_rev(&target));
                    expansions.push((first, pending.len(), link, target));
                }
                rustix::fs::FileType::Directory => {
                    names.push(c);
                    dirs.push(fd);
                }
                _ => {
                    if pending.iter().any(|p| p.as_slice() != b".")
                        || matches!(how, Resolve::CreateDirs | Resolve::CheckDirs)
                    {
                        return Err(ResolveError::NotADirectory {
                            root: root.clone(),
                            at: at_name(&names, &c),
                        });
                    }
                    names.push(c);
                    last = Some(id);
                    break;
                }
            }
        }
        let anchor_host = join_host(root, &in_root(&names));
        let anchor = match last {
            Some(id) => id,
            None => {
                let dir = dirs
                    .last()
                    .ok_or_else(|| io_err("open", b"/".to_vec(), io::ErrorKind::NotFound.into()))?;
                let st = rustix::fs::fstat(dir)
                    .map_err(|e| io_err("stat", in_root(&names), e.into()))?;
                FileId {
                    dev: st.st_dev,
                    ino: st.st_ino,
                }
            }
        };
        let n_missing = missing.len();
        names.extend(missing);
        let canonical = in_root(&names);
        let r = Resolved {
            host: join_host(root, &canonical),
            canonical,
            missing: n_missing,
            dangling,
            anchor,
            anchor_host,
            root: root.clone(),
        };
        r.verify()?;
        Ok(r)
    }
}

/// Live directories opened by path inside a root, each once (up to a
/// bound, so that a long walk does not exhaust file descriptors).
pub struct DirCache<'r> {
    root: &'r Root,
    cache: std::collections::HashMap<Vec<u8>, Option<std::rc::Rc<DirHandle>>>,
    /// At most this many directories are kept open.
    limit: usize,
}

impl<'r> DirCache<'r> {
    pub fn new(root: &'r Root) -> Self {
        Self::with_limit(root, 256)
    }

    /// A cache that keeps at most `limit` directories open (for one of
    /// several threads, each with its own cache).
    pub fn with_limit(root: &'r Root, limit: usize) -> Self {
        DirCache {
            root,
            cache: std::collections::HashMap::new(),
            limit: limit.max(1),
        }
    }

    /// The directory at `path` (resolved inside the root), or `None` when
    /// it cannot be opened.
    pub fn get(&mut self, path: &[u8]) -> Option<std::rc::Rc<DirHandle>> {
        if self.cache.len() >= self.limit && !self.cache.contains_key(path) {
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
    fn resolve_gives_the_path_inside_the_root() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path().join("root");
        std::fs::create_dir_all(r.join("data/var/db")).unwrap();
        std::fs::write(r.join("data/file"), b"").unwrap();
        symlink("data/var", r.join("var")).unwrap();
        symlink("/data/var/db", r.join("absdb")).unwrap();
        symlink("../../../../outside", r.join("data/up")).unwrap();
        symlink("/nowhere/x", r.join("dangling")).unwrap();
        symlink("self", r.join("self")).unwrap();
        std::fs::create_dir(d.path().join("outside")).unwrap();
        let root = Root::open(&r).unwrap();
        let res = |p: &[u8], how| root.resolve(p, how);
        let canon =
            |p: &[u8], how| String::from_utf8(res(p, how).unwrap().canonical().to_vec()).unwrap();
        assert_eq!(canon(b"var/db/pkg", Resolve::Follow), "/data/var/db/pkg");
        assert_eq!(res(b"var/db/pkg", Resolve::Follow).unwrap().missing(), 1);
        assert_eq!(
            res(b"/var/db", Resolve::Follow).unwrap().host_path(),
            r.join("data/var/db")
        );
        assert_eq!(canon(b"absdb/x", Resolve::Follow), "/data/var/db/x");
        assert_eq!(canon(b"/", Resolve::Follow), "/");
        assert_eq!(res(b"", Resolve::Follow).unwrap().host_path(), r);
        // `..` stops at the root: the escape resolves inside it.
        assert_eq!(canon(b"data/up/y", Resolve::Follow), "/outside/y");
        let up = res(b"data/up/y", Resolve::Follow).unwrap();
        assert_eq!(up.missing(), 2);
        assert_eq!(up.dangling().unwrap().0, b"/data/up");
        assert!(matches!(
            res(b"data/up/y", Resolve::CreateDirs),
            Err(ResolveError::Dangling { .. })
        ));
        assert!(!d.path().join("outside/y").exists());
        assert!(!r.join("outside").exists());
        let e = res(b"dangling/z", Resolve::CreateDirs)
            .unwrap_err()
            .to_string();
        assert!(e.contains(&r.join("dangling").display().to_string()), "{e}");
        assert!(e.contains("inside ROOT"), "{e}");
        // A final symlink is named itself with NoFollowLast.
        assert_eq!(canon(b"var", Resolve::NoFollowLast), "/var");
        assert_eq!(canon(b"var/db", Resolve::NoFollowLast), "/data/var/db");
        assert_eq!(canon(b"dangling", Resolve::NoFollowLast), "/dangling");
        assert_eq!(
            res(b"dangling", Resolve::NoFollowLast).unwrap().missing(),
            0
        );
        // Errors.
        assert!(matches!(
            res(b"self/x", Resolve::Follow),
            Err(ResolveError::Loop { .. })
        ));
        assert!(matches!(
            res(b"data/file/x", Resolve::Follow),
            Err(ResolveError::NotADirectory { .. })
        ));
        assert!(matches!(
            res(b"data/file", Resolve::CreateDirs),
            Err(ResolveError::NotADirectory { .. })
        ));
        assert_eq!(canon(b"data/file", Resolve::Follow), "/data/file");
        // A check creates nothing, and refuses what creation would.
        let chk = res(b"var/lib/portage", Resolve::CheckDirs).unwrap();
        assert_eq!(chk.missing(), 2);
        assert!(!r.join("data/var/lib").exists());
        assert!(matches!(
            res(b"dangling/z", Resolve::CheckDirs),
            Err(ResolveError::Dangling { .. })
        ));
        assert!(matches!(
            res(b"data/file", Resolve::CheckDirs),
            Err(ResolveError::NotADirectory { .. })
        ));
        // Creation, through an existing symlink.
        let c = res(b"var/lib/portage", Resolve::CreateDirs).unwrap();
        assert_eq!(c.canonical(), b"/data/var/lib/portage");
        assert_eq!(c.missing(), 0);
        assert!(r.join("data/var/lib/portage").is_dir());
        c.verify().unwrap();
        // A replacement that still leads to the same directory is fine; one
        // that leads elsewhere is noticed.
        std::fs::rename(r.join("data/var/lib"), r.join("data/var/lib2")).unwrap();
        symlink("lib2", r.join("data/var/lib")).unwrap();
        c.verify().unwrap();
        std::fs::remove_file(r.join("data/var/lib")).unwrap();
        symlink(d.path().join("outside"), r.join("data/var/lib")).unwrap();
        std::fs::create_dir(d.path().join("outside/portage")).unwrap();
        assert!(matches!(c.verify(), Err(ResolveError::Changed { .. })));
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

    /// A directory that another process keeps removing (when empty) and
    /// creating again, as parallel vartree processes do with the journal
    /// directory: creating it through `resolve` succeeds every time.
    #[test]
    fn create_dirs_survives_a_concurrent_rmdir() {
        // On tmpfs when there is one: on a disk busy writing back, a single
        // mkdir can take longer than the remover's period.
        let d = tempfile::tempdir_in("/dev/shm").unwrap_or_else(|_| tempfile::tempdir().unwrap());
        let root = Root::open(d.path()).unwrap();
        std::fs::create_dir_all(d.path().join("var/db")).unwrap();
        let target = d.path().join("var/db/.j");
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                // Far more often than parallel vartree processes do (once
                // per transaction each), but not faster than a debug build
                // on a loaded machine can resolve the path at all.
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = std::fs::remove_dir(&target);
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
            });
            for i in 0..3000 {
                if let Err(e) = root.resolve(b"/var/db/.j", Resolve::CreateDirs) {
                    stop.store(true, std::sync::atomic::Ordering::Relaxed);
                    panic!("try {i}: {e}");
                }
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        });
    }
}

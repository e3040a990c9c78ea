//! quickpkg: a binary package of an installed package, made from the live
//! files its CONTENTS lists (Portage's `bin/quickpkg`, `dblink.quickpkg`,
//! `tar_contents`, `gpkg._quickpkg`).
//!
//! * Paths are taken in sorted order and read through [`rootfs::root::Root`],
//!   so nothing outside ROOT is ever read.
//! * Missing files are skipped and reported; modified files are packed as
//!   they are now; a CONTENTS `dir` that is a symlink to a directory on the
//!   live system is stored as a real directory.
//! * Regular files that share an inode become hard links to the first one.
//! * FIFOs, sockets and device nodes are skipped, as Portage does.
//! * CONFIG_PROTECTed regular files are replaced by a placeholder text
//!   unless `include_config`, or `include_unmodified_config` and the file's
//!   MD5 still equals the one in CONTENTS.
//! * xattrs of regular files are stored (PAX `SCHILY.xattr.*`), minus
//!   `PORTAGE_XATTR_EXCLUDE`.
//! * Sub-second mtimes are kept in xpak packages (PAX `mtime`, as Python's
//!   tarfile writes them for Portage), not in gpkg (USTAR, as Portage).
//! * The package metadata is every file of the VDB entry (`CONTENTS` left
//!   out for xpak), with `CATEGORY` and `PF` set from the entry's name.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Seek, Write};
use std::os::fd::AsFd;
use std::path::Path;

use binpkg::write::{SourceEntry, WriteOptions, WriteSummary};
use binpkg::{EntryKind, Format, Metadata};
use rootfs::root::{DirCache, EntryStat, FileKind, Root};
use vdb::contents::EntryKind as CKind;
use vdb::db::{Reporter, VdbEntry};

use crate::config::MergeSettings;
use crate::error::MergeError;

/// What Portage writes in place of an excluded config file.
pub const CONFIG_PLACEHOLDER: &[u8] =
    b"# empty file because --include-config=n when `quickpkg` was used\n";

/// How to pack.
#[derive(Debug, Clone)]
pub struct QuickpkgOptions {
    /// gpkg or xpak.
    pub format: Format,
    /// Compression, level, signing, fixed mtimes.
    pub write: WriteOptions,
    /// Pack CONFIG_PROTECTed files as they are (`--include-config=y`).
    pub include_config: bool,
    /// Pack CONFIG_PROTECTed files that are unchanged since they were merged
    /// (`--include-unmodified-config=y`).
    pub include_unmodified_config: bool,
}

/// What went into the package, and what did not.
#[derive(Debug, Clone, Default)]
pub struct QuickpkgReport {
    /// Protected config files replaced by the placeholder.
    pub excluded_config: Vec<String>,
    /// CONTENTS paths missing from the live system.
    pub missing: Vec<String>,
    /// FIFOs, sockets and devices left out.
    pub skipped: Vec<String>,
    /// Counts and sizes.
    pub summary: WriteSummary,
    /// The package metadata that was written.
    pub metadata: Metadata,
}

/// The package metadata of an installed package: every regular file of its
/// VDB entry (without `CONTENTS` for xpak, as Portage's `xpak.xpak`).
pub fn vdb_metadata(entry: &VdbEntry, format: Format) -> Result<Metadata, MergeError> {
    let dir = entry.dir();
    let io = |op, source| MergeError::Io {
        op,
        path: dir.to_path_buf(),
        source,
    };
    let mut md = Metadata::new();
    for de in std::fs::read_dir(dir).map_err(|e| io("list the VDB entry", e))? {
        let de = de.map_err(|e| io("list the VDB entry", e))?;
        let Ok(name) = de.file_name().into_string() else {
            continue;
        };
        if format == Format::Xpak && name == "CONTENTS" {
            continue;
        }
        if !de.file_type().map(|t| t.is_file()).unwrap_or(false) {
            continue;
        }
        let data = std::fs::read(de.path()).map_err(|source| MergeError::Io {
            op: "read a VDB file",
            path: de.path(),
            source,
        })?;
        md.insert(name, data);
    }
    let cat = format!("{}\n", entry.cpv.category());
    let pf = format!("{}\n", entry.cpv.pf());
    md.insert("CATEGORY".into(), cat.into_bytes());
    md.insert("PF".into(), pf.into_bytes());
    Ok(md)
}

/// uid or gid → name, from the text of a `passwd` or `group` file.
pub(crate) fn parse_id_names(data: &[u8]) -> HashMap<u32, Vec<u8>> {
    let mut map = HashMap::new();
    for line in data.split(|&b| b == b'\n') {
        let mut f = line.split(|&b| b == b':');
        let (Some(name), Some(_), Some(id)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        if let Some(id) = std::str::from_utf8(id).ok().and_then(|s| s.parse().ok()) {
            map.entry(id).or_insert_with(|| name.to_vec());
        }
    }
    map
}

/// Names of users or groups from a ROOT's `etc/passwd` or `etc/group`.
fn id_names(root: &Root, file: &[u8]) -> HashMap<u32, Vec<u8>> {
    let mut data = Vec::new();
    let read = root
        .open_path(file)
        .and_then(|fd| std::fs::File::from(fd).read_to_end(&mut data));
    match read {
        Ok(_) => parse_id_names(&data),
        Err(_) => HashMap::new(),
    }
}

/// Open `name` in `dir` for reading: no symlink followed (`ELOOP`), no
/// blocking on a FIFO, no atime update where the kernel allows it.
fn open_nofollow(dir: &rootfs::dir::DirHandle, name: &[u8]) -> std::io::Result<std::fs::File> {
    use rustix::fs::{Mode, OFlags};
    use std::os::unix::ffi::OsStrExt;
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let name = std::ffi::OsStr::from_bytes(name);
    let fd = match rustix::fs::openat(dir, name, flags | OFlags::NOATIME, Mode::empty()) {
        // O_NOATIME needs to own the file (or CAP_FOWNER).
        Err(rustix::io::Errno::PERM) => rustix::fs::openat(dir, name, flags, Mode::empty())?,
        r => r?,
    };
    Ok(std::fs::File::from(fd))
}

fn libc_eloop() -> i32 {
    rustix::io::Errno::LOOP.raw_os_error()
}

fn split(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(0) => (b"/", &path[1..]),
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (b"/", path),
    }
}

fn lossy(p: &[u8]) -> String {
    String::from_utf8_lossy(p).into_owned()
}

/// What a reader learned about one CONTENTS path before it is packed.
enum Gathered {
    /// Not there (nor its directory), or a recorded file that is no longer
    /// a regular file when opened.
    Missing,
    /// A directory (for a CONTENTS `dir` that is a symlink to a directory
    /// here, what it leads to), or a node that is not packed.
    Node(EntryStat),
    Symlink(EntryStat, Vec<u8>),
    /// A regular file: `first` as found, `st` as opened (the same for a
    /// recorded `obj`), its xattrs (minus PORTAGE_XATTR_EXCLUDE, sorted)
    /// and, when read ahead, its content. Read errors count only if the
    /// file is packed (not for a hard link or an excluded config file).
    File {
        first: EntryStat,
        st: EntryStat,
        /// Closed once the content is read (so that few descriptors are
        /// open however far the readers are ahead).
        file: Option<std::fs::File>,
        xattrs: std::io::Result<Vec<(Vec<u8>, Vec<u8>)>>,
        data: Option<std::io::Result<Vec<u8>>>,
    },
}

/// A file [`gather`] closed although its content was not read (cannot
/// happen: only a file read whole is closed).
fn closed() -> std::io::Error {
    std::io::Error::other("the file was closed before it was read")
}

/// Files up to this size are read by the reader threads; larger ones are
/// streamed into the archive from the open file. With [`READ_CHUNK`] and
/// the number of chunks in flight this bounds the memory read ahead (a few
/// tens of MiB at most).
const READ_AHEAD_MAX: u64 = 64 * 1024;

/// Directories each reader thread keeps open.
const READER_DIRS: usize = 64;

/// At most this many reader threads.
const MAX_READERS: usize = 4;

/// Paths per unit of work of a reader thread.
const READ_CHUNK: usize = 64;

/// Look at one path (its name not empty). With `read`, a regular file's
/// content up to [`READ_AHEAD_MAX`] bytes is read too.
fn gather(
    dirs: &mut DirCache<'_>,
    path: &[u8],
    kind: &CKind,
    xattr_exclude: &[String],
    read: bool,
) -> Result<Gathered, MergeError> {
    let (dir, name) = split(path);
    let Some(d) = dirs.get(dir) else {
        return Ok(Gathered::Missing);
    };
    // A recorded file is opened first (never following a symlink, never
    // blocking on a FIFO) and described by fstat: one system call less than
    // lstat + open. Anything else is lstat'ed.
    let mut opened = None;
    let first = if matches!(kind, CKind::Obj { .. }) {
        match open_nofollow(&d, name) {
            Ok(f) => match rustix::fs::fstat(&f) {
                Ok(s) => {
                    let st = rootfs::root::entry_stat(&s);
                    if st.kind == FileKind::Regular {
                        opened = Some(f);
                    }
                    Ok(st)
                }
                Err(e) => Err(std::io::Error::from(e)),
            },
            Err(e) if e.raw_os_error() == Some(libc_eloop()) => d.lstat(name),
            Err(e) => Err(e),
        }
    } else {
        d.lstat(name)
    };
    let mut st = match first {
        Ok(st) => st,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Gathered::Missing),
        Err(e) => return Err(MergeError::root_io("lstat", path, e)),
    };
    if matches!(kind, CKind::Dir) && st.kind == FileKind::Symlink {
        // A directory of the image that is a symlink to a directory here:
        // stored as the directory it leads to.
        if let Some(target) = dirs.get(path) {
            if let Ok(s) = target.raw_stat() {
                st = rootfs::root::entry_stat(&s);
            }
        }
    }
    match st.kind {
        FileKind::Symlink => {
            let target = d
                .readlink(name)
                .map_err(|e| MergeError::root_io("readlink", path, e))?;
            Ok(Gathered::Symlink(st, target))
        }
        FileKind::Regular => {
            let (file, described) = match opened {
                Some(f) => (f, true),
                None => (
                    open_nofollow(&d, name).map_err(|e| MergeError::root_io("open", path, e))?,
                    false,
                ),
            };
            let st2 = if described {
                st
            } else {
                let fst = rustix::fs::fstat(&file)
                    .map_err(|e| MergeError::root_io("stat", path, e.into()))?;
                rootfs::root::entry_stat(&fst)
            };
            if st2.kind != FileKind::Regular {
                return Ok(Gathered::Missing);
            }
            let xattrs = rootfs::dir::read_xattrs(file.as_fd()).map(|mut x| {
                x.retain(|(k, _)| {
                    let k = String::from_utf8_lossy(k);
                    !xattr_exclude.iter().any(|p| crate::mask::fnmatch(&k, p))
                });
                x.sort();
                x
            });
            let data = (read && st2.size <= READ_AHEAD_MAX).then(|| {
                let mut v = Vec::with_capacity(st2.size as usize);
                (&file).take(st2.size).read_to_end(&mut v).map(|_| v)
            });
            let file = match data {
                Some(Ok(_)) => None,
                _ => Some(file),
            };
            Ok(Gathered::File {
                first: st,
                st: st2,
                file,
                xattrs,
                data,
            })
        }
        _ => Ok(Gathered::Node(st)),
    }
}

/// Gather `items` on `readers` threads, a chunk of [`READ_CHUNK`] paths at a
/// time and a few chunks ahead of the archive, and hand each result to
/// `emit` in the order of `items` (the archive's order).
fn read_ahead(
    root: &Root,
    items: &[(&[u8], &CKind)],
    xattr_exclude: &[String],
    readers: usize,
    mut emit: impl FnMut(&[u8], &CKind, Result<Gathered, MergeError>) -> Result<(), MergeError>,
) -> Result<(), MergeError> {
    type Chunk = Vec<Result<Gathered, MergeError>>;
    let chunks = items.len().div_ceil(READ_CHUNK);
    let ahead = readers + 1;
    let (work_tx, work_rx) = std::sync::mpsc::channel::<usize>();
    let work_rx = std::sync::Mutex::new(work_rx);
    std::thread::scope(|scope| {
        // Dropped when this returns (also on an error), which stops the
        // readers before the scope waits for them.
        let work_tx = work_tx;
        let (done_tx, done_rx) = std::sync::mpsc::channel::<(usize, Chunk)>();
        for _ in 0..readers {
            let (work_rx, done_tx) = (&work_rx, done_tx.clone());
            scope.spawn(move || {
                let mut dirs = DirCache::with_limit(root, READER_DIRS);
                loop {
                    let next = match work_rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    let Ok(k) = next else { return };
                    let end = ((k + 1) * READ_CHUNK).min(items.len());
                    let chunk = &items[k * READ_CHUNK..end];
                    // A panic is an error of this chunk (the archive waits
                    // for it), not a hang.
                    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        chunk
                            .iter()
                            .map(|&(p, kind)| match rootfs::signal::pending() {
                                // ^C: the archive's thread reports it; finish
                                // the chunk without reading.
                                Some(_) => Ok(Gathered::Missing),
                                None => gather(&mut dirs, p, kind, xattr_exclude, true),
                            })
                            .collect::<Chunk>()
                    }))
                    .unwrap_or_else(|_| {
                        dirs = DirCache::with_limit(root, READER_DIRS);
                        chunk
                            .iter()
                            .map(|&(p, _)| {
                                Err(MergeError::root_io(
                                    "read",
                                    p,
                                    std::io::Error::other("a reader thread failed"),
                                ))
                            })
                            .collect()
                    });
                    if done_tx.send((k, out)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(done_tx);
        let mut sent = 0;
        while sent < chunks.min(ahead) {
            let _ = work_tx.send(sent);
            sent += 1;
        }
        let mut ready: HashMap<usize, Chunk> = HashMap::new();
        for k in 0..chunks {
            let chunk = loop {
                if let Some(c) = ready.remove(&k) {
                    break c;
                }
                match done_rx.recv() {
                    Ok((i, c)) => {
                        ready.insert(i, c);
                    }
                    Err(_) => {
                        return Err(MergeError::Io {
                            op: "read the installed files",
                            path: std::path::PathBuf::new(),
                            source: std::io::Error::other("a reader thread stopped"),
                        })
                    }
                }
            };
            if sent < chunks {
                let _ = work_tx.send(sent);
                sent += 1;
            }
            for (&(path, kind), g) in items[k * READ_CHUNK..].iter().zip(chunk) {
                emit(path, kind, g)?;
            }
        }
        Ok(())
    })
}

/// Pack the installed package `entry` of the root at `root` into `out`.
/// `eroot` is ROOT + EPREFIX (config protection is relative to it).
pub fn quickpkg<W: Read + Write + Seek>(
    root_path: &Path,
    eroot: &Path,
    settings: &MergeSettings,
    entry: &VdbEntry,
    opts: &QuickpkgOptions,
    reporter: &dyn Reporter,
    out: &mut W,
) -> Result<QuickpkgReport, MergeError> {
    let cpv = entry.cpv.to_string();
    let root = Root::open(root_path).map_err(|source| MergeError::Io {
        op: "open ROOT",
        path: root_path.to_path_buf(),
        source,
    })?;
    let contents = entry.contents(reporter)?;
    let mut paths: BTreeMap<&[u8], &CKind> = BTreeMap::new();
    for e in &contents.entries {
        paths.insert(&e.path, &e.kind);
    }
    let cp = (!opts.include_config).then(|| settings.config_protect(&eroot.to_string_lossy()));
    let root_prefix = root_path.to_string_lossy().trim_end_matches('/').to_owned();
    let xattr_exclude: Vec<String> = settings
        .vars
        .get("PORTAGE_XATTR_EXCLUDE")
        .map(|v| v.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    let users = id_names(&root, b"/etc/passwd");
    let groups = id_names(&root, b"/etc/group");
    let metadata = vdb_metadata(entry, opts.format)?;
    let mut report = QuickpkgReport::default();
    // Portage's xpak quickpkg (Python tarfile, PAX format) keeps sub-second
    // mtimes; its gpkg (USTAR) does not.
    let subsec = opts.format == Format::Xpak;

    // The paths to pack, in order (the image root itself is implied).
    let items: Vec<(&[u8], &CKind)> = paths
        .iter()
        .filter(|(p, _)| !split(p).1.is_empty())
        .map(|(&p, &k)| (p, k))
        .collect();
    let fill = |w: &mut binpkg::ImageWriter<'_>| -> Result<(), MergeError> {
        let pack_err = |source| MergeError::Pack {
            cpv: cpv.clone(),
            source,
        };
        let mut inodes: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut emit = |path: &[u8], kind: &CKind, g: Gathered| -> Result<(), MergeError> {
            let image_path = &path[1..];
            let st = match &g {
                Gathered::Missing => {
                    report.missing.push(lossy(path));
                    return Ok(());
                }
                Gathered::Node(st) | Gathered::Symlink(st, _) => *st,
                Gathered::File { first, .. } => *first,
            };
            let uname = users.get(&st.uid).map(Vec::as_slice).unwrap_or(b"");
            let gname = groups.get(&st.gid).map(Vec::as_slice).unwrap_or(b"");
            let base = SourceEntry {
                mode: st.mode & 0o7777,
                uid: u64::from(st.uid),
                gid: u64::from(st.gid),
                uname,
                gname,
                mtime: st.mtime,
                mtime_nsec: if subsec { st.mtime_nsec } else { 0 },
                ..SourceEntry::new(image_path, EntryKind::Dir)
            };
            match g {
                Gathered::Missing => {}
                Gathered::Node(st) if st.kind == FileKind::Directory => {
                    w.append(&base, None).map_err(pack_err)?
                }
                Gathered::Node(_) => report.skipped.push(lossy(path)),
                Gathered::Symlink(_, target) => {
                    let e = SourceEntry {
                        kind: EntryKind::Symlink,
                        link_target: &target,
                        ..base
                    };
                    w.append(&e, None).map_err(pack_err)?;
                }
                Gathered::File {
                    first,
                    st: st2,
                    mut file,
                    xattrs,
                    data,
                } => {
                    if first.nlink > 1 {
                        if let Some(target) = inodes.get(&(first.id.dev, first.id.ino)) {
                            let e = SourceEntry {
                                kind: EntryKind::Hardlink,
                                link_target: target,
                                ..base
                            };
                            w.append(&e, None).map_err(pack_err)?;
                            return Ok(());
                        }
                    }
                    let protected = cp.as_ref().is_some_and(|cp| {
                        cp.is_protected(&format!("{root_prefix}{}", lossy(path)))
                    });
                    let keep = protected
                        && opts.include_unmodified_config
                        && match kind {
                            CKind::Obj { md5, .. } => {
                                let read = |e| MergeError::root_io("read", path, e);
                                let cur = match (&data, file.as_mut()) {
                                    (Some(Ok(d)), _) => {
                                        vdb::digest::md5_hex_reader(&mut d.as_slice(), &mut buf)
                                            .map_err(read)?
                                    }
                                    (Some(Err(e)), _) => {
                                        return Err(read(std::io::Error::new(
                                            e.kind(),
                                            e.to_string(),
                                        )))
                                    }
                                    (None, Some(f)) => {
                                        let cur = vdb::digest::md5_hex_reader(f, &mut buf)
                                            .map_err(read)?;
                                        f.rewind().map_err(read)?;
                                        cur
                                    }
                                    (None, None) => return Err(read(closed())),
                                };
                                cur.eq_ignore_ascii_case(&String::from_utf8_lossy(md5))
                            }
                            _ => false,
                        };
                    if protected && !keep {
                        report.excluded_config.push(lossy(path));
                        let e = SourceEntry {
                            kind: EntryKind::File,
                            size: CONFIG_PLACEHOLDER.len() as u64,
                            ..base
                        };
                        let mut text = CONFIG_PLACEHOLDER;
                        w.append(&e, Some(&mut text)).map_err(pack_err)?;
                        return Ok(());
                    }
                    let xattrs =
                        xattrs.map_err(|e| MergeError::root_io("read the xattrs of", path, e))?;
                    // What was opened is what gets packed: size, mode and
                    // times from the open file.
                    let e = SourceEntry {
                        kind: EntryKind::File,
                        mode: st2.mode & 0o7777,
                        uid: u64::from(st2.uid),
                        gid: u64::from(st2.gid),
                        mtime: st2.mtime,
                        mtime_nsec: if subsec { st2.mtime_nsec } else { 0 },
                        size: st2.size,
                        xattrs: &xattrs,
                        ..base
                    };
                    match (data, file.as_mut()) {
                        (Some(Ok(d)), _) => w.append(&e, Some(&mut d.as_slice())),
                        (Some(Err(err)), _) => return Err(MergeError::root_io("read", path, err)),
                        (None, Some(f)) => w.append(&e, Some(f)),
                        (None, None) => return Err(MergeError::root_io("read", path, closed())),
                    }
                    .map_err(pack_err)?;
                    if st2.nlink > 1 {
                        inodes.insert((st2.id.dev, st2.id.ino), image_path.to_vec());
                    }
                }
            }
            Ok(())
        };
        let signalled = || {
            rootfs::signal::pending().map(|sig| MergeError::PackSignal {
                cpv: cpv.clone(),
                sig,
            })
        };
        // VARTREE_QUICKPKG_READERS=N: the number of reader threads (tests
        // compare 1, which reads on the archive's thread, with several).
        let readers = std::env::var("VARTREE_QUICKPKG_READERS")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or_else(|| {
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1)
            })
            .min(MAX_READERS);
        if readers < 2 || items.len() < 2 * READ_CHUNK {
            let mut dirs = DirCache::new(&root);
            for &(path, kind) in &items {
                if let Some(e) = signalled() {
                    return Err(e);
                }
                let g = gather(&mut dirs, path, kind, &xattr_exclude, false)?;
                emit(path, kind, g)?;
            }
            return Ok(());
        }
        read_ahead(&root, &items, &xattr_exclude, readers, |path, kind, g| {
            if let Some(e) = signalled() {
                return Err(e);
            }
            emit(path, kind, g?)
        })
    };
    let summary = match opts.format {
        Format::Gpkg => binpkg::write_gpkg(out, entry.cpv.pf(), &metadata, &opts.write, fill)?,
        Format::Xpak => binpkg::write_xpak(out, &metadata, &opts.write, fill)?,
    };
    report.summary = summary;
    report.metadata = metadata;
    Ok(report)
}

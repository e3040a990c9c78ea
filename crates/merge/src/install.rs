//! Installing binary packages (gpkg, xpak): verify, unpack into a staging
//! directory on ROOT's filesystem, then merge it with the same engine as
//! `vartree merge` (moving the files out of the staging directory, so the
//! content is written once).
//!
//! The staging directory is `EROOT/var/db/.vartree/unpack-PID-N/` (resolved
//! inside ROOT, like every state path: [`vdb::state`]) with
//! `image/` and `build-info/`; it is removed when the install ends, and a
//! stale one (its owner's lock is gone) is removed by `recover`. With
//! `--pretend` nothing in ROOT is touched: the package is unpacked into the
//! system's temporary directory instead (nothing is moved out of it).

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rootfs::dir::{set_file_times, set_owner_mode, DirHandle, FileTime};

use crate::engine::{
    merge_image, KnownDigest, KnownDigests, MergeOptions, MergeOutcome, MergeReporter,
};
use crate::error::MergeError;
use crate::journal::JOURNAL_DIR;
use vdb::state::StatePaths;

/// A staging directory for one package, removed on drop.
pub struct Staging {
    dir: PathBuf,
    _lock: rootfs::lock::LockedFile,
    lock_path: PathBuf,
    /// ROOT's state, when the directory is in it.
    in_root: Option<StatePaths>,
}

impl Staging {
    /// In `EROOT/var/db/.vartree`, or (`pretend`) in the temporary directory.
    fn new(state: &StatePaths, pretend: bool) -> Result<Staging, MergeError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let prefix = if pretend { "vartree-pretend-" } else { "" };
        let name = format!("{prefix}unpack-{}-{nanos}", std::process::id());
        // Another process may remove the (empty) directory between our
        // mkdir and the lock file's creation, or a `recover` may take the
        // lock file for an abandoned one and remove it between its creation
        // and our lock: try again.
        let mut attempt = 0;
        let (parent, lock_path, lock) = loop {
            let parent = if pretend {
                let parent = std::env::temp_dir();
                fs::create_dir_all(&parent).map_err(|e| MergeError::Io {
                    op: "create directory",
                    path: parent.clone(),
                    source: e,
                })?;
                parent
            } else {
                state.create_dir(JOURNAL_DIR)?
            };
            let lock_path = parent.join(format!("{name}.lock"));
            rootfs::crash::point("staging lock");
            match rootfs::lock::LockedFile::lock(&lock_path, |_| {}) {
                Ok(l) if crate::journal::names_locked_file(&l, &lock_path) => {
                    break (parent, lock_path, l)
                }
                Ok(_) if attempt < 5 => attempt += 1,
                Ok(_) => {
                    return Err(MergeError::Io {
                        op: "lock",
                        path: lock_path.clone(),
                        source: io::Error::other("the lock file was removed while it was locked"),
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound && attempt < 5 => attempt += 1,
                Err(e) => {
                    return Err(MergeError::Io {
                        op: "lock",
                        path: lock_path.clone(),
                        source: io::Error::other(e.to_string()),
                    })
                }
            }
        };
        let dir = parent.join(&name);
        rootfs::crash::point("staging mkdir");
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| MergeError::Io {
                op: "create directory",
                path: dir.clone(),
                source: e,
            })?;
        Ok(Staging {
            dir,
            _lock: lock,
            lock_path,
            in_root: (!pretend).then(|| state.clone()),
        })
    }

    pub fn image(&self) -> PathBuf {
        self.dir.join("image")
    }

    pub fn build_info(&self) -> PathBuf {
        self.dir.join("build-info")
    }
}

/// Remove a staging directory; `true` when it is gone (then its lock file
/// may go too: a lock file without its directory would hide nothing, a
/// directory without its lock file would never be found again).
fn remove_staging_dir(dir: &Path) -> bool {
    match fs::remove_dir_all(dir) {
        Ok(()) => true,
        Err(e) => e.kind() == io::ErrorKind::NotFound,
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if remove_staging_dir(&self.dir) {
            let _ = fs::remove_file(&self.lock_path);
        }
        if let Some(state) = &self.in_root {
            crate::journal::remove_dir_if_empty(state);
        }
    }
}

/// Remove staging directories whose owner is gone (for `recover`).
pub fn remove_stale_staging(state: &StatePaths) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(parent) = state.path(JOURNAL_DIR) else {
        return removed;
    };
    let Ok(rd) = fs::read_dir(&parent) else {
        return removed;
    };
    for ent in rd.flatten() {
        let name = ent.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(base) = name.strip_suffix(".lock") else {
            continue;
        };
        if !base.starts_with("unpack-") {
            continue;
        }
        let lock_path = ent.path();
        if let Ok(Some(_l)) = rootfs::lock::LockedFile::try_lock(&lock_path) {
            let dir = parent.join(base);
            if remove_staging_dir(&dir) {
                let _ = fs::remove_file(&lock_path);
                removed.push(dir);
            }
        }
    }
    removed
}

fn bin_err(e: binpkg::Error) -> MergeError {
    MergeError::from(e)
}

/// Files up to this size are written by the worker threads (their data is
/// read into memory first); larger ones by the reading thread itself.
const SMALL_FILE: u64 = 256 * 1024;

/// A regular file for a worker thread to write.
struct FileJob {
    dir: Arc<DirHandle>,
    name: Vec<u8>,
    /// The archive path.
    path: Vec<u8>,
    data: Vec<u8>,
    uid: u32,
    gid: u32,
    mode: u32,
    mtime: FileTime,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Who owns a file this process creates in the image directory: its
/// effective ids, unless the directory is set-group-ID (then nothing is
/// assumed and every file gets its `chown`).
#[derive(Clone, Copy)]
struct NewOwner {
    ids: Option<(u32, u32)>,
    /// The process umask, when it could be read.
    umask: Option<u32>,
}

impl NewOwner {
    fn of(image: &DirHandle) -> NewOwner {
        let setgid = rustix::fs::fstat(image).map_or(true, |st| st.st_mode & 0o2000 != 0);
        NewOwner {
            ids: (!setgid).then(|| {
                (
                    rustix::process::geteuid().as_raw(),
                    rustix::process::getegid().as_raw(),
                )
            }),
            // A default ACL on the directory replaces the umask.
            umask: read_umask().filter(|_| {
                rustix::fs::fgetxattr_query(image, "system.posix_acl_default").is_err()
            }),
        }
    }

    /// Does a new file get these ids without a `chown`?
    fn is_new_files(self, uid: u32, gid: u32) -> bool {
        self.ids == Some((uid, gid))
    }

    /// The mode to create a file with when that gives it exactly `mode`
    /// and these ids, so that no `chown` or `chmod` is needed: plain
    /// permission bits the umask leaves alone.
    fn exact_create_mode(self, uid: u32, gid: u32, mode: u32) -> Option<u32> {
        let perm = mode & 0o7777;
        let umask = self.umask?;
        (self.is_new_files(uid, gid) && perm & 0o7000 == 0 && perm & umask == 0).then_some(perm)
    }
}

/// The process umask from `/proc/self/status` (reading it with `umask(2)`
/// would change it for a moment, for every thread).
fn read_umask() -> Option<u32> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let v = status.lines().find_map(|l| l.strip_prefix("Umask:"))?;
    u32::from_str_radix(v.trim(), 8).ok()
}

/// An I/O error of the image entry at `path` (an archive path).
fn image_err<'a>(op: &'static str, path: &'a [u8]) -> impl FnOnce(io::Error) -> MergeError + 'a {
    move |e| MergeError::image_io(op, path, e)
}

/// The key of an archive path in [`KnownDigests`] (leading `/`).
fn known_key(p: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(p.len() + 1);
    k.push(b'/');
    k.extend_from_slice(p.strip_prefix(b"/").unwrap_or(p));
    k
}

/// Write one regular file: content (hashed on the way), owner and mode,
/// xattrs (unless `pretend`), times. Returns its digest.
#[allow(clippy::too_many_arguments)]
fn write_file(
    dir: &DirHandle,
    name: &[u8],
    data: &mut dyn io::Read,
    buf: &mut [u8],
    (uid, gid, mode): (u32, u32, u32),
    mtime: FileTime,
    xattrs: &[(Vec<u8>, Vec<u8>)],
    pretend: bool,
    path: &[u8],
    owner: NewOwner,
) -> Result<KnownDigest, MergeError> {
    let ioe = |op| image_err(op, path);
    let exact = owner.exact_create_mode(uid, gid, mode);
    let mut f = dir
        .create_file(name, exact.unwrap_or(0o600))
        .map_err(ioe("create"))?;
    let (md5, size) = vdb::digest::md5_copy(data, &mut f, buf).map_err(ioe("write"))?;
    f.flush().map_err(ioe("write"))?;
    if exact.is_some() {
        // Created with its mode and owner.
    } else if owner.is_new_files(uid, gid) {
        rustix::fs::fchmod(&f, rustix::fs::Mode::from_raw_mode(mode & 0o7777))
            .map_err(|e| image_err("chmod", path)(e.into()))?;
    } else {
        set_owner_mode(&f, uid, gid, mode).map_err(ioe("chown/chmod"))?;
    }
    if !pretend {
        rootfs::dir::write_xattrs(std::os::fd::AsFd::as_fd(&f), xattrs)
            .map_err(ioe("set xattrs"))?;
    }
    set_file_times(&f, mtime, mtime).map_err(ioe("set times"))?;
    Ok(KnownDigest { size, mtime, md5 })
}

/// What a worker wrote: the digest of each file, by image path.
type Written = Result<Vec<(Vec<u8>, KnownDigest)>, MergeError>;

/// The worker threads that write small files while the archive is read:
/// file creation, not decompression, is what an unpack waits for, and
/// files of different directories are created in parallel (each directory
/// goes to one worker).
struct Writers<'scope> {
    queues: Vec<std::sync::mpsc::SyncSender<Vec<FileJob>>>,
    workers: Vec<std::thread::ScopedJoinHandle<'scope, Written>>,
    /// Worker of the last directory seen, and that directory.
    current: usize,
    last_dir: Vec<u8>,
    /// Files of `last_dir` not handed over yet: they go in batches, so that
    /// a worker is woken once per batch, not once per file.
    batch: Vec<FileJob>,
    /// Bytes of content in `batch`.
    batch_bytes: usize,
}

/// Files per batch handed to a worker.
const BATCH: usize = 32;

/// A batch is handed over once it holds this much content (so that the
/// data waiting for the workers stays within a few MiB).
const BATCH_BYTES: usize = 1 << 20;

impl<'scope> Writers<'scope> {
    fn start<'env>(
        scope: &'scope std::thread::Scope<'scope, 'env>,
        pretend: bool,
        owner: NewOwner,
    ) -> Option<Self> {
        let n = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(4);
        if n < 2 {
            return None;
        }
        let mut queues = Vec::new();
        let mut workers = Vec::new();
        for _ in 0..n {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<FileJob>>(2);
            queues.push(tx);
            workers.push(scope.spawn(move || {
                let mut done = Vec::new();
                let mut buf = vec![0u8; 64 * 1024];
                for job in rx.into_iter().flatten() {
                    let d = write_file(
                        &job.dir,
                        &job.name,
                        &mut job.data.as_slice(),
                        &mut buf,
                        (job.uid, job.gid, job.mode),
                        job.mtime,
                        &job.xattrs,
                        pretend,
                        &job.path,
                        owner,
                    )?;
                    done.push((known_key(&job.path), d));
                }
                Ok(done)
            }));
        }
        Some(Writers {
            queues,
            workers,
            current: 0,
            last_dir: Vec::new(),
            batch: Vec::with_capacity(BATCH),
            batch_bytes: 0,
        })
    }

    /// Queue a file; `false` when its worker has stopped (after an error,
    /// which [`Writers::finish`] returns).
    fn send(&mut self, parent: &[u8], job: FileJob) -> bool {
        if parent != self.last_dir.as_slice() {
            if !self.flush() {
                return false;
            }
            self.current = (self.current + 1) % self.queues.len();
            self.last_dir = parent.to_vec();
        }
        self.batch_bytes += job.data.len();
        self.batch.push(job);
        (self.batch.len() < BATCH && self.batch_bytes < BATCH_BYTES) || self.flush()
    }

    /// Hand the pending batch to its worker; `false` when it has stopped.
    fn flush(&mut self) -> bool {
        if self.batch.is_empty() {
            return true;
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH));
        self.batch_bytes = 0;
        self.queues[self.current].send(batch).is_ok()
    }

    /// Wait for every queued file; the digests, or the first error.
    fn finish(mut self, known: &mut KnownDigests) -> Result<(), MergeError> {
        // A worker that stopped reports why below.
        let _ = self.flush();
        drop(self.queues);
        let mut first_err = None;
        for w in self.workers {
            match w.join() {
                Ok(Ok(done)) => known.extend(done),
                Ok(Err(e)) => {
                    first_err.get_or_insert(e);
                }
                Err(_) => {
                    first_err.get_or_insert(MergeError::BadImage {
                        path: String::new(),
                        reason: "a file-writing thread failed".into(),
                    });
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

/// Unpack a verified package into `staging`: its metadata as build-info
/// files (plus `BINPKGMD5`), its image with modes, owners, times and xattrs
/// (not for `pretend`: they do not change the plan, and the temporary
/// directory's filesystem may not take them).
/// Returns the md5 of every regular file, computed while it was written.
fn unpack(
    pkg: &binpkg::BinPkg,
    path: &Path,
    staging: &Staging,
    pretend: bool,
) -> Result<KnownDigests, MergeError> {
    let mut known = KnownDigests::new();
    let bi = staging.build_info();
    let io_err = |op: &'static str, p: &Path| {
        let p = p.to_owned();
        move |e: io::Error| MergeError::Io {
            op,
            path: p,
            source: e,
        }
    };
    rootfs::crash::point("build-info mkdir");
    fs::create_dir(&bi).map_err(io_err("create directory", &bi))?;
    for (k, v) in pkg.metadata() {
        if k.is_empty() || k.contains('/') || k.starts_with('.') {
            continue;
        }
        rootfs::crash::point("build-info write");
        fs::write(bi.join(k), v).map_err(io_err("write", &bi.join(k)))?;
    }
    let sum = vdb::digest::md5_hex_file(path).map_err(io_err("read", path))?;
    fs::write(bi.join("BINPKGMD5"), format!("{sum}\n"))
        .map_err(io_err("write", &bi.join("BINPKGMD5")))?;

    let image = staging.image();
    rootfs::crash::point("image mkdir");
    fs::create_dir(&image).map_err(io_err("create directory", &image))?;
    let top = DirHandle::open(&image).map_err(io_err("open", &image))?;
    let owner = NewOwner::of(&top);
    // Directories get their final mode after their content is in place.
    let mut dir_modes: Vec<(Vec<u8>, u32, u32, u32)> = Vec::new();
    // Directory handles by image path, each directory created once: the
    // archive lists a directory's entries together, so few are open at a
    // time (the cache is emptied when it grows).
    let mut dirs: HashMap<Vec<u8>, Arc<DirHandle>> = HashMap::new();
    dirs.insert(Vec::new(), Arc::new(top));
    fn dir_at(
        dirs: &mut HashMap<Vec<u8>, Arc<DirHandle>>,
        image: &Path,
        rel: &[u8],
    ) -> io::Result<Arc<DirHandle>> {
        if let Some(h) = dirs.get(rel) {
            return Ok(h.clone());
        }
        if dirs.len() > 512 {
            dirs.clear();
            dirs.insert(Vec::new(), Arc::new(DirHandle::open(image)?));
        }
        let parent = dir_at(dirs, image, vdb::contents::dirname(rel))?;
        let name = vdb::contents::basename(rel);
        // Parents the archive does not list get 0755 root:root.
        match parent.mkdir(name, 0o755) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
            Err(err) => return Err(err),
        }
        let h = Arc::new(parent.open_subdir(name)?);
        dirs.insert(rel.to_vec(), h.clone());
        Ok(h)
    }
    fn parent_rel(rel: &[u8]) -> &[u8] {
        let parent = vdb::contents::dirname(rel);
        if parent == b"/" {
            &b""[..]
        } else {
            parent
        }
    }
    let mut open_parent = |rel: &[u8]| -> io::Result<(Arc<DirHandle>, Vec<u8>)> {
        let name = vdb::contents::basename(rel).to_vec();
        Ok((dir_at(&mut dirs, &image, parent_rel(rel))?, name))
    };
    // Hard links are made once every file is written.
    let mut hardlinks: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let mut buf = vec![0u8; 128 * 1024];
    std::thread::scope(|scope| -> Result<(), MergeError> {
        let mut writers = Writers::start(scope, pretend, owner);
        let walked =
            pkg.for_each_image_entry(|e: &mut binpkg::ImageEntry<'_>| -> Result<(), MergeError> {
                // ^C or SIGTERM: stop unpacking (the staging directory goes).
                if let Some(sig) = rootfs::signal::pending() {
                    return Err(MergeError::Signal {
                        cpv: pkg.cpv().map(|c| c.to_string()).unwrap_or_default(),
                        sig,
                    });
                }
                if e.is_root() {
                    dir_modes.push((Vec::new(), e.mode, e.uid as u32, e.gid as u32));
                    return Ok(());
                }
                let (dir, name) =
                    open_parent(&e.path).map_err(image_err("open directory", &e.path))?;
                let mtime = FileTime {
                    sec: e.mtime.secs,
                    nsec: e.mtime.nanos,
                };
                match e.kind {
                    binpkg::EntryKind::Dir => {
                        match dir.mkdir(&name, 0o700) {
                            Ok(()) => {}
                            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
                            Err(err) => return Err(image_err("mkdir", &e.path)(err)),
                        }
                        dir_modes.push((e.path.clone(), e.mode, e.uid as u32, e.gid as u32));
                    }
                    binpkg::EntryKind::File => {
                        let ids = (e.uid as u32, e.gid as u32, e.mode);
                        match writers.as_mut() {
                            Some(w) if e.size <= SMALL_FILE => {
                                let mut data = Vec::with_capacity(e.size as usize);
                                io::Read::read_to_end(e, &mut data)
                                    .map_err(image_err("read", &e.path))?;
                                let job = FileJob {
                                    dir,
                                    name,
                                    path: e.path.clone(),
                                    data,
                                    uid: ids.0,
                                    gid: ids.1,
                                    mode: ids.2,
                                    mtime,
                                    xattrs: std::mem::take(&mut e.xattrs),
                                };
                                if !w.send(parent_rel(&e.path), job) {
                                    // The worker stopped on an error: `finish`
                                    // returns it.
                                    return Err(MergeError::BadImage {
                                        path: String::new(),
                                        reason: "unpacking stopped".into(),
                                    });
                                }
                            }
                            _ => {
                                let xattrs = std::mem::take(&mut e.xattrs);
                                let path = e.path.clone();
                                let d = write_file(
                                    &dir, &name, e, &mut buf, ids, mtime, &xattrs, pretend, &path,
                                    owner,
                                )?;
                                known.insert(known_key(&path), d);
                            }
                        }
                    }
                    binpkg::EntryKind::Symlink => {
                        let target = e.link_target.clone().unwrap_or_default();
                        dir.symlink(&target, &name)
                            .map_err(image_err("symlink", &e.path))?;
                        dir.lchown(&name, e.uid as u32, e.gid as u32)
                            .map_err(image_err("chown", &e.path))?;
                        dir.set_times(&name, mtime, mtime)
                            .map_err(image_err("set times", &e.path))?;
                    }
                    binpkg::EntryKind::Hardlink => {
                        let target = e.link_target.clone().unwrap_or_default();
                        hardlinks.push((target, e.path.clone()));
                    }
                    binpkg::EntryKind::Fifo
                    | binpkg::EntryKind::CharDevice
                    | binpkg::EntryKind::BlockDevice => {
                        let (ty, rdev) = match (e.kind, e.device) {
                            (binpkg::EntryKind::Fifo, _) => (libc_mode::FIFO, 0),
                            (binpkg::EntryKind::CharDevice, Some((ma, mi))) => {
                                (libc_mode::CHR, makedev(ma, mi))
                            }
                            (_, Some((ma, mi))) => (libc_mode::BLK, makedev(ma, mi)),
                            _ => (libc_mode::CHR, 0),
                        };
                        dir.mknod(&name, ty | (e.mode & 0o7777), rdev)
                            .map_err(image_err("mknod", &e.path))?;
                        dir.lchown(&name, e.uid as u32, e.gid as u32)
                            .map_err(image_err("chown", &e.path))?;
                        dir.chmod(&name, e.mode)
                            .map_err(image_err("chmod", &e.path))?;
                        dir.set_times(&name, mtime, mtime)
                            .map_err(image_err("set times", &e.path))?;
                    }
                }
                Ok(())
            });
        // The workers' error, if any, explains a stop; else the walk's.
        let written = match writers {
            Some(w) => w.finish(&mut known),
            None => Ok(()),
        };
        written?;
        walked.map(|_| ())
    })?;
    for (target, link) in hardlinks {
        let ioe = |op| image_err(op, &link);
        let (dir, name) = open_parent(&link).map_err(ioe("open directory"))?;
        let (tdir, tname) = open_parent(&target).map_err(ioe("open directory"))?;
        tdir.link(&tname, &dir, &name).map_err(ioe("link"))?;
        if let Some(k) = known.get(&known_key(&target)).cloned() {
            known.insert(known_key(&link), k);
        }
    }
    // Directory modes and owners, deepest first.
    dir_modes.sort_by(|a, b| b.0.cmp(&a.0));
    for (rel, mode, uid, gid) in dir_modes {
        if rel.is_empty() {
            continue;
        }
        let (dir, name) = open_parent(&rel).map_err(image_err("open directory", &rel))?;
        dir.lchown(&name, uid, gid)
            .map_err(image_err("chown", &rel))?;
        dir.chmod(&name, mode).map_err(image_err("chmod", &rel))?;
    }
    Ok(known)
}

mod libc_mode {
    pub const FIFO: u32 = 0o010000;
    pub const CHR: u32 = 0o020000;
    pub const BLK: u32 = 0o060000;
}

fn makedev(major: u32, minor: u32) -> u64 {
    let (ma, mi) = (u64::from(major), u64::from(minor));
    ((ma & 0xfffff000) << 32) | ((ma & 0xfff) << 8) | ((mi & 0xffffff00) << 12) | (mi & 0xff)
}

/// What to verify and how to merge.
pub struct InstallOptions {
    /// Merge settings; `image`, `build_info` and `move_image` are set per package.
    pub merge: MergeOptions,
    pub verify: binpkg::VerifyOptions,
}

/// Verify and install one binary package.
pub fn install_package(
    path: &Path,
    opts: &InstallOptions,
    reporter: &dyn MergeReporter,
) -> Result<MergeOutcome, MergeError> {
    let pkg = binpkg::open(path, &opts.verify).map_err(bin_err)?;
    let vdb = vdb::db::Vdb::new(&opts.merge.root, &opts.merge.eprefix);
    if !opts.merge.pretend {
        // Nothing is unpacked into a ROOT whose state cannot be used.
        crate::engine::check_state(&vdb, &pkg.cpv().map_err(bin_err)?)?;
    }
    let staging = Staging::new(vdb.state(), opts.merge.pretend)?;
    let known = unpack(&pkg, path, &staging, opts.merge.pretend)?;
    let mut m = opts.merge.clone();
    m.known_md5 = Some(std::sync::Arc::new(known));
    m.image = staging.image();
    m.build_info = staging.build_info();
    m.move_image = true;
    let out = merge_image(&m, reporter);
    drop(staging);
    out
}

/// The CPV and dependency strings of a package file, for ordering several
/// packages before installing them. With `whole`, the image is checked too,
/// so that a hostile package among several is refused before any of them is
/// merged (at the cost of decompressing each image once more).
pub fn peek(
    path: &Path,
    verify: &binpkg::VerifyOptions,
    whole: bool,
) -> Result<(atom::Cpv, binpkg::Metadata), MergeError> {
    let mut v = verify.clone();
    v.skip_image_prescan = !whole;
    let pkg = binpkg::open(path, &v).map_err(bin_err)?;
    let cpv = pkg.cpv().map_err(bin_err)?;
    Ok((cpv, pkg.metadata().clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_created_with_their_mode_only_when_that_is_exact() {
        let root = NewOwner {
            ids: Some((0, 0)),
            umask: Some(0o022),
        };
        assert_eq!(root.exact_create_mode(0, 0, 0o100644), Some(0o644));
        assert_eq!(root.exact_create_mode(0, 0, 0o100755), Some(0o755));
        assert_eq!(root.exact_create_mode(0, 0, 0o100444), Some(0o444));
        // The umask would take bits away.
        assert_eq!(root.exact_create_mode(0, 0, 0o100664), None);
        // Set-id and sticky bits get their chmod.
        assert_eq!(root.exact_create_mode(0, 0, 0o104755), None);
        assert_eq!(root.exact_create_mode(0, 0, 0o101644), None);
        // Another owner gets its chown.
        assert_eq!(root.exact_create_mode(1, 0, 0o100644), None);
        let unknown = NewOwner {
            ids: Some((0, 0)),
            umask: None,
        };
        assert_eq!(unknown.exact_create_mode(0, 0, 0o100644), None);
        let setgid_dir = NewOwner {
            ids: None,
            umask: Some(0),
        };
        assert_eq!(setgid_dir.exact_create_mode(0, 0, 0o100644), None);
    }

    #[test]
    fn reads_the_umask() {
        let m = read_umask().expect("/proc/self/status has Umask");
        assert_eq!(m & !0o777, 0);
    }
}

//! Merging an image into a root: observe → plan → stage → sync → commit →
//! publish.
//!
//! * **Observe and plan** ([`plan_merge`]): one `lstat` per image entry in
//!   ROOT, through one confined directory resolution per image directory
//!   (so live directory symlinks such as `/lib -> usr/lib` are merged
//!   through). The result is a [`MergePlan`]: an [`Action`] per entry, the
//!   CONTENTS to record, collisions and messages. Nothing is written.
//! * **Stage**: every new file, symlink and node is created under a temp
//!   name in its target directory; a directory that does not exist yet is
//!   built whole under a temp name, with its children under their final
//!   names inside it. Nothing is visible at a final name yet.
//! * **Sync**: one `syncfs` for the root's filesystem.
//! * **Commit**: renames, each of which atomically replaces what was there
//!   (never unlink-then-create). Blocking files are moved aside first.
//! * **Publish**: the VDB entry, built in `CAT/-MERGING-PF`, is renamed
//!   into place.
//!
//! A failure before commit removes everything staged and leaves ROOT as it
//! was.

use std::collections::HashMap;
use std::fs::File;
use std::path::PathBuf;
use std::rc::Rc;

use rootfs::copy::{CopyProbe, Placement};
use rootfs::dir::{set_file_times, set_owner_mode, DirHandle, FileTime};
use rootfs::root::{FileKind, Root};
use vdb::contents::{ContentsEntry, EntryKind};
use vdb::db::{Reporter, Vdb};
use vdb::owners::PackageKeys;

use crate::buildinfo::{read_build_info, BuildInfo};
use crate::cfgprotect::ProtectCtx;
use crate::error::{Collision, MergeError};
use crate::image::{scan_image, strip_image_prefix_any, Image, ImageEntry, ImageKind};
use crate::journal::{Journal, Record};

/// When to flush to stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncMode {
    /// `syncfs` before the commit renames and after publishing (like
    /// Portage's `merge-sync`).
    #[default]
    Auto,
    /// `fsync` every staged file before the commit, every directory whose
    /// entries changed after it, and the VDB entry's files: durable even on
    /// filesystems where `syncfs` does not report write-back errors.
    Always,
    /// No syncs (tests, throw-away roots).
    Never,
}

/// What a merge is asked to do.
#[derive(Debug, Clone)]
pub struct MergeOptions {
    pub root: PathBuf,
    pub eprefix: PathBuf,
    pub image: PathBuf,
    pub build_info: PathBuf,
    /// FEATURES=collision-protect: refuse any collision.
    pub collision_protect: bool,
    /// FEATURES=protect-owned: refuse collisions with files other packages own.
    pub protect_owned: bool,
    pub sync: SyncMode,
    /// Plan only; touch nothing.
    pub pretend: bool,
    /// Rename files out of the image when it is on ROOT's filesystem (the
    /// image is consumed, as Portage consumes `${D}`).
    pub move_image: bool,
    /// FEATURES=merge-use-vdb: when the replaced instance's CONTENTS md5
    /// and mtime match a live file, take its hash from the VDB instead of
    /// reading it.
    pub trust_vdb: bool,
    /// Installed packages this merge replaces although they are not in its
    /// slot (a blocker handover, `--replace cat/B`): they may stay
    /// installed while the new package is merged, its files are taken out
    /// of their CONTENTS, then they are unmerged.
    pub replace: Vec<String>,
    /// CONFIG_PROTECT, COLLISION_IGNORE, INSTALL_MASK, FEATURES, … (the
    /// replaced instance's leftovers are unmerged with the same settings).
    pub settings: crate::config::MergeSettings,
    /// md5s of image files already known (computed while the image was
    /// written, as `install` does), by image path (`/usr/bin/x`): used for
    /// a file whose size and mtime are still the recorded ones, instead of
    /// reading it again.
    pub known_md5: Option<std::sync::Arc<KnownDigests>>,
}

/// A digest computed while an image file was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownDigest {
    pub size: u64,
    pub mtime: FileTime,
    pub md5: String,
}

/// [`KnownDigest`]s by image path (raw bytes, leading `/`).
pub type KnownDigests = HashMap<Vec<u8>, KnownDigest>;

impl MergeOptions {
    pub fn new(
        root: impl Into<PathBuf>,
        image: impl Into<PathBuf>,
        build_info: impl Into<PathBuf>,
    ) -> Self {
        MergeOptions {
            root: root.into(),
            eprefix: PathBuf::new(),
            image: image.into(),
            build_info: build_info.into(),
            collision_protect: false,
            protect_owned: true,
            sync: SyncMode::Auto,
            pretend: false,
            move_image: false,
            trust_vdb: false,
            replace: Vec::new(),
            settings: crate::config::MergeSettings::defaults(),
            known_md5: None,
        }
    }
}

/// Something the merge reports as it goes (emerge-style lines).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergeEvent {
    /// Waiting for another process's lock.
    WaitingForLock(PathBuf),
    /// `>>>` a path was merged.
    Merged(String),
    /// `===` identical, not rewritten (its mtime is set).
    Identical(String),
    /// `---` an existing directory was kept.
    KeptDir(String),
    /// `!!!` something the user should know (a backup, a collision warning).
    Notice(String),
    /// Progress of a long phase (for a progress line on a terminal).
    Progress {
        phase: &'static str,
        done: usize,
        total: usize,
    },
}

/// Where merge events go; libraries never print.
pub trait MergeReporter: Reporter {
    fn event(&self, ev: MergeEvent);
}

/// What happened.
#[derive(Debug, Clone, Default)]
pub struct MergeOutcome {
    pub cpv: String,
    pub counter: i64,
    /// The instances this merge replaced (REPLACING_VERSIONS).
    pub replaced: Vec<String>,
    /// Paths of replaced instances that were removed.
    pub removed: usize,
    pub contents: Vec<ContentsEntry>,
    /// How many files were placed by each method.
    pub placements: Vec<(Placement, usize)>,
    pub identical: usize,
    pub pretend: bool,
    /// Config-protected entries merged (or, with `pretend`, to be merged)
    /// under a `._cfgNNNN_` name.
    pub protected: Vec<ProtectedPath>,
    /// Config-protected updates not merged because the administrator
    /// discarded the same update before (the config memory).
    pub protected_skipped: Vec<Vec<u8>>,
}

/// A config-protected path and the path it is merged as
/// (`DIR/._cfgNNNN_NAME`).
pub type ProtectedPath = (Vec<u8>, Vec<u8>);

/// What to do with one image entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// A directory that does not exist: built under a temp name, renamed
    /// into place at commit. `aside` moves a blocking non-directory to
    /// `NAME.backup.NNNN` first.
    NewDirTop { aside: Option<Vec<u8>> },
    /// A directory inside a new directory.
    NewDirInner,
    /// An existing directory (or a symlink to one) is kept as it is.
    KeepDir,
    /// A file, symlink or node inside a new directory, under `dest` (its
    /// name, or a `._cfgNNNN_` name for a protected file).
    PlaceInner { dest: Vec<u8> },
    /// A config-protected update the administrator already discarded
    /// (confmem): nothing is touched.
    SkipProtected,
    /// Staged under a temp name, renamed over `dest` (a name in the live
    /// parent directory) at commit.
    Place { dest: Vec<u8>, replaces: bool },
    /// An identical regular file: only its mtime is set.
    Touch,
    /// A FIFO or device node where something already exists: left alone.
    SkipNode,
}

/// What the merge needs to know about the image's content, computed once
/// (outside the lock).
#[derive(Debug, Clone, Default)]
pub struct ImageFacts {
    /// md5 (hex) of each regular file, by entry index.
    pub md5: HashMap<usize, String>,
    /// Symlink targets as merged (after the `${D}` rewrite), by entry index.
    pub targets: HashMap<usize, Vec<u8>>,
}

/// Hash every file of the image (on every core; not those whose digest is
/// `known` and whose size and mtime are unchanged since) and settle symlink
/// targets.
pub fn image_facts(
    image: &Image,
    info: &BuildInfo,
    known: Option<&KnownDigests>,
) -> Result<ImageFacts, MergeError> {
    let mut facts = ImageFacts::default();
    let mut files = Vec::new();
    for (i, e) in image.entries.iter().enumerate() {
        match &e.kind {
            ImageKind::File => match known.and_then(|k| k.get(&e.raw_path)) {
                Some(k) if k.size == e.size && k.mtime == e.mtime => {
                    facts.md5.insert(i, k.md5.clone());
                }
                _ => files.push(i),
            },
            ImageKind::Symlink { target } => {
                let t = if info.rewrites_image_symlinks() {
                    strip_image_prefix_any(target, &image.dir).unwrap_or_else(|| target.clone())
                } else {
                    target.clone()
                };
                facts.targets.insert(i, t);
            }
            _ => {}
        }
    }
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 8)
        .min(files.len().div_ceil(64).max(1));
    // Contiguous chunks keep each thread within a few directories.
    let chunk = files.len().div_ceil(threads).max(1);
    let results: Vec<Result<Vec<(usize, String)>, MergeError>> = std::thread::scope(|s| {
        let workers: Vec<_> = files
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    let mut dirs = ImageDirs::new(image);
                    let mut buf = vec![0u8; 128 * 1024];
                    let mut out = Vec::with_capacity(part.len());
                    for &i in part {
                        let e = &image.entries[i];
                        let mut f = dirs.open_file(e)?;
                        let sum = vdb::digest::md5_hex_reader(&mut f, &mut buf)
                            .map_err(|err| MergeError::image_io("read", &e.path, err))?;
                        out.push((i, sum));
                    }
                    Ok(out)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join().unwrap_or_else(|_| {
                    Err(MergeError::BadImage {
                        path: String::new(),
                        reason: "hashing thread failed".into(),
                    })
                })
            })
            .collect()
    });
    for r in results {
        facts.md5.extend(r?);
    }
    Ok(facts)
}

/// The plan for a whole image.
#[derive(Debug, Clone, Default)]
pub struct MergePlan {
    pub actions: Vec<Action>,
    /// Existing non-directories the package will overwrite.
    pub collisions: Vec<Vec<u8>>,
    /// Messages about backups and the like.
    pub notices: Vec<String>,
    /// Config-protected entries merged under a `._cfgNNNN_` name: (path,
    /// name it was merged as).
    pub protected: Vec<(Vec<u8>, Vec<u8>)>,
    /// Changes to the config memory, applied after the commit.
    pub confmem: Vec<(String, crate::protect::ConfmemUpdate)>,
    /// Live files whose content was compared with the image: their
    /// (identity, mtime, mtime ns, size) then, and whether they were equal.
    pub content_checked: HashMap<usize, (ContentStamp, bool)>,
}

/// What identifies a live file's content for re-use of a comparison.
pub type ContentStamp = (rootfs::root::FileId, i64, u32, u64);

impl MergePlan {
    /// The config-protected entries of this plan merged under a
    /// `._cfgNNNN_` name, as (path, path merged as); and the protected
    /// updates skipped because the config memory says the administrator
    /// discarded them. What `--pretend` shows is exactly what the merge
    /// does, because both come from the same plan.
    pub fn protected_paths(&self, image: &Image) -> (Vec<ProtectedPath>, Vec<Vec<u8>>) {
        let merged_as = self
            .protected
            .iter()
            .map(|(path, name)| (path.clone(), child_path(vdb::contents::dirname(path), name)))
            .collect();
        let skipped = self
            .actions
            .iter()
            .zip(&image.entries)
            .filter(|(a, _)| **a == Action::SkipProtected)
            .map(|(_, e)| e.path.clone())
            .collect();
        (merged_as, skipped)
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The first `NAME.backup.NNNN` that does not exist in `dir`.
fn backup_name(dir: &DirHandle, name: &[u8]) -> std::io::Result<Vec<u8>> {
    for n in 0..10000 {
        let mut cand = name.to_vec();
        cand.extend_from_slice(format!(".backup.{n:04}").as_bytes());
        match dir.lstat(&cand) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(cand),
            Err(e) => return Err(e),
            Ok(_) => {}
        }
    }
    Err(std::io::Error::other("no free .backup.NNNN name"))
}

/// The temp name of a staged entry.
fn temp_name(name: &[u8], tx: &str) -> Vec<u8> {
    let mut t = b".vartree.".to_vec();
    t.extend_from_slice(tx.as_bytes());
    t.push(b'.');
    t.extend_from_slice(name);
    t
}

/// The state of an image directory's live counterpart during planning.
#[derive(Clone)]
enum DirState {
    Live(Rc<DirHandle>),
    New,
}

/// Observe ROOT and plan the merge of `image`. Nothing is written.
#[allow(clippy::too_many_arguments)]
pub fn plan_merge(
    root: &Root,
    image: &Image,
    info: &BuildInfo,
    facts: &ImageFacts,
    vdb_hint: Option<&VdbHint>,
    protect: Option<&ProtectCtx>,
    prev: Option<&MergePlan>,
) -> Result<MergePlan, MergeError> {
    let mut plan = MergePlan::default();
    let mut dirs: HashMap<Vec<u8>, DirState> = HashMap::new();
    let mut seen: HashMap<(rootfs::root::FileId, Vec<u8>), usize> = HashMap::new();
    let top = root
        .open_dir(&image.eprefix)
        .map(|h| DirState::Live(Rc::new(h)));
    let top = match top {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => DirState::New,
        Err(e) => return Err(MergeError::root_io("open", &image.eprefix, e)),
    };
    if matches!(top, DirState::New) && !image.entries.is_empty() {
        return Err(MergeError::MissingEprefix {
            eprefix: lossy(&image.eprefix),
        });
    }
    let parent_key = |p: &[u8]| -> Vec<u8> {
        if p == b"/" {
            Vec::new()
        } else {
            p.to_vec()
        }
    };
    let top_key = parent_key(&image.eprefix);
    dirs.insert(top_key, top);

    for (i, e) in image.entries.iter().enumerate() {
        let pkey = parent_key(e.parent());
        let parent = dirs
            .get(&pkey)
            .cloned()
            .ok_or_else(|| MergeError::BadImage {
                path: lossy(&e.path),
                reason: "parent directory missing from the image walk".into(),
            })?;
        let DirState::Live(pdir) = parent else {
            // Inside a new directory: everything is created fresh.
            let action = if e.kind == ImageKind::Dir {
                dirs.insert(e.path.clone(), DirState::New);
                Action::NewDirInner
            } else {
                match protect.and_then(|p| p.decide_missing(root, e, i, facts, &mut plan)) {
                    Some(name) => Action::PlaceInner { dest: name },
                    None => Action::PlaceInner {
                        dest: e.name().to_vec(),
                    },
                }
            };
            plan.actions.push(action);
            continue;
        };
        // Internal collisions: two image paths reaching one live path.
        if e.kind != ImageKind::Dir {
            if let Ok(st) = pdir.raw_stat() {
                let key = (
                    rootfs::root::FileId {
                        dev: st.st_dev,
                        ino: st.st_ino,
                    },
                    e.name().to_vec(),
                );
                if let Some(&j) = seen.get(&key) {
                    let same = match (&e.kind, &image.entries[j].kind) {
                        (ImageKind::File, ImageKind::File) => {
                            facts.md5.get(&i) == facts.md5.get(&j)
                        }
                        (ImageKind::Symlink { .. }, ImageKind::Symlink { .. }) => {
                            facts.targets.get(&i) == facts.targets.get(&j)
                        }
                        _ => false,
                    };
                    if !same {
                        return Err(MergeError::InternalCollision {
                            cpv: info.cpv.to_string(),
                            path: lossy(&e.path),
                        });
                    }
                }
                seen.insert(key, i);
            }
        }
        let live = match pdir.lstat(e.name()) {
            Ok(st) => Some(st),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
            Err(err) => return Err(MergeError::root_io("lstat", &e.path, err)),
        };
        // Config protection (regular files and symlinks only). Protected
        // paths are never collisions.
        let protected_path = protect.is_some_and(|p| p.is_protected_path(&e.path));
        if let (Some(p), ImageKind::File | ImageKind::Symlink { .. }) = (protect, &e.kind) {
            if protected_path {
                if let Some(action) =
                    p.decide_live(root, &pdir, e, i, facts, live.as_ref(), vdb_hint, &mut plan)?
                {
                    plan.actions.push(action);
                    continue;
                }
            }
        }
        let action = match (&e.kind, live) {
            (ImageKind::Dir, None) => {
                dirs.insert(e.path.clone(), DirState::New);
                Action::NewDirTop { aside: None }
            }
            (ImageKind::Dir, Some(st)) if st.kind == FileKind::Directory => {
                let h = pdir
                    .open_subdir(e.name())
                    .map_err(|err| MergeError::root_io("open directory", &e.path, err))?;
                dirs.insert(e.path.clone(), DirState::Live(Rc::new(h)));
                Action::KeepDir
            }
            (ImageKind::Dir, Some(st)) => {
                // A symlink to a directory (inside ROOT) is merged through.
                let through = (st.kind == FileKind::Symlink)
                    .then(|| root.open_dir(&e.path).ok())
                    .flatten();
                if let Some(h) = through {
                    dirs.insert(e.path.clone(), DirState::Live(Rc::new(h)));
                    Action::KeepDir
                } else {
                    let b = backup_name(&pdir, e.name())
                        .map_err(|err| MergeError::root_io("lstat", &e.path, err))?;
                    plan.notices.push(format!(
                        "installation of a directory is blocked by a file: {} will be renamed to {}",
                        lossy(&e.path),
                        lossy(&b)
                    ));
                    dirs.insert(e.path.clone(), DirState::New);
                    Action::NewDirTop { aside: Some(b) }
                }
            }
            (_, None) => Action::Place {
                dest: e.name().to_vec(),
                replaces: false,
            },
            (kind, Some(st)) if st.kind == FileKind::Directory => match kind {
                ImageKind::Symlink { .. } => {
                    return Err(MergeError::SymlinkOverDirectory {
                        cpv: info.cpv.to_string(),
                        path: lossy(&e.path),
                    })
                }
                ImageKind::Fifo | ImageKind::Device { .. } => Action::SkipNode,
                _ => {
                    let b = backup_name(&pdir, e.name())
                        .map_err(|err| MergeError::root_io("lstat", &e.path, err))?;
                    plan.notices.push(format!(
                        "installation of a regular file is blocked by a directory: {} will be merged as {}",
                        lossy(&e.path),
                        lossy(&b)
                    ));
                    Action::Place {
                        dest: b,
                        replaces: false,
                    }
                }
            },
            (ImageKind::Fifo | ImageKind::Device { .. }, Some(_)) => Action::SkipNode,
            (ImageKind::File, Some(st)) => {
                if !protected_path {
                    plan.collisions.push(e.path.clone());
                }
                let same_meta = st.kind == FileKind::Regular && st.mode == e.mode;
                // merge-use-vdb: the replaced instance's record, when the
                // live mtime still matches it, stands for the live content.
                let by_vdb = vdb_hint
                    .and_then(|h| h.get(&e.path))
                    .filter(|(_, mtime)| *mtime == st.mtime)
                    .map(|(md5, _)| Some(md5) == facts.md5.get(&i));
                // The live file's identity and mtime: a second plan (under
                // the lock) reuses the first one's content comparison when
                // they have not changed.
                let stamp = (st.id, st.mtime, st.mtime_nsec, st.size);
                let reused = prev
                    .and_then(|p| p.content_checked.get(&i))
                    .filter(|(s, _)| *s == stamp)
                    .map(|(_, same)| *same);
                let identical = same_meta
                    && match (by_vdb, reused) {
                        (Some(same), _) => same,
                        (None, Some(same)) => same,
                        (None, None) => {
                            // Compared by md5 with the image file's (already
                            // computed): the image is not read again, and it
                            // may have been moved into place by staging.
                            let same = st.size == e.size && {
                                let mut a = pdir
                                    .open_file(e.name())
                                    .map_err(|err| MergeError::root_io("open", &e.path, err))?;
                                let mut buf = vec![0u8; 128 * 1024];
                                let live = vdb::digest::md5_hex_reader(&mut a, &mut buf)
                                    .map_err(|err| MergeError::root_io("read", &e.path, err))?;
                                Some(&live) == facts.md5.get(&i)
                            };
                            plan.content_checked.insert(i, (stamp, same));
                            same
                        }
                    };
                if identical {
                    Action::Touch
                } else {
                    Action::Place {
                        dest: e.name().to_vec(),
                        replaces: true,
                    }
                }
            }
            (_, Some(_)) => {
                if !protected_path {
                    plan.collisions.push(e.path.clone());
                }
                Action::Place {
                    dest: e.name().to_vec(),
                    replaces: true,
                }
            }
        };
        plan.actions.push(action);
    }
    Ok(plan)
}

/// md5 and mtime of the replaced instance's `obj` entries, by path.
pub type VdbHint = HashMap<Vec<u8>, (String, i64)>;

/// Build the merge-use-vdb hint from an installed instance's CONTENTS.
pub fn vdb_hint(entries: &[ContentsEntry]) -> VdbHint {
    entries
        .iter()
        .filter_map(|e| match &e.kind {
            EntryKind::Obj { md5, mtime } => Some((
                e.normalized_path().into_owned(),
                (String::from_utf8_lossy(md5).to_ascii_lowercase(), *mtime),
            )),
            _ => None,
        })
        .collect()
}

/// Open directories of the image, kept along the current walk path.
pub struct ImageDirs {
    top: PathBuf,
    cache: HashMap<Vec<u8>, Rc<DirHandle>>,
}

impl ImageDirs {
    pub fn new(image: &Image) -> Self {
        ImageDirs {
            top: image.dir.clone(),
            cache: HashMap::new(),
        }
    }

    fn dir(&mut self, path: &[u8]) -> Result<Rc<DirHandle>, MergeError> {
        if let Some(h) = self.cache.get(path) {
            return Ok(h.clone());
        }
        if self.cache.len() > 64 {
            self.cache.clear();
        }
        let mut h = DirHandle::open(&self.top).map_err(|e| MergeError::Io {
            op: "open image directory",
            path: self.top.clone(),
            source: e,
        })?;
        for c in path.split(|&b| b == b'/').filter(|c| !c.is_empty()) {
            h = h
                .open_subdir(c)
                .map_err(|e| MergeError::image_io("open directory", path, e))?;
        }
        let h = Rc::new(h);
        self.cache.insert(path.to_vec(), h.clone());
        Ok(h)
    }

    /// Open an image file for reading.
    pub fn open_file(&mut self, e: &ImageEntry) -> Result<File, MergeError> {
        let d = self.dir(e.raw_parent())?;
        d.open_file(e.raw_name())
            .map_err(|err| MergeError::image_io("open", &e.path, err))
    }

    /// The image directory holding an entry.
    pub fn parent_of(&mut self, e: &ImageEntry) -> Result<Rc<DirHandle>, MergeError> {
        self.dir(e.raw_parent())
    }
}

/// Everything staged so far, for rollback.
#[derive(Default)]
struct Staged {
    /// (directory, temp name, is a directory tree)
    temps: Vec<(Rc<DirHandle>, Vec<u8>, bool)>,
}

impl Staged {
    fn rollback(&self) {
        for (dir, name, is_dir) in self.temps.iter().rev() {
            if *is_dir {
                let _ = crate::txn::remove_tree(dir, name);
            } else {
                let _ = dir.unlink(name);
            }
        }
    }
}

/// Journal, then create, the marker file of a `--move-image` transaction in
/// the image directory; returns its path.
fn create_image_marker(journal: &mut Journal, image_abs: &[u8]) -> Result<PathBuf, MergeError> {
    let (name, token) = crate::journal::image_marker_name();
    journal.record(&Record::Image {
        dir: image_abs.to_vec(),
        marker: name.as_bytes().to_vec(),
    })?;
    let mut path =
        PathBuf::from(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(image_abs));
    path.push(&name);
    let io = |source| MergeError::Io {
        op: "create the move-image marker",
        path: path.clone(),
        source,
    };
    rootfs::crash::point("image marker");
    let mut f = std::fs::File::create_new(&path).map_err(io)?;
    rootfs::crash::point("image marker token");
    std::io::Write::write_all(&mut f, token.as_bytes()).map_err(io)?;
    Ok(path)
}

struct Stager<'a> {
    image: &'a Image,
    image_dirs: ImageDirs,
    probe: CopyProbe,
    tx: String,
    root_dev: u64,
    image_dev: u64,
    move_image: bool,
    fsync: bool,
    placements: HashMap<Placement, usize>,
    /// Hard links: image inode → (staged dir, staged name) of the first copy.
    links: HashMap<(u64, u64), (Rc<DirHandle>, Vec<u8>)>,
    /// Files moved out of the image (`--move-image`): (staged dir, staged
    /// name, image dir, image name), so that a rollback can put them back.
    moved: Vec<Moved>,
    /// Identities of the regular files placed (never removed by the
    /// unmerge of a replaced instance, whatever their name there).
    inodes: std::collections::HashSet<rootfs::root::FileId>,
    /// The transaction journal (written ahead of every staged change).
    journal: Option<Journal>,
    /// The package, for messages.
    cpv: String,
    /// The image directory as an absolute host path (journal records).
    image_abs: Vec<u8>,
}

/// A file moved out of the image: (staged dir, staged name, image dir,
/// image name).
type Moved = (Rc<DirHandle>, Vec<u8>, Rc<DirHandle>, Vec<u8>);

impl Stager<'_> {
    /// Write a record ahead of the change it describes.
    fn note(&mut self, r: Record) -> Result<(), MergeError> {
        match &mut self.journal {
            Some(j) => j.record(&r),
            None => Ok(()),
        }
    }

    fn note_move(
        &mut self,
        e: &ImageEntry,
        dir_path: &[u8],
        name: &[u8],
    ) -> Result<(), MergeError> {
        let mut src_dir = self.image_abs.clone();
        src_dir.extend_from_slice(e.raw_parent());
        self.note(Record::Moved {
            dir: dir_path.to_vec(),
            name: name.to_vec(),
            src_dir,
            src_name: e.raw_name().to_vec(),
        })
    }

    /// Move a whole new directory out of the image as `name` in `dir` (one
    /// rename; see [`movable_trees`]). `inner`: the entries below it.
    fn move_tree(
        &mut self,
        e: &ImageEntry,
        dir: &Rc<DirHandle>,
        dir_path: &[u8],
        name: &[u8],
        inner: &[ImageEntry],
    ) -> Result<(), MergeError> {
        self.note_move(e, dir_path, name)?;
        let src_dir = self.image_dirs.parent_of(e)?;
        src_dir
            .rename_noreplace(e.raw_name(), dir, name)
            .map_err(|err| MergeError::root_io("move from the image", &e.path, err))?;
        self.moved
            .push((dir.clone(), name.to_vec(), src_dir, e.raw_name().to_vec()));
        for x in inner.iter().filter(|x| x.kind == ImageKind::File) {
            // A hard-link group is one placement, as entry by entry.
            if self.inodes.insert(rootfs::root::FileId {
                dev: x.inode.0,
                ino: x.inode.1,
            }) {
                *self.placements.entry(Placement::Rename).or_default() += 1;
            }
        }
        Ok(())
    }

    /// Put files moved out of the image back (before the staged trees that
    /// hold them are removed).
    fn unmove(&mut self) {
        for (dir, name, src_dir, src_name) in self.moved.drain(..).rev() {
            let _ = dir.rename(&name, &src_dir, &src_name);
        }
    }

    /// Create one entry (not a directory) as `name` in `dir`.
    fn create(
        &mut self,
        e: &ImageEntry,
        target: Option<&Vec<u8>>,
        dir: &Rc<DirHandle>,
        dir_path: &[u8],
        name: &[u8],
    ) -> Result<(), MergeError> {
        let rio = |op, err| MergeError::root_io(op, &e.path, err);
        match &e.kind {
            ImageKind::File => {
                let moving = self.move_image && self.image_dev == self.root_dev;
                if e.nlink > 1 {
                    if let Some((d, n)) = self.links.get(&e.inode) {
                        if d.link(n, dir, name).is_ok() {
                            if moving {
                                // The image name goes, as a move would take it.
                                self.note_move(e, dir_path, name)?;
                                let src_dir = self.image_dirs.parent_of(e)?;
                                src_dir
                                    .unlink(e.raw_name())
                                    .map_err(|err| MergeError::image_io("unlink", &e.path, err))?;
                                self.moved.push((
                                    dir.clone(),
                                    name.to_vec(),
                                    src_dir,
                                    e.raw_name().to_vec(),
                                ));
                            }
                            return Ok(());
                        }
                    }
                }
                let src_dir = self.image_dirs.parent_of(e)?;
                if moving {
                    self.note_move(e, dir_path, name)?;
                    src_dir
                        .rename(e.raw_name(), dir, name)
                        .map_err(|err| rio("move from the image", err))?;
                    self.inodes.insert(rootfs::root::FileId {
                        dev: e.inode.0,
                        ino: e.inode.1,
                    });
                    self.moved
                        .push((dir.clone(), name.to_vec(), src_dir, e.raw_name().to_vec()));
                    *self.placements.entry(Placement::Rename).or_default() += 1;
                } else {
                    let mut src = src_dir
                        .open_file(e.raw_name())
                        .map_err(|err| MergeError::image_io("open", &e.path, err))?;
                    let mut dst = dir
                        .create_file(name, 0o600)
                        .map_err(|err| rio("create", err))?;
                    let how = self
                        .probe
                        .copy(
                            &mut src,
                            &mut dst,
                            (self.image_dev, self.root_dev),
                            e.size,
                            None,
                        )
                        .map_err(|err| rio("copy", err))?;
                    *self.placements.entry(how).or_default() += 1;
                    set_owner_mode(&dst, e.uid, e.gid, e.mode)
                        .map_err(|err| rio("chown/chmod", err))?;
                    if let Ok(m) = dst.metadata() {
                        self.inodes.insert(rootfs::root::FileId {
                            dev: std::os::unix::fs::MetadataExt::dev(&m),
                            ino: std::os::unix::fs::MetadataExt::ino(&m),
                        });
                    }
                    let xattrs = rootfs::dir::read_xattrs(std::os::fd::AsFd::as_fd(&src))
                        .map_err(|err| MergeError::image_io("read xattrs", &e.path, err))?;
                    rootfs::dir::write_xattrs(std::os::fd::AsFd::as_fd(&dst), &xattrs)
                        .map_err(|err| rio("set xattrs", err))?;
                    set_file_times(&dst, e.mtime, e.mtime).map_err(|err| rio("set times", err))?;
                    if self.fsync {
                        dst.sync_all().map_err(|err| rio("fsync", err))?;
                    }
                }
                if e.nlink > 1 {
                    self.links.insert(e.inode, (dir.clone(), name.to_vec()));
                }
            }
            ImageKind::Symlink { .. } => {
                let t = target.ok_or_else(|| MergeError::BadImage {
                    path: lossy(&e.path),
                    reason: "symlink without target".into(),
                })?;
                dir.symlink(t, name).map_err(|err| rio("symlink", err))?;
                dir.lchown(name, e.uid, e.gid)
                    .map_err(|err| rio("chown", err))?;
                dir.set_times(name, e.mtime, e.mtime)
                    .map_err(|err| rio("set times", err))?;
            }
            ImageKind::Fifo | ImageKind::Device { .. } => {
                let rdev = match e.kind {
                    ImageKind::Device { rdev } => rdev,
                    _ => 0,
                };
                dir.mknod(name, e.mode, rdev)
                    .map_err(|err| rio("mknod", err))?;
                dir.lchown(name, e.uid, e.gid)
                    .map_err(|err| rio("chown", err))?;
                dir.chmod(name, e.mode).map_err(|err| rio("chmod", err))?;
                dir.set_times(name, e.mtime, e.mtime)
                    .map_err(|err| rio("set times", err))?;
            }
            ImageKind::Dir => {
                dir.mkdir(name, 0o700).map_err(|err| rio("mkdir", err))?;
                dir.lchown(name, e.uid, e.gid)
                    .map_err(|err| rio("chown", err))?;
                dir.chmod(name, e.mode).map_err(|err| rio("chmod", err))?;
            }
        }
        Ok(())
    }
}

fn contents_entry(e: &ImageEntry, facts: &ImageFacts, i: usize) -> ContentsEntry {
    // Floor seconds, as Portage's `mtime_ns // 10**9` (negative before 1970).
    let mtime = e.mtime.sec;
    let kind = match &e.kind {
        ImageKind::Dir => EntryKind::Dir,
        ImageKind::File => EntryKind::Obj {
            md5: facts
                .md5
                .get(&i)
                .cloned()
                .unwrap_or_default()
                .into_bytes()
                .into(),
            mtime,
        },
        ImageKind::Symlink { .. } => EntryKind::Sym {
            target: facts.targets.get(&i).cloned().unwrap_or_default().into(),
            mtime,
        },
        ImageKind::Fifo => EntryKind::Fif,
        ImageKind::Device { .. } => EntryKind::Dev,
    };
    ContentsEntry::new(e.path.clone(), kind)
}

/// The installed instances this package replaces: every instance of the
/// same package in the same slot, and an installed instance of the same
/// CPV (a reinstall), highest COUNTER last.
pub fn others_in_slot(
    vdb: &Vdb,
    info: &BuildInfo,
    reporter: &dyn Reporter,
) -> Result<Vec<vdb::db::VdbEntry>, MergeError> {
    let mut out: Vec<(i64, vdb::db::VdbEntry)> = Vec::new();
    for other in vdb.entries_in(info.cpv.category(), reporter)? {
        if other.cpv.pn() != info.cpv.pn() {
            continue;
        }
        let (slot, _) = other.slot(reporter);
        if slot == info.slot || other.cpv == info.cpv {
            let c = other.counter(reporter).unwrap_or(0);
            out.push((c, other));
        }
    }
    out.sort_by_key(|(c, _)| *c);
    Ok(out.into_iter().map(|(_, e)| e).collect())
}

/// Check the blockers between the new package and installed ones, and
/// resolve `--replace` atoms. A blocked package must be named with
/// `--replace` (then it is handed over), and a strong blocker (`!!`)
/// refuses the temporary co-installation altogether.
fn resolve_handover(
    vdb: &Vdb,
    info: &BuildInfo,
    replaced: &[vdb::db::VdbEntry],
    replace: &[String],
    reporter: &dyn Reporter,
) -> Result<Vec<vdb::db::VdbEntry>, MergeError> {
    let cpv = info.cpv.to_string();
    let mut handover: Vec<vdb::db::VdbEntry> = Vec::new();
    for a in replace {
        let q = atom::parse_query(a).map_err(|e| MergeError::BadReplace {
            cpv: cpv.clone(),
            atom: a.clone(),
            reason: e.to_string(),
        })?;
        let found: Vec<_> = vdb
            .entries(reporter)?
            .into_iter()
            .filter(|e| q.matches_cpv(&e.cpv) && !replaced.iter().any(|r| r.cpv == e.cpv))
            .filter(|e| e.cpv != info.cpv)
            .collect();
        if found.is_empty() {
            return Err(MergeError::BadReplace {
                cpv: cpv.clone(),
                atom: a.clone(),
                reason: "no installed package (outside the slot being replaced) matches it".into(),
            });
        }
        for f in found {
            if !handover.iter().any(|h| h.cpv == f.cpv) {
                handover.push(f);
            }
        }
    }
    for b in crate::blockers::find_blocked(vdb, info, replaced, reporter)? {
        let named = handover.iter().any(|h| h.cpv == b.entry.cpv);
        if b.strong {
            return Err(MergeError::StrongBlocker {
                cpv: cpv.clone(),
                blocked: b.entry.cpv.to_string(),
                atom: b.atom,
            });
        }
        if !named {
            return Err(MergeError::Blocked {
                cpv: cpv.clone(),
                blocked: b.entry.cpv.to_string(),
                atom: b.atom,
            });
        }
    }
    Ok(handover)
}

/// Portage's protect-owned / collision-protect decision over the planned
/// collisions. Returns a notice to print when the merge may go on.
#[allow(clippy::too_many_arguments)]
fn check_collisions(
    vdb: &Vdb,
    root: &Root,
    plan: &MergePlan,
    opts: &MergeOptions,
    cpv: &str,
    replaced: &[vdb::db::VdbEntry],
    replaced_keys: &[PackageKeys],
    reporter: &dyn Reporter,
) -> Result<Option<String>, MergeError> {
    if plan.collisions.is_empty() || !(opts.collision_protect || opts.protect_owned) {
        return Ok(None);
    }
    // A path an instance being replaced owns is no collision (Portage's
    // `isowner` test of `_collision_protect`, through symlinked
    // directories too), whoever else owns it: only the others are looked
    // up in the whole database.
    let unowned: Vec<&Vec<u8>> = plan
        .collisions
        .iter()
        .filter(|p| {
            !replaced_keys
                .iter()
                .any(|k| k.match_path(root, p).is_some())
        })
        .collect();
    if unowned.is_empty() {
        return Ok(None);
    }
    // COLLISION_IGNORE: patterns against the path relative to EROOT.
    let ignore = crate::mask::CollisionIgnore::from_fs(
        &opts.settings.collision_ignore_entries(),
        &vdb.eroot().to_string_lossy(),
    );
    let prefix_len = vdb.eprefix().as_os_str().len();
    let collisions: Vec<&Vec<u8>> = unowned
        .into_iter()
        .filter(|p| !ignore.is_ignored(&String::from_utf8_lossy(&p[prefix_len..])))
        .collect();
    if collisions.is_empty() {
        return Ok(None);
    }
    let queries: Vec<_> = collisions
        .iter()
        .map(|p| vdb::owners::OwnerQuery::new(p))
        .collect();
    let owners = vdb::owners::find_owners(vdb, &queries, reporter)?;
    // Files of the instances being replaced are not collisions.
    let mut replaced_owned = vec![false; collisions.len()];
    let owners: Vec<_> = owners
        .into_iter()
        .filter(|o| {
            let r = replaced.iter().any(|e| e.cpv == o.entry.cpv);
            if r {
                replaced_owned[o.query] = true;
            }
            !r
        })
        .collect();
    let mut cols: Vec<Collision> = collisions
        .iter()
        .map(|p| Collision {
            path: lossy(p),
            owners: Vec::new(),
        })
        .collect();
    for o in owners {
        cols[o.query].owners.push(o.entry.cpv.to_string());
    }
    let mut i = 0;
    cols.retain(|c| {
        let keep = !replaced_owned[i] || !c.owners.is_empty();
        i += 1;
        keep
    });
    if cols.is_empty() {
        return Ok(None);
    }
    if opts.collision_protect || cols.iter().any(|c| !c.owners.is_empty()) {
        let collisions = if opts.collision_protect {
            cols
        } else {
            cols.into_iter().filter(|c| !c.owners.is_empty()).collect()
        };
        return Err(MergeError::Collisions {
            cpv: cpv.to_owned(),
            collisions,
        });
    }
    Ok(Some(format!(
        "{cpv}: {} file(s) not owned by any package will be overwritten",
        cols.len()
    )))
}

/// Refuse, before anything is touched, a ROOT where the package manager's
/// state cannot be used: every state directory and the package's VDB
/// category must exist inside ROOT or be creatable there (a symlink among
/// them is followed inside ROOT; one that leads to nothing there is named
/// in the error). See [`vdb::state`].
pub fn check_state(vdb: &Vdb, cpv: &atom::Cpv) -> Result<(), MergeError> {
    let state = vdb.state();
    state.check_all()?;
    state.check(&[&format!("{}/{}", vdb::db::VDB_PATH, cpv.category())])?;
    Ok(())
}

/// Merge an image into ROOT and record it in the VDB.
///
/// Hashing, planning and staging run without the VDB lock, so that several
/// merges into one root overlap. Under the lock the root is observed again:
/// if anything the plan depends on changed meanwhile (another merge created
/// a directory or a file), the staged content is removed and the package is
/// staged again under the lock. Collisions are decided under the lock, then
/// the commit renames run and the VDB entry is published.
pub fn merge_image(
    opts: &MergeOptions,
    reporter: &dyn MergeReporter,
) -> Result<MergeOutcome, MergeError> {
    let info = read_build_info(&opts.build_info)?;
    let vdb = Vdb::new(&opts.root, &opts.eprefix);
    let mut image = scan_image(&opts.image, vdb.eprefix())?;
    // INSTALL_MASK (settings, FEATURES=no{man,info,doc}, and build-info).
    let mut mask_value = opts.settings.effective_install_mask();
    if let Some(m) = info.files.get("INSTALL_MASK") {
        mask_value.push(' ');
        mask_value.push_str(&String::from_utf8_lossy(m));
    }
    let install_mask = crate::mask::InstallMask::new(&mask_value);
    if !install_mask.is_empty() {
        crate::image::apply_install_mask(&mut image, &install_mask);
    }
    let mask_value = vdb::metadata::normalize_whitespace(&mask_value);
    let cpv = info.cpv.to_string();
    let root = Root::open(&opts.root).map_err(|e| MergeError::Io {
        op: "open ROOT",
        path: opts.root.clone(),
        source: e,
    })?;
    // A prefix that does not exist is refused before anything (even a lock
    // file) is created in it.
    if !image.entries.is_empty() && vdb.eprefix().as_os_str().len() > 1 {
        if let Err(e) = root.open_dir(vdb.eprefix().as_os_str().as_encoded_bytes()) {
            if e.kind() == std::io::ErrorKind::NotFound {
                return Err(MergeError::MissingEprefix {
                    eprefix: vdb.eprefix().display().to_string(),
                });
            }
        }
    }
    if !opts.pretend {
        check_state(&vdb, &info.cpv)?;
        // Finish or undo interrupted transactions first.
        let lock = vdb::lock::VdbLock::acquire(vdb.state(), |p| {
            reporter.event(MergeEvent::WaitingForLock(p.to_owned()))
        })?;
        for r in crate::txn::recover(
            &root,
            &vdb,
            &crate::unmerge::UnmergeOptions::from_settings(&opts.settings),
            false,
            reporter,
        )? {
            reporter.event(MergeEvent::Notice(format!(
                "recovered an interrupted {}: {}",
                r.subject(),
                r.outcome()
            )));
        }
        drop(lock);
    }
    let replaced = others_in_slot(&vdb, &info, reporter)?;
    let handover = resolve_handover(&vdb, &info, &replaced, &opts.replace, reporter)?;
    // Files of packages being replaced are not collisions.
    let all_replaced: Vec<vdb::db::VdbEntry> =
        replaced.iter().chain(handover.iter()).cloned().collect();
    // What they own is not a collision.
    let replaced_keys: Vec<PackageKeys> = all_replaced
        .iter()
        .map(|e| {
            Ok(PackageKeys::new(
                &e.contents(reporter)?.entries,
                vdb.eprefix().as_os_str().as_encoded_bytes(),
            ))
        })
        .collect::<Result<_, MergeError>>()?;
    // The installed instance (highest COUNTER) informs identical-file skips.
    let hint = match (opts.trust_vdb, replaced.last()) {
        (true, Some(inst)) => Some(vdb_hint(&inst.contents(reporter)?.entries)),
        _ => None,
    };

    let installed_contents = match replaced.last() {
        Some(inst) => Some(inst.contents(reporter)?.entries),
        None => None,
    };
    let downgrade = replaced
        .last()
        .is_some_and(|inst| info.cpv.version() < inst.cpv.version());
    let mut pctx = ProtectCtx::new(
        &opts.root,
        vdb.state(),
        vdb.eprefix().as_os_str().as_encoded_bytes(),
        &opts.settings,
        installed_contents.as_deref(),
        downgrade,
    )?;

    // Decided early (cheaply), and again under the lock.
    let collisions = |plan: &MergePlan| {
        check_collisions(
            &vdb,
            &root,
            plan,
            opts,
            &cpv,
            &all_replaced,
            &replaced_keys,
            reporter,
        )
    };
    let image_dirs = ImageDirs::new(&image);
    let facts = image_facts(&image, &info, opts.known_md5.as_deref())?;
    let plan = plan_merge(
        &root,
        &image,
        &info,
        &facts,
        hint.as_ref(),
        Some(&pctx),
        None,
    )?;
    let contents: Vec<ContentsEntry> = image
        .entries
        .iter()
        .enumerate()
        .map(|(i, e)| contents_entry(e, &facts, i))
        .collect();
    if opts.pretend {
        if let Some(n) = collisions(&plan)? {
            reporter.event(MergeEvent::Notice(n));
        }
        for n in &plan.notices {
            reporter.event(MergeEvent::Notice(n.clone()));
        }
        let (protected, protected_skipped) = plan.protected_paths(&image);
        return Ok(MergeOutcome {
            cpv,
            counter: -1,
            contents,
            replaced: replaced.iter().map(|e| e.cpv.to_string()).collect(),
            pretend: true,
            protected,
            protected_skipped,
            ..MergeOutcome::default()
        });
    }
    // Fail early (and cheaply) on collisions; decided again under the lock.
    collisions(&plan)?;

    let root_dev = root.file_id(b"/").map(|f| f.dev).unwrap_or(0);
    let image_dev = std::fs::metadata(&opts.image)
        .map(|m| std::os::unix::fs::MetadataExt::dev(&m))
        .unwrap_or(u64::MAX);
    let mut journal = Journal::begin(vdb.state(), "merge", &cpv)?;
    journal.set_durable(opts.sync != SyncMode::Never);
    let image_abs = std::path::absolute(&image.dir)
        .unwrap_or_else(|_| image.dir.clone())
        .into_os_string()
        .into_encoded_bytes();
    // --move-image: a marker in the image proves to a later rollback that
    // the files it moves back go where this transaction took them from.
    let marker = if opts.move_image && image_dev == root_dev {
        match create_image_marker(&mut journal, &image_abs) {
            Ok(m) => Some(m),
            Err(e) => {
                let _ = journal.finish();
                return Err(e);
            }
        }
    } else {
        None
    };
    let mut stager = Stager {
        image: &image,
        image_dirs,
        probe: CopyProbe::new(),
        tx: format!("{}", std::process::id()),
        root_dev,
        image_dev,
        move_image: opts.move_image,
        fsync: opts.sync == SyncMode::Always,
        placements: HashMap::new(),
        links: HashMap::new(),
        moved: Vec::new(),
        inodes: Default::default(),
        journal: Some(journal),
        cpv: cpv.clone(),
        image_abs,
    };
    let mut staged = Staged::default();
    let mut commit: Vec<Record> = Vec::new();
    // Undo everything staged (before the commit point) and end the journal.
    let abort = |stager: &mut Stager<'_>, staged: &Staged, entry_begun: bool| {
        stager.unmove();
        staged.rollback();
        if entry_begun {
            if let Ok(m) = vdb.merging_dir(&info.cpv) {
                let _ = std::fs::remove_dir_all(m);
            }
            // A category made for this package alone goes too.
            vdb::writer::remove_category_if_empty(&vdb, info.cpv.category());
        }
        if let Some(m) = &marker {
            let _ = std::fs::remove_file(m);
        }
        if let Some(j) = stager.journal.take() {
            let _ = j.finish();
        }
    };
    if let Err(e) = stage(
        &root,
        &plan,
        &facts,
        &mut stager,
        &mut staged,
        &mut commit,
        reporter,
    ) {
        abort(&mut stager, &staged, false);
        return Err(e);
    }

    let lock = match vdb::lock::VdbLock::acquire(vdb.state(), |p| {
        reporter.event(MergeEvent::WaitingForLock(p.to_owned()))
    }) {
        Ok(l) => l,
        Err(e) => {
            abort(&mut stager, &staged, false);
            return Err(e.into());
        }
    };
    let unmerge_opts = crate::unmerge::UnmergeOptions::from_settings(&opts.settings);
    let reinstall = replaced.iter().any(|e| e.cpv == info.cpv);
    let mut entry_begun = false;
    let mut confmem_stage: Option<crate::cfgprotect::ConfmemStage> = None;
    let result = (|| {
        // Validate: the slot, and the plan against the root as it is now.
        let replaced_now = others_in_slot(&vdb, &info, reporter)?;
        let handover_now = resolve_handover(&vdb, &info, &replaced_now, &opts.replace, reporter)?;
        if replaced_now != replaced || handover_now != handover {
            return Err(MergeError::Changed {
                cpv: cpv.clone(),
                what: "the installed instances of this slot changed while it was being staged"
                    .into(),
            });
        }
        // The config memory as it is now (another merge may have changed
        // it while this one was staged).
        pctx.reload_confmem(vdb.state())?;
        let now = plan_merge(
            &root,
            &image,
            &info,
            &facts,
            hint.as_ref(),
            Some(&pctx),
            Some(&plan),
        )?;
        let plan = if now.actions != plan.actions {
            // Another merge changed the root meanwhile: stage again, locked.
            stager.unmove();
            staged.rollback();
            staged = Staged::default();
            commit.clear();
            stager.links.clear();
            stage(
                &root,
                &now,
                &facts,
                &mut stager,
                &mut staged,
                &mut commit,
                reporter,
            )?;
            now
        } else {
            plan
        };
        if let Some(n) = collisions(&plan)? {
            reporter.event(MergeEvent::Notice(n));
        }
        for n in &plan.notices {
            reporter.event(MergeEvent::Notice(n.clone()));
        }

        // The new VDB entry, complete in CAT/-MERGING-PF. The counter is
        // taken before that directory exists, so that the scan of the VDB
        // does not see it.
        stager.note(Record::Entry { cpv: cpv.clone() })?;
        let counter = vdb::counter::next_counter(&vdb, reporter)?;
        entry_begun = true;
        let mut staged_entry = vdb.begin_entry(&info.cpv)?;
        if opts.sync == SyncMode::Always {
            staged_entry = staged_entry.with_durability(rootfs::atomic::Durability::Fsync);
        }
        for (k, v) in &info.files {
            if k == "COUNTER" || k == "CONTENTS" || k == "INSTALL_MASK" {
                continue;
            }
            staged_entry.write_key(k, v)?;
        }
        if !mask_value.is_empty() {
            staged_entry.write_key("INSTALL_MASK", format!("{mask_value}\n").as_bytes())?;
        }
        staged_entry.write_counter(counter)?;
        staged_entry.write_contents(&contents)?;
        staged_entry.finish()?;

        // Every commit step goes into the journal before the commit point.
        for r in &commit {
            stager.note(r.clone())?;
        }
        // The new config memory, staged now so that a full disk stops the
        // merge before its commit point.
        let stale = StaleConfmem {
            root: &root,
            eprefix: vdb.eprefix().as_os_str().as_encoded_bytes(),
            contents: &contents,
            leaving: &all_replaced,
            commit: &commit,
            new_keys: Default::default(),
        };
        let tx = stager.tx.clone();
        confmem_stage = crate::cfgprotect::stage_confmem(
            vdb.state(),
            &tx,
            &plan.confmem,
            &|cm| stale.keys(cm),
            opts.sync == SyncMode::Always,
            &mut |r| stager.note(r),
        )?;
        stager.note(Record::Publish {
            exchange: reinstall,
            cpv: cpv.clone(),
            counter,
        })?;
        for old in replaced.iter().filter(|e| e.cpv != info.cpv) {
            stager.note(Record::Unmerge {
                cpv: old.cpv.to_string(),
            })?;
        }
        for b in &handover {
            stager.note(Record::Handover {
                cpv: b.cpv.to_string(),
            })?;
        }
        if opts.sync != SyncMode::Never {
            rustix::fs::syncfs(root_fd(&root)?).map_err(|e| MergeError::Io {
                op: "syncfs",
                path: opts.root.clone(),
                source: e.into(),
            })?;
        }
        // Last chance to stop: a signal before the commit point undoes.
        if let Some(sig) = rootfs::signal::pending() {
            return Err(MergeError::Signal {
                cpv: cpv.clone(),
                sig,
            });
        }
        // The commit point.
        if let Some(j) = &mut stager.journal {
            j.commit()?;
        }
        Ok((plan, counter))
    })();
    let (plan, counter) = match result {
        Ok(p) => p,
        Err(e) => {
            if let Some(c) = confmem_stage.take() {
                c.rollback();
            }
            abort(&mut stager, &staged, entry_begun);
            drop(lock);
            return Err(e);
        }
    };

    // After the commit point: complete every step. The same code completes
    // an interrupted transaction in `vartree recover`.
    let records: Vec<Record> = stager
        .journal
        .as_ref()
        .map(|j| j.records().to_vec())
        .unwrap_or_default();
    let applied = crate::txn::apply_commit(
        &root,
        &vdb,
        &records,
        &unmerge_opts,
        Some(&stager.inodes),
        confmem_stage.and_then(crate::cfgprotect::ConfmemStage::into_lock),
        &|path, _| reporter.event(MergeEvent::Merged(lossy(path))),
        reporter,
    )
    .map_err(|e| MergeError::Interrupted {
        cpv: cpv.clone(),
        source: Box::new(e),
    })?;
    for n in &applied.notes {
        reporter.event(MergeEvent::Notice(n.clone()));
    }
    if opts.sync == SyncMode::Always {
        let mut done = std::collections::HashSet::new();
        for r in &records {
            if let Record::Rename { dir, .. } | Record::Aside { dir, .. } = r {
                if done.insert(dir.clone()) {
                    if let Ok(d) = root.open_dir(dir) {
                        d.fsync()
                            .map_err(|e| MergeError::root_io("fsync directory", dir, e))?;
                    }
                }
            }
        }
    }
    for (path, name) in &plan.protected {
        reporter.event(MergeEvent::Notice(format!(
            "{} is config-protected: the new version was merged as {} (run etc-update or dispatch-conf)",
            lossy(path),
            lossy(name)
        )));
    }
    if opts.sync != SyncMode::Never {
        let _ = rustix::fs::syncfs(root_fd(&root)?);
    }
    if let Some(m) = &marker {
        let _ = std::fs::remove_file(m);
    }
    if let Some(j) = stager.journal.take() {
        j.finish()?;
    }
    drop(lock);
    let removed = applied.removed;

    let mut placements: Vec<(Placement, usize)> = stager.placements.into_iter().collect();
    placements.sort();
    let (protected, protected_skipped) = plan.protected_paths(&image);
    Ok(MergeOutcome {
        cpv,
        counter,
        contents,
        replaced: all_replaced.iter().map(|e| e.cpv.to_string()).collect(),
        removed,
        placements,
        identical: plan.actions.iter().filter(|a| **a == Action::Touch).count(),
        pretend: false,
        protected,
        protected_skipped,
    })
}

/// The config-memory keys the unmerge of the replaced instances would
/// forget (Portage's `stale_confmem`): their paths inside EPREFIX that the
/// new package does not own, neither by name (through directory symlinks)
/// nor as a place this merge renames something into. Worked out before the
/// commit point, so that the config memory is written only there (the
/// unmerge then finds nothing left to forget).
struct StaleConfmem<'a> {
    root: &'a Root,
    eprefix: &'a [u8],
    contents: &'a [ContentsEntry],
    leaving: &'a [vdb::db::VdbEntry],
    commit: &'a [Record],
    new_keys: std::cell::OnceCell<vdb::owners::PackageKeys>,
}

impl StaleConfmem<'_> {
    /// The keys of `confmem` to forget.
    fn keys(&self, confmem: &crate::protect::Confmem) -> Vec<String> {
        if confmem.is_empty() || self.leaving.is_empty() {
            return Vec::new();
        }
        let mut eroot = self.eprefix.to_vec();
        eroot.push(b'/');
        let mut out = Vec::new();
        for old in self.leaving {
            // A CONTENTS that cannot be read fails the unmerge later.
            let Ok(c) = old.contents(&vdb::db::Silent) else {
                continue;
            };
            for e in &c.entries {
                let path = e.normalized_path();
                let key = String::from_utf8_lossy(&path);
                if confmem.get(&key).is_none()
                    || path.len() <= eroot.len()
                    || !path.starts_with(&eroot)
                {
                    continue;
                }
                let new_keys = self
                    .new_keys
                    .get_or_init(|| vdb::owners::PackageKeys::new(self.contents, self.eprefix));
                if new_keys.match_path(self.root, &path).is_some() || self.renamed_over(&path) {
                    continue;
                }
                if !out.contains(&key.as_ref().to_owned()) {
                    out.push(key.into_owned());
                }
            }
        }
        out
    }

    /// Whether this merge renames something into the place of `path`.
    fn renamed_over(&self, path: &[u8]) -> bool {
        let Ok(id) = self.root.file_id(vdb::contents::dirname(path)) else {
            return false;
        };
        let name = vdb::contents::basename(path);
        self.commit.iter().any(|r| match r {
            Record::Rename { dir, dest, .. } => {
                dest == name && self.root.file_id(dir).is_ok_and(|d| d == id)
            }
            _ => false,
        })
    }
}

fn root_fd(root: &Root) -> Result<DirHandle, MergeError> {
    root.open_dir(b"/")
        .map_err(|e| MergeError::root_io("open", b"/", e))
}

/// `dir/name` for a ROOT-relative directory path (`/` joins without a double slash).
pub(crate) fn child_path(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = if dir == b"/" {
        Vec::new()
    } else {
        dir.to_vec()
    };
    p.push(b'/');
    p.extend_from_slice(name);
    p
}

/// New directories whose whole image subtree can be moved into ROOT with
/// one rename (`--move-image` on one filesystem), by index of the
/// directory, with the end of its subtree in `image.entries`: the largest
/// such subtrees (a new directory that cannot move whole is created, and
/// its new subdirectories are tried in turn). Everything below must be
/// merged as it is in the image: every entry placed under its own name (no
/// config protection, no confmem skip, no INSTALL_MASK leftovers, no
/// renamed invalid-UTF-8 names, no rewritten symlink target), hard links
/// all inside, and no directory carrying xattrs (a created directory gets
/// none, as with Portage).
fn movable_trees(
    image: &Image,
    plan: &MergePlan,
    facts: &ImageFacts,
    image_dirs: &mut ImageDirs,
) -> HashMap<usize, usize> {
    let mut out = HashMap::new();
    let n = image.entries.len();
    // Entry index → may it move as it is (cached across ancestors).
    let mut own_ok: HashMap<usize, bool> = HashMap::new();
    let mut i = 0;
    while i < n {
        if !matches!(
            plan.actions[i],
            Action::NewDirTop { .. } | Action::NewDirInner
        ) {
            i += 1;
            continue;
        }
        let mut prefix = image.entries[i].path.clone();
        prefix.push(b'/');
        let mut end = i + 1;
        while end < n && image.entries[end].path.starts_with(&prefix) {
            end += 1;
        }
        if tree_movable(image, plan, facts, image_dirs, &mut own_ok, i, end, &prefix) {
            out.insert(i, end);
            i = end;
        } else {
            i += 1;
        }
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn tree_movable(
    image: &Image,
    plan: &MergePlan,
    facts: &ImageFacts,
    image_dirs: &mut ImageDirs,
    own_ok: &mut HashMap<usize, bool>,
    top: usize,
    end: usize,
    prefix: &[u8],
) -> bool {
    if image.masked.iter().any(|m| m.starts_with(prefix)) {
        return false;
    }
    let mut links: HashMap<(u64, u64), (u64, u64)> = HashMap::new();
    for j in top..end {
        let e = &image.entries[j];
        let ok = *own_ok
            .entry(j)
            .or_insert_with(|| entry_movable(image, plan, facts, image_dirs, j));
        if !ok {
            return false;
        }
        if e.kind == ImageKind::File && e.nlink > 1 {
            links.entry(e.inode).or_insert((0, e.nlink)).0 += 1;
        }
    }
    links.values().all(|(seen, nlink)| seen == nlink)
}

/// Can entry `j` be merged by moving it along with its directory?
fn entry_movable(
    image: &Image,
    plan: &MergePlan,
    facts: &ImageFacts,
    image_dirs: &mut ImageDirs,
    j: usize,
) -> bool {
    let e = &image.entries[j];
    if e.raw_path != e.path {
        return false;
    }
    let placed_as_is = match &plan.actions[j] {
        Action::NewDirTop { .. } | Action::NewDirInner => true,
        Action::PlaceInner { dest } => dest.as_slice() == e.name(),
        _ => false,
    };
    placed_as_is
        && match &e.kind {
            // A hard-linked symlink or node is created anew entry by entry.
            ImageKind::Symlink { .. } | ImageKind::Fifo | ImageKind::Device { .. }
                if e.nlink > 1 =>
            {
                false
            }
            ImageKind::Symlink { target } => facts.targets.get(&j) == Some(target),
            ImageKind::Dir => image_dirs.dir(&e.raw_path).is_ok_and(|d| {
                rootfs::dir::read_xattrs(std::os::fd::AsFd::as_fd(&*d)).is_ok_and(|x| x.is_empty())
            }),
            _ => true,
        }
}

/// Create everything under temp names (each written ahead to the journal);
/// collect the commit steps as journal records.
fn stage(
    root: &Root,
    plan: &MergePlan,
    facts: &ImageFacts,
    st: &mut Stager<'_>,
    staged: &mut Staged,
    commit: &mut Vec<Record>,
    reporter: &dyn MergeReporter,
) -> Result<(), MergeError> {
    let image = st.image;
    // Live or staged directory of each image directory: handle and
    // ROOT-relative path (a staged tree's path has its temp name in it).
    let mut dirs: HashMap<Vec<u8>, (Rc<DirHandle>, Vec<u8>)> = HashMap::new();
    let top_key = if image.eprefix == b"/" {
        Vec::new()
    } else {
        image.eprefix.clone()
    };
    if !image.entries.is_empty() {
        let top = root
            .open_dir(&image.eprefix)
            .map_err(|e| MergeError::root_io("open", &image.eprefix, e))?;
        dirs.insert(top_key, (Rc::new(top), image.eprefix.clone()));
    }
    let mut dir_ops = Vec::new();
    let mut file_ops = Vec::new();
    let mut sym_ops = Vec::new();
    let total = image.entries.len();
    let trees = if st.move_image && st.image_dev == st.root_dev && !st.fsync {
        movable_trees(image, plan, facts, &mut st.image_dirs)
    } else {
        HashMap::new()
    };
    // The end of the subtree moved whole last.
    let mut moved_until = 0;
    for (i, e) in image.entries.iter().enumerate() {
        if i % 1024 == 0 && total > 4096 {
            reporter.event(MergeEvent::Progress {
                phase: "staging",
                done: i,
                total,
            });
        }
        if i < moved_until {
            continue;
        }
        if let Some(sig) = rootfs::signal::pending() {
            return Err(MergeError::Signal {
                cpv: st.cpv.clone(),
                sig,
            });
        }
        let pkey: Vec<u8> = if e.parent() == b"/" {
            Vec::new()
        } else {
            e.parent().to_vec()
        };
        let (parent, ppath) = dirs.get(&pkey).cloned().ok_or_else(|| {
            MergeError::root_io(
                "find parent of",
                &e.path,
                std::io::ErrorKind::NotFound.into(),
            )
        })?;
        let target = facts.targets.get(&i);
        match &plan.actions[i] {
            Action::KeepDir => {
                let h = match parent.open_subdir(e.name()) {
                    Ok(h) => h,
                    // A symlink to a directory: resolve it inside ROOT.
                    Err(_) => root
                        .open_dir(&e.path)
                        .map_err(|err| MergeError::root_io("open directory", &e.path, err))?,
                };
                dirs.insert(e.path.clone(), (Rc::new(h), e.path.clone()));
                reporter.event(MergeEvent::KeptDir(lossy(&e.path)));
            }
            Action::NewDirTop { aside } => {
                let temp = temp_name(e.name(), &st.tx);
                if let Some(&end) = trees.get(&i) {
                    // Journaled as a staged tree and a move: a rollback puts
                    // it back whole (the later record is undone first), and
                    // removes it when it cannot be put back.
                    st.note(Record::Tree {
                        dir: ppath.clone(),
                        name: temp.clone(),
                    })?;
                    staged.temps.push((parent.clone(), temp.clone(), true));
                    st.move_tree(e, &parent, &ppath, &temp, &image.entries[i + 1..end])?;
                    moved_until = end;
                } else {
                    st.note(Record::Tree {
                        dir: ppath.clone(),
                        name: temp.clone(),
                    })?;
                    staged.temps.push((parent.clone(), temp.clone(), true));
                    st.create(e, None, &parent, &ppath, &temp)?;
                    let h = parent
                        .open_subdir(&temp)
                        .map_err(|err| MergeError::root_io("open directory", &e.path, err))?;
                    dirs.insert(e.path.clone(), (Rc::new(h), child_path(&ppath, &temp)));
                }
                if let Some(b) = aside {
                    dir_ops.push(Record::Aside {
                        dir: ppath.clone(),
                        name: e.name().to_vec(),
                        backup: b.clone(),
                    });
                }
                dir_ops.push(Record::Rename {
                    dir: ppath.clone(),
                    temp,
                    dest: e.name().to_vec(),
                    noreplace: true,
                });
            }
            Action::NewDirInner => {
                if let Some(&end) = trees.get(&i) {
                    st.move_tree(e, &parent, &ppath, e.name(), &image.entries[i + 1..end])?;
                    moved_until = end;
                } else {
                    st.create(e, None, &parent, &ppath, e.name())?;
                    let h = parent
                        .open_subdir(e.name())
                        .map_err(|err| MergeError::root_io("open directory", &e.path, err))?;
                    dirs.insert(e.path.clone(), (Rc::new(h), child_path(&ppath, e.name())));
                }
            }
            Action::PlaceInner { dest } => {
                st.create(e, target, &parent, &ppath, dest)?;
            }
            Action::SkipProtected => {
                reporter.event(MergeEvent::Notice(format!(
                    "{}: this update was merged before and discarded by the administrator (config memory); not merged again",
                    lossy(&e.path)
                )));
            }
            Action::Place { dest, replaces } => {
                let temp = temp_name(dest, &st.tx);
                st.note(Record::Temp {
                    dir: ppath.clone(),
                    name: temp.clone(),
                })?;
                // Registered before it is created: a failure half-way
                // through creating it still removes it.
                staged.temps.push((parent.clone(), temp.clone(), false));
                st.create(e, target, &parent, &ppath, &temp)?;
                let op = Record::Rename {
                    dir: ppath.clone(),
                    temp,
                    dest: dest.clone(),
                    // A node only goes where nothing is.
                    noreplace: !replaces
                        && matches!(e.kind, ImageKind::Fifo | ImageKind::Device { .. }),
                };
                if matches!(e.kind, ImageKind::Symlink { .. }) {
                    sym_ops.push(op);
                } else {
                    file_ops.push(op);
                }
            }
            Action::Touch => {
                reporter.event(MergeEvent::Identical(lossy(&e.path)));
                file_ops.push(Record::Touch {
                    dir: ppath.clone(),
                    name: e.name().to_vec(),
                    sec: e.mtime.sec,
                    nsec: e.mtime.nsec,
                });
            }
            Action::SkipNode => {
                reporter.event(MergeEvent::Notice(format!(
                    "{}: something already exists there; the node was not created",
                    lossy(&e.path)
                )));
            }
        }
    }
    if st.fsync {
        // The entries of new directories must be durable before the rename
        // that publishes them.
        for (i, e) in image.entries.iter().enumerate() {
            if matches!(
                plan.actions[i],
                Action::NewDirTop { .. } | Action::NewDirInner
            ) {
                if let Some((h, _)) = dirs.get(&e.path) {
                    h.fsync()
                        .map_err(|err| MergeError::root_io("fsync directory", &e.path, err))?;
                }
            }
        }
    }
    commit.extend(dir_ops);
    commit.extend(file_ops);
    commit.extend(sym_ops);
    Ok(())
}

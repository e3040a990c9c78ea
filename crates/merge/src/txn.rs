//! Completing or undoing a journaled transaction.
//!
//! [`apply_commit`] performs the steps recorded before a journal's `COMMIT`
//! line. Every step is idempotent, so the same function completes a
//! transaction in the process that started it and, after a crash, in
//! `vartree recover`. [`rollback`] undoes a transaction whose commit point
//! was never reached.

use std::collections::HashSet;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rootfs::dir::{DirHandle, FileTime};
use rootfs::root::{DirCache, FileId, FileKind, Root};
use vdb::db::{Reporter, Vdb};
use vdb::owners::PackageKeys;

use crate::error::MergeError;
use crate::journal::{self, Journal, Record};
use crate::unmerge::UnmergeOptions;

fn exists(dir: &DirHandle, name: &[u8]) -> bool {
    dir.lstat(name).is_ok()
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// What completing a transaction did.
#[derive(Debug, Default, Clone)]
pub struct Applied {
    /// Paths renamed into place (by this call; steps already done are not
    /// counted).
    pub renamed: Vec<Vec<u8>>,
    /// Paths of replaced or handed-over packages that were removed.
    pub removed: usize,
    /// Human-readable notes.
    pub notes: Vec<String>,
}

/// Perform the committed steps of a journal. `keep_inodes`: identities of
/// the files the new package placed (computed from its CONTENTS when not
/// given, as after a crash). `confmem_lock`: Portage's fs lock, held by a
/// merge since it staged the new config memory (taken here when needed
/// otherwise); released once the memory is in place, before the replaced
/// instances are unmerged.
#[allow(clippy::too_many_arguments)]
pub fn apply_commit(
    root: &Root,
    vdb: &Vdb,
    records: &[Record],
    unmerge_opts: &UnmergeOptions,
    keep_inodes: Option<&HashSet<FileId>>,
    confmem_lock: Option<vdb::lock::FileLock>,
    on_merged: &dyn Fn(&[u8], &[u8]),
    reporter: &dyn Reporter,
) -> Result<Applied, MergeError> {
    let mut out = Applied::default();
    let mut dirs = DirCache::new(root);
    let rio = |op, p: &[u8], e| MergeError::root_io(op, p, e);
    // 1. Renames and touches, in order.
    for r in records {
        match r {
            Record::Aside { dir, name, backup } => {
                let Some(d) = dirs.get(dir) else { continue };
                if exists(&d, name) && !exists(&d, backup) {
                    // Only a non-directory is ever moved aside.
                    if d.lstat(name).is_ok_and(|s| s.kind != FileKind::Directory) {
                        d.rename_noreplace(name, &d, backup)
                            .map_err(|e| rio("move aside", name, e))?;
                    }
                }
            }
            Record::Rename {
                dir,
                temp,
                dest,
                noreplace,
            } => {
                let Some(d) = dirs.get(dir) else { continue };
                if !exists(&d, temp) {
                    continue; // done already
                }
                let res = if *noreplace {
                    d.rename_noreplace(temp, &d, dest)
                } else {
                    d.rename(temp, &d, dest)
                };
                let mut path = if dir == b"/" { Vec::new() } else { dir.clone() };
                path.push(b'/');
                path.extend_from_slice(dest);
                match res {
                    Ok(()) => {
                        on_merged(&path, dest);
                        out.renamed.push(path);
                    }
                    // The place was taken meanwhile (by a Portage merge
                    // run between a crash and `recover`, say).
                    Err(e) if *noreplace && e.kind() == std::io::ErrorKind::AlreadyExists => {
                        let kind = |n: &[u8]| d.lstat(n).ok().map(|s| s.kind);
                        // A directory now there, or a symlink to one (the
                        // package merges through it, as Portage would),
                        // resolved inside ROOT.
                        let there = match kind(dest) {
                            Some(FileKind::Directory) => d.open_subdir(dest).ok(),
                            Some(FileKind::Symlink) => root.open_dir(&path).ok(),
                            _ => None,
                        };
                        if let (Some(FileKind::Directory), Some(to)) = (kind(temp), there) {
                            // A new directory of ours where a directory now
                            // is: the package's files go into it.
                            let from = d.open_subdir(temp).map_err(|e| rio("open", temp, e))?;
                            merge_tree_into(&from, &to, &path, &mut out.notes)
                                .map_err(|e| rio("merge into the existing directory", &path, e))?;
                            d.rmdir(temp).map_err(|e| rio("remove", temp, e))?;
                            out.notes.push(format!(
                                "{} appeared meanwhile: the package's files were merged into it",
                                lossy(&path)
                            ));
                            on_merged(&path, dest);
                            out.renamed.push(path);
                        } else {
                            // A node of another type is there: ours stays out.
                            let _ = if kind(temp) == Some(FileKind::Directory) {
                                remove_tree(&d, temp)
                            } else {
                                d.unlink(temp)
                            };
                            out.notes
                                .push(format!("{} already exists; left alone", lossy(&path)));
                        }
                    }
                    Err(e) => return Err(rio("rename into place", &path, e)),
                }
            }
            Record::Touch {
                dir,
                name,
                sec,
                nsec,
            } => {
                if let Some(d) = dirs.get(dir) {
                    let t = FileTime {
                        sec: *sec,
                        nsec: *nsec,
                    };
                    let _ = d.set_times(name, t, t);
                }
            }
            _ => {}
        }
    }
    // 2. The config memory: the new one was staged before the commit
    // point; it is renamed into place.
    let confmem: Vec<_> = records
        .iter()
        .filter_map(|r| match r {
            Record::Confmem { path, md5 } => Some((
                path.clone(),
                match md5 {
                    Some(m) => crate::protect::ConfmemUpdate::Remember(m.clone()),
                    None => crate::protect::ConfmemUpdate::Forget,
                },
            )),
            _ => None,
        })
        .collect();
    let staged = records.iter().rev().find_map(|r| match r {
        Record::ConfNew { name, base, .. } => Some((name, base)),
        _ => None,
    });
    match staged {
        Some((name, Some(base))) => {
            crate::cfgprotect::complete_staged_confmem(
                vdb.state(),
                name,
                base,
                &confmem,
                confmem_lock,
            )?;
        }
        // Staging had not begun writing: nothing was staged.
        Some((_, None)) => drop(confmem_lock),
        // A journal of an older vartree, which updated the memory here.
        None => {
            drop(confmem_lock);
            if !confmem.is_empty() {
                crate::cfgprotect::store_confmem_updates(vdb.state(), &confmem)?;
            }
        }
    }
    // 3. Publish the new entry; 4. remove what it replaces.
    let publish = records.iter().find_map(|r| match r {
        Record::Publish {
            exchange,
            cpv,
            counter,
        } => Some((*exchange, cpv.clone(), *counter)),
        _ => None,
    });
    let mut new_keys: Option<PackageKeys> = None;
    let mut computed_inodes: Option<HashSet<FileId>> = None;
    if let Some((exchange, cpv, counter)) = &publish {
        let cpv = atom::Cpv::parse(cpv).map_err(|e| MergeError::BuildInfo {
            path: vdb.dir().to_owned(),
            reason: format!("journal names an invalid package {cpv}: {e}"),
        })?;
        let merging = vdb.merging_dir(&cpv)?;
        let final_dir = vdb.installed_dir(cpv.category(), cpv.pf())?;
        let counter_of = |d: &Path| -> Option<i64> {
            std::fs::read_to_string(d.join("COUNTER"))
                .ok()
                .and_then(|s| s.trim().parse().ok())
        };
        let new_dir = if counter_of(&merging) == Some(*counter) {
            merging.clone()
        } else {
            final_dir.clone()
        };
        let new_entry = vdb::db::VdbEntry::new(cpv.clone(), new_dir);
        let keys = PackageKeys::new(
            &new_entry.contents(reporter)?.entries,
            vdb.eprefix().as_os_str().as_encoded_bytes(),
        );
        if counter_of(&merging) == Some(*counter) {
            if *exchange && final_dir.exists() {
                // Same CPV: the old instance's leftovers, then the swap.
                let old = vdb::db::VdbEntry::new(cpv.clone(), final_dir.clone());
                let inodes = keep_inodes.cloned().unwrap_or_else(|| {
                    computed_inodes
                        .get_or_insert_with(|| inodes_of(root, &keys))
                        .clone()
                });
                let files = crate::unmerge::unmerge_files(
                    vdb,
                    root,
                    &old,
                    unmerge_opts,
                    &[&keys],
                    &inodes,
                    reporter,
                )?;
                out.removed += files.result.removed.len();
                vdb::writer::exchange_merging(vdb, &cpv)?;
            } else {
                vdb::writer::publish_merging(vdb, &cpv)?;
            }
        } else if std::fs::symlink_metadata(&merging).is_ok() {
            // Exchanged already: the old entry is left under -MERGING-.
            rootfs::crash::point("remove replaced entry");
            std::fs::remove_dir_all(&merging).map_err(|e| MergeError::Io {
                op: "remove the replaced entry",
                path: merging.clone(),
                source: e,
            })?;
        }
        new_keys = Some(keys);
    }
    for r in records {
        let (cpv, handover) = match r {
            Record::Unmerge { cpv } => (cpv, false),
            Record::Handover { cpv } => (cpv, true),
            _ => continue,
        };
        let Ok(c) = atom::Cpv::parse(cpv) else {
            continue;
        };
        let Some(entry) = vdb.entry(c.category(), c.pf()) else {
            // Done already, perhaps up to the removal of the entry's
            // remains and of its emptied category.
            if let Err(e) = vdb::writer::finish_delete(vdb, c.category(), c.pf()) {
                out.notes.push(format!(
                    "{cpv}: could not finish removing its database entry: {e}"
                ));
            }
            continue;
        };
        let others: Vec<&PackageKeys> = new_keys.iter().collect();
        if handover {
            if let Some(k) = &new_keys {
                let taken = |p: &[u8]| k.match_path(root, p).is_some();
                vdb::writer::remove_from_contents(vdb, &entry, &taken, reporter)?;
            }
        }
        let inodes = match (keep_inodes, &new_keys) {
            (Some(i), _) => i.clone(),
            (None, Some(k)) => computed_inodes
                .get_or_insert_with(|| inodes_of(root, k))
                .clone(),
            (None, None) => HashSet::new(),
        };
        let o = crate::unmerge::unmerge_entry(
            vdb,
            root,
            &entry,
            unmerge_opts,
            &others,
            &inodes,
            reporter,
        )?;
        out.removed += o.result.removed.len();
    }
    Ok(out)
}

/// Identities of a package's regular files as they are now.
fn inodes_of(root: &Root, keys: &PackageKeys) -> HashSet<FileId> {
    keys.keys()
        .filter(|(_, t)| *t == vdb::contents::EntryType::Obj)
        .filter_map(|(k, _)| {
            let d = root.open_dir(vdb::contents::dirname(k)).ok()?;
            d.lstat(vdb::contents::basename(k)).ok().map(|s| s.id)
        })
        .collect()
}

/// Move the contents of our staged directory `from` into the directory
/// `to` that took its place (`path`, for the notes): what is not there is
/// renamed in; a non-directory replaces a non-directory (the package's file
/// is what its CONTENTS records); directories are merged the same way; a
/// directory where a non-directory is, or the reverse, stays out, with a
/// note. Idempotent: an interrupted run is completed by running it again.
fn merge_tree_into(
    from: &DirHandle,
    to: &DirHandle,
    path: &[u8],
    notes: &mut Vec<String>,
) -> std::io::Result<()> {
    for name in from.list()? {
        let ours = from.lstat(&name)?.kind;
        let theirs = match to.lstat(&name) {
            Ok(s) => Some(s.kind),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let mut child = path.to_vec();
        child.push(b'/');
        child.extend_from_slice(&name);
        match (
            ours == FileKind::Directory,
            theirs.map(|k| k == FileKind::Directory),
        ) {
            (_, None) => from.rename_noreplace(&name, to, &name)?,
            (true, Some(true)) => {
                merge_tree_into(
                    &from.open_subdir(&name)?,
                    &to.open_subdir(&name)?,
                    &child,
                    notes,
                )?;
                from.rmdir(&name)?;
            }
            (false, Some(false)) => {
                from.rename(&name, to, &name)?;
                notes.push(format!(
                    "{} was there already: replaced by the package's file",
                    lossy(&child)
                ));
            }
            (ours_dir, Some(_)) => {
                if ours_dir {
                    remove_tree(from, &name)?;
                } else {
                    from.unlink(&name)?;
                }
                notes.push(format!(
                    "{} exists with another file type; left alone",
                    lossy(&child)
                ));
            }
        }
    }
    to.fsync()
}

/// Remove a directory tree we created (never follows symlinks).
pub fn remove_tree(parent: &DirHandle, name: &[u8]) -> std::io::Result<()> {
    let d = parent.open_subdir(name)?;
    for child in d.list()? {
        match d.lstat(&child)?.kind {
            FileKind::Directory => remove_tree(&d, &child)?,
            _ => d.unlink(&child)?,
        }
    }
    parent.rmdir(name)
}

/// Undo a transaction that never reached its commit point: put files moved
/// out of the image back, remove staged temp names and trees, remove the
/// `-MERGING-` entry.
pub fn rollback(root: &Root, vdb: &Vdb, records: &[Record]) -> Vec<String> {
    let mut notes = Vec::new();
    let mut dirs = DirCache::new(root);
    // Image directories proven to be this transaction's: they hold the
    // marker it created. A journal forged inside ROOT cannot make files move
    // anywhere else.
    let images: Vec<&[u8]> = records
        .iter()
        .filter_map(|r| match r {
            Record::Image { dir, marker } if journal::image_marker_holds(dir, marker) => {
                Some(dir.as_slice())
            }
            _ => None,
        })
        .collect();
    let proven = |src_dir: &[u8]| {
        !src_dir
            .split(|&b| b == b'/')
            .any(|c| c == b".." || c == b".")
            && images.iter().any(|img| {
                src_dir == *img
                    || (src_dir.starts_with(img)
                        && (img.ends_with(b"/") || src_dir.get(img.len()) == Some(&b'/')))
            })
    };
    for r in records.iter().rev() {
        match r {
            Record::Moved {
                dir,
                name,
                src_dir,
                src_name,
            } => {
                if !proven(src_dir) {
                    notes.push(format!(
                        "left {} in place: its image directory {} is not proven to be this transaction's",
                        lossy(name),
                        lossy(src_dir)
                    ));
                    continue;
                }
                let src = DirHandle::open(Path::new(std::ffi::OsStr::from_bytes(src_dir)));
                if let (Some(d), Ok(s)) = (dirs.get(dir), src) {
                    if exists(&d, name)
                        && !exists(&s, src_name)
                        && d.rename(name, &s, src_name).is_ok()
                    {
                        notes.push(format!("moved {} back into the image", lossy(src_name)));
                    }
                }
            }
            Record::Temp { dir, name } => {
                if let Some(d) = dirs.get(dir) {
                    if d.lstat(name).is_ok_and(|s| s.kind != FileKind::Directory)
                        && d.unlink(name).is_ok()
                    {
                        notes.push(format!("removed staged {}", lossy(name)));
                    }
                }
            }
            Record::Tree { dir, name } => {
                if let Some(d) = dirs.get(dir) {
                    if d.lstat(name).is_ok_and(|s| s.kind == FileKind::Directory)
                        && remove_tree(&d, name).is_ok()
                    {
                        notes.push(format!("removed staged directory {}", lossy(name)));
                    }
                }
            }
            Record::ConfNew { name, created, .. } => {
                crate::cfgprotect::undo_staged_confmem(vdb.state(), name, *created, None);
            }
            Record::Entry { cpv } => {
                if let Ok(c) = atom::Cpv::parse(cpv) {
                    if let Ok(m) = vdb.merging_dir(&c) {
                        if std::fs::symlink_metadata(&m).is_ok() {
                            rootfs::crash::point("remove -MERGING-");
                            if std::fs::remove_dir_all(&m).is_ok() {
                                notes.push(format!("removed {}", m.display()));
                            }
                        }
                    }
                    // A category made for this package alone goes too.
                    vdb::writer::remove_category_if_empty(vdb, c.category());
                }
            }
            _ => {}
        }
    }
    notes
}

/// What `recover` found and did for one journal.
#[derive(Debug, Clone)]
pub struct Recovered {
    pub journal: std::path::PathBuf,
    pub kind: String,
    pub cpv: String,
    /// `true`: completed (rolled forward); `false`: rolled back.
    pub forward: bool,
    pub notes: Vec<String>,
}

impl Recovered {
    /// `KIND of CPV`, or `KIND` when no package is known (an unpacked
    /// binary package, a temp file).
    pub fn subject(&self) -> String {
        if self.cpv.is_empty() {
            self.kind.clone()
        } else {
            format!("{} of {}", self.kind, self.cpv)
        }
    }

    /// `completed` or `undone`.
    pub fn outcome(&self) -> &'static str {
        if self.forward {
            "completed"
        } else {
            "undone"
        }
    }
}

/// Find interrupted transactions and complete or undo each. Journals whose
/// owner is still running (it holds the journal's lock) are left alone.
/// The caller holds the VDB lock.
pub fn recover(
    root: &Root,
    vdb: &Vdb,
    unmerge_opts: &UnmergeOptions,
    pretend: bool,
    reporter: &dyn Reporter,
) -> Result<Vec<Recovered>, MergeError> {
    let dir = vdb.state().path(journal::JOURNAL_DIR)?;
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(MergeError::Io {
                op: "read directory",
                path: dir,
                source: e,
            })
        }
    };
    let all: Vec<_> = rd.filter_map(Result::ok).map(|e| e.path()).collect();
    // A journal being created (locked by its owner) or abandoned before it
    // had its name (the transaction had not started).
    for p in all
        .iter()
        .filter(|p| p.extension().is_some_and(|x| x == "new"))
    {
        if let Ok(Some(_l)) = rootfs::lock::LockedFile::try_lock(p) {
            if !pretend {
                let _ = std::fs::remove_file(p);
            }
        }
    }
    let mut paths: Vec<_> = all
        .into_iter()
        .filter(|p| p.extension().is_some_and(|x| x == "journal"))
        .collect();
    paths.sort();
    let mut out = Vec::new();
    for path in paths {
        // A live owner holds the lock.
        let Ok(Some(lock)) = rootfs::lock::LockedFile::try_lock(&path) else {
            continue;
        };
        let data = std::fs::read(&path).map_err(|e| MergeError::Io {
            op: "read journal",
            path: path.clone(),
            source: e,
        })?;
        let records = journal::parse(&data);
        let (kind, cpv) = records
            .iter()
            .find_map(|r| match r {
                Record::Begin { kind, cpv } => Some((kind.clone(), cpv.clone())),
                _ => None,
            })
            .unwrap_or_else(|| ("transaction".into(), "(unknown package)".into()));
        let forward = records.contains(&Record::Commit);
        let notes = if pretend {
            vec![if forward {
                "would complete the committed steps".to_owned()
            } else {
                "would undo the staged changes".to_owned()
            }]
        } else if forward {
            let a = apply_commit(
                root,
                vdb,
                &records,
                unmerge_opts,
                None,
                None,
                &|_, _| {},
                reporter,
            )?;
            let mut n = a.notes;
            n.push(format!(
                "completed: {} paths renamed into place, {} old paths removed",
                a.renamed.len(),
                a.removed
            ));
            n
        } else {
            rollback(root, vdb, &records)
        };
        if !pretend {
            journal::remove_image_markers(&records);
            rootfs::crash::point("journal remove");
            let _ = std::fs::remove_file(&path);
        }
        drop(lock);
        if !pretend {
            journal::remove_dir_if_empty(vdb.state());
        }
        out.push(Recovered {
            journal: path,
            kind,
            cpv,
            forward,
            notes,
        });
    }
    if !pretend {
        // Unpacked binary packages of installs that did not finish.
        for d in crate::install::remove_stale_staging(vdb.state()) {
            out.push(Recovered {
                journal: d,
                kind: "install".into(),
                cpv: String::new(),
                forward: false,
                notes: vec!["removed an unpacked package left by an interrupted install".into()],
            });
        }
        // Temp files of atomic writes outside any staging directory (the
        // counter, the config memory), left by a process killed between
        // writing and renaming them.
        let mut temps = vdb::counter::remove_stale_temps(vdb)?;
        temps.extend(crate::cfgprotect::remove_stale_confmem_temps(vdb.state())?);
        if !temps.is_empty() {
            out.push(Recovered {
                journal: PathBuf::new(),
                kind: "write".into(),
                cpv: String::new(),
                forward: false,
                notes: temps
                    .iter()
                    .map(|p| format!("removed {}, left by an interrupted write", p.display()))
                    .collect(),
            });
        }
        // An empty journal directory (a crash right after creating it).
        journal::remove_dir_if_empty(vdb.state());
    }
    Ok(out)
}

/// Start a journal.
pub fn begin(state: &vdb::state::StatePaths, kind: &str, cpv: &str) -> Result<Journal, MergeError> {
    Journal::begin(state, kind, cpv)
}

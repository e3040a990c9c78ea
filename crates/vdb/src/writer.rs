//! Writing VDB entries exactly as Portage does.
//!
//! A new entry is assembled in `CAT/-MERGING-PF` (invisible to readers),
//! every file is written under a temp name and renamed into place, the
//! consolidated `metadata` file is written last and stamped with the
//! directory's mtime, and the directory is then renamed to `CAT/PF`. The
//! category and `var/db/pkg` mtimes are bumped before and after each change,
//! as Portage's `_bump_mtime` does, because cache consumers validate by them.
//!
//! Every path is taken from [`Vdb::state`] when it is used, so that it is
//! resolved inside ROOT ([`crate::state`]): a symlinked `var`, `var/db`,
//! `var/db/pkg` or category is followed as if ROOT were `/`, never out of
//! ROOT; what is removed or renamed is named by a path whose last component
//! is not followed.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use atom::Cpv;
use rootfs::atomic::{self, Durability};

use crate::contents::{self, ContentsEntry};
use crate::db::{Vdb, VdbEntry, VdbError, MERGING_PREFIX, VDB_PATH};
use crate::metadata;

/// `var/db/pkg/CAT`, relative to EROOT.
fn category_rel(category: &str) -> String {
    format!("{VDB_PATH}/{category}")
}

/// `var/db/pkg/CAT/NAME`, relative to EROOT.
fn entry_rel(category: &str, name: &str) -> String {
    format!("{VDB_PATH}/{category}/{name}")
}

/// Set the mtime of `var/db/pkg/CAT` and `var/db/pkg` to now (Portage's
/// `_bump_mtime`), creating the category directory when it is missing.
pub fn bump_mtime(vdb: &Vdb, category: &str) -> Result<(), VdbError> {
    let state = vdb.state();
    let rel = category_rel(category);
    let catdir = state.path(&rel)?;
    let vdb_dir = state.path(VDB_PATH)?;
    for d in [&catdir, &vdb_dir] {
        if let Err(e) = touch_dir(d) {
            if e.kind() == io::ErrorKind::NotFound {
                state.create_dir(&rel)?;
                return Ok(());
            }
            return Err(VdbError::io("set mtime of", d, e));
        }
    }
    Ok(())
}

fn touch_dir(d: &Path) -> io::Result<()> {
    rootfs::crash::point("touch dir");
    let f = fs::File::open(d)?;
    let now = std::time::SystemTime::now();
    f.set_times(fs::FileTimes::new().set_accessed(now).set_modified(now))
}

/// `st_mtime_ns` of a path.
pub fn mtime_ns(path: &Path) -> Result<i128, VdbError> {
    let st = fs::metadata(path).map_err(|e| VdbError::io("stat", path, e))?;
    Ok(i128::from(st.mtime()) * 1_000_000_000 + i128::from(st.mtime_nsec()))
}

/// Write `metadata` from the per-key files of `dir` and stamp it (Portage's
/// `_consolidate_to_metadata_file`). When no carried key exists, nothing is
/// written. This must be the last change to the directory's entries.
pub fn consolidate_metadata(dir: &Path) -> Result<(), VdbError> {
    let mut fields = Vec::new();
    for key in metadata::FIELDS {
        match fs::read(dir.join(key)) {
            Ok(d) => fields.push((key, String::from_utf8_lossy(&d).into_owned())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) if e.kind() == io::ErrorKind::IsADirectory => {}
            Err(e) => return Err(VdbError::io("read", dir.join(key), e)),
        }
    }
    let path = dir.join(metadata::FILE_NAME);
    if fields.is_empty() {
        return Ok(());
    }
    let body = metadata::format_body(fields.iter().map(|(k, v)| (*k, v.as_str())));
    atomic::write_atomic(&path, &body, Durability::Deferred)?;
    stamp_metadata(dir)
}

/// Append the `#dir_mtime=` trailer with the directory's current mtime.
pub fn stamp_metadata(dir: &Path) -> Result<(), VdbError> {
    let ns = mtime_ns(dir)?;
    atomic::append(&dir.join(metadata::FILE_NAME), &metadata::stamp_line(ns))?;
    Ok(())
}

/// A new entry being assembled in `CAT/-MERGING-PF`.
#[derive(Debug)]
pub struct StagedEntry {
    cpv: Cpv,
    dir: PathBuf,
    /// The resolution of `dir`, verified before each write.
    resolved: rootfs::root::Resolved,
    durability: Durability,
}

impl Vdb {
    /// The `-MERGING-` directory of a package, resolved inside ROOT (its
    /// last component not followed): for removing or renaming it.
    pub fn merging_dir(&self, cpv: &Cpv) -> Result<PathBuf, VdbError> {
        self.state().entry(&merging_rel(cpv))
    }

    /// An installed entry's directory `CAT/PF`, resolved inside ROOT (its
    /// last component not followed): for removing or renaming it.
    pub fn installed_dir(&self, category: &str, pf: &str) -> Result<PathBuf, VdbError> {
        self.state().entry(&entry_rel(category, pf))
    }

    /// Start a new entry: remove a stale `CAT/-MERGING-PF` and create it
    /// empty (Portage's `treewalk` does the same).
    pub fn begin_entry(&self, cpv: &Cpv) -> Result<StagedEntry, VdbError> {
        self.state().create_dir(&category_rel(cpv.category()))?;
        let dir = self.merging_dir(cpv)?;
        rootfs::crash::point("begin entry");
        match fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(VdbError::io("remove stale", &dir, e)),
        }
        fs::create_dir(&dir).map_err(|e| VdbError::io("create directory", &dir, e))?;
        let resolved = self
            .state()
            .resolve(&merging_rel(cpv), rootfs::root::Resolve::NoFollowLast)?;
        if resolved.host_path() != dir {
            return Err(VdbError::Invalid {
                path: dir,
                reason: "changed while it was being created (a concurrent change in ROOT)".into(),
            });
        }
        Ok(StagedEntry {
            cpv: cpv.clone(),
            dir,
            resolved,
            durability: Durability::Deferred,
        })
    }
}

/// `var/db/pkg/CAT/-MERGING-PF`, relative to EROOT.
fn merging_rel(cpv: &Cpv) -> String {
    entry_rel(cpv.category(), &format!("{MERGING_PREFIX}{}", cpv.pf()))
}

impl StagedEntry {
    /// Fsync every file written from now on before its rename.
    pub fn with_durability(mut self, d: Durability) -> Self {
        self.durability = d;
        self
    }

    /// The `-MERGING-` directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Check that the directory's path still leads to it (inside ROOT).
    fn verify(&self) -> Result<(), VdbError> {
        self.resolved.verify().map_err(|source| VdbError::State {
            path: self.dir.clone(),
            source,
        })
    }

    /// Write one key file atomically.
    pub fn write_key(&self, key: &str, data: &[u8]) -> Result<(), VdbError> {
        if key.is_empty() || key.contains('/') || key.starts_with('.') {
            return Err(VdbError::Invalid {
                path: self.dir.join(key),
                reason: "not a valid VDB key name".into(),
            });
        }
        self.verify()?;
        atomic::write_atomic(&self.dir.join(key), data, self.durability)?;
        Ok(())
    }

    /// Copy every top-level regular file of a build-info directory, as
    /// Portage's `treewalk` does. Other kinds of entries are skipped.
    pub fn copy_build_info(&self, build_info: &Path) -> Result<(), VdbError> {
        let rd =
            fs::read_dir(build_info).map_err(|e| VdbError::io("read directory", build_info, e))?;
        for ent in rd {
            let ent = ent.map_err(|e| VdbError::io("read directory", build_info, e))?;
            let ft = ent
                .file_type()
                .map_err(|e| VdbError::io("stat", ent.path(), e))?;
            if !ft.is_file() {
                continue;
            }
            let name = ent.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with('.') {
                continue;
            }
            let data = fs::read(ent.path()).map_err(|e| VdbError::io("read", ent.path(), e))?;
            self.write_key(name, &data)?;
        }
        Ok(())
    }

    /// Write COUNTER (decimal, no trailing newline).
    pub fn write_counter(&self, counter: i64) -> Result<(), VdbError> {
        self.write_key("COUNTER", counter.to_string().as_bytes())
    }

    /// Write CONTENTS in the given order.
    pub fn write_contents(&self, entries: &[ContentsEntry]) -> Result<(), VdbError> {
        self.write_key("CONTENTS", &contents::to_bytes(entries))
    }

    /// Consolidate `metadata` (the last change to the directory) and move
    /// the entry to `CAT/PF`. Fails, leaving the `-MERGING-` directory in
    /// place, if `CAT/PF` already exists: replacing an instance is the merge
    /// engine's job.
    pub fn publish(self, vdb: &Vdb) -> Result<VdbEntry, VdbError> {
        self.verify()?;
        consolidate_metadata(&self.dir)?;
        if self.durability == Durability::Fsync {
            atomic::sync_dir(&self.dir)?;
        }
        bump_mtime(vdb, self.cpv.category())?;
        let final_dir = vdb.installed_dir(self.cpv.category(), self.cpv.pf())?;
        match fs::symlink_metadata(&final_dir) {
            Ok(_) => {
                return Err(VdbError::Invalid {
                    path: final_dir,
                    reason: "an entry already exists for this package".into(),
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(VdbError::io("stat", &final_dir, e)),
        }
        self.verify()?;
        rootfs::crash::point("publish entry");
        fs::rename(&self.dir, &final_dir)
            .map_err(|e| VdbError::io("rename into place", &self.dir, e))?;
        if self.durability == Durability::Fsync {
            if let Some(cat) = final_dir.parent() {
                atomic::sync_dir(cat)?;
            }
        }
        bump_mtime(vdb, self.cpv.category())?;
        Ok(VdbEntry::new(self.cpv, final_dir))
    }

    /// Replace the installed entry of the same CPV in one step: after
    /// consolidating `metadata`, `renameat2(RENAME_EXCHANGE)` swaps
    /// `CAT/-MERGING-PF` and `CAT/PF`, so that readers see the old entry or
    /// the new one and never none; the old one, now under the `-MERGING-`
    /// name, is then removed. Falls back to a plain publish when there is
    /// no entry to exchange with.
    pub fn publish_exchange(self, vdb: &Vdb) -> Result<VdbEntry, VdbError> {
        let final_dir = vdb.installed_dir(self.cpv.category(), self.cpv.pf())?;
        if fs::symlink_metadata(&final_dir).is_err() {
            return self.publish(vdb);
        }
        self.verify()?;
        consolidate_metadata(&self.dir)?;
        if self.durability == Durability::Fsync {
            atomic::sync_dir(&self.dir)?;
        }
        bump_mtime(vdb, self.cpv.category())?;
        let (cat, catpath) = open_category(vdb, self.cpv.category())?;
        let tmp_name = self
            .dir
            .file_name()
            .unwrap_or_default()
            .as_encoded_bytes()
            .to_vec();
        let pf = self.cpv.pf().as_bytes().to_vec();
        cat.rename_exchange(&tmp_name, &cat, &pf)
            .map_err(|e| VdbError::io("exchange with the installed entry", &final_dir, e))?;
        if self.durability == Durability::Fsync {
            cat.fsync()
                .map_err(|e| VdbError::io("fsync", &catpath, e))?;
        }
        fs::remove_dir_all(&self.dir)
            .map_err(|e| VdbError::io("remove the replaced entry", &self.dir, e))?;
        bump_mtime(vdb, self.cpv.category())?;
        Ok(VdbEntry::new(self.cpv, final_dir))
    }

    /// Complete the entry in place (consolidate and stamp `metadata`, the
    /// last change to the directory), for a caller that publishes it later
    /// with [`publish_merging`] or [`exchange_merging`] (a journaled
    /// transaction records the commit point in between).
    pub fn finish(self) -> Result<(), VdbError> {
        self.verify()?;
        consolidate_metadata(&self.dir)?;
        if self.durability == Durability::Fsync {
            atomic::sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// Remove the `-MERGING-` directory.
    pub fn abort(self) -> Result<(), VdbError> {
        self.verify()?;
        fs::remove_dir_all(&self.dir).map_err(|e| VdbError::io("remove", &self.dir, e))
    }
}

/// The category directory `var/db/pkg/CAT` (resolved inside ROOT) opened
/// for `*at` operations, and its path.
fn open_category(vdb: &Vdb, category: &str) -> Result<(rootfs::dir::DirHandle, PathBuf), VdbError> {
    let catpath = vdb.state().path(&category_rel(category))?;
    let cat =
        rootfs::dir::DirHandle::open(&catpath).map_err(|e| VdbError::io("open", &catpath, e))?;
    Ok((cat, catpath))
}

/// An installed entry's directory, resolved inside ROOT now, for writing
/// into it.
fn entry_dir_for_write(vdb: &Vdb, entry: &VdbEntry) -> Result<PathBuf, VdbError> {
    vdb.state()
        .path(&entry_rel(entry.cpv.category(), entry.cpv.pf()))
}

fn remove_key_file(path: &Path) -> io::Result<()> {
    rootfs::crash::point("remove key");
    fs::remove_file(path)
}

/// Portage's `aux_update`: write (or, for `None`, delete) key files of an
/// installed entry atomically, then re-consolidate `metadata` if the entry
/// has one, bumping the directory mtimes around the change.
pub fn update_keys(
    vdb: &Vdb,
    entry: &VdbEntry,
    values: &[(&str, Option<&[u8]>)],
) -> Result<(), VdbError> {
    let dir = &entry_dir_for_write(vdb, entry)?;
    if !dir.is_dir() {
        return Err(VdbError::Invalid {
            path: dir.to_owned(),
            reason: "no such VDB entry".into(),
        });
    }
    bump_mtime(vdb, entry.cpv.category())?;
    for (key, value) in values {
        let path = dir.join(key);
        match value {
            Some(v) if !v.is_empty() => atomic::write_atomic(&path, v, Durability::Deferred)?,
            _ => match remove_key_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(VdbError::io("remove", path, e)),
            },
        }
    }
    if dir.join(metadata::FILE_NAME).exists() {
        consolidate_metadata(dir)?;
    }
    bump_mtime(vdb, entry.cpv.category())
}

/// Rewrite an installed entry's CONTENTS sorted by path (Portage's
/// `write_contents`, used whenever it rewrites CONTENTS), atomically and with
/// `metadata` kept coherent. An empty list leaves an empty CONTENTS file.
pub fn rewrite_contents_sorted(
    vdb: &Vdb,
    entry: &VdbEntry,
    entries: &[ContentsEntry],
) -> Result<(), VdbError> {
    let bytes = contents::to_sorted_bytes(entries);
    let dir = entry_dir_for_write(vdb, entry)?;
    bump_mtime(vdb, entry.cpv.category())?;
    atomic::write_atomic(&dir.join("CONTENTS"), &bytes, Durability::Deferred)?;
    if dir.join(metadata::FILE_NAME).exists() {
        consolidate_metadata(&dir)?;
    }
    bump_mtime(vdb, entry.cpv.category())
}

/// Remove an installed entry (Portage's `dblink.delete`): the directory
/// tree, then the category directory if it is now empty, with the mtime
/// bumps around it.
pub fn delete_entry(vdb: &Vdb, entry: &VdbEntry) -> Result<(), VdbError> {
    let (category, pf) = (entry.cpv.category(), entry.cpv.pf());
    bump_mtime(vdb, category)?;
    let dir = vdb.installed_dir(category, pf)?;
    let gone = vdb.state().entry(&entry_rel(category, &removed_name(pf)))?;
    // A leftover of an earlier interrupted deletion of the same name.
    remove_tree_if_present(&gone)?;
    rootfs::crash::point("delete entry");
    // The entry disappears whole: readers (Portage's included, which skip
    // dot names) never see it half removed.
    match fs::rename(&dir, &gone) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(VdbError::io("move aside", &dir, e)),
    }
    rootfs::crash::point("remove deleted entry");
    finish_delete(vdb, category, pf)
}

/// The name an entry has while [`delete_entry`] removes it.
pub fn removed_name(pf: &str) -> String {
    format!(".vartree-removed.{pf}")
}

fn remove_tree_if_present(dir: &Path) -> Result<(), VdbError> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(VdbError::io("remove", dir, e)),
    }
}

/// The end of [`delete_entry`], idempotent, for recovery after a crash:
/// remove what is left of `CAT/PF` under its removal name, then the
/// category directory when it is empty. The caller holds the VDB lock.
pub fn finish_delete(vdb: &Vdb, category: &str, pf: &str) -> Result<(), VdbError> {
    let gone = vdb.state().entry(&entry_rel(category, &removed_name(pf)))?;
    remove_tree_if_present(&gone)?;
    rootfs::crash::point("remove empty category");
    if remove_category_if_empty(vdb, category) {
        let vdb_dir = vdb.state().path(VDB_PATH)?;
        if let Err(e) = touch_dir(&vdb_dir) {
            return Err(VdbError::io("set mtime of", &vdb_dir, e));
        }
        return Ok(());
    }
    // Not created again when it is gone (an earlier run removed it).
    let state = vdb.state();
    for d in [state.path(&category_rel(category))?, state.path(VDB_PATH)?] {
        match touch_dir(&d) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(VdbError::io("set mtime of", &d, e))
            }
            _ => {}
        }
    }
    Ok(())
}

/// Remove `var/db/pkg/CAT` if it is an empty directory (a symlink to one
/// stays). Whether it was removed.
pub fn remove_category_if_empty(vdb: &Vdb, category: &str) -> bool {
    // Fails harmlessly when other packages (or lock files) remain.
    match vdb.state().entry(&category_rel(category)) {
        Ok(catdir) => fs::remove_dir(catdir).is_ok(),
        Err(_) => false,
    }
}

/// Portage's `removeFromContents`: drop from an installed entry's CONTENTS
/// every path `taken` says now belongs to another package, and the
/// NEEDED.ELF.2 lines of those paths. CONTENTS is rewritten sorted, both
/// files atomically, `metadata` kept coherent, mtimes bumped. Returns how
/// many entries were dropped.
pub fn remove_from_contents(
    vdb: &Vdb,
    entry: &VdbEntry,
    taken: &dyn Fn(&[u8]) -> bool,
    reporter: &dyn crate::db::Reporter,
) -> Result<usize, VdbError> {
    let parsed = entry.contents(reporter)?;
    let keep: Vec<ContentsEntry> = parsed
        .entries
        .iter()
        .filter(|e| !taken(&e.normalized_path()))
        .cloned()
        .collect();
    let dropped = parsed.entries.len() - keep.len();
    if dropped == 0 {
        return Ok(0);
    }
    let dir = entry_dir_for_write(vdb, entry)?;
    bump_mtime(vdb, entry.cpv.category())?;
    atomic::write_atomic(
        &dir.join("CONTENTS"),
        &contents::to_sorted_bytes(&keep),
        Durability::Deferred,
    )?;
    if let Some(needed) = entry.read_raw("NEEDED.ELF.2")? {
        let text = String::from_utf8_lossy(&needed);
        let mut out = String::new();
        for line in text.lines() {
            let path = line.split(';').nth(1).unwrap_or("");
            if path.is_empty() || !taken(path.as_bytes()) {
                out.push_str(line);
                out.push('\n');
            }
        }
        atomic::write_atomic(
            &dir.join("NEEDED.ELF.2"),
            out.as_bytes(),
            Durability::Deferred,
        )?;
    }
    if dir.join(metadata::FILE_NAME).exists() {
        consolidate_metadata(&dir)?;
    }
    bump_mtime(vdb, entry.cpv.category())?;
    Ok(dropped)
}

/// Publish a finished `CAT/-MERGING-PF` as `CAT/PF` (which must not exist).
pub fn publish_merging(vdb: &Vdb, cpv: &Cpv) -> Result<VdbEntry, VdbError> {
    let dir = vdb.merging_dir(cpv)?;
    let final_dir = vdb.installed_dir(cpv.category(), cpv.pf())?;
    bump_mtime(vdb, cpv.category())?;
    let (cat, _) = open_category(vdb, cpv.category())?;
    let tmp_name = dir
        .file_name()
        .unwrap_or_default()
        .as_encoded_bytes()
        .to_vec();
    cat.rename_noreplace(&tmp_name, &cat, cpv.pf().as_bytes())
        .map_err(|e| VdbError::io("rename into place", &final_dir, e))?;
    bump_mtime(vdb, cpv.category())?;
    Ok(VdbEntry::new(cpv.clone(), final_dir))
}

/// Swap a finished `CAT/-MERGING-PF` with the installed `CAT/PF` in one
/// step (`RENAME_EXCHANGE`), then remove the old entry, now under the
/// `-MERGING-` name.
pub fn exchange_merging(vdb: &Vdb, cpv: &Cpv) -> Result<VdbEntry, VdbError> {
    let dir = vdb.merging_dir(cpv)?;
    let final_dir = vdb.installed_dir(cpv.category(), cpv.pf())?;
    bump_mtime(vdb, cpv.category())?;
    let (cat, _) = open_category(vdb, cpv.category())?;
    let tmp_name = dir
        .file_name()
        .unwrap_or_default()
        .as_encoded_bytes()
        .to_vec();
    cat.rename_exchange(&tmp_name, &cat, cpv.pf().as_bytes())
        .map_err(|e| VdbError::io("exchange with the installed entry", &final_dir, e))?;
    rootfs::crash::point("remove replaced entry");
    fs::remove_dir_all(&dir).map_err(|e| VdbError::io("remove the replaced entry", &dir, e))?;
    bump_mtime(vdb, cpv.category())?;
    Ok(VdbEntry::new(cpv.clone(), final_dir))
}

//! Writing VDB entries exactly as Portage does.
//!
//! A new entry is assembled in `CAT/-MERGING-PF` (invisible to readers),
//! every file is written under a temp name and renamed into place, the
//! consolidated `metadata` file is written last and stamped with the
//! directory's mtime, and the directory is then renamed to `CAT/PF`. The
//! category and `var/db/pkg` mtimes are bumped before and after each change,
//! as Portage's `_bump_mtime` does, because cache consumers validate by them.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use atom::Cpv;
use rootfs::atomic::{self, Durability};

use crate::contents::{self, ContentsEntry};
use crate::db::{Vdb, VdbEntry, VdbError, MERGING_PREFIX};
use crate::metadata;

/// Set the mtime of `var/db/pkg/CAT` and `var/db/pkg` to now (Portage's
/// `_bump_mtime`), creating the category directory when it is missing.
pub fn bump_mtime(vdb: &Vdb, category: &str) -> Result<(), VdbError> {
    let catdir = vdb.dir().join(category);
    for d in [&catdir, &vdb.dir().to_path_buf()] {
        if let Err(e) = touch_dir(d) {
            if e.kind() == io::ErrorKind::NotFound {
                fs::create_dir_all(&catdir)
                    .map_err(|e| VdbError::io("create directory", &catdir, e))?;
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
    final_dir: PathBuf,
    durability: Durability,
}

impl Vdb {
    /// The `-MERGING-` directory for a package.
    pub fn merging_dir(&self, cpv: &Cpv) -> PathBuf {
        self.dir()
            .join(cpv.category())
            .join(format!("{MERGING_PREFIX}{}", cpv.pf()))
    }

    /// Start a new entry: remove a stale `CAT/-MERGING-PF` and create it
    /// empty (Portage's `treewalk` does the same).
    pub fn begin_entry(&self, cpv: &Cpv) -> Result<StagedEntry, VdbError> {
        let dir = self.merging_dir(cpv);
        rootfs::crash::point("begin entry");
        match fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(VdbError::io("remove stale", &dir, e)),
        }
        fs::create_dir_all(&dir).map_err(|e| VdbError::io("create directory", &dir, e))?;
        Ok(StagedEntry {
            cpv: cpv.clone(),
            final_dir: self.entry_dir(cpv.category(), cpv.pf()),
            dir,
            durability: Durability::Deferred,
        })
    }
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

    /// Write one key file atomically.
    pub fn write_key(&self, key: &str, data: &[u8]) -> Result<(), VdbError> {
        if key.is_empty() || key.contains('/') || key.starts_with('.') {
            return Err(VdbError::Invalid {
                path: self.dir.join(key),
                reason: "not a valid VDB key name".into(),
            });
        }
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
        consolidate_metadata(&self.dir)?;
        if self.durability == Durability::Fsync {
            atomic::sync_dir(&self.dir)?;
        }
        bump_mtime(vdb, self.cpv.category())?;
        match fs::symlink_metadata(&self.final_dir) {
            Ok(_) => {
                return Err(VdbError::Invalid {
                    path: self.final_dir.clone(),
                    reason: "an entry already exists for this package".into(),
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(VdbError::io("stat", &self.final_dir, e)),
        }
        rootfs::crash::point("publish entry");
        fs::rename(&self.dir, &self.final_dir)
            .map_err(|e| VdbError::io("rename into place", &self.dir, e))?;
        if self.durability == Durability::Fsync {
            if let Some(cat) = self.final_dir.parent() {
                atomic::sync_dir(cat)?;
            }
        }
        bump_mtime(vdb, self.cpv.category())?;
        Ok(VdbEntry::new(self.cpv, self.final_dir))
    }

    /// Replace the installed entry of the same CPV in one step: after
    /// consolidating `metadata`, `renameat2(RENAME_EXCHANGE)` swaps
    /// `CAT/-MERGING-PF` and `CAT/PF`, so that readers see the old entry or
    /// the new one and never none; the old one, now under the `-MERGING-`
    /// name, is then removed. Falls back to a plain publish when there is
    /// no entry to exchange with.
    pub fn publish_exchange(self, vdb: &Vdb) -> Result<VdbEntry, VdbError> {
        if fs::symlink_metadata(&self.final_dir).is_err() {
            return self.publish(vdb);
        }
        consolidate_metadata(&self.dir)?;
        if self.durability == Durability::Fsync {
            atomic::sync_dir(&self.dir)?;
        }
        bump_mtime(vdb, self.cpv.category())?;
        let cat = rootfs::dir::DirHandle::open(&vdb.dir().join(self.cpv.category()))
            .map_err(|e| VdbError::io("open", vdb.dir().join(self.cpv.category()), e))?;
        let tmp_name = self
            .dir
            .file_name()
            .unwrap_or_default()
            .as_encoded_bytes()
            .to_vec();
        let pf = self.cpv.pf().as_bytes().to_vec();
        cat.rename_exchange(&tmp_name, &cat, &pf)
            .map_err(|e| VdbError::io("exchange with the installed entry", &self.final_dir, e))?;
        if self.durability == Durability::Fsync {
            cat.fsync()
                .map_err(|e| VdbError::io("fsync", vdb.dir().join(self.cpv.category()), e))?;
        }
        fs::remove_dir_all(&self.dir)
            .map_err(|e| VdbError::io("remove the replaced entry", &self.dir, e))?;
        bump_mtime(vdb, self.cpv.category())?;
        Ok(VdbEntry::new(self.cpv, self.final_dir))
    }

    /// Complete the entry in place (consolidate and stamp `metadata`, the
    /// last change to the directory), for a caller that publishes it later
    /// with [`publish_merging`] or [`exchange_merging`] (a journaled
    /// transaction records the commit point in between).
    pub fn finish(self) -> Result<(), VdbError> {
        consolidate_metadata(&self.dir)?;
        if self.durability == Durability::Fsync {
            atomic::sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// Remove the `-MERGING-` directory.
    pub fn abort(self) -> Result<(), VdbError> {
        fs::remove_dir_all(&self.dir).map_err(|e| VdbError::io("remove", &self.dir, e))
    }
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
    let dir = entry.dir();
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
    bump_mtime(vdb, entry.cpv.category())?;
    atomic::write_atomic(&entry.path_of("CONTENTS"), &bytes, Durability::Deferred)?;
    if entry.path_of(metadata::FILE_NAME).exists() {
        consolidate_metadata(entry.dir())?;
    }
    bump_mtime(vdb, entry.cpv.category())
}

/// Remove an installed entry (Portage's `dblink.delete`): the directory
/// tree, then the category directory if it is now empty, with the mtime
/// bumps around it.
pub fn delete_entry(vdb: &Vdb, entry: &VdbEntry) -> Result<(), VdbError> {
    bump_mtime(vdb, entry.cpv.category())?;
    rootfs::crash::point("delete entry");
    match fs::remove_dir_all(entry.dir()) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(VdbError::io("remove", entry.dir(), e)),
    }
    let catdir = vdb.dir().join(entry.cpv.category());
    // Fails harmlessly when other packages (or lock files) remain.
    if fs::remove_dir(&catdir).is_ok() {
        if let Err(e) = touch_dir(vdb.dir()) {
            return Err(VdbError::io("set mtime of", vdb.dir(), e));
        }
        return Ok(());
    }
    bump_mtime(vdb, entry.cpv.category())
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
    bump_mtime(vdb, entry.cpv.category())?;
    atomic::write_atomic(
        &entry.path_of("CONTENTS"),
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
            &entry.path_of("NEEDED.ELF.2"),
            out.as_bytes(),
            Durability::Deferred,
        )?;
    }
    if entry.path_of(metadata::FILE_NAME).exists() {
        consolidate_metadata(entry.dir())?;
    }
    bump_mtime(vdb, entry.cpv.category())?;
    Ok(dropped)
}

/// Publish a finished `CAT/-MERGING-PF` as `CAT/PF` (which must not exist).
pub fn publish_merging(vdb: &Vdb, cpv: &Cpv) -> Result<VdbEntry, VdbError> {
    let dir = vdb.merging_dir(cpv);
    let final_dir = vdb.entry_dir(cpv.category(), cpv.pf());
    bump_mtime(vdb, cpv.category())?;
    let cat = rootfs::dir::DirHandle::open(&vdb.dir().join(cpv.category()))
        .map_err(|e| VdbError::io("open", vdb.dir().join(cpv.category()), e))?;
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
    let dir = vdb.merging_dir(cpv);
    let final_dir = vdb.entry_dir(cpv.category(), cpv.pf());
    bump_mtime(vdb, cpv.category())?;
    let catpath = vdb.dir().join(cpv.category());
    let cat =
        rootfs::dir::DirHandle::open(&catpath).map_err(|e| VdbError::io("open", &catpath, e))?;
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

//! What an interrupted *Portage* merge leaves behind, and the proof that a
//! leftover is Portage's before `vartree recover` removes it.
//!
//! A Portage merge killed half-way (`dblink.treewalk` → `mergeme` →
//! `movefile`) can leave three kinds of things:
//!
//! * `CAT/-MERGING-PF` in the VDB: the entry being assembled (build-info,
//!   `COUNTER`, and `CONTENTS` being written through a temp file named
//!   `CONTENTS` + 8 random characters). Portage itself removes it only when
//!   the same `CAT/PF` is merged again (`treewalk` deletes its `dbtmpdir`
//!   first), or through `emaint --fix merges`.
//! * `DEST#new`: `movefile` copies a regular file under this fixed name when
//!   it cannot rename it into place (the image is on another filesystem),
//!   then renames it over `DEST`.
//! * `.NAME._portage_merge_.PIDxxxxxxxx` (8 characters of
//!   `[a-z0-9_]`, from `tempfile`): the hard link `movefile` makes to an
//!   already merged file of the same image inode, then renames over `NAME`.
//!
//! The proof rule (`docs/crash-safety.md`, "Portage's leftovers"):
//!
//! * `CAT/-MERGING-PF` is Portage's leftover when the caller holds the VDB
//!   lock (a Portage merge holds it throughout, unless
//!   `FEATURES=parallel-install`), no journal of vartree names `CAT/PF`, and
//!   no Portage process holds a slot lock of the package (`parallel-install`
//!   merges hold `CAT/.PN:SLOT.portage_lockfile` instead): the slot lock of
//!   the slot recorded in its `SLOT` is taken (held until it is removed),
//!   and when it records none, every slot lock of `CAT/PN` there is.
//! * A temp file is Portage's when a proven `-MERGING-` leftover of `CAT/PF`
//!   exists, the file's name is exactly the temp name `movefile` gives to a
//!   path `D/X` (or to `D/._cfgNNNN_X`, the name a protected `D/X` is merged
//!   under), `D/X` is a file or symlink recorded in that `-MERGING-`
//!   directory's CONTENTS (complete lines of the file or of its temp files)
//!   or in the CONTENTS of an installed instance of `CAT/PN` (the one that
//!   merge was replacing), the temp file is a regular file, and no installed
//!   package records the temp file's own path. A `._portage_merge_` file is
//!   also proven when it is a hard link to a file that `-MERGING-` CONTENTS
//!   records (it is that merge's hard-link group).
//!
//! Everything else is left alone and reported: a `X#new` whose `X` no
//! package records (a new file of a fresh install, or the administrator's
//! own file), a `-MERGING-` directory a live merge may own.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::PathBuf;

use rootfs::root::{FileId, FileKind, Root};
use vdb::contents::{basename, dirname, EntryKind};
use vdb::db::{Reporter, Vdb, MERGING_PREFIX};

use crate::error::MergeError;
use crate::journal::{self, Record};

/// One interrupted Portage merge and what was (or would be) done about it.
#[derive(Debug, Clone, Default)]
pub struct PortageLeftover {
    /// The package whose merge was interrupted (`CAT/PF`).
    pub cpv: String,
    /// Its `CAT/-MERGING-PF` directory.
    pub merging_dir: PathBuf,
    /// Whether the directory is proven Portage's leftover (and removed,
    /// unless pretending).
    pub proven: bool,
    /// Temp files proven to be that merge's (ROOT paths), removed unless
    /// pretending.
    pub files: Vec<Vec<u8>>,
    /// Things looked at and left alone: (path, why).
    pub kept: Vec<(String, String)>,
    /// What the user should know.
    pub notes: Vec<String>,
}

/// `tempfile`'s random characters.
fn is_tempfile_char(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'
}

/// `CONTENTS`, or an `atomic_ofstream` temp of it (`CONTENTS` + 8 random
/// characters).
fn is_contents_name(name: &[u8]) -> bool {
    match name.strip_prefix(b"CONTENTS") {
        Some(rest) => {
            rest.is_empty() || (rest.len() == 8 && rest.iter().all(|&b| is_tempfile_char(b)))
        }
        None => false,
    }
}

/// The `NAME` of `.NAME._portage_merge_.PIDxxxxxxxx`, if `name` is exactly
/// such a temp name.
pub fn portage_merge_tail(name: &[u8]) -> Option<&[u8]> {
    const MARK: &[u8] = b"._portage_merge_.";
    let rest = name.strip_prefix(b".")?;
    let at = rest.windows(MARK.len()).rposition(|w| w == MARK)?;
    let (tail, suffix) = (&rest[..at], &rest[at + MARK.len()..]);
    if tail.is_empty() || suffix.len() < 9 {
        return None;
    }
    let (pid, random) = suffix.split_at(suffix.len() - 8);
    (pid.iter().all(u8::is_ascii_digit) && random.iter().all(|&b| is_tempfile_char(b)))
        .then_some(tail)
}

/// The `NAME` of `NAME#new`.
pub fn movefile_new_tail(name: &[u8]) -> Option<&[u8]> {
    name.strip_suffix(b"#new").filter(|t| !t.is_empty())
}

/// `Y` of a `._cfgNNNN_Y` name.
fn cfg_tail(name: &[u8]) -> Option<&[u8]> {
    let rest = name.strip_prefix(b"._cfg")?;
    let (num, rest) = rest.split_at_checked(4)?;
    let y = rest.strip_prefix(b"_")?;
    (num.iter().all(u8::is_ascii_digit) && !y.is_empty()).then_some(y)
}

/// Complete lines only: a temp CONTENTS may end in the middle of a line
/// (Python writes its buffer in blocks).
fn complete_lines(data: &[u8]) -> &[u8] {
    match data.iter().rposition(|&b| b == b'\n') {
        Some(i) => &data[..=i],
        None => &[],
    }
}

/// The paths recorded as files or symlinks, by directory.
type Recorded = BTreeMap<Vec<u8>, BTreeSet<Vec<u8>>>;

fn record(into: &mut Recorded, entries: &[vdb::contents::ContentsEntry]) {
    for e in entries {
        if matches!(e.kind, EntryKind::Dir) {
            continue;
        }
        let p = e.normalized_path();
        into.entry(dirname(&p).to_vec())
            .or_default()
            .insert(basename(&p).to_vec());
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The packages vartree's journals name (`BEGIN`, `ENTRY`), live or not.
fn journaled_packages(vdb: &Vdb) -> HashSet<String> {
    let mut out = HashSet::new();
    let Ok(rd) = vdb
        .state()
        .path(journal::JOURNAL_DIR)
        .and_then(|d| std::fs::read_dir(&d).map_err(|e| vdb::db::VdbError::io("list", d, e)))
    else {
        return out;
    };
    for e in rd.filter_map(Result::ok) {
        let Ok(data) = std::fs::read(e.path()) else {
            continue;
        };
        for r in journal::parse(&data) {
            match r {
                Record::Begin { cpv, .. } | Record::Entry { cpv } => {
                    out.insert(cpv);
                }
                _ => {}
            }
        }
    }
    out
}

/// Take, without waiting, the slot locks a `parallel-install` Portage merge
/// of `cat/pn` would hold. `Err(path)`: one is busy.
fn take_slot_locks(
    vdb: &Vdb,
    cat: &str,
    pn: &str,
    slot: Option<&str>,
) -> Result<Vec<vdb::lock::SidecarLock>, String> {
    let cdir = vdb.state().category_dir(cat).map_err(|e| e.to_string())?;
    let slots: Vec<String> = match slot {
        Some(s) => vec![s.to_owned()],
        None => {
            // Every slot lock of the package that exists now.
            let prefix = format!(".{pn}:");
            let mut v: Vec<String> = std::fs::read_dir(&cdir)
                .map(|rd| {
                    rd.filter_map(Result::ok)
                        .filter_map(|e| {
                            let n = e.file_name().to_string_lossy().into_owned();
                            n.strip_prefix(&prefix)?
                                .strip_suffix(vdb::lock::LOCK_FILE_SUFFIX)
                                .map(str::to_owned)
                        })
                        .collect()
                })
                .unwrap_or_default();
            v.sort();
            v
        }
    };
    let mut held = Vec::new();
    for s in slots {
        let target = cdir.join(format!("{pn}:{s}"));
        match vdb::lock::SidecarLock::try_acquire(&target) {
            Ok(Some(l)) => held.push(l),
            Ok(None) | Err(_) => {
                return Err(vdb::lock::slot_lock_path(vdb.eroot(), cat, pn, &s)
                    .display()
                    .to_string())
            }
        }
    }
    Ok(held)
}

/// Passes warnings on, except the one about the `-MERGING-` directories
/// being dealt with here.
struct NotIncomplete<'a>(&'a dyn Reporter);

impl Reporter for NotIncomplete<'_> {
    fn warn(&self, w: vdb::db::Warning) {
        if !matches!(w, vdb::db::Warning::IncompleteMerge { .. }) {
            self.0.warn(w);
        }
    }
}

/// Find the leftovers of interrupted Portage merges and remove those proven
/// to be Portage's (nothing with `pretend`). The caller holds the VDB lock
/// and has recovered vartree's own transactions first.
pub fn clean_portage_leftovers(
    root: &Root,
    vdb: &Vdb,
    pretend: bool,
    reporter: &dyn Reporter,
) -> Result<Vec<PortageLeftover>, MergeError> {
    let reporter = &NotIncomplete(reporter);
    let mut found: Vec<(String, String, PathBuf)> = Vec::new();
    let rd = match std::fs::read_dir(vdb.dir()) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(MergeError::Io {
                op: "read directory",
                path: vdb.dir().to_owned(),
                source: e,
            })
        }
    };
    // Categories, symlinked ones resolved inside ROOT.
    let mut cats: Vec<_> = rd
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir() || t.is_symlink()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|c| !c.starts_with('.'))
        .collect();
    cats.sort();
    for cat in cats {
        let Some(cdir) = vdb.category_dir(&cat, reporter) else {
            continue;
        };
        let Ok(rd) = std::fs::read_dir(&cdir) else {
            continue;
        };
        let mut names: Vec<_> = rd
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter_map(|n| n.strip_prefix(MERGING_PREFIX).map(str::to_owned))
            .collect();
        names.sort();
        for pf in names {
            let dir = cdir.join(format!("{MERGING_PREFIX}{pf}"));
            found.push((cat.clone(), pf, dir));
        }
    }
    if found.is_empty() {
        return Ok(Vec::new());
    }
    let ours = journaled_packages(vdb);
    let mut out = Vec::new();
    for (cat, pf, dir) in found {
        let cpv_s = format!("{cat}/{pf}");
        let mut lo = PortageLeftover {
            cpv: cpv_s.clone(),
            merging_dir: dir.clone(),
            ..PortageLeftover::default()
        };
        let Ok(cpv) = atom::Cpv::parse(&cpv_s) else {
            lo.kept.push((
                dir.display().to_string(),
                "its name is not a valid package".into(),
            ));
            out.push(lo);
            continue;
        };
        if ours.contains(&cpv_s) {
            continue; // a vartree transaction's (its journal names it)
        }
        let slot = std::fs::read_to_string(dir.join("SLOT"))
            .ok()
            .and_then(|s| s.lines().next().map(|l| l.trim().to_owned()))
            .map(|s| s.split('/').next().unwrap_or_default().to_owned())
            .filter(|s| !s.is_empty());
        let locks = match take_slot_locks(vdb, &cat, cpv.pn(), slot.as_deref()) {
            Ok(l) => l,
            Err(busy) => {
                lo.kept.push((
                    dir.display().to_string(),
                    format!("a Portage merge may still be running: {busy} is locked"),
                ));
                out.push(lo);
                continue;
            }
        };
        lo.proven = true;
        // What that merge recorded, and what the instance it replaced has.
        let mut merging = Recorded::new();
        let mut merging_files: Vec<Vec<u8>> = Vec::new();
        let mut contents_names: Vec<_> = std::fs::read_dir(&dir)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .map(|e| e.file_name().into_encoded_bytes())
                    .filter(|n| is_contents_name(n))
                    .collect()
            })
            .unwrap_or_default();
        contents_names.sort();
        let mut merged_entries = 0usize;
        for n in &contents_names {
            let p = dir.join(std::ffi::OsStr::new(&lossy(n)));
            if let Ok(data) = std::fs::read(&p) {
                let c = vdb::contents::parse_contents(complete_lines(&data));
                merged_entries = merged_entries.max(c.entries.len());
                record(&mut merging, &c.entries);
                merging_files.extend(
                    c.entries
                        .iter()
                        .filter(|e| matches!(e.kind, EntryKind::Obj { .. }))
                        .map(|e| e.normalized_path().into_owned()),
                );
            }
        }
        let mut recorded = merging.clone();
        for inst in vdb.entries_in(&cat, reporter)? {
            if inst.cpv.pn() == cpv.pn() {
                if let Ok(c) = inst.contents(reporter) {
                    record(&mut recorded, &c.entries);
                }
            }
        }
        // Identities of the files that merge had merged (for hard links).
        let mut merged_ids: Option<HashSet<FileId>> = None;
        let mut candidates: Vec<Vec<u8>> = Vec::new();
        for (d, names) in &recorded {
            let Ok(h) = root.open_dir(d) else { continue };
            let Ok(listing) = h.list() else { continue };
            for name in listing {
                let (tail, kind) = if let Some(t) = movefile_new_tail(&name) {
                    (t, "#new")
                } else if let Some(t) = portage_merge_tail(&name) {
                    (t, "._portage_merge_")
                } else {
                    continue;
                };
                let path = crate::engine::child_path(d, &name);
                let listed =
                    names.contains(tail) || cfg_tail(tail).is_some_and(|y| names.contains(y));
                let st = h.lstat(&name).ok();
                let linked = kind == "._portage_merge_"
                    && !listed
                    && st.is_some_and(|st| {
                        st.kind == FileKind::Regular
                            && merged_ids
                                .get_or_insert_with(|| {
                                    merging_files
                                        .iter()
                                        .filter_map(|p| {
                                            root.open_dir(dirname(p))
                                                .ok()?
                                                .lstat(basename(p))
                                                .ok()
                                                .map(|s| s.id)
                                        })
                                        .collect()
                                })
                                .contains(&st.id)
                    });
                if !listed && !linked {
                    lo.kept.push((
                        lossy(&path),
                        format!(
                            "{} is not recorded by {cpv_s} or an installed instance of {cat}/{}",
                            lossy(&crate::engine::child_path(d, tail)),
                            cpv.pn()
                        ),
                    ));
                    continue;
                }
                if !st.is_some_and(|s| s.kind == FileKind::Regular) {
                    lo.kept.push((lossy(&path), "not a regular file".into()));
                    continue;
                }
                candidates.push(path);
            }
        }
        // A temp name some package records is that package's file.
        if !candidates.is_empty() {
            let queries: Vec<_> = candidates
                .iter()
                .map(|p| vdb::owners::OwnerQuery::new(p))
                .collect();
            let owned: BTreeMap<usize, String> = vdb::owners::find_owners(vdb, &queries, reporter)?
                .into_iter()
                .map(|o| (o.query, o.entry.cpv.to_string()))
                .collect();
            for (i, p) in candidates.into_iter().enumerate() {
                match owned.get(&i) {
                    Some(owner) => lo.kept.push((lossy(&p), format!("installed by {owner}"))),
                    None => lo.files.push(p),
                }
            }
        }
        if !pretend {
            for p in &lo.files {
                if let Ok(h) = root.open_dir(dirname(p)) {
                    match h.unlink(basename(p)) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(MergeError::root_io("remove", p, e)),
                    }
                }
            }
            // Named again inside ROOT (the last component not followed).
            let dir = vdb.merging_dir(&cpv)?;
            rootfs::crash::point("remove Portage's -MERGING-");
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(MergeError::Io {
                        op: "remove",
                        path: dir,
                        source: e,
                    })
                }
            }
        }
        // The slot lock file is removed with the lock; then a category made
        // for this package alone goes too.
        drop(locks);
        if !pretend {
            vdb::writer::remove_category_if_empty(vdb, &cat);
        }
        let others: Vec<String> = vdb
            .entries_in(&cat, reporter)?
            .into_iter()
            .filter(|e| e.cpv.pn() == cpv.pn())
            .map(|e| e.cpv.to_string())
            .collect();
        lo.notes.push(if others.contains(&cpv_s) {
            format!("{cpv_s} stays installed as it was before the interrupted merge")
        } else {
            let installed = if others.is_empty() {
                format!("no instance of {cat}/{} is recorded as installed", cpv.pn())
            } else {
                format!("{} stays installed", others.join(", "))
            };
            if merged_entries > 0 {
                format!(
                    "{installed}; the files the interrupted merge had merged ({merged_entries} entries recorded) stay in place: merge {cpv_s} again"
                )
            } else {
                installed
            }
        });
        out.push(lo);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_name_patterns() {
        assert_eq!(
            portage_merge_tail(b".libfoo.so._portage_merge_.1234abcd_z09"),
            Some(&b"libfoo.so"[..])
        );
        // A PID and 8 random characters, no more, no less.
        assert_eq!(
            portage_merge_tail(b".libfoo.so._portage_merge_.abcd_z09"),
            None
        );
        assert_eq!(
            portage_merge_tail(b".libfoo.so._portage_merge_.1abc_z09"),
            None
        );
        assert_eq!(
            portage_merge_tail(b".libfoo.so._portage_merge_.1x2abcd_z09"),
            None
        );
        assert_eq!(
            portage_merge_tail(b"libfoo.so._portage_merge_.1234abcd_z09"),
            None
        );
        assert_eq!(
            portage_merge_tail(b".libfoo.so._portage_merge_.1234ABCD_z09"),
            None
        );
        assert_eq!(portage_merge_tail(b"._portage_merge_.1234abcd_z09"), None);
        assert_eq!(movefile_new_tail(b"foo#new"), Some(&b"foo"[..]));
        assert_eq!(movefile_new_tail(b"#new"), None);
        assert_eq!(movefile_new_tail(b"foo#new2"), None);
        assert_eq!(cfg_tail(b"._cfg0003_foo.conf"), Some(&b"foo.conf"[..]));
        assert_eq!(cfg_tail(b"._cfg03_foo.conf"), None);
        assert!(is_contents_name(b"CONTENTS"));
        assert!(is_contents_name(b"CONTENTSa1_b2c3d"));
        assert!(!is_contents_name(b"CONTENTS.bak"));
        assert_eq!(complete_lines(b"obj /a x 1\nobj /b"), b"obj /a x 1\n");
    }
}

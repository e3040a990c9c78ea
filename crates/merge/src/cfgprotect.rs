//! Config protection during a merge: which image entries are protected, what
//! `dblink._protect` decides for each, and the `._cfgNNNN_` name to merge
//! them under. The rules themselves are in [`crate::protect`]; this module
//! feeds them what the merge observed.

use std::collections::HashMap;

use rootfs::root::{DirHandle, EntryStat, FileKind, Root};
use vdb::contents::{ContentsEntry, EntryKind};
use vdb::owners::PackageKeys;
use vdb::state::{StatePaths, PORTAGE_LIB_DIR};

use crate::engine::{Action, ImageFacts, MergePlan, VdbHint};
use crate::error::MergeError;
use crate::image::{ImageEntry, ImageKind};
use crate::protect::{
    decide, new_protect_filename, CfgCandidate, ConfigProtect, Confmem, DestState, InstalledEntry,
    ProtectInput, ProtectName, SrcObject,
};

/// The installed instance a merge replaces, as protection sees it.
struct Installed {
    keys: PackageKeys,
    kinds: HashMap<Vec<u8>, EntryKind>,
}

/// Everything config protection needs during one merge.
pub struct ProtectCtx {
    root_prefix: String,
    cp: ConfigProtect,
    installed: Option<Installed>,
    protect_if_modified: bool,
    ignore_confmem: bool,
    confmem: Confmem,
}

fn md5_of(dir: &DirHandle, name: &[u8]) -> Option<String> {
    let mut f = dir.open_file(name).ok()?;
    vdb::digest::md5_hex_reader(&mut f, &mut vec![0u8; 64 * 1024]).ok()
}

impl ProtectCtx {
    /// `root` is ROOT; `state` gives ROOT + EPREFIX. `installed` is the
    /// CONTENTS of the instance being replaced (highest COUNTER in the
    /// slot), if any.
    pub fn new(
        root: &std::path::Path,
        state: &StatePaths,
        eprefix: &[u8],
        settings: &crate::config::MergeSettings,
        installed: Option<&[ContentsEntry]>,
        downgrade: bool,
    ) -> Result<Self, MergeError> {
        let root_prefix = root.to_string_lossy().trim_end_matches('/').to_owned();
        let cp = settings.config_protect(&state.eroot().to_string_lossy());
        let confmem = load_confmem(state)?;
        let installed = installed.map(|entries| Installed {
            keys: PackageKeys::new(entries, eprefix),
            kinds: entries
                .iter()
                .map(|e| (e.normalized_path().into_owned(), e.kind.clone()))
                .collect(),
        });
        Ok(ProtectCtx {
            root_prefix,
            cp,
            protect_if_modified: settings.features.config_protect_if_modified()
                && installed.is_some(),
            installed,
            ignore_confmem: settings.noconfmem || downgrade,
            confmem,
        })
    }

    /// Read the config memory again (under the VDB lock, before the plan
    /// is checked again): another merge may have changed it since.
    pub fn reload_confmem(&mut self, state: &StatePaths) -> Result<(), MergeError> {
        self.confmem = load_confmem(state)?;
        Ok(())
    }

    fn live(&self, path: &[u8]) -> String {
        format!("{}{}", self.root_prefix, String::from_utf8_lossy(path))
    }

    /// Is this path config-protected (the bare path rule; protected paths
    /// are never collisions)?
    pub fn is_protected_path(&self, path: &[u8]) -> bool {
        self.cp.is_protected(&self.live(path))
    }

    fn protects(&self, e: &ImageEntry) -> bool {
        let kind = match e.kind {
            ImageKind::File => crate::protect::EntryKind::File,
            ImageKind::Symlink { .. } => crate::protect::EntryKind::Symlink,
            _ => return false,
        };
        self.cp.protects_entry(&self.live(&e.path), kind, e.size)
    }

    fn installed_entry(&self, root: &Root, path: &[u8]) -> Option<(String, bool)> {
        let inst = self.installed.as_ref()?;
        let key = inst.keys.match_path(root, path)?;
        match inst.kinds.get(key) {
            Some(EntryKind::Obj { md5, .. }) => {
                Some((String::from_utf8_lossy(md5).into_owned(), true))
            }
            Some(EntryKind::Sym { target, .. }) => {
                Some((String::from_utf8_lossy(target).into_owned(), false))
            }
            _ => Some((String::new(), false)),
        }
    }

    fn src_strings(e: &ImageEntry, i: usize, facts: &ImageFacts) -> (String, bool) {
        match e.kind {
            ImageKind::File => (facts.md5.get(&i).cloned().unwrap_or_default(), true),
            _ => (
                String::from_utf8_lossy(facts.targets.get(&i).map_or(&[][..], |t| t)).into_owned(),
                false,
            ),
        }
    }

    /// A protected entry whose destination does not exist (inside a new
    /// directory). Returns the `._cfg` name when the administrator deleted
    /// a file the installed instance had (Portage bug 523684).
    pub fn decide_missing(
        &self,
        root: &Root,
        e: &ImageEntry,
        i: usize,
        facts: &ImageFacts,
        plan: &mut MergePlan,
    ) -> Option<Vec<u8>> {
        if !self.protects(e) {
            return None;
        }
        let (src, src_is_file) = Self::src_strings(e, i, facts);
        let inst = self.installed_entry(root, &e.path);
        let installed = inst
            .as_ref()
            .map(|(v, is_obj)| match (is_obj, v.is_empty()) {
                (true, _) => InstalledEntry::Obj { md5: v },
                (false, false) => InstalledEntry::Sym { target: v },
                _ => InstalledEntry::Other,
            });
        let input = ProtectInput {
            src: if src_is_file {
                SrcObject::File { md5: &src }
            } else {
                SrcObject::Symlink { target: &src }
            },
            dest: DestState::Missing,
            installed,
            protect_if_modified: self.protect_if_modified,
            remembered: self.confmem.get(&String::from_utf8_lossy(&e.path)),
            ignore_confmem: self.ignore_confmem,
        };
        let d = decide(&input);
        let req = d.cfg_name?;
        match new_protect_filename(
            std::iter::empty(),
            e.name(),
            Some(&req.reuse_key),
            req.force,
            false,
            |_| CfgCandidate::Missing,
        ) {
            ProtectName::Dest => None,
            ProtectName::Cfg { name, .. } => {
                plan.protected.push((e.path.clone(), name.clone()));
                Some(name)
            }
        }
    }

    /// A protected entry in an existing directory. `None`: merge it
    /// normally (not protected after all, or no `._cfg` name needed).
    #[allow(clippy::too_many_arguments)]
    pub fn decide_live(
        &self,
        root: &Root,
        pdir: &DirHandle,
        e: &ImageEntry,
        i: usize,
        facts: &ImageFacts,
        live: Option<&EntryStat>,
        hint: Option<&VdbHint>,
        plan: &mut MergePlan,
    ) -> Result<Option<Action>, MergeError> {
        if !self.protects(e) {
            return Ok(None);
        }
        let (src, src_is_file) = Self::src_strings(e, i, facts);
        let dest_str: Option<String> = match live {
            None => None,
            Some(st) if st.kind == FileKind::Regular => {
                let by_vdb = hint
                    .and_then(|h| h.get(&e.path))
                    .filter(|(_, m)| *m == st.mtime)
                    .map(|(md5, _)| md5.clone());
                Some(
                    by_vdb
                        .or_else(|| md5_of(pdir, e.name()))
                        .unwrap_or_default(),
                )
            }
            Some(st) if st.kind == FileKind::Symlink => Some(
                pdir.readlink(e.name())
                    .map(|t| String::from_utf8_lossy(&t).into_owned())
                    .map_err(|err| MergeError::root_io("readlink", &e.path, err))?,
            ),
            Some(_) => Some(String::new()),
        };
        let dest = match (live.map(|s| s.kind), &dest_str) {
            (None, _) => DestState::Missing,
            (Some(FileKind::Regular), Some(m)) => DestState::File { md5: m },
            (Some(FileKind::Symlink), Some(t)) => DestState::Symlink { target: t },
            _ => DestState::Other,
        };
        let inst = self.installed_entry(root, &e.path);
        let installed = inst
            .as_ref()
            .map(|(v, is_obj)| match (is_obj, v.is_empty()) {
                (true, _) => InstalledEntry::Obj { md5: v },
                (false, false) => InstalledEntry::Sym { target: v },
                _ => InstalledEntry::Other,
            });
        let path_str = String::from_utf8_lossy(&e.path).into_owned();
        let input = ProtectInput {
            src: if src_is_file {
                SrcObject::File { md5: &src }
            } else {
                SrcObject::Symlink { target: &src }
            },
            dest,
            installed,
            protect_if_modified: self.protect_if_modified,
            remembered: self.confmem.get(&path_str),
            ignore_confmem: self.ignore_confmem,
        };
        let d = decide(&input);
        if let Some(u) = &d.confmem_update {
            plan.confmem.push((path_str, u.clone()));
        }
        if !d.moveme {
            return Ok(Some(Action::SkipProtected));
        }
        let Some(req) = d.cfg_name else {
            return Ok(None);
        };
        let listing = pdir
            .list()
            .map_err(|err| MergeError::root_io("list", e.parent(), err))?;
        let probe = |name: &[u8]| -> CfgCandidate {
            match pdir.lstat(name) {
                Err(_) => CfgCandidate::Missing,
                Ok(st) if st.kind == FileKind::Symlink => pdir
                    .readlink(name)
                    .map(|t| CfgCandidate::Symlink(String::from_utf8_lossy(&t).into_owned()))
                    .unwrap_or(CfgCandidate::Unreadable),
                Ok(st) if st.kind == FileKind::Regular => md5_of(pdir, name)
                    .map(CfgCandidate::File)
                    .unwrap_or(CfgCandidate::Unreadable),
                Ok(_) => CfgCandidate::Unreadable,
            }
        };
        match new_protect_filename(
            listing.iter().map(Vec::as_slice),
            e.name(),
            Some(&req.reuse_key),
            req.force,
            live.is_some(),
            probe,
        ) {
            ProtectName::Dest => Ok(None),
            ProtectName::Cfg { name, reused } => {
                plan.protected.push((e.path.clone(), name.clone()));
                Ok(Some(Action::Place {
                    dest: name,
                    replaces: reused,
                }))
            }
        }
    }
}

/// The config memory as it is now (a missing file is empty).
fn load_confmem(state: &StatePaths) -> Result<Confmem, MergeError> {
    Confmem::load(state).map_err(|e| MergeError::Io {
        op: "read config memory",
        path: state.lexical(crate::protect::CONFMEM_PATH),
        source: std::io::Error::other(e.to_string()),
    })
}

/// `EROOT/var/lib/portage/config` resolved inside ROOT (its last component
/// not followed: it is locked and renamed over).
pub fn confmem_path(state: &StatePaths) -> Result<std::path::PathBuf, MergeError> {
    Ok(state.entry(crate::protect::CONFMEM_PATH)?)
}

/// Apply config-memory changes under the fs lock (Portage's
/// `var/lib/portage/config`, which is also the lock file). Idempotent.
pub fn store_confmem_updates(
    state: &StatePaths,
    updates: &[(String, crate::protect::ConfmemUpdate)],
) -> Result<Vec<String>, MergeError> {
    if updates.is_empty() {
        return Ok(Vec::new());
    }
    state.create_dir(PORTAGE_LIB_DIR)?;
    let path = confmem_path(state)?;
    let _lock = vdb::lock::fs_lock(state, |_| {})?;
    let io = |e: crate::protect::ProtectIoError| MergeError::Io {
        op: "update config memory",
        path: path.clone(),
        source: std::io::Error::other(e.to_string()),
    };
    let mut confmem = Confmem::load(state).map_err(io)?;
    apply_updates(&mut confmem, updates);
    let mut skipped = Vec::new();
    if confmem.is_modified() {
        skipped = confmem
            .store(state)
            .map_err(io)?
            .into_iter()
            .map(|s| format!("{s:?}"))
            .collect();
    }
    Ok(skipped)
}

/// Apply updates to a memory (the same rules as [`store_confmem_updates`]).
fn apply_updates(confmem: &mut Confmem, updates: &[(String, crate::protect::ConfmemUpdate)]) {
    for (p, u) in updates {
        match u {
            crate::protect::ConfmemUpdate::Remember(md5) => {
                if confmem.get(p) != Some(md5.as_str()) {
                    confmem.remember(p, md5)
                }
            }
            crate::protect::ConfmemUpdate::Forget => {
                confmem.forget(p);
            }
        }
    }
}

/// The name of the staged config memory of transaction `tx`, in
/// `EROOT/var/lib/portage` beside the file it replaces.
pub fn staged_confmem_name(tx: &str) -> Vec<u8> {
    format!(".vartree.{tx}.config").into_bytes()
}

/// Whether `name` (read back from a journal, which lives in ROOT and may
/// have been forged) can be the name [`staged_confmem_name`] gives: a
/// single dot-name component, so that it never leads out of
/// `var/lib/portage`.
fn is_staged_confmem_name(name: &[u8]) -> bool {
    name.starts_with(b".vartree.") && name.ends_with(b".config") && !name.contains(&b'/')
}

/// `EROOT/var/lib/portage` resolved inside ROOT.
fn confmem_dir(state: &StatePaths) -> Result<std::path::PathBuf, MergeError> {
    Ok(state.path(PORTAGE_LIB_DIR)?)
}

/// Remove the temp files that a write of the config memory killed before
/// its rename (an unmerge forgetting stale entries) left in
/// `EROOT/var/lib/portage`, under Portage's fs lock, which every writer of
/// the memory holds. Returns the paths removed.
pub fn remove_stale_confmem_temps(
    state: &StatePaths,
) -> Result<Vec<std::path::PathBuf>, MergeError> {
    let dir = confmem_dir(state)?;
    let name = Some(std::ffi::OsStr::new("config"));
    let io = |e: rootfs::atomic::FsError| MergeError::Io {
        op: e.op,
        path: e.path,
        source: e.source,
    };
    if rootfs::atomic::find_temps(&dir, name)
        .map_err(io)?
        .is_empty()
    {
        return Ok(Vec::new());
    }
    let _lock = vdb::lock::fs_lock(state, |_| {})?;
    rootfs::atomic::remove_temps(&dir, name).map_err(io)
}

/// The new config memory of a merge, written under a temp name before the
/// commit point (so that a full disk stops the merge while it can still be
/// undone) and renamed over `var/lib/portage/config` after it
/// ([`complete_staged_confmem`]). Holds Portage's fs lock (the in-place
/// lock on that file) until the rename, so that nobody changes the memory
/// in between.
pub struct ConfmemStage {
    state: StatePaths,
    name: Vec<u8>,
    created: u8,
    lock: Option<vdb::lock::FileLock>,
}

impl ConfmemStage {
    /// The fs lock, for [`complete_staged_confmem`] to release right after
    /// the rename.
    pub fn into_lock(mut self) -> Option<vdb::lock::FileLock> {
        self.lock.take()
    }

    /// Undo (before the commit point): remove the staged file, and what was
    /// created only to take the lock.
    pub fn rollback(mut self) {
        undo_staged_confmem(&self.state, &self.name, self.created, self.lock.take());
    }
}

/// Remove a staged config memory, the lock file it had to create (if it is
/// still empty) and the directories it had to create (`created - 1` levels,
/// each if empty). Used by a failing merge and by `recover` rolling one
/// back.
pub fn undo_staged_confmem(
    state: &StatePaths,
    name: &[u8],
    created: u8,
    lock: Option<vdb::lock::FileLock>,
) {
    use std::os::unix::ffi::OsStrExt;
    let (Ok(dir), Ok(path)) = (confmem_dir(state), confmem_path(state)) else {
        drop(lock);
        return;
    };
    if !is_staged_confmem_name(name) {
        drop(lock);
        return;
    }
    let _ = std::fs::remove_file(dir.join(std::ffi::OsStr::from_bytes(name)));
    if created >= 1 && std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file() && m.len() == 0) {
        let _ = std::fs::remove_file(&path);
    }
    drop(lock);
    // The directories made for it, innermost first, each only if empty.
    let mut d = Some(dir.as_path());
    for _ in 1..created {
        let Some(p) = d else { break };
        if std::fs::remove_dir(p).is_err() {
            break;
        }
        d = p.parent();
    }
}

/// Prepare the new config memory before the commit point, under the VDB
/// lock: `updates` (the merge's own decisions) and `stale(memory)` (paths
/// the replaced instances' unmerge forgets) are applied to the memory as it
/// is now, read under Portage's fs lock, and the result is written as
/// `var/lib/portage/.vartree.TX.config`. Every step is written ahead to the
/// journal through `note`: the `CONFMEM` updates (for a `recover` that
/// finds the memory changed since) and `CONFNEW`. `None`: nothing changes.
pub fn stage_confmem(
    state: &StatePaths,
    tx: &str,
    updates: &[(String, crate::protect::ConfmemUpdate)],
    stale: &dyn Fn(&Confmem) -> Vec<String>,
    fsync: bool,
    note: &mut dyn FnMut(crate::journal::Record) -> Result<(), MergeError>,
) -> Result<Option<ConfmemStage>, MergeError> {
    use crate::protect::ConfmemUpdate;
    let path = confmem_path(state)?;
    let dir = confmem_dir(state)?;
    let read_err = |e: crate::protect::ProtectIoError| MergeError::Io {
        op: "read config memory",
        path: path.clone(),
        source: std::io::Error::other(e.to_string()),
    };
    // A first look without the lock: most merges change nothing.
    let mut peek = Confmem::load(state).map_err(read_err)?;
    let mut all: Vec<(String, ConfmemUpdate)> = updates.to_vec();
    all.extend(stale(&peek).into_iter().map(|p| (p, ConfmemUpdate::Forget)));
    apply_updates(&mut peek, &all);
    if !peek.is_modified() {
        return Ok(None);
    }
    let name = staged_confmem_name(tx);
    // What taking the lock creates: the file, and the directories up to
    // the first one that exists.
    let created = if path.exists() {
        0
    } else {
        let mut n = 1u8;
        let mut d = Some(dir.as_path());
        while let Some(p) = d.filter(|p| !p.exists()) {
            n = n.saturating_add(1);
            d = p.parent();
        }
        n
    };
    note(crate::journal::Record::ConfNew {
        name: name.clone(),
        created,
        base: None,
    })?;
    let mut stage = ConfmemStage {
        state: state.clone(),
        name: name.clone(),
        created,
        lock: None,
    };
    let result = (|| {
        rootfs::crash::point("confmem directory");
        if state.create_dir(PORTAGE_LIB_DIR)? != dir {
            return Err(MergeError::Io {
                op: "create directory",
                path: dir.clone(),
                source: std::io::Error::other("it changed meanwhile (a concurrent change in ROOT)"),
            });
        }
        stage.lock = Some(vdb::lock::fs_lock(state, |_| {})?);
        // The memory as it is now, under the lock.
        let data = match std::fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                return Err(MergeError::Io {
                    op: "read config memory",
                    path: path.clone(),
                    source: e,
                })
            }
        };
        let mut confmem = Confmem::parse(&data);
        let mut all: Vec<(String, ConfmemUpdate)> = updates.to_vec();
        all.extend(
            stale(&confmem)
                .into_iter()
                .map(|p| (p, ConfmemUpdate::Forget)),
        );
        apply_updates(&mut confmem, &all);
        for (p, u) in &all {
            note(crate::journal::Record::Confmem {
                path: p.clone(),
                md5: match u {
                    ConfmemUpdate::Remember(m) => Some(m.clone()),
                    ConfmemUpdate::Forget => None,
                },
            })?;
        }
        note(crate::journal::Record::ConfNew {
            name: name.clone(),
            created,
            base: Some(crate::protect::md5_hex(&data)),
        })?;
        write_staged(&path, &dir, &name, &confmem.serialize().0, fsync)
    })();
    match result {
        Ok(()) => Ok(Some(stage)),
        Err(e) => {
            stage.rollback();
            Err(e)
        }
    }
}

/// Write the staged memory `dir/name`, with the permissions of the file it
/// will replace (the lock has created it if it was missing), as Portage's
/// `writedict` does.
fn write_staged(
    path: &std::path::Path,
    dir: &std::path::Path,
    name: &[u8],
    data: &[u8],
    fsync: bool,
) -> Result<(), MergeError> {
    use std::io::Write;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let temp = dir.join(std::ffi::OsStr::from_bytes(name));
    let err = |op| {
        let temp = temp.clone();
        move |e| MergeError::Io {
            op,
            path: temp,
            source: e,
        }
    };
    rootfs::crash::point("confmem stage");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .mode(0o666)
        .open(&temp)
        .map_err(err("create"))?;
    if let Ok(old) = std::fs::metadata(path) {
        f.set_permissions(std::fs::Permissions::from_mode(
            old.permissions().mode() & 0o7777,
        ))
        .map_err(err("chmod"))?;
    }
    f.write_all(data).map_err(err("write"))?;
    if fsync {
        f.sync_all().map_err(err("fsync"))?;
    }
    Ok(())
}

/// After the commit point: put the staged memory in place by one rename.
/// Idempotent: a staged file that is gone was renamed already. If the
/// memory changed since it was staged (a `recover` long after a crash, with
/// Portage having merged meanwhile), the journaled `updates` are applied to
/// the memory as it is instead, so that nobody's entries are lost. `held`:
/// the fs lock the merge kept since staging (taken here otherwise);
/// released right after the rename, as Portage does with its in-place
/// lock.
pub fn complete_staged_confmem(
    state: &StatePaths,
    name: &[u8],
    base: &str,
    updates: &[(String, crate::protect::ConfmemUpdate)],
    held: Option<vdb::lock::FileLock>,
) -> Result<(), MergeError> {
    use std::os::unix::ffi::OsStrExt;
    let path = confmem_path(state)?;
    let dir = confmem_dir(state)?;
    if !is_staged_confmem_name(name) {
        return Err(MergeError::Io {
            op: "use the staged config memory",
            path: dir.join(std::ffi::OsStr::from_bytes(name)),
            source: std::io::Error::other("not a name vartree stages the config memory under"),
        });
    }
    let temp = dir.join(std::ffi::OsStr::from_bytes(name));
    if std::fs::symlink_metadata(&temp).is_err() {
        return Ok(()); // renamed already
    }
    let _lock = match held {
        Some(l) => l,
        None => vdb::lock::fs_lock(state, |_| {})?,
    };
    let now = match std::fs::read(&path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            return Err(MergeError::Io {
                op: "read config memory",
                path,
                source: e,
            })
        }
    };
    if crate::protect::md5_hex(&now) != base {
        let mut confmem = Confmem::parse(&now);
        apply_updates(&mut confmem, updates);
        write_staged(&path, &dir, name, &confmem.serialize().0, false)?;
    }
    rootfs::crash::point("confmem rename");
    std::fs::rename(&temp, &path).map_err(|e| MergeError::Io {
        op: "rename into place",
        path,
        source: e,
    })
}

//! Removing an installed package's files, as Portage's
//! `dblink._unmerge_pkgfiles` / `_unmerge_dirs` decide it.
//!
//! [`plan_unmerge`] observes ROOT (one `lstat`, and a `stat` where a
//! symlink matters, per recorded path; an md5 only where a file's fate
//! depends on it) and decides, for every CONTENTS key, whether it goes or
//! stays and why. [`execute_unmerge`] then removes files, then directories
//! deepest first. Directories are removed only when empty; the `/lib`,
//! `/usr/lib` and `/usr/local/lib` symlinks are never removed; symlinks to
//! non-empty directories are kept unless everything under them is this
//! package's own regular files.

use std::collections::{BTreeMap, HashSet};

use rootfs::root::{DirCache, FileId, FileKind, Root};
use vdb::contents::{basename, dirname, ContentsEntry, EntryKind};
use vdb::owners::PackageKeys;

/// Why a path is kept (Portage's `---` labels) or removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// `<<<` removed.
    Removed,
    /// `--- !prefix`: not below EROOT.
    NotInPrefix,
    /// `--- !found`: already gone.
    NotFound,
    /// `--- cfgpro`: UNINSTALL_IGNORE, or a protected libdir symlink.
    Ignored,
    /// `--- replaced`: the package replacing this one owns it.
    Replaced,
    /// `--- !mtime`: changed since it was installed.
    Mtime,
    /// `--- !md5`: content changed since it was installed.
    Md5,
    /// `--- !obj`, `!sym`, `!dir`, `!fif`: it is something else now.
    WrongType,
    /// `--- !empty`: a directory that is not empty, or a symlink to a
    /// directory with other packages' files.
    NotEmpty,
    /// `---`: FIFOs and device nodes stay (unless unmerge-orphans).
    Node,
    /// A directory that will be removed if it is empty by then.
    DirIfEmpty,
    /// `!!!`: removal failed.
    Failed,
}

impl Reason {
    /// Portage's label.
    pub fn label(self) -> &'static str {
        match self {
            Reason::Removed => "<<<",
            Reason::NotInPrefix => "--- !prefix",
            Reason::NotFound => "--- !found",
            Reason::Ignored => "--- cfgpro",
            Reason::Replaced => "--- replaced",
            Reason::Mtime => "--- !mtime",
            Reason::Md5 => "--- !md5",
            Reason::WrongType => "--- !type",
            Reason::NotEmpty => "--- !empty",
            Reason::Node => "---",
            Reason::DirIfEmpty => "<<< (if empty)",
            Reason::Failed => "!!!",
        }
    }
}

/// What the decisions depend on besides the root.
pub struct UnmergeRules<'a> {
    /// `""` or `/prefix`.
    pub eprefix: &'a [u8],
    /// Is the path config-protected (CONFIG_PROTECT / _MASK)?
    pub is_protected: &'a dyn Fn(&[u8]) -> bool,
    /// Does UNINSTALL_IGNORE match the path (relative to EROOT, leading `/`)?
    pub is_ignored: &'a dyn Fn(&[u8]) -> bool,
    /// FEATURES=unmerge-orphans (default on).
    pub unmerge_orphans: bool,
    /// The packages that stay (the instance replacing this one): paths
    /// they own are never removed.
    pub others: &'a [&'a PackageKeys],
    /// Identities of the files the replacing package installed: never
    /// removed, whatever name they have here.
    pub keep_inodes: &'a HashSet<FileId>,
}

/// One decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnmergeItem {
    /// The key (path as recorded, normalised).
    pub path: Vec<u8>,
    /// `obj`, `sym`, `dir`, `fif` or `dev`.
    pub kind: &'static str,
    pub reason: Reason,
}

/// The plan: files to remove, directories to try, and every decision.
#[derive(Debug, Clone, Default)]
pub struct UnmergePlan {
    /// Non-directories to unlink, in order.
    pub unlink: Vec<Vec<u8>>,
    /// Directories to try to remove (only if empty), deepest first.
    pub dirs: Vec<Vec<u8>>,
    /// Every decision, in the order made (reverse path order).
    pub items: Vec<UnmergeItem>,
    /// Symlinks to directories kept because other files live under them,
    /// with the identity of the directory they point to.
    pub protected_symlinks: Vec<(Vec<u8>, Option<FileId>)>,
}

/// Every key of a package: its CONTENTS paths (normalised) plus their
/// parent directories below EPREFIX, with their recorded data.
pub fn package_keys(entries: &[ContentsEntry], eprefix: &[u8]) -> BTreeMap<Vec<u8>, EntryKind> {
    let depth = vdb::owners::depth;
    let prefix_depth = depth(eprefix);
    let mut out = BTreeMap::new();
    for e in entries {
        let key = e.normalized_path().into_owned();
        let mut p = dirname(&key).to_vec();
        while depth(&p) > prefix_depth && !out.contains_key(&p) {
            out.insert(p.clone(), EntryKind::Dir);
            p = dirname(&p).to_vec();
        }
        out.insert(key, e.kind.clone());
    }
    out
}

/// Decide the fate of every key of a package.
pub fn plan_unmerge(
    root: &Root,
    entries: &[ContentsEntry],
    rules: &UnmergeRules<'_>,
) -> UnmergePlan {
    let keys = package_keys(entries, rules.eprefix);
    let own = PackageKeys::new(entries, rules.eprefix);
    let mut eroot = rules.eprefix.to_vec();
    eroot.push(b'/');
    let mut plan = UnmergePlan::default();
    let mut dirs = DirCache::new(root);
    let mut dir_list: Vec<Vec<u8>> = Vec::new();
    for (path, kind) in keys.iter().rev() {
        let kw = kind.keyword();
        let mut decide = |reason: Reason| {
            plan.items.push(UnmergeItem {
                path: path.clone(),
                kind: kw,
                reason,
            })
        };
        if path.len() <= eroot.len() || !path.starts_with(&eroot) {
            decide(Reason::NotInPrefix);
            continue;
        }
        let name = basename(path);
        let Some(dir) = dirs.get(dirname(path)) else {
            decide(Reason::NotFound);
            continue;
        };
        let Ok(lst) = dir.lstat(name) else {
            decide(Reason::NotFound);
            continue;
        };
        let islink = lst.kind == FileKind::Symlink;
        // stat() follows a final symlink, inside ROOT.
        let st_kind = if islink {
            root.stat(path)
                .ok()
                .map(|s| rootfs::root::FileKind::from_raw_mode(s.st_mode))
        } else {
            Some(lst.kind)
        };
        let points_to_dir = islink && st_kind == Some(FileKind::Directory);
        // Relative to EROOT, with a leading '/'.
        let f_match = &path[eroot.len() - 1..];
        if (rules.is_ignored)(f_match)
            || (islink && [&b"/lib"[..], b"/usr/lib", b"/usr/local/lib"].contains(&f_match))
        {
            decide(Reason::Ignored);
            continue;
        }
        if rules
            .others
            .iter()
            .any(|o| o.match_path(root, path).is_some())
            || (lst.kind != FileKind::Directory && rules.keep_inodes.contains(&lst.id))
        {
            decide(Reason::Replaced);
            continue;
        }
        if rules.unmerge_orphans
            && lst.kind != FileKind::Directory
            && !points_to_dir
            && !(rules.is_protected)(path)
        {
            plan.unlink.push(path.clone());
            decide(Reason::Removed);
            continue;
        }
        let recorded_mtime = kind.mtime();
        if let Some(m) = recorded_mtime {
            if lst.mtime != m {
                decide(Reason::Mtime);
                continue;
            }
        }
        match kind {
            EntryKind::Dir if !islink => {
                if lst.kind != FileKind::Directory {
                    decide(Reason::WrongType);
                    continue;
                }
                dir_list.push(path.clone());
                decide(Reason::DirIfEmpty);
            }
            EntryKind::Sym { .. } | EntryKind::Dir => {
                if !islink {
                    decide(Reason::WrongType);
                    continue;
                }
                if points_to_dir {
                    // Keep a symlink to a directory that holds anything but
                    // this package's own regular files.
                    let all_own = match root.open_dir(path) {
                        Ok(d) => d.list().map_or(true, |children| {
                            children.iter().all(|c| {
                                let mut child = path.clone();
                                child.push(b'/');
                                child.extend_from_slice(c);
                                own.match_path(root, &child).is_some()
                                    && d.lstat(c).is_ok_and(|s| s.kind == FileKind::Regular)
                            })
                        }),
                        Err(_) => true,
                    };
                    if !all_own {
                        let target = root.file_id(path).ok();
                        plan.protected_symlinks.push((path.clone(), target));
                        decide(Reason::NotEmpty);
                        continue;
                    }
                }
                plan.unlink.push(path.clone());
                decide(Reason::Removed);
            }
            EntryKind::Obj { md5, .. } => {
                if st_kind != Some(FileKind::Regular) || islink {
                    decide(Reason::WrongType);
                    continue;
                }
                let sum = dir.open_file(name).and_then(|mut f| {
                    vdb::digest::md5_hex_reader(&mut f, &mut vec![0u8; 64 * 1024])
                });
                match sum {
                    Ok(sum) if sum.as_bytes() == md5.to_ascii_lowercase().as_slice() => {
                        plan.unlink.push(path.clone());
                        decide(Reason::Removed);
                    }
                    Ok(_) => decide(Reason::Md5),
                    Err(_) => decide(Reason::WrongType),
                }
            }
            EntryKind::Fif => {
                if lst.kind != FileKind::Fifo {
                    decide(Reason::WrongType);
                } else {
                    decide(Reason::Node);
                }
            }
            EntryKind::Dev => decide(Reason::Node),
        }
    }
    // Deepest first: Portage pops from the end of the sorted list.
    dir_list.sort();
    dir_list.reverse();
    plan.dirs = dir_list;
    plan
}

/// What execution did.
#[derive(Debug, Clone, Default)]
pub struct UnmergeResult {
    pub removed: Vec<Vec<u8>>,
    pub kept_dirs: Vec<Vec<u8>>,
    pub failed: Vec<(Vec<u8>, String)>,
}

/// How many threads remove `n` files: one per core (up to 4), and one per
/// 2,000 files at least.
fn unlink_threads(n: usize) -> usize {
    std::thread::available_parallelism()
        .map(|c| c.get())
        .unwrap_or(1)
        .clamp(1, 4)
        .min(n.div_ceil(2000))
        .max(1)
}

/// Split `paths` into at most `n` contiguous runs of about equal length,
/// each ending at a change of directory (where there is one).
fn split_by_directory(paths: &[Vec<u8>], n: usize) -> Vec<&[Vec<u8>]> {
    let mut parts = Vec::new();
    let mut rest = paths;
    for k in (1..=n).rev() {
        if rest.is_empty() {
            break;
        }
        let mut cut = if k == 1 { rest.len() } else { rest.len() / k };
        while cut > 0 && cut < rest.len() && dirname(&rest[cut - 1]) == dirname(&rest[cut]) {
            cut += 1;
        }
        let cut = cut.clamp(1, rest.len());
        let (a, b) = rest.split_at(cut);
        parts.push(a);
        rest = b;
    }
    parts
}

/// Remove non-directories; what was removed and what failed, in order.
fn unlink_files(root: &Root, paths: &[Vec<u8>]) -> UnmergeResult {
    let mut res = UnmergeResult::default();
    let mut dirs = DirCache::new(root);
    for path in paths {
        let name = basename(path);
        let Some(dir) = dirs.get(dirname(path)) else {
            continue;
        };
        let r = (|| {
            let st = dir.lstat(name)?;
            if needs_disarming(&st) {
                dir.chmod(name, 0)?;
            }
            dir.unlink(name)
        })();
        match r {
            Ok(()) => res.removed.push(path.clone()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => res.failed.push((path.clone(), e.to_string())),
        }
    }
    res
}

/// Must a file be made harmless (`chmod 0`) before it is unlinked?
fn needs_disarming(st: &rootfs::root::EntryStat) -> bool {
    st.kind != FileKind::Symlink
        && st.kind != FileKind::Directory
        && (st.nlink > 1 || st.mode & 0o6111 != 0)
}

/// Remove what the plan says: files, then empty directories, deepest
/// first. Errors are collected, not fatal.
///
/// Like Portage's `unlink`, a file that could outlive its removal as a
/// dangerous hard link is `chmod 0` first: one with other links, or one
/// that is set-id or executable (file capabilities live on executables).
/// Portage does this for every non-symlink; for a plain file with a single
/// link, nothing of it remains after the `unlink`, so the `chmod` is left
/// out (compat D38).
pub fn execute_unmerge(root: &Root, plan: &UnmergePlan) -> UnmergeResult {
    let mut res = UnmergeResult::default();
    // Files of different directories are removed on several threads (the
    // time goes to the kernel, per directory); the parts are contiguous
    // runs of the plan split at directory boundaries, and their results are
    // joined in plan order.
    let parts = split_by_directory(&plan.unlink, unlink_threads(plan.unlink.len()));
    let results: Vec<UnmergeResult> = std::thread::scope(|s| {
        let workers: Vec<_> = parts
            .iter()
            .map(|part| s.spawn(move || unlink_files(root, part)))
            .collect();
        workers
            .into_iter()
            .zip(&parts)
            .map(|(w, part)| {
                w.join().unwrap_or_else(|_| UnmergeResult {
                    failed: part
                        .iter()
                        .map(|p| (p.clone(), "removal thread failed".to_string()))
                        .collect(),
                    ..UnmergeResult::default()
                })
            })
            .collect()
    });
    for r in results {
        res.removed.extend(r.removed);
        res.failed.extend(r.failed);
    }
    let mut dirs = DirCache::new(root);
    for path in &plan.dirs {
        let name = basename(path);
        let Some(parent) = dirs.get(dirname(path)) else {
            continue;
        };
        // Info directories: the generated `dir` index does not keep them.
        if name == b"info" {
            if let Ok(d) = parent.open_subdir(name) {
                if let Ok(left) = d.list() {
                    if !left.is_empty() && left.iter().all(|n| n == b"dir" || n == b"dir.old") {
                        for n in &left {
                            if d.lstat(n).is_ok_and(|s| s.kind == FileKind::Regular) {
                                let _ = d.unlink(n);
                            }
                        }
                    }
                }
            }
        }
        let id = parent.lstat(name).ok().map(|s| s.id);
        match parent.rmdir(name) {
            Ok(()) => {
                res.removed.push(path.clone());
                // A kept symlink to the directory just removed is dangling
                // now: it goes too (Portage bug 640058).
                for (link, target) in &plan.protected_symlinks {
                    if id.is_some() && *target == id {
                        if let Some(d) = dirs.get(dirname(link)) {
                            if d.unlink(basename(link)).is_ok() {
                                res.removed.push(link.clone());
                            }
                        }
                    }
                }
            }
            Err(_) => res.kept_dirs.push(path.clone()),
        }
    }
    // Directories that held such a symlink may be empty now.
    retry_dirs(&mut dirs, &mut res);
    res
}

/// Try the kept directories again, deepest first, until nothing changes.
fn retry_dirs(dirs: &mut DirCache<'_>, res: &mut UnmergeResult) {
    loop {
        let mut progress = false;
        let mut kept = std::mem::take(&mut res.kept_dirs);
        kept.sort();
        kept.reverse();
        for path in kept {
            let removed = dirs
                .get(dirname(&path))
                .is_some_and(|p| p.rmdir(basename(&path)).is_ok());
            if removed {
                progress = true;
                res.removed.push(path);
            } else {
                res.kept_dirs.push(path);
            }
        }
        if !progress {
            break;
        }
    }
}

/// Does no package but `self_cpv` have files through these symlinks?
fn links_unused(
    vdb: &vdb::db::Vdb,
    root: &Root,
    self_cpv: &atom::Cpv,
    links: &[Vec<u8>],
    others: &[&PackageKeys],
    reporter: &dyn vdb::db::Reporter,
) -> Result<bool, crate::MergeError> {
    if links
        .iter()
        .any(|l| others.iter().any(|o| o.match_path(root, l).is_some()))
    {
        return Ok(false);
    }
    let queries: Vec<_> = links
        .iter()
        .map(|l| vdb::owners::OwnerQuery::new(l))
        .collect();
    let owners = vdb::owners::find_owners(vdb, &queries, reporter)?;
    Ok(!owners.iter().any(|o| &o.entry.cpv != self_cpv))
}

/// [`release_protected_symlinks`] without touching anything.
fn protected_symlinks_releasable(
    vdb: &vdb::db::Vdb,
    root: &Root,
    self_cpv: &atom::Cpv,
    plan: &UnmergePlan,
    others: &[&PackageKeys],
    reporter: &dyn vdb::db::Reporter,
) -> Result<bool, crate::MergeError> {
    let links: Vec<Vec<u8>> = plan
        .protected_symlinks
        .iter()
        .map(|(l, _)| l.clone())
        .collect();
    Ok(!links.is_empty() && links_unused(vdb, root, self_cpv, &links, others, reporter)?)
}

/// Portage's `_unmerge_protected_symlinks`: symlinks to directories kept
/// during the unmerge are removed after all when neither the replacing
/// package nor any other installed package has files through them (all of
/// them, or none). Returns the symlinks still kept.
pub fn release_protected_symlinks(
    vdb: &vdb::db::Vdb,
    root: &Root,
    self_cpv: &atom::Cpv,
    plan: &UnmergePlan,
    others: &[&PackageKeys],
    result: &mut UnmergeResult,
    reporter: &dyn vdb::db::Reporter,
) -> Result<Vec<Vec<u8>>, crate::MergeError> {
    let links: Vec<Vec<u8>> = plan
        .protected_symlinks
        .iter()
        .map(|(l, _)| l.clone())
        .filter(|l| !result.removed.contains(l))
        .collect();
    if links.is_empty() || !links_unused(vdb, root, self_cpv, &links, others, reporter)? {
        return Ok(links);
    }
    let mut dirs = DirCache::new(root);
    for l in &links {
        if let Some(d) = dirs.get(dirname(l)) {
            if d.lstat(basename(l))
                .is_ok_and(|s| s.kind == FileKind::Symlink)
                && d.unlink(basename(l)).is_ok()
            {
                result.removed.push(l.clone());
            }
        }
    }
    retry_dirs(&mut dirs, result);
    Ok(Vec::new())
}

/// Settings for a standalone unmerge.
#[derive(Debug, Clone)]
pub struct UnmergeOptions {
    pub pretend: bool,
    pub unmerge_orphans: bool,
    pub config_protect: Vec<String>,
    pub config_protect_mask: Vec<String>,
    pub uninstall_ignore: Vec<String>,
}

impl Default for UnmergeOptions {
    fn default() -> Self {
        UnmergeOptions {
            pretend: false,
            unmerge_orphans: true,
            config_protect: vec!["/etc".into()],
            config_protect_mask: vec!["/etc/env.d".into()],
            uninstall_ignore: vec!["/lib/modules/*".into()],
        }
    }
}

impl UnmergeOptions {
    /// The unmerge rules of a configuration.
    pub fn from_settings(s: &crate::config::MergeSettings) -> Self {
        UnmergeOptions {
            pretend: false,
            unmerge_orphans: s.features.unmerge_orphans(),
            config_protect: s.config_protect.clone(),
            config_protect_mask: s.config_protect_mask.clone(),
            uninstall_ignore: s.uninstall_ignore_entries(),
        }
    }
}

/// What an unmerge did (or, with `pretend`, would do).
#[derive(Debug, Clone)]
pub struct UnmergeOutcome {
    pub cpv: String,
    pub plan: UnmergePlan,
    pub result: UnmergeResult,
}

/// Remove an installed package: its files as the rules decide, then its
/// VDB entry (last), then the category directory when empty. The caller
/// holds the VDB lock.
pub fn unmerge_entry(
    vdb: &vdb::db::Vdb,
    root: &Root,
    entry: &vdb::db::VdbEntry,
    opts: &UnmergeOptions,
    others: &[&PackageKeys],
    keep_inodes: &HashSet<FileId>,
    reporter: &dyn vdb::db::Reporter,
) -> Result<UnmergeOutcome, crate::MergeError> {
    let out = unmerge_files(vdb, root, entry, opts, others, keep_inodes, reporter)?;
    if !opts.pretend {
        vdb::writer::delete_entry(vdb, entry)?;
    }
    Ok(out)
}

/// Remove an installed package's files (not its VDB entry).
pub fn unmerge_files(
    vdb: &vdb::db::Vdb,
    root: &Root,
    entry: &vdb::db::VdbEntry,
    opts: &UnmergeOptions,
    others: &[&PackageKeys],
    keep_inodes: &HashSet<FileId>,
    reporter: &dyn vdb::db::Reporter,
) -> Result<UnmergeOutcome, crate::MergeError> {
    let contents = entry.contents(reporter)?;
    let root_str = root.path().to_string_lossy().into_owned();
    let eroot_str = vdb.eroot().to_string_lossy().into_owned();
    let protect = crate::protect::ConfigProtect::new(
        &eroot_str,
        &opts.config_protect,
        &opts.config_protect_mask,
        false,
    );
    let ignore = crate::mask::UninstallIgnore::new(&opts.uninstall_ignore);
    let is_protected = |p: &[u8]| {
        let live = format!(
            "{}{}",
            root_str.trim_end_matches('/'),
            String::from_utf8_lossy(p)
        );
        protect.is_protected(&live)
    };
    let is_ignored = |p: &[u8]| ignore.is_ignored(&String::from_utf8_lossy(p));
    let eprefix = vdb.eprefix().as_os_str().as_encoded_bytes().to_vec();
    let rules = UnmergeRules {
        eprefix: &eprefix,
        is_protected: &is_protected,
        is_ignored: &is_ignored,
        unmerge_orphans: opts.unmerge_orphans,
        others,
        keep_inodes,
    };
    let mut plan = plan_unmerge(root, &contents.entries, &rules);
    if opts.pretend {
        // Kept directory symlinks that nothing else uses would go after all.
        if protected_symlinks_releasable(vdb, root, &entry.cpv, &plan, others, reporter)? {
            for item in &mut plan.items {
                if item.reason == Reason::NotEmpty && item.kind == "sym" {
                    item.reason = Reason::Removed;
                }
            }
        }
        return Ok(UnmergeOutcome {
            cpv: entry.cpv.to_string(),
            plan,
            result: UnmergeResult::default(),
        });
    }
    let mut result = execute_unmerge(root, &plan);
    let kept =
        release_protected_symlinks(vdb, root, &entry.cpv, &plan, others, &mut result, reporter)?;
    for l in kept {
        reporter.warn(vdb::db::Warning::BadValue {
            path: std::path::PathBuf::from(String::from_utf8_lossy(&l).into_owned()),
            key: "CONTENTS".into(),
            reason: "this symlink to a directory was kept: other packages have files through it (an obsolete remnant? consider replacing it with the directory it points to)".into(),
        });
    }
    // Symlinks kept at first and removed after all are reported as removed.
    let removed: HashSet<&Vec<u8>> = result.removed.iter().collect();
    for item in &mut plan.items {
        if item.reason == Reason::NotEmpty && removed.contains(&item.path) {
            item.reason = Reason::Removed;
        }
    }
    forget_stale_confmem(vdb.state(), &plan)?;
    Ok(UnmergeOutcome {
        cpv: entry.cpv.to_string(),
        plan,
        result,
    })
}

/// Drop the confmem entries of paths this package owned and no replacing
/// package owns (Portage's `stale_confmem`), under the fs lock.
fn forget_stale_confmem(
    state: &vdb::state::StatePaths,
    plan: &UnmergePlan,
) -> Result<(), crate::MergeError> {
    let path = crate::cfgprotect::confmem_path(state)?;
    if !path.exists() {
        return Ok(());
    }
    let _lock = vdb::lock::fs_lock(state, |_| {})?;
    let mut confmem = crate::protect::Confmem::load(state).map_err(|e| crate::MergeError::Io {
        op: "read",
        path: path.clone(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let mut changed = false;
    for item in &plan.items {
        if item.reason != Reason::Replaced && item.reason != Reason::NotInPrefix {
            changed |= confmem.forget(&String::from_utf8_lossy(&item.path));
        }
    }
    if changed {
        confmem.store(state).map_err(|e| crate::MergeError::Io {
            op: "write",
            path,
            source: std::io::Error::other(e.to_string()),
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod split_tests {
    use super::split_by_directory;

    #[test]
    fn parts_are_contiguous_whole_directories() {
        let paths: Vec<Vec<u8>> = (0..50)
            .map(|i| format!("/d{}/f{i:02}", i / 7).into_bytes())
            .collect();
        for n in 1..6 {
            let parts = split_by_directory(&paths, n);
            assert!(parts.len() <= n && !parts.is_empty());
            let joined: Vec<Vec<u8>> = parts.iter().flat_map(|p| p.iter().cloned()).collect();
            assert_eq!(joined, paths, "n={n}");
            for w in parts.windows(2) {
                let a = w[0].last().unwrap();
                let b = w[1].first().unwrap();
                assert_ne!(
                    vdb::contents::dirname(a),
                    vdb::contents::dirname(b),
                    "n={n}: a directory split between parts"
                );
            }
        }
        assert!(split_by_directory(&[], 3).is_empty());
        let one = vec![b"/a/b".to_vec()];
        assert_eq!(split_by_directory(&one, 4), vec![&one[..]]);
    }
}

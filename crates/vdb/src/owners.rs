//! Which installed package owns a path (Portage's `iter_owners` /
//! `_match_contents`), computed in one parallel pass over every CONTENTS.
//!
//! Semantics, as Portage's:
//! * A package's keys are its CONTENTS paths (normalised) plus every parent
//!   directory below EPREFIX, so a directory is owned by every package that
//!   has something beneath it.
//! * An absolute query is normalised; an exact key owns it. Otherwise, when
//!   a key has the same basename, the query's parent directory and the key's
//!   parent directory are `stat`ed (following symlinks, inside ROOT) and the
//!   key owns the query when both are the same directory. That is how
//!   `/lib/libfoo.so` is found as `/usr/lib/libfoo.so` when `/lib ->
//!   usr/lib`.
//! * A query with no `/` is a basename: every key with that basename matches.
//!
//! Only keys whose basename is queried are kept while scanning, so the cost
//! is one read of each CONTENTS file, and a `stat` per parent directory only
//! for basename hits.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use rootfs::root::{FileId, Root};

use crate::contents::{self, basename, dirname};
use crate::db::{Reporter, Vdb, VdbEntry, VdbError};

/// One query, as prepared for matching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnerQuery {
    /// A normalised absolute path inside ROOT (including EPREFIX).
    Path(Vec<u8>),
    /// A bare file name.
    Basename(Vec<u8>),
}

impl OwnerQuery {
    /// Classify a path given by a user: absolute paths are normalised,
    /// anything without a `/` is a basename. Relative paths with a `/`
    /// should be made absolute by the caller.
    pub fn new(q: &[u8]) -> OwnerQuery {
        if q.starts_with(b"/") {
            OwnerQuery::Path(contents::normalize(q))
        } else if !q.contains(&b'/') {
            OwnerQuery::Basename(q.to_vec())
        } else {
            OwnerQuery::Path(contents::normalize(q))
        }
    }

    /// The name looked up in the basename index (empty for `/`).
    pub fn name(&self) -> &[u8] {
        match self {
            OwnerQuery::Path(p) => basename(p),
            OwnerQuery::Basename(b) => b,
        }
    }
}

/// A package owning a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// Index into the query list.
    pub query: usize,
    /// The owning package.
    pub entry: VdbEntry,
    /// The package's key that matched (may differ from the query when it
    /// was matched through a symlinked directory).
    pub path: Vec<u8>,
}

/// Keys of one package whose basename is queried, in CONTENTS order.
struct Hits {
    entry_index: usize,
    keys: Vec<Vec<u8>>,
}

/// Scan one CONTENTS file for keys whose basename is in `names`.
fn scan_entry(
    entry: &VdbEntry,
    names: &HashSet<&[u8]>,
    prefix_depth: usize,
    reporter: &dyn Reporter,
) -> Result<Vec<Vec<u8>>, VdbError> {
    let path = entry.path_of("CONTENTS");
    let data = match std::fs::read(&path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(VdbError::io("read", path, e)),
    };
    let mut keys: Vec<Vec<u8>> = Vec::new();
    let mut seen: HashSet<Vec<u8>> = HashSet::new();
    let mut last_parent: Vec<u8> = Vec::new();
    for (lineno, line) in contents::lines(&data).enumerate() {
        // Parsed in place: only the keys that are hits are copied.
        let r = match contents::parse_line_ref(line) {
            Ok(r) => r,
            Err(problem) => {
                reporter.warn(crate::db::Warning::ContentsLine {
                    path: path.clone(),
                    line: lineno + 1,
                    problem: problem.to_string(),
                });
                continue;
            }
        };
        let key = contents::normalize_if_needed(r.path);
        // Implicit parent directories, added once per distinct parent.
        let parent = dirname(&key);
        if parent != last_parent.as_slice() {
            last_parent.clear();
            last_parent.extend_from_slice(parent);
            let mut p = parent;
            while depth(p) > prefix_depth {
                if names.contains(basename(p)) && !seen.contains(p) {
                    seen.insert(p.to_vec());
                    keys.push(p.to_vec());
                }
                p = dirname(p);
            }
        }
        if names.contains(basename(&key)) && !seen.contains(key.as_ref()) {
            seen.insert(key.to_vec());
            keys.push(key.into_owned());
        }
    }
    Ok(keys)
}

/// Number of components of an absolute path (`/` is 0, `/usr` is 1).
pub fn depth(p: &[u8]) -> usize {
    p.split(|&b| b == b'/').filter(|c| !c.is_empty()).count()
}

/// Find the owners of every query. Results are sorted by query, then by
/// package. Unreadable CONTENTS files are reported and skipped.
pub fn find_owners(
    vdb: &Vdb,
    queries: &[OwnerQuery],
    reporter: &dyn Reporter,
) -> Result<Vec<Owner>, VdbError> {
    let entries = vdb.entries(reporter)?;
    find_owners_in(vdb, &entries, queries, reporter)
}

/// [`find_owners`] over a given list of entries.
pub fn find_owners_in(
    vdb: &Vdb,
    entries: &[VdbEntry],
    queries: &[OwnerQuery],
    reporter: &dyn Reporter,
) -> Result<Vec<Owner>, VdbError> {
    let names: HashSet<&[u8]> = queries
        .iter()
        .map(OwnerQuery::name)
        .filter(|n| !n.is_empty())
        .collect();
    if names.is_empty() || entries.is_empty() {
        return Ok(Vec::new());
    }
    let prefix_depth = depth(vdb.eprefix().as_os_str().as_encoded_bytes());

    // Pass 1, parallel: the keys of each package whose basename is queried.
    let hits: Vec<Hits> = crate::par::par_map(entries, reporter, |e| {
        scan_entry(e, &names, prefix_depth, reporter)
    })
    .into_iter()
    .enumerate()
    .filter_map(|(entry_index, keys)| {
        keys.filter(|k| !k.is_empty())
            .map(|keys| Hits { entry_index, keys })
    })
    .collect();

    // Pass 2: match each query against the hits.
    let root = Root::open(vdb.root()).map_err(|e| VdbError::io("open root", vdb.root(), e))?;
    let mut dir_ids: HashMap<Vec<u8>, Option<FileId>> = HashMap::new();
    let mut dir_id = |p: &[u8]| -> Option<FileId> {
        *dir_ids
            .entry(p.to_vec())
            .or_insert_with(|| root.file_id(p).ok())
    };
    let mut by_name: HashMap<&[u8], Vec<usize>> = HashMap::new();
    for (qi, q) in queries.iter().enumerate() {
        if !q.name().is_empty() {
            by_name.entry(q.name()).or_default().push(qi);
        }
    }
    let mut out = Vec::new();
    for h in &hits {
        let entry = &entries[h.entry_index];
        let exact: HashSet<&[u8]> = h.keys.iter().map(Vec::as_slice).collect();
        let mut by_base: HashMap<&[u8], Vec<&Vec<u8>>> = HashMap::new();
        for k in &h.keys {
            by_base.entry(basename(k)).or_default().push(k);
        }
        for (name, same_name) in &by_base {
            let Some(qis) = by_name.get(name) else {
                continue;
            };
            for &qi in qis {
                match &queries[qi] {
                    OwnerQuery::Basename(_) => {
                        for k in same_name {
                            out.push(Owner {
                                query: qi,
                                entry: entry.clone(),
                                path: (*k).clone(),
                            });
                        }
                    }
                    OwnerQuery::Path(p) => {
                        if exact.contains(p.as_slice()) {
                            out.push(Owner {
                                query: qi,
                                entry: entry.clone(),
                                path: p.clone(),
                            });
                            continue;
                        }
                        // Same name, another directory: the same directory
                        // through a symlink?
                        let Some(qdir) = dir_id(dirname(p)) else {
                            continue;
                        };
                        let found = same_name.iter().find(|k| dir_id(dirname(k)) == Some(qdir));
                        if let Some(k) = found {
                            out.push(Owner {
                                query: qi,
                                entry: entry.clone(),
                                path: (*k).clone(),
                            });
                        }
                    }
                }
            }
        }
    }
    out.sort_by(|a, b| {
        a.query
            .cmp(&b.query)
            .then_with(|| a.entry.cpv.cmp(&b.entry.cpv))
            .then_with(|| a.path.cmp(&b.path))
    });
    Ok(out)
}

/// Make a user-supplied path absolute inside ROOT: absolute paths are
/// kept; relative paths containing `/` are joined to the current
/// directory and, when ROOT is not `/`, must lie under ROOT.
pub fn absolutize(root: &Path, q: &[u8], cwd: &Path) -> Option<Vec<u8>> {
    if q.starts_with(b"/") || !q.contains(&b'/') {
        return Some(q.to_vec());
    }
    let abs = cwd.join(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(q));
    let rel = abs.strip_prefix(root).ok()?;
    let mut out = b"/".to_vec();
    out.extend_from_slice(rel.as_os_str().as_encoded_bytes());
    Some(out)
}

/// One package's CONTENTS as Portage's `dblink` looks paths up in it
/// (`isowner` / `_match_contents`): its keys (normalised paths plus every
/// parent directory below EPREFIX) and, lazily, the identity of each key's
/// parent directory inside ROOT.
#[derive(Debug, Default)]
pub struct PackageKeys {
    keys: HashMap<Vec<u8>, crate::contents::EntryType>,
    by_basename: HashMap<Vec<u8>, Vec<Vec<u8>>>,
}

impl PackageKeys {
    /// Build from CONTENTS entries. `eprefix` is `""` or `/prefix`.
    pub fn new(entries: &[crate::contents::ContentsEntry], eprefix: &[u8]) -> Self {
        let prefix_depth = depth(eprefix);
        let mut pk = PackageKeys::default();
        for e in entries {
            let key = e.normalized_path().into_owned();
            let mut p = dirname(&key).to_vec();
            while depth(&p) > prefix_depth && !pk.keys.contains_key(&p) {
                pk.insert(p.clone(), crate::contents::EntryType::Dir);
                p = dirname(&p).to_vec();
            }
            pk.insert(key, e.entry_type());
        }
        pk
    }

    fn insert(&mut self, key: Vec<u8>, t: crate::contents::EntryType) {
        if self.keys.insert(key.clone(), t).is_none() {
            self.by_basename
                .entry(basename(&key).to_vec())
                .or_default()
                .push(key);
        }
    }

    /// Is `path` one of the keys (exactly)?
    pub fn contains(&self, path: &[u8]) -> bool {
        self.keys.contains_key(path)
    }

    /// The type recorded for a key.
    pub fn entry_type(&self, key: &[u8]) -> Option<crate::contents::EntryType> {
        self.keys.get(key).copied()
    }

    /// The key owning `path` (normalised, inside ROOT): the same key, or a
    /// key with the same basename whose parent directory is the same
    /// directory as `path`'s parent (through symlinks, inside ROOT).
    pub fn match_path(&self, root: &Root, path: &[u8]) -> Option<&[u8]> {
        let path = contents::normalize_if_needed(path);
        if let Some((k, _)) = self.keys.get_key_value(path.as_ref()) {
            return Some(k);
        }
        let cands = self.by_basename.get(basename(&path))?;
        let want = root.file_id(dirname(&path)).ok()?;
        cands
            .iter()
            .find(|k| root.file_id(dirname(k)).ok() == Some(want))
            .map(Vec::as_slice)
    }

    /// Every key, in no particular order.
    pub fn keys(&self) -> impl Iterator<Item = (&[u8], crate::contents::EntryType)> {
        self.keys.iter().map(|(k, t)| (k.as_slice(), *t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contents::parse_contents;

    #[test]
    fn package_keys_match_like_isowner() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("usr/lib")).unwrap();
        std::os::unix::fs::symlink("usr/lib", t.path().join("lib")).unwrap();
        let c = parse_contents(b"obj /lib/libx.so abc 1\nsym /usr/bin/y -> x 1\n");
        let pk = PackageKeys::new(&c.entries, b"");
        let root = Root::open(t.path()).unwrap();
        assert_eq!(
            pk.match_path(&root, b"/lib/libx.so"),
            Some(&b"/lib/libx.so"[..])
        );
        assert_eq!(
            pk.match_path(&root, b"/usr/lib/libx.so"),
            Some(&b"/lib/libx.so"[..])
        );
        assert_eq!(pk.match_path(&root, b"/usr//bin"), Some(&b"/usr/bin"[..]));
        assert_eq!(pk.match_path(&root, b"/usr"), Some(&b"/usr"[..]));
        assert_eq!(pk.match_path(&root, b"/usr/lib/other"), None);
        assert!(!pk.contains(b"/"));
    }
}

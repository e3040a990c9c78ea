//! The `PKGDIR/Packages` index, read and written exactly as Portage 3.0.83
//! does (`portage.getbinpkg.PackageIndex` with the parameters
//! `portage.dbapi.bintree.binarytree` gives it).
//!
//! # Format
//!
//! UTF-8 text. A header block, then one block per package; a block is lines
//! `KEY: value` ended by an empty line.
//!
//! Reading (`PackageIndex.read`):
//!
//! * bytes are decoded as UTF-8 with invalid sequences replaced by U+FFFD;
//!   lines end at `\n`, `\r\n` or a lone `\r` (Python's universal newlines);
//! * a line without `:` is ignored; otherwise the key is what precedes the
//!   first `:`, and the value what follows it minus its first character
//!   (normally the space);
//! * keys are translated from their file names to Portage's internal names
//!   (`DESC` → `DESCRIPTION`, `MTIME` → `_mtime_`, `REPO` → `repository`),
//!   in the header as well;
//! * in package blocks only [`ALLOWED_PKG_KEYS`] are kept (so e.g.
//!   `REPO_REVISIONS`, which Portage writes into a new entry, is dropped when
//!   the index is read back);
//! * a package block that ends up empty ends the whole index (Portage stops
//!   reading there); a block without a non-empty `CPV` is skipped;
//! * every entry gets [`DEFAULT_PKG_DATA`] for keys it lacks, and
//!   `CHOST`/`repository` from the header when the header has a non-empty
//!   value ([`INHERITED_KEYS`]).
//!
//! Writing (`PackageIndex.write`):
//!
//! * header keys sorted, empty values left out;
//! * entries sorted by `CPV` (plain string order, stable); in each entry,
//!   `CHOST`/`repository` equal to the header's value and values equal to
//!   their default are left out, keys sorted by *internal* name and then
//!   translated (so `MTIME` and `REPO` come last), empty values left out.
//!
//! [`PackageIndex::stamp`] sets `TIMESTAMP` and `PACKAGES` as Portage does
//! on every write; [`write()`] itself changes nothing, so parsing and writing
//! a Portage-written index reproduces it byte for byte.

use std::collections::{BTreeMap, HashSet};

use crate::error::{Error, InvalidMetadata};
use crate::pystr::{normalize_ws, py_split};
use crate::usereduce::{self, TokenKind};

/// One header or one package entry: internal key name → value.
pub type Entry = BTreeMap<String, String>;

/// Keys kept in package entries when an index is read
/// (`binarytree._pkgindex_allowed_pkg_keys`).
pub const ALLOWED_PKG_KEYS: &[&str] = &[
    "BASE_URI",
    "BDEPEND",
    "BUILD_ID",
    "BUILD_TIME",
    "CHOST",
    "CPV",
    "DEFINED_PHASES",
    "DEPEND",
    "DESC",
    "DESCRIPTION",
    "EAPI",
    "FETCHCOMMAND",
    "IDEPEND",
    "IUSE",
    "KEYWORDS",
    "LICENSE",
    "MD5",
    "MTIME",
    "PATH",
    "PDEPEND",
    "PKGINDEX_URI",
    "PROPERTIES",
    "PROVIDES",
    "RDEPEND",
    "REPO",
    "REQUIRES",
    "RESTRICT",
    "RESUMECOMMAND",
    "SHA1",
    "SIZE",
    "SLOT",
    "USE",
    "USER_PATCHES",
    "_mtime_",
    "repository",
];

/// Defaults of package entries (`binarytree._pkgindex_default_pkg_data`):
/// filled in when reading, left out when writing.
pub const DEFAULT_PKG_DATA: &[(&str, &str)] = &[
    ("BDEPEND", ""),
    ("BUILD_ID", ""),
    ("BUILD_TIME", ""),
    ("DEFINED_PHASES", ""),
    ("DEPEND", ""),
    ("EAPI", "0"),
    ("IDEPEND", ""),
    ("IUSE", ""),
    ("KEYWORDS", ""),
    ("LICENSE", ""),
    ("PATH", ""),
    ("PDEPEND", ""),
    ("PROPERTIES", ""),
    ("PROVIDES", ""),
    ("RDEPEND", ""),
    ("REQUIRES", ""),
    ("RESTRICT", ""),
    ("SLOT", "0"),
    ("USE", ""),
];

/// Entry keys inherited from the header (`_pkgindex_inherited_keys`).
pub const INHERITED_KEYS: &[&str] = &["CHOST", "repository"];

/// Internal name ↔ name in the file (`_pkgindex_translated_keys`).
pub const TRANSLATED_KEYS: &[(&str, &str)] = &[
    ("DESCRIPTION", "DESC"),
    ("_mtime_", "MTIME"),
    ("repository", "REPO"),
];

/// The package metadata keys an entry is made of when Portage injects a
/// package (`bindbapi._aux_cache_keys` + `_init_aux_keys`, read by
/// `binarytree._read_metadata`). `MD5`, `SIZE` and `_mtime_` are then
/// replaced by the file's digest, size and mtime, and `SHA1`, `CPV` and
/// `PATH` added. Note what is *not* here: `DESCRIPTION`, `CATEGORY`, `PF`.
pub const METADATA_KEYS: &[&str] = &[
    "BDEPEND",
    "BUILD_ID",
    "BUILD_TIME",
    "CHOST",
    "DEFINED_PHASES",
    "DEPEND",
    "EAPI",
    "IDEPEND",
    "IUSE",
    "KEYWORDS",
    "LICENSE",
    "MD5",
    "PDEPEND",
    "PROPERTIES",
    "PROVIDES",
    "RDEPEND",
    "REPO_REVISIONS",
    "REQUIRES",
    "RESTRICT",
    "SIZE",
    "SLOT",
    "USE",
    "USER_PATCHES",
    "_mtime_",
    "repository",
];

/// Keys whose USE conditionals are evaluated against the package's `USE`
/// (`binarytree._pkgindex_use_evaluated_keys`); the `*DEPEND` ones hold
/// atoms.
pub const USE_EVALUATED_KEYS: &[&str] = &[
    "BDEPEND",
    "DEPEND",
    "IDEPEND",
    "LICENSE",
    "RDEPEND",
    "PDEPEND",
    "PROPERTIES",
    "RESTRICT",
];

/// The index version this implementation reads and writes
/// (`binarytree._pkgindex_version`).
pub const VERSION: &str = "0";

fn to_internal(k: &str) -> &str {
    TRANSLATED_KEYS
        .iter()
        .find(|(_, file)| *file == k)
        .map_or(k, |(internal, _)| internal)
}

fn to_file(k: &str) -> &str {
    TRANSLATED_KEYS
        .iter()
        .find(|(internal, _)| *internal == k)
        .map_or(k, |(_, file)| file)
}

/// A parsed `Packages` file. Keys are Portage's internal names
/// (`DESCRIPTION`, `_mtime_`, `repository`), values as read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PackageIndex {
    /// The header block.
    pub header: Entry,
    /// One entry per package, in file order (writing sorts them by `CPV`).
    pub packages: Vec<Entry>,
}

/// Reads an index. Never fails: like Portage's reader, every byte sequence
/// is an index (possibly an empty one); the `Result` is kept for readers
/// with limits.
pub fn parse(data: &[u8]) -> Result<PackageIndex, Error> {
    parse_with_defaults(data, &Entry::new())
}

/// Reads an index whose header starts as `header_defaults` (Portage starts
/// from `CHOST` = the configured CHOST and an empty `repository`), so that
/// entries inherit those values when the file's header does not set them.
pub fn parse_with_defaults(data: &[u8], header_defaults: &Entry) -> Result<PackageIndex, Error> {
    let text = String::from_utf8_lossy(data);
    let mut lines = Lines { rest: &text };
    let mut index = PackageIndex {
        header: header_defaults.clone(),
        packages: Vec::new(),
    };
    let header = read_block(&mut lines, false);
    index.header.extend(header);
    loop {
        let mut d = read_block(&mut lines, true);
        if d.is_empty() {
            break;
        }
        if d.get("CPV").is_none_or(|c| c.is_empty()) {
            continue;
        }
        for (k, v) in DEFAULT_PKG_DATA {
            d.entry((*k).to_owned()).or_insert_with(|| (*v).to_owned());
        }
        for k in INHERITED_KEYS {
            if let Some(v) = index.header.get(*k).filter(|v| !v.is_empty()) {
                d.entry((*k).to_owned()).or_insert_with(|| v.clone());
            }
        }
        index.packages.push(d);
    }
    Ok(index)
}

/// Python's text-mode line iteration with universal newlines, without the
/// line ends.
struct Lines<'a> {
    rest: &'a str,
}

impl<'a> Iterator for Lines<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.rest.is_empty() {
            return None;
        }
        match self.rest.find(['\n', '\r']) {
            None => {
                let line = self.rest;
                self.rest = "";
                Some(line)
            }
            Some(i) => {
                let line = &self.rest[..i];
                let skip = if self.rest[i..].starts_with("\r\n") {
                    2
                } else {
                    1
                };
                self.rest = &self.rest[i + skip..];
                Some(line)
            }
        }
    }
}

/// `PackageIndex._readpkgindex`: one block, up to an empty line or the end.
fn read_block(lines: &mut Lines<'_>, pkg_entry: bool) -> Entry {
    let mut d = Entry::new();
    for line in lines.by_ref() {
        if line.is_empty() {
            break;
        }
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        // Drop the character after the colon, whatever it is.
        let v = v.chars().next().map_or("", |c| &v[c.len_utf8()..]);
        let k = to_internal(k);
        if pkg_entry && !ALLOWED_PKG_KEYS.contains(&k) {
            continue;
        }
        d.insert(k.to_owned(), v.to_owned());
    }
    d
}

/// Line breaks in a key or value would start a new line in the file (and
/// could forge entries); Portage never produces them, we replace them by
/// spaces.
fn push_line(out: &mut String, k: &str, v: &str) {
    let clean = |s: &str, out: &mut String| {
        for c in s.chars() {
            out.push(if c == '\n' || c == '\r' { ' ' } else { c });
        }
    };
    clean(to_file(k), out);
    out.push_str(": ");
    clean(v, out);
    out.push('\n');
}

/// Writes an index exactly as Portage does (see the module docs). Nothing is
/// changed: call [`PackageIndex::stamp`] first to set `TIMESTAMP` and
/// `PACKAGES` as a new index write would.
pub fn write(index: &PackageIndex) -> Vec<u8> {
    let mut out = String::new();
    for (k, v) in &index.header {
        if !v.is_empty() {
            push_line(&mut out, k, v);
        }
    }
    out.push('\n');
    let mut order: Vec<&Entry> = index.packages.iter().collect();
    order.sort_by(|a, b| cpv_of(a).cmp(cpv_of(b)));
    for d in order {
        for (k, v) in d {
            if v.is_empty() {
                continue;
            }
            if INHERITED_KEYS.contains(&k.as_str())
                && index.header.get(k).is_some_and(|h| !h.is_empty() && h == v)
            {
                continue;
            }
            if DEFAULT_PKG_DATA
                .iter()
                .any(|(dk, dv)| *dk == k.as_str() && *dv == v.as_str())
            {
                continue;
            }
            push_line(&mut out, k, v);
        }
        out.push('\n');
    }
    out.into_bytes()
}

fn cpv_of(d: &Entry) -> &str {
    d.get("CPV").map_or("", String::as_str)
}

impl PackageIndex {
    /// An empty index.
    pub fn new() -> PackageIndex {
        PackageIndex::default()
    }

    /// [`parse`].
    pub fn parse(data: &[u8]) -> Result<PackageIndex, Error> {
        parse(data)
    }

    /// [`write()`].
    pub fn write(&self) -> Vec<u8> {
        write(self)
    }

    /// What Portage does to the header on every write: `TIMESTAMP` = now
    /// (seconds) and `PACKAGES` = the number of entries; plus `VERSION`
    /// when missing (`_update_pkgindex_header` without a profile that has
    /// IUSE_IMPLICIT).
    pub fn stamp(&mut self, timestamp: i64) {
        self.header
            .entry("VERSION".to_owned())
            .or_insert_with(|| VERSION.to_owned());
        self.header
            .insert("TIMESTAMP".to_owned(), timestamp.to_string());
        self.header
            .insert("PACKAGES".to_owned(), self.packages.len().to_string());
    }

    /// Whether Portage would use this index (`VERSION` an integer ≤ 0);
    /// otherwise Portage starts a new, empty one.
    pub fn version_supported(&self) -> bool {
        self.header
            .get("VERSION")
            .and_then(|v| parse_py_int(v))
            .is_some_and(|v| v <= 0)
    }

    /// Adds `entry`, first removing entries with the same non-empty `PATH`,
    /// or (without a `PATH`) entries of the same `CPV` without one
    /// (`binarytree._inject_file`).
    pub fn insert(&mut self, entry: Entry) {
        let path = entry.get("PATH").cloned().unwrap_or_default();
        let cpv = entry.get("CPV").cloned();
        self.packages.retain(|d2| {
            let p2 = d2.get("PATH");
            if !path.is_empty() && p2 == Some(&path) {
                return false;
            }
            if cpv.is_some() && d2.get("CPV") == cpv.as_ref() && path == p2.map_or("", |s| s) {
                return false;
            }
            true
        });
        self.packages.push(entry);
    }

    /// The entries of `cpv`.
    pub fn entries_of<'a>(&'a self, cpv: &'a str) -> impl Iterator<Item = &'a Entry> + 'a {
        self.packages
            .iter()
            .filter(move |d| d.get("CPV").is_some_and(|c| c == cpv))
    }

    /// The largest `BUILD_ID` among the entries of `cpv`.
    pub fn max_build_id(&self, cpv: &str) -> Option<u64> {
        self.entries_of(cpv)
            .filter_map(|d| d.get("BUILD_ID").and_then(|b| parse_py_int(b)))
            .filter_map(|b| u64::try_from(b).ok())
            .max()
    }
}

/// Python's `int(s)` for the decimal strings that matter here (surrounding
/// whitespace, a sign, ASCII digits with single `_` separators).
pub(crate) fn parse_py_int(s: &str) -> Option<i128> {
    let t = s.trim_matches(crate::pystr::is_py_space);
    let (neg, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
        || !digits.bytes().all(|b| b.is_ascii_digit() || b == b'_')
    {
        return None;
    }
    let v: i128 = digits.replace('_', "").parse().ok()?;
    Some(if neg { -v } else { v })
}

/// What a published file adds to its entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    /// Path relative to PKGDIR (`PATH`).
    pub path: String,
    /// Lowercase hex MD5 of the file (`MD5`).
    pub md5: String,
    /// Lowercase hex SHA-1 of the file (`SHA1`).
    pub sha1: String,
    /// File size in bytes (`SIZE`).
    pub size: u64,
    /// File mtime, whole seconds (`MTIME`).
    pub mtime: i64,
}

/// The metadata part of an index entry for a package of `cpv`: what
/// Portage's `binarytree.inject` takes from the package (see
/// [`METADATA_KEYS`]), whitespace-normalised, with USE conditionals
/// evaluated ([`USE_EVALUATED_KEYS`]), plus `CPV`.
///
/// `metadata` is the package's metadata (its `metadata.tar`/xpak keys, raw
/// values). Refused like Portage refuses the package: an empty `SLOT`, a
/// dependency string `use_reduce` rejects. Also refused: `CATEGORY`/`PF`
/// that are missing or disagree with `cpv` (Portage would later ignore the
/// file, or call it invalid).
pub fn metadata_entry(
    cpv: &atom::Cpv,
    metadata: &BTreeMap<String, String>,
) -> Result<Entry, InvalidMetadata> {
    let bad = |key: &str, reason: String| InvalidMetadata {
        cpv: cpv.to_string(),
        key: key.to_owned(),
        reason,
    };
    for (key, want) in [("CATEGORY", cpv.category()), ("PF", cpv.pf())] {
        match metadata.get(key).map(|v| normalize_ws(v)) {
            Some(v) if v == want => {}
            Some(v) => return Err(bad(key, format!("is {v:?}, but the package is {cpv}"))),
            None => return Err(bad(key, "is missing".to_owned())),
        }
    }
    let mut d = Entry::new();
    for k in METADATA_KEYS {
        let v = match metadata.get(*k) {
            Some(v) => normalize_ws(v),
            None if *k == "EAPI" => "0".to_owned(),
            None => String::new(),
        };
        d.insert((*k).to_owned(), v);
    }
    let use_line = d.get("USE").cloned().unwrap_or_default();
    let use_flags: HashSet<&str> = py_split(&use_line).collect();
    for k in USE_EVALUATED_KEYS {
        let kind = if k.ends_with("DEPEND") {
            TokenKind::Atoms
        } else {
            TokenKind::Words
        };
        let raw = d.get(*k).cloned().unwrap_or_default();
        let v = usereduce::evaluate(&raw, &use_flags, kind).map_err(|e| bad(k, e.to_string()))?;
        d.insert((*k).to_owned(), v);
    }
    if d.get("SLOT").is_none_or(|s| s.is_empty()) {
        return Err(bad("SLOT", "is missing or empty".to_owned()));
    }
    d.insert("CPV".to_owned(), cpv.to_string());
    Ok(d)
}

/// The complete entry Portage's `inject` writes for a package file: the
/// [`metadata_entry`] plus `MD5`, `SHA1`, `SIZE`, `MTIME` and `PATH` of the
/// file. `BUILD_ID` is the one in the package's metadata, as in Portage
/// (which may differ from the one in the file name; see the crate README).
pub fn entry_from_metadata(
    cpv: &atom::Cpv,
    metadata: &BTreeMap<String, String>,
    file: &FileInfo,
) -> Result<Entry, InvalidMetadata> {
    let mut d = metadata_entry(cpv, metadata)?;
    apply_file_info(&mut d, file);
    Ok(d)
}

/// Sets the file-derived keys of an entry.
pub fn apply_file_info(d: &mut Entry, file: &FileInfo) {
    d.insert("MD5".to_owned(), file.md5.clone());
    d.insert("SHA1".to_owned(), file.sha1.clone());
    d.insert("SIZE".to_owned(), file.size.to_string());
    d.insert("_mtime_".to_owned(), file.mtime.to_string());
    d.insert("PATH".to_owned(), file.path.clone());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(pairs: &[(&str, &str)]) -> Entry {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn text(i: &PackageIndex) -> String {
        String::from_utf8(write(i)).unwrap()
    }

    /// The index Portage 3.0.83's quickpkg wrote in the reference
    /// environment (two instances of one package).
    const PORTAGE_WRITTEN: &str = "CHOST: x86_64-pc-linux-gnu\nPACKAGES: 2\nTIMESTAMP: 1795253565\nVERSION: 0\n\n\
BUILD_ID: 1\nBUILD_TIME: 1795253564\nCPV: app-misc/foo-1.0\nEAPI: 8\nIUSE: x\nMD5: b4d6d548c0e3d56ba2d65241c37efb0d\n\
PATH: app-misc/foo/foo-1.0-1.gpkg.tar\nRDEPEND: dev-libs/b\nSHA1: 28caa93e540f93ca8c8e6a8b9acea214035faaed\nSIZE: 10240\n\
USE: y\nMTIME: 1795253565\nREPO: gentoo\n\n\
BUILD_ID: 1\nBUILD_TIME: 1795253564\nCPV: app-misc/foo-1.0\nEAPI: 8\nIUSE: x\nMD5: 6ff3774fd7483dcecfa2e0c7f96f7e01\n\
PATH: app-misc/foo/foo-1.0-1.xpak\nRDEPEND: dev-libs/b\nSHA1: d8d344e16649f5cfac734633c57dd5106b462148\nSIZE: 1464\n\
USE: y\nMTIME: 1795253565\nREPO: gentoo\n\n";

    #[test]
    fn portage_index_round_trips() {
        let i = parse(PORTAGE_WRITTEN.as_bytes()).unwrap();
        assert_eq!(i.packages.len(), 2);
        assert_eq!(text(&i), PORTAGE_WRITTEN);
        let p = &i.packages[0];
        // Translated names, defaults and inherited values are filled in.
        assert_eq!(p["_mtime_"], "1795253565");
        assert_eq!(p["repository"], "gentoo");
        assert_eq!(p["SLOT"], "0");
        assert_eq!(p["CHOST"], "x86_64-pc-linux-gnu");
        assert_eq!(p["DEPEND"], "");
    }

    #[test]
    fn header_sorted_and_empty_values_omitted() {
        let mut i = PackageIndex::new();
        i.header = e(&[
            ("VERSION", "0"),
            ("A", ""),
            ("CHOST", "c"),
            ("repository", "r"),
        ]);
        assert_eq!(text(&i), "CHOST: c\nVERSION: 0\nREPO: r\n\n");
    }

    #[test]
    fn entries_sorted_by_cpv_stably() {
        let mut i = PackageIndex::new();
        for (cpv, path) in [
            ("b/b-1", "1"),
            ("a/a-2", "2"),
            ("a/a-10", "3"),
            ("b/b-1", "0"),
        ] {
            i.packages.push(e(&[("CPV", cpv), ("PATH", path)]));
        }
        // Plain string order ("a/a-10" < "a/a-2"), equal CPVs keep their order.
        assert_eq!(
            text(&i),
            "\nCPV: a/a-10\nPATH: 3\n\nCPV: a/a-2\nPATH: 2\n\nCPV: b/b-1\nPATH: 1\n\nCPV: b/b-1\nPATH: 0\n\n"
        );
    }

    #[test]
    fn keys_sorted_by_internal_name_then_translated() {
        let mut i = PackageIndex::new();
        i.packages.push(e(&[
            ("CPV", "a/b-1"),
            ("_mtime_", "5"),
            ("repository", "gentoo"),
            ("DESCRIPTION", "d"),
            ("USE", "x"),
        ]));
        assert_eq!(
            text(&i),
            "\nCPV: a/b-1\nDESC: d\nUSE: x\nMTIME: 5\nREPO: gentoo\n\n"
        );
    }

    #[test]
    fn defaults_and_inherited_values_omitted() {
        let mut i = PackageIndex::new();
        i.header = e(&[("CHOST", "x86_64-pc-linux-gnu")]);
        i.packages.push(e(&[
            ("CPV", "a/b-1"),
            ("EAPI", "0"),
            ("SLOT", "0"),
            ("IUSE", ""),
            ("CHOST", "x86_64-pc-linux-gnu"),
            ("repository", ""),
        ]));
        i.packages.push(e(&[
            ("CPV", "a/c-1"),
            ("EAPI", "8"),
            ("SLOT", "1"),
            ("CHOST", "i686-pc-linux-gnu"),
        ]));
        assert_eq!(
            text(&i),
            "CHOST: x86_64-pc-linux-gnu\n\nCPV: a/b-1\n\nCHOST: i686-pc-linux-gnu\nCPV: a/c-1\nEAPI: 8\nSLOT: 1\n\n"
        );
    }

    #[test]
    fn reader_rules() {
        let data = b"X:1\r\nY: 2\rZ\nMTIME: 7\n\nCPV: a/b-1\nREPO_REVISIONS: {}\nBOGUS: 1\nDESC: d\nMTIME: 9\nSLOT:  1\n\n\
                     NOCPV: 1\nUSE: x\n\nCPV:\n\n\nCPV: never/read-1\n";
        let i = parse(data).unwrap();
        assert_eq!(
            i.header,
            e(&[("X", ""), ("Y", "2"), ("_mtime_", "7")]),
            "one char after ':' dropped, \\r\\n and \\r end lines, no-colon lines ignored"
        );
        assert_eq!(i.packages.len(), 1, "an empty block ends the index");
        let p = &i.packages[0];
        assert!(!p.contains_key("REPO_REVISIONS") && !p.contains_key("BOGUS"));
        assert_eq!(p["DESCRIPTION"], "d");
        assert_eq!(p["_mtime_"], "9");
        assert_eq!(p["SLOT"], " 1");
        // A block whose keys are all disallowed is empty, so it ends the index too.
        let i = parse(b"\nFOO: 1\n\nCPV: a/b-1\n\n").unwrap();
        assert!(i.packages.is_empty());
        // Invalid UTF-8 is replaced, not refused.
        let i = parse(b"K: \xff\n").unwrap();
        assert_eq!(i.header["K"], "\u{fffd}");
        assert_eq!(parse(b"").unwrap(), PackageIndex::new());
    }

    #[test]
    fn header_defaults_are_inherited() {
        let defaults = e(&[("CHOST", "c"), ("repository", "")]);
        let i = parse_with_defaults(b"VERSION: 0\n\nCPV: a/b-1\n\n", &defaults).unwrap();
        assert_eq!(i.packages[0]["CHOST"], "c");
        assert!(!i.packages[0].contains_key("repository"));
        assert_eq!(text(&i), "CHOST: c\nVERSION: 0\n\nCPV: a/b-1\n\n");
    }

    #[test]
    fn line_breaks_cannot_forge_lines() {
        let mut i = PackageIndex::new();
        i.header = e(&[("A", "x\nCPV: evil")]);
        assert_eq!(text(&i), "A: x CPV: evil\n\n");
    }

    #[test]
    fn stamp_and_version() {
        let mut i = PackageIndex::new();
        i.packages.push(e(&[("CPV", "a/b-1")]));
        i.stamp(1234);
        assert_eq!(i.header["TIMESTAMP"], "1234");
        assert_eq!(i.header["PACKAGES"], "1");
        assert_eq!(i.header["VERSION"], "0");
        assert!(i.version_supported());
        i.header.insert("VERSION".into(), "1".into());
        assert!(!i.version_supported());
        i.header.insert("VERSION".into(), " -0 ".into());
        assert!(i.version_supported());
    }

    #[test]
    fn insert_replaces_same_path() {
        let mut i = PackageIndex::new();
        i.insert(e(&[("CPV", "a/b-1"), ("PATH", "a/b/b-1-1.gpkg.tar")]));
        i.insert(e(&[
            ("CPV", "a/b-1"),
            ("PATH", "a/b/b-1-2.gpkg.tar"),
            ("BUILD_ID", "2"),
        ]));
        i.insert(e(&[("CPV", "x/y-1"), ("PATH", "a/b/b-1-1.gpkg.tar")]));
        assert_eq!(i.packages.len(), 2);
        assert_eq!(i.packages[1]["CPV"], "x/y-1");
        assert_eq!(i.max_build_id("a/b-1"), Some(2));
        // Without PATH: same CPV without PATH is replaced.
        i.insert(e(&[("CPV", "c/d-1")]));
        i.insert(e(&[("CPV", "c/d-1"), ("USE", "x")]));
        assert_eq!(i.entries_of("c/d-1").count(), 1);
    }

    #[test]
    fn python_int() {
        assert_eq!(parse_py_int(" 12\n"), Some(12));
        assert_eq!(parse_py_int("1_0"), Some(10));
        assert_eq!(parse_py_int("-3"), Some(-3));
        assert_eq!(parse_py_int("1__0"), None);
        assert_eq!(parse_py_int(""), None);
        assert_eq!(parse_py_int("x"), None);
    }

    fn md(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        let mut m = e(&[
            ("CATEGORY", "app-misc\n"),
            ("PF", "foo-1.0\n"),
            ("SLOT", "0\n"),
        ]);
        m.extend(e(pairs));
        m
    }

    #[test]
    fn entry_from_package_metadata() {
        let cpv = atom::Cpv::parse("app-misc/foo-1.0").unwrap();
        let m = md(&[
            ("EAPI", "8\n"),
            ("USE", "amd64 x\n"),
            ("IUSE", "x  y\n"),
            ("RDEPEND", "x? ( dev-libs/a[x?] )\n!x? ( dev-libs/b )\n"),
            ("LICENSE", "|| ( MIT x? ( GPL-2 ) )"),
            ("DESCRIPTION", "not in the index"),
            ("SIZE", "4321"),
            ("MD5", "stale"),
            ("CONTENTS", "obj /x"),
            ("repository", "gentoo\n"),
        ]);
        let file = FileInfo {
            path: "app-misc/foo/foo-1.0-1.gpkg.tar".into(),
            md5: "m".into(),
            sha1: "s".into(),
            size: 10240,
            mtime: 17,
        };
        let d = entry_from_metadata(&cpv, &m, &file).unwrap();
        assert_eq!(d["RDEPEND"], "dev-libs/a[x]");
        assert_eq!(d["LICENSE"], "|| ( MIT GPL-2 )");
        assert_eq!(d["IUSE"], "x y");
        assert_eq!(
            d["SIZE"], "10240",
            "SIZE is the file size, not the installed size"
        );
        assert_eq!(d["MD5"], "m");
        assert!(!d.contains_key("DESCRIPTION") && !d.contains_key("CONTENTS"));
        let mut i = PackageIndex::new();
        i.header = e(&[("CHOST", "x86_64-pc-linux-gnu")]);
        i.insert(d);
        assert_eq!(
            text(&i),
            "CHOST: x86_64-pc-linux-gnu\n\nCPV: app-misc/foo-1.0\nEAPI: 8\nIUSE: x y\nLICENSE: || ( MIT GPL-2 )\n\
             MD5: m\nPATH: app-misc/foo/foo-1.0-1.gpkg.tar\nRDEPEND: dev-libs/a[x]\nSHA1: s\nSIZE: 10240\nUSE: amd64 x\n\
             MTIME: 17\nREPO: gentoo\n\n"
        );
    }

    #[test]
    fn invalid_package_metadata() {
        let cpv = atom::Cpv::parse("app-misc/foo-1.0").unwrap();
        let err = |m: BTreeMap<String, String>| metadata_entry(&cpv, &m).unwrap_err().key;
        assert_eq!(err(md(&[("SLOT", " \n")])), "SLOT");
        assert_eq!(err(md(&[("RDEPEND", "x? ( a/b")])), "RDEPEND");
        assert_eq!(err(md(&[("RESTRICT", "|| ( )")])), "RESTRICT");
        assert_eq!(err(md(&[("PF", "foo-2.0")])), "PF");
        let mut m = md(&[]);
        m.remove("CATEGORY");
        assert_eq!(err(m), "CATEGORY");
        // A missing EAPI is "0", which the writer then leaves out.
        let d = metadata_entry(&cpv, &md(&[])).unwrap();
        assert_eq!(d["EAPI"], "0");
    }
}

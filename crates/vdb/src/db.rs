//! Reading the VDB: enumerating entries and reading their keys lazily.

use std::collections::BTreeMap;
use std::collections::HashSet;
use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use atom::Cpv;

use crate::contents::{self, Contents};
use crate::metadata;
use crate::state::StatePaths;
use rootfs::root::Resolve;

/// `var/db/pkg`, relative to EROOT.
pub const VDB_PATH: &str = "var/db/pkg";
/// The merge-in-progress marker in entry names.
pub const MERGING_PREFIX: &str = "-MERGING-";

/// Something wrong in the database that does not stop the rest of it from
/// working. Every warning names the file it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Warning {
    /// A directory in a category whose name is not a valid `PF`, or a
    /// category name Portage would not accept (Portage: `!!! Invalid db entry`).
    InvalidEntry { path: PathBuf, reason: String },
    /// A `CAT/-MERGING-PF` directory: a merge was interrupted or is running.
    IncompleteMerge { path: PathBuf },
    /// Something where a directory was expected, or the reverse.
    NotADirectory { path: PathBuf },
    /// A line of CONTENTS that could not be parsed (skipped).
    ContentsLine {
        path: PathBuf,
        line: usize,
        problem: String,
    },
    /// A key file that exists but holds a value that cannot be used.
    BadValue {
        path: PathBuf,
        key: String,
        reason: String,
    },
    /// A file or directory that could not be read.
    Unreadable { path: PathBuf, error: String },
    /// A path of the database that leads nowhere inside ROOT (a symlink
    /// whose target, resolved inside ROOT, is missing): read as absent.
    OutsideRoot { path: PathBuf, reason: String },
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::InvalidEntry { path, reason } => {
                write!(f, "invalid db entry {}: {reason}", path.display())
            }
            Warning::IncompleteMerge { path } => write!(
                f,
                "incomplete merge: {} (an interrupted or running merge; `vartree recover` will clean it up)",
                path.display()
            ),
            Warning::NotADirectory { path } => {
                write!(f, "{}: not a directory; ignored", path.display())
            }
            Warning::ContentsLine {
                path,
                line,
                problem,
            } => write!(f, "{}: line {line}: {problem}; line skipped", path.display()),
            Warning::BadValue { path, key, reason } => {
                write!(f, "{}: bad {key}: {reason}", path.display())
            }
            Warning::Unreadable { path, error } => {
                write!(f, "cannot read {}: {error}", path.display())
            }
            Warning::OutsideRoot { path, reason } => {
                write!(f, "{}: ignored: {reason}", path.display())
            }
        }
    }
}

/// Where warnings go. Libraries never print; the CLI implements this.
pub trait Reporter: Sync {
    fn warn(&self, warning: Warning);
}

/// A reporter that drops everything.
pub struct Silent;
impl Reporter for Silent {
    fn warn(&self, _: Warning) {}
}

/// A reporter that collects warnings (for tests and `--json`).
#[derive(Default)]
pub struct Collect(pub std::sync::Mutex<Vec<Warning>>);
impl Reporter for Collect {
    fn warn(&self, w: Warning) {
        if let Ok(mut v) = self.0.lock() {
            v.push(w);
        }
    }
}
impl Collect {
    pub fn take(&self) -> Vec<Warning> {
        self.0
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default()
    }
}

/// Errors that stop an operation.
#[derive(Debug, thiserror::Error)]
pub enum VdbError {
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
    /// A state path (under EROOT) that cannot be used inside ROOT.
    #[error("cannot use {}: {source}", path.display())]
    State {
        path: PathBuf,
        #[source]
        source: rootfs::root::ResolveError,
    },
}

impl VdbError {
    /// The path the error is about.
    pub fn path(&self) -> Option<&Path> {
        match self {
            VdbError::Io { path, .. }
            | VdbError::Invalid { path, .. }
            | VdbError::State { path, .. } => Some(path),
        }
    }

    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        VdbError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

impl From<rootfs::atomic::FsError> for VdbError {
    fn from(e: rootfs::atomic::FsError) -> Self {
        VdbError::Io {
            op: e.op,
            path: e.path,
            source: e.source,
        }
    }
}

/// Names Portage skips at the category and package level
/// (`^(\..*|-MERGING-.*|CVS|lost\+found)$`).
pub fn is_excluded_name(name: &str) -> bool {
    name.starts_with('.')
        || name.starts_with(MERGING_PREFIX)
        || name == "CVS"
        || name == "lost+found"
}

/// Normalise an EPREFIX given by the user: `""` or `/a/b` (no trailing `/`).
pub fn normalize_eprefix(eprefix: &Path) -> PathBuf {
    let s = eprefix.to_string_lossy();
    let t = s.trim_end_matches('/');
    if t.is_empty() {
        PathBuf::new()
    } else if t.starts_with('/') {
        PathBuf::from(t)
    } else {
        PathBuf::from(format!("/{t}"))
    }
}

/// An installed-package database at `ROOT/EPREFIX/var/db/pkg`.
///
/// Its paths are resolved inside ROOT ([`crate::state`]): the directory it
/// reads is where `EROOT/var/db/pkg` leads when ROOT is the root, and a
/// symlinked category or entry is followed inside ROOT too. Writers get
/// their paths from [`Vdb::state`] when they use them.
#[derive(Debug, Clone)]
pub struct Vdb {
    state: StatePaths,
    dir: PathBuf,
    /// Why `var/db/pkg` cannot be read inside ROOT, if it cannot.
    problem: Option<Arc<DirProblem>>,
    /// State paths already warned about (each once).
    warned: Arc<Mutex<HashSet<PathBuf>>>,
}

#[derive(Debug)]
struct DirProblem {
    /// The database cannot be read at all (an error), or is missing inside
    /// ROOT behind a symlink (a warning; it reads as empty).
    fatal: bool,
    reason: String,
}

impl Vdb {
    /// The database of `root` with `eprefix` (`""` for none). Only its
    /// directory is looked up (inside ROOT); a missing database is simply
    /// empty.
    pub fn new(root: impl Into<PathBuf>, eprefix: impl AsRef<Path>) -> Vdb {
        Vdb::with_state(StatePaths::new(root, eprefix))
    }

    /// The database of a ROOT and EPREFIX already opened.
    pub fn with_state(state: StatePaths) -> Vdb {
        let (dir, problem) = match state.resolve(VDB_PATH, Resolve::Follow) {
            Ok(r) => {
                let problem = r.dangling().and_then(|_| state.problem(VDB_PATH)).map(|e| {
                    Arc::new(DirProblem {
                        fatal: false,
                        reason: error_detail(&e),
                    })
                });
                (r.host_path().to_owned(), problem)
            }
            // No ROOT: nothing installed.
            Err(VdbError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                (state.lexical(VDB_PATH), None)
            }
            Err(e) => (
                state.lexical(VDB_PATH),
                Some(Arc::new(DirProblem {
                    fatal: true,
                    reason: error_detail(&e),
                })),
            ),
        };
        Vdb {
            state,
            dir,
            problem,
            warned: Arc::default(),
        }
    }

    /// ROOT, EPREFIX and the resolution of state paths inside ROOT.
    pub fn state(&self) -> &StatePaths {
        &self.state
    }

    pub fn root(&self) -> &Path {
        self.state.root()
    }
    /// `""` or `/prefix`.
    pub fn eprefix(&self) -> &Path {
        self.state.eprefix()
    }
    /// ROOT joined with EPREFIX, as given (not resolved: for messages and
    /// configuration values).
    pub fn eroot(&self) -> &Path {
        self.state.eroot()
    }
    /// `EROOT/var/db/pkg`, resolved inside ROOT when the database was
    /// opened: for reading.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `var/db/pkg/PARTS…` for reading: the plain path below [`Vdb::dir`]
    /// while no component is a symlink, else resolved inside ROOT. `None`
    /// when it does not lead anywhere inside ROOT.
    fn read_path(&self, parts: &[&str]) -> Option<PathBuf> {
        let mut p = self.dir.clone();
        for part in parts {
            p.push(part);
            if fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_symlink()) {
                let r = self
                    .state
                    .resolve(&format!("{VDB_PATH}/{}", parts.join("/")), Resolve::Follow)
                    .ok()?;
                return Some(r.host_path().to_owned());
            }
        }
        Some(p)
    }

    /// Whether `var/db/pkg/PARTS…` is a directory inside ROOT; a symlink
    /// that leads nowhere inside ROOT is reported (once).
    fn is_dir_inside(&self, ent: &fs::DirEntry, parts: &[&str], reporter: &dyn Reporter) -> bool {
        match ent.file_type() {
            Ok(t) if t.is_dir() => true,
            // Portage lists with dirsonly=1, which follows symlinks: here
            // they are followed inside ROOT.
            Ok(t) if t.is_symlink() => {
                let rel = format!("{VDB_PATH}/{}", parts.join("/"));
                match self.state.resolve(&rel, Resolve::Follow) {
                    Ok(r) if r.missing() == 0 => {
                        fs::metadata(r.host_path()).is_ok_and(|m| m.is_dir())
                    }
                    Ok(r) => {
                        if r.dangling().is_some() {
                            if let Some(e) = self.state.problem(&rel) {
                                self.warn_once(ent.path(), error_detail(&e), reporter);
                            }
                        }
                        false
                    }
                    Err(e) => {
                        self.warn_once(ent.path(), error_detail(&e), reporter);
                        false
                    }
                }
            }
            _ => false,
        }
    }

    fn warn_once(&self, path: PathBuf, reason: String, reporter: &dyn Reporter) {
        let first = self
            .warned
            .lock()
            .map(|mut w| w.insert(path.clone()))
            .unwrap_or(true);
        if first {
            reporter.warn(Warning::OutsideRoot { path, reason });
        }
    }

    /// Whether the database can be read: an error when it cannot be at
    /// all, `false` (reported once) when it is missing inside ROOT behind a
    /// symlink.
    fn usable(&self, reporter: &dyn Reporter) -> Result<bool, VdbError> {
        match &self.problem {
            None => Ok(true),
            Some(p) if p.fatal => Err(VdbError::Invalid {
                path: self.state.lexical(VDB_PATH),
                reason: p.reason.clone(),
            }),
            Some(p) => {
                self.warn_once(self.state.lexical(VDB_PATH), p.reason.clone(), reporter);
                Ok(false)
            }
        }
    }

    /// A category's directory for reading: the plain path, or, when it is
    /// a symlink, where it leads inside ROOT. `None` (a symlink leading to
    /// nothing inside ROOT is reported once) when there is none.
    pub fn category_dir(&self, category: &str, reporter: &dyn Reporter) -> Option<PathBuf> {
        let plain = self.dir.join(category);
        match fs::symlink_metadata(&plain) {
            Ok(m) if m.file_type().is_symlink() => {
                let rel = format!("{VDB_PATH}/{category}");
                match self.state.resolve(&rel, Resolve::Follow) {
                    Ok(r) if r.missing() == 0 => Some(r.host_path().to_owned()),
                    Ok(r) => {
                        if r.dangling().is_some() {
                            if let Some(e) = self.state.problem(&rel) {
                                self.warn_once(plain, error_detail(&e), reporter);
                            }
                        }
                        None
                    }
                    Err(e) => {
                        self.warn_once(plain, error_detail(&e), reporter);
                        None
                    }
                }
            }
            _ => Some(plain),
        }
    }

    /// Valid category directories, sorted.
    pub fn categories(&self, reporter: &dyn Reporter) -> Result<Vec<String>, VdbError> {
        if !self.usable(reporter)? {
            return Ok(Vec::new());
        }
        let rd = match fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(VdbError::io("read directory", &self.dir, e)),
        };
        let mut out = Vec::new();
        for ent in rd {
            let ent = ent.map_err(|e| VdbError::io("read directory", &self.dir, e))?;
            let name = ent.file_name();
            let Some(name) = name.to_str() else {
                reporter.warn(Warning::InvalidEntry {
                    path: ent.path(),
                    reason: "category name is not valid UTF-8".into(),
                });
                continue;
            };
            if is_excluded_name(name) {
                continue;
            }
            if !self.is_dir_inside(&ent, &[name], reporter) {
                continue;
            }
            if !atom::is_valid_category(name) {
                reporter.warn(Warning::InvalidEntry {
                    path: ent.path(),
                    reason: "not a valid category name".into(),
                });
                continue;
            }
            out.push(name.to_owned());
        }
        out.sort();
        Ok(out)
    }

    /// The entries of one category, sorted by package name and version.
    /// Invalid names and `-MERGING-` directories are reported, not returned.
    pub fn entries_in(
        &self,
        category: &str,
        reporter: &dyn Reporter,
    ) -> Result<Vec<VdbEntry>, VdbError> {
        if !self.usable(reporter)? {
            return Ok(Vec::new());
        }
        let Some(cdir) = self.category_dir(category, reporter) else {
            return Ok(Vec::new());
        };
        let rd = match fs::read_dir(&cdir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                reporter.warn(Warning::Unreadable {
                    path: cdir,
                    error: e.to_string(),
                });
                return Ok(Vec::new());
            }
        };
        let mut out = Vec::new();
        for ent in rd {
            let ent = match ent {
                Ok(ent) => ent,
                Err(e) => {
                    reporter.warn(Warning::Unreadable {
                        path: cdir.clone(),
                        error: e.to_string(),
                    });
                    break;
                }
            };
            let name = ent.file_name();
            let Some(name) = name.to_str() else {
                reporter.warn(Warning::InvalidEntry {
                    path: ent.path(),
                    reason: "name is not valid UTF-8".into(),
                });
                continue;
            };
            if name.starts_with(MERGING_PREFIX) {
                if self.is_dir_inside(&ent, &[category, name], &crate::db::Silent) {
                    reporter.warn(Warning::IncompleteMerge { path: ent.path() });
                }
                continue;
            }
            if is_excluded_name(name) {
                continue;
            }
            if !self.is_dir_inside(&ent, &[category, name], reporter) {
                continue;
            }
            let dir = if ent.file_type().is_ok_and(|t| t.is_symlink()) {
                match self.read_path(&[category, name]) {
                    Some(d) => d,
                    None => continue,
                }
            } else {
                ent.path()
            };
            match Cpv::from_parts(category, name) {
                Ok(cpv) => out.push(VdbEntry::new(cpv, dir)),
                Err(e) => reporter.warn(Warning::InvalidEntry {
                    path: ent.path(),
                    reason: e.to_string(),
                }),
            }
        }
        out.sort_by(|a, b| a.cpv.cmp(&b.cpv));
        Ok(out)
    }

    /// Every valid entry, sorted by category, package name and version.
    pub fn entries(&self, reporter: &dyn Reporter) -> Result<Vec<VdbEntry>, VdbError> {
        let mut out = Vec::new();
        for cat in self.categories(reporter)? {
            out.extend(self.entries_in(&cat, reporter)?);
        }
        Ok(out)
    }

    /// One entry by category and PF, if it exists.
    pub fn entry(&self, category: &str, pf: &str) -> Option<VdbEntry> {
        if self.problem.is_some() {
            return None;
        }
        let cpv = Cpv::from_parts(category, pf).ok()?;
        let dir = self.read_path(&[category, pf])?;
        fs::metadata(&dir)
            .ok()
            .filter(fs::Metadata::is_dir)
            .map(|_| VdbEntry::new(cpv, dir))
    }
}

/// `root` joined with an absolute path inside it (`/` → root itself).
pub fn join_root(root: &Path, abs: &Path) -> PathBuf {
    let rel = abs.strip_prefix("/").unwrap_or(abs);
    if rel.as_os_str().is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    }
}

/// Keys whose value keeps its newlines (Portage's `_aux_multi_line_re`).
pub fn is_multi_line_key(key: &str) -> bool {
    key == "CONTENTS" || key.starts_with("NEEDED.")
}

/// One installed package: `EROOT/var/db/pkg/CAT/PF`. Keys are read lazily.
#[derive(Debug)]
pub struct VdbEntry {
    pub cpv: Cpv,
    dir: PathBuf,
    metadata: OnceLock<Option<BTreeMap<String, String>>>,
}

impl Clone for VdbEntry {
    fn clone(&self) -> Self {
        VdbEntry::new(self.cpv.clone(), self.dir.clone())
    }
}

impl PartialEq for VdbEntry {
    fn eq(&self, other: &Self) -> bool {
        self.dir == other.dir
    }
}
impl Eq for VdbEntry {}

impl VdbEntry {
    pub fn new(cpv: Cpv, dir: PathBuf) -> VdbEntry {
        VdbEntry {
            cpv,
            dir,
            metadata: OnceLock::new(),
        }
    }

    /// The entry's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path of one of the entry's files.
    pub fn path_of(&self, key: &str) -> PathBuf {
        self.dir.join(key)
    }

    /// The consolidated `metadata` snapshot, if present and still valid
    /// (its `#dir_mtime` equals the directory's `st_mtime_ns`).
    pub fn metadata_snapshot(&self) -> Option<&BTreeMap<String, String>> {
        self.metadata
            .get_or_init(|| {
                // One open and read (no size probe): this runs for every
                // package in `list`.
                let mut data = Vec::with_capacity(4096);
                fs::File::open(self.dir.join(metadata::FILE_NAME))
                    .and_then(|mut f| std::io::Read::read_to_end(&mut f, &mut data))
                    .ok()?;
                let parsed = metadata::parse(&data)?;
                let st = fs::metadata(&self.dir).ok()?;
                let mtime_ns = i128::from(st.mtime()) * 1_000_000_000 + i128::from(st.mtime_nsec());
                (parsed.dir_mtime_ns == mtime_ns).then_some(parsed.fields)
            })
            .as_ref()
    }

    /// The raw bytes of a key file; `None` when it does not exist.
    pub fn read_raw(&self, key: &str) -> Result<Option<Vec<u8>>, VdbError> {
        let path = self.dir.join(key);
        match fs::read(&path) {
            Ok(d) => Ok(Some(d)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(VdbError::io("read", path, e)),
        }
    }

    /// A key's value as Portage's `aux_get` serves it: decoded lossily,
    /// whitespace-normalised unless it is a multi-line key, taken from a
    /// valid `metadata` snapshot when the key is carried there. `None`
    /// when there is no value (Portage serves `""`).
    pub fn get(&self, key: &str) -> Result<Option<String>, VdbError> {
        if metadata::is_carried(key) {
            if let Some(m) = self.metadata_snapshot() {
                return Ok(m.get(key).filter(|v| !v.is_empty()).cloned());
            }
        }
        let Some(raw) = self.read_raw(key)? else {
            return Ok(None);
        };
        let text = String::from_utf8_lossy(&raw);
        let value = if is_multi_line_key(key) {
            text.into_owned()
        } else {
            metadata::normalize_whitespace(&text)
        };
        Ok(Some(value).filter(|v| !v.is_empty()))
    }

    /// Like [`VdbEntry::get`], but an unreadable file is reported and served
    /// as no value, so one bad file does not stop a query.
    pub fn get_or_warn(&self, key: &str, reporter: &dyn Reporter) -> Option<String> {
        match self.get(key) {
            Ok(v) => v,
            Err(e) => {
                reporter.warn(Warning::Unreadable {
                    path: self.dir.join(key),
                    error: error_detail(&e),
                });
                None
            }
        }
    }

    /// `(SLOT, sub-slot)`. A missing or empty SLOT is reported and served as
    /// `"0"`, as Portage serves it.
    pub fn slot(&self, reporter: &dyn Reporter) -> (String, Option<String>) {
        match self.get_or_warn("SLOT", reporter) {
            Some(s) => match s.split_once('/') {
                Some((slot, sub)) => (slot.to_owned(), Some(sub.to_owned())),
                None => (s, None),
            },
            None => {
                reporter.warn(Warning::BadValue {
                    path: self.dir.join("SLOT"),
                    key: "SLOT".into(),
                    reason: "missing or empty; taken as \"0\"".into(),
                });
                ("0".to_owned(), None)
            }
        }
    }

    /// The `repository` key.
    pub fn repository(&self, reporter: &dyn Reporter) -> Option<String> {
        self.get_or_warn("repository", reporter)
    }

    /// The COUNTER. A missing or corrupt one is reported; Portage then
    /// uses 0.
    pub fn counter(&self, reporter: &dyn Reporter) -> Option<i64> {
        let v = self.get_or_warn("COUNTER", reporter);
        match v.as_deref().map(str::parse::<i64>) {
            Some(Ok(n)) => Some(n),
            _ => {
                reporter.warn(Warning::BadValue {
                    path: self.dir.join("COUNTER"),
                    key: "COUNTER".into(),
                    reason: match v {
                        None => "missing; Portage treats it as 0".into(),
                        Some(v) => format!("{v:?} is not a number; Portage treats it as 0"),
                    },
                });
                None
            }
        }
    }

    /// USE flags enabled at build time.
    pub fn use_flags(&self, reporter: &dyn Reporter) -> Vec<String> {
        self.get_or_warn("USE", reporter)
            .map(|s| s.split(' ').map(str::to_owned).collect())
            .unwrap_or_default()
    }

    /// IUSE (with `+`/`-` default markers stripped).
    pub fn iuse(&self, reporter: &dyn Reporter) -> Vec<String> {
        self.get_or_warn("IUSE", reporter)
            .map(|s| {
                s.split(' ')
                    .map(|f| f.trim_start_matches(['+', '-']).to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Parse CONTENTS. A missing file is an empty package; unparseable lines
    /// are reported with the file and line number and skipped.
    pub fn contents(&self, reporter: &dyn Reporter) -> Result<Contents, VdbError> {
        let path = self.dir.join("CONTENTS");
        let data = match fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Contents::default()),
            Err(e) => return Err(VdbError::io("read", path, e)),
        };
        let parsed = contents::parse_contents(&data);
        for err in &parsed.errors {
            reporter.warn(Warning::ContentsLine {
                path: path.clone(),
                line: err.line,
                problem: err.problem.to_string(),
            });
        }
        Ok(parsed)
    }

    /// Parse NEEDED.ELF.2 (empty when absent); bad lines are reported.
    pub fn needed_elf2(
        &self,
        reporter: &dyn Reporter,
    ) -> Result<Vec<crate::needed::NeededEntry>, VdbError> {
        let Some(data) = self.read_raw("NEEDED.ELF.2")? else {
            return Ok(Vec::new());
        };
        let (entries, errors) = crate::needed::parse_needed_elf2(&data);
        for e in errors {
            reporter.warn(Warning::BadValue {
                path: self.dir.join("NEEDED.ELF.2"),
                key: "NEEDED.ELF.2".into(),
                reason: e.to_string(),
            });
        }
        Ok(entries)
    }
}

/// The message of an error with its cause (for warnings).
pub fn error_detail(e: &VdbError) -> String {
    match e {
        VdbError::Io { op, source, .. } => format!("{op}: {source}"),
        VdbError::Invalid { reason, .. } => reason.clone(),
        VdbError::State { source, .. } => source.to_string(),
    }
}

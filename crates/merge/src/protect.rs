//! Config protection (reference: portage-semantics.md §4).
//!
//! * [`ConfigProtect`]: which live paths are protected (`CONFIG_PROTECT`,
//!   `CONFIG_PROTECT_MASK`). The pure core takes a [`PathProbe`] for the few
//!   filesystem facts it needs; [`ConfigProtect::new`] uses the real one.
//! * [`decide`]: what `mergeme` does with one protected entry, as Portage's
//!   `dblink._protect` decides it.
//! * [`new_protect_filename`]: the `._cfgNNNN_name` a protected update is
//!   merged as, pure over a directory listing; [`new_protect_filename_at`]
//!   lists and probes a real directory.
//! * [`Confmem`]: the config memory file `EROOT/var/lib/portage/config`,
//!   read and written byte-compatibly with Portage's `grabdict`/`writedict`.
//!
//! Paths are `&str`: Portage handles them as decoded text, and the merge
//! engine refuses names it cannot represent before it gets here.

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};

use md5::{Digest, Md5};

use crate::mask::py_is_space;

/// The config memory file, relative to EROOT.
pub const CONFMEM_PATH: &str = "var/lib/portage/config";

/// The in-memory pseudo-key Portage keeps in the confmem dict during a merge
/// (`IGNORE` = `--noconfmem` or downgrade). It is removed before the dict is
/// written; a line with this key in the file is therefore dropped by the
/// next merge that rewrites the file. [`Confmem`] never sets it; callers that
/// rewrite the file after a merge should [`Confmem::forget`] it, as Portage
/// does.
pub const CONFMEM_IGNORE_KEY: &str = "IGNORE";

/// An I/O failure, with the operation and the path.
#[derive(Debug, thiserror::Error)]
#[error("cannot {op} {}: {source}", path.display())]
pub struct ProtectIoError {
    pub op: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

impl ProtectIoError {
    fn new(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        ProtectIoError {
            op,
            path: path.into(),
            source,
        }
    }
}

/// Lowercase hex MD5 of `data` (Portage's digest for CONTENTS and confmem;
/// for a symlink, of its target string).
pub fn md5_hex(data: &[u8]) -> String {
    vdb::digest::hex(&Md5::digest(data))
}

// ---------------------------------------------------------------------------
// Python path helpers (posixpath semantics, which Portage relies on)
// ---------------------------------------------------------------------------

/// `os.path.normpath`: lexical; collapses `//`, `.` and `x/..`; keeps two
/// leading slashes; `""` becomes `"."`.
pub fn normpath(path: &str) -> String {
    if path.is_empty() {
        return ".".to_owned();
    }
    let mut initial = usize::from(path.starts_with('/'));
    if path.starts_with("//") && !path.starts_with("///") {
        initial = 2;
    }
    let mut comps: Vec<&str> = Vec::new();
    for comp in path.split('/') {
        if comp.is_empty() || comp == "." {
            continue;
        }
        if comp != ".." || (initial == 0 && comps.is_empty()) || comps.last() == Some(&"..") {
            comps.push(comp);
        } else if !comps.is_empty() {
            comps.pop();
        }
    }
    let mut out = "/".repeat(initial);
    out.push_str(&comps.join("/"));
    if out.is_empty() {
        ".".to_owned()
    } else {
        out
    }
}

/// Portage's `normalize_path`: `normpath`, but a leading `//` collapses to `/`.
pub fn normalize_path(path: &str) -> String {
    if path.starts_with('/') {
        normpath(&format!("//{path}"))
    } else {
        normpath(path)
    }
}

/// `os.path.join(root, x.lstrip("/"))`.
pub fn join_under(root: &str, x: &str) -> String {
    let x = x.trim_start_matches('/');
    if root.is_empty() || root.ends_with('/') {
        format!("{root}{x}")
    } else {
        format!("{root}/{x}")
    }
}

/// `os.path.dirname`.
pub fn dirname(path: &str) -> &str {
    let i = path.rfind('/').map_or(0, |i| i + 1);
    let head = &path[..i];
    if !head.is_empty() && head.bytes().any(|b| b != b'/') {
        head.trim_end_matches('/')
    } else {
        head
    }
}

/// `os.path.basename`.
pub fn basename(path: &str) -> &str {
    path.rfind('/').map_or(path, |i| &path[i + 1..])
}

// ---------------------------------------------------------------------------
// ConfigProtect
// ---------------------------------------------------------------------------

/// The filesystem facts [`ConfigProtect`] needs. `None` means the call
/// failed (missing, dangling symlink, permission, …).
pub trait PathProbe {
    /// `stat(path)` (following symlinks): is it a directory?
    fn stat_is_dir(&self, path: &str) -> Option<bool>;
    /// `lstat(path)`: is it a directory?
    fn lstat_is_dir(&self, path: &str) -> Option<bool>;
}

/// The real filesystem.
#[derive(Debug, Clone, Copy, Default)]
pub struct RealFs;

impl PathProbe for RealFs {
    fn stat_is_dir(&self, path: &str) -> Option<bool> {
        std::fs::metadata(path).ok().map(|m| m.is_dir())
    }
    fn lstat_is_dir(&self, path: &str) -> Option<bool> {
        std::fs::symlink_metadata(path).ok().map(|m| m.is_dir())
    }
}

/// `CONFIG_PROTECT` / `CONFIG_PROTECT_MASK` as Portage's `ConfigProtect`
/// evaluates them (§4.1).
///
/// Construction ("updateprotect") joins every entry to EROOT and normalises
/// it lexically. A protect entry is kept if its parent directory exists
/// (so a not-yet-existing `/etc/foo.conf` is protected, bug 523684); it is
/// treated as a directory if `stat` says so. A mask entry is kept only if it
/// exists (`lstat`); it is a directory if `lstat` or `stat` says so.
///
/// Matching ([`ConfigProtect::is_protected`]) walks the protect entries **in
/// the order given** and reproduces Portage's arithmetic exactly: a matching
/// entry sets `protected = len(entry)` (even when shorter than an earlier
/// match), is only considered when longer than the longest mask seen so far,
/// and a matching mask entry of equal or greater length sets `masked`. The
/// answer is `protected > masked`. With the sorted lists Portage's config
/// produces this is "longest protect entry wins unless a mask entry at least
/// as long matches"; with hand-ordered lists it can differ, as in Portage.
///
/// With `case_insensitive`, the path and the mask entries are lowercased
/// (mask entries before they are probed), but protect entries are **not**,
/// exactly as in Portage: an upper-case protect entry (or EROOT) then never
/// matches.
#[derive(Debug, Clone)]
pub struct ConfigProtect {
    eroot: String,
    protect_list: Vec<String>,
    mask_list: Vec<String>,
    case_insensitive: bool,
    protect: Vec<String>,
    mask: Vec<String>,
    dirs: HashSet<String>,
}

impl ConfigProtect {
    /// Build against the real filesystem. `eroot` is ROOT + EPREFIX (a
    /// trailing `/` is fine); entries are the whitespace-split values.
    pub fn new<S: AsRef<str>>(
        eroot: &str,
        protect: &[S],
        mask: &[S],
        case_insensitive: bool,
    ) -> Self {
        Self::with_probe(eroot, protect, mask, case_insensitive, &RealFs)
    }

    /// Build with an explicit [`PathProbe`] (pure when the probe is).
    pub fn with_probe<S: AsRef<str>>(
        eroot: &str,
        protect: &[S],
        mask: &[S],
        case_insensitive: bool,
        probe: &impl PathProbe,
    ) -> Self {
        let mut cp = ConfigProtect {
            eroot: eroot.to_owned(),
            protect_list: protect.iter().map(|s| s.as_ref().to_owned()).collect(),
            mask_list: mask.iter().map(|s| s.as_ref().to_owned()).collect(),
            case_insensitive,
            protect: Vec::new(),
            mask: Vec::new(),
            dirs: HashSet::new(),
        };
        cp.update(probe);
        cp
    }

    /// Re-probe the filesystem (Portage's `updateprotect`, called before
    /// unmerging, since directories may have appeared).
    pub fn update(&mut self, probe: &impl PathProbe) {
        self.protect.clear();
        self.mask.clear();
        self.dirs.clear();
        for x in &self.protect_list {
            let p = normalize_path(&join_under(&self.eroot, x));
            if probe.stat_is_dir(dirname(&p)) == Some(true) {
                self.protect.push(p.clone());
            }
            if probe.stat_is_dir(&p) == Some(true) {
                self.dirs.insert(p);
            }
        }
        for x in &self.mask_list {
            let mut p = normalize_path(&join_under(&self.eroot, x));
            if self.case_insensitive {
                p = p.to_lowercase();
            }
            let Some(is_dir) = probe.lstat_is_dir(&p) else {
                continue;
            };
            if is_dir || probe.stat_is_dir(&p) == Some(true) {
                self.dirs.insert(p.clone());
            }
            self.mask.push(p);
        }
    }

    /// The effective protect entries (absolute, normalised), in order.
    pub fn protect_paths(&self) -> &[String] {
        &self.protect
    }

    /// The effective mask entries (absolute, normalised), in order.
    pub fn mask_paths(&self) -> &[String] {
        &self.mask
    }

    fn entry_matches(&self, entry: &str, obj: &str) -> bool {
        if !obj.starts_with(entry) {
            return false;
        }
        if self.dirs.contains(entry) {
            // "/etc/foo" does not cover "/etc/foobaz".
            obj.len() == entry.len() || obj.as_bytes().get(entry.len()) == Some(&b'/')
        } else {
            // A non-directory entry only covers itself.
            obj.len() == entry.len()
        }
    }

    /// Whether the live path `obj` (absolute, including ROOT, normalised with
    /// a single leading `/`) is config-protected. This is the bare path rule;
    /// see [`ConfigProtect::protects_entry`] for what `mergeme` asks.
    pub fn is_protected(&self, obj: &str) -> bool {
        let lowered;
        let obj = if self.case_insensitive {
            lowered = obj.to_lowercase();
            lowered.as_str()
        } else {
            obj
        };
        let mut masked = 0usize;
        let mut protected = 0usize;
        for p in &self.protect {
            if p.chars().count() <= masked || !self.entry_matches(p, obj) {
                continue;
            }
            protected = p.chars().count();
            for m in &self.mask {
                if m.chars().count() >= protected && self.entry_matches(m, obj) {
                    masked = m.chars().count();
                }
            }
        }
        protected > masked
    }

    /// Whether an image entry about to be merged to `dest` is protected, as
    /// `mergeme` decides before calling `_protect`: only regular files and
    /// symlinks are protected, and never a zero-size regular file whose
    /// basename starts with `.keep`.
    pub fn protects_entry(&self, dest: &str, kind: EntryKind, size: u64) -> bool {
        match kind {
            EntryKind::Symlink => self.is_protected(dest),
            EntryKind::File => !is_keep_file(basename(dest), size) && self.is_protected(dest),
            EntryKind::Other => false,
        }
    }
}

/// The kind of an image entry, for [`ConfigProtect::protects_entry`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Symlink,
    /// Directory, FIFO, device: never protected.
    Other,
}

/// The `.keep` exception: a zero-size regular file whose basename starts
/// with `.keep` (`keepdir`'s `.keep_cat_pn-slot` markers) is never
/// protected.
pub fn is_keep_file(basename: &str, size: u64) -> bool {
    size == 0 && basename.starts_with(".keep")
}

// ---------------------------------------------------------------------------
// The _protect decision
// ---------------------------------------------------------------------------

/// The image entry being merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SrcObject<'a> {
    /// A regular file with this MD5 (lowercase hex).
    File { md5: &'a str },
    /// A symlink with this target.
    Symlink { target: &'a str },
}

/// What is at the destination now (`lstat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DestState<'a> {
    Missing,
    /// A regular file with this MD5 (from disk, or from CONTENTS under
    /// `FEATURES=merge-use-vdb` when the mtime matches).
    File {
        md5: &'a str,
    },
    /// A symlink with this target.
    Symlink {
        target: &'a str,
    },
    /// Something else (directory, FIFO, device): exists, has no MD5.
    Other,
}

/// The installed instance's CONTENTS entry for this path (Portage's
/// `_match_contents`, which also finds it through symlinked parents).
/// Values are compared as strings, as Portage does: pass the MD5 as the
/// CONTENTS line records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstalledEntry<'a> {
    Obj {
        md5: &'a str,
    },
    Sym {
        target: &'a str,
    },
    /// `dir`, `fif` or `dev`.
    Other,
}

/// Everything `dblink._protect` looks at, for one entry that
/// [`ConfigProtect::protects_entry`] said is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProtectInput<'a> {
    pub src: SrcObject<'a>,
    pub dest: DestState<'a>,
    /// `None` if there is no installed instance in the slot, or its CONTENTS
    /// do not have this path.
    pub installed: Option<InstalledEntry<'a>>,
    /// `FEATURES=config-protect-if-modified` **and** there is an installed
    /// instance in the slot (even if it does not own this path).
    pub protect_if_modified: bool,
    /// The first confmem value for this path ([`Confmem::get`]).
    pub remembered: Option<&'a str>,
    /// `--noconfmem` / `NOCONFMEM`, or the merge is a downgrade (Portage's
    /// `IGNORE` pseudo-key).
    pub ignore_confmem: bool,
}

/// A change to the confmem entry of the path being merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfmemUpdate {
    /// Set the entry to exactly this MD5.
    Remember(String),
    /// Delete the entry. Portage has a branch for this ("the remembered
    /// update has been accepted"), but it cannot be reached: it requires the
    /// live MD5 to equal the remembered one while the new MD5 equals the
    /// remembered one and differs from the live one. [`decide`] keeps the
    /// branch, so this is never produced; confmem entries are only dropped
    /// when the owning package is unmerged.
    Forget,
}

/// The name to merge a protected entry under; pass to
/// [`new_protect_filename`] / [`new_protect_filename_at`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CfgNameRequest {
    /// What an existing highest `._cfg` file must equal to be reused: its
    /// MD5, or its symlink target.
    pub reuse_key: String,
    /// Use a `._cfg` name even if the destination does not exist.
    pub force: bool,
}

/// What `mergeme` does with one protected entry (Portage's `_protect`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtectDecision {
    /// Still protected after all rules. `false` means merge over the
    /// destination normally (identical content, unmodified since install
    /// under `config-protect-if-modified`, or a confmem skip).
    pub protected: bool,
    /// Portage's `moveme`. `false`: confmem says this exact update was
    /// merged before and discarded by the admin, so nothing is merged (the
    /// `---` line). Always equal to `protected` in that case.
    pub moveme: bool,
    /// Portage's `force` for `new_protect_filename`.
    pub force: bool,
    /// The confmem change for this path, if any.
    pub confmem_update: Option<ConfmemUpdate>,
    /// `Some` exactly when `protected && moveme`: merge under the name
    /// [`new_protect_filename`] picks (which is the destination itself when
    /// it does not exist and `force` is off), treating the destination as
    /// absent.
    pub cfg_name: Option<CfgNameRequest>,
}

impl ProtectDecision {
    /// Apply [`ProtectDecision::confmem_update`] for `path` (the path as
    /// CONTENTS records it).
    pub fn apply_to(&self, confmem: &mut Confmem, path: &str) {
        match &self.confmem_update {
            Some(ConfmemUpdate::Remember(md5)) => confmem.remember(path, md5),
            Some(ConfmemUpdate::Forget) => {
                confmem.forget(path);
            }
            None => {}
        }
    }
}

/// Decide what to do with one config-protected entry, as `dblink._protect`.
///
/// The `._cfg` reuse key is `dest_link or src_md5`: when the live file is a
/// symlink, an existing `._cfg` file is reused if its target equals the
/// *live* symlink's target, not the new content. This looks like an upstream
/// slip, but etc-update users see its effect (an identical pending `._cfg`
/// symlink is not duplicated only in that case), so it is reproduced.
pub fn decide(input: &ProtectInput<'_>) -> ProtectDecision {
    let (src_md5, src_link) = match input.src {
        SrcObject::File { md5 } => (md5.to_owned(), None),
        SrcObject::Symlink { target } => (md5_hex(target.as_bytes()), Some(target)),
    };
    let (dest_exists, dest_md5, dest_link) = match input.dest {
        DestState::Missing => (false, None, None),
        DestState::File { md5 } => (true, Some(md5.to_owned()), None),
        DestState::Symlink { target } => (true, Some(md5_hex(target.as_bytes())), Some(target)),
        DestState::Other => (true, None, None),
    };

    let mut moveme = true;
    let mut protected = true;
    let mut force = false;
    let mut confmem_update = None;

    if let Some(entry) = input.installed {
        if !dest_exists {
            // Deleted or renamed by the admin: still offer the update as
            // ._cfg0000_name (bug 523684).
            force = true;
        } else if input.protect_if_modified {
            let unmodified = match entry {
                InstalledEntry::Obj { md5 } => dest_md5.as_deref() == Some(md5),
                InstalledEntry::Sym { target } => dest_link == Some(target),
                InstalledEntry::Other => false,
            };
            if unmodified {
                protected = false;
            }
        }
    }

    if protected && dest_exists {
        if dest_md5.as_deref() == Some(src_md5.as_str()) {
            protected = false;
        } else if input.remembered == Some(src_md5.as_str()) {
            moveme = input.ignore_confmem;
            protected = input.ignore_confmem;
        }
        if protected && (dest_link.is_some() || src_link.is_some()) && dest_link != src_link {
            force = true;
        }
        if moveme {
            confmem_update = Some(ConfmemUpdate::Remember(src_md5.clone()));
        } else if dest_md5.is_some() && dest_md5.as_deref() == input.remembered {
            // Unreachable, kept for fidelity; see ConfmemUpdate::Forget.
            confmem_update = Some(ConfmemUpdate::Forget);
        }
    }

    let cfg_name = (protected && moveme).then(|| CfgNameRequest {
        reuse_key: dest_link.map_or(src_md5, str::to_owned),
        force,
    });
    ProtectDecision {
        protected,
        moveme,
        force,
        confmem_update,
        cfg_name,
    }
}

// ---------------------------------------------------------------------------
// ._cfgNNNN_ names
// ---------------------------------------------------------------------------

/// What an existing `._cfg` candidate is, for the reuse check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CfgCandidate {
    /// Gone (or `lstat` failed).
    Missing,
    /// A symlink with this target (decoded lossily).
    Symlink(String),
    /// A file with this MD5 (following symlinks; Portage only gets here for
    /// non-symlinks).
    File(String),
    /// Exists but cannot be hashed (a directory, unreadable). Portage would
    /// raise here; we just do not reuse it.
    Unreadable,
}

/// The name [`new_protect_filename`] picked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtectName {
    /// Merge to the destination itself (it does not exist and no `force`).
    Dest,
    /// Merge to this name in the destination's directory.
    Cfg {
        name: Vec<u8>,
        /// It is the existing highest `._cfg` file, whose content equals the
        /// new content (it gets overwritten with the same data).
        reused: bool,
    },
}

/// Split `name` into Python string "characters": UTF-8 sequences, and each
/// byte of an invalid sequence on its own (as `surrogateescape` decoding
/// does). Returns the byte offset of each character and the total length.
fn py_char_offsets(name: &[u8]) -> Vec<usize> {
    let mut offs = Vec::with_capacity(name.len());
    let mut i = 0;
    while i < name.len() {
        offs.push(i);
        let rest = &name[i..];
        let len = match std::str::from_utf8(rest) {
            Ok(s) => s.chars().next().map_or(1, char::len_utf8),
            Err(e) if e.valid_up_to() > 0 => std::str::from_utf8(&rest[..e.valid_up_to()])
                .ok()
                .and_then(|s| s.chars().next())
                .map_or(1, char::len_utf8),
            Err(_) => 1,
        };
        i += len;
    }
    offs
}

/// Python's `name[a:b]` on a surrogateescape-decoded name.
fn py_slice_of<'n>(name: &'n [u8], offs: &[usize], a: usize, b: Option<usize>) -> &'n [u8] {
    let at = |k: usize| offs.get(k).copied().unwrap_or(name.len());
    let start = at(a);
    let end = b.map_or(name.len(), at).max(start);
    &name[start..end]
}

/// Python's `int(s)` for the 4-character number field of a `._cfg` name:
/// surrounding whitespace, an optional sign, digits with single `_`
/// separators. Only ASCII digits are accepted (Python would also take other
/// Unicode decimal digits).
fn py_int(field: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(field).ok()?;
    let s = s.trim_matches(py_is_space);
    let (neg, digits) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
    {
        return None;
    }
    let mut v: i64 = 0;
    for c in digits.chars() {
        if c == '_' {
            continue;
        }
        let d = c.to_digit(10)?;
        v = v * 10 + i64::from(d);
    }
    Some(if neg { -v } else { v })
}

/// Pick the name to merge a protected file under (Portage's
/// `new_protect_filename`), purely.
///
/// * `listing`: the names in the destination's directory, in directory
///   order (it only matters when two names carry the same number).
/// * `dest_basename`: the destination's name.
/// * `reuse_key`: [`CfgNameRequest::reuse_key`] (`None` disables reuse).
/// * `dest_exists`: whether the destination exists, **following** symlinks
///   (a dangling symlink counts as absent, as with `os.path.exists`).
/// * `probe(name)`: what the existing highest candidate is.
///
/// Rules: without `force`, a non-existent destination is used as is.
/// Otherwise the names `._cfgNNNN_<basename>` are scanned (characters 5–8
/// parsed like Python's `int()`, character 9 not checked), the highest
/// number N found, and `._cfg{N+1:04}_<basename>` returned, unless the
/// file with number N has the same content (`File(md5)` equal to the key,
/// or `Symlink(target)` equal to the key), in which case it is reused.
/// Past 9999 the new name has five digits, which the scan no longer
/// recognises, so every later update reuses or overwrites `._cfg10000_x`,
/// as in Portage.
pub fn new_protect_filename<'a>(
    listing: impl IntoIterator<Item = &'a [u8]>,
    dest_basename: &[u8],
    reuse_key: Option<&str>,
    force: bool,
    dest_exists: bool,
    mut probe: impl FnMut(&[u8]) -> CfgCandidate,
) -> ProtectName {
    if !force && !dest_exists {
        return ProtectName::Dest;
    }
    let mut prot_num: i64 = -1;
    let mut last: Option<&[u8]> = None;
    for name in listing {
        if !name.starts_with(b"._cfg") {
            continue;
        }
        let offs = py_char_offsets(name);
        if py_slice_of(name, &offs, 10, None) != dest_basename {
            continue;
        }
        if let Some(n) = py_int(py_slice_of(name, &offs, 5, Some(9))) {
            if n > prot_num {
                prot_num = n;
                last = Some(name);
            }
        }
    }
    if let (Some(last), Some(key)) = (last, reuse_key.filter(|k| !k.is_empty())) {
        let same = match probe(last) {
            CfgCandidate::Symlink(target) => target == key,
            CfgCandidate::File(md5) => md5 == key,
            CfgCandidate::Missing | CfgCandidate::Unreadable => false,
        };
        if same {
            return ProtectName::Cfg {
                name: last.to_vec(),
                reused: true,
            };
        }
    }
    let mut name = format!("._cfg{:04}_", prot_num + 1).into_bytes();
    name.extend_from_slice(dest_basename);
    ProtectName::Cfg {
        name,
        reused: false,
    }
}

/// [`new_protect_filename`] on the real directory of `dest`; returns the
/// path to merge to (possibly `dest` itself).
pub fn new_protect_filename_at(
    dest: &Path,
    reuse_key: Option<&str>,
    force: bool,
) -> Result<PathBuf, ProtectIoError> {
    use std::os::unix::ffi::OsStrExt;
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let base = dest.file_name().map(OsStrExt::as_bytes).unwrap_or_default();
    let dest_exists = dest.exists();
    if !force && !dest_exists {
        return Ok(dest.to_path_buf());
    }
    let mut names: Vec<Vec<u8>> = Vec::new();
    let rd = std::fs::read_dir(dir).map_err(|e| ProtectIoError::new("list", dir, e))?;
    for entry in rd {
        let entry = entry.map_err(|e| ProtectIoError::new("list", dir, e))?;
        names.push(entry.file_name().as_bytes().to_vec());
    }
    let picked = new_protect_filename(
        names.iter().map(Vec::as_slice),
        base,
        reuse_key,
        force,
        dest_exists,
        |name| probe_candidate(&dir.join(std::ffi::OsStr::from_bytes(name))),
    );
    Ok(match picked {
        ProtectName::Dest => dest.to_path_buf(),
        ProtectName::Cfg { name, .. } => dir.join(std::ffi::OsStr::from_bytes(&name)),
    })
}

fn probe_candidate(path: &Path) -> CfgCandidate {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return CfgCandidate::Missing;
    };
    if meta.file_type().is_symlink() {
        use std::os::unix::ffi::OsStrExt;
        return match std::fs::read_link(path) {
            Ok(t) => CfgCandidate::Symlink(
                String::from_utf8_lossy(t.as_os_str().as_bytes()).into_owned(),
            ),
            Err(_) => CfgCandidate::Missing,
        };
    }
    match vdb::digest::md5_hex_file(path) {
        Ok(m) => CfgCandidate::File(m),
        Err(e) if e.kind() == io::ErrorKind::NotFound => CfgCandidate::Missing,
        Err(_) => CfgCandidate::Unreadable,
    }
}

// ---------------------------------------------------------------------------
// confmem
// ---------------------------------------------------------------------------

/// An entry [`Confmem::serialize`] left out because the file format cannot
/// carry it (whitespace or a leading `#` in the key or a value, or no
/// value): Portage would write a line that reads back as something else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfmemSkip {
    pub key: String,
    pub values: Vec<String>,
}

/// The config memory: path → remembered MD5 of the last protected update
/// merged there (§4.4).
///
/// Parsing is Portage's `grabdict`: the file is decoded as UTF-8 with
/// invalid bytes replaced by U+FFFD; lines end at `\n`, `\r\n` or `\r`; a
/// line starting with `#` is skipped; a line is split on (Unicode)
/// whitespace and everything from the first word starting with `#` is
/// dropped; lines with fewer than two words are skipped; a repeated key
/// **appends** its values to the first occurrence (and keeps its position).
///
/// Writing is `writedict`: one `"<key> <values joined by ' '>\n"` line per
/// entry, in insertion order (file order, new keys at the end), no header,
/// no sorting. Entries the format cannot represent are skipped and returned
/// so the caller can warn (Portage writes them and later misreads them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Confmem {
    entries: Vec<Option<(String, Vec<String>)>>,
    index: HashMap<String, usize>,
    modified: bool,
}

impl Confmem {
    /// An empty memory.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parse the file's bytes.
    pub fn parse(bytes: &[u8]) -> Self {
        let text = String::from_utf8_lossy(bytes);
        let mut cm = Confmem::new();
        let normalized = text.replace("\r\n", "\n").replace('\r', "\n");
        for line in normalized.split_inclusive('\n') {
            if line.starts_with('#') {
                continue;
            }
            let words: Vec<&str> = line
                .split(py_is_space)
                .filter(|w| !w.is_empty())
                .take_while(|w| !w.starts_with('#'))
                .collect();
            if words.len() < 2 {
                continue;
            }
            let key = words[0];
            let vals = words[1..].iter().map(|s| (*s).to_owned());
            match cm.index.get(key) {
                Some(&i) => {
                    if let Some((_, v)) = cm.entries[i].as_mut() {
                        v.extend(vals);
                    }
                }
                None => {
                    cm.index.insert(key.to_owned(), cm.entries.len());
                    cm.entries.push(Some((key.to_owned(), vals.collect())));
                }
            }
        }
        cm
    }

    /// The first remembered value for `path` (what `_protect` compares).
    pub fn get(&self, path: &str) -> Option<&str> {
        self.values(path)
            .and_then(|v| v.first())
            .map(String::as_str)
    }

    /// All values for `path` (more than one only if the file repeated the key).
    pub fn values(&self, path: &str) -> Option<&[String]> {
        let i = *self.index.get(path)?;
        self.entries[i].as_ref().map(|(_, v)| v.as_slice())
    }

    /// Remember `md5` for `path` (replacing any values).
    pub fn remember(&mut self, path: &str, md5: &str) {
        let vals = vec![md5.to_owned()];
        match self.index.get(path) {
            Some(&i) => {
                if let Some((_, v)) = self.entries[i].as_mut() {
                    if *v != vals {
                        *v = vals;
                        self.modified = true;
                    }
                }
            }
            None => {
                self.index.insert(path.to_owned(), self.entries.len());
                self.entries.push(Some((path.to_owned(), vals)));
                self.modified = true;
            }
        }
    }

    /// Forget `path`; returns whether it was there.
    pub fn forget(&mut self, path: &str) -> bool {
        match self.index.remove(path) {
            Some(i) => {
                self.entries[i] = None;
                self.modified = true;
                true
            }
            None => false,
        }
    }

    /// Whether [`Confmem::remember`]/[`Confmem::forget`] changed anything
    /// since parsing (Portage rewrites the file only then).
    pub fn is_modified(&self) -> bool {
        self.modified
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// No entries.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Entries in file order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.entries
            .iter()
            .flatten()
            .map(|(k, v)| (k.as_str(), v.as_slice()))
    }

    /// The file content, and the entries left out.
    pub fn serialize(&self) -> (Vec<u8>, Vec<ConfmemSkip>) {
        let mut out = String::new();
        let mut skipped = Vec::new();
        let bad = |s: &str| s.is_empty() || s.starts_with('#') || s.chars().any(py_is_space);
        for (k, v) in self.iter() {
            if bad(k) || v.is_empty() || v.iter().any(|x| bad(x)) {
                skipped.push(ConfmemSkip {
                    key: k.to_owned(),
                    values: v.to_vec(),
                });
                continue;
            }
            out.push_str(k);
            out.push(' ');
            out.push_str(&v.join(" "));
            out.push('\n');
        }
        (out.into_bytes(), skipped)
    }

    /// Read `EROOT/var/lib/portage/config` (resolved inside ROOT); a
    /// missing file is empty.
    pub fn load(state: &vdb::state::StatePaths) -> Result<Self, ProtectIoError> {
        let path = state_path(state)?;
        match std::fs::read(&path) {
            Ok(b) => Ok(Self::parse(&b)),
            Err(e) if matches!(e.kind(), io::ErrorKind::NotFound) => Ok(Self::new()),
            Err(e) => Err(ProtectIoError::new("read", path, e)),
        }
    }

    /// Atomically write `EROOT/var/lib/portage/config` (resolved inside
    /// ROOT; the directory must exist). Returns the entries that were left
    /// out.
    pub fn store(
        &self,
        state: &vdb::state::StatePaths,
    ) -> Result<Vec<ConfmemSkip>, ProtectIoError> {
        let path = state_path(state)?;
        let (data, skipped) = self.serialize();
        rootfs::atomic::write_atomic(&path, &data, rootfs::atomic::Durability::Deferred)
            .map_err(|e| ProtectIoError::new("write", &path, e.source))?;
        Ok(skipped)
    }
}

/// The config memory file, resolved inside ROOT (its last component not
/// followed).
fn state_path(state: &vdb::state::StatePaths) -> Result<std::path::PathBuf, ProtectIoError> {
    state.entry(CONFMEM_PATH).map_err(|e| {
        ProtectIoError::new(
            "resolve inside ROOT",
            state.lexical(CONFMEM_PATH),
            io::Error::other(e.to_string()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A fake filesystem: path → (lstat is dir, stat is dir); absent = missing.
    struct FakeFs(HashMap<&'static str, (Option<bool>, Option<bool>)>);

    impl PathProbe for FakeFs {
        fn stat_is_dir(&self, path: &str) -> Option<bool> {
            self.0.get(path).and_then(|e| e.1)
        }
        fn lstat_is_dir(&self, path: &str) -> Option<bool> {
            self.0.get(path).and_then(|e| e.0)
        }
    }

    fn fake() -> FakeFs {
        FakeFs(HashMap::from([
            ("/", (Some(true), Some(true))),
            ("/r", (Some(true), Some(true))),
            ("/r/etc", (Some(true), Some(true))),
            ("/r/etc/env.d", (Some(true), Some(true))),
            ("/r/etc/foo", (Some(true), Some(true))),
            ("/r/etc/foo/bar", (Some(false), Some(false))),
            ("/r/etc/file.conf", (Some(false), Some(false))),
            ("/r/etc/link", (Some(false), Some(true))),
            ("/r/etc/dangling", (Some(false), None)),
        ]))
    }

    fn cp(protect: &[&str], mask: &[&str]) -> ConfigProtect {
        ConfigProtect::with_probe("/r/", protect, mask, false, &fake())
    }

    #[test]
    fn paths() {
        assert_eq!(normpath(""), ".");
        assert_eq!(normpath("//a//b/./c/.."), "//a/b");
        assert_eq!(normpath("///a"), "/a");
        assert_eq!(normpath("a/../.."), "..");
        assert_eq!(normpath("/.."), "/");
        assert_eq!(normalize_path("//etc/"), "/etc");
        assert_eq!(normalize_path("etc/"), "etc");
        assert_eq!(join_under("/r/", "/etc"), "/r/etc");
        assert_eq!(join_under("/r", "//etc"), "/r/etc");
        assert_eq!(join_under("", "/etc"), "etc");
        assert_eq!(dirname("/a/b"), "/a");
        assert_eq!(dirname("/a"), "/");
        assert_eq!(dirname("//a"), "//");
        assert_eq!(dirname("a"), "");
        assert_eq!(dirname("/a/b/"), "/a/b");
        assert_eq!(basename("/a/b"), "b");
        assert_eq!(basename("b"), "b");
    }

    #[test]
    fn protect_basics() {
        let c = cp(&["/etc"], &["/etc/env.d"]);
        assert!(c.is_protected("/r/etc/foo/bar"));
        assert!(c.is_protected("/r/etc"));
        assert!(!c.is_protected("/r/etcx"));
        assert!(!c.is_protected("/r/etc/env.d/00basic"));
        assert!(!c.is_protected("/r/usr/etc"));
        assert!(!c.is_protected("/etc/x"), "entries are joined to EROOT");
    }

    #[test]
    fn protect_non_dir_entries_are_exact() {
        let c = cp(&["/etc/file.conf", "/etc/missing.conf", "/nodir/x"], &[]);
        assert!(c.is_protected("/r/etc/file.conf"));
        assert!(!c.is_protected("/r/etc/file.confx"));
        assert!(
            c.is_protected("/r/etc/missing.conf"),
            "parent exists: kept (bug 523684)"
        );
        assert!(!c.is_protected("/r/nodir/x"), "parent missing: dropped");
        assert_eq!(
            c.protect_paths(),
            ["/r/etc/file.conf", "/r/etc/missing.conf"]
        );
    }

    #[test]
    fn protect_symlinked_dir_entry() {
        let c = cp(&["/etc/link"], &[]);
        assert!(c.is_protected("/r/etc/link/x"), "stat follows the symlink");
    }

    #[test]
    fn mask_rules() {
        // Equal length cancels.
        let c = cp(&["/etc/foo"], &["/etc/foo"]);
        assert!(!c.is_protected("/r/etc/foo/bar"));
        // A longer protect entry beats a shorter mask.
        let c = cp(&["/etc", "/etc/env.d"], &["/etc/env.d"]);
        assert!(!c.is_protected("/r/etc/env.d/x"));
        let c = cp(&["/etc", "/etc/foo/bar"], &["/etc/foo"]);
        assert!(c.is_protected("/r/etc/foo/bar"));
        assert!(!c.is_protected("/r/etc/foo/other"));
        // Missing mask entries are dropped; dangling symlinks are kept.
        let c = cp(&["/etc"], &["/etc/nope", "/etc/dangling"]);
        assert_eq!(c.mask_paths(), ["/r/etc/dangling"]);
        assert!(!c.is_protected("/r/etc/dangling"));
        assert!(c.is_protected("/r/etc/danglingx"));
    }

    #[test]
    fn protect_order_matters_like_portage() {
        // Portage assigns `protected = len(entry)` for every later match,
        // even a shorter one; with this order the short /etc entry, cancelled
        // by the /etc/foo mask, has the last word.
        let c = cp(&["/etc/foo/bar", "/etc"], &["/etc/foo"]);
        assert!(!c.is_protected("/r/etc/foo/bar"));
        let c = cp(&["/etc", "/etc/foo/bar"], &["/etc/foo"]);
        assert!(c.is_protected("/r/etc/foo/bar"));
    }

    #[test]
    fn root_entry_quirk() {
        // EROOT "/" and CONFIG_PROTECT="/": the entry "/" only covers "/"
        // itself, because "/" + "/" is not a prefix of "/etc".
        let c = ConfigProtect::with_probe("/", &["/"], &[], false, &fake());
        assert!(!c.is_protected("/etc/x"));
        assert!(c.is_protected("/"));
    }

    #[test]
    fn case_insensitive() {
        let fs = FakeFs(HashMap::from([
            ("/r", (Some(true), Some(true))),
            ("/r/etc", (Some(true), Some(true))),
            ("/r/etc/skip", (Some(true), Some(true))),
        ]));
        let c = ConfigProtect::with_probe("/r", &["/etc", "/ETC2"], &["/etc/SKIP"], true, &fs);
        assert!(c.is_protected("/R/ETC/x"));
        assert!(
            !c.is_protected("/r/etc/Skip/x"),
            "mask lowercased before probing"
        );
        assert!(
            !c.is_protected("/r/etc2/x"),
            "protect entries are not lowercased"
        );
    }

    #[test]
    fn keep_files() {
        let c = cp(&["/etc"], &[]);
        assert!(!c.protects_entry("/r/etc/foo/.keep_app-misc_x-0", EntryKind::File, 0));
        assert!(c.protects_entry("/r/etc/foo/.keep_app-misc_x-0", EntryKind::File, 1));
        assert!(c.protects_entry("/r/etc/foo/.keep", EntryKind::Symlink, 0));
        assert!(!c.protects_entry("/r/etc/foo", EntryKind::Other, 0));
        assert!(c.protects_entry("/r/etc/foo/a.keep", EntryKind::File, 0));
    }

    const NEW: &str = "0123456789abcdef0123456789abcdef";
    const LIVE: &str = "ffffffffffffffffffffffffffffffff";
    const OLD: &str = "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee";

    fn input<'a>(dest: DestState<'a>, installed: Option<InstalledEntry<'a>>) -> ProtectInput<'a> {
        ProtectInput {
            src: SrcObject::File { md5: NEW },
            dest,
            installed,
            protect_if_modified: installed.is_some(),
            remembered: None,
            ignore_confmem: false,
        }
    }

    #[test]
    fn decide_modified_file_gets_cfg_name() {
        let d = decide(&input(
            DestState::File { md5: LIVE },
            Some(InstalledEntry::Obj { md5: OLD }),
        ));
        assert!(d.protected && d.moveme && !d.force);
        assert_eq!(d.confmem_update, Some(ConfmemUpdate::Remember(NEW.into())));
        assert_eq!(
            d.cfg_name,
            Some(CfgNameRequest {
                reuse_key: NEW.into(),
                force: false
            })
        );
    }

    #[test]
    fn decide_unmodified_file_is_replaced() {
        let d = decide(&input(
            DestState::File { md5: OLD },
            Some(InstalledEntry::Obj { md5: OLD }),
        ));
        assert!(!d.protected && d.moveme);
        assert_eq!(d.confmem_update, None);
        assert_eq!(d.cfg_name, None);
        // ...unless config-protect-if-modified is off.
        let mut i = input(
            DestState::File { md5: OLD },
            Some(InstalledEntry::Obj { md5: OLD }),
        );
        i.protect_if_modified = false;
        assert!(decide(&i).protected);
    }

    #[test]
    fn decide_deleted_by_admin_forces_cfg() {
        let d = decide(&input(
            DestState::Missing,
            Some(InstalledEntry::Obj { md5: OLD }),
        ));
        assert!(d.protected && d.moveme && d.force);
        assert_eq!(d.confmem_update, None);
        assert_eq!(d.cfg_name.map(|c| c.force), Some(true));
    }

    #[test]
    fn decide_new_file_goes_to_dest() {
        let d = decide(&input(DestState::Missing, None));
        assert!(d.protected && d.moveme && !d.force);
        let name = new_protect_filename(
            [b"._cfg0000_x".as_slice()],
            b"x",
            Some(NEW),
            d.force,
            false,
            |_| CfgCandidate::Missing,
        );
        assert_eq!(name, ProtectName::Dest);
    }

    #[test]
    fn decide_identical_is_not_protected_but_remembered() {
        let d = decide(&input(DestState::File { md5: NEW }, None));
        assert!(!d.protected && d.moveme);
        assert_eq!(d.confmem_update, Some(ConfmemUpdate::Remember(NEW.into())));
    }

    #[test]
    fn decide_confmem_skip_and_noconfmem() {
        let mut i = input(
            DestState::File { md5: LIVE },
            Some(InstalledEntry::Obj { md5: OLD }),
        );
        i.remembered = Some(NEW);
        let d = decide(&i);
        assert!(!d.protected && !d.moveme);
        assert_eq!(d.confmem_update, None);
        assert_eq!(d.cfg_name, None);
        i.ignore_confmem = true;
        let d = decide(&i);
        assert!(d.protected && d.moveme);
        assert_eq!(d.confmem_update, Some(ConfmemUpdate::Remember(NEW.into())));
    }

    #[test]
    fn decide_symlinks() {
        // File over symlink: forced, and the reuse key is the LIVE link target.
        let d = decide(&input(
            DestState::Symlink {
                target: "live-target",
            },
            None,
        ));
        assert!(d.protected && d.force);
        assert_eq!(d.cfg_name.unwrap().reuse_key, "live-target");
        // Symlink over the same symlink: identical.
        let i = ProtectInput {
            src: SrcObject::Symlink { target: "t" },
            ..input(DestState::Symlink { target: "t" }, None)
        };
        let d = decide(&i);
        assert!(!d.protected);
        assert_eq!(
            d.confmem_update,
            Some(ConfmemUpdate::Remember(md5_hex(b"t")))
        );
        // Symlink over a file: forced; key is the new target's md5.
        let i = ProtectInput {
            src: SrcObject::Symlink { target: "t" },
            ..input(DestState::File { md5: LIVE }, None)
        };
        let d = decide(&i);
        assert!(d.protected && d.force);
        assert_eq!(d.cfg_name.unwrap().reuse_key, md5_hex(b"t"));
        // An unmodified installed symlink is replaced.
        let i = ProtectInput {
            src: SrcObject::Symlink { target: "new" },
            ..input(
                DestState::Symlink { target: "old" },
                Some(InstalledEntry::Sym { target: "old" }),
            )
        };
        assert!(!decide(&i).protected);
    }

    #[test]
    fn decide_dest_directory() {
        let d = decide(&input(DestState::Other, None));
        assert!(d.protected && !d.force);
        assert_eq!(d.confmem_update, Some(ConfmemUpdate::Remember(NEW.into())));
    }

    #[test]
    fn cfg_names_pure() {
        let listing: Vec<&[u8]> = vec![
            b"x",
            b"._cfg0000_x",
            b"._cfg0003_x",
            b"._cfg0001_x",
            b"._cfg0009_y",
            b"._cfgzzzz_x",
        ];
        let pick = |key: Option<&str>, cand: CfgCandidate| {
            new_protect_filename(listing.iter().copied(), b"x", key, false, true, |n| {
                assert_eq!(n, b"._cfg0003_x");
                cand.clone()
            })
        };
        let fresh = ProtectName::Cfg {
            name: b"._cfg0004_x".to_vec(),
            reused: false,
        };
        assert_eq!(pick(None, CfgCandidate::File(NEW.into())), fresh);
        assert_eq!(pick(Some(NEW), CfgCandidate::File(LIVE.into())), fresh);
        assert_eq!(pick(Some(NEW), CfgCandidate::Unreadable), fresh);
        assert_eq!(
            pick(Some(NEW), CfgCandidate::File(NEW.into())),
            ProtectName::Cfg {
                name: b"._cfg0003_x".to_vec(),
                reused: true
            }
        );
        assert_eq!(
            pick(Some("t"), CfgCandidate::Symlink("t".into())),
            ProtectName::Cfg {
                name: b"._cfg0003_x".to_vec(),
                reused: true
            }
        );
        let first = new_protect_filename([], b"x", None, true, false, |_| CfgCandidate::Missing);
        assert_eq!(
            first,
            ProtectName::Cfg {
                name: b"._cfg0000_x".to_vec(),
                reused: false
            }
        );
    }

    #[test]
    fn cfg_names_python_int_quirks() {
        let one = |name: &[u8]| {
            new_protect_filename([name], b"x", None, true, true, |_| CfgCandidate::Missing)
        };
        let next = |n: &str| ProtectName::Cfg {
            name: format!("._cfg{n}_x").into_bytes(),
            reused: false,
        };
        assert_eq!(one(b"._cfg 012_x"), next("0013"));
        assert_eq!(one(b"._cfg+012_x"), next("0013"));
        assert_eq!(
            one(b"._cfg1_23Xx"),
            next("0124"),
            "char 9 is not checked; _ separates digits"
        );
        assert_eq!(one(b"._cfg-001_x"), next("0000"));
        assert_eq!(one(b"._cfg1__2_x"), next("0000"));
        assert_eq!(one(b"._cfg9999_x"), next("10000"));
        assert_eq!(
            one(b"._cfg10000_x"),
            next("0000"),
            "five digits are not recognised"
        );
        // Non-UTF-8 bytes count as one character each.
        assert_eq!(one(b"._cfg00\xff1_x"), next("0000"));
        assert_eq!(
            new_protect_filename(
                [b"._cfg0005_\xe9".as_slice()],
                b"\xe9",
                None,
                true,
                true,
                |_| { CfgCandidate::Missing }
            ),
            ProtectName::Cfg {
                name: b"._cfg0006_\xe9".to_vec(),
                reused: false
            }
        );
        assert_eq!(
            new_protect_filename(
                ["._cfg0005_\u{e9}".as_bytes()],
                "\u{e9}".as_bytes(),
                None,
                true,
                true,
                |_| { CfgCandidate::Missing }
            ),
            ProtectName::Cfg {
                name: "._cfg0006_\u{e9}".as_bytes().to_vec(),
                reused: false
            }
        );
    }

    #[test]
    fn confmem_format() {
        let text = b"# comment\n/etc/a.conf d6366d85da4b7507763c1e88b24beceb\n\n/etc/b x #tail\n/etc/a.conf second\nlonely\n/etc/c\tv\r\n";
        let mut cm = Confmem::parse(text);
        assert_eq!(
            cm.get("/etc/a.conf"),
            Some("d6366d85da4b7507763c1e88b24beceb")
        );
        assert_eq!(
            cm.values("/etc/a.conf").unwrap(),
            ["d6366d85da4b7507763c1e88b24beceb", "second"]
        );
        assert_eq!(cm.get("/etc/b"), Some("x"));
        assert_eq!(cm.get("lonely"), None);
        assert_eq!(cm.get("/etc/c"), Some("v"));
        assert!(!cm.is_modified());
        cm.remember("/etc/b", "x");
        assert!(!cm.is_modified(), "same single value: no change");
        let (out, skipped) = cm.serialize();
        assert!(skipped.is_empty());
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "/etc/a.conf d6366d85da4b7507763c1e88b24beceb second\n/etc/b x\n/etc/c v\n"
        );
        cm.remember("/etc/a.conf", "d6366d85da4b7507763c1e88b24beceb");
        assert!(cm.is_modified(), "two values collapse to one");
        cm.remember("/etc/new file", NEW);
        cm.forget("/etc/a.conf");
        cm.remember("/etc/a.conf", NEW);
        let (out, skipped) = cm.serialize();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("/etc/b x\n/etc/c v\n/etc/a.conf {NEW}\n")
        );
        assert_eq!(skipped.len(), 1);
        assert_eq!(skipped[0].key, "/etc/new file");
    }

    #[test]
    fn confmem_modified_tracking() {
        let mut cm = Confmem::parse(b"/etc/a x\n");
        cm.remember("/etc/a", "x");
        assert!(!cm.is_modified());
        assert!(!cm.forget("/etc/nope"));
        assert!(!cm.is_modified());
        cm.remember("/etc/a", "y");
        assert!(cm.is_modified());
    }

    #[test]
    fn confmem_files() {
        let dir = tempfile::tempdir().unwrap();
        let state = vdb::state::StatePaths::new(dir.path(), "");
        let cm = Confmem::load(&state).unwrap();
        assert!(cm.is_empty());
        std::fs::create_dir_all(dir.path().join("var/lib/portage")).unwrap();
        let mut cm = Confmem::new();
        cm.remember("/etc/x", NEW);
        assert!(cm.store(&state).unwrap().is_empty());
        let back = Confmem::load(&state).unwrap();
        assert_eq!(back.get("/etc/x"), Some(NEW));
        assert_eq!(back.len(), 1);
        let err = Confmem::new()
            .store(&vdb::state::StatePaths::new(dir.path().join("missing"), ""))
            .unwrap_err();
        assert!(err.path.ends_with("var/lib/portage/config"), "{err}");
    }

    #[test]
    fn cfg_name_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("x.conf");
        assert_eq!(
            new_protect_filename_at(&dest, Some(NEW), false).unwrap(),
            dest
        );
        std::fs::write(&dest, "live").unwrap();
        let n0 = new_protect_filename_at(&dest, Some(&md5_hex(b"new")), false).unwrap();
        assert_eq!(n0, dir.path().join("._cfg0000_x.conf"));
        std::fs::write(&n0, "new").unwrap();
        assert_eq!(
            new_protect_filename_at(&dest, Some(&md5_hex(b"new")), false).unwrap(),
            n0
        );
        assert_eq!(
            new_protect_filename_at(&dest, Some(&md5_hex(b"newer")), false).unwrap(),
            dir.path().join("._cfg0001_x.conf")
        );
        // A directory as the highest candidate is not reused (Portage raises).
        std::fs::create_dir(dir.path().join("._cfg0005_x.conf")).unwrap();
        assert_eq!(
            new_protect_filename_at(&dest, Some(NEW), false).unwrap(),
            dir.path().join("._cfg0006_x.conf")
        );
        let err = new_protect_filename_at(&dir.path().join("nodir/x"), None, true).unwrap_err();
        assert_eq!(err.op, "list");
    }
}

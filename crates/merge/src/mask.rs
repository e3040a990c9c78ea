//! Path pattern matching for `INSTALL_MASK`, `COLLISION_IGNORE` and
//! `UNINSTALL_IGNORE` (reference: portage-semantics.md §3.2 step 7, §5.2,
//! §3.9 point 3).
//!
//! Everything here is pure except the two constructors that ask whether an
//! entry names an existing directory ([`CollisionIgnore::new`] takes that as a
//! callback, [`CollisionIgnore::from_fs`] asks the filesystem).
//!
//! The glob dialect is Python's `fnmatch` as Portage uses it: `*` and `?`
//! match any character including `/`, `[...]`/`[!...]` are character
//! classes, an unterminated `[` is a literal, and there is no way to quote a
//! metacharacter. [`Glob`] reproduces Python 3.11's `fnmatch.translate`
//! rules, including its handling of `-` inside classes and of reversed
//! ranges (`[z-a]` matches nothing).

use std::collections::HashMap;

use crate::protect::{join_under, normalize_path};

/// Where `FEATURES=packdebug` keeps its debug-info tarballs (EROOT-relative).
pub const PACKDEBUG_PATH: &str = "/usr/lib/debug/.tarball";

/// Libdir symlinks that unmerge never removes (Portage bug 423127).
pub const PROTECTED_LIBDIR_SYMLINKS: [&str; 3] = ["/lib", "/usr/lib", "/usr/local/lib"];

// ---------------------------------------------------------------------------
// fnmatch
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Lit(char),
    /// `?`, or a negated empty class such as `[!z-a]`.
    Any,
    /// A class that can never match (`[z-a]`).
    Never,
    Class(Class),
    Star,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Class {
    negated: bool,
    singles: Vec<char>,
    ranges: Vec<(char, char)>,
}

impl Class {
    fn matches(&self, c: char) -> bool {
        let hit =
            self.singles.contains(&c) || self.ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi);
        hit != self.negated
    }
}

/// A compiled shell pattern with Python `fnmatch.fnmatchcase` semantics
/// (POSIX `fnmatch` is case-sensitive, so this is also `fnmatch.fnmatch`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    pattern: String,
    toks: Vec<Tok>,
}

impl Glob {
    /// Compile `pattern`. Never fails: every string is a valid pattern.
    pub fn new(pattern: &str) -> Glob {
        let p: Vec<char> = pattern.chars().collect();
        let n = p.len();
        let mut toks = Vec::new();
        let mut i = 0;
        while i < n {
            let c = p[i];
            i += 1;
            match c {
                '*' => {
                    if toks.last() != Some(&Tok::Star) {
                        toks.push(Tok::Star);
                    }
                }
                '?' => toks.push(Tok::Any),
                '[' => {
                    let mut j = i;
                    if j < n && p[j] == '!' {
                        j += 1;
                    }
                    if j < n && p[j] == ']' {
                        j += 1;
                    }
                    while j < n && p[j] != ']' {
                        j += 1;
                    }
                    if j >= n {
                        toks.push(Tok::Lit('['));
                    } else {
                        toks.push(class_token(&p[i..j]));
                        i = j + 1;
                    }
                }
                _ => toks.push(Tok::Lit(c)),
            }
        }
        Glob {
            pattern: pattern.to_owned(),
            toks,
        }
    }

    /// The pattern as given.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// Whether the whole of `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        let s: Vec<char> = name.chars().collect();
        glob_match(&self.toks, &s)
    }
}

/// Python `fnmatch.fnmatch(name, pattern)` on POSIX.
pub fn fnmatch(name: &str, pattern: &str) -> bool {
    Glob::new(pattern).matches(name)
}

/// Build the token for the class body `stuff` (the characters between `[`
/// and the closing `]`), following `fnmatch.translate` and then the way
/// Python's regex parser reads the class it produces.
fn class_token(stuff: &[char]) -> Tok {
    // Chunks separated by range hyphens, each chunk's characters literal.
    let mut chunks: Vec<Vec<char>> = Vec::new();
    if !stuff.contains(&'-') {
        chunks.push(stuff.to_vec());
    } else {
        let mut start = 0usize;
        let mut k = if stuff.first() == Some(&'!') { 2 } else { 1 };
        loop {
            let found = stuff
                .get(k..)
                .and_then(|rest| rest.iter().position(|&c| c == '-'))
                .map(|off| k + off);
            let Some(dash) = found else { break };
            chunks.push(stuff[start..dash].to_vec());
            start = dash + 1;
            k = dash + 3;
        }
        let tail = stuff.get(start..).unwrap_or(&[]).to_vec();
        if !tail.is_empty() {
            chunks.push(tail);
        } else if let Some(last) = chunks.last_mut() {
            last.push('-');
        } else {
            chunks.push(vec!['-']);
        }
        // Drop reversed ranges, as translate() does: "[z-a]" and friends.
        let mut k = chunks.len();
        while k > 1 {
            k -= 1;
            let (Some(&a), Some(&b)) = (chunks[k - 1].last(), chunks[k].first()) else {
                continue;
            };
            if a > b {
                let mut merged = chunks[k - 1][..chunks[k - 1].len() - 1].to_vec();
                merged.extend_from_slice(&chunks[k][1..]);
                chunks[k - 1] = merged;
                chunks.remove(k);
            }
        }
    }
    // Flatten into (char, is_range_separator).
    let mut items: Vec<(char, bool)> = Vec::new();
    for (idx, chunk) in chunks.iter().enumerate() {
        if idx > 0 {
            items.push(('-', true));
        }
        items.extend(chunk.iter().map(|&c| (c, false)));
    }
    if items.is_empty() {
        return Tok::Never;
    }
    let negated = items[0] == ('!', false);
    if negated {
        items.remove(0);
        if items.is_empty() {
            return Tok::Any;
        }
    }
    let mut class = Class {
        negated,
        singles: Vec::new(),
        ranges: Vec::new(),
    };
    let mut i = 0;
    while i < items.len() {
        let this = items[i].0;
        i += 1;
        if i < items.len() && items[i].1 {
            if i + 1 >= items.len() {
                class.singles.push(this);
                class.singles.push('-');
                break;
            }
            let hi = items[i + 1].0;
            if hi < this {
                // Python's regex compiler would reject this; translate()
                // never produces it, but stay total.
                return Tok::Never;
            }
            class.ranges.push((this, hi));
            i += 2;
        } else {
            class.singles.push(this);
        }
    }
    Tok::Class(class)
}

fn tok_matches(t: &Tok, c: char) -> bool {
    match t {
        Tok::Lit(l) => *l == c,
        Tok::Any => true,
        Tok::Never => false,
        Tok::Class(cl) => cl.matches(c),
        Tok::Star => true,
    }
}

/// Classic iterative glob matching with single-star backtracking; every
/// non-star token consumes exactly one character, so this equals the regex
/// Python builds.
fn glob_match(toks: &[Tok], s: &[char]) -> bool {
    let (mut ti, mut si) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if ti < toks.len() {
            if toks[ti] == Tok::Star {
                star = Some((ti, si));
                ti += 1;
                continue;
            }
            if tok_matches(&toks[ti], s[si]) {
                ti += 1;
                si += 1;
                continue;
            }
        }
        match star {
            Some((st, ss)) => {
                ti = st + 1;
                si = ss + 1;
                star = Some((st, ss + 1));
            }
            None => return false,
        }
    }
    toks[ti..].iter().all(|t| *t == Tok::Star)
}

// ---------------------------------------------------------------------------
// shlex.split
// ---------------------------------------------------------------------------

/// Why [`shlex_split`] gave up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShlexError {
    #[error("no closing quotation")]
    NoClosingQuotation,
    #[error("no escaped character (a backslash at the end)")]
    NoEscapedCharacter,
}

/// Python's `shlex.split(s)` (POSIX mode, no comments), which Portage applies
/// to `COLLISION_IGNORE` and `UNINSTALL_IGNORE`: words split on space, tab,
/// CR and LF; `'…'` literal; `"…"` with `\"` and `\\` escapes (other
/// backslashes kept); a backslash outside quotes escapes the next character.
/// `''` yields an empty word.
pub fn shlex_split(s: &str) -> Result<Vec<String>, ShlexError> {
    #[derive(Clone, Copy, PartialEq)]
    enum St {
        Ws,
        Word,
        Quote(char),
        Escape,
    }
    let mut out = Vec::new();
    let mut tok = String::new();
    let mut quoted = false;
    let mut state = St::Ws;
    let mut escaped_from = St::Word;
    let is_ws = |c: char| matches!(c, ' ' | '\t' | '\r' | '\n');
    for c in s.chars() {
        match state {
            St::Ws | St::Word => {
                if is_ws(c) {
                    if state == St::Word && (!tok.is_empty() || quoted) {
                        out.push(std::mem::take(&mut tok));
                        quoted = false;
                    }
                    state = St::Ws;
                } else if c == '\\' {
                    escaped_from = St::Word;
                    state = St::Escape;
                } else if c == '"' || c == '\'' {
                    state = St::Quote(c);
                } else {
                    tok.push(c);
                    state = St::Word;
                }
            }
            St::Quote(q) => {
                quoted = true;
                if c == q {
                    state = St::Word;
                } else if c == '\\' && q == '"' {
                    escaped_from = St::Quote(q);
                    state = St::Escape;
                } else {
                    tok.push(c);
                }
            }
            St::Escape => {
                if let St::Quote(q) = escaped_from {
                    if c != '\\' && c != q {
                        tok.push('\\');
                    }
                }
                tok.push(c);
                state = escaped_from;
            }
        }
    }
    match state {
        St::Quote(_) => Err(ShlexError::NoClosingQuotation),
        St::Escape => Err(ShlexError::NoEscapedCharacter),
        St::Word | St::Ws => {
            if !tok.is_empty() || quoted {
                out.push(tok);
            }
            Ok(out)
        }
    }
}

// ---------------------------------------------------------------------------
// COLLISION_IGNORE / UNINSTALL_IGNORE
// ---------------------------------------------------------------------------

/// `COLLISION_IGNORE`: patterns matched against the colliding path relative
/// to EROOT, with a leading `/`.
#[derive(Debug, Clone, Default)]
pub struct CollisionIgnore {
    globs: Vec<Glob>,
}

impl CollisionIgnore {
    /// Build from the (already shlex-split) entries. `is_dir(path)` must say
    /// whether `path` (an absolute path under EROOT, following symlinks) is a
    /// directory; such an entry `x` becomes `normalize_path(x) + "/*"`.
    /// The probe is asked about the entry text literally, glob characters
    /// and all, as Portage does.
    pub fn new<S: AsRef<str>>(entries: &[S], eroot: &str, is_dir: impl Fn(&str) -> bool) -> Self {
        let globs = entries
            .iter()
            .map(|x| {
                let x = x.as_ref();
                if is_dir(&join_under(eroot, x)) {
                    Glob::new(&format!("{}/*", normalize_path(x)))
                } else {
                    Glob::new(x)
                }
            })
            .collect();
        CollisionIgnore { globs }
    }

    /// [`CollisionIgnore::new`] asking the real filesystem.
    pub fn from_fs<S: AsRef<str>>(entries: &[S], eroot: &str) -> Self {
        Self::new(entries, eroot, |p| std::path::Path::new(p).is_dir())
    }

    /// Whether the collision at `path` (EROOT-relative, leading `/`) is ignored.
    pub fn is_ignored(&self, path: &str) -> bool {
        self.globs.iter().any(|g| g.matches(path))
    }

    /// The effective patterns, after directory expansion.
    pub fn patterns(&self) -> impl Iterator<Item = &str> {
        self.globs.iter().map(Glob::as_str)
    }
}

/// `UNINSTALL_IGNORE`: patterns matched against the path being unmerged,
/// relative to EROOT with a leading `/`. Unlike `COLLISION_IGNORE` there is
/// no directory expansion: `/lib/modules` alone does not cover its contents.
#[derive(Debug, Clone, Default)]
pub struct UninstallIgnore {
    globs: Vec<Glob>,
}

impl UninstallIgnore {
    /// Build from the (already shlex-split) entries.
    pub fn new<S: AsRef<str>>(entries: &[S]) -> Self {
        UninstallIgnore {
            globs: entries.iter().map(|e| Glob::new(e.as_ref())).collect(),
        }
    }

    /// Whether unmerge must keep `path` (EROOT-relative, leading `/`) because
    /// of a pattern. See also [`is_protected_libdir_symlink`].
    pub fn is_ignored(&self, path: &str) -> bool {
        self.globs.iter().any(|g| g.matches(path))
    }
}

/// Unmerge also keeps these paths when they are symlinks, whatever
/// `UNINSTALL_IGNORE` says (Portage bug 423127).
pub fn is_protected_libdir_symlink(path: &str) -> bool {
    PROTECTED_LIBDIR_SYMLINKS.contains(&path)
}

// ---------------------------------------------------------------------------
// INSTALL_MASK
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct MaskRule {
    inclusive: bool,
    anchored: bool,
    /// Unanchored: the pattern against the basename.
    /// Anchored: `[exact, under]` for paths without and with a trailing `/`.
    globs: [Glob; 4],
}

#[derive(Debug, Clone, Default)]
struct Node {
    rules: Vec<usize>,
    children: HashMap<String, Node>,
}

/// `INSTALL_MASK` (also `PKG_INSTALL_MASK`), matched against paths relative
/// to `${ED}` without a leading `/` (for a directory, with a trailing `/`).
///
/// Rules, as Portage's `InstallMask`:
/// * The value is split on whitespace; a leading `-` makes the pattern an
///   exception (a path it matches is *not* masked).
/// * Of the patterns that apply, the one listed last decides.
/// * A pattern starting with `/` is anchored: it matches the path itself or
///   anything below it (`pattern/*`); a trailing `/` only matches
///   directories' contents, or a directory given with its trailing `/`.
/// * Any other pattern is matched against the basename only.
/// * Quirk kept on purpose: an anchored pattern applies only to paths whose
///   leading components equal the pattern's leading components that contain
///   no `*`. So `/usr/lib?4/x` never masks `usr/lib64/x` (a `?` or `[` in a
///   leading component is compared literally for this purpose), while
///   `/usr/lib*/x` does.
#[derive(Debug, Clone, Default)]
pub struct InstallMask {
    rules: Vec<MaskRule>,
    anchored: Node,
    unanchored: Vec<usize>,
}

impl InstallMask {
    /// Parse an `INSTALL_MASK` value.
    pub fn new(value: &str) -> Self {
        let mut m = InstallMask::default();
        for word in value.split(py_is_space).filter(|w| !w.is_empty()) {
            let (inclusive, pattern) = match word.strip_prefix('-') {
                Some(rest) => (false, rest),
                None => (true, word),
            };
            let anchored = pattern.starts_with('/');
            let idx = m.rules.len();
            let globs = if anchored {
                let body = skip_first_char(pattern);
                let dir_pattern = format!("{}/", pattern.trim_end_matches('/'));
                let dir_body = skip_first_char(&dir_pattern);
                [
                    Glob::new(body),
                    Glob::new(&format!("{}/*", body.trim_end_matches('/'))),
                    Glob::new(dir_body),
                    Glob::new(&format!("{}/*", dir_body.trim_end_matches('/'))),
                ]
            } else {
                let g = Glob::new(pattern);
                [g.clone(), g.clone(), g.clone(), g]
            };
            m.rules.push(MaskRule {
                inclusive,
                anchored,
                globs,
            });
            if anchored {
                let mut node = &mut m.anchored;
                for comp in pattern.split('/').filter(|c| !c.is_empty()) {
                    if comp.contains('*') {
                        break;
                    }
                    node = node.children.entry(comp.to_owned()).or_default();
                }
                node.rules.push(idx);
            } else {
                m.unanchored.push(idx);
            }
        }
        m
    }

    /// Whether nothing is masked.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether `path` (relative to `${ED}`, no leading `/`; a directory with
    /// a trailing `/`) is masked.
    pub fn matches(&self, path: &str) -> bool {
        let mut relevant: Vec<usize> = Vec::new();
        let mut node = &self.anchored;
        relevant.extend(&node.rules);
        for comp in path.split('/').filter(|c| !c.is_empty()) {
            match node.children.get(comp) {
                Some(next) => {
                    node = next;
                    relevant.extend(&node.rules);
                }
                None => break,
            }
        }
        relevant.extend(&self.unanchored);
        relevant.sort_unstable();
        let is_dir = path.ends_with('/');
        let basename = path.rsplit('/').next().unwrap_or(path);
        let mut ret = false;
        for idx in relevant {
            let rule = &self.rules[idx];
            let hit = if rule.anchored {
                let (exact, under) = if is_dir {
                    (&rule.globs[2], &rule.globs[3])
                } else {
                    (&rule.globs[0], &rule.globs[1])
                };
                exact.matches(path) || under.matches(path)
            } else {
                rule.globs[0].matches(basename)
            };
            if hit {
                ret = rule.inclusive;
            }
        }
        ret
    }
}

fn skip_first_char(s: &str) -> &str {
    let mut it = s.chars();
    it.next();
    it.as_str()
}

/// Python's `str.isspace()` for one character (what `str.split()` splits on).
pub(crate) fn py_is_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnmatch_basics() {
        assert!(fnmatch("/lib/modules/6.1/x.ko", "/lib/modules/*"));
        assert!(fnmatch("/usr/lib/python3/a.pyc", "*.py[co]"));
        assert!(fnmatch("/usr/lib/python3/a.pyo", "*.py[co]"));
        assert!(!fnmatch("/usr/lib/python3/a.py", "*.py[co]"));
        assert!(fnmatch("/x/Foo$py.class", "*$py.class"));
        assert!(fnmatch("a/b", "a?b"), "? matches /");
        assert!(fnmatch("", "*"));
        assert!(!fnmatch("", "?"));
        assert!(fnmatch(".hidden", "*"), "leading dot is not special");
        assert!(fnmatch("a\nb", "a*b"), "* matches newline");
    }

    #[test]
    fn fnmatch_classes() {
        assert!(fnmatch("[", "["), "unterminated [ is literal");
        assert!(fnmatch("[ab", "[ab"));
        assert!(fnmatch("]", "[]]"));
        assert!(fnmatch("a", "[!]]"));
        assert!(!fnmatch("]", "[!]]"));
        assert!(fnmatch("-", "[-]"));
        assert!(fnmatch("-", "[a-]"));
        assert!(fnmatch("a", "[a-]"));
        assert!(fnmatch("b", "[a-c]"));
        assert!(!fnmatch("d", "[a-c]"));
        assert!(!fnmatch("b", "[!a-c]"));
        assert!(fnmatch("-", "[!a]"));
        assert!(!fnmatch("a", "[z-a]"), "reversed range matches nothing");
        assert!(!fnmatch("z", "[z-a]"));
        assert!(
            fnmatch("q", "[!z-a]"),
            "negated empty class matches anything"
        );
        assert!(fnmatch("\\", "[\\]"), "backslash is literal in a class");
        assert!(fnmatch("^", "[^]"));
        assert!(!fnmatch("!", "[!!]"));
        assert!(fnmatch("x", "[!!]"));
        assert!(fnmatch("\\", "\\"), "no escaping outside classes");
        assert!(!fnmatch("*", "\\*"));
    }

    #[test]
    fn shlex_words() {
        assert_eq!(
            shlex_split("/lib/modules/* *.py[co] *$py.class").unwrap(),
            ["/lib/modules/*", "*.py[co]", "*$py.class"]
        );
        assert_eq!(
            shlex_split("'a b' \"c\\\"d\" e\\ f").unwrap(),
            ["a b", "c\"d", "e f"]
        );
        assert_eq!(shlex_split("\"a\\xb\"").unwrap(), ["a\\xb"]);
        assert_eq!(shlex_split("'' x").unwrap(), ["", "x"]);
        assert_eq!(shlex_split("  ").unwrap(), Vec::<String>::new());
        assert_eq!(shlex_split("a#b").unwrap(), ["a#b"]);
        assert_eq!(shlex_split("'a"), Err(ShlexError::NoClosingQuotation));
        assert_eq!(shlex_split("a\\"), Err(ShlexError::NoEscapedCharacter));
    }

    #[test]
    fn collision_ignore_expands_directories() {
        let ci = CollisionIgnore::new(&["/opt/foo/", "*.pyc", "/lib/modules/*"], "/r/", |p| {
            p.trim_end_matches('/') == "/r/opt/foo"
        });
        assert_eq!(
            ci.patterns().collect::<Vec<_>>(),
            ["/opt/foo/*", "*.pyc", "/lib/modules/*"]
        );
        assert!(ci.is_ignored("/opt/foo/bar/baz"));
        assert!(!ci.is_ignored("/opt/foo"));
        assert!(ci.is_ignored("/usr/x.pyc"));
        assert!(ci.is_ignored("/lib/modules/a/b.ko"));
        assert!(!ci.is_ignored("/lib/modules"));
    }

    #[test]
    fn uninstall_ignore_and_libdirs() {
        let ui = UninstallIgnore::new(&["/lib/modules/*"]);
        assert!(ui.is_ignored("/lib/modules/6.1/kernel/x.ko"));
        assert!(!ui.is_ignored("/lib/modules"));
        assert!(is_protected_libdir_symlink("/usr/lib"));
        assert!(!is_protected_libdir_symlink("/usr/lib64"));
    }

    #[test]
    fn install_mask_rules() {
        let m = InstallMask::new("/usr/share/doc -/usr/share/doc/keep *.la /etc/foo/");
        assert!(m.matches("usr/share/doc"));
        assert!(m.matches("usr/share/doc/"));
        assert!(m.matches("usr/share/doc/pkg/README"));
        assert!(!m.matches("usr/share/doc/keep"));
        assert!(!m.matches("usr/share/doc/keep/x"));
        assert!(!m.matches("usr/share/docs"));
        assert!(m.matches("usr/lib/libfoo.la"));
        assert!(!m.matches("usr/lib/libfoo.la.1"));
        assert!(!m.matches("etc/foo"), "trailing slash: not the file itself");
        assert!(m.matches("etc/foo/"), "…but the directory");
        assert!(m.matches("etc/foo/bar"));
        // Order matters: a later inclusive rule wins over an earlier exception.
        let m = InstallMask::new("-/usr/share/doc/keep /usr/share/doc");
        assert!(m.matches("usr/share/doc/keep/x"));
        // Unanchored exceptions.
        let m = InstallMask::new("/usr/lib -*.so");
        assert!(m.matches("usr/lib/a.a"));
        assert!(!m.matches("usr/lib/a.so"));
        assert!(m.matches("usr/lib/"));
    }

    #[test]
    fn install_mask_index_quirk() {
        // `?` in a leading component is compared literally when indexing.
        let m = InstallMask::new("/usr/lib?4/x");
        assert!(!m.matches("usr/lib64/x"));
        assert!(m.matches("usr/lib?4/x"));
        let m = InstallMask::new("/usr/lib*/x");
        assert!(m.matches("usr/lib64/x"));
        let m = InstallMask::new("/usr/*/x");
        assert!(m.matches("usr/a/b/x"), "* crosses /");
    }

    #[test]
    fn install_mask_empty_and_odd() {
        assert!(!InstallMask::new("").matches("anything"));
        assert!(InstallMask::new("").is_empty());
        let m = InstallMask::new("/");
        assert!(!m.matches("usr"));
        let m = InstallMask::new("- -/x");
        assert!(!m.matches("x"));
        assert!(!m.matches(""));
    }
}

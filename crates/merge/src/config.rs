//! Settings that affect merging: `CONFIG_PROTECT`, `CONFIG_PROTECT_MASK`,
//! `COLLISION_IGNORE`, `UNINSTALL_IGNORE`, `INSTALL_MASK`, `FEATURES`,
//! `NOCONFMEM`, and a few plain variables (`PKGDIR`, `BINPKG_*`, …).
//!
//! # Where values come from
//!
//! Layers, lowest priority first (reference: portage-semantics.md §4.1,
//! §8.6; Portage's `config.__init__` and `config.regenerate`):
//!
//! 1. **env.d**: `EROOT/etc/env.d`, read directly and combined the way
//!    `env-update` combines it into `profile.env` (see [`merge_env_d`]).
//!    Portage itself reads the generated `EROOT/etc/profile.env`; reading
//!    the sources gives the same values once `env-update` has run, and the
//!    right ones before. Without an `env.d` directory, `profile.env` is
//!    read instead. Only EROOT's files are read (Portage takes the non-
//!    `CONFIG_PROTECT*` variables from the build host's `profile.env` when
//!    ROOT is not `/`; they only matter here for `${VAR}` references).
//! 2. **make.globals**: built-in defaults ([`MAKE_GLOBALS`]), as Portage
//!    3.0.83 ships them. (Portage stacks env.d *below* make.globals.)
//! 3. **make.conf**: `EROOT/etc/make.conf`, then `EROOT/etc/portage/make.conf`
//!    (each a file, or a directory whose files are read in sorted order).
//!    Portage reads these from `PORTAGE_CONFIGROOT` (default `/`); vartree
//!    reads the target root's, as its issue asks, so that a sysroot carries
//!    its own settings. Profiles (`make.defaults`) are not read.
//! 4. **the environment** (an entry equal to env.d's value is ignored, as
//!    Portage drops inherited `profile.env` values).
//! 5. **explicit overrides** (command-line flags).
//!
//! `CONFIG_PROTECT`, `CONFIG_PROTECT_MASK` and `FEATURES` are incremental
//! (Portage's `INCREMENTALS`): every layer's words are stacked, `-*` clears,
//! `-x` removes `x`, a leading `+` is dropped with a warning, and the result
//! is de-duplicated and **sorted** (Portage stores `" ".join(sorted(set))`,
//! and `ConfigProtect` then sees that order). `COLLISION_IGNORE`,
//! `UNINSTALL_IGNORE` and `INSTALL_MASK` are not incremental: the highest
//! layer that sets them wins. `NOCONFMEM` counts if set in any layer, even
//! to an empty value.
//!
//! # make.conf syntax
//!
//! [`parse_config`] reproduces Portage's `getconfig`, which is not bash but
//! Python's `shlex` in POSIX mode with Portage's word characters, followed by
//! Portage's `varexpand`. Notable consequences, all reproduced:
//! `KEY = value` (spaces around `=`) is accepted; `export` is skipped;
//! `source FILE` includes a file (relative to the including file);
//! `#` starts a comment even inside an unquoted word (`a#b` is `a`);
//! quoted strings join adjacent text; inside `"…"`, `\"` and `\\` are
//! escapes and other backslashes are kept (then `varexpand` turns `\$` into
//! `$` and drops backslash-newline); an unquoted `\`-newline does *not*
//! continue the line; `${VAR}`/`$VAR` expand from earlier assignments and
//! from env.d, make.globals and the location variables (never from the
//! environment), **even inside single quotes** (the lexer strips the quotes
//! before expansion; only a literal `'` left in the value, as in
//! `"it's $X"`, stops it); unknown variables expand to nothing; `$` followed
//! by a non-name character makes the whole value empty (with a warning).
//! Portage only reads make.conf as UTF-8; a non-ASCII character outside
//! quotes ends a word, as it does there.
//!
//! Errors are warnings ([`ConfigWarning`]): as Portage in its tolerant mode,
//! a structural error (a missing `=`, an unexpected end) stops reading that
//! file and keeps what was read; an invalid variable name skips that
//! assignment. Where Portage raises instead (unterminated quote, a
//! `source` of an unreadable file), vartree also warns and keeps what was
//! read. Only "permission denied" is an error, as in Portage.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::mask::{py_is_space, shlex_split, PACKDEBUG_PATH};
use crate::protect::ConfigProtect;

/// Variable name → value.
pub type VarMap = BTreeMap<String, String>;

/// Variables that stack across layers.
pub const INCREMENTALS: [&str; 3] = ["CONFIG_PROTECT", "CONFIG_PROTECT_MASK", "FEATURES"];

/// `FEATURES` in Portage 3.0.83's make.globals.
pub const DEFAULT_FEATURES: &[&str] = &[
    "assume-digests",
    "binpkg-docompress",
    "binpkg-dostrip",
    "binpkg-logs",
    "binpkg-multi-instance",
    "buildpkg-live",
    "compress-index",
    "config-protect-if-modified",
    "distlocks",
    "ebuild-locks",
    "fixlafiles",
    "ipc-sandbox",
    "merge-sync",
    "merge-wait",
    "multilib-strict",
    "network-sandbox",
    "news",
    "parallel-fetch",
    "pkgdir-index-trusted",
    "pid-sandbox",
    "preserve-libs",
    "protect-owned",
    "qa-unresolved-soname-deps",
    "sandbox",
    "strict",
    "unknown-features-warn",
    "unmerge-logs",
    "unmerge-orphans",
    "userfetch",
    "userpriv",
    "usersandbox",
    "usersync",
];

/// The make.globals defaults vartree knows (besides `FEATURES`).
pub const MAKE_GLOBALS: &[(&str, &str)] = &[
    ("CONFIG_PROTECT", "/etc"),
    ("CONFIG_PROTECT_MASK", "/etc/env.d"),
    ("COLLISION_IGNORE", "/lib/modules/* *.py[co] *$py.class"),
    ("UNINSTALL_IGNORE", "/lib/modules/*"),
    ("PKGDIR", "/var/cache/binpkgs"),
    ("DISTDIR", "/var/cache/distfiles"),
    ("PORTAGE_TMPDIR", "/var/tmp"),
    ("BINPKG_FORMAT", "gpkg"),
    ("BINPKG_COMPRESS", "zstd"),
    (
        "PORTAGE_XATTR_EXCLUDE",
        "bcachefs.* bcachefs_effective.* btrfs.* security.evm security.ima \
         security.selinux system.nfs4_acl user.apache_handler user.Beagle.* \
         user.dublincore.* user.mime_encoding user.xdg.*",
    ),
];

/// Non-incremental variables besides the typed ones that
/// [`MergeSettings::var`] answers for.
pub const PLAIN_VARS: &[&str] = &[
    "PKGDIR",
    "BINPKG_FORMAT",
    "BINPKG_COMPRESS",
    "BINPKG_COMPRESS_FLAGS",
    "PKG_INSTALL_MASK",
    "PORTAGE_XATTR_EXCLUDE",
    "PORTAGE_PACKAGE_EMPTY_ABORT",
    "QUICKPKG_DEFAULT_OPTS",
    "PORTAGE_BINPKG_TAR_OPTS",
];

const TYPED_PLAIN: [&str; 3] = ["COLLISION_IGNORE", "UNINSTALL_IGNORE", "INSTALL_MASK"];

// ---------------------------------------------------------------------------
// Warnings and errors
// ---------------------------------------------------------------------------

/// Something odd in the configuration that did not stop loading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    /// The file, if the warning is about one.
    pub file: Option<PathBuf>,
    /// 1-based line, where known (the lexer's line, which may be past the
    /// offending token, as in Portage's messages).
    pub line: Option<u32>,
    pub message: String,
}

impl ConfigWarning {
    fn new(file: Option<&Path>, line: Option<u32>, message: impl Into<String>) -> Self {
        ConfigWarning {
            file: file.map(Path::to_path_buf),
            line,
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.line) {
            (Some(p), Some(l)) => write!(f, "{}:{l}: {}", p.display(), self.message),
            (Some(p), None) => write!(f, "{}: {}", p.display(), self.message),
            _ => f.write_str(&self.message),
        }
    }
}

/// A configuration file could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl ConfigError {
    fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        ConfigError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// Why [`parse_config`] stopped early.
#[derive(Debug, thiserror::Error)]
pub enum ParseFailure {
    /// A syntax problem in strict (non-tolerant) mode, or any problem the
    /// lexer cannot continue after.
    #[error("{0}")]
    Syntax(ConfigWarning),
    /// A sourced file is not readable (permission denied).
    #[error(transparent)]
    Io(#[from] ConfigError),
}

// ---------------------------------------------------------------------------
// The getconfig lexer (Python shlex, POSIX mode, Portage's character sets)
// ---------------------------------------------------------------------------

fn is_wordchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "~!@#$%*_\\:;?,./-+{}".contains(c)
}

fn is_lex_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// Read a file as Python's text mode does: UTF-8 (invalid bytes replaced)
/// with `\r\n` and `\r` turned into `\n`.
fn decode_text(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    if s.contains('\r') {
        s.replace("\r\n", "\n").replace('\r', "\n")
    } else {
        s.into_owned()
    }
}

struct Input {
    name: PathBuf,
    chars: Vec<char>,
    pos: usize,
    lineno: u32,
}

impl Input {
    fn new(name: PathBuf, text: &str) -> Self {
        Input {
            name,
            chars: text.chars().collect(),
            pos: 0,
            lineno: 1,
        }
    }

    fn next(&mut self) -> Option<char> {
        let c = self.chars.get(self.pos).copied();
        if c.is_some() {
            self.pos += 1;
        }
        if c == Some('\n') {
            self.lineno += 1;
        }
        c
    }

    /// `readline()` after a comment character, then count a line.
    fn skip_comment(&mut self) {
        while let Some(&c) = self.chars.get(self.pos) {
            self.pos += 1;
            if c == '\n' {
                break;
            }
        }
        self.lineno += 1;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LexState {
    Space,
    Word,
    Quote(char),
    Escape,
    Eof,
}

/// Nesting limit for `source` (Portage has none and dies of recursion).
const MAX_SOURCE_DEPTH: usize = 64;

struct Lexer<'r> {
    cur: Input,
    stack: Vec<Input>,
    state: LexState,
    pushback: VecDeque<String>,
    sourcing: bool,
    tolerant: bool,
    read_source: &'r mut dyn FnMut(&Path) -> io::Result<String>,
    /// Warnings raised while lexing, handed to the caller at the end.
    pending: Vec<ConfigWarning>,
}

impl Lexer<'_> {
    fn leader(&self) -> ConfigWarning {
        ConfigWarning::new(Some(&self.cur.name), Some(self.cur.lineno), "")
    }

    fn fail(&self, msg: impl Into<String>) -> ParseFailure {
        let mut w = self.leader();
        w.message = msg.into();
        ParseFailure::Syntax(w)
    }

    fn read_token(&mut self) -> Result<Option<String>, ParseFailure> {
        let mut quoted = false;
        let mut escaped_from = LexState::Word;
        let mut token = String::new();
        loop {
            let next = self.cur.next();
            match self.state {
                LexState::Eof => {
                    token.clear();
                    break;
                }
                LexState::Space => match next {
                    None => {
                        self.state = LexState::Eof;
                        break;
                    }
                    Some(c) if is_lex_space(c) => {
                        if !token.is_empty() || quoted {
                            break;
                        }
                    }
                    Some('#') => self.cur.skip_comment(),
                    Some('\\') => {
                        escaped_from = LexState::Word;
                        self.state = LexState::Escape;
                    }
                    Some(c) if is_wordchar(c) => {
                        token.clear();
                        token.push(c);
                        self.state = LexState::Word;
                    }
                    Some(c @ ('"' | '\'')) => self.state = LexState::Quote(c),
                    Some(c) => {
                        token.clear();
                        token.push(c);
                        break;
                    }
                },
                LexState::Quote(q) => {
                    quoted = true;
                    match next {
                        None => return Err(self.fail("no closing quotation")),
                        Some(c) if c == q => self.state = LexState::Word,
                        Some('\\') if q == '"' => {
                            escaped_from = LexState::Quote(q);
                            self.state = LexState::Escape;
                        }
                        Some(c) => token.push(c),
                    }
                }
                LexState::Escape => match next {
                    None => return Err(self.fail("backslash at the end of the file")),
                    Some(c) => {
                        if let LexState::Quote(q) = escaped_from {
                            if c != '\\' && c != q {
                                token.push('\\');
                            }
                        }
                        token.push(c);
                        self.state = escaped_from;
                    }
                },
                LexState::Word => match next {
                    None => {
                        self.state = LexState::Eof;
                        break;
                    }
                    Some(c) if is_lex_space(c) => {
                        self.state = LexState::Space;
                        if !token.is_empty() || quoted {
                            break;
                        }
                    }
                    Some('#') => {
                        self.cur.skip_comment();
                        self.state = LexState::Space;
                        if !token.is_empty() || quoted {
                            break;
                        }
                    }
                    Some(c @ ('"' | '\'')) => self.state = LexState::Quote(c),
                    Some('\\') => {
                        escaped_from = LexState::Word;
                        self.state = LexState::Escape;
                    }
                    Some(c) if is_wordchar(c) => token.push(c),
                    Some(c) => {
                        self.pushback.push_front(c.to_string());
                        self.state = LexState::Space;
                        if !token.is_empty() || quoted {
                            break;
                        }
                    }
                },
            }
        }
        if !quoted && token.is_empty() {
            Ok(None)
        } else {
            Ok(Some(token))
        }
    }

    fn get_token(&mut self, expand_map: &VarMap) -> Result<Option<String>, ParseFailure> {
        if let Some(t) = self.pushback.pop_front() {
            return Ok(Some(t));
        }
        loop {
            match self.read_token()? {
                Some(t) if self.sourcing && t == "source" => {
                    let file = self.read_token()?;
                    self.source(file, expand_map)?;
                }
                Some(t) => return Ok(Some(t)),
                None => {
                    let Some(prev) = self.stack.pop() else {
                        return Ok(None);
                    };
                    self.cur = prev;
                    self.state = LexState::Space;
                }
            }
            if let Some(t) = self.pushback.pop_front() {
                return Ok(Some(t));
            }
        }
    }

    fn source(&mut self, file: Option<String>, expand_map: &VarMap) -> Result<(), ParseFailure> {
        let Some(file) = file else {
            return Err(self.fail("`source` without a file name"));
        };
        let mut name = match varexpand(&file, expand_map) {
            Ok(n) => n,
            Err(msg) => return Err(self.fail(msg)),
        };
        if name.is_empty() {
            return Err(self.fail("`source` of an empty file name"));
        }
        if name.starts_with('"') {
            let inner: Vec<char> = name.chars().collect();
            name = inner[1..inner.len().saturating_sub(1).max(1)]
                .iter()
                .collect();
        }
        let path = if name.starts_with('/') {
            PathBuf::from(&name)
        } else {
            match self.cur.name.parent() {
                Some(dir) => dir.join(&name),
                None => PathBuf::from(&name),
            }
        };
        if self.stack.len() >= MAX_SOURCE_DEPTH {
            return Err(self.fail(format!(
                "`source {}`: files sourced more than {MAX_SOURCE_DEPTH} deep",
                path.display()
            )));
        }
        let text = match (self.read_source)(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                return Err(ConfigError::io("source", path, e).into());
            }
            Err(e) => {
                let msg = format!("cannot source {}: {e}", path.display());
                if !self.tolerant {
                    return Err(self.fail(msg));
                }
                let mut w = self.leader();
                w.message = msg;
                // Reported by the caller through the warnings list.
                self.pending.push(w);
                String::new()
            }
        };
        let prev = std::mem::replace(&mut self.cur, Input::new(path, &text));
        self.stack.push(prev);
        Ok(())
    }
}

/// Portage's `varexpand`: `${VAR}`/`$VAR` from `vars` (unknown: empty),
/// `\$` and `\\` unescaped, backslash-newline removed, newlines turned into
/// spaces, nothing expanded inside single quotes (the quote characters
/// themselves are kept: the lexer has already removed the syntactic ones).
/// An error (`${` unterminated, `$` before a non-name character) is
/// returned as a message; Portage then uses an empty value.
pub fn varexpand(s: &str, vars: &VarMap) -> Result<String, String> {
    let chars: Vec<char> = s.chars().collect();
    let len = chars.len();
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut insing = false;
    let mut indoub = false;
    let mut pos = 0;
    let mut out = String::with_capacity(s.len());
    const EOF_MSG: &str = "unexpected end of value while looking for the closing `}'";
    while pos < len {
        let c = chars[pos];
        if c == '\'' {
            out.push(c);
            if !indoub {
                insing = !insing;
            }
            pos += 1;
            continue;
        }
        if c == '"' {
            out.push(c);
            if !insing {
                indoub = !indoub;
            }
            pos += 1;
            continue;
        }
        if insing {
            out.push(c);
            pos += 1;
            continue;
        }
        match c {
            '\n' => {
                out.push(' ');
                pos += 1;
            }
            '\\' => {
                if pos + 1 >= len {
                    out.push(c);
                    break;
                }
                let n = chars[pos + 1];
                pos += 2;
                match n {
                    '$' => out.push('$'),
                    '\\' => {
                        out.push('\\');
                        // Portage keeps this odd step for compatibility.
                        if pos < len && matches!(chars[pos], '\'' | '"' | '$') {
                            out.push(chars[pos]);
                            pos += 1;
                        }
                    }
                    '\n' => {}
                    _ => {
                        out.push('\\');
                        out.push(n);
                    }
                }
            }
            '$' => {
                pos += 1;
                if pos == len {
                    out.push('$');
                    continue;
                }
                let braced = chars[pos] == '{';
                if braced {
                    pos += 1;
                    if pos == len {
                        return Err(EOF_MSG.to_owned());
                    }
                }
                let start = pos;
                while is_name(chars[pos]) {
                    if pos + 1 >= len {
                        if braced {
                            return Err(EOF_MSG.to_owned());
                        }
                        pos += 1;
                        break;
                    }
                    pos += 1;
                }
                let name: String = chars[start..pos].iter().collect();
                if braced {
                    if chars.get(pos) != Some(&'}') {
                        return Err(EOF_MSG.to_owned());
                    }
                    pos += 1;
                }
                if name.is_empty() {
                    return Err(if braced {
                        "${}: bad substitution".to_owned()
                    } else {
                        "$: bad substitution (a `$` not followed by a name)".to_owned()
                    });
                }
                if let Some(v) = vars.get(&name) {
                    out.push_str(v);
                }
            }
            _ => {
                out.push(c);
                pos += 1;
            }
        }
    }
    Ok(out)
}

/// How [`parse_config`] treats its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseOptions {
    /// Report syntax problems as warnings and keep going (make.conf), rather
    /// than failing (env.d files).
    pub tolerant: bool,
    /// Honour `source FILE`.
    pub allow_sourcing: bool,
    /// Run [`varexpand`] on values (and record each assignment in the
    /// expansion map).
    pub expand: bool,
}

impl ParseOptions {
    /// make.conf: tolerant, sourcing, expansion.
    pub const MAKE_CONF: ParseOptions = ParseOptions {
        tolerant: true,
        allow_sourcing: true,
        expand: true,
    };
    /// env.d files: strict, no sourcing, no expansion.
    pub const ENV_D: ParseOptions = ParseOptions {
        tolerant: false,
        allow_sourcing: false,
        expand: false,
    };
    /// profile.env: tolerant, no expansion.
    pub const PROFILE_ENV: ParseOptions = ParseOptions {
        tolerant: true,
        allow_sourcing: false,
        expand: false,
    };
}

fn invalid_var_name(key: &str) -> bool {
    let mut chars = key.chars();
    match chars.next() {
        None => false,
        Some(c) if c.is_ascii_digit() => true,
        Some(_) => key.chars().any(|c| !(c.is_alphanumeric() || c == '_')),
    }
}

/// Parse one config file's text (Portage's `getconfig` on one file).
///
/// `name` is the file's path (for messages and for resolving relative
/// `source` paths); `expand_map` supplies and records `${VAR}` values when
/// `opts.expand`; `read_source` reads a sourced file (its text is decoded
/// by the caller, see [`read_text`]). Warnings go to `warnings`.
pub fn parse_config(
    text: &str,
    name: &Path,
    opts: ParseOptions,
    expand_map: &mut VarMap,
    read_source: &mut dyn FnMut(&Path) -> io::Result<String>,
    warnings: &mut Vec<ConfigWarning>,
) -> Result<VarMap, ParseFailure> {
    let mut keys = VarMap::new();
    let mut text = text.to_owned();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    let mut lex = Lexer {
        cur: Input::new(name.to_path_buf(), &text),
        stack: Vec::new(),
        state: LexState::Space,
        pushback: VecDeque::new(),
        sourcing: opts.allow_sourcing,
        tolerant: opts.tolerant,
        read_source,
        pending: Vec::new(),
    };
    let result = parse_loop(&mut lex, opts, expand_map, &mut keys);
    warnings.append(&mut lex.pending);
    match result {
        Ok(()) => Ok(keys),
        Err(ParseFailure::Syntax(w)) if opts.tolerant => {
            warnings.push(w);
            Ok(keys)
        }
        Err(e) => Err(e),
    }
}

fn parse_loop(
    lex: &mut Lexer<'_>,
    opts: ParseOptions,
    expand_map: &mut VarMap,
    keys: &mut VarMap,
) -> Result<(), ParseFailure> {
    loop {
        let mut key = lex.get_token(expand_map)?;
        if key.as_deref() == Some("export") {
            key = lex.get_token(expand_map)?;
        }
        let Some(key) = key else { return Ok(()) };
        let equ = lex.get_token(expand_map)?;
        match equ.as_deref() {
            None | Some("") => return Err(lex.fail("unexpected end of file")),
            Some("=") => {}
            Some(other) => {
                return Err(lex.fail(format!("expected `=` after `{key}`, found `{other}`")));
            }
        }
        let Some(val) = lex.get_token(expand_map)? else {
            return Err(lex.fail(format!("unexpected end of file: no value for `{key}`")));
        };
        if invalid_var_name(&key) {
            let w = {
                let mut w = lex.leader();
                w.message = format!("invalid variable name `{key}`");
                w
            };
            if !opts.tolerant {
                return Err(ParseFailure::Syntax(w));
            }
            lex.pending.push(w);
            continue;
        }
        if opts.expand {
            let v = match varexpand(&val, expand_map) {
                Ok(v) => v,
                Err(msg) => {
                    let mut w = lex.leader();
                    w.message = format!("{key}: {msg}; using an empty value");
                    lex.pending.push(w);
                    String::new()
                }
            };
            expand_map.insert(key.clone(), v.clone());
            keys.insert(key, v);
        } else {
            keys.insert(key, val);
        }
    }
}

/// Read a text file the way Portage's config readers do (see
/// [`decode_text`]).
pub fn read_text(path: &Path) -> io::Result<String> {
    std::fs::read(path).map(|b| decode_text(&b))
}

const VCS_DIRS: [&str; 7] = ["CVS", "RCS", "SCCS", ".bzr", ".git", ".hg", ".svn"];

/// The files a "recursive" config path stands for: the path itself if it is
/// a regular file, or the regular files below it in sorted, depth-first
/// order, skipping names that start with `.` or end with `~` and VCS
/// directories (Portage's `_recursive_file_list`). Symlinks are followed.
pub fn recursive_file_list(path: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let mut out = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let skip_name = name.starts_with('.') || name.ends_with('~');
        let meta = match std::fs::metadata(&p) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                return Err(ConfigError::io("stat", &p, e));
            }
            Err(_) => continue,
        };
        if meta.is_dir() {
            if skip_name || VCS_DIRS.contains(&name.as_str()) {
                continue;
            }
            let rd = match std::fs::read_dir(&p) {
                Ok(rd) => rd,
                Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                    return Err(ConfigError::io("list", &p, e));
                }
                Err(_) => continue,
            };
            let mut children: Vec<std::ffi::OsString> =
                rd.filter_map(|e| e.ok().map(|e| e.file_name())).collect();
            children.sort_by(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()));
            for c in children.into_iter().rev() {
                stack.push(p.join(c));
            }
        } else if meta.is_file() && !skip_name {
            out.push(p);
        }
    }
    Ok(out)
}

/// Read one config path (Portage's `getconfig(path, recursive=True)` when
/// `recursive`): `Ok(None)` when there is nothing to read.
pub fn read_config_path(
    path: &Path,
    opts: ParseOptions,
    recursive: bool,
    expand_map: &mut VarMap,
    warnings: &mut Vec<ConfigWarning>,
) -> Result<Option<VarMap>, ParseFailure> {
    let files = if recursive {
        let files = recursive_file_list(path)?;
        if files.is_empty() {
            return Ok(None);
        }
        files
    } else {
        vec![path.to_path_buf()]
    };
    let mut out = VarMap::new();
    let mut any = false;
    for f in files {
        let text = match std::fs::read(&f) {
            Ok(b) => decode_text(&b),
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                return Err(ConfigError::io("read", &f, e).into());
            }
            Err(e) => {
                warnings.push(ConfigWarning::new(
                    Some(&f),
                    None,
                    format!("cannot read: {e}"),
                ));
                continue;
            }
        };
        any = true;
        let mut reader = |p: &Path| read_text(p);
        let vars = parse_config(&text, &f, opts, expand_map, &mut reader, warnings)?;
        out.extend(vars);
    }
    if any || recursive {
        Ok(Some(out))
    } else {
        Ok(None)
    }
}

// ---------------------------------------------------------------------------
// env.d
// ---------------------------------------------------------------------------

const COLON_SEPARATED: [&str; 12] = [
    "ADA_INCLUDE_PATH",
    "ADA_OBJECTS_PATH",
    "CLASSPATH",
    "INFODIR",
    "INFOPATH",
    "KDEDIRS",
    "LDPATH",
    "MANPATH",
    "PATH",
    "PKG_CONFIG_PATH",
    "PYTHONPATH",
    "ROOTPATH",
];

/// Whether `env-update` reads an env.d entry: at least 3 characters, the
/// first two ASCII digits, not ending in `~` or `.bak` (hidden names are
/// already excluded by the digit rule).
pub fn is_env_d_name(name: &str) -> bool {
    let mut it = name.chars();
    let (Some(a), Some(b)) = (it.next(), it.next()) else {
        return false;
    };
    name.chars().count() >= 3
        && a.is_ascii_digit()
        && b.is_ascii_digit()
        && !name.ends_with('~')
        && !name.ends_with(".bak")
}

/// Combine parsed env.d files (in file-name order) as `env-update` does for
/// `profile.env`: `CONFIG_PROTECT`, `CONFIG_PROTECT_MASK` and any variable a
/// file lists in `SPACE_SEPARATED` accumulate their words (first occurrence
/// kept, joined by a space); `PATH`-like variables and those in
/// `COLON_SEPARATED` accumulate `:`-separated items; other variables: the
/// last file wins. `LDPATH` is left out, as in `profile.env`. Accumulation
/// is plain union: `-*` or `-x` in env.d are kept as words (the incremental
/// stacking later interprets them).
pub fn merge_env_d(files: &[VarMap]) -> VarMap {
    let mut files: Vec<VarMap> = files.to_vec();
    let mut space: BTreeSet<String> = ["CONFIG_PROTECT", "CONFIG_PROTECT_MASK"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    let mut colon: BTreeSet<String> = COLON_SEPARATED.iter().map(|s| (*s).to_owned()).collect();
    for f in &mut files {
        if let Some(v) = f.remove("SPACE_SEPARATED") {
            space.extend(
                v.split(py_is_space)
                    .filter(|w| !w.is_empty())
                    .map(str::to_owned),
            );
        }
        if let Some(v) = f.remove("COLON_SEPARATED") {
            colon.extend(
                v.split(py_is_space)
                    .filter(|w| !w.is_empty())
                    .map(str::to_owned),
            );
        }
    }
    let mut env = VarMap::new();
    let mut accumulate =
        |var: &str, files: &mut [VarMap], split: &dyn Fn(&str) -> Vec<String>, sep: &str| {
            let mut items: Vec<String> = Vec::new();
            for f in files.iter_mut() {
                if let Some(v) = f.remove(var) {
                    for item in split(&v) {
                        if !item.is_empty() && !items.contains(&item) {
                            items.push(item);
                        }
                    }
                }
            }
            if !items.is_empty() {
                env.insert(var.to_owned(), items.join(sep));
            }
        };
    let split_ws = |v: &str| v.split(py_is_space).map(str::to_owned).collect::<Vec<_>>();
    let split_colon = |v: &str| v.split(':').map(str::to_owned).collect::<Vec<_>>();
    for var in &space {
        accumulate(var, &mut files, &split_ws, " ");
    }
    for var in &colon {
        if space.contains(var) {
            continue;
        }
        accumulate(var, &mut files, &split_colon, ":");
    }
    for f in files {
        env.extend(f);
    }
    env.remove("LDPATH");
    env
}

/// Read `EROOT/etc/env.d` and combine it ([`merge_env_d`]). `Ok(None)` when
/// the directory does not exist. A file that does not parse is skipped with
/// a warning, as `env-update` does.
pub fn read_env_d(
    eroot: &Path,
    warnings: &mut Vec<ConfigWarning>,
) -> Result<Option<VarMap>, ConfigError> {
    let dir = eroot.join("etc/env.d");
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            return Err(ConfigError::io("list", &dir, e));
        }
        Err(_) => return Ok(None),
    };
    let mut names: Vec<String> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| is_env_d_name(n))
        .collect();
    names.sort();
    let mut parsed = Vec::new();
    for n in names {
        let path = dir.join(&n);
        let text = match std::fs::read(&path) {
            Ok(b) => decode_text(&b),
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                return Err(ConfigError::io("read", &path, e));
            }
            Err(e) => {
                warnings.push(ConfigWarning::new(
                    Some(&path),
                    None,
                    format!("skipped: {e}"),
                ));
                continue;
            }
        };
        let mut no_expand = VarMap::new();
        let mut no_source = |_: &Path| -> io::Result<String> { Ok(String::new()) };
        match parse_config(
            &text,
            &path,
            ParseOptions::ENV_D,
            &mut no_expand,
            &mut no_source,
            warnings,
        ) {
            Ok(v) => parsed.push(v),
            Err(ParseFailure::Syntax(mut w)) => {
                w.message = format!("{}; file skipped", w.message);
                warnings.push(w);
            }
            Err(ParseFailure::Io(e)) => return Err(e),
        }
    }
    Ok(Some(merge_env_d(&parsed)))
}

/// Read `EROOT/etc/profile.env` (what Portage itself reads).
pub fn read_profile_env(
    eroot: &Path,
    warnings: &mut Vec<ConfigWarning>,
) -> Result<Option<VarMap>, ConfigError> {
    let path = eroot.join("etc/profile.env");
    let mut no_expand = VarMap::new();
    match read_config_path(
        &path,
        ParseOptions::PROFILE_ENV,
        false,
        &mut no_expand,
        warnings,
    ) {
        Ok(v) => Ok(v),
        Err(ParseFailure::Io(e)) => Err(e),
        Err(ParseFailure::Syntax(w)) => {
            warnings.push(w);
            Ok(None)
        }
    }
}

// ---------------------------------------------------------------------------
// FEATURES
// ---------------------------------------------------------------------------

/// The effective `FEATURES`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Features {
    set: BTreeSet<String>,
}

macro_rules! feature_accessors {
    ($($(#[$doc:meta])* $fn:ident => $name:literal;)*) => {
        impl Features {
            $(
                $(#[$doc])*
                pub fn $fn(&self) -> bool {
                    self.contains($name)
                }
            )*
        }
    };
}

feature_accessors! {
    /// `config-protect-if-modified` (default on): replace protected files
    /// the admin has not modified.
    config_protect_if_modified => "config-protect-if-modified";
    /// `collision-protect`: abort on any unowned collision.
    collision_protect => "collision-protect";
    /// `protect-owned` (default on): abort on collisions with owned files.
    protect_owned => "protect-owned";
    /// `unmerge-orphans` (default on).
    unmerge_orphans => "unmerge-orphans";
    /// `merge-use-vdb`: trust CONTENTS md5+mtime.
    merge_use_vdb => "merge-use-vdb";
    /// `merge-sync` (default on).
    merge_sync => "merge-sync";
    /// `xattr`.
    xattr => "xattr";
    /// `case-insensitive-fs`.
    case_insensitive_fs => "case-insensitive-fs";
    /// `buildpkg`.
    buildpkg => "buildpkg";
    /// `binpkg-multi-instance` (default on).
    binpkg_multi_instance => "binpkg-multi-instance";
    /// `unmerge-backup`.
    unmerge_backup => "unmerge-backup";
    /// `downgrade-backup`.
    downgrade_backup => "downgrade-backup";
    /// `preserve-libs` (default on).
    preserve_libs => "preserve-libs";
    /// `parallel-install`.
    parallel_install => "parallel-install";
    /// `packdebug`: extra COLLISION_IGNORE / UNINSTALL_IGNORE entries.
    packdebug => "packdebug";
    /// `sfperms`.
    sfperms => "sfperms";
    /// `compress-index` (default on).
    compress_index => "compress-index";
}

impl Features {
    /// From already-stacked words.
    pub fn from_words<S: AsRef<str>>(words: impl IntoIterator<Item = S>) -> Self {
        Features {
            set: words.into_iter().map(|s| s.as_ref().to_owned()).collect(),
        }
    }

    /// make.globals' default set.
    pub fn defaults() -> Self {
        Self::from_words(DEFAULT_FEATURES)
    }

    /// Whether `name` is enabled.
    pub fn contains(&self, name: &str) -> bool {
        self.set.contains(name)
    }

    /// Enabled features, sorted.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.set.iter().map(String::as_str)
    }
}

/// Stack the words of incremental `layers` (lowest first): `-*` clears,
/// `-x` removes, `+x` is taken as `x` with a warning. Result sorted and
/// de-duplicated.
pub fn stack_incremental<'a>(
    var: &str,
    layers: impl IntoIterator<Item = &'a str>,
    warnings: &mut Vec<ConfigWarning>,
) -> Vec<String> {
    let mut set: BTreeSet<String> = BTreeSet::new();
    for layer in layers {
        for word in layer.split(py_is_space).filter(|w| !w.is_empty()) {
            if word == "-*" {
                set.clear();
                continue;
            }
            let word = match word.strip_prefix('+') {
                Some(rest) => {
                    warnings.push(ConfigWarning::new(
                        None,
                        None,
                        format!("{var}: values should not start with '+': {word}"),
                    ));
                    if rest.is_empty() {
                        continue;
                    }
                    rest
                }
                None => word,
            };
            if let Some(rest) = word.strip_prefix('-') {
                set.remove(rest);
            } else {
                set.insert(word.to_owned());
            }
        }
    }
    set.into_iter().collect()
}

// ---------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------

/// Where the target lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// ROOT (`/` for the running system).
    pub root: PathBuf,
    /// EPREFIX (empty, or like `/gentoo`).
    pub eprefix: String,
}

impl Location {
    /// ROOT, no prefix.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Location {
            root: root.into(),
            eprefix: String::new(),
        }
    }

    /// ROOT + EPREFIX: where `etc/portage/make.conf`, `etc/env.d` and
    /// `var/lib/portage` are looked for.
    pub fn eroot(&self) -> PathBuf {
        let p = self.eprefix.trim_matches('/');
        if p.is_empty() {
            self.root.clone()
        } else {
            self.root.join(p)
        }
    }

    fn vars(&self) -> VarMap {
        let root = self.root.to_string_lossy();
        let root = format!("{}/", root.trim_end_matches('/'));
        let eprefix = self.eprefix.trim_end_matches('/').to_owned();
        let eroot = format!("{}{eprefix}/", root.trim_end_matches('/'));
        let mut m = VarMap::new();
        m.insert("BROOT".into(), String::new());
        m.insert("EPREFIX".into(), eprefix.clone());
        m.insert("EROOT".into(), eroot);
        m.insert("ESYSROOT".into(), format!("{eprefix}/"));
        m.insert("PORTAGE_CONFIGROOT".into(), root.clone());
        m.insert("ROOT".into(), root);
        m.insert("SYSROOT".into(), "/".into());
        m
    }
}

/// Explicit values from the command line; they win over everything.
/// Incremental ones (`config_protect`, `config_protect_mask`, `features`)
/// stack on top, so `--features=-merge-sync` works.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    pub config_protect: Option<String>,
    pub config_protect_mask: Option<String>,
    pub collision_ignore: Option<String>,
    pub uninstall_ignore: Option<String>,
    pub install_mask: Option<String>,
    pub features: Option<String>,
    /// `--noconfmem`.
    pub noconfmem: bool,
    /// Other variables ([`PLAIN_VARS`]).
    pub vars: VarMap,
}

impl Overrides {
    fn as_layer(&self) -> VarMap {
        let mut m = self.vars.clone();
        let typed = [
            ("CONFIG_PROTECT", &self.config_protect),
            ("CONFIG_PROTECT_MASK", &self.config_protect_mask),
            ("COLLISION_IGNORE", &self.collision_ignore),
            ("UNINSTALL_IGNORE", &self.uninstall_ignore),
            ("INSTALL_MASK", &self.install_mask),
            ("FEATURES", &self.features),
        ];
        for (k, v) in typed {
            if let Some(v) = v {
                m.insert(k.to_owned(), v.clone());
            }
        }
        if self.noconfmem {
            m.insert("NOCONFMEM".to_owned(), "1".to_owned());
        }
        m
    }
}

/// The configuration layers, lowest priority first, for [`MergeSettings::resolve`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layers {
    pub env_d: VarMap,
    pub globals: VarMap,
    pub make_conf: VarMap,
    pub env: VarMap,
    pub overrides: VarMap,
}

impl Layers {
    fn all(&self) -> [&VarMap; 5] {
        [
            &self.env_d,
            &self.globals,
            &self.make_conf,
            &self.env,
            &self.overrides,
        ]
    }

    fn plain(&self, key: &str) -> Option<&str> {
        self.all()
            .iter()
            .rev()
            .find_map(|l| l.get(key))
            .map(String::as_str)
    }
}

/// The make.globals layer vartree uses.
pub fn make_globals() -> VarMap {
    let mut m: VarMap = MAKE_GLOBALS
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    m.insert("FEATURES".into(), DEFAULT_FEATURES.join(" "));
    m
}

/// Every variable the merge engine reads.
fn keys_of_interest() -> impl Iterator<Item = &'static str> {
    INCREMENTALS
        .into_iter()
        .chain(TYPED_PLAIN)
        .chain(["NOCONFMEM"])
        .chain(PLAIN_VARS.iter().copied())
}

/// The settings that affect merging.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeSettings {
    /// Sorted, de-duplicated (as Portage stores incrementals).
    pub config_protect: Vec<String>,
    /// Sorted, de-duplicated.
    pub config_protect_mask: Vec<String>,
    /// shlex-split `COLLISION_IGNORE` (without the `packdebug` entry, see
    /// [`MergeSettings::collision_ignore_entries`]).
    pub collision_ignore: Vec<String>,
    /// shlex-split `UNINSTALL_IGNORE` (see
    /// [`MergeSettings::uninstall_ignore_entries`]).
    pub uninstall_ignore: Vec<String>,
    /// `INSTALL_MASK` as set (see [`MergeSettings::effective_install_mask`]).
    pub install_mask: String,
    pub features: Features,
    /// `NOCONFMEM` set anywhere, or `--noconfmem`.
    pub noconfmem: bool,
    /// EPREFIX the settings were loaded for.
    pub eprefix: String,
    /// Final values of [`PLAIN_VARS`] that are set.
    pub vars: VarMap,
}

impl Default for MergeSettings {
    fn default() -> Self {
        Self::defaults()
    }
}

/// The result of [`MergeSettings::load`].
#[derive(Debug, Clone)]
pub struct Loaded {
    pub settings: MergeSettings,
    pub warnings: Vec<ConfigWarning>,
    /// The configuration files that were read, in order.
    pub files: Vec<PathBuf>,
}

impl MergeSettings {
    /// make.globals only.
    pub fn defaults() -> Self {
        let layers = Layers {
            globals: make_globals(),
            ..Layers::default()
        };
        Self::resolve(&layers, "", &mut Vec::new())
    }

    /// Combine layers (pure).
    pub fn resolve(layers: &Layers, eprefix: &str, warnings: &mut Vec<ConfigWarning>) -> Self {
        let all = layers.all();
        let stack = |var: &str, warnings: &mut Vec<ConfigWarning>| {
            stack_incremental(
                var,
                all.iter().filter_map(|l| l.get(var)).map(String::as_str),
                warnings,
            )
        };
        let config_protect = stack("CONFIG_PROTECT", warnings);
        let config_protect_mask = stack("CONFIG_PROTECT_MASK", warnings);
        let features = Features::from_words(stack("FEATURES", warnings));
        let mut split = |var: &str| -> Vec<String> {
            let v = layers.plain(var).unwrap_or("");
            match shlex_split(v) {
                Ok(w) => w,
                Err(e) => {
                    warnings.push(ConfigWarning::new(
                        None,
                        None,
                        format!("{var}: {e}; splitting on whitespace instead"),
                    ));
                    v.split(py_is_space)
                        .filter(|w| !w.is_empty())
                        .map(str::to_owned)
                        .collect()
                }
            }
        };
        let collision_ignore = split("COLLISION_IGNORE");
        let uninstall_ignore = split("UNINSTALL_IGNORE");
        let install_mask = layers.plain("INSTALL_MASK").unwrap_or("").to_owned();
        let noconfmem = all.iter().any(|l| l.contains_key("NOCONFMEM"));
        let vars = PLAIN_VARS
            .iter()
            .filter_map(|k| layers.plain(k).map(|v| ((*k).to_owned(), v.to_owned())))
            .collect();
        MergeSettings {
            config_protect,
            config_protect_mask,
            collision_ignore,
            uninstall_ignore,
            install_mask,
            features,
            noconfmem,
            eprefix: eprefix.to_owned(),
            vars,
        }
    }

    /// Load for `loc` (see the module documentation for the order). `env`
    /// answers environment lookups (`|k| std::env::var(k).ok()` for the real
    /// one).
    pub fn load(
        loc: &Location,
        overrides: &Overrides,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Loaded, ConfigError> {
        let eroot = loc.eroot();
        let mut warnings = Vec::new();
        let mut files = Vec::new();

        let env_d = match read_env_d(&eroot, &mut warnings)? {
            Some(v) => {
                files.push(eroot.join("etc/env.d"));
                v
            }
            None => match read_profile_env(&eroot, &mut warnings)? {
                Some(v) => {
                    files.push(eroot.join("etc/profile.env"));
                    v
                }
                None => VarMap::new(),
            },
        };

        let mut expand_map = env_d.clone();
        expand_map.extend(loc.vars());
        let globals = make_globals();
        expand_map.extend(globals.clone());

        let candidates = [
            eroot.join("etc/make.conf"),
            eroot.join("etc/portage/make.conf"),
        ];
        let same = same_file(&candidates[0], &candidates[1]);
        let mut make_conf = VarMap::new();
        let mut read = 0;
        for (i, path) in candidates.iter().enumerate() {
            if i == 1 && same {
                continue;
            }
            match read_config_path(
                path,
                ParseOptions::MAKE_CONF,
                true,
                &mut expand_map,
                &mut warnings,
            ) {
                Ok(Some(v)) => {
                    make_conf.extend(v);
                    files.push(path.clone());
                    read += 1;
                }
                Ok(None) => {}
                Err(ParseFailure::Io(e)) => return Err(e),
                Err(ParseFailure::Syntax(w)) => warnings.push(w),
            }
        }
        if read == 2 {
            warnings.push(ConfigWarning::new(
                None,
                None,
                format!(
                    "found two make.conf files, using both {} and {}",
                    candidates[0].display(),
                    candidates[1].display()
                ),
            ));
        }
        make_conf.retain(|k, _| !k.starts_with("__"));

        let mut env_layer = VarMap::new();
        for k in keys_of_interest() {
            if let Some(v) = env(k) {
                if env_d.get(k) != Some(&v) {
                    env_layer.insert(k.to_owned(), v);
                }
            }
        }

        let layers = Layers {
            env_d,
            globals,
            make_conf,
            env: env_layer,
            overrides: overrides.as_layer(),
        };
        let settings = Self::resolve(&layers, &loc.eprefix, &mut warnings);
        Ok(Loaded {
            settings,
            warnings,
            files,
        })
    }

    /// A [`PLAIN_VARS`] value.
    pub fn var(&self, key: &str) -> Option<&str> {
        self.vars.get(key).map(String::as_str)
    }

    /// `COLLISION_IGNORE` entries, plus the packdebug directory when
    /// `FEATURES=packdebug`.
    pub fn collision_ignore_entries(&self) -> Vec<String> {
        let mut v = self.collision_ignore.clone();
        if self.features.packdebug() {
            v.push(PACKDEBUG_PATH.to_owned());
        }
        v
    }

    /// `UNINSTALL_IGNORE` entries, plus `packdebug`'s tarballs.
    pub fn uninstall_ignore_entries(&self) -> Vec<String> {
        let mut v = self.uninstall_ignore.clone();
        if self.features.packdebug() {
            v.push(format!("{PACKDEBUG_PATH}/*"));
        }
        v
    }

    /// `INSTALL_MASK` plus `EPREFIX/usr/share/{man,info,doc}` for
    /// `FEATURES=noman`/`noinfo`/`nodoc` (what Portage's `preinst_mask`
    /// writes to build-info).
    pub fn effective_install_mask(&self) -> String {
        let mut s = self.install_mask.clone();
        for f in ["man", "info", "doc"] {
            if self.features.contains(&format!("no{f}")) {
                s.push_str(&format!(" {}/usr/share/{f}", self.eprefix));
            }
        }
        s
    }

    /// The [`ConfigProtect`] for `eroot`, probing the real filesystem.
    pub fn config_protect(&self, eroot: &str) -> ConfigProtect {
        ConfigProtect::new(
            eroot,
            &self.config_protect,
            &self.config_protect_mask,
            self.features.case_insensitive_fs(),
        )
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (VarMap, Vec<ConfigWarning>) {
        let mut map = VarMap::new();
        parse_with(text, &mut map)
    }

    fn parse_with(text: &str, map: &mut VarMap) -> (VarMap, Vec<ConfigWarning>) {
        let mut w = Vec::new();
        let mut reader = |p: &Path| -> io::Result<String> {
            Err(io::Error::new(
                io::ErrorKind::NotFound,
                p.display().to_string(),
            ))
        };
        let v = parse_config(
            text,
            Path::new("/x/make.conf"),
            ParseOptions::MAKE_CONF,
            map,
            &mut reader,
            &mut w,
        )
        .expect("tolerant parse never fails");
        (v, w)
    }

    fn one(text: &str, key: &str) -> Option<String> {
        parse(text).0.get(key).cloned()
    }

    #[test]
    fn basic_assignments() {
        let (v, w) = parse("A=\"x y\"\nexport B='z'\nC = 1\n# c\nD=a#b\n");
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(v["A"], "x y");
        assert_eq!(v["B"], "z");
        assert_eq!(v["C"], "1");
        assert_eq!(v["D"], "a");
    }

    #[test]
    fn expansion() {
        let mut m = VarMap::new();
        m.insert("EPREFIX".into(), "/p".into());
        let (v, _) = parse_with(
            "A=\"${EPREFIX}/etc\"\nB=\"$A /x\"\nC='$A'\nD=\"\\$A\"\nE=\"$NOPE\"\nF='it'\"'\"'s $A'\n",
            &mut m,
        );
        assert_eq!(v["A"], "/p/etc");
        assert_eq!(v["B"], "/p/etc /x");
        // Portage quirk: the lexer removes the quotes before expansion, so
        // single quotes do not stop it...
        assert_eq!(v["C"], "/p/etc");
        assert_eq!(v["D"], "$A");
        assert_eq!(v["E"], "");
        // ...but a literal ' left in the value does.
        assert_eq!(v["F"], "it's $A");
    }

    #[test]
    fn make_globals_collision_ignore_line() {
        assert_eq!(
            one(
                "COLLISION_IGNORE=\"/lib/modules/* *.py[co] *\\$py.class\"\n",
                "COLLISION_IGNORE"
            )
            .as_deref(),
            Some("/lib/modules/* *.py[co] *$py.class")
        );
    }

    #[test]
    fn continuation_inside_quotes() {
        assert_eq!(one("A=\"a \\\nb\"\n", "A").as_deref(), Some("a b"));
        assert_eq!(one("A=\"a\nb\"\n", "A").as_deref(), Some("a b"));
    }

    #[test]
    fn bad_dollar_empties_value() {
        let (v, w) = parse("A=\"a$ b\"\nB=ok\n");
        assert_eq!(v["A"], "");
        assert_eq!(v["B"], "ok");
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn structural_error_stops_file() {
        let (v, w) = parse("A=1\nB\nC=3\n");
        assert_eq!(v.get("A").map(String::as_str), Some("1"));
        assert!(!v.contains_key("C"));
        assert_eq!(w.len(), 1);
        let (v, w) = parse("A=\"unterminated\nB=2\n");
        assert!(v.is_empty());
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn invalid_name_skipped() {
        let (v, w) = parse("1A=x\nB=y\n");
        assert!(!v.contains_key("1A"));
        assert_eq!(v["B"], "y");
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn sourcing() {
        let mut map = VarMap::new();
        let mut w = Vec::new();
        let mut reader = |p: &Path| -> io::Result<String> {
            match p.to_str() {
                Some("/x/inc.conf") => Ok("B=\"$A-b\"\n".into()),
                _ => Err(io::Error::new(io::ErrorKind::NotFound, "nope")),
            }
        };
        let v = parse_config(
            "A=a\nsource inc.conf\nsource /nope\nC=\"$B\"\n",
            Path::new("/x/make.conf"),
            ParseOptions::MAKE_CONF,
            &mut map,
            &mut reader,
            &mut w,
        )
        .unwrap();
        assert_eq!(v["B"], "a-b");
        assert_eq!(v["C"], "a-b");
        assert_eq!(w.len(), 1, "{w:?}");
    }

    #[test]
    fn self_sourcing_terminates() {
        let mut map = VarMap::new();
        let mut w = Vec::new();
        let mut reader = |_: &Path| -> io::Result<String> { Ok("source loop.conf\n".into()) };
        let v = parse_config(
            "A=1\nsource loop.conf\n",
            Path::new("/x/make.conf"),
            ParseOptions::MAKE_CONF,
            &mut map,
            &mut reader,
            &mut w,
        )
        .unwrap();
        assert_eq!(v["A"], "1");
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn strict_mode_fails() {
        let mut map = VarMap::new();
        let mut w = Vec::new();
        let mut reader = |_: &Path| -> io::Result<String> { Ok(String::new()) };
        let r = parse_config(
            "A=1\nB\n",
            Path::new("/e/00x"),
            ParseOptions::ENV_D,
            &mut map,
            &mut reader,
            &mut w,
        );
        assert!(matches!(r, Err(ParseFailure::Syntax(_))));
    }

    #[test]
    fn env_d_merging() {
        let f = |pairs: &[(&str, &str)]| -> VarMap {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let merged = merge_env_d(&[
            f(&[
                ("CONFIG_PROTECT", "/usr/share/config /a"),
                ("PATH", "/a:/b"),
                ("X", "1"),
            ]),
            f(&[
                ("CONFIG_PROTECT", "/a /b"),
                ("CONFIG_PROTECT_MASK", "/etc/gentoo-release"),
                ("PATH", "/b:/c"),
                ("X", "2"),
                ("LDPATH", "/lib"),
            ]),
            f(&[
                ("SPACE_SEPARATED", "FOO"),
                ("FOO", "x y"),
                ("COLON_SEPARATED", "BAR"),
                ("BAR", "p:q"),
            ]),
            f(&[("FOO", "y z"), ("BAR", "q:r")]),
        ]);
        assert_eq!(merged["CONFIG_PROTECT"], "/usr/share/config /a /b");
        assert_eq!(merged["CONFIG_PROTECT_MASK"], "/etc/gentoo-release");
        assert_eq!(merged["PATH"], "/a:/b:/c");
        assert_eq!(merged["X"], "2");
        assert_eq!(merged["FOO"], "x y z");
        assert_eq!(merged["BAR"], "p:q:r");
        assert!(!merged.contains_key("LDPATH"));
        assert!(!merged.contains_key("SPACE_SEPARATED"));
    }

    #[test]
    fn env_d_names() {
        assert!(is_env_d_name("00basic"));
        assert!(is_env_d_name("99x"));
        assert!(!is_env_d_name("99"));
        assert!(!is_env_d_name("9a-x"));
        assert!(!is_env_d_name("50foo~"));
        assert!(!is_env_d_name("50foo.bak"));
        assert!(!is_env_d_name(".50foo"));
    }

    #[test]
    fn incremental_stacking() {
        let mut w = Vec::new();
        assert_eq!(
            stack_incremental(
                "CONFIG_PROTECT",
                ["/usr/share/config", "/etc", "/z /a -/etc", "+/q"],
                &mut w
            ),
            ["/a", "/q", "/usr/share/config", "/z"]
        );
        assert_eq!(w.len(), 1);
        assert_eq!(
            stack_incremental("FEATURES", ["a b", "-* c", "-c d"], &mut Vec::new()),
            ["d"]
        );
    }

    #[test]
    fn defaults() {
        let s = MergeSettings::defaults();
        assert_eq!(s.config_protect, ["/etc"]);
        assert_eq!(s.config_protect_mask, ["/etc/env.d"]);
        assert_eq!(
            s.collision_ignore,
            ["/lib/modules/*", "*.py[co]", "*$py.class"]
        );
        assert_eq!(s.uninstall_ignore, ["/lib/modules/*"]);
        assert_eq!(s.install_mask, "");
        assert!(s.features.config_protect_if_modified());
        assert!(s.features.protect_owned());
        assert!(s.features.unmerge_orphans());
        assert!(s.features.merge_sync());
        assert!(s.features.binpkg_multi_instance());
        assert!(!s.features.collision_protect());
        assert!(!s.features.merge_use_vdb());
        assert!(!s.features.xattr());
        assert!(!s.features.case_insensitive_fs());
        assert!(!s.features.buildpkg());
        assert!(!s.features.unmerge_backup());
        assert!(!s.features.downgrade_backup());
        assert!(!s.noconfmem);
        assert_eq!(s.var("PKGDIR"), Some("/var/cache/binpkgs"));
    }

    #[test]
    fn layer_priority() {
        let vm = |pairs: &[(&str, &str)]| -> VarMap {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let layers = Layers {
            env_d: vm(&[
                ("CONFIG_PROTECT", "/usr/share/config"),
                ("INSTALL_MASK", "envd"),
            ]),
            globals: make_globals(),
            make_conf: vm(&[
                ("CONFIG_PROTECT", "/opt"),
                ("INSTALL_MASK", "conf"),
                ("FEATURES", "-merge-sync xattr"),
            ]),
            env: vm(&[("COLLISION_IGNORE", "'/a b'"), ("NOCONFMEM", "")]),
            overrides: vm(&[("FEATURES", "-xattr"), ("INSTALL_MASK", "flag")]),
        };
        let s = MergeSettings::resolve(&layers, "", &mut Vec::new());
        assert_eq!(s.config_protect, ["/etc", "/opt", "/usr/share/config"]);
        assert_eq!(s.install_mask, "flag");
        assert_eq!(s.collision_ignore, ["/a b"]);
        assert!(s.noconfmem);
        assert!(!s.features.merge_sync());
        assert!(!s.features.xattr());
    }

    #[test]
    fn packdebug_and_nodoc() {
        let layers = Layers {
            globals: make_globals(),
            overrides: [("FEATURES".to_owned(), "packdebug nodoc noman".to_owned())].into(),
            ..Layers::default()
        };
        let s = MergeSettings::resolve(&layers, "/p", &mut Vec::new());
        assert_eq!(
            s.collision_ignore_entries().last().map(String::as_str),
            Some(PACKDEBUG_PATH)
        );
        assert_eq!(
            s.uninstall_ignore_entries().last().map(String::as_str),
            Some("/usr/lib/debug/.tarball/*")
        );
        assert_eq!(
            s.effective_install_mask(),
            " /p/usr/share/man /p/usr/share/doc"
        );
    }

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn load_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(
            root,
            "etc/env.d/00basic",
            "CONFIG_PROTECT_MASK=\"/etc/gentoo-release\"\n",
        );
        write(
            root,
            "etc/env.d/50kde",
            "CONFIG_PROTECT=\"/usr/share/config\"\n",
        );
        write(root, "etc/env.d/50kde~", "CONFIG_PROTECT=\"/ignored\"\n");
        write(root, "etc/env.d/60bad", "CONFIG_PROTECT /nope\n");
        write(
            root,
            "etc/portage/make.conf/00-a",
            "FEATURES=\"${FEATURES} -merge-sync\"\nsource ../extra\n",
        );
        write(
            root,
            "etc/portage/make.conf/10-b",
            "INSTALL_MASK=\"${EPREFIX}/usr/share/doc\"\n__X=1\n",
        );
        write(root, "etc/portage/extra", "PKGDIR=\"${ROOT}pkgs\"\n");
        let env = |k: &str| match k {
            "FEATURES" => Some("buildpkg".to_owned()),
            "CONFIG_PROTECT" => Some("/usr/share/config".to_owned()),
            _ => None,
        };
        let overrides = Overrides {
            config_protect: Some("/opt/flag".into()),
            ..Overrides::default()
        };
        let loaded = MergeSettings::load(&Location::new(root), &overrides, env).unwrap();
        let s = &loaded.settings;
        assert_eq!(s.config_protect, ["/etc", "/opt/flag", "/usr/share/config"]);
        assert_eq!(s.config_protect_mask, ["/etc/env.d", "/etc/gentoo-release"]);
        assert!(!s.features.merge_sync());
        assert!(s.features.buildpkg());
        assert_eq!(s.install_mask, "/usr/share/doc");
        assert_eq!(
            s.var("PKGDIR"),
            Some(format!("{}/pkgs", root.display()).as_str())
        );
        assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
        assert!(loaded.warnings[0].file.as_ref().unwrap().ends_with("60bad"));
        assert_eq!(loaded.files.len(), 2);
    }

    #[test]
    fn load_profile_env_fallback_and_eprefix() {
        let dir = tempfile::tempdir().unwrap();
        let loc = Location {
            root: dir.path().to_path_buf(),
            eprefix: "/gentoo".into(),
        };
        let eroot = loc.eroot();
        assert_eq!(eroot, dir.path().join("gentoo"));
        write(
            &eroot,
            "etc/profile.env",
            "# generated\nexport CONFIG_PROTECT='/usr/share/config /a'\nexport PATH='/bin'\n",
        );
        write(
            &eroot,
            "etc/portage/make.conf",
            "PKGDIR=\"${EPREFIX}/b\"\nNOCONFMEM=\"\"\n",
        );
        let loaded = MergeSettings::load(&loc, &Overrides::default(), |_| None).unwrap();
        let s = &loaded.settings;
        assert_eq!(s.config_protect, ["/a", "/etc", "/usr/share/config"]);
        assert_eq!(s.var("PKGDIR"), Some("/gentoo/b"));
        assert!(s.noconfmem);
        assert_eq!(s.effective_install_mask(), "");
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    }

    #[test]
    fn load_empty_root_is_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let loaded =
            MergeSettings::load(&Location::new(dir.path()), &Overrides::default(), |_| None)
                .unwrap();
        assert_eq!(loaded.settings, MergeSettings::defaults());
        assert!(loaded.files.is_empty());
    }

    #[test]
    fn load_permission_denied_is_an_error() {
        use std::os::unix::fs::PermissionsExt;
        if rustix::process::geteuid().is_root() {
            return; // root reads everything
        }
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "etc/portage/make.conf", "A=1\n");
        let p = dir.path().join("etc/portage/make.conf");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o000)).unwrap();
        let err = MergeSettings::load(&Location::new(dir.path()), &Overrides::default(), |_| None)
            .unwrap_err();
        assert!(err.to_string().contains("make.conf"), "{err}");
    }
}

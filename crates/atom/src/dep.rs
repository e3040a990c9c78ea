//! Dependency atoms (PMS §8.3).

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use crate::cpv::{
    check_category, check_chars, check_package_name, diagnose_pf, is_cat_char, is_word, split_pf,
    version_like_tail,
};
use crate::error::{char_at, ErrorKind, ParseError, RawError, Subject};
use crate::version::Version;

/// A blocker prefix.
///
/// Ordered `Strong < Weak` (and no blocker before both), as pkgcraft sorts atoms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Blocker {
    /// `!!` — strong blocker (EAPI 2+).
    Strong,
    /// `!` — weak blocker.
    Weak,
}

impl Blocker {
    /// `"!!"` or `"!"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Blocker::Strong => "!!",
            Blocker::Weak => "!",
        }
    }
}

impl fmt::Display for Blocker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A version operator.
///
/// Ordered `< <= = =* ~ >= >`, the order pkgcraft uses for sorting atoms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operator {
    /// `<`
    Less,
    /// `<=`
    LessOrEqual,
    /// `=`
    Equal,
    /// `=…*` — Portage's prefix glob on the version string.
    EqualGlob,
    /// `~` — same version, any revision.
    Approximate,
    /// `>=`
    GreaterOrEqual,
    /// `>`
    Greater,
}

impl Operator {
    /// The prefix as written before the category (`EqualGlob` is `=`; its `*` follows the version).
    pub fn prefix(self) -> &'static str {
        match self {
            Operator::Less => "<",
            Operator::LessOrEqual => "<=",
            Operator::Equal | Operator::EqualGlob => "=",
            Operator::Approximate => "~",
            Operator::GreaterOrEqual => ">=",
            Operator::Greater => ">",
        }
    }

    /// Portage's name for the operator (`"=*"` for the glob).
    pub fn as_str(self) -> &'static str {
        match self {
            Operator::EqualGlob => "=*",
            o => o.prefix(),
        }
    }
}

impl fmt::Display for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A slot operator (EAPI 5+).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SlotOperator {
    /// `:=` or `:SLOT=` or `:SLOT/SUB=` — rebuild on slot/sub-slot change.
    Equal,
    /// `:*` — any slot, no rebuild.
    Star,
}

impl SlotOperator {
    /// `"="` or `"*"`.
    pub fn as_str(self) -> &'static str {
        match self {
            SlotOperator::Equal => "=",
            SlotOperator::Star => "*",
        }
    }
}

/// A USE-dependency default, `(+)` or `(-)` (EAPI 4+): the value assumed when the flag is
/// not in the target package's IUSE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum UseDefault {
    /// `(+)`
    Enabled,
    /// `(-)`
    Disabled,
}

impl UseDefault {
    /// `"(+)"` or `"(-)"`.
    pub fn as_str(self) -> &'static str {
        match self {
            UseDefault::Enabled => "(+)",
            UseDefault::Disabled => "(-)",
        }
    }
}

/// The form of a USE dependency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum UseDepKind {
    /// `flag` — must be enabled.
    Enabled,
    /// `-flag` — must be disabled.
    Disabled,
    /// `flag=` — same state as in the parent.
    Equal,
    /// `!flag=` — opposite state to the parent.
    NotEqual,
    /// `flag?` — enabled if enabled in the parent.
    EnabledIf,
    /// `!flag?` — disabled if disabled in the parent.
    DisabledIf,
}

impl UseDepKind {
    /// True for the forms that depend on the parent package's USE (`?` and `=` forms).
    pub fn is_conditional(self) -> bool {
        !matches!(self, UseDepKind::Enabled | UseDepKind::Disabled)
    }
}

/// One USE dependency inside `[...]`, e.g. `!foo(+)?`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UseDep {
    flag: Box<str>,
    kind: UseDepKind,
    default: Option<UseDefault>,
}

impl UseDep {
    /// Parses one USE dependency (without brackets or commas).
    pub fn parse(s: &str) -> Result<UseDep, ParseError> {
        parse_use_dep(s).map_err(|(off, kind)| ParseError::new(Subject::Dep, s, off, kind))
    }

    /// The flag name.
    pub fn flag(&self) -> &str {
        &self.flag
    }

    /// The form.
    pub fn kind(&self) -> UseDepKind {
        self.kind
    }

    /// The `(+)`/`(-)` default, if given.
    pub fn default(&self) -> Option<UseDefault> {
        self.default
    }
}

impl fmt::Display for UseDep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (pre, post) = match self.kind {
            UseDepKind::Enabled => ("", ""),
            UseDepKind::Disabled => ("-", ""),
            UseDepKind::Equal => ("", "="),
            UseDepKind::NotEqual => ("!", "="),
            UseDepKind::EnabledIf => ("", "?"),
            UseDepKind::DisabledIf => ("!", "?"),
        };
        f.write_str(pre)?;
        f.write_str(&self.flag)?;
        if let Some(d) = self.default {
            f.write_str(d.as_str())?;
        }
        f.write_str(post)
    }
}

#[inline]
fn is_use_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'+' | b'_' | b'@' | b'-')
}

fn parse_use_dep(s: &str) -> Result<UseDep, RawError> {
    let b = s.as_bytes();
    if b.is_empty() {
        return Err((0, ErrorKind::EmptyUseDep));
    }
    let (prefix, mut i) = match b[0] {
        b'!' | b'-' => (b[0], 1),
        _ => (0, 0),
    };
    let start = i;
    match b.get(i) {
        None => {
            return Err((
                i,
                ErrorKind::InvalidUseDep {
                    reason: "missing flag name",
                },
            ))
        }
        Some(c) if !c.is_ascii_alphanumeric() => {
            return Err((
                i,
                ErrorKind::BadFirstChar {
                    context: "USE flag",
                },
            ))
        }
        Some(_) => {}
    }
    i += 1;
    while i < b.len() && is_use_char(b[i]) {
        i += 1;
    }
    let flag = &s[start..i];
    let mut default = None;
    if b.get(i) == Some(&b'(') {
        default = match b.get(i..i + 3) {
            Some(b"(+)") => Some(UseDefault::Enabled),
            Some(b"(-)") => Some(UseDefault::Disabled),
            _ => return Err((i, ErrorKind::InvalidUseDefault)),
        };
        i += 3;
    }
    let suffix = match b.get(i) {
        Some(&c @ (b'?' | b'=')) => {
            i += 1;
            c
        }
        _ => 0,
    };
    if i < b.len() {
        return Err((
            i,
            ErrorKind::UnexpectedChar {
                ch: char_at(s, i),
                context: "USE dependency",
            },
        ));
    }
    let kind = match (prefix, suffix) {
        (0, 0) => UseDepKind::Enabled,
        (b'-', 0) => UseDepKind::Disabled,
        (0, b'=') => UseDepKind::Equal,
        (b'!', b'=') => UseDepKind::NotEqual,
        (0, b'?') => UseDepKind::EnabledIf,
        (b'!', b'?') => UseDepKind::DisabledIf,
        (b'-', _) => {
            return Err((
                0,
                ErrorKind::InvalidUseDep {
                    reason: "'-' cannot be combined with '?' or '='",
                },
            ))
        }
        _ => {
            return Err((
                0,
                ErrorKind::InvalidUseDep {
                    reason: "'!' requires a '?' or '=' suffix",
                },
            ))
        }
    };
    Ok(UseDep {
        flag: flag.into(),
        kind,
        default,
    })
}

type Span = (u32, u32);

/// A package dependency atom, e.g. `!!>=dev-libs/foo-1.2-r1:3/4=::gentoo[bar,-baz(+)?]`.
///
/// # Accepted syntax
///
/// The union of what EAPI 8 allows plus repository dependencies (`::repo`, the "U.."
/// unofficial-extension EAPIs in pkgcraft's test data, which Portage accepts outside ebuilds):
///
/// ```text
/// [!|!!] [op] category/PN[-version] [*] [:slot-dep] [::repo] [[use-deps]]
/// op        = < <= = ~ >= >           (a version is required with an operator and
///                                      forbidden without one; `*` only after `=`;
///                                      `~` does not allow a revision)
/// slot-dep  = SLOT | SLOT/SUB | SLOT= | SLOT/SUB= | = | *
/// use-deps  = use-dep (',' use-dep)*   (non-empty)
/// use-dep   = flag | -flag | flag? | !flag? | flag= | !flag=, each with optional (+)/(-)
///             after the flag name
/// ```
///
/// Names are ASCII: category and slot `[A-Za-z0-9_][A-Za-z0-9_+.-]*`; package name
/// `[A-Za-z0-9_][A-Za-z0-9_+-]*` not ending in `-<version>`; repository
/// `[A-Za-z0-9_][A-Za-z0-9_-]*` not ending in `-<version>`; USE flag
/// `[A-Za-z0-9][A-Za-z0-9+_@-]*`.
///
/// EAPI ranges are not modelled: everything above is accepted regardless of EAPI (so
/// `:=`, `(+)`, `!!` are accepted as in EAPI 5+). Not accepted: Portage's build-id suffix
/// (`=cat/pkg-1-2`), extended wildcards (`*/*`), and (deliberately, following PMS and
/// pkgcraft) two things Portage's parser tolerates: `~` with a revision and repository
/// names ending in a version (`::repo-1`). Conflicting USE defaults such as `[u(-),u(+)]`,
/// which Portage rejects, are accepted (pkgcraft accepts them); when matching, every
/// USE dependency must hold on its own.
///
/// # Equality and ordering
///
/// Equality and hashing compare the exact spelling (as Portage's `Atom.__eq__`):
/// `=a/b-1.0` ≠ `=a/b-1.00` and `a/b[x,y]` ≠ `a/b[y,x]`. [`Ord`] sorts by category,
/// package, version (`vercmp`), operator, blocker, slot, sub-slot, slot operator, USE
/// dependencies, repository, then spelling as the final tie-breaker (so it agrees with `Eq`).
///
/// [`Display`](fmt::Display) reproduces the parsed string exactly.
#[derive(Clone)]
pub struct Dep {
    text: Box<str>,
    blocker: Option<Blocker>,
    op: Option<Operator>,
    cat: Span,
    pkg: Span,
    version: Option<Version>,
    slot: Option<Span>,
    subslot: Option<Span>,
    slot_op: Option<SlotOperator>,
    repo: Option<Span>,
    use_deps: Box<[UseDep]>,
}

/// Parsed slot part: (slot, subslot, op), spans relative to the slot string.
type SlotParts = (
    Option<(usize, usize)>,
    Option<(usize, usize)>,
    Option<SlotOperator>,
);

fn parse_slot(s: &str) -> Result<SlotParts, RawError> {
    let b = s.as_bytes();
    match b {
        [] => return Err((0, ErrorKind::EmptySlot)),
        b"*" => return Ok((None, None, Some(SlotOperator::Star))),
        b"=" => return Ok((None, None, Some(SlotOperator::Equal))),
        [b'/', ..] => return Err((0, ErrorKind::EmptySlot)),
        [b'*' | b'=', ..] => {
            return Err((
                1,
                ErrorKind::UnexpectedChar {
                    ch: char_at(s, 1),
                    context: "slot",
                },
            ))
        }
        [c, ..] if !is_word(*c) => return Err((0, ErrorKind::BadFirstChar { context: "slot" })),
        _ => {}
    }
    let name_end = |from: usize| from + b[from..].iter().take_while(|&&c| is_cat_char(c)).count();
    let j = name_end(1);
    let slot = Some((0, j));
    let mut subslot = None;
    let mut k = j;
    if b.get(k) == Some(&b'/') {
        match b.get(k + 1) {
            None | Some(b'=' | b'*') => return Err((k + 1, ErrorKind::EmptySubslot)),
            Some(&c) if !is_word(c) => {
                return Err((
                    k + 1,
                    ErrorKind::BadFirstChar {
                        context: "sub-slot",
                    },
                ))
            }
            Some(_) => {}
        }
        let e = name_end(k + 2);
        subslot = Some((k + 1, e));
        k = e;
    }
    let mut op = None;
    match b.get(k) {
        Some(b'=') => {
            op = Some(SlotOperator::Equal);
            k += 1;
        }
        Some(b'*') => return Err((k, ErrorKind::SlotNameWithStar)),
        _ => {}
    }
    if k < b.len() {
        return Err((
            k,
            ErrorKind::UnexpectedChar {
                ch: char_at(s, k),
                context: "slot",
            },
        ));
    }
    Ok((slot, subslot, op))
}

fn check_repo(s: &str) -> Result<(), RawError> {
    check_chars(
        s,
        |c| is_word(c) || c == b'-',
        "repository name",
        ErrorKind::EmptyRepo,
    )?;
    if let Some(h) = version_like_tail(s.as_bytes()) {
        return Err((
            h,
            ErrorKind::NameEndsInVersion {
                context: "repository name",
            },
        ));
    }
    Ok(())
}

/// Shifts a relative error by `base`.
#[inline]
fn at(base: usize) -> impl Fn(RawError) -> RawError {
    move |(off, kind)| (base + off, kind)
}

#[inline]
fn span(a: usize, b: usize) -> Span {
    (a as u32, b as u32)
}

impl Dep {
    /// Parses a dependency atom. See the [type documentation](Dep) for the syntax.
    ///
    /// ```
    /// # use atom::{Dep, Operator};
    /// let d = Dep::parse(">=dev-libs/foo-1.2:0/1=[bar,-baz]").unwrap();
    /// assert_eq!(d.operator(), Some(Operator::GreaterOrEqual));
    /// assert_eq!(d.cp(), "dev-libs/foo");
    /// assert_eq!(d.version().unwrap().as_str(), "1.2");
    /// assert_eq!((d.slot(), d.subslot()), (Some("0"), Some("1")));
    /// let e = Dep::parse("~a/b-1-r1").unwrap_err();
    /// assert_eq!(e.to_string(),
    ///     "invalid dependency atom \"~a/b-1-r1\": '~' operator does not allow a revision (at byte 6)");
    /// ```
    pub fn parse(s: &str) -> Result<Dep, ParseError> {
        Dep::parse_raw(s).map_err(|(off, kind)| ParseError::new(Subject::Dep, s, off, kind))
    }

    pub(crate) fn parse_raw(s: &str) -> Result<Dep, RawError> {
        let b = s.as_bytes();
        if b.is_empty() {
            return Err((0, ErrorKind::Empty));
        }
        if b.len() > u32::MAX as usize {
            return Err((0, ErrorKind::TooLong));
        }
        let mut i = 0;
        let blocker = if b[0] == b'!' {
            if b.get(1) == Some(&b'!') {
                if b.get(2) == Some(&b'!') {
                    return Err((2, ErrorKind::TooManyBlockers));
                }
                i = 2;
                Some(Blocker::Strong)
            } else {
                i = 1;
                Some(Blocker::Weak)
            }
        } else {
            None
        };
        let (mut op, oplen) = match (b.get(i), b.get(i + 1)) {
            (Some(b'<'), Some(b'=')) => (Some(Operator::LessOrEqual), 2),
            (Some(b'>'), Some(b'=')) => (Some(Operator::GreaterOrEqual), 2),
            (Some(b'<'), _) => (Some(Operator::Less), 1),
            (Some(b'>'), _) => (Some(Operator::Greater), 1),
            (Some(b'='), _) => (Some(Operator::Equal), 1),
            (Some(b'~'), _) => (Some(Operator::Approximate), 1),
            _ => (None, 0),
        };
        i += oplen;

        // category/PF segment.
        let seg_start = i;
        let seg_end = b[i..]
            .iter()
            .position(|&c| matches!(c, b':' | b'[' | b'*'))
            .map_or(b.len(), |p| i + p);
        let seg = &s[seg_start..seg_end];
        let Some(slash) = seg.find('/') else {
            if seg.is_empty() && seg_start == b.len() {
                return Err((seg_start, ErrorKind::UnexpectedEnd { context: "atom" }));
            }
            return Err((seg_start, ErrorKind::MissingCategory));
        };
        check_category(&seg[..slash]).map_err(at(seg_start))?;
        let pf_start = seg_start + slash + 1;
        let pf = &seg[slash + 1..];
        let cat = span(seg_start, seg_start + slash);
        let (pkg, version) = if let Some(o) = op {
            let Some(h) = split_pf(pf.as_bytes()) else {
                return Err(at(pf_start)(diagnose_pf(pf, Some(o.prefix()))));
            };
            (
                span(pf_start, pf_start + h),
                Some(Version::from_validated(&pf[h + 1..])),
            )
        } else {
            if let Err(e) = check_package_name(pf) {
                // `a/b-1.0`: a valid PF without operator; say so rather than complaining
                // about the '.'.
                if let Some(h) = split_pf(pf.as_bytes()) {
                    return Err((
                        pf_start + h,
                        ErrorKind::NameEndsInVersion {
                            context: "package name",
                        },
                    ));
                }
                return Err(at(pf_start)(e));
            }
            (span(pf_start, seg_end), None)
        };
        i = seg_end;

        if b.get(i) == Some(&b'*') {
            if op != Some(Operator::Equal) {
                return Err((i, ErrorKind::GlobWithoutEquals));
            }
            op = Some(Operator::EqualGlob);
            i += 1;
        }
        if op == Some(Operator::Approximate) {
            if let Some(v) = &version {
                if v.revision().is_some() {
                    return Err((
                        pkg.1 as usize + 1 + v.base().len(),
                        ErrorKind::ApproxWithRevision,
                    ));
                }
            }
        }

        // :slot
        let (mut slot, mut subslot, mut slot_op) = (None, None, None);
        if b.get(i) == Some(&b':') && b.get(i + 1) != Some(&b':') {
            i += 1;
            let end = b[i..]
                .iter()
                .position(|&c| matches!(c, b':' | b'['))
                .map_or(b.len(), |p| i + p);
            let (sl, sub, sop) = parse_slot(&s[i..end]).map_err(at(i))?;
            slot = sl.map(|(x, y)| span(i + x, i + y));
            subslot = sub.map(|(x, y)| span(i + x, i + y));
            slot_op = sop;
            i = end;
        }

        // ::repo
        let mut repo = None;
        if b.get(i) == Some(&b':') {
            if b.get(i + 1) != Some(&b':') {
                return Err((i, ErrorKind::TrailingGarbage { ch: ':' }));
            }
            i += 2;
            let end = b[i..]
                .iter()
                .position(|&c| c == b'[')
                .map_or(b.len(), |p| i + p);
            check_repo(&s[i..end]).map_err(at(i))?;
            repo = Some(span(i, end));
            i = end;
        }

        // [use,deps]
        let mut use_deps = Vec::new();
        if b.get(i) == Some(&b'[') {
            if b.last() != Some(&b']') || b.len() == i + 1 {
                if let Some(p) = b[i..].iter().position(|&c| c == b']') {
                    let p = i + p + 1;
                    return Err((p, ErrorKind::TrailingGarbage { ch: char_at(s, p) }));
                }
                return Err((b.len(), ErrorKind::UnterminatedUseDeps));
            }
            let inner_start = i + 1;
            let inner = &s[inner_start..b.len() - 1];
            if inner.is_empty() {
                return Err((inner_start, ErrorKind::EmptyUseDeps));
            }
            let mut off = inner_start;
            for tok in inner.split(',') {
                use_deps.push(parse_use_dep(tok).map_err(at(off))?);
                off += tok.len() + 1;
            }
            i = b.len();
        }

        if i < b.len() {
            return Err((i, ErrorKind::TrailingGarbage { ch: char_at(s, i) }));
        }

        Ok(Dep {
            text: s.into(),
            blocker,
            op,
            cat,
            pkg,
            version,
            slot,
            subslot,
            slot_op,
            repo,
            use_deps: use_deps.into_boxed_slice(),
        })
    }

    #[inline]
    fn get(&self, sp: Span) -> &str {
        &self.text[sp.0 as usize..sp.1 as usize]
    }

    /// The atom exactly as parsed.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The blocker, if any.
    pub fn blocker(&self) -> Option<Blocker> {
        self.blocker
    }

    /// The version operator, if any (`Some` exactly when [`version`](Self::version) is `Some`).
    pub fn operator(&self) -> Option<Operator> {
        self.op
    }

    /// The category.
    pub fn category(&self) -> &str {
        self.get(self.cat)
    }

    /// The package name (PN).
    pub fn package(&self) -> &str {
        self.get(self.pkg)
    }

    /// `category/PN`.
    pub fn cp(&self) -> &str {
        self.get((self.cat.0, self.pkg.1))
    }

    /// `category/PN[-version]` without operator, glob star, slot, repo or USE deps
    /// (Portage's `Atom.cpv`).
    pub fn cpv(&self) -> &str {
        let end = match &self.version {
            Some(v) => self.pkg.1 + 1 + v.as_str().len() as u32,
            None => self.pkg.1,
        };
        self.get((self.cat.0, end))
    }

    /// The version (with revision as written), for versioned atoms.
    pub fn version(&self) -> Option<&Version> {
        self.version.as_ref()
    }

    /// The revision digits as written, if the version has `-rN`.
    pub fn revision(&self) -> Option<&str> {
        self.version.as_ref().and_then(Version::revision)
    }

    /// The slot name (`0` in `:0`, `:0/1`, `:0=`), if given.
    pub fn slot(&self) -> Option<&str> {
        self.slot.map(|s| self.get(s))
    }

    /// The sub-slot (`1` in `:0/1`), if given.
    pub fn subslot(&self) -> Option<&str> {
        self.subslot.map(|s| self.get(s))
    }

    /// The slot operator (`=` or `*`), if given.
    pub fn slot_operator(&self) -> Option<SlotOperator> {
        self.slot_op
    }

    /// The repository (`::repo`), if given.
    pub fn repo(&self) -> Option<&str> {
        self.repo.map(|s| self.get(s))
    }

    /// The USE dependencies in the order written (empty if none).
    pub fn use_deps(&self) -> &[UseDep] {
        &self.use_deps
    }
}

impl PartialEq for Dep {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for Dep {}

impl Hash for Dep {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.text.hash(state);
    }
}

impl Ord for Dep {
    fn cmp(&self, other: &Self) -> Ordering {
        self.category()
            .cmp(other.category())
            .then_with(|| self.package().cmp(other.package()))
            .then_with(|| self.version.cmp(&other.version))
            .then_with(|| self.op.cmp(&other.op))
            .then_with(|| self.blocker.cmp(&other.blocker))
            .then_with(|| self.slot().cmp(&other.slot()))
            .then_with(|| self.subslot().cmp(&other.subslot()))
            .then_with(|| self.slot_op.cmp(&other.slot_op))
            .then_with(|| self.use_deps.cmp(&other.use_deps))
            .then_with(|| self.repo().cmp(&other.repo()))
            .then_with(|| self.text.cmp(&other.text))
    }
}

impl PartialOrd for Dep {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Dep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Dep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Dep({:?})", &*self.text)
    }
}

impl FromStr for Dep {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Dep::parse(s)
    }
}

impl AsRef<str> for Dep {
    fn as_ref(&self) -> &str {
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Dep {
        Dep::parse(s).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn full_atom() {
        let x = d("!!=cat/pkg-1-r2:3/4=::repo[a,-b,c?,!d?,e=,!f=,g(+),-h(-),i(-)?]");
        assert_eq!(x.blocker(), Some(Blocker::Strong));
        assert_eq!(x.operator(), Some(Operator::Equal));
        assert_eq!(x.category(), "cat");
        assert_eq!(x.package(), "pkg");
        assert_eq!(x.cp(), "cat/pkg");
        assert_eq!(x.cpv(), "cat/pkg-1-r2");
        assert_eq!(x.version().unwrap().as_str(), "1-r2");
        assert_eq!(x.revision(), Some("2"));
        assert_eq!(x.slot(), Some("3"));
        assert_eq!(x.subslot(), Some("4"));
        assert_eq!(x.slot_operator(), Some(SlotOperator::Equal));
        assert_eq!(x.repo(), Some("repo"));
        let u: Vec<String> = x.use_deps().iter().map(|u| u.to_string()).collect();
        assert_eq!(
            u,
            ["a", "-b", "c?", "!d?", "e=", "!f=", "g(+)", "-h(-)", "i(-)?"].map(String::from)
        );
    }

    #[test]
    fn use_dep_kinds() {
        let x = d("a/b[a,-b,c?,!d?,e=,!f=,g(+)=]");
        let k: Vec<UseDepKind> = x.use_deps().iter().map(UseDep::kind).collect();
        use UseDepKind::*;
        assert_eq!(
            k,
            [Enabled, Disabled, EnabledIf, DisabledIf, Equal, NotEqual, Equal]
        );
        assert_eq!(x.use_deps()[6].default(), Some(UseDefault::Enabled));
        assert_eq!(x.use_deps()[6].flag(), "g");
    }

    #[test]
    fn glob_and_slots() {
        let x = d("=a/b-1.2*:0");
        assert_eq!(x.operator(), Some(Operator::EqualGlob));
        assert_eq!(x.cpv(), "a/b-1.2");
        assert_eq!(x.slot(), Some("0"));
        let x = d("a/b:=");
        assert_eq!(
            (x.slot(), x.slot_operator()),
            (None, Some(SlotOperator::Equal))
        );
        let x = d("a/b:*");
        assert_eq!(
            (x.slot(), x.slot_operator()),
            (None, Some(SlotOperator::Star))
        );
        let x = d("a/b:0=");
        assert_eq!(
            (x.slot(), x.slot_operator()),
            (Some("0"), Some(SlotOperator::Equal))
        );
        let x = d("a/b::gentoo");
        assert_eq!((x.slot(), x.repo()), (None, Some("gentoo")));
    }

    #[test]
    fn errors_with_offsets() {
        let cases: &[(&str, usize, ErrorKind)] = &[
            ("", 0, ErrorKind::Empty),
            ("!!!a/b", 2, ErrorKind::TooManyBlockers),
            ("a", 0, ErrorKind::MissingCategory),
            ("~a/b-1-r1", 6, ErrorKind::ApproxWithRevision),
            (
                "a/b-0",
                3,
                ErrorKind::NameEndsInVersion {
                    context: "package name",
                },
            ),
            (">=a/b", 5, ErrorKind::OperatorWithoutVersion { op: ">=" }),
            ("a/b*", 3, ErrorKind::GlobWithoutEquals),
            (">=a/b-0*", 7, ErrorKind::GlobWithoutEquals),
            ("a/b:", 4, ErrorKind::EmptySlot),
            ("a/b:0*", 5, ErrorKind::SlotNameWithStar),
            ("a/b:0/1*", 7, ErrorKind::SlotNameWithStar),
            ("a/b:0/", 6, ErrorKind::EmptySubslot),
            ("a/b::", 5, ErrorKind::EmptyRepo),
            (
                "a/b::-repo",
                5,
                ErrorKind::BadFirstChar {
                    context: "repository name",
                },
            ),
            (
                "a/b::repo-1",
                9,
                ErrorKind::NameEndsInVersion {
                    context: "repository name",
                },
            ),
            ("a/b[]", 4, ErrorKind::EmptyUseDeps),
            ("a/b[,]", 4, ErrorKind::EmptyUseDep),
            ("a/b[u,]", 6, ErrorKind::EmptyUseDep),
            ("a/b[u", 5, ErrorKind::UnterminatedUseDeps),
            ("a/b[u(x)]", 5, ErrorKind::InvalidUseDefault),
            ("a/b[u]x", 6, ErrorKind::TrailingGarbage { ch: 'x' }),
            (
                "a/b x",
                3,
                ErrorKind::UnexpectedChar {
                    ch: ' ',
                    context: "package name",
                },
            ),
            (
                "=a/b-1 ",
                6,
                ErrorKind::UnexpectedChar {
                    ch: ' ',
                    context: "version",
                },
            ),
            ("=a/b-1**", 7, ErrorKind::TrailingGarbage { ch: '*' }),
            (
                "a/b::r:0",
                6,
                ErrorKind::UnexpectedChar {
                    ch: ':',
                    context: "repository name",
                },
            ),
        ];
        for (s, off, kind) in cases {
            let e = Dep::parse(s).expect_err(s);
            assert_eq!((e.offset(), e.kind()), (*off, *kind), "{s:?}: {e}");
            assert_eq!(e.input(), *s);
            assert_eq!(e.subject(), Subject::Dep);
        }
    }

    #[test]
    fn display_round_trip() {
        for s in [
            "a/b",
            "!a/b:0",
            "!!>=a/b-1.0_rc1-r3:1/2=::x[y(-)?]",
            "=a/b-01.0*",
            "a/b:*",
        ] {
            let x = d(s);
            assert_eq!(x.to_string(), s);
            let shown = x.to_string();
            assert_eq!(d(&shown), x);
        }
    }

    #[test]
    fn ordering() {
        let mut v: Vec<Dep> = [
            "a/b:1", "a/b", "!a/b", "!!a/b", ">a/b-1", "<a/b-2", "=a/b-1",
        ]
        .iter()
        .map(|s| d(s))
        .collect();
        v.sort();
        let got: Vec<&str> = v.iter().map(Dep::as_str).collect();
        assert_eq!(
            got,
            ["a/b", "a/b:1", "!!a/b", "!a/b", "=a/b-1", ">a/b-1", "<a/b-2"]
        );
    }
}

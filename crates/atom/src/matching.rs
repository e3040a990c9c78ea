//! Matching atoms against installed packages (Portage `match_from_list` semantics).

use std::collections::{BTreeSet, HashSet};
use std::hash::BuildHasher;

use crate::cpv::{check_chars, is_cat_char, Cpv};
use crate::dep::{Dep, Operator, UseDefault, UseDepKind};
use crate::version::Version;

/// Something that can answer "is this USE flag in the set?".
///
/// Implemented for hash and B-tree sets of `String`/`&str`; other collections can be passed
/// through [`Flags::List`], [`Flags::Strings`] or [`Flags::Words`].
pub trait FlagSet {
    /// True if `flag` is in the set.
    fn contains_flag(&self, flag: &str) -> bool;
}

impl<S: BuildHasher> FlagSet for HashSet<String, S> {
    fn contains_flag(&self, flag: &str) -> bool {
        self.contains(flag)
    }
}

impl<S: BuildHasher> FlagSet for HashSet<&str, S> {
    fn contains_flag(&self, flag: &str) -> bool {
        self.contains(flag)
    }
}

impl FlagSet for BTreeSet<String> {
    fn contains_flag(&self, flag: &str) -> bool {
        self.contains(flag)
    }
}

impl FlagSet for BTreeSet<&str> {
    fn contains_flag(&self, flag: &str) -> bool {
        self.contains(flag)
    }
}

/// A borrowed set of USE flags, in whatever form the caller has it.
///
/// For [`Words`](Flags::Words), [`List`](Flags::List) and [`Strings`](Flags::Strings) a
/// leading `+` or `-` on an entry is ignored, so a raw IUSE value (`"+foo -bar baz"`) can be
/// passed as is; USE flag names never start with those characters. A [`Set`](Flags::Set)
/// is queried as is (strip IUSE defaults yourself).
#[derive(Clone, Copy)]
pub enum Flags<'a> {
    /// Whitespace-separated words, e.g. the content of a VDB `USE` or `IUSE` file.
    Words(&'a str),
    /// A slice of flag names.
    List(&'a [&'a str]),
    /// A slice of owned flag names.
    Strings(&'a [String]),
    /// Any [`FlagSet`] (e.g. a `HashSet<String>`).
    Set(&'a dyn FlagSet),
}

impl std::fmt::Debug for Flags<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Flags::Words(w) => f.debug_tuple("Words").field(w).finish(),
            Flags::List(l) => f.debug_tuple("List").field(l).finish(),
            Flags::Strings(l) => f.debug_tuple("Strings").field(l).finish(),
            Flags::Set(_) => f.write_str("Set(..)"),
        }
    }
}

#[inline]
fn strip_default(w: &str) -> &str {
    w.strip_prefix(['+', '-']).unwrap_or(w)
}

impl Flags<'_> {
    /// True if `flag` is in the set.
    pub fn contains(&self, flag: &str) -> bool {
        match *self {
            Flags::Words(w) => w.split_ascii_whitespace().any(|x| strip_default(x) == flag),
            Flags::List(l) => l.iter().any(|x| strip_default(x) == flag),
            Flags::Strings(l) => l.iter().any(|x| strip_default(x) == flag),
            Flags::Set(s) => s.contains_flag(flag),
        }
    }
}

impl<'a> From<&'a str> for Flags<'a> {
    fn from(s: &'a str) -> Self {
        Flags::Words(s)
    }
}

impl<'a> From<&'a [&'a str]> for Flags<'a> {
    fn from(s: &'a [&'a str]) -> Self {
        Flags::List(s)
    }
}

impl<'a> From<&'a [String]> for Flags<'a> {
    fn from(s: &'a [String]) -> Self {
        Flags::Strings(s)
    }
}

impl<'a> From<&'a Vec<String>> for Flags<'a> {
    fn from(s: &'a Vec<String>) -> Self {
        Flags::Strings(s)
    }
}

impl<'a, T: FlagSet> From<&'a T> for Flags<'a> {
    fn from(s: &'a T) -> Self {
        Flags::Set(s)
    }
}

/// The Portage name of an unknown repository; a package from it matches any `::repo`.
pub const UNKNOWN_REPO: &str = "__unknown__";

/// What an installed package knows about itself, for matching against a [`Dep`] or
/// [`Query`](crate::Query).
///
/// Every field but `cpv` is optional; a missing field is not checked (Portage's
/// `match_from_list` does the same for candidates without that attribute).
///
/// ```
/// # use atom::{Cpv, Dep, PkgRef};
/// let cpv = Cpv::parse("dev-libs/foo-1.2-r1").unwrap();
/// let pkg = PkgRef::new(&cpv).with_slot("0/1.2").with_repo("gentoo")
///     .with_use("ssl".into()).with_iuse("+ssl -static".into());
/// assert!(Dep::parse(">=dev-libs/foo-1:0/1.2::gentoo[ssl,-static]").unwrap().matches(&pkg));
/// assert!(!Dep::parse("dev-libs/foo[static]").unwrap().matches(&pkg));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct PkgRef<'a> {
    /// The package's category/PF.
    pub cpv: &'a Cpv,
    /// SLOT (without sub-slot). `None`: unknown, slot deps are not checked.
    pub slot: Option<&'a str>,
    /// Sub-slot. `None` with `slot` set means "same as slot" (Portage's default).
    pub subslot: Option<&'a str>,
    /// The repository the package came from (`repository` file). `None` or
    /// [`UNKNOWN_REPO`]: matches any `::repo`.
    pub repo: Option<&'a str>,
    /// Enabled USE flags. `None`: USE dependencies are not checked at all.
    pub use_enabled: Option<Flags<'a>>,
    /// The flags the package has (IUSE, or better IUSE_EFFECTIVE, which includes implicit
    /// flags such as arch and USE_EXPAND_IMPLICIT ones). `None` (with `use_enabled` set):
    /// every flag is taken to be in IUSE.
    pub iuse: Option<Flags<'a>>,
}

impl<'a> PkgRef<'a> {
    /// A package known only by its CPV.
    pub fn new(cpv: &'a Cpv) -> Self {
        PkgRef {
            cpv,
            slot: None,
            subslot: None,
            repo: None,
            use_enabled: None,
            iuse: None,
        }
    }

    /// Sets slot and sub-slot from a SLOT value as stored in the VDB (`"0"` or `"0/1.2"`).
    ///
    /// Surrounding whitespace (the file's trailing newline) is ignored. Like Portage's
    /// `_pkg_str`, a value that is not a valid `SLOT[/SUB]` (including an empty one) is
    /// treated as slot `0`, sub-slot `0`.
    pub fn with_slot(mut self, slot: &'a str) -> Self {
        let slot = slot.trim();
        let valid =
            |s: &str| check_chars(s, is_cat_char, "slot", crate::ErrorKind::EmptySlot).is_ok();
        let (s, sub) = match slot.split_once('/') {
            Some((s, sub)) => (s, sub),
            None => (slot, slot),
        };
        if valid(s) && valid(sub) {
            self.slot = Some(s);
            self.subslot = Some(sub);
        } else {
            self.slot = Some("0");
            self.subslot = Some("0");
        }
        self
    }

    /// Sets the repository.
    pub fn with_repo(mut self, repo: &'a str) -> Self {
        self.repo = Some(repo);
        self
    }

    /// Sets the enabled USE flags.
    pub fn with_use(mut self, flags: Flags<'a>) -> Self {
        self.use_enabled = Some(flags);
        self
    }

    /// Sets the IUSE (or IUSE_EFFECTIVE) flags.
    pub fn with_iuse(mut self, flags: Flags<'a>) -> Self {
        self.iuse = Some(flags);
        self
    }
}

impl<'a> From<&'a Cpv> for PkgRef<'a> {
    fn from(cpv: &'a Cpv) -> Self {
        PkgRef::new(cpv)
    }
}

/// Does `cand` satisfy `op pattern` (Portage `match_from_list` version rules)?
pub(crate) fn version_matches(op: Operator, pattern: &Version, cand: &Version) -> bool {
    use std::cmp::Ordering::*;
    match op {
        // cpvequal: vercmp == 0 (so 1.0 matches 1.00 and 1 matches 1-r0).
        Operator::Equal => cand.cmp(pattern) == Equal,
        // Same version string ignoring revision, compared literally (Portage compares
        // the split version strings: ~a/b-1.0 does not match a/b-1.00).
        Operator::Approximate => cand.base() == pattern.base(),
        Operator::EqualGlob => cand.glob_matches(pattern),
        Operator::Less => cand.cmp(pattern) == Less,
        Operator::LessOrEqual => cand.cmp(pattern) != Greater,
        Operator::Greater => cand.cmp(pattern) == Greater,
        Operator::GreaterOrEqual => cand.cmp(pattern) != Less,
    }
}

/// Checks the USE dependencies of `dep` against `pkg` (Portage `match_from_list`).
fn use_matches(dep: &Dep, pkg: &PkgRef<'_>) -> bool {
    let Some(enabled) = pkg.use_enabled else {
        return true;
    };
    for u in dep.use_deps() {
        let flag = u.flag();
        let in_iuse = pkg.iuse.is_none_or(|i| i.contains(flag));
        let value = if in_iuse {
            enabled.contains(flag)
        } else {
            match u.default() {
                // A flag without default that the package does not have fails every form,
                // conditional ones included (Portage's `use.required` check).
                None => return false,
                Some(UseDefault::Enabled) => true,
                Some(UseDefault::Disabled) => false,
            }
        };
        let ok = match u.kind() {
            UseDepKind::Enabled => value,
            UseDepKind::Disabled => !value,
            // Conditionals need the parent's USE; unevaluated they are satisfied, as in
            // Portage when matching an atom whose conditionals were not evaluated.
            _ => true,
        };
        if !ok {
            return false;
        }
    }
    true
}

impl Dep {
    /// Does this atom match the installed package `pkg`?
    ///
    /// Follows Portage's `match_from_list`; a blocker prefix is ignored (the result says
    /// whether the package is one the blocker blocks):
    ///
    /// * category and PN must be equal;
    /// * version operators: `=` is `vercmp` equality (`=a/b-1` matches `a/b-1-r0`, and
    ///   `=a/b-1.0` matches `a/b-1.00`); `~` requires the version without revision to be the
    ///   same *string* (as Portage compares it), any revision; `=…*` is Portage's prefix glob
    ///   (see [`Version::glob_matches`]); `< <= > >=` use `vercmp`;
    /// * `:SLOT` / `:SLOT/SUB` must equal the package's slot / sub-slot when the package's
    ///   slot is known; slot operators (`:=`, `:*`) do not restrict matching;
    /// * `::repo` must equal the package's repository unless that is unknown
    ///   (`None` or [`UNKNOWN_REPO`]);
    /// * USE dependencies are checked only when `pkg.use_enabled` is known: a flag without
    ///   `(+)`/`(-)` default must be in the package's IUSE (for every form, conditionals
    ///   included); a flag not in IUSE takes its default's value; `[foo]` needs the value
    ///   on, `[-foo]` off. The conditional forms `foo?`, `!foo?`, `foo=`, `!foo=` depend on
    ///   the parent package's USE, which is not known here: beyond the IUSE check they are
    ///   treated as satisfied (this is also what Portage does with an unevaluated atom).
    pub fn matches(&self, pkg: &PkgRef<'_>) -> bool {
        self.matches_impl(pkg, true)
    }

    pub(crate) fn matches_impl(&self, pkg: &PkgRef<'_>, check_category: bool) -> bool {
        if (check_category && self.category() != pkg.cpv.category())
            || self.package() != pkg.cpv.pn()
            || !self.matches_version(pkg.cpv.version())
        {
            return false;
        }
        if let (Some(want), Some(have)) = (self.slot(), pkg.slot) {
            if want != have {
                return false;
            }
            if let Some(want_sub) = self.subslot() {
                if want_sub != pkg.subslot.unwrap_or(have) {
                    return false;
                }
            }
        }
        if !self.use_deps().is_empty() && !use_matches(self, pkg) {
            return false;
        }
        if let (Some(want), Some(have)) = (self.repo(), pkg.repo) {
            if have != UNKNOWN_REPO && have != want {
                return false;
            }
        }
        true
    }

    /// Matches category, PN and the version constraint only (ignores slot, USE, repository
    /// and blocker).
    pub fn matches_cpv(&self, cpv: &Cpv) -> bool {
        self.category() == cpv.category()
            && self.package() == cpv.pn()
            && self.matches_version(cpv.version())
    }

    /// Checks only the version constraint (true for unversioned atoms).
    pub fn matches_version(&self, v: &Version) -> bool {
        match (self.operator(), self.version()) {
            (Some(op), Some(pattern)) => version_matches(op, pattern, v),
            _ => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpv(s: &str) -> Cpv {
        Cpv::parse(s).unwrap()
    }

    fn m(dep: &str, c: &str) -> bool {
        Dep::parse(dep).unwrap().matches_cpv(&cpv(c))
    }

    #[test]
    fn versions() {
        assert!(m("a/b", "a/b-1"));
        assert!(!m("a/b", "a/c-1"));
        assert!(!m("a/b", "x/b-1"));
        assert!(m("=a/b-1", "a/b-1-r0"));
        assert!(m("=a/b-1.0", "a/b-1.00"));
        assert!(!m("=a/b-1", "a/b-1-r1"));
        assert!(m("~a/b-1", "a/b-1-r5"));
        assert!(!m("~a/b-1.0", "a/b-1.00"));
        assert!(!m("~a/b-1", "a/b-1.0"));
        assert!(m("=a/b-1*", "a/b-1.5"));
        assert!(!m("=a/b-1*", "a/b-10"));
        assert!(m(">=a/b-1", "a/b-1"));
        assert!(!m(">a/b-1", "a/b-1-r0"));
        assert!(m(">a/b-1", "a/b-1-r1"));
        assert!(m("<a/b-1", "a/b-1_rc1"));
        assert!(m("<=a/b-1", "a/b-1-r0"));
        assert!(m("!<=a/b-1", "a/b-1-r0"));
    }

    #[test]
    fn slots_repo() {
        let c = cpv("a/b-1");
        let p = PkgRef::new(&c).with_slot("2/3").with_repo("gentoo");
        let t = |d: &str| Dep::parse(d).unwrap().matches(&p);
        assert!(t("a/b:2"));
        assert!(t("a/b:2/3"));
        assert!(!t("a/b:2/4"));
        assert!(!t("a/b:3"));
        assert!(t("a/b:="));
        assert!(t("a/b:*"));
        assert!(t("a/b:2="));
        assert!(t("a/b::gentoo"));
        assert!(!t("a/b::other"));
        let p2 = PkgRef::new(&c).with_slot("2");
        assert!(Dep::parse("a/b:2/2").unwrap().matches(&p2));
        assert!(!Dep::parse("a/b:2/3").unwrap().matches(&p2));
        let unknown = PkgRef::new(&c);
        assert!(Dep::parse("a/b:9::x").unwrap().matches(&unknown));
        let p3 = PkgRef::new(&c).with_repo(UNKNOWN_REPO);
        assert!(Dep::parse("a/b::x").unwrap().matches(&p3));
        let bad = PkgRef::new(&c).with_slot("");
        assert_eq!((bad.slot, bad.subslot), (Some("0"), Some("0")));
        let bad = PkgRef::new(&c).with_slot("1/2/3");
        assert_eq!((bad.slot, bad.subslot), (Some("0"), Some("0")));
        let nl = PkgRef::new(&c).with_slot("2/3\n");
        assert_eq!((nl.slot, nl.subslot), (Some("2"), Some("3")));
    }

    #[test]
    fn use_flags() {
        let c = cpv("a/b-1");
        let iuse = ["+foo", "bar", "-baz"];
        let useset: HashSet<String> = ["foo".to_string()].into_iter().collect();
        let p = PkgRef::new(&c)
            .with_use((&useset).into())
            .with_iuse(Flags::List(&iuse));
        let t = |d: &str| Dep::parse(d).unwrap().matches(&p);
        assert!(t("a/b[foo]"));
        assert!(t("a/b[-bar]"));
        assert!(!t("a/b[bar]"));
        assert!(!t("a/b[-foo]"));
        assert!(!t("a/b[nope]"));
        assert!(!t("a/b[-nope]"));
        assert!(t("a/b[nope(+)]"));
        assert!(!t("a/b[nope(-)]"));
        assert!(t("a/b[-nope(-)]"));
        assert!(!t("a/b[-nope(+)]"));
        assert!(t("a/b[foo(-)]"));
        assert!(t("a/b[bar?,!baz?,foo=,!bar=]"));
        assert!(!t("a/b[nope?]"));
        assert!(t("a/b[nope(+)?]"));
        assert!(t("a/b[foo,-bar,-baz]"));
        // No USE info: not checked.
        assert!(Dep::parse("a/b[nope]").unwrap().matches(&PkgRef::new(&c)));
        // USE without IUSE: every flag is in IUSE.
        let p = PkgRef::new(&c).with_use("foo bar".into());
        assert!(Dep::parse("a/b[foo,bar,-x]").unwrap().matches(&p));
        assert!(!Dep::parse("a/b[x(+)]").unwrap().matches(&p));
    }

    #[test]
    fn flags_forms() {
        let v = vec!["a".to_string(), "+b".to_string()];
        let f: Flags<'_> = (&v).into();
        assert!(f.contains("a") && f.contains("b") && !f.contains("c"));
        let f = Flags::Words("  x\t+y -z ");
        assert!(f.contains("x") && f.contains("y") && f.contains("z") && !f.contains("+y"));
        let s: BTreeSet<&str> = ["q"].into_iter().collect();
        assert!(Flags::from(&s).contains("q"));
    }
}

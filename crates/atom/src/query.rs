//! Command-line package queries.

use std::fmt;

use crate::cpv::Cpv;
use crate::dep::{Dep, Operator, SlotOperator, UseDep};
use crate::error::{ErrorKind, ParseError, Subject};
use crate::matching::PkgRef;
use crate::version::Version;

/// Placeholder category used internally for queries without a category.
const ANY_CATEGORY: &str = "null";

/// A package query as typed on a command line, e.g. `foo`, `dev-libs/foo`,
/// `dev-libs/foo-1.0`, `>=foo-2:3`. See [`parse_query`].
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Query {
    dep: Dep,
    /// Byte offset in `dep`'s text where the placeholder category was inserted, when the
    /// query has no category.
    any_category: Option<u32>,
}

/// Parses a command-line package query.
///
/// Accepted forms (tried in this order):
///
/// 1. Any dependency atom [`Dep::parse`] accepts, except blockers: `cat/pkg`,
///    `>=cat/pkg-1:2::repo[use]`, `=cat/pkg-1*`, ...
/// 2. `cat/pkg-1.0[-r1]` — a versioned name without operator means `=cat/pkg-1.0[-r1]`
///    (also with a slot, repo or USE part: `cat/pkg-1.0:2` is `=cat/pkg-1.0:2`).
/// 3. Both of the above without a category (`pkg`, `pkg-1.0`, `>=pkg-1:2`, `pkg::gentoo`):
///    the query then matches the package name in every category. Whether a category is
///    present is decided, as Portage does, by a `/` before the first `:` or `[`.
///
/// The package name is split from the version exactly as for atoms, so `foo-1` is PN `foo`
/// version `1` and `foo-r1` is just a name.
///
/// ```
/// # use atom::{parse_query, Cpv};
/// let q = parse_query("foo-1.0").unwrap();
/// assert_eq!((q.category(), q.package()), (None, "foo"));
/// assert!(q.matches_cpv(&Cpv::parse("dev-libs/foo-1.0").unwrap()));
/// assert!(!q.matches_cpv(&Cpv::parse("dev-libs/foo-1.1").unwrap()));
/// assert_eq!(parse_query("dev-libs/foo-1.0").unwrap().to_string(), "=dev-libs/foo-1.0");
/// ```
pub fn parse_query(s: &str) -> Result<Query, ParseError> {
    let err = |off: usize, kind| ParseError::new(Subject::Query, s, off, kind);
    if s.is_empty() {
        return Err(err(0, ErrorKind::Empty));
    }
    if s.starts_with('!') {
        return Err(err(0, ErrorKind::BlockerNotAllowed));
    }
    let head_end = s.find([':', '[']).unwrap_or(s.len());
    let has_category = s[..head_end].contains('/');

    // The string to parse as a Dep, and where (and how much) was inserted into it.
    let op_len = s
        .bytes()
        .take(2)
        .take_while(|c| matches!(c, b'<' | b'>' | b'=' | b'~'))
        .count();
    let build = |with_eq: bool| -> (String, usize, usize) {
        let mut t = String::with_capacity(s.len() + 6);
        let mut inserted = 0;
        if with_eq {
            t.push('=');
            inserted += 1;
        }
        let cat_at = t.len() + op_len;
        t.push_str(&s[..op_len]);
        if !has_category {
            t.push_str(ANY_CATEGORY);
            t.push('/');
            inserted += ANY_CATEGORY.len() + 1;
        }
        t.push_str(&s[op_len..]);
        (t, cat_at, inserted)
    };

    let attempt = |with_eq: bool| -> Result<Query, ParseError> {
        let (t, cat_at, inserted) = build(with_eq);
        match Dep::parse_raw(&t) {
            Ok(dep) => Ok(Query {
                dep,
                any_category: (!has_category).then_some(cat_at as u32),
            }),
            Err((off, kind)) => {
                // Map the offset back into the user's string.
                let off = if off >= cat_at + inserted - usize::from(with_eq) {
                    off - inserted
                } else {
                    off.min(cat_at.saturating_sub(usize::from(with_eq)))
                };
                Err(err(off, kind))
            }
        }
    };

    match attempt(false) {
        Ok(q) => Ok(q),
        Err(e)
            if op_len == 0
                && matches!(
                    e.kind(),
                    ErrorKind::NameEndsInVersion { .. }
                        | ErrorKind::UnexpectedChar {
                            context: "package name",
                            ..
                        }
                ) =>
        {
            // `cat/pkg-1.0` means `=cat/pkg-1.0`. If that fails too, report whichever
            // error got further into the string.
            match attempt(true) {
                Ok(q) => Ok(q),
                Err(e2) if e2.offset() >= e.offset() => Err(e2),
                Err(_) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

impl Query {
    /// The category, or `None` when the query matches any category.
    pub fn category(&self) -> Option<&str> {
        match self.any_category {
            Some(_) => None,
            None => Some(self.dep.category()),
        }
    }

    /// The package name.
    pub fn package(&self) -> &str {
        self.dep.package()
    }

    /// The query as a full dependency atom, when it has a category.
    pub fn dep(&self) -> Option<&Dep> {
        match self.any_category {
            Some(_) => None,
            None => Some(&self.dep),
        }
    }

    /// The version operator (`=` for the implicit one of `cat/pkg-1.0`).
    pub fn operator(&self) -> Option<Operator> {
        self.dep.operator()
    }

    /// The version, if any.
    pub fn version(&self) -> Option<&Version> {
        self.dep.version()
    }

    /// The slot, if any.
    pub fn slot(&self) -> Option<&str> {
        self.dep.slot()
    }

    /// The sub-slot, if any.
    pub fn subslot(&self) -> Option<&str> {
        self.dep.subslot()
    }

    /// The slot operator, if any.
    pub fn slot_operator(&self) -> Option<SlotOperator> {
        self.dep.slot_operator()
    }

    /// The repository, if any.
    pub fn repo(&self) -> Option<&str> {
        self.dep.repo()
    }

    /// The USE dependencies.
    pub fn use_deps(&self) -> &[UseDep] {
        self.dep.use_deps()
    }

    /// Does the query match this installed package? Same rules as [`Dep::matches`], with
    /// the category ignored when the query has none.
    pub fn matches(&self, pkg: &PkgRef<'_>) -> bool {
        self.dep.matches_impl(pkg, self.any_category.is_none())
    }

    /// Matches category (if given), PN and version only.
    pub fn matches_cpv(&self, cpv: &Cpv) -> bool {
        self.category().is_none_or(|c| c == cpv.category())
            && self.dep.package() == cpv.pn()
            && self.dep.matches_version(cpv.version())
    }
}

impl fmt::Display for Query {
    /// The canonical form: `=` added for an implicit version operator; no category when
    /// the query has none.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.dep.as_str();
        match self.any_category {
            None => f.write_str(t),
            Some(at) => {
                let at = at as usize;
                f.write_str(&t[..at])?;
                f.write_str(&t[at + ANY_CATEGORY.len() + 1..])
            }
        }
    }
}

impl fmt::Debug for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Query({:?})", self.to_string())
    }
}

impl std::str::FromStr for Query {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_query(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Query {
        parse_query(s).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn forms() {
        let x = q("foo");
        assert_eq!(
            (x.category(), x.package(), x.operator()),
            (None, "foo", None)
        );
        assert!(x.dep().is_none());
        assert_eq!(x.to_string(), "foo");

        let x = q("dev-libs/foo");
        assert_eq!(x.category(), Some("dev-libs"));
        assert_eq!(x.dep().unwrap().as_str(), "dev-libs/foo");

        let x = q("dev-libs/foo-1.0-r1:2");
        assert_eq!(x.operator(), Some(Operator::Equal));
        assert_eq!(x.version().unwrap().as_str(), "1.0-r1");
        assert_eq!(x.slot(), Some("2"));
        assert_eq!(x.to_string(), "=dev-libs/foo-1.0-r1:2");

        let x = q(">=foo-2:3/4::gentoo[bar]");
        assert_eq!(x.category(), None);
        assert_eq!(x.operator(), Some(Operator::GreaterOrEqual));
        assert_eq!(
            (x.slot(), x.subslot(), x.repo()),
            (Some("3"), Some("4"), Some("gentoo"))
        );
        assert_eq!(x.use_deps().len(), 1);
        assert_eq!(x.to_string(), ">=foo-2:3/4::gentoo[bar]");

        let x = q("foo-1*");
        assert_eq!(x.operator(), Some(Operator::EqualGlob));
        assert_eq!(x.to_string(), "=foo-1*");

        let x = q("foo-r1");
        assert_eq!((x.package(), x.version()), ("foo-r1", None));
        let x = q("pkg:0/1");
        assert_eq!(
            (x.category(), x.slot(), x.subslot()),
            (None, Some("0"), Some("1"))
        );
        assert_eq!(x.slot_operator(), None);
    }

    #[test]
    fn matching() {
        let a = Cpv::parse("dev-libs/foo-1.0").unwrap();
        let b = Cpv::parse("app-misc/foo-2").unwrap();
        let c = Cpv::parse("dev-libs/bar-1.0").unwrap();
        let any = q("foo");
        assert!(any.matches_cpv(&a) && any.matches_cpv(&b) && !any.matches_cpv(&c));
        let v = q("foo-1.0");
        assert!(v.matches_cpv(&a) && !v.matches_cpv(&b));
        let s = q(">=foo-1:2");
        assert!(s.matches(&PkgRef::new(&b).with_slot("2")));
        assert!(!s.matches(&PkgRef::new(&b).with_slot("3")));
        assert!(s.matches(&PkgRef::new(&a).with_slot("2")));
        let cat = q("dev-libs/foo");
        assert!(cat.matches(&PkgRef::new(&a)) && !cat.matches(&PkgRef::new(&b)));
    }

    #[test]
    fn errors() {
        let e = |s: &str| {
            let e = parse_query(s).unwrap_err();
            assert_eq!(e.input(), s);
            assert_eq!(e.subject(), Subject::Query);
            (e.offset(), e.kind())
        };
        assert_eq!(e("!foo"), (0, ErrorKind::BlockerNotAllowed));
        assert_eq!(e(""), (0, ErrorKind::Empty));
        assert_eq!(e(">="), (2, ErrorKind::MissingPackageName));
        assert_eq!(
            e(">=foo"),
            (5, ErrorKind::OperatorWithoutVersion { op: ">=" })
        );
        assert_eq!(e("foo-1.a"), (6, ErrorKind::ExpectedDigit));
        assert_eq!(e("cat/foo-1.a"), (10, ErrorKind::ExpectedDigit));
        assert_eq!(e("~foo-1-r1"), (6, ErrorKind::ApproxWithRevision));
        assert_eq!(
            e("fo o"),
            (
                2,
                ErrorKind::UnexpectedChar {
                    ch: ' ',
                    context: "package name"
                }
            )
        );
        assert_eq!(e("foo:"), (4, ErrorKind::EmptySlot));
        assert_eq!(
            e(".cat/foo"),
            (
                0,
                ErrorKind::BadFirstChar {
                    context: "category"
                }
            )
        );
        assert_eq!(e("/foo"), (0, ErrorKind::MissingCategory));
    }
}

//! Category/package-version strings, `pkgsplit` and name validation.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use crate::error::{char_at, ErrorKind, ParseError, RawError, Subject};
use crate::version::{is_base_version, is_revision_token, scan_base, Version};

/// `[A-Za-z0-9_]` (Python's ASCII `\w`).
#[inline]
pub(crate) fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Characters allowed after the first in a category or slot name: `[\w+.-]`.
#[inline]
pub(crate) fn is_cat_char(c: u8) -> bool {
    is_word(c) || matches!(c, b'+' | b'.' | b'-')
}

/// Characters allowed after the first in a package name: `[\w+-]`.
#[inline]
pub(crate) fn is_pn_char(c: u8) -> bool {
    is_word(c) || matches!(c, b'+' | b'-')
}

/// Checks `s` against `first rest*`; returns the offending offset and kind.
pub(crate) fn check_chars(
    s: &str,
    rest_ok: fn(u8) -> bool,
    context: &'static str,
    empty: ErrorKind,
) -> Result<(), RawError> {
    let b = s.as_bytes();
    let Some(&first) = b.first() else {
        return Err((0, empty));
    };
    if !is_word(first) {
        return Err((0, ErrorKind::BadFirstChar { context }));
    }
    if let Some(i) = b.iter().position(|&c| !rest_ok(c)) {
        return Err((
            i,
            ErrorKind::UnexpectedChar {
                ch: char_at(s, i),
                context,
            },
        ));
    }
    Ok(())
}

/// Validates a category name: `^[A-Za-z0-9_][A-Za-z0-9_+.-]*$` (Portage `dbapi._category_re`,
/// PMS §3.1.1).
pub(crate) fn check_category(s: &str) -> Result<(), RawError> {
    check_chars(s, is_cat_char, "category", ErrorKind::MissingCategory)
}

/// If `pn` ends in `-<version>` (optionally with `-rN`), returns the offset of that hyphen.
///
/// This is the PMS §3.1.2 rule "must not end in a hyphen followed by anything matching the
/// version syntax", exactly as Portage's `_cp` regex applies it.
pub(crate) fn version_like_tail(pn: &[u8]) -> Option<usize> {
    let h1 = pn.iter().rposition(|&c| c == b'-')?;
    let t1 = &pn[h1 + 1..];
    if h1 > 0 && is_base_version(t1) {
        return Some(h1);
    }
    if is_revision_token(t1) {
        let h2 = pn[..h1].iter().rposition(|&c| c == b'-')?;
        if h2 > 0 && is_base_version(&pn[h2 + 1..h1]) {
            return Some(h2);
        }
    }
    None
}

/// Validates a package name (PN) for an unversioned atom: `[\w][\w+-]*` not ending in
/// `-<version>`.
pub(crate) fn check_package_name(s: &str) -> Result<(), RawError> {
    check_chars(s, is_pn_char, "package name", ErrorKind::MissingPackageName)?;
    if let Some(h) = version_like_tail(s.as_bytes()) {
        return Err((
            h,
            ErrorKind::NameEndsInVersion {
                context: "package name",
            },
        ));
    }
    Ok(())
}

/// True if `s` is a valid category name (`^[A-Za-z0-9_][A-Za-z0-9_+.-]*$`, ASCII).
pub fn is_valid_category(s: &str) -> bool {
    check_category(s).is_ok()
}

/// True if `s` is a valid package name (PN): `[A-Za-z0-9_][A-Za-z0-9_+-]*`, not ending in a
/// hyphen followed by a version (`foo-1`, `foo-1-r2` are invalid; `foo-r2`, `foo-1x2` are valid).
pub fn is_valid_package_name(s: &str) -> bool {
    check_package_name(s).is_ok()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Tok {
    V,
    R,
    Other,
}

/// Splits a PF (`pn-ver[-rN]`) exactly like Portage's `_pkgsplit`: returns the index of the
/// hyphen that ends PN, or `None` when the string is not a valid PF.
///
/// Portage's regex is `^(?P<pn>[\w][\w+-]*?(?P<pn_inval>-VR)?)-(?P<ver>V)(-r(?P<rev>\d+))?$`
/// with a lazy PN, i.e. the *shortest* PN for which the rest matches wins, and the result is
/// rejected when at that PN the optional `pn_inval` part matched. Since versions contain no
/// hyphens, the rest after a candidate PN is a list of hyphen-separated tokens, each either
/// a version (V), a revision `rN` (R) or something else, and only the last four tokens can
/// ever take part; this makes the split a single O(n) pass without backtracking.
pub(crate) fn split_pf(b: &[u8]) -> Option<usize> {
    // Hyphen positions from the right, at most 4.
    let mut hy = [0usize; 4];
    let mut k = 0;
    let mut end = b.len();
    while k < 4 {
        match b[..end].iter().rposition(|&c| c == b'-') {
            Some(p) => {
                hy[k] = p;
                k += 1;
                end = p;
            }
            None => break,
        }
    }
    if k == 0 {
        return None;
    }
    // tok[j]: kind of the token after hy[j].
    let mut tok = [Tok::Other; 4];
    for j in 0..k {
        let start = hy[j] + 1;
        let stop = if j == 0 { b.len() } else { hy[j - 1] };
        let t = &b[start..stop];
        tok[j] = if is_revision_token(t) {
            Tok::R
        } else if is_base_version(t) {
            Tok::V
        } else {
            Tok::Other
        };
    }
    // Longest valid PN prefix: [\w][\w+-]*.
    let vpl = match b.first() {
        Some(&c) if is_word(c) => 1 + b[1..].iter().take_while(|&&c| is_pn_char(c)).count(),
        _ => 0,
    };
    use Tok::{R, V};
    // m = number of tokens after the PN; larger m = shorter PN, tried first (lazy regex).
    for m in (1..=k).rev() {
        let h = hy[m - 1];
        if h == 0 {
            continue; // empty PN
        }
        if h > vpl {
            // PN contains an invalid character; every longer PN does too.
            return None;
        }
        // Tokens in left-to-right order: tok[m-1], ..., tok[0].
        let t = |i: usize| tok[m - 1 - i];
        match m {
            4 if [t(0), t(1), t(2), t(3)] == [V, R, V, R] => return None,
            3 if [t(0), t(1), t(2)] == [V, R, V] || [t(0), t(1), t(2)] == [V, V, R] => return None,
            2 if [t(0), t(1)] == [V, V] => return None,
            2 if [t(0), t(1)] == [V, R] => return Some(h),
            1 if t(0) == V => return Some(h),
            _ => {}
        }
    }
    None
}

/// Explains why [`split_pf`] failed on `pf` (slow path, errors only).
/// `op` is the version operator of an atom, if any, for a better message.
pub(crate) fn diagnose_pf(pf: &str, op: Option<&'static str>) -> RawError {
    let b = pf.as_bytes();
    if b.is_empty() {
        return (0, ErrorKind::MissingPackageName);
    }
    if !is_word(b[0]) {
        return (
            0,
            ErrorKind::BadFirstChar {
                context: "package name",
            },
        );
    }
    let vpl = 1 + b[1..].iter().take_while(|&&c| is_pn_char(c)).count();
    let cand = (1..b.len())
        .find(|&h| b[h] == b'-' && h <= vpl && b.get(h + 1).is_some_and(u8::is_ascii_digit));
    let missing = || match op {
        Some(op) => ErrorKind::OperatorWithoutVersion { op },
        None => ErrorKind::MissingVersion,
    };
    let Some(h) = cand else {
        if vpl < b.len() {
            return (
                vpl,
                ErrorKind::UnexpectedChar {
                    ch: char_at(pf, vpl),
                    context: "package name",
                },
            );
        }
        return (b.len(), missing());
    };
    let vs = &b[h + 1..];
    let at = match scan_base(vs) {
        Err((off, kind)) => return (h + 1 + off, kind),
        Ok(l) => h + 1 + l.end,
    };
    // After the base version: optional -rN, then must end.
    let mut i = at;
    if b.get(i) == Some(&b'-') && b.get(i + 1) == Some(&b'r') {
        let j = i + 2 + b[i + 2..].iter().take_while(|c| c.is_ascii_digit()).count();
        if j == i + 2 {
            // `-r` without digits: maybe part of a name like `foo-1-rc-2`; report the revision.
            return (i + 2, ErrorKind::MissingRevisionNumber);
        }
        i = j;
    }
    if i < b.len() {
        if b[i] == b'-' {
            // More hyphenated parts follow: the part from `h` would be a version inside the
            // package name.
            return (
                h,
                ErrorKind::NameEndsInVersion {
                    context: "package name",
                },
            );
        }
        return (
            i,
            ErrorKind::UnexpectedChar {
                ch: char_at(pf, i),
                context: "version",
            },
        );
    }
    // Not expected to be reached (split_pf would have succeeded); be generic.
    (h, missing())
}

/// Splits a PF or CPV like Portage's `portage.versions.pkgsplit`.
///
/// * `"foo-1.0-r1"` → `Some(("foo", "1.0", "r1"))`
/// * `"cat/foo-1.0"` → `Some(("cat/foo", "1.0", "r0"))` (category kept with the name)
/// * `"foo-1-2"`, `"foo"`, `"foo-r1"` → `None`
///
/// The revision is `"r0"` when absent, else `r` + the digits as written (`"r01"` stays
/// `"r01"`). Borrows from the input; never allocates.
///
/// Differences from Portage (deliberate): the input must not end in `\n` (Python's `$`
/// accepts one trailing newline), and only ASCII is accepted (Portage is ASCII too here).
pub fn pkgsplit(s: &str) -> Option<(&str, &str, &str)> {
    let (cat, pn, ver, rev) = catpkgsplit(s)?;
    match cat {
        None => Some((pn, ver, rev)),
        Some(c) => Some((&s[..c.len() + 1 + pn.len()], ver, rev)),
    }
}

/// Splits `category/PF` (or a bare PF) like Portage's `portage.versions.catpkgsplit`:
/// returns `(category, PN, PV, PR)`; the category is `None` when the input has no `/`
/// (Portage returns the string `"null"`). The category must be valid
/// (`^[A-Za-z0-9_][A-Za-z0-9_+.-]*$`). PR is `"r0"` when absent.
pub fn catpkgsplit(s: &str) -> Option<(Option<&str>, &str, &str, &str)> {
    let (cat, pf) = match s.find('/') {
        None => (None, s),
        Some(i) => {
            let c = &s[..i];
            check_category(c).ok()?;
            (Some(c), &s[i + 1..])
        }
    };
    let h = split_pf(pf.as_bytes())?;
    let pn = &pf[..h];
    let vr = &pf[h + 1..];
    let (ver, rev) = match vr.rfind("-r") {
        Some(r) if is_revision_token(&vr.as_bytes()[r + 1..]) => (&vr[..r], &vr[r + 1..]),
        _ => (vr, "r0"),
    };
    Some((cat, pn, ver, rev))
}

/// A fully qualified package version: `category/PN-PV[-rN]` (Portage's `_pkg_str` /
/// "cpv"), e.g. `sys-apps/portage-3.0.83-r1`.
///
/// Splitting follows Portage's `catpkgsplit` exactly (see [`pkgsplit`]). The string is kept
/// as written; [`Display`](fmt::Display) reproduces it.
///
/// Equality and hashing are by exact spelling (like Portage, where a cpv is a string):
/// `cat/foo-1.0` and `cat/foo-1.00` are different CPVs (two VDB directories can exist),
/// although their [`version`](Cpv::version)s compare equal. [`Ord`] sorts by category, PN,
/// then version ([`Version`]'s `vercmp` order), then spelling as a tie-breaker.
#[derive(Clone)]
pub struct Cpv {
    text: Box<str>,
    slash: u32,
    /// Absolute index of the hyphen ending PN.
    pn_end: u32,
    version: Version,
}

impl Cpv {
    /// Parses `category/PF`.
    ///
    /// ```
    /// # use atom::Cpv;
    /// let c = Cpv::parse("dev-libs/foo-bar-1.0-r1").unwrap();
    /// assert_eq!((c.category(), c.pn(), c.pv(), c.pr()), ("dev-libs", "foo-bar", "1.0", "r1"));
    /// assert!(Cpv::parse("dev-libs/foo").is_err());
    /// ```
    pub fn parse(s: &str) -> Result<Cpv, ParseError> {
        Cpv::parse_raw(s).map_err(|(off, kind)| ParseError::new(Subject::Cpv, s, off, kind))
    }

    fn parse_raw(s: &str) -> Result<Cpv, RawError> {
        if s.is_empty() {
            return Err((0, ErrorKind::Empty));
        }
        if s.len() > u32::MAX as usize {
            return Err((0, ErrorKind::TooLong));
        }
        let Some(slash) = s.find('/') else {
            return Err((0, ErrorKind::MissingCategory));
        };
        check_category(&s[..slash])?;
        let pf = &s[slash + 1..];
        let Some(h) = split_pf(pf.as_bytes()) else {
            let (off, kind) = diagnose_pf(pf, None);
            return Err((slash + 1 + off, kind));
        };
        Ok(Cpv {
            text: s.into(),
            slash: slash as u32,
            pn_end: (slash + 1 + h) as u32,
            version: Version::from_validated(&pf[h + 1..]),
        })
    }

    /// Builds a CPV from a category and a PF (`PN-PV[-rN]`), as found in a VDB
    /// `category/PF` directory path.
    pub fn from_parts(category: &str, pf: &str) -> Result<Cpv, ParseError> {
        check_category(category)
            .map_err(|(off, kind)| ParseError::new(Subject::Category, category, off, kind))?;
        let mut s = String::with_capacity(category.len() + 1 + pf.len());
        s.push_str(category);
        s.push('/');
        s.push_str(pf);
        Cpv::parse(&s)
    }

    /// The whole string, `category/PF`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The category, e.g. `dev-libs`.
    pub fn category(&self) -> &str {
        &self.text[..self.slash as usize]
    }

    /// The package name `PN`, e.g. `foo`.
    pub fn pn(&self) -> &str {
        &self.text[self.slash as usize + 1..self.pn_end as usize]
    }

    /// `category/PN`.
    pub fn cp(&self) -> &str {
        &self.text[..self.pn_end as usize]
    }

    /// `PF`: `PN-PV[-rN]` exactly as written (the VDB directory name).
    pub fn pf(&self) -> &str {
        &self.text[self.slash as usize + 1..]
    }

    /// `P`: `PN-PV` (no revision).
    pub fn p(&self) -> &str {
        let end = self.pn_end as usize + 1 + self.version.base().len();
        &self.text[self.slash as usize + 1..end]
    }

    /// `PV`: the version without revision.
    pub fn pv(&self) -> &str {
        self.version.base()
    }

    /// `PR`: `r0` when no revision is written, else `r` + digits as written.
    pub fn pr(&self) -> &str {
        self.version.pr()
    }

    /// `PVR` as Portage's ebuild environment defines it: `PV` when `PR` is `r0`, else
    /// `PV-PR` (so `foo-1-r0` has PVR `1`).
    pub fn pvr(&self) -> &str {
        if self.pr() == "r0" {
            self.pv()
        } else {
            self.version.as_str()
        }
    }

    /// The version (with revision, as written: Portage's `cpv.version`).
    pub fn version(&self) -> &Version {
        &self.version
    }
}

impl PartialEq for Cpv {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for Cpv {}

impl Hash for Cpv {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.text.hash(state);
    }
}

impl Ord for Cpv {
    fn cmp(&self, other: &Self) -> Ordering {
        self.category()
            .cmp(other.category())
            .then_with(|| self.pn().cmp(other.pn()))
            .then_with(|| self.version.cmp(&other.version))
            .then_with(|| self.text.cmp(&other.text))
    }
}

impl PartialOrd for Cpv {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Cpv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Cpv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cpv({:?})", &*self.text)
    }
}

impl FromStr for Cpv {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Cpv::parse(s)
    }
}

impl AsRef<str> for Cpv {
    fn as_ref(&self) -> &str {
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkgsplit_cases() {
        let ok = [
            ("foo-1", ("foo", "1", "r0")),
            ("foo-1.0-r1", ("foo", "1.0", "r1")),
            ("foo-r1-1", ("foo-r1", "1", "r0")),
            ("b-3-c-4-r3", ("b-3-c", "4", "r3")),
            ("b--1", ("b-", "1", "r0")),
            ("b-r0-1-r2", ("b-r0", "1", "r2")),
            ("foo-1_p-r01", ("foo", "1_p", "r01")),
            ("foo-01", ("foo", "01", "r0")),
            (
                "xf86-video-r128-6.10.2",
                ("xf86-video-r128", "6.10.2", "r0"),
            ),
            (
                "rb-readline-r7-0.5.2.0",
                ("rb-readline-r7", "0.5.2.0", "r0"),
            ),
            ("cat/foo-1", ("cat/foo", "1", "r0")),
            ("1-2", ("1", "2", "r0")),
            ("_-1", ("_", "1", "r0")),
            ("a+-1", ("a+", "1", "r0")),
        ];
        for (s, want) in ok {
            assert_eq!(pkgsplit(s), Some(want), "{s}");
        }
        for s in [
            "foo",
            "foo-",
            "foo-r1",
            "foo-1-2",
            "foo-1.0-r1-r2",
            "x-1-r1-2",
            "a-1a-1a",
            "foo-1\n",
            "-1",
            "-foo-1",
            "+foo-1",
            "foo.bar-1",
            "foo-1.",
            "foo-1-r",
            "foo-1-r1-1-r1",
            "cat/foo",
            "ca t/foo-1",
            "/foo-1",
            "a/b/c-1",
            "",
            "-",
            "foo-1 ",
        ] {
            assert_eq!(pkgsplit(s), None, "{s:?}");
        }
    }

    #[test]
    fn catpkgsplit_cases() {
        assert_eq!(catpkgsplit("a/b-1-r2"), Some((Some("a"), "b", "1", "r2")));
        assert_eq!(catpkgsplit("b-1"), Some((None, "b", "1", "r0")));
        assert_eq!(catpkgsplit(".a/b-1"), None);
    }

    #[test]
    fn names() {
        for ok in [
            "b",
            "b-",
            "b-r100",
            "_",
            "_-",
            "_+-",
            "b-r0",
            "foo-1x-2b3",
            "1-r1",
            "x-1a2",
        ] {
            assert!(is_valid_package_name(ok), "{ok}");
        }
        for bad in ["", "-b", "+b", "b-0", "b-1-r1", "b-1.2_p3", "b.c", "b--1"] {
            assert!(!is_valid_package_name(bad), "{bad}");
        }
        for ok in ["a", "_", "_.+-", "dev-libs", "virtual", "1"] {
            assert!(is_valid_category(ok), "{ok}");
        }
        for bad in ["", ".a", "-a", "+a", "a/b", "a b", "é"] {
            assert!(!is_valid_category(bad), "{bad}");
        }
    }

    #[test]
    fn cpv_accessors() {
        let c = Cpv::parse("dev-libs/foo-bar-1.0_rc2-r01").unwrap();
        assert_eq!(c.category(), "dev-libs");
        assert_eq!(c.pn(), "foo-bar");
        assert_eq!(c.cp(), "dev-libs/foo-bar");
        assert_eq!(c.pf(), "foo-bar-1.0_rc2-r01");
        assert_eq!(c.p(), "foo-bar-1.0_rc2");
        assert_eq!(c.pv(), "1.0_rc2");
        assert_eq!(c.pr(), "r01");
        assert_eq!(c.pvr(), "1.0_rc2-r01");
        assert_eq!(c.version().as_str(), "1.0_rc2-r01");
        assert_eq!(c.to_string(), "dev-libs/foo-bar-1.0_rc2-r01");

        let c = Cpv::parse("a/b-1-r0").unwrap();
        assert_eq!(c.pr(), "r0");
        assert_eq!(c.pvr(), "1");
        assert_eq!(c.version().as_str(), "1-r0");
        let c = Cpv::parse("a/b-1").unwrap();
        assert_eq!(c.pr(), "r0");
        assert_eq!(c.pvr(), "1");
        assert_eq!(c.p(), "b-1");

        let d = Cpv::from_parts("a", "b-1").unwrap();
        assert_eq!(d, c);
        assert!(Cpv::from_parts("a/x", "b-1").is_err());
        assert!(Cpv::from_parts("a", "b").is_err());
    }

    #[test]
    fn cpv_errors() {
        let cases = [
            ("", 0, ErrorKind::Empty),
            ("foo-1", 0, ErrorKind::MissingCategory),
            (
                ".a/b-1",
                0,
                ErrorKind::BadFirstChar {
                    context: "category",
                },
            ),
            ("a/", 2, ErrorKind::MissingPackageName),
            ("a/b", 3, ErrorKind::MissingVersion),
            (
                "a/b-1-2",
                3,
                ErrorKind::NameEndsInVersion {
                    context: "package name",
                },
            ),
            ("a/b-1.", 6, ErrorKind::ExpectedDigit),
            ("a/b-1_x", 6, ErrorKind::InvalidSuffix),
            ("a/b-1-r", 7, ErrorKind::MissingRevisionNumber),
        ];
        for (s, off, kind) in cases {
            let e = Cpv::parse(s).expect_err(s);
            assert_eq!((e.offset(), e.kind()), (off, kind), "{s:?}: {e}");
        }
        let e = Cpv::parse("a/b.c-1").unwrap_err();
        assert_eq!(e.offset(), 3);
        assert!(e.to_string().contains("unexpected character '.'"), "{e}");
    }

    #[test]
    fn cpv_eq_ord() {
        let a = Cpv::parse("a/b-1.0").unwrap();
        let b = Cpv::parse("a/b-1.00").unwrap();
        assert_ne!(a, b);
        assert_eq!(a.version(), b.version());
        let mut v: Vec<Cpv> = ["a/b-2", "a/b-10", "a/a-3", "0/z-1", "a/b-1.0", "a/b-1.00"]
            .iter()
            .map(|s| Cpv::parse(s).unwrap())
            .collect();
        v.sort();
        let got: Vec<&str> = v.iter().map(Cpv::as_str).collect();
        assert_eq!(
            got,
            ["0/z-1", "a/a-3", "a/b-1.0", "a/b-1.00", "a/b-2", "a/b-10"]
        );
    }
}

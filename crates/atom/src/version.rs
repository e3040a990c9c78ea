//! Package versions (PMS §3.2) with Portage's `vercmp` ordering.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use crate::error::{char_at, ErrorKind, ParseError, RawError, Subject};

/// A package version such as `1.2.3b_alpha4_p5-r6`, parsed per PMS §3.2 exactly as
/// Portage's `ver_regexp` accepts it:
///
/// ```text
/// digits ('.' digits)* [a-z]? ('_' ('alpha'|'beta'|'pre'|'rc'|'p') digits?)* ('-r' digits)?
/// ```
///
/// Numbers may be arbitrarily long; they are compared as digit strings and never
/// converted to machine integers, so nothing overflows.
///
/// # Ordering and equality
///
/// [`Ord`] is identical to Portage's `portage.versions.vercmp` (checked by a property test
/// against the real Portage):
///
/// * the first numeric component compares as an integer (`01 == 1`);
/// * later components compare as integers unless either starts with `0`, in which case
///   both compare as decimal fractions (trailing zeros ignored): `1.0 == 1.00`,
///   `1.01 == 1.010`, `1.01 < 1.1`, `1.002 < 1.01`, and any `0`-led component is less than a
///   non-`0`-led one;
/// * a version with fewer components is smaller (`1.0 > 1`), then no letter < any letter;
/// * suffixes compare pairwise, `_alpha < _beta < _pre < _rc < (no suffix) < _p`, a missing
///   suffix number counts as 0 (`_p == _p0`);
/// * finally the revision, with no revision equal to `-r0`.
///
/// [`PartialEq`]/[`Eq`]/[`Hash`] agree with that ordering, so `1.0 == 1.00` and
/// `1 == 1-r0`. Use [`Version::as_str`] when the exact spelling matters; [`Display`](fmt::Display)
/// reproduces the input exactly.
///
/// The `*` of a glob atom (`=cat/pkg-1.2*`) is not part of the version; it is
/// represented by [`Operator::EqualGlob`](crate::Operator::EqualGlob).
///
/// # Differences from Portage
///
/// Portage's `ver_regexp` is not ASCII-only and uses `$`, so `vercmp` also accepts
/// non-ASCII Unicode digits (`vercmp("\u{661}", "1") == 0`) and one trailing newline
/// (`"1\n"`). Both are rejected here. (Portage's `vercmp` also answers 0 for two identical
/// invalid strings without validating them; here invalid strings do not parse.)
#[derive(Clone)]
pub struct Version {
    text: Box<str>,
    /// End of the dotted numeric part.
    num_end: u32,
    /// Start of the suffix part (`num_end` or `num_end + 1` when there is a letter).
    suf_start: u32,
    /// End of the suffix part: start of `-r` or `text.len()`.
    suf_end: u32,
}

/// Layout of a scanned version without revision: (num_end, suf_start, end).
#[derive(Clone, Copy)]
pub(crate) struct BaseLayout {
    pub num_end: usize,
    pub suf_start: usize,
    pub end: usize,
}

#[inline]
fn digits_end(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    i
}

/// Suffix names in increasing order of precedence; index = rank.
/// `pre` must be tried before `p`.
const SUFFIXES: [(&[u8], u8); 5] = [
    (b"alpha", 0),
    (b"beta", 1),
    (b"pre", 2),
    (b"rc", 3),
    (b"p", 4),
];
const RANK_P: u8 = 4;

/// Scans the longest prefix of `b` that is a version without revision.
///
/// Returns the layout and stops at the first byte that cannot continue the version;
/// the caller decides whether that is an error. Errors are only returned when the
/// version is syntactically broken at that point (e.g. `1.`, `1_x`).
pub(crate) fn scan_base(b: &[u8]) -> Result<BaseLayout, RawError> {
    if b.is_empty() {
        return Err((0, ErrorKind::ExpectedDigit));
    }
    if !b[0].is_ascii_digit() {
        return Err((0, ErrorKind::ExpectedDigit));
    }
    let mut i = digits_end(b, 1);
    while i < b.len() && b[i] == b'.' {
        let j = digits_end(b, i + 1);
        if j == i + 1 {
            return Err((i + 1, ErrorKind::ExpectedDigit));
        }
        i = j;
    }
    let num_end = i;
    if i < b.len() && b[i].is_ascii_lowercase() {
        i += 1;
    }
    let suf_start = i;
    while i < b.len() && b[i] == b'_' {
        let rest = &b[i + 1..];
        let Some(&(name, _)) = SUFFIXES.iter().find(|(n, _)| rest.starts_with(n)) else {
            return Err((i + 1, ErrorKind::InvalidSuffix));
        };
        i = digits_end(b, i + 1 + name.len());
    }
    Ok(BaseLayout {
        num_end,
        suf_start,
        end: i,
    })
}

/// True if `b` is exactly a version without revision (Portage `_v`).
#[inline]
pub(crate) fn is_base_version(b: &[u8]) -> bool {
    matches!(scan_base(b), Ok(l) if l.end == b.len())
}

/// True if `b` is exactly `r<digits>` (a revision token after `-`).
#[inline]
pub(crate) fn is_revision_token(b: &[u8]) -> bool {
    b.len() >= 2 && b[0] == b'r' && b[1..].iter().all(u8::is_ascii_digit)
}

/// Scans a full version (with optional revision) that must span all of `s`.
fn scan_full(s: &str) -> Result<(BaseLayout, usize), RawError> {
    let b = s.as_bytes();
    if b.is_empty() {
        return Err((0, ErrorKind::Empty));
    }
    if b.len() > u32::MAX as usize {
        return Err((0, ErrorKind::TooLong));
    }
    let base = scan_base(b)?;
    let i = base.end;
    if i == b.len() {
        return Ok((base, i));
    }
    if b[i] == b'-' && b.get(i + 1) == Some(&b'r') {
        let j = digits_end(b, i + 2);
        if j == i + 2 {
            return Err((i + 2, ErrorKind::MissingRevisionNumber));
        }
        if j == b.len() {
            return Ok((base, i));
        }
        return Err((
            j,
            ErrorKind::UnexpectedChar {
                ch: char_at(s, j),
                context: "version",
            },
        ));
    }
    Err((
        i,
        ErrorKind::UnexpectedChar {
            ch: char_at(s, i),
            context: "version",
        },
    ))
}

impl Version {
    /// Parses a version, with optional `-rN` revision.
    ///
    /// ```
    /// # use atom::Version;
    /// let v = Version::parse("1.2.3b_rc1-r2").unwrap();
    /// assert_eq!(v.base(), "1.2.3b_rc1");
    /// assert_eq!(v.revision(), Some("2"));
    /// assert!(Version::parse("1.0").unwrap() == Version::parse("1.00").unwrap());
    /// assert!(Version::parse("1..2").is_err());
    /// ```
    pub fn parse(s: &str) -> Result<Version, ParseError> {
        match scan_full(s) {
            Ok((base, suf_end)) => Ok(Version::from_layout(s, base, suf_end)),
            Err((off, kind)) => Err(ParseError::new(Subject::Version, s, off, kind)),
        }
    }

    fn from_layout(s: &str, base: BaseLayout, suf_end: usize) -> Version {
        Version {
            text: s.into(),
            num_end: base.num_end as u32,
            suf_start: base.suf_start as u32,
            suf_end: suf_end as u32,
        }
    }

    /// Builds a version from a string already known to be valid.
    /// Panics never: falls back to a full re-scan and is only called on validated input.
    pub(crate) fn from_validated(s: &str) -> Version {
        match scan_full(s) {
            Ok((base, suf_end)) => Version::from_layout(s, base, suf_end),
            // Unreachable for validated input; keep a harmless value instead of panicking.
            Err(_) => Version {
                text: "0".into(),
                num_end: 1,
                suf_start: 1,
                suf_end: 1,
            },
        }
    }

    /// The version exactly as written, including any `-rN`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The version without revision (Portage's `PV`), e.g. `1.2_rc1` for `1.2_rc1-r3`.
    pub fn base(&self) -> &str {
        &self.text[..self.suf_end as usize]
    }

    /// The revision digits as written (`"3"` for `-r3`, `"03"` for `-r03`), or `None`
    /// when there is no `-r` part.
    pub fn revision(&self) -> Option<&str> {
        let e = self.suf_end as usize;
        if e < self.text.len() {
            Some(&self.text[e + 2..])
        } else {
            None
        }
    }

    /// `PR`: `"r0"` when there is no revision, else `r` + the digits as written.
    pub fn pr(&self) -> &str {
        let e = self.suf_end as usize;
        if e < self.text.len() {
            &self.text[e + 1..]
        } else {
            "r0"
        }
    }

    /// The dotted numeric components as written (`"1.2.3"` for `1.2.3b_p1`).
    pub fn numbers(&self) -> &str {
        &self.text[..self.num_end as usize]
    }

    /// The letter after the numeric components, if any (`Some('b')` for `1.2b`).
    pub fn letter(&self) -> Option<char> {
        if self.suf_start > self.num_end {
            Some(self.text.as_bytes()[self.num_end as usize] as char)
        } else {
            None
        }
    }

    /// The suffix part as written, e.g. `"_alpha1_p"` (empty if none).
    pub fn suffixes(&self) -> &str {
        &self.text[self.suf_start as usize..self.suf_end as usize]
    }

    /// Compares ignoring revisions (`1.0-r1` vs `1.0-r5` are equal here).
    pub fn cmp_base(&self, other: &Version) -> Ordering {
        cmp_base_parts(self, other)
    }

    /// Portage's `=ver*` glob test: does `self` (the candidate, as written) match the glob
    /// pattern `pattern*`?
    ///
    /// This is a literal prefix match on the version strings (revision included as written)
    /// after stripping leading zeros of the first component, restricted to component
    /// boundaries (Portage bug 560466): the character after the matched prefix must be one of
    /// `._-`, or switch between digit and non-digit. So `=1*` matches `1`, `1.2`, `1a`,
    /// `1_p1`, `1-r3` but not `10`; `=1.2*` does not match `1.20`; `=1-r1*` matches `1-r1`
    /// but not `1-r10` nor `1` (the pattern's revision is matched literally, as written).
    pub fn glob_matches(&self, pattern: &Version) -> bool {
        glob_match(pattern, self)
    }
}

/// Splits `text[..suf_end]` normalisation used by the glob: returns (prefix, rest) such that
/// the normalised string is `prefix ++ rest`.
fn glob_norm(v: &Version) -> (&'static [u8], &[u8]) {
    let b = v.text.as_bytes();
    let base_end = v.suf_end as usize;
    let zeros = b[..base_end].iter().take_while(|&&c| c == b'0').count();
    let rest = &b[zeros..];
    let need_zero = zeros == base_end || !rest[0].is_ascii_digit();
    (if need_zero { b"0" } else { b"" }, rest)
}

fn glob_match(pattern: &Version, cand: &Version) -> bool {
    let (pp, pr) = glob_norm(pattern);
    let (cp, cr) = glob_norm(cand);
    let plen = pp.len() + pr.len();
    let clen = cp.len() + cr.len();
    if clen < plen {
        return false;
    }
    let mut c = cp.iter().chain(cr.iter());
    for &pb in pp.iter().chain(pr.iter()) {
        if c.next() != Some(&pb) {
            return false;
        }
    }
    let Some(&next) = c.next() else {
        return true;
    };
    let last = *pr.last().or(pp.last()).unwrap_or(&b'0');
    matches!(next, b'.' | b'_' | b'-') || last.is_ascii_digit() != next.is_ascii_digit()
}

#[inline]
fn strip_leading_zeros(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|&&c| c == b'0').count();
    &b[n..]
}

#[inline]
fn strip_trailing_zeros(b: &[u8]) -> &[u8] {
    let n = b.iter().rev().take_while(|&&c| c == b'0').count();
    &b[..b.len() - n]
}

/// Integer comparison of two digit strings of any length.
#[inline]
fn cmp_int(a: &[u8], b: &[u8]) -> Ordering {
    let a = strip_leading_zeros(a);
    let b = strip_leading_zeros(b);
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// Comparison of a non-first numeric component, as Portage's vercmp does it.
#[inline]
fn cmp_component(a: &[u8], b: &[u8]) -> Ordering {
    if a.first() == Some(&b'0') || b.first() == Some(&b'0') {
        // Both compared as decimal fractions: right-pad with zeros to equal length and
        // compare, which equals comparing with trailing zeros removed.
        strip_trailing_zeros(a).cmp(strip_trailing_zeros(b))
    } else {
        cmp_int(a, b)
    }
}

/// One suffix: (rank, digits).
#[inline]
fn parse_suffix(s: &[u8]) -> (u8, &[u8]) {
    for &(name, rank) in &SUFFIXES {
        if s.starts_with(name) {
            return (rank, &s[name.len()..]);
        }
    }
    // Not reachable for validated versions.
    (RANK_P, s)
}

fn suffix_iter(v: &Version) -> impl Iterator<Item = (u8, &[u8])> {
    let s = &v.text.as_bytes()[v.suf_start as usize..v.suf_end as usize];
    s.split(|&c| c == b'_').skip(1).map(parse_suffix)
}

fn cmp_base_parts(a: &Version, b: &Version) -> Ordering {
    let an = &a.text.as_bytes()[..a.num_end as usize];
    let bn = &b.text.as_bytes()[..b.num_end as usize];
    let mut ai = an.split(|&c| c == b'.');
    let mut bi = bn.split(|&c| c == b'.');
    // First component: plain integer comparison.
    let o = cmp_int(ai.next().unwrap_or(b""), bi.next().unwrap_or(b""));
    if o != Ordering::Equal {
        return o;
    }
    loop {
        match (ai.next(), bi.next()) {
            (Some(x), Some(y)) => {
                let o = cmp_component(x, y);
                if o != Ordering::Equal {
                    return o;
                }
            }
            (Some(_), None) => return Ordering::Greater,
            (None, Some(_)) => return Ordering::Less,
            (None, None) => break,
        }
    }
    let o = a.letter().cmp(&b.letter());
    if o != Ordering::Equal {
        return o;
    }
    let mut asu = suffix_iter(a);
    let mut bsu = suffix_iter(b);
    loop {
        match (asu.next(), bsu.next()) {
            (Some((ra, na)), Some((rb, nb))) => {
                let o = ra.cmp(&rb).then_with(|| cmp_int(na, nb));
                if o != Ordering::Equal {
                    return o;
                }
            }
            // A missing suffix behaves like `_p` with number -1: it is above every
            // non-`_p` suffix and below every `_p`.
            (Some((ra, _)), None) => {
                return if ra == RANK_P {
                    Ordering::Greater
                } else {
                    Ordering::Less
                }
            }
            (None, Some((rb, _))) => {
                return if rb == RANK_P {
                    Ordering::Less
                } else {
                    Ordering::Greater
                }
            }
            (None, None) => return Ordering::Equal,
        }
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        if self.text == other.text {
            return Ordering::Equal;
        }
        cmp_base_parts(self, other).then_with(|| {
            cmp_int(
                self.revision().unwrap_or("").as_bytes(),
                other.revision().unwrap_or("").as_bytes(),
            )
        })
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

impl Hash for Version {
    /// Hashes a normal form consistent with [`Ord`]: equal versions hash equally.
    fn hash<H: Hasher>(&self, state: &mut H) {
        let n = &self.text.as_bytes()[..self.num_end as usize];
        let mut comps = n.split(|&c| c == b'.');
        state.write(strip_leading_zeros(comps.next().unwrap_or(b"")));
        state.write_u8(0xff);
        for c in comps {
            if c.first() == Some(&b'0') {
                state.write_u8(1);
                state.write(strip_trailing_zeros(c));
            } else {
                state.write_u8(2);
                state.write(c);
            }
            state.write_u8(0xff);
        }
        state.write_u8(0xfe);
        state.write_u32(self.letter().map_or(0, u32::from));
        for (rank, num) in suffix_iter(self) {
            state.write_u8(rank);
            state.write(strip_leading_zeros(num));
            state.write_u8(0xff);
        }
        state.write_u8(0xfe);
        state.write(strip_leading_zeros(
            self.revision().unwrap_or("").as_bytes(),
        ));
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Version({:?})", &*self.text)
    }
}

impl FromStr for Version {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Version::parse(s)
    }
}

impl AsRef<str> for Version {
    fn as_ref(&self) -> &str {
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::hash_map::DefaultHasher;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap_or_else(|e| panic!("{e}"))
    }

    fn h(x: &Version) -> u64 {
        let mut s = DefaultHasher::new();
        x.hash(&mut s);
        s.finish()
    }

    #[test]
    fn parse_valid() {
        for s in [
            "0",
            "1a",
            "1.2.3",
            "1_alpha",
            "1_alpha1_beta2_pre3_rc4_p5",
            "1-r0",
            "1-r01",
            "18446744073709551616",
            "1.2.3.200702020000",
            "1z_p-r1",
            "0_pre20170216",
        ] {
            let x = v(s);
            assert_eq!(x.as_str(), s);
            assert_eq!(x.to_string(), s);
        }
    }

    #[test]
    fn parse_invalid() {
        for (s, off) in [
            ("", 0),
            (".", 0),
            ("-1", 0),
            (".1", 0),
            ("1.", 2),
            ("a", 0),
            ("1a-1", 2),
            ("1aa", 2),
            ("1.a", 2),
            ("1_a", 2),
            ("1a.2", 2),
            ("1..2", 2),
            ("1-r", 3),
            ("1-rx", 3),
            ("1-r1-r2", 4),
            ("1A", 1),
            ("1 ", 1),
            ("1\n", 1),
            ("\u{661}", 0),
        ] {
            let e = Version::parse(s).expect_err(s);
            assert_eq!(e.offset(), off, "{s:?}: {e}");
        }
    }

    #[test]
    fn accessors() {
        let x = v("1.2.3b_alpha4_p5-r06");
        assert_eq!(x.numbers(), "1.2.3");
        assert_eq!(x.letter(), Some('b'));
        assert_eq!(x.suffixes(), "_alpha4_p5");
        assert_eq!(x.base(), "1.2.3b_alpha4_p5");
        assert_eq!(x.revision(), Some("06"));
        assert_eq!(x.pr(), "r06");
        let y = v("2");
        assert_eq!(y.letter(), None);
        assert_eq!(y.revision(), None);
        assert_eq!(y.pr(), "r0");
        assert_eq!(y.suffixes(), "");
    }

    #[test]
    fn ordering() {
        let lt = [
            ("1", "2"),
            ("1", "1.0"),
            ("1.0", "1.0.0"),
            ("1.01", "1.1"),
            ("1.002", "1.01"),
            ("1.0.1", "1.002"),
            ("1.034", "1.1"),
            ("0.001", "0.01"),
            ("1.09", "1.1"),
            ("1.9", "1.10"),
            ("1", "1a"),
            ("12.2b", "12.2.5"),
            ("1_alpha", "1_beta"),
            ("1_rc", "1"),
            ("1", "1_p"),
            ("1", "1_p0"),
            ("1_alpha_beta", "1_alpha"),
            ("1_alpha", "1_alpha_p"),
            ("1_alpha_beta", "1_alpha1"),
            ("1-r1", "1-r2"),
            ("1-r9", "1-r10"),
            ("1.0_alpha", "1.0"),
            ("1", "1.0_alpha"),
            ("99999999999999999999999", "100000000000000000000000"),
        ];
        for (a, b) in lt {
            assert_eq!(v(a).cmp(&v(b)), Ordering::Less, "{a} < {b}");
            assert_eq!(v(b).cmp(&v(a)), Ordering::Greater, "{b} > {a}");
        }
        let eq = [
            ("1", "01"),
            ("1.0", "1.00"),
            ("1.0100", "1.010"),
            ("1", "1-r0"),
            ("1-r0", "1-r00"),
            ("1_p", "1_p0"),
            ("1_beta01", "1_beta1"),
            ("0", "00"),
        ];
        for (a, b) in eq {
            assert_eq!(v(a), v(b), "{a} == {b}");
            assert_eq!(h(&v(a)), h(&v(b)), "hash {a} == {b}");
        }
        assert_ne!(v("1.01.2"), v("1.010.02"));
        assert_ne!(v("1.0"), v("1"));
    }

    #[test]
    fn glob() {
        let m = |p: &str, c: &str| v(c).glob_matches(&v(p));
        assert!(m("1", "1"));
        assert!(m("1", "1.0"));
        assert!(m("1", "1z"));
        assert!(m("1", "1.2z"));
        assert!(m("1", "1_alpha1"));
        assert!(m("1", "1-r3"));
        assert!(!m("1", "10"));
        assert!(!m("1z", "1"));
        assert!(!m("1.2z", "1"));
        assert!(!m("1_alpha1", "1"));
        assert!(m("1_alpha", "1_alpha-r1"));
        assert!(m("1_alpha", "1_alpha1"));
        assert!(!m("1_p", "1_pre"));
        assert!(!m("1.0", "1"));
        assert!(!m("1-r1", "1_alpha1"));
        assert!(m("01", "1.2"));
        assert!(m("1", "001.2"));
        assert!(m("0", "00.1"));
        assert!(m("1-r1", "1-r1"));
        assert!(!m("1-r1", "1-r10"));
        assert!(!m("1-r0", "1"));
    }
}

//! portage-utils test vectors (shared/corpora/atoms/portage-utils, see SOURCE.txt there):
//! atom_compare, atom_explode (incl. the 74,122 real CPVs split by Portage) and qatom.

mod common;

use std::cmp::Ordering;

use atom::{catpkgsplit, parse_query, pkgsplit, Cpv, Dep, ErrorKind, PkgRef, Query};

/// Lines without blanks and `#` comments.
fn lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
}

fn is_op_start(s: &str) -> bool {
    s.starts_with(['<', '>', '=', '~', '!'])
}

/// `a-1` → `cat/a-1`, `>=a-1` → `>=cat/a-1` (the vectors have no categories).
fn with_cat(s: &str) -> String {
    let n = s
        .bytes()
        .take_while(|c| matches!(c, b'<' | b'>' | b'=' | b'~'))
        .count();
    format!("{}cat/{}", &s[..n], &s[n..])
}

/// Cases of atom_compare/static.tests we do not evaluate, and why.
/// Each must still fail to parse with the given error.
const COMPARE_SKIPS: [(&str, ErrorKind); 3] = [
    // '~' with a revision: Portage's parser tolerates it (and ignores the revision), PMS and
    // pkgcraft forbid it; we are strict.
    ("a-1-r1 ~a-1-r1", ErrorKind::ApproxWithRevision),
    ("a-1-r1 ~a-1-r2", ErrorKind::ApproxWithRevision),
    // `_r1` is not a version suffix; Portage rejects this atom too (qatom is lenient).
    ("a-3.10.5 >=a-3.10.0_p1_r1", ErrorKind::InvalidSuffix),
];

#[test]
fn atom_compare_static() {
    let tests = common::read_corpus("portage-utils/atom_compare/static.tests");
    let good = common::read_corpus("portage-utils/atom_compare/static.good");
    let tests: Vec<&str> = lines(&tests).collect();
    let good: Vec<&str> = lines(&good).collect();
    assert_eq!(
        tests.len(),
        good.len(),
        "static.tests and static.good disagree"
    );
    assert!(tests.len() >= 50);
    let mut evaluated = 0;
    for (t, g) in tests.iter().zip(&good) {
        let (a, b) = t.split_once(' ').expect("pair");
        let g: Vec<&str> = g.split_whitespace().collect();
        assert_eq!((g[0], g[2]), (a, b), "line mismatch {t:?} vs {g:?}");
        let want = g[1];
        if let Some((_, kind)) = COMPARE_SKIPS.iter().find(|(c, _)| c == t) {
            let err = Dep::parse(&with_cat(b)).expect_err(b);
            assert_eq!(err.kind(), *kind, "{err}");
            continue;
        }
        let ca = Cpv::parse(&with_cat(a)).unwrap_or_else(|e| panic!("{e}"));
        if is_op_start(b) {
            let d = Dep::parse(&with_cat(b)).unwrap_or_else(|e| panic!("{e}"));
            let m = d.matches_cpv(&ca) && d.matches(&PkgRef::new(&ca));
            let got = if m { "==" } else { "!=" };
            assert_eq!(got, want, "{a} {want} {b}");
        } else {
            let cb = Cpv::parse(&with_cat(b)).unwrap_or_else(|e| panic!("{e}"));
            let got = match ca.version().cmp(cb.version()) {
                Ordering::Less => "<",
                Ordering::Equal => "==",
                Ordering::Greater => ">",
            };
            assert_eq!(got, want, "{a} {want} {b}");
        }
        evaluated += 1;
    }
    assert_eq!(evaluated, tests.len() - COMPARE_SKIPS.len());
}

/// Version of a query, or `None`.
fn qver(q: &Query) -> Option<&atom::Version> {
    q.version()
}

#[test]
fn atom_compare_qatom_only() {
    // qatom-specific comparisons (static.q.*): partial atoms, evaluated with parse_query.
    let tests = common::read_corpus("portage-utils/atom_compare/static.q.tests");
    let good = common::read_corpus("portage-utils/atom_compare/static.q.good");
    let tests: Vec<&str> = lines(&tests).collect();
    let good: Vec<&str> = lines(&good).collect();
    assert_eq!(tests.len(), good.len());
    assert!(tests.len() >= 8);
    for (t, g) in tests.iter().zip(&good) {
        let (a, b) = t.split_once(' ').expect("pair");
        let g: Vec<&str> = g.split_whitespace().collect();
        assert_eq!((g[0], g[2]), (a, b));
        let want = g[1];
        let qa = parse_query(a).unwrap_or_else(|e| panic!("{e}"));
        let qb = parse_query(b).unwrap_or_else(|e| panic!("{e}"));
        let got = if is_op_start(b) {
            // Match mode: does the package `a` satisfy the atom `b`?
            let cpv = Cpv::from_parts(
                qa.category().unwrap_or("cat"),
                &format!("{}-{}", qa.package(), qver(&qa).expect("versioned")),
            )
            .unwrap();
            let mut p = PkgRef::new(&cpv);
            if let Some(sl) = qa.slot() {
                p = p.with_slot(sl);
            }
            if qb.matches(&p) {
                "=="
            } else {
                "!="
            }
        } else {
            // Compare mode: names must agree (a missing category matches any), then versions
            // (a missing version or slot on one side is not compared).
            let names = qa.package() == qb.package()
                && (qa.category().is_none()
                    || qb.category().is_none()
                    || qa.category() == qb.category());
            if !names {
                "!="
            } else {
                match (qver(&qa), qver(&qb)) {
                    (Some(x), Some(y)) => match x.cmp(y) {
                        Ordering::Less => "<",
                        Ordering::Equal => "==",
                        Ordering::Greater => ">",
                    },
                    _ => "==",
                }
            }
        };
        assert_eq!(got, want, "{a} {want} {b}");
    }
}

/// qatom/atom_explode output: `CAT / [P] PN - PVR [PV] [PR]`, `null`/`(null)` when absent.
fn explode(input: &str) -> String {
    let q = parse_query(input).unwrap_or_else(|e| panic!("{input}: {e}"));
    let cat = q.category().unwrap_or("null");
    let pn = q.package();
    match q.version() {
        None => format!("{cat} / [{pn}] {pn} - (null) [(null)] [r0]"),
        Some(v) => {
            let pv = v.base();
            let pr = v.pr();
            format!("{cat} / [{pn}-{pv}] {pn} - {pv}-{pr} [{pv}] [{pr}]")
        }
    }
}

#[test]
fn atom_explode_basic() {
    let tests = common::read_corpus("portage-utils/atom_explode/basic.tests");
    let good = common::read_corpus("portage-utils/atom_explode/basic.good");
    let tests: Vec<&str> = lines(&tests).collect();
    let good: Vec<&str> = lines(&good).collect();
    assert_eq!(tests.len(), good.len());
    assert!(tests.len() >= 60);
    for (t, g) in tests.iter().zip(&good) {
        let (input, want) = g.split_once(" -> ").expect("arrow");
        assert_eq!(input, *t);
        assert_eq!(explode(t), want, "{t}");
    }
}

#[test]
fn atom_explode_real_cpvs() {
    let atoms = common::read_xz_corpus("portage-utils/atom_explode/portageatoms.xz");
    let list = common::read_xz_corpus("portage-utils/atom_explode/ebuildlist.xz");
    let inputs: Vec<&str> = list.lines().collect();
    let mut n = 0;
    let mut with_cat = 0;
    for (line, input) in atoms.lines().zip(&inputs) {
        let (cpv, rest) = line.split_once(" -> ").expect("arrow");
        assert_eq!(cpv, *input, "ebuildlist and portageatoms disagree");
        // rest: CAT / [P] PN - PVR [PV] [PR]
        let f: Vec<&str> = rest.split(' ').collect();
        assert_eq!(f.len(), 8, "{line}");
        let strip = |x: &str| x.trim_start_matches('[').trim_end_matches(']').to_owned();
        let (cat, p, pn, pvr, pv, pr) = (f[0], strip(f[2]), f[3], f[5], strip(f[6]), strip(f[7]));

        let (got_cat, got_pn, got_pv, got_pr) =
            catpkgsplit(cpv).unwrap_or_else(|| panic!("catpkgsplit({cpv}) failed"));
        assert_eq!(got_cat.unwrap_or("null"), cat, "{line}");
        assert_eq!(
            (got_pn, got_pv, got_pr),
            (pn, pv.as_str(), pr.as_str()),
            "{line}"
        );
        assert_eq!(format!("{got_pn}-{got_pv}"), p, "{line}");
        assert_eq!(format!("{got_pv}-{got_pr}"), pvr, "{line}");

        if cat == "null" {
            let (a, b, c) = pkgsplit(cpv).unwrap();
            assert_eq!((a, b, c), (pn, pv.as_str(), pr.as_str()));
        } else {
            with_cat += 1;
            let c = Cpv::parse(cpv).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                (c.category(), c.pn(), c.pv(), c.pr(), c.p()),
                (cat, pn, pv.as_str(), pr.as_str(), p.as_str())
            );
            assert_eq!(c.to_string(), cpv);
            let (a, _, _) = pkgsplit(cpv).unwrap();
            assert_eq!(a, c.cp());
            // And as an exact-version atom it matches itself.
            let d = Dep::parse(&format!("={cpv}")).unwrap_or_else(|e| panic!("{e}"));
            assert!(d.matches_cpv(&c));
        }
        n += 1;
    }
    assert_eq!(n, 74_122, "expected all 74,122 CPVs");
    assert_eq!(inputs.len(), n);
    assert!(with_cat > 30_000);
}

/// Minimal shell-word splitting for cases.tsv (single quotes only); stops at an unquoted
/// or quoted `#` word (a comment in the original test script).
fn shell_words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quoted = false;
    for ch in s.chars() {
        match ch {
            '\'' => {
                quoted = !quoted;
                in_word = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    if let Some(i) = out.iter().position(|w| w.starts_with('#')) {
        out.truncate(i);
    }
    out
}

/// qatom's field values for a query.
fn qatom_field(q: &Query, name: &str) -> Option<String> {
    let v = q.version();
    match name {
        "CATEGORY" => q.category().map(str::to_owned),
        "PN" => Some(q.package().to_owned()),
        "PV" => v.map(|v| v.base().to_owned()),
        "PR" => v.and_then(|v| v.revision()).map(|r| format!("r{r}")),
        "PVR" => v.map(|v| v.as_str().to_owned()),
        "P" => Some(match v {
            Some(v) => format!("{}-{}", q.package(), v.base()),
            None => q.package().to_owned(),
        }),
        "PF" => Some(match v {
            Some(v) => format!("{}-{}", q.package(), v),
            None => q.package().to_owned(),
        }),
        "SLOT" => q.slot().map(str::to_owned),
        "REPO" => q.repo().map(str::to_owned),
        _ => panic!("unsupported qatom field {name}"),
    }
}

/// qatom -F: `%{X}` prints `<unset>` when unset, `%[X]` prints nothing.
fn qatom_format(q: &Query, fmt: &str) -> String {
    let mut out = String::new();
    let mut rest = fmt;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let r = &rest[i + 1..];
        let (close, unset) = match r.chars().next() {
            Some('{') => ('}', "<unset>"),
            Some('[') => (']', ""),
            _ => panic!("bad format {fmt}"),
        };
        let end = r.find(close).expect("closing bracket");
        let name = &r[1..end];
        out.push_str(&qatom_field(q, name).unwrap_or_else(|| unset.to_owned()));
        rest = &r[end + 1..];
    }
    out.push_str(rest);
    out
}

/// qatom's default output: `CATEGORY PN PV` (always, `<unset>` if absent) then PR, SLOT,
/// REPO, operator prefix and suffix when present.
fn qatom_default(q: &Query, input: &str) -> String {
    let mut parts: Vec<String> = ["CATEGORY", "PN", "PV"]
        .iter()
        .map(|f| qatom_field(q, f).unwrap_or_else(|| "<unset>".into()))
        .collect();
    parts.extend(
        ["PR", "SLOT", "REPO"]
            .iter()
            .filter_map(|f| qatom_field(q, f)),
    );
    // Only an operator the user wrote is shown (parse_query adds '=' to `cat/pkg-1`).
    if is_op_start(input) {
        if let Some(op) = q.operator() {
            parts.push(op.prefix().to_owned());
            if op == atom::Operator::EqualGlob {
                parts.push("*".into());
            }
        }
    }
    parts.join(" ")
}

#[test]
fn qatom_cases() {
    let text = common::read_corpus("portage-utils/qatom/cases.tsv");
    let mut n = 0;
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let cols: Vec<&str> = line.split('\t').collect();
        assert_eq!(cols.len(), 3, "{line:?}");
        let (id, want, args) = (cols[0], cols[1], cols[2]);
        let words = shell_words(args);
        let (fmt, atom) = match words.as_slice() {
            [f, fmt, atom] if f == "-F" => (Some(fmt.as_str()), atom.as_str()),
            [atom] => (None, atom.as_str()),
            w => panic!("{id}: unexpected arguments {w:?}"),
        };
        let q = parse_query(atom).unwrap_or_else(|e| panic!("{id}: {e}"));
        let got = match fmt {
            Some(f) => qatom_format(&q, f),
            None => qatom_default(&q, atom),
        };
        assert_eq!(got, want, "{id}: qatom {args}");
        n += 1;
    }
    assert!(n >= 25, "only {n} qatom cases");
}

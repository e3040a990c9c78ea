//! pkgcraft's version.toml and dep.toml test vectors
//! (shared/corpora/atoms/pkgcraft, see SOURCE.txt there).

mod common;

use std::cmp::Ordering;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use atom::{Blocker, Dep, ErrorKind, Operator, SlotOperator, Version};
use toml::Value;

fn load(name: &str) -> toml::Table {
    let text = common::read_corpus(&format!("pkgcraft/{name}"));
    text.parse::<toml::Table>()
        .unwrap_or_else(|e| panic!("cannot parse {name}: {e}"))
}

fn array<'a>(t: &'a toml::Table, key: &str) -> &'a Vec<Value> {
    t.get(key)
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("missing array {key:?}"))
}

fn s(v: &Value) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("expected string, got {v:?}"))
}

/// An operator-prefixed version as pkgcraft writes it (`>=1`, `=1*`, `1`). Versions with
/// operators are parsed through a dep `op a/b-ver[*]`; the result is a Dep for those and a
/// bare Version otherwise.
enum OpVersion {
    Plain(Version),
    Op(Dep),
}

fn split_op(v: &str) -> (&str, &str) {
    let n = v
        .bytes()
        .take(2)
        .take_while(|c| matches!(c, b'<' | b'>' | b'=' | b'~'))
        .count();
    v.split_at(n)
}

fn parse_op_version(v: &str) -> Result<OpVersion, atom::ParseError> {
    let (op, rest) = split_op(v);
    if op.is_empty() {
        Version::parse(v).map(OpVersion::Plain)
    } else {
        let (ver, star) = match rest.strip_suffix('*') {
            Some(r) => (r, "*"),
            None => (rest, ""),
        };
        Dep::parse(&format!("{op}a/b-{ver}{star}")).map(OpVersion::Op)
    }
}

fn hash_of<T: Hash>(x: &T) -> u64 {
    let mut h = DefaultHasher::new();
    x.hash(&mut h);
    h.finish()
}

/// The u64-overflow vectors pkgcraft lists as invalid. We follow Portage (and PMS, which sets
/// no limit): numbers of any length are valid, so these must parse.
const OVERFLOW_CASES: [&str; 5] = [
    "18446744073709551616",
    "1.18446744073709551616",
    "1.2.18446744073709551616",
    "1_p18446744073709551616",
    "1-r18446744073709551616",
];

#[test]
fn version_valid() {
    let t = load("version.toml");
    let valid = array(&t, "valid");
    assert!(valid.len() >= 10);
    for v in valid {
        let v = s(v);
        match parse_op_version(v) {
            Ok(OpVersion::Plain(x)) => assert_eq!(x.to_string(), v),
            Ok(OpVersion::Op(d)) => {
                let (op, rest) = split_op(v);
                assert_eq!(d.operator().map(Operator::prefix), Some(op));
                let want_glob = rest.ends_with('*');
                assert_eq!(d.operator() == Some(Operator::EqualGlob), want_glob, "{v}");
            }
            Err(e) => panic!("valid version {v:?} rejected: {e}"),
        }
    }
}

#[test]
fn version_invalid() {
    let t = load("version.toml");
    let invalid = array(&t, "invalid");
    let mut checked = 0;
    for v in invalid {
        let v = s(v);
        if OVERFLOW_CASES.contains(&v) {
            let x = Version::parse(v).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(x.as_str(), v);
            continue;
        }
        assert!(
            parse_op_version(v).is_err(),
            "invalid version {v:?} accepted"
        );
        checked += 1;
    }
    assert_eq!(checked, invalid.len() - OVERFLOW_CASES.len());
    assert!(checked >= 10);
}

fn compare_expr(expr: &str) -> (String, String, String) {
    let parts: Vec<&str> = expr.split_whitespace().collect();
    assert_eq!(parts.len(), 3, "bad expression {expr:?}");
    (parts[0].into(), parts[1].into(), parts[2].into())
}

fn check_op(ord: Ordering, op: &str) -> bool {
    match op {
        "==" => ord == Ordering::Equal,
        "!=" => ord != Ordering::Equal,
        "<" => ord == Ordering::Less,
        ">" => ord == Ordering::Greater,
        "<=" => ord != Ordering::Greater,
        ">=" => ord != Ordering::Less,
        _ => panic!("unknown operator {op}"),
    }
}

#[test]
fn version_compares() {
    let t = load("version.toml");
    let cases = array(&t, "compares");
    assert!(cases.len() >= 40);
    for c in cases {
        let (a, op, b) = compare_expr(s(c));
        let va = Version::parse(&a).unwrap_or_else(|e| panic!("{e}"));
        let vb = Version::parse(&b).unwrap_or_else(|e| panic!("{e}"));
        let ord = va.cmp(&vb);
        assert!(check_op(ord, &op), "{a} {op} {b}: got {ord:?}");
        assert_eq!(vb.cmp(&va), ord.reverse(), "antisymmetry {a} {b}");
        assert_eq!(va == vb, ord == Ordering::Equal);
        if ord == Ordering::Equal {
            assert_eq!(hash_of(&va), hash_of(&vb), "hash {a} {b}");
        }
    }
}

/// Orders operator-versions the way pkgcraft's sorting vectors expect: by version, then
/// operator (plain versions first).
fn cmp_op_versions(a: &OpVersion, b: &OpVersion) -> Ordering {
    match (a, b) {
        (OpVersion::Plain(x), OpVersion::Plain(y)) => x.cmp(y),
        (OpVersion::Op(x), OpVersion::Op(y)) => x.cmp(y),
        (OpVersion::Plain(x), OpVersion::Op(y)) => {
            x.cmp(y.version().expect("versioned")).then(Ordering::Less)
        }
        (OpVersion::Op(x), OpVersion::Plain(y)) => x
            .version()
            .expect("versioned")
            .cmp(y)
            .then(Ordering::Greater),
    }
}

#[test]
fn version_sorting() {
    let t = load("version.toml");
    let cases = array(&t, "sorting");
    assert!(cases.len() >= 8);
    for c in cases {
        let sorted: Vec<&str> = c["sorted"].as_array().unwrap().iter().map(s).collect();
        let equal = c.get("equal").and_then(Value::as_bool).unwrap_or(false);
        let parsed: Vec<OpVersion> = sorted
            .iter()
            .map(|v| parse_op_version(v).unwrap_or_else(|e| panic!("{e}")))
            .collect();
        for (i, w) in parsed.windows(2).enumerate() {
            let ord = cmp_op_versions(&w[0], &w[1]);
            // Lists may repeat an entry (pkgcraft's precedence lists do).
            let want = if equal || sorted[i] == sorted[i + 1] {
                Ordering::Equal
            } else {
                Ordering::Less
            };
            assert_eq!(ord, want, "{} vs {}", sorted[i], sorted[i + 1]);
        }
        // Sorting a reversed copy reproduces the list (stable sort keeps equal ones reversed).
        let mut idx: Vec<usize> = (0..parsed.len()).rev().collect();
        idx.sort_by(|&i, &j| cmp_op_versions(&parsed[i], &parsed[j]));
        if !equal {
            let got: Vec<&str> = idx.iter().map(|&i| sorted[i]).collect();
            assert_eq!(got, sorted);
        }
    }
}

#[test]
fn version_hashing() {
    let t = load("version.toml");
    let cases = array(&t, "hashing");
    assert!(cases.len() >= 5);
    for c in cases {
        let vs: Vec<Version> = c["versions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| Version::parse(s(v)).unwrap_or_else(|e| panic!("{e}")))
            .collect();
        let equal = c["equal"].as_bool().unwrap();
        for i in 0..vs.len() {
            for j in i + 1..vs.len() {
                let (a, b) = (&vs[i], &vs[j]);
                assert_eq!(a == b, equal, "{a} vs {b}");
                assert_eq!(hash_of(a) == hash_of(b), equal, "hash {a} vs {b}");
            }
        }
    }
}

#[test]
fn dep_valid_fields() {
    let t = load("dep.toml");
    let valid = array(&t, "valid");
    assert!(valid.len() >= 40);
    for e in valid {
        let e = e.as_table().expect("table");
        let text = s(&e["dep"]);
        let eapis = s(&e["eapis"]);
        // Every EAPI range here includes EAPI 8 or is the unofficial "U.." (::repo) range.
        assert!(
            ["..", "1..", "2..", "4..", "5..", "U.."].contains(&eapis),
            "unexpected EAPI range {eapis} for {text}"
        );
        let d = Dep::parse(text).unwrap_or_else(|err| panic!("valid dep rejected: {err}"));
        assert_eq!(d.to_string(), text);
        let shown = d.to_string();
        assert_eq!(Dep::parse(&shown).unwrap(), d);
        let field = |k: &str| e.get(k).map(s);
        assert_eq!(Some(d.category()), field("category"), "{text}");
        assert_eq!(Some(d.package()), field("package"), "{text}");
        let version = d.version().map(|v| {
            let op = d.operator().expect("operator with version");
            let star = if op == Operator::EqualGlob { "*" } else { "" };
            format!("{}{}{}", op.prefix(), v, star)
        });
        assert_eq!(version.as_deref(), field("version"), "{text}");
        assert_eq!(d.revision(), field("revision"), "{text}");
        assert_eq!(d.slot(), field("slot"), "{text}");
        assert_eq!(d.subslot(), field("subslot"), "{text}");
        assert_eq!(
            d.slot_operator().map(SlotOperator::as_str),
            field("slot_op"),
            "{text}"
        );
        assert_eq!(d.repo(), field("repo"), "{text}");
        assert_eq!(d.blocker().map(Blocker::as_str), field("blocker"), "{text}");
        let use_deps: Vec<String> = d.use_deps().iter().map(ToString::to_string).collect();
        let want_use: Vec<String> = e
            .get("use")
            .map(|u| {
                u.as_array()
                    .unwrap()
                    .iter()
                    .map(|x| s(x).to_owned())
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(use_deps, want_use, "{text}");
    }
}

#[test]
fn dep_invalid() {
    let t = load("dep.toml");
    let invalid = array(&t, "invalid");
    assert!(invalid.len() >= 60);
    for v in invalid {
        let v = s(v);
        match Dep::parse(v) {
            Ok(d) => panic!("invalid dep {v:?} accepted as {d:?}"),
            Err(e) => {
                assert_eq!(e.input(), v);
                assert!(e.offset() <= v.len());
                // The message names the input.
                assert!(e.to_string().contains(&format!("{v:?}")), "{e}");
            }
        }
    }
    // A few messages are specific.
    let kind = |s: &str| Dep::parse(s).unwrap_err().kind();
    assert_eq!(kind("~a/b-1-r1"), ErrorKind::ApproxWithRevision);
    assert_eq!(kind("a/b[]"), ErrorKind::EmptyUseDeps);
    assert_eq!(kind("a/b:0*"), ErrorKind::SlotNameWithStar);
    assert_eq!(
        kind("a/b::repo-1"),
        ErrorKind::NameEndsInVersion {
            context: "repository name"
        }
    );
}

#[test]
fn dep_sorting() {
    let t = load("dep.toml");
    let cases = array(&t, "sorting");
    assert!(cases.len() >= 10);
    for c in cases {
        let sorted: Vec<&str> = c["sorted"].as_array().unwrap().iter().map(s).collect();
        let equal = c.get("equal").and_then(Value::as_bool).unwrap_or(false);
        let deps: Vec<Dep> = sorted
            .iter()
            .map(|v| Dep::parse(v).unwrap_or_else(|e| panic!("{e}")))
            .collect();
        for (i, w) in deps.windows(2).enumerate() {
            let (a, b) = (&w[0], &w[1]);
            if equal {
                // Our Eq/Ord distinguish spellings (Portage compares atoms as strings); the
                // semantic parts must be equal: same version under vercmp, same everything else.
                assert_eq!(a.version(), b.version(), "{a} vs {b}");
                assert_eq!(a.operator(), b.operator());
                assert_eq!(a.cp(), b.cp());
                assert_eq!(
                    (a.slot(), a.subslot(), a.repo()),
                    (b.slot(), b.subslot(), b.repo())
                );
            } else if sorted[i] == sorted[i + 1] {
                assert_eq!(a.cmp(b), Ordering::Equal);
            } else {
                assert_eq!(
                    a.cmp(b),
                    Ordering::Less,
                    "{} < {}",
                    sorted[i],
                    sorted[i + 1]
                );
            }
        }
        if !equal {
            let mut re: Vec<Dep> = deps.iter().rev().cloned().collect();
            re.sort();
            assert_eq!(re, deps);
        }
    }
}

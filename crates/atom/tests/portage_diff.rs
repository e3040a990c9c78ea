//! Differential property tests against the real Portage (`portage.versions.vercmp`,
//! `catpkgsplit`, `portage.dep.Atom`, `match_from_list`).
//!
//! Each test generates a few thousand random inputs with proptest strategies and sends them
//! to ONE Python subprocess. Python: `$VARTREE_PORTAGE_PYTHON`, else `<workspace>/.venv/bin/python`
//! (made by `scripts/setup-venv.sh`). Without it the tests print a skip notice and pass,
//! unless `VARTREE_REQUIRE_PORTAGE=1`, which makes them fail. Set `VARTREE_PROPTEST_SEED`
//! to replay a reported seed.

mod common;

use std::cmp::Ordering;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use atom::{catpkgsplit, Cpv, Dep, ErrorKind, UseDefault, Version};
use common::gen;
use proptest::prelude::*;
use proptest::sample::select;

fn hash_of<T: Hash>(x: &T) -> u64 {
    let mut h = DefaultHasher::new();
    x.hash(&mut h);
    h.finish()
}

fn fail_report(what: &str, seed: u64, bad: &[String]) {
    assert!(
        bad.is_empty(),
        "{what}: {} disagreement(s) with Portage (replay with VARTREE_PROPTEST_SEED={seed}):\n{}",
        bad.len(),
        bad.iter().take(40).cloned().collect::<Vec<_>>().join("\n")
    );
}

const VERCMP_PY: &str = r#"
import sys
from portage.versions import vercmp
out = []
for line in sys.stdin.read().split("\n"):
    if not line:
        continue
    a, b = line.split("\t")
    r = vercmp(a, b)
    out.append("E" if r is None else str((r > 0) - (r < 0)))
sys.stdout.write("\n".join(out) + "\n")
"#;

/// Edge cases always included in the batch.
const FIXED_PAIRS: &[(&str, &str)] = &[
    ("1.0", "1.00"),
    ("1.0", "1"),
    ("1", "1-r0"),
    ("1.01", "1.1"),
    ("1.002", "1.01"),
    ("1.0.1", "1.002"),
    ("1.09", "1.1"),
    ("0.0", "0.00"),
    ("0.01", "0.001"),
    ("1_p", "1_p0"),
    ("1_p", "1"),
    ("1_alpha", "1"),
    ("1_alpha_p", "1_alpha"),
    ("1_alpha_beta", "1_alpha"),
    ("12.2.5", "12.2b"),
    ("1a", "1"),
    ("1.2.3_pre01-r02", "1.2.3_pre1-r2"),
    ("99999999999999999999999999", "100000000000000000000000000"),
    (
        "1.99999999999999999999999999",
        "1.100000000000000000000000000",
    ),
    ("1.0999999999999999999", "1.1"),
    ("1-r01", "1-r1"),
    ("1.", "1"),
    ("1_x", "1"),
    ("1-r", "1"),
    ("a", "a"),
];

#[test]
fn vercmp_matches_portage() {
    let Some(py) = common::portage_python() else {
        return;
    };
    let (mut runner, seed) = gen::runner();
    let mut pairs: Vec<(String, String)> = gen::sample(&mut runner, &gen::version_pair(), 3000);
    pairs.extend(
        FIXED_PAIRS
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string())),
    );
    let input: String = pairs.iter().map(|(a, b)| format!("{a}\t{b}\n")).collect();
    let out = common::run_python(&py, VERCMP_PY, &input);
    let results: Vec<&str> = out.lines().collect();
    assert_eq!(
        results.len(),
        pairs.len(),
        "python answered {} lines",
        results.len()
    );
    let mut bad = Vec::new();
    let mut equal = 0;
    let mut invalid = 0;
    for ((a, b), want) in pairs.iter().zip(results) {
        let (va, vb) = (Version::parse(a), Version::parse(b));
        let got = match (&va, &vb) {
            (Ok(x), Ok(y)) => match x.cmp(y) {
                Ordering::Less => "-1",
                Ordering::Equal => "0",
                Ordering::Greater => "1",
            },
            // Portage answers 0 for identical strings before validating them.
            _ if a == b => "0",
            _ => "E",
        };
        if got != want {
            bad.push(format!("vercmp({a:?}, {b:?}): portage {want}, ours {got}"));
            continue;
        }
        if let (Ok(x), Ok(y)) = (&va, &vb) {
            assert_eq!(y.cmp(x), x.cmp(y).reverse(), "antisymmetry {a} {b}");
            if got == "0" {
                equal += 1;
                assert_eq!(x, y);
                assert_eq!(hash_of(x), hash_of(y), "hash of equal versions {a} {b}");
            }
        } else {
            invalid += 1;
        }
    }
    fail_report("vercmp", seed, &bad);
    // The generator must exercise equal and invalid pairs, not only random ones.
    assert!(equal > 100, "only {equal} equal pairs generated");
    assert!(invalid > 20, "only {invalid} invalid pairs generated");
}

const CATPKGSPLIT_PY: &str = r#"
import sys
from portage.versions import catpkgsplit
out = []
for s in sys.stdin.read().split("\n")[:-1]:
    r = catpkgsplit(s)
    out.append("N" if r is None else "\t".join(r))
sys.stdout.write("\n".join(out) + "\n")
"#;

fn pf_like() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        3 => select(vec![
            "foo", "bar", "r1", "r", "r01", "1", "01", "1.0", "1a", "1aa", "1_p", "1_pre2",
            "1_alpha_beta", "", "x1", "9999", "1.", "1..2", "_", "+", "a+b", "2b", "0",
            "1.2.3_rc1", "R1", "1_p1_p2", "1A",
        ])
        .prop_map(String::from),
        1 => gen::version(),
    ];
    (
        select(vec![
            "",
            "",
            "",
            "cat/",
            "dev-libs/",
            ".cat/",
            "a/b/",
            "-x/",
            "a+b.c/",
        ]),
        prop::collection::vec(token, 1..6),
    )
        .prop_map(|(cat, toks)| format!("{cat}{}", toks.join("-")))
}

#[test]
fn catpkgsplit_matches_portage() {
    let Some(py) = common::portage_python() else {
        return;
    };
    let (mut runner, seed) = gen::runner();
    let inputs: Vec<String> = gen::sample(&mut runner, &pf_like(), 4000);
    let input: String = inputs.iter().map(|s| format!("{s}\n")).collect();
    let out = common::run_python(&py, CATPKGSPLIT_PY, &input);
    let results: Vec<&str> = out.lines().collect();
    assert_eq!(results.len(), inputs.len());
    let mut bad = Vec::new();
    let mut valid = 0;
    for (s, want) in inputs.iter().zip(results) {
        let got = match catpkgsplit(s) {
            None => "N".to_owned(),
            Some((c, pn, v, r)) => {
                valid += 1;
                format!("{}\t{pn}\t{v}\t{r}", c.unwrap_or("null"))
            }
        };
        if got != want {
            bad.push(format!(
                "catpkgsplit({s:?}): portage {want:?}, ours {got:?}"
            ));
        }
        // Cpv::parse agrees with catpkgsplit for inputs with a category.
        if s.contains('/') {
            assert_eq!(Cpv::parse(s).is_ok(), got != "N", "{s}");
        }
    }
    fail_report("catpkgsplit", seed, &bad);
    assert!(valid > 300, "only {valid} valid PFs generated");
}

const ATOM_PY: &str = r#"
import sys
from portage.dep import Atom
from portage.exception import InvalidAtom
out = []
for s in sys.stdin.read().split("\n")[:-1]:
    try:
        a = Atom(s, eapi="8", allow_repo=True)
    except InvalidAtom:
        out.append("INVALID")
        continue
    b = "" if a.blocker is None else ("!!" if a.blocker.overlap.forbid else "!")
    use = "" if a.use is None else ",".join(a.use.tokens)
    f = [b, a.operator or "", a.cp, a.version or "", a.slot or "", a.sub_slot or "",
         a.slot_operator or "", a.repo or "", use]
    out.append("\t".join(f))
sys.stdout.write("\n".join(out) + "\n")
"#;

fn atom_like() -> impl Strategy<Value = String> {
    let version = prop_oneof![
        4 => gen::version(),
        1 => select(vec!["1.", "1-r", "r1", "1_x", "1-1", "1a-r1", "01"]).prop_map(String::from),
    ];
    let use_tok = select(vec![
        "a", "-a", "a?", "!a?", "a=", "!a=", "a(+)", "a(-)", "-a(+)", "a(+)?", "!a(-)=", "!a",
        "-a?", "", "a(x)", "a??", "+a", "b", "b(-)", "b(+)", "u-", "u+", "u@x", "_u", "a()",
    ]);
    (
        select(vec!["", "", "", "", "", "!", "!!", "!!!"]),
        select(vec!["", "", "<", "<=", "=", "~", ">=", ">", "=<"]),
        select(vec!["cat", "cat", "cat", "a", "_", ".a", "", "a.b+c", "-a"]),
        select(vec!["/", "/", "/", "/", "/", "/", "/", ""]),
        select(vec![
            "pkg", "pkg", "pkg", "b-", "b-r1", "b-1", "b-1-r1", "foo-bar", "p+", "+p", "b-1a", "b_",
        ]),
        prop::option::weighted(0.6, version),
        prop::option::weighted(0.15, Just("*")),
        prop::option::weighted(
            0.3,
            select(vec![
                "0", "0/1", "=", "*", "0=", "0/1=", "", "/", "0/", "0*", "*0", ":", "a@b", "0/1/2",
                "-x", "a.b+c-d", "0/=", "=0", "*=",
            ]),
        ),
        prop::option::weighted(
            0.2,
            select(vec![
                "gentoo", "repo-1", "-r", "", "r_x", "a-b", "x-1-r1", "a+b",
            ]),
        ),
        prop::option::weighted(0.3, prop::collection::vec(use_tok, 0..4)),
    )
        .prop_map(
            |(blocker, op, cat, slash, pn, ver, star, slot, repo, use_deps)| {
                let mut s = format!("{blocker}{op}{cat}{slash}{pn}");
                if let Some(v) = ver {
                    s.push('-');
                    s.push_str(&v);
                }
                if let Some(st) = star {
                    s.push_str(st);
                }
                if let Some(sl) = slot {
                    s.push(':');
                    s.push_str(sl);
                }
                if let Some(r) = repo {
                    s.push_str("::");
                    s.push_str(r);
                }
                if let Some(u) = use_deps {
                    s.push('[');
                    s.push_str(&u.join(","));
                    s.push(']');
                }
                s
            },
        )
}

/// Portage rejects a USE flag given with different defaults (`[u,u(+)]`, `[u(+),u(-)]`);
/// we accept those (pkgcraft lists `a/b[u(-),u(+)]` as valid).
fn has_conflicting_use_defaults(d: &Dep) -> bool {
    let u = d.use_deps();
    u.iter().enumerate().any(|(i, x)| {
        u[i + 1..]
            .iter()
            .any(|y: &atom::UseDep| y.flag() == x.flag() && y.default() != x.default())
    })
}

#[test]
fn atom_parsing_matches_portage() {
    let Some(py) = common::portage_python() else {
        return;
    };
    let (mut runner, seed) = gen::runner();
    let inputs: Vec<String> = gen::sample(&mut runner, &atom_like(), 6000);
    let input: String = inputs.iter().map(|s| format!("{s}\n")).collect();
    let out = common::run_python(&py, ATOM_PY, &input);
    let results: Vec<&str> = out.lines().collect();
    assert_eq!(results.len(), inputs.len());
    let mut bad = Vec::new();
    let (mut valid, mut deliberate) = (0, 0);
    for (s, want) in inputs.iter().zip(results) {
        let got = match Dep::parse(s) {
            Err(e) => {
                // Deliberately stricter than Portage (PMS, pkgcraft).
                let strict = matches!(
                    e.kind(),
                    ErrorKind::ApproxWithRevision
                        | ErrorKind::NameEndsInVersion {
                            context: "repository name"
                        }
                );
                if strict && want != "INVALID" {
                    deliberate += 1;
                    continue;
                }
                "INVALID".to_owned()
            }
            Ok(d) => {
                if want == "INVALID" && has_conflicting_use_defaults(&d) {
                    deliberate += 1;
                    continue;
                }
                valid += 1;
                assert_eq!(d.to_string(), *s);
                let use_deps: Vec<String> = d.use_deps().iter().map(|u| u.to_string()).collect();
                [
                    d.blocker().map_or("", |b| b.as_str()).to_owned(),
                    d.operator().map_or("", |o| o.as_str()).to_owned(),
                    d.cp().to_owned(),
                    d.version().map_or(String::new(), |v| v.to_string()),
                    d.slot().unwrap_or("").to_owned(),
                    d.subslot().unwrap_or("").to_owned(),
                    d.slot_operator().map_or("", |o| o.as_str()).to_owned(),
                    d.repo().unwrap_or("").to_owned(),
                    use_deps.join(","),
                ]
                .join("\t")
            }
        };
        if got != want {
            bad.push(format!("Atom({s:?}): portage {want:?}, ours {got:?}"));
        }
    }
    fail_report("atom parsing", seed, &bad);
    assert!(valid > 300, "only {valid} valid atoms generated");
    let _ = deliberate;
}

const MATCH_PY: &str = r#"
import sys
from portage.dep import match_from_list
out = []
for line in sys.stdin.read().split("\n")[:-1]:
    dep, cpv = line.split("\t")
    out.append("1" if match_from_list(dep, [cpv]) else "0")
sys.stdout.write("\n".join(out) + "\n")
"#;

/// Extends a version so that glob and prefix cases come up.
fn extend(v: &str, how: u8) -> String {
    let base = v.split("-r").next().unwrap_or(v);
    match how % 10 {
        0 => format!("{base}.1"),
        1 => format!("{base}0"),
        2 => format!("{base}a"),
        3 => format!("{base}_p1"),
        4 => format!("{base}-r1"),
        5 => format!("{base}1"),
        6 => format!("0{v}"),
        7 => gen::mutate(v, how / 10),
        _ => v.to_owned(),
    }
}

fn match_case() -> impl Strategy<Value = (String, String)> {
    (
        select(vec!["", "", "!", "!!"]),
        select(vec!["", "<", "<=", "=", "=*", "~", ">=", ">"]),
        gen::version(),
        prop_oneof![4 => Just(None), 1 => gen::version().prop_map(Some)],
        any::<u8>(),
        select(vec![
            "cat/pkg",
            "cat/pkg",
            "cat/pkg",
            "cat/other",
            "dog/pkg",
        ]),
        prop::option::weighted(
            0.2,
            select(vec![":0", ":=", "::gentoo", "[foo]", ":0/1=[-bar(+)]"]),
        ),
    )
        .prop_map(|(blocker, op, ver, other, how, cand_cp, tail)| {
            let ver = if op == "~" {
                ver.split("-r").next().unwrap_or(&ver).to_owned()
            } else {
                ver
            };
            let dep = match op {
                "" => format!("{blocker}cat/pkg"),
                "=*" => format!("{blocker}=cat/pkg-{ver}*"),
                _ => format!("{blocker}{op}cat/pkg-{ver}"),
            };
            let dep = format!("{dep}{}", tail.unwrap_or(""));
            let cand_ver = other.unwrap_or_else(|| extend(&ver, how));
            (dep, format!("{cand_cp}-{cand_ver}"))
        })
}

#[test]
fn matching_matches_portage() {
    let Some(py) = common::portage_python() else {
        return;
    };
    let (mut runner, seed) = gen::runner();
    let cases: Vec<(Dep, Cpv)> = gen::sample(&mut runner, &match_case(), 4000)
        .into_iter()
        .filter_map(|(d, c)| Some((Dep::parse(&d).ok()?, Cpv::parse(&c).ok()?)))
        .collect();
    assert!(cases.len() > 3000, "only {} usable cases", cases.len());
    let input: String = cases.iter().map(|(d, c)| format!("{d}\t{c}\n")).collect();
    let out = common::run_python(&py, MATCH_PY, &input);
    let results: Vec<&str> = out.lines().collect();
    assert_eq!(results.len(), cases.len());
    let mut bad = Vec::new();
    let mut matched = 0;
    for ((d, c), want) in cases.iter().zip(results) {
        let got = if d.matches_cpv(c) { "1" } else { "0" };
        // With only a CPV known, `matches` must agree with `matches_cpv`.
        assert_eq!(d.matches(&atom::PkgRef::new(c)), got == "1");
        if got == "1" {
            matched += 1;
        }
        if got != want {
            bad.push(format!(
                "match_from_list({d}, [{c}]): portage {want}, ours {got}"
            ));
        }
    }
    fail_report("matching", seed, &bad);
    assert!(matched > 500, "only {matched} matches generated");
    let _ = UseDefault::Enabled;
}

//! Round-trip and robustness properties: parse(display(x)) == x, fields survive, and no
//! input makes a parser panic.

mod common;

use atom::{
    catpkgsplit, parse_query, pkgsplit, Blocker, Cpv, Dep, Operator, SlotOperator, UseDep, Version,
};
use common::gen;
use proptest::prelude::*;
use proptest::sample::select;

/// A generated atom and the parts it was made of.
#[derive(Debug, Clone)]
struct AtomParts {
    blocker: Option<Blocker>,
    op: Option<Operator>,
    category: String,
    package: String,
    version: Option<String>,
    slot: Option<String>,
    subslot: Option<String>,
    slot_op: Option<SlotOperator>,
    repo: Option<String>,
    use_deps: Vec<String>,
}

impl AtomParts {
    fn render(&self) -> String {
        let mut s = String::new();
        if let Some(b) = self.blocker {
            s.push_str(b.as_str());
        }
        if let Some(o) = self.op {
            s.push_str(o.prefix());
        }
        s.push_str(&self.category);
        s.push('/');
        s.push_str(&self.package);
        if let Some(v) = &self.version {
            s.push('-');
            s.push_str(v);
        }
        if self.op == Some(Operator::EqualGlob) {
            s.push('*');
        }
        if self.slot.is_some() || self.slot_op.is_some() {
            s.push(':');
            if let Some(sl) = &self.slot {
                s.push_str(sl);
            }
            if let Some(sub) = &self.subslot {
                s.push('/');
                s.push_str(sub);
            }
            if let Some(o) = self.slot_op {
                s.push_str(o.as_str());
            }
        }
        if let Some(r) = &self.repo {
            s.push_str("::");
            s.push_str(r);
        }
        if !self.use_deps.is_empty() {
            s.push('[');
            s.push_str(&self.use_deps.join(","));
            s.push(']');
        }
        s
    }
}

fn use_dep() -> impl Strategy<Value = String> {
    (
        select(vec![
            ("", ""),
            ("-", ""),
            ("", "?"),
            ("!", "?"),
            ("", "="),
            ("!", "="),
        ]),
        gen::use_flag(),
        select(vec!["", "", "(+)", "(-)"]),
    )
        .prop_map(|((pre, post), flag, default)| format!("{pre}{flag}{default}{post}"))
}

fn slot_part() -> impl Strategy<Value = (Option<String>, Option<String>, Option<SlotOperator>)> {
    prop_oneof![
        3 => Just((None, None, None)),
        1 => Just((None, None, Some(SlotOperator::Equal))),
        1 => Just((None, None, Some(SlotOperator::Star))),
        2 => (
            gen::slot_name(),
            prop::option::of(gen::slot_name()),
            prop::option::of(Just(SlotOperator::Equal)),
        )
            .prop_map(|(s, sub, op)| (Some(s), sub, op)),
    ]
}

fn atom_parts() -> impl Strategy<Value = AtomParts> {
    let op = prop::option::of(select(vec![
        Operator::Less,
        Operator::LessOrEqual,
        Operator::Equal,
        Operator::EqualGlob,
        Operator::Approximate,
        Operator::GreaterOrEqual,
        Operator::Greater,
    ]));
    (
        prop::option::of(select(vec![Blocker::Weak, Blocker::Strong])),
        op,
        gen::category(),
        gen::package_name(),
        gen::version(),
        slot_part(),
        prop::option::weighted(0.3, gen::repo_name()),
        prop::collection::vec(use_dep(), 0..4),
    )
        .prop_map(
            |(
                blocker,
                op,
                category,
                package,
                version,
                (slot, subslot, slot_op),
                repo,
                use_deps,
            )| {
                let version = op.map(|o| {
                    if o == Operator::Approximate {
                        // '~' takes no revision.
                        version.split("-r").next().unwrap_or(&version).to_owned()
                    } else {
                        version
                    }
                });
                AtomParts {
                    blocker,
                    op,
                    category,
                    package,
                    version,
                    slot,
                    subslot,
                    slot_op,
                    repo,
                    use_deps,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn version_round_trip(s in gen::version()) {
        let v = Version::parse(&s).unwrap();
        prop_assert_eq!(v.as_str(), s.as_str());
        prop_assert_eq!(v.to_string(), s.clone());
        let shown = v.to_string();
        let again = Version::parse(&shown).unwrap();
        prop_assert_eq!(&again, &v);
        prop_assert_eq!(again.as_str(), v.as_str());
        // base + revision reassemble the string
        let re = match v.revision() {
            Some(r) => format!("{}-r{}", v.base(), r),
            None => v.base().to_owned(),
        };
        prop_assert_eq!(re, s.clone());
        prop_assert_eq!(
            format!("{}{}{}", v.numbers(), v.letter().map(String::from).unwrap_or_default(), v.suffixes()),
            v.base()
        );
    }

    #[test]
    fn version_order_is_total(a in gen::version(), b in gen::version(), c in gen::version()) {
        let (a, b, c) = (Version::parse(&a).unwrap(), Version::parse(&b).unwrap(), Version::parse(&c).unwrap());
        prop_assert_eq!(a.cmp(&b), b.cmp(&a).reverse());
        if a <= b && b <= c {
            prop_assert!(a <= c);
        }
    }

    #[test]
    fn cpv_round_trip(cat in gen::category(), pn in gen::package_name(), ver in gen::version()) {
        let s = format!("{cat}/{pn}-{ver}");
        let c = Cpv::parse(&s).unwrap();
        prop_assert_eq!(c.category(), cat.as_str());
        prop_assert_eq!(c.pn(), pn.as_str());
        prop_assert_eq!(c.version().as_str(), ver.as_str());
        prop_assert_eq!(c.to_string(), s.clone());
        let shown = c.to_string();
        prop_assert_eq!(Cpv::parse(&shown).unwrap(), c.clone());
        let pf = format!("{pn}-{ver}");
        prop_assert_eq!(Cpv::from_parts(&cat, &pf).unwrap(), c.clone());
        let (p, v, r) = pkgsplit(&pf).unwrap();
        prop_assert_eq!((p, v, r), (c.pn(), c.pv(), c.pr()));
        prop_assert_eq!(catpkgsplit(&s), Some((Some(c.category()), c.pn(), c.pv(), c.pr())));
        prop_assert_eq!(c.pf(), pf.as_str());
        // As an exact atom it matches itself.
        let d = Dep::parse(&format!("={s}")).unwrap();
        prop_assert!(d.matches_cpv(&c));
    }

    #[test]
    fn dep_round_trip(parts in atom_parts()) {
        let s = parts.render();
        let d = Dep::parse(&s).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(d.to_string(), s.clone());
        let shown = d.to_string();
        prop_assert_eq!(Dep::parse(&shown).unwrap(), d.clone());
        prop_assert_eq!(d.blocker(), parts.blocker);
        prop_assert_eq!(d.operator(), parts.op);
        prop_assert_eq!(d.category(), parts.category.as_str());
        prop_assert_eq!(d.package(), parts.package.as_str());
        prop_assert_eq!(d.version().map(Version::as_str), parts.version.as_deref());
        prop_assert_eq!(d.slot(), parts.slot.as_deref());
        prop_assert_eq!(d.subslot(), parts.subslot.as_deref());
        prop_assert_eq!(d.slot_operator(), parts.slot_op);
        prop_assert_eq!(d.repo(), parts.repo.as_deref());
        let u: Vec<String> = d.use_deps().iter().map(UseDep::to_string).collect();
        prop_assert_eq!(u, parts.use_deps.clone());
        for (tok, ud) in parts.use_deps.iter().zip(d.use_deps()) {
            prop_assert_eq!(&UseDep::parse(tok).unwrap(), ud);
        }
    }

    #[test]
    fn query_round_trip(parts in atom_parts(), drop_cat in any::<bool>()) {
        let mut parts = parts;
        parts.blocker = None;
        let mut s = parts.render();
        if drop_cat {
            let op_len = parts.op.map_or(0, |o| o.prefix().len());
            s.replace_range(op_len..op_len + parts.category.len() + 1, "");
        }
        let q = parse_query(&s).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(q.to_string(), s.clone());
        prop_assert_eq!(parse_query(&q.to_string()).unwrap(), q.clone());
        prop_assert_eq!(q.category(), (!drop_cat).then_some(parts.category.as_str()));
        prop_assert_eq!(q.package(), parts.package.as_str());
        prop_assert_eq!(q.operator(), parts.op);
        prop_assert_eq!(q.slot(), parts.slot.as_deref());
        prop_assert_eq!(q.repo(), parts.repo.as_deref());
    }

    /// Arbitrary strings from the atom alphabet never panic, and what parses round-trips.
    #[test]
    fn no_panic_atom_alphabet(s in "[a-z0-9<>=~!*:/\\[\\](),?+_.@ -]{0,24}") {
        check_all(&s)?;
    }

    /// Arbitrary Unicode never panics.
    #[test]
    fn no_panic_any(s in ".{0,40}") {
        check_all(&s)?;
    }
}

fn check_all(s: &str) -> Result<(), TestCaseError> {
    if let Ok(v) = Version::parse(s) {
        prop_assert_eq!(v.to_string(), s);
    }
    if let Ok(c) = Cpv::parse(s) {
        prop_assert_eq!(c.to_string(), s);
        prop_assert!(catpkgsplit(s).is_some());
    }
    if let Ok(d) = Dep::parse(s) {
        prop_assert_eq!(d.to_string(), s);
        let shown = d.to_string();
        prop_assert_eq!(Dep::parse(&shown).unwrap(), d);
    }
    if let Ok(q) = parse_query(s) {
        prop_assert_eq!(parse_query(&q.to_string()).unwrap(), q);
    }
    if let Some((p, v, r)) = pkgsplit(s) {
        prop_assert!(!p.is_empty() && !v.is_empty() && r.starts_with('r'));
    }
    for e in [
        Version::parse(s).err(),
        Cpv::parse(s).err(),
        Dep::parse(s).err(),
        parse_query(s).err(),
    ]
    .into_iter()
    .flatten()
    {
        prop_assert!(e.offset() <= s.len());
        prop_assert_eq!(e.input(), s);
        let _ = e.to_string();
    }
    Ok(())
}

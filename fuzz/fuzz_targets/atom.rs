//! Fuzzes the atom crate's parsers: versions, CPVs, PF splitting, dependency atoms and
//! queries. Checks that nothing panics, that whatever parses displays back to the exact
//! input and re-parses to an equal value, and that comparison/matching on parsed values
//! is consistent.
#![no_main]

use std::cmp::Ordering;

use atom::{catpkgsplit, parse_query, pkgsplit, Cpv, Dep, PkgRef, Version};
use libfuzzer_sys::fuzz_target;

fn check_one(s: &str) {
    match Version::parse(s) {
        Ok(v) => {
            let shown = v.to_string();
            assert_eq!(shown, s);
            let again = Version::parse(&shown).expect("displayed version re-parses");
            assert_eq!(again.cmp(&v), Ordering::Equal);
            assert_eq!(again.as_str(), v.as_str());
        }
        Err(e) => {
            assert!(e.offset() <= s.len());
            let _ = e.to_string();
        }
    }
    match Cpv::parse(s) {
        Ok(c) => {
            assert_eq!(c.to_string(), s);
            let split = catpkgsplit(s).expect("a valid CPV splits");
            assert_eq!(split, (Some(c.category()), c.pn(), c.pv(), c.pr()));
            let again = Cpv::from_parts(c.category(), c.pf()).expect("from_parts");
            assert_eq!(again, c);
        }
        Err(e) => assert!(e.offset() <= s.len()),
    }
    if let Some((pn, ver, rev)) = pkgsplit(s) {
        assert!(!pn.is_empty() && !ver.is_empty() && rev.starts_with('r'));
        assert!(Version::parse(ver).is_ok());
    }
    match Dep::parse(s) {
        Ok(d) => {
            let shown = d.to_string();
            assert_eq!(shown, s);
            let again = Dep::parse(&shown).expect("displayed dep re-parses");
            assert_eq!(again, d);
            assert_eq!(again.cmp(&d), Ordering::Equal);
        }
        Err(e) => assert!(e.offset() <= s.len()),
    }
    match parse_query(s) {
        Ok(q) => {
            let shown = q.to_string();
            let again = parse_query(&shown).expect("displayed query re-parses");
            assert_eq!(again, q);
        }
        Err(e) => assert!(e.offset() <= s.len()),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    check_one(s);
    // Two lines: compare/match the first against the second.
    if let Some((a, b)) = s.split_once('\n') {
        check_one(a);
        check_one(b);
        if let (Ok(x), Ok(y)) = (Version::parse(a), Version::parse(b)) {
            assert_eq!(x.cmp(&y), y.cmp(&x).reverse());
            assert_eq!(x == y, x.cmp(&y) == Ordering::Equal);
            let _ = y.glob_matches(&x);
        }
        if let Ok(c) = Cpv::parse(b) {
            if let Ok(d) = Dep::parse(a) {
                let m = d.matches_cpv(&c);
                assert_eq!(d.matches(&PkgRef::new(&c)), m);
                let _ = d.matches(
                    &PkgRef::new(&c)
                        .with_slot(a)
                        .with_use(b.into())
                        .with_iuse(a.into()),
                );
            }
            if let Ok(q) = parse_query(a) {
                let _ = q.matches(&PkgRef::new(&c).with_slot(b).with_repo(a));
            }
        }
    }
});

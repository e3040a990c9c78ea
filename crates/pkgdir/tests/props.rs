//! Property tests: the index reader and writer round-trip, reading never
//! fails or panics and writing what was read is a fixed point, and USE
//! evaluation never panics.

use std::collections::HashSet;

use pkgdir::index::{
    self, Entry, PackageIndex, ALLOWED_PKG_KEYS, DEFAULT_PKG_DATA, INHERITED_KEYS,
};
use proptest::prelude::*;

/// Keys whose file name is their internal name or that are internal names
/// (`DESC`, `MTIME`, `REPO` are only file names: read, they become
/// `DESCRIPTION`, `_mtime_`, `repository`).
fn pkg_key() -> impl Strategy<Value = String> {
    prop::sample::select(
        ALLOWED_PKG_KEYS
            .iter()
            .filter(|k| !matches!(**k, "DESC" | "MTIME" | "REPO" | "CPV"))
            .map(|k| (*k).to_owned())
            .collect::<Vec<_>>(),
    )
}

/// Text without line breaks (they cannot be in an index line).
fn value() -> impl Strategy<Value = String> {
    "[^\r\n]{0,12}"
}

fn header_key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("CHOST".to_owned()),
        Just("repository".to_owned()),
        Just("VERSION".to_owned()),
        Just("_mtime_".to_owned()),
        "[^:\r\n]{0,8}".prop_filter("file-only names", |k| !matches!(
            k.as_str(),
            "DESC" | "MTIME" | "REPO"
        )),
    ]
}

fn entry() -> impl Strategy<Value = Entry> {
    (
        prop::sample::select(vec!["a/b-1", "a/b-2", "c/d-1.0", "x/y-1-r1", "ü/ñ-1"]),
        prop::collection::btree_map(pkg_key(), value(), 0..8),
    )
        .prop_map(|(cpv, mut m)| {
            m.insert("CPV".to_owned(), cpv.to_owned());
            m
        })
}

fn package_index() -> impl Strategy<Value = PackageIndex> {
    (
        prop::collection::btree_map(header_key(), value(), 0..6),
        prop::collection::vec(entry(), 0..6),
    )
        .prop_map(|(header, packages)| PackageIndex { header, packages })
}

/// What reading gives back for what was written: empty values gone,
/// defaults and inherited values filled in, entries in CPV order.
fn normalized(i: &PackageIndex) -> PackageIndex {
    let header: Entry = i
        .header
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut packages: Vec<Entry> = i
        .packages
        .iter()
        .map(|d| {
            let mut d: Entry = d
                .iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            for (k, v) in DEFAULT_PKG_DATA {
                d.entry((*k).to_owned()).or_insert_with(|| (*v).to_owned());
            }
            for k in INHERITED_KEYS {
                if let Some(v) = header.get(*k).filter(|v| !v.is_empty()) {
                    d.entry((*k).to_owned()).or_insert_with(|| v.clone());
                }
            }
            d
        })
        .collect();
    packages.sort_by(|a, b| a["CPV"].cmp(&b["CPV"]));
    PackageIndex { header, packages }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn written_indexes_read_back(i in package_index()) {
        let text = index::write(&i);
        let back = index::parse(&text).unwrap();
        prop_assert_eq!(&back, &normalized(&i));
        prop_assert_eq!(index::write(&back), text);
    }

    #[test]
    fn reading_any_bytes_is_a_fixed_point(data in prop::collection::vec(
        prop_oneof![
            Just(b'\n'), Just(b'\r'), Just(b':'), Just(b' '), Just(0xffu8), Just(0xc3u8),
            prop::sample::select(b"CPVPATHSLOTDESCMTIMEREPOBUILD_ID/-1abc".to_vec()),
            prop::sample::select(b"CPVPATHSLOTDESCMTIMEREPOBUILD_ID/-1abc".to_vec()),
            any::<u8>(),
        ],
        0..400,
    )) {
        let i = index::parse(&data).unwrap();
        let text = index::write(&i);
        let back = index::parse(&text).unwrap();
        // Equal but for empty values (not written, so absent or back to
        // their default or the header's value) and the order (by CPV).
        let settle = |i: &PackageIndex| {
            let mut i = normalized(i);
            for d in &mut i.packages {
                d.retain(|_, v| !v.is_empty());
            }
            i
        };
        prop_assert_eq!(settle(&back), settle(&i));
        prop_assert_eq!(index::write(&back), text);
    }

    #[test]
    fn use_evaluation_never_panics(
        tokens in prop::collection::vec(
            prop_oneof![
                Just("(".to_owned()), Just(")".to_owned()), Just("||".to_owned()),
                Just("x?".to_owned()), Just("!y?".to_owned()), Just("->".to_owned()),
                "[a-z]{1,3}/[a-z]{1,3}(-[0-9])?(:[0-9*=])?(\\[[!-]?[xy][?=]?\\])?",
                "[!~<>=]{0,2}[a-z]/[a-z]-[0-9](-r[0-9])?\\*?",
                "\\PC{1,6}",
            ],
            0..16,
        ),
        on in prop::collection::hash_set(prop::sample::select(vec!["x", "y"]), 0..2),
    ) {
        let s = tokens.join(" ");
        let on: HashSet<&str> = on.into_iter().collect();
        for kind in [pkgdir::usereduce::TokenKind::Atoms, pkgdir::usereduce::TokenKind::Words] {
            if let Ok(r) = pkgdir::usereduce::evaluate(&s, &on, kind) {
                // The result is itself valid and evaluates to itself.
                let again = pkgdir::usereduce::evaluate(&r, &on, kind);
                prop_assert!(again.is_ok(), "{:?} -> {:?} -> {:?}", s, r, again);
            }
        }
    }
}

#[test]
fn entries_without_cpv_are_not_indexes() {
    // Sanity of the strategy's assumption: a block needs a CPV.
    let i = index::parse(b"\nSLOT: 1\n\n").unwrap();
    assert!(i.packages.is_empty());
}

//! Fuzz the binary package index (`PKGDIR/Packages`) reader and writer, and
//! the USE-conditional evaluation applied to its dependency values.
#![no_main]

use std::collections::HashSet;

use libfuzzer_sys::fuzz_target;
use pkgdir::index;
use pkgdir::usereduce::{evaluate, TokenKind};

fuzz_target!(|data: &[u8]| {
    // Reading never fails; writing what was read is a fixed point.
    let parsed = index::parse(data).expect("the reader accepts any bytes");
    let text = index::write(&parsed);
    let again = index::parse(&text).expect("the reader accepts any bytes");
    // The same, but for empty values (not written, so absent or back to
    // their default or the header's value) and the order (by CPV).
    let settle = |i: &index::PackageIndex| {
        let mut i = i.clone();
        i.header.retain(|_, v| !v.is_empty());
        for d in &mut i.packages {
            d.retain(|_, v| !v.is_empty());
            for (k, v) in index::DEFAULT_PKG_DATA {
                d.entry((*k).to_owned()).or_insert_with(|| (*v).to_owned());
            }
            for k in index::INHERITED_KEYS {
                if let Some(v) = i.header.get(*k) {
                    d.entry((*k).to_owned()).or_insert_with(|| v.clone());
                }
            }
            d.retain(|_, v| !v.is_empty());
        }
        i.packages.sort_by(|a, b| a.get("CPV").cmp(&b.get("CPV")));
        i
    };
    assert_eq!(settle(&again), settle(&parsed));
    assert_eq!(index::write(&again), text);

    // Dependency strings: no panic, and a result evaluates to itself.
    let s = String::from_utf8_lossy(data);
    let on: HashSet<&str> = ["x", "y", "test"].into_iter().collect();
    for kind in [TokenKind::Atoms, TokenKind::Words] {
        if let Ok(r) = evaluate(&s, &on, kind) {
            assert!(evaluate(&r, &on, kind).is_ok(), "{s:?} -> {r:?}");
        }
    }
});

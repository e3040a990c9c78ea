//! Property tests: the xpak parsers never panic and round-trip what Portage's
//! `xpak_mem` writes; the tar checks never panic on arbitrary bytes.

use binpkg::xpak::{locate_block, parse_index, XpakBlock};
use binpkg::{scan_image_tar, ImageLayout, VerifyOptions};
use proptest::prelude::*;

/// Portage's `xpak_mem` layout.
fn xpak_mem(items: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut index = Vec::new();
    let mut data = Vec::new();
    for (k, v) in items {
        index.extend_from_slice(&(k.len() as u32).to_be_bytes());
        index.extend_from_slice(k);
        index.extend_from_slice(&(data.len() as u32).to_be_bytes());
        index.extend_from_slice(&(v.len() as u32).to_be_bytes());
        data.extend_from_slice(v);
    }
    let mut b = b"XPAKPACK".to_vec();
    b.extend_from_slice(&(index.len() as u32).to_be_bytes());
    b.extend_from_slice(&(data.len() as u32).to_be_bytes());
    b.extend(index);
    b.extend(data);
    b.extend_from_slice(b"XPAKSTOP");
    b
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn index_parser_never_panics(index in proptest::collection::vec(any::<u8>(), 0..256), data_len in any::<u32>()) {
        let _ = parse_index(&index, data_len);
    }

    #[test]
    fn block_parser_never_panics(body in proptest::collection::vec(any::<u8>(), 0..256), il in any::<u32>(), dl in any::<u32>()) {
        let mut b = b"XPAKPACK".to_vec();
        b.extend_from_slice(&il.to_be_bytes());
        b.extend_from_slice(&dl.to_be_bytes());
        b.extend(body.iter().copied());
        b.extend_from_slice(b"XPAKSTOP");
        let _ = XpakBlock::parse(&b);
        let _ = XpakBlock::parse(&body);
    }

    #[test]
    fn trailer_never_panics(t in proptest::array::uniform16(any::<u8>()), len in any::<u64>()) {
        let _ = locate_block(&t, len);
        let mut t2 = t;
        t2[..8].copy_from_slice(b"XPAKSTOP");
        t2[12..].copy_from_slice(b"STOP");
        if let Ok((start, n)) = locate_block(&t2, len) {
            prop_assert!(start + n + 8 == len);
        }
    }

    #[test]
    fn round_trip(items in proptest::collection::vec(("[A-Za-z_]{1,20}", proptest::collection::vec(any::<u8>(), 0..64)), 0..12)) {
        let items: Vec<(Vec<u8>, Vec<u8>)> = items.into_iter().map(|(k, v)| (k.into_bytes(), v)).collect();
        let block = xpak_mem(&items);
        let parsed = XpakBlock::parse(&block).unwrap();
        prop_assert_eq!(parsed.entries.len(), items.len());
        for (e, (k, v)) in parsed.entries.iter().zip(&items) {
            prop_assert_eq!(&e.name, k);
            prop_assert_eq!(parsed.value(e), &v[..]);
        }
    }

    #[test]
    fn mutated_blocks_never_panic(items in proptest::collection::vec(("[A-Z]{1,8}", proptest::collection::vec(any::<u8>(), 0..16)), 1..6), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6)) {
        let items: Vec<(Vec<u8>, Vec<u8>)> = items.into_iter().map(|(k, v)| (k.into_bytes(), v)).collect();
        let mut block = xpak_mem(&items);
        for (at, x) in flips {
            let n = block.len();
            block[at % n] ^= x;
        }
        if let Ok(p) = XpakBlock::parse(&block) {
            for e in &p.entries {
                let _ = p.value(e);
            }
        }
    }

    #[test]
    fn tar_checks_never_panic(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = scan_image_tar(&data[..], ImageLayout::Gpkg, &VerifyOptions::default());
        let _ = scan_image_tar(&data[..], ImageLayout::Xpak, &VerifyOptions::default());
    }

    #[test]
    fn tar_checks_never_panic_on_valid_headers(names in proptest::collection::vec("[a-z./]{0,12}", 1..6), types in proptest::collection::vec(prop_oneof![Just(b'0'), Just(b'1'), Just(b'2'), Just(b'5'), Just(b'6'), Just(b'x'), Just(b'L'), Just(b'S')], 1..6)) {
        let mut b = tar::Builder::new(Vec::new());
        for (n, t) in names.iter().zip(types.iter().cycle()) {
            let mut h = tar::Header::new_gnu();
            let field = &mut h.as_old_mut().name;
            field[..n.len()].copy_from_slice(n.as_bytes());
            h.set_entry_type(tar::EntryType::new(*t));
            h.set_size(if *t == b'0' { 3 } else { 0 });
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            h.as_old_mut().linkname[..1].copy_from_slice(b"a");
            h.set_cksum();
            let data: &[u8] = if *t == b'0' { b"abc" } else { b"" };
            b.append(&h, data).unwrap();
        }
        let t = b.into_inner().unwrap();
        let _ = scan_image_tar(&t[..], ImageLayout::Gpkg, &VerifyOptions::default());
        let _ = scan_image_tar(&t[..], ImageLayout::Xpak, &VerifyOptions::default());
    }
}

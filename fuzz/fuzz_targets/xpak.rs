//! Fuzzes the xpak/tbz2 reader: the XPAK block and index parsers on raw
//! bytes; the bytes as a whole `.tbz2` file; and the bytes as the tar part of
//! a tbz2 with a valid XPAK trailer. Nothing may panic.
#![no_main]

use std::io::Read;

use binpkg::xpak::{locate_block, parse_index, XpakBlock};
use binpkg::{Limits, VerifyOptions, XpakReader};
use libfuzzer_sys::fuzz_target;

fn xpak_block(items: &[(&[u8], &[u8])]) -> Vec<u8> {
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

fn open_and_stream(bytes: &[u8]) {
    let path = std::env::temp_dir().join(format!("binpkg-fuzz-{}.tbz2", std::process::id()));
    std::fs::write(&path, bytes).expect("write the fuzz input");
    let opts = VerifyOptions {
        limits: Limits {
            max_image_size: 16 << 20,
            max_metadata_size: 1 << 20,
            max_entries: 10_000,
            max_decoder_memory: 64 << 20,
            ..Limits::default()
        },
        ..VerifyOptions::default()
    };
    if let Ok(pkg) = XpakReader::open(&path, &opts) {
        let _ = pkg.cpv();
        let _ = pkg.for_each_image_entry(|e| {
            let mut sink = Vec::new();
            let _ = e.take(1 << 20).read_to_end(&mut sink);
            Ok::<(), binpkg::Error>(())
        });
    }
}

fuzz_target!(|data: &[u8]| {
    // The parsers on raw bytes.
    if let Ok(b) = XpakBlock::parse(data) {
        for e in &b.entries {
            let _ = b.value(e);
        }
    }
    if data.len() >= 4 {
        let n = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
        let _ = parse_index(&data[4..], n);
    }
    if data.len() >= 16 {
        let mut t = [0u8; 16];
        t.copy_from_slice(&data[data.len() - 16..]);
        let _ = locate_block(&t, data.len() as u64);
    }
    // Whole files.
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode % 2 == 0 {
        open_and_stream(rest);
    } else {
        let mut file = rest.to_vec();
        let block = xpak_block(&[(b"CATEGORY", b"app-misc\n"), (b"PF", b"fuzz-1\n")]);
        let len = block.len() as u32;
        file.extend(block);
        file.extend_from_slice(&len.to_be_bytes());
        file.extend_from_slice(b"STOP");
        open_and_stream(&file);
    }
});

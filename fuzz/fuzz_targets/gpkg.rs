//! Fuzzes the gpkg-1 reader: the bytes as a whole `.gpkg.tar` file; the
//! bytes as the image archive of an otherwise valid container (so the
//! Manifest passes and the image checks are reached through the whole
//! reader); and the image-tar checks on their own. Nothing may panic, and
//! whatever opens must stream without panicking.
#![no_main]

use std::io::Read;
use std::path::PathBuf;

use binpkg::manifest::ManifestEntry;
use binpkg::{
    scan_image_tar, BasenameCheck, GpkgReader, ImageLayout, Limits, VerifyOptions,
};
use libfuzzer_sys::fuzz_target;

fn opts() -> VerifyOptions {
    VerifyOptions {
        basename: BasenameCheck::Any,
        limits: Limits {
            max_image_size: 16 << 20,
            max_metadata_size: 1 << 20,
            max_entries: 10_000,
            max_decoder_memory: 64 << 20,
            ..Limits::default()
        },
        ..VerifyOptions::default()
    }
}

/// A USTAR header + data + padding.
fn ustar(out: &mut Vec<u8>, name: &str, data: &[u8]) {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..108].copy_from_slice(b"0000644\0");
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    h[124..136].copy_from_slice(format!("{:011o}\0", data.len()).as_bytes());
    h[136..148].copy_from_slice(b"00000000000\0");
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

fn end(out: &mut Vec<u8>) {
    out.resize(out.len() + 1024, 0);
}

fn container(image: &[u8]) -> Vec<u8> {
    let mut md = Vec::new();
    ustar(&mut md, "metadata/CATEGORY", b"app-misc\n");
    ustar(&mut md, "metadata/PF", b"fuzz-1\n");
    end(&mut md);
    let members: [(&str, &[u8]); 3] = [("gpkg-1", b""), ("metadata.tar", &md), ("image.tar", image)];
    let mut manifest = String::new();
    let mut out = Vec::new();
    for (name, data) in members {
        manifest.push_str(&format!("{}\n", ManifestEntry::for_data(name, data)));
        ustar(&mut out, &format!("fuzz-1/{name}"), data);
    }
    ustar(&mut out, "fuzz-1/Manifest", manifest.as_bytes());
    end(&mut out);
    out
}

fn file() -> PathBuf {
    std::env::temp_dir().join(format!("binpkg-fuzz-{}.gpkg.tar", std::process::id()))
}

fn open_and_stream(bytes: &[u8]) {
    let path = file();
    std::fs::write(&path, bytes).expect("write the fuzz input");
    if let Ok(pkg) = GpkgReader::open(&path, &opts()) {
        let _ = pkg.cpv();
        let _ = pkg.for_each_image_entry(|e| {
            let mut sink = Vec::new();
            let _ = e.take(1 << 20).read_to_end(&mut sink);
            Ok::<(), binpkg::Error>(())
        });
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    match mode % 3 {
        0 => open_and_stream(rest),
        1 => open_and_stream(&container(rest)),
        _ => {
            let o = opts();
            let _ = scan_image_tar(rest, ImageLayout::Gpkg, &o);
            let _ = scan_image_tar(rest, ImageLayout::Xpak, &o);
        }
    }
});

//! Throughput of open (container hashing + Manifest + metadata + image
//! pre-scan) and of streaming every entry with its content, on a generated
//! package. Ignored by default; run in release:
//!
//! ```text
//! cargo test --release -p vartree-binpkg --test perf -- --ignored --nocapture
//! BINPKG_PERF_MIB=1024 cargo test --release ...   # image size (default 256)
//! ```
#![allow(clippy::print_stderr)]

mod common;

use std::io::{Read, Write};
use std::time::Instant;

use binpkg::{BasenameCheck, Limits, VerifyOptions};
use common::*;

/// Text-like, compressible about 3-4x with zstd -3.
fn content(seed: &mut u64, len: usize) -> Vec<u8> {
    const WORDS: [&str; 16] = [
        "portage ", "gentoo ", "binary ", "package ", "install ", "merge ", "\n", "lib ", "usr/",
        "share ", "0x7f3a ", "ELF ", "config ", "x86_64 ", "zstd ", "gpkg ",
    ];
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let r = (*seed >> 33) as usize;
        if r % 5 == 0 {
            out.extend_from_slice(&seed.to_le_bytes());
        } else {
            out.extend_from_slice(WORDS[r % 16].as_bytes());
        }
    }
    out.truncate(len);
    out
}

fn image_tar(mib: usize) -> (Vec<u8>, usize) {
    let mut b = tar::Builder::new(Vec::with_capacity(mib << 20));
    let mut seed = 1u64;
    let file_size = 128 << 10;
    let files = (mib << 20) / file_size;
    let mut dir = tar::Header::new_gnu();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o755);
    dir.set_size(0);
    dir.set_mtime(1_700_000_000);
    b.append_data(&mut dir.clone(), "image/", std::io::empty())
        .unwrap();
    for d in 0..files.div_ceil(64) {
        b.append_data(
            &mut dir.clone(),
            format!("image/usr/lib/d{d}/"),
            std::io::empty(),
        )
        .unwrap();
    }
    for i in 0..files {
        let data = content(&mut seed, file_size);
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_mtime(1_700_000_000);
        b.append_data(&mut h, format!("image/usr/lib/d{}/f{i}", i / 64), &data[..])
            .unwrap();
    }
    (b.into_inner().unwrap(), files)
}

fn measure(label: &str, compress: impl Fn(&[u8]) -> Vec<u8>, ext: &str, mib: usize) {
    let (tar, files) = image_tar(mib);
    let t = Instant::now();
    let compressed = compress(&tar);
    let c_secs = t.elapsed().as_secs_f64();
    let dir = tempfile::tempdir().unwrap();
    let top = "refpkg-1.0-r1";
    let mut members = vec![
        (format!("{top}/gpkg-1"), Vec::new()),
        (
            format!("{top}/metadata.tar{ext}"),
            compress(&corpus_metadata_tar()),
        ),
        (format!("{top}/image.tar{ext}"), compressed),
    ];
    remanifest(&mut members, false);
    let path = dir.path().join(format!("{top}.gpkg.tar"));
    write_container(&path, &members);
    let stored = std::fs::metadata(&path).unwrap().len();
    let opts = VerifyOptions {
        basename: BasenameCheck::Any,
        limits: Limits {
            check_size_key: false,
            ..Limits::default()
        },
        ..VerifyOptions::default()
    };
    let mb = tar.len() as f64 / 1e6;
    let t = Instant::now();
    let pkg = binpkg::open(&path, &opts).unwrap();
    let open_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut n = 0usize;
    let mut bytes = 0u64;
    let mut buf = vec![0u8; 256 << 10];
    pkg.for_each_image_entry(|e| {
        n += 1;
        loop {
            let k = e.read(&mut buf).unwrap();
            if k == 0 {
                break;
            }
            bytes += k as u64;
        }
        Ok::<(), binpkg::Error>(())
    })
    .unwrap();
    let stream_secs = t.elapsed().as_secs_f64();
    assert!(n > files);
    let skip = VerifyOptions {
        skip_image_prescan: true,
        ..opts.clone()
    };
    let t = Instant::now();
    let _ = binpkg::open(&path, &skip).unwrap();
    let open_noscan = t.elapsed().as_secs_f64();
    eprintln!(
        "{label}: image tar {mb:.0} MB in {files} files, stored {:.1} MB (compress {c_secs:.1}s); \
         open {open_secs:.2}s = {:.0} MB/s (without pre-scan {open_noscan:.2}s = {:.0} MB/s of stored data); \
         stream+read {stream_secs:.2}s = {:.0} MB/s ({} MB of content)",
        stored as f64 / 1e6,
        mb / open_secs,
        stored as f64 / 1e6 / open_noscan,
        mb / stream_secs,
        bytes / 1_000_000
    );
}

#[test]
#[ignore]
fn throughput() {
    let mib: usize = std::env::var("BINPKG_PERF_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(256);
    measure(
        "zstd-3",
        |d| zstd::stream::encode_all(d, 3).unwrap(),
        ".zst",
        mib,
    );
    measure("none", <[u8]>::to_vec, "", mib);
    measure(
        "gzip-6",
        |d| {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
            e.write_all(d).unwrap();
            e.finish().unwrap()
        },
        ".gz",
        mib / 4,
    );
    measure(
        "xz-6",
        |d| {
            let mut e = liblzma::write::XzEncoder::new(Vec::new(), 6);
            e.write_all(d).unwrap();
            e.finish().unwrap()
        },
        ".xz",
        mib / 4,
    );
    measure(
        "bzip2-9",
        |d| {
            let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::best());
            e.write_all(d).unwrap();
            e.finish().unwrap()
        },
        ".bz2",
        mib / 4,
    );
}

#[test]
#[ignore]
fn hash_baseline() {
    use sha2::Digest;
    let data = vec![0x5au8; 256 << 20];
    let t = Instant::now();
    let _ = sha2::Sha512::digest(&data);
    let a = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let _ = blake2::Blake2b512::digest(&data);
    let b = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let _ = zstd::stream::decode_all(&zstd::stream::encode_all(&data[..], 3).unwrap()[..]).unwrap();
    let c = t.elapsed().as_secs_f64();
    eprintln!(
        "sha512 {:.0} MB/s, blake2b {:.0} MB/s, zstd -3 encode+decode of zeros {:.0} MB/s",
        268.0 / a,
        268.0 / b,
        268.0 / c
    );
}

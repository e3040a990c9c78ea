//! Builders for binary packages (gpkg-1 and xpak) made byte by byte, so that
//! tests can put hostile content in them: a tar writer that does not
//! sanitise names, zstd frames made of raw and RLE blocks (no compressor
//! needed, and a decompression bomb costs a few bytes per 128 KiB), the
//! gpkg container with a correct (optionally clear-signed) Manifest, and the
//! XPAK block. Plus a tree snapshot for "nothing was touched" checks.

#![allow(dead_code)]

pub mod roots;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

// ---------------------------------------------------------------------------
// tar

/// One tar header, written as given (no validation, no normalisation).
#[derive(Clone, Debug)]
pub struct Hdr {
    pub name: Vec<u8>,
    pub typeflag: u8,
    pub mode: u32,
    /// The size field (may differ from the data actually written).
    pub size: u64,
    pub link: Vec<u8>,
    pub dev: (u32, u32),
    /// The USTAR prefix field.
    pub prefix: Vec<u8>,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
}

impl Hdr {
    pub fn new(name: impl AsRef<[u8]>, typeflag: u8, mode: u32) -> Hdr {
        Hdr {
            name: name.as_ref().to_vec(),
            typeflag,
            mode,
            size: 0,
            link: Vec::new(),
            dev: (0, 0),
            prefix: Vec::new(),
            uid: 0,
            gid: 0,
            mtime: 1_700_000_000,
        }
    }

    /// The 512-byte USTAR header block. Names and link names must fit.
    pub fn block(&self) -> [u8; 512] {
        let mut b = [0u8; 512];
        let put = |b: &mut [u8; 512], at: usize, len: usize, v: &[u8]| {
            assert!(v.len() <= len, "field at {at} too long: {v:?}");
            b[at..at + v.len()].copy_from_slice(v);
        };
        // Octal, or GNU base-256 when the value does not fit.
        let oct = |b: &mut [u8; 512], at: usize, len: usize, v: u64| {
            let s = format!("{v:0w$o}", w = len - 1);
            if s.len() < len {
                b[at..at + s.len()].copy_from_slice(s.as_bytes());
            } else {
                b[at] = 0x80;
                b[at + len - 8..at + len].copy_from_slice(&v.to_be_bytes());
            }
        };
        put(&mut b, 0, 100, &self.name);
        oct(&mut b, 100, 8, u64::from(self.mode));
        oct(&mut b, 108, 8, self.uid);
        oct(&mut b, 116, 8, self.gid);
        oct(&mut b, 124, 12, self.size);
        oct(&mut b, 136, 12, self.mtime);
        b[156] = self.typeflag;
        put(&mut b, 157, 100, &self.link);
        put(&mut b, 257, 8, b"ustar\x0000");
        put(&mut b, 265, 32, b"root");
        put(&mut b, 297, 32, b"root");
        oct(&mut b, 329, 8, u64::from(self.dev.0));
        oct(&mut b, 337, 8, u64::from(self.dev.1));
        put(&mut b, 345, 155, &self.prefix);
        b[148..156].fill(b' ');
        let sum: u32 = b.iter().map(|&x| u32::from(x)).sum();
        let s = format!("{sum:06o}\0 ");
        b[148..156].copy_from_slice(s.as_bytes());
        b
    }
}

/// A tar stream under construction.
#[derive(Default)]
pub struct Tar {
    out: Vec<u8>,
}

fn pad(out: &mut Vec<u8>) {
    let rem = out.len() % 512;
    if rem != 0 {
        out.resize(out.len() + 512 - rem, 0);
    }
}

impl Tar {
    pub fn new() -> Tar {
        Tar::default()
    }

    /// A header and its data (padded); GNU `L`/`K` records for names or
    /// link names longer than 100 bytes.
    pub fn entry(&mut self, mut h: Hdr, data: &[u8]) -> &mut Self {
        if h.name.len() > 100 {
            let mut long = h.name.clone();
            long.push(0);
            self.entry(
                Hdr {
                    size: long.len() as u64,
                    ..Hdr::new("././@LongLink", b'L', 0o644)
                },
                &long,
            );
            h.name.truncate(100);
        }
        if h.link.len() > 100 {
            let mut long = h.link.clone();
            long.push(0);
            self.entry(
                Hdr {
                    size: long.len() as u64,
                    ..Hdr::new("././@LongLink", b'K', 0o644)
                },
                &long,
            );
            h.link.truncate(100);
        }
        self.out.extend_from_slice(&h.block());
        self.out.extend_from_slice(data);
        pad(&mut self.out);
        self
    }

    pub fn dir(&mut self, name: impl AsRef<[u8]>) -> &mut Self {
        self.entry(Hdr::new(name, b'5', 0o755), &[])
    }

    pub fn file(&mut self, name: impl AsRef<[u8]>, data: &[u8]) -> &mut Self {
        self.file_mode(name, data, 0o644)
    }

    pub fn file_mode(&mut self, name: impl AsRef<[u8]>, data: &[u8], mode: u32) -> &mut Self {
        let h = Hdr {
            size: data.len() as u64,
            ..Hdr::new(name, b'0', mode)
        };
        self.entry(h, data)
    }

    pub fn symlink(&mut self, name: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> &mut Self {
        let h = Hdr {
            link: target.as_ref().to_vec(),
            ..Hdr::new(name, b'2', 0o777)
        };
        self.entry(h, &[])
    }

    pub fn hardlink(&mut self, name: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> &mut Self {
        let h = Hdr {
            link: target.as_ref().to_vec(),
            ..Hdr::new(name, b'1', 0o644)
        };
        self.entry(h, &[])
    }

    pub fn fifo(&mut self, name: impl AsRef<[u8]>, mode: u32) -> &mut Self {
        self.entry(Hdr::new(name, b'6', mode), &[])
    }

    pub fn device(
        &mut self,
        name: impl AsRef<[u8]>,
        block: bool,
        major: u32,
        minor: u32,
    ) -> &mut Self {
        let h = Hdr {
            dev: (major, minor),
            ..Hdr::new(name, if block { b'4' } else { b'3' }, 0o600)
        };
        self.entry(h, &[])
    }

    /// A PAX extended header (`x`) for the next entry.
    pub fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        let mut data = Vec::new();
        for (k, v) in records {
            // "<len> <key>=<value>\n", where <len> counts itself.
            let body = 3 + k.len() + v.len();
            let mut len = body + 1;
            while len != body + len.to_string().len() {
                len = body + len.to_string().len();
            }
            data.extend_from_slice(format!("{len} {k}=").as_bytes());
            data.extend_from_slice(v);
            data.push(b'\n');
        }
        let h = Hdr {
            size: data.len() as u64,
            ..Hdr::new("PaxHeaders/x", b'x', 0o644)
        };
        self.entry(h, &data)
    }

    /// Raw bytes, as they are.
    pub fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.out.extend_from_slice(bytes);
        self
    }

    /// The stream so far, without an end-of-archive marker.
    pub fn unfinished(&self) -> Vec<u8> {
        self.out.clone()
    }

    /// The stream with its end-of-archive marker (two zero blocks).
    pub fn finish(&self) -> Vec<u8> {
        let mut out = self.out.clone();
        out.resize(out.len() + 1024, 0);
        out
    }
}

// ---------------------------------------------------------------------------
// zstd, hand-framed

/// A zstd frame built from raw (stored) and RLE blocks: valid zstd for any
/// decoder, made without a compressor.
pub struct Zstd {
    blocks: Vec<u8>,
}

/// Largest block: the window (128 KiB here).
const ZSTD_BLOCK: usize = 128 << 10;

impl Zstd {
    pub fn new() -> Zstd {
        Zstd { blocks: Vec::new() }
    }

    fn block(&mut self, kind: u32, size: usize, body: &[u8]) {
        let h = (kind << 1) | ((size as u32) << 3);
        self.blocks.extend_from_slice(&h.to_le_bytes()[..3]);
        self.blocks.extend_from_slice(body);
    }

    /// Stored bytes.
    pub fn raw(&mut self, data: &[u8]) -> &mut Self {
        for c in data.chunks(ZSTD_BLOCK) {
            self.block(0, c.len(), c);
        }
        self
    }

    /// `count` copies of `byte`, 4 bytes per 128 KiB.
    pub fn rle(&mut self, byte: u8, mut count: u64) -> &mut Self {
        while count > 0 {
            let n = count.min(ZSTD_BLOCK as u64) as usize;
            self.block(1, n, &[byte]);
            count -= n as u64;
        }
        self
    }

    /// The frame: magic, a header with a 128 KiB window, the blocks, an
    /// empty last block.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = vec![0x28, 0xb5, 0x2f, 0xfd, 0x00, 7 << 3];
        out.extend_from_slice(&self.blocks);
        // Last block: raw, empty.
        out.extend_from_slice(&[1, 0, 0]);
        out
    }
}

impl Default for Zstd {
    fn default() -> Self {
        Zstd::new()
    }
}

pub fn zstd(data: &[u8]) -> Vec<u8> {
    Zstd::new().raw(data).finish()
}

// ---------------------------------------------------------------------------
// hashes

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn sha512_hex(d: &[u8]) -> String {
    use sha2::Digest;
    hex(&sha2::Sha512::digest(d))
}

pub fn blake2b_hex(d: &[u8]) -> String {
    use blake2::Digest;
    hex(&blake2::Blake2b512::digest(d))
}

// ---------------------------------------------------------------------------
// metadata, gpkg, xpak

/// Package metadata (build-info keys and values, each value ending in LF
/// as Portage writes them).
pub type Meta = Vec<(String, Vec<u8>)>;

pub fn metadata(category: &str, pf: &str, size: u64) -> Meta {
    [
        ("BUILD_TIME", "1700000000".to_owned()),
        ("CATEGORY", category.to_owned()),
        ("CHOST", "x86_64-pc-linux-gnu".to_owned()),
        ("DEFINED_PHASES", String::new()),
        ("EAPI", "8".to_owned()),
        ("KEYWORDS", "amd64".to_owned()),
        ("PF", pf.to_owned()),
        ("SIZE", size.to_string()),
        ("SLOT", "0".to_owned()),
        ("repository", "test".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), format!("{v}\n").into_bytes()))
    .collect()
}

/// `metadata.tar` of a gpkg.
pub fn metadata_tar(meta: &Meta) -> Vec<u8> {
    let mut t = Tar::new();
    for (k, v) in meta {
        t.file(format!("metadata/{k}"), v);
    }
    t.finish()
}

/// The members of a gpkg container, in order: (`<top>/<file>`, data).
#[derive(Clone)]
pub struct Gpkg {
    pub top: String,
    pub members: Vec<(String, Vec<u8>)>,
}

impl Gpkg {
    /// An unsigned gpkg with zstd metadata and this image tar (zstd-framed
    /// here unless `image_zst` is already a zstd stream).
    pub fn new(top: &str, meta: &Meta, image_zst: Vec<u8>) -> Gpkg {
        let mut g = Gpkg {
            top: top.to_owned(),
            members: vec![
                (format!("{top}/gpkg-1"), Vec::new()),
                (format!("{top}/metadata.tar.zst"), zstd(&metadata_tar(meta))),
                (format!("{top}/image.tar.zst"), image_zst),
            ],
        };
        g.remanifest(None);
        g
    }

    pub fn member_mut(&mut self, file: &str) -> &mut Vec<u8> {
        let name = format!("{}/{file}", self.top);
        &mut self
            .members
            .iter_mut()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("no member {name}"))
            .1
    }

    /// Sign: a detached signature after each data member, and a
    /// clear-signed Manifest.
    pub fn sign(&mut self, key: &TestKey) {
        let mut out = Vec::new();
        for (n, d) in self.members.drain(..) {
            let is_data = n.ends_with(".tar.zst");
            let sig = is_data.then(|| (format!("{n}.sig"), key.detach_sign(&d)));
            if !n.ends_with("/Manifest") {
                out.push((n, d));
            }
            out.extend(sig);
        }
        self.members = out;
        self.remanifest(Some(key));
    }

    /// A fresh Manifest for the members (clear-signed with `key`).
    pub fn remanifest(&mut self, key: Option<&TestKey>) {
        self.members.retain(|(n, _)| !n.ends_with("/Manifest"));
        let mut text = String::new();
        for (name, data) in &self.members {
            let base = name.rsplit('/').next().unwrap_or_default();
            text.push_str(&format!(
                "DATA {base} {} SHA512 {} BLAKE2B {}\n",
                data.len(),
                sha512_hex(data),
                blake2b_hex(data)
            ));
        }
        let data = match key {
            Some(k) => k.clear_sign(&text),
            None => text.into_bytes(),
        };
        self.members.push((format!("{}/Manifest", self.top), data));
    }

    /// The container (USTAR, regular-file members, as Portage writes it).
    pub fn bytes(&self) -> Vec<u8> {
        let mut t = Tar::new();
        for (name, data) in &self.members {
            let h = Hdr {
                size: data.len() as u64,
                ..Hdr::new(name, b'0', 0o644)
            };
            t.entry(h, data);
        }
        t.finish()
    }

    /// Write `<dir>/<top>.gpkg.tar`.
    pub fn write(&self, dir: &Path) -> PathBuf {
        let p = dir.join(format!("{}.gpkg.tar", self.top));
        fs::write(&p, self.bytes()).unwrap();
        p
    }
}

/// An XPAK block (`XPAKPACK` ... `XPAKSTOP`) with the keys sorted, as
/// Portage writes it.
pub fn xpak_block(meta: &Meta) -> Vec<u8> {
    let mut sorted: Vec<&(String, Vec<u8>)> = meta.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let (mut index, mut data) = (Vec::new(), Vec::new());
    for (k, v) in sorted {
        index.extend_from_slice(&(k.len() as u32).to_be_bytes());
        index.extend_from_slice(k.as_bytes());
        index.extend_from_slice(&(data.len() as u32).to_be_bytes());
        index.extend_from_slice(&(v.len() as u32).to_be_bytes());
        data.extend_from_slice(v);
    }
    let mut b = b"XPAKPACK".to_vec();
    b.extend_from_slice(&(index.len() as u32).to_be_bytes());
    b.extend_from_slice(&(data.len() as u32).to_be_bytes());
    b.extend_from_slice(&index);
    b.extend_from_slice(&data);
    b.extend_from_slice(b"XPAKSTOP");
    b
}

/// An xpak package: the compressed tar part, the block, its length, `STOP`.
pub fn xpak_bytes(tar_part: &[u8], block: &[u8]) -> Vec<u8> {
    let mut out = tar_part.to_vec();
    out.extend_from_slice(block);
    out.extend_from_slice(&(block.len() as u32).to_be_bytes());
    out.extend_from_slice(b"STOP");
    out
}

// ---------------------------------------------------------------------------
// signing

/// A signing key made for the test run (Ed25519: RSA-4096 signing takes
/// seconds in debug builds).
pub struct TestKey {
    key: pgp::composed::SignedSecretKey,
}

impl TestKey {
    pub fn generate(uid: &str) -> TestKey {
        use pgp::composed::{KeyType, SecretKeyParamsBuilder};
        let mut p = SecretKeyParamsBuilder::default();
        p.key_type(KeyType::Ed25519Legacy)
            .can_certify(true)
            .can_sign(true)
            .primary_user_id(uid.into());
        TestKey {
            key: p.build().unwrap().generate(rand::thread_rng()).unwrap(),
        }
    }

    /// The armoured public key (a keyring file for `--keyring`).
    pub fn public_armored(&self) -> Vec<u8> {
        self.key
            .to_public_key()
            .to_armored_bytes(Default::default())
            .unwrap()
    }

    /// Clear-sign `text`, as `gpg --clear-sign`.
    pub fn clear_sign(&self, text: &str) -> Vec<u8> {
        pgp::composed::CleartextSignedMessage::sign(
            rand::thread_rng(),
            text,
            &self.key.primary_key,
            &pgp::types::Password::empty(),
        )
        .unwrap()
        .to_armored_string(Default::default())
        .unwrap()
        .into_bytes()
    }

    /// An armoured detached signature of `data`.
    pub fn detach_sign(&self, data: &[u8]) -> Vec<u8> {
        pgp::composed::DetachedSignature::sign_binary_data(
            rand::thread_rng(),
            &self.key.primary_key,
            &pgp::types::Password::empty(),
            pgp::crypto::hash::HashAlgorithm::Sha512,
            data,
        )
        .unwrap()
        .to_armored_bytes(Default::default())
        .unwrap()
    }
}

// ---------------------------------------------------------------------------
// snapshots

/// Everything observable about one path (atime aside).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    /// SHA-512 of a regular file's content.
    pub content: Option<String>,
    pub link: Option<PathBuf>,
    pub rdev: u64,
    pub ino: u64,
    pub nlink: u64,
    pub mtime: (i64, i64),
    /// Changes with any write, chmod, chown, xattr change, link or rename.
    pub ctime: (i64, i64),
}

pub type Snapshot = BTreeMap<PathBuf, Node>;

/// Walk `dir` (not following symlinks): every path below it and `dir`
/// itself (as "").
pub fn snapshot(dir: &Path) -> Snapshot {
    let mut out = BTreeMap::new();
    walk(dir, Path::new(""), &mut out);
    out
}

fn walk(base: &Path, rel: &Path, out: &mut Snapshot) {
    let p = base.join(rel);
    let m = fs::symlink_metadata(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let ft = m.file_type();
    let kind = if ft.is_dir() {
        "dir"
    } else if ft.is_file() {
        "file"
    } else if ft.is_symlink() {
        "symlink"
    } else if ft.is_fifo() {
        "fifo"
    } else if ft.is_char_device() {
        "char"
    } else if ft.is_block_device() {
        "block"
    } else {
        "other"
    };
    out.insert(
        rel.to_path_buf(),
        Node {
            kind,
            mode: m.mode(),
            uid: m.uid(),
            gid: m.gid(),
            size: m.size(),
            content: ft.is_file().then(|| sha512_hex(&fs::read(&p).unwrap())),
            link: ft.is_symlink().then(|| fs::read_link(&p).unwrap()),
            rdev: m.rdev(),
            ino: m.ino(),
            nlink: m.nlink(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        },
    );
    if ft.is_dir() {
        let mut names: Vec<_> = fs::read_dir(&p)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        for n in names {
            walk(base, &rel.join(n), out);
        }
    }
}

/// The differences between two snapshots, one line each (empty: equal).
pub fn diff(before: &Snapshot, after: &Snapshot) -> Vec<String> {
    let mut out = Vec::new();
    for (p, a) in before {
        match after.get(p) {
            None => out.push(format!("removed /{}", p.display())),
            Some(b) if a != b => out.push(format!("changed /{}: {a:?} -> {b:?}", p.display())),
            Some(_) => {}
        }
    }
    for p in after.keys().filter(|p| !before.contains_key(*p)) {
        out.push(format!("added /{}: {:?}", p.display(), after[p]));
    }
    out
}

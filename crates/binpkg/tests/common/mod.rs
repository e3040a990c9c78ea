//! Shared helpers: corpus paths, keys, and builders for gpkg containers and
//! image tars used to make corrupted and hostile packages.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use binpkg::{Keyring, SignaturePolicy, VerifyOptions};

/// `shared/corpora/binpkgs` beside the repository.
pub fn corpus() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpora/binpkgs");
    assert!(
        p.is_dir(),
        "{} is missing: shared/ must sit beside the repository",
        p.display()
    );
    p
}

pub fn generated(name: &str) -> PathBuf {
    corpus().join("portage-generated").join(name)
}

pub fn key_file(name: &str) -> PathBuf {
    corpus().join("test-keys").join(name)
}

pub fn keyring(name: &str) -> Keyring {
    Keyring::from_file(&key_file(name)).expect("keyring")
}

pub fn trusted_opts(policy: SignaturePolicy) -> VerifyOptions {
    VerifyOptions {
        signature: policy,
        keyring: Some(Arc::new(keyring("trusted-pub.asc"))),
        ..VerifyOptions::default()
    }
}

/// The gpkg corpus packages: (file name, compression name, signed).
pub const GPKGS: [(&str, &str, bool); 6] = [
    ("refpkg-1.0-r1-zstd.gpkg.tar", "zstd", false),
    ("refpkg-1.0-r1-zstd-signed.gpkg.tar", "zstd", true),
    ("refpkg-1.0-r1-xz.gpkg.tar", "xz", false),
    ("refpkg-1.0-r1-bzip2.gpkg.tar", "bzip2", false),
    ("refpkg-1.0-r1-gzip.gpkg.tar", "gzip", false),
    ("refpkg-1.0-r1-none.gpkg.tar", "none", false),
];

/// Copy a corpus package into `dir` under the name Portage would give it
/// (`refpkg-1.0-r1.gpkg.tar`: the corpus names carry a `-<compression>`
/// suffix that is not a build id).
pub fn portage_named_copy(dir: &Path, corpus_name: &str) -> PathBuf {
    let to = dir.join("refpkg-1.0-r1.gpkg.tar");
    std::fs::copy(generated(corpus_name), &to).unwrap();
    to
}

/// The members of an outer gpkg tar: (full name, data).
pub fn read_members(path: &Path) -> Vec<(String, Vec<u8>)> {
    let f = std::fs::File::open(path).unwrap();
    let mut ar = tar::Archive::new(f);
    let mut out = Vec::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let name = String::from_utf8(e.path_bytes().into_owned()).unwrap();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        out.push((name, data));
    }
    out
}

/// Write an outer tar (USTAR, as Portage does) with these members.
pub fn write_container(path: &Path, members: &[(String, Vec<u8>)]) {
    let f = std::fs::File::create(path).unwrap();
    let mut b = tar::Builder::new(f);
    for (name, data) in members {
        let mut h = tar::Header::new_ustar();
        if name.len() <= 100 {
            set_name(&mut h, name);
        } else {
            h.set_path(name).unwrap();
        }
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        b.append(&h, &data[..]).unwrap();
    }
    b.into_inner().unwrap();
}

pub fn sha512_hex(d: &[u8]) -> String {
    use sha2::Digest;
    hex(&sha2::Sha512::digest(d))
}

pub fn blake2b_hex(d: &[u8]) -> String {
    use blake2::Digest;
    hex(&blake2::Blake2b512::digest(d))
}

pub fn md5_hex(d: &[u8]) -> String {
    use md5::Digest;
    hex(&md5::Md5::digest(d))
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A Manifest (unsigned) for these members (all but any `Manifest`).
pub fn manifest_for(members: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = String::new();
    for (name, data) in members {
        let base = name.rsplit('/').next().unwrap();
        if base == "Manifest" {
            continue;
        }
        out.push_str(&format!(
            "DATA {base} {} SHA512 {} BLAKE2B {}\n",
            data.len(),
            sha512_hex(data),
            blake2b_hex(data)
        ));
    }
    out.into_bytes()
}

/// One image/metadata tar entry to build.
pub enum Ent<'a> {
    File(&'a str, &'a [u8]),
    FileMode(&'a str, &'a [u8], u32),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
    Fifo(&'a str),
    Char(&'a str, u32, u32),
    /// A raw header with an arbitrary type flag and declared size, no data.
    Raw(&'a str, u8, u64),
}

/// Build an uncompressed tar from entries. Names are written with GNU long
/// names when needed and are NOT sanitised (hostile names pass through).
pub fn build_tar(entries: &[Ent<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        let (name, data): (&str, &[u8]) = match e {
            Ent::File(n, d) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                (n, d)
            }
            Ent::FileMode(n, d, m) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*m);
                (n, d)
            }
            Ent::Dir(n) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                (n, &[])
            }
            Ent::Symlink(n, t) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                set_link(&mut h, t);
                (n, &[])
            }
            Ent::Hardlink(n, t) => {
                h.set_entry_type(tar::EntryType::Link);
                h.set_mode(0o644);
                set_link(&mut h, t);
                (n, &[])
            }
            Ent::Fifo(n) => {
                h.set_entry_type(tar::EntryType::Fifo);
                h.set_mode(0o644);
                (n, &[])
            }
            Ent::Char(n, ma, mi) => {
                h.set_entry_type(tar::EntryType::Char);
                h.set_mode(0o600);
                h.set_device_major(*ma).unwrap();
                h.set_device_minor(*mi).unwrap();
                (n, &[])
            }
            Ent::Raw(n, t, size) => {
                h.set_entry_type(tar::EntryType::new(*t));
                h.set_mode(0o644);
                set_name(&mut h, n);
                h.set_size(*size);
                h.set_cksum();
                b.append(&h, std::io::empty()).unwrap();
                continue;
            }
        };
        set_name(&mut h, name);
        h.set_size(data.len() as u64);
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

/// Put raw bytes in the name field (no validation by the tar crate).
fn set_name(h: &mut tar::Header, name: &str) {
    let field = &mut h.as_old_mut().name;
    assert!(
        name.len() <= field.len(),
        "test names must fit in 100 bytes"
    );
    field.fill(0);
    field[..name.len()].copy_from_slice(name.as_bytes());
}

fn set_link(h: &mut tar::Header, t: &str) {
    let field = &mut h.as_old_mut().linkname;
    assert!(t.len() <= field.len());
    field.fill(0);
    field[..t.len()].copy_from_slice(t.as_bytes());
}

pub fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(data, 3).unwrap()
}

/// The corpus metadata tar (uncompressed), for building new packages.
pub fn corpus_metadata_tar() -> Vec<u8> {
    let m = read_members(&generated("refpkg-1.0-r1-none.gpkg.tar"));
    m.into_iter()
        .find(|(n, _)| n.ends_with("/metadata.tar"))
        .unwrap()
        .1
}

/// Build an unsigned zstd gpkg named `<pf>.gpkg.tar` in `dir` with the
/// corpus metadata and this image tar (uncompressed).
pub fn make_gpkg(dir: &Path, image_tar: &[u8]) -> PathBuf {
    let top = "refpkg-1.0-r1";
    let mut members = vec![
        (format!("{top}/gpkg-1"), Vec::new()),
        (
            format!("{top}/metadata.tar.zst"),
            zstd(&corpus_metadata_tar()),
        ),
        (format!("{top}/image.tar.zst"), zstd(image_tar)),
    ];
    let manifest = manifest_for(&members);
    members.push((format!("{top}/Manifest"), manifest));
    let path = dir.join(format!("{top}.gpkg.tar"));
    write_container(&path, &members);
    path
}

/// Parse a Python bytes repr (`b'...'` / `b"..."`).
pub fn py_bytes(repr: &str) -> Vec<u8> {
    let body = repr
        .strip_prefix("b'")
        .and_then(|r| r.strip_suffix('\''))
        .or_else(|| repr.strip_prefix("b\"").and_then(|r| r.strip_suffix('"')))
        .unwrap_or_else(|| panic!("not a bytes repr: {repr}"));
    let b = body.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        let c = b[i + 1];
        i += 2;
        match c {
            b'n' => out.push(b'\n'),
            b't' => out.push(b'\t'),
            b'r' => out.push(b'\r'),
            b'\\' => out.push(b'\\'),
            b'\'' => out.push(b'\''),
            b'"' => out.push(b'"'),
            b'x' => {
                let h = std::str::from_utf8(&b[i..i + 2]).unwrap();
                out.push(u8::from_str_radix(h, 16).unwrap());
                i += 2;
            }
            other => panic!("unknown escape \\{}", other as char),
        }
    }
    out
}

/// Python used for the differential tests: `$VARTREE_PORTAGE_PYTHON`, else
/// `<workspace>/.venv/bin/python`; `None` (with a notice) when absent and
/// `VARTREE_REQUIRE_PORTAGE` is not 1.
pub fn portage_python() -> Option<PathBuf> {
    let candidate = match std::env::var_os("VARTREE_PORTAGE_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python"),
    };
    if candidate.exists() {
        return Some(candidate);
    }
    let required = std::env::var("VARTREE_REQUIRE_PORTAGE").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "VARTREE_REQUIRE_PORTAGE=1 but no Portage Python at {}",
        candidate.display()
    );
    skip_notice(&format!(
        "no Portage Python at {}; skipping the differential test against Portage",
        candidate.display()
    ));
    None
}

#[allow(clippy::print_stderr)] // a skipped test must say so
pub fn skip_notice(msg: &str) {
    eprintln!("SKIPPED: {msg}");
}

/// A signing key made for these tests (Ed25519: RSA-4096 signing takes
/// seconds in debug builds). Its public half is in [`signing_keyring`].
fn fresh_key() -> &'static pgp::composed::SignedSecretKey {
    use pgp::composed::{KeyType, SecretKeyParamsBuilder};
    static KEY: std::sync::OnceLock<pgp::composed::SignedSecretKey> = std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        let mut p = SecretKeyParamsBuilder::default();
        p.key_type(KeyType::Ed25519Legacy)
            .can_certify(true)
            .can_sign(true)
            .primary_user_id("binpkg test signer <test@example.org>".into());
        p.build().unwrap().generate(rand::thread_rng()).unwrap()
    })
}

/// The Portage trusted test key plus this test run's signing key.
pub fn signing_keyring() -> Keyring {
    let mut k = keyring("trusted-pub.asc");
    let public = fresh_key().to_public_key();
    k.add_armored(&public.to_armored_bytes(Default::default()).unwrap())
        .unwrap();
    k
}

/// Clear-sign `text` (as `gpg --clear-sign`) with the test run's key.
pub fn clear_sign(text: &str) -> Vec<u8> {
    let key = fresh_key();
    let msg = pgp::composed::CleartextSignedMessage::sign(
        rand::thread_rng(),
        text,
        &key.primary_key,
        &pgp::types::Password::empty(),
    )
    .unwrap();
    msg.to_armored_string(Default::default())
        .unwrap()
        .into_bytes()
}

/// An armoured detached signature of `data` with the test run's key.
pub fn detach_sign(data: &[u8]) -> Vec<u8> {
    let key = fresh_key();
    let sig = pgp::composed::DetachedSignature::sign_binary_data(
        rand::thread_rng(),
        &key.primary_key,
        &pgp::types::Password::empty(),
        pgp::crypto::hash::HashAlgorithm::Sha512,
        data,
    )
    .unwrap();
    sig.to_armored_bytes(Default::default()).unwrap()
}

/// Replace the Manifest of `members` by a fresh one (clear-signed if `sign`).
pub fn remanifest(members: &mut Vec<(String, Vec<u8>)>, sign: bool) {
    let top = members[0].0.split('/').next().unwrap().to_owned();
    members.retain(|(n, _)| !n.ends_with("/Manifest"));
    let m = manifest_for(members);
    let m = if sign {
        clear_sign(std::str::from_utf8(&m).unwrap())
    } else {
        m
    };
    members.push((format!("{top}/Manifest"), m));
}

/// Portage's verdict on each file: "OK" or the exception.
pub fn portage_verdicts(python: &Path, files: &[PathBuf]) -> Vec<String> {
    const SCRIPT: &str = r#"
import sys, os, tempfile, shutil
from portage.gpkg import gpkg
class S(dict):
    def __init__(self):
        super().__init__()
        self.features = set()
        self["BINPKG_COMPRESS"] = "zstd"
    def environ(self):
        return dict(os.environ)
for p in sys.argv[1:]:
    try:
        g = gpkg(S(), os.path.basename(p)[:-len(".gpkg.tar")], p)
        g._verify_binpkg()
        d = tempfile.mkdtemp()
        try:
            g.decompress(d)
        finally:
            shutil.rmtree(d)
        print("OK")
    except BaseException as e:
        print(type(e).__name__ + ": " + str(e).replace("\n", " "))
"#;
    let out = std::process::Command::new(python)
        .arg("-c")
        .arg(SCRIPT)
        .args(files)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

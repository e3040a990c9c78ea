//! Shared helpers of the pkgdir integration tests.
#![allow(dead_code, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use pkgdir::IndexMetadata;

/// The workspace root.
pub fn workspace() -> PathBuf {
    let ws = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("..");
    ws.canonicalize().unwrap_or(ws)
}

/// `shared/`, the sibling of the repository.
pub fn shared() -> PathBuf {
    workspace().join("..").join("shared")
}

/// The binary packages Portage wrote (see their SOURCE.txt).
pub fn corpus() -> PathBuf {
    shared()
        .join("corpora")
        .join("binpkgs")
        .join("portage-generated")
}

/// The corpus files: (file name, format).
pub const CORPUS: &[(&str, binpkg::Format)] = &[
    ("refpkg-1.0-r1-zstd.gpkg.tar", binpkg::Format::Gpkg),
    ("refpkg-1.0-r1-xz.gpkg.tar", binpkg::Format::Gpkg),
    ("refpkg-1.0-r1-bzip2.gpkg.tar", binpkg::Format::Gpkg),
    ("refpkg-1.0-r1-gzip.gpkg.tar", binpkg::Format::Gpkg),
    ("refpkg-1.0-r1-zstd-signed.gpkg.tar", binpkg::Format::Gpkg),
    ("refpkg-1.0-r1-none.gpkg.tar", binpkg::Format::Gpkg),
    ("refpkg-1.0-r1.tbz2", binpkg::Format::Xpak),
];

/// Bytes and metadata of a binary package file.
pub fn load_package(path: &Path) -> (Vec<u8>, IndexMetadata) {
    let opts = binpkg::VerifyOptions {
        basename: binpkg::BasenameCheck::Any,
        signature: binpkg::SignaturePolicy::Ignore,
        skip_image_prescan: true,
        ..Default::default()
    };
    let pkg = binpkg::open(path, &opts).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let meta = IndexMetadata::from_raw(pkg.cpv().unwrap(), pkg.metadata());
    (std::fs::read(path).unwrap(), meta)
}

/// A corpus package.
pub fn load_corpus(name: &str) -> (Vec<u8>, IndexMetadata) {
    load_package(&corpus().join(name))
}

/// Every path under `dir` (files, directories, symlinks), relative, sorted.
pub fn tree(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd {
            let e = e.unwrap();
            let p = e.path();
            out.push(p.strip_prefix(base).unwrap().to_string_lossy().into_owned());
            if e.file_type().unwrap().is_dir() {
                walk(base, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Names in `tree` that are not a package, a directory or the index: what a
/// clean PKGDIR must not contain.
pub fn strays(dir: &Path) -> Vec<String> {
    tree(dir)
        .into_iter()
        .filter(|p| {
            let full = dir.join(p);
            if full.is_dir() {
                return false;
            }
            let name = p.rsplit('/').next().unwrap();
            !(name == "Packages"
                || name == "Packages.gz"
                || name.ends_with(".gpkg.tar")
                || name.ends_with(".xpak")
                || name.ends_with(".tbz2"))
        })
        .collect()
}

/// Checks that every package file in `dir` is whole (equal to one of
/// `originals`) and that `Packages` lists exactly the package files, with
/// their size, MTIME, MD5 and SHA1. Returns the index.
pub fn check_pkgdir(dir: &Path, originals: &[Vec<u8>]) -> pkgdir::PackageIndex {
    use md5::Digest;
    let files: Vec<String> = tree(dir)
        .into_iter()
        .filter(|p| p.ends_with(".gpkg.tar") || p.ends_with(".xpak") || p.ends_with(".tbz2"))
        .collect();
    for f in &files {
        let data = std::fs::read(dir.join(f)).unwrap();
        assert!(
            originals.contains(&data),
            "{f}: not one of the published packages ({} bytes)",
            data.len()
        );
    }
    let index = pkgdir::index::parse(&std::fs::read(dir.join("Packages")).unwrap()).unwrap();
    let mut listed: Vec<String> = index.packages.iter().map(|d| d["PATH"].clone()).collect();
    listed.sort();
    assert_eq!(listed, files, "Packages lists exactly the package files");
    assert_eq!(index.header["PACKAGES"], files.len().to_string());
    for d in &index.packages {
        let p = dir.join(&d["PATH"]);
        let data = std::fs::read(&p).unwrap();
        let st = std::fs::metadata(&p).unwrap();
        assert_eq!(d["SIZE"], data.len().to_string());
        assert_eq!(
            d["_mtime_"],
            std::os::unix::fs::MetadataExt::mtime(&st).to_string()
        );
        assert_eq!(d["MD5"], hex(&md5::Md5::digest(&data)));
        assert_eq!(d["SHA1"], hex(&sha1::Sha1::digest(&data)));
    }
    index
}

pub fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// The Python with Portage, or `None` (the caller skips) — unless
/// `VARTREE_REQUIRE_PORTAGE=1`, where a missing Python or portage-ref fails.
pub fn python() -> Option<PathBuf> {
    let require = std::env::var("VARTREE_REQUIRE_PORTAGE").is_ok_and(|v| v == "1");
    let python = match std::env::var_os("VARTREE_PORTAGE_PYTHON") {
        Some(p) if !p.is_empty() => {
            let p = PathBuf::from(p);
            assert!(
                p.exists(),
                "VARTREE_PORTAGE_PYTHON={} does not exist",
                p.display()
            );
            Some(p)
        }
        _ => Some(workspace().join(".venv").join("bin").join("python")).filter(|p| p.exists()),
    };
    let missing = match (&python, portage_ref().join("_refenv.py").is_file()) {
        (None, _) => Some(
            "no Python with Portage: set VARTREE_PORTAGE_PYTHON or run scripts/setup-venv.sh"
                .to_owned(),
        ),
        (Some(_), false) => Some(format!(
            "portage-ref not found at {} (set VARTREE_PORTAGE_REF)",
            portage_ref().display()
        )),
        _ => None,
    };
    if let Some(why) = missing {
        assert!(!require, "VARTREE_REQUIRE_PORTAGE=1 but {why}");
        eprintln!("SKIPPED differential test against Portage: {why}");
        return None;
    }
    python
}

/// `shared/tools/portage-ref` (or `$VARTREE_PORTAGE_REF`).
pub fn portage_ref() -> PathBuf {
    std::env::var_os("VARTREE_PORTAGE_REF")
        .map_or_else(|| shared().join("tools").join("portage-ref"), PathBuf::from)
}

/// Runs `tests/portage/bintree.py MODE ARGS…` and returns its JSON.
pub fn bintree_py(py: &Path, args: &[&std::ffi::OsStr], stdin: Option<&[u8]>) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("portage")
        .join("bintree.py");
    let mut c = Command::new(py);
    c.arg(script)
        .arg("--portage-ref")
        .arg(portage_ref())
        .args(args)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    if let Some(data) = stdin {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(data).unwrap();
    }
    let o = child.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "bintree.py {args:?} failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "bintree.py {args:?}: bad JSON ({e}):\n{}",
            String::from_utf8_lossy(&o.stdout)
        )
    })
}

/// Runs a portage-ref script.
pub fn portage_ref_script(py: &Path, script: &str, args: &[&std::ffi::OsStr]) -> String {
    let o = Command::new(py)
        .arg(portage_ref().join(script))
        .args(args)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{script} {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Simple key map.
pub fn keys(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// A small deterministic random generator (xorshift64*).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

// ------------------------------------------------------------ child process

/// Environment of a child publisher (a test binary re-running itself).
pub const CHILD_DIR: &str = "PKGDIR_TEST_CHILD_DIR";
/// Payload size; 0 = the zstd corpus package.
pub const CHILD_SIZE: &str = "PKGDIR_TEST_CHILD_SIZE";
/// How many packages to publish.
pub const CHILD_ROUNDS: &str = "PKGDIR_TEST_CHILD_ROUNDS";
/// File to append `BUILD_ID` lines to, and the crash-point count at the end.
pub const CHILD_OUT: &str = "PKGDIR_TEST_CHILD_OUT";
/// `1`: single-instance layout.
pub const CHILD_SINGLE: &str = "PKGDIR_TEST_CHILD_SINGLE";

/// A big xpak package: `size` deterministic bytes, then the corpus tbz2
/// (whose XPAK trailer, at the end of the file, is all Portage reads of a
/// package when it indexes it).
pub fn payload(size: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(size + 8);
    let mut i = 0u64;
    while v.len() < size {
        v.extend_from_slice(&i.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes());
        i += 1;
    }
    v.truncate(size);
    v.extend_from_slice(&std::fs::read(corpus().join("refpkg-1.0-r1.tbz2")).unwrap());
    v
}

/// The child: publishes `CHILD_ROUNDS` packages of `app-misc/refpkg-1.0-r1`
/// into `CHILD_DIR`, writing in 64 KiB pieces: the zstd corpus gpkg, or
/// with `CHILD_SIZE` an xpak [`payload`]. Does nothing without `CHILD_DIR`
/// (a normal test run).
pub fn child_main() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return;
    };
    let size: usize = std::env::var(CHILD_SIZE).map_or(0, |s| s.parse().unwrap());
    let rounds: usize = std::env::var(CHILD_ROUNDS).map_or(1, |s| s.parse().unwrap());
    let single = std::env::var(CHILD_SINGLE).is_ok_and(|v| v == "1");
    let (corpus_data, meta) = load_corpus("refpkg-1.0-r1-zstd.gpkg.tar");
    let (data, format) = if size == 0 {
        (corpus_data, binpkg::Format::Gpkg)
    } else {
        (payload(size), binpkg::Format::Xpak)
    };
    let pkgdir = pkgdir::PkgDir::new(
        PathBuf::from(dir),
        pkgdir::PublishOptions {
            multi_instance: !single,
            // The env var decides O_TMPFILE vs the fallback.
            ..Default::default()
        },
    );
    let out = std::env::var_os(CHILD_OUT).map(PathBuf::from);
    for _ in 0..rounds {
        let mut p = pkgdir.create_temp(&meta.cpv, format).unwrap();
        for chunk in data.chunks(64 * 1024) {
            std::io::Write::write_all(p.file(), chunk).unwrap();
        }
        let published = p.publish(&meta).unwrap();
        if let Some(out) = &out {
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(out)
                .unwrap();
            std::io::Write::write_all(
                &mut f,
                format!("BUILD_ID={:?}\n", published.build_id).as_bytes(),
            )
            .unwrap();
        }
    }
    if let Some(out) = &out {
        let mut f = std::fs::OpenOptions::new().append(true).open(out).unwrap();
        std::io::Write::write_all(
            &mut f,
            format!("POINTS={}\n", rootfs::crash::count()).as_bytes(),
        )
        .unwrap();
    }
}

/// A command that runs this test binary's `child` test as a publisher.
pub fn child_command(dir: &Path) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args(["--exact", "child", "--test-threads=1", "--quiet"])
        .env(CHILD_DIR, dir)
        .env_remove("VARTREE_CRASH_AT")
        .env_remove("VARTREE_NO_O_TMPFILE")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

/// After a crash: package files are whole, the index parses and lists no
/// missing file, and only `.partial` temporaries (and the index lock file,
/// which Portage leaves too when it dies) can be left; `remove_stale_temps`
/// removes the temporaries. Returns the package files.
pub fn check_after_crash(dir: &Path, originals: &[Vec<u8>]) -> Vec<String> {
    let lock = ".Packages.portage_lockfile";
    let stray: Vec<String> = strays(dir).into_iter().filter(|s| s != lock).collect();
    for s in &stray {
        let name = s.rsplit('/').next().unwrap();
        assert!(
            name.starts_with('.') && name.ends_with(".partial"),
            "unexpected leftover {s} in {}",
            dir.display()
        );
    }
    let files: Vec<String> = tree(dir)
        .into_iter()
        .filter(|p| p.ends_with(".gpkg.tar") || p.ends_with(".xpak") || p.ends_with(".tbz2"))
        .collect();
    for f in &files {
        let data = std::fs::read(dir.join(f)).unwrap();
        assert!(
            originals.contains(&data),
            "{f}: partial or foreign package ({} bytes)",
            data.len()
        );
    }
    if dir.join("Packages").exists() {
        let index = pkgdir::index::parse(&std::fs::read(dir.join("Packages")).unwrap()).unwrap();
        for d in &index.packages {
            assert!(
                files.contains(&d["PATH"]),
                "index lists missing {}",
                d["PATH"]
            );
        }
        assert_eq!(index.header["PACKAGES"], index.packages.len().to_string());
    }
    let pd = pkgdir::PkgDir::new(dir, pkgdir::PublishOptions::default());
    assert_eq!(pd.remove_stale_temps().unwrap(), stray.len());
    assert!(strays(dir).iter().all(|s| s == lock));
    files
}

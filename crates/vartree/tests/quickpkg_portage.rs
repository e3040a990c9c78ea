//! `vartree quickpkg` against Portage's own quickpkg (portage-ref
//! `quickpkg.py`), in both directions:
//!
//! * the packages vartree writes (gpkg and xpak, with and without
//!   `--include-config`) are verified and installed by Portage
//!   (`install_binpkg.py --method api`), and give the same tree and VDB
//!   entry as Portage's install of Portage's own quickpkg of the same
//!   installed package;
//! * vartree installs its own packages with the same result;
//! * the image entries (type, mode, owner, mtime, content, link target) and
//!   the metadata of vartree's package equal those of Portage's, apart from
//!   the documented differences (xattrs are kept; member order of the
//!   metadata tar).
#![allow(clippy::print_stderr)]

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("VARTREE_PORTAGE_PYTHON") {
        return Some(p.into());
    }
    let p = repo().join(".venv/bin/python");
    p.exists().then_some(p)
}

fn need_python() -> Option<PathBuf> {
    let py = python();
    if py.is_none() {
        assert!(
            std::env::var("VARTREE_REQUIRE_PORTAGE").as_deref() != Ok("1"),
            "VARTREE_REQUIRE_PORTAGE=1 but no Python with Portage"
        );
        eprintln!("SKIPPED: no Python with Portage");
    }
    py
}

fn ok(what: &str, o: &Output) {
    assert!(
        o.status.success(),
        "{what} failed ({}):\n{}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn vartree(root: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vartree"));
    c.arg("--root")
        .arg(root)
        .env_remove("ROOT")
        .env_remove("EPREFIX")
        .env_remove("SOURCE_DATE_EPOCH");
    c
}

fn dump(py: &Path, root: &Path) -> Value {
    let o = Command::new(py)
        .arg(repo().join("tests/portage/merge_dump.py"))
        .arg(root)
        .output()
        .unwrap();
    ok("merge_dump", &o);
    serde_json::from_slice(&o.stdout).unwrap()
}

/// A root with app-misc/qp-1.0 installed (by vartree's merge, which the
/// merge differential tests hold equal to Portage's), then an admin edit of
/// one config file.
fn source_root(t: &Path) -> PathBuf {
    let image = t.join("image");
    let info = t.join("build-info");
    let root = t.join("root-src");
    for d in [&image, &info, &root] {
        fs::create_dir_all(d).unwrap();
    }
    for (k, v) in [
        ("CATEGORY", "app-misc"),
        ("PF", "qp-1.0"),
        ("SLOT", "0"),
        ("EAPI", "8"),
        ("repository", "gentoo"),
        ("BUILD_TIME", "1700000000"),
        ("USE", "abi_x86_64 amd64"),
        ("IUSE", "doc"),
        ("RDEPEND", "dev-libs/foo"),
        ("DEFINED_PHASES", "install"),
        ("CHOST", "x86_64-pc-linux-gnu"),
    ] {
        fs::write(info.join(k), format!("{v}\n")).unwrap();
    }
    let w = |p: &str, data: &[u8], mode: u32| {
        let p = image.join(p);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, data).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
    };
    w("usr/bin/qp", b"#!/bin/sh\necho qp\n", 0o755);
    w("usr/bin/qp-suid", b"suid helper\n", 0o4711);
    w("usr/lib64/libqp.so.1.0", &vec![0x5au8; 70_000], 0o755);
    symlink("libqp.so.1.0", image.join("usr/lib64/libqp.so.1")).unwrap();
    symlink("/usr/lib64/libqp.so.1", image.join("usr/lib64/libqp.so")).unwrap();
    fs::hard_link(image.join("usr/bin/qp"), image.join("usr/bin/qp-again")).unwrap();
    w("usr/share/qp/empty", b"", 0o644);
    fs::create_dir_all(image.join("usr/share/qp/empty-dir")).unwrap();
    w("usr/share/qp/space name.txt", b"spaces\n", 0o644);
    let long = format!("usr/share/qp/{}/{}.txt", "d".repeat(90), "f".repeat(120));
    w(&long, b"long name\n", 0o644);
    w("etc/qp/qp.conf", b"setting = 1\n", 0o644);
    w("etc/qp/untouched.conf", b"untouched\n", 0o644);
    // Every file the same mtime, as in a real image.
    let o = Command::new("find")
        .arg(&image)
        .args(["-exec", "touch", "-h", "-d", "@1700000000", "{}", "+"])
        .output()
        .unwrap();
    ok("touch", &o);
    merge_image(&root, &image, &info);
    // The admin edits one config file.
    fs::write(root.join("etc/qp/qp.conf"), "setting = 2\n").unwrap();
    root
}

/// `vartree merge` of an image directory into `root`.
fn merge_image(root: &Path, image: &Path, info: &Path) {
    let o = vartree(root)
        .args(["merge", "--sync", "never", "--image"])
        .arg(image)
        .arg("--build-info")
        .arg(info)
        .output()
        .unwrap();
    ok("vartree merge", &o);
}

/// Portage's install of `pkg` into a fresh `root`.
fn portage_install(py: &Path, pkg: &Path, root: &Path) {
    fs::create_dir_all(root).unwrap();
    let o = Command::new(py)
        .arg(repo().join("../shared/tools/portage-ref/install_binpkg.py"))
        .arg("--root")
        .arg(root)
        .arg("--binpkg")
        .arg(pkg)
        .args(["--method", "api"])
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap();
    ok(&format!("Portage install of {}", pkg.display()), &o);
}

/// Portage's quickpkg; returns the package path.
fn portage_quickpkg(py: &Path, root: &Path, pkgdir: &Path, format: &str, cfg: &str) -> PathBuf {
    let o = Command::new(py)
        .arg(repo().join("../shared/tools/portage-ref/quickpkg.py"))
        .arg("--root")
        .arg(root)
        .args(["--cpv", "app-misc/qp-1.0", "--pkgdir"])
        .arg(pkgdir)
        .args(["--format", format, "--include-config", cfg])
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap();
    ok("Portage quickpkg", &o);
    let out = String::from_utf8_lossy(&o.stdout);
    let line = out
        .lines()
        .rev()
        .find(|l| l.contains("qp-1.0"))
        .unwrap_or_else(|| panic!("no package path in Portage's output: {out}"));
    PathBuf::from(line.trim())
}

fn vartree_quickpkg(root: &Path, pkgdir: &Path, format: &str, cfg: &str) -> (PathBuf, Value) {
    let o = vartree(root)
        .args(["--json", "quickpkg", "--pkgdir"])
        .arg(pkgdir)
        .args(["--format", format, &format!("--include-config={cfg}")])
        .arg("app-misc/qp")
        .output()
        .unwrap();
    ok("vartree quickpkg", &o);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    (PathBuf::from(v[0]["path"].as_str().unwrap()), v[0].clone())
}

/// path → normalised description of each image entry, and the metadata.
fn inspect(pkg: &Path) -> (BTreeMap<String, String>, BTreeMap<String, Vec<u8>>) {
    let opts = binpkg::VerifyOptions {
        basename: binpkg::BasenameCheck::Any,
        signature: binpkg::SignaturePolicy::Ignore,
        ..binpkg::VerifyOptions::default()
    };
    let p = binpkg::open(pkg, &opts).unwrap_or_else(|e| panic!("{}: {e}", pkg.display()));
    let mut entries = BTreeMap::new();
    p.for_each_image_entry(|e| {
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        let desc = format!(
            "{} {:o} {}:{} {} {} {:?}",
            e.kind.as_str(),
            e.mode,
            e.uid,
            e.gid,
            e.mtime.secs,
            if e.kind == binpkg::EntryKind::File {
                vdb::digest::md5_hex_reader(&mut &data[..], &mut vec![0u8; 4096]).unwrap()
            } else {
                String::new()
            },
            e.link_target
                .as_ref()
                .map(|t| String::from_utf8_lossy(t).into_owned())
        );
        entries.insert(String::from_utf8_lossy(&e.path).into_owned(), desc);
        Ok::<(), binpkg::Error>(())
    })
    .unwrap();
    (entries, p.metadata().clone())
}

#[test]
fn quickpkg_packages_equal_portages_and_portage_installs_them() {
    let Some(py) = need_python() else { return };
    let t = tempfile::tempdir().unwrap();
    let src = source_root(t.path());
    let mut cases = 0;
    for format in ["gpkg", "xpak"] {
        for cfg in ["n", "y"] {
            let case = t.path().join(format!("{format}-{cfg}"));
            let (pp, pv) = (case.join("pkgdir-portage"), case.join("pkgdir-vartree"));
            let portage_pkg = portage_quickpkg(&py, &src, &pp, format, cfg);
            let (ours, json) = vartree_quickpkg(&src, &pv, format, cfg);
            let ext = if format == "gpkg" {
                ".gpkg.tar"
            } else {
                ".xpak"
            };
            assert!(
                ours.to_string_lossy()
                    .ends_with(&format!("app-misc/qp/qp-1.0-1{ext}")),
                "{}",
                ours.display()
            );
            assert_eq!(
                json["excluded_config"].as_array().unwrap().len(),
                if cfg == "n" { 2 } else { 0 },
                "{json}"
            );
            // Same entries and metadata as Portage's package.
            let (pe, pm) = inspect(&portage_pkg);
            let (ve, vm) = inspect(&ours);
            assert_eq!(
                pe, ve,
                "{format} include-config={cfg}: image entries differ"
            );
            assert!(ve.len() > 12, "only {} entries", ve.len());
            let keys = |m: &BTreeMap<String, Vec<u8>>| m.keys().cloned().collect::<Vec<_>>();
            assert_eq!(keys(&pm), keys(&vm), "{format}: metadata keys differ");
            for (k, v) in &pm {
                assert_eq!(Some(v), vm.get(k), "{format}: metadata {k} differs");
            }
            // Portage verifies and installs vartree's package; the result is
            // the same as its install of its own package.
            let (rp, rv, rvv) = (
                case.join("root-portage-pkg"),
                case.join("root-vartree-pkg"),
                case.join("root-vartree-by-vartree"),
            );
            portage_install(&py, &portage_pkg, &rp);
            portage_install(&py, &ours, &rv);
            let (dp, dv) = (dump(&py, &rp), dump(&py, &rv));
            // Portage gives symlinks from a gpkg the extraction time (D18).
            let gpkg = format == "gpkg";
            let strip_ino = |v: &Value| {
                let mut t = v["tree"].as_object().unwrap().clone();
                for e in t.values_mut() {
                    let sym = e["type"] == "sym";
                    let e = e.as_object_mut().unwrap();
                    e.remove("ino");
                    if gpkg && sym {
                        e.remove("mtime_ns");
                    }
                }
                t
            };
            assert_eq!(
                strip_ino(&dp),
                strip_ino(&dv),
                "{format}-{cfg}: trees differ"
            );
            // BINPKGMD5 is the md5 of the package file, which differs.
            let vdb = |v: &Value| {
                v["vdb"]
                    .as_str()
                    .unwrap()
                    .lines()
                    .scan(false, |skip, l| {
                        // Drop the BINPKGMD5 header and its value line.
                        let drop = *skip || l.contains("BINPKGMD5");
                        *skip = l.contains("BINPKGMD5");
                        Some((drop, l))
                    })
                    .filter(|(drop, _)| !drop)
                    .map(|(_, l)| {
                        if gpkg && l.contains("sym /") {
                            l.rsplit_once(' ').map_or(l, |(a, _)| a).to_owned()
                        } else {
                            l.to_owned()
                        }
                    })
                    .collect::<Vec<_>>()
            };
            assert_eq!(vdb(&dp), vdb(&dv), "{format}-{cfg}: VDB entries differ");
            // vartree installs its own package the same way (symlink mtimes
            // from a gpkg differ from Portage's, as documented: D18).
            fs::create_dir_all(&rvv).unwrap();
            let o = vartree(&rvv)
                .args(["install", "--sync", "never"])
                .arg(&ours)
                .output()
                .unwrap();
            ok("vartree install", &o);
            let dvv = dump(&py, &rvv);
            let mut a = strip_ino(&dv);
            let mut b = strip_ino(&dvv);
            for m in [&mut a, &mut b] {
                m.remove("/etc/env.d");
                for e in m.values_mut() {
                    if e["type"] == "sym" {
                        e.as_object_mut().unwrap().remove("mtime_ns");
                    }
                }
            }
            assert_eq!(
                a, b,
                "{format}-{cfg}: vartree's install differs from Portage's"
            );
            // And Portage's freshly made package, installed by vartree,
            // gives what Portage's install of it gives.
            let rvp = case.join("root-portage-pkg-by-vartree");
            fs::create_dir_all(&rvp).unwrap();
            let o = vartree(&rvp)
                .args(["install", "--sync", "never"])
                .arg(&portage_pkg)
                .output()
                .unwrap();
            ok("vartree install of Portage's package", &o);
            let mut c = strip_ino(&dump(&py, &rvp));
            let mut d = strip_ino(&dp);
            for m in [&mut c, &mut d] {
                m.remove("/etc/env.d");
                for e in m.values_mut() {
                    if e["type"] == "sym" {
                        e.as_object_mut().unwrap().remove("mtime_ns");
                    }
                }
            }
            assert_eq!(
                c, d,
                "{format}-{cfg}: vartree's install of Portage's package differs"
            );
            cases += 1;
        }
    }
    assert_eq!(cases, 4);
}

#[test]
fn quickpkg_is_reproducible_and_keeps_xattrs() {
    let t = tempfile::tempdir().unwrap();
    let src = source_root(t.path());
    // An xattr on an installed file (skip quietly if the filesystem has none).
    let f = src.join("usr/bin/qp");
    let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    let name = std::ffi::CString::new("user.vartree").unwrap();
    // SAFETY: valid NUL-terminated strings and a 4-byte value.
    let has_xattr =
        unsafe { libc::setxattr(c(&f).as_ptr(), name.as_ptr(), b"kept".as_ptr().cast(), 4, 0) }
            == 0;
    let mut outputs = Vec::new();
    for i in 0..2 {
        let pkgdir = t.path().join(format!("pkgdir-{i}"));
        let o = vartree(&src)
            .args(["--json", "quickpkg", "--reproducible", "--pkgdir"])
            .arg(&pkgdir)
            .arg("app-misc/qp")
            .output()
            .unwrap();
        ok("vartree quickpkg", &o);
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        outputs.push(fs::read(v[0]["path"].as_str().unwrap()).unwrap());
    }
    assert!(outputs[0] == outputs[1], "two --reproducible runs differ");
    if has_xattr {
        let root2 = t.path().join("root-2");
        fs::create_dir_all(&root2).unwrap();
        let pkg = t.path().join("pkgdir-0/app-misc/qp/qp-1.0-1.gpkg.tar");
        let o = vartree(&root2)
            .args(["install", "--sync", "never"])
            .arg(&pkg)
            .output()
            .unwrap();
        ok("vartree install", &o);
        let mut buf = [0u8; 16];
        // SAFETY: valid strings and a buffer of the given size.
        let n = unsafe {
            libc::getxattr(
                c(&root2.join("usr/bin/qp")).as_ptr(),
                name.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        assert_eq!(n, 4, "the xattr did not survive quickpkg + install");
        assert_eq!(&buf[..4], b"kept");
        // Portage reads a package carrying SCHILY.xattr records (it does not
        // restore them: its gpkg has none).
        if let Some(py) = need_python() {
            let root3 = t.path().join("root-3");
            portage_install(&py, &pkg, &root3);
            assert!(root3.join("usr/bin/qp").is_file());
        }
    } else {
        eprintln!("note: no user xattrs here; the xattr part was not exercised");
    }
}

/// A package signed by `vartree quickpkg --sign-key` passes Portage's own
/// signature verification (gpg in a GnuPG home where the key is trusted,
/// FEATURES=binpkg-request-signature); one signed with a key that home does
/// not trust is refused by Portage and by vartree.
#[test]
fn signed_quickpkg_is_verified_by_portage() {
    let Some(py) = need_python() else { return };
    let keys = repo().join("../shared/corpora/binpkgs/test-keys");
    let t = tempfile::tempdir().unwrap();
    let src = source_root(t.path());
    // Portage's GnuPG home, private and readable by the user Portage drops
    // to for gpg when it runs as root.
    let home = t.path().join("gnupg-home");
    let o = Command::new("cp")
        .arg("-r")
        .arg(keys.join("gnupg-home"))
        .arg(&home)
        .output()
        .unwrap();
    ok("cp gnupg-home", &o);
    fs::set_permissions(&home, fs::Permissions::from_mode(0o700)).unwrap();
    let _ = Command::new("chown")
        .args(["-R", "nobody"])
        .arg(&home)
        .output();
    let pass = t.path().join("passphrase");
    fs::write(&pass, "GentooTest\n").unwrap();
    for (key, trusted) in [("trusted-sec.asc", true), ("untrusted-sec.asc", false)] {
        let pkgdir = t.path().join(format!("pkgdir-{key}"));
        let o = vartree(&src)
            .args(["--json", "quickpkg", "--pkgdir"])
            .arg(&pkgdir)
            .arg("--sign-key")
            .arg(keys.join(key))
            .arg("--sign-passphrase-file")
            .arg(&pass)
            .arg("app-misc/qp")
            .output()
            .unwrap();
        ok("vartree quickpkg --sign-key", &o);
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        let pkg = PathBuf::from(v[0]["path"].as_str().unwrap());
        let root = t.path().join(format!("root-{key}"));
        fs::create_dir_all(&root).unwrap();
        let o = Command::new(&py)
            .arg(repo().join("../shared/tools/portage-ref/install_binpkg.py"))
            .arg("--root")
            .arg(&root)
            .arg("--binpkg")
            .arg(&pkg)
            .args(["--method", "api", "--features", "binpkg-request-signature"])
            .env("BINPKG_GPG_VERIFY_GPG_HOME", &home)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        if trusted {
            ok("Portage install of a signed package", &o);
            assert!(root.join("usr/bin/qp").is_file());
        } else {
            assert!(
                !o.status.success(),
                "Portage accepted an untrusted signature"
            );
            assert!(stderr.contains("InvalidSignature"), "{stderr}");
        }
        // vartree, given the trusted public key, agrees.
        let root2 = t.path().join(format!("root2-{key}"));
        fs::create_dir_all(&root2).unwrap();
        let o = vartree(&root2)
            .args([
                "install",
                "--sync",
                "never",
                "--signature",
                "required",
                "--keyring",
            ])
            .arg(keys.join("trusted-pub.asc"))
            .arg(&pkg)
            .output()
            .unwrap();
        assert_eq!(
            o.status.success(),
            trusted,
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

/// `merge --buildpkg`: the package made from the image is published, its
/// BUILD_ID and BINPKGMD5 reach the VDB entry (as Portage records them),
/// and Portage's install of that package gives the same tree and VDB entry
/// as vartree's merge of the image.
#[test]
fn merge_buildpkg_package_installs_like_the_merge() {
    let Some(py) = need_python() else { return };
    let t = tempfile::tempdir().unwrap();
    // source_root merged the image with vartree; merge it again elsewhere
    // with --buildpkg.
    source_root(t.path());
    let root = t.path().join("root-buildpkg");
    let pkgdir = t.path().join("pkgdir");
    fs::create_dir_all(&root).unwrap();
    let o = vartree(&root)
        .args([
            "--json",
            "merge",
            "--sync",
            "never",
            "--buildpkg",
            "--pkgdir",
        ])
        .arg(&pkgdir)
        .arg("--image")
        .arg(t.path().join("image"))
        .arg("--build-info")
        .arg(t.path().join("build-info"))
        .output()
        .unwrap();
    ok("vartree merge --buildpkg", &o);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let pkg = PathBuf::from(v["binpkg"]["path"].as_str().unwrap());
    assert!(
        pkg.ends_with("app-misc/qp/qp-1.0-1.gpkg.tar"),
        "{}",
        pkg.display()
    );
    let entry = root.join("var/db/pkg/app-misc/qp-1.0");
    assert_eq!(fs::read_to_string(entry.join("BUILD_ID")).unwrap(), "1\n");
    assert_eq!(
        fs::read_to_string(entry.join("BINPKGMD5")).unwrap().trim(),
        v["binpkg"]["md5"].as_str().unwrap()
    );
    let index = fs::read_to_string(pkgdir.join("Packages")).unwrap();
    assert!(index.contains("BUILD_ID: 1\n"), "{index}");
    // Portage installs the package; the result equals the merge.
    let rp = t.path().join("root-portage");
    portage_install(&py, &pkg, &rp);
    let (dp, dv) = (dump(&py, &rp), dump(&py, &root));
    let tree = |v: &Value| {
        let mut t = v["tree"].as_object().unwrap().clone();
        t.remove("/etc/env.d");
        for e in t.values_mut() {
            let sym = e["type"] == "sym";
            let e = e.as_object_mut().unwrap();
            e.remove("ino");
            if sym {
                e.remove("mtime_ns"); // D18
            }
        }
        t
    };
    assert_eq!(tree(&dp), tree(&dv), "trees differ");
    let vdb = |v: &Value| {
        v["vdb"]
            .as_str()
            .unwrap()
            .lines()
            .map(|l| {
                if l.starts_with("sym /") {
                    l.rsplit_once(' ').map_or(l, |(a, _)| a).to_owned()
                } else {
                    l.to_owned()
                }
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(vdb(&dp), vdb(&dv), "VDB entries differ");
}

/// quickpkg reads the files of a large package on several threads, ahead of
/// the archive: the package is byte for byte the one a single thread makes,
/// for every format and config setting, with hard links whose two names are
/// far apart, a file gone, a file that became a FIFO, a recorded directory
/// that is now a symlink to one, and config files edited and not.
#[test]
fn quickpkg_reading_ahead_on_threads_packs_the_same_bytes() {
    let t = tempfile::tempdir().unwrap();
    let src = source_root(t.path());
    // A second package of 700 files, merged, then changed.
    let image = t.path().join("image-big");
    let info = t.path().join("build-info-big");
    fs::create_dir_all(&info).unwrap();
    for (k, v) in [
        ("CATEGORY", "app-misc"),
        ("PF", "big-1.0"),
        ("SLOT", "0"),
        ("EAPI", "8"),
        ("repository", "gentoo"),
        ("BUILD_TIME", "1700000000"),
    ] {
        fs::write(info.join(k), format!("{v}\n")).unwrap();
    }
    for i in 0..700 {
        let p = image.join(format!("usr/share/big/d{:02}/f{i:03}", i % 23));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, format!("file {i}\n").repeat(i % 5 + 1)).unwrap();
    }
    fs::write(image.join("usr/share/big/large"), vec![7u8; 300_000]).unwrap();
    fs::hard_link(
        image.join("usr/share/big/d00/f000"),
        image.join("usr/share/big/d22/zz-link"),
    )
    .unwrap();
    fs::create_dir_all(image.join("usr/share/big/dir/inner")).unwrap();
    fs::write(image.join("usr/share/big/dir/inner/x"), "x\n").unwrap();
    fs::create_dir_all(image.join("etc/big")).unwrap();
    fs::write(image.join("etc/big/a.conf"), "a\n").unwrap();
    fs::write(image.join("etc/big/b.conf"), "b\n").unwrap();
    merge_image(&src, &image, &info);
    fs::remove_file(src.join("usr/share/big/d05/f005")).unwrap();
    let fifo = src.join("usr/share/big/d06/f006");
    fs::remove_file(&fifo).unwrap();
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    let moved = src.join("usr/share/big/dir-real");
    fs::rename(src.join("usr/share/big/dir"), &moved).unwrap();
    symlink("dir-real", src.join("usr/share/big/dir")).unwrap();
    fs::write(src.join("etc/big/a.conf"), "a, edited\n").unwrap();
    let mut compared = 0;
    for format in ["gpkg", "xpak"] {
        for cfg in [
            &["--include-config", "y"][..],
            &["--include-config", "n"][..],
            &["--include-unmodified-config", "y"][..],
        ] {
            let mut packages = Vec::new();
            for readers in ["1", "3"] {
                let pkgdir = t
                    .path()
                    .join(format!("pkgdir-{format}-{}-{readers}", cfg.join("")));
                let o = vartree(&src)
                    .env("VARTREE_QUICKPKG_READERS", readers)
                    .args(["--json", "quickpkg", "--reproducible", "--format", format])
                    .args(cfg)
                    .arg("--pkgdir")
                    .arg(&pkgdir)
                    .arg("app-misc/big")
                    .output()
                    .unwrap();
                ok("vartree quickpkg", &o);
                let v: Value = serde_json::from_slice(&o.stdout).unwrap();
                packages.push(fs::read(v[0]["path"].as_str().unwrap()).unwrap());
            }
            assert!(
                packages[0] == packages[1],
                "{format} {cfg:?}: one reader and three made different packages"
            );
            compared += 1;
        }
    }
    assert_eq!(compared, 6);
    // And the package holds what it should: the hard link, the large file,
    // the directory behind the symlink; not the missing file or the FIFO.
    let (entries, _) = inspect(
        &fs::read_dir(
            t.path()
                .join("pkgdir-gpkg---include-configy-3/app-misc/big"),
        )
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path(),
    );
    let has = |p: &str| entries.keys().any(|k| k.ends_with(p));
    assert!(has("usr/share/big/d22/zz-link") && has("usr/share/big/large"));
    assert!(has("usr/share/big/dir/inner/x"));
    assert!(!has("usr/share/big/d05/f005") && !has("usr/share/big/d06/f006"));
}

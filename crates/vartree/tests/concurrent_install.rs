//! Eight `vartree install` processes at once into one root: binary packages
//! (made with `vartree package`) of four new packages and four same-slot
//! upgrades of packages installed beforehand, all sharing directories. Every
//! install succeeds, every file is in place and recorded, nothing of the
//! old versions is left, COUNTERs are unique, and `check` is clean.
//! (`concurrency.rs` shows, for `merge`, that staging really overlaps.)
#![allow(clippy::print_stderr)]

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn vartree(root: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vartree"));
    c.arg("--root")
        .arg(root)
        .env_remove("ROOT")
        .env_remove("EPREFIX");
    c
}

/// Make `CAT/PN-VER` with `files` files under shared directories; returns
/// the package path.
fn make_pkg(t: &Path, pkgdir: &Path, pn: &str, ver: &str, files: usize) -> PathBuf {
    let src = t.join(format!("src-{pn}-{ver}"));
    let (image, info) = (src.join("image"), src.join("build-info"));
    fs::create_dir_all(&info).unwrap();
    for (k, v) in [
        ("CATEGORY", "app-misc"),
        ("PF", &format!("{pn}-{ver}")),
        ("SLOT", "0"),
        ("EAPI", "8"),
    ] {
        fs::write(info.join(k), format!("{v}\n")).unwrap();
    }
    for i in 0..files {
        // Shared: usr/share/common/dNN and usr/bin.
        let d = image.join(format!("usr/share/common/d{:02}", i % 20));
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join(format!("{pn}-{i}")), format!("{pn} {ver} {i}\n")).unwrap();
    }
    fs::create_dir_all(image.join("usr/bin")).unwrap();
    fs::write(image.join(format!("usr/bin/{pn}")), format!("{pn} {ver}\n")).unwrap();
    if ver == "1" {
        fs::write(
            image.join(format!("usr/share/common/{pn}-old-only")),
            "old\n",
        )
        .unwrap();
    }
    let o = vartree(&t.join("unused"))
        .args(["--json", "package", "--pkgdir"])
        .arg(pkgdir)
        .arg("--image")
        .arg(&image)
        .arg("--build-info")
        .arg(&info)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    PathBuf::from(v["path"].as_str().unwrap())
}

#[test]
fn eight_parallel_installs_into_one_root() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let pkgdir = t.path().join("pkgdir");
    fs::create_dir_all(&root).unwrap();
    let files = 300;
    // Four packages installed beforehand (version 1), upgraded in parallel.
    for pn in ["up0", "up1", "up2", "up3"] {
        let p = make_pkg(t.path(), &pkgdir, pn, "1", files);
        let o = vartree(&root)
            .args(["install", "--sync", "never"])
            .arg(&p)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let mut pkgs = Vec::new();
    for pn in ["up0", "up1", "up2", "up3"] {
        pkgs.push((pn, make_pkg(t.path(), &pkgdir, pn, "2", files)));
    }
    for pn in ["new0", "new1", "new2", "new3"] {
        pkgs.push((pn, make_pkg(t.path(), &pkgdir, pn, "2", files)));
    }
    let children: Vec<_> = pkgs
        .iter()
        .map(|(_, p)| {
            vartree(&root)
                .args(["install", "--sync", "never"])
                .arg(p)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    // Every package at version 2, every file there with its content.
    let mut counters = BTreeSet::new();
    for (pn, _) in &pkgs {
        let entry = root.join(format!("var/db/pkg/app-misc/{pn}-2"));
        assert!(entry.is_dir(), "{pn}-2 is not recorded");
        assert!(
            !root.join(format!("var/db/pkg/app-misc/{pn}-1")).exists(),
            "{pn}-1 is still recorded"
        );
        let counter = fs::read_to_string(entry.join("COUNTER")).unwrap();
        assert!(counters.insert(counter.clone()), "COUNTER {counter} twice");
        let contents = fs::read_to_string(entry.join("CONTENTS")).unwrap();
        for i in 0..files {
            let rel = format!("usr/share/common/d{:02}/{pn}-{i}", i % 20);
            assert_eq!(
                fs::read_to_string(root.join(&rel)).unwrap(),
                format!("{pn} 2 {i}\n")
            );
            assert!(
                contents.contains(&format!("obj /{rel} ")),
                "{rel} not in CONTENTS"
            );
        }
        assert!(!root
            .join(format!("usr/share/common/{pn}-old-only"))
            .exists());
    }
    let o = vartree(&root).arg("check").output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    // No staging or journal left.
    let leftovers: Vec<_> = fs::read_dir(root.join("var/db"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with(".vartree"))
        .filter(|n| {
            fs::read_dir(root.join("var/db").join(n))
                .map(|mut d| d.next().is_some())
                .unwrap_or(true)
        })
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

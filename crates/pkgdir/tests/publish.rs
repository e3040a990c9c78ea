//! Publishing: layout, index, permissions, build ids, and that no error path
//! leaves anything in PKGDIR.

mod common;

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use binpkg::Format;
use common::*;
use pkgdir::{Error, IndexMetadata, PkgDir, PublishOptions};

fn opts(named: bool) -> PublishOptions {
    PublishOptions {
        force_named_temp: named,
        sync: false,
        ..Default::default()
    }
}

fn publish_bytes(
    dir: &PkgDir,
    data: &[u8],
    meta: &IndexMetadata,
    format: Format,
) -> pkgdir::Published {
    let mut p = dir.create_temp(&meta.cpv, format).unwrap();
    p.file().write_all(data).unwrap();
    p.publish(meta).unwrap()
}

#[test]
fn multi_instance_layout_index_and_gz() {
    for named in [false, true] {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("pkgdir");
        let dir = PkgDir::new(&root, opts(named));
        let (gpkg, gmeta) = load_corpus("refpkg-1.0-r1-zstd.gpkg.tar");
        let (xpak, xmeta) = load_corpus("refpkg-1.0-r1.tbz2");
        let mut p = dir.create_temp(&gmeta.cpv, Format::Gpkg).unwrap();
        assert_eq!(p.predicted_build_id(), Some(1));
        assert_eq!(p.temp_path().is_some(), named);
        p.file().write_all(&gpkg).unwrap();
        let a = p.publish(&gmeta).unwrap();
        let b = publish_bytes(&dir, &xpak, &xmeta, Format::Xpak);
        assert_eq!(a.rel_path, "app-misc/refpkg/refpkg-1.0-r1-1.gpkg.tar");
        assert_eq!(a.build_id, Some(1));
        assert_eq!(b.rel_path, "app-misc/refpkg/refpkg-1.0-r1-2.xpak");
        assert_eq!(a.path, root.join(&a.rel_path));
        assert_eq!(a.size, gpkg.len() as u64);
        let index = check_pkgdir(&root, &[gpkg.clone(), xpak.clone()]);
        assert!(strays(&root).is_empty(), "{:?}", strays(&root));
        // Portage-exact entry: the package's own metadata has no BUILD_ID.
        let e = &index.packages[0];
        assert_eq!(
            e["BUILD_ID"], "",
            "parsed entries have the defaults filled in"
        );
        assert_eq!(e["repository"], "gentoo");
        assert_eq!(e["SLOT"], "0/1.2");
        assert_eq!(e["RDEPEND"], ">=sys-libs/glibc-2.38");
        assert_eq!(e["MD5"], a.md5);
        // Packages.gz: the same text, gzip mtime and file times = TIMESTAMP.
        let ts: i64 = index.header["TIMESTAMP"].parse().unwrap();
        let gz = fs::read(root.join("Packages.gz")).unwrap();
        assert_eq!(&gz[..4], &[0x1f, 0x8b, 8, 0]);
        assert_eq!(
            i64::from(u32::from_le_bytes(gz[4..8].try_into().unwrap())),
            ts
        );
        let mut text = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut text)
            .unwrap();
        assert_eq!(text, fs::read(root.join("Packages")).unwrap());
        for f in ["Packages", "Packages.gz"] {
            let m = fs::metadata(root.join(f)).unwrap();
            assert_eq!((m.mtime(), m.atime()), (ts, ts), "{f}");
        }
        assert_eq!(index.header["VERSION"], "0");
        assert_eq!(dir.next_build_id(&gmeta.cpv).unwrap(), 3);
    }
}

#[test]
fn single_instance_replaces_atomically() {
    for named in [false, true] {
        let t = tempfile::tempdir().unwrap();
        let dir = PkgDir::new(
            t.path(),
            PublishOptions {
                multi_instance: false,
                ..opts(named)
            },
        );
        let (a, meta) = load_corpus("refpkg-1.0-r1-zstd.gpkg.tar");
        let (b, _) = load_corpus("refpkg-1.0-r1-xz.gpkg.tar");
        let p1 = publish_bytes(&dir, &a, &meta, Format::Gpkg);
        assert_eq!(p1.rel_path, "app-misc/refpkg-1.0-r1.gpkg.tar");
        assert_eq!(p1.build_id, None);
        let p2 = publish_bytes(&dir, &b, &meta, Format::Gpkg);
        assert_eq!(p2.rel_path, p1.rel_path);
        assert_eq!(fs::read(&p2.path).unwrap(), b);
        let index = check_pkgdir(t.path(), std::slice::from_ref(&b));
        assert_eq!(index.packages.len(), 1);
        let (x, xmeta) = load_corpus("refpkg-1.0-r1.tbz2");
        let p3 = publish_bytes(&dir, &x, &xmeta, Format::Xpak);
        assert_eq!(p3.rel_path, "app-misc/refpkg-1.0-r1.tbz2");
        check_pkgdir(t.path(), &[b.clone(), x]);
        assert!(strays(t.path()).is_empty(), "{:?}", strays(t.path()));
    }
}

#[test]
fn preferred_build_id_placeholders_and_other_formats() {
    let t = tempfile::tempdir().unwrap();
    let dir = PkgDir::new(t.path(), opts(false));
    let (data, meta) = load_corpus("refpkg-1.0-r1-gzip.gpkg.tar");
    let pref = |id| meta.clone().with_preferred_build_id(Some(id));
    assert_eq!(
        publish_bytes(&dir, &data, &pref(5), Format::Gpkg).build_id,
        Some(5)
    );
    // Taken: one more than the largest.
    assert_eq!(
        publish_bytes(&dir, &data, &pref(5), Format::Gpkg).build_id,
        Some(6)
    );
    // Free again in the other format? No: a build id names one instance.
    assert_eq!(
        publish_bytes(&dir, &data, &pref(5), Format::Xpak).build_id,
        Some(7)
    );
    // A zero-byte placeholder of a concurrent Portage build is skipped.
    let pkgd = t.path().join("app-misc/refpkg");
    fs::write(pkgd.join("refpkg-1.0-r1-8.gpkg.tar"), b"").unwrap();
    assert_eq!(
        publish_bytes(&dir, &data, &meta, Format::Gpkg).build_id,
        Some(9)
    );
    // An old xpak with a high id.
    fs::write(pkgd.join("refpkg-1.0-r1-20.xpak"), b"").unwrap();
    assert_eq!(
        publish_bytes(&dir, &data, &pref(8), Format::Gpkg).build_id,
        Some(21)
    );
    // A preferred id that only an index entry knows is not reused.
    fs::remove_file(pkgd.join("refpkg-1.0-r1-21.gpkg.tar")).unwrap();
    assert_eq!(
        publish_bytes(&dir, &data, &pref(21), Format::Gpkg).build_id,
        Some(22)
    );
    // Names of other packages do not count.
    fs::write(pkgd.join("refpkg-1.0-r2-99.gpkg.tar"), b"").unwrap();
    let p = dir.create_temp(&meta.cpv, Format::Gpkg).unwrap();
    assert_eq!(p.predicted_build_id(), Some(23));
}

#[test]
fn permissions_follow_umask_and_pkgdir_group_bits() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("pkgdir");
    fs::create_dir(&root).unwrap();
    fs::set_permissions(&root, fs::Permissions::from_mode(0o2775)).unwrap();
    let (data, meta) = load_corpus("refpkg-1.0-r1-zstd.gpkg.tar");
    for (umask, file_mode, dir_mode) in [(0o022, 0o664, 0o2775), (0o077, 0o660, 0o2770)] {
        let sub = format!("u{umask:o}");
        let r = root.join(&sub);
        fs::create_dir(&r).unwrap();
        fs::set_permissions(&r, fs::Permissions::from_mode(0o2775)).unwrap();
        let dir = PkgDir::new(
            &r,
            PublishOptions {
                umask,
                ..opts(false)
            },
        );
        let p = publish_bytes(&dir, &data, &meta, Format::Gpkg);
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&p.path), file_mode, "umask {umask:o}");
        assert_eq!(mode(&r.join("app-misc")), dir_mode, "umask {umask:o}");
        assert_eq!(
            mode(&r.join("app-misc/refpkg")),
            dir_mode,
            "umask {umask:o}"
        );
        // The index: new file 0666 & !umask, plus the group bits.
        assert_eq!(mode(&r.join("Packages")), (0o666 & !umask) | 0o060);
        let gid = fs::metadata(&r).unwrap().gid();
        assert_eq!(fs::metadata(&p.path).unwrap().gid(), gid);
    }
}

#[test]
fn invalid_metadata_and_wrong_cpv_publish_nothing() {
    let t = tempfile::tempdir().unwrap();
    let dir = PkgDir::new(t.path(), opts(true));
    let (data, meta) = load_corpus("refpkg-1.0-r1-zstd.gpkg.tar");
    let cases: Vec<(IndexMetadata, &str)> = vec![
        (
            {
                let mut m = meta.clone();
                m.keys.remove("SLOT");
                m
            },
            "SLOT",
        ),
        (
            {
                let mut m = meta.clone();
                m.keys.insert("RDEPEND".into(), "x? ( a/b".into());
                m
            },
            "RDEPEND",
        ),
        (
            {
                let mut m = meta.clone();
                m.keys.insert("PF".into(), "refpkg-2".into());
                m
            },
            "PF",
        ),
    ];
    for (m, key) in cases {
        let mut p = dir.create_temp(&meta.cpv, Format::Gpkg).unwrap();
        p.file().write_all(&data).unwrap();
        match p.publish(&m) {
            Err(Error::InvalidMetadata(e)) => assert_eq!(e.key, key),
            other => panic!("{key}: {other:?}"),
        }
    }
    let mut p = dir.create_temp(&meta.cpv, Format::Gpkg).unwrap();
    p.file().write_all(&data).unwrap();
    let other = IndexMetadata::new(
        atom::Cpv::parse("app-misc/other-1").unwrap(),
        meta.keys.clone(),
    );
    assert!(matches!(p.publish(&other), Err(Error::CpvMismatch { .. })));
    assert!(strays(t.path()).is_empty(), "{:?}", strays(t.path()));
    assert!(!t.path().join("Packages").exists());
    assert_eq!(tree(t.path()), ["app-misc", "app-misc/refpkg"]);
}

/// A writer that fails midway: the pending package is dropped.
fn failing_writer(f: &mut fs::File, data: &[u8]) -> std::io::Result<()> {
    f.write_all(&data[..data.len() / 2])?;
    f.seek(SeekFrom::Start(0))?;
    let mut head = [0u8; 16];
    f.read_exact(&mut head)?;
    f.seek(SeekFrom::End(0))?;
    Err(std::io::Error::other("compressor died"))
}

#[test]
fn dropped_packages_leave_nothing() {
    for named in [false, true] {
        for multi_instance in [true, false] {
            let t = tempfile::tempdir().unwrap();
            let dir = PkgDir::new(
                t.path(),
                PublishOptions {
                    multi_instance,
                    ..opts(named)
                },
            );
            let (data, meta) = load_corpus("refpkg-1.0-r1-zstd.gpkg.tar");
            let mut p = dir.create_temp(&meta.cpv, Format::Gpkg).unwrap();
            let temp = p.temp_path();
            assert_eq!(temp.is_some(), named);
            if let Some(tp) = &temp {
                assert!(tp.exists());
                let name = tp.file_name().unwrap().to_str().unwrap();
                assert!(name.starts_with(".refpkg-1.0-r1.") && name.ends_with(".partial"));
            }
            assert!(failing_writer(p.file(), &data).is_err());
            // While it is being written, nothing looks like a package.
            assert!(tree(t.path())
                .iter()
                .all(|n| !n.ends_with(".gpkg.tar") && !n.ends_with(".xpak")));
            drop(p);
            assert!(strays(t.path()).is_empty(), "{:?}", strays(t.path()));
            if let Some(tp) = temp {
                assert!(!tp.exists());
            }
            // And the PKGDIR still works.
            publish_bytes(&dir, &data, &meta, Format::Gpkg);
            check_pkgdir(t.path(), &[data]);
        }
    }
}

#[test]
fn index_failure_takes_a_new_instance_back() {
    for named in [false, true] {
        let t = tempfile::tempdir().unwrap();
        let dir = PkgDir::new(t.path(), opts(named));
        let (data, meta) = load_corpus("refpkg-1.0-r1-zstd.gpkg.tar");
        // `Packages` cannot be replaced: it is a non-empty directory.
        fs::create_dir_all(t.path().join("Packages/x")).unwrap();
        let mut p = dir.create_temp(&meta.cpv, Format::Gpkg).unwrap();
        p.file().write_all(&data).unwrap();
        let e = p.publish(&meta).unwrap_err();
        assert!(e.to_string().contains("Packages"), "{e}");
        assert!(strays(t.path()).is_empty(), "{:?}", strays(t.path()));
        assert!(!tree(t.path()).iter().any(|n| n.ends_with(".gpkg.tar")));

        // Single-instance: the package stays (it is whole), the error says so.
        let single = PkgDir::new(
            t.path(),
            PublishOptions {
                multi_instance: false,
                ..opts(named)
            },
        );
        let mut p = single.create_temp(&meta.cpv, Format::Gpkg).unwrap();
        p.file().write_all(&data).unwrap();
        match p.publish(&meta) {
            Err(Error::IndexNotUpdated { path, .. }) => {
                assert_eq!(fs::read(path).unwrap(), data)
            }
            other => panic!("{other:?}"),
        }
        assert!(strays(t.path()).is_empty(), "{:?}", strays(t.path()));
    }
}

#[test]
fn stale_temps_of_dead_processes_are_removed() {
    let t = tempfile::tempdir().unwrap();
    let dir = PkgDir::new(t.path(), opts(false));
    let (data, meta) = load_corpus("refpkg-1.0-r1-zstd.gpkg.tar");
    let pkgd = t.path().join("app-misc/refpkg");
    fs::create_dir_all(&pkgd).unwrap();
    fs::write(pkgd.join(".refpkg-1.0-r1.0badf00d.partial"), b"half").unwrap();
    fs::write(t.path().join(".Packages.12345678.partial"), b"half").unwrap();
    // A live temp of another writer is kept.
    let live = PkgDir::new(t.path(), opts(true))
        .create_temp(&meta.cpv, Format::Gpkg)
        .unwrap();
    publish_bytes(&dir, &data, &meta, Format::Gpkg);
    assert_eq!(strays(t.path()).len(), 1, "{:?}", strays(t.path()));
    assert!(live.temp_path().unwrap().exists());
    drop(live);
    assert!(strays(t.path()).is_empty());
    fs::write(pkgd.join(".refpkg-1.0-r1.0badf00d.partial"), b"half").unwrap();
    assert_eq!(dir.remove_stale_temps().unwrap(), 1);
}

#[test]
fn existing_portage_index_is_kept() {
    let t = tempfile::tempdir().unwrap();
    let old = "CHOST: x86_64-pc-linux-gnu\nPACKAGES: 1\nTIMESTAMP: 1795253565\nVERSION: 0\n\n\
BUILD_ID: 1\nBUILD_TIME: 1795253564\nCPV: app-misc/foo-1.0\nEAPI: 8\nMD5: b4d6d548c0e3d56ba2d65241c37efb0d\n\
PATH: app-misc/foo/foo-1.0-1.gpkg.tar\nREPO_REVISIONS: {}\nSHA1: 28caa93e540f93ca8c8e6a8b9acea214035faaed\nSIZE: 10240\n\
MTIME: 1795253565\nREPO: gentoo\n\n";
    fs::write(t.path().join("Packages"), old).unwrap();
    let dir = PkgDir::new(t.path(), opts(false));
    let (data, meta) = load_corpus("refpkg-1.0-r1-zstd.gpkg.tar");
    publish_bytes(&dir, &data, &meta, Format::Gpkg);
    let text = fs::read_to_string(t.path().join("Packages")).unwrap();
    let index = pkgdir::index::parse(text.as_bytes()).unwrap();
    assert_eq!(index.header["CHOST"], "x86_64-pc-linux-gnu");
    assert_eq!(index.header["PACKAGES"], "2");
    assert_eq!(index.packages[0]["CPV"], "app-misc/foo-1.0");
    // As when Portage rewrites it: REPO_REVISIONS is gone from the old
    // entry, and the new entry leaves out the header's CHOST.
    assert!(!text.contains("REPO_REVISIONS"));
    let new_block = text.split("\n\n").find(|b| b.contains("refpkg")).unwrap();
    assert!(!new_block.contains("CHOST"), "{new_block}");
    // An index of an unknown version is started over (with the packages
    // of the directory published into, the earlier one included).
    fs::write(t.path().join("Packages"), "VERSION: 1\n\nCPV: a/b-1\n\n").unwrap();
    publish_bytes(&dir, &data, &meta, Format::Gpkg);
    let index = dir.read_index().unwrap();
    assert_eq!(index.packages.len(), 2);
    assert!(index
        .packages
        .iter()
        .all(|e| e["CPV"] == "app-misc/refpkg-1.0-r1"));
    assert_eq!(index.header["VERSION"], "0");
}

#[test]
fn compress_index_off_removes_a_stale_gz_and_chost_option() {
    let t = tempfile::tempdir().unwrap();
    fs::write(t.path().join("Packages.gz"), b"stale").unwrap();
    let dir = PkgDir::new(
        t.path(),
        PublishOptions {
            compress_index: false,
            chost: Some("x86_64-pc-linux-gnu".into()),
            sync: true,
            ..Default::default()
        },
    );
    let (data, meta) = load_corpus("refpkg-1.0-r1-zstd.gpkg.tar");
    publish_bytes(&dir, &data, &meta, Format::Gpkg);
    assert!(!t.path().join("Packages.gz").exists());
    let text = fs::read_to_string(t.path().join("Packages")).unwrap();
    assert!(text.starts_with("CHOST: x86_64-pc-linux-gnu\n"), "{text}");
    assert_eq!(text.matches("CHOST").count(), 1, "{text}");
}

#[test]
fn index_symlink_is_followed() {
    let t = tempfile::tempdir().unwrap();
    let real = t.path().join("real");
    fs::create_dir(&real).unwrap();
    fs::write(real.join("Packages"), "").unwrap();
    let root = t.path().join("pkgdir");
    fs::create_dir(&root).unwrap();
    std::os::unix::fs::symlink(real.join("Packages"), root.join("Packages")).unwrap();
    let dir = PkgDir::new(
        &root,
        PublishOptions {
            compress_index: false,
            ..opts(false)
        },
    );
    let (data, meta) = load_corpus("refpkg-1.0-r1-zstd.gpkg.tar");
    publish_bytes(&dir, &data, &meta, Format::Gpkg);
    assert!(fs::symlink_metadata(root.join("Packages"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(fs::read_to_string(real.join("Packages"))
        .unwrap()
        .contains("refpkg"));
}

/// A publisher killed after naming its package but before replacing
/// `Packages` leaves a whole package the index does not list; the next
/// publish into the same directory adds it. Damaged files are left out.
#[test]
fn next_publish_indexes_a_package_a_crash_left_unlisted() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("pkgdir");
    let dir = PkgDir::new(&root, opts(false));
    let (gpkg, gmeta) = load_corpus("refpkg-1.0-r1-zstd.gpkg.tar");
    let a = publish_bytes(&dir, &gpkg, &gmeta, Format::Gpkg);
    let before = fs::read(root.join("Packages")).unwrap();
    let b = publish_bytes(&dir, &gpkg, &gmeta, Format::Gpkg);
    // The crash: b has its name, Packages is the one from before.
    fs::write(root.join("Packages"), &before).unwrap();
    // A damaged file beside them is not indexed.
    fs::write(
        root.join("app-misc/refpkg/refpkg-1.0-r1-9.gpkg.tar"),
        b"junk",
    )
    .unwrap();
    let c = publish_bytes(&dir, &gpkg, &gmeta, Format::Gpkg);
    let index = dir.read_index().unwrap();
    let paths: std::collections::BTreeSet<&str> =
        index.packages.iter().map(|e| e["PATH"].as_str()).collect();
    let want: std::collections::BTreeSet<&str> = [
        a.rel_path.as_str(),
        b.rel_path.as_str(),
        c.rel_path.as_str(),
    ]
    .into();
    assert_eq!(paths, want);
    assert_eq!(
        c.build_id,
        Some(10),
        "ids continue after the highest file name"
    );
    let e = index
        .packages
        .iter()
        .find(|e| e["PATH"] == b.rel_path)
        .unwrap();
    assert_eq!(e["MD5"], b.md5);
    assert_eq!(e["SIZE"], b.size.to_string());
}

/// Single-instance: a publisher killed after renaming its package over the
/// one of the same name, before replacing `Packages`, leaves an index entry
/// with the old package's MD5 and SIZE; the next publish into the same
/// directory lists the file as it is.
#[test]
fn next_publish_relists_a_package_a_crash_replaced_unlisted() {
    let t = tempfile::tempdir().unwrap();
    let dir = PkgDir::new(
        t.path(),
        PublishOptions {
            multi_instance: false,
            ..opts(false)
        },
    );
    let (a, meta) = load_corpus("refpkg-1.0-r1-zstd.gpkg.tar");
    let (b, _) = load_corpus("refpkg-1.0-r1-xz.gpkg.tar");
    let pa = publish_bytes(&dir, &a, &meta, Format::Gpkg);
    let before = fs::read(t.path().join("Packages")).unwrap();
    let pb = publish_bytes(&dir, &b, &meta, Format::Gpkg);
    assert_ne!(pa.md5, pb.md5);
    // The crash: b is in place, Packages is the one that lists a. (Both
    // tars are 10,240 bytes: b was made later, as its mtime says; Portage's
    // binarytree tells stale entries by size and mtime too.)
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
    fs::File::options()
        .write(true)
        .open(&pb.path)
        .unwrap()
        .set_modified(later)
        .unwrap();
    fs::write(t.path().join("Packages"), &before).unwrap();
    let (x, xmeta) = load_corpus("refpkg-1.0-r1.tbz2");
    publish_bytes(&dir, &x, &xmeta, Format::Xpak);
    let index = check_pkgdir(t.path(), &[b.clone(), x]);
    let e = index
        .packages
        .iter()
        .find(|e| e["PATH"] == pb.rel_path)
        .unwrap();
    assert_eq!(e["MD5"], pb.md5);
    assert_eq!(e["SIZE"], b.len().to_string());
}

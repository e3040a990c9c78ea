//! Differential tests against the real Portage 3.0.83.
//!
//! * `quickpkg_index_round_trips_and_is_reproduced`: Portage's quickpkg
//!   (`shared/tools/portage-ref/quickpkg.py`) writes gpkg and xpak packages
//!   of installed packages with varied metadata, and its `Packages`. Our
//!   parser + writer reproduce that file byte for byte (nothing in it is
//!   rewritten: `TIMESTAMP` is only set by a new write, see
//!   `PackageIndex::stamp`), as does Portage's own reader + writer; and the
//!   whole file is reproduced again from the package files alone, with our
//!   entries (`index::entry_from_metadata`) under Portage's header.
//! * `portage_reads_what_we_publish`: we publish those packages and the
//!   Portage-written corpus (`shared/corpora/binpkgs/portage-generated`),
//!   multi- and single-instance; Portage's `binarytree` sees exactly our
//!   packages, with no invalid package and no message, and the entries it
//!   computes from the files agree with ours. Portage then rewrites the
//!   index, and we publish on top of it.
//! * `entries_equal_portage_inject`: the entry we write for a package equals
//!   the one `binarytree.inject` writes for the same bytes (apart from
//!   `MTIME`, the time each file was written, and `PATH` where the two
//!   allocate build ids differently, see the README).
//! * `portage_merges_instances_without_build_id`: what Portage makes of
//!   instances without a BUILD_ID in their metadata (README).
//! * `concurrent_with_portage_inject`: Portage's `inject` and our publish at
//!   the same time on one CPV exclude each other through the index lock.
//! * `use_reduce_matches_portage` and `index_reader_matches_portage`:
//!   generated dependency strings and generated (partly malformed) index
//!   files, evaluated/read and written by both.
//!
//! Python: `$VARTREE_PORTAGE_PYTHON`, else `<workspace>/.venv/bin/python`.
//! Without it the tests print a notice and pass, unless
//! `VARTREE_REQUIRE_PORTAGE=1`, where they fail.
#![allow(clippy::print_stderr)]

mod common;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::*;
use pkgdir::index::{self, Entry, FileInfo, PackageIndex};
use pkgdir::{IndexMetadata, PkgDir, PublishOptions};
use serde_json::Value;

const CHOST: &str = "x86_64-pc-linux-gnu";

/// One package for quickpkg: cpv, format, root number, merge_image flags.
struct Spec {
    cpv: &'static str,
    format: &'static str,
    root: usize,
    args: &'static [&'static str],
}

const SPECS: &[Spec] = &[
    Spec {
        cpv: "app-misc/foo-1.0",
        format: "gpkg",
        root: 0,
        args: &[
            "--repo",
            "gentoo",
            "--build-time",
            "1700000001",
            "--info",
            "USE=x amd64 elibc_glibc",
            "--info",
            "IUSE=x y ünï",
            "--info",
            "RDEPEND=x? ( dev-libs/a:1::gentoo[x?,y?] ) !x? ( dev-libs/b ) || ( dev-libs/c dev-libs/d ) || ( dev-libs/e )",
            "--info",
            "LICENSE=MIT x? ( GPL-2 )",
            "--info",
            "KEYWORDS=amd64 ~x86",
            "--info",
            "BUILD_ID=1",
            "--info",
            "DESCRIPTION=Foo, ünïcode",
            "--info",
            "DEFINED_PHASES=install prepare",
        ],
    },
    Spec {
        cpv: "app-misc/foo-1.0",
        format: "xpak",
        root: 0,
        args: &[],
    },
    Spec {
        cpv: "dev-libs/bar-2.1-r1",
        format: "gpkg",
        root: 1,
        args: &[
            "--slot",
            "2/2.1",
            "--eapi",
            "7",
            "--build-time",
            "1700000002",
            "--info",
            "CHOST=i686-pc-linux-gnu",
            "--info",
            "USE=test",
            "--info",
            "IUSE=+test live",
            "--info",
            "DEPEND=test? ( >=dev-util/t-1:= ) dev-libs/z:0/1=",
            "--info",
            "BDEPEND=virtual/pkgconfig",
            "--info",
            "RESTRICT=test? ( test ) !test? ( mirror )",
            "--info",
            "PROPERTIES=live? ( live )",
            "--info",
            "PDEPEND=x? ( a/b )",
            "--info",
            "USER_PATCHES=/etc/portage/patches/dev-libs/bar/x.patch",
            "--info",
            "PROVIDES=x86_64: libbar.so.2",
            "--info",
            "REQUIRES=x86_64: libc.so.6",
        ],
    },
    Spec {
        cpv: "sys-apps/baz-0.1",
        format: "xpak",
        root: 2,
        args: &[
            "--eapi",
            "6",
            "--repo",
            "gentoo",
            "--build-time",
            "1700000003",
            "--info",
            "BUILD_ID=7",
            "--info",
            "DEPEND=|| ( sys-apps/a ) ( ( sys-apps/b ) )",
        ],
    },
];

struct Fixture {
    _dir: tempfile::TempDir,
    pkgdir: PathBuf,
    /// Package files quickpkg wrote, in order.
    files: Vec<PathBuf>,
}

/// Runs Portage's merge + quickpkg once per test binary.
fn quickpkg_fixture(py: &Path) -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let pkgdir = dir.path().join("pkgdir");
        let mut files = Vec::new();
        let mut merged = std::collections::BTreeSet::new();
        for s in SPECS {
            let root = dir.path().join(format!("root{}", s.root));
            if merged.insert(s.root) {
                let img = dir.path().join(format!("img{}", s.root));
                let pn = s.cpv.split('/').nth(1).unwrap();
                fs::create_dir_all(img.join("usr/share").join(pn)).unwrap();
                fs::write(img.join("usr/share").join(pn).join("data.txt"), s.cpv).unwrap();
                let mut args: Vec<&OsStr> = vec![
                    OsStr::new("--root"),
                    root.as_os_str(),
                    OsStr::new("--image"),
                    img.as_os_str(),
                    OsStr::new("--cpv"),
                    OsStr::new(s.cpv),
                    OsStr::new("--no-env-update"),
                ];
                args.extend(s.args.iter().map(OsStr::new));
                portage_ref_script(py, "merge_image.py", &args);
            }
            let out = portage_ref_script(
                py,
                "quickpkg.py",
                &[
                    OsStr::new("--root"),
                    root.as_os_str(),
                    OsStr::new("--cpv"),
                    OsStr::new(s.cpv),
                    OsStr::new("--pkgdir"),
                    pkgdir.as_os_str(),
                    OsStr::new("--format"),
                    OsStr::new(s.format),
                ],
            );
            let path = PathBuf::from(out.lines().last().unwrap().trim());
            assert!(path.starts_with(&pkgdir), "{}", path.display());
            files.push(path);
        }
        Fixture {
            _dir: dir,
            pkgdir,
            files,
        }
    })
}

fn header_defaults() -> Entry {
    keys(&[("CHOST", CHOST), ("repository", "")])
}

/// Our entry for a package file, as `inject` would compute it.
fn our_entry(pkgdir: &Path, rel: &str) -> Entry {
    let path = pkgdir.join(rel);
    let (data, meta) = load_package(&path);
    let st = fs::metadata(&path).unwrap();
    let file = FileInfo {
        path: rel.to_owned(),
        md5: hex(&<md5::Md5 as md5::Digest>::digest(&data)),
        sha1: hex(&<sha1::Sha1 as sha1::Digest>::digest(&data)),
        size: data.len() as u64,
        mtime: st.mtime(),
    };
    index::entry_from_metadata(&meta.cpv, &meta.keys, &file).unwrap()
}

fn metadata_build_id(meta: &IndexMetadata) -> Option<u64> {
    meta.keys
        .get("BUILD_ID")
        .and_then(|b| b.trim().parse().ok())
}

#[test]
fn quickpkg_index_round_trips_and_is_reproduced() {
    let Some(py) = python() else { return };
    let fx = quickpkg_fixture(&py);
    let names: Vec<String> = fx
        .files
        .iter()
        .map(|f| {
            f.strip_prefix(&fx.pkgdir)
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(
        names,
        [
            "app-misc/foo/foo-1.0-1.gpkg.tar",
            "app-misc/foo/foo-1.0-1.xpak",
            "dev-libs/bar/bar-2.1-r1-1.gpkg.tar",
            "sys-apps/baz/baz-0.1-7.xpak",
        ]
    );
    let data = fs::read(fx.pkgdir.join("Packages")).unwrap();
    let text = String::from_utf8(data.clone()).unwrap();
    // The features of the format this test is about are really in there.
    for needle in [
        "CHOST: x86_64-pc-linux-gnu\n",
        "CHOST: i686-pc-linux-gnu\n",
        "RDEPEND: dev-libs/a:1[x] || ( dev-libs/c dev-libs/d ) dev-libs/e\n",
        "LICENSE: MIT GPL-2\n",
        "RESTRICT: test\n",
        "USER_PATCHES: ",
        "SLOT: 2/2.1\n",
        "REPO: gentoo\n",
        "DEPEND: sys-apps/a sys-apps/b\n",
    ] {
        assert!(text.contains(needle), "{needle:?} not in\n{text}");
    }
    assert!(!text.contains("DESC"), "{text}");

    // 1. Parse + write is the identity.
    let idx = index::parse(&data).unwrap();
    assert_eq!(idx.packages.len(), 4);
    assert_eq!(String::from_utf8(index::write(&idx)).unwrap(), text);
    let idx2 = index::parse_with_defaults(&data, &header_defaults()).unwrap();
    assert_eq!(String::from_utf8(index::write(&idx2)).unwrap(), text);

    // 2. Portage's own reader + writer agree.
    let copy = fx.pkgdir.join("..").join("Packages.copy");
    fs::write(&copy, &data).unwrap();
    bintree_py(
        &py,
        &[OsStr::new("index-roundtrip"), copy.as_os_str()],
        None,
    );
    assert_eq!(
        String::from_utf8(fs::read(copy.with_extension("copy.portage")).unwrap()).unwrap(),
        text
    );

    // 3. The whole index again, from the package files and Portage's header.
    let mut ours = PackageIndex {
        header: idx.header.clone(),
        packages: Vec::new(),
    };
    for d in &idx.packages {
        ours.packages.push(our_entry(&fx.pkgdir, &d["PATH"]));
    }
    assert_eq!(String::from_utf8(index::write(&ours)).unwrap(), text);
}

fn publish_file(dir: &PkgDir, path: &Path) -> pkgdir::Published {
    publish_file_at(dir, path, None)
}

/// Publishes a package file with the BUILD_ID of its metadata preferred;
/// with `mtime`, the file gets that mtime (a writer may set it).
fn publish_file_at(dir: &PkgDir, path: &Path, mtime: Option<u64>) -> pkgdir::Published {
    let (data, meta) = load_package(path);
    let format = binpkg::detect_format(path).unwrap();
    let id = metadata_build_id(&meta);
    let mut p = dir.create_temp(&meta.cpv, format).unwrap();
    p.file().write_all(&data).unwrap();
    if let Some(t) = mtime {
        p.file()
            .set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(t))
            .unwrap();
    }
    p.publish(&meta.with_preferred_build_id(id)).unwrap()
}

fn corpus_files() -> Vec<PathBuf> {
    CORPUS
        .iter()
        .filter(|(n, _)| !n.contains("-none"))
        .map(|(n, _)| corpus().join(n))
        .collect()
}

/// Portage printed nothing but the output of GnuPG, which it runs on the
/// signed corpus package although told to ignore signatures (it has no key
/// for it; the package is accepted).
fn assert_no_portage_complaints(out: &Value) {
    let msgs = out["messages"].as_str().unwrap();
    let complaints: Vec<&str> = msgs
        .lines()
        .filter(|l| !(l.contains("\u{1b}[31;01m * \u{1b}[39;49;00m") || l.trim().is_empty()))
        .collect();
    assert!(complaints.is_empty(), "Portage said:\n{msgs}");
    assert!(!msgs.contains("!!!"), "Portage said:\n{msgs}");
}

fn populate(py: &Path, pkgdir: &Path, write: bool) -> Value {
    // Portage would need a GnuPG home with the corpus' signing key.
    let mut args = vec![
        OsStr::new("populate"),
        OsStr::new("--features=binpkg-ignore-signature"),
        OsStr::new("--pkgdir"),
        pkgdir.as_os_str(),
    ];
    if write {
        args.push(OsStr::new("--write"));
    }
    bintree_py(py, &args, None)
}

#[test]
fn portage_reads_what_we_publish() {
    let Some(py) = python() else { return };
    let fx = quickpkg_fixture(&py);
    let t = tempfile::tempdir().unwrap();

    for multi_instance in [true, false] {
        let root = t.path().join(format!("multi-{multi_instance}"));
        let dir = PkgDir::new(
            &root,
            PublishOptions {
                multi_instance,
                chost: Some(CHOST.to_owned()),
                ..Default::default()
            },
        );
        let mut inputs: Vec<PathBuf> = fx.files.clone();
        if multi_instance {
            inputs.extend(corpus_files());
        } else {
            // One file per name: the last one of each wins.
            inputs.remove(1);
            inputs.push(corpus().join("refpkg-1.0-r1-xz.gpkg.tar"));
            inputs.push(corpus().join("refpkg-1.0-r1.tbz2"));
        }
        // Distinct mtimes: Portage tells instances apart by (CPV, BUILD_ID
        // of the metadata, size, BUILD_TIME, mtime); the corpus packages have
        // no BUILD_ID, the same BUILD_TIME and several the same size, so
        // published in the same second they would be one instance to it (see
        // `portage_merges_instances_without_build_id`).
        let mut published = Vec::new();
        for (i, f) in inputs.iter().enumerate() {
            let p = publish_file_at(&dir, f, Some(1_750_000_000 + 10 * i as u64));
            let (_, meta) = load_package(f);
            published.push((p, meta));
        }
        assert!(strays(&root).is_empty(), "{:?}", strays(&root));
        let report = populate(&py, &root, false);
        assert_no_portage_complaints(&report);
        assert_eq!(report["invalids"], Value::Array(vec![]), "{report:#}");
        assert_eq!(report["invalid_paths"], Value::Array(vec![]), "{report:#}");
        let seen = report["packages"].as_array().unwrap();
        let mut want: Vec<&pkgdir::Published> = published.iter().map(|(p, _)| p).collect();
        want.sort_by(|a, b| a.rel_path.cmp(&b.rel_path));
        assert_eq!(seen.len(), want.len(), "{report:#}");
        for (s, (p, meta)) in seen.iter().zip(want.iter().map(|p| {
            published
                .iter()
                .find(|(q, _)| q.rel_path == p.rel_path)
                .unwrap()
        })) {
            assert_eq!(s["path"], p.rel_path.as_str());
            assert_eq!(s["cpv"], meta.cpv.as_str());
            assert_eq!(s["size"], p.size);
            assert_eq!(s["mtime"], p.mtime);
            // Portage takes an instance's BUILD_ID from the package's
            // metadata, not from the file name (see the README).
            assert_eq!(
                s["build_id"].as_u64(),
                metadata_build_id(meta),
                "{}",
                p.rel_path
            );
        }
        if multi_instance {
            // The xpak of foo-1.0 carries BUILD_ID 1 (quickpkg keeps the
            // installed package's) but is instance 2 here: Portage accepts it.
            assert!(published
                .iter()
                .any(|(p, m)| p.rel_path == "app-misc/foo/foo-1.0-2.xpak"
                    && metadata_build_id(m) == Some(1)));
        }

        // The entries Portage computes from the files agree with ours.
        // (3.0.83 always re-reads every package: entries lack USER_PATCHES,
        // which is not among its index defaults; Portage's own index too.)
        assert_eq!(report["index_update_needed"], true);
        let ours = dir.read_index().unwrap();
        let reindexed = report["reindexed"].as_array().unwrap();
        assert_eq!(reindexed.len(), ours.packages.len());
        for r in reindexed {
            let r: BTreeMap<String, String> = serde_json::from_value(r.clone()).unwrap();
            let o = ours
                .packages
                .iter()
                .find(|d| d["PATH"] == r["PATH"])
                .unwrap_or_else(|| panic!("{} not in our index", r["PATH"]));
            for k in r.keys().chain(o.keys()) {
                let (a, b) = (
                    r.get(k).map_or("", String::as_str),
                    o.get(k).map_or("", String::as_str),
                );
                assert_eq!(a, b, "{} {k}", r["PATH"]);
            }
        }

        // Portage rewrites the index; we read it and publish on top of it.
        populate(&py, &root, true);
        let rewritten = dir.read_index().unwrap();
        let mut paths: Vec<&str> = rewritten
            .packages
            .iter()
            .map(|d| d["PATH"].as_str())
            .collect();
        paths.sort_unstable();
        let mut want_paths: Vec<&str> = want.iter().map(|p| p.rel_path.as_str()).collect();
        want_paths.sort_unstable();
        assert_eq!(paths, want_paths);
        let extra = publish_file(&dir, &corpus().join("refpkg-1.0-r1-gzip.gpkg.tar"));
        let after = dir.read_index().unwrap();
        assert!(after.packages.iter().any(|d| d["PATH"] == extra.rel_path));
        assert_eq!(
            after.packages.len(),
            rewritten.packages.len() + usize::from(multi_instance)
        );
        let report = populate(&py, &root, false);
        assert_no_portage_complaints(&report);
        assert_eq!(report["invalids"], Value::Array(vec![]));
    }
}

/// What Portage makes of instances it cannot tell apart: packages without a
/// BUILD_ID in their metadata, of the same size, BUILD_TIME and mtime are one
/// instance to `binarytree` (its `_instance_key`), whatever their file names
/// say. Why a writer should store the build id it gets in the package.
#[test]
fn portage_merges_instances_without_build_id() {
    let Some(py) = python() else { return };
    let t = tempfile::tempdir().unwrap();
    let dir = PkgDir::new(t.path(), PublishOptions::default());
    let f = corpus().join("refpkg-1.0-r1-zstd.gpkg.tar");
    let a = publish_file_at(&dir, &f, Some(1_750_000_000));
    let b = publish_file_at(&dir, &f, Some(1_750_000_000));
    let c = publish_file_at(&dir, &f, Some(1_750_000_001));
    assert_eq!(
        (a.build_id, b.build_id, c.build_id),
        (Some(1), Some(2), Some(3))
    );
    let report = populate(&py, t.path(), false);
    assert_no_portage_complaints(&report);
    let seen: Vec<&str> = report["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_str().unwrap())
        .collect();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen.contains(&c.rel_path.as_str()));
}

#[test]
fn entries_equal_portage_inject() {
    let Some(py) = python() else { return };
    let fx = quickpkg_fixture(&py);
    let t = tempfile::tempdir().unwrap();
    let mut inputs = fx.files.clone();
    inputs.extend(corpus_files());
    // Portage injects them one after the other into its PKGDIR (one per
    // format: the format setting, not the file, decides the extension) ...
    let mut their_paths: Vec<String> = vec![String::new(); inputs.len()];
    for (format, ext) in [("gpkg", ".gpkg.tar"), ("xpak", ".xpak")] {
        let theirs = t.path().join(format!("portage-{format}"));
        let mut args: Vec<std::ffi::OsString> = vec![
            "inject".into(),
            "--features=binpkg-ignore-signature".into(),
            format!("--binpkg-format={format}").into(),
            "--pkgdir".into(),
            theirs.clone().into(),
        ];
        let mut which = Vec::new();
        for (i, f) in inputs.iter().enumerate() {
            let is_gpkg = binpkg::detect_format(f).unwrap() == binpkg::Format::Gpkg;
            if is_gpkg == (format == "gpkg") {
                let (_, meta) = load_package(f);
                args.extend([
                    "--pkg".into(),
                    f.clone().into(),
                    meta.cpv.to_string().into(),
                ]);
                which.push(i);
            }
        }
        let args_ref: Vec<&OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        let out = bintree_py(&py, &args_ref, None);
        assert_no_portage_complaints(&out);
        for (i, p) in which.into_iter().zip(out["paths"].as_array().unwrap()) {
            let p = p.as_str().unwrap();
            assert!(p.ends_with(ext), "{p}");
            their_paths[i] = format!("{format}/{p}");
        }
    }
    // ... and we publish them into ours.
    let mine = t.path().join("ours");
    let dir = PkgDir::new(
        &mine,
        PublishOptions {
            chost: Some(CHOST.to_owned()),
            ..Default::default()
        },
    );
    let published: Vec<_> = inputs.iter().map(|f| publish_file(&dir, f)).collect();
    let o_idx = index::parse(&fs::read(mine.join("Packages")).unwrap()).unwrap();
    let mut p_idx = PackageIndex::new();
    for format in ["gpkg", "xpak"] {
        let i =
            index::parse(&fs::read(t.path().join(format!("portage-{format}/Packages"))).unwrap())
                .unwrap();
        assert_eq!(
            i.header.keys().collect::<Vec<_>>(),
            o_idx.header.keys().collect::<Vec<_>>()
        );
        assert_eq!(i.header["CHOST"], o_idx.header["CHOST"]);
        for mut d in i.packages {
            let path = format!("{format}/{}", d["PATH"]);
            d.insert("PATH".into(), path);
            p_idx.packages.push(d);
        }
    }
    let mut same_path = 0;
    for (i, p) in published.iter().enumerate() {
        let their_path = their_paths[i].split_once('/').unwrap().1;
        let theirs_e = p_idx
            .packages
            .iter()
            .find(|d| d["PATH"] == their_paths[i])
            .unwrap();
        let ours_e = o_idx
            .packages
            .iter()
            .find(|d| d["PATH"] == p.rel_path)
            .unwrap();
        for k in theirs_e.keys().chain(ours_e.keys()) {
            if k == "_mtime_" || k == "PATH" {
                continue;
            }
            assert_eq!(theirs_e.get(k), ours_e.get(k), "{} {k}", p.rel_path);
        }
        same_path += usize::from(their_path == p.rel_path);
    }
    // Portage numbers the xpak instances separately from the gpkg ones
    // (foo-1.0-1.xpak next to foo-1.0-1.gpkg.tar); we do not, so two of
    // ours have another build id in their name.
    assert_eq!(same_path, inputs.len() - 2, "{their_paths:?}");
}

/// Portage's `inject` and our publish running at the same time on one PKGDIR
/// and one CPV exclude each other through `.Packages.portage_lockfile`: no
/// build id is taken twice, no index update is lost.
#[test]
fn concurrent_with_portage_inject() {
    let Some(py) = python() else { return };
    const THEIRS: usize = 8;
    const OURS: usize = 12;
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("pkgdir");
    fs::create_dir_all(&root).unwrap();
    let f = corpus().join("refpkg-1.0-r1-zstd.gpkg.tar");
    let (data, meta) = load_package(&f);
    let mut args: Vec<std::ffi::OsString> =
        vec!["inject".into(), "--pkgdir".into(), root.clone().into()];
    for _ in 0..THEIRS {
        args.extend([
            "--pkg".into(),
            f.clone().into(),
            meta.cpv.to_string().into(),
        ]);
    }
    let portage = std::thread::spawn(move || {
        let args_ref: Vec<&OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        bintree_py(&py, &args_ref, None)
    });
    // Start when Portage starts injecting (its helper copies each package
    // into PKGDIR as `.inject-*` first), then publish between its injects.
    let start = std::time::Instant::now();
    while !fs::read_dir(&root).unwrap().any(|e| {
        e.unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with(".inject-")
    }) {
        assert!(start.elapsed().as_secs() < 60, "Portage did not start");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let dir = PkgDir::new(&root, PublishOptions::default());
    let mut ours = Vec::new();
    for _ in 0..OURS {
        let mut p = dir.create_temp(&meta.cpv, binpkg::Format::Gpkg).unwrap();
        p.file().write_all(&data).unwrap();
        ours.push(p.publish(&meta).unwrap());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = portage.join().unwrap();
    let theirs: Vec<&str> = out["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    let mut all: Vec<&str> = theirs.clone();
    all.extend(ours.iter().map(|p| p.rel_path.as_str()));
    let distinct: std::collections::BTreeSet<&str> = all.iter().copied().collect();
    assert_eq!(distinct.len(), THEIRS + OURS, "{all:?}");
    let index = check_pkgdir(&root, &[data]);
    assert_eq!(index.packages.len(), THEIRS + OURS);
    assert!(strays(&root).is_empty(), "{:?}", strays(&root));
}

// ---------------------------------------------------------------- generated

const ATOMS: &[&str] = &[
    "dev-libs/a",
    ">=dev-libs/b-1.2:3=",
    "dev-libs/c:1/2=[x?,-y,z=,!w=,v(+)?,!u(-)?]",
    "dev-libs/d::gentoo[x?]",
    "!dev-libs/e[x]",
    "!!<dev-libs/f-2",
    "=dev-libs/g-1*",
    "~dev-libs/h-1",
    "~dev-libs/h-1-r1",
    "=dev-libs/i-1-2",
    ">=dev-libs/i-1-r1-3:0[x?]",
    "dev-libs/j::repo-1[y?]",
    "dev-libs/k:*[!x?]",
    "dev-libs/l[x(+),x(-)]",
    "dev-libs/m[x?,x]",
    "dev-libs/n[]",
    "dev-libs/o-1",
    "=dev-libs/p-1-02",
    "~dev-libs/q-1*",
    "*/*",
    "dev-libs/r[x.y]",
    "dev-libs/s:0/*",
    "virtual/t",
    "a+b/c_d-e",
];
const FLAGS: &[&str] = &["x", "y", "z", "w", "v", "u"];

fn gen_dep(rng: &mut Rng, depth: u32, atoms: bool, out: &mut Vec<String>) {
    let n = 1 + rng.below(3);
    for _ in 0..n {
        match rng.below(if depth > 2 { 4 } else { 10 }) {
            0..=3 => {
                if atoms {
                    out.push(ATOMS[rng.below(ATOMS.len() as u64) as usize].to_owned());
                } else {
                    out.push(
                        ["GPL-2", "MIT", "test", "mirror", "BSD"][rng.below(5) as usize].to_owned(),
                    );
                }
            }
            4..=5 => {
                let f = FLAGS[rng.below(FLAGS.len() as u64) as usize];
                out.push(if rng.below(2) == 0 {
                    format!("{f}?")
                } else {
                    format!("!{f}?")
                });
                out.push("(".into());
                gen_dep(rng, depth + 1, atoms, out);
                out.push(")".into());
            }
            6..=7 => {
                out.push("||".into());
                out.push("(".into());
                gen_dep(rng, depth + 1, atoms, out);
                out.push(")".into());
            }
            8 => {
                out.push("(".into());
                gen_dep(rng, depth + 1, atoms, out);
                out.push(")".into());
            }
            _ => {
                // Something malformed.
                out.push(
                    ["(", ")", "||", "x?", "?", "!?", "->", "( )", "x!?", "-x?"]
                        [rng.below(10) as usize]
                        .into(),
                );
            }
        }
    }
}

#[test]
fn use_reduce_matches_portage() {
    let Some(py) = python() else { return };
    let mut rng = Rng(0x5eed_1234_9876_abcd);
    let mut cases = Vec::new();
    for i in 0..3000 {
        let atoms = i % 3 != 0;
        let mut toks = Vec::new();
        gen_dep(&mut rng, 0, atoms, &mut toks);
        let sep = ["  ", "\n", "\t", " "][rng.below(4) as usize];
        let s = toks.join(sep);
        let on: Vec<&str> = FLAGS
            .iter()
            .copied()
            .filter(|_| rng.below(2) == 0)
            .collect();
        cases.push((s, on, atoms));
    }
    for a in ATOMS {
        cases.push(((*a).to_owned(), vec!["x"], true));
        cases.push(((*a).to_owned(), vec![], true));
    }
    let json = serde_json::to_vec(&cases).unwrap();
    let out = bintree_py(&py, &[OsStr::new("use-reduce")], Some(&json));
    let results = out["results"].as_array().unwrap();
    let mut diffs = Vec::new();
    let (mut ok, mut err) = (0, 0);
    for ((s, on, atoms), want) in cases.iter().zip(results) {
        let want = want.as_str().unwrap();
        let set = on.iter().copied().collect();
        let kind = if *atoms {
            pkgdir::usereduce::TokenKind::Atoms
        } else {
            pkgdir::usereduce::TokenKind::Words
        };
        let got = pkgdir::usereduce::evaluate(s, &set, kind);
        let same = match (&got, want.strip_prefix("!ERR: ")) {
            (Ok(g), None) => g == want,
            (Err(_), Some(_)) => true,
            _ => false,
        };
        if want.starts_with("!ERR") {
            err += 1;
        } else {
            ok += 1;
        }
        if !same {
            diffs.push(format!("{s:?} USE={on:?}: Portage {want:?}, ours {got:?}"));
        }
    }
    assert!(ok > 500 && err > 500, "{ok} valid, {err} invalid cases");
    assert!(
        diffs.is_empty(),
        "{} differences:\n{}",
        diffs.len(),
        diffs[..diffs.len().min(20)].join("\n")
    );
}

/// A generated, partly malformed index file.
fn gen_index(rng: &mut Rng) -> Vec<u8> {
    const KEYS: &[&str] = &[
        "CPV",
        "PATH",
        "BUILD_ID",
        "SLOT",
        "EAPI",
        "USE",
        "MTIME",
        "_mtime_",
        "DESC",
        "DESCRIPTION",
        "REPO",
        "repository",
        "CHOST",
        "MD5",
        "SHA1",
        "SIZE",
        "REPO_REVISIONS",
        "FOO",
        "TIMESTAMP",
        "PACKAGES",
        "VERSION",
        "KEYWORDS",
        "IUSE",
        "",
        "BASE_URI",
        "USER_PATCHES",
    ];
    const VALUES: &[&str] = &[
        "",
        "0",
        "1",
        "a/b-1",
        "a/b-2",
        "x86_64-pc-linux-gnu",
        "gentoo",
        "x y",
        " lead",
        "ünï",
        "app-misc/foo-1.0",
        "v: with colon",
        "\u{feff}bom",
        "trail ",
    ];
    const EOLS: &[&[u8]] = &[b"\n", b"\n", b"\n", b"\r\n", b"\r"];
    let mut out = Vec::new();
    let blocks = rng.below(6);
    for _ in 0..=blocks {
        if rng.below(10) < 7 {
            out.extend_from_slice(b"CPV: ");
            out.extend_from_slice(
                ["a/b-1", "a/b-2", "c/d-1.0", "a/b-1"][rng.below(4) as usize].as_bytes(),
            );
            out.push(b'\n');
        }
        for _ in 0..rng.below(6) {
            match rng.below(12) {
                0 => out.extend_from_slice(b"no colon here"),
                1 => out.extend_from_slice(b"\xff\xfe bad: utf\xc3"),
                2 => {
                    out.extend_from_slice(KEYS[rng.below(KEYS.len() as u64) as usize].as_bytes());
                    out.push(b':');
                    out.extend_from_slice(
                        VALUES[rng.below(VALUES.len() as u64) as usize].as_bytes(),
                    );
                }
                _ => {
                    out.extend_from_slice(KEYS[rng.below(KEYS.len() as u64) as usize].as_bytes());
                    out.extend_from_slice(b": ");
                    out.extend_from_slice(
                        VALUES[rng.below(VALUES.len() as u64) as usize].as_bytes(),
                    );
                }
            }
            out.extend_from_slice(EOLS[rng.below(EOLS.len() as u64) as usize]);
        }
        out.extend_from_slice(EOLS[rng.below(EOLS.len() as u64) as usize]);
    }
    if rng.below(3) == 0 {
        out.pop();
    }
    out
}

#[test]
fn index_reader_matches_portage() {
    let Some(py) = python() else { return };
    let t = tempfile::tempdir().unwrap();
    let mut rng = Rng(0x1dea_5eed_0042_0001);
    let mut files = Vec::new();
    for i in 0..400 {
        let p = t.path().join(format!("Packages.{i}"));
        fs::write(&p, gen_index(&mut rng)).unwrap();
        files.push(p);
    }
    let mut args: Vec<&OsStr> = vec![OsStr::new("index-roundtrip")];
    args.extend(files.iter().map(|f| f.as_os_str()));
    bintree_py(&py, &args, None);
    let mut diffs = Vec::new();
    let mut with_entries = 0;
    for f in &files {
        let data = fs::read(f).unwrap();
        let want = fs::read(format!("{}.portage", f.display())).unwrap();
        let idx = index::parse_with_defaults(&data, &header_defaults()).unwrap();
        with_entries += usize::from(!idx.packages.is_empty());
        let got = index::write(&idx);
        if got != want {
            diffs.push(format!(
                "{}: input {:?}\nPortage {:?}\nours    {:?}",
                f.display(),
                String::from_utf8_lossy(&data),
                String::from_utf8_lossy(&want),
                String::from_utf8_lossy(&got)
            ));
        }
    }
    assert!(with_entries > 150, "only {with_entries} inputs had entries");
    assert!(
        diffs.is_empty(),
        "{} differences:\n{}",
        diffs.len(),
        diffs[..diffs.len().min(5)].join("\n")
    );
}

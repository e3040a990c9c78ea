//! `vartree merge` on temporary roots: results, confinement, atomic
//! replacement and rollback.
#![allow(clippy::print_stderr)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Pkg {
    _t: tempfile::TempDir,
    image: PathBuf,
    info: PathBuf,
}

/// An image and build-info for CAT/PF.
fn pkg(cpv: &str, slot: &str, files: &[(&str, &str)]) -> Pkg {
    let t = tempfile::tempdir().unwrap();
    let image = t.path().join("image");
    let info = t.path().join("build-info");
    fs::create_dir_all(&image).unwrap();
    fs::create_dir_all(&info).unwrap();
    let (cat, pf) = cpv.split_once('/').unwrap();
    fs::write(info.join("CATEGORY"), format!("{cat}\n")).unwrap();
    fs::write(info.join("PF"), format!("{pf}\n")).unwrap();
    fs::write(info.join("SLOT"), format!("{slot}\n")).unwrap();
    fs::write(info.join("EAPI"), "8\n").unwrap();
    fs::write(info.join("repository"), "gentoo\n").unwrap();
    for (path, content) in files {
        let p = image.join(path.trim_start_matches('/'));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        if let Some(target) = content.strip_prefix("->") {
            symlink(target, &p).unwrap();
        } else if path.ends_with('/') {
            fs::create_dir_all(&p).unwrap();
        } else {
            fs::write(&p, content).unwrap();
        }
    }
    Pkg { _t: t, image, info }
}

fn merge(root: &Path, p: &Pkg, extra: &[&str]) -> Output {
    merge_env(root, p, extra, &[])
}

fn merge_env(root: &Path, p: &Pkg, extra: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vartree"))
        .envs(env.iter().copied())
        .arg("--root")
        .arg(root)
        .args(["merge", "--sync", "never", "--image"])
        .arg(&p.image)
        .arg("--build-info")
        .arg(&p.info)
        .args(extra)
        .env_remove("ROOT")
        .env_remove("EPREFIX")
        .output()
        .unwrap()
}

fn ok(o: &Output) {
    assert!(
        o.status.success(),
        "vartree failed: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// path → (type, mode, size, content or target) for a whole tree.
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let mut names: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        for p in names {
            let m = fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(base).unwrap().display().to_string();
            let desc = if m.file_type().is_symlink() {
                format!("sym {}", fs::read_link(&p).unwrap().display())
            } else if m.is_dir() {
                walk(base, &p, out);
                format!("dir {:o}", m.mode())
            } else {
                format!("file {:o} {:?}", m.mode(), fs::read(&p).unwrap())
            };
            out.insert(rel, desc);
        }
    }
    walk(root, root, &mut out);
    out
}

fn no_temp_names(root: &Path) {
    for k in snapshot(root).keys() {
        assert!(!k.contains(".vartree."), "temp name left behind: {k}");
    }
}

#[test]
fn merges_files_symlinks_and_records_them() {
    let root = tempfile::tempdir().unwrap();
    let p = pkg(
        "app-misc/foo-1.0",
        "0",
        &[
            ("/usr/bin/foo", "#!/bin/sh\n"),
            ("/usr/share/foo/data", "data\n"),
            ("/usr/share/foo/empty/", ""),
            ("/usr/lib/foo/rel", "->../../share/foo/data"),
            ("/usr/bin/abs", "->/usr/bin/foo"),
        ],
    );
    fs::set_permissions(
        p.image.join("usr/bin/foo"),
        fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    ok(&merge(root.path(), &p, &[]));
    let r = root.path();
    assert_eq!(fs::read(r.join("usr/share/foo/data")).unwrap(), b"data\n");
    assert_eq!(
        fs::metadata(r.join("usr/bin/foo")).unwrap().mode() & 0o7777,
        0o4755
    );
    assert_eq!(
        fs::read_link(r.join("usr/bin/abs")).unwrap(),
        Path::new("/usr/bin/foo")
    );
    assert!(r.join("usr/share/foo/empty").is_dir());
    let contents = fs::read_to_string(r.join("var/db/pkg/app-misc/foo-1.0/CONTENTS")).unwrap();
    assert!(
        contents.contains("obj /usr/share/foo/data 6137cde4893c59f76f005a8123d8e8e6 "),
        "{contents}"
    );
    assert!(contents.contains("sym /usr/lib/foo/rel -> ../../share/foo/data "));
    assert!(contents.contains("dir /usr/share/foo/empty\n"));
    assert_eq!(
        fs::read(r.join("var/db/pkg/app-misc/foo-1.0/COUNTER")).unwrap(),
        b"0"
    );
    no_temp_names(r);
    // The image was copied, not consumed.
    assert!(p.image.join("usr/bin/foo").exists());
    // check agrees with what was merged.
    let o = Command::new(env!("CARGO_BIN_EXE_vartree"))
        .arg("--root")
        .arg(r)
        .arg("check")
        .output()
        .unwrap();
    ok(&o);
}

#[test]
fn refuses_collisions_with_owned_files_and_touches_nothing() {
    let root = tempfile::tempdir().unwrap();
    ok(&merge(
        root.path(),
        &pkg("a/one-1", "0", &[("/usr/bin/tool", "one\n")]),
        &[],
    ));
    let before = snapshot(root.path());
    let o = merge(
        root.path(),
        &pkg(
            "a/two-1",
            "0",
            &[("/usr/bin/tool", "two\n"), ("/usr/bin/other", "x")],
        ),
        &[],
    );
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("/usr/bin/tool (owned by a/one-1)"), "{err}");
    assert_eq!(snapshot(root.path()), before, "nothing may change");

    // An orphan file is overwritten (protect-owned), unless collision-protect.
    fs::write(root.path().join("usr/bin/orphan"), "old").unwrap();
    let p = pkg("a/three-1", "0", &[("/usr/bin/orphan", "new")]);
    let o = merge(root.path(), &p, &["--collision-protect"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("/usr/bin/orphan (not owned by any package)")
    );
    ok(&merge(root.path(), &p, &[]));
    assert_eq!(
        fs::read(root.path().join("usr/bin/orphan")).unwrap(),
        b"new"
    );
}

#[test]
fn type_conflicts_move_things_aside() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    fs::create_dir_all(r.join("usr/share")).unwrap();
    fs::write(r.join("usr/share/wasfile"), "i am a file").unwrap();
    fs::create_dir_all(r.join("usr/share/wasdir")).unwrap();
    let p = pkg(
        "a/b-1",
        "0",
        &[
            ("/usr/share/wasfile/inner", "x"),
            ("/usr/share/wasdir", "file"),
        ],
    );
    ok(&merge(r, &p, &[]));
    assert_eq!(
        fs::read(r.join("usr/share/wasfile.backup.0000")).unwrap(),
        b"i am a file"
    );
    assert_eq!(fs::read(r.join("usr/share/wasfile/inner")).unwrap(), b"x");
    assert!(r.join("usr/share/wasdir").is_dir());
    assert_eq!(
        fs::read(r.join("usr/share/wasdir.backup.0000")).unwrap(),
        b"file"
    );

    // A symlink over a real directory is refused.
    fs::create_dir_all(r.join("opt/d")).unwrap();
    let o = merge(r, &pkg("a/c-1", "0", &[("/opt/d", "->elsewhere")]), &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("PMS forbids"));
}

#[test]
fn merges_through_directory_symlinks() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    fs::create_dir_all(r.join("usr/lib")).unwrap();
    symlink("usr/lib", r.join("lib")).unwrap();
    ok(&merge(r, &pkg("a/b-1", "0", &[("/lib/libb.so", "b")]), &[]));
    assert!(fs::symlink_metadata(r.join("lib"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(fs::read(r.join("usr/lib/libb.so")).unwrap(), b"b");
    let contents = fs::read_to_string(r.join("var/db/pkg/a/b-1/CONTENTS")).unwrap();
    assert!(
        contents.starts_with("dir /lib\nobj /lib/libb.so "),
        "{contents}"
    );
    // A second package with the same file through the other name collides.
    let o = merge(r, &pkg("a/c-1", "0", &[("/usr/lib/libb.so", "c")]), &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("owned by a/b-1"));
}

#[test]
fn hostile_symlinks_in_root_cannot_redirect_writes() {
    hostile_symlinks(&[]);
}

#[test]
fn hostile_symlinks_without_openat2() {
    hostile_symlinks(&[("VARTREE_NO_OPENAT2", "1")]);
}

fn hostile_symlinks(env: &[(&str, &str)]) {
    let outer = tempfile::tempdir().unwrap();
    let root = outer.path().join("root");
    let outside = outer.path().join("outside");
    fs::create_dir_all(root.join("usr")).unwrap();
    fs::create_dir_all(&outside).unwrap();
    fs::write(outside.join("victim"), "keep").unwrap();
    // Absolute and relative escapes, and a link to a sibling tree.
    symlink("/", root.join("usr/abs")).unwrap();
    symlink("../../../../../../..", root.join("usr/up")).unwrap();
    symlink(&outside, root.join("usr/sibling")).unwrap();
    let before_outside = snapshot(&outside);
    let p = pkg(
        "a/evil-1",
        "0",
        &[
            ("/usr/abs/victim", "pwned"),
            ("/usr/up/victim2", "pwned"),
            ("/usr/sibling/victim", "pwned"),
        ],
    );
    ok(&merge_env(&root, &p, &[], env));
    assert_eq!(
        snapshot(&outside),
        before_outside,
        "nothing outside ROOT changed"
    );
    // They landed inside ROOT, where the symlinks resolve when ROOT is the root.
    assert_eq!(fs::read(root.join("victim")).unwrap(), b"pwned");
    assert_eq!(fs::read(root.join("victim2")).unwrap(), b"pwned");
}

#[test]
fn failure_while_staging_rolls_back() {
    if !Command::new("chattr")
        .arg("--help")
        .output()
        .is_ok_and(|_| true)
    {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    fs::create_dir_all(r.join("usr/share/locked")).unwrap();
    fs::create_dir_all(r.join("usr/bin")).unwrap();
    let before = snapshot(r);
    let p = pkg(
        "a/b-1",
        "0",
        &[
            ("/usr/bin/aaa", "a"),
            ("/usr/new/tree/file", "n"),
            ("/usr/share/locked/zzz", "z"),
        ],
    );
    let st = Command::new("chattr")
        .arg("+i")
        .arg(r.join("usr/share/locked"))
        .status()
        .unwrap();
    if !st.success() {
        eprintln!("chattr +i not supported here; skipping");
        return;
    }
    let o = merge(r, &p, &[]);
    Command::new("chattr")
        .arg("-i")
        .arg(r.join("usr/share/locked"))
        .status()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("/usr/share/locked/zzz"), "{err}");
    let mut after = snapshot(r);
    // The VDB lock file and its directory may be created by the attempt.
    after.retain(|k, _| !k.starts_with("var"));
    assert_eq!(after, before);
    no_temp_names(r);
}

#[test]
fn replacing_a_symlink_is_atomic() {
    // A reader must never see the path missing while it is replaced.
    let root = tempfile::tempdir().unwrap();
    let r = root.path().to_path_buf();
    fs::create_dir_all(r.join("usr/bin")).unwrap();
    symlink("old-target", r.join("usr/bin/link")).unwrap();
    fs::write(r.join("usr/bin/file"), "old").unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let stop = stop.clone();
        let r = r.clone();
        std::thread::spawn(move || {
            let mut misses = 0u64;
            let mut reads = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                reads += 1;
                if fs::symlink_metadata(r.join("usr/bin/link")).is_err() {
                    misses += 1;
                }
                if fs::symlink_metadata(r.join("usr/bin/file")).is_err() {
                    misses += 1;
                }
            }
            (reads, misses)
        })
    };
    for i in 0..20 {
        let p = pkg(
            "a/b-1",
            "0",
            &[
                ("/usr/bin/link", &format!("->target-{i}")),
                ("/usr/bin/file", &format!("content {i}")),
            ],
        );
        ok(&merge(&r, &p, &[]));
        fs::remove_dir_all(r.join("var/db/pkg/a")).unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (reads, misses) = reader.join().unwrap();
    assert!(reads > 0);
    assert_eq!(
        misses, 0,
        "the path was missing {misses} times in {reads} reads"
    );
    assert_eq!(
        fs::read_link(r.join("usr/bin/link")).unwrap(),
        Path::new("target-19")
    );
}

#[test]
fn pretend_touches_nothing_upgrade_reinstall_downgrade() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let p = pkg(
        "a/b-1",
        "0",
        &[("/usr/bin/b", "b"), ("/usr/share/b/old", "old")],
    );
    let o = merge(r, &p, &["--pretend"]);
    ok(&o);
    assert!(snapshot(r).is_empty(), "{:?}", snapshot(r));
    ok(&merge(r, &p, &[]));
    // Upgrade in the same slot: new files in, files only the old one had out.
    let p2 = pkg(
        "a/b-2",
        "0",
        &[("/usr/bin/b", "b2"), ("/usr/share/b/new", "new")],
    );
    ok(&merge(r, &p2, &[]));
    assert_eq!(fs::read(r.join("usr/bin/b")).unwrap(), b"b2");
    assert!(!r.join("usr/share/b/old").exists());
    assert!(r.join("usr/share/b/new").exists());
    let names: Vec<_> = fs::read_dir(r.join("var/db/pkg/a"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["b-2"]);
    assert_eq!(fs::read(r.join("var/db/pkg/a/b-2/COUNTER")).unwrap(), b"1");
    // Reinstall: the entry is swapped, never missing; files stay.
    ok(&merge(r, &p2, &[]));
    assert_eq!(fs::read(r.join("var/db/pkg/a/b-2/COUNTER")).unwrap(), b"2");
    assert!(r.join("usr/share/b/new").exists());
    // Downgrade.
    ok(&merge(r, &p, &[]));
    assert_eq!(fs::read(r.join("usr/bin/b")).unwrap(), b"b");
    assert!(r.join("usr/share/b/old").exists());
    assert!(!r.join("usr/share/b/new").exists());
    // Another slot is installed beside it.
    ok(&merge(r, &pkg("a/b-3", "3", &[("/usr/bin/b3", "b3")]), &[]));
    let mut names: Vec<_> = fs::read_dir(r.join("var/db/pkg/a"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["b-1", "b-3"]);
    no_temp_names(r);
}

#[test]
fn bad_build_info_is_a_clear_error() {
    let root = tempfile::tempdir().unwrap();
    let p = pkg("a/b-1", "0", &[("/x", "x")]);
    fs::remove_file(p.info.join("SLOT")).unwrap();
    let o = merge(root.path(), &p, &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("SLOT is undefined"));
    fs::write(p.info.join("SLOT"), "0").unwrap();
    fs::write(p.info.join("PF"), "not a valid pf-").unwrap();
    let o = merge(root.path(), &p, &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a valid package"));
    assert!(snapshot(root.path()).is_empty());
}

#[test]
fn parallel_merges_into_one_root() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    fs::create_dir_all(r.join("usr/bin")).unwrap();
    let n = 8;
    let pkgs: Vec<Pkg> = (0..n)
        .map(|i| {
            let files: Vec<(String, String)> = (0..40)
                .map(|j| {
                    (
                        format!("/usr/share/shared-new/p{i}-{j}"),
                        format!("{i}-{j}"),
                    )
                })
                .chain([
                    (format!("/usr/bin/tool{i}"), format!("tool {i}")),
                    (format!("/usr/lib/p{i}/lib.so"), "x".to_string()),
                ])
                .collect();
            let refs: Vec<(&str, &str)> = files
                .iter()
                .map(|(a, b)| (a.as_str(), b.as_str()))
                .collect();
            pkg(&format!("app-misc/p{i}-1"), "0", &refs)
        })
        .collect();
    let children: Vec<_> = pkgs
        .iter()
        .map(|p| {
            Command::new(env!("CARGO_BIN_EXE_vartree"))
                .arg("--root")
                .arg(r)
                .args(["merge", "--sync", "never", "--image"])
                .arg(&p.image)
                .arg("--build-info")
                .arg(&p.info)
                .env_remove("ROOT")
                .env_remove("EPREFIX")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        ok(&c.wait_with_output().unwrap());
    }
    let mut counters = Vec::new();
    for i in 0..n {
        let d = r.join(format!("var/db/pkg/app-misc/p{i}-1"));
        counters.push(fs::read_to_string(d.join("COUNTER")).unwrap());
        let contents = fs::read_to_string(d.join("CONTENTS")).unwrap();
        assert_eq!(
            contents.lines().filter(|l| l.starts_with("obj ")).count(),
            42
        );
    }
    counters.sort();
    counters.dedup();
    assert_eq!(counters.len(), n, "COUNTERs are unique");
    assert_eq!(
        fs::read_dir(r.join("usr/share/shared-new"))
            .unwrap()
            .count(),
        n * 40
    );
    let o = Command::new(env!("CARGO_BIN_EXE_vartree"))
        .arg("--root")
        .arg(r)
        .arg("check")
        .output()
        .unwrap();
    ok(&o);
    no_temp_names(r);
}

#[test]
fn blockers_hand_files_over() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    ok(&merge(
        r,
        &pkg(
            "sys-apps/mktemp-1.5",
            "0",
            &[
                ("/bin/mktemp", "old mktemp"),
                ("/usr/share/man/mktemp.1", "man"),
            ],
        ),
        &[],
    ));
    let a = pkg(
        "sys-apps/coreutils-6.11",
        "0",
        &[("/bin/mktemp", "new mktemp"), ("/bin/ls", "ls")],
    );
    fs::write(a.info.join("RDEPEND"), ">=dev-libs/x-1 !sys-apps/mktemp\n").unwrap();
    let before = snapshot(r);
    // Without --replace: a clear error naming both packages; nothing touched.
    let o = merge(r, &a, &[]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(
            "sys-apps/coreutils-6.11 and the installed sys-apps/mktemp-1.5 block each other"
        ),
        "{err}"
    );
    assert_eq!(snapshot(r), before);
    // With --replace: merged, the shared file handed over, mktemp unmerged.
    ok(&merge(r, &a, &["--replace", "sys-apps/mktemp"]));
    assert_eq!(fs::read(r.join("bin/mktemp")).unwrap(), b"new mktemp");
    assert!(!r.join("usr/share/man/mktemp.1").exists());
    assert!(!r.join("var/db/pkg/sys-apps/mktemp-1.5").exists());
    let o = Command::new(env!("CARGO_BIN_EXE_vartree"))
        .arg("--root")
        .arg(r)
        .args(["owners", "/bin/mktemp"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "sys-apps/coreutils-6.11: /bin/mktemp\n"
    );

    // A strong blocker refuses the co-installation, even with --replace.
    ok(&merge(r, &pkg("a/old-1", "0", &[("/usr/bin/o", "o")]), &[]));
    let s = pkg("a/new-1", "0", &[("/usr/bin/o", "n")]);
    fs::write(s.info.join("RDEPEND"), "!!a/old\n").unwrap();
    let o = merge(r, &s, &["--replace", "a/old"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("strong blocker !!a/old"));
    // The blocker may also be declared by the installed package.
    let blocks = pkg("a/blocks-1", "0", &[("/usr/bin/bl", "b")]);
    fs::write(blocks.info.join("RDEPEND"), "!a/victim\n").unwrap();
    ok(&merge(r, &blocks, &[]));
    let o = merge(r, &pkg("a/victim-2", "0", &[("/usr/bin/v", "v")]), &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("a/blocks-1 block each other (!a/victim)"));
}

#[test]
fn upgrade_rewrites_only_changed_files() {
    // 1,000 files, 1% changed: only those are rewritten; the rest keep
    // their inode and only get their mtime set. With --trust-vdb the
    // unchanged live files are not even read.
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let files: Vec<(String, String)> = (0..1000)
        .map(|i| {
            (
                format!("/usr/share/many/d{}/f{i}", i / 100),
                format!("content {i}\n"),
            )
        })
        .collect();
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    ok(&merge(r, &pkg("a/many-1", "0", &refs), &[]));
    let ino = |p: &str| fs::metadata(r.join(p)).unwrap().ino();
    let before: Vec<u64> = (0..1000)
        .map(|i| ino(&format!("usr/share/many/d{}/f{i}", i / 100)))
        .collect();
    let changed: Vec<(String, String)> = files
        .iter()
        .enumerate()
        .map(|(i, (p, c))| {
            if i % 100 == 7 {
                (p.clone(), format!("changed {i}\n"))
            } else {
                (p.clone(), c.clone())
            }
        })
        .collect();
    let refs2: Vec<(&str, &str)> = changed
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    for (flags, version) in [(&[][..], "2"), (&["--trust-vdb"][..], "3")] {
        let p = pkg(&format!("a/many-{version}"), "0", &refs2);
        let mut args = vec!["--json"];
        args.extend_from_slice(flags);
        let o = merge(r, &p, &args);
        ok(&o);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let identical = v["identical"].as_u64().unwrap();
        let expect = if version == "2" { 990 } else { 1000 };
        assert_eq!(identical, expect, "{flags:?}: {v}");
    }
    let after: Vec<u64> = (0..1000)
        .map(|i| ino(&format!("usr/share/many/d{}/f{i}", i / 100)))
        .collect();
    let rewritten = before.iter().zip(&after).filter(|(a, b)| a != b).count();
    assert_eq!(rewritten, 10);
}

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

/// Merge events are not needed by the library-level tests.
struct Quiet;
impl vdb::db::Reporter for Quiet {
    fn warn(&self, _: vdb::db::Warning) {}
}
impl merge::MergeReporter for Quiet {
    fn event(&self, _: merge::MergeEvent) {}
}

/// What the reader threads saw.
#[derive(Default, Debug)]
struct Seen {
    /// Successful resolutions through a symlink (`lstat`, `readlink`,
    /// `stat`, `open` + read) and opens of regular files.
    link_ops: u64,
    file_ops: u64,
    /// Failures by kind (ENOENT above all).
    enoent: u64,
    other_errors: Vec<String>,
    /// How often a link was found pointing elsewhere, or a file holding
    /// other content, than the last time this reader looked: the reader
    /// really ran while the replacements happened.
    changes: u64,
}

/// The requirement, at scale: while merges replace symlinks (and
/// regular files) 10,000 times, concurrent readers resolving them never see
/// ENOENT. 20 merges through the library engine (the same code as `vartree
/// merge`) of an image with 500 symlinks and 500 files, alternating between
/// two images whose every link target and file content differ: a fresh
/// install over unowned files, then reinstalls, upgrades and downgrades of
/// the same slot. Each merge replaces every link and every file by a
/// rename; the test checks after each merge that every one of them was
/// replaced. Reader threads meanwhile `lstat`, `readlink`, `stat` and
/// `open` (and read) through the links, and open and read the files.
#[test]
fn replacing_symlinks_and_files_is_atomic_at_scale() {
    const LINKS: usize = 500;
    const ROUNDS: usize = 20;
    // One reader per spare CPU, one at least, three at most: more would
    // only slow the merges down.
    let readers = std::thread::available_parallelism().map_or(1, |n| n.get().clamp(2, 4) - 1);
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let root = tempfile::tempdir().unwrap();
    let r = root.path().to_path_buf();
    let dir = r.join("usr/lib/atomic");
    fs::create_dir_all(&dir).unwrap();
    // The link targets: two files no package owns, so that a link always
    // resolves whichever of them it points to.
    fs::write(dir.join("t0"), "t0").unwrap();
    fs::write(dir.join("t1"), "t1").unwrap();
    // The state before: unowned links and files the first merge replaces.
    for i in 0..LINKS {
        symlink("t1", dir.join(format!("l{i:04}"))).unwrap();
        fs::write(dir.join(format!("f{i:04}")), format!("before {i}\n")).unwrap();
    }
    // Two images: link i points to t(i%2) in A and t((i+1)%2) in B; every
    // file's content differs between them.
    let images: Vec<Pkg> = (0..2)
        .map(|x| {
            let entries: Vec<(String, String)> = (0..LINKS)
                .flat_map(|i| {
                    [
                        (
                            format!("/usr/lib/atomic/l{i:04}"),
                            format!("->t{}", (i + x) % 2),
                        ),
                        (
                            format!("/usr/lib/atomic/f{i:04}"),
                            format!("image {x} file {i}\n"),
                        ),
                    ]
                })
                .collect();
            let refs: Vec<(&str, &str)> = entries
                .iter()
                .map(|(a, b)| (a.as_str(), b.as_str()))
                .collect();
            pkg("a/atomic-1", "0", &refs)
        })
        .collect();
    // Build-info for a second version (upgrades and downgrades).
    let info2 = images[1].info.parent().unwrap().join("build-info-2");
    copy_dir(&images[1].info, &info2);
    fs::write(info2.join("PF"), "atomic-2\n").unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..readers)
        .map(|n| {
            let stop = stop.clone();
            let dir = dir.clone();
            std::thread::spawn(move || {
                let mut seen = Seen::default();
                let mut last_target = vec![Vec::new(); LINKS];
                let mut last_content = vec![Vec::new(); LINKS];
                let note = |seen: &mut Seen, what: &str, e: std::io::Error| {
                    if e.kind() == std::io::ErrorKind::NotFound {
                        seen.enoent += 1;
                    }
                    if seen.other_errors.len() < 10 {
                        seen.other_errors.push(format!("{what}: {e}"));
                    }
                };
                // Each reader walks the links in its own order.
                let mut i = n * LINKS / readers;
                while !stop.load(Ordering::Relaxed) {
                    i = (i + 7) % LINKS;
                    let link = dir.join(format!("l{i:04}"));
                    match fs::symlink_metadata(&link) {
                        Ok(m) if m.file_type().is_symlink() => seen.link_ops += 1,
                        Ok(_) => note(
                            &mut seen,
                            "lstat",
                            std::io::Error::other(format!("{}: not a symlink", link.display())),
                        ),
                        Err(e) => note(&mut seen, "lstat", e),
                    }
                    match fs::read_link(&link) {
                        Ok(t) => {
                            seen.link_ops += 1;
                            let t = t.into_os_string().into_encoded_bytes();
                            if !last_target[i].is_empty() && last_target[i] != t {
                                seen.changes += 1;
                            }
                            last_target[i] = t;
                        }
                        Err(e) => note(&mut seen, "readlink", e),
                    }
                    match fs::metadata(&link) {
                        Ok(_) => seen.link_ops += 1,
                        Err(e) => note(&mut seen, "stat through the link", e),
                    }
                    match fs::read(&link) {
                        Ok(_) => seen.link_ops += 1,
                        Err(e) => note(&mut seen, "open through the link", e),
                    }
                    match fs::read(dir.join(format!("f{i:04}"))) {
                        Ok(c) => {
                            seen.file_ops += 1;
                            if !last_content[i].is_empty() && last_content[i] != c {
                                seen.changes += 1;
                            }
                            last_content[i] = c;
                        }
                        Err(e) => note(&mut seen, "open a file", e),
                    }
                }
                seen
            })
        })
        .collect();

    let started = std::time::Instant::now();
    let (mut link_replacements, mut file_replacements) = (0usize, 0usize);
    for round in 0..ROUNDS {
        let x = round % 2;
        // 1, 1 (reinstall), 2 (upgrade), 2 (reinstall), 1 (downgrade), …
        let info = if (round / 2) % 2 == 0 {
            &images[0].info
        } else {
            &info2
        };
        let mut opts = merge::MergeOptions::new(&r, &images[x].image, info);
        opts.sync = merge::SyncMode::Never;
        let out =
            merge::merge_image(&opts, &Quiet).unwrap_or_else(|e| panic!("merge {round}: {e}"));
        assert_eq!(out.contents.len(), 2 * LINKS + 3, "merge {round}");
        assert_eq!(out.identical, 0, "merge {round}: every file changed");
        // Every link and every file was replaced by this merge.
        for i in 0..LINKS {
            let t = fs::read_link(dir.join(format!("l{i:04}"))).unwrap();
            assert_eq!(t, Path::new(&format!("t{}", (i + x) % 2)), "merge {round}");
            link_replacements += 1;
            let c = fs::read(dir.join(format!("f{i:04}"))).unwrap();
            assert_eq!(c, format!("image {x} file {i}\n").as_bytes());
            file_replacements += 1;
        }
    }
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let seen: Vec<Seen> = readers.into_iter().map(|h| h.join().unwrap()).collect();
    let total = |f: fn(&Seen) -> u64| seen.iter().map(f).sum::<u64>();
    let (link_ops, file_ops, enoent, changes) = (
        total(|s| s.link_ops),
        total(|s| s.file_ops),
        total(|s| s.enoent),
        total(|s| s.changes),
    );
    eprintln!(
        "{ROUNDS} merges in {elapsed:.1?}: {link_replacements} symlink and \
         {file_replacements} file replacements; readers: {link_ops} resolutions \
         through links, {file_ops} file opens, {changes} changes seen, {enoent} ENOENT"
    );
    assert_eq!(link_replacements, 10_000);
    assert_eq!(file_replacements, 10_000);
    let errors: Vec<&String> = seen.iter().flat_map(|s| &s.other_errors).collect();
    assert_eq!(enoent, 0, "ENOENT while replacing: {errors:?}");
    assert!(errors.is_empty(), "{errors:?}");
    assert!(
        link_ops >= 20_000 && file_ops >= 5_000,
        "the readers did too little to show anything: {seen:?}"
    );
    assert!(
        changes >= 1_000,
        "the readers hardly overlapped with the replacements: {seen:?}"
    );
    // The package is installed once, as the last version merged.
    let names: Vec<_> = fs::read_dir(r.join("var/db/pkg/a"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    no_temp_names(&r);
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
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

/// The `"protected"` list of `merge --json`: (path, merged as).
fn protected_json(o: &Output) -> Vec<(String, String)> {
    ok(o);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["protected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["path"].as_str().unwrap().to_owned(),
                p["merged_as"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn pretend_shows_the_cfg_names_the_merge_then_uses() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let p1 = pkg(
        "app-misc/conf-1",
        "0",
        &[
            ("/etc/conf/a.conf", "a 1\n"),
            ("/etc/conf/b.conf", "b 1\n"),
            ("/etc/conf/same.conf", "same\n"),
        ],
    );
    ok(&merge(r, &p1, &[]));
    // The administrator edits two of them.
    fs::write(r.join("etc/conf/a.conf"), "a 1, edited\n").unwrap();
    fs::write(r.join("etc/conf/b.conf"), "b 1, edited\n").unwrap();
    let p2 = pkg(
        "app-misc/conf-2",
        "0",
        &[
            ("/etc/conf/a.conf", "a 2\n"),
            ("/etc/conf/b.conf", "b 2\n"),
            ("/etc/conf/same.conf", "same\n"),
        ],
    );
    let before = snapshot(r);
    // Nothing pending: the first names.
    let o = merge(r, &p2, &["--pretend"]);
    ok(&o);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(
            "[pretend] /etc/conf/a.conf is config-protected: would be merged as /etc/conf/._cfg0000_a.conf"
        ) && err.contains(
            "[pretend] /etc/conf/b.conf is config-protected: would be merged as /etc/conf/._cfg0000_b.conf"
        ),
        "{err}"
    );
    assert!(!err.contains("same.conf is config-protected"), "{err}");
    // An update of a.conf is already pending (other content): the next
    // number. One of b.conf with the very content of the new one: its name
    // is reused.
    fs::write(r.join("etc/conf/._cfg0000_a.conf"), "an older update\n").unwrap();
    fs::write(r.join("etc/conf/._cfg0000_b.conf"), "b 2\n").unwrap();
    let before_pending = snapshot(r);
    let o = merge(r, &p2, &["--pretend"]);
    ok(&o);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(
            "/etc/conf/a.conf is config-protected: would be merged as /etc/conf/._cfg0001_a.conf"
        ) && err.contains(
            "/etc/conf/b.conf is config-protected: would be merged as /etc/conf/._cfg0000_b.conf"
        ),
        "{err}"
    );
    let pretended = protected_json(&merge(r, &p2, &["--pretend", "--json"]));
    let want = vec![
        (
            "/etc/conf/a.conf".to_owned(),
            "/etc/conf/._cfg0001_a.conf".to_owned(),
        ),
        (
            "/etc/conf/b.conf".to_owned(),
            "/etc/conf/._cfg0000_b.conf".to_owned(),
        ),
    ];
    assert_eq!(pretended, want);
    // --pretend touched nothing.
    assert_eq!(snapshot(r), before_pending);
    let mut without_pending = before_pending.clone();
    without_pending.retain(|k, _| !k.contains("._cfg"));
    assert_eq!(without_pending, before);
    // The merge itself uses exactly those names.
    let merged = protected_json(&merge(r, &p2, &["--json"]));
    assert_eq!(merged, pretended);
    let read = |p: &str| fs::read_to_string(r.join(p)).unwrap();
    assert_eq!(read("etc/conf/._cfg0001_a.conf"), "a 2\n");
    assert_eq!(read("etc/conf/._cfg0000_a.conf"), "an older update\n");
    assert_eq!(read("etc/conf/._cfg0000_b.conf"), "b 2\n");
    assert_eq!(read("etc/conf/a.conf"), "a 1, edited\n");
    assert!(!r.join("etc/conf/._cfg0002_a.conf").exists());
    assert!(!r.join("etc/conf/._cfg0001_b.conf").exists());
    // The administrator discards the updates; a reinstall of the same
    // version skips them (config memory), and --pretend says so.
    for f in ["._cfg0000_a.conf", "._cfg0001_a.conf", "._cfg0000_b.conf"] {
        fs::remove_file(r.join("etc/conf").join(f)).unwrap();
    }
    let o = merge(r, &p2, &["--pretend", "--json"]);
    assert!(protected_json(&o).is_empty());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        v["protected_skipped"],
        serde_json::json!(["/etc/conf/a.conf", "/etc/conf/b.conf"])
    );
    let o = merge(r, &p2, &["--pretend"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains(
        "[pretend] /etc/conf/a.conf: this update was merged before and discarded (config memory); would not be merged"
    ));
    let o = merge(r, &p2, &["--json"]);
    assert!(protected_json(&o).is_empty());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["protected_skipped"].as_array().unwrap().len(), 2);
    assert!(!snapshot(r).keys().any(|k| k.contains("._cfg")));
    no_temp_names(r);
}

fn ino(p: &Path) -> u64 {
    fs::symlink_metadata(p).unwrap().ino()
}

/// `--move-image` moves a new directory whose whole subtree merges as it is
/// with one rename (the directory in ROOT is the image's own, same inode),
/// and creates the others entry by entry: one holding an INSTALL_MASKed
/// file (left in the image), one with an xattr on the directory (a created
/// directory gets none, as with Portage), one with a file hard-linked from
/// outside it, one with a symlink into the image (its target rewritten).
/// The result equals a copy-mode merge of the same package.
#[test]
fn move_image_moves_whole_new_directories() {
    let mk = || {
        let p = pkg(
            "a/tree-1",
            "0",
            &[
                ("/usr/bin/h2", "hard\n"),
                ("/usr/share/foo/a", "a\n"),
                ("/usr/share/foo/sub/c", "c\n"),
                ("/usr/share/foo/link", "->a"),
                ("/usr/share/foo/empty/", ""),
                ("/usr/share/masked/keep", "keep\n"),
                ("/usr/share/masked/x.la", "la\n"),
                ("/usr/share/xattr/f", "f\n"),
                ("/usr/share/hl/other", "o\n"),
            ],
        );
        fs::hard_link(p.image.join("usr/bin/h2"), p.image.join("usr/share/hl/h1")).unwrap();
        let abs = fs::canonicalize(&p.image).unwrap();
        fs::create_dir_all(p.image.join("usr/share/rewr")).unwrap();
        symlink(
            abs.join("usr/share/foo/a"),
            p.image.join("usr/share/rewr/l"),
        )
        .unwrap();
        fs::write(p.info.join("INSTALL_MASK"), "*.la\n").unwrap();
        let name = std::ffi::CString::new("user.vartree-test").unwrap();
        let dir = std::ffi::CString::new(
            p.image
                .join("usr/share/xattr")
                .as_os_str()
                .as_encoded_bytes(),
        )
        .unwrap();
        // SAFETY: valid NUL-terminated strings and a 1-byte value.
        let xattr =
            unsafe { libc::setxattr(dir.as_ptr(), name.as_ptr(), b"x".as_ptr().cast(), 1, 0) } == 0;
        (p, xattr)
    };
    let (moved, xattr) = mk();
    let (copied, _) = mk();
    let (r1, r2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for r in [r1.path(), r2.path()] {
        fs::create_dir_all(r.join("usr/bin")).unwrap();
    }
    let img = &moved.image;
    let foo_ino = ino(&img.join("usr/share/foo"));
    let share_ino = ino(&img.join("usr/share"));
    let masked_ino = ino(&img.join("usr/share/masked"));
    let hl_ino = ino(&img.join("usr/share/hl"));
    let xattr_ino = ino(&img.join("usr/share/xattr"));
    ok(&merge(r1.path(), &moved, &["--move-image"]));
    ok(&merge(r2.path(), &copied, &[]));
    let r = r1.path();
    // Moved whole.
    assert_eq!(ino(&r.join("usr/share/foo")), foo_ino);
    assert!(!img.join("usr/share/foo").exists());
    // Created.
    assert_ne!(ino(&r.join("usr/share")), share_ino);
    assert_ne!(ino(&r.join("usr/share/masked")), masked_ino);
    assert_ne!(ino(&r.join("usr/share/hl")), hl_ino);
    assert_eq!(
        ino(&r.join("usr/share/hl/h1")),
        ino(&r.join("usr/bin/h2")),
        "hard links stay together"
    );
    assert!(img.join("usr/share/masked/x.la").exists());
    assert!(!r.join("usr/share/masked/x.la").exists());
    assert_eq!(
        fs::read_link(r.join("usr/share/rewr/l")).unwrap(),
        Path::new("/usr/share/foo/a")
    );
    if xattr {
        assert_ne!(ino(&r.join("usr/share/xattr")), xattr_ino);
        let p = std::ffi::CString::new(r.join("usr/share/xattr").as_os_str().as_encoded_bytes())
            .unwrap();
        // SAFETY: valid path; a null list with size 0 asks for the size.
        let n = unsafe { libc::listxattr(p.as_ptr(), std::ptr::null_mut(), 0) };
        assert_eq!(n, 0, "the merged directory has no xattrs");
    } else {
        eprintln!("note: no user xattrs here; the xattr case was not exercised");
    }
    // The same tree and CONTENTS as a copy-mode merge.
    let contents = |r: &Path| fs::read_to_string(r.join("var/db/pkg/a/tree-1/CONTENTS")).unwrap();
    let strip = |c: String| -> Vec<String> {
        // Directory mtimes are not recorded; file and symlink lines are
        // compared whole (mtimes come from the image, equal in both).
        let mut v: Vec<String> = c.lines().map(str::to_owned).collect();
        v.sort();
        v
    };
    assert_eq!(strip(contents(r1.path())), strip(contents(r2.path())));
    let mut s1 = snapshot(r1.path());
    let mut s2 = snapshot(r2.path());
    s1.retain(|k, _| !k.starts_with("var"));
    s2.retain(|k, _| !k.starts_with("var"));
    assert_eq!(s1, s2);
    no_temp_names(r);
}

/// A `--move-image` merge that fails while staging puts directories it had
/// moved whole back into the image.
#[test]
fn failure_after_moving_a_whole_directory_puts_it_back() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    fs::create_dir_all(r.join("usr/share/locked")).unwrap();
    let p = pkg(
        "a/b-1",
        "0",
        &[
            ("/usr/new/tree/file", "n"),
            ("/usr/new/tree/deeper/x", "x"),
            ("/usr/share/locked/zzz", "z"),
        ],
    );
    let image_before = snapshot(&p.image);
    let tree_ino = ino(&p.image.join("usr/new"));
    let before = snapshot(r);
    let st = Command::new("chattr")
        .arg("+i")
        .arg(r.join("usr/share/locked"))
        .status();
    if !st.is_ok_and(|s| s.success()) {
        eprintln!("chattr +i not supported here; skipping");
        return;
    }
    let o = merge(r, &p, &["--move-image"]);
    Command::new("chattr")
        .arg("-i")
        .arg(r.join("usr/share/locked"))
        .status()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let mut after = snapshot(r);
    after.retain(|k, _| !k.starts_with("var"));
    assert_eq!(after, before);
    assert_eq!(snapshot(&p.image), image_before);
    assert_eq!(ino(&p.image.join("usr/new")), tree_ino, "moved back whole");
    no_temp_names(r);
}

/// Unmerge disarms what could outlive it as a hard link (Portage's `chmod
/// 0` before `unlink`): a file with other links, and a set-id or executable
/// file. A plain file with one link is just unlinked (compat D38).
#[test]
fn unmerge_disarms_files_left_behind_as_hard_links() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let p = pkg(
        "a/hl-1",
        "0",
        &[
            ("/usr/bin/tool", "tool\n"),
            ("/usr/share/hl/data", "data\n"),
            ("/usr/share/hl/plain", "plain\n"),
        ],
    );
    fs::set_permissions(
        p.image.join("usr/bin/tool"),
        fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    ok(&merge(r, &p, &[]));
    assert_eq!(
        fs::metadata(r.join("usr/bin/tool")).unwrap().mode() & 0o7777,
        0o4755
    );
    fs::hard_link(r.join("usr/bin/tool"), r.join("stray-tool")).unwrap();
    fs::hard_link(r.join("usr/share/hl/data"), r.join("stray-data")).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_vartree"))
        .arg("--root")
        .arg(r)
        .args(["unmerge", "a/hl"])
        .env_remove("ROOT")
        .env_remove("EPREFIX")
        .output()
        .unwrap();
    ok(&o);
    assert!(!r.join("usr/share/hl").exists());
    assert!(!r.join("usr/bin/tool").exists());
    for stray in ["stray-tool", "stray-data"] {
        assert_eq!(
            fs::metadata(r.join(stray)).unwrap().mode() & 0o7777,
            0,
            "{stray} was not disarmed"
        );
    }
}

//! A full disk, for real: ROOT on a small tmpfs.
//!
//! Each test mounts its own tmpfs (`mount -t tmpfs -o size=…`; we run as
//! root in CI). Where mounting is not permitted the tests print SKIPPED,
//! unless `VARTREE_REQUIRE_ROOT_MOUNT=1`, which makes that a failure. The
//! mount is always undone (a guard with `Drop`, also on panic).
//!
//! The free space is controlled to the page with a ballast file beside ROOT
//! on the same tmpfs (tmpfs charges whole pages of file data; directories
//! and inodes are not charged against `size=`).
//!
//! * An upgrade that does not fit fails with an error naming the path, the
//!   operation and "No space left on device", exit 2, and leaves the root
//!   exactly as it was; once space is freed the same merge succeeds.
//! * The same for a fresh install.
//! * ENOSPC at every page of a merge that almost fits: the free space is
//!   swept from "the files do not fit" up to "everything fits", so that the
//!   disk fills up while staging, while writing the journal, the global
//!   counter, the VDB entry (`CAT/-MERGING-PF`) and the new config memory
//!   (staged before the commit point), … Each failing run must leave the
//!   old state (none may fail after the commit point); the first run that
//!   fits must produce the new one.
#![allow(clippy::print_stderr)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const PAGE: u64 = 4096;

/// A tmpfs mounted for the duration of a test.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// Mount a tmpfs of `size` at `dir`, or `None` (after a notice) where
    /// that is not permitted.
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        fs::create_dir_all(dir).unwrap();
        let o = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0755")])
            .arg("tmpfs")
            .arg(dir)
            .output();
        match o {
            Ok(o) if o.status.success() => Some(Tmpfs {
                dir: dir.to_owned(),
            }),
            other => {
                let why = match other {
                    Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_owned(),
                    Err(e) => e.to_string(),
                };
                assert!(
                    std::env::var("VARTREE_REQUIRE_ROOT_MOUNT").as_deref() != Ok("1"),
                    "VARTREE_REQUIRE_ROOT_MOUNT=1 but mounting a tmpfs failed: {why}"
                );
                eprintln!("SKIPPED: cannot mount a tmpfs ({why}); ENOSPC not tested");
                None
            }
        }
    }

    /// Free pages.
    fn free(&self) -> u64 {
        let o = Command::new("stat")
            .args(["-f", "-c", "%a %S"])
            .arg(&self.dir)
            .output()
            .unwrap();
        let s = String::from_utf8_lossy(&o.stdout);
        let mut it = s.split_whitespace().map(|x| x.parse::<u64>().unwrap());
        let (blocks, bsize) = (it.next().unwrap(), it.next().unwrap());
        blocks * bsize / PAGE
    }

    /// Leave exactly `pages` free, with the ballast file.
    fn leave_free(&self, pages: u64) {
        let ballast = self.dir.join("ballast");
        let have = fs::metadata(&ballast).map_or(0, |m| m.len() / PAGE);
        let total = have + self.free();
        assert!(total >= pages, "the tmpfs has only {total} pages to give");
        fs::write(&ballast, vec![0xa5u8; ((total - pages) * PAGE) as usize]).unwrap();
        assert_eq!(self.free(), pages, "the ballast leaves {pages} pages free");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            // Something still uses it: detach it at least.
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

fn vt(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vartree"))
        .arg("--root")
        .arg(root)
        .args(args)
        .env_remove("ROOT")
        .env_remove("EPREFIX")
        .env_remove("VARTREE_CRASH_AT")
        .env_remove("VARTREE_SIGNAL_AT")
        .env_remove("VARTREE_CRASH_COUNT")
        .output()
        .unwrap()
}

fn ok(o: &Output, what: &str) {
    assert!(
        o.status.success(),
        "{what}: vartree failed ({:?}): {}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

struct Pkg {
    image: PathBuf,
    info: PathBuf,
}

/// An image (on the disk, not on the tmpfs) and its build-info.
fn pkg(base: &Path, cpv: &str, files: &[(String, String)]) -> Pkg {
    let d = base.join(cpv.replace('/', "_"));
    let image = d.join("image");
    let info = d.join("build-info");
    fs::create_dir_all(&image).unwrap();
    fs::create_dir_all(&info).unwrap();
    let (cat, pf) = cpv.split_once('/').unwrap();
    for (k, v) in [
        ("CATEGORY", cat),
        ("PF", pf),
        ("SLOT", "0"),
        ("EAPI", "8"),
        ("repository", "gentoo"),
    ] {
        fs::write(info.join(k), format!("{v}\n")).unwrap();
    }
    for (path, content) in files {
        let p = image.join(path.trim_start_matches('/'));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        if let Some(t) = content.strip_prefix("->") {
            symlink(t, &p).unwrap();
        } else {
            fs::write(&p, content).unwrap();
        }
    }
    Pkg { image, info }
}

fn merge(root: &Path, p: &Pkg) -> Output {
    let (img, info) = (p.image.display().to_string(), p.info.display().to_string());
    vt(
        root,
        &[
            "merge",
            "--sync",
            "auto",
            "--image",
            &img,
            "--build-info",
            &info,
        ],
    )
}

/// Every path with its type, mode, content or target (VDB included, the
/// `metadata` file's varying stamps aside); the global counter and the VDB
/// lock file left out.
fn state(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let mut names: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        for p in names {
            let rel = p.strip_prefix(base).unwrap().display().to_string();
            if rel == "var/cache/edb/counter" || rel == "var/db/.pkg.portage_lockfile" {
                continue;
            }
            let m = fs::symlink_metadata(&p).unwrap();
            let desc = if m.file_type().is_symlink() {
                format!("sym {}", fs::read_link(&p).unwrap().display())
            } else if m.is_dir() {
                walk(base, &p, out);
                format!("dir {:o}", m.mode())
            } else if p.file_name().unwrap() == "metadata" {
                format!("file {:o} (metadata)", m.mode())
            } else {
                format!(
                    "file {:o} {}",
                    m.mode(),
                    String::from_utf8_lossy(&fs::read(&p).unwrap())
                )
            };
            out.insert(rel, desc);
        }
    }
    walk(root, root, &mut out);
    out
}

fn diff(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> Vec<String> {
    a.iter()
        .filter(|(k, v)| b.get(*k) != Some(v))
        .map(|(k, v)| format!("{k}: {v:.80} vs {:.80}", b.get(k).map_or("-", |s| s)))
        .chain(
            b.keys()
                .filter(|k| !a.contains_key(*k))
                .map(|k| format!("{k}: missing")),
        )
        .take(20)
        .collect()
}

fn leftovers(dir: &Path, out: &mut Vec<String>) {
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.contains(".vartree") || name.contains("-MERGING-") {
            out.push(e.path().display().to_string());
        }
        if e.file_type().unwrap().is_dir() {
            leftovers(&e.path(), out);
        }
    }
}

fn check_json(root: &Path) -> String {
    String::from_utf8_lossy(&vt(root, &["--json", "check"]).stdout).into_owned()
}

/// The root as it was: everything, `check`'s view, no leftovers.
struct Snapshot {
    state: BTreeMap<String, String>,
    check: String,
    counter: Option<String>,
}

fn snapshot(root: &Path) -> Snapshot {
    Snapshot {
        state: state(root),
        check: check_json(root),
        counter: fs::read_to_string(root.join("var/cache/edb/counter")).ok(),
    }
}

fn assert_unchanged(root: &Path, before: &Snapshot, what: &str) {
    let mut left = Vec::new();
    leftovers(root, &mut left);
    assert!(left.is_empty(), "{what}: left behind: {left:?}");
    let now = state(root);
    if now != before.state {
        panic!("{what}: the root changed: {:#?}", diff(&now, &before.state));
    }
    assert_eq!(check_json(root), before.check, "{what}: `check` differs");
    let o = vt(root, &["check"]);
    assert_eq!(
        o.status.code(),
        before_check_code(&before.check),
        "{what}: check"
    );
    // The counter may have been used up (Portage too never reuses a
    // value), never made smaller.
    if let (Some(b), Ok(n)) = (
        &before.counter,
        fs::read_to_string(root.join("var/cache/edb/counter")),
    ) {
        assert!(
            n.trim().parse::<i64>().unwrap() >= b.trim().parse::<i64>().unwrap(),
            "{what}: the counter went back"
        );
    }
}

/// `check` exits 0 when every entry is good.
fn before_check_code(json: &str) -> Option<i32> {
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    let t = &v["totals"];
    Some(if t["checked"] == t["good"] { 0 } else { 1 })
}

/// The error of a merge that ran out of space: exit 2, one message naming
/// the operation and the path, and saying so.
fn assert_enospc(o: &Output, what: &str) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(
        o.status.code(),
        Some(2),
        "{what}: exit status; stderr: {err}"
    );
    assert!(
        err.contains("No space left on device"),
        "{what}: the error says why: {err}"
    );
    assert!(
        err.contains("os error 28"),
        "{what}: the error carries ENOSPC: {err}"
    );
    let line = err
        .lines()
        .find(|l| l.contains("No space left"))
        .unwrap()
        .to_owned();
    assert!(
        line.contains("cannot ") && line.contains('/'),
        "{what}: the error names the operation and the path: {line}"
    );
    line
}

fn files(prefix: &str, n: usize, tag: &str) -> Vec<(String, String)> {
    (0..n)
        .map(|i| (format!("{prefix}/f{i:03}"), format!("{tag} {i}\n")))
        .collect()
}

/// A mounted tmpfs with `ROOT` in it, or `None` to skip.
fn setup(t: &Path, size: &str) -> Option<(Tmpfs, PathBuf)> {
    let m = Tmpfs::mount(&t.join("mnt"), size)?;
    let root = m.dir.join("root");
    fs::create_dir_all(&root).unwrap();
    Some((m, root))
}

#[test]
fn an_upgrade_that_does_not_fit_changes_nothing_until_space_is_freed() {
    let t = tempfile::tempdir().unwrap();
    let Some((m, root)) = setup(t.path(), "4m") else {
        return;
    };
    let pk = t.path().join("pkgs");
    // Installed: a/fill-1 (100 files in /usr/share/fill) and another package.
    let mut v1 = files("/usr/share/fill", 100, "v1");
    v1.push(("/usr/share/fill/link".into(), "->f000".into()));
    v1.push(("/etc/fill.conf".into(), "conf 1\n".into()));
    ok(&merge(&root, &pkg(&pk, "a/fill-1", &v1)), "a/fill-1");
    ok(
        &merge(
            &root,
            &pkg(&pk, "b/other-1", &files("/usr/share/other", 10, "o")),
        ),
        "b/other-1",
    );
    // a/fill-2: every file changed, and a new directory tree with 150 more;
    // the new tree comes first in the image.
    let mut v2 = files("/usr/share/fill", 100, "v2");
    v2.extend(files("/usr/share/fill/aaa-new", 150, "new"));
    v2.push(("/usr/share/fill/link".into(), "->f001".into()));
    v2.push(("/etc/fill.conf".into(), "conf 2\n".into()));
    let p2 = pkg(&pk, "a/fill-2", &v2);
    // Room for about half of it.
    m.leave_free(130);
    let before = snapshot(&root);
    let o = merge(&root, &p2);
    let line = assert_enospc(&o, "upgrade");
    eprintln!("upgrade, 130 pages free: {line}");
    assert_unchanged(&root, &before, "upgrade that does not fit");
    // The same again, to show nothing accumulated.
    let o = merge(&root, &p2);
    assert_enospc(&o, "upgrade, again");
    assert_unchanged(&root, &before, "upgrade that does not fit, again");
    // Free space: the same merge succeeds.
    fs::remove_file(m.dir.join("ballast")).unwrap();
    ok(&merge(&root, &p2), "upgrade after freeing space");
    assert_eq!(
        fs::read_to_string(root.join("usr/share/fill/f042")).unwrap(),
        "v2 42\n"
    );
    assert_eq!(
        fs::read_to_string(root.join("usr/share/fill/aaa-new/f149")).unwrap(),
        "new 149\n"
    );
    assert!(root.join("var/db/pkg/a/fill-2").is_dir());
    assert!(!root.join("var/db/pkg/a/fill-1").exists());
    ok(&vt(&root, &["check"]), "check after the upgrade");
    let mut left = Vec::new();
    leftovers(&root, &mut left);
    assert!(left.is_empty(), "{left:?}");
}

/// The disk fills up while a file is being copied into an existing
/// directory under its temp name. The merge fails as it should, but the
/// temp file (`.vartree.PID.NAME`) stays: `stage` records the staged temp
/// for rollback only after `Stager::create` succeeded, and `create`
/// returns the copy error without removing the file it created. (The
/// journal had the TEMP record, but the failing merge deletes its journal
/// after its in-memory rollback.)
#[test]
fn an_upgrade_that_does_not_fit_in_an_existing_directory_leaves_no_temp_file() {
    let t = tempfile::tempdir().unwrap();
    let Some((m, root)) = setup(t.path(), "4m") else {
        return;
    };
    let pk = t.path().join("pkgs");
    ok(
        &merge(
            &root,
            &pkg(&pk, "a/fill-1", &files("/usr/share/fill", 100, "v1")),
        ),
        "a/fill-1",
    );
    let p2 = pkg(&pk, "a/fill-2", &files("/usr/share/fill", 200, "v2"));
    m.leave_free(60);
    let before = snapshot(&root);
    let o = merge(&root, &p2);
    assert_enospc(&o, "upgrade");
    assert_unchanged(&root, &before, "upgrade that does not fit");
}

#[test]
fn a_fresh_install_that_does_not_fit_changes_nothing() {
    let t = tempfile::tempdir().unwrap();
    let Some((m, root)) = setup(t.path(), "4m") else {
        return;
    };
    let pk = t.path().join("pkgs");
    ok(
        &merge(
            &root,
            &pkg(&pk, "b/other-1", &files("/usr/share/other", 20, "o")),
        ),
        "b/other-1",
    );
    // 300 files in a new tree, 100 pages free.
    let mut f = files("/opt/big/data", 300, "big");
    f.push(("/opt/big/bin/tool".into(), "tool\n".into()));
    let p = pkg(&pk, "a/big-1", &f);
    m.leave_free(100);
    let before = snapshot(&root);
    let o = merge(&root, &p);
    let line = assert_enospc(&o, "fresh install");
    eprintln!("fresh install, 100 pages free: {line}");
    assert_unchanged(&root, &before, "fresh install that does not fit");
    fs::remove_file(m.dir.join("ballast")).unwrap();
    ok(&merge(&root, &p), "fresh install after freeing space");
    assert!(root.join("opt/big/data/f299").exists());
    ok(&vt(&root, &["check"]), "check");
}

/// Sweep the free space page by page across the end of a merge: the disk
/// fills up at every page the merge still needs after its files (the
/// counter, the VDB entry, the new config memory, staged before the commit
/// point). Every failure leaves the old state, none happens after the
/// commit point. An upgrade: a/thing-0 is installed and its config file
/// edited.
#[test]
fn enospc_at_every_page_of_the_end_of_a_merge() {
    sweep(false);
}

/// As above, but a fresh install of the first package of its category: a
/// merge that runs out of space while writing `a/-MERGING-thing-1` removes
/// that directory but leaves the category directory `var/db/pkg/a` it
/// created (empty) behind, so the root is not exactly as before. (`recover`
/// rolling back a killed merge does the same.)
#[test]
fn enospc_in_the_vdb_entry_of_a_new_category_leaves_nothing() {
    sweep(true);
}

fn sweep(new_category: bool) {
    let t = tempfile::tempdir().unwrap();
    let Some((m, root)) = setup(t.path(), "4m") else {
        return;
    };
    let pk = t.path().join("pkgs");
    ok(
        &merge(
            &root,
            &pkg(&pk, "b/other-1", &files("/usr/share/other", 20, "o")),
        ),
        "b/other-1",
    );
    if !new_category {
        let mut f = files("/opt/thing/old", 5, "old");
        f.push(("/etc/thing/thing.conf".into(), "conf 0\n".into()));
        ok(&merge(&root, &pkg(&pk, "a/thing-0", &f)), "a/thing-0");
        fs::write(root.join("etc/thing/thing.conf"), "conf 0, edited\n").unwrap();
    }
    // 40 files (40 pages) in a new tree, and a CONTENTS of a few pages.
    let mut f = files("/opt/thing/data", 40, "thing");
    for i in 0..40 {
        f.push((
            format!("/opt/thing/links/l{i:03}"),
            format!("->../data/f{i:03}"),
        ));
    }
    // A config file: with the edited one installed, the update goes to
    // ._cfg0000_thing.conf and the config memory remembers it (staged
    // before the commit point, renamed into place after it).
    f.push(("/etc/thing/thing.conf".into(), "conf 1\n".into()));
    let p = pkg(&pk, "a/thing-1", &f);
    let before = snapshot(&root);
    let mut failures: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut fitted = None;
    for free in 30..120 {
        m.leave_free(free);
        let o = merge(&root, &p);
        if o.status.success() {
            fitted = Some(free);
            break;
        }
        let what = format!("{free} pages free");
        let line = assert_enospc(&o, &what);
        // Everything that can fill the disk happens before the commit
        // point, the config memory included: a failure never stops a merge
        // half-way through its commit.
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !err.contains("was committed but could not be completed"),
            "{what}: ENOSPC after the commit point: {err}"
        );
        assert!(
            !root.join("var/db/.vartree").exists(),
            "{what}: a journal was left: {err}"
        );
        assert_unchanged(&root, &before, &format!("{what} ({line})"));
        // Group by the operation and the kind of path.
        let path_kind = if line.contains("var/lib/portage") {
            "config memory"
        } else if line.contains("-MERGING-") {
            "VDB entry (-MERGING-)"
        } else if line.contains("var/db/.vartree") {
            "journal"
        } else if line.contains("var/cache/edb") {
            "counter"
        } else if line.contains("var/db/pkg") {
            "VDB"
        } else {
            "files"
        };
        let op = line
            .split("cannot ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .unwrap_or("?");
        failures
            .entry(format!("{path_kind}: cannot {op}"))
            .or_default()
            .push(free);
    }
    let fitted = fitted.expect("the merge fits in 120 pages");
    if !new_category {
        assert!(root.join("etc/thing/._cfg0000_thing.conf").exists());
        assert!(!root.join("var/db/pkg/a/thing-0").exists());
        assert!(
            failures.keys().any(|k| k.starts_with("config memory")),
            "ENOSPC never hit the config memory: {failures:?}"
        );
        // The config memory took the update (remembered), and nothing of a
        // staged memory is left.
        let confmem = fs::read_to_string(root.join("var/lib/portage/config")).unwrap();
        assert!(confmem.starts_with("/etc/thing/thing.conf "), "{confmem}");
        let names: Vec<_> = fs::read_dir(root.join("var/lib/portage"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["config"]);
    }
    eprintln!("ENOSPC sweep: fits from {fitted} pages free; failures by place: {failures:#?}");
    assert!(root.join("var/db/pkg/a/thing-1/CONTENTS").exists());
    assert!(root.join("opt/thing/data/f039").exists());
    // `check` finds only the administrator's edit (CONTENTS records the
    // update, merged as ._cfg0000_thing.conf).
    let o = vt(&root, &["check"]);
    let out = String::from_utf8_lossy(&o.stdout);
    if new_category {
        ok(&o, "check");
    } else {
        assert!(
            out.contains("MD5-DIGEST: /etc/thing/thing.conf") && out.contains("1 with problems"),
            "check: {out}"
        );
    }
    let mut left = Vec::new();
    leftovers(&root, &mut left);
    assert!(left.is_empty(), "{left:?}");
    // The disk filled up while the VDB entry was being written, at least
    // once, and also while staging the files.
    let places: BTreeSet<&str> = failures
        .keys()
        .map(|k| k.split(':').next().unwrap())
        .collect();
    assert!(
        places.contains("VDB entry (-MERGING-)"),
        "ENOSPC never hit the VDB entry: {failures:?}"
    );
    assert!(places.contains("files"), "{failures:?}");
}

/// A binary package whose image does not fit: the disk fills up while the
/// image is unpacked (by the parallel file writers) at one of several
/// amounts of free space. Every time: a clear error, the root as before, no
/// staging directory left; after space is freed the same package installs.
#[test]
fn a_binary_package_that_does_not_fit_changes_nothing() {
    let t = tempfile::tempdir().unwrap();
    let Some((m, root)) = setup(t.path(), "8m") else {
        return;
    };
    let pk = t.path().join("pkgs");
    ok(
        &merge(
            &root,
            &pkg(&pk, "b/other-1", &files("/usr/share/other", 10, "o")),
        ),
        "b/other-1",
    );
    // 400 files of 8 KiB in 8 directories, well compressed in the package.
    let big: Vec<(String, String)> = (0..400)
        .map(|i| {
            (
                format!("/usr/share/big/d{}/f{i:03}", i % 8),
                format!("{i:08}").repeat(1024),
            )
        })
        .collect();
    let p = pkg(&pk, "a/big-1", &big);
    let pkgdir = t.path().join("binpkgs");
    let (img, info) = (p.image.display().to_string(), p.info.display().to_string());
    let o = Command::new(env!("CARGO_BIN_EXE_vartree"))
        .args([
            "package",
            "--image",
            &img,
            "--build-info",
            &info,
            "--pkgdir",
        ])
        .arg(&pkgdir)
        .output()
        .unwrap();
    ok(&o, "package a/big-1");
    let file = fs::read_dir(pkgdir.join("a/big"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".gpkg.tar"))
        .expect("the package file");
    let file = file.display().to_string();
    let before = snapshot(&root);
    for pages in [0, 40, 200, 500] {
        m.leave_free(pages);
        let o = vt(&root, &["install", &file]);
        let what = format!("install with {pages} pages free");
        assert_enospc(&o, &what);
        assert_unchanged(&root, &before, &what);
    }
    let _ = fs::remove_file(m.dir.join("ballast"));
    ok(
        &vt(&root, &["install", &file]),
        "install after freeing space",
    );
    assert_eq!(
        fs::read_to_string(root.join("usr/share/big/d3/f011")).unwrap(),
        format!("{:08}", 11).repeat(1024)
    );
}

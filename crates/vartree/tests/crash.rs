//! Crash-point harness: abort a representative upgrade transaction at every
//! mutating filesystem operation, run `vartree recover`, and check that the
//! root holds exactly the old state or exactly the new state, with the VDB
//! matching it.
//!
//! Needs a binary built with the `crashpoints` feature
//! (`cargo test --all-features`, as scripts/test.sh runs it).
#![cfg(feature = "crashpoints")]
#![allow(clippy::print_stderr)]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::roots::{check_json, copy_tree, root_state as state, vartree as vt};

fn ok(o: &Output) {
    common::roots::ok(o, "vartree");
}

struct Pkg {
    image: PathBuf,
    info: PathBuf,
}

fn pkg(base: &Path, cpv: &str, files: &[(&str, &str)], extra: &[(&str, &str)]) -> Pkg {
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
    ]
    .iter()
    .chain(extra)
    {
        fs::write(info.join(k), format!("{v}\n")).unwrap();
    }
    for (path, content) in files {
        let p = image.join(path.trim_start_matches('/'));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        if let Some(t) = content.strip_prefix("->") {
            symlink(t, &p).unwrap();
        } else if path.ends_with('/') {
            fs::create_dir_all(&p).unwrap();
        } else {
            fs::write(&p, content).unwrap();
        }
    }
    Pkg { image, info }
}

fn merge_args(p: &Pkg) -> Vec<String> {
    vec![
        "merge".into(),
        "--sync".into(),
        "never".into(),
        "--image".into(),
        p.image.display().to_string(),
        "--build-info".into(),
        p.info.display().to_string(),
        "--replace".into(),
        "b/old".into(),
    ]
}

/// Invariants after recovery: old or new state, no leftovers, check as in
/// that state, unique COUNTERs. Returns "old" or "new".
fn verify(
    root: &Path,
    old: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
    check_old: &str,
    check_new: &str,
    what: &str,
) -> &'static str {
    let now = state(root);
    common::roots::assert_no_leftovers(root, what);
    let which = if &now == old {
        "old"
    } else if &now == new {
        "new"
    } else {
        let diff_old: Vec<_> = now
            .iter()
            .filter(|(k, v)| old.get(*k) != Some(v))
            .map(|(k, _)| k)
            .chain(old.keys().filter(|k| !now.contains_key(*k)))
            .collect();
        let diff_new: Vec<_> = now
            .iter()
            .filter(|(k, v)| new.get(*k) != Some(v))
            .map(|(k, _)| k)
            .chain(new.keys().filter(|k| !now.contains_key(*k)))
            .collect();
        panic!("{what}: neither the old nor the new state.\nvs old: {diff_old:?}\nvs new: {diff_new:?}");
    };
    let chk = check_json(root);
    let want = if which == "old" { check_old } else { check_new };
    assert_eq!(
        chk, want,
        "{what}: `vartree check` differs from the {which} state's"
    );
    let mut counters = Vec::new();
    for cat in fs::read_dir(root.join("var/db/pkg")).unwrap() {
        let cat = cat.unwrap().path();
        if !cat.is_dir() {
            continue;
        }
        for p in fs::read_dir(&cat).unwrap() {
            counters.push(fs::read_to_string(p.unwrap().path().join("COUNTER")).unwrap());
        }
    }
    let n = counters.len();
    counters.sort();
    counters.dedup();
    assert_eq!(counters.len(), n, "{what}: COUNTERs are not unique");
    which
}

#[test]
fn crash_at_every_step_of_an_upgrade_with_handover() {
    let t = tempfile::tempdir().unwrap();
    let base = t.path().join("base");
    fs::create_dir_all(base.join("usr/lib")).unwrap();
    symlink("usr/lib", base.join("lib")).unwrap();
    let pk = t.path().join("pkgs");
    let v1 = pkg(
        &pk,
        "a/foo-1.0",
        &[
            ("/usr/bin/foo", "foo 1\n"),
            ("/usr/bin/same", "same\n"),
            ("/usr/lib/libfoo.so.1", "lib 1\n"),
            ("/usr/lib/libfoo.so", "->libfoo.so.1"),
            ("/usr/share/foo/was-file", "i was a file\n"),
            ("/usr/share/foo/was-dir/inner", "inner\n"),
            ("/usr/share/foo/old-only", "old\n"),
            ("/etc/foo/foo.conf", "conf 1\n"),
            ("/etc/foo/other.conf", "other 1\n"),
        ],
        &[],
    );
    ok(&vt(
        &base,
        &[
            "merge",
            "--sync",
            "never",
            "--image",
            &v1.image.display().to_string(),
            "--build-info",
            &v1.info.display().to_string(),
        ],
        &[],
    ));
    let old_pkg = pkg(
        &pk,
        "b/old-1",
        &[
            ("/usr/bin/shared", "old shared\n"),
            ("/usr/share/old/doc", "doc\n"),
        ],
        &[],
    );
    ok(&vt(
        &base,
        &[
            "merge",
            "--sync",
            "never",
            "--image",
            &old_pkg.image.display().to_string(),
            "--build-info",
            &old_pkg.info.display().to_string(),
        ],
        &[],
    ));
    // The administrator edits a config file.
    fs::write(base.join("etc/foo/foo.conf"), "conf 1, edited\n").unwrap();
    let v2 = pkg(
        &pk,
        "a/foo-1.1",
        &[
            ("/usr/bin/foo", "foo 2\n"),
            ("/usr/bin/same", "same\n"),
            ("/usr/bin/shared", "new shared\n"),
            ("/lib/libfoo.so.2", "lib 2\n"),
            ("/usr/lib/libfoo.so", "->libfoo.so.2"),
            ("/usr/share/foo/was-file/now-dir", "now a dir\n"),
            ("/usr/share/foo/was-dir", "now a file\n"),
            ("/usr/share/foo/new-only", "new\n"),
            ("/etc/foo/foo.conf", "conf 2\n"),
            ("/etc/foo/other.conf", "other 2\n"),
        ],
        &[("RDEPEND", "!b/old")],
    );
    let args = merge_args(&v2);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();

    // The old state, and the new state from an uninterrupted run.
    let old = state(&base);
    let check_old = check_json(&base);
    let reference = t.path().join("reference");
    copy_tree(&base, &reference);
    let count_file = t.path().join("count");
    let img_copy = t.path().join("img-copy");
    copy_tree(&v2.image, &img_copy);
    ok(&vt(
        &reference,
        &args,
        &[("VARTREE_CRASH_COUNT", count_file.display().to_string())],
    ));
    let new = state(&reference);
    let check_new = check_json(&reference);
    assert_ne!(old, new);
    assert!(
        new.contains_key("etc/foo/._cfg0000_foo.conf"),
        "config protection is exercised"
    );
    assert!(
        new.contains_key("usr/share/foo/was-file.backup.0000"),
        "a directory/file change is exercised"
    );
    let steps: u64 = fs::read_to_string(&count_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        steps > 20,
        "only {steps} crash points: is the crashpoints feature on?"
    );

    assert!(
        !old.contains_key("var/lib/portage/config")
            && new
                .get("var/lib/portage/config")
                .is_some_and(|c| c.contains("/etc/foo/foo.conf ")),
        "the config memory is exercised"
    );

    let (mut olds, mut news) = (0, 0);
    let mut confmem_races = 0;
    let mut kept = Vec::new();
    for n in 1..=steps {
        let root = t.path().join(format!("run-{n}"));
        copy_tree(&base, &root);
        let o = vt(
            &root,
            &args,
            &[
                ("VARTREE_CRASH_AT", n.to_string()),
                ("VARTREE_CRASH_COUNT", count_file.display().to_string()),
            ],
        );
        assert!(
            !o.status.success(),
            "step {n}: the run was not interrupted (it passed {} crash points; the reference run {steps}): {}",
            fs::read_to_string(&count_file).unwrap_or_default(),
            String::from_utf8_lossy(&o.stderr)
        );
        // Stopped after the commit point with the new config memory staged
        // but not yet in place: if Portage changes the memory before
        // `recover` runs, recover applies the journaled updates to what is
        // there instead of renaming a stale copy over it (on a copy of
        // this root).
        if committed_with_staged_confmem(&root) {
            let other = t.path().join(format!("run-{n}-portage"));
            copy_tree(&root, &other);
            let cm = other.join("var/lib/portage/config");
            let mut data = fs::read(&cm).unwrap_or_default();
            data.extend_from_slice(
                b"/etc/portage-merged/x.conf 0123456789abcdef0123456789abcdef\n",
            );
            fs::create_dir_all(cm.parent().unwrap()).unwrap();
            fs::write(&cm, &data).unwrap();
            ok(&vt(&other, &["recover"], &[]));
            let after = fs::read_to_string(&cm).unwrap();
            assert!(
                after.contains("/etc/portage-merged/x.conf ")
                    && after.contains(&format!("/etc/foo/foo.conf {}\n", md5_of(b"conf 2\n"))),
                "step {n}: recover lost an entry of the config memory: {after}"
            );
            assert!(!fs::read_dir(cm.parent().unwrap()).unwrap().any(|e| e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".vartree")));
            confmem_races += 1;
            fs::remove_dir_all(&other).unwrap();
        }
        // Recovery itself is interrupted too, at a few of its steps, then re-run.
        if n % 7 == 0 {
            for m in 1..=3u64 {
                let _ = vt(&root, &["recover"], &[("VARTREE_CRASH_AT", m.to_string())]);
            }
        }
        ok(&vt(&root, &["recover"], &[]));
        match verify(
            &root,
            &old,
            &new,
            &check_old,
            &check_new,
            &format!("crash at step {n}"),
        ) {
            "old" => olds += 1,
            _ => news += 1,
        }
        // Portage must read the recovered VDB without complaint: checked on
        // a sample of the roots (one Portage process each).
        if n % 4 == 0 || n == steps {
            kept.push(root);
        } else {
            fs::remove_dir_all(&root).unwrap();
        }
        // The image is consumed by nothing (copy mode), but keep it whole.
        assert!(v2.image.join("usr/bin/foo").exists());
    }
    eprintln!(
        "crash harness: {steps} steps; {olds} recovered to the old state, {news} to the new; \
         {confmem_races} stopped with the config memory staged and committed"
    );
    assert!(olds > 0 && news > 0, "both outcomes must occur");
    assert!(
        confmem_races > 0,
        "a crash between the commit point and the config memory's rename"
    );
    portage_reads_cleanly(&kept);
}

/// A journal with `COMMIT` whose staged config memory is still there.
fn committed_with_staged_confmem(root: &Path) -> bool {
    let Ok(journals) = fs::read_dir(root.join("var/db/.vartree")) else {
        return false;
    };
    let committed = journals
        .filter_map(Result::ok)
        .any(|j| fs::read_to_string(j.path()).is_ok_and(|s| s.lines().any(|l| l == "COMMIT")));
    committed
        && fs::read_dir(root.join("var/lib/portage")).is_ok_and(|d| {
            d.filter_map(Result::ok)
                .any(|e| e.file_name().to_string_lossy().contains(".vartree"))
        })
}

fn md5_of(data: &[u8]) -> String {
    let o = Command::new("md5sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            std::io::Write::write_all(c.stdin.as_mut().unwrap(), data)?;
            c.wait_with_output()
        })
        .unwrap();
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

fn portage_python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("VARTREE_PORTAGE_PYTHON") {
        return Some(p.into());
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    p.exists().then_some(p)
}

/// Portage's own vardbapi reads each root without a warning.
fn portage_reads_cleanly(roots: &[PathBuf]) {
    let Some(py) = portage_python() else {
        assert!(
            std::env::var("VARTREE_REQUIRE_PORTAGE").as_deref() != Ok("1"),
            "VARTREE_REQUIRE_PORTAGE=1 but no Python with Portage"
        );
        eprintln!("SKIPPED: no Python with Portage; the VDBs were not read by Portage");
        return;
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/portage/vdb_sanity.py");
    let o = Command::new(py).arg(script).args(roots).output().unwrap();
    assert!(
        o.status.success(),
        "Portage complained about a recovered VDB:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| l.ends_with(": ok"))
            .count(),
        roots.len()
    );
}

#[test]
fn sigint_and_sigterm_roll_back_before_the_commit_point_and_finish_after_it() {
    let t = tempfile::tempdir().unwrap();
    let base = t.path().join("base");
    fs::create_dir_all(&base).unwrap();
    let pk = t.path().join("pkgs");
    let v1 = pkg(
        &pk,
        "a/sig-1",
        &[("/usr/bin/sig", "1\n"), ("/usr/share/sig/a", "a\n")],
        &[],
    );
    ok(&vt(
        &base,
        &[
            "merge",
            "--sync",
            "never",
            "--image",
            &v1.image.display().to_string(),
            "--build-info",
            &v1.info.display().to_string(),
        ],
        &[],
    ));
    let v2 = pkg(
        &pk,
        "a/sig-2",
        &[
            ("/usr/bin/sig", "2\n"),
            ("/usr/share/sig/b", "b\n"),
            ("/usr/share/new/c", "c\n"),
        ],
        &[],
    );
    let args = [
        "merge",
        "--sync",
        "never",
        "--image",
        &v2.image.display().to_string(),
        "--build-info",
        &v2.info.display().to_string(),
    ];
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let old = state(&base);
    let reference = t.path().join("reference");
    copy_tree(&base, &reference);
    let count_file = t.path().join("count");
    ok(&vt(
        &reference,
        &args,
        &[("VARTREE_CRASH_COUNT", count_file.display().to_string())],
    ));
    let new = state(&reference);
    let steps: u64 = fs::read_to_string(&count_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let (mut rolled_back, mut finished) = (0, 0);
    for (sig, code) in [(2, 130), (15, 143)] {
        for n in 1..=steps {
            let root = t.path().join(format!("sig-{sig}-{n}"));
            copy_tree(&base, &root);
            let o = vt(&root, &args, &[("VARTREE_SIGNAL_AT", format!("{n}:{sig}"))]);
            assert_eq!(
                o.status.code(),
                Some(code),
                "signal {sig} at step {n}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            // No recover: the process itself left a consistent root.
            let now = state(&root);
            for k in now.keys() {
                assert!(
                    !k.contains(".vartree"),
                    "signal {sig} at step {n}: left {k}"
                );
                assert!(
                    !k.contains("-MERGING-"),
                    "signal {sig} at step {n}: left {k}"
                );
            }
            if now == old {
                rolled_back += 1;
                assert!(String::from_utf8_lossy(&o.stderr).contains("nothing was merged"));
            } else if now == new {
                finished += 1;
                assert!(String::from_utf8_lossy(&o.stderr).contains("completed first"));
            } else {
                panic!("signal {sig} at step {n}: neither old nor new state");
            }
            fs::remove_dir_all(&root).unwrap();
        }
    }
    eprintln!("signals: {steps} steps x 2 signals; {rolled_back} rolled back, {finished} finished");
    assert!(rolled_back > 0 && finished > 0);
}

/// A standalone unmerge of the only package in its category, aborted at
/// every crash point (file removals, the entry's removal, the emptied
/// category's removal), then recovered: always the new state, the category
/// directory gone with the entry (an unmerge is rolled forward once its
/// journal is committed).
#[test]
fn crash_at_every_step_of_an_unmerge_emptying_its_category() {
    let t = tempfile::tempdir().unwrap();
    let base = t.path().join("base");
    fs::create_dir_all(base.join("usr/lib")).unwrap();
    symlink("usr/lib", base.join("lib")).unwrap();
    let pk = t.path().join("pkgs");
    let solo = pkg(
        &pk,
        "solo/solo-1",
        &[
            ("/usr/bin/solo", "solo\n"),
            ("/usr/share/solo/d00/a", "a\n"),
            ("/usr/share/solo/d00/b", "b\n"),
            ("/usr/share/solo/link", "->d00"),
            ("/usr/share/solo/empty/", ""),
            ("/lib/libsolo.so.1", "lib\n"),
            ("/usr/lib/libsolo.so", "->libsolo.so.1"),
            ("/etc/solo/edited.conf", "conf\n"),
            ("/etc/solo/plain.conf", "plain\n"),
        ],
        &[],
    );
    let keep = pkg(
        &pk,
        "b/keep-1",
        &[("/usr/share/solo/d00/other", "other\n")],
        &[],
    );
    for p in [&solo, &keep] {
        let mut a = merge_args(p);
        a.truncate(a.len() - 2);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        ok(&vt(&base, &a, &[]));
    }
    fs::write(base.join("etc/solo/edited.conf"), "conf, edited\n").unwrap();
    // The config memory remembers one of its files (forgotten with it, the
    // memory rewritten) and a file of nobody's (kept).
    fs::create_dir_all(base.join("var/lib/portage")).unwrap();
    fs::write(
        base.join("var/lib/portage/config"),
        format!(
            "/etc/solo/plain.conf {}\n/etc/nobodys.conf {}\n",
            md5_of(b"plain\n"),
            md5_of(b"x\n")
        ),
    )
    .unwrap();
    let args = ["unmerge", "solo/solo"];
    let old = state(&base);
    let check_old = check_json(&base);
    let reference = t.path().join("reference");
    copy_tree(&base, &reference);
    let count_file = t.path().join("count");
    ok(&vt(
        &reference,
        &args,
        &[("VARTREE_CRASH_COUNT", count_file.display().to_string())],
    ));
    let new = state(&reference);
    let check_new = check_json(&reference);
    assert!(
        old.contains_key("var/db/pkg/solo") && !new.contains_key("var/db/pkg/solo"),
        "the category goes with its only package"
    );
    assert!(
        new.get("etc/solo/edited.conf")
            .is_some_and(|v| v.ends_with(" conf, edited\n")),
        "the edited config file stays"
    );
    assert!(
        new.get("var/lib/portage/config").is_some_and(|v| v
            .ends_with(&format!(" /etc/nobodys.conf {}\n", md5_of(b"x\n")))
            && !v.contains("plain.conf")),
        "the config memory forgets the package's files: {:?}",
        new.get("var/lib/portage/config")
    );
    let steps: u64 = fs::read_to_string(&count_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        steps > 10,
        "only {steps} crash points: is the crashpoints feature on?"
    );
    let mut kept = Vec::new();
    let mut news = 0u64;
    for n in 1..=steps {
        let root = t.path().join(format!("run-{n}"));
        copy_tree(&base, &root);
        let o = vt(&root, &args, &[("VARTREE_CRASH_AT", n.to_string())]);
        assert!(!o.status.success(), "step {n}: the run was not interrupted");
        let committed = journal_committed(&root);
        if n % 5 == 0 {
            let _ = vt(&root, &["recover"], &[("VARTREE_CRASH_AT", "2".into())]);
        }
        ok(&vt(&root, &["recover"], &[]));
        let which = verify(
            &root,
            &old,
            &new,
            &check_old,
            &check_new,
            &format!("unmerge, crash at step {n}"),
        );
        // The journal is committed before the first removal: only a crash
        // before that (while the journal is written) leaves the old state.
        assert_eq!(
            which,
            if committed { "new" } else { "old" },
            "step {n}: committed: {committed}"
        );
        if committed {
            news += 1;
        }
        if n % 4 == 0 || n == steps {
            kept.push(root);
        } else {
            fs::remove_dir_all(&root).unwrap();
        }
    }
    eprintln!("unmerge crash harness: {steps} steps, {news} after the commit point");
    assert!(
        news * 4 > steps * 3,
        "most steps are after the commit point"
    );
    portage_reads_cleanly(&kept);
}

/// Does a journal under `var/db/.vartree` hold its commit record?
fn journal_committed(root: &Path) -> bool {
    let Ok(dir) = fs::read_dir(root.join("var/db/.vartree")) else {
        return false;
    };
    dir.filter_map(Result::ok)
        .any(|e| fs::read_to_string(e.path()).is_ok_and(|s| s.lines().any(|l| l == "COMMIT")))
}

/// A `--move-image` upgrade aborted at every crash point: new directories
/// moved out of the image whole (one of them inside a directory that is
/// created entry by entry because it holds an INSTALL_MASKed file), files
/// moved one by one into existing directories. After `recover` the root is
/// old or new, and when old the image is whole again.
#[test]
fn crash_at_every_step_of_a_move_image_upgrade() {
    let t = tempfile::tempdir().unwrap();
    let base = t.path().join("base");
    fs::create_dir_all(base.join("usr/lib")).unwrap();
    let pk = t.path().join("pkgs");
    let v1 = pkg(
        &pk,
        "a/mv-1",
        &[("/usr/bin/mv", "mv 1\n"), ("/usr/share/mv/old", "old\n")],
        &[],
    );
    let mut a = merge_args(&v1);
    a.truncate(a.len() - 2);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    ok(&vt(&base, &a, &[]));
    let v2 = pkg(
        &pk,
        "a/mv-2",
        &[
            ("/usr/bin/mv", "mv 2\n"),
            ("/usr/share/mv/new", "new\n"),
            ("/usr/share/whole/a", "a\n"),
            ("/usr/share/whole/sub/b", "b\n"),
            ("/usr/share/whole/link", "->a"),
            ("/usr/share/mixed/keep", "keep\n"),
            ("/usr/share/mixed/drop.la", "la\n"),
            ("/usr/share/mixed/inner/x", "x\n"),
            ("/usr/share/mixed/inner/deep/y", "y\n"),
        ],
        &[("INSTALL_MASK", "*.la")],
    );
    let image_orig = t.path().join("image-orig");
    copy_tree(&v2.image, &image_orig);
    let image_state = state(&image_orig);
    let mut args = merge_args(&v2);
    args.truncate(args.len() - 2);
    args.push("--move-image".into());
    // The image is consumed: every run gets a fresh copy at `img`.
    let img = t.path().join("img");
    let pos = args.iter().position(|x| x == "--image").unwrap() + 1;
    args[pos] = img.display().to_string();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();

    let old = state(&base);
    let check_old = check_json(&base);
    let reference = t.path().join("reference");
    copy_tree(&base, &reference);
    copy_tree(&image_orig, &img);
    let count_file = t.path().join("count");
    ok(&vt(
        &reference,
        &args,
        &[("VARTREE_CRASH_COUNT", count_file.display().to_string())],
    ));
    assert!(
        !img.join("usr/share/whole").exists() && !img.join("usr/share/mixed/inner").exists(),
        "whole directories were moved"
    );
    assert!(img.join("usr/share/mixed/drop.la").exists());
    fs::remove_dir_all(&img).unwrap();
    let new = state(&reference);
    let check_new = check_json(&reference);
    let steps: u64 = fs::read_to_string(&count_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(steps > 10, "only {steps} crash points");
    let (mut olds, mut news, mut unproven) = (0, 0, 0);
    for n in 1..=steps {
        let root = t.path().join(format!("run-{n}"));
        copy_tree(&base, &root);
        copy_tree(&image_orig, &img);
        let o = vt(&root, &args, &[("VARTREE_CRASH_AT", n.to_string())]);
        assert!(!o.status.success(), "step {n}: the run was not interrupted");
        // Stopped before the commit point with a directory moved out of
        // the image: if the image loses its marker before `recover` runs
        // (Portage's clean phase removed the build directory), nothing can
        // be moved back, and the root is still rolled back to the old
        // state, the moved directory removed (on a copy of this root).
        if !journal_committed(&root) && !img.join("usr/share/whole").exists() {
            let other = t.path().join(format!("run-{n}-unproven"));
            copy_tree(&root, &other);
            let saved = t.path().join("img-saved");
            copy_tree(&img, &saved);
            for e in fs::read_dir(&img).unwrap() {
                let e = e.unwrap();
                if e.file_name()
                    .to_string_lossy()
                    .starts_with(".vartree-image-")
                {
                    fs::remove_file(e.path()).unwrap();
                }
            }
            ok(&vt(&other, &["recover"], &[]));
            let now = state(&other);
            for k in now.keys() {
                assert!(
                    !k.contains(".vartree"),
                    "step {n}, unproven image: left {k}"
                );
            }
            let mut want = old.clone();
            let mut got = now;
            // The files that were in the moved directory are gone with it.
            want.retain(|k, _| !k.starts_with("var/db/.vartree"));
            got.retain(|k, _| !k.starts_with("var/db/.vartree"));
            assert_eq!(got, want, "step {n}: unproven image, not rolled back");
            unproven += 1;
            fs::remove_dir_all(&other).unwrap();
            fs::remove_dir_all(&img).unwrap();
            fs::rename(&saved, &img).unwrap();
        }
        if n % 6 == 0 {
            let _ = vt(&root, &["recover"], &[("VARTREE_CRASH_AT", "1".into())]);
        }
        ok(&vt(&root, &["recover"], &[]));
        let what = format!("move-image, crash at step {n}");
        // No marker (not even an empty one) is left in the image.
        common::roots::assert_no_leftovers(&img, &what);
        match verify(&root, &old, &new, &check_old, &check_new, &what) {
            "old" => {
                olds += 1;
                assert_eq!(
                    state(&img),
                    image_state,
                    "{what}: the image is not whole again"
                );
            }
            _ => news += 1,
        }
        fs::remove_dir_all(&img).unwrap();
        fs::remove_dir_all(&root).unwrap();
    }
    eprintln!(
        "move-image crash harness: {steps} steps; {olds} old, {news} new; {unproven} rolled back without the image's marker"
    );
    assert!(olds > 0 && news > 0, "both outcomes must occur");
    assert!(unproven > 0, "a crash after a directory was moved whole");
}

/// A new directory whose place is taken between the commit point and its
/// rename (a Portage merge run after a crash and before `recover`):
/// `recover` merges the package's files into the directory that is there.
/// A file of the package replaces the one in the way; the other files stay;
/// a directory where the package has a file stays and the file stays out.
#[test]
fn recover_merges_a_new_directory_into_one_that_appeared_meanwhile() {
    let t = tempfile::tempdir().unwrap();
    let base = t.path().join("base");
    fs::create_dir_all(base.join("usr/share")).unwrap();
    let pk = t.path().join("pkgs");
    let p = pkg(
        &pk,
        "a/new-1",
        &[
            ("/usr/share/newpkg/a", "a\n"),
            ("/usr/share/newpkg/b", "b, the package's\n"),
            ("/usr/share/newpkg/c", "c\n"),
            ("/usr/share/newpkg/sub/d", "d\n"),
        ],
        &[],
    );
    let mut args = merge_args(&p);
    args.truncate(args.len() - 2);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let count = t.path().join("count");
    let reference = t.path().join("reference");
    copy_tree(&base, &reference);
    ok(&vt(
        &reference,
        &args,
        &[("VARTREE_CRASH_COUNT", count.display().to_string())],
    ));
    let steps = common::roots::read_count(&count);
    // The directory that appears is a real one, or a symlink to one
    // elsewhere in ROOT (then the files go there, through it).
    for through_symlink in [false, true] {
        let mut found = false;
        for n in 1..=steps {
            let root = t.path().join(format!("run-{n}-{through_symlink}"));
            copy_tree(&base, &root);
            let _ = vt(&root, &args, &[("VARTREE_CRASH_AT", n.to_string())]);
            let link = root.join("usr/share/newpkg");
            if !journal_committed(&root) || link.exists() {
                fs::remove_dir_all(&root).unwrap();
                continue;
            }
            // Committed, the new directory not renamed into place yet: another
            // package's merge makes it.
            let dir = if through_symlink {
                symlink("elsewhere", &link).unwrap();
                root.join("usr/share/elsewhere")
            } else {
                link.clone()
            };
            fs::create_dir_all(dir.join("sub")).unwrap();
            fs::write(dir.join("b"), "b, somebody else's\n").unwrap();
            fs::create_dir(dir.join("c")).unwrap();
            fs::write(dir.join("c/theirs"), "theirs\n").unwrap();
            fs::write(dir.join("sub/e"), "e\n").unwrap();
            fs::write(dir.join("other"), "other\n").unwrap();
            let o = vt(&root, &["-v", "recover"], &[]);
            ok(&o);
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(err.contains("appeared meanwhile"), "{err}");
            let read = |p: &str| fs::read_to_string(dir.join(p)).unwrap();
            assert_eq!(read("a"), "a\n");
            assert_eq!(read("b"), "b, the package's\n");
            assert_eq!(read("c/theirs"), "theirs\n");
            assert_eq!(read("sub/d"), "d\n");
            assert_eq!(read("sub/e"), "e\n");
            assert_eq!(read("other"), "other\n");
            assert!(
                err.contains("/usr/share/newpkg/b was there already"),
                "{err}"
            );
            assert_eq!(
                fs::symlink_metadata(&link)
                    .unwrap()
                    .file_type()
                    .is_symlink(),
                through_symlink
            );
            common::roots::assert_no_leftovers(&root, &format!("step {n}"));
            assert!(root.join("var/db/pkg/a/new-1").is_dir());
            found = true;
            break;
        }
        assert!(found, "no crash point between the commit and the rename");
    }
}

//! `vartree install` aborted at every one of its crash points, then
//! `vartree recover`, for binary packages with every kind of content
//! (regular, empty and large files, hard links, symlinks, a FIFO, an empty
//! directory, a set-uid file, a non-UTF-8 name, extended attributes, config
//! files):
//!
//! - into a root that has nothing at all yet;
//! - over an installed version whose files change type, content, mode and
//!   link count, with an edited config file;
//! - two packages in one command, ordered by their dependency (one commit
//!   per package);
//! - and the same content merged from image directories with `merge`, in
//!   copy mode and with `--move-image`.
//!
//! After `recover` the root must be one of the states an uninterrupted run
//! passes through (up to the empty state directories a transaction creates
//! before it starts, see `common::roots::STATE_DIRS`), with nothing of
//! vartree's left, `vartree check` as in
//! that state and unique COUNTERs. Every Nth run, `recover` itself is
//! aborted first. Needs the `crashpoints` feature.

#![allow(clippy::print_stderr)]

mod common;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use common::roots::{
    assert_no_leftovers, check_json, copy_tree, counters, ok, read_count, root_state, state_diff,
    vartree, without_empty_state_dirs, RootState,
};

/// One path of an image: `->T` a symlink to T, `=>P` a hard link to image
/// path P (made earlier in the list), `fifo`, `dir/`, `big:N` N KiB of
/// data, `mode:OOOO:TEXT` a file with that mode, `xattr:K=V:TEXT` a file
/// with that extended attribute; anything else is a file's text. In the
/// path, `\xff` stands for that byte.
type Item<'a> = (&'a str, &'a str);

fn image_path(image: &Path, path: &str) -> PathBuf {
    let bytes: Vec<u8> = path
        .trim_start_matches('/')
        .replace("\\xff", "\u{1}")
        .bytes()
        .map(|b| if b == 1 { 0xff } else { b })
        .collect();
    image.join(OsStr::from_bytes(&bytes))
}

fn set_xattr(p: &Path, k: &str, v: &str) -> bool {
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    let k = std::ffi::CString::new(k).unwrap();
    // SAFETY: NUL-terminated strings, `v` readable for its length.
    unsafe { libc::lsetxattr(c.as_ptr(), k.as_ptr(), v.as_ptr().cast(), v.len(), 0) == 0 }
}

/// Make a gpkg of `items` with `vartree package`; returns its path.
fn package(t: &Path, cpv: &str, items: &[Item], meta: &[(&str, &str)]) -> PathBuf {
    let d = t.join(cpv.replace('/', "_"));
    let image = d.join("image");
    let info = d.join("build-info");
    fs::create_dir_all(&image).unwrap();
    fs::create_dir_all(&info).unwrap();
    let (cat, pf) = cpv.split_once('/').unwrap();
    let base = [
        ("CATEGORY", cat),
        ("PF", pf),
        ("SLOT", "0"),
        ("EAPI", "8"),
        ("repository", "gentoo"),
    ];
    for (k, v) in base.iter().chain(meta) {
        fs::write(info.join(k), format!("{v}\n")).unwrap();
    }
    for (path, spec) in items {
        let p = image_path(&image, path);
        if let Some(dir) = p.parent() {
            fs::create_dir_all(dir).unwrap();
        }
        if let Some(target) = spec.strip_prefix("->") {
            symlink(target, &p).unwrap();
        } else if let Some(other) = spec.strip_prefix("=>") {
            fs::hard_link(image_path(&image, other), &p).unwrap();
        } else if *spec == "fifo" {
            let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
            // SAFETY: a NUL-terminated path.
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        } else if path.ends_with('/') {
            fs::create_dir_all(&p).unwrap();
        } else if let Some(kib) = spec.strip_prefix("big:") {
            let n: usize = kib.parse().unwrap();
            let data: Vec<u8> = (0..n * 1024).map(|i| (i * 7 + n) as u8).collect();
            fs::write(&p, data).unwrap();
        } else if let Some(rest) = spec.strip_prefix("mode:") {
            let (mode, text) = rest.split_once(':').unwrap();
            fs::write(&p, text).unwrap();
            let mode = u32::from_str_radix(mode, 8).unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        } else if let Some(rest) = spec.strip_prefix("xattr:") {
            let (kv, text) = rest.split_once(':').unwrap();
            let (k, v) = kv.split_once('=').unwrap();
            fs::write(&p, text).unwrap();
            // Without user xattrs on this filesystem the file is plain.
            let _ = set_xattr(&p, k, v);
        } else {
            fs::write(&p, spec).unwrap();
        }
    }
    let pkgdir = d.join("pkgdir");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_vartree"))
        .args(["package", "--image"])
        .arg(&image)
        .arg("--build-info")
        .arg(&info)
        .arg("--pkgdir")
        .arg(&pkgdir)
        .env_remove("ROOT")
        .output()
        .unwrap();
    ok(&o, "vartree package");
    let name = pf.rsplit_once('-').unwrap().0;
    let dir = pkgdir.join(cat).join(name);
    fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".gpkg.tar"))
        .unwrap()
}

/// A state an uninterrupted run passes through, with its `check` output.
struct Stage {
    name: &'static str,
    state: RootState,
    check: String,
}

fn stage(name: &'static str, root: &Path) -> Stage {
    Stage {
        name,
        state: without_empty_state_dirs(root_state(root)),
        check: check_json(root),
    }
}

/// Abort `args` at each of its crash points on a copy of `base`, recover
/// and check the invariants; `stages` are the acceptable outcomes (the
/// first the old state, the last the new). Returns how often each stage
/// was the outcome.
fn crash_everywhere(
    t: &Path,
    what: &str,
    base: &Path,
    args: &[&str],
    stages: &[Stage],
) -> Vec<u32> {
    crash_everywhere_with(t, what, base, args, stages, None)
}

/// [`crash_everywhere`], with `image = Some((pristine, used))`: `used` (the
/// image a `--move-image` merge consumes) is made a fresh copy of
/// `pristine` before each run.
fn crash_everywhere_with(
    t: &Path,
    what: &str,
    base: &Path,
    args: &[&str],
    stages: &[Stage],
    image: Option<(&Path, &Path)>,
) -> Vec<u32> {
    let fresh_image = || {
        if let Some((pristine, used)) = image {
            if used.exists() {
                fs::remove_dir_all(used).unwrap();
            }
            copy_tree(pristine, used);
        }
    };
    let count_file = t.join(format!("{what}.count"));
    let reference = t.join(format!("{what}-reference"));
    copy_tree(base, &reference);
    fresh_image();
    ok(
        &vartree(
            &reference,
            args,
            &[("VARTREE_CRASH_COUNT", count_file.display().to_string())],
        ),
        what,
    );
    let last = stages.last().unwrap();
    assert_eq!(
        state_diff(
            &without_empty_state_dirs(root_state(&reference)),
            &last.state
        ),
        Vec::<String>::new(),
        "{what}: the reference run does not end in the new state"
    );
    fs::remove_dir_all(&reference).unwrap();
    let steps = read_count(&count_file);
    assert!(
        steps > 20,
        "{what}: only {steps} crash points: is the crashpoints feature on?"
    );
    let mut seen = vec![0u32; stages.len()];
    for n in 1..=steps {
        let root = t.join(format!("{what}-{n}"));
        copy_tree(base, &root);
        fresh_image();
        let o = vartree(&root, args, &[("VARTREE_CRASH_AT", n.to_string())]);
        assert!(
            !o.status.success(),
            "{what}, step {n}: the run was not interrupted: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        if n % 9 == 0 {
            for m in 1..=2u64 {
                let _ = vartree(&root, &["recover"], &[("VARTREE_CRASH_AT", m.to_string())]);
            }
        }
        let label = format!("{what}, crash at step {n} of {steps}");
        ok(&vartree(&root, &["recover"], &[]), &label);
        assert_no_leftovers(&root, &label);
        let now = without_empty_state_dirs(root_state(&root));
        let Some(i) = stages.iter().position(|s| s.state == now) else {
            let diffs: Vec<String> = stages
                .iter()
                .map(|s| format!("vs {}: {:#?}", s.name, state_diff(&now, &s.state)))
                .collect();
            panic!(
                "{label}: not a state of the uninterrupted run.\n{}",
                diffs.join("\n")
            );
        };
        assert_eq!(
            check_json(&root),
            stages[i].check,
            "{label}: `vartree check` differs from the {} state's",
            stages[i].name
        );
        let mut c = counters(&root);
        let n_all = c.len();
        c.sort();
        c.dedup();
        assert_eq!(c.len(), n_all, "{label}: COUNTERs are not unique");
        seen[i] += 1;
        fs::remove_dir_all(&root).unwrap();
    }
    eprintln!("{what}: {steps} crash points, outcomes {seen:?}");
    assert!(
        seen[0] > 0 && seen[stages.len() - 1] > 0,
        "{what}: both the old and the new state must occur: {seen:?}"
    );
    seen
}

const V1: &[Item] = &[
    ("/usr/bin/tool", "mode:0755:tool 1\n"),
    ("/usr/bin/tool-alias", "=>/usr/bin/tool"),
    ("/usr/bin/suid", "mode:4711:suid 1\n"),
    ("/usr/lib/libt.so.1", "big:300"),
    ("/usr/lib/libt.so", "->libt.so.1"),
    ("/usr/share/t/empty", ""),
    ("/usr/share/t/dangling", "->/nowhere/at/all"),
    ("/usr/share/t/abs", "->/usr/bin/tool"),
    ("/usr/share/t/was-file", "a file\n"),
    ("/usr/share/t/was-dir/inner", "inner\n"),
    ("/usr/share/t/was-link", "->empty"),
    ("/usr/share/t/n\\xffme", "not utf-8\n"),
    ("/usr/share/t/attr", "xattr:user.t=one:with an xattr\n"),
    ("/usr/share/t/deep/a/b/c/d", "deep\n"),
    ("/usr/share/t/keep/", ""),
    ("/var/lib/t/pipe", "fifo"),
    ("/etc/t/t.conf", "conf 1\n"),
    ("/etc/t/same.conf", "same\n"),
];

const V2: &[Item] = &[
    ("/usr/bin/tool", "mode:0755:tool 2\n"),
    ("/usr/bin/tool-alias", "=>/usr/bin/tool"),
    ("/usr/bin/tool-third", "=>/usr/bin/tool"),
    ("/usr/bin/suid", "mode:0755:no longer suid\n"),
    ("/usr/lib/libt.so.2", "big:400"),
    ("/usr/lib/libt.so", "->libt.so.2"),
    ("/usr/share/t/empty", ""),
    ("/usr/share/t/dangling", "->/nowhere/else"),
    ("/usr/share/t/was-file/now-dir", "now a dir\n"),
    ("/usr/share/t/was-dir", "now a file\n"),
    ("/usr/share/t/was-link", "a file now\n"),
    ("/usr/share/t/n\\xffme", "still not utf-8, changed\n"),
    ("/usr/share/t/attr", "xattr:user.t=two:with an xattr\n"),
    ("/usr/share/t/deep/a/b/c/d", "deep\n"),
    ("/usr/share/t/new/x/y", "new tree\n"),
    ("/var/lib/t/pipe", "fifo"),
    ("/etc/t/t.conf", "conf 2\n"),
    ("/etc/t/same.conf", "same\n"),
];

#[test]
fn crash_at_every_step_of_a_first_install_into_an_empty_root() {
    let t = common::roots::scratch();
    let t = t.path();
    let v1 = package(t, "app-misc/t-1", V1, &[]);
    let empty = t.join("empty");
    fs::create_dir(&empty).unwrap();
    let args = ["install", "--sync", "never", v1.to_str().unwrap()];
    let done = t.join("done");
    copy_tree(&empty, &done);
    ok(&vartree(&done, &args, &[]), "install t-1");
    let stages = [stage("old", &empty), stage("new", &done)];
    crash_everywhere(t, "first-install", &empty, &args, &stages);
}

#[test]
fn crash_at_every_step_of_an_install_over_an_installed_version() {
    let t = common::roots::scratch();
    let t = t.path();
    let v1 = package(t, "app-misc/t-1", V1, &[]);
    let v2 = package(t, "app-misc/t-2", V2, &[]);
    let base = t.join("base");
    fs::create_dir(&base).unwrap();
    ok(
        &vartree(
            &base,
            &["install", "--sync", "never", v1.to_str().unwrap()],
            &[],
        ),
        "install t-1",
    );
    // The administrator edits a config file: 2's is installed as ._cfg.
    fs::write(base.join("etc/t/t.conf"), "conf 1, edited\n").unwrap();
    let args = ["install", "--sync", "never", v2.to_str().unwrap()];
    let done = t.join("done");
    copy_tree(&base, &done);
    ok(&vartree(&done, &args, &[]), "install t-2");
    assert!(done.join("etc/t/._cfg0000_t.conf").exists());
    let stages = [stage("old", &base), stage("new", &done)];
    crash_everywhere(t, "upgrade", &base, &args, &stages);
}

#[test]
fn crash_at_every_step_of_a_two_package_install() {
    let t = common::roots::scratch();
    let t = t.path();
    // lib-1 is needed by app-1; the command names app first.
    let lib = package(
        t,
        "dev-libs/lib-1",
        &[
            ("/usr/lib/liblib.so.1", "lib\n"),
            ("/usr/lib/liblib.so", "->liblib.so.1"),
            ("/usr/share/shared/lib.txt", "lib's\n"),
        ],
        &[],
    );
    let app = package(
        t,
        "app-misc/app-1",
        &[
            ("/usr/bin/app", "mode:0755:app\n"),
            ("/usr/share/shared/app.txt", "app's\n"),
            ("/etc/app.conf", "app conf\n"),
        ],
        &[("RDEPEND", "dev-libs/lib")],
    );
    let base = t.join("base");
    fs::create_dir(&base).unwrap();
    ok(
        &vartree(&base, &["install", "--sync", "never", v_str(&lib)], &[]),
        "install lib-1 (to make var/db/pkg)",
    );
    ok(
        &vartree(&base, &["unmerge", "dev-libs/lib"], &[]),
        "unmerge lib-1",
    );
    let args = ["install", "--sync", "never", v_str(&app), v_str(&lib)];
    let half = t.join("half");
    copy_tree(&base, &half);
    ok(
        &vartree(&half, &["install", "--sync", "never", v_str(&lib)], &[]),
        "install lib-1",
    );
    let done = t.join("done");
    copy_tree(&base, &done);
    ok(&vartree(&done, &args, &[]), "install both");
    let stages = [
        stage("old", &base),
        stage("lib installed", &half),
        stage("new", &done),
    ];
    let seen = crash_everywhere(t, "two-packages", &base, &args, &stages);
    assert!(seen[1] > 0, "a crash between the two commits: {seen:?}");
}

/// `merge` of image directories (no binary package): copy mode, and
/// `--move-image` (new directories moved out of the image whole), over an
/// installed version.
#[test]
fn crash_at_every_step_of_image_merges_over_an_installed_version() {
    let t = common::roots::scratch();
    let t = t.path();
    package(t, "app-misc/t-1", V1, &[]);
    package(t, "app-misc/t-2", V2, &[]);
    let (img1, info1) = (
        t.join("app-misc_t-1/image"),
        t.join("app-misc_t-1/build-info"),
    );
    let (img2, info2) = (
        t.join("app-misc_t-2/image"),
        t.join("app-misc_t-2/build-info"),
    );
    let base = t.join("base");
    fs::create_dir(&base).unwrap();
    let merge = |image: &Path, info: &Path, extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = ["merge", "--sync", "never", "--image"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        a.push(image.display().to_string());
        a.push("--build-info".into());
        a.push(info.display().to_string());
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let a1 = merge(&img1, &info1, &[]);
    ok(
        &vartree(
            &base,
            &a1.iter().map(String::as_str).collect::<Vec<_>>(),
            &[],
        ),
        "merge t-1",
    );
    fs::write(base.join("etc/t/t.conf"), "conf 1, edited\n").unwrap();
    for (what, extra) in [
        ("image-copy", &[][..]),
        ("image-move", &["--move-image"][..]),
    ] {
        let used = t.join(format!("{what}-image"));
        copy_tree(&img2, &used);
        let a2 = merge(&used, &info2, extra);
        let args: Vec<&str> = a2.iter().map(String::as_str).collect();
        let done = t.join(format!("{what}-done"));
        copy_tree(&base, &done);
        ok(&vartree(&done, &args, &[]), what);
        let stages = [stage("old", &base), stage("new", &done)];
        crash_everywhere_with(t, what, &base, &args, &stages, Some((&img2, &used)));
    }
}

fn v_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

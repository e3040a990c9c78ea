//! `vartree recover` and what an interrupted *Portage* merge leaves behind:
//! `CAT/-MERGING-PF`, `movefile`'s `DEST#new` and
//! `.NAME._portage_merge_.PIDxxxxxxxx`. Recover removes exactly what it can
//! prove to be Portage's (docs/crash-safety.md, "Portage's leftovers") and
//! nothing else.
//!
//! * `each_kind_of_leftover_and_what_is_left_alone`: every kind, laid out
//!   as Portage leaves them, beside look-alikes that must stay (a user's
//!   `notes#new` in a directory no package owns, a `mine#new` whose `mine`
//!   no package records, a `#new` some package installs, a directory, a
//!   `-MERGING-` directory whose package a running `parallel-install`
//!   merge holds the slot lock of, one a live vartree transaction names).
//! * `sigkill_of_a_real_portage_merge`: the real Portage (portage-ref's
//!   `merge_image.py`) upgrading a package from an image on another
//!   filesystem, `SIGKILL`ed at random moments and once right when a
//!   `#new` file appears; `recover` cleans each root.
#![allow(clippy::print_stderr)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

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

/// An image and build-info for `cpv` in `base`.
fn pkg(base: &Path, cpv: &str, files: &[(&str, &str)]) -> (PathBuf, PathBuf) {
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
        fs::write(&p, content).unwrap();
    }
    (image, info)
}

fn merge(root: &Path, base: &Path, cpv: &str, files: &[(&str, &str)]) {
    let (image, info) = pkg(base, cpv, files);
    ok(
        &vt(
            root,
            &[
                "merge",
                "--sync",
                "never",
                "--image",
                &image.display().to_string(),
                "--build-info",
                &info.display().to_string(),
            ],
        ),
        cpv,
    );
}

/// Every path of a tree with its type and content (hashed) or target; the
/// VDB lock file (Portage leaves it behind, a lock taken again removes it)
/// left out.
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(base).unwrap().display().to_string();
            if rel == "var/db/.pkg.portage_lockfile" {
                continue;
            }
            let m = fs::symlink_metadata(&p).unwrap();
            let desc = if m.file_type().is_symlink() {
                format!("sym {}", fs::read_link(&p).unwrap().display())
            } else if m.is_dir() {
                walk(base, &p, out);
                "dir".into()
            } else {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                std::hash::Hash::hash(&fs::read(&p).unwrap(), &mut h);
                format!("file {} {:x}", m.len(), std::hash::Hasher::finish(&h))
            };
            out.insert(rel, desc);
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn write(root: &Path, rel: &str, content: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, content).unwrap();
}

#[test]
fn each_kind_of_leftover_and_what_is_left_alone() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    fs::create_dir_all(&root).unwrap();
    let pk = t.path().join("pkgs");
    // Installed: app-misc/foo-1 (the instance the interrupted merge of
    // foo-2 was replacing) and app-misc/other-1, which happens to install
    // a file named like a movefile temp.
    merge(
        &root,
        &pk,
        "app-misc/foo-1",
        &[
            ("/usr/bin/foo", "foo 1\n"),
            ("/usr/lib/libfoo.so.1", "lib 1\n"),
            ("/usr/share/foo/data", "data 1\n"),
            ("/etc/foo/foo.conf", "conf 1\n"),
        ],
    );
    merge(
        &root,
        &pk,
        "app-misc/other-1",
        &[("/usr/share/foo/data#new", "other's file\n")],
    );
    // The interrupted Portage merge of foo-2: its -MERGING- directory with
    // the CONTENTS temp atomic_ofstream was writing (the last line cut
    // off where Python's buffer ended).
    let vdb = root.join("var/db/pkg/app-misc");
    let m = vdb.join("-MERGING-foo-2");
    fs::create_dir_all(&m).unwrap();
    fs::write(m.join("SLOT"), "0\n").unwrap();
    fs::write(m.join("CATEGORY"), "app-misc\n").unwrap();
    fs::write(m.join("PF"), "foo-2\n").unwrap();
    fs::write(m.join("COUNTER"), "7").unwrap();
    fs::write(
        m.join("CONTENTSab1_x9zq"),
        "dir /usr\ndir /usr/bin\nobj /usr/bin/foo 0123456789abcdef0123456789abcdef 1700000000\n\
         dir /usr/share\ndir /usr/share/foo\nobj /usr/share/foo/new-file 0123456789abcdef0123456789abcdef 1700000000\n\
         obj /usr/lib/libbar.so 01234567",
    )
    .unwrap();
    write(&root, "usr/bin/foo", "foo 2\n");
    write(&root, "usr/share/foo/new-file", "new\n");
    // Portage's temp files.
    let portage_files = [
        // foo-1 records libfoo.so.1: movefile's copy of its new version.
        "usr/lib/libfoo.so.1#new",
        // The interrupted merge had recorded new-file.
        "usr/share/foo/new-file#new",
        // A protected file merged under its ._cfg name.
        "etc/foo/._cfg0000_foo.conf#new",
        // The hard-link temp of a recorded file.
        "usr/bin/.foo._portage_merge_.4242abcd_z09",
    ];
    for f in portage_files {
        write(&root, f, "partial copy");
    }
    // The hard-link temp of a file the merge had not recorded yet, linked
    // to one it had (the same inode in the image).
    fs::hard_link(
        root.join("usr/bin/foo"),
        root.join("usr/bin/.tool._portage_merge_.4242q1w2e3r4"),
    )
    .unwrap();
    // Look-alikes that must stay.
    let user_files = [
        // A directory no package has anything in.
        "home/user/notes#new",
        // A package directory, but `mine` is nobody's.
        "usr/bin/mine#new",
        // libbar.so appears only on the cut-off last line.
        "usr/lib/libbar.so#new",
        // Not the exact temp-name pattern.
        "usr/bin/.foo._portage_merge_.12",
        "usr/bin/foo#new.bak",
    ];
    for f in user_files {
        write(&root, f, "the user's");
    }
    // A directory, not a file.
    fs::create_dir_all(root.join("usr/share/foo/data#new.d")).unwrap();
    fs::create_dir_all(root.join("usr/bin/foo#new")).unwrap();
    symlink("foo", root.join("usr/share/foo/new-file.link#new")).unwrap();

    // A -MERGING- directory whose package a parallel-install merge still
    // holds the slot lock of (SLOT recorded), one without SLOT whose
    // package has a slot lock held, and one a live vartree transaction
    // names.
    let bar = vdb.join("-MERGING-bar-1");
    fs::create_dir_all(&bar).unwrap();
    fs::write(bar.join("SLOT"), "2/2.1\n").unwrap();
    let baz = vdb.join("-MERGING-baz-1");
    fs::create_dir_all(&baz).unwrap();
    let qux = vdb.join("-MERGING-qux-1");
    fs::create_dir_all(&qux).unwrap();
    let bar_lock = vdb::lock::slot_lock(&st(&root), "app-misc", "bar", "2", |_| {}).unwrap();
    let baz_lock = vdb::lock::slot_lock(&st(&root), "app-misc", "baz", "3", |_| {}).unwrap();
    let jdir = root.join("var/db/.vartree");
    fs::create_dir_all(&jdir).unwrap();
    let journal = jdir.join("tx-999999-1.journal");
    fs::write(
        &journal,
        "BEGIN merge app-misc/qux-1\nENTRY app-misc/qux-1\n",
    )
    .unwrap();
    let journal_lock = rootfs::lock::LockedFile::lock(&journal, |_| {}).unwrap();

    // --pretend says what would go and touches nothing.
    let before = snapshot(&root);
    let o = vt(&root, &["recover", "--pretend"]);
    ok(&o, "recover --pretend");
    let err = String::from_utf8_lossy(&o.stderr);
    for f in portage_files {
        assert!(err.contains(&format!("would remove /{f}\n")), "{f}: {err}");
    }
    assert!(err.contains("would remove /usr/bin/.tool._portage_merge_.4242q1w2e3r4"));
    assert!(
        err.contains(&format!("would remove {}", m.display())),
        "{err}"
    );
    assert!(
        err.contains("left /usr/bin/mine#new: /usr/bin/mine is not recorded by app-misc/foo-2"),
        "{err}"
    );
    assert!(
        err.contains("left /usr/share/foo/data#new: installed by app-misc/other-1"),
        "{err}"
    );
    assert!(
        err.contains("left /usr/bin/foo#new: not a regular file"),
        "{err}"
    );
    assert!(
        err.contains("app-misc/bar:2.portage_lockfile is locked")
            || err.contains(".bar:2.portage_lockfile is locked"),
        "{err}"
    );
    assert!(!err.contains("qux"), "a vartree transaction's: {err}");
    assert_eq!(snapshot(&root), before, "--pretend changed the root");
    let o = vt(&root, &["--json", "recover", "--pretend"]);
    ok(&o, "recover --pretend --json");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let foo = v
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["package"] == "app-misc/foo-2")
        .unwrap();
    assert_eq!(foo["action"], "would remove");
    assert_eq!(foo["removed"].as_array().unwrap().len(), 6, "{foo}");
    assert_eq!(snapshot(&root), before);

    // The real thing.
    let o = vt(&root, &["recover"]);
    ok(&o, "recover");
    eprintln!("{}", String::from_utf8_lossy(&o.stderr));
    for f in portage_files {
        assert!(!root.join(f).exists(), "{f} is left");
    }
    assert!(!root
        .join("usr/bin/.tool._portage_merge_.4242q1w2e3r4")
        .exists());
    assert!(!m.exists());
    for f in user_files {
        assert_eq!(
            fs::read_to_string(root.join(f)).unwrap(),
            "the user's",
            "{f}"
        );
    }
    assert_eq!(
        fs::read_to_string(root.join("usr/share/foo/data#new")).unwrap(),
        "other's file\n"
    );
    assert!(root.join("usr/bin/foo#new").is_dir());
    assert!(root.join("usr/share/foo/data#new.d").is_dir());
    assert!(fs::symlink_metadata(root.join("usr/share/foo/new-file.link#new")).is_ok());
    // What the interrupted merge merged stays (it is not vartree's to undo).
    assert_eq!(
        fs::read_to_string(root.join("usr/bin/foo")).unwrap(),
        "foo 2\n"
    );
    assert!(root.join("usr/share/foo/new-file").exists());
    // Locked or ours: left.
    assert!(bar.exists() && baz.exists() && qux.exists());
    assert!(root.join("var/db/pkg/app-misc/foo-1").is_dir());
    let o = vt(&root, &["list"]);
    ok(&o, "list");
    // Once the parallel-install merges are gone, their leftovers go too.
    drop(bar_lock);
    drop(baz_lock);
    ok(&vt(&root, &["recover"]), "recover again");
    assert!(!bar.exists() && !baz.exists());
    assert!(qux.exists(), "a live vartree transaction names it");
    assert!(
        !fs::read_dir(&vdb).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with("portage_lockfile")),
        "recover left a slot lock file"
    );
    drop(journal_lock);
    // Now that journal is an abandoned transaction: recover undoes it.
    ok(&vt(&root, &["recover"]), "recover the journal");
    assert!(!qux.exists());
    let o = vt(&root, &["recover"]);
    ok(&o, "nothing left");
    assert!(String::from_utf8_lossy(&o.stderr).contains("nothing to recover"));
}

// ------------------------------------------------------------ real Portage

fn workspace() -> PathBuf {
    let ws = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    ws.canonicalize().unwrap_or(ws)
}

fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// The Python with Portage and portage-ref's `merge_image.py`, or `None`
/// (skip, unless `VARTREE_REQUIRE_PORTAGE=1`).
fn portage() -> Option<(PathBuf, PathBuf)> {
    let ws = workspace();
    let python = std::env::var_os("VARTREE_PORTAGE_PYTHON")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| Some(ws.join(".venv/bin/python")))
        .filter(|p| p.exists());
    let script = std::env::var_os("VARTREE_PORTAGE_REF")
        .map_or_else(|| ws.join("../shared/tools/portage-ref"), PathBuf::from)
        .join("merge_image.py");
    let why = if python.is_none() {
        Some("no Python with Portage (VARTREE_PORTAGE_PYTHON, .venv)")
    } else if !script.is_file() {
        Some("portage-ref's merge_image.py not found (VARTREE_PORTAGE_REF)")
    } else if !is_root() {
        Some("not running as root")
    } else {
        None
    };
    if let Some(why) = why {
        assert!(
            std::env::var("VARTREE_REQUIRE_PORTAGE").as_deref() != Ok("1"),
            "VARTREE_REQUIRE_PORTAGE=1 but {why}"
        );
        eprintln!("SKIPPED: {why}");
        return None;
    }
    Some((python.unwrap(), script))
}

fn portage_merge(
    py: &Path,
    script: &Path,
    root: &Path,
    image: &Path,
    cpv: &str,
    work: &Path,
) -> Command {
    let mut c = Command::new(py);
    c.arg(script)
        .arg("--root")
        .arg(root)
        .arg("--image")
        .arg(image)
        .args(["--cpv", cpv, "--no-ebuild", "--no-env-update"])
        .arg("--workdir")
        .arg(work)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        // Its own process group: SIGKILL reaches the merge process too.
        .process_group(0);
    c
}

fn kill_group(pid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pid}")])
        .status();
}

/// Portage's temp files anywhere in `dir`.
fn temp_files(dir: &Path, out: &mut Vec<String>) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd.filter_map(Result::ok) {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with("#new") || name.contains("._portage_merge_.") {
            out.push(e.path().display().to_string());
        }
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            temp_files(&e.path(), out);
        }
    }
}

fn merging_dirs(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(cats) = fs::read_dir(root.join("var/db/pkg")) {
        for c in cats.filter_map(Result::ok) {
            if let Ok(rd) = fs::read_dir(c.path()) {
                out.extend(
                    rd.filter_map(Result::ok)
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .filter(|n| n.starts_with("-MERGING-")),
                );
            }
        }
    }
    out
}

/// A small deterministic generator (no dependency).
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

#[test]
fn sigkill_of_a_real_portage_merge() {
    let Some((py, script)) = portage() else {
        return;
    };
    // ROOT on tmpfs and Portage's work directory (the image it merges
    // from) on the disk: movefile cannot rename across them, so it copies
    // every file to DEST#new first.
    let shm = Path::new("/dev/shm");
    let t = tempfile::tempdir().unwrap();
    let rt = if shm.is_dir() {
        tempfile::tempdir_in(shm).unwrap()
    } else {
        tempfile::tempdir().unwrap()
    };
    let cross_device =
        fs::metadata(rt.path()).unwrap().dev() != fs::metadata(t.path()).unwrap().dev();
    let big = "x".repeat(8 << 20);
    let files = |v: &str| -> Vec<(String, String)> {
        let mut f: Vec<(String, String)> = (0..120)
            .map(|i| {
                (
                    format!("/usr/share/big/s{}/f{i:03}", i % 6),
                    format!("{v} {i}\n"),
                )
            })
            .collect();
        for i in 0..4 {
            f.push((format!("/usr/lib/big/blob{i}"), format!("{v}{big}")));
        }
        f.push(("/usr/bin/big".into(), format!("big {v}\n")));
        f
    };
    let v1 = files("v1");
    let v2 = files("v2");
    let r1: Vec<(&str, &str)> = v1.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let r2: Vec<(&str, &str)> = v2.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let (img1, _) = pkg(&t.path().join("pkgs"), "app-misc/big-1", &r1);
    let (img2, _) = pkg(&t.path().join("pkgs"), "app-misc/big-2", &r2);
    // Installed by Portage: big-1.
    let base = rt.path().join("base");
    fs::create_dir_all(&base).unwrap();
    let work = t.path().join("work");
    let o = portage_merge(&py, &script, &base, &img1, "app-misc/big-1", &work)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let _ = fs::remove_dir_all(&work);
    // The user's own files that look like leftovers.
    write(&base, "home/user/report#new", "mine");
    write(&base, "usr/share/big/s0/mine#new", "mine");
    let copy = |to: &Path| {
        let _ = fs::remove_dir_all(to);
        assert!(Command::new("cp")
            .arg("-a")
            .arg(&base)
            .arg(to)
            .status()
            .unwrap()
            .success());
    };
    // How long the upgrade takes, from its -MERGING- directory to the end.
    let reference = rt.path().join("reference");
    copy(&reference);
    let mut child = portage_merge(&py, &script, &reference, &img2, "app-misc/big-2", &work)
        .spawn()
        .unwrap();
    let mut seen = None;
    while child.try_wait().unwrap().is_none() {
        if seen.is_none() && !merging_dirs(&reference).is_empty() {
            seen = Some(Instant::now());
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let span = seen.map_or(Duration::from_millis(500), |s| s.elapsed());
    let _ = fs::remove_dir_all(&work);
    eprintln!("Portage's upgrade spends {span:?} after creating -MERGING-");

    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ u64::from(std::process::id()));
    let (mut killed, mut with_new, mut with_merging) = (0, 0, 0);
    // Five kills at random moments; then, as long as none of them caught a
    // #new file (or a -MERGING- directory), up to three right when one
    // appears (the merge runs in the Python process itself then, killed
    // directly: no `kill` process to start while the copy finishes).
    let (random_attempts, max_attempts) = (5, 8);
    let mut attempts = 0;
    for attempt in 0..max_attempts {
        let targeted = attempt >= random_attempts;
        if targeted && (with_new > 0 || !cross_device) && with_merging > 0 {
            break;
        }
        attempts += 1;
        let root = rt.path().join(format!("run-{attempt}"));
        copy(&root);
        let delay = Duration::from_micros(rng.below(span.as_micros() as u64));
        let mut cmd = portage_merge(&py, &script, &root, &img2, "app-misc/big-2", &work);
        if targeted {
            cmd.arg("--in-process");
        }
        let mut child = cmd.spawn().unwrap();
        let mut started = None;
        let mut ended = false;
        loop {
            if child.try_wait().unwrap().is_some() {
                ended = true;
                break;
            }
            if started.is_none() && !merging_dirs(&root).is_empty() {
                started = Some(Instant::now());
            }
            let fire = match started {
                Some(s) if !targeted => s.elapsed() >= delay,
                Some(_) if cross_device => {
                    let mut f = Vec::new();
                    temp_files(&root.join("usr/lib/big"), &mut f);
                    !f.is_empty()
                }
                Some(_) => true,
                None => false,
            };
            if fire {
                if targeted {
                    let _ = child.kill();
                }
                kill_group(child.id());
                break;
            }
            std::thread::sleep(Duration::from_micros(50));
        }
        let _ = child.wait();
        let _ = fs::remove_dir_all(&work);
        if ended {
            eprintln!("attempt {attempt}: Portage finished before the kill");
            continue;
        }
        killed += 1;
        let mut left = Vec::new();
        temp_files(&root, &mut left);
        left.retain(|p| !p.ends_with("report#new") && !p.ends_with("mine#new"));
        let merging = merging_dirs(&root);
        with_new += usize::from(!left.is_empty());
        with_merging += usize::from(!merging.is_empty());
        eprintln!(
            "attempt {attempt} ({}): killed; -MERGING-: {merging:?}; Portage's temp files: {left:?}",
            match (targeted, cross_device) {
                (false, _) => "at a random moment",
                (true, true) => "when a #new appeared",
                (true, false) => "when -MERGING- appeared",
            }
        );
        let before = snapshot(&root);
        let o = vt(&root, &["recover", "--pretend"]);
        ok(&o, "recover --pretend");
        assert_eq!(snapshot(&root), before, "--pretend changed the root");
        let o = vt(&root, &["recover"]);
        ok(&o, "recover");
        eprintln!("{}", String::from_utf8_lossy(&o.stderr).trim_end());
        assert!(
            merging_dirs(&root).is_empty(),
            "attempt {attempt}: -MERGING- left"
        );
        let mut after = Vec::new();
        temp_files(&root, &mut after);
        after.sort();
        assert_eq!(
            after,
            [
                root.join("home/user/report#new").display().to_string(),
                root.join("usr/share/big/s0/mine#new").display().to_string(),
            ],
            "attempt {attempt}: exactly the user's files are left"
        );
        // Nothing else changed.
        let now = snapshot(&root);
        for (k, v) in &before {
            if !left.iter().any(|l| l.ends_with(k.as_str())) && !k.contains("-MERGING-") {
                assert_eq!(now.get(k), Some(v), "attempt {attempt}: {k} changed");
            }
        }
        fs::remove_dir_all(&root).unwrap();
    }
    eprintln!(
        "{killed} of {attempts} Portage merges killed; {with_merging} left -MERGING-, {with_new} left temp files (cross-device: {cross_device})"
    );
    assert!(killed > 0 && with_merging > 0);
    if cross_device {
        assert!(with_new > 0, "no #new file was produced");
    }
}

/// The state paths of a root without EPREFIX.
fn st(root: &std::path::Path) -> vdb::state::StatePaths {
    vdb::state::StatePaths::new(root, "")
}

/// An interrupted Portage merge of the only package of its category: the
/// `-MERGING-` directory goes, and so does the category (and the slot lock
/// file taken to prove that no merge of that slot is running).
#[test]
fn a_category_made_for_an_interrupted_merge_goes_with_it() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let cat = root.join("var/db/pkg/new-cat");
    let m = cat.join("-MERGING-solo-1");
    fs::create_dir_all(&m).unwrap();
    for (k, v) in [
        ("SLOT", "0\n"),
        ("CATEGORY", "new-cat\n"),
        ("PF", "solo-1\n"),
    ] {
        fs::write(m.join(k), v).unwrap();
    }
    fs::write(m.join("CONTENTSab1_x9zq"), "dir /usr\n").unwrap();
    let o = vt(&root, &["recover"]);
    ok(&o, "recover");
    assert!(!m.exists(), "-MERGING- is left");
    assert!(
        !cat.exists(),
        "the category is left with: {:?}",
        fs::read_dir(&cat)
            .map(|d| d.map(|e| e.unwrap().file_name()).collect::<Vec<_>>())
            .unwrap_or_default()
    );
    assert!(root.join("var/db/pkg").is_dir());
}

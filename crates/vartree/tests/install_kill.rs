//! SIGKILL at random moments of `vartree install` of a large binary
//! package (while the archive is checked, while worker threads unpack it
//! into the staging directory, while it is merged), then `vartree recover`:
//! the root is the old or the new state, with no staging directory, temp
//! name or journal left.
//!
//! `VARTREE_KILL_RUNS=N` sets the number of killed runs (default 40),
//! `VARTREE_KILL_SEED` the seed.
#![allow(clippy::print_stderr)]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::roots::{
    assert_no_leftovers as no_leftovers, check_json as check, command, copy_tree, ok,
    root_state as state, scratch, state_diff as diff,
};

fn spawn(root: &Path, args: &[&str]) -> Child {
    command(root, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn below(&mut self, max: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % max.max(1)
    }
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// An image of `n` files in 30 directories (plus a config file, symlinks
/// and a hard link) and its build-info, packed as a gpkg.
fn package(t: &Path, cpv: &str, n: usize, tag: &str) -> PathBuf {
    let d = t.join(cpv.replace('/', "_"));
    let image = d.join("image");
    let info = d.join("build-info");
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
    for i in 0..n {
        let p = image.join(format!("usr/share/big/d{:02}/f{i:05}", i % 30));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, format!("{tag} {i}\n")).unwrap();
    }
    fs::create_dir_all(image.join("usr/bin")).unwrap();
    fs::write(image.join("usr/bin/big"), format!("{tag} tool\n")).unwrap();
    fs::hard_link(image.join("usr/bin/big"), image.join("usr/bin/big-alias")).unwrap();
    std::os::unix::fs::symlink("big", image.join("usr/bin/big-link")).unwrap();
    fs::create_dir_all(image.join("etc/big")).unwrap();
    fs::write(image.join("etc/big/big.conf"), format!("{tag} conf\n")).unwrap();
    let pkgdir = d.join("pkgdir");
    let o = Command::new(env!("CARGO_BIN_EXE_vartree"))
        .args(["package", "--image"])
        .arg(&image)
        .arg("--build-info")
        .arg(&info)
        .arg("--pkgdir")
        .arg(&pkgdir)
        .output()
        .unwrap();
    ok(&o, "package");
    let dir = pkgdir
        .join(cpv.split_once('/').unwrap().0)
        .join(atom_name(pf));
    fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".gpkg.tar"))
        .unwrap()
}

/// `big-2` → `big`.
fn atom_name(pf: &str) -> String {
    pf.rsplit_once('-').unwrap().0.to_string()
}

#[test]
fn sigkill_during_large_installs_and_upgrades() {
    let t = scratch();
    let t = t.path();
    let v1 = package(t, "a/big-1", 3000, "v1");
    let v2 = package(t, "a/big-2", 3000, "v2");
    // Two scenarios: a fresh install, and an upgrade of big-1 to big-2
    // (the admin edited the config file: it is protected).
    // (A root that never had a package gets its `var/db/pkg` and
    // `var/cache/edb` on the first try, and a COUNTER value once used is
    // not given back, as with Portage: the fresh root has both.)
    let empty = t.join("empty");
    fs::create_dir_all(empty.join("var/db/pkg")).unwrap();
    fs::create_dir_all(empty.join("var/cache/edb")).unwrap();
    let installed = t.join("installed");
    fs::create_dir_all(&installed).unwrap();
    ok(
        &command(
            &installed,
            &["install", "--sync", "never", &v1.display().to_string()],
        )
        .output()
        .unwrap(),
        "install big-1",
    );
    fs::write(installed.join("etc/big/big.conf"), "edited\n").unwrap();
    let mut rng = Rng(env_num("VARTREE_KILL_SEED", 0x01a5_7a11));
    let runs = env_num("VARTREE_KILL_RUNS", 40);
    let mut outcomes = BTreeMap::new();
    for (name, base, pkg) in [("fresh", &empty, &v2), ("upgrade", &installed, &v2)] {
        let pkg = pkg.display().to_string();
        let args = ["install", "--sync", "never", pkg.as_str()];
        let old = state(base);
        let reference = t.join(format!("ref-{name}"));
        copy_tree(base, &reference);
        let start = Instant::now();
        ok(&command(&reference, &args).output().unwrap(), "reference");
        let span = start.elapsed().as_micros() as u64;
        let new = state(&reference);
        assert_ne!(old, new);
        let (check_old, check_new) = (check(base), check(&reference));
        for i in 0..runs {
            let root = t.join(format!("run-{name}-{i}"));
            copy_tree(base, &root);
            let delay = rng.below(span + span / 4);
            let mut child = spawn(&root, &args);
            std::thread::sleep(Duration::from_micros(delay));
            let _ = child.kill();
            let o = child.wait_with_output().unwrap();
            let killed = o.status.signal() == Some(9);
            if !killed {
                ok(&o, "not killed");
            }
            let what = format!("{name} run {i} (killed after {delay} µs: {killed})");
            ok(&command(&root, &["recover"]).output().unwrap(), &what);
            no_leftovers(&root, &what);
            let now = state(&root);
            let outcome = if now == old {
                "old"
            } else if now == new {
                "new"
            } else {
                panic!(
                    "{what}: neither the old nor the new state.\nvs old: {:#?}\nvs new: {:#?}",
                    diff(&now, &old),
                    diff(&now, &new)
                );
            };
            *outcomes.entry((name, outcome)).or_insert(0) += 1;
            let want = if outcome == "old" {
                &check_old
            } else {
                &check_new
            };
            assert_eq!(&check(&root), want, "{what}: `vartree check` differs");
            fs::remove_dir_all(&root).unwrap();
        }
    }
    eprintln!("install kills: {outcomes:?}");
    for name in ["fresh", "upgrade"] {
        assert!(
            outcomes.contains_key(&(name, "old")) && outcomes.contains_key(&(name, "new")),
            "{name}: both outcomes must occur: {outcomes:?}"
        );
    }
}

/// SIGINT or SIGTERM while the package is unpacked (raised at the 200th
/// crash point, one of the files the writer threads create): the install
/// stops there, exits 130 or 143, and the root is as before.
#[cfg(feature = "crashpoints")]
#[test]
fn sigint_and_sigterm_during_the_unpack_stop_it() {
    let t = scratch();
    let t = t.path();
    let pkg = package(t, "a/big-1", 3000, "v1").display().to_string();
    let base = t.join("base");
    fs::create_dir_all(base.join("var/db/pkg")).unwrap();
    let old = state(&base);
    for (sig, code) in [(2, 130), (15, 143)] {
        let root = t.join(format!("root-{sig}"));
        copy_tree(&base, &root);
        let count = t.join(format!("count-{sig}"));
        let o = command(&root, &["install", "--sync", "never", &pkg])
            .env("VARTREE_SIGNAL_AT", format!("200:{sig}"))
            .env("VARTREE_CRASH_COUNT", &count)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(code), "signal {sig}: {err}");
        // Stopped during the unpack, not after it (3,000 files).
        let passed: u64 = fs::read_to_string(&count).unwrap().trim().parse().unwrap();
        assert!(passed < 1000, "signal {sig}: {passed} crash points passed");
        assert!(
            err.contains("a/big-1"),
            "signal {sig}: the error names the package: {err}"
        );
        no_leftovers(&root, &format!("signal {sig}"));
        assert_eq!(state(&root), old, "signal {sig}: the root changed");
    }
}

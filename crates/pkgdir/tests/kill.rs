//! A publishing process that dies at any moment leaves PKGDIR valid: every
//! package file is whole, the index lists no missing file, and with
//! `O_TMPFILE` the package itself leaves nothing behind. The only possible
//! leftovers are dot-named `.partial` files (the fallback's temporary
//! package, or a new index caught between its link and its rename), which
//! the next publish — or `PkgDir::remove_stale_temps` — removes because no
//! live process holds their lock.
//!
//! * `crash_at_every_point`: the child aborts (`abort(2)`, like `kill -9`)
//!   at each of its mutating steps in turn (`VARTREE_CRASH_AT=N`, needs the
//!   `crashpoints` feature, i.e. `--all-features`), in the four modes
//!   multi/single-instance × `O_TMPFILE`/fallback.
//! * `sigkill_at_random_moments`: the child writes and publishes a 16 MiB
//!   package and gets `SIGKILL` after a random delay drawn from its measured
//!   run time; `VARTREE_KILL_RUNS=N` runs per mode (default 15),
//!   `VARTREE_KILL_SEED`, `VARTREE_KILL_TMPDIR` (default `/dev/shm`).
#![allow(clippy::print_stderr)]

mod common;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use binpkg::Format;
use common::*;
use pkgdir::{PkgDir, PublishOptions};

/// The child publisher.
#[test]
fn child() {
    child_main();
}

fn tmpdir() -> tempfile::TempDir {
    let base = std::env::var_os("VARTREE_KILL_TMPDIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new("/dev/shm").to_owned());
    if base.is_dir() {
        if let Ok(t) = tempfile::tempdir_in(&base) {
            return t;
        }
    }
    tempfile::tempdir().unwrap()
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dst);
        } else {
            fs::copy(e.path(), &dst).unwrap();
        }
    }
}

/// A PKGDIR with two packages in it.
fn prepared(dir: &Path, single: bool) -> Vec<Vec<u8>> {
    let pd = PkgDir::new(
        dir,
        PublishOptions {
            multi_instance: !single,
            sync: false,
            ..Default::default()
        },
    );
    let mut originals = Vec::new();
    for name in ["refpkg-1.0-r1-xz.gpkg.tar", "refpkg-1.0-r1-bzip2.gpkg.tar"] {
        let (data, meta) = load_corpus(name);
        let mut p = pd.create_temp(&meta.cpv, Format::Gpkg).unwrap();
        std::io::Write::write_all(p.file(), &data).unwrap();
        p.publish(&meta).unwrap();
        originals.push(data);
    }
    originals
}

fn mode_env(c: &mut std::process::Command, named: bool, single: bool) {
    if named {
        c.env("VARTREE_NO_O_TMPFILE", "1");
    }
    if single {
        c.env(CHILD_SINGLE, "1");
    }
}

#[test]
fn crash_at_every_point() {
    if !rootfs::crash::ENABLED {
        eprintln!("SKIPPED crash_at_every_point: build with --all-features (crashpoints)");
        return;
    }
    let t = tmpdir();
    let (zstd, _) = load_corpus("refpkg-1.0-r1-zstd.gpkg.tar");
    for single in [false, true] {
        for named in [false, true] {
            let mode = format!("single={single} named={named}");
            let base = t.path().join(format!("base-{single}-{named}"));
            let mut originals = prepared(&base, single);
            originals.push(zstd.clone());
            // Count the steps of one publish.
            let run_dir = t.path().join("count");
            copy_tree(&base, &run_dir);
            let out = t.path().join(format!("count-{single}-{named}.out"));
            let mut c = child_command(&run_dir);
            c.env(CHILD_OUT, &out);
            mode_env(&mut c, named, single);
            let o = c.output().unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            let points: u64 = fs::read_to_string(&out)
                .unwrap()
                .lines()
                .find_map(|l| l.strip_prefix("POINTS=").map(|n| n.parse().unwrap()))
                .unwrap();
            assert!(points >= 6, "{mode}: only {points} crash points");
            fs::remove_dir_all(&run_dir).unwrap();
            let mut published_at = Vec::new();
            let mut orphans = Vec::new();
            for n in 1..=points {
                let dir = t.path().join(format!("crash-{n}"));
                copy_tree(&base, &dir);
                let mut c = child_command(&dir);
                c.env("VARTREE_CRASH_AT", n.to_string());
                mode_env(&mut c, named, single);
                let o = c.output().unwrap();
                assert!(
                    !o.status.success(),
                    "{mode}: crash point {n} of {points} did not stop the child"
                );
                if !named && !single {
                    // The package was never named before it was complete;
                    // only index temporaries (and the lock file) can be left.
                    assert!(
                        strays(&dir).iter().all(|s| s.starts_with(".Packages")),
                        "{mode} point {n}: {:?}",
                        strays(&dir)
                    );
                }
                let files = check_after_crash(&dir, &originals);
                let new_files: Vec<&String> = files
                    .iter()
                    .filter(|f| fs::read(dir.join(f)).unwrap() == zstd)
                    .collect();
                let has_new = !new_files.is_empty();
                published_at.push(has_new);
                let listed = PkgDir::new(&dir, PublishOptions::default())
                    .read_index()
                    .unwrap()
                    .packages
                    .iter()
                    .any(|d| new_files.contains(&&d["PATH"]));
                if has_new && !listed {
                    orphans.push(n);
                }
                // PKGDIR still works, and the next publish cleans up.
                let pd = PkgDir::new(
                    &dir,
                    PublishOptions {
                        multi_instance: !single,
                        ..Default::default()
                    },
                );
                let (data, meta) = load_corpus("refpkg-1.0-r1-gzip.gpkg.tar");
                let mut p = pd.create_temp(&meta.cpv, Format::Gpkg).unwrap();
                std::io::Write::write_all(p.file(), &data).unwrap();
                let pubd = p.publish(&meta).unwrap();
                let mut all = originals.clone();
                all.push(data.clone());
                check_after_crash(&dir, &all);
                let index = pd.read_index().unwrap();
                assert!(index.packages.iter().any(|d| d["PATH"] == pubd.rel_path));
                fs::remove_dir_all(&dir).unwrap();
            }
            // Early crashes publish nothing, late ones publish the package.
            assert!(!published_at[0], "{mode}");
            assert!(published_at[points as usize - 1], "{mode}");
            // A published package is missing from the index only if the
            // process dies between the package's rename/link and the index's
            // (Portage indexes such a package when it next reads PKGDIR).
            assert!(
                orphans.len() <= 1,
                "{mode}: not indexed after crash points {orphans:?}"
            );
            eprintln!(
                "{mode}: {points} crash points, published from point {:?} on",
                published_at.iter().position(|&p| p).map(|i| i + 1)
            );
        }
    }
}

#[test]
fn sigkill_at_random_moments() {
    const SIZE: usize = 16 << 20;
    let runs: usize = std::env::var("VARTREE_KILL_RUNS").map_or(15, |v| v.parse().unwrap());
    let mut rng =
        Rng(std::env::var("VARTREE_KILL_SEED")
            .map_or(0x0bad_cafe_dead_beef, |v| v.parse().unwrap()));
    let t = tmpdir();
    let big = payload(SIZE);
    let py = python();
    for single in [false, true] {
        for named in [false, true] {
            let mode = format!("single={single} named={named}");
            let base = t.path().join(format!("base-{single}-{named}"));
            let mut originals = prepared(&base, single);
            originals.push(big.clone());
            let spawn = |dir: &Path| {
                let mut c = child_command(dir);
                c.env(CHILD_SIZE, SIZE.to_string());
                mode_env(&mut c, named, single);
                c.spawn().unwrap()
            };
            // How long an uninterrupted publish takes.
            let mut longest = Duration::ZERO;
            for _ in 0..2 {
                let dir = t.path().join("measure");
                copy_tree(&base, &dir);
                let start = Instant::now();
                let o = spawn(&dir).wait_with_output().unwrap();
                assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
                longest = longest.max(start.elapsed());
                fs::remove_dir_all(&dir).unwrap();
            }
            let (mut killed_before, mut killed_after) = (0, 0);
            let dir = t.path().join(format!("runs-{single}-{named}"));
            copy_tree(&base, &dir);
            for _ in 0..runs {
                let mut child = spawn(&dir);
                let delay = longest.mul_f64(rng.below(1000) as f64 / 1000.0 * 1.1);
                std::thread::sleep(delay);
                let finished = child.try_wait().unwrap().is_some();
                let _ = child.kill();
                let status = child.wait().unwrap();
                if finished && status.success() {
                    killed_after += 1;
                } else {
                    killed_before += 1;
                }
                if !named && !single {
                    // No temporary package name ever, only index temporaries.
                    assert!(
                        strays(&dir).iter().all(|s| s.starts_with(".Packages")),
                        "{mode}: {:?}",
                        strays(&dir)
                    );
                }
                check_after_crash(&dir, &originals);
            }
            eprintln!("{mode}: {runs} runs, {killed_before} killed, {killed_after} finished first (run ≈ {longest:?})");
            assert!(killed_before > 0, "{mode}: no run was interrupted");
            // Portage reads what is left without complaint.
            if let Some(py) = &py {
                let report = bintree_py(
                    py,
                    &[
                        std::ffi::OsStr::new("populate"),
                        std::ffi::OsStr::new("--pkgdir"),
                        dir.as_os_str(),
                    ],
                    None,
                );
                assert_eq!(report["invalids"], serde_json::json!([]), "{report:#}");
                assert!(
                    !report["messages"].as_str().unwrap().contains("!!!"),
                    "{report:#}"
                );
            }
            fs::remove_dir_all(&dir).unwrap();
        }
    }
}

//! PKGDIR is always whole: `vartree quickpkg` of a large package killed
//! (SIGKILL) or interrupted (SIGINT, SIGTERM) at random moments, again and
//! again, leaves only complete, verifiable packages and no stray file; and
//! concurrent quickpkg runs of one package get distinct BUILD_IDs.
#![allow(clippy::print_stderr)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn vartree(root: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vartree"));
    c.arg("--root")
        .arg(root)
        .env_remove("ROOT")
        .env_remove("EPREFIX");
    c
}

/// A root with app-misc/big-1 installed: `files` files of 24 KiB each.
fn big_root(t: &Path, files: usize) -> PathBuf {
    let image = t.join("image");
    let info = t.join("build-info");
    let root = t.join("root");
    fs::create_dir_all(&info).unwrap();
    fs::create_dir_all(&root).unwrap();
    for (k, v) in [
        ("CATEGORY", "app-misc"),
        ("PF", "big-1"),
        ("SLOT", "0"),
        ("EAPI", "8"),
        ("BUILD_TIME", "1700000000"),
    ] {
        fs::write(info.join(k), format!("{v}\n")).unwrap();
    }
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..files {
        let dir = image.join(format!("usr/share/big/d{:03}", i / 100));
        fs::create_dir_all(&dir).unwrap();
        // Half random, half repetitive: compression has work to do.
        let mut data = Vec::with_capacity(24 * 1024);
        while data.len() < 12 * 1024 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            data.extend_from_slice(&x.to_le_bytes());
        }
        data.resize(24 * 1024, (i % 251) as u8);
        fs::write(dir.join(format!("f{i:05}")), &data).unwrap();
    }
    let o = vartree(&root)
        .args(["merge", "--sync", "never", "--move-image", "--image"])
        .arg(&image)
        .arg("--build-info")
        .arg(&info)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    root
}

/// Every file in PKGDIR: packages verify and hold every file; nothing else
/// but the index (and Portage's lock file name) is there. Returns the
/// package count.
fn check_pkgdir(pkgdir: &Path, files: u64) -> usize {
    check_pkgdir_cached(pkgdir, files, &mut std::collections::HashSet::new())
}

/// As [`check_pkgdir`], verifying each package file only once.
fn check_pkgdir_cached(
    pkgdir: &Path,
    files: u64,
    seen: &mut std::collections::HashSet<PathBuf>,
) -> usize {
    let mut pkgs = 0;
    let mut stack = vec![pkgdir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd {
            let e = e.unwrap();
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
                continue;
            }
            if d == pkgdir
                && matches!(
                    name.as_str(),
                    "Packages" | "Packages.gz" | ".Packages.portage_lockfile"
                )
            {
                continue;
            }
            assert!(
                name.ends_with(".gpkg.tar") && !name.starts_with('.'),
                "stray file in PKGDIR: {}",
                p.display()
            );
            pkgs += 1;
            if !seen.insert(p.clone()) {
                continue;
            }
            let opts = binpkg::VerifyOptions::default();
            let pkg = binpkg::open(&p, &opts)
                .unwrap_or_else(|e| panic!("{} is not a whole package: {e}", p.display()));
            let summary = pkg
                .for_each_image_entry(|_| Ok::<(), binpkg::Error>(()))
                .unwrap();
            assert_eq!(summary.files, files, "{}", p.display());
        }
    }
    pkgs
}

#[test]
fn killed_quickpkg_never_leaves_a_partial_package() {
    let t = tempfile::tempdir().unwrap();
    let files = 1000;
    let root = big_root(t.path(), files);
    let pkgdir = t.path().join("pkgdir");
    // One uninterrupted run, to know how long a run takes.
    let start = Instant::now();
    let o = vartree(&root)
        .args(["quickpkg", "--pkgdir"])
        .arg(&pkgdir)
        .arg("app-misc/big")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let full = start.elapsed();
    assert_eq!(check_pkgdir(&pkgdir, files as u64), 1);
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let (mut killed, mut finished) = (0, 0);
    let mut seen = std::collections::HashSet::new();
    let runs = 30;
    for i in 0..runs {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let delay = Duration::from_micros(seed % (full.as_micros() as u64 * 11 / 10 + 1));
        let sig = match i % 3 {
            0 => libc::SIGKILL,
            1 => libc::SIGINT,
            _ => libc::SIGTERM,
        };
        let child = vartree(&root)
            .args(["quickpkg", "--pkgdir"])
            .arg(&pkgdir)
            .arg("app-misc/big")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as i32, sig) };
        let out = child.wait_with_output().unwrap();
        match out.status.code() {
            Some(0) => finished += 1,
            Some(c) => {
                assert!(
                    c == 128 + sig,
                    "run {i}: exit {c} after signal {sig}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                killed += 1;
            }
            None => killed += 1,
        }
        check_pkgdir_cached(&pkgdir, files as u64, &mut seen);
    }
    eprintln!("{runs} runs: {killed} interrupted, {finished} finished; one run takes {full:?}");
    assert!(
        killed >= runs / 4,
        "too few runs were interrupted ({killed})"
    );
    // The index lists what is there, and a later run still works.
    let o = vartree(&root)
        .args(["quickpkg", "--pkgdir"])
        .arg(&pkgdir)
        .arg("app-misc/big")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // A run interrupted after it published has a whole package too.
    let n = check_pkgdir(&pkgdir, files as u64);
    assert!(
        (finished + 2..=runs + 2).contains(&n),
        "{n} packages after {finished} finished runs"
    );
    // The index never names a file that is not there; the last publish
    // listed every package, those of killed runs included.
    let index = fs::read_to_string(pkgdir.join("Packages")).unwrap();
    let paths: Vec<&str> = index
        .lines()
        .filter_map(|l| l.strip_prefix("PATH: "))
        .collect();
    for p in &paths {
        assert!(pkgdir.join(p).is_file(), "Packages names missing {p}");
    }
    assert_eq!(paths.len(), n, "{index}");
}

#[test]
fn concurrent_quickpkg_runs_get_distinct_build_ids() {
    let t = tempfile::tempdir().unwrap();
    let root = big_root(t.path(), 200);
    let pkgdir = t.path().join("pkgdir");
    let children: Vec<_> = (0..4)
        .map(|_| {
            vartree(&root)
                .args(["--json", "quickpkg", "--pkgdir"])
                .arg(&pkgdir)
                .arg("app-misc/big")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut ids = Vec::new();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        ids.push(v[0]["build_id"].as_u64().unwrap());
    }
    ids.sort();
    assert_eq!(ids, [1, 2, 3, 4]);
    assert_eq!(check_pkgdir(&pkgdir, 200), 4);
    let index = fs::read_to_string(pkgdir.join("Packages")).unwrap();
    assert_eq!(index.matches("CPV: app-misc/big-1\n").count(), 4, "{index}");
}

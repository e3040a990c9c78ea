//! Concurrent merges into one root, and the VDB lock shared with Portage.
//!
//! * Eight `vartree merge` processes at once into one root: four same-slot
//!   upgrades of packages installed beforehand and four new packages, all
//!   sharing directories (two of the new ones also create the same new
//!   directory). Everything must be merged and recorded, and staging must
//!   really overlap: a poller samples, every few milliseconds, the size of
//!   every journal (`var/db/.vartree/tx-PID-*.journal`) and which process
//!   holds the VDB lock (the `lock:` line of `/proc/PID/fdinfo` for its
//!   descriptor of `var/db/.pkg.portage_lockfile`). A journal that grew
//!   between two samples while its owner did not hold the VDB lock (and the
//!   journal still existed afterwards: a merge keeps the lock from the
//!   moment it takes it for its commit until its journal is gone) was
//!   written by lock-free staging; two such journals in one interval are
//!   two merges staging at the same time.
//! * A Portage process holding the VDB lock (`portage.locks.lockdir`, as
//!   `vardbapi.lock()`) makes `vartree merge` wait, and while `vartree`
//!   holds it Portage's non-blocking attempt fails and its blocking one
//!   returns only once the transaction is complete. Orderings are checked
//!   with CLOCK_MONOTONIC timestamps taken on the causally right side of
//!   each event, not with sleeps.
//!
//! Python: `$VARTREE_PORTAGE_PYTHON`, else `<workspace>/.venv/bin/python`;
//! without it the Portage tests are skipped with a notice, unless
//! `VARTREE_REQUIRE_PORTAGE=1`.
#![allow(clippy::print_stderr)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(120);

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[repr(C)]
struct Timespec {
    tv_sec: i64,
    tv_nsec: i64,
}

extern "C" {
    fn clock_gettime(clk: i32, ts: *mut Timespec) -> i32;
}

/// CLOCK_MONOTONIC in nanoseconds (Python's `time.CLOCK_MONOTONIC`).
fn now_ns() -> u64 {
    const CLOCK_MONOTONIC: i32 = 1;
    let mut ts = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec of the C layout on 64-bit
    // Linux for the duration of the call.
    let rc = unsafe { clock_gettime(CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(rc, 0);
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn ms(ns: u64, base: u64) -> f64 {
    (ns as f64 - base as f64) / 1e6
}

/// A scratch directory, on tmpfs (`/dev/shm`) when there is one: on a busy
/// disk the journal's fsyncs (and `--sync always`) would make the runs slow
/// and erratic, and what is tested here is the interplay of processes, not
/// the disk. `VARTREE_TEST_TMPDIR` overrides.
fn scratch() -> tempfile::TempDir {
    let dir = std::env::var_os("VARTREE_TEST_TMPDIR")
        .map(PathBuf::from)
        .or_else(|| {
            let shm = PathBuf::from("/dev/shm");
            tempfile::tempdir_in(&shm).is_ok().then_some(shm)
        });
    match dir {
        Some(d) => tempfile::tempdir_in(d).unwrap(),
        None => tempfile::tempdir().unwrap(),
    }
}

fn cmd(root: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vartree"));
    c.arg("--root")
        .arg(root)
        .env_remove("ROOT")
        .env_remove("EPREFIX")
        .env_remove("VARTREE_CRASH_AT")
        .env_remove("VARTREE_SIGNAL_AT")
        .env_remove("VARTREE_CRASH_COUNT");
    c
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

/// A package: image, build-info, and what it installs (path → content).
struct Pkg {
    cpv: String,
    image: PathBuf,
    info: PathBuf,
    files: BTreeMap<String, String>,
}

fn pkg(base: &Path, cpv: &str, files: BTreeMap<String, String>) -> Pkg {
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
    for (path, content) in &files {
        let p = image.join(path.trim_start_matches('/'));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, content).unwrap();
    }
    Pkg {
        cpv: cpv.to_owned(),
        image,
        info,
        files,
    }
}

fn merge_cmd(root: &Path, p: &Pkg, sync: &str) -> Command {
    let mut c = cmd(root);
    c.args(["merge", "--sync", sync, "--image"])
        .arg(&p.image)
        .arg("--build-info")
        .arg(&p.info);
    c
}

/// `obj` and `sym` paths of an installed entry's CONTENTS.
fn contents_paths(root: &Path, cpv: &str) -> BTreeSet<String> {
    let c = fs::read_to_string(root.join("var/db/pkg").join(cpv).join("CONTENTS"))
        .unwrap_or_else(|e| panic!("CONTENTS of {cpv}: {e}"));
    c.lines()
        .filter_map(|l| {
            let (kind, rest) = l.split_once(' ')?;
            match kind {
                "obj" => Some(rest.rsplitn(3, ' ').nth(2)?.to_owned()),
                "sym" => Some(rest.split(" -> ").next()?.to_owned()),
                _ => None,
            }
        })
        .collect()
}

fn counters(root: &Path) -> Vec<i64> {
    let mut out = Vec::new();
    for cat in fs::read_dir(root.join("var/db/pkg")).unwrap() {
        let cat = cat.unwrap().path();
        if !cat.is_dir() {
            continue;
        }
        for p in fs::read_dir(&cat).unwrap() {
            let p = p.unwrap().path();
            if p.is_dir() {
                let c = fs::read_to_string(p.join("COUNTER")).unwrap();
                out.push(c.trim().parse().unwrap());
            }
        }
    }
    out
}

/// No temp names, no `-MERGING-`, no journal anywhere under `dir`.
fn no_leftovers(dir: &Path) {
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        assert!(
            !name.contains(".vartree") && !name.contains("-MERGING-"),
            "left behind: {}",
            e.path().display()
        );
        if e.file_type().unwrap().is_dir() {
            no_leftovers(&e.path());
        }
    }
}

// ---------------------------------------------------------------------
// Observing merges from outside

/// Whether `pid` holds a lock through its descriptor of the VDB lock file:
/// `Some(true)` on the lock file, `Some(false)` on a lock file that is no
/// longer linked, `None` no lock.
///
/// A lock on a lock file that is no longer linked does not count: the
/// previous holder removes the file when it lets go (Portage's protocol), and
/// a waiter that was blocked on it is granted that stale lock for a moment,
/// sees that the path names another file now, drops it and tries again.
fn vdb_lock_of(pid: u32) -> Option<bool> {
    let fds = fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    for fd in fds.flatten() {
        let Ok(target) = fs::read_link(fd.path()) else {
            continue;
        };
        let target = target.to_string_lossy();
        if !target.contains("var/db/.pkg.portage_lockfile") {
            continue;
        }
        let info = format!("/proc/{pid}/fdinfo/{}", fd.file_name().to_string_lossy());
        if fs::read_to_string(info).is_ok_and(|s| s.lines().any(|l| l.starts_with("lock:"))) {
            return Some(!target.ends_with(" (deleted)"));
        }
    }
    None
}

fn holds_vdb_lock(pid: u32) -> bool {
    vdb_lock_of(pid) == Some(true)
}

/// The owner PID of a journal `tx-PID-TIME.journal`.
fn journal_pid(name: &str) -> Option<u32> {
    name.strip_prefix("tx-")?.split('-').next()?.parse().ok()
}

#[derive(Default, Debug, Clone)]
struct Timeline {
    /// The journal was first seen (BEGIN: staging starts).
    begin: Option<u64>,
    /// First sample showing the VDB lock held with the journal present.
    locked: Option<u64>,
    /// That sample's index, and the position of this merge in the order
    /// the holders are checked within a sample.
    locked_key: Option<(usize, usize)>,
    /// First sample after the journal was gone.
    done: Option<u64>,
    /// That sample's index.
    done_idx: Option<usize>,
    /// Samples in which the journal had grown without the lock.
    lockfree_growth: usize,
}

#[derive(Default, Debug)]
struct Observed {
    samples: usize,
    timelines: BTreeMap<u32, Timeline>,
    /// Largest number of journals that grew lock-free in one interval.
    max_parallel_staging: usize,
    /// Intervals in which ≥ 2 journals grew lock-free.
    parallel_intervals: usize,
    /// Intervals in which a journal grew lock-free while another merge held
    /// the VDB lock at both ends.
    staging_while_locked: usize,
    /// Largest number of processes seen holding the lock in one sample
    /// (the sample is not atomic across processes: only reported).
    max_holders: usize,
    /// Samples that caught a merge holding a lock on a removed lock file.
    stale_grants: usize,
}

/// Sample `root` until `stop` is set.
fn observe(root: &Path, pids: &[u32], stop: &AtomicBool) -> Observed {
    let jdir = root.join("var/db/.vartree");
    let mut out = Observed::default();
    let mut prev: HashMap<u32, u64> = HashMap::new();
    let mut prev_holders: Vec<u32> = Vec::new();
    loop {
        let stopping = stop.load(Ordering::SeqCst);
        let t = now_ns();
        // 1. Journal sizes.
        let mut sizes: HashMap<u32, (PathBuf, u64)> = HashMap::new();
        if let Ok(rd) = fs::read_dir(&jdir) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let (Some(pid), Ok(m)) = (journal_pid(&name), e.metadata()) {
                    sizes.insert(pid, (e.path(), m.len()));
                }
            }
        }
        // 2. Lock holders.
        let mut holders: Vec<u32> = Vec::new();
        for &p in pids {
            match vdb_lock_of(p) {
                Some(true) => holders.push(p),
                Some(false) => out.stale_grants += 1,
                None => {}
            }
        }
        out.max_holders = out.max_holders.max(holders.len());
        // 3. The journals still there?
        let mut growers = 0;
        let mut grower_pids = Vec::new();
        for (pid, (path, size)) in &sizes {
            let still = path.exists();
            let tl = out.timelines.entry(*pid).or_default();
            tl.begin.get_or_insert(t);
            if holders.contains(pid) && still && tl.locked.is_none() {
                tl.locked = Some(t);
                let pos = pids.iter().position(|p| p == pid).unwrap();
                tl.locked_key = Some((out.samples, pos));
            }
            if let Some(&before) = prev.get(pid) {
                if *size > before && !holders.contains(pid) && still {
                    growers += 1;
                    grower_pids.push(*pid);
                    tl.lockfree_growth += 1;
                }
            }
        }
        for (pid, tl) in out.timelines.iter_mut() {
            if tl.done.is_none() && !sizes.contains_key(pid) {
                tl.done = Some(t);
                tl.done_idx = Some(out.samples);
            }
        }
        if growers >= 2 {
            out.parallel_intervals += 1;
        }
        if growers >= 1
            && holders
                .iter()
                .any(|h| !grower_pids.contains(h) && prev_holders.contains(h))
        {
            out.staging_while_locked += 1;
        }
        prev_holders = holders;
        out.max_parallel_staging = out.max_parallel_staging.max(growers);
        prev = sizes.into_iter().map(|(p, (_, s))| (p, s)).collect();
        out.samples += 1;
        if stopping {
            return out;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

// ---------------------------------------------------------------------
// (a) parallel merges

fn files_of(name: &str, n: usize, version: u32, drop_every: usize) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for i in 0..n {
        if drop_every > 0 && i % drop_every == 0 {
            continue;
        }
        // Shared directories (owned by base/dirs-1, installed beforehand).
        m.insert(
            format!("/usr/share/common/c{}/{name}-{i:04}", i % 10),
            format!("{name} {i} v{version}\n"),
        );
    }
    // A private new tree, and a file in a shared binary directory.
    for i in 0..n / 10 {
        m.insert(
            format!("/usr/share/{name}/s{}/f{i:03}", i % 4),
            format!("{name} private {i} v{version}\n"),
        );
    }
    m.insert(format!("/usr/bin/{name}"), format!("{name} v{version}\n"));
    m
}

#[test]
fn eight_parallel_merges_all_land_and_stage_concurrently() {
    let t = scratch();
    let root = t.path().join("root");
    fs::create_dir_all(&root).unwrap();
    let pk = t.path().join("pkgs");
    const N: usize = 700;
    // Installed beforehand: the shared directories' owner and four packages
    // to be upgraded.
    let mut dirs = BTreeMap::new();
    for c in 0..10 {
        dirs.insert(format!("/usr/share/common/c{c}/.keep_base"), String::new());
    }
    dirs.insert("/usr/bin/base".into(), "base\n".into());
    let base = pkg(&pk, "base/dirs-1", dirs);
    ok(&merge_cmd(&root, &base, "never").output().unwrap(), "base");
    let mut old = Vec::new();
    for k in 0..4 {
        let p = pkg(
            &pk,
            &format!("app/up{k}-1"),
            files_of(&format!("up{k}"), N, 1, 0),
        );
        ok(&merge_cmd(&root, &p, "never").output().unwrap(), &p.cpv);
        old.push(p);
    }
    // The eight merges: four upgrades (files changed, some removed, new
    // ones added), four new packages; new0 and new1 both create the new
    // directory /usr/share/fresh.
    let mut new = Vec::new();
    for k in 0..4 {
        let mut f = files_of(&format!("up{k}"), N + 60, 2, 9);
        f.insert(format!("/usr/share/up{k}/only-in-2"), "2\n".into());
        new.push(pkg(&pk, &format!("app/up{k}-2"), f));
    }
    for k in 0..4 {
        let mut f = files_of(&format!("new{k}"), N, 1, 0);
        if k < 2 {
            for i in 0..20 {
                f.insert(format!("/usr/share/fresh/new{k}-{i}"), format!("{k} {i}\n"));
            }
        }
        new.push(pkg(&pk, &format!("app/new{k}-1"), f));
    }

    let t0 = now_ns();
    let started = Instant::now();
    let children: Vec<Child> = new
        .iter()
        .map(|p| {
            merge_cmd(&root, p, "never")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let pids: Vec<u32> = children.iter().map(Child::id).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let poller = {
        let root = root.clone();
        let pids = pids.clone();
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || observe(&root, &pids, &stop))
    };
    // Meanwhile `vartree recover` runs again and again: it must leave the
    // running transactions alone (they hold their journals' locks).
    let recovers = {
        let root = root.clone();
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut runs = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let o = cmd(&root).args(["--json", "recover"]).output().unwrap();
                runs.push(o);
            }
            runs
        })
    };
    for (c, p) in children.into_iter().zip(&new) {
        ok(&c.wait_with_output().unwrap(), &p.cpv);
    }
    let wall = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    let obs = poller.join().unwrap();
    let recovers = recovers.join().unwrap();
    for o in &recovers {
        ok(o, "recover during the merges");
        assert_eq!(
            String::from_utf8_lossy(&o.stdout).trim(),
            "[]",
            "`recover` touched a running transaction: {}",
            String::from_utf8_lossy(&o.stdout)
        );
    }

    eprintln!(
        "8 parallel merges: {:.0} ms wall; {} samples; per merge (ms from start): journal BEGIN seen / VDB lock seen / journal gone / lock-free growth samples:",
        wall.as_secs_f64() * 1e3,
        obs.samples
    );
    for (pid, p) in pids.iter().zip(&new) {
        let tl = obs.timelines.get(pid).cloned().unwrap_or_default();
        let f = |x: Option<u64>| x.map_or("-".to_owned(), |v| format!("{:.0}", ms(v, t0)));
        eprintln!(
            "  {:<16} pid {pid}: {:>6} {:>6} {:>6}  {}",
            p.cpv,
            f(tl.begin),
            f(tl.locked),
            f(tl.done),
            tl.lockfree_growth
        );
    }
    eprintln!(
        "  intervals with >= 2 journals growing lock-free: {} (at most {} at once); a journal growing lock-free while another merge held the lock: {}; `vartree recover` ran {} times meanwhile; stale lock grants caught: {}",
        obs.parallel_intervals, obs.max_parallel_staging, obs.staging_while_locked, recovers.len(), obs.stale_grants
    );

    // Everything landed and is recorded.
    for p in &new {
        let recorded = contents_paths(&root, &p.cpv);
        let expected: BTreeSet<String> = p.files.keys().cloned().collect();
        assert_eq!(
            recorded, expected,
            "{}: CONTENTS lists exactly its files",
            p.cpv
        );
        for (path, content) in &p.files {
            let got = fs::read_to_string(root.join(path.trim_start_matches('/')))
                .unwrap_or_else(|e| panic!("{}: {path}: {e}", p.cpv));
            assert_eq!(&got, content, "{}: {path}", p.cpv);
        }
    }
    for o in &old {
        assert!(
            !root.join("var/db/pkg").join(&o.cpv).exists(),
            "{} was replaced",
            o.cpv
        );
    }
    // Files of the old versions that the new ones dropped are gone; the
    // shared directories hold exactly the union of what is installed.
    let installed: BTreeSet<String> = new
        .iter()
        .chain([&base])
        .flat_map(|p| p.files.keys().cloned())
        .collect();
    for c in 0..10 {
        let dir = format!("/usr/share/common/c{c}");
        let on_disk: BTreeSet<String> = fs::read_dir(root.join(dir.trim_start_matches('/')))
            .unwrap()
            .map(|e| format!("{dir}/{}", e.unwrap().file_name().to_string_lossy()))
            .collect();
        let want: BTreeSet<String> = installed
            .iter()
            .filter(|p| p.starts_with(&format!("{dir}/")))
            .cloned()
            .collect();
        assert_eq!(on_disk, want, "{dir} holds exactly the installed files");
    }
    let o = cmd(&root).arg("check").output().unwrap();
    ok(&o, "check");
    let mut cs = counters(&root);
    assert_eq!(cs.len(), 9);
    cs.sort();
    cs.dedup();
    assert_eq!(cs.len(), 9, "COUNTERs are unique");
    no_leftovers(&root);
    assert!(!root.join("var/db/.vartree").exists());

    // The locked phases never overlapped. A merge keeps the VDB lock from
    // the moment it takes it for its commit until its journal is gone. So
    // once merge B has been seen holding the lock (in sample k), the journal
    // of every merge that held it before B must be gone by the next listing
    // of the journals (sample k + 1); else both held it at once. Within one
    // sample, the holder checked first held the lock first.
    let mut phases: Vec<((usize, usize), usize)> = obs
        .timelines
        .values()
        .filter_map(|t| Some((t.locked_key?, t.done_idx?)))
        .collect();
    phases.sort();
    assert!(phases.len() >= 2, "the locked phases were seen: {obs:?}");
    for w in phases.windows(2) {
        assert!(
            w[0].1 <= w[1].0 .0 + 1,
            "two merges were seen inside the VDB lock at once: {phases:?}"
        );
    }
    // Staging overlapped: two merges appended staging records to their
    // journals in the same sampling interval while neither held the lock.
    let staged: Vec<_> = obs
        .timelines
        .values()
        .filter(|t| t.lockfree_growth > 0)
        .collect();
    assert!(
        staged.len() >= 2,
        "lock-free staging was observed for {} merges only: {obs:?}",
        staged.len()
    );
    assert!(
        obs.parallel_intervals > 0,
        "no two merges were seen staging at the same time: {obs:?}"
    );
}

#[test]
fn racing_merges_of_colliding_packages_one_wins_the_others_change_nothing() {
    let t = scratch();
    let root = t.path().join("root");
    fs::create_dir_all(root.join("usr/bin")).unwrap();
    let pk = t.path().join("pkgs");
    // Six new packages, each with its own files, all installing
    // /usr/bin/same (a collision) and a file in the new directory
    // /usr/share/newshared; staged at the same time.
    let pkgs: Vec<Pkg> = (0..6)
        .map(|k| {
            let mut f = files_of(&format!("c{k}"), 300, 1, 0);
            f.insert("/usr/bin/same".into(), format!("package {k}\n"));
            f.insert(format!("/usr/share/newshared/x{k}"), "x\n".into());
            pkg(&pk, &format!("app/c{k}-1"), f)
        })
        .collect();
    let children: Vec<Child> = pkgs
        .iter()
        .map(|p| {
            merge_cmd(&root, p, "never")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outs: Vec<Output> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let winners: Vec<usize> = (0..6).filter(|&k| outs[k].status.success()).collect();
    assert_eq!(winners.len(), 1, "exactly one merge wins: {winners:?}");
    let w = winners[0];
    for (k, o) in outs.iter().enumerate().filter(|(k, _)| *k != w) {
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "app/c{k}-1: {err}");
        assert!(
            err.contains(&format!("/usr/bin/same (owned by app/c{w}-1)")),
            "app/c{k}-1: the error names the path and its owner: {err}"
        );
        assert!(!root.join(format!("usr/share/c{k}")).exists());
        assert!(!root.join(format!("var/db/pkg/app/c{k}-1")).exists());
    }
    // The root holds the winner and nothing of the others.
    assert_eq!(
        fs::read_to_string(root.join("usr/bin/same")).unwrap(),
        format!("package {w}\n")
    );
    let shared: BTreeSet<String> = fs::read_dir(root.join("usr/share/newshared"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(shared, BTreeSet::from([format!("x{w}")]));
    let expected: BTreeSet<String> = pkgs[w].files.keys().cloned().collect();
    assert_eq!(contents_paths(&root, &pkgs[w].cpv), expected);
    ok(&cmd(&root).arg("check").output().unwrap(), "check");
    no_leftovers(&root);
    assert!(!root.join("var/db/.vartree").exists());
}

/// md5 of `data`, hex (the `md5sum` tool).
fn md5_hex(data: &[u8]) -> String {
    let mut c = Command::new("md5sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(data).unwrap();
    let o = c.wait_with_output().unwrap();
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

/// Parallel upgrades that all change the config memory: each remembers the
/// update of its edited config file, and forgets the entry of a protected
/// file its new version no longer has. Every merge reads the memory again
/// under the VDB lock and stages its changes on top of what the merges
/// before it wrote, so no entry is lost, none is resurrected, and an entry
/// no merge touches stays.
#[test]
fn parallel_merges_keep_every_config_memory_entry() {
    const N: usize = 6;
    let t = scratch();
    let root = t.path().join("root");
    fs::create_dir_all(&root).unwrap();
    let pk = t.path().join("pkgs");
    let conf = |k: usize, v: u32| format!("cfg{k} v{v}\n");
    let version = |k: usize, v: u32, gone: bool| {
        let mut f = files_of(&format!("cfg{k}"), 60, v, 0);
        f.insert(format!("/etc/cfg{k}/cfg{k}.conf"), conf(k, v));
        if gone {
            f.insert(format!("/etc/cfg{k}/gone.conf"), "gone\n".into());
        }
        pkg(&pk, &format!("app/cfg{k}-{v}"), f)
    };
    for k in 0..N {
        ok(
            &merge_cmd(&root, &version(k, 1, true), "never")
                .output()
                .unwrap(),
            "v1",
        );
        // The administrator edits the config file.
        fs::write(root.join(format!("etc/cfg{k}/cfg{k}.conf")), "edited\n").unwrap();
    }
    // Entries the upgrades must forget (their files leave the packages),
    // and one nobody touches.
    let cm = root.join("var/lib/portage/config");
    fs::create_dir_all(cm.parent().unwrap()).unwrap();
    let mut lines = String::from("/etc/unrelated.conf 00000000000000000000000000000000\n");
    for k in 0..N {
        lines.push_str(&format!(
            "/etc/cfg{k}/gone.conf 11111111111111111111111111111111\n"
        ));
    }
    fs::write(&cm, &lines).unwrap();
    for v in 2..=3u32 {
        let pkgs: Vec<Pkg> = (0..N).map(|k| version(k, v, false)).collect();
        let children: Vec<Child> = pkgs
            .iter()
            .map(|p| {
                merge_cmd(&root, p, "never")
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for (k, c) in children.into_iter().enumerate() {
            ok(&c.wait_with_output().unwrap(), &format!("app/cfg{k}-{v}"));
        }
        let memory = fs::read_to_string(&cm).unwrap();
        let mut keys: Vec<&str> = memory
            .lines()
            .map(|l| l.split(' ').next().unwrap())
            .collect();
        keys.sort();
        let mut want: Vec<String> = (0..N)
            .map(|k| format!("/etc/cfg{k}/cfg{k}.conf"))
            .chain(["/etc/unrelated.conf".to_owned()])
            .collect();
        want.sort();
        assert_eq!(keys, want, "round {v}: {memory}");
        for k in 0..N {
            let line = format!(
                "/etc/cfg{k}/cfg{k}.conf {}\n",
                md5_hex(conf(k, v).as_bytes())
            );
            assert!(memory.contains(&line), "round {v}: {line} in {memory}");
            assert_eq!(
                fs::read_to_string(root.join(format!("etc/cfg{k}/._cfg{:04}_cfg{k}.conf", v - 2)))
                    .unwrap(),
                conf(k, v)
            );
        }
    }
    no_leftovers(&root);
    let left: Vec<_> = fs::read_dir(cm.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["config"]);
}

// ---------------------------------------------------------------------
// (b) the VDB lock against Portage

fn portage_python() -> Option<PathBuf> {
    let python = match std::env::var_os("VARTREE_PORTAGE_PYTHON") {
        Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
        _ => Some(workspace().join(".venv/bin/python")).filter(|p| p.exists()),
    };
    if python.is_none() {
        assert!(
            std::env::var("VARTREE_REQUIRE_PORTAGE").as_deref() != Ok("1"),
            "VARTREE_REQUIRE_PORTAGE=1 but no Portage Python"
        );
        eprintln!("SKIPPED: no Portage Python (set VARTREE_PORTAGE_PYTHON or create .venv)");
    }
    python
}

/// An event from a child's output, with the moment the test read it.
#[derive(Debug, Clone)]
struct Line {
    text: String,
    seen: u64,
}

/// Lines of a child's stdout or stderr, as they come (and raw chunks, for
/// Portage's waiting message that has no newline until the lock is granted).
fn reader(mut r: impl Read + Send + 'static) -> (mpsc::Receiver<Line>, Arc<Mutex<String>>) {
    let (tx, rx) = mpsc::channel();
    let all = Arc::new(Mutex::new(String::new()));
    let all2 = Arc::clone(&all);
    std::thread::spawn(move || {
        let mut pending = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = match r.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let seen = now_ns();
            all2.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
            pending.extend_from_slice(&buf[..n]);
            while let Some(nl) = pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = pending.drain(..=nl).collect();
                let text = String::from_utf8_lossy(&line).trim_end().to_owned();
                let _ = tx.send(Line { text, seen });
            }
        }
    });
    (rx, all)
}

/// The first line satisfying `pred`, or `None` on EOF or timeout.
fn wait_line(rx: &mpsc::Receiver<Line>, pred: impl Fn(&str) -> bool) -> Option<Line> {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) if pred(&l.text) => return Some(l),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
}

/// `@@VT WORD k=v …` → the value of `key`.
fn field(line: &str, key: &str) -> Option<u64> {
    line.split(' ')
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.parse().ok())
}

struct Helper {
    child: Child,
    stdin: Option<ChildStdin>,
    out: mpsc::Receiver<Line>,
    all: Arc<Mutex<String>>,
    err: Arc<Mutex<String>>,
}

impl Helper {
    fn spawn(python: &Path, script: &str, args: &[&Path]) -> Helper {
        let mut child = Command::new(python)
            .arg("-u")
            .arg(workspace().join("tests/portage").join(script))
            .args(args)
            .env("NOCOLOR", "true")
            .env("TERM", "dumb")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the Portage helper");
        let (out, all) = reader(child.stdout.take().unwrap());
        let (_, err) = reader(child.stderr.take().unwrap());
        let stdin = child.stdin.take();
        Helper {
            child,
            stdin,
            out,
            all,
            err,
        }
    }

    /// Wait for `@@VT WORD` (the first of several words).
    fn expect(&self, words: &[&str]) -> Line {
        let prefixes: Vec<String> = words.iter().map(|w| format!("@@VT {w} ")).collect();
        wait_line(&self.out, |t| {
            prefixes.iter().any(|p| t.starts_with(p.as_str()))
        })
        .unwrap_or_else(|| {
            panic!(
                "the Portage helper did not say {words:?}:\n{}\n{}",
                self.all.lock().unwrap(),
                self.err.lock().unwrap()
            )
        })
    }

    fn send(&mut self, line: &str) {
        let s = self.stdin.as_mut().unwrap();
        s.write_all(format!("{line}\n").as_bytes()).unwrap();
        s.flush().unwrap();
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn portage_holding_the_vdb_lock_makes_vartree_merge_wait() {
    let Some(py) = portage_python() else { return };
    let t = scratch();
    let root = t.path().join("root");
    fs::create_dir_all(&root).unwrap();
    let mut files = BTreeMap::new();
    for i in 0..1500 {
        files.insert(format!("/usr/share/w/d{}/f{i}", i % 20), format!("{i}\n"));
    }
    let p = pkg(&t.path().join("pkgs"), "app/waiter-1", files);

    let mut helper = Helper::spawn(
        &py,
        "lock_helper.py",
        &[Path::new("hold"), Path::new("vdb"), &root],
    );
    helper.expect(&["ready"]);
    let locked = helper.expect(&["locked"]);
    let portage_locked = field(&locked.text, "t").unwrap();

    let mut vt = merge_cmd(&root, &p, "never")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (vt_err, vt_err_all) = reader(vt.stderr.take().unwrap());
    let (_, vt_out_all) = reader(vt.stdout.take().unwrap());
    let lockfile = root.join("var/db/.pkg.portage_lockfile");
    let waiting = wait_line(&vt_err, |l| l.contains("waiting for lock on")).unwrap_or_else(|| {
        panic!(
            "vartree did not say it waits: {}",
            vt_err_all.lock().unwrap()
        )
    });
    assert!(
        waiting.text.contains(&lockfile.display().to_string()),
        "the message names the lock file: {}",
        waiting.text
    );
    // Watch the journal directory from now on.
    let stop = Arc::new(AtomicBool::new(false));
    let first_journal = {
        let jdir = root.join("var/db/.vartree");
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let t = now_ns();
                if fs::read_dir(&jdir).is_ok_and(|mut d| d.next().is_some()) {
                    return Some(t);
                }
                std::thread::sleep(Duration::from_micros(500));
            }
            None
        })
    };
    // Give vartree ample time to (wrongly) get through.
    std::thread::sleep(Duration::from_millis(500));
    let still_waiting = now_ns();
    assert!(
        vt.try_wait().unwrap().is_none(),
        "vartree finished while Portage held the lock: {}",
        vt_err_all.lock().unwrap()
    );
    assert!(!root.join("var/db/pkg/app/waiter-1").exists());
    assert!(
        !root.join("var/db/.vartree").exists(),
        "no transaction began"
    );

    helper.send("release");
    let unlocking = field(&helper.expect(&["unlocking"]).text, "t").unwrap();
    helper.expect(&["released"]);
    let status = vt.wait().unwrap();
    let vt_done = now_ns();
    stop.store(true, Ordering::SeqCst);
    let journal_seen = first_journal.join().unwrap();
    assert!(
        status.success(),
        "vartree merge failed: {}{}",
        vt_out_all.lock().unwrap(),
        vt_err_all.lock().unwrap()
    );
    assert!(root.join("var/db/pkg/app/waiter-1/CONTENTS").exists());
    assert!(root.join("usr/share/w/d0/f0").exists());
    eprintln!(
        "Portage locked at 0 ms; vartree said it waits at {:.1} ms; still waiting at {:.1} ms; Portage unlocking at {:.1} ms; vartree's journal first seen at {}; vartree done at {:.1} ms",
        ms(waiting.seen, portage_locked),
        ms(still_waiting, portage_locked),
        ms(unlocking, portage_locked),
        journal_seen.map_or("(not seen)".into(), |j| format!("{:.1} ms", ms(j, portage_locked))),
        ms(vt_done, portage_locked),
    );
    assert!(waiting.seen > portage_locked && still_waiting < unlocking);
    // The transaction began only after Portage let go.
    let j = journal_seen.expect("the merge's journal was seen");
    assert!(
        j > unlocking,
        "vartree's journal appeared before Portage released the lock"
    );
}

/// A root with app/big-1 (many files) installed, and app/big-2 replacing
/// every file: the merge's locked phase (re-plan, entry, renames, removing
/// the old version, `--sync always`) takes a while.
fn big_upgrade(t: &Path, n: usize) -> (PathBuf, Pkg) {
    let root = t.join(format!("root-{n}"));
    fs::create_dir_all(&root).unwrap();
    let pk = t.join(format!("pkgs-{n}"));
    let f = |v: u32| -> BTreeMap<String, String> {
        (0..n)
            .map(|i| {
                (
                    format!("/usr/share/big/d{}/f{i}", i % 50),
                    format!("version {v} file {i}\n"),
                )
            })
            .collect()
    };
    let one = pkg(&pk, "app/big-1", f(1));
    ok(
        &merge_cmd(&root, &one, "never").output().unwrap(),
        "app/big-1",
    );
    let two = pkg(&pk, "app/big-2", f(2));
    (root, two)
}

#[test]
fn vartree_holding_the_vdb_lock_makes_portage_wait() {
    let Some(py) = portage_python() else { return };
    let t = scratch();
    let mut n = 2000;
    for attempt in 1..=3 {
        let (root, two) = big_upgrade(t.path(), n);
        let mut helper = Helper::spawn(&py, "lockhold_wait.py", &[&root, Path::new(&two.cpv)]);
        helper.expect(&["ready"]);
        let mut vt = merge_cmd(&root, &two, "always")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = vt.id();
        let (_, vt_err_all) = reader(vt.stderr.take().unwrap());
        let (_, vt_out_all) = reader(vt.stdout.take().unwrap());
        // Wait until vartree holds the VDB lock for its commit phase: its
        // journal exists and /proc shows the lock held.
        let jdir = root.join("var/db/.vartree");
        let deadline = Instant::now() + TIMEOUT;
        let mut seen_locked = None;
        while Instant::now() < deadline {
            let journal = fs::read_dir(&jdir).is_ok_and(|mut d| d.next().is_some());
            if journal && holds_vdb_lock(pid) {
                seen_locked = Some(now_ns());
                break;
            }
            if vt.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_micros(300));
        }
        let Some(seen_locked) = seen_locked else {
            let _ = vt.wait();
            eprintln!("attempt {attempt}: the locked phase was not caught; a larger package");
            n *= 2;
            continue;
        };
        helper.send("go");
        let first = helper.expect(&["busy", "free"]);
        if first.text.starts_with("@@VT free") {
            // vartree was done before Portage's attempt: too short.
            helper.send("release");
            helper.expect(&["released"]);
            ok(&vt.wait_with_output().unwrap(), "app/big-2");
            eprintln!(
                "attempt {attempt}: Portage came too late ({}); a larger package",
                first.text
            );
            n *= 2;
            continue;
        }
        let busy_t = field(&first.text, "t").unwrap();
        // While Portage waits, vartree is still inside its transaction.
        let locked = helper.expect(&["locked"]);
        let locked_t = field(&locked.text, "t").unwrap();
        let status = vt.wait().unwrap();
        let vt_done = now_ns();
        assert!(
            status.success(),
            "vartree merge failed: {}{}",
            vt_out_all.lock().unwrap(),
            vt_err_all.lock().unwrap()
        );
        helper.send("release");
        helper.expect(&["released"]);
        let portage_out = helper.all.lock().unwrap().clone() + &helper.err.lock().unwrap();
        eprintln!(
            "{n} files: vartree seen holding the lock at 0 ms; Portage non-blocking attempt failed at {:.1} ms ({}); Portage got the lock at {:.1} ms ({}); vartree exit seen at {:.1} ms; Portage printed 'waiting for lock': {}",
            ms(busy_t, seen_locked),
            first.text,
            ms(locked_t, seen_locked),
            locked.text,
            ms(vt_done, seen_locked),
            portage_out.contains("waiting for lock on")
        );
        assert!(busy_t > seen_locked);
        assert!(
            field(&first.text, "journals") == Some(1),
            "Portage's attempt failed while vartree's transaction was running: {}",
            first.text
        );
        assert!(locked_t > busy_t);
        // Portage got the lock only once vartree's transaction was complete:
        // journal gone, the new entry published, the old one removed.
        assert_eq!(field(&locked.text, "journals"), Some(0), "{}", locked.text);
        assert_eq!(field(&locked.text, "entry"), Some(1), "{}", locked.text);
        assert_eq!(field(&locked.text, "old"), Some(0), "{}", locked.text);
        assert!(
            portage_out.contains("waiting for lock on"),
            "Portage said it waits: {portage_out}"
        );
        return;
    }
    panic!("Portage's lock attempt never landed inside vartree's locked phase");
}

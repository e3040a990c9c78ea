//! Real `SIGKILL` at random moments of large merges and unmerges.
//!
//! The crash-point harness (`crash.rs`) stops a small transaction at every
//! mutating operation it knows of. This test does not rely on any hook: it
//! starts `vartree merge` (or `unmerge`) as a child process on a copy of a
//! prepared root, lets it run for a random time drawn uniformly from the
//! whole duration of that operation (measured first, on three uninterrupted
//! runs), sends `SIGKILL`, runs `vartree recover` (in about half the runs
//! that left a journal, kills that too at a random moment and runs it
//! again) and checks that the root holds exactly the old or exactly the new
//! state: a snapshot of the whole root compared with reference snapshots,
//! no temp names, no `-MERGING-`, no journal, `vartree check` as in that
//! state, unique COUNTERs; a kill before the commit point (per the journal
//! left behind) must roll back, one after it must roll forward; with
//! `--move-image`, a rolled-back image is whole again; and on a sample of
//! the roots Portage's own vardbapi reads the VDB without a warning.
//!
//! 200 killed runs: 50 upgrades, 40 same-CPV reinstalls of a rebuilt
//! package, 45 upgrades with `--move-image`, 65 unmerges. The package:
//! ~2,100 entries (1,800 small files in 40 directories, of which version 2
//! changes 80%, removes 10% and adds 400; 40 libraries with versioned
//! symlinks; hardlinked tools; a file that becomes a directory and a
//! directory that becomes a file; a file that becomes a symlink and a
//! symlink that becomes a file; a config file the administrator edited; a
//! path through the live `/lib -> usr/lib`).
//!
//! Time is the child's own CPU time (`/proc/PID/schedstat`, polled every
//! 0.3 ms; wall-clock time where that file is missing): on a loaded machine
//! the wall-clock duration of a run varies threefold and a delay drawn from
//! an earlier measurement lands almost anywhere, while the CPU time a merge
//! on tmpfs has used is a stable measure of how far it got.
//!
//! The roots live on tmpfs (`/dev/shm`) when there is one: the journal's
//! fsyncs on a disk would wait for the write-back of every root copied
//! before, which makes runs slow and their duration erratic; a `SIGKILL`
//! leaves the page cache as it is on any filesystem. `VARTREE_KILL_TMPDIR`
//! overrides the place, `VARTREE_KILL_SEED=N` the random seed,
//! `VARTREE_KILL_RUNS=N` scales the number of killed runs (N upgrades,
//! 4N/5 reinstalls, 9N/10 `--move-image` upgrades, 13N/10 unmerges;
//! default 50).
#![allow(clippy::print_stderr)]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::roots::{
    assert_no_leftovers, check_json, command, copy_tree, counters, ok, root_state as state,
    state_diff as diff,
};

/// Entries of the big package's file list.
const FILES: usize = 1800;

fn cmd(root: &Path, args: &[String]) -> Command {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    command(root, &args)
}

fn spawn(root: &Path, args: &[String]) -> Child {
    cmd(root, args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// CPU time a process has used so far, in ns (`/proc/PID/schedstat`).
fn cpu_ns(pid: u32) -> Option<u64> {
    fs::read_to_string(format!("/proc/{pid}/schedstat"))
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The clock the kill delays are measured on.
///
/// On a loaded machine the wall-clock duration of a merge varies by a
/// factor of three from one run to the next, and a delay drawn from a
/// duration measured earlier lands anywhere. The CPU time the child itself
/// has used (on tmpfs a merge hardly waits for anything else) is a stable
/// measure of how far it got: where `/proc/PID/schedstat` is available the
/// delay is "until the child has run for X ns", else plain wall-clock time.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Clock {
    Cpu,
    Wall,
}

fn clock() -> Clock {
    if cpu_ns(std::process::id()).is_some_and(|n| n > 0) {
        Clock::Cpu
    } else {
        Clock::Wall
    }
}

/// Let `child` run until it has used `budget` ns on `clock`; then SIGKILL
/// (harmless if it exited meanwhile). Returns how it ended.
fn kill_after(child: Child, clock: Clock, budget: u64) -> Output {
    let mut child = child;
    let start = Instant::now();
    let pid = child.id();
    loop {
        let used = match clock {
            Clock::Cpu => cpu_ns(pid),
            Clock::Wall => Some(start.elapsed().as_nanos() as u64),
        };
        if used.is_none_or(|u| u >= budget) || child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_micros(300));
    }
    let _ = child.kill();
    child.wait_with_output().unwrap()
}

/// Run `child` to its end; returns its output and what it used on `clock`
/// (the CPU time read just before it ended).
fn run_measured(child: Child, clock: Clock) -> (Output, u64) {
    let mut child = child;
    let start = Instant::now();
    let pid = child.id();
    let mut used = 0;
    loop {
        if let Some(c) = cpu_ns(pid) {
            used = c;
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_micros(300));
    }
    if clock == Clock::Wall {
        used = start.elapsed().as_nanos() as u64;
    }
    (child.wait_with_output().unwrap(), used)
}

fn killed_by_sigkill(o: &Output) -> bool {
    use std::os::unix::process::ExitStatusExt;
    o.status.signal() == Some(9)
}

/// splitmix64: a small seeded generator (no dependency needed).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, max).
    fn below(&mut self, max: u64) -> u64 {
        if max == 0 {
            0
        } else {
            self.next() % max
        }
    }
}

fn seed(default: u64) -> u64 {
    std::env::var("VARTREE_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// A scratch directory: on tmpfs (`/dev/shm`) when there is one, so that
/// the journal's fsyncs do not wait for the write-back of every root copied
/// before (a `SIGKILL` leaves the page cache as it is on any filesystem).
/// `VARTREE_KILL_TMPDIR` overrides.
fn scratch() -> tempfile::TempDir {
    let dir = std::env::var_os("VARTREE_KILL_TMPDIR")
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

fn runs(default: usize) -> usize {
    std::env::var("VARTREE_KILL_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

// ---------------------------------------------------------------------
// Packages

enum E {
    File(String),
    Link(String),
    Dir,
    /// A hard link to the named image path (created after it).
    Hard(String),
}

fn write_pkg(dir: &Path, cpv: &str, entries: &[(String, E)]) -> (PathBuf, PathBuf) {
    let image = dir.join("image");
    let info = dir.join("build-info");
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
    for (path, e) in entries {
        let p = image.join(path.trim_start_matches('/'));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        match e {
            E::File(c) => fs::write(&p, c).unwrap(),
            E::Link(t) => symlink(t, &p).unwrap(),
            E::Dir => fs::create_dir_all(&p).unwrap(),
            E::Hard(to) => fs::hard_link(image.join(to.trim_start_matches('/')), &p).unwrap(),
        }
    }
    (image, info)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Build {
    /// Version 1.
    V1,
    /// Version 2.
    V2,
    /// Version 2 rebuilt: a share of its files differ (a same-CPV reinstall).
    Rebuilt,
    /// Version 2 where every changed file also changes size (see
    /// `move_image_upgrade_replacing_a_same_size_file`).
    Resized,
}

/// The big package.
fn big(build: Build) -> Vec<(String, E)> {
    let version = if build == Build::V1 { 1 } else { 2 };
    // Changed content; with `Resized` its size differs from version 1's.
    let sfx = match build {
        Build::Resized => " (resized)",
        Build::Rebuilt => "r",
        _ => "",
    };
    let mut v: Vec<(String, E)> = Vec::new();
    let f = |s: &str| E::File(s.to_owned());
    for i in 0..FILES {
        let path = format!("/usr/share/big/d{:02}/f{i:04}", i % 40);
        let content = match (version, i % 10) {
            (1, _) => format!("big 1 file {i}\n"),
            (_, 0) => continue,                    // removed in version 2
            (_, 1) => format!("big 1 file {i}\n"), // unchanged
            _ if build == Build::Rebuilt && i % 7 == 0 => format!("big 2 rebuilt file {i}\n"),
            _ if build == Build::Resized => format!("big 2 file {i}{sfx}\n"),
            _ => format!("big 2 file {i}\n"),
        };
        v.push((path, E::File(content)));
    }
    if version == 2 {
        // New files: a new directory tree and new names in existing ones.
        for i in 0..200 {
            v.push((
                format!("/usr/share/big/new/e{:02}/n{i:03}", i % 10),
                E::File(format!("new {i}\n")),
            ));
            v.push((
                format!("/usr/share/big/d{:02}/added{i:03}", i % 40),
                E::File(format!("added {i}\n")),
            ));
        }
    }
    for k in 0..40 {
        v.push((
            format!("/usr/lib/big/lib{k}.so.{version}"),
            E::File(format!("lib {k} v{version}{sfx}\n")),
        ));
        v.push((
            format!("/usr/lib/big/lib{k}.so"),
            E::Link(format!("lib{k}.so.{version}")),
        ));
    }
    // Through the live /lib -> usr/lib symlink.
    v.push((
        format!("/lib/libbig-extra.so.{version}"),
        E::File(format!("extra {version}\n")),
    ));
    // Hard links.
    for t in 0..5 {
        let main = format!("/usr/bin/bigtool{t}");
        v.push((main.clone(), E::File(format!("tool {t} v{version}{sfx}\n"))));
        v.push((format!("/usr/bin/bigtool{t}-alias"), E::Hard(main.clone())));
        v.push((format!("/usr/sbin/bigtool{t}"), E::Hard(main)));
    }
    // Type changes.
    if version == 1 {
        v.push(("/usr/share/big/was-file".into(), f("a file\n")));
        v.push(("/usr/share/big/was-dir/inner".into(), f("inner\n")));
        v.push(("/usr/share/big/file-to-sym".into(), f("a file\n")));
        v.push(("/usr/share/big/sym-to-file".into(), E::Link("d00".into())));
        v.push(("/usr/share/big/empty-dir/".into(), E::Dir));
    } else {
        v.push(("/usr/share/big/was-file/now-dir".into(), f("now a dir\n")));
        v.push(("/usr/share/big/was-dir".into(), f("now a file\n")));
        v.push(("/usr/share/big/file-to-sym".into(), E::Link("d01".into())));
        v.push(("/usr/share/big/sym-to-file".into(), f("now a file\n")));
    }
    // Config files: one the administrator edits, one left alone.
    v.push((
        "/etc/big/big.conf".into(),
        E::File(format!("conf {version}{sfx}\n")),
    ));
    v.push((
        "/etc/big/plain.conf".into(),
        E::File(format!("plain {version}{sfx}\n")),
    ));
    v
}

// ---------------------------------------------------------------------
// Snapshots and invariants (as crash.rs)

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Outcome {
    Old,
    New,
}

/// The recovered root is the old or the new state, with no leftovers,
/// `check` as in that state and unique COUNTERs.
fn verify(root: &Path, sc: &Scenario, what: &str) -> Outcome {
    let now = state(root);
    assert_no_leftovers(root, what);
    let which = if now == sc.old {
        Outcome::Old
    } else if now == sc.new {
        Outcome::New
    } else {
        panic!(
            "{what}: neither the old nor the new state.\nvs old: {:#?}\nvs new: {:#?}",
            diff(&now, &sc.old),
            diff(&now, &sc.new)
        );
    };
    let chk = check_json(root);
    let want = if which == Outcome::Old {
        &sc.check_old
    } else {
        &sc.check_new
    };
    assert_eq!(
        &chk, want,
        "{what}: `vartree check` differs from the {which:?} state's"
    );
    let counters = counters(root);
    let mut uniq = counters.clone();
    uniq.sort();
    uniq.dedup();
    assert_eq!(
        uniq.len(),
        counters.len(),
        "{what}: COUNTERs are not unique"
    );
    which
}

/// Where the transaction was when it was killed, from its journal.
#[derive(Clone, Copy, PartialEq, Eq, Debug, PartialOrd, Ord)]
enum Phase {
    /// No journal yet (recover, hashing, planning) or none any more.
    NoJournal,
    /// BEGIN written, no ENTRY: staging (or waiting for the VDB lock).
    Staging,
    /// ENTRY written (under the VDB lock), no COMMIT yet.
    Locked,
    /// COMMIT written: completing.
    Committed,
    /// The process had exited on its own before the signal.
    Exited,
}

fn journal_phase(root: &Path) -> Phase {
    let Ok(rd) = fs::read_dir(root.join("var/db/.vartree")) else {
        return Phase::NoJournal;
    };
    let mut phase = Phase::NoJournal;
    for e in rd {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "journal") {
            continue;
        }
        let text = fs::read_to_string(&p).unwrap_or_default();
        let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
        let has = |w: &str| complete.lines().any(|l| l.split(' ').next() == Some(w));
        let ph = if has("COMMIT") {
            Phase::Committed
        } else if has("ENTRY") {
            Phase::Locked
        } else {
            Phase::Staging
        };
        phase = phase.max(ph);
    }
    phase
}

// ---------------------------------------------------------------------
// Portage

fn portage_python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("VARTREE_PORTAGE_PYTHON").filter(|p| !p.is_empty()) {
        return Some(p.into());
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    p.exists().then_some(p)
}

/// Portage's vardbapi reads each root without a warning, and sees as many
/// packages as there are entries.
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
    for root in roots {
        let o = Command::new(&py)
            .arg(&script)
            .arg("--one")
            .arg(root)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success(),
            "Portage complained about {}:\n{out}{}",
            root.display(),
            String::from_utf8_lossy(&o.stderr)
        );
        let want = format!("PACKAGES {}", counters(root).len());
        assert!(
            out.lines().any(|l| l == want),
            "Portage read {}: {out} (expected {want})",
            root.display()
        );
    }
    eprintln!(
        "Portage's vardbapi read {} recovered roots without a warning",
        roots.len()
    );
}

// ---------------------------------------------------------------------
// Scenarios

/// The command line of a scenario, given the image to use.
type ArgsFn = Box<dyn Fn(&Path) -> Vec<String>>;

struct Scenario {
    name: &'static str,
    base: PathBuf,
    /// The command, given the image to use (a fresh copy with --move-image).
    args: ArgsFn,
    /// The image to copy for each run (with --move-image), else None.
    move_image: Option<PathBuf>,
    image_state: BTreeMap<String, String>,
    old: BTreeMap<String, String>,
    new: BTreeMap<String, String>,
    check_old: String,
    check_new: String,
    /// Durations of the uninterrupted reference runs (ns on `clock()`),
    /// sorted.
    times: Vec<u64>,
}

fn merge_args(image: &Path, info: &Path, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = ["merge", "--sync", "never", "--image"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    v.push(image.display().to_string());
    v.push("--build-info".into());
    v.push(info.display().to_string());
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

/// A root with a/big-1 and b/other-1 installed, and the administrator's
/// edit of big.conf.
fn base_root(t: &Path) -> PathBuf {
    let base = t.join("base");
    fs::create_dir_all(base.join("usr/lib")).unwrap();
    symlink("usr/lib", base.join("lib")).unwrap();
    let (img, info) = write_pkg(&t.join("pkg-big-1"), "a/big-1", &big(Build::V1));
    ok(
        &cmd(&base, &merge_args(&img, &info, &[])).output().unwrap(),
        "install a/big-1",
    );
    let other = vec![
        (
            "/usr/share/big/d00/other".to_owned(),
            E::File("other\n".into()),
        ),
        ("/usr/bin/other".to_owned(), E::File("other\n".into())),
        ("/etc/big/other.conf".to_owned(), E::File("other\n".into())),
    ];
    let (img, info) = write_pkg(&t.join("pkg-other-1"), "b/other-1", &other);
    ok(
        &cmd(&base, &merge_args(&img, &info, &[])).output().unwrap(),
        "install b/other-1",
    );
    fs::write(base.join("etc/big/big.conf"), "conf 1, edited\n").unwrap();
    base
}

/// Build a scenario: the reference run on a copy of `base` gives the new
/// state and the duration.
fn scenario(
    t: &Path,
    name: &'static str,
    base: &Path,
    args: ArgsFn,
    move_image: Option<PathBuf>,
) -> Scenario {
    let old = state(base);
    let check_old = check_json(base);
    let reference = t.join(format!("reference-{name}"));
    copy_tree(base, &reference);
    let img = t.join(format!("reference-{name}-image"));
    let image_state = match &move_image {
        Some(m) => {
            copy_tree(m, &img);
            state(m)
        }
        None => BTreeMap::new(),
    };
    // Three uninterrupted runs on fresh copies: their median duration (on
    // the clock of `clock()`) is what the kill delays are drawn from. The
    // last one is the reference.
    let mut times = Vec::new();
    for k in 0..3 {
        if k > 0 {
            fs::remove_dir_all(&reference).unwrap();
            copy_tree(base, &reference);
            if let Some(m) = &move_image {
                fs::remove_dir_all(&img).unwrap();
                copy_tree(m, &img);
            }
        }
        let (o, used) = run_measured(spawn(&reference, &args(&img)), clock());
        times.push(used);
        ok(&o, &format!("{name}: reference run"));
    }
    times.sort();
    let new = state(&reference);
    let check_new = check_json(&reference);
    assert_ne!(old, new, "{name}: the operation changes nothing");
    eprintln!(
        "{name}: {} paths before, {} after; uninterrupted runs take {:?} ms ({:?} time)",
        old.len(),
        new.len(),
        times.iter().map(|t| t / 1_000_000).collect::<Vec<_>>(),
        clock()
    );
    Scenario {
        name,
        base: base.to_owned(),
        args,
        move_image,
        image_state,
        old,
        new,
        check_old,
        check_new,
        times,
    }
}

#[derive(Default, Debug)]
struct Stats {
    runs: usize,
    old: usize,
    new: usize,
    phases: BTreeMap<String, (usize, usize)>,
    recover_killed: usize,
    recover_interrupted: usize,
    /// Time spent copying roots, in the killed operation, recovering,
    /// verifying, removing roots.
    times: [Duration; 5],
}

/// Kill `sc` at random moments `n` times; returns the statistics and the
/// roots kept for Portage.
fn kill_runs(t: &Path, sc: &Scenario, n: usize, rng: &mut Rng, stats: &mut Stats) -> Vec<PathBuf> {
    let mut kept = Vec::new();
    let (mut kept_old, mut kept_new) = (0, 0);
    // Delays are spread uniformly over the whole duration of the operation
    // (the median of the reference runs).
    let clock = clock();
    let span = sc.times[1];
    // A root (and image) rolled back to the old state is the starting point
    // of the next run: it is the old state (what `verify` saw, and the
    // image compared whole), except for the global counter, reset here.
    let mut reuse: Option<(PathBuf, PathBuf)> = None;
    let counter = fs::read(sc.base.join("var/cache/edb/counter")).unwrap();
    let mut recover_est: u64 = 0;
    for i in 0..n {
        let what = format!("{} run {i}", sc.name);
        let root = t.join(format!("run-{}-{i}", sc.name));
        let mut lap_start = Instant::now();
        let mut lap = |k: usize, stats: &mut Stats| {
            stats.times[k] += lap_start.elapsed();
            lap_start = Instant::now();
        };
        let img = t.join(format!("run-{}-{i}-image", sc.name));
        match reuse.take() {
            Some((r, im)) => {
                fs::rename(r, &root).unwrap();
                fs::write(root.join("var/cache/edb/counter"), &counter).unwrap();
                if sc.move_image.is_some() {
                    fs::rename(im, &img).unwrap();
                }
            }
            None => {
                copy_tree(&sc.base, &root);
                if let Some(m) = &sc.move_image {
                    copy_tree(m, &img);
                }
            }
        }
        let delay = rng.below(span);
        lap(0, stats);
        let o = kill_after(spawn(&root, &(sc.args)(&img)), clock, delay);
        let phase = if killed_by_sigkill(&o) {
            journal_phase(&root)
        } else {
            ok(&o, &format!("{what}: not killed"));
            Phase::Exited
        };
        lap(1, stats);
        // Recovery is killed too (in about half the runs that left a
        // journal), at a moment drawn from the longest recovery seen so far,
        // then run again.
        if phase != Phase::NoJournal && phase != Phase::Exited && rng.below(2) == 0 {
            let d = rng.below(recover_est.max(20_000_000));
            let rc = kill_after(spawn(&root, &["recover".to_string()]), clock, d);
            stats.recover_killed += 1;
            if killed_by_sigkill(&rc) && journal_phase(&root) != Phase::NoJournal {
                stats.recover_interrupted += 1;
            }
        }
        let (o, used) = run_measured(spawn(&root, &["recover".to_string()]), clock);
        ok(&o, &format!("{what}: recover"));
        if phase == Phase::Committed {
            recover_est = recover_est.max(used);
        }
        lap(2, stats);
        let outcome = verify(
            &root,
            sc,
            &format!(
                "{what} (killed after {} µs on the {clock:?} clock, {phase:?})",
                delay / 1000
            ),
        );
        if sc.move_image.is_some() && outcome == Outcome::Old {
            assert_eq!(
                state(&img),
                sc.image_state,
                "{what}: rolled back, but the image is not whole again: {:?}",
                diff(&state(&img), &sc.image_state)
            );
        }
        match (phase, outcome) {
            (Phase::Staging | Phase::Locked, Outcome::New) => {
                panic!("{what}: killed before the commit point ({phase:?}) but rolled forward")
            }
            (Phase::Committed, Outcome::Old) => {
                panic!("{what}: killed after the commit point but rolled back")
            }
            _ => {}
        }
        stats.runs += 1;
        match outcome {
            Outcome::Old => stats.old += 1,
            Outcome::New => stats.new += 1,
        }
        let e = stats.phases.entry(format!("{phase:?}")).or_default();
        match outcome {
            Outcome::Old => e.0 += 1,
            Outcome::New => e.1 += 1,
        }
        lap(3, stats);
        // Portage reads a sample: the first two roots rolled back after a
        // kill inside the transaction and the first two rolled forward.
        let sample = match (phase, outcome) {
            (Phase::Staging | Phase::Locked, Outcome::Old) => {
                kept_old < 2 && {
                    kept_old += 1;
                    true
                }
            }
            (Phase::Committed, Outcome::New) => {
                kept_new < 2 && {
                    kept_new += 1;
                    true
                }
            }
            _ => false,
        };
        if sample {
            kept.push(root);
        } else if outcome == Outcome::Old && i + 1 < n {
            reuse = Some((root, img.clone()));
        } else {
            fs::remove_dir_all(&root).unwrap();
        }
        if img.exists() && reuse.is_none() {
            fs::remove_dir_all(&img).unwrap();
        }
        lap(4, stats);
    }
    kept
}

fn report(name: &str, stats: &Stats, elapsed: Duration) {
    eprintln!(
        "{name}: {} runs killed in {:.1} s: {} old, {} new; killed at (old, new): {:?}; recover killed {} times ({} mid-way); time in copy/operation/recover/verify/cleanup: {:?}",
        stats.runs,
        elapsed.as_secs_f64(),
        stats.old,
        stats.new,
        stats.phases,
        stats.recover_killed,
        stats.recover_interrupted,
        stats.times.map(|d| d.as_millis())
    );
}

fn assert_coverage(stats: &Stats, staging_needed: bool) {
    assert!(
        stats.old > 0 && stats.new > 0,
        "both outcomes must occur: {stats:?}"
    );
    let count = |p: &str| stats.phases.get(p).map_or(0, |(a, b)| a + b);
    assert!(
        count("Committed") > 0,
        "no kill landed after the commit point: {stats:?}"
    );
    if staging_needed {
        assert!(
            count("Staging") > 0,
            "no kill landed mid-staging: {stats:?}"
        );
    }
}

#[test]
fn sigkill_during_large_upgrades_and_reinstalls() {
    let started = Instant::now();
    let t = scratch();
    let t = t.path();
    let base = base_root(t);
    let (img2, info2) = write_pkg(&t.join("pkg-big-2"), "a/big-2", &big(Build::V2));
    let up = scenario(
        t,
        "upgrade",
        &base,
        Box::new(move |_| merge_args(&img2, &info2, &[])),
        None,
    );
    assert!(
        up.new.contains_key("etc/big/._cfg0000_big.conf"),
        "config protection is exercised"
    );
    assert!(
        up.new.contains_key("usr/share/big/was-file.backup.0000"),
        "a file that becomes a directory is exercised: {:?}",
        diff(&up.new, &up.old)
    );
    // The reinstall starts from the upgraded root.
    let base2 = t.join("base2");
    copy_tree(&t.join("reference-upgrade"), &base2);
    let (img2r, info2r) = write_pkg(&t.join("pkg-big-2r"), "a/big-2", &big(Build::Rebuilt));
    let re = scenario(
        t,
        "reinstall",
        &base2,
        Box::new(move |_| merge_args(&img2r, &info2r, &[])),
        None,
    );
    let mut rng = Rng(seed(0x5eed_0001));
    let n = runs(50);
    let mut stats_up = Stats::default();
    let mut stats_re = Stats::default();
    let mut kept = kill_runs(t, &up, n, &mut rng, &mut stats_up);
    report("upgrade", &stats_up, started.elapsed());
    let t2 = Instant::now();
    kept.extend(kill_runs(t, &re, n * 4 / 5, &mut rng, &mut stats_re));
    report("reinstall", &stats_re, t2.elapsed());
    assert_coverage(&stats_up, true);
    assert_coverage(&stats_re, true);
    assert!(
        kept.len() >= 4,
        "Portage reads at least four recovered roots"
    );
    portage_reads_cleanly(&kept);
    eprintln!("total {:.1} s", started.elapsed().as_secs_f64());
}

#[test]
fn sigkill_during_large_move_image_upgrades_and_unmerges() {
    let started = Instant::now();
    let t = scratch();
    let t = t.path();
    let base = base_root(t);
    let (img2, info2) = write_pkg(&t.join("pkg-big-2"), "a/big-2", &big(Build::Resized));
    let mv = scenario(
        t,
        "move-image",
        &base,
        Box::new(move |img| merge_args(img, &info2, &["--move-image"])),
        Some(img2),
    );
    let un = scenario(
        t,
        "unmerge",
        &base,
        Box::new(|_| vec!["unmerge".to_string(), "a/big".to_string()]),
        None,
    );
    assert!(!un.new.keys().any(|k| k.starts_with("var/db/pkg/a/big-1")));
    let mut rng = Rng(seed(0x5eed_0002));
    let n = runs(50);
    let mut stats_mv = Stats::default();
    let mut stats_un = Stats::default();
    let mut kept = kill_runs(t, &mv, n * 9 / 10, &mut rng, &mut stats_mv);
    report("move-image", &stats_mv, started.elapsed());
    let t2 = Instant::now();
    kept.extend(kill_runs(t, &un, n * 13 / 10, &mut rng, &mut stats_un));
    report("unmerge", &stats_un, t2.elapsed());
    assert_coverage(&stats_mv, true);
    assert_coverage(&stats_un, false);
    assert!(
        kept.len() >= 4,
        "Portage reads at least four recovered roots"
    );
    portage_reads_cleanly(&kept);
    eprintln!("total {:.1} s", started.elapsed().as_secs_f64());
}

/// `--move-image` upgrade where a file replaces an installed file of the same
/// size and mode but different content. The plan is made again under the VDB
/// lock, and that compares the image file with the live one: but staging
/// has already moved the image file into ROOT, so the merge fails with
/// "image entry /usr/bin/c: cannot open: No such file or directory" (exit 2,
/// rolled back). The kill test above therefore uses an image whose changed
/// files all change size (`Build::Resized`).
#[test]
fn move_image_upgrade_replacing_a_same_size_file() {
    let t = scratch();
    let t = t.path();
    let root = t.join("root");
    fs::create_dir_all(&root).unwrap();
    let one = vec![("/usr/bin/c".to_owned(), E::File("1\n".into()))];
    let (img, info) = write_pkg(&t.join("c-1"), "a/c-1", &one);
    ok(
        &cmd(&root, &merge_args(&img, &info, &[])).output().unwrap(),
        "a/c-1",
    );
    let two = vec![("/usr/bin/c".to_owned(), E::File("2\n".into()))];
    let (img, info) = write_pkg(&t.join("c-2"), "a/c-2", &two);
    let o = cmd(&root, &merge_args(&img, &info, &["--move-image"]))
        .output()
        .unwrap();
    ok(&o, "a/c-2 --move-image");
    assert_eq!(fs::read(root.join("usr/bin/c")).unwrap(), b"2\n");
}

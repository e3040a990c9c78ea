//! Interoperation of `vdb::lock` with the real Portage lock code.
//!
//! A Python helper (`tests/portage/lock_helper.py`) takes locks through
//! `portage.locks` exactly as Portage's callers do and reports what it does on
//! stdout, with CLOCK_MONOTONIC timestamps. Ordering claims are checked against
//! those timestamps (taken on the causally right side of each step), not
//! against sleeps.
//!
//! Python: `$VARTREE_PORTAGE_PYTHON`, else `<workspace>/.venv/bin/python`. If
//! neither exists the tests are skipped with a notice on stderr, unless
//! `VARTREE_REQUIRE_PORTAGE=1`, in which case they fail.

use std::fs;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use vdb::lock::{fs_lock, lock_packages_index, plib_lock, vdb_lock_path, UnlockOutcome, VdbLock};

const TIMEOUT: Duration = Duration::from_secs(60);
/// How long a blocked party is given to (wrongly) get through before we check
/// that it did not. Only a supplement to the timestamp checks.
const GRACE: Duration = Duration::from_millis(300);

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The Python with Portage to use, or `None` (after a notice) to skip.
fn portage_python() -> Option<PathBuf> {
    let python = match std::env::var_os("VARTREE_PORTAGE_PYTHON") {
        Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
        _ => Some(workspace().join(".venv/bin/python")).filter(|p| p.exists()),
    };
    if python.is_none() {
        let required = std::env::var("VARTREE_REQUIRE_PORTAGE").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "VARTREE_REQUIRE_PORTAGE=1 but no Portage Python: set VARTREE_PORTAGE_PYTHON \
             or create {}",
            workspace().join(".venv").display()
        );
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: no Portage Python (set VARTREE_PORTAGE_PYTHON or create .venv)"
        );
    }
    python
}

/// CLOCK_MONOTONIC in nanoseconds, comparable with the helper's timestamps.
fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(rc, 0);
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[derive(Debug, Clone)]
enum Ev {
    /// A `@@VT WORD k=v ...` line.
    Line {
        word: String,
        fields: Vec<(String, String)>,
    },
    /// Portage printed its `waiting for lock on PATH` message.
    PortageWaiting(String),
    Eof,
}

impl Ev {
    fn field(&self, key: &str) -> Option<&str> {
        match self {
            Ev::Line { fields, .. } => fields
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str()),
            _ => None,
        }
    }

    fn t(&self) -> u64 {
        self.field("t").expect("timestamp").parse().unwrap()
    }
}

/// One running `lock_helper.py`.
struct Helper {
    child: Child,
    stdin: Option<ChildStdin>,
    events: mpsc::Receiver<Ev>,
    seen: Vec<Ev>,
    output: Arc<Mutex<String>>,
}

impl Helper {
    fn spawn(python: &Path, args: &[&str]) -> Helper {
        let mut child = Command::new(python)
            .arg("-u")
            .arg(workspace().join("tests/portage/lock_helper.py"))
            .args(args)
            .env("NOCOLOR", "true")
            .env("TERM", "dumb")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn Portage helper");
        let output = Arc::new(Mutex::new(String::new()));
        let (tx, events) = mpsc::channel();
        let mut stdout = child.stdout.take().unwrap();
        let out = Arc::clone(&output);
        std::thread::spawn(move || {
            // Raw chunks: Portage's waiting message has no newline until the
            // lock is granted.
            let mut pending = Vec::new();
            let mut all = String::new();
            let mut waiting_reported = false;
            let mut buf = [0u8; 4096];
            loop {
                let n = match stdout.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let chunk = String::from_utf8_lossy(&buf[..n]).into_owned();
                out.lock().unwrap().push_str(&chunk);
                all.push_str(&chunk);
                if !waiting_reported {
                    const MSG: &str = "waiting for lock on ";
                    if let Some(i) = all.find(MSG) {
                        let rest = &all[i + MSG.len()..];
                        if let Some(end) = rest.find(" ...") {
                            waiting_reported = true;
                            let _ = tx.send(Ev::PortageWaiting(rest[..end].to_owned()));
                        }
                    }
                }
                pending.extend_from_slice(&buf[..n]);
                while let Some(nl) = pending.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=nl).collect();
                    let line = String::from_utf8_lossy(&line);
                    if let Some(i) = line.find("@@VT ") {
                        let mut words = line[i + 5..].split_whitespace();
                        let word = words.next().unwrap_or_default().to_owned();
                        let fields = words
                            .filter_map(|w| w.split_once('='))
                            .map(|(k, v)| (k.to_owned(), v.to_owned()))
                            .collect();
                        let _ = tx.send(Ev::Line { word, fields });
                    }
                }
            }
            let _ = tx.send(Ev::Eof);
        });
        let mut stderr = child.stderr.take().unwrap();
        let out = Arc::clone(&output);
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            out.lock()
                .unwrap()
                .push_str(&format!("\n--- stderr ---\n{s}"));
        });
        let stdin = child.stdin.take();
        Helper {
            child,
            stdin,
            events,
            seen: Vec::new(),
            output,
        }
    }

    fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Waits for the first event matching `pred` (including ones already seen).
    fn wait_for(&mut self, what: &str, pred: impl Fn(&Ev) -> bool) -> Ev {
        if let Some(ev) = self.seen.iter().find(|e| pred(e)) {
            return ev.clone();
        }
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(Ev::Eof) | Err(_) => {
                    // Let the stderr reader finish for the diagnostics.
                    std::thread::sleep(Duration::from_millis(200));
                    panic!(
                        "Portage helper: no {what} before EOF/timeout; output:\n{}",
                        self.output()
                    );
                }
                Ok(ev) => {
                    self.seen.push(ev.clone());
                    if pred(&ev) {
                        return ev;
                    }
                }
            }
        }
    }

    fn expect(&mut self, word: &str) -> Ev {
        self.wait_for(word, |e| matches!(e, Ev::Line { word: w, .. } if w == word))
    }

    fn expect_portage_waiting(&mut self) -> String {
        match self.wait_for("waiting message", |e| matches!(e, Ev::PortageWaiting(_))) {
            Ev::PortageWaiting(p) => p,
            _ => unreachable!(),
        }
    }

    /// Whether `word` has been reported so far (without waiting).
    fn has_said(&mut self, word: &str) -> bool {
        while let Ok(ev) = self.events.try_recv() {
            self.seen.push(ev);
        }
        self.seen
            .iter()
            .any(|e| matches!(e, Ev::Line { word: w, .. } if w == word))
    }

    fn send_line(&mut self) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(b"go\n").unwrap();
        stdin.flush().unwrap();
    }

    /// Closes stdin and waits for a successful exit.
    fn finish(mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(50));
                assert!(
                    status.success(),
                    "Portage helper failed ({status}); output:\n{}",
                    self.output()
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "Portage helper did not exit; output:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn same_inode(fd: impl AsFd, path: &Path) -> bool {
    let ours = fs::File::from(fd.as_fd().try_clone_to_owned().unwrap())
        .metadata()
        .unwrap();
    fs::metadata(path).is_ok_and(|m| m.ino() == ours.ino() && m.dev() == ours.dev())
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Events from a vartree locker running in a thread.
enum Side {
    Waiting(PathBuf),
    Acquired(u64),
}

#[test]
fn portage_holds_vdb_lock_and_vartree_waits() {
    let Some(py) = portage_python() else { return };
    let root = tempfile::tempdir().unwrap();
    let eroot = root.path().to_owned();
    let lock_path = vdb_lock_path(&eroot);

    let mut portage = Helper::spawn(&py, &["hold", "vdb", s(&eroot)]);
    let locked = portage.expect("locked");
    assert_eq!(locked.field("path"), Some(s(&lock_path)));
    assert!(lock_path.exists());

    let (tx, rx) = mpsc::channel();
    let vartree = {
        let eroot = eroot.clone();
        std::thread::spawn(move || {
            let tx2 = tx.clone();
            let lock = VdbLock::acquire(&st(&eroot), |p| {
                tx2.send(Side::Waiting(p.to_owned())).unwrap();
            })
            .unwrap();
            tx.send(Side::Acquired(now_ns())).unwrap();
            lock
        })
    };
    match rx
        .recv_timeout(TIMEOUT)
        .expect("vartree must report waiting")
    {
        Side::Waiting(p) => assert_eq!(p, lock_path),
        Side::Acquired(_) => panic!("vartree acquired the VDB lock while Portage held it"),
    }
    std::thread::sleep(GRACE);
    assert!(rx.try_recv().is_err(), "vartree got through Portage's lock");

    portage.send_line();
    let unlocking = portage.expect("unlocking").t();
    let acquired = loop {
        match rx
            .recv_timeout(TIMEOUT)
            .expect("vartree must acquire after release")
        {
            Side::Acquired(t) => break t,
            Side::Waiting(_) => {} // a retry after Portage deleted the file
        }
    };
    assert!(
        acquired > unlocking,
        "vartree acquired ({acquired}) before Portage started unlocking ({unlocking})"
    );
    let lock = vartree.join().unwrap();
    // Whether Portage deleted the file (and we retried) or we won the race:
    // we must hold a lock on the file the path names now.
    assert!(same_inode(&lock, &lock_path));
    portage.expect("released");
    portage.finish();

    assert_eq!(lock.unlock().unwrap(), UnlockOutcome::Removed);
    assert!(!lock_path.exists());

    // Portage locks again without waiting and removes the file again.
    let mut portage = Helper::spawn(&py, &["hold", "vdb", s(&eroot), "--nonblock-first"]);
    portage.expect("locked");
    assert!(!portage.has_said("busy"));
    portage.send_line();
    assert_eq!(portage.expect("released").field("exists"), Some("0"));
    portage.finish();
    assert!(!lock_path.exists());
}

#[test]
fn vartree_holds_vdb_lock_and_portage_waits() {
    let Some(py) = portage_python() else { return };
    let root = tempfile::tempdir().unwrap();
    let eroot = root.path().to_owned();
    let lock_path = vdb_lock_path(&eroot);

    let lock = VdbLock::acquire(&st(&eroot), |_| panic!("nobody holds it yet")).unwrap();
    let mut portage = Helper::spawn(&py, &["hold", "vdb", s(&eroot), "--nonblock-first"]);
    // lockdir(..., flags=O_NONBLOCK) raised TryAgain, then the blocking
    // lockdir printed Portage's message.
    portage.expect("busy");
    assert_eq!(portage.expect_portage_waiting(), s(&lock_path));
    std::thread::sleep(GRACE);
    assert!(!portage.has_said("locked"), "Portage got through our lock");

    let released = now_ns();
    let outcome = lock.unlock().unwrap();
    // Removed: we re-locked first and deleted the file, Portage retried on a
    // new one. Contended: Portage took it first; the file is now Portage's.
    assert!(
        matches!(outcome, UnlockOutcome::Removed | UnlockOutcome::Contended),
        "{outcome:?}"
    );
    let locked = portage.expect("locked");
    assert!(locked.t() > released, "Portage locked before we released");
    assert!(lock_path.exists(), "Portage holds a lock file that exists");

    portage.send_line();
    assert_eq!(portage.expect("released").field("exists"), Some("0"));
    portage.finish();
    assert!(!lock_path.exists());

    // No stale state for the next locker.
    let again = VdbLock::try_acquire(&st(&eroot))
        .unwrap()
        .expect("lock is free");
    assert!(same_inode(&again, &lock_path));
    drop(again);
    assert!(!lock_path.exists());
}

#[test]
fn stale_and_extra_linked_lock_files() {
    let Some(py) = portage_python() else { return };
    let root = tempfile::tempdir().unwrap();
    let eroot = root.path().to_owned();
    let lock_path = vdb_lock_path(&eroot);
    fs::create_dir_all(lock_path.parent().unwrap()).unwrap();

    // A lock file left behind by a crashed locker is used and removed.
    fs::write(&lock_path, b"stale").unwrap();
    let l = VdbLock::try_acquire(&st(&eroot))
        .unwrap()
        .expect("stale file is not a lock");
    assert_eq!(l.unlock().unwrap(), UnlockOutcome::Removed);
    fs::write(&lock_path, b"stale").unwrap();
    let mut portage = Helper::spawn(&py, &["hold", "vdb", s(&eroot), "--nonblock-first"]);
    portage.expect("locked");
    assert!(!portage.has_said("busy"));
    portage.send_line();
    assert_eq!(portage.expect("released").field("exists"), Some("0"));
    portage.finish();

    // With an extra hard link (a leftover `.hardlock-HOST-PID`), both sides
    // keep the file, and both can still lock it.
    fs::write(&lock_path, b"").unwrap();
    let hardlock = eroot.join("var/db/..pkg.portage_lockfile.hardlock-elsewhere-1");
    fs::hard_link(&lock_path, &hardlock).unwrap();
    let l = VdbLock::try_acquire(&st(&eroot)).unwrap().expect("free");
    assert_eq!(l.unlock().unwrap(), UnlockOutcome::Linked);
    let mut portage = Helper::spawn(&py, &["hold", "vdb", s(&eroot), "--nonblock-first"]);
    portage.expect("locked");
    assert!(!portage.has_said("busy"));
    portage.send_line();
    assert_eq!(portage.expect("released").field("exists"), Some("1"));
    portage.finish();
    let l = VdbLock::try_acquire(&st(&eroot)).unwrap().expect("free");
    assert!(same_inode(&l, &lock_path));
    drop(l);
    assert!(lock_path.exists());
}

#[test]
fn mutual_exclusion_under_contention_with_portage() {
    const PORTAGES: usize = 2;
    const THREADS: usize = 2;
    const ROUNDS: usize = 40;
    let Some(py) = portage_python() else { return };
    let root = tempfile::tempdir().unwrap();
    let eroot = root.path().to_owned();
    let inside = eroot.join("inside");
    let rounds = ROUNDS.to_string();

    let mut helpers: Vec<Helper> = (0..PORTAGES)
        .map(|_| {
            Helper::spawn(
                &py,
                &[
                    "stress",
                    "vdb",
                    s(&eroot),
                    "--iterations",
                    &rounds,
                    "--inside",
                    s(&inside),
                ],
            )
        })
        .collect();
    for h in &mut helpers {
        h.expect("ready");
    }
    let violations = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(THREADS + 1));
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            let (eroot, inside) = (eroot.clone(), inside.clone());
            let (violations, barrier) = (Arc::clone(&violations), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                for _ in 0..ROUNDS {
                    let lock = VdbLock::acquire(&st(&eroot), |_| {}).unwrap();
                    if fs::File::create_new(&inside).is_err() {
                        violations.fetch_add(1, Ordering::SeqCst);
                        continue;
                    }
                    std::thread::sleep(Duration::from_micros(500));
                    fs::remove_file(&inside).unwrap();
                    drop(lock);
                }
            })
        })
        .collect();
    for h in &mut helpers {
        h.send_line();
    }
    barrier.wait();
    for t in threads {
        t.join().unwrap();
    }
    for mut h in helpers {
        let done = h.wait_for(
            "done or VIOLATION",
            |e| matches!(e, Ev::Line { word, .. } if word == "done" || word == "VIOLATION"),
        );
        assert!(
            matches!(&done, Ev::Line { word, .. } if word == "done"),
            "Portage found the critical section occupied; output:\n{}",
            h.output()
        );
        h.finish();
    }
    assert_eq!(violations.load(Ordering::SeqCst), 0);
    assert!(!inside.exists());
    assert!(!vdb_lock_path(&eroot).exists(), "last unlocker removes it");
}

#[test]
fn in_place_locks_interoperate_and_keep_the_file() {
    let Some(py) = portage_python() else { return };
    let root = tempfile::tempdir().unwrap();
    let eroot = root.path().to_owned();
    let libdir = eroot.join("var/lib/portage");
    fs::create_dir_all(&libdir).unwrap();
    let config = libdir.join("config");

    // Portage holds the fs lock (lockfile(config)); vartree waits.
    let mut portage = Helper::spawn(&py, &["hold", "file", s(&config)]);
    assert_eq!(portage.expect("locked").field("path"), Some(s(&config)));
    let (tx, rx) = mpsc::channel();
    let vartree = {
        let eroot = eroot.clone();
        std::thread::spawn(move || {
            let tx2 = tx.clone();
            let l = fs_lock(&st(&eroot), |p| {
                tx2.send(Side::Waiting(p.to_owned())).unwrap()
            })
            .unwrap();
            tx.send(Side::Acquired(now_ns())).unwrap();
            l
        })
    };
    match rx.recv_timeout(TIMEOUT).unwrap() {
        Side::Waiting(p) => assert_eq!(p, config),
        Side::Acquired(_) => panic!("vartree got the fs lock while Portage held it"),
    }
    std::thread::sleep(GRACE);
    assert!(rx.try_recv().is_err());
    portage.send_line();
    let unlocking = portage.expect("unlocking").t();
    let Side::Acquired(acquired) = rx.recv_timeout(TIMEOUT).unwrap() else {
        panic!("in-place locks never retry")
    };
    assert!(acquired > unlocking);
    assert_eq!(portage.expect("released").field("exists"), Some("1"));
    portage.finish();
    let l = vartree.join().unwrap();
    assert!(!l.created());
    l.unlock().unwrap();
    assert!(config.is_file(), "in-place lock files are never removed");

    // vartree holds the plib lock; Portage's lockfile(registry) waits.
    let registry = libdir.join("preserved_libs_registry");
    let l = plib_lock(&st(&eroot), |_| panic!("free")).unwrap();
    assert!(l.created());
    let mut portage = Helper::spawn(&py, &["hold", "file", s(&registry), "--nonblock-first"]);
    portage.expect("busy");
    assert_eq!(portage.expect_portage_waiting(), s(&registry));
    std::thread::sleep(GRACE);
    assert!(!portage.has_said("locked"));
    let released = now_ns();
    drop(l);
    assert!(portage.expect("locked").t() > released);
    portage.send_line();
    assert_eq!(portage.expect("released").field("exists"), Some("1"));
    portage.finish();
    assert!(registry.is_file());
}

#[test]
fn packages_index_lock_interoperates() {
    let Some(py) = portage_python() else { return };
    let root = tempfile::tempdir().unwrap();
    let pkgdir = root.path().join("binpkgs");
    fs::create_dir(&pkgdir).unwrap();
    let lock_path = pkgdir.join(".Packages.portage_lockfile");

    // Portage: lockfile(PKGDIR/Packages, wantnewlockfile=True).
    let mut portage = Helper::spawn(&py, &["hold", "sidecar", s(&pkgdir.join("Packages"))]);
    assert_eq!(portage.expect("locked").field("path"), Some(s(&lock_path)));
    let (tx, rx) = mpsc::channel();
    let vartree = {
        let pkgdir = pkgdir.clone();
        std::thread::spawn(move || {
            let tx2 = tx.clone();
            let l =
                lock_packages_index(&pkgdir, |p| tx2.send(Side::Waiting(p.to_owned())).unwrap())
                    .unwrap();
            tx.send(Side::Acquired(now_ns())).unwrap();
            l
        })
    };
    match rx.recv_timeout(TIMEOUT).unwrap() {
        Side::Waiting(p) => assert_eq!(p, lock_path),
        Side::Acquired(_) => panic!("vartree got the index lock while Portage held it"),
    }
    std::thread::sleep(GRACE);
    assert!(rx.try_recv().is_err());
    portage.send_line();
    let unlocking = portage.expect("unlocking").t();
    let acquired = loop {
        match rx.recv_timeout(TIMEOUT).unwrap() {
            Side::Acquired(t) => break t,
            Side::Waiting(_) => {}
        }
    };
    assert!(acquired > unlocking);
    portage.expect("released");
    portage.finish();
    let l = vartree.join().unwrap();
    assert!(same_inode(&l, &lock_path));
    assert_eq!(l.unlock().unwrap(), UnlockOutcome::Removed);
    assert!(!lock_path.exists());
}

/// The state paths of a root without EPREFIX.
fn st(root: &std::path::Path) -> vdb::state::StatePaths {
    vdb::state::StatePaths::new(root, "")
}

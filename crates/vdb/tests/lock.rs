//! The Portage lock protocol of `vdb::lock`, exercised between vartree lockers
//! only (the interop with the real Portage is in `lock_portage.rs`).

use std::fs;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier};
use std::time::Duration;

use vdb::lock::{
    fs_lock, lock_packages_index, slot_lock, slot_lock_path, vdb_lock_path, FileLock, SidecarLock,
    UnlockOutcome, VdbLock, Wait,
};

/// Does the path currently name the inode our descriptor refers to?
fn holds_current_inode(fd: impl AsFd, path: &Path) -> bool {
    let ours = fs::File::from(fd.as_fd().try_clone_to_owned().unwrap())
        .metadata()
        .unwrap();
    match fs::metadata(path) {
        Ok(m) => m.ino() == ours.ino() && m.dev() == ours.dev(),
        Err(_) => false,
    }
}

#[test]
fn acquire_creates_var_db_and_removes_lock_file_on_unlock() {
    let root = tempfile::tempdir().unwrap();
    let eroot = root.path();
    let lock = VdbLock::acquire(&st(eroot), |_| panic!("uncontended")).unwrap();
    let path = vdb_lock_path(eroot);
    assert_eq!(lock.path(), path);
    assert!(path.is_file());
    let mode = fs::metadata(&path).unwrap().mode() & 0o7777;
    assert_eq!(mode, 0o660);
    assert_eq!(lock.unlock().unwrap(), UnlockOutcome::Removed);
    assert!(!path.exists());
    assert!(eroot.join("var/db").is_dir());
}

#[test]
fn drop_runs_the_release_protocol() {
    let root = tempfile::tempdir().unwrap();
    let lock = VdbLock::acquire(&st(root.path()), |_| {}).unwrap();
    let path = lock.path().to_owned();
    drop(lock);
    assert!(!path.exists());
}

#[test]
fn try_acquire_sees_a_held_lock() {
    let root = tempfile::tempdir().unwrap();
    let held = VdbLock::acquire(&st(root.path()), |_| {}).unwrap();
    assert!(VdbLock::try_acquire(&st(root.path())).unwrap().is_none());
    let mut waited = 0;
    let r = VdbLock::acquire_with(
        &st(root.path()),
        Wait::Timeout(Duration::from_millis(50)),
        |_| waited += 1,
    )
    .unwrap();
    assert!(r.is_none());
    assert_eq!(waited, 1);
    drop(held);
    assert!(VdbLock::try_acquire(&st(root.path())).unwrap().is_some());
}

#[test]
fn extra_hard_link_keeps_the_file() {
    let root = tempfile::tempdir().unwrap();
    let lock = VdbLock::acquire(&st(root.path()), |_| {}).unwrap();
    let path = lock.path().to_owned();
    // What a crashed Portage hard-link locker would leave behind.
    let link = root
        .path()
        .join("var/db/..pkg.portage_lockfile.hardlock-host-1");
    fs::hard_link(&path, &link).unwrap();
    assert_eq!(lock.unlock().unwrap(), UnlockOutcome::Linked);
    assert!(path.exists());
    // A kept file does not hinder the next locker.
    let again = VdbLock::try_acquire(&st(root.path()))
        .unwrap()
        .expect("free");
    assert!(holds_current_inode(&again, &path));
}

#[test]
fn externally_removed_or_replaced_lock_file_is_left_alone() {
    let root = tempfile::tempdir().unwrap();
    let lock = VdbLock::acquire(&st(root.path()), |_| {}).unwrap();
    let path = lock.path().to_owned();
    fs::remove_file(&path).unwrap();
    assert_eq!(lock.unlock().unwrap(), UnlockOutcome::Missing);

    // Replaced by rename: our inode is unlinked (link count 0).
    let lock = VdbLock::acquire(&st(root.path()), |_| {}).unwrap();
    let tmp = root.path().join("var/db/other");
    fs::write(&tmp, b"").unwrap();
    fs::rename(&tmp, &path).unwrap();
    assert_eq!(lock.unlock().unwrap(), UnlockOutcome::Linked);
    assert!(path.exists(), "someone else's file must not be deleted");

    // Ours moved away (still one link) and another file put in its place.
    let lock = VdbLock::acquire(&st(root.path()), |_| {}).unwrap();
    fs::rename(&path, &tmp).unwrap();
    fs::write(&path, b"").unwrap();
    assert_eq!(lock.unlock().unwrap(), UnlockOutcome::Replaced);
    assert!(path.exists(), "someone else's file must not be deleted");
    assert!(tmp.exists());
}

#[test]
fn a_waiter_ends_up_on_the_current_inode() {
    // Whichever side wins the race at release (the releaser re-locking and
    // deleting, or the waiter grabbing the lock first), the waiter must end up
    // holding a lock on the file the path names.
    let root = tempfile::tempdir().unwrap();
    let eroot = root.path().to_owned();
    let path = vdb_lock_path(&eroot);
    let mut outcomes = Vec::new();
    for _ in 0..20 {
        let held = VdbLock::acquire(&st(&eroot), |_| {}).unwrap();
        let (tx, rx) = mpsc::channel();
        let waiter = {
            let eroot = eroot.clone();
            std::thread::spawn(move || {
                VdbLock::acquire(&st(&eroot), |_| tx.send(()).unwrap()).unwrap()
            })
        };
        rx.recv_timeout(Duration::from_secs(10))
            .expect("waiter must report waiting");
        // on_wait runs right before the blocking fcntl; let it get there.
        std::thread::sleep(Duration::from_millis(5));
        outcomes.push(held.unlock().unwrap());
        let got = waiter.join().unwrap();
        assert!(holds_current_inode(&got, &path));
        assert_eq!(got.unlock().unwrap(), UnlockOutcome::Removed);
        assert!(!path.exists());
    }
    assert!(outcomes
        .iter()
        .all(|o| matches!(o, UnlockOutcome::Removed | UnlockOutcome::Contended)));
}

#[test]
fn mutual_exclusion_between_threads_with_delete_on_unlock() {
    const THREADS: usize = 4;
    const ROUNDS: usize = 150;
    let root = tempfile::tempdir().unwrap();
    let eroot = Arc::new(root.path().to_owned());
    let inside = Arc::new(root.path().join("inside"));
    let violations = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(THREADS));
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            let (eroot, inside, violations, barrier) = (
                Arc::clone(&eroot),
                Arc::clone(&inside),
                Arc::clone(&violations),
                Arc::clone(&barrier),
            );
            std::thread::spawn(move || {
                barrier.wait();
                for _ in 0..ROUNDS {
                    let lock = VdbLock::acquire(&st(&eroot), |_| {}).unwrap();
                    match fs::File::create_new(&*inside) {
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                            violations.fetch_add(1, Ordering::SeqCst);
                            continue;
                        }
                        Err(e) => panic!("{e}"),
                    }
                    std::thread::yield_now();
                    fs::remove_file(&*inside).unwrap();
                    drop(lock);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(violations.load(Ordering::SeqCst), 0);
    assert!(!vdb_lock_path(&eroot).exists());
}

#[test]
fn in_place_locks_keep_the_file() {
    let root = tempfile::tempdir().unwrap();
    fs::create_dir_all(root.path().join("var/lib/portage")).unwrap();
    let l = fs_lock(&st(root.path()), |_| {}).unwrap();
    assert!(l.created());
    let path: PathBuf = l.path().to_owned();
    assert_eq!(path, root.path().join("var/lib/portage/config"));
    assert!(FileLock::try_acquire(&path).unwrap().is_none());
    l.unlock().unwrap();
    assert!(path.is_file());
    let l = FileLock::try_acquire(&path).unwrap().expect("free");
    assert!(!l.created());
    drop(l);
    assert!(path.is_file());
}

#[test]
fn in_place_lock_needs_its_directory() {
    let root = tempfile::tempdir().unwrap();
    let err = fs_lock(&st(root.path()), |_| {}).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound);
    assert!(err.to_string().contains("var/lib/portage/config"), "{err}");
}

#[test]
fn packages_and_slot_locks() {
    let root = tempfile::tempdir().unwrap();
    let pkgdir = root.path().join("packages");
    fs::create_dir(&pkgdir).unwrap();
    let l = lock_packages_index(&pkgdir, |_| {}).unwrap();
    assert_eq!(l.path(), pkgdir.join(".Packages.portage_lockfile"));
    assert!(SidecarLock::try_acquire(&pkgdir.join("Packages"))
        .unwrap()
        .is_none());
    drop(l);
    assert!(!pkgdir.join(".Packages.portage_lockfile").exists());

    let l = slot_lock(&st(root.path()), "dev-libs", "foo", "0", |_| {}).unwrap();
    let p = slot_lock_path(root.path(), "dev-libs", "foo", "0");
    assert_eq!(l.path(), p);
    assert!(p.is_file());
    assert_eq!(l.unlock().unwrap(), UnlockOutcome::Removed);
    assert!(root.path().join("var/db/pkg/dev-libs").is_dir());
}

#[test]
fn second_thread_waits_for_the_first() {
    let root = tempfile::tempdir().unwrap();
    let held = VdbLock::acquire(&st(root.path()), |_| {}).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let t = {
        let eroot = root.path().to_owned();
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let l = VdbLock::acquire(&st(&eroot), |p| tx.send(p.to_owned()).unwrap()).unwrap();
            done.store(true, Ordering::SeqCst);
            drop(l);
        })
    };
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(10)).unwrap(),
        vdb_lock_path(root.path())
    );
    std::thread::sleep(Duration::from_millis(100));
    assert!(!done.load(Ordering::SeqCst));
    drop(held);
    t.join().unwrap();
    assert!(done.load(Ordering::SeqCst));
}

/// The state paths of a root without EPREFIX.
fn st(root: &std::path::Path) -> vdb::state::StatePaths {
    vdb::state::StatePaths::new(root, "")
}

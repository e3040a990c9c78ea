//! Behaviour of the OFD lock primitive within one process.

use rootfs::lock::{try_lock_fd, LockOptions, LockedFile, Wait};
use std::fs::OpenOptions;
use std::os::fd::{AsFd, AsRawFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

fn lock_path() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".x.portage_lockfile");
    (dir, path)
}

#[test]
fn two_descriptions_conflict_even_in_one_process() {
    let (_dir, path) = lock_path();
    let a = LockedFile::lock(&path, |_| panic!("uncontended lock must not wait")).unwrap();
    // A second open of the same file is a different open file description.
    assert!(LockedFile::try_lock(&path).unwrap().is_none());
    let other = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    assert!(!try_lock_fd(other.as_fd()).unwrap());
    // Closing that other descriptor must not drop our lock (POSIX locks would).
    drop(other);
    assert!(LockedFile::try_lock(&path).unwrap().is_none());
    drop(a);
}

#[test]
fn lock_is_released_on_drop_and_on_unlock() {
    let (_dir, path) = lock_path();
    let a = LockedFile::lock(&path, |_| {}).unwrap();
    assert!(LockedFile::try_lock(&path).unwrap().is_none());
    drop(a);
    let b = LockedFile::try_lock(&path)
        .unwrap()
        .expect("free after drop");
    assert!(!b.created(), "the file is kept by the primitive");
    b.unlock().unwrap();
    assert!(LockedFile::try_lock(&path).unwrap().is_some());
}

#[test]
fn waiting_callback_fires_and_lock_waits_for_release() {
    let (_dir, path) = lock_path();
    let holder = LockedFile::lock(&path, |_| {}).unwrap();

    let acquired = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let waiter = {
        let path = path.clone();
        let acquired = Arc::clone(&acquired);
        std::thread::spawn(move || {
            let l = LockedFile::lock(&path, |p| tx.send(p.to_owned()).unwrap()).unwrap();
            acquired.store(true, Ordering::SeqCst);
            l
        })
    };
    let waited_on = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("on_wait must fire while the lock is held");
    assert_eq!(waited_on, path);
    // The callback is called before blocking; give the thread time to (wrongly)
    // get through, then check it did not.
    std::thread::sleep(Duration::from_millis(200));
    assert!(!acquired.load(Ordering::SeqCst), "acquired while held");
    drop(holder);
    let l = waiter.join().unwrap();
    assert!(acquired.load(Ordering::SeqCst));
    assert!(rx.try_recv().is_err(), "on_wait fires at most once");
    drop(l);
}

#[test]
fn nonblocking_and_timeout() {
    let (_dir, path) = lock_path();
    let _holder = LockedFile::lock(&path, |_| {}).unwrap();

    let opts = LockOptions {
        wait: Wait::NonBlocking,
        ..LockOptions::default()
    };
    let r = LockedFile::lock_with(&path, &opts, |_| panic!("no wait in non-blocking mode"));
    assert!(r.unwrap().is_none());

    let opts = LockOptions {
        wait: Wait::Timeout(Duration::from_millis(150)),
        ..LockOptions::default()
    };
    let mut waited = false;
    let start = Instant::now();
    let r = LockedFile::lock_with(&path, &opts, |_| waited = true).unwrap();
    assert!(r.is_none());
    assert!(waited);
    assert!(start.elapsed() >= Duration::from_millis(150));
}

#[test]
fn timeout_succeeds_when_released_meanwhile() {
    let (_dir, path) = lock_path();
    let holder = LockedFile::lock(&path, |_| {}).unwrap();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        drop(holder);
    });
    let opts = LockOptions {
        wait: Wait::Timeout(Duration::from_secs(20)),
        ..LockOptions::default()
    };
    let l = LockedFile::lock_with(&path, &opts, |_| {}).unwrap();
    assert!(l.is_some());
    t.join().unwrap();
}

/// Takes a classic POSIX write lock (what Python's `fcntl.lockf` does).
fn posix_try_wrlock(fd: std::os::fd::BorrowedFd<'_>) -> std::io::Result<()> {
    // SAFETY: all-zero is a valid `struct flock`.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as _;
    fl.l_whence = libc::SEEK_SET as _;
    // SAFETY: `fd` is live for the call and `fl` is an initialised flock.
    let rc = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETLK, &mut fl as *mut libc::flock) };
    if rc == -1 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

#[test]
fn ofd_and_posix_locks_conflict() {
    let (_dir, path) = lock_path();
    let other = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .unwrap();
    // POSIX lock held (owner: this process) → our OFD lock is refused.
    posix_try_wrlock(other.as_fd()).unwrap();
    assert!(LockedFile::try_lock(&path).unwrap().is_none());
    // Closing releases the POSIX lock.
    drop(other);
    // OFD lock held → a POSIX lock is refused.
    let l = LockedFile::try_lock(&path).unwrap().expect("free");
    let other = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let err = posix_try_wrlock(other.as_fd()).unwrap_err();
    assert!(
        matches!(err.raw_os_error(), Some(libc::EAGAIN | libc::EACCES)),
        "{err}"
    );
    drop(l);
}

#[test]
fn new_file_group_applies_only_to_files_we_create() {
    use std::os::unix::fs::MetadataExt;
    let (_dir, path) = lock_path();
    // Root may chgrp to any group; others only to their own groups.
    let gid = if rustix::process::geteuid().is_root() {
        4242
    } else {
        rustix::process::getegid().as_raw()
    };
    let opts = LockOptions {
        new_file_group: Some(gid),
        ..LockOptions::default()
    };
    let l = LockedFile::lock_with(&path, &opts, |_| {})
        .unwrap()
        .unwrap();
    assert!(l.created());
    assert_eq!(std::fs::metadata(&path).unwrap().gid(), gid);
    drop(l);

    let (_dir2, existing) = lock_path();
    std::fs::write(&existing, b"").unwrap();
    let before = std::fs::metadata(&existing).unwrap().gid();
    let opts = LockOptions {
        new_file_group: Some(before.wrapping_add(1)),
        ..LockOptions::default()
    };
    let l = LockedFile::lock_with(&existing, &opts, |_| {})
        .unwrap()
        .unwrap();
    assert!(!l.created());
    assert_eq!(std::fs::metadata(&existing).unwrap().gid(), before);
}

//! Many threads and many processes publishing the same CPV at once: every
//! one gets its own build id, every file is whole, `Packages` lists them
//! all, and nothing else (no placeholder, no temporary file) is left.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::sync::{Arc, Barrier};

use binpkg::Format;
use common::*;
use pkgdir::{PkgDir, PublishOptions};

/// The child publisher of `processes_publish_the_same_cpv`.
#[test]
fn child() {
    child_main();
}

#[test]
fn threads_publish_the_same_cpv() {
    const THREADS: usize = 16;
    let t = tempfile::tempdir().unwrap();
    let originals: Vec<(Vec<u8>, pkgdir::IndexMetadata, Format)> = CORPUS
        .iter()
        .map(|(n, f)| {
            let (d, m) = load_corpus(n);
            (d, m, *f)
        })
        .collect();
    let originals = Arc::new(originals);
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|i| {
            let (root, originals, barrier) =
                (t.path().to_owned(), originals.clone(), barrier.clone());
            std::thread::spawn(move || {
                let dir = PkgDir::new(
                    root,
                    PublishOptions {
                        // Half of them without O_TMPFILE.
                        force_named_temp: i % 2 == 1,
                        sync: i % 4 == 0,
                        ..Default::default()
                    },
                );
                let (data, meta, format) = &originals[i % originals.len()];
                barrier.wait();
                let mut p = dir.create_temp(&meta.cpv, *format).unwrap();
                for chunk in data.chunks(4096) {
                    p.file().write_all(chunk).unwrap();
                    std::thread::yield_now();
                }
                p.publish(meta).unwrap()
            })
        })
        .collect();
    let published: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let ids: BTreeSet<u64> = published.iter().map(|p| p.build_id.unwrap()).collect();
    assert_eq!(ids.len(), THREADS, "distinct build ids: {ids:?}");
    assert_eq!(ids, (1..=THREADS as u64).collect(), "no gaps");
    let datas: Vec<Vec<u8>> = originals.iter().map(|(d, _, _)| d.clone()).collect();
    let index = check_pkgdir(t.path(), &datas);
    assert_eq!(index.packages.len(), THREADS);
    assert!(strays(t.path()).is_empty(), "{:?}", strays(t.path()));
    // Each published path holds the bytes that were written for it.
    for (i, p) in published.iter().enumerate() {
        assert_eq!(
            std::fs::read(&p.path).unwrap(),
            originals[i % originals.len()].0
        );
    }
}

#[test]
fn processes_publish_the_same_cpv() {
    const PROCS: usize = 8;
    const ROUNDS: usize = 3;
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("pkgdir");
    let mut children = Vec::new();
    for i in 0..PROCS {
        let out = t.path().join(format!("out{i}"));
        let mut c = child_command(&root);
        c.env(CHILD_ROUNDS, ROUNDS.to_string())
            .env(CHILD_OUT, &out)
            // Big enough that writing overlaps between processes.
            .env(CHILD_SIZE, (3 << 20).to_string());
        if i % 2 == 1 {
            c.env("VARTREE_NO_O_TMPFILE", "1");
        }
        children.push((c.spawn().unwrap(), out));
    }
    let mut ids = Vec::new();
    for (child, out) in children {
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let text = std::fs::read_to_string(out).unwrap();
        for line in text.lines() {
            if let Some(id) = line.strip_prefix("BUILD_ID=") {
                ids.push(id.to_owned());
            }
        }
    }
    assert_eq!(ids.len(), PROCS * ROUNDS);
    let distinct: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), ids.len(), "{ids:?}");
    let index = check_pkgdir(&root, &[payload(3 << 20)]);
    assert_eq!(index.packages.len(), PROCS * ROUNDS);
    assert!(strays(&root).is_empty(), "{:?}", strays(&root));
    // The lock file is removed again by its last holder.
    assert!(!root.join(".Packages.portage_lockfile").exists());
}

/// Single-instance: concurrent replacements of one name; the survivor is
/// whole and the only entry.
#[test]
fn processes_replace_a_single_instance_package() {
    const PROCS: usize = 6;
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("pkgdir");
    let children: Vec<_> = (0..PROCS)
        .map(|i| {
            let mut c = child_command(&root);
            c.env(CHILD_ROUNDS, "2")
                .env(CHILD_SINGLE, "1")
                .env(CHILD_SIZE, ((1 << 20) + i).to_string());
            if i % 2 == 0 {
                c.env("VARTREE_NO_O_TMPFILE", "1");
            }
            c.spawn().unwrap()
        })
        .collect();
    for child in children {
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let originals: Vec<Vec<u8>> = (0..PROCS).map(|i| payload((1 << 20) + i)).collect();
    let index = check_pkgdir(&root, &originals);
    assert_eq!(index.packages.len(), 1);
    assert_eq!(index.packages[0]["PATH"], "app-misc/refpkg-1.0-r1.tbz2");
    assert!(strays(&root).is_empty(), "{:?}", strays(&root));
}

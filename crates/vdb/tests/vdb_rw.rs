//! Reading and writing VDB entries on temporary roots.

use std::fs;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::Path;

use atom::Cpv;
use vdb::contents::{parse_contents, ContentsEntry, EntryKind};
use vdb::counter::next_counter;
use vdb::db::{Collect, Vdb, Warning};
use vdb::owners::{find_owners, OwnerQuery};
use vdb::writer::{consolidate_metadata, update_keys};

fn cpv(s: &str) -> Cpv {
    Cpv::parse(s).unwrap()
}

fn mtime_ns(p: &Path) -> i128 {
    let m = fs::metadata(p).unwrap();
    i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec())
}

/// Write an entry by hand, the way Portage lays one out.
fn put_entry(root: &Path, cat: &str, pf: &str, files: &[(&str, &str)]) -> std::path::PathBuf {
    let d = root.join("var/db/pkg").join(cat).join(pf);
    fs::create_dir_all(&d).unwrap();
    for (k, v) in files {
        fs::write(d.join(k), v).unwrap();
    }
    d
}

fn install(vdb: &Vdb, s: &str, contents: &[ContentsEntry], slot: &str) {
    let c = cpv(s);
    let staged = vdb.begin_entry(&c).unwrap();
    staged
        .write_key("CATEGORY", format!("{}\n", c.category()).as_bytes())
        .unwrap();
    staged
        .write_key("PF", format!("{}\n", c.pf()).as_bytes())
        .unwrap();
    staged
        .write_key("SLOT", format!("{slot}\n").as_bytes())
        .unwrap();
    staged.write_key("EAPI", b"8\n").unwrap();
    staged.write_key("repository", b"gentoo\n").unwrap();
    let counter = next_counter(vdb, &Collect::default()).unwrap();
    staged.write_counter(counter).unwrap();
    staged.write_contents(contents).unwrap();
    staged.publish(vdb).unwrap();
}

#[test]
fn write_entry_like_portage() {
    let t = tempfile::tempdir().unwrap();
    let vdb = Vdb::new(t.path(), "");
    let contents = vec![
        ContentsEntry::new(&b"/usr"[..], EntryKind::Dir),
        ContentsEntry::new(
            &b"/usr/bin/foo"[..],
            EntryKind::Obj {
                md5: (*b"a1e632dfc8d1d7eedac3202097a307d2").into(),
                mtime: 1700000000,
            },
        ),
    ];
    install(&vdb, "app-misc/foo-1.0", &contents, "0");
    let d = t.path().join("var/db/pkg/app-misc/foo-1.0");
    assert!(!t
        .path()
        .join("var/db/pkg/app-misc/-MERGING-foo-1.0")
        .exists());
    assert_eq!(fs::read(d.join("COUNTER")).unwrap(), b"0");
    assert_eq!(
        fs::read(t.path().join("var/cache/edb/counter")).unwrap(),
        b"0"
    );
    assert_eq!(
        fs::read(d.join("CONTENTS")).unwrap(),
        b"dir /usr\nobj /usr/bin/foo a1e632dfc8d1d7eedac3202097a307d2 1700000000\n"
    );
    let meta = fs::read_to_string(d.join("metadata")).unwrap();
    let want = format!(
        "#format=1\nCOUNTER=0\nEAPI=8\nSLOT=0\nrepository=gentoo\n#dir_mtime={}\n",
        mtime_ns(&d)
    );
    assert_eq!(meta, want);
    // No temp names anywhere in the entry.
    for f in fs::read_dir(&d).unwrap() {
        let name = f.unwrap().file_name();
        assert!(!name.to_string_lossy().starts_with('.'), "{name:?}");
    }

    // A second package gets the next counter; entries read back.
    install(&vdb, "app-misc/bar-2.0", &[], "2/2.1");
    let r = Collect::default();
    let all = vdb.entries(&r).unwrap();
    let names: Vec<String> = all.iter().map(|e| e.cpv.to_string()).collect();
    assert_eq!(names, ["app-misc/bar-2.0", "app-misc/foo-1.0"]);
    assert_eq!(all[0].counter(&r), Some(1));
    assert_eq!(all[0].slot(&r), ("2".into(), Some("2.1".into())));
    assert!(all[0].metadata_snapshot().is_some());
    assert!(r.take().is_empty());
}

#[test]
fn counter_is_max_of_file_and_entries_plus_one() {
    let t = tempfile::tempdir().unwrap();
    let vdb = Vdb::new(t.path(), "");
    put_entry(t.path(), "a", "b-1", &[("COUNTER", "41")]);
    put_entry(t.path(), "a", "c-1", &[("COUNTER", "garbage")]);
    fs::create_dir_all(t.path().join("var/cache/edb")).unwrap();
    fs::write(t.path().join("var/cache/edb/counter"), "7\n").unwrap();
    let r = Collect::default();
    assert_eq!(next_counter(&vdb, &r).unwrap(), 42);
    assert_eq!(
        fs::read(t.path().join("var/cache/edb/counter")).unwrap(),
        b"42"
    );
    // The corrupt COUNTER of a/c-1 was reported.
    assert!(r
        .take()
        .iter()
        .any(|w| matches!(w, Warning::BadValue { key, .. } if key == "COUNTER")));
    // A corrupt counter file is reported and recomputed.
    fs::write(t.path().join("var/cache/edb/counter"), "x").unwrap();
    assert_eq!(next_counter(&vdb, &r).unwrap(), 42);
    assert!(r
        .take()
        .iter()
        .any(|w| matches!(w, Warning::BadValue { key, .. } if key == "counter")));
}

#[test]
fn metadata_trusted_only_while_dir_mtime_matches() {
    let t = tempfile::tempdir().unwrap();
    let d = put_entry(t.path(), "a", "b-1", &[("SLOT", "2\n"), ("EAPI", "8\n")]);
    // A stale-looking snapshot that claims SLOT=1, stamped with the right mtime.
    fs::write(d.join("metadata"), "#format=1\nSLOT=1\n").unwrap();
    fs::OpenOptions::new()
        .append(true)
        .open(d.join("metadata"))
        .and_then(|mut f| {
            use std::io::Write;
            writeln!(f, "#dir_mtime={}", mtime_ns(&d))
        })
        .unwrap();
    let vdb = Vdb::new(t.path(), "");
    let e = vdb.entry("a", "b-1").unwrap();
    assert_eq!(e.get("SLOT").unwrap().as_deref(), Some("1"));
    // A carried key absent from a valid snapshot is empty, without a file read.
    assert_eq!(e.get("EAPI").unwrap(), None);
    // Once the directory changes, the per-key files are read.
    fs::write(d.join("USE"), "x\n").unwrap();
    let e = vdb.entry("a", "b-1").unwrap();
    assert!(e.metadata_snapshot().is_none());
    assert_eq!(e.get("SLOT").unwrap().as_deref(), Some("2"));
    assert_eq!(e.get("EAPI").unwrap().as_deref(), Some("8"));
    // Consolidating makes it coherent again.
    consolidate_metadata(&d).unwrap();
    let e = vdb.entry("a", "b-1").unwrap();
    assert_eq!(e.metadata_snapshot().unwrap()["SLOT"], "2");
}

#[test]
fn update_keys_keeps_metadata_coherent() {
    let t = tempfile::tempdir().unwrap();
    let vdb = Vdb::new(t.path(), "");
    install(&vdb, "a/b-1", &[], "0");
    let e = vdb.entry("a", "b-1").unwrap();
    update_keys(&vdb, &e, &[("SLOT", Some(b"3\n")), ("repository", None)]).unwrap();
    let e = vdb.entry("a", "b-1").unwrap();
    let snap = e.metadata_snapshot().expect("metadata still valid");
    assert_eq!(snap["SLOT"], "3");
    assert!(!snap.contains_key("repository"));
    assert!(!e.path_of("repository").exists());
}

#[test]
fn bad_input_is_reported_and_the_rest_works() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    put_entry(
        root,
        "a",
        "good-1",
        &[
            ("SLOT", "0\n"),
            (
                "CONTENTS",
                "dir /usr\nobj /usr/x d41d8cd98f00b204e9800998ecf8427e 1\n",
            ),
        ],
    );
    // Truncated CONTENTS: the last line is cut in the middle.
    put_entry(
        root,
        "a",
        "trunc-1",
        &[
            ("SLOT", "0\n"),
            ("CONTENTS", "dir /usr\nobj /usr/y d41d8cd98f00b2"),
        ],
    );
    // NUL bytes.
    put_entry(
        root,
        "a",
        "nul-1",
        &[
            ("SLOT", "0\n"),
            (
                "CONTENTS",
                "dir /usr\n\0\0\0\0\nobj /usr/z d41d8cd98f00b204e9800998ecf8427e 1\n",
            ),
        ],
    );
    // Missing SLOT.
    put_entry(root, "a", "noslot-1", &[("CONTENTS", "")]);
    // A PF that does not parse, a -MERGING- leftover, a dot-dir, a stray file.
    put_entry(root, "a", "not_a_pf", &[]);
    put_entry(root, "a", "-MERGING-half-1", &[]);
    put_entry(root, "a", ".hidden-1", &[]);
    fs::write(root.join("var/db/pkg/a/stray-1"), "").unwrap();
    // A directory where a file is expected.
    let d = put_entry(root, "a", "dirslot-1", &[]);
    fs::create_dir(d.join("SLOT")).unwrap();
    fs::create_dir(d.join("CONTENTS")).unwrap();
    // A bad category name.
    fs::create_dir_all(root.join("var/db/pkg/bad category")).unwrap();

    let vdb = Vdb::new(root, "");
    let r = Collect::default();
    let all = vdb.entries(&r).unwrap();
    let names: Vec<String> = all.iter().map(|e| e.cpv.to_string()).collect();
    assert_eq!(
        names,
        [
            "a/dirslot-1",
            "a/good-1",
            "a/noslot-1",
            "a/nul-1",
            "a/trunc-1"
        ]
    );
    let w = r.take();
    assert!(
        w.iter().any(
            |w| matches!(w, Warning::InvalidEntry { path, .. } if path.ends_with("a/not_a_pf"))
        ),
        "{w:?}"
    );
    assert!(w.iter().any(
        |w| matches!(w, Warning::IncompleteMerge { path } if path.ends_with("a/-MERGING-half-1"))
    ));
    assert!(w.iter().any(
        |w| matches!(w, Warning::InvalidEntry { path, .. } if path.ends_with("bad category"))
    ));

    let by = |n: &str| all.iter().find(|e| e.cpv.pf() == n).unwrap();
    let c = by("trunc-1").contents(&r).unwrap();
    assert_eq!(c.entries.len(), 1);
    let c = by("nul-1").contents(&r).unwrap();
    assert_eq!(c.entries.len(), 2);
    let w = r.take();
    assert!(w.iter().any(|w| matches!(w, Warning::ContentsLine { path, line: 2, .. } if path.ends_with("trunc-1/CONTENTS"))), "{w:?}");
    assert!(w.iter().any(|w| matches!(w, Warning::ContentsLine { path, line: 2, .. } if path.ends_with("nul-1/CONTENTS"))), "{w:?}");

    assert_eq!(by("noslot-1").slot(&r).0, "0");
    assert!(r
        .take()
        .iter()
        .any(|w| matches!(w, Warning::BadValue { key, .. } if key == "SLOT")));
    assert_eq!(by("dirslot-1").slot(&r).0, "0");
    assert!(r.take().iter().any(
        |w| matches!(w, Warning::Unreadable { path, .. } if path.ends_with("dirslot-1/SLOT"))
    ));
    assert!(by("dirslot-1").contents(&r).is_err());

    // Owners still works over everything readable.
    let q = [OwnerQuery::new(b"/usr/x"), OwnerQuery::new(b"/usr/z")];
    let o = find_owners(&vdb, &q, &r).unwrap();
    let got: Vec<(usize, String)> = o
        .iter()
        .map(|o| (o.query, o.entry.cpv.to_string()))
        .collect();
    assert_eq!(
        got,
        [(0, "a/good-1".to_string()), (1, "a/nul-1".to_string())]
    );
    assert!(r.take().iter().any(
        |w| matches!(w, Warning::Unreadable { path, .. } if path.ends_with("dirslot-1/CONTENTS"))
    ));
}

#[test]
fn owners_through_symlinked_dirs_and_implicit_parents() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    fs::create_dir_all(root.join("usr/lib/foo")).unwrap();
    symlink("usr/lib", root.join("lib")).unwrap();
    put_entry(root, "sys-libs", "foo-1", &[("CONTENTS", "obj /usr/lib/foo/libfoo.so.1 d41d8cd98f00b204e9800998ecf8427e 1\nsym /lib/libbar.so -> libbar.so.1 1\n")]);
    put_entry(
        root,
        "sys-libs",
        "baz-1",
        &[(
            "CONTENTS",
            "dir /usr/lib\nobj /usr/lib/libbaz.so d41d8cd98f00b204e9800998ecf8427e 1\n",
        )],
    );
    let vdb = Vdb::new(root, "");
    let r = Collect::default();
    let q: Vec<OwnerQuery> = [
        &b"/lib/foo/libfoo.so.1"[..], // through the /lib symlink
        b"/usr/lib/libbar.so",        // recorded as /lib/libbar.so
        b"/usr/lib/foo",              // an implicit parent directory
        b"/usr/lib",                  // owned by both
        b"libbaz.so",                 // a basename
        b"/usr/lib//foo/./libfoo.so.1",
        b"/nothing/here",
    ]
    .iter()
    .map(|p| OwnerQuery::new(p))
    .collect();
    let o = find_owners(&vdb, &q, &r).unwrap();
    let got: Vec<(usize, String, String)> = o
        .iter()
        .map(|o| {
            (
                o.query,
                o.entry.cpv.to_string(),
                String::from_utf8_lossy(&o.path).into_owned(),
            )
        })
        .collect();
    let want: Vec<(usize, String, String)> = [
        (0, "sys-libs/foo-1", "/usr/lib/foo/libfoo.so.1"),
        (1, "sys-libs/foo-1", "/lib/libbar.so"),
        (2, "sys-libs/foo-1", "/usr/lib/foo"),
        (3, "sys-libs/baz-1", "/usr/lib"),
        (3, "sys-libs/foo-1", "/usr/lib"),
        (4, "sys-libs/baz-1", "/usr/lib/libbaz.so"),
        (5, "sys-libs/foo-1", "/usr/lib/foo/libfoo.so.1"),
    ]
    .iter()
    .map(|(a, b, c)| (*a, b.to_string(), c.to_string()))
    .collect();
    assert_eq!(got, want);
}

#[test]
fn eprefix_paths() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let d = root.join("opt/gentoo/var/db/pkg/app-misc/foo-1");
    fs::create_dir_all(&d).unwrap();
    fs::write(
        d.join("CONTENTS"),
        "dir /opt/gentoo/etc\nobj /opt/gentoo/etc/a.conf d41d8cd98f00b204e9800998ecf8427e 1\n",
    )
    .unwrap();
    let vdb = Vdb::new(root, "/opt/gentoo/");
    assert_eq!(vdb.eprefix(), Path::new("/opt/gentoo"));
    let r = Collect::default();
    // Parents at or above EPREFIX are not implicit keys.
    let q = [
        OwnerQuery::new(b"/opt/gentoo/etc"),
        OwnerQuery::new(b"/opt/gentoo"),
        OwnerQuery::new(b"/opt"),
    ];
    let o = find_owners(&vdb, &q, &r).unwrap();
    assert_eq!(o.len(), 1);
    assert_eq!(o[0].query, 0);
    let parsed = parse_contents(&fs::read(d.join("CONTENTS")).unwrap());
    assert_eq!(parsed.entries.len(), 2);
}

#[test]
fn remove_from_contents_rewrites_sorted_and_coherent() {
    let t = tempfile::tempdir().unwrap();
    let vdb = Vdb::new(t.path(), "");
    let entries = vec![
        ContentsEntry::new(
            &b"/usr/bin/b"[..],
            EntryKind::Obj {
                md5: (*b"aa").into(),
                mtime: 1,
            },
        ),
        ContentsEntry::new(&b"/usr"[..], EntryKind::Dir),
        ContentsEntry::new(&b"/usr/bin"[..], EntryKind::Dir),
        ContentsEntry::new(
            &b"/usr/bin/a"[..],
            EntryKind::Obj {
                md5: (*b"bb").into(),
                mtime: 2,
            },
        ),
    ];
    install(&vdb, "a/b-1", &entries, "0");
    let e = vdb.entry("a", "b-1").unwrap();
    fs::write(
        e.path_of("NEEDED.ELF.2"),
        "X86_64;/usr/bin/a;;;libc.so.6;x86_64\nX86_64;/usr/bin/b;;;libc.so.6;x86_64\n",
    )
    .unwrap();
    vdb::writer::consolidate_metadata(e.dir()).unwrap();
    let n =
        vdb::writer::remove_from_contents(&vdb, &e, &|p| p == b"/usr/bin/a", &Collect::default())
            .unwrap();
    assert_eq!(n, 1);
    assert_eq!(
        fs::read_to_string(e.path_of("CONTENTS")).unwrap(),
        "dir /usr\ndir /usr/bin\nobj /usr/bin/b aa 1\n"
    );
    assert_eq!(
        fs::read_to_string(e.path_of("NEEDED.ELF.2")).unwrap(),
        "X86_64;/usr/bin/b;;;libc.so.6;x86_64\n"
    );
    assert!(vdb.entry("a", "b-1").unwrap().metadata_snapshot().is_some());
}

use std::io::{Cursor, Write};
use std::path::PathBuf;
use std::sync::Arc;

use super::*;
use crate::{open, BasenameCheck, BinPkg, Keyring, SignaturePolicy, VerifyOptions};

/// An entry of a test image with its content.
struct TE {
    path: &'static str,
    kind: EntryKind,
    mode: u32,
    data: Vec<u8>,
    link: &'static str,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

fn te(path: &'static str, kind: EntryKind) -> TE {
    TE {
        path,
        kind,
        mode: if kind == EntryKind::Dir { 0o755 } else { 0o644 },
        data: Vec::new(),
        link: "",
        xattrs: Vec::new(),
    }
}

fn sample() -> Vec<TE> {
    let long_dir: &'static str =
        Box::leak(format!("usr/share/{}", "d".repeat(120)).into_boxed_str());
    let long_file: &'static str =
        Box::leak(format!("{long_dir}/{}", "f".repeat(140)).into_boxed_str());
    let long_link: &'static str = Box::leak(format!("/{}", "t".repeat(150)).into_boxed_str());
    vec![
        te("usr", EntryKind::Dir),
        te("usr/bin", EntryKind::Dir),
        TE {
            data: b"#!/bin/sh\necho hi\n".to_vec(),
            mode: 0o4755,
            xattrs: vec![(b"user.comment".to_vec(), b"bin\0ary\n".to_vec())],
            ..te("usr/bin/app", EntryKind::File)
        },
        TE {
            link: "usr/bin/app",
            mode: 0o4755,
            ..te("usr/bin/app-hard", EntryKind::Hardlink)
        },
        TE {
            link: "app",
            mode: 0o777,
            ..te("usr/bin/app-alias", EntryKind::Symlink)
        },
        te("usr/share", EntryKind::Dir),
        te(long_dir, EntryKind::Dir),
        TE {
            data: vec![7u8; 100_000],
            ..te(long_file, EntryKind::File)
        },
        TE {
            link: long_link,
            mode: 0o777,
            ..te("usr/share/dangling", EntryKind::Symlink)
        },
        te("usr/share/empty", EntryKind::File),
        TE {
            data: "naïve 日本\n".as_bytes().to_vec(),
            ..te("usr/share/naïve 日本.txt", EntryKind::File)
        },
        te("usr/share/fifo", EntryKind::Fifo),
    ]
}

fn metadata() -> Metadata {
    let mut m = Metadata::new();
    for (k, v) in [
        ("CATEGORY", "app-misc\n"),
        ("PF", "app-1.0\n"),
        ("SLOT", "0\n"),
        ("EAPI", "8\n"),
        ("BUILD_TIME", "1700000000\n"),
        ("CONTENTS", "dir /usr\n"),
    ] {
        m.insert(k.to_owned(), v.as_bytes().to_vec());
    }
    m
}

fn fill(entries: &[TE]) -> impl FnOnce(&mut ImageWriter<'_>) -> Result<(), WriteError> + '_ {
    move |w| {
        for e in entries {
            let se = SourceEntry {
                mode: e.mode,
                mtime: 1_700_000_000,
                size: e.data.len() as u64,
                link_target: e.link.as_bytes(),
                xattrs: &e.xattrs,
                uname: b"root",
                gname: b"root",
                ..SourceEntry::new(e.path.as_bytes(), e.kind)
            };
            let mut data = &e.data[..];
            let content: Option<&mut dyn Read> = if e.kind == EntryKind::File {
                Some(&mut data)
            } else {
                None
            };
            w.append(&se, content)?;
        }
        Ok(())
    }
}

fn opts(c: Compression) -> WriteOptions {
    WriteOptions {
        compression: c,
        mtime: Some(1_700_000_000),
        threads: 1,
        ..WriteOptions::default()
    }
}

fn gpkg_bytes(o: &WriteOptions, entries: &[TE]) -> Vec<u8> {
    let mut cur = Cursor::new(Vec::new());
    write_gpkg(&mut cur, "app-1.0", &metadata(), o, fill(entries)).unwrap();
    cur.into_inner()
}

fn save(dir: &tempfile::TempDir, name: &str, data: &[u8]) -> PathBuf {
    let p = dir.path().join(name);
    std::fs::File::create(&p).unwrap().write_all(data).unwrap();
    p
}

/// path, kind, mode, content, link target, xattr count.
type Got = (String, EntryKind, u32, Vec<u8>, String, usize);

fn read_back(pkg: &BinPkg) -> Vec<Got> {
    let mut out = Vec::new();
    pkg.for_each_image_entry(|e| {
        let mut data = Vec::new();
        e.read_to_end(&mut data)
            .map_err(|source| WriteError::Io { op: "read", source })?;
        out.push((
            String::from_utf8(e.path.clone()).unwrap(),
            e.kind,
            e.mode,
            data,
            String::from_utf8(e.link_target.clone().unwrap_or_default()).unwrap(),
            e.xattrs.len(),
        ));
        assert_eq!(e.mtime.secs, 1_700_000_000);
        Ok::<(), Box<dyn std::error::Error>>(())
    })
    .unwrap();
    out
}

fn verify_opts() -> VerifyOptions {
    VerifyOptions {
        basename: BasenameCheck::Any,
        ..VerifyOptions::default()
    }
}

fn check_entries(got: &[Got], want: &[TE]) {
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g.0, w.path);
        assert_eq!(g.1, w.kind, "{}", w.path);
        assert_eq!(g.2, w.mode, "{}", w.path);
        assert_eq!(g.3, w.data, "{}", w.path);
        assert_eq!(g.4, w.link, "{}", w.path);
        assert_eq!(g.5, w.xattrs.len(), "{}", w.path);
    }
}

#[test]
fn gpkg_round_trips_through_the_reader_in_every_compression() {
    let dir = tempfile::tempdir().unwrap();
    let entries = sample();
    for c in Compression::ALL.into_iter().filter(|c| c.is_supported()) {
        let bytes = gpkg_bytes(&opts(c), &entries);
        assert_eq!(bytes.len() % 10240, 0);
        let p = save(&dir, &format!("app-1.0-{}.gpkg.tar", c.name()), &bytes);
        let pkg = open(&p, &verify_opts()).unwrap_or_else(|e| panic!("{c:?}: {e}"));
        assert_eq!(pkg.format(), crate::Format::Gpkg);
        assert_eq!(pkg.image_compression(), c);
        assert_eq!(pkg.metadata(), &metadata());
        check_entries(&read_back(&pkg), &entries);
    }
}

#[test]
fn xpak_round_trips_through_the_reader() {
    let dir = tempfile::tempdir().unwrap();
    let entries = sample();
    let mut md = metadata();
    md.remove("CONTENTS");
    for c in [Compression::Bzip2, Compression::Zstd, Compression::None] {
        let mut out = Vec::new();
        write_xpak(&mut out, &md, &opts(c), fill(&entries)).unwrap();
        let p = save(&dir, &format!("app-1.0-{}.tbz2", c.name()), &out);
        let pkg = open(&p, &verify_opts()).unwrap_or_else(|e| panic!("{c:?}: {e}"));
        assert_eq!(pkg.format(), crate::Format::Xpak);
        assert_eq!(pkg.metadata(), &md);
        check_entries(&read_back(&pkg), &entries);
    }
}

#[test]
fn output_is_deterministic() {
    let entries = sample();
    for c in [Compression::Zstd, Compression::Xz, Compression::Gzip] {
        let a = gpkg_bytes(&opts(c), &entries);
        let b = gpkg_bytes(
            &WriteOptions {
                threads: 2,
                ..opts(c)
            },
            &entries,
        );
        assert!(a == b, "{c:?}: two writes differ");
    }
}

#[test]
fn container_layout_matches_portage() {
    let bytes = gpkg_bytes(&opts(Compression::Zstd), &sample());
    let mut ar = ::tar::Archive::new(&bytes[..]);
    let names: Vec<(String, u32, u64, u64)> = ar
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let h = e.header();
            (
                e.path().unwrap().to_string_lossy().into_owned(),
                h.mode().unwrap(),
                h.uid().unwrap(),
                h.mtime().unwrap(),
            )
        })
        .collect();
    let just: Vec<&str> = names.iter().map(|n| n.0.as_str()).collect();
    assert_eq!(
        just,
        [
            "app-1.0/gpkg-1",
            "app-1.0/metadata.tar.zst",
            "app-1.0/image.tar.zst",
            "app-1.0/Manifest"
        ]
    );
    for n in &names {
        assert_eq!((n.1, n.2, n.3), (0o644, 0, 1_700_000_000));
    }
}

#[test]
fn hostile_entries_are_refused() {
    let bad: [(&[u8], EntryKind, &[u8]); 7] = [
        (b"/abs", EntryKind::File, b""),
        (b"a/../b", EntryKind::File, b""),
        (b"a//b", EntryKind::File, b""),
        (b"new\nline", EntryKind::File, b""),
        (b"", EntryKind::File, b""),
        (b"h", EntryKind::Hardlink, b"../x"),
        (b"s", EntryKind::Symlink, b""),
    ];
    for (path, kind, link) in bad {
        let mut cur = Cursor::new(Vec::new());
        let r = write_gpkg(
            &mut cur,
            "x-1",
            &metadata(),
            &opts(Compression::None),
            |w| {
                let e = SourceEntry {
                    link_target: link,
                    ..SourceEntry::new(path, kind)
                };
                let mut empty: &[u8] = b"";
                w.append(&e, Some(&mut empty))
            },
        );
        assert!(
            matches!(r, Err(WriteError::InvalidEntry { .. })),
            "{path:?}: {r:?}"
        );
    }
}

#[test]
fn a_file_that_shrinks_is_an_error_naming_it() {
    let mut cur = Cursor::new(Vec::new());
    let r = write_gpkg(
        &mut cur,
        "x-1",
        &metadata(),
        &opts(Compression::Zstd),
        |w| {
            let e = SourceEntry {
                size: 10,
                ..SourceEntry::new(b"etc/short", EntryKind::File)
            };
            let mut data: &[u8] = b"abc";
            w.append(&e, Some(&mut data))
        },
    );
    let e = r.unwrap_err();
    assert!(matches!(e, WriteError::SourceChanged { got: 3, .. }), "{e}");
    assert!(e.to_string().contains("etc/short"), "{e}");
}

fn test_keys() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpora/binpkgs/test-keys")
}

#[test]
fn signed_gpkg_verifies_with_the_public_key() {
    let keys = test_keys();
    assert!(keys.exists(), "{} is missing", keys.display());
    let signer =
        Arc::new(Signer::from_file(&keys.join("trusted-sec.asc"), Some("GentooTest")).unwrap());
    let locked = Signer::from_file(&keys.join("trusted-sec.asc"), None).unwrap_err();
    assert!(locked.to_string().contains("passphrase"), "{locked}");
    assert_eq!(
        signer.fingerprint(),
        "06B3A311BD775C280D22A9305D90EA06352177F6"
    );
    let o = WriteOptions {
        signer: Some(signer),
        ..opts(Compression::Zstd)
    };
    let bytes = gpkg_bytes(&o, &sample());
    let dir = tempfile::tempdir().unwrap();
    let p = save(&dir, "app-1.0.gpkg.tar", &bytes);
    let trusted = Keyring::from_file(&keys.join("trusted-pub.asc")).unwrap();
    let v = VerifyOptions {
        signature: SignaturePolicy::Required,
        keyring: Some(Arc::new(trusted)),
        ..verify_opts()
    };
    let pkg = open(&p, &v).unwrap();
    assert!(pkg.is_signed());
    assert_eq!(pkg.signers().len(), 1);
    // The wrong key: refused.
    let untrusted = Keyring::from_file(&keys.join("untrusted-pub.asc")).unwrap();
    let v = VerifyOptions {
        keyring: Some(Arc::new(untrusted)),
        ..v
    };
    assert!(open(&p, &v).is_err());
}

mod props {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    struct PE {
        name: String,
        kind: u8,
        data: Vec<u8>,
        mode: u32,
        mtime: i64,
        uid: u64,
        link: String,
        xattr: Option<Vec<u8>>,
    }

    fn pe() -> impl Strategy<Value = PE> {
        (
            "[a-zA-Z0-9._-]{1,160}",
            0u8..3,
            proptest::collection::vec(any::<u8>(), 0..3000),
            0u32..0o7777,
            prop_oneof![0i64..=0o77777777777, Just(-1i64), Just(1i64 << 40)],
            prop_oneof![0u64..70000, Just(1u64 << 33)],
            "[a-zA-Z0-9/._ -]{1,150}",
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
        )
            .prop_filter("not . or ..", |t| t.0 != "." && t.0 != "..")
            .prop_map(|(name, kind, data, mode, mtime, uid, link, xattr)| PE {
                name,
                kind,
                data,
                mode,
                mtime,
                uid,
                link,
                xattr,
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
        /// Whatever is written reads back the same: names of any length
        /// (USTAR prefix or PAX), large and negative numbers, xattrs.
        #[test]
        fn written_entries_read_back(entries in proptest::collection::vec(pe(), 1..12), xpak in any::<bool>()) {
            let deep = format!("top/{}", "n".repeat(150));
            let mut seen = std::collections::HashSet::new();
            let entries: Vec<PE> = entries.into_iter().filter(|e| seen.insert(e.name.clone())).collect();
            let xattrs: Vec<Vec<(Vec<u8>, Vec<u8>)>> = entries
                .iter()
                .map(|e| e.xattr.iter().map(|v| (b"user.p".to_vec(), v.clone())).collect())
                .collect();
            let paths: Vec<String> = entries.iter().map(|e| format!("{deep}/{}", e.name)).collect();
            let fill = |w: &mut ImageWriter<'_>| -> Result<(), WriteError> {
                w.append(&SourceEntry::new(b"top", EntryKind::Dir), None)?;
                w.append(&SourceEntry::new(deep.as_bytes(), EntryKind::Dir), None)?;
                for ((e, p), x) in entries.iter().zip(&paths).zip(&xattrs) {
                    let kind = [EntryKind::File, EntryKind::Symlink, EntryKind::Dir][e.kind as usize];
                    let se = SourceEntry {
                        mode: e.mode,
                        mtime: e.mtime,
                        uid: e.uid,
                        gid: e.uid / 2,
                        size: e.data.len() as u64,
                        link_target: e.link.as_bytes(),
                        xattrs: if kind == EntryKind::File { x } else { &[] },
                        ..SourceEntry::new(p.as_bytes(), kind)
                    };
                    let mut d = &e.data[..];
                    w.append(&se, (kind == EntryKind::File).then_some(&mut d as &mut dyn Read))?;
                }
                Ok(())
            };
            let dir = tempfile::tempdir().unwrap();
            let o = opts(Compression::None);
            let p = if xpak {
                let mut out = Vec::new();
                write_xpak(&mut out, &metadata(), &o, fill).unwrap();
                save(&dir, "p-1.tbz2", &out)
            } else {
                let mut cur = Cursor::new(Vec::new());
                write_gpkg(&mut cur, "p-1", &metadata(), &o, fill).unwrap();
                save(&dir, "p-1.gpkg.tar", &cur.into_inner())
            };
            let pkg = open(&p, &verify_opts()).unwrap();
            let mut got = Vec::new();
            pkg.for_each_image_entry(|e| {
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                got.push((e.path.clone(), e.kind, e.mode, e.mtime.secs, e.uid, data,
                          e.link_target.clone().unwrap_or_default(), e.xattrs.clone()));
                Ok::<(), Box<dyn std::error::Error>>(())
            }).unwrap();
            prop_assert_eq!(got.len(), entries.len() + 2);
            for ((g, e), (p, x)) in got[2..].iter().zip(&entries).zip(paths.iter().zip(&xattrs)) {
                let kind = [EntryKind::File, EntryKind::Symlink, EntryKind::Dir][e.kind as usize];
                prop_assert_eq!(&g.0, p.as_bytes());
                prop_assert_eq!(g.1, kind);
                prop_assert_eq!(g.2, e.mode);
                prop_assert_eq!(g.3, e.mtime);
                prop_assert_eq!(g.4, e.uid);
                if kind == EntryKind::File {
                    prop_assert_eq!(&g.5, &e.data);
                    prop_assert_eq!(&g.7, x);
                }
                if kind == EntryKind::Symlink {
                    prop_assert_eq!(&g.6, e.link.as_bytes());
                }
            }
        }
    }
}

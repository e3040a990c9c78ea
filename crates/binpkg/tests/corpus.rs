//! Every package of shared/corpora/binpkgs/portage-generated (written by
//! Portage's own gpkg.py / xpak.py, see SOURCE.txt there) reads, verifies and
//! yields exactly the entries and metadata of the oracles.

mod common;

use std::collections::BTreeMap;
use std::io::Read;

use binpkg::{
    detect_format, BasenameCheck, BinPkg, Compression, EntryKind, ErrorKind, Format,
    SignaturePolicy, VerifyOptions,
};
use common::*;

/// One line of image-entries.tsv.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Oracle {
    kind: String,
    mode: String,
    owner: String,
    names: String,
    size: u64,
    mtime: i64,
    md5: String,
    path: String,
    link: String,
}

fn oracle_entries() -> Vec<Oracle> {
    let text = std::fs::read_to_string(generated("image-entries.tsv")).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            assert_eq!(f.len(), 9, "{l}");
            Oracle {
                kind: f[0].into(),
                mode: f[1].into(),
                owner: f[2].into(),
                names: f[3].into(),
                size: f[4].parse().unwrap(),
                mtime: f[5].parse().unwrap(),
                md5: f[6].into(),
                path: f[7].into(),
                link: f[8].into(),
            }
        })
        .collect()
}

fn oracle_metadata() -> Vec<(String, Vec<u8>)> {
    let text = std::fs::read_to_string(generated("metadata-entries.tsv")).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (name, repr) = l.split_once('\t').unwrap();
            (
                name.strip_prefix("metadata/").unwrap().to_owned(),
                py_bytes(repr),
            )
        })
        .collect()
}

/// Our entries in the oracle's notation (`image/<path>`, content md5).
fn entries_as_oracle(pkg: &BinPkg) -> Vec<Oracle> {
    let mut out = Vec::new();
    pkg.for_each_image_entry(|e| {
        let mut content = Vec::new();
        e.read_to_end(&mut content).unwrap();
        assert_eq!(content.len() as u64, e.size);
        let path = if e.is_root() {
            "image".to_owned()
        } else {
            format!("image/{}", String::from_utf8(e.path.clone()).unwrap())
        };
        let link = match (e.kind, &e.link_target) {
            (EntryKind::Hardlink, Some(t)) => format!("image/{}", String::from_utf8_lossy(t)),
            (_, Some(t)) => String::from_utf8_lossy(t).into_owned(),
            (_, None) => "-".into(),
        };
        out.push(Oracle {
            kind: e.kind.as_str().into(),
            mode: format!("{:o}", e.mode),
            owner: format!("{}:{}", e.uid, e.gid),
            names: format!(
                "{}:{}",
                String::from_utf8_lossy(e.uname.as_deref().unwrap_or_default()),
                String::from_utf8_lossy(e.gname.as_deref().unwrap_or_default())
            ),
            size: e.size,
            mtime: e.mtime.secs,
            md5: if e.kind == EntryKind::File {
                md5_hex(&content)
            } else {
                "-".into()
            },
            path,
            link,
        });
        assert_eq!(e.mtime.nanos, 0);
        assert!(e.xattrs.is_empty());
        Ok::<(), binpkg::Error>(())
    })
    .unwrap();
    out
}

/// Compare with the oracle; the root directory's mtime is the generation
/// time of each file (not one value), so only its other fields are compared.
fn assert_matches_oracle(name: &str, ours: &[Oracle]) {
    let oracle = oracle_entries();
    assert_eq!(ours.len(), oracle.len(), "{name}: entry count");
    for (o, w) in ours.iter().zip(&oracle) {
        if w.path == "image" {
            let mut o = o.clone();
            o.mtime = w.mtime;
            assert_eq!(&o, w, "{name}: root entry");
        } else {
            assert_eq!(o, w, "{name}");
        }
    }
}

fn generated_json() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(generated("generated.json")).unwrap()).unwrap()
}

#[test]
fn every_gpkg_verifies_and_matches_the_oracles() {
    let dir = tempfile::tempdir().unwrap();
    let json = generated_json();
    let want_md: BTreeMap<String, Vec<u8>> = oracle_metadata().into_iter().collect();
    for (name, compression, signed) in GPKGS {
        let path = portage_named_copy(dir.path(), name);
        assert_eq!(detect_format(&path).unwrap(), Format::Gpkg);
        let pkg = binpkg::open(&path, &trusted_opts(SignaturePolicy::IfPresent))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let BinPkg::Gpkg(g) = &pkg else {
            panic!("{name}: not gpkg")
        };
        assert_eq!(pkg.format(), Format::Gpkg);
        assert_eq!(pkg.cpv().unwrap().to_string(), "app-misc/refpkg-1.0-r1");
        assert_eq!(g.basename(), "refpkg-1.0-r1");
        assert_eq!(pkg.image_compression().name(), compression, "{name}");
        assert_eq!(g.metadata_compression().name(), compression, "{name}");
        assert_eq!(g.is_signed(), signed, "{name}");
        if signed {
            assert_eq!(g.signers(), ["06B3A311BD775C280D22A9305D90EA06352177F6"]);
        } else {
            assert!(g.signers().is_empty());
        }
        // Members and sizes as recorded in generated.json.
        let record = json
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["file"] == name)
            .unwrap();
        let want: Vec<(String, u64)> = record["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (m[0].as_str().unwrap().to_owned(), m[1].as_u64().unwrap()))
            .collect();
        let have: Vec<(String, u64)> = g
            .members()
            .iter()
            .map(|m| (format!("refpkg-1.0-r1/{}", m.name), m.size))
            .collect();
        assert_eq!(have, want, "{name}");
        // Manifest: every member but itself.
        assert_eq!(g.manifest().len(), want.len() - 1);
        // Metadata (the oracle is the "none" package's; BINPKG_COMPRESS_USED
        // names each package's compression).
        let mut want_md = want_md.clone();
        want_md.insert(
            "BINPKG_COMPRESS_USED".into(),
            format!("{compression}\n").into_bytes(),
        );
        assert_eq!(pkg.metadata(), &want_md, "{name}");
        // Image.
        let ours = entries_as_oracle(&pkg);
        assert_matches_oracle(name, &ours);
        let s = pkg.image_summary().unwrap();
        assert_eq!(
            (s.entries, s.files, s.dirs, s.symlinks, s.hardlinks),
            (26, 8, 14, 3, 1)
        );
        assert_eq!(s.content_bytes, 3085);
    }
}

#[test]
fn the_tbz2_reads_with_its_xpak_keys_and_image() {
    let path = generated("refpkg-1.0-r1.tbz2");
    assert_eq!(detect_format(&path).unwrap(), Format::Xpak);
    let pkg = binpkg::open(&path, &VerifyOptions::default()).unwrap();
    let BinPkg::Xpak(x) = &pkg else {
        panic!("not xpak")
    };
    assert_eq!(pkg.image_compression(), Compression::Bzip2);
    let json = generated_json();
    let record = json
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["file"] == "refpkg-1.0-r1.tbz2")
        .unwrap();
    // generated.json lists the keys sorted; the index keeps insertion order.
    let mut keys: Vec<&str> = record["xpak_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    keys.sort_unstable();
    let mut have: Vec<&str> = x.keys().iter().map(String::as_str).collect();
    assert_eq!(have[..2], ["CATEGORY", "PF"]);
    have.sort_unstable();
    assert_eq!(have, keys);
    let mut want_md: BTreeMap<String, Vec<u8>> = oracle_metadata().into_iter().collect();
    want_md.insert("BINPKG_COMPRESS_USED".into(), b"bzip2\n".to_vec());
    assert_eq!(pkg.metadata(), &want_md);
    assert_eq!(pkg.cpv().unwrap().to_string(), "app-misc/refpkg-1.0-r1");
    assert_eq!(pkg.metadata_str("SLOT"), Some("0/1.2"));
    // Same image as the gpkgs (written by Python's tarfile with "./" names).
    let ours = entries_as_oracle(&pkg);
    assert_matches_oracle("tbz2", &ours);
}

#[test]
fn corpus_file_names_are_not_portage_names() {
    // The corpus files are called refpkg-1.0-r1-<compression>.gpkg.tar while
    // their top directory is refpkg-1.0-r1: "-zstd" is not a build id.
    let path = generated("refpkg-1.0-r1-zstd.gpkg.tar");
    let err = binpkg::open(&path, &VerifyOptions::default()).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::BasenameMismatch { found, expected }
            if found == "refpkg-1.0-r1" && expected == "refpkg-1.0-r1-zstd"),
        "{err}"
    );
    assert!(
        err.to_string().contains("refpkg-1.0-r1-zstd.gpkg.tar"),
        "{err}"
    );
    for check in [
        BasenameCheck::Any,
        BasenameCheck::Expected("refpkg-1.0-r1".into()),
    ] {
        let opts = VerifyOptions {
            basename: check,
            ..VerifyOptions::default()
        };
        binpkg::open(&path, &opts).unwrap();
    }
    let opts = VerifyOptions {
        basename: BasenameCheck::Expected("refpkg-1.0-r1-1".into()),
        ..VerifyOptions::default()
    };
    assert!(matches!(
        binpkg::open(&path, &opts).unwrap_err().kind(),
        ErrorKind::BasenameMismatch { .. }
    ));
}

#[test]
fn multi_instance_names() {
    let dir = tempfile::tempdir().unwrap();
    let src = generated("refpkg-1.0-r1-zstd.gpkg.tar");
    // Top directory PF: PF.gpkg.tar, PF-N.gpkg.tar (quickpkg, multi-instance).
    for (file, ok) in [
        ("refpkg-1.0-r1.gpkg.tar", true),
        ("refpkg-1.0-r1-1.gpkg.tar", true),
        ("refpkg-1.0-r1-42.gpkg.tar", true),
        ("refpkg-1.0-r2.gpkg.tar", false),
        ("refpkg-1.0-r1-x.gpkg.tar", false),
        ("refpkg-1.0-r1-.gpkg.tar", false),
        ("other-1.0.gpkg.tar", false),
        // Not a .gpkg.tar name (e.g. Portage's temporary file): not checked.
        ("refpkg-1.0-r1.gpkg.tar09eanqmd.30406", true),
    ] {
        let p = dir.path().join(file);
        std::fs::copy(&src, &p).unwrap();
        let r = binpkg::open(&p, &VerifyOptions::default());
        assert_eq!(
            r.is_ok(),
            ok,
            "{file}: {:?}",
            r.err().map(|e| e.to_string())
        );
    }
    // Top directory PF-BUILD_ID (emerge --buildpkg, multi-instance), also
    // when the file was given another build id (re-numbered remote package).
    let mut members = read_members(&src);
    for (n, _) in members.iter_mut() {
        *n = n.replacen("refpkg-1.0-r1/", "refpkg-1.0-r1-3/", 1);
    }
    for (file, ok) in [
        ("refpkg-1.0-r1-3.gpkg.tar", true),
        ("refpkg-1.0-r1-7.gpkg.tar", true),
        ("refpkg-1.0-r1.gpkg.tar", true),
        ("refpkg-1.0-r2-3.gpkg.tar", false),
    ] {
        let p = dir.path().join(file);
        write_container(&p, &members);
        let r = binpkg::open(&p, &VerifyOptions::default());
        assert_eq!(
            r.is_ok(),
            ok,
            "{file}: {:?}",
            r.err().map(|e| e.to_string())
        );
    }
}

#[test]
fn format_comes_from_content_not_name() {
    let dir = tempfile::tempdir().unwrap();
    let xpak_as_gpkg = dir.path().join("refpkg-1.0-r1.gpkg.tar");
    std::fs::copy(generated("refpkg-1.0-r1.tbz2"), &xpak_as_gpkg).unwrap();
    assert_eq!(detect_format(&xpak_as_gpkg).unwrap(), Format::Xpak);
    assert_eq!(
        binpkg::open(&xpak_as_gpkg, &VerifyOptions::default())
            .unwrap()
            .format(),
        Format::Xpak
    );
    let gpkg_as_xpak = dir.path().join("refpkg-1.0-r1-1.xpak");
    std::fs::copy(generated("refpkg-1.0-r1-xz.gpkg.tar"), &gpkg_as_xpak).unwrap();
    assert_eq!(detect_format(&gpkg_as_xpak).unwrap(), Format::Gpkg);
    let junk = dir.path().join("junk.tbz2");
    std::fs::write(&junk, b"hello world, this is not a package at all....").unwrap();
    assert!(matches!(
        detect_format(&junk).unwrap_err().kind(),
        ErrorKind::UnknownFormat
    ));
    let empty = dir.path().join("empty.gpkg.tar");
    std::fs::write(&empty, b"").unwrap();
    assert!(binpkg::open(&empty, &VerifyOptions::default()).is_err());
    let missing = dir.path().join("missing.gpkg.tar");
    let err = binpkg::open(&missing, &VerifyOptions::default()).unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Io { .. }), "{err}");
}

#[test]
fn streaming_twice_and_partial_reads() {
    let dir = tempfile::tempdir().unwrap();
    let path = portage_named_copy(dir.path(), "refpkg-1.0-r1-xz.gpkg.tar");
    let pkg = binpkg::open(&path, &VerifyOptions::default()).unwrap();
    // Reading only a prefix of each file (or nothing) is fine.
    let mut n = 0;
    pkg.for_each_image_entry(|e| {
        let mut b = [0u8; 3];
        let _ = e.read(&mut b).unwrap();
        n += 1;
        Ok::<(), binpkg::Error>(())
    })
    .unwrap();
    assert_eq!(n, 26);
    // A second pass gives the same entries.
    let a = entries_as_oracle(&pkg);
    let b = entries_as_oracle(&pkg);
    assert_eq!(a, b);
    // The caller's error stops the stream and comes back unchanged.
    #[derive(Debug)]
    enum Mine {
        Stop,
        Pkg(binpkg::Error),
    }
    impl From<binpkg::Error> for Mine {
        fn from(e: binpkg::Error) -> Self {
            Mine::Pkg(e)
        }
    }
    let mut seen = 0;
    let r = pkg.for_each_image_entry(|_| {
        seen += 1;
        if seen == 5 {
            Err(Mine::Stop)
        } else {
            Ok(())
        }
    });
    match r {
        Err(Mine::Stop) => {}
        Err(Mine::Pkg(e)) => panic!("{e}"),
        Ok(_) => panic!("not stopped"),
    }
    assert_eq!(seen, 5);
}

#[test]
fn changed_after_verification_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let path = portage_named_copy(dir.path(), "refpkg-1.0-r1-none.gpkg.tar");
    let pkg = binpkg::open(&path, &VerifyOptions::default()).unwrap();
    // Change one content byte of the uncompressed image in place.
    let BinPkg::Gpkg(g) = &pkg else { panic!() };
    let im = g.members().iter().find(|m| m.name == "image.tar").unwrap();
    let mut data = std::fs::read(&path).unwrap();
    let at = (im.offset + 512 * 4) as usize; // inside app.conf's data block
    let pos = data[at..].iter().position(|&b| b != 0).unwrap() + at;
    data[pos] ^= 0x20;
    std::fs::write(&path, &data).unwrap();
    let err = pkg
        .for_each_image_entry(|_| Ok::<(), binpkg::Error>(()))
        .unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::ChangedSinceVerified { .. }),
        "{err}"
    );
}

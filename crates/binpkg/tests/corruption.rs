//! Portage-style corruptions of a corpus gpkg (the cases of Portage's
//! lib/portage/tests/gpkg/test_gpkg_checksum.py and more), each refused with
//! the right error; and a differential run of every case through Portage's
//! own `gpkg._verify_binpkg` (plus `decompress` for image problems): what
//! Portage refuses, we refuse.

mod common;

use std::path::{Path, PathBuf};

use binpkg::{ErrorKind, SignaturePolicy, VerifyOptions};
use common::*;

const BASE: &str = "refpkg-1.0-r1-zstd.gpkg.tar";
const TOP: &str = "refpkg-1.0-r1";

type Members = Vec<(String, Vec<u8>)>;

fn base() -> Members {
    read_members(&generated(BASE))
}

fn idx(m: &Members, suffix: &str) -> usize {
    m.iter().position(|(n, _)| n.ends_with(suffix)).unwrap()
}

/// A mutation: a file to write and the check on our error.
struct Case {
    name: &'static str,
    build: Box<dyn Fn(&Path)>,
    check: fn(&ErrorKind) -> bool,
    /// Portage 3.0.83 accepts this one (a documented difference).
    portage_accepts: bool,
}

fn members_case(
    name: &'static str,
    f: impl Fn(&mut Members) + 'static,
    check: fn(&ErrorKind) -> bool,
) -> Case {
    Case {
        name,
        build: Box::new(move |p: &Path| {
            let mut m = base();
            f(&mut m);
            write_container(p, &m);
        }),
        check,
        portage_accepts: false,
    }
}

fn bytes_case(
    name: &'static str,
    f: impl Fn(&mut Vec<u8>) + 'static,
    check: fn(&ErrorKind) -> bool,
) -> Case {
    Case {
        name,
        build: Box::new(move |p: &Path| {
            let mut d = std::fs::read(generated(BASE)).unwrap();
            f(&mut d);
            std::fs::write(p, d).unwrap();
        }),
        check,
        portage_accepts: false,
    }
}

fn accepted_by_portage(mut c: Case) -> Case {
    c.portage_accepts = true;
    c
}

fn set_manifest_line(m: &mut Members, member: &str, f: impl Fn(&mut Vec<String>)) {
    let i = idx(m, "/Manifest");
    let text = String::from_utf8(m[i].1.clone()).unwrap();
    let out: Vec<String> = text
        .lines()
        .map(|l| {
            let mut t: Vec<String> = l.split(' ').map(str::to_owned).collect();
            if t.get(1).map(String::as_str) == Some(member) {
                f(&mut t);
            }
            t.join(" ")
        })
        .collect();
    m[i].1 = (out.join("\n") + "\n").into_bytes();
}

fn cases() -> Vec<Case> {
    use ErrorKind as K;
    vec![
        members_case(
            "missing gpkg-1",
            |m| {
                m.remove(0);
                remanifest(m, false);
            },
            |k| matches!(k, K::MissingGpkgVersion),
        ),
        members_case(
            "missing Manifest",
            |m| m.retain(|(n, _)| !n.ends_with("/Manifest")),
            |k| matches!(k, K::MissingManifest),
        ),
        accepted_by_portage(members_case(
            "gpkg-1 not first",
            |m| m.swap(0, 1),
            |k| matches!(k, K::MemberOrder { name, .. } if name == "metadata.tar.zst"),
        )),
        accepted_by_portage(members_case(
            "image before metadata",
            |m| m.swap(1, 2),
            |k| matches!(k, K::MemberOrder { .. }),
        )),
        accepted_by_portage(members_case(
            "Manifest not last",
            |m| m.swap(2, 3),
            |k| matches!(k, K::MemberOrder { name, .. } if name == "Manifest"),
        )),
        members_case(
            "extra member (Portage's test: test/data2)",
            |m| m.insert(3, (format!("{TOP}/data2"), b"data2".to_vec())),
            |k| matches!(k, K::UnknownMember { name } if name == "data2"),
        ),
        accepted_by_portage(members_case(
            "extra member listed in the Manifest",
            |m| {
                m.insert(3, (format!("{TOP}/data2"), b"data2".to_vec()));
                remanifest(m, false);
            },
            |k| matches!(k, K::UnknownMember { .. }),
        )),
        members_case(
            "extra allowed member not in the Manifest",
            |m| m.insert(3, (format!("{TOP}/image.tar.zst.sig"), b"x".to_vec())),
            // Signature mode turns on (a .sig is present): the unsigned
            // Manifest is refused before the listing is compared.
            |k| {
                matches!(
                    k,
                    K::NoKeyring | K::SignatureMissing { .. } | K::NotInManifest { .. }
                )
            },
        ),
        members_case(
            "duplicate member",
            |m| {
                let d = m[1].clone();
                m.insert(2, d);
            },
            |k| matches!(k, K::DuplicateMember { name } if name == "metadata.tar.zst"),
        ),
        accepted_by_portage(members_case(
            "two image archives (Portage uses the first)",
            |m| {
                let d = m[2].1.clone();
                m.insert(3, (format!("{TOP}/image.tar.xz"), d));
                remanifest(m, false);
            },
            |k| matches!(k, K::DuplicateMember { .. }),
        )),
        members_case(
            "Manifest lists a member twice",
            |m| {
                let i = idx(m, "/Manifest");
                let first = String::from_utf8(m[i].1.clone())
                    .unwrap()
                    .lines()
                    .nth(1)
                    .unwrap()
                    .to_owned();
                m[i].1.extend_from_slice(format!("{first}\n").as_bytes());
            },
            |k| matches!(k, K::ManifestSyntax { .. }),
        ),
        members_case(
            "Manifest misses a member",
            |m| {
                let i = idx(m, "/Manifest");
                let t = String::from_utf8(m[i].1.clone()).unwrap();
                let t: String = t
                    .lines()
                    .filter(|l| !l.contains(" image.tar.zst "))
                    .map(|l| format!("{l}\n"))
                    .collect();
                m[i].1 = t.into_bytes();
            },
            |k| matches!(k, K::NotInManifest { name } if name == "image.tar.zst"),
        ),
        members_case(
            "Manifest lists an absent member",
            |m| {
                m.remove(2);
            },
            |k| matches!(k, K::MissingMember { .. } | K::ManifestListsMissing { .. }),
        ),
        members_case(
            "Manifest lists an absent extra file",
            |m| {
                let i = idx(m, "/Manifest");
                let line = format!(
                    "DATA ghost 0 SHA512 {} BLAKE2B {}\n",
                    sha512_hex(b""),
                    blake2b_hex(b"")
                );
                m[i].1.extend_from_slice(line.as_bytes());
            },
            |k| matches!(k, K::ManifestListsMissing { names } if names == &["ghost"]),
        ),
        members_case(
            "wrong size in the Manifest",
            |m| set_manifest_line(m, "image.tar.zst", |t| t[2] = "762".into()),
            |k| {
                matches!(
                    k,
                    K::SizeMismatch {
                        expected: 762,
                        actual: 761
                    }
                )
            },
        ),
        members_case(
            "member size differs (data appended, Manifest unchanged)",
            |m| m[2].1.push(0),
            |k| matches!(k, K::SizeMismatch { .. }),
        ),
        members_case(
            "wrong SHA512 in the Manifest",
            |m| {
                set_manifest_line(m, "metadata.tar.zst", |t| {
                    let p = t.iter().position(|x| x == "SHA512").unwrap() + 1;
                    t[p] = "0".repeat(128);
                })
            },
            |k| matches!(k, K::HashMismatch { algo: "SHA512", .. }),
        ),
        members_case(
            "wrong BLAKE2B in the Manifest",
            |m| {
                set_manifest_line(m, "image.tar.zst", |t| {
                    let p = t.iter().position(|x| x == "BLAKE2B").unwrap() + 1;
                    t[p] = "f".repeat(128);
                })
            },
            |k| {
                matches!(
                    k,
                    K::HashMismatch {
                        algo: "BLAKE2B",
                        ..
                    }
                )
            },
        ),
        members_case(
            "data byte changed",
            |m| {
                let l = m[2].1.len();
                m[2].1[l / 2] ^= 0x40;
            },
            |k| matches!(k, K::HashMismatch { .. }),
        ),
        members_case(
            "Manifest with only SHA512 (Portage raises ValueError)",
            |m| {
                let i = idx(m, "/Manifest");
                let t = String::from_utf8(m[i].1.clone()).unwrap();
                let t: String = t
                    .lines()
                    .map(|l| {
                        let tok: Vec<&str> = l.split(' ').collect();
                        let p = tok.iter().position(|x| *x == "SHA512").unwrap();
                        format!("{} {} {} SHA512 {}\n", tok[0], tok[1], tok[2], tok[p + 1])
                    })
                    .collect();
                m[i].1 = t.into_bytes();
            },
            |k| matches!(k, K::ManifestSyntax { .. }),
        ),
        members_case(
            "two top directories",
            |m| m[3].0 = m[3].0.replacen(TOP, "other-1", 1),
            |k| matches!(k, K::MultipleTopDirs { .. }),
        ),
        members_case(
            "nested member name",
            |m| m[1].0 = format!("{TOP}/sub/metadata.tar.zst"),
            |k| matches!(k, K::BadMemberName { .. }),
        ),
        members_case(
            "absolute member name",
            |m| m[0].0 = format!("/{TOP}/gpkg-1"),
            |k| matches!(k, K::BadMemberName { .. }),
        ),
        members_case(
            "unknown compression extension",
            |m| {
                m[2].0 = format!("{TOP}/image.tar.7z");
                remanifest(m, false);
            },
            |k| matches!(k, K::UnknownMember { .. }),
        ),
        members_case(
            "orphan signature (Portage: signature mode, no gpg configured)",
            |m| {
                let d = m[2].1.clone();
                m.insert(3, (format!("{TOP}/image.tar.xz.sig"), d));
                remanifest(m, false);
            },
            |k| matches!(k, K::OrphanSignature { .. } | K::MemberOrder { .. }),
        ),
        bytes_case(
            "truncated inside the image data",
            |d| d.truncate(4096 + 300),
            |k| matches!(k, K::Truncated { .. }),
        ),
        bytes_case(
            "truncated inside a header",
            |d| d.truncate(3584 + 100),
            |k| matches!(k, K::Truncated { .. } | K::Tar { .. }),
        ),
        bytes_case(
            "header checksum broken",
            |d| d[2048 + 100] ^= 1, // the image member's header (mode field)
            |k| matches!(k, K::Tar { .. } | K::BadMemberName { .. }),
        ),
        accepted_by_portage(bytes_case(
            "junk after the end of the archive",
            |d| d.extend_from_slice(&[0x55; 1024]),
            |k| matches!(k, K::DataAfterEnd),
        )),
    ]
}

fn write_case(dir: &Path, i: usize, c: &Case) -> PathBuf {
    let sub = dir.join(format!("case{i}"));
    std::fs::create_dir_all(&sub).unwrap();
    let p = sub.join(format!("{TOP}.gpkg.tar"));
    (c.build)(&p);
    p
}

#[test]
fn corruptions_are_refused_with_the_right_error() {
    let dir = tempfile::tempdir().unwrap();
    // The unmutated base passes, so each refusal is due to its mutation.
    let ok = dir.path().join(format!("{TOP}.gpkg.tar"));
    write_container(&ok, &base());
    binpkg::open(&ok, &VerifyOptions::default()).unwrap();
    for (i, c) in cases().iter().enumerate() {
        let p = write_case(dir.path(), i, c);
        for policy in [SignaturePolicy::IfPresent, SignaturePolicy::Ignore] {
            let o = VerifyOptions {
                signature: policy,
                ..VerifyOptions::default()
            };
            match binpkg::open(&p, &o) {
                Ok(_) => panic!("{}: accepted", c.name),
                Err(e) => {
                    let k = e.kind();
                    let ok = (c.check)(k)
                        || (policy == SignaturePolicy::Ignore
                            && c.name == "extra allowed member not in the Manifest"
                            && matches!(k, ErrorKind::NotInManifest { .. }));
                    assert!(ok, "{} ({policy:?}): unexpected {e}", c.name);
                    // Every message names the file and says what to do.
                    let msg = e.to_string();
                    assert!(msg.contains(&p.display().to_string()), "{msg}");
                    assert!(msg.ends_with(')'), "{msg}");
                }
            }
        }
    }
}

#[test]
fn every_truncation_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = std::fs::read(generated(BASE)).unwrap();
    // The Manifest's data ends at its offset + size, padded to 512 bytes;
    // only the end-of-archive zeros after that may be cut (a cut inside the
    // padding is a truncated member).
    let members = read_members(&generated(BASE));
    let manifest = &members
        .iter()
        .find(|(n, _)| n.ends_with("Manifest"))
        .unwrap()
        .1;
    let end = data
        .windows(manifest.len())
        .position(|w| w == &manifest[..])
        .unwrap()
        + manifest.len();
    let p = dir.path().join(format!("{TOP}.gpkg.tar"));
    let padded = end.div_ceil(512) * 512;
    for cut in (0..padded).step_by(7).chain([end - 1, end, padded - 1]) {
        std::fs::write(&p, &data[..cut]).unwrap();
        assert!(
            binpkg::open(&p, &VerifyOptions::default()).is_err(),
            "cut at {cut} accepted"
        );
    }
    for cut in [padded, padded + 512, data.len()] {
        std::fs::write(&p, &data[..cut]).unwrap();
        binpkg::open(&p, &VerifyOptions::default()).unwrap();
    }
}

#[test]
fn compressions_must_match_their_names() {
    let dir = tempfile::tempdir().unwrap();
    let image = read_members(&generated("refpkg-1.0-r1-none.gpkg.tar"))
        .into_iter()
        .find(|(n, _)| n.ends_with("/image.tar"))
        .unwrap()
        .1;
    let xz = read_members(&generated("refpkg-1.0-r1-xz.gpkg.tar"))
        .into_iter()
        .find(|(n, _)| n.ends_with("/image.tar.xz"))
        .unwrap()
        .1;
    let path = dir.path().join(format!("{TOP}.gpkg.tar"));
    let with_image = |name: &str, data: Vec<u8>| {
        let mut m = base();
        m[2] = (format!("{TOP}/{name}"), data);
        remanifest(&mut m, false);
        write_container(&path, &m);
        binpkg::open(&path, &VerifyOptions::default()).map(|_| ())
    };
    // xz data named .zst.
    let e = with_image("image.tar.zst", xz.clone()).unwrap_err();
    assert!(
        matches!(
            e.kind(),
            ErrorKind::CompressionMismatch {
                by_name: "zstd",
                by_magic: "xz"
            }
        ),
        "{e}"
    );
    assert_eq!(e.member(), Some("image.tar.zst"));
    // A plain tar named .gz, compressed data named plain .tar.
    let e = with_image("image.tar.gz", image.clone()).unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::CompressionMismatch { .. }),
        "{e}"
    );
    let e = with_image("image.tar", xz.clone()).unwrap_err();
    assert!(
        matches!(
            e.kind(),
            ErrorKind::CompressionMismatch {
                by_name: "none",
                by_magic: "xz"
            }
        ),
        "{e}"
    );
    // lzip / lzop: recognised, unsupported, the message names the package.
    for (ext, magic) in [
        ("lz", &b"LZIP\x01"[..]),
        ("lzo", &b"\x89LZO\x00\x0d\x0a\x1a\x0a"[..]),
    ] {
        let e = with_image(&format!("image.tar.{ext}"), magic.to_vec()).unwrap_err();
        assert!(
            matches!(e.kind(), ErrorKind::UnsupportedCompression { .. }),
            "{e}"
        );
        let msg = e.to_string();
        assert!(
            msg.contains("refpkg-1.0-r1.gpkg.tar") && msg.contains("unsupported compression"),
            "{msg}"
        );
    }
    // lz4 (frame format) works.
    let mut enc = lz4_flex::frame::FrameEncoder::new(Vec::new());
    std::io::Write::write_all(&mut enc, &image).unwrap();
    with_image("image.tar.lz4", enc.finish().unwrap()).unwrap();
    // Garbage named .tar.
    let e = with_image("image.tar", vec![7u8; 1024]).unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::UnrecognisedCompression { .. }),
        "{e}"
    );
    // Compressed garbage: the decoder's error.
    let mut bad = xz.clone();
    let n = bad.len();
    bad[n / 2] ^= 0xff;
    let e = with_image("image.tar.xz", bad).unwrap_err();
    assert!(
        matches!(
            e.kind(),
            ErrorKind::Decompress {
                compression: "xz",
                ..
            }
        ),
        "{e}"
    );
    // Truncated compressed stream.
    let e = with_image("image.tar.xz", xz[..xz.len() - 40].to_vec()).unwrap_err();
    assert!(
        matches!(
            e.kind(),
            ErrorKind::Decompress { .. } | ErrorKind::Truncated { .. }
        ),
        "{e}"
    );
    // Multi-frame zstd (as zstd -T or pzstd write) is one stream.
    let half = image.len() / 2;
    let mut two = zstd(&image[..half]);
    two.extend(zstd(&image[half..]));
    with_image("image.tar.zst", two).unwrap();
}

#[test]
fn differential_with_portage_verify() {
    let Some(python) = portage_python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cases = cases();
    let mut files: Vec<PathBuf> = cases
        .iter()
        .enumerate()
        .map(|(i, c)| write_case(dir.path(), i, c))
        .collect();
    // The unmodified package: both accept.
    let ok_dir = dir.path().join("ok");
    std::fs::create_dir_all(&ok_dir).unwrap();
    let ok = ok_dir.join(format!("{TOP}.gpkg.tar"));
    write_container(&ok, &base());
    files.push(ok);
    let verdicts = portage_verdicts(&python, &files);
    assert_eq!(verdicts.len(), files.len(), "{verdicts:?}");
    assert_eq!(verdicts.last().unwrap(), "OK");
    for (c, v) in cases.iter().zip(&verdicts) {
        let portage_ok = v == "OK";
        assert_eq!(
            portage_ok, c.portage_accepts,
            "{}: Portage says {v:?}, the case table says portage_accepts={}",
            c.name, c.portage_accepts
        );
    }
}

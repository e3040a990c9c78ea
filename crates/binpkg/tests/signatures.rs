//! OpenPGP: the Portage-signed corpus package against the trusted and
//! untrusted test keys (shared/corpora/binpkgs/test-keys), tampering, and
//! the three policies.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use binpkg::{BinPkg, ErrorKind, Keyring, KeyringError, SignaturePolicy, VerifyOptions};
use common::*;

const SIGNED: &str = "refpkg-1.0-r1-zstd-signed.gpkg.tar";
const TRUSTED_FPR: &str = "06B3A311BD775C280D22A9305D90EA06352177F6";

fn opts(policy: SignaturePolicy, key: Option<&str>) -> VerifyOptions {
    VerifyOptions {
        signature: policy,
        keyring: key.map(|k| Arc::new(keyring(k))),
        ..VerifyOptions::default()
    }
}

fn signed_copy(dir: &Path) -> PathBuf {
    portage_named_copy(dir, SIGNED)
}

fn kind_of(path: &Path, o: &VerifyOptions) -> ErrorKind {
    match binpkg::open(path, o) {
        Ok(_) => panic!("{} must be refused", path.display()),
        Err(e) => e.into_kind(),
    }
}

#[test]
fn keyrings_load() {
    let k = keyring("trusted-pub.asc");
    assert_eq!(k.fingerprints(), [TRUSTED_FPR]);
    let mut both = std::fs::read(key_file("trusted-pub.asc")).unwrap();
    both.extend(std::fs::read(key_file("untrusted-pub.asc")).unwrap());
    let k = Keyring::from_armored(&both).unwrap();
    assert_eq!(k.len(), 2);
    assert!(matches!(
        Keyring::from_armored(b"not a key"),
        Err(KeyringError::NoKeys)
    ));
    let err = Keyring::from_file(Path::new("/nonexistent/keys.asc")).unwrap_err();
    assert!(matches!(err, KeyringError::Io { .. }));
    // A damaged key block.
    let mut bad = std::fs::read_to_string(key_file("trusted-pub.asc")).unwrap();
    let mid = bad.len() / 2;
    bad.replace_range(mid..mid + 8, "AAAAAAAA");
    assert!(Keyring::from_armored(bad.as_bytes()).is_err());
}

#[test]
fn signed_package_verifies_with_the_trusted_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = signed_copy(dir.path());
    for policy in [SignaturePolicy::Required, SignaturePolicy::IfPresent] {
        let pkg = binpkg::open(&path, &opts(policy, Some("trusted-pub.asc"))).unwrap();
        let BinPkg::Gpkg(g) = &pkg else { panic!() };
        assert!(g.is_signed());
        assert_eq!(g.signers(), [TRUSTED_FPR]);
    }
    // Trusted key among others.
    let mut both = std::fs::read(key_file("untrusted-pub.asc")).unwrap();
    both.extend(std::fs::read(key_file("trusted-pub.asc")).unwrap());
    let o = VerifyOptions::with_keyring(
        SignaturePolicy::Required,
        Keyring::from_armored(&both).unwrap(),
    );
    binpkg::open(&path, &o).unwrap();
}

#[test]
fn signed_package_fails_with_the_untrusted_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = signed_copy(dir.path());
    for policy in [SignaturePolicy::Required, SignaturePolicy::IfPresent] {
        let err = binpkg::open(&path, &opts(policy, Some("untrusted-pub.asc"))).unwrap_err();
        assert!(
            matches!(err.kind(), ErrorKind::SignatureUntrusted { reason } if reason.contains("5D90EA06352177F6")),
            "{err}"
        );
        assert_eq!(err.member(), Some("Manifest"));
        assert!(
            err.to_string().contains("import the signer's public key"),
            "{err}"
        );
    }
    // No keyring at all.
    let err = binpkg::open(&path, &opts(SignaturePolicy::IfPresent, None)).unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::NoKeyring), "{err}");
    // Ignore: accepted without verifying.
    let pkg = binpkg::open(
        &path,
        &opts(SignaturePolicy::Ignore, Some("untrusted-pub.asc")),
    )
    .unwrap();
    let BinPkg::Gpkg(g) = &pkg else { panic!() };
    assert!(g.is_signed());
    assert!(g.signers().is_empty());
    binpkg::open(&path, &opts(SignaturePolicy::Ignore, None)).unwrap();
}

/// Flip one bit of a copy at `pos`; `Err` is the refusal, `Ok` the package.
fn flip(dir: &Path, pos: usize, o: &VerifyOptions) -> Result<BinPkg, ErrorKind> {
    let path = dir.join("refpkg-1.0-r1.gpkg.tar");
    let mut data = std::fs::read(generated(SIGNED)).unwrap();
    data[pos] ^= 0x01;
    std::fs::write(&path, &data).unwrap();
    binpkg::open(&path, o).map_err(binpkg::Error::into_kind)
}

fn refused(r: Result<BinPkg, ErrorKind>, pos: usize) -> ErrorKind {
    match r {
        Ok(_) => panic!("flipping byte {pos} was not noticed"),
        Err(k) => k,
    }
}

#[test]
fn flipping_one_byte_anywhere_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(SignaturePolicy::Required, Some("trusted-pub.asc"));
    let data = std::fs::read(generated(SIGNED)).unwrap();
    let members = read_members(&generated(SIGNED));
    let manifest = &members
        .iter()
        .find(|(n, _)| n.ends_with("Manifest"))
        .unwrap()
        .1;
    let manifest_at = data
        .windows(manifest.len())
        .position(|w| w == &manifest[..])
        .unwrap();
    let image = &members
        .iter()
        .find(|(n, _)| n.ends_with("image.tar.zst"))
        .unwrap()
        .1;
    let image_at = data
        .windows(image.len())
        .position(|w| w == &image[..])
        .unwrap();
    let text = std::str::from_utf8(manifest).unwrap();

    // A hex digit in the signed Manifest text: the signature no longer verifies.
    let in_text = manifest_at + text.find("DATA image.tar.zst ").unwrap() + 40;
    let k = refused(flip(dir.path(), in_text, &o), in_text);
    assert!(matches!(k, ErrorKind::SignatureBad { .. }), "{k}");
    // Inside the Manifest's signature block.
    let in_sig = manifest_at + text.find("-----BEGIN PGP SIGNATURE-----").unwrap() + 100;
    let k = refused(flip(dir.path(), in_sig, &o), in_sig);
    assert!(matches!(k, ErrorKind::SignatureBad { .. }), "{k}");
    // The image data: the Manifest (verified) disagrees.
    let k = refused(flip(dir.path(), image_at + image.len() / 2, &o), 0);
    assert!(matches!(k, ErrorKind::HashMismatch { .. }), "{k}");

    // Bytes spread over every member: refused, or (for the few bits that
    // no signature covers, e.g. the issuer key id in a signature's unhashed
    // area, which gpg ignores as well) accepted with exactly the verified
    // content of the original.
    let original = binpkg::open(portage_named_copy(dir.path(), SIGNED), &o).unwrap();
    let BinPkg::Gpkg(orig) = &original else {
        panic!()
    };
    let mut accepted = 0;
    for (name, content) in &members {
        if content.is_empty() {
            continue;
        }
        let at = data
            .windows(content.len())
            .position(|w| w == &content[..])
            .unwrap();
        let stride = if name.ends_with("Manifest") { 23 } else { 97 };
        for pos in (at..at + content.len()).step_by(stride) {
            match flip(dir.path(), pos, &o) {
                Ok(BinPkg::Gpkg(g)) => {
                    accepted += 1;
                    assert_eq!(g.manifest(), orig.manifest(), "{name} @ {pos}");
                    assert_eq!(g.metadata(), orig.metadata(), "{name} @ {pos}");
                }
                Ok(_) => panic!("format changed"),
                Err(k) => assert!(
                    matches!(
                        k,
                        ErrorKind::SignatureBad { .. }
                            | ErrorKind::HashMismatch { .. }
                            | ErrorKind::ManifestSyntax { .. }
                            | ErrorKind::SignatureUntrusted { .. }
                            | ErrorKind::SignatureMissing { .. }
                    ),
                    "{name} @ {pos}: {k}"
                ),
            }
        }
    }
    assert!(accepted <= 2, "{accepted} flips accepted");
    // Header bytes of the outer tar (names, sizes, checksums): refused
    // (the header checksum covers them) or harmless.
    for pos in (0..512).step_by(7).chain((2048..2560).step_by(7)) {
        if let Ok(BinPkg::Gpkg(g)) = flip(dir.path(), pos, &o) {
            assert_eq!(g.manifest(), orig.manifest(), "header @ {pos}");
        }
    }
}

#[test]
fn required_refuses_unsigned_packages_ifpresent_accepts_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = portage_named_copy(dir.path(), "refpkg-1.0-r1-zstd.gpkg.tar");
    let k = kind_of(
        &path,
        &opts(SignaturePolicy::Required, Some("trusted-pub.asc")),
    );
    assert!(matches!(k, ErrorKind::SignatureMissing { .. }), "{k}");
    binpkg::open(
        &path,
        &opts(SignaturePolicy::IfPresent, Some("trusted-pub.asc")),
    )
    .unwrap();
    binpkg::open(&path, &opts(SignaturePolicy::IfPresent, None)).unwrap();
    // xpak cannot be signed.
    let k = kind_of(
        &generated("refpkg-1.0-r1.tbz2"),
        &opts(SignaturePolicy::Required, Some("trusted-pub.asc")),
    );
    assert!(matches!(k, ErrorKind::SignatureMissing { .. }), "{k}");
}

#[test]
fn detached_signatures_are_checked_per_member() {
    let dir = tempfile::tempdir().unwrap();
    // Portage's signatures are by the trusted key; Manifests re-signed here
    // are by this test run's key: trust both.
    let o = VerifyOptions::with_keyring(SignaturePolicy::IfPresent, signing_keyring());
    let path = dir.path().join("refpkg-1.0-r1.gpkg.tar");
    let orig = read_members(&generated(SIGNED));
    let sig_of = |suffix: &str| {
        orig.iter()
            .find(|(n, _)| n.ends_with(suffix))
            .unwrap()
            .1
            .clone()
    };

    // Re-signing the Manifest with another trusted key keeps the package
    // valid; without that key in the keyring it is refused.
    let mut m = orig.clone();
    remanifest(&mut m, true);
    write_container(&path, &m);
    let pkg = binpkg::open(&path, &o).unwrap();
    let BinPkg::Gpkg(g) = &pkg else { panic!() };
    assert_eq!(g.signers().len(), 2);
    let k = kind_of(
        &path,
        &opts(SignaturePolicy::IfPresent, Some("trusted-pub.asc")),
    );
    assert!(matches!(k, ErrorKind::SignatureUntrusted { .. }), "{k}");

    // The image's .sig replaced by the metadata's: Manifest consistent and
    // signed, but the detached signature is over other data.
    let mut m = orig.clone();
    let meta_sig = sig_of("metadata.tar.zst.sig");
    for (n, d) in m.iter_mut() {
        if n.ends_with("image.tar.zst.sig") {
            *d = meta_sig.clone();
        }
    }
    remanifest(&mut m, true);
    write_container(&path, &m);
    let err = binpkg::open(&path, &o).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::SignatureBad { .. }),
        "{err}"
    );
    assert_eq!(err.member(), Some("image.tar.zst.sig"));

    // A fresh detached signature made with the key is accepted (rPGP-made).
    let mut m = orig.clone();
    let image = sig_of("image.tar.zst");
    for (n, d) in m.iter_mut() {
        if n.ends_with("image.tar.zst.sig") {
            *d = detach_sign(&image);
        }
    }
    remanifest(&mut m, true);
    write_container(&path, &m);
    binpkg::open(&path, &o).unwrap();

    // The image's .sig removed (and the Manifest re-signed): the package is
    // signed, so every data member must be.
    let mut m = orig.clone();
    m.retain(|(n, _)| !n.ends_with("image.tar.zst.sig"));
    remanifest(&mut m, true);
    write_container(&path, &m);
    let err = binpkg::open(&path, &o).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::SignatureMissing { .. }),
        "{err}"
    );
    assert_eq!(err.member(), Some("image.tar.zst"));

    // Signatures kept, Manifest left unsigned: refused (signature mode is on).
    let mut m = orig.clone();
    remanifest(&mut m, false);
    write_container(&path, &m);
    let err = binpkg::open(&path, &o).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::SignatureMissing { .. }),
        "{err}"
    );
    // ... and accepted when signatures are ignored.
    binpkg::open(&path, &opts(SignaturePolicy::Ignore, None)).unwrap();

    // A binary (non-armoured) detached signature, as GLEP 78 describes.
    let mut m = orig.clone();
    for (n, d) in m.iter_mut() {
        if n.ends_with(".sig") {
            let text = String::from_utf8(d.clone()).unwrap();
            let b64: String = text
                .lines()
                .skip_while(|l| !l.is_empty())
                .skip(1)
                .take_while(|l| !l.starts_with('=') && !l.starts_with("-----"))
                .collect();
            *d = base64_decode(&b64);
        }
    }
    remanifest(&mut m, true);
    write_container(&path, &m);
    binpkg::open(&path, &o).unwrap();
}

fn base64_decode(s: &str) -> Vec<u8> {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes().filter(|&c| c != b'=') {
        let v = A.iter().position(|&a| a == c).unwrap() as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

#[test]
fn manifest_outside_the_signed_block_is_ignored_or_refused() {
    // Text after the signature block: refused (rPGP rejects trailing data).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("refpkg-1.0-r1.gpkg.tar");
    let mut m = read_members(&generated(SIGNED));
    for (n, d) in m.iter_mut() {
        if n.ends_with("/Manifest") {
            d.extend_from_slice(b"DATA extra 0 SHA512 00 BLAKE2B 00\n");
        }
    }
    write_container(&path, &m);
    let k = kind_of(
        &path,
        &opts(SignaturePolicy::IfPresent, Some("trusted-pub.asc")),
    );
    assert!(matches!(k, ErrorKind::SignatureBad { .. }), "{k}");
    // Text before the signed block.
    let mut m = read_members(&generated(SIGNED));
    for (n, d) in m.iter_mut() {
        if n.ends_with("/Manifest") {
            let mut v = b"DATA extra 0\n".to_vec();
            v.extend_from_slice(d);
            *d = v;
        }
    }
    write_container(&path, &m);
    let k = kind_of(
        &path,
        &opts(SignaturePolicy::IfPresent, Some("trusted-pub.asc")),
    );
    assert!(matches!(k, ErrorKind::SignatureBad { .. }), "{k}");
}

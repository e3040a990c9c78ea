//! Trusted OpenPGP keys and signature verification (rPGP).
//!
//! Portage verifies gpkg signatures with `gpg --verify` in
//! `BINPKG_GPG_VERIFY_GPG_HOME` and accepts a signature when gpg exits 0,
//! prints `GOODSIG` and the key is fully or ultimately trusted. Here, every
//! key in the [`Keyring`] is trusted; a signature is good when every
//! signature packet verifies cryptographically against a key (or signing
//! subkey) of the keyring that is neither revoked nor expired, and the
//! signature itself has not expired.

use std::io::{self, Cursor, Read};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use pgp::composed::{CleartextSignedMessage, Deserializable, DetachedSignature, SignedPublicKey};
use pgp::packet::{Signature, SignatureType};
use pgp::types::{KeyDetails, VerifyingKey};

/// A set of trusted OpenPGP public keys.
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    keys: Vec<SignedPublicKey>,
}

/// A keyring that cannot be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyringError {
    /// The file cannot be read.
    #[error("cannot read the keyring {}: {source} (check the path and permissions)", path.display())]
    Io {
        /// The keyring file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// No public key block in the data.
    #[error("no armoured OpenPGP public key block (-----BEGIN PGP PUBLIC KEY BLOCK-----) found; export keys with `gpg --armor --export`")]
    NoKeys,
    /// A key block does not parse.
    #[error("cannot parse an OpenPGP public key: {reason} (export it again with `gpg --armor --export`)")]
    Parse {
        /// The parser's message.
        reason: String,
    },
    /// A secret key cannot be unlocked.
    #[error("cannot unlock the secret key {fingerprint}: wrong or missing passphrase (give the passphrase)")]
    Locked {
        /// The key's fingerprint.
        fingerprint: String,
    },
    /// A key's self-signatures do not verify.
    #[error("key {fingerprint}: its self-signatures do not verify ({reason}); do not trust it")]
    BadKey {
        /// The key's fingerprint.
        fingerprint: String,
        /// The reason.
        reason: String,
    },
}

/// Why a signature was not accepted.
#[derive(Debug)]
pub(crate) enum SigError {
    /// Malformed signature data.
    Malformed(String),
    /// Signed by a key not in the keyring (or revoked/expired there).
    Untrusted(String),
    /// Does not verify (tampered data).
    Bad(String),
}

const KEY_BEGIN: &str = "-----BEGIN PGP PUBLIC KEY BLOCK-----";
const KEY_END: &str = "-----END PGP PUBLIC KEY BLOCK-----";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn fpr(k: &impl KeyDetails) -> String {
    format!("{:X}", k.fingerprint())
}

/// The newest signature of `sigs` that `keep` accepts, by creation time.
fn newest<'a>(sigs: impl Iterator<Item = &'a Signature>) -> Option<&'a Signature> {
    sigs.max_by_key(|s| s.created().map(|t| t.as_secs()).unwrap_or(0))
}

fn expired(created: u64, sig: Option<&Signature>, now: u64) -> bool {
    match sig.and_then(Signature::key_expiration_time) {
        Some(d) if d.as_secs() > 0 => created.saturating_add(u64::from(d.as_secs())) < now,
        _ => false,
    }
}

impl Keyring {
    /// An empty keyring (trusts nothing).
    pub fn new() -> Keyring {
        Keyring::default()
    }

    /// Parse armoured public keys (one or several blocks, as `gpg --armor
    /// --export` writes them, possibly concatenated).
    pub fn from_armored(data: &[u8]) -> Result<Keyring, KeyringError> {
        let mut k = Keyring::new();
        k.add_armored(data)?;
        Ok(k)
    }

    /// Read armoured public keys from a file.
    pub fn from_file(path: &Path) -> Result<Keyring, KeyringError> {
        let data = std::fs::read(path).map_err(|source| KeyringError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Keyring::from_armored(&data)
    }

    /// Add the keys of armoured public key blocks; returns how many were added.
    pub fn add_armored(&mut self, data: &[u8]) -> Result<usize, KeyringError> {
        let text = String::from_utf8_lossy(data);
        let mut added = 0;
        let mut rest: &str = &text;
        while let Some(start) = rest.find(KEY_BEGIN) {
            let block_end = rest[start..]
                .find(KEY_END)
                .map(|e| start + e + KEY_END.len())
                .ok_or_else(|| KeyringError::Parse {
                    reason: "unterminated key block".into(),
                })?;
            let block = &rest[start..block_end];
            rest = &rest[block_end..];
            let (keys, _) = SignedPublicKey::from_armor_many(Cursor::new(block.as_bytes()))
                .map_err(|e| KeyringError::Parse {
                    reason: one_line(&e),
                })?;
            for key in keys {
                let key = key.map_err(|e| KeyringError::Parse {
                    reason: one_line(&e),
                })?;
                key.verify_bindings().map_err(|e| KeyringError::BadKey {
                    fingerprint: fpr(&key.primary_key),
                    reason: one_line(&e),
                })?;
                self.keys.push(key);
                added += 1;
            }
        }
        if added == 0 {
            return Err(KeyringError::NoKeys);
        }
        Ok(added)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Is it empty?
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Fingerprints of the primary keys (uppercase hex).
    pub fn fingerprints(&self) -> Vec<String> {
        self.keys.iter().map(|k| fpr(&k.primary_key)).collect()
    }

    /// Verify one signature packet over the data `open()` yields (called once
    /// per candidate key). Returns the signer's fingerprint.
    fn verify_one<R: Read>(
        &self,
        sig: &Signature,
        open: &mut dyn FnMut() -> io::Result<R>,
    ) -> Result<String, SigError> {
        let now = now();
        let ids: Vec<String> = sig
            .issuer_fingerprint()
            .iter()
            .map(|f| format!("{f:X}"))
            .chain(
                sig.issuer_key_id()
                    .iter()
                    .map(|k| crate::io::hex(k.as_ref()).to_uppercase()),
            )
            .collect();
        let issuer = if ids.is_empty() {
            "unknown issuer".to_owned()
        } else {
            ids.join("/")
        };
        if let (Some(d), Some(c)) = (sig.signature_expiration_time(), sig.created()) {
            if d.as_secs() > 0
                && u64::from(c.as_secs()).saturating_add(u64::from(d.as_secs())) < now
            {
                return Err(SigError::Untrusted(format!(
                    "the signature by {issuer} has expired"
                )));
            }
        }
        let matches = |k: &dyn KeyDetailsDyn| {
            (sig.issuer_key_id().is_empty() && sig.issuer_fingerprint().is_empty())
                || sig.issuer_key_id().iter().any(|id| **id == k.key_id())
                || sig.issuer_fingerprint().iter().any(|f| **f == k.fp())
        };
        let mut last_problem: Option<SigError> = None;
        for key in &self.keys {
            let primary = &key.primary_key;
            let revoked = !key.details.revocation_signatures.is_empty();
            let primary_expired = expired(
                u64::from(primary.created_at().as_secs()),
                newest(key.details.users.iter().flat_map(|u| u.signatures.iter()))
                    .or_else(|| newest(key.details.direct_signatures.iter())),
                now,
            );
            if matches(primary) {
                if revoked || primary_expired {
                    last_problem = Some(SigError::Untrusted(format!(
                        "key {} is {}",
                        fpr(primary),
                        if revoked { "revoked" } else { "expired" }
                    )));
                    continue;
                }
                let data = open().map_err(|e| SigError::Malformed(one_line(&e)))?;
                match sig.verify(primary, data) {
                    Ok(()) => return Ok(fpr(primary)),
                    Err(e) => last_problem = Some(bad_signature(&fpr(primary), &e)),
                }
            }
            for sub in &key.public_subkeys {
                if !matches(&sub.key) {
                    continue;
                }
                let binding = newest(
                    sub.signatures
                        .iter()
                        .filter(|s| s.typ() == Some(SignatureType::SubkeyBinding)),
                );
                let sub_revoked = sub
                    .signatures
                    .iter()
                    .any(|s| s.typ() == Some(SignatureType::SubkeyRevocation));
                let can_sign = binding.is_some_and(|b| b.key_flags().sign());
                let sub_expired = expired(u64::from(sub.key.created_at().as_secs()), binding, now);
                if revoked || primary_expired || sub_revoked || sub_expired || !can_sign {
                    last_problem = Some(SigError::Untrusted(format!(
                        "subkey {} of {} is revoked, expired or not a signing key",
                        fpr(&sub.key),
                        fpr(primary)
                    )));
                    continue;
                }
                let data = open().map_err(|e| SigError::Malformed(one_line(&e)))?;
                match sig.verify(&sub.key, data) {
                    Ok(()) => return Ok(fpr(primary)),
                    Err(e) => last_problem = Some(bad_signature(&fpr(primary), &e)),
                }
            }
        }
        Err(last_problem.unwrap_or_else(|| {
            SigError::Untrusted(format!(
                "signed by {issuer}, which is not in the trusted keyring"
            ))
        }))
    }

    /// Verify a detached signature (armoured, as Portage writes it, or
    /// binary, as GLEP 78 describes) over the data `open()` yields. Every
    /// signature packet must verify. Returns the signers' fingerprints.
    pub(crate) fn verify_detached<R: Read>(
        &self,
        sig: &[u8],
        mut open: impl FnMut() -> io::Result<R>,
    ) -> Result<Vec<String>, SigError> {
        let armoured = sig
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .is_some_and(|p| sig[p..].starts_with(b"-----BEGIN PGP SIGNATURE-----"));
        let parsed: Vec<DetachedSignature> = if armoured {
            let (it, _) = DetachedSignature::from_armor_many(Cursor::new(sig))
                .map_err(|e| SigError::Malformed(one_line(&e)))?;
            it.collect::<Result<_, _>>()
                .map_err(|e| SigError::Malformed(one_line(&e)))?
        } else {
            DetachedSignature::from_bytes_many(Cursor::new(sig))
                .map_err(|e| SigError::Malformed(one_line(&e)))?
                .collect::<Result<_, _>>()
                .map_err(|e| SigError::Malformed(one_line(&e)))?
        };
        if parsed.is_empty() {
            return Err(SigError::Malformed("no signature packet".into()));
        }
        let mut signers = Vec::new();
        for d in &parsed {
            if !matches!(
                d.signature.typ(),
                Some(SignatureType::Binary | SignatureType::Text)
            ) {
                return Err(SigError::Malformed(format!(
                    "not a data signature ({:?})",
                    d.signature.typ()
                )));
            }
            signers.push(self.verify_one(&d.signature, &mut open)?);
        }
        Ok(signers)
    }

    /// Verify a clear-signed text; returns the signed text (LF line ends,
    /// dash-escaping and trailing whitespace removed, as `gpg --output`
    /// gives it) and the signers.
    pub(crate) fn verify_cleartext(&self, text: &str) -> Result<(String, Vec<String>), SigError> {
        let msg = parse_cleartext(text)?;
        let signed = msg.signed_text();
        let mut signers = Vec::new();
        for s in msg.signatures() {
            let mut open = || Ok::<_, io::Error>(Cursor::new(signed.as_bytes()));
            signers.push(self.verify_one(s, &mut open)?);
        }
        Ok((signed.replace("\r\n", "\n"), signers))
    }
}

/// A message of the OpenPGP library on one line (error messages are one
/// line); the library's failed-assertion preamble (`assertion failed:
/// (left == right) left: .. right: ..: <message>`) is reduced to its message.
fn one_line(e: &dyn std::fmt::Display) -> String {
    let s = e.to_string();
    let s = match s.strip_prefix("assertion failed") {
        Some(rest) => rest.rsplit_once("`: ").map_or(rest, |(_, m)| m).to_owned(),
        None => s,
    };
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A signature by a trusted key that does not verify over the data.
fn bad_signature(fingerprint: &str, e: &dyn std::fmt::Display) -> SigError {
    SigError::Bad(format!(
        "the signature by {fingerprint} does not match the signed data ({})",
        one_line(e)
    ))
}

/// Parse a clear-signed message.
pub(crate) fn parse_cleartext(text: &str) -> Result<CleartextSignedMessage, SigError> {
    let (msg, _) = CleartextSignedMessage::from_string(text).map_err(|e| {
        SigError::Malformed(format!(
            "not a valid clear-signed Manifest: {}",
            one_line(&e)
        ))
    })?;
    if msg.signatures().is_empty() {
        return Err(SigError::Malformed(
            "clear-signed Manifest without a signature".into(),
        ));
    }
    Ok(msg)
}

/// The signed text of a clear-signed message, not verified (for
/// [`crate::SignaturePolicy::Ignore`]).
pub(crate) fn cleartext_unverified(text: &str) -> Result<String, SigError> {
    Ok(parse_cleartext(text)?.signed_text().replace("\r\n", "\n"))
}

/// Key identity helpers usable through a trait object.
trait KeyDetailsDyn {
    fn key_id(&self) -> pgp::types::KeyId;
    fn fp(&self) -> pgp::types::Fingerprint;
}

impl<T: KeyDetails + VerifyingKey> KeyDetailsDyn for T {
    fn key_id(&self) -> pgp::types::KeyId {
        self.legacy_key_id()
    }
    fn fp(&self) -> pgp::types::Fingerprint {
        self.fingerprint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn hostile_signatures_never_panic(body in proptest::collection::vec(any::<u8>(), 0..600)) {
            let k = Keyring::new();
            let mut armoured = b"-----BEGIN PGP SIGNATURE-----\n\n".to_vec();
            armoured.extend(body.iter().map(|b| b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/\n="[usize::from(*b) % 66]));
            armoured.extend_from_slice(b"\n-----END PGP SIGNATURE-----\n");
            for sig in [&body[..], &armoured[..]] {
                let _ = k.verify_detached(sig, || Ok::<_, io::Error>(Cursor::new(b"data".to_vec())));
            }
            let text = format!(
                "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\nDATA x\n{}",
                String::from_utf8_lossy(&armoured)
            );
            let _ = k.verify_cleartext(&text);
            let _ = cleartext_unverified(&text);
            let _ = Keyring::from_armored(&body);
            let mut key = b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n".to_vec();
            key.extend_from_slice(&armoured[31..]);
            key.extend_from_slice(b"-----END PGP PUBLIC KEY BLOCK-----\n");
            let _ = Keyring::from_armored(&key);
        }
    }
}

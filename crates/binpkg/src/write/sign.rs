//! OpenPGP signing of gpkg members and Manifests (rPGP), producing what
//! Portage's `binpkg-signing` produces with gpg: ASCII-armoured detached
//! signatures (SHA512) and a clear-signed Manifest.

use std::io::Read;
use std::path::Path;

use pgp::composed::{
    ArmorOptions, CleartextSignedMessage, Deserializable, DetachedSignature, SignedSecretKey,
};
use pgp::crypto::hash::HashAlgorithm;
use pgp::types::{KeyDetails, Password};

use crate::keyring::KeyringError;
use crate::write::WriteError;

/// A secret key that signs packages.
pub struct Signer {
    key: SignedSecretKey,
    password: Password,
    fingerprint: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// Load an armoured secret key (`gpg --armor --export-secret-keys`).
    /// `passphrase` unlocks it when it is protected.
    pub fn from_armored(data: &[u8], passphrase: Option<&str>) -> Result<Signer, KeyringError> {
        let (key, _) =
            SignedSecretKey::from_armor_single(data).map_err(|e| KeyringError::Parse {
                reason: format!("{e} (expected an armoured secret key block)"),
            })?;
        let fingerprint = hex_upper(key.primary_key.fingerprint().as_bytes());
        key.verify_bindings().map_err(|e| KeyringError::BadKey {
            fingerprint: fingerprint.clone(),
            reason: e.to_string(),
        })?;
        let password = passphrase
            .map(Password::from)
            .unwrap_or_else(Password::empty);
        let signer = Signer {
            key,
            password,
            fingerprint,
        };
        // Unlock once now, so that a wrong or missing passphrase is reported
        // before any package is written.
        signer
            .detached(&b""[..])
            .map_err(|_| KeyringError::Locked {
                fingerprint: signer.fingerprint.clone(),
            })?;
        Ok(signer)
    }

    /// Load an armoured secret key from a file.
    pub fn from_file(path: &Path, passphrase: Option<&str>) -> Result<Signer, KeyringError> {
        let data = std::fs::read(path).map_err(|source| KeyringError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Signer::from_armored(&data, passphrase)
    }

    /// The primary key's fingerprint (upper-case hex, as gpg prints it).
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// An armoured detached signature over `data`.
    pub(crate) fn detached(&self, data: impl Read) -> Result<Vec<u8>, WriteError> {
        let sig = DetachedSignature::sign_binary_data(
            rand::thread_rng(),
            &self.key.primary_key,
            &self.password,
            HashAlgorithm::Sha512,
            data,
        )
        .map_err(|e| self.error(e))?;
        sig.to_armored_bytes(ArmorOptions::default())
            .map_err(|e| self.error(e))
    }

    /// `text` clear-signed.
    pub(crate) fn clearsign(&self, text: &str) -> Result<Vec<u8>, WriteError> {
        let msg = CleartextSignedMessage::sign(
            rand::thread_rng(),
            text,
            &self.key.primary_key,
            &self.password,
        )
        .map_err(|e| self.error(e))?;
        msg.to_armored_bytes(ArmorOptions::default())
            .map_err(|e| self.error(e))
    }

    fn error(&self, e: pgp::errors::Error) -> WriteError {
        WriteError::Sign {
            fingerprint: self.fingerprint.clone(),
            reason: e.to_string(),
        }
    }
}

fn hex_upper(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

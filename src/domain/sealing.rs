//! The master key, and sealing secrets with it for storage.
//!
//! Signing keys live in the database so every replica shares them; their private halves
//! are sealed with ChaCha20-Poly1305 under a master key that never enters the database. The
//! associated data binds each sealed blob to its owner (a key id), so a blob copied onto
//! another row does not open.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use secrecy::{ExposeSecret, SecretBox};
use std::fmt;
use zeroize::Zeroizing;

/// Bytes of a master key.
pub const MASTER_KEY_BYTES: usize = 32;
const NONCE_BYTES: usize = 12;

/// The key that seals stored secrets. `Debug` never shows it.
pub struct MasterKey(SecretBox<[u8; MASTER_KEY_BYTES]>);

/// Why a master key or a sealed blob was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// Not base64 of exactly 32 bytes.
    #[error("the master key must be 32 bytes in base64 (e.g. from `openssl rand -base64 32`)")]
    BadMasterKey,
    /// Tampered with, truncated, or sealed under another master key.
    #[error("a sealed secret does not open with this master key")]
    Unseal,
}

impl MasterKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        let mut bytes = Box::new([0u8; MASTER_KEY_BYTES]);
        rand::fill(bytes.as_mut_slice());
        Self(SecretBox::new(bytes))
    }

    /// Reads the base64 form (surrounding whitespace allowed, as in a file).
    pub fn from_base64(text: &str) -> Result<Self, SealError> {
        let decoded = Zeroizing::new(
            STANDARD
                .decode(text.trim())
                .map_err(|_| SealError::BadMasterKey)?,
        );
        let bytes: [u8; MASTER_KEY_BYTES] = decoded
            .as_slice()
            .try_into()
            .map_err(|_| SealError::BadMasterKey)?;
        Ok(Self(SecretBox::new(Box::new(bytes))))
    }

    /// A key for another purpose, derived from this one and `label`: every replica
    /// derives the same, and none can be turned back into the master key.
    pub fn derive(&self, label: &str) -> Zeroizing<[u8; 32]> {
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
        hasher.update(label.as_bytes());
        hasher.update([0]);
        hasher.update(self.0.expose_secret());
        Zeroizing::new(hasher.finalize().into())
    }

    /// The base64 form, for writing a generated key to its file.
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(STANDARD.encode(self.0.expose_secret()))
    }

    fn cipher(&self) -> ChaCha20Poly1305 {
        ChaCha20Poly1305::new(&Key::from(*self.0.expose_secret()))
    }

    /// Seals `plaintext` for the owner `aad`: a random nonce followed by the ciphertext.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_BYTES];
        rand::fill(&mut nonce);
        let payload = Payload {
            msg: plaintext,
            aad,
        };
        // Encryption only fails for messages of gigabytes; ours are 32 bytes.
        let sealed = self
            .cipher()
            .encrypt(&Nonce::from(nonce), payload)
            .unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend(sealed);
        out
    }

    /// Opens what [`MasterKey::seal`] sealed for the same `aad`.
    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
        if sealed.len() <= NONCE_BYTES {
            return Err(SealError::Unseal);
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_BYTES);
        let nonce = Nonce::try_from(nonce).map_err(|_| SealError::Unseal)?;
        let payload = Payload {
            msg: ciphertext,
            aad,
        };
        self.cipher()
            .decrypt(&nonce, payload)
            .map(Zeroizing::new)
            .map_err(|_| SealError::Unseal)
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_only_for_the_same_owner_and_key() {
        let key = MasterKey::generate();
        let sealed = key.seal(b"private", b"kid-1");
        assert_eq!(key.open(&sealed, b"kid-1").unwrap().as_slice(), b"private");
        assert_eq!(key.open(&sealed, b"kid-2"), Err(SealError::Unseal));
        assert_eq!(
            MasterKey::generate().open(&sealed, b"kid-1"),
            Err(SealError::Unseal)
        );
        let mut tampered = sealed.clone();
        tampered[NONCE_BYTES] ^= 1;
        assert_eq!(key.open(&tampered, b"kid-1"), Err(SealError::Unseal));
        assert_eq!(key.open(&sealed[..5], b"kid-1"), Err(SealError::Unseal));
    }

    #[test]
    fn base64_round_trip_and_refusals() {
        let key = MasterKey::generate();
        let again = MasterKey::from_base64(&format!("{}\n", key.to_base64().as_str())).unwrap();
        let sealed = key.seal(b"x", b"");
        assert!(again.open(&sealed, b"").is_ok());
        for bad in ["", "not base64!", "AAAA", &STANDARD.encode([0u8; 31])] {
            assert_eq!(
                MasterKey::from_base64(bad).err(),
                Some(SealError::BadMasterKey)
            );
        }
        assert!(!format!("{key:?}").contains(key.to_base64().as_str()));
    }
}

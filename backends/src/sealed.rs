//! Private keys at rest: AES-256-GCM under a key-encryption key (KEK) from configuration.
//!
//! Sealed format: `version (1 byte, 0x01) || nonce (12 random bytes) || ciphertext || tag (16)`.
//! The version byte and the caller's associated data (e.g. the file's purpose, "root",
//! "intermediate") are both authenticated, so a sealed key cannot be swapped for another
//! purpose's without `open` failing.

use std::fmt;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use zeroize::{Zeroize, Zeroizing};

use crate::BackendError;

const VERSION_AES_256_GCM: u8 = 1;
const TAG_LEN: usize = 16;

/// The PEM label of a sealed private key.
pub const SEALED_PEM_LABEL: &str = "PKID ENCRYPTED PRIVATE KEY";

/// A 256-bit key-encryption key. Wiped from memory on drop; `Debug` shows no bytes.
pub struct KeyEncryptionKey([u8; 32]);

impl Drop for KeyEncryptionKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for KeyEncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyEncryptionKey(..)")
    }
}

impl KeyEncryptionKey {
    /// A fresh random key from the operating system's CSPRNG.
    pub fn generate() -> Self {
        use rand::RngCore;
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        KeyEncryptionKey(bytes)
    }

    /// Standard base64 (padded) of exactly 32 bytes; surrounding whitespace is ignored.
    pub fn from_base64(s: &str) -> Result<Self, BackendError> {
        let decoded =
            Zeroizing::new(STANDARD.decode(s.trim()).map_err(|_| {
                BackendError::Key("the key-encryption key is not valid base64".into())
            })?);
        let bytes: [u8; 32] = decoded.as_slice().try_into().map_err(|_| {
            BackendError::Key(format!(
                "the key-encryption key must be 32 bytes, found {}",
                decoded.len()
            ))
        })?;
        Ok(KeyEncryptionKey(bytes))
    }

    /// Standard base64 (padded).
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    fn aead_key(&self) -> Result<LessSafeKey, BackendError> {
        UnboundKey::new(&AES_256_GCM, &self.0)
            .map(LessSafeKey::new)
            .map_err(|_| BackendError::Key("unusable key-encryption key".into()))
    }

    /// Encrypts `plaintext`, binding `aad` (not stored; `open` needs the same).
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, BackendError> {
        let key = self.aead_key()?;
        let mut nonce_bytes = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce_bytes)
            .map_err(|_| BackendError::Key("no randomness for a nonce".into()))?;
        let mut in_out = plaintext.to_vec();
        let sealed = key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce_bytes),
            Aad::from(associated_data(aad)),
            &mut in_out,
        );
        if sealed.is_err() {
            in_out.zeroize();
            return Err(BackendError::Key("sealing failed".into()));
        }
        let mut out = Vec::with_capacity(1 + NONCE_LEN + in_out.len());
        out.push(VERSION_AES_256_GCM);
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&in_out);
        Ok(out)
    }

    /// Decrypts what [`seal`](Self::seal) produced under the same `aad`. A wrong KEK, wrong
    /// `aad` or any changed byte fails.
    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, BackendError> {
        let Some((&version, rest)) = sealed.split_first() else {
            return Err(BackendError::Key("the sealed key is empty".into()));
        };
        if version != VERSION_AES_256_GCM {
            return Err(BackendError::Key(format!(
                "unknown sealed key version {version}"
            )));
        }
        if rest.len() < NONCE_LEN + TAG_LEN {
            return Err(BackendError::Key("the sealed key is truncated".into()));
        }
        let (nonce_bytes, ciphertext) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce_bytes)
            .map_err(|_| BackendError::Key("the sealed key has a malformed nonce".into()))?;
        let key = self.aead_key()?;
        let mut in_out = Zeroizing::new(ciphertext.to_vec());
        let len = key
            .open_in_place(nonce, Aad::from(associated_data(aad)), &mut in_out)
            .map_err(|_| {
                BackendError::Key(
                    "cannot open the sealed key: wrong key-encryption key or altered data".into(),
                )
            })?
            .len();
        in_out.truncate(len);
        Ok(in_out)
    }

    /// [`seal`](Self::seal) in a PEM armour labelled `PKID ENCRYPTED PRIVATE KEY`.
    pub fn seal_pem(&self, plaintext: &[u8], aad: &[u8]) -> Result<String, BackendError> {
        let sealed = self.seal(plaintext, aad)?;
        Ok(pem::encode(&pem::Pem::new(SEALED_PEM_LABEL, sealed)))
    }

    /// [`open`](Self::open) of a PEM armour labelled `PKID ENCRYPTED PRIVATE KEY`.
    pub fn open_pem(&self, pem_text: &str, aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, BackendError> {
        let parsed = pem::parse(pem_text)
            .map_err(|e| BackendError::Key(format!("the sealed key is not PEM: {e}")))?;
        if parsed.tag() != SEALED_PEM_LABEL {
            return Err(BackendError::Key(format!(
                "expected a {SEALED_PEM_LABEL:?} PEM block, found {:?}",
                parsed.tag()
            )));
        }
        self.open(parsed.contents(), aad)
    }
}

/// The version byte is authenticated along with the caller's data.
fn associated_data(aad: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(aad.len() + 1);
    out.push(VERSION_AES_256_GCM);
    out.extend_from_slice(aad);
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip() {
        let kek = KeyEncryptionKey::generate();
        let sealed = kek.seal(b"secret key bytes", b"root").unwrap();
        assert_eq!(sealed[0], VERSION_AES_256_GCM);
        assert_eq!(sealed.len(), 1 + NONCE_LEN + 16 + TAG_LEN);
        assert_eq!(
            kek.open(&sealed, b"root").unwrap().as_slice(),
            b"secret key bytes"
        );
        // Fresh nonce every time.
        assert_ne!(kek.seal(b"secret key bytes", b"root").unwrap(), sealed);
    }

    #[test]
    fn wrong_kek_tamper_or_aad_fails() {
        let kek = KeyEncryptionKey::generate();
        let sealed = kek.seal(b"secret key bytes", b"root").unwrap();
        assert!(KeyEncryptionKey::generate().open(&sealed, b"root").is_err());
        assert!(kek.open(&sealed, b"intermediate").is_err());
        for i in 0..sealed.len() {
            let mut tampered = sealed.clone();
            tampered[i] ^= 0x01;
            assert!(
                kek.open(&tampered, b"root").is_err(),
                "byte {i} altered yet opened"
            );
        }
        assert!(kek.open(&sealed[..sealed.len() - 1], b"root").is_err());
        assert!(kek.open(&[], b"root").is_err());
    }

    #[test]
    fn pem_round_trip_and_label_check() {
        let kek = KeyEncryptionKey::generate();
        let text = kek.seal_pem(b"pkcs8", b"k").unwrap();
        assert!(text.starts_with("-----BEGIN PKID ENCRYPTED PRIVATE KEY-----"));
        assert_eq!(kek.open_pem(&text, b"k").unwrap().as_slice(), b"pkcs8");
        let other = pem::encode(&pem::Pem::new(
            "PRIVATE KEY",
            kek.seal(b"pkcs8", b"k").unwrap(),
        ));
        assert!(kek.open_pem(&other, b"k").is_err());
    }

    #[test]
    fn base64_round_trip_and_debug_hides_bytes() {
        let kek = KeyEncryptionKey::generate();
        let b64 = kek.to_base64();
        let again = KeyEncryptionKey::from_base64(&format!(" {b64}\n")).unwrap();
        assert_eq!(again.to_base64(), b64);
        assert_eq!(format!("{kek:?}"), "KeyEncryptionKey(..)");
        assert!(!format!("{kek:?}").contains(&b64));
        assert!(KeyEncryptionKey::from_base64("AAAA").is_err());
        assert!(KeyEncryptionKey::from_base64("not base64!").is_err());
    }
}

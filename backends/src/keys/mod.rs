//! Key custody: the [`KeySigner`] seam between the certificate builder and whoever holds the
//! private key (software here; a PKCS#11 token later), and [`SoftwareKey`], a key held in memory.
//!
//! Signatures come out in X.509 encoding (RFC 5280 §4.1.1.3 and RFC 3279 / RFC 5758 / RFC 8410):
//! ECDSA as DER `SEQUENCE { r INTEGER, s INTEGER }`, RSA PKCS#1 v1.5, Ed25519 raw.

pub mod counted;
pub mod custody;
pub mod pkcs11;
pub mod software;

use std::fmt;

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    EcdsaKeyPair, EcdsaSigningAlgorithm, Ed25519KeyPair, KeyPair, RsaKeyPair,
    ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P384_SHA384_ASN1_SIGNING, RSA_PKCS1_SHA256,
};
use zeroize::Zeroizing;

use crate::{BackendError, KeyAlgorithm};

/// A private key that can sign, wherever it lives.
pub trait KeySigner: Send + Sync {
    fn algorithm(&self) -> KeyAlgorithm;
    /// SubjectPublicKeyInfo DER.
    fn public_key_der(&self) -> &[u8];
    /// Signs `message` (hashing it as the algorithm requires). Blocking: call it from
    /// `spawn_blocking` in async code, unless [`KeySigner::signs_inline`].
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, BackendError>;
    /// `true` when a signature (and its check) is pure computation of well under 100 µs, which
    /// async code runs in place: handing it to a blocking thread would cost more (two thread
    /// wake-ups, and one more thread competing for the cores) than the signature itself.
    fn signs_inline(&self) -> bool {
        false
    }
    /// At most this many signatures can run at once (a PKCS#11 key's logged-in sessions); async
    /// code takes a permit before it hands a signature to a blocking thread, so that waiting
    /// for a free session costs a queued task rather than a parked thread. `None`: no limit.
    fn signing_slots(&self) -> Option<std::sync::Arc<tokio::sync::Semaphore>> {
        None
    }
}

enum KeyPairKind {
    Ecdsa(EcdsaKeyPair),
    Rsa(RsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

/// A private key held in process memory, backed by aws-lc-rs.
pub struct SoftwareKey {
    algorithm: KeyAlgorithm,
    key_pair: KeyPairKind,
    spki: Vec<u8>,
}

impl fmt::Debug for SoftwareKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SoftwareKey")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

fn ecdsa_algorithm(alg: KeyAlgorithm) -> Option<&'static EcdsaSigningAlgorithm> {
    match alg {
        KeyAlgorithm::EcdsaP256 => Some(&ECDSA_P256_SHA256_ASN1_SIGNING),
        KeyAlgorithm::EcdsaP384 => Some(&ECDSA_P384_SHA384_ASN1_SIGNING),
        _ => None,
    }
}

fn rsa_algorithm(modulus_len: usize) -> Option<KeyAlgorithm> {
    match modulus_len {
        256 => Some(KeyAlgorithm::Rsa2048),
        384 => Some(KeyAlgorithm::Rsa3072),
        512 => Some(KeyAlgorithm::Rsa4096),
        _ => None,
    }
}

fn spki_of<K: AsDer<aws_lc_rs::encoding::PublicKeyX509Der<'static>>>(
    public_key: &K,
    alg: KeyAlgorithm,
) -> Result<Vec<u8>, BackendError> {
    public_key
        .as_der()
        .map(|der| der.as_ref().to_vec())
        .map_err(|_| BackendError::Key(format!("cannot encode the {alg} public key")))
}

impl SoftwareKey {
    /// A fresh key from the operating system's randomness.
    pub fn generate(alg: KeyAlgorithm) -> Result<Self, BackendError> {
        let failed = |_| BackendError::Key(format!("generating a {alg} key failed"));
        let key_pair = match alg {
            KeyAlgorithm::EcdsaP256 | KeyAlgorithm::EcdsaP384 => {
                let signing =
                    ecdsa_algorithm(alg).ok_or(BackendError::Unsupported("ECDSA curve"))?;
                KeyPairKind::Ecdsa(EcdsaKeyPair::generate(signing).map_err(failed)?)
            }
            KeyAlgorithm::Rsa2048 => {
                KeyPairKind::Rsa(RsaKeyPair::generate(KeySize::Rsa2048).map_err(failed)?)
            }
            KeyAlgorithm::Rsa3072 => {
                KeyPairKind::Rsa(RsaKeyPair::generate(KeySize::Rsa3072).map_err(failed)?)
            }
            KeyAlgorithm::Rsa4096 => {
                KeyPairKind::Rsa(RsaKeyPair::generate(KeySize::Rsa4096).map_err(failed)?)
            }
            KeyAlgorithm::Ed25519 => {
                KeyPairKind::Ed25519(Ed25519KeyPair::generate().map_err(failed)?)
            }
        };
        Self::from_key_pair(alg, key_pair)
    }

    /// Parses an unencrypted PKCS#8 (v1 or v2) private key of any supported algorithm.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, BackendError> {
        for alg in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::EcdsaP384] {
            if let Some(Ok(kp)) =
                ecdsa_algorithm(alg).map(|signing| EcdsaKeyPair::from_pkcs8(signing, der))
            {
                return Self::from_key_pair(alg, KeyPairKind::Ecdsa(kp));
            }
        }
        if let Ok(kp) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
            return Self::from_key_pair(KeyAlgorithm::Ed25519, KeyPairKind::Ed25519(kp));
        }
        if let Ok(kp) = RsaKeyPair::from_pkcs8(der) {
            let alg = rsa_algorithm(kp.public_modulus_len()).ok_or(BackendError::Unsupported(
                "RSA keys other than 2048, 3072 or 4096 bits",
            ))?;
            return Self::from_key_pair(alg, KeyPairKind::Rsa(kp));
        }
        Err(BackendError::Key(
            "not a PKCS#8 private key of a supported algorithm (P-256, P-384, RSA 2048/3072/4096, Ed25519)".into(),
        ))
    }

    fn from_key_pair(algorithm: KeyAlgorithm, key_pair: KeyPairKind) -> Result<Self, BackendError> {
        let spki = match &key_pair {
            KeyPairKind::Ecdsa(kp) => spki_of(kp.public_key(), algorithm)?,
            KeyPairKind::Rsa(kp) => spki_of(kp.public_key(), algorithm)?,
            KeyPairKind::Ed25519(kp) => spki_of(kp.public_key(), algorithm)?,
        };
        Ok(SoftwareKey {
            algorithm,
            key_pair,
            spki,
        })
    }

    /// The private key as unencrypted PKCS#8 v1 DER, wiped from memory when dropped.
    pub fn to_pkcs8_der(&self) -> Zeroizing<Vec<u8>> {
        let der: Option<Vec<u8>> = match &self.key_pair {
            KeyPairKind::Ecdsa(kp) => kp.to_pkcs8v1().ok().map(|doc| doc.as_ref().to_vec()),
            KeyPairKind::Rsa(kp) => AsDer::<Pkcs8V1Der<'static>>::as_der(kp)
                .ok()
                .map(|d| d.as_ref().to_vec()),
            KeyPairKind::Ed25519(kp) => kp.to_pkcs8v1().ok().map(|doc| doc.as_ref().to_vec()),
        };
        // Serializing a key we hold cannot fail short of memory exhaustion; an empty document
        // then fails loudly at the next parse instead of panicking here.
        Zeroizing::new(der.unwrap_or_default())
    }
}

impl KeySigner for SoftwareKey {
    fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    fn public_key_der(&self) -> &[u8] {
        &self.spki
    }

    /// ECDSA and Ed25519 in memory: tens of microseconds. RSA (milliseconds) goes to a thread.
    fn signs_inline(&self) -> bool {
        !matches!(self.key_pair, KeyPairKind::Rsa(_))
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, BackendError> {
        let failed = |_| BackendError::Sign(format!("{} signature failed", self.algorithm));
        match &self.key_pair {
            KeyPairKind::Ecdsa(kp) => Ok(kp
                .sign(&SystemRandom::new(), message)
                .map_err(failed)?
                .as_ref()
                .to_vec()),
            KeyPairKind::Rsa(kp) => {
                let mut signature = vec![0u8; kp.public_modulus_len()];
                kp.sign(
                    &RSA_PKCS1_SHA256,
                    &SystemRandom::new(),
                    message,
                    &mut signature,
                )
                .map_err(failed)?;
                Ok(signature)
            }
            KeyPairKind::Ed25519(kp) => Ok(kp.try_sign(message).map_err(failed)?.as_ref().to_vec()),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use aws_lc_rs::signature::{
        UnparsedPublicKey, VerificationAlgorithm, ECDSA_P256_SHA256_ASN1, ECDSA_P384_SHA384_ASN1,
        ED25519, RSA_PKCS1_2048_8192_SHA256,
    };
    use x509_parser::prelude::FromDer;
    use x509_parser::x509::SubjectPublicKeyInfo;

    fn verifier(alg: KeyAlgorithm) -> &'static dyn VerificationAlgorithm {
        match alg {
            KeyAlgorithm::EcdsaP256 => &ECDSA_P256_SHA256_ASN1,
            KeyAlgorithm::EcdsaP384 => &ECDSA_P384_SHA384_ASN1,
            KeyAlgorithm::Ed25519 => &ED25519,
            _ => &RSA_PKCS1_2048_8192_SHA256,
        }
    }

    #[test]
    fn sign_verify_and_pkcs8_round_trip() {
        // RSA-4096 keygen is slow and covered once in the builder tests.
        for alg in [
            KeyAlgorithm::EcdsaP256,
            KeyAlgorithm::EcdsaP384,
            KeyAlgorithm::Rsa2048,
            KeyAlgorithm::Ed25519,
        ] {
            let key = SoftwareKey::generate(alg).unwrap();
            assert_eq!(key.algorithm(), alg);
            let sig = key.sign(b"hello").unwrap();
            let (_, spki) = SubjectPublicKeyInfo::from_der(key.public_key_der()).unwrap();
            UnparsedPublicKey::new(verifier(alg), spki.subject_public_key.data.as_ref())
                .verify(b"hello", &sig)
                .unwrap();

            let pkcs8 = key.to_pkcs8_der();
            let again = SoftwareKey::from_pkcs8_der(&pkcs8).unwrap();
            assert_eq!(again.algorithm(), alg, "{alg}");
            assert_eq!(again.public_key_der(), key.public_key_der(), "{alg}");
            assert!(!format!("{key:?}").contains("key_pair"));
        }
    }

    #[test]
    fn garbage_is_rejected_without_echoing_it() {
        let err = SoftwareKey::from_pkcs8_der(&[0x30, 0x03, 0x02, 0x01, 0x42]).unwrap_err();
        assert!(matches!(err, BackendError::Key(_)));
        assert!(!err.to_string().contains("42"));
    }
}

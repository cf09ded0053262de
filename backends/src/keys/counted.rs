//! A CA key that counts its signatures: every certificate, CRL, OCSP response and audit
//! checkpoint a local backend signs goes through [`CountedKey::sign`], so the count is what the
//! key (a software key, or a PKCS#11 token) was asked to do. Operators read it in the log
//! (target `pkid::signatures`, debug level: one line per signature with the running total);
//! tests use it to show that a request signed nothing (OCSP as a signing oracle).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::keys::KeySigner;
use crate::{BackendError, KeyAlgorithm};

/// `inner`, counting each signature it makes.
pub struct CountedKey {
    inner: Arc<dyn KeySigner>,
    /// Names the key in the log: the subject of the CA certificate it signs for.
    label: String,
    signatures: AtomicU64,
}

impl CountedKey {
    pub fn new(inner: Arc<dyn KeySigner>, label: String) -> CountedKey {
        CountedKey {
            inner,
            label,
            signatures: AtomicU64::new(0),
        }
    }

    /// Signatures made since this process opened the key.
    pub fn signatures(&self) -> u64 {
        self.signatures.load(Ordering::Relaxed)
    }
}

impl KeySigner for CountedKey {
    fn algorithm(&self) -> KeyAlgorithm {
        self.inner.algorithm()
    }

    fn public_key_der(&self) -> &[u8] {
        self.inner.public_key_der()
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, BackendError> {
        let signature = self.inner.sign(message);
        let total = self.signatures.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::debug!(target: "pkid::signatures", key = %self.label, total, ok = signature.is_ok(), "CA key signature");
        signature
    }

    fn signs_inline(&self) -> bool {
        self.inner.signs_inline()
    }

    fn signing_slots(&self) -> Option<Arc<tokio::sync::Semaphore>> {
        self.inner.signing_slots()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::SoftwareKey;

    #[test]
    fn every_signature_is_counted_and_the_key_is_unchanged() {
        let key = Arc::new(SoftwareKey::generate(KeyAlgorithm::EcdsaP256).unwrap());
        let counted = CountedKey::new(key.clone(), "test".into());
        assert_eq!(counted.signatures(), 0);
        counted.sign(b"one").unwrap();
        counted.sign(b"two").unwrap();
        assert_eq!(counted.signatures(), 2);
        assert_eq!(counted.public_key_der(), key.public_key_der());
        assert_eq!(counted.signs_inline(), key.signs_inline());
    }
}

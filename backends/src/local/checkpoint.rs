//! Audit checkpoints signed by a local CA key (software or PKCS#11): pkid's audit trail is
//! hash-chained, and a checkpoint is a signature over the chain's head (its position and hash),
//! so that rewriting the log before it needs the CA key, not only the database.
//!
//! Domain separation: the key signs `CHECKPOINT_DOMAIN ‖ message`, never the message alone. Every
//! structure a CA key otherwise signs (TBSCertificate, TBSCertList, OCSP ResponseData) is a DER
//! SEQUENCE and starts with the byte 0x30; the domain label starts with `p` (0x70), so no
//! checkpoint signature is a valid signature over a certificate, a CRL or an OCSP response, and
//! none of those over a checkpoint.

use crate::keys::KeySigner;
use crate::local::builder::{on_signing_thread, verify_signature, IssuerInfo};
use crate::{BackendError, KeyAlgorithm};

/// What precedes every checkpoint the key signs.
pub const CHECKPOINT_DOMAIN: &[u8] = b"pkid audit checkpoint v1\0";

fn signed_bytes(message: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(CHECKPOINT_DOMAIN.len() + message.len());
    bytes.extend_from_slice(CHECKPOINT_DOMAIN);
    bytes.extend_from_slice(message);
    bytes
}

/// The issuer's key signs the checkpoint `message` (domain-separated); the signature is checked
/// with the issuer's public key before it is returned.
pub(crate) async fn sign_checkpoint(
    issuer: &IssuerInfo,
    message: &[u8],
) -> Result<(KeyAlgorithm, Vec<u8>), BackendError> {
    let key = issuer.key.clone();
    let bytes = signed_bytes(message);
    let alg = key.algorithm();
    let sign = move |key: &dyn KeySigner| {
        let signature = key.sign(&bytes)?;
        verify_signature(&bytes, alg, &signature, key.public_key_der())?;
        Ok((alg, signature))
    };
    if key.signs_inline() {
        return sign(key.as_ref());
    }
    let signer = key.clone();
    on_signing_thread(key.as_ref(), "checkpoint signing", move || {
        sign(signer.as_ref())
    })
    .await
}

/// Whether `signature` is `alg`'s signature over the checkpoint `message` by the key of the
/// certificate `cert_der`.
pub fn verify_checkpoint(
    cert_der: &[u8],
    alg: KeyAlgorithm,
    message: &[u8],
    signature: &[u8],
) -> Result<(), BackendError> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der)
        .map_err(|e| BackendError::Build(format!("the signer certificate does not parse: {e}")))?;
    verify_signature(
        &signed_bytes(message),
        alg,
        signature,
        cert.public_key().raw,
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::SoftwareBackend;

    #[tokio::test]
    async fn a_checkpoint_verifies_with_the_ca_certificate_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let kek = crate::sealed::KeyEncryptionKey::generate();
        let (backend, _) =
            SoftwareBackend::open_or_create("t", dir.path(), &kek, KeyAlgorithm::EcdsaP256)
                .unwrap();
        let issuer = backend.issuer();
        let (alg, signature) = sign_checkpoint(issuer, b"head 7 abcdef").await.unwrap();
        assert_eq!(issuer.signatures(), 1);
        verify_checkpoint(&issuer.cert_der, alg, b"head 7 abcdef", &signature).unwrap();
        assert!(verify_checkpoint(&issuer.cert_der, alg, b"head 8 abcdef", &signature).is_err());
        // Not a signature over the message alone: the domain label is part of what is signed.
        assert!(verify_signature(
            b"head 7 abcdef",
            alg,
            &signature,
            issuer.key.public_key_der()
        )
        .is_err());
        // The root's key did not sign it.
        assert!(verify_checkpoint(backend.root_der(), alg, b"head 7 abcdef", &signature).is_err());
    }
}

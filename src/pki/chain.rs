//! Certificate chains handed in from outside (a chain an outside CA issued for a request or a
//! CA): each certificate issued by the next (RFC 5280 §6.1: issuer name equal to the next's
//! subject, signature verifying under its key), the next a CA that may sign certificates
//! (basicConstraints cA, keyUsage keyCertSign when present, §4.2.1.9, §4.2.1.3). Whether the
//! last is trusted is not judged here: the chain is the submitter's word about its own path.

use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Why a chain does not hold together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ChainError(pub String);

/// Whether `cert` may sign certificates: basicConstraints cA, and keyCertSign if it has a
/// keyUsage.
pub fn is_ca(cert: &X509Certificate<'_>) -> bool {
    let mut ca = false;
    let mut may_sign = true;
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::BasicConstraints(bc) => ca = bc.ca,
            ParsedExtension::KeyUsage(ku) => may_sign = ku.key_cert_sign(),
            _ => {}
        }
    }
    ca && may_sign
}

/// Check `chain` (DER, leaf first): each certificate parses and is issued by the next, which
/// is a CA. The parsed certificates' public keys (SPKI DER), in order.
pub fn check_chain(chain: &[Vec<u8>]) -> Result<Vec<Vec<u8>>, ChainError> {
    let mut parsed = Vec::with_capacity(chain.len());
    for (i, der) in chain.iter().enumerate() {
        let (rest, cert) = X509Certificate::from_der(der)
            .map_err(|e| ChainError(format!("certificate {} does not parse: {e}", i + 1)))?;
        if !rest.is_empty() {
            return Err(ChainError(format!(
                "certificate {} has trailing data",
                i + 1
            )));
        }
        parsed.push(cert);
    }
    for (i, pair) in parsed.windows(2).enumerate() {
        let (child, parent) = (&pair[0], &pair[1]);
        if child.issuer().as_raw() != parent.subject().as_raw() {
            return Err(ChainError(format!(
                "certificate {} is not issued by certificate {} (issuer and subject differ)",
                i + 1,
                i + 2
            )));
        }
        if !is_ca(parent) {
            return Err(ChainError(format!(
                "certificate {} is not a CA that may sign certificates",
                i + 2
            )));
        }
        child
            .verify_signature(Some(parent.public_key()))
            .map_err(|_| {
                ChainError(format!(
                    "certificate {}'s signature does not verify under certificate {}",
                    i + 1,
                    i + 2
                ))
            })?;
    }
    Ok(parsed.iter().map(|c| c.public_key().raw.to_vec()).collect())
}

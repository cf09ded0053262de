//! RFC 9773 (ACME Renewal Information) certificate identifiers: the issuer's key identifier and
//! the certificate's serial, each base64url, joined by a dot (§4.1).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// A text that is not an ARI certID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not an ARI certID (base64url AKI \".\" base64url serial)")]
pub struct NotACertId;

/// RFC 9773 §4.1: `base64url(AKI keyIdentifier) "." base64url(serial DER content)`.
pub fn cert_id(cert: &x509_parser::certificate::X509Certificate<'_>) -> Option<String> {
    use x509_parser::extensions::ParsedExtension;
    let aki = cert
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                aki.key_identifier.as_ref().map(|k| k.0.to_vec())
            }
            _ => None,
        })?;
    Some(format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(aki),
        URL_SAFE_NO_PAD.encode(cert.raw_serial())
    ))
}

/// Split an ARI certID into (AKI key identifier, serial as lowercase hex).
pub fn parse_cert_id(cert_id: &str) -> Result<(Vec<u8>, String), NotACertId> {
    let (aki, serial) = cert_id.split_once('.').ok_or(NotACertId)?;
    let aki = URL_SAFE_NO_PAD.decode(aki).map_err(|_| NotACertId)?;
    let serial = URL_SAFE_NO_PAD.decode(serial).map_err(|_| NotACertId)?;
    if aki.is_empty() || serial.is_empty() || serial.len() > 21 {
        return Err(NotACertId);
    }
    Ok((aki, hex::encode(serial)))
}

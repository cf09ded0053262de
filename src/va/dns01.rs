//! dns-01 (RFC 8555 §8.4): a TXT record at `_acme-challenge.NAME` holds
//! base64url(SHA-256(key authorization)).

use super::{ValidationError, Validator};
use crate::pki::csr::Ident;

impl Validator {
    /// RFC 8555 §8.4.
    pub(super) async fn dns01(
        &self,
        ident: &Ident,
        key_authorization: &str,
    ) -> Result<(), ValidationError> {
        let Ident::Dns(domain) = ident else {
            return Err(ValidationError::malformed(
                "dns-01 validates DNS names only",
            ));
        };
        let expected = digest_b64(key_authorization);
        let name = format!("_acme-challenge.{domain}.");
        let lookup = self
            .resolver
            .txt_lookup(name.as_str())
            .await
            .map_err(|e| ValidationError::dns(format!("TXT lookup of {name} failed: {e}")))?;
        let found: Vec<String> = lookup
            .iter()
            .map(|txt| {
                txt.txt_data()
                    .iter()
                    .map(|part| String::from_utf8_lossy(part))
                    .collect::<String>()
            })
            .collect();
        if found.iter().any(|v| v == &expected) {
            Ok(())
        } else {
            Err(ValidationError::incorrect_response(format!(
                "no TXT record at {name} holds the expected digest; found {} record(s)",
                found.len()
            )))
        }
    }
}

fn digest_b64(key_authorization: &str) -> String {
    use base64::Engine;
    let digest =
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key_authorization.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref())
}

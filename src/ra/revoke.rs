//! Revocation requested through a surface (RFC 8555 §7.6): who may revoke a certificate, and
//! with which reason; the revocation itself (store, CRL, OCSP, upstream) is `revocation`'s.

use pkid_backends::RevocationReason;

use super::{Ra, RaError};
use crate::revocation::RevokeError;

/// Who asks for a revocation.
pub enum Revoker<'a> {
    /// The account that holds the certificate.
    Account(&'a str),
    /// Whoever signed the request with this key (RFC 7638 thumbprint), which must be the
    /// certificate's.
    KeyHolder(&'a str),
}

impl Ra {
    /// Revoke the certificate `der` (as this CA issued it) for `reason` (an RFC 5280 reason
    /// code; 7 is not one), if `by` may.
    pub async fn revoke_certificate(
        &self,
        der: &[u8],
        reason: i64,
        by: Revoker<'_>,
    ) -> Result<(), RaError> {
        let reason_code = u8::try_from(reason)
            .ok()
            .filter(|r| *r != 7)
            .and_then(RevocationReason::from_code)
            .ok_or_else(|| {
                RaError::BadRevocationReason(format!(
                    "reason {reason} is not an RFC 5280 reason code pkid accepts (0-10, not 7)"
                ))
            })?;
        let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|_| {
            RaError::Malformed("certificate is not a valid X.509 certificate".into())
        })?;
        let serial = hex::encode(cert.raw_serial());
        let stored = self.store.certificate(&serial).await?;
        let Some(stored) = stored.filter(|c| c.der.as_deref() == Some(der)) else {
            return Err(RaError::NotFound(
                "this server did not issue that certificate".into(),
            ));
        };
        match by {
            Revoker::Account(account_id) => {
                if stored.account_id.as_deref() != Some(account_id) {
                    return Err(RaError::Unauthorized(
                        "this account does not hold that certificate".into(),
                    ));
                }
            }
            Revoker::KeyHolder(signer) => {
                if crate::pki::jwk::spki_thumbprint(cert.public_key().raw).as_deref()
                    != Some(signer)
                {
                    return Err(RaError::Unauthorized(
                        "the request is not signed by the certificate's key".into(),
                    ));
                }
            }
        }
        match self.revocation.revoke(&serial, reason_code).await {
            Ok(()) => Ok(()),
            Err(RevokeError::AlreadyRevoked(_)) => Err(RaError::AlreadyRevoked(
                "the certificate is revoked already".into(),
            )),
            Err(RevokeError::NotFound(_)) => Err(RaError::NotFound(
                "this server did not issue that certificate".into(),
            )),
            Err(RevokeError::Store(e)) => Err(e.into()),
            // Revocations through the RA carry no invalidity date.
            Err(RevokeError::InvalidityInFuture) => Err(RaError::Malformed(
                "the invalidity date is in the future".into(),
            )),
            Err(RevokeError::Backend(e)) => {
                tracing::error!(serial = %serial, error = %e, "backend revocation failed");
                Err(RaError::Internal(
                    "the revocation could not be completed; retry later".into(),
                ))
            }
        }
    }
}

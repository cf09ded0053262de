//! Revocation requested through a surface (RFC 8555 §7.6): who may revoke a certificate (its
//! account, or its key's holder, through the directory it was issued through), and with which
//! reason; the revocation itself (store, CRL, OCSP, upstream) is `revocation`'s.

use pkid_backends::RevocationReason;

use super::{AuditEvent, Directory, Ra, RaError};
use crate::revocation::RevokeError;
use crate::store::CertificateRow;

/// The RFC 5280 reasons a subscriber may give (RFC 8555 §7.6 leaves the choice to the CA).
const SUBSCRIBER_REASONS: &[u8] = &[0, 1, 3, 4, 5];

/// Who asks for a revocation.
#[derive(Clone, Copy)]
pub enum Revoker<'a> {
    /// The account that holds the certificate.
    Account(&'a str),
    /// Whoever signed the request with this key (RFC 7638 thumbprint), which must be the
    /// certificate's.
    KeyHolder(&'a str),
}

impl Ra {
    /// Whether `cert` was issued through ACME directory `directory`: by an order placed there.
    /// A certificate of no order (issued through another surface) belongs to every directory of
    /// its issuer.
    pub async fn issued_through(
        &self,
        directory: &Directory,
        cert: &CertificateRow,
    ) -> Result<bool, RaError> {
        Ok(match &cert.order_id {
            Some(order_id) => self
                .store
                .order(order_id)
                .await?
                .is_some_and(|o| o.directory == directory.name),
            None => cert.issuer == directory.ca.name,
        })
    }

    /// Revoke the certificate `der` (as this CA issued it, through `directory`) for `reason`
    /// (one of the subscriber reasons), if `by` may; a certificate revoked already may be
    /// revoked again for keyCompromise.
    pub async fn revoke_certificate(
        &self,
        directory: &Directory,
        der: &[u8],
        reason: i64,
        by: Revoker<'_>,
    ) -> Result<(), RaError> {
        // Boulder's subscriber reasons: what a subscriber can know of its own certificate. The
        // others are the CA's to give (cACompromise, privilegeWithdrawn, aACompromise), hold a
        // certificate (certificateHold), or undo a hold (removeFromCRL).
        let reason_code = u8::try_from(reason)
            .ok()
            .filter(|r| SUBSCRIBER_REASONS.contains(r))
            .and_then(RevocationReason::from_code)
            .ok_or_else(|| {
                RaError::BadRevocationReason(format!(
                    "reason {reason} is not one a subscriber may give: 0 unspecified, 1 keyCompromise, 3 affiliationChanged, 4 superseded, 5 cessationOfOperation"
                ))
            })?;
        let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|_| {
            RaError::Malformed("certificate is not a valid X.509 certificate".into())
        })?;
        let serial = hex::encode(cert.raw_serial());
        let revoked = self
            .revoke_checked(directory, der, &cert, &serial, reason_code, by)
            .await;
        let who = match by {
            Revoker::Account(id) => format!("acme-account:{id}"),
            Revoker::KeyHolder(thumbprint) => format!("certificate-key:{thumbprint}"),
        };
        let resource = format!("certificate:{serial}");
        // Refusals of a certificate this CA issued are recorded; a request naming one it never
        // issued changed nothing and is not (anyone may send those).
        let event = match &revoked {
            Ok(()) => Some(AuditEvent::success(who, "certificate.revoked", resource)),
            Err(RaError::NotFound(_) | RaError::Malformed(_)) => None,
            Err(e) => Some(AuditEvent::failure(
                who,
                "certificate.revoked",
                resource,
                e.to_string(),
            )),
        };
        if let Some(event) = event {
            self.audit(event.with(serde_json::json!({ "reason": reason_code.code() })))
                .await;
        }
        revoked
    }

    /// The revocation once the request is parsed: the certificate is this CA's, `by` may
    /// revoke it, and the revocation is recorded.
    async fn revoke_checked(
        &self,
        directory: &Directory,
        der: &[u8],
        cert: &x509_parser::certificate::X509Certificate<'_>,
        serial: &str,
        reason_code: RevocationReason,
        by: Revoker<'_>,
    ) -> Result<(), RaError> {
        let serial = serial.to_string();
        let stored = self.store.certificate(&serial).await?;
        let Some(stored) = stored.filter(|c| c.der.as_deref() == Some(der)) else {
            return Err(RaError::NotFound(
                "this server did not issue that certificate".into(),
            ));
        };
        // Revoked through the directory it was issued through, by its account or its key.
        if !self.issued_through(directory, &stored).await? {
            return Err(RaError::NotFound(
                "this directory did not issue that certificate".into(),
            ));
        }
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
            Err(RevokeError::ReasonNotAllowed(code)) => Err(RaError::BadRevocationReason(format!(
                "reason {code} cannot be given to a revocation"
            ))),
            Err(RevokeError::Backend(e)) => {
                tracing::error!(serial = %serial, error = %e, "backend revocation failed");
                Err(RaError::Internal(
                    "the revocation could not be completed; retry later".into(),
                ))
            }
        }
    }
}

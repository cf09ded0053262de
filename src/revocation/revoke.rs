//! Recording a revocation, whatever surface asked: the issuer's backend first (an upstream CA
//! must agree), then the one record every CRL and OCSP answer is made from (RFC 5280 §5.3.1
//! reasons, §5.3.2 invalidity dates). A revoked certificate of a local issuer may be revoked
//! again for keyCompromise (as Boulder allows), which replaces its reason; nothing is ever
//! revoked with removeFromCRL.

use pkid_backends::{RevocationReason, Serial};

use super::{canonical_serial_hex, Revocation, RevokeError};
use crate::store::{now, CertificateStatus};

impl Revocation {
    /// Revoke an issued certificate, whatever surface asked: the issuer's backend first
    /// (upstream CAs must agree), then the one record every CRL and OCSP answer comes from.
    pub async fn revoke(
        &self,
        serial_hex: &str,
        reason: RevocationReason,
    ) -> Result<(), RevokeError> {
        self.revoke_with_invalidity(serial_hex, reason, None).await
    }

    /// [`Revocation::revoke`] with an invalidity date (RFC 5280 §5.3.2, Unix seconds): when the
    /// key was known or suspected compromised, or the certificate otherwise became invalid.
    pub async fn revoke_with_invalidity(
        &self,
        serial_hex: &str,
        reason: RevocationReason,
        invalidity_date: Option<i64>,
    ) -> Result<(), RevokeError> {
        if reason == RevocationReason::RemoveFromCrl {
            return Err(RevokeError::ReasonNotAllowed(reason.code()));
        }
        let serial_hex = canonical_serial_hex(serial_hex);
        let at = now();
        if invalidity_date.is_some_and(|t| t > at) {
            return Err(RevokeError::InvalidityInFuture);
        }
        let cert = self
            .store
            .certificate(&serial_hex)
            .await?
            .filter(|c| c.status == CertificateStatus::Issued)
            .ok_or_else(|| RevokeError::NotFound(serial_hex.clone()))?;
        if cert.revoked_at.is_some() {
            let compromised = i64::from(RevocationReason::KeyCompromise.code());
            // Only a local issuer's CRLs and OCSP carry the new reason; an upstream CA keeps its own.
            let local = self
                .issuers
                .get(&cert.issuer)
                .await
                .is_some_and(|ca| ca.backend.capabilities().crl);
            if reason != RevocationReason::KeyCompromise
                || !local
                || cert.revocation_reason == Some(compromised)
            {
                return Err(RevokeError::AlreadyRevoked(serial_hex));
            }
            if !self
                .store
                .rerevoke_for_key_compromise(&serial_hex, at, invalidity_date)
                .await?
            {
                return Err(RevokeError::AlreadyRevoked(serial_hex));
            }
            tracing::info!(serial = %serial_hex, issuer = %cert.issuer, "revocation reason is now keyCompromise");
            self.revoked.notify_one();
            return Ok(());
        }
        let der = cert.der.clone().unwrap_or_default();
        if let Some(ca) = self.issuers.get(&cert.issuer).await {
            let serial = Serial::from_hex(&serial_hex).map_err(RevokeError::Backend)?;
            ca.backend
                .revoke(&serial, &der, reason)
                .await
                .map_err(RevokeError::Backend)?;
        }
        let code = i64::from(reason.code());
        if !self
            .store
            .revoke_certificate(&serial_hex, code, at, invalidity_date)
            .await?
        {
            return Err(RevokeError::AlreadyRevoked(serial_hex));
        }
        tracing::info!(serial = %serial_hex, issuer = %cert.issuer, reason = code, "certificate revoked");
        self.revoked.notify_one();
        Ok(())
    }
}

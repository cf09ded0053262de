//! Certificate requests (Notary's `/certificate_requests`): a CSR recorded once per key and
//! subject (the same CSR twice is refused), signed by a stored CA under Notary's profile
//! (subject and SANs copied, a year, TLS server and client, the CA's CRL), given a chain from an
//! outside CA, rejected, revoked, its certificate forgotten, or deleted.
//!
//! The state guards Notary lacks: nothing is signed or uploaded for a `Rejected` or `Revoked`
//! request, nor over an `Active` one's certificate; an `Active` request is revoked, not
//! rejected. A sign holds its request while the CA signs, so a racing change waits or fails.

use pkid_backends::RevocationReason;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::cas::refused;
use super::{AuditEvent, Ra, RaError};
use crate::ca::IssuanceProfile;
use crate::pki::csr::{read_requested_names, CsrError, RequestedNames};
use crate::pki::pem::{one_request, to_pem, PemError};
use crate::revocation::RevokeError;
use crate::store::cert_requests::{ACTIVE, OUTSTANDING, REJECTED, REVOKED};
use crate::store::{CertRequestRow, NewCertRequest, SignedRequest};

/// A sign's hold on its request older than this was left by a process that stopped.
const HOLD_SECS: i64 = 300;

/// The request's CSR, read whole.
pub fn requested_names(csr_pem: &str) -> Result<RequestedNames, RaError> {
    let der = one_request(csr_pem).map_err(|e| match e {
        PemError::WrongKind { found, .. } if found.contains("CERTIFICATE") => {
            RaError::Malformed("csr: a certificate, not a certificate request".into())
        }
        other => RaError::Malformed(format!("csr: {other}")),
    })?;
    read_requested_names(&der).map_err(|e| match e {
        CsrError::Bad(why) => RaError::BadCsr(format!("csr: {why}")),
        CsrError::WeakKey(why) => RaError::WeakKey(format!("csr: {why}")),
    })
}

/// Why a request in `status` cannot get a certificate.
fn no_certificate_for(status: &str) -> RaError {
    RaError::Conflict(match status {
        REJECTED => "the certificate request was rejected".into(),
        REVOKED => "the certificate request's certificate was revoked".into(),
        ACTIVE => "the certificate request has a certificate already; delete it first".into(),
        other => format!("the certificate request is {other}"),
    })
}

impl Ra {
    async fn request(&self, id: i64) -> Result<CertRequestRow, RaError> {
        self.store
            .certificate_request(id)
            .await?
            .ok_or_else(|| RaError::NotFound("no such certificate request".into()))
    }

    /// Record a CSR (PEM) for `owner_id` (whose e-mail address is shown with it); its id.
    pub async fn create_certificate_request(
        &self,
        csr_pem: &str,
        owner_id: &str,
        owner_email: &str,
        by: &str,
    ) -> Result<i64, RaError> {
        let names = requested_names(csr_pem)?;
        let digest = hex::encode(aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            &names.der,
        ));
        let new = NewCertRequest {
            csr_pem: csr_pem.trim().to_owned(),
            csr_digest: digest,
            owner_id: owner_id.to_owned(),
            owner_email: owner_email.to_owned(),
            created_by: by.to_owned(),
        };
        match self.store.insert_certificate_request(&new).await {
            Ok(id) => {
                tracing::info!(id, by, "certificate request recorded");
                self.audit(AuditEvent::success(
                    by,
                    "certificate_request.created",
                    format!("certificate_request:{id}"),
                ))
                .await;
                Ok(id)
            }
            Err(e) if e.is_unique_violation() => {
                Err(RaError::Conflict("given csr already recorded".into()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Sign request `id` with the stored CA `ca_id` under Notary's profile; `crl_urls`: where
    /// the CA's CRL is published besides its repository URL.
    pub async fn sign_certificate_request(
        &self,
        id: i64,
        ca_id: i64,
        crl_urls: &[String],
        by: &str,
    ) -> Result<(), RaError> {
        let request = self.request(id).await?;
        if request.status != OUTSTANDING {
            return Err(no_certificate_for(&request.status));
        }
        let entry = self.stored_ca(ca_id).await?;
        let ca = entry
            .may_sign(crate::store::now())
            .map_err(refused)?
            .clone();
        let names = requested_names(&request.csr_pem)?;
        let held_at = crate::store::now();
        if !self
            .store
            .hold_certificate_request(id, held_at, held_at - HOLD_SECS)
            .await?
        {
            return Err(RaError::Conflict(
                "the certificate request is being changed; try again".into(),
            ));
        }
        let profile = IssuanceProfile::copied_request("notary");
        let issued = match ca.issue_copied(&names, &profile, crl_urls).await {
            Ok(issued) => issued,
            Err(e) => {
                self.store.release_certificate_request(id, held_at).await?;
                return Err(match e {
                    crate::ca::IssueError::Backend(pkid_backends::BackendError::Build(why)) => {
                        RaError::BadCsr(format!("csr: {why}"))
                    }
                    crate::ca::IssueError::Store(e) => RaError::Store(e),
                    crate::ca::IssueError::Backend(
                        e @ pkid_backends::BackendError::Mismatch(_),
                    ) => RaError::Internal(format!("signing: {e}")),
                    crate::ca::IssueError::Backend(e) => {
                        RaError::Unavailable(format!("signing: {e}"))
                    }
                    other => RaError::Internal(format!("signing: {other}")),
                });
            }
        };
        // Notary's chain runs from the certificate up to the root.
        let mut chain_pem = issued.chain_pem.clone();
        if let Some(root) = ca.backend.ca_chain().last() {
            let root = to_pem("CERTIFICATE", root);
            if !chain_pem.contains(&root) {
                chain_pem.push_str(&root);
            }
        }
        let signed = SignedRequest {
            chain_pem,
            certificate_serial: issued.serial.clone(),
            ca_id,
        };
        if !self
            .store
            .complete_signed_request(id, held_at, &signed, by)
            .await?
        {
            // The hold was taken over: this certificate is never handed out.
            self.withdraw(&issued.serial).await;
            return Err(RaError::Conflict(
                "the certificate request changed meanwhile".into(),
            ));
        }
        tracing::info!(id, ca_id, serial = %issued.serial, by, "certificate request signed");
        self.audit(
            AuditEvent::success(
                by,
                "certificate_request.signed",
                format!("certificate_request:{id}"),
            )
            .with(serde_json::json!({"ca": ca_id, "serial": issued.serial})),
        )
        .await;
        Ok(())
    }

    /// Give request `id` a chain an outside CA issued (PEM, leaf first, at least two
    /// certificates, each issued by the next, a CA; the leaf for the CSR's key).
    pub async fn upload_request_chain(
        &self,
        id: i64,
        chain_pem: &str,
        by: &str,
    ) -> Result<(), RaError> {
        let request = self.request(id).await?;
        if request.status != OUTSTANDING {
            return Err(no_certificate_for(&request.status));
        }
        let chain = crate::pki::pem::certificates(chain_pem)
            .map_err(|e| RaError::Malformed(format!("certificate: {e}")))?;
        if chain.len() < 2 {
            return Err(RaError::Malformed(
                "certificate: a chain of at least two certificates (the certificate, then its issuer) is needed".into(),
            ));
        }
        let keys = crate::pki::chain::check_chain(&chain)
            .map_err(|e| RaError::Malformed(format!("certificate: {e}")))?;
        let names = requested_names(&request.csr_pem)?;
        if keys.first() != Some(&names.public_key) {
            return Err(RaError::Malformed(
                "certificate: the certificate does not match the CSR's key".into(),
            ));
        }
        let stored: String = chain.iter().map(|der| to_pem("CERTIFICATE", der)).collect();
        if !self
            .store
            .attach_certificate_chain(id, &stored, by, crate::store::now() - HOLD_SECS)
            .await?
        {
            return Err(RaError::Conflict(
                "the certificate request changed meanwhile".into(),
            ));
        }
        tracing::info!(id, by, "certificate uploaded for a certificate request");
        self.audit(AuditEvent::success(
            by,
            "certificate_request.certified",
            format!("certificate_request:{id}"),
        ))
        .await;
        Ok(())
    }

    /// Reject an `Outstanding` request.
    pub async fn reject_certificate_request(&self, id: i64, by: &str) -> Result<(), RaError> {
        let request = self.request(id).await?;
        let refusal = match request.status.as_str() {
            OUTSTANDING => None,
            ACTIVE => Some("the certificate request has a certificate; revoke it instead"),
            REJECTED => Some("the certificate request is rejected already"),
            _ => Some("the certificate request's certificate was revoked"),
        };
        if let Some(why) = refusal {
            return Err(RaError::Conflict(why.into()));
        }
        if !self
            .store
            .set_certificate_request_status(
                id,
                OUTSTANDING,
                REJECTED,
                by,
                crate::store::now() - HOLD_SECS,
            )
            .await?
        {
            return Err(RaError::Conflict(
                "the certificate request changed meanwhile".into(),
            ));
        }
        tracing::info!(id, by, "certificate request rejected");
        self.audit(AuditEvent::success(
            by,
            "certificate_request.rejected",
            format!("certificate_request:{id}"),
        ))
        .await;
        Ok(())
    }

    /// Delete a request (its certificate, if any, stays recorded and valid).
    pub async fn delete_certificate_request(&self, id: i64, by: &str) -> Result<(), RaError> {
        self.request(id).await?;
        if !self
            .store
            .delete_certificate_request(id, crate::store::now() - HOLD_SECS)
            .await?
        {
            return Err(RaError::Conflict(
                "the certificate request is being signed; try again".into(),
            ));
        }
        tracing::info!(id, by, "certificate request deleted");
        self.audit(AuditEvent::success(
            by,
            "certificate_request.deleted",
            format!("certificate_request:{id}"),
        ))
        .await;
        Ok(())
    }

    /// Revoke the certificate a stored CA signed for request `id`: onto that CA's CRL, and the
    /// request `Revoked`. A request without such a certificate is [`RaError::Unauthorized`]:
    /// nothing here can revoke it.
    pub async fn revoke_request_certificate(
        &self,
        id: i64,
        reason: RevocationReason,
        by: &str,
    ) -> Result<(), RaError> {
        let request = self.request(id).await?;
        let serial = match (&request.certificate_serial, request.status.as_str()) {
            (Some(serial), ACTIVE) => serial.clone(),
            (_, REVOKED) => {
                return Err(RaError::AlreadyRevoked(
                    "the certificate is revoked already".into(),
                ))
            }
            _ => {
                return Err(RaError::Unauthorized(
                    "the certificate request has no certificate signed here".into(),
                ))
            }
        };
        match self.revocation.revoke(&serial, reason).await {
            Ok(()) | Err(RevokeError::AlreadyRevoked(_)) => {}
            Err(RevokeError::Store(e)) => return Err(e.into()),
            Err(RevokeError::ReasonNotAllowed(code)) => {
                return Err(RaError::BadRevocationReason(format!(
                    "reason {code} cannot be given to a revocation"
                )))
            }
            Err(e) => return Err(RaError::Internal(format!("revoking: {e}"))),
        }
        if !self
            .store
            .set_certificate_request_status(id, ACTIVE, REVOKED, by, i64::MAX)
            .await?
        {
            return Err(RaError::Conflict(
                "the certificate request changed meanwhile".into(),
            ));
        }
        tracing::info!(id, serial = %serial, by, reason = reason.code(), "certificate request's certificate revoked");
        self.audit(
            AuditEvent::success(by, "certificate.revoked", format!("certificate:{serial}"))
                .with(serde_json::json!({"request": id, "reason": reason.code()})),
        )
        .await;
        Ok(())
    }

    /// Forget an `Active` request's certificate (not revoking it): `Outstanding` again.
    pub async fn detach_request_certificate(&self, id: i64, by: &str) -> Result<(), RaError> {
        let request = self.request(id).await?;
        if request.status != ACTIVE {
            return Err(RaError::Conflict(format!(
                "the certificate request is {}: it has no certificate to delete",
                request.status
            )));
        }
        if !self.store.detach_certificate(id, by).await? {
            return Err(RaError::Conflict(
                "the certificate request changed meanwhile".into(),
            ));
        }
        tracing::info!(id, by, "certificate request's certificate deleted");
        self.audit(AuditEvent::success(
            by,
            "certificate_request.certificate_deleted",
            format!("certificate_request:{id}"),
        ))
        .await;
        Ok(())
    }
}

/// The notAfter of a chain's first certificate, for showing.
pub fn chain_not_after(chain_pem: &str) -> Option<i64> {
    let chain = crate::pki::pem::certificates(chain_pem).ok()?;
    let (_, cert) = X509Certificate::from_der(chain.first()?).ok()?;
    Some(cert.validity().not_after.timestamp())
}

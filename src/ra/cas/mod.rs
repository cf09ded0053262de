//! Certificate authorities made at run time (the issuer registry's stored part, `ca::registry`):
//! made with a key in the chosen custody (software, sealed with the key-encryption key; or a new
//! non-extractable key inside the PKCS#11 token) as a self-signed root or as an intermediate
//! that waits, disabled, for its certificate — signed by another CA here, or uploaded from an
//! outside CA —; enabled and disabled; revoked (disabled, and its certificate onto its parent's
//! CRL); deleted. Every change is recorded with who made it (`by`) and read again by the
//! registry before the answer, so issuance, CRLs and OCSP see it at once.

use pkid_backends::local::template::{ca_request, self_signed_ca};
use pkid_backends::{
    CaTemplate, KeyAlgorithm, KeyCustody, RevocationReason, Serial, SubjectAttribute,
};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::{AuditEvent, Ra, RaError};
use crate::ca::registry::{Issuers, SignRefusal, StoredCa};
use crate::pki::pem::to_pem;
use crate::revocation::RevokeError;
use crate::store::{CaCertified, NewCaRow};

/// A new CA, as asked for.
#[derive(Debug, Clone)]
pub struct NewCa {
    /// A self-signed root (enabled at once), or an intermediate waiting for its certificate.
    pub self_signed: bool,
    /// In RDN order; must name a commonName.
    pub subject: Vec<SubjectAttribute>,
    pub dns_names: Vec<String>,
    /// When its certificate ends (Unix seconds); `None`: 10 years for a root, 5 for an
    /// intermediate.
    pub not_after: Option<i64>,
    /// `None`: `ca-<id>`.
    pub name: Option<String>,
    /// `None`: the configured custody and algorithm.
    pub custody: Option<KeyCustody>,
    pub algorithm: Option<KeyAlgorithm>,
}

const YEAR: i64 = 365 * 86400;
/// CA certificates start an hour back, for clocks slightly behind.
const CA_BACKDATE: i64 = 3600;

/// A CA name: 1–64 of lowercase letters, digits and `-`, starting with a letter (it names
/// the CA's CRL at `/crl/NAME.crl`).
fn check_name(name: &str) -> Result<(), RaError> {
    let fine = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if fine {
        Ok(())
    } else {
        Err(RaError::Malformed(format!(
            "name {name:?}: 1 to 64 lowercase letters, digits or '-', starting with a letter"
        )))
    }
}

fn odt(unix: i64) -> Result<time::OffsetDateTime, RaError> {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .map_err(|_| RaError::Malformed("a time is out of range".into()))
}

/// Runs blocking key work (generation, a token's sessions) off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, pkid_backends::BackendError> + Send + 'static,
) -> Result<T, RaError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| RaError::Internal(format!("the key task did not finish: {e}")))?
        .map_err(|e| match e {
            pkid_backends::BackendError::Unsupported(what) => RaError::Malformed(what.into()),
            pkid_backends::BackendError::Build(what) => RaError::Malformed(what),
            other => RaError::Unavailable(format!("the CA key: {other}")),
        })
}

impl Ra {
    /// The issuer registry, which must store CAs.
    fn registry(&self) -> Result<&Issuers, RaError> {
        let issuers = self.revocation.issuers();
        if issuers.stores_cas() {
            Ok(issuers)
        } else {
            Err(RaError::Internal(
                "this process has no registry of stored CAs".into(),
            ))
        }
    }

    /// The stored CA `id`, as the registry holds it now (the version row read first).
    pub async fn stored_ca(&self, id: i64) -> Result<std::sync::Arc<StoredCa>, RaError> {
        let view = self.registry()?.refresh().await?;
        view.by_id(id)
            .cloned()
            .ok_or_else(|| RaError::NotFound("no such certificate authority".into()))
    }

    /// Make a CA: its key in the chosen custody, its request, and for a root its self-signed
    /// certificate. Its id.
    pub async fn create_ca(&self, new: NewCa, by: &str) -> Result<i64, RaError> {
        let issuers = self.registry()?;
        let (Some(keys), Some(settings)) = (issuers.keys(), issuers.settings()) else {
            return Err(RaError::Internal("no CA key custody".into()));
        };
        let has_cn = new
            .subject
            .iter()
            .any(|a| a.oid == SubjectAttribute::COMMON_NAME && !a.value.is_empty());
        if !has_cn {
            return Err(RaError::Malformed("common_name is required".into()));
        }
        if let Some(name) = &new.name {
            check_name(name)?;
            if issuers.configured().iter().any(|c| &c.name == name) {
                return Err(RaError::Conflict(format!(
                    "{name:?} names a configured backend"
                )));
            }
        }
        let custody = new.custody.unwrap_or(settings.default_custody);
        let algorithm = new.algorithm.unwrap_or(settings.default_algorithm);
        if !keys.offers(custody) {
            return Err(RaError::Malformed(
                "no PKCS#11 token is configured for CA keys (ca.registry.pkcs11)".into(),
            ));
        }
        if custody == KeyCustody::Pkcs11 && algorithm == KeyAlgorithm::Ed25519 {
            return Err(RaError::Malformed(
                "Ed25519 keys are made in software only".into(),
            ));
        }
        let now = crate::store::now();
        let lifetime = if new.self_signed { 10 * YEAR } else { 5 * YEAR };
        let not_after = new.not_after.unwrap_or(now + lifetime);
        if not_after <= now {
            return Err(RaError::Malformed(
                "not_valid_after must be in the future".into(),
            ));
        }
        let template = CaTemplate {
            subject: new.subject.clone(),
            dns_names: new.dns_names.clone(),
            serial: Serial::random(),
            not_before: odt(now - CA_BACKDATE)?,
            not_after: odt(not_after)?,
            path_len: None,
            crl_distribution_points: Vec::new(),
            ocsp_urls: Vec::new(),
            ca_issuers_urls: Vec::new(),
        };
        let keys = keys.clone();
        let self_signed = new.self_signed;
        let (reference, csr_der, certificate) = blocking(move || {
            let (signer, reference) = keys.generate(custody, algorithm)?;
            let csr = ca_request(signer.as_ref(), &template)?;
            let certificate = if self_signed {
                Some(self_signed_ca(signer.as_ref(), &template)?)
            } else {
                None
            };
            Ok((reference, csr, certificate))
        })
        .await?;
        let serial = certificate
            .as_deref()
            .and_then(|der| X509Certificate::from_der(der).ok())
            .map(|(_, c)| hex::encode(c.raw_serial()));
        let row = NewCaRow {
            name: new.name.clone(),
            key_custody: custody.as_str().to_owned(),
            key_algorithm: algorithm.as_str().to_owned(),
            key_reference: reference.stored().to_owned(),
            csr_pem: to_pem("CERTIFICATE REQUEST", &csr_der),
            chain_pem: certificate
                .as_deref()
                .map(|der| to_pem("CERTIFICATE", der))
                .unwrap_or_default(),
            certificate_serial: serial,
            not_after: Some(not_after),
            enabled: self_signed,
            created_by: by.to_owned(),
        };
        let id = match self.store.insert_certificate_authority(&row).await {
            Ok(id) => id,
            Err(e) if e.is_unique_violation() => {
                if let pkid_backends::CaKeyReference::Pkcs11 { label } = &reference {
                    tracing::warn!(label = %label, "a CA key was made on the token for a name taken meanwhile; it is unused");
                }
                return Err(RaError::Conflict(
                    "a certificate authority has that name already".into(),
                ));
            }
            Err(e) => return Err(e.into()),
        };
        tracing::info!(id, custody = custody.as_str(), algorithm = %algorithm, self_signed, by, "certificate authority created");
        self.audit(AuditEvent::success(by, "ca.created", format!("ca:{id}")).with(serde_json::json!({"custody": custody.as_str(), "algorithm": algorithm.to_string(), "self_signed": self_signed}))).await;
        issuers.refresh().await?;
        Ok(id)
    }

    /// Certify the waiting CA `id` with the CA `parent_id` (which must be able to sign now).
    /// `crl_urls`: where the parent's CRL is published besides its own repository URL.
    pub async fn sign_ca(
        &self,
        id: i64,
        parent_id: i64,
        crl_urls: &[String],
        by: &str,
    ) -> Result<(), RaError> {
        let child = self.stored_ca(id).await?;
        if child.row.revoked_at.is_some() || !child.row.chain_pem.is_empty() {
            return Err(RaError::Conflict(
                "the certificate authority has a certificate already".into(),
            ));
        }
        if id == parent_id {
            return Err(RaError::Conflict(
                "a certificate authority cannot sign itself".into(),
            ));
        }
        let parent_entry = self.stored_ca(parent_id).await?;
        let parent = parent_entry
            .may_sign(crate::store::now())
            .map_err(refused)?;
        let csr_der = crate::pki::pem::one_request(&child.row.csr_pem)
            .map_err(|e| RaError::Internal(format!("the stored request: {e}")))?;
        let names = crate::pki::csr::read_requested_names(&csr_der)
            .map_err(|e| RaError::Internal(format!("the stored request: {e:?}")))?;
        let now = crate::store::now();
        let template = CaTemplate {
            subject: names.subject.clone(),
            dns_names: names.dns_names.clone(),
            serial: Serial::random(),
            not_before: odt(now - CA_BACKDATE)?,
            not_after: odt(child.row.not_after.unwrap_or(now + 5 * YEAR))?,
            path_len: None,
            crl_distribution_points: Vec::new(),
            ocsp_urls: Vec::new(),
            ca_issuers_urls: Vec::new(),
        };
        let issued = parent
            .certify_ca(template, &names.public_key, crl_urls)
            .await
            .map_err(|e| RaError::Internal(format!("signing the CA certificate: {e}")))?;
        let not_after = X509Certificate::from_der(&issued.der)
            .map(|(_, c)| c.validity().not_after.timestamp())
            .map_err(|e| RaError::Internal(format!("the CA certificate: {e}")))?;
        let certified = CaCertified {
            chain_pem: issued.chain_pem.clone(),
            certificate_serial: Some(issued.serial.clone()),
            parent_id: Some(parent_id),
            not_after,
        };
        if !self
            .store
            .certify_certificate_authority(id, &certified, by)
            .await?
        {
            // Certified (or revoked, or deleted) meanwhile: the certificate just signed is
            // never handed out, and goes onto the parent's CRL.
            self.withdraw(&issued.serial).await;
            return Err(RaError::Conflict(
                "the certificate authority changed meanwhile".into(),
            ));
        }
        tracing::info!(id, parent_id, serial = %issued.serial, by, "certificate authority signed");
        self.audit(
            AuditEvent::success(by, "ca.signed", format!("ca:{id}"))
                .with(serde_json::json!({"parent": parent_id, "serial": issued.serial})),
        )
        .await;
        self.registry()?.refresh().await?;
        Ok(())
    }

    /// Certify the waiting CA `id` with a chain from an outside CA (PEM, its own certificate
    /// first): its first certificate must be a CA certificate for the CA's own key, each
    /// certificate issued by the next, a CA.
    pub async fn upload_ca_chain(&self, id: i64, chain_pem: &str, by: &str) -> Result<(), RaError> {
        let ca = self.stored_ca(id).await?;
        if ca.row.revoked_at.is_some() || !ca.row.chain_pem.is_empty() {
            return Err(RaError::Conflict(
                "the certificate authority has a certificate already".into(),
            ));
        }
        let chain = crate::pki::pem::certificates(chain_pem)
            .map_err(|e| RaError::Malformed(format!("certificate_chain: {e}")))?;
        let keys = crate::pki::chain::check_chain(&chain)
            .map_err(|e| RaError::Malformed(format!("certificate_chain: {e}")))?;
        let csr_der = crate::pki::pem::one_request(&ca.row.csr_pem)
            .map_err(|e| RaError::Internal(format!("the stored request: {e}")))?;
        let names = crate::pki::csr::read_requested_names(&csr_der)
            .map_err(|e| RaError::Internal(format!("the stored request: {e:?}")))?;
        if keys.first() != Some(&names.public_key) {
            return Err(RaError::Malformed(
                "certificate_chain: the first certificate is not for this CA's key".into(),
            ));
        }
        let (_, first) = X509Certificate::from_der(&chain[0])
            .map_err(|e| RaError::Malformed(format!("certificate_chain: {e}")))?;
        if !crate::pki::chain::is_ca(&first) {
            return Err(RaError::Malformed(
                "certificate_chain: the first certificate is not a CA certificate".into(),
            ));
        }
        let not_after = first.validity().not_after.timestamp();
        if not_after <= crate::store::now() {
            return Err(RaError::Malformed(
                "certificate_chain: the certificate has expired".into(),
            ));
        }
        let certified = CaCertified {
            chain_pem: chain.iter().map(|der| to_pem("CERTIFICATE", der)).collect(),
            certificate_serial: None,
            parent_id: None,
            not_after,
        };
        if !self
            .store
            .certify_certificate_authority(id, &certified, by)
            .await?
        {
            return Err(RaError::Conflict(
                "the certificate authority changed meanwhile".into(),
            ));
        }
        tracing::info!(id, by, "certificate authority certified by an outside CA");
        self.audit(AuditEvent::success(by, "ca.certified", format!("ca:{id}")))
            .await;
        self.registry()?.refresh().await?;
        Ok(())
    }

    /// Enable or disable a CA (enabling needs a certificate and no revocation).
    pub async fn set_ca_enabled(&self, id: i64, enabled: bool, by: &str) -> Result<(), RaError> {
        let ca = self.stored_ca(id).await?;
        if !self
            .store
            .set_certificate_authority_enabled(id, enabled, by)
            .await?
        {
            return Err(if ca.row.revoked_at.is_some() {
                RaError::Conflict("a revoked certificate authority cannot be enabled".into())
            } else if ca.row.chain_pem.is_empty() {
                RaError::Conflict(
                    "the certificate authority has no certificate yet; sign or upload one".into(),
                )
            } else {
                RaError::NotFound("no such certificate authority".into())
            });
        }
        tracing::info!(id, enabled, by, "certificate authority enabled or disabled");
        self.audit(AuditEvent::success(
            by,
            if enabled { "ca.enabled" } else { "ca.disabled" },
            format!("ca:{id}"),
        ))
        .await;
        self.registry()?.refresh().await?;
        Ok(())
    }

    /// Revoke a CA: its certificate onto its parent's CRL (when a CA here signed it), then the
    /// CA disabled for good.
    pub async fn revoke_ca(
        &self,
        id: i64,
        reason: RevocationReason,
        by: &str,
    ) -> Result<(), RaError> {
        let ca = self.stored_ca(id).await?;
        if ca.row.revoked_at.is_some() {
            return Err(RaError::AlreadyRevoked(
                "the certificate authority is revoked already".into(),
            ));
        }
        if ca.row.chain_pem.is_empty() {
            return Err(RaError::Conflict(
                "the certificate authority has no certificate to revoke".into(),
            ));
        }
        if let (Some(serial), Some(_)) = (&ca.row.certificate_serial, ca.row.parent_id) {
            match self.revocation.revoke(serial, reason).await {
                Ok(()) | Err(RevokeError::AlreadyRevoked(_)) => {}
                Err(RevokeError::Store(e)) => return Err(e.into()),
                Err(e) => return Err(RaError::Internal(format!("revoking: {e}"))),
            }
        }
        if !self.store.revoke_certificate_authority(id, by).await? {
            return Err(RaError::AlreadyRevoked(
                "the certificate authority is revoked already".into(),
            ));
        }
        tracing::info!(
            id,
            by,
            reason = reason.code(),
            "certificate authority revoked"
        );
        self.audit(
            AuditEvent::success(by, "ca.revoked", format!("ca:{id}"))
                .with(serde_json::json!({"reason": reason.code()})),
        )
        .await;
        self.registry()?.refresh().await?;
        Ok(())
    }

    /// Delete a CA: it is no issuer any more (what it issued stays recorded under its name).
    pub async fn delete_ca(&self, id: i64, by: &str) -> Result<(), RaError> {
        let ca = self.stored_ca(id).await?;
        if !self.store.delete_certificate_authority(id, by).await? {
            return Err(RaError::NotFound("no such certificate authority".into()));
        }
        if let Ok((pkid_backends::CaKeyReference::Pkcs11 { label }, _)) = ca.key() {
            tracing::info!(id, label = %label, "the deleted CA's key stays on the token");
        }
        tracing::info!(id, by, "certificate authority deleted");
        self.audit(AuditEvent::success(by, "ca.deleted", format!("ca:{id}")))
            .await;
        self.registry()?.refresh().await?;
        Ok(())
    }
}

impl Ra {
    /// A certificate signed for a change that lost its race is never handed out: revoked at
    /// once (superseded), so that it is on its issuer's CRL should it ever surface.
    pub(super) async fn withdraw(&self, serial: &str) {
        if let Err(e) = self
            .revocation
            .revoke(serial, RevocationReason::Superseded)
            .await
        {
            tracing::error!(serial, error = %e, "withdrawing a certificate no one was given failed");
        }
    }
}

/// A CA that may not sign, in the RA's terms.
pub(super) fn refused(why: SignRefusal) -> RaError {
    if let SignRefusal::Unusable(detail) = &why {
        tracing::error!(error = %detail, "a certificate authority's key cannot be used");
        return RaError::Unavailable(why.to_string());
    }
    RaError::Conflict(why.to_string())
}

#[cfg(test)]
mod tests;

//! A certificate linking request's life (IAM's `/iam/cert_link_requests`): made `PENDING` by
//! the account that wants the certificate, then `APPROVED` (the certificate is linked to that
//! account in the same transaction) or `REJECTED` (with a motivation) by an administrator;
//! nothing else. Kept once decided, so its history stays visible.
//!
//! A request names its certificate by a PEM, or by subject and issuer DN (RFC 2253, compared
//! in `pki::dn`'s normal form); both ways must agree when both are given. Refused (400):
//! an issuer that is not a trust anchor; a PEM certificate its anchor did not sign, or that is
//! not valid now; a pending request for the same account, subject and issuer; a certificate
//! the account has linked already; a subject another account has linked.

use serde_json::json;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::{now_ms, Iam, IamError};
use crate::audit::Event;
use crate::pki::dn::{normalize, rfc2253};
use crate::ra::ids::{object_id, uuid_v4};
use crate::store::{
    now, Approval, CertLinkFilter, CertLinkRequestRow, CertLinkStatus, UserCertificateRow,
};

/// Longest label, in characters.
const MAX_LABEL: usize = 255;
/// Longest note and motivation, in characters.
const MAX_TEXT: usize = 2048;
/// Longest PEM certificate, in bytes.
const MAX_PEM: usize = 16 * 1024;

/// A request as the surface read it.
#[derive(Debug, Default)]
pub struct NewLinkRequest<'a> {
    pub label: Option<&'a str>,
    pub pem: Option<&'a str>,
    pub subject_dn: Option<&'a str>,
    pub issuer_dn: Option<&'a str>,
    pub notes: Option<&'a str>,
}

/// Who acts on a request: an administrator (any request), or a user (their own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor<'a> {
    Admin,
    User(&'a str),
}

/// The audit entry of `by`'s `action` on the request `row` (its account, subject and issuer).
fn link_event(by: &str, action: &str, row: &CertLinkRequestRow) -> Event {
    Event::success(by, action, format!("cert-link-request:{}", row.uuid)).with(json!({
        "user": row.username,
        "subject": row.subject_dn,
        "issuer": row.issuer_dn,
    }))
}

fn invalid(message: impl Into<String>) -> IamError {
    IamError::Invalid(message.into())
}

/// A DN as given, in the stored form.
fn dn(field: &str, text: &str) -> Result<String, IamError> {
    normalize(text).map_err(|_| invalid(format!("{field} is not a valid RFC 2253 DN: {text:?}")))
}

/// The one certificate of a PEM text, DER.
fn pem_certificate(text: &str) -> Result<Vec<u8>, IamError> {
    if text.len() > MAX_PEM {
        return Err(invalid("pemEncodedCertificate is too long"));
    }
    let blocks = pem::parse_many(text)
        .map_err(|_| invalid("pemEncodedCertificate is not a PEM-encoded certificate"))?;
    let mut certificates = blocks.into_iter().filter(|b| b.tag() == "CERTIFICATE");
    let first = certificates
        .next()
        .ok_or_else(|| invalid("pemEncodedCertificate holds no certificate"))?;
    Ok(first.into_contents())
}

impl Iam {
    /// A new `PENDING` request by the account `user_id` (an administrator's too), as `by`.
    pub async fn request_link(
        &self,
        user_id: &str,
        req: &NewLinkRequest<'_>,
        by: &str,
    ) -> Result<CertLinkRequestRow, IamError> {
        let label = req.label.map(str::trim).unwrap_or_default();
        if label.is_empty() {
            return Err(invalid("label cannot be empty"));
        }
        if label.chars().count() > MAX_LABEL {
            return Err(invalid(format!(
                "label is longer than {MAX_LABEL} characters"
            )));
        }
        let notes = req.notes.unwrap_or_default();
        if notes.chars().count() > MAX_TEXT {
            return Err(invalid(format!(
                "notes are longer than {MAX_TEXT} characters"
            )));
        }
        let given_subject = req
            .subject_dn
            .filter(|s| !s.trim().is_empty())
            .map(|s| dn("subjectDn", s))
            .transpose()?;
        let given_issuer = req
            .issuer_dn
            .filter(|s| !s.trim().is_empty())
            .map(|s| dn("issuerDn", s))
            .transpose()?;
        let pem = req.pem.filter(|p| !p.trim().is_empty());
        let (subject_dn, issuer_dn, certificate) = match (pem, given_subject, given_issuer) {
            (Some(pem), subject, issuer) => {
                let der = pem_certificate(pem)?;
                let (_, cert) = X509Certificate::from_der(&der)
                    .map_err(|_| invalid("pemEncodedCertificate is not an X.509 certificate"))?;
                let (cert_subject, cert_issuer) = (rfc2253(cert.subject()), rfc2253(cert.issuer()));
                if subject.as_ref().is_some_and(|s| *s != cert_subject) {
                    return Err(invalid(
                        "subjectDn does not match the certificate's subject",
                    ));
                }
                if issuer.as_ref().is_some_and(|i| *i != cert_issuer) {
                    return Err(invalid("issuerDn does not match the certificate's issuer"));
                }
                self.check_signed_by_anchor(&cert, &cert_issuer).await?;
                (cert_subject, cert_issuer, Some(der))
            }
            (None, Some(subject), Some(issuer)) => (subject, issuer, None),
            _ => {
                return Err(invalid(
                    "give pemEncodedCertificate, or both subjectDn and issuerDn",
                ))
            }
        };
        if subject_dn.is_empty() {
            return Err(invalid(
                "the certificate's subject is empty: nothing to link",
            ));
        }
        if self.anchors.named(&issuer_dn).await.is_empty() {
            return Err(invalid(format!(
                "the issuer {issuer_dn} is not a trusted certification authority"
            )));
        }
        self.check_linkable(user_id, &subject_dn, &issuer_dn)
            .await?;
        let at = now_ms();
        let row = CertLinkRequestRow {
            uuid: uuid_v4(),
            user_id: user_id.to_owned(),
            username: String::new(),
            label: label.to_owned(),
            subject_dn,
            issuer_dn,
            certificate_pem: certificate.map(|der| crate::pki::pem::to_pem("CERTIFICATE", &der)),
            notes: notes.to_owned(),
            status: CertLinkStatus::Pending,
            motivation: None,
            creation_time: at,
            last_update_time: at,
        };
        match self.store.insert_cert_link_request(&row).await {
            Ok(()) => {}
            Err(e) if e.is_unique_violation() => return Err(pending_exists()),
            Err(e) => return Err(e.into()),
        }
        let created = self.read(&row.uuid).await?;
        self.audit(link_event(by, "cert_link_request.created", &created))
            .await;
        Ok(created)
    }

    /// A PEM certificate must be signed by an anchor of its issuer's name and valid now.
    async fn check_signed_by_anchor(
        &self,
        cert: &X509Certificate<'_>,
        issuer_dn: &str,
    ) -> Result<(), IamError> {
        let at = x509_parser::time::ASN1Time::from_timestamp(now())
            .map_err(|e| IamError::Internal(format!("time: {e}")))?;
        if !cert.validity().is_valid_at(at) {
            return Err(invalid(
                "the certificate is not valid now (expired or not yet valid)",
            ));
        }
        // No anchor of that name: refused by the caller, with the rule's own message.
        if self.signed_by_anchor(cert, issuer_dn).await
            || self.anchors.named(issuer_dn).await.is_empty()
        {
            Ok(())
        } else {
            Err(invalid(format!(
                "the certificate's signature does not verify with the key of {issuer_dn}"
            )))
        }
    }

    /// Whether an anchor named `issuer_dn` signed `cert`.
    pub(super) async fn signed_by_anchor(
        &self,
        cert: &X509Certificate<'_>,
        issuer_dn: &str,
    ) -> bool {
        self.anchors.named(issuer_dn).await.iter().any(|anchor| {
            X509Certificate::from_der(&anchor.der)
                .is_ok_and(|(_, ca)| cert.verify_signature(Some(ca.public_key())).is_ok())
        })
    }

    /// The refusals of a new request: a pending one for the same certificate, the certificate
    /// linked to this account already, its subject linked to another account.
    async fn check_linkable(
        &self,
        user_id: &str,
        subject_dn: &str,
        issuer_dn: &str,
    ) -> Result<(), IamError> {
        for link in self.store.certificate_links_by_subject(subject_dn).await? {
            if link.user_id != user_id {
                return Err(invalid(format!(
                    "a certificate with subject {subject_dn} is linked to another account"
                )));
            }
            if link.issuer_dn == issuer_dn {
                return Err(invalid(format!(
                    "the certificate {subject_dn} issued by {issuer_dn} is linked to this account already"
                )));
            }
        }
        Ok(())
    }

    /// A request, as stored.
    pub async fn read(&self, uuid: &str) -> Result<CertLinkRequestRow, IamError> {
        self.store
            .cert_link_request(uuid)
            .await?
            .ok_or_else(|| IamError::NotFound(format!("certLink request {uuid} not found")))
    }

    /// How many requests `filter` matches, and `limit` of them from the `offset`-th, by
    /// username, subject and creation time.
    pub async fn list_links(
        &self,
        filter: &CertLinkFilter,
        offset: u64,
        limit: u64,
    ) -> Result<(u64, Vec<CertLinkRequestRow>), IamError> {
        Ok(self.store.cert_link_requests(filter, offset, limit).await?)
    }

    /// A request `actor` may see: 404 when there is none, 403 when it is another's.
    pub async fn read_as(
        &self,
        uuid: &str,
        actor: Actor<'_>,
    ) -> Result<CertLinkRequestRow, IamError> {
        let row = self.read(uuid).await?;
        match actor {
            Actor::User(id) if id != row.user_id => Err(IamError::Forbidden(
                "this certLink request is another account's".into(),
            )),
            _ => Ok(row),
        }
    }

    /// Approve a pending request, as `by`: the certificate is linked to the request's account.
    pub async fn approve_link(&self, uuid: &str, by: &str) -> Result<CertLinkRequestRow, IamError> {
        let row = self.read(uuid).await?;
        check_transition(row.status, CertLinkStatus::Approved)?;
        let der = row
            .certificate_pem
            .as_deref()
            .and_then(|pem| pem::parse(pem).ok())
            .map(pem::Pem::into_contents);
        let link = UserCertificateRow {
            id: object_id(),
            user_id: row.user_id.clone(),
            subject_dn: row.subject_dn.clone(),
            issuer_dn: row.issuer_dn.clone(),
            der,
            created_at: now(),
        };
        match self
            .store
            .approve_cert_link_request(uuid, now_ms(), &link)
            .await?
        {
            Approval::Linked => {
                tracing::info!(request = %uuid, user = %row.username, subject = %row.subject_dn, "certificate linked");
                let approved = self.read(uuid).await?;
                self.audit(link_event(by, "cert_link_request.approved", &approved))
                    .await;
                Ok(approved)
            }
            Approval::NotPending => {
                let now = self.read(uuid).await?;
                check_transition(now.status, CertLinkStatus::Approved)?;
                Err(IamError::Internal(
                    "the request changed meanwhile; retry".into(),
                ))
            }
            Approval::AlreadyLinked => {
                self.check_linkable(&row.user_id, &row.subject_dn, &row.issuer_dn)
                    .await?;
                Err(invalid("the certificate is linked already"))
            }
        }
    }

    /// Reject a pending request, as `by`; `motivation` must say why.
    pub async fn reject_link(
        &self,
        uuid: &str,
        motivation: Option<&str>,
        by: &str,
    ) -> Result<CertLinkRequestRow, IamError> {
        let motivation = motivation.map(str::trim).unwrap_or_default();
        let row = self.read(uuid).await?;
        if motivation.is_empty() {
            return Err(invalid("a motivation is required to reject a request"));
        }
        if motivation.chars().count() > MAX_TEXT {
            return Err(invalid(format!(
                "the motivation is longer than {MAX_TEXT} characters"
            )));
        }
        check_transition(row.status, CertLinkStatus::Rejected)?;
        let rejected = self
            .store
            .reject_cert_link_request(uuid, motivation, now_ms())
            .await?;
        let row = self.read(uuid).await?;
        if !rejected {
            // Decided meanwhile.
            check_transition(row.status, CertLinkStatus::Rejected)?;
            return Ok(row);
        }
        self.audit(
            link_event(by, "cert_link_request.rejected", &row)
                .with(json!({ "motivation": motivation })),
        )
        .await;
        Ok(row)
    }

    /// Delete a request, as `by`: an administrator any, its owner only while it is pending.
    /// The link an approved request made stays.
    pub async fn delete_link(
        &self,
        uuid: &str,
        actor: Actor<'_>,
        by: &str,
    ) -> Result<(), IamError> {
        let row = self.read_as(uuid, actor).await?;
        let owner = matches!(actor, Actor::User(_));
        if owner && row.status != CertLinkStatus::Pending {
            return Err(invalid(format!(
                "only a PENDING request can be deleted by its owner; this one is {}",
                row.status
            )));
        }
        if self.store.delete_cert_link_request(uuid, owner).await? {
            self.audit(link_event(by, "cert_link_request.deleted", &row))
                .await;
            return Ok(());
        }
        // Gone or decided meanwhile.
        let row = self.read(uuid).await?;
        Err(invalid(format!(
            "only a PENDING request can be deleted by its owner; this one is {}",
            row.status
        )))
    }
}

fn pending_exists() -> IamError {
    invalid("a PENDING request for this certificate exists already")
}

/// Only `PENDING → APPROVED` and `PENDING → REJECTED`.
fn check_transition(from: CertLinkStatus, to: CertLinkStatus) -> Result<(), IamError> {
    if from == CertLinkStatus::Pending && to != CertLinkStatus::Pending {
        Ok(())
    } else {
        Err(IamError::Transition {
            from: from.as_str().into(),
            to: to.as_str().into(),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn only_pending_requests_are_decided() {
        use CertLinkStatus::*;
        assert!(check_transition(Pending, Approved).is_ok());
        assert!(check_transition(Pending, Rejected).is_ok());
        for (from, to) in [
            (Approved, Rejected),
            (Rejected, Approved),
            (Approved, Approved),
        ] {
            assert_eq!(
                check_transition(from, to).unwrap_err().to_string(),
                format!("Invalid certLink request transition: {from} -> {to}")
            );
        }
    }
}

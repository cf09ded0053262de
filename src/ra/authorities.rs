//! Authorities for the RA's client operations (CZERTAINLY-style): every issuer pkid holds,
//! each with a UUID kept in the database for good, and the errors of those operations
//! ([`OperationError`]: the RA's own refusals, the attribute errors a client fixes (422), and an
//! authority that refused (502) or could not be reached (503)).
//!
//! [`Ra::issuers`] is the one place the RA reads which issuers exist; the authorities follow it.

use std::sync::Arc;

use pkid_backends::BackendError;
use rand::RngCore;

use super::{Ra, RaError};
use crate::ca::{Ca, IssueError};
use crate::store::{RaAuthorityRow, StoreError};

/// A fresh random UUID (RFC 9562 version 4), lower-case.
pub fn new_uuid() -> String {
    let mut b = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// An authority as the RA shows it: its UUID, the issuer behind it, and what that issuer is.
#[derive(Clone)]
pub struct Authority {
    pub uuid: String,
    pub ca: Arc<Ca>,
}

impl Authority {
    /// `local` (a software or PKCS#11 key: pkid signs, publishes CRLs and OCSP) or `upstream`
    /// (an ACME CA or a CFSSL signer pkid is the RA of).
    pub fn kind(&self) -> &'static str {
        if self.ca.backend.capabilities().crl {
            "local"
        } else {
            "upstream"
        }
    }
}

/// Why a client operation did not go through.
#[derive(Debug, thiserror::Error)]
pub enum OperationError {
    #[error(transparent)]
    Ra(#[from] RaError),
    /// What the client sent does not satisfy the profile or the attributes' definitions: each
    /// reason on its own (CZERTAINLY answers them as a JSON array, 422).
    #[error("{}", .0.join("; "))]
    Invalid(Vec<String>),
    /// The authority refused or failed the request.
    #[error("{0}")]
    AuthorityRefused(String),
    /// The authority could not be reached (or its key could not be used).
    #[error("{0}")]
    AuthorityUnreachable(String),
}

impl From<StoreError> for OperationError {
    fn from(e: StoreError) -> OperationError {
        OperationError::Ra(RaError::Store(e))
    }
}

impl OperationError {
    pub fn invalid(reason: impl Into<String>) -> OperationError {
        OperationError::Invalid(vec![reason.into()])
    }

    pub fn not_found(what: impl Into<String>) -> OperationError {
        OperationError::Ra(RaError::NotFound(what.into()))
    }

    pub fn malformed(what: impl Into<String>) -> OperationError {
        OperationError::Ra(RaError::Malformed(what.into()))
    }
}

/// What an issuance's failure means to the client: the upstream refused (502), could not be
/// reached (503), or pkid's own store failed.
pub(super) fn issue_failure(e: IssueError) -> OperationError {
    match e {
        IssueError::Backend(b) => backend_failure(b),
        IssueError::Store(s) => OperationError::Ra(RaError::Store(s)),
        IssueError::Mismatch(why) => OperationError::AuthorityRefused(format!(
            "the authority issued a certificate that is not the one requested: {why}"
        )),
        IssueError::Pending => {
            OperationError::AuthorityUnreachable("the authority has not issued in time".into())
        }
        IssueError::ClaimLost => OperationError::Ra(RaError::Conflict(
            "the certificate is being issued already".into(),
        )),
    }
}

/// A backend's failure: an upstream that answered and refused is 502; one that could not be
/// reached or timed out, and a local key that cannot be used, 503.
pub(super) fn backend_failure(e: BackendError) -> OperationError {
    match e {
        BackendError::Upstream(why) if unreachable(&why) => OperationError::AuthorityUnreachable(
            format!("the authority could not be reached: {why}"),
        ),
        BackendError::Upstream(why) | BackendError::Mismatch(why) => {
            OperationError::AuthorityRefused(format!("the authority refused: {why}"))
        }
        BackendError::Build(why) => OperationError::invalid(why),
        BackendError::Unsupported(why) => OperationError::AuthorityRefused(why.to_string()),
        BackendError::Key(why) | BackendError::Sign(why) | BackendError::Io(why) => {
            OperationError::AuthorityUnreachable(format!("the authority's key is unusable: {why}"))
        }
    }
}

/// Whether an upstream's error says the request never reached it (or got no answer in time),
/// as the backends word it: reqwest's connect and timeout failures and the backends' deadlines.
fn unreachable(why: &str) -> bool {
    let why = why.to_ascii_lowercase();
    [
        "cannot connect",
        "connection refused",
        "error trying to connect",
        "tcp connect error",
        "timed out",
        "did not finish within",
        "dns error",
        "connection reset",
    ]
    .iter()
    .any(|sign| why.contains(sign))
}

impl Ra {
    /// Every issuer the RA may send a request to: the one function through which the RA learns
    /// which issuers exist. The configured backends, then each CA made at run time (the issuer
    /// registry, `/api/v1/certificate_authorities`) that may sign now: certified, enabled, not
    /// revoked, not expired. A CA disabled, revoked or made at run time on another replica is
    /// seen at the registry's next look.
    pub async fn issuers(&self) -> Vec<Arc<Ca>> {
        let registry = self.revocation.issuers();
        let view = registry.view().await;
        let now = crate::store::now();
        registry
            .configured()
            .iter()
            .cloned()
            .chain(
                view.cas
                    .iter()
                    .filter_map(|ca| ca.may_sign(now).ok().cloned()),
            )
            .collect()
    }

    /// The issuers pkid holds, each with its authority UUID (given on first sight, kept in the
    /// database); by name.
    pub async fn authorities(&self) -> Result<Vec<Authority>, RaError> {
        let issuers = self.issuers().await;
        let mut rows = self.store.ra_authorities().await?;
        let missing: Vec<(String, String)> = issuers
            .iter()
            .filter(|ca| !rows.iter().any(|r| r.issuer == ca.name))
            .map(|ca| (new_uuid(), ca.name.clone()))
            .collect();
        if !missing.is_empty() {
            self.store.ensure_ra_authorities(&missing).await?;
            rows = self.store.ra_authorities().await?;
            // Recorded once: by the request whose insert won (its UUID is the one read back; a
            // replica racing it kept the other UUID and records nothing).
            for (uuid, issuer) in &missing {
                if rows.iter().any(|r| &r.uuid == uuid) {
                    let resource = format!("ra-authority:{uuid}");
                    let event = super::AuditEvent::success(
                        crate::audit::SYSTEM,
                        "ra_authority.registered",
                        resource,
                    );
                    self.audit(event.with(serde_json::json!({ "issuer": issuer })))
                        .await;
                }
            }
        }
        let mut authorities: Vec<Authority> = issuers
            .into_iter()
            .filter_map(|ca| {
                let row: &RaAuthorityRow = rows.iter().find(|r| r.issuer == ca.name)?;
                Some(Authority {
                    uuid: row.uuid.clone(),
                    ca,
                })
            })
            .collect();
        authorities.sort_by(|a, b| a.ca.name.cmp(&b.ca.name));
        Ok(authorities)
    }

    /// One authority by its UUID.
    pub async fn authority(&self, uuid: &str) -> Result<Authority, RaError> {
        self.authorities()
            .await?
            .into_iter()
            .find(|a| a.uuid == uuid)
            .ok_or_else(|| RaError::NotFound(format!("no authority {uuid}")))
    }

    /// The issuer named `name`, if pkid still holds it.
    pub(super) async fn issuer_named(&self, name: &str) -> Option<Arc<Ca>> {
        self.issuers().await.into_iter().find(|ca| ca.name == name)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn uuids_are_version_4() {
        let a = new_uuid();
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"));
        assert_ne!(a, new_uuid());
    }

    #[test]
    fn an_unreachable_upstream_is_told_from_a_refusal() {
        let down = BackendError::Upstream(
            "POST http://127.0.0.1:1/api/v1/cfssl/authsign cannot connect after 3 attempt(s)"
                .into(),
        );
        assert!(matches!(
            backend_failure(down),
            OperationError::AuthorityUnreachable(_)
        ));
        let refused = BackendError::Upstream("upstream ACME CA (finalizing): badCSR".into());
        assert!(matches!(
            backend_failure(refused),
            OperationError::AuthorityRefused(_)
        ));
    }
}

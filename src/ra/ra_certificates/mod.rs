//! Certificates as RA records (CZERTAINLY-style client operations): what a client asks —
//! issue, issue a certificate approved earlier, renew (same key), rekey (new key, same
//! subject), revoke — accepted as a record in the database before anything is sent to the
//! authority, then driven to its end ([`drive`]): at once when the authority answers in time,
//! else by a leased background job any replica takes up, after a restart too. An accepted
//! operation is never dropped: the record says how it went, with an event per step.
//!
//! States (`state`): `requested` (approved, waiting for its issue), `pending_approval`,
//! `pending_issue`, `pending_revoke`, `issued`, `failed`, `rejected`, `revoked`. The operation
//! last accepted on a record (`operation`: issue, renew, rekey, revoke) is `accepted` (waiting
//! for an approval), `running`, `succeeded` or `failed`.
//!
//! Every operation names its RA profile, which must be enabled, belong to the authority in the
//! request, and be the record's own ([`Ra::record_of`]).

mod drive;

use std::sync::Arc;

use pkid_backends::RevocationReason;
use x509_parser::prelude::{FromDer, X509CertificationRequest};

use super::attributes::{self, Given};
use super::authorities::new_uuid;
use super::profiles::ProfileSettings;
use super::{AuditEvent, OperationError, Ra, RaError};
use crate::pki::csr::{check_csr, CheckedCsr, CsrError};
use crate::store::{now, Arg, RaCertificateRow, RaChange, RaEventRow, RaProfileRow, StoreError};

pub use drive::Outcome;

/// The states of a record.
pub mod state {
    pub const REQUESTED: &str = "requested";
    pub const PENDING_APPROVAL: &str = "pending_approval";
    pub const PENDING_ISSUE: &str = "pending_issue";
    pub const PENDING_REVOKE: &str = "pending_revoke";
    pub const ISSUED: &str = "issued";
    pub const FAILED: &str = "failed";
    pub const REJECTED: &str = "rejected";
    pub const REVOKED: &str = "revoked";
    /// Every state, for the documents that list them.
    pub const ALL: [&str; 8] = [
        REQUESTED,
        PENDING_APPROVAL,
        PENDING_ISSUE,
        PENDING_REVOKE,
        ISSUED,
        FAILED,
        REJECTED,
        REVOKED,
    ];
}

/// How the operation last accepted on a record went.
pub mod operation_status {
    pub const ACCEPTED: &str = "accepted";
    pub const RUNNING: &str = "running";
    pub const SUCCEEDED: &str = "succeeded";
    pub const FAILED: &str = "failed";
}

/// A new certificate as a client asks for it.
pub struct CertificateRequest {
    /// PKCS#10, DER.
    pub csr_der: Vec<u8>,
    pub attributes: Vec<Given>,
    /// The managed key the CSR was built from, if it was.
    pub key_uuid: Option<String>,
    /// `<ra profile uuid>/<username>` of a v1 end entity.
    pub end_entity: Option<String>,
}

/// The revocation reasons, in CZERTAINLY's spelling (`cACompromise`, `aACompromise`), read
/// without regard to case or underscores (`UNSPECIFIED`, `KEY_COMPROMISE` too).
pub fn revocation_reason(text: &str) -> Option<RevocationReason> {
    let folded: String = text
        .chars()
        .filter(|c| *c != '_')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    Some(match folded.as_str() {
        "unspecified" => RevocationReason::Unspecified,
        "keycompromise" => RevocationReason::KeyCompromise,
        "cacompromise" => RevocationReason::CaCompromise,
        "affiliationchanged" => RevocationReason::AffiliationChanged,
        "superseded" => RevocationReason::Superseded,
        "cessationofoperation" => RevocationReason::CessationOfOperation,
        "certificatehold" => RevocationReason::CertificateHold,
        "privilegewithdrawn" => RevocationReason::PrivilegeWithdrawn,
        "aacompromise" => RevocationReason::AaCompromise,
        _ => return None,
    })
}

/// A CSR checked as the RA takes it, with its subject DN (RFC 2253).
pub(super) fn read_csr(der: &[u8]) -> Result<(CheckedCsr, String), OperationError> {
    let csr = check_csr(der).map_err(|e| match e {
        CsrError::Bad(why) => OperationError::invalid(format!("the CSR is not acceptable: {why}")),
        CsrError::WeakKey(why) => {
            OperationError::invalid(format!("the CSR's key is not acceptable: {why}"))
        }
    })?;
    let subject = X509CertificationRequest::from_der(der)
        .map(|(_, r)| crate::pki::dn::rfc2253(&r.certification_request_info.subject))
        .map_err(|_| OperationError::invalid("the CSR is not valid DER"))?;
    Ok((csr, subject))
}

/// An event of a record.
pub(super) fn event(
    uuid: &str,
    event: &str,
    status: &str,
    message: &str,
    actor: &str,
) -> RaEventRow {
    RaEventRow {
        id: super::ids::object_id(),
        certificate_uuid: uuid.to_string(),
        at: now(),
        event: event.to_string(),
        status: status.to_string(),
        message: message.chars().take(2000).collect(),
        actor: actor.to_string(),
    }
}

/// The audit entry of a record's event: `ra_certificate.<event>` on `ra-certificate:<uuid>`
/// by the event's actor, its status and message as detail; a `failed` status is a failure.
fn audit_of(e: &RaEventRow) -> AuditEvent {
    let action = format!("ra_certificate.{}", e.event);
    let resource = format!("ra-certificate:{}", e.certificate_uuid);
    let recorded = if e.status == operation_status::FAILED {
        AuditEvent::failure(&e.actor, action, resource, &e.message)
    } else {
        AuditEvent::success(&e.actor, action, resource)
            .with(serde_json::json!({ "message": e.message }))
    };
    recorded.with(serde_json::json!({ "status": e.status }))
}

impl Ra {
    /// A record's conditional change, recorded in the audit trail when it applies (every state
    /// change of a record goes through here, with the event naming what and who).
    pub(super) async fn change_audited(&self, change: RaChange) -> Result<bool, StoreError> {
        let recorded = audit_of(&change.event);
        let changed = self.store.change_ra_certificate(change).await?;
        if changed {
            self.audit(recorded).await;
        }
        Ok(changed)
    }

    /// The record `uuid` for an operation under `profile`: it must be the profile's.
    pub async fn record_of(
        &self,
        profile: &RaProfileRow,
        uuid: &str,
    ) -> Result<RaCertificateRow, OperationError> {
        let record = self
            .store
            .ra_certificate(uuid)
            .await?
            .ok_or_else(|| OperationError::not_found(format!("no certificate {uuid}")))?;
        if record.ra_profile_uuid != profile.uuid {
            return Err(OperationError::malformed(format!(
                "certificate {uuid} does not belong to RA profile {}",
                profile.name
            )));
        }
        Ok(record)
    }

    /// Issues a certificate under `profile` (enabled, of the request's authority): the record
    /// is accepted, then issued — or left to approval, or to the background when the
    /// authority is slow.
    pub async fn request_certificate(
        self: &Arc<Self>,
        profile: &RaProfileRow,
        request: CertificateRequest,
        actor: &str,
    ) -> Result<Outcome, OperationError> {
        self.accept(profile, request, None, "issue", actor).await
    }

    /// Renews `uuid` (issued) with the same key: `csr_der` must carry its public key; none:
    /// the record's own CSR again.
    pub async fn renew_certificate(
        self: &Arc<Self>,
        profile: &RaProfileRow,
        uuid: &str,
        csr_der: Option<Vec<u8>>,
        actor: &str,
    ) -> Result<Outcome, OperationError> {
        let source = self.issued_record(profile, uuid).await?;
        let csr_der = csr_der.unwrap_or_else(|| source.csr.clone());
        let (csr, _) = read_csr(&csr_der)?;
        if csr.public_key != source.public_key {
            return Err(OperationError::invalid(
                "a renewal keeps the key: the CSR must carry the certificate's public key",
            ));
        }
        let request = CertificateRequest {
            csr_der,
            attributes: Vec::new(),
            key_uuid: source.key_uuid.clone(),
            end_entity: source.end_entity.clone(),
        };
        self.accept(profile, request, Some(&source), "renew", actor)
            .await
    }

    /// Rekeys `uuid` (issued): a CSR over a different key, for the same subject DN.
    pub async fn rekey_certificate(
        self: &Arc<Self>,
        profile: &RaProfileRow,
        uuid: &str,
        csr_der: Vec<u8>,
        key_uuid: Option<String>,
        actor: &str,
    ) -> Result<Outcome, OperationError> {
        let source = self.issued_record(profile, uuid).await?;
        let (csr, subject) = read_csr(&csr_der)?;
        let mut faults = Vec::new();
        if csr.public_key == source.public_key {
            faults.push("a rekey needs a new key: the CSR carries the certificate's key".into());
        }
        if subject != source.subject_dn {
            faults.push(format!(
                "a rekey keeps the subject: the CSR names {subject:?}, the certificate {:?}",
                source.subject_dn
            ));
        }
        if !faults.is_empty() {
            return Err(OperationError::Invalid(faults));
        }
        let request = CertificateRequest {
            csr_der,
            attributes: Vec::new(),
            key_uuid,
            end_entity: source.end_entity.clone(),
        };
        self.accept(profile, request, Some(&source), "rekey", actor)
            .await
    }

    /// Issues a record approved earlier (`requested`).
    pub async fn issue_requested(
        self: &Arc<Self>,
        profile: &RaProfileRow,
        uuid: &str,
        actor: &str,
    ) -> Result<Outcome, OperationError> {
        let record = self.record_of(profile, uuid).await?;
        if record.state != state::REQUESTED {
            return Err(OperationError::malformed(format!(
                "certificate {uuid} is {}, not requested",
                record.state
            )));
        }
        let lease = now() + drive::RUNNING_LEASE_SECS;
        let started = self
            .change_audited(RaChange {
                uuid: uuid.to_string(),
                from: vec![state::REQUESTED],
                lease: None,
                set: vec![
                    ("state", state::PENDING_ISSUE.into()),
                    ("operation_status", operation_status::RUNNING.into()),
                    ("next_attempt_at", Arg::OptInt(Some(lease))),
                ],
                event: event(uuid, "issue", "running", "issuance requested", actor),
            })
            .await?;
        if !started {
            return Err(OperationError::Ra(RaError::Conflict(format!(
                "certificate {uuid} changed meanwhile"
            ))));
        }
        self.drive(uuid, lease).await
    }

    /// Approves (`requested`, to be issued) or rejects a record waiting for approval.
    pub async fn decide_approval(
        &self,
        profile: &RaProfileRow,
        uuid: &str,
        approve: bool,
        actor: &str,
    ) -> Result<(), OperationError> {
        let record = self.record_of(profile, uuid).await?;
        let (to, status, what) = if approve {
            (state::REQUESTED, operation_status::ACCEPTED, "approved")
        } else {
            (state::REJECTED, operation_status::FAILED, "rejected")
        };
        let changed = self
            .change_audited(RaChange {
                uuid: uuid.to_string(),
                from: vec![state::PENDING_APPROVAL],
                lease: None,
                set: vec![
                    ("state", to.into()),
                    ("operation_status", status.into()),
                    (
                        "operation_error",
                        Arg::OptText((!approve).then(|| format!("rejected by {actor}"))),
                    ),
                ],
                event: event(uuid, "approval", what, &format!("{what} by {actor}"), actor),
            })
            .await?;
        if !changed {
            return Err(OperationError::malformed(format!(
                "certificate {uuid} is {}, not waiting for approval",
                record.state
            )));
        }
        Ok(())
    }

    /// Revokes the issued certificate of record `uuid` for `reason`; `comment` goes into the
    /// history; `destroy_key` destroys its managed key once revoked.
    pub async fn revoke_ra_certificate(
        self: &Arc<Self>,
        profile: &RaProfileRow,
        uuid: &str,
        reason: RevocationReason,
        given: &[Given],
        destroy_key: bool,
        actor: &str,
    ) -> Result<Outcome, OperationError> {
        let checked =
            attributes::check(attributes::REVOKE, given).map_err(OperationError::Invalid)?;
        let record = self.issued_record(profile, uuid).await?;
        let lease = now() + drive::RUNNING_LEASE_SECS;
        let mut message = format!("revocation requested, reason {}", reason.code());
        if let Some(comment) = checked.string(attributes::COMMENT) {
            message.push_str(&format!(": {comment}"));
        }
        let started = self
            .change_audited(RaChange {
                uuid: uuid.to_string(),
                from: vec![state::ISSUED],
                lease: None,
                set: vec![
                    ("state", state::PENDING_REVOKE.into()),
                    ("operation", "revoke".into()),
                    ("operation_status", operation_status::RUNNING.into()),
                    ("operation_error", Arg::OptText(None)),
                    ("revoke_reason", Arg::OptInt(Some(i64::from(reason.code())))),
                    ("destroy_key", Arg::Int(i64::from(destroy_key))),
                    ("next_attempt_at", Arg::OptInt(Some(lease))),
                ],
                event: event(uuid, "revoke", "running", &message, actor),
            })
            .await?;
        if !started {
            return Err(OperationError::malformed(format!(
                "certificate {uuid} is {}, not issued",
                record.state
            )));
        }
        self.drive(uuid, lease).await
    }

    /// After a revocation with `destroyKey`: the record's managed key is destroyed (noted in
    /// the history either way; a failure leaves the revocation standing).
    pub(super) async fn destroy_managed_key_after_revocation(&self, uuid: &str, key_uuid: &str) {
        let note = match self
            .destroy_managed_key(key_uuid, crate::audit::SYSTEM)
            .await
        {
            Ok(()) => event(
                uuid,
                "key",
                "succeeded",
                &format!("managed key {key_uuid} destroyed"),
                crate::audit::SYSTEM,
            ),
            Err(e) => event(
                uuid,
                "key",
                "failed",
                &format!("managed key {key_uuid} could not be destroyed: {e}"),
                crate::audit::SYSTEM,
            ),
        };
        if let Err(e) = self.store.add_ra_event(&note).await {
            tracing::warn!(certificate = %uuid, error = %e, "an RA event could not be written");
        }
    }

    async fn issued_record(
        &self,
        profile: &RaProfileRow,
        uuid: &str,
    ) -> Result<RaCertificateRow, OperationError> {
        let record = self.record_of(profile, uuid).await?;
        if record.state != state::ISSUED {
            return Err(OperationError::malformed(format!(
                "certificate {uuid} is {}, not issued",
                record.state
            )));
        }
        Ok(record)
    }

    /// A new record for `request` under `profile` (of `source`, for a renewal or rekey),
    /// accepted and then driven.
    pub(in crate::ra) async fn accept(
        self: &Arc<Self>,
        profile: &RaProfileRow,
        request: CertificateRequest,
        source: Option<&RaCertificateRow>,
        operation: &str,
        actor: &str,
    ) -> Result<Outcome, OperationError> {
        let settings = ProfileSettings::of(profile)?;
        let checked = attributes::check(attributes::ISSUE, &request.attributes)
            .map_err(OperationError::Invalid)?;
        let validity_days = match checked.integer(attributes::VALIDITY_DAYS) {
            Some(days) if !(1..=settings.validity_days).contains(&days) => {
                return Err(OperationError::invalid(format!(
                    "validityDays must be 1 to {} under this RA profile",
                    settings.validity_days
                )))
            }
            Some(days) => days,
            None => settings.validity_days,
        };
        let (csr, subject) = read_csr(&request.csr_der)?;
        settings
            .check_request(&subject, &csr)
            .map_err(OperationError::Invalid)?;
        let authority = self.authority(&profile.authority_uuid).await?;
        let issuance = settings.issuance_profile(&profile.name, validity_days);
        let at = now();
        let uuid = new_uuid();
        let approval = settings.approval_required && source.is_none();
        let lease = at + drive::RUNNING_LEASE_SECS;
        let record = RaCertificateRow {
            uuid: uuid.clone(),
            ra_profile_uuid: profile.uuid.clone(),
            state: if approval {
                state::PENDING_APPROVAL
            } else {
                state::PENDING_ISSUE
            }
            .into(),
            subject_dn: subject,
            public_key: csr.public_key.clone(),
            csr: request.csr_der,
            issuer: authority.ca.name.clone(),
            profile: serde_json::to_string(&issuance).unwrap_or_default(),
            serial: None,
            source_uuid: source.map(|s| s.uuid.clone()),
            key_uuid: request.key_uuid,
            end_entity: request.end_entity,
            owner: actor.to_string(),
            operation: operation.to_string(),
            operation_status: if approval {
                operation_status::ACCEPTED
            } else {
                operation_status::RUNNING
            }
            .into(),
            operation_error: None,
            upstream_ref: None,
            revoke_reason: None,
            destroy_key: false,
            next_attempt_at: (!approval).then_some(lease),
            attempts: 0,
            created_at: at,
            updated_at: at,
        };
        let message = match source {
            Some(s) => format!("{operation} of {} requested", s.uuid),
            None if approval => "issuance requested; waiting for approval".into(),
            None => "issuance requested".into(),
        };
        let first = event(&uuid, operation, &record.operation_status, &message, actor);
        self.store.insert_ra_certificate(&record, &first).await?;
        self.audit(audit_of(&first).with(serde_json::json!({
            "raProfile": profile.name,
            "issuer": record.issuer,
            "subject": record.subject_dn,
        })))
        .await;
        tracing::info!(certificate = %uuid, ra_profile = %profile.name, operation, by = %actor, "RA certificate request accepted");
        if approval {
            return Ok(Outcome {
                uuid,
                certificate: None,
            });
        }
        self.drive(&uuid, lease).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_in_the_seeds_spelling_and_any_case() {
        assert_eq!(
            revocation_reason("cACompromise"),
            Some(RevocationReason::CaCompromise)
        );
        assert_eq!(
            revocation_reason("aACompromise"),
            Some(RevocationReason::AaCompromise)
        );
        assert_eq!(
            revocation_reason("UNSPECIFIED"),
            Some(RevocationReason::Unspecified)
        );
        assert_eq!(
            revocation_reason("KEY_COMPROMISE"),
            Some(RevocationReason::KeyCompromise)
        );
        assert_eq!(revocation_reason("removeFromCRL"), None);
        assert_eq!(revocation_reason(""), None);
    }
}

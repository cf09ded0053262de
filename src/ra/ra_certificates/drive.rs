//! Driving an accepted record to its end: one step per call ([`Ra::step`]), run in a task of
//! its own that the request waits for up to [`INLINE_WAIT`] (then the client gets the record's
//! UUID and polls); the same step run by the background job ([`Ra::run_due_operations`]) for
//! records whose work is due — an upstream's pending certificate to collect, an operation
//! whose process stopped. Work is leased by `next_attempt_at` (`Store::lease_ra_certificate`):
//! exactly one worker, on any replica, holds a record at a time.

use std::sync::Arc;
use std::time::Duration;

use super::{event, operation_status, read_csr, state};
use crate::ca::{Deferred, IssuanceProfile};
use crate::ra::authorities::{backend_failure, issue_failure};
use crate::ra::{OperationError, Ra, RaError};
use crate::revocation::RevokeError;
use crate::store::{now, Arg, RaCertificateRow, RaChange};

/// How long a request waits for its operation before answering with the record's UUID.
pub const INLINE_WAIT: Duration = Duration::from_secs(10);
/// How long a worker holds a record (longer than any one step: an upstream's own timeouts).
pub(super) const RUNNING_LEASE_SECS: i64 = 120;
/// The shortest wait before a pending upstream is asked again.
const POLL_INTERVAL_SECS: i64 = 2;
/// Background attempts at an authority that cannot be reached before the record fails.
const MAX_UNREACHABLE_ATTEMPTS: i64 = 30;
/// Records the background job takes per round.
const DUE_PER_ROUND: i64 = 16;
/// Who the background job's events name.
const BACKGROUND: &str = "pkid";

/// What an operation came to, as far as the client is told now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub uuid: String,
    /// The issued leaf (DER) once there is one; `None` while pending.
    pub certificate: Option<Vec<u8>>,
}

impl Ra {
    /// Runs the next step of record `uuid` (whose lease is `lease`) in a task of its own and
    /// waits for it up to [`INLINE_WAIT`]; past that the step goes on without the client.
    pub(super) async fn drive(
        self: &Arc<Self>,
        uuid: &str,
        lease: i64,
    ) -> Result<Outcome, OperationError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let ra = self.clone();
        let id = uuid.to_string();
        tokio::spawn(async move {
            let _ = tx.send(ra.step(&id, lease, false).await);
        });
        match tokio::time::timeout(INLINE_WAIT, rx).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => Err(OperationError::Ra(RaError::Internal(
                "the operation's task ended without an answer; it is resumed in the background"
                    .into(),
            ))),
            Err(_) => Ok(Outcome {
                uuid: uuid.to_string(),
                certificate: None,
            }),
        }
    }

    /// Takes up to a round's worth of records whose work is due, each in a task of its own;
    /// how many this process took (another replica may take others).
    pub async fn run_due_operations(self: &Arc<Self>) -> Result<usize, RaError> {
        let at = now();
        let mut taken = 0;
        for (uuid, seen) in self.store.due_ra_certificates(at, DUE_PER_ROUND).await? {
            let lease = at + RUNNING_LEASE_SECS;
            if !self.store.lease_ra_certificate(&uuid, seen, lease).await? {
                continue;
            }
            taken += 1;
            let ra = self.clone();
            tokio::spawn(async move {
                if let Err(e) = ra.step(&uuid, lease, true).await {
                    tracing::info!(certificate = %uuid, error = %e, "background RA operation did not succeed");
                }
            });
        }
        Ok(taken)
    }

    /// One step of record `uuid` held under `lease`, by its state.
    async fn step(
        &self,
        uuid: &str,
        lease: i64,
        background: bool,
    ) -> Result<Outcome, OperationError> {
        let record = self
            .store
            .ra_certificate(uuid)
            .await?
            .ok_or_else(|| OperationError::not_found(format!("no certificate {uuid}")))?;
        match record.state.as_str() {
            state::PENDING_ISSUE => self.issue_step(record, lease, background).await,
            state::PENDING_REVOKE => self.revoke_step(record, lease, background).await,
            _ => {
                // Nothing to do: the lease is dropped.
                self.reschedule(&record, lease, None).await?;
                self.outcome(&record).await
            }
        }
    }

    /// What the client is told of a record: its leaf once issued.
    pub async fn outcome(&self, record: &RaCertificateRow) -> Result<Outcome, OperationError> {
        let certificate = match &record.serial {
            Some(serial) => self.store.certificate(serial).await?.and_then(|c| c.der),
            None => None,
        };
        Ok(Outcome {
            uuid: record.uuid.clone(),
            certificate,
        })
    }

    async fn issue_step(
        &self,
        record: RaCertificateRow,
        lease: i64,
        background: bool,
    ) -> Result<Outcome, OperationError> {
        let uuid = record.uuid.clone();
        let Some(ca) = self.issuer_named(&record.issuer).await else {
            let failure = OperationError::AuthorityUnreachable(format!(
                "the authority {} is no longer configured",
                record.issuer
            ));
            return self.fail(&record, lease, failure, state::FAILED).await;
        };
        let (csr, _) = read_csr(&record.csr)?;
        let profile: IssuanceProfile = serde_json::from_str(&record.profile).map_err(|_| {
            RaError::Internal(format!(
                "certificate {uuid}'s issuance profile is unreadable"
            ))
        })?;
        let result = match &record.upstream_ref {
            Some(reference) => ca.collect_deferred(reference, &csr, &profile).await,
            None => ca.issue_deferred(&csr, &profile).await,
        };
        match result {
            Ok(Deferred::Issued(issued)) => {
                let done = self
                    .change_audited(RaChange {
                        uuid: uuid.clone(),
                        from: vec![state::PENDING_ISSUE],
                        lease: Some(lease),
                        set: vec![
                            ("state", state::ISSUED.into()),
                            ("serial", Arg::OptText(Some(issued.serial.clone()))),
                            ("operation_status", operation_status::SUCCEEDED.into()),
                            ("operation_error", Arg::OptText(None)),
                            ("upstream_ref", Arg::OptText(None)),
                            ("next_attempt_at", Arg::OptInt(None)),
                        ],
                        event: event(
                            &uuid,
                            "issued",
                            "succeeded",
                            &format!("issued by {}, serial {}", record.issuer, issued.serial),
                            BACKGROUND,
                        ),
                    })
                    .await?;
                if !done {
                    // Another worker took the record (a lease that ran out): it is theirs.
                    tracing::warn!(certificate = %uuid, serial = %issued.serial, "an RA record moved on while its certificate was issued");
                }
                tracing::info!(certificate = %uuid, serial = %issued.serial, "RA certificate issued");
                Ok(Outcome {
                    uuid,
                    certificate: Some(issued.der),
                })
            }
            Ok(Deferred::Pending {
                upstream_ref,
                retry_after,
            }) => {
                let wait = i64::try_from(retry_after.as_secs())
                    .unwrap_or(POLL_INTERVAL_SECS)
                    .max(POLL_INTERVAL_SECS);
                let first = record.upstream_ref.is_none();
                let next = now() + wait;
                let set = vec![
                    ("upstream_ref", Arg::OptText(Some(upstream_ref))),
                    ("next_attempt_at", Arg::OptInt(Some(next))),
                ];
                if first {
                    self.change_audited(RaChange {
                        uuid: uuid.clone(),
                        from: vec![state::PENDING_ISSUE],
                        lease: Some(lease),
                        set,
                        event: event(
                            &uuid,
                            "pending",
                            "running",
                            "the authority has not issued yet; pkid collects the certificate",
                            BACKGROUND,
                        ),
                    })
                    .await?;
                } else {
                    self.reschedule(&record, lease, Some(next)).await?;
                }
                Ok(Outcome {
                    uuid,
                    certificate: None,
                })
            }
            Err(e) => {
                let failure = issue_failure(e);
                self.fail_or_retry(&record, lease, failure, background, state::FAILED)
                    .await
            }
        }
    }

    async fn revoke_step(
        &self,
        record: RaCertificateRow,
        lease: i64,
        background: bool,
    ) -> Result<Outcome, OperationError> {
        let uuid = record.uuid.clone();
        let serial = record.serial.clone().unwrap_or_default();
        let reason = record
            .revoke_reason
            .and_then(|c| u8::try_from(c).ok())
            .and_then(pkid_backends::RevocationReason::from_code)
            .unwrap_or(pkid_backends::RevocationReason::Unspecified);
        match self.revocation.revoke(&serial, reason).await {
            Ok(()) | Err(RevokeError::AlreadyRevoked(_)) => {
                self.change_audited(RaChange {
                    uuid: uuid.clone(),
                    from: vec![state::PENDING_REVOKE],
                    lease: Some(lease),
                    set: vec![
                        ("state", state::REVOKED.into()),
                        ("operation_status", operation_status::SUCCEEDED.into()),
                        ("next_attempt_at", Arg::OptInt(None)),
                    ],
                    event: event(
                        &uuid,
                        "revoked",
                        "succeeded",
                        &format!("serial {serial} revoked, reason {}", reason.code()),
                        BACKGROUND,
                    ),
                })
                .await?;
                tracing::info!(certificate = %uuid, serial = %serial, "RA certificate revoked");
                if record.destroy_key {
                    if let Some(key) = &record.key_uuid {
                        self.destroy_managed_key_after_revocation(&uuid, key).await;
                    }
                }
                Ok(Outcome {
                    uuid,
                    certificate: None,
                })
            }
            Err(RevokeError::Backend(e)) => {
                let failure = backend_failure(e);
                self.fail_or_retry(&record, lease, failure, background, state::ISSUED)
                    .await
            }
            Err(RevokeError::Store(e)) => Err(e.into()),
            Err(other) => {
                let failure = OperationError::AuthorityRefused(other.to_string());
                self.fail(&record, lease, failure, state::ISSUED).await
            }
        }
    }

    /// In the background, an authority that cannot be reached is tried again later (up to
    /// [`MAX_UNREACHABLE_ATTEMPTS`]); otherwise the operation fails, the record going to
    /// `to` (`failed` for an issuance; back to `issued` for a revocation).
    async fn fail_or_retry(
        &self,
        record: &RaCertificateRow,
        lease: i64,
        failure: OperationError,
        background: bool,
        to: &'static str,
    ) -> Result<Outcome, OperationError> {
        let retry = background
            && matches!(failure, OperationError::AuthorityUnreachable(_))
            && record.attempts < MAX_UNREACHABLE_ATTEMPTS
            && record.upstream_ref.is_some();
        if retry {
            let next = now() + (POLL_INTERVAL_SECS * (record.attempts + 1)).min(60);
            self.reschedule(record, lease, Some(next)).await?;
            return Err(failure);
        }
        self.fail(record, lease, failure, to).await
    }

    /// The operation failed: the record goes to `to`, with the reason and an event.
    async fn fail(
        &self,
        record: &RaCertificateRow,
        lease: i64,
        failure: OperationError,
        to: &'static str,
    ) -> Result<Outcome, OperationError> {
        if let OperationError::Ra(RaError::Store(_)) = failure {
            // The database failed: the lease runs out and the step is taken up again.
            return Err(failure);
        }
        let message = failure.to_string();
        self.change_audited(RaChange {
            uuid: record.uuid.clone(),
            from: vec![state::PENDING_ISSUE, state::PENDING_REVOKE],
            lease: Some(lease),
            set: vec![
                ("state", to.into()),
                ("operation_status", operation_status::FAILED.into()),
                ("operation_error", Arg::OptText(Some(message.clone()))),
                ("next_attempt_at", Arg::OptInt(None)),
            ],
            event: event(&record.uuid, "failed", "failed", &message, BACKGROUND),
        })
        .await?;
        tracing::warn!(certificate = %record.uuid, operation = %record.operation, error = %message, "RA operation failed");
        Err(failure)
    }

    /// Moves the record's next attempt to `next` (`None`: no more background work), if the
    /// lease is still held.
    async fn reschedule(
        &self,
        record: &RaCertificateRow,
        lease: i64,
        next: Option<i64>,
    ) -> Result<(), OperationError> {
        self.store
            .reschedule_ra_certificate(&record.uuid, lease, next)
            .await?;
        Ok(())
    }
}

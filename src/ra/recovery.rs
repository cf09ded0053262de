//! What a stop leaves behind (a crash, a kill -9, a stalled backend), put right from what the
//! store recorded (Boulder's issuance cycle, `docs/issuance-cycle.md`): orders left
//! `processing` are finished with the certificate stored before the stop, issued again with a
//! fresh serial (if its account and authorizations still allow it), or failed; challenges left
//! `processing` are pending again.

use super::orders::check_issuable;
use super::{AuditEvent, Directory, Ra, RaError};
use crate::audit::SYSTEM;
use crate::ca::{IssuanceProfile, IssueError};
use crate::pki::csr::check_csr;
use crate::store::{now, StoreError};

impl Ra {
    /// Orders of `directory` left `processing` since before `cutoff`; returns how many this
    /// process took over (another replica may take some).
    pub async fn recover_stale_orders(
        &self,
        directory: &Directory,
        cutoff: i64,
    ) -> Result<usize, RaError> {
        let stale = self
            .store
            .stale_processing_orders(&directory.name, cutoff)
            .await?;
        let mut recovered = 0;
        for order in stale {
            let Some(since) = order.processing_since else {
                continue;
            };
            if !self
                .store
                .claim_stale_order(&order.id, since, now())
                .await?
            {
                continue; // another replica took it
            }
            recovered += 1;
            if let Some(cert) = self.store.certificate_of_order(&order.id).await? {
                self.store.mark_order_valid(&order.id, &cert.serial).await?;
                tracing::info!(order = %order.id, serial = %cert.serial, "recovered: certificate was stored before the stop");
                self.audit_recovery(&order.id, Ok(&cert.serial), "stored before the stop")
                    .await;
                continue;
            }
            let abandoned = self.store.abandon_tbs_of_order(&order.id).await?;
            // Issued again only for what is still true now: the account valid, every
            // authorization valid and unexpired.
            let account = self.store.account(&order.account_id).await?;
            let authzs = self.store.authzs_of_order(&order.id).await?;
            let still = match &account {
                Some(account) => check_issuable(account, &authzs),
                None => Err(RaError::Unauthorized("the account is gone".into())),
            };
            if let Err(refused) = still {
                tracing::info!(order = %order.id, reason = %refused, "recovery: the order is no longer issuable");
                self.fail_order(
                    &order.id,
                    "issuance was interrupted and the order is no longer issuable",
                )
                .await?;
                self.audit_recovery(&order.id, Err(&refused.to_string()), "no longer issuable")
                    .await;
                continue;
            }
            let csr = self
                .store
                .order_csr(&order.id)
                .await?
                .and_then(|der| check_csr(&der).ok());
            let profile: Option<IssuanceProfile> = order
                .profile
                .as_deref()
                .and_then(|p| serde_json::from_str(p).ok());
            let (Some(csr), Some(profile)) = (csr, profile) else {
                self.fail_order(&order.id, "issuance was interrupted and cannot be resumed")
                    .await?;
                self.audit_recovery(&order.id, Err("the CSR or profile is unreadable"), "failed")
                    .await;
                continue;
            };
            match directory
                .ca
                .issue(&csr, &profile, Some(&order.id), Some(&order.account_id))
                .await
            {
                Ok(issued) => {
                    tracing::info!(order = %order.id, serial = %issued.serial, abandoned, "recovered: issued again with a fresh serial");
                    self.audit_recovery(&order.id, Ok(&issued.serial), "issued again")
                        .await;
                }
                Err(IssueError::Store(StoreError::OrderSettled(_))) => {
                    tracing::info!(order = %order.id, "recovery: the interrupted issuance settled the order first");
                }
                Err(e) => {
                    tracing::error!(order = %order.id, error = %e, "recovery issuance failed");
                    self.fail_order(&order.id, "the certificate could not be issued")
                        .await?;
                    self.audit_recovery(&order.id, Err(&e.to_string()), "failed")
                        .await;
                }
            }
        }
        Ok(recovered)
    }

    /// Records what recovery made of order `order_id`: the certificate's serial, or why the
    /// order failed.
    async fn audit_recovery(&self, order_id: &str, outcome: Result<&str, &str>, how: &str) {
        let detail = serde_json::json!({ "order": order_id, "recovery": how });
        let event = match outcome {
            Ok(serial) => AuditEvent::success(
                SYSTEM,
                "certificate.issued",
                format!("certificate:{serial}"),
            ),
            Err(reason) => AuditEvent::failure(
                SYSTEM,
                "certificate.issued",
                format!("order:{order_id}"),
                reason,
            ),
        };
        self.audit(event.with(detail)).await;
    }

    /// Challenges whose validation started before `started_before` and never finished (its
    /// process stopped) are pending again; returns how many.
    pub async fn requeue_stuck_challenges(&self, started_before: i64) -> Result<u64, RaError> {
        Ok(self.store.requeue_stuck_challenges(started_before).await?)
    }
}

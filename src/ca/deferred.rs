//! The issuance cycle for a caller that does not wait on a slow upstream: an upstream CA's
//! `Pending` answer is handed back with its reference (for the caller to keep and collect
//! later, from any replica, after a restart too) instead of being polled here. Everything else
//! is the cycle of `issuance`: the journal before the signature, the leaf checked against the
//! request and the profile (`check_leaf`, `check_profile`), one write to store it.

use std::time::Duration;

use pkid_backends::Issuance;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::issuance::{check_leaf, LeafRequest};
use super::{Ca, IssuanceProfile, IssueError, IssuedCert};
use crate::pki::csr::CheckedCsr;
use crate::store::PendingCertificate;

/// What an issuance that may be deferred came to.
pub enum Deferred {
    Issued(IssuedCert),
    /// The upstream has not issued yet: collect with `upstream_ref` after `retry_after`.
    Pending {
        upstream_ref: String,
        retry_after: Duration,
    },
}

impl Ca {
    /// [`Ca::issue`] for a request of no order, answering [`Deferred::Pending`] where an upstream
    /// CA does.
    pub async fn issue_deferred(
        &self,
        csr: &CheckedCsr,
        profile: &IssuanceProfile,
    ) -> Result<Deferred, IssueError> {
        let LeafRequest {
            request,
            not_before,
            not_after,
            crl_shard,
        } = self.leaf_request(csr, profile);
        let serial_hex = request.serial.to_hex();
        let journal = self.leaf_journal(None, None, (not_before, not_after), crl_shard, None);
        let outcome = match self.backend.issue(request, &journal).await {
            Ok(outcome) => outcome,
            Err(e) => {
                self.store.abandon_tbs(&serial_hex).await?;
                return Err(e.into());
            }
        };
        match outcome {
            Issuance::Pending {
                upstream_ref,
                retry_after,
            } => {
                // An upstream journals nothing; a local backend never defers.
                self.store.abandon_tbs(&serial_hex).await?;
                Ok(Deferred::Pending {
                    upstream_ref,
                    retry_after,
                })
            }
            Issuance::Issued { chain } => {
                let checked = chain
                    .first()
                    .ok_or_else(|| {
                        IssueError::Mismatch("the backend returned an empty chain".into())
                    })
                    .and_then(|leaf| check_leaf(leaf, csr, profile));
                if let Err(e) = checked {
                    self.store.abandon_tbs(&serial_hex).await?;
                    return Err(e);
                }
                let issued = self
                    .store_issued(&serial_hex, &chain, &journal.pending)
                    .await?;
                Ok(Deferred::Issued(issued))
            }
        }
    }

    /// Asks the backend once for what [`Ca::issue_deferred`] left pending; an issued leaf goes
    /// through the same checks and is stored.
    pub async fn collect_deferred(
        &self,
        upstream_ref: &str,
        csr: &CheckedCsr,
        profile: &IssuanceProfile,
    ) -> Result<Deferred, IssueError> {
        match self.backend.poll(upstream_ref).await? {
            Issuance::Pending {
                upstream_ref,
                retry_after,
            } => Ok(Deferred::Pending {
                upstream_ref,
                retry_after,
            }),
            Issuance::Issued { chain } => {
                let leaf = chain.first().ok_or_else(|| {
                    IssueError::Mismatch("the backend returned an empty chain".into())
                })?;
                check_leaf(leaf, csr, profile)?;
                let (_, parsed) = X509Certificate::from_der(leaf)
                    .map_err(|e| IssueError::Mismatch(format!("unparseable certificate: {e}")))?;
                let serial_hex = hex::encode(parsed.raw_serial());
                let pending = PendingCertificate {
                    issuer: &self.name,
                    order_id: None,
                    account_id: None,
                    not_before: parsed.validity().not_before.timestamp(),
                    not_after: parsed.validity().not_after.timestamp(),
                    crl_shard: None,
                };
                Ok(Deferred::Issued(
                    self.store_issued(&serial_hex, &chain, &pending).await?,
                ))
            }
        }
    }
}

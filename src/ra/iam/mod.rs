//! IAM's certificate linking requests and RFC 3820 proxy certificates, as the RA runs them
//! (every write of the IAM surface, `api::iam`, goes through [`Iam`]):
//!
//! - [`anchors`]: the trust anchors a linked certificate's issuer must be one of — a configured
//!   folder (`iam.trust_anchors_dir`, IAM's `IAM_X509_TRUST_ANCHORS_DIR`) and pkid's own CAs.
//! - `links.rs`: a link request's life (`PENDING` → `APPROVED` | `REJECTED`), its refusals,
//!   and the approval that links the certificate to the account (the link `pkid user create
//!   --certificate` writes, so the certificate authenticates its user on every surface).
//! - `proxies.rs`: a user's uploaded proxy (its key sealed at rest) and the proxies generated
//!   from it.
//!
//! Refusals are [`IamError`], which the IAM surface maps once to its error shapes. Every
//! change is recorded in the audit trail, once, by the function that makes it, with the
//! principal the surface hands in (`by`): `cert_link_request.created|approved|rejected|deleted`
//! and `proxy.stored|generated` — never a key or a proxy file.

pub mod anchors;
mod links;
mod proxies;

use std::sync::Arc;

use pkid_backends::KeyEncryptionKey;

use crate::audit::{Audit, Event};
use crate::store::{Store, StoreError};

pub use anchors::{load_anchor_folder, CaCertificates, TrustAnchors};
pub use links::{Actor, NewLinkRequest};
pub use proxies::{ProxyGeneration, MIN_PROXY_LIFETIME_SECS};

/// What the operator sets (`[iam]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IamSettings {
    /// The longest proxy generated (IAM's `max-ac-lifetime-in-seconds`).
    pub proxy_max_lifetime_secs: i64,
}

/// Why an IAM request is refused or failed; each maps to one of IAM's answers.
#[derive(Debug, thiserror::Error)]
pub enum IamError {
    /// 400: the request breaks a rule.
    #[error("{0}")]
    Invalid(String),
    /// 400: a link request cannot go from `from` to `to`.
    #[error("Invalid certLink request transition: {from} -> {to}")]
    Transition { from: String, to: String },
    /// 403: not the caller's.
    #[error("{0}")]
    Forbidden(String),
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 412: no (valid) stored proxy to generate from.
    #[error("{0}")]
    NoProxy(String),
    /// 500: pkid failed; the detail is safe to show.
    #[error("{0}")]
    Internal(String),
    /// 503: the database failed (logged where it is mapped, never shown).
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// The RA's IAM side.
pub struct Iam {
    store: Store,
    /// Seals and opens uploaded proxy keys.
    kek: Arc<KeyEncryptionKey>,
    anchors: Arc<TrustAnchors>,
    settings: IamSettings,
    audit: Audit,
}

impl Iam {
    pub fn new(
        store: Store,
        kek: Arc<KeyEncryptionKey>,
        anchors: Arc<TrustAnchors>,
        settings: IamSettings,
    ) -> Iam {
        Iam {
            audit: Audit::new(store.clone()),
            store,
            kek,
            anchors,
            settings,
        }
    }

    /// The IAM side recording into `audit` (the process's one trail handle) instead of a
    /// handle of its own.
    pub fn with_audit(mut self, audit: Audit) -> Iam {
        self.audit = audit;
        self
    }

    /// Record a change made (after it is made).
    async fn audit(&self, event: Event) {
        self.audit.record(event).await;
    }

    /// The trust anchors, for what the surface shows (`GET /iam/api/trusts`).
    pub fn anchors(&self) -> &TrustAnchors {
        &self.anchors
    }

    pub fn settings(&self) -> IamSettings {
        self.settings
    }
}

#[cfg(test)]
mod tests;

/// Milliseconds since the epoch: IAM's times.
pub fn now_ms() -> i64 {
    let nanos = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
    i64::try_from(nanos / 1_000_000).unwrap_or(i64::MAX)
}

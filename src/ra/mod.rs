//! The registration authority: every write of every surface goes through [`Ra`], which decides
//! what may be done (policy: identifiers, external account binding, rate limits, profiles) and
//! runs the lifecycles (accounts, orders, authorizations and challenges, revocation, recovery
//! after a stop). Surfaces parse their wire formats, authenticate the caller, read what they
//! show, and call the RA for anything that changes state; the RA answers in [`RaError`], which
//! each surface maps once to its own error shape.
//!
//! The order lifecycle is RFC 8555's (§7.1.6): `pending` → `ready` (every authorization valid)
//! → `processing` (claimed by one finalize) → `valid` (certificate stored) or `invalid`; the
//! statuses are the store's ([`crate::store::OrderStatus`] …), a client's view of them derived
//! on the rows (`OrderRow::status_at`: `ready` and an authorization's `expired` are never stored).
//!
//! - [`accounts`]: registration (with EAB, [`binding`]), contacts, deactivation, key roll-over
//! - [`orders`]: newOrder (order and authorization reuse, RFC 9773 replacement), finalize
//! - [`authorizations`]: pre-authorization, deactivation, challenge validation through `va`
//! - [`revoke`]: who may revoke, with which reason
//! - `cas`: CAs made at run time (the issuer registry's stored part); `cert_requests`:
//!   certificate requests signed by them (Notary); `users`: Notary's accounts over identity's
//!   users
//! - [`recovery`]: orders and challenges left behind by a stop
//! - [`policy`], [`binding`]: the rules; [`ids`]: names of new objects
//! - client operations (CZERTAINLY-style, `docs/czertainly.md`): [`authorities`] (issuers with
//!   stable UUIDs), [`profiles`] (RA profiles and their policy), [`attributes`] (their
//!   definitions and checks), [`ra_certificates`] (certificates as RA records: issue, renew,
//!   rekey, revoke, approval, background completion), [`end_entities`] (the v1 API's end
//!   entities)
//! - [`iam`]: IAM's certificate linking requests, trust anchors and RFC 3820 proxies
//!
//! Every change the RA makes is recorded in the audit trail ([`Ra::audit`], which the surfaces
//! call too for the changes they make through it).

mod accounts;
pub mod attributes;
pub mod authorities;
mod authorizations;
pub mod binding;
mod cas;
mod cert_requests;
pub mod end_entities;
mod error;
pub mod iam;
pub mod ids;
pub mod managed_keys;
mod orders;
pub mod policy;
pub mod profiles;
pub mod ra_certificates;
mod recovery;
mod revoke;
mod users;

use std::collections::BTreeMap;
use std::sync::Arc;

use pkid_backends::KeyEncryptionKey;

use crate::audit::Audit;
use crate::ca::{Ca, IssuanceProfile};
use crate::revocation::Revocation;
use crate::store::{Reads, Store};
use crate::va::Validator;

pub use crate::audit::{Event as AuditEvent, Outcome as AuditOutcome};
pub use accounts::{check_contacts, AccountUpdate, NewAccount, Registered};
pub use authorities::{new_uuid, Authority, OperationError};
pub use authorizations::{authz_ident, ValidationStarted};
pub use binding::{mint_eab_key, BindingPolicy, BindingProof, EabPolicy, MintError};
pub use cas::NewCa;
pub use cert_requests::{chain_not_after, requested_names};
pub use error::{problem_document, RaError};
pub use orders::{identifiers_json, CreatedOrder, NewOrder};
pub use policy::{IdentifierPolicy, RateLimits, TestMode};
pub use revoke::Revoker;

/// The RA's own settings, the same for every directory.
pub struct RaSettings {
    pub order_lifetime_secs: i64,
    /// How long a valid authorization is reused for new orders of its account.
    pub authz_reuse_secs: i64,
    /// Terms a new account must agree to; `None`: none.
    pub terms_of_service: Option<String>,
    pub identifier_policy: IdentifierPolicy,
    pub rate_limits: RateLimits,
    pub test_mode: TestMode,
    /// Issuer domain names this CA answers to in CAA `issue`/`issuewild` records.
    pub caa_identities: Vec<String>,
    /// CAA is checked again at finalize when the validation is older than this.
    pub caa_recheck_secs: i64,
}

/// What one ACME directory issues under: its CA, the profiles it offers, its EAB rule.
pub struct Directory {
    /// `default`, or the name of `[acme.directories.NAME]` (EAB keys are bound to one).
    pub name: String,
    pub ca: Arc<Ca>,
    /// Profiles by name (the Let's Encrypt `profiles` extension).
    pub profiles: BTreeMap<String, IssuanceProfile>,
    pub default_profile: String,
    pub eab_policy: EabPolicy,
    /// newAuthz pre-authorization (RFC 8555 §7.4.1).
    pub pre_authorization: bool,
}

pub struct Ra {
    store: Store,
    validator: Arc<Validator>,
    revocation: Arc<Revocation>,
    /// Unseals EAB HMAC keys.
    kek: Arc<KeyEncryptionKey>,
    settings: RaSettings,
    audit: Audit,
}

impl Ra {
    pub fn new(
        store: Store,
        validator: Arc<Validator>,
        revocation: Arc<Revocation>,
        kek: Arc<KeyEncryptionKey>,
        settings: RaSettings,
    ) -> Ra {
        Ra {
            audit: Audit::new(store.clone()),
            store,
            validator,
            revocation,
            kek,
            settings,
        }
    }

    /// The RA recording into `audit` (the process's one trail handle) instead of a handle of
    /// its own.
    pub fn with_audit(mut self, audit: Audit) -> Ra {
        self.audit = audit;
        self
    }

    /// Record `event` in the audit trail; returns once it is durable. Every surface calls it
    /// after each change it makes (the RA records its own): `AuditEvent::success(principal,
    /// action, resource)`, or `::failure(…, reason)`, with `.with(json!({…}))` for detail.
    pub async fn audit(&self, event: AuditEvent) {
        self.audit.record(event).await;
    }

    pub fn settings(&self) -> &RaSettings {
        &self.settings
    }

    /// The store's read side, for what surfaces show: they write only through the RA.
    pub fn reads(&self) -> Reads {
        self.store.reads()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    //! What in-process tests build an RA with.

    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use super::{Ra, RaSettings};
    use crate::revocation::Revocation;
    use crate::store::Store;
    use crate::va::Validator;

    /// An RA over `store` and `revocation` whose validator reaches nothing.
    pub(crate) fn ra_for_tests(
        store: &Store,
        revocation: Arc<Revocation>,
        kek: Arc<pkid_backends::KeyEncryptionKey>,
    ) -> Ra {
        let validator = Arc::new(
            Validator::new(crate::va::ValidatorSettings {
                http01_port: 80,
                tls_alpn01_port: 443,
                dns_resolver: "127.0.0.1:9",
                timeout: std::time::Duration::from_secs(1),
                addresses: crate::va::AddressPolicy::default(),
                redirect_names: Arc::new(|_| true),
            })
            .unwrap(),
        );
        Ra::new(
            store.clone(),
            validator,
            revocation,
            kek,
            RaSettings {
                order_lifetime_secs: 3600,
                authz_reuse_secs: 3600,
                terms_of_service: None,
                identifier_policy: Default::default(),
                rate_limits: Default::default(),
                test_mode: Default::default(),
                caa_identities: vec!["pkid.invalid".into()],
                caa_recheck_secs: 28800,
            },
        )
    }
}

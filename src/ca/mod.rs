//! Certificate authority: issuers ([`issuer`]: serial → CRL shard → URLs, alternate chains), the
//! live set of them ([`registry`]: configured backends and CAs made at run time), and the
//! issuance cycle ([`issuance`]; from templates, [`templates`]: leaves that copy a CSR, CA
//! certificates; [`deferred`] for a caller that collects a slow upstream's certificate later),
//! driven by the RA, signing through a backend.
//!
//! The cycle (Boulder's `docs/ISSUANCE-CYCLE.md`, each step crash-safe):
//! 1. pick a random serial (≥ 64 bits of entropy, positive) and build the profile's certificate;
//! 2. the backend hands the to-be-signed bytes to the journal, which stores serial + TBS
//!    (`certificates.status = 'tbs'`) **before** any signature exists;
//! 3. the backend signs and checks the signed TBS equals the stored one;
//! 4. we check the leaf carries the CSR's key and exactly the requested names;
//! 5. one transaction stores the certificate and marks the order `valid`.
//!
//! A crash between 2 and 5 leaves a `tbs` row: the serial is never reused, and start-up
//! recovery re-runs the order with a fresh serial (see `Ra::recover_stale_orders`).

mod deferred;
mod issuance;
mod issuer;
pub mod registry;
mod templates;

use pkid_backends::BackendError;
use serde::{Deserialize, Serialize};

pub use deferred::Deferred;
pub use issuance::certificate_idents;
pub use issuer::{crl_shard_of, Ca};

/// What an order is issued under, snapshotted into the order at finalize.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IssuanceProfile {
    pub name: String,
    pub validity_secs: i64,
    pub server_auth: bool,
    pub client_auth: bool,
    /// Shown in the ACME directory's `meta.profiles`.
    #[serde(default)]
    pub description: String,
    /// Identifier types an order under this profile may name (`dns`, `ip`); empty: any.
    #[serde(default)]
    pub identifier_types: Vec<String>,
    /// Certificate policy OIDs written into the certificate (dotted form).
    #[serde(default)]
    pub certificate_policies: Vec<String>,
}

impl IssuanceProfile {
    /// Notary's profile for a signed certificate request: the CSR's subject and SANs copied,
    /// valid a year, TLS server and client use.
    pub fn copied_request(name: &str) -> IssuanceProfile {
        IssuanceProfile {
            name: name.into(),
            validity_secs: 365 * 86400,
            server_auth: true,
            client_auth: true,
            description: "a CSR's subject and SANs, TLS server and client, one year".into(),
            identifier_types: Vec::new(),
            certificate_policies: Vec::new(),
        }
    }

    /// A TLS server profile for any identifier type.
    pub fn tls_server(name: &str, validity_secs: i64) -> IssuanceProfile {
        IssuanceProfile {
            name: name.into(),
            validity_secs: validity_secs.max(60),
            server_auth: true,
            client_auth: false,
            description: String::new(),
            identifier_types: Vec::new(),
            certificate_policies: Vec::new(),
        }
    }

    pub fn allows(&self, identifier_type: &str) -> bool {
        self.identifier_types.is_empty()
            || self.identifier_types.iter().any(|t| t == identifier_type)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error("backend: {0}")]
    Backend(#[from] BackendError),
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("the issued certificate does not match the request: {0}")]
    Mismatch(String),
    #[error("the backend has not issued yet")]
    Pending,
    /// Another finalize claimed the order first: nothing was recorded or signed.
    #[error("the order is already being finalized")]
    ClaimLost,
}

pub struct IssuedCert {
    pub serial: String,
    pub der: Vec<u8>,
    pub chain_pem: String,
}

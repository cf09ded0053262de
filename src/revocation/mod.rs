//! Revocation publishing: CRLs (RFC 5280 §5) and an OCSP responder (RFC 6960) for every local
//! issuer, both signed through the issuer's backend.
//!
//! Every surface records revocations in one place (`certificates.revoked_at`, with the reason and
//! an optional invalidity date); this module turns that into signed documents:
//!
//! - **CRLs** are kept in the database so every replica serves the same bytes. An issuer has a
//!   complete CRL (`/crl/NAME.crl`) and, with `crl_shards > 1`, Boulder-style shards
//!   (`/crl/NAME/SHARD.crl`): a certificate's shard is fixed at issuance from its serial and
//!   written into its CRL distribution point, and each shard's CRL carries a critical
//!   issuingDistributionPoint naming that URL (§5.2.5). A stored CRL older than the newest
//!   revocation in its scope, or past two thirds of its life, is regenerated — by one replica at
//!   a time: a lease row taken with a conditional upsert ([`Store::try_lease`]) guards each
//!   issuer's generation across replicas sharing a database, an in-process mutex within one.
//!   With `ca.delta_crls`, a delta CRL (§5.2.4, `/crl/NAME/delta.crl`) carries revocations
//!   since the complete CRL, which then follows its schedule only. Freshness is decided on the
//!   stored CRL's number and times; its bytes are read once per change and shared.
//! - **OCSP** answers GET and POST, SHA-1 and SHA-256 CertIDs, one per request, good / revoked
//!   (time, reason and invalidity date); a serial the issuer never issued is `unauthorized`
//!   (unsigned), and nonces (RFC 8954) are ignored, so that no request can make pkid sign
//!   (`ocsp`). Responses are signed by the
//!   issuer's backend, or — `ca.ocsp_responder = "delegated"` — by a delegated responder
//!   (§4.2.2.2): a short-lived certificate with id-kp-OCSPSigning and id-pkix-ocsp-nocheck
//!   issued by the CA through its backend, whose software key is sealed at rest in the database
//!   and which is renewed at two thirds of its life. Responses are cached per (issuer, CertID,
//!   status) and re-signed ahead of their half-life by the refresh task.
//!
//! Files: `revoke` (recording a revocation), `crl` (CRL scopes, leases, the served-CRL cache,
//! generation and the refresh task), `ocsp` (answering OCSP requests, the response cache),
//! `responder` (delegated OCSP responders: issued, sealed, renewed). A certificate's CRL shard is
//! the issuer's to decide ([`crate::ca::crl_shard_of`]); the DER of OCSP requests is read in the
//! backends crate, beside the DER writer ([`pkid_backends::local::ocsp_request`]).

mod crl;
mod ocsp;
mod responder;
mod revoke;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use pkid_backends::sealed::KeyEncryptionKey;
use pkid_backends::{BackendError, RevocationReason};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::ca::registry::Issuers;
use crate::ca::Ca;
use crate::store::{CrlRow, Store, StoreError};

pub use crl::CrlScope;
use ocsp::OcspCache;
use responder::{Delegation, Responder};

/// Timing of revocation documents.
#[derive(Debug, Clone)]
pub struct RevocationSettings {
    /// `nextUpdate - thisUpdate` of CRLs, seconds.
    pub crl_lifetime_secs: i64,
    /// Validity of OCSP responses, seconds.
    pub ocsp_lifetime_secs: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum RevocationError {
    #[error("no local issuer named {0:?}")]
    UnknownIssuer(String),
    #[error("issuer {0:?} has no CRL shard {1}")]
    UnknownShard(String, i64),
    #[error("issuer {0:?} publishes no delta CRLs")]
    NoDeltaCrls(String),
    #[error("another replica is generating the CRL of {0:?} and no valid CRL is stored yet")]
    Busy(String),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("backend: {0}")]
    Backend(#[from] BackendError),
}

/// Why a revocation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum RevokeError {
    #[error("no issued certificate has serial {0}")]
    NotFound(String),
    #[error("certificate {0} is revoked already")]
    AlreadyRevoked(String),
    #[error("the invalidity date is in the future")]
    InvalidityInFuture,
    /// removeFromCRL (8) only undoes a certificateHold in a delta CRL, which pkid never
    /// issues: as a revocation reason it would make relying parties treat the certificate as
    /// not revoked.
    #[error("reason {0} cannot be given to a revocation")]
    ReasonNotAllowed(u8),
    #[error("the issuer's backend refused or failed: {0}")]
    Backend(pkid_backends::BackendError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// What OCSP needs to recognise an issuer in a CertID, and the issuer's revocation state.
pub(super) struct IssuerState {
    ca: Arc<Ca>,
    name_sha1: Vec<u8>,
    key_sha1: Vec<u8>,
    name_sha256: Vec<u8>,
    key_sha256: Vec<u8>,
    /// One CRL generation per issuer at a time in this process (the lease covers replicas).
    crl_lock: tokio::sync::Mutex<()>,
    /// `Some` when this issuer's OCSP responses are signed by a delegated responder.
    delegated: Option<Delegation>,
    responder: Mutex<Option<Arc<Responder>>>,
    /// One responder issuance at a time in this process.
    responder_lock: tokio::sync::Mutex<()>,
}

impl IssuerState {
    /// The state of a local issuer; `None` when its certificate is not known or unreadable.
    fn new(ca: Arc<Ca>, delegated: Option<Delegation>) -> Option<IssuerState> {
        let chain = ca.backend.ca_chain();
        let (_, cert) = X509Certificate::from_der(chain.first()?).ok()?;
        let name = cert.subject().as_raw();
        let key = &cert.public_key().subject_public_key.data;
        Some(IssuerState {
            name_sha1: sha1(name),
            key_sha1: sha1(key),
            name_sha256: sha256(name),
            key_sha256: sha256(key),
            ca,
            crl_lock: tokio::sync::Mutex::new(()),
            delegated,
            responder: Mutex::new(None),
            responder_lock: tokio::sync::Mutex::new(()),
        })
    }
}

/// How long a replica may hold an issuer's CRL lease before others may take it over.
const CRL_LEASE_SECS: i64 = 120;

pub struct Revocation {
    store: Store,
    /// Every issuer, local or upstream, live (`ca::registry`): revocations go to its backend;
    /// the local ones publish CRLs and OCSP.
    issuers: Arc<Issuers>,
    /// The revocation state of each local issuer by name, made when first needed and made
    /// again when the registry hands out another issuer under that name (a CA that changed).
    states: Mutex<HashMap<String, Arc<IssuerState>>>,
    /// Issuers whose OCSP responses a delegated responder signs, by name.
    delegated: HashMap<String, Delegation>,
    /// Woken by each revocation: a debounced CRL regeneration follows.
    pub revoked: tokio::sync::Notify,
    settings: RevocationSettings,
    cache: Mutex<OcspCache>,
    /// Concurrent OCSP requests for one certificate wait here for one signature.
    signing_locks: Vec<tokio::sync::Mutex<()>>,
    /// This process's name in leases.
    holder: String,
    /// The CRL of each (issuer, scope) served last, so a large CRL is read from the database
    /// once per change rather than once per request, and shared by concurrent requests.
    served_crls: Mutex<HashMap<(String, i64), Arc<CrlRow>>>,
    /// Publish delta CRLs of each complete CRL; the complete CRL then follows its schedule only.
    delta_crls: bool,
}

fn sha1(b: &[u8]) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, b)
        .as_ref()
        .to_vec()
}

fn sha256(b: &[u8]) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b)
        .as_ref()
        .to_vec()
}

fn odt(unix: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(unix).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

/// The reason a stored revocation shows in CRLs and OCSP. removeFromCRL, which an earlier
/// version let through, is shown as no reason: the certificate stays revoked.
fn reason_of(code: Option<i64>) -> Option<RevocationReason> {
    code.and_then(|c| u8::try_from(c).ok())
        .and_then(RevocationReason::from_code)
        .filter(|r| *r != RevocationReason::RemoveFromCrl)
}

impl Revocation {
    /// Over a fixed set of issuers (`cas`); the local ones (backends that sign CRLs) publish
    /// CRLs and OCSP.
    pub fn new(store: Store, cas: &[Arc<Ca>], settings: RevocationSettings) -> Revocation {
        Revocation::over(store, Arc::new(Issuers::fixed(cas.to_vec())), settings)
    }

    /// Over the issuer registry: a CA made or changed at run time is published at once.
    pub fn over(store: Store, issuers: Arc<Issuers>, settings: RevocationSettings) -> Revocation {
        let mut holder = [0u8; 12];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut holder);
        Revocation {
            store,
            issuers,
            states: Mutex::new(HashMap::new()),
            delegated: HashMap::new(),
            revoked: tokio::sync::Notify::new(),
            settings,
            cache: Mutex::new(HashMap::new()),
            signing_locks: (0..ocsp::SIGNING_SHARDS)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            holder: hex::encode(holder),
            served_crls: Mutex::new(HashMap::new()),
            delta_crls: false,
        }
    }

    /// The issuer registry this publishes for.
    pub fn issuers(&self) -> &Arc<Issuers> {
        &self.issuers
    }

    /// Publish a delta CRL (RFC 5280 §5.2.4) of each issuer's complete CRL at
    /// `/crl/NAME/delta.crl`, regenerated after revocations; the complete CRL names it in
    /// freshestCRL and is then regenerated on its schedule only.
    pub fn with_delta_crls(mut self, enabled: bool) -> Revocation {
        self.delta_crls = enabled;
        self
    }

    /// Sign the OCSP responses of the issuers named in `issuers` with delegated responder
    /// certificates valid `lifetime_secs`, their keys sealed with `kek`.
    pub fn with_delegated_responders(
        mut self,
        issuers: &HashSet<String>,
        kek: &Arc<KeyEncryptionKey>,
        lifetime_secs: i64,
    ) -> Revocation {
        for name in issuers {
            self.delegated.insert(
                name.clone(),
                Delegation {
                    kek: kek.clone(),
                    lifetime_secs: lifetime_secs.max(120),
                },
            );
        }
        self
    }

    /// The issuing CA certificate (DER) of a local issuer, published for AIA caIssuers.
    pub async fn issuer_certificate(&self, name: &str) -> Option<Vec<u8>> {
        let issuer = self.issuer(name).await.ok()?;
        issuer.ca.backend.ca_chain().into_iter().next()
    }

    /// The names of the local issuers, now.
    pub async fn issuer_names(&self) -> Vec<String> {
        self.issuer_states()
            .await
            .iter()
            .map(|i| i.ca.name.clone())
            .collect()
    }

    /// The state of the local issuer `name`.
    async fn issuer(&self, name: &str) -> Result<Arc<IssuerState>, RevocationError> {
        self.issuers
            .get(name)
            .await
            .and_then(|ca| self.state_of(ca))
            .ok_or_else(|| RevocationError::UnknownIssuer(name.to_string()))
    }

    /// Every local issuer's state, now.
    async fn issuer_states(&self) -> Vec<Arc<IssuerState>> {
        self.issuers
            .all()
            .await
            .into_iter()
            .filter_map(|ca| self.state_of(ca))
            .collect()
    }

    /// The state kept for `ca` (a local issuer), made now if none is kept for this very issuer.
    fn state_of(&self, ca: Arc<Ca>) -> Option<Arc<IssuerState>> {
        if !ca.backend.capabilities().crl {
            return None;
        }
        let mut states = self.states.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(state) = states.get(&ca.name).filter(|s| Arc::ptr_eq(&s.ca, &ca)) {
            return Some(state.clone());
        }
        let delegated = self.delegated.get(&ca.name).cloned();
        let state = Arc::new(IssuerState::new(ca, delegated)?);
        states.insert(state.ca.name.clone(), state.clone());
        Some(state)
    }
}

/// A serial as printed by any tool (`8EA8…`, `08:ea:8c…`, `0x8ea8…`) in the form certificates
/// are stored under: lowercase hex of the DER INTEGER's content octets.
pub fn canonical_serial_hex(input: &str) -> String {
    let digits: String = input
        .trim()
        .trim_start_matches("0x")
        .trim_start_matches("0X")
        .chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_lowercase();
    let mut digits = digits.trim_start_matches('0').to_string();
    if digits.is_empty() {
        return "00".into();
    }
    if digits.len() % 2 == 1 {
        digits.insert(0, '0');
    }
    // A leading byte with the high bit set is preceded by 00 in DER (positive INTEGER).
    if digits
        .as_bytes()
        .first()
        .is_some_and(|c| matches!(c, b'8'..=b'9' | b'a'..=b'f'))
    {
        digits.insert_str(0, "00");
    }
    digits
}

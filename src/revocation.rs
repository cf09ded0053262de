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
//! - **OCSP** answers GET and POST, SHA-1 and SHA-256 CertIDs, good / revoked (time, reason and
//!   invalidity date) / unknown, echoing the nonce (RFC 8954). Responses are signed by the
//!   issuer's backend, or — `ca.ocsp_responder = "delegated"` — by a delegated responder
//!   (§4.2.2.2): a short-lived certificate with id-kp-OCSPSigning and id-pkix-ocsp-nocheck
//!   issued by the CA through its backend, whose software key is sealed at rest in the database
//!   and which is renewed at two thirds of its life. Responses without a nonce are cached per
//!   (issuer, CertID, status) and re-signed ahead of their half-life by the refresh task.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pkid_backends::ocsp::{
    build_ocsp_response, error_response, OcspCertStatus, OcspError, OcspResponseRequest,
    OcspSingleResponse,
};
use pkid_backends::sealed::KeyEncryptionKey;
use pkid_backends::{
    BackendError, CrlRequest, KeyAlgorithm, KeySigner, RevocationReason, RevokedEntry, Serial,
    SoftwareKey,
};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::ca::Ca;
use crate::store::{now, CertificateRow, CrlRow, OcspResponderRow, Store, StoreError, FULL_CRL};

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

/// Which CRL of an issuer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrlScope {
    /// The complete CRL, `/crl/NAME.crl`.
    Full,
    /// One shard, `/crl/NAME/SHARD.crl`.
    Shard(i64),
    /// The delta CRL over the newest complete CRL (RFC 5280 §5.2.4), `/crl/NAME/delta.crl`.
    Delta,
}

/// `crls.shard` of a stored delta CRL.
const DELTA_CRL: i64 = -2;

impl CrlScope {
    /// The `crls.shard` it is stored under.
    fn key(self) -> i64 {
        match self {
            CrlScope::Full => FULL_CRL,
            CrlScope::Shard(k) => k,
            CrlScope::Delta => DELTA_CRL,
        }
    }
}

/// The CRL shard of a certificate with `serial` among `shards`: the first 8 bytes of the
/// SHA-256 of its serial, modulo `shards`. Fixed at issuance (it is written into the
/// certificate), so it never depends on settings that may change later.
pub fn crl_shard_of(serial: &Serial, shards: u32) -> i64 {
    let digest = sha256(serial.normalized());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::try_from(u64::from_be_bytes(first) % u64::from(shards.max(1))).unwrap_or(0)
}

/// A delegated OCSP responder: its certificate and the key that signs for it.
struct Responder {
    cert_der: Vec<u8>,
    key: Arc<SoftwareKey>,
    not_after: i64,
    renew_at: i64,
}

/// Delegated responders: which issuers use one, their lifetime, and the key sealing theirs.
struct Delegation {
    kek: Arc<KeyEncryptionKey>,
    lifetime_secs: i64,
}

/// What OCSP needs to recognise an issuer in a CertID, and the issuer's revocation state.
struct IssuerState {
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

/// Cached OCSP responses by (issuer index, CertID DER).
type OcspCache = HashMap<(usize, Vec<u8>), Arc<CachedResponse>>;

struct CachedResponse {
    revoked_at: Option<i64>,
    stale_at: i64,
    /// When the response's nextUpdate passes (it is never served after).
    expires_at: i64,
    der: Vec<u8>,
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
    #[error("the issuer's backend refused or failed: {0}")]
    Backend(pkid_backends::BackendError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// How long a replica may hold an issuer's CRL lease before others may take it over.
const CRL_LEASE_SECS: i64 = 120;
/// How long a request waits for another replica's CRL before serving the stored one.
const CRL_WAIT: Duration = Duration::from_secs(10);
/// Most cached OCSP responses re-signed ahead of time per refresh round.
const OCSP_REFRESH_BATCH: usize = 10_000;
/// Most cached OCSP responses kept.
const OCSP_CACHE_MAX: usize = 100_000;

pub struct Revocation {
    store: Store,
    /// Every issuer by name, local or upstream: revocations go to its backend.
    cas: HashMap<String, Arc<Ca>>,
    /// Local issuers, which publish CRLs and OCSP.
    issuers: Vec<IssuerState>,
    /// Woken by each revocation: a debounced CRL regeneration follows.
    pub revoked: tokio::sync::Notify,
    settings: RevocationSettings,
    cache: Mutex<OcspCache>,
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

fn reason_of(code: Option<i64>) -> Option<RevocationReason> {
    code.and_then(|c| u8::try_from(c).ok())
        .and_then(RevocationReason::from_code)
}

fn responder_aad(issuer: &str) -> Vec<u8> {
    format!("pkid OCSP responder key of {issuer}").into_bytes()
}

impl Revocation {
    /// `cas`: every issuer; the local ones (backends that sign CRLs) publish CRLs and OCSP.
    pub fn new(store: Store, cas: &[Arc<Ca>], settings: RevocationSettings) -> Revocation {
        let mut issuers = Vec::new();
        for ca in cas.iter().filter(|ca| ca.backend.capabilities().crl) {
            let chain = ca.backend.ca_chain();
            let Some(issuing) = chain.first() else {
                continue;
            };
            let Ok((_, cert)) = X509Certificate::from_der(issuing) else {
                continue;
            };
            let name = cert.subject().as_raw();
            let key = &cert.public_key().subject_public_key.data;
            issuers.push(IssuerState {
                ca: ca.clone(),
                name_sha1: sha1(name),
                key_sha1: sha1(key),
                name_sha256: sha256(name),
                key_sha256: sha256(key),
                crl_lock: tokio::sync::Mutex::new(()),
                delegated: None,
                responder: Mutex::new(None),
                responder_lock: tokio::sync::Mutex::new(()),
            });
        }
        let mut holder = [0u8; 12];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut holder);
        Revocation {
            store,
            cas: cas.iter().map(|ca| (ca.name.clone(), ca.clone())).collect(),
            issuers,
            revoked: tokio::sync::Notify::new(),
            settings,
            cache: Mutex::new(HashMap::new()),
            holder: hex::encode(holder),
            served_crls: Mutex::new(HashMap::new()),
            delta_crls: false,
        }
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
        for issuer in &mut self.issuers {
            if issuers.contains(&issuer.ca.name) {
                issuer.delegated = Some(Delegation {
                    kek: kek.clone(),
                    lifetime_secs: lifetime_secs.max(120),
                });
            }
        }
        self
    }

    /// Revoke an issued certificate, whatever surface asked: the issuer's backend first
    /// (upstream CAs must agree), then the one record every CRL and OCSP answer comes from.
    pub async fn revoke(
        &self,
        serial_hex: &str,
        reason: RevocationReason,
    ) -> Result<(), RevokeError> {
        self.revoke_with_invalidity(serial_hex, reason, None).await
    }

    /// [`Revocation::revoke`] with an invalidity date (RFC 5280 §5.3.2, Unix seconds): when the
    /// key was known or suspected compromised, or the certificate otherwise became invalid.
    pub async fn revoke_with_invalidity(
        &self,
        serial_hex: &str,
        reason: RevocationReason,
        invalidity_date: Option<i64>,
    ) -> Result<(), RevokeError> {
        let serial_hex = canonical_serial_hex(serial_hex);
        let at = now();
        if invalidity_date.is_some_and(|t| t > at) {
            return Err(RevokeError::InvalidityInFuture);
        }
        let cert = self
            .store
            .certificate(&serial_hex)
            .await?
            .filter(|c| c.status == "issued")
            .ok_or_else(|| RevokeError::NotFound(serial_hex.clone()))?;
        if cert.revoked_at.is_some() {
            return Err(RevokeError::AlreadyRevoked(serial_hex));
        }
        let der = cert.der.clone().unwrap_or_default();
        if let Some(ca) = self.cas.get(&cert.issuer) {
            let serial = Serial::from_hex(&serial_hex).map_err(RevokeError::Backend)?;
            ca.backend
                .revoke(&serial, &der, reason)
                .await
                .map_err(RevokeError::Backend)?;
        }
        let code = i64::from(reason.code());
        if !self
            .store
            .revoke_certificate(&serial_hex, code, at, invalidity_date)
            .await?
        {
            return Err(RevokeError::AlreadyRevoked(serial_hex));
        }
        tracing::info!(serial = %serial_hex, issuer = %cert.issuer, reason = code, "certificate revoked");
        self.revoked.notify_one();
        Ok(())
    }

    /// The issuing CA certificate (DER) of a local issuer, published for AIA caIssuers.
    pub fn issuer_certificate(&self, name: &str) -> Option<Vec<u8>> {
        let issuer = self.issuers.iter().find(|i| i.ca.name == name)?;
        issuer.ca.backend.ca_chain().into_iter().next()
    }

    pub fn issuer_names(&self) -> Vec<String> {
        self.issuers.iter().map(|i| i.ca.name.clone()).collect()
    }

    fn issuer(&self, name: &str) -> Result<&IssuerState, RevocationError> {
        self.issuers
            .iter()
            .find(|i| i.ca.name == name)
            .ok_or_else(|| RevocationError::UnknownIssuer(name.to_string()))
    }

    /// The CRL shards an issuer publishes: the configured ones, and any shard an unexpired
    /// certificate still points to (after `crl_shards` was lowered).
    pub async fn crl_shards(&self, issuer: &str) -> Result<i64, RevocationError> {
        let state = self.issuer(issuer)?;
        if state.ca.crl_url(Some(0)).is_none() {
            return Ok(0);
        }
        let configured = i64::from(state.ca.crl_shards()).max(1);
        let in_use = self.store.crl_shards_in_use(issuer, now()).await?;
        Ok(if configured > 1 || in_use > 0 {
            configured.max(in_use)
        } else {
            0
        })
    }

    /// Every CRL scope of an issuer: its complete CRL, its delta CRL, then each shard.
    async fn scopes(&self, issuer: &str) -> Result<Vec<CrlScope>, RevocationError> {
        let shards = self.crl_shards(issuer).await?;
        let delta = self.delta_crls && self.issuer(issuer)?.ca.delta_crl_url().is_some();
        Ok(std::iter::once(CrlScope::Full)
            .chain(delta.then_some(CrlScope::Delta))
            .chain((0..shards).map(CrlScope::Shard))
            .collect())
    }

    /// Sign a fresh complete CRL for `issuer` now and store it (`pkid crl generate`).
    pub async fn generate_crl(&self, issuer: &str) -> Result<Arc<CrlRow>, RevocationError> {
        self.generate_scope_now(issuer, CrlScope::Full).await
    }

    /// Sign a fresh CRL of one scope now, under the issuer's lease.
    pub async fn generate_scope_now(
        &self,
        issuer: &str,
        scope: CrlScope,
    ) -> Result<Arc<CrlRow>, RevocationError> {
        self.check_scope(issuer, scope).await?;
        self.with_crl_lease(issuer, scope, true).await
    }

    async fn check_scope(&self, issuer: &str, scope: CrlScope) -> Result<(), RevocationError> {
        match scope {
            CrlScope::Full => Ok(()),
            CrlScope::Shard(k) if k >= 0 && k < self.crl_shards(issuer).await? => Ok(()),
            CrlScope::Shard(k) => Err(RevocationError::UnknownShard(issuer.to_string(), k)),
            CrlScope::Delta if self.delta_crls => Ok(()),
            CrlScope::Delta => Err(RevocationError::NoDeltaCrls(issuer.to_string())),
        }
    }

    /// Sign and store the CRL of `issuer`'s `scope` as of `at`. A delta CRL lists what was
    /// revoked since its base (the newest complete CRL, signed first if there is none).
    async fn sign_scope(
        &self,
        state: &IssuerState,
        scope: CrlScope,
        at: i64,
    ) -> Result<Arc<CrlRow>, RevocationError> {
        let issuer = state.ca.name.as_str();
        let mut delta_crl_indicator = None;
        let rows = match scope {
            CrlScope::Full => self.store.revoked_unexpired(issuer, at, None).await?,
            CrlScope::Shard(k) => self.store.revoked_unexpired(issuer, at, Some(k)).await?,
            CrlScope::Delta => {
                let base = match self.store.latest_crl_meta(issuer, FULL_CRL).await? {
                    Some(base) => base,
                    None => Box::pin(self.sign_scope(state, CrlScope::Full, at))
                        .await?
                        .meta(),
                };
                delta_crl_indicator = Some(u64::try_from(base.number).unwrap_or_default());
                let mut rows = self.store.revoked_unexpired(issuer, at, None).await?;
                rows.retain(|r| r.revoked_at >= base.generated_at);
                rows
            }
        };
        let entries = rows
            .into_iter()
            .filter_map(|r| {
                Some(RevokedEntry {
                    serial: Serial::from_hex(&r.serial).ok()?,
                    revoked_at: odt(r.revoked_at),
                    reason: reason_of(r.reason).filter(|r| *r != RevocationReason::Unspecified),
                    invalidity_date: r.invalidity_date.map(odt),
                })
            })
            .collect();
        let previous = self.store.latest_crl_meta(issuer, scope.key()).await?;
        // CRL numbers increase within a scope (§5.2.3), and complete and delta CRLs share one
        // sequence: microseconds, past the stored one.
        let micros = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000;
        let mut number = i64::try_from(micros).unwrap_or(i64::MAX);
        if let Some(previous) = &previous {
            number = number.max(previous.number.saturating_add(1));
        }
        let this_update = at - 60;
        let next_update = at + self.settings.crl_lifetime_secs;
        let issuing_distribution_point = match scope {
            CrlScope::Shard(k) => Some(
                state
                    .ca
                    .crl_url(Some(k))
                    .ok_or_else(|| RevocationError::UnknownShard(issuer.to_string(), k))?,
            ),
            _ => None,
        };
        let freshest_crl = match scope {
            CrlScope::Full if self.delta_crls => state.ca.delta_crl_url(),
            _ => None,
        };
        let der = state
            .ca
            .backend
            .sign_crl(CrlRequest {
                crl_number: u64::try_from(number).unwrap_or_default(),
                this_update: odt(this_update),
                next_update: odt(next_update),
                entries,
                issuing_distribution_point,
                delta_crl_indicator,
                freshest_crl,
            })
            .await?;
        let row = CrlRow {
            issuer: issuer.to_string(),
            shard: scope.key(),
            number,
            generated_at: at,
            this_update,
            next_update,
            der,
        };
        self.store.insert_crl(&row).await?;
        self.store.prune_crls(issuer, scope.key(), 5).await?;
        tracing::info!(issuer, scope = ?scope, number, "CRL generated");
        let row = Arc::new(row);
        if let Ok(mut served) = self.served_crls.lock() {
            served.insert((issuer.to_string(), scope.key()), row.clone());
        }
        Ok(row)
    }

    /// The stored CRL `number` of a scope: from memory when it is the one served last, else
    /// read once from the database (every replica serves the stored bytes).
    async fn load_crl(
        &self,
        issuer: &str,
        scope: CrlScope,
        number: i64,
    ) -> Result<Option<Arc<CrlRow>>, RevocationError> {
        let key = (issuer.to_string(), scope.key());
        if let Ok(served) = self.served_crls.lock() {
            if let Some(crl) = served.get(&key).filter(|c| c.number == number) {
                return Ok(Some(crl.clone()));
            }
        }
        let Some(row) = self
            .store
            .crl_by_number(issuer, scope.key(), number)
            .await?
        else {
            return Ok(None);
        };
        let row = Arc::new(row);
        if let Ok(mut served) = self.served_crls.lock() {
            served.insert(key, row.clone());
        }
        Ok(Some(row))
    }

    /// The stored CRL of a scope if it is current: short of two thirds of its life, and newer
    /// than every revocation in its scope — except a complete CRL that has delta CRLs, which
    /// carry the revocations in between. A delta CRL must also be newer than its base.
    async fn fresh_stored(
        &self,
        issuer: &str,
        scope: CrlScope,
        at: i64,
    ) -> Result<Option<Arc<CrlRow>>, RevocationError> {
        let Some(crl) = self.store.latest_crl_meta(issuer, scope.key()).await? else {
            return Ok(None);
        };
        let refresh_margin = self.settings.crl_lifetime_secs / 3;
        if crl.next_update - refresh_margin <= at {
            return Ok(None);
        }
        let current = match scope {
            CrlScope::Full if self.delta_crls => true,
            CrlScope::Full => crl.generated_at > self.store.last_revocation(issuer, None).await?,
            CrlScope::Shard(k) => {
                crl.generated_at > self.store.last_revocation(issuer, Some(k)).await?
            }
            CrlScope::Delta => {
                let base = self.store.latest_crl_meta(issuer, FULL_CRL).await?;
                base.is_some_and(|b| crl.generated_at >= b.generated_at && crl.number > b.number)
                    && crl.generated_at > self.store.last_revocation(issuer, None).await?
            }
        };
        if !current {
            return Ok(None);
        }
        self.load_crl(issuer, scope, crl.number).await
    }

    /// Generate a scope's CRL while holding the issuer's lease (this process's mutex, then the
    /// database lease shared by replicas). `force`: sign even if the stored one is current.
    /// While another replica holds the lease, waits (bounded) for its CRL; then serves the
    /// newest stored CRL that has not passed its nextUpdate.
    async fn with_crl_lease(
        &self,
        issuer: &str,
        scope: CrlScope,
        force: bool,
    ) -> Result<Arc<CrlRow>, RevocationError> {
        let state = self.issuer(issuer)?;
        let _local = state.crl_lock.lock().await;
        let deadline = tokio::time::Instant::now() + CRL_WAIT;
        loop {
            let at = now();
            if !force {
                if let Some(crl) = self.fresh_stored(issuer, scope, at).await? {
                    return Ok(crl);
                }
            }
            if let Some(result) = self.sign_if_lease_free(state, scope, force, at).await {
                return result;
            }
            if tokio::time::Instant::now() >= deadline {
                let stored = match self.store.latest_crl_meta(issuer, scope.key()).await? {
                    Some(meta) if meta.next_update > now() => {
                        self.load_crl(issuer, scope, meta.number).await?
                    }
                    _ => None,
                };
                return stored.ok_or_else(|| RevocationError::Busy(issuer.to_string()));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Take the issuer's database lease and, under it, sign the scope's CRL unless (`force`
    /// aside) a fresh one is stored by now: another replica may have signed and released
    /// between the caller's check and this lease. `None` while another replica holds it.
    async fn sign_if_lease_free(
        &self,
        state: &IssuerState,
        scope: CrlScope,
        force: bool,
        at: i64,
    ) -> Option<Result<Arc<CrlRow>, RevocationError>> {
        let issuer = state.ca.name.as_str();
        let lease = format!("crl:{issuer}");
        match self
            .store
            .try_lease(&lease, &self.holder, at, at + CRL_LEASE_SECS)
            .await
        {
            Ok(true) => {}
            Ok(false) => return None,
            Err(e) => return Some(Err(e.into())),
        }
        let result = async {
            if !force {
                if let Some(crl) = self.fresh_stored(issuer, scope, at).await? {
                    return Ok(crl);
                }
            }
            self.sign_scope(state, scope, at).await
        }
        .await;
        if let Err(e) = self.store.release_lease(&lease, &self.holder).await {
            tracing::warn!(issuer, error = %e, "releasing the CRL lease failed");
        }
        Some(result)
    }

    /// The issuer's current complete CRL: the stored one while it is fresh, else a new one.
    /// This is the CRL lookup for every surface (the `/crl/NAME.crl` route, and the Notary
    /// `/api/v1/certificate_authorities/{id}/crl` JSON form when that surface is built).
    pub async fn current_crl(&self, issuer: &str) -> Result<Arc<CrlRow>, RevocationError> {
        self.current_crl_scope(issuer, CrlScope::Full).await
    }

    /// The current CRL of one scope: complete, a shard, or the delta CRL.
    pub async fn current_crl_scope(
        &self,
        issuer: &str,
        scope: CrlScope,
    ) -> Result<Arc<CrlRow>, RevocationError> {
        self.issuer(issuer)?;
        self.check_scope(issuer, scope).await?;
        if let Some(crl) = self.fresh_stored(issuer, scope, now()).await? {
            return Ok(crl);
        }
        self.with_crl_lease(issuer, scope, false).await
    }

    /// Refresh every CRL of every issuer that needs it (scheduled, and after revocations).
    pub async fn refresh_all(&self) {
        for name in self.issuer_names() {
            self.refresh_issuer(&name).await;
        }
    }

    /// Refresh every CRL scope of one issuer that needs it.
    pub async fn refresh_issuer(&self, issuer: &str) {
        let scopes = match self.scopes(issuer).await {
            Ok(scopes) => scopes,
            Err(e) => {
                tracing::warn!(issuer, error = %e, "listing CRL shards failed");
                return;
            }
        };
        for scope in scopes {
            if let Err(e) = self.current_crl_scope(issuer, scope).await {
                tracing::warn!(issuer, scope = ?scope, error = %e, "CRL refresh failed");
            }
        }
    }

    /// The refresh task: CRLs at a third of their life and shortly after revocations
    /// (debounced: a burst of revocations yields one new CRL per scope), cached OCSP responses
    /// ahead of their half-life, delegated responders at two thirds of theirs.
    pub async fn run_refresh(self: Arc<Self>) {
        let crl_period = (self.settings.crl_lifetime_secs / 3).clamp(10, 3600);
        let ocsp_period = (self.settings.ocsp_lifetime_secs / 4).clamp(5, 3600);
        let period = Duration::from_secs(u64::try_from(crl_period.min(ocsp_period)).unwrap_or(60));
        let mut tick = tokio::time::interval(period);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.revoked.notified() => tokio::time::sleep(Duration::from_secs(2)).await,
            }
            self.refresh_all().await;
            let at = now();
            for index in 0..self.issuers.len() {
                if self.issuers[index].delegated.is_some() {
                    if let Err(e) = self.responder(index, at).await {
                        tracing::warn!(issuer = %self.issuers[index].ca.name, error = %e, "renewing the OCSP responder failed");
                    }
                }
            }
            self.refresh_ocsp_cache(at + i64::try_from(period.as_secs()).unwrap_or(60))
                .await;
        }
    }

    // ---- OCSP ----

    /// The issuer's delegated responder, loaded from the database or issued (and sealed) when
    /// none is valid or the newest is past two thirds of its life. `None`: the issuer signs
    /// itself (no delegation configured).
    async fn responder(
        &self,
        index: usize,
        at: i64,
    ) -> Result<Option<Arc<Responder>>, RevocationError> {
        let state = &self.issuers[index];
        let Some(delegation) = &state.delegated else {
            return Ok(None);
        };
        if let Some(current) = self.cached_responder(state) {
            if current.renew_at > at {
                return Ok(Some(current));
            }
        }
        let _guard = state.responder_lock.lock().await;
        if let Some(current) = self.cached_responder(state) {
            if current.renew_at > at {
                return Ok(Some(current));
            }
        }
        let issuer = state.ca.name.as_str();
        let stored = self.store.latest_ocsp_responder(issuer, at).await?;
        let usable = match &stored {
            Some(row) if renew_at(row) > at => Some(row.clone()),
            _ => None,
        };
        let row = match usable {
            Some(row) => row,
            None => {
                let lease = format!("ocsp-responder:{issuer}");
                if self
                    .store
                    .try_lease(&lease, &self.holder, at, at + CRL_LEASE_SECS)
                    .await?
                {
                    let issued = self.issue_responder(state, delegation).await;
                    if let Err(e) = self.store.release_lease(&lease, &self.holder).await {
                        tracing::warn!(issuer, error = %e, "releasing the responder lease failed");
                    }
                    issued?
                } else {
                    // Another replica is issuing one: keep the valid one meanwhile.
                    match stored {
                        Some(row) => row,
                        None => return Ok(None),
                    }
                }
            }
        };
        let pkcs8 = delegation
            .kek
            .open_pem(&row.sealed_key, &responder_aad(issuer))?;
        let key = SoftwareKey::from_pkcs8_der(&pkcs8)?;
        let responder = Arc::new(Responder {
            renew_at: renew_at(&row),
            cert_der: row.cert_der,
            key: Arc::new(key),
            not_after: row.not_after,
        });
        if let Ok(mut slot) = state.responder.lock() {
            *slot = Some(responder.clone());
        }
        Ok(Some(responder))
    }

    fn cached_responder(&self, state: &IssuerState) -> Option<Arc<Responder>> {
        state.responder.lock().ok()?.clone()
    }

    /// A fresh responder key and certificate, the key sealed into the database.
    async fn issue_responder(
        &self,
        state: &IssuerState,
        delegation: &Delegation,
    ) -> Result<OcspResponderRow, RevocationError> {
        let issuer = state.ca.name.as_str();
        let key = SoftwareKey::generate(KeyAlgorithm::EcdsaP256)?;
        let issued = state
            .ca
            .issue_ocsp_responder(key.public_key_der(), delegation.lifetime_secs)
            .await
            .map_err(|e| BackendError::Sign(format!("issuing the OCSP responder: {e}")))?;
        let (_, cert) = X509Certificate::from_der(&issued.der)
            .map_err(|e| BackendError::Build(format!("the responder certificate: {e}")))?;
        let row = OcspResponderRow {
            issuer: issuer.to_string(),
            serial: issued.serial.clone(),
            cert_der: issued.der.clone(),
            sealed_key: delegation
                .kek
                .seal_pem(&key.to_pkcs8_der(), &responder_aad(issuer))?,
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
        };
        self.store.insert_ocsp_responder(&row).await?;
        tracing::info!(issuer, serial = %row.serial, not_after = row.not_after, "issued a delegated OCSP responder certificate");
        Ok(row)
    }

    /// Answer one DER OCSPRequest with a DER OCSPResponse (never an HTTP error: RFC 6960
    /// errors travel inside the response).
    pub async fn answer_ocsp(&self, request_der: &[u8]) -> Vec<u8> {
        let request = match parse_ocsp_request(request_der) {
            Ok(r) => r,
            Err(e) => {
                tracing::info!(error = %e, "malformed OCSP request");
                return error_response(OcspError::MalformedRequest);
            }
        };
        // One issuer per response: every CertID must name the same local issuer.
        let mut issuer_index = None;
        for id in &request.cert_ids {
            let found = self.issuers.iter().position(|i| match id.hash {
                HashAlg::Sha1 => i.name_sha1 == id.name_hash && i.key_sha1 == id.key_hash,
                HashAlg::Sha256 => i.name_sha256 == id.name_hash && i.key_sha256 == id.key_hash,
            });
            match (found, issuer_index) {
                (None, _) => return error_response(OcspError::Unauthorized),
                (Some(f), Some(prev)) if f != prev => {
                    return error_response(OcspError::MalformedRequest)
                }
                (Some(f), _) => issuer_index = Some(f),
            }
        }
        let Some(index) = issuer_index else {
            return error_response(OcspError::MalformedRequest);
        };
        let at = now();

        let mut looked_up = Vec::with_capacity(request.cert_ids.len());
        for id in &request.cert_ids {
            match self.lookup(index, &id.serial).await {
                Ok(stored) => looked_up.push(stored),
                Err(e) => {
                    tracing::error!(error = %e, "OCSP lookup failed");
                    return error_response(OcspError::TryLater);
                }
            }
        }
        // Cached answer for the common case: one certificate, no nonce.
        let cacheable = request.cert_ids.len() == 1 && request.nonce.is_none();
        if cacheable {
            if let (Some(id), Some(Some(stored))) = (request.cert_ids.first(), looked_up.first()) {
                if let Some(hit) = self.cached(index, &id.der, stored.revoked_at, at) {
                    return hit;
                }
            }
        }
        let ids: Vec<(&[u8], Option<&CertificateRow>)> = request
            .cert_ids
            .iter()
            .zip(&looked_up)
            .map(|(id, stored)| (id.der.as_slice(), stored.as_ref()))
            .collect();
        match self
            .sign_response(index, &ids, request.nonce.clone(), at)
            .await
        {
            Ok((der, expires_at)) => {
                if cacheable {
                    if let (Some(id), Some(Some(stored))) =
                        (request.cert_ids.first(), looked_up.first())
                    {
                        self.remember(index, &id.der, stored.revoked_at, at, expires_at, &der);
                    }
                }
                der
            }
            Err(e) => {
                tracing::error!(issuer = %self.issuers[index].ca.name, error = %e, "OCSP signing failed");
                error_response(OcspError::TryLater)
            }
        }
    }

    /// The issued certificate of this issuer with this serial (content octets, no sign byte).
    async fn lookup(
        &self,
        index: usize,
        serial: &[u8],
    ) -> Result<Option<CertificateRow>, StoreError> {
        let issuer = &self.issuers[index].ca.name;
        let stored = self
            .store
            .certificate(&canonical_serial_hex(&hex::encode(serial)))
            .await?;
        Ok(stored.filter(|c| &c.issuer == issuer && c.status == "issued"))
    }

    /// Sign one response for `ids` (CertID DER, stored certificate), by the delegated
    /// responder when there is one, else through the issuer's backend. Returns the response
    /// and when it stops being valid.
    async fn sign_response(
        &self,
        index: usize,
        ids: &[(&[u8], Option<&CertificateRow>)],
        nonce: Option<Vec<u8>>,
        at: i64,
    ) -> Result<(Vec<u8>, i64), RevocationError> {
        let state = &self.issuers[index];
        let responder = match self.responder(index, at).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(issuer = %state.ca.name, error = %e, "no delegated OCSP responder: the issuer signs");
                None
            }
        };
        let mut next_update = at + self.settings.ocsp_lifetime_secs;
        if let Some(r) = &responder {
            next_update = next_update.min(r.not_after);
        }
        let responses = ids
            .iter()
            .map(|(cert_id, stored)| OcspSingleResponse {
                cert_id_der: cert_id.to_vec(),
                status: cert_status(*stored),
                this_update: odt(at - 60),
                next_update: Some(odt(next_update)),
            })
            .collect();
        let req = OcspResponseRequest {
            produced_at: odt(at),
            responses,
            nonce,
        };
        let der = match responder {
            Some(r) => tokio::task::spawn_blocking(move || {
                build_ocsp_response(&req, r.key.as_ref(), std::slice::from_ref(&r.cert_der))
            })
            .await
            .map_err(|e| {
                BackendError::Sign(format!("the OCSP signing task did not finish: {e}"))
            })??,
            None => state.ca.backend.sign_ocsp(req).await?,
        };
        Ok((der, next_update))
    }

    fn cached(
        &self,
        index: usize,
        cert_id: &[u8],
        revoked_at: Option<i64>,
        at: i64,
    ) -> Option<Vec<u8>> {
        let cache = self.cache.lock().ok()?;
        let hit = cache.get(&(index, cert_id.to_vec()))?;
        (hit.revoked_at == revoked_at && hit.stale_at > at && hit.expires_at > at)
            .then(|| hit.der.clone())
    }

    fn remember(
        &self,
        index: usize,
        cert_id: &[u8],
        revoked_at: Option<i64>,
        at: i64,
        expires_at: i64,
        der: &[u8],
    ) {
        let cached = CachedResponse {
            revoked_at,
            // Re-signed at half-life, so a cached answer is never close to expiry.
            stale_at: at + (expires_at - at) / 2,
            expires_at,
            der: der.to_vec(),
        };
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= OCSP_CACHE_MAX {
                cache.clear();
            }
            cache.insert((index, cert_id.to_vec()), Arc::new(cached));
        }
    }

    /// Re-sign cached responses that go stale before `horizon`, with the current status, so
    /// relying parties keep getting pre-signed answers (bounded per round).
    pub async fn refresh_ocsp_cache(&self, horizon: i64) {
        let due: Vec<(usize, Vec<u8>)> = match self.cache.lock() {
            Ok(cache) => cache
                .iter()
                .filter(|(_, c)| c.stale_at <= horizon)
                .map(|(key, _)| key.clone())
                .take(OCSP_REFRESH_BATCH)
                .collect(),
            Err(_) => return,
        };
        for (index, cert_id) in due {
            let Ok(parsed) = parse_cert_id(&cert_id) else {
                continue;
            };
            let stored = match self.lookup(index, &parsed.serial).await {
                Ok(Some(stored)) => stored,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "OCSP refresh lookup failed");
                    return;
                }
            };
            let at = now();
            match self
                .sign_response(index, &[(&cert_id, Some(&stored))], None, at)
                .await
            {
                Ok((der, expires_at)) => {
                    self.remember(index, &cert_id, stored.revoked_at, at, expires_at, &der)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "re-signing a cached OCSP response failed");
                    return;
                }
            }
        }
    }
}

/// Renew a responder at two thirds of its life.
fn renew_at(row: &OcspResponderRow) -> i64 {
    row.not_after - (row.not_after - row.not_before) / 3
}

fn cert_status(stored: Option<&CertificateRow>) -> OcspCertStatus {
    match stored {
        None => OcspCertStatus::Unknown,
        Some(c) => match c.revoked_at {
            None => OcspCertStatus::Good,
            Some(t) => OcspCertStatus::Revoked {
                at: odt(t),
                reason: reason_of(c.revocation_reason),
                invalidity_date: c.invalidity_date.map(odt),
            },
        },
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

// ---- OCSP request parsing (RFC 6960 §4.1.1), a small strict DER reader ----

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HashAlg {
    Sha1,
    Sha256,
}

#[derive(Debug, Clone)]
struct CertId {
    der: Vec<u8>,
    hash: HashAlg,
    name_hash: Vec<u8>,
    key_hash: Vec<u8>,
    serial: Vec<u8>,
}

/// What pkid reads of an RFC 6960 OCSPRequest: its CertIDs (one issuer, at most 20) and nonce.
#[derive(Debug, Clone)]
pub struct OcspRequest {
    cert_ids: Vec<CertId>,
    nonce: Option<Vec<u8>>,
}

const MAX_CERT_IDS: usize = 20;
const OID_SHA1: &[u8] = &[0x2b, 0x0e, 0x03, 0x02, 0x1a];
const OID_SHA256: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
const OID_NONCE: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x02];

/// One DER element: its tag, its contents, and its whole encoding.
struct Tlv<'a> {
    tag: u8,
    content: &'a [u8],
    whole: &'a [u8],
}

/// Read one element; returns it and the bytes after it.
fn read_tlv(input: &[u8]) -> Result<(Tlv<'_>, &[u8]), String> {
    let (&tag, rest) = input.split_first().ok_or("truncated")?;
    if tag & 0x1f == 0x1f {
        return Err("multi-byte tags are not used in OCSP".into());
    }
    let (&first, rest) = rest.split_first().ok_or("truncated length")?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return Err("bad length".into());
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        if len < 0x80 || rest[0] == 0 {
            return Err("length is not minimally encoded".into());
        }
        (len, &rest[n..])
    };
    if rest.len() < len {
        return Err("truncated content".into());
    }
    let header = input.len() - rest.len();
    let tlv = Tlv {
        tag,
        content: &rest[..len],
        whole: &input[..header + len],
    };
    Ok((tlv, &rest[len..]))
}

/// Read one element that must carry `tag`.
fn expect(input: &[u8], tag: u8) -> Result<(Tlv<'_>, &[u8]), String> {
    let (tlv, rest) = read_tlv(input)?;
    if tlv.tag != tag {
        return Err(format!("expected tag {tag:#04x}, found {:#04x}", tlv.tag));
    }
    Ok((tlv, rest))
}

/// `CertID ::= SEQUENCE { hashAlgorithm, issuerNameHash, issuerKeyHash, serialNumber }` at the
/// start of `der` (RFC 6960 §4.1.1).
fn parse_cert_id(der: &[u8]) -> Result<CertId, String> {
    let (cert_id, _) = expect(der, 0x30)?;
    let (alg, r) = expect(cert_id.content, 0x30)?;
    let (oid, _) = expect(alg.content, 0x06)?;
    let hash = match oid.content {
        OID_SHA1 => HashAlg::Sha1,
        OID_SHA256 => HashAlg::Sha256,
        _ => return Err("unsupported CertID hash algorithm".into()),
    };
    let (name_hash, r) = expect(r, 0x04)?;
    let (key_hash, r) = expect(r, 0x04)?;
    let (serial, _) = expect(r, 0x02)?;
    if serial.content.is_empty() || serial.content.len() > 21 {
        return Err("bad serial number".into());
    }
    Ok(CertId {
        der: cert_id.whole.to_vec(),
        hash,
        name_hash: name_hash.content.to_vec(),
        key_hash: key_hash.content.to_vec(),
        serial: serial
            .content
            .iter()
            .skip_while(|b| **b == 0)
            .copied()
            .collect(),
    })
}

/// Parse a DER OCSPRequest (RFC 6960 §4.1.1); any error is answered `malformedRequest`.
pub fn parse_ocsp_request(der: &[u8]) -> Result<OcspRequest, String> {
    let (request, trailing) = expect(der, 0x30)?;
    if !trailing.is_empty() {
        return Err("trailing data".into());
    }
    // optionalSignature after tbsRequest is ignored: pkid answers unsigned requests.
    let (tbs, _) = expect(request.content, 0x30)?;
    let mut rest = tbs.content;
    // version [0] and requestorName [1] are optional and ignored.
    for optional in [0xa0u8, 0xa1] {
        if rest.first() == Some(&optional) {
            rest = expect(rest, optional)?.1;
        }
    }
    let (list, after_list) = expect(rest, 0x30)?;
    let mut list = list.content;
    let mut cert_ids = Vec::new();
    while !list.is_empty() {
        let (single, next) = expect(list, 0x30)?;
        list = next;
        cert_ids.push(parse_cert_id(single.content)?);
        if cert_ids.len() > MAX_CERT_IDS {
            return Err("too many certificates in one request".into());
        }
    }
    if cert_ids.is_empty() {
        return Err("no certificate in the request".into());
    }
    let mut nonce = None;
    if after_list.first() == Some(&0xa2) {
        let (exts, _) = expect(after_list, 0xa2)?;
        let (exts, _) = expect(exts.content, 0x30)?;
        let mut exts = exts.content;
        while !exts.is_empty() {
            let (ext, next) = expect(exts, 0x30)?;
            exts = next;
            let (oid, r) = expect(ext.content, 0x06)?;
            let r = if r.first() == Some(&0x01) {
                expect(r, 0x01)?.1
            } else {
                r
            };
            let (value, _) = expect(r, 0x04)?;
            if oid.content == OID_NONCE {
                if value.content.is_empty() || value.content.len() > 128 {
                    return Err("bad nonce length".into());
                }
                nonce = Some(value.content.to_vec());
            }
        }
    }
    Ok(OcspRequest { cert_ids, nonce })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn serials_in_every_printed_form_find_the_stored_one() {
        assert_eq!(canonical_serial_hex("8EA8CE24"), "008ea8ce24");
        // 31 digits, as big-integer printers write a 16-byte serial starting 0x08.
        assert_eq!(
            canonical_serial_hex("8ea8ce24af8b31fed4e82fa8b9b2bbf"),
            "08ea8ce24af8b31fed4e82fa8b9b2bbf"
        );
        assert_eq!(canonical_serial_hex("08:EA:8C"), "08ea8c");
        assert_eq!(canonical_serial_hex("0x7f01"), "7f01");
        assert_eq!(canonical_serial_hex("8ea8c"), "08ea8c");
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        for input in [
            &b""[..],
            b"\x30",
            b"\x30\x80",
            b"\x30\x84\xff\xff\xff\xff",
            b"\x30\x03\x30\x01\x00",
            b"\x04\x00",
        ] {
            assert!(parse_ocsp_request(input).is_err());
        }
    }
}

#[cfg(test)]
mod property_tests {
    //! CRL shards against a model, over a seeded random sequence of issuances, revocations
    //! and CRL generations, with a real SQLite store and software CA.
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::ca::IssuanceProfile;
    use rand::{Rng, SeedableRng};
    use std::collections::BTreeSet;
    use x509_parser::extensions::{DistributionPointName, GeneralName, ParsedExtension};
    use x509_parser::prelude::CertificateRevocationList;

    const SHARDS: u32 = 4;
    const BASE: &str = "http://127.0.0.1:9";

    struct World {
        revocation: Revocation,
        ca: Arc<Ca>,
        store: Store,
        issuer_spki: Vec<u8>,
        _dir: tempfile::TempDir,
    }

    async fn world(shards: u32) -> World {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let store = Store::connect(&url, 4).await.unwrap();
        let kek = Arc::new(KeyEncryptionKey::generate());
        let (backend, _) = pkid_backends::SoftwareBackend::open_or_create(
            "test",
            &dir.path().join("ca"),
            &kek,
            KeyAlgorithm::EcdsaP256,
        )
        .unwrap();
        let issuer_spki = {
            let chain = pkid_backends::SigningBackend::ca_chain(&backend);
            let (_, cert) = X509Certificate::from_der(&chain[0]).unwrap();
            cert.public_key().raw.to_vec()
        };
        let ca = Arc::new(
            Ca::new("test".into(), Arc::new(backend), store.clone(), 60)
                .with_revocation_base(Some(BASE))
                .with_crl_shards(shards),
        );
        let revocation = replica(&store, &ca);
        World {
            revocation,
            ca,
            store,
            issuer_spki,
            _dir: dir,
        }
    }

    /// A `Revocation` over the store and CA: the world's own, or another replica's.
    fn replica(store: &Store, ca: &Arc<Ca>) -> Revocation {
        Revocation::new(
            store.clone(),
            std::slice::from_ref(ca),
            RevocationSettings {
                crl_lifetime_secs: 3600,
                ocsp_lifetime_secs: 3600,
            },
        )
    }

    async fn issue(ca: &Ca, validity_secs: i64) -> (String, i64, Vec<u8>) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["shard.pkid.test".into()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        let csr =
            crate::pki::csr::check_csr(params.serialize_request(&key).unwrap().der()).unwrap();
        let issued = ca
            .issue(
                &csr,
                &IssuanceProfile::tls_server("p", validity_secs),
                None,
                None,
            )
            .await
            .unwrap();
        let (_, cert) = X509Certificate::from_der(&issued.der).unwrap();
        let not_after = cert.validity().not_after.timestamp();
        (issued.serial, not_after, issued.der)
    }

    /// The shard named in a certificate's CRL distribution point.
    fn distribution_point_shard(der: &[u8]) -> i64 {
        let (_, cert) = X509Certificate::from_der(der).unwrap();
        for ext in cert.extensions() {
            if let ParsedExtension::CRLDistributionPoints(points) = ext.parsed_extension() {
                for point in points.iter() {
                    if let Some(DistributionPointName::FullName(names)) = &point.distribution_point
                    {
                        for name in names {
                            if let GeneralName::URI(uri) = name {
                                let shard = uri
                                    .strip_prefix(&format!("{BASE}/crl/test/"))
                                    .and_then(|s| s.strip_suffix(".crl"))
                                    .unwrap_or_else(|| panic!("unexpected CRL DP {uri}"));
                                return shard.parse().unwrap();
                            }
                        }
                    }
                }
            }
        }
        panic!("no CRL distribution point");
    }

    /// The serials a CRL lists, after checking its signature and its issuingDistributionPoint.
    fn listed(crl_der: &[u8], issuer_spki: &[u8], shard: Option<i64>) -> BTreeSet<String> {
        let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(issuer_spki).unwrap();
        let (rest, crl) = CertificateRevocationList::from_der(crl_der).unwrap();
        assert!(rest.is_empty());
        crl.verify_signature(&spki).unwrap();
        let idp = crl
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == "2.5.29.28");
        match shard {
            None => assert!(idp.is_none(), "a complete CRL has no IDP"),
            Some(k) => {
                let idp = idp.expect("a shard's CRL has an IDP");
                assert!(idp.critical, "the IDP is critical");
                let url = format!("{BASE}/crl/test/{k}.crl");
                assert!(
                    idp.value.windows(url.len()).any(|w| w == url.as_bytes()),
                    "the IDP names {url}"
                );
            }
        }
        crl.iter_revoked_certificates()
            .map(|e| canonical_serial_hex(&hex::encode(e.raw_serial())))
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn union_of_shards_is_the_set_of_revoked_unexpired_serials() {
        let w = world(SHARDS).await;
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x05ee_dc21);
        // serial -> (not_after, revoked, shard baked into the certificate)
        let mut model: Vec<(String, i64, bool, i64)> = Vec::new();
        let mut checks = 0;
        for step in 0..160 {
            let roll: u32 = rng.gen_range(0..100);
            if roll < 55 || model.is_empty() {
                // Short-lived certificates expire before the later-dated CRLs below.
                let validity = if rng.gen_bool(0.3) { 120 } else { 86400 };
                let (serial, not_after, der) = issue(&w.ca, validity).await;
                let shard = distribution_point_shard(&der);
                assert_eq!(
                    shard,
                    crl_shard_of(&Serial::from_hex(&serial).unwrap(), SHARDS)
                );
                model.push((serial, not_after, false, shard));
            } else if roll < 85 {
                let live: Vec<usize> = (0..model.len()).filter(|i| !model[*i].2).collect();
                if let Some(&i) = live.get(rng.gen_range(0..live.len().max(1))) {
                    let reason = RevocationReason::from_code(rng.gen_range(0..6)).unwrap();
                    w.revocation.revoke(&model[i].0, reason).await.unwrap();
                    model[i].2 = true;
                }
            } else {
                checks += 1;
                let at = now() + if rng.gen_bool(0.5) { 0 } else { 600 };
                let state = w.revocation.issuer("test").unwrap();
                let expected: BTreeSet<String> = model
                    .iter()
                    .filter(|(_, not_after, revoked, _)| *revoked && *not_after > at)
                    .map(|(s, ..)| s.clone())
                    .collect();
                let mut union = BTreeSet::new();
                for k in 0..i64::from(SHARDS) {
                    let crl = w
                        .revocation
                        .sign_scope(state, CrlScope::Shard(k), at)
                        .await
                        .unwrap();
                    let serials = listed(&crl.der, &w.issuer_spki, Some(k));
                    for s in &serials {
                        assert!(union.insert(s.clone()), "step {step}: {s} in two shards");
                        let shard = model.iter().find(|m| &m.0 == s).unwrap().3;
                        assert_eq!(shard, k, "step {step}: {s} listed in the wrong shard");
                    }
                }
                assert_eq!(union, expected, "step {step}: union of shards at {at}");
                let full = w
                    .revocation
                    .sign_scope(state, CrlScope::Full, at)
                    .await
                    .unwrap();
                assert_eq!(listed(&full.der, &w.issuer_spki, None), expected);
            }
        }
        assert!(checks >= 10, "the sequence checked the CRLs {checks} times");
        assert!(model.iter().filter(|m| m.2).count() >= 20);
        assert_eq!(w.revocation.crl_shards("test").await.unwrap(), 4);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_crl_is_regenerated_after_a_revocation_and_numbers_increase() {
        let w = world(1).await;
        let (serial, _, der) = issue(&w.ca, 86400).await;
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        assert!(format!("{:?}", cert.extensions()).contains("/crl/test.crl"));
        let first = w.revocation.current_crl("test").await.unwrap();
        assert!(listed(&first.der, &w.issuer_spki, None).is_empty());
        let again = w.revocation.current_crl("test").await.unwrap();
        assert_eq!(
            again.number, first.number,
            "a fresh CRL is served from the store"
        );
        w.revocation
            .revoke_with_invalidity(&serial, RevocationReason::KeyCompromise, Some(now() - 3600))
            .await
            .unwrap();
        let second = w.revocation.current_crl("test").await.unwrap();
        assert!(second.number > first.number);
        assert_eq!(
            listed(&second.der, &w.issuer_spki, None),
            BTreeSet::from([serial.clone()])
        );
        let (_, crl) = CertificateRevocationList::from_der(&second.der).unwrap();
        let entry = crl.iter_revoked_certificates().next().unwrap();
        assert!(entry
            .extensions()
            .iter()
            .any(|e| e.oid.to_id_string() == "2.5.29.24"));
        // An unsharded issuer has no shards.
        assert_eq!(w.revocation.crl_shards("test").await.unwrap(), 0);
        assert!(matches!(
            w.revocation
                .current_crl_scope("test", CrlScope::Shard(0))
                .await,
            Err(RevocationError::UnknownShard(..))
        ));
        assert!(matches!(
            w.revocation
                .revoke_with_invalidity(&serial, RevocationReason::KeyCompromise, Some(now() + 60))
                .await,
            Err(RevokeError::InvalidityInFuture)
        ));
    }

    /// A second responder over the world's store and CA, with delegated responders of 600 s.
    fn delegated(w: &World, kek: &Arc<KeyEncryptionKey>) -> Revocation {
        replica(&w.store, &w.ca).with_delegated_responders(
            &HashSet::from(["test".to_string()]),
            kek,
            600,
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_delegated_responder_signs_and_is_renewed_before_expiry() {
        let w = world(1).await;
        let kek = Arc::new(KeyEncryptionKey::generate());
        let revocation = delegated(&w, &kek);
        let at = now();
        let first = revocation.responder(0, at).await.unwrap().unwrap();
        let again = revocation.responder(0, at + 10).await.unwrap().unwrap();
        assert_eq!(
            first.cert_der, again.cert_der,
            "a valid responder is reused"
        );
        let (_, cert) = X509Certificate::from_der(&first.cert_der).unwrap();
        let text = format!("{:?}", cert.extensions());
        assert!(
            text.contains("OCSPSigning") || text.contains("ocsp_signing"),
            "{text}"
        );
        assert!(
            cert.extensions()
                .iter()
                .any(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.48.1.5"),
            "id-pkix-ocsp-nocheck"
        );
        let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(&w.issuer_spki).unwrap();
        cert.verify_signature(Some(&spki)).unwrap();
        // A response never outlives its responder.
        let (serial, _, _) = issue(&w.ca, 86400).await;
        let stored = w.store.certificate(&serial).await.unwrap().unwrap();
        let (response, expires_at) = revocation
            .sign_response(0, &[(b"\x30\x00".as_slice(), Some(&stored))], None, at)
            .await
            .unwrap();
        assert!(expires_at <= first.not_after);
        assert!(
            response
                .windows(first.cert_der.len())
                .any(|w| w == first.cert_der.as_slice()),
            "the response carries the responder certificate"
        );
        // Past two thirds of its life it is replaced, and the new one is stored sealed.
        let renewed = revocation
            .responder(0, first.renew_at + 1)
            .await
            .unwrap()
            .unwrap();
        assert_ne!(renewed.cert_der, first.cert_der);
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM ocsp_responders")
            .fetch_one(w.store.pool())
            .await
            .unwrap();
        assert_eq!(rows, 2);
        let sealed: String = sqlx::query_scalar("SELECT sealed_key FROM ocsp_responders LIMIT 1")
            .fetch_one(w.store.pool())
            .await
            .unwrap();
        assert!(sealed.contains("PKID ENCRYPTED PRIVATE KEY"), "{sealed}");
        // Another replica (same database and KEK) loads the stored responder instead of issuing.
        let replica = delegated(&w, &kek);
        let loaded = replica.responder(0, now()).await.unwrap().unwrap();
        assert!(loaded.cert_der == renewed.cert_der || loaded.cert_der == first.cert_der);
        let rows_after: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM ocsp_responders")
            .fetch_one(w.store.pool())
            .await
            .unwrap();
        assert_eq!(rows_after, 2, "the replica issued no responder of its own");
    }

    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        assert!(content.len() < 128);
        let mut out = vec![tag, content.len() as u8];
        out.extend_from_slice(content);
        out
    }

    /// An OCSPRequest for one serial of the world's issuer, SHA-1 CertID, no nonce.
    fn ocsp_request(w: &World, serial_hex: &str) -> Vec<u8> {
        let state = w.revocation.issuer("test").unwrap();
        let algorithm = tlv(0x30, &[&tlv(0x06, OID_SHA1)[..], &[0x05, 0x00]].concat());
        let cert_id = tlv(
            0x30,
            &[
                algorithm,
                tlv(0x04, &state.name_sha1),
                tlv(0x04, &state.key_sha1),
                tlv(0x02, &hex::decode(serial_hex).unwrap()),
            ]
            .concat(),
        );
        let request = tlv(0x30, &cert_id);
        tlv(0x30, &tlv(0x30, &tlv(0x30, &request)))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cached_ocsp_responses_are_re_signed_before_they_go_stale() {
        let w = world(1).await;
        let (serial, _, _) = issue(&w.ca, 86400).await;
        let request = ocsp_request(&w, &serial);
        let first = w.revocation.answer_ocsp(&request).await;
        assert_eq!(
            &first[..5],
            &[0x30, 0x82, first[2], first[3], 0x0a],
            "{first:02x?}"
        );
        assert_eq!(first[6], 0, "successful");
        assert_eq!(
            w.revocation.answer_ocsp(&request).await,
            first,
            "served from the cache"
        );
        // Nothing is due yet; past half of the response's life it is re-signed ahead of use.
        w.revocation.refresh_ocsp_cache(now() + 60).await;
        assert_eq!(w.revocation.answer_ocsp(&request).await, first);
        w.revocation.refresh_ocsp_cache(now() + 1801).await;
        let refreshed = w.revocation.answer_ocsp(&request).await;
        assert_ne!(refreshed, first, "re-signed (ECDSA signatures differ)");
        assert_eq!(w.revocation.answer_ocsp(&request).await, refreshed);
        // A revocation is never hidden by the cache.
        w.revocation
            .revoke(&serial, RevocationReason::Superseded)
            .await
            .unwrap();
        let revoked = w.revocation.answer_ocsp(&request).await;
        assert_ne!(revoked, refreshed);
        assert!(
            revoked
                .windows(5)
                .any(|p| p == [0xa0, 0x03, 0x0a, 0x01, 0x04]),
            "revoked with reason superseded: {revoked:02x?}"
        );
    }

    /// A certificate issued and revoked, then a wait past the revocation's second, so that a
    /// CRL signed now counts as newer than the revocation.
    async fn revoked_a_second_ago(w: &World) -> String {
        let (serial, _, _) = issue(&w.ca, 86400).await;
        w.revocation
            .revoke(&serial, RevocationReason::Superseded)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(1100)).await;
        serial
    }

    /// How many CRLs (of every scope) are stored with a number above `number`.
    async fn crls_numbered_above(w: &World, number: i64) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM crls WHERE number > ?")
            .bind(number)
            .fetch_one(w.store.pool())
            .await
            .unwrap()
    }

    /// Replicas over one store that fetch the CRL at once after a revocation serve one CRL:
    /// one signs under the lease, the others find its CRL (checked again once a replica has
    /// the lease, as another may have signed and released in between).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn replicas_fetching_at_once_after_a_revocation_serve_one_crl() {
        let w = world(1).await;
        let replicas: Vec<Arc<Revocation>> =
            (0..6).map(|_| Arc::new(replica(&w.store, &w.ca))).collect();
        let mut before = w.revocation.current_crl("test").await.unwrap().number;
        for round in 0..3 {
            let serial = revoked_a_second_ago(&w).await;
            let mut tasks = Vec::new();
            for replica in &replicas {
                for _ in 0..3 {
                    let replica = replica.clone();
                    tasks.push(tokio::spawn(async move {
                        replica.current_crl("test").await.unwrap()
                    }));
                }
            }
            let mut numbers = BTreeSet::new();
            for task in tasks {
                let crl = task.await.unwrap();
                assert!(listed(&crl.der, &w.issuer_spki, None).contains(&serial));
                numbers.insert(crl.number);
            }
            assert_eq!(numbers.len(), 1, "round {round}: one CRL, not {numbers:?}");
            let number = numbers.into_iter().next().unwrap();
            assert!(number > before);
            assert_eq!(
                crls_numbered_above(&w, before).await,
                1,
                "round {round}: one CRL signed for the revocation"
            );
            before = number;
        }
    }

    /// The race the lease alone leaves open: replica B finds no fresh CRL, replica A signs,
    /// stores and releases, then B takes the free lease. B must serve A's CRL, not sign again.
    #[tokio::test]
    async fn a_replica_taking_the_lease_after_another_signed_serves_its_crl() {
        let w = world(1).await;
        let b = replica(&w.store, &w.ca);
        let before = w.revocation.current_crl("test").await.unwrap().number;
        let serial = revoked_a_second_ago(&w).await;
        let at = now();
        assert!(
            b.fresh_stored("test", CrlScope::Full, at)
                .await
                .unwrap()
                .is_none(),
            "B finds no CRL newer than the revocation"
        );
        let signed = w.revocation.current_crl("test").await.unwrap();
        assert!(signed.number > before);
        let state = b.issuer("test").unwrap();
        let served = b
            .sign_if_lease_free(state, CrlScope::Full, false, at)
            .await
            .expect("the lease is free")
            .unwrap();
        assert_eq!(served.number, signed.number, "B serves A's CRL");
        assert!(listed(&served.der, &w.issuer_spki, None).contains(&serial));
        assert_eq!(
            crls_numbered_above(&w, before).await,
            1,
            "one CRL signed for the revocation"
        );
        // Forced (an operator's regeneration), B signs a new one under the lease.
        let forced = b
            .sign_if_lease_free(state, CrlScope::Full, true, now())
            .await
            .expect("the lease is free")
            .unwrap();
        assert!(forced.number > signed.number);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_lease_holder_at_a_time() {
        let w = world(1).await;
        let at = now();
        let mut tasks = Vec::new();
        for i in 0..8 {
            let store = w.store.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .try_lease("crl:test", &format!("replica-{i}"), at, at + 60)
                    .await
                    .unwrap()
            }));
        }
        let mut winners = 0;
        for task in tasks {
            winners += usize::from(task.await.unwrap());
        }
        assert_eq!(winners, 1, "exactly one of eight concurrent takers wins");
        let holder =
            sqlx::query_scalar::<_, String>("SELECT holder FROM leases WHERE name = 'crl:test'")
                .fetch_one(w.store.pool())
                .await
                .unwrap();
        assert!(
            w.store
                .try_lease("crl:test", &holder, at, at + 60)
                .await
                .unwrap(),
            "the holder renews"
        );
        assert!(!w
            .store
            .try_lease("crl:test", "other", at + 30, at + 90)
            .await
            .unwrap());
        assert!(
            w.store
                .try_lease("crl:test", "other", at + 61, at + 120)
                .await
                .unwrap(),
            "an expired lease is taken over"
        );
        w.store.release_lease("crl:test", "other").await.unwrap();
        assert!(
            w.store
                .try_lease("crl:test", &holder, at + 62, at + 120)
                .await
                .unwrap(),
            "a released lease is free"
        );
    }
}

//! Answering OCSP (RFC 6960) without being a signing oracle: a request's one CertID matched to a
//! local issuer and a certificate it issued, and answered with a response signed once and
//! cached — by the delegated responder or the issuer's backend — until its half-life, when the
//! refresh task signs it again (or at once when the certificate's revocation changes).
//!
//! What an unauthenticated client can make pkid sign is therefore bounded by the certificates
//! pkid issued, not by the requests it sends:
//! - the nonce (RFC 8954) is ignored, never echoed: RFC 8954 §2.1 lets a responder leave it out,
//!   and echoing it would need a fresh signature per request;
//! - a serial this issuer never issued (or whose issuance never completed) is answered
//!   `unauthorized`, an unsigned status (RFC 6960 §2.3, RFC 5019 §2.2.3) — as Boulder does —
//!   rather than a signed `unknown`, which would be a fresh signature per serial tried;
//! - a request for several certificates is `malformedRequest` (RFC 5019 §2.1.1: one CertID per
//!   request), as a response over a combination of CertIDs could not be cached;
//! - concurrent requests for the same certificate wait for one signature (a lock per shard of
//!   CertIDs, the cache checked again under it).
//!
//! The rate limit per client address is the repository surface's (`api::repository`).

use std::collections::HashMap;
use std::sync::Arc;

use pkid_backends::local::ocsp_request::{parse_cert_id, parse_ocsp_request, CertId, HashAlg};
use pkid_backends::ocsp::{
    build_ocsp_response, error_response, OcspCertStatus, OcspError, OcspResponseRequest,
    OcspSingleResponse,
};
use pkid_backends::BackendError;

use super::{canonical_serial_hex, odt, reason_of, IssuerState, Revocation, RevocationError};
use crate::store::{now, CertificateRow, CertificateStatus, StoreError};

/// Cached OCSP responses by (issuer name, CertID DER).
pub(super) type OcspCache = HashMap<(String, Vec<u8>), Arc<CachedResponse>>;

pub(super) struct CachedResponse {
    /// The revocation the response states; a change of it makes the response stale.
    revocation: RevocationState,
    stale_at: i64,
    /// When the response's nextUpdate passes (it is never served after).
    expires_at: i64,
    der: Vec<u8>,
}

/// What of a certificate's row its OCSP response states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RevocationState {
    revoked_at: Option<i64>,
    reason: Option<i64>,
    invalidity_date: Option<i64>,
}

impl RevocationState {
    fn of(row: &CertificateRow) -> RevocationState {
        RevocationState {
            revoked_at: row.revoked_at,
            reason: row.revocation_reason,
            invalidity_date: row.invalidity_date,
        }
    }
}

/// Most cached OCSP responses re-signed ahead of time per refresh round.
const OCSP_REFRESH_BATCH: usize = 10_000;
/// Most cached OCSP responses kept.
const OCSP_CACHE_MAX: usize = 100_000;
/// Locks that make concurrent requests for one certificate wait for one signature.
pub(super) const SIGNING_SHARDS: usize = 64;

impl Revocation {
    /// Answer one DER OCSPRequest with a DER OCSPResponse (never an HTTP error: RFC 6960
    /// errors travel inside the response). Signs only when no cached response states the
    /// certificate's current status.
    pub async fn answer_ocsp(&self, request_der: &[u8]) -> Vec<u8> {
        let request = match parse_ocsp_request(request_der) {
            Ok(r) => r,
            Err(e) => {
                tracing::info!(error = %e, "malformed OCSP request");
                return error_response(OcspError::MalformedRequest);
            }
        };
        let [id] = request.cert_ids.as_slice() else {
            tracing::info!(
                cert_ids = request.cert_ids.len(),
                "OCSP request for several certificates"
            );
            return error_response(OcspError::MalformedRequest);
        };
        let Some(issuer) = self.issuer_of(id).await else {
            return error_response(OcspError::Unauthorized);
        };
        let index = issuer.as_ref();
        let stored = match self.lookup(index, &id.serial).await {
            Ok(Some(stored)) => stored,
            Ok(None) => return error_response(OcspError::Unauthorized),
            Err(e) => {
                tracing::error!(error = %e, "OCSP lookup failed");
                return error_response(OcspError::TryLater);
            }
        };
        let state = RevocationState::of(&stored);
        if let Some(hit) = self.cached(index, &id.der, state, now()) {
            return hit;
        }
        // One signature for concurrent requests of this certificate: the first signs, the
        // others find its response in the cache.
        let shard =
            usize::from(id.der.iter().fold(0u8, |a, b| a.wrapping_add(*b))) % SIGNING_SHARDS;
        let _signing = self.signing_locks[shard].lock().await;
        let at = now();
        if let Some(hit) = self.cached(index, &id.der, state, at) {
            return hit;
        }
        match self.sign_response(index, &id.der, &stored, at).await {
            Ok((der, expires_at)) => {
                self.remember(index, &id.der, state, at, expires_at, &der);
                der
            }
            Err(e) => {
                tracing::error!(issuer = %index.ca.name, error = %e, "OCSP signing failed");
                error_response(OcspError::TryLater)
            }
        }
    }

    /// The local issuer a CertID names, by its name and key hashes.
    async fn issuer_of(&self, id: &CertId) -> Option<Arc<IssuerState>> {
        self.issuer_states()
            .await
            .into_iter()
            .find(|i| match id.hash {
                HashAlg::Sha1 => i.name_sha1 == id.name_hash && i.key_sha1 == id.key_hash,
                HashAlg::Sha256 => i.name_sha256 == id.name_hash && i.key_sha256 == id.key_hash,
            })
    }

    /// The issued certificate of this issuer with this serial (content octets, no sign byte).
    async fn lookup(
        &self,
        index: &IssuerState,
        serial: &[u8],
    ) -> Result<Option<CertificateRow>, StoreError> {
        let issuer = &index.ca.name;
        let stored = self
            .store
            .certificate(&canonical_serial_hex(&hex::encode(serial)))
            .await?;
        Ok(stored.filter(|c| &c.issuer == issuer && c.status == CertificateStatus::Issued))
    }

    /// Sign the response for one certificate (`cert_id`: its CertID DER as asked), by the
    /// delegated responder when there is one, else through the issuer's backend. Returns the
    /// response and when it stops being valid.
    pub(super) async fn sign_response(
        &self,
        state: &IssuerState,
        cert_id: &[u8],
        stored: &CertificateRow,
        at: i64,
    ) -> Result<(Vec<u8>, i64), RevocationError> {
        let responder = match self.responder(state, at).await {
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
        let req = OcspResponseRequest {
            produced_at: odt(at),
            responses: vec![OcspSingleResponse {
                cert_id_der: cert_id.to_vec(),
                status: cert_status(stored),
                this_update: odt(at - 60),
                next_update: Some(odt(next_update)),
            }],
            nonce: None,
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
        index: &IssuerState,
        cert_id: &[u8],
        revocation: RevocationState,
        at: i64,
    ) -> Option<Vec<u8>> {
        let cache = self.cache.lock().ok()?;
        let hit = cache.get(&(index.ca.name.clone(), cert_id.to_vec()))?;
        (hit.revocation == revocation && hit.stale_at > at && hit.expires_at > at)
            .then(|| hit.der.clone())
    }

    fn remember(
        &self,
        index: &IssuerState,
        cert_id: &[u8],
        revocation: RevocationState,
        at: i64,
        expires_at: i64,
        der: &[u8],
    ) {
        let cached = CachedResponse {
            revocation,
            // Re-signed at half-life, so a cached answer is never close to expiry.
            stale_at: at + (expires_at - at) / 2,
            expires_at,
            der: der.to_vec(),
        };
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= OCSP_CACHE_MAX {
                cache.clear();
            }
            cache.insert((index.ca.name.clone(), cert_id.to_vec()), Arc::new(cached));
        }
    }

    /// Re-sign cached responses that go stale before `horizon`, with the current status, so
    /// relying parties keep getting pre-signed answers (bounded per round).
    pub async fn refresh_ocsp_cache(&self, horizon: i64) {
        let due: Vec<(String, Vec<u8>)> = match self.cache.lock() {
            Ok(cache) => cache
                .iter()
                .filter(|(_, c)| c.stale_at <= horizon)
                .map(|(key, _)| key.clone())
                .take(OCSP_REFRESH_BATCH)
                .collect(),
            Err(_) => return,
        };
        for (issuer, cert_id) in due {
            let Ok(parsed) = parse_cert_id(&cert_id) else {
                continue;
            };
            let Ok(issuer_state) = self.issuer(&issuer).await else {
                // An issuer no longer published (a deleted CA): its answers go.
                if let Ok(mut cache) = self.cache.lock() {
                    cache.remove(&(issuer, cert_id));
                }
                continue;
            };
            let index = issuer_state.as_ref();
            let stored = match self.lookup(index, &parsed.serial).await {
                Ok(Some(stored)) => stored,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "OCSP refresh lookup failed");
                    return;
                }
            };
            let at = now();
            match self.sign_response(index, &cert_id, &stored, at).await {
                Ok((der, expires_at)) => {
                    let state = RevocationState::of(&stored);
                    self.remember(index, &cert_id, state, at, expires_at, &der)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "re-signing a cached OCSP response failed");
                    return;
                }
            }
        }
    }
}

fn cert_status(stored: &CertificateRow) -> OcspCertStatus {
    match stored.revoked_at {
        None => OcspCertStatus::Good,
        Some(t) => OcspCertStatus::Revoked {
            at: odt(t),
            reason: reason_of(stored.revocation_reason),
            invalidity_date: stored.invalidity_date.map(odt),
        },
    }
}

//! Answering OCSP (RFC 6960): a request's CertIDs matched to one local issuer, each certificate's
//! status looked up, one response signed by the delegated responder or the issuer's backend,
//! echoing the nonce (RFC 8954); responses without a nonce cached and re-signed ahead of their
//! half-life.

use std::collections::HashMap;
use std::sync::Arc;

use pkid_backends::local::ocsp_request::{parse_cert_id, parse_ocsp_request, HashAlg};
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
    revoked_at: Option<i64>,
    stale_at: i64,
    /// When the response's nextUpdate passes (it is never served after).
    expires_at: i64,
    der: Vec<u8>,
}

/// Most cached OCSP responses re-signed ahead of time per refresh round.
const OCSP_REFRESH_BATCH: usize = 10_000;
/// Most cached OCSP responses kept.
const OCSP_CACHE_MAX: usize = 100_000;

impl Revocation {
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
        let issuers = self.issuer_states().await;
        let mut issuer_index = None;
        for id in &request.cert_ids {
            let found = issuers.iter().position(|i| match id.hash {
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
        let Some(state) = issuer_index.and_then(|i| issuers.get(i)) else {
            return error_response(OcspError::MalformedRequest);
        };
        let at = now();

        let mut looked_up = Vec::with_capacity(request.cert_ids.len());
        for id in &request.cert_ids {
            match self.lookup(state, &id.serial).await {
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
                if let Some(hit) = self.cached(state, &id.der, stored.revoked_at, at) {
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
            .sign_response(state, &ids, request.nonce.clone(), at)
            .await
        {
            Ok((der, expires_at)) => {
                if cacheable {
                    if let (Some(id), Some(Some(stored))) =
                        (request.cert_ids.first(), looked_up.first())
                    {
                        self.remember(state, &id.der, stored.revoked_at, at, expires_at, &der);
                    }
                }
                der
            }
            Err(e) => {
                tracing::error!(issuer = %state.ca.name, error = %e, "OCSP signing failed");
                error_response(OcspError::TryLater)
            }
        }
    }

    /// The issued certificate of this issuer with this serial (content octets, no sign byte).
    async fn lookup(
        &self,
        state: &IssuerState,
        serial: &[u8],
    ) -> Result<Option<CertificateRow>, StoreError> {
        let issuer = &state.ca.name;
        let stored = self
            .store
            .certificate(&canonical_serial_hex(&hex::encode(serial)))
            .await?;
        Ok(stored.filter(|c| &c.issuer == issuer && c.status == CertificateStatus::Issued))
    }

    /// Sign one response for `ids` (CertID DER, stored certificate), by the delegated
    /// responder when there is one, else through the issuer's backend. Returns the response
    /// and when it stops being valid.
    pub(super) async fn sign_response(
        &self,
        state: &IssuerState,
        ids: &[(&[u8], Option<&CertificateRow>)],
        nonce: Option<Vec<u8>>,
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
        state: &IssuerState,
        cert_id: &[u8],
        revoked_at: Option<i64>,
        at: i64,
    ) -> Option<Vec<u8>> {
        let cache = self.cache.lock().ok()?;
        let hit = cache.get(&(state.ca.name.clone(), cert_id.to_vec()))?;
        (hit.revoked_at == revoked_at && hit.stale_at > at && hit.expires_at > at)
            .then(|| hit.der.clone())
    }

    fn remember(
        &self,
        state: &IssuerState,
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
            cache.insert((state.ca.name.clone(), cert_id.to_vec()), Arc::new(cached));
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
            let Ok(state) = self.issuer(&issuer).await else {
                // An issuer no longer published (a deleted CA): its answers go.
                if let Ok(mut cache) = self.cache.lock() {
                    cache.remove(&(issuer, cert_id));
                }
                continue;
            };
            let state = state.as_ref();
            let stored = match self.lookup(state, &parsed.serial).await {
                Ok(Some(stored)) => stored,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "OCSP refresh lookup failed");
                    return;
                }
            };
            let at = now();
            match self
                .sign_response(state, &[(&cert_id, Some(&stored))], None, at)
                .await
            {
                Ok((der, expires_at)) => {
                    self.remember(state, &cert_id, stored.revoked_at, at, expires_at, &der)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "re-signing a cached OCSP response failed");
                    return;
                }
            }
        }
    }
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

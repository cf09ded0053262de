//! Revocation publishing: CRLs (RFC 5280 §5) and an OCSP responder (RFC 6960) for every local
//! issuer, both signed through the issuer's backend.
//!
//! Every surface records revocations in one place (`certificates.revoked_at`); this module turns
//! that into signed documents. CRLs are kept in the database so every replica serves the same
//! bytes; a CRL older than the issuer's newest revocation is regenerated on the next fetch, and a
//! background task refreshes CRLs before `nextUpdate`. OCSP responses without a nonce are cached
//! per (issuer, serial, status) and re-signed before they go stale.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use pkid_backends::ocsp::{
    error_response, OcspCertStatus, OcspError, OcspResponseRequest, OcspSingleResponse,
};
use pkid_backends::{CrlRequest, RevocationReason, RevokedEntry, Serial};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::ca::Ca;
use crate::store::{now, CrlRow, Store, StoreError};

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
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("backend: {0}")]
    Backend(#[from] pkid_backends::BackendError),
}

/// What OCSP needs to recognise an issuer in a CertID.
struct IssuerHashes {
    ca: Arc<Ca>,
    name_sha1: Vec<u8>,
    key_sha1: Vec<u8>,
    name_sha256: Vec<u8>,
    key_sha256: Vec<u8>,
}

struct CachedResponse {
    revoked_at: Option<i64>,
    stale_at: i64,
    der: Vec<u8>,
}

/// Why a revocation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum RevokeError {
    #[error("no issued certificate has serial {0}")]
    NotFound(String),
    #[error("certificate {0} is revoked already")]
    AlreadyRevoked(String),
    #[error("the issuer's backend refused or failed: {0}")]
    Backend(pkid_backends::BackendError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

pub struct Revocation {
    store: Store,
    /// Every issuer by name, local or upstream: revocations go to its backend.
    cas: HashMap<String, Arc<Ca>>,
    /// Local issuers, which publish CRLs and OCSP.
    issuers: Vec<IssuerHashes>,
    /// Woken by each revocation: a debounced CRL regeneration follows.
    pub revoked: tokio::sync::Notify,
    settings: RevocationSettings,
    cache: Mutex<HashMap<(usize, String), Arc<CachedResponse>>>,
    /// One CRL generation per issuer at a time in this process.
    crl_locks: HashMap<String, tokio::sync::Mutex<()>>,
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

impl Revocation {
    /// `cas`: the local issuers (backends that sign CRLs).
    pub fn new(store: Store, cas: &[Arc<Ca>], settings: RevocationSettings) -> Revocation {
        let mut issuers = Vec::new();
        let mut crl_locks = HashMap::new();
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
            issuers.push(IssuerHashes {
                ca: ca.clone(),
                name_sha1: sha1(name),
                key_sha1: sha1(key),
                name_sha256: sha256(name),
                key_sha256: sha256(key),
            });
            crl_locks.insert(ca.name.clone(), tokio::sync::Mutex::new(()));
        }
        Revocation {
            store,
            cas: cas.iter().map(|ca| (ca.name.clone(), ca.clone())).collect(),
            issuers,
            revoked: tokio::sync::Notify::new(),
            settings,
            cache: Mutex::new(HashMap::new()),
            crl_locks,
        }
    }

    /// Revoke an issued certificate, whatever surface asked: the issuer's backend first
    /// (upstream CAs must agree), then the one record every CRL and OCSP answer comes from.
    pub async fn revoke(
        &self,
        serial_hex: &str,
        reason: RevocationReason,
    ) -> Result<(), RevokeError> {
        let serial_hex = canonical_serial_hex(serial_hex);
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
            .revoke_certificate(&serial_hex, code, now())
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

    fn issuer(&self, name: &str) -> Result<&IssuerHashes, RevocationError> {
        self.issuers
            .iter()
            .find(|i| i.ca.name == name)
            .ok_or_else(|| RevocationError::UnknownIssuer(name.to_string()))
    }

    /// Sign a fresh CRL for `issuer` and store it.
    pub async fn generate_crl(&self, issuer: &str) -> Result<CrlRow, RevocationError> {
        let ca = self.issuer(issuer)?.ca.clone();
        let generated_at = now();
        let entries = self
            .store
            .revoked_unexpired(issuer, generated_at)
            .await?
            .into_iter()
            .filter_map(|r| {
                Some(RevokedEntry {
                    serial: Serial::from_hex(&r.serial).ok()?,
                    revoked_at: odt(r.revoked_at),
                    reason: r
                        .reason
                        .and_then(|c| u8::try_from(c).ok())
                        .and_then(RevocationReason::from_code)
                        .filter(|r| *r != RevocationReason::Unspecified),
                    invalidity_date: None,
                })
            })
            .collect();
        let this_update = generated_at - 60;
        let next_update = generated_at + self.settings.crl_lifetime_secs;
        let number = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000;
        let number = i64::try_from(number).unwrap_or(i64::MAX);
        let der = ca
            .backend
            .sign_crl(CrlRequest {
                crl_number: u64::try_from(number).unwrap_or_default(),
                this_update: odt(this_update),
                next_update: odt(next_update),
                entries,
            })
            .await?;
        let row = CrlRow {
            issuer: issuer.to_string(),
            number,
            generated_at,
            this_update,
            next_update,
            der,
        };
        self.store.insert_crl(&row).await?;
        self.store.prune_crls(issuer, 5).await?;
        tracing::info!(issuer, number, "CRL generated");
        Ok(row)
    }

    /// The issuer's current CRL: the stored one while it is fresh and no revocation is newer,
    /// else a new one.
    pub async fn current_crl(&self, issuer: &str) -> Result<CrlRow, RevocationError> {
        let lock = self
            .crl_locks
            .get(issuer)
            .ok_or_else(|| RevocationError::UnknownIssuer(issuer.to_string()))?;
        let _guard = lock.lock().await;
        let latest = self.store.latest_crl(issuer).await?;
        let last_revocation = self.store.last_revocation(issuer).await?;
        let refresh_margin = self.settings.crl_lifetime_secs / 3;
        match latest {
            Some(crl)
                if crl.generated_at > last_revocation
                    && crl.next_update - refresh_margin > now() =>
            {
                Ok(crl)
            }
            _ => self.generate_crl(issuer).await,
        }
    }

    /// Refresh every issuer's CRL that needs it (scheduled).
    pub async fn refresh_all(&self) {
        for name in self.issuer_names() {
            if let Err(e) = self.current_crl(&name).await {
                tracing::warn!(issuer = %name, error = %e, "CRL refresh failed");
            }
        }
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
        let issuer = &self.issuers[index];
        let at = now();

        // Cached answer for the common case: one certificate, no nonce.
        let single_serial = (request.cert_ids.len() == 1 && request.nonce.is_none())
            .then(|| hex::encode(&request.cert_ids[0].serial));

        let mut responses = Vec::with_capacity(request.cert_ids.len());
        let mut cache_key_state = None;
        for id in &request.cert_ids {
            let serial = hex::encode(&id.serial);
            let stored = match self.store.certificate(&serial).await {
                Ok(c) => c.filter(|c| c.issuer == issuer.ca.name && c.status == "issued"),
                Err(e) => {
                    tracing::error!(error = %e, "OCSP lookup failed");
                    return error_response(OcspError::TryLater);
                }
            };
            let status = match &stored {
                None => OcspCertStatus::Unknown,
                Some(c) => match c.revoked_at {
                    None => OcspCertStatus::Good,
                    Some(t) => OcspCertStatus::Revoked {
                        at: odt(t),
                        reason: c
                            .revocation_reason
                            .and_then(|r| u8::try_from(r).ok())
                            .and_then(RevocationReason::from_code),
                    },
                },
            };
            if single_serial.is_some() {
                cache_key_state = Some(stored.as_ref().and_then(|c| c.revoked_at));
                if let Some(hit) = self.cached(
                    index,
                    &serial,
                    cache_key_state.flatten(),
                    stored.is_some(),
                    at,
                    &id.der,
                ) {
                    return hit;
                }
            }
            responses.push(OcspSingleResponse {
                cert_id_der: id.der.clone(),
                status,
                this_update: odt(at - 60),
                next_update: Some(odt(at + self.settings.ocsp_lifetime_secs)),
            });
        }
        let req = OcspResponseRequest {
            produced_at: odt(at),
            responses,
            nonce: request.nonce.clone(),
        };
        let der = match issuer.ca.backend.sign_ocsp(req).await {
            Ok(der) => der,
            Err(e) => {
                tracing::error!(issuer = %issuer.ca.name, error = %e, "OCSP signing failed");
                return error_response(OcspError::TryLater);
            }
        };
        if let (Some(serial), Some(revoked_at)) = (single_serial, cache_key_state) {
            let cached = CachedResponse {
                revoked_at,
                // Re-sign at half-life, so a cached answer is never close to expiry.
                stale_at: at + self.settings.ocsp_lifetime_secs / 2,
                der: der.clone(),
            };
            if let Ok(mut cache) = self.cache.lock() {
                if cache.len() > 100_000 {
                    cache.clear();
                }
                cache.insert(
                    (
                        index,
                        format!("{serial}/{}", hex::encode(&request.cert_ids[0].der)),
                    ),
                    Arc::new(cached),
                );
            }
        }
        der
    }

    fn cached(
        &self,
        index: usize,
        serial: &str,
        revoked_at: Option<i64>,
        known: bool,
        at: i64,
        cert_id: &[u8],
    ) -> Option<Vec<u8>> {
        if !known {
            return None;
        }
        let cache = self.cache.lock().ok()?;
        let hit = cache.get(&(index, format!("{serial}/{}", hex::encode(cert_id))))?;
        (hit.revoked_at == revoked_at && hit.stale_at > at).then(|| hit.der.clone())
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
        let (cert_id, _) = expect(single.content, 0x30)?;
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
        cert_ids.push(CertId {
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
        });
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

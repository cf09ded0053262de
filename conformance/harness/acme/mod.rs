//! The harness's one ACME client (RFC 8555), written by hand so that it shares no code with the
//! server it checks. This file is its core; two layers stand on it:
//!
//! - `harness::client`, the suites': crafted requests, chosen nonces, raw answers, panics on
//!   failure (and `harness::http01`, the responder it serves key authorizations through);
//! - [`load`], pkid-loadgen's: the requests of one http-01 issuance, each a `Result` whose error
//!   is classified by problem type (§6.7).
//!
//! The core:
//! - JWS (§6.2): ES256 over P-256, flattened JSON serialization, protected header
//!   `{alg, nonce, url, jwk | kid}`, signature as raw r‖s (RFC 7518 §3.4); POST-as-GET (§6.3)
//! - JWK thumbprint (RFC 7638): SHA-256 of the canonical JSON `{"crv","kty","x","y"}`; key
//!   authorizations (§8.1)
//! - the directory (§7.1.1), nonces (§7.2), the `application/jose+json` POST
//! - the newOrder and finalize payloads (§7.4) and the CSR
//!
//! pkid-loadgen mounts this folder alone: it needs normal dependencies only and never panics, as
//! the crate's lint wall asks of a binary.

// The test binary and the acme bench compile the load generator's layer without using it.
#[allow(dead_code)]
pub mod load;

use std::fmt;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// The problem type a server answers a stale or unknown nonce with (§6.5).
pub const BAD_NONCE: &str = "urn:ietf:params:acme:error:badNonce";

pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// What went wrong, classified so that a run can count errors by kind.
#[derive(Debug)]
pub enum AcmeError {
    /// No HTTP answer: connection refused or reset, TLS, timeout of the request itself.
    Transport(String),
    /// An error answer; `kind` is the problem type without its `urn:ietf:params:acme:error:`.
    Problem {
        status: u16,
        kind: String,
        detail: String,
    },
    /// An object reached `invalid`; `kind` as for `Problem`, from the object's `error`.
    Invalid { kind: String, detail: String },
    /// An answer that does not fit RFC 8555 (missing header, unparsable body …).
    Protocol(String),
    /// A step did not finish in the time given (the load generator's step bound; the suites
    /// bound their tests otherwise).
    #[allow(dead_code)]
    Timeout,
}

impl AcmeError {
    /// A short, stable label for counting: `transport`, `429 rateLimited`, `invalid connection` …
    /// (the load generator's report; the suites panic with the whole error instead).
    #[allow(dead_code)]
    pub fn kind(&self) -> String {
        match self {
            AcmeError::Transport(_) => "transport".into(),
            AcmeError::Problem { status, kind, .. } => format!("{status} {kind}"),
            AcmeError::Invalid { kind, .. } => format!("invalid {kind}"),
            AcmeError::Protocol(_) => "protocol".into(),
            AcmeError::Timeout => "timeout".into(),
        }
    }
}

impl fmt::Display for AcmeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AcmeError::Transport(m) => write!(f, "transport: {m}"),
            AcmeError::Problem {
                status,
                kind,
                detail,
            } => write!(f, "{status} {kind}: {detail}"),
            AcmeError::Invalid { kind, detail } => write!(f, "invalid ({kind}): {detail}"),
            AcmeError::Protocol(m) => write!(f, "protocol: {m}"),
            AcmeError::Timeout => write!(f, "timed out"),
        }
    }
}

impl std::error::Error for AcmeError {}

/// An RFC 7807 problem document, as far as classification needs it.
#[derive(Debug, Default, Deserialize)]
pub struct Problem {
    #[serde(rename = "type", default)]
    pub problem_type: String,
    #[serde(default)]
    pub detail: String,
}

impl Problem {
    /// The type without its `urn:ietf:params:acme:error:` (`unknown` when there is none).
    pub fn short_type(&self) -> String {
        let short = self
            .problem_type
            .strip_prefix("urn:ietf:params:acme:error:")
            .unwrap_or(&self.problem_type);
        if short.is_empty() {
            "unknown".into()
        } else {
            short.into()
        }
    }

    pub fn into_invalid(self) -> AcmeError {
        AcmeError::Invalid {
            kind: self.short_type(),
            detail: self.detail,
        }
    }
}

/// A request that got no HTTP answer, with every cause reqwest gives.
pub fn transport(context: &str, error: &reqwest::Error) -> AcmeError {
    let mut message = format!("{context}: {error}");
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    AcmeError::Transport(message)
}

/// An ES256 account key with its public JWK and RFC 7638 thumbprint.
pub struct AccountKey {
    pair: EcdsaKeyPair,
    rng: SystemRandom,
    pub jwk: Value,
    pub thumbprint: String,
}

impl AccountKey {
    /// A fresh P-256 key.
    pub fn random() -> Result<AccountKey, AcmeError> {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .map_err(|_| AcmeError::Protocol("generating a P-256 account key".into()))?;
        let point = pair.public_key().as_ref();
        // An uncompressed SEC1 point: 0x04 ‖ x (32 bytes) ‖ y (32 bytes).
        if point.len() != 65 || point[0] != 4 {
            return Err(AcmeError::Protocol(
                "unexpected P-256 public key encoding".into(),
            ));
        }
        let x = b64(&point[1..33]);
        let y = b64(&point[33..65]);
        // RFC 7638 §3: required members only, lexicographic order, no whitespace.
        let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let thumbprint = b64(Sha256::digest(canonical.as_bytes()));
        Ok(AccountKey {
            pair,
            rng: SystemRandom::new(),
            jwk: json!({"kty": "EC", "crv": "P-256", "x": x, "y": y}),
            thumbprint,
        })
    }

    /// The http-01 key authorization for `token` (§8.1).
    pub fn key_authorization(&self, token: &str) -> String {
        format!("{token}.{}", self.thumbprint)
    }

    /// The flattened JWS (§6.2) of `payload` (`None`: POST-as-GET's empty payload) for `url`,
    /// signed with `kid` once the account is registered, else with the `jwk`.
    pub fn jws(
        &self,
        url: &str,
        nonce: &str,
        kid: Option<&str>,
        payload: Option<&Value>,
    ) -> Result<Value, AcmeError> {
        let mut protected = json!({"alg": "ES256", "nonce": nonce, "url": url});
        match kid {
            Some(kid) => protected["kid"] = json!(kid),
            None => protected["jwk"] = self.jwk.clone(),
        }
        let payload = match payload {
            Some(value) => value.to_string(),
            None => String::new(),
        };
        self.sign_flattened(&protected, payload.as_bytes())
    }

    /// The flattened JWS of `payload` (already serialized, any bytes) under any protected
    /// header: what [`AccountKey::jws`] sends, and what no client would.
    pub fn sign_flattened(&self, protected: &Value, payload: &[u8]) -> Result<Value, AcmeError> {
        let protected = b64(protected.to_string());
        let payload = b64(payload);
        let signing_input = format!("{protected}.{payload}");
        let signature = self
            .pair
            .sign(&self.rng, signing_input.as_bytes())
            .map_err(|_| AcmeError::Protocol("signing a JWS".into()))?;
        Ok(json!({
            "protected": protected,
            "payload": payload,
            "signature": b64(signature.as_ref()),
        }))
    }
}

/// GETs the directory (§7.1.1); anything but a 200 with JSON is an error.
pub async fn directory(http: &reqwest::Client, url: &str) -> Result<Value, AcmeError> {
    let response = http.get(url).send().await.map_err(|e| transport(url, &e))?;
    let status = response.status().as_u16();
    let body = response.bytes().await.map_err(|e| transport(url, &e))?;
    if status != 200 {
        return Err(AcmeError::Protocol(format!("{url} answered {status}")));
    }
    serde_json::from_slice(&body)
        .map_err(|e| AcmeError::Protocol(format!("directory: unparsable answer: {e}")))
}

/// A fresh nonce from `newNonce` at `url` (§7.2): HEAD, answered 200 (204 is GET's answer)
/// with a `Replay-Nonce`.
pub async fn new_nonce(http: &reqwest::Client, url: &str) -> Result<String, AcmeError> {
    let response = http
        .head(url)
        .send()
        .await
        .map_err(|e| transport("newNonce", &e))?;
    let status = response.status().as_u16();
    if status != 200 && status != 204 {
        return Err(AcmeError::Protocol(format!("newNonce answered {status}")));
    }
    replay_nonce(response.headers())
        .ok_or_else(|| AcmeError::Protocol("newNonce answered without Replay-Nonce".into()))
}

/// The nonce an answer carries for the next request (§6.5).
pub fn replay_nonce(headers: &reqwest::header::HeaderMap) -> Option<String> {
    headers
        .get("replay-nonce")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// POSTs `body` (a JWS, or anything a test crafts) to `url` as `application/jose+json`
/// (§6.2), asking for `accept` if given; the answer as it comes.
pub async fn post_jose(
    http: &reqwest::Client,
    url: &str,
    body: &Value,
    accept: Option<&str>,
) -> Result<reqwest::Response, reqwest::Error> {
    let mut request = http
        .post(url)
        .header(http::header::CONTENT_TYPE, "application/jose+json")
        .body(body.to_string());
    if let Some(accept) = accept {
        request = request.header(http::header::ACCEPT, accept);
    }
    request.send().await
}

/// The newOrder payload (§7.4) for DNS identifiers.
pub fn new_order_payload(names: &[&str]) -> Value {
    let identifiers: Vec<Value> = names
        .iter()
        .map(|name| json!({"type": "dns", "value": name}))
        .collect();
    json!({"identifiers": identifiers})
}

/// The finalize payload (§7.4): `{"csr": base64url(DER)}`.
pub fn finalize_payload(csr_der: &[u8]) -> Value {
    json!({"csr": b64(csr_der)})
}

/// A DER CSR for `names` (SANs, no subject) over a fresh P-256 key.
pub fn csr(names: &[&str]) -> Result<Vec<u8>, AcmeError> {
    let fail = |e: rcgen::Error| AcmeError::Protocol(format!("building a CSR: {e}"));
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(fail)?;
    let names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
    let mut params = rcgen::CertificateParams::new(names).map_err(fail)?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    Ok(params.serialize_request(&key).map_err(fail)?.der().to_vec())
}

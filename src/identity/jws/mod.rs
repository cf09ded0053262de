//! JWS request authentication, RFC 8555 §6.2 and §6.4, and RFC 7638 JWK thumbprints: the one
//! verifier of every JWS-signed request, ACME's (`api::acme`) and the REST surfaces'
//! ([`super::signed_request`]).
//!
//! Rules enforced here (pebble's `wfe/jose.go` and Boulder's `wfe2/verify.go` are the models):
//! flattened JSON serialization only (no `signatures`, no unprotected `header`); an `alg` from a
//! fixed allow-list (never `none`, never a MAC); no `crit` (RFC 7515 §4.1.11: pkid understands
//! no extension); exactly one of `jwk` and `kid`; `url` present and, checked by
//! [`Jws::check_url`], the request's URL. Keys ([`keys`]) are bounded and held to one encoding
//! before any verification, fix the algorithm, and are parsed once, by aws-lc. The caller
//! redeems the nonce ([`super::nonce`]), whatever comes of the request once its nonce checked
//! (RFC 8555 §6.5), and looks up `kid`.
//!
//! Failures are [`JwsError`]s, one variant per ACME problem type (RFC 8555 §6.7) they stand
//! for; each surface maps them to its own error shape (`api::acme::problem` for ACME).

mod keys;

use aws_lc_rs::signature::ParsedPublicKey;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{Map, Value};

use crate::store::StoreError;
pub use keys::{
    account_key, check_public_key, parse_key, AccountKeys, KeyForm, MAX_RSA_BITS, MIN_RSA_BITS,
};

/// Signature algorithms accepted for account keys.
pub const ALLOWED_ALGS: &[&str] = &["ES256", "ES384", "RS256", "EdDSA"];

/// Why a JWS, its key or its nonce is refused, one variant per ACME problem type (RFC 8555
/// §6.7) it stands for, with the detail shown to the client.
#[derive(Debug, thiserror::Error)]
pub enum JwsError {
    /// `malformed`: not a flattened JWS as RFC 8555 §6.2 allows, or a signature that does not
    /// verify.
    #[error("{0}")]
    Malformed(String),
    /// `badNonce`: no nonce, or one that is unknown, expired or used already (§6.5).
    #[error("{0}")]
    BadNonce(String),
    /// `badSignatureAlgorithm`: an `alg` outside the allow-list, or one the key does not sign
    /// with; the problem lists the accepted ones (RFC 8555 §6.2).
    #[error("{detail}")]
    BadSignatureAlgorithm {
        detail: String,
        algorithms: &'static [&'static str],
    },
    /// `badPublicKey`: a key pkid does not accept (private, weak or too large, of an unknown
    /// type, or not in its one encoding).
    #[error("{0}")]
    BadPublicKey(String),
    /// `unauthorized`: the signed `url` is not the request's (§6.4).
    #[error("{0}")]
    Unauthorized(String),
    /// `serverInternal`: pkid's own failure; the detail is safe to show.
    #[error("{0}")]
    Internal(String),
    /// The database failed (redeeming a nonce); logged where it is mapped, never shown.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

impl JwsError {
    pub fn malformed(detail: impl Into<String>) -> JwsError {
        JwsError::Malformed(detail.into())
    }
    pub fn bad_nonce(detail: impl Into<String>) -> JwsError {
        JwsError::BadNonce(detail.into())
    }
    pub fn bad_public_key(detail: impl Into<String>) -> JwsError {
        JwsError::BadPublicKey(detail.into())
    }
    pub fn internal(detail: impl Into<String>) -> JwsError {
        JwsError::Internal(detail.into())
    }

    /// An `alg` that is not accepted: the problem names the ones that are.
    fn bad_signature_algorithm(detail: String) -> JwsError {
        JwsError::BadSignatureAlgorithm {
            detail,
            algorithms: ALLOWED_ALGS,
        }
    }

    /// The RFC 8555 §6.7 error type this stands for, without its URN prefix.
    pub fn acme_type(&self) -> &'static str {
        match self {
            JwsError::Malformed(_) => "malformed",
            JwsError::BadNonce(_) => "badNonce",
            JwsError::BadSignatureAlgorithm { .. } => "badSignatureAlgorithm",
            JwsError::BadPublicKey(_) => "badPublicKey",
            JwsError::Unauthorized(_) => "unauthorized",
            JwsError::Internal(_) | JwsError::Store(_) => "serverInternal",
        }
    }
}

/// How the request names its key.
#[derive(Debug, Clone)]
pub enum KeyRef {
    /// An embedded public key (newAccount, revokeCert by certificate key).
    Jwk(Map<String, Value>),
    /// An account URL.
    Kid(String),
}

/// A parsed, not yet verified, flattened JWS.
#[derive(Debug, Clone)]
pub struct Jws {
    pub alg: String,
    pub key: KeyRef,
    pub nonce: Option<String>,
    pub url: Option<String>,
    /// The whole protected header, for extension checks (keyChange, EAB).
    pub header: Map<String, Value>,
    /// Decoded payload; empty for POST-as-GET.
    pub payload: Vec<u8>,
    signing_input: Vec<u8>,
    signature: Vec<u8>,
}

/// Whether a request's `Content-Type` is `application/jose+json` (RFC 8555 §6.2), its
/// parameters aside: the media type of every JWS-signed request.
pub fn is_jose_json(headers: &http::HeaderMap) -> bool {
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    content_type.split(';').next().map(str::trim) == Some("application/jose+json")
}

fn b64(field: &str, value: &Value) -> Result<Vec<u8>, JwsError> {
    let s = value
        .as_str()
        .ok_or_else(|| JwsError::malformed(format!("JWS member {field:?} must be a string")))?;
    if s.contains('=') {
        return Err(JwsError::malformed(format!(
            "JWS member {field:?} must be base64url without padding"
        )));
    }
    URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| JwsError::malformed(format!("JWS member {field:?} is not valid base64url")))
}

impl Jws {
    /// Parse a flattened JWS JSON serialization (RFC 7515 §7.2.2).
    pub fn parse(body: &[u8]) -> Result<Jws, JwsError> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| JwsError::malformed(format!("request body is not JSON: {e}")))?;
        let obj = value
            .as_object()
            .ok_or_else(|| JwsError::malformed("request body must be a flattened JWS object"))?;
        if obj.contains_key("signatures") {
            return Err(JwsError::malformed(
                "JWS general serialization is not allowed; use the flattened form",
            ));
        }
        if obj.contains_key("header") {
            return Err(JwsError::malformed("JWS unprotected header is not allowed"));
        }
        for key in obj.keys() {
            if !matches!(key.as_str(), "protected" | "payload" | "signature") {
                return Err(JwsError::malformed(format!(
                    "unexpected JWS member {key:?}"
                )));
            }
        }
        let (Some(protected_v), Some(payload_v), Some(signature_v)) = (
            obj.get("protected"),
            obj.get("payload"),
            obj.get("signature"),
        ) else {
            return Err(JwsError::malformed(
                "JWS must have protected, payload and signature",
            ));
        };
        let protected_raw = b64("protected", protected_v)?;
        let payload = b64("payload", payload_v)?;
        let signature = b64("signature", signature_v)?;
        let header: Map<String, Value> = serde_json::from_slice(&protected_raw)
            .map_err(|_| JwsError::malformed("JWS protected header is not a JSON object"))?;

        let alg = header
            .get("alg")
            .and_then(Value::as_str)
            .ok_or_else(|| JwsError::malformed("JWS protected header has no alg"))?
            .to_string();
        if !ALLOWED_ALGS.contains(&alg.as_str()) {
            return Err(JwsError::bad_signature_algorithm(format!(
                "JWS algorithm {alg:?} is not accepted; use one of {}",
                ALLOWED_ALGS.join(", ")
            )));
        }
        // RFC 7515 §4.1.11: a recipient that does not understand every extension `crit` lists
        // must refuse the JWS. pkid understands none (RFC 8555 defines none for ACME).
        if header.contains_key("crit") {
            return Err(JwsError::malformed(
                "JWS crit header: no critical extension is understood here (RFC 7515 §4.1.11)",
            ));
        }
        if signature.is_empty() {
            return Err(JwsError::malformed("JWS signature is empty"));
        }
        let key = match (header.get("jwk"), header.get("kid")) {
            (Some(_), Some(_)) => {
                return Err(JwsError::malformed(
                    "JWS protected header must not have both jwk and kid",
                ))
            }
            (None, None) => {
                return Err(JwsError::malformed(
                    "JWS protected header must have jwk or kid",
                ))
            }
            (Some(jwk), None) => KeyRef::Jwk(
                jwk.as_object()
                    .ok_or_else(|| JwsError::malformed("JWS jwk must be a JSON object"))?
                    .clone(),
            ),
            (None, Some(kid)) => KeyRef::Kid(
                kid.as_str()
                    .ok_or_else(|| JwsError::malformed("JWS kid must be a string"))?
                    .to_string(),
            ),
        };
        let nonce = match header.get("nonce") {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(JwsError::bad_nonce("JWS nonce must be a string")),
        };
        let url = match header.get("url") {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(JwsError::malformed("JWS url must be a string")),
        };

        let mut signing_input = Vec::with_capacity(protected_raw.len() * 2 + payload.len() * 2);
        signing_input.extend_from_slice(str_of(protected_v).as_bytes());
        signing_input.push(b'.');
        signing_input.extend_from_slice(str_of(payload_v).as_bytes());

        Ok(Jws {
            alg,
            key,
            nonce,
            url,
            header,
            payload,
            signing_input,
            signature,
        })
    }

    /// Verify the signature with a key the request carries (`jwk`: newAccount, the inner JWS
    /// of keyChange, revokeCert by certificate key): checked and parsed once, as every key is
    /// ([`account_key`]: bounds and encoding before anything computes with it), then verified
    /// as an account's later requests are.
    pub fn verify(&self, jwk: &Map<String, Value>) -> Result<(), JwsError> {
        self.verify_with(&account_key(&self.alg, jwk)?)
    }

    /// Verify the signature with a registered account's key, parsed for this JWS's algorithm.
    pub fn verify_with(&self, key: &ParsedPublicKey) -> Result<(), JwsError> {
        key.verify_sig(&self.signing_input, &self.signature)
            .map_err(|_| JwsError::malformed("JWS signature verification failed"))
    }

    /// The anti-replay nonce (RFC 8555 §6.5), which every request but a keyChange's inner JWS
    /// carries.
    pub fn required_nonce(&self) -> Result<&str, JwsError> {
        self.nonce
            .as_deref()
            .ok_or_else(|| JwsError::bad_nonce("JWS has no anti-replay nonce"))
    }

    /// RFC 8555 §6.4: the signed `url` must be the URL the request was sent to, so that a
    /// request cannot be replayed against another resource.
    pub fn check_url(&self, request_url: &str) -> Result<(), JwsError> {
        match &self.url {
            None => Err(JwsError::malformed("JWS protected header has no url")),
            Some(u) if u != request_url => Err(JwsError::Unauthorized(format!(
                "JWS url {u:?} is not the request URL {request_url:?}"
            ))),
            Some(_) => Ok(()),
        }
    }

    /// The payload as JSON; POST-as-GET (empty payload) is refused here.
    pub fn json_payload<T: serde::de::DeserializeOwned>(&self) -> Result<T, JwsError> {
        if self.payload.is_empty() {
            return Err(JwsError::malformed(
                "this resource needs a JSON payload, not POST-as-GET",
            ));
        }
        serde_json::from_slice(&self.payload)
            .map_err(|e| JwsError::malformed(format!("request payload is not valid: {e}")))
    }

    pub fn is_post_as_get(&self) -> bool {
        self.payload.is_empty()
    }
}

/// The `nonce` a request's protected header names, read leniently from a body [`Jws::parse`]
/// refused: so that the nonce of a request refused as it is parsed (`crit`, an `alg` refused,
/// both `jwk` and `kid` …) is spent too (RFC 8555 §6.5).
pub fn nonce_of(body: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let protected = URL_SAFE_NO_PAD
        .decode(value.get("protected")?.as_str()?)
        .ok()?;
    let header: Map<String, Value> = serde_json::from_slice(&protected).ok()?;
    header.get("nonce")?.as_str().map(str::to_owned)
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

/// RFC 7638 thumbprint (see [`crate::pki::jwk::thumbprint`]), refused as `badPublicKey`.
pub fn thumbprint(jwk: &Map<String, Value>) -> Result<String, JwsError> {
    crate::pki::jwk::thumbprint(jwk).map_err(|e| JwsError::bad_public_key(e.to_string()))
}

pub use crate::pki::jwk::public_jwk;

#[cfg(test)]
mod tests;

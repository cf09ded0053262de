//! JWS request authentication, RFC 8555 §6.2 and §6.4, and RFC 7638 JWK thumbprints: the one
//! verifier of every JWS-signed request, ACME's (`api::acme`) and the REST surfaces'
//! ([`super::signed_request`]).
//!
//! Rules enforced here (pebble's `wfe/jose.go` and Boulder's `wfe2/verify.go` are the models):
//! flattened JSON serialization only (no `signatures`, no unprotected `header`); an `alg` from a
//! fixed allow-list (never `none`, never a MAC); exactly one of `jwk` and `kid`; `url` present
//! and, checked by [`Jws::check_url`], the request's URL. The caller redeems the nonce
//! ([`super::nonce`]) and looks up `kid`.
//!
//! Failures are [`JwsError`]s, one variant per ACME problem type (RFC 8555 §6.7) they stand
//! for; each surface maps them to its own error shape (`api::acme::problem` for ACME).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use aws_lc_rs::signature::ParsedPublicKey;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use josekit::jwk::Jwk;
use josekit::jws::JwsVerifier;
use serde_json::{Map, Value};

use crate::store::StoreError;

/// Signature algorithms accepted for account keys.
pub const ALLOWED_ALGS: &[&str] = &["ES256", "ES384", "RS256", "EdDSA"];

/// Smallest RSA modulus accepted for an account key, in bits.
const MIN_RSA_BITS: usize = 2048;
/// Largest RSA modulus accepted (as for CSR keys): every request pays for a verification with
/// the account key, and its cost grows with the square of the modulus.
const MAX_RSA_BITS: usize = 8192;

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
    /// `badSignatureAlgorithm`: an `alg` outside the allow-list, which the problem lists.
    #[error("{detail}")]
    BadSignatureAlgorithm {
        detail: String,
        algorithms: &'static [&'static str],
    },
    /// `badPublicKey`: a key pkid does not accept (private, weak, of an unknown type, or not
    /// fitting the `alg`).
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
    /// of keyChange, revokeCert by certificate key), imported by josekit. The key must also
    /// parse as an account key ([`account_key`]), so that an account registered with it can
    /// sign its later requests.
    pub fn verify(&self, jwk: &Map<String, Value>) -> Result<(), JwsError> {
        verifier(&self.alg, jwk)?
            .verify(&self.signing_input, &self.signature)
            .map_err(|_| JwsError::malformed("JWS signature verification failed"))?;
        account_key(&self.alg, jwk).map(|_| ())
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

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

/// A josekit verifier of `alg` signatures by `jwk`, after [`check_public_key`].
fn verifier(alg: &str, jwk: &Map<String, Value>) -> Result<Box<dyn JwsVerifier>, JwsError> {
    check_public_key(jwk)?;
    let key = Jwk::from_map(jwk.clone())
        .map_err(|e| JwsError::bad_public_key(format!("unusable JWK: {e}")))?;
    let bad_key = |e: josekit::JoseError| {
        JwsError::bad_public_key(format!("JWK does not fit algorithm {alg}: {e}"))
    };
    let verifier: Box<dyn JwsVerifier> = match alg {
        "ES256" => Box::new(
            josekit::jws::ES256
                .verifier_from_jwk(&key)
                .map_err(bad_key)?,
        ),
        "ES384" => Box::new(
            josekit::jws::ES384
                .verifier_from_jwk(&key)
                .map_err(bad_key)?,
        ),
        "RS256" => Box::new(
            josekit::jws::RS256
                .verifier_from_jwk(&key)
                .map_err(bad_key)?,
        ),
        "EdDSA" => Box::new(
            josekit::jws::EdDSA
                .verifier_from_jwk(&key)
                .map_err(bad_key)?,
        ),
        other => {
            return Err(JwsError::bad_signature_algorithm(format!(
                "JWS algorithm {other:?} is not accepted"
            )))
        }
    };
    Ok(verifier)
}

/// A registered account's key as aws-lc parses it for `alg` (RFC 7518 §3.1): every request of
/// the account is checked against it. aws-lc is the crypto library rustls already runs on; its
/// P-256 verification costs about half of OpenSSL 3's under load (measured), and an account
/// signs every request.
pub fn account_key(alg: &str, jwk: &Map<String, Value>) -> Result<ParsedPublicKey, JwsError> {
    use aws_lc_rs::signature::{
        RsaPublicKeyComponents, ECDSA_P256_SHA256_FIXED, ECDSA_P384_SHA384_FIXED, ED25519,
        RSA_PKCS1_2048_8192_SHA256,
    };
    check_public_key(jwk)?;
    let member = |name: &str| -> Result<Vec<u8>, JwsError> {
        let value = jwk
            .get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| JwsError::bad_public_key(format!("JWK lacks member {name:?}")))?;
        URL_SAFE_NO_PAD
            .decode(value)
            .map_err(|_| JwsError::bad_public_key(format!("JWK member {name:?} is not base64url")))
    };
    let unusable = |e: aws_lc_rs::error::KeyRejected| {
        JwsError::bad_public_key(format!("JWK is not a usable {alg} key: {e}"))
    };
    let kty = jwk.get("kty").and_then(Value::as_str);
    let crv = jwk.get("crv").and_then(Value::as_str);
    match (alg, kty, crv) {
        ("ES256", Some("EC"), Some("P-256")) => {
            let point = ec_point(&member("x")?, &member("y")?, 32)?;
            ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point).map_err(unusable)
        }
        ("ES384", Some("EC"), Some("P-384")) => {
            let point = ec_point(&member("x")?, &member("y")?, 48)?;
            ParsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, point).map_err(unusable)
        }
        ("EdDSA", Some("OKP"), Some("Ed25519")) => {
            ParsedPublicKey::new(&ED25519, member("x")?).map_err(unusable)
        }
        ("RS256", Some("RSA"), _) => RsaPublicKeyComponents {
            n: member("n")?,
            e: member("e")?,
        }
        .to_parsed_public_key(&RSA_PKCS1_2048_8192_SHA256)
        .map_err(unusable),
        (alg, Some(kty), _) => Err(JwsError::bad_public_key(format!(
            "a {kty} key does not fit algorithm {alg}"
        ))),
        _ => Err(JwsError::bad_public_key("JWK has no kty")),
    }
}

/// An uncompressed SEC 1 point, `04 ‖ x ‖ y`, each coordinate `size` bytes (RFC 7518 §6.2.1.2:
/// the full size; a shorter one is taken as left-padded).
fn ec_point(x: &[u8], y: &[u8], size: usize) -> Result<Vec<u8>, JwsError> {
    if x.len() > size || y.len() > size {
        return Err(JwsError::bad_public_key(
            "an EC coordinate is longer than its curve's",
        ));
    }
    let mut point = vec![0u8; 1 + 2 * size];
    point[0] = 0x04;
    point[1 + size - x.len()..1 + size].copy_from_slice(x);
    point[1 + 2 * size - y.len()..].copy_from_slice(y);
    Ok(point)
}

/// How many account keys [`AccountKeys`] keeps.
const ACCOUNT_KEYS_CAPACITY: usize = 8192;

/// Registered accounts' keys, parsed once, by algorithm and the key's stored JSON. A
/// rolled-over key is stored as other JSON, so it never meets the old key's entry.
#[derive(Default)]
pub struct AccountKeys {
    keys: Mutex<HashMap<(String, String), Arc<ParsedPublicKey>>>,
}

impl AccountKeys {
    /// The key of `alg` signatures stored as `jwk_json`, parsed on first use.
    pub fn get(&self, alg: &str, jwk_json: &str) -> Result<Arc<ParsedPublicKey>, JwsError> {
        let entry = (alg.to_owned(), jwk_json.to_owned());
        if let Some(found) = self.lock().get(&entry) {
            return Ok(found.clone());
        }
        let jwk: Map<String, Value> = serde_json::from_str(jwk_json)
            .map_err(|_| JwsError::internal("stored account key is unreadable"))?;
        let parsed = Arc::new(account_key(alg, &jwk)?);
        let mut keys = self.lock();
        if keys.len() >= ACCOUNT_KEYS_CAPACITY {
            // Any one goes: an evicted key is only parsed again.
            if let Some(evicted) = keys.keys().next().cloned() {
                keys.remove(&evicted);
            }
        }
        keys.insert(entry, parsed.clone());
        Ok(parsed)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<(String, String), Arc<ParsedPublicKey>>> {
        // Every change is one call that cannot panic halfway.
        self.keys.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Refuse private keys, unknown key types and weak RSA keys before they reach a verifier.
pub fn check_public_key(jwk: &Map<String, Value>) -> Result<(), JwsError> {
    for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
        if jwk.contains_key(private) {
            return Err(JwsError::bad_public_key(
                "JWK contains private key material",
            ));
        }
    }
    match jwk.get("kty").and_then(Value::as_str) {
        Some("EC") => match jwk.get("crv").and_then(Value::as_str) {
            Some("P-256") | Some("P-384") => Ok(()),
            other => Err(JwsError::bad_public_key(format!(
                "unsupported EC curve {other:?}"
            ))),
        },
        Some("OKP") => match jwk.get("crv").and_then(Value::as_str) {
            Some("Ed25519") => Ok(()),
            other => Err(JwsError::bad_public_key(format!(
                "unsupported OKP curve {other:?}"
            ))),
        },
        Some("RSA") => {
            let n = jwk.get("n").and_then(Value::as_str).unwrap_or_default();
            let n = URL_SAFE_NO_PAD
                .decode(n)
                .map_err(|_| JwsError::bad_public_key("RSA modulus is not base64url"))?;
            let bits = n.iter().skip_while(|b| **b == 0).count() * 8;
            if bits < MIN_RSA_BITS {
                return Err(JwsError::bad_public_key(format!(
                    "RSA key of about {bits} bits is too small; at least {MIN_RSA_BITS} bits are required"
                )));
            }
            if bits > MAX_RSA_BITS {
                return Err(JwsError::bad_public_key(format!(
                    "RSA key of about {bits} bits is too large; at most {MAX_RSA_BITS} bits are accepted"
                )));
            }
            Ok(())
        }
        other => Err(JwsError::bad_public_key(format!(
            "unsupported JWK key type {other:?}"
        ))),
    }
}

/// RFC 7638 thumbprint (see [`crate::pki::jwk::thumbprint`]), refused as `badPublicKey`.
pub fn thumbprint(jwk: &Map<String, Value>) -> Result<String, JwsError> {
    crate::pki::jwk::thumbprint(jwk).map_err(|e| JwsError::bad_public_key(e.to_string()))
}

pub use crate::pki::jwk::public_jwk;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use serde_json::json;

    fn flattened(header: Value, payload: &[u8]) -> Vec<u8> {
        let p = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap());
        let body = URL_SAFE_NO_PAD.encode(payload);
        serde_json::to_vec(&json!({"protected": p, "payload": body, "signature": "AAAA"})).unwrap()
    }

    #[test]
    fn rejects_general_serialization_and_unprotected_header() {
        let e = Jws::parse(br#"{"payload":"","signatures":[]}"#).unwrap_err();
        assert_eq!(e.acme_type(), "malformed");
        let mut body: Value = serde_json::from_slice(&flattened(
            json!({"alg":"ES256","kid":"k","nonce":"n","url":"u"}),
            b"",
        ))
        .unwrap();
        body["header"] = json!({"kid": "x"});
        let e = Jws::parse(&serde_json::to_vec(&body).unwrap()).unwrap_err();
        assert_eq!(e.acme_type(), "malformed");
    }

    #[test]
    fn rejects_none_and_mac_algorithms() {
        for alg in ["none", "HS256", "ES512", "PS256"] {
            let e = Jws::parse(&flattened(
                json!({"alg": alg, "kid": "k", "nonce": "n", "url": "u"}),
                b"",
            ))
            .unwrap_err();
            assert_eq!(e.acme_type(), "badSignatureAlgorithm", "{alg}");
            assert!(
                matches!(e, JwsError::BadSignatureAlgorithm { algorithms, .. } if algorithms == ALLOWED_ALGS),
                "{alg}: the refusal lists the accepted algorithms"
            );
        }
    }

    #[test]
    fn requires_exactly_one_of_jwk_and_kid() {
        let jwk = json!({"kty":"EC","crv":"P-256","x":"a","y":"b"});
        let e = Jws::parse(&flattened(
            json!({"alg":"ES256","kid":"k","jwk":jwk,"nonce":"n","url":"u"}),
            b"",
        ))
        .unwrap_err();
        assert_eq!(e.acme_type(), "malformed");
        let e = Jws::parse(&flattened(
            json!({"alg":"ES256","nonce":"n","url":"u"}),
            b"",
        ))
        .unwrap_err();
        assert_eq!(e.acme_type(), "malformed");
    }

    #[test]
    fn rejects_padding_and_non_json() {
        assert_eq!(
            Jws::parse(b"not json").unwrap_err().acme_type(),
            "malformed"
        );
        let e = Jws::parse(br#"{"protected":"e30=","payload":"","signature":"AAAA"}"#).unwrap_err();
        assert_eq!(e.acme_type(), "malformed");
    }

    #[test]
    fn weak_and_private_keys_are_bad_public_keys() {
        let small = json!({"kty":"RSA","e":"AQAB","n": URL_SAFE_NO_PAD.encode([0xffu8; 128])});
        assert_eq!(
            check_public_key(small.as_object().unwrap())
                .unwrap_err()
                .acme_type(),
            "badPublicKey"
        );
        let private = json!({"kty":"EC","crv":"P-256","x":"a","y":"b","d":"c"});
        assert_eq!(
            check_public_key(private.as_object().unwrap())
                .unwrap_err()
                .acme_type(),
            "badPublicKey"
        );
        let huge = json!({"kty":"RSA","e":"AQAB","n": URL_SAFE_NO_PAD.encode([0xffu8; 2048])});
        assert_eq!(
            check_public_key(huge.as_object().unwrap())
                .unwrap_err()
                .acme_type(),
            "badPublicKey"
        );
        let curve = json!({"kty":"EC","crv":"P-521","x":"a","y":"b"});
        assert_eq!(
            check_public_key(curve.as_object().unwrap())
                .unwrap_err()
                .acme_type(),
            "badPublicKey"
        );
    }

    /// A signed request of each accepted algorithm verifies through both paths, the key the
    /// request carries (josekit) and the registered account's parsed key (aws-lc), and a
    /// changed payload fails both.
    #[test]
    fn both_verification_paths_agree_for_every_algorithm() {
        use josekit::jws::JwsSigner;
        let pairs: Vec<(&str, Box<dyn JwsSigner>, josekit::jwk::Jwk)> = vec![
            {
                let k = josekit::jws::ES256.generate_key_pair().unwrap();
                let s = josekit::jws::ES256
                    .signer_from_der(k.to_der_private_key())
                    .unwrap();
                ("ES256", Box::new(s), k.to_jwk_public_key())
            },
            {
                let k = josekit::jws::ES384.generate_key_pair().unwrap();
                let s = josekit::jws::ES384
                    .signer_from_der(k.to_der_private_key())
                    .unwrap();
                ("ES384", Box::new(s), k.to_jwk_public_key())
            },
            {
                let k = josekit::jws::RS256.generate_key_pair(2048).unwrap();
                let s = josekit::jws::RS256
                    .signer_from_der(k.to_der_private_key())
                    .unwrap();
                ("RS256", Box::new(s), k.to_jwk_public_key())
            },
            {
                let k = josekit::jws::EdDSA
                    .generate_key_pair(josekit::jwk::alg::ed::EdCurve::Ed25519)
                    .unwrap();
                let s = josekit::jws::EdDSA
                    .signer_from_der(k.to_der_private_key())
                    .unwrap();
                ("EdDSA", Box::new(s), k.to_jwk_public_key())
            },
        ];
        for (alg, signer, jwk) in pairs {
            let map = public_jwk(jwk.as_ref());
            let header = json!({"alg": alg, "kid": "k", "nonce": "n", "url": "u"});
            let p = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap());
            let payload = URL_SAFE_NO_PAD.encode(b"{}");
            let sig = signer.sign(format!("{p}.{payload}").as_bytes()).unwrap();
            let body = json!({"protected": p, "payload": payload, "signature": URL_SAFE_NO_PAD.encode(&sig)});
            let jws = Jws::parse(&serde_json::to_vec(&body).unwrap()).unwrap();
            jws.verify(&map)
                .unwrap_or_else(|e| panic!("{alg} via josekit: {e:?}"));
            let key = account_key(alg, &map).unwrap();
            jws.verify_with(&key)
                .unwrap_or_else(|e| panic!("{alg} via the account key: {e:?}"));
            // The stored form of the key (its JSON) goes through the cache the same way.
            let keys = AccountKeys::default();
            let stored = Value::Object(map.clone()).to_string();
            jws.verify_with(&keys.get(alg, &stored).unwrap()).unwrap();

            let mut forged = body.clone();
            forged["payload"] = json!(URL_SAFE_NO_PAD.encode(b"{\"x\":1}"));
            let forged = Jws::parse(&serde_json::to_vec(&forged).unwrap()).unwrap();
            assert_eq!(
                forged.verify(&map).unwrap_err().acme_type(),
                "malformed",
                "{alg}"
            );
            assert_eq!(
                forged.verify_with(&key).unwrap_err().acme_type(),
                "malformed",
                "{alg}"
            );
        }
    }

    /// A key of one type named with another type's algorithm is a bad public key.
    #[test]
    fn a_key_that_does_not_fit_its_algorithm_is_refused() {
        let k = josekit::jws::ES256.generate_key_pair().unwrap();
        let map = public_jwk(k.to_jwk_public_key().as_ref());
        for alg in ["ES384", "RS256", "EdDSA"] {
            assert_eq!(
                account_key(alg, &map).unwrap_err().acme_type(),
                "badPublicKey",
                "{alg}"
            );
        }
    }

    #[test]
    fn verifies_a_real_es256_signature_and_rejects_a_forged_one() {
        let key = josekit::jws::ES256.generate_key_pair().unwrap();
        let jwk = key.to_jwk_public_key();
        let header = json!({"alg":"ES256","jwk": jwk.as_ref(),"nonce":"n","url":"https://x/acme/new-account"});
        let p = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap());
        let payload = URL_SAFE_NO_PAD.encode(br#"{"termsOfServiceAgreed":true}"#);
        let signer = josekit::jws::ES256
            .signer_from_der(key.to_der_private_key())
            .unwrap();
        use josekit::jws::JwsSigner;
        let sig = signer.sign(format!("{p}.{payload}").as_bytes()).unwrap();
        let body =
            json!({"protected": p, "payload": payload, "signature": URL_SAFE_NO_PAD.encode(&sig)});
        let jws = Jws::parse(&serde_json::to_vec(&body).unwrap()).unwrap();
        let KeyRef::Jwk(map) = &jws.key else {
            panic!("expected jwk")
        };
        jws.verify(map).unwrap();

        let mut forged = body.clone();
        forged["payload"] = json!(URL_SAFE_NO_PAD.encode(br#"{"termsOfServiceAgreed":false}"#));
        let jws = Jws::parse(&serde_json::to_vec(&forged).unwrap()).unwrap();
        assert_eq!(jws.verify(map).unwrap_err().acme_type(), "malformed");
    }
}

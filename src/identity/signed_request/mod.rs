//! JWS-signed REST requests: a client holding a key bound to a user (`pkid user bind-key`)
//! authenticates a request to any REST surface by signing it as an ACME request is signed
//! (RFC 8555 §6.2–§6.5), with no password or bearer token:
//!
//! - `Content-Type: application/jose+json`; the body a flattened JWS (RFC 7515 §7.2.2) whose
//!   payload is the request's own body (empty for a read);
//! - protected `alg` from [`jws::ALLOWED_ALGS`] (never `none`, never a MAC);
//! - `nonce` from `/acme/new-nonce` (any ACME directory's: they share one [`NonceService`], so a
//!   nonce is single-use across every replica on PostgreSQL);
//! - `url` the URL the request is sent to (§6.4), so that it cannot be replayed elsewhere;
//! - `kid` the URL of the key's binding, `{origin}/identity/keys/{thumbprint}` ([`binding_url`]),
//!   under the origin the request is sent to or pkid's base URL (a request to the admin
//!   listener, which has an origin of its own, may name the binding either way), where
//!   `thumbprint` is the RFC 7638 thumbprint of the bound key. A client computes it from
//!   its own key alone, and the URL names no ACME directory: a binding belongs to a user, not
//!   to a directory. An embedded `jwk` is refused: only a key bound beforehand proves a user.
//!
//! The binding is found through [`KeyBindings`], which the caller provides over the store.

use std::sync::Arc;

use http::HeaderMap;

use super::jws::{self, AccountKeys, Jws, JwsError, KeyRef};
use super::nonce::NonceService;
use crate::store::StoreError;

/// The path under which key bindings are named: `/identity/keys/{thumbprint}`.
pub const BINDINGS_PATH: &str = "/identity/keys/";

/// The URL that names the binding of the key whose RFC 7638 thumbprint is `thumbprint`: the
/// `kid` of the requests that key signs.
pub fn binding_url(origin: &str, thumbprint: &str) -> String {
    format!(
        "{}{BINDINGS_PATH}{thumbprint}",
        origin.trim_end_matches('/')
    )
}

/// The thumbprint a binding URL of this server names, if `kid` is one.
pub fn thumbprint_of_binding<'a>(origin: &str, kid: &'a str) -> Option<&'a str> {
    kid.strip_prefix(origin.trim_end_matches('/'))?
        .strip_prefix(BINDINGS_PATH)
        .filter(|t| is_thumbprint(t))
}

/// An RFC 7638 SHA-256 thumbprint: 32 bytes, base64url without padding.
pub fn is_thumbprint(s: &str) -> bool {
    s.len() == 43
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A key bound to a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundKey {
    pub user_id: String,
    /// The user's name, shown at the binding's URL.
    pub username: String,
    /// The public key as stored: JSON of its public members (`pki::jwk::public_jwk`).
    pub jwk: String,
}

/// Where key bindings are looked up (the store's `user_keys`, joined with its user).
#[async_trait::async_trait]
pub trait KeyBindings: Send + Sync {
    /// The key bound under `thumbprint` (its RFC 7638 thumbprint), with its user; `None` when no
    /// key is bound under it.
    async fn key(&self, thumbprint: &str) -> Result<Option<BoundKey>, StoreError>;
}

/// A request that authenticated: who signed it, with which key, and what it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRequest {
    /// The user the signing key is bound to.
    pub user_id: String,
    /// The signing key's RFC 7638 thumbprint.
    pub thumbprint: String,
    /// The JWS payload, decoded: the request's body (empty for a read).
    pub payload: Vec<u8>,
}

/// Why a JWS-signed request does not authenticate. Every variant but [`Internal`] and
/// [`Store`] is a refusal each surface answers 401 in its own shape: a credential that is
/// present but wrong never falls back to a weaker one.
///
/// [`Internal`]: SignedRequestError::Internal
/// [`Store`]: SignedRequestError::Store
#[derive(Debug, thiserror::Error)]
pub enum SignedRequestError {
    /// The request's `Content-Type` is not `application/jose+json`.
    #[error("a JWS-signed request must have Content-Type application/jose+json")]
    NotJose,
    /// Not a flattened JWS as RFC 8555 §6.2 allows (no `url`, say).
    #[error("{0}")]
    Malformed(String),
    /// An `alg` outside [`jws::ALLOWED_ALGS`] (`none`, a MAC, …), or one the bound key does
    /// not sign with.
    #[error("{0}")]
    BadSignatureAlgorithm(String),
    /// No nonce, or one that is unknown, expired or used already.
    #[error("{0}")]
    BadNonce(String),
    /// The signed `url` is not the request's.
    #[error("{0}")]
    WrongUrl(String),
    /// The key is embedded (`jwk`) instead of named by its binding (`kid`).
    #[error("a JWS-signed request must name its key's binding with kid, not carry a jwk")]
    EmbeddedKey,
    /// The `kid` is not a binding URL of this server, or no key is bound there.
    #[error("{0}")]
    UnboundKey(String),
    /// The signature is not the bound key's (or the bound key cannot make an `alg` signature).
    #[error("{0}")]
    BadSignature(String),
    /// pkid's own failure; the detail is safe to show.
    #[error("{0}")]
    Internal(String),
    /// The database failed; logged where it is mapped, never shown.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

impl SignedRequestError {
    /// Whether the request is refused (401), rather than failed on pkid's side (500).
    pub fn is_refusal(&self) -> bool {
        !matches!(
            self,
            SignedRequestError::Internal(_) | SignedRequestError::Store(_)
        )
    }
}

/// The verifier's refusals in this protocol's terms. The verifier raises `unauthorized` only
/// for a `url` that is not the request's, `badSignatureAlgorithm` for an `alg` refused or not
/// the bound key's, and `badPublicKey` only for a bound key it cannot use.
impl From<JwsError> for SignedRequestError {
    fn from(e: JwsError) -> SignedRequestError {
        match e {
            JwsError::Malformed(d) => SignedRequestError::Malformed(d),
            JwsError::BadNonce(d) => SignedRequestError::BadNonce(d),
            JwsError::BadSignatureAlgorithm { detail, .. } => {
                SignedRequestError::BadSignatureAlgorithm(detail)
            }
            JwsError::BadPublicKey(d) => SignedRequestError::BadSignature(d),
            JwsError::Unauthorized(d) => SignedRequestError::WrongUrl(d),
            JwsError::Internal(d) => SignedRequestError::Internal(d),
            JwsError::Store(e) => SignedRequestError::Store(e),
        }
    }
}

/// Authenticates JWS-signed requests by keys bound to users.
pub struct SignedRequests {
    nonces: NonceService,
    bindings: Arc<dyn KeyBindings>,
    /// The bound keys, parsed once per key and algorithm.
    keys: AccountKeys,
    /// pkid's base URL: a binding URL under it names a binding whichever listener the request
    /// came to (the admin listener has an origin of its own).
    base: Option<String>,
}

impl SignedRequests {
    /// `nonces`: the service the ACME directories issue from.
    pub fn new(nonces: NonceService, bindings: Arc<dyn KeyBindings>) -> SignedRequests {
        SignedRequests {
            nonces,
            bindings,
            keys: AccountKeys::default(),
            base: None,
        }
    }

    /// The same, taking binding URLs under `base` (pkid's base URL) as well as under the
    /// origin each request was sent to.
    pub fn with_base(mut self, base: &str) -> SignedRequests {
        self.base = Some(base.trim_end_matches('/').to_owned());
        self
    }

    /// Authenticate a request sent to `{origin}{path}` (`origin`: `https://host[:port]` as the
    /// client addressed pkid; `path` as the surface matches it). The checks run cheapest first.
    /// Once the nonce checks, it is redeemed whatever comes of the request, as ACME does (RFC
    /// 8555 §6.5): a refused request cannot be sent again with it. Only whoever was given the
    /// nonce (inside TLS) can present it, so a forged request spends only its own sender's.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        origin: &str,
        path: &str,
    ) -> Result<SignedRequest, SignedRequestError> {
        if !jws::is_jose_json(headers) {
            return Err(SignedRequestError::NotJose);
        }
        let jws = self.nonces.parse_request(body).await?;
        let nonce = jws.required_nonce()?;
        self.nonces.check(nonce)?;
        let signed = self.signer(&jws, origin, path).await;
        let spent = self.nonces.redeem(nonce).await;
        // A refused request reports why it was refused; a good one that replayed its nonce,
        // the nonce.
        let (bound, thumbprint) = signed?;
        spent?;
        Ok(SignedRequest {
            user_id: bound.user_id,
            thumbprint,
            payload: jws.payload,
        })
    }

    /// The binding whose key signed `jws` (its `url` checked first), and the key's thumbprint.
    async fn signer(
        &self,
        jws: &Jws,
        origin: &str,
        path: &str,
    ) -> Result<(BoundKey, String), SignedRequestError> {
        let KeyRef::Kid(kid) = &jws.key else {
            return Err(SignedRequestError::EmbeddedKey);
        };
        let origin = origin.trim_end_matches('/');
        jws.check_url(&format!("{origin}{path}"))?;
        let thumbprint = thumbprint_of_binding(origin, kid)
            .or_else(|| {
                self.base
                    .as_deref()
                    .and_then(|base| thumbprint_of_binding(base, kid))
            })
            .ok_or_else(|| {
                SignedRequestError::UnboundKey(format!(
                    "kid {kid:?} is not a key binding URL of this server ({})",
                    binding_url(origin, "{thumbprint}")
                ))
            })?;
        let bound =
            self.bindings.key(thumbprint).await?.ok_or_else(|| {
                SignedRequestError::UnboundKey(format!("no key is bound at {kid}"))
            })?;
        let key = self.keys.get(&jws.alg, &bound.jwk)?;
        jws.verify_with(&key).map_err(|_| {
            SignedRequestError::BadSignature("JWS signature verification failed".into())
        })?;
        Ok((bound, thumbprint.to_owned()))
    }
}

/// Bindings held in memory, by thumbprint: the tests' stand-in for the store.
#[cfg(test)]
#[async_trait::async_trait]
impl KeyBindings for std::collections::BTreeMap<String, BoundKey> {
    async fn key(&self, thumbprint: &str) -> Result<Option<BoundKey>, StoreError> {
        Ok(self.get(thumbprint).cloned())
    }
}

#[cfg(test)]
mod tests;

//! Who is calling, and what they may do: the [`Principal`] every surface's handler receives
//! ([`Identity::authenticate`]) and the one authorization check ([`authorize`]). Users with
//! roles and passwords, OAuth2 clients, pkid's JWT access tokens, admin tokens; the surfaces
//! add nothing of their own. `docs/identity.md` is the operator's view.
//!
//! - `principal.rs`: [`Principal`], [`UserPrincipal`], [`Proof`], [`Role`].
//! - `authorize.rs`: [`Action`], [`Denied`], [`authorize`] (the table).
//! - `passwords.rs`: argon2id hashing and checking; `throttle.rs`: failed attempts slowed.
//! - `users.rs`, `clients.rs`, `admin_tokens.rs`: what the operator commands manage.
//! - `jwt.rs`: the access tokens (ES256) and the JWK Set; `grants.rs`: issuing them (`/login`,
//!   RFC 6749 `/token`).
//! - [`certificates`]: client certificates (TLS client authentication, or `X-APP-CERTIFICATE`
//!   from a trusted proxy) verified against the configured trust anchors.
//! - [`jws`] and [`nonce`]: the JWS verifier and the anti-replay nonces of RFC 8555 §6.2–§6.5,
//!   which ACME's requests and JWS-signed REST requests share.
//! - [`signed_request`]: a JWS-signed REST request by a key bound to a user.
//!
//! Secrets are never stored (passwords as argon2id hashes, client secrets and admin tokens as
//! their SHA-256, [`token_hash`]) and never logged.

pub mod admin_tokens;
mod authorize;
pub mod certificates;
pub mod clients;
mod grants;
pub mod jws;
pub mod jwt;
pub mod nonce;
pub mod passwords;
mod principal;
pub mod signed_request;
pub mod throttle;
pub mod users;

use std::net::IpAddr;

use http::HeaderMap;
use pkid_backends::sealed::KeyEncryptionKey;
use serde_json::Value;

use crate::store::{now, Reads, Store, StoreError};

pub use authorize::{authorize, Action, Denied, SCOPE_ADMIN_READ, SCOPE_ADMIN_WRITE};
pub use grants::{ClientCredentials, GrantError, IssuedToken};
pub use jwt::{KeyError, TokenKeys};
use passwords::PasswordChecker;
pub use principal::{Principal, Proof, Role, UnknownRole, UserPrincipal};
use throttle::{Throttle, ThrottleSettings};

/// The stored form of a bearer secret: its SHA-256, hex.
pub fn token_hash(token: &str) -> String {
    hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        token.as_bytes(),
    ))
}

/// Identity's settings (`[identity]` in the configuration, with its defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdentitySettings {
    /// Seconds an access token is valid.
    pub token_lifetime_secs: i64,
    pub throttle: ThrottleSettings,
}

/// What a request presents to be judged by, as its surface hands it over
/// (`api::Caller::presented`: what the transport learned, and the request's headers).
pub struct Presented<'a> {
    /// The peer's address (a TLS-terminating proxy's, behind one).
    pub peer: IpAddr,
    pub headers: &'a HeaderMap,
}

/// Why a request carrying a credential is not authenticated: a credential that is present but
/// wrong never falls back to a weaker one.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// 401: the credential is malformed, unknown, expired, revoked, or its user or client is
    /// disabled or gone. The reason is for the log, not the client.
    #[error("the credential is not valid: {0}")]
    Invalid(&'static str),
    /// 503: it could not be checked.
    #[error("the credential could not be checked: {0}")]
    Unavailable(#[from] StoreError),
}

/// Users, clients, tokens and the throttle, for the surfaces.
pub struct Identity {
    reads: Reads,
    keys: TokenKeys,
    passwords: PasswordChecker,
    throttle: Throttle,
    settings: IdentitySettings,
}

impl Identity {
    /// Identity over `store`, its token signing key made on first start (sealed with `kek`);
    /// `issuer` is the `iss` of its tokens (pkid's base URL).
    pub async fn open(
        store: &Store,
        kek: &KeyEncryptionKey,
        issuer: &str,
        settings: IdentitySettings,
    ) -> Result<Identity, KeyError> {
        Ok(Identity {
            reads: store.reads(),
            keys: TokenKeys::load_or_create(store, kek, issuer).await?,
            passwords: PasswordChecker::default(),
            throttle: Throttle::new(settings.throttle),
            settings,
        })
    }

    /// The JWK Set of the token signing key (`/.well-known/jwks.json`).
    pub fn jwks(&self) -> Value {
        self.keys.jwks()
    }

    /// Who the request is from, by the first credential it carries, in this order:
    ///
    /// 1. a JWS-signed request (`Content-Type: application/jose+json` on a REST surface) by a
    ///    key bound to a user → `User { proof: JwsKey }`;
    /// 2. `Authorization: Bearer`: an admin token (`pkid_…`) → `Operator`; else a JWT pkid
    ///    signed → `User { proof: Bearer }` or `Client`, its user (and client) still enabled;
    /// 3. a verified client certificate linked to a user → `User { proof: Certificate }`
    ///    (verified but linked to nobody: `Anonymous`);
    /// 4. nothing: `Anonymous`.
    pub async fn authenticate(&self, presented: &Presented<'_>) -> Result<Principal, AuthError> {
        // Step 1 (to be wired), JWS-signed requests: when `Content-Type` is
        // `application/jose+json`, the JWS verifier and nonce service (moving here from
        // api/acme) check the request (its body and URL join `Presented`), and the `kid`'s key
        // names the user through `Reads::user_by_key`; a user who is not enabled is refused.
        if let Some(token) = bearer_token(presented.headers)? {
            return self.bearer(token).await;
        }
        // Step 3 (to be wired), client certificates: the verified chain the transport hands
        // over (a field of `Presented`, filled in `api::Caller::presented`) names the user
        // through `Reads::user_by_certificate` (end-entity subject and issuer DN, RFC 2253);
        // linked to nobody: `Anonymous`; to a user who is not enabled: refused.
        Ok(Principal::Anonymous)
    }

    /// Step 2: an admin token, or one of pkid's access tokens.
    async fn bearer(&self, token: &str) -> Result<Principal, AuthError> {
        if token.starts_with(admin_tokens::PREFIX) {
            return match admin_tokens::lookup(&self.reads, token).await? {
                Some(token_id) => Ok(Principal::Operator { token_id }),
                None => Err(AuthError::Invalid("no live admin token")),
            };
        }
        let claims = self.keys.verify(token, now()).map_err(|e| {
            tracing::debug!(reason = %e, "a bearer token was refused");
            AuthError::Invalid("not a valid access token")
        })?;
        let token_client = match &claims.client_id {
            Some(id) => Some(
                clients::enabled(&self.reads, id)
                    .await?
                    .ok_or(AuthError::Invalid("the token's client is disabled or gone"))?,
            ),
            None => None,
        };
        match claims.kind {
            jwt::Kind::User => {
                let user = self
                    .reads
                    .user(&claims.sub)
                    .await?
                    .filter(|u| u.enabled)
                    .ok_or(AuthError::Invalid("the token's user is disabled or gone"))?;
                let roles = Role::parse_list(&user.roles)
                    .map_err(|_| AuthError::Invalid("the user's roles are not readable"))?;
                Ok(Principal::User(UserPrincipal {
                    id: user.id,
                    username: user.username,
                    email: user.email,
                    roles,
                    proof: Proof::Bearer,
                    scopes: claims.scopes(),
                }))
            }
            jwt::Kind::Client => {
                let client = token_client
                    .filter(|c| c.client_id == claims.sub)
                    .ok_or(AuthError::Invalid("a client token names no client"))?;
                // Scopes the client has lost since stop at once.
                let scopes = claims
                    .scopes()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|s| client.scopes.contains(s))
                    .collect();
                Ok(Principal::Client {
                    client_id: client.client_id,
                    scopes,
                })
            }
        }
    }
}

/// The token of `Authorization: Bearer <token>` (scheme case-insensitive, RFC 7235 §2.1);
/// `None` when there is no such header or it carries another scheme.
fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, AuthError> {
    let Some(value) = headers.get(http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| AuthError::Invalid("the Authorization header is not ASCII"))?;
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Ok(None);
    }
    match token.trim() {
        "" => Err(AuthError::Invalid("an empty bearer token")),
        token => Ok(Some(token)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn headers(authorization: &[u8]) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::AUTHORIZATION,
            http::HeaderValue::from_bytes(authorization).unwrap(),
        );
        h
    }

    #[test]
    fn bearer_tokens_are_read_and_other_schemes_left_alone() {
        assert_eq!(bearer_token(&HeaderMap::new()).unwrap(), None);
        assert_eq!(bearer_token(&headers(b"Bearer abc")).unwrap(), Some("abc"));
        assert_eq!(
            bearer_token(&headers(b"bearer  abc ")).unwrap(),
            Some("abc")
        );
        assert_eq!(bearer_token(&headers(b"Basic dXNlcjpwdw==")).unwrap(), None);
        assert!(bearer_token(&headers(b"Bearer ")).is_err());
        assert!(bearer_token(&headers(b"Bearer \xff")).is_err());
    }
}

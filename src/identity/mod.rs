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
use std::sync::Arc;

use http::HeaderMap;
use pkid_backends::sealed::KeyEncryptionKey;
use rustls_pki_types::CertificateDer;
use serde_json::Value;

use crate::audit::Audit;
use crate::store::{now, Reads, Store, StoreError};

pub use authorize::{
    authorize, Action, Denied, SCOPE_ADMIN_READ, SCOPE_ADMIN_WRITE, SCOPE_PROXY_GENERATE,
};
use certificates::ClientCertificates;
pub use grants::{ClientCredentials, GrantError, IssuedToken};
pub use jwt::{KeyError, TokenKeys};
use nonce::NonceService;
use passwords::PasswordChecker;
pub use principal::{Principal, Proof, Role, UnknownRole, UserPrincipal};
use signed_request::{BoundKey, KeyBindings, SignedRequestError, SignedRequests};
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
    /// The TLS client certificate chain of the connection, leaf first (possession of the leaf's
    /// key proven, nothing else checked yet).
    pub client_chain: Option<&'a [CertificateDer<'static>]>,
    /// Where a JWS-signed request could be: the request's body and URL, given by a surface that
    /// takes JWS-signed requests ([`Presented::signed`]).
    pub request: Option<SignedParts<'a>>,
}

/// A request as a JWS signature covers it.
#[derive(Clone, Copy)]
pub struct SignedParts<'a> {
    pub body: &'a [u8],
    /// `https://host[:port]`, as the client addressed pkid.
    pub origin: &'a str,
    pub path: &'a str,
}

impl<'a> Presented<'a> {
    /// The same, with the request's body and URL for a JWS signature to cover.
    pub fn signed(mut self, body: &'a [u8], origin: &'a str, path: &'a str) -> Presented<'a> {
        self.request = Some(SignedParts { body, origin, path });
        self
    }
}

/// Who a request is from, and, for a JWS-signed request, the body it signed (the request's
/// body for the surface to read: the JWS around it is identity's).
pub struct Authenticated {
    pub principal: Principal,
    pub signed_payload: Option<Vec<u8>>,
}

impl From<Principal> for Authenticated {
    fn from(principal: Principal) -> Authenticated {
        Authenticated {
            principal,
            signed_payload: None,
        }
    }
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
    /// 500: pkid failed while checking it; the detail is safe to log.
    #[error("the credential could not be checked: {0}")]
    Failed(String),
}

/// Users, clients, tokens and the throttle, for the surfaces.
pub struct Identity {
    reads: Reads,
    keys: TokenKeys,
    passwords: PasswordChecker,
    throttle: Throttle,
    settings: IdentitySettings,
    /// Client certificates' trust anchors and trusted proxies.
    certificates: Arc<ClientCertificates>,
    /// JWS-signed requests by keys bound to users.
    signed: SignedRequests,
    /// Logins and the tokens they issue are recorded here.
    audit: Audit,
}

/// Key bindings as the store keeps them (`user_keys` with its user).
struct StoredBindings(Reads);

#[async_trait::async_trait]
impl KeyBindings for StoredBindings {
    async fn key(&self, thumbprint: &str) -> Result<Option<BoundKey>, StoreError> {
        Ok(self
            .0
            .user_by_key(thumbprint)
            .await?
            .map(|(user, key)| BoundKey {
                user_id: user.id,
                username: user.username,
                jwk: key.jwk,
            }))
    }
}

impl Identity {
    /// Identity over `store`, its token signing key made on first start (sealed with `kek`);
    /// `issuer` is the `iss` of its tokens (pkid's base URL).
    /// `certificates`: the anchors client certificates are verified against; `nonces`: the
    /// service ACME issues its nonces from (a JWS-signed request uses one of them).
    pub async fn open(
        store: &Store,
        kek: &KeyEncryptionKey,
        issuer: &str,
        settings: IdentitySettings,
        certificates: Arc<ClientCertificates>,
        nonces: NonceService,
    ) -> Result<Identity, KeyError> {
        let bindings = Arc::new(StoredBindings(store.reads()));
        Ok(Identity {
            reads: store.reads(),
            keys: TokenKeys::load_or_create(store, kek, issuer).await?,
            passwords: PasswordChecker::default(),
            throttle: Throttle::new(settings.throttle),
            settings,
            certificates,
            signed: SignedRequests::new(nonces, bindings).with_base(issuer),
            audit: Audit::new(store.clone()),
        })
    }

    /// Identity recording into `audit` (the process's one trail handle).
    pub fn with_audit(mut self, audit: Audit) -> Identity {
        self.audit = audit;
        self
    }

    /// The key bindings, for the URL that names each (`/identity/keys/{thumbprint}`).
    pub fn bindings(&self) -> Arc<dyn KeyBindings> {
        Arc::new(StoredBindings(self.reads.clone()))
    }

    /// The keys of the JWK Set of the token signing key (`/.well-known/jwks.json`).
    pub fn token_keys(&self) -> Vec<Value> {
        self.keys.public_keys()
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
    pub async fn authenticate(
        &self,
        presented: &Presented<'_>,
    ) -> Result<Authenticated, AuthError> {
        if let Some(request) = presented
            .request
            .filter(|_| jws::is_jose_json(presented.headers))
        {
            return self.signed_request(presented.headers, request).await;
        }
        if let Some(token) = bearer_token(presented.headers)? {
            return self.bearer(token).await.map(Authenticated::from);
        }
        self.certificate(presented).await.map(Authenticated::from)
    }

    /// Step 1: a JWS-signed request by a key bound to an enabled user.
    async fn signed_request(
        &self,
        headers: &HeaderMap,
        request: SignedParts<'_>,
    ) -> Result<Authenticated, AuthError> {
        let signed = self
            .signed
            .authenticate(headers, request.body, request.origin, request.path)
            .await
            .map_err(|e| match e {
                SignedRequestError::Store(e) => AuthError::Unavailable(e),
                e if e.is_refusal() => {
                    tracing::debug!(reason = %e, "a JWS-signed request was refused");
                    AuthError::Invalid("not a valid JWS-signed request")
                }
                e => AuthError::Failed(e.to_string()),
            })?;
        let user = self.enabled_user(&signed.user_id).await?;
        Ok(Authenticated {
            principal: Principal::User(UserPrincipal {
                proof: Proof::JwsKey {
                    thumbprint: signed.thumbprint,
                },
                scopes: None,
                ..user
            }),
            signed_payload: Some(signed.payload),
        })
    }

    /// Step 3: a verified client certificate linked to an enabled user. One that does not
    /// verify, or is linked to nobody, proves nothing pkid knows: `Anonymous`.
    async fn certificate(&self, presented: &Presented<'_>) -> Result<Principal, AuthError> {
        let verified = match self.certificates.presented(
            presented.peer,
            presented.client_chain,
            presented.headers,
        ) {
            None => return Ok(Principal::Anonymous),
            Some(Err(e)) => {
                tracing::debug!(reason = %e, "a client certificate did not verify");
                return Ok(Principal::Anonymous);
            }
            Some(Ok(verified)) => verified,
        };
        let Some(user) = self
            .reads
            .user_by_certificate(&verified.subject_dn, &verified.issuer_dn)
            .await?
        else {
            return Ok(Principal::Anonymous);
        };
        let user = self.enabled_user(&user.id).await?;
        Ok(Principal::User(UserPrincipal {
            proof: Proof::Certificate {
                subject_dn: verified.subject_dn,
                issuer_dn: verified.issuer_dn,
                via_proxy: verified.via_proxy,
            },
            scopes: None,
            ..user
        }))
    }

    /// The user `id` as a principal (its proof to be set), if it exists and is enabled.
    async fn enabled_user(&self, id: &str) -> Result<UserPrincipal, AuthError> {
        let user = self
            .reads
            .user(id)
            .await?
            .filter(|u| u.enabled)
            .ok_or(AuthError::Invalid("the user is disabled or gone"))?;
        let roles = Role::parse_list(&user.roles)
            .map_err(|_| AuthError::Invalid("the user's roles are not readable"))?;
        Ok(UserPrincipal {
            id: user.id,
            username: user.username,
            email: user.email,
            roles,
            proof: Proof::Bearer,
            scopes: None,
        })
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
                let user = self.enabled_user(&claims.sub).await?;
                Ok(Principal::User(UserPrincipal {
                    proof: Proof::Bearer,
                    scopes: claims.scopes(),
                    ..user
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

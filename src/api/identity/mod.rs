//! The identity surface: where credentials become tokens, and where a caller learns who it is.
//!
//! - `POST /token`: the OAuth2 token endpoint (RFC 6749 §3.2), `token.rs`.
//! - `POST /login`: Notary's login, `{"email", "password"}` → `{"result": {"token": "<JWT>"}}`;
//!   errors `{"error": "…"}`: 400 (a body that is not the login's), 401 (wrong credentials, the
//!   same for an unknown user), 429 with `Retry-After` (too many failures).
//! - `GET /.well-known/jwks.json`: the key the access tokens are signed with (RFC 7517 §5).
//! - `GET /identity/me`: who the request's credential names, `{"result": {"kind": …}}`; 401
//!   `{"error": …}` with `WWW-Authenticate: Bearer` (RFC 6750 §3) when it names nobody. A
//!   JWS-signed request (`identity::signed_request`) is one credential among the others.
//! - `GET /identity/keys/{thumbprint}`: a key binding, the `kid` of the requests its key signs
//!   (`keys.rs`), shown to its user and to admins.
//! - `GET /identity/openapi.json`: this surface's OpenAPI 3.1 document (`openapi.rs`), derived
//!   from its wire types (`wire.rs`).
//!
//! Every answer carries `Cache-Control: no-store`, but the JWK Set's.

mod keys;
mod openapi;
mod token;
mod wire;

pub(crate) use token::parse_form;

use std::sync::Arc;

use http::{Method, StatusCode};
use serde_json::Value;

use crate::api::{Caller, Reply, RequestBody, RequestHead};
use crate::identity::{
    authorize, Action, AuthError, Authenticated, GrantError, Identity, Principal,
};

pub struct IdentityApi {
    identity: Arc<Identity>,
    keys: keys::IdentityKeys,
}

/// `{"error": message}` with `status`, not to be cached.
fn error(status: StatusCode, message: &str) -> Reply {
    let body = wire::ErrorBody {
        error: message.to_string(),
    };
    Reply::json(status, &body).header(http::header::CACHE_CONTROL, "no-store")
}

fn method_not_allowed(allowed: &'static str) -> Reply {
    error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed").header(http::header::ALLOW, allowed)
}

impl IdentityApi {
    pub fn new(identity: Arc<Identity>) -> IdentityApi {
        IdentityApi {
            keys: keys::IdentityKeys::new(identity.bindings()),
            identity,
        }
    }

    /// Whether `path` is this surface's.
    pub fn serves(path: &str) -> bool {
        matches!(path, "/token" | "/login" | "/.well-known/jwks.json")
            || path == "/identity"
            || path.starts_with("/identity/")
    }

    /// Serve one request of this surface; a body is read (at most `max_body` bytes) only where
    /// one is expected.
    pub async fn handle(
        &self,
        head: &RequestHead<'_>,
        body: &mut RequestBody,
        max_body: usize,
    ) -> Reply {
        let (method, path, headers, caller) = (head.method, head.path, head.headers, head.caller);
        if keys::IdentityKeys::serves(path) {
            let principal = match self.caller(head, None).await {
                Ok(who) => who.principal,
                Err(reply) => return reply,
            };
            return self
                .keys
                .handle(method, path, |binding| match &principal {
                    Principal::Operator { .. } => true,
                    Principal::User(user) => {
                        user.id == binding.user_id
                            || authorize(&principal, Action::AdminRead).is_ok()
                    }
                    _ => authorize(&principal, Action::AdminRead).is_ok(),
                })
                .await;
        }
        match (path, method) {
            ("/token", &Method::POST) => {
                let body = match body.read(max_body).await {
                    Ok(body) => body,
                    Err(e) => return token::read_error(&e),
                };
                token::serve(&self.identity, headers, caller, &body).await
            }
            ("/token", _) => token::method_not_allowed(),
            ("/login", &Method::POST) => {
                let body = match body.read(max_body).await {
                    Ok(body) => body,
                    Err(e) => return error(e.status(), &e.to_string()),
                };
                self.login(&body, caller).await
            }
            ("/login", _) => method_not_allowed("POST"),
            ("/.well-known/jwks.json", &Method::GET | &Method::HEAD) => {
                let keys = self.identity.token_keys();
                Reply::json(StatusCode::OK, &wire::JwkSet { keys })
                    .header(http::header::CACHE_CONTROL, "public, max-age=300")
            }
            ("/.well-known/jwks.json", _) => method_not_allowed("GET, HEAD"),
            ("/identity/me", &Method::GET) => {
                // A JWS-signed request carries its signature in the body.
                let body = match body.read(max_body).await {
                    Ok(body) => body,
                    Err(e) => return error(e.status(), &e.to_string()),
                };
                self.me(head, &body).await
            }
            ("/identity/me", _) => method_not_allowed("GET"),
            (openapi::PATH, &Method::GET) => Reply {
                status: StatusCode::OK,
                headers: Vec::new(),
                content_type: "application/json",
                body: openapi::document().into(),
            },
            (openapi::PATH, _) => method_not_allowed("GET"),
            _ => error(StatusCode::NOT_FOUND, "no such identity resource"),
        }
    }

    /// Notary's `POST /login`.
    async fn login(&self, body: &[u8], caller: &Caller) -> Reply {
        let Ok(json) = serde_json::from_slice::<Value>(body) else {
            return error(StatusCode::BAD_REQUEST, "Invalid JSON format");
        };
        let login = match serde_json::from_value::<wire::LoginRequest>(json) {
            Ok(login) if !login.email.is_empty() && !login.password.is_empty() => login,
            _ => return error(StatusCode::BAD_REQUEST, "Email and password are required"),
        };
        let (email, password) = (login.email, login.password);
        match self
            .identity
            .login(&email, &password, caller.peer.ip())
            .await
        {
            Ok(issued) => Reply::json(
                StatusCode::OK,
                &wire::LoginAnswer {
                    result: wire::LoginResult {
                        token: issued.access_token,
                    },
                },
            )
            .header(http::header::CACHE_CONTROL, "no-store"),
            Err(GrantError::Throttled(t)) => error(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many failed login attempts. Try again later.",
            )
            .header(http::header::RETRY_AFTER, t.retry_after_secs().to_string()),
            Err(GrantError::Unavailable(e)) => {
                tracing::error!(code = "PKID-IDENTITY", error = %e, "a login could not be served");
                error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the service is unavailable; retry",
                )
            }
            Err(_) => error(
                StatusCode::UNAUTHORIZED,
                "The email or password is incorrect. Try again.",
            ),
        }
    }

    /// Who the request is from, or the answer that says it could not be told; `body`: what a
    /// JWS signature would cover, for a request that may be JWS-signed.
    async fn caller(
        &self,
        head: &RequestHead<'_>,
        body: Option<&[u8]>,
    ) -> Result<Authenticated, Reply> {
        let presented = match body {
            Some(body) => head.presented(body),
            None => head.caller.presented(head.headers),
        };
        self.identity
            .authenticate(&presented)
            .await
            .map_err(|e| match e {
                AuthError::Invalid(_) => {
                    error(StatusCode::UNAUTHORIZED, "the credential is not valid").header(
                        http::header::WWW_AUTHENTICATE,
                        r#"Bearer realm="pkid", error="invalid_token""#,
                    )
                }
                AuthError::Unavailable(e) => {
                    tracing::error!(code = "PKID-STORE", error = %e, "a credential could not be checked");
                    error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "the database is unavailable; retry",
                    )
                }
                AuthError::Failed(e) => {
                    tracing::error!(code = "PKID-IDENTITY", error = %e, "a credential could not be checked");
                    error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "the credential could not be checked",
                    )
                }
            })
    }

    /// `GET /identity/me`.
    async fn me(&self, head: &RequestHead<'_>, body: &[u8]) -> Reply {
        let principal = match self.caller(head, Some(body)).await {
            Ok(who) => who.principal,
            Err(reply) => return reply,
        };
        if authorize(&principal, Action::Whoami).is_err() {
            return error(StatusCode::UNAUTHORIZED, "authentication is required")
                .header(http::header::WWW_AUTHENTICATE, r#"Bearer realm="pkid""#);
        }
        let answer = wire::MeAnswer {
            result: wire::Whoami::from(&principal),
        };
        Reply::json(StatusCode::OK, &answer).header(http::header::CACHE_CONTROL, "no-store")
    }
}

//! `GET /identity/keys/{thumbprint}`: the resource a key binding's URL names, the `kid` of the
//! JWS-signed requests that key signs (`identity::signed_request`). It shows the bound public
//! key and its user's name: `{"result": {"thumbprint", "jwk", "username"}}`; `{"error": …}`
//! with 404 for no binding (or one the caller may not see), 405 for another method, 500 when
//! the lookup fails. Not cached.
//!
//! The identity surface authenticates the caller first and says which bindings it may see (an
//! admin, or the user a key is bound to); this module only answers.

use std::sync::Arc;

use http::{Method, StatusCode};
use serde_json::{Map, Value};

use super::error;
use super::wire::{KeyBinding, KeyBindingAnswer};
use crate::api::Reply;
use crate::identity::signed_request::{is_thumbprint, BoundKey, KeyBindings, BINDINGS_PATH};

/// The key bindings' resources.
pub struct IdentityKeys {
    bindings: Arc<dyn KeyBindings>,
}

impl IdentityKeys {
    pub fn new(bindings: Arc<dyn KeyBindings>) -> IdentityKeys {
        IdentityKeys { bindings }
    }

    /// Whether `path` is a binding's URL.
    pub fn serves(path: &str) -> bool {
        path.starts_with(BINDINGS_PATH)
    }

    /// Answer a request for `path` (under [`BINDINGS_PATH`]). `may_see`: whether the
    /// authenticated caller may see this binding; one it may not is answered as one that does
    /// not exist, so that nobody learns which keys are bound by asking.
    pub async fn handle(
        &self,
        method: &Method,
        path: &str,
        may_see: impl FnOnce(&BoundKey) -> bool,
    ) -> Reply {
        if method != Method::GET {
            return error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
                .header(http::header::ALLOW, "GET");
        }
        let not_found = || error(StatusCode::NOT_FOUND, "no key is bound here");
        let Some(thumbprint) = path
            .strip_prefix(BINDINGS_PATH)
            .filter(|t| is_thumbprint(t))
        else {
            return not_found();
        };
        let failed = || {
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the server could not complete the request; it is safe to retry",
            )
        };
        let bound = match self.bindings.key(thumbprint).await {
            Ok(Some(bound)) if may_see(&bound) => bound,
            Ok(_) => return not_found(),
            Err(e) => {
                tracing::error!(code = "PKID-STORE", error = %e, "key binding lookup failed");
                return failed();
            }
        };
        let Ok(jwk) = serde_json::from_str::<Map<String, Value>>(&bound.jwk) else {
            tracing::error!(thumbprint, "a bound key is stored unreadable");
            return failed();
        };
        let answer = KeyBindingAnswer {
            result: KeyBinding {
                thumbprint: thumbprint.to_string(),
                jwk,
                username: bound.username,
            },
        };
        Reply::json(StatusCode::OK, &answer).header(http::header::CACHE_CONTROL, "no-store")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;

    const THUMBPRINT: &str = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs";

    fn keys() -> IdentityKeys {
        let bound = BoundKey {
            user_id: "u1".into(),
            username: "alice".into(),
            jwk: r#"{"kty":"EC","crv":"P-256","x":"a","y":"b"}"#.into(),
        };
        let bindings: BTreeMap<String, BoundKey> = [(THUMBPRINT.to_string(), bound)].into();
        IdentityKeys::new(Arc::new(bindings))
    }

    fn body(reply: &Reply) -> Value {
        serde_json::from_slice(&reply.body).unwrap()
    }

    #[tokio::test]
    async fn a_binding_shows_its_key_and_user() {
        let keys = keys();
        let path = format!("{BINDINGS_PATH}{THUMBPRINT}");
        assert!(IdentityKeys::serves(&path));
        let reply = keys
            .handle(&Method::GET, &path, |b| b.user_id == "u1")
            .await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(
            body(&reply),
            json!({"result": {
                "thumbprint": THUMBPRINT,
                "jwk": {"kty": "EC", "crv": "P-256", "x": "a", "y": "b"},
                "username": "alice",
            }})
        );
    }

    #[tokio::test]
    async fn no_binding_or_one_the_caller_may_not_see_is_not_found() {
        let keys = keys();
        let other = format!("{BINDINGS_PATH}{}", "A".repeat(43));
        let bound = format!("{BINDINGS_PATH}{THUMBPRINT}");
        for (path, may_see) in [
            (other.as_str(), true),
            (bound.as_str(), false),
            ("/identity/keys/", true),
            ("/identity/keys/x", true),
        ] {
            let reply = keys.handle(&Method::GET, path, |_| may_see).await;
            assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}");
            assert_eq!(body(&reply), json!({"error": "no key is bound here"}));
        }
        let reply = keys.handle(&Method::DELETE, &bound, |_| true).await;
        assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    }
}

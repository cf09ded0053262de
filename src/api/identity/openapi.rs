//! The identity surface's OpenAPI 3.1 document, served at `GET /identity/openapi.json`: its
//! operations described here (each descriptor names the wire types of `wire.rs`), the schemas
//! derived from those types. A unit test holds the document to the surface's router.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::wire::{
    ErrorBody, JwkSet, KeyBindingAnswer, LoginAnswer, LoginRequest, MeAnswer, OAuthError,
    TokenAnswer, TokenForm,
};

/// Where the document is served.
pub const PATH: &str = "/identity/openapi.json";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "pkid identity",
        description = "Logins, OAuth2 access tokens (RFC 6749), the token signing key, and who a credential names.",
    ),
    paths(login, token, jwks, me, key_binding, document_route),
    modifiers(&BearerAuth),
    tags((name = "identity", description = "Credentials and who they name")),
)]
struct IdentityDoc;

/// The document as JSON.
pub fn document() -> String {
    IdentityDoc::openapi()
        .to_json()
        .unwrap_or_else(|_| String::from("{}"))
}

/// `Authorization: Bearer` (a pkid access token or an admin token) as the security scheme.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

// The descriptors: one per operation, never called (the router is `mod.rs`'s `handle`).

/// Notary's login: a token for an email (or username) and password.
#[utoipa::path(post, path = "/login", tag = "identity",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in", body = LoginAnswer),
        (status = 400, description = "Not a login body", body = ErrorBody),
        (status = 401, description = "Wrong credentials (the same for an unknown user)", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 429, description = "Too many failures; retry after Retry-After seconds", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn login() {}

/// The OAuth2 token endpoint: the password and client_credentials grants.
#[utoipa::path(post, path = "/token", tag = "identity",
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "An access token", body = TokenAnswer),
        (status = 400, description = "invalid_request, invalid_grant, unauthorized_client, unsupported_grant_type or invalid_scope", body = OAuthError),
        (status = 401, description = "invalid_client", body = OAuthError),
        (status = 413, description = "Body too large", body = OAuthError),
        (status = 415, description = "Not a form", body = OAuthError),
        (status = 429, description = "Too many failures: temporarily_unavailable", body = OAuthError),
    ),
    security((), ("bearer" = [])))]
#[allow(dead_code)]
fn token() {}

/// The key access tokens are signed with.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "identity",
    responses((status = 200, description = "The JWK Set", body = JwkSet)))]
#[allow(dead_code)]
fn jwks() {}

/// Who the request's credential (bearer token, client certificate, JWS-signed request) names.
#[utoipa::path(get, path = "/identity/me", tag = "identity",
    responses(
        (status = 200, description = "The caller", body = MeAnswer),
        (status = 401, description = "No credential, or one that names nobody", body = ErrorBody),
    ),
    security(("bearer" = [])))]
#[allow(dead_code)]
fn me() {}

/// A key binding: the `kid` of the JWS-signed requests its key signs.
#[utoipa::path(get, path = "/identity/keys/{thumbprint}", tag = "identity",
    params(("thumbprint" = String, Path, description = "The key's RFC 7638 thumbprint")),
    responses(
        (status = 200, description = "The binding", body = KeyBindingAnswer),
        (status = 401, description = "No valid credential", body = ErrorBody),
        (status = 404, description = "No binding the caller may see", body = ErrorBody),
    ),
    security(("bearer" = [])))]
#[allow(dead_code)]
fn key_binding() {}

/// This document.
#[utoipa::path(get, path = "/identity/openapi.json", tag = "identity",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json")))]
#[allow(dead_code)]
fn document_route() {}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::Value;

    use super::*;
    use crate::api::identity::IdentityApi;

    #[test]
    fn the_document_lists_each_route_of_the_surface_once() {
        let operations: Vec<String> = crate::api::documented_operations(&document())
            .into_iter()
            .map(|(method, path)| {
                assert!(IdentityApi::serves(&path), "{path} is not this surface's");
                format!("{method} {path}")
            })
            .collect();
        let document: Value = serde_json::from_str(&document()).unwrap();
        assert_eq!(document["openapi"], "3.1.0");
        assert_eq!(
            operations,
            [
                "GET /.well-known/jwks.json",
                "GET /identity/keys/{thumbprint}",
                "GET /identity/me",
                "GET /identity/openapi.json",
                "POST /login",
                "POST /token",
            ]
        );
        // Every body named is a schema derived from a wire type.
        let schemas = document["components"]["schemas"].as_object().unwrap();
        for name in [
            "ErrorBody",
            "OAuthError",
            "LoginRequest",
            "TokenAnswer",
            "Whoami",
        ] {
            assert!(schemas.contains_key(name), "{name} missing");
        }
    }
}

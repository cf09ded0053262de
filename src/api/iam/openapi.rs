//! The IAM surface's OpenAPI 3.1 document, served at `GET /iam/openapi.json`: one descriptor
//! per operation (each names the wire types of `wire.rs`), the schemas derived from those
//! types. A unit test holds the document and the router (`ROUTES`, `route`) together.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::wire::{
    AuthErrorBody, CertLinkRequest, CertLinkRequestList, ErrorBody, LinkStatus, ListQuery,
    NewCertLinkRequest, ProxyCertificate, ProxyForm, ProxyUpload, RejectQuery, TrustList,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "pkid IAM",
        description = "INDIGO IAM's certificate linking requests and proxy certificate APIs: link a certificate to an account (requested by the user, approved by an administrator), and generate RFC 3820 proxy certificates from an uploaded one.",
    ),
    paths(
        trusts, create_link, list_links, get_link, delete_link, approve_link, reject_link,
        upload_proxy, generate_proxy, document_route
    ),
    components(schemas(LinkStatus)),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags((name = "iam", description = "Certificate linking requests and proxy certificates")),
)]
struct IamDoc;

/// The document as JSON.
pub fn document() -> String {
    IamDoc::openapi()
        .to_json()
        .unwrap_or_else(|_| String::from("{}"))
}

/// `Authorization: Bearer` (a pkid access token) as the security scheme.
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

// The descriptors: one per operation, never called (the router is `mod.rs`'s `route`).

/// The trust anchors: the CAs whose certificates may be linked.
#[utoipa::path(get, path = "/iam/api/trusts", tag = "iam",
    responses(
        (status = 200, description = "The anchors' subjects, RFC 2253", body = TrustList),
        (status = 401, description = "No valid credential", body = AuthErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn trusts() {}

/// Ask for a certificate to be linked to the caller's account.
#[utoipa::path(post, path = "/iam/cert_link_requests", tag = "iam",
    request_body = NewCertLinkRequest,
    responses(
        (status = 200, description = "The request, PENDING", body = CertLinkRequest),
        (status = 400, description = "Not a valid request, or refused by a rule", body = ErrorBody),
        (status = 401, description = "No valid credential", body = AuthErrorBody),
        (status = 403, description = "Not a user's credential", body = AuthErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn create_link() {}

/// A page of requests: every one for administrators, one's own for others.
#[utoipa::path(get, path = "/iam/cert_link_requests", tag = "iam",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of requests", body = CertLinkRequestList),
        (status = 400, description = "A parameter is not valid", body = ErrorBody),
        (status = 401, description = "No valid credential", body = AuthErrorBody),
        (status = 403, description = "Neither an administrator nor a user", body = AuthErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn list_links() {}

/// One request: an administrator's or its owner's.
#[utoipa::path(get, path = "/iam/cert_link_requests/{uuid}", tag = "iam",
    params(("uuid" = String, Path, description = "The request's id")),
    responses(
        (status = 200, description = "The request", body = CertLinkRequest),
        (status = 401, description = "No valid credential", body = AuthErrorBody),
        (status = 403, description = "Another account's request", body = AuthErrorBody),
        (status = 404, description = "No such request", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn get_link() {}

/// Delete a request: administrators any, its owner while PENDING.
#[utoipa::path(delete, path = "/iam/cert_link_requests/{uuid}", tag = "iam",
    params(("uuid" = String, Path, description = "The request's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Its owner may delete it only while PENDING", body = ErrorBody),
        (status = 401, description = "No valid credential", body = AuthErrorBody),
        (status = 403, description = "Another account's request", body = AuthErrorBody),
        (status = 404, description = "No such request", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn delete_link() {}

/// Approve a PENDING request: the certificate is linked to the account.
#[utoipa::path(post, path = "/iam/cert_link_requests/{uuid}/approve", tag = "iam",
    params(("uuid" = String, Path, description = "The request's id")),
    responses(
        (status = 200, description = "The request, APPROVED", body = CertLinkRequest),
        (status = 400, description = "Not PENDING (an invalid transition), or linked already", body = ErrorBody),
        (status = 401, description = "No valid credential", body = AuthErrorBody),
        (status = 403, description = "Not an administrator", body = AuthErrorBody),
        (status = 404, description = "No such request", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn approve_link() {}

/// Reject a PENDING request, saying why.
#[utoipa::path(post, path = "/iam/cert_link_requests/{uuid}/reject", tag = "iam",
    params(("uuid" = String, Path, description = "The request's id"), RejectQuery),
    responses(
        (status = 200, description = "The request, REJECTED, with its motivation", body = CertLinkRequest),
        (status = 400, description = "No motivation, or not PENDING (an invalid transition)", body = ErrorBody),
        (status = 401, description = "No valid credential", body = AuthErrorBody),
        (status = 403, description = "Not an administrator", body = AuthErrorBody),
        (status = 404, description = "No such request", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn reject_link() {}

/// Store the caller's proxy of a linked certificate (proxy, unencrypted key, chain).
#[utoipa::path(put, path = "/iam/account/me/proxycert", tag = "iam",
    request_body = ProxyUpload,
    responses(
        (status = 200, description = "Stored (an empty body)"),
        (status = 400, description = "Not a valid proxy file, or not of a linked certificate", body = ErrorBody),
        (status = 401, description = "No valid credential", body = AuthErrorBody),
        (status = 403, description = "Not a user's credential", body = AuthErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn upload_proxy() {}

/// A new proxy certificate made from the caller's stored one.
#[utoipa::path(post, path = "/iam/proxycert", tag = "iam",
    request_body(content = ProxyForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "The new proxy and its file", body = ProxyCertificate),
        (status = 400, description = "A parameter is not valid", body = ErrorBody),
        (status = 401, description = "No valid credential, or wrong client credentials", body = AuthErrorBody),
        (status = 403, description = "The token lacks proxy:generate, or the client is not registered for it", body = AuthErrorBody),
        (status = 412, description = "No (valid) stored proxy", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 429, description = "Too many failed client authentications", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn generate_proxy() {}

/// This document.
#[utoipa::path(get, path = "/iam/openapi.json", tag = "iam", security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json")))]
#[allow(dead_code)]
fn document_route() {}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::collections::BTreeSet;

    use super::super::{route, ROUTES};
    use super::*;

    /// The document lists exactly the operations the router serves.
    #[test]
    fn the_document_lists_every_route_and_no_other() {
        let listed: BTreeSet<(String, String)> = crate::api::documented_operations(&document())
            .into_iter()
            .collect();
        let doc: serde_json::Value = serde_json::from_str(&document()).unwrap();
        let routed: BTreeSet<(String, String)> = ROUTES
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        assert_eq!(listed, routed);
        for (method, path) in &routed {
            let concrete = path.replace("{uuid}", "39c647dd-67a7-485f-90dc-82f42df8573f");
            assert!(
                route(&method.parse().unwrap(), &concrete).is_ok(),
                "{method} {path} is listed but not routed"
            );
        }
        for schema in [
            "CertLinkRequest",
            "CertLinkRequestList",
            "ProxyCertificate",
            "TrustList",
        ] {
            assert!(doc["components"]["schemas"][schema].is_object(), "{schema}");
        }
    }
}

//! The Notary surface's OpenAPI 3.1 document, served at `GET /api/v1/openapi.json`: each
//! operation described here (the descriptors name the wire types of `wire.rs`), the schemas
//! derived from those types. A unit test holds the document to the surface's router.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::wire::{
    AccountAnswer, AccountListAnswer, CaAnswer, CaListAnswer, ChangePassword, CreateAccount,
    CreateCa, CreateRequest, CreatedAnswer, CrlAnswer, DoneAnswer, ErrorBody, RequestAnswer,
    RequestListAnswer, RevokeWith, SignWith, StatusAnswer, UpdateCa, UploadCaChain,
    UploadCertificate,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "pkid certificate requests and certificate authorities (Notary)",
        description = "Notary's /api/v1: certificate requests signed by CAs made at run time, the CAs, accounts. Errors are {\"error\": \"…\"}; bodies are limited to 100 KiB (413).",
    ),
    paths(
        list_requests, create_request, get_request, delete_request, reject_request,
        sign_request, upload_certificate, delete_certificate, revoke_certificate,
        list_cas, create_ca, get_ca, update_ca, delete_ca, sign_ca, upload_ca_chain,
        revoke_ca, ca_crl,
        list_accounts, create_account, my_account, get_account, delete_account, change_password,
        status, document_route,
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "certificate requests"),
        (name = "certificate authorities"),
        (name = "accounts"),
        (name = "status"),
    ),
)]
struct NotaryDoc;

/// The document as JSON.
pub fn document() -> String {
    NotaryDoc::openapi()
        .to_json()
        .unwrap_or_else(|_| String::from("{}"))
}

/// `Authorization: Bearer` (a token from `/login`, or an admin token) as the security scheme.
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

/// Certificate requests (a certificate requestor sees its own).
#[utoipa::path(get, path = "/api/v1/certificate_requests", tag = "certificate requests",
    params(
        ("page" = Option<i64>, Query, description = "pkid's: the page, from 1"),
        ("per_page" = Option<i64>, Query, description = "pkid's: requests per page (default 100, at most 1000)"),
    ),
    responses(
        (status = 200, description = "The requests", body = RequestListAnswer),
        (status = 400, description = "A bad page", body = ErrorBody),
        (status = 401, description = "No valid credential", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody),
    ),
    security(("bearer" = [])))]
#[allow(dead_code)]
fn list_requests() {}

/// Submit a CSR (PEM). The same CSR twice is refused.
#[utoipa::path(post, path = "/api/v1/certificate_requests", tag = "certificate requests",
    request_body = CreateRequest,
    responses(
        (status = 201, description = "Recorded", body = CreatedAnswer),
        (status = 400, description = "Not a CSR, a bad CSR, or one recorded already", body = ErrorBody),
        (status = 401, description = "No valid credential", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody),
        (status = 413, description = "Body over 100 KiB", body = ErrorBody),
    ),
    security(("bearer" = [])))]
#[allow(dead_code)]
fn create_request() {}

/// One request.
#[utoipa::path(get, path = "/api/v1/certificate_requests/{id}", tag = "certificate requests",
    params(("id" = i64, Path)),
    responses(
        (status = 200, description = "The request", body = RequestAnswer),
        (status = 400, description = "Not an id", body = ErrorBody),
        (status = 401, description = "No valid credential", body = ErrorBody),
        (status = 403, description = "Another's request", body = ErrorBody),
        (status = 404, description = "No such request", body = ErrorBody),
    ),
    security(("bearer" = [])))]
#[allow(dead_code)]
fn get_request() {}

/// Delete a request (its certificate, if any, is not revoked).
#[utoipa::path(delete, path = "/api/v1/certificate_requests/{id}", tag = "certificate requests",
    params(("id" = i64, Path)),
    responses(
        (status = 202, description = "Deleted", body = DoneAnswer),
        (status = 400, description = "Not an id, or being signed", body = ErrorBody),
        (status = 401, description = "No valid credential", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody),
        (status = 404, description = "No such request", body = ErrorBody),
    ),
    security(("bearer" = [])))]
#[allow(dead_code)]
fn delete_request() {}

/// Reject an outstanding request.
#[utoipa::path(post, path = "/api/v1/certificate_requests/{id}/reject", tag = "certificate requests",
    params(("id" = i64, Path)),
    responses(
        (status = 202, description = "Rejected", body = DoneAnswer),
        (status = 400, description = "Not an id, or not outstanding (an active one is revoked instead)", body = ErrorBody),
        (status = 401, description = "No valid credential", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody),
        (status = 404, description = "No such request", body = ErrorBody),
    ),
    security(("bearer" = [])))]
#[allow(dead_code)]
fn reject_request() {}

/// Sign an outstanding request with an enabled CA here (subject and SANs copied, one year,
/// TLS server and client, the CA's CRL).
#[utoipa::path(post, path = "/api/v1/certificate_requests/{id}/sign", tag = "certificate requests",
    params(("id" = i64, Path)),
    request_body = SignWith,
    responses(
        (status = 202, description = "Signed", body = DoneAnswer),
        (status = 400, description = "Not an id; the request is not outstanding; the CA is disabled, expired, revoked or has no certificate", body = ErrorBody),
        (status = 401, description = "No valid credential", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody),
        (status = 404, description = "No such request or CA", body = ErrorBody),
    ),
    security(("bearer" = [])))]
#[allow(dead_code)]
fn sign_request() {}

/// Give an outstanding request a chain an outside CA issued.
#[utoipa::path(post, path = "/api/v1/certificate_requests/{id}/certificate", tag = "certificate requests",
    params(("id" = i64, Path)),
    request_body = UploadCertificate,
    responses(
        (status = 201, description = "Stored", body = CreatedAnswer),
        (status = 400, description = "Not an id; a chain that does not hold together or does not match the CSR; not outstanding", body = ErrorBody),
        (status = 401, description = "No valid credential", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody),
        (status = 404, description = "No such request", body = ErrorBody),
    ),
    security(("bearer" = [])))]
#[allow(dead_code)]
fn upload_certificate() {}

/// Forget an active request's certificate (not revoking it): outstanding again.
#[utoipa::path(delete, path = "/api/v1/certificate_requests/{id}/certificate", tag = "certificate requests",
    params(("id" = i64, Path)),
    responses(
        (status = 200, description = "Deleted", body = DoneAnswer),
        (status = 400, description = "Not an id, or no certificate", body = ErrorBody),
        (status = 401, description = "No valid credential", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody),
        (status = 404, description = "No such request", body = ErrorBody),
    ),
    security(("bearer" = [])))]
#[allow(dead_code)]
fn delete_certificate() {}

/// Revoke the certificate a CA here signed: onto that CA's CRL.
#[utoipa::path(post, path = "/api/v1/certificate_requests/{id}/certificate/revoke", tag = "certificate requests",
    params(("id" = i64, Path)),
    request_body(content = Option<RevokeWith>, description = "pkid's: an optional reason"),
    responses(
        (status = 202, description = "Revoked", body = DoneAnswer),
        (status = 400, description = "Not an id, a bad reason, or revoked already", body = ErrorBody),
        (status = 401, description = "No valid credential", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody),
        (status = 404, description = "No such request", body = ErrorBody),
        (status = 422, description = "No certificate a CA here signed", body = ErrorBody),
    ),
    security(("bearer" = [])))]
#[allow(dead_code)]
fn revoke_certificate() {}

/// The CAs made here.
#[utoipa::path(get, path = "/api/v1/certificate_authorities", tag = "certificate authorities",
    responses(
        (status = 200, description = "The CAs", body = CaListAnswer),
        (status = 401, description = "No valid credential", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody),
    ),
    security(("bearer" = [])))]
#[allow(dead_code)]
fn list_cas() {}

/// Make a CA: a self-signed root, or an intermediate that waits for its certificate.
#[utoipa::path(post, path = "/api/v1/certificate_authorities", tag = "certificate authorities",
    request_body = CreateCa,
    responses(
        (status = 201, description = "Made", body = CreatedAnswer),
        (status = 400, description = "A bad field, or a name taken", body = ErrorBody),
        (status = 401, description = "No valid credential", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody),
    ),
    security(("bearer" = [])))]
#[allow(dead_code)]
fn create_ca() {}

/// One CA.
#[utoipa::path(get, path = "/api/v1/certificate_authorities/{id}", tag = "certificate authorities",
    params(("id" = i64, Path)),
    responses(
        (status = 200, description = "The CA", body = CaAnswer),
        (status = 400, description = "Not an id", body = ErrorBody),
        (status = 401, description = "No valid credential", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody),
        (status = 404, description = "No such CA", body = ErrorBody),
    ),
    security(("bearer" = [])))]
#[allow(dead_code)]
fn get_ca() {}

/// Enable or disable a CA.
#[utoipa::path(put, path = "/api/v1/certificate_authorities/{id}", tag = "certificate authorities",
    params(("id" = i64, Path)),
    request_body = UpdateCa,
    responses(
        (status = 200, description = "Changed", body = DoneAnswer),
        (status = 400, description = "Not an id; enabling one without a certificate, or revoked", body = ErrorBody),
        (status = 401, description = "No valid credential", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody),
        (status = 404, description = "No such CA", body = ErrorBody),
    ),
    security(("bearer" = [])))]
#[allow(dead_code)]
fn update_ca() {}

/// Delete a CA (it stops issuing and publishing).
#[utoipa::path(delete, path = "/api/v1/certificate_authorities/{id}", tag = "certificate authorities",
    params(("id" = i64, Path)),
    responses(
        (status = 200, description = "Deleted", body = DoneAnswer),
        (status = 400, description = "Not an id", body = ErrorBody),
        (status = 401, description = "No valid credential", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody),
        (status = 404, description = "No such CA", body = ErrorBody),
    ),
    security(("bearer" = [])))]
#[allow(dead_code)]
fn delete_ca() {}

/// Sign a waiting intermediate with another CA here.
#[utoipa::path(post, path = "/api/v1/certificate_authorities/{id}/sign", tag = "certificate authorities",
    params(("id" = i64, Path)),
    request_body = SignWith,
    responses(
        (status = 202, description = "Signed", body = DoneAnswer),
        (status = 400, description = "Not an id; it has a certificate; the signing CA cannot sign", body = ErrorBody),
        (status = 401, description = "No valid credential", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody),
        (status = 404, description = "No such CA", body = ErrorBody),
    ),
    security(("bearer" = [])))]
#[allow(dead_code)]
fn sign_ca() {}

/// Give a waiting CA a chain from an outside CA.
#[utoipa::path(post, path = "/api/v1/certificate_authorities/{id}/certificate", tag = "certificate authorities",
    params(("id" = i64, Path)),
    request_body = UploadCaChain,
    responses(
        (status = 201, description = "Stored; the CA is enabled", body = CreatedAnswer),
        (status = 400, description = "Not an id; a chain that does not hold together or is not for the CA's key; it has a certificate", body = ErrorBody),
        (status = 401, description = "No valid credential", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody),
        (status = 404, description = "No such CA", body = ErrorBody),
    ),
    security(("bearer" = [])))]
#[allow(dead_code)]
fn upload_ca_chain() {}

/// Revoke a CA: disabled, and its certificate onto its parent's CRL.
#[utoipa::path(post, path = "/api/v1/certificate_authorities/{id}/revoke", tag = "certificate authorities",
    params(("id" = i64, Path)),
    request_body(content = Option<RevokeWith>, description = "pkid's: an optional reason"),
    responses(
        (status = 202, description = "Revoked", body = DoneAnswer),
        (status = 400, description = "Not an id, a bad reason, no certificate, or revoked already", body = ErrorBody),
        (status = 401, description = "No valid credential", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody),
        (status = 404, description = "No such CA", body = ErrorBody),
    ),
    security(("bearer" = [])))]
#[allow(dead_code)]
fn revoke_ca() {}

/// A CA's CRL (open): JSON, or DER with `Accept: application/pkix-crl`.
#[utoipa::path(get, path = "/api/v1/certificate_authorities/{id}/crl", tag = "certificate authorities",
    params(("id" = i64, Path)),
    responses(
        (status = 200, description = "The CRL", content(
            (CrlAnswer = "application/json"),
            (Vec<u8> = "application/pkix-crl"),
        )),
        (status = 400, description = "Not an id", body = ErrorBody),
        (status = 404, description = "No such CA, or no certificate yet", body = ErrorBody),
        (status = 503, description = "The CRL could not be made now", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn ca_crl() {}

/// The accounts.
#[utoipa::path(get, path = "/api/v1/accounts", tag = "accounts",
    responses(
        (status = 200, description = "The accounts", body = AccountListAnswer),
        (status = 401, description = "No valid credential", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
    ),
    security(("bearer" = [])))]
#[allow(dead_code)]
fn list_accounts() {}

/// Make an account: the first without credentials (an admin), later ones by an admin.
#[utoipa::path(post, path = "/api/v1/accounts", tag = "accounts",
    request_body = CreateAccount,
    responses(
        (status = 201, description = "Made", body = CreatedAnswer),
        (status = 400, description = "A bad e-mail address, password or role, or the address is taken", body = ErrorBody),
        (status = 401, description = "Accounts exist and there is no valid credential", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
    ),
    security((), ("bearer" = [])))]
#[allow(dead_code)]
fn create_account() {}

/// The caller's own account.
#[utoipa::path(get, path = "/api/v1/accounts/me", tag = "accounts",
    responses(
        (status = 200, description = "The account", body = AccountAnswer),
        (status = 401, description = "No valid credential", body = ErrorBody),
        (status = 404, description = "The credential names no account (an admin token)", body = ErrorBody),
    ),
    security(("bearer" = [])))]
#[allow(dead_code)]
fn my_account() {}

/// One account.
#[utoipa::path(get, path = "/api/v1/accounts/{id}", tag = "accounts",
    params(("id" = i64, Path)),
    responses(
        (status = 200, description = "The account", body = AccountAnswer),
        (status = 400, description = "Not an id", body = ErrorBody),
        (status = 401, description = "No valid credential", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such account", body = ErrorBody),
    ),
    security(("bearer" = [])))]
#[allow(dead_code)]
fn get_account() {}

/// Delete an account (never an admin's).
#[utoipa::path(delete, path = "/api/v1/accounts/{id}", tag = "accounts",
    params(("id" = i64, Path)),
    responses(
        (status = 202, description = "Deleted", body = DoneAnswer),
        (status = 400, description = "Not an id, or an admin's account", body = ErrorBody),
        (status = 401, description = "No valid credential", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such account", body = ErrorBody),
    ),
    security(("bearer" = [])))]
#[allow(dead_code)]
fn delete_account() {}

/// A new password: one's own (`me` or one's id), or anyone's by an admin.
#[utoipa::path(post, path = "/api/v1/accounts/{id}/change_password", tag = "accounts",
    params(("id" = String, Path, description = "An account id, or `me`")),
    request_body = ChangePassword,
    responses(
        (status = 201, description = "Changed", body = DoneAnswer),
        (status = 400, description = "Not an id, or a weak password", body = ErrorBody),
        (status = 401, description = "No valid credential", body = ErrorBody),
        (status = 403, description = "Another's account, not by an admin", body = ErrorBody),
        (status = 404, description = "No such account", body = ErrorBody),
    ),
    security(("bearer" = [])))]
#[allow(dead_code)]
fn change_password() {}

/// Whether an account exists, and pkid's version (open).
#[utoipa::path(get, path = "/status", tag = "status",
    responses(
        (status = 200, description = "The status", body = StatusAnswer),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn status() {}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "status",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json")))]
#[allow(dead_code)]
fn document_route() {}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::Value;

    use super::*;
    use crate::api::notary::{NotaryApi, Route};

    #[test]
    fn the_document_lists_each_route_of_the_surface_once() {
        let operations = crate::api::documented_operations(&document());
        let document: Value = serde_json::from_str(&document()).unwrap();
        assert_eq!(document["openapi"], "3.1.0");
        let paths: std::collections::BTreeSet<&String> =
            operations.iter().map(|(_, path)| path).collect();
        for path in paths {
            assert!(NotaryApi::serves(path), "{path} is not this surface's");
            let concrete = path.replace("{id}", "1");
            let route = Route::of(&concrete);
            assert!(route.is_some(), "{path} is not routed");
            let route = route.unwrap();
            let mut served: Vec<String> = route.allows().iter().map(|m| m.to_string()).collect();
            served.sort();
            let documented: Vec<String> = operations
                .iter()
                .filter(|(_, p)| p == path)
                .map(|(method, _)| method.clone())
                .collect();
            // /accounts/me is routed apart from /accounts/{id}: their methods meet there.
            if path != "/api/v1/accounts/{id}" {
                assert_eq!(documented, served, "{path}");
            }
        }
        assert_eq!(operations.len(), 26, "{operations:?}");
        let schemas = document["components"]["schemas"].as_object().unwrap();
        for name in [
            "ErrorBody",
            "CertificateRequest",
            "CertificateAuthority",
            "Account",
            "CreateCa",
        ] {
            assert!(schemas.contains_key(name), "{name} missing");
        }
    }
}

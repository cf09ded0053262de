//! The IAM surface (`/iam`): INDIGO IAM's certificate linking requests API and proxy
//! certificate API, field for field, over pkid's users, their linked certificates and the RA's
//! IAM side (`ra::iam`).
//!
//! - `GET /iam/api/trusts`: the trust anchors' subjects (`links.rs`).
//! - `/iam/cert_link_requests[/{uuid}[/approve|/reject]]`: create (200), list (paged, filtered),
//!   get, delete (204), approve, reject (`links.rs`).
//! - `PUT /iam/account/me/proxycert`, `POST /iam/proxycert`: a user's proxy, and proxies made
//!   from it (`proxies.rs`).
//! - `GET /iam/openapi.json`: this surface's OpenAPI 3.1 document (`openapi.rs`), from the wire
//!   types of `wire.rs`.
//!
//! Authentication through `identity` (a bearer token, a linked client certificate, a
//! JWS-signed request); authorization by its table (`IamAccount`, `ProxyGenerate`, and the
//! administrators' `AdminRead`/`AdminWrite`). Errors in IAM's shapes: `{"error": …}` (400, 404,
//! 412 …), 401 `{"error": "unauthorized", "error_description": …}`, 403 `{"error":
//! "access_denied", "error_description": …}`. Every answer carries `Cache-Control: no-store`.

mod links;
mod openapi;
mod proxies;
mod wire;

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, StatusCode};
use serde::Serialize;

use crate::api::identity::parse_form;
use crate::api::{Reply, RequestBody, RequestHead};
use crate::identity::{authorize, Action, AuthError, Authenticated, Denied, Identity, Principal};
use crate::ra::iam::{Actor, Iam, IamError};
use wire::{AuthErrorBody, ErrorBody};

pub struct IamApi {
    iam: Arc<Iam>,
    identity: Arc<Identity>,
}

/// One operation of this surface, with the request it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route<'a> {
    Trusts,
    CreateLink,
    ListLinks,
    GetLink(&'a str),
    DeleteLink(&'a str),
    ApproveLink(&'a str),
    RejectLink(&'a str),
    UploadProxy,
    GenerateProxy,
    Document,
}

/// Why a request names no operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Miss {
    NotFound,
    /// The methods the path takes.
    MethodNotAllowed(&'static str),
}

/// Every operation, as its OpenAPI document writes it (`openapi.rs` holds the two together).
#[cfg(test)]
const ROUTES: &[(&str, &str)] = &[
    ("GET", "/iam/api/trusts"),
    ("POST", "/iam/cert_link_requests"),
    ("GET", "/iam/cert_link_requests"),
    ("GET", "/iam/cert_link_requests/{uuid}"),
    ("DELETE", "/iam/cert_link_requests/{uuid}"),
    ("POST", "/iam/cert_link_requests/{uuid}/approve"),
    ("POST", "/iam/cert_link_requests/{uuid}/reject"),
    ("PUT", "/iam/account/me/proxycert"),
    ("POST", "/iam/proxycert"),
    ("GET", "/iam/openapi.json"),
];

/// The operation `method path` names.
fn route<'a>(method: &Method, path: &'a str) -> Result<Route<'a>, Miss> {
    let segments: Vec<&str> = path
        .strip_prefix("/iam/")
        .ok_or(Miss::NotFound)?
        .split('/')
        .collect();
    let (route, allowed) = match (method, segments.as_slice()) {
        (&Method::GET, ["api", "trusts"]) => (Some(Route::Trusts), ""),
        (_, ["api", "trusts"]) => (None, "GET"),
        (&Method::POST, ["cert_link_requests"]) => (Some(Route::CreateLink), ""),
        (&Method::GET, ["cert_link_requests"]) => (Some(Route::ListLinks), ""),
        (_, ["cert_link_requests"]) => (None, "GET, POST"),
        (&Method::GET, ["cert_link_requests", uuid]) if !uuid.is_empty() => {
            (Some(Route::GetLink(uuid)), "")
        }
        (&Method::DELETE, ["cert_link_requests", uuid]) if !uuid.is_empty() => {
            (Some(Route::DeleteLink(uuid)), "")
        }
        (_, ["cert_link_requests", uuid]) if !uuid.is_empty() => (None, "GET, DELETE"),
        (&Method::POST, ["cert_link_requests", uuid, "approve"]) if !uuid.is_empty() => {
            (Some(Route::ApproveLink(uuid)), "")
        }
        (&Method::POST, ["cert_link_requests", uuid, "reject"]) if !uuid.is_empty() => {
            (Some(Route::RejectLink(uuid)), "")
        }
        (_, ["cert_link_requests", uuid, "approve" | "reject"]) if !uuid.is_empty() => {
            (None, "POST")
        }
        (&Method::PUT, ["account", "me", "proxycert"]) => (Some(Route::UploadProxy), ""),
        (_, ["account", "me", "proxycert"]) => (None, "PUT"),
        (&Method::POST, ["proxycert"]) => (Some(Route::GenerateProxy), ""),
        (_, ["proxycert"]) => (None, "POST"),
        (&Method::GET, ["openapi.json"]) => (Some(Route::Document), ""),
        (_, ["openapi.json"]) => (None, "GET"),
        _ => return Err(Miss::NotFound),
    };
    route.ok_or(Miss::MethodNotAllowed(allowed))
}

/// `value` as JSON with `status`, not to be cached.
fn json<T: Serialize>(status: StatusCode, value: &T) -> Reply {
    Reply::json(status, value).header(http::header::CACHE_CONTROL, "no-store")
}

/// `{"error": message}`.
fn error(status: StatusCode, message: impl Into<String>) -> Reply {
    json(
        status,
        &ErrorBody {
            error: message.into(),
        },
    )
}

fn bad_request(message: impl Into<String>) -> Reply {
    error(StatusCode::BAD_REQUEST, message)
}

/// 401 `{"error": "unauthorized", "error_description": …}`.
fn unauthorized(description: &str) -> Reply {
    json(
        StatusCode::UNAUTHORIZED,
        &AuthErrorBody {
            error: "unauthorized".into(),
            error_description: description.into(),
        },
    )
    .header(http::header::WWW_AUTHENTICATE, r#"Bearer realm="pkid""#)
}

/// 403 `{"error": "access_denied", "error_description": …}`.
fn access_denied(description: &str) -> Reply {
    json(
        StatusCode::FORBIDDEN,
        &AuthErrorBody {
            error: "access_denied".into(),
            error_description: description.into(),
        },
    )
}

/// A refusal of the authorization table.
fn denied(why: Denied) -> Reply {
    match why {
        Denied::Unauthenticated => {
            unauthorized("Full authentication is required to access this resource")
        }
        Denied::Forbidden => access_denied("Access is denied"),
    }
}

/// The RA's refusals in IAM's shapes.
fn iam_error(e: IamError) -> Reply {
    match e {
        IamError::Invalid(m) => bad_request(m),
        e @ IamError::Transition { .. } => bad_request(e.to_string()),
        IamError::Forbidden(m) => access_denied(&m),
        IamError::NotFound(m) => error(StatusCode::NOT_FOUND, m),
        IamError::NoProxy(m) => error(StatusCode::PRECONDITION_FAILED, m),
        IamError::Internal(m) => {
            tracing::error!(code = "PKID-IAM", error = %m, "an IAM request failed");
            error(StatusCode::INTERNAL_SERVER_ERROR, m)
        }
        IamError::Store(e) => {
            tracing::error!(code = "PKID-STORE", error = %e, "an IAM request failed");
            unavailable()
        }
    }
}

fn unavailable() -> Reply {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "the database is unavailable; retry",
    )
}

/// The parameters of a query string or a form body (each at most once; an empty value counts
/// as absent).
fn parameters(text: &[u8]) -> Result<BTreeMap<String, String>, Reply> {
    parse_form(text).map_err(|why| bad_request(format!("the parameters: {why}")))
}

/// Who acts on requests that may be another's: an administrator reading (`AdminRead`) or
/// writing (`AdminWrite`) sees every one; a user only their own.
fn actor(principal: &Principal, action: Action) -> Option<Actor<'_>> {
    if authorize(principal, action).is_ok() {
        return Some(Actor::Admin);
    }
    match principal {
        Principal::User(user) if authorize(principal, Action::IamAccount).is_ok() => {
            Some(Actor::User(&user.id))
        }
        _ => None,
    }
}

impl IamApi {
    pub fn new(iam: Arc<Iam>, identity: Arc<Identity>) -> IamApi {
        IamApi { iam, identity }
    }

    /// Whether `path` is this surface's.
    pub fn serves(path: &str) -> bool {
        path == "/iam" || path.starts_with("/iam/")
    }

    /// Serve one request under `/iam/`: the body (at most `max_body` bytes) is read first.
    pub async fn handle(
        &self,
        head: &RequestHead<'_>,
        body: &mut RequestBody,
        max_body: usize,
    ) -> Reply {
        let route = match route(head.method, head.path) {
            Ok(route) => route,
            Err(Miss::NotFound) => return error(StatusCode::NOT_FOUND, "Not found"),
            Err(Miss::MethodNotAllowed(allowed)) => {
                return error(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed")
                    .header(http::header::ALLOW, allowed)
            }
        };
        if route == Route::Document {
            return Reply::bytes("application/json", openapi::document())
                .header(http::header::CACHE_CONTROL, "no-store");
        }
        let body = match body.read(max_body).await {
            Ok(body) => body,
            Err(e) => return error(e.status(), e.to_string()),
        };
        let (principal, body) = match self.authenticate(head, &body).await {
            Ok(Authenticated {
                principal,
                signed_payload,
            }) => (principal, signed_payload.map(Bytes::from).unwrap_or(body)),
            Err(reply) => return reply,
        };
        if principal == Principal::Anonymous {
            return denied(Denied::Unauthenticated);
        }
        let query = head.query.as_bytes();
        match route {
            Route::Trusts => self.trusts(&principal).await,
            Route::CreateLink => self.create_link(&principal, &body).await,
            Route::ListLinks => self.list_links(&principal, query).await,
            Route::GetLink(uuid) => self.get_link(&principal, uuid).await,
            Route::DeleteLink(uuid) => self.delete_link(&principal, uuid).await,
            Route::ApproveLink(uuid) => self.approve_link(&principal, uuid).await,
            Route::RejectLink(uuid) => self.reject_link(&principal, uuid, query, &body).await,
            Route::UploadProxy => self.upload_proxy(&principal, &body).await,
            Route::GenerateProxy => self.generate_proxy(head, &principal, &body).await,
            Route::Document => Reply::empty(StatusCode::NOT_FOUND),
        }
    }

    /// Who the request is from; a JWS-signed request's payload is its body.
    async fn authenticate(
        &self,
        head: &RequestHead<'_>,
        body: &[u8],
    ) -> Result<Authenticated, Reply> {
        self.identity
            .authenticate(&head.presented(body))
            .await
            .map_err(|e| match e {
                AuthError::Invalid(_) => unauthorized("the credential is not valid"),
                AuthError::Unavailable(e) => {
                    tracing::error!(code = "PKID-STORE", error = %e, "a credential could not be checked");
                    unavailable()
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_is_routed_and_nothing_else() {
        for (method, template) in ROUTES {
            let path = template.replace("{uuid}", "39c647dd-67a7-485f-90dc-82f42df8573f");
            let method: Method = method.parse().unwrap_or(Method::TRACE);
            assert!(route(&method, &path).is_ok(), "{method} {path}");
        }
        let misses = [
            ("GET", "/iam"),
            ("GET", "/iam/"),
            ("GET", "/iam/cert_link_requests/"),
            ("GET", "/iam/cert_link_requests/x/approve/more"),
            ("GET", "/iam/api"),
            ("GET", "/iamx/api/trusts"),
        ];
        for (method, path) in misses {
            let method: Method = method.parse().unwrap_or(Method::TRACE);
            assert_eq!(route(&method, path), Err(Miss::NotFound), "{path}");
        }
        assert_eq!(
            route(&Method::PUT, "/iam/cert_link_requests/x"),
            Err(Miss::MethodNotAllowed("GET, DELETE"))
        );
        assert_eq!(
            route(&Method::GET, "/iam/proxycert"),
            Err(Miss::MethodNotAllowed("POST"))
        );
    }
}

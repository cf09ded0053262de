//! The Notary surface: `/api/v1` as Notary serves it (seed `notary-certificate-requests-api`,
//! SEED-NOTES "Certificate requests and CAs"), so that a client written for Notary works against
//! pkid unchanged, and `GET /status`.
//!
//! - `/api/v1/certificate_requests[/{id}[/reject|/sign|/certificate[/revoke]]]` (`requests.rs`)
//! - `/api/v1/certificate_authorities[/{id}[/sign|/certificate|/revoke|/crl]]` (`authorities.rs`)
//! - `/api/v1/accounts[/{id}[/change_password]|/me]` (`accounts.rs`)
//! - `/api/v1/openapi.json` (`openapi.rs`, from the wire types of `wire.rs`), `/status`
//!
//! Authentication through `identity` (a token from `/login`, or any other credential it takes);
//! what each role may do is the Notary block of `identity/authorize.rs`. Envelope: `{"result":
//! …}` on success, `{"error": "…"}` otherwise; 401 without a valid credential, 403 `access
//! denied` with one that does not allow the request. Every write goes through the RA with the
//! principal that made it. Bodies are read to 100 KiB (413 past it).

mod accounts;
mod authorities;
pub mod openapi;
mod requests;
pub mod wire;

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, StatusCode};
use serde::de::DeserializeOwned;

use crate::api::{Reply, RequestBody, RequestHead};
use crate::identity::{authorize, Action, AuthError, Denied, Identity, Principal, Role};
use crate::ra::{Ra, RaError};
use crate::revocation::Revocation;
use crate::store::Reads;
use wire::{Created, CreatedAnswer, Done, DoneAnswer, ErrorBody};

/// The largest body this surface reads (Notary's limit).
pub const MAX_BODY: usize = 100 * 1024;
/// Where the API lives.
const PREFIX: &str = "/api/v1/";

pub struct NotaryApi {
    ra: Arc<Ra>,
    reads: Reads,
    identity: Arc<Identity>,
    revocation: Arc<Revocation>,
    /// `https://host[:port]` of pkid, for the CRL distribution point
    /// `…/api/v1/certificate_authorities/{id}/crl` written into what CAs here sign.
    base_url: String,
}

/// A request of this surface, once routed: what it names and what it may need.
pub(super) struct Call<'a> {
    principal: Principal,
    body: Bytes,
    head: &'a RequestHead<'a>,
}

/// A routed resource.
#[derive(Debug, Clone, Copy)]
enum Route<'a> {
    Status,
    Document,
    Requests,
    Request(&'a str),
    RequestReject(&'a str),
    RequestSign(&'a str),
    RequestCertificate(&'a str),
    RequestRevoke(&'a str),
    Cas,
    Ca(&'a str),
    CaSign(&'a str),
    CaCertificate(&'a str),
    CaRevoke(&'a str),
    CaCrl(&'a str),
    Accounts,
    AccountMe,
    Account(&'a str),
    AccountPassword(&'a str),
}

/// What a route answers to.
enum Access {
    /// No credential needed.
    Open,
    /// The action the principal must be allowed.
    Needs(Action),
    /// The route decides (the first account; one's own password).
    ItsOwn,
}

impl<'a> Route<'a> {
    fn of(path: &'a str) -> Option<Route<'a>> {
        if path == "/status" {
            return Some(Route::Status);
        }
        let rest = path.strip_prefix(PREFIX)?;
        let segments: Vec<&str> = rest.split('/').collect();
        Some(match segments.as_slice() {
            ["openapi.json"] => Route::Document,
            ["certificate_requests"] => Route::Requests,
            ["certificate_requests", id] => Route::Request(id),
            ["certificate_requests", id, "reject"] => Route::RequestReject(id),
            ["certificate_requests", id, "sign"] => Route::RequestSign(id),
            ["certificate_requests", id, "certificate"] => Route::RequestCertificate(id),
            ["certificate_requests", id, "certificate", "revoke"] => Route::RequestRevoke(id),
            ["certificate_authorities"] => Route::Cas,
            ["certificate_authorities", id] => Route::Ca(id),
            ["certificate_authorities", id, "sign"] => Route::CaSign(id),
            ["certificate_authorities", id, "certificate"] => Route::CaCertificate(id),
            ["certificate_authorities", id, "revoke"] => Route::CaRevoke(id),
            ["certificate_authorities", id, "crl"] => Route::CaCrl(id),
            ["accounts"] => Route::Accounts,
            ["accounts", "me"] => Route::AccountMe,
            ["accounts", id] => Route::Account(id),
            ["accounts", id, "change_password"] => Route::AccountPassword(id),
            _ => return None,
        })
    }

    /// The methods the route serves.
    fn allows(self) -> &'static [Method] {
        match self {
            Route::Status | Route::Document | Route::CaCrl(_) | Route::AccountMe => &[Method::GET],
            Route::Requests | Route::Cas | Route::Accounts => &[Method::GET, Method::POST],
            Route::Request(_) | Route::Account(_) => &[Method::GET, Method::DELETE],
            Route::RequestCertificate(_) => &[Method::POST, Method::DELETE],
            Route::Ca(_) => &[Method::GET, Method::PUT, Method::DELETE],
            Route::RequestReject(_)
            | Route::RequestSign(_)
            | Route::RequestRevoke(_)
            | Route::CaSign(_)
            | Route::CaCertificate(_)
            | Route::CaRevoke(_)
            | Route::AccountPassword(_) => &[Method::POST],
        }
    }

    fn access(self, method: &Method) -> Access {
        use Action::*;
        let reading = method == Method::GET;
        Access::Needs(match self {
            Route::Status | Route::Document | Route::CaCrl(_) => return Access::Open,
            Route::Accounts if !reading => return Access::ItsOwn,
            Route::AccountPassword(_) => return Access::ItsOwn,
            Route::AccountMe => Whoami,
            Route::Accounts | Route::Account(_) => NotaryAccounts,
            Route::Requests if reading => NotaryReadRequests,
            Route::Requests => NotaryCreateRequest,
            Route::Request(_) if reading => NotaryReadRequests,
            Route::Request(_)
            | Route::RequestReject(_)
            | Route::RequestSign(_)
            | Route::RequestCertificate(_)
            | Route::RequestRevoke(_) => NotaryManageRequests,
            Route::Cas | Route::Ca(_) if reading => NotaryReadCas,
            Route::Cas
            | Route::Ca(_)
            | Route::CaSign(_)
            | Route::CaCertificate(_)
            | Route::CaRevoke(_) => NotaryManageCas,
        })
    }
}

/// `{"error": message}` with `status`.
pub(super) fn error(status: StatusCode, message: impl Into<String>) -> Reply {
    Reply::json(
        status,
        &ErrorBody {
            error: message.into(),
        },
    )
    .header(http::header::CACHE_CONTROL, "no-store")
}

/// `{"result": {"message": "success"}}` with `status`.
pub(super) fn done(status: StatusCode) -> Reply {
    Reply::json(
        status,
        &DoneAnswer {
            result: Done {
                message: "success".into(),
            },
        },
    )
}

/// `{"result": {"message": "success", "id": id}}`, 201.
pub(super) fn created(id: i64) -> Reply {
    Reply::json(
        StatusCode::CREATED,
        &CreatedAnswer {
            result: Created {
                message: "success".into(),
                id,
            },
        },
    )
}

/// A path id: a positive integer, else 400 `invalid ID`.
pub(super) fn parse_id(id: &str) -> Result<i64, Reply> {
    id.parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| error(StatusCode::BAD_REQUEST, "invalid ID"))
}

/// The body as `T`, else 400 `invalid JSON format`.
pub(super) fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, Reply> {
    serde_json::from_slice(body)
        .map_err(|e| error(StatusCode::BAD_REQUEST, format!("invalid JSON format: {e}")))
}

/// A path id and the body's `{"certificate_authority_id": "<id>"}`: who is to sign what.
pub(super) fn id_and_signer(id: &str, body: &[u8]) -> Result<(i64, i64), Reply> {
    let id = parse_id(id)?;
    let with: wire::SignWith = parse_body(body)?;
    Ok((id, parse_id(&with.certificate_authority_id)?))
}

/// The RA's refusals in this surface's shape.
pub(super) fn ra_error(e: RaError) -> Reply {
    match e {
        RaError::NotFound(d) => error(StatusCode::NOT_FOUND, d),
        RaError::Unauthorized(d) => error(StatusCode::UNPROCESSABLE_ENTITY, d),
        RaError::Internal(d) => {
            tracing::error!(code = "PKID-RA-INTERNAL", error = %d, "a Notary request failed");
            error(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
        RaError::Store(e) => {
            tracing::error!(code = "PKID-STORE", error = %e, "a Notary request failed");
            unavailable()
        }
        RaError::Unavailable(d) => {
            tracing::error!(code = "PKID-RA-UNAVAILABLE", error = %d, "a Notary request failed");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "a signing backend is unavailable; retry",
            )
        }
        other => error(StatusCode::BAD_REQUEST, other.to_string()),
    }
}

pub(super) fn unavailable() -> Reply {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "the database is unavailable; retry",
    )
}

/// A read that failed, logged, as 503.
pub(super) fn read_failed(e: crate::store::StoreError) -> Reply {
    tracing::error!(code = "PKID-STORE", error = %e, "a Notary read failed");
    unavailable()
}

/// Who made a change, as rows and logs record it.
pub(super) fn who(principal: &Principal) -> String {
    principal.describe()
}

/// Whether `principal` sees every request (not only its own): operators, and users with a role
/// beyond certificate requestor.
pub(super) fn sees_all_requests(principal: &Principal) -> bool {
    match principal {
        Principal::Operator { .. } => true,
        Principal::User(user) => user.roles.iter().any(|r| *r != Role::CertificateRequestor),
        _ => false,
    }
}

impl NotaryApi {
    pub fn new(
        ra: Arc<Ra>,
        identity: Arc<Identity>,
        revocation: Arc<Revocation>,
        base_url: &str,
    ) -> NotaryApi {
        NotaryApi {
            reads: ra.reads(),
            ra,
            identity,
            revocation,
            base_url: base_url.trim_end_matches('/').to_owned(),
        }
    }

    /// Whether `path` is this surface's.
    pub fn serves(path: &str) -> bool {
        path == "/status" || path == "/api/v1" || path.starts_with(PREFIX)
    }

    /// Serve one request of this surface; the body is read (at most [`MAX_BODY`]) first.
    pub async fn handle(&self, head: &RequestHead<'_>, body: &mut RequestBody) -> Reply {
        let Some(route) = Route::of(head.path) else {
            return error(StatusCode::NOT_FOUND, "not found");
        };
        if !route.allows().contains(head.method) {
            let allowed: Vec<&str> = route.allows().iter().map(Method::as_str).collect();
            return error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
                .header(http::header::ALLOW, allowed.join(", "));
        }
        let body = match body.read(MAX_BODY).await {
            Ok(body) => body,
            Err(e) => return error(e.status(), e.to_string()),
        };
        let access = route.access(head.method);
        // Open resources need no credential, and a bad one does not stand in their way.
        let (principal, body) = match (&access, self.authenticate(head, &body).await) {
            (_, Ok(who)) => who,
            (Access::Open, Err(_)) => (Principal::Anonymous, body),
            (_, Err(reply)) => return reply,
        };
        if let Access::Needs(action) = access {
            if let Err(denied) = authorize(&principal, action) {
                return refused(denied);
            }
        }
        let call = Call {
            principal,
            body,
            head,
        };
        self.dispatch(route, call).await
    }

    /// Who the request is from (a JWS-signed request's payload is its body).
    async fn authenticate(
        &self,
        head: &RequestHead<'_>,
        body: &Bytes,
    ) -> Result<(Principal, Bytes), Reply> {
        match self.identity.authenticate(&head.presented(body)).await {
            Ok(who) => {
                let body = who.signed_payload.map(Bytes::from).unwrap_or(body.clone());
                Ok((who.principal, body))
            }
            Err(AuthError::Invalid(_)) => Err(error(StatusCode::UNAUTHORIZED, "unauthorized")),
            Err(AuthError::Unavailable(e)) => Err(read_failed(e)),
            Err(AuthError::Failed(e)) => {
                tracing::error!(code = "PKID-IDENTITY", error = %e, "a credential could not be checked");
                Err(error(StatusCode::INTERNAL_SERVER_ERROR, "internal error"))
            }
        }
    }

    /// The route's handler. A handler answers `Ok` with what was asked, or `Err` with the
    /// refusal in this surface's shape, so that each step can end it with `?`.
    async fn dispatch(&self, route: Route<'_>, call: Call<'_>) -> Reply {
        let method = call.head.method.clone();
        let answered = match (route, method) {
            (Route::Status, _) => self.status().await,
            (Route::Document, _) => Ok(Reply::bytes("application/json", openapi::document())),
            (Route::Requests, Method::GET) => self.list_requests(&call).await,
            (Route::Requests, _) => self.create_request(&call).await,
            (Route::Request(id), Method::GET) => self.get_request(&call, id).await,
            (Route::Request(id), _) => self.delete_request(&call, id).await,
            (Route::RequestReject(id), _) => self.reject_request(&call, id).await,
            (Route::RequestSign(id), _) => self.sign_request(&call, id).await,
            (Route::RequestCertificate(id), Method::POST) => self.upload_chain(&call, id).await,
            (Route::RequestCertificate(id), _) => self.delete_certificate(&call, id).await,
            (Route::RequestRevoke(id), _) => self.revoke_request(&call, id).await,
            (Route::Cas, Method::GET) => self.list_cas(&call).await,
            (Route::Cas, _) => self.create_ca(&call).await,
            (Route::Ca(id), Method::GET) => self.get_ca(id).await,
            (Route::Ca(id), Method::PUT) => self.update_ca(&call, id).await,
            (Route::Ca(id), _) => self.delete_ca(&call, id).await,
            (Route::CaSign(id), _) => self.sign_ca(&call, id).await,
            (Route::CaCertificate(id), _) => self.upload_ca_chain(&call, id).await,
            (Route::CaRevoke(id), _) => self.revoke_ca(&call, id).await,
            (Route::CaCrl(id), _) => self.ca_crl(&call, id).await,
            (Route::Accounts, Method::GET) => self.list_accounts().await,
            (Route::Accounts, _) => self.create_account(&call).await,
            (Route::AccountMe, _) => self.my_account(&call).await,
            (Route::Account(id), Method::GET) => self.get_account(id).await,
            (Route::Account(id), _) => self.delete_account(&call, id).await,
            (Route::AccountPassword(id), _) => self.change_password(&call, id).await,
        };
        answered.unwrap_or_else(|refused| refused)
    }

    /// `GET /status`: whether an account exists, and pkid's version.
    async fn status(&self) -> Result<Reply, Reply> {
        let initialized = self.reads.any_user().await.map_err(read_failed)?;
        Ok(Reply::json(
            StatusCode::OK,
            &wire::StatusAnswer {
                result: wire::Status {
                    initialized,
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                },
            },
        ))
    }

    /// Where the CRL of CA `id` is published on this surface.
    pub(super) fn crl_url(&self, id: i64) -> String {
        format!("{}{PREFIX}certificate_authorities/{id}/crl", self.base_url)
    }
}

/// A refusal of `authorize`, in this surface's shape.
fn refused(denied: Denied) -> Reply {
    match denied {
        Denied::Unauthenticated => error(StatusCode::UNAUTHORIZED, "unauthorized"),
        Denied::Forbidden => error(StatusCode::FORBIDDEN, "access denied"),
    }
}

/// `?page=N&per_page=M` (both optional; `page` from 1): the (offset, limit) asked for, `None`
/// for no paging; 400 for a value that is not a positive number (`per_page` at most 1000).
pub(super) fn paging(query: &str) -> Result<Option<(i64, i64)>, Reply> {
    let (mut page, mut per_page) = (None, None);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let number = || {
            value.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                error(
                    StatusCode::BAD_REQUEST,
                    format!("{key} must be a positive number"),
                )
            })
        };
        match key {
            "page" => page = Some(number()?),
            "per_page" => per_page = Some(number()?.min(1000)),
            _ => {}
        }
    }
    Ok(match (page, per_page) {
        (None, None) => None,
        (page, per_page) => {
            let per_page = per_page.unwrap_or(100);
            let page = page.unwrap_or(1);
            Some((page.saturating_sub(1).saturating_mul(per_page), per_page))
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn routes_and_paging() {
        assert!(matches!(
            Route::of("/api/v1/certificate_requests/7/certificate/revoke"),
            Some(Route::RequestRevoke("7"))
        ));
        assert!(matches!(
            Route::of("/api/v1/accounts/me"),
            Some(Route::AccountMe)
        ));
        assert!(Route::of("/api/v1/certificate_requests/7/nothing").is_none());
        assert!(Route::of("/api/v2/accounts").is_none());
        assert!(parse_id("0").is_err() && parse_id("x").is_err() && parse_id("-1").is_err());
        assert_eq!(parse_id("12").ok(), Some(12));
        assert_eq!(paging("").ok(), Some(None));
        assert_eq!(paging("page=3&per_page=10").ok(), Some(Some((20, 10))));
        assert_eq!(paging("per_page=5000").ok(), Some(Some((0, 1000))));
        assert!(paging("page=0").is_err());
        assert!(paging("page=x").is_err());
    }
}

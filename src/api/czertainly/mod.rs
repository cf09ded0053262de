//! The CZERTAINLY-style surface: pkid as the RA front-end of its authorities
//! (`seeds/czertainly-client-operations-api-2.13.0.txt`, `SEED-NOTES.md` "RA client
//! operations", `docs/czertainly.md`).
//!
//! - [`routes`]: the one route table (method, path template, what it serves, the action it
//!   needs), which the router matches and the OpenAPI document must list;
//! - [`management`]: `/v1/authorities`, `/v1/raProfiles`, `/v1/authorities/{a}/raProfiles…`;
//! - [`v1`]: `/v1/operations/{raProfileName}/…` (issue and revoke for end entities, and
//!   the end entities themselves);
//! - [`v2`]: `/v2/operations/authorities/{a}/raProfiles/{r}/…` (attributes, issue, issue-New,
//!   renew, rekey, revoke, and pkid's certificate record with its operation status);
//! - [`keys`]: `/v1/tokenProfiles[/{t}/keys[/{k}]]`: managed keys (software, PKCS#11);
//! - [`wire`]: the DTOs; [`openapi`]: the OpenAPI 3.1 document at `/v2/openapi.json`.
//!
//! Authentication through `identity` (a TLS client certificate linked to a user, the trusted
//! proxy's `X-APP-CERTIFICATE`, a bearer token, a JWS-signed request); one action per route in
//! `identity::authorize`. Requestors act on their own records only. Errors in the seed's
//! shapes: 400/404/502/503 `{"message"}`, 422 a JSON array of strings, 403
//! `{"statusCode":403,"code":"ACCESS_DENIED","message"}` as `application/problem+json`.

mod keys;
mod management;
pub mod openapi;
mod routes;
mod v1;
mod v2;
pub mod wire;

use std::sync::Arc;

use bytes::Bytes;
use http::StatusCode;
use serde::Serialize;
use serde_json::json;

use crate::api::{Reply, RequestBody, RequestHead};
use crate::identity::passwords::PasswordChecker;
use crate::identity::{authorize, AuthError, Authenticated, Denied, Identity, Principal, Role};
use crate::ra::{OperationError, Ra, RaError};
use crate::store::Reads;
use routes::{Params, Route};

pub struct CzertainlyApi {
    ra: Arc<Ra>,
    reads: Reads,
    identity: Arc<Identity>,
    /// Checks end entities' passwords (argon2id, bounded to the cores).
    passwords: PasswordChecker,
}

/// One request's caller and what it sent, for the handlers.
pub(crate) struct Call<'a> {
    pub principal: &'a Principal,
    pub params: &'a Params<'a>,
    pub body: &'a [u8],
}

impl Call<'_> {
    /// Who acts, for records and logs.
    pub fn actor(&self) -> String {
        self.principal.describe()
    }

    /// Whether the caller may act on records of others (operators, admins, managers).
    pub fn sees_all(&self) -> bool {
        match self.principal {
            Principal::User(user) => {
                user.has_role(Role::Admin) || user.has_role(Role::CertificateManager)
            }
            Principal::Anonymous => false,
            Principal::Operator { .. } | Principal::Client { .. } => true,
        }
    }

    /// The body as `T`, or a 400 naming what is wrong with it.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, Failure> {
        serde_json::from_slice(self.body)
            .map_err(|e| Failure::bad_request(format!("invalid request body: {e}")))
    }
}

/// A refusal in this surface's shape.
pub(crate) struct Failure(Reply);

impl Failure {
    fn message(status: StatusCode, message: impl Into<String>) -> Failure {
        Failure(
            Reply::json(status, &json!({ "message": message.into() }))
                .header(http::header::CACHE_CONTROL, "no-store"),
        )
    }

    pub fn bad_request(message: impl Into<String>) -> Failure {
        Failure::message(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> Failure {
        Failure::message(StatusCode::NOT_FOUND, message)
    }

    /// 422: every reason, as a JSON array of strings.
    pub fn unprocessable(reasons: Vec<String>) -> Failure {
        Failure(
            Reply::json(StatusCode::UNPROCESSABLE_ENTITY, &json!(reasons))
                .header(http::header::CACHE_CONTROL, "no-store"),
        )
    }

    fn forbidden(message: &str) -> Failure {
        let mut reply = Reply::json(
            StatusCode::FORBIDDEN,
            &json!({"statusCode": 403, "code": "ACCESS_DENIED", "message": message}),
        );
        reply.content_type = "application/problem+json";
        Failure(reply)
    }

    fn unavailable() -> Failure {
        Failure::message(
            StatusCode::SERVICE_UNAVAILABLE,
            "the database is unavailable; retry",
        )
    }
}

impl From<OperationError> for Failure {
    fn from(e: OperationError) -> Failure {
        match e {
            OperationError::Invalid(reasons) => Failure::unprocessable(reasons),
            OperationError::AuthorityRefused(m) => Failure::message(StatusCode::BAD_GATEWAY, m),
            OperationError::AuthorityUnreachable(m) => {
                Failure::message(StatusCode::SERVICE_UNAVAILABLE, m)
            }
            OperationError::Ra(e) => e.into(),
        }
    }
}

impl From<RaError> for Failure {
    fn from(e: RaError) -> Failure {
        match e {
            RaError::NotFound(m) => Failure::not_found(m),
            RaError::Store(e) => {
                tracing::error!(code = "PKID-STORE", error = %e, "RA operation failed");
                Failure::unavailable()
            }
            RaError::Internal(m) => {
                tracing::error!(code = "PKID-RA-INTERNAL", error = %m, "RA operation failed");
                Failure::message(StatusCode::INTERNAL_SERVER_ERROR, m)
            }
            RaError::BadCsr(m) | RaError::WeakKey(m) => Failure::unprocessable(vec![m]),
            other => Failure::bad_request(other.to_string()),
        }
    }
}

impl From<crate::store::StoreError> for Failure {
    fn from(e: crate::store::StoreError) -> Failure {
        RaError::Store(e).into()
    }
}

/// A successful answer: JSON, or no body.
pub(crate) fn ok_json<T: Serialize>(status: StatusCode, value: &T) -> Reply {
    Reply::json(status, &serde_json::to_value(value).unwrap_or_default())
        .header(http::header::CACHE_CONTROL, "no-store")
}

pub(crate) type Answer = Result<Reply, Failure>;

impl CzertainlyApi {
    pub fn new(ra: Arc<Ra>, identity: Arc<Identity>) -> CzertainlyApi {
        CzertainlyApi {
            reads: ra.reads(),
            ra,
            identity,
            passwords: PasswordChecker::default(),
        }
    }

    /// Whether `path` is this surface's.
    pub fn serves(path: &str) -> bool {
        path.starts_with("/v1/") || path.starts_with("/v2/")
    }

    /// Serve one request: the body (at most `max_body` bytes) is read first.
    pub async fn handle(
        &self,
        head: &RequestHead<'_>,
        body: &mut RequestBody,
        max_body: usize,
    ) -> Reply {
        let body = match body.read(max_body).await {
            Ok(body) => body,
            Err(e) => return Failure::message(e.status(), e.to_string()).0,
        };
        match self.serve(head, body).await {
            Ok(reply) | Err(Failure(reply)) => reply,
        }
    }

    async fn serve(&self, head: &RequestHead<'_>, body: Bytes) -> Answer {
        let (route, params) = match routes::find(head.method, head.path) {
            Ok(found) => found,
            Err(routes::Miss::NotFound) => {
                return Err(Failure::not_found(format!("no resource at {}", head.path)))
            }
            Err(routes::Miss::Method(allowed)) => {
                return Err(Failure(
                    Reply::json(
                        StatusCode::METHOD_NOT_ALLOWED,
                        &json!({"message": format!("{} is not allowed here", head.method)}),
                    )
                    .header(http::header::ALLOW, allowed),
                ))
            }
        };
        if route == Route::OpenApi {
            return Ok(Reply::bytes("application/json", openapi::document()));
        }
        let Authenticated {
            principal,
            signed_payload,
        } = self.authenticate(head, &body).await?;
        let body = signed_payload.map(Bytes::from).unwrap_or(body);
        match authorize(&principal, route.action()) {
            Ok(()) => {}
            Err(Denied::Unauthenticated) => {
                return Err(Failure::message(
                    StatusCode::UNAUTHORIZED,
                    "authentication is required: a client certificate linked to a user, or a token",
                ))
            }
            Err(Denied::Forbidden) => {
                return Err(Failure::forbidden(
                    "this credential does not allow this request",
                ))
            }
        }
        let call = Call {
            principal: &principal,
            params: &params,
            body: &body,
        };
        if route.is_management() {
            return management::serve(self, route, &call).await;
        }
        if route.is_keys() {
            return keys::serve(self, route, &call).await;
        }
        if route.is_v1() {
            return v1::serve(self, route, &call).await;
        }
        v2::serve(self, route, &call).await
    }

    async fn authenticate(
        &self,
        head: &RequestHead<'_>,
        body: &[u8],
    ) -> Result<Authenticated, Failure> {
        self.identity
            .authenticate(&head.presented(body))
            .await
            .map_err(|e| match e {
                AuthError::Invalid(_) => {
                    Failure::message(StatusCode::UNAUTHORIZED, "the credential is not valid")
                }
                AuthError::Unavailable(e) => {
                    tracing::error!(code = "PKID-STORE", error = %e, "a credential could not be checked");
                    Failure::unavailable()
                }
                AuthError::Failed(e) => {
                    tracing::error!(code = "PKID-IDENTITY", error = %e, "a credential could not be checked");
                    Failure::message(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "the credential could not be checked",
                    )
                }
            })
    }
}

//! The admin REST surface (`/admin/…`): operator resources that have no ACME or seed shape —
//! today the external account binding keys of RFC 8555 §7.3.4.
//!
//! Authentication through `identity`: an admin token (`pkid admin token create`), an access
//! token of an `admin` user, or an OAuth2 client's token with scope `iam:admin.read` (reads) or
//! `iam:admin.write` (writes). 401 without a valid credential, 403 with one that does not allow
//! the request. Envelope: `{"result": …}` on success, `{"error": "…"}` otherwise.

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::{Reply, RequestBody, RequestHead};
use crate::identity::{authorize, Action, AuthError, Authenticated, Denied, Identity, Principal};
use crate::ra::{AuditEvent, BindingPolicy, Ra, RaError};
use crate::store::Reads;

pub struct AdminApi {
    ra: Arc<Ra>,
    reads: Reads,
    identity: Arc<Identity>,
    /// ACME directory names EAB keys may be bound to.
    directories: Vec<String>,
}

/// An answer in this surface's envelope, before it becomes a [`Reply`].
struct AdminReply {
    status: StatusCode,
    body: Value,
}

impl From<AdminReply> for Reply {
    fn from(r: AdminReply) -> Reply {
        Reply::json(r.status, &r.body).header(http::header::CACHE_CONTROL, "no-store")
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> AdminReply {
    AdminReply {
        status,
        body: json!({ "error": message.into() }),
    }
}

fn ok(status: StatusCode, result: Value) -> AdminReply {
    AdminReply {
        status,
        body: json!({ "result": result }),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewEabKey {
    #[serde(default)]
    note: String,
    #[serde(default)]
    directory: Option<String>,
    #[serde(default)]
    policy: Option<BindingPolicy>,
}

impl AdminApi {
    pub fn new(ra: Arc<Ra>, identity: Arc<Identity>, directories: Vec<String>) -> AdminApi {
        AdminApi {
            reads: ra.reads(),
            ra,
            identity,
            directories,
        }
    }

    /// Who the request is from; a JWS-signed request's payload is its body.
    async fn authenticate(
        &self,
        head: &RequestHead<'_>,
        body: &[u8],
    ) -> Result<Authenticated, AdminReply> {
        self.identity
            .authenticate(&head.presented(body))
            .await
            .map_err(|e| match e {
                AuthError::Invalid(_) => {
                    error(StatusCode::UNAUTHORIZED, "the credential is not valid")
                }
                AuthError::Unavailable(e) => {
                    tracing::error!(code = "PKID-STORE", error = %e, "a credential could not be checked");
                    unavailable()
                }
                AuthError::Failed(e) => {
                    tracing::error!(code = "PKID-IDENTITY", error = %e, "a credential could not be checked");
                    error(StatusCode::INTERNAL_SERVER_ERROR, "the credential could not be checked")
                }
            })
    }

    /// Serve one request under `/admin/`: the body (at most `max_body` bytes) is read first.
    pub async fn handle(
        &self,
        head: &RequestHead<'_>,
        body: &mut RequestBody,
        max_body: usize,
    ) -> Reply {
        let body = match body.read(max_body).await {
            Ok(body) => body,
            Err(e) => return error(e.status(), e.to_string()).into(),
        };
        self.serve(head, body).await.into()
    }

    async fn serve(&self, head: &RequestHead<'_>, body: Bytes) -> AdminReply {
        let (method, path) = (head.method, head.path);
        let (principal, body) = match self.authenticate(head, &body).await {
            Ok(Authenticated {
                principal,
                signed_payload,
            }) => (principal, signed_payload.map(Bytes::from).unwrap_or(body)),
            Err(reply) => return reply,
        };
        let segments: Vec<&str> = path.trim_start_matches("/admin/").split('/').collect();
        let action = match (method, segments.as_slice()) {
            (&Method::GET, ["eab-keys"]) => Action::AdminRead,
            (&Method::POST, ["eab-keys"]) | (&Method::DELETE, ["eab-keys", _]) => {
                Action::AdminWrite
            }
            // A 404 or 405 tells nothing: whoever is authenticated may get one.
            _ => Action::Whoami,
        };
        match authorize(&principal, action) {
            Ok(()) => {}
            Err(Denied::Unauthenticated) => {
                return error(
                    StatusCode::UNAUTHORIZED,
                    "authentication is required: an admin token or an access token",
                )
            }
            Err(Denied::Forbidden) => {
                return error(
                    StatusCode::FORBIDDEN,
                    "this credential does not allow this request",
                )
            }
        }
        let outcome = match (method, segments.as_slice()) {
            (&Method::GET, ["eab-keys"]) => self.list_eab_keys().await,
            (&Method::POST, ["eab-keys"]) => self.create_eab_key(&body, &principal).await,
            (&Method::DELETE, ["eab-keys", kid]) => self.delete_eab_key(kid, &principal).await,
            (_, ["eab-keys"]) | (_, ["eab-keys", _]) => Ok(error(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{method} is not allowed here"),
            )),
            _ => Ok(error(StatusCode::NOT_FOUND, "no such admin resource")),
        };
        outcome.unwrap_or_else(ra_error)
    }

    async fn list_eab_keys(&self) -> Result<AdminReply, RaError> {
        let keys: Vec<Value> = self
            .reads
            .eab_keys()
            .await?
            .into_iter()
            .map(|key| {
                json!({
                    "kid": key.kid,
                    "directory": key.directory,
                    "note": key.note,
                    "created_at": crate::pki::rfc3339(key.created_at),
                    "bound_account": key.bound_account,
                })
            })
            .collect();
        Ok(ok(StatusCode::OK, Value::Array(keys)))
    }

    /// A fresh key: its HMAC key is returned this once and stored sealed.
    async fn create_eab_key(&self, body: &[u8], who: &Principal) -> Result<AdminReply, RaError> {
        let req: NewEabKey = match serde_json::from_slice(body) {
            Ok(r) => r,
            Err(e) => {
                return Ok(error(
                    StatusCode::BAD_REQUEST,
                    format!("invalid request body: {e}"),
                ))
            }
        };
        let directory = req.directory.unwrap_or_else(|| "default".into());
        if !self.directories.contains(&directory) {
            return Ok(error(
                StatusCode::BAD_REQUEST,
                format!("no ACME directory named {directory:?}"),
            ));
        }
        if req.note.len() > 1024 {
            return Ok(error(
                StatusCode::BAD_REQUEST,
                "note is longer than 1024 bytes",
            ));
        }
        let policy = req.policy.unwrap_or_default();
        let (kid, hmac_key) = self.ra.mint_eab_key(&directory, &req.note, &policy).await?;
        tracing::info!(kid = %kid, directory = %directory, by = %who.describe(), "EAB key created");
        self.ra
            .audit(
                AuditEvent::success(who.describe(), "eab_key.created", format!("eab-key:{kid}"))
                    .with(json!({ "directory": directory })),
            )
            .await;
        Ok(ok(
            StatusCode::CREATED,
            json!({"kid": kid, "hmac_key": hmac_key.as_str(), "directory": directory}),
        ))
    }

    /// Withdraw a key no account has used yet.
    async fn delete_eab_key(&self, kid: &str, who: &Principal) -> Result<AdminReply, RaError> {
        self.ra.withdraw_eab_key(kid).await?;
        tracing::info!(kid = %kid, by = %who.describe(), "EAB key deleted");
        self.ra
            .audit(AuditEvent::success(
                who.describe(),
                "eab_key.deleted",
                format!("eab-key:{kid}"),
            ))
            .await;
        Ok(ok(StatusCode::OK, json!({"kid": kid})))
    }
}

fn unavailable() -> AdminReply {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "the database is unavailable; retry",
    )
}

/// The RA's refusals in this surface's envelope.
fn ra_error(e: RaError) -> AdminReply {
    match e {
        RaError::NotFound(d) => error(StatusCode::NOT_FOUND, d),
        RaError::Conflict(d) => error(StatusCode::CONFLICT, d),
        RaError::Internal(d) => error(StatusCode::INTERNAL_SERVER_ERROR, d),
        RaError::Store(e) => {
            tracing::error!(code = "PKID-STORE", error = %e, "admin request failed");
            unavailable()
        }
        other => error(StatusCode::BAD_REQUEST, other.to_string()),
    }
}

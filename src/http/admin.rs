//! The admin REST surface (`/admin/…`): operator resources that have no ACME or seed shape —
//! today the external account binding keys of RFC 8555 §7.3.4.
//!
//! Authentication: `Authorization: Bearer <token>`, a token made by `pkid admin token create`
//! (only its SHA-256 is stored). Envelope: `{"result": …}` on success, `{"error": "…"}` otherwise.

use base64::Engine;
use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use rand::RngCore;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::acme::eab::{BindingPolicy, SEALED_AAD};
use crate::store::Store;

/// Who is calling. The REST surfaces of the seeds will add their users here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// An operator holding an admin token.
    Operator { token_id: String },
}

pub struct AdminApi {
    store: Store,
    kek: std::sync::Arc<pkid_backends::KeyEncryptionKey>,
    /// ACME directory names EAB keys may be bound to.
    directories: Vec<String>,
}

pub struct AdminReply {
    pub status: StatusCode,
    pub body: Value,
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

pub fn token_hash(token: &str) -> String {
    hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        token.as_bytes(),
    ))
}

/// A fresh random secret, base64url.
pub fn random_secret(bytes: usize) -> zeroize::Zeroizing<String> {
    let mut raw = zeroize::Zeroizing::new(vec![0u8; bytes]);
    rand::thread_rng().fill_bytes(raw.as_mut_slice());
    zeroize::Zeroizing::new(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw.as_slice()))
}

#[derive(Debug, thiserror::Error)]
pub enum MintError {
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("the key could not be sealed")]
    Seal,
}

/// A fresh single-use EAB key for `directory`: (kid, base64url HMAC key). The HMAC key is stored
/// sealed and returned this once.
pub async fn mint_eab_key(
    store: &Store,
    kek: &pkid_backends::KeyEncryptionKey,
    directory: &str,
    note: &str,
    policy: &BindingPolicy,
) -> Result<(String, zeroize::Zeroizing<String>), MintError> {
    let mut key = zeroize::Zeroizing::new([0u8; 32]);
    rand::thread_rng().fill_bytes(key.as_mut());
    let kid = random_secret(12).to_string();
    let sealed = kek
        .seal_pem(key.as_ref(), SEALED_AAD)
        .map_err(|_| MintError::Seal)?;
    let policy_json = (policy != &BindingPolicy::default())
        .then(|| serde_json::to_string(policy).ok())
        .flatten();
    store
        .insert_eab_key(&kid, &sealed, directory, note, policy_json.as_deref())
        .await?;
    let hmac_key = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.as_ref());
    Ok((kid, zeroize::Zeroizing::new(hmac_key)))
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
    pub fn new(
        store: Store,
        kek: std::sync::Arc<pkid_backends::KeyEncryptionKey>,
        directories: Vec<String>,
    ) -> AdminApi {
        AdminApi {
            store,
            kek,
            directories,
        }
    }

    async fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, AdminReply> {
        let token = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                error(
                    StatusCode::UNAUTHORIZED,
                    "an admin bearer token is required",
                )
            })?;
        match self.store.admin_token(&token_hash(token)).await {
            Ok(Some(token_id)) => Ok(Principal::Operator { token_id }),
            Ok(None) => Err(error(
                StatusCode::UNAUTHORIZED,
                "the bearer token is not valid",
            )),
            Err(e) => {
                tracing::error!(code = "PKID-STORE", error = %e, "admin token lookup failed");
                Err(error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the database is unavailable; retry",
                ))
            }
        }
    }

    pub async fn handle(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        body: Bytes,
    ) -> AdminReply {
        let principal = match self.authenticate(headers).await {
            Ok(p) => p,
            Err(reply) => return reply,
        };
        let segments: Vec<&str> = path.trim_start_matches("/admin/").split('/').collect();
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
        outcome.unwrap_or_else(|e| {
            tracing::error!(code = "PKID-STORE", error = %e, "admin request failed");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the database is unavailable; retry",
            )
        })
    }

    async fn list_eab_keys(&self) -> Result<AdminReply, crate::store::StoreError> {
        let keys: Vec<Value> = self
            .store
            .eab_keys()
            .await?
            .into_iter()
            .map(|key| {
                json!({
                    "kid": key.kid,
                    "directory": key.directory,
                    "note": key.note,
                    "created_at": crate::acme::rfc3339(key.created_at),
                    "bound_account": key.bound_account,
                })
            })
            .collect();
        Ok(ok(StatusCode::OK, Value::Array(keys)))
    }

    /// A fresh key: its HMAC key is returned this once and stored sealed.
    async fn create_eab_key(
        &self,
        body: &[u8],
        who: &Principal,
    ) -> Result<AdminReply, crate::store::StoreError> {
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
        let (kid, hmac_key) =
            match mint_eab_key(&self.store, &self.kek, &directory, &req.note, &policy).await {
                Ok(minted) => minted,
                Err(MintError::Store(e)) => return Err(e),
                Err(MintError::Seal) => {
                    return Ok(error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "the key could not be sealed",
                    ))
                }
            };
        let Principal::Operator { token_id } = who;
        tracing::info!(kid = %kid, directory = %directory, by = %token_id, "EAB key created");
        Ok(ok(
            StatusCode::CREATED,
            json!({"kid": kid, "hmac_key": hmac_key.as_str(), "directory": directory}),
        ))
    }

    /// Withdraw a key no account has used yet.
    async fn delete_eab_key(
        &self,
        kid: &str,
        who: &Principal,
    ) -> Result<AdminReply, crate::store::StoreError> {
        match self.store.eab_key(kid).await? {
            None => Ok(error(StatusCode::NOT_FOUND, "no such EAB key")),
            Some(key) if key.bound_account.is_some() => Ok(error(
                StatusCode::CONFLICT,
                "the key is bound to an account already",
            )),
            Some(_) => {
                if !self.store.delete_unbound_eab_key(kid).await? {
                    return Ok(error(StatusCode::CONFLICT, "the key was bound meanwhile"));
                }
                let Principal::Operator { token_id } = who;
                tracing::info!(kid = %kid, by = %token_id, "EAB key deleted");
                Ok(ok(StatusCode::OK, json!({"kid": kid})))
            }
        }
    }
}

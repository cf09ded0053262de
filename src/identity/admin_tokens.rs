//! Operator bearer tokens (`pkid admin token create`): `pkid_` and 32 random bytes, shown once;
//! only their SHA-256 is stored, and a request's token is found by that hash.

use http::HeaderMap;
use zeroize::Zeroizing;

use super::{token_hash, Principal};
use crate::ra::ids::random_secret;
use crate::store::{Reads, Store, StoreError};

/// Why a request is not an operator's.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("an admin bearer token is required")]
    Missing,
    #[error("the bearer token is not valid")]
    Invalid,
    #[error("the token could not be looked up: {0}")]
    Unavailable(#[from] StoreError),
}

/// The operator whose token the request's `Authorization: Bearer` carries.
pub async fn operator(reads: &Reads, headers: &HeaderMap) -> Result<Principal, AuthError> {
    let token = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(AuthError::Missing)?;
    match reads.admin_token(&token_hash(token)).await? {
        Some(token_id) => Ok(Principal::Operator { token_id }),
        None => Err(AuthError::Invalid),
    }
}

/// A new operator token: its id and the token itself, which is not kept.
pub async fn create(store: &Store, note: &str) -> Result<(String, Zeroizing<String>), StoreError> {
    let token = random_secret(32);
    let token = Zeroizing::new(format!("pkid_{}", token.as_str()));
    let id = random_secret(9).to_string();
    store
        .insert_admin_token(&id, &token_hash(&token), note)
        .await?;
    Ok((id, token))
}

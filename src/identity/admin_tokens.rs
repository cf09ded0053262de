//! Operator bearer tokens (`pkid admin token create`): `pkid_` and 32 random bytes, shown once;
//! only their SHA-256 is stored, and a request's token is found by that hash. New tokens expire
//! (`identity.admin_token_days` unless the command says otherwise); tokens made before expiry
//! existed are valid until revoked. `pkid admin token list` and `revoke` manage them.

use zeroize::Zeroizing;

use super::token_hash;
use crate::ra::ids::random_secret;
use crate::store::{now, AdminTokenRow, Reads, Store, StoreError};

/// What every admin token starts with: a bearer token that does is looked up as one.
pub const PREFIX: &str = "pkid_";

/// The id of the live admin token `token` is, if any.
pub(super) async fn lookup(reads: &Reads, token: &str) -> Result<Option<String>, StoreError> {
    reads.admin_token(&token_hash(token), now()).await
}

/// A new operator token valid for `expires_days` days: its id and the token itself, which is
/// not kept.
pub async fn create(
    store: &Store,
    note: &str,
    expires_days: u32,
) -> Result<(String, Zeroizing<String>, i64), StoreError> {
    let token = random_secret(32);
    let token = Zeroizing::new(format!("{PREFIX}{}", token.as_str()));
    let id = random_secret(9).to_string();
    let expires_at = now() + i64::from(expires_days) * 86_400;
    store
        .insert_admin_token(&id, &token_hash(&token), note, Some(expires_at))
        .await?;
    Ok((id, token, expires_at))
}

/// Every admin token (never its hash), oldest first.
pub async fn list(reads: &Reads) -> Result<Vec<AdminTokenRow>, StoreError> {
    reads.admin_tokens().await
}

/// Revoke token `id` now. `false`: no such live token.
pub async fn revoke(store: &Store, id: &str) -> Result<bool, StoreError> {
    store.revoke_admin_token(id).await
}

//! OAuth2 clients (RFC 6749 §2): registered by the operator (`pkid client create`) with the
//! scopes and grant types they may use; the secret, 256 random bits, is printed once and stored
//! as its SHA-256 (a slow hash buys nothing for a secret that cannot be guessed). A client
//! authenticates (§2.3.1) with its id and secret; the secret's hash is compared in constant
//! time, and an unknown client id costs the same comparison.

use std::fmt;
use std::str::FromStr;

use zeroize::Zeroizing;

use super::token_hash;
use crate::ra::ids::{object_id, random_secret};
use crate::store::{now, ClientRow, Reads, Store, StoreError};

/// The grants of RFC 6749 pkid serves at `/token`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum GrantType {
    /// §4.3: a user's username and password, through the client.
    Password,
    /// §4.4: the client on its own behalf.
    ClientCredentials,
}

impl GrantType {
    pub const ALL: [GrantType; 2] = [GrantType::Password, GrantType::ClientCredentials];

    pub fn name(self) -> &'static str {
        match self {
            GrantType::Password => "password",
            GrantType::ClientCredentials => "client_credentials",
        }
    }
}

impl fmt::Display for GrantType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for GrantType {
    type Err = ClientError;

    fn from_str(s: &str) -> Result<GrantType, ClientError> {
        GrantType::ALL
            .into_iter()
            .find(|g| g.name() == s)
            .ok_or_else(|| {
                ClientError::Invalid(format!(
                    "unknown grant type {s:?} (password, client_credentials)"
                ))
            })
    }
}

/// Why a client command was refused.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    Invalid(String),
    #[error("a client named {0:?} exists already")]
    Taken(String),
    #[error("no client named {0:?}")]
    NotFound(String),
    #[error("the database: {0}")]
    Store(#[from] StoreError),
}

/// RFC 6749 §3.3: `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`.
pub fn is_scope_token(scope: &str) -> bool {
    !scope.is_empty()
        && scope
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}

/// Scopes as given (space-separated), checked, in order, without repeats.
pub fn parse_scopes(text: &str) -> Result<Vec<String>, String> {
    let mut scopes: Vec<String> = Vec::new();
    for scope in text.split(' ').filter(|s| !s.is_empty()) {
        if !is_scope_token(scope) {
            return Err(format!("{scope:?} is not an RFC 6749 scope token"));
        }
        if !scopes.iter().any(|s| s == scope) {
            scopes.push(scope.to_string());
        }
    }
    Ok(scopes)
}

/// A client as the token endpoint uses it.
#[derive(Debug, Clone)]
pub struct Client {
    pub client_id: String,
    pub scopes: Vec<String>,
    pub grant_types: Vec<GrantType>,
}

impl Client {
    fn from_row(row: &ClientRow) -> Client {
        Client {
            client_id: row.client_id.clone(),
            scopes: row
                .scopes
                .split_ascii_whitespace()
                .map(str::to_string)
                .collect(),
            grant_types: row
                .grant_types
                .split_ascii_whitespace()
                .filter_map(|g| g.parse().ok())
                .collect(),
        }
    }
}

/// The enabled client `client_id` whose secret is `secret`, if it is one.
pub(super) async fn authenticate(
    reads: &Reads,
    client_id: &str,
    secret: &str,
) -> Result<Option<Client>, StoreError> {
    let row = if client_id.len() <= 128 {
        reads.client(client_id).await?
    } else {
        None
    };
    let presented = token_hash(secret);
    // An unknown client costs the same comparison, against a hash no secret has.
    let stored = row
        .as_ref()
        .map_or_else(|| "-".repeat(presented.len()), |r| r.secret_hash.clone());
    let matches =
        aws_lc_rs::constant_time::verify_slices_are_equal(presented.as_bytes(), stored.as_bytes())
            .is_ok();
    Ok(row
        .filter(|r| matches && r.enabled)
        .map(|r| Client::from_row(&r)))
}

/// The enabled client `client_id`, if there is one (a token's client, at each request).
pub(super) async fn enabled(reads: &Reads, client_id: &str) -> Result<Option<Client>, StoreError> {
    Ok(reads
        .client(client_id)
        .await?
        .filter(|r| r.enabled)
        .map(|r| Client::from_row(&r)))
}

/// A new client: its row and its secret, shown once and not kept.
pub async fn create_client(
    store: &Store,
    name: &str,
    scopes: &str,
    grant_types: &[GrantType],
) -> Result<(ClientRow, Zeroizing<String>), ClientError> {
    let fine_name = !name.is_empty() && name.len() <= 128 && !name.chars().any(|c| c.is_control());
    if !fine_name {
        return Err(ClientError::Invalid(
            "a client name is 1 to 128 characters, no control characters".into(),
        ));
    }
    let scopes = parse_scopes(scopes).map_err(ClientError::Invalid)?;
    let mut grants = grant_types.to_vec();
    grants.sort();
    grants.dedup();
    if grants.is_empty() {
        grants = GrantType::ALL.to_vec();
    }
    let secret = random_secret(32);
    let row = ClientRow {
        client_id: object_id(),
        name: name.to_string(),
        secret_hash: token_hash(&secret),
        scopes: scopes.join(" "),
        grant_types: grants
            .iter()
            .map(|g| g.name())
            .collect::<Vec<_>>()
            .join(" "),
        enabled: true,
        created_at: now(),
    };
    match store.insert_client(&row).await {
        Ok(()) => Ok((row, secret)),
        Err(e) if e.is_unique_violation() => Err(ClientError::Taken(name.to_string())),
        Err(e) => Err(e.into()),
    }
}

/// Every client, by name (never a secret: only its hash is kept).
pub async fn list_clients(reads: &Reads) -> Result<Vec<ClientRow>, StoreError> {
    reads.clients().await
}

/// Disable a client by name now.
pub async fn disable_client(store: &Store, name: &str) -> Result<(), ClientError> {
    if store.disable_client(name).await? {
        Ok(())
    } else {
        Err(ClientError::NotFound(name.to_string()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn scopes_are_rfc6749_tokens() {
        assert_eq!(
            parse_scopes("iam:admin.read  proxy:generate iam:admin.read").unwrap(),
            ["iam:admin.read", "proxy:generate"]
        );
        assert!(parse_scopes("a\"b").is_err());
        assert!(parse_scopes("a\\b").is_err());
        assert!(parse_scopes("é").is_err());
        assert_eq!(parse_scopes("").unwrap(), Vec::<String>::new());
    }
}

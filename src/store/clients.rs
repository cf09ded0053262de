//! OAuth2 clients (RFC 6749 §2, `identity`): the secret's SHA-256 (never the secret), the
//! scopes and grant types each may use.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::sql::statement;
use super::{Reads, Result, Store};

/// An OAuth2 client as stored; `scopes` and `grant_types` space-separated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRow {
    pub client_id: String,
    pub name: String,
    /// SHA-256 of the secret, hex.
    pub secret_hash: String,
    pub scopes: String,
    pub grant_types: String,
    pub enabled: bool,
    pub created_at: i64,
}

const CLIENT_COLUMNS: &str =
    "client_id, name, secret_hash, scopes, grant_types, enabled, created_at";

fn client_row(r: &AnyRow) -> std::result::Result<ClientRow, sqlx::Error> {
    Ok(ClientRow {
        client_id: r.try_get("client_id")?,
        name: r.try_get("name")?,
        secret_hash: r.try_get("secret_hash")?,
        scopes: r.try_get("scopes")?,
        grant_types: r.try_get("grant_types")?,
        enabled: r.try_get::<i64, _>("enabled")? != 0,
        created_at: r.try_get("created_at")?,
    })
}

impl Reads {
    pub async fn client(&self, client_id: &str) -> Result<Option<ClientRow>> {
        let sql = format!("SELECT {CLIENT_COLUMNS} FROM oauth_clients WHERE client_id = $1");
        let row = sqlx::query(&sql)
            .bind(client_id)
            .fetch_optional(&mut self.reader().await?)
            .await?;
        Ok(row.as_ref().map(client_row).transpose()?)
    }

    /// Every client, by name.
    pub async fn clients(&self) -> Result<Vec<ClientRow>> {
        let sql = format!("SELECT {CLIENT_COLUMNS} FROM oauth_clients ORDER BY name");
        let rows = sqlx::query(&sql)
            .fetch_all(&mut self.reader().await?)
            .await?;
        Ok(rows
            .iter()
            .map(client_row)
            .collect::<std::result::Result<_, _>>()?)
    }
}

impl Store {
    /// A new client; a name taken already is refused
    /// ([`super::StoreError::is_unique_violation`]).
    pub async fn insert_client(&self, client: &ClientRow) -> Result<()> {
        self.execute(statement!(
            "INSERT INTO oauth_clients (client_id, name, secret_hash, scopes, grant_types, enabled, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &client.client_id,
            &client.name,
            &client.secret_hash,
            &client.scopes,
            &client.grant_types,
            i64::from(client.enabled),
            client.created_at,
        ))
        .await?;
        Ok(())
    }

    /// Disable a client by name: its tokens stop working at their next use. `false`: no such
    /// client.
    pub async fn disable_client(&self, name: &str) -> Result<bool> {
        let changed = self
            .execute(statement!(
                "UPDATE oauth_clients SET enabled = 0 WHERE name = $1",
                name
            ))
            .await?;
        Ok(changed == 1)
    }
}

//! Admin tokens: the operators' bearer tokens, stored as their SHA-256.

use sqlx::Row;

use super::sql::statement;
use super::{now, Reads, Result, Store};

impl Reads {
    /// The id of a live admin token with this SHA-256.
    pub async fn admin_token(&self, token_hash: &str) -> Result<Option<String>> {
        let row =
            sqlx::query("SELECT id FROM admin_tokens WHERE token_hash = $1 AND revoked_at IS NULL")
                .bind(token_hash)
                .fetch_optional(&mut self.reader().await?)
                .await?;
        Ok(row.map(|r| r.try_get("id")).transpose()?)
    }
}

impl Store {
    pub async fn insert_admin_token(&self, id: &str, token_hash: &str, note: &str) -> Result<()> {
        self.execute(statement!(
            "INSERT INTO admin_tokens (id, token_hash, note, created_at) VALUES ($1, $2, $3, $4)",
            id,
            token_hash,
            note,
            now(),
        ))
        .await?;
        Ok(())
    }
}

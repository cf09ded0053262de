//! Admin tokens: the operators' bearer tokens, stored as their SHA-256, with an expiry (none
//! for tokens made before expiry existed) and a revocation time.

use sqlx::Row;

use super::sql::statement;
use super::{now, Reads, Result, Store};

/// An admin token as listed: never its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminTokenRow {
    pub id: String,
    pub note: String,
    pub created_at: i64,
    /// `None`: made before tokens expired; valid until revoked.
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

impl Reads {
    /// The id of the admin token with this SHA-256, if it is live at `at`: not revoked, not
    /// expired.
    pub async fn admin_token(&self, token_hash: &str, at: i64) -> Result<Option<String>> {
        let row = sqlx::query(
            "SELECT id FROM admin_tokens WHERE token_hash = $1 AND revoked_at IS NULL \
             AND (expires_at IS NULL OR expires_at > $2)",
        )
        .bind(token_hash)
        .bind(at)
        .fetch_optional(&mut self.reader().await?)
        .await?;
        Ok(row.map(|r| r.try_get("id")).transpose()?)
    }

    /// Every admin token, oldest first.
    pub async fn admin_tokens(&self) -> Result<Vec<AdminTokenRow>> {
        let rows = sqlx::query(
            "SELECT id, note, created_at, expires_at, revoked_at FROM admin_tokens \
             ORDER BY created_at, id",
        )
        .fetch_all(&mut self.reader().await?)
        .await?;
        Ok(rows
            .iter()
            .map(|r| -> std::result::Result<_, sqlx::Error> {
                Ok(AdminTokenRow {
                    id: r.try_get("id")?,
                    note: r.try_get("note")?,
                    created_at: r.try_get("created_at")?,
                    expires_at: r.try_get("expires_at")?,
                    revoked_at: r.try_get("revoked_at")?,
                })
            })
            .collect::<std::result::Result<_, _>>()?)
    }
}

impl Store {
    pub async fn insert_admin_token(
        &self,
        id: &str,
        token_hash: &str,
        note: &str,
        expires_at: Option<i64>,
    ) -> Result<()> {
        self.execute(statement!(
            "INSERT INTO admin_tokens (id, token_hash, note, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
            id,
            token_hash,
            note,
            now(),
            expires_at,
        ))
        .await?;
        Ok(())
    }

    /// Revoke a token now. `false`: no such token, or revoked already.
    pub async fn revoke_admin_token(&self, id: &str) -> Result<bool> {
        let changed = self
            .execute(statement!(
                "UPDATE admin_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
                now(),
                id,
            ))
            .await?;
        Ok(changed == 1)
    }
}

//! External account binding keys (RFC 8555 §7.3.4): minted by an operator, stored sealed,
//! bound to the one account created with them (`Store::insert_account`).

use sqlx::Row;

use super::sql::statement;
use super::{now, EabKeyRow, Reads, Result, SealedEabKey, Store};

impl Reads {
    /// The RA policy (JSON) an EAB key carries, if any.
    pub async fn eab_policy(&self, kid: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT policy FROM eab_keys WHERE kid = $1")
            .bind(kid)
            .fetch_optional(&mut self.reader().await?)
            .await?;
        Ok(row
            .map(|r| r.try_get::<Option<String>, _>("policy"))
            .transpose()?
            .flatten())
    }

    /// An EAB key by its id, sealed, as a newAccount checks it.
    pub async fn eab_key(&self, kid: &str) -> Result<Option<SealedEabKey>> {
        let row =
            sqlx::query("SELECT sealed_key, directory, bound_account FROM eab_keys WHERE kid = $1")
                .bind(kid)
                .fetch_optional(&mut self.reader().await?)
                .await?;
        Ok(row
            .map(|r| -> std::result::Result<_, sqlx::Error> {
                Ok(SealedEabKey {
                    sealed_key: r.try_get("sealed_key")?,
                    directory: r.try_get("directory")?,
                    bound_account: r.try_get("bound_account")?,
                })
            })
            .transpose()?)
    }

    /// Every EAB key, oldest first, without its key.
    pub async fn eab_keys(&self) -> Result<Vec<EabKeyRow>> {
        let rows = sqlx::query("SELECT kid, directory, note, created_at, bound_account FROM eab_keys ORDER BY created_at")
            .fetch_all(&mut self.reader().await?)
            .await?;
        Ok(rows
            .iter()
            .map(|r| -> std::result::Result<_, sqlx::Error> {
                Ok(EabKeyRow {
                    kid: r.try_get("kid")?,
                    directory: r.try_get("directory")?,
                    note: r.try_get("note")?,
                    created_at: r.try_get("created_at")?,
                    bound_account: r.try_get("bound_account")?,
                })
            })
            .collect::<std::result::Result<_, _>>()?)
    }
}

impl Store {
    pub async fn insert_eab_key(
        &self,
        kid: &str,
        sealed_key: &str,
        directory: &str,
        note: &str,
        policy: Option<&str>,
    ) -> Result<()> {
        self.execute(statement!(
            "INSERT INTO eab_keys (kid, sealed_key, directory, note, policy, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
            kid,
            sealed_key,
            directory,
            note,
            policy,
            now(),
        ))
        .await?;
        Ok(())
    }

    pub async fn delete_unbound_eab_key(&self, kid: &str) -> Result<bool> {
        let changed = self
            .execute(statement!(
                "DELETE FROM eab_keys WHERE kid = $1 AND bound_account IS NULL",
                kid
            ))
            .await?;
        Ok(changed == 1)
    }
}

//! Managed keys of the RA's client operations (CZERTAINLY's token profiles and keys, migration
//! 0009): where keys live (a token profile: the software store, or a PKCS#11 token) and each key
//! generated there, its public key, and its private key sealed (software) or its label on the
//! token (PKCS#11); a destroyed key keeps its row, without its private key.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::sql::statement;
use super::{now, Reads, Result, Store};

/// A token profile. `settings` is JSON (a PKCS#11 token's module, label and PIN variable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaTokenProfileRow {
    pub uuid: String,
    pub name: String,
    /// `software` or `pkcs11`.
    pub kind: String,
    pub settings: String,
    pub created_at: i64,
}

/// A managed key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaManagedKeyRow {
    pub uuid: String,
    pub token_profile_uuid: String,
    pub name: String,
    pub algorithm: String,
    /// SubjectPublicKeyInfo DER.
    pub public_key: Vec<u8>,
    /// The private key sealed with the key-encryption key (software keys, until destroyed).
    pub sealed_key: Option<String>,
    /// `CKA_LABEL` on the token (PKCS#11 keys).
    pub label: String,
    pub created_at: i64,
    pub destroyed_at: Option<i64>,
}

fn token_profile_row(r: &AnyRow) -> std::result::Result<RaTokenProfileRow, sqlx::Error> {
    Ok(RaTokenProfileRow {
        uuid: r.try_get("uuid")?,
        name: r.try_get("name")?,
        kind: r.try_get("kind")?,
        settings: r.try_get("settings")?,
        created_at: r.try_get("created_at")?,
    })
}

fn key_row(r: &AnyRow) -> std::result::Result<RaManagedKeyRow, sqlx::Error> {
    Ok(RaManagedKeyRow {
        uuid: r.try_get("uuid")?,
        token_profile_uuid: r.try_get("token_profile_uuid")?,
        name: r.try_get("name")?,
        algorithm: r.try_get("algorithm")?,
        public_key: r.try_get("public_key")?,
        sealed_key: r.try_get("sealed_key")?,
        label: r.try_get("label")?,
        created_at: r.try_get("created_at")?,
        destroyed_at: r.try_get("destroyed_at")?,
    })
}

const KEY_COLUMNS: &str = "uuid, token_profile_uuid, name, algorithm, public_key, sealed_key, \
     label, created_at, destroyed_at";

impl Reads {
    /// Every token profile, by name.
    pub async fn ra_token_profiles(&self) -> Result<Vec<RaTokenProfileRow>> {
        let rows = sqlx::query(
            "SELECT uuid, name, kind, settings, created_at FROM ra_token_profiles ORDER BY name",
        )
        .fetch_all(&mut self.reader().await?)
        .await?;
        Ok(rows
            .iter()
            .map(token_profile_row)
            .collect::<std::result::Result<_, _>>()?)
    }

    pub async fn ra_token_profile(&self, uuid: &str) -> Result<Option<RaTokenProfileRow>> {
        let row = sqlx::query(
            "SELECT uuid, name, kind, settings, created_at FROM ra_token_profiles WHERE uuid = $1",
        )
        .bind(uuid)
        .fetch_optional(&mut self.reader().await?)
        .await?;
        Ok(row.as_ref().map(token_profile_row).transpose()?)
    }

    /// The keys of a token profile, oldest first.
    pub async fn ra_managed_keys(&self, token_profile_uuid: &str) -> Result<Vec<RaManagedKeyRow>> {
        let sql = format!(
            "SELECT {KEY_COLUMNS} FROM ra_managed_keys WHERE token_profile_uuid = $1 ORDER BY created_at, uuid"
        );
        let rows = sqlx::query(&sql)
            .bind(token_profile_uuid)
            .fetch_all(&mut self.reader().await?)
            .await?;
        Ok(rows
            .iter()
            .map(key_row)
            .collect::<std::result::Result<_, _>>()?)
    }

    pub async fn ra_managed_key(&self, uuid: &str) -> Result<Option<RaManagedKeyRow>> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM ra_managed_keys WHERE uuid = $1");
        let row = sqlx::query(&sql)
            .bind(uuid)
            .fetch_optional(&mut self.reader().await?)
            .await?;
        Ok(row.as_ref().map(key_row).transpose()?)
    }
}

impl Store {
    /// A new token profile; a name in use fails with a unique violation.
    pub async fn insert_ra_token_profile(&self, t: &RaTokenProfileRow) -> Result<()> {
        self.execute(statement!(
            "INSERT INTO ra_token_profiles (uuid, name, kind, settings, created_at) VALUES ($1, $2, $3, $4, $5)",
            &t.uuid,
            &t.name,
            &t.kind,
            &t.settings,
            t.created_at,
        ))
        .await?;
        Ok(())
    }

    pub async fn insert_ra_managed_key(&self, k: &RaManagedKeyRow) -> Result<()> {
        self.execute(statement!(
            "INSERT INTO ra_managed_keys (uuid, token_profile_uuid, name, algorithm, public_key, sealed_key, label, created_at, destroyed_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            &k.uuid,
            &k.token_profile_uuid,
            &k.name,
            &k.algorithm,
            k.public_key.as_slice(),
            &k.sealed_key,
            &k.label,
            k.created_at,
            k.destroyed_at,
        ))
        .await?;
        Ok(())
    }

    /// Marks a key destroyed, its sealed private key dropped; `false` if it was already.
    pub async fn destroy_ra_managed_key(&self, uuid: &str) -> Result<bool> {
        let changed = self
            .execute(statement!(
                "UPDATE ra_managed_keys SET sealed_key = NULL, destroyed_at = $1 WHERE uuid = $2 AND destroyed_at IS NULL",
                now(),
                uuid,
            ))
            .await?;
        Ok(changed == 1)
    }
}

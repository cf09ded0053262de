//! Certificate authorities made at run time (the stored part of the issuer registry,
//! `ca::registry`): each with an integer id, a name, where its key is (a sealed PKCS#8 or a
//! token label, never a key in the clear), its request, its chain once certified, its parent,
//! whether it is enabled, revoked or deleted, and who changed it last.
//!
//! Every change also bumps the one row of `certificate_authorities_version`, in the same
//! transaction: a replica whose registry holds an older version reloads the table, so a CA made
//! or changed on one replica is seen by every other one.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::sql::statement;
use super::{now, Reads, Result, Statement, Store, Written};

/// A stored CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaRow {
    pub id: i64,
    pub name: String,
    /// `software` or `pkcs11`.
    pub key_custody: String,
    /// `ecdsa-p256` …
    pub key_algorithm: String,
    /// The sealed PKCS#8 PEM (software; emptied when the CA is deleted), or the key's label on
    /// the token.
    pub key_reference: String,
    pub csr_pem: String,
    /// Its own certificate first, root last; empty until certified.
    pub chain_pem: String,
    /// The serial of its certificate when a local CA issued it (then revocable onto that CA's
    /// CRL), or when it is self-signed.
    pub certificate_serial: Option<String>,
    /// The CA that certified it, when that was a stored CA.
    pub parent_id: Option<i64>,
    pub enabled: bool,
    pub not_after: Option<i64>,
    pub revoked_at: Option<i64>,
    pub created_by: String,
    pub created_at: i64,
    pub updated_by: String,
    pub updated_at: i64,
}

/// What a new CA row holds.
#[derive(Debug, Clone)]
pub struct NewCaRow {
    /// `None`: `ca-<id>`.
    pub name: Option<String>,
    pub key_custody: String,
    pub key_algorithm: String,
    pub key_reference: String,
    pub csr_pem: String,
    /// Empty for a CA that waits for its certificate.
    pub chain_pem: String,
    pub certificate_serial: Option<String>,
    pub not_after: Option<i64>,
    pub enabled: bool,
    pub created_by: String,
}

/// What certifying a waiting CA stores.
#[derive(Debug, Clone)]
pub struct CaCertified {
    pub chain_pem: String,
    pub certificate_serial: Option<String>,
    pub parent_id: Option<i64>,
    pub not_after: i64,
}

const CA_COLUMNS: &str =
    "id, name, key_custody, key_algorithm, key_reference, csr_pem, chain_pem, \
     certificate_serial, parent_id, enabled, not_after, revoked_at, created_by, created_at, \
     updated_by, updated_at";

fn ca_row(r: &AnyRow) -> std::result::Result<CaRow, sqlx::Error> {
    Ok(CaRow {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        key_custody: r.try_get("key_custody")?,
        key_algorithm: r.try_get("key_algorithm")?,
        key_reference: r.try_get("key_reference")?,
        csr_pem: r.try_get("csr_pem")?,
        chain_pem: r.try_get("chain_pem")?,
        certificate_serial: r.try_get("certificate_serial")?,
        parent_id: r.try_get("parent_id")?,
        enabled: r.try_get::<i64, _>("enabled")? != 0,
        not_after: r.try_get("not_after")?,
        revoked_at: r.try_get("revoked_at")?,
        created_by: r.try_get("created_by")?,
        created_at: r.try_get("created_at")?,
        updated_by: r.try_get("updated_by")?,
        updated_at: r.try_get("updated_at")?,
    })
}

/// The statement every change carries along.
fn bump_version() -> Statement {
    statement!(
        "UPDATE certificate_authorities_version SET version = version + 1 WHERE singleton = 1"
    )
}

impl Reads {
    /// The version of the CA table: it changes with every change of a stored CA.
    pub async fn certificate_authorities_version(&self) -> Result<i64> {
        let version: i64 = sqlx::query_scalar(
            "SELECT version FROM certificate_authorities_version WHERE singleton = 1",
        )
        .fetch_one(&mut self.reader().await?)
        .await?;
        Ok(version)
    }

    /// Every CA not deleted, by id, and the version of the table they were read at (one
    /// statement: the two agree).
    pub async fn certificate_authorities(&self) -> Result<(i64, Vec<CaRow>)> {
        let sql = format!(
            "SELECT {CA_COLUMNS}, (SELECT version FROM certificate_authorities_version WHERE singleton = 1) AS table_version \
             FROM certificate_authorities WHERE deleted_at IS NULL ORDER BY id"
        );
        let mut conn = self.reader().await?;
        let rows = sqlx::query(&sql).fetch_all(&mut conn).await?;
        let version = match rows.first() {
            Some(row) => row.try_get("table_version")?,
            None => {
                sqlx::query_scalar(
                    "SELECT version FROM certificate_authorities_version WHERE singleton = 1",
                )
                .fetch_one(&mut conn)
                .await?
            }
        };
        let cas = rows
            .iter()
            .map(ca_row)
            .collect::<std::result::Result<_, _>>()?;
        Ok((version, cas))
    }

    /// One CA not deleted.
    pub async fn certificate_authority(&self, id: i64) -> Result<Option<CaRow>> {
        let sql = format!(
            "SELECT {CA_COLUMNS} FROM certificate_authorities WHERE id = $1 AND deleted_at IS NULL"
        );
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&mut self.reader().await?)
            .await?;
        Ok(row.as_ref().map(ca_row).transpose()?)
    }
}

impl Store {
    /// A new CA; its id. A name taken already (by a CA, deleted or not) is a unique violation.
    pub async fn insert_certificate_authority(&self, new: &NewCaRow) -> Result<i64> {
        let at = now();
        // A provisional name, unique, until the id that names the CA is known.
        let mut suffix = [0u8; 12];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut suffix);
        let provisional = format!("pending-{}", hex::encode(suffix));
        let insert = statement!(
            "INSERT INTO certificate_authorities (name, key_custody, key_algorithm, key_reference, csr_pem, chain_pem, \
             certificate_serial, parent_id, enabled, not_after, revoked_at, deleted_at, created_by, created_at, updated_by, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, $8, $9, NULL, NULL, $10, $11, $10, $11) RETURNING id",
            new.name.as_deref().unwrap_or(&provisional),
            &new.key_custody,
            &new.key_algorithm,
            &new.key_reference,
            &new.csr_pem,
            &new.chain_pem,
            &new.certificate_serial,
            i64::from(new.enabled),
            new.not_after,
            &new.created_by,
            at,
        );
        let named = new.name.is_some();
        self.write(insert, move |conn, insert| {
            Box::pin(async move {
                let id: i64 = insert.query().fetch_one(&mut *conn).await?.try_get(0)?;
                if !named {
                    statement!(
                        "UPDATE certificate_authorities SET name = $1 WHERE id = $2",
                        &format!("ca-{id}"),
                        id,
                    )
                    .run(conn)
                    .await?;
                }
                bump_version().run(conn).await?;
                Ok(Written::Commit(id))
            })
        })
        .await
    }

    /// Store the certificate chain of a CA that waited for one, enabling it: `false` when it
    /// has one already, or is revoked or deleted.
    pub async fn certify_certificate_authority(
        &self,
        id: i64,
        certified: &CaCertified,
        by: &str,
    ) -> Result<bool> {
        let update = statement!(
            "UPDATE certificate_authorities SET chain_pem = $1, certificate_serial = $2, parent_id = $3, not_after = $4, \
             enabled = 1, updated_by = $5, updated_at = $6 \
             WHERE id = $7 AND chain_pem = '' AND revoked_at IS NULL AND deleted_at IS NULL",
            &certified.chain_pem,
            &certified.certificate_serial,
            certified.parent_id,
            certified.not_after,
            by,
            now(),
            id,
        );
        self.changing_one(update).await
    }

    /// Enable or disable a CA: `false` when there is no such CA, or (enabling) it has no
    /// certificate or is revoked.
    pub async fn set_certificate_authority_enabled(
        &self,
        id: i64,
        enabled: bool,
        by: &str,
    ) -> Result<bool> {
        let update = statement!(
            "UPDATE certificate_authorities SET enabled = $1, updated_by = $2, updated_at = $3 \
             WHERE id = $4 AND deleted_at IS NULL AND ($1 = 0 OR (chain_pem <> '' AND revoked_at IS NULL))",
            i64::from(enabled),
            by,
            now(),
            id,
        );
        self.changing_one(update).await
    }

    /// Mark a CA revoked (and disabled), once: `false` when it is revoked already or gone.
    pub async fn revoke_certificate_authority(&self, id: i64, by: &str) -> Result<bool> {
        let at = now();
        let update = statement!(
            "UPDATE certificate_authorities SET revoked_at = $1, enabled = 0, updated_by = $2, updated_at = $1 \
             WHERE id = $3 AND revoked_at IS NULL AND deleted_at IS NULL",
            at,
            by,
            id,
        );
        self.changing_one(update).await
    }

    /// Delete a CA: it stops being an issuer; its row stays (its name keeps naming the
    /// certificates it issued) without its software key. `false` when it is gone already.
    pub async fn delete_certificate_authority(&self, id: i64, by: &str) -> Result<bool> {
        let at = now();
        let update = statement!(
            "UPDATE certificate_authorities SET deleted_at = $1, enabled = 0, \
             key_reference = CASE WHEN key_custody = 'software' THEN '' ELSE key_reference END, \
             updated_by = $2, updated_at = $1 WHERE id = $3 AND deleted_at IS NULL",
            at,
            by,
            id,
        );
        self.changing_one(update).await
    }

    /// `update` and the version bump in one transaction: whether `update` changed its row.
    async fn changing_one(&self, update: Statement) -> Result<bool> {
        let changed = self.execute_all(vec![update, bump_version()]).await?;
        Ok(changed.first() == Some(&1))
    }
}

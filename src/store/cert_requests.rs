//! Certificate requests (Notary's `/certificate_requests`): a CSR with its owner, status and
//! certificate chain. Every change is one conditional statement on the status it starts from,
//! so that of two racing changes exactly one wins; a sign holds the request while the CA signs
//! (`signing_since`), so that it cannot be rejected, deleted of its certificate or signed twice
//! meanwhile.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::sql::statement;
use super::{now, Reads, Result, Store};

/// Statuses, exactly as Notary spells them.
pub const OUTSTANDING: &str = "Outstanding";
pub const ACTIVE: &str = "Active";
pub const REJECTED: &str = "Rejected";
pub const REVOKED: &str = "Revoked";

/// A stored certificate request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertRequestRow {
    pub id: i64,
    pub csr_pem: String,
    pub status: String,
    /// Empty until a certificate is signed or uploaded.
    pub chain_pem: String,
    /// The certificate a stored CA signed for it; `None` for none or an uploaded one.
    pub certificate_serial: Option<String>,
    pub ca_id: Option<i64>,
    /// The user who made it (`users.id`) and their e-mail address then.
    pub owner_id: String,
    pub owner_email: String,
    pub signing_since: Option<i64>,
    pub created_by: String,
    pub created_at: i64,
    pub updated_by: String,
    pub updated_at: i64,
}

/// A new request.
#[derive(Debug, Clone)]
pub struct NewCertRequest {
    pub csr_pem: String,
    /// SHA-256 of the CSR's DER, hex: one request per CSR.
    pub csr_digest: String,
    pub owner_id: String,
    pub owner_email: String,
    pub created_by: String,
}

/// What a finished sign stores.
#[derive(Debug, Clone)]
pub struct SignedRequest {
    pub chain_pem: String,
    pub certificate_serial: String,
    pub ca_id: i64,
}

const REQUEST_COLUMNS: &str =
    "id, csr_pem, status, chain_pem, certificate_serial, ca_id, owner_id, \
     owner_email, signing_since, created_by, created_at, updated_by, updated_at";

fn request_row(r: &AnyRow) -> std::result::Result<CertRequestRow, sqlx::Error> {
    Ok(CertRequestRow {
        id: r.try_get("id")?,
        csr_pem: r.try_get("csr_pem")?,
        status: r.try_get("status")?,
        chain_pem: r.try_get("chain_pem")?,
        certificate_serial: r.try_get("certificate_serial")?,
        ca_id: r.try_get("ca_id")?,
        owner_id: r.try_get("owner_id")?,
        owner_email: r.try_get("owner_email")?,
        signing_since: r.try_get("signing_since")?,
        created_by: r.try_get("created_by")?,
        created_at: r.try_get("created_at")?,
        updated_by: r.try_get("updated_by")?,
        updated_at: r.try_get("updated_at")?,
    })
}

impl Reads {
    /// Requests by id: every one, or `owner`'s; `page`: (offset, limit).
    pub async fn certificate_requests(
        &self,
        owner: Option<&str>,
        page: Option<(i64, i64)>,
    ) -> Result<Vec<CertRequestRow>> {
        let (offset, limit) = page.unwrap_or((0, i64::MAX));
        let sql = format!(
            "SELECT {REQUEST_COLUMNS} FROM certificate_requests \
             WHERE ($1 IS NULL OR owner_id = $1) ORDER BY id LIMIT $2 OFFSET $3"
        );
        let rows = sqlx::query(&sql)
            .bind(owner)
            .bind(limit)
            .bind(offset)
            .fetch_all(&mut self.reader().await?)
            .await?;
        Ok(rows
            .iter()
            .map(request_row)
            .collect::<std::result::Result<_, _>>()?)
    }

    pub async fn certificate_request(&self, id: i64) -> Result<Option<CertRequestRow>> {
        let sql = format!("SELECT {REQUEST_COLUMNS} FROM certificate_requests WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&mut self.reader().await?)
            .await?;
        Ok(row.as_ref().map(request_row).transpose()?)
    }

    /// How many requests there are with each status.
    pub async fn certificate_request_counts(&self) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query(
            "SELECT status, COUNT(*) AS n FROM certificate_requests GROUP BY status ORDER BY status",
        )
        .fetch_all(&mut self.reader().await?)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("status")?, r.try_get("n")?)))
            .collect::<std::result::Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }
}

impl Store {
    /// A new `Outstanding` request; its id. The same CSR stored already is a unique violation.
    pub async fn insert_certificate_request(&self, new: &NewCertRequest) -> Result<i64> {
        let insert = statement!(
            "INSERT INTO certificate_requests (csr_pem, csr_digest, status, chain_pem, certificate_serial, ca_id, \
             owner_id, owner_email, signing_since, created_by, created_at, updated_by, updated_at) \
             VALUES ($1, $2, $3, '', NULL, NULL, $4, $5, NULL, $6, $7, $6, $7) RETURNING id",
            &new.csr_pem,
            &new.csr_digest,
            OUTSTANDING,
            &new.owner_id,
            &new.owner_email,
            &new.created_by,
            now(),
        );
        self.write(insert, |conn, insert| {
            Box::pin(async move {
                let id: i64 = insert.query().fetch_one(conn).await?.try_get(0)?;
                Ok(super::Written::Commit(id))
            })
        })
        .await
    }

    /// Delete a request not being signed: `false` when there is none (or a sign holds it).
    pub async fn delete_certificate_request(&self, id: i64, stale_before: i64) -> Result<bool> {
        let delete = statement!(
            "DELETE FROM certificate_requests WHERE id = $1 \
             AND (signing_since IS NULL OR signing_since < $2)",
            id,
            stale_before,
        );
        Ok(self.execute(delete).await? == 1)
    }

    /// Move a request from `from` to `to`, touching nothing else: `false` when it is not in
    /// `from` (or a sign holds it).
    pub async fn set_certificate_request_status(
        &self,
        id: i64,
        from: &str,
        to: &str,
        by: &str,
        stale_before: i64,
    ) -> Result<bool> {
        let update = statement!(
            "UPDATE certificate_requests SET status = $1, updated_by = $2, updated_at = $3 \
             WHERE id = $4 AND status = $5 AND (signing_since IS NULL OR signing_since < $6)",
            to,
            by,
            now(),
            id,
            from,
            stale_before,
        );
        Ok(self.execute(update).await? == 1)
    }

    /// Hold an `Outstanding` request for a sign starting `at`: `false` when it is not
    /// outstanding, or another sign holds it (since `stale_before` or later).
    pub async fn hold_certificate_request(
        &self,
        id: i64,
        at: i64,
        stale_before: i64,
    ) -> Result<bool> {
        let update = statement!(
            "UPDATE certificate_requests SET signing_since = $1 WHERE id = $2 AND status = $3 \
             AND (signing_since IS NULL OR signing_since < $4)",
            at,
            id,
            OUTSTANDING,
            stale_before,
        );
        Ok(self.execute(update).await? == 1)
    }

    /// Let go of a hold taken `at` (the sign failed).
    pub async fn release_certificate_request(&self, id: i64, at: i64) -> Result<()> {
        self.execute(statement!(
            "UPDATE certificate_requests SET signing_since = NULL WHERE id = $1 AND signing_since = $2",
            id,
            at,
        ))
        .await?;
        Ok(())
    }

    /// Finish the sign that holds the request since `held_at`: `Active` with its chain.
    /// `false` when the hold was lost (taken over after it went stale).
    pub async fn complete_signed_request(
        &self,
        id: i64,
        held_at: i64,
        signed: &SignedRequest,
        by: &str,
    ) -> Result<bool> {
        let update = statement!(
            "UPDATE certificate_requests SET status = $1, chain_pem = $2, certificate_serial = $3, ca_id = $4, \
             signing_since = NULL, updated_by = $5, updated_at = $6 \
             WHERE id = $7 AND signing_since = $8 AND status = $9",
            ACTIVE,
            &signed.chain_pem,
            &signed.certificate_serial,
            signed.ca_id,
            by,
            now(),
            id,
            held_at,
            OUTSTANDING,
        );
        Ok(self.execute(update).await? == 1)
    }

    /// An outside CA's chain for an `Outstanding` request: `Active`. `false` when it is not
    /// outstanding (or a sign holds it).
    pub async fn attach_certificate_chain(
        &self,
        id: i64,
        chain_pem: &str,
        by: &str,
        stale_before: i64,
    ) -> Result<bool> {
        let update = statement!(
            "UPDATE certificate_requests SET status = $1, chain_pem = $2, certificate_serial = NULL, ca_id = NULL, \
             updated_by = $3, updated_at = $4 \
             WHERE id = $5 AND status = $6 AND (signing_since IS NULL OR signing_since < $7)",
            ACTIVE,
            chain_pem,
            by,
            now(),
            id,
            OUTSTANDING,
            stale_before,
        );
        Ok(self.execute(update).await? == 1)
    }

    /// Forget an `Active` request's certificate: `Outstanding` again (the certificate itself is
    /// not revoked). `false` when it is not active.
    pub async fn detach_certificate(&self, id: i64, by: &str) -> Result<bool> {
        let update = statement!(
            "UPDATE certificate_requests SET status = $1, chain_pem = '', certificate_serial = NULL, ca_id = NULL, \
             updated_by = $2, updated_at = $3 WHERE id = $4 AND status = $5",
            OUTSTANDING,
            by,
            now(),
            id,
            ACTIVE,
        );
        Ok(self.execute(update).await? == 1)
    }
}

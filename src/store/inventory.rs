//! What the certificates table holds, counted per issuer for `/metrics`: issued and revoked
//! certificates, and those still valid that expire within a day, a week, a month, a quarter.

use sqlx::Row;

use super::{Reads, Result};

/// Counts of one issuer's certificates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IssuerInventory {
    pub issuer: String,
    /// Issued (signed and stored), revoked or not.
    pub issued: i64,
    pub revoked: i64,
    /// Not revoked and expired.
    pub expired: i64,
    /// Not revoked, not expired, expiring within 1, 7, 30 and 90 days of `at`.
    pub expiring: [i64; 4],
}

/// The horizons of [`IssuerInventory::expiring`], in days.
pub const EXPIRY_HORIZON_DAYS: [i64; 4] = [1, 7, 30, 90];

impl Reads {
    /// Each issuer's counts at `at` (one pass over the issued certificates).
    pub async fn certificate_inventory(&self, at: i64) -> Result<Vec<IssuerInventory>> {
        let day = 86_400;
        let rows = sqlx::query(
            "SELECT issuer, COUNT(*) AS issued, \
             SUM(CASE WHEN revoked_at IS NOT NULL THEN 1 ELSE 0 END) AS revoked, \
             SUM(CASE WHEN revoked_at IS NULL AND not_after <= $1 THEN 1 ELSE 0 END) AS expired, \
             SUM(CASE WHEN revoked_at IS NULL AND not_after > $1 AND not_after <= $2 THEN 1 ELSE 0 END) AS d1, \
             SUM(CASE WHEN revoked_at IS NULL AND not_after > $1 AND not_after <= $3 THEN 1 ELSE 0 END) AS d7, \
             SUM(CASE WHEN revoked_at IS NULL AND not_after > $1 AND not_after <= $4 THEN 1 ELSE 0 END) AS d30, \
             SUM(CASE WHEN revoked_at IS NULL AND not_after > $1 AND not_after <= $5 THEN 1 ELSE 0 END) AS d90 \
             FROM certificates WHERE status = 'issued' GROUP BY issuer ORDER BY issuer",
        )
        .bind(at)
        .bind(at + EXPIRY_HORIZON_DAYS[0] * day)
        .bind(at + EXPIRY_HORIZON_DAYS[1] * day)
        .bind(at + EXPIRY_HORIZON_DAYS[2] * day)
        .bind(at + EXPIRY_HORIZON_DAYS[3] * day)
        .fetch_all(&mut self.reader().await?)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(IssuerInventory {
                    issuer: r.try_get("issuer")?,
                    issued: r.try_get("issued")?,
                    revoked: r.try_get("revoked")?,
                    expired: r.try_get("expired")?,
                    expiring: [
                        r.try_get("d1")?,
                        r.try_get("d7")?,
                        r.try_get("d30")?,
                        r.try_get("d90")?,
                    ],
                })
            })
            .collect::<std::result::Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// Whether the database answers (readiness).
    pub async fn ping(&self) -> Result<()> {
        let _: i64 = sqlx::query_scalar("SELECT CAST(1 AS BIGINT)")
            .fetch_one(&mut self.reader().await?)
            .await?;
        Ok(())
    }
}

//! Delegated OCSP responders (RFC 6960 §4.2.2.2): their certificates and sealed keys.

use sqlx::Row;

use super::sql::statement;
use super::{now, OcspResponderRow, Reads, Result, Store, StoreError};

impl Reads {
    /// The issuer's responder certificate that stays valid longest, if one is valid at `at`.
    pub async fn latest_ocsp_responder(
        &self,
        issuer: &str,
        at: i64,
    ) -> Result<Option<OcspResponderRow>> {
        let row = sqlx::query(
            "SELECT issuer, serial, cert_der, sealed_key, not_before, not_after FROM ocsp_responders \
             WHERE issuer = $1 AND not_before <= $2 AND not_after > $2 ORDER BY not_after DESC LIMIT 1",
        )
        .bind(issuer)
        .bind(at)
        .fetch_optional(&mut self.reader().await?)
        .await?;
        row.map(|r| {
            Ok(OcspResponderRow {
                issuer: r.try_get("issuer")?,
                serial: r.try_get("serial")?,
                cert_der: r.try_get("cert_der")?,
                sealed_key: r.try_get("sealed_key")?,
                not_before: r.try_get("not_before")?,
                not_after: r.try_get("not_after")?,
            })
        })
        .transpose()
        .map_err(|e: sqlx::Error| StoreError::from(e))
    }
}

impl Store {
    pub async fn insert_ocsp_responder(&self, row: &OcspResponderRow) -> Result<()> {
        self.execute(statement!(
            "INSERT INTO ocsp_responders (issuer, serial, cert_der, sealed_key, not_before, not_after, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &row.issuer,
            &row.serial,
            row.cert_der.as_slice(),
            &row.sealed_key,
            row.not_before,
            row.not_after,
            now(),
        ))
        .await?;
        Ok(())
    }
}

//! The issuance cycle's records and the certificates: a serial and its to-be-signed bytes
//! stored before the signature (with the finalize's claim, where the backend journals), the
//! signed certificate stored and its order settled in one transaction (one statement on
//! PostgreSQL), unused serials abandoned, certificates read (a fresh one from memory for its
//! download, `fast::fresh`).

use sqlx::{AnyConnection, Row};

use super::rows::{cert_cols, certificate_from};
use super::sql::{renumber_arguments, statement, Combined};
use super::{
    now, CertificateRow, CertificateStatus, Claim, Reads, Result, Statement, Store, StoreError,
    Writes, Written,
};

/// What the issuance cycle knows of a certificate before it is signed.
#[derive(Debug, Clone)]
pub struct PendingCertificate<'a> {
    pub issuer: &'a str,
    pub order_id: Option<&'a str>,
    pub account_id: Option<&'a str>,
    pub not_before: i64,
    pub not_after: i64,
    /// The CRL shard written into the certificate's distribution point.
    pub crl_shard: Option<i64>,
}

impl PendingCertificate<'_> {
    /// The insert of its `tbs` row (step 1 of the issuance cycle), made when `condition` holds.
    fn tbs_record(&self, serial: &str, tbs: &[u8], condition: &str) -> Statement {
        statement!(
            format!(
                "INSERT INTO certificates (serial, issuer, order_id, account_id, status, tbs, not_before, not_after, created_at, crl_shard) \
                 SELECT $1, $2, $3, $4, 'tbs', $5, $6, $7, $8, $9 WHERE {condition}"
            ),
            serial,
            self.issuer,
            self.order_id,
            self.account_id,
            tbs,
            self.not_before,
            self.not_after,
            now(),
            self.crl_shard,
        )
    }
}

/// A signed certificate, ready to store.
pub struct IssuedRecord<'a> {
    /// Lowercase hex of the certificate's serial.
    pub serial: &'a str,
    pub tbs: &'a [u8],
    pub der: &'a [u8],
    pub chain_pem: &'a str,
}

pub(super) const CERT_COLS: &str = cert_cols!();
/// One certificate (`$1`, its serial), all of [`CERT_COLS`].
pub(super) const CERTIFICATE: &str = concat!(
    "SELECT ",
    cert_cols!(),
    " FROM certificates WHERE serial = $1"
);

impl Reads {
    /// A certificate for its download: its serial, issuer, account, status, DER and chain as
    /// [`Reads::certificate`] has them, its revocation possibly not (an issuance of this
    /// process keeps these in memory for the client's download).
    pub async fn certificate_for_download(&self, serial: &str) -> Result<Option<CertificateRow>> {
        if let Some(kept) = self.fresh.as_ref().and_then(|f| f.certificate(serial)) {
            return Ok(Some(kept));
        }
        self.certificate(serial).await
    }

    pub async fn certificate(&self, serial: &str) -> Result<Option<CertificateRow>> {
        let row = sqlx::query(CERTIFICATE)
            .bind(serial)
            .fetch_optional(&mut self.reader().await?)
            .await?;
        Ok(row.map(|r| certificate_from(&r)).transpose()?)
    }

    pub async fn certificate_of_order(&self, order_id: &str) -> Result<Option<CertificateRow>> {
        let row = sqlx::query(&format!(
            "SELECT {CERT_COLS} FROM certificates WHERE order_id = $1 AND status = 'issued'"
        ))
        .bind(order_id)
        .fetch_optional(&mut self.reader().await?)
        .await?;
        Ok(row.map(|r| certificate_from(&r)).transpose()?)
    }
}

impl Store {
    /// [`Store::begin_processing`] and step 1 of the issuance cycle ([`Store::record_tbs`]) as
    /// one write, durable when this returns: `false`, and nothing written, when another
    /// finalize claimed the order first. One statement on PostgreSQL; on SQLite one call to
    /// the connection, where the record is inserted only if the claim's update changed its row.
    pub async fn claim_with_tbs(
        &self,
        claim: &Claim<'_>,
        pending: &PendingCertificate<'_>,
        serial: &str,
        tbs: &[u8],
    ) -> Result<bool> {
        let record = |condition: &str| pending.tbs_record(serial, tbs, condition);
        let changed = match &self.writes {
            Writes::Server { conns, .. } => {
                let claim = claim.statement();
                let insert = record("EXISTS (SELECT 1 FROM claimed)");
                let sql = format!(
                    "WITH claimed AS ({} RETURNING 1), recorded AS ({} RETURNING 1) \
                     SELECT (SELECT COUNT(*) FROM claimed), (SELECT COUNT(*) FROM recorded)",
                    claim.sql,
                    renumber_arguments(&insert.sql, claim.args.len()),
                );
                let both = Combined {
                    statement: Statement::new(sql, [claim.args, insert.args].concat()),
                    count: 2,
                };
                both.run_on(conns).await?
            }
            // `changes()`: the rows the statement before it, the claim, changed (SQLite runs
            // a write's statements in turn; only PostgreSQL's need to be independent).
            Writes::Grouped(_) => {
                self.execute_all_then(
                    vec![claim.statement(), record("changes() = 1")],
                    self.claim_changes(claim.order_id),
                )
                .await?
            }
        };
        Ok(changed.first() == Some(&1))
    }

    /// Step 1 of the issuance cycle: the serial and the to-be-signed bytes, before the signature.
    pub async fn record_tbs(
        &self,
        pending: &PendingCertificate<'_>,
        serial: &str,
        tbs: &[u8],
    ) -> Result<()> {
        self.execute(pending.tbs_record(serial, tbs, "TRUE"))
            .await?;
        Ok(())
    }

    /// Final step: store the certificate and mark the order valid, in one transaction. An order
    /// that is no longer `processing` keeps what it has: nothing is written, `OrderSettled`.
    pub async fn complete_issuance(
        &self,
        issued: &IssuedRecord<'_>,
        pending: &PendingCertificate<'_>,
    ) -> Result<()> {
        // `None`: the order had settled; else whether the `tbs` row became the certificate.
        let stored = if let Writes::Server { conns, .. } = &self.writes {
            let mut conn = conns.get().await?;
            let stored = complete_in_one_statement(conn.connection()?, issued, pending).await;
            conn.noted(stored)?
        } else {
            // The order first: of two issuances for one order (a recovery that took over a slow
            // one), exactly one stores its certificate. The settle and the store go to the
            // connection in one call (`Statement::chained`); the store's condition is the order
            // this settle made valid, so when the settle changes nothing neither does the store.
            let settle_then_store = match pending.order_id {
                Some(order_id) => Statement::chained(&[
                    statement!(
                        "UPDATE orders SET status = 'valid', certificate_serial = $1 WHERE id = $2 AND status = 'processing'",
                        issued.serial,
                        order_id,
                    ),
                    statement!(
                        "UPDATE certificates SET status = 'issued', der = $1, chain_pem = $2 WHERE serial = $3 AND status = 'tbs' \
                         AND EXISTS (SELECT 1 FROM orders WHERE id = $4 AND status = 'valid' AND certificate_serial = $3)",
                        issued.der,
                        issued.chain_pem,
                        issued.serial,
                        order_id,
                    ),
                ]),
                None => Statement::chained(&[statement!(
                    "UPDATE certificates SET status = 'issued', der = $1, chain_pem = $2 WHERE serial = $3 AND status = 'tbs'",
                    issued.der,
                    issued.chain_pem,
                    issued.serial,
                )]),
            };
            let settles = pending.order_id.is_some();
            // An upstream CA chose the serial and signed out of our sight: record its certificate.
            let insert = statement!(
                "INSERT INTO certificates (serial, issuer, order_id, account_id, status, tbs, der, chain_pem, not_before, not_after, created_at) \
                 VALUES ($1, $2, $3, $4, 'issued', $5, $6, $7, $8, $9, $10)",
                issued.serial,
                pending.issuer,
                pending.order_id,
                pending.account_id,
                issued.tbs,
                issued.der,
                issued.chain_pem,
                pending.not_before,
                pending.not_after,
                now(),
            );
            let after = pending.order_id.and_then(|id| self.order_changes(id));
            self.write_then(
                (settle_then_store, insert),
                move |conn, (settle_then_store, insert)| {
                    Box::pin(async move {
                        let from_tbs = match settle_then_store.run_counting(conn).await?[..] {
                            [1, stored] if settles => stored == 1,
                            [stored] if !settles => stored == 1,
                            _ => return Ok(Written::Commit(None)),
                        };
                        if !from_tbs {
                            insert.run(conn).await?;
                        }
                        Ok(Written::Commit(Some(from_tbs)))
                    })
                },
                after,
            )
            .await?
        };
        match (stored, pending.order_id) {
            (None, Some(order_id)) => Err(StoreError::OrderSettled(order_id.to_owned())),
            (None, None) => Ok(()),
            (Some(from_tbs), _) => {
                // Its download is usually the client's next request. What a download reads of
                // it never changes; the serial is known to no one else yet.
                if let Some(fresh) = &self.fresh {
                    fresh.put_certificate(CertificateRow {
                        serial: issued.serial.to_owned(),
                        issuer: pending.issuer.to_owned(),
                        order_id: pending.order_id.map(str::to_owned),
                        account_id: pending.account_id.map(str::to_owned),
                        status: CertificateStatus::Issued,
                        der: Some(issued.der.to_vec()),
                        chain_pem: Some(issued.chain_pem.to_owned()),
                        not_after: pending.not_after,
                        revoked_at: None,
                        revocation_reason: None,
                        invalidity_date: None,
                        crl_shard: if from_tbs { pending.crl_shard } else { None },
                    });
                }
                Ok(())
            }
        }
    }

    /// A signature was never made (or could not be checked): the serial stays recorded, unused.
    pub async fn abandon_tbs(&self, serial: &str) -> Result<()> {
        self.execute_retrying(
            "abandoning an unused serial",
            None,
            vec![statement!(
                "UPDATE certificates SET status = 'abandoned' WHERE serial = $1 AND status = 'tbs'",
                serial
            )],
        )
        .await?;
        Ok(())
    }

    /// Serials of an order left at the `tbs` step by a crash: never reused, marked abandoned.
    pub async fn abandon_tbs_of_order(&self, order_id: &str) -> Result<u64> {
        self.execute(statement!(
            "UPDATE certificates SET status = 'abandoned' WHERE order_id = $1 AND status = 'tbs'",
            order_id
        ))
        .await
    }
}

/// [`Store::complete_issuance`] on PostgreSQL, in one statement where a transaction took four
/// round trips: the order settles, then (only if it did, or there is no order) the `tbs` row
/// becomes the certificate, or, when there is none (an upstream CA chose the serial), the
/// certificate is inserted. `None`: the order had settled; else whether the `tbs` row was used.
pub(super) async fn complete_in_one_statement(
    conn: &mut AnyConnection,
    issued: &IssuedRecord<'_>,
    pending: &PendingCertificate<'_>,
) -> std::result::Result<Option<bool>, sqlx::Error> {
    const SQL: &str = "WITH settled AS (UPDATE orders SET status = 'valid', certificate_serial = $1 \
         WHERE id = $2 AND status = 'processing' RETURNING 1), \
         stored AS (UPDATE certificates SET status = 'issued', der = $3, chain_pem = $4 \
         WHERE serial = $1 AND status = 'tbs' AND ($2 IS NULL OR EXISTS (SELECT 1 FROM settled)) \
         RETURNING 1), \
         recorded AS (INSERT INTO certificates (serial, issuer, order_id, account_id, status, tbs, \
         der, chain_pem, not_before, not_after, created_at) \
         SELECT $1, $5, $2, $6, 'issued', $7, $3, $4, $8, $9, $10 \
         WHERE ($2 IS NULL OR EXISTS (SELECT 1 FROM settled)) AND NOT EXISTS (SELECT 1 FROM stored) \
         RETURNING 1) \
         SELECT (SELECT COUNT(*) FROM settled) AS settled, (SELECT COUNT(*) FROM stored) AS stored";
    let row = statement!(
        SQL,
        issued.serial,
        pending.order_id,
        issued.der,
        issued.chain_pem,
        pending.issuer,
        pending.account_id,
        issued.tbs,
        pending.not_before,
        pending.not_after,
        now(),
    )
    .query()
    .fetch_one(conn)
    .await?;
    let settled: i64 = row.try_get("settled")?;
    let stored: i64 = row.try_get("stored")?;
    Ok((pending.order_id.is_none() || settled == 1).then_some(stored == 1))
}

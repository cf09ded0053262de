//! Revocations and CRLs (RFC 5280 §5): a certificate revoked once, a CRL's entries per issuer
//! and shard, the CRLs generated and kept, and the leases that let one replica at a time
//! generate an issuer's CRLs.

use sqlx::Row;

use super::rows::crl_from;
use super::sql::statement;
use super::{CrlMeta, CrlRow, Reads, Result, RevokedRow, Store, StoreError};

/// The newest revocation and the newest change of a reason of an issuer: two indexed maxima.
pub(super) const LAST_REVOCATION: &str =
    "SELECT (SELECT MAX(revoked_at) FROM certificates WHERE issuer = $1) AS t, \
     (SELECT MAX(reason_changed_at) FROM certificates WHERE issuer = $1 \
      AND reason_changed_at IS NOT NULL) AS c";

/// [`LAST_REVOCATION`] within one CRL shard.
pub(super) const LAST_REVOCATION_IN_SHARD: &str =
    "SELECT (SELECT MAX(revoked_at) FROM certificates WHERE issuer = $1 AND crl_shard = $2) AS t, \
     (SELECT MAX(reason_changed_at) FROM certificates WHERE issuer = $1 AND crl_shard = $2 \
      AND reason_changed_at IS NOT NULL) AS c";

impl Reads {
    /// Revoked certificates of an issuer that have not expired at `at`: a CRL's entries. `shard`:
    /// only those of that CRL shard; `None`: all of them (the issuer's full CRL).
    pub async fn revoked_unexpired(
        &self,
        issuer: &str,
        at: i64,
        shard: Option<i64>,
    ) -> Result<Vec<RevokedRow>> {
        const COLS: &str =
            "SELECT serial, revoked_at, revocation_reason, invalidity_date FROM certificates \
             WHERE issuer = $1 AND revoked_at IS NOT NULL AND not_after > $2";
        let query = match shard {
            Some(_) => format!("{COLS} AND crl_shard = $3 ORDER BY serial"),
            None => format!("{COLS} ORDER BY serial"),
        };
        let mut query = sqlx::query(&query).bind(issuer).bind(at);
        if let Some(shard) = shard {
            query = query.bind(shard);
        }
        let rows = query.fetch_all(&mut self.reader().await?).await?;
        rows.iter()
            .map(|r| {
                Ok(RevokedRow {
                    serial: r.try_get("serial")?,
                    revoked_at: r
                        .try_get::<Option<i64>, _>("revoked_at")?
                        .unwrap_or_default(),
                    reason: r.try_get("revocation_reason")?,
                    invalidity_date: r.try_get("invalidity_date")?,
                })
            })
            .collect::<std::result::Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// When the issuer's newest revocation, or change of a revocation's reason, happened (0 if
    /// none), in one shard or in all: a CRL generated before it is stale.
    pub async fn last_revocation(&self, issuer: &str, shard: Option<i64>) -> Result<i64> {
        let row = match shard {
            Some(shard) => sqlx::query(LAST_REVOCATION_IN_SHARD)
                .bind(issuer)
                .bind(shard),
            None => sqlx::query(LAST_REVOCATION).bind(issuer),
        }
        .fetch_one(&mut self.reader().await?)
        .await?;
        let revoked = row.try_get::<Option<i64>, _>("t")?.unwrap_or(0);
        let changed = row.try_get::<Option<i64>, _>("c")?.unwrap_or(0);
        Ok(revoked.max(changed))
    }

    /// One more than the highest CRL shard an unexpired certificate of the issuer points to (0:
    /// none), so shards stay published after `crl_shards` is lowered.
    pub async fn crl_shards_in_use(&self, issuer: &str, at: i64) -> Result<i64> {
        let row = sqlx::query(
            "SELECT MAX(crl_shard) AS s FROM certificates WHERE issuer = $1 AND not_after > $2",
        )
        .bind(issuer)
        .bind(at)
        .fetch_one(&mut self.reader().await?)
        .await?;
        Ok(row
            .try_get::<Option<i64>, _>("s")?
            .map_or(0, |s| s.saturating_add(1)))
    }

    /// The newest stored CRL of one issuer's shard ([`FULL_CRL`](super::FULL_CRL): its
    /// complete CRL).
    pub async fn latest_crl(&self, issuer: &str, shard: i64) -> Result<Option<CrlRow>> {
        let row = sqlx::query(
            "SELECT issuer, shard, number, generated_at, this_update, next_update, der FROM crls \
             WHERE issuer = $1 AND shard = $2 ORDER BY number DESC LIMIT 1",
        )
        .bind(issuer)
        .bind(shard)
        .fetch_optional(&mut self.reader().await?)
        .await?;
        row.map(|r| crl_from(&r))
            .transpose()
            .map_err(StoreError::from)
    }

    /// The newest stored CRL of one issuer's shard, without its bytes (a large CRL is read
    /// only when it changed).
    pub async fn latest_crl_meta(&self, issuer: &str, shard: i64) -> Result<Option<CrlMeta>> {
        let row = sqlx::query(
            "SELECT number, generated_at, next_update FROM crls \
             WHERE issuer = $1 AND shard = $2 ORDER BY number DESC LIMIT 1",
        )
        .bind(issuer)
        .bind(shard)
        .fetch_optional(&mut self.reader().await?)
        .await?;
        row.map(|r| {
            Ok(CrlMeta {
                number: r.try_get("number")?,
                generated_at: r.try_get("generated_at")?,
                next_update: r.try_get("next_update")?,
            })
        })
        .transpose()
        .map_err(|e: sqlx::Error| StoreError::from(e))
    }

    /// One stored CRL by its number.
    pub async fn crl_by_number(
        &self,
        issuer: &str,
        shard: i64,
        number: i64,
    ) -> Result<Option<CrlRow>> {
        let row = sqlx::query(
            "SELECT issuer, shard, number, generated_at, this_update, next_update, der FROM crls \
             WHERE issuer = $1 AND shard = $2 AND number = $3",
        )
        .bind(issuer)
        .bind(shard)
        .bind(number)
        .fetch_optional(&mut self.reader().await?)
        .await?;
        row.map(|r| crl_from(&r))
            .transpose()
            .map_err(StoreError::from)
    }
}

impl Store {
    /// Mark a certificate revoked, once. `false`: it was revoked already (or does not exist).
    pub async fn revoke_certificate(
        &self,
        serial: &str,
        reason: i64,
        at: i64,
        invalidity_date: Option<i64>,
    ) -> Result<bool> {
        let changed = self
            .execute(statement!(
                "UPDATE certificates SET revoked_at = $1, revocation_reason = $2, invalidity_date = $3 \
                 WHERE serial = $4 AND status = 'issued' AND revoked_at IS NULL",
                at,
                reason,
                invalidity_date,
                serial,
            ))
            .await?;
        Ok(changed == 1)
    }

    /// A revoked certificate's reason becomes keyCompromise (and its invalidity date the one
    /// given, if any), unless it is keyCompromise already; `true` if it changed.
    pub async fn rerevoke_for_key_compromise(
        &self,
        serial: &str,
        at: i64,
        invalidity_date: Option<i64>,
    ) -> Result<bool> {
        let changed = self
            .execute(statement!(
                "UPDATE certificates SET revocation_reason = 1, reason_changed_at = $1, \
                 invalidity_date = COALESCE($2, invalidity_date) \
                 WHERE serial = $3 AND status = 'issued' AND revoked_at IS NOT NULL \
                 AND (revocation_reason IS NULL OR revocation_reason <> 1)",
                at,
                invalidity_date,
                serial,
            ))
            .await?;
        Ok(changed == 1)
    }

    pub async fn insert_crl(&self, crl: &CrlRow) -> Result<bool> {
        let changed = self
            .execute(statement!(
                "INSERT INTO crls (issuer, shard, number, generated_at, this_update, next_update, der) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (issuer, shard, number) DO NOTHING",
                &crl.issuer,
                crl.shard,
                crl.number,
                crl.generated_at,
                crl.this_update,
                crl.next_update,
                crl.der.as_slice(),
            ))
            .await?;
        Ok(changed == 1)
    }

    /// Keep the newest `keep` CRLs of an issuer's shard.
    pub async fn prune_crls(&self, issuer: &str, shard: i64, keep: i64) -> Result<()> {
        self.execute(statement!(
            "DELETE FROM crls WHERE issuer = $1 AND shard = $2 AND number NOT IN \
             (SELECT number FROM crls WHERE issuer = $1 AND shard = $2 ORDER BY number DESC LIMIT $3)",
            issuer,
            shard,
            keep,
        ))
        .await?;
        Ok(())
    }

    /// Take or renew the lease `name` for `holder` until `expires`: granted when nobody holds it,
    /// the holder is `holder` already, or the last holder's lease ran out before `now`. One
    /// conditional upsert, so of two replicas asking at once exactly one wins.
    pub async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        now: i64,
        expires: i64,
    ) -> Result<bool> {
        let changed = self
            .execute(statement!(
                "INSERT INTO leases (name, holder, expires) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires = excluded.expires \
                 WHERE leases.holder = excluded.holder OR leases.expires < $4",
                name,
                holder,
                expires,
                now,
            ))
            .await?;
        Ok(changed == 1)
    }

    /// Give a lease back early (only if `holder` still holds it).
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        self.execute(statement!(
            "UPDATE leases SET expires = 0 WHERE name = $1 AND holder = $2",
            name,
            holder,
        ))
        .await?;
        Ok(())
    }
}

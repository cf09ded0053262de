//! Redeemed nonces (RFC 8555 §7.2): each is redeemed once across every replica sharing the
//! database; on PostgreSQL a request signed with a `kid` has its account (and the resource it
//! names, `fast::prefetch`) read by the same statement. Also the settings replicas share (the
//! nonce key), created once.

use sqlx::Row;

use super::fast::prefetch;
use super::sql::statement;
use super::{AccountRow, Prefetch, Prefetched, Result, Store, Writes};

impl Store {
    /// A setting created once (first writer wins across replicas) and read back.
    pub async fn setting_or_insert(&self, name: &str, fresh: &str) -> Result<String> {
        self.execute(statement!(
            "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            name,
            fresh,
        ))
        .await?;
        let row = sqlx::query("SELECT value FROM settings WHERE name = $1")
            .bind(name)
            .fetch_one(&mut self.reader().await?)
            .await?;
        Ok(row.try_get("value")?)
    }

    /// Record a nonce as redeemed. `false`: it was redeemed before (here or on another replica).
    ///
    /// The insert does not wait for its flush ([`Store::execute_applied`]): on PostgreSQL it is
    /// committed and visible to every replica at once, which is what makes a nonce single-use,
    /// and the flush of the request's own durable commit carries it to the disk. Only the
    /// redemption of a read-only request can be lost to a server crash, and replaying a read
    /// changes nothing. This saves an `fsync` per ACME request.
    pub async fn redeem_nonce(&self, nonce: &str, expires: i64) -> Result<bool> {
        let changed = self
            .execute_applied(statement!(
                "INSERT INTO redeemed_nonces (nonce, expires) VALUES ($1, $2) ON CONFLICT (nonce) DO NOTHING",
                nonce,
                expires,
            ))
            .await?;
        Ok(changed == 1)
    }

    /// Account `id`, read in the same statement that redeems `nonce` (see
    /// [`Store::redeem_nonce`]): on PostgreSQL one round trip where a request signed with a
    /// `kid` made two, three with the resource it names (`prefetch`, see [`Prefetch`]).
    /// Returns the account, if any, whether this was the nonce's first redemption, and the
    /// resource as read. The nonce is redeemed whatever comes of the request's signature check:
    /// only whoever was given the nonce (inside TLS) can present it, so a forged request can
    /// only use up a nonce of its own sender's.
    pub async fn account_redeeming_nonce(
        &self,
        id: &str,
        nonce: &str,
        expires: i64,
        prefetch: Prefetch<'_>,
    ) -> Result<(Option<AccountRow>, bool, Prefetched)> {
        let Writes::Server { unflushed, .. } = &self.writes else {
            // SQLite has no insert inside a `WITH`: two steps, and the resource is read where
            // it is used (from memory, mostly).
            let account = self.account(id).await?;
            let first = self.redeem_nonce(nonce, expires).await?;
            return Ok((account, first, Prefetched::Nothing));
        };
        let mut query = sqlx::query(prefetch::statement(prefetch))
            .bind(nonce)
            .bind(expires)
            .bind(id);
        if let Some(key) = prefetch::key(prefetch) {
            query = query.bind(key);
        }
        let mut conn = unflushed.get().await?;
        let rows = query.fetch_all(&mut conn).await?;
        Ok(prefetch::decode(prefetch, &rows)?)
    }

    pub async fn prune_nonces(&self, now: i64) -> Result<u64> {
        self.execute(statement!(
            "DELETE FROM redeemed_nonces WHERE expires < $1",
            now
        ))
        .await
    }
}

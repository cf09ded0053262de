//! Orders (RFC 8555 §7.4): written with their new authorizations, read (from memory while
//! fresh, `fast::fresh`), newOrder's reuse lookups and rate-limit counts, a finalize's claim
//! (`pending → processing`, exactly once), and how an order settles: failed, valid, or taken
//! over by recovery after a crash.

use sqlx::Row;

use super::authorizations::authz_statements;
use super::group_commit::After;
use super::rows::{
    authz_select, joined_authz_from, order_cols, order_from, order_with_authzs_from,
    validated_authz_from,
};
use super::sql::statement;
use super::{AuthzRow, NewAuthz, OrderRow, Reads, Result, Statement, Store};

/// What a new order links to: an authorization to create, or an existing one to reuse.
pub enum OrderAuthz {
    New(NewAuthz),
    Reuse(String),
}

/// A finalize's claim of its order: `pending → processing`, with what recovery needs to issue
/// again (the profile as it stood, the CSR).
#[derive(Debug, Clone, Copy)]
pub struct Claim<'a> {
    pub order_id: &'a str,
    /// The profile, as JSON.
    pub profile_snapshot: &'a str,
    pub csr: &'a [u8],
    pub now: i64,
}

#[cfg(test)]
impl Claim<'_> {
    /// A claim at `now` with an empty profile and the CSR `csr`, for unit tests.
    pub fn for_tests(order_id: &str, now: i64) -> Claim<'_> {
        Claim {
            order_id,
            profile_snapshot: "{}",
            csr: b"csr",
            now,
        }
    }
}

impl Claim<'_> {
    pub(super) fn statement(&self) -> Statement {
        statement!(
            "UPDATE orders SET status = 'processing', processing_since = $1, profile = $2, csr = $3 WHERE id = $4 AND status = 'pending'",
            self.now,
            self.profile_snapshot,
            self.csr,
            self.order_id,
        )
    }
}

/// The orders a newOrder could reuse ([`Reads::reuse_candidates`]).
pub struct OrderReuse<'a> {
    pub account_id: &'a str,
    pub directory: &'a str,
    /// The order's identifiers as stored (`wire::identifiers_json`).
    pub identifiers: &'a str,
    pub profile_name: &'a str,
    pub at: i64,
}

/// The authorization a newOrder could reuse for one identifier.
pub struct AuthzReuse<'a> {
    pub account_id: &'a str,
    pub id_type: &'a str,
    /// The name without `*.`, for a wildcard.
    pub id_value: &'a str,
    pub wildcard: bool,
    pub valid_until: i64,
}

// The queries of every newOrder and of every recovery round; `plans_of_frequent_queries_use_indexes`
// checks that none of them reads a whole table.
/// newOrder's two reuse lookups in one round trip: up to three unexpired pending orders of the
/// account (`$1`) for exactly these identifiers (`$3`) and profile (`$4`) in this directory
/// (`$2`), newest first, with the order columns; and the account's newest valid authorization
/// for one identifier (`$6`–`$8`) valid past `$9`, with the `a_` columns of
/// [`joined_authz_from`]. Each row has the other's columns NULL.
pub(super) const REUSE_CANDIDATES: &str = concat!(
    "WITH reuse_orders AS (SELECT ",
    order_cols!(),
    " FROM orders WHERE account_id = $1 AND directory = $2 AND identifiers = $3 \
     AND profile_name = $4 AND status = 'pending' AND replaces IS NULL AND expires > $5 \
     ORDER BY created_at DESC LIMIT 3), \
     reuse_authz AS (SELECT a.id AS a_id, a.account_id AS a_account_id, a.id_type AS a_id_type, \
     a.id_value AS a_id_value, a.wildcard AS a_wildcard, a.status AS a_status, \
     a.expires AS a_expires, v.kind AS valid_kind, v.validated AS valid_at \
     FROM authorizations a LEFT JOIN challenges v ON v.id = (SELECT c.id FROM challenges c \
     WHERE c.authz_id = a.id AND c.status = 'valid' ORDER BY c.validated LIMIT 1) \
     WHERE a.account_id = $1 AND a.id_type = $6 AND a.id_value = $7 AND a.wildcard = $8 \
     AND a.status = 'valid' AND a.expires > $9 ORDER BY a.expires DESC LIMIT 1) \
     SELECT ",
    order_cols!(),
    ", NULL AS a_id, NULL AS a_account_id, NULL AS a_id_type, NULL AS a_id_value, \
     NULL AS a_wildcard, NULL AS a_status, NULL AS a_expires, NULL AS valid_kind, \
     NULL AS valid_at FROM reuse_orders UNION ALL SELECT NULL, NULL, NULL, NULL, NULL, NULL, \
     NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, a_id, a_account_id, a_id_type, \
     a_id_value, a_wildcard, a_status, a_expires, valid_kind, valid_at FROM reuse_authz"
);
pub(super) const REUSABLE_AUTHZ: &str = concat!(
    authz_select!(),
    " WHERE a.account_id = $1 AND a.id_type = $2 AND a.id_value = $3 AND a.wildcard = $4 \
     AND a.status = 'valid' AND a.expires > $5 ORDER BY a.expires DESC LIMIT 1"
);
pub(super) const ORDER_REPLACING: &str =
    "SELECT id FROM orders WHERE replaces = $1 AND status <> 'invalid' LIMIT 1";
pub(super) const STALE_PROCESSING_ORDERS: &str = concat!(
    "SELECT ",
    order_cols!(),
    " FROM orders WHERE status = 'processing' AND processing_since < $1 AND directory = $2"
);
pub(super) const ORDERS_SINCE: &str =
    "SELECT COUNT(*) AS n FROM orders WHERE account_id = $1 AND created_at > $2";
/// One order (`$1`) with its authorizations in order, a row per authorization (one row with
/// empty `a_` columns for an order without any).
pub(super) const ORDER_WITH_AUTHZS: &str =
    "SELECT o.id, o.account_id, o.directory, o.status, o.expires, o.identifiers, o.not_before, \
     o.not_after, o.error, o.profile_name, o.replaces, o.profile, o.certificate_serial, \
     o.processing_since, o.created_at, \
     a.id AS a_id, a.account_id AS a_account_id, a.id_type AS a_id_type, \
     a.id_value AS a_id_value, a.wildcard AS a_wildcard, a.status AS a_status, \
     a.expires AS a_expires, oa.position AS a_position, v.kind AS valid_kind, \
     v.validated AS valid_at \
     FROM orders o LEFT JOIN order_authorizations oa ON oa.order_id = o.id \
     LEFT JOIN authorizations a ON a.id = oa.authz_id \
     LEFT JOIN challenges v ON v.id = (SELECT c.id FROM challenges c \
     WHERE c.authz_id = a.id AND c.status = 'valid' ORDER BY c.validated LIMIT 1) \
     WHERE o.id = $1 ORDER BY oa.position";

impl Reads {
    pub async fn order(&self, id: &str) -> Result<Option<OrderRow>> {
        if let Some(order) = self.fresh.as_ref().and_then(|f| f.order(id)) {
            return Ok(Some(order));
        }
        const SQL: &str = concat!("SELECT ", order_cols!(), " FROM orders WHERE id = $1");
        let row = sqlx::query(SQL)
            .bind(id)
            .fetch_optional(&mut self.reader().await?)
            .await?;
        Ok(row.map(|r| order_from(&r)).transpose()?)
    }

    /// An order and its authorizations (in the order's order), in one round trip.
    pub async fn order_with_authzs(&self, id: &str) -> Result<Option<(OrderRow, Vec<AuthzRow>)>> {
        if let Some(kept) = self.fresh.as_ref().and_then(|f| f.order_with_authzs(id)) {
            return Ok(Some(kept));
        }
        let rows = sqlx::query(ORDER_WITH_AUTHZS)
            .bind(id)
            .fetch_all(&mut self.reader().await?)
            .await?;
        Ok(order_with_authzs_from(&rows)?)
    }

    /// An account's orders, newest first, `limit` from `offset`.
    pub async fn orders_of_account(
        &self,
        account_id: &str,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<OrderRow>> {
        const SQL: &str = concat!(
            "SELECT ",
            order_cols!(),
            " FROM orders WHERE account_id = $1 ORDER BY created_at DESC, id LIMIT $2 OFFSET $3"
        );
        let rows = sqlx::query(SQL)
            .bind(account_id)
            .bind(limit)
            .bind(offset)
            .fetch_all(&mut self.reader().await?)
            .await?;
        Ok(rows
            .iter()
            .map(order_from)
            .collect::<std::result::Result<_, _>>()?)
    }

    pub async fn authzs_of_order(&self, order_id: &str) -> Result<Vec<AuthzRow>> {
        const SQL: &str = concat!(
            authz_select!(),
            " JOIN order_authorizations oa ON oa.authz_id = a.id WHERE oa.order_id = $1 ORDER BY oa.position"
        );
        let rows = sqlx::query(SQL)
            .bind(order_id)
            .fetch_all(&mut self.reader().await?)
            .await?;
        Ok(rows
            .iter()
            .map(validated_authz_from)
            .collect::<std::result::Result<_, _>>()?)
    }

    /// Orders an account created since `since`.
    pub async fn orders_since(&self, account_id: &str, since: i64) -> Result<i64> {
        let row = sqlx::query(ORDERS_SINCE)
            .bind(account_id)
            .bind(since)
            .fetch_one(&mut self.reader().await?)
            .await?;
        Ok(row.try_get("n")?)
    }

    /// Seconds until the oldest order in the window leaves it.
    pub async fn retry_after_orders(&self, account_id: &str, since: i64) -> Result<u64> {
        let row = sqlx::query(
            "SELECT MIN(created_at) AS t FROM orders WHERE account_id = $1 AND created_at > $2",
        )
        .bind(account_id)
        .bind(since)
        .fetch_one(&mut self.reader().await?)
        .await?;
        let oldest: Option<i64> = row.try_get("t")?;
        Ok(oldest.map_or(60, |t| u64::try_from(t - since).unwrap_or(60).max(1)))
    }

    /// What a newOrder could reuse, in one round trip: unexpired, not yet finalized orders of
    /// an account for exactly these identifiers and profile, newest first (valid an hour past
    /// `at` at least); and a valid authorization of the same account for one identifier, as
    /// [`Reads::reusable_authz`] finds it.
    pub async fn reuse_candidates(
        &self,
        orders: &OrderReuse<'_>,
        authz: &AuthzReuse<'_>,
    ) -> Result<(Vec<OrderRow>, Option<AuthzRow>)> {
        // One account for both lookups: the statement binds it once.
        debug_assert_eq!(orders.account_id, authz.account_id);
        let rows = sqlx::query(REUSE_CANDIDATES)
            .bind(orders.account_id)
            .bind(orders.directory)
            .bind(orders.identifiers)
            .bind(orders.profile_name)
            .bind(orders.at + 3600)
            .bind(authz.id_type)
            .bind(authz.id_value)
            .bind(i64::from(authz.wildcard))
            .bind(authz.valid_until)
            .fetch_all(&mut self.reader().await?)
            .await?;
        let (mut found_orders, mut found_authz) = (Vec::new(), None);
        for row in &rows {
            if row.try_get::<Option<String>, _>("id")?.is_some() {
                found_orders.push(order_from(row)?);
            } else {
                found_authz = Some(joined_authz_from(row)?);
            }
        }
        // A union's rows come in no promised order.
        found_orders.sort_by_key(|order| std::cmp::Reverse(order.created_at));
        Ok((found_orders, found_authz))
    }

    /// A valid authorization of this account for the identifier, unexpired at `valid_until`, to
    /// reuse.
    pub async fn reusable_authz(&self, authz: &AuthzReuse<'_>) -> Result<Option<AuthzRow>> {
        let row = sqlx::query(REUSABLE_AUTHZ)
            .bind(authz.account_id)
            .bind(authz.id_type)
            .bind(authz.id_value)
            .bind(i64::from(authz.wildcard))
            .bind(authz.valid_until)
            .fetch_optional(&mut self.reader().await?)
            .await?;
        Ok(row.map(|r| validated_authz_from(&r)).transpose()?)
    }

    /// An order (not invalid) that already replaces the certificate `cert_id` (RFC 9773).
    pub async fn order_replacing(&self, cert_id: &str) -> Result<Option<String>> {
        let row = sqlx::query(ORDER_REPLACING)
            .bind(cert_id)
            .fetch_optional(&mut self.reader().await?)
            .await?;
        Ok(row.map(|r| r.try_get("id")).transpose()?)
    }

    pub async fn order_csr(&self, order_id: &str) -> Result<Option<Vec<u8>>> {
        let row = sqlx::query("SELECT csr FROM orders WHERE id = $1")
            .bind(order_id)
            .fetch_optional(&mut self.reader().await?)
            .await?;
        Ok(row
            .map(|r| r.try_get::<Option<Vec<u8>>, _>("csr"))
            .transpose()?
            .flatten())
    }

    /// Orders `processing` since before `cutoff` (a crash or a stalled backend).
    pub async fn stale_processing_orders(
        &self,
        directory: &str,
        cutoff: i64,
    ) -> Result<Vec<OrderRow>> {
        let rows = sqlx::query(STALE_PROCESSING_ORDERS)
            .bind(cutoff)
            .bind(directory)
            .fetch_all(&mut self.reader().await?)
            .await?;
        Ok(rows
            .iter()
            .map(order_from)
            .collect::<std::result::Result<_, _>>()?)
    }
}

impl Store {
    /// Write an order with its new authorizations and challenges in one transaction.
    pub async fn insert_order(&self, order: &OrderRow, authzs: &[OrderAuthz]) -> Result<()> {
        let mut authz_ids = Vec::with_capacity(authzs.len());
        let mut new_authzs = Vec::new();
        let mut statements = vec![statement!(
            "INSERT INTO orders (id, account_id, status, expires, identifiers, not_before, not_after, profile_name, replaces, created_at, directory) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            &order.id,
            &order.account_id,
            order.status.as_str(),
            order.expires,
            &order.identifiers,
            order.not_before,
            order.not_after,
            &order.profile_name,
            &order.replaces,
            order.created_at,
            &order.directory,
        )];
        for (position, authz) in authzs.iter().enumerate() {
            let authz_id = match authz {
                OrderAuthz::Reuse(id) => id,
                OrderAuthz::New(a) => {
                    statements.extend(authz_statements(&order.account_id, a, order.created_at));
                    new_authzs.push((a.row(&order.account_id), a.challenge_rows()));
                    &a.id
                }
            };
            authz_ids.push(authz_id.clone());
            statements.push(statement!(
                "INSERT INTO order_authorizations (order_id, authz_id, position) VALUES ($1, $2, $3)",
                &order.id,
                authz_id,
                position as i64,
            ));
        }
        // As the insert wrote it: the columns it leaves out are empty.
        let order = OrderRow {
            error: None,
            profile: None,
            certificate_serial: None,
            processing_since: None,
            ..order.clone()
        };
        let after = self.after(move |fresh, committed: Option<&Vec<u64>>| {
            if committed.is_some() {
                fresh.put_order(order.clone(), authz_ids.clone(), new_authzs.clone());
            }
        });
        self.execute_all_then(statements, after).await?;
        Ok(())
    }

    /// ready → processing, exactly once: the finalize that gets `true` issues; all others don't.
    /// For a backend that does not hand its to-be-signed certificate to the store (an upstream
    /// CA); the others claim with that record, in one write ([`Store::claim_with_tbs`]).
    /// Answered before it is durable ([`Store::execute_applied`]): the issuance's next durable
    /// write carries it to the disk; a crash before that leaves the order `ready` to be
    /// finalized again, and whatever the upstream signed meanwhile is never served.
    pub async fn begin_processing(&self, claim: &Claim<'_>) -> Result<bool> {
        let changed = self
            .execute_applied_then(claim.statement(), self.claim_changes(claim.order_id))
            .await?;
        Ok(changed == 1)
    }

    /// What memory does once an order is claimed: past this, it would only hold the order's
    /// rows for nobody.
    pub(super) fn claim_changes<T: 'static>(&self, order_id: &str) -> Option<After<T>> {
        let id = order_id.to_owned();
        self.after(move |fresh, _: Option<&T>| fresh.forget_order_and_authzs(&id))
    }

    /// An order whose issuance failed: `invalid` with `error_json`, and whatever serial its
    /// issuance left at the `tbs` step abandoned with it, even if the step that should have
    /// abandoned it could not reach the database. Retried when the connection is lost: the
    /// failure is known only to the finalize that met it.
    pub async fn fail_order(&self, order_id: &str, error_json: &str) -> Result<()> {
        self.execute_retrying(
            "recording a failed issuance",
            self.order_changes(order_id),
            vec![
                statement!(
                    "UPDATE orders SET status = 'invalid', error = $1 WHERE id = $2 AND status IN ('pending', 'processing')",
                    error_json,
                    order_id,
                ),
                statement!(
                    "UPDATE certificates SET status = 'abandoned' WHERE order_id = $1 AND status = 'tbs'",
                    order_id
                ),
            ],
        )
        .await?;
        Ok(())
    }

    /// Drops order `id` from memory once a write that may change it has ended.
    pub(super) fn order_changes<T: 'static>(&self, id: &str) -> Option<After<T>> {
        let id = id.to_owned();
        self.after(move |fresh, _| fresh.forget_order(&id))
    }

    /// Claim a stale `processing` order for recovery, once across replicas.
    pub async fn claim_stale_order(
        &self,
        order_id: &str,
        seen_since: i64,
        now: i64,
    ) -> Result<bool> {
        let changed = self
            .execute_then(
                statement!(
                    "UPDATE orders SET processing_since = $1 WHERE id = $2 AND status = 'processing' AND processing_since = $3",
                    now,
                    order_id,
                    seen_since,
                ),
                self.order_changes(order_id),
            )
            .await?;
        Ok(changed == 1)
    }

    /// The order's certificate exists: make the order say so (recovery after a crash).
    pub async fn mark_order_valid(&self, order_id: &str, serial: &str) -> Result<()> {
        self.execute_then(
            statement!(
                "UPDATE orders SET status = 'valid', certificate_serial = $1 WHERE id = $2 AND status = 'processing'",
                serial,
                order_id,
            ),
            self.order_changes(order_id),
        )
        .await?;
        Ok(())
    }
}

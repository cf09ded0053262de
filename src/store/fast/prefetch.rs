//! The resource a request names, read with its nonce's redemption (PostgreSQL).
//!
//! With several replicas, a request signed with a `kid` redeems its nonce and reads its signer's
//! account in one statement ([`Store::account_redeeming_nonce`]). Most of these requests then
//! read the one row their URL names — an order with its authorizations, an authorization with its
//! challenges, a challenge with its authorization, a certificate — and that read joins the same
//! statement: one round trip where there were two, four of the seventeen an issuance made.
//!
//! The resource is read before the request's signature is checked and handed to its handler only
//! after; a forged request reads a row that nobody sees. It is read in the account's snapshot, a
//! few milliseconds before the handler would have read it, which changes nothing a handler
//! relies on: every write that depends on a row's state checks that state in its own statement
//! (`… WHERE status = 'pending'`), and a handler that writes reads again afterwards.
//!
//! [`Store::account_redeeming_nonce`]: crate::store::Store::account_redeeming_nonce

use std::sync::LazyLock;

use sqlx::any::AnyRow;
use sqlx::Row;

use crate::store::authorizations::{AUTHZ_WITH_CHALLENGES, CHALLENGE_WITH_AUTHZ};
use crate::store::certificates::CERTIFICATE;
use crate::store::orders::ORDER_WITH_AUTHZS;
use crate::store::rows::{
    account_columns, authz_with_challenges_from, certificate_from, challenge_with_authz_from,
    order_with_authzs_from,
};
use crate::store::sql::present;
use crate::store::{AccountRow, AuthzRow, CertificateRow, ChallengeRow, OrderRow};

/// What a request will read once it is authenticated, named by its URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefetch<'a> {
    Nothing,
    /// `order/{id}` and `order/{id}/finalize`.
    Order(&'a str),
    /// `authz/{id}`.
    Authz(&'a str),
    /// `chall/{id}`.
    Challenge(&'a str),
    /// `cert/{serial}` and its alternate chains.
    Certificate(&'a str),
}

/// A resource read with the nonce, each with the key it was read by, and `None` inside when no
/// such row exists. A handler takes it once, by its kind and key; a second read goes to the
/// store.
#[derive(Debug, Default)]
pub enum Prefetched {
    #[default]
    Nothing,
    Order(String, Option<(OrderRow, Vec<AuthzRow>)>),
    Authz(String, Option<(AuthzRow, Vec<ChallengeRow>)>),
    Challenge(String, Option<(ChallengeRow, AuthzRow)>),
    Certificate(String, Option<CertificateRow>),
}

type Found<T> = Option<T>;

/// Takes the resource out if it is of `$variant` and was read for `$key`; leaves it otherwise.
macro_rules! take {
    ($prefetched:ident, $variant:ident, $key:expr) => {{
        if !matches!($prefetched, Prefetched::$variant(read, _) if read == $key) {
            return None;
        }
        match std::mem::take($prefetched) {
            Prefetched::$variant(_, found) => Some(found),
            _ => None,
        }
    }};
}

impl Prefetched {
    pub fn take_order(&mut self, id: &str) -> Option<Found<(OrderRow, Vec<AuthzRow>)>> {
        take!(self, Order, id)
    }

    pub fn take_authz(&mut self, id: &str) -> Option<Found<(AuthzRow, Vec<ChallengeRow>)>> {
        take!(self, Authz, id)
    }

    pub fn take_challenge(&mut self, id: &str) -> Option<Found<(ChallengeRow, AuthzRow)>> {
        take!(self, Challenge, id)
    }

    pub fn take_certificate(&mut self, serial: &str) -> Option<Found<CertificateRow>> {
        take!(self, Certificate, serial)
    }
}

/// The statement for `prefetch`: `$1` the nonce, `$2` its expiry, `$3` the account, `$4` the
/// resource's key. One row at least (the nonce's count and the account, `NULL`s when there is
/// none), one per row of the resource otherwise, in the order its own read gives them.
pub(in crate::store) fn statement(prefetch: Prefetch<'_>) -> &'static str {
    static NOTHING: LazyLock<String> = LazyLock::new(|| compose(None));
    static ORDER: LazyLock<String> =
        LazyLock::new(|| compose(Some((ORDER_WITH_AUTHZS, " ORDER BY r.a_position"))));
    static AUTHZ: LazyLock<String> =
        LazyLock::new(|| compose(Some((AUTHZ_WITH_CHALLENGES, " ORDER BY r.c_kind"))));
    static CHALLENGE: LazyLock<String> =
        LazyLock::new(|| compose(Some((CHALLENGE_WITH_AUTHZ, ""))));
    static CERT: LazyLock<String> = LazyLock::new(|| compose(Some((CERTIFICATE, ""))));
    match prefetch {
        Prefetch::Nothing => &NOTHING,
        Prefetch::Order(_) => &ORDER,
        Prefetch::Authz(_) => &AUTHZ,
        Prefetch::Challenge(_) => &CHALLENGE,
        Prefetch::Certificate(_) => &CERT,
    }
}

/// The resource's key, bound as `$4`.
pub(in crate::store) fn key<'a>(prefetch: Prefetch<'a>) -> Option<&'a str> {
    match prefetch {
        Prefetch::Nothing => None,
        Prefetch::Order(k)
        | Prefetch::Authz(k)
        | Prefetch::Challenge(k)
        | Prefetch::Certificate(k) => Some(k),
    }
}

/// `read` is one of the store's reads of a resource by its key, `$1`; it becomes `$4` here.
fn compose(read: Option<(&str, &str)>) -> String {
    let (join, order_by) = match read {
        Some((sql, order_by)) => (
            format!(" LEFT JOIN ({}) AS r ON true", sql.replace("$1", "$4")),
            order_by,
        ),
        None => (String::new(), ""),
    };
    format!(
        "WITH redeemed AS (INSERT INTO redeemed_nonces (nonce, expires) VALUES ($1, $2) \
         ON CONFLICT (nonce) DO NOTHING RETURNING 1) \
         SELECT (SELECT COUNT(*) FROM redeemed) AS nonce_first, acct.id AS acct_id, \
         acct.directory AS acct_directory, acct.thumbprint AS acct_thumbprint, acct.jwk AS acct_jwk, acct.status AS acct_status, \
         acct.contact AS acct_contact, acct.eab_kid AS acct_eab_kid, \
         acct.created_at AS acct_created_at{} \
         FROM (SELECT 1) AS one LEFT JOIN accounts acct ON acct.id = $3{join}{order_by}",
        if read.is_some() { ", r.*" } else { "" }
    )
}

/// The account, whether this was the nonce's first redemption, and the resource.
pub(in crate::store) fn decode(
    prefetch: Prefetch<'_>,
    rows: &[AnyRow],
) -> Result<(Option<AccountRow>, bool, Prefetched), sqlx::Error> {
    let first = rows.first().ok_or(sqlx::Error::RowNotFound)?;
    let redeemed_first = first.try_get::<i64, _>("nonce_first")? == 1;
    let account = match first.try_get::<Option<String>, _>("acct_id")? {
        Some(_) => Some(account_columns(first, "acct_")?),
        None => None,
    };
    let prefetched = match prefetch {
        Prefetch::Nothing => Prefetched::Nothing,
        Prefetch::Order(id) => Prefetched::Order(id.into(), order_with_authzs_from(rows)?),
        Prefetch::Authz(id) => Prefetched::Authz(id.into(), authz_with_challenges_from(rows)?),
        Prefetch::Challenge(id) => Prefetched::Challenge(
            id.into(),
            present(first, "c_id")?
                .then(|| challenge_with_authz_from(first))
                .transpose()?,
        ),
        Prefetch::Certificate(serial) => Prefetched::Certificate(
            serial.into(),
            present(first, "serial")?
                .then(|| certificate_from(first))
                .transpose()?,
        ),
    };
    Ok((account, redeemed_first, prefetched))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    /// Each read it embeds names its key `$1` only, so that renaming it `$4` is exact.
    #[test]
    fn the_embedded_reads_have_one_parameter() {
        for read in [
            ORDER_WITH_AUTHZS,
            AUTHZ_WITH_CHALLENGES,
            CHALLENGE_WITH_AUTHZ,
            CERTIFICATE,
        ] {
            assert_eq!(
                read.matches('$').count(),
                read.matches("$1").count(),
                "{read}"
            );
        }
        for p in [
            Prefetch::Order("o"),
            Prefetch::Authz("a"),
            Prefetch::Challenge("c"),
            Prefetch::Certificate("s"),
        ] {
            let sql = statement(p);
            assert!(sql.contains("$4") && sql.contains("r.*"), "{sql}");
            assert!(key(p).is_some());
        }
        assert!(!statement(Prefetch::Nothing).contains("$4"));
    }

    /// A handler gets what was read for its kind and key, once.
    #[test]
    fn a_prefetched_row_is_taken_once_and_only_by_its_kind_and_key() {
        let mut p = Prefetched::Certificate("01".into(), None);
        assert!(p.take_order("01").is_none());
        assert!(p.take_certificate("02").is_none());
        assert!(matches!(p, Prefetched::Certificate(..)), "{p:?}");
        assert_eq!(
            p.take_certificate("01").map(|found| found.is_none()),
            Some(true)
        );
        assert!(matches!(p, Prefetched::Nothing), "{p:?}");
        assert!(p.take_certificate("01").is_none());
    }
}

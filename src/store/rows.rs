//! The rows the store reads, the columns each is read from, and the readers of joined rows
//! (an order with its authorizations, an authorization with its challenges), shared by the
//! aggregates' queries and the fast paths (`fast`).

use sqlx::any::AnyRow;
use sqlx::Row;

#[cfg(test)]
use super::now;
use super::sql::head_and_items;
use super::status::StoredStatus;
use super::{AccountStatus, AuthzStatus, CertificateStatus, ChallengeStatus, OrderStatus};

#[derive(Debug, Clone)]
pub struct AccountRow {
    pub id: String,
    /// The ACME directory the account was made in (`default` or a configured name): the only
    /// one it is served through.
    pub directory: String,
    pub thumbprint: String,
    pub jwk: String,
    pub status: AccountStatus,
    pub contact: String,
    /// The external account binding key the account was created with, if any.
    pub eab_kid: Option<String>,
    pub created_at: i64,
}

#[derive(Debug, Clone)]
pub struct OrderRow {
    pub id: String,
    pub account_id: String,
    /// The ACME directory the order was placed in (`default` or a configured name).
    pub directory: String,
    pub status: OrderStatus,
    pub expires: i64,
    pub identifiers: String,
    pub not_before: Option<i64>,
    pub not_after: Option<i64>,
    pub error: Option<String>,
    /// The profile chosen at newOrder (its name).
    pub profile_name: Option<String>,
    /// RFC 9773 `replaces`: the ARI certID of the certificate this order replaces.
    pub replaces: Option<String>,
    /// The profile snapshot taken at finalize (JSON).
    pub profile: Option<String>,
    pub certificate_serial: Option<String>,
    pub processing_since: Option<i64>,
    pub created_at: i64,
}

#[cfg(test)]
impl AccountRow {
    /// A valid account with no contact, its key's thumbprint `thumbprint-<id>`, for unit tests.
    pub fn for_tests(id: &str) -> AccountRow {
        AccountRow {
            id: id.into(),
            directory: "default".into(),
            thumbprint: format!("thumbprint-{id}"),
            jwk: "{}".into(),
            status: AccountStatus::Valid,
            contact: "[]".into(),
            eab_kid: None,
            created_at: now(),
        }
    }
}

#[cfg(test)]
impl OrderRow {
    /// A bare order (no identifiers, no profile) for unit tests.
    pub fn for_tests(id: &str, account_id: &str, status: OrderStatus, expires: i64) -> OrderRow {
        OrderRow {
            id: id.into(),
            account_id: account_id.into(),
            directory: "default".into(),
            status,
            expires,
            identifiers: "[]".into(),
            not_before: None,
            not_after: None,
            error: None,
            profile_name: None,
            replaces: None,
            profile: None,
            certificate_serial: None,
            processing_since: None,
            created_at: 0,
        }
    }
}

#[derive(Debug, Clone)]
pub struct AuthzRow {
    pub id: String,
    pub account_id: String,
    pub id_type: String,
    pub id_value: String,
    pub wildcard: bool,
    pub status: AuthzStatus,
    pub expires: i64,
    /// The challenge that validated it: its type and when (CAA is rechecked from these).
    pub validation: Option<(String, i64)>,
}

#[derive(Debug, Clone)]
pub struct ChallengeRow {
    pub id: String,
    pub authz_id: String,
    pub kind: String,
    pub token: String,
    pub status: ChallengeStatus,
    pub validated: Option<i64>,
    pub error: Option<String>,
}

#[derive(Debug, Clone)]
pub struct CertificateRow {
    pub serial: String,
    pub issuer: String,
    pub order_id: Option<String>,
    pub account_id: Option<String>,
    pub status: CertificateStatus,
    pub der: Option<Vec<u8>>,
    pub chain_pem: Option<String>,
    pub not_after: i64,
    pub revoked_at: Option<i64>,
    pub revocation_reason: Option<i64>,
    /// RFC 5280 §5.3.2, when the revocation named one.
    pub invalidity_date: Option<i64>,
    /// The CRL shard baked into the certificate's distribution point; `None`: unsharded.
    pub crl_shard: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct RevokedRow {
    pub serial: String,
    pub revoked_at: i64,
    pub reason: Option<i64>,
    pub invalidity_date: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct CrlRow {
    pub issuer: String,
    /// [`FULL_CRL`] for the issuer's complete CRL, else the shard index.
    pub shard: i64,
    pub number: i64,
    pub generated_at: i64,
    pub this_update: i64,
    pub next_update: i64,
    pub der: Vec<u8>,
}

/// What is known of a stored CRL without its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrlMeta {
    pub number: i64,
    pub generated_at: i64,
    pub next_update: i64,
}

impl CrlRow {
    pub fn meta(&self) -> CrlMeta {
        CrlMeta {
            number: self.number,
            generated_at: self.generated_at,
            next_update: self.next_update,
        }
    }
}

/// The `crls.shard` of an issuer's complete (unsharded) CRL.
pub const FULL_CRL: i64 = -1;

/// An external account binding key as a newAccount checks it (RFC 8555 §7.3.4).
#[derive(Debug, Clone)]
pub struct SealedEabKey {
    /// PEM of the KEK-sealed HMAC key.
    pub sealed_key: String,
    /// The ACME directory the key is for.
    pub directory: String,
    /// The account created with it, once one was.
    pub bound_account: Option<String>,
}

/// An external account binding key as an operator lists it: never the key itself.
#[derive(Debug, Clone)]
pub struct EabKeyRow {
    pub kid: String,
    pub directory: String,
    pub note: String,
    pub created_at: i64,
    pub bound_account: Option<String>,
}

/// A delegated OCSP responder certificate and its sealed key.
#[derive(Debug, Clone)]
pub struct OcspResponderRow {
    pub issuer: String,
    pub serial: String,
    pub cert_der: Vec<u8>,
    /// PEM of the KEK-sealed PKCS#8 key.
    pub sealed_key: String,
    pub not_before: i64,
    pub not_after: i64,
}

/// An order's columns; a macro so that queries can `concat!` it.
macro_rules! order_cols {
    () => {
        "id, account_id, directory, status, expires, identifiers, not_before, not_after, error, \
         profile_name, replaces, profile, certificate_serial, processing_since, created_at"
    };
}
pub(super) use order_cols;

/// Authorizations (`a`), each with the type and time of the challenge that validated it; a
/// macro so that queries can `concat!` their conditions to it.
macro_rules! authz_select {
    () => {
        "SELECT a.id, a.account_id, a.id_type, a.id_value, a.wildcard, a.status, a.expires, \
         v.kind AS valid_kind, v.validated AS valid_at FROM authorizations a \
         LEFT JOIN challenges v ON v.id = (SELECT c.id FROM challenges c \
         WHERE c.authz_id = a.id AND c.status = 'valid' ORDER BY c.validated LIMIT 1)"
    };
}
pub(super) use authz_select;

/// An account's columns; a macro so that queries can `concat!` it.
macro_rules! account_cols {
    () => {
        "id, directory, thumbprint, jwk, status, contact, eab_kid, created_at"
    };
}
pub(super) use account_cols;

/// A certificate's columns; a macro so that queries can `concat!` it.
macro_rules! cert_cols {
    () => {
        "serial, issuer, order_id, account_id, status, der, chain_pem, not_after, revoked_at, \
         revocation_reason, invalidity_date, crl_shard"
    };
}
pub(super) use cert_cols;

/// A status column: a text no code writes (unknown, or a status only ever derived) is a
/// decode error naming the column and the text.
fn status<S: StoredStatus>(r: &AnyRow, column: &str) -> std::result::Result<S, sqlx::Error> {
    let text: &str = r.try_get(column)?;
    S::from_stored(text).map_err(|e| sqlx::Error::ColumnDecode {
        index: format!("{column:?}"),
        source: Box::new(e),
    })
}

pub(super) fn order_from(r: &AnyRow) -> std::result::Result<OrderRow, sqlx::Error> {
    Ok(OrderRow {
        id: r.try_get("id")?,
        account_id: r.try_get("account_id")?,
        directory: r.try_get("directory")?,
        status: status(r, "status")?,
        expires: r.try_get("expires")?,
        identifiers: r.try_get("identifiers")?,
        not_before: r.try_get("not_before")?,
        not_after: r.try_get("not_after")?,
        error: r.try_get("error")?,
        profile_name: r.try_get("profile_name")?,
        replaces: r.try_get("replaces")?,
        profile: r.try_get("profile")?,
        certificate_serial: r.try_get("certificate_serial")?,
        processing_since: r.try_get("processing_since")?,
        created_at: r.try_get("created_at")?,
    })
}

/// An authorization from `authz_select!` (or, with `validation` left to the caller, from
/// [`AUTHZ_WITH_CHALLENGES`](super::authorizations::AUTHZ_WITH_CHALLENGES)).
pub(super) fn authz_from(r: &AnyRow) -> std::result::Result<AuthzRow, sqlx::Error> {
    Ok(AuthzRow {
        id: r.try_get("id")?,
        account_id: r.try_get("account_id")?,
        id_type: r.try_get("id_type")?,
        id_value: r.try_get("id_value")?,
        wildcard: r.try_get::<i64, _>("wildcard")? != 0,
        status: status(r, "status")?,
        expires: r.try_get("expires")?,
        validation: None,
    })
}

/// An authorization from `authz_select!`, with the challenge that validated it.
pub(super) fn validated_authz_from(r: &AnyRow) -> std::result::Result<AuthzRow, sqlx::Error> {
    let kind: Option<String> = r.try_get("valid_kind")?;
    let at: Option<i64> = r.try_get("valid_at")?;
    Ok(AuthzRow {
        validation: kind.map(|kind| (kind, at.unwrap_or(0))),
        ..authz_from(r)?
    })
}

/// An authorization from the `a_`-prefixed columns of
/// [`ORDER_WITH_AUTHZS`](super::orders::ORDER_WITH_AUTHZS).
pub(super) fn joined_authz_from(r: &AnyRow) -> std::result::Result<AuthzRow, sqlx::Error> {
    let kind: Option<String> = r.try_get("valid_kind")?;
    let at: Option<i64> = r.try_get("valid_at")?;
    Ok(AuthzRow {
        id: r.try_get("a_id")?,
        account_id: r.try_get("a_account_id")?,
        id_type: r.try_get("a_id_type")?,
        id_value: r.try_get("a_id_value")?,
        wildcard: r.try_get::<i64, _>("a_wildcard")? != 0,
        status: status(r, "a_status")?,
        expires: r.try_get("a_expires")?,
        validation: kind.map(|kind| (kind, at.unwrap_or(0))),
    })
}

/// A challenge from the `c_`-prefixed columns of a join with its authorization.
pub(super) fn joined_challenge_from(r: &AnyRow) -> std::result::Result<ChallengeRow, sqlx::Error> {
    Ok(ChallengeRow {
        id: r.try_get("c_id")?,
        authz_id: r.try_get("id")?,
        kind: r.try_get("c_kind")?,
        token: r.try_get("c_token")?,
        status: status(r, "c_status")?,
        validated: r.try_get("c_validated")?,
        error: r.try_get("c_error")?,
    })
}

/// The challenge that validated an authorization, as `authz_select!` would report it.
pub(super) fn validation_of(challenges: &[ChallengeRow]) -> Option<(String, i64)> {
    challenges
        .iter()
        .filter(|c| c.status == ChallengeStatus::Valid)
        .min_by_key(|c| c.validated.unwrap_or(0))
        .map(|c| (c.kind.clone(), c.validated.unwrap_or(0)))
}

pub(super) fn account_from(r: &AnyRow) -> std::result::Result<AccountRow, sqlx::Error> {
    account_columns(r, "")
}

/// An account from the columns named `prefix` and the account's own column names.
pub(super) fn account_columns(
    r: &AnyRow,
    prefix: &str,
) -> std::result::Result<AccountRow, sqlx::Error> {
    let column = |name: &str| format!("{prefix}{name}");
    Ok(AccountRow {
        id: r.try_get(column("id").as_str())?,
        directory: r.try_get(column("directory").as_str())?,
        thumbprint: r.try_get(column("thumbprint").as_str())?,
        jwk: r.try_get(column("jwk").as_str())?,
        status: status(r, &column("status"))?,
        contact: r.try_get(column("contact").as_str())?,
        eab_kid: r.try_get(column("eab_kid").as_str())?,
        created_at: r.try_get(column("created_at").as_str())?,
    })
}

pub(super) fn certificate_from(r: &AnyRow) -> std::result::Result<CertificateRow, sqlx::Error> {
    Ok(CertificateRow {
        serial: r.try_get("serial")?,
        issuer: r.try_get("issuer")?,
        order_id: r.try_get("order_id")?,
        account_id: r.try_get("account_id")?,
        status: status(r, "status")?,
        der: r.try_get("der")?,
        chain_pem: r.try_get("chain_pem")?,
        not_after: r.try_get("not_after")?,
        revoked_at: r.try_get("revoked_at")?,
        revocation_reason: r.try_get("revocation_reason")?,
        invalidity_date: r.try_get("invalidity_date")?,
        crl_shard: r.try_get("crl_shard")?,
    })
}

pub(super) fn crl_from(r: &AnyRow) -> std::result::Result<CrlRow, sqlx::Error> {
    Ok(CrlRow {
        issuer: r.try_get("issuer")?,
        shard: r.try_get("shard")?,
        number: r.try_get("number")?,
        generated_at: r.try_get("generated_at")?,
        this_update: r.try_get("this_update")?,
        next_update: r.try_get("next_update")?,
        der: r.try_get("der")?,
    })
}

/// The order and its authorizations from the rows of
/// [`ORDER_WITH_AUTHZS`](super::orders::ORDER_WITH_AUTHZS).
pub(super) fn order_with_authzs_from(
    rows: &[AnyRow],
) -> std::result::Result<Option<(OrderRow, Vec<AuthzRow>)>, sqlx::Error> {
    head_and_items(rows, ("id", order_from), ("a_id", joined_authz_from))
}

/// The authorization and its challenges from the rows of
/// [`AUTHZ_WITH_CHALLENGES`](super::authorizations::AUTHZ_WITH_CHALLENGES).
pub(super) fn authz_with_challenges_from(
    rows: &[AnyRow],
) -> std::result::Result<Option<(AuthzRow, Vec<ChallengeRow>)>, sqlx::Error> {
    let found = head_and_items(rows, ("id", authz_from), ("c_id", joined_challenge_from))?;
    Ok(found.map(|(mut authz, challenges)| {
        authz.validation = validation_of(&challenges);
        (authz, challenges)
    }))
}

/// The challenge and its authorization from a row of
/// [`CHALLENGE_WITH_AUTHZ`](super::authorizations::CHALLENGE_WITH_AUTHZ).
pub(super) fn challenge_with_authz_from(
    r: &AnyRow,
) -> std::result::Result<(ChallengeRow, AuthzRow), sqlx::Error> {
    Ok((joined_challenge_from(r)?, authz_from(r)?))
}

impl AuthzRow {
    /// The status with expiry applied (§7.1.6: pending and valid authorizations expire).
    pub fn status_at(&self, at: i64) -> AuthzStatus {
        match self.status {
            AuthzStatus::Pending | AuthzStatus::Valid if self.expires <= at => AuthzStatus::Expired,
            status => status,
        }
    }
}

impl OrderRow {
    /// The order's status as RFC 8555 §7.1.6 defines it, derived from its authorizations while
    /// it has not been finalized.
    pub fn status_at(&self, authzs: &[AuthzRow], at: i64) -> OrderStatus {
        match self.status {
            OrderStatus::Valid | OrderStatus::Processing | OrderStatus::Invalid => self.status,
            _ if self.expires <= at => OrderStatus::Invalid,
            OrderStatus::Pending | OrderStatus::Ready => {
                let is = |a: &AuthzRow, s: AuthzStatus| a.status_at(at) == s;
                if authzs
                    .iter()
                    .any(|a| !is(a, AuthzStatus::Valid) && !is(a, AuthzStatus::Pending))
                {
                    OrderStatus::Invalid
                } else if !authzs.is_empty() && authzs.iter().all(|a| is(a, AuthzStatus::Valid)) {
                    OrderStatus::Ready
                } else {
                    OrderStatus::Pending
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(status: OrderStatus, expires: i64) -> OrderRow {
        OrderRow::for_tests("o", "a", status, expires)
    }

    fn authz(status: AuthzStatus, expires: i64) -> AuthzRow {
        AuthzRow {
            id: "z".into(),
            account_id: "a".into(),
            id_type: "dns".into(),
            id_value: "a.test".into(),
            wildcard: false,
            status,
            expires,
            validation: None,
        }
    }

    #[test]
    fn authorizations_expire() {
        use AuthzStatus::*;
        assert_eq!(authz(Valid, 10).status_at(5), Valid);
        assert_eq!(authz(Valid, 10).status_at(10), Expired);
        assert_eq!(authz(Pending, 10).status_at(11), Expired);
        assert_eq!(authz(Invalid, 10).status_at(11), Invalid);
    }

    /// RFC 8555 §7.1.6: pending → ready → processing → valid, invalid on any failed,
    /// deactivated or expired authorization, or when the order itself expires.
    #[test]
    fn order_state_transitions() {
        use AuthzStatus::{Deactivated, Invalid, Pending, Valid};
        let at = 100;
        let pending = order(OrderStatus::Pending, 200);
        assert_eq!(
            pending.status_at(&[authz(Pending, 200)], at),
            OrderStatus::Pending
        );
        assert_eq!(
            pending.status_at(&[authz(Valid, 200), authz(Pending, 200)], at),
            OrderStatus::Pending
        );
        assert_eq!(
            pending.status_at(&[authz(Valid, 200), authz(Valid, 300)], at),
            OrderStatus::Ready
        );
        assert_eq!(
            pending.status_at(&[authz(Valid, 200), authz(Invalid, 200)], at),
            OrderStatus::Invalid
        );
        assert_eq!(
            pending.status_at(&[authz(Deactivated, 200)], at),
            OrderStatus::Invalid
        );
        assert_eq!(
            pending.status_at(&[authz(Valid, 50)], at),
            OrderStatus::Invalid,
            "expired authorization"
        );
        assert_eq!(
            order(OrderStatus::Pending, 50).status_at(&[authz(Valid, 200)], at),
            OrderStatus::Invalid,
            "expired order"
        );
        assert_eq!(pending.status_at(&[], at), OrderStatus::Pending);
        assert_eq!(
            order(OrderStatus::Processing, 200).status_at(&[authz(Valid, 200)], at),
            OrderStatus::Processing
        );
        assert_eq!(
            order(OrderStatus::Valid, 50).status_at(&[authz(Valid, 50)], at),
            OrderStatus::Valid,
            "valid stays valid"
        );
        assert_eq!(
            order(OrderStatus::Invalid, 200).status_at(&[authz(Valid, 200)], at),
            OrderStatus::Invalid
        );
    }
}

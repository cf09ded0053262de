//! Storage: sqlx `Any` connections to SQLite (embedded default) or PostgreSQL (replicas sharing
//! one database), with the same SQL on both except where PostgreSQL does in one statement what
//! SQLite does in a transaction (data-modifying `WITH`s: `Statement::combined`, the nonce
//! redeemed with the account and the request's resource read (`prefetch`), an issuance's last
//! step), on connections the store holds itself rather than sqlx's pool, which pings a
//! connection at every use (`connections`).
//! SQLite: read connections, one writer task that commits in groups (`group_commit`), and, as
//! this process is the file's only writer, accounts (`cache`) and fresh ACME rows (`fresh`) in
//! memory. PostgreSQL: reads and writes on the same connections, nothing kept in memory.
//!
//! Every state transition that must happen once is a conditional `UPDATE … WHERE status = …`
//! whose `rows_affected()` decides the winner; nothing is selected and then updated.

mod cache;
pub mod connections;
mod fresh;
#[cfg(test)]
mod fresh_tests;
mod group_commit;
mod prefetch;

use std::borrow::Cow;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyArguments, AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyConnection, AnyPool, ConnectOptions, Connection, Executor, Row};

use connections::{Conn, Connections, Kind};
pub use group_commit::Written;
use group_commit::{After, GroupCommit, JobFuture};
pub use prefetch::{Prefetch, Prefetched};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The order left `processing` while its certificate was being signed (another issuance
    /// for it completed first, or it failed): this certificate is not stored as issued.
    #[error("order {0} is no longer processing")]
    OrderSettled(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

impl StoreError {
    /// A UNIQUE constraint refused the write (the row exists already).
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, StoreError::Db(sqlx::Error::Database(e)) if e.is_unique_violation())
    }
}

/// Tries of [`Store::execute_retrying`] when the connection is lost (250 ms, doubling, between).
const LOST_CONNECTION_ATTEMPTS: u32 = 4;

/// The database went away under a statement (a restart, a cut connection), as opposed to
/// refusing it: worth another try on a fresh connection.
fn connection_lost(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut => true,
        // SQLSTATE class 08 (connection exception), 57P01-03 (shutdown, cannot connect now).
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| code.starts_with("08") || code.starts_with("57P")),
        _ => false,
    }
}

pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub struct Store {
    /// Migrations (and tests' own queries).
    pool: AnyPool,
    /// Where reads go (see `connections`): SQLite's read connections; on PostgreSQL the
    /// connections of reads and durable writes.
    reads: Arc<Connections>,
    /// Where writes go.
    writes: Writes,
    /// Accounts in memory, when this process is the database's only writer (SQLite).
    accounts: Option<Arc<cache::AccountCache>>,
    /// Orders and authorizations until finalized, issued certificates for their download:
    /// likewise (`fresh`).
    fresh: Option<Arc<fresh::FreshObjects>>,
    pub backend: Backend,
}

/// How the store writes.
#[derive(Clone)]
enum Writes {
    /// SQLite: one writer connection behind a group commit (see `group_commit`), so that
    /// writers queue in order instead of meeting at the database lock, and one `fsync` carries
    /// every write that waited for it.
    Grouped(GroupCommit),
    /// PostgreSQL: each write is a transaction of its own, on the reads' connections; the
    /// server flushes concurrent commits together.
    Server {
        conns: Arc<Connections>,
        /// Connections with `synchronous_commit = off`, for writes no client relies on
        /// surviving a crash ([`Store::execute_applied`]).
        unflushed: Arc<Connections>,
    },
}

/// PostgreSQL connections for writes that need not wait for their WAL flush.
const UNFLUSHED_CONNECTIONS: u32 = 4;
/// The pool's connections on PostgreSQL: it only migrates.
const MIGRATION_CONNECTIONS: u32 = 2;

/// An owned value bound to a write statement (a write may run after its caller returned, so
/// it owns its inputs).
#[derive(Debug, Clone)]
pub enum Arg {
    Text(String),
    OptText(Option<String>),
    Int(i64),
    OptInt(Option<i64>),
    Bytes(Vec<u8>),
}

impl From<&str> for Arg {
    fn from(v: &str) -> Arg {
        Arg::Text(v.to_owned())
    }
}
impl From<&String> for Arg {
    fn from(v: &String) -> Arg {
        Arg::Text(v.clone())
    }
}
impl From<Option<&str>> for Arg {
    fn from(v: Option<&str>) -> Arg {
        Arg::OptText(v.map(str::to_owned))
    }
}
impl From<&Option<String>> for Arg {
    fn from(v: &Option<String>) -> Arg {
        Arg::OptText(v.clone())
    }
}
impl From<i64> for Arg {
    fn from(v: i64) -> Arg {
        Arg::Int(v)
    }
}
impl From<Option<i64>> for Arg {
    fn from(v: Option<i64>) -> Arg {
        Arg::OptInt(v)
    }
}
impl From<&[u8]> for Arg {
    fn from(v: &[u8]) -> Arg {
        Arg::Bytes(v.to_vec())
    }
}

/// One write statement and its values.
#[derive(Debug, Clone)]
pub struct Statement {
    sql: Cow<'static, str>,
    args: Vec<Arg>,
}

impl Statement {
    pub fn new(sql: impl Into<Cow<'static, str>>, args: Vec<Arg>) -> Statement {
        Statement {
            sql: sql.into(),
            args,
        }
    }

    /// Runs on `conn`; the number of rows it changed.
    async fn run(&self, conn: &mut AnyConnection) -> std::result::Result<u64, sqlx::Error> {
        Ok(self.query().execute(conn).await?.rows_affected())
    }

    fn query(&self) -> sqlx::query::Query<'_, Any, AnyArguments<'_>> {
        let mut query: sqlx::query::Query<'_, Any, AnyArguments<'_>> = sqlx::query(&self.sql);
        for arg in &self.args {
            query = match arg {
                Arg::Text(v) => query.bind(v.as_str()),
                Arg::OptText(v) => query.bind(v.as_deref()),
                Arg::Int(v) => query.bind(*v),
                Arg::OptInt(v) => query.bind(*v),
                Arg::Bytes(v) => query.bind(v.as_slice()),
            };
        }
        query
    }

    /// SQLite: `statements` as one text of statements separated by `;`, their arguments
    /// renumbered to follow each other. SQLite prepares and runs them one after the other in a
    /// single call to the connection's worker thread, where one call each would cost a round
    /// trip to that thread per statement; [`Chained::run_counting`] reads the rows each changed.
    /// sqlx 0.8 keeps this for SQLite but marks it deprecated (its issue 3108): should an
    /// upgrade run only the first statement, `run_counting` fails the write instead of leaving
    /// it half done, and `statements_chained_for_sqlite_count_each_and_fail_as_one` fails.
    fn chained(statements: &[Statement]) -> Chained {
        let mut sql = String::new();
        let mut args = Vec::new();
        for statement in statements {
            if !sql.is_empty() {
                sql.push_str(";\n");
            }
            let text = statement.sql.trim().trim_end_matches(';');
            sql.push_str(&renumber_arguments(text, args.len()));
            args.extend(statement.args.iter().cloned());
        }
        Chained {
            statement: Statement::new(sql, args),
            count: statements.len(),
        }
    }

    /// PostgreSQL: `statements` (inserts, updates and deletes numbering their arguments `$1`
    /// up) as one statement, each a data-modifying `WITH` returning a row per row it changed,
    /// counted in a column per statement: atomic as a transaction is, in one round trip.
    /// `None` for a single statement or one that does not fit (another kind, a `RETURNING`).
    fn combined(statements: &[Statement]) -> Option<Combined> {
        if statements.len() < 2 {
            return None;
        }
        let mut with = Vec::with_capacity(statements.len());
        let mut counts = Vec::with_capacity(statements.len());
        let mut args = Vec::new();
        for (i, statement) in statements.iter().enumerate() {
            let sql = statement.sql.trim().trim_end_matches(';');
            let upper = sql.to_ascii_uppercase();
            let writes = ["INSERT ", "UPDATE ", "DELETE "]
                .iter()
                .any(|kind| upper.starts_with(kind));
            if !writes || upper.contains("RETURNING") {
                return None;
            }
            with.push(format!(
                "s{i} AS ({} RETURNING 1)",
                renumber_arguments(sql, args.len())
            ));
            counts.push(format!("(SELECT COUNT(*) FROM s{i})"));
            args.extend(statement.args.iter().cloned());
        }
        let sql = format!("WITH {} SELECT {}", with.join(", "), counts.join(", "));
        Some(Combined {
            statement: Statement::new(sql, args),
            count: statements.len(),
        })
    }
}

/// Several statements in one text ([`Statement::chained`]).
struct Chained {
    statement: Statement,
    count: usize,
}

impl Chained {
    /// Runs every statement, in order; the rows each changed.
    async fn run_counting(
        &self,
        conn: &mut AnyConnection,
    ) -> std::result::Result<Vec<u64>, sqlx::Error> {
        use futures_util::TryStreamExt;
        let mut changed = Vec::with_capacity(self.count);
        let mut results = conn.fetch_many(self.statement.query());
        while let Some(item) = results.try_next().await? {
            if let sqlx::Either::Left(done) = item {
                changed.push(done.rows_affected());
            }
        }
        if changed.len() != self.count {
            return Err(sqlx::Error::Protocol(format!(
                "{} statements ran where {} were sent",
                changed.len(),
                self.count
            )));
        }
        Ok(changed)
    }
}

/// Several statements made one ([`Statement::combined`]).
struct Combined {
    statement: Statement,
    count: usize,
}

impl Combined {
    /// Runs on a connection of `conns` (a lost connection noted); the rows each statement
    /// changed.
    async fn run_on(&self, conns: &Connections) -> Result<Vec<u64>> {
        let mut conn = conns.get().await?;
        let changed = self.run_counting(conn.connection()?).await;
        Ok(conn.noted(changed)?)
    }

    /// The rows each statement changed.
    async fn run_counting(
        &self,
        conn: &mut AnyConnection,
    ) -> std::result::Result<Vec<u64>, sqlx::Error> {
        let row = self.statement.query().fetch_one(conn).await?;
        (0..self.count)
            .map(|i| {
                let n: i64 = row.try_get(i)?;
                Ok(u64::try_from(n).unwrap_or(0))
            })
            .collect()
    }
}

/// `sql` with every `$N` argument made `$(N + offset)`.
fn renumber_arguments(sql: &str, offset: usize) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c != '$' {
            continue;
        }
        let mut digits = String::new();
        while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
            digits.push(d);
            chars.next();
        }
        match digits.parse::<usize>() {
            Ok(n) => out.push_str(&(n + offset).to_string()),
            Err(_) => out.push_str(&digits),
        }
    }
    out
}

/// `Statement::new(SQL, vec![a.into(), b.into(), …])`.
macro_rules! statement {
    ($sql:expr $(, $arg:expr)* $(,)?) => {
        Statement::new($sql, vec![$(Arg::from($arg)),*])
    };
}

#[derive(Debug, Clone)]
pub struct AccountRow {
    pub id: String,
    pub thumbprint: String,
    pub jwk: String,
    pub status: String,
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
    pub status: String,
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
            thumbprint: format!("thumbprint-{id}"),
            jwk: "{}".into(),
            status: "valid".into(),
            contact: "[]".into(),
            eab_kid: None,
            created_at: now(),
        }
    }
}

#[cfg(test)]
impl OrderRow {
    /// A bare order (no identifiers, no profile) for unit tests.
    pub fn for_tests(id: &str, account_id: &str, status: &str, expires: i64) -> OrderRow {
        OrderRow {
            id: id.into(),
            account_id: account_id.into(),
            directory: "default".into(),
            status: status.into(),
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

/// The orders a newOrder could reuse ([`Store::reuse_candidates`]).
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

#[derive(Debug, Clone)]
pub struct AuthzRow {
    pub id: String,
    pub account_id: String,
    pub id_type: String,
    pub id_value: String,
    pub wildcard: bool,
    pub status: String,
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
    pub status: String,
    pub validated: Option<i64>,
    pub error: Option<String>,
}

#[derive(Debug, Clone)]
pub struct CertificateRow {
    pub serial: String,
    pub issuer: String,
    pub order_id: Option<String>,
    pub account_id: Option<String>,
    pub status: String,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NewAccountOutcome {
    Created,
    /// An account with this key exists (a concurrent registration won).
    KeyExists,
    /// The EAB key was bound to another account meanwhile; nothing was written.
    EabUsed,
}

/// A signed certificate, ready to store.
pub struct IssuedRecord<'a> {
    /// Lowercase hex of the certificate's serial.
    pub serial: &'a str,
    pub tbs: &'a [u8],
    pub der: &'a [u8],
    pub chain_pem: &'a str,
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
    fn statement(&self) -> Statement {
        statement!(
            "UPDATE orders SET status = 'processing', processing_since = $1, profile = $2, csr = $3 WHERE id = $4 AND status = 'pending'",
            self.now,
            self.profile_snapshot,
            self.csr,
            self.order_id,
        )
    }
}

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

/// A new authorization and its challenges, written with its order.
pub struct NewAuthz {
    pub id: String,
    pub id_type: String,
    pub id_value: String,
    pub wildcard: bool,
    pub expires: i64,
    pub challenges: Vec<(String, String, String)>, // (id, kind, token)
}

impl NewAuthz {
    /// The authorization as it stands once written: pending, not validated.
    pub fn row(&self, account_id: &str) -> AuthzRow {
        AuthzRow {
            id: self.id.clone(),
            account_id: account_id.to_owned(),
            id_type: self.id_type.clone(),
            id_value: self.id_value.clone(),
            wildcard: self.wildcard,
            status: "pending".into(),
            expires: self.expires,
            validation: None,
        }
    }

    /// Its challenges as they stand once written: pending.
    fn challenge_rows(&self) -> Vec<ChallengeRow> {
        self.challenges
            .iter()
            .map(|(id, kind, token)| ChallengeRow {
                id: id.clone(),
                authz_id: self.id.clone(),
                kind: kind.clone(),
                token: token.clone(),
                status: "pending".into(),
                validated: None,
                error: None,
            })
            .collect()
    }
}

/// What a new order links to: an authorization to create, or an existing one to reuse.
pub enum OrderAuthz {
    New(NewAuthz),
    Reuse(String),
}

fn order_from(r: &AnyRow) -> std::result::Result<OrderRow, sqlx::Error> {
    Ok(OrderRow {
        id: r.try_get("id")?,
        account_id: r.try_get("account_id")?,
        directory: r.try_get("directory")?,
        status: r.try_get("status")?,
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
/// [`AUTHZ_WITH_CHALLENGES`]).
fn authz_from(r: &AnyRow) -> std::result::Result<AuthzRow, sqlx::Error> {
    Ok(AuthzRow {
        id: r.try_get("id")?,
        account_id: r.try_get("account_id")?,
        id_type: r.try_get("id_type")?,
        id_value: r.try_get("id_value")?,
        wildcard: r.try_get::<i64, _>("wildcard")? != 0,
        status: r.try_get("status")?,
        expires: r.try_get("expires")?,
        validation: None,
    })
}

/// An authorization from `authz_select!`, with the challenge that validated it.
fn validated_authz_from(r: &AnyRow) -> std::result::Result<AuthzRow, sqlx::Error> {
    let kind: Option<String> = r.try_get("valid_kind")?;
    let at: Option<i64> = r.try_get("valid_at")?;
    Ok(AuthzRow {
        validation: kind.map(|kind| (kind, at.unwrap_or(0))),
        ..authz_from(r)?
    })
}

/// An authorization from the `a_`-prefixed columns of [`ORDER_WITH_AUTHZS`].
fn joined_authz_from(r: &AnyRow) -> std::result::Result<AuthzRow, sqlx::Error> {
    let kind: Option<String> = r.try_get("valid_kind")?;
    let at: Option<i64> = r.try_get("valid_at")?;
    Ok(AuthzRow {
        id: r.try_get("a_id")?,
        account_id: r.try_get("a_account_id")?,
        id_type: r.try_get("a_id_type")?,
        id_value: r.try_get("a_id_value")?,
        wildcard: r.try_get::<i64, _>("a_wildcard")? != 0,
        status: r.try_get("a_status")?,
        expires: r.try_get("a_expires")?,
        validation: kind.map(|kind| (kind, at.unwrap_or(0))),
    })
}

/// A challenge from the `c_`-prefixed columns of a join with its authorization.
fn joined_challenge_from(r: &AnyRow) -> std::result::Result<ChallengeRow, sqlx::Error> {
    Ok(ChallengeRow {
        id: r.try_get("c_id")?,
        authz_id: r.try_get("id")?,
        kind: r.try_get("c_kind")?,
        token: r.try_get("c_token")?,
        status: r.try_get("c_status")?,
        validated: r.try_get("c_validated")?,
        error: r.try_get("c_error")?,
    })
}

/// The challenge that validated an authorization, as `authz_select!` would report it.
fn validation_of(challenges: &[ChallengeRow]) -> Option<(String, i64)> {
    challenges
        .iter()
        .filter(|c| c.status == "valid")
        .min_by_key(|c| c.validated.unwrap_or(0))
        .map(|c| (c.kind.clone(), c.validated.unwrap_or(0)))
}

fn account_from(r: &AnyRow) -> std::result::Result<AccountRow, sqlx::Error> {
    account_columns(r, "")
}

/// An account from the columns named `prefix` and the account's own column names.
fn account_columns(r: &AnyRow, prefix: &str) -> std::result::Result<AccountRow, sqlx::Error> {
    let column = |name: &str| format!("{prefix}{name}");
    Ok(AccountRow {
        id: r.try_get(column("id").as_str())?,
        thumbprint: r.try_get(column("thumbprint").as_str())?,
        jwk: r.try_get(column("jwk").as_str())?,
        status: r.try_get(column("status").as_str())?,
        contact: r.try_get(column("contact").as_str())?,
        eab_kid: r.try_get(column("eab_kid").as_str())?,
        created_at: r.try_get(column("created_at").as_str())?,
    })
}

fn certificate_from(r: &AnyRow) -> std::result::Result<CertificateRow, sqlx::Error> {
    Ok(CertificateRow {
        serial: r.try_get("serial")?,
        issuer: r.try_get("issuer")?,
        order_id: r.try_get("order_id")?,
        account_id: r.try_get("account_id")?,
        status: r.try_get("status")?,
        der: r.try_get("der")?,
        chain_pem: r.try_get("chain_pem")?,
        not_after: r.try_get("not_after")?,
        revoked_at: r.try_get("revoked_at")?,
        revocation_reason: r.try_get("revocation_reason")?,
        invalidity_date: r.try_get("invalidity_date")?,
        crl_shard: r.try_get("crl_shard")?,
    })
}

fn crl_from(r: &AnyRow) -> std::result::Result<CrlRow, sqlx::Error> {
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

/// An order's columns; a macro so that queries can `concat!` it.
macro_rules! order_cols {
    () => {
        "id, account_id, directory, status, expires, identifiers, not_before, not_after, error, \
         profile_name, replaces, profile, certificate_serial, processing_since, created_at"
    };
}

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
// The queries of every newOrder and of every recovery round; `plans_of_frequent_queries_use_indexes`
// checks that none of them reads a whole table.
/// newOrder's two reuse lookups in one round trip: up to three unexpired pending orders of the
/// account (`$1`) for exactly these identifiers (`$3`) and profile (`$4`) in this directory
/// (`$2`), newest first, with the order columns; and the account's newest valid authorization
/// for one identifier (`$6`–`$8`) valid past `$9`, with the `a_` columns of
/// [`joined_authz_from`]. Each row has the other's columns NULL.
const REUSE_CANDIDATES: &str = concat!(
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
const REUSABLE_AUTHZ: &str = concat!(
    authz_select!(),
    " WHERE a.account_id = $1 AND a.id_type = $2 AND a.id_value = $3 AND a.wildcard = $4 \
     AND a.status = 'valid' AND a.expires > $5 ORDER BY a.expires DESC LIMIT 1"
);
const ORDER_REPLACING: &str =
    "SELECT id FROM orders WHERE replaces = $1 AND status <> 'invalid' LIMIT 1";
const STALE_PROCESSING_ORDERS: &str = concat!(
    "SELECT ",
    order_cols!(),
    " FROM orders WHERE status = 'processing' AND processing_since < $1 AND directory = $2"
);
const STALE_PROCESSING_CHALLENGES: &str = "UPDATE challenges SET status = 'pending', \
     processing_since = NULL WHERE status = 'processing' AND processing_since < $1";
const ORDERS_SINCE: &str =
    "SELECT COUNT(*) AS n FROM orders WHERE account_id = $1 AND created_at > $2";
const AUTHZS_SINCE: &str = "SELECT COUNT(*) AS n FROM authorizations \
     WHERE id_type = $1 AND id_value = $2 AND created_at > $3";
/// One order (`$1`) with its authorizations in order, a row per authorization (one row with
/// empty `a_` columns for an order without any).
const ORDER_WITH_AUTHZS: &str =
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
/// One authorization (`$1`) with its challenges, a row per challenge, in one round trip.
const AUTHZ_WITH_CHALLENGES: &str =
    "SELECT a.id, a.account_id, a.id_type, a.id_value, a.wildcard, a.status, a.expires, \
     c.id AS c_id, c.kind AS c_kind, c.token AS c_token, c.status AS c_status, \
     c.validated AS c_validated, c.error AS c_error \
     FROM authorizations a LEFT JOIN challenges c ON c.authz_id = a.id \
     WHERE a.id = $1 ORDER BY c.kind";
macro_rules! cert_cols {
    () => {
        "serial, issuer, order_id, account_id, status, der, chain_pem, not_after, revoked_at, \
         revocation_reason, invalidity_date, crl_shard"
    };
}
const CERT_COLS: &str = cert_cols!();
/// One challenge (`$1`) with its authorization, in one round trip.
const CHALLENGE_WITH_AUTHZ: &str =
    "SELECT a.id, a.account_id, a.id_type, a.id_value, a.wildcard, a.status, a.expires, \
     c.id AS c_id, c.kind AS c_kind, c.token AS c_token, c.status AS c_status, \
     c.validated AS c_validated, c.error AS c_error \
     FROM challenges c JOIN authorizations a ON a.id = c.authz_id WHERE c.id = $1";
/// One certificate (`$1`, its serial), all of [`CERT_COLS`].
const CERTIFICATE: &str = concat!(
    "SELECT ",
    cert_cols!(),
    " FROM certificates WHERE serial = $1"
);

/// Whether the row's `key` column holds a value, not `NULL`.
fn present(row: &AnyRow, key: &str) -> std::result::Result<bool, sqlx::Error> {
    Ok(row.try_get::<Option<String>, _>(key)?.is_some())
}

/// What reads one value from a row.
type RowReader<T> = fn(&AnyRow) -> std::result::Result<T, sqlx::Error>;

/// A row with the rows joined to it, read the same way wherever the join comes from: `None`
/// when there are no rows, or only one whose `key` column is `NULL` (a left join's, see
/// [`prefetch`]); otherwise the head from the first row and an item from each row whose
/// `item_key` is not `NULL`.
fn head_and_items<H, I>(
    rows: &[AnyRow],
    (key, head): (&str, RowReader<H>),
    (item_key, item): (&str, RowReader<I>),
) -> std::result::Result<Option<(H, Vec<I>)>, sqlx::Error> {
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    if !present(first, key)? {
        return Ok(None);
    }
    let head = head(first)?;
    let mut items = Vec::with_capacity(rows.len());
    for row in rows {
        if present(row, item_key)? {
            items.push(item(row)?);
        }
    }
    Ok(Some((head, items)))
}

/// The order and its authorizations from the rows of [`ORDER_WITH_AUTHZS`].
fn order_with_authzs_from(
    rows: &[AnyRow],
) -> std::result::Result<Option<(OrderRow, Vec<AuthzRow>)>, sqlx::Error> {
    head_and_items(rows, ("id", order_from), ("a_id", joined_authz_from))
}

/// The authorization and its challenges from the rows of [`AUTHZ_WITH_CHALLENGES`].
fn authz_with_challenges_from(
    rows: &[AnyRow],
) -> std::result::Result<Option<(AuthzRow, Vec<ChallengeRow>)>, sqlx::Error> {
    let found = head_and_items(rows, ("id", authz_from), ("c_id", joined_challenge_from))?;
    Ok(found.map(|(mut authz, challenges)| {
        authz.validation = validation_of(&challenges);
        (authz, challenges)
    }))
}

/// The challenge and its authorization from a row of [`CHALLENGE_WITH_AUTHZ`].
fn challenge_with_authz_from(
    r: &AnyRow,
) -> std::result::Result<(ChallengeRow, AuthzRow), sqlx::Error> {
    Ok((joined_challenge_from(r)?, authz_from(r)?))
}

/// The statements that write an authorization and its challenges.
fn authz_statements(account_id: &str, a: &NewAuthz, created: i64) -> Vec<Statement> {
    let mut statements = vec![statement!(
        "INSERT INTO authorizations (id, account_id, id_type, id_value, wildcard, status, expires, created_at) \
         VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7)",
        &a.id,
        account_id,
        &a.id_type,
        &a.id_value,
        i64::from(a.wildcard),
        a.expires,
        created,
    )];
    if a.challenges.is_empty() {
        return statements;
    }
    // One statement for all of them: `($2, $1, $3, $4, 'pending'), ($5, $1, $6, $7, 'pending') …`
    let mut sql =
        String::from("INSERT INTO challenges (id, authz_id, kind, token, status) VALUES ");
    let mut args = vec![Arg::from(&a.id)];
    for (i, (cid, kind, token)) in a.challenges.iter().enumerate() {
        let n = 2 + 3 * i;
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!("(${n}, $1, ${}, ${}, 'pending')", n + 1, n + 2));
        args.extend([Arg::from(cid), Arg::from(kind), Arg::from(token)]);
    }
    statements.push(Statement::new(sql, args));
    statements
}

/// Every SQLite connection, the writer's and the readers': WAL, durable commits.
async fn sqlite_pragmas(conn: &mut AnyConnection) -> std::result::Result<(), sqlx::Error> {
    conn.execute("PRAGMA journal_mode = WAL").await?;
    // FULL: a commit, and so every answer given after it, has reached the disk.
    conn.execute("PRAGMA synchronous = FULL").await?;
    // Still needed: other processes (the CLI) write to the same file.
    conn.execute("PRAGMA busy_timeout = 10000").await?;
    conn.execute("PRAGMA foreign_keys = ON").await?;
    Ok(())
}

/// The database connections (SQLite: the read connections; PostgreSQL: reads and writes) when the
/// configuration leaves their number to pkid.
///
/// - SQLite: one read connection (`connections`) per core, at least two. They only read (writes go
///   through the group commit's own connection), each connection is a thread of its own, and an SQLite
///   read is CPU work: more connections than cores only add threads that preempt the request
///   tasks. At 32 clients on two cores, 2 connections against 8 brought the worst per-step p99
///   from 50–60 ms to 45–51 ms, at the same rate or better.
/// - PostgreSQL: 8. They carry reads and durable writes, and each query waits on the network
///   and the server's commit, so more queries in flight than cores pay off.
pub fn automatic_connections(backend: Backend) -> u32 {
    match backend {
        Backend::Sqlite => std::thread::available_parallelism()
            .map_or(2, |n| u32::try_from(n.get()).unwrap_or(u32::MAX))
            .max(2),
        Backend::Postgres => 8,
    }
}

impl Store {
    /// Connect, apply pending migrations, and set SQLite to durable WAL mode. `max_connections`
    /// 0 picks the pool's size for the backend ([`automatic_connections`]).
    pub async fn connect(url: &str, max_connections: u32) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("postgres") {
            Backend::Postgres
        } else {
            Backend::Sqlite
        };
        let max_connections = match max_connections {
            0 => automatic_connections(backend),
            n => n,
        };
        let options = AnyConnectOptions::from_str(url)?;
        // Reads and writes have connections of their own (`connections`): the pool only
        // migrates.
        let pool = AnyPoolOptions::new()
            .max_connections(match backend {
                Backend::Sqlite => 1,
                Backend::Postgres => MIGRATION_CONNECTIONS,
            })
            .acquire_timeout(Duration::from_secs(30))
            // Idle after the migrations: not kept holding a server's connection slots.
            .idle_timeout(Duration::from_secs(60))
            .test_before_acquire(backend == Backend::Postgres)
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        sqlite_pragmas(conn).await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options.clone())
            .await?;
        match backend {
            Backend::Sqlite => sqlx::migrate!("./migrations/sqlite").run(&pool).await?,
            Backend::Postgres => sqlx::migrate!("./migrations/postgres").run(&pool).await?,
        }
        let (reads, writes) = match backend {
            Backend::Sqlite => {
                let reads = Connections::open(&options, max_connections, Kind::File).await?;
                let mut conn = options.connect().await?;
                sqlite_pragmas(&mut conn).await?;
                (Arc::new(reads), Writes::Grouped(GroupCommit::start(conn)))
            }
            Backend::Postgres => {
                let conns =
                    Arc::new(Connections::open(&options, max_connections, Kind::Server).await?);
                let unflushed = Arc::new(
                    Connections::open(&options, UNFLUSHED_CONNECTIONS, Kind::ServerUnflushed)
                        .await?,
                );
                (conns.clone(), Writes::Server { conns, unflushed })
            }
        };
        let accounts =
            (backend == Backend::Sqlite).then(|| Arc::new(cache::AccountCache::default()));
        let fresh = (backend == Backend::Sqlite).then(|| Arc::new(fresh::FreshObjects::default()));
        Ok(Store {
            pool,
            reads,
            writes,
            accounts,
            fresh,
            backend,
        })
    }

    /// Runs `job` over `data` as one transaction, durable when this returns: on SQLite in the
    /// writer's next group commit, on PostgreSQL in a transaction of its own.
    pub async fn write<D, T, F>(&self, data: D, job: F) -> Result<T>
    where
        D: Send + Sync + 'static,
        T: Clone + Send + 'static,
        F: for<'c> Fn(&'c mut AnyConnection, &'c D) -> JobFuture<'c, T> + Send + Sync + 'static,
    {
        self.write_then(data, job, None).await
    }

    /// [`Store::write`], with `after` run once its transaction has ended (see [`After`]).
    async fn write_then<D, T, F>(&self, data: D, job: F, after: Option<After<T>>) -> Result<T>
    where
        D: Send + Sync + 'static,
        T: Clone + Send + 'static,
        F: for<'c> Fn(&'c mut AnyConnection, &'c D) -> JobFuture<'c, T> + Send + Sync + 'static,
    {
        match &self.writes {
            Writes::Grouped(group) => Ok(group.write(data, job, after).await?),
            // PostgreSQL keeps nothing in memory: no `after` is made for it.
            Writes::Server { conns, .. } => {
                let mut conn = conns.get().await?;
                let written = async {
                    let mut tx = conn.connection()?.begin().await?;
                    match job(&mut tx, &data).await? {
                        Written::Commit(t) | Written::Applied(t) => {
                            tx.commit().await?;
                            Ok(t)
                        }
                        Written::Rollback(t) => {
                            tx.rollback().await?;
                            Ok(t)
                        }
                    }
                }
                .await;
                Ok(conn.noted(written)?)
            }
        }
    }

    /// What a write does to the rows this process keeps in memory, as an [`After`] for it (it
    /// gets the write's answer once committed); `None` when it keeps none (PostgreSQL).
    fn after<T: 'static>(
        &self,
        change: impl Fn(&fresh::FreshObjects, Option<&T>) + Send + Sync + 'static,
    ) -> Option<After<T>> {
        let fresh = self.fresh.clone()?;
        Some(Arc::new(move |committed| change(&fresh, committed)))
    }

    /// Runs `statements` as one transaction; the rows each changed. No statement may depend
    /// on another's changes (a row another inserts or updates; foreign keys are checked at the
    /// end): on PostgreSQL they run as one statement (`Statement::combined`), on one snapshot.
    pub async fn execute_all(&self, statements: Vec<Statement>) -> Result<Vec<u64>> {
        self.execute_all_then(statements, None).await
    }

    /// [`Store::execute_all`], with `after` (see [`After`]).
    async fn execute_all_then(
        &self,
        statements: Vec<Statement>,
        after: Option<After<Vec<u64>>>,
    ) -> Result<Vec<u64>> {
        if let Writes::Server { conns, .. } = &self.writes {
            // One round trip instead of a BEGIN, each statement and a COMMIT.
            if let Some(combined) = Statement::combined(&statements) {
                return combined.run_on(conns).await;
            }
        }
        if statements.len() > 1 {
            return self
                .write_then(
                    Statement::chained(&statements),
                    |conn, chained| {
                        Box::pin(
                            async move { Ok(Written::Commit(chained.run_counting(conn).await?)) },
                        )
                    },
                    after,
                )
                .await;
        }
        self.write_then(
            statements,
            |conn, statements| {
                Box::pin(async move {
                    let mut changed = Vec::with_capacity(statements.len());
                    for statement in statements {
                        changed.push(statement.run(conn).await?);
                    }
                    Ok(Written::Commit(changed))
                })
            },
            after,
        )
        .await
    }

    /// Runs one statement whose loss to a crash no client relies on (recovery redoes or undoes
    /// it), answered as soon as it is made: on SQLite before its group's commit, on PostgreSQL
    /// without waiting for its WAL flush. It is visible to other connections once committed,
    /// at once to later writes; the log is sequential, so any later durable commit carries it
    /// to the disk. The rows it changed.
    pub async fn execute_applied(&self, statement: Statement) -> Result<u64> {
        self.execute_applied_then(statement, None).await
    }

    /// [`Store::execute_applied`], with `after` (see [`After`]): it runs once the statement is
    /// committed, after the answer.
    async fn execute_applied_then(
        &self,
        statement: Statement,
        after: Option<After<u64>>,
    ) -> Result<u64> {
        match &self.writes {
            Writes::Server { unflushed, .. } => run_on(unflushed, &statement).await,
            Writes::Grouped(_) => {
                self.write_then(
                    statement,
                    |conn, statement| {
                        Box::pin(async move { Ok(Written::Applied(statement.run(conn).await?)) })
                    },
                    after,
                )
                .await
            }
        }
    }

    /// Runs one statement as a transaction of its own; the rows it changed.
    pub async fn execute(&self, statement: Statement) -> Result<u64> {
        self.execute_then(statement, None).await
    }

    /// [`Store::execute`], with `after` (see [`After`]).
    async fn execute_then(&self, statement: Statement, after: Option<After<u64>>) -> Result<u64> {
        match &self.writes {
            // One statement is a transaction already: no BEGIN and COMMIT round trips.
            Writes::Server { conns, .. } => run_on(conns, &statement).await,
            Writes::Grouped(_) => {
                self.write_then(
                    statement,
                    |conn, statement| {
                        Box::pin(async move { Ok(Written::Commit(statement.run(conn).await?)) })
                    },
                    after,
                )
                .await
            }
        }
    }

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

    // ---- nonces ----

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

    // ---- accounts ----

    /// Create an account; with `eab_kid`, bind (and so use up) that EAB key in the same
    /// transaction. Outcome: created, the key existed already, or the EAB key was used already.
    pub async fn insert_account(
        &self,
        a: &AccountRow,
        eab_kid: Option<&str>,
    ) -> Result<NewAccountOutcome> {
        let insert = statement!(
            "INSERT INTO accounts (id, thumbprint, jwk, status, contact, eab_kid, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (thumbprint) DO NOTHING",
            &a.id,
            &a.thumbprint,
            &a.jwk,
            &a.status,
            &a.contact,
            eab_kid,
            a.created_at,
        );
        let bind = eab_kid.map(|kid| {
            statement!(
                "UPDATE eab_keys SET bound_account = $1, bound_at = $2 WHERE kid = $3 AND bound_account IS NULL",
                &a.id,
                a.created_at,
                kid,
            )
        });
        self.write((insert, bind), |conn, (insert, bind)| {
            Box::pin(async move {
                if insert.run(conn).await? != 1 {
                    return Ok(Written::Commit(NewAccountOutcome::KeyExists));
                }
                if let Some(bind) = bind {
                    if bind.run(conn).await? != 1 {
                        return Ok(Written::Rollback(NewAccountOutcome::EabUsed));
                    }
                }
                Ok(Written::Commit(NewAccountOutcome::Created))
            })
        })
        .await
    }

    pub async fn insert_eab_key(
        &self,
        kid: &str,
        sealed_key: &str,
        directory: &str,
        note: &str,
        policy: Option<&str>,
    ) -> Result<()> {
        self.execute(statement!(
            "INSERT INTO eab_keys (kid, sealed_key, directory, note, policy, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
            kid,
            sealed_key,
            directory,
            note,
            policy,
            now(),
        ))
        .await?;
        Ok(())
    }

    pub async fn delete_unbound_eab_key(&self, kid: &str) -> Result<bool> {
        let changed = self
            .execute(statement!(
                "DELETE FROM eab_keys WHERE kid = $1 AND bound_account IS NULL",
                kid
            ))
            .await?;
        Ok(changed == 1)
    }

    pub async fn insert_admin_token(&self, id: &str, token_hash: &str, note: &str) -> Result<()> {
        self.execute(statement!(
            "INSERT INTO admin_tokens (id, token_hash, note, created_at) VALUES ($1, $2, $3, $4)",
            id,
            token_hash,
            note,
            now(),
        ))
        .await?;
        Ok(())
    }

    /// The id of a live admin token with this SHA-256.
    pub async fn admin_token(&self, token_hash: &str) -> Result<Option<String>> {
        let row =
            sqlx::query("SELECT id FROM admin_tokens WHERE token_hash = $1 AND revoked_at IS NULL")
                .bind(token_hash)
                .fetch_optional(&mut self.reader().await?)
                .await?;
        Ok(row.map(|r| r.try_get("id")).transpose()?)
    }

    /// The RA policy (JSON) an EAB key carries, if any.
    pub async fn eab_policy(&self, kid: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT policy FROM eab_keys WHERE kid = $1")
            .bind(kid)
            .fetch_optional(&mut self.reader().await?)
            .await?;
        Ok(row
            .map(|r| r.try_get::<Option<String>, _>("policy"))
            .transpose()?
            .flatten())
    }

    /// (sealed key, directory, bound account) of an EAB key id.
    pub async fn eab_key(&self, kid: &str) -> Result<Option<(String, String, Option<String>)>> {
        let row =
            sqlx::query("SELECT sealed_key, directory, bound_account FROM eab_keys WHERE kid = $1")
                .bind(kid)
                .fetch_optional(&mut self.reader().await?)
                .await?;
        Ok(row
            .map(|r| -> std::result::Result<_, sqlx::Error> {
                Ok((
                    r.try_get("sealed_key")?,
                    r.try_get("directory")?,
                    r.try_get("bound_account")?,
                ))
            })
            .transpose()?)
    }

    /// (kid, directory, note, created_at, bound account) of every EAB key.
    pub async fn eab_keys(&self) -> Result<Vec<(String, String, String, i64, Option<String>)>> {
        let rows = sqlx::query("SELECT kid, directory, note, created_at, bound_account FROM eab_keys ORDER BY created_at")
            .fetch_all(&mut self.reader().await?)
            .await?;
        Ok(rows
            .iter()
            .map(|r| -> std::result::Result<_, sqlx::Error> {
                Ok((
                    r.try_get("kid")?,
                    r.try_get("directory")?,
                    r.try_get("note")?,
                    r.try_get("created_at")?,
                    r.try_get("bound_account")?,
                ))
            })
            .collect::<std::result::Result<_, _>>()?)
    }

    pub async fn account_by_thumbprint(&self, thumbprint: &str) -> Result<Option<AccountRow>> {
        let row = sqlx::query("SELECT id, thumbprint, jwk, status, contact, eab_kid, created_at FROM accounts WHERE thumbprint = $1")
            .bind(thumbprint)
            .fetch_optional(&mut self.reader().await?)
            .await?;
        Ok(row.map(|r| account_from(&r)).transpose()?)
    }

    pub async fn account(&self, id: &str) -> Result<Option<AccountRow>> {
        let generation = match &self.accounts {
            Some(cache) => {
                if let Some(row) = cache.get(id) {
                    return Ok(Some(row));
                }
                Some(cache.generation())
            }
            None => None,
        };
        let row = sqlx::query(
            "SELECT id, thumbprint, jwk, status, contact, eab_kid, created_at FROM accounts WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&mut self.reader().await?)
        .await?;
        let account = row.map(|r| account_from(&r)).transpose()?;
        if let (Some(cache), Some(generation), Some(account)) =
            (&self.accounts, generation, &account)
        {
            cache.keep(account, generation);
        }
        Ok(account)
    }

    /// Drops account `id` from memory once a write that may change it has ended, whatever came
    /// of it: in the writer, in commit order, so that no read of the row from before the
    /// change is kept after it (see `cache`), even when the caller is gone by then.
    fn account_changes<T: 'static>(&self, id: &str) -> Option<After<T>> {
        let accounts = self.accounts.clone()?;
        let id = id.to_owned();
        Some(Arc::new(move |_| accounts.forget(&id)))
    }

    /// Replace an account's key, once: `false` if the old key changed meanwhile. A new key that
    /// another account holds fails with a unique violation (`is_unique_violation`).
    pub async fn update_account_key(
        &self,
        id: &str,
        old_thumbprint: &str,
        new_thumbprint: &str,
        new_jwk: &str,
    ) -> Result<bool> {
        let update = statement!(
            "UPDATE accounts SET thumbprint = $1, jwk = $2 WHERE id = $3 AND thumbprint = $4 AND status = 'valid'",
            new_thumbprint,
            new_jwk,
            id,
            old_thumbprint,
        );
        Ok(self.execute_then(update, self.account_changes(id)).await? == 1)
    }

    pub async fn update_account_contact(&self, id: &str, contact: &str) -> Result<()> {
        let update = statement!(
            "UPDATE accounts SET contact = $1 WHERE id = $2 AND status = 'valid'",
            contact,
            id,
        );
        self.execute_then(update, self.account_changes(id)).await?;
        Ok(())
    }

    /// Deactivate an account and, with it, its pending and valid authorizations (RFC 8555 §7.3.6).
    pub async fn deactivate_account(&self, id: &str) -> Result<bool> {
        let statements = vec![
            statement!(
                "UPDATE accounts SET status = 'deactivated' WHERE id = $1 AND status = 'valid'",
                id
            ),
            statement!(
                "UPDATE authorizations SET status = 'deactivated' WHERE account_id = $1 AND status IN ('pending', 'valid')",
                id
            ),
        ];
        let account = self.account_changes(id);
        let account_id = id.to_owned();
        let after = self.after(move |fresh, committed| {
            fresh.forget_authzs_of_account(&account_id);
            if let Some(account) = &account {
                account(committed);
            }
        });
        Ok(self.execute_all_then(statements, after).await?.first() == Some(&1))
    }

    // ---- orders and authorizations ----

    /// Write an order with its new authorizations and challenges in one transaction.
    pub async fn insert_order(&self, order: &OrderRow, authzs: &[OrderAuthz]) -> Result<()> {
        let mut authz_ids = Vec::with_capacity(authzs.len());
        let mut new_authzs = Vec::new();
        let mut statements = vec![statement!(
            "INSERT INTO orders (id, account_id, status, expires, identifiers, not_before, not_after, profile_name, replaces, created_at, directory) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            &order.id,
            &order.account_id,
            &order.status,
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

    /// Authorizations created for an identifier since `since`, all accounts.
    pub async fn authzs_since(&self, id_type: &str, id_value: &str, since: i64) -> Result<i64> {
        let row = sqlx::query(AUTHZS_SINCE)
            .bind(id_type)
            .bind(id_value)
            .bind(since)
            .fetch_one(&mut self.reader().await?)
            .await?;
        Ok(row.try_get("n")?)
    }

    /// What a newOrder could reuse, in one round trip: unexpired, not yet finalized orders of
    /// an account for exactly these identifiers and profile, newest first (valid an hour past
    /// `at` at least); and a valid authorization of the same account for one identifier, as
    /// [`Store::reusable_authz`] finds it.
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

    /// An order (not invalid) that already replaces the certificate `cert_id` (RFC 9773).
    pub async fn order_replacing(&self, cert_id: &str) -> Result<Option<String>> {
        let row = sqlx::query(ORDER_REPLACING)
            .bind(cert_id)
            .fetch_optional(&mut self.reader().await?)
            .await?;
        Ok(row.map(|r| r.try_get("id")).transpose()?)
    }

    /// A pre-authorization (RFC 8555 §7.4.1): an authorization with its challenges, no order.
    pub async fn insert_authz(&self, account_id: &str, a: &NewAuthz, created: i64) -> Result<()> {
        let (row, challenges) = (a.row(account_id), a.challenge_rows());
        let after = self.after(move |fresh, committed: Option<&Vec<u64>>| {
            if committed.is_some() {
                fresh.put_authz(row.clone(), challenges.clone());
            }
        });
        self.execute_all_then(authz_statements(account_id, a, created), after)
            .await?;
        Ok(())
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

    /// An authorization and its challenges (ordered by type), in one round trip.
    pub async fn authz_with_challenges(
        &self,
        id: &str,
    ) -> Result<Option<(AuthzRow, Vec<ChallengeRow>)>> {
        if let Some(kept) = self
            .fresh
            .as_ref()
            .and_then(|f| f.authz_with_challenges(id))
        {
            return Ok(Some(kept));
        }
        let rows = sqlx::query(AUTHZ_WITH_CHALLENGES)
            .bind(id)
            .fetch_all(&mut self.reader().await?)
            .await?;
        Ok(authz_with_challenges_from(&rows)?)
    }

    /// A challenge and its authorization, in one round trip.
    pub async fn challenge_with_authz(&self, id: &str) -> Result<Option<(ChallengeRow, AuthzRow)>> {
        if let Some(kept) = self.fresh.as_ref().and_then(|f| f.challenge_with_authz(id)) {
            return Ok(Some(kept));
        }
        let row = sqlx::query(CHALLENGE_WITH_AUTHZ)
            .bind(id)
            .fetch_optional(&mut self.reader().await?)
            .await?;
        Ok(row.map(|r| challenge_with_authz_from(&r)).transpose()?)
    }

    /// pending → processing, once, stamped with its start. `false`: another request started it
    /// already. Answered before it is durable ([`Store::execute_applied`]): a crash loses the
    /// validation running anyway, and [`Store::requeue_stuck_challenges`] puts challenges left
    /// `processing` back to `pending`.
    pub async fn start_challenge(&self, id: &str) -> Result<bool> {
        let challenge_id = id.to_owned();
        // Started (one row changed): the challenge is `processing` in memory as in the file.
        let after = self.after(move |fresh, changed: Option<&u64>| match changed {
            Some(1) => fresh.challenge_started(&challenge_id),
            _ => fresh.forget_authz_of_challenge(&challenge_id),
        });
        let changed = self
            .execute_applied_then(
                statement!(
                    "UPDATE challenges SET status = 'processing', processing_since = $1 WHERE id = $2 AND status = 'pending'",
                    now(),
                    id
                ),
                after,
            )
            .await?;
        Ok(changed == 1)
    }

    /// Record a validation outcome on the challenge and its authorization together.
    ///
    /// The outcome lives only in the validation task, so a connection lost under it (a database
    /// restart) is retried on a fresh one rather than leaving the challenge `processing` until
    /// the next start. Both updates are conditional: running them again after a commit that did
    /// go through changes nothing. `true` when this outcome is the challenge's (it was
    /// `processing`); `validated` is the time of a valid outcome.
    pub async fn finish_challenge(
        &self,
        challenge_id: &str,
        authz_id: &str,
        validated: Option<i64>,
        error: Option<&str>,
        authz_expires: i64,
    ) -> Result<bool> {
        let valid = validated.is_some();
        let status = if valid { "valid" } else { "invalid" };
        let (challenge, authz) = (challenge_id.to_owned(), authz_id.to_owned());
        let outcome = fresh::Outcome {
            status: status.to_owned(),
            validated,
            error: error.map(str::to_owned),
            authz_expires: valid.then_some(authz_expires),
        };
        // Both rows changed: memory takes the outcome as the file did; else it forgets.
        let after =
            self.after(
                move |fresh, changed: Option<&Vec<u64>>| match changed.map(Vec::as_slice) {
                    Some([1, 1]) => fresh.challenge_finished(&challenge, &authz, &outcome),
                    _ => fresh.forget_authz(&authz),
                },
            );
        self.execute_retrying(
            "recording a validation outcome",
            after,
            vec![
                statement!(
                    "UPDATE challenges SET status = $1, validated = $2, error = $3 WHERE id = $4 AND status = 'processing'",
                    status,
                    validated,
                    error,
                    challenge_id,
                ),
                statement!(
                    "UPDATE authorizations SET status = $1, expires = CASE WHEN $2 > 0 THEN $2 ELSE expires END WHERE id = $3 AND status = 'pending'",
                    status,
                    if valid { authz_expires } else { 0 },
                    authz_id,
                ),
            ],
        )
        .await
        .map(|changed| changed.first() == Some(&1))
    }

    /// [`Store::execute_all`], tried again on a fresh connection when the database went away
    /// under it (a restart): for writes whose outcome lives only in the caller's memory, and
    /// whose statements are conditional, so that running them again after a commit that did go
    /// through changes nothing.
    async fn execute_retrying(
        &self,
        what: &str,
        after: Option<After<Vec<u64>>>,
        statements: Vec<Statement>,
    ) -> Result<Vec<u64>> {
        let mut delay = Duration::from_millis(250);
        for _ in 1..LOST_CONNECTION_ATTEMPTS {
            match self
                .execute_all_then(statements.clone(), after.clone())
                .await
            {
                Err(StoreError::Db(e)) if connection_lost(&e) => {
                    tracing::warn!(error = %e, "{what}: the database connection was lost, retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                other => return other,
            }
        }
        self.execute_all_then(statements, after).await
    }

    /// Challenges whose validation started before `started_before` and never ended (the
    /// process validating them stopped): back to `pending`, so that the client's next POST
    /// validates again. Replicas sharing a database pass a time further back than any
    /// validation can take, so that none requeues another live replica's validation.
    pub async fn requeue_stuck_challenges(&self, started_before: i64) -> Result<u64> {
        // Which challenges went back is not told: when any did, memory forgets every
        // authorization (this is rare: a validation abandoned by a stopped process).
        let after = self.after(|fresh, requeued: Option<&u64>| {
            if requeued != Some(&0) {
                fresh.forget_all_authzs();
            }
        });
        self.execute_then(
            statement!(STALE_PROCESSING_CHALLENGES, started_before),
            after,
        )
        .await
    }

    pub async fn deactivate_authz(&self, id: &str) -> Result<bool> {
        let authz = id.to_owned();
        let after = self.after(move |fresh, _| fresh.forget_authz(&authz));
        let changed = self
            .execute_then(
                statement!(
                    "UPDATE authorizations SET status = 'deactivated' WHERE id = $1 AND status IN ('pending', 'valid')",
                    id
                ),
                after,
            )
            .await?;
        Ok(changed == 1)
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

    /// What memory does once an order is claimed: past this, it would only hold the order's
    /// rows for nobody.
    fn claim_changes<T: 'static>(&self, order_id: &str) -> Option<After<T>> {
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

    // ---- certificates (the issuance cycle) ----

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
                        status: "issued".into(),
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

    /// Drops order `id` from memory once a write that may change it has ended.
    fn order_changes<T: 'static>(&self, id: &str) -> Option<After<T>> {
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

    /// Serials of an order left at the `tbs` step by a crash: never reused, marked abandoned.
    pub async fn abandon_tbs_of_order(&self, order_id: &str) -> Result<u64> {
        self.execute(statement!(
            "UPDATE certificates SET status = 'abandoned' WHERE order_id = $1 AND status = 'tbs'",
            order_id
        ))
        .await
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

    /// A certificate for its download: its serial, issuer, account, status, DER and chain as
    /// [`Store::certificate`] has them, its revocation possibly not (an issuance of this
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

    // ---- revocation ----

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

    /// When the issuer's newest revocation happened (0 if none), in one shard or in all.
    pub async fn last_revocation(&self, issuer: &str, shard: Option<i64>) -> Result<i64> {
        let row = match shard {
            Some(shard) => sqlx::query(
                "SELECT MAX(revoked_at) AS t FROM certificates WHERE issuer = $1 AND crl_shard = $2",
            )
            .bind(issuer)
            .bind(shard),
            None => sqlx::query("SELECT MAX(revoked_at) AS t FROM certificates WHERE issuer = $1")
                .bind(issuer),
        }
        .fetch_one(&mut self.reader().await?)
        .await?;
        Ok(row.try_get::<Option<i64>, _>("t")?.unwrap_or(0))
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

    /// The newest stored CRL of one issuer's shard ([`FULL_CRL`]: its complete CRL).
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

    // ---- leases (one replica at a time) ----

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

    // ---- delegated OCSP responders ----

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

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// A connection to read on (see `connections`).
    async fn reader(&self) -> Result<Conn<'_>> {
        Ok(self.reads.get().await?)
    }
}

/// One statement on a connection of `conns` (a lost connection noted); the rows it changed.
async fn run_on(conns: &Connections, statement: &Statement) -> Result<u64> {
    let mut conn = conns.get().await?;
    let changed = statement.run(conn.connection()?).await;
    Ok(conn.noted(changed)?)
}

/// [`Store::complete_issuance`] on PostgreSQL, in one statement where a transaction took four
/// round trips: the order settles, then (only if it did, or there is no order) the `tbs` row
/// becomes the certificate, or, when there is none (an upstream CA chose the serial), the
/// certificate is inserted. `None`: the order had settled; else whether the `tbs` row was used.
async fn complete_in_one_statement(
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// Every pooled SQLite connection runs in WAL mode with `synchronous = FULL`: a commit (and
    /// so a certificate answered after it) has reached the disk, not only the page cache.
    #[tokio::test]
    async fn every_sqlite_connection_is_durable() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("pkid.db").display());
        let store = Store::connect(&url, 3).await.unwrap();
        async fn check(conn: &mut AnyConnection) {
            let synchronous: i64 = sqlx::query("PRAGMA synchronous")
                .fetch_one(&mut *conn)
                .await
                .unwrap()
                .try_get(0)
                .unwrap();
            let journal: String = sqlx::query("PRAGMA journal_mode")
                .fetch_one(&mut *conn)
                .await
                .unwrap()
                .try_get(0)
                .unwrap();
            assert_eq!((synchronous, journal.as_str()), (2, "wal"), "2 is FULL");
        }
        // The three read connections at once, and the pool's: each one was set up.
        let mut held = Vec::new();
        for _ in 0..3 {
            let mut conn = store.reader().await.unwrap();
            check(conn.connection().unwrap()).await;
            held.push(conn);
        }
        check(&mut store.pool().acquire().await.unwrap()).await;
    }

    #[test]
    fn statements_combined_for_postgresql_number_their_arguments_in_turn() {
        assert_eq!(
            renumber_arguments("UPDATE t SET a = $1 WHERE b = $2 AND c = $12 AND d = $", 3),
            "UPDATE t SET a = $4 WHERE b = $5 AND c = $15 AND d = $"
        );
        let combined = Statement::combined(&[
            statement!("INSERT INTO t (a, b) VALUES ($1, $2)", "x", 1i64),
            statement!(
                "UPDATE u SET a = CASE WHEN $1 > 0 THEN $1 ELSE a END WHERE id = $2;",
                2i64,
                "y"
            ),
        ])
        .unwrap();
        assert_eq!(
            combined.statement.sql,
            "WITH s0 AS (INSERT INTO t (a, b) VALUES ($1, $2) RETURNING 1), \
             s1 AS (UPDATE u SET a = CASE WHEN $3 > 0 THEN $3 ELSE a END WHERE id = $4 RETURNING 1) \
             SELECT (SELECT COUNT(*) FROM s0), (SELECT COUNT(*) FROM s1)"
        );
        assert_eq!((combined.statement.args.len(), combined.count), (4, 2));
        // One statement needs no combining; a read or a RETURNING cannot be combined.
        let insert = statement!("INSERT INTO t (a) VALUES ($1)", "x");
        assert!(Statement::combined(std::slice::from_ref(&insert)).is_none());
        for other in [
            statement!("SELECT a FROM t WHERE a = $1", "x"),
            statement!("INSERT INTO t (a) VALUES ($1) RETURNING a", "x"),
        ] {
            assert!(Statement::combined(&[insert.clone(), other]).is_none());
        }
    }

    /// On SQLite several statements go to the connection as one text: each still reports the
    /// rows it changed, their arguments keep to their own statement, and a statement that
    /// fails takes the earlier ones' changes with it.
    #[tokio::test]
    async fn statements_chained_for_sqlite_count_each_and_fail_as_one() {
        let chained = Statement::chained(&[
            statement!("INSERT INTO t (a, b) VALUES ($1, $2);", "x", 1i64),
            statement!("UPDATE t SET b = $2 WHERE a = $1", "x", 2i64),
        ]);
        assert_eq!(
            chained.statement.sql,
            "INSERT INTO t (a, b) VALUES ($1, $2);\nUPDATE t SET b = $4 WHERE a = $3"
        );
        assert_eq!((chained.statement.args.len(), chained.count), (4, 2));

        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("pkid.db").display());
        let store = Store::connect(&url, 1).await.unwrap();
        for id in ["a1", "a2"] {
            let account = AccountRow::for_tests(id);
            store.insert_account(&account, None).await.unwrap();
        }
        let accounts = || async {
            sqlx::query("SELECT id, contact, status FROM accounts ORDER BY id")
                .fetch_all(store.pool())
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get("id"), r.get("contact"), r.get("status")))
                .collect::<Vec<(String, String, String)>>()
        };
        let contact = |id: &str, contact: &str| {
            statement!(
                "UPDATE accounts SET contact = $1 WHERE id = $2",
                contact,
                id
            )
        };
        let changed = store
            .execute_all(vec![
                contact("a1", r#"["mailto:one@pkid.test"]"#),
                contact("nobody", "[]"),
                statement!(
                    "UPDATE accounts SET status = 'deactivated' WHERE id IN ($1, $2)",
                    "a1",
                    "a2"
                ),
            ])
            .await
            .unwrap();
        assert_eq!(changed, vec![1, 0, 2]);
        let expected = vec![
            (
                "a1".to_owned(),
                r#"["mailto:one@pkid.test"]"#.to_owned(),
                "deactivated".to_owned(),
            ),
            ("a2".to_owned(), "[]".to_owned(), "deactivated".to_owned()),
        ];
        assert_eq!(accounts().await, expected);

        // The second statement breaks the accounts' unique thumbprint: the first one's change
        // is undone with it, and the third never runs.
        let failed = store
            .execute_all(vec![
                contact("a2", r#"["mailto:two@pkid.test"]"#),
                statement!(
                    "UPDATE accounts SET thumbprint = 'thumbprint-a1' WHERE id = $1",
                    "a2"
                ),
                contact("a1", "[]"),
            ])
            .await;
        assert!(matches!(failed, Err(StoreError::Db(_))), "{failed:?}");
        assert_eq!(accounts().await, expected, "nothing half-written");
    }

    /// A finalize's claim and its to-be-signed record are one write: the first claim records
    /// its serial; a later one finds the order taken and records nothing.
    #[tokio::test]
    async fn a_claim_and_its_record_are_made_together_once() {
        let dir = tempfile::tempdir().unwrap();
        let (store, pending) = processing_order(&dir).await;
        let order = OrderRow::for_tests("second", "acct", "pending", now() + 3600);
        store.insert_order(&order, &[]).await.unwrap();
        let pending = PendingCertificate {
            order_id: Some("second"),
            ..pending
        };
        let first = Claim::for_tests("second", now());
        assert!(store
            .claim_with_tbs(&first, &pending, "01", b"tbs")
            .await
            .unwrap());
        let late = Claim {
            csr: b"another csr",
            ..first
        };
        assert!(!store
            .claim_with_tbs(&late, &pending, "02", b"tbs")
            .await
            .unwrap());
        // An order claimed on its own (an upstream CA's issuance) is not claimed again.
        assert!(!store
            .claim_with_tbs(&Claim::for_tests("order", now()), &pending, "03", b"tbs")
            .await
            .unwrap());

        let order = store.order("second").await.unwrap().unwrap();
        assert_eq!(order.status, "processing");
        assert_eq!(store.order_csr("second").await.unwrap().unwrap(), b"csr");
        let recorded = store.certificate("01").await.unwrap().unwrap();
        assert_eq!(
            (recorded.status.as_str(), recorded.order_id.as_deref()),
            ("tbs", Some("second"))
        );
        for serial in ["02", "03"] {
            assert!(
                store.certificate(serial).await.unwrap().is_none(),
                "{serial}"
            );
        }
    }

    /// Every way an issuance ends on SQLite, whose settle and store go to the connection as
    /// one text: from the `tbs` row, from an upstream CA (no `tbs` row), and both with no
    /// order (the REST surfaces' certificates).
    #[tokio::test]
    async fn every_way_an_issuance_completes_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let (store, pending) = processing_order(&dir).await;
        let upstream_order = OrderRow::for_tests("upstream", "acct", "pending", now() + 3600);
        store.insert_order(&upstream_order, &[]).await.unwrap();
        assert!(store
            .begin_processing(&Claim::for_tests("upstream", now()))
            .await
            .unwrap());
        let issued = |serial: &'static str| IssuedRecord {
            serial,
            tbs: b"tbs",
            der: b"der",
            chain_pem: "chain",
        };
        let upstream = PendingCertificate {
            order_id: Some("upstream"),
            ..pending
        };
        let no_order = PendingCertificate {
            order_id: None,
            ..pending
        };
        store.record_tbs(&pending, "01", b"tbs").await.unwrap();
        store
            .complete_issuance(&issued("01"), &pending)
            .await
            .unwrap();
        store
            .complete_issuance(&issued("02"), &upstream)
            .await
            .unwrap();
        store.record_tbs(&no_order, "03", b"tbs").await.unwrap();
        store
            .complete_issuance(&issued("03"), &no_order)
            .await
            .unwrap();
        store
            .complete_issuance(&issued("04"), &no_order)
            .await
            .unwrap();

        type Stored = (String, String, Option<String>, Option<Vec<u8>>);
        let rows: Vec<Stored> =
            sqlx::query("SELECT serial, status, order_id, der FROM certificates ORDER BY serial")
                .fetch_all(store.pool())
                .await
                .unwrap()
                .iter()
                .map(|r| {
                    (
                        r.get("serial"),
                        r.get("status"),
                        r.get("order_id"),
                        r.get("der"),
                    )
                })
                .collect();
        let der = Some(b"der".to_vec());
        let issued_row = |serial: &str, order: Option<&str>| {
            (
                serial.to_owned(),
                "issued".to_owned(),
                order.map(str::to_owned),
                der.clone(),
            )
        };
        assert_eq!(
            rows,
            vec![
                issued_row("01", Some("order")),
                issued_row("02", Some("upstream")),
                issued_row("03", None),
                issued_row("04", None),
            ]
        );
        for (order, serial) in [("order", "01"), ("upstream", "02")] {
            let row = store.order(order).await.unwrap().unwrap();
            assert_eq!(
                (row.status.as_str(), row.certificate_serial.as_deref()),
                ("valid", Some(serial))
            );
        }
    }

    #[test]
    fn a_lost_connection_is_told_from_a_refused_statement() {
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(connection_lost(&sqlx::Error::Io(reset)));
        assert!(connection_lost(&sqlx::Error::PoolTimedOut));
        assert!(!connection_lost(&sqlx::Error::RowNotFound));
    }

    /// The queries that run on every newOrder, order and authorization read, and every
    /// recovery round find their rows through an index: their cost does not grow with the
    /// number of orders the CA has made.
    #[tokio::test]
    async fn plans_of_frequent_queries_use_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("pkid.db").display());
        let store = Store::connect(&url, 1).await.unwrap();
        let queries = [
            ("reusable orders and authorization", REUSE_CANDIDATES),
            ("reusable authorization", REUSABLE_AUTHZ),
            ("order replacing a certificate", ORDER_REPLACING),
            ("stale processing orders", STALE_PROCESSING_ORDERS),
            ("stale processing challenges", STALE_PROCESSING_CHALLENGES),
            ("orders since", ORDERS_SINCE),
            ("authorizations since", AUTHZS_SINCE),
            ("order with authorizations", ORDER_WITH_AUTHZS),
            ("authorization with challenges", AUTHZ_WITH_CHALLENGES),
        ];
        for (what, sql) in queries {
            let plan: Vec<String> = sqlx::query(&format!("EXPLAIN QUERY PLAN {sql}"))
                .fetch_all(store.pool())
                .await
                .unwrap()
                .iter()
                .map(|row| row.get::<String, _>("detail"))
                .collect();
            // A scan of a `WITH` clause's few rows is no table's.
            let scanned = |step: &&String| {
                step.strip_prefix("SCAN ").is_some_and(|rest| {
                    !["reuse_orders", "reuse_authz"]
                        .iter()
                        .any(|cte| rest.split_whitespace().next() == Some(cte))
                })
            };
            assert!(
                !plan.iter().any(|step| scanned(&step)),
                "{what} reads a whole table: {plan:?}"
            );
            assert!(
                plan.iter().any(|step| step.starts_with("SEARCH ")),
                "{what}: {plan:?}"
            );
        }
    }

    /// A store with account `acct` and its order `order` in `processing`, and what the
    /// issuance cycle knows of the order's certificate.
    async fn processing_order(dir: &tempfile::TempDir) -> (Store, PendingCertificate<'static>) {
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("pkid.db").display());
        let store = Store::connect(&url, 2).await.unwrap();
        let t = now();
        store
            .insert_account(&AccountRow::for_tests("acct"), None)
            .await
            .unwrap();
        let order = OrderRow::for_tests("order", "acct", "pending", t + 3600);
        store.insert_order(&order, &[]).await.unwrap();
        assert!(store
            .begin_processing(&Claim::for_tests("order", t))
            .await
            .unwrap());
        let pending = PendingCertificate {
            issuer: "default",
            order_id: Some("order"),
            account_id: Some("acct"),
            not_before: t,
            not_after: t + 86400,
            crl_shard: None,
        };
        (store, pending)
    }

    /// A challenge whose validation started before the bound goes back to `pending`; one
    /// that another replica is validating right now stays `processing`.
    #[tokio::test]
    async fn only_challenges_stuck_past_the_bound_are_requeued() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = processing_order(&dir).await;
        let t = now();
        let authz = NewAuthz {
            id: "authz".into(),
            id_type: "dns".into(),
            id_value: "lease.pkid.test".into(),
            wildcard: false,
            expires: t + 3600,
            challenges: vec![
                ("stuck".into(), "http-01".into(), "token-1".into()),
                ("in-flight".into(), "dns-01".into(), "token-2".into()),
            ],
        };
        let order = OrderRow::for_tests("order-2", "acct", "pending", t + 3600);
        store
            .insert_order(&order, &[OrderAuthz::New(authz)])
            .await
            .unwrap();
        for id in ["stuck", "in-flight"] {
            assert!(store.start_challenge(id).await.unwrap());
        }
        // The first one started long ago, on a replica that has stopped since.
        sqlx::query("UPDATE challenges SET processing_since = $1 WHERE id = 'stuck'")
            .bind(t - 600)
            .execute(store.pool())
            .await
            .unwrap();

        assert_eq!(store.requeue_stuck_challenges(t - 60).await.unwrap(), 1);
        let status = |id: &'static str| {
            let store = store.clone();
            async move {
                store
                    .challenge_with_authz(id)
                    .await
                    .unwrap()
                    .unwrap()
                    .0
                    .status
            }
        };
        assert_eq!(status("stuck").await, "pending");
        assert_eq!(status("in-flight").await, "processing");
        // The live validation's outcome is still recorded, and a requeued challenge starts again.
        assert!(store
            .finish_challenge("in-flight", "authz", Some(t), None, t + 3600)
            .await
            .unwrap());
        assert!(store.start_challenge("stuck").await.unwrap());
    }

    /// A failed issuance leaves no serial at the `tbs` step: failing the order abandons it,
    /// even when the step that should have abandoned it never ran.
    #[tokio::test]
    async fn a_failed_order_abandons_its_unsigned_serials() {
        let dir = tempfile::tempdir().unwrap();
        let (store, pending) = processing_order(&dir).await;
        store.record_tbs(&pending, "03cc", b"tbs").await.unwrap();
        store.fail_order("order", r#"{"type":"x"}"#).await.unwrap();

        let order = store.order("order").await.unwrap().unwrap();
        assert_eq!(order.status, "invalid");
        let cert = store.certificate("03cc").await.unwrap().unwrap();
        assert_eq!(cert.status, "abandoned");
    }

    /// A recovery that took over a slow issuance, and the slow one, both finish: the order keeps
    /// the first certificate stored, the second is refused and left for the CA to abandon.
    #[tokio::test]
    async fn of_two_issuances_for_one_order_only_the_first_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let (store, pending) = processing_order(&dir).await;
        let record = |serial: &'static str| IssuedRecord {
            serial,
            tbs: b"tbs",
            der: serial.as_bytes(),
            chain_pem: "",
        };
        for serial in ["01aa", "02bb"] {
            store.record_tbs(&pending, serial, b"tbs").await.unwrap();
        }

        store
            .complete_issuance(&record("01aa"), &pending)
            .await
            .unwrap();
        let late = store.complete_issuance(&record("02bb"), &pending).await;
        assert!(
            matches!(late, Err(StoreError::OrderSettled(ref id)) if id == "order"),
            "{late:?}"
        );

        let order = store.order("order").await.unwrap().unwrap();
        assert_eq!(
            (order.status.as_str(), order.certificate_serial.as_deref()),
            ("valid", Some("01aa"))
        );
        let served = store.certificate_of_order("order").await.unwrap().unwrap();
        assert_eq!(served.serial, "01aa");
        let refused = store.certificate("02bb").await.unwrap().unwrap();
        assert_eq!((refused.status.as_str(), refused.der), ("tbs", None));
    }
}

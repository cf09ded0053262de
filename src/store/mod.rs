//! Storage: sqlx `Any` connections to SQLite (embedded default) or PostgreSQL (replicas sharing
//! one database), with the same SQL on both except where PostgreSQL does in one statement what
//! SQLite does in a transaction (data-modifying `WITH`s: `Statement::combined`, the nonce
//! redeemed with the account and the request's resource read (`fast::prefetch`), an issuance's
//! last step), on connections the store holds itself rather than sqlx's pool, which pings a
//! connection at every use (`connections`).
//! SQLite: read connections, one writer task that commits in groups (`group_commit`), and, as
//! this process is the file's only writer, accounts and fresh ACME rows in memory (`fast`).
//! PostgreSQL: reads and writes on the same connections, nothing kept in memory.
//!
//! Every state transition that must happen once is a conditional `UPDATE … WHERE status = …`
//! whose `rows_affected()` decides the winner; nothing is selected and then updated.
//!
//! ## Reads and writes
//!
//! [`Reads`] is the store's read side and [`Store`] the whole (Boulder's `sa/saro.go` beside
//! `sa/sa.go`): a `Store` holds its `Reads` and derefs to it, so every read is called on a
//! `Store` as on a `Reads`, and [`Store::reads`] hands out a `Reads` (a few `Arc`s cloned) to
//! code that must not write. A method is a write, defined on `Store`, when it inserts, updates,
//! deletes, redeems a nonce, claims an order or takes a lease, or changes what memory holds for
//! later reads (`fast`); one that reads and writes (the account read by the statement that
//! redeems the nonce) is a write. A read keeps in memory only a row it read itself, and only
//! where no kept copy can outlive a change of the row: the account cache's generations
//! (`fast::accounts`), so [`Reads::account`] is a read.
//!
//! ## Where each thing is
//!
//! Each aggregate's file holds its reads (`impl Reads`), its writes (`impl Store`) and its SQL.
//!
//! - `mod.rs`: [`Store`], [`Reads`], [`StoreError`], [`Database`], `connect`, and the writes every
//!   aggregate's go through (`write`, `execute*`, on SQLite with what they change in memory).
//! - `sql.rs`: the statement engine: [`Arg`], [`Statement`] (chained for SQLite, combined for
//!   PostgreSQL), one run on a held connection, a lost connection told from a refused statement,
//!   a row read with the rows joined to it; SQLite's pragmas.
//! - `rows.rs`: the rows read ([`AccountRow`], [`OrderRow`] …), their columns, how each is read.
//! - `status.rs`: the rows' statuses ([`OrderStatus`] …), and those ACME derives from them.
//! - `nonces.rs`: redeemed nonces (RFC 8555 §7.2) and the settings replicas share.
//! - `accounts.rs`: accounts (RFC 8555 §7.3); `eab.rs`: external account binding keys
//!   (§7.3.4).
//! - `users.rs`: users, the certificates linked to them and the keys bound to them;
//!   `clients.rs`: OAuth2 clients; `tokens.rs`: admin tokens (each with its rows: they are
//!   read nowhere else).
//! - `cert_links.rs`: IAM's certificate linking requests, approved into `user_certificates`;
//!   `proxies.rs`: users' uploaded RFC 3820 proxies, their keys sealed.
//! - `orders.rs`: orders (RFC 8555 §7.4): newOrder's reuse lookups and rate-limit counts, a
//!   finalize's claim, how an order fails, settles or is recovered.
//! - `authorizations.rs`: authorizations and challenges (RFC 8555 §7.5).
//! - `certificates.rs`: the issuance cycle's records (to-be-signed, issued, abandoned) and the
//!   certificates.
//! - `authorities.rs`: CAs made at run time (the issuer registry's stored part) and the version
//!   every change of them bumps; `cert_requests.rs`: certificate requests (Notary);
//!   `account_numbers.rs`: Notary's integer account numbers over the users.
//! - `ra_profiles.rs`: the RA's client-operation records (CZERTAINLY-style): authorities, RA
//!   profiles, v1 end entities; `ra_certificates.rs`: certificates as RA records, their events
//!   and the background work due on them; `ra_keys.rs`: token profiles and managed keys.
//! - `crls.rs`: revocations, CRLs (RFC 5280 §5), the leases of their generation.
//! - `ocsp.rs`: delegated OCSP responders (RFC 6960).
//! - `audit.rs`: the audit trail's hash chain and its signed checkpoints, appended only (how
//!   one chain stays one under replicas and crashes is written there).
//! - `fast/`: the ACME fast paths: reads answered from memory (SQLite) or with the nonce
//!   (PostgreSQL), and the rule that keeps them exact.
//! - `connections.rs`: the connections the store holds; `group_commit.rs`: SQLite's writer.
//! - `tests.rs`: the store against a real SQLite file.

mod account_numbers;
mod accounts;
mod audit;
mod authorities;
mod authorizations;
mod cert_links;
pub mod cert_requests;
mod certificates;
mod clients;
pub mod connections;
mod crls;
mod eab;
mod fast;
mod group_commit;
mod inventory;
mod nonces;
mod ocsp;
mod orders;
mod proxies;
mod ra_certificates;
mod ra_keys;
mod ra_profiles;
mod rows;
mod sql;
mod status;
mod tokens;
mod users;

#[cfg(test)]
mod tests;

use std::ops::Deref;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyConnection, AnyPool, ConnectOptions, Connection};

use connections::{connection_lost, sqlite_pragmas, LOST_CONNECTION_ATTEMPTS};
use connections::{Conn, Connections, Kind};
use group_commit::{After, GroupCommit, JobFuture};
use sql::run_on;

pub use account_numbers::AccountNumbered;
pub use accounts::NewAccountOutcome;
pub use audit::{AuditCheckpointRow, AuditEntryRow, EntryHasher, GENESIS_HASH};
pub use authorities::{CaCertified, CaRow, NewCaRow};
pub use authorizations::NewAuthz;
pub use cert_links::{Approval, CertLinkFilter, CertLinkRequestRow, CertLinkStatus};
pub use cert_requests::{CertRequestRow, NewCertRequest, SignedRequest};
pub use certificates::{IssuedRecord, PendingCertificate};
pub use clients::ClientRow;
pub use fast::{Prefetch, Prefetched};
pub use group_commit::Written;
pub use inventory::{IssuerInventory, EXPIRY_HORIZON_DAYS};
pub use orders::{AuthzReuse, Claim, OrderAuthz, OrderReuse};
pub use proxies::UserProxyRow;
pub use ra_certificates::{RaCertificateRow, RaChange, RaEventRow};
pub use ra_keys::{RaManagedKeyRow, RaTokenProfileRow};
pub use ra_profiles::{RaAuthorityRow, RaEndEntityRow, RaProfileRow};
pub use rows::{
    AccountRow, AuthzRow, CertificateRow, ChallengeRow, CrlMeta, CrlRow, EabKeyRow,
    OcspResponderRow, OrderRow, RevokedRow, SealedEabKey, FULL_CRL,
};
pub use sql::{Arg, Statement};
pub use status::{
    AccountStatus, AuthzStatus, CertificateStatus, ChallengeStatus, OrderStatus, UnknownStatus,
};
pub use tokens::AdminTokenRow;
pub use users::{UserCertificateRow, UserKeyRow, UserRow};

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

pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// What the store runs on: the embedded SQLite file, this process its only writer, or a
/// PostgreSQL server that replicas share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Database {
    Sqlite,
    Postgres,
}

/// The store's read side: every method of it only reads. A [`Store`] derefs to its `Reads`;
/// [`Store::reads`] hands one out to code that must not write.
#[derive(Clone)]
pub struct Reads {
    /// Where reads go (see `connections`): SQLite's read connections; on PostgreSQL the
    /// connections of reads and durable writes.
    connections: Arc<Connections>,
    /// Accounts in memory, when this process is the database's only writer (SQLite).
    accounts: Option<Arc<fast::accounts::AccountCache>>,
    /// Orders and authorizations until finalized, issued certificates for their download:
    /// likewise (`fast::fresh`).
    fresh: Option<Arc<fast::fresh::FreshObjects>>,
    pub database: Database,
}

/// The store: its reads ([`Reads`], which it derefs to) and its writes.
#[derive(Clone)]
pub struct Store {
    reads: Reads,
    /// Migrations (and tests' own queries).
    pool: AnyPool,
    /// Where writes go.
    writes: Writes,
}

/// Every read is called on a `Store` as on its `Reads`.
impl Deref for Store {
    type Target = Reads;

    fn deref(&self) -> &Reads {
        &self.reads
    }
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
pub fn automatic_connections(database: Database) -> u32 {
    match database {
        Database::Sqlite => std::thread::available_parallelism()
            .map_or(2, |n| u32::try_from(n.get()).unwrap_or(u32::MAX))
            .max(2),
        Database::Postgres => 8,
    }
}

impl Store {
    /// Connect, apply pending migrations, and set SQLite to durable WAL mode. `max_connections`
    /// 0 picks the pool's size for the database ([`automatic_connections`]).
    pub async fn connect(url: &str, max_connections: u32) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let database = if url.starts_with("postgres") {
            Database::Postgres
        } else {
            Database::Sqlite
        };
        let max_connections = match max_connections {
            0 => automatic_connections(database),
            n => n,
        };
        let options = AnyConnectOptions::from_str(url)?;
        // Reads and writes have connections of their own (`connections`): the pool only
        // migrates.
        let pool = AnyPoolOptions::new()
            .max_connections(match database {
                Database::Sqlite => 1,
                Database::Postgres => MIGRATION_CONNECTIONS,
            })
            .acquire_timeout(Duration::from_secs(30))
            // Idle after the migrations: not kept holding a server's connection slots.
            .idle_timeout(Duration::from_secs(60))
            .test_before_acquire(database == Database::Postgres)
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if database == Database::Sqlite {
                        sqlite_pragmas(conn).await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options.clone())
            .await?;
        match database {
            Database::Sqlite => sqlx::migrate!("./migrations/sqlite").run(&pool).await?,
            Database::Postgres => sqlx::migrate!("./migrations/postgres").run(&pool).await?,
        }
        let (connections, writes) = match database {
            Database::Sqlite => {
                let reads = Connections::open(&options, max_connections, Kind::File).await?;
                let mut conn = options.connect().await?;
                sqlite_pragmas(&mut conn).await?;
                (Arc::new(reads), Writes::Grouped(GroupCommit::start(conn)))
            }
            Database::Postgres => {
                let conns =
                    Arc::new(Connections::open(&options, max_connections, Kind::Server).await?);
                let unflushed = Arc::new(
                    Connections::open(&options, UNFLUSHED_CONNECTIONS, Kind::ServerUnflushed)
                        .await?,
                );
                (conns.clone(), Writes::Server { conns, unflushed })
            }
        };
        let accounts = (database == Database::Sqlite)
            .then(|| Arc::new(fast::accounts::AccountCache::default()));
        let fresh =
            (database == Database::Sqlite).then(|| Arc::new(fast::fresh::FreshObjects::default()));
        Ok(Store {
            reads: Reads {
                connections,
                accounts,
                fresh,
                database,
            },
            pool,
            writes,
        })
    }

    /// The read side, for code that must not write (a few `Arc`s cloned).
    pub fn reads(&self) -> Reads {
        self.reads.clone()
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
        change: impl Fn(&fast::fresh::FreshObjects, Option<&T>) + Send + Sync + 'static,
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

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }
}

impl Reads {
    /// A connection to read on (see `connections`).
    async fn reader(&self) -> Result<Conn<'_>> {
        Ok(self.connections.get().await?)
    }
}

//! The connections the store holds itself, outside sqlx's pool: SQLite's read connections and
//! every PostgreSQL connection.
//!
//! sqlx's pool checks every connection given back to it (a `ping`, in a task spawned for it)
//! and, when asked to, every connection it hands out. Each check is a round trip: to the
//! connection's worker thread with SQLite (a wake-up there and one back), to the server with
//! PostgreSQL (a wake-up of its backend process too). An ACME request makes a few small queries,
//! so the checks were most of its round trips: on PostgreSQL, 44 of about 77 per issuance.
//! These connections are handed out and given back without them:
//!
//! - **SQLite** ([`Kind::File`]): every connection is opened at start and none is ever checked.
//!   A read connection never opens a transaction, and an SQLite worker runs its commands one
//!   after the other and drops the rest of a result nobody receives, so a read dropped halfway
//!   (a client that hung up) leaves the next query unaffected.
//! - **PostgreSQL** ([`Kind::Server`]): a network connection can break between queries (a server
//!   restart, a failover). A connection is opened on first use, and checked with a `ping` before
//!   it is handed out only when it has been idle for [`CHECK_AFTER_IDLE`] (as HikariCP does:
//!   under load a connection is never idle that long, and one a restart broke fails at its next
//!   use anyway). A query that fails for a lost connection (`connection_lost` in the store)
//!   marks it, and a marked connection is closed when given back; the next holder opens a new
//!   one, waiting up to [`CONNECT_PATIENCE`] while the server is down, as sqlx's pool did.
//!   sqlx's PostgreSQL connection finishes or rolls back what a dropped future left behind at
//!   its next use.
//!
//! A holder runs queries through `&mut Conn` (it implements sqlx's `Executor`, noting failures
//! on the way) or, for a transaction, through [`Conn::connection`] and [`Conn::note`].

use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::{FutureExt, StreamExt, TryFutureExt, TryStreamExt};
use sqlx::any::{AnyConnectOptions, AnyQueryResult, AnyRow, AnyStatement, AnyTypeInfo};

use sqlx::{Any, AnyConnection, ConnectOptions, Connection, Describe, Either, Execute, Executor};
use tokio::sync::{Mutex, MutexGuard, Semaphore, SemaphorePermit};

/// A PostgreSQL connection used within this long is handed out unchecked.
pub const CHECK_AFTER_IDLE: Duration = Duration::from_millis(500);
/// How long a holder waits for the server to take a new connection before it fails.
pub const CONNECT_PATIENCE: Duration = Duration::from_secs(30);

/// What the connections reach, and how each is set up once opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The embedded SQLite file (WAL, `synchronous = FULL`).
    File,
    /// A PostgreSQL server.
    Server,
    /// A PostgreSQL server, with `synchronous_commit = off`: for writes no client relies on
    /// surviving a crash.
    ServerUnflushed,
}

pub struct Connections {
    slots: Vec<Mutex<Slot>>,
    /// One per slot: a holder that gets a permit finds a slot free.
    permits: Semaphore,
    options: AnyConnectOptions,
    kind: Kind,
    check_after_idle: Duration,
}

#[derive(Default)]
struct Slot {
    conn: Option<AnyConnection>,
    /// When the connection was last given back.
    used: Option<Instant>,
    /// A query on it failed for a lost connection: it is closed when given back.
    lost: bool,
}

impl Connections {
    /// `count` connections (at least one) to `options`. SQLite's are opened now; a server's on
    /// first use.
    pub async fn open(
        options: &AnyConnectOptions,
        count: u32,
        kind: Kind,
    ) -> Result<Connections, sqlx::Error> {
        Connections::open_checking(options, count, kind, CHECK_AFTER_IDLE).await
    }

    /// [`Connections::open`] with another idle time before a check (tests).
    pub async fn open_checking(
        options: &AnyConnectOptions,
        count: u32,
        kind: Kind,
        check_after_idle: Duration,
    ) -> Result<Connections, sqlx::Error> {
        let count = count.max(1) as usize;
        let mut slots = Vec::with_capacity(count);
        for _ in 0..count {
            let mut slot = Slot::default();
            if kind == Kind::File {
                slot.conn = Some(connect(options, kind).await?);
            }
            slots.push(Mutex::new(slot));
        }
        Ok(Connections {
            permits: Semaphore::new(slots.len()),
            slots,
            options: options.clone(),
            kind,
            check_after_idle,
        })
    }

    /// A connection, waiting in turn (first come, first served) while all are in use; on a
    /// server, opened or checked first when needed.
    pub async fn get(&self) -> Result<Conn<'_>, sqlx::Error> {
        let permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| sqlx::Error::PoolClosed)?;
        // Every holder of a slot holds a permit, and gives the slot back first. The first free
        // slot is taken, so that a light load keeps to few connections.
        let slot = self
            .slots
            .iter()
            .find_map(|slot| slot.try_lock().ok())
            .ok_or(sqlx::Error::PoolTimedOut)?;
        let mut conn = Conn {
            slot,
            _permit: permit,
        };
        self.make_ready(&mut conn.slot).await?;
        Ok(conn)
    }

    async fn make_ready(&self, slot: &mut Slot) -> Result<(), sqlx::Error> {
        if let Some(conn) = slot.conn.as_mut() {
            let idle = slot
                .used
                .is_none_or(|used| used.elapsed() >= self.check_after_idle);
            if self.kind == Kind::File || !idle || conn.ping().await.is_ok() {
                return Ok(());
            }
            tracing::info!("a database connection idle since before it broke is replaced");
            slot.conn = None;
        }
        let deadline = Instant::now() + CONNECT_PATIENCE;
        let mut pause = Duration::from_millis(50);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let attempt = tokio::time::timeout(left, connect(&self.options, self.kind)).await;
            match attempt {
                Ok(Ok(conn)) => {
                    slot.conn = Some(conn);
                    slot.used = Some(Instant::now());
                    return Ok(());
                }
                Ok(Err(e)) if connection_lost(&e) && Instant::now() + pause < deadline => {
                    tracing::debug!(error = %e, "the database does not take connections yet");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(sqlx::Error::PoolTimedOut),
            }
        }
    }

    #[cfg(test)]
    fn open_connections(&self) -> usize {
        self.slots
            .iter()
            .filter(|slot| slot.try_lock().is_ok_and(|slot| slot.conn.is_some()))
            .count()
    }
}

async fn connect(options: &AnyConnectOptions, kind: Kind) -> Result<AnyConnection, sqlx::Error> {
    let mut conn = options.connect().await?;
    if kind == Kind::File {
        sqlite_pragmas(&mut conn).await?;
        return Ok(conn);
    }
    // A statement pkid prepares runs on one generic plan, made once per connection. PostgreSQL's
    // default plans the first five executions for their values and afterwards goes on doing so
    // whenever its estimate for the generic plan is higher, so many executions paid for their
    // own planning (4 % of PostgreSQL's CPU per issuance, 4 % more issuances/s measured). Every
    // statement of the store finds its rows by the keys its parameters give, through the same
    // indexes whatever their values.
    conn.execute("SET plan_cache_mode = force_generic_plan")
        .await?;
    if kind == Kind::ServerUnflushed {
        conn.execute("SET synchronous_commit = off").await?;
    }
    Ok(conn)
}

/// A connection out of [`Connections`], given back when dropped (before its permit: fields
/// drop in order).
pub struct Conn<'a> {
    slot: MutexGuard<'a, Slot>,
    _permit: SemaphorePermit<'a>,
}

impl Conn<'_> {
    /// The connection itself, for a transaction; report what came of it with [`Conn::note`].
    pub fn connection(&mut self) -> Result<&mut AnyConnection, sqlx::Error> {
        self.slot.conn.as_mut().ok_or(sqlx::Error::PoolClosed)
    }

    /// Marks the connection lost when `e` says it is.
    pub fn note(&mut self, e: &sqlx::Error) {
        self.slot.lost |= connection_lost(e);
    }

    /// The connection and its lost mark, borrowed apart.
    fn parts(&mut self) -> Option<(&mut AnyConnection, &mut bool)> {
        let Slot { conn, lost, .. } = &mut *self.slot;
        conn.as_mut().map(|conn| (conn, lost))
    }

    /// [`Conn::note`] on the error of `result`, which is passed through.
    pub fn noted<T>(&mut self, result: Result<T, sqlx::Error>) -> Result<T, sqlx::Error> {
        if let Err(e) = &result {
            self.note(e);
        }
        result
    }
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        let slot = &mut *self.slot;
        if std::mem::take(&mut slot.lost) {
            tracing::info!("a lost database connection is closed");
            slot.conn = None;
        }
        slot.used = Some(Instant::now());
    }
}

impl std::fmt::Debug for Conn<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("open", &self.slot.conn.is_some())
            .field("lost", &self.slot.lost)
            .finish()
    }
}

/// Marks `lost` when an error says the connection is.
fn noting(lost: &mut bool) -> impl FnMut(&sqlx::Error) + Send + '_ {
    move |e| *lost |= connection_lost(e)
}

fn closed<'e, T: Send + 'e>() -> BoxFuture<'e, Result<T, sqlx::Error>> {
    std::future::ready(Err(sqlx::Error::PoolClosed)).boxed()
}

impl<'c> Executor<'c> for &'c mut Conn<'_> {
    type Database = Any;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, Result<Either<AnyQueryResult, AnyRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Any>,
    {
        match self.parts() {
            Some((conn, lost)) => conn.fetch_many(query).inspect_err(noting(lost)).boxed(),
            None => futures_util::stream::once(closed()).boxed(),
        }
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<AnyRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Any>,
    {
        match self.parts() {
            Some((conn, lost)) => conn.fetch_optional(query).inspect_err(noting(lost)).boxed(),
            None => closed(),
        }
    }

    fn prepare_with<'e, 'q: 'e>(
        self,
        sql: &'q str,
        parameters: &'e [AnyTypeInfo],
    ) -> BoxFuture<'e, Result<AnyStatement<'q>, sqlx::Error>>
    where
        'c: 'e,
    {
        match self.slot.conn.as_mut() {
            Some(conn) => conn.prepare_with(sql, parameters),
            None => closed(),
        }
    }

    fn describe<'e, 'q: 'e>(self, sql: &'q str) -> BoxFuture<'e, Result<Describe<Any>, sqlx::Error>>
    where
        'c: 'e,
    {
        match self.slot.conn.as_mut() {
            Some(conn) => conn.describe(sql),
            None => closed(),
        }
    }
}

/// Tries of [`Store::execute_retrying`](super::Store::execute_retrying) when the connection is
/// lost (250 ms, doubling, between).
pub(super) const LOST_CONNECTION_ATTEMPTS: u32 = 4;

/// The database went away under a statement (a restart, a cut connection), as opposed to
/// refusing it: worth another try on a fresh connection.
pub(super) fn connection_lost(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut => true,
        // SQLSTATE class 08 (connection exception), 57P01-03 (shutdown, cannot connect now).
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| code.starts_with("08") || code.starts_with("57P")),
        _ => false,
    }
}

/// Every SQLite connection, the writer's and the readers': WAL, durable commits.
pub(super) async fn sqlite_pragmas(
    conn: &mut AnyConnection,
) -> std::result::Result<(), sqlx::Error> {
    conn.execute("PRAGMA journal_mode = WAL").await?;
    // FULL: a commit, and so every answer given after it, has reached the disk.
    conn.execute("PRAGMA synchronous = FULL").await?;
    // Still needed: other processes (the CLI) write to the same file.
    conn.execute("PRAGMA busy_timeout = 10000").await?;
    conn.execute("PRAGMA foreign_keys = ON").await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use sqlx::Row;
    use std::str::FromStr;

    async fn file(dir: &tempfile::TempDir, count: u32) -> Connections {
        sqlx::any::install_default_drivers();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("r.db").display());
        Connections::open(
            &AnyConnectOptions::from_str(&url).unwrap(),
            count,
            Kind::File,
        )
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn holders_wait_their_turn_and_every_connection_comes_back() {
        let dir = tempfile::tempdir().unwrap();
        let conns = std::sync::Arc::new(file(&dir, 2).await);
        let first = conns.get().await.unwrap();
        let second = conns.get().await.unwrap();
        // Both are out: a third waits until one is given back.
        let waiting = {
            let conns = conns.clone();
            tokio::spawn(async move {
                let mut conn = conns.get().await.unwrap();
                sqlx::query("SELECT 7 AS n")
                    .fetch_one(&mut conn)
                    .await
                    .unwrap()
                    .get::<i64, _>("n")
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "a third holder got a connection");
        drop(first);
        assert_eq!(waiting.await.unwrap(), 7);
        drop(second);
        assert_eq!(conns.permits.available_permits(), 2);
        assert_eq!(conns.open_connections(), 2);
    }

    #[tokio::test]
    async fn a_read_dropped_halfway_leaves_the_connection_usable() {
        let dir = tempfile::tempdir().unwrap();
        let conns = file(&dir, 1).await;
        {
            let mut conn = conns.get().await.unwrap();
            // A client that went away: its request's read is dropped while SQLite still runs it.
            let long = sqlx::query(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000000) \
                 SELECT i FROM n",
            )
            .fetch_all(&mut conn);
            let cut = tokio::time::timeout(Duration::from_millis(5), long).await;
            assert!(cut.is_err(), "the long read finished within 5 ms");
        }
        let mut conn = conns.get().await.unwrap();
        let n: i64 = sqlx::query("SELECT 42 AS n")
            .fetch_one(&mut conn)
            .await
            .unwrap()
            .get("n");
        assert_eq!(n, 42);
    }

    /// A failed query that is not about the connection (an SQL error) keeps it.
    #[tokio::test]
    async fn an_sql_error_keeps_the_connection() {
        let dir = tempfile::tempdir().unwrap();
        let conns = file(&dir, 1).await;
        {
            let mut conn = conns.get().await.unwrap();
            let failed = sqlx::query("SELECT * FROM no_such_table")
                .fetch_optional(&mut conn)
                .await;
            assert!(failed.is_err());
            assert!(!conn.slot.lost);
        }
        assert_eq!(conns.open_connections(), 1);
    }

    #[test]
    fn a_lost_connection_is_told_from_a_refused_statement() {
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(connection_lost(&sqlx::Error::Io(reset)));
        assert!(connection_lost(&sqlx::Error::PoolTimedOut));
        assert!(!connection_lost(&sqlx::Error::RowNotFound));
    }
}

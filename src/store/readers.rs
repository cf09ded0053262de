//! The embedded SQLite file's read connections.
//!
//! sqlx's pool checks every connection given back to it: a `ping` to the connection's worker
//! thread, in a task spawned for it. With SQLite every query is already a round trip to that
//! thread (a wake-up there and one back), so the check doubles the thread hand-offs of every
//! read, and reads are most of what an ACME request does besides its signature check. These
//! connections are handed out and given back without it.
//!
//! The check guards against a connection left mid-transaction or mid-result by a dropped
//! future. A read connection never opens a transaction, and an SQLite worker runs its commands
//! one after the other and drops the rest of a result nobody receives, so the next query on
//! the connection is unaffected. PostgreSQL reads keep sqlx's pool: a network connection can
//! break between queries.

use sqlx::any::AnyConnectOptions;
use sqlx::{AnyConnection, ConnectOptions};
use tokio::sync::{Mutex, MutexGuard, Semaphore, SemaphorePermit};

use super::sqlite_pragmas;

pub struct Readers {
    connections: Vec<Mutex<AnyConnection>>,
    /// One per connection: a reader that gets a permit finds a connection free.
    permits: Semaphore,
}

impl Readers {
    /// Opens `count` connections (at least one), set up as every SQLite connection is.
    pub async fn open(options: &AnyConnectOptions, count: u32) -> Result<Readers, sqlx::Error> {
        let mut connections = Vec::with_capacity(count.max(1) as usize);
        for _ in 0..count.max(1) {
            let mut conn = options.connect().await?;
            sqlite_pragmas(&mut conn).await?;
            connections.push(Mutex::new(conn));
        }
        Ok(Readers {
            permits: Semaphore::new(connections.len()),
            connections,
        })
    }

    /// A connection, waiting in turn (first come, first served) while all are in use.
    pub async fn get(&self) -> Result<Reader<'_>, sqlx::Error> {
        let permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| sqlx::Error::PoolClosed)?;
        // Every holder of a connection holds a permit, and gives the connection back first.
        self.connections
            .iter()
            .find_map(|slot| slot.try_lock().ok())
            .map(|conn| Reader {
                conn,
                _permit: permit,
            })
            .ok_or(sqlx::Error::PoolTimedOut)
    }
}

/// A connection out of [`Readers`], given back when dropped (before its permit: fields drop
/// in order).
pub struct Reader<'a> {
    conn: MutexGuard<'a, AnyConnection>,
    _permit: SemaphorePermit<'a>,
}

impl std::ops::Deref for Reader<'_> {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        &self.conn
    }
}

impl std::ops::DerefMut for Reader<'_> {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        &mut self.conn
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use sqlx::Row;
    use std::str::FromStr;

    async fn readers(dir: &tempfile::TempDir, count: u32) -> Readers {
        sqlx::any::install_default_drivers();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("r.db").display());
        Readers::open(&AnyConnectOptions::from_str(&url).unwrap(), count)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn readers_wait_their_turn_and_every_connection_comes_back() {
        let dir = tempfile::tempdir().unwrap();
        let readers = std::sync::Arc::new(readers(&dir, 2).await);
        let first = readers.get().await.unwrap();
        let second = readers.get().await.unwrap();
        // Both are out: a third waits until one is given back.
        let waiting = {
            let readers = readers.clone();
            tokio::spawn(async move {
                let mut conn = readers.get().await.unwrap();
                sqlx::query("SELECT 7 AS n")
                    .fetch_one(&mut *conn)
                    .await
                    .unwrap()
                    .get::<i64, _>("n")
            })
        };
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "a third reader got a connection");
        drop(first);
        assert_eq!(waiting.await.unwrap(), 7);
        drop(second);
        assert_eq!(readers.permits.available_permits(), 2);
        assert!(readers.connections.iter().all(|c| c.try_lock().is_ok()));
    }

    #[tokio::test]
    async fn a_read_dropped_halfway_leaves_the_connection_usable() {
        let dir = tempfile::tempdir().unwrap();
        let readers = readers(&dir, 1).await;
        {
            let mut conn = readers.get().await.unwrap();
            // A client that went away: its request's read is dropped while SQLite still runs it.
            let long = sqlx::query(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000000) \
                 SELECT i FROM n",
            )
            .fetch_all(&mut *conn);
            let cut = tokio::time::timeout(std::time::Duration::from_millis(5), long).await;
            assert!(cut.is_err(), "the long read finished within 5 ms");
        }
        let mut conn = readers.get().await.unwrap();
        let n: i64 = sqlx::query("SELECT 42 AS n")
            .fetch_one(&mut *conn)
            .await
            .unwrap()
            .get("n");
        assert_eq!(n, 42);
    }
}

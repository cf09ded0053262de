//! Group commit for the embedded SQLite file.
//!
//! SQLite has one writer, and with `synchronous = FULL` every commit waits for an `fsync` of the
//! write-ahead log (about a millisecond here). One transaction per write would cap pkid at a
//! thousand writes a second however many clients wait. Instead, every write of the process is a
//! *job* sent to one writer task, which owns the one write connection: it takes every job that
//! is queued, runs them all inside one `BEGIN IMMEDIATE … COMMIT`, and answers each caller only
//! after that `COMMIT` — so a caller still learns of its write only once it is on disk, and one
//! `fsync` carries a whole batch. While a batch commits, the next one gathers.
//!
//! A job is a function of the connection that returns what the caller gets and whether its
//! writes stay ([`Written::Commit`]) or go ([`Written::Rollback`], when a condition it checks
//! after writing fails). Jobs in one batch share one transaction, so when one of them fails or
//! asks for a rollback, the batch is rolled back as a whole and each job of it runs again in a
//! transaction of its own: to every caller it is as if its job had run alone, in queue order.
//! That is why a job may run more than once and is an `Fn`: it reads its inputs, never consumes
//! them, and does nothing but statements on the connection.

use std::future::Future;
use std::pin::Pin;

use sqlx::{AnyConnection, Connection, Executor};
use tokio::sync::{mpsc, oneshot};

/// Jobs that may wait for the writer before callers wait to queue.
const QUEUE_BOUND: usize = 4096;
/// Most jobs one transaction carries.
const MAX_BATCH: usize = 256;

/// What a job decided about its own writes.
pub enum Written<T> {
    /// Keep them; the caller gets `T` once they are durable.
    Commit(T),
    /// Keep them, and answer the caller as soon as they are made, before the commit: for a
    /// write no client relies on surviving a crash (a failed commit leaves the state from before
    /// it, which recovery already has to handle). Later jobs see it at once, other connections
    /// once it commits.
    Applied(T),
    /// Undo them; the caller gets `T` once they are undone.
    Rollback(T),
}

/// Run by the writer once a job's transaction has ended, before the caller is answered: with
/// the job's answer when its writes are committed, `None` when they are not (or may not be).
/// Jobs' hooks run in the order their writes commit. The store keeps its in-memory copies of
/// rows in step with the file this way.
pub type After<T> = std::sync::Arc<dyn Fn(Option<&T>) + Send + Sync>;

/// A job's statements, running on the writer's connection.
pub type JobFuture<'c, T> =
    Pin<Box<dyn Future<Output = Result<Written<T>, sqlx::Error>> + Send + 'c>>;

/// The handle every [`crate::store::Store`] clone shares; the writer task stops when the last
/// one is dropped, after the jobs already queued.
#[derive(Clone)]
pub struct GroupCommit {
    jobs: mpsc::Sender<Box<dyn Job>>,
}

impl GroupCommit {
    /// Starts the writer task on `conn`, which must be set up already (pragmas).
    pub fn start(conn: AnyConnection) -> GroupCommit {
        let (jobs, queue) = mpsc::channel(QUEUE_BOUND);
        tokio::spawn(writer(conn, queue));
        GroupCommit { jobs }
    }

    /// Runs `job` over `data` in the next batch; returns once the batch is durable (or the job's
    /// rollback is done), after `after`.
    pub async fn write<D, T, F>(
        &self,
        data: D,
        job: F,
        after: Option<After<T>>,
    ) -> Result<T, sqlx::Error>
    where
        D: Send + Sync + 'static,
        T: Clone + Send + 'static,
        F: for<'c> Fn(&'c mut AnyConnection, &'c D) -> JobFuture<'c, T> + Send + Sync + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(TypedJob {
            data,
            job,
            outcome: None,
            reply: Some(reply),
            applied: None,
            after,
        });
        self.jobs.send(job).await.map_err(|_| writer_gone())?;
        answer.await.map_err(|_| writer_gone())?
    }
}

fn writer_gone() -> sqlx::Error {
    sqlx::Error::WorkerCrashed
}

/// A queued job, its inputs and the caller waiting for it, with the type of its answer erased.
trait Job: Send {
    /// Runs the job's statements and keeps their outcome; `true` if the job wants a commit.
    fn run<'c>(
        &'c mut self,
        conn: &'c mut AnyConnection,
    ) -> Pin<Box<dyn Future<Output = bool> + Send + 'c>>;
    /// Answers the caller; `end` is how the job's transaction ended (its commit or rollback).
    fn deliver(self: Box<Self>, end: Result<(), &sqlx::Error>);
}

struct TypedJob<D, T, F> {
    data: D,
    job: F,
    outcome: Option<Result<Written<T>, sqlx::Error>>,
    /// `None` once answered.
    reply: Option<oneshot::Sender<Result<T, sqlx::Error>>>,
    /// An applied job's answer, kept for `after` (the caller has its own copy).
    applied: Option<T>,
    after: Option<After<T>>,
}

impl<D, T, F> Job for TypedJob<D, T, F>
where
    D: Send + Sync + 'static,
    T: Clone + Send + 'static,
    F: for<'c> Fn(&'c mut AnyConnection, &'c D) -> JobFuture<'c, T> + Send + Sync + 'static,
{
    fn run<'c>(
        &'c mut self,
        conn: &'c mut AnyConnection,
    ) -> Pin<Box<dyn Future<Output = bool> + Send + 'c>> {
        Box::pin(async move {
            let outcome = (self.job)(conn, &self.data).await;
            match outcome {
                Ok(Written::Applied(t)) => {
                    if self.after.is_some() {
                        self.applied = Some(t.clone());
                    }
                    if let Some(reply) = self.reply.take() {
                        let _ = reply.send(Ok(t));
                    }
                    self.outcome = None;
                    true
                }
                outcome => {
                    let commit = matches!(outcome, Ok(Written::Commit(_)));
                    self.outcome = Some(outcome);
                    commit
                }
            }
        })
    }

    fn deliver(self: Box<Self>, end: Result<(), &sqlx::Error>) {
        if let Some(after) = &self.after {
            let committed = match (&self.outcome, end) {
                (_, Err(_)) => None,
                (None, Ok(())) => self.applied.as_ref(),
                (Some(Ok(Written::Commit(t) | Written::Applied(t))), Ok(())) => Some(t),
                (Some(_), Ok(())) => None,
            };
            after(committed);
        }
        let Some(reply) = self.reply else {
            return; // answered when it was applied
        };
        let answer = match (self.outcome, end) {
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(Written::Commit(t) | Written::Applied(t) | Written::Rollback(t))), Ok(())) => {
                Ok(t)
            }
            (Some(Ok(_)), Err(e)) => Err(copy_error(e)),
            (None, Err(e)) => Err(copy_error(e)),
            (None, Ok(())) => Err(writer_gone()),
        };
        // The caller may have gone (a client that hung up); its write stands all the same.
        let _ = reply.send(answer);
    }
}

/// One transaction's failure, told to each of its jobs. `connection_lost` in the store looks at
/// the kind of an I/O error, so that survives the copy.
fn copy_error(e: &sqlx::Error) -> sqlx::Error {
    match e {
        sqlx::Error::Io(io) => sqlx::Error::Io(std::io::Error::new(io.kind(), io.to_string())),
        sqlx::Error::PoolTimedOut => sqlx::Error::PoolTimedOut,
        sqlx::Error::WorkerCrashed => sqlx::Error::WorkerCrashed,
        other => sqlx::Error::Protocol(format!("committing a group of writes: {other}")),
    }
}

async fn writer(mut conn: AnyConnection, mut queue: mpsc::Receiver<Box<dyn Job>>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        run_batch(&mut conn, std::mem::take(&mut batch)).await;
    }
    if let Err(e) = conn.close().await {
        tracing::warn!(error = %e, "closing the database writer connection");
    }
}

async fn run_batch(conn: &mut AnyConnection, mut jobs: Vec<Box<dyn Job>>) {
    if jobs.len() > 1 {
        if let Err(e) = conn.execute("BEGIN IMMEDIATE").await {
            for job in jobs {
                job.deliver(Err(&e));
            }
            return;
        }
        let mut all_commit = true;
        for job in jobs.iter_mut() {
            if !job.run(conn).await {
                all_commit = false;
                break;
            }
        }
        if all_commit {
            let end = commit(conn).await;
            for job in jobs {
                job.deliver(end.as_ref().map(|_| ()));
            }
            return;
        }
        if let Err(e) = conn.execute("ROLLBACK").await {
            for job in jobs {
                job.deliver(Err(&e));
            }
            return;
        }
        tracing::debug!(
            jobs = jobs.len(),
            "a write of a group failed or rolled back: each runs alone"
        );
    }
    for job in jobs {
        run_alone(conn, job).await;
    }
}

async fn run_alone(conn: &mut AnyConnection, mut job: Box<dyn Job>) {
    if let Err(e) = conn.execute("BEGIN IMMEDIATE").await {
        job.deliver(Err(&e));
        return;
    }
    let end = if job.run(conn).await {
        commit(conn).await
    } else {
        conn.execute("ROLLBACK").await.map(|_| ())
    };
    job.deliver(end.as_ref().map(|_| ()));
}

async fn commit(conn: &mut AnyConnection) -> Result<(), sqlx::Error> {
    let end = conn.execute("COMMIT").await.map(|_| ());
    if end.is_err() {
        // A failed COMMIT (a full disk, an I/O error) can leave the transaction open; the next
        // batch must start clean.
        let _ = conn.execute("ROLLBACK").await;
    }
    end
}

#[cfg(test)]
pub(super) mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::store::{Arg, Statement, Store};
    use sqlx::Row;

    async fn store(dir: &tempfile::TempDir) -> Store {
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("pkid.db").display());
        Store::connect(&url, 2).await.unwrap()
    }

    fn insert_setting(name: &str, value: &str) -> Statement {
        Statement::new(
            "INSERT INTO settings (name, value) VALUES ($1, $2)",
            vec![Arg::from(name), Arg::from(value)],
        )
    }

    async fn settings(store: &Store) -> Vec<(String, String)> {
        sqlx::query("SELECT name, value FROM settings WHERE name LIKE 'gc-%' ORDER BY name")
            .fetch_all(store.pool())
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get("name"), r.get("value")))
            .collect()
    }

    /// Many writers at once: every one is answered, and every answered write is there.
    #[tokio::test]
    async fn concurrent_writes_are_all_committed() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        let mut writers = tokio::task::JoinSet::new();
        for i in 0..200 {
            let store = store.clone();
            writers.spawn(async move {
                store
                    .execute(insert_setting(&format!("gc-{i:03}"), "v"))
                    .await
            });
        }
        while let Some(done) = writers.join_next().await {
            assert_eq!(done.unwrap().unwrap(), 1);
        }
        assert_eq!(settings(&store).await.len(), 200);
    }

    /// In one batch, a job that fails (a duplicate key) and a job that asks for a rollback
    /// leave the other jobs' writes in place, and get their own answers.
    #[tokio::test]
    async fn a_failed_or_rolled_back_job_does_not_undo_its_neighbours() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        store
            .execute(insert_setting("gc-taken", "first"))
            .await
            .unwrap();
        // Hold the writer so that the next jobs queue up and run as one batch.
        let release = hold_writer(&store).await;
        let before = {
            let store = store.clone();
            tokio::spawn(async move { store.execute(insert_setting("gc-a", "kept")).await })
        };
        let duplicate = {
            let store = store.clone();
            tokio::spawn(async move { store.execute(insert_setting("gc-taken", "second")).await })
        };
        let rolled_back = {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .write(insert_setting("gc-undone", "v"), |conn, statement| {
                        Box::pin(async move {
                            statement.run(conn).await?;
                            Ok(Written::Rollback("undone"))
                        })
                    })
                    .await
            })
        };
        let after = {
            let store = store.clone();
            tokio::spawn(async move { store.execute(insert_setting("gc-b", "kept")).await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        release.send(()).unwrap();

        assert_eq!(before.await.unwrap().unwrap(), 1);
        let duplicate = duplicate.await.unwrap();
        assert!(
            matches!(&duplicate, Err(e) if e.is_unique_violation()),
            "{duplicate:?}"
        );
        assert_eq!(rolled_back.await.unwrap().unwrap(), "undone");
        assert_eq!(after.await.unwrap().unwrap(), 1);
        assert_eq!(
            settings(&store).await,
            vec![
                ("gc-a".into(), "kept".into()),
                ("gc-b".into(), "kept".into()),
                ("gc-taken".into(), "first".into()),
            ]
        );
    }

    /// A job that holds the writer until `release` fires.
    pub(in crate::store) async fn hold_writer(store: &Store) -> tokio::sync::oneshot::Sender<()> {
        let (release, held) = tokio::sync::oneshot::channel::<()>();
        let held = std::sync::Mutex::new(Some(held));
        let store = store.clone();
        tokio::spawn(async move {
            store
                .write((), move |_conn, _| {
                    let held = held.lock().unwrap().take();
                    Box::pin(async move {
                        if let Some(held) = held {
                            let _ = held.await;
                        }
                        Ok(Written::Commit(()))
                    })
                })
                .await
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        release
    }

    /// An applied write is answered as soon as it is made, before its group commits: other
    /// connections see it only after the commit.
    #[tokio::test]
    async fn an_applied_write_is_answered_before_its_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        let first = hold_writer(&store).await;
        // Queued behind the first hold: the applied write, then a second hold in its batch.
        let applied = {
            let store = store.clone();
            tokio::spawn(
                async move { store.execute_applied(insert_setting("gc-early", "v")).await },
            )
        };
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let second = hold_writer(&store).await;
        first.send(()).unwrap();
        let changed = tokio::time::timeout(std::time::Duration::from_secs(5), applied)
            .await
            .expect("answered while its batch is still open")
            .unwrap()
            .unwrap();
        assert_eq!(changed, 1);
        assert!(settings(&store).await.is_empty(), "not committed yet");
        second.send(()).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while settings(&store).await.is_empty() {
            assert!(std::time::Instant::now() < deadline, "never committed");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// The writer's connection runs as durably as the readers'.
    #[tokio::test]
    async fn the_writer_commits_durably() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        let synchronous = store
            .write((), |conn, _| {
                Box::pin(async move {
                    let level: i64 = sqlx::query("PRAGMA synchronous")
                        .fetch_one(&mut *conn)
                        .await?
                        .try_get(0)?;
                    Ok(Written::Commit(level))
                })
            })
            .await
            .unwrap();
        assert_eq!(synchronous, 2, "2 is FULL");
    }
}

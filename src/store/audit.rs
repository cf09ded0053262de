//! The audit trail's rows: entries appended to one hash chain, and its signed checkpoints. The
//! store only appends (no statement here updates or deletes a row); how an entry is hashed is
//! the audit module's ([`EntryHasher`]), run inside the append's transaction so that each entry
//! is hashed over the one committed before it.
//!
//! ## One chain under concurrency
//!
//! An append reads the chain's head (the entry with the highest `seq`), then inserts entries
//! `head + 1 …` each hashed over the one before, in one transaction. Two appends must never read
//! the same head:
//! - SQLite: every write of the process runs on the one writer connection, one job after the
//!   other ([`super::group_commit`]), and a job reads what the jobs before it wrote (same
//!   connection, same transaction): the appends are serial by construction.
//! - PostgreSQL, replicas sharing the database: the append first takes a transaction-level
//!   advisory lock (`pg_advisory_xact_lock`, one key for the chain). A second append waits
//!   there until the first commits or rolls back; its next statement, which reads the head,
//!   takes a new snapshot (READ COMMITTED) that includes the first's commit, since PostgreSQL
//!   releases a transaction's locks only after the commit is visible. Appends are thus serial
//!   across replicas, each over the head the previous one committed. `seq` is the primary key:
//!   should two appends ever read one head, the second fails rather than forking the chain.
//! - A crash (kill -9) mid-append: the transaction never commits, the server drops the lock
//!   with the connection, and the chain ends at the last committed entry: nothing half-written.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::group_commit::Written;
use super::{Database, Reads, Result, Store};

/// The `prev_hash` of the first entry.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The advisory lock key serialising appends on PostgreSQL ("pkid aud" in ASCII).
const APPEND_LOCK: i64 = 0x706b_6964_2061_7564;

/// One entry of the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntryRow {
    pub seq: i64,
    /// Unix seconds.
    pub at: i64,
    pub principal: String,
    pub action: String,
    pub resource: String,
    /// `success` or `failure`.
    pub outcome: String,
    /// A small JSON object, if any.
    pub detail: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}

/// The hash of an entry (hex), over every column but `hash`.
pub type EntryHasher = fn(&AuditEntryRow) -> String;

/// A signed checkpoint: entry `seq` had `hash`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditCheckpointRow {
    pub seq: i64,
    pub hash: String,
    pub at: i64,
    pub backend: String,
    pub algorithm: String,
    /// The signer's certificate (DER).
    pub certificate: Vec<u8>,
    pub signature: Vec<u8>,
}

const ENTRY_COLUMNS: &str =
    "seq, at, principal, action, resource, outcome, detail, prev_hash, hash";

fn entry(row: &AnyRow) -> std::result::Result<AuditEntryRow, sqlx::Error> {
    Ok(AuditEntryRow {
        seq: row.try_get("seq")?,
        at: row.try_get("at")?,
        principal: row.try_get("principal")?,
        action: row.try_get("action")?,
        resource: row.try_get("resource")?,
        outcome: row.try_get("outcome")?,
        detail: row.try_get("detail")?,
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
    })
}

impl Reads {
    /// Up to `limit` entries after `after_seq`, in chain order.
    pub async fn audit_entries(&self, after_seq: i64, limit: i64) -> Result<Vec<AuditEntryRow>> {
        self.audit_search(after_seq, None, None, limit).await
    }

    /// Up to `limit` entries after `after_seq`, at or after `since` and of `principal` when
    /// given, in chain order.
    pub async fn audit_search(
        &self,
        after_seq: i64,
        since: Option<i64>,
        principal: Option<&str>,
        limit: i64,
    ) -> Result<Vec<AuditEntryRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {ENTRY_COLUMNS} FROM audit_log WHERE seq > $1 AND at >= $2 \
             AND ($3 = '' OR principal = $3) ORDER BY seq LIMIT $4"
        ))
        .bind(after_seq)
        .bind(since.unwrap_or(i64::MIN))
        .bind(principal.unwrap_or(""))
        .bind(limit)
        .fetch_all(&mut self.reader().await?)
        .await?;
        Ok(rows
            .iter()
            .map(entry)
            .collect::<std::result::Result<_, _>>()?)
    }

    /// The chain's last entry, if any.
    pub async fn audit_head(&self) -> Result<Option<AuditEntryRow>> {
        let row = sqlx::query(&format!(
            "SELECT {ENTRY_COLUMNS} FROM audit_log ORDER BY seq DESC LIMIT 1"
        ))
        .fetch_optional(&mut self.reader().await?)
        .await?;
        Ok(row.as_ref().map(entry).transpose()?)
    }

    /// Every checkpoint, in chain order.
    pub async fn audit_checkpoints(&self) -> Result<Vec<AuditCheckpointRow>> {
        let rows = sqlx::query(
            "SELECT seq, hash, at, backend, algorithm, certificate, signature \
             FROM audit_checkpoints ORDER BY seq",
        )
        .fetch_all(&mut self.reader().await?)
        .await?;
        Ok(rows
            .iter()
            .map(|r| -> std::result::Result<_, sqlx::Error> {
                Ok(AuditCheckpointRow {
                    seq: r.try_get("seq")?,
                    hash: r.try_get("hash")?,
                    at: r.try_get("at")?,
                    backend: r.try_get("backend")?,
                    algorithm: r.try_get("algorithm")?,
                    certificate: r.try_get("certificate")?,
                    signature: r.try_get("signature")?,
                })
            })
            .collect::<std::result::Result<_, _>>()?)
    }
}

impl Store {
    /// Append `entries` to the chain, in order, as one transaction (see the module's notes on
    /// concurrency): their `seq`, `prev_hash` and `hash` are the chain's to fill in. The `seq`
    /// each got.
    pub async fn append_audit(
        &self,
        entries: Vec<AuditEntryRow>,
        hasher: EntryHasher,
    ) -> Result<Vec<i64>> {
        let database = self.database;
        self.write((entries, hasher), move |conn, (entries, hasher)| {
            Box::pin(async move {
                if database == Database::Postgres {
                    sqlx::query("SELECT pg_advisory_xact_lock($1)")
                        .bind(APPEND_LOCK)
                        .execute(&mut *conn)
                        .await?;
                }
                let head = sqlx::query("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
                    .fetch_optional(&mut *conn)
                    .await?;
                let (mut seq, mut prev_hash) = match head {
                    Some(row) => (row.try_get::<i64, _>("seq")?, row.try_get("hash")?),
                    None => (0, GENESIS_HASH.to_string()),
                };
                let mut appended = Vec::with_capacity(entries.len());
                for new in entries {
                    seq += 1;
                    let mut row = AuditEntryRow {
                        seq,
                        prev_hash,
                        ..new.clone()
                    };
                    row.hash = hasher(&row);
                    sqlx::query(&format!(
                        "INSERT INTO audit_log ({ENTRY_COLUMNS}) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
                    ))
                    .bind(row.seq)
                    .bind(row.at)
                    .bind(&row.principal)
                    .bind(&row.action)
                    .bind(&row.resource)
                    .bind(&row.outcome)
                    .bind(row.detail.as_deref())
                    .bind(&row.prev_hash)
                    .bind(&row.hash)
                    .execute(&mut *conn)
                    .await?;
                    prev_hash = row.hash;
                    appended.push(seq);
                }
                Ok(Written::Commit(appended))
            })
        })
        .await
    }

    /// Store a checkpoint; `false` when one for that entry exists already (another replica's).
    pub async fn insert_audit_checkpoint(&self, row: &AuditCheckpointRow) -> Result<bool> {
        let inserted = self
            .execute(super::sql::statement!(
                "INSERT INTO audit_checkpoints (seq, hash, at, backend, algorithm, certificate, signature) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (seq) DO NOTHING",
                row.seq,
                &row.hash,
                row.at,
                &row.backend,
                &row.algorithm,
                row.certificate.as_slice(),
                row.signature.as_slice(),
            ))
            .await?;
        Ok(inserted == 1)
    }
}

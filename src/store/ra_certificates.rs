//! Certificates as RA records (CZERTAINLY-style client operations, migration 0009): each
//! record's state and the operation last accepted on it, its event history, and the background
//! work due on records (an upstream to poll, an operation to resume), leased across replicas by
//! moving `next_attempt_at` forward with a conditional update.
//!
//! Every change of a record is one transaction with its event: the event is written only when
//! the record's conditional update changed it.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::sql::statement;
use super::{Arg, Reads, Result, Statement, Store, Written};

/// One RA certificate record (see the migration for each column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaCertificateRow {
    pub uuid: String,
    pub ra_profile_uuid: String,
    pub state: String,
    pub subject_dn: String,
    /// SubjectPublicKeyInfo DER of the request.
    pub public_key: Vec<u8>,
    pub csr: Vec<u8>,
    /// The issuer asked (the authority's name when the request was made).
    pub issuer: String,
    /// The issuance profile snapshot (JSON).
    pub profile: String,
    /// `certificates.serial` once issued.
    pub serial: Option<String>,
    pub source_uuid: Option<String>,
    pub key_uuid: Option<String>,
    /// `<ra profile uuid>/<username>` of a v1 end entity.
    pub end_entity: Option<String>,
    pub owner: String,
    pub operation: String,
    pub operation_status: String,
    pub operation_error: Option<String>,
    pub upstream_ref: Option<String>,
    pub revoke_reason: Option<i64>,
    pub destroy_key: bool,
    pub next_attempt_at: Option<i64>,
    pub attempts: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One event of a record's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaEventRow {
    pub id: String,
    pub certificate_uuid: String,
    pub at: i64,
    pub event: String,
    pub status: String,
    pub message: String,
    pub actor: String,
}

/// A conditional change of one record, with the event it writes when it applies.
#[derive(Debug, Clone)]
pub struct RaChange {
    pub uuid: String,
    /// The states the record must be in for the change to apply.
    pub from: Vec<&'static str>,
    /// When set, `next_attempt_at` must also be this (the lease the caller holds).
    pub lease: Option<i64>,
    /// Columns and their new values (`updated_at` is set too).
    pub set: Vec<(&'static str, Arg)>,
    pub event: RaEventRow,
}

const COLUMNS: &str = "uuid, ra_profile_uuid, state, subject_dn, public_key, csr, issuer, profile, \
     serial, source_uuid, key_uuid, end_entity, owner, operation, operation_status, operation_error, \
     upstream_ref, revoke_reason, destroy_key, next_attempt_at, attempts, created_at, updated_at";

fn certificate_row(r: &AnyRow) -> std::result::Result<RaCertificateRow, sqlx::Error> {
    Ok(RaCertificateRow {
        uuid: r.try_get("uuid")?,
        ra_profile_uuid: r.try_get("ra_profile_uuid")?,
        state: r.try_get("state")?,
        subject_dn: r.try_get("subject_dn")?,
        public_key: r.try_get("public_key")?,
        csr: r.try_get("csr")?,
        issuer: r.try_get("issuer")?,
        profile: r.try_get("profile")?,
        serial: r.try_get("serial")?,
        source_uuid: r.try_get("source_uuid")?,
        key_uuid: r.try_get("key_uuid")?,
        end_entity: r.try_get("end_entity")?,
        owner: r.try_get("owner")?,
        operation: r.try_get("operation")?,
        operation_status: r.try_get("operation_status")?,
        operation_error: r.try_get("operation_error")?,
        upstream_ref: r.try_get("upstream_ref")?,
        revoke_reason: r.try_get("revoke_reason")?,
        destroy_key: r.try_get::<i64, _>("destroy_key")? != 0,
        next_attempt_at: r.try_get("next_attempt_at")?,
        attempts: r.try_get("attempts")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

fn event_insert(e: &RaEventRow) -> Statement {
    statement!(
        "INSERT INTO ra_certificate_events (id, certificate_uuid, at, event, status, message, actor) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &e.id,
        &e.certificate_uuid,
        e.at,
        &e.event,
        &e.status,
        &e.message,
        &e.actor,
    )
}

impl RaChange {
    fn update(&self) -> Statement {
        let mut sets = Vec::with_capacity(self.set.len() + 1);
        let mut args = Vec::with_capacity(self.set.len() + 3);
        for (column, value) in &self.set {
            args.push(value.clone());
            sets.push(format!("{column} = ${}", args.len()));
        }
        args.push(Arg::Int(self.event.at));
        sets.push(format!("updated_at = ${}", args.len()));
        args.push(Arg::Text(self.uuid.clone()));
        let mut sql = format!(
            "UPDATE ra_certificates SET {} WHERE uuid = ${}",
            sets.join(", "),
            args.len()
        );
        // The states are the RA's constants, never a client's text.
        let states: Vec<String> = self.from.iter().map(|s| format!("'{s}'")).collect();
        sql.push_str(&format!(" AND state IN ({})", states.join(", ")));
        if let Some(lease) = self.lease {
            args.push(Arg::Int(lease));
            sql.push_str(&format!(" AND next_attempt_at = ${}", args.len()));
        }
        Statement::new(sql, args)
    }
}

impl Reads {
    async fn ra_certificates_where(
        &self,
        condition: &str,
        value: &str,
    ) -> Result<Vec<RaCertificateRow>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM ra_certificates WHERE {condition} ORDER BY created_at, uuid"
        );
        let rows = sqlx::query(&sql)
            .bind(value)
            .fetch_all(&mut self.reader().await?)
            .await?;
        Ok(rows
            .iter()
            .map(certificate_row)
            .collect::<std::result::Result<_, _>>()?)
    }

    pub async fn ra_certificate(&self, uuid: &str) -> Result<Option<RaCertificateRow>> {
        Ok(self.ra_certificates_where("uuid = $1", uuid).await?.pop())
    }

    /// The record of an issued certificate, by its serial (lowercase hex).
    pub async fn ra_certificate_by_serial(&self, serial: &str) -> Result<Option<RaCertificateRow>> {
        Ok(self
            .ra_certificates_where("serial = $1", serial)
            .await?
            .pop())
    }

    /// The records of a v1 end entity (`<ra profile uuid>/<username>`).
    pub async fn ra_certificates_of_end_entity(
        &self,
        end_entity: &str,
    ) -> Result<Vec<RaCertificateRow>> {
        self.ra_certificates_where("end_entity = $1", end_entity)
            .await
    }

    /// A record's events, oldest first.
    pub async fn ra_certificate_events(&self, uuid: &str) -> Result<Vec<RaEventRow>> {
        let rows = sqlx::query(
            "SELECT id, certificate_uuid, at, event, status, message, actor \
             FROM ra_certificate_events WHERE certificate_uuid = $1 ORDER BY at, id",
        )
        .bind(uuid)
        .fetch_all(&mut self.reader().await?)
        .await?;
        Ok(rows
            .iter()
            .map(|r| -> std::result::Result<_, sqlx::Error> {
                Ok(RaEventRow {
                    id: r.try_get("id")?,
                    certificate_uuid: r.try_get("certificate_uuid")?,
                    at: r.try_get("at")?,
                    event: r.try_get("event")?,
                    status: r.try_get("status")?,
                    message: r.try_get("message")?,
                    actor: r.try_get("actor")?,
                })
            })
            .collect::<std::result::Result<_, _>>()?)
    }

    /// Records whose background work is due at `at`, with the `next_attempt_at` each was seen
    /// with (to lease it by): at most `limit`, the longest due first.
    pub async fn due_ra_certificates(&self, at: i64, limit: i64) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query(
            "SELECT uuid, next_attempt_at FROM ra_certificates \
             WHERE next_attempt_at IS NOT NULL AND next_attempt_at <= $1 \
             ORDER BY next_attempt_at LIMIT $2",
        )
        .bind(at)
        .bind(limit)
        .fetch_all(&mut self.reader().await?)
        .await?;
        Ok(rows
            .iter()
            .map(|r| Ok((r.try_get("uuid")?, r.try_get("next_attempt_at")?)))
            .collect::<std::result::Result<_, sqlx::Error>>()?)
    }
}

impl Store {
    /// A new record and its first event, in one transaction.
    pub async fn insert_ra_certificate(
        &self,
        c: &RaCertificateRow,
        event: &RaEventRow,
    ) -> Result<()> {
        let insert = statement!(
            "INSERT INTO ra_certificates (uuid, ra_profile_uuid, state, subject_dn, public_key, csr, issuer, profile, \
             serial, source_uuid, key_uuid, end_entity, owner, operation, operation_status, operation_error, \
             upstream_ref, revoke_reason, destroy_key, next_attempt_at, attempts, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23)",
            &c.uuid,
            &c.ra_profile_uuid,
            &c.state,
            &c.subject_dn,
            c.public_key.as_slice(),
            c.csr.as_slice(),
            &c.issuer,
            &c.profile,
            &c.serial,
            &c.source_uuid,
            &c.key_uuid,
            &c.end_entity,
            &c.owner,
            &c.operation,
            &c.operation_status,
            &c.operation_error,
            &c.upstream_ref,
            c.revoke_reason,
            i64::from(c.destroy_key),
            c.next_attempt_at,
            c.attempts,
            c.created_at,
            c.updated_at,
        );
        self.execute_all(vec![insert, event_insert(event)]).await?;
        Ok(())
    }

    /// Applies `change` if the record is in one of its states (and holds its lease), with its
    /// event, in one transaction; `false`, and nothing written, otherwise.
    pub async fn change_ra_certificate(&self, change: RaChange) -> Result<bool> {
        let update = change.update();
        let event = event_insert(&change.event);
        self.write((update, event), |conn, (update, event)| {
            Box::pin(async move {
                if update.run(conn).await? != 1 {
                    return Ok(Written::Rollback(false));
                }
                event.run(conn).await?;
                Ok(Written::Commit(true))
            })
        })
        .await
    }

    /// Takes the background work of record `uuid` seen due at `seen`, until `until`: `false`
    /// when another worker (here or on another replica) took it first.
    pub async fn lease_ra_certificate(&self, uuid: &str, seen: i64, until: i64) -> Result<bool> {
        let changed = self
            .execute(statement!(
                "UPDATE ra_certificates SET next_attempt_at = $1, attempts = attempts + 1 \
                 WHERE uuid = $2 AND next_attempt_at = $3",
                until,
                uuid,
                seen,
            ))
            .await?;
        Ok(changed == 1)
    }

    /// Moves the next attempt of record `uuid` held under `lease` to `next` (`None`: no more
    /// background work); `false` when the lease is no longer held.
    pub async fn reschedule_ra_certificate(
        &self,
        uuid: &str,
        lease: i64,
        next: Option<i64>,
    ) -> Result<bool> {
        let changed = self
            .execute(statement!(
                "UPDATE ra_certificates SET next_attempt_at = $1 WHERE uuid = $2 AND next_attempt_at = $3",
                next,
                uuid,
                lease,
            ))
            .await?;
        Ok(changed == 1)
    }

    /// An event on its own (a note that changes no state).
    pub async fn add_ra_event(&self, event: &RaEventRow) -> Result<()> {
        self.execute(event_insert(event)).await?;
        Ok(())
    }
}

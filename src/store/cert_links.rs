//! Certificate linking requests (IAM's `/iam/cert_link_requests`): a user asks for a certificate
//! (subject and issuer DN, RFC 2253) to be linked to their account; an administrator approves
//! (the link is written to `user_certificates` in the same transaction) or rejects. Requests are
//! kept once decided, so that their history stays visible. Times in milliseconds.
//!
//! Every transition is a conditional `UPDATE … WHERE status = 'PENDING'`: a request is decided
//! once, whichever replica or administrator comes first.

use std::fmt;
use std::str::FromStr;

use sqlx::any::AnyRow;
use sqlx::Row;

use super::group_commit::Written;
use super::sql::statement;
use super::users::certificate_row;
use super::{Reads, Result, Store, UnknownStatus, UserCertificateRow};

/// Where a request is in its life: `PENDING`, then `APPROVED` or `REJECTED`, never back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertLinkStatus {
    Pending,
    Approved,
    Rejected,
}

impl CertLinkStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CertLinkStatus::Pending => "PENDING",
            CertLinkStatus::Approved => "APPROVED",
            CertLinkStatus::Rejected => "REJECTED",
        }
    }
}

impl fmt::Display for CertLinkStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CertLinkStatus {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> std::result::Result<CertLinkStatus, UnknownStatus> {
        match s {
            "PENDING" => Ok(CertLinkStatus::Pending),
            "APPROVED" => Ok(CertLinkStatus::Approved),
            "REJECTED" => Ok(CertLinkStatus::Rejected),
            other => Err(UnknownStatus {
                what: "certificate link request status",
                value: other.to_owned(),
            }),
        }
    }
}

/// A request as stored, with its account's username.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertLinkRequestRow {
    pub uuid: String,
    pub user_id: String,
    /// The requesting account's username (read with the request).
    pub username: String,
    pub label: String,
    pub subject_dn: String,
    pub issuer_dn: String,
    /// The certificate, when the request gave it.
    pub certificate_pem: Option<String>,
    pub notes: String,
    pub status: CertLinkStatus,
    /// Why it was rejected.
    pub motivation: Option<String>,
    /// Milliseconds since the epoch.
    pub creation_time: i64,
    pub last_update_time: i64,
}

/// What a list of requests is narrowed to (each `None`: any).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertLinkFilter {
    pub username: Option<String>,
    pub subject_dn: Option<String>,
    pub status: Option<CertLinkStatus>,
}

/// How an approval ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Approval {
    /// The request is approved and its certificate linked to its account.
    Linked,
    /// The request was not pending (decided or deleted meanwhile): nothing changed.
    NotPending,
    /// The certificate is linked already (to this account, or its subject to another one):
    /// nothing changed.
    AlreadyLinked,
}

const REQUEST_COLUMNS: &str = "r.uuid, r.user_id, u.username, r.label, r.subject_dn, r.issuer_dn, \
     r.certificate_pem, r.notes, r.status, r.motivation, r.creation_time, r.last_update_time";

fn request_row(r: &AnyRow) -> std::result::Result<CertLinkRequestRow, sqlx::Error> {
    let status: String = r.try_get("status")?;
    Ok(CertLinkRequestRow {
        uuid: r.try_get("uuid")?,
        user_id: r.try_get("user_id")?,
        username: r.try_get("username")?,
        label: r.try_get("label")?,
        subject_dn: r.try_get("subject_dn")?,
        issuer_dn: r.try_get("issuer_dn")?,
        certificate_pem: r.try_get("certificate_pem")?,
        notes: r.try_get("notes")?,
        status: status
            .parse()
            .map_err(|e: UnknownStatus| sqlx::Error::Decode(Box::new(e)))?,
        motivation: r.try_get("motivation")?,
        creation_time: r.try_get("creation_time")?,
        last_update_time: r.try_get("last_update_time")?,
    })
}

/// The `WHERE` of a filtered list and its values, numbered from `$1`.
fn filter_clause(filter: &CertLinkFilter) -> (String, Vec<String>) {
    let mut conditions = Vec::new();
    let mut values = Vec::new();
    let mut add = |column: &str, value: &str| {
        values.push(value.to_owned());
        conditions.push(format!("{column} = ${}", values.len()));
    };
    if let Some(username) = &filter.username {
        add("u.username", username);
    }
    if let Some(subject) = &filter.subject_dn {
        add("r.subject_dn", subject);
    }
    if let Some(status) = filter.status {
        add("r.status", status.as_str());
    }
    let clause = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    (clause, values)
}

impl Reads {
    pub async fn cert_link_request(&self, uuid: &str) -> Result<Option<CertLinkRequestRow>> {
        let sql = format!(
            "SELECT {REQUEST_COLUMNS} FROM cert_link_requests r JOIN users u ON u.id = r.user_id \
             WHERE r.uuid = $1"
        );
        let row = sqlx::query(&sql)
            .bind(uuid)
            .fetch_optional(&mut self.reader().await?)
            .await?;
        Ok(row.as_ref().map(request_row).transpose()?)
    }

    /// How many requests `filter` matches, and `limit` of them from the `offset`-th (0-based),
    /// by username, subject and creation time.
    pub async fn cert_link_requests(
        &self,
        filter: &CertLinkFilter,
        offset: u64,
        limit: u64,
    ) -> Result<(u64, Vec<CertLinkRequestRow>)> {
        let (clause, values) = filter_clause(filter);
        let from = "FROM cert_link_requests r JOIN users u ON u.id = r.user_id";
        let mut conn = self.reader().await?;
        let count_sql = format!("SELECT COUNT(*) AS n {from} {clause}");
        let mut count = sqlx::query(&count_sql);
        for value in &values {
            count = count.bind(value.as_str());
        }
        let total: i64 = count.fetch_one(&mut conn).await?.try_get("n")?;
        let total = u64::try_from(total).unwrap_or(0);
        if limit == 0 || offset >= total {
            return Ok((total, Vec::new()));
        }
        let page_sql = format!(
            "SELECT {REQUEST_COLUMNS} {from} {clause} \
             ORDER BY u.username, r.subject_dn, r.creation_time, r.uuid LIMIT ${} OFFSET ${}",
            values.len() + 1,
            values.len() + 2
        );
        let mut page = sqlx::query(&page_sql);
        for value in &values {
            page = page.bind(value.as_str());
        }
        let rows = page
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .bind(i64::try_from(offset).unwrap_or(i64::MAX))
            .fetch_all(&mut conn)
            .await?;
        Ok((
            total,
            rows.iter()
                .map(request_row)
                .collect::<std::result::Result<_, _>>()?,
        ))
    }

    /// Every certificate linked with this subject (RFC 2253), to anyone.
    pub async fn certificate_links_by_subject(
        &self,
        subject_dn: &str,
    ) -> Result<Vec<UserCertificateRow>> {
        let rows = sqlx::query(
            "SELECT id, user_id, subject_dn, issuer_dn, der, created_at FROM user_certificates \
             WHERE subject_dn = $1 ORDER BY created_at, id",
        )
        .bind(subject_dn)
        .fetch_all(&mut self.reader().await?)
        .await?;
        Ok(rows
            .iter()
            .map(certificate_row)
            .collect::<std::result::Result<_, _>>()?)
    }
}

impl Store {
    /// A new `PENDING` request. A pending one for the same account, subject and issuer refuses
    /// it ([`super::StoreError::is_unique_violation`]).
    pub async fn insert_cert_link_request(&self, r: &CertLinkRequestRow) -> Result<()> {
        self.execute(statement!(
            "INSERT INTO cert_link_requests (uuid, user_id, label, subject_dn, issuer_dn, \
             certificate_pem, notes, status, motivation, creation_time, last_update_time) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            &r.uuid,
            &r.user_id,
            &r.label,
            &r.subject_dn,
            &r.issuer_dn,
            &r.certificate_pem,
            &r.notes,
            r.status.as_str(),
            &r.motivation,
            r.creation_time,
            r.last_update_time,
        ))
        .await?;
        Ok(())
    }

    /// Approve a pending request and link its certificate (`link`, for the request's account)
    /// in one transaction, at `at_ms`: nothing changes unless both happen.
    pub async fn approve_cert_link_request(
        &self,
        uuid: &str,
        at_ms: i64,
        link: &UserCertificateRow,
    ) -> Result<Approval> {
        let approve = statement!(
            "UPDATE cert_link_requests SET status = 'APPROVED', last_update_time = $1 \
             WHERE uuid = $2 AND status = 'PENDING'",
            at_ms,
            uuid,
        );
        // Not when the account has this certificate already, nor when another account has a
        // certificate of this subject (whatever its issuer).
        let insert = statement!(
            "INSERT INTO user_certificates (id, user_id, subject_dn, issuer_dn, der, created_at) \
             SELECT $1, $2, $3, $4, $5, $6 WHERE NOT EXISTS (SELECT 1 FROM user_certificates \
             WHERE subject_dn = $3 AND (user_id <> $2 OR issuer_dn = $4))",
            &link.id,
            &link.user_id,
            &link.subject_dn,
            &link.issuer_dn,
            link.der.as_deref(),
            link.created_at,
        );
        let outcome = self
            .write((approve, insert), |conn, (approve, insert)| {
                Box::pin(async move {
                    if approve.run(conn).await? != 1 {
                        return Ok(Written::Rollback(Approval::NotPending));
                    }
                    if insert.run(conn).await? != 1 {
                        return Ok(Written::Rollback(Approval::AlreadyLinked));
                    }
                    Ok(Written::Commit(Approval::Linked))
                })
            })
            .await;
        match outcome {
            // Another approval linked the same certificate at the same moment.
            Err(e) if e.is_unique_violation() => Ok(Approval::AlreadyLinked),
            other => other,
        }
    }

    /// Reject a pending request with `motivation`, at `at_ms`; `false`: it was not pending.
    pub async fn reject_cert_link_request(
        &self,
        uuid: &str,
        motivation: &str,
        at_ms: i64,
    ) -> Result<bool> {
        let changed = self
            .execute(statement!(
                "UPDATE cert_link_requests SET status = 'REJECTED', motivation = $1, \
                 last_update_time = $2 WHERE uuid = $3 AND status = 'PENDING'",
                motivation,
                at_ms,
                uuid,
            ))
            .await?;
        Ok(changed == 1)
    }

    /// Delete a request (`only_pending`: only while it is pending); `false`: nothing deleted.
    pub async fn delete_cert_link_request(&self, uuid: &str, only_pending: bool) -> Result<bool> {
        let sql = if only_pending {
            "DELETE FROM cert_link_requests WHERE uuid = $1 AND status = 'PENDING'"
        } else {
            "DELETE FROM cert_link_requests WHERE uuid = $1"
        };
        Ok(self.execute(statement!(sql, uuid)).await? == 1)
    }
}

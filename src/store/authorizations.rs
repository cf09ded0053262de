//! Authorizations and their challenges (RFC 8555 §7.5): pre-authorizations (§7.4.1), reads
//! (from memory while fresh, `fast::fresh`), a challenge's validation started once and its
//! outcome recorded on the challenge and its authorization together, challenges left
//! `processing` by a stopped process requeued, deactivation (§7.5.2).

use sqlx::Row;

use super::fast::fresh;
use super::rows::{authz_with_challenges_from, challenge_with_authz_from};
use super::sql::statement;
use super::{
    now, Arg, AuthzRow, AuthzStatus, ChallengeRow, ChallengeStatus, Reads, Result, Statement, Store,
};

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
            status: AuthzStatus::Pending,
            expires: self.expires,
            validation: None,
        }
    }

    /// Its challenges as they stand once written: pending.
    pub(super) fn challenge_rows(&self) -> Vec<ChallengeRow> {
        self.challenges
            .iter()
            .map(|(id, kind, token)| ChallengeRow {
                id: id.clone(),
                authz_id: self.id.clone(),
                kind: kind.clone(),
                token: token.clone(),
                status: ChallengeStatus::Pending,
                validated: None,
                error: None,
            })
            .collect()
    }
}

/// The statements that write an authorization and its challenges.
pub(super) fn authz_statements(account_id: &str, a: &NewAuthz, created: i64) -> Vec<Statement> {
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

// The queries of every newOrder and of every recovery round; `plans_of_frequent_queries_use_indexes`
// checks that none of them reads a whole table.
pub(super) const STALE_PROCESSING_CHALLENGES: &str = "UPDATE challenges SET status = 'pending', \
     processing_since = NULL WHERE status = 'processing' AND processing_since < $1";
pub(super) const AUTHZS_SINCE: &str = "SELECT COUNT(*) AS n FROM authorizations \
     WHERE id_type = $1 AND id_value = $2 AND created_at > $3";
/// One authorization (`$1`) with its challenges, a row per challenge, in one round trip.
pub(super) const AUTHZ_WITH_CHALLENGES: &str =
    "SELECT a.id, a.account_id, a.id_type, a.id_value, a.wildcard, a.status, a.expires, \
     c.id AS c_id, c.kind AS c_kind, c.token AS c_token, c.status AS c_status, \
     c.validated AS c_validated, c.error AS c_error \
     FROM authorizations a LEFT JOIN challenges c ON c.authz_id = a.id \
     WHERE a.id = $1 ORDER BY c.kind";
/// One challenge (`$1`) with its authorization, in one round trip.
pub(super) const CHALLENGE_WITH_AUTHZ: &str =
    "SELECT a.id, a.account_id, a.id_type, a.id_value, a.wildcard, a.status, a.expires, \
     c.id AS c_id, c.kind AS c_kind, c.token AS c_token, c.status AS c_status, \
     c.validated AS c_validated, c.error AS c_error \
     FROM challenges c JOIN authorizations a ON a.id = c.authz_id WHERE c.id = $1";

impl Reads {
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
}

impl Store {
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
        let (challenge_status, authz_status) = if valid {
            (ChallengeStatus::Valid, AuthzStatus::Valid)
        } else {
            (ChallengeStatus::Invalid, AuthzStatus::Invalid)
        };
        let (challenge, authz) = (challenge_id.to_owned(), authz_id.to_owned());
        let outcome = fresh::Outcome {
            challenge_status,
            authz_status,
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
                    challenge_status.as_str(),
                    validated,
                    error,
                    challenge_id,
                ),
                statement!(
                    "UPDATE authorizations SET status = $1, expires = CASE WHEN $2 > 0 THEN $2 ELSE expires END WHERE id = $3 AND status = 'pending'",
                    authz_status.as_str(),
                    if valid { authz_expires } else { 0 },
                    authz_id,
                ),
            ],
        )
        .await
        .map(|changed| changed.first() == Some(&1))
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
}

//! Authorization and challenge resources (RFC 8555 §7.5, §8): newAuthz (§7.4.1), an
//! authorization (and its deactivation, §7.5.2), and a challenge (responding to it, §7.5.1).

use http::StatusCode;
use serde_json::Value;

use super::links::Links;
use super::problem::Problem;
use super::{require_account, wire, AcmeResult, AcmeServer, Authenticated, Reply};
use crate::store::{now, AccountRow, AuthzRow, ChallengeRow, ChallengeStatus, Prefetched};

impl AcmeServer {
    /// RFC 8555 §7.4.1: an authorization before any order (not for wildcards).
    pub(super) async fn new_authz(&self, auth: Authenticated, links: &Links) -> AcmeResult {
        let account = require_account(&auth)?;
        let req: wire::NewAuthzRequest = auth.jws.json_payload()?;
        let idents = wire::check_identifiers(std::slice::from_ref(&req.identifier))?;
        let Some(ident) = idents.first() else {
            return Err(Problem::malformed("an identifier is required"));
        };
        let (id, created) = self.ra.pre_authorize(account, ident).await?;
        let (row, challenges) = self
            .owned_authz(&id, account, &mut Prefetched::Nothing)
            .await?;
        Ok(Reply::json(
            StatusCode::CREATED,
            &wire::authz_json(&row, &challenges, links, created),
        )
        .header(http::header::LOCATION, links.authz(&id)))
    }

    /// An authorization of `account`, with its challenges.
    async fn owned_authz(
        &self,
        id: &str,
        account: &AccountRow,
        prefetched: &mut Prefetched,
    ) -> Result<(AuthzRow, Vec<ChallengeRow>), Problem> {
        let found = match prefetched.take_authz(id) {
            Some(found) => found,
            None => self.reads.authz_with_challenges(id).await?,
        };
        let (authz, challenges) =
            found.ok_or_else(|| Problem::not_found("no such authorization"))?;
        check_owner(&authz, account)?;
        Ok((authz, challenges))
    }

    pub(super) async fn authorization(
        &self,
        id: &str,
        mut auth: Authenticated,
        links: &Links,
    ) -> AcmeResult {
        let mut prefetched = std::mem::take(&mut auth.prefetched);
        let account = require_account(&auth)?;
        let mut found = self.owned_authz(id, account, &mut prefetched).await?;
        if !auth.jws.is_post_as_get() {
            let req: wire::AuthzUpdateRequest = auth.jws.json_payload()?;
            if req.status.as_deref() != Some("deactivated") {
                return Err(Problem::malformed(
                    "an authorization's status can only be set to \"deactivated\"",
                ));
            }
            self.ra.deactivate_authz(id).await?;
            found = self
                .owned_authz(id, account, &mut Prefetched::Nothing)
                .await?;
        }
        let (authz, challenges) = found;
        let body = wire::authz_json(&authz, &challenges, links, now());
        let mut reply = Reply::json(StatusCode::OK, &body);
        if challenges
            .iter()
            .any(|c| c.status == ChallengeStatus::Processing)
        {
            reply = reply.header(http::header::RETRY_AFTER, "1");
        }
        Ok(reply)
    }

    pub(super) async fn challenge(
        &self,
        id: &str,
        mut auth: Authenticated,
        links: &Links,
    ) -> AcmeResult {
        let account = require_account(&auth)?.clone();
        let found = match auth.prefetched.take_challenge(id) {
            Some(found) => found,
            None => self.reads.challenge_with_authz(id).await?,
        };
        let (mut chall, authz) = found.ok_or_else(|| Problem::not_found("no such challenge"))?;
        check_owner(&authz, &account)?;
        if !auth.jws.is_post_as_get() {
            // The payload is `{}` (RFC 8555 §7.5.1); anything else JSON is ignored as the RFC allows.
            let _: Value = auth.jws.json_payload()?;
            let (responded, started) = self
                .ra
                .respond_to_challenge(chall, &authz, &account, links.account(&account.id))
                .await?;
            chall = responded;
            // A validation that finishes within the wait is answered as it ended; the
            // validation goes on without us otherwise.
            let wait = self.settings.challenge_wait;
            if let Some(started) = started.filter(|_| !wait.is_zero()) {
                if let Ok(Ok(Some(done))) = tokio::time::timeout(wait, started.outcome).await {
                    chall = done;
                }
            }
        }
        let mut reply = Reply::json(StatusCode::OK, &wire::challenge_json(&chall, links)).header(
            http::header::LINK,
            format!("<{}>;rel=\"up\"", links.authz(&authz.id)),
        );
        if chall.status == ChallengeStatus::Processing {
            reply = reply.header(http::header::RETRY_AFTER, "1");
        }
        Ok(reply)
    }
}

fn check_owner(authz: &AuthzRow, account: &AccountRow) -> Result<(), Problem> {
    if authz.account_id != account.id {
        return Err(Problem::unauthorized(
            "this authorization belongs to another account",
        ));
    }
    Ok(())
}

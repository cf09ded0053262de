//! Authorizations and challenges (RFC 8555 §7.5, §8): pre-authorization (§7.4.1),
//! deactivation (§7.5.2), and a challenge's validation through `va`, with CAA (RFC 8659) looked
//! up while the challenge is checked, as Boulder's VA does.

use std::sync::Arc;

use tokio::sync::oneshot;

use super::{ids, Ra, RaError};
use crate::pki::csr::Ident;
use crate::store::{
    now, AccountRow, AuthzRow, AuthzStatus, ChallengeRow, ChallengeStatus, NewAuthz,
};
use crate::va::{CaaQuery, ValidationError};

/// What CAA needs to know beyond the name (RFC 8657 parameters).
pub(super) struct CaaContext {
    pub account_uri: String,
    pub wildcard: bool,
}

/// A validation started by a challenge response: its outcome (the challenge as it then stands
/// in the store) arrives here when it ends; the validation goes on if nobody waits.
pub struct ValidationStarted {
    pub outcome: oneshot::Receiver<Option<ChallengeRow>>,
}

/// The identifier an authorization stands for in the order and the CSR (`*.name` for a
/// wildcard authorization, whose own identifier is the base name, RFC 8555 §7.1.4).
pub fn authz_ident(a: &AuthzRow) -> Option<Ident> {
    match a.id_type.as_str() {
        "dns" if a.wildcard => Some(Ident::Dns(format!("*.{}", a.id_value))),
        "dns" => Some(Ident::Dns(a.id_value.clone())),
        "ip" => a.id_value.parse().ok().map(Ident::Ip),
        _ => None,
    }
}

/// The challenge types offered for an identifier: a wildcard is proven by dns-01 only (RFC 8555
/// §7.1.3), an IP address by http-01 and tls-alpn-01 (RFC 8738 §7).
pub(super) fn challenge_kinds(ident: &Ident, wildcard: bool) -> &'static [&'static str] {
    match ident {
        _ if wildcard => &["dns-01"],
        Ident::Dns(_) => &["http-01", "dns-01", "tls-alpn-01"],
        Ident::Ip(_) => &["http-01", "tls-alpn-01"],
    }
}

/// A new pending authorization of `ident` (`value` without `*.`), with fresh challenges.
pub(super) fn new_authz(ident: &Ident, value: String, wildcard: bool, expires: i64) -> NewAuthz {
    NewAuthz {
        id: ids::object_id(),
        id_type: ident.kind().into(),
        id_value: value,
        wildcard,
        expires,
        challenges: challenge_kinds(ident, wildcard)
            .iter()
            .map(|k| (ids::object_id(), k.to_string(), ids::challenge_token()))
            .collect(),
    }
}

impl Ra {
    /// RFC 8555 §7.4.1: an authorization before any order (not for wildcards). Returns its id
    /// and when it was made.
    pub async fn pre_authorize(
        &self,
        account: &AccountRow,
        ident: &Ident,
    ) -> Result<(String, i64), RaError> {
        if matches!(ident, Ident::Dns(d) if d.starts_with("*.")) {
            return Err(RaError::IdentifierRefused(
                "wildcard identifiers cannot be pre-authorized".into(),
            ));
        }
        self.settings.identifier_policy.check(ident)?;
        // The account's binding limits its authorizations as it limits its orders.
        if let Some(policy) = self.binding_policy(account).await? {
            policy.identifiers.check(ident).map_err(|_| {
                RaError::IdentifierRefused(format!(
                    "this account's external account binding does not allow {}",
                    ident.value()
                ))
            })?;
        }
        self.check_rate_limits(account, std::slice::from_ref(ident))
            .await?;
        let created = now();
        let authz = new_authz(
            ident,
            ident.value(),
            false,
            created + self.settings.order_lifetime_secs,
        );
        self.store
            .insert_authz(&account.id, &authz, created)
            .await?;
        Ok((authz.id, created))
    }

    /// RFC 8555 §7.5.2: the account gives up an authorization.
    pub async fn deactivate_authz(&self, id: &str) -> Result<(), RaError> {
        if self.store.deactivate_authz(id).await? {
            let owner = self.store.authz_with_challenges(id).await?;
            let owner = owner.map(|(authz, _)| authz.account_id).unwrap_or_default();
            self.audit(crate::audit::Event::success(
                format!("acme-account:{owner}"),
                "acme.authorization.deactivated",
                format!("authorization:{id}"),
            ))
            .await;
        }
        Ok(())
    }

    /// RFC 8555 §7.5.1: the client says the challenge is ready. On a pending authorization the
    /// challenge is started (once: `pending → processing`) and validated in a task of its own;
    /// the challenge is returned as it now stands, with where the validation's outcome arrives.
    pub async fn respond_to_challenge(
        self: &Arc<Self>,
        mut chall: ChallengeRow,
        authz: &AuthzRow,
        account: &AccountRow,
        account_uri: String,
    ) -> Result<(ChallengeRow, Option<ValidationStarted>), RaError> {
        let status = authz.status_at(now());
        if status != AuthzStatus::Pending {
            if chall.status == ChallengeStatus::Pending {
                return Err(RaError::Malformed(format!("the authorization is {status}")));
            }
            return Ok((chall, None));
        }
        if !self.store.start_challenge(&chall.id).await? {
            return Ok((chall, None));
        }
        chall.status = ChallengeStatus::Processing;
        // A wildcard authorization is validated for its base name.
        let ident = authz_ident(authz)
            .map(|i| match i {
                Ident::Dns(d) => Ident::Dns(d.trim_start_matches("*.").to_string()),
                ip => ip,
            })
            .ok_or_else(|| RaError::Internal("bad stored identifier".into()))?;
        let key_authorization = format!("{}.{}", chall.token, account.thumbprint);
        let caa = CaaContext {
            account_uri,
            wildcard: authz.wildcard,
        };
        let this = self.clone();
        let started = chall.clone();
        let (finished, outcome) = oneshot::channel();
        tokio::spawn(async move {
            let done = this
                .run_validation(started, ident, key_authorization, caa)
                .await;
            // Nobody listens once the answer went out without it.
            let _ = finished.send(done);
        });
        Ok((chall, Some(ValidationStarted { outcome })))
    }

    pub(super) async fn check_caa(
        &self,
        domain: &str,
        caa: &CaaContext,
        method: &str,
    ) -> Result<(), ValidationError> {
        let query = CaaQuery {
            domain,
            wildcard: caa.wildcard,
            account_uri: &caa.account_uri,
            method,
        };
        self.validator
            .check_caa(&query, &self.settings.caa_identities)
            .await
    }

    async fn run_validation(
        &self,
        chall: ChallengeRow,
        ident: Ident,
        key_authorization: String,
        caa: CaaContext,
    ) -> Option<ChallengeRow> {
        let test_mode = &self.settings.test_mode;
        tokio::time::sleep(test_mode.validation_delay()).await;
        let outcome = if test_mode.enabled && test_mode.always_valid {
            Ok(())
        } else {
            let proof =
                self.validator
                    .validate(&chall.kind, &ident, &chall.token, &key_authorization);
            let checked = async {
                match &ident {
                    // CAA (RFC 8659) is looked up while the challenge is checked: the lookups'
                    // round trips hide behind the validation's. A failed validation is
                    // reported before a CAA refusal.
                    Ident::Dns(domain) => {
                        let (proven, permitted) =
                            tokio::join!(proof, self.check_caa(domain, &caa, &chall.kind));
                        proven.and(permitted)
                    }
                    Ident::Ip(_) => proof.await,
                }
            };
            // Bounded, so that a challenge `processing` for longer than the validation lease
            // (see `Validator::deadline`) is known to have been left by a stopped process.
            let deadline = self.validator.deadline();
            tokio::time::timeout(deadline, checked)
                .await
                .unwrap_or_else(|_| {
                    Err(ValidationError::connection(format!(
                        "validation of {} did not finish within {} s",
                        ident.value(),
                        deadline.as_secs()
                    )))
                })
        };
        let (valid, error) = match &outcome {
            Ok(()) => (true, None),
            Err(e) => (
                false,
                Some(super::problem_document(
                    e.kind.acme_type(),
                    e.kind.status(),
                    &e.detail,
                )),
            ),
        };
        tracing::info!(challenge = %chall.id, identifier = %ident.value(), valid, error = ?outcome.as_ref().err().map(|e| e.detail.clone()), "validation finished");
        let at = now();
        let validated = valid.then_some(at);
        match self
            .store
            .finish_challenge(
                &chall.id,
                &chall.authz_id,
                validated,
                error.as_deref(),
                at + self.settings.authz_reuse_secs,
            )
            .await
        {
            // The challenge as it now stands in the store.
            Ok(true) => Some(ChallengeRow {
                status: if valid {
                    ChallengeStatus::Valid
                } else {
                    ChallengeStatus::Invalid
                },
                validated,
                error,
                ..chall
            }),
            Ok(false) => None,
            Err(e) => {
                tracing::error!(challenge = %chall.id, error = %e, "could not record the validation outcome");
                None
            }
        }
    }
}

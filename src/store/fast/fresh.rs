//! ACME orders and authorizations kept in memory by the embedded SQLite store, from their
//! creation through their challenges' validation; issued certificates for their download.
//!
//! A client reads what it has just created: the authorization of its new order, the challenge
//! it answers, the order it finalizes, the certificate it was just issued. With the embedded
//! SQLite file this process is the database's only writer of these rows, so it knows them as
//! it writes them and can answer those reads without a query.
//!
//! The rule that keeps this exact is narrow on purpose: only the database writer changes an
//! entry, once a write is committed and before that write's caller hears of it, in commit
//! order (`group_commit::After`). It puts a row in as its insert wrote it, and follows the
//! writes that tell it the whole new row: a challenge's start and its outcome, when their
//! statements changed one row each. Any other write that may change a row, or one that did not
//! commit, drops the entry. Reads never put anything in: a dropped row is read from the file
//! from then on. So no read can put back a row older than the file's, and no change of a row
//! can be overtaken by an earlier one.
//!
//! An issued certificate's serial, issuer, account, DER and chain never change, so the issuance
//! that stored it puts it in once stored; its revocation does change, and is not kept:
//! [`FreshObjects::certificate`] is for downloads only.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::bounded::Bounded;
use crate::store::rows::validation_of;
use crate::store::{
    AuthzRow, AuthzStatus, CertificateRow, ChallengeRow, ChallengeStatus, OrderRow,
};

/// Orders, and authorizations, kept; past it, one kept entry makes room for the next.
const CAPACITY: usize = 8_192;
/// Issued certificates kept for their download (a few KiB each).
const CERTIFICATES: usize = 1_024;

/// A validation's outcome as [`crate::store::Store::finish_challenge`] wrote it.
pub struct Outcome {
    /// `valid` or `invalid`, the challenge's and its authorization's alike.
    pub challenge_status: ChallengeStatus,
    pub authz_status: AuthzStatus,
    pub validated: Option<i64>,
    pub error: Option<String>,
    /// The authorization's new expiry (a valid outcome).
    pub authz_expires: Option<i64>,
}

pub struct FreshObjects {
    inner: Mutex<Inner>,
}

struct Inner {
    /// An order and the ids of its authorizations, in the order's order.
    orders: Bounded<(OrderRow, Vec<String>)>,
    /// An authorization and its challenges, ordered by type as the database orders them.
    authzs: Bounded<(AuthzRow, Vec<ChallengeRow>)>,
    /// Challenge id → its authorization's, for every kept authorization's challenges.
    challenges: HashMap<String, String>,
    certificates: Bounded<CertificateRow>,
}

impl Default for FreshObjects {
    fn default() -> FreshObjects {
        FreshObjects {
            inner: Mutex::new(Inner {
                orders: Bounded::new(CAPACITY),
                authzs: Bounded::new(CAPACITY),
                challenges: HashMap::new(),
                certificates: Bounded::new(CERTIFICATES),
            }),
        }
    }
}

impl FreshObjects {
    /// A new order, with the authorizations created with it (reused ones are kept already or
    /// not at all).
    pub fn put_order(
        &self,
        order: OrderRow,
        authz_ids: Vec<String>,
        new_authzs: Vec<(AuthzRow, Vec<ChallengeRow>)>,
    ) {
        let mut inner = self.lock();
        for (authz, challenges) in new_authzs {
            inner.put_authz(authz, challenges);
        }
        inner.orders.insert(order.id.clone(), (order, authz_ids));
    }

    /// A new authorization with its challenges.
    pub fn put_authz(&self, authz: AuthzRow, challenges: Vec<ChallengeRow>) {
        self.lock().put_authz(authz, challenges);
    }

    pub fn put_certificate(&self, certificate: CertificateRow) {
        self.lock()
            .certificates
            .insert(certificate.serial.clone(), certificate);
    }

    pub fn order(&self, id: &str) -> Option<OrderRow> {
        self.lock().orders.get(id).map(|(order, _)| order.clone())
    }

    /// The order with its authorizations, if every one of them is kept too.
    pub fn order_with_authzs(&self, id: &str) -> Option<(OrderRow, Vec<AuthzRow>)> {
        let inner = self.lock();
        let (order, authz_ids) = inner.orders.get(id)?;
        let authzs = authz_ids
            .iter()
            .map(|a| inner.authzs.get(a).map(|(authz, _)| authz.clone()))
            .collect::<Option<Vec<_>>>()?;
        Some((order.clone(), authzs))
    }

    pub fn authz_with_challenges(&self, id: &str) -> Option<(AuthzRow, Vec<ChallengeRow>)> {
        self.lock().authzs.get(id).cloned()
    }

    /// The challenge and its authorization, without the validation summary (as the file's
    /// query gives them).
    pub fn challenge_with_authz(&self, id: &str) -> Option<(ChallengeRow, AuthzRow)> {
        let inner = self.lock();
        let (authz, challenges) = inner.authzs.get(inner.challenges.get(id)?)?;
        let challenge = challenges.iter().find(|c| c.id == id)?;
        let authz = AuthzRow {
            validation: None,
            ..authz.clone()
        };
        Some((challenge.clone(), authz))
    }

    /// The challenge went from `pending` to `processing`.
    pub fn challenge_started(&self, challenge_id: &str) {
        let mut inner = self.lock();
        if let Some(challenge) = inner.challenge_mut(challenge_id) {
            challenge.status = ChallengeStatus::Processing;
        }
    }

    /// The challenge, `processing`, and its authorization, `pending`, took `outcome`.
    pub fn challenge_finished(&self, challenge_id: &str, authz_id: &str, outcome: &Outcome) {
        let mut inner = self.lock();
        if let Some(owner) = inner.challenges.get(challenge_id).cloned() {
            if owner != authz_id {
                // Not this authorization's challenge: neither row kept can be trusted.
                inner.forget_authz(&owner);
                inner.forget_authz(authz_id);
                return;
            }
        }
        let Some((authz, challenges)) = inner.authzs.get_mut(authz_id) else {
            return;
        };
        let Some(challenge) = challenges.iter_mut().find(|c| c.id == challenge_id) else {
            inner.forget_authz(authz_id);
            return;
        };
        challenge.status = outcome.challenge_status;
        challenge.validated = outcome.validated;
        challenge.error.clone_from(&outcome.error);
        authz.status = outcome.authz_status;
        if let Some(expires) = outcome.authz_expires {
            authz.expires = expires;
        }
        authz.validation = validation_of(challenges);
    }

    /// An issued certificate, for its download: its revocation is not kept.
    pub fn certificate(&self, serial: &str) -> Option<CertificateRow> {
        self.lock().certificates.get(serial).cloned()
    }

    pub fn forget_order(&self, id: &str) {
        self.lock().orders.remove(id);
    }

    /// Forgets the order and its authorizations: it is being finalized, and what comes after
    /// reads neither again (an authorization reused by another order is read from the file).
    pub fn forget_order_and_authzs(&self, id: &str) {
        let mut inner = self.lock();
        if let Some((_, authz_ids)) = inner.orders.remove(id) {
            for authz_id in authz_ids {
                inner.forget_authz(&authz_id);
            }
        }
    }

    pub fn forget_authz(&self, id: &str) {
        self.lock().forget_authz(id);
    }

    /// Forgets the authorization the challenge belongs to (a challenge changes with it).
    pub fn forget_authz_of_challenge(&self, challenge_id: &str) {
        let mut inner = self.lock();
        if let Some(authz_id) = inner.challenges.get(challenge_id).cloned() {
            inner.forget_authz(&authz_id);
        }
    }

    pub fn forget_all_authzs(&self) {
        let mut inner = self.lock();
        inner.authzs.clear();
        inner.challenges.clear();
    }

    pub fn forget_authzs_of_account(&self, account_id: &str) {
        let mut inner = self.lock();
        let ids: Vec<String> = inner
            .authzs
            .values()
            .filter(|(a, _)| a.account_id == account_id)
            .map(|(a, _)| a.id.clone())
            .collect();
        for id in ids {
            inner.forget_authz(&id);
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every change is one call that cannot panic halfway.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Inner {
    fn put_authz(&mut self, authz: AuthzRow, mut challenges: Vec<ChallengeRow>) {
        // Its challenges as they were, if it is kept already.
        self.forget_authz(&authz.id);
        // As `AUTHZ_WITH_CHALLENGES` orders them: by type, in byte order.
        challenges.sort_by(|a, b| a.kind.cmp(&b.kind));
        for c in &challenges {
            self.challenges.insert(c.id.clone(), authz.id.clone());
        }
        if let Some((_, (_, dropped))) = self.authzs.insert(authz.id.clone(), (authz, challenges)) {
            for c in dropped {
                self.challenges.remove(&c.id);
            }
        }
    }

    fn challenge_mut(&mut self, challenge_id: &str) -> Option<&mut ChallengeRow> {
        let authz_id = self.challenges.get(challenge_id)?;
        let (_, challenges) = self.authzs.get_mut(authz_id)?;
        challenges.iter_mut().find(|c| c.id == challenge_id)
    }

    fn forget_authz(&mut self, id: &str) {
        if let Some((_, challenges)) = self.authzs.remove(id) {
            for c in challenges {
                self.challenges.remove(&c.id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::store::OrderStatus;

    fn authz(id: &str, account: &str) -> (AuthzRow, Vec<ChallengeRow>) {
        let row = AuthzRow {
            id: id.into(),
            account_id: account.into(),
            id_type: "dns".into(),
            id_value: format!("{id}.example"),
            wildcard: false,
            status: AuthzStatus::Pending,
            expires: 100,
            validation: None,
        };
        let challenges = ["tls-alpn-01", "http-01", "dns-01"]
            .iter()
            .map(|kind| ChallengeRow {
                id: format!("{id}-{kind}"),
                authz_id: id.into(),
                kind: (*kind).into(),
                token: "t".into(),
                status: ChallengeStatus::Pending,
                validated: None,
                error: None,
            })
            .collect();
        (row, challenges)
    }

    #[test]
    fn an_order_is_whole_only_while_all_its_authorizations_are_kept() {
        let fresh = FreshObjects::default();
        fresh.put_order(
            OrderRow::for_tests("o", "acct", OrderStatus::Pending, 100),
            vec!["a".into(), "b".into()],
            vec![authz("a", "acct"), authz("b", "acct")],
        );
        let (order, authzs) = fresh.order_with_authzs("o").unwrap();
        assert_eq!(order.id, "o");
        let ids: Vec<&str> = authzs.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);

        // Answering a challenge of `b` changes `b`: the order is read from the file again.
        fresh.forget_authz_of_challenge("b-http-01");
        assert!(fresh.order_with_authzs("o").is_none());
        assert!(fresh.order("o").is_some());
        assert!(fresh.challenge_with_authz("b-dns-01").is_none());
        let (challenge, authz) = fresh.challenge_with_authz("a-dns-01").unwrap();
        assert_eq!(
            (challenge.kind.as_str(), authz.id.as_str()),
            ("dns-01", "a")
        );
    }

    #[test]
    fn an_outcome_named_with_another_authorization_forgets_both() {
        let fresh = FreshObjects::default();
        for id in ["a", "b"] {
            let (row, challenges) = authz(id, "acct");
            fresh.put_authz(row, challenges);
        }
        let outcome = Outcome {
            challenge_status: ChallengeStatus::Valid,
            authz_status: AuthzStatus::Valid,
            validated: Some(5),
            error: None,
            authz_expires: Some(200),
        };
        fresh.challenge_finished("a-http-01", "b", &outcome);
        assert!(fresh.authz_with_challenges("a").is_none());
        assert!(fresh.authz_with_challenges("b").is_none());

        let (row, challenges) = authz("a", "acct");
        fresh.put_authz(row, challenges);
        fresh.challenge_finished("a-http-01", "a", &outcome);
        let (authz, challenges) = fresh.authz_with_challenges("a").unwrap();
        assert_eq!(
            (authz.status, authz.expires, authz.validation),
            (AuthzStatus::Valid, 200, Some(("http-01".to_owned(), 5)))
        );
        assert_eq!(challenges[1].status, ChallengeStatus::Valid);
    }

    #[test]
    fn challenges_come_in_the_databases_order() {
        let fresh = FreshObjects::default();
        let (row, challenges) = authz("a", "acct");
        fresh.put_authz(row, challenges);
        let (_, challenges) = fresh.authz_with_challenges("a").unwrap();
        let kinds: Vec<&str> = challenges.iter().map(|c| c.kind.as_str()).collect();
        assert_eq!(kinds, ["dns-01", "http-01", "tls-alpn-01"]);
    }

    #[test]
    fn deactivating_an_account_forgets_only_its_authorizations() {
        let fresh = FreshObjects::default();
        for (id, account) in [("a", "one"), ("b", "two"), ("c", "one")] {
            let (row, challenges) = authz(id, account);
            fresh.put_authz(row, challenges);
        }
        fresh.forget_authzs_of_account("one");
        assert!(fresh.authz_with_challenges("a").is_none());
        assert!(fresh.authz_with_challenges("c").is_none());
        assert!(fresh.challenge_with_authz("c-http-01").is_none());
        assert!(fresh.authz_with_challenges("b").is_some());
    }

    #[test]
    fn the_maps_stay_bounded() {
        let fresh = FreshObjects::default();
        for i in 0..CAPACITY + 10 {
            let (row, challenges) = authz(&i.to_string(), "acct");
            fresh.put_order(
                OrderRow::for_tests(&format!("o{i}"), "acct", OrderStatus::Pending, 100),
                vec![row.id.clone()],
                vec![(row, challenges)],
            );
        }
        let inner = fresh.lock();
        assert_eq!(inner.orders.len(), CAPACITY);
        assert_eq!(inner.authzs.len(), CAPACITY);
        // No challenge points at an authorization that was made room for.
        assert_eq!(inner.challenges.len(), 3 * CAPACITY);
    }
}

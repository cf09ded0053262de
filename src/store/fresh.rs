//! ACME orders and authorizations kept in memory by the embedded SQLite store, from their
//! creation to their first change; issued certificates for their download.
//!
//! A client reads what it has just created: the authorization of its new order, the challenge
//! it answers, the order it finalizes, the certificate it was just issued. With the embedded
//! SQLite file this process is the database's only writer of these rows, so it knows them as
//! it writes them and can answer those reads without a query.
//!
//! The rule that keeps this exact is narrow on purpose: an entry is a row as its insert wrote
//! it, put in by the database writer once the insert is committed, and dropped by the writer
//! once any write that may change the row has ended (committed or not), before that write's
//! caller hears of it. Reads never put anything in: a row that changed is read from the file
//! from then on. Both run on the writer in commit order (`group_commit::After`), so no read
//! can put back a row older than the file's, and the first change of a row cannot be
//! overtaken by its insert.
//!
//! An issued certificate's serial, issuer, account, DER and chain never change, so the issuance
//! that stored it puts it in once stored; its revocation does change, and is not kept:
//! [`FreshObjects::certificate`] is for downloads only.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::{AuthzRow, CertificateRow, ChallengeRow, OrderRow};

/// Orders, and authorizations, kept; past it, one kept entry makes room for the next.
const CAPACITY: usize = 8_192;
/// Issued certificates kept for their download (a few KiB each).
const CERTIFICATES: usize = 1_024;

#[derive(Default)]
pub struct FreshObjects {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// An order and the ids of its authorizations, in the order's order.
    orders: HashMap<String, (OrderRow, Vec<String>)>,
    /// An authorization and its challenges, ordered by type as the database orders them.
    authzs: HashMap<String, (AuthzRow, Vec<ChallengeRow>)>,
    /// Challenge id → its authorization's, for every kept authorization's challenges.
    challenges: HashMap<String, String>,
    certificates: HashMap<String, CertificateRow>,
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
        if inner.orders.len() >= CAPACITY {
            if let Some(evicted) = inner.orders.keys().next().cloned() {
                inner.orders.remove(&evicted);
            }
        }
        inner.orders.insert(order.id.clone(), (order, authz_ids));
    }

    /// A new authorization with its challenges.
    pub fn put_authz(&self, authz: AuthzRow, challenges: Vec<ChallengeRow>) {
        self.lock().put_authz(authz, challenges);
    }

    pub fn put_certificate(&self, certificate: CertificateRow) {
        let mut inner = self.lock();
        if inner.certificates.len() >= CERTIFICATES {
            if let Some(evicted) = inner.certificates.keys().next().cloned() {
                inner.certificates.remove(&evicted);
            }
        }
        inner
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

    pub fn challenge_with_authz(&self, id: &str) -> Option<(ChallengeRow, AuthzRow)> {
        let inner = self.lock();
        let (authz, challenges) = inner.authzs.get(inner.challenges.get(id)?)?;
        let challenge = challenges.iter().find(|c| c.id == id)?;
        Some((challenge.clone(), authz.clone()))
    }

    /// An issued certificate, for its download: its revocation is not kept.
    pub fn certificate(&self, serial: &str) -> Option<CertificateRow> {
        self.lock().certificates.get(serial).cloned()
    }

    pub fn forget_order(&self, id: &str) {
        self.lock().orders.remove(id);
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
        if self.authzs.len() >= CAPACITY && !self.authzs.contains_key(&authz.id) {
            if let Some(evicted) = self.authzs.keys().next().cloned() {
                self.forget_authz(&evicted);
            }
        }
        // As `AUTHZ_WITH_CHALLENGES` orders them: by type, in byte order.
        challenges.sort_by(|a, b| a.kind.cmp(&b.kind));
        for c in &challenges {
            self.challenges.insert(c.id.clone(), authz.id.clone());
        }
        self.authzs.insert(authz.id.clone(), (authz, challenges));
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

    fn authz(id: &str, account: &str) -> (AuthzRow, Vec<ChallengeRow>) {
        let row = AuthzRow {
            id: id.into(),
            account_id: account.into(),
            id_type: "dns".into(),
            id_value: format!("{id}.example"),
            wildcard: false,
            status: "pending".into(),
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
                status: "pending".into(),
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
            OrderRow::for_tests("o", "acct", "pending", 100),
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
                OrderRow::for_tests(&format!("o{i}"), "acct", "pending", 100),
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

//! Anti-replay nonces, RFC 8555 §6.5: issued by the ACME directories (`/acme/new-nonce` and
//! every ACME answer's `Replay-Nonce`), redeemed once by every JWS-signed request, ACME's and
//! the REST surfaces' alike.
//!
//! A nonce is `base64url(expiry ‖ counter ‖ random ‖ HMAC)`: whoever holds the key can check it
//! without a lookup, so issuing a nonce writes nothing. Where it is redeemed depends on who
//! shares the database:
//!
//! - **Several replicas** (PostgreSQL): the key lives in the shared database, and redemption
//!   inserts the nonce into `redeemed_nonces`, whose primary key makes it single-use across every
//!   replica at once.
//! - **One process** (the embedded SQLite file): redemption is a set in memory, as in Boulder's
//!   nonce service — no commit and no `fsync` per request. The key is made fresh at each start,
//!   so a nonce from before a restart fails its MAC (`badNonce`, which clients retry). The set
//!   keeps the most recent [`IN_PROCESS_WINDOW`] redeemed counters; a nonce older than all of
//!   them is refused as stale, so memory stays bounded and no nonce is ever accepted twice.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use aws_lc_rs::hmac;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;

use super::jws::{nonce_of, Jws, JwsError};
use crate::store::{now, AccountRow, Prefetch, Prefetched, Store, StoreError};

const COUNTER_LEN: usize = 8;
const RANDOM_LEN: usize = 4;
const SIGNED_LEN: usize = 8 + COUNTER_LEN + RANDOM_LEN;
const TAG_LEN: usize = 16;
const RAW_LEN: usize = SIGNED_LEN + TAG_LEN;

/// How many redeemed nonces the in-process ledger remembers (about 1 MiB); a nonce issued before
/// the oldest of them is refused.
pub const IN_PROCESS_WINDOW: usize = 65_536;

/// Where redemptions are recorded.
enum Ledger {
    /// `redeemed_nonces` in the shared database.
    Database(Store),
    /// This process's memory: the database has no other writer.
    InProcess(Mutex<RedeemedCounters>),
}

/// The counters of the most recently redeemed nonces, and the floor under which every nonce
/// counts as redeemed.
#[derive(Default)]
struct RedeemedCounters {
    floor: u64,
    recent: BTreeSet<u64>,
}

impl RedeemedCounters {
    /// `true` the first time `counter` is redeemed, `false` ever after.
    fn redeem(&mut self, counter: u64) -> bool {
        if counter <= self.floor || !self.recent.insert(counter) {
            return false;
        }
        while self.recent.len() > IN_PROCESS_WINDOW {
            if let Some(oldest) = self.recent.pop_first() {
                self.floor = oldest;
            }
        }
        true
    }
}

#[derive(Clone)]
pub struct NonceService {
    key: hmac::Key,
    lifetime_secs: i64,
    counter: Arc<AtomicU64>,
    ledger: Arc<Ledger>,
}

impl NonceService {
    /// Nonces redeemed in `store`, the database replicas share. `secret` is shared by every
    /// replica (kept in the database's settings table).
    pub fn new(secret: &[u8], lifetime_secs: u64, store: Store) -> NonceService {
        NonceService::with_ledger(secret, lifetime_secs, Ledger::Database(store))
    }

    /// Nonces redeemed in this process's memory, under a key of this process's own: for a
    /// database no other process writes (the embedded SQLite file).
    pub fn in_process(lifetime_secs: u64) -> NonceService {
        let mut secret = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut secret);
        let ledger = Ledger::InProcess(Mutex::new(RedeemedCounters::default()));
        NonceService::with_ledger(&secret, lifetime_secs, ledger)
    }

    fn with_ledger(secret: &[u8], lifetime_secs: u64, ledger: Ledger) -> NonceService {
        NonceService {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            lifetime_secs: i64::try_from(lifetime_secs).unwrap_or(3600).max(1),
            counter: Arc::new(AtomicU64::new(0)),
            ledger: Arc::new(ledger),
        }
    }

    pub fn issue(&self) -> String {
        let mut raw = [0u8; RAW_LEN];
        raw[..8].copy_from_slice(&(now() + self.lifetime_secs).to_be_bytes());
        let counter = self.counter.fetch_add(1, Ordering::Relaxed) + 1;
        raw[8..8 + COUNTER_LEN].copy_from_slice(&counter.to_be_bytes());
        rand::thread_rng().fill_bytes(&mut raw[8 + COUNTER_LEN..SIGNED_LEN]);
        let tag = hmac::sign(&self.key, &raw[..SIGNED_LEN]);
        raw[SIGNED_LEN..].copy_from_slice(&tag.as_ref()[..TAG_LEN]);
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Check the MAC and the expiry; returns the expiry and the counter. Does not redeem.
    pub fn check(&self, nonce: &str) -> Result<(i64, u64), JwsError> {
        let bad = || JwsError::bad_nonce("JWS has an invalid anti-replay nonce");
        let raw = URL_SAFE_NO_PAD.decode(nonce).map_err(|_| bad())?;
        if raw.len() != RAW_LEN {
            return Err(bad());
        }
        let tag = hmac::sign(&self.key, &raw[..SIGNED_LEN]);
        if !constant_time_eq(&tag.as_ref()[..TAG_LEN], &raw[SIGNED_LEN..]) {
            return Err(bad());
        }
        let mut exp = [0u8; 8];
        exp.copy_from_slice(&raw[..8]);
        let expires = i64::from_be_bytes(exp);
        if expires < now() {
            return Err(JwsError::bad_nonce("JWS nonce has expired"));
        }
        let mut counter = [0u8; COUNTER_LEN];
        counter.copy_from_slice(&raw[8..8 + COUNTER_LEN]);
        Ok((expires, u64::from_be_bytes(counter)))
    }

    /// Where nonces are redeemed in the database: redeem `nonce` (checked already, expiring at
    /// `expires`) with the statement that reads account `id` and the resource `prefetch`
    /// names — one round trip instead of three ([`Store::account_redeeming_nonce`]): the
    /// account, whether this was the nonce's first redemption, and what was read. `None` where
    /// nonces are redeemed in memory.
    pub async fn account_redeeming_nonce(
        &self,
        id: &str,
        nonce: &str,
        expires: i64,
        prefetch: Prefetch<'_>,
    ) -> Option<Result<(Option<AccountRow>, bool, Prefetched), StoreError>> {
        match self.ledger.as_ref() {
            Ledger::Database(store) => Some(
                store
                    .account_redeeming_nonce(id, nonce, expires, prefetch)
                    .await,
            ),
            Ledger::InProcess(_) => None,
        }
    }

    /// Check and redeem, once: across all replicas, or in this process.
    /// A signed request's body as [`Jws::parse`] reads it; when it is refused, the nonce its
    /// protected header names is spent all the same, if that is one of ours and still live
    /// (RFC 8555 §6.5: a nonce that appeared in a request is invalid from then on).
    pub async fn parse_request(&self, body: &[u8]) -> Result<Jws, JwsError> {
        let refused = match Jws::parse(body) {
            Ok(jws) => return Ok(jws),
            Err(e) => e,
        };
        if let Some(nonce) = nonce_of(body).filter(|n| self.check(n).is_ok()) {
            let _ = self.redeem(&nonce).await;
        }
        Err(refused)
    }

    pub async fn redeem(&self, nonce: &str) -> Result<(), JwsError> {
        let (expires, counter) = self.check(nonce)?;
        let first = match self.ledger.as_ref() {
            Ledger::Database(store) => store.redeem_nonce(nonce, expires).await?,
            Ledger::InProcess(redeemed) => redeemed
                .lock()
                .map_err(|_| JwsError::internal("the nonce ledger is poisoned"))?
                .redeem(counter),
        };
        first_redemption(first)
    }
}

/// `badNonce` unless this was the nonce's first redemption.
pub fn first_redemption(first: bool) -> Result<(), JwsError> {
    if first {
        Ok(())
    } else {
        Err(JwsError::bad_nonce("JWS nonce was used already"))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn a_nonce_checks_with_its_key_only() {
        let in_memory = || Ledger::InProcess(Mutex::new(RedeemedCounters::default()));
        let a = NonceService::with_ledger(b"key a", 60, in_memory());
        let b = NonceService::with_ledger(b"key b", 60, in_memory());
        let n = a.issue();
        assert!(a.check(&n).is_ok());
        assert_eq!(b.check(&n).unwrap_err().acme_type(), "badNonce");
        assert_eq!(a.check("abc").unwrap_err().acme_type(), "badNonce");
        let mut tampered = URL_SAFE_NO_PAD.decode(&n).unwrap();
        tampered[9] ^= 1;
        assert!(a.check(&URL_SAFE_NO_PAD.encode(tampered)).is_err());
    }

    #[tokio::test]
    async fn in_process_nonces_redeem_once_and_never_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("n.db").display());
        let store = Store::connect(&url, 2).await.unwrap();
        let service = NonceService::in_process(60);
        let shared = service.clone();
        let nonce = service.issue();
        assert!(service.redeem(&nonce).await.is_ok());
        // A clone (another directory of the same server) shares the ledger.
        let again = shared.redeem(&nonce).await.unwrap_err();
        assert_eq!(again.acme_type(), "badNonce");
        // A restarted process has another key: the old nonce fails its MAC.
        let restarted = NonceService::in_process(60);
        let stale = restarted.redeem(&service.issue()).await.unwrap_err();
        assert_eq!(stale.acme_type(), "badNonce");
        // Nothing was written: the in-process ledger keeps no table.
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM redeemed_nonces")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(rows, 0);
    }

    #[test]
    fn the_in_process_window_is_bounded_and_refuses_what_fell_out_of_it() {
        let mut redeemed = RedeemedCounters::default();
        let window = IN_PROCESS_WINDOW as u64;
        // Within the window, out of order, as concurrent clients redeem them.
        for counter in (1..=window).rev() {
            assert!(redeemed.redeem(counter), "counter {counter} is fresh");
        }
        for counter in window + 1..=window + 1000 {
            assert!(redeemed.redeem(counter), "counter {counter} is fresh");
        }
        assert_eq!(redeemed.recent.len(), IN_PROCESS_WINDOW);
        assert_eq!(redeemed.floor, 1000);
        for counter in [1, 500, 1000, 1001, window, window + 1000] {
            assert!(!redeemed.redeem(counter), "counter {counter} was redeemed");
        }
        // Unredeemed but older than the window: refused, never accepted late.
        let mut sparse = RedeemedCounters::default();
        assert!(sparse.redeem(10));
        for counter in 20..=20 + IN_PROCESS_WINDOW as u64 {
            assert!(sparse.redeem(counter));
        }
        assert_eq!(sparse.floor, 20);
        assert!(
            !sparse.redeem(15),
            "a nonce under the floor must be refused"
        );
        assert!(
            sparse.redeem(21 + IN_PROCESS_WINDOW as u64),
            "a new one is fine"
        );
    }
}

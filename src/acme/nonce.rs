//! Anti-replay nonces, RFC 8555 §6.5.
//!
//! A nonce is `base64url(expiry ‖ random ‖ HMAC)`: any replica holding the shared key can check
//! it without a lookup, so issuing a nonce writes nothing. Redemption inserts the nonce into
//! `redeemed_nonces`, whose primary key makes it single-use across every replica at once.

use aws_lc_rs::hmac;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;

use super::problem::Problem;
use crate::store::{now, Store};

const RANDOM_LEN: usize = 12;
const TAG_LEN: usize = 16;
const RAW_LEN: usize = 8 + RANDOM_LEN + TAG_LEN;

pub struct NonceService {
    key: hmac::Key,
    lifetime_secs: i64,
}

impl NonceService {
    /// `secret` is shared by every replica (kept in the database's settings table).
    pub fn new(secret: &[u8], lifetime_secs: u64) -> NonceService {
        NonceService {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            lifetime_secs: i64::try_from(lifetime_secs).unwrap_or(3600).max(1),
        }
    }

    pub fn issue(&self) -> String {
        let mut raw = [0u8; RAW_LEN];
        raw[..8].copy_from_slice(&(now() + self.lifetime_secs).to_be_bytes());
        rand::thread_rng().fill_bytes(&mut raw[8..8 + RANDOM_LEN]);
        let tag = hmac::sign(&self.key, &raw[..8 + RANDOM_LEN]);
        raw[8 + RANDOM_LEN..].copy_from_slice(&tag.as_ref()[..TAG_LEN]);
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Check the MAC and the expiry; returns the expiry. Does not redeem.
    pub fn check(&self, nonce: &str) -> Result<i64, Problem> {
        let bad = || Problem::bad_nonce("JWS has an invalid anti-replay nonce");
        let raw = URL_SAFE_NO_PAD.decode(nonce).map_err(|_| bad())?;
        if raw.len() != RAW_LEN {
            return Err(bad());
        }
        let tag = hmac::sign(&self.key, &raw[..8 + RANDOM_LEN]);
        if !constant_time_eq(&tag.as_ref()[..TAG_LEN], &raw[8 + RANDOM_LEN..]) {
            return Err(bad());
        }
        let mut exp = [0u8; 8];
        exp.copy_from_slice(&raw[..8]);
        let expires = i64::from_be_bytes(exp);
        if expires < now() {
            return Err(Problem::bad_nonce("JWS nonce has expired"));
        }
        Ok(expires)
    }

    /// Check and redeem, once across all replicas.
    pub async fn redeem(&self, store: &Store, nonce: &str) -> Result<(), Problem> {
        let expires = self.check(nonce)?;
        if store.redeem_nonce(nonce, expires).await? {
            Ok(())
        } else {
            Err(Problem::bad_nonce("JWS nonce was used already"))
        }
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
        let a = NonceService::new(b"key a", 60);
        let b = NonceService::new(b"key b", 60);
        let n = a.issue();
        assert!(a.check(&n).is_ok());
        assert_eq!(b.check(&n).unwrap_err().short_type(), "badNonce");
        assert_eq!(a.check("abc").unwrap_err().short_type(), "badNonce");
        let mut tampered = URL_SAFE_NO_PAD.decode(&n).unwrap();
        tampered[9] ^= 1;
        assert!(a.check(&URL_SAFE_NO_PAD.encode(tampered)).is_err());
    }
}

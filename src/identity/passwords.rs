//! Passwords: argon2id (RFC 9106) at OWASP's recommended floor, m = 19456 KiB, t = 2, p = 1,
//! stored as PHC strings (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`, 16-byte random salt,
//! 32-byte hash). A stored hash carries its own parameters, so raising them later leaves old
//! hashes verifiable.
//!
//! A login for a user that does not exist, or has no password, is checked against
//! [`DUMMY_HASH`], made with the same parameters: it costs what a wrong password costs and
//! is answered the same. The comparison inside argon2 is constant-time. At most as many hashes
//! run at once as the machine has cores (each holds 19 MiB), on blocking threads, so a flood of
//! logins queues instead of exhausting memory or stalling the request tasks.

use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::RngCore;
use tokio::sync::Semaphore;
use zeroize::Zeroizing;

/// Memory cost, KiB (OWASP: 19 MiB).
pub const MEMORY_KIB: u32 = 19_456;
/// Passes over the memory.
pub const ITERATIONS: u32 = 2;
/// Lanes.
pub const PARALLELISM: u32 = 1;
/// Shortest password `pkid user create` accepts.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Longest password accepted anywhere (argon2 takes any length; the work should not).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// A hash of a random password nobody knows, with the parameters above (a unit test holds
/// them equal): what an unknown user's login is checked against.
pub const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$YkxYk0bOMvXup7vsbFZh0A$4DwXPUWfQWf+zJgFC25UwBz3XjS76/z0m28XfRwyBIQ";

/// Why a password cannot be hashed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("a password has at least {MIN_PASSWORD_CHARS} characters")]
    TooShort,
    #[error("a password has at most {MAX_PASSWORD_BYTES} bytes")]
    TooLong,
    #[error("hashing failed: {0}")]
    Hashing(String),
}

fn argon2id() -> Result<Argon2<'static>, PasswordError> {
    let params = Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None)
        .map_err(|e| PasswordError::Hashing(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// The PHC string of a new password (at least [`MIN_PASSWORD_CHARS`] characters).
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(PasswordError::TooShort);
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(PasswordError::TooLong);
    }
    let mut salt = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| PasswordError::Hashing(e.to_string()))?;
    Ok(argon2id()?
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| PasswordError::Hashing(e.to_string()))?
        .to_string())
}

/// Whether `password` matches the PHC string `stored` (`false` for one that does not parse).
fn matches(password: &[u8], stored: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(stored) else {
        return false;
    };
    // The algorithm and parameters come from the stored hash.
    Argon2::default().verify_password(password, &parsed).is_ok()
}

/// Checks passwords on blocking threads, a bounded number at once.
#[derive(Clone)]
pub struct PasswordChecker {
    permits: Arc<Semaphore>,
}

impl Default for PasswordChecker {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        PasswordChecker {
            permits: Arc::new(Semaphore::new(cores.max(1))),
        }
    }
}

impl PasswordChecker {
    /// Whether `password` matches `stored`; `None` (no such user, or no password) is checked
    /// against [`DUMMY_HASH`] and is `false`, at the same cost.
    pub async fn check(&self, password: &str, stored: Option<&str>) -> bool {
        if password.len() > MAX_PASSWORD_BYTES {
            return false;
        }
        let Ok(_permit) = self.permits.acquire().await else {
            return false;
        };
        let password = Zeroizing::new(password.as_bytes().to_vec());
        let (hash, real) = match stored {
            Some(hash) => (hash.to_string(), true),
            None => (DUMMY_HASH.to_string(), false),
        };
        let matched = tokio::task::spawn_blocking(move || matches(&password, &hash))
            .await
            .unwrap_or(false);
        matched && real
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_dummy_hash_has_the_parameters_of_new_hashes() {
        let dummy = PasswordHash::new(DUMMY_HASH).unwrap();
        let fresh_text = hash_password("correct horse").unwrap();
        let fresh = PasswordHash::new(&fresh_text).unwrap();
        assert_eq!(dummy.algorithm, fresh.algorithm);
        assert_eq!(dummy.version, fresh.version);
        assert_eq!(dummy.params, fresh.params);
        assert_eq!(
            dummy.hash.map(|h| h.len()),
            fresh.hash.map(|h| h.len()),
            "same output length"
        );
        assert!(fresh_text.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
    }

    #[tokio::test]
    async fn a_password_matches_its_hash_only() {
        let checker = PasswordChecker::default();
        let hash = hash_password("correct horse").unwrap();
        assert!(checker.check("correct horse", Some(&hash)).await);
        assert!(!checker.check("correct horsE", Some(&hash)).await);
        assert!(!checker.check("correct horse", None).await);
        assert!(!checker.check("x", Some("not a PHC string")).await);
        assert_eq!(hash_password("short"), Err(PasswordError::TooShort));
    }
}

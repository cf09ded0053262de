//! Who is calling: the [`Principal`] every surface's handler receives, and the secrets that
//! prove it (admin bearer tokens today; users, OAuth2 tokens, client certificates and JWS-bound
//! keys as the REST surfaces arrive).
//!
//! Secrets are stored only as their SHA-256 ([`token_hash`]) and are never logged.

pub mod admin_tokens;

use base64::Engine;
use rand::RngCore;

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// An operator holding an admin token.
    Operator { token_id: String },
}

/// The stored form of a bearer secret: its SHA-256, hex.
pub fn token_hash(token: &str) -> String {
    hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        token.as_bytes(),
    ))
}

/// A fresh random secret, base64url.
pub fn random_secret(bytes: usize) -> zeroize::Zeroizing<String> {
    let mut raw = zeroize::Zeroizing::new(vec![0u8; bytes]);
    rand::thread_rng().fill_bytes(raw.as_mut_slice());
    zeroize::Zeroizing::new(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw.as_slice()))
}

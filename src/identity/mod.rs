//! Who is calling: the [`Principal`] every surface's handler receives, and the secrets that
//! prove it (admin bearer tokens today; users, OAuth2 tokens, client certificates and JWS-bound
//! keys as the REST surfaces arrive).
//!
//! - [`admin_tokens`]: operator bearer tokens.
//! - [`certificates`]: client certificates (TLS client authentication, or `X-APP-CERTIFICATE`
//!   from a trusted proxy) verified against the configured trust anchors.
//! - [`jws`] and [`nonce`]: the JWS verifier and the anti-replay nonces of RFC 8555 §6.2–§6.5,
//!   which ACME's requests and JWS-signed REST requests share.
//! - [`signed_request`]: a JWS-signed REST request by a key bound to a user.
//!
//! Secrets are stored only as their SHA-256 ([`token_hash`]) and are never logged.

pub mod admin_tokens;
pub mod certificates;
pub mod jws;
pub mod nonce;
pub mod signed_request;

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

//! pkid's access tokens: JWTs (RFC 7519) in JWS compact form (RFC 7515), signed ES256 (RFC 7518
//! §3.4) with one P-256 key per deployment, and the JWK Set that publishes the key (RFC 7517 §5,
//! `/.well-known/jwks.json`).
//!
//! The key is made once, sealed with the key-encryption key and kept in `settings`, the first
//! replica's key winning, so every replica signs and verifies with the same key. Header:
//! `alg` ES256, `typ` JWT, `kid` the RFC 7638 thumbprint of the public key. Claims: `iss` (pkid's
//! base URL), `sub` (a user's id, or a client's id), `kind` (`user` or `client`), `scope` (OAuth2
//! scopes, space-separated; absent: not scope-limited), `roles`, `client_id` (the client a token
//! was issued to, if any), `exp`, `iat`, `jti`.
//!
//! A token is accepted only if its header names this key and ES256, its signature verifies, its
//! issuer is this deployment and it has not expired; whether its user or client still exists and
//! is enabled is `super::Identity`'s check, at every request.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    EcdsaKeyPair, KeyPair, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED,
    ECDSA_P256_SHA256_FIXED_SIGNING,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use pkid_backends::sealed::KeyEncryptionKey;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::store::{Store, StoreError};

/// The `settings` row holding the sealed signing key.
const SETTING: &str = "jwt_signing_key";
/// Binds the sealed key to its purpose: it opens as nothing else.
const SEALED_AAD: &[u8] = b"pkid access token signing key (ES256)";
/// Longest token looked at: pkid's are well under 1 KiB.
const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Seconds a token's `iat` may lie in the future (clocks of replicas).
const CLOCK_SKEW_SECS: i64 = 60;

/// Whom a token speaks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    User,
    Client,
}

/// A token's claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub kind: Kind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
}

impl Claims {
    /// The scopes, split; `None`: not scope-limited.
    pub fn scopes(&self) -> Option<Vec<String>> {
        self.scope
            .as_ref()
            .map(|s| s.split_ascii_whitespace().map(str::to_string).collect())
    }
}

/// Why a bearer token is not one of pkid's valid tokens. Each is answered alike (401); the
/// reason is for the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("not a compact JWS")]
    Malformed,
    #[error("not signed with ES256 by this deployment's key")]
    WrongKey,
    #[error("the signature does not verify")]
    BadSignature,
    #[error("issued by another deployment")]
    WrongIssuer,
    #[error("expired")]
    Expired,
}

/// Why the signing key cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the token signing key could not be stored or read: {0}")]
    Store(#[from] StoreError),
    #[error("the token signing key is unusable: {0}")]
    Unusable(String),
}

/// The deployment's signing key and what verifies with it.
pub struct TokenKeys {
    key: EcdsaKeyPair,
    /// The public key, uncompressed (`04 || x || y`).
    public: Vec<u8>,
    kid: String,
    /// The public key as a JWK, with `kid`, `use` and `alg`.
    jwk: Value,
    issuer: String,
}

impl TokenKeys {
    /// The deployment's key, made and stored on first use (sealed with `kek`); `issuer` is the
    /// `iss` of the tokens made and accepted.
    pub async fn load_or_create(
        store: &Store,
        kek: &KeyEncryptionKey,
        issuer: &str,
    ) -> Result<TokenKeys, KeyError> {
        let unusable = |e: &dyn std::fmt::Display| KeyError::Unusable(e.to_string());
        let fresh =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .map_err(|e| unusable(&e))?;
        let sealed = kek
            .seal_pem(fresh.as_ref(), SEALED_AAD)
            .map_err(|e| unusable(&e))?;
        let stored = store.setting_or_insert(SETTING, &sealed).await?;
        let pkcs8 = kek
            .open_pem(&stored, SEALED_AAD)
            .map_err(|e| unusable(&e))?;
        TokenKeys::from_pkcs8(&pkcs8, issuer)
    }

    fn from_pkcs8(pkcs8: &[u8], issuer: &str) -> Result<TokenKeys, KeyError> {
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8)
            .map_err(|e| KeyError::Unusable(e.to_string()))?;
        let public = key.public_key().as_ref().to_vec();
        if public.len() != 65 || public.first() != Some(&4) {
            return Err(KeyError::Unusable("not an uncompressed P-256 point".into()));
        }
        let mut jwk = Map::new();
        jwk.insert("kty".into(), json!("EC"));
        jwk.insert("crv".into(), json!("P-256"));
        jwk.insert("x".into(), json!(URL_SAFE_NO_PAD.encode(&public[1..33])));
        jwk.insert("y".into(), json!(URL_SAFE_NO_PAD.encode(&public[33..])));
        let kid = crate::pki::jwk::thumbprint(&jwk).map_err(|e| KeyError::Unusable(e.0))?;
        jwk.insert("kid".into(), json!(kid));
        jwk.insert("use".into(), json!("sig"));
        jwk.insert("alg".into(), json!("ES256"));
        Ok(TokenKeys {
            key,
            public,
            kid,
            jwk: Value::Object(jwk),
            issuer: issuer.to_string(),
        })
    }

    /// The `iss` of this deployment's tokens.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The keys of the JWK Set of `/.well-known/jwks.json` (RFC 7517 §5): the one signing key.
    pub fn public_keys(&self) -> Vec<Value> {
        vec![self.jwk.clone()]
    }

    /// A signed token carrying `claims`.
    pub fn sign(&self, claims: &Claims) -> Result<String, KeyError> {
        let header = json!({"alg": "ES256", "typ": "JWT", "kid": self.kid});
        let claims = serde_json::to_vec(claims).map_err(|e| KeyError::Unusable(e.to_string()))?;
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims)
        );
        let signature = self
            .key
            .sign(&SystemRandom::new(), signing_input.as_bytes())
            .map_err(|e| KeyError::Unusable(e.to_string()))?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        ))
    }

    /// The claims of a token this deployment signed, unexpired at `now`.
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::Malformed);
        }
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let decode = |part: &str| {
            URL_SAFE_NO_PAD
                .decode(part)
                .map_err(|_| TokenError::Malformed)
        };
        let header: Map<String, Value> =
            serde_json::from_slice(&decode(header)?).map_err(|_| TokenError::Malformed)?;
        let names_this_key = header.get("alg").and_then(Value::as_str) == Some("ES256")
            && header.get("kid").and_then(Value::as_str) == Some(self.kid.as_str());
        if !names_this_key {
            return Err(TokenError::WrongKey);
        }
        let signing_input_len = token.len() - signature.len() - 1;
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &self.public)
            .verify(&token.as_bytes()[..signing_input_len], &decode(signature)?)
            .map_err(|_| TokenError::BadSignature)?;
        let claims: Claims =
            serde_json::from_slice(&decode(payload)?).map_err(|_| TokenError::Malformed)?;
        if claims.iss != self.issuer {
            return Err(TokenError::WrongIssuer);
        }
        if claims.exp <= now || claims.iat > now + CLOCK_SKEW_SECS {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn keys() -> TokenKeys {
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .unwrap();
        TokenKeys::from_pkcs8(pkcs8.as_ref(), "https://pkid.test").unwrap()
    }

    fn claims(exp: i64) -> Claims {
        Claims {
            iss: "https://pkid.test".into(),
            sub: "user-1".into(),
            kind: Kind::User,
            scope: Some("iam:admin.read".into()),
            roles: vec!["admin".into()],
            client_id: None,
            exp,
            iat: 1000,
            jti: "j".into(),
        }
    }

    #[test]
    fn a_token_verifies_with_its_key_until_it_expires() {
        let keys = keys();
        let token = keys.sign(&claims(2000)).unwrap();
        assert_eq!(keys.verify(&token, 1999).unwrap(), claims(2000));
        assert_eq!(keys.verify(&token, 2000), Err(TokenError::Expired));
        let header: Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(token.split('.').next().unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["typ"], "JWT");
        assert_eq!(header["kid"], keys.public_keys()[0]["kid"]);
    }

    #[test]
    fn tampered_and_foreign_tokens_are_refused() {
        let (keys, other) = (keys(), keys());
        let token = keys.sign(&claims(2000)).unwrap();
        // Another key claiming this key's id.
        let mut forged = other.sign(&claims(2000)).unwrap();
        let own_header = token.split('.').next().unwrap();
        let rest = forged.split_once('.').unwrap().1.to_string();
        forged = format!("{own_header}.{rest}");
        assert_eq!(keys.verify(&forged, 1500), Err(TokenError::BadSignature));
        assert_eq!(
            keys.verify(&other.sign(&claims(2000)).unwrap(), 1500),
            Err(TokenError::WrongKey)
        );
        // A claim changed under the signature.
        let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
        let mut changed = claims(2000);
        changed.sub = "user-2".into();
        parts[1] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&changed).unwrap());
        assert_eq!(
            keys.verify(&parts.join("."), 1500),
            Err(TokenError::BadSignature)
        );
        assert_eq!(keys.verify("a.b", 1500), Err(TokenError::Malformed));
        assert_eq!(keys.verify("a.b.c.d", 1500), Err(TokenError::Malformed));
    }
}

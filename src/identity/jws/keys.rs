//! The keys JWS-signed requests are verified with: JWKs (RFC 7517, RFC 7518 §6, RFC 8037 §2)
//! checked for what they cost and for their one encoding, then parsed once, by aws-lc.
//!
//! - **Bounds before any verification**: a key's type, curve and size are checked on the JWK's
//!   members before a verifier sees it. An RSA key is 2048 to 8192 bits with the exponent 65537
//!   (Boulder's rule, and the CA/Browser Forum's range), so that no request can make pkid do a
//!   private-key-sized operation with a public key.
//! - **One key, one encoding** (so one key has one RFC 7638 thumbprint, and so one account per
//!   directory): EC coordinates exactly the curve's length (RFC 7518 §6.2.1.2), an Ed25519 key
//!   32 bytes, RSA `n` and `e` without leading zero bytes (RFC 7518 §6.3.1: the minimal
//!   octets), base64url without padding or stray bits. A key that is the same as another but
//!   written otherwise is refused, never normalised into it.
//! - **The key fixes the algorithm** (RFC 7518 §3.1): P-256 signs ES256, P-384 ES384, Ed25519
//!   EdDSA, RSA RS256. A JWS whose `alg` is another is `badSignatureAlgorithm`, as Boulder
//!   answers it (RFC 8555 §6.2), with the algorithms pkid accepts.
//!
//! A key registered before these rules (a stored account key) is held to the bounds only, so an
//! account made with a key written otherwise keeps working; a new request's key is held to all
//! of them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use aws_lc_rs::signature::{
    ParsedPublicKey, RsaPublicKeyComponents, ECDSA_P256_SHA256_FIXED, ECDSA_P384_SHA384_FIXED,
    ED25519, RSA_PKCS1_2048_8192_SHA256,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{Map, Value};

use super::JwsError;

/// Smallest RSA modulus accepted for an account key, in bits.
pub const MIN_RSA_BITS: usize = 2048;
/// Largest RSA modulus accepted (as for CSR keys): every request pays for a verification with
/// the account key, and its cost grows with the square of the modulus.
pub const MAX_RSA_BITS: usize = 8192;
/// The one RSA public exponent accepted in a new key (65537, `AQAB`).
const RSA_EXPONENT: &[u8] = &[0x01, 0x00, 0x01];
/// The largest exponent of a stored key, in bytes: 32 bits, what a verifier may be asked to do.
const MAX_STORED_EXPONENT_BYTES: usize = 4;

/// How strictly a JWK's encoding is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyForm {
    /// A key a request brings (newAccount, keyChange, revokeCert, a binding): every rule.
    Canonical,
    /// A key pkid registered before (an account's, a binding's): the bounds only.
    Stored,
}

/// What a JWK is, by its type and curve: which algorithm it signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    P256,
    P384,
    Ed25519,
    Rsa,
}

impl KeyKind {
    fn of(jwk: &Map<String, Value>) -> Result<KeyKind, JwsError> {
        for private in ["d", "p", "q", "dp", "dq", "qi", "oth", "k"] {
            if jwk.contains_key(private) {
                return Err(JwsError::bad_public_key(
                    "JWK contains private key material",
                ));
            }
        }
        let crv = jwk.get("crv").and_then(Value::as_str);
        match jwk.get("kty").and_then(Value::as_str) {
            Some("EC") => match crv {
                Some("P-256") => Ok(KeyKind::P256),
                Some("P-384") => Ok(KeyKind::P384),
                other => Err(JwsError::bad_public_key(format!(
                    "unsupported EC curve {other:?}"
                ))),
            },
            Some("OKP") => match crv {
                Some("Ed25519") => Ok(KeyKind::Ed25519),
                other => Err(JwsError::bad_public_key(format!(
                    "unsupported OKP curve {other:?}"
                ))),
            },
            Some("RSA") => Ok(KeyKind::Rsa),
            other => Err(JwsError::bad_public_key(format!(
                "unsupported JWK key type {other:?}"
            ))),
        }
    }

    /// The one JWS algorithm this kind of key signs with (RFC 7518 §3.1, RFC 8037 §3.1).
    fn algorithm(self) -> &'static str {
        match self {
            KeyKind::P256 => "ES256",
            KeyKind::P384 => "ES384",
            KeyKind::Ed25519 => "EdDSA",
            KeyKind::Rsa => "RS256",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            KeyKind::P256 => "a P-256 key",
            KeyKind::P384 => "a P-384 key",
            KeyKind::Ed25519 => "an Ed25519 key",
            KeyKind::Rsa => "an RSA key",
        }
    }
}

/// A member's bytes (base64url, RFC 7515 §2: no padding; the decoder refuses stray bits too).
fn member(jwk: &Map<String, Value>, name: &str) -> Result<Vec<u8>, JwsError> {
    let value = jwk
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| JwsError::bad_public_key(format!("JWK lacks member {name:?}")))?;
    URL_SAFE_NO_PAD
        .decode(value)
        .map_err(|_| JwsError::bad_public_key(format!("JWK member {name:?} is not base64url")))
}

/// An elliptic-curve coordinate, or an Ed25519 key: exactly `size` bytes; a stored key's may
/// be shorter (its leading zero bytes left out), and is then padded back.
fn fixed(bytes: Vec<u8>, size: usize, name: &str, form: KeyForm) -> Result<Vec<u8>, JwsError> {
    if bytes.len() == size {
        return Ok(bytes);
    }
    if form == KeyForm::Stored && bytes.len() < size {
        let mut padded = vec![0u8; size - bytes.len()];
        padded.extend_from_slice(&bytes);
        return Ok(padded);
    }
    Err(JwsError::bad_public_key(format!(
        "JWK member {name:?} is {} bytes; this curve's are {size}",
        bytes.len()
    )))
}

/// The key's public bytes as aws-lc takes them, once every bound and encoding rule holds.
enum KeyBytes {
    /// An uncompressed SEC 1 point, `04 ‖ x ‖ y`.
    Point(Vec<u8>),
    /// An Ed25519 public key.
    Ed25519(Vec<u8>),
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
}

fn key_bytes(kind: KeyKind, jwk: &Map<String, Value>, form: KeyForm) -> Result<KeyBytes, JwsError> {
    let point = |size: usize| -> Result<KeyBytes, JwsError> {
        let x = fixed(member(jwk, "x")?, size, "x", form)?;
        let y = fixed(member(jwk, "y")?, size, "y", form)?;
        let mut point = Vec::with_capacity(1 + 2 * size);
        point.push(0x04);
        point.extend_from_slice(&x);
        point.extend_from_slice(&y);
        Ok(KeyBytes::Point(point))
    };
    match kind {
        KeyKind::P256 => point(32),
        KeyKind::P384 => point(48),
        KeyKind::Ed25519 => Ok(KeyBytes::Ed25519(fixed(member(jwk, "x")?, 32, "x", form)?)),
        KeyKind::Rsa => {
            let n = member(jwk, "n")?;
            let e = member(jwk, "e")?;
            rsa_bounds(&n, &e, form)?;
            // aws-lc takes the minimal octets only (a stored key's may have leading zeros).
            let minimal = |b: Vec<u8>| b[b.iter().take_while(|x| **x == 0).count()..].to_vec();
            Ok(KeyBytes::Rsa {
                n: minimal(n),
                e: minimal(e),
            })
        }
    }
}

/// An RSA key's size and exponent, from its members' bytes alone: nothing has computed with
/// them yet.
fn rsa_bounds(n: &[u8], e: &[u8], form: KeyForm) -> Result<(), JwsError> {
    if form == KeyForm::Canonical && (n.first() == Some(&0) || e.first() == Some(&0)) {
        return Err(JwsError::bad_public_key(
            "RSA n and e must not have leading zero bytes (RFC 7518 §6.3.1)",
        ));
    }
    let significant = n.iter().skip_while(|b| **b == 0).count();
    let bits = match n.iter().find(|b| **b != 0) {
        Some(top) => significant * 8 - top.leading_zeros() as usize,
        None => 0,
    };
    if bits < MIN_RSA_BITS {
        return Err(JwsError::bad_public_key(format!(
            "RSA key of {bits} bits is too small; at least {MIN_RSA_BITS} bits are required"
        )));
    }
    if bits > MAX_RSA_BITS {
        return Err(JwsError::bad_public_key(format!(
            "RSA key of {bits} bits is too large; at most {MAX_RSA_BITS} bits are accepted"
        )));
    }
    if n.last().is_some_and(|b| b % 2 == 0) {
        return Err(JwsError::bad_public_key("RSA modulus is even"));
    }
    let exponent_ok = match form {
        KeyForm::Canonical => e == RSA_EXPONENT,
        KeyForm::Stored => {
            let e = &e[e.iter().take_while(|b| **b == 0).count()..];
            e.len() <= MAX_STORED_EXPONENT_BYTES && e.last().is_some_and(|b| b % 2 == 1) && e != [1]
        }
    };
    if !exponent_ok {
        return Err(JwsError::bad_public_key(
            "RSA public exponent must be 65537",
        ));
    }
    Ok(())
}

/// Refuse, before any verifier sees it, a key pkid does not take: private material, an unknown
/// type or curve, an RSA key outside the bounds, a key not written in its one encoding.
pub fn check_public_key(jwk: &Map<String, Value>) -> Result<(), JwsError> {
    let kind = KeyKind::of(jwk)?;
    key_bytes(kind, jwk, KeyForm::Canonical).map(|_| ())
}

/// The key `jwk` parsed for `alg` signatures, held to the rules of `form`: what every JWS
/// signature is verified with. aws-lc is the crypto library rustls already runs on; its P-256
/// verification costs about half of OpenSSL 3's under load (measured), and an account signs
/// every request.
pub fn parse_key(
    alg: &str,
    jwk: &Map<String, Value>,
    form: KeyForm,
) -> Result<ParsedPublicKey, JwsError> {
    let kind = KeyKind::of(jwk)?;
    let fits = kind.algorithm();
    if alg != fits {
        return Err(JwsError::bad_signature_algorithm(format!(
            "JWS algorithm {alg} does not fit {}, which signs with {fits}",
            kind.describe()
        )));
    }
    // RFC 7517 §4.4: a key that names its algorithm is used with that one only.
    if let Some(named) = jwk.get("alg") {
        if named.as_str() != Some(alg) {
            return Err(JwsError::bad_signature_algorithm(format!(
                "the JWK's own alg {named} is not the JWS algorithm {alg}"
            )));
        }
    }
    let unusable = |e: aws_lc_rs::error::KeyRejected| {
        JwsError::bad_public_key(format!("JWK is not a usable {alg} key: {e}"))
    };
    match key_bytes(kind, jwk, form)? {
        KeyBytes::Point(point) => {
            let algorithm = if kind == KeyKind::P256 {
                &ECDSA_P256_SHA256_FIXED
            } else {
                &ECDSA_P384_SHA384_FIXED
            };
            ParsedPublicKey::new(algorithm, point).map_err(unusable)
        }
        KeyBytes::Ed25519(x) => ParsedPublicKey::new(&ED25519, x).map_err(unusable),
        KeyBytes::Rsa { n, e } => RsaPublicKeyComponents { n, e }
            .to_parsed_public_key(&RSA_PKCS1_2048_8192_SHA256)
            .map_err(unusable),
    }
}

/// A key a request brings, parsed for `alg` signatures ([`KeyForm::Canonical`]).
pub fn account_key(alg: &str, jwk: &Map<String, Value>) -> Result<ParsedPublicKey, JwsError> {
    parse_key(alg, jwk, KeyForm::Canonical)
}

/// How many account keys [`AccountKeys`] keeps.
const ACCOUNT_KEYS_CAPACITY: usize = 8192;

/// Registered keys (accounts', bindings'), parsed once, by algorithm and the key's stored JSON.
/// A rolled-over key is stored as other JSON, so it never meets the old key's entry.
#[derive(Default)]
pub struct AccountKeys {
    keys: Mutex<HashMap<(String, String), Arc<ParsedPublicKey>>>,
}

impl AccountKeys {
    /// The key of `alg` signatures stored as `jwk_json`, parsed on first use
    /// ([`KeyForm::Stored`]).
    pub fn get(&self, alg: &str, jwk_json: &str) -> Result<Arc<ParsedPublicKey>, JwsError> {
        let entry = (alg.to_owned(), jwk_json.to_owned());
        if let Some(found) = self.lock().get(&entry) {
            return Ok(found.clone());
        }
        let jwk: Map<String, Value> = serde_json::from_str(jwk_json)
            .map_err(|_| JwsError::internal("stored account key is unreadable"))?;
        let parsed = Arc::new(parse_key(alg, &jwk, KeyForm::Stored)?);
        let mut keys = self.lock();
        if keys.len() >= ACCOUNT_KEYS_CAPACITY {
            // Any one goes: an evicted key is only parsed again.
            if let Some(evicted) = keys.keys().next().cloned() {
                keys.remove(&evicted);
            }
        }
        keys.insert(entry, parsed.clone());
        Ok(parsed)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<(String, String), Arc<ParsedPublicKey>>> {
        // Every change is one call that cannot panic halfway.
        self.keys.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

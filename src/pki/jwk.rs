//! JSON Web Keys as pkid compares them: RFC 7638 thumbprints of a JWK and of a certificate's
//! SubjectPublicKeyInfo, and the public members kept when a key is stored.

use std::collections::BTreeMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

/// Why a JWK has no thumbprint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct JwkError(pub String);

/// RFC 7638 thumbprint: SHA-256 over the canonical JSON of the required members, base64url.
pub fn thumbprint(jwk: &Map<String, Value>) -> Result<String, JwkError> {
    let required: &[&str] = match jwk.get("kty").and_then(Value::as_str) {
        Some("EC") => &["crv", "kty", "x", "y"],
        Some("RSA") => &["e", "kty", "n"],
        Some("OKP") => &["crv", "kty", "x"],
        other => return Err(JwkError(format!("unsupported JWK key type {other:?}"))),
    };
    let mut canonical = BTreeMap::new();
    for member in required {
        let v = jwk
            .get(*member)
            .and_then(Value::as_str)
            .ok_or_else(|| JwkError(format!("JWK lacks member {member:?}")))?;
        canonical.insert(*member, v);
    }
    let json = serde_json::to_string(&canonical)
        .map_err(|_| JwkError("JWK cannot be serialized".into()))?;
    Ok(URL_SAFE_NO_PAD.encode(Sha256::digest(json.as_bytes())))
}

/// The public members only, in a stable form for storage.
pub fn public_jwk(jwk: &Map<String, Value>) -> Map<String, Value> {
    let keep = ["kty", "crv", "x", "y", "n", "e"];
    jwk.iter()
        .filter(|(k, _)| keep.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// RFC 7638 thumbprint of a certificate's SubjectPublicKeyInfo, to compare with a JWK.
pub fn spki_thumbprint(spki_der: &[u8]) -> Option<String> {
    use x509_parser::prelude::FromDer;
    use x509_parser::public_key::PublicKey;
    let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(spki_der).ok()?;
    let strip = |b: &[u8]| -> Vec<u8> { b.iter().skip_while(|x| **x == 0).copied().collect() };
    let mut jwk = serde_json::Map::new();
    match spki.parsed().ok()? {
        PublicKey::EC(point) => {
            let data = point.data();
            let (crv, len) = match data.len() {
                65 => ("P-256", 32),
                97 => ("P-384", 48),
                _ => return None,
            };
            if data.first() != Some(&4) {
                return None;
            }
            jwk.insert("kty".into(), json!("EC"));
            jwk.insert("crv".into(), json!(crv));
            jwk.insert("x".into(), json!(URL_SAFE_NO_PAD.encode(&data[1..1 + len])));
            jwk.insert("y".into(), json!(URL_SAFE_NO_PAD.encode(&data[1 + len..])));
        }
        PublicKey::RSA(rsa) => {
            jwk.insert("kty".into(), json!("RSA"));
            jwk.insert(
                "n".into(),
                json!(URL_SAFE_NO_PAD.encode(strip(rsa.modulus))),
            );
            jwk.insert(
                "e".into(),
                json!(URL_SAFE_NO_PAD.encode(strip(rsa.exponent))),
            );
        }
        PublicKey::Unknown(raw)
            if spki.algorithm.algorithm == x509_parser::oid_registry::OID_SIG_ED25519 =>
        {
            jwk.insert("kty".into(), json!("OKP"));
            jwk.insert("crv".into(), json!("Ed25519"));
            jwk.insert("x".into(), json!(URL_SAFE_NO_PAD.encode(raw)));
        }
        _ => return None,
    }
    thumbprint(&jwk).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// RFC 7638 §3.1 example key and thumbprint.
    #[test]
    fn rfc7638_test_vector() {
        let jwk = json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        });
        let map = jwk.as_object().unwrap();
        assert_eq!(
            thumbprint(map).unwrap(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }
}

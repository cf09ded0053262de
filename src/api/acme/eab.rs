//! External Account Binding, RFC 8555 §7.3.4: a JWS over the account key, MACed (HS256/384/512)
//! with a key the CA handed out of band. This is its shape; the RA checks the MAC against the
//! key it names (`ra::binding`).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{Map, Value};

use super::problem::Problem;
use crate::identity::jws;
use crate::ra::BindingProof;

fn field<'a>(obj: &'a Map<String, Value>, name: &str) -> Result<&'a str, Problem> {
    obj.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| Problem::malformed(format!("externalAccountBinding lacks {name}")))
}

fn decode(name: &str, s: &str) -> Result<Vec<u8>, Problem> {
    URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| Problem::malformed(format!("externalAccountBinding {name} is not base64url")))
}

/// Check the binding's shape: HS256/384/512, a kid, the newAccount URL, no nonce, and the
/// account's own public key as payload.
pub fn parse(
    eab: &Value,
    new_account_url: &str,
    account_jwk: &Map<String, Value>,
) -> Result<BindingProof, Problem> {
    let obj = eab
        .as_object()
        .ok_or_else(|| Problem::malformed("externalAccountBinding must be a flattened JWS"))?;
    let protected_b64 = field(obj, "protected")?;
    let payload_b64 = field(obj, "payload")?;
    let mac = decode("signature", field(obj, "signature")?)?;
    let protected: Map<String, Value> =
        serde_json::from_slice(&decode("protected", protected_b64)?).map_err(|_| {
            Problem::malformed("externalAccountBinding protected header is not JSON")
        })?;
    let alg = field(&protected, "alg")?.to_string();
    if !matches!(alg.as_str(), "HS256" | "HS384" | "HS512") {
        return Err(Problem::bad_signature_algorithm(format!(
            "externalAccountBinding algorithm {alg:?} is not HS256, HS384 or HS512"
        ))
        .with_algorithms(&["HS256", "HS384", "HS512"]));
    }
    if protected.contains_key("nonce") {
        return Err(Problem::malformed(
            "externalAccountBinding must not carry a nonce",
        ));
    }
    if field(&protected, "url")? != new_account_url {
        return Err(Problem::malformed(
            "externalAccountBinding url is not the newAccount URL",
        ));
    }
    let kid = field(&protected, "kid")?.to_string();
    let payload: Map<String, Value> = serde_json::from_slice(&decode("payload", payload_b64)?)
        .map_err(|_| Problem::malformed("externalAccountBinding payload is not a JWK"))?;
    if jws::thumbprint(&payload)? != jws::thumbprint(account_jwk)? {
        return Err(Problem::unauthorized(
            "externalAccountBinding binds another key than the account's",
        ));
    }
    Ok(BindingProof {
        kid,
        alg,
        signing_input: format!("{protected_b64}.{payload_b64}").into_bytes(),
        mac,
    })
}

//! External Account Binding, RFC 8555 §7.3.4: a JWS over the account key, MACed (HS256/384/512)
//! with a key the CA handed out of band. Keys are single-use and bound to one directory; their
//! HMAC keys are sealed at rest with the key-encryption key.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::problem::Problem;

/// When newAccount must carry an external account binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum EabPolicy {
    /// Accepted when given, never required.
    #[default]
    NotRequired,
    /// Required to create an account; existing accounts are found without one.
    NewAccountRequired,
    /// Required on every newAccount request, lookups of existing accounts included.
    AlwaysRequired,
}

/// RA policy an EAB key carries to the account it creates: which identifiers and profiles
/// that account may order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BindingPolicy {
    pub identifiers: super::policy::IdentifierPolicy,
    /// Profiles the account may order; empty: all the directory offers.
    pub profiles: Vec<String>,
}

impl BindingPolicy {
    pub fn check(&self, idents: &[crate::pki::csr::Ident], profile: &str) -> Result<(), Problem> {
        for ident in idents {
            self.identifiers.check(ident).map_err(|_| {
                Problem::rejected_identifier(format!(
                    "this account's external account binding does not allow {}",
                    ident.value()
                ))
            })?;
        }
        if !self.profiles.is_empty() && !self.profiles.iter().any(|p| p == profile) {
            return Err(Problem::invalid_profile(format!(
                "this account's external account binding does not allow profile {profile:?}"
            )));
        }
        Ok(())
    }
}

/// AAD binding sealed EAB keys to their purpose.
pub const SEALED_AAD: &[u8] = b"pkid eab hmac key";

/// A parsed, not yet verified, EAB JWS.
pub struct Binding {
    pub kid: String,
    alg: String,
    signing_input: Vec<u8>,
    mac: Vec<u8>,
}

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
) -> Result<Binding, Problem> {
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
    if super::jws::thumbprint(&payload)? != super::jws::thumbprint(account_jwk)? {
        return Err(Problem::unauthorized(
            "externalAccountBinding binds another key than the account's",
        ));
    }
    Ok(Binding {
        kid,
        alg,
        signing_input: format!("{protected_b64}.{payload_b64}").into_bytes(),
        mac,
    })
}

impl Binding {
    /// Verify the MAC with the (unsealed) HMAC key.
    pub fn verify(&self, hmac_key: &[u8]) -> Result<(), Problem> {
        use aws_lc_rs::hmac;
        let alg = match self.alg.as_str() {
            "HS256" => hmac::HMAC_SHA256,
            "HS384" => hmac::HMAC_SHA384,
            _ => hmac::HMAC_SHA512,
        };
        hmac::verify(
            &hmac::Key::new(alg, hmac_key),
            &self.signing_input,
            &self.mac,
        )
        .map_err(|_| Problem::unauthorized("externalAccountBinding MAC does not verify"))
    }
}

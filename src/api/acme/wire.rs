//! ACME wire types (RFC 8555 §7.1) and the checks on what clients send.

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde::Deserialize;
use serde_json::{json, Value};

use super::links::Links;
use super::problem::Problem;
use crate::pki::csr::{is_dns_name, Ident};
use crate::pki::ip::canonical;
use crate::pki::rfc3339;
use crate::store::{AccountRow, AuthzRow, AuthzStatus, ChallengeRow, ChallengeStatus};

const MAX_IDENTIFIERS: usize = 100;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewAccountRequest {
    #[serde(default)]
    pub contact: Option<Vec<String>>,
    #[serde(default)]
    pub terms_of_service_agreed: bool,
    #[serde(default)]
    pub only_return_existing: bool,
    #[serde(default)]
    pub external_account_binding: Option<Value>,
}

#[derive(Debug, Deserialize)]
pub struct AccountUpdateRequest {
    #[serde(default)]
    pub contact: Option<Vec<String>>,
    #[serde(default)]
    pub status: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct WireIdentifier {
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewOrderRequest {
    pub identifiers: Vec<WireIdentifier>,
    /// The Let's Encrypt `profiles` extension.
    #[serde(default)]
    pub profile: Option<String>,
    /// RFC 9773 §5: the ARI certID of the certificate this order replaces.
    #[serde(default)]
    pub replaces: Option<String>,
    #[serde(default)]
    pub not_before: Option<String>,
    #[serde(default)]
    pub not_after: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct NewAuthzRequest {
    pub identifier: WireIdentifier,
}

#[derive(Debug, Deserialize)]
pub struct FinalizeRequest {
    pub csr: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyChangeRequest {
    pub account: String,
    pub old_key: serde_json::Map<String, Value>,
}

#[derive(Debug, Deserialize)]
pub struct RevocationRequest {
    pub certificate: String,
    #[serde(default)]
    pub reason: Option<i64>,
}

#[derive(Debug, Deserialize)]
pub struct AuthzUpdateRequest {
    #[serde(default)]
    pub status: Option<String>,
}

/// Validate and canonicalize an order's identifiers (deduplicated, DNS lower-cased).
pub fn check_identifiers(ids: &[WireIdentifier]) -> Result<Vec<Ident>, Problem> {
    if ids.is_empty() {
        return Err(Problem::malformed("an order needs at least one identifier"));
    }
    if ids.len() > MAX_IDENTIFIERS {
        return Err(Problem::rejected_identifier(format!(
            "an order may name at most {MAX_IDENTIFIERS} identifiers"
        )));
    }
    let mut out = BTreeSet::new();
    for id in ids {
        match id.kind.as_str() {
            "dns" => {
                let name = id.value.to_ascii_lowercase();
                // RFC 8555 §7.1.3: a wildcard is "*." and a name, nothing more.
                let base = name.strip_prefix("*.").unwrap_or(&name);
                if base.contains('*') || !is_dns_name(base) {
                    return Err(Problem::rejected_identifier(format!(
                        "{:?} is not a valid DNS name",
                        id.value
                    )));
                }
                out.insert(Ident::Dns(name));
            }
            "ip" => {
                let ip: IpAddr = id.value.parse().map_err(|_| {
                    Problem::malformed(format!("{:?} is not an IP address", id.value))
                })?;
                // One spelling per address: `::ffff:10.0.0.1` is the order of `10.0.0.1`.
                out.insert(Ident::Ip(canonical(ip)));
            }
            other => {
                return Err(Problem::unsupported_identifier(format!(
                    "identifier type {other:?} is not supported"
                )));
            }
        }
    }
    Ok(out.into_iter().collect())
}

pub fn account_json(a: &AccountRow, links: &Links) -> Value {
    json!({
        "status": a.status.as_str(),
        "contact": serde_json::from_str::<Value>(&a.contact).unwrap_or(json!([])),
        "orders": links.account_orders(&a.id),
    })
}

pub fn challenge_json(c: &ChallengeRow, links: &Links) -> Value {
    let mut v = json!({
        "type": c.kind,
        "url": links.challenge(&c.id),
        "status": c.status.as_str(),
        "token": c.token,
    });
    if let Some(t) = c.validated {
        v["validated"] = json!(rfc3339(t));
    }
    if let Some(e) = &c.error {
        v["error"] = serde_json::from_str(e).unwrap_or(Value::Null);
    }
    v
}

pub fn authz_json(a: &AuthzRow, challenges: &[ChallengeRow], links: &Links, at: i64) -> Value {
    let status = a.status_at(at);
    // A valid authorization lists only the challenge that validated it (§7.1.4).
    let shown: Vec<Value> = challenges
        .iter()
        .filter(|c| status != AuthzStatus::Valid || c.status == ChallengeStatus::Valid)
        .map(|c| challenge_json(c, links))
        .collect();
    let mut v = json!({
        "identifier": {"type": a.id_type, "value": a.id_value},
        "status": status.as_str(),
        "expires": rfc3339(a.expires),
        "challenges": shown,
    });
    if a.wildcard {
        v["wildcard"] = json!(true);
    }
    v
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn identifiers_are_canonical_and_deduplicated() {
        let ids = vec![
            WireIdentifier {
                kind: "dns".into(),
                value: "A.Test".into(),
            },
            WireIdentifier {
                kind: "dns".into(),
                value: "a.test".into(),
            },
        ];
        assert_eq!(
            check_identifiers(&ids).unwrap(),
            vec![Ident::Dns("a.test".into())]
        );
        let bad = vec![WireIdentifier {
            kind: "email".into(),
            value: "x@y.z".into(),
        }];
        assert_eq!(
            check_identifiers(&bad).unwrap_err().short_type(),
            "unsupportedIdentifier"
        );
        assert_eq!(
            check_identifiers(&[]).unwrap_err().short_type(),
            "malformed"
        );
    }
}

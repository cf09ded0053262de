//! ACME wire types (RFC 8555 §7.1) and the checks on what clients send.

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde::Deserialize;
use serde_json::{json, Value};

use super::links::Links;
use super::problem::Problem;
use crate::pki::csr::Ident;
use crate::store::{AccountRow, AuthzRow, ChallengeRow};

const MAX_IDENTIFIERS: usize = 100;
const MAX_CONTACTS: usize = 10;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewAccount {
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
pub struct AccountUpdate {
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
pub struct NewOrder {
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
pub struct NewAuthz {
    pub identifier: WireIdentifier,
}

#[derive(Debug, Deserialize)]
pub struct Finalize {
    pub csr: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyChange {
    pub account: String,
    pub old_key: serde_json::Map<String, Value>,
}

#[derive(Debug, Deserialize)]
pub struct Revocation {
    pub certificate: String,
    #[serde(default)]
    pub reason: Option<i64>,
}

#[derive(Debug, Deserialize)]
pub struct AuthzUpdate {
    #[serde(default)]
    pub status: Option<String>,
}

pub fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// `mailto:` contacts with one plain address each (RFC 8555 §7.3).
pub fn check_contacts(contacts: &[String]) -> Result<Vec<String>, Problem> {
    if contacts.len() > MAX_CONTACTS {
        return Err(Problem::invalid_contact(format!(
            "at most {MAX_CONTACTS} contacts are accepted"
        )));
    }
    for c in contacts {
        let Some(addr) = c.strip_prefix("mailto:") else {
            return Err(Problem::unsupported_contact(format!(
                "contact {c:?} is not a mailto: URL"
            )));
        };
        let valid = !addr.contains(['?', ',', ' ', '<', '>'])
            && addr
                .split_once('@')
                .is_some_and(|(local, domain)| !local.is_empty() && is_dns_name(domain));
        if !valid {
            return Err(Problem::invalid_contact(format!(
                "contact {c:?} is not a single e-mail address"
            )));
        }
    }
    Ok(contacts.to_vec())
}

/// A fully qualified name of LDH labels, at least two labels, at most 253 characters.
pub fn is_dns_name(name: &str) -> bool {
    if name.is_empty() || name.len() > 253 || name.ends_with('.') {
        return false;
    }
    let labels: Vec<&str> = name.split('.').collect();
    labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        && labels
            .last()
            .is_some_and(|tld| !tld.bytes().all(|b| b.is_ascii_digit()))
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
                out.insert(Ident::Ip(ip));
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

pub fn identifiers_json(ids: &[Ident]) -> Value {
    Value::Array(
        ids.iter()
            .map(|i| json!({"type": i.kind(), "value": i.value()}))
            .collect(),
    )
}

/// The identifier an authorization stands for in the order and the CSR (`*.name` for a
/// wildcard authorization, whose own identifier is the base name, RFC 8555 §7.1.4).
pub fn authz_ident(a: &AuthzRow) -> Option<Ident> {
    match a.id_type.as_str() {
        "dns" if a.wildcard => Some(Ident::Dns(format!("*.{}", a.id_value))),
        "dns" => Some(Ident::Dns(a.id_value.clone())),
        "ip" => a.id_value.parse().ok().map(Ident::Ip),
        _ => None,
    }
}

/// Status with expiry applied (§7.1.6: pending and valid authorizations expire).
pub fn authz_status(a: &AuthzRow, at: i64) -> &'static str {
    match a.status.as_str() {
        "pending" | "valid" if a.expires <= at => "expired",
        "pending" => "pending",
        "valid" => "valid",
        "invalid" => "invalid",
        "deactivated" => "deactivated",
        "revoked" => "revoked",
        _ => "invalid",
    }
}

pub fn account_json(a: &AccountRow, links: &Links) -> Value {
    json!({
        "status": a.status,
        "contact": serde_json::from_str::<Value>(&a.contact).unwrap_or(json!([])),
        "orders": links.account_orders(&a.id),
    })
}

pub fn challenge_json(c: &ChallengeRow, links: &Links) -> Value {
    let mut v = json!({
        "type": c.kind,
        "url": links.challenge(&c.id),
        "status": c.status,
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
    let status = authz_status(a, at);
    // A valid authorization lists only the challenge that validated it (§7.1.4).
    let shown: Vec<Value> = challenges
        .iter()
        .filter(|c| status != "valid" || c.status == "valid")
        .map(|c| challenge_json(c, links))
        .collect();
    let mut v = json!({
        "identifier": {"type": a.id_type, "value": a.id_value},
        "status": status,
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
    fn dns_names() {
        assert!(is_dns_name("a.pkid.test"));
        assert!(is_dns_name("xn--bcher-kva.example"));
        assert!(!is_dns_name("localhost"));
        assert!(!is_dns_name("-a.test"));
        assert!(!is_dns_name("a..test"));
        assert!(!is_dns_name("a_b.test"));
        assert!(!is_dns_name("1.2.3.4"));
        assert!(!is_dns_name(&format!("{}.test", "a".repeat(64))));
    }

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

    #[test]
    fn contacts() {
        assert!(check_contacts(&["mailto:a@b.test".into()]).is_ok());
        assert_eq!(
            check_contacts(&["tel:+1".into()]).unwrap_err().short_type(),
            "unsupportedContact"
        );
        assert_eq!(
            check_contacts(&["mailto:a@b.test?subject=x".into()])
                .unwrap_err()
                .short_type(),
            "invalidContact"
        );
        assert_eq!(
            check_contacts(&["mailto:a@b.test,c@d.test".into()])
                .unwrap_err()
                .short_type(),
            "invalidContact"
        );
    }

    fn authz(status: &str, expires: i64) -> AuthzRow {
        AuthzRow {
            id: "a".into(),
            account_id: "x".into(),
            id_type: "dns".into(),
            id_value: "a.test".into(),
            wildcard: false,
            status: status.into(),
            expires,
            validation: None,
        }
    }

    #[test]
    fn authorizations_expire() {
        assert_eq!(authz_status(&authz("valid", 10), 5), "valid");
        assert_eq!(authz_status(&authz("valid", 10), 10), "expired");
        assert_eq!(authz_status(&authz("pending", 10), 11), "expired");
        assert_eq!(authz_status(&authz("invalid", 10), 11), "invalid");
    }
}

//! Distinguished names as text, RFC 2253 (the form IAM and grid tools show): the last RDN first,
//! attribute types by their short names (`CN`, `O`, `C` …, or a dotted OID), `,` between RDNs and
//! `+` inside a multi-valued one, no spaces, special characters escaped (§2.4). pkid stores and
//! compares DNs in this form, so that a DN read from a certificate and one typed by a user (with
//! spaces, lower-case types, or a different escape) meet on one spelling ([`normalize`]).

use x509_parser::x509::X509Name;

/// A text that is not a distinguished name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a distinguished name: {0}")]
pub struct BadDn(pub String);

/// Short names of the attribute types RFC 2253 §2.3 and RFC 4514 §3 list, by dotted OID.
const SHORT_NAMES: &[(&str, &str)] = &[
    ("2.5.4.3", "CN"),
    ("2.5.4.7", "L"),
    ("2.5.4.8", "ST"),
    ("2.5.4.10", "O"),
    ("2.5.4.11", "OU"),
    ("2.5.4.6", "C"),
    ("2.5.4.9", "STREET"),
    ("0.9.2342.19200300.100.1.25", "DC"),
    ("0.9.2342.19200300.100.1.1", "UID"),
    ("1.2.840.113549.1.9.1", "emailAddress"),
    ("2.5.4.5", "serialNumber"),
];

fn short_name(oid: &str) -> Option<&'static str> {
    SHORT_NAMES
        .iter()
        .find(|(dotted, _)| *dotted == oid)
        .map(|(_, short)| *short)
}

fn canonical_type(name: &str) -> Option<&'static str> {
    SHORT_NAMES
        .iter()
        .find(|(dotted, short)| short.eq_ignore_ascii_case(name) || *dotted == name)
        .map(|(_, short)| *short)
}

/// RFC 2253 §2.4: `,` `+` `"` `\` `<` `>` `;` escaped anywhere, `#` and a space at the start and a
/// space at the end escaped.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The RFC 2253 form of a certificate's name. A value that is not a string is written as `#` and
/// the hex of its DER, as §2.4 says.
pub fn rfc2253(name: &X509Name<'_>) -> String {
    let mut rdns: Vec<String> = Vec::new();
    for rdn in name.iter() {
        let parts: Vec<String> = rdn
            .iter()
            .map(|attr| {
                let oid = attr.attr_type().to_id_string();
                let kind = short_name(&oid).map_or(oid, str::to_string);
                match attr.as_str() {
                    Ok(text) => format!("{kind}={}", escape(text)),
                    Err(_) => format!("{kind}=#{}", hex::encode(attr.attr_value().data)),
                }
            })
            .collect();
        rdns.push(parts.join("+"));
    }
    rdns.reverse();
    rdns.join(",")
}

/// A DN as a user wrote it, in the stored form: types by their short names, no spaces around
/// separators, the same escapes as [`rfc2253`]. Multi-valued RDNs keep their order.
pub fn normalize(text: &str) -> Result<String, BadDn> {
    let bad = || BadDn(text.to_string());
    let mut rdns = Vec::new();
    for rdn in split_unescaped(text, ',') {
        let mut parts = Vec::new();
        for attribute in split_unescaped(&rdn, '+') {
            let (kind, value) = attribute.split_once('=').ok_or_else(bad)?;
            let kind = kind.trim();
            let kind = match canonical_type(kind) {
                Some(short) => short.to_string(),
                None if is_dotted_oid(kind) => kind.to_string(),
                None => return Err(bad()),
            };
            let value = unescape(value.trim()).ok_or_else(bad)?;
            if value.is_empty() {
                return Err(bad());
            }
            parts.push(format!("{kind}={}", escape(&value)));
        }
        if parts.is_empty() {
            return Err(bad());
        }
        rdns.push(parts.join("+"));
    }
    if rdns.is_empty() {
        return Err(bad());
    }
    Ok(rdns.join(","))
}

fn is_dotted_oid(text: &str) -> bool {
    !text.is_empty()
        && text
            .split('.')
            .all(|arc| !arc.is_empty() && arc.bytes().all(|b| b.is_ascii_digit()))
}

/// `text` cut at every `separator` not escaped by a backslash (the escapes are kept).
fn split_unescaped(text: &str, separator: char) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut escaped = false;
    for c in text.chars() {
        if escaped {
            current.push(c);
            escaped = false;
        } else if c == '\\' {
            current.push(c);
            escaped = true;
        } else if c == separator {
            parts.push(std::mem::take(&mut current));
        } else {
            current.push(c);
        }
    }
    parts.push(current);
    parts
}

/// A value with its backslash escapes undone (`\,` → `,`); `None` for a dangling backslash.
fn unescape(value: &str) -> Option<String> {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            out.push(chars.next()?);
        } else {
            out.push(c);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn name_of(subject: &[(rcgen::DnType, &str)]) -> Vec<u8> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        for (kind, value) in subject {
            params.distinguished_name.push(kind.clone(), *value);
        }
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn a_certificate_name_is_written_last_rdn_first_without_spaces() {
        let der = name_of(&[
            (rcgen::DnType::CountryName, "IT"),
            (rcgen::DnType::OrganizationName, "IGI"),
            (rcgen::DnType::CommonName, "test0"),
        ]);
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert_eq!(rfc2253(cert.subject()), "CN=test0,O=IGI,C=IT");
    }

    #[test]
    fn special_characters_are_escaped() {
        let der = name_of(&[
            (rcgen::DnType::OrganizationName, "Acme, Inc."),
            (rcgen::DnType::CommonName, " lead+trail "),
        ]);
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert_eq!(rfc2253(cert.subject()), r"CN=\ lead\+trail\ ,O=Acme\, Inc.");
    }

    #[test]
    fn typed_dns_meet_the_certificate_form() {
        assert_eq!(
            normalize("cn=test0, o=IGI, c=IT").unwrap(),
            "CN=test0,O=IGI,C=IT"
        );
        assert_eq!(
            normalize(r"CN = a\,b ,O=x").unwrap(),
            normalize(r"CN=a\,b,O=x").unwrap()
        );
        assert_eq!(normalize("2.5.4.3=x").unwrap(), "CN=x");
        assert_eq!(normalize("1.2.3.4=x").unwrap(), "1.2.3.4=x");
        for bad in ["", "CN", "CN=", "XX=y", "CN=a,,O=b", r"CN=a\"] {
            assert!(normalize(bad).is_err(), "{bad:?}");
        }
    }
}

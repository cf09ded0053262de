//! Certificate signing requests: parse and verify with x509-parser, refuse weak keys, and read
//! the identifiers the CSR asks for (RFC 8555 §7.4: they must equal the order's).
//!
//! Only identifiers and the public key are taken from a CSR; every extension of the issued
//! certificate comes from the order and the profile.

use std::collections::BTreeSet;
use std::net::IpAddr;

use pkid_backends::{StringKind, SubjectAttribute};
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION,
    OID_SIG_ED25519,
};
use x509_parser::prelude::{FromDer, X509CertificationRequest};
use x509_parser::public_key::PublicKey;

/// Identifiers in a canonical, comparable form: DNS names lower-case, IPs as parsed addresses.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Ident {
    Dns(String),
    Ip(IpAddr),
}

impl Ident {
    pub fn kind(&self) -> &'static str {
        match self {
            Ident::Dns(_) => "dns",
            Ident::Ip(_) => "ip",
        }
    }

    pub fn value(&self) -> String {
        match self {
            Ident::Dns(d) => d.clone(),
            Ident::Ip(ip) => ip.to_string(),
        }
    }
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CsrError {
    /// Not a CSR, or its signature does not verify (`badCSR`).
    Bad(String),
    /// The key is of a kind or size pkid does not certify (`badPublicKey`).
    WeakKey(String),
}

#[derive(Debug, Clone)]
pub struct CheckedCsr {
    pub der: Vec<u8>,
    /// SubjectPublicKeyInfo DER.
    pub public_key: Vec<u8>,
    pub common_name: Option<String>,
    pub identifiers: BTreeSet<Ident>,
}

/// Parse, verify the self-signature, check the key, collect identifiers (CN and SANs).
pub fn check_csr(der: &[u8]) -> Result<CheckedCsr, CsrError> {
    let (rest, csr) = X509CertificationRequest::from_der(der)
        .map_err(|e| CsrError::Bad(format!("CSR is not valid DER: {e}")))?;
    if !rest.is_empty() {
        return Err(CsrError::Bad("CSR has trailing data".into()));
    }
    let info = &csr.certification_request_info;
    let spki = &info.subject_pki;
    check_key(spki)?;
    csr.verify_signature()
        .map_err(|_| CsrError::Bad("CSR signature does not verify".into()))?;

    let mut identifiers = BTreeSet::new();
    let mut common_name = None;
    for cn in info.subject.iter_common_name() {
        let cn = cn
            .as_str()
            .map_err(|_| CsrError::Bad("CSR common name is not a string".into()))?;
        if common_name.is_some() {
            return Err(CsrError::Bad("CSR has more than one common name".into()));
        }
        common_name = Some(cn.to_string());
        identifiers.insert(parse_ident(cn));
    }
    if let Some(exts) = csr.requested_extensions() {
        for ext in exts {
            if let ParsedExtension::SubjectAlternativeName(san) = ext {
                for name in &san.general_names {
                    match name {
                        GeneralName::DNSName(d) => {
                            identifiers.insert(Ident::Dns(d.to_ascii_lowercase()));
                        }
                        GeneralName::IPAddress(bytes) => {
                            let ip = match bytes.len() {
                                4 => IpAddr::from(
                                    <[u8; 4]>::try_from(*bytes)
                                        .map_err(|_| CsrError::Bad("bad IP SAN".into()))?,
                                ),
                                16 => IpAddr::from(
                                    <[u8; 16]>::try_from(*bytes)
                                        .map_err(|_| CsrError::Bad("bad IP SAN".into()))?,
                                ),
                                _ => {
                                    return Err(CsrError::Bad(
                                        "CSR IP address SAN has a bad length".into(),
                                    ))
                                }
                            };
                            identifiers.insert(Ident::Ip(super::ip::canonical(ip)));
                        }
                        other => {
                            return Err(CsrError::Bad(format!(
                                "CSR asks for an unsupported name type: {other}"
                            )));
                        }
                    }
                }
            }
        }
    }
    if identifiers.is_empty() {
        return Err(CsrError::Bad("CSR names no identifier".into()));
    }
    Ok(CheckedCsr {
        der: der.to_vec(),
        public_key: spki.raw.to_vec(),
        common_name,
        identifiers,
    })
}

/// What a CSR asks for when a profile copies it whole (Notary's): its subject, RDN by RDN, and
/// every subject alternative name of the kinds a certificate of pkid's carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestedNames {
    pub der: Vec<u8>,
    /// SubjectPublicKeyInfo DER.
    pub public_key: Vec<u8>,
    /// In RDN order; each RDN single-valued, each type once.
    pub subject: Vec<SubjectAttribute>,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    pub email_addresses: Vec<String>,
    pub uris: Vec<String>,
}

/// Parse and verify a CSR (signature, key as [`check_csr`] checks it) and read its subject and
/// SANs (DNS, IP, e-mail, URI) for copying: a multi-valued RDN, a repeated attribute type, a
/// string pkid cannot write back exactly, a non-ASCII name or another SAN kind is refused, as
/// is a CSR that names nothing at all.
pub fn read_requested_names(der: &[u8]) -> Result<RequestedNames, CsrError> {
    use x509_parser::der_parser::asn1_rs::Tag;
    let (rest, csr) = X509CertificationRequest::from_der(der)
        .map_err(|e| CsrError::Bad(format!("CSR is not valid DER: {e}")))?;
    if !rest.is_empty() {
        return Err(CsrError::Bad("CSR has trailing data".into()));
    }
    let info = &csr.certification_request_info;
    check_key(&info.subject_pki)?;
    csr.verify_signature()
        .map_err(|_| CsrError::Bad("CSR signature does not verify".into()))?;
    let mut subject: Vec<SubjectAttribute> = Vec::new();
    for rdn in info.subject.iter() {
        let attributes: Vec<_> = rdn.iter().collect();
        let [attribute] = attributes.as_slice() else {
            return Err(CsrError::Bad(
                "the CSR's subject has a multi-valued RDN".into(),
            ));
        };
        let oid: Vec<u64> = attribute
            .attr_type()
            .iter()
            .map(Iterator::collect)
            .ok_or_else(|| CsrError::Bad("a subject attribute type is too large".into()))?;
        if subject.iter().any(|a| a.oid == oid) {
            return Err(CsrError::Bad(format!(
                "the CSR's subject repeats the attribute {}",
                attribute.attr_type()
            )));
        }
        let kind = match attribute.attr_value().tag() {
            Tag::PrintableString => StringKind::Printable,
            Tag::Utf8String => StringKind::Utf8,
            Tag::Ia5String => StringKind::Ia5,
            _ => {
                return Err(CsrError::Bad(format!(
                "the CSR's subject attribute {} is not a PrintableString, UTF8String or IA5String",
                attribute.attr_type()
            )))
            }
        };
        let value = attribute
            .as_str()
            .map_err(|_| CsrError::Bad("a subject attribute is not text".into()))?;
        subject.push(SubjectAttribute {
            oid,
            value: value.to_owned(),
            kind,
        });
    }
    let mut names = RequestedNames {
        der: der.to_vec(),
        public_key: info.subject_pki.raw.to_vec(),
        subject,
        dns_names: Vec::new(),
        ip_addresses: Vec::new(),
        email_addresses: Vec::new(),
        uris: Vec::new(),
    };
    let ascii = |what: &str, value: &str| {
        if !value.is_empty() && value.is_ascii() && !value.chars().any(|c| c.is_ascii_control()) {
            Ok(value.to_owned())
        } else {
            Err(CsrError::Bad(format!("a {what} SAN is empty or not ASCII")))
        }
    };
    for ext in csr.requested_extensions().into_iter().flatten() {
        let ParsedExtension::SubjectAlternativeName(san) = ext else {
            continue;
        };
        for name in &san.general_names {
            match name {
                GeneralName::DNSName(d) => names.dns_names.push(ascii("DNS", d)?),
                GeneralName::RFC822Name(e) => names.email_addresses.push(ascii("e-mail", e)?),
                GeneralName::URI(u) => names.uris.push(ascii("URI", u)?),
                GeneralName::IPAddress(bytes) => {
                    let ip = match bytes.len() {
                        4 => <[u8; 4]>::try_from(*bytes).map(IpAddr::from).ok(),
                        16 => <[u8; 16]>::try_from(*bytes).map(IpAddr::from).ok(),
                        _ => None,
                    }
                    .ok_or_else(|| CsrError::Bad("CSR IP address SAN has a bad length".into()))?;
                    names.ip_addresses.push(super::ip::canonical(ip));
                }
                other => {
                    return Err(CsrError::Bad(format!(
                        "CSR asks for an unsupported name type: {other}"
                    )))
                }
            }
        }
    }
    let no_san = names.dns_names.is_empty()
        && names.ip_addresses.is_empty()
        && names.email_addresses.is_empty()
        && names.uris.is_empty();
    if names.subject.is_empty() && no_san {
        return Err(CsrError::Bad("CSR names no subject and no SAN".into()));
    }
    Ok(names)
}

fn parse_ident(s: &str) -> Ident {
    match s.parse::<IpAddr>() {
        Ok(ip) => Ident::Ip(super::ip::canonical(ip)),
        Err(_) => Ident::Dns(s.to_ascii_lowercase()),
    }
}

/// RSA 2048–8192 bits, EC P-256/P-384, Ed25519; nothing else.
fn check_key(spki: &x509_parser::x509::SubjectPublicKeyInfo<'_>) -> Result<(), CsrError> {
    let alg = &spki.algorithm.algorithm;
    if *alg == OID_PKCS1_RSAENCRYPTION {
        let Ok(PublicKey::RSA(rsa)) = spki.parsed() else {
            return Err(CsrError::WeakKey("RSA public key cannot be parsed".into()));
        };
        let bits = rsa.key_size();
        if !(2048..=8192).contains(&bits) {
            return Err(CsrError::WeakKey(format!(
                "RSA key of {bits} bits; 2048 to 8192 bits are accepted"
            )));
        }
        let exponent = rsa
            .exponent
            .iter()
            .skip_while(|b| **b == 0)
            .fold(0u64, |acc, b| {
                acc.saturating_mul(256).saturating_add(u64::from(*b))
            });
        if exponent < 3 || exponent % 2 == 0 {
            return Err(CsrError::WeakKey("RSA public exponent is unsafe".into()));
        }
        Ok(())
    } else if *alg == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .ok_or_else(|| CsrError::WeakKey("EC key without a named curve".into()))?;
        if curve == OID_EC_P256 || curve == OID_NIST_EC_P384 {
            Ok(())
        } else {
            Err(CsrError::WeakKey(format!(
                "EC curve {curve} is not accepted; use P-256 or P-384"
            )))
        }
    } else if *alg == OID_SIG_ED25519 {
        Ok(())
    } else {
        Err(CsrError::WeakKey(format!(
            "public key algorithm {alg} is not accepted"
        )))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
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

    fn csr_for(names: &[&str], alg: &'static rcgen::SignatureAlgorithm) -> Vec<u8> {
        let key = rcgen::KeyPair::generate_for(alg).unwrap();
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.serialize_request(&key).unwrap().der().to_vec()
    }

    #[test]
    fn reads_names_of_a_good_csr() {
        let der = csr_for(
            &["Example.test", "127.0.0.1"],
            &rcgen::PKCS_ECDSA_P256_SHA256,
        );
        let c = check_csr(&der).unwrap();
        assert!(c.identifiers.contains(&Ident::Dns("example.test".into())));
        assert!(c
            .identifiers
            .contains(&Ident::Ip("127.0.0.1".parse().unwrap())));
        assert_eq!(c.identifiers.len(), 2);
    }

    #[test]
    fn refuses_a_tampered_csr() {
        let mut der = csr_for(&["a.test"], &rcgen::PKCS_ECDSA_P256_SHA256);
        let i = der.len() / 2;
        der[i] ^= 0x01;
        assert!(matches!(check_csr(&der), Err(CsrError::Bad(_))));
        assert!(matches!(check_csr(b"garbage"), Err(CsrError::Bad(_))));
    }

    /// A CSR (PEM) for `C=TR, O=Internet Widgits Pty Ltd, CN=banana.com` with a DNS, an
    /// e-mail, a URI and an IP SAN, as Notary's sample has its subject.
    pub(crate) fn full_csr_pem() -> String {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["banana.com".to_string()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        for (kind, value) in [
            (rcgen::DnType::CountryName, "TR"),
            (rcgen::DnType::OrganizationName, "Internet Widgits Pty Ltd"),
            (rcgen::DnType::CommonName, "banana.com"),
        ] {
            params.distinguished_name.push(kind, value);
        }
        params.subject_alt_names.extend([
            rcgen::SanType::Rfc822Name("fruit@banana.com".try_into().unwrap()),
            rcgen::SanType::URI("https://banana.com/".try_into().unwrap()),
            rcgen::SanType::IpAddress("192.0.2.9".parse().unwrap()),
        ]);
        params.serialize_request(&key).unwrap().pem().unwrap()
    }

    #[test]
    fn a_csr_to_copy_gives_its_whole_subject_and_every_san() {
        let der = crate::pki::pem::one_request(&full_csr_pem()).unwrap();
        let names = read_requested_names(&der).unwrap();
        assert_eq!(
            names
                .subject
                .iter()
                .map(|a| (a.oid.clone(), a.value.as_str()))
                .collect::<Vec<_>>(),
            vec![
                (vec![2, 5, 4, 6], "TR"),
                (vec![2, 5, 4, 10], "Internet Widgits Pty Ltd"),
                (vec![2, 5, 4, 3], "banana.com")
            ]
        );
        assert_eq!(names.dns_names, ["banana.com"]);
        assert_eq!(names.email_addresses, ["fruit@banana.com"]);
        assert_eq!(names.uris, ["https://banana.com/"]);
        assert_eq!(names.ip_addresses.len(), 1);
        assert!(read_requested_names(b"garbage").is_err());
    }

    #[test]
    fn accepts_p384_and_ed25519() {
        check_csr(&csr_for(&["a.test"], &rcgen::PKCS_ECDSA_P384_SHA384)).unwrap();
        check_csr(&csr_for(&["a.test"], &rcgen::PKCS_ED25519)).unwrap();
    }
}

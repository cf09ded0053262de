//! Certificates the suites make themselves (rcgen): CAs, TLS client certificates and RFC 3820
//! proxies under them, written as the PEM files curl, openssl and `pkid user create
//! --certificate` read. Imports nothing of the harness.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};

/// A certificate with its key and the parameters it was made from (to sign others with).
pub struct Made {
    pub pem: String,
    pub key: KeyPair,
    pub params: CertificateParams,
}

impl Made {
    /// The certificate and its key in one PEM (what `reqwest::Identity::from_pem` reads).
    pub fn identity_pem(&self) -> String {
        format!("{}{}", self.pem, self.key.serialize_pem())
    }
}

fn certificate(params: CertificateParams, issuer: Option<&Made>) -> Made {
    let key = KeyPair::generate().expect("generate a key");
    let cert = match issuer {
        Some(i) => params.signed_by(&key, &Issuer::from_params(&i.params, &i.key)),
        None => params.self_signed(&key),
    }
    .expect("make a certificate");
    Made {
        pem: cert.pem(),
        key,
        params,
    }
}

/// Subject `O=pkid conformance, OU=unit`.
fn named(unit: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "pkid conformance");
    name.push(DnType::OrganizationalUnitName, unit);
    params.distinguished_name = name;
    params
}

/// A self-signed CA named `unit`.
pub fn ca(unit: &str) -> Made {
    let mut params = named(unit);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    certificate(params, None)
}

/// A TLS client certificate named `unit` under `issuer`.
pub fn client(unit: &str, issuer: &Made) -> Made {
    let mut params = named(unit);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    certificate(params, Some(issuer))
}

/// An RFC 3820 proxy (critical proxyCertInfo, inheritAll) under `issuer`.
pub fn proxy(issuer: &Made) -> Made {
    let mut params = CertificateParams::default();
    params.distinguished_name = issuer.params.distinguished_name.clone();
    params
        .distinguished_name
        .push(DnType::CommonName, "1234567");
    let info = vec![
        0x30, 0x0c, 0x30, 0x0a, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x15, 0x01,
    ];
    let mut ext = CustomExtension::from_oid_content(&[1, 3, 6, 1, 5, 5, 7, 1, 14], info);
    ext.set_criticality(true);
    params.custom_extensions.push(ext);
    certificate(params, Some(issuer))
}

/// Writes `NAME.pem` (the chain, leaf first) and `NAME.key` (`key`'s) into `dir`; their paths.
pub fn write_pair(dir: &Path, name: &str, chain: &[&Made], key: &Made) -> (PathBuf, PathBuf) {
    let pem = dir.join(format!("{name}.pem"));
    let key_path = dir.join(format!("{name}.key"));
    let text: String = chain.iter().map(|c| c.pem.as_str()).collect();
    std::fs::write(&pem, text).expect("write a certificate");
    std::fs::write(&key_path, key.key.serialize_pem()).expect("write a key");
    (pem, key_path)
}

//! Checks a user would make on an issued certificate: `openssl verify` against the CA root, the
//! leaf's subjectAltName DNS names (read with x509-parser), and pkilint's RFC 5280 linter
//! (`lint_pkix_cert`) over every certificate of the chain and the root.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use x509_parser::extensions::{DistributionPointName, GeneralName, ParsedExtension};
use x509_parser::oid_registry::OID_PKIX_ACCESS_DESCRIPTOR_OCSP;
use x509_parser::prelude::{CertificateRevocationList, FromDer, X509Certificate};
use x509_parser::x509::ReasonCode;

use crate::env::require_tool;

/// The DER certificates of a PEM chain, leaf first.
pub fn pem_chain(pem_text: &str) -> Vec<Vec<u8>> {
    let blocks = pem::parse_many(pem_text).unwrap_or_else(|err| panic!("parse PEM chain: {err}"));
    let certs: Vec<Vec<u8>> = blocks
        .into_iter()
        .filter(|block| block.tag() == "CERTIFICATE")
        .map(|block| block.into_contents())
        .collect();
    assert!(!certs.is_empty(), "no certificate in:\n{pem_text}");
    certs
}

fn to_pem(der: &[u8]) -> String {
    pem::encode(&pem::Pem::new("CERTIFICATE", der.to_vec()))
}

/// `openssl verify -CAfile <root> [-untrusted <rest of chain>] <leaf>` must pass.
/// `work` is a folder for the split files.
pub fn openssl_verify(root_pem: &Path, chain_pem: &str, work: &Path) {
    require_tool("openssl");
    let certs = pem_chain(chain_pem);
    std::fs::create_dir_all(work).expect("create the verify folder");
    let leaf = work.join("leaf.pem");
    std::fs::write(&leaf, to_pem(&certs[0])).expect("write leaf.pem");
    let mut command = Command::new("openssl");
    command.arg("verify").arg("-CAfile").arg(root_pem);
    if certs.len() > 1 {
        let untrusted = work.join("untrusted.pem");
        let rest: String = certs[1..].iter().map(|der| to_pem(der)).collect();
        std::fs::write(&untrusted, rest).expect("write untrusted.pem");
        command.arg("-untrusted").arg(untrusted);
    }
    command.arg(&leaf);
    let output = command.output().expect("run openssl verify");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success() && text.contains(": OK"),
        "openssl verify failed ({}):\n{text}\nchain:\n{chain_pem}",
        output.status
    );
}

/// The DNS names in the leaf's subjectAltName.
pub fn leaf_dns_names(chain_pem: &str) -> BTreeSet<String> {
    let certs = pem_chain(chain_pem);
    let (_, leaf) = X509Certificate::from_der(&certs[0]).expect("parse the leaf certificate");
    let san = leaf
        .subject_alternative_name()
        .expect("a well-formed subjectAltName")
        .expect("the leaf has a subjectAltName");
    san.value
        .general_names
        .iter()
        .map(|name| match name {
            GeneralName::DNSName(dns) => (*dns).to_owned(),
            other => panic!("unexpected subjectAltName entry {other:?}"),
        })
        .collect()
}

/// Asserts the leaf's SAN DNS names are exactly `names`.
pub fn assert_sans(chain_pem: &str, names: &[&str]) {
    let expected: BTreeSet<String> = names.iter().map(|name| (*name).to_owned()).collect();
    assert_eq!(leaf_dns_names(chain_pem), expected, "leaf subjectAltName");
}

/// `lint_pkix_cert lint -s ERROR` (pkilint, RFC 5280) reports nothing for any certificate of the
/// chain nor for the root.
pub fn pkilint_pkix(root_pem: &Path, chain_pem: &str, work: &Path) {
    require_tool("lint_pkix_cert");
    std::fs::create_dir_all(work).expect("create the lint folder");
    let root_text = std::fs::read_to_string(root_pem).expect("read root.pem");
    let mut certs = pem_chain(chain_pem);
    certs.extend(pem_chain(&root_text));
    let mut findings = String::new();
    for (index, der) in certs.iter().enumerate() {
        let file = work.join(format!("lint-{index}.pem"));
        std::fs::write(&file, to_pem(der)).expect("write a certificate to lint");
        let output = Command::new("lint_pkix_cert")
            .args(["lint", "-s", "ERROR"])
            .arg(&file)
            .output()
            .expect("run lint_pkix_cert");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        if !output.status.success() || !text.trim().is_empty() {
            findings.push_str(&format!(
                "certificate {index} ({}):\n{text}\n{}\n",
                output.status,
                to_pem(der)
            ));
        }
    }
    assert!(findings.is_empty(), "pkilint findings:\n{findings}");
}

/// Everything a user checks on what was issued for `names`: the chain verifies against the root,
/// the leaf names exactly `names`, and pkilint finds no RFC 5280 error.
pub fn check_issued(root_pem: &Path, chain_pem: &str, names: &[&str], work: &Path) {
    openssl_verify(root_pem, chain_pem, &work.join("verify"));
    assert_sans(chain_pem, names);
    pkilint_pkix(root_pem, chain_pem, &work.join("lint"));
}

/// The leaf's CRL distribution point URIs and OCSP responder URIs (authorityInfoAccess).
pub fn revocation_urls(chain_pem: &str) -> (Vec<String>, Vec<String>) {
    let certs = pem_chain(chain_pem);
    let (_, leaf) = X509Certificate::from_der(&certs[0]).expect("parse the leaf certificate");
    let mut crl = Vec::new();
    let mut ocsp = Vec::new();
    for extension in leaf.extensions() {
        match extension.parsed_extension() {
            ParsedExtension::CRLDistributionPoints(points) => {
                for point in points.iter() {
                    if let Some(DistributionPointName::FullName(names)) = &point.distribution_point
                    {
                        crl.extend(names.iter().filter_map(uri));
                    }
                }
            }
            ParsedExtension::AuthorityInfoAccess(access) => {
                ocsp.extend(
                    access
                        .accessdescs
                        .iter()
                        .filter(|desc| desc.access_method == OID_PKIX_ACCESS_DESCRIPTOR_OCSP)
                        .filter_map(|desc| uri(&desc.access_location)),
                );
            }
            _ => {}
        }
    }
    (crl, ocsp)
}

fn uri(name: &GeneralName) -> Option<String> {
    match name {
        GeneralName::URI(uri) => Some((*uri).to_owned()),
        _ => None,
    }
}

/// The reason code of the leaf's entry in a DER CRL: `None` if not listed, `Some(None)` if listed
/// without a reason.
pub fn crl_entry_reason(crl_der: &[u8], chain_pem: &str) -> Option<Option<ReasonCode>> {
    let certs = pem_chain(chain_pem);
    let (_, leaf) = X509Certificate::from_der(&certs[0]).expect("parse the leaf certificate");
    let (_, crl) = CertificateRevocationList::from_der(crl_der)
        .unwrap_or_else(|err| panic!("parse the CRL: {err}"));
    let reason = crl
        .iter_revoked_certificates()
        .find(|entry| entry.serial() == &leaf.tbs_certificate.serial)
        .map(|entry| entry.reason_code().map(|(_, reason)| reason));
    reason
}

/// Runs `openssl` with `args`; returns (success, stdout + stderr).
pub fn openssl(args: &[&std::ffi::OsStr]) -> (bool, String) {
    require_tool("openssl");
    let output = Command::new("openssl")
        .args(args)
        .output()
        .expect("run openssl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// Writes the leaf, its issuer, and a CA bundle (root + the chain's CA certificates) into `work`;
/// returns their paths in that order.
pub fn write_chain_files(
    root_pem: &Path,
    chain_pem: &str,
    work: &Path,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    std::fs::create_dir_all(work).expect("create a folder for certificate files");
    let certs = pem_chain(chain_pem);
    let root_text = std::fs::read_to_string(root_pem).expect("read root.pem");
    let leaf = work.join("leaf.pem");
    std::fs::write(&leaf, to_pem(&certs[0])).expect("write leaf.pem");
    let issuer = work.join("issuer.pem");
    let issuer_pem = match certs.get(1) {
        Some(der) => to_pem(der),
        None => root_text.clone(),
    };
    std::fs::write(&issuer, issuer_pem).expect("write issuer.pem");
    let bundle = work.join("ca-bundle.pem");
    let mut bundle_text = root_text;
    bundle_text.extend(certs[1..].iter().map(|der| to_pem(der)));
    std::fs::write(&bundle, bundle_text).expect("write ca-bundle.pem");
    (leaf, issuer, bundle)
}

//! Checks a user would make on an issued certificate: `openssl verify` against the CA root, the
//! leaf's subjectAltName DNS names and IP addresses (read with x509-parser), and pkilint's RFC 5280
//! linter (`lint_pkix_cert`) over every certificate of the chain and the root; and on revocation:
//! the CRL (RFC 5280 §5) fetched from the leaf's distribution point, `openssl crl`,
//! `openssl verify -crl_check` and `openssl ocsp` (RFC 6960).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use x509_parser::extensions::{DistributionPointName, GeneralName, ParsedExtension};
use x509_parser::oid_registry::{
    OID_PKIX_ACCESS_DESCRIPTOR_CA_ISSUERS, OID_PKIX_ACCESS_DESCRIPTOR_OCSP,
};
use x509_parser::prelude::{CertificateRevocationList, FromDer, X509Certificate};
use x509_parser::x509::ReasonCode;

use super::process::require_tool;

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

/// The leaf's subjectAltName entries as `DNS:name` and `IP:address`.
pub fn leaf_san_entries(chain_pem: &str) -> BTreeSet<String> {
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
            GeneralName::DNSName(dns) => format!("DNS:{dns}"),
            GeneralName::IPAddress(bytes) => match bytes.len() {
                4 => format!("IP:{}", IpAddr::from(<[u8; 4]>::try_from(*bytes).unwrap())),
                16 => format!("IP:{}", IpAddr::from(<[u8; 16]>::try_from(*bytes).unwrap())),
                _ => panic!("malformed IP address in subjectAltName: {bytes:?}"),
            },
            other => panic!("unexpected subjectAltName entry {other:?}"),
        })
        .collect()
}

/// Asserts the leaf's subjectAltName holds exactly `names`: IP addresses as iPAddress entries,
/// everything else as dNSName entries.
pub fn assert_sans(chain_pem: &str, names: &[&str]) {
    let expected: BTreeSet<String> = names
        .iter()
        .map(|name| match name.parse::<IpAddr>() {
            Ok(ip) => format!("IP:{ip}"),
            Err(_) => format!("DNS:{name}"),
        })
        .collect();
    assert_eq!(leaf_san_entries(chain_pem), expected, "leaf subjectAltName");
}

/// The leaf's parsed validity: (notBefore, notAfter) as Unix seconds.
pub fn leaf_validity(chain_pem: &str) -> (i64, i64) {
    let certs = pem_chain(chain_pem);
    let (_, leaf) = X509Certificate::from_der(&certs[0]).expect("parse the leaf certificate");
    (
        leaf.validity().not_before.timestamp(),
        leaf.validity().not_after.timestamp(),
    )
}

/// The leaf's serial number in hex, no leading zeros (as `pkid revoke` takes it).
pub fn leaf_serial_hex(chain_pem: &str) -> String {
    let certs = pem_chain(chain_pem);
    let (_, leaf) = X509Certificate::from_der(&certs[0]).expect("parse the leaf certificate");
    format!("{:x}", leaf.tbs_certificate.serial)
}

/// One pkilint run over one certificate file at severity ERROR and up: the findings (each
/// "Validator @ path\n    code (SEVERITY): message") not matched by `tolerated`, or the whole
/// output when the run failed or printed on stderr.
fn pkilint(
    tool: &str,
    args: &[&str],
    file: &Path,
    tolerated: &dyn Fn(&str) -> bool,
) -> Option<String> {
    let output = Command::new(tool)
        .arg("lint")
        .args(args)
        .args(["-s", "ERROR"])
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("run {tool}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Findings are pairs of lines: "Validator @ path", then "    code (SEVERITY): message".
    let lines: Vec<&str> = stdout
        .lines()
        .filter(|line| !line.trim().is_empty())
        .collect();
    let remaining = lines
        .chunks(2)
        .filter(|finding| !(finding.len() == 2 && tolerated(finding[1].trim())))
        .count();
    // pkilint exits non-zero exactly when it reports findings; tolerated ones are still findings.
    let exit_ok = output.status.success() || !lines.is_empty();
    if remaining == 0 && exit_ok && stderr.trim().is_empty() {
        None
    } else {
        Some(format!("{tool} ({}):\n{stdout}{stderr}", output.status))
    }
}

/// `lint_pkix_cert` (pkilint, RFC 5280) reports no error for any certificate of the chain nor for
/// the root.
///
/// One finding is tolerated, and only for a wildcard name that was asked for: RFC 5280 knows no
/// wildcards, so pkilint's PKIX linter calls `*.example` an invalid domain name; the wildcard's
/// syntax is defined by RFC 6125 §6.4.3 and the CA/B Forum rules, whose linter accepts it.
pub fn pkilint_pkix(root_pem: &Path, chain_pem: &str, work: &Path, wildcards: &[&str]) {
    require_tool("lint_pkix_cert");
    std::fs::create_dir_all(work).expect("create the lint folder");
    let root_text = std::fs::read_to_string(root_pem).expect("read root.pem");
    let mut certs = pem_chain(chain_pem);
    certs.extend(pem_chain(&root_text));
    let tolerated: Vec<String> = wildcards
        .iter()
        .map(|name| {
            format!(
                "pkix.invalid_domain_name_syntax (ERROR): Invalid domain name syntax: \"{name}\""
            )
        })
        .collect();
    let mut findings = String::new();
    for (index, der) in certs.iter().enumerate() {
        let file = work.join(format!("lint-{index}.pem"));
        std::fs::write(&file, to_pem(der)).expect("write a certificate to lint");
        let is_tolerated = |finding: &str| tolerated.iter().any(|t| finding == t);
        if let Some(report) = pkilint("lint_pkix_cert", &[], &file, &is_tolerated) {
            findings.push_str(&format!("certificate {index}: {report}\n{}\n", to_pem(der)));
        }
    }
    assert!(findings.is_empty(), "pkilint findings:\n{findings}");
}

/// `lint_cabf_serverauth_cert -t DV-FINAL-CERTIFICATE` (pkilint, CA/Browser Forum TLS BRs) reports
/// no error for the leaf: pkid's TLS profiles are domain-validated subscriber certificates.
///
/// Tolerated, as facts of the loopback test world rather than of pkid: names and addresses that the
/// BRs call internal (`*.test` names, 127.0.0.1 in the SAN and in the CRL and OCSP URLs, which
/// point at the test's pkid on loopback).
pub fn pkilint_cabf_leaf(chain_pem: &str, work: &Path) {
    require_tool("lint_cabf_serverauth_cert");
    std::fs::create_dir_all(work).expect("create the lint folder");
    let leaf = pem_chain(chain_pem)
        .into_iter()
        .next()
        .expect("a leaf certificate");
    let file = work.join("leaf-cabf.pem");
    std::fs::write(&file, to_pem(&leaf)).expect("write the leaf to lint");
    let internal = |finding: &str| {
        finding.starts_with("cabf.internal_domain_name (ERROR)")
            || finding.starts_with("cabf.internal_ip_address (ERROR)")
    };
    let args = ["-t", "DV-FINAL-CERTIFICATE"];
    if let Some(report) = pkilint("lint_cabf_serverauth_cert", &args, &file, &internal) {
        panic!(
            "pkilint CA/B Forum findings for the leaf: {report}\n{}",
            to_pem(&leaf)
        );
    }
}

/// Everything a user checks on what was issued for `names`: the chain verifies against the root,
/// the leaf names exactly `names`, and pkilint finds no RFC 5280 error in the chain and no CA/B
/// Forum error in the leaf.
pub fn check_issued(root_pem: &Path, chain_pem: &str, names: &[&str], work: &Path) {
    openssl_verify(root_pem, chain_pem, &work.join("verify"));
    assert_sans(chain_pem, names);
    let wildcards: Vec<&str> = names
        .iter()
        .copied()
        .filter(|name| name.starts_with("*."))
        .collect();
    pkilint_pkix(root_pem, chain_pem, &work.join("lint"), &wildcards);
    pkilint_cabf_leaf(chain_pem, &work.join("lint"));
}

/// The leaf's CRL distribution point URIs and OCSP responder URIs (authorityInfoAccess).
pub fn revocation_urls(chain_pem: &str) -> (Vec<String>, Vec<String>) {
    let certs = pem_chain(chain_pem);
    let (_, leaf) = X509Certificate::from_der(&certs[0]).expect("parse the leaf certificate");
    let mut crl = Vec::new();
    for extension in leaf.extensions() {
        if let ParsedExtension::CRLDistributionPoints(points) = extension.parsed_extension() {
            for point in points.iter() {
                if let Some(DistributionPointName::FullName(names)) = &point.distribution_point {
                    crl.extend(names.iter().filter_map(uri));
                }
            }
        }
    }
    (crl, aia_uris(&leaf, &OID_PKIX_ACCESS_DESCRIPTOR_OCSP))
}

/// The leaf's authorityInfoAccess URIs for one access method (RFC 5280 §4.2.2.1).
fn aia_uris(
    leaf: &X509Certificate<'_>,
    method: &x509_parser::oid_registry::Oid<'_>,
) -> Vec<String> {
    leaf.extensions()
        .iter()
        .filter_map(|extension| match extension.parsed_extension() {
            ParsedExtension::AuthorityInfoAccess(access) => Some(access),
            _ => None,
        })
        .flat_map(|access| access.accessdescs.iter())
        .filter(|desc| desc.access_method == *method)
        .filter_map(|desc| uri(&desc.access_location))
        .collect()
}

/// The leaf's AIA caIssuers URL serves its issuing CA certificate, in DER as
/// `application/pkix-cert` (RFC 5280 §4.2.2.1), byte for byte the chain's second certificate.
pub async fn check_ca_issuers(chain_pem: &str) {
    let certs = pem_chain(chain_pem);
    let (_, leaf) = X509Certificate::from_der(&certs[0]).expect("parse the leaf certificate");
    let urls = aia_uris(&leaf, &OID_PKIX_ACCESS_DESCRIPTOR_CA_ISSUERS);
    let url = urls
        .first()
        .unwrap_or_else(|| panic!("the leaf names no caIssuers URL:\n{chain_pem}"));
    let response = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("HTTP client")
        .get(url)
        .send()
        .await
        .unwrap_or_else(|err| panic!("GET {url}: {err:?}"));
    assert_eq!(response.status().as_u16(), 200, "GET {url}");
    let content_type = response.headers().get("content-type").cloned();
    assert_eq!(
        content_type.as_ref().and_then(|v| v.to_str().ok()),
        Some("application/pkix-cert"),
        "GET {url}"
    );
    let der = response.bytes().await.expect("read the issuer certificate");
    assert_eq!(
        der.as_ref(),
        certs[1].as_slice(),
        "GET {url}: not the chain's issuer"
    );
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
    openssl_in(Path::new("."), args)
}

/// [`openssl`] run in the folder `dir`, so that `args` can name its files relatively.
pub fn openssl_in(dir: &Path, args: &[&std::ffi::OsStr]) -> (bool, String) {
    require_tool("openssl");
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
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

/// The leaf's first CRL distribution point and first OCSP responder; panics if either is missing.
pub fn revocation_endpoints(chain_pem: &str) -> (String, String) {
    let (crl_urls, ocsp_urls) = revocation_urls(chain_pem);
    let crl = crl_urls
        .first()
        .unwrap_or_else(|| panic!("the leaf names no CRL distribution point:\n{chain_pem}"));
    let ocsp = ocsp_urls
        .first()
        .unwrap_or_else(|| panic!("the leaf names no OCSP responder:\n{chain_pem}"));
    (crl.clone(), ocsp.clone())
}

/// GETs the DER CRL at `crl_url` until it lists the leaf of `chain_pem` (a CRL may be regenerated
/// just after a revocation), bounded to 15 s; returns the CRL and the entry's reason.
pub async fn crl_listing(crl_url: &str, chain_pem: &str) -> (Vec<u8>, Option<ReasonCode>) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("HTTP client");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let response = http
            .get(crl_url)
            .send()
            .await
            .unwrap_or_else(|err| panic!("GET {crl_url}: {err:?}"));
        assert_eq!(response.status().as_u16(), 200, "GET {crl_url}");
        let der = response.bytes().await.expect("read the CRL").to_vec();
        if let Some(reason) = crl_entry_reason(&der, chain_pem) {
            return (der, reason);
        }
        assert!(
            Instant::now() < deadline,
            "{crl_url} never listed the revoked serial"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `openssl crl -in FILE -CAfile BUNDLE -noout` (`inform` DER or PEM) must say `verify OK`.
pub fn openssl_crl_verify(crl_file: &Path, inform: &str, bundle: &Path) {
    let (ok, text) = openssl(&[
        "crl".as_ref(),
        "-inform".as_ref(),
        inform.as_ref(),
        "-in".as_ref(),
        crl_file.as_os_str(),
        "-CAfile".as_ref(),
        bundle.as_os_str(),
        "-noout".as_ref(),
    ]);
    assert!(
        ok && text.contains("verify OK"),
        "openssl crl -verify {}:\n{text}",
        crl_file.display()
    );
}

/// What `openssl ocsp` is asked about: a certificate file. (A bare serial pkid never issued
/// gets the unsigned `unauthorized`, which does not verify: suites ask for those directly.)
pub enum OcspSubject<'a> {
    Cert(&'a Path),
}

/// Asks the responder at `url` with `openssl ocsp` (no nonce); asserts the response verifies
/// against `bundle`; returns the status openssl reports: `good`, `revoked` or `unknown`.
pub fn ocsp_status(issuer: &Path, bundle: &Path, url: &str, subject: OcspSubject<'_>) -> String {
    ocsp_query(issuer, bundle, url, subject, &["-no_nonce"]).0
}

/// `openssl ocsp EXTRA… -issuer ISSUER (-cert|-serial) … -url URL -CAfile BUNDLE`: asserts the
/// response verifies against `bundle`; returns the status openssl reports and its whole output.
pub fn ocsp_query(
    issuer: &Path,
    bundle: &Path,
    url: &str,
    subject: OcspSubject<'_>,
    extra: &[&str],
) -> (String, String) {
    let (flag, value, label) = match subject {
        OcspSubject::Cert(path) => ("-cert", path.as_os_str(), path.display().to_string()),
    };
    // Options first: openssl wants a CertID digest before -cert or -serial.
    let mut args: Vec<&std::ffi::OsStr> = vec!["ocsp".as_ref()];
    args.extend(extra.iter().map(|a| std::ffi::OsStr::new(*a)));
    args.extend([
        "-issuer".as_ref(),
        issuer.as_os_str(),
        flag.as_ref(),
        value,
        "-url".as_ref(),
        url.as_ref(),
        "-CAfile".as_ref(),
        bundle.as_os_str(),
    ]);
    let (ok, text) = openssl(&args);
    assert!(
        ok && text.contains("Response verify OK"),
        "openssl ocsp {label} at {url} {extra:?}:\n{text}"
    );
    let prefix = format!("{label}: ");
    let status = text
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map(|status| status.trim().to_owned())
        .unwrap_or_else(|| panic!("openssl ocsp printed no status for {label}:\n{text}"));
    (status, text)
}

/// Runs a pkilint linter (`lint_crl …`, `lint_ocsp_response …`) with `-s ERROR` on `file`;
/// asserts it reports nothing.
pub fn pkilint_document(linter: &str, args: &[&str], file: &Path) {
    require_tool(linter);
    let output = Command::new(linter)
        .arg("lint")
        .args(args)
        .args(["-s", "ERROR"])
        .arg(file)
        .output()
        .unwrap_or_else(|err| panic!("run {linter}: {err}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.trim().is_empty() && stderr.trim().is_empty(),
        "{linter} findings on {} ({}):\n{stdout}{stderr}",
        file.display(),
        output.status
    );
}

/// pkilint's RFC 5280 CRL linter finds nothing at ERROR level in the DER CRL `file`.
pub fn pkilint_crl(file: &Path) {
    pkilint_document("lint_crl", &["-t", "CRL", "-p", "PKIX"], file);
}

/// pkilint's RFC 6960 linter finds nothing at ERROR level in the DER OCSP response `file`.
pub fn pkilint_ocsp_response(file: &Path) {
    pkilint_document("lint_ocsp_response", &[], file);
}

/// `openssl verify -crl_check -CAfile BUNDLE -CRLfile CRL_PEM LEAF`: (success, output).
pub fn openssl_verify_with_crl(bundle: &Path, crl_pem: &Path, leaf: &Path) -> (bool, String) {
    openssl(&[
        "verify".as_ref(),
        "-crl_check".as_ref(),
        "-CAfile".as_ref(),
        bundle.as_os_str(),
        "-CRLfile".as_ref(),
        crl_pem.as_os_str(),
        leaf.as_os_str(),
    ])
}

/// Writes `der` as a PEM CRL to `path`.
pub fn write_crl_pem(der: &[u8], path: &Path) -> PathBuf {
    std::fs::write(path, pem::encode(&pem::Pem::new("X509 CRL", der.to_vec())))
        .expect("write the CRL as PEM");
    path.to_owned()
}

/// What relying parties see of a revoked and a live leaf of one issuer: `openssl verify
/// -crl_check` with the CRL (PEM) says revoked and OK, and the OCSP responder at `ocsp_url`
/// says `revoked` and `good`.
pub fn assert_revoked_and_live(
    bundle: &Path,
    crl_pem: &Path,
    issuer: &Path,
    ocsp_url: &str,
    revoked_leaf: &Path,
    live_leaf: &Path,
) {
    let (ok, text) = openssl_verify_with_crl(bundle, crl_pem, revoked_leaf);
    assert!(
        !ok && text.contains("certificate revoked"),
        "openssl verify -crl_check of the revoked leaf:\n{text}"
    );
    let (ok, text) = openssl_verify_with_crl(bundle, crl_pem, live_leaf);
    assert!(
        ok && text.contains(": OK"),
        "openssl verify -crl_check of the live leaf:\n{text}"
    );
    assert_eq!(
        ocsp_status(issuer, bundle, ocsp_url, OcspSubject::Cert(revoked_leaf)),
        "revoked",
        "OCSP of the revoked leaf"
    );
    assert_eq!(
        ocsp_status(issuer, bundle, ocsp_url, OcspSubject::Cert(live_leaf)),
        "good",
        "OCSP of the live leaf"
    );
}

//! What the notary suites check with, beside the `Notary` client of `mod.rs`: a request's shape,
//! a CA's certificate and its CRL read by openssl, `/metrics` read by the Python
//! prometheus-client parser, a chain made by an outside CA, and the SoftHSM token the CAs
//! made in PKCS#11 use.

use std::process::Command;

use serde_json::Value;

use super::{openssl_ok, Answer, Notary, NEW_P256_KEY};
use crate::harness::certs::pem_chain;
use crate::harness::process::require_tool;

/// The SoftHSM token CAs made with `"key_custody": "pkcs11"` keep their keys in.
pub(super) const TOKEN: &str = "notary-cas";
pub(super) const PIN: &str = "4321";

/// A request as the seed shows it: exactly its fields, with their types.
pub(super) fn assert_request_shape(request: &Value) {
    let object = request
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {request}"));
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["certificate_chain", "csr", "email", "id", "status"],
        "{request}"
    );
    assert!(request["id"].is_i64(), "{request}");
    assert!(request["csr"]
        .as_str()
        .is_some_and(|c| c.contains("BEGIN CERTIFICATE REQUEST")));
    assert!(request["certificate_chain"].is_string() && request["email"].is_string());
    assert!(
        ["Outstanding", "Active", "Rejected", "Revoked"]
            .contains(&request["status"].as_str().unwrap_or("")),
        "{request}"
    );
}

/// openssl's text of the CRL at `…/certificate_authorities/{ca}/crl`, fetched as Notary's JSON
/// and as DER (`Accept: application/pkix-crl`), each checked against the CA's certificate.
pub(super) fn crl_text(n: &Notary, ca: i64, ca_pem: &std::path::Path) -> String {
    let path = format!("/api/v1/certificate_authorities/{ca}/crl");
    let json = n.expect(200, "GET", &path, None, None);
    let pem = json.body["result"]["crl"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(pem.contains("BEGIN X509 CRL"), "{}", json.body);
    let der = n.curl_with("GET", &path, None, None, &["Accept: application/pkix-crl"]);
    assert_eq!(der.status, 200);
    let der_file = n.work.join(format!("ca{ca}.crl"));
    std::fs::write(&der_file, &der.raw).unwrap();
    let pem_file = n.work.join(format!("ca{ca}.crl.pem"));
    std::fs::write(&pem_file, pem).unwrap();
    let mut texts = Vec::new();
    for (file, form) in [(&der_file, "DER"), (&pem_file, "PEM")] {
        let output = Command::new("openssl")
            .args(["crl", "-inform", form, "-noout", "-text", "-in"])
            .arg(file)
            .arg("-CAfile")
            .arg(ca_pem)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            output.status.success() && text.contains("verify OK"),
            "openssl crl {form}: {text}"
        );
        texts.push(text);
    }
    texts.remove(0)
}

/// Whether openssl's CRL text lists `serial_hex`.
pub(super) fn crl_lists(text: &str, serial_hex: &str) -> bool {
    let want = serial_hex.trim_start_matches('0').to_ascii_uppercase();
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("Serial Number: "))
        .any(|s| s.trim().trim_start_matches('0').to_ascii_uppercase() == want)
}

/// The CA's certificate (the first of its chain) in a file.
pub(super) fn ca_file(n: &Notary, token: &str, ca: i64) -> std::path::PathBuf {
    let shown = n.result(
        Some(token),
        &format!("/api/v1/certificate_authorities/{ca}"),
    );
    let chain = shown["certificate"].as_str().unwrap_or_default();
    let der = pem_chain(chain)
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("CA {ca}: {shown}"));
    let file = n.work.join(format!("ca{ca}.pem"));
    std::fs::write(&file, pem::encode(&pem::Pem::new("CERTIFICATE", der))).unwrap();
    file
}

/// `/metrics` as the Python prometheus-client parser reads it: `name{labels}` → value, for
/// every sample (the parse fails on text that is not Prometheus' format).
pub(super) fn metrics(n: &Notary) -> Vec<(String, Value, f64)> {
    require_tool("python3");
    let answer = n.curl_with("GET", "/metrics", None, None, &[]);
    assert_eq!(answer.status, 200);
    let file = n.work.join("metrics.txt");
    std::fs::write(&file, &answer.raw).unwrap();
    let script = "import sys, json\n\
        from prometheus_client.parser import text_string_to_metric_families\n\
        out = []\n\
        for family in text_string_to_metric_families(open(sys.argv[1]).read()):\n\
        \x20   for s in family.samples:\n\
        \x20       out.append([s.name, s.labels, s.value])\n\
        print(json.dumps(out))\n";
    let output = Command::new("python3")
        .args(["-c", script])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "prometheus-client could not parse /metrics (pip install prometheus-client): {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&answer.raw)
    );
    let samples: Vec<(String, Value, f64)> = serde_json::from_slice(&output.stdout).unwrap();
    samples
}

/// The sum of `name`'s samples whose `issuer` label is `issuer`.
pub(super) fn by_issuer(samples: &[(String, Value, f64)], name: &str, issuer: &str) -> f64 {
    samples
        .iter()
        .filter(|(n, labels, _)| n == name && labels["issuer"] == issuer)
        .map(|(_, _, v)| v)
        .sum()
}

/// `openssl x509 -text` of a certificate file.
pub(super) fn openssl_text(file: &std::path::Path) -> String {
    let name = file.display().to_string();
    openssl_ok(
        std::path::Path::new("."),
        &["x509", "-noout", "-text", "-in", &name],
    )
}

/// A chain for `<name>.csr` signed by a CA made with openssl outside pkid: leaf, then CA.
pub(super) fn outside_chain(work: &std::path::Path, name: &str) -> String {
    outside_chain_with(work, name, &[])
}

/// A chain for the CSR of a CA made here (`<name>.csr`) signed by the outside CA, as a CA.
pub(super) fn outside_ca_chain(work: &std::path::Path, name: &str) -> String {
    let ext = work.join("ca.ext");
    std::fs::write(
        &ext,
        "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n",
    )
    .unwrap();
    outside_chain_with(work, name, &["-extfile", "ca.ext"])
}

fn outside_chain_with(work: &std::path::Path, name: &str, extra: &[&str]) -> String {
    if !work.join("outside-ca.pem").exists() {
        let mut args = vec!["req", "-x509"];
        args.extend(NEW_P256_KEY);
        args.extend([
            "-keyout",
            "outside-ca.key",
            "-out",
            "outside-ca.pem",
            "-days",
            "30",
            "-subj",
            "/CN=Outside CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        openssl_ok(work, &args);
    }
    let (csr, leaf) = (format!("{name}.csr"), format!("{name}.pem"));
    openssl_ok(
        work,
        &[
            "x509",
            "-req",
            "-days",
            "10",
            "-in",
            &csr,
            "-CA",
            "outside-ca.pem",
            "-CAkey",
            "outside-ca.key",
            "-CAcreateserial",
            "-out",
            &leaf,
        ]
        .into_iter()
        .chain(extra.iter().copied())
        .collect::<Vec<_>>(),
    );
    format!(
        "{}{}",
        std::fs::read_to_string(work.join(&leaf)).unwrap(),
        std::fs::read_to_string(work.join("outside-ca.pem")).unwrap()
    )
}

/// An answer that refused: 4xx, `{"error"}`.
pub(super) fn assert_refused(answer: &Answer, what: &str) {
    assert!((400..500).contains(&answer.status), "{what}: {answer:?}");
    super::assert_error(answer, what);
}

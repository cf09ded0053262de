//! RFC 3820 proxy chains made by OpenSSL, judged twice: by pkid's checker of uploaded proxy
//! files (`pkid::pki::proxy`) and by `openssl verify -allow_proxy_certs`. The two must agree on
//! every chain, and each chain must get the verdict it was built for, so a setup mistake that
//! both refuse fails the test too.

use std::ffi::OsStr;
use std::path::Path;

use crate::harness::certs::openssl_in;

/// Runs openssl in `dir`; (success, output).
fn openssl(dir: &Path, args: &[&str]) -> (bool, String) {
    let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    openssl_in(dir, &args)
}

/// Runs openssl in `dir`; panics with its output when it fails.
fn run(dir: &Path, args: &[&str]) {
    let (ok, out) = openssl(dir, args);
    assert!(ok, "openssl {args:?}:\n{out}");
}

/// A key and a certificate `name`.pem / `name`.key, issued by `issuer` with the extensions of
/// section `section` of `ext.cnf` (or self-signed as a CA when `issuer` is `None`).
fn certificate(
    dir: &Path,
    name: &str,
    subject: &str,
    issuer: Option<&str>,
    section: &str,
    serial: u32,
) {
    let key = format!("{name}.key");
    let pem = format!("{name}.pem");
    match issuer {
        None => run(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &pem,
                "-subj",
                subject,
                "-days",
                "10",
                "-config",
                "ext.cnf",
                "-extensions",
                section,
            ],
        ),
        Some(issuer) => {
            let csr = format!("{name}.csr");
            run(
                dir,
                &[
                    "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr,
                    "-subj", subject, "-config", "ext.cnf",
                ],
            );
            let (issuer_pem, issuer_key) = (format!("{issuer}.pem"), format!("{issuer}.key"));
            run(
                dir,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &csr,
                    "-CA",
                    &issuer_pem,
                    "-CAkey",
                    &issuer_key,
                    "-set_serial",
                    &serial.to_string(),
                    "-days",
                    "1",
                    "-extfile",
                    "ext.cnf",
                    "-extensions",
                    section,
                    "-out",
                    &pem,
                ],
            );
        }
    }
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("read {file}: {e}"))
}

/// openssl's verdict on `leaf` with `untrusted` (proxies above it and the end entity) under
/// the CA.
fn openssl_accepts(dir: &Path, leaf: &str, untrusted: &[&str]) -> (bool, String) {
    let bundle: String = untrusted
        .iter()
        .map(|name| read(dir, &format!("{name}.pem")))
        .collect();
    let untrusted_file = format!("{leaf}-untrusted.pem");
    std::fs::write(dir.join(&untrusted_file), bundle).unwrap();
    let leaf_file = format!("{leaf}.pem");
    let args = [
        "verify",
        "-allow_proxy_certs",
        "-CAfile",
        "ca.pem",
        "-untrusted",
        &untrusted_file,
        &leaf_file,
    ];
    openssl(dir, &args)
}

/// pkid's verdict on the grid proxy file: `leaf`, its key, then `untrusted`.
fn pkid_accepts(dir: &Path, leaf: &str, untrusted: &[&str]) -> (bool, String) {
    let mut file = read(dir, &format!("{leaf}.pem"));
    file.push_str(&read(dir, &format!("{leaf}.key")));
    for name in untrusted {
        file.push_str(&read(dir, &format!("{name}.pem")));
    }
    match pkid::pki::proxy::parse_bundle(&file, pkid::store::now()) {
        Ok(bundle) => (true, format!("{:?}", bundle.facts)),
        Err(e) => (false, e.to_string()),
    }
}

const EXTENSIONS: &str = "\
[req]
distinguished_name = dn
[dn]
[ca]
basicConstraints = critical, CA:true
keyUsage = critical, keyCertSign, cRLSign
[eec]
basicConstraints = CA:false
keyUsage = critical, digitalSignature, keyEncipherment
[proxy]
keyUsage = critical, digitalSignature, keyEncipherment
proxyCertInfo = critical, language:id-ppl-inheritAll
[proxy_pathlen0]
keyUsage = critical, digitalSignature, keyEncipherment
proxyCertInfo = critical, language:id-ppl-inheritAll, pathlen:0
[proxy_san]
keyUsage = critical, digitalSignature, keyEncipherment
proxyCertInfo = critical, language:id-ppl-inheritAll
subjectAltName = DNS:alice.pkid.test
";

#[test]
fn pkid_and_openssl_agree_on_proxy_chains() {
    let scratch = tempfile::Builder::new()
        .prefix("pkid-proxy-")
        .tempdir()
        .unwrap();
    let dir = scratch.path();
    std::fs::write(dir.join("ext.cnf"), EXTENSIONS).unwrap();
    let eec_dn = "/O=pkid tests/CN=Alice";
    certificate(dir, "ca", "/O=pkid tests/CN=Grid CA", None, "ca", 1);
    certificate(dir, "eec", eec_dn, Some("ca"), "eec", 2);
    certificate(
        dir,
        "proxy",
        &format!("{eec_dn}/CN=1001"),
        Some("eec"),
        "proxy",
        3,
    );
    certificate(
        dir,
        "proxy2",
        &format!("{eec_dn}/CN=1001/CN=2002"),
        Some("proxy"),
        "proxy",
        4,
    );
    certificate(
        dir,
        "limited",
        &format!("{eec_dn}/CN=1003"),
        Some("eec"),
        "proxy_pathlen0",
        5,
    );
    certificate(
        dir,
        "below_limit",
        &format!("{eec_dn}/CN=1003/CN=2004"),
        Some("limited"),
        "proxy",
        6,
    );
    certificate(
        dir,
        "renamed",
        "/O=pkid tests/CN=Mallory/CN=1005",
        Some("eec"),
        "proxy",
        7,
    );
    certificate(
        dir,
        "not_cn",
        &format!("{eec_dn}/OU=1006"),
        Some("eec"),
        "proxy",
        8,
    );
    certificate(
        dir,
        "with_san",
        &format!("{eec_dn}/CN=1007"),
        Some("eec"),
        "proxy_san",
        9,
    );
    certificate(dir, "same_name", eec_dn, Some("eec"), "proxy", 10);

    let cases: [(&str, &[&str], bool); 8] = [
        ("proxy", &["eec"], true),
        ("proxy2", &["proxy", "eec"], true),
        ("limited", &["eec"], true),
        ("below_limit", &["limited", "eec"], false),
        ("renamed", &["eec"], false),
        ("not_cn", &["eec"], false),
        ("with_san", &["eec"], false),
        ("same_name", &["eec"], false),
    ];
    let mut report = String::new();
    for (leaf, untrusted, expected) in cases {
        let (by_openssl, openssl_says) = openssl_accepts(dir, leaf, untrusted);
        let (by_pkid, pkid_says) = pkid_accepts(dir, leaf, untrusted);
        report.push_str(&format!(
            "{leaf}: openssl {by_openssl} ({}), pkid {by_pkid} ({pkid_says})\n",
            openssl_says.trim().replace('\n', " | ")
        ));
        assert_eq!(
            (by_openssl, by_pkid),
            (expected, expected),
            "{leaf} should be {}:\n{report}",
            if expected { "accepted" } else { "refused" }
        );
    }
    eprintln!("{report}");
}

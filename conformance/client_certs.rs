//! TLS client authentication on the HTTPS listener, as curl and openssl see it, with
//! `server.client_ca_files` set: pkid asks for a client certificate (naming its anchors) and never
//! requires one. Verification is deferred to each request (identity), so a trusted, an untrusted
//! and an RFC 3820 proxy chain all complete the handshake and are answered; a client without a
//! certificate is answered as before, and an ACME client without one still issues.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};

use crate::harness::certs::pem_chain;
use crate::harness::client::{csr_der, AcmeClient};
use crate::harness::environment::{within, Environment};
use crate::harness::http01::Http01Responder;
use crate::harness::process::run_tool;

const TEST_BOUND: Duration = Duration::from_secs(120);

struct Made {
    pem: String,
    key: KeyPair,
    params: CertificateParams,
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

fn named(unit: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "pkid conformance");
    name.push(DnType::OrganizationalUnitName, unit);
    params.distinguished_name = name;
    params
}

fn ca(unit: &str) -> Made {
    let mut params = named(unit);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    certificate(params, None)
}

fn client(unit: &str, issuer: &Made) -> Made {
    let mut params = named(unit);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    certificate(params, Some(issuer))
}

/// An RFC 3820 proxy (critical proxyCertInfo, inheritAll) under `issuer`.
fn proxy(issuer: &Made) -> Made {
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

/// Writes `NAME.pem` (the chain, leaf first) and `NAME.key`; returns their paths.
fn write_pair(dir: &Path, name: &str, chain: &[&Made], key: &Made) -> (PathBuf, PathBuf) {
    let pem = dir.join(format!("{name}.pem"));
    let key_path = dir.join(format!("{name}.key"));
    let text: String = chain.iter().map(|c| c.pem.as_str()).collect();
    std::fs::write(&pem, text).expect("write a certificate");
    std::fs::write(&key_path, key.key.serialize_pem()).expect("write a key");
    (pem, key_path)
}

/// `curl -v https://…/healthz` trusting pkid's root, with a client certificate when given:
/// (success, body, verbose log).
fn curl_healthz(env: &Environment, pair: Option<&(PathBuf, PathBuf)>) -> (bool, String) {
    let url = format!("https://{}/healthz", env.pkid.https_addr());
    let root = env.pkid.root_pem_path();
    let mut args = vec![
        "-sS".to_string(),
        "-v".to_string(),
        "--max-time".to_string(),
        "20".to_string(),
        "--cacert".to_string(),
        root.display().to_string(),
    ];
    if let Some((pem, key)) = pair {
        args.extend([
            "--cert".to_string(),
            pem.display().to_string(),
            "--key".to_string(),
            key.display().to_string(),
        ]);
    }
    args.push(url);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_tool("curl", &args, &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_asks_for_a_client_certificate_and_never_requires_one() {
    let clients_ca = ca("Clients CA");
    let alice = client("alice", &clients_ca);
    let elsewhere = ca("Elsewhere CA");
    let mallory = client("mallory", &elsewhere);
    let alice_proxy = proxy(&alice);

    let anchors = tempfile::Builder::new()
        .prefix("pkid-client-certs-")
        .tempdir()
        .expect("create a temporary folder");
    let ca_file = anchors.path().join("clients-ca.pem");
    std::fs::write(&ca_file, &clients_ca.pem).expect("write the clients' CA");
    let setting = format!("[\"{}\", \"backend:default\"]", ca_file.display());
    let env = Environment::start_with(&[("PKID_SERVER__CLIENT_CA_FILES", &setting)]).await;
    within(TEST_BOUND, async {
        let dir = env.subdir("clients");
        // The certificate request names the anchors: the file's CA and pkid's own root.
        let (_, hello) = run_tool(
            "openssl",
            &[
                "s_client",
                "-connect",
                &env.pkid.https_addr().to_string(),
                "-CAfile",
                &env.pkid.root_pem_path().display().to_string(),
            ],
            &[],
        );
        let acceptable = hello
            .split("Acceptable client certificate CA names")
            .nth(1)
            .unwrap_or_else(|| panic!("no certificate request:\n{hello}"));
        assert!(acceptable.contains("Clients CA"), "{hello}");
        assert!(acceptable.contains("pkid Root CA"), "{hello}");

        let trusted = write_pair(&dir, "alice", &[&alice], &alice);
        let (ok, out) = curl_healthz(&env, Some(&trusted));
        assert!(ok && out.contains("ok"), "a trusted certificate:\n{out}");
        // curl was asked for its certificate and proved its key.
        assert!(out.contains("Request CERT"), "{out}");
        assert!(out.contains("CERT verify"), "{out}");

        // Verification is deferred: an untrusted certificate completes the handshake and the
        // request is answered, as anonymous.
        let untrusted = write_pair(&dir, "mallory", &[&mallory], &mallory);
        let (ok, out) = curl_healthz(&env, Some(&untrusted));
        assert!(ok && out.contains("ok"), "an untrusted certificate:\n{out}");
        assert!(out.contains("CERT verify"), "{out}");

        // An RFC 3820 proxy chain, which rustls' own verifier refuses at the handshake.
        let proxied = write_pair(&dir, "alice-proxy", &[&alice_proxy, &alice], &alice_proxy);
        let (ok, out) = curl_healthz(&env, Some(&proxied));
        assert!(ok && out.contains("ok"), "a proxy chain:\n{out}");

        // No certificate at all.
        let (ok, out) = curl_healthz(&env, None);
        assert!(ok && out.contains("ok"), "no certificate:\n{out}");

        // The lead adds here, with users (`pkid user create … --certificate alice.pem`): a
        // linked certificate (TLS, and X-APP-CERTIFICATE from a trusted proxy) authenticates
        // as its user; an unlinked, an untrusted one, and X-APP-CERTIFICATE from an untrusted
        // address do not.

        // An ACME client that presents no certificate still issues.
        let responder = Http01Responder::bind(env.http01_port).await;
        let mut acme = AcmeClient::new(&env.pkid.directory_url(), &env.pkid.root_pem()).await;
        let names = ["client-certs.pkid.test"];
        let order = acme.ready_order(&names, &responder).await;
        let finalized = acme.finalize(&order, &csr_der(&names)).await;
        assert_eq!(finalized.status, 200, "{}", finalized.describe());
        let order = acme.wait_valid(&order).await;
        let url = order
            .certificate_url()
            .expect("a valid order has a certificate");
        let chain = acme.download_certificate(&url).await;
        assert!(pem_chain(&chain).len() >= 2, "{chain}");
    })
    .await;
}

//! Revocation by the operator: `pkid revoke SERIAL --reason N` run beside a live server (same
//! configuration, same database) shows at once in what relying parties fetch: the CRL at the
//! leaf's distribution point (RFC 5280 §5, reason code §5.3.1), `openssl verify -crl_check`, and
//! the OCSP responder (RFC 6960: `revoked`, `good` for a live certificate, `unknown` for a serial
//! pkid never issued). `pkid crl generate --out FILE` writes a CRL that `openssl crl` verifies.

use std::time::Duration;

use x509_parser::prelude::{CertificateRevocationList, FromDer};
use x509_parser::x509::ReasonCode;

use crate::certs::{
    assert_revoked_and_live, check_issued, crl_entry_reason, crl_listing, leaf_serial_hex,
    ocsp_status, openssl, openssl_crl_verify, revocation_endpoints, write_chain_files,
    write_crl_pem, OcspSubject,
};
use crate::client::{csr_der, AcmeClient, Http01Responder};
use crate::env::{require_tool, within, Environment};

const TEST_BOUND: Duration = Duration::from_secs(120);

/// Issues a certificate for `names` with the test client; returns its PEM chain.
async fn issue(client: &mut AcmeClient, responder: &Http01Responder, names: &[&str]) -> String {
    let order = client.ready_order(names, responder).await;
    let answer = client.finalize(&order, &csr_der(names)).await;
    assert_eq!(answer.status, 200, "finalize: {}", answer.describe());
    let issued = client.wait_valid(&order).await;
    let url = issued
        .certificate_url()
        .unwrap_or_else(|| panic!("valid order without certificate: {}", issued.body));
    client.download_certificate(&url).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_revoke_shows_in_crl_openssl_verify_and_ocsp() {
    require_tool("openssl");
    let env = Environment::start().await;
    within(TEST_BOUND, async {
        let root = env.pkid.root_pem_path();
        let responder = Http01Responder::bind(env.http01_port).await;
        let mut client = AcmeClient::new(&env.pkid.directory_url(), &env.pkid.root_pem()).await;
        let revoked_chain = issue(&mut client, &responder, &["cli-revoked.pkid.test"]).await;
        let live_chain = issue(&mut client, &responder, &["cli-live.pkid.test"]).await;
        check_issued(
            &root,
            &revoked_chain,
            &["cli-revoked.pkid.test"],
            &env.subdir("checks-revoked"),
        );
        check_issued(
            &root,
            &live_chain,
            &["cli-live.pkid.test"],
            &env.subdir("checks-live"),
        );

        let work = env.subdir("revoked");
        let (leaf, issuer, bundle) = write_chain_files(&root, &revoked_chain, &work);
        // The serial as an operator reads it: `openssl x509 -serial` (upper-case hex, even length).
        let (ok, text) = openssl(&[
            "x509".as_ref(),
            "-noout".as_ref(),
            "-serial".as_ref(),
            "-in".as_ref(),
            leaf.as_os_str(),
        ]);
        let serial = text
            .trim()
            .strip_prefix("serial=")
            .filter(|_| ok)
            .unwrap_or_else(|| panic!("openssl x509 -serial:\n{text}"))
            .to_owned();
        assert_eq!(
            serial.trim_start_matches('0').to_ascii_lowercase(),
            leaf_serial_hex(&revoked_chain),
            "openssl and x509-parser read the same serial"
        );
        let (ok, stdout, stderr) = env.pkid.cli(&["revoke", &serial, "--reason", "1"]).await;
        assert!(ok, "pkid revoke {serial} --reason 1:\n{stdout}\n{stderr}");
        let live_work = env.subdir("live");
        let (live_leaf, _, _) = write_chain_files(&root, &live_chain, &live_work);

        // The CRL the running server publishes at the leaf's distribution point.
        let (crl_url, ocsp_url) = revocation_endpoints(&revoked_chain);
        let (crl_der, reason) = crl_listing(&crl_url, &revoked_chain).await;
        assert_eq!(reason, Some(ReasonCode::KeyCompromise), "CRL entry reason");
        assert_eq!(
            crl_entry_reason(&crl_der, &live_chain),
            None,
            "the live certificate is not on the CRL"
        );
        let crl_pem = write_crl_pem(&crl_der, &work.join("crl.pem"));
        openssl_crl_verify(&crl_pem, "PEM", &bundle);

        assert_revoked_and_live(&bundle, &crl_pem, &issuer, &ocsp_url, &leaf, &live_leaf);
        assert_eq!(
            ocsp_status(&issuer, &bundle, &ocsp_url, OcspSubject::Serial("0x1234")),
            "unknown",
            "OCSP of a serial pkid never issued"
        );

        // The PEM twin of the DER CRL lists the same entry.
        let pem_url = crl_url.replace(".crl", ".pem");
        let pem_text = reqwest::get(&pem_url)
            .await
            .unwrap_or_else(|err| panic!("GET {pem_url}: {err:?}"))
            .text()
            .await
            .expect("read the PEM CRL");
        let pem_der = pem::parse(&pem_text)
            .unwrap_or_else(|err| panic!("{pem_url} is not PEM ({err}):\n{pem_text}"))
            .into_contents();
        assert_eq!(
            crl_entry_reason(&pem_der, &revoked_chain),
            Some(Some(ReasonCode::KeyCompromise)),
            "{pem_url} lists the revoked serial"
        );

        // An operator-generated CRL.
        let generated = work.join("generated.pem");
        let out = generated.display().to_string();
        let (ok, stdout, stderr) = env.pkid.cli(&["crl", "generate", "--out", &out]).await;
        assert!(ok, "pkid crl generate --out:\n{stdout}\n{stderr}");
        openssl_crl_verify(&generated, "PEM", &bundle);
        let text = std::fs::read_to_string(&generated).expect("read the generated CRL");
        let der = pem::parse(&text)
            .unwrap_or_else(|err| panic!("pkid crl generate wrote no PEM ({err}):\n{text}"))
            .into_contents();
        CertificateRevocationList::from_der(&der)
            .unwrap_or_else(|err| panic!("parse the generated CRL: {err}"));
        assert_eq!(
            crl_entry_reason(&der, &revoked_chain),
            Some(Some(ReasonCode::KeyCompromise)),
            "the generated CRL lists the revoked serial"
        );
    })
    .await;
}

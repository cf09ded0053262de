//! Revocation by the operator: `pkid revoke SERIAL --reason N` run beside a live server (same
//! configuration, same database) shows at once in what relying parties fetch: the CRL at the
//! leaf's distribution point (RFC 5280 §5, reason code §5.3.1), `openssl verify -crl_check`, and
//! the OCSP responder (RFC 6960: `revoked`, `good` for a live certificate, the unsigned
//! `unauthorized` for a serial pkid never issued). `pkid crl generate --out FILE` writes a CRL
//! that `openssl crl` verifies.
//! The revocation's invalidity date (RFC 5280 §5.3.2) shows in the CRL entry and in OCSP, and
//! pkilint (`lint_crl`, `lint_ocsp_response`) finds no error in what pkid serves.
//!
//! With `ca.crl_shards = 4` and `ca.ocsp_responder = "delegated"`: each certificate names its
//! shard's CRL, whose issuingDistributionPoint scopes it (`openssl verify -crl_check` finds the
//! revoked leaf revoked with its shard's CRL, and no CRL for it in another shard's); the complete
//! CRL lists it too; OCSP (POST and GET, SHA-1 and SHA-256 CertIDs, a nonce ignored) is signed by a
//! delegated responder certificate (id-kp-OCSPSigning, id-pkix-ocsp-nocheck) that `openssl ocsp`
//! verifies with the CA.
//!
//! With `ca.delta_crls`: the complete CRL names its delta CRL (freshestCRL); after a revocation
//! the delta lists it over the kept complete CRL, and `openssl verify -crl_check -use_deltas`
//! finds the leaf revoked with both.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use serde_json::json;

use x509_parser::prelude::{CertificateRevocationList, FromDer};
use x509_parser::x509::ReasonCode;

use crate::harness::certs::{
    check_issued, crl_entry_reason, crl_listing, leaf_serial_hex, ocsp_query, ocsp_status, openssl,
    openssl_crl_verify, openssl_verify_with_crl, pkilint_crl, pkilint_ocsp_response, pkilint_pkix,
    revocation_endpoints, write_chain_files, write_crl_pem, OcspSubject,
};
use crate::harness::client::{csr_der, AcmeClient};
use crate::harness::environment::{within, Environment};
use crate::harness::http01::Http01Responder;
use crate::harness::process::require_tool;

const TEST_BOUND: Duration = Duration::from_secs(120);
/// The invalidity date given to `pkid revoke`, and as `openssl` prints it.
const INVALIDITY: &str = "2026-01-31T12:00:00Z";
const INVALIDITY_PRINTED: &str = "Jan 31 12:00:00 2026 GMT";

fn content_type(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// A CRL as a relying party checks it: `openssl crl` verifies it against `bundle`, pkilint's
/// `lint_crl` finds no error. Writes `NAME.pem` and `NAME.der` in `work`; returns the PEM file
/// and `openssl crl -text`.
fn check_crl(der: &[u8], work: &Path, name: &str, bundle: &Path) -> (PathBuf, String) {
    let pem = write_crl_pem(der, &work.join(format!("{name}.pem")));
    openssl_crl_verify(&pem, "PEM", bundle);
    let der_file = work.join(format!("{name}.der"));
    std::fs::write(&der_file, der).expect("write the DER CRL");
    pkilint_crl(&der_file);
    let (ok, text) = openssl(&[
        "crl".as_ref(),
        "-in".as_ref(),
        pem.as_os_str(),
        "-noout".as_ref(),
        "-text".as_ref(),
    ]);
    assert!(ok, "openssl crl -text:\n{text}");
    (pem, text)
}

/// OCSP for a serial pkid never issued: `unauthorized`, unsigned (RFC 6960 §2.3), so that no
/// guessed serial makes pkid sign.
fn assert_unauthorized(issuer: &Path, ocsp_url: &str, serial: &str) {
    let (_, text) = openssl(&[
        "ocsp".as_ref(),
        "-issuer".as_ref(),
        issuer.as_os_str(),
        "-serial".as_ref(),
        serial.as_ref(),
        "-url".as_ref(),
        ocsp_url.as_ref(),
        "-no_nonce".as_ref(),
    ]);
    assert!(
        text.contains("Responder Error: unauthorized"),
        "OCSP of a serial pkid never issued:\n{text}"
    );
}

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
        let (ok, stdout, stderr) = env
            .pkid
            .cli(&[
                "revoke",
                &serial,
                "--reason",
                "1",
                "--invalidity-date",
                INVALIDITY,
            ])
            .await;
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
        let (crl_pem, text) = check_crl(&crl_der, &work, "crl", &bundle);
        assert!(
            text.contains("Invalidity Date") && text.contains(INVALIDITY_PRINTED),
            "the CRL entry carries the invalidity date:\n{text}"
        );

        let (ok, text) = openssl_verify_with_crl(&bundle, &crl_pem, &leaf);
        assert!(
            !ok && text.contains("certificate revoked"),
            "openssl verify -crl_check of the revoked leaf:\n{text}"
        );
        let (ok, text) = openssl_verify_with_crl(&bundle, &crl_pem, &live_leaf);
        assert!(
            ok && text.contains(": OK"),
            "openssl verify -crl_check of the live leaf:\n{text}"
        );

        let response = work.join("ocsp-revoked.der");
        let respout = response.display().to_string();
        let (status, text) = ocsp_query(
            &issuer,
            &bundle,
            &ocsp_url,
            OcspSubject::Cert(&leaf),
            &["-respout", &respout, "-resp_text"],
        );
        assert_eq!(status, "revoked", "OCSP of the revoked leaf:\n{text}");
        assert!(
            text.contains("Reason: keyCompromise") && text.contains("Invalidity Date"),
            "OCSP gives the reason and the invalidity date:\n{text}"
        );
        assert!(
            text.contains("WARNING: no nonce in response") && !text.contains("OCSP Nonce"),
            "the nonce is not echoed (the answer is pre-signed):\n{text}"
        );
        pkilint_ocsp_response(&response);
        assert_eq!(
            ocsp_status(&issuer, &bundle, &ocsp_url, OcspSubject::Cert(&live_leaf)),
            "good",
            "OCSP of the live leaf"
        );
        assert_unauthorized(&issuer, &ocsp_url, "0x1234");

        // The PEM twin of the DER CRL lists the same entry.
        let pem_url = crl_url.replace(".crl", ".pem");
        let pem_response = reqwest::get(&pem_url)
            .await
            .unwrap_or_else(|err| panic!("GET {pem_url}: {err:?}"));
        assert_eq!(
            content_type(&pem_response),
            "application/x-pem-file",
            "{pem_url}"
        );
        let pem_text = pem_response.text().await.expect("read the PEM CRL");
        let der_response = reqwest::get(&crl_url)
            .await
            .unwrap_or_else(|err| panic!("GET {crl_url}: {err:?}"));
        assert_eq!(
            content_type(&der_response),
            "application/pkix-crl",
            "{crl_url}"
        );
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

/// The shard index in a sharded CRL distribution point `…/crl/default/K.crl`.
fn shard_of_url(crl_url: &str) -> Option<u32> {
    let (_, file) = crl_url.rsplit_once("/crl/default/")?;
    file.strip_suffix(".crl")?.parse().ok()
}

async fn get_der(url: &str, expected_type: &str) -> Vec<u8> {
    let response = reqwest::get(url)
        .await
        .unwrap_or_else(|err| panic!("GET {url}: {err:?}"));
    assert_eq!(response.status().as_u16(), 200, "GET {url}");
    assert_eq!(content_type(&response), expected_type, "GET {url}");
    response.bytes().await.expect("read the body").to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_crls_and_a_delegated_ocsp_responder() {
    require_tool("openssl");
    let env = Environment::start_with(&[
        ("PKID_CA__CRL_SHARDS", "4"),
        ("PKID_CA__OCSP_RESPONDER", "delegated"),
    ])
    .await;
    within(TEST_BOUND, async {
        let root = env.pkid.root_pem_path();
        let responder = Http01Responder::bind(env.http01_port).await;
        let mut client = AcmeClient::new(&env.pkid.directory_url(), &env.pkid.root_pem()).await;
        let revoked_chain = issue(&mut client, &responder, &["shard-revoked.pkid.test"]).await;
        let (crl_url, ocsp_url) = revocation_endpoints(&revoked_chain);
        let shard = shard_of_url(&crl_url)
            .unwrap_or_else(|| panic!("not a sharded CRL distribution point: {crl_url}"));
        assert!(shard < 4, "{crl_url}");
        // A live certificate in another shard (each lands in one of 4 by its serial; bounded).
        let mut other = None;
        for i in 0..16 {
            let name = format!("shard-live-{i}.pkid.test");
            let chain = issue(&mut client, &responder, &[name.as_str()]).await;
            let (url, _) = revocation_endpoints(&chain);
            if shard_of_url(&url).is_some_and(|k| k != shard) {
                other = Some((chain, url));
                break;
            }
        }
        let (live_chain, other_url) = other.expect("16 certificates all landed in one shard");
        let work = env.subdir("sharded");
        let (leaf, issuer, bundle) = write_chain_files(&root, &revoked_chain, &work);
        let live_work = env.subdir("sharded-live");
        let (live_leaf, _, _) = write_chain_files(&root, &live_chain, &live_work);

        let serial = leaf_serial_hex(&revoked_chain);
        let (ok, stdout, stderr) = env.pkid.cli(&["revoke", &serial, "--reason", "1"]).await;
        assert!(ok, "pkid revoke {serial}:\n{stdout}\n{stderr}");

        // The revoked leaf's shard lists it; its IDP matches the leaf's distribution point.
        let (crl_der, reason) = crl_listing(&crl_url, &revoked_chain).await;
        assert_eq!(reason, Some(ReasonCode::KeyCompromise));
        assert!(!get_der(&crl_url, "application/pkix-crl").await.is_empty());
        let (crl_pem, text) = check_crl(&crl_der, &work, "shard", &bundle);
        assert!(
            text.contains("Issuing Distribution Point: critical")
                && text.contains(&crl_url)
                && text.contains("Only User Certificates"),
            "the shard's CRL names its URL:\n{text}"
        );
        let (ok, text) = openssl_verify_with_crl(&bundle, &crl_pem, &leaf);
        assert!(
            !ok && text.contains("certificate revoked"),
            "openssl verify -crl_check with the leaf's shard:\n{text}"
        );

        // Another shard's CRL does not cover the leaf (its IDP names another URL) but covers
        // its own live certificate.
        let other_der = get_der(&other_url, "application/pkix-crl").await;
        assert_eq!(crl_entry_reason(&other_der, &revoked_chain), None);
        let (other_pem, _) = check_crl(&other_der, &work, "other-shard", &bundle);
        let (ok, text) = openssl_verify_with_crl(&bundle, &other_pem, &leaf);
        assert!(
            !ok && text.contains("different CRL scope"),
            "another shard's CRL is out of the leaf's scope:\n{text}"
        );
        let (ok, text) = openssl_verify_with_crl(&bundle, &other_pem, &live_leaf);
        assert!(
            ok && text.contains(": OK"),
            "the live leaf with its shard:\n{text}"
        );

        // The complete CRL (no IDP) lists it too, in DER and PEM.
        let full_url = crl_url.replace(&format!("/default/{shard}.crl"), "/default.crl");
        let full_der = get_der(&full_url, "application/pkix-crl").await;
        assert_eq!(
            crl_entry_reason(&full_der, &revoked_chain),
            Some(Some(ReasonCode::KeyCompromise)),
            "{full_url}"
        );
        let (_, text) = check_crl(&full_der, &work, "full", &bundle);
        assert!(!text.contains("Issuing Distribution Point"), "{text}");
        let shard_pem = get_der(&crl_url.replace(".crl", ".pem"), "application/x-pem-file").await;
        assert!(String::from_utf8_lossy(&shard_pem).starts_with("-----BEGIN X509 CRL-----"));
        // Shards past the configured ones do not exist.
        let missing = crl_url.replace(&format!("/{shard}.crl"), "/4.crl");
        let response = reqwest::get(&missing).await.expect("GET a missing shard");
        assert_eq!(response.status().as_u16(), 404, "{missing}");

        // OCSP by the delegated responder: POST with a nonce, SHA-1 and SHA-256 CertIDs.
        for digest in ["-sha1", "-sha256"] {
            let response = work.join(format!("ocsp{digest}.der"));
            let respout = response.display().to_string();
            let (status, text) = ocsp_query(
                &issuer,
                &bundle,
                &ocsp_url,
                OcspSubject::Cert(&leaf),
                &[digest, "-respout", &respout, "-resp_text"],
            );
            assert_eq!(status, "revoked", "{digest}:\n{text}");
            assert!(text.contains("Reason: keyCompromise"), "{digest}:\n{text}");
            assert!(
                text.contains("OCSP Signing")
                    && text.contains("OCSP No Check")
                    && text.contains("OCSP Responder"),
                "signed by a delegated responder, sent in the response:\n{text}"
            );
            assert!(
                text.contains("WARNING: no nonce in response") && !text.contains("OCSP Nonce"),
                "{digest}: the nonce is not echoed:\n{text}"
            );
            pkilint_ocsp_response(&response);
            // The responder certificate the response carries passes pkilint's RFC 5280 lint.
            let responder_pem = text
                .find("-----BEGIN CERTIFICATE-----")
                .and_then(|start| {
                    let end = text[start..].find("-----END CERTIFICATE-----")?;
                    Some(&text[start..start + end + "-----END CERTIFICATE-----".len()])
                })
                .unwrap_or_else(|| panic!("no responder certificate in:\n{text}"));
            pkilint_pkix(
                &root,
                responder_pem,
                &work.join(format!("lint{digest}")),
                &[],
            );
        }
        let (status, _) = ocsp_query(
            &issuer,
            &bundle,
            &ocsp_url,
            OcspSubject::Cert(&live_leaf),
            &[],
        );
        assert_eq!(status, "good", "OCSP of the live leaf");
        assert_unauthorized(&issuer, &ocsp_url, "0x1234");

        // GET (RFC 6960 §A.1): the base64 request in the path.
        let request = work.join("request.der");
        let (ok, text) = openssl(&[
            "ocsp".as_ref(),
            "-issuer".as_ref(),
            issuer.as_os_str(),
            "-cert".as_ref(),
            leaf.as_os_str(),
            "-no_nonce".as_ref(),
            "-reqout".as_ref(),
            request.as_os_str(),
        ]);
        assert!(ok, "openssl ocsp -reqout:\n{text}");
        let encoded = base64::engine::general_purpose::STANDARD
            .encode(std::fs::read(&request).expect("read request.der"));
        let get_url = format!(
            "{ocsp_url}/{}",
            encoded.replace('/', "%2F").replace('+', "%2B")
        );
        let response_der = get_der(&get_url, "application/ocsp-response").await;
        let response = work.join("ocsp-get.der");
        std::fs::write(&response, &response_der).expect("write ocsp-get.der");
        let (ok, text) = openssl(&[
            "ocsp".as_ref(),
            "-respin".as_ref(),
            response.as_os_str(),
            "-issuer".as_ref(),
            issuer.as_os_str(),
            "-cert".as_ref(),
            leaf.as_os_str(),
            "-CAfile".as_ref(),
            bundle.as_os_str(),
        ]);
        assert!(
            ok && text.contains("Response verify OK") && text.contains(": revoked"),
            "OCSP over GET:\n{text}"
        );
        pkilint_ocsp_response(&response);
    })
    .await;
}

/// The CRL number of a DER CRL, in decimal.
fn crl_number(der: &[u8]) -> String {
    let (_, crl) = CertificateRevocationList::from_der(der).expect("parse the CRL");
    crl.crl_number()
        .map(|n| n.to_string())
        .expect("a CRL number")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_crls_carry_revocations_until_the_next_complete_crl() {
    require_tool("openssl");
    let env = Environment::start_with(&[("PKID_CA__DELTA_CRLS", "true")]).await;
    within(TEST_BOUND, async {
        let root = env.pkid.root_pem_path();
        let responder = Http01Responder::bind(env.http01_port).await;
        let mut client = AcmeClient::new(&env.pkid.directory_url(), &env.pkid.root_pem()).await;
        let revoked_chain = issue(&mut client, &responder, &["delta-revoked.pkid.test"]).await;
        let live_chain = issue(&mut client, &responder, &["delta-live.pkid.test"]).await;
        let work = env.subdir("delta");
        let (leaf, _, bundle) = write_chain_files(&root, &revoked_chain, &work);
        let live_work = env.subdir("delta-live");
        let (live_leaf, _, _) = write_chain_files(&root, &live_chain, &live_work);
        let (full_url, _) = revocation_endpoints(&revoked_chain);
        let delta_url = full_url.replace("/default.crl", "/default/delta.crl");

        // The complete CRL before the revocation names its delta CRL.
        let base = get_der(&full_url, "application/pkix-crl").await;
        let (base_pem, text) = check_crl(&base, &work, "base", &bundle);
        assert!(
            text.contains("Freshest CRL") && text.contains(&delta_url),
            "the complete CRL names {delta_url}:\n{text}"
        );

        let serial = leaf_serial_hex(&revoked_chain);
        let (ok, stdout, stderr) = env.pkid.cli(&["revoke", &serial, "--reason", "5"]).await;
        assert!(ok, "pkid revoke {serial}:\n{stdout}\n{stderr}");

        // The delta lists it and names the complete CRL as its base; the complete CRL is kept
        // until its schedule.
        let (delta, reason) = crl_listing(&delta_url, &revoked_chain).await;
        assert_eq!(reason, Some(ReasonCode::CessationOfOperation));
        assert_eq!(crl_entry_reason(&delta, &live_chain), None);
        let (delta_pem, text) = check_crl(&delta, &work, "delta", &bundle);
        assert!(
            text.contains("Delta CRL Indicator: critical"),
            "a delta CRL:\n{text}"
        );
        let base_number = crl_number(&base);
        let indicator = text
            .lines()
            .skip_while(|line| !line.contains("Delta CRL Indicator"))
            .nth(1)
            .unwrap_or_default()
            .trim();
        assert_eq!(
            indicator, base_number,
            "the delta's base CRL number:\n{text}"
        );
        let full_now = get_der(&full_url, "application/pkix-crl").await;
        assert_eq!(
            crl_number(&full_now),
            base_number,
            "the complete CRL is kept"
        );
        assert_eq!(crl_entry_reason(&full_now, &revoked_chain), None);

        // openssl with deltas finds the leaf revoked; with the complete CRL alone it does not.
        let with_deltas = |cert: &std::path::Path| {
            openssl(&[
                "verify".as_ref(),
                "-crl_check".as_ref(),
                "-use_deltas".as_ref(),
                "-CAfile".as_ref(),
                bundle.as_os_str(),
                "-CRLfile".as_ref(),
                base_pem.as_os_str(),
                "-CRLfile".as_ref(),
                delta_pem.as_os_str(),
                cert.as_os_str(),
            ])
        };
        let (ok, text) = with_deltas(&leaf);
        assert!(
            !ok && text.contains("certificate revoked"),
            "openssl verify -use_deltas:\n{text}"
        );
        let (ok, text) = with_deltas(&live_leaf);
        assert!(ok && text.contains(": OK"), "the live leaf:\n{text}");
        let (ok, text) = openssl_verify_with_crl(&bundle, &base_pem, &leaf);
        assert!(
            ok,
            "the complete CRL alone predates the revocation:\n{text}"
        );
    })
    .await;
}

/// Revocation reasons (security hardening, item 3): a subscriber revokes with the reasons Boulder
/// allows (0, 1, 3, 4, 5); removeFromCRL is refused to everyone, the operator included; a
/// certificate revoked for another reason may be revoked again for keyCompromise, which the CRL
/// and OCSP then show, and nothing else revokes it twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriber_reasons_only_and_a_later_key_compromise_replaces_the_reason() {
    require_tool("openssl");
    let env = Environment::start().await;
    within(TEST_BOUND, async {
        let responder = Http01Responder::bind(env.http01_port).await;
        let mut client = AcmeClient::new(&env.pkid.directory_url(), &env.pkid.root_pem()).await;
        client.register().await;
        let chain = issue(&mut client, &responder, &["reasons.pkid.test"]).await;
        let leaf = crate::harness::certs::pem_chain(&chain).remove(0);
        let revoke = |reason: u8| {
            let client = &client;
            let body = json!({"certificate": crate::harness::acme::b64(&leaf), "reason": reason});
            async move {
                client
                    .post(&client.resource("revokeCert"), Some(&body))
                    .await
            }
        };
        for refused in [2u8, 6, 8, 9, 10] {
            let answer = revoke(refused).await;
            assert_eq!(
                answer.status,
                400,
                "reason {refused}: {}",
                answer.describe()
            );
            assert_eq!(
                answer.problem_type().as_deref(),
                Some("urn:ietf:params:acme:error:badRevocationReason"),
                "reason {refused}"
            );
        }
        let (crl_url, ocsp_url) = revocation_endpoints(&chain);
        let root = env.pkid.root_pem_path();
        let (leaf_file, issuer, bundle) = write_chain_files(&root, &chain, &env.subdir("reasons"));

        let answer = revoke(4).await;
        assert_eq!(answer.status, 200, "superseded: {}", answer.describe());
        let (_, reason) = crl_listing(&crl_url, &chain).await;
        assert_eq!(reason, Some(ReasonCode::Superseded));
        for again in [4u8, 0, 5] {
            let answer = revoke(again).await;
            assert_eq!(
                answer.problem_type().as_deref(),
                Some("urn:ietf:params:acme:error:alreadyRevoked"),
                "reason {again} over superseded: {}",
                answer.describe()
            );
        }

        // Past the second of the first revocation, so the CRL signed for it counts as older.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let answer = revoke(1).await;
        assert_eq!(
            answer.status,
            200,
            "keyCompromise over superseded: {}",
            answer.describe()
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            let (_, reason) = crl_listing(&crl_url, &chain).await;
            if reason == Some(ReasonCode::KeyCompromise) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the CRL still shows {reason:?}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let (status, text) = ocsp_query(
            &issuer,
            &bundle,
            &ocsp_url,
            OcspSubject::Cert(&leaf_file),
            &["-no_nonce"],
        );
        assert_eq!(status, "revoked", "{text}");
        assert!(
            text.contains("keyCompromise"),
            "OCSP shows the new reason:\n{text}"
        );
        let answer = revoke(1).await;
        assert_eq!(
            answer.problem_type().as_deref(),
            Some("urn:ietf:params:acme:error:alreadyRevoked"),
            "keyCompromise twice: {}",
            answer.describe()
        );

        // The operator cannot give removeFromCRL either; nothing is recorded.
        let other = issue(&mut client, &responder, &["reasons-cli.pkid.test"]).await;
        let serial = leaf_serial_hex(&other);
        let (ok, stdout, stderr) = env.pkid.cli(&["revoke", &serial, "--reason", "8"]).await;
        assert!(!ok, "pkid revoke --reason 8 succeeded:\n{stdout}");
        assert!(
            stderr.contains("reason 8 cannot be given to a revocation"),
            "{stderr}"
        );
        let (other_crl, _) = revocation_endpoints(&other);
        let http = reqwest::Client::new();
        let der = http
            .get(&other_crl)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(crl_entry_reason(&der, &other), None, "nothing was revoked");
    })
    .await;
}

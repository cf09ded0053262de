//! The seed document replayed with curl against a real pkid, request by request, with its
//! sample CSR: status codes, envelopes (`{"result": …}`, `{"error": …}`), field names and
//! types, the status values (`Outstanding`, `Active`, `Rejected`, `Revoked`); signing copies
//! the CSR's subject and writes Notary's profile; revocation reaches the CA's CRL (`openssl
//! crl`, JSON and DER) and OCSP. Then, on the same pkid, the CA lifecycle (`cas`), `/metrics`
//! (parsed by the Python prometheus-client parser, its counters moved by the issuance and the
//! revocation), `/readyz` and the audit trail.

use serde_json::json;

use super::checks::{
    assert_refused, assert_request_shape, by_issuer, ca_file, crl_lists, crl_text, metrics,
    openssl_text, outside_chain, PIN, TOKEN,
};
use super::{assert_done, cas, created_id, openssl_csr, openssl_ok, Notary, SEED_CSR, TEST_BOUND};
use crate::harness::certs::{leaf_serial_hex, ocsp_status, openssl_verify, pem_chain, OcspSubject};
use crate::harness::environment::{within, Environment};
use crate::harness::process::require_tool;
use crate::harness::softhsm::SoftHsm;

const PIN_VAR: &str = "CONFORMANCE_NOTARY_PIN";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_replayed_with_curl_then_cas_metrics_and_audit() {
    for tool in ["curl", "openssl", "softhsm2-util", "pkcs11-tool", "python3"] {
        require_tool(tool);
    }
    let hsm = SoftHsm::new();
    hsm.init_token(TOKEN, PIN, "12345678");
    let conf = hsm.conf.display().to_string();
    let env = Environment::start_with(&[
        ("SOFTHSM2_CONF", &conf),
        (PIN_VAR, PIN),
        ("PKID_CA__REGISTRY__PKCS11__MODULE", SoftHsm::MODULE),
        ("PKID_CA__REGISTRY__PKCS11__TOKEN_LABEL", TOKEN),
        ("PKID_CA__REGISTRY__PKCS11__PIN_ENV", PIN_VAR),
    ])
    .await;
    within(TEST_BOUND, async {
        let n = Notary::new(&env.pkid, &env.subdir("notary"));

        // GET /status: open; not initialized before the first account.
        let status = n.expect(200, "GET", "/status", None, None);
        assert_eq!(status.body["result"]["initialized"], false, "{:?}", status.body);
        assert!(status.body["result"]["version"].is_string());
        // The first account needs no credential; later ones do.
        let (_, admin) = n.account(None, "admin@pkid.test", 0);
        assert_eq!(n.result(None, "/status")["initialized"], true);
        let again = json!({"email": "x@pkid.test", "password": super::PASSWORD, "role_id": 0});
        n.expect(401, "POST", "/api/v1/accounts", None, Some(again));
        let me = n.result(Some(&admin), "/api/v1/accounts/me");
        assert_eq!(me["email"], "admin@pkid.test");
        assert_eq!(me["role_id"], 0);
        assert!(me["id"].is_i64());

        let ca = n.root_ca(&admin, "Notary Seed Root", "software");
        let ca_pem = ca_file(&n, &admin, ca);
        let ca_name = n.result(Some(&admin), &format!("/api/v1/certificate_authorities/{ca}"))
            ["name"]
            .as_str()
            .unwrap()
            .to_owned();
        let before = metrics(&n);

        // List (empty), create with the seed's CSR, list, get.
        let list = n.expect(200, "GET", "/api/v1/certificate_requests", Some(&admin), None);
        assert_eq!(list.body, json!({"result": []}));
        let id = n.submit(&admin, SEED_CSR);
        let list = n.result(Some(&admin), "/api/v1/certificate_requests");
        let listed = list.as_array().unwrap();
        assert_eq!(listed.len(), 1);
        assert_request_shape(&listed[0]);
        assert_eq!(listed[0]["id"], id);
        assert_eq!(listed[0]["status"], "Outstanding");
        assert_eq!(listed[0]["certificate_chain"], "");
        assert_eq!(listed[0]["email"], "admin@pkid.test");
        assert_eq!(listed[0]["csr"].as_str().unwrap().trim(), SEED_CSR.trim());
        let path = format!("/api/v1/certificate_requests/{id}");
        let got = n.result(Some(&admin), &path);
        assert_eq!(&got, &listed[0]);
        // The same CSR twice: 400.
        n.expect(400, "POST", "/api/v1/certificate_requests", Some(&admin), Some(json!({"csr": SEED_CSR})));

        // Sign with the CA: 202, Active; delete the certificate: 200, the request stays,
        // Outstanding again, without it; and sign again.
        let sign = json!({"certificate_authority_id": ca.to_string()});
        let signed = n.expect(202, "POST", &format!("{path}/sign"), Some(&admin), Some(sign.clone()));
        assert_done(&signed, "sign");
        assert_eq!(n.result(Some(&admin), &path)["status"], "Active");
        let deleted = n.expect(200, "DELETE", &format!("{path}/certificate"), Some(&admin), None);
        assert_done(&deleted, "delete certificate");
        let got = n.result(Some(&admin), &path);
        assert_eq!(got["certificate_chain"], "");
        assert_eq!(got["status"], "Outstanding");
        n.expect(202, "POST", &format!("{path}/sign"), Some(&admin), Some(sign));
        let got = n.result(Some(&admin), &path);
        assert_request_shape(&got);
        assert_eq!(got["status"], "Active");
        let chain = got["certificate_chain"].as_str().unwrap().to_owned();
        assert!(pem_chain(&chain).len() >= 2, "{chain}");
        openssl_verify(&ca_pem, &chain, &n.work.join("verify-seed"));
        let leaf_file = n.work.join("seed-leaf.pem");
        let leaf_der = pem_chain(&chain).remove(0);
        std::fs::write(&leaf_file, pem::encode(&pem::Pem::new("CERTIFICATE", leaf_der))).unwrap();
        let text = openssl_text(&leaf_file);
        for want in [
            "Subject: C = TR, ST = Izmir, L = Narlidere, O = Internet Widgits Pty Ltd, CN = banana.com",
            "Digital Signature, Key Encipherment",
            "TLS Web Server Authentication, TLS Web Client Authentication",
            &format!("/api/v1/certificate_authorities/{ca}/crl"),
        ] {
            assert!(text.contains(want), "{want:?} not in the leaf:\n{text}");
        }
        let serial = leaf_serial_hex(&chain);

        // Revoke: 202, Revoked, on the CA's CRL (JSON and DER) and revoked in OCSP.
        let revoked = n.expect(202, "POST", &format!("{path}/certificate/revoke"), Some(&admin), None);
        assert_done(&revoked, "revoke");
        assert_eq!(n.result(Some(&admin), &path)["status"], "Revoked");
        let crl = crl_text(&n, ca, &ca_pem);
        assert!(crl_lists(&crl, &serial), "{serial} not on the CRL:\n{crl}");
        let ocsp = format!("http://{}/ocsp", env.pkid.http_addr());
        assert_eq!(ocsp_status(&ca_pem, &ca_pem, &ocsp, OcspSubject::Cert(&leaf_file)), "revoked");
        // No sign after Revoked (pkid's state guard).
        let sign = json!({"certificate_authority_id": ca.to_string()});
        let refused = n.curl("POST", &format!("{path}/sign"), Some(&admin), Some(sign));
        assert!((400..500).contains(&refused.status), "{refused:?}");

        // The metrics moved with the issuance and the revocation.
        let after = metrics(&n);
        // Two signatures (one certificate deleted), one revocation.
        for (name, moved) in [
            ("pkid_certificates_issued_total", 2.0),
            ("pkid_certificates_revoked_total", 1.0),
        ] {
            assert_eq!(
                by_issuer(&after, name, &ca_name),
                by_issuer(&before, name, &ca_name) + moved,
                "{name} of {ca_name}"
            );
        }
        assert!(after
            .iter()
            .any(|(name, _, _)| name == "pkid_backend_signing_seconds_count"));
        assert!(after.iter().any(|(name, labels, _)| name == "http_requests_total"
            && labels["route"] == "/api/v1/certificate_requests/{id}/sign"
            && labels["code"] == "202"));

        // A revoked certificate stays with its request (pkid's state guard).
        let kept = n.curl("DELETE", &format!("{path}/certificate"), Some(&admin), None);
        assert_refused(&kept, "delete a revoked certificate");
        assert_eq!(n.result(Some(&admin), &path)["status"], "Revoked");

        // Reject another: 202, Rejected; then no sign.
        let other = n.submit(&admin, &openssl_csr(&n.work, "other", "/CN=other.pkid.test", None));
        let other_path = format!("/api/v1/certificate_requests/{other}");
        assert_done(&n.expect(202, "POST", &format!("{other_path}/reject"), Some(&admin), None), "reject");
        assert_eq!(n.result(Some(&admin), &other_path)["status"], "Rejected");

        // Upload a chain signed outside: 201 {message, id}, Active.
        let outside = n.submit(&admin, &openssl_csr(&n.work, "outside", "/CN=outside.pkid.test", None));
        let chain = outside_chain(&n.work, "outside");
        let uploaded = n.expect(
            201,
            "POST",
            &format!("/api/v1/certificate_requests/{outside}/certificate"),
            Some(&admin),
            Some(json!({"certificate": chain})),
        );
        assert_eq!(created_id(&uploaded), outside);
        let got = n.result(Some(&admin), &format!("/api/v1/certificate_requests/{outside}"));
        assert_eq!(got["status"], "Active");
        assert_eq!(pem_chain(got["certificate_chain"].as_str().unwrap()).len(), 2);
        // Revoking a certificate no CA here signed: 422.
        n.expect(422, "POST", &format!("/api/v1/certificate_requests/{outside}/certificate/revoke"), Some(&admin), None);

        // An Ed25519 key (the original signs RSA only): its chain verifies.
        openssl_ok(
            &n.work,
            &[
                "req", "-new", "-newkey", "ed25519", "-nodes", "-keyout", "ed.key", "-out",
                "ed.csr", "-subj", "/O=pkid/CN=ed25519.pkid.test",
                "-addext", "subjectAltName=DNS:ed25519.pkid.test,email:ops@pkid.test,URI:https://pkid.test/ed",
            ],
        );
        let ed = n.submit(&admin, &std::fs::read_to_string(n.work.join("ed.csr")).unwrap());
        let ed_path = format!("/api/v1/certificate_requests/{ed}");
        let sign = json!({"certificate_authority_id": ca.to_string()});
        n.expect(202, "POST", &format!("{ed_path}/sign"), Some(&admin), Some(sign));
        let chain = n.result(Some(&admin), &ed_path)["certificate_chain"].as_str().unwrap().to_owned();
        openssl_verify(&ca_pem, &chain, &n.work.join("verify-ed"));
        let ed_leaf = n.work.join("ed-leaf.pem");
        std::fs::write(&ed_leaf, pem::encode(&pem::Pem::new("CERTIFICATE", pem_chain(&chain).remove(0)))).unwrap();
        let text = openssl_text(&ed_leaf);
        for want in ["ED25519", "DNS:ed25519.pkid.test", "email:ops@pkid.test", "URI:https://pkid.test/ed"] {
            assert!(text.contains(want), "{want:?} not in the Ed25519 leaf:\n{text}");
        }

        // Paging (pkid's): the same shape, a page of it.
        let all = n.result(Some(&admin), "/api/v1/certificate_requests");
        let all = all.as_array().unwrap();
        assert!(all.len() >= 3);
        let page = n.result(Some(&admin), "/api/v1/certificate_requests?page=2&per_page=1");
        assert_eq!(page.as_array().unwrap(), &all[1..2]);
        n.expect(400, "GET", "/api/v1/certificate_requests?page=0", Some(&admin), None);

        // Delete: 202, then 404.
        assert_done(&n.expect(202, "DELETE", &other_path, Some(&admin), None), "delete");
        n.expect(404, "GET", &other_path, Some(&admin), None);

        // /readyz: the database and every backend answer.
        let ready = n.expect(200, "GET", "/readyz", None, None);
        assert_eq!(ready.body["ready"], true, "{:?}", ready.body);

        let hsm_root = cas::lifecycle(&env, &hsm, &n, &admin).await;

        // The audit trail holds this surface's writes with their principal.
        let listing = crate::identity::cli_ok(&env.pkid, &["audit", "list"]).await;
        assert!(
            listing.lines().any(|line| line.contains("user:")
                && line.contains("certificate_request.signed")
                && line.contains(&format!("certificate_request:{id}"))),
            "the signature of request {id} is not in the audit trail:\n{listing}"
        );
        assert!(!listing.contains(super::PASSWORD));

        // /readyz probes the HSM CAs' keys too: ready while the token is there, 503 naming
        // what failed once it is gone.
        let ready = n.expect(200, "GET", "/readyz", None, None);
        let checks = ready.body["checks"].as_object().unwrap().clone();
        assert!(checks.len() >= 4 && checks.values().all(|v| v == "ok"), "{checks:?}");
        hsm.delete_token(TOKEN);
        let unready = n.curl("GET", "/readyz", None, None);
        assert_eq!(unready.status, 503, "{:?}", unready.body);
        assert_eq!(unready.body["ready"], false);
        let failed: Vec<&String> = unready.body["checks"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(_, v)| v.as_str().is_some_and(|v| v.starts_with("failed")))
            .map(|(k, _)| k)
            .collect();
        assert!(
            !failed.is_empty() && failed.iter().all(|k| k.starts_with("backend:")),
            "{:?}",
            unready.body
        );
        assert_eq!(unready.body["checks"]["database"], "ok");
        cas::token_gone(&env, &n, &admin, hsm_root).await;
    })
    .await;
}

//! The client operations on pkid's own authorities, one pkid for the whole scenario: the
//! software CA (`default`) and a SoftHSM2 token (`hsm`, its key certified by the default root).
//! Every call presents an RA operator's TLS client certificate unless it says otherwise.

use reqwest::Method;
use serde_json::{json, Value};

use super::{
    certificate_of, events, issued_count, pem_of, serial_of, Answer, Clients, Csr, Ra, TEST_BOUND,
};
use crate::backends::{hsm_settings, pairs, spki_of, SO_PIN, TOKEN, USER_PIN};
use crate::harness::certs::{crl_listing, openssl_verify, revocation_endpoints};
use crate::harness::environment::{within, Environment};
use crate::harness::process::require_tool;
use crate::harness::softhsm::SoftHsm;

/// The 422 shape: a JSON array of strings, at least one.
fn assert_unprocessable(answer: &Answer, what: &str) {
    assert_eq!(answer.status, 422, "{what}: {answer:?}");
    let reasons = answer
        .body
        .as_array()
        .unwrap_or_else(|| panic!("{what}: {answer:?}"));
    assert!(
        !reasons.is_empty() && reasons.iter().all(Value::is_string),
        "{what}: {answer:?}"
    );
}

/// The 400/404 shape: `{"message": "…"}`.
fn assert_message(answer: &Answer, status: u16, what: &str) {
    assert_eq!(answer.status, status, "{what}: {answer:?}");
    assert!(answer.body["message"].is_string(), "{what}: {answer:?}");
}

/// The leaf with its issuing CA (`/ca/NAME.der`), verified with `openssl verify` against
/// pkid's root.
pub(super) async fn verify_under(
    env: &Environment,
    issuer: &str,
    leaf: &[u8],
    work: &str,
) -> String {
    let http = crate::harness::tls::https_client(&env.pkid.root_pem()).unwrap();
    let url = format!("https://127.0.0.1:{}/ca/{issuer}.der", env.pkid.port());
    let ca = http.get(&url).send().await.unwrap().bytes().await.unwrap();
    let chain = format!("{}{}", pem_of(leaf), pem_of(&ca));
    openssl_verify(&env.pkid.root_pem_path(), &chain, &env.subdir(work));
    chain
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_operations_on_local_authorities() {
    for tool in ["openssl", "softhsm2-util", "pkcs11-tool"] {
        require_tool(tool);
    }
    let hsm = SoftHsm::new();
    hsm.init_token(TOKEN, USER_PIN, SO_PIN);
    let clients = Clients::new();
    let mut settings = hsm_settings(&hsm);
    settings.push(clients.setting());
    let env = Environment::start_with(&pairs(&settings)).await;
    within(TEST_BOUND, async {
        clients.link(&env.pkid).await;
        let ra = Ra::new(&env.pkid, Some(&clients.operator));

        // Authorities: every issuer, with a UUID that stays.
        let listed = ra.get("/v1/authorities").await;
        assert_eq!(listed.status, 200, "{listed:?}");
        let names: Vec<&str> = listed.body.as_array().unwrap().iter().map(|a| a["name"].as_str().unwrap()).collect();
        assert!(names.contains(&"default") && names.contains(&"hsm"), "{listed:?}");
        let default = ra.authority("default").await;
        let hsm_authority = ra.authority("hsm").await;
        assert_eq!(ra.authority("default").await, default, "a stable UUID");
        let one = ra.get(&format!("/v1/authorities/{default}")).await;
        assert_eq!((one.status, one.body["kind"].as_str()), (200, Some("local")), "{one:?}");
        assert_message(&ra.get("/v1/authorities/no-such-authority").await, 404, "unknown authority");

        // Who may: no certificate 401; a read-only user reads, and is refused the rest with the
        // seed's 403 problem.
        let anonymous = Ra::new(&env.pkid, None);
        assert_message(&anonymous.get("/v1/authorities").await, 401, "anonymous");
        let reader = Ra::new(&env.pkid, Some(&clients.reader));
        assert_eq!(reader.get("/v1/authorities").await.status, 200);

        // An RA profile on the software CA.
        let base = ra
            .profile(
                &default,
                "web",
                &[
                    ("validityDays", json!(30)),
                    ("certificateProfile", json!("tls-server-client")),
                    ("allowedSanPatterns", json!([r"[a-z0-9.-]+\.ra\.test"])),
                ],
            )
            .await;
        let profile_uuid = base.rsplit('/').next().unwrap().to_string();
        let shown = ra.get(&format!("/v1/authorities/{default}/raProfiles/{profile_uuid}")).await;
        assert_eq!(shown.status, 200, "{shown:?}");
        assert_eq!(shown.body["name"], "web");
        assert_eq!(shown.body["enabled"], true);
        assert_eq!(shown.body["authorityInstanceName"], "default");
        assert!(shown.body["attributes"].as_array().unwrap().iter().any(|a| a["name"] == "validityDays" && a["content"][0]["data"] == 30), "{shown:?}");
        let all = ra.get("/v1/raProfiles").await;
        assert_eq!(all.body.as_array().map(Vec::len), Some(1), "{all:?}");
        let duplicate = ra.post(&format!("/v1/authorities/{default}/raProfiles"), json!({"name": "web"})).await;
        assert_message(&duplicate, 400, "a second profile named web");
        let forbidden = reader.post(&format!("/v1/authorities/{default}/raProfiles"), json!({"name": "mine"})).await;
        assert_eq!(forbidden.status, 403, "{forbidden:?}");
        assert_eq!(forbidden.content_type, "application/problem+json");
        assert_eq!(forbidden.body["statusCode"], 403);
        assert_eq!(forbidden.body["code"], "ACCESS_DENIED");
        assert!(forbidden.body["message"].is_string());

        // Attributes: definitions, validation (200 empty, or 422 with every reason).
        let attributes = ra.get(&format!("{base}/attributes/issue")).await;
        assert_eq!(attributes.status, 200, "{attributes:?}");
        let validity = &attributes.body[0];
        assert_eq!(validity["name"], "validityDays");
        assert_eq!(validity["type"], "data");
        assert_eq!(validity["contentType"], "integer");
        assert_eq!(validity["content"][0]["data"], 30);
        assert_eq!(validity["properties"]["required"], false);
        let valid = ra.post(&format!("{base}/attributes/issue/validate"), json!([{"name": "validityDays", "content": [{"data": 7}]}])).await;
        assert_eq!((valid.status, valid.body.clone()), (200, Value::Null), "{valid:?}");
        let invalid = ra
            .post(
                &format!("{base}/attributes/issue/validate"),
                json!([{"name": "validityDays", "content": [{"data": 365}]}]),
            )
            .await;
        assert_unprocessable(&invalid, "a validity beyond the profile's");
        let unknown = ra.post(&format!("{base}/attributes/revoke/validate"), json!([{"name": "colour", "content": [{"data": "red"}]}, {"name": "comment", "content": [{"data": 5}]}])).await;
        assert_unprocessable(&unknown, "an unknown attribute and a wrong type");
        assert_eq!(unknown.body.as_array().unwrap().len(), 2, "{unknown:?}");
        let revoke_attributes = ra.get(&format!("{base}/attributes/revoke")).await;
        assert_eq!(revoke_attributes.body[0]["name"], "comment", "{revoke_attributes:?}");

        // Issue: the certificate is the CSR's key and names, under pkid's root.
        let first = Csr::new(&["www.ra.test", "api.ra.test"]);
        let (uuid, leaf) = ra.issued(&base, &first).await;
        assert_eq!(spki_of(&leaf), first.spki());
        let chain = verify_under(&env, "default", &leaf, "verify-issue").await;
        crate::harness::certs::assert_sans(&chain, &["www.ra.test", "api.ra.test"]);
        let record = ra.get(&format!("{base}/certificates/{uuid}")).await;
        assert_eq!(record.status, 200, "{record:?}");
        assert_eq!(record.body["state"], "issued");
        assert_eq!(record.body["operation"]["type"], "issue");
        assert_eq!(record.body["operation"]["status"], "succeeded");
        assert_eq!(record.body["serialNumber"], serial_of(&leaf));
        assert_eq!(events(&record.body), ["issue/running", "issued/succeeded"]);

        // Refused before anything is issued: a name outside the policy, CRMF, no request, a
        // longer validity than the profile's.
        let before = issued_count(&env, "default").await;
        assert_unprocessable(&ra.issue(&base, &Csr::new(&["www.elsewhere.test"])).await, "a name outside the profile");
        let crmf = ra.post(&format!("{base}/certificates"), json!({"request": first.base64(), "format": "crmf", "attributes": []})).await;
        assert_unprocessable(&crmf, "a CRMF request");
        assert_unprocessable(&ra.post(&format!("{base}/certificates"), json!({"attributes": []})).await, "no request");
        let long = ra.post(&format!("{base}/certificates"), json!({"request": Csr::new(&["long.ra.test"]).base64(), "attributes": [{"name": "validityDays", "content": [{"data": 31}]}]})).await;
        assert_unprocessable(&long, "a validity beyond the profile's");
        assert_unprocessable(&ra.post(&format!("{base}/certificates"), json!({"request": "bm90IGEgQ1NS", "attributes": []})).await, "not a CSR");
        assert_message(&ra.post(&format!("{base}/certificates"), json!({"request": 5})).await, 400, "a body that is not the DTO");
        assert_eq!(issued_count(&env, "default").await, before, "nothing issued");

        // Renew keeps the key (the stored CSR again, or an uploaded one over the same key) and
        // points to its source; a CSR over another key is refused.
        let renewed = ra.post(&format!("{base}/certificates/{uuid}/renew"), json!({})).await;
        assert_eq!(renewed.status, 200, "{renewed:?}");
        let (renewed_uuid, renewed_leaf) = certificate_of(&renewed);
        assert_ne!(renewed_uuid, uuid);
        assert_eq!(spki_of(&renewed_leaf), spki_of(&leaf), "renew keeps the key");
        assert_ne!(serial_of(&renewed_leaf), serial_of(&leaf));
        let renewed_record = ra.get(&format!("{base}/certificates/{renewed_uuid}")).await;
        assert_eq!(renewed_record.body["sourceCertificateUuid"], uuid.as_str());
        assert_eq!(renewed_record.body["operation"]["type"], "renew");
        let same_key = Csr::with_key(&["www.ra.test", "api.ra.test"], rcgen::KeyPair::from_pem(&first.key.serialize_pem()).unwrap());
        let uploaded = ra.post(&format!("{base}/certificates/{uuid}/renew"), json!({"request": same_key.base64()})).await;
        assert_eq!(uploaded.status, 200, "{uploaded:?}");
        assert_eq!(spki_of(&certificate_of(&uploaded).1), first.spki());
        let other_key = ra.post(&format!("{base}/certificates/{uuid}/renew"), json!({"request": Csr::new(&["www.ra.test"]).base64()})).await;
        assert_unprocessable(&other_key, "a renewal with another key");

        // Rekey: a new key for the same subject; the old key, or another subject, refused.
        let rekey_csr = Csr::new(&["www.ra.test", "api.ra.test"]);
        let rekeyed = ra.post(&format!("{base}/certificates/{uuid}/rekey"), json!({"request": rekey_csr.base64()})).await;
        assert_eq!(rekeyed.status, 200, "{rekeyed:?}");
        let (rekeyed_uuid, rekeyed_leaf) = certificate_of(&rekeyed);
        assert_eq!(spki_of(&rekeyed_leaf), rekey_csr.spki(), "rekey changes the key");
        assert_ne!(spki_of(&rekeyed_leaf), spki_of(&leaf));
        assert_eq!(ra.get(&format!("{base}/certificates/{rekeyed_uuid}")).await.body["sourceCertificateUuid"], uuid.as_str());
        assert_unprocessable(&ra.post(&format!("{base}/certificates/{uuid}/rekey"), json!({"request": same_key.base64()})).await, "a rekey with the old key");
        assert_unprocessable(&ra.post(&format!("{base}/certificates/{uuid}/rekey"), json!({"request": Csr::new(&["other.ra.test"]).base64()})).await, "a rekey for another subject");

        // Revoke (204): the serial is on the CRL with the reason; again is refused; a reason
        // outside the seed's list is 400.
        let bad_reason = ra.post(&format!("{base}/certificates/{renewed_uuid}/revoke"), json!({"reason": "removeFromCRL"})).await;
        assert_message(&bad_reason, 400, "removeFromCRL");
        let revoked = ra.post(&format!("{base}/certificates/{renewed_uuid}/revoke"), json!({"reason": "CACOMPROMISE", "attributes": [{"name": "comment", "content": [{"data": "suite"}]}], "destroyKey": false})).await;
        assert_eq!((revoked.status, revoked.body.clone()), (204, Value::Null), "{revoked:?}");
        let renewed_chain = verify_under(&env, "default", &renewed_leaf, "verify-renewed").await;
        let (crl_url, _) = revocation_endpoints(&renewed_chain);
        let (_, reason) = crl_listing(&crl_url, &renewed_chain).await;
        assert_eq!(reason, Some(x509_parser::x509::ReasonCode::CACompromise));
        let record = ra.get(&format!("{base}/certificates/{renewed_uuid}")).await;
        assert_eq!(record.body["state"], "revoked");
        assert!(events(&record.body).contains(&"revoked/succeeded".to_string()), "{record:?}");
        assert_message(&ra.post(&format!("{base}/certificates/{renewed_uuid}/revoke"), json!({})).await, 400, "revoked twice");
        assert_message(&ra.post(&format!("{base}/certificates/{renewed_uuid}/renew"), json!({})).await, 400, "renewing a revoked certificate");

        // A disabled profile, or one that is not the certificate's, refuses every operation;
        // nothing is issued.
        let before = issued_count(&env, "default").await;
        let other = ra.profile(&default, "other", &[]).await;
        let renew_elsewhere = ra.post(&format!("{other}/certificates/{uuid}/renew"), json!({})).await;
        assert_message(&renew_elsewhere, 400, "renewing through another profile");
        assert_message(&ra.post(&format!("{other}/certificates/{uuid}/revoke"), json!({})).await, 400, "revoking through another profile");
        let wrong_authority = base.replace(&default, &hsm_authority);
        assert_message(&ra.issue(&wrong_authority, &Csr::new(&["x.ra.test"])).await, 404, "a profile of another authority");
        let disable = ra.call(Method::PATCH, &format!("/v1/authorities/{default}/raProfiles/{profile_uuid}/disable"), None).await;
        assert_eq!(disable.status, 204, "{disable:?}");
        assert_message(&ra.issue(&base, &Csr::new(&["off.ra.test"])).await, 400, "issue under a disabled profile");
        assert_message(&ra.post(&format!("{base}/certificates/{uuid}/renew"), json!({})).await, 400, "renew under a disabled profile");
        assert_message(&ra.post(&format!("{base}/certificates/{uuid}/revoke"), json!({})).await, 400, "revoke under a disabled profile");
        assert_eq!(issued_count(&env, "default").await, before, "nothing issued");
        let enable = ra.call(Method::PATCH, &format!("/v1/authorities/{default}/raProfiles/{profile_uuid}/enable"), None).await;
        assert_eq!(enable.status, 204, "{enable:?}");
        let delete = ra.call(Method::DELETE, &format!("/v1/authorities/{default}/raProfiles/{profile_uuid}"), None).await;
        assert_message(&delete, 400, "deleting a profile that holds certificates");

        // A requestor sees only its own records; the read-only user operates nothing.
        let requestor = Ra::new(&env.pkid, Some(&clients.requestor));
        let (own, _) = requestor.issued(&base, &Csr::new(&["own.ra.test"])).await;
        assert_eq!(requestor.get(&format!("{base}/certificates/{own}")).await.status, 200);
        assert_message(&requestor.get(&format!("{base}/certificates/{uuid}")).await, 404, "another's record");
        assert_eq!(reader.issue(&base, &Csr::new(&["ro.ra.test"])).await.status, 403);

        // Approval: the request waits, answered "" + uuid; approved, it is issued by issue-New.
        let approving = ra.profile(&default, "approved", &[("approvalRequired", json!(true))]).await;
        let waiting = ra.issue(&approving, &Csr::new(&["approve.ra.test"])).await;
        assert_eq!(waiting.status, 200, "{waiting:?}");
        assert_eq!(waiting.body["certificateData"], "");
        let waiting_uuid = waiting.body["uuid"].as_str().unwrap().to_string();
        assert_eq!(ra.get(&format!("{approving}/certificates/{waiting_uuid}")).await.body["state"], "pending_approval");
        assert_message(&ra.post(&format!("{approving}/certificates/{waiting_uuid}/issue"), json!({})).await, 400, "issue-New before approval");
        assert_eq!(requestor.post(&format!("{approving}/certificates/{waiting_uuid}/approve"), json!({})).await.status, 403);
        assert_eq!(ra.post(&format!("{approving}/certificates/{waiting_uuid}/approve"), json!({})).await.status, 204);
        assert_eq!(ra.get(&format!("{approving}/certificates/{waiting_uuid}")).await.body["state"], "requested");
        let issued_new = ra.post(&format!("{approving}/certificates/{waiting_uuid}/issue"), json!({})).await;
        assert_eq!(issued_new.status, 200, "{issued_new:?}");
        assert_eq!(certificate_of(&issued_new).0, waiting_uuid);
        let rejected = ra.issue(&approving, &Csr::new(&["reject.ra.test"])).await;
        let rejected_uuid = rejected.body["uuid"].as_str().unwrap().to_string();
        assert_eq!(ra.post(&format!("{approving}/certificates/{rejected_uuid}/reject"), json!({})).await.status, 204);
        assert_eq!(ra.get(&format!("{approving}/certificates/{rejected_uuid}")).await.body["state"], "rejected");

        // The SoftHSM authority: issued, renewed, rekeyed and revoked through the token key.
        let hsm_base = ra.profile(&hsm_authority, "hsm-web", &[]).await;
        let cycle = ra.cycle(&hsm_base, "hsm.ra.test", "keyCompromise").await;
        verify_under(&env, "hsm", &cycle.leaf, "verify-hsm").await;
        let hsm_chain = verify_under(&env, "hsm", &cycle.rekeyed, "verify-hsm-rekeyed").await;
        let (crl_url, _) = revocation_endpoints(&hsm_chain);
        let (_, reason) = crl_listing(&crl_url, &hsm_chain).await;
        assert_eq!(reason, Some(x509_parser::x509::ReasonCode::KeyCompromise));
    })
    .await;
}

//! The v1 client operations on the software CA: end entities (add, list, get, edit by `POST`,
//! reset password, delete), issue for an end entity (its password checked, the CSR's subject
//! its subject DN, once per enrolment), revoke by serial number and issuer DN, and `DELETE`
//! revoking the entity's certificates before it goes.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use reqwest::Method;
use serde_json::{json, Value};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::local::verify_under;
use super::{issued_count, Answer, Clients, Ra, TEST_BOUND};
use crate::harness::certs::{crl_listing, revocation_endpoints};
use crate::harness::environment::{within, Environment};
use crate::harness::process::require_tool;

const PASSWORD: &str = "alice-enrolment-1";

/// A CSR for `CN=<cn>, O=pkid conformance` (the CN also as a DNS name).
fn csr_for(cn: &str) -> String {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(vec![cn.to_string()]).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "pkid conformance");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    STANDARD.encode(params.serialize_request(&key).unwrap().der())
}

fn leaf_of(answer: &Answer) -> Vec<u8> {
    assert_eq!(answer.status, 200, "{answer:?}");
    let data = answer.body["certificateData"].as_str().unwrap();
    STANDARD.decode(data).unwrap()
}

fn assert_400(answer: &Answer, what: &str) {
    assert_eq!(answer.status, 400, "{what}: {answer:?}");
    assert!(answer.body["message"].is_string(), "{what}: {answer:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_entities_issue_and_revoke() {
    require_tool("openssl");
    let clients = Clients::new();
    let (key, value) = clients.setting();
    let env = Environment::start_with(&[(key.as_str(), value.as_str())]).await;
    within(TEST_BOUND, async {
        clients.link(&env.pkid).await;
        let ra = Ra::new(&env.pkid, Some(&clients.operator));
        let default = ra.authority("default").await;
        ra.profile(&default, "ee", &[]).await;
        let v1 = "/v1/operations/ee";
        let entity = json!({
            "raProfile": {"name": "ee"},
            "username": "alice",
            "password": PASSWORD,
            "subjectDN": "cn=alice.ee.test, o=pkid conformance",
            "subjectAltName": "dNSName=alice.ee.test",
            "email": "alice@ee.test",
            "extensionData": [{"name": "department", "value": "R&D"}]
        });
        let added = ra.post(&format!("{v1}/endentity"), entity.clone()).await;
        assert_eq!((added.status, added.body.clone()), (200, Value::Null), "{added:?}");
        assert_400(&ra.post(&format!("{v1}/endentity"), entity).await, "the same username again");
        let listed = ra.get(&format!("{v1}/endentity")).await;
        assert_eq!(listed.status, 200, "{listed:?}");
        let alice = &listed.body[0];
        assert_eq!(alice["username"], "alice");
        assert_eq!(alice["subjectDN"], "CN=alice.ee.test,O=pkid conformance");
        assert_eq!(alice["status"], "NEW");
        assert_eq!(alice["extensionData"][0]["value"], "R&D");
        assert!(alice.get("password").is_none(), "no password shown: {alice}");
        let got = ra.get(&format!("{v1}/endentity/alice")).await;
        assert_eq!((got.status, &got.body["email"]), (200, &json!("alice@ee.test")));
        assert_eq!(ra.get(&format!("{v1}/endentity/nobody")).await.status, 404);
        assert_eq!(ra.get("/v1/operations/no-such-profile/endentity").await.status, 404);

        // Issue: the wrong password, an unknown user, another subject — refused, nothing issued.
        let issue = |username: &str, password: &str, cn: &str| {
            json!({"username": username, "password": password, "pkcs10": csr_for(cn)})
        };
        let before = issued_count(&env, "default").await;
        let path = format!("{v1}/certificate/issue");
        assert_400(&ra.post(&path, issue("alice", "not-her-password", "alice.ee.test")).await, "a wrong password");
        assert_400(&ra.post(&path, issue("mallory", PASSWORD, "alice.ee.test")).await, "an unknown user");
        assert_400(&ra.post(&path, issue("alice", PASSWORD, "bob.ee.test")).await, "another subject");
        assert_eq!(issued_count(&env, "default").await, before, "nothing issued");
        let first = leaf_of(&ra.post(&path, issue("alice", PASSWORD, "alice.ee.test")).await);
        let (_, cert) = X509Certificate::from_der(&first).unwrap();
        let serial = cert.raw_serial_as_string();
        let issuer_dn = cert.issuer().to_string();
        assert_eq!(ra.get(&format!("{v1}/endentity/alice")).await.body["status"], "GENERATED");
        assert_400(&ra.post(&path, issue("alice", PASSWORD, "alice.ee.test")).await, "a second enrolment");

        // Edited back to NEW, alice enrols again.
        let edit = json!({"raProfile": {}, "password": PASSWORD, "subjectDN": "CN=alice.ee.test,O=pkid conformance", "status": "NEW"});
        let edited = ra.post(&format!("{v1}/endentity/alice"), edit).await;
        assert_eq!(edited.status, 200, "{edited:?}");
        let second = leaf_of(&ra.post(&path, issue("alice", PASSWORD, "alice.ee.test")).await);

        // Revoke by serial and issuer DN (as openssl prints them); a wrong issuer is refused.
        let revoke = format!("{v1}/certificate/revoke");
        let wrong = ra.post(&revoke, json!({"certificateSN": serial, "issuerDN": "CN=Someone Else", "reason": "keyCompromise"})).await;
        assert_400(&wrong, "another issuer");
        let revoked = ra.post(&revoke, json!({"certificateSN": serial, "issuerDN": issuer_dn, "reason": "keyCompromise"})).await;
        assert_eq!((revoked.status, revoked.body.clone()), (200, Value::Null), "{revoked:?}");
        let chain = verify_under(&env, "default", &first, "v1-first").await;
        let (crl_url, _) = revocation_endpoints(&chain);
        crl_listing(&crl_url, &chain).await;

        // A new password: the old one no longer enrols, the new one does (status NEW again).
        let reset = ra.call(Method::PUT, &format!("{v1}/endentity/alice/resetPassword"), Some(json!({"password": "alice-enrolment-2"}))).await;
        assert_eq!(reset.status, 200, "{reset:?}");
        assert_400(&ra.post(&path, issue("alice", PASSWORD, "alice.ee.test")).await, "the old password");
        let third = leaf_of(&ra.post(&path, issue("alice", "alice-enrolment-2", "alice.ee.test")).await);

        // DELETE revokes what alice still holds, then removes her.
        let deleted = ra.call(Method::DELETE, &format!("{v1}/endentity/alice"), None).await;
        assert_eq!(deleted.status, 200, "{deleted:?}");
        for (leaf, work) in [(&second, "v1-second"), (&third, "v1-third")] {
            let chain = verify_under(&env, "default", leaf, work).await;
            crl_listing(&crl_url, &chain).await;
        }
        assert_eq!(ra.get(&format!("{v1}/endentity/alice")).await.status, 404);

        // A disabled profile serves no v1 operation.
        let profiles = ra.get("/v1/raProfiles").await;
        let uuid = profiles.body[0]["uuid"].as_str().unwrap();
        let disabled = ra.call(Method::PATCH, &format!("/v1/authorities/{default}/raProfiles/{uuid}/disable"), None).await;
        assert_eq!(disabled.status, 204);
        assert_400(&ra.get(&format!("{v1}/endentity")).await, "a disabled profile");
    })
    .await;
}

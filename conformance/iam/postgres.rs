//! The IAM surface's writes and list on PostgreSQL, where the store runs other SQL paths (one
//! transaction per write, the server's `ON CONFLICT`, `LIMIT`/`OFFSET` binds): a request
//! approved (the link written with it) and one rejected, transitions refused, the list filtered
//! and paged, a proxy stored twice (the second replacing the first) and one generated from it.

use serde_json::json;

use super::links::{by_certificate, request_by_dn};
use super::{openssl, World, TEST_CA};
use crate::identity::{client_from, login_token};

pub(super) async fn scenario(w: &World<'_>) {
    let http = client_from(w.pkid, "127.0.0.1");
    let test0 = login_token(&http, w.pkid, "test0").await;
    let admin = login_token(&http, w.pkid, "admin").await;

    let linked = request_by_dn(w, &test0, "CN=test0,O=IGI,C=IT", TEST_CA);
    assert_eq!(linked.status, 200, "{}", linked.text);
    let refused = request_by_dn(w, &test0, "CN=test0,O=IGI,C=IT", TEST_CA);
    assert_eq!(
        refused.status, 400,
        "a second PENDING request: {}",
        refused.text
    );
    let other = request_by_dn(w, &test0, "CN=someone else,O=IGI,C=IT", TEST_CA);
    assert_eq!(other.status, 200, "{}", other.text);
    let (linked, other) = (
        linked.body["uuid"].as_str().unwrap().to_owned(),
        other.body["uuid"].as_str().unwrap().to_owned(),
    );
    let post = |path: String| w.curl(Some(&admin), &["-X", "POST"], &path);

    let approved = post(format!("/iam/cert_link_requests/{linked}/approve"));
    assert_eq!(approved.body["status"], "APPROVED", "{}", approved.text);
    assert_eq!(by_certificate(w, "test0"), Ok("test0".into()));
    let again = post(format!("/iam/cert_link_requests/{linked}/approve"));
    assert_eq!(
        again.body,
        json!({"error": "Invalid certLink request transition: APPROVED -> APPROVED"})
    );
    let rejected = post(format!(
        "/iam/cert_link_requests/{other}/reject?motivation=not%20yours"
    ));
    assert_eq!(
        rejected.body["motivation"], "not yours",
        "{}",
        rejected.text
    );
    // A linked certificate is not asked for again.
    let linked_again = request_by_dn(w, &test0, "CN=test0,O=IGI,C=IT", TEST_CA);
    assert_eq!(linked_again.status, 400, "{}", linked_again.text);

    let list = |query: &str| {
        w.curl(
            Some(&admin),
            &[],
            &format!("/iam/cert_link_requests{query}"),
        )
    };
    let all = list("?count=1&startIndex=2");
    assert_eq!(
        (
            &all.body["totalResults"],
            &all.body["itemsPerPage"],
            &all.body["startIndex"]
        ),
        (&json!(2), &json!(1), &json!(2)),
        "{}",
        all.text
    );
    assert_eq!(all.body["Resources"][0]["subjectDn"], "CN=test0,O=IGI,C=IT");
    let filtered =
        list("?username=test0&status=REJECTED&subjectDn=CN%3Dsomeone%20else,O%3DIGI,C%3DIT");
    assert_eq!(filtered.body["totalResults"], 1, "{}", filtered.text);

    // A proxy stored, then replaced; a proxy made from it verifies.
    let certificates = w.dir.join("certificates");
    for _ in 0..2 {
        let out = w.path("pg-proxy.pem");
        let (ok, text) = crate::harness::process::run_tool(
            "voms-proxy-init",
            &[
                "-cert",
                &w.path("test0.pem"),
                "-key",
                &w.path("test0.key"),
                "-out",
                &out,
            ],
            &[("X509_CERT_DIR", &certificates)],
        );
        assert!(ok, "{text}");
        let chain = std::fs::read_to_string(&out).unwrap();
        let stored = w.json(
            Some(&test0),
            "PUT",
            "/iam/account/me/proxycert",
            &json!({ "certificate_chain": chain }),
        );
        assert_eq!(stored.status, 200, "{}", stored.text);
    }
    let bt = w.token("test0", "proxy:generate").await;
    let (id, secret) = (
        format!("client_id={}", w.client_id),
        format!("client_secret={}", w.client_secret),
    );
    let made = w.curl(
        Some(&bt),
        &[
            "-X",
            "POST",
            "-d",
            &id,
            "-d",
            &secret,
            "-d",
            "lifetimeSecs=600",
        ],
        "/iam/proxycert",
    );
    assert_eq!(made.status, 200, "{}", made.text);
    // Made from the second upload: its issuer is the replacing proxy's subject.
    let replacing = openssl(
        &w.dir,
        &[
            "x509",
            "-in",
            "pg-proxy.pem",
            "-noout",
            "-subject",
            "-nameopt",
            "RFC2253",
        ],
    );
    let issuer = made.body["issuer"].as_str().unwrap();
    assert!(replacing.contains(issuer), "{issuer} is not {replacing}");
    std::fs::write(
        w.dir.join("pg-generated.pem"),
        made.body["certificate_chain"].as_str().unwrap(),
    )
    .unwrap();
    let verified = openssl(
        &w.dir,
        &[
            "verify",
            "-allow_proxy_certs",
            "-CAfile",
            "testca.pem",
            "-untrusted",
            "pg-generated.pem",
            "pg-generated.pem",
        ],
    );
    assert!(verified.contains(": OK"), "{verified}");
}

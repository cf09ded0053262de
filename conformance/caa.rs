//! CAA (RFC 8659) with the RFC 8657 parameters, as pkid's validator sees it through the test's
//! DNS server: an `issue` record naming another CA makes the authorization invalid with
//! `urn:ietf:params:acme:error:caa`; one naming pkid (`acme.caa_identities`, default
//! `pkid.invalid`) lets it issue; `accounturi` binds the permission to one ACME account and
//! `validationmethods` to the listed challenge types; a failed CAA lookup (SERVFAIL) refuses.

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::certs::check_issued;
use crate::harness::client::{csr_der, AcmeClient};
use crate::harness::environment::{within, Environment};
use crate::harness::http01::Http01Responder;

const TEST_BOUND: Duration = Duration::from_secs(120);
const CAA_PROBLEM: &str = "urn:ietf:params:acme:error:caa";

/// Orders `name`, answers its http-01 challenge, and waits for the authorization to settle;
/// returns (the order URL, the final authorization).
async fn validate(client: &AcmeClient, responder: &Http01Responder, name: &str) -> (String, Value) {
    let (order, authz_url, challenge) = client.order_one(name, "http-01").await;
    let token = challenge["token"].as_str().expect("challenge token");
    responder.serve(token, &client.key.key_authorization(token));
    let challenge_url = challenge["url"].as_str().expect("challenge URL");
    let answer = client.post(challenge_url, Some(&json!({}))).await;
    assert_eq!(
        answer.status,
        200,
        "respond to {challenge_url}: {}",
        answer.describe()
    );
    let settled = client
        .poll_until(&authz_url, &["valid", "invalid"], &[])
        .await;
    (order.url, settled)
}

/// The authorization is invalid and its challenge carries a `caa` problem.
fn assert_caa_refusal(name: &str, authz: &Value) {
    assert_eq!(authz["status"], "invalid", "{name}: authorization {authz}");
    let problems: Vec<&str> = authz["challenges"]
        .as_array()
        .map(|all| {
            all.iter()
                .filter_map(|c| c["error"]["type"].as_str())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        problems.contains(&CAA_PROBLEM),
        "{name}: expected a {CAA_PROBLEM} challenge error, got {problems:?} in {authz}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caa_issue_records_decide_authorization() {
    let env = Environment::start().await;
    within(TEST_BOUND, async {
        let responder = Http01Responder::bind(env.http01_port).await;
        let mut client = AcmeClient::new(&env.pkid.directory_url(), &env.pkid.root_pem()).await;
        // The directory tells clients what their CAA records must name (RFC 8555 §7.1.1).
        assert_eq!(
            client.directory["meta"]["caaIdentities"],
            json!(["pkid.invalid"]),
            "directory meta: {}",
            client.directory
        );
        let account = client.register().await;
        let mut other = AcmeClient::new(&env.pkid.directory_url(), &env.pkid.root_pem()).await;
        let other_account = other.register().await;

        // Another CA only.
        env.dns
            .add_caa("caa-other.pkid.test", &[("issue", "other-ca.example")])
            .await;
        let (_, authz) = validate(&client, &responder, "caa-other.pkid.test").await;
        assert_caa_refusal("caa-other.pkid.test", &authz);

        // pkid, bound to another account (RFC 8657 §3).
        let bound_elsewhere = format!("pkid.invalid; accounturi={other_account}");
        env.dns
            .add_caa("caa-acct.pkid.test", &[("issue", &bound_elsewhere)])
            .await;
        let (_, authz) = validate(&client, &responder, "caa-acct.pkid.test").await;
        assert_caa_refusal("caa-acct.pkid.test", &authz);

        // pkid, only through dns-01 (RFC 8657 §4) while http-01 is answered.
        env.dns
            .add_caa(
                "caa-dns-only.pkid.test",
                &[("issue", "pkid.invalid; validationmethods=dns-01")],
            )
            .await;
        let (_, authz) = validate(&client, &responder, "caa-dns-only.pkid.test").await;
        assert_caa_refusal("caa-dns-only.pkid.test", &authz);

        // A CAA lookup that fails (SERVFAIL at the parent the RFC 8659 §3 walk climbs to) is
        // never permission, though the name itself resolves and answers http-01.
        env.dns
            .manage("/set-servfail", json!({"host": "caa-broken.pkid.test"}))
            .await;
        let (_, authz) = validate(&client, &responder, "www.caa-broken.pkid.test").await;
        assert_caa_refusal("www.caa-broken.pkid.test", &authz);

        // pkid, bound to this account: issues.
        let bound_here = format!("pkid.invalid; accounturi={account}");
        env.dns
            .add_caa("caa-acct-ok.pkid.test", &[("issue", &bound_here)])
            .await;
        let (_, authz) = validate(&client, &responder, "caa-acct-ok.pkid.test").await;
        assert_eq!(
            authz["status"], "valid",
            "accounturi of this account: {authz}"
        );

        // pkid plainly, next to another CA: issues, and the certificate checks out.
        let name = "caa-ok.pkid.test";
        env.dns
            .add_caa(
                name,
                &[("issue", "other-ca.example"), ("issue", "pkid.invalid")],
            )
            .await;
        let (order_url, authz) = validate(&client, &responder, name).await;
        assert_eq!(authz["status"], "valid", "CAA naming pkid: {authz}");
        let order = client.fetch_order(&order_url).await;
        let order = client.wait_ready(&order).await;
        let answer = client.finalize(&order, &csr_der(&[name])).await;
        assert_eq!(answer.status, 200, "finalize: {}", answer.describe());
        let issued = client.wait_valid(&order).await;
        let url = issued
            .certificate_url()
            .unwrap_or_else(|| panic!("valid order without certificate: {}", issued.body));
        let chain = client.download_certificate(&url).await;
        check_issued(
            &env.pkid.root_pem_path(),
            &chain,
            &[name],
            &env.subdir("checks"),
        );
    })
    .await;
}

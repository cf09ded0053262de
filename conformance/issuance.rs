//! Issuance safety, driven by the test client: one order issues at most one certificate however
//! its finalization races (RFC 8555 §7.4: finalize only from `ready`, else `orderNotReady`), and an
//! order survives a server stop (SIGTERM) or crash (SIGKILL) between authorization and
//! finalization.

use std::time::Duration;

use crate::harness::acme::finalize_payload;
use crate::harness::certs::{check_issued, pem_chain};
use crate::harness::client::{csr_der, AcmeClient, Response};
use crate::harness::environment::{within, Environment};
use crate::harness::http01::Http01Responder;

const TEST_BOUND: Duration = Duration::from_secs(120);

/// RFC 8555 §7.5.1 with `acme.challenge_wait_ms`: the answer to a challenge POST waits for a
/// quick validation, so a client on the same network learns the outcome without polling, a
/// failure with its error included; with no wait, the answer is `processing` with Retry-After
/// and the client polls, as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_challenge_is_answered_once_a_quick_validation_ends() {
    let env = Environment::start().await;
    within(TEST_BOUND, async {
        let responder = Http01Responder::bind(env.http01_port).await;
        let mut client = AcmeClient::new(&env.pkid.directory_url(), &env.pkid.root_pem()).await;
        client.register().await;

        // Served: the answer is the valid challenge, and the authorization is valid already.
        let (authz_url, answer) = answer_http01(&client, "quick.pkid.test", Some(&responder)).await;
        let body = answer.json();
        assert_eq!(body["status"], "valid", "the challenge answer: {body}");
        assert!(
            body["validated"].is_string(),
            "valid without a time: {body}"
        );
        assert!(
            answer.header("retry-after").is_none(),
            "{}",
            answer.describe()
        );
        assert_eq!(client.fetch(&authz_url).await["status"], "valid");

        // Not served: the answer is the invalid challenge with the validation's error.
        let (authz_url, answer) = answer_http01(&client, "unserved.pkid.test", None).await;
        let body = answer.json();
        assert_eq!(body["status"], "invalid", "the challenge answer: {body}");
        assert_eq!(
            body["error"]["type"], "urn:ietf:params:acme:error:unauthorized",
            "the challenge answer: {body}"
        );
        assert_eq!(client.fetch(&authz_url).await["status"], "invalid");
    })
    .await;

    let env = Environment::start_with(&[("PKID_ACME__CHALLENGE_WAIT_MS", "0")]).await;
    within(TEST_BOUND, async {
        let responder = Http01Responder::bind(env.http01_port).await;
        let mut client = AcmeClient::new(&env.pkid.directory_url(), &env.pkid.root_pem()).await;
        client.register().await;
        let (authz_url, answer) =
            answer_http01(&client, "polled.pkid.test", Some(&responder)).await;
        assert_eq!(
            answer.json()["status"],
            "processing",
            "{}",
            answer.describe()
        );
        assert_eq!(answer.header("retry-after").as_deref(), Some("1"));
        client
            .poll_until(&authz_url, &["valid"], &["invalid"])
            .await;
    })
    .await;
}

/// Orders `name`, serves its http-01 answer through `responder` (none: leaves it unserved) and
/// POSTs to the challenge; the authorization's URL and the challenge POST's 200 answer.
async fn answer_http01(
    client: &AcmeClient,
    name: &str,
    responder: Option<&Http01Responder>,
) -> (String, Response) {
    let (_, authz_url, challenge) = client.order_one(name, "http-01").await;
    if let Some(responder) = responder {
        let token = challenge["token"].as_str().unwrap();
        responder.serve(token, &client.key.key_authorization(token));
    }
    let answer = client
        .post(
            challenge["url"].as_str().unwrap(),
            Some(&serde_json::json!({})),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.describe());
    (authz_url, answer)
}

/// Two finalize requests for one ready order, each with its own fresh nonce, sent at once.
/// Acceptable: each answer is 200 with the order (processing or valid) or 403 `orderNotReady`;
/// at least one is 200; every certificate URL seen is the same one; it is stable on re-fetch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_finalize_issues_one_certificate() {
    let env = Environment::start().await;
    within(TEST_BOUND, async {
        let responder = Http01Responder::bind(env.http01_port).await;
        let mut client = AcmeClient::new(&env.pkid.directory_url(), &env.pkid.root_pem()).await;
        let names = ["d.pkid.test"];
        let order = client.ready_order(&names, &responder).await;

        let csr = csr_der(&names);
        let payload = finalize_payload(&csr);
        let url = order.finalize_url();
        let first = client.jws(&url, Some(&payload), &client.new_nonce().await);
        let second = client.jws(&url, Some(&payload), &client.new_nonce().await);
        let (first, second) = tokio::join!(
            client.post_raw(&url, &first, None),
            client.post_raw(&url, &second, None)
        );

        // Shown with --nocapture: which way the race went.
        eprintln!(
            "concurrent finalize answers:\n  {}\n  {}",
            first.describe(),
            second.describe()
        );
        let mut certificate_urls = Vec::new();
        let mut accepted = 0;
        for answer in [&first, &second] {
            match answer.status {
                200 => {
                    accepted += 1;
                    check_finalize_accepted(answer, &order.url);
                    certificate_urls
                        .extend(answer.json()["certificate"].as_str().map(str::to_owned));
                }
                403 => assert_eq!(
                    answer.problem_type().as_deref(),
                    Some("urn:ietf:params:acme:error:orderNotReady"),
                    "a refused concurrent finalize: {}",
                    answer.describe()
                ),
                _ => panic!("unexpected finalize answer: {}", answer.describe()),
            }
        }
        assert!(
            accepted >= 1,
            "neither finalize was accepted:\n{}\n{}",
            first.describe(),
            second.describe()
        );

        let issued = client.wait_valid(&order).await;
        let certificate_url = issued
            .certificate_url()
            .unwrap_or_else(|| panic!("valid order without certificate: {}", issued.body));
        for seen in &certificate_urls {
            assert_eq!(seen, &certificate_url, "two certificate URLs for one order");
        }
        for _ in 0..2 {
            let again = client.fetch_order(&order.url).await;
            assert_eq!(
                again.certificate_url().as_deref(),
                Some(certificate_url.as_str()),
                "certificate URL changed on re-fetch: {}",
                again.body
            );
        }

        let chain = client.download_certificate(&certificate_url).await;
        let again = client.download_certificate(&certificate_url).await;
        assert_eq!(
            pem_chain(&chain)[0],
            pem_chain(&again)[0],
            "same leaf on re-download"
        );
        check_issued(
            &env.pkid.root_pem_path(),
            &chain,
            &names,
            &env.subdir("checks"),
        );

        // pkid's stderr goes to a file here: plain lines, no terminal colour codes.
        let logs = env.pkid.logs();
        assert!(
            logs.contains("certificate issued"),
            "no issuance in pkid's log:\n{logs}"
        );
        assert!(
            !logs.contains('\u{1b}'),
            "pkid's log to a file carries escape codes:\n{logs}"
        );
    })
    .await;
}

/// A 200 answer to finalize: the order, processing or already valid, at the order's URL.
fn check_finalize_accepted(answer: &Response, order_url: &str) {
    let body = answer.json();
    let status = body["status"].as_str().unwrap_or("");
    assert!(
        status == "processing" || status == "valid",
        "finalize answered 200 with an order that is {status}: {body}"
    );
    if let Some(location) = answer.location() {
        assert_eq!(location, order_url, "finalize Location is the order");
    }
}

/// How pkid goes down between authorization and finalization.
enum Interruption {
    /// SIGTERM: a graceful stop.
    Stop,
    /// SIGKILL: a crash.
    Kill9,
}

/// newAccount, newOrder and a valid http-01 challenge; pkid is stopped (SIGTERM) and started again
/// on the same data folder and port; the same account then finalizes, and the certificate verifies
/// against a root that did not change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_between_new_order_and_finalize() {
    finalize_after_interruption(Interruption::Stop, &["e.pkid.test", "f.pkid.test"]).await;
}

/// As above, but pkid is killed with SIGKILL: committed state must survive a crash too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_between_new_order_and_finalize() {
    finalize_after_interruption(Interruption::Kill9, &["g.pkid.test"]).await;
}

async fn finalize_after_interruption(interruption: Interruption, names: &[&str]) {
    let mut env = Environment::start().await;
    let root_before = env.pkid.root_pem();
    let responder = Http01Responder::bind(env.http01_port).await;
    let mut client = AcmeClient::new(&env.pkid.directory_url(), &root_before).await;
    let order = within(TEST_BOUND, client.ready_order(names, &responder)).await;

    match interruption {
        Interruption::Stop => env.pkid.stop(),
        Interruption::Kill9 => env.pkid.kill9(),
    }
    env.pkid.restart().await;
    let root_after = env.pkid.root_pem();
    assert!(
        root_after == root_before,
        "root.pem changed across a restart:\nbefore:\n{}\nafter:\n{}",
        String::from_utf8_lossy(&root_before),
        String::from_utf8_lossy(&root_after)
    );
    client.reconnect(&root_before);

    within(TEST_BOUND, async {
        let answer = client.finalize(&order, &csr_der(names)).await;
        assert_eq!(
            answer.status,
            200,
            "finalize after restart: {}",
            answer.describe()
        );
        let issued = client.wait_valid(&order).await;
        let certificate_url = issued
            .certificate_url()
            .unwrap_or_else(|| panic!("valid order without certificate: {}", issued.body));
        let chain = client.download_certificate(&certificate_url).await;
        check_issued(
            &env.pkid.root_pem_path(),
            &chain,
            names,
            &env.subdir("checks"),
        );
    })
    .await;
}

/// The key-encryption key can live outside the data folder (security hardening, item 10):
/// with `ca.key_encryption_key_file` pkid creates the key there (owner-only), keeps none in the
/// data folder, warns of nothing, and reopens its sealed CA with it after a restart; with the
/// key in the data folder (the default), pkid says at start-up what a copy of that folder gives
/// away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_encryption_key_may_live_outside_the_data_folder() {
    use std::os::unix::fs::PermissionsExt;
    const WARNING: &str = "the key-encryption key is inside the data folder";
    let outside = tempfile::tempdir().unwrap();
    let key_file = outside.path().join("pkid-kek");
    let mut env = Environment::start_with(&[(
        "PKID_CA__KEY_ENCRYPTION_KEY_FILE",
        key_file.to_str().unwrap(),
    )])
    .await;
    within(TEST_BOUND, async {
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the key file is the owner's only");
        let data = env.pkid.database_path().parent().unwrap().to_path_buf();
        assert!(!data.join("kek").exists(), "no key in the data folder");
        assert!(!env.pkid.logs().contains(WARNING), "{}", env.pkid.logs());
        let key = std::fs::read(&key_file).unwrap();
        env.pkid.restart().await;
        assert_eq!(std::fs::read(&key_file).unwrap(), key, "the same key, kept");
        let responder = Http01Responder::bind(env.http01_port).await;
        let mut client = AcmeClient::new(&env.pkid.directory_url(), &env.pkid.root_pem()).await;
        client.register().await;
        let names = ["kek-outside.pkid.test"];
        let order = client.ready_order(&names, &responder).await;
        let answer = client.finalize(&order, &csr_der(&names)).await;
        assert_eq!(
            answer.status,
            200,
            "the sealed CA key opened: {}",
            answer.describe()
        );
    })
    .await;
    let default = Environment::start().await;
    assert!(
        default.pkid.logs().contains(WARNING),
        "pkid warns of a key in the data folder:\n{}",
        default.pkid.logs()
    );
}

//! Directory isolation (security hardening, item 1) against a real pkid with two ACME
//! directories: the default one at `/acme`, open to anyone, and `/acme/restricted`, which
//! requires an external account binding for new accounts. An account belongs to the directory
//! it was made in: the key of an account on the open directory gets nothing from the restricted
//! one without a binding key (the attack the issue verified: newAccount there without EAB used
//! to answer 200 with the open account, and newOrder 201), and every resource — order,
//! authorization, certificate, revocation, renewal information, key change — is served only
//! through its own directory.
//!
//! Run on SQLite, where the process keeps accounts in memory, and on PostgreSQL, where the
//! account and the resource a URL names are read by the statement that redeems the nonce. The
//! PostgreSQL database is first migrated to the schema from before accounts had a directory and
//! given two accounts of that time: the one made with a binding key joins its key's directory,
//! the other `default`.

use std::time::Duration;

use aws_lc_rs::hmac;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use instant_acme::CertificateIdentifier;
use rustls_pki_types::CertificateDer;
use serde_json::{json, Value};

use crate::harness::acme::{b64, new_order_payload};
use crate::harness::certs::pem_chain;
use crate::harness::client::{csr_der, AcmeClient, Response};
use crate::harness::environment::{within, Environment};
use crate::harness::http01::Http01Responder;
use crate::harness::postgres::Postgres;
use crate::harness::tls::https_client;

const TEST_BOUND: Duration = Duration::from_secs(150);

/// The named directory, requiring a binding for new accounts.
const RESTRICTED: (&str, &str) = (
    "PKID_ACME__DIRECTORIES__RESTRICTED__EXTERNAL_ACCOUNT_BINDING",
    "new-account-required",
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_and_its_resources_stay_in_their_directory_on_sqlite() {
    let env = Environment::start_with(&[RESTRICTED]).await;
    within(TEST_BOUND, isolation(&env)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_and_its_resources_stay_in_their_directory_on_postgresql() {
    let scratch = tempfile::Builder::new()
        .prefix("pkid-pg-")
        .tempdir()
        .unwrap();
    let postgres = Postgres::start(&scratch.path().join("pg"));
    accounts_from_before_directories(&postgres.url).await;
    let env =
        Environment::start_with(&[RESTRICTED, ("PKID_DATABASE__URL", postgres.url.as_str())]).await;
    within(TEST_BOUND, async {
        let db = sqlx::PgPool::connect(&postgres.url).await.unwrap();
        let directories: Vec<(String, String)> = sqlx::query_as(
            "SELECT id, directory FROM accounts WHERE id LIKE 'before-%' ORDER BY id",
        )
        .fetch_all(&db)
        .await
        .unwrap();
        assert_eq!(
            directories,
            [
                ("before-bound".to_owned(), "restricted".to_owned()),
                ("before-plain".to_owned(), "default".to_owned())
            ]
        );
        db.close().await;
        isolation(&env).await;
    })
    .await;
}

/// The database at the last migration before accounts had a directory, with an account made
/// through a binding key of `restricted` and one made without.
async fn accounts_from_before_directories(url: &str) {
    let db = sqlx::PgPool::connect(url).await.unwrap();
    let mut before = sqlx::migrate!("./migrations/postgres");
    before.migrations = before
        .migrations
        .iter()
        .filter(|m| m.version < 10)
        .cloned()
        .collect::<Vec<_>>()
        .into();
    before.run(&db).await.unwrap();
    for statement in [
        "INSERT INTO eab_keys (kid, sealed_key, directory, note, created_at, bound_account, bound_at) \
         VALUES ('before-key', 'sealed', 'restricted', '', 0, 'before-bound', 0)",
        "INSERT INTO accounts (id, thumbprint, jwk, status, contact, eab_kid, created_at) \
         VALUES ('before-bound', 'before-t1', '{}', 'valid', '[]', 'before-key', 0)",
        "INSERT INTO accounts (id, thumbprint, jwk, status, contact, eab_kid, created_at) \
         VALUES ('before-plain', 'before-t2', '{}', 'valid', '[]', NULL, 0)",
    ] {
        sqlx::query(statement).execute(&db).await.unwrap();
    }
    db.close().await;
}

fn expect_problem(response: &Response, status: u16, short_type: &str, what: &str) {
    assert_eq!(
        (
            response.status,
            response.problem_type().as_deref().unwrap_or_default()
        ),
        (
            status,
            format!("urn:ietf:params:acme:error:{short_type}").as_str()
        ),
        "{what}: {}",
        response.describe()
    );
}

/// A binding key of `directory`, from the admin API (on its own listener).
async fn binding_key(env: &Environment, directory: &str) -> (String, Vec<u8>) {
    let token = env.pkid.admin_token("directories").await;
    let http = https_client(&env.pkid.root_pem()).unwrap();
    let answer = http
        .post(env.pkid.admin_url("/admin/eab-keys"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(json!({"note": "isolation", "directory": directory}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 201);
    let body: Value = serde_json::from_slice(&answer.bytes().await.unwrap()).unwrap();
    let hmac_key = URL_SAFE_NO_PAD
        .decode(body["result"]["hmac_key"].as_str().unwrap())
        .unwrap();
    (body["result"]["kid"].as_str().unwrap().to_owned(), hmac_key)
}

/// RFC 8555 §7.3.4: the account key, MACed under the binding key, for `new_account_url`.
fn binding(client: &AcmeClient, kid: &str, hmac_key: &[u8], new_account_url: &str) -> Value {
    let protected = b64(json!({"alg": "HS256", "kid": kid, "url": new_account_url}).to_string());
    let payload = b64(client.key.jwk.to_string());
    let mac = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, hmac_key),
        format!("{protected}.{payload}").as_bytes(),
    );
    json!({"protected": protected, "payload": payload, "signature": b64(mac.as_ref())})
}

/// The same URL under the other directory's prefix.
fn on_default(url: &str) -> String {
    url.replace("/acme/restricted/", "/acme/")
}

async fn isolation(env: &Environment) {
    let pkid = &env.pkid;
    let root = pkid.root_pem();
    let responder = Http01Responder::bind(env.http01_port).await;
    let restricted_url = pkid
        .directory_url()
        .replace("/acme/directory", "/acme/restricted/directory");
    let restricted = AcmeClient::new(&restricted_url, &root).await.directory;

    // One key, with an account on the open directory.
    let mut client = AcmeClient::new(&pkid.directory_url(), &root).await;
    let open_account = client.register().await;
    let open = client.directory.clone();

    // The attack: that key asks the restricted directory for its account, without a binding.
    client.directory = restricted.clone();
    client.kid = None;
    let new_account = client.resource("newAccount");
    let response = client
        .post(&new_account, Some(&json!({"termsOfServiceAgreed": true})))
        .await;
    expect_problem(
        &response,
        401,
        "externalAccountRequired",
        "newAccount without EAB",
    );
    let response = client
        .post(&new_account, Some(&json!({"onlyReturnExisting": true})))
        .await;
    expect_problem(&response, 400, "accountDoesNotExist", "onlyReturnExisting");
    // The open account's URL, as it is and under the restricted prefix, signs nothing there.
    let disguised = open_account.replace("/acme/acct/", "/acme/restricted/acct/");
    for kid in [&open_account, &disguised] {
        client.kid = Some(kid.clone());
        let response = client
            .post(
                &client.resource("newOrder"),
                Some(&new_order_payload(&["iso.restricted.test"])),
            )
            .await;
        expect_problem(&response, 400, "accountDoesNotExist", kid);
    }

    // With a binding key of that directory (the admin API's; the command line's names a
    // directory that exists), the same key makes the restricted directory's own account.
    let (ok, _, stderr) = pkid.cli(&["eab", "create", "--directory", "nowhere"]).await;
    assert!(
        !ok && stderr.contains("no ACME directory named"),
        "{stderr}"
    );
    let (eab_kid, hmac_key) = binding_key(env, "restricted").await;
    client.kid = None;
    let payload = json!({
        "termsOfServiceAgreed": true,
        "externalAccountBinding": binding(&client, &eab_kid, &hmac_key, &new_account),
    });
    let response = client.post(&new_account, Some(&payload)).await;
    assert_eq!(response.status, 201, "{}", response.describe());
    let restricted_account = response.location().unwrap();
    assert!(
        restricted_account.contains("/acme/restricted/acct/")
            && on_default(&restricted_account) != open_account,
        "{restricted_account} is an account of its own"
    );
    client.kid = Some(restricted_account.clone());
    let names = ["iso.restricted.test"];
    let order = client.ready_order(&names, &responder).await;
    let finalized = client.finalize(&order, &csr_der(&names)).await;
    assert_eq!(finalized.status, 200, "{}", finalized.describe());
    let order = client.wait_valid(&order).await;
    let authz_url = order.authorization_urls()[0].clone();
    let cert_url = order.certificate_url().unwrap();
    let chain = client.download_certificate(&cert_url).await;
    let leaf = pem_chain(&chain).remove(0);
    let cert_id = CertificateIdentifier::try_from(&CertificateDer::from(leaf.clone()))
        .unwrap()
        .to_string();

    // Through the open directory, by the open account of the same key: none of it.
    client.directory = open.clone();
    client.kid = Some(open_account.clone());
    let response = client.post(&on_default(&order.url), None).await;
    assert_eq!(response.status, 404, "order: {}", response.describe());
    for (what, url) in [("authorization", &authz_url), ("certificate", &cert_url)] {
        let response = client.post(&on_default(url), None).await;
        expect_problem(&response, 403, "unauthorized", what);
    }
    let revoke = json!({"certificate": b64(&leaf)});
    let response = client
        .post(&client.resource("revokeCert"), Some(&revoke))
        .await;
    assert_eq!(response.status, 404, "revokeCert: {}", response.describe());
    let http = https_client(&root).unwrap();
    let renewal_info = |directory: &Value| {
        let url = format!("{}/{cert_id}", directory["renewalInfo"].as_str().unwrap());
        let http = http.clone();
        async move { http.get(url).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(renewal_info(&open).await, 404, "renewalInfo elsewhere");
    assert_eq!(renewal_info(&restricted).await, 200, "renewalInfo at home");

    // The open account's URL on the restricted directory's own resources: no such account.
    client.directory = restricted.clone();
    for url in [&order.url, &authz_url, &client.resource("keyChange")] {
        let response = client.post(url, None).await;
        expect_problem(&response, 400, "accountDoesNotExist", url);
    }

    // Through its own directory, by its own account, the certificate is revoked.
    client.kid = Some(restricted_account);
    let response = client
        .post(&client.resource("revokeCert"), Some(&revoke))
        .await;
    assert_eq!(response.status, 200, "{}", response.describe());
}

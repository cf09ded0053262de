//! Several pkid replicas on one PostgreSQL (from Debian, started here on loopback): a nonce is
//! single-use across replicas even when both get it at the same moment, an order placed
//! through one replica is finalized through the other, and after a revocation both replicas
//! serve the one CRL generated under the shared lease. A replica that starts leaves the other
//! replicas' validations in flight alone.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::acme::finalize_payload;
use crate::harness::client::{csr_der, AcmeClient};
use crate::harness::environment::{within, Environment};
use crate::harness::http01::Http01Responder;
use crate::harness::pkid::Pkid;
use crate::harness::postgres::Postgres;

const TEST_BOUND: Duration = Duration::from_secs(180);

pub(crate) fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The same request path on another replica.
fn on(replica: &Pkid, url: &str) -> String {
    let origin = replica.directory_url().replace("/acme/directory", "");
    let path = url.splitn(4, '/').nth(3).unwrap_or_default();
    format!("{origin}/{path}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_nonces_and_orders_through_postgresql() {
    let scratch = tempfile::Builder::new()
        .prefix("pkid-pg-")
        .tempdir()
        .unwrap();
    let postgres = Postgres::start(&scratch.path().join("pg"));
    let env = Environment::start_with(&[("PKID_DATABASE__URL", &postgres.url)]).await;
    // Replica B shares the CA (same files, same key-encryption key) and the database, and
    // answers under A's name, as replicas behind one load balancer do.
    let data_a = env.pkid.root_pem_path().parent().unwrap().to_path_buf();
    let dir_b = env.subdir("replica-b");
    copy_dir(
        &data_a.join("ca"),
        &dir_b.join("pkid").join("data").join("ca"),
    );
    std::fs::copy(
        data_a.join("kek"),
        dir_b.join("pkid").join("data").join("kek"),
    )
    .unwrap();
    let origin_a = env.pkid.directory_url().replace("/acme/directory", "");
    let mut replica_b = Pkid::start(
        &dir_b,
        &env.dns,
        env.http01_port,
        &[
            ("PKID_DATABASE__URL", &postgres.url),
            ("PKID_SERVER__BASE_URL", &origin_a),
        ],
    )
    .await;
    assert_eq!(
        std::fs::read(env.pkid.root_pem_path()).unwrap(),
        replica_b.root_pem(),
        "one CA"
    );

    within(TEST_BOUND, async {
        let responder = Http01Responder::bind(env.http01_port).await;
        let mut client = AcmeClient::new(&env.pkid.directory_url(), &env.pkid.root_pem()).await;
        client.register().await;
        let new_order = client.resource("newOrder");

        // One nonce from replica A, spent on A and B at the same moment: exactly one wins.
        for round in 0..5 {
            let nonce = client.new_nonce().await;
            let payload = json!({"identifiers": [{"type": "dns", "value": format!("race{round}.pkid.test")}]});
            let body = client.jws(&new_order, Some(&payload), &nonce);
            let on_b = on(&replica_b, &new_order);
            let (a, b) = tokio::join!(
                client.post_raw(&new_order, &body, None),
                client.post_raw(&on_b, &body, None)
            );
            let accepted = [&a, &b].iter().filter(|r| r.status == 201).count();
            let refused = [&a, &b]
                .iter()
                .filter(|r| r.problem_type().as_deref() == Some("urn:ietf:params:acme:error:badNonce"))
                .count();
            assert_eq!((accepted, refused), (1, 1), "round {round}:\n{}\n{}", a.describe(), b.describe());
        }

        // A kid naming no account, through B (the statement that redeems the nonce reads the
        // account and finds none): accountDoesNotExist, not an error of the server.
        let kid = client.kid.clone().expect("registered");
        let (base, _) = kid.rsplit_once('/').expect("an account URL");
        client.kid = Some(format!("{base}/no-such-account"));
        let body = client.jws(&new_order, Some(&json!({"identifiers": [{"type": "dns", "value": "ghost.pkid.test"}]})), &client.new_nonce().await);
        let ghost = client.post_raw(&on(&replica_b, &new_order), &body, None).await;
        client.kid = Some(kid);
        assert_eq!(
            (ghost.status, ghost.problem_type().as_deref()),
            (400, Some("urn:ietf:params:acme:error:accountDoesNotExist")),
            "{}",
            ghost.describe()
        );

        // An order made ready through A is finalized and downloaded through B.
        let names = ["replica.pkid.test"];
        let order = client.ready_order(&names, &responder).await;
        let finalize = order.finalize_url();
        let body = client.jws(&finalize, Some(&finalize_payload(&csr_der(&names))), &client.new_nonce().await);
        let answer = client.post_raw(&on(&replica_b, &finalize), &body, None).await;
        assert_eq!(answer.status, 200, "finalize through B: {}", answer.describe());
        let done = client.wait_valid(&order).await;
        let certificate = done.certificate_url().expect("a certificate URL");
        let body = client.jws(&certificate, None, &client.new_nonce().await);
        let download = client.post_raw(&on(&replica_b, &certificate), &body, None).await;
        assert_eq!(download.status, 200, "download through B: {}", download.describe());
        crate::harness::certs::check_issued(&env.pkid.root_pem_path(), &download.text(), &names, &env.subdir("replica-check"));

        // Revoked through A (ACME: no CRL is generated by the revocation itself), then the CRL
        // fetched from both replicas at once: one replica generates it under the lease row, the
        // other waits for it, so both serve the same bytes, listing the serial.
        let leaf = crate::harness::certs::pem_chain(&download.text()).remove(0);
        let revoke = client
            .post(&client.resource("revokeCert"), Some(&json!({"certificate": crate::harness::acme::b64(&leaf), "reason": 4})))
            .await;
        assert_eq!(revoke.status, 200, "revokeCert: {}", revoke.describe());
        // Revocation times are whole seconds, so a CRL signed in the revocation's second counts as
        // older than it (the revocation may have committed after the CRL's query): past that
        // second, the first CRL signed is current and the other replica must serve it.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let http = crate::harness::tls::https_client(&env.pkid.root_pem()).unwrap();
        let crl_a = format!("{origin_a}/crl/default.crl");
        let crl_b = on(&replica_b, &crl_a);
        let get = |url: String| {
            let http = http.clone();
            async move {
                let response = http.get(&url).send().await.unwrap_or_else(|e| panic!("GET {url}: {e:?}"));
                assert_eq!(response.status().as_u16(), 200, "GET {url}");
                response.bytes().await.unwrap().to_vec()
            }
        };
        let (from_a, from_b) = tokio::join!(get(crl_a.clone()), get(crl_b.clone()));
        assert_eq!(from_a, from_b, "{crl_a} and {crl_b} serve one CRL");
        assert_eq!(
            crate::harness::certs::crl_entry_reason(&from_a, &download.text()),
            Some(Some(x509_parser::x509::ReasonCode::Superseded)),
            "the shared CRL lists the revoked serial"
        );

        // The lease row decides who signs: while another holder has it, a replica does not sign
        // a CRL after a revocation; after its bounded wait it serves the stored one (still
        // valid). Once the lease is free, the next fetch signs a CRL with the new revocation.
        postgres.sql("INSERT INTO leases (name, holder, expires) VALUES ('crl:default', 'another replica', 99999999999) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires = excluded.expires");
        let names = ["replica-second.pkid.test"];
        let order = client.ready_order(&names, &responder).await;
        let answer = client.finalize(&order, &csr_der(&names)).await;
        assert_eq!(answer.status, 200, "finalize: {}", answer.describe());
        let done = client.wait_valid(&order).await;
        let second = client.download_certificate(&done.certificate_url().expect("a certificate URL")).await;
        let leaf = crate::harness::certs::pem_chain(&second).remove(0);
        let revoke = client
            .post(&client.resource("revokeCert"), Some(&json!({"certificate": crate::harness::acme::b64(&leaf), "reason": 1})))
            .await;
        assert_eq!(revoke.status, 200, "revokeCert: {}", revoke.describe());
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let started = Instant::now();
        let held = get(crl_b.clone()).await;
        assert!(started.elapsed() >= Duration::from_secs(9), "served after {:?}, within the lease wait", started.elapsed());
        assert_eq!(held, from_a, "while the lease is held elsewhere the stored CRL is served");
        postgres.sql("DELETE FROM leases WHERE name = 'crl:default'");
        let fresh = get(crl_b.clone()).await;
        assert_eq!(
            crate::harness::certs::crl_entry_reason(&fresh, &second),
            Some(Some(x509_parser::x509::ReasonCode::KeyCompromise)),
            "with the lease free, {crl_b} signs a CRL with the new revocation"
        );

        // A replica that starts while another one validates a challenge leaves that validation
        // alone (only challenges `processing` past the validation lease are requeued), so its
        // outcome is recorded and the authorization becomes valid without a second POST.
        let (_, authz_url, challenge) = client.order_one("in-flight.pkid.test", "http-01").await;
        let (token, challenge_url) = (challenge["token"].as_str().unwrap(), challenge["url"].as_str().unwrap());
        let gate = responder.serve_held(token, &client.key.key_authorization(token));
        let answer = client.post(challenge_url, Some(&json!({}))).await;
        assert_eq!(answer.status, 200, "challenge: {}", answer.describe());
        within(Duration::from_secs(30), gate.asked()).await;
        replica_b.restart().await;
        let during = client.fetch(challenge_url).await;
        assert_eq!(during["status"], "processing", "after replica B started, A's validation is still in flight: {during}");
        gate.open();
        let done = client.poll_until(&authz_url, &["valid"], &["invalid", "deactivated"]).await;
        assert_eq!(done["challenges"].as_array().unwrap().iter().filter(|c| c["status"] == "valid").count(), 1, "{done}");
    })
    .await;
    drop(replica_b);
}

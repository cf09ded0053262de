//! Several pkid replicas on one PostgreSQL (from Debian, started here on loopback): a nonce is
//! single-use across replicas even when both get it at the same moment, and an order placed
//! through one replica is finalized through the other.

use std::path::Path;
use std::time::Duration;

use serde_json::json;

use crate::client::{csr_der, finalize_payload, AcmeClient, Http01Responder};
use crate::env::{within, Environment};
use crate::pkid::Pkid;
use crate::postgres::Postgres;

const TEST_BOUND: Duration = Duration::from_secs(180);

fn copy_dir(from: &Path, to: &Path) {
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
    let replica_b = Pkid::start(
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
        crate::certs::check_issued(&env.pkid.root_pem_path(), &download.text(), &names, &env.subdir("replica-check"));
    })
    .await;
    drop(replica_b);
}

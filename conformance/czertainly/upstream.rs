//! The client operations through upstream authorities, one pkid for both: pebble as an upstream
//! ACME CA that answers late (`pending_after_secs = 0`: pkid answers `""` + uuid and collects the
//! certificate in the background, across a restart of pkid too), and `cfssl serve`. An upstream
//! that refuses is 502, one that cannot be reached 503; either leaves the record `failed` with
//! an event.

use std::time::Duration;

use serde_json::{json, Value};

use super::{certificate_of, events, pem_of, serial_of, Clients, Csr, Ra, TEST_BOUND};
use crate::backends::spki_of;
use crate::harness::certs::openssl_verify;
use crate::harness::environment::{within, Environment};
use crate::harness::process::require_tool;
use crate::harness::upstream::{Cfssl, Pebble};

/// How long pebble's certificate may take to be collected.
const COLLECT_BOUND: Duration = Duration::from_secs(40);

/// The last record pkid wrote and its events, from its database: (state, error, events).
async fn last_record(env: &Environment) -> (String, Option<String>, Vec<String>) {
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(env.pkid.database_path())
        .read_only(true);
    let db = sqlx::SqlitePool::connect_with(options).await.unwrap();
    let (uuid, state, error): (String, String, Option<String>) = sqlx::query_as(
        "SELECT uuid, state, operation_error FROM ra_certificates ORDER BY created_at DESC, rowid DESC LIMIT 1",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    let events: Vec<(String, String)> = sqlx::query_as(
        "SELECT event, status FROM ra_certificate_events WHERE certificate_uuid = $1 ORDER BY at, id",
    )
    .bind(&uuid)
    .fetch_all(&db)
    .await
    .unwrap();
    db.close().await;
    (
        state,
        error,
        events
            .into_iter()
            .map(|(e, s)| format!("{e}/{s}"))
            .collect(),
    )
}

/// The certificate of an answer, at once or collected later.
async fn collected(ra: &Ra, base: &str, answer: &super::Answer) -> (String, Vec<u8>) {
    let uuid = answer.body["uuid"].as_str().unwrap().to_string();
    if answer.body["certificateData"] != "" {
        return certificate_of(answer);
    }
    let record = ra.wait_state(base, &uuid, "issued", COLLECT_BOUND).await;
    let data = record["certificateData"].as_str().unwrap();
    use base64::Engine;
    let der = base64::engine::general_purpose::STANDARD
        .decode(data)
        .unwrap();
    (uuid, der)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_operations_through_pebble_and_cfssl() {
    require_tool("openssl");
    let mut pebble = Pebble::start();
    let mut cfssl = Cfssl::start();
    let clients = Clients::new();
    let tls_root = pebble.tls_root.display().to_string();
    let (ca_key, ca_files) = clients.setting();
    let mut env = Environment::start_with(&[
        (ca_key.as_str(), ca_files.as_str()),
        ("PKID_BACKENDS__UP__KIND", "acme"),
        ("PKID_BACKENDS__UP__DIRECTORY_URL", &pebble.directory_url),
        ("PKID_BACKENDS__UP__TRUST_ROOTS_PEM", &tls_root),
        (
            "PKID_BACKENDS__UP__ACCOUNT_KEY_FILE",
            "data/up-account.key.sealed",
        ),
        ("PKID_BACKENDS__UP__CHALLENGE_MODE", "pre-validated"),
        ("PKID_BACKENDS__UP__TIMEOUT_SECS", "15"),
        // pebble finalizes asynchronously: the first answer is always pending.
        ("PKID_BACKENDS__UP__PENDING_AFTER_SECS", "0"),
        ("PKID_BACKENDS__SIGNER__KIND", "cfssl"),
        ("PKID_BACKENDS__SIGNER__URL", &cfssl.url),
        ("PKID_BACKENDS__SIGNER__AUTH_KEY_HEX", &cfssl.auth_key_hex),
    ])
    .await;
    within(TEST_BOUND, async {
        clients.link(&env.pkid).await;
        let ra = Ra::new(&env.pkid, Some(&clients.operator));
        let up = ra.authority("up").await;
        let one = ra.get(&format!("/v1/authorities/{up}")).await;
        assert_eq!(one.body["kind"], "upstream", "{one:?}");
        // pebble's certificates live 7 days: the profile allows 10.
        let base = ra
            .profile(&up, "up-web", &[("validityDays", json!(10))])
            .await;
        let work = env.subdir("pebble");

        // Issue: "" + uuid, then the certificate arrives by polling the record.
        let csr = Csr::new(&["up.ra.test"]);
        let answer = ra.issue(&base, &csr).await;
        assert_eq!(answer.status, 200, "{answer:?}");
        assert_eq!(
            answer.body["certificateData"], "",
            "pebble answers late: {answer:?}"
        );
        let (uuid, leaf) = collected(&ra, &base, &answer).await;
        assert_eq!(spki_of(&leaf), csr.spki());
        let root = work.join("root.pem");
        std::fs::write(&root, pebble.management("/roots/0").await).unwrap();
        let intermediate = pebble.management("/intermediates/0").await;
        openssl_verify(
            &root,
            &format!("{}{intermediate}", pem_of(&leaf)),
            &work.join("verify"),
        );
        let record = ra.get(&format!("{base}/certificates/{uuid}")).await;
        let history = events(&record.body);
        assert!(
            history.contains(&"pending/running".to_string())
                && history.last().map(String::as_str) == Some("issued/succeeded"),
            "{history:?}"
        );

        // Pending across a restart: the reference is kept, the job of the restarted pkid
        // collects it.
        let late = ra.issue(&base, &Csr::new(&["restart.ra.test"])).await;
        assert_eq!(late.body["certificateData"], "", "{late:?}");
        let late_uuid = late.body["uuid"].as_str().unwrap().to_string();
        let waiting = ra.get(&format!("{base}/certificates/{late_uuid}")).await;
        env.pkid.kill9();
        assert_eq!(waiting.body["state"], "pending_issue", "{waiting:?}");
        assert_eq!(
            waiting.body["operation"]["waitingForAuthority"], true,
            "{waiting:?}"
        );
        env.pkid.restart().await;
        let ra = Ra::new(&env.pkid, Some(&clients.operator));
        let record = ra
            .wait_state(&base, &late_uuid, "issued", COLLECT_BOUND)
            .await;
        assert!(record["certificateData"]
            .as_str()
            .is_some_and(|d| !d.is_empty()));

        // Renew keeps the key, rekey changes it; both point to their source.
        let renewed = ra
            .post(&format!("{base}/certificates/{uuid}/renew"), json!({}))
            .await;
        assert_eq!(renewed.status, 200, "{renewed:?}");
        let (renewed_uuid, renewed_leaf) = collected(&ra, &base, &renewed).await;
        assert_eq!(spki_of(&renewed_leaf), csr.spki(), "renew keeps the key");
        let rekey = Csr::new(&["up.ra.test"]);
        let rekeyed = ra
            .post(
                &format!("{base}/certificates/{uuid}/rekey"),
                json!({"request": rekey.base64()}),
            )
            .await;
        assert_eq!(rekeyed.status, 200, "{rekeyed:?}");
        let (rekeyed_uuid, rekeyed_leaf) = collected(&ra, &base, &rekeyed).await;
        assert_eq!(
            spki_of(&rekeyed_leaf),
            rekey.spki(),
            "rekey changes the key"
        );
        for child in [&renewed_uuid, &rekeyed_uuid] {
            let record = ra.get(&format!("{base}/certificates/{child}")).await;
            assert_eq!(record.body["sourceCertificateUuid"], uuid.as_str());
        }

        // Revoke: forwarded to pebble, which records it.
        let revoked = ra
            .post(
                &format!("{base}/certificates/{rekeyed_uuid}/revoke"),
                json!({"reason": "superseded"}),
            )
            .await;
        assert_eq!(revoked.status, 204, "{revoked:?}");
        let status = pebble
            .management(&format!(
                "/cert-status-by-serial/{}",
                serial_of(&rekeyed_leaf)
            ))
            .await;
        assert!(
            status.contains("Revoked"),
            "pebble recorded the revocation: {status}"
        );

        // A name pebble refuses: 502, the record failed with an event.
        let refused = ra.issue(&base, &Csr::new(&["bad_name.ra.test"])).await;
        assert_eq!(refused.status, 502, "{refused:?}");
        assert!(refused.body["message"].is_string());
        let (state, error, history) = last_record(&env).await;
        assert_eq!(state, "failed");
        assert!(error.is_some_and(|e| e.contains("refused")));
        assert_eq!(
            history.last().map(String::as_str),
            Some("failed/failed"),
            "{history:?}"
        );

        // pebble gone: 503, failed with an event.
        pebble.stop();
        let down = ra.issue(&base, &Csr::new(&["down.ra.test"])).await;
        assert_eq!(down.status, 503, "{down:?}");
        let (state, _, history) = last_record(&env).await;
        assert_eq!(
            (state.as_str(), history.last().map(String::as_str)),
            ("failed", Some("failed/failed"))
        );

        // cfssl: issued at once, renewed, rekeyed, revoked.
        let signer = ra.authority("signer").await;
        let signer_base = ra
            .profile(&signer, "signer-web", &[("validityDays", json!(10))])
            .await;
        let csr = Csr::new(&["signer.ra.test"]);
        let (signer_uuid, signer_leaf) = ra.issued(&signer_base, &csr).await;
        openssl_verify(
            &cfssl.ca_pem,
            &pem_of(&signer_leaf),
            &env.subdir("verify-cfssl"),
        );
        let (_, renewed) = certificate_of(
            &ra.post(
                &format!("{signer_base}/certificates/{signer_uuid}/renew"),
                json!({}),
            )
            .await,
        );
        assert_eq!(spki_of(&renewed), csr.spki());
        let rekey = Csr::new(&["signer.ra.test"]);
        let (rekeyed_uuid, rekeyed) = certificate_of(
            &ra.post(
                &format!("{signer_base}/certificates/{signer_uuid}/rekey"),
                json!({"request": rekey.base64()}),
            )
            .await,
        );
        assert_eq!(spki_of(&rekeyed), rekey.spki());
        let revoked = ra
            .post(
                &format!("{signer_base}/certificates/{rekeyed_uuid}/revoke"),
                json!({}),
            )
            .await;
        assert_eq!(
            (revoked.status, revoked.body.clone()),
            (204, Value::Null),
            "{revoked:?}"
        );
        cfssl.stop();
        let down = ra.issue(&signer_base, &Csr::new(&["gone.ra.test"])).await;
        assert_eq!(down.status, 503, "{down:?}");
        let (state, _, _) = last_record(&env).await;
        assert_eq!(state, "failed");
    })
    .await;
}

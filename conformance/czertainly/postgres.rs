//! The client operations on PostgreSQL (migration 0009 there, and every record's reads and
//! writes): an authority keeps its UUID, an RA profile is created, a certificate issued, renewed,
//! rekeyed and revoked; a managed software key builds a CSR and is destroyed with `destroyKey`;
//! an end entity enrols through v1 and is deleted (its certificate revoked first). The records'
//! rows are read back from PostgreSQL itself.

use reqwest::Method;
use serde_json::json;

use super::{certificate_of, Clients, Csr, Ra, TEST_BOUND};
use crate::harness::environment::{within, Environment};
use crate::harness::postgres::Postgres;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_operations_on_postgresql() {
    let scratch = tempfile::Builder::new()
        .prefix("pkid-pg-")
        .tempdir()
        .unwrap();
    let postgres = Postgres::start(&scratch.path().join("pg"));
    let clients = Clients::new();
    let (client_cas, files) = clients.setting();
    let mut env = Environment::start_with(&[
        (client_cas.as_str(), files.as_str()),
        ("PKID_DATABASE__URL", postgres.url.as_str()),
    ])
    .await;
    within(TEST_BOUND, async {
        clients.link(&env.pkid).await;
        let ra = Ra::new(&env.pkid, Some(&clients.operator));
        let default = ra.authority("default").await;
        let base = ra.profile(&default, "pg-web", &[("validityDays", json!(30))]).await;

        // Issue, renew (same key), rekey (another key), revoke.
        let cycle = ra.cycle(&base, "pg.ra.test", "superseded").await;
        let (uuid, rekeyed_uuid) = (cycle.uuid, cycle.rekeyed_uuid);

        // A managed software key: the CSR built from it, then destroyed with destroyKey.
        let token = ra.post("/v1/tokenProfiles", json!({"name": "soft", "kind": "software"})).await;
        let token = token.body["uuid"].as_str().unwrap().to_string();
        let key = ra.post(&format!("/v1/tokenProfiles/{token}/keys"), json!({"name": "pg"})).await;
        assert_eq!(key.status, 201, "{key:?}");
        let key_uuid = key.body["uuid"].as_str().unwrap().to_string();
        let managed = ra
            .post(
                &format!("{base}/certificates"),
                json!({"keyUuid": key_uuid, "tokenProfileUuid": token, "csrAttributes": [{"name": "commonName", "content": [{"data": "key.pg.ra.test"}]}, {"name": "dnsNames", "content": [{"data": "key.pg.ra.test"}]}]}),
            )
            .await;
        let (managed_uuid, _) = certificate_of(&managed);
        let destroyed = ra.post(&format!("{base}/certificates/{managed_uuid}/revoke"), json!({"destroyKey": true})).await;
        assert_eq!(destroyed.status, 204, "{destroyed:?}");

        // v1: an end entity enrols, and DELETE revokes its certificate before it goes.
        let v1 = "/v1/operations/pg-web";
        let added = ra.post(&format!("{v1}/endentity"), json!({"username": "bob", "password": "bob-enrolment-1", "subjectDN": "CN=bob.pg.ra.test"})).await;
        assert_eq!(added.status, 200, "{added:?}");
        let enrolled = ra.post(&format!("{v1}/certificate/issue"), json!({"username": "bob", "password": "bob-enrolment-1", "pkcs10": Csr::new(&["bob.pg.ra.test"]).base64()})).await;
        assert_eq!(enrolled.status, 200, "{enrolled:?}");
        let deleted = ra.call(Method::DELETE, &format!("{v1}/endentity/bob"), None).await;
        assert_eq!(deleted.status, 200, "{deleted:?}");

        // The same authority UUID after a restart; the records as PostgreSQL holds them.
        env.pkid.restart().await;
        assert_eq!(ra.authority("default").await, default);
        let db = sqlx::PgPool::connect(&postgres.url).await.unwrap();
        let states: Vec<(String, String)> =
            sqlx::query_as("SELECT uuid, state FROM ra_certificates ORDER BY created_at, uuid")
                .fetch_all(&db)
                .await
                .unwrap();
        let state_of = |u: &str| states.iter().find(|(id, _)| id == u).map(|(_, s)| s.as_str());
        assert_eq!(state_of(&uuid), Some("issued"), "{states:?}");
        assert_eq!(state_of(&rekeyed_uuid), Some("revoked"), "{states:?}");
        assert_eq!(state_of(&managed_uuid), Some("revoked"), "{states:?}");
        assert_eq!(states.iter().filter(|(_, s)| s == "revoked").count(), 3, "the end entity's too: {states:?}");
        let (sealed, gone): (Option<String>, Option<i64>) =
            sqlx::query_as("SELECT sealed_key, destroyed_at FROM ra_managed_keys WHERE uuid = $1")
                .bind(&key_uuid)
                .fetch_one(&db)
                .await
                .unwrap();
        assert!(sealed.is_none() && gone.is_some(), "the key is destroyed");
        let events: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM ra_certificate_events")
            .fetch_one(&db)
            .await
            .unwrap();
        assert!(events >= 10, "every step has its event: {events}");
        let entities: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM ra_end_entities")
            .fetch_one(&db)
            .await
            .unwrap();
        assert_eq!(entities, 0);
        db.close().await;
    })
    .await;
}

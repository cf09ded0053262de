//! The store against a real SQLite file: durable connections, the claim and its record, every
//! way an issuance completes, recovery, and the plans of the frequent queries.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use sqlx::{AnyConnection, Row};

use super::accounts::ACCOUNT_BY_KEY;
use super::authorizations::{AUTHZS_SINCE, AUTHZ_WITH_CHALLENGES, STALE_PROCESSING_CHALLENGES};
use super::crls::{LAST_REVOCATION, LAST_REVOCATION_IN_SHARD};
use super::orders::{
    ORDERS_SINCE, ORDER_REPLACING, ORDER_WITH_AUTHZS, REUSABLE_AUTHZ, REUSE_CANDIDATES,
    STALE_PROCESSING_ORDERS,
};
use super::*;

/// Every pooled SQLite connection runs in WAL mode with `synchronous = FULL`: a commit (and
/// so a certificate answered after it) has reached the disk, not only the page cache.
#[tokio::test]
async fn every_sqlite_connection_is_durable() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("pkid.db").display());
    let store = Store::connect(&url, 3).await.unwrap();
    async fn check(conn: &mut AnyConnection) {
        let synchronous: i64 = sqlx::query("PRAGMA synchronous")
            .fetch_one(&mut *conn)
            .await
            .unwrap()
            .try_get(0)
            .unwrap();
        let journal: String = sqlx::query("PRAGMA journal_mode")
            .fetch_one(&mut *conn)
            .await
            .unwrap()
            .try_get(0)
            .unwrap();
        assert_eq!((synchronous, journal.as_str()), (2, "wal"), "2 is FULL");
    }
    // The three read connections at once, and the pool's: each one was set up.
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut conn = store.reader().await.unwrap();
        check(conn.connection().unwrap()).await;
        held.push(conn);
    }
    check(&mut store.pool().acquire().await.unwrap()).await;
}

/// A finalize's claim and its to-be-signed record are one write: the first claim records
/// its serial; a later one finds the order taken and records nothing.
#[tokio::test]
async fn a_claim_and_its_record_are_made_together_once() {
    let dir = tempfile::tempdir().unwrap();
    let (store, pending) = processing_order(&dir).await;
    let order = OrderRow::for_tests("second", "acct", OrderStatus::Pending, now() + 3600);
    store.insert_order(&order, &[]).await.unwrap();
    let pending = PendingCertificate {
        order_id: Some("second"),
        ..pending
    };
    let first = Claim::for_tests("second", now());
    assert!(store
        .claim_with_tbs(&first, &pending, "01", b"tbs")
        .await
        .unwrap());
    let late = Claim {
        csr: b"another csr",
        ..first
    };
    assert!(!store
        .claim_with_tbs(&late, &pending, "02", b"tbs")
        .await
        .unwrap());
    // An order claimed on its own (an upstream CA's issuance) is not claimed again.
    assert!(!store
        .claim_with_tbs(&Claim::for_tests("order", now()), &pending, "03", b"tbs")
        .await
        .unwrap());

    let order = store.order("second").await.unwrap().unwrap();
    assert_eq!(order.status, OrderStatus::Processing);
    assert_eq!(store.order_csr("second").await.unwrap().unwrap(), b"csr");
    let recorded = store.certificate("01").await.unwrap().unwrap();
    assert_eq!(
        (recorded.status, recorded.order_id.as_deref()),
        (CertificateStatus::Tbs, Some("second"))
    );
    for serial in ["02", "03"] {
        assert!(
            store.certificate(serial).await.unwrap().is_none(),
            "{serial}"
        );
    }
}

/// Every way an issuance ends on SQLite, whose settle and store go to the connection as
/// one text: from the `tbs` row, from an upstream CA (no `tbs` row), and both with no
/// order (the REST surfaces' certificates).
#[tokio::test]
async fn every_way_an_issuance_completes_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let (store, pending) = processing_order(&dir).await;
    let upstream_order =
        OrderRow::for_tests("upstream", "acct", OrderStatus::Pending, now() + 3600);
    store.insert_order(&upstream_order, &[]).await.unwrap();
    assert!(store
        .begin_processing(&Claim::for_tests("upstream", now()))
        .await
        .unwrap());
    let issued = |serial: &'static str| IssuedRecord {
        serial,
        tbs: b"tbs",
        der: b"der",
        chain_pem: "chain",
    };
    let upstream = PendingCertificate {
        order_id: Some("upstream"),
        ..pending
    };
    let no_order = PendingCertificate {
        order_id: None,
        ..pending
    };
    store.record_tbs(&pending, "01", b"tbs").await.unwrap();
    store
        .complete_issuance(&issued("01"), &pending)
        .await
        .unwrap();
    store
        .complete_issuance(&issued("02"), &upstream)
        .await
        .unwrap();
    store.record_tbs(&no_order, "03", b"tbs").await.unwrap();
    store
        .complete_issuance(&issued("03"), &no_order)
        .await
        .unwrap();
    store
        .complete_issuance(&issued("04"), &no_order)
        .await
        .unwrap();

    type Stored = (String, String, Option<String>, Option<Vec<u8>>);
    let rows: Vec<Stored> =
        sqlx::query("SELECT serial, status, order_id, der FROM certificates ORDER BY serial")
            .fetch_all(store.pool())
            .await
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r.get("serial"),
                    r.get("status"),
                    r.get("order_id"),
                    r.get("der"),
                )
            })
            .collect();
    let der = Some(b"der".to_vec());
    let issued_row = |serial: &str, order: Option<&str>| {
        (
            serial.to_owned(),
            "issued".to_owned(),
            order.map(str::to_owned),
            der.clone(),
        )
    };
    assert_eq!(
        rows,
        vec![
            issued_row("01", Some("order")),
            issued_row("02", Some("upstream")),
            issued_row("03", None),
            issued_row("04", None),
        ]
    );
    for (order, serial) in [("order", "01"), ("upstream", "02")] {
        let row = store.order(order).await.unwrap().unwrap();
        assert_eq!(
            (row.status, row.certificate_serial.as_deref()),
            (OrderStatus::Valid, Some(serial))
        );
    }
}

/// The queries that run on every newOrder, order and authorization read, and every
/// recovery round find their rows through an index: their cost does not grow with the
/// number of orders the CA has made.
#[tokio::test]
async fn plans_of_frequent_queries_use_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("pkid.db").display());
    let store = Store::connect(&url, 1).await.unwrap();
    let queries = [
        ("reusable orders and authorization", REUSE_CANDIDATES),
        ("reusable authorization", REUSABLE_AUTHZ),
        ("order replacing a certificate", ORDER_REPLACING),
        ("stale processing orders", STALE_PROCESSING_ORDERS),
        ("stale processing challenges", STALE_PROCESSING_CHALLENGES),
        ("orders since", ORDERS_SINCE),
        ("authorizations since", AUTHZS_SINCE),
        ("order with authorizations", ORDER_WITH_AUTHZS),
        ("authorization with challenges", AUTHZ_WITH_CHALLENGES),
        ("an issuer's last revocation", LAST_REVOCATION),
        ("a CRL shard's last revocation", LAST_REVOCATION_IN_SHARD),
        ("an account by directory and key", ACCOUNT_BY_KEY),
    ];
    for (what, sql) in queries {
        let plan: Vec<String> = sqlx::query(&format!("EXPLAIN QUERY PLAN {sql}"))
            .fetch_all(store.pool())
            .await
            .unwrap()
            .iter()
            .map(|row| row.get::<String, _>("detail"))
            .collect();
        // A scan of a `WITH` clause's few rows is no table's, nor is the one row a SELECT of
        // scalar subqueries makes.
        let scanned = |step: &&String| {
            step.strip_prefix("SCAN ").is_some_and(|rest| {
                rest != "CONSTANT ROW"
                    && !["reuse_orders", "reuse_authz"]
                        .iter()
                        .any(|cte| rest.split_whitespace().next() == Some(cte))
            })
        };
        assert!(
            !plan.iter().any(|step| scanned(&step)),
            "{what} reads a whole table: {plan:?}"
        );
        assert!(
            plan.iter().any(|step| step.starts_with("SEARCH ")),
            "{what}: {plan:?}"
        );
    }
}

/// A store with account `acct` and its order `order` in `processing`, and what the
/// issuance cycle knows of the order's certificate.
async fn processing_order(dir: &tempfile::TempDir) -> (Store, PendingCertificate<'static>) {
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("pkid.db").display());
    let store = Store::connect(&url, 2).await.unwrap();
    let t = now();
    store
        .insert_account(&AccountRow::for_tests("acct"), None)
        .await
        .unwrap();
    let order = OrderRow::for_tests("order", "acct", OrderStatus::Pending, t + 3600);
    store.insert_order(&order, &[]).await.unwrap();
    assert!(store
        .begin_processing(&Claim::for_tests("order", t))
        .await
        .unwrap());
    let pending = PendingCertificate {
        issuer: "default",
        order_id: Some("order"),
        account_id: Some("acct"),
        not_before: t,
        not_after: t + 86400,
        crl_shard: None,
    };
    (store, pending)
}

/// A challenge whose validation started before the bound goes back to `pending`; one
/// that another replica is validating right now stays `processing`.
#[tokio::test]
async fn only_challenges_stuck_past_the_bound_are_requeued() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = processing_order(&dir).await;
    let t = now();
    let authz = NewAuthz {
        id: "authz".into(),
        id_type: "dns".into(),
        id_value: "lease.pkid.test".into(),
        wildcard: false,
        expires: t + 3600,
        challenges: vec![
            ("stuck".into(), "http-01".into(), "token-1".into()),
            ("in-flight".into(), "dns-01".into(), "token-2".into()),
        ],
    };
    let order = OrderRow::for_tests("order-2", "acct", OrderStatus::Pending, t + 3600);
    store
        .insert_order(&order, &[OrderAuthz::New(authz)])
        .await
        .unwrap();
    for id in ["stuck", "in-flight"] {
        assert!(store.start_challenge(id).await.unwrap());
    }
    // The first one started long ago, on a replica that has stopped since.
    sqlx::query("UPDATE challenges SET processing_since = $1 WHERE id = 'stuck'")
        .bind(t - 600)
        .execute(store.pool())
        .await
        .unwrap();

    assert_eq!(store.requeue_stuck_challenges(t - 60).await.unwrap(), 1);
    let status = |id: &'static str| {
        let store = store.clone();
        async move {
            store
                .challenge_with_authz(id)
                .await
                .unwrap()
                .unwrap()
                .0
                .status
        }
    };
    assert_eq!(status("stuck").await, ChallengeStatus::Pending);
    assert_eq!(status("in-flight").await, ChallengeStatus::Processing);
    // The live validation's outcome is still recorded, and a requeued challenge starts again.
    assert!(store
        .finish_challenge("in-flight", "authz", Some(t), None, t + 3600)
        .await
        .unwrap());
    assert!(store.start_challenge("stuck").await.unwrap());
}

/// A failed issuance leaves no serial at the `tbs` step: failing the order abandons it,
/// even when the step that should have abandoned it never ran.
#[tokio::test]
async fn a_failed_order_abandons_its_unsigned_serials() {
    let dir = tempfile::tempdir().unwrap();
    let (store, pending) = processing_order(&dir).await;
    store.record_tbs(&pending, "03cc", b"tbs").await.unwrap();
    store.fail_order("order", r#"{"type":"x"}"#).await.unwrap();

    let order = store.order("order").await.unwrap().unwrap();
    assert_eq!(order.status, OrderStatus::Invalid);
    let cert = store.certificate("03cc").await.unwrap().unwrap();
    assert_eq!(cert.status, CertificateStatus::Abandoned);
}

/// A recovery that took over a slow issuance, and the slow one, both finish: the order keeps
/// the first certificate stored, the second is refused and left for the CA to abandon.
#[tokio::test]
async fn of_two_issuances_for_one_order_only_the_first_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let (store, pending) = processing_order(&dir).await;
    let record = |serial: &'static str| IssuedRecord {
        serial,
        tbs: b"tbs",
        der: serial.as_bytes(),
        chain_pem: "",
    };
    for serial in ["01aa", "02bb"] {
        store.record_tbs(&pending, serial, b"tbs").await.unwrap();
    }

    store
        .complete_issuance(&record("01aa"), &pending)
        .await
        .unwrap();
    let late = store.complete_issuance(&record("02bb"), &pending).await;
    assert!(
        matches!(late, Err(StoreError::OrderSettled(ref id)) if id == "order"),
        "{late:?}"
    );

    let order = store.order("order").await.unwrap().unwrap();
    assert_eq!(
        (order.status, order.certificate_serial.as_deref()),
        (OrderStatus::Valid, Some("01aa"))
    );
    let served = store.certificate_of_order("order").await.unwrap().unwrap();
    assert_eq!(served.serial, "01aa");
    let refused = store.certificate("02bb").await.unwrap().unwrap();
    assert_eq!(
        (refused.status, refused.der),
        (CertificateStatus::Tbs, None)
    );
}

/// A status no code writes (here one only ever derived) is refused when read, with the
/// column and the text named.
#[tokio::test]
async fn a_status_no_code_writes_is_refused_when_read() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = processing_order(&dir).await;
    sqlx::query("UPDATE orders SET status = 'ready' WHERE id = 'order'")
        .execute(store.pool())
        .await
        .unwrap();
    let refused = store.order("order").await.unwrap_err().to_string();
    assert!(
        refused.contains("\"status\"") && refused.contains("\"ready\" is no stored order status"),
        "{refused}"
    );
}

/// Users are found by id, username, e-mail, linked certificate and bound key; a username, an
/// e-mail, a certificate or a key taken already refuses the whole write; disabling and a new
/// password show at the next read.
#[tokio::test]
async fn users_their_certificates_and_keys() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("pkid.db").display());
    let store = Store::connect(&url, 2).await.unwrap();
    let user = |id: &str, username: &str, email: Option<&str>| UserRow {
        id: id.into(),
        username: username.into(),
        email: email.map(str::to_string),
        roles: "admin".into(),
        password_hash: Some("$argon2id$…".into()),
        enabled: true,
        created_at: now(),
        updated_at: now(),
    };
    let link = |id: &str, user_id: &str, subject: &str| UserCertificateRow {
        id: id.into(),
        user_id: user_id.into(),
        subject_dn: subject.into(),
        issuer_dn: "CN=CA".into(),
        der: None,
        created_at: now(),
    };
    let ada = user("u1", "ada", Some("ada@pkid.test"));
    store
        .insert_user(&ada, &[link("c1", "u1", "CN=ada")])
        .await
        .unwrap();
    assert_eq!(store.user("u1").await.unwrap(), Some(ada.clone()));
    assert_eq!(
        store.user_by_username("ada").await.unwrap(),
        Some(ada.clone())
    );
    assert_eq!(
        store.user_by_email("ada@pkid.test").await.unwrap(),
        Some(ada.clone())
    );
    assert_eq!(
        store.user_by_certificate("CN=ada", "CN=CA").await.unwrap(),
        Some(ada.clone())
    );
    assert_eq!(
        store
            .user_by_certificate("CN=ada", "CN=other")
            .await
            .unwrap(),
        None
    );

    // Taken: the username, the e-mail, the certificate. Nothing of a refused write is kept.
    for (other, links) in [
        (user("u2", "ada", None), vec![]),
        (user("u2", "bob", Some("ada@pkid.test")), vec![]),
        (user("u2", "bob", None), vec![link("c2", "u2", "CN=ada")]),
    ] {
        let refused = store.insert_user(&other, &links).await.unwrap_err();
        assert!(refused.is_unique_violation(), "{refused}");
        assert_eq!(store.user("u2").await.unwrap(), None);
    }

    let key = UserKeyRow {
        thumbprint: "tp".into(),
        user_id: "u1".into(),
        jwk: "{}".into(),
        created_at: now(),
    };
    store.insert_user_key(&key).await.unwrap();
    assert!(store
        .insert_user_key(&key)
        .await
        .unwrap_err()
        .is_unique_violation());
    assert_eq!(
        store.user_by_key("tp").await.unwrap(),
        Some((ada.clone(), key.clone()))
    );
    assert_eq!(store.user_keys("u1").await.unwrap(), vec![key]);
    assert_eq!(store.user_certificates("u1").await.unwrap().len(), 1);

    assert!(store.set_user_password("u1", None).await.unwrap());
    assert!(store.disable_user("ada").await.unwrap());
    assert!(!store.disable_user("nobody").await.unwrap());
    let read = store.user("u1").await.unwrap().unwrap();
    assert_eq!((read.enabled, read.password_hash), (false, None));
    assert_eq!(store.users().await.unwrap().len(), 1);
}

/// Clients by id, unique by name, disabled; admin tokens live until they expire or are
/// revoked, and tokens without an expiry (made before it existed) until revoked.
#[tokio::test]
async fn clients_and_admin_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("pkid.db").display());
    let store = Store::connect(&url, 2).await.unwrap();
    let client = ClientRow {
        client_id: "c1".into(),
        name: "portal".into(),
        secret_hash: "hash".into(),
        scopes: "iam:admin.read".into(),
        grant_types: "password client_credentials".into(),
        enabled: true,
        created_at: now(),
    };
    store.insert_client(&client).await.unwrap();
    let twin = ClientRow {
        client_id: "c2".into(),
        ..client.clone()
    };
    assert!(store
        .insert_client(&twin)
        .await
        .unwrap_err()
        .is_unique_violation());
    assert_eq!(store.client("c1").await.unwrap(), Some(client.clone()));
    assert!(store.disable_client("portal").await.unwrap());
    assert!(!store.client("c1").await.unwrap().unwrap().enabled);
    assert_eq!(store.clients().await.unwrap().len(), 1);

    let at = now();
    store
        .insert_admin_token("live", "h-live", "", Some(at + 60))
        .await
        .unwrap();
    store
        .insert_admin_token("old", "h-old", "", None)
        .await
        .unwrap();
    store
        .insert_admin_token("gone", "h-gone", "", Some(at - 1))
        .await
        .unwrap();
    assert_eq!(
        store.admin_token("h-live", at).await.unwrap().as_deref(),
        Some("live")
    );
    assert_eq!(store.admin_token("h-live", at + 60).await.unwrap(), None);
    assert_eq!(
        store
            .admin_token("h-old", at + 1_000_000)
            .await
            .unwrap()
            .as_deref(),
        Some("old")
    );
    assert_eq!(store.admin_token("h-gone", at).await.unwrap(), None);
    assert!(store.revoke_admin_token("old").await.unwrap());
    assert!(!store.revoke_admin_token("old").await.unwrap());
    assert_eq!(store.admin_token("h-old", at).await.unwrap(), None);
    let listed = store.admin_tokens().await.unwrap();
    assert_eq!(listed.len(), 3);
    assert!(listed
        .iter()
        .any(|t| t.id == "old" && t.revoked_at.is_some()));
}

/// Migration 0010 on a database that has accounts from before it: one made with an external
/// account binding joins its binding key's directory, any other `default`; the orders and
/// authorizations that reference them still do (foreign keys hold), and from then on a key
/// holds one account per directory.
#[tokio::test]
async fn accounts_from_before_directory_isolation_join_a_directory() {
    use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
    use std::str::FromStr;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("pkid.db").display());
    sqlx::any::install_default_drivers();
    let pool = AnyPoolOptions::new()
        .max_connections(1)
        .after_connect(|conn, _| {
            Box::pin(async move {
                sqlx::query("PRAGMA foreign_keys = ON")
                    .execute(conn)
                    .await
                    .map(|_| ())
            })
        })
        .connect_with(AnyConnectOptions::from_str(&url).unwrap())
        .await
        .unwrap();
    let mut before = sqlx::migrate!("./migrations/sqlite");
    before.migrations = before
        .migrations
        .iter()
        .filter(|m| m.version < 10)
        .cloned()
        .collect::<Vec<_>>()
        .into();
    before.run(&pool).await.unwrap();
    for statement in [
        "INSERT INTO eab_keys (kid, sealed_key, directory, note, created_at, bound_account, bound_at) \
         VALUES ('k1', 'sealed', 'restricted', '', 0, 'a-bound', 0)",
        "INSERT INTO accounts (id, thumbprint, jwk, status, contact, eab_kid, created_at) \
         VALUES ('a-bound', 't1', '{}', 'valid', '[]', 'k1', 0)",
        "INSERT INTO accounts (id, thumbprint, jwk, status, contact, eab_kid, created_at) \
         VALUES ('a-plain', 't2', '{}', 'valid', '[]', NULL, 0)",
        "INSERT INTO orders (id, account_id, directory, status, expires, identifiers, created_at) \
         VALUES ('o1', 'a-bound', 'restricted', 'pending', 0, '[]', 0)",
        "INSERT INTO authorizations (id, account_id, id_type, id_value, wildcard, status, expires, created_at) \
         VALUES ('z1', 'a-plain', 'dns', 'x.test', 0, 'pending', 0, 0)",
    ] {
        sqlx::query(statement).execute(&pool).await.unwrap();
    }
    pool.close().await;

    let store = Store::connect(&url, 1).await.unwrap();
    let bound = store.account("a-bound").await.unwrap().unwrap();
    let plain = store.account("a-plain").await.unwrap().unwrap();
    assert_eq!(
        (bound.directory.as_str(), plain.directory.as_str()),
        ("restricted", "default")
    );
    assert_eq!(
        store
            .account_by_key("restricted", "t1")
            .await
            .unwrap()
            .map(|a| a.id),
        Some("a-bound".to_string())
    );
    assert!(store
        .account_by_key("default", "t1")
        .await
        .unwrap()
        .is_none());
    let violations = sqlx::query("PRAGMA foreign_key_check")
        .fetch_all(store.pool())
        .await
        .unwrap();
    assert!(violations.is_empty(), "{} violations", violations.len());
    // Foreign keys are still enforced: no order of an account that does not exist.
    assert!(sqlx::query(
        "INSERT INTO orders (id, account_id, directory, status, expires, identifiers, created_at) \
         VALUES ('o2', 'nobody', 'default', 'pending', 0, '[]', 0)"
    )
    .execute(store.pool())
    .await
    .is_err());
    // One account per key and directory.
    let again = |id: &str, directory: &str| AccountRow {
        directory: directory.into(),
        thumbprint: "t2".into(),
        ..AccountRow::for_tests(id)
    };
    assert_eq!(
        store
            .insert_account(&again("a-elsewhere", "restricted"), None)
            .await
            .unwrap(),
        NewAccountOutcome::Created
    );
    assert_eq!(
        store
            .insert_account(&again("a-twice", "default"), None)
            .await
            .unwrap(),
        NewAccountOutcome::KeyExists
    );
}

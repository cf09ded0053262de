//! The store's in-memory rows against the file: every read served from memory is the read the
//! file gives, at every step of an issuance, and no change is missed, even one whose caller
//! has gone.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use crate::store::group_commit::tests::hold_writer;
use crate::store::{
    now, AccountRow, AuthzStatus, CertificateStatus, ChallengeStatus, Claim, IssuedRecord,
    NewAuthz, OrderAuthz, OrderRow, OrderStatus, PendingCertificate, Statement, Store,
};

struct Stores {
    /// Reads from memory where it can.
    store: Store,
    /// The same database, read from the file only.
    file: Store,
    _dir: tempfile::TempDir,
}

async fn stores() -> Stores {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("pkid.db").display());
    let store = Store::connect(&url, 2).await.unwrap();
    let mut file = store.clone();
    file.reads.fresh = None;
    file.reads.accounts = None;
    for id in ["acct", "other"] {
        store
            .insert_account(&AccountRow::for_tests(id), None)
            .await
            .unwrap();
    }
    Stores {
        store,
        file,
        _dir: dir,
    }
}

fn new_authz(id: &str, name: &str) -> NewAuthz {
    NewAuthz {
        id: id.into(),
        id_type: "dns".into(),
        id_value: name.into(),
        wildcard: false,
        expires: now() + 3600,
        challenges: ["http-01", "dns-01", "tls-alpn-01"]
            .iter()
            .map(|kind| {
                (
                    format!("{id}-{kind}"),
                    (*kind).to_string(),
                    format!("token-{id}-{kind}"),
                )
            })
            .collect(),
    }
}

fn order(id: &str, account: &str) -> OrderRow {
    OrderRow {
        identifiers: r#"[{"type":"dns","value":"a.example"}]"#.into(),
        profile_name: Some("default".into()),
        created_at: now(),
        ..OrderRow::for_tests(id, account, OrderStatus::Pending, now() + 3600)
    }
}

impl Stores {
    /// Everything readable of order `id` and its authorizations, from memory and from the file.
    async fn agree(&self, order_id: &str, authz_ids: &[&str]) {
        let kept = self.store.order_with_authzs(order_id).await.unwrap();
        let file = self.file.order_with_authzs(order_id).await.unwrap();
        assert_eq!(format!("{kept:?}"), format!("{file:?}"), "order {order_id}");
        let kept = self.store.order(order_id).await.unwrap();
        let file = self.file.order(order_id).await.unwrap();
        assert_eq!(format!("{kept:?}"), format!("{file:?}"), "order {order_id}");
        for authz in authz_ids {
            let kept = self.store.authz_with_challenges(authz).await.unwrap();
            let file = self.file.authz_with_challenges(authz).await.unwrap();
            assert_eq!(format!("{kept:?}"), format!("{file:?}"), "authz {authz}");
            for kind in ["http-01", "dns-01", "tls-alpn-01"] {
                let challenge = format!("{authz}-{kind}");
                let kept = self.store.challenge_with_authz(&challenge).await.unwrap();
                let file = self.file.challenge_with_authz(&challenge).await.unwrap();
                assert_eq!(format!("{kept:?}"), format!("{file:?}"), "{challenge}");
            }
        }
    }

    fn kept_authz(&self, id: &str) -> bool {
        self.store
            .fresh
            .as_ref()
            .unwrap()
            .authz_with_challenges(id)
            .is_some()
    }

    fn kept_order(&self, id: &str) -> bool {
        self.store.fresh.as_ref().unwrap().order(id).is_some()
    }
}

#[tokio::test]
async fn memory_and_file_agree_through_an_issuance() {
    let s = stores().await;
    let reused = new_authz("reused", "r.example");
    s.store.insert_authz("acct", &reused, now()).await.unwrap();
    s.store
        .insert_order(
            &order("o1", "acct"),
            &[
                OrderAuthz::New(new_authz("a1", "a.example")),
                OrderAuthz::Reuse("reused".into()),
            ],
        )
        .await
        .unwrap();
    assert!(s.kept_order("o1") && s.kept_authz("a1") && s.kept_authz("reused"));
    s.agree("o1", &["a1", "reused"]).await;

    // Validating both authorizations: memory follows the start and the outcome.
    for authz in ["a1", "reused"] {
        let challenge = format!("{authz}-http-01");
        assert!(s.store.start_challenge(&challenge).await.unwrap());
        // An applied write: memory follows once it is committed, as other connections do.
        s.store
            .execute(Statement::new("SELECT 1", vec![]))
            .await
            .unwrap();
        s.agree("o1", &["a1", "reused"]).await;
        assert!(s
            .store
            .finish_challenge(&challenge, authz, Some(now()), None, now() + 7200)
            .await
            .unwrap());
        assert!(s.kept_authz(authz));
        s.agree("o1", &["a1", "reused"]).await;
    }
    assert!(s.kept_order("o1"));
    let (order, authzs) = s.store.order_with_authzs("o1").await.unwrap().unwrap();
    assert_eq!(order.status, OrderStatus::Pending);
    assert!(authzs
        .iter()
        .all(|a| a.status == AuthzStatus::Valid && a.validation.is_some()));

    // Finalize and issue.
    assert!(s
        .store
        .begin_processing(&Claim::for_tests("o1", now()))
        .await
        .unwrap());
    let pending = PendingCertificate {
        issuer: "default",
        order_id: Some("o1"),
        account_id: Some("acct"),
        not_before: now(),
        not_after: now() + 86400,
        crl_shard: Some(3),
    };
    s.store.record_tbs(&pending, "0a0b", b"tbs").await.unwrap();
    // Finalized: neither the order nor its authorizations are held for anyone any more.
    assert!(!s.kept_order("o1") && !s.kept_authz("a1") && !s.kept_authz("reused"));
    s.agree("o1", &["a1", "reused"]).await;
    let issued = IssuedRecord {
        serial: "0a0b",
        tbs: b"tbs",
        der: b"der",
        chain_pem: "chain",
    };
    s.store.complete_issuance(&issued, &pending).await.unwrap();
    s.agree("o1", &["a1", "reused"]).await;
    assert_eq!(
        s.store.order("o1").await.unwrap().unwrap().status,
        OrderStatus::Valid
    );
    let kept = s.store.certificate_for_download("0a0b").await.unwrap();
    assert!(s
        .store
        .fresh
        .as_ref()
        .unwrap()
        .certificate("0a0b")
        .is_some());
    let file = s.file.certificate("0a0b").await.unwrap();
    assert_eq!(format!("{kept:?}"), format!("{file:?}"));

    // Revoked: the download still serves it, the revocation is read from the file.
    assert!(s
        .store
        .revoke_certificate("0a0b", 1, now(), None)
        .await
        .unwrap());
    assert!(s
        .store
        .certificate("0a0b")
        .await
        .unwrap()
        .unwrap()
        .revoked_at
        .is_some());
    let download = s
        .store
        .certificate_for_download("0a0b")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (download.status, download.der.as_deref()),
        (CertificateStatus::Issued, Some(&b"der"[..]))
    );
}

#[tokio::test]
async fn failed_and_requeued_validations_are_followed() {
    let s = stores().await;
    for (order_id, authz) in [("failed", "af"), ("stuck", "as"), ("done", "ad")] {
        s.store
            .insert_order(
                &order(order_id, "acct"),
                &[OrderAuthz::New(new_authz(
                    authz,
                    &format!("{authz}.example"),
                ))],
            )
            .await
            .unwrap();
    }
    assert!(s.store.start_challenge("af-dns-01").await.unwrap());
    assert!(s
        .store
        .finish_challenge(
            "af-dns-01",
            "af",
            None,
            Some(r#"{"detail":"no"}"#),
            now() + 7200
        )
        .await
        .unwrap());
    assert!(s.kept_authz("af"));
    s.agree("failed", &["af"]).await;
    let (authz, _) = s.store.authz_with_challenges("af").await.unwrap().unwrap();
    assert_eq!(authz.status, AuthzStatus::Invalid);

    // A second outcome for a finished challenge changes nothing in the file: memory forgets.
    assert!(!s
        .store
        .finish_challenge("af-dns-01", "af", Some(now()), None, now() + 7200)
        .await
        .unwrap());
    assert!(!s.kept_authz("af"));
    s.agree("failed", &["af"]).await;

    // A validation abandoned by a stopped process goes back to pending.
    assert!(s.store.start_challenge("as-http-01").await.unwrap());
    assert!(s.store.start_challenge("ad-http-01").await.unwrap());
    assert!(s
        .store
        .finish_challenge("ad-http-01", "ad", Some(now()), None, now() + 7200)
        .await
        .unwrap());
    assert_eq!(
        s.store.requeue_stuck_challenges(now() + 10).await.unwrap(),
        1
    );
    for (order_id, authz) in [("failed", "af"), ("stuck", "as"), ("done", "ad")] {
        s.agree(order_id, &[authz]).await;
    }
    let (challenge, _) = s
        .store
        .challenge_with_authz("as-http-01")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(challenge.status, ChallengeStatus::Pending);
}

#[tokio::test]
async fn failed_deactivated_and_recovered_orders_are_read_from_the_file() {
    let s = stores().await;
    for (order_id, authz, account) in [
        ("failed", "af", "acct"),
        ("deact", "ad", "other"),
        ("kept", "ak", "acct"),
        ("recovered", "ar", "acct"),
    ] {
        s.store
            .insert_order(
                &order(order_id, account),
                &[OrderAuthz::New(new_authz(
                    authz,
                    &format!("{authz}.example"),
                ))],
            )
            .await
            .unwrap();
    }
    s.store
        .fail_order("failed", r#"{"detail":"x"}"#)
        .await
        .unwrap();
    assert!(!s.kept_order("failed"));
    assert_eq!(
        s.store.order("failed").await.unwrap().unwrap().status,
        OrderStatus::Invalid
    );

    assert!(s.store.deactivate_account("other").await.unwrap());
    assert!(!s.kept_authz("ad") && s.kept_authz("ak"));
    let (authz, _) = s.store.authz_with_challenges("ad").await.unwrap().unwrap();
    assert_eq!(authz.status, AuthzStatus::Deactivated);

    assert!(s.store.deactivate_authz("ak").await.unwrap());
    assert!(!s.kept_authz("ak"));

    let t = now();
    assert!(s
        .store
        .begin_processing(&Claim::for_tests("recovered", t))
        .await
        .unwrap());
    assert!(s
        .store
        .claim_stale_order("recovered", t, t + 1)
        .await
        .unwrap());
    s.store.mark_order_valid("recovered", "0c").await.unwrap();
    for (order_id, authz) in [
        ("failed", "af"),
        ("deact", "ad"),
        ("kept", "ak"),
        ("recovered", "ar"),
    ] {
        s.agree(order_id, &[authz]).await;
    }
}

/// A change whose caller went away (a client that hung up) still drops the row from memory:
/// the writer does it, not the caller.
#[tokio::test]
async fn a_change_whose_caller_is_gone_still_drops_the_row() {
    let s = stores().await;
    s.store
        .insert_order(
            &order("o", "acct"),
            &[OrderAuthz::New(new_authz("a", "a.example"))],
        )
        .await
        .unwrap();
    // Hold the writer so that the change waits in its queue, then drop its caller.
    let release = hold_writer(&s.store).await;
    let caller = {
        let store = s.store.clone();
        tokio::spawn(async move { store.deactivate_authz("a").await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    caller.abort();
    assert!(caller.await.unwrap_err().is_cancelled());
    release.send(()).unwrap();

    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (authz, _) = s.file.authz_with_challenges("a").await.unwrap().unwrap();
        if authz.status == AuthzStatus::Deactivated {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the queued change never committed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (authz, _) = s.store.authz_with_challenges("a").await.unwrap().unwrap();
    assert_eq!(
        authz.status,
        AuthzStatus::Deactivated,
        "memory kept the row from before"
    );
    s.agree("o", &["a"]).await;
}

/// Readers racing with changes: a read that starts after a change was answered sees it, and
/// memory and file agree once the changes are done.
#[tokio::test]
async fn reads_racing_with_changes_never_go_back() {
    let s = stores().await;
    const ORDERS: usize = 40;
    for i in 0..ORDERS {
        s.store
            .insert_order(
                &order(&format!("o{i}"), "acct"),
                &[OrderAuthz::New(new_authz(&format!("a{i}"), "a.example"))],
            )
            .await
            .unwrap();
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut readers = tokio::task::JoinSet::new();
    for r in 0..4 {
        let store = s.store.clone();
        let stop = stop.clone();
        readers.spawn(async move {
            let mut reads = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && reads < 200_000 {
                let i = (reads as usize * 7 + r) % ORDERS;
                store.order_with_authzs(&format!("o{i}")).await.unwrap();
                store
                    .challenge_with_authz(&format!("a{i}-dns-01"))
                    .await
                    .unwrap();
                reads += 1;
            }
        });
    }
    let mut changers = tokio::task::JoinSet::new();
    for i in 0..ORDERS {
        let store = s.store.clone();
        changers.spawn(async move {
            let authz = format!("a{i}");
            let challenge = format!("{authz}-http-01");
            assert!(store.start_challenge(&challenge).await.unwrap());
            assert!(store
                .finish_challenge(&challenge, &authz, Some(now()), None, now() + 7200)
                .await
                .unwrap());
            let (_, authzs) = store
                .order_with_authzs(&format!("o{i}"))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(
                authzs[0].status,
                AuthzStatus::Valid,
                "read after the change was answered"
            );
            assert!(store
                .begin_processing(&Claim::for_tests(&format!("o{i}"), now()))
                .await
                .unwrap());
            store.fail_order(&format!("o{i}"), "{}").await.unwrap();
            let order = store.order(&format!("o{i}")).await.unwrap().unwrap();
            assert_eq!(
                order.status,
                OrderStatus::Invalid,
                "read after the change was answered"
            );
        });
    }
    while let Some(done) = changers.join_next().await {
        done.unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    while let Some(done) = readers.join_next().await {
        done.unwrap();
    }
    for i in 0..ORDERS {
        s.agree(&format!("o{i}"), &[&format!("a{i}")]).await;
    }
}

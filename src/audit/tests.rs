//! The audit trail against a real SQLite file: concurrent records make one gap-free chain,
//! `verify` accepts it with its signed checkpoint, and finds the first entry of each kind of
//! tampering (a changed byte, a removed entry, two entries swapped, a rewritten chain under a
//! checkpoint, a truncated end).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use pkid_backends::{KeyAlgorithm, SigningBackend, SoftwareBackend};

use super::checkpoint::checkpoint_now;
use super::*;
use crate::store::AuditEntryRow;

struct World {
    store: Store,
    audit: Audit,
    backend: Arc<SoftwareBackend>,
    _dir: tempfile::TempDir,
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    let store = Store::connect(&url, 2).await.unwrap();
    let kek = pkid_backends::KeyEncryptionKey::generate();
    let (backend, _) = SoftwareBackend::open_or_create(
        "default",
        &dir.path().join("ca"),
        &kek,
        KeyAlgorithm::EcdsaP256,
    )
    .unwrap();
    World {
        audit: Audit::new(store.clone()),
        store,
        backend: Arc::new(backend),
        _dir: dir,
    }
}

impl World {
    fn trusted(&self) -> Vec<Vec<u8>> {
        self.backend.ca_chain()
    }

    async fn verify(&self) -> Result<Verified, VerifyError> {
        verify(&self.store.reads(), &self.trusted()).await
    }

    async fn broken_at(&self) -> i64 {
        match self.verify().await {
            Err(VerifyError::Broken(b)) => b.seq,
            other => panic!("the trail should be broken: {other:?}"),
        }
    }

    /// A signed checkpoint of the head now.
    async fn checkpoint(&self) -> i64 {
        checkpoint_now(&self.store, "default", self.backend.as_ref())
            .await
            .unwrap()
            .expect("a checkpoint")
            .seq
    }

    async fn sql(&self, statement: &str) {
        sqlx::query(statement)
            .execute(self.store.pool())
            .await
            .unwrap();
    }
}

/// Ten records, concurrently.
async fn ten(w: &World) {
    let records = (0..10).map(|i| {
        w.audit.record(
            Event::success(format!("user:u{i}"), "user.created", format!("user:u{i}"))
                .with(serde_json::json!({ "i": i })),
        )
    });
    futures_util::future::join_all(records).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_records_make_one_chain_that_verifies_with_its_checkpoint() {
    let w = world().await;
    assert_eq!(
        w.verify().await.unwrap().entries,
        0,
        "an empty trail is intact"
    );
    ten(&w).await;
    assert_eq!(w.checkpoint().await, 10);
    assert!(
        checkpoint_now(&w.store, "default", w.backend.as_ref())
            .await
            .unwrap()
            .is_none(),
        "nothing new to sign"
    );
    ten(&w).await;
    let verified = w.verify().await.unwrap();
    assert_eq!(verified.entries, 20);
    assert_eq!(verified.checkpoints, 1);
    assert_eq!(verified.last_checkpoint, Some((10, "default".to_string())));
    let rows = w.store.audit_entries(0, 100).await.unwrap();
    let seqs: Vec<i64> = rows.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=20).collect::<Vec<_>>());
    assert_eq!(rows[0].prev_hash, crate::store::GENESIS_HASH);
    assert!(rows.windows(2).all(|p| p[1].prev_hash == p[0].hash));
    let alice = w
        .store
        .audit_search(0, None, Some("user:u3"), 100)
        .await
        .unwrap();
    assert_eq!(alice.len(), 2);
    assert!(w
        .store
        .audit_search(0, Some(rows[19].at + 1), None, 100)
        .await
        .unwrap()
        .is_empty());
    // Another CA's certificate is not trusted for the checkpoint.
    let stranger = verify(&w.store.reads(), &[]).await;
    assert!(matches!(stranger, Err(VerifyError::Broken(b)) if b.seq == 10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_kind_of_tampering_is_found_at_its_first_entry() {
    let w = world().await;
    ten(&w).await;
    let original: Vec<AuditEntryRow> = w.store.audit_entries(0, 100).await.unwrap();

    // One byte of a past entry.
    w.sql("UPDATE audit_log SET principal = 'user:mallory' WHERE seq = 4")
        .await;
    assert_eq!(w.broken_at().await, 4);
    w.sql(&format!(
        "UPDATE audit_log SET principal = '{}' WHERE seq = 4",
        original[3].principal
    ))
    .await;
    w.verify().await.unwrap();

    // Two entries swapped (their positions exchanged).
    w.sql("UPDATE audit_log SET seq = -1 WHERE seq = 6").await;
    w.sql("UPDATE audit_log SET seq = 6 WHERE seq = 7").await;
    w.sql("UPDATE audit_log SET seq = 7 WHERE seq = -1").await;
    assert_eq!(w.broken_at().await, 6);
    w.sql("UPDATE audit_log SET seq = -1 WHERE seq = 6").await;
    w.sql("UPDATE audit_log SET seq = 6 WHERE seq = 7").await;
    w.sql("UPDATE audit_log SET seq = 7 WHERE seq = -1").await;
    w.verify().await.unwrap();

    // An entry removed.
    w.sql("DELETE FROM audit_log WHERE seq = 8").await;
    assert_eq!(w.broken_at().await, 8);

    // The whole chain rewritten after entry 2 (hashes recomputed) is still caught by a
    // checkpoint over its head.
    let w = world().await;
    ten(&w).await;
    w.checkpoint().await;
    let mut rows = w.store.audit_entries(0, 100).await.unwrap();
    rows[2].principal = "user:mallory".into();
    for i in 2..rows.len() {
        rows[i].prev_hash = rows[i - 1].hash.clone();
        rows[i].hash = chain::entry_hash(&rows[i]);
        w.sql(&format!(
            "UPDATE audit_log SET principal = '{}', prev_hash = '{}', hash = '{}' WHERE seq = {}",
            rows[i].principal, rows[i].prev_hash, rows[i].hash, rows[i].seq
        ))
        .await;
    }
    assert_eq!(w.broken_at().await, 10, "the checkpoint's entry");
    // The end cut off below the checkpoint.
    let w2 = world().await;
    ten(&w2).await;
    w2.checkpoint().await;
    w2.sql("DELETE FROM audit_log WHERE seq >= 9").await;
    assert_eq!(w2.broken_at().await, 10);
}

//! Signed checkpoints of the audit chain: every `audit.checkpoint_interval_secs`, when entries
//! were added since the last checkpoint, the issuing key of `audit.checkpoint_backend` signs the
//! head's position and hash ([`super::chain::checkpoint_message`], domain-separated by the
//! backend: `pkid_backends::local::checkpoint`). The signature verifies with that CA
//! certificate's public key, which the checkpoint keeps.
//!
//! Why a CA key and not a key of the audit's own: a key kept beside the log (sealed with the
//! key-encryption key in the same database) is forged by whoever can rewrite the log with the
//! key-encryption key at hand; a PKCS#11 issuing key cannot be read out at all. The checkpoint
//! backend can be the HSM's (`audit.checkpoint_backend = "hsm"`); the default is the default
//! software CA. The cost is one signature per interval. Replicas may each checkpoint the same
//! head: the second insert is a no-op.

use std::sync::Arc;
use std::time::Duration;

use pkid_backends::SigningBackend;

use super::chain::checkpoint_message;
use crate::store::{now, AuditCheckpointRow, Store};

/// A checkpoint of the chain's head now, unless the head has one already. `Ok(None)`: nothing
/// new to sign.
pub async fn checkpoint_now(
    store: &Store,
    backend_name: &str,
    backend: &dyn SigningBackend,
) -> Result<Option<AuditCheckpointRow>, String> {
    let Some(head) = store.audit_head().await.map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    let latest = store
        .audit_checkpoints()
        .await
        .map_err(|e| e.to_string())?
        .last()
        .map(|c| c.seq);
    if latest >= Some(head.seq) {
        return Ok(None);
    }
    let certificate = backend
        .ca_chain()
        .into_iter()
        .next()
        .ok_or_else(|| format!("backend {backend_name:?} has no CA certificate"))?;
    let at = now();
    let (algorithm, signature) = backend
        .sign_checkpoint(&checkpoint_message(head.seq, &head.hash, at))
        .await
        .map_err(|e| format!("backend {backend_name:?}: {e}"))?;
    let row = AuditCheckpointRow {
        seq: head.seq,
        hash: head.hash,
        at,
        backend: backend_name.to_string(),
        algorithm: algorithm.as_str().to_string(),
        certificate,
        signature,
    };
    store
        .insert_audit_checkpoint(&row)
        .await
        .map_err(|e| e.to_string())?;
    Ok(Some(row))
}

/// Checkpoints every `interval` while pkid runs (the first one `interval` after start).
pub fn spawn_checkpoints(
    store: Store,
    backend_name: String,
    backend: Arc<dyn SigningBackend>,
    interval: Duration,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match checkpoint_now(&store, &backend_name, backend.as_ref()).await {
                Ok(Some(row)) => {
                    tracing::info!(seq = row.seq, backend = %backend_name, "signed an audit checkpoint")
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(code = "PKID-AUDIT", error = %e, "an audit checkpoint failed")
                }
            }
        }
    });
}

//! The chain's arithmetic: the canonical encoding an entry is hashed over, the message a
//! checkpoint signs, and the check of a whole chain (`pkid audit verify`).
//!
//! An entry's hash is SHA-256 over
//! `"pkid-audit-v1\0" ‖ seq (8 bytes, big-endian) ‖ at (8 bytes, big-endian) ‖ principal ‖
//! action ‖ resource ‖ outcome ‖ detail ‖ prev_hash`, each text field as its length (4 bytes,
//! big-endian) then its UTF-8 bytes, `detail` preceded by one byte saying whether it is present,
//! and `prev_hash` as the previous entry's hash (64 hex digits) in its text form. Lengths make
//! the encoding unambiguous: no two different entries encode to the same bytes, so changing
//! any column — the position, the time, or one byte of a text — changes the hash, and with it
//! every later entry's `prev_hash`.

use std::collections::BTreeMap;

use pkid_backends::local::checkpoint::verify_checkpoint;
use pkid_backends::KeyAlgorithm;

use crate::store::{AuditCheckpointRow, AuditEntryRow, Reads, StoreError, GENESIS_HASH};

const ENTRY_DOMAIN: &[u8] = b"pkid-audit-v1\0";

fn push_text(out: &mut Vec<u8>, text: &str) {
    let len = u32::try_from(text.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(text.as_bytes());
}

/// The bytes an entry's hash is taken over.
pub fn canonical_encoding(row: &AuditEntryRow) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(ENTRY_DOMAIN);
    out.extend_from_slice(&row.seq.to_be_bytes());
    out.extend_from_slice(&row.at.to_be_bytes());
    for text in [&row.principal, &row.action, &row.resource, &row.outcome] {
        push_text(&mut out, text);
    }
    match &row.detail {
        Some(detail) => {
            out.push(1);
            push_text(&mut out, detail);
        }
        None => out.push(0),
    }
    push_text(&mut out, &row.prev_hash);
    out
}

/// An entry's hash (hex), over everything but its `hash` column.
pub fn entry_hash(row: &AuditEntryRow) -> String {
    hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        &canonical_encoding(row),
    ))
}

/// What a checkpoint signs (the backend prefixes its domain label): the entry's position, its
/// hash and the checkpoint's time, each fixed-length or length-prefixed.
pub fn checkpoint_message(seq: i64, hash: &str, at: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(96);
    out.extend_from_slice(&seq.to_be_bytes());
    push_text(&mut out, hash);
    out.extend_from_slice(&at.to_be_bytes());
    out
}

/// An intact chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub entries: i64,
    /// The last entry's hash (the genesis value for an empty chain).
    pub head: String,
    pub checkpoints: usize,
    /// The entry the last checkpoint covers, and the backend that signed it.
    pub last_checkpoint: Option<(i64, String)>,
}

/// Where a chain is broken: the first entry (by position) that does not hold, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    pub seq: i64,
    pub reason: String,
    /// The entry as stored, when there is one at `seq`.
    pub entry: Option<AuditEntryRow>,
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("the audit trail is broken at entry {}: {}", .0.seq, .0.reason)]
    Broken(Box<Broken>),
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

fn broken(seq: i64, reason: impl Into<String>, entry: Option<AuditEntryRow>) -> VerifyError {
    VerifyError::Broken(Box::new(Broken {
        seq,
        reason: reason.into(),
        entry,
    }))
}

/// Entries read per query while verifying.
const PAGE: i64 = 1000;

/// Check the whole chain and its checkpoints: positions 1, 2, 3 … without a gap, each entry's
/// hash over its content, each `prev_hash` the hash before it; each checkpoint's entry hash,
/// its signature by its certificate's key, and that certificate one of `trusted` (the CA
/// certificates of the configured backends).
pub async fn verify(reads: &Reads, trusted: &[Vec<u8>]) -> Result<Verified, VerifyError> {
    let checkpoints = reads.audit_checkpoints().await?;
    let mut wanted: BTreeMap<i64, &AuditCheckpointRow> =
        checkpoints.iter().map(|c| (c.seq, c)).collect();
    let mut expected_seq = 1;
    let mut prev_hash = GENESIS_HASH.to_string();
    loop {
        let page = reads.audit_entries(expected_seq - 1, PAGE).await?;
        if page.is_empty() {
            break;
        }
        for row in page {
            if row.seq != expected_seq {
                return Err(broken(
                    expected_seq,
                    format!(
                        "entry {expected_seq} is missing (the next stored is {}): entries were removed",
                        row.seq
                    ),
                    None,
                ));
            }
            if entry_hash(&row) != row.hash {
                return Err(broken(
                    row.seq,
                    "its hash does not match its content: the entry was changed (or moved)",
                    Some(row),
                ));
            }
            if row.prev_hash != prev_hash {
                return Err(broken(
                    row.seq,
                    "it does not follow the entry before it (another previous hash): entries \
                     were removed, reordered or rewritten",
                    Some(row),
                ));
            }
            if let Some(checkpoint) = wanted.remove(&row.seq) {
                check_checkpoint(checkpoint, &row, trusted)?;
            }
            prev_hash = row.hash;
            expected_seq += 1;
        }
    }
    let entries = expected_seq - 1;
    if let Some((seq, _)) = wanted.iter().next() {
        return Err(broken(
            *seq,
            format!(
                "a signed checkpoint covers entry {seq}, but the trail ends at entry {entries}: \
                 entries were removed from its end"
            ),
            None,
        ));
    }
    Ok(Verified {
        entries,
        head: prev_hash,
        checkpoints: checkpoints.len(),
        last_checkpoint: checkpoints.last().map(|c| (c.seq, c.backend.clone())),
    })
}

fn check_checkpoint(
    checkpoint: &AuditCheckpointRow,
    row: &AuditEntryRow,
    trusted: &[Vec<u8>],
) -> Result<(), VerifyError> {
    let fail = |reason: String| broken(row.seq, reason, Some(row.clone()));
    if checkpoint.hash != row.hash {
        return Err(fail(
            "the entry's hash is not the one its signed checkpoint holds: the chain up to it \
             was rewritten"
                .into(),
        ));
    }
    if !trusted.contains(&checkpoint.certificate) {
        return Err(fail(format!(
            "its checkpoint is signed by a certificate that is not backend {:?}'s",
            checkpoint.backend
        )));
    }
    let algorithm: KeyAlgorithm = checkpoint.algorithm.parse().map_err(|_| {
        fail(format!(
            "its checkpoint names an unknown algorithm {:?}",
            checkpoint.algorithm
        ))
    })?;
    let message = checkpoint_message(checkpoint.seq, &checkpoint.hash, checkpoint.at);
    verify_checkpoint(
        &checkpoint.certificate,
        algorithm,
        &message,
        &checkpoint.signature,
    )
    .map_err(|e| fail(format!("its checkpoint's signature does not verify: {e}")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn row(seq: i64, principal: &str, detail: Option<&str>) -> AuditEntryRow {
        AuditEntryRow {
            seq,
            at: 1_700_000_000,
            principal: principal.into(),
            action: "certificate.issued".into(),
            resource: "certificate:01".into(),
            outcome: "success".into(),
            detail: detail.map(str::to_string),
            prev_hash: GENESIS_HASH.into(),
            hash: String::new(),
        }
    }

    #[test]
    fn every_column_and_every_boundary_counts() {
        let base = entry_hash(&row(1, "user:alice", None));
        assert_eq!(base.len(), 64);
        assert_eq!(
            base,
            entry_hash(&row(1, "user:alice", None)),
            "deterministic"
        );
        assert_ne!(base, entry_hash(&row(2, "user:alice", None)), "position");
        assert_ne!(base, entry_hash(&row(1, "user:alicf", None)), "one byte");
        assert_ne!(
            base,
            entry_hash(&row(1, "user:alice", Some(""))),
            "empty detail is a detail"
        );
        // Moving bytes between fields changes the encoding.
        let mut shifted = row(1, "user:alic", None);
        shifted.action = format!("e{}", shifted.action);
        assert_ne!(base, entry_hash(&shifted));
        let mut other_prev = row(1, "user:alice", None);
        other_prev.prev_hash = "1".repeat(64);
        assert_ne!(base, entry_hash(&other_prev));
    }
}

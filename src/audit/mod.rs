//! The audit trail: every state change pkid makes — by any surface, the command line or itself —
//! recorded as one entry with who (principal), what (action), on what (resource), when and how it
//! ended (outcome), in an append-only hash chain with periodic signed checkpoints
//! (`docs/security.md`, "Audit trail").
//!
//! - this file: [`Event`] (what a caller records) and [`Audit`], the handle that records it: a
//!   task per process takes the events queued meanwhile and appends them in one transaction
//!   (`Store::append_audit`, where the chain is kept one under concurrency), and each caller
//!   returns once its entry is durable;
//! - [`chain`]: the canonical encoding and hash of an entry, the checkpoint message, and
//!   [`verify`] (`pkid audit verify`);
//! - [`checkpoint`]: the signed checkpoints, through a backend's issuing key.
//!
//! The RA hands [`Audit`] to every surface as `Ra::audit`; identity records logins and the
//! tokens it issues; start-up records the configuration it loaded and the CA keys it created;
//! the operator commands record what they change.

pub mod chain;
pub mod checkpoint;
#[cfg(test)]
mod tests;

use std::sync::{Arc, OnceLock};

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::store::{now, AuditEntryRow, Store};

pub use chain::{verify, Broken, Verified, VerifyError};

/// The principal of what pkid does on its own (start-up, renewals, recovery).
pub const SYSTEM: &str = "pkid";
/// The principal of the operator's command line (`pkid user create`, `pkid revoke` …): whoever
/// can run it holds the configuration and the key-encryption key.
pub const COMMAND_LINE: &str = "operator:command-line";

/// How a recorded action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
        }
    }
}

/// One thing that happened, as a caller records it. Actions are dotted names, noun first
/// (`certificate.issued`, `acme.account.created`, `login`); resources name their kind
/// (`certificate:SERIAL`, `acme-account:ID`, `user:NAME`). Never a secret in any field.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub principal: String,
    pub action: String,
    pub resource: String,
    pub outcome: Outcome,
    /// A small JSON object with what else matters (a reason, an issuer …).
    pub detail: Option<Value>,
}

impl Event {
    /// `principal` did `action` on `resource`, and it succeeded.
    pub fn success(
        principal: impl Into<String>,
        action: impl Into<String>,
        resource: impl Into<String>,
    ) -> Event {
        Event {
            principal: principal.into(),
            action: action.into(),
            resource: resource.into(),
            outcome: Outcome::Success,
            detail: None,
        }
    }

    /// `principal` tried `action` on `resource`, and it failed because of `reason`.
    pub fn failure(
        principal: impl Into<String>,
        action: impl Into<String>,
        resource: impl Into<String>,
        reason: impl Into<String>,
    ) -> Event {
        Event {
            outcome: Outcome::Failure,
            detail: Some(serde_json::json!({ "reason": reason.into() })),
            ..Event::success(principal, action, resource)
        }
    }

    /// The same, with `detail` (a JSON object) merged into its detail.
    pub fn with(mut self, detail: Value) -> Event {
        self.detail = match (self.detail.take(), detail) {
            (Some(Value::Object(mut mine)), Value::Object(more)) => {
                mine.extend(more);
                Some(Value::Object(mine))
            }
            (_, detail) => Some(detail),
        };
        self
    }

    /// The entry to append; the chain fills in its position and hashes.
    fn entry(self) -> AuditEntryRow {
        AuditEntryRow {
            seq: 0,
            at: now(),
            principal: self.principal,
            action: self.action,
            resource: self.resource,
            outcome: self.outcome.as_str().to_string(),
            detail: self.detail.map(|d| d.to_string()),
            prev_hash: String::new(),
            hash: String::new(),
        }
    }
}

/// Events waiting for the appender, with whom to tell when they are durable.
struct Queued {
    entry: AuditEntryRow,
    done: oneshot::Sender<bool>,
}

/// Most events appended in one transaction.
const BATCH: usize = 256;
/// Events that may wait for the appender before callers wait to queue.
const QUEUE: usize = 4096;

/// Records events in the audit trail. Cheap to clone; clones share one appender task, started
/// at the first event.
#[derive(Clone)]
pub struct Audit {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    queue: OnceLock<mpsc::Sender<Queued>>,
}

impl Audit {
    pub fn new(store: Store) -> Audit {
        Audit {
            inner: Arc::new(Inner {
                store,
                queue: OnceLock::new(),
            }),
        }
    }

    /// Record `event`; returns once its entry is durable in the chain. A failure to record is
    /// logged (error, code `PKID-AUDIT`) and does not undo what was recorded: callers record
    /// after the change they record.
    pub async fn record(&self, event: Event) {
        let action = event.action.clone();
        let queue = self.inner.queue.get_or_init(|| {
            let (tx, rx) = mpsc::channel(QUEUE);
            tokio::spawn(append(self.inner.store.clone(), rx));
            tx
        });
        let (done, appended) = oneshot::channel();
        let queued = Queued {
            entry: event.entry(),
            done,
        };
        let recorded = queue.send(queued).await.is_ok() && appended.await.unwrap_or(false);
        if !recorded {
            tracing::error!(code = "PKID-AUDIT", action = %action, "an audit entry could not be recorded");
        }
    }
}

/// The appender: takes what is queued (at most [`BATCH`]), appends it as one transaction, and
/// answers each caller; ends when every [`Audit`] is gone.
async fn append(store: Store, mut queue: mpsc::Receiver<Queued>) {
    let mut batch = Vec::with_capacity(BATCH);
    while queue.recv_many(&mut batch, BATCH).await > 0 {
        let (entries, waiting): (Vec<_>, Vec<_>) =
            batch.drain(..).map(|q| (q.entry, q.done)).unzip();
        let appended = match store.append_audit(entries, chain::entry_hash).await {
            Ok(_) => true,
            Err(e) => {
                tracing::error!(code = "PKID-AUDIT", error = %e, "appending to the audit trail failed");
                false
            }
        };
        for done in waiting {
            let _ = done.send(appended);
        }
    }
}

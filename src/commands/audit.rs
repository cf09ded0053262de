//! `pkid audit verify`, `pkid audit list` and `pkid audit checkpoint`: the audit trail as an
//! operator checks it (docs/security.md, "Audit trail").

use crate::audit::{Broken, VerifyError};
use crate::config::Config;
use crate::startup::{open_authorities, BoxError};
use crate::store::AuditEntryRow;

/// Entries listed per query.
const PAGE: i64 = 1000;

fn line(row: &AuditEntryRow) -> String {
    format!(
        "{}\t{}\t{}\t{}\t{}\t{}\t{}",
        row.seq,
        crate::pki::rfc3339(row.at),
        row.principal,
        row.action,
        row.resource,
        row.outcome,
        row.detail.as_deref().unwrap_or("-"),
    )
}

/// `pkid audit verify`: the whole chain and its signed checkpoints (their signatures by the
/// configured backends' CA certificates). Fails (non-zero exit) with the first entry that does
/// not hold.
pub async fn verify(cfg: &Config) -> Result<(), BoxError> {
    let authorities = open_authorities(cfg).await?;
    let trusted: Vec<Vec<u8>> = authorities
        .cas
        .iter()
        .flat_map(|ca| ca.backend.ca_chain())
        .collect();
    match crate::audit::verify(&authorities.store.reads(), &trusted).await {
        Ok(verified) => {
            println!(
                "audit trail intact: {} entries, head {}",
                verified.entries, verified.head
            );
            match verified.last_checkpoint {
                Some((seq, backend)) => println!(
                    "{} signed checkpoints, the last at entry {seq} by backend {backend}; entries after it are chained but not yet signed",
                    verified.checkpoints
                ),
                None => println!("no signed checkpoint yet"),
            }
            Ok(())
        }
        Err(VerifyError::Broken(broken)) => {
            let Broken { seq, reason, entry } = *broken;
            println!("audit trail BROKEN at entry {seq}: {reason}");
            if let Some(entry) = entry {
                println!("{}", line(&entry));
            }
            Err(format!("the audit trail is broken at entry {seq}").into())
        }
        Err(VerifyError::Store(e)) => Err(e.into()),
    }
}

/// `pkid audit list [--since RFC3339] [--principal P]`: entries in chain order, one per line
/// (position, time, principal, action, resource, outcome, detail), tab-separated.
pub async fn list(
    cfg: &Config,
    since: Option<&str>,
    principal: Option<&str>,
) -> Result<(), BoxError> {
    let since = since
        .map(|text| super::rfc3339_option("--since", text))
        .transpose()?;
    let authorities = open_authorities(cfg).await?;
    let reads = authorities.store.reads();
    let mut after = 0;
    loop {
        let page = reads.audit_search(after, since, principal, PAGE).await?;
        let Some(last) = page.last() else {
            return Ok(());
        };
        after = last.seq;
        for row in &page {
            println!("{}", line(row));
        }
    }
}

/// `pkid audit checkpoint`: sign the chain's head now (before a backup, say), with the
/// configured checkpoint backend.
pub async fn checkpoint(cfg: &Config) -> Result<(), BoxError> {
    let authorities = open_authorities(cfg).await?;
    let name = &cfg.audit.checkpoint_backend;
    let ca = authorities
        .cas
        .iter()
        .find(|ca| &ca.name == name)
        .ok_or_else(|| format!("audit.checkpoint_backend {name:?} is not configured"))?;
    match crate::audit::checkpoint::checkpoint_now(&authorities.store, name, ca.backend.as_ref())
        .await?
    {
        Some(row) => println!(
            "signed a checkpoint at entry {} ({}) with backend {name}",
            row.seq, row.hash
        ),
        None => {
            println!("nothing to sign: the head has a checkpoint already (or the trail is empty)")
        }
    }
    Ok(())
}

//! The RA's IAM side as start-up builds it: the trust anchors of certificate linking (the
//! folder `iam.trust_anchors_dir`, read once, and pkid's own CAs, read at each use through
//! [`own_cas`], the configured ones and those made at run time) and the proxy settings.

use std::sync::Arc;

use pkid_backends::KeyEncryptionKey;

use super::BoxError;
use crate::audit::Audit;
use crate::ca::registry::Issuers;
use crate::config::Config;
use crate::ra::iam::{load_anchor_folder, CaCertificates, Iam, IamSettings, TrustAnchors};
use crate::store::Store;

/// The certificates of `iam.trust_anchors_dir` (none when it is not set), each with its file:
/// IAM's trust anchors, and anchors of TLS client certificates too (a linked certificate
/// authenticates by TLS).
pub(super) fn anchor_folder(cfg: &Config) -> Result<Vec<(String, Vec<u8>)>, BoxError> {
    let dir = &cfg.iam.trust_anchors_dir;
    if dir.as_os_str().is_empty() {
        return Ok(Vec::new());
    }
    let anchors = load_anchor_folder(dir)?;
    tracing::info!(dir = %dir.display(), anchors = anchors.len(), "IAM trust anchors loaded");
    Ok(anchors)
}

/// pkid's own CAs, as IAM's trust anchors see them: the configured backends' CA certificates
/// and those of the CAs made at run time and certified, unless revoked (the issuer registry,
/// read at each use, so a CA made or certified through `/api/v1` anchors link requests at once
/// and a revoked one stops). The one place IAM learns which CAs pkid runs.
pub(super) fn own_cas(issuers: &Arc<Issuers>) -> Arc<dyn CaCertificates> {
    Arc::new(RegistryCas(issuers.clone()))
}

struct RegistryCas(Arc<Issuers>);

#[async_trait::async_trait]
impl CaCertificates for RegistryCas {
    async fn ca_certificates(&self) -> Vec<Vec<u8>> {
        let view = self.0.view().await;
        let stored = view
            .cas
            .iter()
            .filter(|ca| ca.row.revoked_at.is_none())
            .filter_map(|ca| ca.chain.first().cloned());
        self.0
            .configured()
            .iter()
            .flat_map(|ca| ca.backend.ca_chain())
            .chain(stored)
            .collect()
    }
}

/// The RA's IAM side over `store`, its anchors the folder's and `own`.
pub(super) fn open(
    cfg: &Config,
    store: &Store,
    kek: &Arc<KeyEncryptionKey>,
    folder: &[(String, Vec<u8>)],
    own: Arc<dyn CaCertificates>,
    audit: &Audit,
) -> Arc<Iam> {
    let folder: Vec<Vec<u8>> = folder.iter().map(|(_, der)| der.clone()).collect();
    Arc::new(
        Iam::new(
            store.clone(),
            kek.clone(),
            Arc::new(TrustAnchors::new(&folder, own)),
            IamSettings {
                proxy_max_lifetime_secs: i64::try_from(cfg.iam.proxy_max_lifetime_secs)
                    .unwrap_or(43200)
                    .max(120),
            },
        )
        .with_audit(audit.clone()),
    )
}

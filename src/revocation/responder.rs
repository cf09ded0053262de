//! Delegated OCSP responders (RFC 6960 §4.2.2.2): a short-lived certificate with
//! id-kp-OCSPSigning and id-pkix-ocsp-nocheck, issued by the CA through its backend for a fresh
//! software key that is sealed into the database; loaded by every replica, issued by one at a
//! time under a lease, renewed at two thirds of its life.

use std::sync::Arc;

use pkid_backends::sealed::KeyEncryptionKey;
use pkid_backends::{BackendError, KeyAlgorithm, KeySigner, SoftwareKey};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::{IssuerState, Revocation, RevocationError, CRL_LEASE_SECS};
use crate::store::OcspResponderRow;

/// A delegated OCSP responder: its certificate and the key that signs for it.
pub(super) struct Responder {
    pub(super) cert_der: Vec<u8>,
    pub(super) key: Arc<SoftwareKey>,
    pub(super) not_after: i64,
    pub(super) renew_at: i64,
}

/// Delegated responders: which issuers use one, their lifetime, and the key sealing theirs.
#[derive(Clone)]
pub(super) struct Delegation {
    pub(super) kek: Arc<KeyEncryptionKey>,
    pub(super) lifetime_secs: i64,
}

fn responder_aad(issuer: &str) -> Vec<u8> {
    format!("pkid OCSP responder key of {issuer}").into_bytes()
}

impl Revocation {
    /// The issuer's delegated responder, loaded from the database or issued (and sealed) when
    /// none is valid or the newest is past two thirds of its life. `None`: the issuer signs
    /// itself (no delegation configured).
    pub(super) async fn responder(
        &self,
        state: &IssuerState,
        at: i64,
    ) -> Result<Option<Arc<Responder>>, RevocationError> {
        let Some(delegation) = &state.delegated else {
            return Ok(None);
        };
        if let Some(current) = self.cached_responder(state) {
            if current.renew_at > at {
                return Ok(Some(current));
            }
        }
        let _guard = state.responder_lock.lock().await;
        if let Some(current) = self.cached_responder(state) {
            if current.renew_at > at {
                return Ok(Some(current));
            }
        }
        let issuer = state.ca.name.as_str();
        let stored = self.store.latest_ocsp_responder(issuer, at).await?;
        let usable = match &stored {
            Some(row) if renew_at(row) > at => Some(row.clone()),
            _ => None,
        };
        let row = match usable {
            Some(row) => row,
            None => {
                let lease = format!("ocsp-responder:{issuer}");
                if self
                    .store
                    .try_lease(&lease, &self.holder, at, at + CRL_LEASE_SECS)
                    .await?
                {
                    let issued = self.issue_responder(state, delegation).await;
                    if let Err(e) = self.store.release_lease(&lease, &self.holder).await {
                        tracing::warn!(issuer, error = %e, "releasing the responder lease failed");
                    }
                    issued?
                } else {
                    // Another replica is issuing one: keep the valid one meanwhile.
                    match stored {
                        Some(row) => row,
                        None => return Ok(None),
                    }
                }
            }
        };
        let pkcs8 = delegation
            .kek
            .open_pem(&row.sealed_key, &responder_aad(issuer))?;
        let key = SoftwareKey::from_pkcs8_der(&pkcs8)?;
        let responder = Arc::new(Responder {
            renew_at: renew_at(&row),
            cert_der: row.cert_der,
            key: Arc::new(key),
            not_after: row.not_after,
        });
        if let Ok(mut slot) = state.responder.lock() {
            *slot = Some(responder.clone());
        }
        Ok(Some(responder))
    }

    fn cached_responder(&self, state: &IssuerState) -> Option<Arc<Responder>> {
        state.responder.lock().ok()?.clone()
    }

    /// A fresh responder key and certificate, the key sealed into the database.
    async fn issue_responder(
        &self,
        state: &IssuerState,
        delegation: &Delegation,
    ) -> Result<OcspResponderRow, RevocationError> {
        let issuer = state.ca.name.as_str();
        let key = SoftwareKey::generate(KeyAlgorithm::EcdsaP256)?;
        let issued = state
            .ca
            .issue_ocsp_responder(key.public_key_der(), delegation.lifetime_secs)
            .await
            .map_err(|e| BackendError::Sign(format!("issuing the OCSP responder: {e}")))?;
        let (_, cert) = X509Certificate::from_der(&issued.der)
            .map_err(|e| BackendError::Build(format!("the responder certificate: {e}")))?;
        let row = OcspResponderRow {
            issuer: issuer.to_string(),
            serial: issued.serial.clone(),
            cert_der: issued.der.clone(),
            sealed_key: delegation
                .kek
                .seal_pem(&key.to_pkcs8_der(), &responder_aad(issuer))?,
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
        };
        self.store.insert_ocsp_responder(&row).await?;
        tracing::info!(issuer, serial = %row.serial, not_after = row.not_after, "issued a delegated OCSP responder certificate");
        Ok(row)
    }
}

/// Renew a responder at two thirds of its life.
fn renew_at(row: &OcspResponderRow) -> i64 {
    row.not_after - (row.not_after - row.not_before) / 3
}

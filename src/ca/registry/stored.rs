//! One stored CA as the registry holds it: its row, its key reference and algorithm, its chain,
//! and — once it has a certificate and its key opens — the issuer ([`Ca`]) over a local backend
//! (software or PKCS#11) that signs its certificates, CRLs and OCSP responses. Whether it may
//! sign now ([`StoredCa::may_sign`]): enabled, not revoked, certified, not expired.

use std::sync::Arc;

use pkid_backends::{CaKeyReference, CaKeys, KeyAlgorithm, KeyCustody};

use super::RegistrySettings;
use crate::ca::Ca;
use crate::store::{CaRow, Store};

/// A stored CA, opened.
pub struct StoredCa {
    pub row: CaRow,
    /// Its chain, its own certificate first (empty until certified), DER.
    pub chain: Vec<Vec<u8>>,
    /// The issuer over its key and chain; why not, when it has none.
    issuer: Result<Arc<Ca>, String>,
}

/// Why a stored CA may not sign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignRefusal {
    Disabled,
    Revoked,
    /// It waits for its certificate.
    NoCertificate,
    Expired,
    /// Its key or chain could not be opened (the reason, for the log).
    Unusable(String),
}

impl std::fmt::Display for SignRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SignRefusal::Disabled => f.write_str("the certificate authority is disabled"),
            SignRefusal::Revoked => f.write_str("the certificate authority is revoked"),
            SignRefusal::NoCertificate => {
                f.write_str("the certificate authority has no certificate yet")
            }
            SignRefusal::Expired => f.write_str("the certificate authority has expired"),
            SignRefusal::Unusable(_) => {
                f.write_str("the certificate authority's key cannot be used now")
            }
        }
    }
}

impl StoredCa {
    /// Open `row`: its key reference read, and, when it has a chain, its backend opened and the
    /// issuer made. Blocking (a token's sessions open here).
    pub(super) fn open(
        row: CaRow,
        keys: &CaKeys,
        store: Store,
        settings: &RegistrySettings,
    ) -> StoredCa {
        if row.chain_pem.is_empty() {
            return StoredCa {
                row,
                chain: Vec::new(),
                issuer: Err("no certificate yet".into()),
            };
        }
        let opened = (|| {
            let (reference, algorithm) = key_of(&row)?;
            let chain = pkid_backends::pem_certificates(&row.chain_pem)
                .map_err(|e| format!("the stored chain: {e}"))?;
            let backend = keys
                .backend(&row.name, &reference, algorithm, chain.clone())
                .map_err(|e| format!("the key: {e}"))?;
            let ca = Ca::new(row.name.clone(), backend, store, settings.backdate_secs)
                .with_revocation_base(settings.revocation_base.as_deref());
            Ok::<_, String>((chain, Arc::new(ca)))
        })();
        match opened {
            Ok((chain, ca)) => StoredCa {
                row,
                chain,
                issuer: Ok(ca),
            },
            Err(why) => {
                tracing::error!(name = %row.name, id = row.id, error = %why, "a stored CA could not be opened");
                StoredCa {
                    chain: pkid_backends::pem_certificates(&row.chain_pem).unwrap_or_default(),
                    row,
                    issuer: Err(why),
                }
            }
        }
    }

    pub(super) fn unopened(row: CaRow, why: String) -> StoredCa {
        StoredCa {
            row,
            chain: Vec::new(),
            issuer: Err(why),
        }
    }

    /// The issuer, once it has a certificate and an openable key.
    pub fn issuer(&self) -> Option<&Arc<Ca>> {
        self.issuer.as_ref().ok()
    }

    /// Why a CA with a certificate has no issuer (its key did not open): for readiness.
    pub fn broken(&self) -> Option<&str> {
        match &self.issuer {
            Err(why) if !self.row.chain_pem.is_empty() => Some(why),
            _ => None,
        }
    }

    /// The issuer, if it may sign at `at`.
    pub fn may_sign(&self, at: i64) -> Result<&Arc<Ca>, SignRefusal> {
        if self.row.revoked_at.is_some() {
            return Err(SignRefusal::Revoked);
        }
        if self.row.chain_pem.is_empty() {
            return Err(SignRefusal::NoCertificate);
        }
        if !self.row.enabled {
            return Err(SignRefusal::Disabled);
        }
        if self.row.not_after.is_some_and(|t| t <= at) {
            return Err(SignRefusal::Expired);
        }
        self.issuer
            .as_ref()
            .map_err(|why| SignRefusal::Unusable(why.clone()))
    }

    /// The CA's key reference and algorithm.
    pub fn key(&self) -> Result<(CaKeyReference, KeyAlgorithm), String> {
        key_of(&self.row)
    }
}

fn key_of(row: &CaRow) -> Result<(CaKeyReference, KeyAlgorithm), String> {
    let custody = KeyCustody::parse(&row.key_custody)
        .ok_or_else(|| format!("unknown key custody {:?}", row.key_custody))?;
    let algorithm: KeyAlgorithm = row
        .key_algorithm
        .parse()
        .map_err(|e| format!("the key algorithm: {e}"))?;
    if row.key_reference.is_empty() {
        return Err("the key was removed".into());
    }
    Ok((
        CaKeyReference::from_stored(custody, &row.key_reference),
        algorithm,
    ))
}

//! The issuer: one CA as pkid knows it (Boulder's `issuance/cert.go`): its name and backend,
//! and what it writes into every certificate it issues — where its CRL (or the serial's CRL
//! shard), its OCSP responder and its own certificate are published — and the other chains its
//! certificates verify under.

use std::sync::Arc;

use pkid_backends::{Serial, SigningBackend};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::store::Store;

pub struct Ca {
    pub name: String,
    pub backend: Arc<dyn SigningBackend>,
    pub(super) store: Store,
    pub(super) backdate_secs: i64,
    /// Base URL of the CRLs and OCSP responder this issuer's certificates name.
    revocation_base: Option<String>,
    /// CRL shards (1: one unsharded CRL); a certificate's shard is fixed at issuance.
    crl_shards: u32,
    /// Other chains (DER, issuing CA first) the issued certificates also verify under.
    alternate_chains: Vec<Vec<Vec<u8>>>,
}

impl Ca {
    pub fn new(
        name: String,
        backend: Arc<dyn SigningBackend>,
        store: Store,
        backdate_secs: u64,
    ) -> Ca {
        Ca {
            name,
            backend,
            store,
            backdate_secs: i64::try_from(backdate_secs).unwrap_or(60),
            revocation_base: None,
            crl_shards: 1,
            alternate_chains: Vec::new(),
        }
    }

    /// Offer other chains for this issuer; each must start with a certificate of the same
    /// subject and key as the issuing CA, so every leaf verifies under it.
    pub fn with_alternate_chains(mut self, chains: Vec<Vec<Vec<u8>>>) -> Result<Ca, String> {
        let main = self.backend.ca_chain();
        let issuing = main
            .first()
            .ok_or("an upstream backend's chain is not known in advance")?;
        let (_, issuing) =
            X509Certificate::from_der(issuing).map_err(|e| format!("issuing CA: {e}"))?;
        for (i, chain) in chains.iter().enumerate() {
            let first = chain
                .first()
                .ok_or(format!("alternate chain {i} is empty"))?;
            let (_, alt) = X509Certificate::from_der(first)
                .map_err(|e| format!("alternate chain {i}: {e}"))?;
            if alt.subject().as_raw() != issuing.subject().as_raw()
                || alt.public_key().raw != issuing.public_key().raw
                || subject_key_id(&alt) != subject_key_id(&issuing)
            {
                return Err(format!(
                    "alternate chain {i} does not start with the issuing CA's subject, key and key identifier"
                ));
            }
        }
        self.alternate_chains = chains;
        Ok(self)
    }

    pub fn alternate_chains(&self) -> &[Vec<Vec<u8>>] {
        &self.alternate_chains
    }

    /// Point this issuer's certificates at `BASE/crl/NAME.crl` (or their shard's
    /// `BASE/crl/NAME/SHARD.crl`), `BASE/ocsp` and the issuing CA certificate `BASE/ca/NAME.der`
    /// (AIA caIssuers), when the backend publishes revocation itself (local keys; upstream CAs
    /// publish their own).
    pub fn with_revocation_base(mut self, base: Option<&str>) -> Ca {
        let caps = self.backend.capabilities();
        self.revocation_base = base.filter(|_| caps.crl).map(str::to_string);
        self
    }

    /// Partition this issuer's CRL into `shards` (Boulder-style; 1 or 0: unsharded).
    pub fn with_crl_shards(mut self, shards: u32) -> Ca {
        self.crl_shards = shards.max(1);
        self
    }

    pub fn crl_shards(&self) -> u32 {
        self.crl_shards
    }

    /// The URL of this issuer's CRL: its complete CRL (`None`) or one shard.
    pub fn crl_url(&self, shard: Option<i64>) -> Option<String> {
        let base = self.revocation_base.as_deref()?;
        Some(match shard {
            None => format!("{base}/crl/{}.crl", self.name),
            Some(shard) => format!("{base}/crl/{}/{shard}.crl", self.name),
        })
    }

    /// The URL of this issuer's delta CRL (RFC 5280 §5.2.4), named by its complete CRL.
    pub fn delta_crl_url(&self) -> Option<String> {
        Some(format!(
            "{}/crl/{}/delta.crl",
            self.revocation_base.as_deref()?,
            self.name
        ))
    }

    pub(super) fn ocsp_url(&self) -> Option<String> {
        Some(format!("{}/ocsp", self.revocation_base.as_deref()?))
    }

    /// Where relying parties fetch the issuing CA certificate (AIA caIssuers).
    pub(super) fn ca_issuers_url(&self) -> Option<String> {
        Some(format!(
            "{}/ca/{}.der",
            self.revocation_base.as_deref()?,
            self.name
        ))
    }

    /// The CRL shard a new certificate with `serial` belongs to; `None` when unsharded.
    pub(super) fn crl_shard_for(&self, serial: &Serial) -> Option<i64> {
        (self.crl_shards > 1 && self.revocation_base.is_some())
            .then(|| crl_shard_of(serial, self.crl_shards))
    }
}

/// The CRL shard of a certificate with `serial` among `shards` (the issuer owns serial → shard →
/// CRL distribution point URL; revocation signs each shard's CRL): the first 8 bytes of the
/// SHA-256 of its serial, modulo `shards`. Fixed at issuance (it is written into the
/// certificate), so it never depends on settings that may change later.
pub fn crl_shard_of(serial: &Serial, shards: u32) -> i64 {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, serial.normalized());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest.as_ref()[..8]);
    i64::try_from(u64::from_be_bytes(first) % u64::from(shards.max(1))).unwrap_or(0)
}

/// The subjectKeyIdentifier, which leaves' authorityKeyIdentifier must find in every chain.
fn subject_key_id(cert: &X509Certificate<'_>) -> Option<Vec<u8>> {
    cert.extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(id) => {
                Some(id.0.to_vec())
            }
            _ => None,
        })
}

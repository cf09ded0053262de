//! Certificate authority: the issuance cycle, driven by the RA, signing through a backend.
//!
//! The cycle (Boulder's `docs/ISSUANCE-CYCLE.md`, each step crash-safe):
//! 1. pick a random serial (≥ 64 bits of entropy, positive) and build the profile's certificate;
//! 2. the backend hands the to-be-signed bytes to the journal, which stores serial + TBS
//!    (`certificates.status = 'tbs'`) **before** any signature exists;
//! 3. the backend signs and checks the signed TBS equals the stored one;
//! 4. we check the leaf carries the CSR's key and exactly the requested names;
//! 5. one transaction stores the certificate and marks the order `valid`.
//!
//! A crash between 2 and 5 leaves a `tbs` row: the serial is never reused, and start-up
//! recovery re-runs the order with a fresh serial (see `Ra::recover_stale_orders`).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use pkid_backends::{
    BackendError, CertProfile, ExtKeyUsage, Issuance, IssuanceJournal, IssueRequest, KeyUsageBit,
    Serial, SigningBackend,
};
use serde::{Deserialize, Serialize};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::pki::csr::{CheckedCsr, Ident};
use crate::store::{Claim, IssuedRecord, PendingCertificate, Store, StoreError};

/// What an order is issued under, snapshotted into the order at finalize.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IssuanceProfile {
    pub name: String,
    pub validity_secs: i64,
    pub server_auth: bool,
    pub client_auth: bool,
    /// Shown in the ACME directory's `meta.profiles`.
    #[serde(default)]
    pub description: String,
    /// Identifier types an order under this profile may name (`dns`, `ip`); empty: any.
    #[serde(default)]
    pub identifier_types: Vec<String>,
    /// Certificate policy OIDs written into the certificate (dotted form).
    #[serde(default)]
    pub certificate_policies: Vec<String>,
}

impl IssuanceProfile {
    /// A TLS server profile for any identifier type.
    pub fn tls_server(name: &str, validity_secs: i64) -> IssuanceProfile {
        IssuanceProfile {
            name: name.into(),
            validity_secs: validity_secs.max(60),
            server_auth: true,
            client_auth: false,
            description: String::new(),
            identifier_types: Vec::new(),
            certificate_policies: Vec::new(),
        }
    }

    pub fn allows(&self, identifier_type: &str) -> bool {
        self.identifier_types.is_empty()
            || self.identifier_types.iter().any(|t| t == identifier_type)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error("backend: {0}")]
    Backend(#[from] BackendError),
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("the issued certificate does not match the request: {0}")]
    Mismatch(String),
    #[error("the backend has not issued yet")]
    Pending,
    /// Another finalize claimed the order first: nothing was recorded or signed.
    #[error("the order is already being finalized")]
    ClaimLost,
}

pub struct IssuedCert {
    pub serial: String,
    pub der: Vec<u8>,
    pub chain_pem: String,
}

pub struct Ca {
    pub name: String,
    pub backend: Arc<dyn SigningBackend>,
    store: Store,
    backdate_secs: i64,
    /// Base URL of the CRLs and OCSP responder this issuer's certificates name.
    revocation_base: Option<String>,
    /// CRL shards (1: one unsharded CRL); a certificate's shard is fixed at issuance.
    crl_shards: u32,
    /// Other chains (DER, issuing CA first) the issued certificates also verify under.
    alternate_chains: Vec<Vec<Vec<u8>>>,
}

struct StoreJournal<'a> {
    store: &'a Store,
    pending: PendingCertificate<'a>,
    /// The finalize's claim of its order, made with the record ([`Store::claim_with_tbs`]).
    claim: Option<Claim<'a>>,
    /// Set when another finalize had claimed the order: nothing was recorded or signed.
    claim_lost: AtomicBool,
}

#[async_trait::async_trait]
impl IssuanceJournal for StoreJournal<'_> {
    async fn record_tbs(&self, serial: &Serial, tbs_der: &[u8]) -> Result<(), BackendError> {
        let serial = serial.to_hex();
        let failed = |e: StoreError| {
            BackendError::Io(format!("recording the to-be-signed certificate: {e}"))
        };
        let Some(claim) = &self.claim else {
            return self
                .store
                .record_tbs(&self.pending, &serial, tbs_der)
                .await
                .map_err(failed);
        };
        if self
            .store
            .claim_with_tbs(claim, &self.pending, &serial, tbs_der)
            .await
            .map_err(failed)?
        {
            return Ok(());
        }
        self.claim_lost.store(true, Ordering::Relaxed);
        Err(BackendError::Io(
            "the order is already being finalized".into(),
        ))
    }
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

    fn ocsp_url(&self) -> Option<String> {
        Some(format!("{}/ocsp", self.revocation_base.as_deref()?))
    }

    /// Where relying parties fetch the issuing CA certificate (AIA caIssuers).
    fn ca_issuers_url(&self) -> Option<String> {
        Some(format!(
            "{}/ca/{}.der",
            self.revocation_base.as_deref()?,
            self.name
        ))
    }

    /// The CRL shard a new certificate with `serial` belongs to; `None` when unsharded.
    fn crl_shard_for(&self, serial: &Serial) -> Option<i64> {
        (self.crl_shards > 1 && self.revocation_base.is_some())
            .then(|| crl_shard_of(serial, self.crl_shards))
    }

    /// Run the issuance cycle for a checked CSR.
    pub async fn issue(
        &self,
        csr: &CheckedCsr,
        profile: &IssuanceProfile,
        order_id: Option<&str>,
        account_id: Option<&str>,
    ) -> Result<IssuedCert, IssueError> {
        self.issue_with(csr, profile, order_id, account_id, None)
            .await
    }

    /// [`Ca::issue`] for a finalize that has yet to claim its order (`ready → processing`,
    /// exactly once; [`IssueError::ClaimLost`] to all finalizes but one). A backend that hands
    /// its to-be-signed certificate to the store claims with that record, in one write; for
    /// the others (upstream CAs), the claim comes first, on its own.
    pub async fn issue_claiming(
        &self,
        csr: &CheckedCsr,
        profile: &IssuanceProfile,
        claim: Claim<'_>,
        account_id: Option<&str>,
    ) -> Result<IssuedCert, IssueError> {
        if !self.backend.capabilities().journals {
            if !self.store.begin_processing(&claim).await? {
                return Err(IssueError::ClaimLost);
            }
            return self
                .issue_with(csr, profile, Some(claim.order_id), account_id, None)
                .await;
        }
        self.issue_with(csr, profile, Some(claim.order_id), account_id, Some(claim))
            .await
    }

    async fn issue_with(
        &self,
        csr: &CheckedCsr,
        profile: &IssuanceProfile,
        order_id: Option<&str>,
        account_id: Option<&str>,
        claim: Option<Claim<'_>>,
    ) -> Result<IssuedCert, IssueError> {
        let now = time::OffsetDateTime::now_utc();
        let not_before = now - time::Duration::seconds(self.backdate_secs);
        let not_after = not_before + time::Duration::seconds(profile.validity_secs);
        let serial = Serial::random();
        let serial_hex = serial.to_hex();
        let crl_shard = self.crl_shard_for(&serial);

        let mut dns_names = Vec::new();
        let mut ip_addresses = Vec::new();
        for ident in &csr.identifiers {
            match ident {
                Ident::Dns(d) => dns_names.push(d.clone()),
                Ident::Ip(ip) => ip_addresses.push(*ip),
            }
        }
        let mut ext_key_usage = Vec::new();
        if profile.server_auth {
            ext_key_usage.push(ExtKeyUsage::ServerAuth);
        }
        if profile.client_auth {
            ext_key_usage.push(ExtKeyUsage::ClientAuth);
        }
        let mut key_usage = vec![KeyUsageBit::DigitalSignature];
        if is_rsa(&csr.public_key) {
            key_usage.push(KeyUsageBit::KeyEncipherment);
        }
        let request = IssueRequest {
            csr_der: csr.der.clone(),
            subject_public_key_der: csr.public_key.clone(),
            // Subject left empty (names live in the SAN), as CA/B Forum BRs recommend.
            common_name: None,
            dns_names,
            ip_addresses,
            serial,
            not_before,
            not_after,
            profile: CertProfile {
                key_usage,
                ext_key_usage,
                crl_distribution_points: self.crl_url(crl_shard).into_iter().collect(),
                ocsp_urls: self.ocsp_url().into_iter().collect(),
                ca_issuers_urls: self.ca_issuers_url().into_iter().collect(),
                must_staple: false,
                ocsp_no_check: false,
                certificate_policies: profile.certificate_policies.clone(),
            },
        };
        let journal = StoreJournal {
            store: &self.store,
            pending: PendingCertificate {
                issuer: &self.name,
                order_id,
                account_id,
                not_before: not_before.unix_timestamp(),
                not_after: not_after.unix_timestamp(),
                crl_shard,
            },
            claim,
            claim_lost: AtomicBool::new(false),
        };
        let chain = self
            .sign_and_check(request, &journal, |leaf| check_leaf(leaf, csr))
            .await?;
        self.store_issued(&serial_hex, &chain, &journal.pending)
            .await
    }

    /// A delegated OCSP responder certificate (RFC 6960 §4.2.2.2) for `spki_der`, through the
    /// same issuance cycle: id-kp-OCSPSigning, id-pkix-ocsp-nocheck, digitalSignature, and no
    /// revocation pointers (nocheck: relying parties do not check it, so it is short-lived).
    pub async fn issue_ocsp_responder(
        &self,
        spki_der: &[u8],
        validity_secs: i64,
    ) -> Result<IssuedCert, IssueError> {
        let now = time::OffsetDateTime::now_utc();
        let not_before = now - time::Duration::seconds(self.backdate_secs);
        let not_after = now + time::Duration::seconds(validity_secs.max(60));
        let serial = Serial::random();
        let serial_hex = serial.to_hex();
        let request = IssueRequest {
            csr_der: Vec::new(),
            subject_public_key_der: spki_der.to_vec(),
            common_name: Some(format!("pkid {} OCSP Responder", self.name)),
            dns_names: Vec::new(),
            ip_addresses: Vec::new(),
            serial,
            not_before,
            not_after,
            profile: CertProfile {
                key_usage: vec![KeyUsageBit::DigitalSignature],
                ext_key_usage: vec![ExtKeyUsage::OcspSigning],
                ocsp_no_check: true,
                ..CertProfile::default()
            },
        };
        let journal = StoreJournal {
            store: &self.store,
            pending: PendingCertificate {
                issuer: &self.name,
                order_id: None,
                account_id: None,
                not_before: not_before.unix_timestamp(),
                not_after: not_after.unix_timestamp(),
                crl_shard: None,
            },
            claim: None,
            claim_lost: AtomicBool::new(false),
        };
        let chain = self
            .sign_and_check(request, &journal, |cert| {
                let (_, parsed) = X509Certificate::from_der(cert)
                    .map_err(|e| IssueError::Mismatch(format!("unparseable certificate: {e}")))?;
                if parsed.public_key().raw != spki_der {
                    return Err(IssueError::Mismatch(
                        "the responder certificate does not carry the responder key".into(),
                    ));
                }
                Ok(())
            })
            .await?;
        self.store_issued(&serial_hex, &chain, &journal.pending)
            .await
    }

    /// Steps 2–4 of the cycle: the backend journals, signs and checks; `check` looks at the
    /// leaf. On any failure the journaled serial is marked abandoned.
    async fn sign_and_check(
        &self,
        request: IssueRequest,
        journal: &StoreJournal<'_>,
        check: impl FnOnce(&[u8]) -> Result<(), IssueError>,
    ) -> Result<Vec<Vec<u8>>, IssueError> {
        let serial_hex = request.serial.to_hex();
        let first = self.backend.issue(request, journal).await;
        if journal.claim_lost.load(Ordering::Relaxed) {
            return Err(IssueError::ClaimLost);
        }
        let chain = match self.finish_pending(first).await {
            Ok(chain) => chain,
            Err(e) => {
                self.store.abandon_tbs(&serial_hex).await?;
                return Err(e);
            }
        };
        let Some(leaf) = chain.first() else {
            self.store.abandon_tbs(&serial_hex).await?;
            return Err(IssueError::Mismatch(
                "the backend returned an empty chain".into(),
            ));
        };
        if let Err(e) = check(leaf) {
            self.store.abandon_tbs(&serial_hex).await?;
            return Err(e);
        }
        Ok(chain)
    }

    /// Step 5: store the certificate (and complete its order, if any).
    async fn store_issued(
        &self,
        serial_hex: &str,
        chain: &[Vec<u8>],
        pending: &PendingCertificate<'_>,
    ) -> Result<IssuedCert, IssueError> {
        let leaf = chain
            .first()
            .ok_or_else(|| IssueError::Mismatch("the backend returned an empty chain".into()))?;
        let (_, parsed) = X509Certificate::from_der(leaf)
            .map_err(|e| IssueError::Mismatch(format!("unparseable certificate: {e}")))?;
        let leaf_serial = hex::encode(parsed.raw_serial());
        if leaf_serial != serial_hex {
            // An upstream CA picked its own serial; ours stays recorded as unused.
            self.store.abandon_tbs(serial_hex).await?;
        }
        let chain_pem: String = chain
            .iter()
            .map(|der| crate::pki::pem::to_pem("CERTIFICATE", der))
            .collect();
        let record = IssuedRecord {
            serial: &leaf_serial,
            tbs: parsed.tbs_certificate.as_ref(),
            der: leaf,
            chain_pem: &chain_pem,
        };
        if let Err(e) = self.store.complete_issuance(&record, pending).await {
            if matches!(e, crate::store::StoreError::OrderSettled(_)) {
                // Signed but never served: the serial stays recorded, unused.
                self.store.abandon_tbs(&leaf_serial).await?;
            }
            return Err(e.into());
        }
        Ok(IssuedCert {
            serial: leaf_serial,
            der: leaf.clone(),
            chain_pem,
        })
    }

    /// A backend that answered `Pending` (a slow upstream) is polled, within a bound.
    async fn finish_pending(
        &self,
        first: Result<Issuance, BackendError>,
    ) -> Result<Vec<Vec<u8>>, IssueError> {
        const POLL_BOUND: std::time::Duration = std::time::Duration::from_secs(120);
        let started = std::time::Instant::now();
        let mut outcome = first?;
        loop {
            match outcome {
                Issuance::Issued { chain } => return Ok(chain),
                Issuance::Pending {
                    upstream_ref,
                    retry_after,
                } => {
                    if started.elapsed() >= POLL_BOUND {
                        return Err(IssueError::Pending);
                    }
                    let wait = retry_after.clamp(
                        std::time::Duration::from_millis(200),
                        std::time::Duration::from_secs(10),
                    );
                    tokio::time::sleep(wait).await;
                    outcome = self.backend.poll(&upstream_ref).await?;
                }
            }
        }
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

fn is_rsa(spki_der: &[u8]) -> bool {
    x509_parser::x509::SubjectPublicKeyInfo::from_der(spki_der)
        .map(|(_, spki)| {
            spki.algorithm.algorithm == x509_parser::oid_registry::OID_PKCS1_RSAENCRYPTION
        })
        .unwrap_or(false)
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

/// The identifiers a certificate's SAN names (other name types are left out).
pub fn certificate_idents(cert: &X509Certificate<'_>) -> BTreeSet<Ident> {
    let mut names = BTreeSet::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => {
                    names.insert(Ident::Dns(d.to_ascii_lowercase()));
                }
                GeneralName::IPAddress(b) => {
                    if let Ok(a) = <[u8; 4]>::try_from(*b) {
                        names.insert(Ident::Ip(IpAddr::from(a)));
                    } else if let Ok(a) = <[u8; 16]>::try_from(*b) {
                        names.insert(Ident::Ip(IpAddr::from(a)));
                    }
                }
                _ => {}
            }
        }
    }
    names
}

/// The certificate must carry the CSR's key and exactly the CSR's names: a mismatched
/// certificate (a faulty upstream, say) is never served.
fn check_leaf(der: &[u8], csr: &CheckedCsr) -> Result<(), IssueError> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| IssueError::Mismatch(format!("unparseable certificate: {e}")))?;
    if cert.public_key().raw != csr.public_key.as_slice() {
        return Err(IssueError::Mismatch(
            "the certificate's public key is not the CSR's".into(),
        ));
    }
    let names = certificate_idents(&cert);
    let san_entries = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map_or(0, |san| san.value.general_names.len());
    if names != csr.identifiers || san_entries != names.len() {
        return Err(IssueError::Mismatch(format!(
            "the certificate names {names:?}, the request {:?}",
            csr.identifiers
        )));
    }
    Ok(())
}

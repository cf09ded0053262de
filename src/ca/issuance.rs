//! The issuance cycle (see `ca`'s map): journal, sign, check, store — for a CSR under an
//! issuance profile, for a finalize that claims its order with its first record, and for a
//! delegated OCSP responder's certificate.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};

use pkid_backends::{
    BackendError, CertProfile, ExtKeyUsage, Issuance, IssuanceJournal, IssueRequest, KeyUsageBit,
    Serial,
};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::{Ca, IssuanceProfile, IssueError, IssuedCert};
use crate::pki::csr::{CheckedCsr, Ident};
use crate::pki::ip::canonical;
use crate::store::{Claim, IssuedRecord, PendingCertificate, Store, StoreError};

/// A leaf to issue, with what its record needs ([`PendingCertificate`]).
pub(super) struct LeafRequest {
    pub(super) request: IssueRequest,
    pub(super) not_before: i64,
    pub(super) not_after: i64,
    pub(super) crl_shard: Option<i64>,
}

pub(super) struct StoreJournal<'a> {
    pub(super) store: &'a Store,
    pub(super) pending: PendingCertificate<'a>,
    /// The finalize's claim of its order, made with the record ([`Store::claim_with_tbs`]).
    pub(super) claim: Option<Claim<'a>>,
    /// Set when another finalize had claimed the order: nothing was recorded or signed.
    pub(super) claim_lost: AtomicBool,
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
        let LeafRequest {
            request,
            not_before,
            not_after,
            crl_shard,
        } = self.leaf_request(csr, profile);
        let serial_hex = request.serial.to_hex();
        let journal = self.leaf_journal(
            order_id,
            account_id,
            (not_before, not_after),
            crl_shard,
            claim,
        );
        let chain = self
            .sign_and_check(request, &journal, |leaf| check_leaf(leaf, csr, profile))
            .await?;
        self.store_issued(&serial_hex, &chain, &journal.pending)
            .await
    }

    /// The leaf the cycle issues for `csr` under `profile`: a fresh serial, the validity, the
    /// names and the profile's extensions, and where its revocation is published.
    pub(super) fn leaf_request(&self, csr: &CheckedCsr, profile: &IssuanceProfile) -> LeafRequest {
        let now = time::OffsetDateTime::now_utc();
        let not_before = now - time::Duration::seconds(self.backdate_secs);
        let not_after = not_before + time::Duration::seconds(profile.validity_secs);
        let serial = Serial::random();
        let crl_shard = self.crl_shard_for(&serial);

        let mut dns_names = Vec::new();
        let mut ip_addresses = Vec::new();
        for ident in &csr.identifiers {
            match ident {
                Ident::Dns(d) => dns_names.push(d.clone()),
                Ident::Ip(ip) => ip_addresses.push(*ip),
            }
        }
        let (key_usage, ext_key_usage) = leaf_usages(&csr.public_key, profile);
        let request = IssueRequest {
            csr_der: csr.der.clone(),
            subject_public_key_der: csr.public_key.clone(),
            // Subject left empty (names live in the SAN), as CA/B Forum BRs recommend.
            common_name: None,
            subject: Vec::new(),
            dns_names,
            ip_addresses,
            email_addresses: Vec::new(),
            uris: Vec::new(),
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
        LeafRequest {
            request,
            not_before: not_before.unix_timestamp(),
            not_after: not_after.unix_timestamp(),
            crl_shard,
        }
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
            subject: Vec::new(),
            dns_names: Vec::new(),
            ip_addresses: Vec::new(),
            email_addresses: Vec::new(),
            uris: Vec::new(),
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
        let journal = self.journal(not_before, not_after);
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

    /// The journal of a certificate of no order (no claim, no shard).
    pub(super) fn journal(
        &self,
        not_before: time::OffsetDateTime,
        not_after: time::OffsetDateTime,
    ) -> StoreJournal<'_> {
        let validity = (not_before.unix_timestamp(), not_after.unix_timestamp());
        self.leaf_journal(None, None, validity, None, None)
    }

    /// The journal of a certificate of this issuer: of an order and account when it has them,
    /// its validity (unix seconds) and CRL shard, with the order's claim when a finalize holds
    /// one.
    pub(super) fn leaf_journal<'a>(
        &'a self,
        order_id: Option<&'a str>,
        account_id: Option<&'a str>,
        (not_before, not_after): (i64, i64),
        crl_shard: Option<i64>,
        claim: Option<Claim<'a>>,
    ) -> StoreJournal<'a> {
        StoreJournal {
            store: &self.store,
            pending: PendingCertificate {
                issuer: &self.name,
                order_id,
                account_id,
                not_before,
                not_after,
                crl_shard,
            },
            claim,
            claim_lost: AtomicBool::new(false),
        }
    }

    /// Steps 2–4 of the cycle: the backend journals, signs and checks; `check` looks at the
    /// leaf. On any failure the journaled serial is marked abandoned.
    pub(super) async fn sign_and_check(
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
    pub(super) async fn store_issued(
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

/// A leaf's keyUsage (digitalSignature; keyEncipherment too for an RSA key, RFC 5480 §3 and
/// RFC 8410 §5 keep it from EC and Ed25519 keys) and the profile's extended key usages.
pub(super) fn leaf_usages(
    spki_der: &[u8],
    profile: &IssuanceProfile,
) -> (Vec<KeyUsageBit>, Vec<ExtKeyUsage>) {
    let mut key_usage = vec![KeyUsageBit::DigitalSignature];
    if is_rsa(spki_der) {
        key_usage.push(KeyUsageBit::KeyEncipherment);
    }
    let mut ext_key_usage = Vec::new();
    if profile.server_auth {
        ext_key_usage.push(ExtKeyUsage::ServerAuth);
    }
    if profile.client_auth {
        ext_key_usage.push(ExtKeyUsage::ClientAuth);
    }
    (key_usage, ext_key_usage)
}

fn is_rsa(spki_der: &[u8]) -> bool {
    x509_parser::x509::SubjectPublicKeyInfo::from_der(spki_der)
        .map(|(_, spki)| {
            spki.algorithm.algorithm == x509_parser::oid_registry::OID_PKCS1_RSAENCRYPTION
        })
        .unwrap_or(false)
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
                        names.insert(Ident::Ip(canonical(IpAddr::from(a))));
                    }
                }
                _ => {}
            }
        }
    }
    names
}

/// The certificate must carry the CSR's key and exactly the CSR's names, and be what the profile
/// allows (`check_profile`): a mismatched certificate (a faulty or misconfigured upstream CA,
/// one that copies a CSR's extensions) is never served.
pub(super) fn check_leaf(
    der: &[u8],
    csr: &CheckedCsr,
    profile: &IssuanceProfile,
) -> Result<(), IssueError> {
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
    check_profile(
        &cert,
        profile,
        time::OffsetDateTime::now_utc().unix_timestamp(),
    )
}

/// Extensions a leaf may carry: what pkid's builder writes and what a public CA adds (SCTs).
/// Anything else (name constraints, a CT poison, what an upstream copied from a CSR) is refused.
const LEAF_EXTENSIONS: &[&str] = &[
    "2.5.29.14",               // subjectKeyIdentifier
    "2.5.29.35",               // authorityKeyIdentifier
    "2.5.29.15",               // keyUsage
    "2.5.29.37",               // extKeyUsage
    "2.5.29.17",               // subjectAltName
    "2.5.29.19",               // basicConstraints
    "2.5.29.31",               // cRLDistributionPoints
    "2.5.29.32",               // certificatePolicies
    "1.3.6.1.5.5.7.1.1",       // authorityInfoAccess
    "1.3.6.1.5.5.7.1.24",      // TLS feature (must-staple)
    "1.3.6.1.4.1.11129.2.4.2", // embedded SCTs
];

/// Slack on the profile's validity for a certificate issued a while ago (an upstream CA that
/// answered after polling, clocks apart).
const VALIDITY_SLACK_SECS: i64 = 3600;

/// Security hardening (item 9): whatever the backend, the certificate served is an end-entity
/// TLS certificate of the profile: not a CA, no key usage a CA has, extended key usages TLS
/// only and those the profile asks for, no longer-lived than the profile, no extension beyond
/// [`LEAF_EXTENSIONS`].
pub(super) fn check_profile(
    cert: &X509Certificate<'_>,
    profile: &IssuanceProfile,
    now: i64,
) -> Result<(), IssueError> {
    use x509_parser::extensions::ParsedExtension;
    let refuse = |why: String| Err(IssueError::Mismatch(why));
    let mut server_auth = false;
    let mut client_auth = false;
    for ext in cert.extensions() {
        let oid = ext.oid.to_id_string();
        if !LEAF_EXTENSIONS.contains(&oid.as_str()) {
            return refuse(format!(
                "the certificate carries extension {oid}, which no profile writes"
            ));
        }
        match ext.parsed_extension() {
            ParsedExtension::BasicConstraints(bc) if bc.ca => {
                return refuse("the certificate is a CA certificate".into());
            }
            ParsedExtension::KeyUsage(ku) if ku.key_cert_sign() || ku.crl_sign() => {
                return refuse("the certificate may sign certificates or CRLs".into());
            }
            ParsedExtension::ExtendedKeyUsage(eku) => {
                if eku.any
                    || eku.code_signing
                    || eku.email_protection
                    || eku.time_stamping
                    || eku.ocsp_signing
                    || !eku.other.is_empty()
                {
                    return refuse("the certificate has extended key usages beyond TLS".into());
                }
                server_auth = eku.server_auth;
                client_auth = eku.client_auth;
            }
            _ => {}
        }
    }
    if profile.server_auth && !server_auth {
        return refuse("the certificate lacks the serverAuth extended key usage".into());
    }
    if profile.client_auth && !client_auth {
        return refuse("the certificate lacks the clientAuth extended key usage".into());
    }
    let not_after = cert.validity().not_after.timestamp();
    if not_after > now + profile.validity_secs + VALIDITY_SLACK_SECS {
        return refuse(format!(
            "the certificate is valid until {not_after}, beyond the profile's {} s",
            profile.validity_secs
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A leaf for `a.test` made by rcgen, as an upstream CA might make it, after `shape`.
    fn leaf(shape: impl FnOnce(&mut rcgen::CertificateParams)) -> Vec<u8> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["a.test".to_string()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now;
        params.not_after = now + time::Duration::days(7);
        shape(&mut params);
        params.self_signed(&key).unwrap().der().to_vec()
    }

    fn checked(der: &[u8], profile: &IssuanceProfile) -> Result<(), IssueError> {
        let (_, cert) = X509Certificate::from_der(der).unwrap();
        check_profile(
            &cert,
            profile,
            time::OffsetDateTime::now_utc().unix_timestamp(),
        )
    }

    #[test]
    fn a_certificate_outside_the_profile_is_never_served() {
        let profile = IssuanceProfile::tls_server("p", 90 * 86400);
        assert!(checked(&leaf(|_| {}), &profile).is_ok());
        let with_client_auth = leaf(|p| {
            p.extended_key_usages
                .push(rcgen::ExtendedKeyUsagePurpose::ClientAuth)
        });
        assert!(
            checked(&with_client_auth, &profile).is_ok(),
            "TLS client use too"
        );
        let refused: [(&str, Vec<u8>); 6] = [
            (
                "a CA",
                leaf(|p| p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained)),
            ),
            (
                "a certificate signer",
                leaf(|p| p.key_usages.push(rcgen::KeyUsagePurpose::KeyCertSign)),
            ),
            (
                "code signing",
                leaf(|p| {
                    p.extended_key_usages
                        .push(rcgen::ExtendedKeyUsagePurpose::CodeSigning)
                }),
            ),
            (
                "no serverAuth",
                leaf(|p| p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth]),
            ),
            (
                "longer-lived than the profile",
                leaf(|p| p.not_after = p.not_before + time::Duration::days(365)),
            ),
            (
                "name constraints copied from a CSR",
                leaf(|p| {
                    p.name_constraints = Some(rcgen::NameConstraints {
                        permitted_subtrees: vec![rcgen::GeneralSubtree::DnsName("a.test".into())],
                        excluded_subtrees: Vec::new(),
                    })
                }),
            ),
        ];
        for (what, der) in refused {
            assert!(
                matches!(checked(&der, &profile), Err(IssueError::Mismatch(_))),
                "{what} was accepted"
            );
        }
        let mut client = IssuanceProfile::tls_server("c", 90 * 86400);
        client.client_auth = true;
        assert!(
            checked(&leaf(|_| {}), &client).is_err(),
            "the profile's clientAuth is missing"
        );
    }
}

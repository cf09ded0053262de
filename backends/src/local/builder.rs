//! The certificate and CRL builder shared by every local backend, over a [`KeySigner`].
//!
//! Each certificate goes through Boulder's issuance cycle (`docs/ISSUANCE-CYCLE.md`):
//! 1. build the to-be-signed structure (RFC 5280 §4.1 `TBSCertificate`, §5.1 `TBSCertList`);
//! 2. hand those exact bytes to the [`IssuanceJournal`] (leaves only), which may refuse;
//! 3. sign them with the issuer's [`KeySigner`];
//! 4. assemble `SEQUENCE { tbs, signatureAlgorithm, BIT STRING signature }`;
//! 5. parse the result, check its TBS is byte-for-byte the recorded one and its signature
//!    verifies under the issuer's public key, else [`BackendError::Mismatch`].
//!
//! rcgen lays out the TBS: it is driven with a *capturing* key that records the message rcgen
//! asks it to sign (exactly the TBS DER) and returns a placeholder, so the real key signs once,
//! after the journal has the bytes. Leaf content comes from the request and its profile only,
//! never from CSR extensions.

use std::cell::RefCell;
use std::net::IpAddr;
use std::sync::Arc;

use rcgen::string::Ia5String;
use rcgen::{
    BasicConstraints, CertificateParams, CrlDistributionPoint, CustomExtension, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyUsagePurpose, PublicKeyData,
    SanType, SerialNumber, SignatureAlgorithm, SigningKey,
};
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::{CertificateRevocationList, FromDer, X509Certificate};
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::keys::counted::CountedKey;
use crate::keys::KeySigner;
use crate::local::der;
use crate::{
    BackendError, ExtKeyUsage, IssuanceJournal, IssueRequest, KeyAlgorithm, KeyUsageBit, Serial,
};

/// id-pe-authorityInfoAccess (RFC 5280 §4.2.2.1).
const OID_AUTHORITY_INFO_ACCESS: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 1, 1];
/// id-ce-certificatePolicies (RFC 5280 §4.2.1.4).
const OID_CERTIFICATE_POLICIES: &[u64] = &[2, 5, 29, 32];
/// id-ad-ocsp and id-ad-caIssuers (RFC 5280 §4.2.2.1).
const OID_AD_OCSP: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 48, 1];
const OID_AD_CA_ISSUERS: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 48, 2];
/// id-pe-tlsfeature (RFC 7633 §6).
pub const OID_TLS_FEATURE: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 1, 24];
/// id-pkix-ocsp-nocheck (RFC 6960 §4.2.2.2.1), whose value is NULL.
const OID_OCSP_NOCHECK: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 48, 1, 5];
/// `Features ::= SEQUENCE OF INTEGER` holding status_request (5): OCSP must-staple.
const MUST_STAPLE_VALUE: &[u8] = &[0x30, 0x03, 0x02, 0x01, 0x05];
/// RFC 5280 §4.1.2.2: at most 20 octets.
const MAX_SERIAL_OCTETS: usize = 20;

/// The issuing CA: its certificate and the key that signs for it (counting its signatures).
#[derive(Clone)]
pub struct IssuerInfo {
    pub cert_der: Vec<u8>,
    pub key: Arc<dyn KeySigner>,
    counted: Arc<CountedKey>,
}

impl std::fmt::Debug for IssuerInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuerInfo")
            .field("algorithm", &self.key.algorithm())
            .finish_non_exhaustive()
    }
}

impl IssuerInfo {
    /// Pairs a CA certificate with its key, checking the key is the certificate's.
    pub fn new(cert_der: Vec<u8>, key: Arc<dyn KeySigner>) -> Result<Self, BackendError> {
        let (_, cert) = parse_certificate(&cert_der)?;
        if cert.public_key().raw != key.public_key_der() {
            return Err(BackendError::Mismatch(
                "the key does not belong to the CA certificate".into(),
            ));
        }
        let counted = Arc::new(CountedKey::new(key, cert.subject().to_string()));
        Ok(IssuerInfo {
            cert_der,
            key: counted.clone(),
            counted,
        })
    }

    /// Signatures the key made for this issuer since it was opened (certificates, CRLs, OCSP
    /// responses, audit checkpoints).
    pub fn signatures(&self) -> u64 {
        self.counted.signatures()
    }

    /// The issuer's subjectKeyIdentifier, or the RFC 7093 method 1 identifier of its key when
    /// the certificate has none.
    pub(crate) fn key_identifier(&self) -> Result<Vec<u8>, BackendError> {
        let (_, cert) = parse_certificate(&self.cert_der)?;
        for ext in cert.extensions() {
            if let ParsedExtension::SubjectKeyIdentifier(id) = ext.parsed_extension() {
                return Ok(id.0.to_vec());
            }
        }
        let digest =
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, self.key.public_key_der());
        Ok(digest.as_ref()[..20].to_vec())
    }
}

impl IssuerInfo {
    /// The CA certificate's subject Name, DER: the issuer of what it signs.
    pub(crate) fn subject_der(&self) -> Result<Vec<u8>, BackendError> {
        let (_, cert) = parse_certificate(&self.cert_der)?;
        Ok(cert.subject().as_raw().to_vec())
    }
}

/// Verify a raw signature the way a relying party will, before it leaves the server.
pub(crate) fn verify_signature(
    message: &[u8],
    alg: KeyAlgorithm,
    signature: &[u8],
    spki_der: &[u8],
) -> Result<(), BackendError> {
    use aws_lc_rs::signature as sig;
    let spki = parse_spki(spki_der)?;
    let verification: &dyn sig::VerificationAlgorithm = match alg {
        KeyAlgorithm::EcdsaP256 => &sig::ECDSA_P256_SHA256_ASN1,
        KeyAlgorithm::EcdsaP384 => &sig::ECDSA_P384_SHA384_ASN1,
        KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 | KeyAlgorithm::Rsa4096 => {
            &sig::RSA_PKCS1_2048_8192_SHA256
        }
        KeyAlgorithm::Ed25519 => &sig::ED25519,
    };
    sig::UnparsedPublicKey::new(verification, &spki.subject_public_key.data)
        .verify(message, signature)
        .map_err(|_| BackendError::Mismatch("the signature does not verify".into()))
}

fn parse_certificate(der: &[u8]) -> Result<(&[u8], X509Certificate<'_>), BackendError> {
    X509Certificate::from_der(der)
        .map_err(|e| BackendError::Build(format!("cannot parse a CA certificate: {e}")))
}

/// Stands in for the issuer's key while rcgen lays out a TBS: it has the issuer's public key
/// and algorithm, and keeps the bytes rcgen asks it to sign.
pub(crate) struct CapturingKey {
    algorithm: &'static SignatureAlgorithm,
    /// The subjectPublicKey BIT STRING contents, as rcgen's `PublicKeyData` wants them.
    public_key: Vec<u8>,
    captured: RefCell<Option<Vec<u8>>>,
}

impl CapturingKey {
    pub(crate) fn new(key: &dyn KeySigner) -> Result<Self, BackendError> {
        let (_, spki) = SubjectPublicKeyInfo::from_der(key.public_key_der()).map_err(|e| {
            BackendError::Key(format!("the signing key's public key does not parse: {e}"))
        })?;
        Ok(CapturingKey {
            algorithm: rcgen_algorithm(key.algorithm()),
            public_key: spki.subject_public_key.data.to_vec(),
            captured: RefCell::new(None),
        })
    }

    pub(crate) fn take(&self) -> Result<Vec<u8>, BackendError> {
        self.captured
            .borrow_mut()
            .take()
            .ok_or_else(|| BackendError::Build("rcgen produced no to-be-signed structure".into()))
    }
}

impl PublicKeyData for CapturingKey {
    fn der_bytes(&self) -> &[u8] {
        &self.public_key
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.algorithm
    }
}

impl SigningKey for CapturingKey {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        *self.captured.borrow_mut() = Some(msg.to_vec());
        Ok(vec![0])
    }
}

/// The rcgen signature algorithm of a key of `alg`.
pub fn rcgen_algorithm(alg: KeyAlgorithm) -> &'static SignatureAlgorithm {
    match alg {
        KeyAlgorithm::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        KeyAlgorithm::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 | KeyAlgorithm::Rsa4096 => {
            &rcgen::PKCS_RSA_SHA256
        }
        KeyAlgorithm::Ed25519 => &rcgen::PKCS_ED25519,
    }
}

/// The DER `AlgorithmIdentifier` of the signatures `alg` makes (RFC 5758 §3.2, RFC 4055 §5,
/// RFC 8410 §3): ECDSA and Ed25519 without parameters, RSA with NULL.
pub fn signature_algorithm_der(alg: KeyAlgorithm) -> Vec<u8> {
    match alg {
        KeyAlgorithm::EcdsaP256 => der::sequence(&[&der::oid(&[1, 2, 840, 10045, 4, 3, 2])]),
        KeyAlgorithm::EcdsaP384 => der::sequence(&[&der::oid(&[1, 2, 840, 10045, 4, 3, 3])]),
        KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 | KeyAlgorithm::Rsa4096 => {
            der::sequence(&[&der::oid(&[1, 2, 840, 113549, 1, 1, 11]), &[0x05, 0x00]])
        }
        KeyAlgorithm::Ed25519 => der::sequence(&[&der::oid(&[1, 3, 101, 112])]),
    }
}

/// `SEQUENCE { tbs, signatureAlgorithm, BIT STRING signature }`: the shape of both a
/// Certificate (RFC 5280 §4.1) and a CertificateList (§5.1).
pub fn assemble(tbs: &[u8], alg: KeyAlgorithm, signature: &[u8]) -> Vec<u8> {
    der::sequence(&[
        tbs,
        &signature_algorithm_der(alg),
        &der::bit_string(signature),
    ])
}

/// Signs `tbs` with `key` and assembles the signed structure. Blocking.
pub fn sign_tbs(tbs: &[u8], key: &dyn KeySigner) -> Result<Vec<u8>, BackendError> {
    let signature = key.sign(tbs)?;
    Ok(assemble(tbs, key.algorithm(), &signature))
}

/// Checks a signed certificate: it parses, its TBS is exactly `expected_tbs`, its two algorithm
/// fields agree, and its signature verifies under `issuer_spki`.
pub fn check_certificate(
    cert_der: &[u8],
    expected_tbs: &[u8],
    issuer_spki: &[u8],
) -> Result<(), BackendError> {
    let (rest, cert) = X509Certificate::from_der(cert_der).map_err(|e| {
        BackendError::Mismatch(format!("the signed certificate does not parse: {e}"))
    })?;
    if !rest.is_empty() {
        return Err(BackendError::Mismatch(
            "trailing bytes after the signed certificate".into(),
        ));
    }
    if cert.tbs_certificate.as_ref() != expected_tbs {
        return Err(BackendError::Mismatch(
            "the signed certificate's TBS differs from the recorded one".into(),
        ));
    }
    if cert.signature_algorithm != cert.tbs_certificate.signature {
        return Err(BackendError::Mismatch(
            "the certificate's signature algorithm fields disagree".into(),
        ));
    }
    let spki = parse_spki(issuer_spki)?;
    cert.verify_signature(Some(&spki)).map_err(|e| {
        BackendError::Mismatch(format!("the certificate's signature does not verify: {e}"))
    })
}

/// Checks a signed CRL the way [`check_certificate`] checks a certificate (parsing it whole:
/// for tests and small CRLs; [`crate::local::crl::build_crl`] checks its signature without a parse).
pub fn check_crl(
    crl_der: &[u8],
    expected_tbs: &[u8],
    issuer_spki: &[u8],
) -> Result<(), BackendError> {
    let (rest, crl) = CertificateRevocationList::from_der(crl_der)
        .map_err(|e| BackendError::Mismatch(format!("the signed CRL does not parse: {e}")))?;
    if !rest.is_empty() {
        return Err(BackendError::Mismatch(
            "trailing bytes after the signed CRL".into(),
        ));
    }
    if crl.tbs_cert_list.as_ref() != expected_tbs {
        return Err(BackendError::Mismatch(
            "the signed CRL's TBS differs from the built one".into(),
        ));
    }
    if crl.signature_algorithm != crl.tbs_cert_list.signature {
        return Err(BackendError::Mismatch(
            "the CRL's signature algorithm fields disagree".into(),
        ));
    }
    let spki = parse_spki(issuer_spki)?;
    crl.verify_signature(&spki)
        .map_err(|e| BackendError::Mismatch(format!("the CRL's signature does not verify: {e}")))
}

fn parse_spki(der: &[u8]) -> Result<SubjectPublicKeyInfo<'_>, BackendError> {
    SubjectPublicKeyInfo::from_der(der)
        .map(|(_, spki)| spki)
        .map_err(|e| BackendError::Key(format!("the issuer public key does not parse: {e}")))
}

/// The whole cycle for a leaf: build the TBS, journal it, sign it on a blocking thread, assemble
/// and check. Returns the leaf DER.
pub async fn issue_leaf(
    req: &IssueRequest,
    issuer: &IssuerInfo,
    journal: &dyn IssuanceJournal,
) -> Result<Vec<u8>, BackendError> {
    let tbs = build_leaf_tbs(req, issuer)?;
    journal_and_sign(tbs, &req.serial, issuer, journal).await
}

/// Steps 2–5 of the cycle for any certificate: `tbs` to the journal, then signed (on a blocking
/// thread unless the key signs inline), assembled and checked.
pub(crate) async fn journal_and_sign(
    tbs: Vec<u8>,
    serial: &Serial,
    issuer: &IssuerInfo,
    journal: &dyn IssuanceJournal,
) -> Result<Vec<u8>, BackendError> {
    journal.record_tbs(serial, &tbs).await?;
    let key = Arc::clone(&issuer.key);
    let sign = |tbs: &[u8], key: &dyn KeySigner| {
        let cert = sign_tbs(tbs, key)?;
        check_certificate(&cert, tbs, key.public_key_der())?;
        Ok(cert)
    };
    if key.signs_inline() {
        return sign(&tbs, key.as_ref());
    }
    on_signing_thread(issuer.key.as_ref(), "signing", move || {
        sign(&tbs, key.as_ref())
    })
    .await
}

/// Runs `work`, which signs with `key`, on a blocking thread. A key with few sessions
/// ([`KeySigner::signing_slots`]) is waited for here, as a queued task rather than a thread
/// parked on the token; the permit goes with `work` and is given back when it ends. `what`
/// names the task in errors.
pub async fn on_signing_thread<T: Send + 'static>(
    key: &dyn KeySigner,
    what: &str,
    work: impl FnOnce() -> Result<T, BackendError> + Send + 'static,
) -> Result<T, BackendError> {
    let slot = match key.signing_slots() {
        Some(slots) => Some(
            tokio::time::timeout(SLOT_WAIT, slots.acquire_owned())
                .await
                .map_err(|_| {
                    BackendError::Sign(format!(
                        "no signing session came free within {} s",
                        SLOT_WAIT.as_secs()
                    ))
                })?
                .map_err(|_| BackendError::Sign("the key's sessions are closed".into()))?,
        ),
        None => None,
    };
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        work()
    })
    .await
    .map_err(|e| BackendError::Sign(format!("the {what} task did not finish: {e}")))?
}

/// How long a signature waits for one of its key's [`KeySigner::signing_slots`].
const SLOT_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// The TBSCertificate of a leaf, from the request and its profile only.
///
/// Subject: the request's `subject` as given, else `CN=<common_name>`, else empty. SAN: the DNS
/// names, IP addresses, e-mail addresses and URIs, critical when the subject is empty (RFC 5280
/// §4.2.1.6). basicConstraints `CA:FALSE` critical, keyUsage critical, extKeyUsage, AKI, SKI,
/// CRL distribution points, AIA (OCSP, caIssuers), TLS feature.
pub fn build_leaf_tbs(req: &IssueRequest, issuer: &IssuerInfo) -> Result<Vec<u8>, BackendError> {
    check_serial(&req.serial)?;
    check_validity(req.not_before, req.not_after)?;
    let no_san = req.dns_names.is_empty()
        && req.ip_addresses.is_empty()
        && req.email_addresses.is_empty()
        && req.uris.is_empty();
    if no_san && req.common_name.is_none() && req.subject.is_empty() {
        return Err(BackendError::Build(
            "a certificate needs a subject or a subject alternative name".into(),
        ));
    }
    if req.common_name.is_some() && !req.subject.is_empty() {
        return Err(BackendError::Build(
            "a request gives a common name or a whole subject, not both".into(),
        ));
    }

    let mut params = CertificateParams::default();
    params.distinguished_name = distinguished_name(&req.subject)?;
    if let Some(cn) = &req.common_name {
        if cn.is_empty() {
            return Err(BackendError::Build("the common name is empty".into()));
        }
        params
            .distinguished_name
            .push(DnType::CommonName, cn.as_str());
    }
    params.subject_alt_names = subject_alt_names(&req.dns_names, &req.ip_addresses)?;
    params
        .subject_alt_names
        .extend(other_alt_names(&req.email_addresses, &req.uris)?);
    params.serial_number = Some(SerialNumber::from_slice(req.serial.normalized()));
    params.not_before = req.not_before;
    params.not_after = req.not_after;
    // ExplicitNoCa writes basicConstraints CA:FALSE (critical) and the subjectKeyIdentifier.
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = req
        .profile
        .key_usage
        .iter()
        .map(|ku| key_usage(*ku))
        .collect();
    params.extended_key_usages = req
        .profile
        .ext_key_usage
        .iter()
        .map(|eku| ext_key_usage(*eku))
        .collect();
    if !req.profile.crl_distribution_points.is_empty() {
        params.crl_distribution_points = vec![CrlDistributionPoint {
            uris: req.profile.crl_distribution_points.clone(),
        }];
    }
    params.use_authority_key_identifier_extension = true;
    params.key_identifier_method = KeyIdMethod::Sha256;
    if let Some(aia) = authority_info_access(&req.profile.ocsp_urls, &req.profile.ca_issuers_urls) {
        params.custom_extensions.push(aia);
    }
    if let Some(policies) = certificate_policies(&req.profile.certificate_policies)? {
        params.custom_extensions.push(policies);
    }
    if req.profile.ocsp_no_check {
        params
            .custom_extensions
            .push(CustomExtension::from_oid_content(
                OID_OCSP_NOCHECK,
                vec![0x05, 0x00],
            ));
    }
    if req.profile.must_staple {
        params
            .custom_extensions
            .push(CustomExtension::from_oid_content(
                OID_TLS_FEATURE,
                MUST_STAPLE_VALUE.to_vec(),
            ));
    }

    let subject_key = rcgen::SubjectPublicKeyInfo::from_der(&req.subject_public_key_der)
        .map_err(|e| BackendError::Build(format!("unsupported subject public key: {e}")))?;
    let tbs = capture_signed_by(&params, &subject_key, issuer)?;
    check_tbs_public_key(&tbs, &req.subject_public_key_der)?;
    Ok(tbs)
}

/// A self-signed root CA certificate: basicConstraints CA:TRUE (critical, no path length),
/// keyUsage keyCertSign + cRLSign + digitalSignature (critical), SKI, AKI, random serial.
pub fn self_signed_root(
    key: &dyn KeySigner,
    common_name: &str,
    organization: Option<&str>,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<Vec<u8>, BackendError> {
    let params = ca_params(common_name, organization, None, not_before, not_after)?;
    self_sign(&params, key)
}

/// `params` laid out for `key`'s own public key, signed by `key`, checked. Blocking.
pub(crate) fn self_sign(
    params: &CertificateParams,
    key: &dyn KeySigner,
) -> Result<Vec<u8>, BackendError> {
    let capture = CapturingKey::new(key)?;
    params
        .self_signed(&capture)
        .map_err(|e| BackendError::Build(format!("building the self-signed certificate: {e}")))?;
    let tbs = capture.take()?;
    check_tbs_public_key(&tbs, key.public_key_der())?;
    let cert = sign_tbs(&tbs, key)?;
    check_certificate(&cert, &tbs, key.public_key_der())?;
    Ok(cert)
}

/// An intermediate CA certificate for `subject_spki`, signed by `issuer`: like a root, plus
/// `pathLenConstraint` when `path_len` is set. Blocking (signs in place).
pub fn intermediate(
    subject_spki: &[u8],
    issuer: &IssuerInfo,
    common_name: &str,
    organization: Option<&str>,
    path_len: Option<u8>,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<Vec<u8>, BackendError> {
    let params = ca_params(
        common_name,
        organization,
        Some(path_len),
        not_before,
        not_after,
    )?;
    let subject_key = rcgen::SubjectPublicKeyInfo::from_der(subject_spki)
        .map_err(|e| BackendError::Build(format!("unsupported subject public key: {e}")))?;
    let tbs = capture_signed_by(&params, &subject_key, issuer)?;
    check_tbs_public_key(&tbs, subject_spki)?;
    let cert = sign_tbs(&tbs, issuer.key.as_ref())?;
    check_certificate(&cert, &tbs, issuer.key.public_key_der())?;
    Ok(cert)
}

/// `path_len`: `None` for a root (unconstrained), `Some(limit)` for an intermediate.
fn ca_params(
    common_name: &str,
    organization: Option<&str>,
    path_len: Option<Option<u8>>,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<CertificateParams, BackendError> {
    check_validity(not_before, not_after)?;
    if common_name.is_empty() {
        return Err(BackendError::Build(
            "a CA certificate needs a common name".into(),
        ));
    }
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    if let Some(org) = organization {
        params
            .distinguished_name
            .push(DnType::OrganizationName, org);
    }
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.serial_number = Some(SerialNumber::from_slice(&Serial::random().0));
    params.not_before = not_before;
    params.not_after = not_after;
    make_ca(&mut params, path_len.flatten());
    params.use_authority_key_identifier_extension = true;
    params.key_identifier_method = KeyIdMethod::Sha256;
    Ok(params)
}

/// A CA's basicConstraints (with `path_len` as pathLenConstraint) and keyUsage
/// (digitalSignature, keyCertSign, cRLSign).
pub(crate) fn make_ca(params: &mut CertificateParams, path_len: Option<u8>) {
    params.is_ca = IsCa::Ca(match path_len {
        Some(limit) => BasicConstraints::Constrained(limit),
        None => BasicConstraints::Unconstrained,
    });
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
    ];
}

/// Lays out `params` for `subject_key` under `issuer`, returning the TBS rcgen would have signed.
pub(crate) fn capture_signed_by(
    params: &CertificateParams,
    subject_key: &impl PublicKeyData,
    issuer: &IssuerInfo,
) -> Result<Vec<u8>, BackendError> {
    let capture = CapturingKey::new(issuer.key.as_ref())?;
    let ca_cert = CertificateDer::from_slice(&issuer.cert_der);
    let rcgen_issuer = Issuer::from_ca_cert_der(&ca_cert, &capture)
        .map_err(|e| BackendError::Build(format!("reading the issuing CA certificate: {e}")))?;
    params
        .signed_by(subject_key, &rcgen_issuer)
        .map_err(|e| BackendError::Build(format!("building the certificate: {e}")))?;
    capture.take()
}

/// rcgen re-encodes the subject key; make sure it wrote the key the caller verified.
pub(crate) fn check_tbs_public_key(tbs: &[u8], expected_spki: &[u8]) -> Result<(), BackendError> {
    let (_, parsed) = x509_parser::certificate::TbsCertificate::from_der(tbs)
        .map_err(|e| BackendError::Build(format!("the built TBS does not parse: {e}")))?;
    if parsed.subject_pki.raw != expected_spki {
        return Err(BackendError::Mismatch(
            "the built certificate does not carry the requested public key".into(),
        ));
    }
    Ok(())
}

pub(crate) fn check_serial(serial: &Serial) -> Result<(), BackendError> {
    let bytes = serial.normalized();
    if bytes.is_empty() {
        return Err(BackendError::Build(
            "the serial number must be positive".into(),
        ));
    }
    let encoded_len = bytes.len() + usize::from(bytes[0] >= 0x80);
    if encoded_len > MAX_SERIAL_OCTETS {
        return Err(BackendError::Build(format!(
            "the serial number is {encoded_len} octets, at most 20 allowed"
        )));
    }
    Ok(())
}

pub(crate) fn check_validity(
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<(), BackendError> {
    if not_after <= not_before {
        return Err(BackendError::Build(
            "notAfter must be later than notBefore".into(),
        ));
    }
    Ok(())
}

/// rfc822Name and uniformResourceIdentifier SANs (IA5String: ASCII only).
fn other_alt_names(emails: &[String], uris: &[String]) -> Result<Vec<SanType>, BackendError> {
    let ia5 = |what: &str, value: &str| {
        Ia5String::try_from(value)
            .map_err(|_| BackendError::Build(format!("{what} {value:?} is not ASCII")))
    };
    let mut names = Vec::with_capacity(emails.len() + uris.len());
    for email in emails {
        names.push(SanType::Rfc822Name(ia5("e-mail address", email)?));
    }
    for uri in uris {
        names.push(SanType::URI(ia5("URI", uri)?));
    }
    Ok(names)
}

/// A subject in the given RDN order. rcgen keeps one value per attribute type, so a subject
/// that repeats a type is refused rather than silently shortened.
pub(crate) fn distinguished_name(
    subject: &[crate::SubjectAttribute],
) -> Result<DistinguishedName, BackendError> {
    use crate::StringKind;
    let mut dn = DistinguishedName::new();
    for (i, attribute) in subject.iter().enumerate() {
        if subject[..i].iter().any(|a| a.oid == attribute.oid) {
            return Err(BackendError::Build(format!(
                "the subject repeats the attribute {}",
                dotted(&attribute.oid)
            )));
        }
        let value = &attribute.value;
        let bad = |kind: &str| {
            BackendError::Build(format!(
                "the subject attribute {} is not a valid {kind}",
                dotted(&attribute.oid)
            ))
        };
        let value = match attribute.kind {
            StringKind::Printable => rcgen::DnValue::PrintableString(
                rcgen::string::PrintableString::try_from(value.as_str())
                    .map_err(|_| bad("PrintableString"))?,
            ),
            StringKind::Ia5 => rcgen::DnValue::Ia5String(
                Ia5String::try_from(value.as_str()).map_err(|_| bad("IA5String"))?,
            ),
            StringKind::Utf8 => rcgen::DnValue::Utf8String(value.clone()),
        };
        dn.push(DnType::from_oid(&attribute.oid), value);
    }
    Ok(dn)
}

fn dotted(arcs: &[u64]) -> String {
    arcs.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

fn subject_alt_names(dns_names: &[String], ips: &[IpAddr]) -> Result<Vec<SanType>, BackendError> {
    let mut names = Vec::with_capacity(dns_names.len() + ips.len());
    for name in dns_names {
        let ia5 = Ia5String::try_from(name.as_str())
            .map_err(|_| BackendError::Build(format!("DNS name {name:?} is not ASCII")))?;
        names.push(SanType::DnsName(ia5));
    }
    names.extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
    Ok(names)
}

fn key_usage(bit: KeyUsageBit) -> KeyUsagePurpose {
    match bit {
        KeyUsageBit::DigitalSignature => KeyUsagePurpose::DigitalSignature,
        KeyUsageBit::ContentCommitment => KeyUsagePurpose::ContentCommitment,
        KeyUsageBit::KeyEncipherment => KeyUsagePurpose::KeyEncipherment,
        KeyUsageBit::DataEncipherment => KeyUsagePurpose::DataEncipherment,
        KeyUsageBit::KeyAgreement => KeyUsagePurpose::KeyAgreement,
        KeyUsageBit::KeyCertSign => KeyUsagePurpose::KeyCertSign,
        KeyUsageBit::CrlSign => KeyUsagePurpose::CrlSign,
        KeyUsageBit::EncipherOnly => KeyUsagePurpose::EncipherOnly,
        KeyUsageBit::DecipherOnly => KeyUsagePurpose::DecipherOnly,
    }
}

fn ext_key_usage(eku: ExtKeyUsage) -> ExtendedKeyUsagePurpose {
    match eku {
        ExtKeyUsage::ServerAuth => ExtendedKeyUsagePurpose::ServerAuth,
        ExtKeyUsage::ClientAuth => ExtendedKeyUsagePurpose::ClientAuth,
        ExtKeyUsage::CodeSigning => ExtendedKeyUsagePurpose::CodeSigning,
        ExtKeyUsage::EmailProtection => ExtendedKeyUsagePurpose::EmailProtection,
        ExtKeyUsage::OcspSigning => ExtendedKeyUsagePurpose::OcspSigning,
    }
}

/// Checks policy OIDs from configuration before any certificate is built with them.
pub fn check_certificate_policies(dotted: &[String]) -> Result<(), BackendError> {
    certificate_policies(dotted).map(|_| ())
}

/// `certificatePolicies ::= SEQUENCE OF PolicyInformation` (RFC 5280 §4.2.1.4), non-critical,
/// identifiers only (no qualifiers, as the CA/Browser Forum BRs recommend); `None` for no policy.
fn certificate_policies(dotted: &[String]) -> Result<Option<CustomExtension>, BackendError> {
    if dotted.is_empty() {
        return Ok(None);
    }
    let mut infos = Vec::new();
    for policy in dotted {
        let arcs = der::parse_dotted_oid(policy).ok_or_else(|| {
            BackendError::Build(format!("certificate policy {policy:?} is not a dotted OID"))
        })?;
        infos.extend(der::sequence(&[&der::oid(&arcs)]));
    }
    Ok(Some(CustomExtension::from_oid_content(
        OID_CERTIFICATE_POLICIES,
        der::tlv(der::SEQUENCE, &infos),
    )))
}

/// `AuthorityInfoAccessSyntax ::= SEQUENCE OF AccessDescription` (RFC 5280 §4.2.2.1), OCSP
/// responders first; `None` when there is nothing to say.
pub(crate) fn authority_info_access(
    ocsp_urls: &[String],
    ca_issuers_urls: &[String],
) -> Option<CustomExtension> {
    if ocsp_urls.is_empty() && ca_issuers_urls.is_empty() {
        return None;
    }
    let ocsp = der::oid(OID_AD_OCSP);
    let ca_issuers = der::oid(OID_AD_CA_ISSUERS);
    let descriptions: Vec<u8> = ocsp_urls
        .iter()
        .map(|url| (&ocsp, url))
        .chain(ca_issuers_urls.iter().map(|url| (&ca_issuers, url)))
        .flat_map(|(method, url)| der::sequence(&[method, &der::tlv(der::URI, url.as_bytes())]))
        .collect();
    Some(CustomExtension::from_oid_content(
        OID_AUTHORITY_INFO_ACCESS,
        der::tlv(der::SEQUENCE, &descriptions),
    ))
}

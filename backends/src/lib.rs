//! pkid signing backends: one trait ([`SigningBackend`]) over who issues, one ([`KeySigner`])
//! over who holds the key.
//!
//! Local backends (software keys, PKCS#11 tokens) share one certificate and CRL builder
//! ([`builder`]) that follows Boulder's issuance cycle: build the to-be-signed certificate,
//! hand it to the caller's [`IssuanceJournal`], sign it, assemble the certificate, check it.
//! Remote backends (upstream ACME CAs, CFSSL) forward the CSR and may answer
//! [`Issuance::Pending`].
//!
//! Certificates and CRLs follow RFC 5280 (§4 certificates, §5 CRLs); must-staple is the TLS
//! feature extension of RFC 7633.
//!
//! Where things are:
//! - this file: the trait and what crosses it ([`IssueRequest`], [`Issuance`], [`CrlRequest`],
//!   [`Capabilities`], [`Serial`], [`KeyAlgorithm`], [`BackendError`]);
//! - [`keys`]: who holds the key — [`KeySigner`] and [`SoftwareKey`], the software backend
//!   ([`keys::software`]) and PKCS#11 tokens ([`keys::pkcs11`]);
//! - [`local`]: what a local CA builds — certificates ([`local::builder`]), CRLs
//!   ([`local::crl`]), OCSP responses ([`local::ocsp`]) and the OCSP requests they answer
//!   ([`local::ocsp_request`]), audit checkpoints ([`local::checkpoint`]), over a small DER
//!   writer and reader; every signature of a CA key counted ([`keys::counted`]);
//! - [`upstream`]: remote CAs — ACME ([`upstream::acme`]) and CFSSL ([`upstream::cfssl`]);
//! - [`sealed`] and [`secret`]: the key-encryption key and secrets read from the environment or
//!   files.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

pub mod keys;
pub mod local;
pub mod metrics;
pub mod sealed;
pub mod secret;
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests;
pub mod upstream;

// The module paths callers have used since before the crate took folders.
pub use keys::{pkcs11, software};
pub use local::{builder, crl, ocsp};

pub use keys::custody::{CaKeyReference, CaKeys, KeyCustody, Pkcs11Token};
pub use keys::pkcs11::{Pin, Pkcs11Backend, Pkcs11Config, Pkcs11Key};
pub use keys::software::SoftwareBackend;
pub use keys::{KeySigner, SoftwareKey};
pub use local::builder::IssuerInfo;
pub use local::template::CaTemplate;
pub use sealed::KeyEncryptionKey;
pub use upstream::acme::{UpstreamAcmeBackend, UpstreamAcmeConfig};
pub use upstream::cfssl::{UpstreamCfsslBackend, UpstreamCfsslConfig};
pub use upstream::pem_certificates;

/// The key algorithms pkid can generate and sign with.
///
/// Signatures use SHA-256 for P-256 and every RSA size, SHA-384 for P-384, RSA with PKCS#1 v1.5.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyAlgorithm {
    EcdsaP256,
    EcdsaP384,
    Rsa2048,
    Rsa3072,
    Rsa4096,
    Ed25519,
}

impl KeyAlgorithm {
    /// Every algorithm, for tests and for listing what a backend supports.
    pub const ALL: [KeyAlgorithm; 6] = [
        KeyAlgorithm::EcdsaP256,
        KeyAlgorithm::EcdsaP384,
        KeyAlgorithm::Rsa2048,
        KeyAlgorithm::Rsa3072,
        KeyAlgorithm::Rsa4096,
        KeyAlgorithm::Ed25519,
    ];

    /// The kebab-case name used in configuration ("ecdsa-p256", …).
    pub fn as_str(self) -> &'static str {
        match self {
            KeyAlgorithm::EcdsaP256 => "ecdsa-p256",
            KeyAlgorithm::EcdsaP384 => "ecdsa-p384",
            KeyAlgorithm::Rsa2048 => "rsa2048",
            KeyAlgorithm::Rsa3072 => "rsa3072",
            KeyAlgorithm::Rsa4096 => "rsa4096",
            KeyAlgorithm::Ed25519 => "ed25519",
        }
    }

    pub fn is_rsa(self) -> bool {
        matches!(
            self,
            KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 | KeyAlgorithm::Rsa4096
        )
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for KeyAlgorithm {
    type Err = BackendError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        KeyAlgorithm::ALL
            .into_iter()
            .find(|alg| alg.as_str() == s)
            .ok_or_else(|| BackendError::Key(format!("unknown key algorithm {s:?}")))
    }
}

/// Everything a backend can fail with. Messages name what failed and on what; they never carry
/// key material.
#[derive(thiserror::Error, Debug)]
pub enum BackendError {
    /// A key could not be generated, parsed, loaded or used.
    #[error("key: {0}")]
    Key(String),
    /// A certificate or CRL could not be built from the request.
    #[error("build: {0}")]
    Build(String),
    /// The signing operation itself failed.
    #[error("sign: {0}")]
    Sign(String),
    /// The backend does not offer this operation.
    #[error("unsupported: {0}")]
    Unsupported(&'static str),
    /// Reading or writing files, or the caller's journal, failed.
    #[error("io: {0}")]
    Io(String),
    /// A remote CA refused or failed.
    #[error("upstream: {0}")]
    Upstream(String),
    /// What was signed is not what was recorded, or a key does not match its certificate.
    #[error("mismatch: {0}")]
    Mismatch(String),
}

/// A certificate serial number: the big-endian bytes of a positive integer.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Serial(pub Vec<u8>);

impl Serial {
    /// Length of a fresh serial in bytes.
    pub const RANDOM_LEN: usize = 16;

    /// 16 bytes from the operating system's CSPRNG, first byte in `0x01..=0x7f`: positive, always
    /// exactly 16 bytes in DER, and 127 random bits (CA/B Forum BRs ask for at least 64).
    pub fn random() -> Serial {
        use rand::RngCore;
        let mut bytes = [0u8; Self::RANDOM_LEN];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        bytes[0] &= 0x7f;
        if bytes[0] == 0 {
            bytes[0] = 0x01;
        }
        Serial(bytes.to_vec())
    }

    /// Lowercase hex, no separators.
    pub fn to_hex(&self) -> String {
        hex::encode(&self.0)
    }

    /// Parses hex (either case, an even number of digits).
    pub fn from_hex(s: &str) -> Result<Serial, BackendError> {
        let bytes = hex::decode(s)
            .map_err(|e| BackendError::Build(format!("serial {s:?} is not hex: {e}")))?;
        if bytes.is_empty() {
            return Err(BackendError::Build("empty serial".into()));
        }
        Ok(Serial(bytes))
    }

    /// The serial without leading zero bytes, as DER and RFC 5280 compare it.
    pub fn normalized(&self) -> &[u8] {
        let start = self.0.iter().position(|b| *b != 0).unwrap_or(self.0.len());
        &self.0[start..]
    }
}

impl fmt::Debug for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Serial({})", self.to_hex())
    }
}

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// What a backend can do, declared up front so the RA can refuse early.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    pub issue: bool,
    pub revoke: bool,
    pub crl: bool,
    pub ocsp: bool,
    /// Issuance may answer [`Issuance::Pending`]; the caller polls.
    pub pending: bool,
    pub key_generation: bool,
    /// Issuance hands the to-be-signed certificate to the caller's [`IssuanceJournal`] before
    /// it signs (the local backends); an upstream CA builds and signs out of sight.
    #[serde(default)]
    pub journals: bool,
}

/// Key usage bits (RFC 5280 §4.2.1.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyUsageBit {
    DigitalSignature,
    ContentCommitment,
    KeyEncipherment,
    DataEncipherment,
    KeyAgreement,
    KeyCertSign,
    CrlSign,
    EncipherOnly,
    DecipherOnly,
}

/// Extended key usages (RFC 5280 §4.2.1.12).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExtKeyUsage {
    ServerAuth,
    ClientAuth,
    CodeSigning,
    EmailProtection,
    OcspSigning,
}

/// The extensions a leaf gets, decided by the RA's profile (never copied from the CSR).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertProfile {
    pub key_usage: Vec<KeyUsageBit>,
    pub ext_key_usage: Vec<ExtKeyUsage>,
    pub crl_distribution_points: Vec<String>,
    pub ocsp_urls: Vec<String>,
    pub ca_issuers_urls: Vec<String>,
    /// Adds the RFC 7633 TLS feature extension with status_request (OCSP must-staple).
    pub must_staple: bool,
    /// Certificate policy OIDs in dotted form (RFC 5280 §4.2.1.4), e.g. the CA/Browser Forum's
    /// domain-validated `2.23.140.1.2.1`; none: no certificatePolicies extension.
    #[serde(default)]
    pub certificate_policies: Vec<String>,
    /// Adds id-pkix-ocsp-nocheck (RFC 6960 §4.2.2.2.1): for delegated OCSP responder
    /// certificates, which relying parties then trust for their lifetime without a check.
    #[serde(default)]
    pub ocsp_no_check: bool,
}

/// How an attribute value of a subject is encoded (RFC 5280 §4.1.2.4 `DirectoryString`, and
/// IA5String for `emailAddress`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StringKind {
    Printable,
    Utf8,
    Ia5,
}

/// One attribute of a subject name, in the order of its RDNs (RFC 5280 §4.1.2.6), each RDN
/// single-valued: `C=TR`, `ST=Izmir` … `CN=banana.com`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SubjectAttribute {
    /// The attribute type's arcs (`[2, 5, 4, 3]`: commonName).
    pub oid: Vec<u64>,
    pub value: String,
    pub kind: StringKind,
}

impl SubjectAttribute {
    /// commonName (2.5.4.3).
    pub const COMMON_NAME: &'static [u64] = &[2, 5, 4, 3];
    /// countryName (2.5.4.6), always a PrintableString of two letters.
    pub const COUNTRY_NAME: &'static [u64] = &[2, 5, 4, 6];
    pub const LOCALITY_NAME: &'static [u64] = &[2, 5, 4, 7];
    pub const STATE_OR_PROVINCE_NAME: &'static [u64] = &[2, 5, 4, 8];
    pub const ORGANIZATION_NAME: &'static [u64] = &[2, 5, 4, 10];
    pub const ORGANIZATIONAL_UNIT_NAME: &'static [u64] = &[2, 5, 4, 11];

    /// A UTF8String attribute (a PrintableString for countryName, as RFC 5280 asks).
    pub fn text(oid: &[u64], value: &str) -> SubjectAttribute {
        SubjectAttribute {
            oid: oid.to_vec(),
            value: value.to_owned(),
            kind: if oid == Self::COUNTRY_NAME {
                StringKind::Printable
            } else {
                StringKind::Utf8
            },
        }
    }
}

/// One certificate to issue. Local backends build it from these fields only; upstream backends
/// forward `csr_der`.
#[derive(Clone, Debug)]
pub struct IssueRequest {
    /// The original CSR (upstream backends forward it).
    pub csr_der: Vec<u8>,
    /// SubjectPublicKeyInfo DER, already verified by the caller.
    pub subject_public_key_der: Vec<u8>,
    pub common_name: Option<String>,
    /// The whole subject, in order, for a profile that copies one (Notary's copies the CSR's);
    /// empty: the subject is `CN=common_name`, or empty. Not both.
    pub subject: Vec<SubjectAttribute>,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    /// rfc822Name SANs.
    pub email_addresses: Vec<String>,
    /// uniformResourceIdentifier SANs.
    pub uris: Vec<String>,
    pub serial: Serial,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub profile: CertProfile,
}

/// What an issuance produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Issuance {
    /// DER certificates, leaf first, then intermediates; the root is excluded.
    Issued { chain: Vec<Vec<u8>> },
    /// A slow upstream: poll again with `upstream_ref` after `retry_after`.
    Pending {
        upstream_ref: String,
        retry_after: Duration,
    },
}

/// CRL reason codes (RFC 5280 §5.3.1); 7 is unassigned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[repr(u8)]
pub enum RevocationReason {
    Unspecified = 0,
    KeyCompromise = 1,
    CaCompromise = 2,
    AffiliationChanged = 3,
    Superseded = 4,
    CessationOfOperation = 5,
    CertificateHold = 6,
    RemoveFromCrl = 8,
    PrivilegeWithdrawn = 9,
    AaCompromise = 10,
}

impl RevocationReason {
    pub fn from_code(code: u8) -> Option<RevocationReason> {
        Some(match code {
            0 => RevocationReason::Unspecified,
            1 => RevocationReason::KeyCompromise,
            2 => RevocationReason::CaCompromise,
            3 => RevocationReason::AffiliationChanged,
            4 => RevocationReason::Superseded,
            5 => RevocationReason::CessationOfOperation,
            6 => RevocationReason::CertificateHold,
            8 => RevocationReason::RemoveFromCrl,
            9 => RevocationReason::PrivilegeWithdrawn,
            10 => RevocationReason::AaCompromise,
            _ => return None,
        })
    }

    pub fn code(self) -> u8 {
        self as u8
    }
}

/// One entry of a CRL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevokedEntry {
    pub serial: Serial,
    pub revoked_at: OffsetDateTime,
    /// `None` and `Some(Unspecified)` both leave the reason code out (RFC 5280 §5.3.1).
    pub reason: Option<RevocationReason>,
    pub invalidity_date: Option<OffsetDateTime>,
}

/// A CRL to sign: the issuer's complete CRL, one shard of it, or a delta CRL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrlRequest {
    pub crl_number: u64,
    pub this_update: OffsetDateTime,
    pub next_update: OffsetDateTime,
    pub entries: Vec<RevokedEntry>,
    /// The URL of this shard, written as a critical issuingDistributionPoint (RFC 5280
    /// §5.2.5) that matches the CRL distribution point of the shard's certificates; `None`: a
    /// complete CRL.
    pub issuing_distribution_point: Option<String>,
    /// A delta CRL (RFC 5280 §5.2.4) over the complete CRL with this number: written as the
    /// critical deltaCRLIndicator.
    pub delta_crl_indicator: Option<u64>,
    /// Where the delta CRLs of this complete CRL are (freshestCRL, §5.2.6).
    pub freshest_crl: Option<String>,
}

/// How a key's PKCS#11 sessions are used, at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionUse {
    /// Logged-in sessions the key keeps.
    pub sessions: usize,
    /// Of them, signing now.
    pub in_use: usize,
    /// Signatures that found their session, login or token gone and recovered (or tried to).
    pub recoveries: u64,
}

/// Where local backends record what they are about to sign.
#[async_trait::async_trait]
pub trait IssuanceJournal: Send + Sync {
    /// Called by local backends with the exact to-be-signed certificate bytes BEFORE the
    /// signature is made (Boulder's linting/precert step). Returning Err aborts issuance without
    /// signing.
    async fn record_tbs(&self, serial: &Serial, tbs_der: &[u8]) -> Result<(), BackendError>;
}

/// A journal that records nothing, for callers that keep no issuance log (tests, bootstrap).
pub struct NoJournal;

#[async_trait::async_trait]
impl IssuanceJournal for NoJournal {
    async fn record_tbs(&self, _serial: &Serial, _tbs_der: &[u8]) -> Result<(), BackendError> {
        Ok(())
    }
}

/// Who issues: a local key (software, PKCS#11) or a remote CA.
#[async_trait::async_trait]
pub trait SigningBackend: Send + Sync {
    fn name(&self) -> &str;
    fn capabilities(&self) -> Capabilities;
    /// The issuing CA certificate chain (issuing CA first, root last), DER.
    fn ca_chain(&self) -> Vec<Vec<u8>>;
    async fn issue(
        &self,
        req: IssueRequest,
        journal: &dyn IssuanceJournal,
    ) -> Result<Issuance, BackendError>;
    async fn poll(&self, upstream_ref: &str) -> Result<Issuance, BackendError>;
    async fn revoke(
        &self,
        serial: &Serial,
        cert_der: &[u8],
        reason: RevocationReason,
    ) -> Result<(), BackendError>;
    /// A DER CRL over `req.entries`.
    async fn sign_crl(&self, req: CrlRequest) -> Result<Vec<u8>, BackendError>;
    /// Sign a CA certificate for `subject_spki` from `template` (an intermediate under this
    /// issuer), handing its to-be-signed bytes to `journal` first, as a leaf's. Local backends;
    /// an upstream CA certifies no CA for pkid.
    async fn sign_ca_certificate(
        &self,
        template: CaTemplate,
        subject_spki: &[u8],
        journal: &dyn IssuanceJournal,
    ) -> Result<Vec<u8>, BackendError> {
        let _ = (template, subject_spki, journal);
        Err(BackendError::Unsupported(
            "this backend does not certify CA certificates",
        ))
    }
    /// Whether the backend can sign now (readiness): a local key signs a probe and the
    /// signature is checked; an upstream CA is not probed (it answers when it issues).
    async fn probe(&self) -> Result<(), BackendError> {
        Ok(())
    }
    /// What kind of backend this is, for metrics: `software`, `pkcs11`, `acme`, `cfssl` …
    fn kind(&self) -> &'static str {
        "remote"
    }
    /// PKCS#11 session use of the issuing key, for metrics; `None` for other keys.
    fn session_use(&self) -> Option<SessionUse> {
        None
    }
    /// Sign an OCSP response for certificates of this issuer (local backends).
    async fn sign_ocsp(
        &self,
        req: local::ocsp::OcspResponseRequest,
    ) -> Result<Vec<u8>, BackendError> {
        let _ = req;
        Err(BackendError::Unsupported(
            "this backend does not sign OCSP responses",
        ))
    }
    /// Sign an audit checkpoint with the issuing key (local backends), domain-separated from
    /// everything else the key signs ([`local::checkpoint`]); the algorithm and the signature.
    async fn sign_checkpoint(
        &self,
        message: &[u8],
    ) -> Result<(KeyAlgorithm, Vec<u8>), BackendError> {
        let _ = message;
        Err(BackendError::Unsupported(
            "this backend holds no key to sign audit checkpoints with",
        ))
    }
    /// Signatures the backend's key has made since it was opened (local backends); `None`:
    /// the key is an upstream CA's.
    fn signatures(&self) -> Option<u64> {
        None
    }
}

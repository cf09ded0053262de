//! The backend suite: what a relying party would check, with `openssl` as the judge.

use std::net::IpAddr;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use time::{Duration, OffsetDateTime};
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::keys::software::SoftwareBackend;
use crate::keys::{KeySigner, SoftwareKey};
use crate::local::builder::{self, IssuerInfo};
use crate::sealed::KeyEncryptionKey;
use crate::{
    BackendError, CertProfile, CrlRequest, ExtKeyUsage, Issuance, IssuanceJournal, IssueRequest,
    KeyAlgorithm, KeyUsageBit, RevocationReason, RevokedEntry, Serial, SigningBackend,
};

/// Runs openssl; a missing binary fails the test, it never skips.
fn openssl(dir: &Path, args: &[&str]) -> std::process::Output {
    match Command::new("openssl").args(args).current_dir(dir).output() {
        Ok(out) => out,
        Err(e) => panic!("openssl is required for these tests and could not be run ({e}); install it (apt-get install openssl)"),
    }
}

pub(crate) fn assert_openssl_ok(dir: &Path, args: &[&str]) -> String {
    let out = openssl(dir, args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "openssl {args:?} failed:\n{stdout}\n{stderr}"
    );
    stdout + &stderr
}

pub(crate) fn write_pem(dir: &Path, name: &str, label: &str, ders: &[&[u8]]) {
    let text: String = ders
        .iter()
        .map(|der| pem::encode(&pem::Pem::new(label, der.to_vec())))
        .collect();
    std::fs::write(dir.join(name), text).unwrap();
}

#[derive(Default)]
struct RecordingJournal(Mutex<Vec<(Serial, Vec<u8>)>>);

#[async_trait::async_trait]
impl IssuanceJournal for RecordingJournal {
    async fn record_tbs(&self, serial: &Serial, tbs_der: &[u8]) -> Result<(), BackendError> {
        self.0
            .lock()
            .unwrap()
            .push((serial.clone(), tbs_der.to_vec()));
        Ok(())
    }
}

struct RefusingJournal;

#[async_trait::async_trait]
impl IssuanceJournal for RefusingJournal {
    async fn record_tbs(&self, _serial: &Serial, _tbs_der: &[u8]) -> Result<(), BackendError> {
        Err(BackendError::Io("lint failed".into()))
    }
}

/// Counts signatures, and can be told to sign the wrong bytes.
struct WatchedSigner {
    inner: SoftwareKey,
    signatures: AtomicUsize,
    sign_wrong_bytes: bool,
}

impl KeySigner for WatchedSigner {
    fn algorithm(&self) -> KeyAlgorithm {
        self.inner.algorithm()
    }
    fn public_key_der(&self) -> &[u8] {
        self.inner.public_key_der()
    }
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, BackendError> {
        self.signatures.fetch_add(1, Ordering::SeqCst);
        if self.sign_wrong_bytes {
            return self.inner.sign(b"something else");
        }
        self.inner.sign(message)
    }
}

pub(crate) fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

struct Hierarchy {
    root_der: Vec<u8>,
    inter_der: Vec<u8>,
    inter_key: Arc<SoftwareKey>,
}

impl Hierarchy {
    fn new(alg: KeyAlgorithm) -> Hierarchy {
        let root_key = Arc::new(SoftwareKey::generate(alg).unwrap());
        let root_der = builder::self_signed_root(
            root_key.as_ref(),
            "Test Root",
            Some("pkid tests"),
            now() - Duration::hours(1),
            now() + Duration::days(3650),
        )
        .unwrap();
        let root = IssuerInfo::new(root_der.clone(), root_key).unwrap();
        let inter_key = Arc::new(SoftwareKey::generate(alg).unwrap());
        let inter_der = builder::intermediate(
            inter_key.public_key_der(),
            &root,
            "Test Intermediate",
            Some("pkid tests"),
            Some(0),
            now() - Duration::hours(1),
            now() + Duration::days(1825),
        )
        .unwrap();
        Hierarchy {
            root_der,
            inter_der,
            inter_key,
        }
    }

    fn issuer(&self) -> IssuerInfo {
        IssuerInfo::new(self.inter_der.clone(), self.inter_key.clone()).unwrap()
    }
}

pub(crate) fn leaf_request(profile: CertProfile) -> IssueRequest {
    let subject = SoftwareKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    IssueRequest {
        csr_der: vec![0x30, 0x00],
        subject_public_key_der: subject.public_key_der().to_vec(),
        common_name: None,
        subject: Vec::new(),
        dns_names: vec!["www.example.test".into(), "example.test".into()],
        ip_addresses: vec![
            "192.0.2.7".parse::<IpAddr>().unwrap(),
            "2001:db8::1".parse::<IpAddr>().unwrap(),
        ],
        email_addresses: Vec::new(),
        uris: Vec::new(),
        serial: Serial::random(),
        not_before: now() - Duration::minutes(5),
        not_after: now() + Duration::days(90),
        profile,
    }
}

pub(crate) fn tls_profile() -> CertProfile {
    CertProfile {
        key_usage: vec![KeyUsageBit::DigitalSignature],
        ext_key_usage: vec![ExtKeyUsage::ServerAuth, ExtKeyUsage::ClientAuth],
        crl_distribution_points: vec!["http://ca.example.test/crl".into()],
        ocsp_urls: vec!["http://ca.example.test/ocsp".into()],
        ca_issuers_urls: vec!["http://ca.example.test/intermediate.der".into()],
        must_staple: false,
        certificate_policies: vec!["2.23.140.1.2.1".into(), "1.3.6.1.4.1.99999.1".into()],
        ocsp_no_check: false,
    }
}

/// Root, intermediate and a P-256 leaf under `alg`, checked by `openssl verify -x509_strict`.
async fn chain_verifies_with_openssl(alg: KeyAlgorithm) {
    let hierarchy = Hierarchy::new(alg);
    let backend = SoftwareBackend::new(
        "test",
        SoftwareKey::from_pkcs8_der(&hierarchy.inter_key.to_pkcs8_der()).unwrap(),
        vec![hierarchy.inter_der.clone(), hierarchy.root_der.clone()],
    )
    .unwrap();
    let journal = RecordingJournal::default();
    let req = leaf_request(tls_profile());
    let Issuance::Issued { chain } = backend.issue(req.clone(), &journal).await.unwrap() else {
        panic!("the software backend answered Pending");
    };
    assert_eq!(chain.len(), 2, "leaf + intermediate, root excluded");
    assert_eq!(chain[1], hierarchy.inter_der);

    let dir = tempfile::tempdir().unwrap();
    write_pem(
        dir.path(),
        "root.pem",
        "CERTIFICATE",
        &[&hierarchy.root_der],
    );
    write_pem(
        dir.path(),
        "inter.pem",
        "CERTIFICATE",
        &[&hierarchy.inter_der],
    );
    write_pem(dir.path(), "leaf.pem", "CERTIFICATE", &[&chain[0]]);
    let out = assert_openssl_ok(
        dir.path(),
        &[
            "verify",
            "-x509_strict",
            "-purpose",
            "sslserver",
            "-CAfile",
            "root.pem",
            "-untrusted",
            "inter.pem",
            "leaf.pem",
        ],
    );
    assert!(out.contains("leaf.pem: OK"), "{alg}: {out}");

    let (_, leaf) = X509Certificate::from_der(&chain[0]).unwrap();
    assert_eq!(leaf.raw_serial(), req.serial.0.as_slice());
    assert_eq!(leaf.public_key().raw, req.subject_public_key_der.as_slice());
    assert_eq!(
        leaf.signature_algorithm,
        X509Certificate::from_der(&hierarchy.inter_der)
            .unwrap()
            .1
            .signature_algorithm
    );
}

#[tokio::test]
async fn p256_chain_verifies_with_openssl() {
    chain_verifies_with_openssl(KeyAlgorithm::EcdsaP256).await;
}

#[tokio::test]
async fn p384_chain_verifies_with_openssl() {
    chain_verifies_with_openssl(KeyAlgorithm::EcdsaP384).await;
}

#[tokio::test]
async fn rsa2048_chain_verifies_with_openssl() {
    chain_verifies_with_openssl(KeyAlgorithm::Rsa2048).await;
}

#[tokio::test]
async fn rsa3072_chain_verifies_with_openssl() {
    chain_verifies_with_openssl(KeyAlgorithm::Rsa3072).await;
}

#[tokio::test]
async fn rsa4096_chain_verifies_with_openssl() {
    chain_verifies_with_openssl(KeyAlgorithm::Rsa4096).await;
}

#[tokio::test]
async fn ed25519_chain_verifies_with_openssl() {
    chain_verifies_with_openssl(KeyAlgorithm::Ed25519).await;
}

#[tokio::test]
async fn crl_verifies_and_lists_the_serials() {
    let hierarchy = Hierarchy::new(KeyAlgorithm::EcdsaP256);
    let backend = SoftwareBackend::new(
        "test",
        SoftwareKey::from_pkcs8_der(&hierarchy.inter_key.to_pkcs8_der()).unwrap(),
        vec![hierarchy.inter_der.clone(), hierarchy.root_der.clone()],
    )
    .unwrap();
    let serials: Vec<Serial> = (0..3).map(|_| Serial::random()).collect();
    let revoked_at = now() - Duration::hours(2);
    let req = CrlRequest {
        crl_number: 42,
        this_update: now(),
        next_update: now() + Duration::days(7),
        entries: vec![
            RevokedEntry {
                serial: serials[0].clone(),
                revoked_at,
                reason: Some(RevocationReason::KeyCompromise),
                invalidity_date: Some(revoked_at - Duration::days(1)),
            },
            RevokedEntry {
                serial: serials[1].clone(),
                revoked_at,
                reason: Some(RevocationReason::Superseded),
                invalidity_date: None,
            },
            RevokedEntry {
                serial: serials[2].clone(),
                revoked_at,
                reason: None,
                invalidity_date: None,
            },
        ],
        issuing_distribution_point: None,
        delta_crl_indicator: None,
        freshest_crl: None,
    };
    let crl = backend.sign_crl(req).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    write_pem(dir.path(), "crl.pem", "X509 CRL", &[&crl]);
    write_pem(
        dir.path(),
        "chain.pem",
        "CERTIFICATE",
        &[&hierarchy.inter_der, &hierarchy.root_der],
    );
    let out = assert_openssl_ok(
        dir.path(),
        &[
            "crl",
            "-in",
            "crl.pem",
            "-CAfile",
            "chain.pem",
            "-verify",
            "-noout",
        ],
    );
    assert!(out.contains("verify OK"), "{out}");
    let text = assert_openssl_ok(dir.path(), &["crl", "-in", "crl.pem", "-text", "-noout"]);
    for serial in &serials {
        assert!(
            text.contains(&serial.to_hex().to_uppercase()),
            "{} missing from\n{text}",
            serial.to_hex()
        );
    }
    assert!(text.contains("Key Compromise"), "{text}");
    assert!(text.contains("Superseded"), "{text}");
    assert!(text.contains("Invalidity Date"), "{text}");
    assert!(text.contains("X509v3 CRL Number"), "{text}");
    assert!(
        text.lines().any(|l| l.trim() == "42"),
        "CRL number 42 missing from\n{text}"
    );
    assert!(text.contains("X509v3 Authority Key Identifier"), "{text}");
}

#[tokio::test]
async fn a_refusing_journal_stops_issuance_before_any_signature() {
    let hierarchy = Hierarchy::new(KeyAlgorithm::EcdsaP256);
    let signer = Arc::new(WatchedSigner {
        inner: SoftwareKey::from_pkcs8_der(&hierarchy.inter_key.to_pkcs8_der()).unwrap(),
        signatures: AtomicUsize::new(0),
        sign_wrong_bytes: false,
    });
    let issuer = IssuerInfo::new(hierarchy.inter_der.clone(), signer.clone()).unwrap();
    let err = builder::issue_leaf(&leaf_request(tls_profile()), &issuer, &RefusingJournal)
        .await
        .unwrap_err();
    assert!(matches!(err, BackendError::Io(_)), "{err}");
    assert_eq!(
        signer.signatures.load(Ordering::SeqCst),
        0,
        "a signature was made despite the journal's refusal"
    );

    // The same issuer signs once when the journal agrees.
    builder::issue_leaf(
        &leaf_request(tls_profile()),
        &issuer,
        &RecordingJournal::default(),
    )
    .await
    .unwrap();
    assert_eq!(signer.signatures.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn the_recorded_tbs_is_the_issued_tbs() {
    let hierarchy = Hierarchy::new(KeyAlgorithm::EcdsaP384);
    let journal = RecordingJournal::default();
    let req = leaf_request(tls_profile());
    let leaf = builder::issue_leaf(&req, &hierarchy.issuer(), &journal)
        .await
        .unwrap();
    let recorded = journal.0.lock().unwrap().clone();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].0, req.serial);
    let (_, cert) = X509Certificate::from_der(&leaf).unwrap();
    assert_eq!(cert.tbs_certificate.as_ref(), recorded[0].1.as_slice());
}

#[tokio::test]
async fn a_signature_over_other_bytes_is_caught() {
    let hierarchy = Hierarchy::new(KeyAlgorithm::EcdsaP256);
    let signer = Arc::new(WatchedSigner {
        inner: SoftwareKey::from_pkcs8_der(&hierarchy.inter_key.to_pkcs8_der()).unwrap(),
        signatures: AtomicUsize::new(0),
        sign_wrong_bytes: true,
    });
    let issuer = IssuerInfo::new(hierarchy.inter_der.clone(), signer).unwrap();
    let err = builder::issue_leaf(
        &leaf_request(tls_profile()),
        &issuer,
        &RecordingJournal::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, BackendError::Mismatch(_)), "{err}");

    let tbs = builder::build_leaf_tbs(&leaf_request(tls_profile()), &hierarchy.issuer()).unwrap();
    let cert = builder::sign_tbs(&tbs, hierarchy.inter_key.as_ref()).unwrap();
    let other_tbs =
        builder::build_leaf_tbs(&leaf_request(tls_profile()), &hierarchy.issuer()).unwrap();
    assert!(matches!(
        builder::check_certificate(&cert, &other_tbs, hierarchy.inter_key.public_key_der()),
        Err(BackendError::Mismatch(_))
    ));
    builder::check_certificate(&cert, &tbs, hierarchy.inter_key.public_key_der()).unwrap();
}

#[test]
fn an_issuer_key_must_match_its_certificate() {
    let hierarchy = Hierarchy::new(KeyAlgorithm::EcdsaP256);
    let stranger = Arc::new(SoftwareKey::generate(KeyAlgorithm::EcdsaP256).unwrap());
    assert!(matches!(
        IssuerInfo::new(hierarchy.inter_der.clone(), stranger),
        Err(BackendError::Mismatch(_))
    ));
}

fn extension_oids(cert: &X509Certificate<'_>) -> Vec<String> {
    cert.extensions()
        .iter()
        .map(|e| e.oid.to_id_string())
        .collect()
}

const AKI: &str = "2.5.29.35";
const SAN: &str = "2.5.29.17";
const KU: &str = "2.5.29.15";
const EKU: &str = "2.5.29.37";
const CRL_DP: &str = "2.5.29.31";
const SKI: &str = "2.5.29.14";
const BC: &str = "2.5.29.19";
const AIA: &str = "1.3.6.1.5.5.7.1.1";
const TLS_FEATURE: &str = "1.3.6.1.5.5.7.1.24";
const POLICIES: &str = "2.5.29.32";

#[tokio::test]
async fn leaf_extensions_are_exactly_what_the_profile_says() {
    let hierarchy = Hierarchy::new(KeyAlgorithm::EcdsaP256);
    let issuer = hierarchy.issuer();

    // A bare profile: names, key identifiers and CA:FALSE only.
    let bare = builder::issue_leaf(
        &leaf_request(CertProfile::default()),
        &issuer,
        &RecordingJournal::default(),
    )
    .await
    .unwrap();
    let (_, cert) = X509Certificate::from_der(&bare).unwrap();
    assert_eq!(extension_oids(&cert), vec![AKI, SAN, SKI, BC]);
    assert!(
        cert.subject().iter().next().is_none(),
        "subject should be empty"
    );
    let san = cert
        .extensions()
        .iter()
        .find(|e| e.oid.to_id_string() == SAN)
        .unwrap();
    assert!(
        san.critical,
        "SAN must be critical when the subject is empty"
    );
    let bc = cert.basic_constraints().unwrap().unwrap();
    assert!(bc.critical && !bc.value.ca);

    // The full TLS profile with must-staple.
    let mut profile = tls_profile();
    profile.must_staple = true;
    let mut req = leaf_request(profile);
    req.common_name = Some("www.example.test".into());
    let full = builder::issue_leaf(&req, &issuer, &RecordingJournal::default())
        .await
        .unwrap();
    let (_, cert) = X509Certificate::from_der(&full).unwrap();
    assert_eq!(
        extension_oids(&cert),
        vec![
            AKI,
            SAN,
            KU,
            EKU,
            CRL_DP,
            SKI,
            BC,
            AIA,
            POLICIES,
            TLS_FEATURE
        ]
    );
    let policies = cert
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::CertificatePolicies(p) => Some(
                p.iter()
                    .map(|info| {
                        (
                            info.policy_id.to_id_string(),
                            info.policy_qualifiers.is_none(),
                        )
                    })
                    .collect::<Vec<_>>(),
            ),
            _ => None,
        });
    assert_eq!(
        policies,
        Some(vec![
            ("2.23.140.1.2.1".to_string(), true),
            ("1.3.6.1.4.1.99999.1".to_string(), true)
        ])
    );
    let tls_feature = cert
        .extensions()
        .iter()
        .find(|e| e.oid.to_id_string() == TLS_FEATURE)
        .unwrap();
    assert_eq!(tls_feature.value, &[0x30, 0x03, 0x02, 0x01, 0x05]);
    assert!(!tls_feature.critical);
    assert_eq!(cert.subject().to_string(), "CN=www.example.test");
    let san = cert.subject_alternative_name().unwrap().unwrap();
    assert!(!san.critical);
    let names: Vec<String> = san
        .value
        .general_names
        .iter()
        .map(|n| match n {
            GeneralName::DNSName(d) => d.to_string(),
            GeneralName::IPAddress(ip) => format!("ip:{}", ip.len()),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        names,
        vec!["www.example.test", "example.test", "ip:4", "ip:16"]
    );
    let ku = cert.key_usage().unwrap().unwrap();
    assert!(ku.critical && ku.value.digital_signature() && !ku.value.key_encipherment());
    let aki = cert
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) => aki.key_identifier.clone(),
            _ => None,
        });
    let (_, inter) = X509Certificate::from_der(&hierarchy.inter_der).unwrap();
    let inter_ski = inter
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(ski) => Some(ski.clone()),
            _ => None,
        });
    assert_eq!(aki.map(|k| k.0.to_vec()), inter_ski.map(|k| k.0.to_vec()));
    let aia = cert
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityInfoAccess(aia) => Some(aia.accessdescs.len()),
            _ => None,
        });
    assert_eq!(aia, Some(2));

    let dir = tempfile::tempdir().unwrap();
    write_pem(dir.path(), "leaf.pem", "CERTIFICATE", &[&full]);
    let text = assert_openssl_ok(dir.path(), &["x509", "-in", "leaf.pem", "-noout", "-text"]);
    assert!(
        text.contains("TLS Feature") && text.contains("status_request"),
        "{text}"
    );
    assert!(
        text.contains("OCSP - URI:http://ca.example.test/ocsp"),
        "{text}"
    );
    assert!(
        text.contains("CA Issuers - URI:http://ca.example.test/intermediate.der"),
        "{text}"
    );
}

#[test]
fn ca_certificates_carry_ca_extensions() {
    let hierarchy = Hierarchy::new(KeyAlgorithm::EcdsaP256);
    for (der, path_len) in [(&hierarchy.root_der, None), (&hierarchy.inter_der, Some(0))] {
        let (_, cert) = X509Certificate::from_der(der).unwrap();
        assert_eq!(extension_oids(&cert), vec![AKI, KU, SKI, BC]);
        let bc = cert.basic_constraints().unwrap().unwrap();
        assert!(bc.critical && bc.value.ca);
        assert_eq!(bc.value.path_len_constraint, path_len);
        let ku = cert.key_usage().unwrap().unwrap();
        assert!(
            ku.critical
                && ku.value.key_cert_sign()
                && ku.value.crl_sign()
                && ku.value.digital_signature()
        );
        assert_eq!(cert.raw_serial().len(), 16);
        assert!(cert.raw_serial()[0] < 0x80);
    }
}

#[test]
fn bad_requests_are_refused_before_signing() {
    let hierarchy = Hierarchy::new(KeyAlgorithm::EcdsaP256);
    let issuer = hierarchy.issuer();
    let mut no_names = leaf_request(CertProfile::default());
    no_names.dns_names.clear();
    no_names.ip_addresses.clear();
    assert!(matches!(
        builder::build_leaf_tbs(&no_names, &issuer),
        Err(BackendError::Build(_))
    ));
    let mut backwards = leaf_request(CertProfile::default());
    backwards.not_after = backwards.not_before - Duration::seconds(1);
    assert!(matches!(
        builder::build_leaf_tbs(&backwards, &issuer),
        Err(BackendError::Build(_))
    ));
    let mut zero = leaf_request(CertProfile::default());
    zero.serial = Serial(vec![0, 0]);
    assert!(matches!(
        builder::build_leaf_tbs(&zero, &issuer),
        Err(BackendError::Build(_))
    ));
    let mut long = leaf_request(CertProfile::default());
    long.serial = Serial(vec![0x80; 20]);
    assert!(matches!(
        builder::build_leaf_tbs(&long, &issuer),
        Err(BackendError::Build(_))
    ));
    let mut garbage_key = leaf_request(CertProfile::default());
    garbage_key.subject_public_key_der = vec![0x30, 0x00];
    assert!(matches!(
        builder::build_leaf_tbs(&garbage_key, &issuer),
        Err(BackendError::Build(_))
    ));
    let bad_policy = leaf_request(CertProfile {
        certificate_policies: vec!["2.23.140.1.2.1".into(), "dv".into()],
        ..CertProfile::default()
    });
    assert!(matches!(
        builder::build_leaf_tbs(&bad_policy, &issuer),
        Err(BackendError::Build(_))
    ));
}

#[test]
fn serials_are_random_positive_and_sixteen_bytes() {
    let mut seen = std::collections::HashSet::new();
    for _ in 0..1000 {
        let serial = Serial::random();
        assert_eq!(serial.0.len(), 16);
        assert!((0x01..=0x7f).contains(&serial.0[0]));
        assert!(seen.insert(serial.clone()));
        let hex = serial.to_hex();
        assert_eq!(hex, hex.to_lowercase());
        assert_eq!(Serial::from_hex(&hex).unwrap(), serial);
        assert_eq!(Serial::from_hex(&hex.to_uppercase()).unwrap(), serial);
    }
    assert!(Serial::from_hex("xyz").is_err());
    assert!(Serial::from_hex("").is_err());
}

#[test]
fn revocation_reason_codes_round_trip() {
    for code in 0..=11u8 {
        match RevocationReason::from_code(code) {
            Some(reason) => assert_eq!(reason.code(), code),
            None => assert!(code == 7 || code == 11),
        }
    }
}

#[test]
fn key_algorithm_names_are_kebab_case() {
    assert_eq!(
        serde_json::to_string(&KeyAlgorithm::EcdsaP256).unwrap(),
        "\"ecdsa-p256\""
    );
    for alg in KeyAlgorithm::ALL {
        assert_eq!(serde_json::to_string(&alg).unwrap(), format!("\"{alg}\""));
        assert_eq!(alg.as_str().parse::<KeyAlgorithm>().unwrap(), alg);
    }
}

#[tokio::test]
async fn open_or_create_creates_once_then_loads_the_same_hierarchy() {
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("ca");
    let kek = KeyEncryptionKey::generate();

    let (first, created) =
        SoftwareBackend::open_or_create("default", &ca_dir, &kek, KeyAlgorithm::EcdsaP256).unwrap();
    assert!(created);
    let (second, created) =
        SoftwareBackend::open_or_create("default", &ca_dir, &kek, KeyAlgorithm::EcdsaP256).unwrap();
    assert!(!created);
    assert_eq!(first.root_der(), second.root_der());
    assert_eq!(first.ca_chain(), second.ca_chain());
    assert_eq!(second.ca_chain().len(), 2);
    assert_eq!(second.ca_chain()[1], second.root_der());

    #[cfg(unix)]
    for name in [
        "root.pem",
        "root.key.sealed",
        "intermediate.pem",
        "intermediate.key.sealed",
    ] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(ca_dir.join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{name}");
    }
    let sealed = std::fs::read_to_string(ca_dir.join("root.key.sealed")).unwrap();
    assert!(sealed.starts_with("-----BEGIN PKID ENCRYPTED PRIVATE KEY-----"));

    let (_, root) = X509Certificate::from_der(second.root_der()).unwrap();
    assert_eq!(root.subject().to_string(), "O=pkid, CN=pkid Root CA");
    let chain = second.ca_chain();
    let (_, inter) = X509Certificate::from_der(&chain[0]).unwrap();
    assert_eq!(
        inter.subject().to_string(),
        "O=pkid, CN=pkid Intermediate CA"
    );
    let years = |c: &X509Certificate<'_>| {
        (c.validity().not_after.timestamp() - c.validity().not_before.timestamp()) / 86400 / 365
    };
    assert_eq!(years(&root), 10);
    assert_eq!(years(&inter), 5);

    // The loaded backend issues, and openssl accepts the on-disk files as they are.
    let Issuance::Issued { chain } = second
        .issue(leaf_request(tls_profile()), &RecordingJournal::default())
        .await
        .unwrap()
    else {
        panic!("pending");
    };
    write_pem(dir.path(), "leaf.pem", "CERTIFICATE", &[&chain[0]]);
    let out = assert_openssl_ok(
        dir.path(),
        &[
            "verify",
            "-x509_strict",
            "-CAfile",
            "ca/root.pem",
            "-untrusted",
            "ca/intermediate.pem",
            "leaf.pem",
        ],
    );
    assert!(out.contains("leaf.pem: OK"), "{out}");

    // A wrong KEK cannot load it.
    let err = SoftwareBackend::open_or_create(
        "default",
        &ca_dir,
        &KeyEncryptionKey::generate(),
        KeyAlgorithm::EcdsaP256,
    )
    .unwrap_err();
    assert!(matches!(err, BackendError::Key(_)), "{err}");

    // Keys swapped between roles do not open (the role is authenticated data).
    std::fs::copy(
        ca_dir.join("root.key.sealed"),
        ca_dir.join("intermediate.key.sealed"),
    )
    .unwrap();
    assert!(
        SoftwareBackend::open_or_create("default", &ca_dir, &kek, KeyAlgorithm::EcdsaP256).is_err()
    );

    // A partial hierarchy is never overwritten.
    std::fs::remove_file(ca_dir.join("intermediate.key.sealed")).unwrap();
    let err = SoftwareBackend::open_or_create("default", &ca_dir, &kek, KeyAlgorithm::EcdsaP256)
        .unwrap_err();
    assert!(matches!(err, BackendError::Io(_)), "{err}");
    assert!(ca_dir.join("root.pem").exists());
}

#[tokio::test]
async fn software_backend_capabilities_and_poll() {
    let dir = tempfile::tempdir().unwrap();
    let (backend, _) = SoftwareBackend::open_or_create(
        "soft",
        dir.path(),
        &KeyEncryptionKey::generate(),
        KeyAlgorithm::Ed25519,
    )
    .unwrap();
    assert_eq!(backend.name(), "soft");
    let caps = backend.capabilities();
    assert!(
        caps.issue && caps.revoke && caps.crl && caps.ocsp && caps.key_generation && !caps.pending
    );
    assert!(matches!(
        backend.poll("anything").await,
        Err(BackendError::Unsupported(_))
    ));
    backend
        .revoke(&Serial::random(), &[], RevocationReason::KeyCompromise)
        .await
        .unwrap();
}

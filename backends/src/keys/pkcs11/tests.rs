//! The PKCS#11 suite, against real SoftHSM tokens, with `openssl` and the token itself as judges.
//!
//! How tests share SoftHSM: the library has one state per process (the loader hands every
//! context the same copy) and reads `SOFTHSM2_CONF` only at `C_Initialize`. So every test of
//! this process uses one configuration and one token directory, set up once before the library
//! is first initialised; each test makes its own token there under a unique label; and each
//! holds [`SERIAL`] for its whole run, because the fault tests finalise the library behind the
//! keys' back and would otherwise reach other tests' sessions. `softhsm2-util` and `pkcs11-tool`
//! run as children with the same `SOFTHSM2_CONF`. A missing SoftHSM fails the tests; they never
//! skip.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use aws_lc_rs::signature::{
    UnparsedPublicKey, VerificationAlgorithm, ECDSA_P256_SHA256_ASN1, ECDSA_P384_SHA384_ASN1,
    RSA_PKCS1_2048_8192_SHA256,
};
use cryptoki::error::RvError;
use cryptoki::object::{Attribute, AttributeType};
use time::Duration;
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

use super::encoding::{ecdsa_raw_to_der, uncompressed_point};
use super::module::ckr_name;
use super::*;
use crate::keys::SoftwareKey;
use crate::tests::{assert_openssl_ok, leaf_request, now, tls_profile, write_pem};
use crate::{
    CrlRequest, Issuance, KeyAlgorithm, NoJournal, RevocationReason, RevokedEntry, Serial,
    SigningBackend,
};

const USER_PIN: &str = "4321";
const SO_PIN: &str = "87654321";
const KEY_LABEL: &str = "pkid-issuing";

/// Held by every test here for its whole run (see the module documentation).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct SoftHsmEnv {
    _dir: tempfile::TempDir,
    conf: PathBuf,
}

fn not_installed(what: &str) -> ! {
    panic!("softhsm2 not installed: run ./conformance/run ({what})")
}

/// The process-wide SoftHSM configuration, created once.
fn softhsm() -> &'static SoftHsmEnv {
    static ENV: OnceLock<SoftHsmEnv> = OnceLock::new();
    ENV.get_or_init(|| {
        if !Path::new(SOFTHSM_MODULE).exists() {
            not_installed(&format!("{SOFTHSM_MODULE} is missing"));
        }
        match Command::new("softhsm2-util").arg("--version").output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => not_installed(&format!(
                "softhsm2-util --version failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )),
            Err(e) => not_installed(&format!("softhsm2-util cannot run: {e}")),
        }
        let dir = tempfile::tempdir().unwrap();
        let tokens = dir.path().join("tokens");
        std::fs::create_dir(&tokens).unwrap();
        let conf = dir.path().join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
                tokens.display()
            ),
        )
        .unwrap();
        // Before any C_Initialize in this process: every test goes through here first.
        std::env::set_var("SOFTHSM2_CONF", &conf);
        SoftHsmEnv { _dir: dir, conf }
    })
}

/// Runs a SoftHSM / OpenSC tool against the test token directory.
fn tool(program: &str, args: &[&str]) -> String {
    let out = match Command::new(program)
        .args(args)
        .env("SOFTHSM2_CONF", &softhsm().conf)
        .output()
    {
        Ok(out) => out,
        Err(e) => not_installed(&format!("{program} cannot run: {e}")),
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{program} {args:?} failed:\n{text}");
    text
}

/// A token of this test's own, and a folder for its PIN file and openssl's files.
struct TestToken {
    label: String,
    dir: tempfile::TempDir,
}

impl TestToken {
    fn new() -> TestToken {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        softhsm();
        let label = format!("pkid-test-{}", NEXT.fetch_add(1, Ordering::SeqCst));
        let token = TestToken {
            label,
            dir: tempfile::tempdir().unwrap(),
        };
        token.init();
        std::fs::write(token.pin_file(), format!("{USER_PIN}\n")).unwrap();
        token
    }

    fn init(&self) {
        tool(
            "softhsm2-util",
            &[
                "--init-token",
                "--free",
                "--label",
                &self.label,
                "--pin",
                USER_PIN,
                "--so-pin",
                SO_PIN,
            ],
        );
    }

    /// The token folder deleted and made again, same label and PINs: every object is gone.
    fn reinitialise(&self) {
        tool("softhsm2-util", &["--delete-token", "--token", &self.label]);
        self.init();
    }

    fn pin_file(&self) -> PathBuf {
        self.dir.path().join("pin")
    }

    fn config(&self, algorithm: KeyAlgorithm) -> Pkcs11Config {
        Pkcs11Config {
            module: PathBuf::from(SOFTHSM_MODULE),
            token_label: self.label.clone(),
            pin_env: None,
            pin_file: Some(self.pin_file()),
            key_label: KEY_LABEL.into(),
            algorithm,
            sessions: 2,
        }
    }

    fn pkcs11_tool(&self, args: &[&str]) -> String {
        let mut all = vec![
            "--module",
            SOFTHSM_MODULE,
            "--token-label",
            &self.label,
            "--login",
            "--pin",
            USER_PIN,
        ];
        all.extend_from_slice(args);
        tool("pkcs11-tool", &all)
    }
}

fn verifier(alg: KeyAlgorithm) -> &'static dyn VerificationAlgorithm {
    match alg {
        KeyAlgorithm::EcdsaP256 => &ECDSA_P256_SHA256_ASN1,
        KeyAlgorithm::EcdsaP384 => &ECDSA_P384_SHA384_ASN1,
        _ => &RSA_PKCS1_2048_8192_SHA256,
    }
}

/// Checks an X.509-encoded signature with aws-lc against the key's SPKI.
fn assert_signature_verifies(key: &Pkcs11Key, message: &[u8], signature: &[u8]) {
    let (_, spki) = SubjectPublicKeyInfo::from_der(key.public_key_der()).unwrap();
    UnparsedPublicKey::new(
        verifier(key.algorithm()),
        spki.subject_public_key.data.as_ref(),
    )
    .verify(message, signature)
    .unwrap_or_else(|_| panic!("the {} signature does not verify", key.algorithm()));
}

fn software_root(alg: KeyAlgorithm) -> IssuerInfo {
    let root_key = Arc::new(SoftwareKey::generate(alg).unwrap());
    let root_der = builder::self_signed_root(
        root_key.as_ref(),
        "Test Root",
        Some("pkid tests"),
        now() - Duration::hours(1),
        now() + Duration::days(3650),
    )
    .unwrap();
    IssuerInfo::new(root_der, root_key).unwrap()
}

/// Issues a leaf through `backend` and has openssl verify it up to the root.
async fn assert_leaf_verifies(backend: &Pkcs11Backend, dir: &Path) -> Serial {
    let req = leaf_request(tls_profile());
    let serial = req.serial.clone();
    let Issuance::Issued { chain } = backend.issue(req, &NoJournal).await.unwrap() else {
        panic!("the PKCS#11 backend answered Pending");
    };
    assert_eq!(
        chain.len(),
        backend.ca_chain().len(),
        "leaf + intermediates"
    );
    write_pem(dir, "root.pem", "CERTIFICATE", &[backend.root_der()]);
    let intermediates: Vec<&[u8]> = chain[1..].iter().map(Vec::as_slice).collect();
    write_pem(dir, "untrusted.pem", "CERTIFICATE", &intermediates);
    write_pem(dir, "leaf.pem", "CERTIFICATE", &[&chain[0]]);
    let mut args = vec![
        "verify",
        "-x509_strict",
        "-purpose",
        "sslserver",
        "-CAfile",
        "root.pem",
    ];
    if !intermediates.is_empty() {
        args.extend(["-untrusted", "untrusted.pem"]);
    }
    args.push("leaf.pem");
    let out = assert_openssl_ok(dir, &args);
    assert!(out.contains("leaf.pem: OK"), "{out}");
    serial
}

/// Root (software) → intermediate (token key) → leaf, and a CRL signed by the token key, all
/// checked by openssl.
async fn token_intermediate_chain_and_crl_verify(alg: KeyAlgorithm) {
    let _serial = SERIAL.lock().await;
    let token = TestToken::new();
    let key = Arc::new(Pkcs11Key::generate(&token.config(alg)).unwrap());
    assert_eq!(key.algorithm(), alg);
    let signature = key.sign(b"hello").unwrap();
    assert_signature_verifies(&key, b"hello", &signature);

    let root = software_root(alg);
    let backend =
        Pkcs11Backend::create_intermediate("hsm", key, &root, "pkid HSM Intermediate").unwrap();
    assert_eq!(backend.ca_chain().len(), 2);
    assert_eq!(backend.root_der(), root.cert_der.as_slice());
    let dir = token.dir.path();
    let leaf_serial = assert_leaf_verifies(&backend, dir).await;

    let crl = backend
        .sign_crl(CrlRequest {
            crl_number: 7,
            this_update: now(),
            next_update: now() + Duration::days(7),
            entries: vec![RevokedEntry {
                serial: leaf_serial.clone(),
                revoked_at: now() - Duration::minutes(1),
                reason: Some(RevocationReason::KeyCompromise),
                invalidity_date: None,
            }],
            issuing_distribution_point: None,
            delta_crl_indicator: None,
            freshest_crl: None,
        })
        .await
        .unwrap();
    write_pem(dir, "crl.pem", "X509 CRL", &[&crl]);
    write_pem(
        dir,
        "chain.pem",
        "CERTIFICATE",
        &[&backend.ca_chain()[0], &root.cert_der],
    );
    let out = assert_openssl_ok(
        dir,
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
    assert!(out.contains("verify OK"), "{alg}: {out}");
    let text = assert_openssl_ok(dir, &["crl", "-in", "crl.pem", "-text", "-noout"]);
    assert!(
        text.contains(&leaf_serial.to_hex().to_uppercase()),
        "{alg}: {text}"
    );
}

#[tokio::test]
async fn pkcs11_p256_intermediate_chain_and_crl_verify_with_openssl() {
    token_intermediate_chain_and_crl_verify(KeyAlgorithm::EcdsaP256).await;
}

#[tokio::test]
async fn pkcs11_p384_intermediate_chain_and_crl_verify_with_openssl() {
    token_intermediate_chain_and_crl_verify(KeyAlgorithm::EcdsaP384).await;
}

#[tokio::test]
async fn pkcs11_rsa2048_intermediate_chain_and_crl_verify_with_openssl() {
    token_intermediate_chain_and_crl_verify(KeyAlgorithm::Rsa2048).await;
}

#[tokio::test]
async fn pkcs11_root_in_the_token_issues_and_certifies_a_token_intermediate() {
    let _serial = SERIAL.lock().await;
    let token = TestToken::new();
    let root_cfg = Pkcs11Config {
        key_label: "pkid-root".into(),
        ..token.config(KeyAlgorithm::EcdsaP384)
    };
    let root_key = Arc::new(Pkcs11Key::generate(&root_cfg).unwrap());
    let root = Pkcs11Backend::create_root("hsm-root", root_key, "pkid HSM Root").unwrap();
    assert_eq!(root.ca_chain().len(), 1);
    assert_leaf_verifies(&root, token.dir.path()).await;

    let inter_key = Arc::new(Pkcs11Key::generate(&token.config(KeyAlgorithm::EcdsaP256)).unwrap());
    let inter =
        Pkcs11Backend::create_intermediate("hsm", inter_key, root.issuer(), "pkid HSM Inter")
            .unwrap();
    assert_leaf_verifies(&inter, token.dir.path()).await;
}

#[test]
fn pkcs11_private_key_stays_sensitive_and_unextractable() {
    let _serial = SERIAL.blocking_lock();
    let token = TestToken::new();
    let key = Pkcs11Key::generate(&token.config(KeyAlgorithm::EcdsaP256)).unwrap();

    let state = key.token.module.read();
    let session = key.token.open_logged_in(&state, false).unwrap();
    let (private_key, spki) = key.token.find_key(&session).unwrap();
    assert_eq!(spki, key.public_key_der());
    let attributes = session
        .get_attributes(
            private_key,
            &[
                AttributeType::Token,
                AttributeType::Private,
                AttributeType::Sensitive,
                AttributeType::AlwaysSensitive,
                AttributeType::Extractable,
                AttributeType::NeverExtractable,
                AttributeType::Sign,
            ],
        )
        .unwrap();
    session.close().unwrap();
    drop(state);
    let mut seen = 0;
    for attribute in attributes {
        seen += 1;
        match attribute {
            Attribute::Token(v) => assert!(v, "CKA_TOKEN"),
            Attribute::Private(v) => assert!(v, "CKA_PRIVATE"),
            Attribute::Sensitive(v) => assert!(v, "CKA_SENSITIVE"),
            Attribute::AlwaysSensitive(v) => assert!(v, "CKA_ALWAYS_SENSITIVE"),
            Attribute::Extractable(v) => assert!(!v, "CKA_EXTRACTABLE"),
            Attribute::NeverExtractable(v) => assert!(v, "CKA_NEVER_EXTRACTABLE"),
            Attribute::Sign(v) => assert!(v, "CKA_SIGN"),
            other => panic!("unexpected attribute {other:?}"),
        }
    }
    assert_eq!(seen, 7, "every attribute asked for was answered");

    let listing = token.pkcs11_tool(&["--list-objects"]);
    assert!(listing.contains("Private Key Object"), "{listing}");
    assert!(
        listing.contains(&format!("label:      {KEY_LABEL}")),
        "{listing}"
    );
    assert!(listing.contains("sign"), "{listing}");
}

#[test]
fn pkcs11_open_or_generate_generates_once_then_opens_the_same_key() {
    let _serial = SERIAL.blocking_lock();
    let token = TestToken::new();
    let cfg = token.config(KeyAlgorithm::EcdsaP256);
    let (first, generated) = Pkcs11Key::open_or_generate(&cfg).unwrap();
    assert!(generated);
    let (again, generated) = Pkcs11Key::open_or_generate(&cfg).unwrap();
    assert!(!generated);
    assert_eq!(first.public_key_der(), again.public_key_der());
    let opened = Pkcs11Key::open(&cfg).unwrap();
    assert_eq!(opened.public_key_der(), first.public_key_der());
    assert_eq!(
        (opened.token_label(), opened.key_label()),
        (token.label.as_str(), KEY_LABEL)
    );

    let err = Pkcs11Key::generate(&cfg).unwrap_err();
    assert!(
        matches!(&err, BackendError::Key(m) if m.contains("already holds a key labelled")),
        "{err}"
    );
    let err = Pkcs11Key::open(&Pkcs11Config {
        key_label: "no-such-key".into(),
        ..cfg.clone()
    })
    .unwrap_err();
    assert!(
        matches!(&err, BackendError::Key(m) if m.contains("no private key labelled \"no-such-key\"")),
        "{err}"
    );
    let err = Pkcs11Key::open(&Pkcs11Config {
        algorithm: KeyAlgorithm::Rsa2048,
        ..cfg.clone()
    })
    .unwrap_err();
    assert!(
        matches!(&err, BackendError::Key(m) if m.contains("the configuration says rsa2048")),
        "{err}"
    );
    let err = Pkcs11Key::open(&Pkcs11Config {
        token_label: "no-such-token".into(),
        ..cfg
    })
    .unwrap_err();
    assert!(
        matches!(&err, BackendError::Key(m) if m.contains("no token labelled \"no-such-token\"")),
        "{err}"
    );
}

#[test]
fn pkcs11_concurrent_signatures_share_the_session_pool() {
    let _serial = SERIAL.blocking_lock();
    let token = TestToken::new();
    let key = Arc::new(Pkcs11Key::generate(&token.config(KeyAlgorithm::EcdsaP256)).unwrap());
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let key = Arc::clone(&key);
            std::thread::spawn(move || {
                for i in 0..100 {
                    let message = format!("thread {t} message {i}");
                    let signature = key.sign(message.as_bytes()).unwrap();
                    assert_signature_verifies(&key, message.as_bytes(), &signature);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(key.recoveries(), 0);
    assert_eq!(
        key.pool.idle.lock().unwrap().len(),
        2,
        "every session came back"
    );
}

#[test]
fn pkcs11_signing_recovers_after_every_session_is_closed() {
    let _serial = SERIAL.blocking_lock();
    let token = TestToken::new();
    let key = Pkcs11Key::generate(&token.config(KeyAlgorithm::EcdsaP256)).unwrap();
    key.sign(b"before").unwrap();

    // Like C_CloseAllSessions, or an HSM restart: every session and login of this process gone,
    // and nobody told the key.
    key.token.module.drop_everything_behind_the_keys_back(true);
    for i in 0..4 {
        let message = format!("after {i}");
        let signature = key.sign(message.as_bytes()).unwrap();
        assert_signature_verifies(&key, message.as_bytes(), &signature);
    }
    // The first failure re-initialised the library; the other pooled session was then known
    // stale without being tried (its handle number may name a fresh session by now).
    assert_eq!(key.recoveries(), 1);
}

#[test]
fn pkcs11_signing_recovers_after_the_library_is_finalized() {
    let _serial = SERIAL.blocking_lock();
    let token = TestToken::new();
    let key = Pkcs11Key::generate(&token.config(KeyAlgorithm::EcdsaP384)).unwrap();
    key.sign(b"before").unwrap();

    key.token.module.drop_everything_behind_the_keys_back(false);
    for i in 0..4 {
        let message = format!("after {i}");
        let signature = key.sign(message.as_bytes()).unwrap();
        assert_signature_verifies(&key, message.as_bytes(), &signature);
    }
    assert_eq!(key.recoveries(), 1);
}

#[test]
fn pkcs11_signing_recovers_after_a_logout_behind_its_back() {
    let _serial = SERIAL.blocking_lock();
    let token = TestToken::new();
    let key = Pkcs11Key::generate(&token.config(KeyAlgorithm::Rsa2048)).unwrap();
    key.sign(b"before").unwrap();

    // Login is per application and token: one logout logs every session of the key out.
    {
        let state = key.token.module.read();
        let session = key.token.open_logged_in(&state, false).unwrap();
        session.logout().unwrap();
        session.close().unwrap();
    }
    for i in 0..4 {
        let message = format!("after {i}");
        let signature = key.sign(message.as_bytes()).unwrap();
        assert_signature_verifies(&key, message.as_bytes(), &signature);
    }
    assert!((1..=2).contains(&key.recoveries()), "{}", key.recoveries());
}

#[tokio::test]
async fn pkcs11_a_reinitialised_token_is_a_clear_error_never_a_wrong_signature() {
    let _serial = SERIAL.lock().await;
    let token = TestToken::new();
    let key = Arc::new(Pkcs11Key::generate(&token.config(KeyAlgorithm::EcdsaP256)).unwrap());
    let backend = Pkcs11Backend::create_intermediate(
        "hsm",
        Arc::clone(&key),
        &software_root(KeyAlgorithm::EcdsaP256),
        "pkid HSM Intermediate",
    )
    .unwrap();
    assert_leaf_verifies(&backend, token.dir.path()).await;

    // The operator wipes the token: the key is gone.
    token.reinitialise();
    let err = key.sign(b"after the wipe").unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(&err, BackendError::Sign(m) if m.starts_with("PKCS#11: ")),
        "{text}"
    );
    assert!(text.contains("no private key labelled"), "{text}");

    // ... then makes a new key under the same label, from another process.
    token.pkcs11_tool(&[
        "--keypairgen",
        "--key-type",
        "EC:prime256v1",
        "--label",
        KEY_LABEL,
        "--id",
        "01",
    ]);
    for _ in 0..2 {
        let err = key.sign(b"with the new key").unwrap_err();
        assert!(
            matches!(&err, BackendError::Mismatch(m) if m.contains("no longer the key this CA was started with")),
            "{err}"
        );
        let err = backend
            .issue(leaf_request(tls_profile()), &NoJournal)
            .await
            .unwrap_err();
        assert!(matches!(err, BackendError::Mismatch(_)), "{err}");
    }
    assert!(!format!("{err:?}").contains(USER_PIN));
}

#[test]
fn pkcs11_a_wrong_pin_is_a_clear_error_that_does_not_show_the_pin() {
    let _serial = SERIAL.blocking_lock();
    let token = TestToken::new();
    let cfg = token.config(KeyAlgorithm::EcdsaP256);
    Pkcs11Key::generate(&cfg).unwrap();

    let wrong_pin_file = token.dir.path().join("wrong-pin");
    std::fs::write(&wrong_pin_file, "97531\n").unwrap();
    let wrong = Pkcs11Config {
        pin_file: Some(wrong_pin_file),
        ..cfg.clone()
    };
    for err in [
        Pkcs11Key::open(&wrong).unwrap_err(),
        Pkcs11Key::generate(&wrong).unwrap_err(),
    ] {
        let text = format!("{err} {err:?}");
        assert!(
            matches!(&err, BackendError::Key(m)
                if m == &format!("PKCS#11 login to token {} failed: PIN incorrect", token.label)),
            "{text}"
        );
        assert!(
            !text.contains("97531") && !text.contains(USER_PIN),
            "{text}"
        );
    }
    // The right PIN still works: nothing got locked.
    Pkcs11Key::open(&cfg).unwrap().sign(b"ok").unwrap();
}

#[test]
fn pkcs11_pin_comes_from_env_or_file_and_is_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let pin_file = dir.path().join("pin");
    std::fs::write(&pin_file, "s3cret-pin\r\n").unwrap();
    let cfg: Pkcs11Config = serde_json::from_value(serde_json::json!({
        "module": SOFTHSM_MODULE,
        "token_label": "pkid",
        "pin_file": pin_file,
        "key_label": "issuing",
        "algorithm": "ecdsa-p384",
    }))
    .unwrap();
    assert_eq!(cfg.sessions, DEFAULT_SESSIONS);
    assert_eq!(cfg.algorithm, KeyAlgorithm::EcdsaP384);
    let pin = cfg.read_pin().unwrap();
    assert_eq!(pin.0.as_str(), "s3cret-pin");
    assert_eq!(format!("{pin:?}"), "Pin(<redacted>)");
    assert!(!format!("{cfg:?}").contains("s3cret"));

    let var = "PKID_TEST_PKCS11_PIN_FROM_ENV";
    std::env::set_var(var, "env-pin");
    let from_env = Pkcs11Config {
        pin_env: Some(var.into()),
        pin_file: None,
        ..cfg.clone()
    };
    assert_eq!(from_env.read_pin().unwrap().0.as_str(), "env-pin");
    let unset = Pkcs11Config {
        pin_env: Some("PKID_TEST_PKCS11_PIN_UNSET".into()),
        ..from_env.clone()
    };
    assert!(unset
        .read_pin()
        .unwrap_err()
        .to_string()
        .contains("PKID_TEST_PKCS11_PIN_UNSET"));
    let both = Pkcs11Config {
        pin_file: cfg.pin_file.clone(),
        ..from_env.clone()
    };
    assert!(both
        .read_pin()
        .unwrap_err()
        .to_string()
        .contains("not both"));
    let neither = Pkcs11Config {
        pin_env: None,
        ..from_env
    };
    assert!(neither
        .read_pin()
        .unwrap_err()
        .to_string()
        .contains("no PIN source"));

    // A clear PIN in the configuration is refused, not ignored.
    let err = serde_json::from_value::<Pkcs11Config>(serde_json::json!({
        "module": SOFTHSM_MODULE,
        "token_label": "pkid",
        "pin": "1234",
        "key_label": "issuing",
        "algorithm": "ecdsa-p256",
    }))
    .unwrap_err();
    assert!(err.to_string().contains("unknown field `pin`"), "{err}");

    for bad in [
        Pkcs11Config {
            sessions: 0,
            ..cfg.clone()
        },
        Pkcs11Config {
            algorithm: KeyAlgorithm::Ed25519,
            ..cfg.clone()
        },
        Pkcs11Config {
            key_label: String::new(),
            ..cfg.clone()
        },
    ] {
        assert!(Pkcs11Key::open(&bad).is_err(), "{bad:?}");
    }
}

#[test]
fn pkcs11_ecdsa_raw_signatures_become_der() {
    let mut raw = vec![0u8; 64];
    raw[0] = 0x80; // r needs a leading zero
    raw[63] = 0x01; // s is 1
    let der = ecdsa_raw_to_der(&raw, 32).unwrap();
    assert_eq!(&der[..5], &[0x30, 0x26, 0x02, 0x21, 0x00]);
    assert_eq!(&der[der.len() - 3..], &[0x02, 0x01, 0x01]);
    assert!(ecdsa_raw_to_der(&raw[..63], 32).is_none());

    let point = [&[0x04][..], &[0xab; 64]].concat();
    let wrapped = [&[0x04, 65][..], &point].concat();
    assert_eq!(uncompressed_point(&wrapped, 32), Some(point.as_slice()));
    assert_eq!(uncompressed_point(&point, 32), Some(point.as_slice()));
    assert_eq!(uncompressed_point(&point[..64], 32), None);
    assert_eq!(
        ckr_name(&RvError::SessionHandleInvalid),
        "CKR_SESSION_HANDLE_INVALID"
    );
}

/// A token key that counts the signatures running at once.
struct Counting {
    key: Pkcs11Key,
    running: AtomicUsize,
    most: AtomicUsize,
}

impl KeySigner for Counting {
    fn algorithm(&self) -> KeyAlgorithm {
        self.key.algorithm()
    }
    fn public_key_der(&self) -> &[u8] {
        self.key.public_key_der()
    }
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, BackendError> {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        let signature = self.key.sign(message);
        self.running.fetch_sub(1, Ordering::SeqCst);
        signature
    }
    fn signing_slots(&self) -> Option<Arc<tokio::sync::Semaphore>> {
        self.key.signing_slots()
    }
}

/// Many issuances and CRLs at once through a key of two sessions: all are signed, and no more
/// signatures run (each on a blocking thread) than the key has sessions; the others wait as
/// tasks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pkcs11_signatures_beyond_the_sessions_wait_as_tasks_not_threads() {
    let _serial = SERIAL.lock().await;
    let token = TestToken::new();
    let key = Arc::new(Counting {
        key: Pkcs11Key::generate(&token.config(KeyAlgorithm::EcdsaP256)).unwrap(),
        running: AtomicUsize::new(0),
        most: AtomicUsize::new(0),
    });
    let root = builder::self_signed_root(
        key.as_ref(),
        "Test Token Root",
        None,
        now() - Duration::hours(1),
        now() + Duration::days(365),
    )
    .unwrap();
    let issuer = Arc::new(IssuerInfo::new(root, Arc::clone(&key) as Arc<dyn KeySigner>).unwrap());
    let issuances: Vec<_> = (0..24)
        .map(|_| {
            let issuer = Arc::clone(&issuer);
            tokio::spawn(async move {
                let req = leaf_request(tls_profile());
                builder::issue_leaf(&req, &issuer, &NoJournal).await
            })
        })
        .collect();
    let crls: Vec<_> = (0..8)
        .map(|number| {
            let issuer = Arc::clone(&issuer);
            tokio::spawn(async move {
                let req = CrlRequest {
                    crl_number: number,
                    this_update: now(),
                    next_update: now() + Duration::days(7),
                    entries: Vec::new(),
                    issuing_distribution_point: None,
                    delta_crl_indicator: None,
                    freshest_crl: None,
                };
                crate::local::sign_crl(&issuer, req).await
            })
        })
        .collect();
    for issuance in issuances {
        let leaf = issuance.await.unwrap().unwrap();
        assert!(x509_parser::parse_x509_certificate(&leaf).is_ok());
    }
    for crl in crls {
        let der = crl.await.unwrap().unwrap();
        assert!(x509_parser::parse_x509_crl(&der).is_ok());
    }
    let most = key.most.load(Ordering::SeqCst);
    assert!(
        (1..=2).contains(&most),
        "{most} signatures ran at once with two sessions"
    );
    assert_eq!(key.key.recoveries(), 0);
}

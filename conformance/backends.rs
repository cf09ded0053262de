//! Every signing backend end to end: a real `pkid serve` issuing to lego (RFC 8555 http-01)
//! through a PKCS#11 token (SoftHSM2), an upstream ACME CA (pebble, pkid as its RA) and a CFSSL
//! remote signer (`cfssl serve`), each started by the test on loopback.
//!
//! Judges: `openssl verify` against the root that should anchor the chain, pkilint (RFC 5280) on
//! what local keys signed, `pkcs11-tool` for what the token holds (the issuing CA's public key is
//! the token's, its private key is sensitive and never extractable), `openssl crl`,
//! `openssl verify -crl_check` and `openssl ocsp` (RFC 5280 §5, RFC 6960) for revocation, and
//! pebble's management API for what the upstream recorded. Faults — the token re-initialised
//! under a running pkid, the upstream gone — must end in a clear ACME error while pkid keeps
//! serving, and a restored token must be used again without a restart.

use std::path::Path;
use std::time::Duration;

use x509_parser::prelude::{CertificateRevocationList, FromDer, X509Certificate};
use x509_parser::x509::{ReasonCode, SubjectPublicKeyInfo};

use crate::harness::certs::{
    assert_revoked_and_live, assert_sans, check_issued, crl_listing, leaf_serial_hex, openssl,
    openssl_crl_verify, openssl_verify, pem_chain, revocation_endpoints, write_chain_files,
    write_crl_pem,
};
use crate::harness::client::{csr_der, AcmeClient, Response};
use crate::harness::environment::{within, Environment};
use crate::harness::http01::Http01Responder;
use crate::harness::process::require_tool;
use crate::harness::softhsm::SoftHsm;
use crate::harness::tls::https_client;
use crate::harness::upstream::{Cfssl, Pebble};
use crate::third_party::{Challenge, Lego};

const TEST_BOUND: Duration = Duration::from_secs(150);

pub(crate) const TOKEN: &str = "pkid-hsm";
const KEY_LABEL: &str = "pkid-issuing";
/// Distinctive, so that a search of pkid's output for it cannot match by chance.
pub(crate) const USER_PIN: &str = "pin-4Tq9zK";
pub(crate) const SO_PIN: &str = "73914682";
/// pkid reads the token PIN from this variable (`pin_env`); the configuration only names it.
/// Not `PKID_…`: those are configuration keys.
const PIN_VAR: &str = "CONFORMANCE_HSM_PIN";

const SERVER_INTERNAL: &str = "urn:ietf:params:acme:error:serverInternal";

/// pkid's settings for `[backends.hsm]` (`kind = "pkcs11"`, issuing key in the token, certified
/// by the default root) and the ACME directory `/acme/hsm/directory` issuing through it.
pub(crate) fn hsm_settings(hsm: &SoftHsm) -> Vec<(String, String)> {
    pkcs11_settings(hsm, "hsm", TOKEN, "default")
}

/// `[backends.NAME]` with `kind = "pkcs11"` on token `token`, certified by backend `issuer`
/// (`self`: a root CA in the token), and the ACME directory `/acme/NAME/directory` on it.
fn pkcs11_settings(hsm: &SoftHsm, name: &str, token: &str, issuer: &str) -> Vec<(String, String)> {
    let key = |field: &str| format!("PKID_BACKENDS__{}__{field}", name.to_ascii_uppercase());
    vec![
        ("SOFTHSM2_CONF".to_owned(), hsm.conf.display().to_string()),
        (PIN_VAR.to_owned(), USER_PIN.to_owned()),
        (key("KIND"), "pkcs11".to_owned()),
        (key("MODULE"), SoftHsm::MODULE.to_owned()),
        (key("TOKEN_LABEL"), token.to_owned()),
        (key("KEY_LABEL"), KEY_LABEL.to_owned()),
        (key("PIN_ENV"), PIN_VAR.to_owned()),
        (key("ALGORITHM"), "ecdsa-p256".to_owned()),
        (key("ISSUER"), issuer.to_owned()),
        (
            format!(
                "PKID_ACME__DIRECTORIES__{}__BACKEND",
                name.to_ascii_uppercase()
            ),
            name.to_owned(),
        ),
    ]
}

pub(crate) fn pairs(settings: &[(String, String)]) -> Vec<(&str, &str)> {
    settings
        .iter()
        .map(|(key, value)| (key.as_str(), value.as_str()))
        .collect()
}

/// The URL of pkid's named ACME directory `name` (`[acme.directories.NAME]`).
fn named_directory(env: &Environment, name: &str) -> String {
    env.pkid
        .directory_url()
        .replace("/acme/directory", &format!("/acme/{name}/directory"))
}

/// lego with http-01 against pkid's directory `name`.
fn lego<'a>(env: &'a Environment, directory: &str, folder: &str, names: &[&'a str]) -> Lego<'a> {
    let mut lego = Lego::new(env, folder, names, Challenge::Http01);
    lego.server = named_directory(env, directory);
    lego
}

/// The token's public key as SubjectPublicKeyInfo DER, read out by `pkcs11-tool`.
fn token_public_key(hsm: &SoftHsm, token: &str, work: &Path) -> Vec<u8> {
    std::fs::create_dir_all(work).expect("create a folder for the public key");
    let out = work.join("token-public-key.der");
    hsm.pkcs11_tool(
        token,
        USER_PIN,
        &[
            "--read-object",
            "--type",
            "pubkey",
            "--label",
            KEY_LABEL,
            "--output-file",
            &out.display().to_string(),
        ],
    );
    let der = std::fs::read(&out).expect("read the token's public key");
    SubjectPublicKeyInfo::from_der(&der)
        .unwrap_or_else(|err| panic!("pkcs11-tool wrote no SubjectPublicKeyInfo ({err})"));
    der
}

/// Another P-256 key pair made in the token under the CA key's label, as an operator
/// re-creating "the" key would.
fn generate_impostor_key(hsm: &SoftHsm) {
    hsm.pkcs11_tool(
        TOKEN,
        USER_PIN,
        &[
            "--keypairgen",
            "--key-type",
            "EC:prime256v1",
            "--label",
            KEY_LABEL,
            "--id",
            "01",
        ],
    );
}

/// The private key objects `pkcs11-tool --list-objects` shows on the token.
pub(crate) fn token_private_keys(hsm: &SoftHsm, token: &str) -> String {
    hsm.pkcs11_tool(token, USER_PIN, &["--list-objects", "--type", "privkey"])
}

/// The issuing key is in the token the way a CA key must be: one private key under the label,
/// CKA_SENSITIVE and not CKA_EXTRACTABLE (pkcs11-tool's "Access" line).
fn assert_key_stays_in_token(hsm: &SoftHsm, token: &str) {
    let listing = token_private_keys(hsm, token);
    assert_eq!(
        listing.matches("Private Key Object").count(),
        1,
        "one private key on the token:\n{listing}"
    );
    assert!(
        listing.contains(&format!("label:      {KEY_LABEL}")),
        "the key is labelled {KEY_LABEL}:\n{listing}"
    );
    let access: Vec<&str> = listing
        .lines()
        .find_map(|line| line.trim().strip_prefix("Access:"))
        .unwrap_or_else(|| panic!("pkcs11-tool printed no Access line:\n{listing}"))
        .split(',')
        .map(str::trim)
        .collect();
    assert!(
        access.contains(&"sensitive"),
        "CKA_SENSITIVE is true: {access:?}"
    );
    assert!(
        !access.contains(&"extractable"),
        "CKA_EXTRACTABLE is false: {access:?}"
    );
}

/// The issuing CA certificate of a PEM chain (the one after the leaf).
fn issuing_ca(chain_pem: &str) -> Vec<u8> {
    let certs = pem_chain(chain_pem);
    assert!(
        certs.len() >= 2,
        "the chain holds the issuing CA after the leaf:\n{chain_pem}"
    );
    certs[1].clone()
}

/// The SubjectPublicKeyInfo DER of a certificate.
pub(crate) fn spki_of(cert_der: &[u8]) -> Vec<u8> {
    let (_, cert) = X509Certificate::from_der(cert_der).expect("parse a certificate");
    cert.public_key().raw.to_vec()
}

/// The chain's leaf and issuing CA were both made by the token key: the CA certificate holds the
/// token's public key, and the leaf's signature verifies with it.
fn assert_signed_by_token(chain_pem: &str, token_spki: &[u8]) {
    let ca = issuing_ca(chain_pem);
    assert_eq!(
        spki_of(&ca),
        token_spki,
        "the issuing CA's public key is the token's"
    );
    assert_leaf_signed_with(chain_pem, token_spki);
}

/// The leaf's signature verifies with the public key `spki_der`.
fn assert_leaf_signed_with(chain_pem: &str, spki_der: &[u8]) {
    let (_, spki) = SubjectPublicKeyInfo::from_der(spki_der).expect("parse the public key");
    let leaf = pem_chain(chain_pem)[0].clone();
    let (_, leaf) = X509Certificate::from_der(&leaf).expect("parse the leaf");
    leaf.verify_signature(Some(&spki))
        .expect("the leaf's signature verifies with the token's public key");
}

/// lego failed to get a certificate, and said why in ACME's words: the order was refused with
/// `serverInternal` (the order became invalid), not a bare 5xx or a timeout.
fn assert_issuance_refused(status: std::process::ExitStatus, output: &str) {
    // Shown with --nocapture: what a user of lego reads.
    eprintln!("lego's refusal:\n{output}");
    assert!(!status.success(), "lego obtained a certificate:\n{output}");
    assert!(
        output.contains(SERVER_INTERNAL),
        "lego's error names the ACME problem {SERVER_INTERNAL}:\n{output}"
    );
}

/// A finalize answer for an issuance the backend could not do: 200 with the order `invalid` and
/// its `error` a serverInternal problem (RFC 8555 §7.1.3, §7.4), or a problem document.
fn assert_finalize_failed_clearly(answer: &Response) {
    if answer.status == 200 {
        let order = answer.json();
        assert_eq!(
            order["status"], "invalid",
            "order after a failed issuance: {order}"
        );
        assert_eq!(
            order["error"]["type"], SERVER_INTERNAL,
            "the invalid order says why: {order}"
        );
        assert!(
            order.get("certificate").is_none(),
            "no certificate: {order}"
        );
    } else {
        let content_type = answer.header("content-type").unwrap_or_default();
        assert!(
            content_type.starts_with("application/problem+json") && answer.problem_type().is_some(),
            "a failed finalize is a problem document: {}",
            answer.describe()
        );
    }
}

/// The directory at `url` answers 200 over pkid's HTTPS.
async fn assert_directory_answers(env: &Environment, url: &str) {
    let http = https_client(&env.pkid.root_pem()).expect("HTTPS client for pkid");
    let response = http
        .get(url)
        .send()
        .await
        .unwrap_or_else(|err| panic!("GET {url}: {err:?}"));
    assert_eq!(response.status().as_u16(), 200, "GET {url}");
}

/// SoftHSM from `pkid ca create` to revocation: the CLI creates the issuing key inside the token
/// and its intermediate certificate, `ca list` shows it; lego obtains certificates through
/// `/acme/hsm/directory` whose issuing CA is the token key; lego revokes one, and the CRL (signed
/// in the token) and OCSP say revoked, good for the other; `pkid backend check hsm` passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn softhsm_backend_from_ca_create_to_revocation() {
    for tool in ["lego", "openssl", "softhsm2-util", "pkcs11-tool"] {
        require_tool(tool);
    }
    let hsm = SoftHsm::new();
    hsm.init_token(TOKEN, USER_PIN, SO_PIN);
    let mut env = Environment::start().await;
    within(TEST_BOUND, async {
        // pkid ca create: the token is empty until the CLI makes the key.
        assert!(
            !token_private_keys(&hsm, TOKEN).contains("Private Key Object"),
            "a fresh token holds no key"
        );
        env.pkid.stop();
        for (key, value) in hsm_settings(&hsm) {
            env.pkid.set(&key, &value);
        }
        let (ok, created, stderr) = env.pkid.cli(&["ca", "create", "hsm"]).await;
        assert!(ok, "pkid ca create hsm:\n{created}\n{stderr}");
        assert!(
            created.contains("hsm: O=pkid, CN=pkid hsm Intermediate CA issued by")
                && created.contains("CN=pkid Root CA"),
            "pkid ca create hsm shows the token key's intermediate under the default root:\n{created}"
        );
        assert_key_stays_in_token(&hsm, TOKEN);
        let token_spki = token_public_key(&hsm, TOKEN, &env.subdir("token"));
        let (ok, again, stderr) = env.pkid.cli(&["ca", "create", "hsm"]).await;
        assert!(ok, "pkid ca create hsm, twice:\n{again}\n{stderr}");
        assert_eq!(again, created, "an existing CA is kept, never replaced");
        assert_eq!(
            token_public_key(&hsm, TOKEN, &env.subdir("token-again")),
            token_spki,
            "the second ca create left the token key alone"
        );
        let (ok, listed, stderr) = env.pkid.cli(&["ca", "list"]).await;
        assert!(ok, "pkid ca list:\n{listed}\n{stderr}");
        let line = listed
            .lines()
            .find(|line| line.starts_with("hsm\t"))
            .unwrap_or_else(|| panic!("pkid ca list has no hsm line:\n{listed}"));
        assert!(
            line.contains("issue=true revoke=true crl=true ocsp=true")
                && line.contains("CN=pkid hsm Intermediate CA"),
            "pkid ca list: {line}"
        );
        env.pkid.restart().await;

        // Issuance through the token.
        let revoked = lego(&env, "hsm", "lego-hsm", &["hsm.pkid.test"]);
        let revoked_chain = revoked.obtain_and_check().await;
        assert_signed_by_token(&revoked_chain, &token_spki);
        let live = lego(&env, "hsm", "lego-hsm-live", &["hsm-live.pkid.test"]);
        let live_chain = live.obtain_and_check().await;
        assert_signed_by_token(&live_chain, &token_spki);
        assert_key_stays_in_token(&hsm, TOKEN);

        // Revocation: lego (account key), then the CRL and OCSP, both signed in the token.
        revoked.run(&["revoke", "--keep", "--reason", "1"]).await;
        let root = env.pkid.root_pem_path();
        let work = env.subdir("revoked");
        let (leaf, issuer, bundle) = write_chain_files(&root, &revoked_chain, &work);
        let (live_leaf, _, _) = write_chain_files(&root, &live_chain, &env.subdir("live"));
        let (crl_url, ocsp_url) = revocation_endpoints(&revoked_chain);
        assert!(
            crl_url.ends_with("/crl/hsm.crl"),
            "the hsm issuer's CRL: {crl_url}"
        );
        let (crl_der, reason) = crl_listing(&crl_url, &revoked_chain).await;
        assert_eq!(reason, Some(ReasonCode::KeyCompromise), "CRL entry reason");
        let (_, crl) = CertificateRevocationList::from_der(&crl_der).expect("parse the CRL");
        let (_, spki) = SubjectPublicKeyInfo::from_der(&token_spki).expect("parse the token key");
        crl.verify_signature(&spki)
            .expect("the CRL's signature verifies with the token's public key");
        let crl_pem = write_crl_pem(&crl_der, &work.join("crl.pem"));
        openssl_crl_verify(&crl_pem, "PEM", &bundle);
        assert_revoked_and_live(&bundle, &crl_pem, &issuer, &ocsp_url, &leaf, &live_leaf);

        // A signing round-trip from the CLI, beside the running server.
        let (ok, stdout, stderr) = env.pkid.cli(&["backend", "check", "hsm"]).await;
        assert!(
            ok && stdout.contains("backend hsm: OK"),
            "pkid backend check hsm:\n{stdout}\n{stderr}"
        );
        for (what, text) in [
            ("pkid serve", env.pkid.logs()),
            ("pkid ca create", created),
            ("pkid backend check", format!("{stdout}{stderr}")),
        ] {
            assert!(!text.contains(USER_PIN), "{what} printed the token PIN");
        }
    })
    .await;
}

/// A root CA whose key is in the token (`issuer = "self"`): `pkid ca create` self-signs it with
/// the token key; lego obtains a certificate through `/acme/hsmroot/directory` that verifies
/// against that root (`openssl verify`, pkilint), signed by the token's key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn softhsm_root_ca_in_the_token() {
    for tool in ["lego", "openssl", "softhsm2-util", "pkcs11-tool"] {
        require_tool(tool);
    }
    const ROOT_TOKEN: &str = "pkid-hsm-root";
    let hsm = SoftHsm::new();
    hsm.init_token(ROOT_TOKEN, USER_PIN, SO_PIN);
    let mut env = Environment::start().await;
    within(TEST_BOUND, async {
        env.pkid.stop();
        for (key, value) in pkcs11_settings(&hsm, "hsmroot", ROOT_TOKEN, "self") {
            env.pkid.set(&key, &value);
        }
        let (ok, created, stderr) = env.pkid.cli(&["ca", "create", "hsmroot"]).await;
        let subject = "O=pkid, CN=pkid hsmroot Root CA";
        assert!(
            ok && created.contains(&format!("hsmroot: {subject} issued by {subject} until")),
            "pkid ca create hsmroot shows a self-signed root:\n{created}\n{stderr}"
        );
        assert_key_stays_in_token(&hsm, ROOT_TOKEN);
        let token_spki = token_public_key(&hsm, ROOT_TOKEN, &env.subdir("token"));
        env.pkid.restart().await;

        let root = env
            .pkid
            .root_pem_path()
            .with_file_name("ca-hsmroot")
            .join("chain.pem");
        let root_text = std::fs::read_to_string(&root).expect("read the token root's chain.pem");
        assert_eq!(
            spki_of(&pem_chain(&root_text)[0]),
            token_spki,
            "the root's public key is the token's"
        );
        let names = ["root.hsm.pkid.test"];
        let client = lego(&env, "hsmroot", "lego-hsmroot", &names);
        let output = client.run(&["run"]).await;
        let chain = client.chain(&output);
        check_issued(&root, &chain, &names, &env.subdir("checks"));
        assert_leaf_signed_with(&chain, &token_spki);
    })
    .await;
}

/// The token is deleted and initialised again (same label and PIN, the key gone) under a running
/// pkid: issuance through it fails with a clear ACME error, OCSP answers tryLater, pkid keeps
/// serving (the default directory still issues); a new key under the same label is refused too, never used to sign;
/// the token restored from a copy taken before is used again without restarting pkid. Opening
/// the CA anew on a token without its key is refused, and makes no new key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn softhsm_token_lost_and_restored_under_a_running_pkid() {
    for tool in ["lego", "openssl", "softhsm2-util", "pkcs11-tool"] {
        require_tool(tool);
    }
    let hsm = SoftHsm::new();
    hsm.init_token(TOKEN, USER_PIN, SO_PIN);
    let settings = hsm_settings(&hsm);
    let env = Environment::start_with(&pairs(&settings)).await;
    within(TEST_BOUND, async {
        let token_spki = token_public_key(&hsm, TOKEN, &env.subdir("token"));
        let before = lego(&env, "hsm", "lego-before", &["before.pkid.test"]);
        let before_chain = before.obtain_and_check().await;
        assert_signed_by_token(&before_chain, &token_spki);
        let backup = hsm.path().join("tokens-backup");
        hsm.copy_tokens(&backup);

        // The key is gone.
        hsm.delete_token(TOKEN);
        hsm.init_token(TOKEN, USER_PIN, SO_PIN);
        let lost = lego(&env, "hsm", "lego-lost", &["lost.pkid.test"]);
        let (status, output) = lost.try_run(&["run"]).await;
        assert_issuance_refused(status, &output);
        {
            let names = ["lost-client.pkid.test"];
            let responder = Http01Responder::bind(env.http01_port).await;
            let mut client =
                AcmeClient::new(&named_directory(&env, "hsm"), &env.pkid.root_pem()).await;
            let order = client.ready_order(&names, &responder).await;
            assert_finalize_failed_clearly(&client.finalize(&order, &csr_der(&names)).await);
        }
        assert_directory_answers(&env, &named_directory(&env, "hsm")).await;
        // OCSP cannot sign either: RFC 6960's tryLater, inside a DER response.
        let (leaf, issuer, _) = write_chain_files(
            &env.pkid.root_pem_path(),
            &before_chain,
            &env.subdir("ocsp-lost"),
        );
        let (_, ocsp_url) = revocation_endpoints(&before_chain);
        let (_, text) = openssl(&[
            "ocsp".as_ref(),
            "-issuer".as_ref(),
            issuer.as_os_str(),
            "-cert".as_ref(),
            leaf.as_os_str(),
            "-url".as_ref(),
            ocsp_url.as_ref(),
            "-no_nonce".as_ref(),
        ]);
        assert!(
            text.contains("Responder Error: trylater"),
            "OCSP while the token has no key:\n{text}"
        );
        Lego::new(
            &env,
            "lego-default",
            &["default.pkid.test"],
            Challenge::Http01,
        )
        .obtain_and_check()
        .await;

        // Another key under the same label: pkid must not sign with it.
        generate_impostor_key(&hsm);
        assert_ne!(
            token_public_key(&hsm, TOKEN, &env.subdir("token-impostor")),
            token_spki,
            "the new key is another key"
        );
        let impostor = lego(&env, "hsm", "lego-impostor", &["impostor.pkid.test"]);
        let (status, output) = impostor.try_run(&["run"]).await;
        assert_issuance_refused(status, &output);
        assert!(
            env.pkid
                .logs()
                .contains("no longer the key this CA was started with"),
            "pkid says why it refused the new key"
        );

        // The token restored from the copy: the same pkid issues through it again.
        hsm.restore_tokens(&backup);
        assert_eq!(
            token_public_key(&hsm, TOKEN, &env.subdir("token-restored")),
            token_spki,
            "the restored token holds the original key"
        );
        let after = lego(&env, "hsm", "lego-after", &["after.pkid.test"]);
        assert_signed_by_token(&after.obtain_and_check().await, &token_spki);

        // Opening the CA again (as a restart or any CLI command does) on a token whose key is
        // gone: a clear refusal, and no stray key made in the token to stand in for the lost one.
        hsm.delete_token(TOKEN);
        hsm.init_token(TOKEN, USER_PIN, SO_PIN);
        let (ok, stdout, stderr) = env.pkid.cli(&["ca", "list"]).await;
        assert!(
            !ok && stderr.contains("backends.hsm")
                && stderr.contains("chain.pem")
                && !stderr.contains(USER_PIN),
            "pkid ca list on a token without the CA's key:\n{stdout}\n{stderr}"
        );
        assert!(
            !token_private_keys(&hsm, TOKEN).contains("Private Key Object"),
            "pkid generated a key in place of the CA's lost one"
        );
        generate_impostor_key(&hsm);
        let (ok, stdout, stderr) = env.pkid.cli(&["ca", "list"]).await;
        assert!(
            !ok && stderr.contains("backends.hsm: the token's key is not the CA's")
                && !stderr.contains(USER_PIN),
            "pkid ca list on a token with another key under the CA's label:\n{stdout}\n{stderr}"
        );
        let logs = env.pkid.logs();
        assert!(!logs.contains("panicked"), "pkid panicked:\n{logs}");
        assert!(
            !logs.contains(USER_PIN),
            "pkid printed the token PIN while recovering"
        );
    })
    .await;
}

/// pkid as the Registration Authority of an upstream ACME CA: lego → pkid (`/acme/up/…`, which
/// validates http-01 itself) → pebble. The certificate verifies against pebble's root, and
/// `pkid backend check up` passes; lego's revocation is forwarded to pebble, which records it,
/// and pkid records it too (a second revocation is `alreadyRevoked`). With pebble gone, issuance fails with a clear ACME error and
/// pkid keeps serving; with pebble back (a new instance that knows no account), it issues again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pebble_upstream_behind_pkid() {
    require_tool("lego");
    require_tool("openssl");
    let mut pebble = Pebble::start();
    let tls_root = pebble.tls_root.display().to_string();
    let env = Environment::start_with(&[
        ("PKID_BACKENDS__UP__KIND", "acme"),
        ("PKID_BACKENDS__UP__DIRECTORY_URL", &pebble.directory_url),
        ("PKID_BACKENDS__UP__TRUST_ROOTS_PEM", &tls_root),
        (
            "PKID_BACKENDS__UP__ACCOUNT_KEY_FILE",
            "data/up-account.key.sealed",
        ),
        ("PKID_BACKENDS__UP__CHALLENGE_MODE", "pre-validated"),
        ("PKID_BACKENDS__UP__TIMEOUT_SECS", "20"),
        ("PKID_ACME__DIRECTORIES__UP__BACKEND", "up"),
    ])
    .await;
    within(TEST_BOUND, async {
        let names = ["up.pkid.test", "www.up.pkid.test"];
        let client = lego(&env, "up", "lego-up", &names);
        let output = client.run(&["run"]).await;
        let chain = client.chain(&output);
        let work = env.subdir("pebble");
        let root = work.join("pebble-root.pem");
        std::fs::write(&root, pebble.management("/roots/0").await).expect("write pebble's root");
        openssl_verify(&root, &chain, &work.join("verify"));
        assert_sans(&chain, &names);

        let (ok, stdout, stderr) = env.pkid.cli(&["backend", "check", "up"]).await;
        assert!(
            ok && stdout.contains("backend up: OK"),
            "pkid backend check up:\n{stdout}\n{stderr}"
        );

        let serial = leaf_serial_hex(&chain);
        client.run(&["revoke", "--keep", "--reason", "4"]).await;
        let status = pebble
            .management(&format!("/cert-status-by-serial/{serial}"))
            .await;
        assert!(
            status.contains("Revoked"),
            "pebble recorded the forwarded revocation: {status}"
        );
        let (status, output) = client.try_run(&["revoke", "--keep"]).await;
        assert!(
            !status.success() && output.contains("urn:ietf:params:acme:error:alreadyRevoked"),
            "pkid recorded the revocation (a second one is alreadyRevoked):\n{output}"
        );

        pebble.stop();
        let gone = lego(&env, "up", "lego-up-gone", &["gone.pkid.test"]);
        let (status, output) = gone.try_run(&["run"]).await;
        assert_issuance_refused(status, &output);
        let (ok, stdout, stderr) = env.pkid.cli(&["backend", "check", "up"]).await;
        assert!(
            !ok && stderr.contains("cannot connect"),
            "pkid backend check up with pebble gone says why:\n{stdout}\n{stderr}"
        );
        assert_directory_answers(&env, &named_directory(&env, "up")).await;
        assert_directory_answers(&env, &env.pkid.directory_url()).await;

        // pebble back, remembering nothing (not the account pkid holds either): the same pkid
        // issues through it again.
        pebble.restart();
        let back = lego(&env, "up", "lego-up-back", &["back.pkid.test"]);
        let output = back.run(&["run"]).await;
        let chain = back.chain(&output);
        let root = work.join("pebble-root-again.pem");
        std::fs::write(&root, pebble.management("/roots/0").await).expect("write pebble's root");
        openssl_verify(&root, &chain, &work.join("verify-again"));
    })
    .await;
}

/// pkid in front of a CFSSL remote signer (`cfssl serve` with an authsign key): lego obtains a
/// certificate through `/acme/signer/…` that verifies against the CFSSL CA and names exactly what
/// was asked; `pkid backend check signer` passes; lego's revocation is recorded by pkid; with
/// the signer gone, issuance fails with a clear ACME error and pkid keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cfssl_upstream_behind_pkid() {
    require_tool("lego");
    require_tool("openssl");
    let mut cfssl = Cfssl::start();
    let env = Environment::start_with(&[
        ("PKID_BACKENDS__SIGNER__KIND", "cfssl"),
        ("PKID_BACKENDS__SIGNER__URL", &cfssl.url),
        ("PKID_BACKENDS__SIGNER__AUTH_KEY_HEX", &cfssl.auth_key_hex),
        ("PKID_ACME__DIRECTORIES__SIGNER__BACKEND", "signer"),
    ])
    .await;
    within(TEST_BOUND, async {
        let names = ["signer.pkid.test", "api.signer.pkid.test"];
        let client = lego(&env, "signer", "lego-signer", &names);
        let output = client.run(&["run"]).await;
        let chain = client.chain(&output);
        openssl_verify(&cfssl.ca_pem, &chain, &env.subdir("verify"));
        assert_sans(&chain, &names);
        let (ok, stdout, stderr) = env.pkid.cli(&["backend", "check", "signer"]).await;
        assert!(
            ok && stdout.contains("backend signer: OK"),
            "pkid backend check signer:\n{stdout}\n{stderr}"
        );

        // A signer that keeps no state: the revocation lives in pkid's records.
        client.run(&["revoke", "--keep", "--reason", "5"]).await;
        let (status, output) = client.try_run(&["revoke", "--keep"]).await;
        assert!(
            !status.success() && output.contains("urn:ietf:params:acme:error:alreadyRevoked"),
            "pkid recorded the revocation (a second one is alreadyRevoked):\n{output}"
        );

        cfssl.stop();
        let gone = lego(
            &env,
            "signer",
            "lego-signer-gone",
            &["gone.signer.pkid.test"],
        );
        let (status, output) = gone.try_run(&["run"]).await;
        assert_issuance_refused(status, &output);
        assert_directory_answers(&env, &named_directory(&env, "signer")).await;
    })
    .await;
}

/// An upstream certificate is checked against the profile before pkid serves it (security
/// hardening, item 9): a CFSSL signer misconfigured to issue certificates that may sign
/// certificates, for code signing too, makes issuance fail with a clear ACME error, and pkid
/// stores no issued certificate for it. (A CA-flagged certificate is refused by the same check,
/// `ca::issuance`'s unit test; cfssl issues CA certificates without the requested names, which
/// the name check refuses first.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_certificate_outside_the_profile_is_never_served() {
    require_tool("lego");
    let cfssl = Cfssl::start_with(serde_json::json!({
        "expiry": "168h",
        "usages": ["digital signature", "cert sign", "server auth", "code signing"]
    }));
    let env = Environment::start_with(&[
        ("PKID_BACKENDS__SIGNER__KIND", "cfssl"),
        ("PKID_BACKENDS__SIGNER__URL", &cfssl.url),
        ("PKID_BACKENDS__SIGNER__AUTH_KEY_HEX", &cfssl.auth_key_hex),
        ("PKID_ACME__DIRECTORIES__SIGNER__BACKEND", "signer"),
    ])
    .await;
    within(TEST_BOUND, async {
        let client = lego(
            &env,
            "signer",
            "lego-ca-flag",
            &["ca-flag.signer.pkid.test"],
        );
        let (status, output) = client.try_run(&["run"]).await;
        assert_issuance_refused(status, &output);
        let log = env.pkid.logs();
        assert!(
            log.contains("the certificate may sign certificates or CRLs"),
            "pkid says why it refused:\n{log}"
        );
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(env.pkid.database_path())
            .read_only(true);
        let db = sqlx::SqlitePool::connect_with(options).await.unwrap();
        let issued: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM certificates WHERE status = 'issued' AND issuer = 'signer'",
        )
        .fetch_one(&db)
        .await
        .unwrap();
        assert_eq!(issued, 0, "nothing issued through the signer was stored");
    })
    .await;
}

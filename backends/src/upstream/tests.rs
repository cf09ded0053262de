//! The upstream backends against real peers on loopback: Debian's `pebble` (+
//! `pebble-challtestsrv`) as an upstream ACME CA, `cfssl serve` as a remote signer, and small fake
//! servers for answers a real peer would not give. `openssl verify` judges what comes back.
//!
//! Every process is owned by a [`ChildGuard`] that kills it through its own PID on drop. A missing
//! binary fails the test; nothing is skipped.

use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use time::OffsetDateTime;

use crate::keys::{KeySigner, SoftwareKey};
use crate::local::builder::{self, IssuerInfo};
use crate::sealed::KeyEncryptionKey;
use crate::upstream::acme::{ChallengeMode, UpstreamAcmeBackend, UpstreamAcmeConfig};
use crate::upstream::cfssl::{UpstreamCfsslBackend, UpstreamCfsslConfig};
use crate::{
    BackendError, CertProfile, ExtKeyUsage, Issuance, IssueRequest, KeyAlgorithm, KeyUsageBit,
    NoJournal, RevocationReason, Serial, SigningBackend,
};

// ---------------------------------------------------------------------------------------------
// Processes, ports, files

struct ChildGuard {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl ChildGuard {
    fn spawn(name: &'static str, command: &mut Command, log: PathBuf) -> ChildGuard {
        let out = std::fs::File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        let child = match command.stdin(Stdio::null()).stdout(out).stderr(err).spawn() {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                panic!("{name} not installed: run ./conformance/run")
            }
            Err(e) => panic!("starting {name}: {e}"),
        };
        ChildGuard { name, child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{} exited with {status}:\n{}", self.name, self.log());
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        // Child::kill signals this child's own PID only.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn require(tool: &str) {
    let path = std::env::var_os("PATH").unwrap_or_default();
    if !std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()) {
        panic!("{tool} not installed: run ./conformance/run");
    }
}

/// A loopback port free for both TCP and UDP a moment ago.
fn free_port() -> u16 {
    for _ in 0..100 {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port");
}

fn wait_for_tcp(guard: &mut ChildGuard, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        guard.assert_running();
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "{} never listened on port {port}:\n{}",
        guard.name,
        guard.log()
    );
}

fn pem_of(label: &str, ders: &[&[u8]]) -> String {
    ders.iter()
        .map(|der| pem::encode(&pem::Pem::new(label, der.to_vec())))
        .collect()
}

fn openssl_verify(dir: &Path, root_pem: &str, chain: &[Vec<u8>]) -> String {
    std::fs::write(dir.join("verify-root.pem"), root_pem).unwrap();
    std::fs::write(
        dir.join("verify-leaf.pem"),
        pem_of("CERTIFICATE", &[&chain[0]]),
    )
    .unwrap();
    let intermediates: Vec<&[u8]> = chain[1..].iter().map(Vec::as_slice).collect();
    std::fs::write(
        dir.join("verify-untrusted.pem"),
        pem_of("CERTIFICATE", &intermediates),
    )
    .unwrap();
    let mut args = vec!["verify", "-CAfile", "verify-root.pem"];
    if !intermediates.is_empty() {
        args.extend(["-untrusted", "verify-untrusted.pem"]);
    }
    args.push("verify-leaf.pem");
    let out = match Command::new("openssl")
        .args(&args)
        .current_dir(dir)
        .output()
    {
        Ok(out) => out,
        Err(e) => panic!("openssl not installed ({e}): run ./conformance/run"),
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "openssl verify failed: {text}");
    text
}

// ---------------------------------------------------------------------------------------------
// Test PKI: a root of our own (for pebble's HTTPS and for cfssl's CA), CSRs of fresh keys

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

struct TestCa {
    key: Arc<SoftwareKey>,
    cert_der: Vec<u8>,
}

impl TestCa {
    fn new(name: &str) -> TestCa {
        let key = Arc::new(SoftwareKey::generate(KeyAlgorithm::EcdsaP256).unwrap());
        let cert_der = builder::self_signed_root(
            key.as_ref(),
            name,
            Some("pkid upstream tests"),
            now() - time::Duration::hours(1),
            now() + time::Duration::days(30),
        )
        .unwrap();
        TestCa { key, cert_der }
    }

    fn cert_pem(&self) -> String {
        pem_of("CERTIFICATE", &[&self.cert_der])
    }

    fn key_pem(&self) -> String {
        pem_of("PRIVATE KEY", &[&self.key.to_pkcs8_der()])
    }

    /// A server certificate (and its key, PKCS#8 PEM) for `localhost` and 127.0.0.1.
    async fn server_cert(&self) -> (String, String) {
        let key = SoftwareKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let req = IssueRequest {
            csr_der: Vec::new(),
            subject_public_key_der: key.public_key_der().to_vec(),
            common_name: Some("localhost".into()),
            subject: Vec::new(),
            dns_names: vec!["localhost".into()],
            ip_addresses: vec!["127.0.0.1".parse().unwrap()],
            email_addresses: Vec::new(),
            uris: Vec::new(),
            serial: Serial::random(),
            not_before: now() - time::Duration::hours(1),
            not_after: now() + time::Duration::days(7),
            profile: CertProfile {
                key_usage: vec![KeyUsageBit::DigitalSignature],
                ext_key_usage: vec![ExtKeyUsage::ServerAuth],
                ..CertProfile::default()
            },
        };
        let der = self.issue(&req).await;
        (
            pem_of("CERTIFICATE", &[&der]),
            pem_of("PRIVATE KEY", &[&key.to_pkcs8_der()]),
        )
    }

    async fn issue(&self, req: &IssueRequest) -> Vec<u8> {
        let issuer = IssuerInfo::new(self.cert_der.clone(), self.key.clone()).unwrap();
        builder::issue_leaf(req, &issuer, &NoJournal).await.unwrap()
    }
}

/// An issue request for a fresh P-256 key: CSR (no subject), SPKI and the identifiers.
fn csr_request(names: &[&str]) -> IssueRequest {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params.serialize_request(&key).unwrap();
    let (dns_names, ip_addresses): (Vec<&str>, Vec<&str>) =
        names.iter().partition(|n| n.parse::<IpAddr>().is_err());
    IssueRequest {
        csr_der: csr.der().to_vec(),
        subject_public_key_der: rcgen::PublicKeyData::subject_public_key_info(&key),
        common_name: None,
        subject: Vec::new(),
        dns_names: dns_names.iter().map(|n| n.to_string()).collect(),
        ip_addresses: ip_addresses.iter().map(|n| n.parse().unwrap()).collect(),
        email_addresses: Vec::new(),
        uris: Vec::new(),
        serial: Serial::random(),
        not_before: now(),
        not_after: now() + time::Duration::days(7),
        profile: CertProfile::default(),
    }
}

fn issued(result: Result<Issuance, BackendError>) -> Vec<Vec<u8>> {
    match result {
        Ok(Issuance::Issued { chain }) => chain,
        other => panic!("expected Issued, got {other:?}"),
    }
}

fn serial_hex(der: &[u8]) -> String {
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    hex::encode(Serial(cert.raw_serial().to_vec()).normalized())
}

// ---------------------------------------------------------------------------------------------
// pebble

struct Pebble {
    dir: tempfile::TempDir,
    port: u16,
    management_port: u16,
    /// Trusts pebble's HTTPS certificate (our test root).
    tls_root: PathBuf,
    _pebble: ChildGuard,
    _dns: Option<ChildGuard>,
}

impl Pebble {
    /// `http01_port`: where pebble's VA connects for http-01 (through challtestsrv's DNS, which
    /// answers 127.0.0.1 for every name); `None` runs pebble with `PEBBLE_VA_ALWAYS_VALID=1`.
    async fn start(http01_port: Option<u16>) -> Pebble {
        require("pebble");
        require("pebble-challtestsrv");
        let dir = tempfile::Builder::new()
            .prefix("pkid-pebble-")
            .tempdir()
            .unwrap();
        let ca = TestCa::new("pebble HTTPS test root");
        let (cert, key) = ca.server_cert().await;
        std::fs::write(dir.path().join("cert.pem"), cert).unwrap();
        std::fs::write(dir.path().join("key.pem"), key).unwrap();
        let tls_root = dir.path().join("tls-root.pem");
        std::fs::write(&tls_root, ca.cert_pem()).unwrap();

        let port = free_port();
        let management_port = free_port();
        let config = serde_json::json!({
            "pebble": {
                "listenAddress": format!("127.0.0.1:{port}"),
                "managementListenAddress": format!("127.0.0.1:{management_port}"),
                "certificate": dir.path().join("cert.pem"),
                "privateKey": dir.path().join("key.pem"),
                "httpPort": http01_port.unwrap_or(5002),
                "tlsPort": 5001,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false
            }
        });
        std::fs::write(
            dir.path().join("pebble.json"),
            serde_json::to_vec_pretty(&config).unwrap(),
        )
        .unwrap();

        let mut dns = None;
        let mut command = Command::new("pebble");
        command
            .arg("-config")
            .arg(dir.path().join("pebble.json"))
            .env("PEBBLE_VA_NOSLEEP", "1")
            // pebble rejects 5 % of nonces by default; instant-acme would retry, but keep the
            // tests deterministic.
            .env("PEBBLE_WFE_NONCEREJECT", "0");
        match http01_port {
            None => {
                command.env("PEBBLE_VA_ALWAYS_VALID", "1");
            }
            Some(_) => {
                let dns_port = free_port();
                let mut guard = ChildGuard::spawn(
                    "pebble-challtestsrv",
                    Command::new("pebble-challtestsrv")
                        .args(["-dns01", &format!("127.0.0.1:{dns_port}")])
                        .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
                        .args(["-management", &format!("127.0.0.1:{}", free_port())])
                        .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""]),
                    dir.path().join("challtestsrv.log"),
                );
                wait_for_dns(&mut guard, dns_port);
                command.args(["-dnsserver", &format!("127.0.0.1:{dns_port}")]);
                dns = Some(guard);
            }
        }
        let mut pebble = ChildGuard::spawn("pebble", &mut command, dir.path().join("pebble.log"));
        wait_for_tcp(&mut pebble, port);
        wait_for_tcp(&mut pebble, management_port);
        Pebble {
            dir,
            port,
            management_port,
            tls_root,
            _pebble: pebble,
            _dns: dns,
        }
    }

    fn directory_url(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.port)
    }

    async fn management(&self, path: &str) -> String {
        let client =
            crate::upstream::http_client(Some(&self.tls_root), Duration::from_secs(10)).unwrap();
        let url = format!("https://127.0.0.1:{}{path}", self.management_port);
        let response = client.get(&url).send().await.unwrap();
        assert!(
            response.status().is_success(),
            "{url}: {}",
            response.status()
        );
        response.text().await.unwrap()
    }

    fn config(&self, mode: ChallengeMode, http01_listen: Option<SocketAddr>) -> UpstreamAcmeConfig {
        UpstreamAcmeConfig {
            directory_url: self.directory_url(),
            trust_roots_pem: Some(self.tls_root.clone()),
            account_key_file: self.dir.path().join("account.key.sealed"),
            contact: Some("mailto:pki@pkid.test".into()),
            eab: None,
            challenge_mode: mode,
            http01_listen,
            timeout_secs: 30,
            pending_after_secs: 5,
        }
    }
}

/// Polls challtestsrv with a real A query until it answers (bounded).
fn wait_for_dns(guard: &mut ChildGuard, port: u16) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    // id 0x5043, RD, one question: ready.pkid.test A IN
    let mut query = vec![0x50, 0x43, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in ["ready", "pkid", "test"] {
        query.push(label.len() as u8);
        query.extend_from_slice(label.as_bytes());
    }
    query.extend_from_slice(&[0, 0, 1, 0, 1]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        guard.assert_running();
        if socket.send_to(&query, ("127.0.0.1", port)).is_ok() {
            let mut answer = [0u8; 512];
            if let Ok((len, _)) = socket.recv_from(&mut answer) {
                if len >= 12 && answer[..2] == query[..2] {
                    return;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("pebble-challtestsrv never answered DNS:\n{}", guard.log());
}

/// Issue through pebble, check the chain with openssl against pebble's root, revoke, and see
/// pebble record the revocation.
async fn issue_verify_revoke(pebble: &Pebble, backend: &UpstreamAcmeBackend, names: &[&str]) {
    let req = csr_request(names);
    let chain = issued(backend.issue(req, &NoJournal).await);
    assert!(chain.len() >= 2, "leaf + pebble's intermediate");
    assert!(
        chain.iter().all(|c| !crate::upstream::is_self_issued(c)),
        "the root is excluded"
    );
    let root_pem = pebble.management("/roots/0").await;
    let intermediate_pem = pebble.management("/intermediates/0").await;
    let intermediates = crate::upstream::pem_certificates(&intermediate_pem).unwrap();
    assert_eq!(chain[1], intermediates[0], "pebble's current intermediate");
    let out = openssl_verify(pebble.dir.path(), &root_pem, &chain);
    assert!(out.contains("OK"), "{out}");
    assert_eq!(backend.ca_chain().first(), Some(&chain[1]));

    let serial = serial_hex(&chain[0]);
    backend
        .revoke(
            &Serial::from_hex(&serial).unwrap(),
            &chain[0],
            RevocationReason::KeyCompromise,
        )
        .await
        .unwrap();
    let status = pebble
        .management(&format!("/cert-status-by-serial/{serial}"))
        .await;
    assert!(status.contains("Revoked"), "pebble's status: {status}");
}

#[tokio::test]
async fn upstream_acme_pre_validated_issues_verifies_and_revokes() {
    let pebble = Pebble::start(None).await;
    let kek = Arc::new(KeyEncryptionKey::generate());
    let config = pebble.config(ChallengeMode::PreValidated, None);
    let key_file = config.account_key_file.clone();
    let backend = UpstreamAcmeBackend::new("pebble", config.clone(), kek.clone())
        .await
        .unwrap();
    assert!(
        backend.ca_chain().is_empty(),
        "nothing seen before issuance"
    );
    issue_verify_revoke(&pebble, &backend, &["a.pkid.test", "b.pkid.test"]).await;

    // The account key is sealed at rest, and a second instance finds the same account with it.
    let sealed = std::fs::read_to_string(&key_file).unwrap();
    assert!(sealed.starts_with("-----BEGIN PKID ENCRYPTED PRIVATE KEY-----"));
    let again = UpstreamAcmeBackend::new("pebble", config.clone(), kek)
        .await
        .unwrap();
    issue_verify_revoke(&pebble, &again, &["c.pkid.test", "192.0.2.10"]).await;

    // The wrong key-encryption key cannot open the account key.
    let wrong = UpstreamAcmeBackend::new("pebble", config, Arc::new(KeyEncryptionKey::generate()))
        .await
        .unwrap();
    match wrong.issue(csr_request(&["d.pkid.test"]), &NoJournal).await {
        Err(BackendError::Key(message)) => assert!(message.contains("account.key.sealed")),
        other => panic!("expected a key error, got {other:?}"),
    }
}

#[tokio::test]
async fn upstream_acme_answers_http01_itself() {
    let responder_port = free_port();
    let pebble = Pebble::start(Some(responder_port)).await;
    let kek = Arc::new(KeyEncryptionKey::generate());
    let listen: SocketAddr = ([127, 0, 0, 1], responder_port).into();
    let backend = UpstreamAcmeBackend::new(
        "pebble",
        pebble.config(ChallengeMode::AnswerHttp01, Some(listen)),
        kek,
    )
    .await
    .unwrap();
    assert_eq!(backend.http01_addr(), Some(listen));
    // Two orders at once share the one responder.
    let (a, b) = tokio::join!(
        backend.issue(csr_request(&["one.pkid.test"]), &NoJournal),
        backend.issue(
            csr_request(&["two.pkid.test", "www.two.pkid.test"]),
            &NoJournal
        ),
    );
    let root_pem = pebble.management("/roots/0").await;
    for chain in [issued(a), issued(b)] {
        openssl_verify(pebble.dir.path(), &root_pem, &chain);
    }
    issue_verify_revoke(&pebble, &backend, &["three.pkid.test"]).await;
}

#[tokio::test]
async fn upstream_acme_pending_then_poll_finishes() {
    let pebble = Pebble::start(None).await;
    let mut config = pebble.config(ChallengeMode::PreValidated, None);
    // Answer Pending as soon as the order is finalized, unless it is valid at once.
    config.pending_after_secs = 0;
    let backend =
        UpstreamAcmeBackend::new("pebble", config, Arc::new(KeyEncryptionKey::generate()))
            .await
            .unwrap();
    let req = csr_request(&["slow.pkid.test"]);
    let upstream_ref = match backend.issue(req, &NoJournal).await.unwrap() {
        Issuance::Pending { upstream_ref, .. } => upstream_ref,
        Issuance::Issued { .. } => panic!("pebble answered finalize with a valid order"),
    };
    assert!(upstream_ref.starts_with(&pebble.directory_url().replace("/dir", "")));
    // A reference whose fingerprint was altered is refused: the certificate is not the one asked.
    let (url, _) = upstream_ref.split_once('#').unwrap();
    let mut tampered = None;
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        match backend.poll(&format!("{url}#expect=AAAA")).await {
            Ok(Issuance::Pending { .. }) => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => {
                tampered = Some(other);
                break;
            }
        }
    }
    assert!(
        matches!(tampered, Some(Err(BackendError::Mismatch(_)))),
        "{tampered:?}"
    );
    let chain = loop {
        match backend.poll(&upstream_ref).await.unwrap() {
            Issuance::Issued { chain } => break chain,
            Issuance::Pending { retry_after, .. } => tokio::time::sleep(retry_after).await,
        }
    };
    let root_pem = pebble.management("/roots/0").await;
    openssl_verify(pebble.dir.path(), &root_pem, &chain);
}

#[tokio::test]
async fn upstream_acme_down_is_an_upstream_error_within_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let closed = free_port();
    let config = UpstreamAcmeConfig {
        directory_url: format!("https://127.0.0.1:{closed}/dir"),
        trust_roots_pem: None,
        account_key_file: dir.path().join("account.key.sealed"),
        contact: None,
        eab: None,
        challenge_mode: ChallengeMode::PreValidated,
        http01_listen: None,
        timeout_secs: 5,
        pending_after_secs: 1,
    };
    let backend = UpstreamAcmeBackend::new("down", config, Arc::new(KeyEncryptionKey::generate()))
        .await
        .unwrap();
    let started = Instant::now();
    let result = backend
        .issue(csr_request(&["x.pkid.test"]), &NoJournal)
        .await;
    let elapsed = started.elapsed();
    match result {
        Err(BackendError::Upstream(message)) => {
            assert!(
                message.contains("connect") && message.contains(&closed.to_string()),
                "{message}"
            );
            assert!(message.contains("3 attempt"), "two retries: {message}");
        }
        other => panic!("expected an upstream error, got {other:?}"),
    }
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    assert!(!dir.path().join("account.key.sealed").exists());
}

// ---------------------------------------------------------------------------------------------
// cfssl

const SIGNING_USAGES: [&str; 3] = ["digital signature", "key encipherment", "server auth"];

struct Cfssl {
    dir: tempfile::TempDir,
    port: u16,
    ca: TestCa,
    _child: ChildGuard,
}

impl Cfssl {
    /// `backend` issues a certificate for `name` that `openssl verify` accepts under this CFSSL's
    /// CA.
    async fn issues_through(&self, backend: &UpstreamCfsslBackend, name: &str) {
        let chain = issued(backend.issue(csr_request(&[name]), &NoJournal).await);
        openssl_verify(self.dir.path(), &self.ca.cert_pem(), &chain);
    }

    /// `cfssl serve` over a fresh CA; `auth_key_hex` puts the default profile behind authsign;
    /// `with_db` gives it a SQLite certificate database (for revocation).
    fn start(auth_key_hex: Option<&str>, with_db: bool) -> Cfssl {
        require("cfssl");
        let dir = tempfile::Builder::new()
            .prefix("pkid-cfssl-")
            .tempdir()
            .unwrap();
        let ca = TestCa::new("cfssl test CA");
        std::fs::write(dir.path().join("ca.pem"), ca.cert_pem()).unwrap();
        std::fs::write(dir.path().join("ca-key.pem"), ca.key_pem()).unwrap();
        let mut default_profile = serde_json::json!({
            "expiry": "168h",
            "usages": SIGNING_USAGES,
        });
        let mut config = serde_json::json!({
            "signing": {
                "default": null,
                "profiles": { "server": { "expiry": "24h", "usages": SIGNING_USAGES } }
            }
        });
        if let Some(key) = auth_key_hex {
            default_profile["auth_key"] = "pkid".into();
            config["auth_keys"] = serde_json::json!({ "pkid": { "type": "standard", "key": key } });
        }
        config["signing"]["default"] = default_profile;
        std::fs::write(
            dir.path().join("config.json"),
            serde_json::to_vec_pretty(&config).unwrap(),
        )
        .unwrap();

        let port = free_port();
        let mut command = Command::new("cfssl");
        command
            .current_dir(dir.path())
            .args(["serve", "-address", "127.0.0.1", "-port", &port.to_string()])
            .args([
                "-ca",
                "ca.pem",
                "-ca-key",
                "ca-key.pem",
                "-config",
                "config.json",
            ]);
        if with_db {
            create_cfssl_db(dir.path());
            command.args(["-db-config", "db.json"]);
        }
        let mut child = ChildGuard::spawn("cfssl", &mut command, dir.path().join("cfssl.log"));
        wait_for_tcp(&mut child, port);
        Cfssl {
            dir,
            port,
            ca,
            _child: child,
        }
    }

    fn config(&self) -> UpstreamCfsslConfig {
        UpstreamCfsslConfig {
            url: format!("http://127.0.0.1:{}", self.port),
            profile: None,
            label: None,
            auth_key_hex: None,
            auth_key_env: None,
            auth_key_file: None,
            ca_chain_pem: None,
            trust_roots_pem: None,
            revoke_upstream: false,
            timeout_secs: 10,
        }
    }
}

/// CFSSL's SQLite certificate database (its `certdb/sqlite` migration).
fn create_cfssl_db(dir: &Path) {
    require("sqlite3");
    let schema = "CREATE TABLE certificates (serial_number blob NOT NULL, \
        authority_key_identifier blob NOT NULL, ca_label blob, status blob NOT NULL, reason int, \
        expiry timestamp, revoked_at timestamp, pem blob NOT NULL, \
        PRIMARY KEY(serial_number, authority_key_identifier)); \
        CREATE TABLE ocsp_responses (serial_number blob NOT NULL, \
        authority_key_identifier blob NOT NULL, body blob NOT NULL, expiry timestamp, \
        PRIMARY KEY(serial_number, authority_key_identifier));";
    let out = Command::new("sqlite3")
        .arg(dir.join("certs.db"))
        .arg(schema)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(
        dir.join("db.json"),
        serde_json::to_vec(&serde_json::json!({
            "driver": "sqlite3",
            "data_source": dir.join("certs.db"),
        }))
        .unwrap(),
    )
    .unwrap();
}

fn sqlite(dir: &Path, sql: &str) -> String {
    let out = Command::new("sqlite3")
        .arg(dir.join("certs.db"))
        .arg(sql)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test]
async fn upstream_cfssl_signs_a_chain_openssl_verifies() {
    let cfssl = Cfssl::start(None, false);
    let backend = UpstreamCfsslBackend::new("cfssl", cfssl.config()).unwrap();
    assert!(backend.ca_chain().is_empty());
    let req = csr_request(&["svc.pkid.test", "alt.pkid.test", "127.0.0.2"]);
    let chain = issued(backend.issue(req, &NoJournal).await);
    assert_eq!(chain.len(), 1, "cfssl's CA is the root, which is excluded");
    openssl_verify(cfssl.dir.path(), &cfssl.ca.cert_pem(), &chain);
    assert_eq!(
        backend.ca_chain(),
        vec![cfssl.ca.cert_der.clone()],
        "from /info"
    );

    // A named profile and a configured CA file work the same way.
    std::fs::write(cfssl.dir.path().join("chain.pem"), cfssl.ca.cert_pem()).unwrap();
    let mut config = cfssl.config();
    config.profile = Some("server".into());
    config.ca_chain_pem = Some(cfssl.dir.path().join("chain.pem"));
    let backend = UpstreamCfsslBackend::new("cfssl", config).unwrap();
    cfssl.issues_through(&backend, "p.pkid.test").await;

    // CFSSL's own refusal (here: a CSR it cannot parse) is passed on clearly.
    let mut broken = csr_request(&["q.pkid.test"]);
    broken.csr_der = vec![0x30, 0x03, 0x02, 0x01, 0x00];
    match backend.issue(broken, &NoJournal).await {
        Err(BackendError::Upstream(message)) => {
            assert!(message.contains("refused sign"), "{message}")
        }
        other => panic!("expected an upstream error, got {other:?}"),
    }
}

#[tokio::test]
async fn upstream_cfssl_authsign_with_the_right_key_only() {
    let key = "0123456789abcdef0123456789abcdef";
    let cfssl = Cfssl::start(Some(key), false);
    let mut config = cfssl.config();
    config.auth_key_hex = Some(key.into());
    assert!(
        !format!("{config:?}").contains(key),
        "the key is never shown"
    );
    let backend = UpstreamCfsslBackend::new("cfssl", config).unwrap();
    cfssl.issues_through(&backend, "auth.pkid.test").await;

    // The same key named by a file, as a shared configuration should name it.
    let key_file = cfssl.dir.path().join("auth-key");
    std::fs::write(&key_file, format!("{key}\n")).unwrap();
    let mut config = cfssl.config();
    config.auth_key_file = Some(key_file.clone());
    let backend = UpstreamCfsslBackend::new("cfssl", config).unwrap();
    cfssl.issues_through(&backend, "auth-file.pkid.test").await;
    let mut config = cfssl.config();
    config.auth_key_file = Some(key_file);
    config.auth_key_hex = Some(key.into());
    let both = UpstreamCfsslBackend::new("cfssl", config).unwrap_err();
    assert!(both.to_string().contains("one of"), "{both}");

    let mut config = cfssl.config();
    config.auth_key_hex = Some("fedcba9876543210fedcba9876543210".into());
    let backend = UpstreamCfsslBackend::new("cfssl", config).unwrap();
    match backend
        .issue(csr_request(&["auth.pkid.test"]), &NoJournal)
        .await
    {
        Err(BackendError::Upstream(message)) => {
            assert!(message.contains("refused authsign"), "{message}");
            assert!(!message.contains("fedcba"), "{message}");
        }
        other => panic!("expected an upstream error, got {other:?}"),
    }
}

#[tokio::test]
async fn upstream_cfssl_revocation_local_or_forwarded() {
    let cfssl = Cfssl::start(None, true);
    let backend = UpstreamCfsslBackend::new("cfssl", cfssl.config()).unwrap();
    let chain = issued(
        backend
            .issue(csr_request(&["r.pkid.test"]), &NoJournal)
            .await,
    );
    let serial = Serial::from_hex(&serial_hex(&chain[0])).unwrap();
    // Not forwarded: Ok, and CFSSL's database still says good.
    backend
        .revoke(&serial, &chain[0], RevocationReason::KeyCompromise)
        .await
        .unwrap();
    assert_eq!(
        sqlite(cfssl.dir.path(), "SELECT status FROM certificates"),
        "good"
    );

    let mut config = cfssl.config();
    config.revoke_upstream = true;
    let backend = UpstreamCfsslBackend::new("cfssl", config).unwrap();
    backend
        .revoke(&serial, &chain[0], RevocationReason::KeyCompromise)
        .await
        .unwrap();
    assert_eq!(
        sqlite(cfssl.dir.path(), "SELECT status, reason FROM certificates"),
        "revoked|1"
    );
}

#[tokio::test]
async fn upstream_cfssl_down_is_an_upstream_error() {
    let mut config = Cfssl::config_for_port(free_port());
    config.timeout_secs = 5;
    let backend = UpstreamCfsslBackend::new("cfssl", config).unwrap();
    let started = Instant::now();
    match backend
        .issue(csr_request(&["down.pkid.test"]), &NoJournal)
        .await
    {
        Err(BackendError::Upstream(message)) => assert!(message.contains("connect"), "{message}"),
        other => panic!("expected an upstream error, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5));
}

impl Cfssl {
    fn config_for_port(port: u16) -> UpstreamCfsslConfig {
        UpstreamCfsslConfig {
            url: format!("http://127.0.0.1:{port}"),
            profile: None,
            label: None,
            auth_key_hex: None,
            auth_key_env: None,
            auth_key_file: None,
            ca_chain_pem: None,
            trust_roots_pem: None,
            revoke_upstream: false,
            timeout_secs: 10,
        }
    }
}

/// A fake `cfssl serve` that answers every request with `certificate_pem`, as CFSSL would.
async fn fake_cfssl(certificate_pem: String) -> (u16, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let body = serde_json::json!({
        "success": true,
        "result": { "certificate": certificate_pem },
        "errors": [],
        "messages": []
    })
    .to_string();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let body = body.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_req| {
                    let body = body.clone();
                    async move {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(
                            http_body_util::Full::new(bytes::Bytes::from(body)),
                        ))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (port, task)
}

async fn fake_cfssl_answer(ca: &TestCa, req: &IssueRequest) -> Result<Issuance, BackendError> {
    let der = ca.issue(req).await;
    let (port, task) = fake_cfssl(pem_of("CERTIFICATE", &[&der])).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca.cert_pem()).unwrap();
    let mut config = Cfssl::config_for_port(port);
    config.ca_chain_pem = Some(dir.path().join("ca.pem"));
    let backend = UpstreamCfsslBackend::new("fake", config).unwrap();
    let asked = csr_request(&["asked.pkid.test"]);
    let result = backend.issue(asked, &NoJournal).await;
    task.abort();
    result
}

#[tokio::test]
async fn upstream_certificate_for_another_key_or_names_is_a_mismatch() {
    let ca = TestCa::new("fake cfssl CA");
    // Right names, another key.
    let other_key = csr_request(&["asked.pkid.test"]);
    match fake_cfssl_answer(&ca, &other_key).await {
        Err(BackendError::Mismatch(message)) => {
            assert!(message.contains("public key"), "{message}")
        }
        other => panic!("expected a mismatch, got {other:?}"),
    }
    // And a certificate the configured CA did not sign is refused too.
    let stranger = TestCa::new("stranger");
    let der = stranger.issue(&other_key).await;
    let (port, task) = fake_cfssl(pem_of("CERTIFICATE", &[&der])).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca.cert_pem()).unwrap();
    let mut config = Cfssl::config_for_port(port);
    config.ca_chain_pem = Some(dir.path().join("ca.pem"));
    let backend = UpstreamCfsslBackend::new("fake", config).unwrap();
    let mut same_key = csr_request(&["asked.pkid.test"]);
    same_key.subject_public_key_der = other_key.subject_public_key_der.clone();
    match backend.issue(same_key, &NoJournal).await {
        Err(BackendError::Mismatch(message)) => {
            assert!(message.contains("not signed"), "{message}")
        }
        other => panic!("expected a mismatch, got {other:?}"),
    }
    task.abort();
}

#[tokio::test]
async fn upstream_certificate_for_other_names_is_a_mismatch() {
    let ca = TestCa::new("fake cfssl CA");
    let der_req = csr_request(&["other.pkid.test"]);
    // Same key as the request the backend sends, other names: build the answer for the asked key.
    let der = {
        let mut wrong_names = der_req.clone();
        wrong_names.dns_names = vec!["asked.pkid.test".into(), "extra.pkid.test".into()];
        ca.issue(&wrong_names).await
    };
    let (port, task) = fake_cfssl(pem_of("CERTIFICATE", &[&der])).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca.cert_pem()).unwrap();
    let mut config = Cfssl::config_for_port(port);
    config.ca_chain_pem = Some(dir.path().join("ca.pem"));
    let backend = UpstreamCfsslBackend::new("fake", config).unwrap();
    let mut asked = der_req.clone();
    asked.dns_names = vec!["asked.pkid.test".into()];
    match backend.issue(asked, &NoJournal).await {
        Err(BackendError::Mismatch(message)) => {
            assert!(message.contains("extra.pkid.test"), "{message}")
        }
        other => panic!("expected a mismatch, got {other:?}"),
    }
    task.abort();
}

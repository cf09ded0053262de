//! pkid's own TLS certificate (issue 29, item 5). With `server.tls_lifetime_secs = 6` it is
//! renewed at two thirds of that while pkid runs: a later handshake gets another certificate
//! (another serial, verifying with pkid's root) from the same process, and a connection made
//! before the renewal still serves requests. With `server.tls_certificate`/`tls_key` the
//! operator's pair is served; replaced on disk it is served again within the reload interval,
//! and a pair whose key is not the certificate's is kept out (the last good pair stays).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{CertificateParams, Issuer, KeyPair};
use rustls_pki_types::pem::PemObject;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::TEST_BOUND;
use crate::harness::environment::{within, Environment};
use crate::harness::made;
use crate::harness::tls::ensure_crypto_provider;

/// A TLS connection to `addr` that verifies the server with `roots_pem` (for 127.0.0.1), and
/// the serial (hex) of the certificate it was served.
async fn handshake(addr: SocketAddr, roots_pem: &[u8]) -> (String, TlsStream<TcpStream>) {
    ensure_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(roots_pem) {
        roots.add(cert.expect("root PEM")).expect("add a root");
    }
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.expect("connect to pkid");
    let name = rustls_pki_types::ServerName::IpAddress(addr.ip().into());
    let tls = tokio::time::timeout(Duration::from_secs(10), connector.connect(name, tcp))
        .await
        .expect("the handshake timed out")
        .expect("the handshake (the served certificate verifies)");
    let leaf = tls.get_ref().1.peer_certificates().expect("a certificate")[0].clone();
    let (_, cert) = X509Certificate::from_der(&leaf).expect("parse the served certificate");
    (hex::encode(cert.raw_serial()), tls)
}

/// One `GET /healthz` on an open connection: pkid answers 200.
async fn healthz(tls: &mut TlsStream<TcpStream>) {
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .expect("send a request");
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + Duration::from_secs(10);
    while !answer.ends_with(b"ok\n") {
        assert!(Instant::now() < deadline, "no answer: {answer:?}");
        let n = tokio::time::timeout(Duration::from_secs(10), tls.read(&mut buf))
            .await
            .expect("the answer timed out")
            .expect("read the answer");
        assert!(
            n > 0,
            "the connection closed: {}",
            String::from_utf8_lossy(&answer)
        );
        answer.extend_from_slice(&buf[..n]);
    }
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
}

/// Handshakes every 250 ms until the served serial is not `old` (within `bound`); the new one.
async fn served_other_than(addr: SocketAddr, roots: &[u8], old: &str, bound: Duration) -> String {
    let deadline = Instant::now() + bound;
    loop {
        let (serial, _) = handshake(addr, roots).await;
        if serial != old {
            return serial;
        }
        assert!(
            Instant::now() < deadline,
            "still serving {old} after {bound:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pkids_certificate_is_renewed_while_it_serves() {
    let env = Environment::start_with(&[("PKID_SERVER__TLS_LIFETIME_SECS", "6")]).await;
    within(TEST_BOUND, async {
        let addr = env.pkid.https_addr();
        let root = env.pkid.root_pem();
        let pid = env.pkid.pid();
        let (first, mut open) = handshake(addr, &root).await;
        healthz(&mut open).await;
        let second = served_other_than(addr, &root, &first, Duration::from_secs(15)).await;
        let third = served_other_than(addr, &root, &second, Duration::from_secs(15)).await;
        assert_ne!(third, first);
        assert_eq!(env.pkid.pid(), pid, "the same process throughout");
        // The connection made before both renewals still serves requests.
        healthz(&mut open).await;
        let logs = env.pkid.logs();
        assert!(
            logs.matches("issued pkid's TLS certificate").count() >= 3,
            "{logs}"
        );
    })
    .await;
}

/// A TLS server certificate for localhost and 127.0.0.1 under `ca`, and its key.
fn server_pair(ca: &made::Made) -> (String, KeyPair) {
    let key = KeyPair::generate().expect("generate a key");
    let params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .expect("server certificate parameters");
    let cert = params
        .signed_by(&key, &Issuer::from_params(&ca.params, &ca.key))
        .expect("sign the server certificate");
    (cert.pem(), key)
}

/// Writes `chain` (leaf first) and `key` as the operator's files, each replaced atomically
/// (written aside, then renamed), as an operator's deployment tool would.
fn install(dir: &Path, chain: &str, key: &KeyPair) {
    for (name, text) in [
        ("server.pem", chain.to_string()),
        ("server.key", key.serialize_pem()),
    ] {
        let aside = dir.join(format!("{name}.new"));
        std::fs::write(&aside, text).expect("write a TLS file");
        std::fs::rename(&aside, dir.join(name)).expect("put a TLS file in place");
    }
}

fn serial_of(pem_text: &str) -> String {
    let der = pem::parse(pem_text).expect("PEM").into_contents();
    let (_, cert) = X509Certificate::from_der(&der).expect("parse a certificate");
    hex::encode(cert.raw_serial())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operators_certificate_is_served_and_picked_up_again_when_replaced() {
    let mut env = Environment::start().await;
    let dir = env.subdir("operator-tls");
    let ca = made::ca("operator TLS");
    let (first, first_key) = server_pair(&ca);
    install(&dir, &format!("{first}{}", ca.pem), &first_key);
    env.pkid.trust_also(&ca.pem);
    let files = |name: &str| dir.join(name).display().to_string();
    env.pkid
        .set("PKID_SERVER__TLS_CERTIFICATE", &files("server.pem"));
    env.pkid.set("PKID_SERVER__TLS_KEY", &files("server.key"));
    env.pkid.set("PKID_SERVER__TLS_RELOAD_SECS", "1");
    env.pkid.restart().await;
    within(TEST_BOUND, async {
        let addr = env.pkid.https_addr();
        let roots = ca.pem.as_bytes();
        let (served, mut open) = handshake(addr, roots).await;
        assert_eq!(
            served,
            serial_of(&first),
            "the operator's certificate is served"
        );
        let pid = env.pkid.pid();

        // Replaced on disk: served within the reload interval, by the same process.
        let (second, second_key) = server_pair(&ca);
        install(&dir, &format!("{second}{}", ca.pem), &second_key);
        let now = served_other_than(addr, roots, &served, Duration::from_secs(10)).await;
        assert_eq!(now, serial_of(&second));
        assert_eq!(env.pkid.pid(), pid);
        healthz(&mut open).await;

        // A certificate whose key is not the one beside it is kept out.
        let (third, _) = server_pair(&ca);
        install(&dir, &format!("{third}{}", ca.pem), &second_key);
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let (still, _) = handshake(addr, roots).await;
        assert_eq!(
            still,
            serial_of(&second),
            "the last good pair is still served"
        );
        assert!(
            env.pkid.logs().contains("do not hold together"),
            "the mismatch is logged:\n{}",
            env.pkid.logs()
        );
    })
    .await;
}

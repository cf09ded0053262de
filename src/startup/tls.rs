//! The HTTPS listener's TLS: pkid's own certificate and the client certificates it asks for —
//! the trust anchors of `server.client_ca_files` (files, or `backend:NAME` for a configured
//! backend's CA chain), loaded once here.
//!
//! pkid's certificate is served through a resolver ([`ServerCertificate`]) and kept current
//! while pkid runs ([`ServerTls::keep_current`]), one of two ways:
//! - issued by the default CA through the same issuance cycle as any other, valid
//!   `server.tls_lifetime_secs`, and issued again — a fresh key, a fresh serial — when two
//!   thirds of that have passed (a failed renewal is tried again within a minute, well before
//!   the certificate ends);
//! - the operator's own files (`server.tls_certificate`, `server.tls_key`), read at start and
//!   re-read whenever their contents change (checked every `server.tls_reload_secs`); a pair
//!   that does not parse or whose key is not the certificate's is kept out, and the last good
//!   one served meanwhile (a half-written replacement, say).
//!
//! A new certificate serves the handshakes that follow; established connections keep theirs.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;

use super::BoxError;
use crate::audit::{Audit, Event, SYSTEM};
use crate::ca::{Ca, IssuanceProfile};
use crate::config::{Config, BACKEND_ANCHOR};
use crate::http::client_auth::OptionalClientAuth;
use crate::http::server_cert::ServerCertificate;
use crate::identity::certificates::{certificates_from_pem, ClientCertificates};
use crate::pki::csr::check_csr;

/// The trust anchors of `server.client_ca_files` and `extra` (IAM's folder: a certificate
/// linked through IAM authenticates by TLS), and the ranges of `server.trusted_proxies`.
pub(super) fn client_certificates(
    cfg: &Config,
    cas: &[Arc<Ca>],
    extra: &[(String, Vec<u8>)],
) -> Result<ClientCertificates, BoxError> {
    let mut anchors = Vec::new();
    for entry in &cfg.server.client_ca_files {
        let origin = format!("server.client_ca_files: {entry}");
        let certificates = match entry.strip_prefix(BACKEND_ANCHOR) {
            Some(name) => cas
                .iter()
                .find(|ca| ca.name == name)
                .map(|ca| ca.backend.ca_chain())
                .ok_or_else(|| format!("{origin}: no such backend"))?,
            None => {
                let text = std::fs::read(entry).map_err(|e| format!("{origin}: {e}"))?;
                certificates_from_pem(&origin, &text)?
            }
        };
        anchors.push((origin, certificates));
    }
    for (file, der) in extra {
        // A grid folder may hold certificates no TLS path can start from (an old v1 root):
        // still IAM anchors by name, but not for TLS.
        let cert = CertificateDer::from(der.as_slice());
        match webpki::anchor_from_trusted_cert(&cert).map(|_| ()) {
            Ok(_) => anchors.push((format!("iam.trust_anchors_dir: {file}"), vec![der.clone()])),
            Err(e) => {
                tracing::warn!(file = %file, error = ?e, "an IAM trust anchor cannot anchor TLS client authentication; skipped for TLS")
            }
        }
    }
    Ok(ClientCertificates::new(
        &anchors,
        &cfg.server.trusted_proxies,
    )?)
}

/// The listener's TLS configuration, and what keeps its certificate current.
pub(super) struct ServerTls {
    pub config: Arc<rustls::ServerConfig>,
    certificate: Arc<ServerCertificate>,
    source: Source,
}

/// Where pkid's certificate comes from.
enum Source {
    Issued {
        ca: Arc<Ca>,
        names: Vec<String>,
        lifetime: Lifetime,
        /// When the first certificate is due for renewal.
        renew_in: Duration,
        audit: Audit,
    },
    Files {
        certificate: PathBuf,
        key: PathBuf,
        every: Duration,
        /// SHA-256 of the pair's contents last read, loaded or not.
        seen: Vec<u8>,
        audit: Audit,
    },
}

/// The server's TLS: its certificate (issued now, or read from the operator's files), client
/// authentication offered (never required) when there are anchors to verify certificates with.
pub(super) async fn server_tls(
    cfg: &Config,
    ca: &Arc<Ca>,
    clients: &ClientCertificates,
    audit: &Audit,
) -> Result<ServerTls, BoxError> {
    let (first, source) = if cfg.server.tls_certificate.as_os_str().is_empty() {
        let names = server_names(cfg);
        let lifetime = Lifetime {
            secs: cfg.server.tls_lifetime_secs.max(2),
            backdate_secs: cfg.ca.backdate_secs,
        };
        let (first, renew_in) = issue(ca, &names, lifetime, audit).await?;
        let source = Source::Issued {
            ca: ca.clone(),
            names,
            lifetime,
            renew_in,
            audit: audit.clone(),
        };
        (first, source)
    } else {
        let (certificate, key) = (&cfg.server.tls_certificate, &cfg.server.tls_key);
        let (contents, seen) = read_pair(certificate, key)?;
        let first = certified_key(&contents)?;
        record_loaded(audit, certificate, &first).await;
        let source = Source::Files {
            certificate: certificate.clone(),
            key: key.clone(),
            every: Duration::from_secs(cfg.server.tls_reload_secs.max(1)),
            seen,
            audit: audit.clone(),
        };
        (first, source)
    };
    let certificate = ServerCertificate::new(first);
    let builder = rustls::ServerConfig::builder();
    let mut tls = if clients.is_empty() {
        builder.with_no_client_auth()
    } else {
        let algorithms = builder.crypto_provider().signature_verification_algorithms;
        let verifier = OptionalClientAuth::new(clients.anchor_subjects(), algorithms);
        builder.with_client_cert_verifier(Arc::new(verifier))
    }
    .with_cert_resolver(certificate.clone());
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(ServerTls {
        config: Arc::new(tls),
        certificate,
        source,
    })
}

impl ServerTls {
    /// Renews (issued) or reloads (files) the certificate for as long as pkid runs.
    pub(super) fn keep_current(self) {
        let ServerTls {
            certificate,
            source,
            ..
        } = self;
        tokio::spawn(async move {
            match source {
                Source::Issued {
                    ca,
                    names,
                    lifetime,
                    renew_in,
                    audit,
                } => renew(&certificate, &ca, &names, lifetime, renew_in, &audit).await,
                Source::Files {
                    certificate: cert_path,
                    key,
                    every,
                    seen,
                    audit,
                } => reload(&certificate, &cert_path, &key, every, seen, &audit).await,
            }
        });
    }
}

/// The names of pkid's certificate: localhost and loopback, `server.tls_names`, the listen IP.
fn server_names(cfg: &Config) -> Vec<String> {
    let mut names: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    for n in &cfg.server.tls_names {
        if !names.contains(n) {
            names.push(n.clone());
        }
    }
    let admin_ip = cfg.admin_listen().ok().flatten().map(|a| a.ip());
    for ip in std::iter::once(cfg.server.listen.ip()).chain(admin_ip) {
        if !ip.is_unspecified() && !names.contains(&ip.to_string()) {
            names.push(ip.to_string());
        }
    }
    names
}

/// How long pkid's certificate is valid from its issuance.
#[derive(Debug, Clone, Copy)]
struct Lifetime {
    secs: u64,
    /// The CA backdates certificates by this much (`ca.backdate_secs`), from their validity.
    backdate_secs: u64,
}

/// A fresh key and a certificate for it from `ca`, valid `lifetime` from now (a CA issues for a
/// minute at least); with when it is due for renewal: at two thirds of what is left of it.
async fn issue(
    ca: &Ca,
    names: &[String],
    lifetime: Lifetime,
    audit: &Audit,
) -> Result<(Arc<CertifiedKey>, Duration), BoxError> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = rcgen::CertificateParams::new(names.to_vec())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr_der = params.serialize_request(&key)?.der().to_vec();
    let csr = check_csr(&csr_der).map_err(|e| format!("server CSR: {e:?}"))?;
    // The validity runs from the backdated notBefore: the backdate is added to it.
    let validity = lifetime.secs.saturating_add(lifetime.backdate_secs);
    let profile =
        IssuanceProfile::tls_server("pkid-server", i64::try_from(validity).unwrap_or(i64::MAX));
    let issued = ca.issue(&csr, &profile, None, None).await?;
    let not_after = x509_parser::parse_x509_certificate(&issued.der)
        .map(|(_, c)| c.validity().not_after.timestamp())
        .map_err(|e| format!("the issued TLS certificate does not parse: {e}"))?;
    let left = u64::try_from(not_after - crate::store::now()).unwrap_or(0);
    let renew_in = Duration::from_millis(left.saturating_mul(2000) / 3);
    let mut chain = vec![CertificateDer::from(issued.der.clone())];
    for der in ca.backend.ca_chain().into_iter().take(1) {
        chain.push(CertificateDer::from(der));
    }
    let key_der = PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let certified = CertifiedKey::from_der(chain, key_der, &provider())?;
    tracing::info!(serial = %issued.serial, not_after, "issued pkid's TLS certificate");
    audit
        .record(
            Event::success(
                SYSTEM,
                "certificate.issued",
                format!("certificate:{}", issued.serial),
            )
            .with(
                json!({ "purpose": "pkid's TLS certificate", "issuer": ca.name, "names": names }),
            ),
        )
        .await;
    Ok((Arc::new(certified), renew_in))
}

fn provider() -> Arc<CryptoProvider> {
    CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
}

/// Issues the next certificate at two thirds of the current one's life (`renew_in` for the
/// first); a failed attempt is tried again after a tenth of the lifetime (at most a minute).
async fn renew(
    served: &ServerCertificate,
    ca: &Ca,
    names: &[String],
    lifetime: Lifetime,
    renew_in: Duration,
    audit: &Audit,
) {
    let retry = (Duration::from_secs(lifetime.secs) / 10)
        .clamp(Duration::from_secs(1), Duration::from_secs(60));
    let mut next = tokio::time::Instant::now() + renew_in;
    loop {
        tokio::time::sleep_until(next).await;
        match issue(ca, names, lifetime, audit).await {
            Ok((certified, renew_in)) => {
                served.replace(certified);
                next = tokio::time::Instant::now() + renew_in.max(Duration::from_secs(1));
            }
            Err(e) => {
                tracing::error!(code = "PKID-TLS", error = %e, "renewing pkid's TLS certificate failed; retrying");
                next = tokio::time::Instant::now() + retry;
            }
        }
    }
}

/// The contents of the operator's certificate file and key file.
type Pair = (Vec<u8>, Vec<u8>);

/// The operator's certificate and key files, read; with the SHA-256 of both contents.
fn read_pair(certificate: &Path, key: &Path) -> Result<(Pair, Vec<u8>), String> {
    let read =
        |path: &Path| std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()));
    let contents = (read(certificate)?, read(key)?);
    let mut digest = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for part in [&contents.0, &contents.1] {
        digest.update(&u64::try_from(part.len()).unwrap_or(u64::MAX).to_be_bytes());
        digest.update(part);
    }
    Ok((contents, digest.finish().as_ref().to_vec()))
}

/// The chain (PEM, leaf first) and key (PEM) as rustls serves them, if the key is the leaf's.
fn certified_key((chain, key): &Pair) -> Result<Arc<CertifiedKey>, String> {
    let chain = CertificateDer::pem_slice_iter(chain)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("server.tls_certificate is not a PEM certificate chain: {e}"))?;
    if chain.is_empty() {
        return Err("server.tls_certificate holds no certificate".into());
    }
    let key = PrivateKeyDer::from_pem_slice(key)
        .map_err(|e| format!("server.tls_key is not a PEM private key: {e}"))?;
    CertifiedKey::from_der(chain, key, &provider())
        .map(Arc::new)
        .map_err(|e| format!("server.tls_key does not fit server.tls_certificate: {e}"))
}

/// Records that the operator's certificate was loaded (its serial and subject).
async fn record_loaded(audit: &Audit, path: &Path, certified: &CertifiedKey) {
    let leaf = certified
        .cert
        .first()
        .map(|c| c.as_ref())
        .unwrap_or_default();
    let (serial, subject) = match x509_parser::parse_x509_certificate(leaf) {
        Ok((_, cert)) => (hex::encode(cert.raw_serial()), cert.subject().to_string()),
        Err(_) => (String::new(), String::new()),
    };
    tracing::info!(path = %path.display(), %serial, %subject, "serving the operator's TLS certificate");
    audit
        .record(
            Event::success(
                SYSTEM,
                "server.tls_certificate.loaded",
                format!("file:{}", path.display()),
            )
            .with(json!({ "serial": serial, "subject": subject })),
        )
        .await;
}

/// Re-reads the operator's pair every `every`; serves it once it changed and holds together.
async fn reload(
    served: &ServerCertificate,
    certificate: &Path,
    key: &Path,
    every: Duration,
    mut seen: Vec<u8>,
    audit: &Audit,
) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (contents, digest) = match read_pair(certificate, key) {
            Ok(read) => read,
            Err(e) => {
                tracing::warn!(code = "PKID-TLS", error = %e, "the TLS certificate files are unreadable; serving the last good pair");
                continue;
            }
        };
        if digest == seen {
            continue;
        }
        seen = digest;
        match certified_key(&contents) {
            Ok(certified) => {
                record_loaded(audit, certificate, &certified).await;
                served.replace(certified);
            }
            Err(e) => {
                tracing::warn!(code = "PKID-TLS", error = %e, "the changed TLS certificate files do not hold together; serving the last good pair")
            }
        }
    }
}

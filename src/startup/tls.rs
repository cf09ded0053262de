//! The HTTPS listener's TLS: pkid's own certificate, issued by its default CA through the same
//! issuance cycle as any other, and the client certificates it asks for — the trust anchors of
//! `server.client_ca_files` (files, or `backend:NAME` for a configured backend's CA chain),
//! loaded once here.

use std::sync::Arc;

use rustls_pki_types::CertificateDer;

use super::BoxError;
use crate::ca::{Ca, IssuanceProfile};
use crate::config::{Config, BACKEND_ANCHOR};
use crate::http::client_auth::OptionalClientAuth;
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

/// The server's own TLS certificate, issued by the CA through the same issuance cycle; client
/// authentication offered (never required) when there are anchors to verify certificates with.
pub(super) async fn server_tls(
    cfg: &Config,
    ca: &Ca,
    clients: &ClientCertificates,
) -> Result<Arc<rustls::ServerConfig>, BoxError> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
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
    let mut params = rcgen::CertificateParams::new(names)?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr_der = params.serialize_request(&key)?.der().to_vec();
    let csr = check_csr(&csr_der).map_err(|e| format!("server CSR: {e:?}"))?;
    let profile = IssuanceProfile::tls_server("pkid-server", 30 * 86400);
    let issued = ca.issue(&csr, &profile, None, None).await?;
    let mut chain = vec![rustls_pki_types::CertificateDer::from(issued.der.clone())];
    for der in ca.backend.ca_chain().into_iter().take(1) {
        chain.push(rustls_pki_types::CertificateDer::from(der));
    }
    let key_der = rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let builder = rustls::ServerConfig::builder();
    let mut tls = if clients.is_empty() {
        builder.with_no_client_auth()
    } else {
        let algorithms = builder.crypto_provider().signature_verification_algorithms;
        let verifier = OptionalClientAuth::new(clients.anchor_subjects(), algorithms);
        builder.with_client_cert_verifier(Arc::new(verifier))
    }
    .with_single_cert(chain, key_der)?;
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(tls))
}

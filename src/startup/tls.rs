//! pkid's own HTTPS certificate, issued by its default CA through the same issuance cycle as
//! any other.

use std::sync::Arc;

use super::BoxError;
use crate::ca::{Ca, IssuanceProfile};
use crate::config::Config;
use crate::pki::csr::check_csr;

/// The server's own TLS certificate, issued by the CA through the same issuance cycle.
pub(super) async fn server_tls(
    cfg: &Config,
    ca: &Ca,
) -> Result<Arc<rustls::ServerConfig>, BoxError> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut names: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    for n in &cfg.server.tls_names {
        if !names.contains(n) {
            names.push(n.clone());
        }
    }
    let ip = cfg.server.listen.ip();
    if !ip.is_unspecified() && !names.contains(&ip.to_string()) {
        names.push(ip.to_string());
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
    let mut tls = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key_der)?;
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(tls))
}

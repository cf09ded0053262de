//! The bottom of the harness: the process-wide rustls crypto provider and the HTTPS client the
//! suites, the pkid process guard and the pebble guard talk through. Imports nothing of the
//! harness.

use std::sync::OnceLock;
use std::time::Duration;

/// rustls needs one process-wide crypto provider; reqwest is built without one.
pub fn ensure_crypto_provider() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        // Err means another thread installed one first: that is fine.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    });
}

/// An HTTPS client that trusts exactly the given PEM roots (plus the platform's, unused here).
pub fn https_client(root_pem: &[u8]) -> Result<reqwest::Client, String> {
    https_client_from(root_pem, None)
}

/// [`https_client`], its connections made from `local` (another loopback address, say).
pub fn https_client_from(
    root_pem: &[u8],
    local: Option<std::net::IpAddr>,
) -> Result<reqwest::Client, String> {
    https_client_as(root_pem, local, None)
}

/// [`https_client_from`], presenting the client certificate of `identity_pem` (the chain, leaf
/// first, and its key) when the server asks for one.
pub fn https_client_as(
    root_pem: &[u8],
    local: Option<std::net::IpAddr>,
    identity_pem: Option<&str>,
) -> Result<reqwest::Client, String> {
    ensure_crypto_provider();
    let roots = reqwest::Certificate::from_pem_bundle(root_pem)
        .map_err(|err| format!("parse root PEM: {err}"))?;
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .local_address(local)
        .timeout(Duration::from_secs(30));
    for root in roots {
        builder = builder.add_root_certificate(root);
    }
    if let Some(pem) = identity_pem {
        let identity = reqwest::Identity::from_pem(pem.as_bytes())
            .map_err(|err| format!("parse the client certificate and key: {err}"))?;
        builder = builder.identity(identity);
    }
    builder
        .build()
        .map_err(|err| format!("build HTTPS client: {err}"))
}

//! The HTTPS listener's own certificate, replaceable while pkid serves: a rustls certificate
//! resolver that hands each new handshake the certificate current at that moment. Replacing it
//! touches no connection: one made before keeps the certificate it was made with. Who renews or
//! reloads it is start-up's business (`startup::tls`).

use std::sync::{Arc, RwLock};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// The certificate and key new handshakes get.
pub struct ServerCertificate {
    current: RwLock<Arc<CertifiedKey>>,
}

impl std::fmt::Debug for ServerCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerCertificate").finish_non_exhaustive()
    }
}

impl ServerCertificate {
    pub fn new(first: Arc<CertifiedKey>) -> Arc<ServerCertificate> {
        Arc::new(ServerCertificate {
            current: RwLock::new(first),
        })
    }

    /// From now on, handshakes get `next`.
    pub fn replace(&self, next: Arc<CertifiedKey>) {
        match self.current.write() {
            Ok(mut current) => *current = next,
            Err(poisoned) => *poisoned.into_inner() = next,
        }
    }

    /// The certificate a handshake gets now.
    pub fn current(&self) -> Arc<CertifiedKey> {
        match self.current.read() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

impl ResolvesServerCert for ServerCertificate {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

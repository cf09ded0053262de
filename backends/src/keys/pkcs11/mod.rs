//! PKCS#11 key custody: a CA key generated inside a token (an HSM; SoftHSM in tests) that never
//! leaves it, behind the same [`KeySigner`] seam as [`crate::keys::SoftwareKey`], and
//! [`Pkcs11Backend`], the local CA whose issuing key is such a key.
//!
//! Signatures follow PKCS#11 v2.40 §2.3.6 and §2.1.8: ECDSA is `CKM_ECDSA` over a SHA-256 /
//! SHA-384 digest made here (SoftHSM 2.6 has no `CKM_ECDSA_SHA256`), and the token's raw
//! `r ‖ s` becomes the X.509 `Ecdsa-Sig-Value` (RFC 3279 §2.2.3); RSA is
//! `CKM_SHA256_RSA_PKCS` (RFC 8017 §8.2).
//!
//! How sessions are kept:
//! - A module (the shared library) is loaded and initialised once per process and shared by every
//!   key on it: the library has one state per process whatever the number of contexts. A
//!   read-write lock makes `C_Finalize` + `C_Initialize` wait for every call in flight, and a
//!   generation counter marks which initialisation each session belongs to; a session from an
//!   earlier one is forgotten, never used nor closed, since its handle may by now name another
//!   key's session.
//! - Each key keeps a pool of logged-in sessions; a signature takes one out, so no session is ever
//!   used by two threads at once. Object handles live with their session and are found again by
//!   `CKA_LABEL` (+ `CKA_ID`) whenever a session is opened.
//! - A signature that fails because the login, the key's handle, the sessions or the token went
//!   away is retried once on a fresh session. A lost login or handle only costs that session;
//!   lost sessions, a lost token or a fresh session that cannot find the key again cost a
//!   library re-initialisation (SoftHSM only re-reads its token directory at `C_Initialize`, and
//!   only a new generation retires every stale handle). The key found again must have the
//!   public key the key was opened with, else [`BackendError::Mismatch`]: a CA never signs with
//!   a key that does not match its certificate.
//!
//! Files: `config` (which token and key, the PIN), `module` (the library, its generations, and
//! what each token error means), `sessions` (opening logged-in sessions, the pool), `key`
//! ([`Pkcs11Key`]: finding or generating the key, signing with recovery), `encoding` (OIDs,
//! points and signatures in DER); this file, [`Pkcs11Backend`].

mod config;
mod encoding;
mod key;
mod module;
mod sessions;
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests;

use std::fmt;
use std::sync::Arc;

use time::OffsetDateTime;

pub use config::{Pin, Pkcs11Config, DEFAULT_SESSIONS, MAX_SESSIONS, SOFTHSM_MODULE};
pub use key::Pkcs11Key;

use crate::keys::software::{CA_BACKDATE, INTERMEDIATE_VALIDITY, ORGANIZATION, ROOT_VALIDITY};
use crate::keys::KeySigner;
use crate::local::builder::{self, IssuerInfo};
use crate::BackendError;

/// A CA whose issuing key lives in a PKCS#11 token: [`crate::keys::software::SoftwareBackend`] with
/// another custodian.
pub struct Pkcs11Backend {
    name: String,
    key: Arc<Pkcs11Key>,
    issuer: IssuerInfo,
    /// Issuing CA first, root last.
    chain: Vec<Vec<u8>>,
}

impl fmt::Debug for Pkcs11Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Backend")
            .field("name", &self.name)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl Pkcs11Backend {
    /// A backend over a token key and its chain (issuing CA certificate first, root last).
    /// Checks the key belongs to the first certificate.
    pub fn new(name: &str, key: Arc<Pkcs11Key>, chain: Vec<Vec<u8>>) -> Result<Self, BackendError> {
        let Some(issuing_cert) = chain.first() else {
            return Err(BackendError::Build(
                "a CA chain needs at least one certificate".into(),
            ));
        };
        let signer: Arc<dyn KeySigner> = key.clone();
        let issuer = IssuerInfo::new(issuing_cert.clone(), signer)?;
        Ok(Pkcs11Backend {
            name: name.to_owned(),
            key,
            issuer,
            chain,
        })
    }

    /// Certifies the token key as an intermediate CA ("pkid", `common_name`, 5 years,
    /// pathLen 0) under `root`, which may be a software or a token key. The chain is the
    /// intermediate then `root`'s certificate. Blocking (`root` signs).
    pub fn create_intermediate(
        name: &str,
        key: Arc<Pkcs11Key>,
        root: &IssuerInfo,
        common_name: &str,
    ) -> Result<Self, BackendError> {
        let now = OffsetDateTime::now_utc() - CA_BACKDATE;
        let intermediate = builder::intermediate(
            key.public_key_der(),
            root,
            common_name,
            Some(ORGANIZATION),
            Some(0),
            now,
            now + INTERMEDIATE_VALIDITY,
        )?;
        Self::new(name, key, vec![intermediate, root.cert_der.clone()])
    }

    /// A self-signed root CA ("pkid", `common_name`, 10 years) whose key is the token key; it
    /// issues directly, or certifies intermediates through [`Pkcs11Backend::issuer`]. Blocking.
    pub fn create_root(
        name: &str,
        key: Arc<Pkcs11Key>,
        common_name: &str,
    ) -> Result<Self, BackendError> {
        let now = OffsetDateTime::now_utc() - CA_BACKDATE;
        let root = builder::self_signed_root(
            key.as_ref(),
            common_name,
            Some(ORGANIZATION),
            now,
            now + ROOT_VALIDITY,
        )?;
        Self::new(name, key, vec![root])
    }

    /// The issuing CA and its key, for building certificates and CRLs directly.
    pub fn issuer(&self) -> &IssuerInfo {
        &self.issuer
    }

    pub fn key(&self) -> &Arc<Pkcs11Key> {
        &self.key
    }

    /// The root CA certificate, DER.
    pub fn root_der(&self) -> &[u8] {
        self.chain.last().map_or(&[], Vec::as_slice)
    }

    fn session_use(&self) -> Option<crate::SessionUse> {
        Some(self.key.session_use())
    }
}

crate::local::local_signing_backend!(Pkcs11Backend, "PKCS#11", "pkcs11");

//! Where the keys of CAs made at run time live ([`CaKeys`]): in software, sealed with the
//! key-encryption key (the sealed text is what the caller stores), or inside a PKCS#11 token,
//! generated there under a label of their own, sensitive and never extractable (the label is
//! what the caller stores). Opening a stored reference gives the CA's signer, or its whole local
//! backend once it has a certificate chain.

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::pkcs11::{Pkcs11Backend, Pkcs11Config, Pkcs11Key, DEFAULT_SESSIONS};
use super::software::SoftwareBackend;
use super::{KeySigner, SoftwareKey};
use crate::sealed::KeyEncryptionKey;
use crate::{BackendError, KeyAlgorithm, SigningBackend};

/// Binds a sealed CA key to its purpose: it cannot be opened as any other sealed secret.
const CA_KEY_AAD: &[u8] = b"pkid registry CA key";

/// Who holds a CA key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyCustody {
    /// In memory, sealed with the key-encryption key at rest.
    Software,
    /// Inside the configured PKCS#11 token.
    Pkcs11,
}

impl KeyCustody {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyCustody::Software => "software",
            KeyCustody::Pkcs11 => "pkcs11",
        }
    }

    pub fn parse(text: &str) -> Option<KeyCustody> {
        match text {
            "software" => Some(KeyCustody::Software),
            "pkcs11" => Some(KeyCustody::Pkcs11),
            _ => None,
        }
    }
}

/// How a stored CA finds its key again: the sealed PKCS#8 text, or the key's label on the token.
#[derive(Clone, PartialEq, Eq)]
pub enum CaKeyReference {
    Software { sealed_pem: String },
    Pkcs11 { label: String },
}

impl std::fmt::Debug for CaKeyReference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CaKeyReference::Software { .. } => f.write_str("Software(<sealed>)"),
            CaKeyReference::Pkcs11 { label } => write!(f, "Pkcs11({label:?})"),
        }
    }
}

impl CaKeyReference {
    pub fn custody(&self) -> KeyCustody {
        match self {
            CaKeyReference::Software { .. } => KeyCustody::Software,
            CaKeyReference::Pkcs11 { .. } => KeyCustody::Pkcs11,
        }
    }

    /// The text a caller stores beside [`CaKeyReference::custody`].
    pub fn stored(&self) -> &str {
        match self {
            CaKeyReference::Software { sealed_pem } => sealed_pem,
            CaKeyReference::Pkcs11 { label } => label,
        }
    }

    pub fn from_stored(custody: KeyCustody, text: &str) -> CaKeyReference {
        match custody {
            KeyCustody::Software => CaKeyReference::Software {
                sealed_pem: text.to_owned(),
            },
            KeyCustody::Pkcs11 => CaKeyReference::Pkcs11 {
                label: text.to_owned(),
            },
        }
    }
}

/// The token CA keys are made in: a [`Pkcs11Config`] without a key (each CA's key has a label
/// of its own).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pkcs11Token {
    pub module: PathBuf,
    pub token_label: String,
    #[serde(default)]
    pub pin_env: Option<String>,
    #[serde(default)]
    pub pin_file: Option<PathBuf>,
    /// Logged-in sessions per CA key.
    #[serde(default = "default_sessions")]
    pub sessions: usize,
}

fn default_sessions() -> usize {
    DEFAULT_SESSIONS.min(2)
}

impl Pkcs11Token {
    fn key(&self, label: &str, algorithm: KeyAlgorithm) -> Pkcs11Config {
        Pkcs11Config {
            module: self.module.clone(),
            token_label: self.token_label.clone(),
            pin_env: self.pin_env.clone(),
            pin_file: self.pin_file.clone(),
            key_label: label.to_owned(),
            algorithm,
            sessions: self.sessions,
        }
    }
}

/// Makes and opens the keys of CAs made at run time. Every method blocks (key generation, a
/// token's sessions): call them from `spawn_blocking`.
pub struct CaKeys {
    kek: Arc<KeyEncryptionKey>,
    token: Option<Pkcs11Token>,
}

impl std::fmt::Debug for CaKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaKeys")
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

impl CaKeys {
    pub fn new(kek: Arc<KeyEncryptionKey>, token: Option<Pkcs11Token>) -> CaKeys {
        CaKeys { kek, token }
    }

    /// Whether keys of this custody can be made here (PKCS#11: a token is configured).
    pub fn offers(&self, custody: KeyCustody) -> bool {
        custody == KeyCustody::Software || self.token.is_some()
    }

    fn token(&self) -> Result<&Pkcs11Token, BackendError> {
        self.token.as_ref().ok_or(BackendError::Unsupported(
            "no PKCS#11 token is configured for CA keys",
        ))
    }

    /// A fresh CA key: generated in software and sealed, or generated inside the token under
    /// a new random label (`pkid-ca-` and 16 hex digits). Its signer and its reference.
    pub fn generate(
        &self,
        custody: KeyCustody,
        algorithm: KeyAlgorithm,
    ) -> Result<(Arc<dyn KeySigner>, CaKeyReference), BackendError> {
        match custody {
            KeyCustody::Software => {
                let key = SoftwareKey::generate(algorithm)?;
                let sealed_pem = self.kek.seal_pem(&key.to_pkcs8_der(), CA_KEY_AAD)?;
                Ok((Arc::new(key), CaKeyReference::Software { sealed_pem }))
            }
            KeyCustody::Pkcs11 => {
                let mut suffix = [0u8; 8];
                rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut suffix);
                let label = format!("pkid-ca-{}", hex::encode(suffix));
                let key = Pkcs11Key::generate(&self.token()?.key(&label, algorithm))?;
                Ok((Arc::new(key), CaKeyReference::Pkcs11 { label }))
            }
        }
    }

    /// The signer of a stored CA key (a CA still without a certificate signs its request).
    pub fn signer(
        &self,
        reference: &CaKeyReference,
        algorithm: KeyAlgorithm,
    ) -> Result<Arc<dyn KeySigner>, BackendError> {
        Ok(match reference {
            CaKeyReference::Software { sealed_pem } => Arc::new(self.software(sealed_pem)?),
            CaKeyReference::Pkcs11 { label } => {
                Arc::new(Pkcs11Key::open(&self.token()?.key(label, algorithm))?)
            }
        })
    }

    /// The local backend of a stored CA with its chain (its own certificate first, root last).
    /// The key must be the first certificate's.
    pub fn backend(
        &self,
        name: &str,
        reference: &CaKeyReference,
        algorithm: KeyAlgorithm,
        chain: Vec<Vec<u8>>,
    ) -> Result<Arc<dyn SigningBackend>, BackendError> {
        Ok(match reference {
            CaKeyReference::Software { sealed_pem } => Arc::new(SoftwareBackend::new(
                name,
                self.software(sealed_pem)?,
                chain,
            )?),
            CaKeyReference::Pkcs11 { label } => {
                let key = Pkcs11Key::open(&self.token()?.key(label, algorithm))?;
                Arc::new(Pkcs11Backend::new(name, Arc::new(key), chain)?)
            }
        })
    }

    fn software(&self, sealed_pem: &str) -> Result<SoftwareKey, BackendError> {
        SoftwareKey::from_pkcs8_der(&self.kek.open_pem(sealed_pem, CA_KEY_AAD)?)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_software_key_is_sealed_and_opens_as_the_same_key() {
        let kek = Arc::new(KeyEncryptionKey::generate());
        let keys = CaKeys::new(kek, None);
        assert!(keys.offers(KeyCustody::Software));
        assert!(!keys.offers(KeyCustody::Pkcs11));
        let (signer, reference) = keys
            .generate(KeyCustody::Software, KeyAlgorithm::EcdsaP256)
            .unwrap();
        assert!(reference.stored().contains("PKID ENCRYPTED PRIVATE KEY"));
        assert!(!format!("{reference:?}").contains("ENCRYPTED"));
        let stored = CaKeyReference::from_stored(reference.custody(), reference.stored());
        let again = keys.signer(&stored, KeyAlgorithm::EcdsaP256).unwrap();
        assert_eq!(again.public_key_der(), signer.public_key_der());
        let other = CaKeys::new(Arc::new(KeyEncryptionKey::generate()), None);
        assert!(other.signer(&stored, KeyAlgorithm::EcdsaP256).is_err());
        assert!(matches!(
            keys.generate(KeyCustody::Pkcs11, KeyAlgorithm::EcdsaP256),
            Err(BackendError::Unsupported(_))
        ));
    }
}

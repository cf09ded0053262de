//! Which token and key a PKCS#11 CA uses ([`Pkcs11Config`]), and its PIN ([`Pin`]): read from
//! an environment variable or a file, never from the configuration itself, wiped from memory
//! when dropped and never printed.

use std::fmt;
use std::path::PathBuf;

use cryptoki::types::AuthPin;
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::{BackendError, KeyAlgorithm};

/// Where Debian's `softhsm2` package puts its module.
pub const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
/// Sessions per key when the configuration does not say.
pub const DEFAULT_SESSIONS: usize = 4;
/// More sessions than this would only queue inside the token.
pub const MAX_SESSIONS: usize = 64;

/// A token PIN, wiped from memory when dropped and never printed.
#[derive(Clone)]
pub struct Pin(pub(super) Zeroizing<String>);

impl Pin {
    pub fn new(pin: String) -> Result<Pin, BackendError> {
        let pin = Zeroizing::new(pin);
        if pin.is_empty() {
            return Err(BackendError::Key("the PKCS#11 PIN is empty".into()));
        }
        Ok(Pin(pin))
    }

    pub(super) fn auth(&self) -> AuthPin {
        AuthPin::from(self.0.as_str())
    }
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pin(<redacted>)")
    }
}

/// Which token and key to use. The PIN itself is never in the configuration: it comes from an
/// environment variable (`pin_env`, its name) or a file (`pin_file`), exactly one of them.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pkcs11Config {
    /// The PKCS#11 module, e.g. [`SOFTHSM_MODULE`].
    pub module: PathBuf,
    /// `CKA_LABEL` of the token (trailing spaces of the token's padded label are ignored).
    pub token_label: String,
    /// Name of the environment variable holding the user PIN.
    #[serde(default)]
    pub pin_env: Option<String>,
    /// File holding the user PIN (one trailing newline is ignored).
    #[serde(default)]
    pub pin_file: Option<PathBuf>,
    /// `CKA_LABEL` of the key pair.
    pub key_label: String,
    pub algorithm: KeyAlgorithm,
    /// Logged-in sessions kept for signing, 1 to [`MAX_SESSIONS`].
    #[serde(default = "default_sessions")]
    pub sessions: usize,
}

fn default_sessions() -> usize {
    DEFAULT_SESSIONS
}

impl Pkcs11Config {
    /// Reads the PIN from `pin_env` or `pin_file`.
    pub fn read_pin(&self) -> Result<Pin, BackendError> {
        let token = &self.token_label;
        let what = format!("PKCS#11 token {token}: the PIN (pin_env or pin_file)");
        let pin = crate::secret::read_secret(&what, self.pin_env.as_deref(), self.pin_file.as_deref())?
            .ok_or_else(|| {
                BackendError::Key(format!(
                    "PKCS#11 token {token}: no PIN source; set pin_env (an environment variable name) or pin_file"
                ))
            })?;
        Pin::new(pin.as_str().to_owned())
    }

    pub(super) fn validate(&self) -> Result<(), BackendError> {
        if self.token_label.is_empty() || self.key_label.is_empty() {
            return Err(BackendError::Key(
                "PKCS#11: token_label and key_label must not be empty".into(),
            ));
        }
        if !(1..=MAX_SESSIONS).contains(&self.sessions) {
            return Err(BackendError::Key(format!(
                "PKCS#11 token {}: sessions must be between 1 and {MAX_SESSIONS}, not {}",
                self.token_label, self.sessions
            )));
        }
        if self.algorithm == KeyAlgorithm::Ed25519 {
            return Err(BackendError::Unsupported(
                "Ed25519 keys in a PKCS#11 token (use ecdsa-p256, ecdsa-p384 or rsa*)",
            ));
        }
        Ok(())
    }
}

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

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError, RwLock, RwLockReadGuard};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use serde::Deserialize;
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::keys::software::{CA_BACKDATE, INTERMEDIATE_VALIDITY, ORGANIZATION, ROOT_VALIDITY};
use crate::keys::KeySigner;
use crate::local::builder::{self, IssuerInfo};
use crate::local::der;
use crate::{BackendError, KeyAlgorithm};

/// Where Debian's `softhsm2` package puts its module.
pub const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
/// Sessions per key when the configuration does not say.
pub const DEFAULT_SESSIONS: usize = 4;
/// More sessions than this would only queue inside the token.
pub const MAX_SESSIONS: usize = 64;
/// How long a signature waits for a free session before giving up.
const SESSION_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// id-ecPublicKey (RFC 5480 §2.1.1), secp256r1 and secp384r1 (§2.1.1.1), rsaEncryption
/// (RFC 8017 appendix A.1).
const OID_EC_PUBLIC_KEY: &[u64] = &[1, 2, 840, 10045, 2, 1];
const OID_P256: &[u64] = &[1, 2, 840, 10045, 3, 1, 7];
const OID_P384: &[u64] = &[1, 3, 132, 0, 34];
const OID_RSA_ENCRYPTION: &[u64] = &[1, 2, 840, 113549, 1, 1, 1];
const DER_NULL: &[u8] = &[0x05, 0x00];
const RSA_PUBLIC_EXPONENT: &[u8] = &[0x01, 0x00, 0x01];

/// A token PIN, wiped from memory when dropped and never printed.
#[derive(Clone)]
pub struct Pin(Zeroizing<String>);

impl Pin {
    pub fn new(pin: String) -> Result<Pin, BackendError> {
        let pin = Zeroizing::new(pin);
        if pin.is_empty() {
            return Err(BackendError::Key("the PKCS#11 PIN is empty".into()));
        }
        Ok(Pin(pin))
    }

    fn auth(&self) -> AuthPin {
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

    fn validate(&self) -> Result<(), BackendError> {
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

/// Why a token call failed, and what might cure it.
#[derive(Debug)]
enum Failure {
    /// The session is still open but its login or object handles are gone: close it and open
    /// a fresh one, which logs in and finds the key again.
    Stale(String),
    /// The library, the token or the sessions themselves are gone or changed: re-initialise the
    /// library. Sessions closed behind our back count here: their handle numbers may already be
    /// reused by fresh sessions, and only a new library generation retires every old handle.
    Lost(String),
    /// Retrying will not help.
    Fatal(BackendError),
}

impl Failure {
    fn is_recoverable(&self) -> bool {
        !matches!(self, Failure::Fatal(_))
    }

    /// Recoverable failures that were not cured become `kind("PKCS#11: …")`.
    fn into_error(self, kind: fn(String) -> BackendError) -> BackendError {
        match self {
            Failure::Stale(what) | Failure::Lost(what) => kind(format!("PKCS#11: {what}")),
            Failure::Fatal(e) => e,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Stale(what) | Failure::Lost(what) => f.write_str(what),
            Failure::Fatal(e) => write!(f, "{e}"),
        }
    }
}

/// `SessionHandleInvalid` → `CKR_SESSION_HANDLE_INVALID`, the name operators grep for.
fn ckr_name(rv: &RvError) -> String {
    let camel = format!("{rv:?}");
    let mut name = String::from("CKR");
    for c in camel.chars() {
        if c.is_ascii_uppercase() {
            name.push('_');
        }
        name.push(c.to_ascii_uppercase());
    }
    name
}

/// Sorts a cryptoki error by what might cure it; `what` says what was being done.
fn classify(e: CkError, what: &str, kind: fn(String) -> BackendError) -> Failure {
    match &e {
        CkError::Pkcs11(rv, function) => {
            let message = format!("{what}: C_{function:?} returned {}", ckr_name(rv));
            match rv {
                RvError::UserNotLoggedIn
                | RvError::ObjectHandleInvalid
                | RvError::KeyHandleInvalid => Failure::Stale(message),
                RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::TokenNotPresent
                | RvError::TokenNotRecognized
                | RvError::DeviceRemoved
                | RvError::DeviceError
                | RvError::CryptokiNotInitialized
                | RvError::SlotIdInvalid
                | RvError::GeneralError => Failure::Lost(message),
                _ => Failure::Fatal(kind(format!("PKCS#11: {message}"))),
            }
        }
        other => Failure::Fatal(kind(format!("PKCS#11: {what}: {other}"))),
    }
}

/// Where the library stands: initialised or not, and how many times it was (re)initialised.
#[derive(Clone, Copy, Debug)]
struct LibraryState {
    initialized: bool,
    generation: u64,
}

/// One loaded PKCS#11 module, shared by every key on it in this process.
struct Module {
    path: PathBuf,
    library: Pkcs11,
    /// Read-held by every call into the library, write-held to finalise and re-initialise it.
    state: RwLock<LibraryState>,
}

impl Module {
    /// The module at `path`, loaded and initialised on first use.
    fn get(path: &Path) -> Result<Arc<Module>, BackendError> {
        static MODULES: OnceLock<Mutex<HashMap<PathBuf, Arc<Module>>>> = OnceLock::new();
        // One entry per file, however it is named: the dynamic loader would share it anyway.
        let canonical = fs::canonicalize(path)
            .map_err(|e| BackendError::Key(format!("PKCS#11 module {}: {e}", path.display())))?;
        let mut modules = MODULES
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(module) = modules.get(&canonical) {
            return Ok(Arc::clone(module));
        }
        let library = Pkcs11::new(&canonical).map_err(|e| {
            BackendError::Key(format!(
                "PKCS#11 module {} could not be loaded: {e}",
                canonical.display()
            ))
        })?;
        let module = Arc::new(Module {
            path: canonical.clone(),
            library,
            state: RwLock::new(LibraryState {
                initialized: false,
                generation: 0,
            }),
        });
        modules.insert(canonical, Arc::clone(&module));
        drop(modules);
        module
            .reinitialize(0)
            .map_err(|f| f.into_error(BackendError::Key))?;
        Ok(module)
    }

    fn read(&self) -> RwLockReadGuard<'_, LibraryState> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// `C_Finalize` + `C_Initialize`, unless someone already did it since `seen_generation`.
    /// Every session opened before becomes stale.
    fn reinitialize(&self, seen_generation: u64) -> Result<(), Failure> {
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        if state.generation != seen_generation {
            return Ok(());
        }
        if state.initialized {
            // Whatever C_Finalize says, the next step is C_Initialize.
            let _ = self.library.clone().finalize();
            state.initialized = false;
        }
        state.generation += 1;
        match self
            .library
            .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        {
            Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {
                state.initialized = true;
                tracing::info!(module = %self.path.display(), generation = state.generation, "PKCS#11 library initialised");
                Ok(())
            }
            Err(e) => Err(classify(
                e,
                &format!("initialising {}", self.path.display()),
                BackendError::Key,
            )),
        }
    }
}

/// A logged-in session and the private key handle found in it.
struct TokenSession {
    session: Session,
    generation: u64,
    private_key: ObjectHandle,
}

/// The token and key a [`Pkcs11Key`] refers to, and how to reach them.
struct TokenKeyRef {
    module: Arc<Module>,
    token_label: String,
    key_label: String,
    pin: Pin,
    algorithm: KeyAlgorithm,
}

impl TokenKeyRef {
    fn new(cfg: &Pkcs11Config, pin: Pin) -> Result<Self, BackendError> {
        cfg.validate()?;
        Ok(TokenKeyRef {
            module: Module::get(&cfg.module)?,
            token_label: cfg.token_label.clone(),
            key_label: cfg.key_label.clone(),
            pin,
            algorithm: cfg.algorithm,
        })
    }

    /// Runs `op` under the library lock; when it fails in a way a fresh start may cure,
    /// re-initialises the library and runs it once more. For start-up paths.
    fn with_retry<T>(
        &self,
        mut op: impl FnMut(&LibraryState) -> Result<T, Failure>,
    ) -> Result<T, BackendError> {
        let generation = {
            let state = self.module.read();
            match op(&state) {
                Ok(value) => return Ok(value),
                Err(Failure::Fatal(e)) => return Err(e),
                Err(failure) => {
                    tracing::debug!(token = %self.token_label, %failure, "PKCS#11: re-initialising the library and trying again");
                    state.generation
                }
            }
        };
        self.module
            .reinitialize(generation)
            .map_err(|f| f.into_error(BackendError::Key))?;
        let state = self.module.read();
        op(&state).map_err(|f| f.into_error(BackendError::Key))
    }

    fn find_slot(&self, state: &LibraryState) -> Result<Slot, Failure> {
        if !state.initialized {
            return Err(Failure::Lost(format!(
                "the library {} is not initialised",
                self.module.path.display()
            )));
        }
        let listing = |e| classify(e, "listing slots", BackendError::Key);
        for slot in self
            .module
            .library
            .get_slots_with_token()
            .map_err(listing)?
        {
            let info = self
                .module
                .library
                .get_token_info(slot)
                .map_err(|e| classify(e, "reading token information", BackendError::Key))?;
            if info.label().trim_end() == self.token_label {
                return Ok(slot);
            }
        }
        Err(Failure::Lost(format!(
            "no token labelled {:?} in {}",
            self.token_label,
            self.module.path.display()
        )))
    }

    /// Opens a session on the token and logs the user in.
    fn open_logged_in(&self, state: &LibraryState, read_write: bool) -> Result<Session, Failure> {
        let slot = self.find_slot(state)?;
        let opening = |e| classify(e, "opening a session", BackendError::Key);
        // Never closed on drop: a session from an earlier initialisation must not be closed.
        let session = if read_write {
            self.module.library.open_rw_session_no_drop(slot)
        } else {
            self.module.library.open_ro_session_no_drop(slot)
        }
        .map_err(opening)?;
        if let Err(failure) = self.login(&session) {
            let _ = session.close();
            return Err(failure);
        }
        Ok(session)
    }

    fn login(&self, session: &Session) -> Result<(), Failure> {
        let token = &self.token_label;
        let refused = |why: &str| {
            Failure::Fatal(BackendError::Key(format!(
                "PKCS#11 login to token {token} failed: {why}"
            )))
        };
        match session.login(UserType::User, Some(&self.pin.auth())) {
            // Login is per application and token: another session may already have done it.
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(()),
            Err(CkError::Pkcs11(RvError::PinIncorrect, _)) => Err(refused("PIN incorrect")),
            Err(CkError::Pkcs11(RvError::PinLocked, _)) => Err(refused("PIN locked")),
            Err(CkError::Pkcs11(RvError::PinExpired, _)) => Err(refused("PIN expired")),
            Err(CkError::Pkcs11(RvError::PinLenRange | RvError::PinInvalid, _)) => {
                Err(refused("the PIN is not one this token accepts"))
            }
            Err(e) => Err(classify(
                e,
                &format!("logging in to token {token}"),
                BackendError::Key,
            )),
        }
    }

    fn find_private_keys(&self, session: &Session) -> Result<Vec<ObjectHandle>, Failure> {
        session
            .find_objects(&[
                Attribute::Class(ObjectClass::PRIVATE_KEY),
                Attribute::Label(self.key_label.as_bytes().to_vec()),
            ])
            .map_err(|e| classify(e, "finding the private key", BackendError::Key))
    }

    /// The private key labelled `key_label` and the SPKI DER of its public key.
    fn find_key(&self, session: &Session) -> Result<(ObjectHandle, Vec<u8>), Failure> {
        let (token, label) = (&self.token_label, &self.key_label);
        let private_key = match self.find_private_keys(session)?.as_slice() {
            [] => {
                return Err(Failure::Lost(format!(
                    "no private key labelled {label:?} on token {token}"
                )))
            }
            [one] => *one,
            many => {
                return Err(Failure::Fatal(BackendError::Key(format!(
                    "PKCS#11: {} private keys are labelled {label:?} on token {token}; the label must name one key",
                    many.len()
                ))))
            }
        };
        let reading = |e| classify(e, "reading the key's attributes", BackendError::Key);
        let attributes = session
            .get_attributes(private_key, &[AttributeType::KeyType, AttributeType::Id])
            .map_err(reading)?;
        let mut key_type = None;
        let mut id = Vec::new();
        for attribute in attributes {
            match attribute {
                Attribute::KeyType(t) => key_type = Some(t),
                Attribute::Id(bytes) => id = bytes,
                _ => {}
            }
        }
        let expected = if self.algorithm.is_rsa() {
            KeyType::RSA
        } else {
            KeyType::EC
        };
        if key_type != Some(expected) {
            return Err(Failure::Fatal(BackendError::Key(format!(
                "PKCS#11: the key labelled {label:?} on token {token} is {}, the configuration says {}",
                key_type.map_or_else(|| "of an unknown type".to_owned(), |t| format!("a {t} key")),
                self.algorithm
            ))));
        }

        let mut template = vec![
            Attribute::Class(ObjectClass::PUBLIC_KEY),
            Attribute::Label(label.as_bytes().to_vec()),
        ];
        if !id.is_empty() {
            template.push(Attribute::Id(id));
        }
        let public_keys = session
            .find_objects(&template)
            .map_err(|e| classify(e, "finding the public key", BackendError::Key))?;
        let [public_key] = public_keys.as_slice() else {
            return Err(Failure::Fatal(BackendError::Key(format!(
                "PKCS#11: token {token} holds {} public keys labelled {label:?} with the private key's CKA_ID; \
                 pkid needs exactly one to know the key's public half",
                public_keys.len()
            ))));
        };
        let spki = self.public_key_spki(session, *public_key)?;
        Ok((private_key, spki))
    }

    /// SubjectPublicKeyInfo DER (RFC 5280 §4.1.2.7) of the public key object.
    fn public_key_spki(&self, session: &Session, object: ObjectHandle) -> Result<Vec<u8>, Failure> {
        let (token, label) = (&self.token_label, &self.key_label);
        let wrong = |why: String| {
            Failure::Fatal(BackendError::Key(format!(
                "PKCS#11: the public key labelled {label:?} on token {token} {why}"
            )))
        };
        let reading = |e| classify(e, "reading the public key", BackendError::Key);
        if self.algorithm.is_rsa() {
            let attributes = session
                .get_attributes(
                    object,
                    &[AttributeType::Modulus, AttributeType::PublicExponent],
                )
                .map_err(reading)?;
            let (mut modulus, mut exponent) = (None, None);
            for attribute in attributes {
                match attribute {
                    Attribute::Modulus(n) => modulus = Some(n),
                    Attribute::PublicExponent(e) => exponent = Some(e),
                    _ => {}
                }
            }
            let (Some(modulus), Some(exponent)) = (modulus, exponent) else {
                return Err(wrong("has no modulus or public exponent".into()));
            };
            let bits = modulus.iter().skip_while(|b| **b == 0).count() * 8;
            let expected = rsa_modulus_len(self.algorithm) * 8;
            if bits != expected {
                return Err(wrong(format!(
                    "is {bits} bits, the configuration says {}",
                    self.algorithm
                )));
            }
            let rsa_public_key = der::sequence(&[
                &der::unsigned_integer(&modulus),
                &der::unsigned_integer(&exponent),
            ]);
            Ok(der::sequence(&[
                &der::sequence(&[&der::oid(OID_RSA_ENCRYPTION), DER_NULL]),
                &der::bit_string(&rsa_public_key),
            ]))
        } else {
            let attributes = session
                .get_attributes(object, &[AttributeType::EcParams, AttributeType::EcPoint])
                .map_err(reading)?;
            let (mut params, mut point) = (None, None);
            for attribute in attributes {
                match attribute {
                    Attribute::EcParams(p) => params = Some(p),
                    Attribute::EcPoint(p) => point = Some(p),
                    _ => {}
                }
            }
            let (Some(params), Some(point)) = (params, point) else {
                return Err(wrong("has no curve or point".into()));
            };
            let curve = der::oid(curve_oid(self.algorithm));
            if params != curve {
                return Err(wrong(format!("is not on the curve of {}", self.algorithm)));
            }
            let point = uncompressed_point(&point, coordinate_len(self.algorithm))
                .ok_or_else(|| wrong("has a point that is not an uncompressed point".into()))?;
            Ok(der::sequence(&[
                &der::sequence(&[&der::oid(OID_EC_PUBLIC_KEY), &curve]),
                &der::bit_string(point),
            ]))
        }
    }

    /// A fresh logged-in session with the key found again, checked against `expected_spki`.
    fn open_session(
        &self,
        state: &LibraryState,
        expected_spki: Option<&[u8]>,
    ) -> Result<(TokenSession, Vec<u8>), Failure> {
        let session = self.open_logged_in(state, false)?;
        let (private_key, spki) = match self.find_key(&session) {
            Ok(found) => found,
            Err(failure) => {
                let _ = session.close();
                return Err(failure);
            }
        };
        if expected_spki.is_some_and(|expected| expected != spki) {
            let _ = session.close();
            return Err(Failure::Fatal(BackendError::Mismatch(format!(
                "PKCS#11: the key labelled {:?} on token {} is no longer the key this CA was started with \
                 (its public key changed: was the token re-initialised?); refusing to sign",
                self.key_label, self.token_label
            ))));
        }
        Ok((
            TokenSession {
                session,
                generation: state.generation,
                private_key,
            },
            spki,
        ))
    }

    /// Generates the key pair inside the token: it stays there, sensitive and unextractable.
    fn generate_key_pair(&self, session: &Session) -> Result<(), Failure> {
        if !self.find_private_keys(session)?.is_empty() {
            return Err(Failure::Fatal(BackendError::Key(format!(
                "PKCS#11: token {} already holds a key labelled {:?}; refusing to generate another",
                self.token_label, self.key_label
            ))));
        }
        let label = self.key_label.as_bytes().to_vec();
        let mut id = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut id);
        let mut public = vec![
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Verify(true),
            Attribute::Label(label.clone()),
            Attribute::Id(id.to_vec()),
        ];
        let private = vec![
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::Decrypt(false),
            Attribute::Derive(false),
            Attribute::Label(label),
            Attribute::Id(id.to_vec()),
        ];
        let mechanism = if self.algorithm.is_rsa() {
            let bits = (rsa_modulus_len(self.algorithm) * 8) as u64;
            public.push(Attribute::ModulusBits(bits.into()));
            public.push(Attribute::PublicExponent(RSA_PUBLIC_EXPONENT.to_vec()));
            Mechanism::RsaPkcsKeyPairGen
        } else {
            public.push(Attribute::EcParams(der::oid(curve_oid(self.algorithm))));
            Mechanism::EccKeyPairGen
        };
        session
            .generate_key_pair(&mechanism, &public, &private)
            .map(|_| ())
            .map_err(|e| {
                classify(
                    e,
                    &format!("generating a {} key", self.algorithm),
                    BackendError::Key,
                )
            })
    }
}

fn curve_oid(alg: KeyAlgorithm) -> &'static [u64] {
    match alg {
        KeyAlgorithm::EcdsaP384 => OID_P384,
        _ => OID_P256,
    }
}

/// Bytes of one ECDSA coordinate (and of r and s).
fn coordinate_len(alg: KeyAlgorithm) -> usize {
    match alg {
        KeyAlgorithm::EcdsaP384 => 48,
        _ => 32,
    }
}

fn rsa_modulus_len(alg: KeyAlgorithm) -> usize {
    match alg {
        KeyAlgorithm::Rsa3072 => 384,
        KeyAlgorithm::Rsa4096 => 512,
        _ => 256,
    }
}

/// `CKA_EC_POINT` is a DER OCTET STRING around the point (PKCS#11 v2.40 §2.3.3); some tokens
/// give the bare point. Either way, the uncompressed point `04 ‖ X ‖ Y`.
fn uncompressed_point(value: &[u8], coordinate_len: usize) -> Option<&[u8]> {
    let len = 1 + 2 * coordinate_len;
    let point = match value {
        [0x04, l, rest @ ..] if usize::from(*l) == len && rest.len() == len => rest,
        bare if bare.len() == len => bare,
        _ => return None,
    };
    (point.first() == Some(&0x04)).then_some(point)
}

/// The token's raw `r ‖ s` as `Ecdsa-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }`.
fn ecdsa_raw_to_der(raw: &[u8], coordinate_len: usize) -> Option<Vec<u8>> {
    if raw.len() != 2 * coordinate_len {
        return None;
    }
    let (r, s) = raw.split_at(coordinate_len);
    Some(der::sequence(&[
        &der::unsigned_integer(r),
        &der::unsigned_integer(s),
    ]))
}

/// A fixed number of session slots; a signature takes one out and puts it back.
struct SessionPool {
    /// `None`: a slot whose session was lost, opened again on next use.
    idle: Mutex<Vec<Option<TokenSession>>>,
    returned: Condvar,
}

/// A session slot taken out of the pool; it goes back when dropped.
struct Lease<'a> {
    pool: &'a SessionPool,
    slot: Option<TokenSession>,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let mut idle = self
            .pool
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        idle.push(self.slot.take());
        self.pool.returned.notify_one();
    }
}

impl SessionPool {
    fn take(&self) -> Result<Lease<'_>, BackendError> {
        let idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let (mut idle, _) = self
            .returned
            .wait_timeout_while(idle, SESSION_WAIT, |idle| idle.is_empty())
            .unwrap_or_else(PoisonError::into_inner);
        match idle.pop() {
            Some(slot) => Ok(Lease { pool: self, slot }),
            None => Err(BackendError::Sign(format!(
                "PKCS#11: no session came free within {} s",
                SESSION_WAIT.as_secs()
            ))),
        }
    }
}

/// Where a signing attempt failed.
struct Attempt {
    failure: Failure,
    /// The library generation the attempt ran under.
    generation: u64,
    /// Whether it failed while opening a session (rather than in `C_Sign`).
    opening: bool,
}

/// A private key that lives in a PKCS#11 token.
pub struct Pkcs11Key {
    token: TokenKeyRef,
    spki: Vec<u8>,
    pool: SessionPool,
    /// One permit per session of the pool ([`KeySigner::signing_slots`]).
    slots: Arc<tokio::sync::Semaphore>,
    /// Signatures that needed a fresh session or library.
    recoveries: AtomicU64,
}

impl fmt::Debug for Pkcs11Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Key")
            .field("module", &self.token.module.path)
            .field("token_label", &self.token.token_label)
            .field("key_label", &self.token.key_label)
            .field("algorithm", &self.token.algorithm)
            .finish_non_exhaustive()
    }
}

impl Pkcs11Key {
    /// Opens the existing key `cfg.key_label` on token `cfg.token_label`, with `cfg.sessions`
    /// logged-in sessions. Blocking.
    pub fn open(cfg: &Pkcs11Config) -> Result<Self, BackendError> {
        Self::open_with_pin(cfg, cfg.read_pin()?)
    }

    /// [`Pkcs11Key::open`] with a PIN obtained elsewhere.
    pub fn open_with_pin(cfg: &Pkcs11Config, pin: Pin) -> Result<Self, BackendError> {
        let token = TokenKeyRef::new(cfg, pin)?;
        let (first, spki) = token.with_retry(|state| token.open_session(state, None))?;
        let mut idle = Vec::with_capacity(cfg.sessions);
        idle.push(Some(first));
        for _ in 1..cfg.sessions {
            let (session, _) = token.with_retry(|state| token.open_session(state, Some(&spki)))?;
            idle.push(Some(session));
        }
        tracing::info!(token = %token.token_label, key = %token.key_label, algorithm = %token.algorithm, sessions = cfg.sessions, "opened a PKCS#11 key");
        Ok(Pkcs11Key {
            token,
            spki,
            pool: SessionPool {
                idle: Mutex::new(idle),
                returned: Condvar::new(),
            },
            slots: Arc::new(tokio::sync::Semaphore::new(cfg.sessions)),
            recoveries: AtomicU64::new(0),
        })
    }

    /// Generates a `cfg.algorithm` key pair labelled `cfg.key_label` inside the token
    /// (`CKA_TOKEN`, `CKA_PRIVATE`, `CKA_SENSITIVE`, not `CKA_EXTRACTABLE`, `CKA_SIGN`; a random
    /// `CKA_ID` shared by both halves), then opens it. Refuses when the label is taken. Blocking.
    pub fn generate(cfg: &Pkcs11Config) -> Result<Self, BackendError> {
        let pin = cfg.read_pin()?;
        let token = TokenKeyRef::new(cfg, pin.clone())?;
        token.with_retry(|state| {
            let session = token.open_logged_in(state, true)?;
            let generated = token.generate_key_pair(&session);
            let _ = session.close();
            generated
        })?;
        tracing::info!(token = %cfg.token_label, key = %cfg.key_label, algorithm = %cfg.algorithm, "generated a key pair in a PKCS#11 token");
        Self::open_with_pin(cfg, pin)
    }

    /// Opens the key, or generates it when the token has no key of that label. Returns whether
    /// it was generated. Blocking.
    pub fn open_or_generate(cfg: &Pkcs11Config) -> Result<(Self, bool), BackendError> {
        let token = TokenKeyRef::new(cfg, cfg.read_pin()?)?;
        let exists = token.with_retry(|state| {
            let session = token.open_logged_in(state, false)?;
            let found = token.find_private_keys(&session);
            let _ = session.close();
            Ok(!found?.is_empty())
        })?;
        drop(token);
        if exists {
            Ok((Self::open(cfg)?, false))
        } else {
            Ok((Self::generate(cfg)?, true))
        }
    }

    pub fn token_label(&self) -> &str {
        &self.token.token_label
    }

    pub fn key_label(&self) -> &str {
        &self.token.key_label
    }

    /// How many signatures so far found their session, login or token gone and recovered (or
    /// tried to): a figure for metrics.
    pub fn recoveries(&self) -> u64 {
        self.recoveries.load(Ordering::Relaxed)
    }

    /// One signing attempt on the leased session, opening one first when it has none (or one
    /// from an earlier library generation).
    fn try_sign(
        &self,
        lease: &mut Lease<'_>,
        mechanism: &Mechanism<'_>,
        data: &[u8],
    ) -> Result<Vec<u8>, Attempt> {
        let state = self.token.module.read();
        let generation = state.generation;
        if lease
            .slot
            .as_ref()
            .is_some_and(|s| s.generation != generation)
        {
            // Stale: forgotten, not closed.
            lease.slot = None;
        }
        let slot = match lease.slot.take() {
            Some(slot) => slot,
            None => match self.token.open_session(&state, Some(&self.spki)) {
                Ok((slot, _)) => slot,
                Err(failure) => {
                    // A fresh session just failed: only a fresh library may help.
                    let failure = match failure {
                        Failure::Stale(what) => Failure::Lost(what),
                        other => other,
                    };
                    return Err(Attempt {
                        failure,
                        generation,
                        opening: true,
                    });
                }
            },
        };
        let result = slot.session.sign(mechanism, slot.private_key, data);
        match result {
            Ok(signature) => {
                lease.slot = Some(slot);
                Ok(signature)
            }
            Err(e) => {
                let failure = classify(e, "signing", BackendError::Sign);
                match failure {
                    // The session is fine; the request was not.
                    Failure::Fatal(_) => lease.slot = Some(slot),
                    // Still open and ours: close it, a fresh one logs in and finds the key.
                    Failure::Stale(_) => {
                        let _ = slot.session.close();
                    }
                    // Gone: forgotten, not closed.
                    Failure::Lost(_) => {}
                }
                Err(Attempt {
                    failure,
                    generation,
                    opening: false,
                })
            }
        }
    }

    /// Signs; on a failure a fresh session or library may cure, recovers and retries `C_Sign`
    /// once.
    fn sign_with_recovery(
        &self,
        mechanism: &Mechanism<'_>,
        data: &[u8],
    ) -> Result<Vec<u8>, BackendError> {
        let mut lease = self.pool.take()?;
        let first = match self.try_sign(&mut lease, mechanism, data) {
            Ok(signature) => return Ok(signature),
            Err(attempt) if !attempt.failure.is_recoverable() => {
                return Err(attempt.failure.into_error(BackendError::Sign))
            }
            Err(attempt) => attempt,
        };
        self.recoveries.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(token = %self.token.token_label, key = %self.token.key_label, failure = %first.failure, "PKCS#11 signing failed; recovering");
        let mut reinitialized = false;
        if matches!(first.failure, Failure::Lost(_)) {
            self.token
                .module
                .reinitialize(first.generation)
                .map_err(|f| f.into_error(BackendError::Sign))?;
            reinitialized = true;
        }
        let mut retried = self.try_sign(&mut lease, mechanism, data);
        // Opening a fresh session failed before C_Sign ran: re-initialise the library once and
        // open again. C_Sign still runs at most twice per call.
        if let Err(attempt) = &retried {
            if attempt.opening && !reinitialized && matches!(attempt.failure, Failure::Lost(_)) {
                self.token
                    .module
                    .reinitialize(attempt.generation)
                    .map_err(|f| f.into_error(BackendError::Sign))?;
                retried = self.try_sign(&mut lease, mechanism, data);
            }
        }
        match retried {
            Ok(signature) => {
                tracing::info!(token = %self.token.token_label, key = %self.token.key_label, "PKCS#11 signing recovered");
                Ok(signature)
            }
            Err(attempt) => {
                tracing::error!(token = %self.token.token_label, key = %self.token.key_label, failure = %attempt.failure, "PKCS#11 signing recovery failed; the next signature tries again");
                Err(attempt.failure.into_error(BackendError::Sign))
            }
        }
    }
}

impl KeySigner for Pkcs11Key {
    fn algorithm(&self) -> KeyAlgorithm {
        self.token.algorithm
    }

    fn signing_slots(&self) -> Option<Arc<tokio::sync::Semaphore>> {
        Some(Arc::clone(&self.slots))
    }

    fn public_key_der(&self) -> &[u8] {
        &self.spki
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, BackendError> {
        let alg = self.token.algorithm;
        let (mechanism, data): (Mechanism<'_>, Cow<'_, [u8]>) = match alg {
            KeyAlgorithm::EcdsaP256 => (
                Mechanism::Ecdsa,
                Cow::Owned(
                    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, message)
                        .as_ref()
                        .to_vec(),
                ),
            ),
            KeyAlgorithm::EcdsaP384 => (
                Mechanism::Ecdsa,
                Cow::Owned(
                    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA384, message)
                        .as_ref()
                        .to_vec(),
                ),
            ),
            KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 | KeyAlgorithm::Rsa4096 => {
                (Mechanism::Sha256RsaPkcs, Cow::Borrowed(message))
            }
            KeyAlgorithm::Ed25519 => {
                return Err(BackendError::Unsupported("Ed25519 keys in a PKCS#11 token"))
            }
        };
        let raw = self.sign_with_recovery(&mechanism, &data)?;
        if alg.is_rsa() {
            if raw.len() != rsa_modulus_len(alg) {
                return Err(BackendError::Sign(format!(
                    "PKCS#11: the token returned a {}-byte {alg} signature",
                    raw.len()
                )));
            }
            return Ok(raw);
        }
        ecdsa_raw_to_der(&raw, coordinate_len(alg)).ok_or_else(|| {
            BackendError::Sign(format!(
                "PKCS#11: the token returned a {}-byte {alg} signature, expected r ‖ s of {} bytes",
                raw.len(),
                2 * coordinate_len(alg)
            ))
        })
    }
}

impl Drop for Pkcs11Key {
    fn drop(&mut self) {
        let state = self.token.module.read();
        let mut idle = self
            .pool
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for slot in idle.drain(..).flatten() {
            // Only sessions of the current initialisation are ours to close.
            if state.initialized && slot.generation == state.generation {
                let _ = slot.session.close();
            }
        }
    }
}

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
}

crate::local::local_signing_backend!(Pkcs11Backend, "PKCS#11");

#[cfg(test)]
impl Module {
    /// Fault injection: every session and login of this process dropped (C_Finalize, then
    /// C_Initialize when `initialize_again`) without telling the keys, as an HSM restart or a
    /// C_CloseAllSessions would. The generation stays, so keys find out only when C_Sign fails.
    fn drop_everything_behind_the_keys_back(&self, initialize_again: bool) {
        let _state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        let _ = self.library.clone().finalize();
        if initialize_again {
            let _ = self
                .library
                .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK));
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests;

//! A CA key inside a PKCS#11 token ([`Pkcs11Key`]): found by its label (and `CKA_ID`), its
//! public key read back as a SubjectPublicKeyInfo, generated in the token when asked, and
//! [`KeySigner`] over the token's sessions, recovering once from a lost session, login or
//! token.

use std::borrow::Cow;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;

use super::config::{Pin, Pkcs11Config};
use super::encoding::{
    coordinate_len, curve_oid, ecdsa_raw_to_der, rsa_modulus_len, uncompressed_point, DER_NULL,
    OID_EC_PUBLIC_KEY, OID_RSA_ENCRYPTION, RSA_PUBLIC_EXPONENT,
};
use super::module::{classify, Failure};
use super::sessions::{Lease, SessionPool, TokenKeyRef};
use crate::keys::KeySigner;
use crate::local::der;
use crate::{BackendError, KeyAlgorithm};

impl TokenKeyRef {
    fn find_private_keys(&self, session: &Session) -> Result<Vec<ObjectHandle>, Failure> {
        session
            .find_objects(&[
                Attribute::Class(ObjectClass::PRIVATE_KEY),
                Attribute::Label(self.key_label.as_bytes().to_vec()),
            ])
            .map_err(|e| classify(e, "finding the private key", BackendError::Key))
    }

    /// Destroys the objects labelled `key_label`; how many.
    fn destroy_labelled(&self, session: &Session) -> Result<usize, Failure> {
        let objects = session
            .find_objects(&[Attribute::Label(self.key_label.as_bytes().to_vec())])
            .map_err(|e| classify(e, "finding the key's objects", BackendError::Key))?;
        for object in &objects {
            session
                .destroy_object(*object)
                .map_err(|e| classify(e, "destroying a key object", BackendError::Key))?;
        }
        Ok(objects.len())
    }

    /// The private key labelled `key_label` and the SPKI DER of its public key.
    pub(super) fn find_key(&self, session: &Session) -> Result<(ObjectHandle, Vec<u8>), Failure> {
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
    pub(super) token: TokenKeyRef,
    spki: Vec<u8>,
    pub(super) pool: SessionPool,
    /// One permit per session of the pool ([`KeySigner::signing_slots`]).
    slots: Arc<tokio::sync::Semaphore>,
    /// Signatures that needed a fresh session or library.
    recoveries: AtomicU64,
    /// Sessions of the pool.
    sessions: usize,
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
            sessions: cfg.sessions,
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

    /// Destroys every object labelled `cfg.key_label` on the token (both halves of a key
    /// pair): a key its holder asked to be rid of. How many objects went (0: none had the
    /// label). Blocking.
    pub fn destroy(cfg: &Pkcs11Config) -> Result<usize, BackendError> {
        let token = TokenKeyRef::new(cfg, cfg.read_pin()?)?;
        token.with_retry(|state| {
            let session = token.open_logged_in(state, true)?;
            let destroyed = token.destroy_labelled(&session);
            let _ = session.close();
            destroyed
        })
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

    /// The pool's sessions, those signing now, and the recoveries so far.
    pub fn session_use(&self) -> crate::SessionUse {
        let idle = self
            .pool
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        crate::SessionUse {
            sessions: self.sessions,
            in_use: self.sessions.saturating_sub(idle),
            recoveries: self.recoveries(),
        }
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

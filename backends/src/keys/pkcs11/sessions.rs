//! The token a key lives on ([`TokenKeyRef`]) and the key's logged-in sessions: opening one on
//! the token (find the slot by its label, log in,
//! find the key again and check it is the key the CA started with), and the pool a signature
//! leases one from, so that no session is ever used by two threads at once.

use std::sync::{Arc, Condvar, Mutex, PoisonError};

use cryptoki::error::{Error as CkError, RvError};
use cryptoki::object::ObjectHandle;
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;

use super::config::{Pin, Pkcs11Config};
use super::module::{classify, Failure, LibraryState, Module};
use crate::{BackendError, KeyAlgorithm};

/// How long a signature waits for a free session before giving up.
const SESSION_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// A logged-in session and the private key handle found in it.
pub(super) struct TokenSession {
    pub(super) session: Session,
    pub(super) generation: u64,
    pub(super) private_key: ObjectHandle,
}

/// A fixed number of session slots; a signature takes one out and puts it back.
pub(super) struct SessionPool {
    /// `None`: a slot whose session was lost, opened again on next use.
    pub(super) idle: Mutex<Vec<Option<TokenSession>>>,
    pub(super) returned: Condvar,
}

/// A session slot taken out of the pool; it goes back when dropped.
pub(super) struct Lease<'a> {
    pool: &'a SessionPool,
    pub(super) slot: Option<TokenSession>,
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
    pub(super) fn take(&self) -> Result<Lease<'_>, BackendError> {
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

/// The token and key a [`super::Pkcs11Key`] refers to, and how to reach them.
pub(super) struct TokenKeyRef {
    pub(super) module: Arc<Module>,
    pub(super) token_label: String,
    pub(super) key_label: String,
    pub(super) pin: Pin,
    pub(super) algorithm: KeyAlgorithm,
}

impl TokenKeyRef {
    pub(super) fn new(cfg: &Pkcs11Config, pin: Pin) -> Result<Self, BackendError> {
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
    pub(super) fn with_retry<T>(
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
    pub(super) fn open_logged_in(
        &self,
        state: &LibraryState,
        read_write: bool,
    ) -> Result<Session, Failure> {
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

    /// A fresh logged-in session with the key found again, checked against `expected_spki`.
    pub(super) fn open_session(
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
}

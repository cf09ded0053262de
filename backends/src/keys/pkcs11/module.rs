//! The PKCS#11 module (the shared library) and its generations: loaded and initialised once
//! per process and shared by every key on it; `C_Finalize` + `C_Initialize` under a write lock,
//! each re-initialisation a new generation that retires every session opened before. Token
//! errors are sorted here ([`classify`]) by what might cure them ([`Failure`]).

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock, RwLockReadGuard};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};

use crate::BackendError;

/// Why a token call failed, and what might cure it.
#[derive(Debug)]
pub(super) enum Failure {
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
    pub(super) fn is_recoverable(&self) -> bool {
        !matches!(self, Failure::Fatal(_))
    }

    /// Recoverable failures that were not cured become `kind("PKCS#11: …")`.
    pub(super) fn into_error(self, kind: fn(String) -> BackendError) -> BackendError {
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
pub(super) fn ckr_name(rv: &RvError) -> String {
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
pub(super) fn classify(e: CkError, what: &str, kind: fn(String) -> BackendError) -> Failure {
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
pub(super) struct LibraryState {
    pub(super) initialized: bool,
    pub(super) generation: u64,
}

/// One loaded PKCS#11 module, shared by every key on it in this process.
pub(super) struct Module {
    pub(super) path: PathBuf,
    pub(super) library: Pkcs11,
    /// Read-held by every call into the library, write-held to finalise and re-initialise it.
    pub(super) state: RwLock<LibraryState>,
}

impl Module {
    /// The module at `path`, loaded and initialised on first use.
    pub(super) fn get(path: &Path) -> Result<Arc<Module>, BackendError> {
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

    pub(super) fn read(&self) -> RwLockReadGuard<'_, LibraryState> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// `C_Finalize` + `C_Initialize`, unless someone already did it since `seen_generation`.
    /// Every session opened before becomes stale.
    pub(super) fn reinitialize(&self, seen_generation: u64) -> Result<(), Failure> {
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

#[cfg(test)]
impl Module {
    /// Fault injection: every session and login of this process dropped (C_Finalize, then
    /// C_Initialize when `initialize_again`) without telling the keys, as an HSM restart or a
    /// C_CloseAllSessions would. The generation stays, so keys find out only when C_Sign fails.
    pub(super) fn drop_everything_behind_the_keys_back(&self, initialize_again: bool) {
        let _state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        let _ = self.library.clone().finalize();
        if initialize_again {
            let _ = self
                .library
                .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK));
        }
    }
}

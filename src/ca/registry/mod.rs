//! The issuer registry: every CA pkid issues, revokes and publishes CRLs and OCSP for, as one
//! live set. Configured backends (`[backends.NAME]`) are opened at start-up and stay; CAs made
//! at run time are rows of the store (`certificate_authorities`: an integer id, a name, a key
//! reference — a software key sealed with the key-encryption key, or the label of a key inside
//! the PKCS#11 token —, a chain, an enabled flag, a parent), opened as issuers once certified.
//!
//! How a change reaches every replica: each change of a stored CA bumps a version row in the
//! same transaction (`store::authorities`). The registry keeps the stored CAs as read at one
//! version ([`View`]); a lookup that finds its view older than [`RECHECK`] reads the version
//! row (one indexed read, at most once a second per process), and a lookup that misses a name
//! reads it at once; a changed version reloads the table, reopening only the CAs whose rows
//! changed. The replica that made a change reloads before it answers ([`Issuers::refresh`]),
//! and signing re-reads the version first, so a CA disabled anywhere signs nothing after its
//! change is committed. Polling rather than PostgreSQL's LISTEN: it works the same on SQLite
//! (where the command line writes too), needs no connection held open per replica nor
//! reconnection logic for a lost listener, and costs one cheap read a second.
//!
//! Files: this one (the set and its freshness), `stored.rs` (one stored CA opened as an issuer,
//! and what it may do).

mod stored;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use pkid_backends::{CaKeys, KeyAlgorithm, KeyCustody};

use super::Ca;
use crate::store::{Store, StoreError};

pub use stored::{SignRefusal, StoredCa};

/// How old the view of stored CAs may get before a lookup reads the version row again.
pub const RECHECK: Duration = Duration::from_secs(1);

/// How stored CAs are opened and made.
#[derive(Debug, Clone)]
pub struct RegistrySettings {
    pub backdate_secs: u64,
    /// Where relying parties find CRLs and OCSP (`BASE/crl/NAME.crl`, `BASE/ocsp`); `None`: no
    /// revocation pointers in what stored CAs issue.
    pub revocation_base: Option<String>,
    /// Who holds the key of a new CA, and its algorithm, when the request does not say.
    pub default_custody: KeyCustody,
    pub default_algorithm: KeyAlgorithm,
}

/// The stored CAs as read at one version of their table, by id.
pub struct View {
    pub version: i64,
    pub cas: Vec<Arc<StoredCa>>,
}

impl View {
    pub fn by_id(&self, id: i64) -> Option<&Arc<StoredCa>> {
        self.cas.iter().find(|c| c.row.id == id)
    }
}

/// Every issuer: configured ones, and stored ones when the registry has a store.
pub struct Issuers {
    configured: Vec<Arc<Ca>>,
    stored: Option<Stored>,
}

struct Stored {
    store: Store,
    keys: Arc<CaKeys>,
    settings: RegistrySettings,
    view: RwLock<Arc<View>>,
    checked_at: Mutex<Instant>,
    /// One reload at a time in this process.
    reload: tokio::sync::Mutex<()>,
}

impl Issuers {
    /// A fixed set: the configured issuers only (tests, commands that change no CA).
    pub fn fixed(configured: Vec<Arc<Ca>>) -> Issuers {
        Issuers {
            configured,
            stored: None,
        }
    }

    /// The configured issuers and the stored CAs, read now.
    pub async fn open(
        store: Store,
        configured: Vec<Arc<Ca>>,
        keys: Arc<CaKeys>,
        settings: RegistrySettings,
    ) -> Result<Issuers, StoreError> {
        let issuers = Issuers {
            configured,
            stored: Some(Stored {
                store,
                keys,
                settings,
                view: RwLock::new(Arc::new(View {
                    version: -1,
                    cas: Vec::new(),
                })),
                checked_at: Mutex::new(Instant::now()),
                reload: tokio::sync::Mutex::new(()),
            }),
        };
        issuers.refresh().await?;
        Ok(issuers)
    }

    pub fn configured(&self) -> &[Arc<Ca>] {
        &self.configured
    }

    /// Whether CAs can be made at run time here (a registry over a store).
    pub fn stores_cas(&self) -> bool {
        self.stored.is_some()
    }

    /// Key custody of new CAs (`None`: this registry stores no CA).
    pub fn keys(&self) -> Option<&Arc<CaKeys>> {
        self.stored.as_ref().map(|s| &s.keys)
    }

    pub fn settings(&self) -> Option<&RegistrySettings> {
        self.stored.as_ref().map(|s| &s.settings)
    }

    /// The stored CAs, read again if the view is older than [`RECHECK`] and the table changed
    /// since. A failed check keeps the view it has (logged).
    pub async fn view(&self) -> Arc<View> {
        let Some(stored) = &self.stored else {
            return Arc::new(View {
                version: 0,
                cas: Vec::new(),
            });
        };
        let due = stored
            .checked_at
            .lock()
            .map(|at| at.elapsed() >= RECHECK)
            .unwrap_or(true);
        if due {
            if let Err(e) = self.refresh().await {
                tracing::warn!(error = %e, "checking the stored CAs failed; keeping the last view");
            }
        }
        stored.current()
    }

    /// Read the version row now and reload the stored CAs if it changed: what a writer calls
    /// after a change, and what signing calls first.
    pub async fn refresh(&self) -> Result<Arc<View>, StoreError> {
        let Some(stored) = &self.stored else {
            return Ok(Arc::new(View {
                version: 0,
                cas: Vec::new(),
            }));
        };
        let version = stored.store.certificate_authorities_version().await?;
        if version == stored.current().version {
            stored.checked(Instant::now());
            return Ok(stored.current());
        }
        let _one = stored.reload.lock().await;
        let started = Instant::now();
        let current = stored.current();
        let (version, rows) = stored.store.certificate_authorities().await?;
        if version == current.version {
            stored.checked(started);
            return Ok(current);
        }
        let mut kept: HashMap<i64, Arc<StoredCa>> =
            current.cas.iter().map(|c| (c.row.id, c.clone())).collect();
        let mut cas = Vec::with_capacity(rows.len());
        for row in rows {
            if self.configured.iter().any(|c| c.name == row.name) {
                tracing::error!(name = %row.name, id = row.id, "a stored CA has the name of a configured backend; it is left out");
                continue;
            }
            match kept.remove(&row.id) {
                Some(same) if same.row == row => cas.push(same),
                _ => cas.push(Arc::new(stored.open(row).await)),
            }
        }
        let view = Arc::new(View { version, cas });
        if let Ok(mut slot) = stored.view.write() {
            *slot = view.clone();
        }
        stored.checked(started);
        tracing::debug!(version, "stored CAs read");
        Ok(view)
    }

    /// Every issuer that can issue or publish: the configured ones, then each stored CA that has
    /// a certificate and an openable key.
    pub async fn all(&self) -> Vec<Arc<Ca>> {
        let view = self.view().await;
        self.configured
            .iter()
            .cloned()
            .chain(view.cas.iter().filter_map(|c| c.issuer().cloned()))
            .collect()
    }

    /// The issuer named `name`. A name not in the view is looked for again after reading the
    /// version row (another replica may have just made it).
    pub async fn get(&self, name: &str) -> Option<Arc<Ca>> {
        if let Some(ca) = self.configured.iter().find(|c| c.name == name) {
            return Some(ca.clone());
        }
        let find = |view: &View| {
            view.cas
                .iter()
                .find(|c| c.row.name == name)
                .and_then(|c| c.issuer().cloned())
        };
        if let Some(ca) = find(&*self.view().await) {
            return Some(ca);
        }
        match self.refresh().await {
            Ok(view) => find(&view),
            Err(e) => {
                tracing::warn!(error = %e, "checking the stored CAs failed");
                None
            }
        }
    }
}

impl Stored {
    fn current(&self) -> Arc<View> {
        self.view
            .read()
            .map(|v| v.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    fn checked(&self, at: Instant) {
        let mut checked = self
            .checked_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if at > *checked {
            *checked = at;
        }
    }

    async fn open(&self, row: crate::store::CaRow) -> StoredCa {
        let keys = self.keys.clone();
        let store = self.store.clone();
        let settings = self.settings.clone();
        let kept = row.clone();
        match tokio::task::spawn_blocking(move || StoredCa::open(row, &keys, store, &settings))
            .await
        {
            Ok(opened) => opened,
            Err(e) => {
                tracing::error!(name = %kept.name, error = %e, "opening a stored CA did not finish");
                StoredCa::unopened(kept, format!("opening did not finish: {e}"))
            }
        }
    }
}

//! CRLs (RFC 5280 §5): an issuer's scopes (complete, shards with their issuingDistributionPoint
//! §5.2.5, delta §5.2.4), signing one through the issuer's backend, the lease that lets one
//! replica at a time generate an issuer's CRLs, the CRL served last kept in memory, and the
//! refresh task.

use std::sync::Arc;
use std::time::Duration;

use pkid_backends::{CrlRequest, RevocationReason, RevokedEntry, Serial};

use super::{odt, reason_of, IssuerState, Revocation, RevocationError, CRL_LEASE_SECS};
use crate::store::{now, CrlRow, FULL_CRL};

/// Which CRL of an issuer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrlScope {
    /// The complete CRL, `/crl/NAME.crl`.
    Full,
    /// One shard, `/crl/NAME/SHARD.crl`.
    Shard(i64),
    /// The delta CRL over the newest complete CRL (RFC 5280 §5.2.4), `/crl/NAME/delta.crl`.
    Delta,
}

/// `crls.shard` of a stored delta CRL.
const DELTA_CRL: i64 = -2;

impl CrlScope {
    /// The `crls.shard` it is stored under.
    fn key(self) -> i64 {
        match self {
            CrlScope::Full => FULL_CRL,
            CrlScope::Shard(k) => k,
            CrlScope::Delta => DELTA_CRL,
        }
    }
}

/// How long a request waits for another replica's CRL before serving the stored one.
const CRL_WAIT: Duration = Duration::from_secs(10);

impl Revocation {
    /// The CRL shards an issuer publishes: the configured ones, and any shard an unexpired
    /// certificate still points to (after `crl_shards` was lowered).
    pub async fn crl_shards(&self, issuer: &str) -> Result<i64, RevocationError> {
        let state = self.issuer(issuer).await?;
        if state.ca.crl_url(Some(0)).is_none() {
            return Ok(0);
        }
        let configured = i64::from(state.ca.crl_shards()).max(1);
        let in_use = self.store.crl_shards_in_use(issuer, now()).await?;
        Ok(if configured > 1 || in_use > 0 {
            configured.max(in_use)
        } else {
            0
        })
    }

    /// Every CRL scope of an issuer: its complete CRL, its delta CRL, then each shard.
    async fn scopes(&self, issuer: &str) -> Result<Vec<CrlScope>, RevocationError> {
        let shards = self.crl_shards(issuer).await?;
        let delta = self.delta_crls && self.issuer(issuer).await?.ca.delta_crl_url().is_some();
        Ok(std::iter::once(CrlScope::Full)
            .chain(delta.then_some(CrlScope::Delta))
            .chain((0..shards).map(CrlScope::Shard))
            .collect())
    }

    /// Sign a fresh complete CRL for `issuer` now and store it (`pkid crl generate`).
    pub async fn generate_crl(&self, issuer: &str) -> Result<Arc<CrlRow>, RevocationError> {
        self.generate_scope_now(issuer, CrlScope::Full).await
    }

    /// Sign a fresh CRL of one scope now, under the issuer's lease.
    pub async fn generate_scope_now(
        &self,
        issuer: &str,
        scope: CrlScope,
    ) -> Result<Arc<CrlRow>, RevocationError> {
        self.check_scope(issuer, scope).await?;
        self.with_crl_lease(issuer, scope, true).await
    }

    async fn check_scope(&self, issuer: &str, scope: CrlScope) -> Result<(), RevocationError> {
        match scope {
            CrlScope::Full => Ok(()),
            CrlScope::Shard(k) if k >= 0 && k < self.crl_shards(issuer).await? => Ok(()),
            CrlScope::Shard(k) => Err(RevocationError::UnknownShard(issuer.to_string(), k)),
            CrlScope::Delta if self.delta_crls => Ok(()),
            CrlScope::Delta => Err(RevocationError::NoDeltaCrls(issuer.to_string())),
        }
    }

    /// Sign and store the CRL of `issuer`'s `scope` as of `at`. A delta CRL lists what was
    /// revoked since its base (the newest complete CRL, signed first if there is none).
    pub(super) async fn sign_scope(
        &self,
        state: &IssuerState,
        scope: CrlScope,
        at: i64,
    ) -> Result<Arc<CrlRow>, RevocationError> {
        let issuer = state.ca.name.as_str();
        let mut delta_crl_indicator = None;
        let rows = match scope {
            CrlScope::Full => self.store.revoked_unexpired(issuer, at, None).await?,
            CrlScope::Shard(k) => self.store.revoked_unexpired(issuer, at, Some(k)).await?,
            CrlScope::Delta => {
                let base = match self.store.latest_crl_meta(issuer, FULL_CRL).await? {
                    Some(base) => base,
                    None => Box::pin(self.sign_scope(state, CrlScope::Full, at))
                        .await?
                        .meta(),
                };
                delta_crl_indicator = Some(u64::try_from(base.number).unwrap_or_default());
                let mut rows = self.store.revoked_unexpired(issuer, at, None).await?;
                rows.retain(|r| r.revoked_at >= base.generated_at);
                rows
            }
        };
        let entries = rows
            .into_iter()
            .filter_map(|r| {
                Some(RevokedEntry {
                    serial: Serial::from_hex(&r.serial).ok()?,
                    revoked_at: odt(r.revoked_at),
                    reason: reason_of(r.reason).filter(|r| *r != RevocationReason::Unspecified),
                    invalidity_date: r.invalidity_date.map(odt),
                })
            })
            .collect();
        let previous = self.store.latest_crl_meta(issuer, scope.key()).await?;
        // CRL numbers increase within a scope (§5.2.3), and complete and delta CRLs share one
        // sequence: microseconds, past the stored one.
        let micros = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000;
        let mut number = i64::try_from(micros).unwrap_or(i64::MAX);
        if let Some(previous) = &previous {
            number = number.max(previous.number.saturating_add(1));
        }
        let this_update = at - 60;
        let next_update = at + self.settings.crl_lifetime_secs;
        let issuing_distribution_point = match scope {
            CrlScope::Shard(k) => Some(
                state
                    .ca
                    .crl_url(Some(k))
                    .ok_or_else(|| RevocationError::UnknownShard(issuer.to_string(), k))?,
            ),
            _ => None,
        };
        let freshest_crl = match scope {
            CrlScope::Full if self.delta_crls => state.ca.delta_crl_url(),
            _ => None,
        };
        let der = state
            .ca
            .backend
            .sign_crl(CrlRequest {
                crl_number: u64::try_from(number).unwrap_or_default(),
                this_update: odt(this_update),
                next_update: odt(next_update),
                entries,
                issuing_distribution_point,
                delta_crl_indicator,
                freshest_crl,
            })
            .await?;
        let row = CrlRow {
            issuer: issuer.to_string(),
            shard: scope.key(),
            number,
            generated_at: at,
            this_update,
            next_update,
            der,
        };
        self.store.insert_crl(&row).await?;
        self.store.prune_crls(issuer, scope.key(), 5).await?;
        tracing::info!(issuer, scope = ?scope, number, "CRL generated");
        let row = Arc::new(row);
        if let Ok(mut served) = self.served_crls.lock() {
            served.insert((issuer.to_string(), scope.key()), row.clone());
        }
        Ok(row)
    }

    /// The stored CRL `number` of a scope: from memory when it is the one served last, else
    /// read once from the database (every replica serves the stored bytes).
    async fn load_crl(
        &self,
        issuer: &str,
        scope: CrlScope,
        number: i64,
    ) -> Result<Option<Arc<CrlRow>>, RevocationError> {
        let key = (issuer.to_string(), scope.key());
        if let Ok(served) = self.served_crls.lock() {
            if let Some(crl) = served.get(&key).filter(|c| c.number == number) {
                return Ok(Some(crl.clone()));
            }
        }
        let Some(row) = self
            .store
            .crl_by_number(issuer, scope.key(), number)
            .await?
        else {
            return Ok(None);
        };
        let row = Arc::new(row);
        if let Ok(mut served) = self.served_crls.lock() {
            served.insert(key, row.clone());
        }
        Ok(Some(row))
    }

    /// The stored CRL of a scope if it is current: short of two thirds of its life, and newer
    /// than every revocation in its scope — except a complete CRL that has delta CRLs, which
    /// carry the revocations in between. A delta CRL must also be newer than its base.
    pub(super) async fn fresh_stored(
        &self,
        issuer: &str,
        scope: CrlScope,
        at: i64,
    ) -> Result<Option<Arc<CrlRow>>, RevocationError> {
        let Some(crl) = self.store.latest_crl_meta(issuer, scope.key()).await? else {
            return Ok(None);
        };
        let refresh_margin = self.settings.crl_lifetime_secs / 3;
        if crl.next_update - refresh_margin <= at {
            return Ok(None);
        }
        let current = match scope {
            CrlScope::Full if self.delta_crls => true,
            CrlScope::Full => crl.generated_at > self.store.last_revocation(issuer, None).await?,
            CrlScope::Shard(k) => {
                crl.generated_at > self.store.last_revocation(issuer, Some(k)).await?
            }
            CrlScope::Delta => {
                let base = self.store.latest_crl_meta(issuer, FULL_CRL).await?;
                base.is_some_and(|b| crl.generated_at >= b.generated_at && crl.number > b.number)
                    && crl.generated_at > self.store.last_revocation(issuer, None).await?
            }
        };
        if !current {
            return Ok(None);
        }
        self.load_crl(issuer, scope, crl.number).await
    }

    /// Generate a scope's CRL while holding the issuer's lease (this process's mutex, then the
    /// database lease shared by replicas). `force`: sign even if the stored one is current.
    /// While another replica holds the lease, waits (bounded) for its CRL; then serves the
    /// newest stored CRL that has not passed its nextUpdate.
    async fn with_crl_lease(
        &self,
        issuer: &str,
        scope: CrlScope,
        force: bool,
    ) -> Result<Arc<CrlRow>, RevocationError> {
        let state = self.issuer(issuer).await?;
        let state = state.as_ref();
        let _local = state.crl_lock.lock().await;
        let deadline = tokio::time::Instant::now() + CRL_WAIT;
        loop {
            let at = now();
            if !force {
                if let Some(crl) = self.fresh_stored(issuer, scope, at).await? {
                    return Ok(crl);
                }
            }
            if let Some(result) = self.sign_if_lease_free(state, scope, force, at).await {
                return result;
            }
            if tokio::time::Instant::now() >= deadline {
                let stored = match self.store.latest_crl_meta(issuer, scope.key()).await? {
                    Some(meta) if meta.next_update > now() => {
                        self.load_crl(issuer, scope, meta.number).await?
                    }
                    _ => None,
                };
                return stored.ok_or_else(|| RevocationError::Busy(issuer.to_string()));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Take the issuer's database lease and, under it, sign the scope's CRL unless (`force`
    /// aside) a fresh one is stored by now: another replica may have signed and released
    /// between the caller's check and this lease. `None` while another replica holds it.
    pub(super) async fn sign_if_lease_free(
        &self,
        state: &IssuerState,
        scope: CrlScope,
        force: bool,
        at: i64,
    ) -> Option<Result<Arc<CrlRow>, RevocationError>> {
        let issuer = state.ca.name.as_str();
        let lease = format!("crl:{issuer}");
        match self
            .store
            .try_lease(&lease, &self.holder, at, at + CRL_LEASE_SECS)
            .await
        {
            Ok(true) => {}
            Ok(false) => return None,
            Err(e) => return Some(Err(e.into())),
        }
        let result = async {
            if !force {
                if let Some(crl) = self.fresh_stored(issuer, scope, at).await? {
                    return Ok(crl);
                }
            }
            self.sign_scope(state, scope, at).await
        }
        .await;
        if let Err(e) = self.store.release_lease(&lease, &self.holder).await {
            tracing::warn!(issuer, error = %e, "releasing the CRL lease failed");
        }
        Some(result)
    }

    /// The issuer's current complete CRL: the stored one while it is fresh, else a new one.
    /// This is the CRL lookup for every surface (the `/crl/NAME.crl` route, and the Notary
    /// `/api/v1/certificate_authorities/{id}/crl` JSON form when that surface is built).
    pub async fn current_crl(&self, issuer: &str) -> Result<Arc<CrlRow>, RevocationError> {
        self.current_crl_scope(issuer, CrlScope::Full).await
    }

    /// The current CRL of one scope: complete, a shard, or the delta CRL.
    pub async fn current_crl_scope(
        &self,
        issuer: &str,
        scope: CrlScope,
    ) -> Result<Arc<CrlRow>, RevocationError> {
        self.issuer(issuer).await?;
        self.check_scope(issuer, scope).await?;
        if let Some(crl) = self.fresh_stored(issuer, scope, now()).await? {
            return Ok(crl);
        }
        self.with_crl_lease(issuer, scope, false).await
    }

    /// Refresh every CRL of every issuer that needs it (scheduled, and after revocations).
    pub async fn refresh_all(&self) {
        for name in self.issuer_names().await {
            self.refresh_issuer(&name).await;
        }
    }

    /// Refresh every CRL scope of one issuer that needs it.
    pub async fn refresh_issuer(&self, issuer: &str) {
        let scopes = match self.scopes(issuer).await {
            Ok(scopes) => scopes,
            Err(e) => {
                tracing::warn!(issuer, error = %e, "listing CRL shards failed");
                return;
            }
        };
        for scope in scopes {
            if let Err(e) = self.current_crl_scope(issuer, scope).await {
                tracing::warn!(issuer, scope = ?scope, error = %e, "CRL refresh failed");
            }
        }
    }

    /// The refresh task: CRLs at a third of their life and shortly after revocations
    /// (debounced: a burst of revocations yields one new CRL per scope), cached OCSP responses
    /// ahead of their half-life, delegated responders at two thirds of theirs.
    pub async fn run_refresh(self: Arc<Self>) {
        let crl_period = (self.settings.crl_lifetime_secs / 3).clamp(10, 3600);
        let ocsp_period = (self.settings.ocsp_lifetime_secs / 4).clamp(5, 3600);
        let period = Duration::from_secs(u64::try_from(crl_period.min(ocsp_period)).unwrap_or(60));
        let mut tick = tokio::time::interval(period);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.revoked.notified() => tokio::time::sleep(Duration::from_secs(2)).await,
            }
            self.refresh_all().await;
            let at = now();
            for state in self.issuer_states().await {
                if state.delegated.is_some() {
                    if let Err(e) = self.responder(&state, at).await {
                        tracing::warn!(issuer = %state.ca.name, error = %e, "renewing the OCSP responder failed");
                    }
                }
            }
            self.refresh_ocsp_cache(at + i64::try_from(period.as_secs()).unwrap_or(60))
                .await;
        }
    }
}

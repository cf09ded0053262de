//! Accounts kept in memory by the embedded SQLite store.
//!
//! Every ACME request after newAccount names its account (`kid`), so every request would read
//! the same row. With the embedded SQLite file this process is the database's only writer (as
//! the in-memory nonce ledger also assumes), so a copy in memory is exact as long as each
//! change of an account drops the copy once it is committed. Replicas sharing PostgreSQL read
//! the row every time: another replica may have changed it.
//!
//! A read that raced with a change must not put back the row it read before the change: each
//! change bumps a generation, and a row read under an older generation is not kept.

use std::sync::{Mutex, MutexGuard, PoisonError};

use super::bounded::Bounded;
use crate::store::AccountRow;

/// Accounts kept; past it, one kept account makes room for the next.
const CAPACITY: usize = 16_384;

pub struct AccountCache {
    inner: Mutex<Inner>,
}

struct Inner {
    generation: u64,
    rows: Bounded<AccountRow>,
}

impl Default for AccountCache {
    fn default() -> AccountCache {
        AccountCache {
            inner: Mutex::new(Inner {
                generation: 0,
                rows: Bounded::new(CAPACITY),
            }),
        }
    }
}

impl AccountCache {
    pub fn get(&self, id: &str) -> Option<AccountRow> {
        self.lock().rows.get(id).cloned()
    }

    /// Taken before reading a row from the database, handed to [`AccountCache::keep`] after.
    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Keeps `row`, read under `generation`, unless an account changed since.
    pub fn keep(&self, row: &AccountRow, generation: u64) {
        let mut inner = self.lock();
        if inner.generation != generation {
            return;
        }
        inner.rows.insert(row.id.clone(), row.clone());
    }

    /// Drops account `id`: it changed, or may have.
    pub fn forget(&self, id: &str) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.rows.remove(id);
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every change is one call that cannot panic halfway.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::store::AccountStatus;

    fn row(id: &str, status: AccountStatus) -> AccountRow {
        AccountRow {
            id: id.into(),
            directory: "default".into(),
            thumbprint: format!("t-{id}"),
            jwk: "{}".into(),
            status,
            contact: "[]".into(),
            eab_kid: None,
            created_at: 0,
        }
    }

    #[test]
    fn a_row_read_before_a_change_is_not_kept_after_it() {
        let cache = AccountCache::default();
        let generation = cache.generation();
        // The read saw the old row; the change committed and dropped the copy meanwhile.
        cache.forget("a");
        cache.keep(&row("a", AccountStatus::Valid), generation);
        assert!(cache.get("a").is_none());

        let generation = cache.generation();
        cache.keep(&row("a", AccountStatus::Deactivated), generation);
        assert_eq!(cache.get("a").unwrap().status, AccountStatus::Deactivated);
        cache.forget("a");
        assert!(cache.get("a").is_none());
    }

    #[test]
    fn the_cache_stays_bounded() {
        let cache = AccountCache::default();
        for i in 0..CAPACITY + 10 {
            let generation = cache.generation();
            cache.keep(&row(&i.to_string(), AccountStatus::Valid), generation);
        }
        assert_eq!(cache.lock().rows.len(), CAPACITY);
    }
}

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

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::AccountRow;

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

/// A map of at most `capacity` entries that, when full, drops the entry put in longest ago to
/// make room for a new one: what is kept is what is about to be read (an order's next step, a
/// certificate's download), and a dropped entry is read from the file again.
///
/// The first version dropped "any" entry, the first in the hash table's order. Each drop
/// emptied the front of the table, where a new key lands about as often as its share of the
/// table, so under load a third of new certificates were dropped before their download.
pub(super) struct Bounded<V> {
    capacity: usize,
    next: u64,
    rows: HashMap<String, (u64, V)>,
    /// Insertion number → key, oldest first.
    age: BTreeMap<u64, String>,
}

impl<V> Bounded<V> {
    pub(super) fn new(capacity: usize) -> Bounded<V> {
        Bounded {
            capacity: capacity.max(1),
            next: 0,
            rows: HashMap::new(),
            age: BTreeMap::new(),
        }
    }

    pub(super) fn get(&self, key: &str) -> Option<&V> {
        self.rows.get(key).map(|(_, v)| v)
    }

    pub(super) fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        self.rows.get_mut(key).map(|(_, v)| v)
    }

    /// Puts `value` under `key` as the newest entry; returns the entry dropped to make room.
    pub(super) fn insert(&mut self, key: String, value: V) -> Option<(String, V)> {
        let evicted = match self.remove(&key) {
            Some(_) => None,
            None if self.rows.len() >= self.capacity => self
                .age
                .first_key_value()
                .map(|(_, oldest)| oldest.clone())
                .and_then(|oldest| self.remove(&oldest).map(|v| (oldest, v))),
            None => None,
        };
        self.next += 1;
        self.age.insert(self.next, key.clone());
        self.rows.insert(key, (self.next, value));
        evicted
    }

    pub(super) fn remove(&mut self, key: &str) -> Option<V> {
        let (number, value) = self.rows.remove(key)?;
        self.age.remove(&number);
        Some(value)
    }

    pub(super) fn clear(&mut self) {
        self.rows.clear();
        self.age.clear();
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.rows.len()
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &V> {
        self.rows.values().map(|(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn row(id: &str, status: &str) -> AccountRow {
        AccountRow {
            id: id.into(),
            thumbprint: format!("t-{id}"),
            jwk: "{}".into(),
            status: status.into(),
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
        cache.keep(&row("a", "valid"), generation);
        assert!(cache.get("a").is_none());

        let generation = cache.generation();
        cache.keep(&row("a", "deactivated"), generation);
        assert_eq!(cache.get("a").unwrap().status, "deactivated");
        cache.forget("a");
        assert!(cache.get("a").is_none());
    }

    #[test]
    fn a_full_map_drops_its_oldest_entry() {
        let mut map = Bounded::new(3);
        for key in ["a", "b", "c"] {
            assert!(map.insert(key.into(), key.to_uppercase()).is_none());
        }
        // Put again, `a` is the newest: `b` makes room for `d`, then `c` for `e`.
        assert!(map.insert("a".into(), "A2".into()).is_none());
        assert_eq!(
            map.insert("d".into(), "D".into()),
            Some(("b".into(), "B".into()))
        );
        assert_eq!(
            map.insert("e".into(), "E".into()),
            Some(("c".into(), "C".into()))
        );
        assert_eq!(map.get("a").map(String::as_str), Some("A2"));
        // A removed entry leaves room without dropping another.
        assert_eq!(map.remove("d").as_deref(), Some("D"));
        assert!(map.insert("f".into(), "F".into()).is_none());
        assert_eq!(map.len(), 3);
        assert_eq!(map.age.len(), 3);
    }

    /// What the first version got wrong: with the map full and entries coming and going, a new
    /// entry stays until `capacity` newer ones have come.
    #[test]
    fn a_new_entry_outlives_the_next_ones() {
        let mut map = Bounded::new(1024);
        for i in 0..20_000u32 {
            map.insert(i.to_string(), i);
            if i >= 8 {
                assert!(
                    map.get(&(i - 8).to_string()).is_some(),
                    "{} was dropped",
                    i - 8
                );
            }
        }
    }

    #[test]
    fn the_cache_stays_bounded() {
        let cache = AccountCache::default();
        for i in 0..CAPACITY + 10 {
            let generation = cache.generation();
            cache.keep(&row(&i.to_string(), "valid"), generation);
        }
        assert_eq!(cache.lock().rows.len(), CAPACITY);
    }
}

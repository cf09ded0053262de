//! A bounded map for the fast paths' rows: full, it drops its oldest entry.

use std::collections::{BTreeMap, HashMap};

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
}

//! Slowing down password and client-secret guessing (`/login`, `/token`): failed attempts are
//! counted per name (a username, an e-mail, a client id: what was typed, lower-cased) and per
//! peer address (IPv6 by its /64, what one host usually holds). Past a threshold within a
//! window, further attempts on that name or from that address are refused before any password
//! is checked, until the window ends (429 with `Retry-After`). A success clears its name's
//! count, never its address's.
//!
//! Memory is bounded: at most `max_tracked` names and as many addresses are remembered; when
//! full, windows that have ended are forgotten first, then the oldest. Counts live in this
//! process: replicas behind a load balancer each throttle on their own, so a guesser spread
//! over N replicas gets N times the attempts.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The thresholds (`[identity]` in the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleSettings {
    /// Failures on one name within the window before it is throttled.
    pub failures_per_name: u32,
    /// Failures from one address within the window before it is throttled.
    pub failures_per_address: u32,
    /// How long a window lasts from its first failure.
    pub window: Duration,
    /// Names (and addresses) remembered at most.
    pub max_tracked: usize,
}

/// Refused for now: try again after this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    pub retry_after: Duration,
}

impl Throttled {
    /// Whole seconds for `Retry-After`, at least 1.
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after.as_secs_f64().ceil().max(1.0) as u64
    }
}

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
}

/// Failure counts of one kind of key, bounded.
#[derive(Debug)]
struct Counts<K> {
    windows: HashMap<K, Window>,
}

impl<K> Default for Counts<K> {
    fn default() -> Self {
        Counts {
            windows: HashMap::new(),
        }
    }
}

impl<K: std::hash::Hash + Eq + Clone> Counts<K> {
    /// When `key` may try again, if it may not now.
    fn blocked(&self, key: &K, threshold: u32, window: Duration, now: Instant) -> Option<Duration> {
        let w = self.windows.get(key)?;
        let ends = w.started + window;
        (w.failures >= threshold && ends > now).then(|| ends - now)
    }

    fn fail(&mut self, key: &K, window: Duration, max: usize, now: Instant) {
        if let Some(w) = self.windows.get_mut(key) {
            if w.started + window > now {
                w.failures = w.failures.saturating_add(1);
                return;
            }
            *w = Window {
                started: now,
                failures: 1,
            };
            return;
        }
        if self.windows.len() >= max {
            self.windows.retain(|_, w| w.started + window > now);
        }
        if self.windows.len() >= max {
            let oldest = self
                .windows
                .iter()
                .min_by_key(|(_, w)| w.started)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                self.windows.remove(&oldest);
            }
        }
        self.windows.insert(
            key.clone(),
            Window {
                started: now,
                failures: 1,
            },
        );
    }
}

/// The throttle of one process.
#[derive(Debug)]
pub struct Throttle {
    settings: ThrottleSettings,
    names: Mutex<Counts<String>>,
    addresses: Mutex<Counts<IpAddr>>,
}

/// Longest name kept as a key: a longer one is cut (names are short; this bounds memory).
const MAX_NAME_BYTES: usize = 256;

fn name_key(name: &str) -> String {
    let mut end = name.len().min(MAX_NAME_BYTES);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].to_lowercase()
}

/// IPv4 as is; IPv6 by its /64 (an IPv4-mapped address as its IPv4).
fn address_key(address: IpAddr) -> IpAddr {
    crate::pki::ip::host_key(address)
}

impl Throttle {
    pub fn new(settings: ThrottleSettings) -> Throttle {
        Throttle {
            settings,
            names: Mutex::new(Counts::default()),
            addresses: Mutex::new(Counts::default()),
        }
    }

    /// Whether an attempt on `name` from `address` may be made now.
    pub fn check(&self, name: &str, address: IpAddr) -> Result<(), Throttled> {
        self.check_at(name, address, Instant::now())
    }

    fn check_at(&self, name: &str, address: IpAddr, now: Instant) -> Result<(), Throttled> {
        let s = &self.settings;
        let by_name =
            lock(&self.names).blocked(&name_key(name), s.failures_per_name, s.window, now);
        let by_address = lock(&self.addresses).blocked(
            &address_key(address),
            s.failures_per_address,
            s.window,
            now,
        );
        match by_name.max(by_address) {
            Some(retry_after) => Err(Throttled { retry_after }),
            None => Ok(()),
        }
    }

    /// A failed attempt on `name` from `address`.
    pub fn failed(&self, name: &str, address: IpAddr) {
        self.failed_at(name, address, Instant::now());
    }

    fn failed_at(&self, name: &str, address: IpAddr, now: Instant) {
        let s = &self.settings;
        lock(&self.names).fail(&name_key(name), s.window, s.max_tracked, now);
        lock(&self.addresses).fail(&address_key(address), s.window, s.max_tracked, now);
    }

    /// A successful attempt: `name`'s count is cleared (its address's is kept).
    pub fn succeeded(&self, name: &str) {
        lock(&self.names).windows.remove(&name_key(name));
    }
}

/// The counts stay usable if a thread panicked holding them.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn throttle(max_tracked: usize) -> Throttle {
        Throttle::new(ThrottleSettings {
            failures_per_name: 3,
            failures_per_address: 5,
            window: Duration::from_secs(60),
            max_tracked,
        })
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

    #[test]
    fn a_name_is_throttled_past_its_threshold_and_not_another_from_elsewhere() {
        let t = throttle(100);
        let now = Instant::now();
        for _ in 0..3 {
            assert_eq!(t.check_at("Alice", A, now), Ok(()));
            t.failed_at("alice", A, now);
        }
        let refused = t.check_at("ALICE", B, now).unwrap_err();
        assert_eq!(refused.retry_after_secs(), 60);
        assert_eq!(t.check_at("bob", B, now), Ok(()));
        // The window ends: alice may try again.
        assert_eq!(
            t.check_at("alice", A, now + Duration::from_secs(61)),
            Ok(())
        );
    }

    #[test]
    fn an_address_is_throttled_across_names_and_a_success_keeps_its_count() {
        let t = throttle(100);
        let now = Instant::now();
        for i in 0..5 {
            t.failed_at(&format!("user{i}"), A, now);
            t.succeeded(&format!("user{i}"));
        }
        assert!(t.check_at("someone", A, now).is_err());
        assert_eq!(t.check_at("someone", B, now), Ok(()));
    }

    #[test]
    fn ipv6_addresses_count_by_their_64() {
        let one: IpAddr = "2001:db8:1:2::1".parse().unwrap_or(A);
        let other: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap_or(A);
        assert_eq!(address_key(one), address_key(other));
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap_or(B);
        assert_eq!(address_key(mapped), A);
    }

    #[test]
    fn memory_stays_bounded() {
        let t = throttle(10);
        let now = Instant::now();
        for i in 0..1000u32 {
            t.failed_at(
                &format!("name{i}"),
                IpAddr::V4(std::net::Ipv4Addr::from(i)),
                now + Duration::from_millis(u64::from(i)),
            );
        }
        assert!(lock(&t.names).windows.len() <= 10);
        assert!(lock(&t.addresses).windows.len() <= 10);
        // The newest are kept.
        assert!(lock(&t.names).windows.contains_key("name999"));
    }
}

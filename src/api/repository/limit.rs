//! A limit on OCSP requests per client (an IPv4 address, or an IPv6 /64): a fixed window of one
//! minute per client, counted in this process. Past the limit a request is answered HTTP 429
//! with `Retry-After` and, as its body, the unsigned OCSP `tryLater` status (RFC 6960 §2.3):
//! HTTP caches and load balancers see a 429 they never cache and that names when to come back,
//! and an OCSP client that reads the body whatever the status finds the answer its protocol
//! defines. Nothing is looked up or signed for a refused request.
//!
//! Memory is bounded: at most `MAX_TRACKED` clients are remembered; when full, ended windows
//! are forgotten, and if every window is still running, all are (a flood of addresses then
//! starts again from zero rather than growing the table). Behind a CDN or a proxy every
//! request comes from its addresses: give it a limit that fits, or 0 (none).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Clients remembered at most.
const MAX_TRACKED: usize = 65_536;
const WINDOW: Duration = Duration::from_secs(60);

pub struct RateLimit {
    per_minute: u32,
    windows: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl RateLimit {
    /// At most `per_minute` requests per client and minute; 0: no limit.
    pub fn per_minute(per_minute: u32) -> RateLimit {
        RateLimit {
            per_minute,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// `Ok` if `peer` may send one more request now; else how long until it may.
    pub fn check(&self, peer: IpAddr) -> Result<(), Duration> {
        self.check_at(peer, Instant::now())
    }

    fn check_at(&self, peer: IpAddr, now: Instant) -> Result<(), Duration> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let key = crate::pki::ip::host_key(peer);
        let Ok(mut windows) = self.windows.lock() else {
            return Ok(());
        };
        if !windows.contains_key(&key) && windows.len() >= MAX_TRACKED {
            windows.retain(|_, (started, _)| *started + WINDOW > now);
            if windows.len() >= MAX_TRACKED {
                windows.clear();
            }
        }
        let (started, count) = windows.entry(key).or_insert((now, 0));
        if *started + WINDOW <= now {
            (*started, *count) = (now, 0);
        }
        if *count >= self.per_minute {
            return Err(*started + WINDOW - now);
        }
        *count += 1;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_client_past_its_limit_waits_for_its_window_and_others_do_not() {
        let limit = RateLimit::per_minute(3);
        let now = Instant::now();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "2001:db8::1".parse().unwrap();
        let b_neighbour: IpAddr = "2001:db8::ffff".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(limit.check_at(a, now), Ok(()));
        }
        let wait = limit
            .check_at(a, now + Duration::from_secs(10))
            .unwrap_err();
        assert_eq!(wait, Duration::from_secs(50));
        // IPv4-mapped is the same client.
        assert!(limit
            .check_at("::ffff:192.0.2.1".parse().unwrap(), now)
            .is_err());
        for _ in 0..3 {
            assert_eq!(limit.check_at(b, now), Ok(()));
        }
        assert!(limit.check_at(b_neighbour, now).is_err(), "one /64");
        assert_eq!(limit.check_at(a, now + WINDOW), Ok(()), "a new window");
        assert_eq!(RateLimit::per_minute(0).check_at(a, now), Ok(()));
    }

    #[test]
    fn memory_stays_bounded() {
        let limit = RateLimit::per_minute(1);
        let now = Instant::now();
        for i in 0..(MAX_TRACKED as u32 + 10) {
            let _ = limit.check_at(IpAddr::from(i.to_be_bytes()), now);
        }
        assert!(limit.windows.lock().unwrap().len() <= MAX_TRACKED);
    }
}

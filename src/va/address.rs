//! Where the validator may connect and be redirected (Boulder's VA rules as the floor): the
//! validator fetches what a client points it at, so without limits it is a tool for reaching
//! what only pkid can reach (a cloud metadata service, an admin port, pkid itself).
//!
//! - Every address a name resolves to, and every IP identifier, is checked before any connection:
//!   link-local (169.254.0.0/16 with the metadata address 169.254.169.254, fe80::/10),
//!   unspecified and "this network" (0.0.0.0/8, ::), multicast and broadcast are always refused,
//!   as are pkid's own listeners; `acme.validation.denied_ranges` refuses more (private and
//!   loopback ranges are allowed by default: a private CA validates internal names). Addresses
//!   are compared in canonical form (`::ffff:a.b.c.d` and NAT64 are IPv4).
//! - http-01 follows at most 10 redirects, each to `http` on the http-01 port or `https` on 443,
//!   to a name the identifier policy allows or an address the rules above allow.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use crate::pki::ip::{canonical, in_range};

/// Ranges the validator never connects to, whatever the configuration says.
pub const ALWAYS_DENIED: &[&str] = &[
    "169.254.0.0/16",
    "fe80::/10",
    "0.0.0.0/8",
    "::/128",
    "224.0.0.0/4",
    "255.255.255.255/32",
    "ff00::/8",
];

/// Whether a redirect may go to a name: the identifier policy, as the wiring provides it.
pub type NamePolicy = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// The addresses the validator may connect to.
#[derive(Debug, Clone, Default)]
pub struct AddressPolicy {
    /// Configured ranges refused beyond [`ALWAYS_DENIED`].
    denied: Vec<String>,
    /// pkid's own listeners: never a validation target.
    own_listeners: Vec<SocketAddr>,
}

impl AddressPolicy {
    pub fn new(denied: Vec<String>, own_listeners: Vec<SocketAddr>) -> AddressPolicy {
        AddressPolicy {
            denied,
            own_listeners,
        }
    }

    /// Whether the address `ip` may be connected to at all (some port of it may still be one
    /// of pkid's own listeners: [`AddressPolicy::allows`]).
    pub fn allows_ip(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        !ALWAYS_DENIED
            .iter()
            .copied()
            .chain(self.denied.iter().map(String::as_str))
            .any(|range| in_range(&ip, range))
    }

    /// Whether the validator may connect to `addr`.
    pub fn allows(&self, addr: SocketAddr) -> bool {
        self.allows_ip(addr.ip()) && !self.is_own_listener(canonical(addr.ip()), addr.port())
    }

    /// Whether `ip`, on any of `ports`, is one of pkid's own listeners (one bound to the
    /// unspecified address answers on loopback).
    pub fn is_own_listener_on(&self, ip: IpAddr, ports: &[u16]) -> bool {
        let ip = canonical(ip);
        ports.iter().any(|port| self.is_own_listener(ip, *port))
    }

    fn is_own_listener(&self, ip: IpAddr, port: u16) -> bool {
        self.own_listeners.iter().any(|listener| {
            let own = canonical(listener.ip());
            listener.port() == port
                && (own == ip
                    || (own.is_unspecified() && (ip.is_loopback() || ip.is_unspecified())))
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_floor_and_the_configured_ranges_are_refused_in_every_spelling() {
        let policy = AddressPolicy::new(vec!["10.0.0.0/8".into()], vec![]);
        for refused in [
            "169.254.169.254:80",
            "[::ffff:169.254.169.254]:80",
            "[64:ff9b::a9fe:a9fe]:80",
            "[fe80::1]:80",
            "0.0.0.0:80",
            "[::]:80",
            "224.0.0.1:80",
            "255.255.255.255:80",
            "10.1.2.3:80",
            "[::ffff:10.1.2.3]:80",
        ] {
            assert!(!policy.allows(addr(refused)), "{refused}");
        }
        for allowed in [
            "127.0.0.1:80",
            "192.168.1.1:80",
            "[::1]:80",
            "[2001:db8::1]:443",
        ] {
            assert!(policy.allows(addr(allowed)), "{allowed}");
        }
    }

    #[test]
    fn pkid_own_listeners_are_refused_on_their_port_only() {
        let policy = AddressPolicy::new(vec![], vec![addr("127.0.0.1:8443"), addr("0.0.0.0:8080")]);
        assert!(!policy.allows(addr("127.0.0.1:8443")));
        assert!(policy.allows(addr("127.0.0.1:80")));
        assert!(
            !policy.allows(addr("127.0.0.1:8080")),
            "bound to every address"
        );
        assert!(!policy.allows(addr("[::ffff:127.0.0.1]:8443")));
        assert!(policy.allows(addr("192.0.2.7:8443")));
        assert!(policy.is_own_listener_on("127.0.0.1".parse().unwrap(), &[80, 8443]));
        assert!(!policy.is_own_listener_on("127.0.0.1".parse().unwrap(), &[80, 443]));
    }
}

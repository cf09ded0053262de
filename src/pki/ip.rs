//! IP addresses as pkid compares them: one canonical form per address (an IPv4 address written
//! as IPv4-mapped IPv6, `::ffff:a.b.c.d`, or through the NAT64 well-known prefix, `64:ff9b::/96`,
//! RFC 6052, is that IPv4 address), and membership of a CIDR range.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The NAT64 well-known prefix, `64:ff9b::/96` (RFC 6052 §2.1).
const NAT64_PREFIX: [u16; 6] = [0x64, 0xff9b, 0, 0, 0, 0];

/// `ip` in its canonical form: an IPv4 address that IPv6 carries (mapped, or NAT64) as IPv4.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None if v6.segments()[..6] == NAT64_PREFIX => IpAddr::V4(embedded_v4(&v6)),
            None => ip,
        },
        v4 => v4,
    }
}

/// What one host usually holds, to count a client's requests by: an IPv4 address (in its
/// canonical form), or an IPv6 address's /64.
pub fn host_key(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => {
            let mut segments = v6.segments();
            segments[4..].fill(0);
            IpAddr::V6(segments.into())
        }
        v4 => v4,
    }
}

fn embedded_v4(v6: &Ipv6Addr) -> Ipv4Addr {
    let o = v6.octets();
    Ipv4Addr::new(o[12], o[13], o[14], o[15])
}

/// `true` if `ip` is inside `cidr` (`a.b.c.d/n` or `x::/n`); a malformed range matches nothing.
pub fn in_range(ip: &IpAddr, cidr: &str) -> bool {
    let (net, bits) = match cidr.split_once('/') {
        Some((n, b)) => (n, b.parse::<u32>().ok()),
        None => (cidr, None),
    };
    let Ok(net) = net.parse::<IpAddr>() else {
        return false;
    };
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let bits = bits.unwrap_or(32).min(32);
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(*a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let bits = bits.unwrap_or(128).min(128);
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(*a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// Whether `cidr` is a range [`in_range`] understands: an address, optionally `/` a prefix length
/// no longer than the address.
pub fn is_range(cidr: &str) -> bool {
    let (net, bits) = match cidr.split_once('/') {
        Some((n, b)) => (n, Some(b)),
        None => (cidr, None),
    };
    let Ok(net) = net.parse::<IpAddr>() else {
        return false;
    };
    let max = if net.is_ipv4() { 32 } else { 128 };
    bits.is_none_or(|b| b.parse::<u32>().is_ok_and(|b| b <= max))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ipv4_written_as_ipv6_is_ipv4() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(canonical(ip("::ffff:10.0.0.1")), ip("10.0.0.1"));
        assert_eq!(canonical(ip("64:ff9b::a00:1")), ip("10.0.0.1"));
        assert_eq!(canonical(ip("2001:db8::1")), ip("2001:db8::1"));
        assert_eq!(canonical(ip("10.0.0.1")), ip("10.0.0.1"));
        assert!(in_range(&canonical(ip("::ffff:10.0.0.1")), "10.0.0.0/8"));
        assert!(!in_range(&ip("::ffff:10.0.0.1"), "10.0.0.0/8"));
        assert!(is_range("10.0.0.0/8") && is_range("::1") && is_range("fe80::/10"));
        assert!(!is_range("10.0.0.0/33") && !is_range("ten/8") && !is_range("10.0.0.0/x"));
    }
}

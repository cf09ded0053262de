//! RA policy: which identifiers a directory issues for, how fast an account may order (and
//! the check of both), and a test mode for client authors (like pebble's: rejected nonces, slow
//! validation, always-valid challenges).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::{Ra, RaError};
use crate::pki::csr::Ident;
use crate::store::{now, AccountRow};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdentifierPolicy {
    /// DNS suffixes allowed (`example.org` allows it and every name under it); empty: all.
    pub allowed_dns_suffixes: Vec<String>,
    /// DNS suffixes refused, checked before the allow list.
    pub denied_dns_suffixes: Vec<String>,
    /// IP ranges allowed, CIDR (`192.0.2.0/24`, `2001:db8::/32`); empty: all.
    pub allowed_ip_ranges: Vec<String>,
    /// IP ranges refused, checked before the allow list.
    pub denied_ip_ranges: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimits {
    /// New orders per account per hour; 0: unlimited.
    pub orders_per_account_per_hour: u32,
    /// New authorizations per identifier per hour (all accounts); 0: unlimited.
    pub authorizations_per_identifier_per_hour: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TestMode {
    /// Off by default; nothing below applies unless this is true.
    pub enabled: bool,
    /// Percentage (0-100) of valid nonces refused with badNonce.
    pub reject_nonce_percent: u8,
    /// Validation waits a random 0..=this many milliseconds.
    pub validation_delay_max_ms: u64,
    /// Every challenge validates without contacting the client.
    pub always_valid: bool,
}

impl TestMode {
    pub fn rejects_this_nonce(&self) -> bool {
        use rand::Rng;
        self.enabled
            && self.reject_nonce_percent > 0
            && rand::thread_rng().gen_range(0..100u8) < self.reject_nonce_percent.min(100)
    }

    /// The longest [`TestMode::validation_delay`] can be: zero unless test mode is on.
    pub fn max_validation_delay(&self) -> std::time::Duration {
        if self.enabled {
            std::time::Duration::from_millis(self.validation_delay_max_ms)
        } else {
            std::time::Duration::ZERO
        }
    }

    pub fn validation_delay(&self) -> std::time::Duration {
        use rand::Rng;
        let max = self.max_validation_delay();
        if max.is_zero() {
            return max;
        }
        rand::thread_rng().gen_range(std::time::Duration::ZERO..=max)
    }
}

fn suffix_matches(name: &str, suffix: &str) -> bool {
    let suffix = suffix
        .trim_start_matches("*.")
        .trim_start_matches('.')
        .to_ascii_lowercase();
    name == suffix || name.ends_with(&format!(".{suffix}"))
}

/// `true` if `cidr` is an address range [`in_range`] understands: an address, or an address
/// and a prefix length no longer than the address.
pub fn is_range(cidr: &str) -> bool {
    let (net, bits) = match cidr.split_once('/') {
        Some((n, b)) => (n, Some(b)),
        None => (cidr, None),
    };
    let Ok(net) = net.parse::<IpAddr>() else {
        return false;
    };
    let longest = if net.is_ipv4() { 32 } else { 128 };
    bits.is_none_or(|b| b.parse::<u32>().is_ok_and(|b| b <= longest))
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

impl IdentifierPolicy {
    /// `rejectedIdentifier` for a name or address this directory does not issue for.
    pub fn check(&self, ident: &Ident) -> Result<(), RaError> {
        let allowed = match ident {
            Ident::Dns(d) => {
                let name = d.trim_start_matches("*.");
                !self
                    .denied_dns_suffixes
                    .iter()
                    .any(|s| suffix_matches(name, s))
                    && (self.allowed_dns_suffixes.is_empty()
                        || self
                            .allowed_dns_suffixes
                            .iter()
                            .any(|s| suffix_matches(name, s)))
            }
            Ident::Ip(ip) => {
                !self.denied_ip_ranges.iter().any(|r| in_range(ip, r))
                    && (self.allowed_ip_ranges.is_empty()
                        || self.allowed_ip_ranges.iter().any(|r| in_range(ip, r)))
            }
        };
        if allowed {
            Ok(())
        } else {
            Err(RaError::IdentifierRefused(format!(
                "this directory does not issue for {}",
                ident.value()
            )))
        }
    }
}

impl Ra {
    /// `RateLimited` (with its Retry-After) past the configured hourly limits.
    pub(super) async fn check_rate_limits(
        &self,
        account: &AccountRow,
        idents: &[Ident],
    ) -> Result<(), RaError> {
        let limits = &self.settings.rate_limits;
        let since = now() - 3600;
        if limits.orders_per_account_per_hour > 0 {
            let n = self.store.orders_since(&account.id, since).await?;
            if n >= i64::from(limits.orders_per_account_per_hour) {
                return Err(RaError::RateLimited {
                    detail: format!(
                        "this account created {n} orders in the last hour; the limit is {}",
                        limits.orders_per_account_per_hour
                    ),
                    retry_after: self.store.retry_after_orders(&account.id, since).await?,
                });
            }
        }
        if limits.authorizations_per_identifier_per_hour > 0 {
            for ident in idents {
                let value = ident.value();
                let value = value.trim_start_matches("*.");
                let n = self.store.authzs_since(ident.kind(), value, since).await?;
                if n >= i64::from(limits.authorizations_per_identifier_per_hour) {
                    return Err(RaError::RateLimited {
                        detail: format!(
                            "{value} had {n} authorizations in the last hour; the limit is {}",
                            limits.authorizations_per_identifier_per_hour
                        ),
                        retry_after: 600,
                    });
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn test_mode_delays_validation_only_when_on_and_within_its_bound() {
        use std::time::Duration;
        let mut mode = TestMode {
            validation_delay_max_ms: 40,
            ..TestMode::default()
        };
        assert_eq!(mode.max_validation_delay(), Duration::ZERO);
        assert_eq!(mode.validation_delay(), Duration::ZERO);
        mode.enabled = true;
        assert_eq!(mode.max_validation_delay(), Duration::from_millis(40));
        for _ in 0..100 {
            assert!(mode.validation_delay() <= Duration::from_millis(40));
        }
        mode.validation_delay_max_ms = 0;
        assert_eq!(mode.validation_delay(), Duration::ZERO);
    }

    #[test]
    fn suffixes_and_ranges() {
        let p = IdentifierPolicy {
            allowed_dns_suffixes: vec!["pkid.test".into()],
            denied_dns_suffixes: vec!["bad.pkid.test".into()],
            allowed_ip_ranges: vec!["127.0.0.0/8".into(), "::1/128".into()],
            denied_ip_ranges: vec!["127.0.0.2/32".into()],
        };
        assert!(p.check(&Ident::Dns("a.pkid.test".into())).is_ok());
        assert!(p.check(&Ident::Dns("pkid.test".into())).is_ok());
        assert!(p.check(&Ident::Dns("*.pkid.test".into())).is_ok());
        assert!(p.check(&Ident::Dns("notpkid.test".into())).is_err());
        assert!(p.check(&Ident::Dns("x.bad.pkid.test".into())).is_err());
        assert!(p.check(&Ident::Ip("127.0.0.1".parse().unwrap())).is_ok());
        assert!(p.check(&Ident::Ip("127.0.0.2".parse().unwrap())).is_err());
        assert!(p.check(&Ident::Ip("10.0.0.1".parse().unwrap())).is_err());
        assert!(p.check(&Ident::Ip("::1".parse().unwrap())).is_ok());
        assert!(IdentifierPolicy::default()
            .check(&Ident::Dns("any.test".into()))
            .is_ok());
    }
}

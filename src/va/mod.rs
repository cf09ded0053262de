//! Validation authority: proves control of identifiers (RFC 8555 §8) and checks CAA before
//! issuance. One file per concern:
//!
//! - `http01`: http-01 (RFC 8555 §8.3) fetches `http://NAME:PORT/.well-known/acme-challenge/TOKEN`,
//!   where PORT is `acme.http01_port` (80 in production), following at most 10 redirects within
//!   the rules of `address`, reading ≤ 8 KiB.
//! - `address`: where the validator may connect and be redirected, checked on every resolved
//!   address before connecting.
//! - `dns01`: dns-01 (RFC 8555 §8.4) looks up TXT `_acme-challenge.NAME` for
//!   base64url(SHA-256(key authorization)).
//! - `tls_alpn01`: tls-alpn-01 (RFC 8737) connects with ALPN `acme-tls/1` (TLS 1.2+) to
//!   `acme.tls_alpn01_port`, SNI the name (or the reverse-DNS name of an IP, RFC 8738 §6), and
//!   checks the self-signed certificate: exactly one SAN, the identifier, and a critical
//!   acmeIdentifier extension.
//! - `caa`: CAA (RFC 8659, with RFC 8657's `accounturi` and `validationmethods`): may this CA
//!   issue for the name?
//! - `error`: `ValidationError`, one kind per ACME error type (RFC 8555 §6.7) a failure reports;
//!   the ACME surface maps it to its problem document.
//!
//! This file: the `Validator` and its settings, `validate` (dispatch by challenge type, each
//! bounded by the timeout), the deadline of a validation with its CAA check, and name
//! resolution: names resolve through `acme.dns_resolver` when set (a test DNS server), else the
//! system.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::TokioResolver;

use crate::pki::csr::Ident;

mod address;
mod caa;
mod dns01;
mod error;
mod http01;
mod tls_alpn01;

pub use address::{AddressPolicy, NamePolicy, ALWAYS_DENIED};
pub use caa::{caa_permits, parse_caa_rdata, CaaQuery};
pub use error::{ValidationError, ValidationErrorKind};
pub use tls_alpn01::reverse_dns_name;
use tls_alpn01::ChallengeCertVerifier;

const MAX_REDIRECTS: usize = 10;
/// Each DNS query of the validator (CAA, dns-01 TXT, addresses) is tried this many times, each
/// waiting this long.
const RESOLVER_ATTEMPTS: usize = 2;
const RESOLVER_TIMEOUT: Duration = Duration::from_secs(3);

pub struct Validator {
    http: reqwest::Client,
    resolver: Arc<TokioResolver>,
    tls: Arc<rustls::ClientConfig>,
    http01_port: u16,
    tls_alpn01_port: u16,
    timeout: Duration,
    addresses: AddressPolicy,
}

/// Where and how long the validator looks, and where it may not.
pub struct ValidatorSettings<'a> {
    pub http01_port: u16,
    pub tls_alpn01_port: u16,
    pub dns_resolver: &'a str,
    pub timeout: Duration,
    /// The addresses it may connect to (see [`address`]).
    pub addresses: AddressPolicy,
    /// The names an http-01 redirect may lead to (the identifier policy).
    pub redirect_names: NamePolicy,
}

/// reqwest name resolution through hickory, pointed at the configured server, giving only the
/// addresses the policy allows for the ports http-01 connects to.
struct HickoryResolve {
    resolver: Arc<TokioResolver>,
    addresses: AddressPolicy,
    ports: [u16; 2],
}

/// Every address of a name is refused by the address policy.
#[derive(Debug, thiserror::Error)]
#[error("every address of {0} is refused by the validation address policy")]
pub(super) struct AddressesRefused(String);

impl reqwest::dns::Resolve for HickoryResolve {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let resolver = self.resolver.clone();
        let addresses = self.addresses.clone();
        let ports = self.ports;
        Box::pin(async move {
            let lookup = resolver.lookup_ip(name.as_str()).await?;
            let allowed: Vec<SocketAddr> = lookup
                .into_iter()
                .filter(|ip| addresses.allows_ip(*ip) && !addresses.is_own_listener_on(*ip, &ports))
                .map(|ip| SocketAddr::new(ip, 0))
                .collect();
            if allowed.is_empty() {
                return Err(Box::new(AddressesRefused(name.as_str().to_string())) as _);
            }
            let addrs: Box<dyn Iterator<Item = SocketAddr> + Send> = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

/// An http-01 redirect pkid does not follow, and why.
#[derive(Debug, thiserror::Error)]
#[error("a redirect to {target} is refused: {reason}")]
pub(super) struct RedirectRefused {
    target: String,
    reason: &'static str,
}

/// Boulder's redirect rules: at most [`MAX_REDIRECTS`], to `http` on the http-01 port or
/// `https` on 443, to a name the identifier policy allows or an address the policy allows.
fn redirect_policy(
    http01_port: u16,
    addresses: AddressPolicy,
    names: NamePolicy,
) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        let verdict = redirect_verdict(
            attempt.url(),
            attempt.previous().len(),
            http01_port,
            &addresses,
            &names,
        );
        match verdict {
            Ok(()) => attempt.follow(),
            Err(reason) => {
                let target = attempt.url().to_string();
                attempt.error(RedirectRefused { target, reason })
            }
        }
    })
}

fn redirect_verdict(
    url: &url::Url,
    hops: usize,
    http01_port: u16,
    addresses: &AddressPolicy,
    names: &NamePolicy,
) -> Result<(), &'static str> {
    if hops > MAX_REDIRECTS {
        return Err("more than 10 redirects");
    }
    let port = url.port_or_known_default().unwrap_or(0);
    let allowed_port = match url.scheme() {
        "http" => port == http01_port,
        "https" => port == 443,
        _ => return Err("only http and https are followed"),
    };
    if !allowed_port {
        return Err("only the http-01 port over http, and 443 over https, are followed");
    }
    let allowed_host = match url.host() {
        Some(url::Host::Domain(name)) => {
            let name = name.to_ascii_lowercase();
            crate::pki::csr::is_dns_name(&name) && names(&name)
        }
        Some(url::Host::Ipv4(ip)) => addresses.allows(SocketAddr::new(ip.into(), port)),
        Some(url::Host::Ipv6(ip)) => addresses.allows(SocketAddr::new(ip.into(), port)),
        None => false,
    };
    if !allowed_host {
        return Err("its host is not one pkid validates");
    }
    Ok(())
}

pub fn build_resolver(dns_resolver: &str) -> Result<TokioResolver, String> {
    if dns_resolver.is_empty() {
        return TokioResolver::builder_tokio()
            .map(|b| b.build())
            .map_err(|e| format!("system resolver: {e}"));
    }
    let addr: SocketAddr = dns_resolver
        .parse()
        .map_err(|_| format!("acme.dns_resolver {dns_resolver:?} is not an ip:port address"))?;
    let group = NameServerConfigGroup::from_ips_clear(&[addr.ip()], addr.port(), true);
    let config = ResolverConfig::from_parts(None, vec![], group);
    let mut builder =
        TokioResolver::builder_with_config(config, TokioConnectionProvider::default());
    builder.options_mut().cache_size = 0;
    builder.options_mut().attempts = RESOLVER_ATTEMPTS;
    builder.options_mut().timeout = RESOLVER_TIMEOUT;
    Ok(builder.build())
}

impl Validator {
    pub fn new(settings: ValidatorSettings<'_>) -> Result<Validator, String> {
        let ValidatorSettings {
            http01_port,
            tls_alpn01_port,
            dns_resolver,
            timeout,
            addresses,
            redirect_names,
        } = settings;
        // reqwest's rustls needs a process-wide provider; a no-op if one is installed already.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let resolver = Arc::new(build_resolver(dns_resolver)?);
        let http = reqwest::Client::builder()
            .redirect(redirect_policy(
                http01_port,
                addresses.clone(),
                redirect_names,
            ))
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("pkid-validator/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(Arc::new(HickoryResolve {
                resolver: resolver.clone(),
                addresses: addresses.clone(),
                ports: [http01_port, 443],
            }))
            .no_proxy()
            // Every validation makes a fresh connection, as Boulder's VA does: a connection
            // kept for one name proves nothing about the next, and kept ones (one per validated
            // name, each for the pool's idle time) held thousands of sockets under load.
            .pool_max_idle_per_host(0)
            .build()
            .map_err(|e| format!("http-01 client: {e}"))?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| format!("tls-alpn-01 client: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ChallengeCertVerifier(provider)))
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"acme-tls/1".to_vec()];
        Ok(Validator {
            http,
            resolver,
            tls: Arc::new(tls),
            http01_port,
            tls_alpn01_port,
            timeout,
            addresses,
        })
    }

    /// The longest one validation takes with its CAA check: the challenge's own bound or two
    /// rounds of DNS queries (a CAA walk's names, then an alias's), whichever is longer, and a
    /// second of slack. A validation still running past it is ended as timed out.
    pub fn deadline(&self) -> Duration {
        let dns = RESOLVER_TIMEOUT * 2 * u32::try_from(RESOLVER_ATTEMPTS).unwrap_or(2);
        (self.timeout + Duration::from_secs(1)).max(dns) + Duration::from_secs(1)
    }

    /// Validate one challenge; `Ok(())` means the identifier is proven.
    pub async fn validate(
        &self,
        kind: &str,
        ident: &Ident,
        token: &str,
        key_authorization: &str,
    ) -> Result<(), ValidationError> {
        let bound = self.timeout + Duration::from_secs(1);
        let outcome = match kind {
            "http-01" => {
                tokio::time::timeout(bound, self.http01(ident, token, key_authorization)).await
            }
            "dns-01" => tokio::time::timeout(bound, self.dns01(ident, key_authorization)).await,
            "tls-alpn-01" => {
                tokio::time::timeout(bound, self.tls_alpn01(ident, key_authorization)).await
            }
            other => {
                return Err(ValidationError::malformed(format!(
                    "challenge type {other} is not supported"
                )))
            }
        };
        outcome.unwrap_or_else(|_| {
            Err(ValidationError::connection(format!(
                "{kind} validation of {} timed out",
                ident.value()
            )))
        })
    }
}

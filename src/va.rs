//! Validation authority: proves control of identifiers (RFC 8555 §8).
//!
//! http-01 (§8.3) fetches `http://NAME:PORT/.well-known/acme-challenge/TOKEN`, where PORT is
//! `acme.http01_port` (80 in production), following at most 10 redirects and reading at most
//! 8 KiB. Names resolve through `acme.dns_resolver` when set (a test DNS server), else the system.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::TokioResolver;

use crate::acme::problem::Problem;
use crate::csr::Ident;

const MAX_BODY: usize = 8 * 1024;
const MAX_REDIRECTS: usize = 10;

pub struct Validator {
    http: reqwest::Client,
    http01_port: u16,
    timeout: Duration,
}

/// reqwest name resolution through hickory, pointed at the configured server.
struct HickoryResolve(Arc<TokioResolver>);

impl reqwest::dns::Resolve for HickoryResolve {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let resolver = self.0.clone();
        Box::pin(async move {
            let lookup = resolver.lookup_ip(name.as_str()).await?;
            let addrs: Box<dyn Iterator<Item = SocketAddr> + Send> = Box::new(
                lookup
                    .into_iter()
                    .map(|ip| SocketAddr::new(ip, 0))
                    .collect::<Vec<_>>()
                    .into_iter(),
            );
            Ok(addrs)
        })
    }
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
    builder.options_mut().attempts = 2;
    builder.options_mut().timeout = Duration::from_secs(3);
    Ok(builder.build())
}

impl Validator {
    pub fn new(
        http01_port: u16,
        dns_resolver: &str,
        timeout: Duration,
    ) -> Result<Validator, String> {
        // reqwest's rustls needs a process-wide provider; a no-op if one is installed already.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let resolver = Arc::new(build_resolver(dns_resolver)?);
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::limited(MAX_REDIRECTS))
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("pkid-validator/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(Arc::new(HickoryResolve(resolver)))
            .no_proxy()
            .build()
            .map_err(|e| format!("http-01 client: {e}"))?;
        Ok(Validator {
            http,
            http01_port,
            timeout,
        })
    }

    /// Validate one challenge; `Ok(())` means the identifier is proven.
    pub async fn validate(
        &self,
        kind: &str,
        ident: &Ident,
        token: &str,
        key_authorization: &str,
    ) -> Result<(), Problem> {
        match kind {
            "http-01" => {
                let fut = self.http01(ident, token, key_authorization);
                match tokio::time::timeout(self.timeout + Duration::from_secs(1), fut).await {
                    Ok(r) => r,
                    Err(_) => Err(Problem::connection(format!(
                        "http-01 validation of {} timed out",
                        ident.value()
                    ))),
                }
            }
            other => Err(Problem::malformed(format!(
                "challenge type {other} is not supported"
            ))),
        }
    }

    async fn http01(
        &self,
        ident: &Ident,
        token: &str,
        key_authorization: &str,
    ) -> Result<(), Problem> {
        let host = match ident {
            Ident::Dns(d) => d.clone(),
            Ident::Ip(IpAddr::V4(ip)) => ip.to_string(),
            Ident::Ip(IpAddr::V6(ip)) => format!("[{ip}]"),
        };
        let url = format!(
            "http://{host}:{}/.well-known/acme-challenge/{token}",
            self.http01_port
        );
        let mut resp = self.http.get(&url).send().await.map_err(|e| {
            let detail = format!("fetching {url}: {}", error_chain(&e));
            if is_dns_error(&e) {
                Problem::dns(detail)
            } else {
                Problem::connection(detail)
            }
        })?;
        if !resp.status().is_success() {
            return Err(Problem::unauthorized(format!(
                "{url} answered HTTP {}",
                resp.status().as_u16()
            )));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| Problem::connection(format!("reading {url}: {e}")))?
        {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(Problem::unauthorized(format!(
                    "{url} answered with more than {MAX_BODY} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        let got = String::from_utf8_lossy(&body);
        if got.trim_end() == key_authorization {
            Ok(())
        } else {
            let shown: String = got.chars().take(120).collect();
            Err(Problem::incorrect_response(format!(
                "{url}: the key authorization does not match; expected {key_authorization:?}, got {shown:?}"
            )))
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

fn is_dns_error(e: &reqwest::Error) -> bool {
    let mut source: Option<&dyn std::error::Error> = Some(e);
    while let Some(s) = source {
        if s.downcast_ref::<hickory_resolver::ResolveError>().is_some() {
            return true;
        }
        source = s.source();
    }
    false
}

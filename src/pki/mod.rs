//! PKI formats every layer reads and writes: PKCS#10 requests ([`csr`]), chains from outside
//! ([`chain`]), distinguished names in
//! RFC 2253 form ([`dn`]), IP addresses in canonical form ([`ip`]), RFC 3820 proxy certificate
//! files ([`proxy`]), JWK thumbprints ([`jwk`]), ARI certificate identifiers ([`ari`]), PEM
//! ([`pem`]), and RFC 3339 times ([`rfc3339`]).

pub mod ari;
pub mod chain;
pub mod csr;
pub mod dn;
pub mod ip;
pub mod jwk;
pub mod pem;
pub mod proxy;

/// A Unix time as an RFC 3339 date-time (UTC), as the JSON surfaces and the command line show
/// times; empty for a time out of range.
pub fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

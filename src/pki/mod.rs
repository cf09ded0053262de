//! PKI formats every layer reads and writes: PKCS#10 requests ([`csr`]), RFC 3820 proxy
//! certificate files ([`proxy`]), JWK thumbprints ([`jwk`]), ARI certificate identifiers
//! ([`ari`]) and PEM ([`pem`]).

pub mod ari;
pub mod csr;
pub mod jwk;
pub mod pem;
pub mod proxy;

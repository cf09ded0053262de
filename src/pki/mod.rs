//! PKI formats every layer reads: PKCS#10 requests ([`csr`]), RFC 3820 proxy certificate files
//! ([`proxy`]).

pub mod csr;
pub mod proxy;

//! pkid's conformance suite: the project's one integration-test binary. Real third-party clients
//! (lego, certbot) and a small Rust ACME client drive a real `pkid serve` process on loopback, and
//! the results are checked with the tools a user would use (`openssl verify`, x509-parser).
//!
//! Run everything, installing what is missing, with `./conformance/run`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

mod backends;
mod badinput;
mod caa;
mod faults;
mod hostile;
mod issuance;
mod jws;
mod load;
mod proxy;
mod replicas;
mod revocation;
mod rfc_features;
mod third_party;

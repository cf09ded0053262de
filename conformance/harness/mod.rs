//! The conformance harness: what the suites stand on, never the other way round. Bottom up, each
//! file importing only files listed before it:
//!
//! - `tls`: the process-wide rustls crypto provider and the HTTPS client
//! - `made`: certificates the suites make (CAs, client certificates, RFC 3820 proxies)
//! - `process`: child processes as guards killed by PID, free loopback ports, required tools
//! - `dns` (pebble-challtestsrv), `postgres` (a PostgreSQL cluster), `softhsm` (a SoftHSM2
//!   token folder), `upstream` (pebble and cfssl): what a test starts beside pkid
//! - `pkid`: the pkid process under test
//! - `environment`: one test's world (folder, DNS, pkid) and the bound on a test body
//! - `acme`: the one ACME client's core (JWS, thumbprint, nonces, directory) and pkid-loadgen's
//!   layer over it; it imports nothing of the harness, as the load generator mounts it alone
//! - `http01`: the http-01 responder
//! - `client`: the suites' ACME client, a panicking layer over `acme`
//! - `certs`: the checks a user would make on what pkid issues
//! - `schemathesis`: a surface's OpenAPI document run by schemathesis
//!
//! Mounted by the conformance test binary and by `cargo bench --bench acme` (`#[path]`: a bench
//! target cannot use the test binary's modules); items here may be unused by one of them.

pub mod acme;
pub mod certs;
pub mod client;
pub mod dns;
pub mod environment;
pub mod http01;
pub mod made;
pub mod pkid;
pub mod postgres;
pub mod process;
pub mod schemathesis;
pub mod softhsm;
pub mod tls;
pub mod upstream;

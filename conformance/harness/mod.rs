//! The conformance harness: what the suites stand on, and never the other way round. Layered
//! bottom up, each file importing only those above it in this list:
//!
//! - `tls`: the process-wide rustls crypto provider and the HTTPS client (imports nothing here)
//! - `process`: child processes as guards killed by PID, free loopback ports, required tools
//! - `dns`, `postgres`, `softhsm`, `upstream`: the servers and tokens a test starts beside pkid
//!   (pebble-challtestsrv; a PostgreSQL cluster; a SoftHSM2 token folder; pebble and cfssl)
//! - `pkid`: the pkid process under test; `environment`: one test's world (folder, DNS, pkid)
//! - `client`: the suite's ACME client; `certs`: the checks a user would make on what pkid issues
//!
//! Mounted by the conformance test binary and by `cargo bench --bench acme` (`#[path]`, as a bench
//! target cannot use the test binary's modules); items here may be unused by one of them.

pub mod certs;
pub mod client;
pub mod dns;
pub mod environment;
pub mod pkid;
pub mod postgres;
pub mod process;
pub mod softhsm;
pub mod tls;
pub mod upstream;

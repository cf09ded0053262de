//! pkid: a Certificate Authority and Registration Authority server.
//!
//! Layers, data flowing down only (see `DESIGN.md` of the project):
//! `http` (transport, routing, auth) → `acme` (RFC 8555 surface) → `va` (validation),
//! `ca` (issuance cycle) and `store` (sqlx) → the `pkid-backends` crate (signing).

pub mod acme;
pub mod ca;
pub mod cli;
pub mod config;
pub mod csr;
pub mod http;
pub mod proxy;
pub mod revocation;
pub mod server;
pub mod store;
pub mod va;

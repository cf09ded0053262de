//! pkid: a Certificate Authority and Registration Authority server.
//!
//! Layers, data flowing down only (`tests.rs` checks it on the source; docs/architecture.md walks
//! one request through them):
//!
//! ```text
//! http/        transport: listeners, TLS, limits, routing by path prefix to a surface
//! api/         one per surface (acme, admin, identity, repository): routes, wire types, error
//!              shapes; reads through store::Reads, writes through the RA
//! identity/    who is calling (Principal: users, clients, tokens, certificates, JWS keys) and
//!              authorize(); the JWS verifier and nonces
//! ra/          every write of every surface: policy, lifecycles, recovery; RaError
//! va/ ca/ revocation/    validation and CAA; issuers and the issuance cycle; CRLs and OCSP
//! audit/       the audit trail: every state change in a hash chain, signed checkpoints
//! store/       sqlx over SQLite or PostgreSQL, one file per aggregate
//! pkid-backends (crate)  signing: software keys, PKCS#11, upstream CAs
//! pki/         CSR, RFC 3820 proxy files, JWK thumbprints, ARI, PEM: used by every layer
//! ```
//! `startup` wires them bottom-up in that order; `commands` are the operator's command-line
//! verbs; `config` is the one `Config`.

pub mod api;
pub mod audit;
pub mod ca;
pub mod commands;
pub mod config;
pub mod http;
pub mod identity;
pub mod pki;
pub mod ra;
pub mod revocation;
pub mod startup;
pub mod store;
pub mod va;

#[cfg(test)]
mod tests;

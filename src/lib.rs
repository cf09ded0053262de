//! pkid: a Certificate Authority and Registration Authority server.
//!
//! Layers, data flowing down only (docs/architecture.md walks one request through them):
//!
//! ```text
//! http/        transport: listeners, TLS, limits, routing by path prefix to a surface
//! api/         one folder per surface (acme, admin): routes, wire types, error shapes
//! identity/    who is calling (Principal)
//! ra/          every write of every surface: policy, order lifecycle, recovery
//! va/ ca/ revocation/ store/    validation, issuance, CRL/OCSP, sqlx storage
//! pkid-backends (crate)         signing: software keys, PKCS#11, upstream CAs
//! pki/         CSR and RFC 3820 formats, used by every layer
//! ```
//! `startup` wires them in that order; `commands` are the operator's command-line verbs.

pub mod api;
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

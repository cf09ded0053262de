//! The API surfaces, one folder each: its routes, wire types, and the mapping of the core's
//! errors to the surface's own error shape. A surface reads what it shows and writes only
//! through the RA (`crate::ra`).
//!
//! - [`acme`]: RFC 8555 (with RFC 8737, 8738, 9773, EAB and profiles) under `/acme`.
//! - [`admin`]: operator resources under `/admin` (EAB keys).

pub mod acme;
pub mod admin;
mod body;

pub use body::{BodyError, RequestBody};

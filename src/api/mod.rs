//! The API surfaces, one folder (or file) each: its routes, wire types, and the mapping of the
//! core's errors to the surface's own error shape. A surface reads what it shows and writes
//! only through the RA (`crate::ra`).
//!
//! - [`acme`]: RFC 8555 (with RFC 8737, 8738, 9773, EAB and profiles) under `/acme`.
//! - [`admin`]: operator resources under `/admin` (EAB keys).
//! - [`identity`]: `/token` (OAuth2), `/login` (Notary), `/.well-known/jwks.json`, `/identity/me`,
//!   `/identity/keys/{thumbprint}` (key bindings).
//! - [`czertainly`]: CZERTAINLY-style RA client operations under `/v1` and `/v2`: authorities,
//!   RA profiles, issue, renew, rekey, revoke (OpenAPI document at `/v2/openapi.json`).
//! - [`iam`]: INDIGO IAM's certificate linking requests, trust anchors and RFC 3820 proxy
//!   certificates under `/iam`.
//! - [`repository`]: CRLs, OCSP and CA certificates for relying parties (`/crl`, `/ocsp`, `/ca`).
//! - [`notary`]: Notary's certificate requests, CAs and accounts under `/api/v1`, and `/status`.
//! - [`operations`]: `/metrics` (Prometheus) and `/readyz` for monitoring and load balancers.
//!
//! What the transport hands a surface and takes back is here: who is on the other end of the
//! connection ([`Caller`]), the request's [`RequestBody`], read by the surface that wants it, and
//! the [`Reply`].

pub mod acme;
pub mod admin;
mod body;
pub mod czertainly;
pub mod iam;
pub mod identity;
pub mod notary;
pub mod operations;
pub mod repository;

/// The operations an OpenAPI 3.1 document lists, as (METHOD, path), sorted: what each surface's
/// document test holds against its router.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) fn documented_operations(document: &str) -> Vec<(String, String)> {
    let document: serde_json::Value = serde_json::from_str(document).unwrap();
    assert!(
        document["openapi"].as_str().unwrap().starts_with("3.1"),
        "not OpenAPI 3.1: {}",
        document["openapi"]
    );
    let mut operations = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "put", "post", "delete", "patch"].contains(&method.as_str()) {
                operations.push((method.to_ascii_uppercase(), path.clone()));
            }
        }
    }
    operations.sort();
    operations
}

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, StatusCode};
use rustls_pki_types::CertificateDer;

pub use body::{BodyError, RequestBody};

/// What the transport knows of the other end of a request's connection; `identity` decides
/// what it proves.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The peer's address (a TLS-terminating proxy's, behind one).
    pub peer: SocketAddr,
    /// The certificate chain the client presented in the TLS handshake, its leaf first: the
    /// client proved it holds the leaf's key, nothing more is checked yet
    /// (`identity::certificates` judges it). Read once per connection; `None`: no certificate.
    pub client_chain: Option<Arc<Vec<CertificateDer<'static>>>>,
}

impl Caller {
    /// What this request presents to `identity`: everything the transport learned of the
    /// caller, with the request's headers. The one place a new transport fact (a verified client
    /// certificate) is handed on.
    pub fn presented<'a>(&'a self, headers: &'a HeaderMap) -> crate::identity::Presented<'a> {
        crate::identity::Presented {
            peer: self.peer.ip(),
            headers,
            client_chain: self.client_chain.as_deref().map(Vec::as_slice),
            request: None,
        }
    }
}

/// A request's head as the transport hands it to a REST surface: what it asks, who sent it, and
/// the origin it was sent to (the URL a JWS signature covers is `origin` + `path`).
pub struct RequestHead<'a> {
    pub method: &'a http::Method,
    pub path: &'a str,
    /// The query string, without its `?` (empty: none).
    pub query: &'a str,
    pub headers: &'a HeaderMap,
    pub caller: &'a Caller,
    /// `https://host[:port]`, as the client addressed pkid.
    pub origin: &'a str,
}

impl<'a> RequestHead<'a> {
    /// What this request presents to `identity`, its body (a JWS-signed request's) included.
    pub fn presented(&self, body: &'a [u8]) -> crate::identity::Presented<'a> {
        self.caller
            .presented(self.headers)
            .signed(body, self.origin, self.path)
    }
}

/// A surface's answer, before the transport turns it into an HTTP response.
pub struct Reply {
    pub status: StatusCode,
    pub headers: Vec<(HeaderName, String)>,
    /// Empty: no `Content-Type`.
    pub content_type: &'static str,
    pub body: Bytes,
}

impl Reply {
    /// `value` as JSON: a wire type of the surface (whose schema its OpenAPI document shows), or
    /// a `serde_json::Value`.
    pub fn json<T: serde::Serialize + ?Sized>(status: StatusCode, value: &T) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            content_type: "application/json",
            body: Bytes::from(serde_json::to_vec(value).unwrap_or_default()),
        }
    }

    pub fn empty(status: StatusCode) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            content_type: "",
            body: Bytes::new(),
        }
    }

    /// `text/plain`.
    pub fn text(status: StatusCode, text: &'static str) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            content_type: "text/plain",
            body: Bytes::from_static(text.as_bytes()),
        }
    }

    /// 200 with `body` as `content_type`.
    pub fn bytes(content_type: &'static str, body: impl Into<Bytes>) -> Reply {
        Reply {
            status: StatusCode::OK,
            headers: Vec::new(),
            content_type,
            body: body.into(),
        }
    }

    pub fn header(mut self, name: HeaderName, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }
}

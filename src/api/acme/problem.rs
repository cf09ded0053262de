//! RFC 7807 problem documents with the ACME error types of RFC 8555 §6.7.
//!
//! One constructor per problem type fixes the type URN and the HTTP status together (pebble's
//! `problems.go`), so a handler cannot pair `badNonce` with the wrong status.

use http::StatusCode;
use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Identifier {
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
}

/// An ACME problem document. Small on purpose (it travels in every `Result`): the rarely
/// used members live behind one box.
#[derive(Debug, Clone)]
pub struct Problem {
    /// Short type name, e.g. `badNonce`; serialized with the `urn:ietf:params:acme:error:` prefix.
    pub name: &'static str,
    pub detail: String,
    pub status: u16,
    extra: Option<Box<Extra>>,
}

#[derive(Debug, Clone, Default)]
struct Extra {
    subproblems: Vec<Subproblem>,
    /// For `badSignatureAlgorithm`: the algorithms the server accepts (RFC 8555 §6.2).
    algorithms: Option<Vec<String>>,
    /// Extra headers some problems carry (`Location` for an existing key, `Retry-After`).
    headers: Vec<(http::HeaderName, String)>,
}

impl Serialize for Problem {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("type", &format!("{PREFIX}{}", self.name))?;
        map.serialize_entry("detail", &self.detail)?;
        map.serialize_entry("status", &self.status)?;
        if let Some(extra) = &self.extra {
            if !extra.subproblems.is_empty() {
                map.serialize_entry("subproblems", &extra.subproblems)?;
            }
            if let Some(algs) = &extra.algorithms {
                map.serialize_entry("algorithms", algs)?;
            }
        }
        map.end()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Subproblem {
    #[serde(rename = "type")]
    pub kind: String,
    pub detail: String,
    pub identifier: Identifier,
}

const PREFIX: &str = "urn:ietf:params:acme:error:";

macro_rules! problems {
    ($($fn:ident => $name:literal, $status:expr;)*) => {
        impl Problem {
            $(
                pub fn $fn(detail: impl Into<String>) -> Problem {
                    Problem::new($name, $status, detail)
                }
            )*
        }
    };
}

problems! {
    account_does_not_exist => "accountDoesNotExist", StatusCode::BAD_REQUEST;
    already_replaced => "alreadyReplaced", StatusCode::CONFLICT;
    already_revoked => "alreadyRevoked", StatusCode::BAD_REQUEST;
    bad_csr => "badCSR", StatusCode::BAD_REQUEST;
    bad_nonce => "badNonce", StatusCode::BAD_REQUEST;
    bad_public_key => "badPublicKey", StatusCode::BAD_REQUEST;
    bad_revocation_reason => "badRevocationReason", StatusCode::BAD_REQUEST;
    bad_signature_algorithm => "badSignatureAlgorithm", StatusCode::BAD_REQUEST;
    caa => "caa", StatusCode::FORBIDDEN;
    connection => "connection", StatusCode::BAD_REQUEST;
    dns => "dns", StatusCode::BAD_REQUEST;
    external_account_required => "externalAccountRequired", StatusCode::UNAUTHORIZED;
    incorrect_response => "incorrectResponse", StatusCode::FORBIDDEN;
    invalid_contact => "invalidContact", StatusCode::BAD_REQUEST;
    invalid_profile => "invalidProfile", StatusCode::BAD_REQUEST;
    malformed => "malformed", StatusCode::BAD_REQUEST;
    order_not_ready => "orderNotReady", StatusCode::FORBIDDEN;
    rate_limited => "rateLimited", StatusCode::TOO_MANY_REQUESTS;
    rejected_identifier => "rejectedIdentifier", StatusCode::BAD_REQUEST;
    server_internal => "serverInternal", StatusCode::INTERNAL_SERVER_ERROR;
    tls => "tls", StatusCode::BAD_REQUEST;
    unauthorized => "unauthorized", StatusCode::FORBIDDEN;
    unsupported_contact => "unsupportedContact", StatusCode::BAD_REQUEST;
    unsupported_identifier => "unsupportedIdentifier", StatusCode::BAD_REQUEST;
    user_action_required => "userActionRequired", StatusCode::FORBIDDEN;
}

impl Problem {
    fn new(name: &'static str, status: StatusCode, detail: impl Into<String>) -> Problem {
        Problem {
            name,
            detail: detail.into(),
            status: status.as_u16(),
            extra: None,
        }
    }

    fn extra_mut(&mut self) -> &mut Extra {
        self.extra.get_or_insert_with(Box::default)
    }

    /// Headers the HTTP reply must carry with this problem.
    pub fn headers(&self) -> &[(http::HeaderName, String)] {
        self.extra
            .as_ref()
            .map(|e| e.headers.as_slice())
            .unwrap_or(&[])
    }

    /// Not an ACME type: 404 for a resource that does not exist.
    pub fn not_found(detail: impl Into<String>) -> Problem {
        Problem::new("malformed", StatusCode::NOT_FOUND, detail)
    }

    /// 405 for a method the resource does not serve.
    pub fn method_not_allowed(detail: impl Into<String>) -> Problem {
        Problem::new("malformed", StatusCode::METHOD_NOT_ALLOWED, detail)
    }

    /// 415 for a POST without `Content-Type: application/jose+json` (RFC 8555 §6.2).
    pub fn unsupported_media_type(detail: impl Into<String>) -> Problem {
        Problem::new("malformed", StatusCode::UNSUPPORTED_MEDIA_TYPE, detail)
    }

    /// 413 for a body over the configured limit.
    pub fn payload_too_large(detail: impl Into<String>) -> Problem {
        Problem::new("malformed", StatusCode::PAYLOAD_TOO_LARGE, detail)
    }

    /// 409 with a `Location` header: used when a key is already bound to another account.
    pub fn conflict(detail: impl Into<String>, location: String) -> Problem {
        let mut p = Problem::new("malformed", StatusCode::CONFLICT, detail);
        p.extra_mut()
            .headers
            .push((http::header::LOCATION, location));
        p
    }

    pub fn with_status(mut self, status: StatusCode) -> Problem {
        self.status = status.as_u16();
        self
    }

    pub fn with_retry_after(mut self, secs: u64) -> Problem {
        self.extra_mut()
            .headers
            .push((http::header::RETRY_AFTER, secs.to_string()));
        self
    }

    pub fn with_algorithms(mut self, algs: &[&str]) -> Problem {
        self.extra_mut().algorithms = Some(algs.iter().map(|a| a.to_string()).collect());
        self
    }

    pub fn with_subproblems(mut self, subproblems: Vec<Subproblem>) -> Problem {
        self.extra_mut().subproblems = subproblems;
        self
    }

    /// The short type name, e.g. `badNonce`.
    pub fn short_type(&self) -> &str {
        self.name
    }

    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self)
            .unwrap_or_else(|_| serde_json::json!({"type": format!("{PREFIX}{}", self.name)}))
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.short_type(),
            self.status,
            self.detail
        )
    }
}

impl From<crate::store::StoreError> for Problem {
    fn from(e: crate::store::StoreError) -> Problem {
        tracing::error!(code = "PKID-STORE", error = %e, "database error");
        Problem::server_internal("the server could not complete the request; it is safe to retry")
    }
}

impl From<crate::api::BodyError> for Problem {
    fn from(e: crate::api::BodyError) -> Problem {
        use crate::api::BodyError;
        match e {
            BodyError::TooLarge { .. } => Problem::payload_too_large(e.to_string()),
            BodyError::Unreadable => Problem::malformed(e.to_string()),
            BodyError::TimedOut { .. } => {
                Problem::malformed(e.to_string()).with_status(StatusCode::REQUEST_TIMEOUT)
            }
        }
    }
}

/// A failed validation or CAA check becomes the problem of its ACME error type (RFC 8555 §8).
impl From<crate::va::ValidationError> for Problem {
    fn from(e: crate::va::ValidationError) -> Problem {
        use crate::va::ValidationErrorKind as Kind;
        let crate::va::ValidationError { kind, detail } = e;
        match kind {
            Kind::Malformed => Problem::malformed(detail),
            Kind::Connection => Problem::connection(detail),
            Kind::Dns => Problem::dns(detail),
            Kind::Caa => Problem::caa(detail),
            Kind::IncorrectResponse => Problem::incorrect_response(detail),
            Kind::Tls => Problem::tls(detail),
            Kind::Unauthorized => Problem::unauthorized(detail),
            Kind::Internal => Problem::server_internal(detail),
        }
    }
}

/// A refused JWS, key or nonce becomes the problem of its ACME error type (RFC 8555 §6.2–§6.5),
/// `badSignatureAlgorithm` with the algorithms pkid accepts.
impl From<crate::identity::jws::JwsError> for Problem {
    fn from(e: crate::identity::jws::JwsError) -> Problem {
        use crate::identity::jws::JwsError;
        match e {
            JwsError::Malformed(d) => Problem::malformed(d),
            JwsError::BadNonce(d) => Problem::bad_nonce(d),
            JwsError::BadSignatureAlgorithm { detail, algorithms } => {
                Problem::bad_signature_algorithm(detail).with_algorithms(algorithms)
            }
            JwsError::BadPublicKey(d) => Problem::bad_public_key(d),
            JwsError::Unauthorized(d) => Problem::unauthorized(d),
            JwsError::Internal(d) => Problem::server_internal(d),
            JwsError::Store(e) => Problem::from(e),
        }
    }
}

/// The RA's refusals and failures as ACME problems (RFC 8555 §6.7), one variant to one type.
impl From<crate::ra::RaError> for Problem {
    fn from(e: crate::ra::RaError) -> Problem {
        use crate::ra::RaError;
        match e {
            RaError::Malformed(d) => Problem::malformed(d),
            RaError::NotFound(d) => Problem::not_found(d),
            RaError::Unauthorized(d) => Problem::unauthorized(d),
            RaError::NoAccount(d) => Problem::account_does_not_exist(d),
            RaError::BindingRequired(d) => Problem::external_account_required(d),
            RaError::TermsNotAgreed(d) => Problem::user_action_required(d),
            RaError::InvalidContact(d) => Problem::invalid_contact(d),
            RaError::UnsupportedContact(d) => Problem::unsupported_contact(d),
            RaError::Conflict(d) => Problem::malformed(d).with_status(StatusCode::CONFLICT),
            // The surface names the other account (a `Location`) where it can build its URL.
            RaError::KeyInUse { detail, .. } => Problem::conflict(detail, String::new()),
            RaError::IdentifierRefused(d) => Problem::rejected_identifier(d),
            RaError::ProfileRefused(d) => Problem::invalid_profile(d),
            RaError::RateLimited {
                detail,
                retry_after,
            } => Problem::rate_limited(detail).with_retry_after(retry_after),
            RaError::AlreadyReplaced(d) => Problem::already_replaced(d),
            RaError::NotReady(d) => Problem::order_not_ready(d),
            RaError::BadCsr(d) => Problem::bad_csr(d),
            RaError::WeakKey(d) => Problem::bad_public_key(d),
            RaError::Validation(e) => Problem::from(e),
            RaError::BadRevocationReason(d) => Problem::bad_revocation_reason(d),
            RaError::AlreadyRevoked(d) => Problem::already_revoked(d),
            RaError::Internal(d) => Problem::server_internal(d),
            RaError::Unavailable(d) => {
                tracing::error!(code = "PKID-RA-UNAVAILABLE", error = %d, "a signing backend is unavailable");
                Problem::server_internal("a signing backend is unavailable; it is safe to retry")
                    .with_status(StatusCode::SERVICE_UNAVAILABLE)
                    .with_retry_after(5)
            }
            RaError::Store(e) => Problem::from(e),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::va::{ValidationError, ValidationErrorKind as Kind};

    #[test]
    fn validation_errors_keep_their_acme_type_status_and_detail() {
        let cases = [
            (Kind::Malformed, "malformed", 400),
            (Kind::Connection, "connection", 400),
            (Kind::Dns, "dns", 400),
            (Kind::Caa, "caa", 403),
            (Kind::IncorrectResponse, "incorrectResponse", 403),
            (Kind::Tls, "tls", 400),
            (Kind::Unauthorized, "unauthorized", 403),
            (Kind::Internal, "serverInternal", 500),
        ];
        for (kind, name, status) in cases {
            let detail = format!("what went wrong ({name})");
            let problem = Problem::from(ValidationError {
                kind,
                detail: detail.clone(),
            });
            assert_eq!(
                problem.to_json(),
                serde_json::json!({
                    "type": format!("urn:ietf:params:acme:error:{name}"),
                    "detail": detail,
                    "status": status,
                })
            );
            // What the RA stores in a challenge's `error` is this same document, byte for byte.
            assert_eq!(
                crate::ra::problem_document(kind.acme_type(), kind.status(), &detail),
                problem.to_json().to_string()
            );
        }
    }

    #[test]
    fn jws_errors_keep_their_acme_type_status_and_detail() {
        use crate::identity::jws::{JwsError, ALLOWED_ALGS};
        let cases = [
            (JwsError::malformed("m"), "malformed", 400),
            (JwsError::bad_nonce("m"), "badNonce", 400),
            (JwsError::bad_public_key("m"), "badPublicKey", 400),
            (JwsError::Unauthorized("m".into()), "unauthorized", 403),
            (JwsError::internal("m"), "serverInternal", 500),
        ];
        for (error, name, status) in cases {
            assert_eq!(error.acme_type(), name);
            assert_eq!(
                Problem::from(error).to_json(),
                serde_json::json!({
                    "type": format!("urn:ietf:params:acme:error:{name}"),
                    "detail": "m",
                    "status": status,
                })
            );
        }
        // An algorithm the verifier refuses: the problem lists the accepted ones (§6.2).
        let refused = crate::identity::jws::Jws::parse(
            br#"{"protected":"eyJhbGciOiJub25lIn0","payload":"","signature":""}"#,
        )
        .unwrap_err();
        assert_eq!(refused.acme_type(), "badSignatureAlgorithm");
        assert_eq!(
            Problem::from(refused).to_json(),
            serde_json::json!({
                "type": "urn:ietf:params:acme:error:badSignatureAlgorithm",
                "detail": format!(
                    "JWS algorithm \"none\" is not accepted; use one of {}",
                    ALLOWED_ALGS.join(", ")
                ),
                "status": 400,
                "algorithms": ALLOWED_ALGS,
            })
        );
        // A database failure is logged, never shown.
        let store = Problem::from(JwsError::Store(crate::store::StoreError::Corrupt(
            "a row".into(),
        )));
        assert_eq!(store.short_type(), "serverInternal");
        assert_eq!(
            store.detail,
            "the server could not complete the request; it is safe to retry"
        );
    }

    #[test]
    fn contacts_are_refused_as_acme_contact_problems() {
        assert!(crate::ra::check_contacts(&["mailto:a@b.test".into()]).is_ok());
        assert_eq!(
            crate::ra::check_contacts(&["tel:+1".into()])
                .map_err(Problem::from)
                .unwrap_err()
                .short_type(),
            "unsupportedContact"
        );
        assert_eq!(
            crate::ra::check_contacts(&["mailto:a@b.test?subject=x".into()])
                .map_err(Problem::from)
                .unwrap_err()
                .short_type(),
            "invalidContact"
        );
        assert_eq!(
            crate::ra::check_contacts(&["mailto:a@b.test,c@d.test".into()])
                .map_err(Problem::from)
                .unwrap_err()
                .short_type(),
            "invalidContact"
        );
    }
}

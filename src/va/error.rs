//! Why a validation or a CAA check failed, in the validator's own terms.
//!
//! RFC 8555 §8 has a failed challenge carry an error from the ACME error types of §6.7; each
//! kind here stands for one of them. The ACME surface turns a `ValidationError` into its problem
//! document (`api::acme::problem`), so the validator does not depend on any surface.

/// One failure kind per ACME error type the validator reports (RFC 8555 §6.7, §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValidationErrorKind {
    /// `malformed`: a challenge the validator cannot run (unknown type, an identifier the
    /// challenge does not apply to, a name that cannot be sent as SNI).
    Malformed,
    /// `connection`: the server could not connect to, or finish talking with, the validation
    /// target in time.
    Connection,
    /// `dns`: a DNS lookup of the validation failed (RFC 8555 §8.4, and the name resolution of
    /// http-01 and tls-alpn-01).
    Dns,
    /// `caa`: CAA records forbid issuance, or could not be looked up (RFC 8659, RFC 8657).
    Caa,
    /// `incorrectResponse`: the response did not hold the expected key authorization.
    IncorrectResponse,
    /// `tls`: the TLS handshake of tls-alpn-01 failed (RFC 8737).
    Tls,
    /// `unauthorized`: the target answered, but not as the challenge requires (an HTTP error,
    /// too large a body, a wrong tls-alpn-01 certificate or protocol).
    Unauthorized,
    /// `serverInternal`: the validator itself failed.
    Internal,
}

impl ValidationErrorKind {
    /// The RFC 8555 §6.7 error type this kind stands for, without its URN prefix.
    pub fn acme_type(self) -> &'static str {
        match self {
            ValidationErrorKind::Malformed => "malformed",
            ValidationErrorKind::Connection => "connection",
            ValidationErrorKind::Dns => "dns",
            ValidationErrorKind::Caa => "caa",
            ValidationErrorKind::IncorrectResponse => "incorrectResponse",
            ValidationErrorKind::Tls => "tls",
            ValidationErrorKind::Unauthorized => "unauthorized",
            ValidationErrorKind::Internal => "serverInternal",
        }
    }

    /// The HTTP status a problem of this type carries.
    pub fn status(self) -> u16 {
        match self {
            ValidationErrorKind::Caa
            | ValidationErrorKind::IncorrectResponse
            | ValidationErrorKind::Unauthorized => 403,
            ValidationErrorKind::Internal => 500,
            _ => 400,
        }
    }
}

/// A failed validation: its kind and the detail shown to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    pub kind: ValidationErrorKind,
    pub detail: String,
}

macro_rules! kinds {
    ($($fn:ident => $kind:ident;)*) => {
        impl ValidationError {
            $(
                pub fn $fn(detail: impl Into<String>) -> ValidationError {
                    ValidationError {
                        kind: ValidationErrorKind::$kind,
                        detail: detail.into(),
                    }
                }
            )*
        }
    };
}

kinds! {
    malformed => Malformed;
    connection => Connection;
    dns => Dns;
    caa => Caa;
    incorrect_response => IncorrectResponse;
    tls => Tls;
    unauthorized => Unauthorized;
    internal => Internal;
}

impl std::fmt::Display for ValidationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.detail)
    }
}

impl std::error::Error for ValidationError {}

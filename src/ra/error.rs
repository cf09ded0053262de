//! What the RA refuses or fails, in its own terms: one enum, each variant with a stable code
//! (logged as `code`, greppable across releases), mapped once at each surface's edge to that
//! surface's error shape (`api::acme::problem` for ACME), as kanidm's `OperationError` is.

use crate::store::StoreError;
use crate::va::ValidationError;

#[derive(Debug, thiserror::Error)]
pub enum RaError {
    /// The request is not well formed for what it asks.
    #[error("{0}")]
    Malformed(String),
    /// No such resource (or not one the caller may know of).
    #[error("{0}")]
    NotFound(String),
    /// The caller may not do this to this resource.
    #[error("{0}")]
    Unauthorized(String),
    /// The key names no account.
    #[error("{0}")]
    NoAccount(String),
    /// An external account binding is required (RFC 8555 §7.3.4).
    #[error("{0}")]
    BindingRequired(String),
    /// The terms of service must be agreed to first.
    #[error("{0}")]
    TermsNotAgreed(String),
    /// A contact is not acceptable.
    #[error("{0}")]
    InvalidContact(String),
    /// A contact's scheme is not supported.
    #[error("{0}")]
    UnsupportedContact(String),
    /// The resource is not in a state that allows this.
    #[error("{0}")]
    Conflict(String),
    /// The new key belongs to another account (its id, when it could be read, for the surface
    /// to name it).
    #[error("{detail}")]
    KeyInUse {
        detail: String,
        account_id: Option<String>,
    },
    /// Policy does not allow issuing for this identifier.
    #[error("{0}")]
    IdentifierRefused(String),
    /// The profile is not offered, or not to this account.
    #[error("{0}")]
    ProfileRefused(String),
    /// Too many requests; worth retrying after `retry_after` seconds.
    #[error("{detail}")]
    RateLimited { detail: String, retry_after: u64 },
    /// The certificate is replaced by another order already (RFC 9773 §5).
    #[error("{0}")]
    AlreadyReplaced(String),
    /// The order is not ready to be finalized.
    #[error("{0}")]
    NotReady(String),
    /// The CSR is not acceptable.
    #[error("{0}")]
    BadCsr(String),
    /// The CSR's key is not acceptable.
    #[error("{0}")]
    WeakKey(String),
    /// A validation or CAA check failed.
    #[error("{0}")]
    Validation(ValidationError),
    /// The revocation reason is not one pkid accepts.
    #[error("{0}")]
    BadRevocationReason(String),
    /// The certificate is revoked already.
    #[error("{0}")]
    AlreadyRevoked(String),
    /// Something failed on pkid's side; the detail is safe to show.
    #[error("{0}")]
    Internal(String),
    /// A signing backend (an HSM, a key store, an upstream CA) cannot do its part now: worth
    /// retrying later. Nothing was written; the detail is logged, the caller is told to retry.
    #[error("{0}")]
    Unavailable(String),
    /// The database failed; logged where it is mapped, never shown.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

impl RaError {
    /// The stable code of this error, for logs and dashboards.
    pub fn code(&self) -> &'static str {
        match self {
            RaError::Malformed(_) => "PKID-RA-MALFORMED",
            RaError::NotFound(_) => "PKID-RA-NOT-FOUND",
            RaError::Unauthorized(_) => "PKID-RA-UNAUTHORIZED",
            RaError::NoAccount(_) => "PKID-RA-NO-ACCOUNT",
            RaError::BindingRequired(_) => "PKID-RA-BINDING-REQUIRED",
            RaError::TermsNotAgreed(_) => "PKID-RA-TERMS",
            RaError::InvalidContact(_) => "PKID-RA-CONTACT",
            RaError::UnsupportedContact(_) => "PKID-RA-CONTACT-SCHEME",
            RaError::Conflict(_) => "PKID-RA-CONFLICT",
            RaError::KeyInUse { .. } => "PKID-RA-KEY-IN-USE",
            RaError::IdentifierRefused(_) => "PKID-RA-IDENTIFIER",
            RaError::ProfileRefused(_) => "PKID-RA-PROFILE",
            RaError::RateLimited { .. } => "PKID-RA-RATE-LIMITED",
            RaError::AlreadyReplaced(_) => "PKID-RA-REPLACED",
            RaError::NotReady(_) => "PKID-RA-NOT-READY",
            RaError::BadCsr(_) => "PKID-RA-CSR",
            RaError::WeakKey(_) => "PKID-RA-WEAK-KEY",
            RaError::Validation(_) => "PKID-RA-VALIDATION",
            RaError::BadRevocationReason(_) => "PKID-RA-REVOCATION-REASON",
            RaError::AlreadyRevoked(_) => "PKID-RA-ALREADY-REVOKED",
            RaError::Internal(_) => "PKID-RA-INTERNAL",
            RaError::Unavailable(_) => "PKID-RA-UNAVAILABLE",
            RaError::Store(_) => "PKID-STORE",
        }
    }
}

impl From<ValidationError> for RaError {
    fn from(e: ValidationError) -> RaError {
        RaError::Validation(e)
    }
}

/// An RFC 7807 problem document with an RFC 8555 §6.7 error type, as the RA stores it in an
/// order's or a challenge's `error` (RFC 8555 §7.1.3, §8): the order lifecycle the RA runs is
/// RFC 8555's, and these documents are part of its objects. Members in the order every stored
/// document has always had.
pub fn problem_document(acme_type: &str, status: u16, detail: &str) -> String {
    #[derive(serde::Serialize)]
    struct Document<'a> {
        #[serde(rename = "type")]
        kind: String,
        detail: &'a str,
        status: u16,
    }
    serde_json::to_string(&Document {
        kind: format!("urn:ietf:params:acme:error:{acme_type}"),
        detail,
        status,
    })
    .unwrap_or_default()
}

//! The IAM surface's wire types, field for field with IAM's certificate linking requests API
//! and proxy certificate API: what the handlers read and write, and, through
//! `utoipa::ToSchema`, what the OpenAPI document (`openapi.rs`) says they are.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::store::CertLinkRequestRow;

/// Errors: `{"error": message}` (400, 404, 405, 412, 413, 429, 503).
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: String,
}

/// 401 `{"error": "unauthorized", …}` and 403 `{"error": "access_denied", …}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuthErrorBody {
    /// `unauthorized` or `access_denied`.
    pub error: String,
    pub error_description: String,
}

/// `POST /iam/cert_link_requests`: a label and the certificate, as a PEM or by its subject and
/// issuer.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NewCertLinkRequest {
    /// A non-empty label.
    pub label: Option<String>,
    /// The certificate, PEM.
    pub pem_encoded_certificate: Option<String>,
    /// The certificate's subject, RFC 2253.
    pub subject_dn: Option<String>,
    /// The certificate's issuer, RFC 2253: one of `GET /iam/api/trusts`.
    pub issuer_dn: Option<String>,
    /// A note to the administrator; default "".
    pub notes: Option<String>,
}

/// The status of a certificate linking request.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum LinkStatus {
    Pending,
    Approved,
    Rejected,
}

/// A certificate linking request.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertLinkRequest {
    pub uuid: String,
    /// The requesting account.
    pub user_uuid: String,
    /// The account's name (pkid keeps no full names: its username).
    pub user_full_name: String,
    pub username: String,
    pub label: String,
    /// RFC 2253, no spaces (`CN=test0,O=IGI,C=IT`).
    pub subject_dn: String,
    pub issuer_dn: String,
    pub status: LinkStatus,
    /// Why it was rejected: on rejected requests only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub motivation: Option<String>,
    /// The note to the administrator, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    /// The certificate, when the request gave it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pem_encoded_certificate: Option<String>,
    /// Milliseconds since the epoch.
    pub creation_time: i64,
    pub last_update_time: i64,
}

impl From<CertLinkRequestRow> for CertLinkRequest {
    fn from(row: CertLinkRequestRow) -> CertLinkRequest {
        use crate::store::CertLinkStatus as S;
        let status = match row.status {
            S::Pending => LinkStatus::Pending,
            S::Approved => LinkStatus::Approved,
            S::Rejected => LinkStatus::Rejected,
        };
        CertLinkRequest {
            uuid: row.uuid,
            user_uuid: row.user_id,
            user_full_name: row.username.clone(),
            username: row.username,
            label: row.label,
            subject_dn: row.subject_dn,
            issuer_dn: row.issuer_dn,
            status,
            motivation: row
                .motivation
                .filter(|_| matches!(status, LinkStatus::Rejected)),
            notes: Some(row.notes).filter(|n| !n.is_empty()),
            pem_encoded_certificate: row.certificate_pem,
            creation_time: row.creation_time,
            last_update_time: row.last_update_time,
        }
    }
}

/// A page of certificate linking requests (IAM's list envelope).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertLinkRequestList {
    /// How many requests the filters match.
    pub total_results: u64,
    /// How many are in this page.
    pub items_per_page: u64,
    /// The 1-based index of the first.
    pub start_index: u64,
    #[serde(rename = "Resources")]
    pub resources: Vec<CertLinkRequest>,
}

/// The trust anchors: their subjects, RFC 2253 (IAM's list envelope).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrustList {
    pub total_results: u64,
    pub items_per_page: u64,
    pub start_index: u64,
    #[serde(rename = "Resources")]
    pub resources: Vec<String>,
}

/// The filters and the page of `GET /iam/cert_link_requests`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)] // The query is parsed by hand (each parameter at most once).
pub struct ListQuery {
    /// The requesting account's username (administrators; others see their own only).
    pub username: Option<String>,
    /// The certificate's subject, RFC 2253.
    pub subject_dn: Option<String>,
    /// `PENDING`, `APPROVED` or `REJECTED`.
    pub status: Option<LinkStatus>,
    /// The 1-based index of the first result; default 1.
    #[param(minimum = 1)]
    pub start_index: Option<i64>,
    /// How many results (at most 10); default 10.
    #[param(minimum = 0)]
    pub count: Option<i64>,
}

/// `POST /iam/cert_link_requests/{uuid}/reject`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Parsed by hand, from the query or a form body.
pub struct RejectQuery {
    /// Why (not blank).
    pub motivation: String,
}

/// `PUT /iam/account/me/proxycert`: a proxy file (the proxy, its unencrypted private key, the
/// chain; at most 8192 characters).
#[derive(Debug, Deserialize, ToSchema)]
pub struct ProxyUpload {
    pub certificate_chain: String,
}

/// The form of `POST /iam/proxycert` (`application/x-www-form-urlencoded`).
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code, non_snake_case)] // Parsed by hand; IAM's parameter names.
pub struct ProxyForm {
    pub client_id: String,
    pub client_secret: String,
    /// Seconds, at least 120; capped at the configured maximum and the stored proxy's life.
    #[schema(minimum = 120)]
    pub lifetimeSecs: Option<i64>,
    /// The issuer DN of the end-entity certificate whose stored proxy to use.
    #[schema(max_length = 128)]
    pub issuer: Option<String>,
    /// The same, by the name IAM's documentation uses.
    #[schema(max_length = 128)]
    pub issuerDn: Option<String>,
}

/// A generated proxy.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProxyCertificate {
    /// The new proxy's subject, RFC 2253.
    pub subject: String,
    /// Its issuer: the stored proxy's subject.
    pub issuer: String,
    /// The end-entity certificate's subject.
    pub identity: String,
    /// Milliseconds since the epoch, as a string.
    pub not_after: String,
    /// The new proxy (PEM), its private key (PKCS#1 PEM), then the stored chain's non-CA
    /// certificates.
    pub certificate_chain: String,
}

//! The Notary surface's wire types, field for field with Notary (the seed document, and
//! SEED-NOTES for what it is silent on): what its handlers read and write, and, through
//! `utoipa::ToSchema`, what its OpenAPI document (`openapi.rs`) says they are. Envelopes:
//! `{"result": …}` on success, `{"error": "…"}` otherwise.

use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

/// Every error: `{"error": message}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: String,
}

/// `{"message": "success"}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Done {
    pub message: String,
}

/// `{"message": "success", "id": N}`: what a create answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct Created {
    pub message: String,
    pub id: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DoneAnswer {
    pub result: Done,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedAnswer {
    pub result: Created,
}

/// A certificate request's status, exactly as Notary spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub enum RequestStatus {
    Outstanding,
    Active,
    Rejected,
    Revoked,
}

impl RequestStatus {
    pub fn parse(stored: &str) -> RequestStatus {
        match stored {
            "Active" => RequestStatus::Active,
            "Rejected" => RequestStatus::Rejected,
            "Revoked" => RequestStatus::Revoked,
            _ => RequestStatus::Outstanding,
        }
    }
}

/// A certificate request.
#[derive(Debug, Serialize, ToSchema)]
pub struct CertificateRequest {
    pub id: i64,
    /// The CSR, PEM.
    pub csr: String,
    /// The certificate, its issuers and the root (PEM); `""` until there is one.
    pub certificate_chain: String,
    pub status: RequestStatus,
    /// The e-mail address of the account that submitted it.
    pub email: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RequestListAnswer {
    pub result: Vec<CertificateRequest>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RequestAnswer {
    pub result: CertificateRequest,
}

/// `POST /certificate_requests`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateRequest {
    /// The certificate signing request, PEM.
    pub csr: String,
}

/// `POST /certificate_requests/{id}/certificate`: a chain an outside CA issued.
#[derive(Debug, Deserialize, ToSchema)]
pub struct UploadCertificate {
    /// The certificate, then its issuers (PEM, at least two certificates).
    pub certificate: String,
}

/// `POST …/sign`: which CA signs.
#[derive(Debug, Deserialize, ToSchema)]
pub struct SignWith {
    /// The CA's id (Notary sends it as a string; a number is taken too).
    #[serde(deserialize_with = "id_text")]
    #[schema(value_type = String)]
    pub certificate_authority_id: String,
}

/// The optional body of a revocation (pkid's addition: Notary revokes without a reason).
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct RevokeWith {
    /// RFC 5280 §5.3.1 reason: `unspecified`, `keyCompromise`, `cACompromise`,
    /// `affiliationChanged`, `superseded`, `cessationOfOperation`, `certificateHold`,
    /// `privilegeWithdrawn`, `aACompromise`; absent: `unspecified`.
    #[serde(default)]
    pub reason: Option<String>,
}

/// A certificate authority.
#[derive(Debug, Serialize, ToSchema)]
pub struct CertificateAuthority {
    pub id: i64,
    pub enabled: bool,
    /// `active`, `pending` (no certificate yet), `disabled`, `expired` or `revoked`.
    pub status: String,
    /// Its certificate chain (its own certificate first, root last), PEM; `""` until it has one.
    pub certificate: String,
    /// Its certificate signing request, PEM.
    pub csr: String,
    /// Its current CRL, PEM; `""` until it has a certificate.
    pub crl: String,
    /// pkid's: the issuer name (its CRL is also at `/crl/NAME.crl`).
    pub name: String,
    /// pkid's: `software` or `pkcs11`.
    pub key_custody: String,
    /// pkid's: the key's algorithm.
    pub key_algorithm: String,
    /// pkid's: the CA here that signed it.
    pub parent_id: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CaListAnswer {
    pub result: Vec<CertificateAuthority>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CaAnswer {
    pub result: CertificateAuthority,
}

/// `POST /certificate_authorities`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateCa {
    /// A self-signed root (enabled at once), or an intermediate that waits, disabled, for its
    /// certificate (`POST …/{id}/sign` or `…/{id}/certificate`).
    #[serde(default)]
    pub self_signed: bool,
    pub common_name: String,
    /// One DNS name for the CA's subjectAltName.
    #[serde(default)]
    pub sans_dns: String,
    /// Two letters (ISO 3166-1 alpha-2).
    #[serde(default)]
    pub country_name: String,
    #[serde(default)]
    pub state_or_province_name: String,
    #[serde(default)]
    pub locality_name: String,
    #[serde(default)]
    pub organization_name: String,
    #[serde(default)]
    pub organizational_unit_name: String,
    /// RFC 3339; absent: 10 years for a root, 5 for an intermediate.
    #[serde(default)]
    pub not_valid_after: String,
    /// pkid's: the issuer name (lowercase letters, digits, `-`); absent: `ca-<id>`.
    #[serde(default)]
    pub name: Option<String>,
    /// pkid's: `software` or `pkcs11`; absent: the configured custody.
    #[serde(default)]
    pub key_custody: Option<String>,
    /// pkid's: `ecdsa-p256`, `ecdsa-p384`, `rsa2048`, `rsa3072`, `rsa4096`, `ed25519`.
    #[serde(default)]
    pub key_algorithm: Option<String>,
}

/// `PUT /certificate_authorities/{id}`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateCa {
    pub enabled: bool,
}

/// `POST /certificate_authorities/{id}/certificate`: a chain from an outside CA.
#[derive(Debug, Deserialize, ToSchema)]
pub struct UploadCaChain {
    /// The CA's certificate, then its issuers, PEM.
    pub certificate_chain: String,
}

/// `{"crl": "<PEM>"}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Crl {
    pub crl: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CrlAnswer {
    pub result: Crl,
}

/// An account (an identity user).
#[derive(Debug, Serialize, ToSchema)]
pub struct Account {
    pub id: i64,
    pub email: String,
    /// 0 admin, 1 certificate manager, 2 certificate requestor, 3 read-only.
    pub role_id: u8,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AccountListAnswer {
    pub result: Vec<Account>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AccountAnswer {
    pub result: Account,
}

/// `POST /accounts`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateAccount {
    pub email: String,
    /// At least 8 characters, with a capital, a lowercase letter, and a digit or a symbol.
    pub password: String,
    /// 0 admin, 1 certificate manager, 2 certificate requestor, 3 read-only.
    pub role_id: u8,
}

/// `POST /accounts/{id}/change_password`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ChangePassword {
    pub password: String,
}

/// `GET /status`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Status {
    /// Whether an account exists.
    pub initialized: bool,
    pub version: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StatusAnswer {
    pub result: Status,
}

/// An id sent as a string (Notary's way) or a number.
fn id_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        Text(String),
        Number(i64),
    }
    Ok(match Id::deserialize(deserializer)? {
        Id::Text(text) => text,
        Id::Number(n) => n.to_string(),
    })
}

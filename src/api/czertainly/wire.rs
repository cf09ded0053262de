//! The wire types of the CZERTAINLY-style surface, field for field with the Client Operations
//! API 2.13.0 (request and response DTOs, attribute definitions, errors) and the management
//! resources (authorities, RA profiles), plus pkid's own: the certificate record with its
//! operation status and events. Each derives its OpenAPI schema.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// `{"message": "…"}`: the error body of 400, 404, 502, 503.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorMessageDto {
    pub message: String,
}

/// The 403 problem body.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthenticationErrorDto {
    pub status_code: u16,
    pub code: String,
    pub message: String,
}

/// One value of an attribute's content.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct BaseAttributeContentDto {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// A string, integer or boolean value (any JSON value).
    pub data: Value,
}

/// An attribute as a request gives it.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestAttributeDto {
    #[serde(default)]
    pub uuid: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub content_type: Option<String>,
    #[serde(default)]
    pub content: Vec<BaseAttributeContentDto>,
}

/// An attribute's content as a response shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResponseAttributeDto {
    pub uuid: String,
    pub name: String,
    pub label: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub content_type: String,
    pub content: Vec<BaseAttributeContentDto>,
}

/// How an attribute definition is shown.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataAttributePropertiesDto {
    pub label: String,
    pub visible: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    pub required: bool,
    pub read_only: bool,
    pub list: bool,
    pub multi_select: bool,
}

/// A constraint on an attribute's values.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttributeConstraintDto {
    pub description: String,
    pub error_message: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub data: String,
}

/// An attribute definition (`GET …/attributes/issue`, `…/attributes/revoke`).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataAttributeDto {
    pub uuid: String,
    pub name: String,
    pub description: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub content: Vec<BaseAttributeContentDto>,
    pub content_type: String,
    pub properties: DataAttributePropertiesDto,
    pub constraints: Vec<AttributeConstraintDto>,
}

/// `POST …/certificates`: issue.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientCertificateSignRequestDto {
    /// Attributes to build a CSR from a managed key; required without a CSR.
    #[serde(default)]
    pub csr_attributes: Vec<RequestAttributeDto>,
    /// Attributes to sign the CSR with.
    #[serde(default)]
    pub signature_attributes: Vec<RequestAttributeDto>,
    /// The CSR, Base64 (of DER, or of PEM).
    #[serde(default)]
    pub request: Option<String>,
    /// `pkcs10` (default) or `crmf`.
    #[serde(default)]
    pub format: Option<String>,
    #[serde(default)]
    pub token_profile_uuid: Option<String>,
    #[serde(default)]
    pub key_uuid: Option<String>,
    /// The RA profile's issue attributes.
    #[serde(default)]
    pub attributes: Vec<RequestAttributeDto>,
    #[serde(default)]
    pub custom_attributes: Vec<RequestAttributeDto>,
}

/// The answer to issue, renew, rekey and issue-New.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientCertificateDataResponseDto {
    /// Base64 DER; `""` while the certificate is pending.
    pub certificate_data: String,
    pub uuid: String,
}

/// `POST …/certificates/{uuid}/renew`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientCertificateRenewRequestDto {
    #[serde(default)]
    pub replace_in_locations: Option<bool>,
    /// A CSR over the same key; none: the certificate's own CSR again.
    #[serde(default)]
    pub request: Option<String>,
    #[serde(default)]
    pub format: Option<String>,
}

/// `POST …/certificates/{uuid}/rekey`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientCertificateRekeyRequestDto {
    #[serde(default)]
    pub replace_in_locations: Option<bool>,
    /// A CSR over a new key for the same subject; none: built from the managed key.
    #[serde(default)]
    pub request: Option<String>,
    #[serde(default)]
    pub format: Option<String>,
    #[serde(default)]
    pub key_uuid: Option<String>,
    #[serde(default)]
    pub token_profile_uuid: Option<String>,
    #[serde(default)]
    pub signature_attributes: Vec<RequestAttributeDto>,
}

/// `POST …/certificates/{uuid}/revoke`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientCertificateRevocationDto {
    /// `unspecified` (default), `keyCompromise`, `cACompromise`, `affiliationChanged`,
    /// `superseded`, `cessationOfOperation`, `certificateHold`, `privilegeWithdrawn`,
    /// `aACompromise`; any case.
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub attributes: Vec<RequestAttributeDto>,
    #[serde(default)]
    pub destroy_key: Option<bool>,
}

/// An authority: an issuer pkid holds.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthorityInstanceDto {
    pub uuid: String,
    pub name: String,
    /// `local` (pkid signs: software or PKCS#11 key) or `upstream` (ACME CA, CFSSL signer).
    pub kind: String,
    pub status: String,
}

/// An RA profile.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RaProfileDto {
    pub uuid: String,
    pub name: String,
    pub description: String,
    pub authority_instance_uuid: String,
    pub authority_instance_name: String,
    pub legacy_authority: bool,
    pub enabled: bool,
    pub attributes: Vec<ResponseAttributeDto>,
    pub custom_attributes: Vec<ResponseAttributeDto>,
    pub enabled_protocols: Vec<String>,
}

/// `POST /v1/authorities/{a}/raProfiles`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AddRaProfileRequestDto {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Enabled unless `false`.
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub attributes: Vec<RequestAttributeDto>,
    #[serde(default)]
    pub custom_attributes: Vec<RequestAttributeDto>,
}

/// `PUT /v1/authorities/{a}/raProfiles/{r}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EditRaProfileRequestDto {
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub attributes: Vec<RequestAttributeDto>,
    #[serde(default)]
    pub custom_attributes: Vec<RequestAttributeDto>,
}

/// `{"uuid": …}`: what a create answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct UuidDto {
    pub uuid: String,
}

/// The operation last accepted on a certificate record, and how it went.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperationStatusDto {
    /// `issue`, `renew`, `rekey` or `revoke`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `accepted`, `running`, `succeeded` or `failed`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The authority has not issued yet and pkid collects the certificate.
    pub waiting_for_authority: bool,
}

/// One event of a certificate's history.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertificateEventDto {
    /// RFC 3339.
    pub at: String,
    pub event: String,
    pub status: String,
    pub message: String,
    pub actor: String,
}

/// pkid's certificate record (`GET …/certificates/{uuid}`): its state, the certificate once
/// issued, the operation's status and the history.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertificateRecordDto {
    pub uuid: String,
    /// `requested`, `pending_approval`, `pending_issue`, `pending_revoke`, `issued`, `failed`,
    /// `rejected` or `revoked`.
    pub state: String,
    pub ra_profile_uuid: String,
    pub authority_name: String,
    pub subject_dn: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial_number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_certificate_uuid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_uuid: Option<String>,
    /// Base64 DER; `""` until issued.
    pub certificate_data: String,
    pub operation: OperationStatusDto,
    pub events: Vec<CertificateEventDto>,
    pub created_at: String,
    pub updated_at: String,
}

/// One `{name, value}` of an end entity's extension data.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct EndEntityExtendedInfoDto {
    pub name: String,
    pub value: String,
}

/// An end entity (v1).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndEntityDto {
    #[serde(rename = "subjectDN")]
    pub subject_dn: String,
    pub email: String,
    pub extension_data: Vec<EndEntityExtendedInfoDto>,
    pub subject_alt_name: String,
    /// `NEW`, `FAILED`, `INITIALIZED`, `IN_PROCESS`, `GENERATED`, `REVOKED`, `HISTORICAL`,
    /// `KEY_RECOVERY` or `WAITING_FOR_ADD_APPROVAL`.
    pub status: String,
    pub username: String,
}

/// `POST /v1/operations/{raProfileName}/endentity`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AddEndEntityRequestDto {
    /// The RA profile of the end entity (the one in the path is used).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub ra_profile: Option<Value>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub extension_data: Vec<EndEntityExtendedInfoDto>,
    pub password: String,
    #[serde(default)]
    pub subject_alt_name: Option<String>,
    #[serde(rename = "subjectDN")]
    pub subject_dn: String,
    pub username: String,
}

/// `POST /v1/operations/{raProfileName}/endentity/{username}` (edit).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EditEndEntityRequestDto {
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub ra_profile: Option<Value>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub extension_data: Vec<EndEntityExtendedInfoDto>,
    pub password: String,
    #[serde(default)]
    pub subject_alt_name: Option<String>,
    #[serde(rename = "subjectDN")]
    pub subject_dn: String,
    pub status: String,
}

/// `PUT /v1/operations/{raProfileName}/endentity/{username}/resetPassword`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ResetPasswordRequestDto {
    pub password: String,
}

/// `POST /v1/operations/{raProfileName}/certificate/issue`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ClientCertificateSignRequestV1Dto {
    pub password: String,
    /// Base64 PKCS#10.
    pub pkcs10: String,
    pub username: String,
}

/// The answer to a v1 issue.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientCertificateSignResponseDto {
    /// Base64 DER; `""` while pending at a slow authority.
    pub certificate_data: String,
}

/// `POST /v1/operations/{raProfileName}/certificate/revoke`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ClientCertificateRevocationV1Dto {
    #[serde(rename = "certificateSN")]
    pub certificate_sn: String,
    #[serde(rename = "issuerDN")]
    pub issuer_dn: String,
    #[serde(default)]
    pub reason: Option<String>,
}

/// A token profile: where managed keys live (pkid's own resource, after CZERTAINLY's).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenProfileDto {
    pub uuid: String,
    pub name: String,
    /// `software` (sealed with the key-encryption key) or `pkcs11`.
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_label: Option<String>,
    /// The environment variable holding the token's PIN (never the PIN).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pin_env: Option<String>,
}

/// `POST /v1/tokenProfiles`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AddTokenProfileRequestDto {
    pub name: String,
    /// `software` or `pkcs11`.
    pub kind: String,
    #[serde(default)]
    pub module: Option<String>,
    #[serde(default)]
    pub token_label: Option<String>,
    #[serde(default)]
    pub pin_env: Option<String>,
}

/// A managed key.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyDto {
    pub uuid: String,
    pub token_profile_uuid: String,
    pub name: String,
    /// `ecdsa-p256`, `ecdsa-p384`, `rsa2048`, `rsa3072`, `rsa4096` or `ed25519`.
    pub algorithm: String,
    /// SubjectPublicKeyInfo, Base64 DER.
    pub public_key: String,
    /// `active` or `destroyed`.
    pub state: String,
}

/// `POST /v1/tokenProfiles/{tokenProfileUuid}/keys`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct AddKeyRequestDto {
    pub name: String,
    /// `ecdsa-p256` (the default), `ecdsa-p384`, `rsa2048`, `rsa3072`, `rsa4096`, `ed25519`.
    #[serde(default)]
    pub algorithm: Option<String>,
}

//! The v2 client operations (`/v2/operations/authorities/{authorityUuid}/raProfiles/
//! {raProfileUuid}/…`), Client Operations API 2.13.0: the issue and revoke attributes and their
//! validation, issue, issue-New, renew, rekey and revoke; and pkid's own: the certificate record
//! with its operation's status and history (`GET …/certificates/{uuid}`), and the approval of a
//! request an RA profile holds for it (`…/approve`, `…/reject`).
//!
//! The RA profile must be enabled and belong to the authority for every operation, and be the
//! certificate's own for those on a certificate (`Ra::usable_profile`, `Ra::record_of`).

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use http::StatusCode;

use super::management::given;
use super::routes::Route;
use super::wire::{
    AttributeConstraintDto, BaseAttributeContentDto, CertificateEventDto, CertificateRecordDto,
    ClientCertificateDataResponseDto, ClientCertificateRekeyRequestDto,
    ClientCertificateRenewRequestDto, ClientCertificateRevocationDto,
    ClientCertificateSignRequestDto, DataAttributeDto, DataAttributePropertiesDto,
    OperationStatusDto, RequestAttributeDto,
};
use super::{ok_json, Answer, Call, CzertainlyApi, Failure};
use crate::api::Reply;
use crate::ra::attributes::{self, Definition, Given};
use crate::ra::profiles::ProfileSettings;
use crate::ra::ra_certificates::{revocation_reason, state, CertificateRequest, Outcome};
use crate::store::RaCertificateRow;

pub(super) async fn serve(api: &CzertainlyApi, route: Route, call: &Call<'_>) -> Answer {
    let profile = api
        .ra
        .usable_profile(
            call.params.get("authorityUuid"),
            call.params.get("raProfileUuid"),
        )
        .await?;
    let certificate_uuid = call.params.get("certificateUuid");
    let actor = call.actor();
    match route {
        Route::IssueAttributes => {
            let settings = ProfileSettings::of(&profile)?;
            let definitions = attributes::ISSUE
                .iter()
                .map(|d| definition_dto(d, Some(serde_json::json!(settings.validity_days))))
                .collect::<Vec<_>>();
            Ok(ok_json(StatusCode::OK, &definitions))
        }
        Route::RevokeAttributes => {
            let definitions = attributes::REVOKE
                .iter()
                .map(|d| definition_dto(d, None))
                .collect::<Vec<_>>();
            Ok(ok_json(StatusCode::OK, &definitions))
        }
        Route::ValidateIssueAttributes | Route::ValidateRevokeAttributes => {
            let list: Vec<RequestAttributeDto> = call.json()?;
            let definitions = if route == Route::ValidateIssueAttributes {
                attributes::ISSUE
            } else {
                attributes::REVOKE
            };
            let checked =
                attributes::check(definitions, &given(&list)).map_err(Failure::unprocessable)?;
            if route == Route::ValidateIssueAttributes {
                let settings = ProfileSettings::of(&profile)?;
                if let Some(days) = checked.integer(attributes::VALIDITY_DAYS) {
                    if !(1..=settings.validity_days).contains(&days) {
                        return Err(Failure::unprocessable(vec![format!(
                            "validityDays must be 1 to {} under this RA profile",
                            settings.validity_days
                        )]));
                    }
                }
            }
            Ok(Reply::empty(StatusCode::OK))
        }
        Route::Issue => {
            let request: ClientCertificateSignRequestDto = call.json()?;
            let csr_attributes = given(&request.csr_attributes);
            let (csr_der, key_uuid) = csr_or_managed(
                api,
                [request.request.as_deref(), request.format.as_deref()],
                [
                    request.key_uuid.as_deref(),
                    request.token_profile_uuid.as_deref(),
                ],
                Built::Attributes(&csr_attributes),
            )
            .await?;
            let outcome = api
                .ra
                .request_certificate(
                    &profile,
                    CertificateRequest {
                        csr_der,
                        attributes: given(&request.attributes),
                        key_uuid,
                        end_entity: None,
                    },
                    &actor,
                )
                .await?;
            Ok(data_response(&outcome))
        }
        Route::Certificate => {
            let record = own(call, api.ra.record_of(&profile, certificate_uuid).await?)?;
            let dto = record_dto(api, &record).await?;
            Ok(ok_json(StatusCode::OK, &dto))
        }
        Route::IssueNew => {
            own(call, api.ra.record_of(&profile, certificate_uuid).await?)?;
            let outcome = api
                .ra
                .issue_requested(&profile, certificate_uuid, &actor)
                .await?;
            Ok(data_response(&outcome))
        }
        Route::Renew => {
            let request: ClientCertificateRenewRequestDto = call.json()?;
            check_format(request.format.as_deref())?;
            own(call, api.ra.record_of(&profile, certificate_uuid).await?)?;
            let csr_der = match &request.request {
                Some(text) if !text.trim().is_empty() => Some(decode_request(text)?),
                _ => None,
            };
            let outcome = api
                .ra
                .renew_certificate(&profile, certificate_uuid, csr_der, &actor)
                .await?;
            Ok(data_response(&outcome))
        }
        Route::Rekey => {
            let request: ClientCertificateRekeyRequestDto = call.json()?;
            let source = own(call, api.ra.record_of(&profile, certificate_uuid).await?)?;
            let (csr_der, key_uuid) = csr_or_managed(
                api,
                [request.request.as_deref(), request.format.as_deref()],
                [
                    request.key_uuid.as_deref(),
                    request.token_profile_uuid.as_deref(),
                ],
                Built::Subject(&source.csr),
            )
            .await?;
            let outcome = api
                .ra
                .rekey_certificate(&profile, certificate_uuid, csr_der, key_uuid, &actor)
                .await?;
            Ok(data_response(&outcome))
        }
        Route::Revoke => {
            let request: ClientCertificateRevocationDto = call.json()?;
            let reason_text = request.reason.as_deref().unwrap_or("unspecified");
            let reason = revocation_reason(reason_text).ok_or_else(|| {
                Failure::bad_request(format!(
                    "reason {reason_text:?} is not one of unspecified, keyCompromise, \
                     cACompromise, affiliationChanged, superseded, cessationOfOperation, \
                     certificateHold, privilegeWithdrawn, aACompromise"
                ))
            })?;
            own(call, api.ra.record_of(&profile, certificate_uuid).await?)?;
            api.ra
                .revoke_ra_certificate(
                    &profile,
                    certificate_uuid,
                    reason,
                    &given(&request.attributes),
                    request.destroy_key.unwrap_or(false),
                    &actor,
                )
                .await?;
            Ok(Reply::empty(StatusCode::NO_CONTENT))
        }
        Route::Approve | Route::Reject => {
            api.ra
                .decide_approval(&profile, certificate_uuid, route == Route::Approve, &actor)
                .await?;
            Ok(Reply::empty(StatusCode::NO_CONTENT))
        }
        _ => Err(Failure::not_found("no such resource")),
    }
}

/// A requestor acts on its own records only; the others are not found.
fn own(call: &Call<'_>, record: RaCertificateRow) -> Result<RaCertificateRow, Failure> {
    if call.sees_all() || record.owner == call.actor() {
        Ok(record)
    } else {
        Err(Failure::not_found(format!(
            "no certificate {}",
            record.uuid
        )))
    }
}

/// `{certificateData, uuid}`: the leaf as Base64 DER, `""` while pending.
fn data_response(outcome: &Outcome) -> Reply {
    ok_json(
        StatusCode::OK,
        &ClientCertificateDataResponseDto {
            certificate_data: outcome
                .certificate
                .as_deref()
                .map(|der| STANDARD.encode(der))
                .unwrap_or_default(),
            uuid: outcome.uuid.clone(),
        },
    )
}

/// `pkcs10` (the default) is taken; `crmf` is refused with a clear reason.
fn check_format(format: Option<&str>) -> Result<(), Failure> {
    match format.unwrap_or("pkcs10") {
        "pkcs10" => Ok(()),
        "crmf" => Err(Failure::unprocessable(vec![
            "CRMF requests (RFC 4211) are not supported: send a PKCS#10 request (format pkcs10)"
                .into(),
        ])),
        other => Err(Failure::unprocessable(vec![format!(
            "format {other:?} is not pkcs10 or crmf"
        )])),
    }
}

/// The CSR a request sends, in a format pkid takes; `None` when it sends none.
fn sent_request(request: Option<&str>, format: Option<&str>) -> Result<Option<Vec<u8>>, Failure> {
    check_format(format)?;
    request
        .filter(|t| !t.trim().is_empty())
        .map(decode_request)
        .transpose()
}

/// What a CSR built from a managed key names: an issue's `csrAttributes`, or (rekey) the
/// subject and names of the certificate's own CSR.
enum Built<'a> {
    Attributes(&'a [Given]),
    Subject(&'a [u8]),
}

/// The CSR a request sends ([request, format]); without one, one built on the server from
/// the managed key named by both its UUID and its token profile's ([keyUuid,
/// tokenProfileUuid]). The key's UUID comes back only with a CSR built from it: only then is
/// the key the certificate's (for `destroyKey`).
async fn csr_or_managed(
    api: &CzertainlyApi,
    [request, format]: [Option<&str>; 2],
    [key_uuid, token_profile_uuid]: [Option<&str>; 2],
    built: Built<'_>,
) -> Result<(Vec<u8>, Option<String>), Failure> {
    if let Some(der) = sent_request(request, format)? {
        return Ok((der, None));
    }
    let (Some(key), Some(token)) = (key_uuid, token_profile_uuid) else {
        return Err(Failure::unprocessable(vec![
            "request is required, or keyUuid and tokenProfileUuid to build one from a managed key"
                .into(),
        ]));
    };
    let csr = match built {
        Built::Attributes(attributes) => api.ra.managed_csr(token, key, attributes).await?,
        Built::Subject(source) => api.ra.managed_rekey_csr(token, key, source).await?,
    };
    Ok((csr, Some(key.to_string())))
}

/// A CSR as the seed sends it: Base64 of DER (or of a PEM text), or a PEM text itself.
pub(super) fn decode_request(text: &str) -> Result<Vec<u8>, Failure> {
    let bad = || {
        Failure::unprocessable(vec![
            "request is not a Base64-encoded PKCS#10 certificate signing request".into(),
        ])
    };
    let trimmed = text.trim();
    let from_pem = |pem_text: &[u8]| {
        pem::parse(pem_text)
            .ok()
            .filter(|p| p.tag() == "CERTIFICATE REQUEST" || p.tag() == "NEW CERTIFICATE REQUEST")
            .map(|p| p.contents().to_vec())
    };
    if trimmed.starts_with("-----BEGIN") {
        return from_pem(trimmed.as_bytes()).ok_or_else(bad);
    }
    let compact: String = trimmed.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes = STANDARD
        .decode(&compact)
        .or_else(|_| URL_SAFE_NO_PAD.decode(compact.trim_end_matches('=')))
        .map_err(|_| bad())?;
    if bytes.starts_with(b"-----BEGIN") {
        return from_pem(&bytes).ok_or_else(bad);
    }
    if bytes.is_empty() {
        return Err(bad());
    }
    Ok(bytes)
}

fn definition_dto(d: &Definition, default: Option<serde_json::Value>) -> DataAttributeDto {
    DataAttributeDto {
        uuid: d.uuid.into(),
        name: d.name.into(),
        description: d.description.into(),
        kind: "data".into(),
        content: default
            .into_iter()
            .map(|data| BaseAttributeContentDto {
                reference: None,
                data,
            })
            .collect(),
        content_type: d.content_type.as_str().into(),
        properties: DataAttributePropertiesDto {
            label: d.label.into(),
            visible: true,
            group: None,
            required: d.required,
            read_only: false,
            list: d.list,
            multi_select: false,
        },
        constraints: d
            .pattern
            .map(|p| AttributeConstraintDto {
                description: format!("{} must match {p}", d.name),
                error_message: format!("{} is not acceptable", d.name),
                kind: "regExp".into(),
                data: p.into(),
            })
            .into_iter()
            .collect(),
    }
}

async fn record_dto(
    api: &CzertainlyApi,
    record: &RaCertificateRow,
) -> Result<CertificateRecordDto, Failure> {
    let outcome = api.ra.outcome(record).await?;
    let events = api
        .reads
        .ra_certificate_events(&record.uuid)
        .await?
        .into_iter()
        .map(|e| CertificateEventDto {
            at: crate::pki::rfc3339(e.at),
            event: e.event,
            status: e.status,
            message: e.message,
            actor: e.actor,
        })
        .collect();
    Ok(CertificateRecordDto {
        uuid: record.uuid.clone(),
        state: record.state.clone(),
        ra_profile_uuid: record.ra_profile_uuid.clone(),
        authority_name: record.issuer.clone(),
        subject_dn: record.subject_dn.clone(),
        serial_number: record.serial.clone(),
        source_certificate_uuid: record.source_uuid.clone(),
        key_uuid: record.key_uuid.clone(),
        certificate_data: outcome
            .certificate
            .as_deref()
            .map(|der| STANDARD.encode(der))
            .unwrap_or_default(),
        operation: OperationStatusDto {
            kind: record.operation.clone(),
            status: record.operation_status.clone(),
            error: record.operation_error.clone(),
            waiting_for_authority: record.upstream_ref.is_some()
                && record.state == state::PENDING_ISSUE,
        },
        events,
        created_at: crate::pki::rfc3339(record.created_at),
        updated_at: crate::pki::rfc3339(record.updated_at),
    })
}

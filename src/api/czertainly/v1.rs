//! The v1 client operations (`/v1/operations/{raProfileName}/…`), Client Operations API 2.13.0:
//! issue for an end entity (its username and password, a PKCS#10 naming its subject DN),
//! revoke by serial number and issuer DN, and the end entities (list, add, get, edit by `POST`,
//! delete — which revokes their certificates first —, reset password). Profiles by name,
//! enabled only. The v1 answers carry no 422: what a client must fix is a 400 `{"message"}`.
//! Successful writes answer 200 with no body.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use http::StatusCode;

use super::routes::Route;
use super::v2::decode_request;
use super::wire::{
    AddEndEntityRequestDto, ClientCertificateRevocationV1Dto, ClientCertificateSignRequestV1Dto,
    ClientCertificateSignResponseDto, EditEndEntityRequestDto, EndEntityDto,
    EndEntityExtendedInfoDto, ResetPasswordRequestDto,
};
use super::{ok_json, Answer, Call, CzertainlyApi, Failure};
use crate::api::Reply;
use crate::identity::passwords::hash_password;
use crate::ra::end_entities::EndEntityFields;
use crate::ra::ra_certificates::revocation_reason;
use crate::ra::OperationError;
use crate::store::RaEndEntityRow;

/// v1 has no 422: the reasons become one 400 message.
fn v1_failure(e: OperationError) -> Failure {
    match e {
        OperationError::Invalid(reasons) => Failure::bad_request(reasons.join("; ")),
        other => other.into(),
    }
}

/// The argon2id hash of a new password, made off the request's thread.
async fn hashed(password: String) -> Result<String, Failure> {
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|_| Failure::bad_request("the password could not be hashed"))?
        .map_err(|e| Failure::bad_request(e.to_string()))
}

/// An end entity's fields as an add or an edit gives them, the password hashed.
async fn fields(
    password: String,
    subject_dn: String,
    subject_alt_name: Option<String>,
    email: Option<String>,
    extension_data: &[EndEntityExtendedInfoDto],
    status: Option<String>,
) -> Result<EndEntityFields, Failure> {
    Ok(EndEntityFields {
        password_hash: hashed(password).await?,
        subject_dn,
        subject_alt_name: subject_alt_name.unwrap_or_default(),
        email: email.unwrap_or_default(),
        extension_data: serde_json::to_string(extension_data).unwrap_or_else(|_| "[]".into()),
        status,
    })
}

fn entity_dto(row: RaEndEntityRow) -> EndEntityDto {
    EndEntityDto {
        subject_dn: row.subject_dn,
        email: row.email,
        extension_data: serde_json::from_str(&row.extension_data).unwrap_or_default(),
        subject_alt_name: row.subject_alt_name,
        status: row.status,
        username: row.username,
    }
}

pub(super) async fn serve(api: &CzertainlyApi, route: Route, call: &Call<'_>) -> Answer {
    let profile = api
        .ra
        .usable_profile_named(call.params.get("raProfileName"))
        .await
        .map_err(v1_failure)?;
    let username = call.params.get("username");
    let actor = call.actor();
    match route {
        Route::IssueV1 => {
            let request: ClientCertificateSignRequestV1Dto = call.json()?;
            let entity = api
                .reads
                .ra_end_entity(&profile.uuid, &request.username)
                .await?;
            let stored = entity.as_ref().map(|e| e.password_hash.as_str());
            // An unknown username costs the same check and gets the same answer.
            if !api.passwords.check(&request.password, stored).await {
                return Err(Failure::bad_request("wrong username or password"));
            }
            let csr_der = decode_request(&request.pkcs10)
                .map_err(|_| Failure::bad_request("pkcs10 is not a Base64 PKCS#10 request"))?;
            let outcome = api
                .ra
                .issue_for_end_entity(&profile, &request.username, csr_der, &actor)
                .await
                .map_err(v1_failure)?;
            Ok(ok_json(
                StatusCode::OK,
                &ClientCertificateSignResponseDto {
                    certificate_data: outcome
                        .certificate
                        .as_deref()
                        .map(|der| STANDARD.encode(der))
                        .unwrap_or_default(),
                },
            ))
        }
        Route::RevokeV1 => {
            let request: ClientCertificateRevocationV1Dto = call.json()?;
            let text = request.reason.as_deref().unwrap_or("unspecified");
            let reason = revocation_reason(text)
                .ok_or_else(|| Failure::bad_request(format!("reason {text:?} is not known")))?;
            api.ra
                .revoke_by_serial(
                    &profile,
                    &request.certificate_sn,
                    &request.issuer_dn,
                    reason,
                    &actor,
                )
                .await
                .map_err(v1_failure)?;
            Ok(Reply::empty(StatusCode::OK))
        }
        Route::EndEntities => {
            let list: Vec<EndEntityDto> = api
                .reads
                .ra_end_entities(&profile.uuid)
                .await?
                .into_iter()
                .map(entity_dto)
                .collect();
            Ok(ok_json(StatusCode::OK, &list))
        }
        Route::AddEndEntity => {
            let request: AddEndEntityRequestDto = call.json()?;
            let fields = fields(
                request.password,
                request.subject_dn,
                request.subject_alt_name,
                request.email,
                &request.extension_data,
                None,
            )
            .await?;
            api.ra
                .create_end_entity(&profile, &request.username, fields, &actor)
                .await
                .map_err(v1_failure)?;
            Ok(Reply::empty(StatusCode::OK))
        }
        Route::EndEntity => {
            let entity = api
                .ra
                .end_entity(&profile, username)
                .await
                .map_err(v1_failure)?;
            Ok(ok_json(StatusCode::OK, &entity_dto(entity)))
        }
        Route::EditEndEntity => {
            let request: EditEndEntityRequestDto = call.json()?;
            let fields = fields(
                request.password,
                request.subject_dn,
                request.subject_alt_name,
                request.email,
                &request.extension_data,
                Some(request.status),
            )
            .await?;
            api.ra
                .edit_end_entity(&profile, username, fields, &actor)
                .await
                .map_err(v1_failure)?;
            Ok(Reply::empty(StatusCode::OK))
        }
        Route::DeleteEndEntity => {
            api.ra
                .delete_end_entity(&profile, username, &actor)
                .await
                .map_err(v1_failure)?;
            Ok(Reply::empty(StatusCode::OK))
        }
        Route::ResetPassword => {
            let request: ResetPasswordRequestDto = call.json()?;
            let hash = hashed(request.password).await?;
            api.ra
                .reset_end_entity_password(&profile, username, hash, &actor)
                .await
                .map_err(v1_failure)?;
            Ok(Reply::empty(StatusCode::OK))
        }
        _ => Err(Failure::not_found("no such resource")),
    }
}

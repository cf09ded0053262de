//! Authorities and RA profiles (`/v1/authorities`, `/v1/raProfiles`,
//! `/v1/authorities/{authorityUuid}/raProfiles[/{raProfileUuid}[/enable|/disable]]`): an
//! authority is an issuer pkid holds; an RA profile is bound to one, with its attributes.

use http::StatusCode;

use super::routes::Route;
use super::wire::{
    AddRaProfileRequestDto, AuthorityInstanceDto, BaseAttributeContentDto, EditRaProfileRequestDto,
    RaProfileDto, RequestAttributeDto, ResponseAttributeDto, UuidDto,
};
use super::{ok_json, Answer, Call, CzertainlyApi, Failure};
use crate::api::Reply;
use crate::ra::attributes::{self, Given};
use crate::ra::profiles::{NewProfile, ProfileSettings};
use crate::ra::Authority;
use crate::store::RaProfileRow;

pub(super) async fn serve(api: &CzertainlyApi, route: Route, call: &Call<'_>) -> Answer {
    let authority_uuid = call.params.get("authorityUuid");
    let profile_uuid = call.params.get("raProfileUuid");
    let actor = call.actor();
    match route {
        Route::Authorities => {
            let list: Vec<AuthorityInstanceDto> = api
                .ra
                .authorities()
                .await?
                .iter()
                .map(authority_dto)
                .collect();
            Ok(ok_json(StatusCode::OK, &list))
        }
        Route::Authority => {
            let authority = api.ra.authority(authority_uuid).await?;
            Ok(ok_json(StatusCode::OK, &authority_dto(&authority)))
        }
        Route::RaProfiles => {
            let authorities = api.ra.authorities().await?;
            let rows = api.reads.ra_profiles().await?;
            let list = rows
                .iter()
                .map(|row| profile_dto(row, &authorities))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(ok_json(StatusCode::OK, &list))
        }
        Route::AuthorityRaProfiles => {
            let authorities = api.ra.authorities().await?;
            api.ra.authority(authority_uuid).await?;
            let rows = api.reads.ra_profiles_of(authority_uuid).await?;
            let list = rows
                .iter()
                .map(|row| profile_dto(row, &authorities))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(ok_json(StatusCode::OK, &list))
        }
        Route::CreateRaProfile => {
            let request: AddRaProfileRequestDto = call.json()?;
            let row = api
                .ra
                .create_ra_profile(
                    authority_uuid,
                    NewProfile {
                        name: request.name,
                        description: request.description.unwrap_or_default(),
                        enabled: request.enabled.unwrap_or(true),
                        attributes: given(&request.attributes),
                    },
                    &actor,
                )
                .await?;
            Ok(ok_json(StatusCode::CREATED, &UuidDto { uuid: row.uuid }))
        }
        Route::RaProfile => {
            let row = api.ra.ra_profile_of(authority_uuid, profile_uuid).await?;
            let authorities = api.ra.authorities().await?;
            Ok(ok_json(StatusCode::OK, &profile_dto(&row, &authorities)?))
        }
        Route::EditRaProfile => {
            let request: EditRaProfileRequestDto = call.json()?;
            let row = api
                .ra
                .edit_ra_profile(
                    authority_uuid,
                    profile_uuid,
                    request.description,
                    &given(&request.attributes),
                    &actor,
                )
                .await?;
            let authorities = api.ra.authorities().await?;
            Ok(ok_json(StatusCode::OK, &profile_dto(&row, &authorities)?))
        }
        Route::DeleteRaProfile => {
            api.ra
                .delete_ra_profile(authority_uuid, profile_uuid, &actor)
                .await?;
            Ok(Reply::empty(StatusCode::NO_CONTENT))
        }
        Route::EnableRaProfile | Route::DisableRaProfile => {
            let enabled = route == Route::EnableRaProfile;
            api.ra
                .enable_ra_profile(authority_uuid, profile_uuid, enabled, &actor)
                .await?;
            Ok(Reply::empty(StatusCode::NO_CONTENT))
        }
        _ => Err(Failure::not_found("no such resource")),
    }
}

/// A request's attributes as the RA reads them.
pub(super) fn given(attributes: &[RequestAttributeDto]) -> Vec<Given> {
    attributes
        .iter()
        .map(|a| Given {
            uuid: a.uuid.clone(),
            name: a.name.clone(),
            values: a.content.iter().map(|c| c.data.clone()).collect(),
        })
        .collect()
}

fn authority_dto(authority: &Authority) -> AuthorityInstanceDto {
    AuthorityInstanceDto {
        uuid: authority.uuid.clone(),
        name: authority.ca.name.clone(),
        kind: authority.kind().into(),
        status: "connected".into(),
    }
}

fn profile_dto(row: &RaProfileRow, authorities: &[Authority]) -> Result<RaProfileDto, Failure> {
    let settings = ProfileSettings::of(row)?;
    let attributes = settings
        .attribute_values()
        .into_iter()
        .filter_map(|(name, values)| {
            let definition = attributes::PROFILE.iter().find(|d| d.name == name)?;
            Some(ResponseAttributeDto {
                uuid: definition.uuid.into(),
                name: name.into(),
                label: definition.label.into(),
                kind: "data".into(),
                content_type: definition.content_type.as_str().into(),
                content: values
                    .into_iter()
                    .map(|data| BaseAttributeContentDto {
                        reference: None,
                        data,
                    })
                    .collect(),
            })
        })
        .collect();
    let authority_name = authorities
        .iter()
        .find(|a| a.uuid == row.authority_uuid)
        .map(|a| a.ca.name.clone())
        .unwrap_or_default();
    Ok(RaProfileDto {
        uuid: row.uuid.clone(),
        name: row.name.clone(),
        description: row.description.clone(),
        authority_instance_uuid: row.authority_uuid.clone(),
        authority_instance_name: authority_name,
        legacy_authority: false,
        enabled: row.enabled,
        attributes,
        custom_attributes: Vec::new(),
        enabled_protocols: Vec::new(),
    })
}

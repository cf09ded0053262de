//! Token profiles and managed keys (`/v1/tokenProfiles`, `/v1/tokenProfiles/{tokenProfileUuid}/
//! keys[/{keyUuid}]`): pkid's own resources after CZERTAINLY's, for the `keyUuid` and
//! `tokenProfileUuid` an issue or a rekey names to have its CSR built on the server. A key's
//! private half is never shown; `DELETE` destroys it.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use http::StatusCode;

use super::routes::Route;
use super::wire::{AddKeyRequestDto, AddTokenProfileRequestDto, KeyDto, TokenProfileDto, UuidDto};
use super::{ok_json, Answer, Call, CzertainlyApi, Failure};
use crate::api::Reply;
use crate::ra::managed_keys::TokenSettings;
use crate::store::{RaManagedKeyRow, RaTokenProfileRow};

fn token_dto(row: RaTokenProfileRow) -> TokenProfileDto {
    let settings: TokenSettings = serde_json::from_str(&row.settings).unwrap_or_default();
    TokenProfileDto {
        uuid: row.uuid,
        name: row.name,
        kind: row.kind,
        module: settings.module.map(|m| m.display().to_string()),
        token_label: settings.token_label,
        pin_env: settings.pin_env,
    }
}

fn key_dto(row: RaManagedKeyRow) -> KeyDto {
    KeyDto {
        state: if row.destroyed_at.is_some() {
            "destroyed"
        } else {
            "active"
        }
        .into(),
        uuid: row.uuid,
        token_profile_uuid: row.token_profile_uuid,
        name: row.name,
        algorithm: row.algorithm,
        public_key: STANDARD.encode(&row.public_key),
    }
}

pub(super) async fn serve(api: &CzertainlyApi, route: Route, call: &Call<'_>) -> Answer {
    let token_uuid = call.params.get("tokenProfileUuid");
    let actor = call.actor();
    match route {
        Route::TokenProfiles => {
            let list: Vec<TokenProfileDto> = api
                .reads
                .ra_token_profiles()
                .await?
                .into_iter()
                .map(token_dto)
                .collect();
            Ok(ok_json(StatusCode::OK, &list))
        }
        Route::CreateTokenProfile => {
            let request: AddTokenProfileRequestDto = call.json()?;
            let settings = TokenSettings {
                module: request.module.map(Into::into),
                token_label: request.token_label,
                pin_env: request.pin_env,
            };
            let row = api
                .ra
                .create_token_profile(&request.name, &request.kind, settings, &actor)
                .await?;
            Ok(ok_json(StatusCode::CREATED, &UuidDto { uuid: row.uuid }))
        }
        Route::Keys => {
            if api.reads.ra_token_profile(token_uuid).await?.is_none() {
                return Err(Failure::not_found(format!("no token profile {token_uuid}")));
            }
            let list: Vec<KeyDto> = api
                .reads
                .ra_managed_keys(token_uuid)
                .await?
                .into_iter()
                .map(key_dto)
                .collect();
            Ok(ok_json(StatusCode::OK, &list))
        }
        Route::CreateKey => {
            let request: AddKeyRequestDto = call.json()?;
            let text = request.algorithm.as_deref().unwrap_or("ecdsa-p256");
            let algorithm = text
                .parse()
                .map_err(|_| Failure::bad_request(format!("algorithm {text:?} is not known")))?;
            let row = api
                .ra
                .generate_managed_key(token_uuid, &request.name, algorithm, &actor)
                .await?;
            Ok(ok_json(StatusCode::CREATED, &key_dto(row)))
        }
        Route::DestroyKey => {
            let key_uuid = call.params.get("keyUuid");
            let key = api.reads.ra_managed_key(key_uuid).await?;
            if key.is_none_or(|k| k.token_profile_uuid != token_uuid) {
                return Err(Failure::not_found(format!(
                    "no key {key_uuid} in token profile {token_uuid}"
                )));
            }
            api.ra.destroy_managed_key(key_uuid, &actor).await?;
            tracing::info!(key = %key_uuid, by = %actor, "managed key destroyed");
            Ok(Reply::empty(StatusCode::NO_CONTENT))
        }
        _ => Err(Failure::not_found("no such resource")),
    }
}

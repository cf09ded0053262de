//! IAM's proxy certificate API, over the RA's `ra::iam`:
//!
//! - `PUT /iam/account/me/proxycert {"certificate_chain": "<proxy, its key, chain>"}`: the
//!   caller's proxy of one of their linked certificates, stored for generating proxies from;
//!   200 with an empty body.
//! - `POST /iam/proxycert` (a form: `client_id`, `client_secret`, `lifetimeSecs`, `issuer` or
//!   `issuerDn`), with a user's bearer token carrying `proxy:generate`: a new proxy, `{subject,
//!   issuer, identity, not_after (milliseconds, a string), certificate_chain}`. The client's
//!   credentials must be an enabled client's, registered for `proxy:generate`. Without
//!   `lifetimeSecs` the proxy lives as long as allowed.

use std::collections::BTreeMap;

use http::StatusCode;

use super::wire::{ProxyCertificate, ProxyUpload};
use super::IamApi;
use super::{access_denied, bad_request, denied, error, iam_error, json, parameters, unauthorized};
use crate::api::{Reply, RequestHead};
use crate::identity::{
    authorize, Action, ClientCredentials, Denied, GrantError, Principal, SCOPE_PROXY_GENERATE,
};
use crate::ra::iam::ProxyGeneration;

/// The longest `issuer` accepted, in characters.
const MAX_ISSUER: usize = 128;

impl IamApi {
    /// `PUT /iam/account/me/proxycert`.
    pub(super) async fn upload_proxy(&self, principal: &Principal, body: &[u8]) -> Reply {
        let user = match principal {
            Principal::User(user) if authorize(principal, Action::IamAccount).is_ok() => user,
            _ => return denied(Denied::Forbidden),
        };
        let upload: ProxyUpload = match serde_json::from_slice(body) {
            Ok(upload) => upload,
            Err(e) => return bad_request(format!("the body is not a proxy upload: {e}")),
        };
        match self
            .iam
            .store_proxy(&user.id, &upload.certificate_chain, &principal.describe())
            .await
        {
            Ok(()) => {
                tracing::info!(user = %user.username, "proxy certificate uploaded");
                Reply::empty(StatusCode::OK).header(http::header::CACHE_CONTROL, "no-store")
            }
            Err(e) => iam_error(e),
        }
    }

    /// `POST /iam/proxycert`.
    pub(super) async fn generate_proxy(
        &self,
        head: &RequestHead<'_>,
        principal: &Principal,
        body: &[u8],
    ) -> Reply {
        if let Err(why) = authorize(principal, Action::ProxyGenerate) {
            return match why {
                Denied::Forbidden => {
                    access_denied("Insufficient scope: proxy:generate is required")
                }
                other => denied(other),
            };
        }
        let Principal::User(user) = principal else {
            return denied(Denied::Forbidden);
        };
        let params = match request_parameters(head.query.as_bytes(), body) {
            Ok(params) => params,
            Err(reply) => return reply,
        };
        let param = |name: &str| params.get(name).map(String::as_str);
        let (Some(client_id), Some(secret)) = (param("client_id"), param("client_secret")) else {
            return unauthorized("client authentication is required: client_id and client_secret");
        };
        let credentials = ClientCredentials { client_id, secret };
        match self
            .identity
            .check_client(&credentials, head.caller.peer.ip())
            .await
        {
            Ok((_, scopes)) if scopes.iter().any(|s| s == SCOPE_PROXY_GENERATE) => {}
            Ok(_) => {
                return access_denied("the client is not registered for the proxy:generate scope")
            }
            Err(GrantError::Throttled(t)) => {
                return error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too many failed attempts; retry later",
                )
                .header(http::header::RETRY_AFTER, t.retry_after_secs().to_string())
            }
            Err(GrantError::Unavailable(e)) => {
                tracing::error!(code = "PKID-IDENTITY", error = %e, "a client could not be checked");
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the service is unavailable; retry",
                );
            }
            Err(_) => return unauthorized("client authentication failed"),
        }
        let lifetime_secs = match param("lifetimeSecs").map(|v| v.trim().parse::<i64>()) {
            None => self.iam.settings().proxy_max_lifetime_secs,
            Some(Ok(secs)) => secs,
            Some(Err(_)) => return bad_request("lifetimeSecs must be an integer"),
        };
        let issuer = match (param("issuer"), param("issuerDn")) {
            (Some(a), Some(b)) if a != b => {
                return bad_request("issuer and issuerDn name different issuers")
            }
            (a, b) => a.or(b),
        };
        if issuer.is_some_and(|i| i.chars().count() > MAX_ISSUER) {
            return bad_request(format!("issuer is longer than {MAX_ISSUER} characters"));
        }
        let by = principal.describe();
        let req = ProxyGeneration {
            user_id: &user.id,
            username: &user.username,
            by: &by,
            client_id,
            lifetime_secs,
            issuer,
        };
        match self.iam.generate_proxy(&req).await {
            Ok(made) => json(
                StatusCode::OK,
                &ProxyCertificate {
                    subject: made.subject,
                    issuer: made.issuer,
                    identity: made.identity,
                    not_after: made.not_after.saturating_mul(1000).to_string(),
                    certificate_chain: made.file.to_string(),
                },
            ),
            Err(e) => iam_error(e),
        }
    }
}

/// The request's parameters: the query's and the form body's (a name in both is refused).
fn request_parameters(query: &[u8], body: &[u8]) -> Result<BTreeMap<String, String>, Reply> {
    let mut params = parameters(query)?;
    for (name, value) in parameters(body)? {
        if params.insert(name.clone(), value).is_some() {
            return Err(bad_request(format!("{name} is given twice")));
        }
    }
    Ok(params)
}

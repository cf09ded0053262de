//! The surface's one route table: each route's method, path template (as the OpenAPI document
//! writes it, `{name}` for a parameter), what it serves and the action it needs. The router
//! matches requests against it; `openapi`'s test holds the document to it.

use http::Method;

use crate::identity::Action;

/// What a route serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    OpenApi,
    // management
    Authorities,
    Authority,
    RaProfiles,
    AuthorityRaProfiles,
    CreateRaProfile,
    RaProfile,
    EditRaProfile,
    DeleteRaProfile,
    EnableRaProfile,
    DisableRaProfile,
    // v2 client operations
    IssueAttributes,
    ValidateIssueAttributes,
    RevokeAttributes,
    ValidateRevokeAttributes,
    Issue,
    Certificate,
    IssueNew,
    Renew,
    Rekey,
    Revoke,
    Approve,
    Reject,
    // v1 client operations
    IssueV1,
    RevokeV1,
    EndEntities,
    AddEndEntity,
    EndEntity,
    EditEndEntity,
    DeleteEndEntity,
    ResetPassword,
    // managed keys (pkid's own, after CZERTAINLY's token profiles)
    TokenProfiles,
    CreateTokenProfile,
    Keys,
    CreateKey,
    DestroyKey,
}

const PROFILE: &str = "/v1/authorities/{authorityUuid}/raProfiles/{raProfileUuid}";

/// Every route: method, path template, route.
pub const ROUTES: &[(Method, &str, Route)] = &[
    (Method::GET, "/v2/openapi.json", Route::OpenApi),
    (Method::GET, "/v1/authorities", Route::Authorities),
    (Method::GET, "/v1/authorities/{authorityUuid}", Route::Authority),
    (Method::GET, "/v1/raProfiles", Route::RaProfiles),
    (
        Method::GET,
        "/v1/authorities/{authorityUuid}/raProfiles",
        Route::AuthorityRaProfiles,
    ),
    (
        Method::POST,
        "/v1/authorities/{authorityUuid}/raProfiles",
        Route::CreateRaProfile,
    ),
    (Method::GET, PROFILE, Route::RaProfile),
    (Method::PUT, PROFILE, Route::EditRaProfile),
    (Method::DELETE, PROFILE, Route::DeleteRaProfile),
    (
        Method::PATCH,
        "/v1/authorities/{authorityUuid}/raProfiles/{raProfileUuid}/enable",
        Route::EnableRaProfile,
    ),
    (
        Method::PATCH,
        "/v1/authorities/{authorityUuid}/raProfiles/{raProfileUuid}/disable",
        Route::DisableRaProfile,
    ),
    (
        Method::GET,
        "/v2/operations/authorities/{authorityUuid}/raProfiles/{raProfileUuid}/attributes/issue",
        Route::IssueAttributes,
    ),
    (
        Method::POST,
        "/v2/operations/authorities/{authorityUuid}/raProfiles/{raProfileUuid}/attributes/issue/validate",
        Route::ValidateIssueAttributes,
    ),
    (
        Method::GET,
        "/v2/operations/authorities/{authorityUuid}/raProfiles/{raProfileUuid}/attributes/revoke",
        Route::RevokeAttributes,
    ),
    (
        Method::POST,
        "/v2/operations/authorities/{authorityUuid}/raProfiles/{raProfileUuid}/attributes/revoke/validate",
        Route::ValidateRevokeAttributes,
    ),
    (
        Method::POST,
        "/v2/operations/authorities/{authorityUuid}/raProfiles/{raProfileUuid}/certificates",
        Route::Issue,
    ),
    (
        Method::GET,
        "/v2/operations/authorities/{authorityUuid}/raProfiles/{raProfileUuid}/certificates/{certificateUuid}",
        Route::Certificate,
    ),
    (
        Method::POST,
        "/v2/operations/authorities/{authorityUuid}/raProfiles/{raProfileUuid}/certificates/{certificateUuid}/issue",
        Route::IssueNew,
    ),
    (
        Method::POST,
        "/v2/operations/authorities/{authorityUuid}/raProfiles/{raProfileUuid}/certificates/{certificateUuid}/renew",
        Route::Renew,
    ),
    (
        Method::POST,
        "/v2/operations/authorities/{authorityUuid}/raProfiles/{raProfileUuid}/certificates/{certificateUuid}/rekey",
        Route::Rekey,
    ),
    (
        Method::POST,
        "/v2/operations/authorities/{authorityUuid}/raProfiles/{raProfileUuid}/certificates/{certificateUuid}/revoke",
        Route::Revoke,
    ),
    (
        Method::POST,
        "/v2/operations/authorities/{authorityUuid}/raProfiles/{raProfileUuid}/certificates/{certificateUuid}/approve",
        Route::Approve,
    ),
    (
        Method::POST,
        "/v2/operations/authorities/{authorityUuid}/raProfiles/{raProfileUuid}/certificates/{certificateUuid}/reject",
        Route::Reject,
    ),
    (
        Method::POST,
        "/v1/operations/{raProfileName}/certificate/issue",
        Route::IssueV1,
    ),
    (
        Method::POST,
        "/v1/operations/{raProfileName}/certificate/revoke",
        Route::RevokeV1,
    ),
    (
        Method::GET,
        "/v1/operations/{raProfileName}/endentity",
        Route::EndEntities,
    ),
    (
        Method::POST,
        "/v1/operations/{raProfileName}/endentity",
        Route::AddEndEntity,
    ),
    (
        Method::GET,
        "/v1/operations/{raProfileName}/endentity/{username}",
        Route::EndEntity,
    ),
    (
        Method::POST,
        "/v1/operations/{raProfileName}/endentity/{username}",
        Route::EditEndEntity,
    ),
    (
        Method::DELETE,
        "/v1/operations/{raProfileName}/endentity/{username}",
        Route::DeleteEndEntity,
    ),
    (
        Method::PUT,
        "/v1/operations/{raProfileName}/endentity/{username}/resetPassword",
        Route::ResetPassword,
    ),
    (Method::GET, "/v1/tokenProfiles", Route::TokenProfiles),
    (Method::POST, "/v1/tokenProfiles", Route::CreateTokenProfile),
    (
        Method::GET,
        "/v1/tokenProfiles/{tokenProfileUuid}/keys",
        Route::Keys,
    ),
    (
        Method::POST,
        "/v1/tokenProfiles/{tokenProfileUuid}/keys",
        Route::CreateKey,
    ),
    (
        Method::DELETE,
        "/v1/tokenProfiles/{tokenProfileUuid}/keys/{keyUuid}",
        Route::DestroyKey,
    ),
];

impl Route {
    /// The action `identity::authorize` is asked about.
    pub fn action(self) -> Action {
        use Route::*;
        match self {
            OpenApi
            | Authorities
            | Authority
            | RaProfiles
            | AuthorityRaProfiles
            | RaProfile
            | IssueAttributes
            | ValidateIssueAttributes
            | RevokeAttributes
            | ValidateRevokeAttributes
            | Certificate
            | EndEntities
            | EndEntity
            | TokenProfiles
            | Keys => Action::RaRead,
            Issue | IssueNew | Renew | Rekey | Revoke | IssueV1 | RevokeV1 | CreateKey => {
                Action::RaOperate
            }
            CreateRaProfile | EditRaProfile | DeleteRaProfile | EnableRaProfile
            | DisableRaProfile | Approve | Reject | AddEndEntity | EditEndEntity
            | DeleteEndEntity | ResetPassword | CreateTokenProfile | DestroyKey => Action::RaManage,
        }
    }

    /// The v1 client operations (`/v1/operations/{raProfileName}/…`).
    pub fn is_v1(self) -> bool {
        use Route::*;
        matches!(
            self,
            IssueV1
                | RevokeV1
                | EndEntities
                | AddEndEntity
                | EndEntity
                | EditEndEntity
                | DeleteEndEntity
                | ResetPassword
        )
    }

    /// Token profiles and their keys (`/v1/tokenProfiles…`).
    pub fn is_keys(self) -> bool {
        use Route::*;
        matches!(
            self,
            TokenProfiles | CreateTokenProfile | Keys | CreateKey | DestroyKey
        )
    }

    /// Management resources (`/v1/authorities…`, `/v1/raProfiles`).
    pub fn is_management(self) -> bool {
        use Route::*;
        matches!(
            self,
            Authorities
                | Authority
                | RaProfiles
                | AuthorityRaProfiles
                | CreateRaProfile
                | RaProfile
                | EditRaProfile
                | DeleteRaProfile
                | EnableRaProfile
                | DisableRaProfile
        )
    }
}

/// The path parameters of a matched route, by name.
#[derive(Debug, Default)]
pub struct Params<'a>(Vec<(&'static str, &'a str)>);

impl<'a> Params<'a> {
    /// The parameter `name` (every route's template names its own; "" otherwise).
    pub fn get(&self, name: &str) -> &'a str {
        self.0
            .iter()
            .find(|(n, _)| *n == name)
            .map_or("", |(_, v)| v)
    }
}

/// Why no route matched.
#[derive(Debug, PartialEq, Eq)]
pub enum Miss {
    NotFound,
    /// The path is served, not with this method: the methods it is served with.
    Method(String),
}

/// The route `method` and `path` ask for, with the path's parameters.
pub fn find<'a>(method: &Method, path: &'a str) -> Result<(Route, Params<'a>), Miss> {
    let segments: Vec<&str> = path.split('/').collect();
    let mut allowed = Vec::new();
    for (route_method, template, route) in ROUTES {
        let Some(params) = matches(template, &segments) else {
            continue;
        };
        if route_method == method {
            return Ok((*route, params));
        }
        allowed.push(route_method.as_str());
    }
    if allowed.is_empty() {
        Err(Miss::NotFound)
    } else {
        Err(Miss::Method(allowed.join(", ")))
    }
}

fn matches<'a>(template: &'static str, segments: &[&'a str]) -> Option<Params<'a>> {
    let parts: Vec<&'static str> = template.split('/').collect();
    if parts.len() != segments.len() {
        return None;
    }
    let mut params = Vec::new();
    for (part, segment) in parts.iter().zip(segments) {
        match part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            Some(name) => {
                if segment.is_empty() || segment.len() > 128 {
                    return None;
                }
                params.push((name, *segment));
            }
            None if part == segment => {}
            None => return None,
        }
    }
    Some(Params(params))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn routes_match_with_their_parameters() {
        let (route, params) = find(
            &Method::POST,
            "/v2/operations/authorities/a-1/raProfiles/r-2/certificates/c-3/renew",
        )
        .unwrap();
        assert_eq!(route, Route::Renew);
        assert_eq!(params.get("authorityUuid"), "a-1");
        assert_eq!(params.get("certificateUuid"), "c-3");
        assert_eq!(
            find(&Method::GET, "/v1/authorities/x/raProfiles/y/enable").unwrap_err(),
            Miss::Method("PATCH".into())
        );
        assert_eq!(
            find(&Method::GET, "/v1/nothing").unwrap_err(),
            Miss::NotFound
        );
        assert_eq!(
            find(&Method::GET, "/v1/authorities//raProfiles").unwrap_err(),
            Miss::NotFound
        );
    }
}

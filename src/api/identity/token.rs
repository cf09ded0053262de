//! The OAuth2 token endpoint, `POST /token` (RFC 6749 §3.2): a form body
//! (`application/x-www-form-urlencoded`, each parameter at most once, §3.2), client
//! authentication by HTTP Basic (§2.3.1, id and secret form-encoded inside) or by the form's
//! `client_id` and `client_secret` — not both (§2.3) — and the grants `password` (§4.3) and
//! `client_credentials` (§4.4).
//!
//! Success (§5.1): `{"access_token", "token_type": "Bearer", "expires_in", "scope"}`. Errors
//! (§5.2): `{"error", "error_description"}`, `invalid_request` 400, `invalid_client` 401 (with
//! `WWW-Authenticate: Basic` when Basic was used), `invalid_grant` 400, `unauthorized_client`
//! 400, `unsupported_grant_type` 400, `invalid_scope` 400; and beyond §5.2, too many failures
//! 429 with `Retry-After`, and 503, both `temporarily_unavailable`. Every answer carries
//! `Cache-Control: no-store` and `Pragma: no-cache` (§5.1).

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use http::{HeaderMap, StatusCode};

use super::wire::{OAuthError, TokenAnswer};
use crate::api::{BodyError, Caller, Reply};
use crate::identity::{ClientCredentials, GrantError, Identity};

/// An answer of this endpoint: JSON, never cached.
fn answer<T: serde::Serialize>(status: StatusCode, body: &T) -> Reply {
    Reply::json(status, body)
        .header(http::header::CACHE_CONTROL, "no-store")
        .header(http::header::PRAGMA, "no-cache")
}

/// A §5.2 error.
fn oauth_error(status: StatusCode, code: &str, description: &str) -> Reply {
    answer(
        status,
        &OAuthError {
            error: code.to_string(),
            error_description: description.to_string(),
        },
    )
}

fn invalid_request(description: &str) -> Reply {
    oauth_error(StatusCode::BAD_REQUEST, "invalid_request", description)
}

pub(super) fn method_not_allowed() -> Reply {
    oauth_error(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request",
        "the token endpoint takes POST",
    )
    .header(http::header::ALLOW, "POST")
}

/// A body that could not be read: its own status, in this endpoint's shape.
pub(super) fn read_error(e: &BodyError) -> Reply {
    oauth_error(e.status(), "invalid_request", &e.to_string())
}

/// Decodes one `application/x-www-form-urlencoded` name or value: `+` is a space, `%XX` a byte;
/// `None` for a broken escape or bytes that are not UTF-8.
fn form_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// The form's parameters; a parameter without a value counts as absent (§3.1), one given twice
/// is an error (§3.2). Also how the IAM surface reads its query strings and forms.
pub(crate) fn parse_form(body: &[u8]) -> Result<BTreeMap<String, String>, &'static str> {
    let text = std::str::from_utf8(body).map_err(|_| "the form is not UTF-8")?;
    let mut params = BTreeMap::new();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = form_decode(name).ok_or("the form has a broken escape")?;
        let value = form_decode(value).ok_or("the form has a broken escape")?;
        if params.contains_key(&name) {
            return Err("a parameter is given more than once");
        }
        params.insert(name, value);
    }
    params.retain(|_, v| !v.is_empty());
    Ok(params)
}

/// Client credentials from `Authorization: Basic` (§2.3.1): `Ok(None)` without that header.
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, &'static str> {
    let Some(value) = headers.get(http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| "the Authorization header is not ASCII")?;
    let (scheme, encoded) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err("client authentication is HTTP Basic or the form's client_secret");
    }
    let decoded = STANDARD
        .decode(encoded.trim())
        .map_err(|_| "the Basic credentials are not base64")?;
    let decoded = String::from_utf8(decoded).map_err(|_| "the Basic credentials are not UTF-8")?;
    let (id, secret) = decoded
        .split_once(':')
        .ok_or("the Basic credentials have no ':'")?;
    let id = form_decode(id).ok_or("the Basic client id has a broken escape")?;
    let secret = form_decode(secret).ok_or("the Basic secret has a broken escape")?;
    Ok(Some((id, secret)))
}

/// Serve `POST /token` with its body.
pub(super) async fn serve(
    identity: &Identity,
    headers: &HeaderMap,
    caller: &Caller,
    body: &[u8],
) -> Reply {
    let form_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !form_type {
        return invalid_request("the body must be application/x-www-form-urlencoded");
    }
    let params = match parse_form(body) {
        Ok(params) => params,
        Err(why) => return invalid_request(why),
    };
    let param = |name: &str| params.get(name).map(String::as_str);
    let Some(grant_type) = param("grant_type") else {
        return invalid_request("grant_type is required");
    };
    if !matches!(grant_type, "password" | "client_credentials") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "grant types served: password, client_credentials",
        );
    }
    let basic = match basic_credentials(headers) {
        Ok(basic) => basic,
        Err(why) => return invalid_request(why),
    };
    let used_basic = basic.is_some();
    let (client_id, secret) = match (basic, param("client_id"), param("client_secret")) {
        (Some(_), _, Some(_)) => {
            return invalid_request("use one client authentication method, not two")
        }
        (Some((id, _)), Some(form_id), None) if id != form_id => {
            return invalid_request("client_id differs from the Basic credentials")
        }
        (Some((id, secret)), _, None) => (id, secret),
        (None, Some(id), Some(secret)) => (id.to_string(), secret.to_string()),
        (None, _, _) => {
            return oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "client authentication is required",
            )
        }
    };
    let client = ClientCredentials {
        client_id: &client_id,
        secret: &secret,
    };
    let peer = caller.peer.ip();
    let scope = param("scope");
    let issued = match grant_type {
        "password" => {
            let (Some(username), Some(password)) = (param("username"), param("password")) else {
                return invalid_request("the password grant needs username and password");
            };
            identity
                .password_grant(&client, username, password, scope, peer)
                .await
        }
        _ => {
            identity
                .client_credentials_grant(&client, scope, peer)
                .await
        }
    };
    match issued {
        Ok(token) => answer(
            StatusCode::OK,
            &TokenAnswer {
                access_token: token.access_token,
                token_type: "Bearer",
                expires_in: token.expires_in,
                scope: token.scope.unwrap_or_default(),
            },
        ),
        Err(e) => grant_error(&e, used_basic),
    }
}

/// A refused grant in §5.2's words.
fn grant_error(e: &GrantError, used_basic: bool) -> Reply {
    let description = e.to_string();
    match e {
        GrantError::InvalidClient => {
            let reply = oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", &description);
            if used_basic {
                reply.header(http::header::WWW_AUTHENTICATE, r#"Basic realm="pkid""#)
            } else {
                reply
            }
        }
        GrantError::InvalidGrant => {
            oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", &description)
        }
        GrantError::UnauthorizedClient => {
            oauth_error(StatusCode::BAD_REQUEST, "unauthorized_client", &description)
        }
        GrantError::InvalidScope(_) => {
            oauth_error(StatusCode::BAD_REQUEST, "invalid_scope", &description)
        }
        GrantError::Throttled(t) => oauth_error(
            StatusCode::TOO_MANY_REQUESTS,
            "temporarily_unavailable",
            &description,
        )
        .header(http::header::RETRY_AFTER, t.retry_after_secs().to_string()),
        GrantError::Unavailable(detail) => {
            tracing::error!(code = "PKID-IDENTITY", error = %detail, "a token could not be issued");
            oauth_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "the service is unavailable; retry",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn forms_decode_and_refuse_repeats_and_broken_escapes() {
        let form = parse_form(b"grant_type=password&username=a%40b+c&scope=&x").unwrap();
        assert_eq!(form.get("username").map(String::as_str), Some("a@b c"));
        assert!(
            !form.contains_key("scope"),
            "an empty value counts as absent"
        );
        assert!(parse_form(b"a=1&a=2").is_err());
        assert!(parse_form(b"a=%4").is_err());
        assert!(parse_form(b"a=%ff").is_err());
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        let mut h = HeaderMap::new();
        let encoded = STANDARD.encode("my%20client:s%3Acret");
        h.insert(
            http::header::AUTHORIZATION,
            format!("Basic {encoded}").parse().unwrap(),
        );
        assert_eq!(
            basic_credentials(&h).unwrap(),
            Some(("my client".into(), "s:cret".into()))
        );
        h.insert(http::header::AUTHORIZATION, "Bearer x".parse().unwrap());
        assert!(basic_credentials(&h).is_err());
    }
}

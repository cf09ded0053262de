//! Identity against a real pkid: who may do what (the authorization matrix, one table), the
//! OAuth2 token endpoint (RFC 6749: every grant and every error of §5.2), pkid's access tokens
//! (ES256, published at `/.well-known/jwks.json`; an expired, a tampered and a foreign token
//! refused; a disabled user's or client's token refused at its next use), password guessing
//! slowed per name and per address, and the operator commands that manage users, clients and
//! admin tokens.
//!
//! - `matrix`: every principal kind × every action, one table;
//! - `tokens`: `/login`, `/token` and the access tokens;
//! - `operators`: password guessing, the operator commands, two replicas on PostgreSQL;
//! - `openapi`: the surface's OpenAPI document, held to the surface and run by schemathesis.
//!
//! The helpers here serve `client_certs` and `jws` too: users are made the same way there.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use reqwest::{Client, Method, RequestBuilder, Response};
use serde_json::{json, Value};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

use crate::harness::client::AcmeClient;
use crate::harness::pkid::Pkid;
use crate::harness::tls::https_client_from;

pub(crate) const TEST_BOUND: Duration = Duration::from_secs(240);
/// Every user's password in these tests.
pub(crate) const PASSWORD: &str = "correct horse battery";

pub(crate) fn base(pkid: &Pkid) -> String {
    format!("https://127.0.0.1:{}", pkid.port())
}

pub(crate) fn client_from(pkid: &Pkid, local: &str) -> Client {
    https_client_from(&pkid.root_pem(), Some(local.parse::<IpAddr>().unwrap())).unwrap()
}

/// Status, headers and JSON body of an answer.
pub(crate) struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub(crate) async fn send(request: RequestBuilder) -> Answer {
    let response: Response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.unwrap();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        body,
    }
}

/// `pkid ARGS`, which must succeed; its standard output.
pub(crate) async fn cli_ok(pkid: &Pkid, args: &[&str]) -> String {
    let (ok, stdout, stderr) = pkid.cli(args).await;
    assert!(ok, "pkid {args:?} failed:\n{stdout}\n{stderr}");
    stdout
}

/// `pkid user create NAME --role ROLE --email NAME@pkid.test --password-stdin`.
pub(crate) async fn create_user(pkid: &Pkid, name: &str, role: &str) {
    let email = format!("{name}@pkid.test");
    let args = [
        "user",
        "create",
        name,
        "--role",
        role,
        "--email",
        &email,
        "--password-stdin",
    ];
    let (ok, stdout, stderr) = pkid
        .cli_with_input(&args, Some(format!("{PASSWORD}\n").as_bytes()))
        .await;
    assert!(ok, "pkid user create {name}:\n{stdout}\n{stderr}");
}

/// A registered client's id and secret (`pkid client create … --json`).
pub(crate) async fn create_client(
    pkid: &Pkid,
    name: &str,
    scopes: &str,
    grants: &[&str],
) -> (String, String) {
    let mut args = vec!["client", "create", name, "--scopes", scopes, "--json"];
    for grant in grants {
        args.extend(["--grant-type", grant]);
    }
    let out: Value = serde_json::from_str(&cli_ok(pkid, &args).await).unwrap();
    (
        out["client_id"].as_str().unwrap().to_owned(),
        out["client_secret"].as_str().unwrap().to_owned(),
    )
}

/// `POST /login` for NAME@pkid.test.
pub(crate) async fn login(http: &Client, pkid: &Pkid, email: &str, password: &str) -> Answer {
    send(
        http.post(format!("{}/login", base(pkid)))
            .header("content-type", "application/json")
            .body(json!({"email": email, "password": password}).to_string()),
    )
    .await
}

pub(crate) async fn login_token(http: &Client, pkid: &Pkid, name: &str) -> String {
    let answer = login(http, pkid, &format!("{name}@pkid.test"), PASSWORD).await;
    assert_eq!(answer.status, 200, "login {name}: {}", answer.body);
    answer.body["result"]["token"].as_str().unwrap().to_owned()
}

/// `POST /token` with a form, client credentials by HTTP Basic.
pub(crate) async fn token_request(
    http: &Client,
    pkid: &Pkid,
    basic: Option<(&str, &str)>,
    form: &[(&str, &str)],
) -> Answer {
    let mut request = http.post(format!("{}/token", base(pkid))).form(form);
    if let Some((id, secret)) = basic {
        request = request.basic_auth(id, Some(secret));
    }
    send(request).await
}

pub(crate) async fn access_token(answer: Answer) -> String {
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.body["access_token"].as_str().unwrap().to_owned()
}

/// `GET /identity/me` with `token` as the bearer (none: anonymous).
pub(crate) async fn whoami(http: &Client, pkid: &Pkid, token: Option<&str>) -> Answer {
    let mut request = http.get(format!("{}/identity/me", base(pkid)));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    send(request).await
}

/// Rows of `eab_keys`: what a refused write must leave alone.
pub(crate) async fn eab_key_count(pkid: &Pkid) -> i64 {
    let db = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(
            SqliteConnectOptions::new()
                .filename(pkid.database_path())
                .read_only(true),
        )
        .await
        .unwrap();
    sqlx::query_scalar("SELECT COUNT(*) FROM eab_keys")
        .fetch_one(&db)
        .await
        .unwrap()
}

/// `pkid user bind-key NAME --jwk FILE` for `signer`'s key (the file written into `dir`).
pub(crate) async fn bind_key(pkid: &Pkid, dir: &Path, name: &str, signer: &AcmeClient) {
    let file = dir.join(format!("{}.jwk", signer.key.thumbprint));
    std::fs::write(&file, signer.key.jwk.to_string()).unwrap();
    cli_ok(
        pkid,
        &[
            "user",
            "bind-key",
            name,
            "--jwk",
            &file.display().to_string(),
        ],
    )
    .await;
}

/// The `kid` of a request `signer`'s key signs: the URL of its binding.
pub(crate) fn binding_url(pkid: &Pkid, signer: &AcmeClient) -> String {
    format!("{}/identity/keys/{}", base(pkid), signer.key.thumbprint)
}

/// The binding URL under the origin of `url` (the listener a request goes to: the admin
/// listener has an origin of its own).
fn binding_url_for(url: &str, signer: &AcmeClient) -> String {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let origin_end = url[after_scheme..]
        .find('/')
        .map_or(url.len(), |i| after_scheme + i);
    format!(
        "{}/identity/keys/{}",
        &url[..origin_end],
        signer.key.thumbprint
    )
}

/// A REST request signed as ACME requests are (RFC 8555 §6.2): `payload` (empty for a read) in
/// a flattened JWS with a fresh nonce, `url` the request's URL and `kid` the key's binding
/// under the origin the request is sent to.
pub(crate) async fn signed(
    http: &Client,
    signer: &AcmeClient,
    method: Method,
    url: &str,
    payload: &str,
) -> Answer {
    let nonce = signer.new_nonce().await;
    let protected =
        json!({"alg": "ES256", "nonce": nonce, "url": url, "kid": binding_url_for(url, signer)});
    let jws = signer
        .key
        .sign_flattened(&protected, payload.as_bytes())
        .unwrap();
    send(
        http.request(method, url)
            .header("content-type", "application/jose+json")
            .body(jws.to_string()),
    )
    .await
}

/// The id `pkid admin token list` shows for the token with `note`.
pub(crate) async fn admin_token_id(pkid: &Pkid, note: &str) -> String {
    cli_ok(pkid, &["admin", "token", "list"])
        .await
        .lines()
        .find(|l| l.ends_with(&format!("\t{note}")))
        .and_then(|l| l.split('\t').next())
        .unwrap_or_else(|| panic!("no admin token noted {note:?}"))
        .to_owned()
}

/// A JWT's three parts, the first two decoded.
pub(crate) fn jwt_parts(token: &str) -> (Value, Value, String) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "{token}");
    let decode = |p: &str| serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap();
    (decode(parts[0]), decode(parts[1]), parts[2].to_owned())
}

mod matrix;
mod openapi;
mod operators;
mod tokens;

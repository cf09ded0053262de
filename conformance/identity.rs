//! Identity against a real pkid: who may do what (the authorization matrix, one table), the
//! OAuth2 token endpoint (RFC 6749: every grant and every error of §5.2), pkid's access tokens
//! (ES256, published at `/.well-known/jwks.json`; an expired, a tampered and a foreign token
//! refused; a disabled user's or client's token refused at its next use), password guessing
//! slowed per name and per address, and the operator commands that manage users, clients and
//! admin tokens.

use std::net::IpAddr;
use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use reqwest::{Client, RequestBuilder, Response};
use serde_json::{json, Value};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

use crate::harness::environment::{within, Environment};
use crate::harness::pkid::Pkid;
use crate::harness::tls::https_client_from;

const TEST_BOUND: Duration = Duration::from_secs(240);
/// Every user's password in these tests.
const PASSWORD: &str = "correct horse battery";

fn base(pkid: &Pkid) -> String {
    format!("https://127.0.0.1:{}", pkid.port())
}

fn client_from(pkid: &Pkid, local: &str) -> Client {
    https_client_from(&pkid.root_pem(), Some(local.parse::<IpAddr>().unwrap())).unwrap()
}

/// Status, headers and JSON body of an answer.
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

async fn send(request: RequestBuilder) -> Answer {
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
async fn cli_ok(pkid: &Pkid, args: &[&str]) -> String {
    let (ok, stdout, stderr) = pkid.cli(args).await;
    assert!(ok, "pkid {args:?} failed:\n{stdout}\n{stderr}");
    stdout
}

/// `pkid user create NAME --role ROLE --email NAME@pkid.test --password-stdin`.
async fn create_user(pkid: &Pkid, name: &str, role: &str) {
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
async fn create_client(pkid: &Pkid, name: &str, scopes: &str, grants: &[&str]) -> (String, String) {
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
async fn login(http: &Client, pkid: &Pkid, email: &str, password: &str) -> Answer {
    send(
        http.post(format!("{}/login", base(pkid)))
            .header("content-type", "application/json")
            .body(json!({"email": email, "password": password}).to_string()),
    )
    .await
}

async fn login_token(http: &Client, pkid: &Pkid, name: &str) -> String {
    let answer = login(http, pkid, &format!("{name}@pkid.test"), PASSWORD).await;
    assert_eq!(answer.status, 200, "login {name}: {}", answer.body);
    answer.body["result"]["token"].as_str().unwrap().to_owned()
}

/// `POST /token` with a form, client credentials by HTTP Basic.
async fn token_request(
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

async fn access_token(answer: Answer) -> String {
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.body["access_token"].as_str().unwrap().to_owned()
}

/// `GET /identity/me` with `token` as the bearer (none: anonymous).
async fn whoami(http: &Client, pkid: &Pkid, token: Option<&str>) -> Answer {
    let mut request = http.get(format!("{}/identity/me", base(pkid)));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    send(request).await
}

/// Rows of `eab_keys`: what a refused write must leave alone.
async fn eab_key_count(pkid: &Pkid) -> i64 {
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

/// One principal of the matrix: how it authenticates, and the exact status of each action
/// (`GET /identity/me`, `GET /admin/eab-keys`, `POST /admin/eab-keys`).
struct Row {
    who: &'static str,
    bearer: Option<String>,
    expect: [u16; 3],
}

#[tokio::test(flavor = "multi_thread")]
async fn authorization_matrix() {
    let env = Environment::start().await;
    within(TEST_BOUND, async {
        let pkid = &env.pkid;
        let http = client_from(pkid, "127.0.0.1");
        for (name, role) in [
            ("ada", "admin"),
            ("max", "certificate-manager"),
            ("rey", "certificate-requestor"),
            ("ro", "read-only"),
        ] {
            create_user(pkid, name, role).await;
        }
        let portal = create_client(
            pkid,
            "portal",
            "iam:admin.read iam:admin.write proxy:generate",
            &[],
        )
        .await;
        let reader = create_client(pkid, "reader", "iam:admin.read", &[]).await;
        let writer = create_client(pkid, "writer", "iam:admin.write", &[]).await;
        let plain = create_client(pkid, "plain", "proxy:generate", &[]).await;

        let user_token = |name: &'static str, scope: &'static str| {
            let (http, portal) = (http.clone(), portal.clone());
            async move {
                token_request(
                    &http,
                    pkid,
                    Some((&portal.0, &portal.1)),
                    &[
                        ("grant_type", "password"),
                        ("username", name),
                        ("password", PASSWORD),
                        ("scope", scope),
                    ],
                )
                .await
            }
        };
        let client_token = |client: (String, String)| {
            let http = http.clone();
            async move {
                access_token(
                    token_request(
                        &http,
                        pkid,
                        Some((&client.0, &client.1)),
                        &[("grant_type", "client_credentials")],
                    )
                    .await,
                )
                .await
            }
        };
        // A requestor asking for an admin scope through a client that has it gets only what
        // the role allows.
        let rey_scoped = user_token("rey", "proxy:generate iam:admin.read").await;
        assert_eq!(
            rey_scoped.body["scope"], "proxy:generate",
            "{}",
            rey_scoped.body
        );

        let expired = pkid.admin_token("to expire").await;
        let expired_id = admin_token_id(pkid, "to expire").await;
        let db = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(SqliteConnectOptions::new().filename(pkid.database_path()))
            .await
            .unwrap();
        // Ninety days on: its expiry has passed.
        sqlx::query("UPDATE admin_tokens SET expires_at = created_at - 1 WHERE id = $1")
            .bind(&expired_id)
            .execute(&db)
            .await
            .unwrap();
        db.close().await;
        let revoked = pkid.admin_token("to revoke").await;
        let revoked_id = admin_token_id(pkid, "to revoke").await;
        cli_ok(pkid, &["admin", "token", "revoke", &revoked_id]).await;

        // The linked-certificate and JWS-bound-key principals (client certificates, JWS-signed
        // requests) join this table when those credentials are wired into identity.
        let rows = vec![
            Row {
                who: "admin user, /login",
                bearer: Some(login_token(&http, pkid, "ada").await),
                expect: [200, 200, 201],
            },
            Row {
                who: "certificate-manager user, /login",
                bearer: Some(login_token(&http, pkid, "max").await),
                expect: [200, 403, 403],
            },
            Row {
                who: "certificate-requestor user, /login",
                bearer: Some(login_token(&http, pkid, "rey").await),
                expect: [200, 403, 403],
            },
            Row {
                who: "read-only user, /login",
                bearer: Some(login_token(&http, pkid, "ro").await),
                expect: [200, 403, 403],
            },
            Row {
                who: "admin user, /token with iam:admin.read",
                bearer: Some(access_token(user_token("ada", "iam:admin.read").await).await),
                expect: [200, 200, 403],
            },
            Row {
                who: "admin user, /token with iam:admin.write",
                bearer: Some(access_token(user_token("ada", "iam:admin.write").await).await),
                expect: [200, 403, 201],
            },
            Row {
                who: "admin user, /token with neither admin scope",
                bearer: Some(access_token(user_token("ada", "proxy:generate").await).await),
                expect: [200, 403, 403],
            },
            Row {
                who: "requestor user, /token asking for iam:admin.read",
                bearer: Some(access_token(rey_scoped).await),
                expect: [200, 403, 403],
            },
            Row {
                who: "OAuth client with iam:admin.read",
                bearer: Some(client_token(reader).await),
                expect: [200, 200, 403],
            },
            Row {
                who: "OAuth client with iam:admin.write",
                bearer: Some(client_token(writer).await),
                expect: [200, 403, 201],
            },
            Row {
                who: "OAuth client with neither admin scope",
                bearer: Some(client_token(plain).await),
                expect: [200, 403, 403],
            },
            Row {
                who: "admin token",
                bearer: Some(pkid.admin_token("matrix").await),
                expect: [200, 200, 201],
            },
            Row {
                who: "expired admin token",
                bearer: Some(expired),
                expect: [401, 401, 401],
            },
            Row {
                who: "revoked admin token",
                bearer: Some(revoked),
                expect: [401, 401, 401],
            },
            Row {
                who: "anonymous",
                bearer: None,
                expect: [401, 401, 401],
            },
        ];
        let eab_keys = format!("{}/admin/eab-keys", base(pkid));
        let mut wrong = Vec::new();
        for row in &rows {
            let with_bearer = |request: RequestBuilder| match &row.bearer {
                Some(token) => request.bearer_auth(token),
                None => request,
            };
            let before = eab_key_count(pkid).await;
            let got = [
                whoami(&http, pkid, row.bearer.as_deref()).await,
                send(with_bearer(http.get(&eab_keys))).await,
                send(with_bearer(
                    http.post(&eab_keys)
                        .body(json!({"note": row.who}).to_string()),
                ))
                .await,
            ];
            let statuses = got.each_ref().map(|a| a.status);
            if statuses != row.expect {
                wrong.push(format!(
                    "{}: {statuses:?}, expected {:?}",
                    row.who, row.expect
                ));
            }
            for answer in &got {
                if answer.status >= 400 && !answer.body["error"].is_string() {
                    wrong.push(format!("{}: no {{\"error\"}} in {}", row.who, answer.body));
                }
            }
            let added = eab_key_count(pkid).await - before;
            let should_add = i64::from(row.expect[2] == 201);
            if added != should_add {
                wrong.push(format!(
                    "{}: the refused or allowed write added {added} keys",
                    row.who
                ));
            }
        }
        assert!(
            wrong.is_empty(),
            "the matrix differs:\n{}",
            wrong.join("\n")
        );

        // What /identity/me says of each kind.
        let me = whoami(&http, pkid, rows[0].bearer.as_deref()).await;
        assert_eq!(me.body["result"]["kind"], "user");
        assert_eq!(me.body["result"]["username"], "ada");
        assert_eq!(me.body["result"]["roles"], json!(["admin"]));
        assert_eq!(me.body["result"]["proof"], "bearer");
        assert_eq!(me.body["result"]["scopes"], Value::Null);
        let me = whoami(&http, pkid, rows[8].bearer.as_deref()).await;
        assert_eq!(me.body["result"]["kind"], "client");
        assert_eq!(me.body["result"]["scopes"], json!(["iam:admin.read"]));
        let me = whoami(&http, pkid, rows[11].bearer.as_deref()).await;
        assert_eq!(me.body["result"]["kind"], "operator");
        let anonymous = whoami(&http, pkid, None).await;
        assert!(anonymous
            .header("www-authenticate")
            .is_some_and(|v| v.starts_with("Bearer")));
    })
    .await;
}

/// The id `pkid admin token list` shows for the token with `note`.
async fn admin_token_id(pkid: &Pkid, note: &str) -> String {
    cli_ok(pkid, &["admin", "token", "list"])
        .await
        .lines()
        .find(|l| l.ends_with(&format!("\t{note}")))
        .and_then(|l| l.split('\t').next())
        .unwrap_or_else(|| panic!("no admin token noted {note:?}"))
        .to_owned()
}

/// A JWT's three parts, the first two decoded.
fn jwt_parts(token: &str) -> (Value, Value, String) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "{token}");
    let decode = |p: &str| serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap();
    (decode(parts[0]), decode(parts[1]), parts[2].to_owned())
}

/// `header.claims` signed ES256 by a key pkid has never seen.
fn sign_with_foreign_key(header: &Value, claims: &Value) -> String {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = key.sign(&rng, input.as_bytes()).unwrap();
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
}

#[tokio::test(flavor = "multi_thread")]
async fn token_endpoint_grants_errors_and_tokens() {
    let mut env = Environment::start().await;
    let http = client_from(&env.pkid, "127.0.0.1");
    within(TEST_BOUND, async {
        let pkid = &env.pkid;
        create_user(pkid, "ada", "admin").await;
        create_user(pkid, "rey", "certificate-requestor").await;
        let (id, secret) =
            create_client(pkid, "portal", "iam:admin.read proxy:generate", &[]).await;
        let (cc_id, cc_secret) =
            create_client(pkid, "machine", "proxy:generate", &["client_credentials"]).await;
        let basic = Some((id.as_str(), secret.as_str()));

        // client_credentials, Basic and form: §5.1's answer, never cached.
        let answer =
            token_request(&http, pkid, basic, &[("grant_type", "client_credentials")]).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(answer.body["token_type"], "Bearer");
        assert_eq!(answer.body["expires_in"], 900);
        assert_eq!(answer.body["scope"], "iam:admin.read proxy:generate");
        assert_eq!(answer.header("cache-control"), Some("no-store"));
        let client_token = answer.body["access_token"].as_str().unwrap().to_owned();
        let answer = token_request(
            &http,
            pkid,
            None,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &id),
                ("client_secret", &secret),
                ("scope", "proxy:generate"),
            ],
        )
        .await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(answer.body["scope"], "proxy:generate");

        // password
        let password_grant = |username: &'static str, password: &'static str| {
            [
                ("grant_type", "password"),
                ("username", username),
                ("password", password),
            ]
        };
        let answer = token_request(&http, pkid, basic, &password_grant("ada", PASSWORD)).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        let ada_token = answer.body["access_token"].as_str().unwrap().to_owned();

        // Every §5.2 error, with its status.
        let expect_error = |answer: Answer, status: u16, code: &str| {
            assert_eq!(
                (answer.status, answer.body["error"].as_str()),
                (status, Some(code)),
                "{}",
                answer.body
            );
            assert_eq!(answer.header("cache-control"), Some("no-store"));
            answer
        };
        expect_error(
            token_request(&http, pkid, basic, &[]).await,
            400,
            "invalid_request",
        );
        let json_body = send(
            http.post(format!("{}/token", base(pkid)))
                .basic_auth(&id, Some(&secret))
                .header("content-type", "application/json")
                .body(json!({"grant_type": "client_credentials"}).to_string()),
        )
        .await;
        expect_error(json_body, 400, "invalid_request");
        let repeated = send(
            http.post(format!("{}/token", base(pkid)))
                .basic_auth(&id, Some(&secret))
                .header("content-type", "application/x-www-form-urlencoded")
                .body("grant_type=client_credentials&grant_type=password"),
        )
        .await;
        expect_error(repeated, 400, "invalid_request");
        let two_methods = token_request(
            &http,
            pkid,
            basic,
            &[
                ("grant_type", "client_credentials"),
                ("client_secret", &secret),
            ],
        )
        .await;
        expect_error(two_methods, 400, "invalid_request");
        expect_error(
            token_request(
                &http,
                pkid,
                basic,
                &[("grant_type", "password"), ("username", "ada")],
            )
            .await,
            400,
            "invalid_request",
        );
        let wrong_basic = token_request(
            &http,
            pkid,
            Some((&id, "not-the-secret")),
            &[("grant_type", "client_credentials")],
        )
        .await;
        let wrong_basic = expect_error(wrong_basic, 401, "invalid_client");
        assert!(wrong_basic
            .header("www-authenticate")
            .is_some_and(|v| v.starts_with("Basic")));
        let wrong_form = token_request(
            &http,
            pkid,
            None,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &id),
                ("client_secret", "not-the-secret"),
            ],
        )
        .await;
        let wrong_form = expect_error(wrong_form, 401, "invalid_client");
        assert_eq!(wrong_form.header("www-authenticate"), None);
        let unknown_client = token_request(
            &http,
            pkid,
            Some(("no-such-client", "x")),
            &[("grant_type", "client_credentials")],
        )
        .await;
        let unknown_client = expect_error(unknown_client, 401, "invalid_client");
        assert_eq!(unknown_client.body, wrong_basic.body);
        expect_error(
            token_request(&http, pkid, None, &[("grant_type", "client_credentials")]).await,
            401,
            "invalid_client",
        );
        let wrong_password =
            token_request(&http, pkid, basic, &password_grant("ada", "wrong password")).await;
        let wrong_password = expect_error(wrong_password, 400, "invalid_grant");
        let unknown_user =
            token_request(&http, pkid, basic, &password_grant("nobody", PASSWORD)).await;
        let unknown_user = expect_error(unknown_user, 400, "invalid_grant");
        assert_eq!(unknown_user.body, wrong_password.body);
        expect_error(
            token_request(
                &http,
                pkid,
                Some((&cc_id, &cc_secret)),
                &password_grant("ada", PASSWORD),
            )
            .await,
            400,
            "unauthorized_client",
        );
        expect_error(
            token_request(
                &http,
                pkid,
                basic,
                &[("grant_type", "authorization_code"), ("code", "x")],
            )
            .await,
            400,
            "unsupported_grant_type",
        );
        expect_error(
            token_request(
                &http,
                pkid,
                basic,
                &[
                    ("grant_type", "client_credentials"),
                    ("scope", "iam:admin.write"),
                ],
            )
            .await,
            400,
            "invalid_scope",
        );
        let mut admin_only = password_grant("rey", PASSWORD).to_vec();
        admin_only.push(("scope", "iam:admin.read"));
        expect_error(
            token_request(&http, pkid, basic, &admin_only).await,
            400,
            "invalid_scope",
        );
        let get = send(http.get(format!("{}/token", base(pkid)))).await;
        assert_eq!(get.status, 405);

        // The token verifies with the published key (RFC 7517 JWK Set), independently of pkid.
        let jwks = send(http.get(format!("{}/.well-known/jwks.json", base(pkid)))).await;
        assert_eq!(jwks.status, 200);
        let jwk = jwks.body["keys"][0].clone();
        assert_eq!(
            (jwk["kty"].as_str(), jwk["crv"].as_str()),
            (Some("EC"), Some("P-256"))
        );
        let (header, claims, _) = jwt_parts(&ada_token);
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["typ"], "JWT");
        assert_eq!(header["kid"], jwk["kid"]);
        for claim in ["iss", "sub", "scope", "roles", "exp", "iat", "jti"] {
            assert!(!claims[claim].is_null(), "no {claim} in {claims}");
        }
        assert_eq!(claims["roles"], json!(["admin"]));
        let verifier = josekit::jws::ES256
            .verifier_from_jwk(
                &josekit::jwk::Jwk::from_map(jwk.as_object().unwrap().clone()).unwrap(),
            )
            .unwrap();
        josekit::jwt::decode_with_verifier(&ada_token, &verifier).unwrap();

        // Tampered, foreign-key, unsigned: refused.
        assert_eq!(whoami(&http, pkid, Some(&ada_token)).await.status, 200);
        let (_, rey_claims, _) = jwt_parts(
            &access_token(
                token_request(&http, pkid, basic, &password_grant("rey", PASSWORD)).await,
            )
            .await,
        );
        let mut raised = rey_claims.clone();
        raised["roles"] = json!(["admin"]);
        raised["sub"] = claims["sub"].clone();
        let (_, _, signature) = jwt_parts(&ada_token);
        let tampered = format!(
            "{}.{}.{signature}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(raised.to_string())
        );
        let foreign = sign_with_foreign_key(&header, &claims);
        let unsigned = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(json!({"alg": "none", "typ": "JWT"}).to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        for (what, token) in [
            ("tampered", tampered.as_str()),
            ("signed by another key", &foreign),
            ("unsigned", &unsigned),
            ("garbage", "not.a.jwt"),
        ] {
            let answer = whoami(&http, pkid, Some(token)).await;
            assert_eq!(answer.status, 401, "{what}: {}", answer.body);
            let admin = send(
                http.get(format!("{}/admin/eab-keys", base(pkid)))
                    .bearer_auth(token),
            )
            .await;
            assert_eq!(admin.status, 401, "{what} on /admin");
        }

        // A disabled user's token, and a disabled client's, stop at the next request.
        let ada_login = login_token(&http, pkid, "ada").await;
        assert_eq!(whoami(&http, pkid, Some(&ada_login)).await.status, 200);
        cli_ok(pkid, &["user", "disable", "ada"]).await;
        for token in [&ada_login, &ada_token] {
            assert_eq!(whoami(&http, pkid, Some(token)).await.status, 401);
        }
        let relogin = login(&http, pkid, "ada@pkid.test", PASSWORD).await;
        assert_eq!(relogin.status, 401);
        assert_eq!(whoami(&http, pkid, Some(&client_token)).await.status, 200);
        cli_ok(pkid, &["client", "disable", "portal"]).await;
        assert_eq!(whoami(&http, pkid, Some(&client_token)).await.status, 401);

        // No secret reached the log (debug level).
        let logs = pkid.logs();
        for secret in [PASSWORD, secret.as_str(), &ada_token, &client_token] {
            assert!(!logs.contains(secret), "a secret is in the log");
        }
    })
    .await;

    // The key outlives a restart; a token outlives its lifetime only until `exp`.
    within(TEST_BOUND, async {
        let pkid = &mut env.pkid;
        create_user(pkid, "eve", "read-only").await;
        let before = login_token(&http, pkid, "eve").await;
        pkid.set("PKID_IDENTITY__TOKEN_LIFETIME_SECS", "1");
        pkid.restart().await;
        assert_eq!(whoami(&http, pkid, Some(&before)).await.status, 200);
        let short = login_token(&http, pkid, "eve").await;
        let (_, claims, _) = jwt_parts(&short);
        assert_eq!(
            claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
            1
        );
        tokio::time::sleep(Duration::from_millis(2100)).await;
        let expired = whoami(&http, pkid, Some(&short)).await;
        assert_eq!(expired.status, 401, "{}", expired.body);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn password_guessing_is_slowed_per_user_and_address() {
    let env = Environment::start().await;
    within(TEST_BOUND, async {
        let pkid = &env.pkid;
        create_user(pkid, "victim", "certificate-requestor").await;
        create_user(pkid, "other", "certificate-requestor").await;
        let (first, second, third) = (
            client_from(pkid, "127.0.0.1"),
            client_from(pkid, "127.0.0.2"),
            client_from(pkid, "127.0.0.3"),
        );

        // An unknown user and a wrong password: the same answer.
        let unknown = login(&third, pkid, "nobody@pkid.test", "wrong password").await;
        let wrong = login(&third, pkid, "victim@pkid.test", "wrong password").await;
        assert_eq!((unknown.status, &unknown.body), (wrong.status, &wrong.body));
        assert_eq!(wrong.status, 401);

        // Fifty wrong passwords in a row from one address: slowed with 429 and Retry-After.
        let mut statuses = Vec::new();
        for i in 0..50 {
            let answer = login(&first, pkid, "victim@pkid.test", &format!("guess {i}")).await;
            if answer.status == 429 {
                let retry: u64 = answer.header("retry-after").unwrap().parse().unwrap();
                assert!((1..=300).contains(&retry), "Retry-After {retry}");
                assert!(answer.body["error"].is_string());
            }
            statuses.push(answer.status);
        }
        assert!(
            statuses.iter().all(|s| *s == 401 || *s == 429),
            "{statuses:?}"
        );
        let slowed = statuses.iter().filter(|s| **s == 429).count();
        assert!(
            slowed >= 40,
            "only {slowed} of 50 guesses were slowed: {statuses:?}"
        );
        // The victim's name stays throttled from elsewhere too …
        let elsewhere = login(&second, pkid, "victim@pkid.test", PASSWORD).await;
        assert_eq!(elsewhere.status, 429);
        // … but another user logging in from another address is not locked out.
        let other = login(&second, pkid, "other@pkid.test", PASSWORD).await;
        assert_eq!(other.status, 200, "{}", other.body);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn operator_commands_manage_users_clients_and_admin_tokens() {
    let env = Environment::start().await;
    within(TEST_BOUND, async {
        let pkid = &env.pkid;
        let http = client_from(pkid, "127.0.0.1");

        // A user with a linked certificate: its subject and issuer in RFC 2253 form.
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "IGI");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "test0");
        let cert = params.self_signed(&key).unwrap();
        let cert_path = env.subdir("certs").join("test0.pem");
        std::fs::write(&cert_path, cert.pem()).unwrap();
        let created = cli_ok(
            pkid,
            &[
                "user",
                "create",
                "linked",
                "--role",
                "certificate-requestor",
                "--certificate",
                cert_path.to_str().unwrap(),
            ],
        )
        .await;
        assert!(
            created.contains("certificate: subject=CN=test0,O=IGI issuer=CN=test0,O=IGI"),
            "{created}"
        );
        create_user(pkid, "ada", "admin").await;
        for (args, why) in [
            (
                vec!["user", "create", "ada", "--role", "admin"],
                "username taken",
            ),
            (
                vec!["user", "create", "bob", "--role", "root"],
                "unknown role",
            ),
            (
                vec!["user", "create", "b b", "--role", "admin"],
                "bad username",
            ),
            (vec!["user", "disable", "nobody"], "unknown user"),
        ] {
            let (ok, stdout, stderr) = pkid.cli(&args).await;
            assert!(!ok, "{why}: {stdout}");
            assert!(stderr.contains("pkid:"), "{why}: {stderr}");
        }
        let (ok, _, stderr) = pkid
            .cli_with_input(
                &[
                    "user",
                    "create",
                    "shorty",
                    "--role",
                    "admin",
                    "--password-stdin",
                ],
                Some(b"short\n"),
            )
            .await;
        assert!(!ok && stderr.contains("at least 8"), "{stderr}");

        // A bound key.
        let jwk_key = josekit::jws::ES256.generate_key_pair().unwrap();
        let jwk_path = env.subdir("keys").join("ada.jwk");
        std::fs::write(&jwk_path, jwk_key.to_jwk_public_key().to_string()).unwrap();
        let bound = cli_ok(
            pkid,
            &[
                "user",
                "bind-key",
                "ada",
                "--jwk",
                jwk_path.to_str().unwrap(),
            ],
        )
        .await;
        let thumbprint = bound.split_whitespace().nth(2).unwrap().to_owned();
        let (ok, _, _) = pkid
            .cli(&[
                "user",
                "bind-key",
                "linked",
                "--jwk",
                jwk_path.to_str().unwrap(),
            ])
            .await;
        assert!(!ok, "a key binds to one user");

        let list = cli_ok(pkid, &["user", "list"]).await;
        assert!(list.contains("ada\t"), "{list}");
        assert!(
            list.contains("roles=admin\temail=ada@pkid.test\tenabled=yes\tpassword=yes"),
            "{list}"
        );
        assert!(
            list.contains("  certificate\tsubject=CN=test0,O=IGI\tissuer=CN=test0,O=IGI"),
            "{list}"
        );
        assert!(list.contains(&format!("  key\t{thumbprint}")), "{list}");
        assert!(!list.contains("argon2"), "no hash is listed");
        cli_ok(pkid, &["user", "disable", "ada"]).await;
        let list = cli_ok(pkid, &["user", "list"]).await;
        assert!(list.contains("email=ada@pkid.test\tenabled=no"), "{list}");

        // A client: JSON, the secret once, and it works.
        let out = cli_ok(
            pkid,
            &[
                "client",
                "create",
                "portal",
                "--scopes",
                "proxy:generate iam:admin.read",
                "--json",
            ],
        )
        .await;
        let client: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(client["name"], "portal");
        assert_eq!(
            client["scopes"],
            json!(["proxy:generate", "iam:admin.read"])
        );
        assert_eq!(
            client["grant_types"],
            json!(["password", "client_credentials"])
        );
        let secret = client["client_secret"].as_str().unwrap();
        assert_eq!(URL_SAFE_NO_PAD.decode(secret).unwrap().len(), 32);
        let client_id = client["client_id"].as_str().unwrap();
        let answer = token_request(
            &http,
            pkid,
            Some((client_id, secret)),
            &[("grant_type", "client_credentials")],
        )
        .await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        let clients = cli_ok(pkid, &["client", "list"]).await;
        assert!(
            clients.contains(client_id) && !clients.contains(secret),
            "{clients}"
        );
        let (ok, _, _) = pkid
            .cli(&["client", "create", "portal", "--scopes", "x"])
            .await;
        assert!(!ok, "client names are unique");
        let (ok, _, _) = pkid
            .cli(&["client", "create", "bad", "--scopes", "a\"b"])
            .await;
        assert!(!ok, "scopes are RFC 6749 scope tokens");

        // Admin tokens: they expire, are listed without the token, and revoked.
        let (ok, stdout, _) = pkid
            .cli(&[
                "admin",
                "token",
                "create",
                "--note",
                "ops",
                "--expires-days",
                "7",
            ])
            .await;
        assert!(ok);
        let token = stdout
            .lines()
            .find_map(|l| l.strip_prefix("token: "))
            .unwrap()
            .to_owned();
        assert!(
            stdout.lines().any(|l| l.starts_with("expires: ")),
            "{stdout}"
        );
        let id = admin_token_id(pkid, "ops").await;
        let list = cli_ok(pkid, &["admin", "token", "list"]).await;
        let line = list.lines().find(|l| l.starts_with(&id)).unwrap();
        assert!(
            line.contains("\tlive\t") && !list.contains(&token),
            "{list}"
        );
        let eab_keys = format!("{}/admin/eab-keys", base(pkid));
        let answer = send(http.get(&eab_keys).bearer_auth(&token)).await;
        assert_eq!(answer.status, 200);
        cli_ok(pkid, &["admin", "token", "revoke", &id]).await;
        let list = cli_ok(pkid, &["admin", "token", "list"]).await;
        assert!(
            list.lines()
                .any(|l| l.starts_with(&id) && l.contains("\trevoked\t")),
            "{list}"
        );
        let answer = send(http.get(&eab_keys).bearer_auth(&token)).await;
        assert_eq!(answer.status, 401);
        let (ok, _, _) = pkid.cli(&["admin", "token", "revoke", &id]).await;
        assert!(!ok, "revoked already");
        let (ok, _, _) = pkid
            .cli(&["admin", "token", "create", "--expires-days", "0"])
            .await;
        assert!(!ok, "a token valid for no day");
    })
    .await;
}

/// Two replicas on one PostgreSQL (the migration's other half): a user and its linked
/// certificate written in one statement, a token signed by one replica accepted by the other,
/// and a user disabled through one refused by the other at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_on_postgresql_share_users_and_the_token_key() {
    let scratch = tempfile::Builder::new()
        .prefix("pkid-pg-")
        .tempdir()
        .unwrap();
    let postgres = crate::harness::postgres::Postgres::start(&scratch.path().join("pg"));
    let origin = "https://pkid.test";
    let settings = [
        ("PKID_DATABASE__URL", postgres.url.as_str()),
        ("PKID_SERVER__BASE_URL", origin),
    ];
    let env = Environment::start_with(&settings).await;
    let data_a = env.pkid.root_pem_path().parent().unwrap().to_path_buf();
    let dir_b = env.subdir("replica-b");
    let data_b = dir_b.join("pkid").join("data");
    crate::replicas::copy_dir(&data_a.join("ca"), &data_b.join("ca"));
    std::fs::copy(data_a.join("kek"), data_b.join("kek")).unwrap();
    let replica_b = Pkid::start(&dir_b, &env.dns, env.http01_port, &settings).await;
    within(TEST_BOUND, async {
        let (a, b) = (&env.pkid, &replica_b);
        let http = client_from(a, "127.0.0.1");
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::default();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "pg-user");
        let cert_path = env.subdir("certs").join("pg.pem");
        std::fs::write(&cert_path, params.self_signed(&key).unwrap().pem()).unwrap();
        let email = "ada@pkid.test";
        let args = [
            "user",
            "create",
            "ada",
            "--role",
            "admin",
            "--email",
            email,
            "--password-stdin",
            "--certificate",
            cert_path.to_str().unwrap(),
        ];
        let (ok, stdout, stderr) = a.cli_with_input(&args, Some(PASSWORD.as_bytes())).await;
        assert!(ok, "{stdout}\n{stderr}");
        let listed = cli_ok(b, &["user", "list"]).await;
        assert!(
            listed.contains("  certificate\tsubject=CN=pg-user"),
            "{listed}"
        );
        let (id, secret) = create_client(b, "reader", "iam:admin.read", &[]).await;

        let token = login_token(&http, a, "ada").await;
        assert_eq!(whoami(&http, b, Some(&token)).await.status, 200);
        let client_token = access_token(
            token_request(
                &http,
                b,
                Some((&id, &secret)),
                &[("grant_type", "client_credentials")],
            )
            .await,
        )
        .await;
        let keys = send(
            http.get(format!("{}/admin/eab-keys", base(a)))
                .bearer_auth(&client_token),
        )
        .await;
        assert_eq!(keys.status, 200, "{}", keys.body);
        let jwks = |p: &Pkid| {
            let http = http.clone();
            let url = format!("{}/.well-known/jwks.json", base(p));
            async move { send(http.get(url)).await.body }
        };
        assert_eq!(jwks(a).await, jwks(b).await, "one key");
        let (_, claims, _) = jwt_parts(&token);
        assert_eq!(claims["iss"], origin);

        cli_ok(b, &["user", "disable", "ada"]).await;
        assert_eq!(whoami(&http, a, Some(&token)).await.status, 401);
    })
    .await;
}

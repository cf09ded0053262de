//! `/login`, the OAuth2 token endpoint (RFC 6749: every grant and every §5.2 error) and pkid's
//! access tokens: expired, tampered and foreign tokens refused, a disabled user's or client's
//! token refused at its next use.

use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

use super::{
    access_token, base, cli_ok, client_from, create_client, create_user, jwt_parts, login,
    login_token, send, token_request, whoami, Answer, PASSWORD, TEST_BOUND,
};
use crate::harness::environment::{within, Environment};

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
                http.get(pkid.admin_url("/admin/eab-keys"))
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

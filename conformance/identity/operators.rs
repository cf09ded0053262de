//! Password guessing slowed per name and per address (never locking others out), the operator
//! commands that manage users, clients and admin tokens, and two replicas on one PostgreSQL.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

use super::{
    access_token, admin_token_id, base, cli_ok, client_from, create_client, create_user, jwt_parts,
    login, login_token, send, token_request, whoami, PASSWORD, TEST_BOUND,
};
use crate::harness::environment::{within, Environment};
use crate::harness::pkid::Pkid;

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
        let eab_keys = pkid.admin_url("/admin/eab-keys");
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
            http.get(a.admin_url("/admin/eab-keys"))
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

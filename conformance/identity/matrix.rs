//! Who may do what, one table: each principal kind (the four roles by `/login`, OAuth2
//! tokens with and without each scope, clients, linked client certificates, JWS-bound keys,
//! admin tokens live, expired and revoked, anonymous) × each action, with the exact status —
//! against a real pkid.

use reqwest::{Client, Method};
use serde_json::{json, Value};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

use super::{
    access_token, admin_token_id, base, bind_key, cli_ok, client_from, create_client, create_user,
    eab_key_count, login_token, send, signed, token_request, whoami, Answer, PASSWORD, TEST_BOUND,
};
use crate::harness::client::AcmeClient;
use crate::harness::environment::{within, Environment};
use crate::harness::made::{self, Made};
use crate::harness::pkid::Pkid;
use crate::harness::tls::https_client_as;

/// How a principal of the matrix authenticates.
enum Credential {
    Anonymous,
    /// `Authorization: Bearer`.
    Bearer(String),
    /// A client that presents its certificate when the TLS listener asks.
    Certificate(Client),
    /// Each request a JWS signed with this client's key.
    Jws(Box<AcmeClient>),
}

/// One principal of the matrix: how it authenticates, and the exact status of each action
/// (`GET /identity/me`, `GET /admin/eab-keys`, `POST /admin/eab-keys`).
struct Row {
    who: &'static str,
    credential: Credential,
    expect: [u16; 3],
}

impl Credential {
    /// `method url` with `body`, authenticated this way (`http` for the plain ones).
    async fn send(&self, http: &Client, method: Method, url: &str, body: &str) -> Answer {
        let plain = |http: &Client| http.request(method.clone(), url).body(body.to_owned());
        match self {
            Credential::Anonymous => send(plain(http)).await,
            Credential::Bearer(token) => send(plain(http).bearer_auth(token)).await,
            Credential::Certificate(as_holder) => send(plain(as_holder)).await,
            Credential::Jws(signer) => signed(http, signer, method, url, body).await,
        }
    }
}

/// A client that presents `holder` (leaf, its key) to `pkid`.
fn presenting(pkid: &Pkid, holder: &Made) -> Client {
    https_client_as(&pkid.root_pem(), None, Some(&holder.identity_pem())).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn authorization_matrix() {
    // Client certificates: a trusted CA, and an untrusted one that copies its name to forge
    // a linked user's subject and issuer.
    let clients_ca = made::ca("Clients CA");
    let forger = made::ca("Clients CA");
    let (cora, cole, nobody) = (
        made::client("cora", &clients_ca),
        made::client("cole", &clients_ca),
        made::client("nobody", &clients_ca),
    );
    let forged_cora = made::client("cora", &forger);
    let anchors = tempfile::Builder::new()
        .prefix("pkid-matrix-")
        .tempdir()
        .unwrap();
    let ca_file = anchors.path().join("clients-ca.pem");
    std::fs::write(&ca_file, &clients_ca.pem).unwrap();
    let setting = format!("[\"{}\"]", ca_file.display());
    let env = Environment::start_with(&[("PKID_SERVER__CLIENT_CA_FILES", &setting)]).await;
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
        let certs = env.subdir("certs");
        for (name, role, holder) in [("cora", "admin", &cora), ("cole", "read-only", &cole)] {
            let file = certs.join(format!("{name}.pem"));
            std::fs::write(&file, &holder.pem).unwrap();
            cli_ok(
                pkid,
                &[
                    "user",
                    "create",
                    name,
                    "--role",
                    role,
                    "--certificate",
                    &file.display().to_string(),
                ],
            )
            .await;
        }
        let (as_cora, as_cole, as_nobody, as_forged_cora) = (
            presenting(pkid, &cora),
            presenting(pkid, &cole),
            presenting(pkid, &nobody),
            presenting(pkid, &forged_cora),
        );
        let keys = env.subdir("keys");
        let (directory, root) = (pkid.directory_url(), pkid.root_pem());
        let (ada_key, ro_key, unbound_key) = (
            AcmeClient::new(&directory, &root).await,
            AcmeClient::new(&directory, &root).await,
            AcmeClient::new(&directory, &root).await,
        );
        bind_key(pkid, &keys, "ada", &ada_key).await;
        bind_key(pkid, &keys, "ro", &ro_key).await;

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

        let rows = vec![
            Row {
                who: "admin user, /login",
                credential: Credential::Bearer(login_token(&http, pkid, "ada").await),
                expect: [200, 200, 201],
            },
            Row {
                who: "certificate-manager user, /login",
                credential: Credential::Bearer(login_token(&http, pkid, "max").await),
                expect: [200, 403, 403],
            },
            Row {
                who: "certificate-requestor user, /login",
                credential: Credential::Bearer(login_token(&http, pkid, "rey").await),
                expect: [200, 403, 403],
            },
            Row {
                who: "read-only user, /login",
                credential: Credential::Bearer(login_token(&http, pkid, "ro").await),
                expect: [200, 403, 403],
            },
            Row {
                who: "admin user, /token with iam:admin.read",
                credential: Credential::Bearer(
                    access_token(user_token("ada", "iam:admin.read").await).await,
                ),
                expect: [200, 200, 403],
            },
            Row {
                who: "admin user, /token with iam:admin.write",
                credential: Credential::Bearer(
                    access_token(user_token("ada", "iam:admin.write").await).await,
                ),
                expect: [200, 403, 201],
            },
            Row {
                who: "admin user, /token with neither admin scope",
                credential: Credential::Bearer(
                    access_token(user_token("ada", "proxy:generate").await).await,
                ),
                expect: [200, 403, 403],
            },
            Row {
                who: "requestor user, /token asking for iam:admin.read",
                credential: Credential::Bearer(access_token(rey_scoped).await),
                expect: [200, 403, 403],
            },
            Row {
                who: "OAuth client with iam:admin.read",
                credential: Credential::Bearer(client_token(reader).await),
                expect: [200, 200, 403],
            },
            Row {
                who: "OAuth client with iam:admin.write",
                credential: Credential::Bearer(client_token(writer).await),
                expect: [200, 403, 201],
            },
            Row {
                who: "OAuth client with neither admin scope",
                credential: Credential::Bearer(client_token(plain).await),
                expect: [200, 403, 403],
            },
            Row {
                who: "admin token",
                credential: Credential::Bearer(pkid.admin_token("matrix").await),
                expect: [200, 200, 201],
            },
            Row {
                who: "expired admin token",
                credential: Credential::Bearer(expired),
                expect: [401, 401, 401],
            },
            Row {
                who: "revoked admin token",
                credential: Credential::Bearer(revoked),
                expect: [401, 401, 401],
            },
            Row {
                who: "anonymous",
                credential: Credential::Anonymous,
                expect: [401, 401, 401],
            },
            Row {
                who: "admin user, linked certificate",
                credential: Credential::Certificate(as_cora),
                expect: [200, 200, 201],
            },
            Row {
                who: "read-only user, linked certificate",
                credential: Credential::Certificate(as_cole),
                expect: [200, 403, 403],
            },
            Row {
                who: "trusted certificate linked to nobody",
                credential: Credential::Certificate(as_nobody),
                expect: [401, 401, 401],
            },
            Row {
                who: "untrusted certificate with a linked user's names",
                credential: Credential::Certificate(as_forged_cora),
                expect: [401, 401, 401],
            },
            Row {
                who: "admin user, JWS-bound key",
                credential: Credential::Jws(Box::new(ada_key)),
                expect: [200, 200, 201],
            },
            Row {
                who: "read-only user, JWS-bound key",
                credential: Credential::Jws(Box::new(ro_key)),
                expect: [200, 403, 403],
            },
            Row {
                who: "JWS key bound to nobody",
                credential: Credential::Jws(Box::new(unbound_key)),
                expect: [401, 401, 401],
            },
        ];
        let me_url = format!("{}/identity/me", base(pkid));
        let eab_keys = pkid.admin_url("/admin/eab-keys");
        let mut wrong = Vec::new();
        for row in &rows {
            let before = eab_key_count(pkid).await;
            let note = json!({"note": row.who}).to_string();
            let credential = &row.credential;
            let got = [
                credential.send(&http, Method::GET, &me_url, "").await,
                credential.send(&http, Method::GET, &eab_keys, "").await,
                credential.send(&http, Method::POST, &eab_keys, &note).await,
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
        let me_as = |row: usize| rows[row].credential.send(&http, Method::GET, &me_url, "");
        let me = me_as(0).await;
        assert_eq!(me.body["result"]["kind"], "user");
        assert_eq!(me.body["result"]["username"], "ada");
        assert_eq!(me.body["result"]["roles"], json!(["admin"]));
        assert_eq!(me.body["result"]["proof"], "bearer");
        assert_eq!(me.body["result"]["scopes"], Value::Null);
        let me = me_as(8).await;
        assert_eq!(me.body["result"]["kind"], "client");
        assert_eq!(me.body["result"]["scopes"], json!(["iam:admin.read"]));
        let me = me_as(11).await;
        assert_eq!(me.body["result"]["kind"], "operator");
        let me = me_as(15).await;
        assert_eq!(me.body["result"]["username"], "cora");
        assert_eq!(me.body["result"]["proof"], "certificate");
        let me = me_as(19).await;
        assert_eq!(me.body["result"]["username"], "ada");
        assert_eq!(me.body["result"]["proof"], "jws-key");
        let anonymous = whoami(&http, pkid, None).await;
        assert!(anonymous
            .header("www-authenticate")
            .is_some_and(|v| v.starts_with("Bearer")));
    })
    .await;
}

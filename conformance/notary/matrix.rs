//! The role matrix on a real pkid: every endpoint of `/api/v1` × anonymous and each Notary
//! role (0 admin, 1 certificate manager, 2 certificate requestor, 3 read-only) → the allowed
//! result, or 401/403 with `{"error"}` and nothing changed in the database. Each allowed write
//! acts on a resource of its own, so that every row sees the same world. Then, on the same
//! pkid, the bad-input list (`badinput`).

use serde_json::{json, Value};

use super::checks::{outside_ca_chain, outside_chain};
use super::{assert_error, openssl_csr, table_counts, Notary, TEST_BOUND};
use crate::harness::environment::{within, Environment};

/// Who calls: no credential, then Notary's roles 0–3.
const WHO: [&str; 5] = ["anonymous", "admin", "manager", "requestor", "read-only"];

/// One endpoint: what it acts on, and the status each of `WHO` gets.
struct Row {
    method: &'static str,
    /// The path; `{r}` a fresh Outstanding request, `{a}` a fresh Active one, `{c}` a fresh
    /// root CA, `{p}` a fresh pending intermediate, `{u}` a fresh read-only account, `{o}` the
    /// admin's own account.
    path: &'static str,
    body: Option<Value>,
    expect: [u16; 5],
}

fn row(method: &'static str, path: &'static str, body: Option<Value>, expect: [u16; 5]) -> Row {
    Row {
        method,
        path,
        body,
        expect,
    }
}

/// A fresh resource for one call.
struct World<'a> {
    n: &'a Notary,
    admin: String,
    ca: i64,
    made: u32,
}

impl World<'_> {
    fn csr(&mut self) -> String {
        self.made += 1;
        let name = format!("m{}", self.made);
        openssl_csr(&self.n.work, &name, &format!("/CN={name}.pkid.test"), None)
    }

    /// `row.path` with its placeholder made real, and the body (a chain for `{r}`'s CSR when
    /// the body asks for one).
    fn resolve(&mut self, row: &Row) -> (String, Option<Value>) {
        let n = self.n;
        let admin = self.admin.clone();
        let mut body = row.body.clone();
        let path = if row.path.contains("{r}") || row.path.contains("{a}") {
            self.made += 1;
            let name = format!("m{}", self.made);
            let csr = openssl_csr(&n.work, &name, &format!("/CN={name}.pkid.test"), None);
            let id = n.submit(&admin, &csr);
            if row.path.contains("{a}") {
                let sign = json!({"certificate_authority_id": self.ca.to_string()});
                n.expect(
                    202,
                    "POST",
                    &format!("/api/v1/certificate_requests/{id}/sign"),
                    Some(&admin),
                    Some(sign),
                );
            }
            if body == Some(json!("chain")) {
                body = Some(json!({"certificate": outside_chain(&n.work, &name)}));
            }
            row.path
                .replace("{r}", &id.to_string())
                .replace("{a}", &id.to_string())
        } else if row.path.contains("{c}") {
            row.path.replace(
                "{c}",
                &n.root_ca(&admin, "Matrix Root", "software").to_string(),
            )
        } else if row.path.contains("{p}") {
            let made = n.expect(
                201,
                "POST",
                "/api/v1/certificate_authorities",
                Some(&admin),
                Some(json!({"self_signed": false, "common_name": "Matrix Intermediate"})),
            );
            let id = super::created_id(&made);
            if body == Some(json!("ca-chain")) {
                self.made += 1;
                let name = format!("m{}", self.made);
                let shown = n.result(
                    Some(&admin),
                    &format!("/api/v1/certificate_authorities/{id}"),
                );
                std::fs::write(
                    n.work.join(format!("{name}.csr")),
                    shown["csr"].as_str().unwrap(),
                )
                .unwrap();
                body = Some(json!({"certificate_chain": outside_ca_chain(&n.work, &name)}));
            }
            row.path.replace("{p}", &id.to_string())
        } else if row.path.contains("{u}") {
            self.made += 1;
            let email = format!("u{}@pkid.test", self.made);
            let (id, _) = n.account(Some(&admin), &email, 3);
            row.path.replace("{u}", &id.to_string())
        } else if row.path.contains("{o}") {
            let me = n.result(Some(&admin), "/api/v1/accounts/me");
            row.path.replace("{o}", &me["id"].to_string())
        } else {
            row.path.to_owned()
        };
        if body == Some(json!("csr")) {
            body = Some(json!({"csr": self.csr()}));
        }
        if body == Some(json!("account")) {
            self.made += 1;
            body = Some(
                json!({"email": format!("new{}@pkid.test", self.made), "password": super::PASSWORD, "role_id": 2}),
            );
        }
        (path, body)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_by_every_role_then_bad_input() {
    let env = Environment::start().await;
    within(TEST_BOUND, async {
        let n = Notary::new(&env.pkid, &env.subdir("notary"));
        let (_, admin) = n.account(None, "admin@pkid.test", 0);
        let (_, manager) = n.account(Some(&admin), "manager@pkid.test", 1);
        let (_, requestor) = n.account(Some(&admin), "requestor@pkid.test", 2);
        let (_, reader) = n.account(Some(&admin), "reader@pkid.test", 3);
        let tokens: [Option<&str>; 5] = [
            None,
            Some(&admin),
            Some(&manager),
            Some(&requestor),
            Some(&reader),
        ];
        let ca = n.root_ca(&admin, "Matrix CA", "software");
        let mut world = World {
            n: &n,
            admin: admin.clone(),
            ca,
            made: 0,
        };

        let chain = Some(json!("chain"));
        let rows = [
            row("GET", "/status", None, [200, 200, 200, 200, 200]),
            row(
                "GET",
                "/api/v1/openapi.json",
                None,
                [200, 200, 200, 200, 200],
            ),
            row(
                "GET",
                "/api/v1/certificate_requests",
                None,
                [401, 200, 200, 200, 200],
            ),
            row(
                "POST",
                "/api/v1/certificate_requests",
                Some(json!("csr")),
                [401, 201, 201, 201, 403],
            ),
            row(
                "GET",
                "/api/v1/certificate_requests/{r}",
                None,
                [401, 200, 200, 403, 200],
            ),
            row(
                "DELETE",
                "/api/v1/certificate_requests/{r}",
                None,
                [401, 202, 202, 403, 403],
            ),
            row(
                "POST",
                "/api/v1/certificate_requests/{r}/reject",
                None,
                [401, 202, 202, 403, 403],
            ),
            row(
                "POST",
                "/api/v1/certificate_requests/{r}/sign",
                Some(json!({"certificate_authority_id": ca.to_string()})),
                [401, 202, 202, 403, 403],
            ),
            row(
                "POST",
                "/api/v1/certificate_requests/{r}/certificate",
                chain,
                [401, 201, 201, 403, 403],
            ),
            row(
                "POST",
                "/api/v1/certificate_requests/{a}/certificate/revoke",
                None,
                [401, 202, 202, 403, 403],
            ),
            row(
                "DELETE",
                "/api/v1/certificate_requests/{a}/certificate",
                None,
                [401, 200, 200, 403, 403],
            ),
            row(
                "GET",
                "/api/v1/certificate_authorities",
                None,
                [401, 200, 200, 403, 200],
            ),
            row(
                "POST",
                "/api/v1/certificate_authorities",
                Some(json!({"self_signed": true, "common_name": "Made"})),
                [401, 201, 201, 403, 403],
            ),
            row(
                "GET",
                "/api/v1/certificate_authorities/{c}",
                None,
                [401, 200, 200, 403, 200],
            ),
            row(
                "PUT",
                "/api/v1/certificate_authorities/{c}",
                Some(json!({"enabled": false})),
                [401, 200, 200, 403, 403],
            ),
            row(
                "DELETE",
                "/api/v1/certificate_authorities/{c}",
                None,
                [401, 200, 200, 403, 403],
            ),
            row(
                "POST",
                "/api/v1/certificate_authorities/{p}/sign",
                Some(json!({"certificate_authority_id": ca.to_string()})),
                [401, 202, 202, 403, 403],
            ),
            row(
                "POST",
                "/api/v1/certificate_authorities/{p}/certificate",
                Some(json!("ca-chain")),
                [401, 201, 201, 403, 403],
            ),
            row(
                "POST",
                "/api/v1/certificate_authorities/{c}/revoke",
                None,
                [401, 202, 202, 403, 403],
            ),
            row(
                "GET",
                "/api/v1/certificate_authorities/{c}/crl",
                None,
                [200, 200, 200, 200, 200],
            ),
            row("GET", "/api/v1/accounts", None, [401, 200, 403, 403, 403]),
            row(
                "POST",
                "/api/v1/accounts",
                Some(json!("account")),
                [401, 201, 403, 403, 403],
            ),
            row(
                "GET",
                "/api/v1/accounts/{u}",
                None,
                [401, 200, 403, 403, 403],
            ),
            row(
                "DELETE",
                "/api/v1/accounts/{u}",
                None,
                [401, 202, 403, 403, 403],
            ),
            row(
                "POST",
                "/api/v1/accounts/{u}/change_password",
                Some(json!({"password": super::PASSWORD})),
                [401, 201, 403, 403, 403],
            ),
            row(
                "GET",
                "/api/v1/accounts/me",
                None,
                [401, 200, 200, 200, 200],
            ),
        ];
        let mut served = Vec::new();
        for row in &rows {
            for (who, (token, expect)) in WHO.iter().zip(tokens.iter().zip(row.expect)) {
                let (path, body) = world.resolve(row);
                let before = table_counts(&env.pkid).await;
                let answer = n.curl(row.method, &path, *token, body);
                let what = format!("{} {} as {who}", row.method, row.path);
                assert_eq!(
                    answer.status,
                    expect,
                    "{what}: {}",
                    String::from_utf8_lossy(&answer.raw)
                );
                if expect == 401 || expect == 403 {
                    assert_error(&answer, &what);
                    if expect == 403 {
                        assert_eq!(answer.body["error"], "access denied", "{what}");
                    }
                    assert_eq!(
                        table_counts(&env.pkid).await,
                        before,
                        "{what} changed something"
                    );
                }
            }
            let mut path = row.path.to_owned();
            for placeholder in ["{r}", "{a}", "{c}", "{p}", "{u}", "{o}"] {
                path = path.replace(placeholder, "{id}");
            }
            served.push(format!("{} {path}", row.method));
        }
        // A requestor sees its own requests, and only those.
        let own = n.submit(&requestor, &world.csr());
        let listed = n.result(Some(&requestor), "/api/v1/certificate_requests");
        let ids: Vec<i64> = listed
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_i64().unwrap())
            .collect();
        assert!(
            ids.contains(&own) && ids.len() == 2,
            "the requestor's own two: {ids:?}"
        );
        assert_eq!(
            n.result(
                Some(&requestor),
                &format!("/api/v1/certificate_requests/{own}")
            )["email"],
            "requestor@pkid.test"
        );
        // One's own password, whatever the role.
        for token in [&manager, &requestor, &reader] {
            n.expect(
                201,
                "POST",
                "/api/v1/accounts/me/change_password",
                Some(token),
                Some(json!({"password": super::PASSWORD})),
            );
        }
        // The matrix covers every operation of the surface's document.
        let document = n
            .expect(200, "GET", "/api/v1/openapi.json", None, None)
            .body;
        for (path, item) in document["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                let operation = format!("{} {path}", method.to_uppercase());
                assert!(
                    served.contains(&operation),
                    "{operation} is not in the matrix"
                );
            }
        }

        super::badinput::everything_refused(&env, &n, &admin, ca).await;
    })
    .await;
}

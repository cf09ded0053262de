//! The identity surface's OpenAPI document against the surface itself: served at
//! `/identity/openapi.json` (OpenAPI 3.1), every operation it lists routed (none answered "no
//! such resource" or 405), and schemathesis' generated requests answered without a 5xx and
//! within the document (status codes, content types, bodies).

use reqwest::Method;

use super::{base, bind_key, client_from, create_user, send, TEST_BOUND};
use crate::harness::client::AcmeClient;
use crate::harness::environment::{within, Environment};
use crate::harness::schemathesis::Fuzz;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_describes_the_surface_and_schemathesis_finds_no_fault() {
    let env = Environment::start().await;
    within(TEST_BOUND, async {
        let pkid = &env.pkid;
        let http = client_from(pkid, "127.0.0.1");
        let url = format!("{}/identity/openapi.json", base(pkid));
        let answer = send(http.get(&url)).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        let document = answer.body;
        assert!(
            document["openapi"]
                .as_str()
                .is_some_and(|v| v.starts_with("3.1")),
            "not OpenAPI 3.1: {}",
            document["openapi"]
        );

        // Every operation the document lists is one the surface routes.
        create_user(pkid, "doc", "admin").await;
        let key = AcmeClient::new(&pkid.directory_url(), &pkid.root_pem()).await;
        bind_key(pkid, &env.subdir("keys"), "doc", &key).await;
        let token = pkid.admin_token("openapi").await;
        let paths = document["paths"].as_object().expect("paths");
        let mut operations = 0;
        for (path, item) in paths {
            let concrete = path.replace("{thumbprint}", &key.key.thumbprint);
            for method in item.as_object().expect("a path item").keys() {
                let method: Method = method.to_uppercase().parse().expect("a method");
                let answer = send(
                    http.request(method.clone(), format!("{}{concrete}", base(pkid)))
                        .bearer_auth(&token),
                )
                .await;
                assert_ne!(answer.status, 405, "{method} {path}: {}", answer.body);
                assert_ne!(
                    answer.body,
                    serde_json::json!({"error": "no such identity resource"}),
                    "{method} {path} is in the document but not routed"
                );
                operations += 1;
            }
        }
        assert!(operations >= 6, "only {operations} operations: {document}");
        assert!(paths.contains_key("/token") && paths.contains_key("/login"));
        assert!(
            document["components"]["schemas"]["TokenAnswer"].is_object(),
            "the schemas come from the wire types: {document}"
        );

        Fuzz {
            schema_url: url,
            ca_file: &pkid.root_pem_path(),
            headers: vec![("Authorization".into(), format!("Bearer {token}"))],
            client_certificate: None,
            checks: &[
                "status_code_conformance",
                "content_type_conformance",
                "response_schema_conformance",
            ],
            max_examples: 50,
        }
        .run();
    })
    .await;
}

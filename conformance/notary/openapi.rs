//! The surface's OpenAPI document against the surface: served at `/api/v1/openapi.json`
//! (OpenAPI 3.1), every operation it lists routed (none answered the router's `not found` or
//! 405), and schemathesis' generated requests, as an admin, answered without a 5xx and within
//! the document (status codes, content types, bodies).

use serde_json::Value;

use super::{Notary, TEST_BOUND};
use crate::harness::environment::{within, Environment};
use crate::harness::schemathesis::Fuzz;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_describes_the_surface_and_schemathesis_finds_no_fault() {
    let env = Environment::start().await;
    within(TEST_BOUND, async {
        let n = Notary::new(&env.pkid, &env.subdir("notary"));
        let (_, admin) = n.account(None, "admin@pkid.test", 0);
        let ca = n.root_ca(&admin, "Document Root", "software");
        let document: Value = n
            .expect(200, "GET", "/api/v1/openapi.json", None, None)
            .body;
        assert!(
            document["openapi"]
                .as_str()
                .is_some_and(|v| v.starts_with("3.1")),
            "{document}"
        );
        let mut operations = 0;
        for (path, item) in document["paths"].as_object().unwrap() {
            let concrete = path.replace("{id}", &ca.to_string());
            for method in item.as_object().unwrap().keys() {
                let method = method.to_uppercase();
                if method == "DELETE" {
                    continue;
                }
                let answer = n.curl(&method, &concrete, Some(&admin), None);
                assert_ne!(answer.status, 405, "{method} {path}");
                assert_ne!(
                    answer.body,
                    serde_json::json!({"error": "not found"}),
                    "{method} {path} is in the document but not routed"
                );
                operations += 1;
            }
        }
        assert!(operations >= 20, "{operations} operations");
        assert!(document["components"]["schemas"]["CertificateRequest"].is_object());

        Fuzz {
            schema_url: format!("{}/api/v1/openapi.json", n.base),
            ca_file: &env.pkid.root_pem_path(),
            headers: vec![("Authorization".into(), format!("Bearer {admin}"))],
            client_certificate: None,
            checks: &[
                "status_code_conformance",
                "content_type_conformance",
                "response_schema_conformance",
            ],
            max_examples: 20,
        }
        .run();
    })
    .await;
}

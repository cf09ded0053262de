//! The IAM surface's OpenAPI document against the surface itself: served at
//! `/iam/openapi.json` (OpenAPI 3.1), every operation it lists routed (none answered "Not
//! found" or 405), and schemathesis' generated requests, as an administrator, answered
//! without a 5xx and within the document (status codes, content types, bodies).

use serde_json::json;

use super::World;
use crate::harness::schemathesis::Fuzz;
use crate::identity::{client_from, login_token};

pub(super) async fn scenario(w: &World<'_>) {
    let http = client_from(w.pkid, "127.0.0.1");
    let admin = login_token(&http, w.pkid, "admin").await;
    let document = w.curl(None, &[], "/iam/openapi.json");
    assert_eq!(document.status, 200, "{}", document.text);
    let document = document.body;
    assert!(
        document["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "not OpenAPI 3.1: {}",
        document["openapi"]
    );
    assert!(
        document["components"]["schemas"]["CertLinkRequest"].is_object(),
        "the schemas come from the wire types: {document}"
    );

    // Every operation the document lists is one the surface routes.
    let list = w.curl(Some(&admin), &[], "/iam/cert_link_requests?count=1");
    let uuid = list.body["Resources"][0]["uuid"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut operations = 0;
    for (path, item) in document["paths"].as_object().expect("paths") {
        let concrete = path.replace("{uuid}", &uuid);
        for method in item.as_object().expect("a path item").keys() {
            let method = method.to_uppercase();
            let answer = w.curl(Some(&admin), &["-X", &method], &concrete);
            assert_ne!(answer.status, 405, "{method} {path}: {}", answer.text);
            assert_ne!(
                answer.body,
                json!({"error": "Not found"}),
                "{method} {path} is in the document but not routed"
            );
            operations += 1;
        }
    }
    assert_eq!(operations, 10, "{document}");

    Fuzz {
        schema_url: format!("{}/iam/openapi.json", w.base),
        ca_file: &w.pkid.root_pem_path(),
        headers: vec![("Authorization".into(), format!("Bearer {admin}"))],
        client_certificate: None,
        checks: &[
            "status_code_conformance",
            "content_type_conformance",
            "response_schema_conformance",
        ],
        max_examples: 25,
    }
    .run();
}

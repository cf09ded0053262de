//! The surface's OpenAPI document against the surface itself: served at `/v2/openapi.json`
//! (OpenAPI 3.1), every operation it lists routed (none answered 405 or "no resource at"),
//! and schemathesis' generated requests, presented with an RA operator's TLS client
//! certificate, answered without a 5xx and within the document (status codes, content types,
//! bodies).

use reqwest::Method;

use super::{Clients, Ra, TEST_BOUND};
use crate::harness::environment::{within, Environment};
use crate::harness::schemathesis::Fuzz;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_describes_the_surface_and_schemathesis_finds_no_fault() {
    let clients = Clients::new();
    let env =
        Environment::start_with(&[(clients.setting().0.as_str(), clients.setting().1.as_str())])
            .await;
    within(TEST_BOUND, async {
        clients.link(&env.pkid).await;
        let ra = Ra::new(&env.pkid, Some(&clients.operator));
        let served = ra.get("/v2/openapi.json").await;
        assert_eq!(served.status, 200, "{served:?}");
        assert_eq!(served.content_type, "application/json");
        let document = served.body;
        let version = document["openapi"].as_str().unwrap_or_default();
        assert!(version.starts_with("3.1."), "not OpenAPI 3.1: {version:?}");
        assert!(
            document["components"]["schemas"]["ClientCertificateSignRequestDto"].is_object(),
            "the schemas come from the wire types"
        );

        // Every operation the document lists is routed: called with made-up identifiers and
        // no body, none is 405 or the surface's "no resource at".
        let paths = document["paths"].as_object().expect("paths");
        let mut operations = 0;
        for (path, item) in paths {
            let concrete: String = path
                .split('/')
                .map(|part| if part.starts_with('{') { "x" } else { part })
                .collect::<Vec<_>>()
                .join("/");
            for method in item.as_object().expect("a path item").keys() {
                let method: Method = method.to_uppercase().parse().expect("a method");
                let answer = ra.call(method.clone(), &concrete, None).await;
                assert_ne!(answer.status, 405, "{method} {path}: {answer:?}");
                let message = answer.body["message"].as_str().unwrap_or_default();
                assert!(
                    !message.starts_with("no resource at") && message != "no such resource",
                    "{method} {path} is in the document but not routed: {answer:?}"
                );
                assert!(answer.status < 500, "{method} {path}: {answer:?}");
                operations += 1;
            }
        }
        assert!(operations >= 30, "only {operations} operations");

        // Something for the generated requests to find: an RA profile on the software CA.
        ra.profile(&ra.authority("default").await, "fuzzed", &[])
            .await;
        let certificate = env.subdir("client").join("operator.pem");
        let key = env.subdir("client").join("operator.key");
        std::fs::write(&certificate, &clients.operator.pem).unwrap();
        std::fs::write(&key, clients.operator.key.serialize_pem()).unwrap();
        Fuzz {
            schema_url: format!("https://127.0.0.1:{}/v2/openapi.json", env.pkid.port()),
            ca_file: &env.pkid.root_pem_path(),
            headers: Vec::new(),
            client_certificate: Some((certificate, key)),
            checks: &[
                "status_code_conformance",
                "content_type_conformance",
                "response_schema_conformance",
            ],
            max_examples: 15,
        }
        .run();
    })
    .await;
}

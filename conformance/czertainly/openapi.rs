//! The surface's OpenAPI document against the surface itself: served at `/v2/openapi.json`
//! (OpenAPI 3.1), every operation it lists routed (none answered 405 or "no resource at"),
//! the operator's certificate forwarded by a trusted proxy in `X-APP-CERTIFICATE` (and only
//! by it), and schemathesis' generated requests, presented with an RA operator's TLS client
//! certificate, answered without a 5xx and within the document (status codes, content types,
//! bodies).

use reqwest::Method;

use super::{Clients, Ra, TEST_BOUND};
use crate::client_certs::curl;
use crate::harness::environment::{within, Environment};
use crate::harness::schemathesis::Fuzz;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_describes_the_surface_and_schemathesis_finds_no_fault() {
    let clients = Clients::new();
    let (client_cas, files) = clients.setting();
    // 127.0.0.2 plays a TLS-terminating proxy that forwards the client's certificate.
    let env = Environment::start_with(&[
        (client_cas.as_str(), files.as_str()),
        ("PKID_SERVER__TRUSTED_PROXIES", "[\"127.0.0.2\"]"),
    ])
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

        // The operator's certificate forwarded in X-APP-CERTIFICATE (curl): heeded from the
        // trusted proxy only.
        let forwarded = |from| {
            curl(
                &env,
                "/v1/authorities",
                None,
                Some(&clients.operator.pem),
                from,
            )
        };
        let (ok, out) = forwarded("127.0.0.2");
        assert!(
            ok && out.contains("\"name\":\"default\""),
            "through the proxy:\n{out}"
        );
        let (_, out) = forwarded("127.0.0.1");
        assert!(
            out.contains("< HTTP/1.1 401") || out.contains("< HTTP/2 401"),
            "not from the proxy:\n{out}"
        );

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

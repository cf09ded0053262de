//! The admin listener and the base URL (security hardening, item 8) on a real pkid: the admin
//! API (`/admin/…`) is served on `server.admin_listen` only, over TLS with the server's
//! certificate, and the public listener answers it as it answers any unknown path; a listener
//! beyond loopback without `server.base_url` is refused at start-up, before anything is bound.

use std::time::Duration;

use crate::harness::environment::{within, Environment};
use crate::harness::process::free_port;
use crate::harness::tls::https_client;

const TEST_BOUND: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_is_served_on_the_admin_listener_only() {
    let mut env = Environment::start().await;
    within(TEST_BOUND, async {
        let pkid = &env.pkid;
        let token = pkid.admin_token("listener").await;
        let http = https_client(&pkid.root_pem()).unwrap();
        let public = |path: &str| format!("https://127.0.0.1:{}{path}", pkid.port());
        let get = |url: String, token: Option<&str>| {
            let mut request = http.get(&url);
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            async move {
                let answer = request
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("{url}: {e}"));
                let status = answer.status().as_u16();
                (status, answer.text().await.unwrap_or_default())
            }
        };

        // The public listener: the admin API is an unknown path, token or not.
        let unknown = get(public("/no-such-path"), None).await;
        assert_eq!(unknown.0, 404);
        for path in ["/admin/eab-keys", "/admin/", "/admin/eab-keys/some-kid"] {
            assert_eq!(get(public(path), Some(&token)).await, unknown, "{path}");
        }
        let created = http
            .post(public("/admin/eab-keys"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(r#"{"note":"through the public listener"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(created.status().as_u16(), 404);

        // The admin listener, over TLS with a certificate of the same CA and names: the admin
        // API, authenticated as ever, and nothing else.
        let (status, body) = get(pkid.admin_url("/admin/eab-keys"), None).await;
        assert_eq!(status, 401, "{body}");
        let (status, body) = get(pkid.admin_url("/admin/eab-keys"), Some(&token)).await;
        assert_eq!((status, body.as_str()), (200, r#"{"result":[]}"#));
        assert_eq!(get(pkid.admin_url("/healthz"), None).await.0, 200);
        for path in ["/acme/directory", "/crl/default.crl", "/login", "/"] {
            assert_eq!(get(pkid.admin_url(path), None).await.0, 404, "{path}");
        }
        // And the public one still serves everything else.
        assert_eq!(get(public("/acme/directory"), None).await.0, 200);
    })
    .await;

    // pkid's command line manages what the admin API does, whatever the listeners.
    env.pkid.set("PKID_SERVER__ADMIN_LISTEN", "");
    env.pkid.restart().await;
    let http = https_client(&env.pkid.root_pem()).unwrap();
    let refused = http.get(env.pkid.admin_url("/admin/eab-keys")).send().await;
    assert!(refused.is_err(), "no admin listener: {refused:?}");
    let (ok, stdout, stderr) = env.pkid.cli(&["eab", "list"]).await;
    assert!(ok, "{stdout}{stderr}");
}

/// Beyond loopback every URL pkid writes would come from the Host header a client chooses:
/// `pkid serve` refuses to start without `server.base_url`, with a message that says so and
/// what to set, and binds nothing (`0.0.0.0` on a free port: nothing listens there after).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_beyond_loopback_needs_a_base_url() {
    let mut env = Environment::start().await;
    within(TEST_BOUND, async {
        let pkid = &mut env.pkid;
        let port = free_port();
        let own = format!("127.0.0.1:{}", pkid.port());
        pkid.set("PKID_SERVER__LISTEN", &format!("0.0.0.0:{port}"));
        let (ok, stdout, stderr) = pkid.cli(&["serve"]).await;
        assert!(!ok, "pkid serve started beyond loopback without a base URL:\n{stdout}");
        assert!(
            stderr.contains(&format!(
                "server.base_url must be set when server.listen (0.0.0.0:{port}) is not a loopback address"
            )),
            "{stderr}"
        );
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "something listens on {port}"
        );
        assert!(!stdout.contains("ACME directory"), "{stdout}");
        // The same settings on loopback serve as before.
        pkid.set("PKID_SERVER__LISTEN", &own);
        pkid.restart().await;
    })
    .await;
}

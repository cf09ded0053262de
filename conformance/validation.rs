//! The validator is not a tool for reaching what only pkid can reach (issue "security hardening",
//! item 2): an http-01 redirect is followed only to `http` on the http-01 port or `https` on 443,
//! to a name the identifier policy allows or an address the address policy allows; every address
//! is checked before a connection is made (`acme.validation.denied_ranges` on top of a fixed
//! floor); a wrong answer is not echoed into the problem; IP identifiers are compared in
//! canonical form (an IPv4-mapped IPv6 address does not slip past `denied_ip_ranges`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::harness::client::AcmeClient;
use crate::harness::environment::{within, Environment};
use crate::harness::http01::Http01Responder;
use crate::harness::process::free_port;

const TEST_BOUND: Duration = Duration::from_secs(120);

/// A loopback listener that counts the connections made to it and answers each with `answer`
/// (an HTTP/1.1 response, or nothing). Stops when dropped.
struct Listener {
    port: u16,
    accepted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Listener {
    async fn bind(port: u16, answer: impl Fn(&str) -> String + Send + Sync + 'static) -> Listener {
        let socket = TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap_or_else(|e| panic!("binding 127.0.0.1:{port}: {e}"));
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        let answer = Arc::new(answer);
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = socket.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                let answer = answer.clone();
                tokio::spawn(async move {
                    let mut request = vec![0u8; 4096];
                    let n = stream.read(&mut request).await.unwrap_or(0);
                    let head = String::from_utf8_lossy(&request[..n]).to_string();
                    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                    let _ = stream.write_all(answer(&path).as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Listener {
            port,
            accepted,
            task,
        }
    }

    fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn redirect_to(location: String) -> String {
    format!(
        "HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
}

fn ok_body(body: String) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Orders `name`, responds to its http-01 challenge and waits for the authorization to settle;
/// returns the settled authorization and its http-01 challenge.
async fn settle(client: &AcmeClient, name: &str) -> (Value, Value) {
    let (_, authz_url, challenge) = client.order_one(name, "http-01").await;
    let url = challenge["url"].as_str().unwrap();
    let answer = client.post(url, Some(&json!({}))).await;
    assert_eq!(answer.status, 200, "respond: {}", answer.describe());
    let authz = client
        .poll_until(&authz_url, &["valid", "invalid"], &[])
        .await;
    let challenge = authz["challenges"]
        .as_array()
        .and_then(|all| all.iter().find(|c| c["type"] == "http-01"))
        .cloned()
        .unwrap();
    (authz, challenge)
}

fn assert_refused(name: &str, authz: &Value, challenge: &Value, wanted: &str) {
    assert_eq!(authz["status"], "invalid", "{name}: {authz}");
    assert_eq!(
        challenge["error"]["type"], "urn:ietf:params:acme:error:connection",
        "{name}: {challenge}"
    );
    let detail = challenge["error"]["detail"].as_str().unwrap_or("");
    assert!(
        detail.contains(wanted),
        "{name}: {detail:?} lacks {wanted:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_off_the_rules_are_refused_and_nothing_is_fetched() {
    let env = Environment::start().await;
    within(TEST_BOUND, async {
        // An internal service on another loopback port: nothing may reach it.
        let internal = Listener::bind(free_port(), |_| ok_body("internal secret".into())).await;
        // The client's responder redirects every challenge to the case's location.
        let location = Arc::new(std::sync::Mutex::new(String::new()));
        let current = location.clone();
        let redirector = Listener::bind(env.http01_port, move |_| {
            redirect_to(current.lock().unwrap().clone())
        })
        .await;
        let mut client = AcmeClient::new(&env.pkid.directory_url(), &env.pkid.root_pem()).await;
        client.register().await;
        let cases = [
            (
                "another-port.pkid.test",
                format!("http://127.0.0.1:{}/internal/admin", internal.port),
            ),
            (
                "https-other-port.pkid.test",
                format!("https://127.0.0.1:{}/internal/admin", internal.port),
            ),
            (
                "metadata.pkid.test",
                format!(
                    "http://169.254.169.254:{}/latest/meta-data/",
                    env.http01_port
                ),
            ),
            (
                "mapped-metadata.pkid.test",
                format!(
                    "http://[::ffff:169.254.169.254]:{}/latest/meta-data/",
                    env.http01_port
                ),
            ),
            ("other-scheme.pkid.test", "ftp://127.0.0.1/x".to_string()),
        ];
        for (name, target) in cases {
            *location.lock().unwrap() = target;
            let before = redirector.connections();
            let (authz, challenge) = settle(&client, name).await;
            assert_refused(name, &authz, &challenge, "is refused");
            assert!(
                redirector.connections() > before,
                "{name}: pkid asked the client"
            );
        }
        assert_eq!(
            internal.connections(),
            0,
            "no redirect reached the internal port"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_within_the_rules_is_followed() {
    let env = Environment::start().await;
    within(TEST_BOUND, async {
        let mut client = AcmeClient::new(&env.pkid.directory_url(), &env.pkid.root_pem()).await;
        client.register().await;
        let (order, authz_url, challenge) = client.order_one("moved.pkid.test", "http-01").await;
        let token = challenge["token"].as_str().unwrap().to_string();
        let key_authorization = client.key.key_authorization(&token);
        let port = env.http01_port;
        // The challenge path redirects to another path of the same name and port.
        let moved = format!("/moved/{token}");
        let target = moved.clone();
        let responder = Listener::bind(port, move |path| {
            if path == target {
                ok_body(key_authorization.clone())
            } else {
                format!(
                    "HTTP/1.1 301 Moved Permanently\r\nLocation: http://moved.pkid.test:{port}{target}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                )
            }
        })
        .await;
        let answer = client
            .post(challenge["url"].as_str().unwrap(), Some(&json!({})))
            .await;
        assert_eq!(answer.status, 200, "{}", answer.describe());
        client
            .poll_until(&authz_url, &["valid"], &["invalid"])
            .await;
        assert!(responder.connections() >= 2, "the redirect was followed");
        client.wait_ready(&order).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_ranges_refuse_a_name_that_resolves_into_them_before_connecting() {
    let env =
        Environment::start_with(&[("PKID_ACME__VALIDATION__DENIED_RANGES", "[\"127.0.0.0/8\"]")])
            .await;
    within(TEST_BOUND, async {
        let mut client = AcmeClient::new(&env.pkid.directory_url(), &env.pkid.root_pem()).await;
        client.register().await;
        let responder = Listener::bind(env.http01_port, |_| ok_body("unused".into())).await;
        let (authz, challenge) = settle(&client, "internal.pkid.test").await;
        assert_refused(
            "internal.pkid.test",
            &authz,
            &challenge,
            "refused by the validation address policy",
        );
        assert_eq!(responder.connections(), 0, "no connection was made");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_answer_is_not_echoed_into_the_problem() {
    let env = Environment::start().await;
    within(TEST_BOUND, async {
        let mut client = AcmeClient::new(&env.pkid.directory_url(), &env.pkid.root_pem()).await;
        client.register().await;
        let responder = Http01Responder::bind(env.http01_port).await;
        let (_, authz_url, challenge) = client.order_one("echo.pkid.test", "http-01").await;
        responder.serve(
            challenge["token"].as_str().unwrap(),
            "internal-service-secret-0451",
        );
        let answer = client
            .post(challenge["url"].as_str().unwrap(), Some(&json!({})))
            .await;
        assert_eq!(answer.status, 200, "{}", answer.describe());
        let authz = client
            .poll_until(&authz_url, &["invalid"], &["valid"])
            .await;
        let text = authz.to_string();
        assert!(text.contains("incorrectResponse"), "{authz}");
        assert!(
            !text.contains("internal-service-secret-0451"),
            "the answer leaked into {authz}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv4_written_as_ipv6_meets_the_ip_policy_in_canonical_form() {
    let env =
        Environment::start_with(&[("PKID_ACME__POLICY__DENIED_IP_RANGES", "[\"127.0.0.2/32\"]")])
            .await;
    within(TEST_BOUND, async {
        let mut client = AcmeClient::new(&env.pkid.directory_url(), &env.pkid.root_pem()).await;
        client.register().await;
        for denied in ["127.0.0.2", "::ffff:127.0.0.2", "64:ff9b::7f00:2"] {
            let response = client
                .post(
                    &client.resource("newOrder"),
                    Some(&json!({"identifiers": [{"type": "ip", "value": denied}]})),
                )
                .await;
            assert_eq!(response.status, 400, "{denied}: {}", response.describe());
            assert_eq!(
                response.problem_type().as_deref(),
                Some("urn:ietf:params:acme:error:rejectedIdentifier"),
                "{denied}"
            );
        }
        let response = client
            .post(
                &client.resource("newOrder"),
                Some(&json!({"identifiers": [{"type": "ip", "value": "::ffff:127.0.0.1"}]})),
            )
            .await;
        assert_eq!(response.status, 201, "{}", response.describe());
        assert_eq!(
            response.json()["identifiers"],
            json!([{"type": "ip", "value": "127.0.0.1"}]),
            "stored in canonical form"
        );
    })
    .await;
}

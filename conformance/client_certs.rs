//! TLS client authentication on the HTTPS listener, as curl and openssl see it, with
//! `server.client_ca_files` set: pkid asks for a client certificate (naming its anchors) and never
//! requires one. Verification is deferred to each request (identity), so a trusted, an untrusted
//! and an RFC 3820 proxy chain all complete the handshake and are answered; a client without a
//! certificate is answered as before, and an ACME client without one still issues. A certificate
//! linked to a user authenticates as that user (by TLS, through an RFC 3820 proxy, or in
//! `X-APP-CERTIFICATE` from a trusted proxy); an unlinked or untrusted one, and the header from
//! any other address, do not.

use std::path::PathBuf;
use std::time::Duration;

use crate::harness::certs::pem_chain;
use crate::harness::client::{csr_der, AcmeClient};
use crate::harness::environment::{within, Environment};
use crate::harness::http01::Http01Responder;
use crate::harness::made::{ca, client, proxy, write_pair};
use crate::harness::process::run_tool;
use crate::identity::cli_ok;

const TEST_BOUND: Duration = Duration::from_secs(120);

/// `curl -v https://…/healthz` trusting pkid's root, with a client certificate when given:
/// (success, body, verbose log).
fn curl_healthz(env: &Environment, pair: Option<&(PathBuf, PathBuf)>) -> (bool, String) {
    curl(env, "/healthz", pair, None, "127.0.0.1")
}

/// `curl -v` GET of `path` from the loopback address `from`, trusting pkid's root, with a client
/// certificate and an `X-APP-CERTIFICATE` header when given: (success, body and verbose log).
pub(crate) fn curl(
    env: &Environment,
    path: &str,
    pair: Option<&(PathBuf, PathBuf)>,
    app_certificate: Option<&str>,
    from: &str,
) -> (bool, String) {
    let url = format!("https://{}{path}", env.pkid.https_addr());
    let root = env.pkid.root_pem_path().display().to_string();
    // `-w \n`: the body ends its line, before the verbose log.
    let mut args: Vec<String> = [
        "-sS",
        "-v",
        "-w",
        "\\n",
        "--max-time",
        "20",
        "--interface",
        from,
        "--cacert",
    ]
    .map(String::from)
    .into();
    args.push(root);
    if let Some((pem, key)) = pair {
        args.extend([
            "--cert".to_string(),
            pem.display().to_string(),
            "--key".to_string(),
            key.display().to_string(),
        ]);
    }
    if let Some(pem) = app_certificate {
        let encoded = percent_encoded(pem);
        args.extend(["-H".to_string(), format!("X-APP-CERTIFICATE: {encoded}")]);
    }
    args.push(url);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_tool("curl", &args, &[])
}

/// `text` percent-encoded as nginx's `$ssl_client_escaped_cert` is: every byte but RFC 3986's
/// unreserved ones as `%XX` (so base64's `+` stays itself and a space is `%20`, not `+`).
fn percent_encoded(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Who `GET /identity/me` says the caller is: the username, or the status when not 200.
fn whoami(
    env: &Environment,
    pair: Option<&(PathBuf, PathBuf)>,
    app_certificate: Option<&str>,
    from: &str,
) -> Result<String, String> {
    let (ok, out) = curl(env, "/identity/me", pair, app_certificate, from);
    assert!(ok, "curl /identity/me:\n{out}");
    let status = out
        .lines()
        .find_map(|l| l.strip_prefix("< HTTP/").and_then(|l| l.split(' ').nth(1)))
        .unwrap_or_else(|| panic!("no status in:\n{out}"));
    if status != "200" {
        return Err(status.to_string());
    }
    let body = out
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON body in:\n{out}"));
    let body: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(body["result"]["proof"], "certificate", "{body}");
    Ok(body["result"]["username"].as_str().unwrap().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_asks_for_a_client_certificate_and_never_requires_one() {
    let clients_ca = ca("Clients CA");
    let alice = client("alice", &clients_ca);
    let bob = client("bob", &clients_ca);
    let elsewhere = ca("Elsewhere CA");
    let mallory = client("mallory", &elsewhere);
    let alice_proxy = proxy(&alice);

    let anchors = tempfile::Builder::new()
        .prefix("pkid-client-certs-")
        .tempdir()
        .expect("create a temporary folder");
    let ca_file = anchors.path().join("clients-ca.pem");
    std::fs::write(&ca_file, &clients_ca.pem).expect("write the clients' CA");
    let setting = format!("[\"{}\", \"backend:default\"]", ca_file.display());
    // 127.0.0.2 plays the TLS-terminating proxy.
    let env = Environment::start_with(&[
        ("PKID_SERVER__CLIENT_CA_FILES", &setting),
        ("PKID_SERVER__TRUSTED_PROXIES", "[\"127.0.0.2\"]"),
    ])
    .await;
    within(TEST_BOUND, async {
        let dir = env.subdir("clients");
        // The certificate request names the anchors: the file's CA and pkid's own root.
        let (_, hello) = run_tool(
            "openssl",
            &[
                "s_client",
                "-connect",
                &env.pkid.https_addr().to_string(),
                "-CAfile",
                &env.pkid.root_pem_path().display().to_string(),
            ],
            &[],
        );
        let acceptable = hello
            .split("Acceptable client certificate CA names")
            .nth(1)
            .unwrap_or_else(|| panic!("no certificate request:\n{hello}"));
        assert!(acceptable.contains("Clients CA"), "{hello}");
        assert!(acceptable.contains("pkid Root CA"), "{hello}");

        let trusted = write_pair(&dir, "alice", &[&alice], &alice);
        let (ok, out) = curl_healthz(&env, Some(&trusted));
        assert!(ok && out.contains("ok"), "a trusted certificate:\n{out}");
        // curl was asked for its certificate and proved its key.
        assert!(out.contains("Request CERT"), "{out}");
        assert!(out.contains("CERT verify"), "{out}");

        // Verification is deferred: an untrusted certificate completes the handshake and the
        // request is answered, as anonymous.
        let untrusted = write_pair(&dir, "mallory", &[&mallory], &mallory);
        let (ok, out) = curl_healthz(&env, Some(&untrusted));
        assert!(ok && out.contains("ok"), "an untrusted certificate:\n{out}");
        assert!(out.contains("CERT verify"), "{out}");

        // An RFC 3820 proxy chain, which rustls' own verifier refuses at the handshake.
        let proxied = write_pair(&dir, "alice-proxy", &[&alice_proxy, &alice], &alice_proxy);
        let (ok, out) = curl_healthz(&env, Some(&proxied));
        assert!(ok && out.contains("ok"), "a proxy chain:\n{out}");

        // No certificate at all.
        let (ok, out) = curl_healthz(&env, None);
        assert!(ok && out.contains("ok"), "no certificate:\n{out}");

        // With alice linked to her certificate, it authenticates as her: by TLS, through an
        // RFC 3820 proxy she issued, and in X-APP-CERTIFICATE from the trusted proxy.
        let alice_pem = dir.join("alice-linked.pem");
        std::fs::write(&alice_pem, &alice.pem).expect("write alice's certificate");
        let alice_pem = alice_pem.display().to_string();
        cli_ok(
            &env.pkid,
            &[
                "user",
                "create",
                "alice",
                "--role",
                "certificate-requestor",
                "--certificate",
                &alice_pem,
            ],
        )
        .await;
        let bob_pair = write_pair(&dir, "bob", &[&bob], &bob);
        let me = |pair, header, from| whoami(&env, pair, header, from);
        assert_eq!(me(Some(&trusted), None, "127.0.0.1"), Ok("alice".into()));
        assert_eq!(me(Some(&proxied), None, "127.0.0.1"), Ok("alice".into()));
        assert_eq!(me(None, Some(&alice.pem), "127.0.0.2"), Ok("alice".into()));
        // A trusted certificate linked to nobody, an untrusted one, and no certificate: anonymous.
        assert_eq!(me(Some(&bob_pair), None, "127.0.0.1"), Err("401".into()));
        assert_eq!(me(Some(&untrusted), None, "127.0.0.1"), Err("401".into()));
        assert_eq!(me(None, None, "127.0.0.1"), Err("401".into()));
        // The trusted proxy vouches only for certificates that verify …
        assert_eq!(me(None, Some(&mallory.pem), "127.0.0.2"), Err("401".into()));
        // … and from any other address the header is stripped: unheeded alone, and unable to
        // override the certificate the connection presented.
        assert_eq!(me(None, Some(&alice.pem), "127.0.0.1"), Err("401".into()));
        assert_eq!(
            me(Some(&bob_pair), Some(&alice.pem), "127.0.0.3"),
            Err("401".into())
        );
        assert_eq!(
            me(Some(&untrusted), Some(&alice.pem), "127.0.0.1"),
            Err("401".into())
        );

        // An ACME client that presents no certificate still issues.
        let responder = Http01Responder::bind(env.http01_port).await;
        let mut acme = AcmeClient::new(&env.pkid.directory_url(), &env.pkid.root_pem()).await;
        let names = ["client-certs.pkid.test"];
        let order = acme.ready_order(&names, &responder).await;
        let finalized = acme.finalize(&order, &csr_der(&names)).await;
        assert_eq!(finalized.status, 200, "{}", finalized.describe());
        let order = acme.wait_valid(&order).await;
        let url = order
            .certificate_url()
            .expect("a valid order has a certificate");
        let chain = acme.download_certificate(&url).await;
        assert!(pem_chain(&chain).len() >= 2, "{chain}");
    })
    .await;
}

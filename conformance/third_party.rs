//! Real ACME clients from Debian against a real pkid: lego and certbot, http-01 (RFC 8555 §8.3),
//! and revocation (§7.6) seen through the CRL and OCSP URLs pkid writes into its certificates.
//! Each obtains a certificate; the test then checks it as a user would: `openssl verify` against
//! pkid's root, exactly the requested names in the subjectAltName, no pkilint (RFC 5280) error.

use std::path::Path;
use std::time::{Duration, Instant};

use x509_parser::x509::ReasonCode;

use crate::certs::{
    check_issued, crl_entry_reason, openssl, pem_chain, revocation_urls, write_chain_files,
};
use crate::env::{require_tool, run_bounded, within, Environment};

const CLIENT_BOUND: Duration = Duration::from_secs(120);
const TEST_BOUND: Duration = Duration::from_secs(180);

/// Runs lego against pkid with http-01 on the environment's port; `action` is `run`, `revoke` …
/// Panics with lego's output unless it succeeds; returns that output.
async fn lego(env: &Environment, path: &Path, names: &[&str], action: &[&str]) -> String {
    let lego = require_tool("lego");
    let mut command = tokio::process::Command::new(lego);
    command
        .env("LEGO_CA_CERTIFICATES", env.pkid.root_pem_path())
        .args(["--server", &env.pkid.directory_url()])
        .args(["--accept-tos", "--email", "t@pkid.test"])
        .arg("--path")
        .arg(path);
    for name in names {
        command.args(["--domains", name]);
    }
    command
        .args([
            "--http",
            "--http.port",
            &format!("127.0.0.1:{}", env.http01_port),
        ])
        .args(action);
    let log = env.tmp.path().join(format!("lego-{}.log", action[0]));
    let (status, output) = run_bounded("lego", &mut command, CLIENT_BOUND, &log).await;
    assert!(
        status.success(),
        "lego {action:?} failed ({status}):\n{output}"
    );
    output
}

/// The certificate bundle lego stored for its first name (leaf, then issuers).
fn lego_chain(path: &Path, names: &[&str], output: &str) -> String {
    let bundle = path.join("certificates").join(format!("{}.crt", names[0]));
    std::fs::read_to_string(&bundle)
        .unwrap_or_else(|err| panic!("read {}: {err}\nlego said:\n{output}", bundle.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lego_http01() {
    require_tool("lego");
    let env = Environment::start().await;
    within(TEST_BOUND, async {
        let path = env.subdir("lego");
        let names = ["a.pkid.test", "b.pkid.test"];
        let output = lego(&env, &path, &names, &["run"]).await;
        let chain = lego_chain(&path, &names, &output);
        check_issued(
            &env.pkid.root_pem_path(),
            &chain,
            &names,
            &env.subdir("checks"),
        );
    })
    .await;
}

/// lego revokes its certificate (reason superseded, RFC 8555 §7.6); the CRL at the leaf's
/// distribution point then lists the serial with that reason and verifies against the CA
/// (`openssl crl`), and the leaf's OCSP responder says `revoked` (`openssl ocsp`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lego_revoke_shows_in_crl_and_ocsp() {
    require_tool("lego");
    require_tool("openssl");
    let env = Environment::start().await;
    within(TEST_BOUND, async {
        let path = env.subdir("lego");
        let names = ["r.pkid.test"];
        let output = lego(&env, &path, &names, &["run"]).await;
        let chain = lego_chain(&path, &names, &output);
        lego(&env, &path, &names, &["revoke", "--keep", "--reason", "4"]).await;

        let work = env.subdir("revocation");
        let (leaf, issuer, bundle) = write_chain_files(&env.pkid.root_pem_path(), &chain, &work);
        let (crl_urls, ocsp_urls) = revocation_urls(&chain);
        let crl_url = crl_urls
            .first()
            .unwrap_or_else(|| panic!("the leaf names no CRL distribution point:\n{chain}"));
        let ocsp_url = ocsp_urls
            .first()
            .unwrap_or_else(|| panic!("the leaf names no OCSP responder:\n{chain}"));

        // The CRL may be regenerated just after the revocation: poll briefly.
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("HTTP client");
        let deadline = Instant::now() + Duration::from_secs(15);
        let (crl_der, reason) = loop {
            let response = http
                .get(crl_url)
                .send()
                .await
                .unwrap_or_else(|err| panic!("GET {crl_url}: {err:?}"));
            assert_eq!(response.status().as_u16(), 200, "GET {crl_url}");
            let der = response.bytes().await.expect("read the CRL").to_vec();
            if let Some(reason) = crl_entry_reason(&der, &chain) {
                break (der, reason);
            }
            assert!(
                Instant::now() < deadline,
                "{crl_url} never listed the revoked serial"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        assert_eq!(reason, Some(ReasonCode::Superseded), "CRL entry reason");
        let crl_file = work.join("crl.der");
        std::fs::write(&crl_file, &crl_der).expect("write crl.der");
        let (ok, text) = openssl(&[
            "crl".as_ref(),
            "-inform".as_ref(),
            "DER".as_ref(),
            "-in".as_ref(),
            crl_file.as_os_str(),
            "-CAfile".as_ref(),
            bundle.as_os_str(),
            "-noout".as_ref(),
        ]);
        assert!(
            ok && text.contains("verify OK"),
            "openssl crl -verify:\n{text}"
        );

        let (ok, text) = openssl(&[
            "ocsp".as_ref(),
            "-issuer".as_ref(),
            issuer.as_os_str(),
            "-cert".as_ref(),
            leaf.as_os_str(),
            "-url".as_ref(),
            ocsp_url.as_ref(),
            "-CAfile".as_ref(),
            bundle.as_os_str(),
            "-no_nonce".as_ref(),
        ]);
        let leaf_line = format!("{}: revoked", leaf.display());
        assert!(
            ok && text.contains("Response verify OK") && text.contains(&leaf_line),
            "openssl ocsp for {ocsp_url}:\n{text}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certbot_standalone_http01() {
    let certbot = require_tool("certbot");
    let env = Environment::start().await;
    within(TEST_BOUND, async {
        let base = env.subdir("certbot");
        let name = "c.pkid.test";
        let mut command = tokio::process::Command::new(certbot);
        command
            .env("REQUESTS_CA_BUNDLE", env.pkid.root_pem_path())
            .args(["certonly", "--standalone", "--non-interactive"])
            .args(["--http-01-port", &env.http01_port.to_string()])
            .args(["--http-01-address", "127.0.0.1"])
            .args(["--server", &env.pkid.directory_url()])
            .arg("--config-dir")
            .arg(base.join("config"))
            .arg("--work-dir")
            .arg(base.join("work"))
            .arg("--logs-dir")
            .arg(base.join("logs"))
            .args(["-d", name])
            .args(["--agree-tos", "--register-unsafely-without-email"]);
        let log = env.tmp.path().join("certbot.log");
        let (status, output) = run_bounded("certbot", &mut command, CLIENT_BOUND, &log).await;
        assert!(status.success(), "certbot failed ({status}):\n{output}");

        let live = base.join("config").join("live").join(name);
        let read = |file: &str| {
            std::fs::read_to_string(live.join(file))
                .unwrap_or_else(|err| panic!("read {file}: {err}\ncertbot said:\n{output}"))
        };
        let fullchain = read("fullchain.pem");
        let cert = read("cert.pem");
        check_issued(
            &env.pkid.root_pem_path(),
            &fullchain,
            &[name],
            &env.subdir("checks"),
        );
        assert_eq!(
            pem_chain(&cert),
            pem_chain(&fullchain)[..1].to_vec(),
            "cert.pem is fullchain.pem's leaf"
        );
    })
    .await;
}

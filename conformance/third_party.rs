//! Real ACME clients from Debian against a real pkid: lego with http-01 (RFC 8555 §8.3),
//! tls-alpn-01 (RFC 8737), dns-01 with a wildcard (§8.4, §7.1.3) and external account binding
//! (§7.3.4); certbot with standalone and webroot http-01; revocation (§7.6) by account key and by
//! certificate key, seen through the CRL and OCSP URLs pkid writes into its certificates; and both
//! clients against test mode's refused nonces (§6.5). Each obtains a certificate; the test then
//! checks it as a user would: `openssl verify` against pkid's root, exactly the requested names in
//! the subjectAltName, no pkilint (RFC 5280) error.

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;
use x509_parser::x509::ReasonCode;

use crate::harness::certs::{
    check_ca_issuers, check_issued, crl_listing, ocsp_status, openssl_crl_verify, pem_chain,
    revocation_endpoints, write_chain_files, OcspSubject,
};
use crate::harness::client::AcmeClient;
use crate::harness::environment::{within, Environment};
use crate::harness::http01::Http01Responder;
use crate::harness::process::{free_port, require_tool, run_bounded};

const CLIENT_BOUND: Duration = Duration::from_secs(120);
const TEST_BOUND: Duration = Duration::from_secs(180);

/// How lego answers challenges.
pub(crate) enum Challenge {
    /// http-01 on the environment's http-01 port.
    Http01,
    /// tls-alpn-01 on this port (pkid's `acme.tls_alpn01_port`).
    TlsAlpn01(u16),
    /// dns-01 through lego's `exec` provider: this script sets and clears TXT records in the
    /// environment's DNS server.
    Dns01(PathBuf),
}

/// One lego account folder (`--path`) and the names it asks for.
pub(crate) struct Lego<'a> {
    env: &'a Environment,
    path: PathBuf,
    names: Vec<&'a str>,
    challenge: Challenge,
    /// The ACME directory: pkid's default one unless a test names another.
    pub(crate) server: String,
    /// Extra global options, e.g. `--eab --kid K --hmac H`.
    pub(crate) options: Vec<String>,
}

impl<'a> Lego<'a> {
    pub(crate) fn new(
        env: &'a Environment,
        folder: &str,
        names: &[&'a str],
        challenge: Challenge,
    ) -> Lego<'a> {
        Lego {
            env,
            path: env.subdir(folder),
            names: names.to_vec(),
            challenge,
            server: env.pkid.directory_url(),
            options: Vec::new(),
        }
    }

    /// Runs lego with `action` (`run`, `revoke` …); returns its exit status and output.
    pub(crate) async fn try_run(&self, action: &[&str]) -> (ExitStatus, String) {
        static RUNS: AtomicUsize = AtomicUsize::new(0);
        let mut command = tokio::process::Command::new(require_tool("lego"));
        command
            .env("LEGO_CA_CERTIFICATES", self.env.pkid.root_pem_path())
            .args(["--server", &self.server])
            .args(["--accept-tos", "--email", "t@pkid.test"])
            .arg("--path")
            .arg(&self.path)
            .args(&self.options);
        for name in &self.names {
            command.args(["--domains", name]);
        }
        match &self.challenge {
            Challenge::Http01 => {
                command.args([
                    "--http",
                    "--http.port",
                    &format!("127.0.0.1:{}", self.env.http01_port),
                ]);
            }
            Challenge::TlsAlpn01(port) => {
                command.args(["--tls", "--tls.port", &format!("127.0.0.1:{port}")]);
            }
            Challenge::Dns01(script) => {
                command
                    .env("EXEC_PATH", script)
                    .env("EXEC_POLLING_INTERVAL", "1")
                    .env("EXEC_PROPAGATION_TIMEOUT", "30")
                    // The wildcard and its base name share one TXT name, so lego solves them
                    // one after the other, waiting this long between (60 s by default).
                    .env("EXEC_SEQUENCE_INTERVAL", "1")
                    .args(["--dns", "exec", "--dns.disable-cp"])
                    .args(["--dns.resolvers", &self.env.dns.addr]);
            }
        }
        command.args(action);
        let run = RUNS.fetch_add(1, Ordering::Relaxed);
        let log = self
            .env
            .tmp
            .path()
            .join(format!("lego-{run}-{}.log", action[0]));
        run_bounded("lego", &mut command, CLIENT_BOUND, &log).await
    }

    /// Runs lego with `action`; panics with its output unless it succeeds.
    pub(crate) async fn run(&self, action: &[&str]) -> String {
        let (status, output) = self.try_run(action).await;
        assert!(
            status.success(),
            "lego {action:?} failed ({status}):\n{output}"
        );
        output
    }

    /// The certificate bundle lego stored for its first name (leaf, then issuers).
    pub(crate) fn chain(&self, output: &str) -> String {
        let file = format!("{}.crt", self.names[0].replace('*', "_"));
        let bundle = self.path.join("certificates").join(file);
        std::fs::read_to_string(&bundle)
            .unwrap_or_else(|err| panic!("read {}: {err}\nlego said:\n{output}", bundle.display()))
    }

    /// `run`, then the checks every issued certificate gets; returns the chain.
    pub(crate) async fn obtain_and_check(&self) -> String {
        let output = self.run(&["run"]).await;
        let chain = self.chain(&output);
        check_issued(
            &self.env.pkid.root_pem_path(),
            &chain,
            &self.names,
            &self.path.join("checks"),
        );
        chain
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lego_http01() {
    require_tool("lego");
    let env = Environment::start().await;
    within(TEST_BOUND, async {
        let names = ["a.pkid.test", "b.pkid.test"];
        let chain = Lego::new(&env, "lego", &names, Challenge::Http01)
            .obtain_and_check()
            .await;
        check_ca_issuers(&chain).await;
    })
    .await;
}

/// tls-alpn-01 (RFC 8737): lego answers on the port pkid's validator connects to with a
/// self-signed certificate carrying the acmeIdentifier extension, negotiated as `acme-tls/1`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lego_tls_alpn01() {
    require_tool("lego");
    let tls_port = free_port();
    let port_setting = tls_port.to_string();
    let env = Environment::start_with(&[("PKID_ACME__TLS_ALPN01_PORT", &port_setting)]).await;
    within(TEST_BOUND, async {
        let names = ["tls.pkid.test", "tls2.pkid.test"];
        Lego::new(&env, "lego", &names, Challenge::TlsAlpn01(tls_port))
            .obtain_and_check()
            .await;
    })
    .await;
}

/// dns-01 (RFC 8555 §8.4) for a wildcard and its base name: both authorizations use the TXT
/// name `_acme-challenge.w.pkid.test` (lego solves them in sequence). lego's `exec` provider runs
/// a script that sets and clears the record through the DNS server's management API; the
/// certificate names exactly `*.w.pkid.test` and `w.pkid.test`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lego_dns01_wildcard_and_base_name() {
    require_tool("lego");
    require_tool("curl");
    let env = Environment::start().await;
    within(TEST_BOUND, async {
        let script = env.tmp.path().join("dns-exec.sh");
        write_dns_exec_script(&script, &env.dns.management_url);
        let names = ["*.w.pkid.test", "w.pkid.test"];
        Lego::new(&env, "lego", &names, Challenge::Dns01(script))
            .obtain_and_check()
            .await;
    })
    .await;
}

/// lego's `exec` DNS provider calls `SCRIPT present|cleanup FQDN VALUE`.
fn write_dns_exec_script(path: &Path, management_url: &str) {
    let script = format!(
        r#"#!/bin/sh
# lego exec provider: $1 = present|cleanup, $2 = _acme-challenge FQDN (with the dot), $3 = value.
set -eu
case "$1" in
    present) curl -sSf --max-time 5 -X POST -d "{{\"host\":\"$2\",\"value\":\"$3\"}}" {management_url}/set-txt ;;
    cleanup) curl -sSf --max-time 5 -X POST -d "{{\"host\":\"$2\"}}" {management_url}/clear-txt ;;
esac
"#
    );
    std::fs::write(path, script).expect("write the DNS exec script");
    let mut permissions = std::fs::metadata(path)
        .expect("stat the DNS exec script")
        .permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
    std::fs::set_permissions(path, permissions).expect("make the DNS exec script executable");
}

/// External account binding (RFC 8555 §7.3.4) with `new-account-required`: lego without `--eab`
/// is refused (`externalAccountRequired`); with a key from `pkid eab create` it registers and
/// obtains a certificate; a second account binding the same (single-use) key is `unauthorized`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lego_eab_required_and_keys_single_use() {
    require_tool("lego");
    let env = Environment::start_with(&[(
        "PKID_ACME__EXTERNAL_ACCOUNT_BINDING",
        "new-account-required",
    )])
    .await;
    within(TEST_BOUND, async {
        let names = ["eab.pkid.test"];
        let without = Lego::new(&env, "lego-no-eab", &names, Challenge::Http01);
        let (status, output) = without.try_run(&["run"]).await;
        assert!(!status.success(), "lego without EAB succeeded:\n{output}");
        // lego reads meta.externalAccountRequired and gives up before asking.
        assert!(
            output.contains("Server requires External Account Binding")
                || output.contains("urn:ietf:params:acme:error:externalAccountRequired"),
            "lego without EAB: expected externalAccountRequired:\n{output}"
        );
        // The server refuses it too, whatever the client believes.
        let client = AcmeClient::new(&env.pkid.directory_url(), &env.pkid.root_pem()).await;
        assert_eq!(
            client.directory["meta"]["externalAccountRequired"], true,
            "directory meta: {}",
            client.directory
        );
        let refused = client
            .post(
                &client.resource("newAccount"),
                Some(&json!({"termsOfServiceAgreed": true})),
            )
            .await;
        assert_eq!(
            refused.problem_type().as_deref(),
            Some("urn:ietf:params:acme:error:externalAccountRequired"),
            "newAccount without EAB: {}",
            refused.describe()
        );

        let (ok, stdout, stderr) = env.pkid.cli(&["eab", "create", "--note", "lego"]).await;
        assert!(ok, "pkid eab create:\n{stdout}\n{stderr}");
        let field = |name: &str| {
            stdout
                .lines()
                .find_map(|line| line.strip_prefix(&format!("{name}:")))
                .map(|value| value.trim().to_owned())
                .unwrap_or_else(|| panic!("pkid eab create printed no {name}:\n{stdout}"))
        };
        let eab = vec![
            "--eab".to_owned(),
            "--kid".to_owned(),
            field("kid"),
            "--hmac".to_owned(),
            field("hmac_key"),
        ];

        let mut bound = Lego::new(&env, "lego-eab", &names, Challenge::Http01);
        bound.options = eab.clone();
        bound.obtain_and_check().await;

        let mut reuse = Lego::new(&env, "lego-eab-reuse", &names, Challenge::Http01);
        reuse.options = eab;
        let (status, output) = reuse.try_run(&["run"]).await;
        assert!(
            !status.success(),
            "a second account bound the same EAB key:\n{output}"
        );
        assert!(
            output.contains("urn:ietf:params:acme:error:unauthorized"),
            "reused EAB key: expected unauthorized:\n{output}"
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
        let names = ["r.pkid.test"];
        let lego = Lego::new(&env, "lego", &names, Challenge::Http01);
        let chain = lego.obtain_and_check().await;
        lego.run(&["revoke", "--keep", "--reason", "4"]).await;

        let work = env.subdir("revocation");
        let (leaf, issuer, bundle) = write_chain_files(&env.pkid.root_pem_path(), &chain, &work);
        let (crl_url, ocsp_url) = revocation_endpoints(&chain);
        let (crl_der, reason) = crl_listing(&crl_url, &chain).await;
        assert_eq!(reason, Some(ReasonCode::Superseded), "CRL entry reason");
        let crl_file = work.join("crl.der");
        std::fs::write(&crl_file, &crl_der).expect("write crl.der");
        openssl_crl_verify(&crl_file, "DER", &bundle);
        assert_eq!(
            ocsp_status(&issuer, &bundle, &ocsp_url, OcspSubject::Cert(&leaf)),
            "revoked",
            "OCSP status of the revoked leaf"
        );
    })
    .await;
}

/// certbot with its own folders, pkid's root trusted, never interactive.
struct Certbot<'a> {
    env: &'a Environment,
    base: PathBuf,
}

impl<'a> Certbot<'a> {
    fn new(env: &'a Environment, folder: &str) -> Certbot<'a> {
        Certbot {
            env,
            base: env.subdir(folder),
        }
    }

    async fn try_run(&self, args: &[&str]) -> (ExitStatus, String) {
        static RUNS: AtomicUsize = AtomicUsize::new(0);
        let mut command = tokio::process::Command::new(require_tool("certbot"));
        command
            .env("REQUESTS_CA_BUNDLE", self.env.pkid.root_pem_path())
            .args(args)
            .args([
                "--non-interactive",
                "--server",
                &self.env.pkid.directory_url(),
            ])
            .arg("--config-dir")
            .arg(self.base.join("config"))
            .arg("--work-dir")
            .arg(self.base.join("work"))
            .arg("--logs-dir")
            .arg(self.base.join("logs"));
        let run = RUNS.fetch_add(1, Ordering::Relaxed);
        let log = self
            .env
            .tmp
            .path()
            .join(format!("certbot-{run}-{}.log", args[0]));
        run_bounded("certbot", &mut command, CLIENT_BOUND, &log).await
    }

    /// The traceback certbot's debug log recorded for its last run's fatal error (after
    /// "Exiting abnormally"), empty when the log has none. certbot 2.1 on Python 3.11 prints
    /// any ACME error as "AttributeError: can't set attribute" (contextlib sets the error's
    /// `__traceback__`, and josepy's errors are immutable); the log keeps the ACME error it
    /// was handling.
    fn fatal_error(&self) -> String {
        let path = self.base.join("logs").join("letsencrypt.log");
        let log = std::fs::read_to_string(&path).unwrap_or_default();
        log.rsplit_once("Exiting abnormally")
            .map(|(_, fatal)| fatal.to_owned())
            .unwrap_or_default()
    }

    async fn run(&self, args: &[&str]) -> String {
        let (status, output) = self.try_run(args).await;
        assert!(
            status.success(),
            "certbot {args:?} failed ({status}):\n{output}"
        );
        output
    }

    /// A file certbot keeps for the lineage `name`: `cert.pem`, `fullchain.pem`, `privkey.pem`.
    fn live(&self, name: &str, file: &str) -> PathBuf {
        self.base.join("config").join("live").join(name).join(file)
    }

    fn read_live(&self, name: &str, file: &str) -> String {
        let path = self.live(name, file);
        std::fs::read_to_string(&path)
            .unwrap_or_else(|err| panic!("read {}: {err}", path.display()))
    }

    /// The checks every issued certificate gets, plus: `cert.pem` is `fullchain.pem`'s leaf.
    fn check_lineage(&self, name: &str) -> String {
        let fullchain = self.read_live(name, "fullchain.pem");
        let cert = self.read_live(name, "cert.pem");
        check_issued(
            &self.env.pkid.root_pem_path(),
            &fullchain,
            &[name],
            &self.base.join(format!("checks-{name}")),
        );
        assert_eq!(
            pem_chain(&cert),
            pem_chain(&fullchain)[..1].to_vec(),
            "cert.pem is fullchain.pem's leaf"
        );
        fullchain
    }
}

/// The certbot arguments for standalone http-01 on the environment's port.
fn standalone(env: &Environment) -> Vec<String> {
    [
        "certonly",
        "--standalone",
        "--http-01-address",
        "127.0.0.1",
        "--http-01-port",
        &env.http01_port.to_string(),
        "--agree-tos",
        "--register-unsafely-without-email",
    ]
    .iter()
    .map(|arg| (*arg).to_owned())
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certbot_standalone_http01() {
    require_tool("certbot");
    let env = Environment::start().await;
    within(TEST_BOUND, async {
        let certbot = Certbot::new(&env, "certbot");
        let name = "c.pkid.test";
        let mut args = standalone(&env);
        args.extend(["-d".to_owned(), name.to_owned()]);
        certbot
            .run(&args.iter().map(String::as_str).collect::<Vec<_>>())
            .await;
        certbot.check_lineage(name);
    })
    .await;
}

/// certbot's webroot http-01 (the files it writes are served by a small static server on the
/// http-01 port); then `certbot revoke` of one certificate signed by the account key (kid) and of
/// another signed by the certificate's own key (`--key-path`: jwk, RFC 8555 §7.6); OCSP says
/// `revoked` for each, with the reason certbot sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certbot_webroot_then_revoke_by_account_key_and_by_certificate_key() {
    require_tool("certbot");
    require_tool("openssl");
    let env = Environment::start().await;
    within(TEST_BOUND, async {
        let webroot = env.subdir("webroot");
        let _server = Http01Responder::webroot(env.http01_port, &webroot).await;
        let certbot = Certbot::new(&env, "certbot");
        let names = ["wr1.pkid.test", "wr2.pkid.test"];
        let webroot_arg = webroot.display().to_string();
        for name in names {
            certbot
                .run(&[
                    "certonly",
                    "--webroot",
                    "-w",
                    &webroot_arg,
                    "-d",
                    name,
                    "--agree-tos",
                    "--register-unsafely-without-email",
                ])
                .await;
        }
        let chains: Vec<String> = names
            .iter()
            .map(|name| certbot.check_lineage(name))
            .collect();

        // By the account key (kid), reason unspecified.
        let by_account = certbot.live(names[0], "cert.pem").display().to_string();
        certbot
            .run(&[
                "revoke",
                "--cert-path",
                &by_account,
                "--no-delete-after-revoke",
            ])
            .await;
        // By the certificate's own key (jwk), reason keyCompromise.
        let by_key = certbot.live(names[1], "cert.pem").display().to_string();
        let key = certbot.live(names[1], "privkey.pem").display().to_string();
        certbot
            .run(&[
                "revoke",
                "--cert-path",
                &by_key,
                "--key-path",
                &key,
                "--reason",
                "keycompromise",
                "--no-delete-after-revoke",
            ])
            .await;

        for ((name, chain), reason) in names
            .iter()
            .zip(&chains)
            .zip([ReasonCode::Unspecified, ReasonCode::KeyCompromise])
        {
            let work = env.subdir(&format!("revocation-{name}"));
            let (leaf, issuer, bundle) = write_chain_files(&env.pkid.root_pem_path(), chain, &work);
            let (crl_url, ocsp_url) = revocation_endpoints(chain);
            assert_eq!(
                ocsp_status(&issuer, &bundle, &ocsp_url, OcspSubject::Cert(&leaf)),
                "revoked",
                "OCSP status of {name}"
            );
            let (_, listed) = crl_listing(&crl_url, chain).await;
            // RFC 5280 §5.3.1: unspecified should be expressed by omitting the reason code.
            let listed = listed.unwrap_or(ReasonCode::Unspecified);
            assert_eq!(listed, reason, "CRL entry reason of {name}");
        }
    })
    .await;
}

/// Test mode refusing 10% of valid nonces with `badNonce` (as pebble does): lego and certbot
/// both retry as RFC 8555 §6.5 asks and still obtain certificates. certbot retries a refused
/// nonce only once per request, so a run can fail on two refusals in a row (about 1% per
/// request, near one run in ten): such a run is repeated, at most three times, and only for
/// that reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lego_and_certbot_retry_refused_nonces() {
    require_tool("lego");
    require_tool("certbot");
    let env = Environment::start_with(&[
        ("PKID_ACME__TEST_MODE__ENABLED", "true"),
        ("PKID_ACME__TEST_MODE__REJECT_NONCE_PERCENT", "10"),
    ])
    .await;
    within(TEST_BOUND, async {
        Lego::new(&env, "lego", &["n1.pkid.test"], Challenge::Http01)
            .obtain_and_check()
            .await;

        let certbot = Certbot::new(&env, "certbot");
        let name = "n2.pkid.test";
        let mut args = standalone(&env);
        args.extend(["-d".to_owned(), name.to_owned()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut attempt = 1;
        loop {
            let (status, output) = certbot.try_run(&args).await;
            if status.success() {
                break;
            }
            // certbot prints the problem's detail for a failed registration, and for other
            // requests an error of its own that hides the problem (see `fatal_error`): its log
            // names the problem's type, and only the fatal error's traceback counts.
            let fatal = certbot.fatal_error();
            let refused = output.contains("refused on purpose") || fatal.contains("badNonce");
            assert!(
                attempt < 4 && refused,
                "certbot failed ({status}) on attempt {attempt}:\n{output}\nits fatal error:{fatal}"
            );
            eprintln!("certbot gave up after two refused nonces in a row; running it again");
            attempt += 1;
        }
        certbot.check_lineage(name);

        let refused = env.pkid.logs().matches("refused on purpose").count();
        eprintln!("test mode refused {refused} nonces");
    })
    .await;
}

/// Alternate chains (RFC 8555 §7.4.2): an operator adds a cross-signed certificate of pkid's
/// intermediate (same subject, key and key identifier, issued by another root); pkid offers the
/// chain through it with `Link: rel="alternate"`. lego's `--preferred-chain` picks it, and that
/// chain verifies against the other root; the default chain still verifies against root.pem.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lego_picks_an_alternate_chain_through_a_cross_signed_intermediate() {
    require_tool("lego");
    require_tool("openssl");
    let mut env = Environment::start().await;
    let work = env.subdir("cross");
    let data = env.pkid.root_pem_path().parent().unwrap().to_path_buf();
    let intermediate = data.join("ca").join("intermediate.pem");
    let path = |name: &str| work.join(name).into_os_string();
    let run = |args: &[std::ffi::OsString]| {
        let refs: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        let (ok, output) = crate::harness::certs::openssl(&refs);
        assert!(ok, "openssl {args:?} failed:\n{output}");
        output
    };
    let s = |v: &str| std::ffi::OsString::from(v);
    run(&[
        s("ecparam"),
        s("-genkey"),
        s("-name"),
        s("prime256v1"),
        s("-out"),
        path("other.key"),
    ]);
    run(&[
        s("req"),
        s("-x509"),
        s("-new"),
        s("-key"),
        path("other.key"),
        s("-subj"),
        s("/CN=Other Root"),
        s("-days"),
        s("30"),
        s("-out"),
        path("other.pem"),
    ]);
    run(&[
        s("x509"),
        s("-in"),
        intermediate.clone().into_os_string(),
        s("-pubkey"),
        s("-noout"),
        s("-out"),
        path("intermediate.pub"),
    ]);
    let ski = run(&[
        s("x509"),
        s("-in"),
        intermediate.into_os_string(),
        s("-noout"),
        s("-ext"),
        s("subjectKeyIdentifier"),
    ]);
    let ski = ski.lines().last().unwrap().trim().to_string();
    std::fs::write(
        work.join("ext.cnf"),
        format!(
            "[v3]\nbasicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign,digitalSignature\nsubjectKeyIdentifier={ski}\nauthorityKeyIdentifier=keyid\n"
        ),
    )
    .unwrap();
    run(&[
        s("x509"),
        s("-new"),
        s("-subj"),
        s("/O=pkid/CN=pkid Intermediate CA"),
        s("-force_pubkey"),
        path("intermediate.pub"),
        s("-CA"),
        path("other.pem"),
        s("-CAkey"),
        path("other.key"),
        s("-days"),
        s("30"),
        s("-extfile"),
        path("ext.cnf"),
        s("-extensions"),
        s("v3"),
        s("-out"),
        path("cross.pem"),
    ]);
    let setting = format!("{{default=[\"{}\"]}}", work.join("cross.pem").display());
    env.pkid.set("PKID_CA__ALTERNATE_CHAINS", &setting);
    env.pkid.restart().await;

    within(TEST_BOUND, async {
        let names = ["alt.pkid.test"];
        let preferred = Lego::new(&env, "lego-alt", &names, Challenge::Http01);
        let output = preferred
            .run(&["run", "--preferred-chain", "Other Root"])
            .await;
        let chain = preferred.chain(&output);
        crate::harness::certs::openssl_verify(
            &work.join("other.pem"),
            &chain,
            &work.join("verify-alt"),
        );
        let default = Lego::new(&env, "lego-default", &names, Challenge::Http01);
        default.obtain_and_check().await;
    })
    .await;
}

/// The admin REST surface manages EAB keys: only with an operator bearer token (made by
/// `pkid admin token create`); a key made over REST lets lego register (and carries its RA
/// policy); a bound key cannot be deleted, an unused one can; errors are `{"error": …}`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_rest_manages_eab_keys_that_lego_uses() {
    require_tool("lego");
    let env = Environment::start_with(&[(
        "PKID_ACME__EXTERNAL_ACCOUNT_BINDING",
        "new-account-required",
    )])
    .await;
    within(TEST_BOUND, async {
        let token = env.pkid.admin_token("test").await;
        let http = crate::harness::tls::https_client(&env.pkid.root_pem()).unwrap();
        let base = env.pkid.admin_url("/admin/eab-keys");

        let anonymous = http.get(&base).send().await.unwrap();
        assert_eq!(anonymous.status(), 401);
        let body: serde_json::Value = anonymous
            .bytes()
            .await
            .map(|b| serde_json::from_slice::<serde_json::Value>(&b).unwrap())
            .unwrap();
        assert!(body["error"].is_string(), "{body}");
        let wrong = http
            .get(&base)
            .bearer_auth("pkid_not-a-token")
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 401);

        let create = |policy: serde_json::Value| {
            let (http, base, token) = (http.clone(), base.clone(), token.clone());
            async move {
                let r = http
                    .post(&base)
                    .bearer_auth(&token)
                    .body(serde_json::to_vec(&json!({"note": "rest", "policy": policy})).unwrap())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 201);
                let v: serde_json::Value = r
                    .bytes()
                    .await
                    .map(|b| serde_json::from_slice::<serde_json::Value>(&b).unwrap())
                    .unwrap();
                (
                    v["result"]["kid"].as_str().unwrap().to_owned(),
                    v["result"]["hmac_key"].as_str().unwrap().to_owned(),
                )
            }
        };
        let (kid, hmac) =
            create(json!({"identifiers": {"allowed_dns_suffixes": ["rest.pkid.test"]}})).await;
        let bad = http
            .post(&base)
            .bearer_auth(&token)
            .body("{not json")
            .send()
            .await
            .unwrap();
        assert_eq!(bad.status(), 400);

        let names = ["a.rest.pkid.test"];
        let mut lego = Lego::new(&env, "lego-rest-eab", &names, Challenge::Http01);
        lego.options = vec![
            "--eab".into(),
            "--kid".into(),
            kid.clone(),
            "--hmac".into(),
            hmac,
        ];
        lego.obtain_and_check().await;

        // The key's policy travels with the account: a name outside it is refused.
        let outside = ["b.elsewhere.pkid.test"];
        let mut refused = Lego::new(&env, "lego-rest-eab", &outside, Challenge::Http01);
        refused.options = lego.options.clone();
        let (status, output) = refused.try_run(&["run"]).await;
        assert!(
            !status.success(),
            "an order outside the binding's policy succeeded:\n{output}"
        );
        assert!(output.contains("rejectedIdentifier"), "{output}");

        let list: serde_json::Value = http
            .get(&base)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .map(|b| serde_json::from_slice::<serde_json::Value>(&b).unwrap())
            .unwrap();
        let entry = list["result"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == kid.as_str())
            .unwrap()
            .clone();
        assert!(entry["bound_account"].is_string(), "{entry}");
        let delete_bound = http
            .delete(format!("{base}/{kid}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(delete_bound.status(), 409);

        let (unused, _) = create(json!(null)).await;
        let deleted = http
            .delete(format!("{base}/{unused}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(deleted.status(), 200);
        let list: serde_json::Value = http
            .get(&base)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .map(|b| serde_json::from_slice::<serde_json::Value>(&b).unwrap())
            .unwrap();
        assert!(!list["result"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["kid"] == unused.as_str()));
    })
    .await;
}

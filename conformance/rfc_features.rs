//! ACME features beyond plain issuance, driven by a real Rust client, instant-acme, where it can
//! express them, and by the suite's own client (`harness/client.rs`) where it cannot:
//!
//! - key rollover (RFC 8555 §7.3.5): instant-acme's `update_key`; the 409 for a key another
//!   account holds needs a hand-built keyChange JWS (instant-acme always makes a fresh key);
//! - profiles (draft-aaron-acme-profiles): `NewOrder::profile`, the leaf's validity, and
//!   `invalidProfile`;
//! - renewal information (RFC 9773): `renewal_info` and `NewOrder::replaces`, `alreadyReplaced`;
//! - pre-authorization (RFC 8555 §7.4.1): instant-acme has no newAuthz, so `harness/client.rs`;
//! - IP identifiers (RFC 8738) over http-01 and over tls-alpn-01 (RFC 8737), where the
//!   validator's SNI is the address's reverse-DNS name (RFC 8738 §6) and the test answers with
//!   its own acme-tls/1 server;
//! - the account's orders list (§7.1.2.1) and its paging (§7.4.2.1 `Link: rel="next"`): not in
//!   instant-acme, so `harness/client.rs`.

use std::time::Duration;

use instant_acme::{
    Account, AccountCredentials, CertificateIdentifier, ChallengeType, Error, Identifier, Key,
    NewAccount, NewOrder, Order, OrderStatus, RetryPolicy,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;

use crate::harness::certs::{check_issued, leaf_validity, pem_chain};
use crate::harness::client::{csr_der, AcmeClient, TestKey};
use crate::harness::environment::{within, Environment};
use crate::harness::http01::Http01Responder;

const TEST_BOUND: Duration = Duration::from_secs(120);

fn retries() -> RetryPolicy {
    RetryPolicy::new()
        .initial_delay(Duration::from_millis(100))
        .backoff(1.5)
        .timeout(Duration::from_secs(30))
}

/// The problem type of an instant-acme error, or a panic describing what else it was.
fn problem_type(result: Result<impl std::fmt::Debug, Error>) -> (String, Option<u16>) {
    match result {
        Err(Error::Api(problem)) => (problem.r#type.clone().unwrap_or_default(), problem.status),
        other => panic!("expected an ACME problem, got {other:?}"),
    }
}

/// A new account at pkid with a fresh key; also returns that key's PKCS#8 DER.
async fn new_account(env: &Environment) -> (Account, AccountCredentials) {
    Account::builder_with_root(env.pkid.root_pem_path())
        .expect("an instant-acme client trusting pkid's root")
        .create(
            &NewAccount {
                contact: &["mailto:ia@pkid.test"],
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            env.pkid.directory_url(),
            None,
        )
        .await
        .unwrap_or_else(|err| panic!("instant-acme newAccount: {err}"))
}

/// Looks up the account of a PKCS#8 key with `onlyReturnExisting` (RFC 8555 §7.3.1).
async fn account_of_key(env: &Environment, pkcs8: &[u8]) -> Result<Account, Error> {
    let der = rustls_pki_types::PrivatePkcs8KeyDer::from(pkcs8.to_vec());
    let key = Key::from_pkcs8_der(der.clone_key()).expect("load the key");
    Account::builder_with_root(env.pkid.root_pem_path())
        .expect("an instant-acme client trusting pkid's root")
        .from_key((key, PrivateKeyDer::Pkcs8(der)), env.pkid.directory_url())
        .await
        .map(|(account, _)| account)
}

/// Answers every http-01 challenge of `order` through `responder` and waits until it is ready.
async fn authorize(order: &mut Order, responder: &Http01Responder) {
    let mut authorizations = order.authorizations();
    while let Some(authz) = authorizations.next().await {
        let mut authz = authz.unwrap_or_else(|err| panic!("fetch an authorization: {err}"));
        if authz.status == instant_acme::AuthorizationStatus::Valid {
            continue;
        }
        let mut challenge = authz
            .challenge(ChallengeType::Http01)
            .unwrap_or_else(|| panic!("no http-01 challenge"));
        responder.serve(&challenge.token, challenge.key_authorization().as_str());
        challenge
            .set_ready()
            .await
            .unwrap_or_else(|err| panic!("challenge ready: {err}"));
    }
    wait_ready(order).await;
}

/// Polls the order until it is `ready`.
async fn wait_ready(order: &mut Order) {
    let status = order
        .poll_ready(&retries())
        .await
        .unwrap_or_else(|err| panic!("order never became ready: {err}"));
    assert_eq!(status, OrderStatus::Ready, "order status");
}

/// Finalizes a ready order with a CSR instant-acme makes and returns the PEM chain.
async fn finish(order: &mut Order) -> String {
    order
        .finalize()
        .await
        .unwrap_or_else(|err| panic!("finalize: {err}"));
    order
        .poll_certificate(&retries())
        .await
        .unwrap_or_else(|err| panic!("certificate: {err}"))
}

/// Authorizes, finalizes, and returns the PEM chain.
async fn complete(order: &mut Order, responder: &Http01Responder) -> String {
    authorize(order, responder).await;
    finish(order).await
}

fn dns(names: &[&str]) -> Vec<Identifier> {
    names
        .iter()
        .map(|name| Identifier::Dns((*name).to_owned()))
        .collect()
}

/// instant-acme rolls the account key over (§7.3.5); the old key then finds no account
/// (`accountDoesNotExist` for `onlyReturnExisting`), the new key finds the same account, and it
/// still orders. A keyChange to a key that already holds another account answers 409 with that
/// account's URL in `Location`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_change_moves_the_account_to_the_new_key() {
    let env = Environment::start().await;
    within(TEST_BOUND, async {
        let (mut account, old_credentials) = new_account(&env).await;
        let old_key = old_credentials.private_key().secret_pkcs8_der().to_vec();
        let account_url = account.id().to_owned();

        let new_credentials = account
            .update_key()
            .await
            .unwrap_or_else(|err| panic!("keyChange: {err}"));
        let new_key = new_credentials.private_key().secret_pkcs8_der().to_vec();

        let (problem, _) = problem_type(
            account_of_key(&env, &old_key)
                .await
                .map(|a| a.id().to_owned()),
        );
        assert_eq!(
            problem, "urn:ietf:params:acme:error:accountDoesNotExist",
            "the old key after keyChange"
        );
        let found = account_of_key(&env, &new_key)
            .await
            .unwrap_or_else(|err| panic!("the new key finds no account: {err}"));
        assert_eq!(found.id(), account_url, "the new key's account");
        // The rolled-over account still works.
        found
            .new_order(&NewOrder::new(&dns(&["kc.pkid.test"])))
            .await
            .unwrap_or_else(|err| panic!("newOrder with the new key: {err}"));

        // A key that holds another account: 409 + Location (the suite's client; see the module docs).
        let mut mine = AcmeClient::new(&env.pkid.directory_url(), &env.pkid.root_pem()).await;
        let mine_url = mine.register().await;
        let mut theirs = AcmeClient::new(&env.pkid.directory_url(), &env.pkid.root_pem()).await;
        let theirs_url = theirs.register().await;
        let url = mine.resource("keyChange");
        let inner = theirs.key.sign(
            &json!({"alg": "ES256", "jwk": theirs.key.jwk, "url": url}),
            &json!({"account": mine_url, "oldKey": mine.key.jwk}).to_string(),
        );
        let answer = mine.post(&url, Some(&inner)).await;
        assert_eq!(
            answer.status,
            409,
            "keyChange to a taken key: {}",
            answer.describe()
        );
        assert_eq!(
            answer.location().as_deref(),
            Some(theirs_url.as_str()),
            "409 Location names the account holding the key"
        );
        // Nothing moved: each key still finds its own account.
        assert_eq!(mine.fetch(&mine_url).await["status"], "valid");
        assert_eq!(theirs.fetch(&theirs_url).await["status"], "valid");
    })
    .await;
}

/// An order under the `short-lived` profile (meta.profiles) shows it and yields a 7-day leaf;
/// the default profile gives 90 days; an unknown profile is `invalidProfile`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_choose_validity_and_unknown_is_invalid_profile() {
    let env = Environment::start().await;
    within(TEST_BOUND, async {
        let responder = Http01Responder::bind(env.http01_port).await;
        let (account, _) = new_account(&env).await;
        let offered: Vec<&str> = account.profiles().map(|p| p.name).collect();
        for wanted in ["tls-server", "short-lived"] {
            assert!(
                offered.contains(&wanted),
                "meta.profiles {offered:?} lacks {wanted}"
            );
        }

        for (profile, days) in [("short-lived", 7), ("tls-server", 90)] {
            let name = format!("{profile}.pkid.test");
            let identifiers = dns(&[&name]);
            let mut order = account
                .new_order(&NewOrder::new(&identifiers).profile(profile))
                .await
                .unwrap_or_else(|err| panic!("newOrder profile {profile}: {err}"));
            assert_eq!(
                order.state().profile.as_deref(),
                Some(profile),
                "the order shows its profile"
            );
            let chain = complete(&mut order, &responder).await;
            check_issued(
                &env.pkid.root_pem_path(),
                &chain,
                &[&name],
                &env.subdir(&format!("checks-{profile}")),
            );
            let (not_before, not_after) = leaf_validity(&chain);
            let lifetime = not_after - not_before;
            // Backdating (ca.backdate_secs, 60 s by default) may lengthen it a little.
            let expected = days * 86_400;
            assert!(
                (expected..=expected + 3_600).contains(&lifetime),
                "{profile}: leaf valid {lifetime} s, expected {days} days"
            );
        }

        let identifiers = dns(&["nope.pkid.test"]);
        let (problem, status) = problem_type(
            account
                .new_order(&NewOrder::new(&identifiers).profile("no-such-profile"))
                .await
                .map(|order| order.url().to_owned()),
        );
        assert_eq!(problem, "urn:ietf:params:acme:error:invalidProfile");
        assert_eq!(status, Some(400), "invalidProfile status");
    })
    .await;
}

/// renewalInfo (RFC 9773 §4.2) of an issued certificate suggests a window inside its validity;
/// a newOrder `replaces` it (§5) once; a second order replacing the same certificate is 409
/// `alreadyReplaced`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_info_and_replaces_once() {
    let env = Environment::start().await;
    within(TEST_BOUND, async {
        let responder = Http01Responder::bind(env.http01_port).await;
        let (account, _) = new_account(&env).await;
        let names = ["ari.pkid.test"];
        let identifiers = dns(&names);
        let mut order = account
            .new_order(&NewOrder::new(&identifiers))
            .await
            .unwrap_or_else(|err| panic!("newOrder: {err}"));
        let chain = complete(&mut order, &responder).await;
        check_issued(
            &env.pkid.root_pem_path(),
            &chain,
            &names,
            &env.subdir("checks"),
        );

        let leaf = CertificateDer::from(pem_chain(&chain)[0].clone());
        let cert_id = CertificateIdentifier::try_from(&leaf)
            .unwrap_or_else(|err| panic!("certificate identifier: {err}"));
        let (info, _retry_after) = account
            .renewal_info(&cert_id)
            .await
            .unwrap_or_else(|err| panic!("renewalInfo {cert_id}: {err}"));
        let (not_before, not_after) = leaf_validity(&chain);
        let start = info.suggested_window.start.unix_timestamp();
        let end = info.suggested_window.end.unix_timestamp();
        assert!(
            not_before <= start && start < end && end <= not_after,
            "suggested window {start}..{end} not inside validity {not_before}..{not_after}"
        );

        let mut replacement = account
            .new_order(&NewOrder::new(&identifiers).replaces(cert_id.clone()))
            .await
            .unwrap_or_else(|err| panic!("newOrder replaces {cert_id}: {err}"));
        assert_eq!(
            replacement.state().replaces.as_ref(),
            Some(&cert_id),
            "the order reflects replaces"
        );
        let renewed = complete(&mut replacement, &responder).await;
        check_issued(
            &env.pkid.root_pem_path(),
            &renewed,
            &names,
            &env.subdir("checks-renewed"),
        );

        let (problem, status) = problem_type(
            account
                .new_order(&NewOrder::new(&identifiers).replaces(cert_id.clone()))
                .await
                .map(|order| order.url().to_owned()),
        );
        assert_eq!(problem, "urn:ietf:params:acme:error:alreadyReplaced");
        assert_eq!(status, Some(409), "alreadyReplaced status");
    })
    .await;
}

/// IP address identifiers (RFC 8738) validated over http-01 at the address itself: the leaf
/// holds it as an iPAddress subjectAltName, not as a DNS name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_identifier_over_http01() {
    let env = Environment::start().await;
    within(TEST_BOUND, async {
        let responder = Http01Responder::bind(env.http01_port).await;
        let (account, _) = new_account(&env).await;
        let identifiers = vec![Identifier::Ip("127.0.0.1".parse().expect("an IP address"))];
        let mut order = account
            .new_order(&NewOrder::new(&identifiers))
            .await
            .unwrap_or_else(|err| panic!("newOrder for 127.0.0.1: {err}"));
        let chain = complete(&mut order, &responder).await;
        check_issued(
            &env.pkid.root_pem_path(),
            &chain,
            &["127.0.0.1"],
            &env.subdir("checks"),
        );
    })
    .await;
}

/// The SNI names a tls-alpn-01 responder was asked for.
type SeenNames = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// An RFC 8737 responder on 127.0.0.1:`port` for one IP identifier: offers only `acme-tls/1`,
/// and presents a self-signed certificate whose only SAN is `ip` and whose critical acmeIdentifier
/// extension holds SHA-256 of `key_authorization`. Records the SNI of every handshake.
async fn serve_tls_alpn01(
    port: u16,
    ip: std::net::IpAddr,
    key_authorization: &str,
) -> (tokio::task::JoinHandle<()>, SeenNames) {
    use rustls::server::{ClientHello, ResolvesServerCert};
    use rustls::sign::CertifiedKey;

    #[derive(Debug)]
    struct Recording(std::sync::Arc<CertifiedKey>, SeenNames);
    impl ResolvesServerCert for Recording {
        fn resolve(&self, hello: ClientHello<'_>) -> Option<std::sync::Arc<CertifiedKey>> {
            let sni = hello.server_name().unwrap_or_default().to_owned();
            self.1.lock().expect("SNI log").push(sni);
            Some(self.0.clone())
        }
    }

    let digest =
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key_authorization.as_bytes());
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("a key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.subject_alt_names = vec![rcgen::SanType::IpAddress(ip)];
    params
        .custom_extensions
        .push(rcgen::CustomExtension::new_acme_identifier(digest.as_ref()));
    let cert = params.self_signed(&key).expect("the challenge certificate");
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let signing_key = provider
        .key_provider
        .load_private_key(PrivateKeyDer::Pkcs8(key.serialize_der().into()))
        .expect("load the challenge key");
    let certified = CertifiedKey::new(vec![cert.der().clone()], signing_key);
    let seen = SeenNames::default();
    let mut tls = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_cert_resolver(std::sync::Arc::new(Recording(
            std::sync::Arc::new(certified),
            seen.clone(),
        )));
    tls.alpn_protocols = vec![b"acme-tls/1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(tls));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind the tls-alpn-01 port");
    let task = tokio::spawn(async move {
        // Bounded: the validator connects once per attempt; the task is aborted after the test.
        for _ in 0..64 {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // The validator closes once it has the certificate; errors are its business.
                let _ = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await;
            });
        }
    });
    (task, seen)
}

/// An IP identifier validated over tls-alpn-01 (RFC 8738 §6): pkid connects to the address,
/// sends the reverse-DNS name `1.0.0.127.in-addr.arpa` as SNI, and accepts a certificate naming the
/// address as its only iPAddress SAN; the leaf holds the address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_identifier_over_tls_alpn01() {
    let tls_port = crate::harness::process::free_port();
    let port_setting = tls_port.to_string();
    let env = Environment::start_with(&[("PKID_ACME__TLS_ALPN01_PORT", &port_setting)]).await;
    within(TEST_BOUND, async {
        let ip: std::net::IpAddr = "127.0.0.1".parse().expect("an IP address");
        let (account, _) = new_account(&env).await;
        let mut order = account
            .new_order(&NewOrder::new(&[Identifier::Ip(ip)]))
            .await
            .unwrap_or_else(|err| panic!("newOrder for 127.0.0.1: {err}"));
        let mut authorizations = order.authorizations();
        let mut authz = authorizations
            .next()
            .await
            .expect("one authorization")
            .unwrap_or_else(|err| panic!("fetch the authorization: {err}"));
        let mut challenge = authz
            .challenge(ChallengeType::TlsAlpn01)
            .unwrap_or_else(|| panic!("no tls-alpn-01 challenge for an IP identifier"));
        let key_authorization = challenge.key_authorization();
        let (responder, seen) = serve_tls_alpn01(tls_port, ip, key_authorization.as_str()).await;
        challenge
            .set_ready()
            .await
            .unwrap_or_else(|err| panic!("challenge ready: {err}"));
        wait_ready(&mut order).await;
        let names = seen.lock().expect("SNI log").clone();
        responder.abort();
        assert!(
            !names.is_empty(),
            "pkid never connected to the tls-alpn-01 responder"
        );
        assert!(
            names.iter().all(|n| n == "1.0.0.127.in-addr.arpa"),
            "SNI must be the reverse-DNS name (RFC 8738 §6), got {names:?}"
        );
        let chain = finish(&mut order).await;
        check_issued(
            &env.pkid.root_pem_path(),
            &chain,
            &["127.0.0.1"],
            &env.subdir("checks"),
        );
    })
    .await;
}

/// newAuthz (§7.4.1), validated ahead of any order; a newOrder for the name is `ready` at once
/// and issues.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pre_authorization_makes_new_orders_ready() {
    let env = Environment::start().await;
    within(TEST_BOUND, async {
        let responder = Http01Responder::bind(env.http01_port).await;
        let mut client = AcmeClient::new(&env.pkid.directory_url(), &env.pkid.root_pem()).await;
        client.register().await;
        let name = "preauth.pkid.test";
        let answer = client
            .post(
                &client.resource("newAuthz"),
                Some(&json!({"identifier": {"type": "dns", "value": name}})),
            )
            .await;
        assert_eq!(answer.status, 201, "newAuthz: {}", answer.describe());
        let authz_url = answer
            .location()
            .unwrap_or_else(|| panic!("newAuthz without Location: {}", answer.describe()));
        assert_eq!(answer.json()["status"], "pending", "new authorization");
        let authz = answer.json();
        let challenge = authz["challenges"]
            .as_array()
            .and_then(|all| all.iter().find(|c| c["type"] == "http-01"))
            .unwrap_or_else(|| panic!("no http-01 challenge in {authz}"))
            .clone();
        let token = challenge["token"].as_str().expect("token");
        responder.serve(token, &client.key.key_authorization(token));
        let ready = client
            .post(
                challenge["url"].as_str().expect("challenge URL"),
                Some(&json!({})),
            )
            .await;
        assert_eq!(ready.status, 200, "challenge: {}", ready.describe());
        client
            .poll_until(
                &authz_url,
                &["valid"],
                &["invalid", "deactivated", "expired", "revoked"],
            )
            .await;

        let order = client.new_order(&[name]).await;
        assert_eq!(
            order.body["status"], "ready",
            "an order for a pre-authorized name: {}",
            order.body
        );
        assert_eq!(
            order.authorization_urls(),
            vec![authz_url],
            "the order reuses the pre-authorization"
        );
        let answer = client.finalize(&order, &csr_der(&[name])).await;
        assert_eq!(answer.status, 200, "finalize: {}", answer.describe());
        let issued = client.wait_valid(&order).await;
        let url = issued
            .certificate_url()
            .unwrap_or_else(|| panic!("valid order without certificate: {}", issued.body));
        let chain = client.download_certificate(&url).await;
        check_issued(
            &env.pkid.root_pem_path(),
            &chain,
            &[name],
            &env.subdir("checks"),
        );
    })
    .await;
}

/// The account's `orders` URL lists its orders, 100 per page, with `Link: rel="next"` to the
/// rest (§7.1.2.1); another account's orders never appear.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_list_pages_the_accounts_orders() {
    let env = Environment::start().await;
    within(TEST_BOUND, async {
        let mut client = AcmeClient::new(&env.pkid.directory_url(), &env.pkid.root_pem()).await;
        let account_url = client.register().await;
        let mut stranger = AcmeClient::new(&env.pkid.directory_url(), &env.pkid.root_pem()).await;
        stranger.register().await;
        let foreign = stranger.new_order(&["stranger.pkid.test"]).await;

        let mut created = std::collections::BTreeSet::new();
        for index in 0..101 {
            let order = client.new_order(&[&format!("o{index}.pkid.test")]).await;
            created.insert(order.url);
        }

        let account = client.fetch(&account_url).await;
        let orders_url = account["orders"]
            .as_str()
            .unwrap_or_else(|| panic!("account without orders URL: {account}"))
            .to_owned();
        let mut listed = Vec::new();
        let mut page_url = Some(orders_url.clone());
        let mut pages = 0;
        while let Some(url) = page_url.take() {
            let page = client.post(&url, None).await;
            assert_eq!(page.status, 200, "orders page {url}: {}", page.describe());
            let urls: Vec<String> = page.json()["orders"]
                .as_array()
                .unwrap_or_else(|| panic!("orders page without orders: {}", page.describe()))
                .iter()
                .map(|u| u.as_str().expect("order URL").to_owned())
                .collect();
            pages += 1;
            if pages == 1 {
                assert_eq!(urls.len(), 100, "the first page holds 100 orders");
            }
            listed.extend(urls);
            page_url = page.headers.get_all("link").iter().find_map(|value| {
                let value = value.to_str().ok()?;
                value
                    .split(',')
                    .find(|link| link.contains("rel=\"next\""))
                    .and_then(|link| link.split(['<', '>']).nth(1))
                    .map(str::to_owned)
            });
            assert!(pages <= 3, "orders list keeps paging: {listed:?}");
        }
        assert_eq!(pages, 2, "101 orders fill two pages");
        assert_eq!(
            format!("{orders_url}/1"),
            {
                let first = client.post(&orders_url, None).await;
                first
                    .headers
                    .get_all("link")
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .flat_map(|v| v.split(','))
                    .find(|link| link.contains("rel=\"next\""))
                    .and_then(|link| link.split(['<', '>']).nth(1))
                    .unwrap_or_default()
                    .to_owned()
            },
            "the next page is .../orders/1"
        );
        let listed_set: std::collections::BTreeSet<String> = listed.iter().cloned().collect();
        assert_eq!(listed.len(), listed_set.len(), "an order listed twice");
        assert_eq!(
            listed_set, created,
            "the orders list is the account's orders"
        );
        assert!(
            !listed_set.contains(&foreign.url),
            "another account's order listed"
        );
    })
    .await;
}

//! Crafted requests against pkid's JWS checks (RFC 8555 §6.2, §6.5; RFC 7515 §4.1.11; RFC 7518
//! §6): what real clients never send, to ACME and to the REST surfaces (JWS-signed requests by
//! keys bound to users): replayed nonces, keys past the bounds or in another encoding than
//! their one, `crit`, an `alg` the key does not sign with.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use reqwest::Method;
use serde_json::{json, Value};

use crate::harness::acme::{b64, AccountKey};
use crate::harness::client::{AcmeClient, TestKey};
use crate::harness::environment::{within, Environment};
use crate::harness::tls::https_client;
use crate::identity::{bind_key, binding_url, cli_ok, create_user, send, signed, Answer};

const TEST_BOUND: Duration = Duration::from_secs(120);

/// A nonce is redeemable once (§6.5): the same nonce on a second request gets 400 `badNonce`,
/// and that answer carries a fresh nonce to retry with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_nonce_is_rejected() {
    let env = Environment::start().await;
    within(TEST_BOUND, async {
        let client = AcmeClient::new(&env.pkid.directory_url(), &env.pkid.root_pem()).await;
        let url = client.resource("newAccount");
        let payload = json!({"termsOfServiceAgreed": true});
        let nonce = client.new_nonce().await;

        let first = client.post_with_nonce(&url, Some(&payload), &nonce).await;
        assert_eq!(first.status, 201, "newAccount: {}", first.describe());

        let replay = client.post_with_nonce(&url, Some(&payload), &nonce).await;
        assert_eq!(replay.status, 400, "replayed nonce: {}", replay.describe());
        assert_eq!(
            replay.problem_type().as_deref(),
            Some("urn:ietf:params:acme:error:badNonce"),
            "replayed nonce: {}",
            replay.describe()
        );
        let fresh = replay
            .header("replay-nonce")
            .unwrap_or_else(|| panic!("badNonce without Replay-Nonce: {}", replay.describe()));
        assert_ne!(fresh, nonce, "the retry nonce is a new one");

        // The same account key again, with a good nonce: the existing account (§7.3.1).
        let again = client.post_with_nonce(&url, Some(&payload), &fresh).await;
        assert_eq!(
            again.status,
            200,
            "newAccount for a known key: {}",
            again.describe()
        );
        assert_eq!(again.location(), first.location(), "same account URL");
    })
    .await;
}

/// A REST request signed with a key bound to a user (RFC 8555 §6.2 framing, `kid` the key's
/// binding URL) authenticates as that user, whether the key was bound from a JWK file or from an
/// ACME account. A replayed nonce, a `url` naming another resource, an unbound key, a key signing
/// for another's binding, an embedded `jwk` and a disabled user are each refused with 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_signed_with_a_bound_key_authenticates_its_user() {
    let env = Environment::start().await;
    within(TEST_BOUND, async {
        let pkid = &env.pkid;
        let http = https_client(&pkid.root_pem()).unwrap();
        let keys = env.subdir("keys");
        create_user(pkid, "jay", "certificate-requestor").await;
        let jay = AcmeClient::new(&pkid.directory_url(), &pkid.root_pem()).await;
        bind_key(pkid, &keys, "jay", &jay).await;
        let me = format!("https://127.0.0.1:{}/identity/me", pkid.port());

        let answer = signed(&http, &jay, Method::GET, &me, "").await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(answer.body["result"]["username"], "jay");
        assert_eq!(answer.body["result"]["proof"], "jws-key");

        // A request as a test crafts it: any protected header, sent to `to`.
        let send_signed = |signer: &AcmeClient, protected: Value, to: String| {
            let jws = signer.key.sign_flattened(&protected, b"").unwrap();
            let http = http.clone();
            async move {
                send(
                    http.get(to)
                        .header("content-type", "application/jose+json")
                        .body(jws.to_string()),
                )
                .await
            }
        };
        let refused = |answer: Answer, what: &str| {
            assert_eq!(answer.status, 401, "{what}: {}", answer.body);
            assert!(answer.body["error"].is_string(), "{what}: {}", answer.body);
        };

        let nonce = jay.new_nonce().await;
        let header = json!({"alg": "ES256", "nonce": nonce, "url": me, "kid": binding_url(pkid, &jay)});
        let first = send_signed(&jay, header.clone(), me.clone()).await;
        assert_eq!(first.status, 200, "{}", first.body);
        refused(send_signed(&jay, header, me.clone()).await, "a replayed nonce");

        let elsewhere = format!("https://127.0.0.1:{}/identity/keys/x", pkid.port());
        let header = json!({"alg": "ES256", "nonce": jay.new_nonce().await, "url": elsewhere, "kid": binding_url(pkid, &jay)});
        refused(send_signed(&jay, header, me.clone()).await, "a url naming another resource");

        let stranger = AcmeClient::new(&pkid.directory_url(), &pkid.root_pem()).await;
        refused(
            signed(&http, &stranger, Method::GET, &me, "").await,
            "an unbound key",
        );
        let header = json!({"alg": "ES256", "nonce": jay.new_nonce().await, "url": me, "kid": binding_url(pkid, &jay)});
        refused(
            send_signed(&stranger, header, me.clone()).await,
            "another key signing for jay's binding",
        );
        let header = json!({"alg": "ES256", "nonce": jay.new_nonce().await, "url": me, "jwk": jay.key.jwk});
        refused(send_signed(&jay, header, me.clone()).await, "an embedded jwk");

        // An ACME account's key, bound by the account's URL, signs REST requests too.
        let mut account = AcmeClient::new(&pkid.directory_url(), &pkid.root_pem()).await;
        let account_url = account.register().await;
        cli_ok(pkid, &["user", "bind-key", "jay", "--account", &account_url]).await;
        let answer = signed(&http, &account, Method::GET, &me, "").await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(answer.body["result"]["username"], "jay");

        cli_ok(pkid, &["user", "disable", "jay"]).await;
        refused(
            signed(&http, &jay, Method::GET, &me, "").await,
            "a disabled user's key",
        );
    })
    .await;
}

/// Security hardening, item 7: keys are checked for what they cost and for their one encoding
/// before any verification, `crit` is refused, and an `alg` the key does not sign with is
/// `badSignatureAlgorithm` with the accepted `algorithms` (RFC 8555 §6.2). Each crafted
/// newAccount spends its nonce: the same nonce on a good request is then `badNonce` (§6.5).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_bounded_canonical_and_fit_their_algorithm() {
    let env = Environment::start().await;
    within(TEST_BOUND, async {
        let pkid = &env.pkid;
        let mut client = AcmeClient::new(&pkid.directory_url(), &pkid.root_pem()).await;
        // A key whose x coordinate starts with a zero byte: its JWK may be written without it.
        let key = (0..20_000)
            .map(|_| AccountKey::generate())
            .find(|k| coordinate(&k.jwk, "x")[0] == 0)
            .expect("a P-256 key with a leading zero byte in x among 20,000");
        client.key = key;
        let url = client.resource("newAccount");
        let payload = json!({"termsOfServiceAgreed": true});
        let jwk = client.key.jwk.clone();
        let x = coordinate(&jwk, "x");
        let with_x = |x: &[u8]| {
            let mut jwk = jwk.clone();
            jwk["x"] = json!(b64(x));
            jwk
        };
        // As long as the 3072-bit modulus: an exponentiation as costly as a private key's.
        let modulus = [vec![0xc5u8], vec![0xa7; 382], vec![0x01]].concat();
        let huge_exponent = json!({"kty": "RSA", "n": b64(&modulus), "e": b64(&modulus)});
        let cases = [
            (
                "RSA exponent of 3072 bits",
                json!({"alg": "RS256", "jwk": huge_exponent}),
                "badPublicKey",
                "exponent",
            ),
            (
                "x without its leading zero byte",
                json!({"alg": "ES256", "jwk": with_x(&x[1..])}),
                "badPublicKey",
                "32",
            ),
            (
                "x padded past the curve's length",
                json!({"alg": "ES256", "jwk": with_x(&[&[0u8][..], &x].concat())}),
                "badPublicKey",
                "32",
            ),
            (
                "crit",
                json!({"alg": "ES256", "jwk": jwk, "crit": ["exp"], "exp": 1}),
                "malformed",
                "crit",
            ),
            (
                "ES384 for a P-256 key",
                json!({"alg": "ES384", "jwk": jwk}),
                "badSignatureAlgorithm",
                "ES256",
            ),
        ];
        for (what, mut protected, want, detail) in cases {
            let nonce = client.new_nonce().await;
            protected["nonce"] = json!(nonce);
            protected["url"] = json!(url);
            let jws = client.key.sign(&protected, &payload.to_string());
            let refused = client.post_raw(&url, &jws, None).await;
            assert_eq!(
                refused.problem_type().as_deref(),
                Some(format!("urn:ietf:params:acme:error:{want}").as_str()),
                "{what}: {}",
                refused.describe()
            );
            let problem = refused.json();
            assert!(
                problem["detail"]
                    .as_str()
                    .unwrap_or_default()
                    .contains(detail),
                "{what}: {problem}"
            );
            if want == "badSignatureAlgorithm" {
                assert_eq!(
                    problem["algorithms"],
                    json!(["ES256", "ES384", "RS256", "EdDSA"]),
                    "{what}"
                );
            }
            let replay = client.post_with_nonce(&url, Some(&payload), &nonce).await;
            assert_eq!(
                replay.problem_type().as_deref(),
                Some("urn:ietf:params:acme:error:badNonce"),
                "{what}: the nonce is spent: {}",
                replay.describe()
            );
        }
        // The key in its one encoding registers.
        client.register().await;
    })
    .await;
}

/// A JWK member's bytes.
fn coordinate(jwk: &Value, member: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD
        .decode(jwk[member].as_str().unwrap())
        .unwrap()
}

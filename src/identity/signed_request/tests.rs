//! JWS-signed requests with real ES256, RS256 and Ed25519 signatures against bindings held in
//! memory: a good request authenticates as the key's user; each way of getting it wrong is
//! refused with its own kind.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::{HeaderMap, HeaderValue};
use josekit::jws::JwsSigner;
use serde_json::{json, Map, Value};

use super::*;

const ORIGIN: &str = "https://pkid.test";
const PATH: &str = "/api/v1/certificate_requests";

/// A client's key pair.
struct Key {
    alg: &'static str,
    signer: Box<dyn JwsSigner>,
    jwk: Map<String, Value>,
}

impl Key {
    fn es256() -> Key {
        let pair = josekit::jws::ES256.generate_key_pair().unwrap();
        Key {
            alg: "ES256",
            signer: Box::new(
                josekit::jws::ES256
                    .signer_from_der(pair.to_der_private_key())
                    .unwrap(),
            ),
            jwk: jws::public_jwk(pair.to_jwk_public_key().as_ref()),
        }
    }

    fn rs256() -> Key {
        let pair = josekit::jws::RS256.generate_key_pair(2048).unwrap();
        Key {
            alg: "RS256",
            signer: Box::new(
                josekit::jws::RS256
                    .signer_from_der(pair.to_der_private_key())
                    .unwrap(),
            ),
            jwk: jws::public_jwk(pair.to_jwk_public_key().as_ref()),
        }
    }

    fn ed25519() -> Key {
        let pair = josekit::jws::EdDSA
            .generate_key_pair(josekit::jwk::alg::ed::EdCurve::Ed25519)
            .unwrap();
        Key {
            alg: "EdDSA",
            signer: Box::new(
                josekit::jws::EdDSA
                    .signer_from_der(pair.to_der_private_key())
                    .unwrap(),
            ),
            jwk: jws::public_jwk(pair.to_jwk_public_key().as_ref()),
        }
    }

    fn thumbprint(&self) -> String {
        jws::thumbprint(&self.jwk).unwrap()
    }

    /// The `kid` of this key's binding.
    fn kid(&self) -> String {
        binding_url(ORIGIN, &self.thumbprint())
    }

    /// A flattened JWS of `payload` under `header`, signed by this key.
    fn sign(&self, header: Value, payload: &[u8]) -> Vec<u8> {
        let protected = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap());
        let payload = URL_SAFE_NO_PAD.encode(payload);
        let signature = self
            .signer
            .sign(format!("{protected}.{payload}").as_bytes())
            .unwrap();
        serde_json::to_vec(&json!({
            "protected": protected,
            "payload": payload,
            "signature": URL_SAFE_NO_PAD.encode(signature),
        }))
        .unwrap()
    }

    /// A request to [`PATH`] as a well-behaved client signs it.
    fn request(&self, nonce: &str, payload: &[u8]) -> Vec<u8> {
        self.sign(
            json!({"alg": self.alg, "kid": self.kid(), "nonce": nonce, "url": format!("{ORIGIN}{PATH}")}),
            payload,
        )
    }
}

/// A verifier whose bindings are `bound` (each key to user `user-N`, named `name-N`), and the
/// nonce service it redeems from.
fn verifier(bound: &[&Key]) -> (SignedRequests, NonceService) {
    let bindings: BTreeMap<String, BoundKey> = bound
        .iter()
        .enumerate()
        .map(|(n, key)| {
            let binding = BoundKey {
                user_id: format!("user-{n}"),
                username: format!("name-{n}"),
                jwk: Value::Object(key.jwk.clone()).to_string(),
            };
            (key.thumbprint(), binding)
        })
        .collect();
    let nonces = NonceService::in_process(60);
    (
        SignedRequests::new(nonces.clone(), Arc::new(bindings)),
        nonces,
    )
}

fn jose() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/jose+json"),
    );
    headers
}

async fn authenticate(
    requests: &SignedRequests,
    body: &[u8],
) -> Result<SignedRequest, SignedRequestError> {
    requests.authenticate(&jose(), body, ORIGIN, PATH).await
}

#[tokio::test]
async fn a_request_signed_by_a_bound_key_authenticates_as_its_user() {
    let (es, rs, ed) = (Key::es256(), Key::rs256(), Key::ed25519());
    let (requests, nonces) = verifier(&[&es, &rs, &ed]);
    for (n, key) in [&es, &rs, &ed].into_iter().enumerate() {
        let payload = format!(r#"{{"csr":"{n}"}}"#);
        let signed = authenticate(&requests, &key.request(&nonces.issue(), payload.as_bytes()))
            .await
            .unwrap_or_else(|e| panic!("{}: {e:?}", key.alg));
        assert_eq!(
            signed,
            SignedRequest {
                user_id: format!("user-{n}"),
                thumbprint: key.thumbprint(),
                payload: payload.into_bytes(),
            },
            "{}",
            key.alg
        );
    }
    // A read: an empty payload, and a media type with parameters.
    let mut headers = jose();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/jose+json; charset=utf-8"),
    );
    let read = requests
        .authenticate(&headers, &es.request(&nonces.issue(), b""), ORIGIN, PATH)
        .await
        .unwrap();
    assert!(read.payload.is_empty());
}

#[tokio::test]
async fn a_replayed_or_unknown_nonce_is_refused() {
    let key = Key::es256();
    let (requests, nonces) = verifier(&[&key]);
    let body = key.request(&nonces.issue(), b"{}");
    authenticate(&requests, &body).await.unwrap();
    let replayed = authenticate(&requests, &body).await.unwrap_err();
    assert!(
        matches!(replayed, SignedRequestError::BadNonce(_)),
        "{replayed:?}"
    );
    // A nonce this service never issued (another process's key), and none at all.
    let unknown = NonceService::in_process(60).issue();
    let e = authenticate(&requests, &key.request(&unknown, b"{}"))
        .await
        .unwrap_err();
    assert!(matches!(e, SignedRequestError::BadNonce(_)), "{e:?}");
    let url = format!("{ORIGIN}{PATH}");
    let e = authenticate(
        &requests,
        &key.sign(json!({"alg": "ES256", "kid": key.kid(), "url": url}), b"{}"),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, SignedRequestError::BadNonce(_)), "{e:?}");
}

#[tokio::test]
async fn a_url_that_is_not_the_request_url_is_refused() {
    let key = Key::es256();
    let (requests, nonces) = verifier(&[&key]);
    for url in [
        format!("{ORIGIN}/api/v1/certificate_authorities"),
        format!("https://elsewhere.test{PATH}"),
        format!("{ORIGIN}{PATH}/"),
    ] {
        let body = key.sign(
            json!({"alg": "ES256", "kid": key.kid(), "nonce": nonces.issue(), "url": url}),
            b"{}",
        );
        let e = authenticate(&requests, &body).await.unwrap_err();
        assert!(matches!(e, SignedRequestError::WrongUrl(_)), "{url}: {e:?}");
    }
    let body = key.sign(
        json!({"alg": "ES256", "kid": key.kid(), "nonce": nonces.issue()}),
        b"{}",
    );
    let e = authenticate(&requests, &body).await.unwrap_err();
    assert!(matches!(e, SignedRequestError::Malformed(_)), "{e:?}");
}

#[tokio::test]
async fn an_unbound_key_is_refused() {
    let (bound, unbound) = (Key::es256(), Key::es256());
    let (requests, nonces) = verifier(&[&bound]);
    // Its binding URL's form is right, but nothing is bound there.
    let e = authenticate(&requests, &unbound.request(&nonces.issue(), b"{}"))
        .await
        .unwrap_err();
    assert!(matches!(e, SignedRequestError::UnboundKey(_)), "{e:?}");
    // Not a binding URL of this server: an ACME account URL, another origin, no thumbprint.
    let url = format!("{ORIGIN}{PATH}");
    for kid in [
        format!("{ORIGIN}/acme/acct/1"),
        binding_url("https://elsewhere.test", &bound.thumbprint()),
        binding_url(ORIGIN, "x"),
        format!("{}/more", bound.kid()),
    ] {
        let body = bound.sign(
            json!({"alg": "ES256", "kid": kid, "nonce": nonces.issue(), "url": url}),
            b"{}",
        );
        let e = authenticate(&requests, &body).await.unwrap_err();
        assert!(
            matches!(e, SignedRequestError::UnboundKey(_)),
            "{kid}: {e:?}"
        );
    }
}

/// RFC 8555 §6.5, as ACME has it: a nonce that checked is spent by the request that carried
/// it, refused or not, so a refused request cannot be sent again with it.
#[tokio::test]
async fn a_signature_that_is_not_the_bound_keys_is_refused_and_spends_its_nonce() {
    let (key, other) = (Key::es256(), Key::es256());
    let (requests, nonces) = verifier(&[&key]);
    let url = format!("{ORIGIN}{PATH}");
    let spent = |nonce: String| {
        let (requests, key) = (&requests, &key);
        async move {
            let e = authenticate(requests, &key.request(&nonce, b"{}"))
                .await
                .unwrap_err();
            assert!(matches!(e, SignedRequestError::BadNonce(_)), "{e:?}");
        }
    };
    // The payload changed after signing.
    let nonce = nonces.issue();
    let mut tampered: Value = serde_json::from_slice(&key.request(&nonce, b"{}")).unwrap();
    tampered["payload"] = json!(URL_SAFE_NO_PAD.encode(br#"{"csr":"forged"}"#));
    let e = authenticate(&requests, &serde_json::to_vec(&tampered).unwrap())
        .await
        .unwrap_err();
    assert!(matches!(e, SignedRequestError::BadSignature(_)), "{e:?}");
    spent(nonce).await;
    // Signed by another key under the bound key's kid.
    let nonce = nonces.issue();
    let forged = other.sign(
        json!({"alg": "ES256", "kid": key.kid(), "nonce": nonce, "url": url}),
        b"{}",
    );
    let e = authenticate(&requests, &forged).await.unwrap_err();
    assert!(matches!(e, SignedRequestError::BadSignature(_)), "{e:?}");
    spent(nonce).await;
    // An RSA signature claimed of the bound EC key: the key does not sign RS256.
    let nonce = nonces.issue();
    let rsa = Key::rs256();
    let mismatched = rsa.sign(
        json!({"alg": "RS256", "kid": key.kid(), "nonce": nonce, "url": url}),
        b"{}",
    );
    let e = authenticate(&requests, &mismatched).await.unwrap_err();
    assert!(
        matches!(e, SignedRequestError::BadSignatureAlgorithm(_)),
        "{e:?}"
    );
    spent(nonce).await;
    // A fresh nonce still serves the client's own request.
    authenticate(&requests, &key.request(&nonces.issue(), b"{}"))
        .await
        .unwrap();
}

#[tokio::test]
async fn an_embedded_jwk_instead_of_a_kid_is_refused() {
    let key = Key::es256();
    let (requests, nonces) = verifier(&[&key]);
    let body = key.sign(
        json!({"alg": "ES256", "jwk": key.jwk, "nonce": nonces.issue(), "url": format!("{ORIGIN}{PATH}")}),
        b"{}",
    );
    let e = authenticate(&requests, &body).await.unwrap_err();
    assert!(matches!(e, SignedRequestError::EmbeddedKey), "{e:?}");
}

#[tokio::test]
async fn none_and_mac_algorithms_are_refused() {
    let key = Key::es256();
    let (requests, nonces) = verifier(&[&key]);
    let url = format!("{ORIGIN}{PATH}");
    // `none`, with an empty signature as RFC 7515 §A.5 makes it.
    let protected = URL_SAFE_NO_PAD.encode(
        serde_json::to_vec(
            &json!({"alg": "none", "kid": key.kid(), "nonce": nonces.issue(), "url": url}),
        )
        .unwrap(),
    );
    let unsecured = json!({"protected": protected, "payload": "e30", "signature": ""});
    let e = authenticate(&requests, &serde_json::to_vec(&unsecured).unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(e, SignedRequestError::BadSignatureAlgorithm(_)),
        "none: {e:?}"
    );
    // HS256 under a MAC key that is the bound key's public JWK, the classic confusion.
    let mac = Key {
        alg: "HS256",
        signer: Box::new(
            josekit::jws::HS256
                .signer_from_bytes(Value::Object(key.jwk.clone()).to_string())
                .unwrap(),
        ),
        jwk: key.jwk.clone(),
    };
    let e = authenticate(&requests, &mac.request(&nonces.issue(), b"{}"))
        .await
        .unwrap_err();
    assert!(
        matches!(e, SignedRequestError::BadSignatureAlgorithm(_)),
        "HS256: {e:?}"
    );
}

#[tokio::test]
async fn a_body_that_is_not_a_jose_request_is_refused() {
    let key = Key::es256();
    let (requests, nonces) = verifier(&[&key]);
    let body = key.request(&nonces.issue(), b"{}");
    let mut json = HeaderMap::new();
    json.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    for headers in [HeaderMap::new(), json] {
        let e = requests
            .authenticate(&headers, &body, ORIGIN, PATH)
            .await
            .unwrap_err();
        assert!(matches!(e, SignedRequestError::NotJose), "{e:?}");
    }
    let e = authenticate(&requests, br#"{"csr":"x"}"#)
        .await
        .unwrap_err();
    assert!(matches!(e, SignedRequestError::Malformed(_)), "{e:?}");
    assert!(e.is_refusal());
    // The same body, properly sent, was not spent by the refusals.
    authenticate(&requests, &body).await.unwrap();
}

/// A lookup that fails is pkid's failure, not the client's: no 401.
#[tokio::test]
async fn a_failed_lookup_is_not_a_refusal() {
    struct Down;
    #[async_trait::async_trait]
    impl KeyBindings for Down {
        async fn key(&self, _: &str) -> Result<Option<BoundKey>, StoreError> {
            Err(StoreError::Corrupt("user_keys".into()))
        }
    }
    let key = Key::es256();
    let nonces = NonceService::in_process(60);
    let requests = SignedRequests::new(nonces.clone(), Arc::new(Down));
    let e = authenticate(&requests, &key.request(&nonces.issue(), b"{}"))
        .await
        .unwrap_err();
    assert!(matches!(e, SignedRequestError::Store(_)), "{e:?}");
    assert!(!e.is_refusal());
}

#[test]
fn binding_urls_name_thumbprints() {
    let key = Key::es256();
    let thumbprint = key.thumbprint();
    let url = binding_url(&format!("{ORIGIN}/"), &thumbprint);
    assert_eq!(url, format!("{ORIGIN}/identity/keys/{thumbprint}"));
    assert_eq!(
        thumbprint_of_binding(ORIGIN, &url),
        Some(thumbprint.as_str())
    );
    assert!(is_thumbprint(&thumbprint));
    assert!(!is_thumbprint("a/b"));
    assert!(!is_thumbprint(&format!("{thumbprint}=")));
}

// End to end against a real pkid: `conformance/jws.rs` (a bound key's signed request, then a
// replayed nonce, a wrong `url`, an unbound key, another's binding, an embedded `jwk`, a
// disabled user) and the authorization matrix of `conformance/identity/matrix.rs`.

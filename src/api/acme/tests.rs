//! In-process tests of the request rules of RFC 8555 §6.2–§6.5: each bad request gets its problem
//! type and status, a fresh `Replay-Nonce`, and leaves the database unchanged.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use josekit::jws::JwsSigner;
use serde_json::{json, Value};
use sqlx::Row;

use super::{AcmeServer, AcmeSettings, Reply};
use crate::ca::{Ca, IssuanceProfile};
use crate::identity::nonce::NonceService;
use crate::ra::{Directory, EabPolicy};
use crate::store::Store;

const ORIGIN: &str = "https://pkid.test";

struct Harness {
    acme: Arc<AcmeServer>,
    kek: Arc<pkid_backends::KeyEncryptionKey>,
    store: Store,
    checker: NonceService,
    _dir: tempfile::TempDir,
}

async fn harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    let store = Store::connect(&url, 2).await.unwrap();
    let kek = Arc::new(pkid_backends::KeyEncryptionKey::generate());
    let (backend, _) = pkid_backends::SoftwareBackend::open_or_create(
        "test",
        &dir.path().join("ca"),
        &kek,
        pkid_backends::KeyAlgorithm::EcdsaP256,
    )
    .unwrap();
    let ca = Arc::new(Ca::new("test".into(), Arc::new(backend), store.clone(), 60));
    let revocation = Arc::new(crate::revocation::Revocation::new(
        store.clone(),
        std::slice::from_ref(&ca),
        crate::revocation::RevocationSettings {
            crl_lifetime_secs: 3600,
            ocsp_lifetime_secs: 3600,
        },
    ));
    let ra = Arc::new(crate::ra::tests::ra_for_tests(
        &store,
        revocation,
        kek.clone(),
    ));
    let directory = Directory {
        name: "default".into(),
        ca: ca.clone(),
        profiles: [
            (
                "tls-server".to_string(),
                IssuanceProfile::tls_server("tls-server", 90 * 86400),
            ),
            (
                "short-lived".to_string(),
                IssuanceProfile::tls_server("short-lived", 7 * 86400),
            ),
        ]
        .into_iter()
        .collect(),
        default_profile: "tls-server".into(),
        eab_policy: EabPolicy::NotRequired,
        pre_authorization: true,
    };
    let acme = Arc::new(AcmeServer::new(
        ra,
        directory,
        NonceService::new(b"k", 60, store.clone()),
        AcmeSettings {
            challenge_wait: std::time::Duration::ZERO,
        },
    ));
    Harness {
        acme,
        checker: NonceService::new(b"k", 60, store.clone()),
        kek,
        store,
        _dir: dir,
    }
}

#[derive(Clone)]
struct Key {
    der: Vec<u8>,
    jwk: Value,
}

fn key() -> Key {
    let pair = josekit::jws::ES256.generate_key_pair().unwrap();
    let jwk = serde_json::to_value(pair.to_jwk_public_key().as_ref()).unwrap();
    Key {
        der: pair.to_der_private_key(),
        jwk,
    }
}

fn sign(key: &Key, header: Value, payload: &[u8]) -> Vec<u8> {
    let p = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap());
    let b = URL_SAFE_NO_PAD.encode(payload);
    let signer = josekit::jws::ES256.signer_from_der(&key.der).unwrap();
    let sig = signer.sign(format!("{p}.{b}").as_bytes()).unwrap();
    serde_json::to_vec(
        &json!({"protected": p, "payload": b, "signature": URL_SAFE_NO_PAD.encode(sig)}),
    )
    .unwrap()
}

fn jose_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/jose+json"),
    );
    h
}

impl Harness {
    async fn nonce(&self) -> String {
        let r = self
            .acme
            .handle(
                &Method::HEAD,
                "/acme/new-nonce",
                &HeaderMap::new(),
                Bytes::new(),
                ORIGIN,
            )
            .await;
        reply_nonce(&r)
    }

    async fn post(&self, path: &str, body: Vec<u8>) -> Reply {
        self.acme
            .handle(
                &Method::POST,
                path,
                &jose_headers(),
                Bytes::from(body),
                ORIGIN,
            )
            .await
    }

    async fn count(&self, table: &str) -> i64 {
        let row = sqlx::query(&format!("SELECT COUNT(*) AS n FROM {table}"))
            .fetch_one(self.store.pool())
            .await
            .unwrap();
        row.try_get("n").unwrap()
    }

    async fn snapshot(&self) -> Vec<i64> {
        let mut v = Vec::new();
        for t in [
            "accounts",
            "orders",
            "authorizations",
            "challenges",
            "certificates",
        ] {
            v.push(self.count(t).await);
        }
        v
    }

    /// A registered account: (key, kid).
    async fn account(&self) -> (Key, String) {
        let k = key();
        let n = self.nonce().await;
        let body = sign(
            &k,
            json!({"alg":"ES256","jwk":k.jwk,"nonce":n,"url":format!("{ORIGIN}/acme/new-account")}),
            b"{}",
        );
        let r = self.post("/acme/new-account", body).await;
        assert_eq!(r.status, StatusCode::CREATED);
        let kid = r
            .headers
            .iter()
            .find(|(n, _)| n == http::header::LOCATION)
            .unwrap()
            .1
            .clone();
        (k, kid)
    }
}

fn reply_nonce(r: &Reply) -> String {
    r.headers
        .iter()
        .find(|(n, _)| n.as_str() == "replay-nonce")
        .map(|(_, v)| v.clone())
        .expect("Replay-Nonce on every response")
}

fn problem_type(r: &Reply) -> String {
    assert_eq!(r.content_type, "application/problem+json");
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    v["type"]
        .as_str()
        .unwrap()
        .trim_start_matches("urn:ietf:params:acme:error:")
        .to_string()
}

#[tokio::test]
async fn every_jws_rule_is_enforced_with_a_fresh_nonce_and_no_write() {
    let h = harness().await;
    let (acct_key, kid) = h.account().await;
    let stranger = key();
    let new_account = format!("{ORIGIN}/acme/new-account");
    let new_order = format!("{ORIGIN}/acme/new-order");
    let order_payload = br#"{"identifiers":[{"type":"dns","value":"a.pkid.test"}]}"#;

    // (name, path, body builder with a fresh nonce, expected type, expected status)
    type Build = Box<dyn Fn(&str) -> Vec<u8>>;
    let cases: Vec<(&str, &str, Build, &str, u16)> = vec![
        (
            "not JSON",
            "/acme/new-order",
            Box::new(|_| b"{".to_vec()),
            "malformed",
            400,
        ),
        (
            "general serialization",
            "/acme/new-order",
            Box::new(|_| {
                br#"{"payload":"","signatures":[{"protected":"e30","signature":"AA"}]}"#.to_vec()
            }),
            "malformed",
            400,
        ),
        (
            "unprotected header",
            "/acme/new-order",
            {
                let (k, kid, url) = (key(), kid.clone(), new_order.clone());
                Box::new(move |n| {
                    let mut v: Value = serde_json::from_slice(&sign(
                        &k,
                        json!({"alg":"ES256","kid":kid,"nonce":n,"url":url}),
                        b"{}",
                    ))
                    .unwrap();
                    v["header"] = json!({"kid": "x"});
                    serde_json::to_vec(&v).unwrap()
                })
            },
            "malformed",
            400,
        ),
        (
            "alg none",
            "/acme/new-order",
            {
                let (kid, url) = (kid.clone(), new_order.clone());
                Box::new(move |n| {
                    let p = URL_SAFE_NO_PAD.encode(
                        serde_json::to_vec(&json!({"alg":"none","kid":kid,"nonce":n,"url":url}))
                            .unwrap(),
                    );
                    serde_json::to_vec(&json!({"protected": p, "payload": "", "signature": "AA"}))
                        .unwrap()
                })
            },
            "badSignatureAlgorithm",
            400,
        ),
        (
            "alg HS256",
            "/acme/new-order",
            {
                let (kid, url) = (kid.clone(), new_order.clone());
                Box::new(move |n| {
                    let p = URL_SAFE_NO_PAD.encode(
                        serde_json::to_vec(&json!({"alg":"HS256","kid":kid,"nonce":n,"url":url}))
                            .unwrap(),
                    );
                    serde_json::to_vec(&json!({"protected": p, "payload": "", "signature": "AAAA"}))
                        .unwrap()
                })
            },
            "badSignatureAlgorithm",
            400,
        ),
        (
            "jwk and kid",
            "/acme/new-order",
            {
                let (kid, url) = (kid.clone(), new_order.clone());
                let k = key();
                Box::new(move |n| {
                    sign(
                        &k,
                        json!({"alg":"ES256","kid":kid,"jwk":k.jwk,"nonce":n,"url":url}),
                        order_payload,
                    )
                })
            },
            "malformed",
            400,
        ),
        (
            "neither jwk nor kid",
            "/acme/new-order",
            {
                let url = new_order.clone();
                let k = key();
                Box::new(move |n| {
                    sign(
                        &k,
                        json!({"alg":"ES256","nonce":n,"url":url}),
                        order_payload,
                    )
                })
            },
            "malformed",
            400,
        ),
        (
            "no nonce",
            "/acme/new-order",
            {
                let (kid, url) = (kid.clone(), new_order.clone());
                let k = key();
                Box::new(move |_| {
                    sign(
                        &k,
                        json!({"alg":"ES256","kid":kid,"url":url}),
                        order_payload,
                    )
                })
            },
            "badNonce",
            400,
        ),
        (
            "forged nonce",
            "/acme/new-order",
            {
                let (kid, url) = (kid.clone(), new_order.clone());
                let k = key();
                Box::new(move |_| {
                    sign(
                        &k,
                        json!({"alg":"ES256","kid":kid,"nonce":"AAAAAGsDrOOmnUQ7JA9CtNymY2seCF1AM-THL_Ay0L3mxxyr","url":url}),
                        order_payload,
                    )
                })
            },
            "badNonce",
            400,
        ),
        (
            "no url",
            "/acme/new-order",
            {
                let kid = kid.clone();
                let k = key();
                Box::new(move |n| {
                    sign(
                        &k,
                        json!({"alg":"ES256","kid":kid,"nonce":n}),
                        order_payload,
                    )
                })
            },
            "malformed",
            400,
        ),
        (
            "url of another resource",
            "/acme/new-order",
            {
                let (kid, url) = (kid.clone(), new_account.clone());
                let k = key();
                Box::new(move |n| {
                    sign(
                        &k,
                        json!({"alg":"ES256","kid":kid,"nonce":n,"url":url}),
                        order_payload,
                    )
                })
            },
            "unauthorized",
            403,
        ),
        (
            "kid of no account",
            "/acme/new-order",
            {
                let url = new_order.clone();
                let k = key();
                Box::new(move |n| {
                    sign(
                        &k,
                        json!({"alg":"ES256","kid":format!("{ORIGIN}/acme/acct/nobody"),"nonce":n,"url":url}),
                        order_payload,
                    )
                })
            },
            "accountDoesNotExist",
            400,
        ),
        (
            "signed by another key",
            "/acme/new-order",
            {
                let (kid, url) = (kid.clone(), new_order.clone());
                Box::new(move |n| {
                    sign(
                        &stranger,
                        json!({"alg":"ES256","kid":kid,"nonce":n,"url":url}),
                        order_payload,
                    )
                })
            },
            "malformed",
            400,
        ),
        (
            "jwk where kid is needed",
            "/acme/new-order",
            {
                let url = new_order.clone();
                let k = key();
                Box::new(move |n| {
                    sign(
                        &k,
                        json!({"alg":"ES256","jwk":k.jwk,"nonce":n,"url":url}),
                        order_payload,
                    )
                })
            },
            "malformed",
            400,
        ),
        (
            "kid on newAccount",
            "/acme/new-account",
            {
                let (kid, url) = (kid.clone(), new_account.clone());
                let k = acct_key.clone();
                Box::new(move |n| {
                    sign(
                        &k,
                        json!({"alg":"ES256","kid":kid,"nonce":n,"url":url}),
                        b"{}",
                    )
                })
            },
            "malformed",
            400,
        ),
        (
            "private key in jwk",
            "/acme/new-account",
            {
                let url = new_account.clone();
                let k = key();
                Box::new(move |n| {
                    let mut jwk = k.jwk.clone();
                    jwk["d"] = json!("AAAA");
                    sign(
                        &k,
                        json!({"alg":"ES256","jwk":jwk,"nonce":n,"url":url}),
                        b"{}",
                    )
                })
            },
            "badPublicKey",
            400,
        ),
        (
            "payload not JSON",
            "/acme/new-account",
            {
                let url = new_account.clone();
                let k = key();
                Box::new(move |n| {
                    sign(
                        &k,
                        json!({"alg":"ES256","jwk":k.jwk,"nonce":n,"url":url}),
                        b"[1,",
                    )
                })
            },
            "malformed",
            400,
        ),
        (
            "onlyReturnExisting for a new key",
            "/acme/new-account",
            {
                let url = new_account.clone();
                let k = key();
                Box::new(move |n| {
                    sign(
                        &k,
                        json!({"alg":"ES256","jwk":k.jwk,"nonce":n,"url":url}),
                        br#"{"onlyReturnExisting":true}"#,
                    )
                })
            },
            "accountDoesNotExist",
            400,
        ),
        (
            "contact not mailto",
            "/acme/new-account",
            {
                let url = new_account.clone();
                let k = key();
                Box::new(move |n| {
                    sign(
                        &k,
                        json!({"alg":"ES256","jwk":k.jwk,"nonce":n,"url":url}),
                        br#"{"contact":["tel:+1555"]}"#,
                    )
                })
            },
            "unsupportedContact",
            400,
        ),
        (
            "unsupported identifier type",
            "/acme/new-order",
            {
                let (k, kid, url) = (acct_key.clone(), kid.clone(), new_order.clone());
                Box::new(move |n| {
                    sign(
                        &k,
                        json!({"alg":"ES256","kid":kid,"nonce":n,"url":url}),
                        br#"{"identifiers":[{"type":"email","value":"a@b.test"}]}"#,
                    )
                })
            },
            "unsupportedIdentifier",
            400,
        ),
        (
            "invalid DNS name",
            "/acme/new-order",
            {
                let (k, kid, url) = (acct_key.clone(), kid.clone(), new_order.clone());
                Box::new(move |n| {
                    sign(
                        &k,
                        json!({"alg":"ES256","kid":kid,"nonce":n,"url":url}),
                        br#"{"identifiers":[{"type":"dns","value":"bad_name..test"}]}"#,
                    )
                })
            },
            "rejectedIdentifier",
            400,
        ),
        (
            "no identifiers",
            "/acme/new-order",
            {
                let (k, kid, url) = (acct_key.clone(), kid.clone(), new_order.clone());
                Box::new(move |n| {
                    sign(
                        &k,
                        json!({"alg":"ES256","kid":kid,"nonce":n,"url":url}),
                        br#"{"identifiers":[]}"#,
                    )
                })
            },
            "malformed",
            400,
        ),
        (
            "POST-as-GET to newOrder",
            "/acme/new-order",
            {
                let (k, kid, url) = (acct_key.clone(), kid.clone(), new_order.clone());
                Box::new(move |n| {
                    sign(
                        &k,
                        json!({"alg":"ES256","kid":kid,"nonce":n,"url":url}),
                        b"",
                    )
                })
            },
            "malformed",
            400,
        ),
        (
            "order of another account",
            "/acme/order/nope",
            {
                let (k, kid) = (acct_key.clone(), kid.clone());
                Box::new(move |n| {
                    sign(
                        &k,
                        json!({"alg":"ES256","kid":kid,"nonce":n,"url":format!("{ORIGIN}/acme/order/nope")}),
                        b"",
                    )
                })
            },
            "malformed",
            404,
        ),
        (
            "unknown resource",
            "/acme/nothing-here",
            {
                let (k, kid) = (acct_key.clone(), kid.clone());
                Box::new(move |n| {
                    sign(
                        &k,
                        json!({"alg":"ES256","kid":kid,"nonce":n,"url":format!("{ORIGIN}/acme/nothing-here")}),
                        b"",
                    )
                })
            },
            "malformed",
            404,
        ),
    ];
    let before = h.snapshot().await;
    for (name, path, build, want_type, want_status) in &cases {
        let n = h.nonce().await;
        let r = h.post(path, build(&n)).await;
        assert_eq!(problem_type(&r), *want_type, "{name}");
        assert_eq!(r.status.as_u16(), *want_status, "{name}");
        let fresh = reply_nonce(&r);
        assert!(
            h.checker.check(&fresh).is_ok(),
            "{name}: the error carries a usable nonce"
        );
        assert_eq!(h.snapshot().await, before, "{name}: nothing written");
    }
}

#[tokio::test]
async fn wrong_content_type_is_415_with_a_nonce() {
    let h = harness().await;
    let r = h
        .acme
        .handle(
            &Method::POST,
            "/acme/new-account",
            &HeaderMap::new(),
            Bytes::from_static(b"{}"),
            ORIGIN,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(problem_type(&r), "malformed");
    assert!(h.checker.check(&reply_nonce(&r)).is_ok());
}

#[tokio::test]
async fn a_nonce_is_accepted_once() {
    let h = harness().await;
    let k = key();
    let n = h.nonce().await;
    let body = sign(
        &k,
        json!({"alg":"ES256","jwk":k.jwk,"nonce":n,"url":format!("{ORIGIN}/acme/new-account")}),
        b"{}",
    );
    assert_eq!(
        h.post("/acme/new-account", body.clone()).await.status,
        StatusCode::CREATED
    );
    let replay = h.post("/acme/new-account", body).await;
    assert_eq!(problem_type(&replay), "badNonce");
    assert_eq!(replay.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn get_on_a_post_resource_is_405() {
    let h = harness().await;
    let r = h
        .acme
        .handle(
            &Method::GET,
            "/acme/new-order",
            &HeaderMap::new(),
            Bytes::new(),
            ORIGIN,
        )
        .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(h.checker.check(&reply_nonce(&r)).is_ok());
}

fn key_change_body(h_kid: &str, old: &Key, new: &Key, nonce: &str) -> Vec<u8> {
    let url = format!("{ORIGIN}/acme/key-change");
    let inner_payload = serde_json::to_vec(&json!({"account": h_kid, "oldKey": old.jwk})).unwrap();
    let inner = sign(
        new,
        json!({"alg":"ES256","jwk":new.jwk,"url":url}),
        &inner_payload,
    );
    sign(
        old,
        json!({"alg":"ES256","kid":h_kid,"nonce":nonce,"url":url}),
        &inner,
    )
}

async fn lookup(h: &Harness, k: &Key) -> Reply {
    let n = h.nonce().await;
    let body = sign(
        k,
        json!({"alg":"ES256","jwk":k.jwk,"nonce":n,"url":format!("{ORIGIN}/acme/new-account")}),
        br#"{"onlyReturnExisting":true}"#,
    );
    h.post("/acme/new-account", body).await
}

/// RFC 8555 §7.3.5: the account moves to the new key; the old key no longer finds it; a key
/// held by another account is a 409 with that account's URL.
#[tokio::test]
async fn key_change_rolls_the_account_key_over() {
    let h = harness().await;
    let (old, kid) = h.account().await;
    let (other_key, other_kid) = h.account().await;

    let n = h.nonce().await;
    let r = h
        .post(
            "/acme/key-change",
            key_change_body(&kid, &old, &other_key, &n),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let location = r
        .headers
        .iter()
        .find(|(n, _)| n == http::header::LOCATION)
        .unwrap();
    assert_eq!(location.1, other_kid);

    let new = key();
    let n = h.nonce().await;
    let r = h
        .post("/acme/key-change", key_change_body(&kid, &old, &new, &n))
        .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );

    let found = lookup(&h, &new).await;
    assert_eq!(found.status, StatusCode::OK);
    let location = found
        .headers
        .iter()
        .find(|(n, _)| n == http::header::LOCATION)
        .unwrap();
    assert_eq!(location.1, kid);
    assert_eq!(problem_type(&lookup(&h, &old).await), "accountDoesNotExist");

    // The old key can no longer sign for the account.
    let n = h.nonce().await;
    let body = sign(
        &old,
        json!({"alg":"ES256","kid":kid,"nonce":n,"url":format!("{ORIGIN}/acme/new-order")}),
        br#"{"identifiers":[{"type":"dns","value":"a.pkid.test"}]}"#,
    );
    assert_eq!(
        problem_type(&h.post("/acme/new-order", body).await),
        "malformed"
    );
}

/// An account created with an EAB key that carries RA policy may order only what it allows.
#[tokio::test]
async fn an_eab_key_carries_ra_policy_to_its_account() {
    use aws_lc_rs::hmac;
    let h = harness().await;
    let hmac_key = [7u8; 32];
    let sealed = h
        .kek
        .seal_pem(&hmac_key, crate::ra::binding::SEALED_AAD)
        .unwrap();
    let policy = crate::ra::BindingPolicy {
        identifiers: crate::ra::IdentifierPolicy {
            allowed_dns_suffixes: vec!["ok.test".into()],
            ..Default::default()
        },
        profiles: vec!["tls-server".into()],
    };
    h.store
        .insert_eab_key(
            "kid-1",
            &sealed,
            "default",
            "test",
            Some(&serde_json::to_string(&policy).unwrap()),
        )
        .await
        .unwrap();

    let k = key();
    let url = format!("{ORIGIN}/acme/new-account");
    let eab_protected = URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&json!({"alg":"HS256","kid":"kid-1","url":url})).unwrap());
    let eab_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&k.jwk).unwrap());
    let mac = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, &hmac_key),
        format!("{eab_protected}.{eab_payload}").as_bytes(),
    );
    let payload = json!({"externalAccountBinding": {"protected": eab_protected, "payload": eab_payload, "signature": URL_SAFE_NO_PAD.encode(mac.as_ref())}});
    let n = h.nonce().await;
    let r = h
        .post(
            "/acme/new-account",
            sign(
                &k,
                json!({"alg":"ES256","jwk":k.jwk,"nonce":n,"url":url}),
                &serde_json::to_vec(&payload).unwrap(),
            ),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let kid = r
        .headers
        .iter()
        .find(|(n, _)| n == http::header::LOCATION)
        .unwrap()
        .1
        .clone();

    let h = &h;
    let order = |body: &'static [u8]| {
        let (k, kid) = (k.clone(), kid.clone());
        async move {
            let n = h.nonce().await;
            h.post("/acme/new-order", sign(&k, json!({"alg":"ES256","kid":kid,"nonce":n,"url":format!("{ORIGIN}/acme/new-order")}), body)).await
        }
    };
    let allowed = order(br#"{"identifiers":[{"type":"dns","value":"a.ok.test"}]}"#).await;
    assert_eq!(allowed.status, StatusCode::CREATED);
    let other = order(br#"{"identifiers":[{"type":"dns","value":"a.other.test"}]}"#).await;
    assert_eq!(problem_type(&other), "rejectedIdentifier");
    let profile =
        order(br#"{"identifiers":[{"type":"dns","value":"b.ok.test"}],"profile":"short-lived"}"#)
            .await;
    assert_eq!(problem_type(&profile), "invalidProfile");

    // Pre-authorization (RFC 8555 §7.4.1) follows the binding too.
    let authz = |body: &'static [u8]| {
        let (k, kid) = (k.clone(), kid.clone());
        async move {
            let n = h.nonce().await;
            h.post("/acme/new-authz", sign(&k, json!({"alg":"ES256","kid":kid,"nonce":n,"url":format!("{ORIGIN}/acme/new-authz")}), body)).await
        }
    };
    let before = h.snapshot().await;
    let other = authz(br#"{"identifier":{"type":"dns","value":"c.other.test"}}"#).await;
    assert_eq!(problem_type(&other), "rejectedIdentifier");
    assert_eq!(h.snapshot().await, before, "nothing was written");
    let allowed = authz(br#"{"identifier":{"type":"dns","value":"c.ok.test"}}"#).await;
    assert_eq!(allowed.status, StatusCode::CREATED);
}

/// An order of `kid`'s account for `name`, made ready in the store as if its http-01 challenge
/// had been validated: (order id, authorization id).
async fn ready_order(h: &Harness, k: &Key, kid: &str, name: &str) -> (String, String) {
    let n = h.nonce().await;
    let body = format!(r#"{{"identifiers":[{{"type":"dns","value":"{name}"}}]}}"#);
    let r = h
        .post(
            "/acme/new-order",
            sign(
                k,
                json!({"alg":"ES256","kid":kid,"nonce":n,"url":format!("{ORIGIN}/acme/new-order")}),
                body.as_bytes(),
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let order: Value = serde_json::from_slice(&r.body).unwrap();
    let order_url = r
        .headers
        .iter()
        .find(|(n, _)| n == http::header::LOCATION)
        .unwrap()
        .1
        .clone();
    let order_id = order_url.rsplit('/').next().unwrap().to_string();
    let authz_id = order["authorizations"][0]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let (_, challenges) = h
        .store
        .authz_with_challenges(&authz_id)
        .await
        .unwrap()
        .unwrap();
    let now = crate::store::now();
    assert!(h.store.start_challenge(&challenges[0].id).await.unwrap());
    assert!(h
        .store
        .finish_challenge(&challenges[0].id, &authz_id, Some(now), None, now + 3600)
        .await
        .unwrap());
    (order_id, authz_id)
}

/// A CSR for `name` over `key`'s private key (PKCS#8 DER).
fn csr_of(key_der: &[u8], name: &str) -> Vec<u8> {
    let key = rcgen::KeyPair::try_from(key_der).unwrap();
    let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.serialize_request(&key).unwrap().der().to_vec()
}

/// Boulder's rule: a certificate's key is never the account's (security hardening, item 9).
#[tokio::test]
async fn a_csr_over_the_account_key_is_refused() {
    let h = harness().await;
    let (k, kid) = h.account().await;
    let (order_id, _) = ready_order(&h, &k, &kid, "same-key.test").await;
    let finalize_url = format!("{ORIGIN}/acme/order/{order_id}/finalize");
    let h = &h;
    let order_id = &order_id;
    let finalize = |csr: Vec<u8>| {
        let (k, kid, url) = (k.clone(), kid.clone(), finalize_url.clone());
        async move {
            let n = h.nonce().await;
            let payload = json!({"csr": URL_SAFE_NO_PAD.encode(csr)}).to_string();
            h.post(
                &format!("/acme/order/{order_id}/finalize"),
                sign(
                    &k,
                    json!({"alg":"ES256","kid":kid,"nonce":n,"url":url}),
                    payload.as_bytes(),
                ),
            )
            .await
        }
    };
    let before = h.snapshot().await;
    let refused = finalize(csr_of(&k.der, "same-key.test")).await;
    assert_eq!(problem_type(&refused), "badCSR");
    assert_eq!(h.snapshot().await, before, "nothing was written");
    let other = key();
    let issued = finalize(csr_of(&other.der, "same-key.test")).await;
    assert_eq!(
        issued.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&issued.body)
    );
    let order: Value = serde_json::from_slice(&issued.body).unwrap();
    assert_eq!(order["status"], "valid");
}

/// An order left `processing` by a stop is issued again only while its account is valid
/// (security hardening, item 9): recovery after the account was deactivated fails the order.
#[tokio::test]
async fn recovery_issues_again_only_for_a_valid_account() {
    for deactivate in [false, true] {
        let h = harness().await;
        let (k, kid) = h.account().await;
        let account_id = kid.rsplit('/').next().unwrap().to_string();
        let (order_id, _) = ready_order(&h, &k, &kid, "recovered.test").await;
        let csr = csr_of(&key().der, "recovered.test");
        let profile = serde_json::to_string(&h.acme.directory.profiles["tls-server"]).unwrap();
        let claim = crate::store::Claim {
            order_id: &order_id,
            profile_snapshot: &profile,
            csr: &csr,
            now: crate::store::now() - 600,
        };
        // Claimed, then the process stopped before anything was signed.
        assert!(h.store.begin_processing(&claim).await.unwrap());
        // The claim is applied before it is flushed (nobody waits on it): read it back first.
        for _ in 0..100 {
            let stale = h
                .store
                .stale_processing_orders("default", crate::store::now())
                .await
                .unwrap();
            if !stale.is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        if deactivate {
            assert!(h.store.deactivate_account(&account_id).await.unwrap());
        }
        let recovered = h
            .acme
            .ra
            .recover_stale_orders(&h.acme.directory, crate::store::now())
            .await
            .unwrap();
        assert_eq!(recovered, 1);
        let order = h.store.order(&order_id).await.unwrap().unwrap();
        if deactivate {
            assert_eq!(order.status, crate::store::OrderStatus::Invalid);
            assert!(order.error.unwrap().contains("no longer issuable"));
            assert_eq!(h.count("certificates WHERE status = 'issued'").await, 0);
        } else {
            assert_eq!(order.status, crate::store::OrderStatus::Valid);
        }
    }
}

impl Harness {
    /// Another ACME directory, `/acme/{name}`, over the same RA, store, CA and nonces.
    fn directory(&self, name: &str, eab_policy: EabPolicy) -> Arc<AcmeServer> {
        let of_default = &self.acme.directory;
        Arc::new(AcmeServer::new(
            self.acme.ra.clone(),
            Directory {
                name: name.into(),
                ca: of_default.ca.clone(),
                profiles: of_default.profiles.clone(),
                default_profile: of_default.default_profile.clone(),
                eab_policy,
                pre_authorization: true,
            },
            NonceService::new(b"k", 60, self.store.clone()),
            AcmeSettings {
                challenge_wait: std::time::Duration::ZERO,
            },
        ))
    }
}

async fn post_at(acme: &AcmeServer, path: &str, body: Vec<u8>) -> Reply {
    acme.handle(
        &Method::POST,
        path,
        &jose_headers(),
        Bytes::from(body),
        ORIGIN,
    )
    .await
}

fn header_of(r: &Reply, name: http::HeaderName) -> String {
    r.headers
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("no {name} in {:?}", r.headers))
}

/// Security hardening, item 1: an account belongs to the directory it was made in. A key
/// known on one directory asks another, which requires a binding, without one: refused, and
/// neither the account's URL under that directory's prefix nor its own works there. On a
/// directory that requires none the same key makes an account of its own, whose orders and
/// authorizations the first directory does not serve.
#[tokio::test]
async fn an_account_is_served_only_through_the_directory_it_was_made_in() {
    let h = harness().await;
    let restricted = h.directory("restricted", EabPolicy::NewAccountRequired);
    let open = h.directory("open", EabPolicy::NotRequired);
    let (k, kid) = h.account().await;
    let id = kid.rsplit('/').next().unwrap().to_string();
    let order_payload = br#"{"identifiers":[{"type":"dns","value":"iso.pkid.test"}]}"#;
    let h = &h;
    let request = |acme: Arc<AcmeServer>, path: String, key_ref: Value, payload: &'static [u8]| {
        let k = k.clone();
        async move {
            let n = h.nonce().await;
            let mut header = json!({"alg":"ES256","nonce":n,"url":format!("{ORIGIN}{path}")});
            header.as_object_mut().unwrap().extend(
                key_ref
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone())),
            );
            post_at(&acme, &path, sign(&k, header, payload)).await
        }
    };
    let jwk = json!({"jwk": k.jwk});

    let before = h.snapshot().await;
    let r = request(
        restricted.clone(),
        "/acme/restricted/new-account".into(),
        jwk.clone(),
        b"{}",
    )
    .await;
    assert_eq!(problem_type(&r), "externalAccountRequired");
    let r = request(
        restricted.clone(),
        "/acme/restricted/new-account".into(),
        jwk.clone(),
        br#"{"onlyReturnExisting":true}"#,
    )
    .await;
    assert_eq!(problem_type(&r), "accountDoesNotExist");
    for kid_there in [format!("{ORIGIN}/acme/restricted/acct/{id}"), kid.clone()] {
        let r = request(
            restricted.clone(),
            "/acme/restricted/new-order".into(),
            json!({ "kid": kid_there }),
            order_payload,
        )
        .await;
        assert_eq!(problem_type(&r), "accountDoesNotExist", "{kid_there}");
    }
    assert_eq!(h.snapshot().await, before, "nothing was written");

    // The same key on a directory that requires no binding: an account of that directory.
    let r = request(
        open.clone(),
        "/acme/open/new-account".into(),
        jwk.clone(),
        b"{}",
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let open_kid = header_of(&r, http::header::LOCATION);
    let open_id = open_kid.rsplit('/').next().unwrap().to_string();
    assert!(open_kid.starts_with(&format!("{ORIGIN}/acme/open/acct/")));
    assert_ne!(open_id, id);
    let again = request(
        open.clone(),
        "/acme/open/new-account".into(),
        jwk.clone(),
        b"{}",
    )
    .await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(header_of(&again, http::header::LOCATION), open_kid);
    let directories: Vec<String> =
        sqlx::query("SELECT directory FROM accounts WHERE id IN ($1, $2) ORDER BY directory")
            .bind(&id)
            .bind(&open_id)
            .fetch_all(h.store.pool())
            .await
            .unwrap()
            .iter()
            .map(|r| r.get("directory"))
            .collect();
    assert_eq!(directories, ["default", "open"]);

    let r = request(
        open.clone(),
        "/acme/open/new-order".into(),
        json!({ "kid": open_kid }),
        order_payload,
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let order_url = header_of(&r, http::header::LOCATION);
    let order: Value = serde_json::from_slice(&r.body).unwrap();
    let authz_url = order["authorizations"][0].as_str().unwrap().to_string();
    let path_of = |url: &str| url.trim_start_matches(ORIGIN).to_string();
    // Through its own directory, its resources answer.
    for url in [&order_url, &authz_url] {
        let r = request(open.clone(), path_of(url), json!({ "kid": open_kid }), b"").await;
        assert_eq!(r.status, StatusCode::OK, "{url}");
    }
    // Through the default one, they do not: not for the default account of the same key, and
    // not for the open account named under the default prefix.
    for url in [&order_url, &authz_url] {
        let there = path_of(url).replace("/acme/open/", "/acme/");
        let r = request(h.acme.clone(), there.clone(), json!({ "kid": kid }), b"").await;
        assert!(
            matches!(problem_type(&r).as_str(), "unauthorized" | "malformed")
                && r.status.is_client_error(),
            "{there}: {}",
            String::from_utf8_lossy(&r.body)
        );
        let disguised = format!("{ORIGIN}/acme/acct/{open_id}");
        let r = request(
            h.acme.clone(),
            there.clone(),
            json!({ "kid": disguised }),
            b"",
        )
        .await;
        assert_eq!(problem_type(&r), "accountDoesNotExist", "{there}");
    }
}

/// RFC 8555 §6.5: a nonce that checked is spent by the request that carried it, whatever is
/// refused: a signature by another key, a `url` of another resource, a `jwk` where a `kid` is
/// needed, an `alg` the key does not sign with or one refused outright, `crit`, an account that
/// does not exist.
#[tokio::test]
async fn a_refused_request_spends_its_nonce() {
    let h = harness().await;
    let (k, kid) = h.account().await;
    let stranger = key();
    let url = format!("{ORIGIN}/acme/new-order");
    let payload: &[u8] = br#"{"identifiers":[{"type":"dns","value":"n.pkid.test"}]}"#;
    // Each refusal: its name, the key that signs (none: `alg: none`, unsigned), the protected
    // header without its nonce, and the problem type it gets.
    let nobody = format!("{ORIGIN}/acme/acct/nobody");
    let other_url = format!("{ORIGIN}/acme/new-authz");
    let refusals: Vec<(&str, Option<&Key>, Value, &str)> = vec![
        (
            "signed by another key",
            Some(&stranger),
            json!({"alg":"ES256","kid":kid,"url":url}),
            "malformed",
        ),
        (
            "url of another resource",
            Some(&k),
            json!({"alg":"ES256","kid":kid,"url":other_url}),
            "unauthorized",
        ),
        (
            "a jwk where a kid is needed",
            Some(&k),
            json!({"alg":"ES256","jwk":k.jwk,"url":url}),
            "malformed",
        ),
        (
            "an alg the account key does not sign with",
            Some(&k),
            json!({"alg":"RS256","kid":kid,"url":url}),
            "badSignatureAlgorithm",
        ),
        (
            "alg none",
            None,
            json!({"alg":"none","kid":kid,"url":url}),
            "badSignatureAlgorithm",
        ),
        (
            "crit",
            Some(&k),
            json!({"alg":"ES256","kid":kid,"url":url,"crit":["exp"],"exp":1}),
            "malformed",
        ),
        (
            "an account that does not exist",
            Some(&k),
            json!({"alg":"ES256","kid":nobody,"url":url}),
            "accountDoesNotExist",
        ),
    ];
    for (name, signer, header, want) in &refusals {
        let n = h.nonce().await;
        let mut header = header.clone();
        header["nonce"] = json!(n);
        let body = match signer {
            Some(key) => sign(key, header, payload),
            None => {
                let protected = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap());
                serde_json::to_vec(
                    &json!({"protected": protected, "payload": "", "signature": "AA"}),
                )
                .unwrap()
            }
        };
        let refused = h.post("/acme/new-order", body).await;
        assert_eq!(problem_type(&refused), *want, "{name}");
        if *want == "badSignatureAlgorithm" {
            let body: Value = serde_json::from_slice(&refused.body).unwrap();
            assert_eq!(
                body["algorithms"],
                json!(crate::identity::jws::ALLOWED_ALGS),
                "{name}"
            );
        }
        let retry = h
            .post(
                "/acme/new-order",
                sign(
                    &k,
                    json!({"alg":"ES256","kid":kid,"nonce":n,"url":url}),
                    payload,
                ),
            )
            .await;
        assert_eq!(
            problem_type(&retry),
            "badNonce",
            "{name}: the nonce is spent"
        );
    }
    // A fresh nonce serves the account.
    let n = h.nonce().await;
    let fine = h
        .post(
            "/acme/new-order",
            sign(
                &k,
                json!({"alg":"ES256","kid":kid,"nonce":n,"url":url}),
                payload,
            ),
        )
        .await;
    assert_eq!(fine.status, StatusCode::CREATED);
}

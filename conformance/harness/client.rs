//! The suites' ACME client (RFC 8555): the test conveniences over the harness's ACME core
//! ([`super::acme`]) for tests that need control no real client gives: crafted requests, chosen
//! nonces, raw answers, two finalizations at once. Every helper panics on what a test did not
//! expect; the raw ones return any answer as it came.
//!
//! - accounts (§7.3), orders (§7.4), authorizations and http-01 (§7.5, §8.3) through
//!   [`Http01Responder`], POST-as-GET (§6.3), certificate download (§7.4.2)
//! - `badNonce` retried as §6.5 asks clients to; [`AcmeClient::post_with_nonce`] and
//!   [`AcmeClient::post_raw`] never retry

use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use serde_json::{json, Value};

use super::acme::{self, AccountKey, BAD_NONCE};
use super::http01::Http01Responder;
use super::tls::https_client;

/// How long a test waits for an authorization or an order to reach a wanted state.
pub const POLL_BOUND: Duration = Duration::from_secs(30);

/// The suites' names for the core's fallible key operations, panicking on failure.
pub trait TestKey {
    /// A fresh P-256 account key.
    fn generate() -> AccountKey;
    /// The flattened JWS of `payload` (already serialized; empty for POST-as-GET) under any
    /// protected header.
    fn sign(&self, protected: &Value, payload: &str) -> Value;
    /// As [`TestKey::sign`], for a payload that need not be text.
    fn sign_bytes(&self, protected: &Value, payload: &[u8]) -> Value;
}

impl TestKey for AccountKey {
    fn generate() -> AccountKey {
        AccountKey::random().unwrap_or_else(|err| panic!("account key: {err}"))
    }

    fn sign(&self, protected: &Value, payload: &str) -> Value {
        self.sign_bytes(protected, payload.as_bytes())
    }

    fn sign_bytes(&self, protected: &Value, payload: &[u8]) -> Value {
        self.sign_flattened(protected, payload)
            .unwrap_or_else(|err| panic!("sign the JWS: {err}"))
    }
}

/// One HTTP answer, read to the end.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Response {
    /// Reads the answer to `method` `url` to the end.
    async fn read(response: reqwest::Response, method: &str, url: &str) -> Response {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .unwrap_or_else(|err| panic!("read the answer to {method} {url}: {err:?}"))
            .to_vec();
        Response {
            status,
            headers,
            body,
        }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|err| panic!("response is not JSON ({err}): {}", self.describe()))
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    }

    pub fn location(&self) -> Option<String> {
        self.header("location")
    }

    /// The `type` of an `application/problem+json` body, if this is one.
    pub fn problem_type(&self) -> Option<String> {
        let body: Value = serde_json::from_slice(&self.body).ok()?;
        body.get("type")?.as_str().map(str::to_owned)
    }

    pub fn describe(&self) -> String {
        format!("status {} body {}", self.status, self.text())
    }
}

/// An order and the URL it lives at.
#[derive(Clone, Debug)]
pub struct Order {
    pub url: String,
    pub body: Value,
}

impl Order {
    pub fn finalize_url(&self) -> String {
        str_field(&self.body, "finalize")
    }

    pub fn certificate_url(&self) -> Option<String> {
        self.body["certificate"].as_str().map(str::to_owned)
    }

    pub fn authorization_urls(&self) -> Vec<String> {
        self.body["authorizations"]
            .as_array()
            .unwrap_or_else(|| panic!("order without authorizations: {}", self.body))
            .iter()
            .map(|url| url.as_str().expect("authorization URL").to_owned())
            .collect()
    }
}

fn str_field(value: &Value, field: &str) -> String {
    value[field]
        .as_str()
        .unwrap_or_else(|| panic!("no string `{field}` in {value}"))
        .to_owned()
}

pub struct AcmeClient {
    http: reqwest::Client,
    pub directory: Value,
    pub key: AccountKey,
    /// The account URL once registered; requests are then signed with `kid` instead of `jwk`.
    pub kid: Option<String>,
    nonce: Mutex<Option<String>>,
}

impl AcmeClient {
    /// Fetches the directory over HTTPS trusting `root_pem`, with a fresh account key.
    pub async fn new(directory_url: &str, root_pem: &[u8]) -> AcmeClient {
        let http = https_client(root_pem).unwrap_or_else(|err| panic!("{err}"));
        let directory = acme::directory(&http, directory_url)
            .await
            .unwrap_or_else(|err| panic!("GET {directory_url}: {err}"));
        AcmeClient {
            http,
            directory,
            key: AccountKey::generate(),
            kid: None,
            nonce: Mutex::new(None),
        }
    }

    /// A new connection pool (e.g. after the server restarted), keeping the account and key.
    pub fn reconnect(&mut self, root_pem: &[u8]) {
        self.http = https_client(root_pem).unwrap_or_else(|err| panic!("{err}"));
        *self.nonce.lock().expect("nonce cache") = None;
    }

    pub fn resource(&self, name: &str) -> String {
        str_field(&self.directory, name)
    }

    /// A fresh nonce from `newNonce` (§7.2), never one cached from an earlier response.
    pub async fn new_nonce(&self) -> String {
        let url = self.resource("newNonce");
        acme::new_nonce(&self.http, &url)
            .await
            .unwrap_or_else(|err| panic!("HEAD {url}: {err}"))
    }

    async fn nonce(&self) -> String {
        let cached = self.nonce.lock().expect("nonce cache").take();
        match cached {
            Some(nonce) => nonce,
            None => self.new_nonce().await,
        }
    }

    /// The flattened JWS for `url`: `kid` once registered, else the `jwk`.
    pub fn jws(&self, url: &str, payload: Option<&Value>, nonce: &str) -> Value {
        self.key
            .jws(url, nonce, self.kid.as_deref(), payload)
            .unwrap_or_else(|err| panic!("sign for {url}: {err}"))
    }

    /// Sends `body` as `application/jose+json` exactly as given; remembers the returned nonce.
    pub async fn post_raw(&self, url: &str, body: &Value, accept: Option<&str>) -> Response {
        let response = acme::post_jose(&self.http, url, body, accept)
            .await
            .unwrap_or_else(|err| panic!("POST {url}: {err:?}"));
        let response = Response::read(response, "POST", url).await;
        if let Some(nonce) = acme::replay_nonce(&response.headers) {
            *self.nonce.lock().expect("nonce cache") = Some(nonce);
        }
        response
    }

    /// Any request, exactly as given (method, content type, body bytes): for what no client
    /// would send. Does not touch the nonce cache.
    pub async fn send_raw(
        &self,
        method: reqwest::Method,
        url: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Response {
        let mut request = self.http.request(method.clone(), url).body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|err| panic!("{method} {url}: {err:?}"));
        Response::read(response, method.as_str(), url).await
    }

    /// One signed POST with the given nonce: no retry, whatever the answer.
    pub async fn post_with_nonce(
        &self,
        url: &str,
        payload: Option<&Value>,
        nonce: &str,
    ) -> Response {
        let jws = self.jws(url, payload, nonce);
        self.post_raw(url, &jws, None).await
    }

    /// A signed POST (`None`: POST-as-GET), retried on `badNonce` as §6.5 asks clients to.
    pub async fn post(&self, url: &str, payload: Option<&Value>) -> Response {
        self.post_accept(url, payload, None).await
    }

    async fn post_accept(
        &self,
        url: &str,
        payload: Option<&Value>,
        accept: Option<&str>,
    ) -> Response {
        let mut attempt = 0;
        loop {
            let nonce = self.nonce().await;
            let jws = self.jws(url, payload, &nonce);
            let response = self.post_raw(url, &jws, accept).await;
            let bad_nonce = response.problem_type().as_deref() == Some(BAD_NONCE);
            attempt += 1;
            if !bad_nonce || attempt == 3 {
                return response;
            }
        }
    }

    /// newAccount (§7.3); stores and returns the account URL.
    pub async fn register(&mut self) -> String {
        let url = self.resource("newAccount");
        let payload = json!({"termsOfServiceAgreed": true, "contact": ["mailto:t@pkid.test"]});
        let response = self.post(&url, Some(&payload)).await;
        assert!(
            response.status == 201 || response.status == 200,
            "newAccount: {}",
            response.describe()
        );
        let kid = response
            .location()
            .unwrap_or_else(|| panic!("newAccount without Location: {}", response.describe()));
        assert_eq!(response.json()["status"], "valid", "new account status");
        self.kid = Some(kid.clone());
        kid
    }

    /// newOrder (§7.4) for DNS identifiers.
    pub async fn new_order(&self, names: &[&str]) -> Order {
        let url = self.resource("newOrder");
        let response = self.post(&url, Some(&acme::new_order_payload(names))).await;
        assert_eq!(response.status, 201, "newOrder: {}", response.describe());
        let order_url = response
            .location()
            .unwrap_or_else(|| panic!("newOrder without Location: {}", response.describe()));
        Order {
            url: order_url,
            body: response.json(),
        }
    }

    /// POST-as-GET of a JSON resource that must answer 200.
    pub async fn fetch(&self, url: &str) -> Value {
        let response = self.post(url, None).await;
        assert_eq!(
            response.status,
            200,
            "POST-as-GET {url}: {}",
            response.describe()
        );
        response.json()
    }

    pub async fn fetch_order(&self, url: &str) -> Order {
        Order {
            url: url.to_owned(),
            body: self.fetch(url).await,
        }
    }

    /// A new order for `name` alone, with its authorization's URL and that authorization's
    /// challenge of type `kind`.
    pub async fn order_one(&self, name: &str, kind: &str) -> (Order, String, Value) {
        let order = self.new_order(&[name]).await;
        let authz_url = order.authorization_urls()[0].clone();
        let authz = self.fetch(&authz_url).await;
        let challenge = authz["challenges"]
            .as_array()
            .and_then(|all| all.iter().find(|c| c["type"] == kind))
            .unwrap_or_else(|| panic!("no {kind} challenge in {authz}"))
            .clone();
        (order, authz_url, challenge)
    }

    /// Answers the http-01 challenge of every pending authorization of `order` through
    /// `responder`, and waits until each authorization is valid.
    pub async fn authorize_http01(&self, order: &Order, responder: &Http01Responder) {
        for authz_url in order.authorization_urls() {
            let authz = self.fetch(&authz_url).await;
            if authz["status"] == "valid" {
                continue;
            }
            assert_eq!(
                authz["status"], "pending",
                "authorization {authz_url}: {authz}"
            );
            let challenge = authz["challenges"]
                .as_array()
                .and_then(|all| all.iter().find(|c| c["type"] == "http-01"))
                .unwrap_or_else(|| panic!("no http-01 challenge in {authz}"))
                .clone();
            let token = str_field(&challenge, "token");
            responder.serve(&token, &self.key.key_authorization(&token));
            let challenge_url = str_field(&challenge, "url");
            let response = self.post(&challenge_url, Some(&json!({}))).await;
            assert_eq!(
                response.status,
                200,
                "respond to {challenge_url}: {}",
                response.describe()
            );
            self.poll_until(
                &authz_url,
                &["valid"],
                &["invalid", "deactivated", "expired", "revoked"],
            )
            .await;
        }
    }

    /// POST-as-GETs `url` until its `status` is one of `wanted`; panics on one of `fatal` or when
    /// [`POLL_BOUND`] passes.
    pub async fn poll_until(&self, url: &str, wanted: &[&str], fatal: &[&str]) -> Value {
        let deadline = Instant::now() + POLL_BOUND;
        loop {
            let body = self.fetch(url).await;
            let status = body["status"].as_str().unwrap_or("");
            if wanted.contains(&status) {
                return body;
            }
            assert!(!fatal.contains(&status), "{url} became {status}: {body}");
            assert!(
                Instant::now() < deadline,
                "{url} still {status} after {POLL_BOUND:?}: {body}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Polls an order until it is `ready`.
    pub async fn wait_ready(&self, order: &Order) -> Order {
        let body = self.poll_until(&order.url, &["ready"], &["invalid"]).await;
        Order {
            url: order.url.clone(),
            body,
        }
    }

    /// Polls an order until it is `valid` (issued).
    pub async fn wait_valid(&self, order: &Order) -> Order {
        let body = self.poll_until(&order.url, &["valid"], &["invalid"]).await;
        Order {
            url: order.url.clone(),
            body,
        }
    }

    /// finalize (§7.4) with a DER CSR; the raw answer.
    pub async fn finalize(&self, order: &Order, csr_der: &[u8]) -> Response {
        self.post(
            &order.finalize_url(),
            Some(&acme::finalize_payload(csr_der)),
        )
        .await
    }

    /// Downloads a certificate chain as `application/pem-certificate-chain` (§7.4.2).
    pub async fn download_certificate(&self, url: &str) -> String {
        let response = self
            .post_accept(url, None, Some("application/pem-certificate-chain"))
            .await;
        assert_eq!(
            response.status,
            200,
            "download {url}: {}",
            response.describe()
        );
        let content_type = response.header("content-type").unwrap_or_default();
        assert!(
            content_type.starts_with("application/pem-certificate-chain"),
            "download {url}: content-type {content_type:?}"
        );
        response.text()
    }

    /// Everything from a fresh account to an order that is `ready`.
    pub async fn ready_order(&mut self, names: &[&str], responder: &Http01Responder) -> Order {
        if self.kid.is_none() {
            self.register().await;
        }
        let order = self.new_order(names).await;
        self.authorize_http01(&order, responder).await;
        self.wait_ready(&order).await
    }
}

/// A DER CSR for `names` (SANs, no subject) over a fresh P-256 key.
pub fn csr_der(names: &[&str]) -> Vec<u8> {
    acme::csr(names).unwrap_or_else(|err| panic!("{err}"))
}

//! A small ACME client (RFC 8555) for tests that need control no real client gives: crafted
//! requests, chosen nonces, two finalizations at once.
//!
//! - JWS (§6.2): ES256 over P-256, flattened JSON serialization, protected header
//!   `{alg, nonce, url, jwk | kid}`, signature as raw r‖s (RFC 7518 §3.4).
//! - JWK thumbprint (RFC 7638): SHA-256 of the canonical JSON `{"crv","kty","x","y"}`, written by
//!   hand here so the test does not share code with the server it checks.
//! - Nonces (§7.2), accounts (§7.3), orders (§7.4), authorizations and http-01 (§7.5, §8.3),
//!   POST-as-GET (§6.3), certificate download (§7.4.2).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use reqwest::header::HeaderMap;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::tls::https_client;

/// How long a test waits for an authorization or an order to reach a wanted state.
pub const POLL_BOUND: Duration = Duration::from_secs(30);

pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// An ES256 account key with its public JWK and RFC 7638 thumbprint.
pub struct AccountKey {
    pair: EcdsaKeyPair,
    rng: SystemRandom,
    pub jwk: Value,
    pub thumbprint: String,
}

impl AccountKey {
    pub fn generate() -> AccountKey {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("generate a P-256 key");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
            .expect("load the P-256 key");
        // Uncompressed SEC1 point: 0x04 ‖ x (32 bytes) ‖ y (32 bytes).
        let point = pair.public_key().as_ref().to_vec();
        assert_eq!(point.len(), 65, "uncompressed P-256 point");
        let x = b64(&point[1..33]);
        let y = b64(&point[33..65]);
        // RFC 7638 §3: required members only, lexicographic order, no whitespace.
        let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let thumbprint = b64(Sha256::digest(canonical.as_bytes()));
        AccountKey {
            pair,
            rng,
            jwk: json!({"kty": "EC", "crv": "P-256", "x": x, "y": y}),
            thumbprint,
        }
    }

    /// The flattened JWS of `payload` (already serialized; empty for POST-as-GET).
    pub fn sign(&self, protected: &Value, payload: &str) -> Value {
        self.sign_bytes(protected, payload.as_bytes())
    }

    /// As [`AccountKey::sign`], for a payload that need not be text.
    pub fn sign_bytes(&self, protected: &Value, payload: &[u8]) -> Value {
        let protected = b64(serde_json::to_vec(protected).expect("serialize the header"));
        let payload = b64(payload);
        let signing_input = format!("{protected}.{payload}");
        let signature = self
            .pair
            .sign(&self.rng, signing_input.as_bytes())
            .expect("sign the JWS");
        json!({"protected": protected, "payload": payload, "signature": b64(signature.as_ref())})
    }

    /// The http-01 key authorization for `token` (RFC 8555 §8.1).
    pub fn key_authorization(&self, token: &str) -> String {
        format!("{token}.{}", self.thumbprint)
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
        let response = http
            .get(directory_url)
            .send()
            .await
            .unwrap_or_else(|err| panic!("GET {directory_url}: {err:?}"));
        assert_eq!(response.status().as_u16(), 200, "GET {directory_url}");
        let body = response.bytes().await.expect("read the directory");
        let directory: Value = serde_json::from_slice(&body).expect("directory is JSON");
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
        let response = self
            .http
            .head(&url)
            .send()
            .await
            .unwrap_or_else(|err| panic!("HEAD {url}: {err:?}"));
        let status = response.status().as_u16();
        assert!(
            status == 200 || status == 204,
            "HEAD {url}: status {status}"
        );
        response
            .headers()
            .get("replay-nonce")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("HEAD {url}: no Replay-Nonce"))
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
        let mut protected = json!({"alg": "ES256", "nonce": nonce, "url": url});
        match &self.kid {
            Some(kid) => protected["kid"] = json!(kid),
            None => protected["jwk"] = self.key.jwk.clone(),
        }
        let payload = match payload {
            Some(payload) => serde_json::to_string(payload).expect("serialize the payload"),
            None => String::new(),
        };
        self.key.sign(&protected, &payload)
    }

    /// Sends `body` as `application/jose+json` exactly as given; remembers the returned nonce.
    pub async fn post_raw(&self, url: &str, body: &Value, accept: Option<&str>) -> Response {
        let mut request = self
            .http
            .post(url)
            .header("content-type", "application/jose+json")
            .body(serde_json::to_vec(body).expect("serialize the JWS"));
        if let Some(accept) = accept {
            request = request.header("accept", accept);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|err| panic!("POST {url}: {err:?}"));
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .unwrap_or_else(|err| panic!("read the answer to POST {url}: {err:?}"))
            .to_vec();
        if let Some(nonce) = headers.get("replay-nonce").and_then(|v| v.to_str().ok()) {
            *self.nonce.lock().expect("nonce cache") = Some(nonce.to_owned());
        }
        Response {
            status,
            headers,
            body,
        }
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
            let bad_nonce =
                response.problem_type().as_deref() == Some("urn:ietf:params:acme:error:badNonce");
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
        let identifiers: Vec<Value> = names
            .iter()
            .map(|name| json!({"type": "dns", "value": name}))
            .collect();
        let response = self
            .post(&url, Some(&json!({"identifiers": identifiers})))
            .await;
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
        self.post(&order.finalize_url(), Some(&finalize_payload(csr_der)))
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

/// The finalize payload: `{"csr": base64url(DER)}`.
pub fn finalize_payload(csr_der: &[u8]) -> Value {
    json!({"csr": b64(csr_der)})
}

/// A CSR for `names` (SANs, no subject) over a fresh P-256 key.
pub fn csr_der(names: &[&str]) -> Vec<u8> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("generate a key");
    let mut params = rcgen::CertificateParams::new(
        names
            .iter()
            .map(|name| (*name).to_owned())
            .collect::<Vec<_>>(),
    )
    .expect("CSR parameters");
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params.serialize_request(&key).expect("serialize the CSR");
    csr.der().to_vec()
}

/// A tiny HTTP/1.1 server answering `GET /.well-known/acme-challenge/<token>` with the key
/// authorization registered for the token (or, for a webroot, the file certbot wrote under
/// `<webroot>/.well-known/acme-challenge/`), 404 otherwise. Stops when dropped.
pub struct Http01Responder {
    tokens: Arc<Mutex<HashMap<String, String>>>,
    held: HeldTokens,
    task: JoinHandle<()>,
}

/// Tokens whose answer waits for a [`Gate`] to open.
type HeldTokens =
    Arc<Mutex<HashMap<String, (Arc<tokio::sync::Notify>, tokio::sync::watch::Receiver<bool>)>>>;

/// Holds the answer to one token: a validation of it stays in flight until [`Gate::open`].
pub struct Gate {
    asked: Arc<tokio::sync::Notify>,
    open: tokio::sync::watch::Sender<bool>,
}

impl Gate {
    /// Resolves once the validator has asked for the token (at once if it already has).
    pub async fn asked(&self) {
        self.asked.notified().await;
    }

    /// Lets the held answer go out.
    pub fn open(&self) {
        let _ = self.open.send(true);
    }
}

/// Where the responder finds key authorizations.
#[derive(Clone)]
enum Http01Source {
    Tokens(Arc<Mutex<HashMap<String, String>>>),
    Webroot(PathBuf),
}

impl Http01Source {
    fn key_authorization(&self, token: &str) -> Option<String> {
        match self {
            Http01Source::Tokens(tokens) => tokens.lock().expect("token map").get(token).cloned(),
            Http01Source::Webroot(root) => {
                // Tokens are base64url: no path separators, nothing to escape from the root.
                if token.is_empty()
                    || !token
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                {
                    return None;
                }
                std::fs::read_to_string(root.join(".well-known/acme-challenge").join(token)).ok()
            }
        }
    }
}

impl Http01Responder {
    pub async fn bind(port: u16) -> Http01Responder {
        let tokens = Arc::new(Mutex::new(HashMap::new()));
        Http01Responder::start(port, tokens.clone(), Http01Source::Tokens(tokens)).await
    }

    /// Serves the files a webroot client (`certbot --webroot`) writes under `webroot`.
    pub async fn webroot(port: u16, webroot: &Path) -> Http01Responder {
        let tokens = Arc::new(Mutex::new(HashMap::new()));
        Http01Responder::start(port, tokens, Http01Source::Webroot(webroot.to_owned())).await
    }

    async fn start(
        port: u16,
        tokens: Arc<Mutex<HashMap<String, String>>>,
        source: Http01Source,
    ) -> Http01Responder {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap_or_else(|err| panic!("bind the http-01 responder on 127.0.0.1:{port}: {err}"));
        let held = HeldTokens::default();
        let gates = held.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(answer_http01(stream, source.clone(), gates.clone()));
            }
        });
        Http01Responder { tokens, held, task }
    }

    /// Serves `token`, but answers only once the returned gate opens.
    pub fn serve_held(&self, token: &str, key_authorization: &str) -> Gate {
        let asked = Arc::new(tokio::sync::Notify::new());
        let (open, opened) = tokio::sync::watch::channel(false);
        self.held
            .lock()
            .expect("held tokens")
            .insert(token.to_owned(), (asked.clone(), opened));
        self.serve(token, key_authorization);
        Gate { asked, open }
    }

    pub fn serve(&self, token: &str, key_authorization: &str) {
        self.tokens
            .lock()
            .expect("token map")
            .insert(token.to_owned(), key_authorization.to_owned());
    }
}

impl Drop for Http01Responder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer_http01(mut stream: TcpStream, source: Http01Source, held: HeldTokens) {
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    let read_head = async {
        while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 8192 {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => request.extend_from_slice(&buf[..n]),
            }
        }
        true
    };
    if !matches!(
        tokio::time::timeout(Duration::from_secs(5), read_head).await,
        Ok(true)
    ) {
        return;
    }
    let head = String::from_utf8_lossy(&request);
    let path = head
        .lines()
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .unwrap_or("");
    let token = path.strip_prefix("/.well-known/acme-challenge/");
    let gate = token.and_then(|token| held.lock().expect("held tokens").get(token).cloned());
    if let Some((asked, mut opened)) = gate {
        asked.notify_one();
        // Bounded: a gate never opened answers after the validator gave up anyway.
        let _ = tokio::time::timeout(Duration::from_secs(60), opened.wait_for(|open| *open)).await;
    }
    let key_authorization = token.and_then(|token| source.key_authorization(token));
    let reply = match key_authorization {
        Some(body) => format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
        None => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned(),
    };
    let _ = stream.write_all(reply.as_bytes()).await;
    let _ = stream.shutdown().await;
}

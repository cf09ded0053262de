//! A small ACME client for load generation (RFC 8555): just the requests one http-01 issuance
//! needs, with one ES256 account key per worker, so every step can be timed on its own and every
//! failure classified by its problem type (§6.7).
//!
//! - §7.1.1 directory, §7.2 nonces (`badNonce` is retried with the fresh nonce, §6.5)
//! - §6.2 JWS: flattened serialization, `jwk` for newAccount, `kid` afterwards; §6.3 POST-as-GET
//! - §7.3 newAccount, §7.4 newOrder and finalize, §7.5 authorizations, §7.5.1 responding,
//!   §7.4.2 certificate download; §8.1 key authorizations (RFC 7638 thumbprint)

use std::fmt;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// How many times one request is re-sent after `badNonce`.
const BAD_NONCE_RETRIES: u32 = 3;

/// What went wrong, classified so that a run can count errors by kind.
#[derive(Debug)]
pub enum AcmeError {
    /// No HTTP answer: connection refused or reset, TLS, timeout of the request itself.
    Transport(String),
    /// An error answer; `kind` is the problem type without its `urn:ietf:params:acme:error:`.
    Problem {
        status: u16,
        kind: String,
        detail: String,
    },
    /// An object reached `invalid`; `kind` as for `Problem`, from the object's `error`.
    Invalid { kind: String, detail: String },
    /// An answer that does not fit RFC 8555 (missing header, unparsable body …).
    Protocol(String),
    /// A step did not finish in the time given.
    Timeout,
}

impl AcmeError {
    /// A short, stable label for counting: `transport`, `429 rateLimited`, `invalid connection` …
    pub fn kind(&self) -> String {
        match self {
            AcmeError::Transport(_) => "transport".into(),
            AcmeError::Problem { status, kind, .. } => format!("{status} {kind}"),
            AcmeError::Invalid { kind, .. } => format!("invalid {kind}"),
            AcmeError::Protocol(_) => "protocol".into(),
            AcmeError::Timeout => "timeout".into(),
        }
    }
}

impl fmt::Display for AcmeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AcmeError::Transport(m) => write!(f, "transport: {m}"),
            AcmeError::Problem {
                status,
                kind,
                detail,
            } => write!(f, "{status} {kind}: {detail}"),
            AcmeError::Invalid { kind, detail } => write!(f, "invalid ({kind}): {detail}"),
            AcmeError::Protocol(m) => write!(f, "protocol: {m}"),
            AcmeError::Timeout => write!(f, "timed out"),
        }
    }
}

impl std::error::Error for AcmeError {}

/// An RFC 7807 problem document, as far as classification needs it.
#[derive(Debug, Default, Deserialize)]
pub struct Problem {
    #[serde(rename = "type", default)]
    pub problem_type: String,
    #[serde(default)]
    pub detail: String,
}

impl Problem {
    fn short_type(&self) -> String {
        let short = self
            .problem_type
            .strip_prefix("urn:ietf:params:acme:error:")
            .unwrap_or(&self.problem_type);
        if short.is_empty() {
            "unknown".into()
        } else {
            short.into()
        }
    }

    fn into_invalid(self) -> AcmeError {
        AcmeError::Invalid {
            kind: self.short_type(),
            detail: self.detail,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Directory {
    new_nonce: String,
    new_account: String,
    new_order: String,
}

/// An order (§7.1.3) and the URL it lives at.
#[derive(Debug, Deserialize)]
pub struct Order {
    #[serde(skip)]
    pub url: String,
    pub status: String,
    #[serde(default)]
    pub authorizations: Vec<String>,
    pub finalize: String,
    pub certificate: Option<String>,
    pub error: Option<Problem>,
}

/// An authorization (§7.1.4).
#[derive(Debug, Deserialize)]
pub struct Authorization {
    pub status: String,
    #[serde(default)]
    pub challenges: Vec<Challenge>,
}

/// A challenge (§7.1.5, §8).
#[derive(Debug, Deserialize)]
pub struct Challenge {
    #[serde(rename = "type")]
    pub challenge_type: String,
    #[serde(default)]
    pub status: String,
    pub url: String,
    pub token: Option<String>,
    pub error: Option<Problem>,
}

/// One HTTP answer, read in full.
struct Answer {
    status: u16,
    location: Option<String>,
    body: bytes::Bytes,
}

/// The directory and the HTTP client every worker shares.
pub struct Client {
    http: reqwest::Client,
    directory: Directory,
}

/// One account: its key, URL (`kid`) and the nonce its next request uses. Not shared between
/// workers, so nonces never race.
pub struct Account {
    key: EcdsaKeyPair,
    jwk: Value,
    thumbprint: String,
    kid: Option<String>,
    nonce: Option<String>,
    rng: SystemRandom,
    /// Requests re-sent after `badNonce`.
    pub bad_nonce_retries: u64,
}

impl Account {
    /// A fresh P-256 key, not yet registered.
    pub fn generate() -> Result<Account, AcmeError> {
        let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .map_err(|_| AcmeError::Protocol("generating a P-256 account key".into()))?;
        let point = key.public_key().as_ref();
        // An uncompressed SEC1 point: 0x04 ‖ x ‖ y.
        if point.len() != 65 || point[0] != 4 {
            return Err(AcmeError::Protocol(
                "unexpected P-256 public key encoding".into(),
            ));
        }
        let x = URL_SAFE_NO_PAD.encode(&point[1..33]);
        let y = URL_SAFE_NO_PAD.encode(&point[33..65]);
        // RFC 7638: the required members, lexicographic order, no whitespace.
        let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let thumbprint = URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()));
        Ok(Account {
            key,
            jwk: json!({"crv": "P-256", "kty": "EC", "x": x, "y": y}),
            thumbprint,
            kid: None,
            nonce: None,
            rng: SystemRandom::new(),
            bad_nonce_retries: 0,
        })
    }

    /// The http-01 key authorization for `token` (§8.1).
    pub fn key_authorization(&self, token: &str) -> String {
        format!("{token}.{}", self.thumbprint)
    }

    /// A flattened JWS (§6.2) of `payload` (`None`: POST-as-GET's empty payload) for `url`.
    fn sign(&self, url: &str, nonce: &str, payload: Option<&Value>) -> Result<Value, AcmeError> {
        let mut protected = json!({"alg": "ES256", "nonce": nonce, "url": url});
        match &self.kid {
            Some(kid) => protected["kid"] = json!(kid),
            None => protected["jwk"] = self.jwk.clone(),
        }
        let protected = URL_SAFE_NO_PAD.encode(protected.to_string());
        let payload = match payload {
            Some(value) => URL_SAFE_NO_PAD.encode(value.to_string()),
            None => String::new(),
        };
        let signing_input = format!("{protected}.{payload}");
        let signature = self
            .key
            .sign(&self.rng, signing_input.as_bytes())
            .map_err(|_| AcmeError::Protocol("signing a JWS".into()))?;
        Ok(json!({
            "protected": protected,
            "payload": payload,
            "signature": URL_SAFE_NO_PAD.encode(signature.as_ref()),
        }))
    }
}

fn transport(context: &str, error: &reqwest::Error) -> AcmeError {
    let mut message = format!("{context}: {error}");
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    AcmeError::Transport(message)
}

fn parse<T: for<'de> Deserialize<'de>>(what: &str, body: &[u8]) -> Result<T, AcmeError> {
    serde_json::from_slice(body)
        .map_err(|e| AcmeError::Protocol(format!("{what}: unparsable answer: {e}")))
}

impl Client {
    /// Fetches the directory at `directory_url` through `http`.
    pub async fn connect(http: reqwest::Client, directory_url: &str) -> Result<Client, AcmeError> {
        let response = http
            .get(directory_url)
            .send()
            .await
            .map_err(|e| transport(directory_url, &e))?;
        let status = response.status().as_u16();
        let body = response
            .bytes()
            .await
            .map_err(|e| transport(directory_url, &e))?;
        if status != 200 {
            return Err(AcmeError::Protocol(format!(
                "{directory_url} answered {status}"
            )));
        }
        let directory = parse("directory", &body)?;
        Ok(Client { http, directory })
    }

    async fn fresh_nonce(&self) -> Result<String, AcmeError> {
        let url = &self.directory.new_nonce;
        let response = self
            .http
            .head(url)
            .send()
            .await
            .map_err(|e| transport("newNonce", &e))?;
        replay_nonce(&response)
            .ok_or_else(|| AcmeError::Protocol("newNonce answered without Replay-Nonce".into()))
    }

    /// POSTs a JWS of `payload` to `url`; re-sends after `badNonce`; an error status becomes
    /// [`AcmeError::Problem`].
    async fn post(
        &self,
        account: &mut Account,
        url: &str,
        payload: Option<&Value>,
    ) -> Result<Answer, AcmeError> {
        let mut attempt = 0;
        loop {
            let nonce = match account.nonce.take() {
                Some(nonce) => nonce,
                None => self.fresh_nonce().await?,
            };
            let body = account.sign(url, &nonce, payload)?;
            let response = self
                .http
                .post(url)
                .header(http::header::CONTENT_TYPE, "application/jose+json")
                .body(body.to_string())
                .send()
                .await
                .map_err(|e| transport(url, &e))?;
            account.nonce = replay_nonce(&response);
            let status = response.status().as_u16();
            let location = response
                .headers()
                .get(http::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = response.bytes().await.map_err(|e| transport(url, &e))?;
            if status < 400 {
                return Ok(Answer {
                    status,
                    location,
                    body,
                });
            }
            let problem: Problem = serde_json::from_slice(&body).unwrap_or_default();
            let kind = problem.short_type();
            if kind == "badNonce" && attempt < BAD_NONCE_RETRIES {
                attempt += 1;
                account.bad_nonce_retries += 1;
                continue;
            }
            return Err(AcmeError::Problem {
                status,
                kind,
                detail: problem.detail,
            });
        }
    }

    /// Registers `account` (§7.3) and keeps its URL as `kid`.
    pub async fn new_account(&self, account: &mut Account) -> Result<(), AcmeError> {
        let url = self.directory.new_account.clone();
        let payload = json!({"termsOfServiceAgreed": true, "contact": []});
        let answer = self.post(account, &url, Some(&payload)).await?;
        let kid = answer
            .location
            .ok_or_else(|| AcmeError::Protocol("newAccount answered without Location".into()))?;
        account.kid = Some(kid);
        Ok(())
    }

    /// newOrder for one DNS name (§7.4).
    pub async fn new_order(&self, account: &mut Account, name: &str) -> Result<Order, AcmeError> {
        let url = self.directory.new_order.clone();
        let payload = json!({"identifiers": [{"type": "dns", "value": name}]});
        let answer = self.post(account, &url, Some(&payload)).await?;
        if answer.status != 201 {
            return Err(AcmeError::Protocol(format!(
                "newOrder answered {} instead of 201",
                answer.status
            )));
        }
        let mut order: Order = parse("newOrder", &answer.body)?;
        order.url = answer
            .location
            .ok_or_else(|| AcmeError::Protocol("newOrder answered without Location".into()))?;
        Ok(order)
    }

    /// POST-as-GET of an order (§7.4); an `invalid` order becomes [`AcmeError::Invalid`].
    pub async fn order(&self, account: &mut Account, url: &str) -> Result<Order, AcmeError> {
        let answer = self.post(account, url, None).await?;
        let mut order: Order = parse("order", &answer.body)?;
        order.url = url.to_owned();
        invalid_order(order)
    }

    /// POST-as-GET of an authorization (§7.5).
    pub async fn authorization(
        &self,
        account: &mut Account,
        url: &str,
    ) -> Result<Authorization, AcmeError> {
        let answer = self.post(account, url, None).await?;
        parse("authorization", &answer.body)
    }

    /// Tells the server to validate a challenge (§7.5.1); returns the challenge as the answer
    /// shows it (a server may answer once the validation is over).
    pub async fn respond(&self, account: &mut Account, url: &str) -> Result<Challenge, AcmeError> {
        let answer = self.post(account, url, Some(&json!({}))).await?;
        parse("challenge", &answer.body)
    }

    /// Finalizes an order with a CSR (§7.4); returns the order as the answer shows it.
    pub async fn finalize(
        &self,
        account: &mut Account,
        order: &Order,
        csr_der: &[u8],
    ) -> Result<Order, AcmeError> {
        let payload = json!({"csr": URL_SAFE_NO_PAD.encode(csr_der)});
        let answer = self.post(account, &order.finalize, Some(&payload)).await?;
        let mut finalized: Order = parse("finalize", &answer.body)?;
        finalized.url = order.url.clone();
        invalid_order(finalized)
    }

    /// Downloads the PEM chain (§7.4.2).
    pub async fn certificate(&self, account: &mut Account, url: &str) -> Result<String, AcmeError> {
        let answer = self.post(account, url, None).await?;
        let pem = String::from_utf8(answer.body.to_vec())
            .map_err(|_| AcmeError::Protocol("certificate: not UTF-8".into()))?;
        if !pem.contains("-----BEGIN CERTIFICATE-----") {
            return Err(AcmeError::Protocol(
                "certificate: no CERTIFICATE block".into(),
            ));
        }
        Ok(pem)
    }
}

fn invalid_order(order: Order) -> Result<Order, AcmeError> {
    if order.status == "invalid" {
        return Err(order.error.unwrap_or_default().into_invalid());
    }
    Ok(order)
}

/// The error an `invalid` authorization carries: its failed challenge's, if any.
pub fn authorization_error(authz: Authorization) -> AcmeError {
    authz
        .challenges
        .into_iter()
        .find_map(|c| c.error)
        .unwrap_or_default()
        .into_invalid()
}

fn replay_nonce(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get("replay-nonce")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

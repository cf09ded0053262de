//! The load generator's client (pkid-loadgen), over the core in [`super`]: just the requests one
//! http-01 issuance needs, with one account per worker, so every step can be timed on its own and
//! every failure classified by its problem type (§6.7).
//!
//! - §7.1.1 directory, §7.2 nonces (`badNonce` is retried with the fresh nonce, §6.5)
//! - §7.3 newAccount, §7.4 newOrder and finalize, §7.5 authorizations, §7.5.1 responding,
//!   §7.4.2 certificate download

use serde::Deserialize;
use serde_json::{json, Value};

use super::{AccountKey, AcmeError, Problem};

/// How many times one request is re-sent after `badNonce`.
const BAD_NONCE_RETRIES: u32 = 3;

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
    key: AccountKey,
    kid: Option<String>,
    nonce: Option<String>,
    /// Requests re-sent after `badNonce`.
    pub bad_nonce_retries: u64,
}

impl Account {
    /// A fresh P-256 key, not yet registered.
    pub fn generate() -> Result<Account, AcmeError> {
        Ok(Account {
            key: AccountKey::random()?,
            kid: None,
            nonce: None,
            bad_nonce_retries: 0,
        })
    }

    /// The http-01 key authorization for `token` (§8.1).
    pub fn key_authorization(&self, token: &str) -> String {
        self.key.key_authorization(token)
    }
}

fn parse<T: for<'de> Deserialize<'de>>(what: &str, body: &[u8]) -> Result<T, AcmeError> {
    serde_json::from_slice(body)
        .map_err(|e| AcmeError::Protocol(format!("{what}: unparsable answer: {e}")))
}

impl Client {
    /// Fetches the directory at `directory_url` through `http`.
    pub async fn connect(http: reqwest::Client, directory_url: &str) -> Result<Client, AcmeError> {
        let document = super::directory(&http, directory_url).await?;
        let directory = serde_json::from_value(document)
            .map_err(|e| AcmeError::Protocol(format!("directory: unparsable answer: {e}")))?;
        Ok(Client { http, directory })
    }

    async fn fresh_nonce(&self) -> Result<String, AcmeError> {
        super::new_nonce(&self.http, &self.directory.new_nonce).await
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
            let body = account
                .key
                .jws(url, &nonce, account.kid.as_deref(), payload)?;
            let response = super::post_jose(&self.http, url, &body, None)
                .await
                .map_err(|e| super::transport(url, &e))?;
            account.nonce = super::replay_nonce(response.headers());
            let status = response.status().as_u16();
            let location = response
                .headers()
                .get(http::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = response
                .bytes()
                .await
                .map_err(|e| super::transport(url, &e))?;
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
        let payload = super::new_order_payload(&[name]);
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
        let payload = super::finalize_payload(csr_der);
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

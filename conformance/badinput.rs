//! A table of requests that break RFC 8555 (§6.2 JWS, §6.3 POST-as-GET, §6.4 url, §6.5 nonces,
//! §7.3 accounts, §7.4 orders and finalize, §7.6 revocation) or pkid's limits, sent over HTTPS
//! to a real pkid. Each row states the status and problem type (§6.7) it must get; every
//! answer must be `application/problem+json`, carry a fresh `Replay-Nonce` (§6.5) and leave the
//! database as it was: the same rows, in the same states, in accounts, orders, authorizations,
//! challenges and certificates (read from pkid's SQLite file, read-only, after every row).
//!
//! What some rows need (a pending order, a ready order, an issued and a revoked certificate) is
//! set up first; the snapshot is taken after that.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use sqlx::Row;

use crate::harness::acme::{b64, AccountKey};
use crate::harness::certs::{check_issued, openssl, pem_chain};
use crate::harness::client::{csr_der, AcmeClient, Order, Response, TestKey};
use crate::harness::environment::{within, Environment};
use crate::harness::http01::Http01Responder;
use crate::harness::process::require_tool;

const TEST_BOUND: Duration = Duration::from_secs(120);

/// Every row of the table: what is wrong with the request.
#[derive(Clone, Copy, Debug)]
enum Case {
    WrongContentType,
    BodyOver64KiB,
    BodyNotJson,
    GeneralSerialization,
    UnprotectedHeader,
    AlgNone,
    AlgHs256,
    AlgEs512WithP256Key,
    BothJwkAndKid,
    NeitherJwkNorKid,
    MissingNonce,
    ForgedNonce,
    ReplayedNonce,
    UrlMismatch,
    UrlMissing,
    UnknownKid,
    KidOnNewAccount,
    JwkOnNewOrder,
    PrivateKeyInJwk,
    Rsa1024Jwk,
    BadSignature,
    PayloadNotJson,
    EmptyIdentifiers,
    UnsupportedIdentifierType,
    InvalidDnsName,
    WildcardOfWildcard,
    PostAsGetOnNewOrder,
    FinalizeNotReadyOrder,
    FinalizeCsrForOtherNames,
    FinalizeCsrRsa1024,
    FinalizeCsrNotBase64url,
    RevokeReason7,
    RevokeAlreadyRevoked,
    RevokeByUnrelatedKey,
    GetOnPostResource,
    UnknownProfile,
    ContactNotMailto,
    ContactMailtoWithoutAddress,
    OnlyReturnExistingUnknownKey,
    OtherAccountsOrder,
    UnknownResource,
}

impl Case {
    /// The status and problem type (after `urn:ietf:params:acme:error:`) the request must get.
    fn expected(self) -> (u16, &'static str) {
        use Case::*;
        match self {
            // §6.2: "application/jose+json"; pkid's body limit (server.max_body_bytes).
            WrongContentType => (415, "malformed"),
            BodyOver64KiB => (413, "malformed"),
            // §6.2: flattened JSON serialization only, no unprotected header.
            BodyNotJson | GeneralSerialization | UnprotectedHeader => (400, "malformed"),
            // §6.2: "badSignatureAlgorithm" for an alg the server does not accept (none, MAC).
            AlgNone | AlgHs256 | AlgEs512WithP256Key => (400, "badSignatureAlgorithm"),
            // §6.2: exactly one of jwk and kid.
            BothJwkAndKid | NeitherJwkNorKid => (400, "malformed"),
            // §6.5.
            MissingNonce | ForgedNonce | ReplayedNonce => (400, "badNonce"),
            // §6.4: a mismatched url is "unauthorized"; a missing one is malformed.
            UrlMismatch => (403, "unauthorized"),
            UrlMissing => (400, "malformed"),
            // §6.2, §7.3.1.
            UnknownKid | OnlyReturnExistingUnknownKey => (400, "accountDoesNotExist"),
            // §6.2: newAccount and revokeCert-by-key take jwk, everything else kid.
            KidOnNewAccount | JwkOnNewOrder => (400, "malformed"),
            PrivateKeyInJwk => (400, "badPublicKey"),
            Rsa1024Jwk => (400, "badPublicKey"),
            BadSignature => (400, "malformed"),
            PayloadNotJson | EmptyIdentifiers | PostAsGetOnNewOrder => (400, "malformed"),
            UnsupportedIdentifierType => (400, "unsupportedIdentifier"),
            InvalidDnsName | WildcardOfWildcard => (400, "rejectedIdentifier"),
            // §7.4.
            FinalizeNotReadyOrder => (403, "orderNotReady"),
            FinalizeCsrForOtherNames | FinalizeCsrNotBase64url => (400, "badCSR"),
            FinalizeCsrRsa1024 => (400, "badPublicKey"),
            // §7.6.
            RevokeReason7 => (400, "badRevocationReason"),
            RevokeAlreadyRevoked => (400, "alreadyRevoked"),
            RevokeByUnrelatedKey => (403, "unauthorized"),
            // §6.3: resources other than the directory and newNonce are POST-only.
            GetOnPostResource => (405, "malformed"),
            // Profiles draft §4.
            UnknownProfile => (400, "invalidProfile"),
            // §7.3.
            ContactNotMailto => (400, "unsupportedContact"),
            ContactMailtoWithoutAddress => (400, "invalidContact"),
            // §7.4 ("the server MUST return an error ... to a request ... for a resource it does
            // not own"): Boulder and pebble answer unauthorized.
            OtherAccountsOrder => (403, "unauthorized"),
            UnknownResource => (404, "malformed"),
        }
    }

    const ALL: [Case; 41] = {
        use Case::*;
        [
            WrongContentType,
            BodyOver64KiB,
            BodyNotJson,
            GeneralSerialization,
            UnprotectedHeader,
            AlgNone,
            AlgHs256,
            AlgEs512WithP256Key,
            BothJwkAndKid,
            NeitherJwkNorKid,
            MissingNonce,
            ForgedNonce,
            ReplayedNonce,
            UrlMismatch,
            UrlMissing,
            UnknownKid,
            KidOnNewAccount,
            JwkOnNewOrder,
            PrivateKeyInJwk,
            Rsa1024Jwk,
            BadSignature,
            PayloadNotJson,
            EmptyIdentifiers,
            UnsupportedIdentifierType,
            InvalidDnsName,
            WildcardOfWildcard,
            PostAsGetOnNewOrder,
            FinalizeNotReadyOrder,
            FinalizeCsrForOtherNames,
            FinalizeCsrRsa1024,
            FinalizeCsrNotBase64url,
            RevokeReason7,
            RevokeAlreadyRevoked,
            RevokeByUnrelatedKey,
            GetOnPostResource,
            UnknownProfile,
            ContactNotMailto,
            ContactMailtoWithoutAddress,
            OnlyReturnExistingUnknownKey,
            OtherAccountsOrder,
            UnknownResource,
        ]
    };
}

/// A request as it goes on the wire.
struct Request {
    method: Method,
    url: String,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    /// The nonce the request carries, if any: the answer's must differ.
    nonce: Option<String>,
}

impl Request {
    fn jose(url: &str, jws: &Value, nonce: Option<String>) -> Request {
        Request {
            method: Method::POST,
            url: url.to_owned(),
            content_type: Some("application/jose+json"),
            body: serde_json::to_vec(jws).expect("serialize the JWS"),
            nonce,
        }
    }
}

/// An RSA key held by openssl (aws-lc-rs refuses to make one under 2048 bits): signs RS256.
struct OpensslRsa {
    key: PathBuf,
    jwk: Value,
    work: PathBuf,
}

impl OpensslRsa {
    fn generate(bits: u32, work: &Path) -> OpensslRsa {
        let key = work.join(format!("rsa{bits}.pem"));
        let (ok, text) = openssl(&[
            "genpkey".as_ref(),
            "-algorithm".as_ref(),
            "RSA".as_ref(),
            "-pkeyopt".as_ref(),
            format!("rsa_keygen_bits:{bits}").as_ref(),
            "-out".as_ref(),
            key.as_os_str(),
        ]);
        assert!(ok, "openssl genpkey RSA {bits}:\n{text}");
        let (ok, text) = openssl(&[
            "rsa".as_ref(),
            "-in".as_ref(),
            key.as_os_str(),
            "-noout".as_ref(),
            "-modulus".as_ref(),
        ]);
        let modulus = text
            .trim()
            .strip_prefix("Modulus=")
            .filter(|_| ok)
            .unwrap_or_else(|| panic!("openssl rsa -modulus:\n{text}"));
        let n = hex::decode(modulus).expect("hex modulus");
        OpensslRsa {
            key,
            // e = 65537, openssl's default.
            jwk: json!({"kty": "RSA", "n": b64(n), "e": "AQAB"}),
            work: work.to_owned(),
        }
    }

    fn sign(&self, protected: &Value, payload: &str) -> Value {
        let protected = b64(serde_json::to_vec(protected).expect("serialize the header"));
        let payload = b64(payload.as_bytes());
        let input = self.work.join("signing-input");
        let signature = self.work.join("signature");
        std::fs::write(&input, format!("{protected}.{payload}")).expect("write the signing input");
        let (ok, text) = openssl(&[
            "dgst".as_ref(),
            "-sha256".as_ref(),
            "-sign".as_ref(),
            self.key.as_os_str(),
            "-out".as_ref(),
            signature.as_os_str(),
            input.as_os_str(),
        ]);
        assert!(ok, "openssl dgst -sign:\n{text}");
        let signature = std::fs::read(&signature).expect("read the signature");
        json!({"protected": protected, "payload": payload, "signature": b64(signature)})
    }

    /// A DER CSR for `names` over this key (CN = the first name, names in the SAN).
    fn csr_der(&self, names: &[&str]) -> Vec<u8> {
        let csr = self.work.join("rsa.csr.der");
        let san: Vec<String> = names.iter().map(|name| format!("DNS:{name}")).collect();
        let output = Command::new("openssl")
            .args(["req", "-new", "-key"])
            .arg(&self.key)
            .args(["-subj", &format!("/CN={}", names[0])])
            .args(["-addext", &format!("subjectAltName={}", san.join(","))])
            .args(["-outform", "DER", "-out"])
            .arg(&csr)
            .output()
            .expect("run openssl req");
        assert!(
            output.status.success(),
            "openssl req: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        std::fs::read(&csr).expect("read the CSR")
    }
}

/// What the rows act on, made before the snapshot.
struct Setup {
    client: AcmeClient,
    account_url: String,
    /// An order of another account.
    stranger_order: Order,
    pending_order: Order,
    ready_order: Order,
    ready_names: Vec<&'static str>,
    revoked_cert: Vec<u8>,
    live_cert: Vec<u8>,
    rsa1024: OpensslRsa,
}

impl Setup {
    async fn nonce(&self) -> String {
        self.client.new_nonce().await
    }

    /// The usual protected header of account A for `url`.
    fn kid_header(&self, url: &str, nonce: &str) -> Value {
        json!({"alg": "ES256", "nonce": nonce, "url": url, "kid": self.account_url})
    }

    /// A kid-signed request with `header` adjusted by `edit`.
    async fn signed(&self, url: &str, payload: &str, edit: impl FnOnce(&mut Value)) -> Request {
        let nonce = self.nonce().await;
        let mut header = self.kid_header(url, &nonce);
        edit(&mut header);
        let jws = self.client.key.sign(&header, payload);
        Request::jose(url, &jws, Some(nonce))
    }

    fn new_order_url(&self) -> String {
        self.client.resource("newOrder")
    }

    async fn new_order(&self, payload: Value) -> Request {
        self.signed(&self.new_order_url(), &payload.to_string(), |_| {})
            .await
    }

    async fn new_account_with(&self, key: &AccountKey, payload: Value) -> Request {
        let url = self.client.resource("newAccount");
        let nonce = self.nonce().await;
        let header = json!({"alg": "ES256", "nonce": nonce, "url": url, "jwk": key.jwk});
        Request::jose(&url, &key.sign(&header, &payload.to_string()), Some(nonce))
    }

    async fn revoke(&self, cert: &[u8], reason: Option<u8>) -> Request {
        let mut payload = json!({"certificate": b64(cert)});
        if let Some(reason) = reason {
            payload["reason"] = json!(reason);
        }
        self.signed(
            &self.client.resource("revokeCert"),
            &payload.to_string(),
            |_| {},
        )
        .await
    }

    async fn finalize(&self, order: &Order, payload: Value) -> Request {
        self.signed(&order.finalize_url(), &payload.to_string(), |_| {})
            .await
    }

    async fn request(&self, case: Case) -> Request {
        use Case::*;
        let order_payload = json!({"identifiers": [{"type": "dns", "value": "x.pkid.test"}]});
        match case {
            WrongContentType => {
                let mut request = self.new_order(order_payload).await;
                request.content_type = Some("application/json");
                request
            }
            BodyOver64KiB => {
                let padding = "a".repeat(70 * 1024);
                let payload = json!({"identifiers": [{"type": "dns", "value": "x.pkid.test"}], "padding": padding});
                self.new_order(payload).await
            }
            BodyNotJson => {
                let mut request = self.new_order(order_payload).await;
                request.body = b"this is not JSON".to_vec();
                request
            }
            GeneralSerialization => {
                let mut request = self.new_order(order_payload).await;
                let flat: Value = serde_json::from_slice(&request.body).expect("JWS");
                let general = json!({
                    "payload": flat["payload"],
                    "signatures": [{"protected": flat["protected"], "signature": flat["signature"]}],
                });
                request.body = serde_json::to_vec(&general).expect("serialize");
                request
            }
            UnprotectedHeader => {
                let mut request = self.new_order(order_payload).await;
                let mut jws: Value = serde_json::from_slice(&request.body).expect("JWS");
                jws["header"] = json!({"alg": "ES256"});
                request.body = serde_json::to_vec(&jws).expect("serialize");
                request
            }
            AlgNone => {
                let url = self.new_order_url();
                let nonce = self.nonce().await;
                let mut header = self.kid_header(&url, &nonce);
                header["alg"] = json!("none");
                let jws = json!({
                    "protected": b64(header.to_string()),
                    "payload": b64(order_payload.to_string()),
                    "signature": "",
                });
                Request::jose(&url, &jws, Some(nonce))
            }
            AlgHs256 => {
                self.signed(&self.new_order_url(), &order_payload.to_string(), |h| {
                    h["alg"] = json!("HS256")
                })
                .await
            }
            AlgEs512WithP256Key => {
                self.signed(&self.new_order_url(), &order_payload.to_string(), |h| {
                    h["alg"] = json!("ES512")
                })
                .await
            }
            BothJwkAndKid => {
                let jwk = self.client.key.jwk.clone();
                self.signed(&self.new_order_url(), &order_payload.to_string(), |h| {
                    h["jwk"] = jwk
                })
                .await
            }
            NeitherJwkNorKid => {
                self.signed(&self.new_order_url(), &order_payload.to_string(), |h| {
                    h.as_object_mut().expect("header").remove("kid");
                })
                .await
            }
            MissingNonce => {
                let mut request = self
                    .signed(&self.new_order_url(), &order_payload.to_string(), |h| {
                        h.as_object_mut().expect("header").remove("nonce");
                    })
                    .await;
                request.nonce = None;
                request
            }
            ForgedNonce => {
                let forged = b64([7u8; 16]);
                let mut request = self
                    .signed(&self.new_order_url(), &order_payload.to_string(), |h| {
                        h["nonce"] = json!(forged)
                    })
                    .await;
                request.nonce = Some(forged);
                request
            }
            ReplayedNonce => {
                // Spend a nonce on a harmless POST-as-GET of the account, then send it again.
                let nonce = self.nonce().await;
                let spent = self
                    .client
                    .post_with_nonce(&self.account_url, None, &nonce)
                    .await;
                assert_eq!(
                    spent.status,
                    200,
                    "POST-as-GET account: {}",
                    spent.describe()
                );
                let url = self.new_order_url();
                let header = self.kid_header(&url, &nonce);
                let jws = self.client.key.sign(&header, &order_payload.to_string());
                Request::jose(&url, &jws, Some(nonce))
            }
            UrlMismatch => {
                let other = self.client.resource("newAccount");
                self.signed(&self.new_order_url(), &order_payload.to_string(), |h| {
                    h["url"] = json!(other)
                })
                .await
            }
            UrlMissing => {
                self.signed(&self.new_order_url(), &order_payload.to_string(), |h| {
                    h.as_object_mut().expect("header").remove("url");
                })
                .await
            }
            UnknownKid => {
                let (base, _) = self.account_url.rsplit_once('/').expect("account URL");
                let unknown = format!("{base}/no-such-account");
                self.signed(&self.new_order_url(), &order_payload.to_string(), |h| {
                    h["kid"] = json!(unknown)
                })
                .await
            }
            KidOnNewAccount => {
                self.signed(
                    &self.client.resource("newAccount"),
                    &json!({"termsOfServiceAgreed": true}).to_string(),
                    |_| {},
                )
                .await
            }
            JwkOnNewOrder => {
                let jwk = self.client.key.jwk.clone();
                self.signed(&self.new_order_url(), &order_payload.to_string(), |h| {
                    h.as_object_mut().expect("header").remove("kid");
                    h["jwk"] = jwk;
                })
                .await
            }
            PrivateKeyInJwk => {
                let key = AccountKey::generate();
                let url = self.client.resource("newAccount");
                let nonce = self.nonce().await;
                let mut jwk = key.jwk.clone();
                // Any "d" member marks a private key; its value does not matter.
                jwk["d"] = json!(b64([1u8; 32]));
                let header = json!({"alg": "ES256", "nonce": nonce, "url": url, "jwk": jwk});
                let jws = key.sign(&header, &json!({"termsOfServiceAgreed": true}).to_string());
                Request::jose(&url, &jws, Some(nonce))
            }
            Rsa1024Jwk => {
                let url = self.client.resource("newAccount");
                let nonce = self.nonce().await;
                let header =
                    json!({"alg": "RS256", "nonce": nonce, "url": url, "jwk": self.rsa1024.jwk});
                let jws = self
                    .rsa1024
                    .sign(&header, &json!({"termsOfServiceAgreed": true}).to_string());
                Request::jose(&url, &jws, Some(nonce))
            }
            BadSignature => {
                let mut request = self.new_order(order_payload).await;
                let mut jws: Value = serde_json::from_slice(&request.body).expect("JWS");
                let mut signature = base64::Engine::decode(
                    &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                    jws["signature"].as_str().expect("signature"),
                )
                .expect("base64url signature");
                signature[10] ^= 0x55;
                jws["signature"] = json!(b64(signature));
                request.body = serde_json::to_vec(&jws).expect("serialize");
                request
            }
            PayloadNotJson => self.signed(&self.new_order_url(), "not JSON", |_| {}).await,
            EmptyIdentifiers => self.new_order(json!({"identifiers": []})).await,
            UnsupportedIdentifierType => {
                self.new_order(json!({"identifiers": [{"type": "email", "value": "a@pkid.test"}]}))
                    .await
            }
            InvalidDnsName => {
                self.new_order(
                    json!({"identifiers": [{"type": "dns", "value": "bad_name..pkid.test"}]}),
                )
                .await
            }
            WildcardOfWildcard => {
                self.new_order(json!({"identifiers": [{"type": "dns", "value": "*.*.pkid.test"}]}))
                    .await
            }
            PostAsGetOnNewOrder => self.signed(&self.new_order_url(), "", |_| {}).await,
            FinalizeNotReadyOrder => {
                let csr = csr_der(&["pending.pkid.test"]);
                self.finalize(&self.pending_order, json!({"csr": b64(csr)}))
                    .await
            }
            FinalizeCsrForOtherNames => {
                let csr = csr_der(&["someone-else.pkid.test"]);
                self.finalize(&self.ready_order, json!({"csr": b64(csr)}))
                    .await
            }
            FinalizeCsrRsa1024 => {
                let csr = self.rsa1024.csr_der(&self.ready_names);
                self.finalize(&self.ready_order, json!({"csr": b64(csr)}))
                    .await
            }
            FinalizeCsrNotBase64url => {
                self.finalize(&self.ready_order, json!({"csr": "not base64url!"}))
                    .await
            }
            RevokeReason7 => self.revoke(&self.live_cert, Some(7)).await,
            RevokeAlreadyRevoked => self.revoke(&self.revoked_cert, None).await,
            RevokeByUnrelatedKey => {
                // A key that is neither this certificate's nor an account's that holds it.
                let key = AccountKey::generate();
                let url = self.client.resource("revokeCert");
                let nonce = self.nonce().await;
                let header = json!({"alg": "ES256", "nonce": nonce, "url": url, "jwk": key.jwk});
                let payload = json!({"certificate": b64(&self.live_cert)});
                Request::jose(&url, &key.sign(&header, &payload.to_string()), Some(nonce))
            }
            GetOnPostResource => Request {
                method: Method::GET,
                url: self.ready_order.url.clone(),
                content_type: None,
                body: Vec::new(),
                nonce: None,
            },
            UnknownProfile => {
                let mut payload = order_payload;
                payload["profile"] = json!("no-such-profile");
                self.new_order(payload).await
            }
            ContactNotMailto => {
                let payload =
                    json!({"termsOfServiceAgreed": true, "contact": ["tel:+15555550100"]});
                self.new_account_with(&AccountKey::generate(), payload)
                    .await
            }
            ContactMailtoWithoutAddress => {
                let payload = json!({"termsOfServiceAgreed": true, "contact": ["mailto:"]});
                self.new_account_with(&AccountKey::generate(), payload)
                    .await
            }
            OnlyReturnExistingUnknownKey => {
                let payload = json!({"onlyReturnExisting": true});
                self.new_account_with(&AccountKey::generate(), payload)
                    .await
            }
            OtherAccountsOrder => self.signed(&self.stranger_order.url, "", |_| {}).await,
            UnknownResource => {
                let url = self
                    .new_order_url()
                    .replace("new-order", "no-such-resource");
                self.signed(&url, "", |_| {}).await
            }
        }
    }
}

/// pkid's SQLite file, opened read-only beside the running server.
pub(crate) async fn open_read_only(path: &Path) -> SqlitePool {
    SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(SqliteConnectOptions::new().filename(path).read_only(true))
        .await
        .unwrap_or_else(|err| panic!("open {} read-only: {err}", path.display()))
}

/// Rows per table and status, plus revoked certificates: what a bad request must not change.
pub(crate) async fn snapshot(db: &SqlitePool) -> BTreeMap<String, i64> {
    let mut counts = BTreeMap::new();
    for table in [
        "accounts",
        "orders",
        "authorizations",
        "challenges",
        "certificates",
    ] {
        let rows = sqlx::query(&format!(
            "SELECT status, COUNT(*) AS n FROM {table} GROUP BY status"
        ))
        .fetch_all(db)
        .await
        .unwrap_or_else(|err| panic!("count {table}: {err}"));
        for row in rows {
            let status: String = row.get("status");
            counts.insert(format!("{table}/{status}"), row.get::<i64, _>("n"));
        }
    }
    let revoked: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM certificates WHERE revoked_at IS NOT NULL")
            .fetch_one(db)
            .await
            .expect("count revoked certificates");
    counts.insert("certificates/revoked_at set".to_owned(), revoked);
    counts
}

/// Issues a certificate for `names`, checks it like every issued certificate; returns the
/// leaf's DER.
pub(crate) async fn issue(
    env: &Environment,
    client: &mut AcmeClient,
    responder: &Http01Responder,
    names: &[&str],
) -> Vec<u8> {
    let order = client.ready_order(names, responder).await;
    let answer = client.finalize(&order, &csr_der(names)).await;
    assert_eq!(answer.status, 200, "finalize: {}", answer.describe());
    let issued = client.wait_valid(&order).await;
    let url = issued
        .certificate_url()
        .unwrap_or_else(|| panic!("valid order without certificate: {}", issued.body));
    let chain = client.download_certificate(&url).await;
    check_issued(
        &env.pkid.root_pem_path(),
        &chain,
        names,
        &env.subdir(&format!("checks-{}", names[0])),
    );
    pem_chain(&chain)[0].clone()
}

/// Checks one answer against its row; returns the mismatches.
fn judge(case: Case, request: &Request, answer: &Response) -> Vec<String> {
    let (status, short_type) = case.expected();
    let mut wrong = Vec::new();
    let problem = answer.problem_type();
    let expected_type = format!("urn:ietf:params:acme:error:{short_type}");
    if answer.status != status || problem.as_deref() != Some(expected_type.as_str()) {
        wrong.push(format!(
            "expected {status} {short_type}, got {} {}",
            answer.status,
            answer.text()
        ));
    }
    // §6.2: "MUST include an algorithms field with an array of supported alg values".
    if short_type == "badSignatureAlgorithm" {
        let body: Value = serde_json::from_slice(&answer.body).unwrap_or_default();
        let lists_es256 = body["algorithms"]
            .as_array()
            .is_some_and(|algs| algs.iter().any(|alg| alg == "ES256"));
        if !lists_es256 {
            wrong.push(format!("no algorithms list with ES256 in {body}"));
        }
    }
    let content_type = answer.header("content-type").unwrap_or_default();
    if !content_type.starts_with("application/problem+json") {
        wrong.push(format!("content-type {content_type:?}"));
    }
    match answer.header("replay-nonce") {
        None => wrong.push("no Replay-Nonce".to_owned()),
        Some(fresh) if request.nonce.as_deref() == Some(fresh.as_str()) => {
            wrong.push("Replay-Nonce is the nonce the request spent".to_owned())
        }
        Some(_) => {}
    }
    wrong
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_the_documented_problem_and_change_nothing() {
    require_tool("openssl");
    let env = Environment::start().await;
    within(TEST_BOUND, async {
        let responder = Http01Responder::bind(env.http01_port).await;
        let mut client = AcmeClient::new(&env.pkid.directory_url(), &env.pkid.root_pem()).await;
        let account_url = client.register().await;
        let mut stranger = AcmeClient::new(&env.pkid.directory_url(), &env.pkid.root_pem()).await;
        stranger.register().await;
        let stranger_order = stranger.new_order(&["stranger.pkid.test"]).await;

        let revoked_cert = issue(&env, &mut client, &responder, &["revoked.pkid.test"]).await;
        let answer = client
            .post(
                &client.resource("revokeCert"),
                Some(&json!({"certificate": b64(&revoked_cert)})),
            )
            .await;
        assert_eq!(answer.status, 200, "revokeCert: {}", answer.describe());
        let live_cert = issue(&env, &mut client, &responder, &["live.pkid.test"]).await;
        let pending_order = client.new_order(&["pending.pkid.test"]).await;
        let ready_names = vec!["ready.pkid.test"];
        let ready_order = client.ready_order(&ready_names, &responder).await;
        let setup = Setup {
            client,
            account_url,
            stranger_order,
            pending_order,
            ready_order,
            ready_names,
            revoked_cert,
            live_cert,
            rsa1024: OpensslRsa::generate(1024, &env.subdir("rsa")),
        };

        let db = open_read_only(&env.pkid.database_path()).await;
        let before = snapshot(&db).await;

        let mut failures = Vec::new();
        for case in Case::ALL {
            let request = setup.request(case).await;
            let answer = setup
                .client
                .send_raw(
                    request.method.clone(),
                    &request.url,
                    request.content_type,
                    request.body.clone(),
                )
                .await;
            let mut wrong = judge(case, &request, &answer);
            let after = snapshot(&db).await;
            if after != before {
                wrong.push(format!("database changed: {before:?} -> {after:?}"));
            }
            if !wrong.is_empty() {
                failures.push(format!("{case:?}: {}", wrong.join("; ")));
            }
        }
        db.close().await;
        assert!(
            failures.is_empty(),
            "{} of {} rows failed:\n{}",
            failures.len(),
            Case::ALL.len(),
            failures.join("\n")
        );
    })
    .await;
}

/// `acme.rate_limits.orders_per_account_per_hour`: past the limit, newOrder is 429
/// `rateLimited` with `Retry-After` (RFC 8555 §6.6) and creates nothing; another account is not
/// limited by it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_past_the_hourly_limit_are_rate_limited() {
    let env =
        Environment::start_with(&[("PKID_ACME__RATE_LIMITS__ORDERS_PER_ACCOUNT_PER_HOUR", "2")])
            .await;
    within(TEST_BOUND, async {
        let mut client = AcmeClient::new(&env.pkid.directory_url(), &env.pkid.root_pem()).await;
        client.register().await;
        client.new_order(&["rl1.pkid.test"]).await;
        client.new_order(&["rl2.pkid.test"]).await;

        let db = open_read_only(&env.pkid.database_path()).await;
        let before = snapshot(&db).await;
        let answer = client
            .post(
                &client.resource("newOrder"),
                Some(&json!({"identifiers": [{"type": "dns", "value": "rl3.pkid.test"}]})),
            )
            .await;
        assert_eq!(
            answer.status,
            429,
            "third order in an hour: {}",
            answer.describe()
        );
        assert_eq!(
            answer.problem_type().as_deref(),
            Some("urn:ietf:params:acme:error:rateLimited"),
            "third order in an hour: {}",
            answer.describe()
        );
        let retry_after = answer
            .header("retry-after")
            .unwrap_or_else(|| panic!("429 without Retry-After: {}", answer.describe()));
        let seconds: u64 = retry_after
            .parse()
            .unwrap_or_else(|_| panic!("Retry-After is not delay-seconds: {retry_after:?}"));
        assert!(
            (1..=3600).contains(&seconds),
            "Retry-After {seconds} s for an hourly limit"
        );
        assert!(
            answer.header("replay-nonce").is_some(),
            "429 without Replay-Nonce"
        );
        assert_eq!(
            snapshot(&db).await,
            before,
            "a refused order changed the database"
        );
        db.close().await;

        let mut other = AcmeClient::new(&env.pkid.directory_url(), &env.pkid.root_pem()).await;
        other.register().await;
        other.new_order(&["rl4.pkid.test"]).await;
    })
    .await;
}

/// Every answer reaches the client whether or not its body was read: POSTs with bodies of 0 B,
/// 20 KB and just under the 64 KiB limit to paths pkid does not route, sent by curl over HTTP/2
/// and over HTTP/1.1, each get their 404 (over HTTP/2 an answer that ended while the request's
/// body was still arriving was followed by a stream reset, and curl exited 92 instead).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unrouted_posts_with_bodies_get_their_404_over_http2_and_http11() {
    let curl = require_tool("curl");
    within(TEST_BOUND, async {
        let env = Environment::start().await;
        let bodies = env.subdir("bodies");
        let limit = 64 * 1024;
        for (protocol, flag) in [("HTTP/2", "--http2"), ("HTTP/1.1", "--http1.1")] {
            for size in [0, 20 * 1024, limit - 1] {
                let file = bodies.join(format!("{size}.bin"));
                std::fs::write(&file, vec![b'x'; size]).unwrap();
                for path in [
                    "/oauth/token",
                    "/api/v2/certificate_requests",
                    "/no/such/path",
                ] {
                    // Three tries each: the reset came on most tries, not on every one.
                    for _ in 0..3 {
                        let url = format!("https://localhost:{}{path}", env.pkid.port());
                        let output = tokio::process::Command::new(&curl)
                            .args(["-sS", "--max-time", "20", flag, "-o", "/dev/null"])
                            .args(["-w", "%{http_code} %{http_version}", "--cacert"])
                            .arg(env.pkid.root_pem_path())
                            .args(["-H", "Content-Type: application/json", "--data-binary"])
                            .arg(format!("@{}", file.display()))
                            .arg(&url)
                            .output()
                            .await
                            .unwrap();
                        let written = String::from_utf8_lossy(&output.stdout).to_string();
                        assert!(
                            output.status.success(),
                            "{protocol} POST {path} with {size} B: curl exited {:?} ({}): {}",
                            output.status.code(),
                            written,
                            String::from_utf8_lossy(&output.stderr)
                        );
                        let want_version = if flag == "--http2" { "2" } else { "1.1" };
                        assert_eq!(
                            written,
                            format!("404 {want_version}"),
                            "{protocol} POST {path} with {size} B"
                        );
                    }
                }
            }
        }
    })
    .await;
}

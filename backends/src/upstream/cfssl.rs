//! A CFSSL remote signer (`cfssl serve`) as a signing backend.
//!
//! Issuance POSTs the client's CSR to `/api/v1/cfssl/sign` (or `/api/v1/cfssl/authsign` when an
//! auth key is configured) with `hosts` set to the request's identifiers, so CFSSL never takes
//! names from the CSR. Requests and answers follow CFSSL's API documents (`doc/api/endpoint_sign.txt`,
//! `endpoint_authsign.txt`, `endpoint_info.txt`, `endpoint_revoke.txt`):
//!
//! - sign: `{"certificate_request": "<CSR PEM>", "hosts": [...], "profile": "...", "label": "..."}`
//! - authsign: `{"token": base64(HMAC-SHA256(key, request)), "request": base64(request)}`, where
//!   `request` is the exact JSON bytes of the sign request (CFSSL's "standard" auth provider).
//! - every answer: `{"success": bool, "result": {...}, "errors": [{"code": n, "message": "..."}]}`.
//!
//! The returned leaf must carry the request's key and exactly its identifiers, and be signed by
//! the configured (or `/api/v1/cfssl/info`-reported) CA, else [`BackendError::Mismatch`]. The
//! serial and validity are CFSSL's (its signing profile decides the expiry), not the request's.
//!
//! Revocation: CFSSL's `/api/v1/cfssl/revoke` only works for a CFSSL started with `-db-config`.
//! With `revoke_upstream = true` the backend forwards revocations there (serial in decimal,
//! authority key identifier in hex, reason code); otherwise `revoke` succeeds without contacting
//! CFSSL and the revocation lives in pkid's own records only (logged at debug level), so that
//! revoking through pkid is never blocked by a signer that keeps no state.
//!
//! The [`IssuanceJournal`] is not called: CFSSL builds and signs the certificate, so pkid never
//! sees a to-be-signed certificate it could record. The auth key is never logged.

use std::fmt;
use std::path::PathBuf;
use std::sync::RwLock;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use zeroize::Zeroizing;

use crate::upstream::{self, Expected};
use crate::{
    BackendError, Capabilities, CrlRequest, Issuance, IssuanceJournal, IssueRequest,
    RevocationReason, Serial, SigningBackend,
};

/// Configuration of one CFSSL remote signer.
#[derive(Clone, Deserialize)]
pub struct UpstreamCfsslConfig {
    /// Base URL of `cfssl serve`, e.g. `http://127.0.0.1:8888`.
    pub url: String,
    /// The CFSSL signing profile; CFSSL's default profile when absent.
    #[serde(default)]
    pub profile: Option<String>,
    /// The CFSSL signer label (multi-root setups).
    #[serde(default)]
    pub label: Option<String>,
    /// Hex HMAC-SHA256 key of CFSSL's "standard" auth provider: switches to `authsign`.
    /// Secret: better named than written here, by `auth_key_env` or `auth_key_file`; at most
    /// one of the three.
    #[serde(default)]
    pub auth_key_hex: Option<String>,
    /// Name of the environment variable holding the hex auth key.
    #[serde(default)]
    pub auth_key_env: Option<String>,
    /// File holding the hex auth key (one trailing newline is ignored).
    #[serde(default)]
    pub auth_key_file: Option<PathBuf>,
    /// PEM: CFSSL's signing CA certificate first, then its issuers up to the root. When absent
    /// the CA certificate is fetched from `/api/v1/cfssl/info` on first use.
    #[serde(default, alias = "root_pem")]
    pub ca_chain_pem: Option<PathBuf>,
    /// Extra roots (PEM) to trust when `url` is HTTPS.
    #[serde(default)]
    pub trust_roots_pem: Option<PathBuf>,
    /// Forward revocations to `/api/v1/cfssl/revoke` (needs a CFSSL with `-db-config`).
    #[serde(default)]
    pub revoke_upstream: bool,
    /// Bound on one request to CFSSL, retries included.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
}

fn default_timeout_secs() -> u64 {
    30
}

impl fmt::Debug for UpstreamCfsslConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamCfsslConfig")
            .field("url", &self.url)
            .field("profile", &self.profile)
            .field("label", &self.label)
            .field(
                "auth_key_hex",
                &self.auth_key_hex.as_ref().map(|_| "(secret)"),
            )
            .field("auth_key_env", &self.auth_key_env)
            .field("auth_key_file", &self.auth_key_file)
            .field("ca_chain_pem", &self.ca_chain_pem)
            .field("trust_roots_pem", &self.trust_roots_pem)
            .field("revoke_upstream", &self.revoke_upstream)
            .field("timeout_secs", &self.timeout_secs)
            .finish()
    }
}

/// A CA whose signing happens in a remote `cfssl serve`.
pub struct UpstreamCfsslBackend {
    name: String,
    config: UpstreamCfsslConfig,
    auth_key: Option<Zeroizing<Vec<u8>>>,
    http: reqwest::Client,
    /// CFSSL's CA chain, signing CA first; empty until fetched when not configured.
    issuer_chain: RwLock<Vec<Vec<u8>>>,
}

impl fmt::Debug for UpstreamCfsslBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamCfsslBackend")
            .field("name", &self.name)
            .field("url", &self.config.url)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct SignRequest<'a> {
    certificate_request: String,
    hosts: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    profile: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    label: Option<&'a str>,
}

#[derive(Serialize)]
struct AuthenticatedRequest {
    token: String,
    request: String,
}

#[derive(Serialize)]
struct InfoRequest<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    profile: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    label: Option<&'a str>,
}

#[derive(Serialize)]
struct RevokeRequest {
    serial: String,
    authority_key_id: String,
    reason: String,
}

#[derive(Deserialize)]
struct CfsslAnswer {
    #[serde(default)]
    success: bool,
    #[serde(default)]
    result: Option<serde_json::Value>,
    #[serde(default)]
    errors: Vec<CfsslMessage>,
}

#[derive(Deserialize)]
struct CfsslMessage {
    #[serde(default)]
    code: i64,
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
struct CertificateResult {
    certificate: String,
}

/// CFSSL's error code for "certificate not found" (CertStoreError 11000 + RecordNotFound 200).
const CODE_CERTIFICATE_NOT_FOUND: i64 = 11200;

/// A failed call: CFSSL's own error codes (empty when it never answered in its envelope) and the
/// error to report.
struct CallError {
    codes: Vec<i64>,
    error: BackendError,
}

impl From<BackendError> for CallError {
    fn from(error: BackendError) -> Self {
        CallError {
            codes: Vec::new(),
            error,
        }
    }
}

impl From<CallError> for BackendError {
    fn from(failure: CallError) -> Self {
        failure.error
    }
}

fn cfssl_retry_status(status: reqwest::StatusCode) -> bool {
    // CFSSL reports its own failures as 4xx/500 with a JSON body; only gateway answers are
    // worth repeating.
    matches!(status.as_u16(), 502..=504)
}

impl UpstreamCfsslBackend {
    /// Reads the configured CA chain and builds the HTTP client; does not contact CFSSL.
    pub fn new(name: &str, config: UpstreamCfsslConfig) -> Result<Self, BackendError> {
        if config.timeout_secs == 0 {
            return Err(BackendError::Build(
                "upstream CFSSL: timeout_secs must be at least 1".into(),
            ));
        }
        let named = crate::secret::read_secret(
            "the CFSSL auth key (auth_key_env or auth_key_file)",
            config.auth_key_env.as_deref(),
            config.auth_key_file.as_deref(),
        )?;
        let text =
            match (&config.auth_key_hex, named) {
                (Some(_), Some(_)) => return Err(BackendError::Key(
                    "the CFSSL auth key: set one of auth_key_hex, auth_key_env and auth_key_file"
                        .into(),
                )),
                (Some(inline), None) => Some(Zeroizing::new(inline.clone())),
                (None, named) => named,
            };
        let auth_key = text
            .map(|text| {
                hex::decode(text.trim())
                    .map(Zeroizing::new)
                    .map_err(|_| BackendError::Key("the CFSSL auth key is not hex".into()))
            })
            .transpose()?;
        let issuer_chain = match &config.ca_chain_pem {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| BackendError::Io(format!("reading {}: {e}", path.display())))?;
                let chain = upstream::pem_certificates(&text)
                    .map_err(|e| BackendError::Io(format!("{}: {e}", path.display())))?;
                if chain.is_empty() {
                    return Err(BackendError::Io(format!(
                        "{} holds no CERTIFICATE block",
                        path.display()
                    )));
                }
                chain
            }
            None => Vec::new(),
        };
        let http = upstream::http_client(
            config.trust_roots_pem.as_deref(),
            Duration::from_secs(config.timeout_secs),
        )?;
        Ok(UpstreamCfsslBackend {
            name: name.to_owned(),
            config,
            auth_key,
            http,
            issuer_chain: RwLock::new(issuer_chain),
        })
    }

    fn upstream_name(&self) -> String {
        format!("CFSSL at {}", self.config.url)
    }

    fn endpoint(&self, path: &str) -> String {
        format!(
            "{}/api/v1/cfssl/{path}",
            self.config.url.trim_end_matches('/')
        )
    }

    /// POSTs `body` to `endpoint` and returns CFSSL's `result`, or its errors as `Upstream`.
    async fn call(
        &self,
        endpoint: &str,
        body: Vec<u8>,
        deadline: Instant,
    ) -> Result<serde_json::Value, CallError> {
        let url = self.endpoint(endpoint);
        let request = self
            .http
            .post(&url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body)
            .build()
            .map_err(|e| BackendError::Build(format!("{url}: {}", upstream::error_chain(&e))))?;
        let response =
            upstream::send_with_retries(&self.http, request, cfssl_retry_status, Some(deadline))
                .await
                .map_err(|e| BackendError::Upstream(format!("{}: {e}", self.upstream_name())))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| {
            BackendError::Upstream(format!(
                "{}: reading the answer of {endpoint}: {}",
                self.upstream_name(),
                upstream::error_chain(&e)
            ))
        })?;
        let answer: CfsslAnswer = serde_json::from_slice(&bytes).map_err(|_| {
            BackendError::Upstream(format!(
                "{}: {endpoint} answered HTTP {status} without CFSSL's JSON envelope: {}",
                self.upstream_name(),
                upstream::excerpt(&bytes)
            ))
        })?;
        if !answer.success || !status.is_success() {
            let errors: Vec<String> = answer
                .errors
                .iter()
                .map(|e| format!("{} (code {})", e.message, e.code))
                .collect();
            return Err(CallError {
                codes: answer.errors.iter().map(|e| e.code).collect(),
                error: BackendError::Upstream(format!(
                    "{} refused {endpoint} (HTTP {status}): {}",
                    self.upstream_name(),
                    if errors.is_empty() {
                        "no reason given".to_owned()
                    } else {
                        errors.join("; ")
                    }
                )),
            });
        }
        answer.result.ok_or_else(|| {
            CallError::from(BackendError::Upstream(format!(
                "{}: {endpoint} succeeded without a result",
                self.upstream_name()
            )))
        })
    }

    fn certificate_of(
        &self,
        result: serde_json::Value,
        endpoint: &str,
    ) -> Result<Vec<Vec<u8>>, BackendError> {
        let result: CertificateResult = serde_json::from_value(result).map_err(|e| {
            BackendError::Upstream(format!(
                "{}: {endpoint} result has no certificate: {e}",
                self.upstream_name()
            ))
        })?;
        let certs = upstream::pem_certificates(&result.certificate).map_err(|e| {
            BackendError::Upstream(format!(
                "{}: {endpoint} certificate is {e}",
                self.upstream_name()
            ))
        })?;
        if certs.is_empty() {
            return Err(BackendError::Upstream(format!(
                "{}: {endpoint} returned no certificate",
                self.upstream_name()
            )));
        }
        Ok(certs)
    }

    /// CFSSL's CA chain: configured, or asked of `/api/v1/cfssl/info` once.
    async fn issuer_chain(&self, deadline: Instant) -> Result<Vec<Vec<u8>>, BackendError> {
        let known = self
            .issuer_chain
            .read()
            .map(|chain| chain.clone())
            .unwrap_or_default();
        if !known.is_empty() {
            return Ok(known);
        }
        let body = serde_json::to_vec(&InfoRequest {
            profile: self.config.profile.as_deref(),
            label: self.config.label.as_deref(),
        })
        .map_err(|e| BackendError::Build(format!("encoding an info request: {e}")))?;
        let result = self.call("info", body, deadline).await?;
        let chain = self.certificate_of(result, "info")?;
        if let Ok(mut cached) = self.issuer_chain.write() {
            *cached = chain.clone();
        }
        Ok(chain)
    }

    async fn issue_until(
        &self,
        req: &IssueRequest,
        deadline: Instant,
    ) -> Result<Issuance, BackendError> {
        let expected = Expected::from_request(req)?;
        let sign = SignRequest {
            certificate_request: pem::encode(&pem::Pem::new(
                "CERTIFICATE REQUEST",
                req.csr_der.clone(),
            )),
            hosts: expected.identifiers().collect(),
            profile: self.config.profile.as_deref(),
            label: self.config.label.as_deref(),
        };
        let sign_json = serde_json::to_vec(&sign)
            .map_err(|e| BackendError::Build(format!("encoding a sign request: {e}")))?;
        let (endpoint, body) = match &self.auth_key {
            Some(key) => {
                let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key);
                let token = aws_lc_rs::hmac::sign(&key, &sign_json);
                let body = serde_json::to_vec(&AuthenticatedRequest {
                    token: STANDARD.encode(token.as_ref()),
                    request: STANDARD.encode(&sign_json),
                })
                .map_err(|e| BackendError::Build(format!("encoding an authsign request: {e}")))?;
                ("authsign", body)
            }
            None => ("sign", sign_json),
        };
        let result = self.call(endpoint, body, deadline).await?;
        let leaf = self.certificate_of(result, endpoint)?.swap_remove(0);

        let issuers = self.issuer_chain(deadline).await?;
        let mut chain = Vec::with_capacity(1 + issuers.len());
        chain.push(leaf);
        chain.extend(issuers);
        // Checked with the root still attached, so a leaf that CFSSL's configured CA did not
        // sign is caught even when that CA is itself the root.
        expected.check_chain(&chain, &self.upstream_name())?;
        if chain.len() > 1 && chain.last().is_some_and(|c| upstream::is_self_issued(c)) {
            chain.pop();
        }
        Ok(Issuance::Issued { chain })
    }

    async fn revoke_upstream(
        &self,
        serial: &Serial,
        cert_der: &[u8],
        reason: RevocationReason,
        deadline: Instant,
    ) -> Result<(), BackendError> {
        let (_, cert) = x509_parser::parse_x509_certificate(cert_der)
            .map_err(|e| BackendError::Build(format!("the certificate to revoke: {e}")))?;
        let authority_key_id = cert
            .extensions()
            .iter()
            .find_map(|ext| match ext.parsed_extension() {
                x509_parser::extensions::ParsedExtension::AuthorityKeyIdentifier(aki) => {
                    aki.key_identifier.as_ref().map(|id| hex::encode(id.0))
                }
                _ => None,
            })
            .ok_or_else(|| {
                BackendError::Build(format!(
                    "serial {serial}: the certificate has no authority key identifier, which \
                     CFSSL's revoke endpoint needs"
                ))
            })?;
        let revoke = |authority_key_id: String| {
            serde_json::to_vec(&RevokeRequest {
                serial: decimal(serial.normalized()),
                authority_key_id,
                // CFSSL accepts the numeric RFC 5280 code as well as its reason names.
                reason: reason.code().to_string(),
            })
            .map_err(|e| BackendError::Build(format!("encoding a revoke request: {e}")))
        };
        match self
            .call("revoke", revoke(authority_key_id)?, deadline)
            .await
        {
            Ok(_) => Ok(()),
            // CFSSL 1.2.0 (Debian's golang-cfssl) records every certificate with an empty
            // authority key identifier, so its database only finds them under "".
            Err(failure) if failure.codes.contains(&CODE_CERTIFICATE_NOT_FOUND) => {
                tracing::debug!(serial = %serial, "CFSSL does not know the certificate under its AKI; trying the empty AKI older CFSSL records");
                self.call("revoke", revoke(String::new())?, deadline)
                    .await
                    .map(|_| ())
                    .map_err(|_| failure.error)
            }
            Err(failure) => Err(failure.error),
        }
    }
}

/// A big-endian unsigned integer in decimal, as CFSSL keys its certificate database.
fn decimal(bytes: &[u8]) -> String {
    let mut number: Vec<u8> = bytes.to_vec();
    let mut digits = Vec::new();
    while number.iter().any(|b| *b != 0) {
        let mut remainder = 0u32;
        for byte in number.iter_mut() {
            let value = (remainder << 8) | u32::from(*byte);
            *byte = (value / 10) as u8;
            remainder = value % 10;
        }
        digits.push(b'0' + remainder as u8);
    }
    if digits.is_empty() {
        return "0".into();
    }
    digits.reverse();
    String::from_utf8(digits).unwrap_or_default()
}

#[async_trait::async_trait]
impl SigningBackend for UpstreamCfsslBackend {
    fn kind(&self) -> &'static str {
        "cfssl"
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            issue: true,
            revoke: true,
            crl: false,
            ocsp: false,
            pending: false,
            key_generation: false,
            journals: false,
        }
    }

    /// CFSSL's CA chain, signing CA first: as configured, or as `/api/v1/cfssl/info` reported it
    /// (empty until the first issuance when not configured).
    fn ca_chain(&self) -> Vec<Vec<u8>> {
        self.issuer_chain
            .read()
            .map(|chain| chain.clone())
            .unwrap_or_default()
    }

    /// Does not call `journal`: CFSSL builds the certificate (see the module docs).
    async fn issue(
        &self,
        req: IssueRequest,
        _journal: &dyn IssuanceJournal,
    ) -> Result<Issuance, BackendError> {
        let timeout = Duration::from_secs(self.config.timeout_secs);
        let deadline = Instant::now() + timeout;
        tokio::time::timeout_at(deadline, self.issue_until(&req, deadline))
            .await
            .map_err(|_| {
                BackendError::Upstream(format!(
                    "{}: signing did not finish within {}s",
                    self.upstream_name(),
                    self.config.timeout_secs
                ))
            })?
    }

    async fn poll(&self, _upstream_ref: &str) -> Result<Issuance, BackendError> {
        Err(BackendError::Unsupported(
            "CFSSL signs synchronously; there is nothing to poll",
        ))
    }

    async fn revoke(
        &self,
        serial: &Serial,
        cert_der: &[u8],
        reason: RevocationReason,
    ) -> Result<(), BackendError> {
        if !self.config.revoke_upstream {
            tracing::debug!(
                backend = %self.name,
                serial = %serial,
                "CFSSL keeps no revocation state here (revoke_upstream = false): the revocation is recorded locally only"
            );
            return Ok(());
        }
        let timeout = Duration::from_secs(self.config.timeout_secs);
        let deadline = Instant::now() + timeout;
        tokio::time::timeout_at(
            deadline,
            self.revoke_upstream(serial, cert_der, reason, deadline),
        )
        .await
        .map_err(|_| {
            BackendError::Upstream(format!(
                "{}: revocation did not finish within {}s",
                self.upstream_name(),
                self.config.timeout_secs
            ))
        })?
    }

    async fn sign_crl(&self, _req: CrlRequest) -> Result<Vec<u8>, BackendError> {
        Err(BackendError::Unsupported(
            "CFSSL's CRLs are its own; this backend does not sign CRLs",
        ))
    }
}

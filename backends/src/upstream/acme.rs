//! An upstream ACME CA as a signing backend: pkid acts as a Registration Authority and forwards
//! each request to an RFC 8555 server (Let's Encrypt, a corporate Boulder, pebble in tests).
//!
//! One issuance: newOrder for the request's identifiers (RFC 8555 §7.4), one challenge per pending
//! authorization (§7.5.1), wait for the order to be `ready`, finalize with the client's original
//! CSR (§7.4), wait for `valid`, download the chain (§7.4.2), check it, return it.
//!
//! Challenge modes ([`ChallengeMode`]):
//! - `pre-validated`: pkid has validated the identifiers itself and the upstream is arranged to
//!   accept them (an upstream that trusts this RA, pebble with `PEBBLE_VA_ALWAYS_VALID=1`). The
//!   upstream still wants a challenge POSTed before it moves an authorization on, so the backend
//!   triggers exactly one challenge per pending authorization: http-01 if offered, else the first
//!   one offered. Nothing is served.
//! - `answer-http01`: the upstream validates for real. The backend owns a small HTTP responder
//!   on `http01_listen` (in `acme_http`, beside instant-acme's transport) that serves
//!   `/.well-known/acme-challenge/{token}` (RFC 8555 §8.3) from a token → key authorization map
//!   shared by all concurrent orders; each order removes its tokens when it is done with them.
//!
//! Slow upstreams: if the certificate is not ready `pending_after_secs` after finalization,
//! [`SigningBackend::issue`] answers [`Issuance::Pending`] and [`SigningBackend::poll`] finishes
//! later. The `upstream_ref` is the order URL with a fragment, `#expect=<fingerprint>`, a SHA-256
//! over the request's public key and identifiers: a fragment never goes on the wire, and it lets a
//! poll (even after a restart) refuse a certificate that is not the one requested. Everything
//! before finalization (account, order, challenges) must finish within `timeout_secs`.
//!
//! Checks: the leaf must carry the request's public key and exactly its identifiers, and each
//! certificate of the chain must be signed by the next; otherwise [`BackendError::Mismatch`] and
//! nothing is returned. The serial and validity are the upstream's, not the request's.
//!
//! The [`IssuanceJournal`] is not called: the upstream builds and signs the certificate, so pkid
//! never sees a to-be-signed certificate it could record; the caller stores what comes back.
//!
//! The account key (ECDSA P-256, PKCS#8) lives in `account_key_file`, sealed with the caller's
//! key-encryption key ([`KeyEncryptionKey`]). On first use the account is created with the
//! configured contact and external account binding (§7.3.4) and the key file written; later the
//! key finds its account again through newAccount (§7.3.1). If the upstream has forgotten the
//! account (a restarted pebble), a new one is created for the same key, without contact or EAB;
//! an upstream that then insists on EAB needs the key file removed. This also happens while
//! running: an `accountDoesNotExist` answer to newOrder or revokeCert drops the cached account,
//! finds or creates it again and repeats the request once.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use instant_acme::{
    Account, AuthorizationStatus, ChallengeType, ExternalAccountKey, Identifier, NewAccount,
    NewOrder, Order, OrderStatus, RevocationRequest,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde::Deserialize;
use tokio::time::Instant;

use crate::keys::software::write_private_atomic;
use crate::sealed::KeyEncryptionKey;
use crate::upstream::acme_http::{AcmeHttp, Http01Responder, Published};
use crate::upstream::{self, Expected};
use crate::{
    BackendError, Capabilities, CrlRequest, Issuance, IssuanceJournal, IssueRequest,
    RevocationReason, Serial, SigningBackend,
};

/// Associated data binding the sealed account key to its purpose.
const ACCOUNT_KEY_AAD: &[u8] = b"pkid upstream ACME account key";
const FIRST_POLL_DELAY: Duration = Duration::from_millis(250);
const MAX_POLL_DELAY: Duration = Duration::from_secs(2);
const FRAGMENT_PREFIX: &str = "#expect=";

/// How pending authorizations at the upstream are satisfied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChallengeMode {
    /// pkid validated the identifiers; the upstream accepts them once a challenge is triggered.
    PreValidated,
    /// pkid answers the upstream's http-01 challenges on `http01_listen`.
    AnswerHttp01,
}

/// External account binding credentials (RFC 8555 §7.3.4).
#[derive(Clone, Deserialize)]
pub struct EabConfig {
    pub kid: String,
    /// The MAC key, base64url or standard base64, padded or not.
    pub hmac_key_b64: String,
}

impl fmt::Debug for EabConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EabConfig")
            .field("kid", &self.kid)
            .field("hmac_key_b64", &"(secret)")
            .finish()
    }
}

impl EabConfig {
    fn key(&self) -> Result<ExternalAccountKey, BackendError> {
        let text = self.hmac_key_b64.trim().trim_end_matches('=');
        let bytes = URL_SAFE_NO_PAD
            .decode(text)
            .or_else(|_| STANDARD.decode(self.hmac_key_b64.trim()))
            .map_err(|_| BackendError::Key("the EAB HMAC key is not base64".into()))?;
        Ok(ExternalAccountKey::new(self.kid.clone(), &bytes))
    }
}

/// Configuration of one upstream ACME CA.
#[derive(Clone, Debug, Deserialize)]
pub struct UpstreamAcmeConfig {
    /// The upstream's directory URL (RFC 8555 §7.1.1).
    pub directory_url: String,
    /// Extra roots (PEM) to trust for the upstream's HTTPS, besides the platform's.
    #[serde(default)]
    pub trust_roots_pem: Option<PathBuf>,
    /// The sealed account key; created on first use.
    pub account_key_file: PathBuf,
    /// A contact URI for the account, e.g. `mailto:pki@example.com`.
    #[serde(default)]
    pub contact: Option<String>,
    #[serde(default)]
    pub eab: Option<EabConfig>,
    pub challenge_mode: ChallengeMode,
    /// Where the http-01 responder listens (`answer-http01` only).
    #[serde(default)]
    pub http01_listen: Option<SocketAddr>,
    /// Bound on one issuance, revocation or poll, retries included.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// How long issuance waits for the certificate after finalization before answering
    /// [`Issuance::Pending`].
    #[serde(default = "default_pending_after_secs")]
    pub pending_after_secs: u64,
}

fn default_timeout_secs() -> u64 {
    30
}

fn default_pending_after_secs() -> u64 {
    5
}

/// A Registration Authority front-end to an upstream ACME CA.
pub struct UpstreamAcmeBackend {
    name: String,
    config: UpstreamAcmeConfig,
    kek: Arc<KeyEncryptionKey>,
    http: reqwest::Client,
    /// Found or created on first use; forgotten when the upstream no longer knows it.
    account: tokio::sync::Mutex<Option<Account>>,
    responder: Option<Http01Responder>,
    /// The issuer chain (no leaf) of the last certificate issued.
    last_issuer_chain: RwLock<Vec<Vec<u8>>>,
}

impl fmt::Debug for UpstreamAcmeBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamAcmeBackend")
            .field("name", &self.name)
            .field("directory_url", &self.config.directory_url)
            .field("challenge_mode", &self.config.challenge_mode)
            .finish_non_exhaustive()
    }
}

impl UpstreamAcmeBackend {
    /// Builds the HTTPS client and, in `answer-http01` mode, binds the http-01 responder. Does not
    /// contact the upstream: the account is created or found on first use.
    pub async fn new(
        name: &str,
        config: UpstreamAcmeConfig,
        kek: Arc<KeyEncryptionKey>,
    ) -> Result<Self, BackendError> {
        if config.timeout_secs == 0 {
            return Err(BackendError::Build(
                "upstream ACME: timeout_secs must be at least 1".into(),
            ));
        }
        let http = upstream::http_client(
            config.trust_roots_pem.as_deref(),
            Duration::from_secs(config.timeout_secs),
        )?;
        let responder = match (config.challenge_mode, config.http01_listen) {
            (ChallengeMode::AnswerHttp01, Some(addr)) => Some(Http01Responder::bind(addr).await?),
            (ChallengeMode::AnswerHttp01, None) => {
                return Err(BackendError::Build(
                    "upstream ACME: challenge_mode answer-http01 needs http01_listen".into(),
                ))
            }
            (ChallengeMode::PreValidated, _) => None,
        };
        Ok(UpstreamAcmeBackend {
            name: name.to_owned(),
            config,
            kek,
            http,
            account: tokio::sync::Mutex::new(None),
            responder,
            last_issuer_chain: RwLock::new(Vec::new()),
        })
    }

    /// Where the http-01 responder listens (`answer-http01` mode), with the port the system chose
    /// if the configuration asked for port 0.
    pub fn http01_addr(&self) -> Option<SocketAddr> {
        self.responder.as_ref().map(|r| r.addr)
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(self.config.timeout_secs)
    }

    fn upstream_name(&self) -> String {
        format!("upstream ACME CA {}", self.config.directory_url)
    }

    fn acme_error(&self, step: &str) -> impl Fn(instant_acme::Error) -> BackendError + '_ {
        let step = step.to_owned();
        move |e| {
            BackendError::Upstream(format!(
                "{} ({step}): {}",
                self.upstream_name(),
                upstream::error_chain(&e)
            ))
        }
    }

    fn timed_out(&self, what: &str) -> BackendError {
        BackendError::Upstream(format!(
            "{}: {what} did not finish within {}s",
            self.upstream_name(),
            self.config.timeout_secs
        ))
    }

    fn builder(&self) -> instant_acme::AccountBuilder {
        Account::builder_with_http(Box::new(AcmeHttp {
            client: self.http.clone(),
        }))
    }

    async fn account(&self) -> Result<Account, BackendError> {
        let mut cached = self.account.lock().await;
        if let Some(account) = cached.as_ref() {
            return Ok(account.clone());
        }
        let account = self.find_or_create_account().await?;
        *cached = Some(account.clone());
        Ok(account)
    }

    /// Runs `op` with the account. When the upstream answers that the account does not exist
    /// (RFC 8555 §7.3.1: a restarted or reset CA, a purged account), the account is found again
    /// for the same key — newAccount creates it anew if need be — and `op` runs once more.
    async fn with_account<T, F, Fut>(&self, step: &str, op: F) -> Result<T, BackendError>
    where
        F: Fn(Account) -> Fut,
        Fut: Future<Output = Result<T, instant_acme::Error>>,
    {
        let account = self.account().await?;
        match op(account.clone()).await {
            Err(e) if is_account_gone(&e) => {
                tracing::warn!(backend = %self.name, account = %account.id(), step, "the upstream ACME CA no longer knows the account; finding it again");
                {
                    let mut cached = self.account.lock().await;
                    // Another request may have found it again already.
                    if cached.as_ref().is_some_and(|c| c.id() == account.id()) {
                        *cached = None;
                    }
                }
                let account = self.account().await?;
                op(account).await.map_err(self.acme_error(step))
            }
            other => other.map_err(self.acme_error(step)),
        }
    }

    async fn find_or_create_account(&self) -> Result<Account, BackendError> {
        let path = &self.config.account_key_file;
        let directory = self.config.directory_url.clone();
        if path.exists() {
            let text = std::fs::read_to_string(path)
                .map_err(|e| BackendError::Io(format!("reading {}: {e}", path.display())))?;
            let pkcs8 = self
                .kek
                .open_pem(&text, ACCOUNT_KEY_AAD)
                .map_err(|e| BackendError::Key(format!("{}: {e}", path.display())))?;
            let key = instant_acme::Key::from_pkcs8_der(PrivatePkcs8KeyDer::from(pkcs8.as_slice()))
                .map_err(|e| {
                    BackendError::Key(format!("{}: not a P-256 PKCS#8 key: {e}", path.display()))
                })?;
            let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pkcs8.to_vec()));
            let (account, _) = self
                .builder()
                .create_from_key((key, der), directory)
                .await
                .map_err(self.acme_error("finding the account of the configured key"))?;
            tracing::debug!(backend = %self.name, account = %account.id(), "upstream ACME account found");
            return Ok(account);
        }

        let eab = self.config.eab.as_ref().map(EabConfig::key).transpose()?;
        let contact: Vec<&str> = self.config.contact.iter().map(String::as_str).collect();
        let (account, credentials) = self
            .builder()
            .create(
                &NewAccount {
                    contact: &contact,
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                },
                directory,
                eab.as_ref(),
            )
            .await
            .map_err(self.acme_error("creating an account"))?;
        let sealed = self.kek.seal_pem(
            credentials.private_key().secret_pkcs8_der(),
            ACCOUNT_KEY_AAD,
        )?;
        if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| BackendError::Io(format!("creating {}: {e}", dir.display())))?;
        }
        write_private_atomic(path, sealed.as_bytes())?;
        tracing::info!(backend = %self.name, account = %account.id(), key_file = %path.display(), "created an upstream ACME account");
        Ok(account)
    }

    async fn issue_until(
        &self,
        req: &IssueRequest,
        expected: &Expected,
        deadline: Instant,
    ) -> Result<Issuance, BackendError> {
        let identifiers: Vec<Identifier> = expected
            .dns_names()
            .map(|name| Identifier::Dns(name.to_owned()))
            .chain(expected.ip_addresses().map(Identifier::Ip))
            .collect();
        let identifiers = &identifiers;
        let mut order = self
            .with_account("creating an order", |account| async move {
                account.new_order(&NewOrder::new(identifiers)).await
            })
            .await?;
        // Tokens stay published until the order has left `pending`.
        let published = self.start_challenges(&mut order).await?;
        self.wait_until_ready(&mut order, deadline).await?;
        drop(published);
        order
            .finalize_csr(&req.csr_der)
            .await
            .map_err(self.acme_error("finalizing the order"))?;
        let give_up =
            (Instant::now() + Duration::from_secs(self.config.pending_after_secs)).min(deadline);
        let fingerprint = expected.fingerprint();
        let chain = self.wait_for_chain(&mut order, give_up).await?;
        match chain {
            Some(chain) => {
                expected.check_chain(&chain, &self.upstream_name())?;
                Ok(self.issued(chain))
            }
            None => Ok(pending(order.url(), &fingerprint)),
        }
    }

    /// Triggers one challenge per pending authorization; returns the published http-01 answers,
    /// which are withdrawn when dropped.
    async fn start_challenges(&self, order: &mut Order) -> Result<Vec<Published>, BackendError> {
        let mut published = Vec::new();
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz.map_err(self.acme_error("fetching an authorization"))?;
            let identifier = authz.identifier().to_string();
            match authz.status {
                AuthorizationStatus::Valid => continue,
                AuthorizationStatus::Pending => {}
                other => {
                    return Err(BackendError::Upstream(format!(
                        "{}: the authorization for {identifier} is {other:?}",
                        self.upstream_name()
                    )))
                }
            }
            let kind = match self.config.challenge_mode {
                ChallengeMode::AnswerHttp01 => ChallengeType::Http01,
                ChallengeMode::PreValidated => {
                    let offered: Vec<ChallengeType> =
                        authz.challenges.iter().map(|c| c.r#type.clone()).collect();
                    offered
                        .iter()
                        .find(|t| **t == ChallengeType::Http01)
                        .or_else(|| offered.first())
                        .cloned()
                        .ok_or_else(|| {
                            BackendError::Upstream(format!(
                                "{}: the authorization for {identifier} offers no challenge",
                                self.upstream_name()
                            ))
                        })?
                }
            };
            let Some(mut challenge) = authz.challenge(kind.clone()) else {
                return Err(BackendError::Upstream(format!(
                    "{}: the authorization for {identifier} offers no {kind:?} challenge",
                    self.upstream_name()
                )));
            };
            if let Some(responder) = &self.responder {
                published.push(responder.publish(
                    challenge.token.clone(),
                    challenge.key_authorization().as_str().to_owned(),
                ));
            }
            challenge
                .set_ready()
                .await
                .map_err(self.acme_error(&format!("triggering the challenge for {identifier}")))?;
        }
        Ok(published)
    }

    async fn wait_until_ready(
        &self,
        order: &mut Order,
        deadline: Instant,
    ) -> Result<(), BackendError> {
        let mut delay = FIRST_POLL_DELAY;
        loop {
            let state = order
                .refresh()
                .await
                .map_err(self.acme_error("polling the order"))?;
            match state.status {
                OrderStatus::Ready | OrderStatus::Processing | OrderStatus::Valid => return Ok(()),
                OrderStatus::Invalid => {
                    let why = match &state.error {
                        Some(problem) => problem.to_string(),
                        None => self.failed_authorizations(order).await,
                    };
                    return Err(BackendError::Upstream(format!(
                        "{}: the order became invalid: {why}",
                        self.upstream_name()
                    )));
                }
                OrderStatus::Pending => {}
            }
            if Instant::now() + delay >= deadline {
                return Err(self.timed_out("validating the order's authorizations"));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(MAX_POLL_DELAY);
        }
    }

    /// The upstream's reasons for failed authorizations, for an error message.
    async fn failed_authorizations(&self, order: &mut Order) -> String {
        let mut reasons = Vec::new();
        let mut authorizations = order.authorizations();
        while let Some(Ok(authz)) = authorizations.next().await {
            for challenge in &authz.challenges {
                if let Some(problem) = &challenge.error {
                    reasons.push(format!("{}: {problem}", authz.identifier()));
                }
            }
        }
        if reasons.is_empty() {
            "no reason given".into()
        } else {
            reasons.join("; ")
        }
    }

    /// Polls a finalized order until its chain is downloaded (`Some`) or `give_up` passes (`None`).
    async fn wait_for_chain(
        &self,
        order: &mut Order,
        give_up: Instant,
    ) -> Result<Option<Vec<Vec<u8>>>, BackendError> {
        let mut delay = FIRST_POLL_DELAY;
        loop {
            if order.state().status == OrderStatus::Processing && Instant::now() >= give_up {
                return Ok(None);
            }
            let pem = order
                .certificate()
                .await
                .map_err(self.acme_error("downloading the certificate"))?;
            if let Some(pem) = pem {
                let chain = upstream::pem_certificates(&pem).map_err(|e| {
                    BackendError::Upstream(format!(
                        "{}: the certificate download is {e}",
                        self.upstream_name()
                    ))
                })?;
                return Ok(Some(chain));
            }
            tokio::time::sleep(delay.min(give_up.saturating_duration_since(Instant::now()))).await;
            delay = (delay * 2).min(MAX_POLL_DELAY);
        }
    }

    /// Drops a trailing root, remembers the issuer chain, answers `Issued`.
    fn issued(&self, mut chain: Vec<Vec<u8>>) -> Issuance {
        let issuer_chain: Vec<Vec<u8>> = chain.iter().skip(1).cloned().collect();
        if chain.len() > 1 && chain.last().is_some_and(|c| upstream::is_self_issued(c)) {
            chain.pop();
        }
        if let Ok(mut last) = self.last_issuer_chain.write() {
            *last = issuer_chain;
        }
        Issuance::Issued { chain }
    }

    async fn poll_until(&self, upstream_ref: &str) -> Result<Issuance, BackendError> {
        let (order_url, fingerprint) =
            upstream_ref.split_once(FRAGMENT_PREFIX).ok_or_else(|| {
                BackendError::Build(format!(
                    "{upstream_ref:?} is not an upstream reference this backend made"
                ))
            })?;
        let account = self.account().await?;
        let mut order = account
            .order(order_url.to_owned())
            .await
            .map_err(self.acme_error("fetching the order"))?;
        match order.state().status {
            OrderStatus::Processing | OrderStatus::Valid => {}
            other => {
                return Err(BackendError::Upstream(format!(
                "{}: order {order_url} is {other:?}, so there is nothing to collect; issue again",
                self.upstream_name()
            )))
            }
        }
        let give_up = Instant::now() + Duration::from_secs(self.config.pending_after_secs);
        match self.wait_for_chain(&mut order, give_up).await? {
            Some(chain) => {
                upstream::check_chain_fingerprint(&chain, fingerprint, &self.upstream_name())?;
                Ok(self.issued(chain))
            }
            None => Ok(pending(order_url, fingerprint)),
        }
    }
}

/// `accountDoesNotExist` (RFC 8555 §6.7): the upstream has no account for the key's URL.
fn is_account_gone(e: &instant_acme::Error) -> bool {
    matches!(e, instant_acme::Error::Api(problem)
        if problem.r#type.as_deref() == Some("urn:ietf:params:acme:error:accountDoesNotExist"))
}

fn pending(order_url: &str, fingerprint: &str) -> Issuance {
    Issuance::Pending {
        upstream_ref: format!("{order_url}{FRAGMENT_PREFIX}{fingerprint}"),
        retry_after: Duration::from_secs(1),
    }
}

fn acme_reason(reason: RevocationReason) -> Option<instant_acme::RevocationReason> {
    use instant_acme::RevocationReason as Acme;
    Some(match reason {
        // Leaving the reason out is how RFC 8555 §7.6 says "unspecified".
        RevocationReason::Unspecified => return None,
        RevocationReason::KeyCompromise => Acme::KeyCompromise,
        RevocationReason::CaCompromise => Acme::CaCompromise,
        RevocationReason::AffiliationChanged => Acme::AffiliationChanged,
        RevocationReason::Superseded => Acme::Superseded,
        RevocationReason::CessationOfOperation => Acme::CessationOfOperation,
        RevocationReason::CertificateHold => Acme::CertificateHold,
        RevocationReason::RemoveFromCrl => Acme::RemoveFromCrl,
        RevocationReason::PrivilegeWithdrawn => Acme::PrivilegeWithdrawn,
        RevocationReason::AaCompromise => Acme::AaCompromise,
    })
}

#[async_trait::async_trait]
impl SigningBackend for UpstreamAcmeBackend {
    fn kind(&self) -> &'static str {
        "acme"
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
            pending: true,
            key_generation: false,
            journals: false,
        }
    }

    /// The issuer chain (issuing CA first) that came with the last certificate issued through
    /// this backend, as the upstream sent it: ACME servers usually leave the root out, so it may
    /// be missing. Empty until the first issuance since start.
    fn ca_chain(&self) -> Vec<Vec<u8>> {
        self.last_issuer_chain
            .read()
            .map(|chain| chain.clone())
            .unwrap_or_default()
    }

    /// Does not call `journal`: the upstream builds the certificate (see the module docs).
    async fn issue(
        &self,
        req: IssueRequest,
        _journal: &dyn IssuanceJournal,
    ) -> Result<Issuance, BackendError> {
        let expected = Expected::from_request(&req)?;
        if expected.is_empty() {
            return Err(BackendError::Build(
                "an ACME order needs at least one DNS name or IP address".into(),
            ));
        }
        let deadline = Instant::now() + self.timeout();
        tokio::time::timeout_at(deadline, self.issue_until(&req, &expected, deadline))
            .await
            .map_err(|_| self.timed_out("issuance"))?
    }

    async fn poll(&self, upstream_ref: &str) -> Result<Issuance, BackendError> {
        tokio::time::timeout(self.timeout(), self.poll_until(upstream_ref))
            .await
            .map_err(|_| self.timed_out("polling the order"))?
    }

    /// Forwards revokeCert (RFC 8555 §7.6), signed with the account key.
    async fn revoke(
        &self,
        serial: &Serial,
        cert_der: &[u8],
        reason: RevocationReason,
    ) -> Result<(), BackendError> {
        let certificate = CertificateDer::from(cert_der.to_vec());
        let certificate = &certificate;
        let step = format!("revoking serial {serial}");
        let revoke = self.with_account(&step, |account| async move {
            account
                .revoke(&RevocationRequest {
                    certificate,
                    reason: acme_reason(reason),
                })
                .await
        });
        tokio::time::timeout(self.timeout(), revoke)
            .await
            .map_err(|_| self.timed_out("revocation"))?
    }

    async fn sign_crl(&self, _req: CrlRequest) -> Result<Vec<u8>, BackendError> {
        Err(BackendError::Unsupported(
            "an upstream ACME CA publishes its own CRLs",
        ))
    }
}

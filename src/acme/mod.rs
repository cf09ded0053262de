//! ACME server, RFC 8555: directory (§7.1.1), nonces (§7.2), accounts (§7.3), orders (§7.4),
//! authorizations and challenges (§7.5, §8), certificate download (§7.4.2).
//!
//! Every response — errors included — carries a fresh `Replay-Nonce` and `Link: rel="index"`.

pub mod eab;
mod ids;
pub mod jws;
pub mod links;
pub mod nonce;
pub mod policy;
pub mod problem;
mod wire;

use std::collections::BTreeSet;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use serde_json::{json, Map, Value};

use crate::ca::{Ca, Profile};
use crate::csr::{check_csr, CsrError, Ident};
use crate::revocation::{Revocation, RevokeError};
use crate::store::{
    now, AccountRow, AuthzReuse, AuthzRow, ChallengeRow, Claim, NewAuthz, OrderAuthz, OrderReuse,
    OrderRow, Prefetch, Prefetched, SealedEabKey, Store,
};
use crate::va::Validator;
use jws::{Jws, KeyRef};
use links::Links;
use nonce::NonceService;
use problem::{Identifier, Problem};
pub use wire::rfc3339;

/// An HTTP answer of the ACME surface, before the transport turns it into a hyper response.
pub struct Reply {
    pub status: StatusCode,
    pub headers: Vec<(HeaderName, String)>,
    pub content_type: &'static str,
    pub body: Bytes,
}

impl Reply {
    fn json(status: StatusCode, value: &Value) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            content_type: "application/json",
            body: Bytes::from(serde_json::to_vec(value).unwrap_or_default()),
        }
    }

    fn empty(status: StatusCode) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            content_type: "",
            body: Bytes::new(),
        }
    }

    fn header(mut self, name: HeaderName, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }

    pub fn problem(p: &Problem) -> Reply {
        let mut r = Reply {
            status: p.status_code(),
            headers: p.headers().to_vec(),
            content_type: "application/problem+json",
            body: Bytes::from(serde_json::to_vec(&p.to_json()).unwrap_or_default()),
        };
        if p.status_code() == StatusCode::METHOD_NOT_ALLOWED {
            r.headers
                .push((http::header::ALLOW, "GET, HEAD, POST".into()));
        }
        r
    }
}

type AcmeResult = Result<Reply, Problem>;

pub struct AcmeSettings {
    pub order_lifetime_secs: i64,
    pub authz_reuse_secs: i64,
    pub terms_of_service: Option<String>,
    /// Profiles by name (the Let's Encrypt `profiles` extension).
    pub profiles: std::collections::BTreeMap<String, Profile>,
    pub default_profile: String,
    /// newAuthz pre-authorization (RFC 8555 §7.4.1).
    pub pre_authorization: bool,
    /// This directory's name (EAB keys are bound to one).
    pub directory: String,
    pub eab_policy: eab::EabPolicy,
    /// Unseals EAB HMAC keys.
    pub kek: Arc<pkid_backends::KeyEncryptionKey>,
    pub identifier_policy: policy::IdentifierPolicy,
    pub rate_limits: policy::RateLimits,
    pub test_mode: policy::TestMode,
    /// Issuer domain names this CA answers to in CAA `issue`/`issuewild` records.
    pub caa_identities: Vec<String>,
    /// CAA is checked again at finalize when the validation is older than this.
    pub caa_recheck_secs: i64,
    /// How long the answer to a challenge POST waits for its validation.
    pub challenge_wait: std::time::Duration,
}

pub struct AcmeServer {
    /// This directory's path prefix: `/acme`, or `/acme/NAME` for a named directory.
    prefix: String,
    store: Store,
    nonces: NonceService,
    validator: Arc<Validator>,
    ca: Arc<Ca>,
    revocation: Arc<Revocation>,
    settings: AcmeSettings,
    /// The accounts' keys, parsed once per key.
    account_keys: jws::AccountKeys,
}

/// What CAA needs to know beyond the name (RFC 8657 parameters).
struct CaaContext {
    account_uri: String,
    wildcard: bool,
}

/// What a request's handler reads first, named by its URL: read with the nonce on PostgreSQL.
fn prefetch<'a>(segments: &[&'a str]) -> Prefetch<'a> {
    match *segments {
        ["order", id] | ["order", id, "finalize"] => Prefetch::Order(id),
        ["authz", id] => Prefetch::Authz(id),
        ["chall", id] => Prefetch::Challenge(id),
        ["cert", serial] | ["cert", serial, _] => Prefetch::Certificate(serial),
        _ => Prefetch::Nothing,
    }
}

/// A request that passed JWS authentication.
struct Authenticated {
    jws: Jws,
    /// Set when the request was signed with an account's `kid`.
    account: Option<AccountRow>,
    /// The resource the URL names, when it was read with the nonce (PostgreSQL).
    prefetched: Prefetched,
}

impl AcmeServer {
    pub fn new(
        store: Store,
        nonces: NonceService,
        validator: Arc<Validator>,
        ca: Arc<Ca>,
        revocation: Arc<Revocation>,
        settings: AcmeSettings,
    ) -> AcmeServer {
        AcmeServer {
            prefix: "/acme".into(),
            store,
            nonces,
            validator,
            ca,
            revocation,
            settings,
            account_keys: jws::AccountKeys::default(),
        }
    }

    /// Serve this directory under `/acme/NAME` instead of `/acme`.
    pub fn with_name(mut self, name: &str) -> AcmeServer {
        self.prefix = format!("/acme/{name}");
        self
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Serve one request under `/acme/`. `origin` is `https://host[:port]` as the client addressed us.
    pub async fn handle(
        self: &Arc<Self>,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        body: Bytes,
        origin: &str,
    ) -> Reply {
        let links = Links::new(origin, &self.prefix);
        let result = self.route(method, path, headers, body, &links).await;
        let reply = match result {
            Ok(r) => r,
            Err(p) => {
                if p.status_code().is_server_error() {
                    tracing::error!(problem = %p, "acme request failed");
                } else {
                    tracing::info!(problem = %p, "acme request refused");
                }
                Reply::problem(&p)
            }
        };
        self.finish(reply, &links)
    }

    /// A problem raised before the request reached this directory's handlers (an oversized
    /// body, say), answered like every other ACME error.
    pub fn error_reply(&self, problem: &Problem, origin: &str) -> Reply {
        tracing::info!(problem = %problem, "acme request refused");
        self.finish(Reply::problem(problem), &Links::new(origin, &self.prefix))
    }

    /// Headers every ACME response carries: a fresh nonce, the index link, no caching.
    fn finish(&self, mut reply: Reply, links: &Links) -> Reply {
        reply
            .headers
            .push((HeaderName::from_static("replay-nonce"), self.nonces.issue()));
        reply.headers.push((
            http::header::LINK,
            format!("<{}>;rel=\"index\"", links.directory()),
        ));
        reply
            .headers
            .push((http::header::CACHE_CONTROL, "no-store".into()));
        reply
    }

    async fn route(
        self: &Arc<Self>,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        body: Bytes,
        links: &Links,
    ) -> AcmeResult {
        let rest = path
            .strip_prefix(self.prefix.as_str())
            .and_then(|r| r.strip_prefix('/'))
            .unwrap_or("");
        let segments: Vec<&str> = rest.split('/').collect();
        match (method, segments.as_slice()) {
            (&Method::GET, ["directory"]) => Ok(self.directory(links)),
            (&Method::GET, ["renewal-info", cert_id]) => self.renewal_info(cert_id).await,
            (&Method::HEAD, ["new-nonce"]) => Ok(Reply::empty(StatusCode::OK)),
            (&Method::GET, ["new-nonce"]) => Ok(Reply::empty(StatusCode::NO_CONTENT)),
            (&Method::POST, _) => {
                let url = links.url_of(path);
                let auth = self
                    .authenticate(headers, &body, &url, links, segments.as_slice())
                    .await?;
                self.dispatch(segments.as_slice(), auth, links).await
            }
            (_, ["directory"]) | (_, ["new-nonce"]) => Err(Problem::method_not_allowed(format!(
                "{method} is not allowed here"
            ))),
            (&Method::GET, _) => Err(Problem::method_not_allowed(
                "ACME resources are fetched with POST-as-GET (RFC 8555 §6.3)",
            )),
            _ => Err(Problem::method_not_allowed(format!(
                "{method} is not allowed here"
            ))),
        }
    }

    fn directory(&self, links: &Links) -> Reply {
        let mut meta = Map::new();
        if let Some(tos) = &self.settings.terms_of_service {
            meta.insert("termsOfService".into(), json!(tos));
        }
        meta.insert(
            "externalAccountRequired".into(),
            json!(self.settings.eab_policy != eab::EabPolicy::NotRequired),
        );
        // RFC 8555 §7.1.1: the names CAA issue records must carry for this CA to issue.
        if !self.settings.caa_identities.is_empty() {
            meta.insert("caaIdentities".into(), json!(self.settings.caa_identities));
        }
        let profiles: Map<String, Value> = self
            .settings
            .profiles
            .iter()
            .map(|(name, p)| (name.clone(), json!(p.description)))
            .collect();
        meta.insert("profiles".into(), Value::Object(profiles));
        let mut dir = json!({
            "newNonce": links.new_nonce(),
            "newAccount": links.new_account(),
            "newOrder": links.new_order(),
            "revokeCert": links.revoke_cert(),
            "keyChange": links.key_change(),
            "renewalInfo": links.renewal_info(),
            "meta": meta,
        });
        if self.settings.pre_authorization {
            dir["newAuthz"] = json!(links.new_authz());
        }
        // The directory itself carries no nonce requirement, but a nonce does no harm.
        Reply::json(StatusCode::OK, &dir)
    }

    /// RFC 8555 §6.2–§6.5: media type, JWS shape, url, key, signature, then the nonce.
    async fn authenticate(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        url: &str,
        links: &Links,
        segments: &[&str],
    ) -> Result<Authenticated, Problem> {
        let content_type = headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if content_type.split(';').next().map(str::trim) != Some("application/jose+json") {
            return Err(Problem::unsupported_media_type(
                "POST requests must have Content-Type application/jose+json",
            ));
        }
        let jws = Jws::parse(body)?;
        let nonce = jws
            .nonce
            .clone()
            .ok_or_else(|| Problem::bad_nonce("JWS has no anti-replay nonce"))?;
        // Cheap check before any database work. Redeemed after the signature verifies, or, in
        // the database, by the statement that reads the signer's account.
        let (nonce_expires, _) = self.nonces.check(&nonce)?;
        if self.settings.test_mode.rejects_this_nonce() {
            return Err(Problem::bad_nonce(
                "test mode: this valid nonce was refused on purpose",
            ));
        }
        match &jws.url {
            None => return Err(Problem::malformed("JWS protected header has no url")),
            Some(u) if u != url => {
                return Err(Problem::unauthorized(format!(
                    "JWS url {u:?} is not the request URL {url:?}"
                )))
            }
            Some(_) => {}
        }
        let jwk_allowed = matches!(segments, ["new-account"] | ["revoke-cert"]);
        let mut prefetched = Prefetched::Nothing;
        let (account, redeemed) = match &jws.key {
            KeyRef::Jwk(jwk) => {
                if !jwk_allowed {
                    return Err(Problem::malformed(
                        "this resource needs a kid (account URL), not a jwk",
                    ));
                }
                jws.verify(jwk)?;
                (None, None)
            }
            KeyRef::Kid(kid) => {
                if matches!(segments, ["new-account"]) {
                    return Err(Problem::malformed(
                        "newAccount must be signed with a jwk, not a kid",
                    ));
                }
                let id = links.account_id_of(kid).ok_or_else(|| {
                    Problem::account_does_not_exist(format!(
                        "kid {kid:?} is not an account URL of this server"
                    ))
                })?;
                // With nonces redeemed in the database (replicas), the account, and the
                // resource the URL names, are read by the statement that redeems the nonce: one
                // round trip instead of three.
                let (account, redeemed) = if self.nonces.redeemed_in_database() {
                    let (account, first, read) = self
                        .store
                        .account_redeeming_nonce(id, &nonce, nonce_expires, prefetch(segments))
                        .await?;
                    prefetched = read;
                    (account, Some(first))
                } else {
                    (self.store.account(id).await?, None)
                };
                let account = account.ok_or_else(|| {
                    Problem::account_does_not_exist(format!("account {kid} does not exist"))
                })?;
                jws.verify_with(&*self.account_keys.get(&jws.alg, &account.jwk)?)?;
                (Some(account), redeemed)
            }
        };
        match redeemed {
            Some(first) => nonce::first_redemption(first)?,
            None => self.nonces.redeem(&self.store, &nonce).await?,
        }
        if let Some(a) = &account {
            if a.status != "valid" {
                return Err(Problem::unauthorized(format!("account is {}", a.status)));
            }
        }
        Ok(Authenticated {
            jws,
            account,
            prefetched,
        })
    }

    async fn dispatch(
        self: &Arc<Self>,
        segments: &[&str],
        mut auth: Authenticated,
        links: &Links,
    ) -> AcmeResult {
        match segments {
            ["new-account"] => self.new_account(auth, links).await,
            ["acct", id] => self.update_account(id, auth, links).await,
            ["acct", id, "orders"] => self.account_orders(id, 0, auth, links).await,
            ["acct", id, "orders", page] => {
                let page = page
                    .parse()
                    .map_err(|_| Problem::not_found("no such page"))?;
                self.account_orders(id, page, auth, links).await
            }
            ["new-order"] => self.new_order(auth, links).await,
            ["new-authz"] if self.settings.pre_authorization => self.new_authz(auth, links).await,
            ["order", id] => {
                let mut prefetched = std::mem::take(&mut auth.prefetched);
                let account = require_account(&auth)?;
                let (order, authzs) = self.owned_order(id, account, &mut prefetched).await?;
                Ok(Self::order_reply(&order, &authzs, links, StatusCode::OK))
            }
            ["order", id, "finalize"] => self.finalize(id, auth, links).await,
            ["authz", id] => self.authorization(id, auth, links).await,
            ["chall", id] => self.challenge(id, auth, links).await,
            ["cert", serial] => self.certificate(serial, 0, auth, links).await,
            ["cert", serial, alternate] => {
                let n = alternate
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| Problem::not_found("no such certificate chain"))?;
                self.certificate(serial, n, auth, links).await
            }
            ["revoke-cert"] => self.revoke_certificate(auth).await,
            ["key-change"] => self.key_change(auth, links).await,
            _ => Err(Problem::not_found("no such ACME resource")),
        }
    }

    // ---- accounts, §7.3 ----

    async fn new_account(&self, auth: Authenticated, links: &Links) -> AcmeResult {
        let KeyRef::Jwk(jwk) = &auth.jws.key else {
            return Err(Problem::malformed("newAccount must be signed with a jwk"));
        };
        let req: wire::NewAccount = auth.jws.json_payload()?;
        let thumbprint = jws::thumbprint(jwk)?;
        let binding = match &req.external_account_binding {
            Some(eab) => Some(self.check_binding(eab, jwk, links).await?),
            None if self.settings.eab_policy == eab::EabPolicy::AlwaysRequired => {
                return Err(Problem::external_account_required(
                    "this directory requires an external account binding",
                ))
            }
            None => None,
        };
        if let Some(existing) = self.store.account_by_thumbprint(&thumbprint).await? {
            if existing.status != "valid" {
                return Err(Problem::unauthorized(format!(
                    "the account of this key is {}",
                    existing.status
                )));
            }
            return Ok(
                Reply::json(StatusCode::OK, &wire::account_json(&existing, links))
                    .header(http::header::LOCATION, links.account(&existing.id)),
            );
        }
        if req.only_return_existing {
            return Err(Problem::account_does_not_exist(
                "no account exists for this key",
            ));
        }
        if self.settings.terms_of_service.is_some() && !req.terms_of_service_agreed {
            return Err(Problem::user_action_required(
                "the terms of service must be agreed to (termsOfServiceAgreed)",
            ));
        }
        if binding.is_none() && self.settings.eab_policy == eab::EabPolicy::NewAccountRequired {
            return Err(Problem::external_account_required(
                "this directory requires an external account binding for new accounts",
            ));
        }
        let contact = wire::check_contacts(req.contact.as_deref().unwrap_or(&[]))?;
        let account = AccountRow {
            id: ids::object_id(),
            thumbprint: thumbprint.clone(),
            jwk: Value::Object(jws::public_jwk(jwk)).to_string(),
            status: "valid".into(),
            contact: json!(contact).to_string(),
            eab_kid: binding.clone(),
            created_at: now(),
        };
        let outcome = self
            .store
            .insert_account(&account, binding.as_deref())
            .await?;
        if outcome == crate::store::NewAccountOutcome::EabUsed {
            return Err(Problem::unauthorized(
                "this external account binding key was used already",
            ));
        }
        if outcome == crate::store::NewAccountOutcome::KeyExists {
            // Another request registered this key at the same moment: return that account.
            let existing = self
                .store
                .account_by_thumbprint(&thumbprint)
                .await?
                .ok_or_else(|| Problem::server_internal("account vanished during registration"))?;
            return Ok(
                Reply::json(StatusCode::OK, &wire::account_json(&existing, links))
                    .header(http::header::LOCATION, links.account(&existing.id)),
            );
        }
        tracing::info!(account = %account.id, "account created");
        Ok(
            Reply::json(StatusCode::CREATED, &wire::account_json(&account, links))
                .header(http::header::LOCATION, links.account(&account.id)),
        )
    }

    /// Verify an external account binding; returns its key id.
    async fn check_binding(
        &self,
        eab: &Value,
        jwk: &Map<String, Value>,
        links: &Links,
    ) -> Result<String, Problem> {
        let binding = eab::parse(eab, &links.new_account(), jwk)?;
        let SealedEabKey {
            sealed_key,
            directory,
            bound_account,
        } = self
            .store
            .eab_key(&binding.kid)
            .await?
            .ok_or_else(|| Problem::unauthorized("unknown external account binding key id"))?;
        if directory != self.settings.directory {
            return Err(Problem::unauthorized(
                "this external account binding key is for another directory",
            ));
        }
        let key = self
            .settings
            .kek
            .open_pem(&sealed_key, eab::SEALED_AAD)
            .map_err(|_| {
                Problem::server_internal("the external account binding key cannot be unsealed")
            })?;
        binding.verify(&key)?;
        if bound_account.is_some() {
            return Err(Problem::unauthorized(
                "this external account binding key was used already",
            ));
        }
        Ok(binding.kid)
    }

    async fn update_account(&self, id: &str, auth: Authenticated, links: &Links) -> AcmeResult {
        let account = require_account(&auth)?;
        if account.id != id {
            return Err(Problem::unauthorized(
                "the request's kid does not match the account URL",
            ));
        }
        if !auth.jws.is_post_as_get() {
            let req: wire::AccountUpdate = auth.jws.json_payload()?;
            if let Some(status) = req.status.as_deref() {
                if status != "deactivated" {
                    return Err(Problem::malformed(
                        "an account's status can only be set to \"deactivated\"",
                    ));
                }
                self.store.deactivate_account(id).await?;
                tracing::info!(account = %id, "account deactivated");
            } else if let Some(contact) = req.contact {
                let contact = wire::check_contacts(&contact)?;
                self.store
                    .update_account_contact(id, &json!(contact).to_string())
                    .await?;
            }
        }
        let account = self
            .store
            .account(id)
            .await?
            .ok_or_else(|| Problem::account_does_not_exist("account vanished"))?;
        Ok(
            Reply::json(StatusCode::OK, &wire::account_json(&account, links))
                .header(http::header::LOCATION, links.account(id)),
        )
    }

    /// RFC 8555 §7.1.2.1: the account's orders, newest first, 100 a page, `Link: rel="next"`.
    async fn account_orders(
        &self,
        id: &str,
        page: i64,
        auth: Authenticated,
        links: &Links,
    ) -> AcmeResult {
        const PAGE: i64 = 100;
        let account = require_account(&auth)?;
        if account.id != id {
            return Err(Problem::unauthorized(
                "an account can only list its own orders",
            ));
        }
        let orders = self
            .store
            .orders_of_account(id, PAGE + 1, page.max(0) * PAGE)
            .await?;
        let urls: Vec<String> = orders
            .iter()
            .take(PAGE as usize)
            .map(|o| links.order(&o.id))
            .collect();
        let mut reply = Reply::json(StatusCode::OK, &json!({ "orders": urls }));
        if orders.len() as i64 > PAGE {
            let next = format!("{}/{}", links.account_orders(id), page.max(0) + 1);
            reply = reply.header(http::header::LINK, format!("<{next}>;rel=\"next\""));
        }
        Ok(reply)
    }

    /// RFC 8555 §7.4.1: an authorization before any order (not for wildcards).
    async fn new_authz(&self, auth: Authenticated, links: &Links) -> AcmeResult {
        let account = require_account(&auth)?;
        let req: wire::NewAuthz = auth.jws.json_payload()?;
        let idents = wire::check_identifiers(std::slice::from_ref(&req.identifier))?;
        let Some(ident) = idents.first() else {
            return Err(Problem::malformed("an identifier is required"));
        };
        if matches!(ident, Ident::Dns(d) if d.starts_with("*.")) {
            return Err(Problem::rejected_identifier(
                "wildcard identifiers cannot be pre-authorized",
            ));
        }
        self.settings.identifier_policy.check(ident)?;
        self.check_rate_limits(account, std::slice::from_ref(ident))
            .await?;
        let kinds: &[&str] = match ident {
            Ident::Dns(_) => &["http-01", "dns-01", "tls-alpn-01"],
            Ident::Ip(_) => &["http-01", "tls-alpn-01"],
        };
        let created = now();
        let authz = NewAuthz {
            id: ids::object_id(),
            id_type: ident.kind().into(),
            id_value: ident.value(),
            wildcard: false,
            expires: created + self.settings.order_lifetime_secs,
            challenges: kinds
                .iter()
                .map(|k| (ids::object_id(), k.to_string(), ids::challenge_token()))
                .collect(),
        };
        self.store
            .insert_authz(&account.id, &authz, created)
            .await?;
        let (row, challenges) = self
            .owned_authz(&authz.id, account, &mut Prefetched::Nothing)
            .await?;
        Ok(Reply::json(
            StatusCode::CREATED,
            &wire::authz_json(&row, &challenges, links, created),
        )
        .header(http::header::LOCATION, links.authz(&authz.id)))
    }

    async fn check_caa(&self, domain: &str, caa: &CaaContext, method: &str) -> Result<(), Problem> {
        let query = crate::va::CaaQuery {
            domain,
            wildcard: caa.wildcard,
            account_uri: &caa.account_uri,
            method,
        };
        self.validator
            .check_caa(&query, &self.settings.caa_identities)
            .await
    }

    /// RFC 8659 at finalize: CAA is checked again for DNS authorizations validated longer ago
    /// than `caa_recheck_secs`.
    async fn recheck_caa(&self, authzs: &[AuthzRow], links: &Links) -> Result<(), Problem> {
        let at = now();
        for authz in authzs.iter().filter(|a| a.id_type == "dns") {
            let Some((kind, validated)) = &authz.validation else {
                continue;
            };
            if at - validated <= self.settings.caa_recheck_secs {
                continue;
            }
            let caa = CaaContext {
                account_uri: links.account(&authz.account_id),
                wildcard: authz.wildcard,
            };
            self.check_caa(&authz.id_value, &caa, kind).await?;
        }
        Ok(())
    }

    /// `rateLimited` (429, with Retry-After) past the configured hourly limits.
    async fn check_rate_limits(
        &self,
        account: &AccountRow,
        idents: &[Ident],
    ) -> Result<(), Problem> {
        let limits = &self.settings.rate_limits;
        let since = now() - 3600;
        if limits.orders_per_account_per_hour > 0 {
            let n = self.store.orders_since(&account.id, since).await?;
            if n >= i64::from(limits.orders_per_account_per_hour) {
                return Err(Problem::rate_limited(format!(
                    "this account created {n} orders in the last hour; the limit is {}",
                    limits.orders_per_account_per_hour
                ))
                .with_retry_after(self.store.retry_after_orders(&account.id, since).await?));
            }
        }
        if limits.authorizations_per_identifier_per_hour > 0 {
            for ident in idents {
                let value = ident.value();
                let value = value.trim_start_matches("*.");
                let n = self.store.authzs_since(ident.kind(), value, since).await?;
                if n >= i64::from(limits.authorizations_per_identifier_per_hour) {
                    return Err(Problem::rate_limited(format!(
                        "{value} had {n} authorizations in the last hour; the limit is {}",
                        limits.authorizations_per_identifier_per_hour
                    ))
                    .with_retry_after(600));
                }
            }
        }
        Ok(())
    }

    /// RFC 9773 §4: the suggested renewal window of a certificate, by ARI certID.
    async fn renewal_info(&self, cert_id: &str) -> AcmeResult {
        let (_, serial) = wire::parse_ari_cert_id(cert_id)?;
        let cert = self
            .store
            .certificate(&serial)
            .await?
            .filter(|c| c.status == "issued")
            .ok_or_else(|| Problem::not_found("no certificate with that serial"))?;
        let der = cert.der.clone().unwrap_or_default();
        let (_, parsed) = x509_parser::parse_x509_certificate(&der)
            .map_err(|_| Problem::server_internal("stored certificate is unreadable"))?;
        if wire::ari_cert_id(&parsed).as_deref() != Some(cert_id) {
            return Err(Problem::not_found("no certificate with that certID"));
        }
        let not_before = parsed.validity().not_before.timestamp();
        let not_after = parsed.validity().not_after.timestamp();
        let (start, end) = match cert.revoked_at {
            // Revoked: renew now (a window already open).
            Some(_) => (now() - 3600, now() - 60),
            None => {
                let lifetime = (not_after - not_before).max(1);
                (not_before + lifetime * 2 / 3, not_before + lifetime * 5 / 6)
            }
        };
        Ok(Reply::json(
            StatusCode::OK,
            &json!({"suggestedWindow": {"start": rfc3339(start), "end": rfc3339(end)}}),
        )
        .header(http::header::RETRY_AFTER, "21600"))
    }

    /// RFC 9773 §5: `replaces` names a certificate of this account, shares an identifier with
    /// the new order, and is not replaced by another order already.
    async fn check_replaces(
        &self,
        cert_id: &str,
        account: &AccountRow,
        idents: &[Ident],
    ) -> Result<(), Problem> {
        let (_, serial) = wire::parse_ari_cert_id(cert_id)?;
        let cert = self
            .store
            .certificate(&serial)
            .await?
            .filter(|c| {
                c.status == "issued" && c.account_id.as_deref() == Some(account.id.as_str())
            })
            .ok_or_else(|| Problem::malformed("replaces names no certificate of this account"))?;
        let der = cert.der.clone().unwrap_or_default();
        let (_, parsed) = x509_parser::parse_x509_certificate(&der)
            .map_err(|_| Problem::server_internal("stored certificate is unreadable"))?;
        if wire::ari_cert_id(&parsed).as_deref() != Some(cert_id) {
            return Err(Problem::malformed(
                "replaces names no certificate of this account",
            ));
        }
        let names = crate::ca::certificate_idents(&parsed);
        if !idents.iter().any(|i| names.contains(i)) {
            return Err(Problem::malformed(
                "the replaced certificate shares no identifier with this order",
            ));
        }
        if self.store.order_replacing(cert_id).await?.is_some() {
            return Err(Problem::already_replaced(
                "that certificate has been replaced by another order already",
            ));
        }
        Ok(())
    }

    // ---- orders, §7.4 ----

    async fn new_order(&self, auth: Authenticated, links: &Links) -> AcmeResult {
        let account = require_account(&auth)?;
        let req: wire::NewOrder = auth.jws.json_payload()?;
        if req.not_before.is_some() || req.not_after.is_some() {
            return Err(Problem::malformed(
                "notBefore and notAfter are not supported; the profile sets the validity",
            ));
        }
        let idents = wire::check_identifiers(&req.identifiers)?;
        let profile_name = req
            .profile
            .clone()
            .unwrap_or_else(|| self.settings.default_profile.clone());
        let profile = self.settings.profiles.get(&profile_name).ok_or_else(|| {
            Problem::invalid_profile(format!(
                "profile {profile_name:?} is not offered; see the directory's meta.profiles"
            ))
        })?;
        if let Some(ident) = idents.iter().find(|i| !profile.allows(i.kind())) {
            return Err(Problem::rejected_identifier(format!(
                "profile {profile_name:?} does not allow {} identifiers",
                ident.kind()
            )));
        }
        for ident in &idents {
            self.settings.identifier_policy.check(ident)?;
        }
        if let Some(kid) = &account.eab_kid {
            if let Some(policy) = self.store.eab_policy(kid).await? {
                let policy: eab::BindingPolicy = serde_json::from_str(&policy).map_err(|_| {
                    Problem::server_internal("the binding's stored policy is unreadable")
                })?;
                policy.check(&idents, &profile_name)?;
            }
        }
        self.check_rate_limits(account, &idents).await?;
        if let Some(cert_id) = &req.replaces {
            self.check_replaces(cert_id, account, &idents).await?;
        }
        let created = now();
        let identifiers_json =
            serde_json::to_string(&wire::identifiers_json(&idents)).unwrap_or_default();
        let reuse_key = |ident: &Ident| match ident {
            Ident::Dns(d) if d.starts_with("*.") => (d[2..].to_string(), true),
            other => (other.value(), false),
        };
        let valid_until = created + 86400;
        // The orders to reuse and the first identifier's authorization, in one round trip.
        let (candidates, first_authz) = match idents.first() {
            Some(first) => {
                let (value, wildcard) = reuse_key(first);
                let orders = OrderReuse {
                    account_id: &account.id,
                    directory: &self.settings.directory,
                    identifiers: &identifiers_json,
                    profile_name: &profile_name,
                    at: created,
                };
                let authz = AuthzReuse {
                    account_id: &account.id,
                    id_type: first.kind(),
                    id_value: &value,
                    wildcard,
                    valid_until,
                };
                self.store.reuse_candidates(&orders, &authz).await?
            }
            None => (Vec::new(), None),
        };
        // RFC 8555 §7.4 lets a server hand back an existing order: a pending or ready order of
        // this account for the same identifiers and profile is reused rather than duplicated.
        if req.replaces.is_none() {
            for existing in candidates {
                let authzs = self.store.authzs_of_order(&existing.id).await?;
                if matches!(
                    Self::order_status(&existing, &authzs, created),
                    "pending" | "ready"
                ) {
                    return Ok(Self::order_reply(
                        &existing,
                        &authzs,
                        links,
                        StatusCode::CREATED,
                    ));
                }
            }
        }
        let expires = created + self.settings.order_lifetime_secs;
        let mut authzs = Vec::with_capacity(idents.len());
        // What the order's reply shows of each authorization, without reading them back.
        let mut authz_rows = Vec::with_capacity(idents.len());
        let mut first_authz = Some(first_authz);
        for ident in &idents {
            let (value, wildcard) = reuse_key(ident);
            let reuse = match first_authz.take() {
                Some(read) => read,
                None => {
                    self.store
                        .reusable_authz(&AuthzReuse {
                            account_id: &account.id,
                            id_type: ident.kind(),
                            id_value: &value,
                            wildcard,
                            valid_until,
                        })
                        .await?
                }
            };
            let kinds: &[&str] = match ident {
                _ if wildcard => &["dns-01"],
                Ident::Dns(_) => &["http-01", "dns-01", "tls-alpn-01"],
                Ident::Ip(_) => &["http-01", "tls-alpn-01"],
            };
            authzs.push(match reuse {
                Some(row) => {
                    let id = row.id.clone();
                    authz_rows.push(row);
                    OrderAuthz::Reuse(id)
                }
                None => {
                    let new = NewAuthz {
                        id: ids::object_id(),
                        id_type: ident.kind().into(),
                        id_value: value,
                        wildcard,
                        expires,
                        challenges: kinds
                            .iter()
                            .map(|k| (ids::object_id(), k.to_string(), ids::challenge_token()))
                            .collect(),
                    };
                    authz_rows.push(new.row(&account.id));
                    OrderAuthz::New(new)
                }
            });
        }
        let order = OrderRow {
            id: ids::object_id(),
            account_id: account.id.clone(),
            directory: self.settings.directory.clone(),
            status: "pending".into(),
            expires,
            identifiers: identifiers_json,
            not_before: None,
            not_after: None,
            error: None,
            profile_name: Some(profile_name),
            replaces: req.replaces.clone(),
            profile: None,
            certificate_serial: None,
            processing_since: None,
            created_at: created,
        };
        self.store.insert_order(&order, &authzs).await?;
        tracing::info!(order = %order.id, account = %account.id, identifiers = %order.identifiers, "order created");
        Ok(Self::order_reply(
            &order,
            &authz_rows,
            links,
            StatusCode::CREATED,
        ))
    }

    /// An order of `account`, with its authorizations.
    async fn owned_order(
        &self,
        id: &str,
        account: &AccountRow,
        prefetched: &mut Prefetched,
    ) -> Result<(OrderRow, Vec<AuthzRow>), Problem> {
        let found = match prefetched.take_order(id) {
            Some(found) => found,
            None => self.store.order_with_authzs(id).await?,
        };
        let (order, authzs) = found.ok_or_else(|| Problem::not_found("no such order"))?;
        if order.account_id != account.id {
            return Err(Problem::unauthorized(
                "this order belongs to another account",
            ));
        }
        Ok((order, authzs))
    }

    /// The order's status as RFC 8555 §7.1.6 defines it, derived from its authorizations while
    /// it has not been finalized.
    fn order_status(order: &OrderRow, authzs: &[AuthzRow], at: i64) -> &'static str {
        match order.status.as_str() {
            "valid" => "valid",
            "processing" => "processing",
            "invalid" => "invalid",
            _ if order.expires <= at => "invalid",
            _ => {
                let statuses: Vec<&str> =
                    authzs.iter().map(|a| wire::authz_status(a, at)).collect();
                if statuses.iter().any(|s| *s != "valid" && *s != "pending") {
                    "invalid"
                } else if !statuses.is_empty() && statuses.iter().all(|s| *s == "valid") {
                    "ready"
                } else {
                    "pending"
                }
            }
        }
    }

    /// The order as RFC 8555 §7.1.3 shows it, given its authorizations.
    fn order_reply(
        order: &OrderRow,
        authzs: &[AuthzRow],
        links: &Links,
        status: StatusCode,
    ) -> Reply {
        let order_status = Self::order_status(order, authzs, now());
        let mut body = json!({
            "status": order_status,
            "expires": rfc3339(order.expires),
            "identifiers": serde_json::from_str::<Value>(&order.identifiers).unwrap_or(Value::Null),
            "authorizations": authzs.iter().map(|a| links.authz(&a.id)).collect::<Vec<_>>(),
            "finalize": links.finalize(&order.id),
        });
        if let Some(serial) = &order.certificate_serial {
            body["certificate"] = json!(links.certificate(serial));
        }
        if let Some(profile) = &order.profile_name {
            body["profile"] = json!(profile);
        }
        if let Some(replaces) = &order.replaces {
            body["replaces"] = json!(replaces);
        }
        if let Some(err) = &order.error {
            body["error"] = serde_json::from_str(err).unwrap_or(Value::Null);
        }
        let mut reply =
            Reply::json(status, &body).header(http::header::LOCATION, links.order(&order.id));
        if order_status == "processing" {
            reply = reply.header(http::header::RETRY_AFTER, "1");
        }
        reply
    }

    async fn finalize(&self, id: &str, mut auth: Authenticated, links: &Links) -> AcmeResult {
        let mut prefetched = std::mem::take(&mut auth.prefetched);
        let account = require_account(&auth)?;
        let (order, authzs) = self.owned_order(id, account, &mut prefetched).await?;
        let req: wire::Finalize = auth.jws.json_payload()?;
        let status = Self::order_status(&order, &authzs, now());
        if status != "ready" {
            return Err(Problem::order_not_ready(format!(
                "order is {status}, not ready"
            )));
        }
        let csr_der = URL_SAFE_NO_PAD
            .decode(req.csr.trim_end_matches('='))
            .map_err(|_| Problem::bad_csr("csr is not base64url"))?;
        let csr = check_csr(&csr_der).map_err(|e| match e {
            CsrError::Bad(m) => Problem::bad_csr(m),
            CsrError::WeakKey(m) => Problem::bad_public_key(m),
        })?;
        let wanted: BTreeSet<Ident> = authzs.iter().filter_map(wire::authz_ident).collect();
        if csr.identifiers != wanted {
            return Err(Problem::bad_csr(format!(
                "the CSR names {:?}, the order {:?}",
                csr.identifiers.iter().map(Ident::value).collect::<Vec<_>>(),
                wanted.iter().map(Ident::value).collect::<Vec<_>>()
            )));
        }
        self.recheck_caa(&authzs, links).await?;
        let profile_name = order
            .profile_name
            .as_deref()
            .unwrap_or(&self.settings.default_profile);
        let profile = self
            .settings
            .profiles
            .get(profile_name)
            .cloned()
            .ok_or_else(|| {
                Problem::invalid_profile(format!("profile {profile_name:?} is no longer offered"))
            })?;
        let snapshot = serde_json::to_string(&profile).unwrap_or_default();
        // ready → processing, exactly once, made by the issuance with its first record.
        let claim = Claim {
            order_id: &order.id,
            profile_snapshot: &snapshot,
            csr: &csr_der,
            now: now(),
        };
        let issued = match self
            .ca
            .issue_claiming(&csr, &profile, claim, Some(&account.id))
            .await
        {
            Ok(issued) => {
                tracing::info!(order = %order.id, serial = %issued.serial, "certificate issued");
                Some(issued.serial)
            }
            Err(crate::ca::IssueError::ClaimLost) => {
                return Err(Problem::order_not_ready("order is already being finalized"));
            }
            Err(crate::ca::IssueError::Pending) => None,
            Err(crate::ca::IssueError::Store(crate::store::StoreError::OrderSettled(_))) => {
                tracing::info!(order = %order.id, "another issuance settled the order first; this certificate is not served");
                None
            }
            Err(e) => {
                tracing::error!(order = %order.id, error = %e, "issuance failed");
                let problem = Problem::server_internal("the certificate could not be issued");
                self.store
                    .fail_order(&order.id, &problem.to_json().to_string())
                    .await?;
                None
            }
        };
        let order = match issued {
            // The order is what this issuance made it: no need to read it back.
            Some(serial) => OrderRow {
                status: "valid".into(),
                certificate_serial: Some(serial),
                ..order
            },
            None => self
                .store
                .order(id)
                .await?
                .ok_or_else(|| Problem::not_found("no such order"))?,
        };
        Ok(Self::order_reply(&order, &authzs, links, StatusCode::OK))
    }

    /// Orders left `processing` past `cutoff` (a crash, a kill -9, a stalled backend): finish
    /// them from what the store recorded, or issue again with a fresh serial, or fail them.
    pub async fn recover_stale_orders(
        &self,
        cutoff: i64,
    ) -> Result<usize, crate::store::StoreError> {
        let stale = self
            .store
            .stale_processing_orders(&self.settings.directory, cutoff)
            .await?;
        let mut recovered = 0;
        for order in stale {
            let Some(since) = order.processing_since else {
                continue;
            };
            if !self
                .store
                .claim_stale_order(&order.id, since, now())
                .await?
            {
                continue; // another replica took it
            }
            recovered += 1;
            if let Some(cert) = self.store.certificate_of_order(&order.id).await? {
                self.store.mark_order_valid(&order.id, &cert.serial).await?;
                tracing::info!(order = %order.id, serial = %cert.serial, "recovered: certificate was stored before the stop");
                continue;
            }
            let abandoned = self.store.abandon_tbs_of_order(&order.id).await?;
            let csr = self
                .store
                .order_csr(&order.id)
                .await?
                .and_then(|der| check_csr(&der).ok());
            let profile: Option<Profile> = order
                .profile
                .as_deref()
                .and_then(|p| serde_json::from_str(p).ok());
            let (Some(csr), Some(profile)) = (csr, profile) else {
                let problem =
                    Problem::server_internal("issuance was interrupted and cannot be resumed");
                self.store
                    .fail_order(&order.id, &problem.to_json().to_string())
                    .await?;
                continue;
            };
            match self
                .ca
                .issue(&csr, &profile, Some(&order.id), Some(&order.account_id))
                .await
            {
                Ok(issued) => {
                    tracing::info!(order = %order.id, serial = %issued.serial, abandoned, "recovered: issued again with a fresh serial")
                }
                Err(crate::ca::IssueError::Store(crate::store::StoreError::OrderSettled(_))) => {
                    tracing::info!(order = %order.id, "recovery: the interrupted issuance settled the order first");
                }
                Err(e) => {
                    tracing::error!(order = %order.id, error = %e, "recovery issuance failed");
                    let problem = Problem::server_internal("the certificate could not be issued");
                    self.store
                        .fail_order(&order.id, &problem.to_json().to_string())
                        .await?;
                }
            }
        }
        Ok(recovered)
    }

    // ---- authorizations and challenges, §7.5 ----

    /// An authorization of `account`, with its challenges.
    async fn owned_authz(
        &self,
        id: &str,
        account: &AccountRow,
        prefetched: &mut Prefetched,
    ) -> Result<(AuthzRow, Vec<ChallengeRow>), Problem> {
        let found = match prefetched.take_authz(id) {
            Some(found) => found,
            None => self.store.authz_with_challenges(id).await?,
        };
        let (authz, challenges) =
            found.ok_or_else(|| Problem::not_found("no such authorization"))?;
        Self::check_owner(&authz, account)?;
        Ok((authz, challenges))
    }

    fn check_owner(authz: &AuthzRow, account: &AccountRow) -> Result<(), Problem> {
        if authz.account_id != account.id {
            return Err(Problem::unauthorized(
                "this authorization belongs to another account",
            ));
        }
        Ok(())
    }

    async fn authorization(&self, id: &str, mut auth: Authenticated, links: &Links) -> AcmeResult {
        let mut prefetched = std::mem::take(&mut auth.prefetched);
        let account = require_account(&auth)?;
        let mut found = self.owned_authz(id, account, &mut prefetched).await?;
        if !auth.jws.is_post_as_get() {
            let req: wire::AuthzUpdate = auth.jws.json_payload()?;
            if req.status.as_deref() != Some("deactivated") {
                return Err(Problem::malformed(
                    "an authorization's status can only be set to \"deactivated\"",
                ));
            }
            self.store.deactivate_authz(id).await?;
            found = self
                .owned_authz(id, account, &mut Prefetched::Nothing)
                .await?;
        }
        let (authz, challenges) = found;
        let body = wire::authz_json(&authz, &challenges, links, now());
        let mut reply = Reply::json(StatusCode::OK, &body);
        if challenges.iter().any(|c| c.status == "processing") {
            reply = reply.header(http::header::RETRY_AFTER, "1");
        }
        Ok(reply)
    }

    async fn challenge(
        self: &Arc<Self>,
        id: &str,
        mut auth: Authenticated,
        links: &Links,
    ) -> AcmeResult {
        let account = require_account(&auth)?.clone();
        let found = match auth.prefetched.take_challenge(id) {
            Some(found) => found,
            None => self.store.challenge_with_authz(id).await?,
        };
        let (mut chall, authz) = found.ok_or_else(|| Problem::not_found("no such challenge"))?;
        Self::check_owner(&authz, &account)?;
        if !auth.jws.is_post_as_get() {
            // The payload is `{}` (RFC 8555 §7.5.1); anything else JSON is ignored as the RFC allows.
            let _: Value = auth.jws.json_payload()?;
            let authz_status = wire::authz_status(&authz, now());
            if authz_status != "pending" {
                if chall.status == "pending" {
                    return Err(Problem::malformed(format!(
                        "the authorization is {authz_status}"
                    )));
                }
            } else if self.store.start_challenge(&chall.id).await? {
                chall.status = "processing".into();
                // A wildcard authorization is validated for its base name.
                let ident = wire::authz_ident(&authz)
                    .map(|i| match i {
                        Ident::Dns(d) => Ident::Dns(d.trim_start_matches("*.").to_string()),
                        ip => ip,
                    })
                    .ok_or_else(|| Problem::server_internal("bad stored identifier"))?;
                let thumbprint = serde_json::from_str::<Map<String, Value>>(&account.jwk)
                    .map_err(|_| Problem::server_internal("stored account key is unreadable"))
                    .and_then(|jwk| jws::thumbprint(&jwk))?;
                let this = self.clone();
                let chall_row = chall.clone();
                let caa = CaaContext {
                    account_uri: links.account(&account.id),
                    wildcard: authz.wildcard,
                };
                let (finished, outcome) = tokio::sync::oneshot::channel();
                tokio::spawn(async move {
                    let done = this.run_validation(chall_row, ident, thumbprint, caa).await;
                    // Nobody listens once the answer went out without it.
                    let _ = finished.send(done);
                });
                // A validation that finishes within the wait is answered as it ended; the
                // validation goes on without us otherwise.
                let wait = self.settings.challenge_wait;
                if !wait.is_zero() {
                    if let Ok(Ok(Some(done))) = tokio::time::timeout(wait, outcome).await {
                        chall = done;
                    }
                }
            }
        }
        let mut reply = Reply::json(StatusCode::OK, &wire::challenge_json(&chall, links)).header(
            http::header::LINK,
            format!("<{}>;rel=\"up\"", links.authz(&authz.id)),
        );
        if chall.status == "processing" {
            reply = reply.header(http::header::RETRY_AFTER, "1");
        }
        Ok(reply)
    }

    async fn run_validation(
        &self,
        chall: ChallengeRow,
        ident: Ident,
        thumbprint: String,
        caa: CaaContext,
    ) -> Option<ChallengeRow> {
        let key_authorization = format!("{}.{}", chall.token, thumbprint);
        let test_mode = &self.settings.test_mode;
        tokio::time::sleep(test_mode.validation_delay()).await;
        let outcome = if test_mode.enabled && test_mode.always_valid {
            Ok(())
        } else {
            let proof =
                self.validator
                    .validate(&chall.kind, &ident, &chall.token, &key_authorization);
            let checked = async {
                match &ident {
                    // CAA (RFC 8659) is looked up while the challenge is checked, as Boulder's
                    // VA does: the lookups' round trips hide behind the validation's. A failed
                    // validation is reported before a CAA refusal.
                    Ident::Dns(domain) => {
                        let (proven, permitted) =
                            tokio::join!(proof, self.check_caa(domain, &caa, &chall.kind));
                        proven.and(permitted)
                    }
                    Ident::Ip(_) => proof.await,
                }
            };
            // Bounded, so that a challenge `processing` for longer than the validation lease
            // (see `Validator::deadline`) is known to have been left by a stopped process.
            let deadline = self.validator.deadline();
            tokio::time::timeout(deadline, checked)
                .await
                .unwrap_or_else(|_| {
                    Err(Problem::connection(format!(
                        "validation of {} did not finish within {} s",
                        ident.value(),
                        deadline.as_secs()
                    )))
                })
        };
        let (valid, error) = match &outcome {
            Ok(()) => (true, None),
            Err(p) => {
                let mut p = p.clone();
                p.status = p.status_code().as_u16();
                (false, Some(p.to_json().to_string()))
            }
        };
        tracing::info!(challenge = %chall.id, identifier = %ident.value(), valid, error = ?outcome.as_ref().err().map(|p| p.detail.clone()), "validation finished");
        let at = now();
        let validated = valid.then_some(at);
        match self
            .store
            .finish_challenge(
                &chall.id,
                &chall.authz_id,
                validated,
                error.as_deref(),
                at + self.settings.authz_reuse_secs,
            )
            .await
        {
            // The challenge as it now stands in the store.
            Ok(true) => Some(ChallengeRow {
                status: if valid { "valid" } else { "invalid" }.into(),
                validated,
                error,
                ..chall
            }),
            Ok(false) => None,
            Err(e) => {
                tracing::error!(challenge = %chall.id, error = %e, "could not record the validation outcome");
                None
            }
        }
    }

    // ---- certificates, §7.4.2 ----

    /// RFC 8555 §7.4.2: the chain (`alternate` 0) or one of the issuer's alternate chains, with
    /// `Link: rel="alternate"` to the others.
    async fn certificate(
        &self,
        serial: &str,
        alternate: usize,
        mut auth: Authenticated,
        links: &Links,
    ) -> AcmeResult {
        let mut prefetched = std::mem::take(&mut auth.prefetched);
        let account = require_account(&auth)?;
        let found = match prefetched.take_certificate(serial) {
            Some(found) => found,
            None => self.store.certificate_for_download(serial).await?,
        };
        let cert = found.ok_or_else(|| Problem::not_found("no such certificate"))?;
        if cert.account_id.as_deref() != Some(account.id.as_str()) {
            return Err(Problem::unauthorized(
                "this certificate belongs to another account",
            ));
        }
        let Some(chain) = cert.chain_pem.clone().filter(|_| cert.status == "issued") else {
            return Err(Problem::not_found("no such certificate"));
        };
        let alternates: &[Vec<Vec<u8>>] = if cert.issuer == self.ca.name {
            self.ca.alternate_chains()
        } else {
            &[]
        };
        let body = match alternate {
            0 => chain,
            n => {
                let alt = alternates
                    .get(n - 1)
                    .ok_or_else(|| Problem::not_found("no such certificate chain"))?;
                let leaf = cert.der.as_deref().unwrap_or_default();
                std::iter::once(leaf)
                    .chain(alt.iter().map(Vec::as_slice))
                    .map(|der| crate::ca::to_pem("CERTIFICATE", der))
                    .collect()
            }
        };
        let base = links.certificate(serial);
        let mut headers = Vec::new();
        for n in (0..=alternates.len()).filter(|n| *n != alternate) {
            let url = if n == 0 {
                base.clone()
            } else {
                format!("{base}/{n}")
            };
            headers.push((http::header::LINK, format!("<{url}>;rel=\"alternate\"")));
        }
        Ok(Reply {
            status: StatusCode::OK,
            headers,
            content_type: "application/pem-certificate-chain",
            body: Bytes::from(body),
        })
    }
}

impl AcmeServer {
    /// RFC 8555 §7.3.5: the outer JWS is signed by the account's key (checked already), the
    /// inner one by the new key, and names the account and its old key.
    async fn key_change(&self, auth: Authenticated, links: &Links) -> AcmeResult {
        let account = require_account(&auth)?;
        let outer_url = auth.jws.url.clone().unwrap_or_default();
        let inner = Jws::parse(&auth.jws.payload)
            .map_err(|p| Problem::malformed(format!("inner JWS: {}", p.detail)))?;
        let KeyRef::Jwk(new_key) = &inner.key else {
            return Err(Problem::malformed(
                "the inner JWS must carry the new key as jwk",
            ));
        };
        if inner.nonce.is_some() {
            return Err(Problem::malformed("the inner JWS must not have a nonce"));
        }
        if inner.url.as_deref() != Some(outer_url.as_str()) {
            return Err(Problem::malformed(
                "the inner JWS url must equal the outer url",
            ));
        }
        inner.verify(new_key)?;
        let req: wire::KeyChange = inner.json_payload()?;
        let account_url = links.account(&account.id);
        if req.account != account_url {
            return Err(Problem::malformed(
                "the inner payload's account is not the signer's",
            ));
        }
        let old_thumbprint = jws::thumbprint(&req.old_key)?;
        if old_thumbprint != account.thumbprint {
            return Err(Problem::malformed(
                "oldKey is not the account's current key",
            ));
        }
        let new_thumbprint = jws::thumbprint(new_key)?;
        if new_thumbprint == account.thumbprint {
            return Err(Problem::malformed("the new key is the current key"));
        }
        if let Some(other) = self.store.account_by_thumbprint(&new_thumbprint).await? {
            return Err(Problem::conflict(
                "the new key belongs to another account",
                links.account(&other.id),
            ));
        }
        let new_jwk = Value::Object(jws::public_jwk(new_key)).to_string();
        match self
            .store
            .update_account_key(&account.id, &old_thumbprint, &new_thumbprint, &new_jwk)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                return Err(Problem::malformed(
                    "the account's key changed meanwhile; retry",
                ))
            }
            Err(e) if e.is_unique_violation() => {
                let other = self.store.account_by_thumbprint(&new_thumbprint).await?;
                let location = other.map(|o| links.account(&o.id)).unwrap_or_default();
                return Err(Problem::conflict(
                    "the new key belongs to another account",
                    location,
                ));
            }
            Err(e) => return Err(e.into()),
        }
        tracing::info!(account = %account.id, "account key rolled over");
        let account = self
            .store
            .account(&account.id)
            .await?
            .ok_or_else(|| Problem::account_does_not_exist("account vanished"))?;
        Ok(
            Reply::json(StatusCode::OK, &wire::account_json(&account, links))
                .header(http::header::LOCATION, account_url),
        )
    }

    /// RFC 8555 §7.6: by the account that holds the certificate, or signed by the certificate's key.
    async fn revoke_certificate(&self, auth: Authenticated) -> AcmeResult {
        let req: wire::Revocation = auth.jws.json_payload()?;
        let der = URL_SAFE_NO_PAD
            .decode(req.certificate.trim_end_matches('='))
            .map_err(|_| Problem::malformed("certificate is not base64url DER"))?;
        let reason = req.reason.unwrap_or(0);
        let reason_code = u8::try_from(reason)
            .ok()
            .filter(|r| *r != 7)
            .and_then(pkid_backends::RevocationReason::from_code)
            .ok_or_else(|| {
                Problem::bad_revocation_reason(format!(
                    "reason {reason} is not an RFC 5280 reason code pkid accepts (0-10, not 7)"
                ))
            })?;
        let (_, cert) = x509_parser::parse_x509_certificate(&der)
            .map_err(|_| Problem::malformed("certificate is not a valid X.509 certificate"))?;
        let serial = hex::encode(cert.raw_serial());
        let stored = self.store.certificate(&serial).await?;
        let Some(stored) = stored.filter(|c| c.der.as_deref() == Some(der.as_slice())) else {
            return Err(Problem::not_found(
                "this server did not issue that certificate",
            ));
        };
        match (&auth.account, &auth.jws.key) {
            (Some(account), _) => {
                if stored.account_id.as_deref() != Some(account.id.as_str()) {
                    return Err(Problem::unauthorized(
                        "this account does not hold that certificate",
                    ));
                }
            }
            (None, KeyRef::Jwk(jwk)) => {
                let signer = jws::thumbprint(jwk)?;
                if wire::spki_thumbprint(cert.public_key().raw).as_deref() != Some(signer.as_str())
                {
                    return Err(Problem::unauthorized(
                        "the request is not signed by the certificate's key",
                    ));
                }
            }
            (None, KeyRef::Kid(_)) => return Err(Problem::unauthorized("unknown account")),
        }
        match self.revocation.revoke(&serial, reason_code).await {
            Ok(()) => {}
            Err(RevokeError::AlreadyRevoked(_)) => {
                return Err(Problem::already_revoked(
                    "the certificate is revoked already",
                ))
            }
            Err(RevokeError::NotFound(_)) => {
                return Err(Problem::not_found(
                    "this server did not issue that certificate",
                ))
            }
            Err(RevokeError::Store(e)) => return Err(e.into()),
            // ACME revocations carry no invalidity date.
            Err(RevokeError::InvalidityInFuture) => {
                return Err(Problem::malformed("the invalidity date is in the future"))
            }
            Err(RevokeError::Backend(e)) => {
                tracing::error!(serial = %serial, error = %e, "backend revocation failed");
                return Err(Problem::server_internal(
                    "the revocation could not be completed; retry later",
                ));
            }
        }
        Ok(Reply::empty(StatusCode::OK))
    }
}

fn require_account(auth: &Authenticated) -> Result<&AccountRow, Problem> {
    auth.account
        .as_ref()
        .ok_or_else(|| Problem::malformed("this request must be signed with an account kid"))
}

/// `Identifier` in the wire form of problems' subproblems.
pub fn identifier(kind: &str, value: &str) -> Identifier {
    Identifier {
        kind: kind.into(),
        value: value.into(),
    }
}

pub fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod request_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn order(status: &str, expires: i64) -> OrderRow {
        OrderRow::for_tests("o", "a", status, expires)
    }

    fn authz(status: &str, expires: i64) -> AuthzRow {
        AuthzRow {
            id: "z".into(),
            account_id: "a".into(),
            id_type: "dns".into(),
            id_value: "a.test".into(),
            wildcard: false,
            status: status.into(),
            expires,
            validation: None,
        }
    }

    /// RFC 8555 §7.1.6: pending → ready → processing → valid, invalid on any failed,
    /// deactivated or expired authorization, or when the order itself expires.
    #[test]
    fn order_state_transitions() {
        let at = 100;
        let pending = order("pending", 200);
        assert_eq!(
            AcmeServer::order_status(&pending, &[authz("pending", 200)], at),
            "pending"
        );
        assert_eq!(
            AcmeServer::order_status(&pending, &[authz("valid", 200), authz("pending", 200)], at),
            "pending"
        );
        assert_eq!(
            AcmeServer::order_status(&pending, &[authz("valid", 200), authz("valid", 300)], at),
            "ready"
        );
        assert_eq!(
            AcmeServer::order_status(&pending, &[authz("valid", 200), authz("invalid", 200)], at),
            "invalid"
        );
        assert_eq!(
            AcmeServer::order_status(&pending, &[authz("deactivated", 200)], at),
            "invalid"
        );
        assert_eq!(
            AcmeServer::order_status(&pending, &[authz("valid", 50)], at),
            "invalid",
            "expired authorization"
        );
        assert_eq!(
            AcmeServer::order_status(&order("pending", 50), &[authz("valid", 200)], at),
            "invalid",
            "expired order"
        );
        assert_eq!(AcmeServer::order_status(&pending, &[], at), "pending");
        assert_eq!(
            AcmeServer::order_status(&order("processing", 200), &[authz("valid", 200)], at),
            "processing"
        );
        assert_eq!(
            AcmeServer::order_status(&order("valid", 50), &[authz("valid", 50)], at),
            "valid",
            "valid stays valid"
        );
        assert_eq!(
            AcmeServer::order_status(&order("invalid", 200), &[authz("valid", 200)], at),
            "invalid"
        );
    }
}

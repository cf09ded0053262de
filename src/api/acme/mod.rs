//! The ACME surface, RFC 8555: directory (§7.1.1), nonces (§7.2), JWS authentication (§6.2–§6.5),
//! and the routes of accounts (§7.3), orders (§7.4), authorizations and challenges (§7.5, §8),
//! certificates (§7.4.2, §7.6) and renewal information (RFC 9773). Each resource's handlers
//! live in a file of their own; what they change, they change through the RA (`crate::ra`),
//! and every problem the RA raises is mapped once, in [`problem`].
//!
//! Every response — errors included — carries a fresh `Replay-Nonce` and `Link: rel="index"`.

mod accounts;
mod authorizations;
mod certificates;
pub mod eab;
pub mod links;
mod orders;
pub mod problem;
mod wire;

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use serde_json::{json, Map, Value};

use crate::api::Reply;
use crate::identity::jws::{self, Jws, KeyRef};
use crate::identity::nonce::{self, NonceService};
use crate::ra::{Directory, Ra};
use crate::store::{AccountRow, AccountStatus, Prefetch, Prefetched, Reads};
use links::Links;
use problem::Problem;

/// A problem document as ACME answers it (RFC 8555 §6.7), with the headers its problem carries.
pub fn problem_reply(p: &Problem) -> Reply {
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

type AcmeResult = Result<Reply, Problem>;

/// What the ACME surface itself decides, beyond the RA's policy.
pub struct AcmeSettings {
    /// How long the answer to a challenge POST waits for its validation.
    pub challenge_wait: std::time::Duration,
}

/// One ACME directory: `/acme` (the directory named `default`) or `/acme/NAME`.
pub struct AcmeServer {
    /// This directory's path prefix: `/acme`, or `/acme/NAME` for a named directory.
    prefix: String,
    ra: Arc<Ra>,
    /// What this directory issues under (its CA, profiles, EAB rule): the RA's policy for it.
    directory: Directory,
    /// What this surface reads to show; it writes only through `ra` (and redeems its nonces).
    reads: Reads,
    nonces: NonceService,
    settings: AcmeSettings,
    /// The accounts' keys, parsed once per key.
    account_keys: jws::AccountKeys,
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
        ra: Arc<Ra>,
        directory: Directory,
        nonces: NonceService,
        settings: AcmeSettings,
    ) -> AcmeServer {
        let prefix = match directory.name.as_str() {
            "default" => "/acme".to_string(),
            name => format!("/acme/{name}"),
        };
        AcmeServer {
            prefix,
            reads: ra.reads(),
            ra,
            directory,
            nonces,
            settings,
            account_keys: jws::AccountKeys::default(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The RA's policy for this directory (recovery runs per directory).
    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    /// Serve one request under `/acme/`. `origin` is `https://host[:port]` as the client addressed us.
    pub async fn handle(
        &self,
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
                problem_reply(&p)
            }
        };
        self.finish(reply, &links)
    }

    /// A problem raised before the request reached this directory's handlers (an oversized
    /// body, say), answered like every other ACME error.
    pub fn error_reply(&self, problem: &Problem, origin: &str) -> Reply {
        tracing::info!(problem = %problem, "acme request refused");
        self.finish(problem_reply(problem), &Links::new(origin, &self.prefix))
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
        &self,
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
            (&Method::GET, ["directory"]) => Ok(self.directory_document(links)),
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

    fn directory_document(&self, links: &Links) -> Reply {
        let mut meta = Map::new();
        if let Some(tos) = &self.ra.settings().terms_of_service {
            meta.insert("termsOfService".into(), json!(tos));
        }
        meta.insert(
            "externalAccountRequired".into(),
            json!(self.directory.eab_policy != crate::ra::EabPolicy::NotRequired),
        );
        // RFC 8555 §7.1.1: the names CAA issue records must carry for this CA to issue.
        let caa_identities = &self.ra.settings().caa_identities;
        if !caa_identities.is_empty() {
            meta.insert("caaIdentities".into(), json!(caa_identities));
        }
        let profiles: Map<String, Value> = self
            .directory
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
        if self.directory.pre_authorization {
            dir["newAuthz"] = json!(links.new_authz());
        }
        // The directory itself carries no nonce requirement, but a nonce does no harm.
        Reply::json(StatusCode::OK, &dir)
    }

    /// RFC 8555 §6.2–§6.5: media type, JWS shape, the nonce's MAC, url, key, signature, then
    /// the nonce's redemption. A nonce of ours that a request carries is spent whatever comes
    /// of the request (§6.5: a nonce that appeared in a request is invalid from then on), even
    /// one refused as it is parsed (`crit`, an `alg` refused), so a refused request cannot be
    /// sent again with the same nonce.
    async fn authenticate(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        url: &str,
        links: &Links,
        segments: &[&str],
    ) -> Result<Authenticated, Problem> {
        if !jws::is_jose_json(headers) {
            return Err(Problem::unsupported_media_type(
                "POST requests must have Content-Type application/jose+json",
            ));
        }
        let jws = self.nonces.parse_request(body).await?;
        let nonce = jws.required_nonce()?.to_owned();
        // Cheap check before any database work. Redeemed after the signature is checked, or,
        // in the database, by the statement that reads the signer's account.
        let (nonce_expires, _) = self.nonces.check(&nonce)?;
        let mut redeemed = None;
        let signed = self
            .signer(
                &jws,
                &nonce,
                nonce_expires,
                url,
                links,
                segments,
                &mut redeemed,
            )
            .await;
        let spent = match redeemed {
            Some(first) => nonce::first_redemption(first),
            None => self.nonces.redeem(&nonce).await,
        };
        // A refused request reports why it was refused; a good one that replayed its nonce,
        // the nonce.
        let (account, prefetched) = signed?;
        spent?;
        if let Some(a) = &account {
            if a.status != AccountStatus::Valid {
                return Err(Problem::unauthorized(format!("account is {}", a.status)));
            }
        }
        Ok(Authenticated {
            jws,
            account,
            prefetched,
        })
    }

    /// Who signed `jws`: its URL, its key and its signature checked; the account a `kid`
    /// names, which must be this directory's (an account is served only through the
    /// directory it was made in), with the resource the URL names when it was read with the
    /// nonce. `redeemed` is set when the nonce was redeemed on the way (PostgreSQL).
    #[allow(clippy::too_many_arguments)]
    async fn signer(
        &self,
        jws: &Jws,
        nonce: &str,
        nonce_expires: i64,
        url: &str,
        links: &Links,
        segments: &[&str],
        redeemed: &mut Option<bool>,
    ) -> Result<(Option<AccountRow>, Prefetched), Problem> {
        if self.ra.settings().test_mode.rejects_this_nonce() {
            return Err(Problem::bad_nonce(
                "test mode: this valid nonce was refused on purpose",
            ));
        }
        jws.check_url(url)?;
        let jwk_allowed = matches!(segments, ["new-account"] | ["revoke-cert"]);
        match &jws.key {
            KeyRef::Jwk(jwk) => {
                if !jwk_allowed {
                    return Err(Problem::malformed(
                        "this resource needs a kid (account URL), not a jwk",
                    ));
                }
                jws.verify(jwk)?;
                Ok((None, Prefetched::Nothing))
            }
            KeyRef::Kid(kid) => {
                if matches!(segments, ["new-account"]) {
                    return Err(Problem::malformed(
                        "newAccount must be signed with a jwk, not a kid",
                    ));
                }
                let id = links.account_id_of(kid).ok_or_else(|| {
                    Problem::account_does_not_exist(format!(
                        "kid {kid:?} is not an account URL of this directory"
                    ))
                })?;
                // With nonces redeemed in the database (replicas), the account, and the
                // resource the URL names, are read by the statement that redeems the nonce: one
                // round trip instead of three.
                let redeeming = self
                    .nonces
                    .account_redeeming_nonce(id, nonce, nonce_expires, prefetch(segments))
                    .await;
                let (account, prefetched) = match redeeming {
                    Some(found) => {
                        let (account, first, read) = found?;
                        *redeemed = Some(first);
                        (account, read)
                    }
                    None => (self.reads.account(id).await?, Prefetched::Nothing),
                };
                // Another directory's account is no account here, and is answered as one that
                // does not exist: the URL of one directory's account never works on another.
                let account = account
                    .filter(|a| a.directory == self.directory.name)
                    .ok_or_else(|| {
                        Problem::account_does_not_exist(format!("account {kid} does not exist"))
                    })?;
                jws.verify_with(&*self.account_keys.get(&jws.alg, &account.jwk)?)?;
                Ok((Some(account), prefetched))
            }
        }
    }

    async fn dispatch(
        &self,
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
            ["new-authz"] if self.directory.pre_authorization => self.new_authz(auth, links).await,
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
}

fn require_account(auth: &Authenticated) -> Result<&AccountRow, Problem> {
    auth.account
        .as_ref()
        .ok_or_else(|| Problem::malformed("this request must be signed with an account kid"))
}

pub fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests;

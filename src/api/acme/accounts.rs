//! Account resources (RFC 8555 §7.3): newAccount (with an external account binding, §7.3.4),
//! the account itself (§7.3.2 update, §7.3.6 deactivation), its orders list (§7.1.2.1), and key
//! roll-over (§7.3.5). The JWS checks are here; what is allowed, and the writes, are the RA's.

use http::StatusCode;
use serde_json::{json, Value};

use super::links::Links;
use super::problem::Problem;
use super::{eab, require_account, wire, AcmeResult, AcmeServer, Authenticated, Reply};
use crate::identity::jws::{self, Jws, KeyRef};
use crate::ra::{AccountUpdate, NewAccount, RaError, Registered};

impl AcmeServer {
    pub(super) async fn new_account(&self, auth: Authenticated, links: &Links) -> AcmeResult {
        let KeyRef::Jwk(jwk) = &auth.jws.key else {
            return Err(Problem::malformed("newAccount must be signed with a jwk"));
        };
        let req: wire::NewAccountRequest = auth.jws.json_payload()?;
        let thumbprint = jws::thumbprint(jwk)?;
        let binding = match &req.external_account_binding {
            Some(binding) => Some(eab::parse(binding, &links.new_account(), jwk)?),
            None => None,
        };
        let registered = self
            .ra
            .register_account(
                &self.directory,
                NewAccount {
                    thumbprint,
                    jwk: Value::Object(jws::public_jwk(jwk)).to_string(),
                    contact: req.contact.unwrap_or_default(),
                    only_return_existing: req.only_return_existing,
                    terms_of_service_agreed: req.terms_of_service_agreed,
                    binding,
                },
            )
            .await?;
        let (status, account) = match registered {
            Registered::Created(account) => (StatusCode::CREATED, account),
            Registered::Existing(account) => (StatusCode::OK, account),
        };
        Ok(Reply::json(status, &wire::account_json(&account, links))
            .header(http::header::LOCATION, links.account(&account.id)))
    }

    pub(super) async fn update_account(
        &self,
        id: &str,
        auth: Authenticated,
        links: &Links,
    ) -> AcmeResult {
        let account = require_account(&auth)?;
        if account.id != id {
            return Err(Problem::unauthorized(
                "the request's kid does not match the account URL",
            ));
        }
        if !auth.jws.is_post_as_get() {
            let req: wire::AccountUpdateRequest = auth.jws.json_payload()?;
            let update = match (req.status.as_deref(), req.contact) {
                (Some("deactivated"), _) => Some(AccountUpdate::Deactivate),
                (Some(_), _) => {
                    return Err(Problem::malformed(
                        "an account's status can only be set to \"deactivated\"",
                    ))
                }
                (None, Some(contact)) => Some(AccountUpdate::Contact(contact)),
                (None, None) => None,
            };
            if let Some(update) = update {
                self.ra.update_account(id, update).await?;
            }
        }
        let account = self
            .reads
            .account(id)
            .await?
            .ok_or_else(|| Problem::account_does_not_exist("account vanished"))?;
        Ok(
            Reply::json(StatusCode::OK, &wire::account_json(&account, links))
                .header(http::header::LOCATION, links.account(id)),
        )
    }

    /// RFC 8555 §7.1.2.1: the account's orders, newest first, 100 a page, `Link: rel="next"`.
    pub(super) async fn account_orders(
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
            .reads
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

    /// RFC 8555 §7.3.5: the outer JWS is signed by the account's key (checked already), the
    /// inner one by the new key, and names the account and its old key.
    pub(super) async fn key_change(&self, auth: Authenticated, links: &Links) -> AcmeResult {
        let account = require_account(&auth)?;
        let outer_url = auth.jws.url.clone().unwrap_or_default();
        let inner = Jws::parse(&auth.jws.payload)
            .map_err(|e| Problem::malformed(format!("inner JWS: {e}")))?;
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
        let req: wire::KeyChangeRequest = inner.json_payload()?;
        let account_url = links.account(&account.id);
        if req.account != account_url {
            return Err(Problem::malformed(
                "the inner payload's account is not the signer's",
            ));
        }
        if jws::thumbprint(&req.old_key)? != account.thumbprint {
            return Err(Problem::malformed(
                "oldKey is not the account's current key",
            ));
        }
        let new_thumbprint = jws::thumbprint(new_key)?;
        if new_thumbprint == account.thumbprint {
            return Err(Problem::malformed("the new key is the current key"));
        }
        let new_jwk = Value::Object(jws::public_jwk(new_key)).to_string();
        self.ra
            .roll_over_key(account, &new_thumbprint, &new_jwk)
            .await
            .map_err(|e| match e {
                RaError::KeyInUse { detail, account_id } => Problem::conflict(
                    detail,
                    account_id.map(|id| links.account(&id)).unwrap_or_default(),
                ),
                other => other.into(),
            })?;
        let account = self
            .reads
            .account(&account.id)
            .await?
            .ok_or_else(|| Problem::account_does_not_exist("account vanished"))?;
        Ok(
            Reply::json(StatusCode::OK, &wire::account_json(&account, links))
                .header(http::header::LOCATION, account_url),
        )
    }
}

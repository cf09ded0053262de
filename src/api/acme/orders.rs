//! Order resources (RFC 8555 §7.4): newOrder, the order, finalize, and renewal information
//! (RFC 9773 §4). Identifiers and CSRs are checked for their wire form here; the RA decides and
//! writes.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::StatusCode;
use serde_json::{json, Value};

use super::links::Links;
use super::problem::Problem;
use super::{require_account, wire, AcmeResult, AcmeServer, Authenticated, Reply};
use crate::pki::rfc3339;
use crate::ra::{CreatedOrder, NewOrder};
use crate::store::{
    now, AccountRow, AuthzRow, CertificateStatus, OrderRow, OrderStatus, Prefetched,
};

impl AcmeServer {
    pub(super) async fn new_order(&self, auth: Authenticated, links: &Links) -> AcmeResult {
        let account = require_account(&auth)?;
        let req: wire::NewOrderRequest = auth.jws.json_payload()?;
        if req.not_before.is_some() || req.not_after.is_some() {
            return Err(Problem::malformed(
                "notBefore and notAfter are not supported; the profile sets the validity",
            ));
        }
        let identifiers = wire::check_identifiers(&req.identifiers)?;
        let CreatedOrder { order, authzs } = self
            .ra
            .new_order(
                &self.directory,
                account,
                NewOrder {
                    identifiers,
                    profile: req.profile,
                    replaces: req.replaces,
                },
            )
            .await?;
        Ok(Self::order_reply(
            &order,
            &authzs,
            links,
            StatusCode::CREATED,
        ))
    }

    /// An order of `account`, with its authorizations.
    pub(super) async fn owned_order(
        &self,
        id: &str,
        account: &AccountRow,
        prefetched: &mut Prefetched,
    ) -> Result<(OrderRow, Vec<AuthzRow>), Problem> {
        let found = match prefetched.take_order(id) {
            Some(found) => found,
            None => self.reads.order_with_authzs(id).await?,
        };
        // An order is served only through the directory it was placed in (its account is this
        // directory's already; an order of another directory is one from before accounts
        // belonged to one).
        let (order, authzs) = found
            .filter(|(order, _)| order.directory == self.directory.name)
            .ok_or_else(|| Problem::not_found("no such order"))?;
        if order.account_id != account.id {
            return Err(Problem::unauthorized(
                "this order belongs to another account",
            ));
        }
        Ok((order, authzs))
    }

    /// The order as RFC 8555 §7.1.3 shows it, given its authorizations.
    pub(super) fn order_reply(
        order: &OrderRow,
        authzs: &[AuthzRow],
        links: &Links,
        status: StatusCode,
    ) -> Reply {
        let order_status = order.status_at(authzs, now());
        let mut body = json!({
            "status": order_status.as_str(),
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
        if order_status == OrderStatus::Processing {
            reply = reply.header(http::header::RETRY_AFTER, "1");
        }
        reply
    }

    pub(super) async fn finalize(
        &self,
        id: &str,
        mut auth: Authenticated,
        links: &Links,
    ) -> AcmeResult {
        let mut prefetched = std::mem::take(&mut auth.prefetched);
        let account = require_account(&auth)?;
        let (order, authzs) = self.owned_order(id, account, &mut prefetched).await?;
        let req: wire::FinalizeRequest = auth.jws.json_payload()?;
        let status = order.status_at(&authzs, now());
        if status != OrderStatus::Ready {
            return Err(Problem::order_not_ready(format!(
                "order is {status}, not ready"
            )));
        }
        let csr_der = URL_SAFE_NO_PAD
            .decode(req.csr.trim_end_matches('='))
            .map_err(|_| Problem::bad_csr("csr is not base64url"))?;
        let order = self
            .ra
            .finalize(
                &self.directory,
                account,
                order,
                &authzs,
                csr_der,
                &links.account(&account.id),
            )
            .await?;
        Ok(Self::order_reply(&order, &authzs, links, StatusCode::OK))
    }

    /// RFC 9773 §4: the suggested renewal window of a certificate, by ARI certID; only for a
    /// certificate issued through this directory.
    pub(super) async fn renewal_info(&self, cert_id: &str) -> AcmeResult {
        let (_, serial) = crate::pki::ari::parse_cert_id(cert_id)
            .map_err(|e| Problem::malformed(e.to_string()))?;
        let cert = self
            .reads
            .certificate(&serial)
            .await?
            .filter(|c| c.status == CertificateStatus::Issued)
            .ok_or_else(|| Problem::not_found("no certificate with that serial"))?;
        if !self.ra.issued_through(&self.directory, &cert).await? {
            return Err(Problem::not_found("no certificate with that serial"));
        }
        let der = cert.der.clone().unwrap_or_default();
        let (_, parsed) = x509_parser::parse_x509_certificate(&der)
            .map_err(|_| Problem::server_internal("stored certificate is unreadable"))?;
        if crate::pki::ari::cert_id(&parsed).as_deref() != Some(cert_id) {
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
}

//! IAM's certificate linking requests API (`/iam/cert_link_requests`) and its trust anchors
//! (`GET /iam/api/trusts`), over the RA's `ra::iam`.
//!
//! - Create: any user, for their own account (administrators' requests start `PENDING` too);
//!   answers **200** with the request.
//! - List: administrators (`AdminRead`) see every request, filtered by `username`, `subjectDn`,
//!   `status`; anyone else only their own (the `username` filter is theirs whatever was
//!   asked). `startIndex` 1-based (default 1; below 1 counts as 1), `count` default 10, capped
//!   at 10 (below 0 counts as 0); `itemsPerPage` is how many were returned. Sorted by username,
//!   subject, creation time. An unknown `status`, a DN that does not parse, or a number that is
//!   not one is 400.
//! - Get: an administrator, or the owner (403 otherwise); delete: an administrator any, the
//!   owner while `PENDING`; 204. Approve and reject: administrators (`AdminWrite`); reject
//!   needs a non-blank `motivation` (query, or form body).

use http::StatusCode;

use super::wire::{CertLinkRequest, CertLinkRequestList, NewCertLinkRequest, TrustList};
use super::{actor, bad_request, denied, iam_error, json, parameters, IamApi};
use crate::api::Reply;
use crate::identity::{authorize, Action, Denied, Principal};
use crate::pki::dn::normalize;
use crate::ra::iam::{Actor, NewLinkRequest};
use crate::store::{CertLinkFilter, CertLinkStatus};

/// The most requests one page holds.
const MAX_COUNT: u64 = 10;

/// A request as IAM shows it.
fn link_reply(row: crate::store::CertLinkRequestRow) -> Reply {
    json(StatusCode::OK, &CertLinkRequest::from(row))
}

/// An integer parameter; `None` when absent.
fn integer(
    params: &std::collections::BTreeMap<String, String>,
    name: &str,
) -> Result<Option<i64>, Reply> {
    params
        .get(name)
        .map(|v| {
            v.trim()
                .parse::<i64>()
                .map_err(|_| bad_request(format!("{name} must be an integer, not {v:?}")))
        })
        .transpose()
}

impl IamApi {
    /// `GET /iam/api/trusts`: every authenticated caller.
    pub(super) async fn trusts(&self, principal: &Principal) -> Reply {
        if let Err(why) = authorize(principal, Action::Whoami) {
            return denied(why);
        }
        let subjects = self.iam.anchors().subjects().await;
        let n = subjects.len() as u64;
        json(
            StatusCode::OK,
            &TrustList {
                total_results: n,
                items_per_page: n,
                start_index: 1,
                resources: subjects,
            },
        )
    }

    /// `POST /iam/cert_link_requests`.
    pub(super) async fn create_link(&self, principal: &Principal, body: &[u8]) -> Reply {
        let user = match principal {
            Principal::User(user) if authorize(principal, Action::IamAccount).is_ok() => user,
            _ => return denied(Denied::Forbidden),
        };
        let req: NewCertLinkRequest = match serde_json::from_slice(body) {
            Ok(req) => req,
            Err(e) => return bad_request(format!("the body is not a certLink request: {e}")),
        };
        let new = NewLinkRequest {
            label: req.label.as_deref(),
            pem: req.pem_encoded_certificate.as_deref(),
            subject_dn: req.subject_dn.as_deref(),
            issuer_dn: req.issuer_dn.as_deref(),
            notes: req.notes.as_deref(),
        };
        match self
            .iam
            .request_link(&user.id, &new, &principal.describe())
            .await
        {
            Ok(row) => {
                tracing::info!(request = %row.uuid, user = %user.username, subject = %row.subject_dn, "certLink request created");
                link_reply(row)
            }
            Err(e) => iam_error(e),
        }
    }

    /// `GET /iam/cert_link_requests?username=&subjectDn=&status=&startIndex=&count=`.
    pub(super) async fn list_links(&self, principal: &Principal, query: &[u8]) -> Reply {
        let Some(actor) = actor(principal, Action::AdminRead) else {
            return denied(Denied::Forbidden);
        };
        let params = match parameters(query) {
            Ok(params) => params,
            Err(reply) => return reply,
        };
        let (start, count) = match (integer(&params, "startIndex"), integer(&params, "count")) {
            (Ok(start), Ok(count)) => (start, count),
            (Err(reply), _) | (_, Err(reply)) => return reply,
        };
        let start_index = u64::try_from(start.unwrap_or(1)).unwrap_or(0).max(1);
        let count = u64::try_from(count.unwrap_or(10))
            .unwrap_or(0)
            .min(MAX_COUNT);
        let status = match params.get("status").map(|s| s.parse::<CertLinkStatus>()) {
            None => None,
            Some(Ok(status)) => Some(status),
            Some(Err(_)) => {
                return bad_request("status must be one of PENDING, APPROVED, REJECTED")
            }
        };
        let subject_dn = match params.get("subjectDn").map(|s| normalize(s)) {
            None => None,
            Some(Ok(dn)) => Some(dn),
            Some(Err(e)) => return bad_request(e.to_string()),
        };
        let username = match (actor, principal) {
            (Actor::User(_), Principal::User(user)) => Some(user.username.clone()),
            _ => params.get("username").cloned(),
        };
        let filter = CertLinkFilter {
            username,
            subject_dn,
            status,
        };
        match self.iam.list_links(&filter, start_index - 1, count).await {
            Ok((total, rows)) => json(
                StatusCode::OK,
                &CertLinkRequestList {
                    total_results: total,
                    items_per_page: rows.len() as u64,
                    start_index,
                    resources: rows.into_iter().map(CertLinkRequest::from).collect(),
                },
            ),
            Err(e) => iam_error(e),
        }
    }

    /// `GET /iam/cert_link_requests/{uuid}`.
    pub(super) async fn get_link(&self, principal: &Principal, uuid: &str) -> Reply {
        let Some(actor) = actor(principal, Action::AdminRead) else {
            return denied(Denied::Forbidden);
        };
        match self.iam.read_as(uuid, actor).await {
            Ok(row) => link_reply(row),
            Err(e) => iam_error(e),
        }
    }

    /// `DELETE /iam/cert_link_requests/{uuid}`.
    pub(super) async fn delete_link(&self, principal: &Principal, uuid: &str) -> Reply {
        let Some(actor) = actor(principal, Action::AdminWrite) else {
            return denied(Denied::Forbidden);
        };
        match self
            .iam
            .delete_link(uuid, actor, &principal.describe())
            .await
        {
            Ok(()) => {
                tracing::info!(request = %uuid, by = %principal.describe(), "certLink request deleted");
                Reply::empty(StatusCode::NO_CONTENT).header(http::header::CACHE_CONTROL, "no-store")
            }
            Err(e) => iam_error(e),
        }
    }

    /// `POST /iam/cert_link_requests/{uuid}/approve`.
    pub(super) async fn approve_link(&self, principal: &Principal, uuid: &str) -> Reply {
        if let Err(why) = authorize(principal, Action::AdminWrite) {
            return denied(why);
        }
        match self.iam.approve_link(uuid, &principal.describe()).await {
            Ok(row) => {
                tracing::info!(request = %uuid, by = %principal.describe(), "certLink request approved");
                link_reply(row)
            }
            Err(e) => iam_error(e),
        }
    }

    /// `POST /iam/cert_link_requests/{uuid}/reject?motivation=…` (or a form body).
    pub(super) async fn reject_link(
        &self,
        principal: &Principal,
        uuid: &str,
        query: &[u8],
        body: &[u8],
    ) -> Reply {
        if let Err(why) = authorize(principal, Action::AdminWrite) {
            return denied(why);
        }
        let mut params = match parameters(query) {
            Ok(params) => params,
            Err(reply) => return reply,
        };
        if !params.contains_key("motivation") {
            // Spring's request parameters: the form body's count as the query's.
            if let Ok(form) = parameters(body) {
                params.extend(form);
            }
        }
        match self
            .iam
            .reject_link(
                uuid,
                params.get("motivation").map(String::as_str),
                &principal.describe(),
            )
            .await
        {
            Ok(row) => {
                tracing::info!(request = %uuid, by = %principal.describe(), "certLink request rejected");
                link_reply(row)
            }
            Err(e) => iam_error(e),
        }
    }
}

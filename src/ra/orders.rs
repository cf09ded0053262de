//! Orders (RFC 8555 §7.4): newOrder with its policy (profile, identifiers, the account's
//! binding, rate limits, RFC 9773 replacement), reuse of a pending order or of a valid
//! authorization, and finalize of a ready order (§7.1.6): the CSR's checks, CAA again when the
//! validation is old (RFC 8659), the claim of the order and the issuance through the CA.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::authorizations::{authz_ident, new_authz, CaaContext};
use super::binding::BindingPolicy;
use super::{ids, AuditEvent, Directory, Ra, RaError};
use crate::ca::IssueError;
use crate::pki::csr::{check_csr, CsrError, Ident};
use crate::store::{
    now, AccountRow, AccountStatus, AuthzReuse, AuthzRow, AuthzStatus, CertificateStatus, Claim,
    OrderAuthz, OrderReuse, OrderRow, OrderStatus, StoreError,
};

/// A newOrder, its identifiers checked and canonical (deduplicated, DNS lower-cased).
pub struct NewOrder {
    pub identifiers: Vec<Ident>,
    /// The profile asked for; `None`: the directory's default.
    pub profile: Option<String>,
    /// RFC 9773 §5: the ARI certID of the certificate this order replaces.
    pub replaces: Option<String>,
}

/// The order newOrder answers with (new, or an existing one reused), and its authorizations.
pub struct CreatedOrder {
    pub order: OrderRow,
    pub authzs: Vec<AuthzRow>,
}

/// Identifiers in their stored form (and the form of an order's `identifiers`): `[{type, value}]`.
pub fn identifiers_json(ids: &[Ident]) -> Value {
    Value::Array(
        ids.iter()
            .map(|i| json!({"type": i.kind(), "value": i.value()}))
            .collect(),
    )
}

/// What issuance for an order needs of its account and authorizations at the moment it happens
/// (at finalize, and again when recovery issues after a stop): the account is valid and every
/// authorization is valid and unexpired.
pub(super) fn check_issuable(account: &AccountRow, authzs: &[AuthzRow]) -> Result<(), RaError> {
    if account.status != AccountStatus::Valid {
        return Err(RaError::Unauthorized(format!(
            "the account is {}",
            account.status
        )));
    }
    let at = now();
    if let Some(authz) = authzs
        .iter()
        .find(|a| a.status_at(at) != AuthzStatus::Valid)
    {
        return Err(RaError::NotReady(format!(
            "authorization {} is {}",
            authz.id,
            authz.status_at(at)
        )));
    }
    Ok(())
}

/// What an authorization for `ident` is looked up by: the name without `*.`, and whether it is
/// a wildcard's.
fn reuse_key(ident: &Ident) -> (String, bool) {
    match ident {
        Ident::Dns(d) if d.starts_with("*.") => (d[2..].to_string(), true),
        other => (other.value(), false),
    }
}

impl Ra {
    /// newOrder: policy first (profile, identifiers, the account's binding, rate limits,
    /// `replaces`), then an existing pending or ready order of this account for the same
    /// identifiers and profile if there is one (RFC 8555 §7.4 allows it), otherwise a new order
    /// whose authorizations reuse the account's valid ones where they can.
    pub async fn new_order(
        &self,
        directory: &Directory,
        account: &AccountRow,
        req: NewOrder,
    ) -> Result<CreatedOrder, RaError> {
        let idents = req.identifiers;
        let profile_name = req
            .profile
            .unwrap_or_else(|| directory.default_profile.clone());
        let profile = directory.profiles.get(&profile_name).ok_or_else(|| {
            RaError::ProfileRefused(format!(
                "profile {profile_name:?} is not offered; see the directory's meta.profiles"
            ))
        })?;
        if let Some(ident) = idents.iter().find(|i| !profile.allows(i.kind())) {
            return Err(RaError::IdentifierRefused(format!(
                "profile {profile_name:?} does not allow {} identifiers",
                ident.kind()
            )));
        }
        for ident in &idents {
            self.settings.identifier_policy.check(ident)?;
        }
        if let Some(policy) = self.binding_policy(account).await? {
            policy.check(&idents, &profile_name)?;
        }
        self.check_rate_limits(account, &idents).await?;
        if let Some(cert_id) = &req.replaces {
            self.check_replaces(cert_id, account, &idents).await?;
        }
        let created = now();
        let identifiers_json =
            serde_json::to_string(&identifiers_json(&idents)).unwrap_or_default();
        let valid_until = created + 86400;
        // The orders to reuse and the first identifier's authorization, in one round trip.
        let (candidates, first_authz) = match idents.first() {
            Some(first) => {
                let (value, wildcard) = reuse_key(first);
                let orders = OrderReuse {
                    account_id: &account.id,
                    directory: &directory.name,
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
        if req.replaces.is_none() {
            for existing in candidates {
                let authzs = self.store.authzs_of_order(&existing.id).await?;
                if matches!(
                    existing.status_at(&authzs, created),
                    OrderStatus::Pending | OrderStatus::Ready
                ) {
                    return Ok(CreatedOrder {
                        order: existing,
                        authzs,
                    });
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
            authzs.push(match reuse {
                Some(row) => {
                    let id = row.id.clone();
                    authz_rows.push(row);
                    OrderAuthz::Reuse(id)
                }
                None => {
                    let new = new_authz(ident, value, wildcard, expires);
                    authz_rows.push(new.row(&account.id));
                    OrderAuthz::New(new)
                }
            });
        }
        let order = OrderRow {
            id: ids::object_id(),
            account_id: account.id.clone(),
            directory: directory.name.clone(),
            status: OrderStatus::Pending,
            expires,
            identifiers: identifiers_json,
            not_before: None,
            not_after: None,
            error: None,
            profile_name: Some(profile_name),
            replaces: req.replaces,
            profile: None,
            certificate_serial: None,
            processing_since: None,
            created_at: created,
        };
        self.store.insert_order(&order, &authzs).await?;
        tracing::info!(order = %order.id, account = %account.id, identifiers = %order.identifiers, "order created");
        Ok(CreatedOrder {
            order,
            authzs: authz_rows,
        })
    }

    /// RFC 9773 §5: `replaces` names a certificate of this account, shares an identifier with
    /// the new order, and is not replaced by another order already.
    async fn check_replaces(
        &self,
        cert_id: &str,
        account: &AccountRow,
        idents: &[Ident],
    ) -> Result<(), RaError> {
        let (_, serial) = crate::pki::ari::parse_cert_id(cert_id)
            .map_err(|e| RaError::Malformed(e.to_string()))?;
        let cert = self
            .store
            .certificate(&serial)
            .await?
            .filter(|c| {
                c.status == CertificateStatus::Issued
                    && c.account_id.as_deref() == Some(account.id.as_str())
            })
            .ok_or_else(|| {
                RaError::Malformed("replaces names no certificate of this account".into())
            })?;
        let der = cert.der.clone().unwrap_or_default();
        let (_, parsed) = x509_parser::parse_x509_certificate(&der)
            .map_err(|_| RaError::Internal("stored certificate is unreadable".into()))?;
        if crate::pki::ari::cert_id(&parsed).as_deref() != Some(cert_id) {
            return Err(RaError::Malformed(
                "replaces names no certificate of this account".into(),
            ));
        }
        let names = crate::ca::certificate_idents(&parsed);
        if !idents.iter().any(|i| names.contains(i)) {
            return Err(RaError::Malformed(
                "the replaced certificate shares no identifier with this order".into(),
            ));
        }
        if self.store.order_replacing(cert_id).await?.is_some() {
            return Err(RaError::AlreadyReplaced(
                "that certificate has been replaced by another order already".into(),
            ));
        }
        Ok(())
    }

    /// Finalize a ready order with `csr_der` (RFC 8555 §7.4): the CSR names exactly the
    /// order's identifiers; CAA is checked again for validations older than
    /// `caa_recheck_secs`; the order is claimed (`ready → processing`, once) and issued under
    /// its profile, snapshotted into it. Returns the order as it now stands.
    pub async fn finalize(
        &self,
        directory: &Directory,
        account: &AccountRow,
        order: OrderRow,
        authzs: &[AuthzRow],
        csr_der: Vec<u8>,
        account_uri: &str,
    ) -> Result<OrderRow, RaError> {
        let status = order.status_at(authzs, now());
        if status != OrderStatus::Ready {
            return Err(RaError::NotReady(format!("order is {status}, not ready")));
        }
        check_issuable(account, authzs)?;
        let csr = check_csr(&csr_der).map_err(|e| match e {
            CsrError::Bad(m) => RaError::BadCsr(m),
            CsrError::WeakKey(m) => RaError::WeakKey(m),
        })?;
        // Boulder's rule: the certificate's key is not the account's (a key proves one thing).
        if crate::pki::jwk::spki_thumbprint(&csr.public_key).as_deref() == Some(&account.thumbprint)
        {
            return Err(RaError::BadCsr(
                "the CSR's public key is the account's key; use another key".into(),
            ));
        }
        let wanted: BTreeSet<Ident> = authzs.iter().filter_map(authz_ident).collect();
        if csr.identifiers != wanted {
            return Err(RaError::BadCsr(format!(
                "the CSR names {:?}, the order {:?}",
                csr.identifiers.iter().map(Ident::value).collect::<Vec<_>>(),
                wanted.iter().map(Ident::value).collect::<Vec<_>>()
            )));
        }
        self.recheck_caa(authzs, account_uri).await?;
        let profile_name = order
            .profile_name
            .as_deref()
            .unwrap_or(&directory.default_profile);
        let profile = directory
            .profiles
            .get(profile_name)
            .cloned()
            .ok_or_else(|| {
                RaError::ProfileRefused(format!("profile {profile_name:?} is no longer offered"))
            })?;
        let snapshot = serde_json::to_string(&profile).unwrap_or_default();
        // ready → processing, exactly once, made by the issuance with its first record.
        let claim = Claim {
            order_id: &order.id,
            profile_snapshot: &snapshot,
            csr: &csr_der,
            now: now(),
        };
        let issued = match directory
            .ca
            .issue_claiming(&csr, &profile, claim, Some(&account.id))
            .await
        {
            Ok(issued) => {
                tracing::info!(order = %order.id, serial = %issued.serial, "certificate issued");
                self.audit(
                    AuditEvent::success(
                        format!("acme-account:{}", account.id),
                        "certificate.issued",
                        format!("certificate:{}", issued.serial),
                    )
                    .with(json!({
                        "order": order.id,
                        "issuer": directory.ca.name,
                        "profile": profile_name,
                    })),
                )
                .await;
                Some(issued.serial)
            }
            Err(IssueError::ClaimLost) => {
                return Err(RaError::NotReady("order is already being finalized".into()));
            }
            Err(IssueError::Pending) => None,
            Err(IssueError::Store(StoreError::OrderSettled(_))) => {
                tracing::info!(order = %order.id, "another issuance settled the order first; this certificate is not served");
                None
            }
            Err(e) => {
                tracing::error!(order = %order.id, error = %e, "issuance failed");
                self.fail_order(&order.id, "the certificate could not be issued")
                    .await?;
                self.audit(
                    AuditEvent::failure(
                        format!("acme-account:{}", account.id),
                        "certificate.issued",
                        format!("order:{}", order.id),
                        e.to_string(),
                    )
                    .with(json!({ "issuer": directory.ca.name })),
                )
                .await;
                None
            }
        };
        match issued {
            // The order is what this issuance made it: no need to read it back.
            Some(serial) => Ok(OrderRow {
                status: OrderStatus::Valid,
                certificate_serial: Some(serial),
                ..order
            }),
            None => self
                .store
                .order(&order.id)
                .await?
                .ok_or_else(|| RaError::NotFound("no such order".into())),
        }
    }

    /// The RA policy the account's external account binding carries, if any.
    pub(super) async fn binding_policy(
        &self,
        account: &AccountRow,
    ) -> Result<Option<BindingPolicy>, RaError> {
        let Some(kid) = &account.eab_kid else {
            return Ok(None);
        };
        let Some(policy) = self.store.eab_policy(kid).await? else {
            return Ok(None);
        };
        serde_json::from_str(&policy)
            .map(Some)
            .map_err(|_| RaError::Internal("the binding's stored policy is unreadable".into()))
    }

    /// The order is `invalid`, its error a `serverInternal` problem with `detail`.
    pub(super) async fn fail_order(&self, order_id: &str, detail: &str) -> Result<(), RaError> {
        let error = super::problem_document("serverInternal", 500, detail);
        self.store.fail_order(order_id, &error).await?;
        Ok(())
    }

    /// RFC 8659 at finalize: CAA is checked again for DNS authorizations validated longer ago
    /// than `caa_recheck_secs`.
    async fn recheck_caa(&self, authzs: &[AuthzRow], account_uri: &str) -> Result<(), RaError> {
        let at = now();
        for authz in authzs.iter().filter(|a| a.id_type == "dns") {
            let Some((kind, validated)) = &authz.validation else {
                continue;
            };
            if at - validated <= self.settings.caa_recheck_secs {
                continue;
            }
            let caa = CaaContext {
                account_uri: account_uri.to_string(),
                wildcard: authz.wildcard,
            };
            self.check_caa(&authz.id_value, &caa, kind).await?;
        }
        Ok(())
    }
}

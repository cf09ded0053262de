//! Accounts (RFC 8555 §7.3): registration, with an external account binding where the
//! directory asks for one (§7.3.4); contact updates and deactivation (§7.3.2, §7.3.6); key
//! roll-over (§7.3.5). The surface has checked the request's signatures and shapes.
//!
//! An account belongs to the ACME directory it was made in, and a key holds at most one account
//! per directory: registering a key known on another directory makes a new account here, under
//! this directory's binding rule.

use serde_json::json;

use super::binding::{BindingProof, EabPolicy};
use super::{ids, AuditEvent, Directory, Ra, RaError};
use crate::pki::csr::is_dns_name;
use crate::store::{now, AccountRow, AccountStatus, NewAccountOutcome};

/// At most this many contacts per account.
const MAX_CONTACTS: usize = 10;

/// A newAccount request, its signature checked.
pub struct NewAccount {
    /// RFC 7638 thumbprint of the account key.
    pub thumbprint: String,
    /// The account key's public members, as stored (JSON).
    pub jwk: String,
    pub contact: Vec<String>,
    pub only_return_existing: bool,
    pub terms_of_service_agreed: bool,
    pub binding: Option<BindingProof>,
}

/// What newAccount found or made.
pub enum Registered {
    Created(AccountRow),
    /// The key's account existed already.
    Existing(AccountRow),
}

/// A change an account asks for itself.
pub enum AccountUpdate {
    Deactivate,
    Contact(Vec<String>),
}

/// Contacts RFC 8555 §7.3 lets a server accept: `mailto:` URLs of one address each, at most
/// [`MAX_CONTACTS`].
pub fn check_contacts(contacts: &[String]) -> Result<Vec<String>, RaError> {
    if contacts.len() > MAX_CONTACTS {
        return Err(RaError::InvalidContact(format!(
            "at most {MAX_CONTACTS} contacts are accepted"
        )));
    }
    for c in contacts {
        let Some(addr) = c.strip_prefix("mailto:") else {
            return Err(RaError::UnsupportedContact(format!(
                "contact {c:?} is not a mailto: URL"
            )));
        };
        let valid = !addr.contains(['?', ',', ' ', '<', '>'])
            && addr
                .split_once('@')
                .is_some_and(|(local, domain)| !local.is_empty() && is_dns_name(domain));
        if !valid {
            return Err(RaError::InvalidContact(format!(
                "contact {c:?} is not a single e-mail address"
            )));
        }
    }
    Ok(contacts.to_vec())
}

impl Ra {
    /// newAccount on `directory`: the key's existing account there, or a new one of that
    /// directory, in this order of checks: the binding's proof (or its absence where always
    /// required), an existing account for the key in this directory, `onlyReturnExisting`, the
    /// terms, the binding for new accounts, the contacts.
    pub async fn register_account(
        &self,
        directory: &Directory,
        req: NewAccount,
    ) -> Result<Registered, RaError> {
        let binding = match &req.binding {
            Some(proof) => Some(self.verify_binding(directory, proof).await?),
            None if directory.eab_policy == EabPolicy::AlwaysRequired => {
                return Err(RaError::BindingRequired(
                    "this directory requires an external account binding".into(),
                ))
            }
            None => None,
        };
        // Only this directory's: the same key's account on another directory is another
        // account, which this request neither finds nor joins.
        if let Some(existing) = self
            .store
            .account_by_key(&directory.name, &req.thumbprint)
            .await?
        {
            if existing.status != AccountStatus::Valid {
                return Err(RaError::Unauthorized(format!(
                    "the account of this key is {}",
                    existing.status
                )));
            }
            return Ok(Registered::Existing(existing));
        }
        if req.only_return_existing {
            return Err(RaError::NoAccount("no account exists for this key".into()));
        }
        if self.settings.terms_of_service.is_some() && !req.terms_of_service_agreed {
            return Err(RaError::TermsNotAgreed(
                "the terms of service must be agreed to (termsOfServiceAgreed)".into(),
            ));
        }
        if binding.is_none() && directory.eab_policy == EabPolicy::NewAccountRequired {
            return Err(RaError::BindingRequired(
                "this directory requires an external account binding for new accounts".into(),
            ));
        }
        let contact = check_contacts(&req.contact)?;
        let account = AccountRow {
            id: ids::object_id(),
            directory: directory.name.clone(),
            thumbprint: req.thumbprint,
            jwk: req.jwk,
            status: AccountStatus::Valid,
            contact: json!(contact).to_string(),
            eab_kid: binding.clone(),
            created_at: now(),
        };
        match self
            .store
            .insert_account(&account, binding.as_deref())
            .await?
        {
            NewAccountOutcome::Created => {
                tracing::info!(account = %account.id, "account created");
                let who = format!("acme-account:{}", account.id);
                self.audit(
                    AuditEvent::success(&who, "acme.account.created", &who).with(json!({
                        "directory": directory.name,
                        "eab_kid": binding,
                        "thumbprint": account.thumbprint,
                    })),
                )
                .await;
                Ok(Registered::Created(account))
            }
            NewAccountOutcome::EabUsed => Err(RaError::Unauthorized(
                "this external account binding key was used already".into(),
            )),
            // Another request registered this key at the same moment: that account is this one.
            NewAccountOutcome::KeyExists => self
                .store
                .account_by_key(&account.directory, &account.thumbprint)
                .await?
                .map(Registered::Existing)
                .ok_or_else(|| RaError::Internal("account vanished during registration".into())),
        }
    }

    /// An account's change of itself (RFC 8555 §7.3.2, §7.3.6).
    pub async fn update_account(&self, id: &str, update: AccountUpdate) -> Result<(), RaError> {
        match update {
            AccountUpdate::Deactivate => {
                self.store.deactivate_account(id).await?;
                tracing::info!(account = %id, "account deactivated");
                let who = format!("acme-account:{id}");
                self.audit(AuditEvent::success(&who, "acme.account.deactivated", &who))
                    .await;
            }
            AccountUpdate::Contact(contact) => {
                let contact = check_contacts(&contact)?;
                self.store
                    .update_account_contact(id, &json!(contact).to_string())
                    .await?;
                let who = format!("acme-account:{id}");
                self.audit(
                    AuditEvent::success(&who, "acme.account.contact_changed", &who)
                        .with(json!({ "contact": contact })),
                )
                .await;
            }
        }
        Ok(())
    }

    /// RFC 8555 §7.3.5: the account's key becomes `new_jwk` (thumbprint `new_thumbprint`),
    /// unless another account of its directory holds that key, or the key changed meanwhile.
    pub async fn roll_over_key(
        &self,
        account: &AccountRow,
        new_thumbprint: &str,
        new_jwk: &str,
    ) -> Result<(), RaError> {
        let key_in_use = |other: Option<AccountRow>| RaError::KeyInUse {
            detail: "the new key belongs to another account".into(),
            account_id: other.map(|o| o.id),
        };
        // A key is unique within a directory: the new key may hold an account elsewhere.
        let directory = account.directory.as_str();
        if let Some(other) = self.store.account_by_key(directory, new_thumbprint).await? {
            return Err(key_in_use(Some(other)));
        }
        match self
            .store
            .update_account_key(&account.id, &account.thumbprint, new_thumbprint, new_jwk)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                return Err(RaError::Malformed(
                    "the account's key changed meanwhile; retry".into(),
                ))
            }
            Err(e) if e.is_unique_violation() => {
                let other = self.store.account_by_key(directory, new_thumbprint).await?;
                return Err(key_in_use(other));
            }
            Err(e) => return Err(e.into()),
        }
        tracing::info!(account = %account.id, "account key rolled over");
        let who = format!("acme-account:{}", account.id);
        self.audit(
            AuditEvent::success(&who, "acme.account.key_changed", &who).with(json!({
                "old_thumbprint": account.thumbprint,
                "new_thumbprint": new_thumbprint,
            })),
        )
        .await;
        Ok(())
    }
}

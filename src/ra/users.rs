//! Notary's accounts, which are identity's users: made (the very first one without any
//! credential, only while no user exists at all), deleted, and given a new password. The
//! surface hashes passwords (identity's argon2id) and hands the RA the rows to write; who made
//! each change is logged with it.

use super::{AuditEvent, Ra, RaError};
use crate::store::{AccountNumbered, UserRow};

impl Ra {
    /// Make `user` (its password hashed already) and give back its account. `first`: only
    /// while there is no user at all (Notary's first account, made without credentials).
    pub async fn create_account(
        &self,
        user: &UserRow,
        first: bool,
        by: &str,
    ) -> Result<AccountNumbered, RaError> {
        let made = if first {
            self.store.insert_first_user(user).await
        } else {
            self.store.insert_user(user, &[]).await.map(|()| true)
        };
        match made {
            Ok(true) => {}
            Ok(false) => {
                return Err(RaError::Unauthorized(
                    "an account exists already: authenticate to create more".into(),
                ))
            }
            Err(e) if e.is_unique_violation() => {
                return Err(RaError::Conflict(
                    "account with given email already exists".into(),
                ))
            }
            Err(e) => return Err(e.into()),
        }
        let account = self
            .store
            .account_of_user(&user.id)
            .await?
            .ok_or_else(|| RaError::Internal("the new account has no number".into()))?;
        tracing::info!(account = account.number, roles = %user.roles, by, "account created");
        self.audit(
            AuditEvent::success(by, "account.created", format!("account:{}", account.number))
                .with(serde_json::json!({"roles": user.roles})),
        )
        .await;
        Ok(account)
    }

    /// Delete account `number` (its user disabled and stripped of its names and credentials).
    pub async fn delete_account(&self, account: &AccountNumbered, by: &str) -> Result<(), RaError> {
        if !self
            .store
            .delete_numbered_account(account.number, &account.user.id)
            .await?
        {
            return Err(RaError::NotFound("no such account".into()));
        }
        tracing::info!(account = account.number, by, "account deleted");
        self.audit(AuditEvent::success(
            by,
            "account.deleted",
            format!("account:{}", account.number),
        ))
        .await;
        Ok(())
    }

    /// Replace the password (hashed already) of `account`.
    pub async fn change_password(
        &self,
        account: &AccountNumbered,
        password_hash: &str,
        by: &str,
    ) -> Result<(), RaError> {
        if !self
            .store
            .set_user_password(&account.user.id, Some(password_hash))
            .await?
        {
            return Err(RaError::NotFound("no such account".into()));
        }
        tracing::info!(account = account.number, by, "password changed");
        self.audit(AuditEvent::success(
            by,
            "account.password_changed",
            format!("account:{}", account.number),
        ))
        .await;
        Ok(())
    }
}

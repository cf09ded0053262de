//! Accounts (RFC 8555 §7.3): created (binding an EAB key in the same transaction), read by
//! key within their ACME directory or by id (from memory on SQLite, `fast::accounts`), their
//! key and contact changed, deactivated with their authorizations (§7.3.6). A key holds at most
//! one account per directory.

use std::sync::Arc;

use super::group_commit::After;
use super::rows::{account_cols, account_from};
use super::sql::statement;
use super::{AccountRow, Reads, Result, Store, Written};

/// What came of [`Store::insert_account`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NewAccountOutcome {
    Created,
    /// An account with this key exists in this directory (a concurrent registration won).
    KeyExists,
    /// The EAB key was bound to another account meanwhile; nothing was written.
    EabUsed,
}

/// An account by its directory and its key's thumbprint (newAccount, key roll-over).
pub(super) const ACCOUNT_BY_KEY: &str = concat!(
    "SELECT ",
    account_cols!(),
    " FROM accounts WHERE directory = $1 AND thumbprint = $2"
);

impl Reads {
    /// The account of the key whose RFC 7638 thumbprint is `thumbprint` in ACME directory
    /// `directory`: a key holds at most one account per directory.
    pub async fn account_by_key(
        &self,
        directory: &str,
        thumbprint: &str,
    ) -> Result<Option<AccountRow>> {
        let row = sqlx::query(ACCOUNT_BY_KEY)
            .bind(directory)
            .bind(thumbprint)
            .fetch_optional(&mut self.reader().await?)
            .await?;
        Ok(row.map(|r| account_from(&r)).transpose()?)
    }

    /// On SQLite from memory, or read and kept there unless an account changed meanwhile
    /// (`fast::accounts`): no copy outlives a change of the row, so this is a read.
    pub async fn account(&self, id: &str) -> Result<Option<AccountRow>> {
        let generation = match &self.accounts {
            Some(cache) => {
                if let Some(row) = cache.get(id) {
                    return Ok(Some(row));
                }
                Some(cache.generation())
            }
            None => None,
        };
        let row = sqlx::query(concat!(
            "SELECT ",
            account_cols!(),
            " FROM accounts WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&mut self.reader().await?)
        .await?;
        let account = row.map(|r| account_from(&r)).transpose()?;
        if let (Some(cache), Some(generation), Some(account)) =
            (&self.accounts, generation, &account)
        {
            cache.keep(account, generation);
        }
        Ok(account)
    }
}

impl Store {
    /// Create an account; with `eab_kid`, bind (and so use up) that EAB key in the same
    /// transaction. Outcome: created, the key existed already, or the EAB key was used already.
    pub async fn insert_account(
        &self,
        a: &AccountRow,
        eab_kid: Option<&str>,
    ) -> Result<NewAccountOutcome> {
        let insert = statement!(
            "INSERT INTO accounts (id, thumbprint, jwk, status, contact, eab_kid, created_at, directory) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (directory, thumbprint) DO NOTHING",
            &a.id,
            &a.thumbprint,
            &a.jwk,
            a.status.as_str(),
            &a.contact,
            eab_kid,
            a.created_at,
            &a.directory,
        );
        let bind = eab_kid.map(|kid| {
            statement!(
                "UPDATE eab_keys SET bound_account = $1, bound_at = $2 WHERE kid = $3 AND bound_account IS NULL",
                &a.id,
                a.created_at,
                kid,
            )
        });
        self.write((insert, bind), |conn, (insert, bind)| {
            Box::pin(async move {
                if insert.run(conn).await? != 1 {
                    return Ok(Written::Commit(NewAccountOutcome::KeyExists));
                }
                if let Some(bind) = bind {
                    if bind.run(conn).await? != 1 {
                        return Ok(Written::Rollback(NewAccountOutcome::EabUsed));
                    }
                }
                Ok(Written::Commit(NewAccountOutcome::Created))
            })
        })
        .await
    }

    /// Drops account `id` from memory once a write that may change it has ended, whatever came
    /// of it: in the writer, in commit order, so that no read of the row from before the
    /// change is kept after it (see `cache`), even when the caller is gone by then.
    fn account_changes<T: 'static>(&self, id: &str) -> Option<After<T>> {
        let accounts = self.accounts.clone()?;
        let id = id.to_owned();
        Some(Arc::new(move |_| accounts.forget(&id)))
    }

    /// Replace an account's key, once: `false` if the old key changed meanwhile. A new key that
    /// another account of the same directory holds fails with a unique violation
    /// (`is_unique_violation`).
    pub async fn update_account_key(
        &self,
        id: &str,
        old_thumbprint: &str,
        new_thumbprint: &str,
        new_jwk: &str,
    ) -> Result<bool> {
        let update = statement!(
            "UPDATE accounts SET thumbprint = $1, jwk = $2 WHERE id = $3 AND thumbprint = $4 AND status = 'valid'",
            new_thumbprint,
            new_jwk,
            id,
            old_thumbprint,
        );
        Ok(self.execute_then(update, self.account_changes(id)).await? == 1)
    }

    pub async fn update_account_contact(&self, id: &str, contact: &str) -> Result<()> {
        let update = statement!(
            "UPDATE accounts SET contact = $1 WHERE id = $2 AND status = 'valid'",
            contact,
            id,
        );
        self.execute_then(update, self.account_changes(id)).await?;
        Ok(())
    }

    /// Deactivate an account and, with it, its pending and valid authorizations (RFC 8555 §7.3.6).
    pub async fn deactivate_account(&self, id: &str) -> Result<bool> {
        let statements = vec![
            statement!(
                "UPDATE accounts SET status = 'deactivated' WHERE id = $1 AND status = 'valid'",
                id
            ),
            statement!(
                "UPDATE authorizations SET status = 'deactivated' WHERE account_id = $1 AND status IN ('pending', 'valid')",
                id
            ),
        ];
        let account = self.account_changes(id);
        let account_id = id.to_owned();
        let after = self.after(move |fresh, committed| {
            fresh.forget_authzs_of_account(&account_id);
            if let Some(account) = &account {
                account(committed);
            }
        });
        Ok(self.execute_all_then(statements, after).await?.first() == Some(&1))
    }
}

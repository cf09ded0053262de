//! Notary's accounts over identity's users: each user's integer account number (given by a
//! trigger when the user is made, whatever made it), the first account made while there is no
//! user at all, and an account's deletion (its user disabled and stripped of its names, links
//! and keys; the number never reused).

use sqlx::any::AnyRow;
use sqlx::Row;

use super::sql::statement;
use super::users::{user_columns, user_row};
use super::{now, Arg, Reads, Result, Statement, Store, UserRow};

/// A user and its account number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountNumbered {
    pub number: i64,
    pub user: UserRow,
}

/// Accounts not deleted, with their users (a condition may follow, `AND …`).
const NUMBERED: &str = concat!(
    "SELECT ",
    user_columns!(),
    ", n.id AS account_number FROM account_numbers n JOIN users u ON u.id = n.user_id \
     WHERE n.deleted_at IS NULL"
);

fn numbered(r: &AnyRow) -> std::result::Result<AccountNumbered, sqlx::Error> {
    Ok(AccountNumbered {
        number: r.try_get("account_number")?,
        user: user_row(r)?,
    })
}

impl Reads {
    /// Every account not deleted, by number.
    pub async fn numbered_accounts(&self) -> Result<Vec<AccountNumbered>> {
        let sql = format!("{NUMBERED} ORDER BY n.id");
        let rows = sqlx::query(&sql)
            .fetch_all(&mut self.reader().await?)
            .await?;
        Ok(rows
            .iter()
            .map(numbered)
            .collect::<std::result::Result<_, _>>()?)
    }

    /// The account with this number, unless deleted.
    pub async fn numbered_account(&self, number: i64) -> Result<Option<AccountNumbered>> {
        self.numbered_where("n.id", number.into()).await
    }

    /// The account of a user, unless deleted.
    pub async fn account_of_user(&self, user_id: &str) -> Result<Option<AccountNumbered>> {
        self.numbered_where("n.user_id", user_id.into()).await
    }

    async fn numbered_where(&self, column: &str, value: Arg) -> Result<Option<AccountNumbered>> {
        let lookup = Statement::new(format!("{NUMBERED} AND {column} = $1"), vec![value]);
        let row = lookup
            .query()
            .fetch_optional(&mut self.reader().await?)
            .await?;
        Ok(row.as_ref().map(numbered).transpose()?)
    }

    /// Whether any user exists (Notary's `initialized`).
    pub async fn any_user(&self) -> Result<bool> {
        let found: Option<i64> = sqlx::query_scalar("SELECT CAST(1 AS BIGINT) FROM users LIMIT 1")
            .fetch_optional(&mut self.reader().await?)
            .await?;
        Ok(found.is_some())
    }
}

impl Store {
    /// Insert `user` only while there is no user at all (Notary's first account, made without
    /// credentials): `false` when another was made first. A taken name is a unique violation.
    pub async fn insert_first_user(&self, user: &UserRow) -> Result<bool> {
        let insert = statement!(
            "INSERT INTO users (id, username, email, roles, password_hash, enabled, created_at, updated_at) \
             SELECT $1, $2, $3, $4, $5, $6, $7, $8 WHERE NOT EXISTS (SELECT 1 FROM users)",
            &user.id,
            &user.username,
            &user.email,
            &user.roles,
            &user.password_hash,
            i64::from(user.enabled),
            user.created_at,
            user.updated_at,
        );
        Ok(self.execute(insert).await? == 1)
    }

    /// Delete account `number` of user `user_id`: the user is disabled and loses its e-mail
    /// address, password, linked certificates and bound keys, so nothing logs in as it again
    /// and its names are free; the number is kept, deleted. `false` when it is gone already.
    pub async fn delete_numbered_account(&self, number: i64, user_id: &str) -> Result<bool> {
        let at = now();
        let changed = self
            .execute_all(vec![
                statement!(
                    "UPDATE account_numbers SET deleted_at = $1 WHERE id = $2 AND user_id = $3 AND deleted_at IS NULL",
                    at,
                    number,
                    user_id,
                ),
                statement!(
                    "UPDATE users SET enabled = 0, email = NULL, password_hash = NULL, username = $1, updated_at = $2 \
                     WHERE id = $3",
                    &format!("#deleted-{number}"),
                    at,
                    user_id,
                ),
                statement!("DELETE FROM user_certificates WHERE user_id = $1", user_id),
                statement!("DELETE FROM user_keys WHERE user_id = $1", user_id),
            ])
            .await?;
        Ok(changed.first() == Some(&1))
    }
}

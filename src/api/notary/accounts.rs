//! `/api/v1/accounts`: Notary's accounts, which are identity's users (`/login` takes their
//! e-mail address and password). List, create (the first one without credentials, and it must
//! be an admin; later ones by an admin), get, delete (202; never an admin's), change a password
//! (201; one's own, or anyone's by an admin), and `me`.

use http::StatusCode;

use super::wire::{Account, AccountAnswer, AccountListAnswer, ChangePassword, CreateAccount};
use super::{
    created, done, error, parse_body, parse_id, ra_error, read_failed, who, Call, NotaryApi,
};
use crate::api::Reply;
use crate::identity::passwords::hash_password;
use crate::identity::users::normalize_email;
use crate::identity::{authorize, Action, Principal, Role};
use crate::store::{now, AccountNumbered, UserRow};

fn shown(account: AccountNumbered) -> Account {
    let roles = Role::parse_list(&account.user.roles).unwrap_or_default();
    Account {
        id: account.number,
        email: account.user.email.unwrap_or_default(),
        role_id: roles
            .iter()
            .map(|r| r.notary_number())
            .min()
            .unwrap_or(Role::ReadOnly.notary_number()),
    }
}

/// Notary's password rule: 8 characters or more, a capital, a lowercase letter, and a digit or
/// a symbol.
fn check_password(password: &str) -> Result<(), Reply> {
    let fine = password.chars().count() >= 8
        && password.chars().any(|c| c.is_ascii_uppercase())
        && password.chars().any(|c| c.is_ascii_lowercase())
        && password.chars().any(|c| !c.is_alphabetic());
    if fine {
        Ok(())
    } else {
        Err(error(
            StatusCode::BAD_REQUEST,
            "invalid request: password must have 8 or more characters, must include at least one capital letter, one lowercase letter, and either a number or a symbol",
        ))
    }
}

/// A username for an account known by its e-mail address (identity's usernames have no `@`).
fn username_for(email: &str) -> String {
    let name: String = email
        .replace('@', "_at_")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    name
}

/// The password's argon2id hash, made off the async threads.
async fn hashed(password: String) -> Result<String, Reply> {
    match tokio::task::spawn_blocking(move || hash_password(&password)).await {
        Ok(Ok(hash)) => Ok(hash),
        Ok(Err(e)) => Err(error(
            StatusCode::BAD_REQUEST,
            format!("invalid request: {e}"),
        )),
        Err(e) => {
            tracing::error!(error = %e, "hashing a password did not finish");
            Err(error(StatusCode::INTERNAL_SERVER_ERROR, "internal error"))
        }
    }
}

impl NotaryApi {
    /// The account `id` names (`me`: the caller's own).
    async fn account(&self, call: &Call<'_>, id: &str) -> Result<AccountNumbered, Reply> {
        let found = if id == "me" {
            match call.principal.user_id() {
                Some(user_id) => self.reads.account_of_user(user_id).await,
                None => {
                    return Err(error(
                        StatusCode::NOT_FOUND,
                        "this credential names no account",
                    ))
                }
            }
        } else {
            self.reads.numbered_account(parse_id(id)?).await
        };
        found
            .map_err(read_failed)?
            .ok_or_else(|| error(StatusCode::NOT_FOUND, "account not found"))
    }

    pub(super) async fn list_accounts(&self) -> Result<Reply, Reply> {
        let accounts = self.reads.numbered_accounts().await.map_err(read_failed)?;
        Ok(Reply::json(
            StatusCode::OK,
            &AccountListAnswer {
                result: accounts.into_iter().map(shown).collect(),
            },
        ))
    }

    pub(super) async fn get_account(&self, id: &str) -> Result<Reply, Reply> {
        let account = self
            .reads
            .numbered_account(parse_id(id)?)
            .await
            .map_err(read_failed)?
            .ok_or_else(|| error(StatusCode::NOT_FOUND, "account not found"))?;
        Ok(Reply::json(
            StatusCode::OK,
            &AccountAnswer {
                result: shown(account),
            },
        ))
    }

    pub(super) async fn my_account(&self, call: &Call<'_>) -> Result<Reply, Reply> {
        let account = self.account(call, "me").await?;
        Ok(Reply::json(
            StatusCode::OK,
            &AccountAnswer {
                result: shown(account),
            },
        ))
    }

    /// The first account needs no credential (and must be an admin); later ones an admin.
    pub(super) async fn create_account(&self, call: &Call<'_>) -> Result<Reply, Reply> {
        let first = call.principal == Principal::Anonymous;
        if first {
            // Without a credential only while there is no account at all.
            match self.reads.any_user().await {
                Ok(false) => {}
                Ok(true) => return Err(error(StatusCode::UNAUTHORIZED, "unauthorized")),
                Err(e) => return Err(read_failed(e)),
            }
        } else {
            if let Err(denied) = authorize(&call.principal, Action::NotaryAccounts) {
                return Err(super::refused(denied));
            }
        }
        let new: CreateAccount = parse_body(&call.body)?;
        let email = normalize_email(&new.email).map_err(|_| {
            error(
                StatusCode::BAD_REQUEST,
                "invalid request: invalid email format",
            )
        })?;
        let Some(role) = Role::ALL
            .into_iter()
            .find(|r| r.notary_number() == new.role_id)
        else {
            return Err(error(
                StatusCode::BAD_REQUEST,
                format!("invalid request: invalid role ID: {}", new.role_id),
            ));
        };
        if first && role != Role::Admin {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "invalid request: the first account must be an admin (role_id 0)",
            ));
        }
        check_password(&new.password)?;
        let password_hash = hashed(new.password).await?;
        let at = now();
        let user = UserRow {
            id: crate::ra::ids::object_id(),
            username: username_for(&email),
            email: Some(email),
            roles: Role::join(&[role]),
            password_hash: Some(password_hash),
            enabled: true,
            created_at: at,
            updated_at: at,
        };
        let account = self
            .ra
            .create_account(&user, first, &who(&call.principal))
            .await
            .map_err(|e| match e {
                crate::ra::RaError::Unauthorized(_) => {
                    error(StatusCode::UNAUTHORIZED, "unauthorized")
                }
                e => ra_error(e),
            })?;
        Ok(created(account.number))
    }

    pub(super) async fn delete_account(&self, call: &Call<'_>, id: &str) -> Result<Reply, Reply> {
        let account = self.account(call, id).await?;
        if Role::parse_list(&account.user.roles).is_ok_and(|roles| roles.contains(&Role::Admin)) {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "deleting an Admin account is not allowed.",
            ));
        }
        self.ra
            .delete_account(&account, &who(&call.principal))
            .await
            .map_err(ra_error)?;
        Ok(done(StatusCode::ACCEPTED))
    }

    /// One's own password (`me`, or one's own id), or anyone's by an admin.
    pub(super) async fn change_password(&self, call: &Call<'_>, id: &str) -> Result<Reply, Reply> {
        if call.principal == Principal::Anonymous {
            return Err(error(StatusCode::UNAUTHORIZED, "unauthorized"));
        }
        let account = self.account(call, id).await?;
        let own = call.principal.user_id() == Some(account.user.id.as_str());
        if !own {
            if let Err(denied) = authorize(&call.principal, Action::NotaryAccounts) {
                return Err(super::refused(denied));
            }
        }
        let change: ChangePassword = parse_body(&call.body)?;
        check_password(&change.password)?;
        let password_hash = hashed(change.password).await?;
        self.ra
            .change_password(&account, &password_hash, &who(&call.principal))
            .await
            .map_err(ra_error)?;
        Ok(done(StatusCode::CREATED))
    }
}

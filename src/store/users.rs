//! Users (`identity`): their roles and password hash (argon2id PHC string, never the password),
//! the certificates linked to them (subject and issuer DN, RFC 2253) and the public keys bound to
//! them (RFC 7638 thumbprints) for JWS-signed requests.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::sql::statement;
use super::{now, Reads, Result, Statement, Store};

/// A user as stored. `roles` are the space-separated role names `identity` reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    pub id: String,
    pub username: String,
    pub email: Option<String>,
    pub roles: String,
    /// argon2id PHC string; `None`: no password login.
    pub password_hash: Option<String>,
    pub enabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A certificate linked to a user, by its names (and the certificate, when it was given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserCertificateRow {
    pub id: String,
    pub user_id: String,
    pub subject_dn: String,
    pub issuer_dn: String,
    pub der: Option<Vec<u8>>,
    pub created_at: i64,
}

/// A public key bound to a user: its RFC 7638 thumbprint and its public JWK (JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserKeyRow {
    pub thumbprint: String,
    pub user_id: String,
    pub jwk: String,
    pub created_at: i64,
}

/// A user's columns, from `users u`.
macro_rules! user_columns {
    () => {
        "u.id, u.username, u.email, u.roles, u.password_hash, u.enabled, u.created_at, u.updated_at"
    };
}
pub(super) use user_columns;

const USER_COLUMNS: &str = user_columns!();

pub(super) fn user_row(r: &AnyRow) -> std::result::Result<UserRow, sqlx::Error> {
    Ok(UserRow {
        id: r.try_get("id")?,
        username: r.try_get("username")?,
        email: r.try_get("email")?,
        roles: r.try_get("roles")?,
        password_hash: r.try_get("password_hash")?,
        enabled: r.try_get::<i64, _>("enabled")? != 0,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

pub(super) fn certificate_row(r: &AnyRow) -> std::result::Result<UserCertificateRow, sqlx::Error> {
    Ok(UserCertificateRow {
        id: r.try_get("id")?,
        user_id: r.try_get("user_id")?,
        subject_dn: r.try_get("subject_dn")?,
        issuer_dn: r.try_get("issuer_dn")?,
        der: r.try_get("der")?,
        created_at: r.try_get("created_at")?,
    })
}

fn key_row(r: &AnyRow) -> std::result::Result<UserKeyRow, sqlx::Error> {
    Ok(UserKeyRow {
        thumbprint: r.try_get("k_thumbprint")?,
        user_id: r.try_get("k_user_id")?,
        jwk: r.try_get("k_jwk")?,
        created_at: r.try_get("k_created_at")?,
    })
}

impl Reads {
    /// The one user a query (with `USER_COLUMNS` from `users u`) finds by `value`.
    async fn user_where(&self, condition: &str, value: &str) -> Result<Option<UserRow>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users u WHERE {condition}");
        let row = sqlx::query(&sql)
            .bind(value)
            .fetch_optional(&mut self.reader().await?)
            .await?;
        Ok(row.as_ref().map(user_row).transpose()?)
    }

    pub async fn user(&self, id: &str) -> Result<Option<UserRow>> {
        self.user_where("u.id = $1", id).await
    }

    pub async fn user_by_username(&self, username: &str) -> Result<Option<UserRow>> {
        self.user_where("u.username = $1", username).await
    }

    /// By e-mail address, as stored (`identity` stores them in lower case).
    pub async fn user_by_email(&self, email: &str) -> Result<Option<UserRow>> {
        self.user_where("u.email = $1", email).await
    }

    /// The user a certificate with this subject and issuer (RFC 2253, `pki::dn`) is linked to.
    pub async fn user_by_certificate(
        &self,
        subject_dn: &str,
        issuer_dn: &str,
    ) -> Result<Option<UserRow>> {
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users u JOIN user_certificates c ON c.user_id = u.id \
             WHERE c.subject_dn = $1 AND c.issuer_dn = $2"
        );
        let row = sqlx::query(&sql)
            .bind(subject_dn)
            .bind(issuer_dn)
            .fetch_optional(&mut self.reader().await?)
            .await?;
        Ok(row.as_ref().map(user_row).transpose()?)
    }

    /// The user a key with this RFC 7638 thumbprint is bound to, with the binding.
    pub async fn user_by_key(&self, thumbprint: &str) -> Result<Option<(UserRow, UserKeyRow)>> {
        let sql = format!(
            "SELECT {USER_COLUMNS}, k.thumbprint AS k_thumbprint, k.user_id AS k_user_id, \
             k.jwk AS k_jwk, k.created_at AS k_created_at \
             FROM users u JOIN user_keys k ON k.user_id = u.id WHERE k.thumbprint = $1"
        );
        let row = sqlx::query(&sql)
            .bind(thumbprint)
            .fetch_optional(&mut self.reader().await?)
            .await?;
        Ok(row
            .as_ref()
            .map(|r| Ok::<_, sqlx::Error>((user_row(r)?, key_row(r)?)))
            .transpose()?)
    }

    /// Every user, by username.
    pub async fn users(&self) -> Result<Vec<UserRow>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users u ORDER BY u.username");
        let rows = sqlx::query(&sql)
            .fetch_all(&mut self.reader().await?)
            .await?;
        Ok(rows
            .iter()
            .map(user_row)
            .collect::<std::result::Result<_, _>>()?)
    }

    /// The certificates linked to a user, oldest first.
    pub async fn user_certificates(&self, user_id: &str) -> Result<Vec<UserCertificateRow>> {
        let rows = sqlx::query(
            "SELECT id, user_id, subject_dn, issuer_dn, der, created_at FROM user_certificates \
             WHERE user_id = $1 ORDER BY created_at, id",
        )
        .bind(user_id)
        .fetch_all(&mut self.reader().await?)
        .await?;
        Ok(rows
            .iter()
            .map(certificate_row)
            .collect::<std::result::Result<_, _>>()?)
    }

    /// The keys bound to a user, oldest first.
    pub async fn user_keys(&self, user_id: &str) -> Result<Vec<UserKeyRow>> {
        let rows = sqlx::query(
            "SELECT thumbprint AS k_thumbprint, user_id AS k_user_id, jwk AS k_jwk, \
             created_at AS k_created_at FROM user_keys WHERE user_id = $1 \
             ORDER BY created_at, thumbprint",
        )
        .bind(user_id)
        .fetch_all(&mut self.reader().await?)
        .await?;
        Ok(rows
            .iter()
            .map(key_row)
            .collect::<std::result::Result<_, _>>()?)
    }
}

fn insert_certificate(link: &UserCertificateRow) -> Statement {
    statement!(
        "INSERT INTO user_certificates (id, user_id, subject_dn, issuer_dn, der, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
        &link.id,
        &link.user_id,
        &link.subject_dn,
        &link.issuer_dn,
        link.der.as_deref(),
        link.created_at,
    )
}

impl Store {
    /// A new user, and the certificates linked to it, in one transaction. A username, e-mail
    /// or certificate taken already refuses the whole ([`super::StoreError::is_unique_violation`]).
    pub async fn insert_user(
        &self,
        user: &UserRow,
        certificates: &[UserCertificateRow],
    ) -> Result<()> {
        let mut statements = vec![statement!(
            "INSERT INTO users (id, username, email, roles, password_hash, enabled, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &user.id,
            &user.username,
            &user.email,
            &user.roles,
            &user.password_hash,
            i64::from(user.enabled),
            user.created_at,
            user.updated_at,
        )];
        statements.extend(certificates.iter().map(insert_certificate));
        self.execute_all(statements).await?;
        Ok(())
    }

    /// Link one more certificate to a user.
    pub async fn insert_user_certificate(&self, link: &UserCertificateRow) -> Result<()> {
        self.execute(insert_certificate(link)).await?;
        Ok(())
    }

    /// Bind a public key to a user. A key bound already (to anyone) is refused.
    pub async fn insert_user_key(&self, key: &UserKeyRow) -> Result<()> {
        self.execute(statement!(
            "INSERT INTO user_keys (thumbprint, user_id, jwk, created_at) VALUES ($1, $2, $3, $4)",
            &key.thumbprint,
            &key.user_id,
            &key.jwk,
            key.created_at,
        ))
        .await?;
        Ok(())
    }

    /// Disable a user: every token and link of theirs stops working at its next use. `false`:
    /// no such user.
    pub async fn disable_user(&self, username: &str) -> Result<bool> {
        let changed = self
            .execute(statement!(
                "UPDATE users SET enabled = 0, updated_at = $1 WHERE username = $2",
                now(),
                username,
            ))
            .await?;
        Ok(changed == 1)
    }

    /// Replace a user's password hash (`None`: no password login). `false`: no such user.
    pub async fn set_user_password(&self, id: &str, password_hash: Option<&str>) -> Result<bool> {
        let changed = self
            .execute(statement!(
                "UPDATE users SET password_hash = $1, updated_at = $2 WHERE id = $3",
                password_hash,
                now(),
                id,
            ))
            .await?;
        Ok(changed == 1)
    }
}

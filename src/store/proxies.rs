//! Users' uploaded RFC 3820 proxy certificates (IAM's `PUT /iam/account/me/proxycert`): the
//! chain's certificates, the proxy's private key sealed with the key-encryption key (never in
//! the clear), and when the chain expires. One per linked certificate: a new upload replaces it.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::sql::statement;
use super::{Reads, Result, Store};

/// A stored proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserProxyRow {
    pub id: String,
    pub user_id: String,
    /// The linked certificate (`user_certificates.id`) at the end of the proxy chain.
    pub certificate_id: String,
    /// The end-entity certificate's subject and issuer, RFC 2253.
    pub subject_dn: String,
    pub issuer_dn: String,
    /// The chain's certificates, PEM, the proxy first.
    pub chain_pem: String,
    /// The proxy's private key, sealed (`pkid_backends::sealed`).
    pub sealed_key: String,
    /// The earliest notAfter of the chain, seconds since the epoch.
    pub expires_at: i64,
    pub created_at: i64,
}

fn proxy_row(r: &AnyRow) -> std::result::Result<UserProxyRow, sqlx::Error> {
    Ok(UserProxyRow {
        id: r.try_get("id")?,
        user_id: r.try_get("user_id")?,
        certificate_id: r.try_get("certificate_id")?,
        subject_dn: r.try_get("subject_dn")?,
        issuer_dn: r.try_get("issuer_dn")?,
        chain_pem: r.try_get("chain_pem")?,
        sealed_key: r.try_get("sealed_key")?,
        expires_at: r.try_get("expires_at")?,
        created_at: r.try_get("created_at")?,
    })
}

impl Reads {
    /// A user's stored proxies, the oldest upload first.
    pub async fn user_proxies(&self, user_id: &str) -> Result<Vec<UserProxyRow>> {
        let rows = sqlx::query(
            "SELECT id, user_id, certificate_id, subject_dn, issuer_dn, chain_pem, sealed_key, \
             expires_at, created_at FROM user_proxies WHERE user_id = $1 ORDER BY created_at, id",
        )
        .bind(user_id)
        .fetch_all(&mut self.reader().await?)
        .await?;
        Ok(rows
            .iter()
            .map(proxy_row)
            .collect::<std::result::Result<_, _>>()?)
    }
}

impl Store {
    /// Store a proxy for its linked certificate, replacing the one stored for it before (the
    /// row keeps its first id).
    pub async fn put_user_proxy(&self, p: &UserProxyRow) -> Result<()> {
        self.execute(statement!(
            "INSERT INTO user_proxies (id, user_id, certificate_id, subject_dn, issuer_dn, \
             chain_pem, sealed_key, expires_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (certificate_id) DO UPDATE SET subject_dn = excluded.subject_dn, \
             issuer_dn = excluded.issuer_dn, chain_pem = excluded.chain_pem, \
             sealed_key = excluded.sealed_key, expires_at = excluded.expires_at, \
             created_at = excluded.created_at",
            &p.id,
            &p.user_id,
            &p.certificate_id,
            &p.subject_dn,
            &p.issuer_dn,
            &p.chain_pem,
            &p.sealed_key,
            p.expires_at,
            p.created_at,
        ))
        .await?;
        Ok(())
    }
}

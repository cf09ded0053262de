//! Users as the operator manages them (`pkid user …`): create one with its roles, e-mail,
//! password (argon2id, `passwords`) and a linked certificate (its subject and issuer DN in RFC
//! 2253 form, `pki::dn`); list them; disable one (its tokens stop working at their next use);
//! bind a public key (RFC 7638 thumbprint) for JWS-signed requests.

use serde_json::{Map, Value};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::passwords::{hash_password, PasswordError};
use super::principal::Role;
use crate::ra::ids::object_id;
use crate::store::{now, Reads, Store, StoreError, UserCertificateRow, UserKeyRow, UserRow};

/// Why a user command was refused.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Taken(String),
    #[error("no user named {0:?}")]
    NotFound(String),
    #[error(transparent)]
    Password(#[from] PasswordError),
    #[error("the database: {0}")]
    Store(#[from] StoreError),
}

/// What `pkid user create` is given.
#[derive(Debug, Default)]
pub struct NewUser<'a> {
    pub username: &'a str,
    pub roles: Vec<Role>,
    pub email: Option<&'a str>,
    /// `None`: no password login.
    pub password: Option<&'a str>,
    /// A certificate (PEM or DER) to link to the user.
    pub certificate: Option<&'a [u8]>,
}

/// Longest username.
const MAX_USERNAME: usize = 64;

/// A username: 1–64 of ASCII letters, digits, `.`, `_`, `-` (no `@`: a login name with one is
/// an e-mail address).
fn check_username(name: &str) -> Result<(), UserError> {
    let fine = !name.is_empty()
        && name.len() <= MAX_USERNAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if fine {
        Ok(())
    } else {
        Err(UserError::Invalid(format!(
            "username {name:?}: 1 to {MAX_USERNAME} ASCII letters, digits, '.', '_' or '-'"
        )))
    }
}

/// An e-mail address as stored: trimmed, lower case, one `@` between non-empty parts.
pub fn normalize_email(email: &str) -> Result<String, UserError> {
    let email = email.trim().to_lowercase();
    let fine = email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && !domain.is_empty() && !domain.contains('@')
        });
    if fine {
        Ok(email)
    } else {
        Err(UserError::Invalid(format!(
            "{email:?} is not an e-mail address"
        )))
    }
}

/// The user a login name names: an e-mail address (it has an `@`) or a username.
pub(super) async fn find_login(reads: &Reads, name: &str) -> Result<Option<UserRow>, StoreError> {
    if name.contains('@') {
        match normalize_email(name) {
            Ok(email) => reads.user_by_email(&email).await,
            Err(_) => Ok(None),
        }
    } else {
        reads.user_by_username(name).await
    }
}

/// The subject and issuer DN (RFC 2253) of a certificate given as PEM or DER, and its DER.
pub fn certificate_names(bytes: &[u8]) -> Result<(String, String, Vec<u8>), UserError> {
    let der = match pem::parse(bytes) {
        Ok(block) if block.tag() == "CERTIFICATE" => block.into_contents(),
        Ok(block) => {
            return Err(UserError::Invalid(format!(
                "a {} PEM block is not a certificate",
                block.tag()
            )))
        }
        Err(_) => bytes.to_vec(),
    };
    let (_, cert) = X509Certificate::from_der(&der)
        .map_err(|e| UserError::Invalid(format!("not an X.509 certificate: {e}")))?;
    let subject = crate::pki::dn::rfc2253(cert.subject());
    let issuer = crate::pki::dn::rfc2253(cert.issuer());
    if subject.is_empty() {
        return Err(UserError::Invalid(
            "the certificate's subject is empty: nothing to link".into(),
        ));
    }
    Ok((subject, issuer, der))
}

/// Create a user (and link its certificate) in one write.
pub async fn create_user(store: &Store, new: &NewUser<'_>) -> Result<UserRow, UserError> {
    check_username(new.username)?;
    if new.roles.is_empty() {
        return Err(UserError::Invalid("a user needs at least one role".into()));
    }
    let email = new.email.map(normalize_email).transpose()?;
    let password_hash = match new.password {
        Some(password) => {
            let password = password.to_string();
            Some(
                tokio::task::spawn_blocking(move || hash_password(&password))
                    .await
                    .map_err(|e| UserError::Invalid(format!("hashing: {e}")))??,
            )
        }
        None => None,
    };
    let at = now();
    let user = UserRow {
        id: object_id(),
        username: new.username.to_string(),
        email,
        roles: Role::join(&new.roles),
        password_hash,
        enabled: true,
        created_at: at,
        updated_at: at,
    };
    let mut links = Vec::new();
    if let Some(bytes) = new.certificate {
        let (subject_dn, issuer_dn, der) = certificate_names(bytes)?;
        links.push(UserCertificateRow {
            id: object_id(),
            user_id: user.id.clone(),
            subject_dn,
            issuer_dn,
            der: Some(der),
            created_at: at,
        });
    }
    match store.insert_user(&user, &links).await {
        Ok(()) => Ok(user),
        Err(e) if e.is_unique_violation() => Err(UserError::Taken(
            "the username, the e-mail address or the certificate belongs to another user already"
                .into(),
        )),
        Err(e) => Err(e.into()),
    }
}

/// A user as `pkid user list` shows it.
pub struct Listed {
    pub user: UserRow,
    pub certificates: Vec<UserCertificateRow>,
    pub keys: Vec<UserKeyRow>,
}

/// Every user with its linked certificates and bound keys, by username.
pub async fn list_users(reads: &Reads) -> Result<Vec<Listed>, StoreError> {
    let mut listed = Vec::new();
    for user in reads.users().await? {
        listed.push(Listed {
            certificates: reads.user_certificates(&user.id).await?,
            keys: reads.user_keys(&user.id).await?,
            user,
        });
    }
    Ok(listed)
}

/// Disable a user now.
pub async fn disable_user(store: &Store, username: &str) -> Result<(), UserError> {
    if store.disable_user(username).await? {
        Ok(())
    } else {
        Err(UserError::NotFound(username.to_string()))
    }
}

/// Bind a public key (a JWK, JSON; private members are dropped) to a user for JWS-signed
/// requests; its RFC 7638 thumbprint.
pub async fn bind_key(store: &Store, username: &str, jwk: &str) -> Result<String, UserError> {
    let user = store
        .user_by_username(username)
        .await?
        .ok_or_else(|| UserError::NotFound(username.to_string()))?;
    let jwk: Map<String, Value> = serde_json::from_str(jwk)
        .map_err(|e| UserError::Invalid(format!("not a JWK (a JSON object): {e}")))?;
    let public = crate::pki::jwk::public_jwk(&jwk);
    // A key a request could not be verified with (weak RSA, an unknown type) is refused now,
    // not at its first signature.
    super::jws::check_public_key(&public).map_err(|e| UserError::Invalid(e.to_string()))?;
    let thumbprint =
        crate::pki::jwk::thumbprint(&public).map_err(|e| UserError::Invalid(e.to_string()))?;
    let key = UserKeyRow {
        thumbprint: thumbprint.clone(),
        user_id: user.id,
        jwk: Value::Object(public).to_string(),
        created_at: now(),
    };
    match store.insert_user_key(&key).await {
        Ok(()) => Ok(thumbprint),
        Err(e) if e.is_unique_violation() => Err(UserError::Taken(format!(
            "the key {thumbprint} is bound to a user already"
        ))),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn usernames_and_emails_are_checked() {
        assert!(check_username("alice.b-1_x").is_ok());
        for bad in ["", "al ice", "a@b", "é", &"a".repeat(65)] {
            assert!(check_username(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            normalize_email(" Alice@Example.ORG ").unwrap(),
            "alice@example.org"
        );
        for bad in ["alice", "@x", "a@", "a@b@c", "a b@c"] {
            assert!(normalize_email(bad).is_err(), "{bad:?}");
        }
    }
}

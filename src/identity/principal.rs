//! Who a request is from: the [`Principal`] every surface's handler receives, the [`Role`]s a
//! user holds and the [`Proof`] that authenticated them.
//!
//! Roles are Notary's four, by name and by Notary's number; IAM's two map onto them (`user` →
//! [`Role::CertificateRequestor`], `admin` → [`Role::Admin`]), as `docs/identity.md` states.

use std::fmt;
use std::str::FromStr;

/// What a user may do, before scopes narrow it ([`super::authorize`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Notary 0; IAM `admin`.
    Admin,
    /// Notary 1.
    CertificateManager,
    /// Notary 2; IAM `user`.
    CertificateRequestor,
    /// Notary 3.
    ReadOnly,
}

impl Role {
    pub const ALL: [Role; 4] = [
        Role::Admin,
        Role::CertificateManager,
        Role::CertificateRequestor,
        Role::ReadOnly,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::CertificateManager => "certificate-manager",
            Role::CertificateRequestor => "certificate-requestor",
            Role::ReadOnly => "read-only",
        }
    }

    /// Notary's number for the role (`0` admin … `3` read-only).
    pub fn notary_number(self) -> u8 {
        match self {
            Role::Admin => 0,
            Role::CertificateManager => 1,
            Role::CertificateRequestor => 2,
            Role::ReadOnly => 3,
        }
    }

    /// The role of IAM's account kind `user` or `admin`.
    pub fn from_iam(kind: &str) -> Option<Role> {
        match kind {
            "admin" => Some(Role::Admin),
            "user" => Some(Role::CertificateRequestor),
            _ => None,
        }
    }

    /// Roles as stored: names separated by spaces; an unknown name is an error.
    pub fn parse_list(text: &str) -> Result<Vec<Role>, UnknownRole> {
        let mut roles: Vec<Role> = text
            .split_ascii_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()?;
        roles.sort();
        roles.dedup();
        Ok(roles)
    }

    /// The stored form of `roles` (see [`Role::parse_list`]).
    pub fn join(roles: &[Role]) -> String {
        roles.iter().map(|r| r.name()).collect::<Vec<_>>().join(" ")
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A role name pkid does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?} (admin, certificate-manager, certificate-requestor, read-only)")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Role, UnknownRole> {
        Role::ALL
            .into_iter()
            .find(|r| r.name() == s)
            .ok_or_else(|| UnknownRole(s.to_string()))
    }
}

/// How a user proved who they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proof {
    /// A JWT pkid signed (from `/login` or `/token`).
    Bearer,
    /// A verified client certificate linked to the user (TLS, or `X-APP-CERTIFICATE` from a
    /// trusted proxy).
    Certificate {
        subject_dn: String,
        issuer_dn: String,
        via_proxy: bool,
    },
    /// A JWS-signed request by a key bound to the user.
    JwsKey { thumbprint: String },
}

impl Proof {
    pub fn name(&self) -> &'static str {
        match self {
            Proof::Bearer => "bearer",
            Proof::Certificate { .. } => "certificate",
            Proof::JwsKey { .. } => "jws-key",
        }
    }
}

/// An authenticated user, as read from the store at this request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserPrincipal {
    pub id: String,
    pub username: String,
    pub email: Option<String>,
    pub roles: Vec<Role>,
    pub proof: Proof,
    /// OAuth2 scopes the token carries; `None`: not scope-limited (login token, certificate,
    /// JWS key).
    pub scopes: Option<Vec<String>>,
}

impl UserPrincipal {
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// Whether the credential allows `scope`: always when it is not scope-limited.
    pub fn allows_scope(&self, scope: &str) -> bool {
        self.scopes
            .as_ref()
            .is_none_or(|scopes| scopes.iter().any(|s| s == scope))
    }
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// No credential at all (or a verified certificate linked to nobody).
    Anonymous,
    /// An operator holding an admin token.
    Operator {
        token_id: String,
    },
    User(UserPrincipal),
    /// An OAuth2 client on its own behalf (`client_credentials`).
    Client {
        client_id: String,
        scopes: Vec<String>,
    },
}

impl Principal {
    /// Who, for logs and audit: ids and names, never a secret.
    pub fn describe(&self) -> String {
        match self {
            Principal::Anonymous => "anonymous".into(),
            Principal::Operator { token_id } => format!("operator:{token_id}"),
            Principal::User(user) => format!("user:{}", user.username),
            Principal::Client { client_id, .. } => format!("client:{client_id}"),
        }
    }

    /// The user's id, for the surfaces' ownership checks ("requestors see their own").
    pub fn user_id(&self) -> Option<&str> {
        match self {
            Principal::User(user) => Some(&user.id),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn roles_round_trip_by_name_and_map_notary_and_iam() {
        for role in Role::ALL {
            assert_eq!(role.name().parse::<Role>(), Ok(role));
        }
        let numbers: Vec<u8> = Role::ALL.iter().map(|r| r.notary_number()).collect();
        assert_eq!(numbers, [0, 1, 2, 3]);
        assert_eq!(Role::from_iam("user"), Some(Role::CertificateRequestor));
        assert_eq!(Role::from_iam("admin"), Some(Role::Admin));
        assert_eq!(
            Role::parse_list("read-only admin read-only").unwrap(),
            [Role::Admin, Role::ReadOnly]
        );
        assert_eq!(
            Role::join(&[Role::Admin, Role::ReadOnly]),
            "admin read-only"
        );
        assert!(Role::parse_list("admin root").is_err());
    }
}
